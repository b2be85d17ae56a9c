//! Unit tests of the replication batch, the incident store, owed pages and the quiet-close, over the in-memory
//! ports and fakes that fail, hang or interleave chosen calls.
use super::*;
use crate::rules::event::{BatchSource, Envelope};
use crate::rules::incident::{Incident, IncidentState, PageDecision};
use dr_ports::error::StoreError;
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier};
use dr_ports::snapshot::{SnapshotContext, SnapshotSource};
use dr_ports::{Channel, OutgoingMessage, WriteCondition};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use time::OffsetDateTime;
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
    let raw = payload.to_string();
    let envelope = Envelope::parse(&raw).unwrap();
    process_batch(bucket, notifier, clock, ENV, REGION, &envelope, &raw).await
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
    /// Writes under these prefixes are applied, then answered with an error (a lost answer), this many times.
    lose_answers_under: Vec<String>,
    answers_to_lose: Mutex<u32>,
    calls: Mutex<Vec<String>>,
}

impl ControlBucket for Faulty {
    async fn get(&self, key: &str) -> Result<Option<dr_ports::StoredObject>, StoreError> {
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
        let written = self.inner.put(key, body, ct, condition).await?;
        if self.lose_answers_under.iter().any(|p| key.starts_with(p.as_str())) {
            let mut n = self.answers_to_lose.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return Err(StoreError::Transient { service: "S3", operation: "PutObject", message: "timed out".into() });
            }
        }
        Ok(written)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
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
    async fn get(&self, key: &str) -> Result<Option<dr_ports::StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, ct: &str, condition: WriteCondition) -> Result<String, StoreError> {
        if key.starts_with(INCIDENTS_PREFIX) && condition != WriteCondition::Overwrite {
            let competitor = self.competitor.lock().unwrap().take();
            if let Some(payload) = competitor {
                let text = payload.to_string();
                let envelope = Envelope::parse(&text).unwrap();
                let other = process_batch(self.inner, self.notifier, self.clock, ENV, REGION, &envelope, "").await;
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
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
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
    assert_eq!((out.source, out.messages, out.records, out.test_events, out.outcome()), (BatchSource::Sqs, 6, 5, 1, "processed"));
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
    assert_eq!((doc.total_failed, doc.pages_sent, doc.owed_pages.len()), (3, 1, 0), "paged, settled");
    assert_eq!(doc.ledger.len(), 2, "the fingerprints of messages m1 and m2 (no sequencer in these records)");
    assert_eq!(doc.counts_by_reason.get("AssumeRoleNotPermitted"), Some(&2));
    assert_eq!(incident(&bucket, &format!("{SRC}__mlflow")).pages_sent, 0);

    // Manifests: one per source bucket, every failed object once, keys encoded.
    assert_eq!(out.manifests.len(), 2);
    let rows: BTreeSet<String> =
        out.manifests.iter().flat_map(|m| bucket.text(&m.key).unwrap().lines().map(str::to_owned).collect::<Vec<_>>()).collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.contains(&format!("{SRC},t/a%20b%2Bc.parquet,vtab2Bcparquet")), "{rows:?}");
    // Named after their content: the same rows land in the same file, other rows never overwrite it.
    let name = out.manifests[0].key.strip_prefix("replication/manifests/2024-09-05/").unwrap();
    assert!(name.len() == 32 + "-1.csv".len() && name.ends_with("-1.csv"), "{name}");
    assert_eq!(out.manifests[1].key, out.manifests[0].key.replace("-1.csv", "-2.csv"));
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
    assert_eq!((again.incidents[0].result, again.incidents[0].already_counted), (IncidentResult::AlreadyMerged, 20));
    assert_eq!((again.pages_sent(), notifier.on(Channel::Paging).len()), (0, 1));
    assert_eq!((again.already_counted, again.summary()["already_counted"].as_u64()), (20, Some(20)));
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 20);
    assert_eq!(again.batch_id, first.batch_id);
    assert!(again.manifests.is_empty(), "nothing new: no manifest written again");
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
    // 2 incidents x (GET + PUT) + 2 manifests + 2 settles of the paid pages (PUT If-Match, no GET); 2 pages +
    // 2 chat notes.
    assert_eq!(calls.len(), 8, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("GET")).count(), 2);
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
    assert_eq!((doc.total_failed, doc.pages_sent, doc.owed_pages.len()), (1, 1, 1), "counted, page decided and owed");
    let owed = doc.owed_pages.iter().next().unwrap();
    assert_eq!((owed.claimed_until, owed.failed_attempts), (None, 1), "released for the next writer");

    clock.advance(time::Duration::seconds(30));
    let retry = run(&bucket, &notifier, &clock, &payload).await;
    assert!(!retry.has_failures(), "{:?}", retry.failures);
    assert_eq!((retry.incidents[0].result, retry.incidents[0].page), (IncidentResult::AlreadyMerged, PageStatus::Sent));
    let doc = incident(&bucket, &format!("{SRC}__delta"));
    assert_eq!((doc.total_failed, doc.pages_sent, doc.owed_pages.len()), (1, 1, 0), "paid once, counted once");
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
    assert_eq!(out.batch_item_failures(), ["a-0"], "counted: one message comes back to pay the page");
    let quiet = time::Duration::hours(1);
    assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap().is_empty());
    assert_eq!(notifier.inner.on(Channel::Paging).len(), 1, "the check sent the owed ALARM");

    *notifier.fail_pages.lock().unwrap() = 1;
    clock.advance(time::Duration::hours(2));
    assert!(close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.is_err());
    let doc = incident(&bucket, &format!("{SRC}__delta"));
    assert_eq!((doc.state, doc.owed_pages.len()), (IncidentState::Closed, 1), "closed; its OK owed, not undone");
    let closed = close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, quiet).await.unwrap();
    assert!(closed.is_empty(), "closed by the check before: this one pays its OK");
    assert!(incident(&bucket, &format!("{SRC}__delta")).owed_pages.is_empty());
    let states: Vec<Value> = notifier.inner.on(Channel::Paging).iter().map(|m| page_body(m)["NewStateValue"].clone()).collect();
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
    let ctx = SnapshotContext { tree: &[], prefix: "/dr/prod", now: NOW, patient: false };
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

// ----- issue 11 case 13: per-message idempotency, owed pages, the check undoing only its own change -----

/// Every manifest row in the bucket, with repeats (sorted).
fn manifest_lines(bucket: &MemBucket) -> Vec<String> {
    let mut rows: Vec<String> = bucket
        .keys()
        .iter()
        .filter(|k| k.starts_with(MANIFESTS_PREFIX))
        .flat_map(|k| bucket.text(k).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    rows.sort();
    rows
}

/// A record as S3 writes it, with its `sequencer`.
fn sequenced(bucket: &str, rule: &str, key: &str, reason: &str, sequencer: &str) -> Value {
    let mut r = failed(bucket, rule, key, reason);
    r["s3"]["object"]["sequencer"] = json!(sequencer);
    r
}

#[tokio::test]
async fn a_message_redelivered_alone_counts_once_and_repeats_no_manifest_row() {
    let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
    let messages = storm("m", SRC, "delta", "DstPutObjectNotPermitted", 3);
    run(&bucket, &notifier, &clock, &sqs_of(&messages)).await;
    let rows = manifest_lines(&bucket);
    assert_eq!(rows.len(), 3);

    // SQS redelivers one message (its batch's answer was lost); Lambda hands it over alone.
    clock.advance(time::Duration::minutes(7));
    let alone = run(&bucket, &notifier, &clock, &sqs_of(&messages[1..2])).await;
    assert!(!alone.has_failures(), "{:?}", alone.failures);
    let doc = incident(&bucket, &format!("{SRC}__delta"));
    assert_eq!((doc.total_events, doc.total_failed), (3, 3), "counted once");
    assert_eq!(manifest_lines(&bucket), rows, "no manifest row repeated");
    assert_eq!(notifier.on(Channel::Paging).len(), 1);

    // Regrouped with a new message: only the new one counts, and only its row is added.
    let mut regrouped = messages[..2].to_vec();
    regrouped.extend(storm("n", SRC, "delta", "DstPutObjectNotPermitted", 1));
    let out = run(&bucket, &notifier, &clock, &sqs_of(&regrouped)).await;
    assert!(!out.has_failures(), "{:?}", out.failures);
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 4);
    let mut expected = rows.clone();
    expected.push(format!("{SRC},t/n/part-0.parquet,vtnpart0parquet"));
    expected.sort();
    assert_eq!(manifest_lines(&bucket), expected);
}

#[tokio::test]
async fn a_duplicate_notification_in_another_message_counts_once() {
    let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
    let record = sequenced(SRC, "delta", "t/dup.parquet", "DstPutObjectNotPermitted", "0066DA1CBF104C0D51");
    run(&bucket, &notifier, &clock, &sqs(vec![("s3-first", body(vec![record.clone()]))])).await;
    clock.advance(time::Duration::minutes(3));
    // S3 delivered the same event twice: another SQS message id, the same object, version and sequencer.
    let other = sequenced(SRC, "delta", "t/other.parquet", "DstPutObjectNotPermitted", "0066DA1CBF104C0D99");
    run(&bucket, &notifier, &clock, &sqs(vec![("s3-again", body(vec![record])), ("s3-other", body(vec![other]))])).await;
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 2);
    assert_eq!(manifest_lines(&bucket).len(), 2);
}

/// A notifier whose publishes never finish: the function is killed (timeout, crash) while paging.
#[derive(Default)]
struct Hanging;

impl Notifier for Hanging {
    async fn publish(&self, _: Channel, _: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        std::future::pending().await
    }
    async fn publish_all(&self, _: Channel, _: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
        std::future::pending().await
    }
    async fn probe(&self, _: Channel) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// Runs a batch that is killed while it pages (the future is dropped, as a crashed instance stops).
async fn crash_while_paging(bucket: &MemBucket, clock: &FixedClock, payload: &Value) {
    let killed = tokio::time::timeout(std::time::Duration::from_millis(200), run(bucket, &Hanging, clock, payload)).await;
    assert!(killed.is_err(), "the batch was still paging when it was killed");
}

#[tokio::test]
async fn a_page_lost_to_a_crash_is_paid_by_the_check() {
    let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
    crash_while_paging(&bucket, &clock, &sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2))).await;
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 2, "counted before the crash");

    clock.advance(time::Duration::minutes(5));
    let closed = close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, time::Duration::hours(1)).await.unwrap();
    assert!(closed.is_empty());
    let pages = notifier.on(Channel::Paging);
    assert_eq!(pages.len(), 1, "the check paid the opened page the crash lost");
    assert_eq!(page_body(&pages[0])["NewStateValue"], "ALARM");
    assert_eq!(pages[0].attributes["event_type"], "replication.incident_opened");
    close_quiet_incidents(&bucket, &notifier, &clock, ENV, REGION, time::Duration::hours(1)).await.unwrap();
    assert_eq!(notifier.on(Channel::Paging).len(), 1, "paid once");
}

#[tokio::test]
async fn a_page_lost_to_a_crash_is_paid_by_the_next_delivery() {
    let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
    let first = storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2);
    crash_while_paging(&bucket, &clock, &sqs_of(&first)).await;

    // The crashed batch comes back after the visibility timeout, regrouped with a new message.
    clock.advance(time::Duration::minutes(6));
    let mut again = first.clone();
    again.extend(storm("b", SRC, "delta", "AssumeRoleNotPermitted", 1));
    let out = run(&bucket, &notifier, &clock, &sqs_of(&again)).await;
    assert!(!out.has_failures(), "{:?}", out.failures);
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 3);
    let pages = notifier.on(Channel::Paging);
    assert_eq!(pages.len(), 1, "the opened page, once");
    assert_eq!(pages[0].attributes["event_type"], "replication.incident_opened");
}

#[tokio::test]
async fn a_write_applied_whose_answer_was_lost_still_pages() {
    let (notifier, clock) = (MemNotifier::default(), FixedClock::at(NOW));
    let bucket =
        Faulty { lose_answers_under: vec![INCIDENTS_PREFIX.to_owned()], answers_to_lose: Mutex::new(1), ..Faulty::default() };
    let payload = sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2));
    let out = run(&bucket, &notifier, &clock, &payload).await;
    assert_eq!(out.batch_item_failures(), ["a-0", "a-1"], "the write looked failed: retried");
    assert!(notifier.on(Channel::Paging).is_empty());

    clock.advance(time::Duration::minutes(6));
    let retry = run(&bucket, &notifier, &clock, &payload).await;
    assert!(!retry.has_failures(), "{:?}", retry.failures);
    assert_eq!(incident(&bucket.inner, &format!("{SRC}__delta")).total_failed, 2, "counted once");
    assert_eq!(notifier.on(Channel::Paging).len(), 1, "the opened page is not lost with the answer");
}

/// A notifier that lets another batch merge while it publishes the first page, then fails that page (or, with
/// `then_publish`, publishes it).
struct Meddling<'a> {
    inner: MemNotifier,
    bucket: &'a MemBucket,
    clock: &'a FixedClock,
    batch: Mutex<Option<Value>>,
    then_publish: bool,
}

impl Notifier for Meddling<'_> {
    async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        let batch = if channel == Channel::Paging { self.batch.lock().unwrap().take() } else { None };
        if let Some(payload) = batch {
            let text = payload.to_string();
            let envelope = Envelope::parse(&text).unwrap();
            let other = process_batch(self.bucket, &self.inner, self.clock, ENV, REGION, &envelope, "").await;
            assert!(!other.has_failures(), "{:?}", other.failures);
            assert_eq!(other.pages_sent(), 0, "the page it decided waits behind the one being paid");
            if !self.then_publish {
                return Err(StoreError::Transient { service: "SNS", operation: "Publish", message: "throttled".into() });
            }
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
async fn the_checks_failed_page_keeps_what_a_concurrent_batch_merged() {
    let (bucket, clock) = (MemBucket::default(), FixedClock::at(NOW));
    let flaky = Flaky { fail_pages: Mutex::new(1), ..Flaky::default() };
    run(&bucket, &flaky, &clock, &sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2))).await;
    assert!(flaky.inner.on(Channel::Paging).is_empty(), "the opened page is owed");

    // The check pays the owed page; while it publishes, a batch merges 5 more failures; the page fails.
    clock.advance(time::Duration::minutes(10));
    let more = sqs_of(&storm("b", SRC, "delta", "AssumeRoleNotPermitted", 5));
    let meddling = Meddling {
        inner: MemNotifier::default(),
        bucket: &bucket,
        clock: &clock,
        batch: Mutex::new(Some(more)),
        then_publish: false,
    };
    let quiet = time::Duration::hours(1);
    assert!(close_quiet_incidents(&bucket, &meddling, &clock, ENV, REGION, quiet).await.is_err());
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 7, "the concurrent batch's counts are kept");

    // The next check pays the page, once.
    clock.advance(time::Duration::minutes(10));
    close_quiet_incidents(&bucket, &meddling, &clock, ENV, REGION, quiet).await.unwrap();
    let pages = meddling.inner.on(Channel::Paging);
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(page_body(&pages[0])["NewStateValue"], "ALARM");
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 7);
}

#[tokio::test]
async fn an_ok_that_failed_while_the_incident_reopened_is_paid_before_the_new_alarm() {
    let (bucket, clock) = (MemBucket::default(), FixedClock::at(NOW));
    let first = MemNotifier::default();
    run(&bucket, &first, &clock, &sqs_of(&storm("a", SRC, "delta", "AssumeRoleNotPermitted", 2))).await;
    assert_eq!(first.on(Channel::Paging).len(), 1);

    // Quiet: the check closes the incident; while it publishes the OK, a new failure reopens it; the OK fails.
    clock.advance(time::Duration::hours(2));
    let reopen = sqs_of(&storm("b", SRC, "delta", "AssumeRoleNotPermitted", 1));
    let meddling = Meddling {
        inner: MemNotifier::default(),
        bucket: &bucket,
        clock: &clock,
        batch: Mutex::new(Some(reopen)),
        then_publish: false,
    };
    let quiet = time::Duration::hours(1);
    assert!(close_quiet_incidents(&bucket, &meddling, &clock, ENV, REGION, quiet).await.is_err());
    let doc = incident(&bucket, &format!("{SRC}__delta"));
    assert_eq!((doc.occurrence, doc.state, doc.total_failed), (2, IncidentState::Open, 1));

    // The next check sends the OK of the first occurrence, then the ALARM of the second: in that order.
    clock.advance(time::Duration::minutes(10));
    close_quiet_incidents(&bucket, &meddling, &clock, ENV, REGION, quiet).await.unwrap();
    let states: Vec<(Value, Value)> = meddling
        .inner
        .on(Channel::Paging)
        .iter()
        .map(|m| (page_body(m)["NewStateValue"].clone(), page_body(m)["Occurrence"].clone()))
        .collect();
    assert_eq!(states, [(json!("OK"), json!(1)), (json!("ALARM"), json!(2))]);
}

#[tokio::test]
async fn a_page_decided_while_another_is_paid_is_sent_after_it_by_that_payer() {
    let (bucket, clock) = (MemBucket::default(), FixedClock::at(NOW));
    // While the opened (warning) page goes out, a concurrent batch escalates the incident to critical.
    let escalate = sqs_of(&storm("c", SRC, "delta", "AssumeRoleNotPermitted", 1));
    let meddling = Meddling {
        inner: MemNotifier::default(),
        bucket: &bucket,
        clock: &clock,
        batch: Mutex::new(Some(escalate)),
        then_publish: true,
    };
    let out = run(&bucket, &meddling, &clock, &sqs_of(&storm("w", SRC, "delta", "DstPutTaggingNotPermitted", 2))).await;
    assert!(!out.has_failures(), "{:?}", out.failures);
    assert_eq!(out.pages_sent(), 2, "its own page, then the escalation queued behind it");
    let pages = meddling.inner.on(Channel::Paging);
    let kinds: Vec<&str> = pages.iter().map(|m| m.attributes["event_type"].as_str()).collect();
    assert_eq!(kinds, ["replication.incident_opened", "replication.incident_escalated"]);
    let doc = incident(&bucket, &format!("{SRC}__delta"));
    assert_eq!((doc.total_failed, doc.pages_sent, doc.owed_pages.len()), (3, 2, 0));
}

#[tokio::test]
async fn a_direct_invocation_whose_manifest_failed_counts_and_writes_its_rows_on_the_retry() {
    let (bucket, notifier, clock) = (MemBucket::default(), MemNotifier::default(), FixedClock::at(NOW));
    *bucket.failing_puts.lock().unwrap() = vec![MANIFESTS_PREFIX.to_owned()];
    let payload = json!({ "Records": [failed(SRC, "delta", "t/1", "AssumeRoleNotPermitted")] });
    let out = run(&bucket, &notifier, &clock, &payload).await;
    assert!(out.has_failures());
    assert_eq!(out.incidents[0].result, IncidentResult::Deferred, "not counted: the retry counts it");
    assert!(bucket.text(&incident_key(&format!("{SRC}__delta"))).is_none());

    bucket.failing_puts.lock().unwrap().clear();
    let retry = run(&bucket, &notifier, &clock, &payload).await;
    assert!(!retry.has_failures(), "{:?}", retry.failures);
    assert_eq!(incident(&bucket, &format!("{SRC}__delta")).total_failed, 1);
    assert_eq!(manifest_lines(&bucket), [format!("{SRC},t/1,vt1")]);
    assert_eq!(notifier.on(Channel::Paging).len(), 1);
}
