//! Benchmark of the `replication-failure` domain: parse + classify + aggregate (+ manifests) of the largest SQS
//! batches Lambda hands over, built in memory with realistic shapes.
//!
//! Run: `cargo bench -p shared --bench replication_batch` (release profile). Prints plain-text figures:
//! wall time (min, median) and thread CPU time (from `/proc/thread-self/schedstat`) per iteration, the split
//! between the JSON parse of the whole event, the per-message parse, the aggregation and the per-message
//! idempotency (fingerprints of every message and record, checked against and added to incident ledgers that are
//! full, the worst case: each ledger read from and written back to JSON as the incident document carries it),
//! peak RSS (`VmHWM`, reset through `/proc/self/clear_refs` before each scenario) and the groups, incidents and
//! manifests that bound the AWS calls of a batch.

use dr_replication::rules::aggregate::{BatchAggregate, aggregate};
use dr_replication::rules::event::{Payload, parse_payload};
use dr_replication::rules::ledger::{Delivered, LEDGER_CAPACITY, LEDGER_SEGMENTS, Ledger, message_fingerprint};
use dr_replication::rules::manifest::{Manifest, build_manifests};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const ACCOUNT: &str = "123456789012";

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
        self.next() % n.max(1)
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(len);
        s
    }
    fn alnum(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";
        (0..len).map(|_| char::from(A.get(self.below(A.len() as u64) as usize).copied().unwrap_or(b'x'))).collect()
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48, b & 0xffff_ffff_ffff)
    }
}

/// (source bucket, rule, destination bucket)
const DELTA_RULE: (&str, &str, &str) = ("databricks-prod-data-use1", "delta-tables", "databricks-prod-data-usw2");
const RULES: [(&str, &str, &str); 4] = [
    DELTA_RULE,
    ("databricks-prod-data-use1", "mlflow-artifacts", "databricks-prod-data-usw2"),
    ("databricks-prod-uc-use1", "uc-managed", "databricks-prod-uc-usw2"),
    ("databricks-prod-checkpoints-use1", "streaming-checkpoints", "databricks-prod-checkpoints-usw2"),
];
const TABLES: [&str; 6] = ["sales/orders", "sales/customers", "sales/line_items", "finance/ledger", "ml/features", "web/events"];

/// A key as S3 writes it in notifications (URL-encoded: `=` as `%3D`, space as `+`).
fn encoded_key(rng: &mut Rng, rule: &str) -> String {
    let table = TABLES.get(rng.below(TABLES.len() as u64) as usize).copied().unwrap_or("sales/orders");
    match (rule, rng.below(100)) {
        ("mlflow-artifacts", _) => format!("mlflow/artifacts/{}/{}/artifacts/model/model.pkl", rng.below(40), rng.hex(32)),
        ("streaming-checkpoints", n) if n < 50 => {
            format!("checkpoints/{}/offsets/{}", table.replace('/', "_"), rng.below(90_000))
        }
        ("streaming-checkpoints", _) => format!("checkpoints/{}/commits/{}", table.replace('/', "_"), rng.below(90_000)),
        (_, n) if n < 62 => format!(
            "tables/{table}/date%3D2024-09-{:02}/part-{:05}-{}.c000.snappy.parquet",
            1 + rng.below(28),
            rng.below(400),
            rng.uuid()
        ),
        (_, n) if n < 90 => format!("tables/{table}/_delta_log/{:020}.json", rng.below(200_000)),
        (_, n) if n < 97 => format!("tables/{table}/_delta_log/{:020}.checkpoint.parquet", rng.below(200_000)),
        (_, n) if n < 99 => format!("tables/{table}/_delta_log/_sidecars/{}.parquet", rng.uuid()),
        _ => format!("uploads/{table}/Q3+report+%28final%29+{}%25.csv", rng.below(100)),
    }
}

/// Event type and reason of a replication storm: a broken destination permission dominates.
fn pick_event(rng: &mut Rng) -> (&'static str, Option<&'static str>) {
    match rng.below(100) {
        0..=54 => ("OperationFailedReplication", Some("DstPutObjectNotPermitted")),
        55..=60 => ("OperationFailedReplication", Some("AssumeRoleNotPermitted")),
        61..=67 => ("OperationFailedReplication", Some("SrcKeyNotFound")),
        68..=70 => ("OperationFailedReplication", Some("DstKmsKeyInvalidState")),
        71..=72 => ("OperationFailedReplication", Some("DstPutTaggingNotPermitted")),
        73..=74 => ("OperationFailedReplication", Some("SrcObjectNotEligible")),
        75 => ("OperationFailedReplication", Some("SomeFutureReason")),
        76..=87 => ("OperationMissedThreshold", None),
        88..=94 => ("OperationReplicatedAfterThreshold", None),
        _ => ("OperationNotTracked", None),
    }
}

fn s3_record(rng: &mut Rng, i: usize) -> Value {
    let (bucket, rule, dest) = RULES.get(rng.below(RULES.len() as u64) as usize).copied().unwrap_or(DELTA_RULE);
    let (event, reason) = pick_event(rng);
    let secs = 21 * 3600 + (i as u64 / 5);
    let time = format!("2024-09-05T{:02}:{:02}:{:02}.{:03}Z", secs / 3600 % 24, secs / 60 % 60, secs % 60, rng.below(1000));
    let mut data = json!({
        "replicationRuleId": rule,
        "destinationBucket": format!("arn:aws:s3:::{dest}"),
        "s3Operation": "OBJECT_PUT",
        "requestTime": time,
    });
    if let Some(r) = reason {
        data["failureReason"] = json!(r);
    }
    if event != "OperationFailedReplication" && event != "OperationNotTracked" {
        data["threshold"] = json!(900);
        data["replicationTime"] = json!(900 + rng.below(3600));
    }
    json!({
        "eventVersion": "2.2",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": time,
        "eventName": format!("Replication:{event}"),
        "userIdentity": {"principalId": "s3.amazonaws.com"},
        "requestParameters": {"sourceIPAddress": "s3.amazonaws.com"},
        "responseElements": {"x-amz-request-id": rng.hex(16).to_uppercase(), "x-amz-id-2": rng.alnum(76)},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "dr-replication-events",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": format!("arn:aws:s3:::{bucket}"),
            },
            "object": {
                "key": encoded_key(rng, rule),
                "size": rng.below(256 << 20),
                "eTag": rng.hex(32),
                "versionId": rng.alnum(32),
                "sequencer": rng.hex(18).to_uppercase(),
            }
        },
        "replicationEventData": data,
    })
}

fn sns_envelope(rng: &mut Rng, message: &str) -> Result<String, serde_json::Error> {
    let topic = format!("arn:aws:sns:us-east-1:{ACCOUNT}:databricks-prod-replication-events");
    let fields = [
        ("Type", "Notification".to_owned()),
        ("MessageId", rng.uuid()),
        ("TopicArn", topic.clone()),
        ("Subject", "Amazon S3 Notification".to_owned()),
        ("Message", message.to_owned()),
        ("Timestamp", "2024-09-05T21:04:33.120Z".to_owned()),
        ("SignatureVersion", "1".to_owned()),
        ("Signature", rng.alnum(344)),
        ("SigningCertURL", format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{}.pem", rng.hex(32))),
        (
            "UnsubscribeURL",
            format!("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:{}", rng.uuid()),
        ),
    ];
    let mut s = String::from("{\n");
    for (n, (k, v)) in fields.iter().enumerate() {
        let sep = if n + 1 == fields.len() { "\n" } else { ",\n" };
        let _ = write!(s, "  {} : {}{sep}", serde_json::to_string(k)?, serde_json::to_string(v)?);
    }
    s.push('}');
    Ok(s)
}

/// How big a generated batch is.
#[derive(Clone, Copy)]
enum Size {
    /// Messages until the event would exceed this many bytes.
    Bytes(usize),
    /// Exactly this many messages.
    Messages(usize),
}

/// Lambda's invocation payload limit (6 MB), the largest SQS batch it hands over.
const LAMBDA_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

/// An SQS event: 80% S3 bodies, 20% SNS envelopes (S3 -> SNS -> SQS without raw delivery), 3% of bodies with
/// two records, one test event (message 7) and one poison body (message 11). Returns the event and the
/// number of notification records generated.
fn sqs_event(size: Size, seed: u64) -> Result<(Vec<u8>, usize), Box<dyn Error>> {
    let mut rng = Rng(seed);
    let mut out = b"{\"Records\":[".to_vec();
    let mut notifications = 0;
    for i in 0.. {
        if let Size::Messages(n) = size
            && i == n
        {
            break;
        }
        let mut n = 0;
        let body = if i == 7 {
            serde_json::to_string(&json!({
                "Service": "Amazon S3",
                "Event": "s3:TestEvent",
                "Time": "2024-09-05T20:58:11.712Z",
                "Bucket": "databricks-prod-data-use1",
                "RequestId": "5582815E1AEA5ADF",
                "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
            }))?
        } else if i == 11 {
            r#"{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","#.to_owned()
        } else {
            n = if rng.below(100) < 3 { 2 } else { 1 };
            let recs: Vec<Value> = (0..n).map(|_| s3_record(&mut rng, i)).collect();
            let s3 = serde_json::to_string(&json!({ "Records": recs }))?;
            if rng.below(100) < 20 { sns_envelope(&mut rng, &s3)? } else { s3 }
        };
        let sent = 1_725_570_273_712u64 + i as u64;
        let record = serde_json::to_vec(&json!({
            "messageId": rng.uuid(),
            "receiptHandle": format!("AQEB{}", rng.alnum(236)),
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": sent.to_string(),
                "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                "ApproximateFirstReceiveTimestamp": (sent + 3).to_string(),
            },
            "messageAttributes": {},
            "md5OfBody": rng.hex(32),
            "eventSource": "aws:sqs",
            "eventSourceARN": format!("arn:aws:sqs:us-west-2:{ACCOUNT}:dr-prod-replication-events"),
            "awsRegion": "us-west-2",
        }))?;
        if let Size::Bytes(limit) = size
            && out.len() + record.len() + 3 > limit
        {
            break;
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&record);
        notifications += n;
    }
    out.extend_from_slice(b"]}");
    Ok((out, notifications))
}

/// A full ledger (the worst case for an incident's document) as JSON.
fn full_ledger(rng: &mut Rng) -> Result<String, serde_json::Error> {
    let mut ledger = Ledger::default();
    let per = LEDGER_CAPACITY / LEDGER_SEGMENTS;
    for s in 0..LEDGER_SEGMENTS {
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s as i64);
        ledger.record(at, (0..per).map(|_| rng.next()));
    }
    serde_json::to_string(&ledger)
}

/// Per-message idempotency of a batch: the fingerprints of every message and record, then per incident its
/// ledger read from `stored` (JSON), the records it has not counted, their fingerprints recorded and the ledger
/// written back. Returns the records not counted before and the bytes of ledger JSON written.
fn idempotency(payload: &Payload<'_>, stored: &str) -> Result<(usize, usize), serde_json::Error> {
    ledgers(&fingerprints(payload), stored)
}

/// Every record with its message's and event's fingerprints, by incident.
fn fingerprints<'a>(payload: &'a Payload<'a>) -> BTreeMap<(&'a str, &'a str), Vec<Delivered<'a>>> {
    let ids: Vec<&str> = match payload {
        Payload::Sqs(m) => m.iter().map(|m| m.message_id).collect(),
        _ => Vec::new(),
    };
    let fingerprints: Vec<u64> = ids.iter().map(|id| message_fingerprint(id)).collect();
    let mut by_incident: BTreeMap<(&str, &str), Vec<Delivered<'_>>> = BTreeMap::new();
    for (i, r) in payload.records() {
        let key = (r.source_bucket.as_str(), r.rule_id.as_deref().unwrap_or(""));
        by_incident.entry(key).or_default().push(Delivered::new(i, fingerprints.get(i).copied().unwrap_or(0), r));
    }
    by_incident
}

/// Per incident: its ledger read from `stored`, checked, the new fingerprints recorded, written back.
fn ledgers(by_incident: &BTreeMap<(&str, &str), Vec<Delivered<'_>>>, stored: &str) -> Result<(usize, usize), serde_json::Error> {
    let (mut fresh, mut bytes) = (0, 0);
    for delivered in by_incident.values() {
        let mut ledger: Ledger = serde_json::from_str(stored)?;
        let new = ledger.index().uncounted(delivered);
        ledger.record(time::OffsetDateTime::UNIX_EPOCH, new.iter().map(Delivered::fingerprint));
        fresh += new.len();
        bytes += serde_json::to_string(&ledger)?.len();
    }
    Ok((fresh, bytes))
}

/// CPU time of this thread in nanoseconds (`/proc/thread-self/schedstat`, first field).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(s.split_whitespace().next()?.parse().ok()?))
}

/// Process CPU time (user + system) from `/proc/self/stat`, in clock ticks of 10 ms (USER_HZ = 100 on Linux).
fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); after the command name, they are the 12th and 13th.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Timings of one iteration.
struct Sample {
    /// Everything, freeing included.
    total: Duration,
    /// Parse + classify + aggregate, without manifests and freeing.
    core: Duration,
    value: Duration,
    parse: Duration,
    aggregate: Duration,
    fingerprints: Duration,
    ledgers: Duration,
    manifests: Duration,
    free: Duration,
}

/// Figures of the batch itself, printed once.
fn describe(payload: &Payload<'_>, agg: &BatchAggregate<'_>, manifests: &[Manifest], notifications: usize) -> String {
    let mut out = String::new();
    let failures = payload.failures().len();
    let (msgs, tests) = match payload {
        Payload::Sqs(m) => (m.len(), m.iter().filter(|m| m.parsed.as_ref().is_ok_and(|n| n.test_event)).count()),
        _ => (0, 0),
    };
    let rows: usize = manifests.iter().map(|m| m.rows).sum();
    let csv_bytes: usize = manifests.iter().map(|m| m.csv.len()).sum();
    let pages_max = agg.incidents.iter().filter(|i| i.has_problem()).count();
    let _ = writeln!(
        out,
        "  batch: {msgs} messages, {notifications} notifications generated, {} records parsed, {} duplicates, \
         {tests} test event, {failures} unparseable (quarantined)",
        agg.records, agg.duplicates
    );
    let _ = writeln!(
        out,
        "  result: {} groups, {} incidents, {} failed objects -> {} manifest(s), {rows} rows, {csv_bytes} bytes of CSV",
        agg.group_count(),
        agg.incidents.len(),
        agg.failed_objects.len(),
        manifests.len(),
    );
    let n = agg.incidents.len();
    let _ = writeln!(
        out,
        "  AWS calls for this batch (no CAS conflict): {n} incident reads + {n} conditional incident writes + \
         {} manifest writes + {failures} quarantine writes + at most {pages_max} x 3 for pages (page, chat note, \
         settle) = at most {} (grows with incidents, not with the {} records)",
        manifests.len(),
        2 * n + manifests.len() + failures + 3 * pages_max,
        agg.records
    );
    for inc in &agg.incidents {
        let _ = writeln!(
            out,
            "    incident {}: {} records, {} failed, {} groups, highest {}",
            inc.key.id(),
            inc.total(),
            inc.failed(),
            inc.groups.len(),
            inc.highest().map_or("-", |c| c.category.as_str())
        );
    }
    out
}

fn run(label: &str, size: Size, iterations: usize) -> Result<(), Box<dyn Error>> {
    let (input, notifications) = sqs_event(size, 0x5eed_0000 + iterations as u64)?;
    let stored = full_ledger(&mut Rng(0x1ed9e2))?;
    let rss_input = status_kb("VmRSS:").unwrap_or(0);

    // Warm-up, and the figures of the batch.
    let summary = {
        let v: Value = serde_json::from_slice(&input)?;
        let payload = parse_payload(&v);
        let agg = aggregate(payload.records());
        let manifests = build_manifests(&agg.failed_objects);
        let (fresh, bytes) = idempotency(&payload, &stored)?;
        format!(
            "{}  idempotency: {fresh} records not counted before, against {} full ledgers of {LEDGER_CAPACITY} \
             fingerprints ({} bytes of JSON each as stored, {bytes} bytes written back in all)\n",
            describe(&payload, &agg, &manifests, notifications),
            agg.incidents.len(),
            stored.len()
        )
    };
    let reset = reset_peak_rss();

    let mut samples = Vec::with_capacity(iterations);
    let (thread0, proc0) = (thread_cpu(), process_cpu());
    for _ in 0..iterations {
        let t0 = Instant::now();
        let v: Value = serde_json::from_slice(&input)?;
        let t1 = Instant::now();
        let payload = parse_payload(&v);
        let t2 = Instant::now();
        let agg = aggregate(payload.records());
        let t3 = Instant::now();
        let by_incident = fingerprints(&payload);
        let t3a = Instant::now();
        let fresh = ledgers(&by_incident, &stored)?;
        let t3b = Instant::now();
        drop(by_incident);
        let manifests = build_manifests(&agg.failed_objects);
        let t4 = Instant::now();
        std::hint::black_box(fresh);
        drop(manifests);
        drop(agg);
        drop(payload);
        drop(v);
        let t5 = Instant::now();
        samples.push(Sample {
            total: t5 - t0,
            core: t3 - t0,
            value: t1 - t0,
            parse: t2 - t1,
            aggregate: t3 - t2,
            fingerprints: t3a - t3,
            ledgers: t3b - t3a,
            manifests: t4 - t3b,
            free: t5 - t4,
        });
    }
    let per_iteration = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) / u32::try_from(iterations).unwrap_or(1)),
        _ => None,
    };
    let thread_avg = per_iteration(thread0, thread_cpu());
    let proc_avg = per_iteration(proc0, process_cpu());
    let peak = status_kb("VmHWM:").unwrap_or(0);

    let col = |f: fn(&Sample) -> Duration| -> Vec<Duration> { samples.iter().map(f).collect() };
    let (mut total, mut core) = (col(|s| s.total), col(|s| s.core));
    let (total_min, core_min) = (total.iter().min().copied(), core.iter().min().copied());
    let mut split = [
        col(|s| s.value),
        col(|s| s.parse),
        col(|s| s.aggregate),
        col(|s| s.fingerprints),
        col(|s| s.ledgers),
        col(|s| s.manifests),
        col(|s| s.free),
    ];
    let [value, parse, aggr, fps, ledg, man, free] = split.each_mut().map(|v| ms(median(v)));
    let per_record = |d: Duration| d.as_secs_f64() * 1e6 / notifications.max(1) as f64;

    println!(
        "{label}: {} bytes ({:.2} MB) SQS event, {iterations} iterations after 1 warm-up",
        input.len(),
        input.len() as f64 / 1e6
    );
    print!("{summary}");
    println!(
        "  parse + classify + aggregate (event bytes -> incidents): min {}, median {}",
        ms(core_min.unwrap_or_default()),
        ms(median(&mut core))
    );
    println!(
        "  all, with idempotency, manifests and freeing: min {}, median {}",
        ms(total_min.unwrap_or_default()),
        ms(median(&mut total))
    );
    println!(
        "  CPU per iteration, averaged over the {iterations} (with manifests and freeing): thread {} \
         (/proc/thread-self/schedstat), process user+sys {} (/proc/self/stat, 10 ms ticks)",
        thread_avg.map_or("n/a".to_owned(), ms),
        proc_avg.map_or("n/a".to_owned(), ms)
    );
    println!(
        "  median split: event JSON -> Value {value}, parse_payload {parse}, classify + aggregate {aggr}, \
         fingerprints {fps}, full ledgers read + checked + written {ledg}, manifests {man}, freeing {free}"
    );
    println!(
        "  per notification: {:.2} us (parse + classify + aggregate, min), {:.2} us CPU (all, average)",
        per_record(core_min.unwrap_or_default()),
        per_record(thread_avg.unwrap_or_default())
    );
    println!(
        "  peak RSS (VmHWM{}): {:.1} MB; RSS before, input held: {:.1} MB",
        if reset { ", reset after the warm-up" } else { ", whole process: clear_refs refused" },
        peak as f64 / 1024.0,
        rss_input as f64 / 1024.0
    );
    println!();
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    if cfg!(debug_assertions) {
        println!("note: built without optimisations; run `cargo bench -p shared --bench replication_batch`");
    }
    run("6 MB batch (Lambda's payload limit)", Size::Bytes(LAMBDA_PAYLOAD_LIMIT), 30)?;
    run("10,000 messages", Size::Messages(10_000), 10)?;
    Ok(())
}
