//! The response every `manual-trigger` command answers with (CONTRACT.md).

use domain::notification::Severity;
use domain::site::SiteName;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An execution ran to its end.
    Completed,
    /// The same trigger already completed; nothing was done again.
    AlreadyCompleted,
    /// An execution is running.
    InProgress,
    /// Prepared, waiting for a human's `approve`.
    AwaitingApproval,
    /// The payload was not valid; nothing changed.
    Rejected,
    /// Nothing to change (read-only commands answer this).
    Noop,
    /// Stood down under the lock: what the decision rested on no longer holds (`{prefix}/active` moved, the
    /// policy changed); nothing was written.
    Superseded,
}

/// A command's answer: `outcome`, `active_site`, an optional message, and the command's own fields.
#[derive(Debug, Clone, Serialize)]
pub struct CommandResponse {
    /// What happened.
    pub outcome: Outcome,
    /// The site live in `{prefix}/active`, when it could be read.
    pub active_site: Option<SiteName>,
    /// A human sentence: for `rejected`, what is wrong and what is expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command's own fields.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl CommandResponse {
    /// A rejection: nothing changed.
    pub fn rejected(message: impl Into<String>, active_site: Option<SiteName>) -> Self {
        CommandResponse { outcome: Outcome::Rejected, active_site, message: Some(message.into()), details: Map::new() }
    }
}

/// One finding of `check` (or of a snapshot source, a readiness or visibility review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id, e.g. `site-secondary`.
    pub id: String,
    /// How bad.
    pub severity: Severity,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub action: String,
}
