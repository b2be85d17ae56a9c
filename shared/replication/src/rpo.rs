//! Open incidents as RPO risk: what `status`, `check`, snapshots and drills report ([`open_incidents`],
//! [`summarize`], [`IncidentsSource`]).

use super::{INCIDENTS_PREFIX, SNAPSHOT_FILE, incident_key};
use crate::rules::classify::{Category, Severity};
use crate::rules::incident::{Incident, IncidentState};
use crate::rules::ledger::Ledger;
use domain::primitives::rfc3339;
use dr_ports::ControlBucket;
use dr_ports::error::StoreError;
use dr_ports::snapshot::{SnapshotContext, SnapshotFile, SnapshotSource};
use futures_util::future::{BoxFuture, join_all};
use serde_json::{Value, json};

/// Every incident that is not closed (state `open`, or `recovered` and waiting for its quiet period): the RPO
/// risk that `status`, `check`, snapshots and drills report. Most severe first, then most failed objects.
/// Unreadable documents are skipped with a warning.
pub async fn open_incidents<B: ControlBucket>(bucket: &B) -> Result<Vec<Incident>, StoreError> {
    let keys: Vec<String> = bucket.list(INCIDENTS_PREFIX).await?.into_iter().filter(|k| k.ends_with(".json")).collect();
    let objects = join_all(keys.iter().map(|k| bucket.get(k))).await;
    let mut open = Vec::new();
    for (key, object) in keys.iter().zip(objects) {
        let Some(object) = object? else { continue };
        match serde_json::from_slice::<Incident>(&object.body) {
            Ok(i) if i.state != IncidentState::Closed => open.push(i),
            Ok(_) => {}
            Err(e) => tracing::warn!(key = %key, error = %e, "unreadable incident document skipped"),
        }
    }
    open.sort_by(|a, b| {
        b.highest_severity.cmp(&a.highest_severity).then(b.total_failed.cmp(&a.total_failed)).then(a.id.cmp(&b.id))
    });
    Ok(open)
}

/// An incident in a few fields, for answers and reports (`status`, `check`, drill reports).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentSummary {
    /// The incident's id (`{bucket}__{rule}`).
    pub id: String,
    /// The replicated bucket.
    pub source_bucket: String,
    /// The replication rule.
    pub rule_id: String,
    /// Open or recovered.
    pub state: IncidentState,
    /// The most severe failure seen.
    pub highest_severity: Severity,
    /// That failure's category.
    pub highest_category: Category,
    /// Objects that failed to replicate.
    pub total_failed: u64,
    /// Those an operator can act on.
    pub actionable_failed: u64,
    /// Whether replication lag is still outstanding.
    pub lag_outstanding: bool,
    /// When it opened (RFC 3339).
    pub opened_at: String,
    /// The first failure's time (RFC 3339), when known.
    pub first_seen: Option<String>,
    /// The last failure's time (RFC 3339), when known.
    pub last_seen: Option<String>,
    /// Its document's key in the control bucket.
    pub document: String,
    /// How many pages it owes.
    pub pages_owed: usize,
}

impl IncidentSummary {
    /// The incident in a few fields.
    pub fn of(i: &Incident) -> Self {
        IncidentSummary {
            id: i.id.clone(),
            source_bucket: i.source_bucket.clone(),
            rule_id: i.rule_id.clone(),
            state: i.state,
            highest_severity: i.highest_severity,
            highest_category: i.highest_category,
            total_failed: i.total_failed,
            actionable_failed: i.actionable_failed(),
            lag_outstanding: i.lag_outstanding(),
            opened_at: rfc3339(i.opened_at),
            first_seen: i.first_seen.map(rfc3339),
            last_seen: i.last_seen.map(rfc3339),
            document: incident_key(&i.id),
            pages_owed: i.owed_pages.len(),
        }
    }
}

/// Each incident in a few fields ([`IncidentSummary`]).
pub fn summaries(incidents: &[Incident]) -> Vec<IncidentSummary> {
    incidents.iter().map(IncidentSummary::of).collect()
}

/// [`summaries`] as JSON, for the answers and reports that keep it untyped (`check`, drill reports).
pub fn summarize(incidents: &[Incident]) -> Value {
    serde_json::to_value(summaries(incidents)).unwrap_or(Value::Null)
}

/// A snapshot source: `replication-incidents.json`, the open incidents (full documents) and whether they put the
/// RPO at risk, so that a snapshot taken before a failover records what the replica was missing.
#[derive(Debug, Clone)]
pub struct IncidentsSource<B> {
    /// The control bucket.
    pub bucket: B,
}

impl<B: ControlBucket> SnapshotSource for IncidentsSource<B> {
    fn name(&self) -> &'static str {
        "replication-incidents"
    }

    fn collect<'a>(&'a self, ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Result<Vec<SnapshotFile>, StoreError>> {
        Box::pin(async move {
            // The ledgers (fingerprints, up to ~176 KB each) say nothing to a reader of the snapshot.
            let open: Vec<Incident> =
                open_incidents(&self.bucket).await?.into_iter().map(|i| Incident { ledger: Ledger::default(), ..i }).collect();
            let failed: u64 = open.iter().map(|i| i.total_failed).sum();
            let body = json!({
                "generated_at": rfc3339(ctx.now),
                "rpo_risk": !open.is_empty(),
                "open_incidents": open.len(),
                "failed_objects": failed,
                "summary": summarize(&open),
                "incidents": open,
            });
            Ok(vec![SnapshotFile { name: SNAPSHOT_FILE.to_owned(), body: serde_json::to_vec_pretty(&body).unwrap_or_default() }])
        })
    }
}
