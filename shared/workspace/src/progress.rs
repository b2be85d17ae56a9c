//! The running or latest export of each site (`databricks/export-{site}.json`): when it started, which kinds
//! are in (complete, partial, skipped) and which are pending, the calls made. Written when the export starts,
//! whenever a kind is in (at most once a second) and when it ends, so that `status` shows an export that runs
//! long, and one that an invocation's end cut short says how far it got.
//!
//! The record is advisory: a failed write is logged and never fails the export.

use super::export::{Progress, SiteObjects};
use crate::rules::{ExportStatus, ObjectKind};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports::{ControlBucket, WriteCondition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Whether the export is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportState {
    /// Started, not ended (or its invocation ended before it did: see [`STALE_AFTER`]).
    Running,
    /// Ended: every kind complete, partial or skipped.
    Finished,
}

/// A running record not updated for this long belongs to an invocation that ended before its export did
/// (Lambda's longest invocation is 15 minutes; it is written at least at every kind that is in).
pub const STALE_AFTER: time::Duration = time::Duration::minutes(16);

/// The progress record of one site's export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// The site.
    pub site: SiteName,
    /// The workspace exported.
    pub workspace_url: String,
    /// The snapshot the export writes into.
    pub snapshot_folder: String,
    /// Running or finished.
    pub state: ExportState,
    /// When the export started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When this record was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The kinds that are in, with their status and count; every other kind is pending.
    pub kinds: BTreeMap<ObjectKind, super::KindSummary>,
    /// Calls made so far.
    pub requests: u32,
    /// Invocations the export has run in.
    pub invocations: u32,
    /// For an export carried over invocations (`workspace::carry`): its parts done, running and pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartCounts>,
}

/// The parts of a carried export, by stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartCounts {
    /// Exported and recorded.
    pub done: usize,
    /// Claimed by an invocation that is running them.
    pub running: usize,
    /// Waiting for an invocation (a continuation message is on the queue).
    pub pending: usize,
}

impl ExportRecord {
    /// A record of an export that starts now: every kind pending.
    pub fn started(site: SiteName, workspace_url: &str, snapshot_folder: &str, now: OffsetDateTime) -> ExportRecord {
        ExportRecord {
            site,
            workspace_url: workspace_url.to_owned(),
            snapshot_folder: snapshot_folder.to_owned(),
            state: ExportState::Running,
            started_at: now,
            updated_at: now,
            kinds: BTreeMap::new(),
            requests: 0,
            invocations: 1,
            parts: None,
        }
    }

    /// The record as `progress` stands at `now`.
    pub fn update(&mut self, progress: &Progress, now: OffsetDateTime) {
        self.kinds =
            progress.done().into_iter().map(|(kind, (status, count))| (kind, super::KindSummary { status, count })).collect();
        self.requests = progress.requests();
        self.updated_at = now;
    }

    /// The kinds not in yet.
    pub fn pending(&self) -> Vec<ObjectKind> {
        ObjectKind::ALL.into_iter().filter(|k| !self.kinds.contains_key(k)).collect()
    }

    /// What `status` shows: the state (`interrupted` for a running record older than [`STALE_AFTER`]), when it
    /// started, the kinds by status, the calls made.
    pub fn view(&self, now: OffsetDateTime) -> ExportView {
        let of = |status: &str| -> Vec<String> {
            self.kinds.iter().filter(|(_, k)| k.status.as_str() == status).map(|(kind, _)| kind.as_str().to_owned()).collect()
        };
        let complete = self.kinds.values().filter(|k| k.status == ExportStatus::Complete).count();
        let pending: Vec<String> = self.pending().into_iter().map(|k| k.as_str().to_owned()).collect();
        let state = match self.state {
            ExportState::Running if now - self.updated_at > STALE_AFTER => "interrupted",
            ExportState::Running => "running",
            ExportState::Finished => "finished",
        };
        let why = (state == "interrupted").then(|| {
            "its invocation ended before the export did (a timeout or a crash): the kinds pending were not exported; the next snapshot exports them".to_owned()
        });
        ExportView {
            state: state.to_owned(),
            started_at: rfc3339(self.started_at),
            updated_at: rfc3339(self.updated_at),
            snapshot_folder: self.snapshot_folder.clone(),
            requests: self.requests,
            invocations: self.invocations,
            kinds: KindsView { complete, partial: of("partial"), skipped: of("skipped"), pending },
            in_: format!("{} of {} kinds", self.kinds.len(), ObjectKind::ALL.len()),
            parts: self.parts,
            why,
        }
    }
}

/// A site's running or latest export as `status` shows it ([`ExportRecord::view`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportView {
    /// `running`, `interrupted` (running, but not updated past the longest invocation) or `finished`.
    pub state: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When its record was last written (RFC 3339).
    pub updated_at: String,
    /// The snapshot it exports into.
    pub snapshot_folder: String,
    /// The API calls made so far.
    pub requests: u32,
    /// The invocations it has taken so far.
    pub invocations: u32,
    /// Its kinds by status.
    pub kinds: KindsView,
    /// How many kinds have an outcome, in words (`12 of 21 kinds`).
    #[serde(rename = "in")]
    pub in_: String,
    /// A carried export's parts, by stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<PartCounts>,
    /// Why an interrupted export stopped (interrupted only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// An export's kinds by status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindsView {
    /// How many are complete.
    pub complete: usize,
    /// The partial ones.
    pub partial: Vec<String>,
    /// The skipped ones.
    pub skipped: Vec<String>,
    /// Those with no outcome yet.
    pub pending: Vec<String>,
}

/// Writes `record` (overwriting: one export of a site runs at a time, the schedule's or one on demand, and the
/// newest writer's view is the one to show).
pub async fn write<B: ControlBucket>(bucket: &B, record: &ExportRecord) {
    let key = domain::layout::databricks_export_progress(record.site);
    let body = serde_json::to_vec_pretty(record).unwrap_or_default();
    if let Err(e) = bucket.put(&key, body, "application/json", WriteCondition::Overwrite).await {
        tracing::warn!(site = %record.site, error = %e, "export progress not written");
    }
}

/// Each site's progress record (absent or unreadable ones are absent).
pub async fn read_all<B: ControlBucket>(bucket: &B) -> BTreeMap<SiteName, ExportRecord> {
    let reads = futures_util::future::join_all(
        SiteName::ALL.map(|site| async move { (site, bucket.get(&domain::layout::databricks_export_progress(site)).await) }),
    )
    .await;
    let mut out = BTreeMap::new();
    for (site, read) in reads {
        match read {
            Ok(Some(o)) => match serde_json::from_slice::<ExportRecord>(&o.body) {
                Ok(r) => {
                    out.insert(site, r);
                }
                Err(e) => tracing::warn!(site = %site, error = %e, "unreadable export progress ignored"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(site = %site, error = %e, "export progress not read"),
        }
    }
    out
}

/// Runs `export` while keeping its record current: written at the start, whenever a kind is in (at most once
/// a second, and at least every `every` for the calls count) and when the export ends (`finished`, every kind
/// as the export ended it).
pub async fn tracked<B, F>(
    bucket: &B,
    mut record: ExportRecord,
    progress: &Progress,
    every: std::time::Duration,
    export: F,
) -> SiteObjects
where
    B: ControlBucket,
    F: std::future::Future<Output = SiteObjects>,
{
    let started = std::time::Instant::now();
    let at =
        |record: &ExportRecord| record.started_at + time::Duration::try_from(started.elapsed()).unwrap_or(time::Duration::ZERO);
    write(bucket, &record).await;
    let mut export = std::pin::pin!(export);
    let mut last_write = std::time::Instant::now();
    let out = loop {
        tokio::select! {
            out = &mut export => break out,
            () = progress.changed() => {}
            () = tokio::time::sleep(every) => {}
        }
        // Throttled: a burst of kinds coming in costs one write.
        if last_write.elapsed() >= std::time::Duration::from_secs(1) {
            let now = at(&record);
            record.update(progress, now);
            write(bucket, &record).await;
            last_write = std::time::Instant::now();
        }
    };
    record.updated_at = at(&record);
    record.kinds =
        out.kinds.iter().map(|k| (k.kind, super::KindSummary { status: k.status.clone(), count: k.objects.len() })).collect();
    record.requests = out.requests;
    record.state = ExportState::Finished;
    write(bucket, &record).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn a_running_record_not_updated_past_the_longest_invocation_is_interrupted_and_says_what_is_pending() {
        let t0 = datetime!(2026-01-05 09:00 UTC);
        let mut r = ExportRecord::started(SiteName::Primary, "https://p", "snapshots/x", t0);
        r.kinds.insert(ObjectKind::Jobs, crate::KindSummary { status: ExportStatus::Complete, count: 3 });
        r.kinds.insert(
            ObjectKind::Tables,
            crate::KindSummary { status: ExportStatus::Partial { error: "deadline".into() }, count: 1 },
        );
        let fresh = serde_json::to_value(r.view(t0 + time::Duration::minutes(5))).unwrap();
        assert_eq!(fresh["state"], "running");
        assert!(fresh.get("why").is_none());
        let stale = serde_json::to_value(r.view(t0 + time::Duration::minutes(17))).unwrap();
        assert_eq!(stale["state"], "interrupted");
        assert!(stale["why"].as_str().unwrap().contains("ended before the export did"));
        assert_eq!(stale["kinds"]["complete"], 1);
        assert_eq!(stale["kinds"]["partial"], json!(["tables"]));
        assert_eq!(stale["kinds"]["pending"].as_array().unwrap().len(), ObjectKind::ALL.len() - 2);
        r.state = ExportState::Finished;
        assert_eq!(r.view(t0 + time::Duration::days(1)).state, "finished", "a finished export never goes stale");
    }
}
