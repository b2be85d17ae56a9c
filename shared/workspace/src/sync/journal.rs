//! The journal of a sync apply (`databricks/sync/{plan_id}.json`): every change of the plan with its status,
//! saved compare-and-swap on its ETag. A change is saved `started` before its call and `done` (with the
//! standby's id) after it, so an apply killed between the two finds it `started` when run again, re-reads the
//! standby by name, and makes the change only if it is not there. A second writer of the same journal loses
//! its next save and stands down.

use crate::rules::ObjectKind;
use crate::rules::sync::{Action, SyncPlan};
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, WriteCondition};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not attempted yet.
    Pending,
    /// Saved before its call: it may or may not have been made.
    Started,
    /// Made by this apply.
    Done,
    /// Re-read before a create and already there (made by an earlier, killed, apply or by hand).
    Found,
    /// Its call failed (`error` says why).
    Failed,
    /// Not attempted on purpose: blocked, a prune without `prune`, or a kind not chosen.
    Skipped,
}

impl Status {
    /// Whether the change needs no further call.
    pub fn settled(self) -> bool {
        matches!(self, Status::Done | Status::Found | Status::Skipped)
    }
}

/// The note on a change of a kind the apply was not asked to make (`sync_on_check` names others).
pub const NOT_CHOSEN: &str = "kind not chosen for this apply";

/// One change's line in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The kind.
    pub kind: ObjectKind,
    /// The object's name.
    pub name: String,
    /// `create`, `update`, `prune` or `blocked`.
    pub action: String,
    /// Where it is.
    pub status: Status,
    /// The standby's id of the object, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The journal and record of one plan's apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The plan's id.
    pub plan_id: String,
    /// The source site.
    pub from: SiteName,
    /// The standby written to.
    pub to: SiteName,
    /// Who asked (the last apply of this plan).
    pub requested_by: String,
    /// Whether prunes were allowed (the last apply).
    pub prune: bool,
    /// When the first apply of this plan started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the journal was last saved.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// How the last apply ended (`None` while one runs): `complete`, `incomplete: ...`, `stood down: ...`.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Every change of the plan, in its order.
    pub entries: Vec<Entry>,
}

impl Journal {
    /// A new journal of `plan`, every change pending (blocked ones skipped with their reason).
    pub fn new(
        plan_id: &str,
        from: SiteName,
        to: SiteName,
        plan: &SyncPlan,
        requested_by: &str,
        prune: bool,
        now: OffsetDateTime,
    ) -> Journal {
        let entries = plan
            .changes
            .iter()
            .map(|c| {
                let (status, note, id) = match &c.action {
                    Action::Blocked { reason } => (Status::Skipped, Some(reason.clone()), None),
                    Action::Update { target, .. } | Action::Prune { target, .. } => (Status::Pending, None, Some(target.clone())),
                    Action::Create { .. } => (Status::Pending, None, None),
                };
                Entry { kind: c.kind, name: c.name.clone(), action: c.action.as_str().to_owned(), status, id, note }
            })
            .collect();
        Journal {
            plan_id: plan_id.to_owned(),
            from,
            to,
            requested_by: requested_by.to_owned(),
            prune,
            started_at: now,
            updated_at: now,
            outcome: None,
            entries,
        }
    }

    /// How many entries are in each status.
    pub fn counts(&self) -> std::collections::BTreeMap<Status, usize> {
        let mut out = std::collections::BTreeMap::new();
        for e in &self.entries {
            *out.entry(e.status).or_insert(0) += 1;
        }
        out
    }
}

impl PartialOrd for Status {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Status {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// The journal as stored and its ETag.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The journal.
    pub journal: Journal,
    /// Its ETag (the next save's condition).
    pub etag: String,
}

/// Reads the journal of `plan_id`, if any (an unreadable one is an error: it must not be overwritten blindly).
pub async fn read<B: ControlBucket>(bucket: &B, plan_id: &str) -> Result<Option<Stored>, StoreError> {
    let key = domain::layout::databricks_sync(plan_id);
    let Some(o) = bucket.get(&key).await? else { return Ok(None) };
    let journal = serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{key} is not a sync journal: {e}"),
    })?;
    Ok(Some(Stored { journal, etag: o.etag }))
}

/// Saves the journal: created only if absent (`etag` `None`), else only over the ETag read. A conflict means
/// another apply of the same plan wrote meanwhile.
pub async fn save<B: ControlBucket>(bucket: &B, journal: &Journal, etag: Option<&str>) -> Result<String, StoreError> {
    let key = domain::layout::databricks_sync(&journal.plan_id);
    let body = serde_json::to_vec_pretty(journal).unwrap_or_default();
    let condition = match etag {
        Some(e) => WriteCondition::IfMatch(e.to_owned()),
        None => WriteCondition::IfAbsent,
    };
    bucket.put(&key, body, "application/json", condition).await
}

/// Writes the latest apply's record (`databricks/sync-latest.json`), unconditionally.
pub async fn publish<B: ControlBucket>(bucket: &B, journal: &Journal) -> Result<(), StoreError> {
    let body = serde_json::to_vec_pretty(journal).unwrap_or_default();
    bucket.put(domain::layout::DATABRICKS_SYNC_LATEST, body, "application/json", WriteCondition::Overwrite).await.map(|_| ())
}
