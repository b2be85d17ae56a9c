//! A readiness finding: what `check` and the subsystems' assessments report (a leaf: the answers and the
//! assessments name it without importing each other).

use domain::notification::Severity;
use serde::{Deserialize, Serialize};

/// One finding.
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
