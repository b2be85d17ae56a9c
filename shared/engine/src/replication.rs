//! What the `replication-failure` function does with a batch of S3 replication notifications, over the ports:
//! incidents merged with compare-and-swap, pages once per incident, re-drive manifests, quarantined bodies. Also
//! the scheduled side ([`open_incidents`], [`close_quiet_incidents`]) and the snapshot source ([`IncidentsSource`]).
//!
//! One batch ([`process_batch`]) is two rounds of concurrent AWS calls, whatever its number of records:
//! 1. every unparseable body kept verbatim under `quarantine/` (then acknowledged), beside one PUT per re-drive
//!    manifest (`replication/manifests/{date}/{batch id}-{n}.csv`, one per source bucket and presence of version
//!    ids; the batch id comes from the content, so a redelivered batch overwrites its manifests);
//! 2. per incident, side by side: GET `replication/incidents/{id}.json` with its ETag,
//!    [`merge_batch`](domain::replication::incident::merge_batch), PUT with `If-Match` (`If-None-Match: *`
//!    when new); on a lost race read and merge again, at most [`CAS_ATTEMPTS`] times, so parallel Lambda
//!    instances lose no counts; then the page (`ALARM` when opened or escalated, `OK` when recovered) and the
//!    chat note, side by side.
//!
//! So a batch costs 2 calls per incident, +2 per incident that pages, +1 per manifest, +1 per poison body.
//!
//! Failures, per SQS message (`ReportBatchItemFailures`): a message whose incident could not be written (an AWS
//! error, or [`CAS_ATTEMPTS`] lost races) or whose manifest could not be written is returned as a batch item
//! failure, and only it is retried; the incidents are merged without the messages whose manifest failed, so their
//! retry counts them once. A body that cannot be parsed is acknowledged once it is quarantined (retrying cannot
//! fix it); if the quarantine write fails, the message is retried. SNS and direct invocations are retried whole
//! by Lambda, so any failure there fails the invocation; [`merge_batch`] makes the retry count nothing twice.
//!
//! A page that cannot be published is not lost: the write that recorded it is undone (the incident owes the page
//! again), the incident's messages are retried, and the retry, the next batch of the incident or the scheduled
//! check sends it. Pages carry a stable `AlarmName` per incident, so a page repeated after a crash lands in the
//! same PagerDuty / Opsgenie incident.
//!
//! Replication failures never trigger a failover: failing over to a replica that is behind loses data. Open
//! incidents are reported as RPO risk by `status`, `check`, snapshots and drills ([`open_incidents`]).

use super::quarantine;
use super::snapshot::{SnapshotContext, SnapshotFile, SnapshotSource};
use crate::error::StoreError;
use crate::ports::{Channel, Clock, ControlBucket, Notifier, OutgoingMessage, WriteCondition};
use domain::notification::{self, ChatNote, Envelope, Page, PageState};
use domain::primitives::rfc3339;
use domain::replication::aggregate::{GroupedForIncident, aggregate};
use domain::replication::classify::Severity;
use domain::replication::event::{BatchSource, Payload, ReplicationEventType, parse_payload};
use domain::replication::incident::{Incident, IncidentState, PageDecision, evaluate_quiet, merge_batch, pending_page};
use domain::replication::manifest::build_manifests;
use futures_util::future::{BoxFuture, join, join_all};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Where incident documents live in the control bucket.
pub use domain::layout::INCIDENTS_PREFIX;
/// Where re-drive manifests live in the control bucket.
pub use domain::layout::MANIFESTS_PREFIX;
/// The function name used for quarantined inputs (`quarantine/replication-failure/...`).
pub const FUNCTION_NAME: &str = "replication-failure";
/// Read-merge-write attempts per incident before its messages are retried by SQS instead.
pub const CAS_ATTEMPTS: u32 = 6;
/// The name of the snapshot file written by [`IncidentsSource`].
pub const SNAPSHOT_FILE: &str = "replication-incidents.json";

/// The key of an incident's document.
pub fn incident_key(id: &str) -> String {
    domain::layout::incident(id)
}

/// The stable `AlarmName` of an incident's pages: PagerDuty and Opsgenie key their incident on it.
pub fn alarm_name(environment: &str, incident_id: &str) -> String {
    format!("DR {environment} replication {incident_id}")
}

/// The `incident_key` message attribute (and chat thread id) of an incident's messages.
pub fn incident_attribute(environment: &str, incident_id: &str) -> String {
    format!("dr-{environment}-replication-{incident_id}")
}

// ---------------------------------------------------------------------------------------------------------------
// The outcome of a batch
// ---------------------------------------------------------------------------------------------------------------

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
    /// The batch was merged and written.
    Merged,
    /// The batch had been merged before (a redelivery): nothing counted again.
    AlreadyMerged,
    /// The document could not be written: the incident's messages are retried.
    Failed,
}

/// What happened to the page an incident decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    /// No page was due.
    NotDue,
    /// Published.
    Sent,
    /// Could not be published: forgotten in the document (owed again) and the messages retried.
    Failed,
}

/// One incident of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentWrite {
    /// The incident id.
    pub id: String,
    /// Records the batch contributed.
    pub records: u64,
    /// The document's fate.
    pub result: IncidentResult,
    /// The paging decision.
    pub decision: PageDecision,
    /// The page's fate.
    pub page: PageStatus,
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
    /// The content-derived batch id (manifest names, redelivery detection).
    pub batch_id: String,
    /// Messages in the payload.
    pub messages: usize,
    /// Replication records parsed (duplicates included).
    pub records: u64,
    /// Records dropped as duplicates within the batch.
    pub duplicates: u64,
    /// Groups (source bucket, destination, rule, event type, reason).
    pub groups: usize,
    /// `s3:TestEvent` messages (accepted and ignored).
    pub test_events: usize,
    /// Records per category (`replication_broken`, ...), duplicates excluded.
    pub counts_by_category: BTreeMap<String, u64>,
    /// Bodies that could not be parsed.
    pub quarantined: Vec<Quarantined>,
    /// Re-drive manifests.
    pub manifests: Vec<ManifestWrite>,
    /// Incidents touched.
    pub incidents: Vec<IncidentWrite>,
    /// Failed AWS calls.
    pub failures: Vec<Failure>,
    message_ids: Vec<String>,
    failed_messages: BTreeSet<usize>,
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
        self.incidents.iter().filter(|i| i.page == PageStatus::Sent).count()
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
                "result": match i.result {
                    IncidentResult::Merged => "merged",
                    IncidentResult::AlreadyMerged => "already_merged",
                    IncidentResult::Failed => "failed",
                },
                "page": decision_name(&i.decision),
                "page_sent": i.page == PageStatus::Sent,
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

// ---------------------------------------------------------------------------------------------------------------
// A batch
// ---------------------------------------------------------------------------------------------------------------

/// The ports and settings one batch works with.
struct Ctx<'a, B, N> {
    bucket: &'a B,
    notifier: &'a N,
    environment: &'a str,
    region: &'a str,
    now: OffsetDateTime,
}

/// Processes one Lambda payload (SQS, SNS or direct) of S3 replication notifications; `raw` is the payload as
/// received (quarantined verbatim when it is not a shape this function handles, and hashed into the batch id of
/// a direct invocation). Never fails as a whole: what failed is in [`BatchOutcome::failures`], with the messages
/// to retry.
pub async fn process_batch<B: ControlBucket, N: Notifier, C: Clock>(
    bucket: &B,
    notifier: &N,
    clock: &C,
    environment: &str,
    region: &str,
    payload: &Value,
    raw: &str,
) -> BatchOutcome {
    let ctx = Ctx { bucket, notifier, environment, region, now: clock.now() };
    let parsed = parse_payload(payload);
    let messages = message_refs(&parsed, raw);
    let batch_id = batch_id(&messages, raw);
    let per_message = matches!(parsed, Payload::Sqs(_));
    let test_events = match &parsed {
        Payload::Sqs(m) => m.iter().filter(|m| m.parsed.as_ref().is_ok_and(|n| n.test_event)).count(),
        Payload::Sns(m) => m.iter().filter(|m| m.parsed.as_ref().is_ok_and(|n| n.test_event)).count(),
        Payload::Direct(Ok(n)) => usize::from(n.test_event),
        _ => 0,
    };

    let whole = aggregate(parsed.records());
    let mut counts_by_category: BTreeMap<String, u64> = BTreeMap::new();
    for part in &whole.incidents {
        for (category, n) in part.counts_by_category() {
            *counts_by_category.entry(category.to_owned()).or_insert(0) += n;
        }
    }
    let manifests = build_manifests(&whole.failed_objects);
    let day = rfc3339(ctx.now).get(..10).unwrap_or("unknown").to_owned();
    let manifest_keys: Vec<String> = (1..=manifests.len()).map(|n| domain::layout::manifest(&day, &batch_id, n)).collect();

    // Round 1: quarantine the poison bodies, beside the manifests.
    let poison = parsed.failures();
    let quarantines = join_all(poison.iter().map(|(i, e)| {
        let body = messages.get(*i).map_or(raw, |m| m.body);
        let error = e.to_string();
        async move { quarantine::keep(bucket, FUNCTION_NAME, body, &error, ctx.now).await }
    }));
    let manifest_writes = join_all(
        manifests
            .iter()
            .zip(&manifest_keys)
            .map(|(m, key)| bucket.put(key, m.csv.clone().into_bytes(), "text/csv", WriteCondition::Overwrite)),
    );
    let (quarantine_results, manifest_results) = join(quarantines, manifest_writes).await;

    let mut out = BatchOutcome {
        source: parsed.source(),
        batch_id: batch_id.clone(),
        messages: messages.len(),
        records: whole.records,
        duplicates: whole.duplicates,
        groups: whole.group_count(),
        test_events,
        counts_by_category,
        quarantined: Vec::new(),
        manifests: Vec::new(),
        incidents: Vec::new(),
        failures: Vec::new(),
        message_ids: messages.iter().map(|m| m.id.to_owned()).collect(),
        failed_messages: BTreeSet::new(),
    };
    for ((i, e), result) in poison.iter().zip(quarantine_results) {
        let message_id = messages.get(*i).map(|m| m.id.to_owned()).unwrap_or_default();
        let key = match result {
            Ok(key) => Some(key),
            Err(error) => {
                out.fail(format!("quarantine of message {message_id:?}"), error, vec![*i]);
                None
            }
        };
        out.quarantined.push(Quarantined { message_id, key, error: e.to_string() });
    }
    for ((m, key), result) in manifests.iter().zip(manifest_keys).zip(manifest_results) {
        let written = match result {
            Ok(_) => true,
            Err(error) => {
                let senders: BTreeSet<usize> = parsed
                    .records()
                    .filter(|(_, r)| {
                        r.event_type == ReplicationEventType::OperationFailedReplication
                            && r.source_bucket == m.source_bucket
                            && r.version_id.is_some() == m.with_version_ids
                    })
                    .map(|(i, _)| i)
                    .collect();
                out.fail(format!("manifest {key}"), error, senders.into_iter().collect());
                false
            }
        };
        out.manifests.push(ManifestWrite {
            key,
            source_bucket: m.source_bucket.clone(),
            rows: m.rows,
            fields: m.fields(),
            written,
        });
    }

    // Round 2: the incidents, without the SQS messages already failed (their retry counts them).
    let excluded = if per_message { out.failed_messages.clone() } else { BTreeSet::new() };
    let remaining =
        if excluded.is_empty() { None } else { Some(aggregate(parsed.records().filter(|(i, _)| !excluded.contains(i)))) };
    let parts = remaining.as_ref().map_or(&whole.incidents, |a| &a.incidents);
    let settled = join_all(parts.iter().map(|part| {
        let keys: Vec<String> = out
            .manifests
            .iter()
            .filter(|m| m.written && m.source_bucket == part.key.source_bucket)
            .map(|m| m.key.clone())
            .collect();
        settle_incident(&ctx, part, &batch_id, keys)
    }))
    .await;
    for (part, (write, failure)) in parts.iter().zip(settled) {
        if let Some((what, error)) = failure {
            out.fail(what, error, part.messages.clone());
        }
        out.incidents.push(write);
    }
    out
}

impl BatchOutcome {
    fn fail(&mut self, what: String, error: StoreError, messages: Vec<usize>) {
        tracing::warn!(what = %what, error = %error, messages = messages.len(), "replication batch: a write failed");
        self.failed_messages.extend(messages.iter().copied());
        self.failures.push(Failure { what, error, messages });
    }
}

/// A message's id and body (the payload itself for a direct invocation).
struct MessageRef<'a> {
    id: &'a str,
    body: &'a str,
}

fn message_refs<'a>(parsed: &Payload<'a>, raw: &'a str) -> Vec<MessageRef<'a>> {
    match parsed {
        Payload::Sqs(m) => m.iter().map(|m| MessageRef { id: m.message_id, body: m.body }).collect(),
        Payload::Sns(m) => m.iter().map(|m| MessageRef { id: m.message_id, body: m.message }).collect(),
        Payload::Direct(_) | Payload::Unrecognized(_) => vec![MessageRef { id: "", body: raw }],
    }
}

/// The batch id: sha256 of the sorted message ids (a redelivered SQS or SNS batch has the same ids), or of the
/// payload when a message has no id (direct invocations); 32 hex characters.
fn batch_id(messages: &[MessageRef<'_>], raw: &str) -> String {
    let hex = if !messages.is_empty() && messages.iter().all(|m| !m.id.is_empty()) {
        let mut ids: Vec<&str> = messages.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        domain::primitives::sha256_hex(ids.join("\n").as_bytes())
    } else {
        domain::primitives::sha256_hex(raw.as_bytes())
    };
    hex.get(..32).unwrap_or(&hex).to_owned()
}

/// The paging marks of a document, to undo a page that could not be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Marks {
    pages_sent: u32,
    count_at_last_page: u64,
    severity_at_last_page: Option<Severity>,
    last_page_at: Option<OffsetDateTime>,
}

impl Marks {
    fn of(i: &Incident) -> Marks {
        Marks {
            pages_sent: i.pages_sent,
            count_at_last_page: i.count_at_last_page,
            severity_at_last_page: i.severity_at_last_page,
            last_page_at: i.last_page_at,
        }
    }

    fn restore(self, i: &mut Incident) {
        i.pages_sent = self.pages_sent;
        i.count_at_last_page = self.count_at_last_page;
        i.severity_at_last_page = self.severity_at_last_page;
        i.last_page_at = self.last_page_at;
    }
}

/// Merges one incident's part of the batch (compare-and-swap), then pages. Returns the write and, if something
/// failed, what and why (the caller fails the incident's messages).
async fn settle_incident<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    part: &GroupedForIncident,
    batch_id: &str,
    manifest_keys: Vec<String>,
) -> (IncidentWrite, Option<(String, StoreError)>) {
    let id = part.key.id();
    let key = incident_key(&id);
    let mut write = IncidentWrite {
        id: id.clone(),
        records: part.total(),
        result: IncidentResult::Failed,
        decision: PageDecision::None,
        page: PageStatus::NotDue,
        attempts: 0,
        incident: None,
    };
    let mut attempt = 0;
    let merged = loop {
        attempt += 1;
        write.attempts = attempt;
        match merge_once(ctx, &key, part, batch_id).await {
            Err(StoreError::Conflict { .. }) if attempt < CAS_ATTEMPTS => backoff(attempt).await,
            Err(e) => return (write, Some((format!("incident {id}"), e))),
            Ok(m) => break m,
        }
    };
    write.result = if merged.merged { IncidentResult::Merged } else { IncidentResult::AlreadyMerged };
    write.decision = merged.decision.clone();
    write.incident = Some(merged.incident.clone());
    if merged.decision == PageDecision::None {
        return (write, None);
    }
    match publish_decision(ctx, &merged.incident, &merged.decision, &manifest_keys).await {
        Ok(()) => {
            write.page = PageStatus::Sent;
            (write, None)
        }
        Err(e) => {
            write.page = PageStatus::Failed;
            let occurrence = merged.incident.occurrence;
            let undone = update_incident(ctx.bucket, &key, |inc| {
                (inc.occurrence == occurrence && inc.last_page_at == Some(ctx.now)).then(|| merged.marks_before.restore(inc))
            })
            .await;
            tracing::error!(
                incident = %id, error = %e, undone = undone.is_ok(),
                "page could not be published; the incident owes it and its messages are retried"
            );
            (write, Some((format!("page of incident {id}"), e)))
        }
    }
}

/// One read-merge-write round.
struct Merged {
    incident: Incident,
    decision: PageDecision,
    merged: bool,
    marks_before: Marks,
}

async fn merge_once<B: ControlBucket, N>(
    ctx: &Ctx<'_, B, N>,
    key: &str,
    part: &GroupedForIncident,
    batch_id: &str,
) -> Result<Merged, StoreError> {
    let (existing, condition) = read_incident(ctx.bucket, key, ctx.now).await?;
    let marks_before = existing.as_ref().filter(|i| i.state != IncidentState::Closed).map(Marks::of).unwrap_or_default();
    let m = merge_batch(existing, part, batch_id, ctx.now);
    if m.merged || m.decision != PageDecision::None {
        ctx.bucket.put(key, document(&m.incident)?, "application/json", condition).await?;
    }
    Ok(Merged { incident: m.incident, decision: m.decision, merged: m.merged, marks_before })
}

fn document(incident: &Incident) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec_pretty(incident).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "PutObject",
        message: format!("incident {} cannot be serialized: {e}", incident.id),
    })
}

/// Reads an incident with the condition to write it back. An unreadable document is kept under `quarantine/`
/// and replaced (a new occurrence starts), rather than blocking its incident's pages forever.
async fn read_incident<B: ControlBucket>(
    bucket: &B,
    key: &str,
    now: OffsetDateTime,
) -> Result<(Option<Incident>, WriteCondition), StoreError> {
    let Some(object) = bucket.get(key).await? else { return Ok((None, WriteCondition::IfAbsent)) };
    match serde_json::from_slice::<Incident>(&object.body) {
        Ok(incident) => Ok((Some(incident), WriteCondition::IfMatch(object.etag))),
        Err(e) => {
            let problem = format!("incident document {key} is unreadable ({e}); replaced by a new occurrence");
            let kept = quarantine::keep(bucket, FUNCTION_NAME, &String::from_utf8_lossy(&object.body), &problem, now).await?;
            tracing::error!(key, quarantine_key = %kept, error = %e, "unreadable incident document quarantined and replaced");
            Ok((None, WriteCondition::IfMatch(object.etag)))
        }
    }
}

/// Applies `change` to a stored incident with compare-and-swap (re-reading on a lost race). `change` returns
/// `None` to leave the document alone. Absent or unreadable documents are left alone.
async fn update_incident<B: ControlBucket, T>(
    bucket: &B,
    key: &str,
    mut change: impl FnMut(&mut Incident) -> Option<T>,
) -> Result<Option<(Incident, T)>, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(object) = bucket.get(key).await? else { return Ok(None) };
        let Ok(mut incident) = serde_json::from_slice::<Incident>(&object.body) else {
            tracing::warn!(key, "unreadable incident document left alone (the next batch replaces it)");
            return Ok(None);
        };
        let Some(result) = change(&mut incident) else { return Ok(None) };
        match bucket.put(key, document(&incident)?, "application/json", WriteCondition::IfMatch(object.etag)).await {
            Ok(_) => return Ok(Some((incident, result))),
            Err(StoreError::Conflict { .. }) if attempt < CAS_ATTEMPTS => backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
}

/// Waits a random time below 25 ms x 2^attempt (at most 400 ms): full jitter, so racing instances spread out.
async fn backoff(attempt: u32) {
    let cap = 25u64 << attempt.min(4);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(cap)) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------------

fn severity(s: Severity) -> notification::Severity {
    match s {
        Severity::Info => notification::Severity::Info,
        Severity::Warning => notification::Severity::Warning,
        Severity::Critical => notification::Severity::Critical,
    }
}

/// The page and the chat note of a decision; publishes both side by side. The page must go out; a chat failure
/// is only logged.
async fn publish_decision<B, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    incident: &Incident,
    decision: &PageDecision,
    manifest_keys: &[String],
) -> Result<(), StoreError> {
    let Some((page, chat)) = messages_for(ctx.environment, ctx.region, incident, decision, manifest_keys, ctx.now) else {
        return Ok(());
    };
    let (paged, chatted) = join(ctx.notifier.publish(Channel::Paging, &page), ctx.notifier.publish(Channel::Chat, &chat)).await;
    if let Err(e) = chatted {
        tracing::warn!(incident = %incident.id, error = %e, "chat note could not be published");
    }
    paged.map(|_| ())
}

/// The paging message and the chat note for a decision (`None` for [`PageDecision::None`]).
fn messages_for(
    environment: &str,
    region: &str,
    inc: &Incident,
    decision: &PageDecision,
    manifest_keys: &[String],
    now: OffsetDateTime,
) -> Option<(OutgoingMessage, OutgoingMessage)> {
    let (state, event, verb) = match decision {
        PageDecision::None => return None,
        PageDecision::Opened => (PageState::Alarm, "opened", "Replication incident opened"),
        PageDecision::Escalated { .. } => (PageState::Alarm, "escalated", "Replication incident escalated"),
        PageDecision::Recovered => (PageState::Ok, "recovered", "Replication incident recovered"),
    };
    let envelope = Envelope {
        event_type: format!("replication.incident_{event}"),
        // The OK page keeps the incident's severity, so that a subscription filter routing `critical` to
        // PagerDuty also routes the OK that resolves it.
        severity: severity(inc.highest_severity),
        environment: environment.to_owned(),
        incident_key: incident_attribute(environment, &inc.id),
    };
    let rule = if inc.rule_id.is_empty() { "(no rule id)" } else { inc.rule_id.as_str() };
    let destinations = if inc.destination_buckets.is_empty() {
        "its destination".to_owned()
    } else {
        inc.destination_buckets.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    let headline = if inc.total_failed > 0 {
        format!("{} objects failed to replicate from {} (rule {rule}) to {destinations}", inc.total_failed, inc.source_bucket)
    } else {
        format!("replication from {} (rule {rule}) to {destinations} is behind or no longer tracked", inc.source_bucket)
    };
    let actions = inc.actions();
    let action_lines: Vec<String> = actions
        .iter()
        .filter(|a| a.severity >= Severity::Warning)
        .chain(actions.iter().filter(|a| a.severity < Severity::Warning))
        .take(4)
        .map(|a| format!("{} x{} ({}, {}): {}", a.cause, a.count, a.category.as_str(), a.severity.as_str(), a.action))
        .collect();
    const REDRIVE: &str = "Re-drive the failed objects with S3 Batch Replication using the CSV manifests under \
                           replication/manifests/ in the DR control bucket (docs/replication.md).";
    const NO_FAILOVER: &str = "Replication failures never trigger a failover: the replica is behind, and failing over \
                               now would lose the objects that did not replicate (RPO risk).";
    let reason = match decision {
        PageDecision::Recovered => format!(
            "Recovered: no warning or critical replication event for the quiet period and no lag outstanding. {} \
             objects failed during the incident ({} need action); check that their re-drive completed.",
            inc.total_failed,
            inc.actionable_failed()
        ),
        PageDecision::Escalated { why } => {
            format!("Escalated: {why}. {headline}. {}. {REDRIVE} {NO_FAILOVER}", action_lines.join(". Also: "))
        }
        _ => format!("{headline}. {}. {REDRIVE} {NO_FAILOVER}", action_lines.join(". Also: ")),
    };
    let document = incident_key(&inc.id);
    let mut details = BTreeMap::from([
        ("IncidentId".to_owned(), json!(inc.id)),
        ("Occurrence".to_owned(), json!(inc.occurrence)),
        ("SourceBucket".to_owned(), json!(inc.source_bucket)),
        ("RuleId".to_owned(), json!(inc.rule_id)),
        ("DestinationBuckets".to_owned(), json!(inc.destination_buckets)),
        ("HighestCategory".to_owned(), json!(inc.highest_category)),
        ("TotalFailed".to_owned(), json!(inc.total_failed)),
        ("ActionableFailed".to_owned(), json!(inc.actionable_failed())),
        ("TotalEvents".to_owned(), json!(inc.total_events)),
        ("CountsByReason".to_owned(), json!(inc.counts_by_reason)),
        ("CountsByEventType".to_owned(), json!(inc.counts_by_event_type)),
        ("FirstSeen".to_owned(), json!(inc.first_seen.map(rfc3339))),
        ("LastSeen".to_owned(), json!(inc.last_seen.map(rfc3339))),
        ("SampleKeys".to_owned(), json!(inc.sample_keys.iter().take(5).collect::<Vec<_>>())),
        ("IncidentDocument".to_owned(), json!(document)),
        ("ManifestKeys".to_owned(), json!(manifest_keys)),
        ("Failover".to_owned(), json!("never triggered by replication failures")),
    ]);
    if let PageDecision::Escalated { why } = decision {
        details.insert("Escalation".to_owned(), json!(why));
    }
    let page = notification::paging_message(&Page {
        envelope: envelope.clone(),
        alarm_name: alarm_name(environment, &inc.id),
        state,
        reason,
        description: format!(
            "Databricks DR {environment}: S3 replication of {} (rule {rule}); incident {}, occurrence {}",
            inc.source_bucket, inc.id, inc.occurrence
        ),
        time: rfc3339(now),
        region: region.to_owned(),
        details,
    });

    let by_reason: Vec<String> = inc.counts_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let mut description = format!(
        "*{headline}*\n- failed objects: {} ({} need action), events: {}\n- highest: {} ({})\n",
        inc.total_failed,
        inc.actionable_failed(),
        inc.total_events,
        inc.highest_category.as_str(),
        inc.highest_severity.as_str()
    );
    if !by_reason.is_empty() {
        description.push_str(&format!("- by reason: {}\n", by_reason.join(", ")));
    }
    if let PageDecision::Escalated { why } = decision {
        description.push_str(&format!("- escalated: {why}\n"));
    }
    description.push_str(&format!("- incident document: `{document}`\n"));
    if !manifest_keys.is_empty() {
        description.push_str(&format!("- re-drive manifests of this batch: `{}`\n", manifest_keys.join("`, `")));
    }
    description.push_str(NO_FAILOVER);
    let mut next_steps: Vec<String> = if *decision == PageDecision::Recovered {
        vec!["Check that the re-drive (S3 Batch Replication) of the failed objects completed.".to_owned()]
    } else {
        actions.iter().filter(|a| a.severity >= Severity::Warning).take(3).map(|a| format!("{}: {}", a.cause, a.action)).collect()
    };
    if inc.total_failed > 0 && *decision != PageDecision::Recovered {
        next_steps.push(REDRIVE.to_owned());
    }
    let chat = notification::chat_message(&ChatNote {
        envelope,
        title: format!("{verb}: {} rule {rule} ({})", inc.source_bucket, inc.highest_severity.as_str()),
        description,
        next_steps,
    });
    Some((page, chat))
}

// ---------------------------------------------------------------------------------------------------------------
// The scheduled side: status, check, snapshots
// ---------------------------------------------------------------------------------------------------------------

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

/// A compact view of incidents for answers and reports (`status`, `check`, drill reports): one object each.
pub fn summarize(incidents: &[Incident]) -> Value {
    Value::Array(
        incidents
            .iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "source_bucket": i.source_bucket,
                    "rule_id": i.rule_id,
                    "state": i.state,
                    "highest_severity": i.highest_severity,
                    "highest_category": i.highest_category,
                    "total_failed": i.total_failed,
                    "actionable_failed": i.actionable_failed(),
                    "lag_outstanding": i.lag_outstanding(),
                    "opened_at": rfc3339(i.opened_at),
                    "first_seen": i.first_seen.map(rfc3339),
                    "last_seen": i.last_seen.map(rfc3339),
                    "document": incident_key(&i.id),
                })
            })
            .collect(),
    )
}

/// The scheduled check's part: closes every incident that has been quiet for `quiet` (no warning or critical
/// event received, lag not outstanding), with an `OK` page for those that had paged, and sends the pages still
/// owed by open incidents (a page that could not be published earlier). Each incident is updated with
/// compare-and-swap, concurrently. Returns the ids closed; if any incident failed, the first error (the others
/// were still processed; a page that could not be published is undone so the next check sends it).
pub async fn close_quiet_incidents<B: ControlBucket, N: Notifier, C: Clock>(
    bucket: &B,
    notifier: &N,
    clock: &C,
    environment: &str,
    region: &str,
    quiet: time::Duration,
) -> Result<Vec<String>, StoreError> {
    let ctx = Ctx { bucket, notifier, environment, region, now: clock.now() };
    let keys: Vec<String> = bucket.list(INCIDENTS_PREFIX).await?.into_iter().filter(|k| k.ends_with(".json")).collect();
    let results = join_all(keys.iter().map(|key| close_one(&ctx, key, quiet))).await;
    let mut closed = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(Some(id)) => closed.push(id),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(closed),
    }
}

async fn close_one<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    key: &str,
    quiet: time::Duration,
) -> Result<Option<String>, StoreError> {
    let now = ctx.now;
    let changed = update_incident(ctx.bucket, key, |inc| {
        if inc.state == IncidentState::Closed {
            return None;
        }
        let before = inc.clone();
        let decision = evaluate_quiet(inc, now, quiet);
        if inc.state == IncidentState::Closed {
            return Some((decision, before));
        }
        let owed = pending_page(inc, now);
        (owed != PageDecision::None).then_some((owed, before))
    })
    .await?;
    let Some((incident, (decision, before))) = changed else { return Ok(None) };
    let closed = (incident.state == IncidentState::Closed).then(|| incident.id.clone());
    if let Some(id) = &closed {
        tracing::info!(incident = %id, paged = decision == PageDecision::Recovered, "quiet replication incident closed");
    }
    if decision == PageDecision::None {
        return Ok(closed);
    }
    if let Err(e) = publish_decision(ctx, &incident, &decision, &[]).await {
        // Put the document back as it was, so that the next check sends the page.
        let occurrence = incident.occurrence;
        let undone = update_incident(ctx.bucket, key, |inc| {
            (inc.occurrence == occurrence && inc.last_page_at == Some(now)).then(|| *inc = before.clone())
        })
        .await;
        tracing::error!(incident = %incident.id, error = %e, undone = undone.is_ok(), "page could not be published");
        return Err(e);
    }
    Ok(closed)
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
            let open = open_incidents(&self.bucket).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::memory::{FixedClock, MemBucket, MemNotifier};
    use std::sync::Mutex;
    use time::macros::datetime;

    const ENV: &str = "prod";
    const REGION: &str = "us-west-2";
    const SRC: &str = "databricks-prod-data-use1";
    const UC: &str = "databricks-prod-uc-use1";
    const NOW: OffsetDateTime = datetime!(2024-09-05 21:10 UTC);

    fn record(bucket: &str, rule: &str, key: &str, event: &str, reason: Option<&str>) -> Value {
        let mut data = json!({
            "replicationRuleId": rule,
            "destinationBucket": format!("arn:aws:s3:::{bucket}-replica"),
            "s3Operation": "OBJECT_PUT",
        });
        if let Some(r) = reason {
            data["failureReason"] = json!(r);
        }
        json!({
            "eventVersion": "2.2",
            "eventSource": "aws:s3",
            "eventTime": "2024-09-05T21:00:00.000Z",
            "eventName": format!("Replication:{event}"),
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "versionId": version(key), "size": 1}},
            "replicationEventData": data,
        })
    }

    /// A version id derived from the key (URL-safe, as S3's are).
    fn version(key: &str) -> String {
        format!("v{}", key.replace(|c: char| !c.is_ascii_alphanumeric(), ""))
    }

    fn failed(bucket: &str, rule: &str, key: &str, reason: &str) -> Value {
        record(bucket, rule, key, "OperationFailedReplication", Some(reason))
    }

    fn body(records: Vec<Value>) -> String {
        json!({ "Records": records }).to_string()
    }

    fn sqs(messages: Vec<(&str, String)>) -> Value {
        let records: Vec<Value> = messages
            .into_iter()
            .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs", "awsRegion": REGION}))
            .collect();
        json!({ "Records": records })
    }

    /// `n` failures of one reason, one record per message, ids `{prefix}-{i}`.
    fn storm(prefix: &str, bucket: &str, rule: &str, reason: &str, n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("{prefix}-{i}"), body(vec![failed(bucket, rule, &format!("t/{prefix}/part-{i}.parquet"), reason)])))
            .collect()
    }

    fn sqs_of(messages: &[(String, String)]) -> Value {
        sqs(messages.iter().map(|(id, b)| (id.as_str(), b.clone())).collect())
    }

    async fn run<B: ControlBucket, N: Notifier>(bucket: &B, notifier: &N, clock: &FixedClock, payload: &Value) -> BatchOutcome {
        process_batch(bucket, notifier, clock, ENV, REGION, payload, &payload.to_string()).await
    }

    fn incident(bucket: &MemBucket, id: &str) -> Incident {
        serde_json::from_str(&bucket.text(&incident_key(id)).unwrap()).unwrap()
    }

    fn page_body(m: &OutgoingMessage) -> Value {
        serde_json::from_str(&m.body).unwrap()
    }

    /// A bucket that fails or counts chosen calls.
    #[derive(Default)]
    struct Faulty {
        inner: MemBucket,
        fail_puts_under: Vec<String>,
        conflict_under: Vec<String>,
        calls: Mutex<Vec<String>>,
    }

    impl ControlBucket for Faulty {
        async fn get(&self, key: &str) -> Result<Option<crate::ports::StoredObject>, StoreError> {
            self.calls.lock().unwrap().push(format!("GET {key}"));
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, body: Vec<u8>, ct: &str, condition: WriteCondition) -> Result<String, StoreError> {
            self.calls.lock().unwrap().push(format!("PUT {key}"));
            if self.fail_puts_under.iter().any(|p| key.starts_with(p.as_str())) {
                return Err(StoreError::Transient { service: "S3", operation: "PutObject", message: "SlowDown".into() });
            }
            if self.conflict_under.iter().any(|p| key.starts_with(p.as_str())) {
                return Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.into() });
            }
            self.inner.put(key, body, ct, condition).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
    }

    /// A bucket that lets another batch write an incident between this batch's read and its conditional write:
    /// the interleaving of two Lambda instances, with the real conditional-write check deciding the race.
    struct Interleaving<'a> {
        inner: &'a MemBucket,
        competitor: Mutex<Option<Value>>,
        notifier: &'a MemNotifier,
        clock: &'a FixedClock,
    }

    impl ControlBucket for Interleaving<'_> {
        async fn get(&self, key: &str) -> Result<Option<crate::ports::StoredObject>, StoreError> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, body: Vec<u8>, ct: &str, condition: WriteCondition) -> Result<String, StoreError> {
            if key.starts_with(INCIDENTS_PREFIX) && condition != WriteCondition::Overwrite {
                let competitor = self.competitor.lock().unwrap().take();
                if let Some(payload) = competitor {
                    let other = process_batch(self.inner, self.notifier, self.clock, ENV, REGION, &payload, "").await;
                    assert!(!other.has_failures(), "{:?}", other.failures);
                }
            }
            self.inner.put(key, body, ct, condition).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
    }

    /// Fails the first `n` publishes to the paging topic.
    #[derive(Default)]
    struct Flaky {
        inner: MemNotifier,
        fail_pages: Mutex<u32>,
    }

    impl Notifier for Flaky {
        async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
            let fail = {
                let mut n = self.fail_pages.lock().unwrap();
                let fail = channel == Channel::Paging && *n > 0;
                *n = n.saturating_sub(u32::from(fail));
                fail
            };
            if fail {
                return Err(StoreError::Transient { service: "SNS", operation: "Publish", message: "throttled".into() });
            }
            self.inner.publish(channel, message).await
        }
        async fn publish_all(&self, channel: Channel, messages: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
            self.inner.publish_all(channel, messages).await
        }
        async fn probe(&self, channel: Channel) -> Result<bool, StoreError> {
            self.inner.probe(channel).await
        }
    }

    #[tokio::test]
    async fn one_page_per_new_incident_manifests_and_quarantine() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let poison = r#"{"Records":[{"eventVersion":"2.2","#;
        let payload = sqs(vec![
            ("m1", body(vec![failed(SRC, "delta", "t/a+b%2Bc.parquet", "AssumeRoleNotPermitted")])),
            (
                "m2",
                body(vec![
                    failed(SRC, "delta", "t/2.parquet", "AssumeRoleNotPermitted"),
                    failed(SRC, "delta", "t/3.parquet", "SrcKeyNotFound"),
                ]),
            ),
            ("m3", body(vec![failed(UC, "uc", "u/1.parquet", "DstPutTaggingNotPermitted")])),
            ("m4", body(vec![failed(SRC, "mlflow", "m/1.pkl", "SrcKeyNotFound")])),
            ("m5", r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_owned()),
            ("m6", poison.to_owned()),
        ]);
        let out = run(&bucket, &notifier, &clock, &payload).await;
        assert!(out.batch_item_failures().is_empty(), "{:?}", out.failures);
        assert_eq!(
            (out.source, out.messages, out.records, out.test_events, out.outcome()),
            (BatchSource::Sqs, 6, 5, 1, "processed")
        );
        assert_eq!(out.counts_by_category.get("replication_broken"), Some(&2));
        assert_eq!(out.counts_by_category.get("object_race"), Some(&2));

        // Pages: the critical and the warning incident, not the info-only one.
        let pages = notifier.on(Channel::Paging);
        assert_eq!(pages.len(), 2);
        let by_alarm: BTreeMap<String, Value> =
            pages.iter().map(|m| (page_body(m)["AlarmName"].as_str().unwrap().to_owned(), page_body(m))).collect();
        let role = &by_alarm[&format!("DR prod replication {SRC}__delta")];
        assert_eq!(role["NewStateValue"], "ALARM");
        assert_eq!(role["Severity"], "critical");
        assert_eq!(role["TotalFailed"], 3);
        assert_eq!(role["ActionableFailed"], 2);
        let reason = role["NewStateReason"].as_str().unwrap();
        assert!(reason.contains("the replication role cannot be assumed: check its trust policy"), "{reason}");
        assert!(reason.contains("never trigger a failover"), "{reason}");
        let tagging = &by_alarm[&format!("DR prod replication {UC}__uc")];
        assert_eq!(tagging["Severity"], "warning");
        let attrs = &pages.iter().find(|m| page_body(m)["Severity"] == "critical").unwrap().attributes;
        assert_eq!(attrs["event_type"], "replication.incident_opened");
        assert_eq!(attrs["incident_key"], format!("dr-prod-replication-{SRC}__delta"));
        assert_eq!(notifier.on(Channel::Chat).len(), 2);

        // Incidents, info-only included.
        let doc = incident(&bucket, &format!("{SRC}__delta"));
        assert_eq!((doc.total_failed, doc.pages_sent, doc.merged_batches.len()), (3, 1, 1));
        assert_eq!(doc.counts_by_reason.get("AssumeRoleNotPermitted"), Some(&2));
        assert_eq!(incident(&bucket, &format!("{SRC}__mlflow")).pages_sent, 0);

        // Manifests: one per source bucket, every failed object once, keys encoded.
        assert_eq!(out.manifests.len(), 2);
        let rows: BTreeSet<String> = out
            .manifests
            .iter()
            .flat_map(|m| bucket.text(&m.key).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert_eq!(rows.len(), 5);
        assert!(rows.contains(&format!("{SRC},t/a%20b%2Bc.parquet,vtab2Bcparquet")), "{rows:?}");
        assert!(out.manifests[0].key.starts_with(&format!("replication/manifests/2024-09-05/{}-", out.batch_id)));
        assert_eq!(out.manifests[0].fields, ["Bucket", "Key", "VersionId"]);

        // The poison body, verbatim, acknowledged.
        assert_eq!(out.quarantined.len(), 1);
        let kept: Value = serde_json::from_str(&bucket.text(out.quarantined[0].key.as_ref().unwrap()).unwrap()).unwrap();
        assert_eq!(kept["raw"], poison);
        assert!(kept["error"].as_str().unwrap().contains("not JSON"));

        // More of the same, later: counted, no page.
        let more = sqs(vec![("m7", body(vec![failed(SRC, "delta", "t/7.parquet", "AssumeRoleNotPermitted")]))]);
        let out = run(&bucket, &notifier, &clock, &more).await;
        assert_eq!(out.pages_sent(), 0);
        assert_eq!(notifier.on(Channel::Paging).len(), 2);
        assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 4);
    }

    #[tokio::test]
    async fn escalation_pages_again() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let warn = storm("w", SRC, "delta", "DstPutTaggingNotPermitted", 2);
        run(&bucket, &notifier, &clock, &sqs_of(&warn)).await;
        let crit = storm("c", SRC, "delta", "AssumeRoleNotPermitted", 1);
        let out = run(&bucket, &notifier, &clock, &sqs_of(&crit)).await;
        assert!(matches!(out.incidents[0].decision, PageDecision::Escalated { .. }));
        let grow = storm("g", SRC, "delta", "AssumeRoleNotPermitted", 27);
        run(&bucket, &notifier, &clock, &sqs_of(&grow)).await;
        let pages: Vec<Value> = notifier.on(Channel::Paging).iter().map(page_body).collect();
        let severities: Vec<&str> = pages.iter().map(|p| p["Severity"].as_str().unwrap()).collect();
        assert_eq!(severities, ["warning", "critical", "critical"]);
        assert!(pages.iter().all(|p| p["NewStateValue"] == "ALARM" && p["AlarmName"] == pages[0]["AlarmName"]));
        assert!(pages[1]["NewStateReason"].as_str().unwrap().starts_with("Escalated: highest severity rose from warning"));
        assert!(pages[2]["Escalation"].as_str().unwrap().contains("grew from 3 to 30"), "{:#}", pages[2]);
        assert_eq!(notifier.on(Channel::Paging)[1].attributes["event_type"], "replication.incident_escalated");
    }

    #[tokio::test]
    async fn interleaved_merges_lose_no_counts_and_page_once() {
        let (inner, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let second = storm("b", SRC, "delta", "DstPutObjectNotPermitted", 50);
        let bucket =
            Interleaving { inner: &inner, competitor: Mutex::new(Some(sqs_of(&second))), notifier: &notifier, clock: &clock };
        let first = storm("a", SRC, "delta", "DstPutObjectNotPermitted", 100);
        let out = run(&bucket, &notifier, &clock, &sqs_of(&first)).await;
        assert!(!out.has_failures(), "{:?}", out.failures);
        assert_eq!(out.incidents[0].attempts, 2, "lost the race once, then merged into the winner's document");
        assert_eq!(out.incidents[0].decision, PageDecision::None, "the winner paged");
        let doc = incident(&inner, &format!("{SRC}__delta"));
        assert_eq!((doc.total_failed, doc.batches_merged, doc.pages_sent), (150, 2, 1));
        assert_eq!(notifier.on(Channel::Paging).len(), 1);
    }

    #[tokio::test]
    async fn a_redelivered_batch_counts_and_pages_once() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let payload = sqs_of(&storm("r", SRC, "delta", "DstKmsKeyNotFound", 20));
        let first = run(&bucket, &notifier, &clock, &payload).await;
        clock.advance(time::Duration::minutes(7));
        let again = run(&bucket, &notifier, &clock, &payload).await;
        assert_eq!(again.incidents[0].result, IncidentResult::AlreadyMerged);
        assert_eq!((again.pages_sent(), notifier.on(Channel::Paging).len()), (0, 1));
        assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 20);
        assert_eq!(again.batch_id, first.batch_id);
        assert_eq!(again.manifests[0].key, first.manifests[0].key, "overwritten, not duplicated");
        assert_eq!(bucket.keys().iter().filter(|k| k.starts_with(MANIFESTS_PREFIX)).count(), 1);
    }

    #[tokio::test]
    async fn failed_writes_become_batch_item_failures() {
        let notifier = MemNotifier::default();
        let clock = FixedClock::at(NOW);
        let bucket = Faulty { fail_puts_under: vec![incident_key(&format!("{UC}__uc"))], ..Faulty::default() };
        let payload = sqs(vec![
            ("ok-1", body(vec![failed(SRC, "delta", "t/1", "AssumeRoleNotPermitted")])),
            ("bad-1", body(vec![failed(UC, "uc", "u/1", "AssumeRoleNotPermitted")])),
            ("bad-2", body(vec![record(UC, "uc", "u/2", "OperationMissedThreshold", None)])),
        ]);
        let out = run(&bucket, &notifier, &clock, &payload).await;
        assert_eq!(out.batch_item_failures(), ["bad-1", "bad-2"]);
        assert_eq!(out.outcome(), "partial_failure");
        assert_eq!(notifier.on(Channel::Paging).len(), 1, "the incident that was written still pages");
        assert!(bucket.inner.text(&incident_key(&format!("{SRC}__delta"))).is_some());

        // A manifest that cannot be written fails its messages, which the incident then leaves out.
        let bucket = Faulty { fail_puts_under: vec![MANIFESTS_PREFIX.to_owned()], ..Faulty::default() };
        let payload = sqs(vec![
            ("lag", body(vec![record(SRC, "delta", "t/9", "OperationMissedThreshold", None)])),
            ("fail", body(vec![failed(SRC, "delta", "t/1", "DstPutObjectNotPermitted")])),
        ]);
        let out = run(&bucket, &notifier, &clock, &payload).await;
        assert_eq!(out.batch_item_failures(), ["fail"]);
        let doc: Incident = serde_json::from_str(&bucket.inner.text(&incident_key(&format!("{SRC}__delta"))).unwrap()).unwrap();
        assert_eq!((doc.total_events, doc.total_failed), (1, 0), "the retry of `fail` will count it");

        // Lost races beyond the bound: retried by SQS rather than spinning.
        let bucket = Faulty { conflict_under: vec![INCIDENTS_PREFIX.to_owned()], ..Faulty::default() };
        let out = run(&bucket, &notifier, &clock, &sqs_of(&storm("x", SRC, "delta", "AssumeRoleNotPermitted", 3))).await;
        assert_eq!(out.batch_item_failures(), ["x-0", "x-1", "x-2"]);
        assert_eq!(out.incidents[0].attempts, CAS_ATTEMPTS);
        assert!(matches!(out.into_error(), Some(StoreError::Conflict { .. })));

        // A poison body that cannot be quarantined is retried (never dropped).
        let bucket = Faulty { fail_puts_under: vec!["quarantine/".to_owned()], ..Faulty::default() };
        let out = run(&bucket, &notifier, &clock, &sqs(vec![("p", "not json".to_owned())])).await;
        assert_eq!(out.batch_item_failures(), ["p"]);
    }

    #[tokio::test]
    async fn aws_calls_grow_with_incidents_not_records() {
        let (notifier, clock) = (MemNotifier::default(), FixedClock::at(NOW));
        let bucket = Faulty::default();
        let mut messages = storm("a", SRC, "delta", "DstPutObjectNotPermitted", 400);
        messages.extend(storm("b", UC, "uc", "AssumeRoleNotPermitted", 400));
        let out = run(&bucket, &notifier, &clock, &sqs_of(&messages)).await;
        assert_eq!(out.records, 800);
        let calls = bucket.calls.lock().unwrap().clone();
        // 2 incidents x (GET + PUT) + 2 manifests; 2 pages + 2 chat notes.
        assert_eq!(calls.len(), 6, "{calls:?}");
        assert_eq!(notifier.sent.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_published_is_owed_and_paid_by_the_retry() {
        let (bucket, clock) = (MemBucket::default(), FixedClock::at(NOW));
        let notifier = Flaky { fail_pages: Mutex::new(1), ..Flaky::default() };
        // A direct invocation: Lambda retries the same payload.
        let payload = json!({ "Records": [failed(SRC, "delta", "t/1", "AssumeRoleNotPermitted")] });
        let out = run(&bucket, &notifier, &clock, &payload).await;
        assert_eq!(out.incidents[0].page, PageStatus::Failed);
        assert!(out.has_failures());
        let doc = incident(&bucket, &format!("{SRC}__delta"));
        assert_eq!((doc.total_failed, doc.pages_sent, doc.severity_at_last_page), (1, 0, None), "counted, page owed");

        clock.advance(time::Duration::seconds(30));
        let retry = run(&bucket, &notifier, &clock, &payload).await;
        assert!(!retry.has_failures(), "{:?}", retry.failures);
        assert_eq!((retry.incidents[0].result, retry.incidents[0].page), (IncidentResult::AlreadyMerged, PageStatus::Sent));
        let doc = incident(&bucket, &format!("{SRC}__delta"));
        assert_eq!((doc.total_failed, doc.pages_sent), (1, 1), "paid once, counted once");
        assert_eq!(notifier.inner.on(Channel::Paging).len(), 1);
    }

    #[tokio::test]
    async fn quiet_incidents_close_with_ok_and_leave_the_open_list() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        run(&bucket, &notifier, &clock, &sqs_of(&storm("a", SRC, "delta", "DstPutObjectNotPermitted", 3))).await;
        run(&bucket, &notifier, &clock, &sqs_of(&storm("b", SRC, "mlflow", "SrcKeyNotFound", 3))).await;
        let open = open_incidents(&bucket).await.unwrap();
        assert_eq!(open.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [format!("{SRC}__delta"), format!("{SRC}__mlflow")]);
        assert_eq!(summarize(&open)[0]["document"], format!("replication/incidents/{SRC}__delta.json"));

        let quiet = time::Duration::minutes(30);
        clock.advance(time::Duration::minutes(10));
        assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap().is_empty());
        clock.advance(time::Duration::minutes(25));
        let mut closed = close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap();
        closed.sort();
        assert_eq!(closed, [format!("{SRC}__delta"), format!("{SRC}__mlflow")]);
        let pages = notifier.on(Channel::Paging);
        assert_eq!(pages.len(), 2, "ALARM, then OK; the info-only incident closes silently");
        let ok = page_body(&pages[1]);
        assert_eq!((ok["NewStateValue"].as_str(), ok["Severity"].as_str()), (Some("OK"), Some("critical")));
        assert_eq!(ok["AlarmName"], page_body(&pages[0])["AlarmName"]);
        assert_eq!(pages[1].attributes["event_type"], "replication.incident_recovered");
        assert!(open_incidents(&bucket).await.unwrap().is_empty());
        assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap().is_empty());

        // The next failure opens a new occurrence, and pages again.
        let out = run(&bucket, &notifier, &clock, &sqs_of(&storm("c", SRC, "delta", "DstPutObjectNotPermitted", 1))).await;
        assert_eq!(out.incidents[0].decision, PageDecision::Opened);
        assert_eq!(incident(&bucket, &format!("{SRC}__delta")).occurrence, 2);
    }

    #[tokio::test]
    async fn the_check_pays_an_owed_page_and_retries_an_ok_that_failed() {
        let (bucket, clock) = (MemBucket::default(), FixedClock::at(NOW));
        let notifier = Flaky { fail_pages: Mutex::new(1), ..Flaky::default() };
        let out = run(&bucket, &notifier, &clock, &sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2))).await;
        assert_eq!(out.batch_item_failures(), ["a-0", "a-1"]);
        let quiet = time::Duration::hours(1);
        assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap().is_empty());
        assert_eq!(notifier.inner.on(Channel::Paging).len(), 1, "the check sent the owed ALARM");

        *notifier.fail_pages.lock().unwrap() = 1;
        clock.advance(time::Duration::hours(2));
        assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.is_err());
        assert_eq!(incident(&bucket, &format!("{SRC}__delta")).state, IncidentState::Open, "put back: the OK is owed");
        let closed = close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap();
        assert_eq!(closed.len(), 1);
        let states: Vec<Value> =
            notifier.inner.on(Channel::Paging).iter().map(|m| page_body(m)["NewStateValue"].clone()).collect();
        assert_eq!(states, ["ALARM", "OK"]);
    }

    #[tokio::test]
    async fn an_unreadable_incident_document_is_quarantined_and_replaced() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let key = incident_key(&format!("{SRC}__delta"));
        bucket.put(&key, b"{ truncated".to_vec(), "application/json", WriteCondition::Overwrite).await.unwrap();
        let out = run(&bucket, &notifier, &clock, &sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2))).await;
        assert!(!out.has_failures(), "{:?}", out.failures);
        assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 2);
        let kept = bucket.keys().into_iter().find(|k| k.starts_with("quarantine/replication-failure/")).unwrap();
        assert!(bucket.text(&kept).unwrap().contains("{ truncated"));
        assert_eq!(notifier.on(Channel::Paging).len(), 1);
    }

    #[tokio::test]
    async fn sns_direct_test_and_unrecognized_payloads() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {
            "MessageId": "sns-1", "Message": body(vec![failed(SRC, "delta", "t/1", "DstBucketNotFound")])}}]});
        let out = run(&bucket, &notifier, &clock, &sns).await;
        assert_eq!((out.source, out.outcome(), out.pages_sent()), (BatchSource::Sns, "processed", 1));
        assert_eq!(out.summary()["incidents"][0]["page"], "opened");

        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": SRC});
        let out = run(&bucket, &notifier, &clock, &test).await;
        assert_eq!((out.source, out.outcome(), out.test_events), (BatchSource::Direct, "ignored", 1));

        let odd = json!({"detail-type": "Object Created"});
        let out = run(&bucket, &notifier, &clock, &odd).await;
        assert_eq!(out.outcome(), "quarantined");
        let kept: Value = serde_json::from_str(&bucket.text(out.quarantined[0].key.as_ref().unwrap()).unwrap()).unwrap();
        assert_eq!(kept["raw"], odd.to_string());
    }

    #[tokio::test]
    async fn the_snapshot_source_lists_open_incidents() {
        let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
        run(&bucket, &notifier, &clock, &sqs_of(&storm("a", SRC, "delta", "DstPutObjectNotPermitted", 4))).await;
        let source = IncidentsSource { bucket };
        let ctx = SnapshotContext { tree: &[], prefix: "/dr/prod", now: NOW };
        let files = source.collect(&ctx).await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, SNAPSHOT_FILE);
        let v: Value = serde_json::from_slice(&files[0].body).unwrap();
        assert_eq!(
            (v["rpo_risk"].as_bool(), v["open_incidents"].as_u64(), v["failed_objects"].as_u64()),
            (Some(true), Some(1), Some(4))
        );
        assert_eq!(v["incidents"][0]["counts_by_reason"]["DstPutObjectNotPermitted"], 4);
    }
}
