//! A snapshot's export carried over several invocations, for workspaces too big for one (10,000 jobs and
//! 100,000 tables: two minutes of calls and more than a gigabyte in one process).
//!
//! The export is cut into parts ([`super::export::parts`]): each site's core, one part per catalog, slices of the
//! per-object ACL and grant reads. The run's state, `{folder}/databricks/run.json` in the control bucket, holds
//! every part and its stage (pending, running under a lease, done), changed only by compare-and-swap, so that a
//! continuation delivered twice, two invocations at once, or an invocation that dies mid-part leave one answer:
//!
//! - a part is claimed (pending, or running past its lease) by one invocation; a duplicate finds it running or
//!   done and leaves it;
//! - a part's objects go to S3 under the attempt that read them (`{folder}/databricks/parts/{part}/a{n}/`), and
//!   the part is done only when its holder's finish is swapped in; a late finish of a superseded attempt is refused;
//! - a part cut short by the invocation's deadline is put back (pending) and runs again in a later invocation,
//!   up to [`MAX_ATTEMPTS`], after which what it read is kept as `partial`;
//! - the snapshot's invocation, which no message stands behind, posts a continuation delayed past the lease with
//!   each claim: if it dies holding parts or the merge, that guard takes them over;
//! - an invocation starts parts while a third of its budget is left, then posts one continuation per pending part
//!   (SQS: the messages invoke `manual-trigger` again, in parallel), and the part that finds every part done
//!   merges: kind by kind, both sites, into the same snapshot files, drift, manifest and pointers as one
//!   invocation writes, holding one kind of each side at a time, never the whole export.
//!
//! Here: the run document and its compare-and-swap; [`drive`] what one invocation does to a run; `merge` the
//! merge.

use super::KindSummary;
use super::progress::PartCounts;
use crate::rules::{ExportStatus, ObjectKind};
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, ExportQueue, WriteCondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

mod drive;
mod merge;

pub use drive::{Context, Driven, drive};
pub use merge::summary;

/// A part cut short this many times is kept as `partial` rather than run again.
pub const MAX_ATTEMPTS: u32 = 3;

/// Parts one invocation runs at once (all share the client's rate limit per workspace).
const PARTS_AT_ONCE: usize = 4;

/// How a carried export runs.
#[derive(Clone)]
pub struct Carrier {
    /// Where continuations go.
    pub queue: Arc<dyn ExportQueue>,
    /// One invocation's time for the export (`DR_EXPORT_DEADLINE_SECONDS`): no part starts with less than a third
    /// of it left.
    pub budget: std::time::Duration,
    /// Targets (ACLs, grants) per part (`DR_EXPORT_PART_SIZE`).
    pub part_size: usize,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").field("budget", &self.budget).field("part_size", &self.part_size).finish_non_exhaustive()
    }
}

/// A part's or the merge's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for an invocation.
    Pending,
    /// Claimed by `holder` until `lease_until` (after which another may take it: the holder died).
    Running {
        /// The invocation that holds it.
        holder: String,
        /// When the claim lapses.
        #[serde(with = "time::serde::rfc3339")]
        lease_until: OffsetDateTime,
    },
    /// Recorded.
    Done,
}

/// What a part reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum PartWork {
    /// The site's core listings.
    Core,
    /// One catalog's subtree.
    Catalog {
        /// The catalog.
        name: String,
    },
    /// A slice of ACL or grant targets, kept in S3 at `input`.
    Targets {
        /// Grants or permissions.
        kind: ObjectKind,
        /// The key of the targets' list.
        input: String,
        /// The source listing's error, if partial.
        inherited: Option<String>,
    },
}

/// One part of a carried export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The site.
    pub site: SiteName,
    /// What it reads.
    pub work: PartWork,
    /// Its stage.
    #[serde(flatten)]
    pub stage: Stage,
    /// Claims so far.
    pub attempts: u32,
    /// The kinds it recorded (when done), with their status and count.
    #[serde(default)]
    pub kinds: BTreeMap<ObjectKind, KindSummary>,
    /// Where its objects are (the accepted attempt's folder), when done.
    #[serde(default)]
    pub output: Option<String>,
    /// Calls it made.
    #[serde(default)]
    pub requests: u32,
    /// When its last continuation was posted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub enqueued_at: Option<OffsetDateTime>,
}

impl Part {
    fn new(site: SiteName, work: PartWork) -> Part {
        Part {
            site,
            work,
            stage: Stage::Pending,
            attempts: 0,
            kinds: BTreeMap::new(),
            output: None,
            requests: 0,
            enqueued_at: None,
        }
    }
}

/// The state of one carried export: `{folder}/databricks/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The snapshot's id (its execution id in the manifest).
    pub run_id: String,
    /// The snapshot folder.
    pub folder: String,
    /// When the snapshot started (its files' time stamp).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The snapshot's other files, already written: their manifest entries.
    pub files: Vec<Value>,
    /// The sites exported, with their workspace URL.
    pub sites: BTreeMap<SiteName, String>,
    /// Every part by key (`{site}/core`, `{site}/catalog-{name}`, `{parent}/{kind}-{n}`).
    pub parts: BTreeMap<String, Part>,
    /// Invocations that worked on it.
    pub invocations: u32,
    /// The merge's stage.
    pub merge: Stage,
    /// The manifest, once merged.
    #[serde(default)]
    pub manifest_key: Option<String>,
}

/// What a finished part records.
#[derive(Debug, Clone, PartialEq)]
pub struct PartDone {
    /// The kinds it recorded.
    pub kinds: BTreeMap<ObjectKind, KindSummary>,
    /// Where its objects are.
    pub output: String,
    /// Calls made.
    pub requests: u32,
    /// The parts it found, by key.
    pub found: Vec<(String, Part)>,
}

impl RunState {
    /// A run that starts with each site's core part.
    pub fn new(
        run_id: &str,
        folder: &str,
        started_at: OffsetDateTime,
        files: Vec<Value>,
        sites: BTreeMap<SiteName, String>,
    ) -> Self {
        let parts = sites.keys().map(|site| (format!("{site}/core"), Part::new(*site, PartWork::Core))).collect();
        RunState {
            run_id: run_id.to_owned(),
            folder: folder.to_owned(),
            started_at,
            files,
            sites,
            parts,
            invocations: 0,
            merge: Stage::Pending,
            manifest_key: None,
        }
    }

    /// Whether `stage` may be taken at `now`: pending, or running past its lease.
    fn takeable(stage: &Stage, now: OffsetDateTime) -> bool {
        match stage {
            Stage::Pending => true,
            Stage::Running { lease_until, .. } => *lease_until <= now,
            Stage::Done => false,
        }
    }

    /// The parts that may be claimed at `now`, in key order.
    pub fn claimable(&self, now: OffsetDateTime) -> Vec<String> {
        self.parts.iter().filter(|(_, p)| Self::takeable(&p.stage, now)).map(|(k, _)| k.clone()).collect()
    }

    /// Claims `key` for `holder` until `now + lease`; `false` when it is done or another holds it (a duplicate or
    /// concurrent continuation: it leaves the part alone).
    pub fn claim(&mut self, key: &str, holder: &str, now: OffsetDateTime, lease: time::Duration) -> bool {
        match self.parts.get_mut(key) {
            Some(p) if Self::takeable(&p.stage, now) => {
                p.stage = Stage::Running { holder: holder.to_owned(), lease_until: now + lease };
                p.attempts += 1;
                true
            }
            _ => false,
        }
    }

    fn held_by(&self, key: &str, holder: &str) -> bool {
        matches!(self.parts.get(key).map(|p| &p.stage), Some(Stage::Running { holder: h, .. }) if h == holder)
    }

    /// Records `key` done by `holder` with what it found; `false` (nothing changed) when `holder` no longer holds
    /// it: its lease lapsed and another attempt took it, whose finish is the one kept.
    pub fn finish(&mut self, key: &str, holder: &str, done: PartDone) -> bool {
        if !self.held_by(key, holder) {
            return false;
        }
        for (child, part) in done.found {
            self.parts.entry(child).or_insert(part);
        }
        if let Some(p) = self.parts.get_mut(key) {
            p.stage = Stage::Done;
            p.kinds = done.kinds;
            p.output = Some(done.output);
            p.requests = done.requests;
        }
        true
    }

    /// Puts `key` back (pending) when `holder` could not finish it in time; `false` when it no longer holds it.
    pub fn release(&mut self, key: &str, holder: &str) -> bool {
        if !self.held_by(key, holder) {
            return false;
        }
        if let Some(p) = self.parts.get_mut(key) {
            p.stage = Stage::Pending;
            p.enqueued_at = None;
        }
        true
    }

    /// Whether every part is done.
    pub fn all_done(&self) -> bool {
        self.parts.values().all(|p| p.stage == Stage::Done)
    }

    /// Claims the merge for `holder` (every part done, the merge not done nor held by another).
    pub fn claim_merge(&mut self, holder: &str, now: OffsetDateTime, lease: time::Duration) -> bool {
        if !self.all_done() || !Self::takeable(&self.merge, now) {
            return false;
        }
        self.merge = Stage::Running { holder: holder.to_owned(), lease_until: now + lease };
        true
    }

    /// The pending parts whose continuation is not posted (or was posted a lease ago: lost with an invocation that
    /// died before sending it), marked as posted at `now`.
    pub fn to_enqueue(&mut self, now: OffsetDateTime, lease: time::Duration) -> Vec<String> {
        let mut out = Vec::new();
        for (key, p) in &mut self.parts {
            let stale = p.enqueued_at.is_none_or(|t| now - t >= lease);
            if Self::takeable(&p.stage, now) && stale {
                p.enqueued_at = Some(now);
                out.push(key.clone());
            }
        }
        out
    }

    /// The parts of `site` by stage.
    pub fn counts(&self, site: SiteName) -> PartCounts {
        let mut c = PartCounts::default();
        for p in self.parts.values().filter(|p| p.site == site) {
            match p.stage {
                Stage::Pending => c.pending += 1,
                Stage::Running { .. } => c.running += 1,
                Stage::Done => c.done += 1,
            }
        }
        c
    }

    /// Each kind of `site` as its done parts say so far: the worst status, the objects counted.
    pub fn kinds(&self, site: SiteName) -> BTreeMap<ObjectKind, KindSummary> {
        let mut out: BTreeMap<ObjectKind, Vec<&KindSummary>> = BTreeMap::new();
        for p in self.parts.values().filter(|p| p.site == site && p.stage == Stage::Done) {
            for (kind, k) in &p.kinds {
                out.entry(*kind).or_default().push(k);
            }
        }
        out.into_iter()
            .map(|(kind, ks)| {
                let statuses: Vec<&ExportStatus> = ks.iter().map(|k| &k.status).collect();
                let count = ks.iter().map(|k| k.count).sum();
                (kind, KindSummary { status: combined(&statuses, count), count })
            })
            .collect()
    }

    /// Calls made for `site`.
    pub fn requests(&self, site: SiteName) -> u32 {
        self.parts.values().filter(|p| p.site == site).map(|p| p.requests).sum()
    }
}

/// The status of a kind read by several parts: partial if any is (the first error), skipped if every one is and
/// none read anything, else complete.
fn combined(statuses: &[&ExportStatus], count: usize) -> ExportStatus {
    if let Some(p) = statuses.iter().find(|s| matches!(s, ExportStatus::Partial { .. })) {
        return (*p).clone();
    }
    match statuses.first() {
        Some(s @ ExportStatus::Skipped { .. })
            if count == 0 && statuses.iter().all(|s| matches!(s, ExportStatus::Skipped { .. })) =>
        {
            (*s).clone()
        }
        _ => ExportStatus::Complete,
    }
}

/// The key of a run's state.
pub fn run_key(folder: &str) -> String {
    format!("{folder}/databricks/run.json")
}

/// A continuation's body: the run, and the part to take first (none: whatever is left, or the merge).
pub fn message(run: &str, part: Option<&str>) -> String {
    json!({ "export_run": run, "part": part }).to_string()
}

/// A run's object that is missing or unreadable: retrying cannot fix it.
fn corrupt(key: &str, problem: &str) -> StoreError {
    StoreError::Refused { service: "S3", operation: "GetObject", message: format!("{key}: {problem}") }
}

/// Reads a run's state with its ETag.
pub async fn read<B: ControlBucket>(bucket: &B, key: &str) -> Result<Option<(RunState, String)>, StoreError> {
    let Some(o) = bucket.get(key).await? else { return Ok(None) };
    let state = serde_json::from_slice(&o.body).map_err(|e| corrupt(key, &e.to_string()))?;
    Ok(Some((state, o.etag)))
}

/// Changes a run's state by compare-and-swap: `f` on the state as read, written only if it changed and only over
/// that version (another writer in between: read again and `f` again).
pub async fn update<B: ControlBucket, T>(
    bucket: &B,
    key: &str,
    mut f: impl FnMut(&mut RunState) -> T,
) -> Result<(RunState, T), StoreError> {
    for _ in 0..50 {
        let Some((mut state, etag)) = read(bucket, key).await? else {
            return Err(corrupt(key, "no such export run"));
        };
        let before = state.clone();
        let out = f(&mut state);
        if state == before {
            return Ok((state, out));
        }
        let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
        match bucket.put(key, body, "application/json", WriteCondition::IfMatch(etag)).await {
            Ok(_) => return Ok((state, out)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.to_owned() })
}

/// Writes a new run's state (once: a second writer of the same run is refused).
pub async fn create<B: ControlBucket>(bucket: &B, state: &RunState) -> Result<String, StoreError> {
    let key = run_key(&state.folder);
    let body = serde_json::to_vec_pretty(state).unwrap_or_default();
    bucket.put(&key, body, "application/json", WriteCondition::IfAbsent).await?;
    Ok(key)
}

#[cfg(test)]
mod tests;
