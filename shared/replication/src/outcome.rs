//! What [`process_batch`](super::process_batch) did: per message, per manifest, per incident; the SQS
//! `batchItemFailures`, the summary an SNS or direct invocation answers, the figures the handler logs.

use crate::rules::event::BatchSource;
use crate::rules::incident::{Incident, PageDecision};
use dr_ports::error::StoreError;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A body kept under `quarantine/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The message's id (SQS `messageId`, SNS `MessageId`; empty for a direct invocation).
    pub message_id: String,
    /// Where it was kept; `None` when that write failed (then the message is retried).
    pub key: Option<String>,
    /// Why it could not be parsed.
    pub error: String,
}

/// A re-drive manifest of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestWrite {
    /// Its key in the control bucket.
    pub key: String,
    /// The source bucket every row names.
    pub source_bucket: String,
    /// Rows (objects).
    pub rows: usize,
    /// The `Fields` of the S3 Batch Operations manifest spec.
    pub fields: &'static [&'static str],
    /// Whether the write succeeded.
    pub written: bool,
}

/// What happened to one incident's document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentResult {
    /// Records not counted before were merged and written.
    Merged,
    /// Every record had been counted before (a redelivered message, a duplicate S3 event): nothing counted again
    /// (the document is still written when it had pages to claim).
    AlreadyMerged,
    /// Its new records' messages are retried (their manifest could not be written): nothing written.
    Deferred,
    /// The document could not be read or written: the messages with new records for it are retried.
    Failed,
}

/// What happened to the pages an incident owed (the one this batch decided, and any owed before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    /// Nothing was owed.
    NotDue,
    /// Every page claimed was published and settled.
    Sent,
    /// Owed, and held by another payer (or queued behind a page it holds): that payer sends it.
    Held,
    /// A publish failed: the page stays owed (released for the next writer) and one message is retried.
    Failed,
}

/// One incident of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentWrite {
    /// The incident id.
    pub id: String,
    /// Records counted now.
    pub records: u64,
    /// Records skipped because the incident had counted them before (redeliveries, duplicate S3 events).
    pub already_counted: u64,
    /// The document's fate.
    pub result: IncidentResult,
    /// The paging decision of this batch.
    pub decision: PageDecision,
    /// The owed pages' fate.
    pub page: PageStatus,
    /// Pages published by this batch (its own decision and pages owed before).
    pub pages_published: usize,
    /// Read-merge-write rounds used (more than 1 after lost races).
    pub attempts: u32,
    /// The document as written (or as found, for a redelivery); `None` when it failed.
    pub incident: Option<Incident>,
}

/// A failed AWS call and the messages it fails.
#[derive(Debug)]
pub struct Failure {
    /// What was being done, e.g. `incident databricks-prod-data-use1__delta-tables`.
    pub what: String,
    /// The error.
    pub error: StoreError,
    /// Indexes of the messages it fails.
    pub messages: Vec<usize>,
}

/// What [`process_batch`] did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// `sqs`, `sns`, `direct` or `unrecognized`.
    pub source: BatchSource,
    /// The batch id, for logs: the first 32 hex characters of the sha256 of the sorted message ids (of the
    /// payload for a direct invocation). Idempotency is per message, not per batch.
    pub batch_id: String,
    /// Messages in the payload.
    pub messages: usize,
    /// Replication records parsed (duplicates included).
    pub records: u64,
    /// Records dropped as duplicates within the batch.
    pub duplicates: u64,
    /// Records skipped because their incident had counted them before (redelivered messages, duplicate events).
    pub already_counted: u64,
    /// Groups (source bucket, destination, rule, event type, reason).
    pub groups: usize,
    /// `s3:TestEvent` messages (accepted and ignored).
    pub test_events: usize,
    /// Records per category (`replication_broken`, ...) in this delivery, duplicates within it excluded.
    pub counts_by_category: BTreeMap<String, u64>,
    /// Bodies that could not be parsed.
    pub quarantined: Vec<Quarantined>,
    /// Re-drive manifests.
    pub manifests: Vec<ManifestWrite>,
    /// Incidents touched.
    pub incidents: Vec<IncidentWrite>,
    /// Failed AWS calls.
    pub failures: Vec<Failure>,
    pub(super) message_ids: Vec<String>,
    pub(super) failed_messages: BTreeSet<usize>,
}

impl BatchOutcome {
    /// The ids of the messages to retry (SQS `batchItemFailures`), in message order.
    pub fn batch_item_failures(&self) -> Vec<&str> {
        self.failed_messages.iter().filter_map(|i| self.message_ids.get(*i)).map(String::as_str).collect()
    }

    /// Whether anything failed (then an SNS or direct invocation must fail so that Lambda retries it).
    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    /// The first failure's error, to fail an SNS or direct invocation with.
    pub fn into_error(self) -> Option<StoreError> {
        self.failures.into_iter().next().map(|f| f.error)
    }

    /// Pages published.
    pub fn pages_sent(&self) -> usize {
        self.incidents.iter().map(|i| i.pages_published).sum()
    }

    /// Manifest rows written.
    pub fn manifest_rows(&self) -> usize {
        self.manifests.iter().filter(|m| m.written).map(|m| m.rows).sum()
    }

    /// `processed`, `ignored` (test events only), `quarantined` (nothing else), or `partial_failure`.
    pub fn outcome(&self) -> &'static str {
        if self.has_failures() {
            "partial_failure"
        } else if self.records > 0 {
            "processed"
        } else if !self.quarantined.is_empty() {
            "quarantined"
        } else {
            "ignored"
        }
    }

    /// The answer of an SNS or direct invocation (and the log summary): counts, keys, decisions.
    pub fn summary(&self) -> Value {
        json!({
            "outcome": self.outcome(),
            "source": self.source,
            "batch_id": self.batch_id,
            "messages": self.messages,
            "records": self.records,
            "duplicates": self.duplicates,
            "already_counted": self.already_counted,
            "test_events": self.test_events,
            "counts_by_category": self.counts_by_category,
            "quarantined": self.quarantined.iter().map(|q| json!({
                "message_id": q.message_id, "key": q.key, "error": q.error,
            })).collect::<Vec<_>>(),
            "manifests": self.manifests.iter().map(|m| json!({
                "key": m.key, "source_bucket": m.source_bucket, "rows": m.rows, "fields": m.fields, "written": m.written,
            })).collect::<Vec<_>>(),
            "incidents": self.incidents.iter().map(|i| json!({
                "id": i.id,
                "records": i.records,
                "already_counted": i.already_counted,
                "result": match i.result {
                    IncidentResult::Merged => "merged",
                    IncidentResult::AlreadyMerged => "already_merged",
                    IncidentResult::Deferred => "deferred",
                    IncidentResult::Failed => "failed",
                },
                "page": decision_name(&i.decision),
                "page_sent": i.page == PageStatus::Sent,
                "pages_published": i.pages_published,
                "pages_owed": i.incident.as_ref().map(|d| d.owed_pages.len()),
                "state": i.incident.as_ref().map(|d| d.state),
                "highest_severity": i.incident.as_ref().map(|d| d.highest_severity),
                "total_failed": i.incident.as_ref().map(|d| d.total_failed),
            })).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(|f| json!({
                "what": f.what, "error": f.error.to_string(), "messages": f.messages.len(),
            })).collect::<Vec<_>>(),
            "failover": "never: replication failures are reported as RPO risk, not acted on",
        })
    }
}

fn decision_name(d: &PageDecision) -> Option<&'static str> {
    match d {
        PageDecision::None => None,
        PageDecision::Opened => Some("opened"),
        PageDecision::Escalated { .. } => Some("escalated"),
        PageDecision::Recovered => Some("recovered"),
    }
}

impl BatchOutcome {
    /// Records a failed call and the messages it fails (retried by SQS).
    pub(super) fn fail(&mut self, what: String, error: StoreError, messages: Vec<usize>) {
        tracing::warn!(what = %what, error = %error, messages = messages.len(), "replication batch: a write failed");
        self.failed_messages.extend(messages.iter().copied());
        self.failures.push(Failure { what, error, messages });
    }
}
