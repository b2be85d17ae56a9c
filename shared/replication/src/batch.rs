//! One payload of S3 replication notifications ([`process_batch`]), in three rounds of concurrent AWS calls:
//! read the incidents (beside the quarantine writes), write the manifests of what they have not counted, merge
//! into the incidents (and pay their pages). See the module above for the failure rules.

use super::outcome::{BatchOutcome, IncidentResult, IncidentWrite, ManifestWrite, PageStatus, Quarantined};
use super::{CAS_ATTEMPTS, Ctx, FUNCTION_NAME, PAGE_LEASE, incident_key, messages, pages, store};
use crate::rules::aggregate::{FailedObject, IncidentKey, aggregate};
use crate::rules::event::{Envelope, Payload, ReplicationEventType};
use crate::rules::incident::{PageDecision, merge_delivery};
use crate::rules::ledger::{Delivered, message_fingerprint};
use crate::rules::manifest::build_manifests;
use domain::primitives::{rfc3339, sha256_hex};
use dr_ports::error::StoreError;
use dr_ports::quarantine;
use dr_ports::{Clock, ControlBucket, Notifier, WriteCondition};
use futures_util::future::{join, join_all};
use std::collections::{BTreeMap, BTreeSet};

/// Processes one Lambda payload (SQS, SNS or direct) of S3 replication notifications, read once into `envelope`
/// ([`Envelope::parse`]); `raw` is the payload as received (quarantined verbatim when it is not a shape this function handles, and the identity of a direct
/// invocation's one message). Never fails as a whole: what failed is in [`BatchOutcome::failures`], with the
/// messages to retry.
pub async fn process_batch<B: ControlBucket, N: Notifier, C: Clock>(
    bucket: &B,
    notifier: &N,
    clock: &C,
    environment: &str,
    region: &str,
    envelope: &Envelope<'_>,
    raw: &str,
) -> BatchOutcome {
    let ctx = Ctx::new(bucket, notifier, clock, environment, region);
    let parsed = envelope.payload();
    let messages = message_refs(&parsed, raw);
    let whole = aggregate(parsed.records());
    let mut out = opening_outcome(&parsed, &messages, raw);
    out.records = whole.records;
    out.duplicates = whole.duplicates;
    out.groups = whole.group_count();
    for part in &whole.incidents {
        for (category, n) in part.counts_by_category() {
            *out.counts_by_category.entry(category.to_owned()).or_insert(0) += n;
        }
    }
    let plans = read_round(&ctx, &parsed, &messages, raw, &mut out).await;
    let unwritten = manifest_round(&ctx, &plans, &mut out).await;

    // Round 3: the incidents, without the messages whose manifest rows were not written (their retry counts
    // them, in every incident, and writes their rows then).
    let settled = join_all(plans.iter().map(|plan| {
        let keys: Vec<String> = out
            .manifests
            .iter()
            .filter(|m| m.written && m.source_bucket == plan.key.source_bucket)
            .map(|m| m.key.clone())
            .collect();
        settle_incident(&ctx, plan, &unwritten, keys)
    }))
    .await;
    for (write, failure) in settled {
        if let Some((what, error, messages)) = failure {
            out.fail(what, error, messages);
        }
        out.already_counted += write.already_counted;
        out.incidents.push(write);
    }
    out
}

/// The outcome before any call: where the payload came from, its messages and test events; the counts and
/// every write are filled in by the rounds.
fn opening_outcome(parsed: &Payload<'_>, messages: &[MessageRef<'_>], raw: &str) -> BatchOutcome {
    let test_events = match parsed {
        Payload::Sqs(m) => m.iter().filter(|m| m.parsed.as_ref().is_ok_and(|n| n.test_event)).count(),
        Payload::Sns(m) => m.iter().filter(|m| m.parsed.as_ref().is_ok_and(|n| n.test_event)).count(),
        Payload::Direct(Ok(n)) => usize::from(n.test_event),
        _ => 0,
    };
    BatchOutcome {
        source: parsed.source(),
        batch_id: batch_id(messages, raw),
        messages: messages.len(),
        records: 0,
        duplicates: 0,
        already_counted: 0,
        groups: 0,
        test_events,
        counts_by_category: BTreeMap::new(),
        quarantined: Vec::new(),
        manifests: Vec::new(),
        incidents: Vec::new(),
        failures: Vec::new(),
        message_ids: messages.iter().map(|m| m.id.to_owned()).collect(),
        failed_messages: BTreeSet::new(),
    }
}

/// Round 1: reads every incident (what it counted before), beside the quarantine writes of poison bodies. An
/// incident that cannot be read fails its messages; the others are planned with the records they have not counted.
async fn read_round<'a, B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    parsed: &'a Payload<'a>,
    messages: &[MessageRef<'a>],
    raw: &str,
    out: &mut BatchOutcome,
) -> Vec<Plan<'a>> {
    let bucket = ctx.bucket;
    let incidents = deliveries(parsed, messages);
    let poison = parsed.failures();
    let quarantines = join_all(poison.iter().map(|(i, e)| {
        let body = messages.get(*i).map_or(raw, |m| m.body);
        let error = e.to_string();
        async move { quarantine::keep(bucket, FUNCTION_NAME, body, &error, ctx.now).await }
    }));
    let reads = join_all(incidents.iter().map(|(key, _)| {
        let key = incident_key(&key.id());
        async move { store::read(bucket, &key, ctx.now).await }
    }));
    let (quarantine_results, reads) = join(quarantines, reads).await;
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
    let mut plans = Vec::new();
    for ((key, delivered), read) in incidents.into_iter().zip(reads) {
        let id = key.id();
        match read {
            Ok(read) => {
                let fresh = match &read.incident {
                    Some(stored) => stored.ledger.index().uncounted(&delivered),
                    None => delivered.clone(),
                };
                plans.push(Plan { key, id, delivered, fresh, read });
            }
            Err(error) => {
                out.fail(format!("incident {id}"), error, messages_of(&delivered));
                out.incidents.push(IncidentWrite::failed(id, 0));
            }
        }
    }
    plans
}

/// Round 2: writes the manifests of the failed objects the incidents have not counted. Returns the messages
/// whose manifest rows were not written: round 3 leaves them uncounted, so that their retry writes the rows.
async fn manifest_round<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    plans: &[Plan<'_>],
    out: &mut BatchOutcome,
) -> BTreeSet<usize> {
    let failed_fresh = || {
        plans
            .iter()
            .flat_map(|p| p.fresh.iter())
            .filter(|d| d.record.event_type == ReplicationEventType::OperationFailedReplication)
    };
    let mut objects: Vec<(usize, FailedObject<'_>)> = failed_fresh()
        .map(|d| {
            let r = d.record;
            (d.message, FailedObject { bucket: &r.source_bucket, key: &r.key, version_id: r.version_id.as_deref() })
        })
        .collect();
    objects.sort_by_key(|(message, _)| *message);
    let objects: Vec<FailedObject<'_>> = objects.into_iter().map(|(_, o)| o).collect();
    let manifests = build_manifests(&objects);
    let content = manifest_content_id(manifests.iter().map(|m| m.csv.as_str()));
    let day = rfc3339(ctx.now).get(..10).unwrap_or("unknown").to_owned();
    let manifest_keys: Vec<String> = (1..=manifests.len()).map(|n| domain::layout::manifest(&day, &content, n)).collect();
    let manifest_results = join_all(
        manifests
            .iter()
            .zip(&manifest_keys)
            .map(|(m, key)| ctx.bucket.put(key, m.csv.clone().into_bytes(), "text/csv", WriteCondition::Overwrite)),
    )
    .await;
    let mut unwritten: BTreeSet<usize> = BTreeSet::new();
    for ((m, key), result) in manifests.iter().zip(manifest_keys).zip(manifest_results) {
        let written = match result {
            Ok(_) => true,
            Err(error) => {
                let senders: BTreeSet<usize> = failed_fresh()
                    .filter(|d| d.record.source_bucket == m.source_bucket && d.record.version_id.is_some() == m.with_version_ids)
                    .map(|d| d.message)
                    .collect();
                unwritten.extend(senders.iter().copied());
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
    unwritten
}

/// One incident's share of the batch and what round 1 read of it.
struct Plan<'a> {
    key: IncidentKey,
    id: String,
    /// Its records, with fingerprints.
    delivered: Vec<Delivered<'a>>,
    /// Those the stored incident had not counted when read.
    fresh: Vec<Delivered<'a>>,
    read: store::Read,
}

impl IncidentWrite {
    fn failed(id: String, already_counted: u64) -> IncidentWrite {
        IncidentWrite {
            id,
            records: 0,
            already_counted,
            result: IncidentResult::Failed,
            decision: PageDecision::None,
            page: PageStatus::NotDue,
            pages_published: 0,
            attempts: 0,
            incident: None,
        }
    }
}

/// A failed call of an incident: what, why, the messages to retry.
type IncidentFailure = (String, StoreError, Vec<usize>);

/// Merges one incident's new records (compare-and-swap, starting from round 1's read), records the decided page
/// as owed, claims what it may pay, then pays. Returns the write and, if something failed, what, why and the
/// messages to retry.
async fn settle_incident<B: ControlBucket, N: Notifier>(
    ctx: &Ctx<'_, B, N>,
    plan: &Plan<'_>,
    unwritten: &BTreeSet<usize>,
    manifest_keys: Vec<String>,
) -> (IncidentWrite, Option<IncidentFailure>) {
    let key = incident_key(&plan.id);
    let candidates: Vec<Delivered<'_>> = plan.fresh.iter().filter(|d| !unwritten.contains(&d.message)).copied().collect();
    let mut write = IncidentWrite::failed(plan.id.clone(), (plan.delivered.len() - plan.fresh.len()) as u64);
    let (mut existing, mut condition) = (plan.read.incident.clone(), plan.read.condition.clone());
    let mut attempt = 0;
    let (incident, etag, merged, claimed) = loop {
        attempt += 1;
        write.attempts = attempt;
        let merged = merge_delivery(existing.clone(), &plan.key, &candidates, ctx.now);
        let mut incident = merged.incident.clone();
        messages::owe(ctx, &mut incident, &merged.decision, &manifest_keys);
        let claimed = incident.owed_pages.claim(ctx.now, PAGE_LEASE);
        if merged.counted == 0 && merged.decision == PageDecision::None && claimed.is_empty() {
            // Nothing new to count and nothing to pay: no write.
            write.already_counted += merged.already_counted;
            write.result = if candidates.is_empty() && !plan.fresh.is_empty() {
                IncidentResult::Deferred
            } else {
                IncidentResult::AlreadyMerged
            };
            write.page = if incident.owed_pages.is_empty() { PageStatus::NotDue } else { PageStatus::Held };
            write.incident = existing;
            return (write, None);
        }
        match store::write(ctx.bucket, &key, &incident, condition.clone()).await {
            Ok(etag) => break (incident, etag, merged, claimed),
            Err(StoreError::Conflict { .. }) if attempt < CAS_ATTEMPTS => {
                store::backoff(attempt).await;
                match store::read(ctx.bucket, &key, ctx.now).await {
                    Ok(read) => (existing, condition) = (read.incident, read.condition),
                    Err(e) => return (write, Some((format!("incident {}", plan.id), e, messages_of(&candidates)))),
                }
            }
            Err(e) => return (write, Some((format!("incident {}", plan.id), e, messages_of(&candidates)))),
        }
    };
    write.records = merged.counted;
    write.already_counted += merged.already_counted;
    write.result = if merged.counted > 0 { IncidentResult::Merged } else { IncidentResult::AlreadyMerged };
    write.decision = merged.decision;
    if claimed.is_empty() {
        write.page = if incident.owed_pages.is_empty() { PageStatus::NotDue } else { PageStatus::Held };
        write.incident = Some(incident);
        return (write, None);
    }
    let paid = pages::pay(ctx, &key, incident.clone(), etag, claimed).await;
    write.pages_published = paid.published;
    write.incident = Some(paid.incident.unwrap_or(incident));
    match paid.error {
        None => {
            write.page = PageStatus::Sent;
            (write, None)
        }
        Some(e) => {
            // One message of the incident comes back (SQS) to pay the page soon; the others are acknowledged.
            write.page = PageStatus::Failed;
            let courier = plan.delivered.iter().map(|d| d.message).min().into_iter().collect();
            (write, Some((format!("page of incident {}", plan.id), e, courier)))
        }
    }
}

/// The distinct messages of some records, sorted.
fn messages_of(delivered: &[Delivered<'_>]) -> Vec<usize> {
    delivered.iter().map(|d| d.message).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Every record with its fingerprints, grouped by incident (sorted by key).
fn deliveries<'a>(parsed: &'a Payload<'a>, messages: &[MessageRef<'a>]) -> Vec<(IncidentKey, Vec<Delivered<'a>>)> {
    let fingerprints: Vec<u64> = messages.iter().map(|m| message_fingerprint(&m.identity())).collect();
    let mut by_incident: BTreeMap<(&str, &str), Vec<Delivered<'a>>> = BTreeMap::new();
    for (i, r) in parsed.records() {
        let message = fingerprints.get(i).copied().unwrap_or_default();
        let key = (r.source_bucket.as_str(), r.rule_id.as_deref().unwrap_or(""));
        by_incident.entry(key).or_default().push(Delivered::new(i, message, r));
    }
    by_incident
        .into_iter()
        .map(|((bucket, rule), d)| (IncidentKey { source_bucket: bucket.to_owned(), rule_id: rule.to_owned() }, d))
        .collect()
}

/// A message's id and body (the payload itself for a direct invocation).
struct MessageRef<'a> {
    id: &'a str,
    body: &'a str,
}

impl MessageRef<'_> {
    /// What identifies the message across deliveries: its id, or (without one: a direct invocation) a digest
    /// of its body, which Lambda's retry repeats.
    fn identity(&self) -> String {
        if self.id.is_empty() { format!("sha256:{}", sha256_hex(self.body.as_bytes())) } else { self.id.to_owned() }
    }
}

fn message_refs<'a>(parsed: &Payload<'a>, raw: &'a str) -> Vec<MessageRef<'a>> {
    match parsed {
        Payload::Sqs(m) => m.iter().map(|m| MessageRef { id: m.message_id, body: m.body }).collect(),
        Payload::Sns(m) => m.iter().map(|m| MessageRef { id: m.message_id, body: m.message }).collect(),
        Payload::Direct(_) | Payload::Unrecognized(_) => vec![MessageRef { id: "", body: raw }],
    }
}

/// The batch id, for logs: sha256 of the sorted message ids, or of the payload when a message has no id
/// (direct invocations); 32 hex characters.
fn batch_id(messages: &[MessageRef<'_>], raw: &str) -> String {
    let hex = if !messages.is_empty() && messages.iter().all(|m| !m.id.is_empty()) {
        let mut ids: Vec<&str> = messages.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        sha256_hex(ids.join("\n").as_bytes())
    } else {
        sha256_hex(raw.as_bytes())
    };
    hex.get(..32).unwrap_or(&hex).to_owned()
}

/// The name of a batch's manifests: the first 32 hex characters of the sha256 of their content. The same rows
/// (a whole batch delivered again before its incidents were written) overwrite the same files; other rows never
/// overwrite them.
fn manifest_content_id<'a>(csvs: impl Iterator<Item = &'a str>) -> String {
    let mut all = String::new();
    for csv in csvs {
        all.push_str(csv);
        all.push('\u{1e}');
    }
    let hex = sha256_hex(all.as_bytes());
    hex.get(..32).unwrap_or(&hex).to_owned()
}
