//! `replication-failure` end to end: the built binary through the Runtime API against moto. Fixtures, a generated
//! 6 MB SQS batch (exact manifest rows, exact incident counts, one page per incident, AWS calls counted through the
//! fault proxy, a redelivery that changes nothing), and two batches processed at once by two processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dr_replication::rules::aggregate::IncidentKey;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use tests::dr_env::{self, DrEnv};
use tests::fault_proxy::FaultProxy;
use tests::moto;
use tests::runtime_api::{Function, Invocation};

const FUNCTION: &str = "replication-failure";
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/replication-failure/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn incident_id(bucket: &str, rule: &str) -> String {
    IncidentKey { source_bucket: bucket.into(), rule_id: rule.into() }.id()
}

/// The function's environment with the AWS endpoint pointed at `endpoint` (the fault proxy, to count calls).
fn via(env: &DrEnv, endpoint: &str) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in &mut vars {
        if k == "AWS_ENDPOINT_URL" {
            *v = endpoint.to_owned();
        }
    }
    vars
}

fn batch_item_failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer:#}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Every row of every manifest: (bucket, decoded key, version id), with the number of rows read.
async fn manifest_rows(env: &DrEnv) -> (BTreeSet<(String, String, String)>, usize) {
    let mut rows = BTreeSet::new();
    let mut n = 0;
    for key in env.keys("replication/manifests/").await {
        let text = String::from_utf8(env.object(&key).await.unwrap()).unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 3, "{key}: {line}");
            rows.insert((f[0].to_owned(), percent_decode(f[1]), f[2].to_owned()));
            n += 1;
        }
    }
    (rows, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_processed_into_one_incident_and_one_page() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start(FUNCTION, &env.function_env());
    let sqs = |f: &mut Function, name: &str| {
        let answer = f.invoke(&fixture(name)).response();
        assert_eq!(batch_item_failures(&answer), Vec::<String>::new(), "{name}: {answer:#}");
    };

    let direct = f.invoke(&fixture("direct-s3-event.json")).response();
    assert_eq!((direct["source"].as_str(), direct["outcome"].as_str()), (Some("direct"), Some("processed")), "{direct:#}");
    assert_eq!(direct["records"], 2);
    assert_eq!(direct["incidents"][0]["page"], "opened");
    assert_eq!(direct["incidents"][0]["highest_severity"], "critical");
    for name in ["missed-threshold.json", "not-tracked.json", "replicated-after-threshold.json", "s3-test-event.json"] {
        sqs(&mut f, name);
    }
    let sns = f.invoke(&fixture("sns-event.json")).response();
    assert_eq!((sns["source"].as_str(), sns["records"].as_u64()), (Some("sns"), Some(1)), "{sns:#}");
    for name in ["sqs-direct-failed-replication.json", "sqs-sns-envelope.json", "sqs-sns-raw.json"] {
        sqs(&mut f, name);
    }
    // The poison message is quarantined verbatim and acknowledged: not a batch item failure.
    let poison = fixture("sqs-with-poison-message.json");
    sqs(&mut f, "sqs-with-poison-message.json");
    let kept = env.keys("quarantine/replication-failure/").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let q = env.json(&kept[0]).await;
    assert_eq!(q["raw"], poison["Records"][0]["body"]);
    assert!(q["error"].as_str().unwrap().contains("not JSON"), "{q:#}");

    // One incident for the one (bucket, rule), with every event counted once.
    let keys = env.keys("replication/incidents/").await;
    let id = incident_id("databricks-prod-data-use1", "delta-tables");
    assert_eq!(keys, [format!("replication/incidents/{id}.json")]);
    let doc = env.json(&keys[0]).await;
    assert_eq!((doc["total_events"].as_u64(), doc["total_failed"].as_u64()), (Some(15), Some(11)), "{doc:#}");
    let by_type = &doc["counts_by_event_type"];
    assert_eq!(
        [&by_type["OperationFailedReplication"], &by_type["OperationMissedThreshold"], &by_type["OperationNotTracked"]],
        [&json!(11), &json!(2), &json!(1)]
    );
    assert_eq!(by_type["OperationReplicatedAfterThreshold"], 1);
    assert_eq!(doc["counts_by_reason"]["DstKmsKeyInvalidState"], 2);
    assert_eq!((doc["state"].as_str(), doc["highest_severity"].as_str()), (Some("open"), Some("critical")));

    // Every failed object in a manifest, the key with `+` and `%` encoded for S3 Batch Operations.
    let (rows, n) = manifest_rows(&env).await;
    assert_eq!((rows.len(), n), (11, 11));
    assert!(rows.iter().any(|(_, k, v)| k == "reports/Q3 summary+final 100%.csv" && v == "P9oQ8rS7tU6vW5xY4zA3bC2dE1fG0hIj"));

    // Exactly one page: opened by the first (critical) event; no later fixture escalates it.
    dr_env::settle().await;
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = message_of(&pages[0]);
    assert_eq!(page["AlarmName"], format!("DR {} replication {id}", env.environment));
    assert_eq!(page["NewStateValue"], "ALARM");
    assert!(page["NewStateReason"].as_str().unwrap().contains("SrcGetObjectNotPermitted"), "{page:#}");
    let subject = pages[0]["Subject"].as_str().unwrap();
    assert!(subject.starts_with("ALARM: ") && subject.len() < 100 && subject.is_ascii(), "{subject}");
    assert_eq!(pages[0]["MessageAttributes"]["severity"]["Value"], "critical");
    let chats = env.chats().await;
    assert_eq!(chats.len(), 1);
    assert_eq!(message_of(&chats[0])["metadata"]["threadId"], format!("dr-{}-replication-{id}", env.environment));
    assert!(!f.logs().contains("\"body\""), "events are never logged whole");
}

// ------------------------------------------------------------------------------------------------------------
// A generated storm
// ------------------------------------------------------------------------------------------------------------

/// xorshift64*: deterministic input without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::new();
        while s.len() < len {
            write!(s, "{:016x}", self.next()).unwrap();
        }
        s.truncate(len);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

/// (source bucket, rule, destination bucket)
const RULES: [(&str, &str, &str); 4] = [
    ("databricks-prod-data-use1", "delta-tables", "databricks-prod-data-usw2"),
    ("databricks-prod-data-use1", "mlflow-artifacts", "databricks-prod-data-usw2"),
    ("databricks-prod-uc-use1", "uc-managed", "databricks-prod-uc-usw2"),
    ("databricks-prod-checkpoints-use1", "streaming-checkpoints", "databricks-prod-checkpoints-usw2"),
];

const EVENTS: [(&str, Option<&str>, u64); 10] = [
    ("OperationFailedReplication", Some("DstPutObjectNotPermitted"), 55),
    ("OperationFailedReplication", Some("AssumeRoleNotPermitted"), 6),
    ("OperationFailedReplication", Some("SrcKeyNotFound"), 7),
    ("OperationFailedReplication", Some("DstKmsKeyInvalidState"), 3),
    ("OperationFailedReplication", Some("DstPutTaggingNotPermitted"), 2),
    ("OperationFailedReplication", Some("SrcObjectNotEligible"), 2),
    ("OperationFailedReplication", Some("SomeFutureReason"), 1),
    ("OperationMissedThreshold", None, 12),
    ("OperationReplicatedAfterThreshold", None, 7),
    ("OperationNotTracked", None, 5),
];

/// A key as S3 writes it in notifications: `+` for a space, `%XX` for what is not URL-safe.
fn encode_for_event(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) => out.push(char::from(b)),
            b => write!(out, "%{b:02X}").unwrap(),
        }
    }
    out
}

/// What an incident must hold after the batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Expected {
    total_events: u64,
    total_failed: u64,
    by_type: BTreeMap<String, u64>,
    by_reason: BTreeMap<String, u64>,
}

/// One generated record, as the expectation sees it (the key decoded).
struct Generated {
    event: &'static str,
    reason: Option<&'static str>,
    bucket: &'static str,
    rule: &'static str,
    dest: &'static str,
    key: String,
    version: String,
}

/// A generated SQS batch and what it must produce.
struct Storm {
    payload: Value,
    messages: usize,
    notifications: usize,
    failed_objects: BTreeSet<(String, String, String)>,
    incidents: BTreeMap<String, Expected>,
    poison: Option<String>,
    poison_id: Option<String>,
}

/// Builds an SQS event: S3 bodies and SNS envelopes (raw and non-raw delivery), 3% of bodies with two records,
/// 1% redelivered duplicates of an earlier body, all four event types and a spread of reasons; with `specials`,
/// one test event and one poison body. Stops before `limit` bytes or at `max_messages`.
fn storm(seed: u64, prefix: &str, limit: usize, max_messages: usize, specials: bool) -> Storm {
    let mut rng = Rng(seed);
    let mut records: Vec<Value> = Vec::new();
    let mut size = "{\"Records\":[]}".len();
    let mut seen = HashSet::new();
    let mut s = Storm {
        payload: Value::Null,
        messages: 0,
        notifications: 0,
        failed_objects: BTreeSet::new(),
        incidents: BTreeMap::new(),
        poison: None,
        poison_id: None,
    };
    let mut previous: Option<String> = None;
    let mut n = 0usize;
    while records.len() < max_messages {
        let i = records.len();
        let mut counted: Vec<Generated> = Vec::new();
        let body = if specials && i == 7 {
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-09-05T20:58:11.712Z",
                   "Bucket": RULES[0].0, "RequestId": "5582815E1AEA5ADF"})
            .to_string()
        } else if specials && i == 11 {
            r#"{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","#.to_owned()
        } else if let Some(prev) = previous.clone().filter(|_| rng.below(100) == 0) {
            prev
        } else {
            let count = if rng.below(100) < 3 { 2 } else { 1 };
            let mut recs = Vec::new();
            for _ in 0..count {
                n += 1;
                let (bucket, rule, dest) = RULES[rng.below(4) as usize];
                let mut pick = rng.below(100);
                let (event, reason) = EVENTS
                    .iter()
                    .find(|(_, _, w)| {
                        let hit = pick < *w;
                        pick = pick.saturating_sub(*w);
                        hit
                    })
                    .map(|(e, r, _)| (*e, *r))
                    .unwrap_or(("OperationNotTracked", None));
                let key = match rng.below(10) {
                    0 => format!("uploads/{prefix}/Q3 report (final) {n}%.csv"),
                    1..=3 => format!("tables/sales/orders/_delta_log/{n:020}.json"),
                    _ => format!("tables/sales/orders/date={}/part-{n:05}-{}.c000.snappy.parquet", 1 + rng.below(28), rng.uuid()),
                };
                let key = format!("{prefix}/{key}");
                let version = format!("{}{}", rng.hex(24), n);
                let mut data = json!({
                    "replicationRuleId": rule,
                    "destinationBucket": format!("arn:aws:s3:::{dest}"),
                    "s3Operation": "OBJECT_PUT",
                    "requestTime": "2024-09-05T21:03:59.168Z",
                });
                if let Some(r) = reason {
                    data["failureReason"] = json!(r);
                }
                if event == "OperationMissedThreshold" || event == "OperationReplicatedAfterThreshold" {
                    data["threshold"] = json!(900);
                    data["replicationTime"] = if rng.below(2) == 0 { json!(1300) } else { json!("1300") };
                }
                recs.push(json!({
                    "eventVersion": "2.2",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": format!("2024-09-05T21:{:02}:{:02}.{:03}Z", (n / 60) % 60, n % 60, rng.below(1000)),
                    "eventName": format!("Replication:{event}"),
                    "userIdentity": {"principalId": "s3.amazonaws.com"},
                    "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
                    "responseElements": {"x-amz-request-id": rng.hex(16).to_uppercase(), "x-amz-id-2": rng.hex(76)},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "dr-replication-events",
                        "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                                   "arn": format!("arn:aws:s3:::{bucket}")},
                        "object": {"key": encode_for_event(&key), "size": rng.below(1 << 28), "eTag": rng.hex(32),
                                   "versionId": version, "sequencer": rng.hex(18).to_uppercase()},
                    },
                    "replicationEventData": data,
                }));
                counted.push(Generated { event, reason, bucket, rule, dest, key, version });
            }
            let s3 = json!({ "Records": recs }).to_string();
            if rng.below(100) < 20 {
                json!({
                    "Type": "Notification",
                    "MessageId": rng.uuid(),
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:databricks-prod-replication-events",
                    "Subject": "Amazon S3 Notification",
                    "Message": s3,
                    "Timestamp": "2024-09-05T21:04:33.120Z",
                    "SignatureVersion": "1",
                    "Signature": rng.hex(344),
                    "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0.pem",
                    "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                })
                .to_string()
            } else {
                s3
            }
        };
        let message_id = format!("{prefix}-{i:05}-{}", rng.uuid());
        let record = json!({
            "messageId": message_id,
            "receiptHandle": format!("AQEB{}", rng.hex(236)),
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1725570273712",
                           "SenderId": "AIDAIT2UOQQY3AUEKVGXU", "ApproximateFirstReceiveTimestamp": "1725570273715"},
            "messageAttributes": {},
            "md5OfBody": rng.hex(32),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:dr-prod-replication-events",
            "awsRegion": "us-west-2",
        });
        let len = record.to_string().len() + 1;
        if size + len > limit {
            break;
        }
        size += len;
        if specials && i == 11 {
            s.poison = Some(body.clone());
            s.poison_id = Some(message_id);
        } else if !(specials && i == 7) {
            previous = Some(body);
        }
        records.push(record);
        for Generated { event, reason, bucket, rule, dest, key, version } in counted {
            s.notifications += 1;
            let identity = (event, reason, bucket, rule, dest, key.clone(), version.clone());
            if !seen.insert(identity) {
                continue;
            }
            let e = s.incidents.entry(incident_id(bucket, rule)).or_default();
            e.total_events += 1;
            *e.by_type.entry(event.to_owned()).or_insert(0) += 1;
            if event == "OperationFailedReplication" {
                e.total_failed += 1;
                *e.by_reason.entry(reason.unwrap_or_default().to_owned()).or_insert(0) += 1;
                s.failed_objects.insert((bucket.to_owned(), key, version));
            }
        }
    }
    s.messages = records.len();
    s.payload = json!({ "Records": records });
    s
}

async fn incident_counts(env: &DrEnv) -> BTreeMap<String, Expected> {
    let mut out = BTreeMap::new();
    for key in env.keys("replication/incidents/").await {
        let d = env.json(&key).await;
        let map = |v: &Value| -> BTreeMap<String, u64> {
            v.as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect()
        };
        out.insert(
            d["id"].as_str().unwrap().to_owned(),
            Expected {
                total_events: d["total_events"].as_u64().unwrap(),
                total_failed: d["total_failed"].as_u64().unwrap(),
                by_type: map(&d["counts_by_event_type"]),
                by_reason: map(&d["counts_by_reason"]),
            },
        );
    }
    out
}

/// Calls by kind: `S3 GET`, `S3 PUT`, `SNS Publish`, ...
fn tally(calls: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for c in calls {
        let kind = c.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        *t.entry(kind).or_insert(0) += 1;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_6_mb_batch_yields_exact_manifests_and_counts_and_one_page_per_incident() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let mut f = Function::start(FUNCTION, &via(&env, &proxy.endpoint));
    let s = storm(0x5eed_0006, "big", LAMBDA_PAYLOAD_LIMIT, usize::MAX, true);
    let bytes = s.payload.to_string().len();
    assert!(bytes > LAMBDA_PAYLOAD_LIMIT - 8 * 1024 && bytes <= LAMBDA_PAYLOAD_LIMIT, "{bytes}");
    assert!(s.notifications > 2500, "{} notifications", s.notifications);

    proxy.plan(vec![]);
    let started = std::time::Instant::now();
    let answer = f.invoke(&s.payload);
    let elapsed = started.elapsed();
    let answer = match answer {
        Invocation::Response(v) => v,
        other => panic!("{other:?}\n{}", f.logs()),
    };
    assert_eq!(batch_item_failures(&answer), Vec::<String>::new(), "the poison body is acknowledged: {answer:#}");
    let calls = proxy.log();

    // The manifests: exactly the failed objects, each once.
    let (rows, n) = manifest_rows(&env).await;
    assert_eq!(n, rows.len(), "no object twice");
    assert_eq!(rows, s.failed_objects);
    let manifests = env.keys("replication/manifests/").await;
    assert_eq!(manifests.len(), 3, "one per source bucket: {manifests:?}");

    // The incidents: exact counts.
    assert_eq!(incident_counts(&env).await, s.incidents);
    assert_eq!(s.incidents.len(), 4);

    // One page per new incident, each with its own stable AlarmName.
    dr_env::settle().await;
    let pages: Vec<Value> = env.pages().await.iter().map(message_of).collect();
    let alarms: BTreeSet<String> = pages.iter().map(|p| p["AlarmName"].as_str().unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = s.incidents.keys().map(|id| format!("DR {} replication {id}", env.environment)).collect();
    assert_eq!((pages.len(), alarms), (4, expected));
    assert!(pages.iter().all(|p| p["NewStateValue"] == "ALARM" && p["Severity"] == "critical"));
    assert_eq!(env.chats().await.len(), 4);

    // The poison body kept verbatim; the test event ignored.
    let kept = env.keys("quarantine/replication-failure/").await;
    assert_eq!(kept.len(), 1);
    assert_eq!(env.json(&kept[0]).await["raw"].as_str(), s.poison.as_deref());
    assert!(!batch_item_failures(&answer).contains(s.poison_id.as_ref().unwrap()));

    // AWS calls: 2 per incident (GET, conditional PUT), 1 per manifest, 1 per quarantined body, 3 per page (page,
    // chat note, the conditional PUT that settles it).
    let t = tally(&calls);
    println!(
        "6 MB batch: {bytes} bytes, {} messages, {} notifications, {} failed objects -> {} AWS calls {t:?} in {elapsed:?} \
         (debug build, moto)",
        s.messages,
        s.notifications,
        s.failed_objects.len(),
        calls.len()
    );
    assert_eq!(calls.len(), 2 * 4 + 3 + 1 + 3 * 4, "{calls:#?}");

    // Delivered again (a whole-batch retry): nothing counted twice, no page, no manifest written again: one GET
    // per incident, and the quarantine overwritten.
    proxy.plan(vec![]);
    let again = f.invoke(&s.payload).response();
    assert_eq!(batch_item_failures(&again), Vec::<String>::new());
    let calls = proxy.log();
    println!("the same batch redelivered: {} AWS calls {:?}", calls.len(), tally(&calls));
    assert_eq!(calls.len(), 4 + 1, "{calls:#?}");
    assert_eq!(incident_counts(&env).await, s.incidents);
    assert_eq!(env.keys("replication/manifests/").await, manifests);
    dr_env::settle().await;
    assert!(env.pages().await.is_empty(), "a redelivered batch does not page again");
    assert!(f.logs().contains("\"result\":\"AlreadyMerged\""), "{}", f.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batches_at_once_in_two_processes_lose_no_counts() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut fns = [Function::start(FUNCTION, &env.function_env()), Function::start(FUNCTION, &env.function_env())];
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut failed_objects = BTreeSet::new();
    for round in 0..3u64 {
        let storms = [
            storm(100 + round, &format!("r{round}a"), usize::MAX, 300, false),
            storm(200 + round, &format!("r{round}b"), usize::MAX, 300, false),
        ];
        for s in &storms {
            for (id, e) in &s.incidents {
                let x = expected.entry(id.clone()).or_default();
                x.total_events += e.total_events;
                x.total_failed += e.total_failed;
                for (k, n) in &e.by_type {
                    *x.by_type.entry(k.clone()).or_insert(0) += n;
                }
                for (k, n) in &e.by_reason {
                    *x.by_reason.entry(k.clone()).or_insert(0) += n;
                }
            }
            failed_objects.extend(s.failed_objects.iter().cloned());
        }
        let barrier = std::sync::Barrier::new(2);
        let answers: Vec<Invocation> = std::thread::scope(|scope| {
            let handles: Vec<_> = fns
                .iter_mut()
                .zip(&storms)
                .map(|(f, s)| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        f.invoke(&s.payload)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for a in answers {
            let v = match a {
                Invocation::Response(v) => v,
                other => panic!("{other:?}"),
            };
            assert_eq!(batch_item_failures(&v), Vec::<String>::new(), "{v:#}");
        }
    }
    assert_eq!(incident_counts(&env).await, expected);
    assert_eq!(manifest_rows(&env).await.0, failed_objects);
    dr_env::settle().await;
    let pages = env.pages().await;
    assert_eq!(pages.len(), expected.len(), "one page per incident, not one per process: {pages:#?}");
    let lost_races = fns.iter().map(|f| f.logs().matches("\"attempts\":2").count()).sum::<usize>();
    println!("two processes, 3 rounds: {lost_races} incident writes lost a race and were merged again");
}

/// The SQS event of some messages of `s` (their records verbatim, as SQS redelivers them), plus `extra`.
fn redelivery(s: &Storm, pick: impl Fn(&Value) -> bool, extra: &[Value]) -> Value {
    let mut records: Vec<Value> = s.payload["Records"].as_array().unwrap().iter().filter(|m| pick(m)).cloned().collect();
    records.extend(extra.iter().cloned());
    for r in &mut records {
        r["attributes"]["ApproximateReceiveCount"] = json!("2");
    }
    json!({ "Records": records })
}

fn holds_a_failure(message: &Value) -> bool {
    message["body"].as_str().unwrap_or("").contains("OperationFailedReplication")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_redelivered_alone_or_regrouped_counts_once_and_repeats_no_manifest_row() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start(FUNCTION, &env.function_env());
    let s = storm(0x5eed_0013, "redo", usize::MAX, 60, false);
    let answer = f.invoke(&s.payload).response();
    assert_eq!(batch_item_failures(&answer), Vec::<String>::new(), "{answer:#}");
    assert_eq!(incident_counts(&env).await, s.incidents);
    let (rows, n) = manifest_rows(&env).await;
    assert_eq!((&rows, n), (&s.failed_objects, s.failed_objects.len()));
    dr_env::settle().await;
    assert!(!env.pages().await.is_empty(), "the new incidents paged");

    // SQS redelivers one message whose batch answer was lost; Lambda hands it over alone.
    let first = s.payload["Records"].as_array().unwrap().iter().find(|m| holds_a_failure(m)).unwrap().clone();
    let id = first["messageId"].as_str().unwrap().to_owned();
    let alone = redelivery(&s, |m| m["messageId"] == id.as_str(), &[]);
    assert_eq!(alone["Records"].as_array().unwrap().len(), 1);
    let answer = f.invoke(&alone).response();
    assert_eq!(batch_item_failures(&answer), Vec::<String>::new(), "{answer:#}");
    assert_eq!(incident_counts(&env).await, s.incidents, "the redelivered message is not counted again");
    assert_eq!(manifest_rows(&env).await, (rows.clone(), n), "no manifest row repeated");

    // Later, five of the batch's messages come back regrouped with messages of another batch: only those count.
    let other = storm(0x5eed_0014, "new", usize::MAX, 8, false);
    let again: Vec<String> = s.payload["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| holds_a_failure(m))
        .take(5)
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    let regrouped =
        redelivery(&s, |m| again.iter().any(|a| m["messageId"] == a.as_str()), other.payload["Records"].as_array().unwrap());
    let answer = f.invoke(&regrouped).response();
    assert_eq!(batch_item_failures(&answer), Vec::<String>::new(), "{answer:#}");
    let mut expected = s.incidents.clone();
    for (id, e) in &other.incidents {
        let x = expected.entry(id.clone()).or_default();
        x.total_events += e.total_events;
        x.total_failed += e.total_failed;
        for (k, v) in &e.by_type {
            *x.by_type.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &e.by_reason {
            *x.by_reason.entry(k.clone()).or_insert(0) += v;
        }
    }
    assert_eq!(incident_counts(&env).await, expected);
    let (rows_after, n_after) = manifest_rows(&env).await;
    assert_eq!(n_after, n + other.failed_objects.len(), "only the new messages' rows were added");
    assert_eq!(rows_after, rows.union(&other.failed_objects).cloned().collect::<BTreeSet<_>>());
    dr_env::settle().await;
    assert!(env.pages().await.is_empty(), "no page for a redelivery");
    assert!(f.logs().contains("\"result\":\"AlreadyMerged\""), "{}", f.logs());
}
