//! The soak (issue 16, item 8): a long, seeded schedule through the built binaries, each function one warm
//! process on a local Runtime API (as one Lambda sandbox serves invocation after invocation), with the
//! [`FaultProxy`] between the functions and moto failing a seeded share of the AWS calls.
//!
//! The schedule ([`Schedule::build`]) is a pure function of the seed and the counts:
//!
//! - **alarm deliveries** to `health-alarm`, in episodes: each episode sets the policy (`auto`, `approval` or
//!   `notify-only`, always with the two failover alarms listed and no cooldown), opens with a failover alarm going
//!   to `ALARM`, then lets four alarms flap between `ALARM`, `OK` and `INSUFFICIENT_DATA` (two failover alarms, one
//!   metric and one composite, and two alarms the policy does not list). Every state change is delivered one to
//!   three times, through the three real paths (EventBridge, the alarm's direct Lambda action, SNS; built from the
//!   fixtures under `events/health-alarm/`), shuffled within a window (an `OK` may come before its `ALARM`), with
//!   now and then a late copy of a delivery of an earlier episode, a muted or suppressed change, and a payload that
//!   is not an alarm at all (the only inputs meant to be quarantined). An episode ends as on-call would end it: an
//!   execution awaiting approval is approved (even episodes) or cancelled (odd ones), then a `failback` through
//!   `manual-trigger` returns to the primary, so that the next episode can fail over again; then the scheduled
//!   `check` runs (the stack runs it every few minutes);
//! - **replication batches** to `replication-failure`, spread evenly between the alarm deliveries: SQS batches in
//!   the fixtures' shapes (raw S3 bodies and SNS envelopes, some with two records), with S3's own duplicates (an
//!   earlier body in a new message), SQS redeliveries (an earlier message, same `messageId` and body, alone or
//!   regrouped with new ones), a test event now and then and a poison body (meant to be quarantined).
//!
//! The same schedule runs twice, each time against a fresh environment in the same moto server: first clean
//! (the proxy forwards everything), then with faults. A delivery that fails is delivered again at once, as its
//! source would (an error: the whole payload again, as EventBridge and Lambda's asynchronous retries do; an SQS
//! answer with `batchItemFailures`: exactly the failed messages, with their `ApproximateReceiveCount` raised, as
//! SQS does after a partial batch failure), until it succeeds or [`MAX_DELIVERIES`] is reached. Redelivering
//! before the next item of the schedule keeps the order in which deliveries *succeed* equal in both runs, so that
//! any difference in the state is the faults' doing, not the order's (the disorder is in the schedule itself).
//!
//! After the schedule, the scheduled `check` runs once through `manual-trigger` with the faults off, as it
//! runs every few minutes in the stack: it is the payer of last resort of pages left owed (its figure is printed:
//! "owed before check"). Then the state is read from moto and compared, section by section
//! ([`Captured::sections`]), and a set of invariants is checked on each run ([`invariants`]).
//!
//! The fault plan is seeded per invocation: for the `n`-th invocation of the run, the plan over its AWS calls
//! (by their order of arrival at the proxy) is a function of `SOAK_SEED` and `n`. Calls an invocation makes side
//! by side may reach the proxy in either order, so the exact call a fault lands on can change between runs of
//! the same seed; the share of faults and the schedule do not. The latency the proxy adds is keyed by the call,
//! not by its arrival: the `k`-th call of one operation (`S3 PUT PutObject`, `SNS Publish`, ...) in the `n`-th
//! invocation waits the same in every run of one seed; only calls of one operation made side by side can swap
//! their draws (the threads' scheduling orders their arrival), and the time a sleep really takes is the machine's.
//!
//! Memory: the `VmRSS` and `VmHWM` of each warm process are read from `/proc/<pid>/status` after its warm-up
//! invocations and after its last one; the growth between them must stay under [`Config::rss_growth_bound_kib`].

use crate::databricks::DatabricksServer;
use crate::dr_env::DrEnv;
use crate::fault_proxy::{Fault, FaultProxy, Latency, Rule};
use crate::fixture;
use crate::runtime_api::{Function, Invocation, bin_dir};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Deliveries of one payload (its first included) before the soak gives up on it and reports a problem.
pub const MAX_DELIVERIES: usize = 40;

/// The warm-up: memory is first sampled after this many invocations of a function (or a quarter of what the
/// schedule gives it, when that is fewer): by then the SDK clients, the connection setup, the allocator's arenas
/// and the runtime's threads exist, and what grows after is what invocations leave behind.
pub const WARMUP_INVOCATIONS: usize = 100;

/// The bound on a warm process's `VmRSS` growth after its warm-up, in KiB (see [`Config::rss_growth_bound_kib`]).
pub const RSS_GROWTH_BOUND_KIB: u64 = 3 * 1024;

/// The alarms of the schedule: name, whether the policy lists it in `failover_alarms`, composite or metric.
const ALARMS: [(&str, bool, bool); 4] = [
    ("databricks-prod-workspace-unhealthy", true, false),
    ("databricks-prod-workspace-composite", true, true),
    ("databricks-prod-cluster-cost-high", false, false),
    ("databricks-prod-warehouse-queue-composite", false, true),
];

/// (source bucket, replication rule, destination bucket) of the replication events.
const RULES: [(&str, &str, &str); 4] = [
    ("databricks-prod-data-use1", "delta-tables", "databricks-prod-data-usw2"),
    ("databricks-prod-data-use1", "mlflow-artifacts", "databricks-prod-data-usw2"),
    ("databricks-prod-uc-use1", "uc-managed", "databricks-prod-uc-usw2"),
    ("databricks-prod-checkpoints-use1", "streaming-checkpoints", "databricks-prod-checkpoints-usw2"),
];

/// Replication event types and failure reasons, with their weights (percent).
const EVENTS: [(&str, Option<&str>, u64); 10] = [
    ("OperationFailedReplication", Some("DstPutObjectNotPermitted"), 40),
    ("OperationFailedReplication", Some("AssumeRoleNotPermitted"), 6),
    ("OperationFailedReplication", Some("SrcKeyNotFound"), 10),
    ("OperationFailedReplication", Some("DstKmsKeyInvalidState"), 4),
    ("OperationFailedReplication", Some("DstPutTaggingNotPermitted"), 4),
    ("OperationFailedReplication", Some("SrcObjectNotEligible"), 3),
    ("OperationFailedReplication", Some("SomeFutureReason"), 1),
    ("OperationMissedThreshold", None, 16),
    ("OperationReplicatedAfterThreshold", None, 9),
    ("OperationNotTracked", None, 7),
];

/// 2026-03-14T08:00:00Z in milliseconds: the alarm changes of the schedule start here.
const ALARM_EPOCH_MS: i64 = 1_773_475_200_000;
/// 2026-03-14T07:00:00Z: the replication events' times start here.
const REPLICATION_EPOCH_MS: i64 = 1_773_471_600_000;

// ------------------------------------------------------------------------------------------------------------
// Configuration
// ------------------------------------------------------------------------------------------------------------

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed of the schedule and of the fault plan (`SOAK_SEED`, decimal or `0x` hex).
    pub seed: u64,
    /// Alarm deliveries to `health-alarm` (`SOAK_ALARMS`).
    pub alarms: usize,
    /// Replication batches to `replication-failure` (`SOAK_BATCHES`).
    pub batches: usize,
    /// The share of AWS calls the proxy fails in the faulted run, in per mille (`SOAK_FAULT_PERMILLE`).
    pub fault_per_mille: u64,
    /// The bound on each warm process's `VmRSS` growth from its warm-up sample to its last, in KiB.
    ///
    /// 3 MiB: a warm process keeps nothing per invocation (clients, settings and the runtime are built once at
    /// cold start; every request's buffers are freed when it ends), so what remains after warm-up is allocator
    /// noise (arenas and pages the allocator keeps for reuse, a larger batch's buffers) of a few hundred KiB. A
    /// leak of 3 KiB per invocation, the size of one small execution record or alarm payload kept per
    /// invocation, would show as 3 MiB over the 1,000 invocations of the full soak; a Lambda sandbox serves far
    /// more than that with 256 MB.
    pub rss_growth_bound_kib: u64,
    /// The median latency the proxy adds to each AWS call, in ms (`SOAK_LATENCY_MS`; 0: none), drawn from a
    /// heavy-tailed distribution capped at 20 times the median (at most 600 ms, under the attempt timeout).
    pub latency_ms: u64,
}

impl Config {
    /// The configuration from `SOAK_SEED`, `SOAK_ALARMS`, `SOAK_BATCHES` and `SOAK_FAULT_PERMILLE`, with these
    /// defaults for the counts (seed 0x5eed_50a4, 70 per mille).
    pub fn from_env(alarms: usize, batches: usize) -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let number = |name: &str, default: u64| -> u64 {
            match var(name) {
                Some(v) => {
                    let v = v.trim().replace('_', "");
                    let parsed = match v.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16),
                        None => v.parse(),
                    };
                    parsed.unwrap_or_else(|e| panic!("{name}={v}: not a number ({e})"))
                }
                None => default,
            }
        };
        Config {
            seed: number("SOAK_SEED", 0x5eed_50a4),
            alarms: usize::try_from(number("SOAK_ALARMS", alarms as u64)).unwrap_or(alarms),
            batches: usize::try_from(number("SOAK_BATCHES", batches as u64)).unwrap_or(batches),
            fault_per_mille: number("SOAK_FAULT_PERMILLE", 70).min(500),
            rss_growth_bound_kib: RSS_GROWTH_BOUND_KIB,
            latency_ms: number("SOAK_LATENCY_MS", 3),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// Deterministic randomness
// ------------------------------------------------------------------------------------------------------------

/// xorshift64*, seeded through splitmix64 (no `rand` dependency; the same numbers on every platform).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6A09_E667_F3BC_C909;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::new();
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(len);
        s
    }

    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

// ------------------------------------------------------------------------------------------------------------
// Fixtures and time stamps
// ------------------------------------------------------------------------------------------------------------

/// The fixtures the schedule's payloads are built from.
struct Fixtures {
    eventbridge_metric: Value,
    eventbridge_composite: Value,
    mute_detail: Value,
    action_metric: Value,
    action_composite: Value,
    sns_metric: Value,
    sns_composite: Value,
    not_an_alarm: Value,
    /// One SQS record (`Records[0]` of `sqs-direct-failed-replication.json`).
    sqs_message: Value,
    /// One S3 replication record (the first record of that message's body).
    s3_record: Value,
    /// The SNS envelope of `sqs-sns-envelope.json`'s first message.
    sns_envelope: Value,
}

impl Fixtures {
    fn load() -> Fixtures {
        let alarm = |name: &str| fixture("health-alarm", name);
        let sqs = fixture("replication-failure", "sqs-direct-failed-replication.json");
        let sqs_message = sqs["Records"][0].clone();
        let body: Value = serde_json::from_str(sqs_message["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        let sns = fixture("replication-failure", "sqs-sns-envelope.json");
        let sns_envelope = serde_json::from_str(sns["Records"][0]["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        Fixtures {
            eventbridge_metric: alarm("eventbridge-metric-alarm.json"),
            eventbridge_composite: alarm("eventbridge-composite-alarm.json"),
            mute_detail: alarm("eventbridge-muted.json")["detail"]["muteDetail"].clone(),
            action_metric: alarm("alarm-action-metric-alarm.json"),
            action_composite: alarm("alarm-action-composite-alarm.json"),
            sns_metric: alarm("sns-metric-alarm.json"),
            sns_composite: alarm("sns-composite-alarm.json"),
            not_an_alarm: alarm("garbage-not-an-alarm.json"),
            s3_record: body["Records"][0].clone(),
            sqs_message,
            sns_envelope,
        }
    }
}

fn instant(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// CloudWatch's form, `2026-03-14T09:26:53.589+0000`.
fn cloudwatch_time(ms: i64) -> String {
    let t = instant(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339 in UTC with milliseconds, `2026-03-14T09:26:53.589Z`.
fn utc_millis(ms: i64) -> String {
    let t = instant(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// RFC 3339 in UTC, whole seconds (EventBridge's `time`).
fn utc_seconds(ms: i64) -> String {
    let mut s = utc_millis(ms);
    s.truncate(19);
    s.push('Z');
    s
}

// ------------------------------------------------------------------------------------------------------------
// The schedule
// ------------------------------------------------------------------------------------------------------------

/// How an alarm change reached `health-alarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Path {
    EventBridge,
    AlarmAction,
    Sns,
    /// A payload that is not an alarm change (meant to be quarantined).
    NotAnAlarm,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::EventBridge => "eventbridge",
            Path::AlarmAction => "alarm action",
            Path::Sns => "sns",
            Path::NotAnAlarm => "not an alarm",
        }
    }
}

/// One step of the schedule.
enum Op {
    /// The harness writes `{prefix}/policy` (straight to moto, as an operator would).
    Policy(&'static str),
    /// One delivery to `health-alarm`.
    Alarm(Value),
    /// One SQS batch to `replication-failure` (its records).
    Batch(Vec<Value>),
    /// On-call ends the episode: approves or cancels what awaits approval, then fails back.
    EndEpisode(usize),
    /// The harness breaks a site's document mid-incident (an operator's bad edit: not JSON), keeping the good one.
    BreakSite(&'static str),
    /// The harness writes the good document back (on-call repairs it before the episode ends).
    FixSite(&'static str),
}

/// One alarm state change.
struct Change {
    alarm: usize,
    new: &'static str,
    old: &'static str,
    at: i64,
    previous_at: i64,
    /// Muted by a mute rule (metric alarms) or suppressed by a suppressor (composite alarms).
    silenced: bool,
}

/// Counts per incident, as the incident document must hold them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    total_events: u64,
    total_failed: u64,
    by_type: BTreeMap<String, u64>,
    by_reason: BTreeMap<String, u64>,
}

impl Counts {
    fn to_json(&self) -> Value {
        json!({ "total_events": self.total_events, "total_failed": self.total_failed,
                "counts_by_event_type": self.by_type, "counts_by_reason": self.by_reason })
    }
}

/// What the schedule must leave, known from its construction alone.
#[derive(Debug, Default)]
struct Expected {
    /// Per incident id, its counts.
    incidents: BTreeMap<String, Counts>,
    /// Every object that failed to replicate: (bucket, key, version id).
    failed_objects: BTreeSet<(String, String, String)>,
    /// Distinct payloads sent to `health-alarm` that are not alarm changes.
    not_alarms: usize,
    /// Distinct poison bodies sent to `replication-failure`.
    poison: usize,
}

/// Counts of what the schedule holds, for the table.
#[derive(Debug, Default, Clone)]
pub struct ScheduleFigures {
    /// Episodes.
    pub episodes: usize,
    /// Episodes whose secondary site document was broken mid-incident, then repaired.
    pub broken_sites: usize,
    /// Episodes by policy mode.
    pub modes: BTreeMap<String, usize>,
    /// Alarm deliveries by path.
    pub by_path: BTreeMap<String, usize>,
    /// Alarm deliveries by new state.
    pub by_state: BTreeMap<String, usize>,
    /// Alarm state changes (each delivered one to three times).
    pub changes: usize,
    /// Deliveries that repeat a change delivered in the same episode (same or another path).
    pub duplicates: usize,
    /// Late copies of a delivery of an earlier episode.
    pub stragglers: usize,
    /// Muted or suppressed changes.
    pub silenced: usize,
    /// SQS messages in all batches.
    pub sqs_messages: usize,
    /// S3 records in new messages.
    pub records: usize,
    /// Messages redelivered by the schedule (same `messageId` and body), regrouped with others.
    pub regrouped: usize,
    /// Batches of one earlier message alone.
    pub lone_redeliveries: usize,
    /// Earlier bodies in a new message (S3's own duplicates).
    pub s3_duplicates: usize,
}

/// The whole schedule.
struct Schedule {
    ops: Vec<Op>,
    expected: Expected,
    figures: ScheduleFigures,
}

fn alarm_arn(name: &str) -> String {
    format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}")
}

fn state_reason(state: &str) -> &'static str {
    match state {
        "ALARM" => {
            "Threshold Crossed: 3 out of the last 3 datapoints [0.0 (soak), 0.0 (soak), 12.5 (soak)] were less than the threshold (90.0) (minimum 3 datapoints for OK -> ALARM transition)."
        }
        "OK" => {
            "Threshold Crossed: 1 out of the last 3 datapoints [100.0 (soak)] was not less than the threshold (90.0) (minimum 1 datapoint for ALARM -> OK transition)."
        }
        _ => "Insufficient Data: 3 datapoints were unknown.",
    }
}

/// The next state of a flapping alarm.
fn next_state(rng: &mut Rng, current: &str) -> &'static str {
    match current {
        "OK" => {
            if rng.percent(75) {
                "ALARM"
            } else {
                "INSUFFICIENT_DATA"
            }
        }
        "ALARM" => {
            if rng.percent(65) {
                "OK"
            } else {
                "INSUFFICIENT_DATA"
            }
        }
        _ => {
            if rng.percent(50) {
                "ALARM"
            } else {
                "OK"
            }
        }
    }
}

/// The payload of `change` as `path` delivers it, built from the fixture of the alarm's kind.
fn alarm_payload(fx: &Fixtures, change: &Change, path: Path, rng: &mut Rng) -> Value {
    let (name, _, composite) = ALARMS[change.alarm];
    let arn = alarm_arn(name);
    let reason = state_reason(change.new);
    match path {
        Path::EventBridge => {
            let mut v = if composite { fx.eventbridge_composite.clone() } else { fx.eventbridge_metric.clone() };
            v["id"] = json!(rng.uuid());
            v["time"] = json!(utc_seconds(change.at));
            v["resources"] = json!([arn]);
            let d = &mut v["detail"];
            d["alarmName"] = json!(name);
            d["state"]["value"] = json!(change.new);
            d["state"]["reason"] = json!(reason);
            d["state"]["timestamp"] = json!(cloudwatch_time(change.at));
            d["previousState"]["value"] = json!(change.old);
            d["previousState"]["timestamp"] = json!(cloudwatch_time(change.previous_at));
            if change.silenced {
                if composite {
                    d["state"]["actionsSuppressedBy"] = json!("Alarm");
                    d["state"]["actionsSuppressedReason"] = json!("Actions suppressed by Alarm");
                } else {
                    d["muteDetail"] = fx.mute_detail.clone();
                }
            }
            v
        }
        Path::AlarmAction => {
            let mut v = if composite { fx.action_composite.clone() } else { fx.action_metric.clone() };
            v["alarmArn"] = json!(arn);
            v["time"] = json!(cloudwatch_time(change.at));
            let d = &mut v["alarmData"];
            d["alarmName"] = json!(name);
            d["state"]["value"] = json!(change.new);
            d["state"]["reason"] = json!(reason);
            d["state"]["timestamp"] = json!(cloudwatch_time(change.at));
            d["previousState"]["value"] = json!(change.old);
            d["previousState"]["timestamp"] = json!(cloudwatch_time(change.previous_at));
            v
        }
        Path::Sns | Path::NotAnAlarm => {
            let mut v = if composite { fx.sns_composite.clone() } else { fx.sns_metric.clone() };
            let sns = &mut v["Records"][0]["Sns"];
            let mut message: Value = serde_json::from_str(sns["Message"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
            message["AlarmName"] = json!(name);
            message["AlarmArn"] = json!(arn);
            message["NewStateValue"] = json!(change.new);
            message["OldStateValue"] = json!(change.old);
            message["NewStateReason"] = json!(reason);
            message["StateChangeTime"] = json!(cloudwatch_time(change.at));
            sns["Message"] = json!(message.to_string());
            sns["MessageId"] = json!(rng.uuid());
            sns["Subject"] = json!(format!("{}: \"{name}\" in US East (N. Virginia)", change.new));
            sns["Timestamp"] = json!(utc_millis(change.at + 60));
            v
        }
    }
}

/// A key as S3 writes it in notifications: `+` for a space, `%XX` for what is not URL-safe.
fn encode_for_event(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"/-_.~=".contains(&b) => out.push(char::from(b)),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn incident_id(bucket: &str, rule: &str) -> String {
    dr_replication::rules::aggregate::IncidentKey { source_bucket: bucket.into(), rule_id: rule.into() }.id()
}

/// An SQS record carrying `body`, in the fixture's shape.
fn sqs_message(fx: &Fixtures, id: String, body: String, rng: &mut Rng) -> Value {
    let mut m = fx.sqs_message.clone();
    m["messageId"] = json!(id);
    m["receiptHandle"] = json!(format!("AQEB{}", rng.hex(120)));
    m["md5OfBody"] = json!(rng.hex(32));
    m["body"] = json!(body);
    m["attributes"]["ApproximateReceiveCount"] = json!("1");
    m
}

/// The message as SQS hands it over again: same `messageId` and body, one more receive.
fn received_again(message: &Value) -> Value {
    let mut m = message.clone();
    let n: u64 = m["attributes"]["ApproximateReceiveCount"].as_str().and_then(|n| n.parse().ok()).unwrap_or(1);
    m["attributes"]["ApproximateReceiveCount"] = json!((n + 1).to_string());
    m
}

impl Schedule {
    fn build(cfg: &Config) -> Schedule {
        let fx = Fixtures::load();
        let mut figures = ScheduleFigures::default();
        let mut expected = Expected::default();
        let alarm_ops = alarm_ops(&fx, cfg, &mut Rng::new(cfg.seed, 1), &mut expected, &mut figures);
        let batches = replication_batches(&fx, cfg, &mut Rng::new(cfg.seed, 2), &mut expected, &mut figures);

        // Batch j goes after the alarm delivery round((j + 1) * A / (B + 1)): spread evenly.
        let deliveries = alarm_ops.iter().filter(|op| matches!(op, Op::Alarm(_))).count();
        let count = batches.len();
        let slot = |j: usize| (j + 1) * deliveries / (count + 1);
        let mut batches = batches.into_iter().enumerate().peekable();
        let mut ops = Vec::new();
        let mut seen = 0;
        for op in alarm_ops {
            while let Some((_, b)) = batches.next_if(|(j, _)| slot(*j) <= seen) {
                ops.push(Op::Batch(b));
            }
            if matches!(op, Op::Alarm(_)) {
                seen += 1;
            }
            ops.push(op);
        }
        ops.extend(batches.map(|(_, b)| Op::Batch(b)));
        Schedule { ops, expected, figures }
    }
}

/// The alarm side of the schedule: episodes of policy, flapping changes and their deliveries, and on-call's end.
fn alarm_ops(fx: &Fixtures, cfg: &Config, rng: &mut Rng, expected: &mut Expected, figures: &mut ScheduleFigures) -> Vec<Op> {
    // About 36 episodes for 1,000 deliveries (two promotions each at most: SSM keeps 100 versions of `active`).
    let per_episode = (cfg.alarms / 36).max(15);
    let mut state = ["OK"; 4];
    let mut since = [ALARM_EPOCH_MS - 3_600_000; 4];
    let mut t = ALARM_EPOCH_MS;
    let mut earlier: Vec<Value> = Vec::new();
    let mut ops = Vec::new();
    let mut delivered = 0;
    let mut episode = 0;
    let mut not_alarms = 0;
    let mut first_alarm: Option<usize> = None;
    while delivered < cfg.alarms {
        let mode = match rng.below(100) {
            0..=54 => "auto",
            55..=84 => "approval",
            _ => "notify-only",
        };
        *figures.modes.entry(mode.to_owned()).or_default() += 1;
        ops.push(Op::Policy(mode));
        let budget = std::cmp::min((per_episode * (70 + rng.index(61)) / 100).max(3), cfg.alarms - delivered);
        // (payload, path, state) in the order the changes happen; reordered below.
        let mut slots: Vec<(Value, Path, &'static str)> = Vec::new();
        // The episode opens with a failover alarm going to ALARM (after an OK if it is in ALARM already).
        let first = rng.index(2);
        let mut forced: VecDeque<(usize, &'static str)> = VecDeque::new();
        if state[first] == "ALARM" {
            forced.push_back((first, "OK"));
        }
        forced.push_back((first, "ALARM"));
        while slots.len() < budget {
            if !earlier.is_empty() && forced.is_empty() && rng.percent(2) {
                let late = earlier[rng.index(earlier.len())].clone();
                figures.stragglers += 1;
                slots.push((late, Path::EventBridge, "late"));
                continue;
            }
            if forced.is_empty() && rng.percent(2) {
                // Not an alarm change: an S3 event sent to the wrong function; sometimes delivered twice.
                not_alarms += 1;
                let mut junk = fx.not_an_alarm.clone();
                junk["Records"][0]["s3"]["object"]["key"] = json!(format!("sales/orders/_delta_log/{not_alarms:020}.json"));
                junk["Records"][0]["eventTime"] = json!(utc_millis(t));
                let copies = if rng.percent(30) { 2 } else { 1 };
                for _ in 0..copies.min(budget - slots.len()) {
                    slots.push((junk.clone(), Path::NotAnAlarm, "not an alarm"));
                }
                continue;
            }
            let (alarm, new, is_forced) = match forced.pop_front() {
                Some((a, s)) => (a, s, true),
                None => {
                    let a = match rng.below(100) {
                        0..=34 => 0,
                        35..=59 => 1,
                        60..=79 => 2,
                        _ => 3,
                    };
                    (a, next_state(rng, state[a]), false)
                }
            };
            t += 1_000 + i64::try_from(rng.below(90_000)).unwrap_or(0);
            let silenced = new == "ALARM" && !is_forced && rng.percent(6);
            let change = Change { alarm, new, old: state[alarm], at: t, previous_at: since[alarm], silenced };
            state[alarm] = new;
            since[alarm] = t;
            figures.changes += 1;
            figures.silenced += usize::from(silenced);
            let copies: usize = match rng.below(100) {
                0..=59 => 1,
                60..=87 => 2,
                _ => 3,
            };
            let copies = copies.min(budget - slots.len());
            // A change's payload per path is built once: a repeated delivery through the same path is the same
            // event (EventBridge's at-least-once delivery repeats its id).
            let mut built: HashMap<Path, Value> = HashMap::new();
            for copy in 0..copies {
                // Muted and suppressed changes run no alarm actions: only EventBridge reports them.
                let path = if silenced {
                    Path::EventBridge
                } else {
                    match rng.below(100) {
                        0..=44 => Path::EventBridge,
                        45..=74 => Path::AlarmAction,
                        _ => Path::Sns,
                    }
                };
                let payload = built.entry(path).or_insert_with(|| alarm_payload(fx, &change, path, rng)).clone();
                figures.duplicates += usize::from(copy > 0);
                slots.push((payload, path, new));
            }
        }
        // Out of order: each delivery moves up to five places later than the order of the changes.
        let mut keyed: Vec<(u64, usize, Value, Path, &'static str)> =
            slots.into_iter().enumerate().map(|(i, (v, p, s))| ((i as u64) * 1000 + rng.below(5000), i, v, p, s)).collect();
        keyed.sort_by_key(|k| (k.0, k.1));
        for (_, _, payload, path, new) in keyed {
            if new != "late" {
                *figures.by_path.entry(path.as_str().to_owned()).or_default() += 1;
                *figures.by_state.entry(new.to_owned()).or_default() += 1;
            }
            if path != Path::NotAnAlarm && new != "late" {
                earlier.push(payload.clone());
            }
            first_alarm.get_or_insert(ops.len());
            ops.push(Op::Alarm(payload));
            delivered += 1;
        }
        // Every fourth episode (from the second), the secondary's document is broken just after the episode's first
        // delivery and repaired before on-call ends it: what the failover has not done yet meets an unusable
        // target (the readiness gate refuses; a promotion made stops at activation until the repair).
        if episode % 4 == 1
            && let Some(i) = first_alarm.take()
        {
            ops.insert(i + 1, Op::BreakSite("secondary"));
            ops.push(Op::FixSite("secondary"));
            figures.broken_sites += 1;
        }
        first_alarm = None;
        ops.push(Op::EndEpisode(episode));
        episode += 1;
    }
    figures.episodes = episode;
    expected.not_alarms = not_alarms;
    ops
}

/// The replication side of the schedule: SQS batches, with duplicates and redeliveries, and what they must count.
fn replication_batches(
    fx: &Fixtures,
    cfg: &Config,
    rng: &mut Rng,
    expected: &mut Expected,
    figures: &mut ScheduleFigures,
) -> Vec<Vec<Value>> {
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let mut recent: VecDeque<Vec<Value>> = VecDeque::new();
    let mut bodies: Vec<String> = Vec::new();
    let mut n = 0usize;
    let pick_recent = |rng: &mut Rng, recent: &VecDeque<Vec<Value>>| -> Option<Value> {
        let all: Vec<&Value> = recent.iter().flatten().collect();
        (!all.is_empty()).then(|| all[rng.index(all.len())].clone())
    };
    for b in 0..cfg.batches {
        if b > 0 && rng.percent(6) {
            // A message whose batch answer was lost comes back alone.
            if let Some(m) = pick_recent(rng, &recent) {
                figures.lone_redeliveries += 1;
                figures.sqs_messages += 1;
                batches.push(vec![received_again(&m)]);
                continue;
            }
        }
        let mut batch: Vec<Value> = Vec::new();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for i in 0..2 + rng.index(13) {
            let roll = rng.below(100);
            if roll < 4 {
                // An earlier message redelivered by SQS (visibility timeout), regrouped with new ones.
                if let Some(m) = pick_recent(rng, &recent)
                    && ids.insert(m["messageId"].as_str().unwrap_or_default().to_owned())
                {
                    figures.regrouped += 1;
                    batch.push(received_again(&m));
                }
                continue;
            }
            let id = format!("soak-{b:04}-{i:02}-{}", rng.uuid());
            ids.insert(id.clone());
            if roll < 7 && !bodies.is_empty() {
                // S3 sent the same event twice, in two messages.
                figures.s3_duplicates += 1;
                let body = bodies[rng.index(bodies.len())].clone();
                batch.push(sqs_message(fx, id, body, rng));
                continue;
            }
            let (bucket, _, _) = RULES[rng.index(RULES.len())];
            let mut records = Vec::new();
            for _ in 0..if rng.percent(4) { 2 } else { 1 } {
                n += 1;
                // Both records of a message come from the same bucket's notifications.
                let same_bucket: Vec<&(&str, &str, &str)> = RULES.iter().filter(|r| r.0 == bucket).collect();
                let (bucket, rule, dest) = *same_bucket[rng.index(same_bucket.len())];
                let mut pick = rng.below(100);
                let (event, reason) = EVENTS
                    .iter()
                    .find(|(_, _, w)| {
                        let hit = pick < *w;
                        pick = pick.saturating_sub(*w);
                        hit
                    })
                    .map_or(("OperationNotTracked", None), |(e, r, _)| (*e, *r));
                let key = match rng.below(10) {
                    0 => format!("soak/uploads/Q3 report (final)+{n}%.csv"),
                    1..=3 => format!("soak/tables/sales/orders/_delta_log/{n:020}.json"),
                    _ => format!(
                        "soak/tables/sales/orders/date=2026-03-{:02}/part-{n:05}-{}.c000.snappy.parquet",
                        1 + rng.below(28),
                        rng.uuid()
                    ),
                };
                let version = format!("{}{n}", rng.hex(24));
                let mut r = fx.s3_record.clone();
                let at =
                    REPLICATION_EPOCH_MS + i64::try_from(n).unwrap_or(0) * 1_000 + i64::try_from(rng.below(1000)).unwrap_or(0);
                r["eventTime"] = json!(utc_millis(at));
                r["eventName"] = json!(format!("Replication:{event}"));
                r["s3"]["bucket"]["name"] = json!(bucket);
                r["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
                r["s3"]["object"] = json!({
                    "key": encode_for_event(&key), "size": rng.below(1 << 28), "eTag": rng.hex(32),
                    "versionId": version, "sequencer": rng.hex(18).to_uppercase(),
                });
                let mut data = json!({
                    "replicationRuleId": rule,
                    "destinationBucket": format!("arn:aws:s3:::{dest}"),
                    "s3Operation": "OBJECT_PUT",
                    "requestTime": utc_millis(at - 30_000),
                });
                if let Some(reason) = reason {
                    data["failureReason"] = json!(reason);
                }
                if event == "OperationMissedThreshold" || event == "OperationReplicatedAfterThreshold" {
                    data["threshold"] = json!(900);
                    data["replicationTime"] = json!(1300);
                }
                r["replicationEventData"] = data;
                records.push(r);
                figures.records += 1;
                let counts = expected.incidents.entry(incident_id(bucket, rule)).or_default();
                counts.total_events += 1;
                *counts.by_type.entry(event.to_owned()).or_default() += 1;
                if event == "OperationFailedReplication" {
                    counts.total_failed += 1;
                    *counts.by_reason.entry(reason.unwrap_or_default().to_owned()).or_default() += 1;
                    expected.failed_objects.insert((bucket.to_owned(), key, version));
                }
            }
            let s3 = json!({ "Records": records }).to_string();
            let body = if rng.percent(20) {
                let mut envelope = fx.sns_envelope.clone();
                envelope["MessageId"] = json!(rng.uuid());
                envelope["Message"] = json!(s3);
                serde_json::to_string_pretty(&envelope).unwrap_or_default()
            } else {
                s3
            };
            bodies.push(body.clone());
            batch.push(sqs_message(fx, id, body, rng));
        }
        if b % 25 == 7 {
            // A truncated body: it can never parse, so it is kept under quarantine/ and acknowledged.
            expected.poison += 1;
            let body = format!(r#"{{"Records":[{{"eventVersion":"2.2","eventSource":"aws:s3","soak":"{b}"#);
            batch.push(sqs_message(fx, format!("soak-{b:04}-poison"), body, rng));
        }
        if b % 30 == 11 {
            let body = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": utc_millis(REPLICATION_EPOCH_MS),
                              "Bucket": RULES[0].0, "RequestId": rng.hex(16).to_uppercase()});
            batch.push(sqs_message(fx, format!("soak-{b:04}-test-event"), body.to_string(), rng));
        }
        figures.sqs_messages += batch.len();
        recent.push_back(batch.clone());
        if recent.len() > 3 {
            recent.pop_front();
        }
        batches.push(batch);
    }
    batches
}

// ------------------------------------------------------------------------------------------------------------
// Faults
// ------------------------------------------------------------------------------------------------------------

/// How many calls of one invocation the plan covers (a failover makes about 25, a batch about 20).
const PLANNED_CALLS: usize = 400;

/// The faults of the `invocation`-th invocation of the faulted run, over its calls in order of arrival: bursts
/// (one call failed 70% of the time, two 15%, three 10%, four 5%, so that some operations fail every attempt the
/// SDK makes and the invocation itself fails) starting at a rate that fails `per_mille` of the calls; each
/// burst a 5xx (40%), a throttle (30%), a reset connection (20%) or a timeout after the call was applied (10%).
fn fault_plan(seed: u64, invocation: u64, per_mille: u64) -> Vec<Rule> {
    let mut rng = Rng::new(seed ^ 0xFA17_5EED, invocation);
    // The mean burst is 1.5 calls long.
    let start_ppm = per_mille * 2000 / 3;
    let mut rules = Vec::new();
    let mut at = 1;
    while at <= PLANNED_CALLS {
        if rng.below(1_000_000) >= start_ppm {
            at += 1;
            continue;
        }
        let len = match rng.below(100) {
            0..=69 => 1,
            70..=84 => 2,
            85..=94 => 3,
            _ => 4,
        };
        let fault = match rng.below(100) {
            0..=39 => Fault::ServerError,
            40..=69 => Fault::Throttle,
            70..=89 => Fault::Reset,
            _ => Fault::Timeout(Duration::from_millis(TIMEOUT_FAULT_MS)),
        };
        for k in 0..len {
            rules.push(Rule { at: at + k, fault, persistent: false });
        }
        at += len;
    }
    rules
}

/// The functions' attempt timeout (`DR_AWS_ATTEMPT_TIMEOUT_MS`) in the soak, and how long a timeout fault holds
/// the answer (longer, so the SDK gives up on the attempt while moto has applied the call).
const ATTEMPT_TIMEOUT_MS: u64 = 1000;
const TIMEOUT_FAULT_MS: u64 = 1200;

fn fault_kind(f: Fault) -> &'static str {
    match f {
        Fault::ServerError => "5xx",
        Fault::Throttle => "throttle",
        Fault::Reset => "reset",
        Fault::Timeout(_) => "timeout",
        Fault::HoldBefore | Fault::HoldAfter | Fault::Gate => "hold",
    }
}

// ------------------------------------------------------------------------------------------------------------
// Running one pass
// ------------------------------------------------------------------------------------------------------------

/// The three functions, one warm process each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    /// `health-alarm`.
    Alarm,
    /// `replication-failure`.
    Replication,
    /// `manual-trigger`.
    Manual,
}

impl Which {
    /// The binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Which::Alarm => "health-alarm",
            Which::Replication => "replication-failure",
            Which::Manual => "manual-trigger",
        }
    }
    const ALL: [Which; 3] = [Which::Alarm, Which::Replication, Which::Manual];
}

/// Memory of one warm process, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    /// Invocations before the warm-up sample.
    pub warm_after: usize,
    /// `VmRSS` at the warm-up sample.
    pub warm_rss: u64,
    /// `VmHWM` at the warm-up sample.
    pub warm_hwm: u64,
    /// The largest `VmRSS` seen at the samples taken every 25 invocations after warm-up.
    pub max_rss: u64,
    /// Invocations at the last sample.
    pub end_after: usize,
    /// `VmRSS` after the last invocation.
    pub end_rss: u64,
    /// `VmHWM` after the last invocation.
    pub end_hwm: u64,
    /// (invocations, `VmRSS`) every 25 invocations after warm-up: the curve, for `SOAK_DUMP`.
    pub series: Vec<(usize, u64)>,
}

impl Memory {
    /// `VmRSS` growth from the warm-up sample to the end, in KiB (negative: it shrank).
    pub fn growth_kib(&self) -> i64 {
        i64::try_from(self.end_rss).unwrap_or(0) - i64::try_from(self.warm_rss).unwrap_or(0)
    }

    /// The growth per 1,000 invocations after warm-up, in KiB.
    pub fn growth_per_1000(&self) -> f64 {
        let n = self.end_after.saturating_sub(self.warm_after).max(1) as f64;
        self.growth_kib() as f64 * 1000.0 / n
    }
}

fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field =
        |name: &str| -> Option<u64> { status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok() };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The figures of one pass.
#[derive(Debug, Default, Clone)]
pub struct PassFigures {
    /// `clean` or `faulted`.
    pub label: String,
    /// From the first delivery to the end of the settling `check`.
    pub wall: Duration,
    /// Invocations per function, redeliveries included.
    pub invocations: BTreeMap<String, usize>,
    /// Invocations answered with an error (each delivered again), per function.
    pub errors: BTreeMap<String, usize>,
    /// The `errorType`s of those errors.
    pub error_types: BTreeMap<String, usize>,
    /// Manual commands answered `in_progress` (run again a second later, as a person would).
    pub busy_answers: usize,
    /// SQS redeliveries: invocations of `replication-failure` with only the failed messages of a batch.
    pub partial_redeliveries: usize,
    /// Messages those redeliveries carried.
    pub redelivered_messages: usize,
    /// AWS calls that reached the proxy.
    pub aws_calls: usize,
    /// Calls the proxy failed, by kind.
    pub faults: BTreeMap<String, usize>,
    /// Memory per function.
    pub memory: BTreeMap<String, Memory>,
    /// Pages owed (execution records and incidents) when the schedule ended, before the scheduled `check`.
    pub owed_before_check: usize,
    /// How many times `check` ran to settle owed pages.
    pub checks: usize,
    /// How long the settling waited for claims on owed replication pages to run out.
    pub waited_for_claims: Duration,
    /// Facts read from the state at the end.
    pub facts: BTreeMap<String, u64>,
}

impl PassFigures {
    /// Faults injected in all.
    pub fn faults_injected(&self) -> usize {
        self.faults.values().sum()
    }
}

struct Runner<'a> {
    cfg: &'a Config,
    /// The good documents of the sites broken by [`Op::BreakSite`], until repaired.
    broken: BTreeMap<&'static str, Value>,
    proxy: &'a FaultProxy,
    faults: bool,
    env: DrEnv,
    functions: BTreeMap<Which, Function>,
    planned: BTreeMap<Which, usize>,
    invocation: u64,
    figures: PassFigures,
    problems: Vec<String>,
    dead: bool,
}

impl Runner<'_> {
    /// One invocation, with this invocation's fault plan in the proxy.
    fn invoke(&mut self, which: Which, payload: &Value) -> Invocation {
        self.invocation += 1;
        let rules = if self.faults { fault_plan(self.cfg.seed, self.invocation, self.cfg.fault_per_mille) } else { Vec::new() };
        // The invocation's number scopes the proxy's latency draws: each call's latency is a function of the seed,
        // the invocation, the call's operation and its rank among that operation's calls (see `Latency`).
        self.proxy.scope(rules.clone(), self.invocation);
        let Some(f) = self.functions.get_mut(&which) else {
            return Invocation::NoAnswer(format!("{} is not running", which.name()));
        };
        let answer = f.invoke_with_timeout(payload, Duration::from_secs(120));
        let calls = self.proxy.log().len();
        self.proxy.plan(Vec::new());
        self.figures.aws_calls += calls;
        for rule in rules.iter().filter(|r| r.at <= calls) {
            *self.figures.faults.entry(fault_kind(rule.fault).to_owned()).or_default() += 1;
        }
        let count = {
            let c = self.figures.invocations.entry(which.name().to_owned()).or_default();
            *c += 1;
            *c
        };
        let warm_after = WARMUP_INVOCATIONS.min(self.planned.get(&which).copied().unwrap_or(0) / 4).max(1);
        let pid = f.pid();
        if let Some((rss, hwm)) = proc_status(pid).filter(|_| count >= warm_after) {
            let memory = self.figures.memory.entry(which.name().to_owned()).or_default();
            if count == warm_after {
                *memory = Memory { warm_after, warm_rss: rss, warm_hwm: hwm, max_rss: rss, ..Memory::default() };
            }
            if count > warm_after && count % 25 == 0 {
                memory.max_rss = memory.max_rss.max(rss);
                memory.series.push((count, rss));
            }
            memory.end_after = count;
            memory.end_rss = rss;
            memory.end_hwm = hwm;
        }
        answer
    }

    /// Delivers `payload` until the function answers without an error (as EventBridge, Lambda's asynchronous
    /// retries or a person re-running a command would), up to [`MAX_DELIVERIES`]; the answer, if one came.
    async fn deliver(&mut self, which: Which, payload: &Value, what: &str) -> Option<Value> {
        if self.dead {
            return None;
        }
        let mut last = Value::Null;
        for attempt in 1..=MAX_DELIVERIES {
            match self.invoke(which, payload) {
                Invocation::Response(v) => return Some(v),
                Invocation::Error(e) => {
                    *self.figures.errors.entry(which.name().to_owned()).or_default() += 1;
                    let kind = e["errorType"].as_str().unwrap_or("unknown").to_owned();
                    *self.figures.error_types.entry(kind.clone()).or_default() += 1;
                    // Another attempt of the same execution holds the lock: it frees itself when the lease (4 s
                    // here) runs out, or at once if that attempt marked it stopped.
                    let wait = if kind == "Retryable.InFlight" { 1000 } else { 20 * attempt as u64 };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    last = e;
                }
                Invocation::NoAnswer(why) => {
                    let logs = self.functions.get(&which).map(Function::logs).unwrap_or_default();
                    let tail: String =
                        logs.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                    self.problems.push(format!("{what}: {} gave no answer ({why}); the soak stops here\n{tail}", which.name()));
                    self.dead = true;
                    return None;
                }
            }
        }
        self.problems.push(format!("{what}: still failing after {MAX_DELIVERIES} deliveries: {last}"));
        None
    }

    /// A person's command through `manual-trigger`: run again after an error, and after an `in_progress` answer
    /// (another attempt holds the lock: the person waits a moment and runs it again, as the answer says).
    async fn command(&mut self, payload: &Value, what: &str) {
        for _ in 0..MAX_DELIVERIES {
            match self.deliver(Which::Manual, payload, what).await {
                Some(answer) if answer["outcome"] == "in_progress" => {
                    self.figures.busy_answers += 1;
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                }
                _ => return,
            }
        }
        self.problems.push(format!("{what}: still in progress after {MAX_DELIVERIES} runs"));
    }

    /// Delivers an SQS batch, then exactly the messages its answer lists in `batchItemFailures`, until none is.
    async fn sqs(&mut self, records: &[Value], what: &str) {
        let mut pending: Vec<Value> = records.to_vec();
        for round in 1..=MAX_DELIVERIES {
            if self.dead {
                return;
            }
            if round > 1 {
                self.figures.partial_redeliveries += 1;
                self.figures.redelivered_messages += pending.len();
            }
            let payload = json!({ "Records": pending });
            match self.invoke(Which::Replication, &payload) {
                Invocation::Response(answer) => {
                    let Some(failures) = answer["batchItemFailures"].as_array() else {
                        self.problems.push(format!("{what}: not a batch answer: {answer}"));
                        return;
                    };
                    let failed: BTreeSet<&str> = failures.iter().filter_map(|f| f["itemIdentifier"].as_str()).collect();
                    if failed.is_empty() {
                        return;
                    }
                    let unknown: Vec<&&str> =
                        failed.iter().filter(|id| !pending.iter().any(|m| m["messageId"] == **id)).collect();
                    if !unknown.is_empty() {
                        self.problems.push(format!("{what}: batchItemFailures names messages not delivered: {unknown:?}"));
                    }
                    pending = pending
                        .iter()
                        .filter(|m| failed.contains(m["messageId"].as_str().unwrap_or_default()))
                        .map(received_again)
                        .collect();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Invocation::Error(e) => {
                    // The handler failed as a whole: SQS delivers every message of the batch again.
                    *self.figures.errors.entry(Which::Replication.name().to_owned()).or_default() += 1;
                    *self.figures.error_types.entry(e["errorType"].as_str().unwrap_or("unknown").to_owned()).or_default() += 1;
                    pending = pending.iter().map(received_again).collect();
                    tokio::time::sleep(Duration::from_millis(20 * round as u64)).await;
                }
                Invocation::NoAnswer(why) => {
                    self.problems.push(format!("{what}: replication-failure gave no answer ({why}); the soak stops here"));
                    self.dead = true;
                    return;
                }
            }
        }
        self.problems.push(format!("{what}: messages still failing after {MAX_DELIVERIES} deliveries"));
    }

    async fn run_op(&mut self, index: usize, op: &Op) {
        match op {
            Op::Policy(mode) => {
                let failover_alarms: Vec<&str> = ALARMS.iter().filter(|a| a.1).map(|a| a.0).collect();
                let policy = json!({ "mode": mode, "failover_alarms": failover_alarms, "cooldown_minutes": 0 });
                self.env.put("policy", &policy).await;
            }
            Op::Alarm(payload) => {
                let _ = self.deliver(Which::Alarm, payload, &format!("op {index} (alarm delivery)")).await;
            }
            Op::Batch(records) => self.sqs(records, &format!("op {index} (replication batch)")).await,
            Op::BreakSite(site) => {
                let good = self.env.get(&format!("sites/{site}")).await;
                self.broken.insert(site, good);
                self.env.put_raw(&format!("sites/{site}"), "not json {").await;
            }
            Op::FixSite(site) => {
                if let Some(good) = self.broken.remove(site) {
                    self.env.put(&format!("sites/{site}"), &good).await;
                }
            }
            Op::EndEpisode(episode) => {
                let lock = self.env.json(domain::layout::FAILOVER_LOCK).await;
                if let Some(id) = lock["execution_id"].as_str() {
                    let record = self.env.json(&domain::layout::execution_record(id)).await;
                    if record["state"] == "awaiting_approval" {
                        let command = if episode % 2 == 0 {
                            json!({"command": "approve", "execution_id": id, "requested_by": "soak@example.com"})
                        } else {
                            json!({"command": "cancel", "execution_id": id, "confirm": id, "requested_by": "soak@example.com",
                                   "reason": "soak: the primary recovered"})
                        };
                        self.command(&command, &format!("op {index} (approval of {id})")).await;
                    }
                }
                let failback = json!({"command": "failback", "target": "primary", "reason": format!("soak: episode {episode} is over"),
                                      "requested_by": "soak@example.com", "confirm": "primary",
                                      "client_token": format!("soak-episode-{episode}")});
                self.command(&failback, &format!("op {index} (failback)")).await;
                // The scheduled `check` (every few minutes in the stack): it pays pages a delivery left owed
                // although it answered (a record write that failed after the publish), among the newest records.
                let _ = self.deliver(Which::Manual, &json!({"command": "check"}), &format!("op {index} (check)")).await;
            }
        }
    }

    /// The scheduled `check` (faults off), again after any claim on an owed replication page has run out.
    async fn settle(&mut self) {
        self.faults = false;
        self.figures.owed_before_check = owed(&self.env).await.0;
        for round in 0..3 {
            let _ = self.deliver(Which::Manual, &json!({"command": "check"}), "the scheduled check").await;
            self.figures.checks += 1;
            let (still, claimed_until) = owed(&self.env).await;
            if still == 0 || round == 2 {
                break;
            }
            // A payer whose settle write failed leaves its replication pages claimed for two minutes: the next
            // writer (here the check) pays them once the claim runs out.
            let now = OffsetDateTime::now_utc();
            let wait = claimed_until.map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(u64::try_from((t - now).whole_milliseconds().clamp(0, 150_000)).unwrap_or(0) + 1000)
            });
            tokio::time::sleep(wait).await;
            self.figures.waited_for_claims += wait;
        }
    }
}

/// Pages owed in execution records and incident documents, and the latest claim on an incident's owed page.
async fn owed(env: &DrEnv) -> (usize, Option<OffsetDateTime>) {
    let mut n = 0;
    let mut latest: Option<OffsetDateTime> = None;
    for key in env.keys(domain::layout::EXECUTIONS_PREFIX).await {
        n += env.json(&key).await["owed"].as_array().map_or(0, Vec::len);
    }
    for key in env.keys(domain::layout::INCIDENTS_PREFIX).await {
        let doc = env.json(&key).await;
        for page in doc["owed_pages"].as_array().into_iter().flatten() {
            n += 1;
            let until = page["claimed_until"].as_str().and_then(domain::primitives::parse_rfc3339);
            latest = latest.max(until);
        }
    }
    (n, latest)
}

/// Runs the schedule once against a fresh environment; the pass's figures, its state and its problems.
async fn run_pass(cfg: &Config, schedule: &Schedule, proxy: &FaultProxy, faults: bool) -> (PassFigures, Captured, Vec<String>) {
    let label = if faults { "faulted" } else { "clean" };
    let env = DrEnv::seed(&crate::moto::shared().endpoint).await;
    // The sites are two local workspaces whose tagged jobs move with each failover and back with each failback.
    let server = DatabricksServer::start(&["primary", "secondary"]).unwrap_or_else(|e| panic!("local Databricks API: {e}"));
    let activation = json!({ "activation": { "job_tag": "dr=active-passive" } });
    crate::databricks::seed_sites(&env, server.workspace("primary"), server.workspace("secondary"), &activation, None).await;
    let jobs_before = tagged_jobs(&server);
    let latency = (cfg.latency_ms > 0).then(|| Latency {
        median_ms: cfg.latency_ms,
        cap_ms: (cfg.latency_ms * 20).min(600),
        seed: cfg.seed,
    });
    proxy.set_latency(latency);
    let mut vars = env.function_env();
    vars.push(("DR_DATABRICKS_BACKOFF_MS".to_owned(), "20".to_owned()));
    for (k, v) in &mut vars {
        if k == "AWS_ENDPOINT_URL" {
            v.clone_from(&proxy.endpoint);
        }
    }
    vars.extend(
        [
            ("DR_AWS_ATTEMPT_TIMEOUT_MS", ATTEMPT_TIMEOUT_MS.to_string()),
            ("DR_AWS_INITIAL_BACKOFF_MS", "20".to_owned()),
            // A stopped attempt that could not mark its lock stopped blocks its own redelivery for this long.
            ("DR_LOCK_LEASE_SECONDS", "4".to_owned()),
            // Lambda's level in production; debug lines would only fill this process's memory with logs.
            ("AWS_LAMBDA_LOG_LEVEL", "info".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let functions: BTreeMap<Which, Function> = Which::ALL.iter().map(|w| (*w, Function::start(w.name(), &vars))).collect();
    let episodes = schedule.ops.iter().filter(|op| matches!(op, Op::EndEpisode(_))).count();
    let planned = BTreeMap::from([
        (Which::Alarm, schedule.ops.iter().filter(|op| matches!(op, Op::Alarm(_))).count()),
        (Which::Replication, schedule.ops.iter().filter(|op| matches!(op, Op::Batch(_))).count()),
        (Which::Manual, episodes * 5 / 2 + 2),
    ]);
    let mut runner = Runner {
        cfg,
        broken: BTreeMap::new(),
        proxy,
        faults,
        env,
        functions,
        planned,
        invocation: 0,
        figures: PassFigures { label: label.to_owned(), ..PassFigures::default() },
        problems: Vec::new(),
        dead: false,
    };
    let started = Instant::now();
    for (i, op) in schedule.ops.iter().enumerate() {
        if runner.dead {
            break;
        }
        runner.run_op(i, op).await;
    }
    runner.settle().await;
    runner.figures.wall = started.elapsed();
    let status = runner.deliver(Which::Manual, &json!({"command": "status"}), "the final status").await.unwrap_or(Value::Null);
    let mut captured = capture(&runner.env, &status).await;
    let jobs_after = tagged_jobs(&server);
    let activation_problems = activation_invariants(&captured, &jobs_before, &jobs_after);
    captured.facts.insert("tagged jobs".to_owned(), jobs_after.len() as u64);
    // What activation did, from the records: changes in effect (made, or found made), and failbacks that reversed.
    let activations = captured.records.values().filter_map(|r| r.get("activation").filter(|a| !a.is_null()));
    let (mut in_effect, mut reverses) = (0u64, 0u64);
    for a in activations {
        let changes = a["changes"].as_array().map(Vec::as_slice).unwrap_or_default();
        in_effect += changes.iter().filter(|c| c["status"] == "done" || c["status"] == "already_done").count() as u64;
        reverses += u64::from(a["mode"] == "reverse");
    }
    captured.facts.insert("activation changes in effect".to_owned(), in_effect);
    captured.facts.insert("activations reversed by a failback".to_owned(), reverses);
    captured.sections.insert("databricks tagged jobs", json!(jobs_after));
    runner.figures.facts = captured.facts.clone();
    if let Some(dir) = std::env::var_os("SOAK_DUMP") {
        let logs: BTreeMap<&'static str, String> = runner.functions.iter().map(|(w, f)| (w.name(), f.logs())).collect();
        let dir = std::path::Path::new(&dir).join(label);
        let memory: BTreeMap<&String, &Vec<(usize, u64)>> = runner.figures.memory.iter().map(|(k, m)| (k, &m.series)).collect();
        let written =
            captured.dump(&dir, &logs).and_then(|()| std::fs::write(dir.join("memory.json"), json!(memory).to_string()));
        if let Err(e) = written {
            runner.problems.push(format!("SOAK_DUMP {}: {e}", dir.display()));
        }
    }
    let mut problems: Vec<String> = runner.problems.iter().map(|p| format!("{label} run: {p}")).collect();
    problems.extend(invariants(&captured, &schedule.expected).into_iter().map(|p| format!("{label} run: {p}")));
    problems.extend(activation_problems.into_iter().map(|p| format!("{label} run: {p}")));
    for w in Which::ALL {
        let Some(m) = runner.figures.memory.get(w.name()) else {
            problems.push(format!("{label} run: no memory sample of {}", w.name()));
            continue;
        };
        if m.growth_kib() > i64::try_from(cfg.rss_growth_bound_kib).unwrap_or(i64::MAX) {
            problems.push(format!(
                "{label} run: {} grew by {} KiB of VmRSS from invocation {} to {} (bound {} KiB)",
                w.name(),
                m.growth_kib(),
                m.warm_after,
                m.end_after,
                cfg.rss_growth_bound_kib
            ));
        }
    }
    (runner.figures, captured, problems)
}

/// The tagged jobs (`dr=active-passive`) of both workspaces: `{site}/{job name}` to the pause status of its
/// schedule, continuous run or trigger (`UNPAUSED` when it has none of them set).
fn tagged_jobs(server: &DatabricksServer) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for site in ["primary", "secondary"] {
        let state = server.workspace(site).state();
        for job in state["jobs"].as_array().into_iter().flatten() {
            let settings = &job["settings"];
            if settings["tags"]["dr"] != "active-passive" {
                continue;
            }
            let pause = ["schedule", "continuous", "trigger"]
                .iter()
                .find_map(|f| settings[*f]["pause_status"].as_str())
                .unwrap_or("UNPAUSED");
            let name = settings["name"].as_str().unwrap_or_default();
            out.insert(format!("{site}/{name}"), pause.to_owned());
        }
    }
    out
}

/// Activation after the run: no tagged job runs in both workspaces or is paused in both, and the one running is
/// in the active site; when the primary is active again (every episode ends with a failback), each job is as it
/// was before the run: every change a failover made was reversed by a failback.
fn activation_invariants(c: &Captured, before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let active = c.history.last().and_then(|(_, _, doc)| doc["site"].as_str()).unwrap_or("primary");
    let names: BTreeSet<&str> = after.keys().filter_map(|k| k.split_once('/').map(|(_, n)| n)).collect();
    for name in names {
        let running = |site: &str| after.get(&format!("{site}/{name}")).is_some_and(|p| p == "UNPAUSED");
        match (running("primary"), running("secondary")) {
            (true, true) => out.push(format!("tagged job {name} runs in both workspaces")),
            (false, false) => out.push(format!("tagged job {name} is paused in both workspaces")),
            (p, _) if p != (active == "primary") => {
                out.push(format!("tagged job {name} runs only in the passive workspace (active: {active})"));
            }
            _ => {}
        }
    }
    if active == "primary" && before != after {
        let moved: Vec<&String> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
        out.push(format!("the primary is active again but tagged jobs were not restored: {moved:?}"));
    }
    out
}

// ------------------------------------------------------------------------------------------------------------
// The state, read back and normalized
// ------------------------------------------------------------------------------------------------------------

/// The length of an RFC 3339 / CloudWatch time stamp starting at `b[0]`, if one does.
fn timestamp_len(b: &[u8]) -> Option<usize> {
    let d = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let c = |k: usize, ch: u8| b.get(k) == Some(&ch);
    let date = d(0) && d(1) && d(2) && d(3) && c(4, b'-') && d(5) && d(6) && c(7, b'-') && d(8) && d(9);
    if !(date && c(10, b'T') && d(11) && d(12) && c(13, b':') && d(14) && d(15)) {
        return None;
    }
    let mut k = 16;
    if c(k, b':') && d(k + 1) && d(k + 2) {
        k += 3;
        if c(k, b'.') {
            k += 1;
            while d(k) {
                k += 1;
            }
        }
    }
    if c(k, b'Z') {
        k += 1;
    } else if (c(k, b'+') || c(k, b'-')) && d(k + 1) && d(k + 2) {
        k += 3;
        if c(k, b':') {
            k += 1;
        }
        while d(k) {
            k += 1;
        }
    }
    Some(k)
}

/// `text` with the environment's name written `<env>` and every time stamp `<t>`: what differs between two runs
/// of the same schedule by construction (each run has its own environment, and runs at its own time).
fn scrub_text(text: &str, env: &str) -> String {
    let text = text.replace(env, "<env>");
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(len) = timestamp_len(&b[i..]) {
            out.push_str("<t>");
            i += len;
            continue;
        }
        // The local workspaces listen on a new port in each run.
        if text[i..].starts_with("127.0.0.1:") {
            out.push_str("127.0.0.1:<port>");
            i += "127.0.0.1:".len();
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn scrub(v: &Value, env: &str) -> Value {
    match v {
        Value::String(s) => Value::String(scrub_text(s, env)),
        Value::Array(a) => Value::Array(a.iter().map(|x| scrub(x, env)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (scrub_text(k, env), scrub(x, env))).collect()),
        other => other.clone(),
    }
}

/// An execution record reduced to what two runs of the same schedule must agree on.
///
/// Kept: what it is (kind, initiator, trigger, target, reason), what it decided and why, where it ended, the
/// version it promoted and the document it wrote, who approved it, the steps that got done, the pages it sent
/// (by event type and `ALARM`/`OK`), whether its incident ended resolved, and that it owes nothing, has a
/// report and a snapshot when it should.
/// Left out: times, durations and attempt ids (a faulted run takes other attempts), notes (they narrate
/// takeovers and retries), the error text of a resolved stop, message ids, and the pages about a stall
/// (`*.stalled_*`): a stall is the faults' doing by definition, and its `ALARM` is resolved by the same `OK`
/// as the execution's first page, which is checked.
fn normalize_record(v: &Value, env: &str) -> Value {
    let steps_done: BTreeSet<&str> = v["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["outcome"] != "failed")
        .filter_map(|s| s["step"].as_str())
        .collect();
    let paging: Vec<&Value> = v["messages"].as_array().into_iter().flatten().filter(|m| m["channel"] == "paging").collect();
    let sent: BTreeSet<String> = paging
        .iter()
        .filter_map(|m| {
            let event = m["event_type"].as_str()?;
            (!event.contains(".stalled_")).then(|| format!("{event} {}", if m["ok"] == true { "OK" } else { "ALARM" }))
        })
        .collect();
    let last_page = match paging.last() {
        None => "none",
        Some(m) if m["ok"] == true => "OK",
        Some(_) => "ALARM",
    };
    // The snapshot's RPO estimate lists the open incidents as they were then; their `pages_owed` is a transient
    // (a page whose settle failed stays owed, claimed, until its claim runs out): left out.
    let mut rpo = v["rpo_estimate"].clone();
    for incident in rpo["incidents"].as_array_mut().into_iter().flatten() {
        if let Some(o) = incident.as_object_mut() {
            o.remove("pages_owed");
        }
    }
    json!({
        "kind": v["kind"], "state": v["state"], "initiator": v["initiator"], "target": v["target"],
        "trigger": scrub(&v["trigger"], env), "reason": scrub(&v["reason"], env),
        "decision": scrub(&v["decision"], env),
        "promoted_version": v["promoted_version"], "decided_on_version": v["decided_on_version"],
        "config_before": scrub(&v["config_before"], env), "config_after": scrub(&v["config_after"], env),
        "approved_by": v["approved_by"], "rpo_estimate": scrub(&rpo, env),
        "steps_done": steps_done, "pages_sent": sent, "last_page": last_page,
        "owed": v["owed"].as_array().map_or(0, Vec::len),
        "report_key": v["report_key"], "snapshot_manifest_key": v["snapshot_manifest_key"],
        "stopped_with_error": !v["error"].is_null(),
    })
}

/// The fingerprints a ledger segment packs (base64url without padding of 8-byte fingerprints), as hex.
fn fingerprints(packed: &str) -> Vec<String> {
    let mut bytes = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in packed.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push(((acc >> bits) & 0xff) as u8);
        }
    }
    bytes.chunks_exact(8).map(|c| c.iter().map(|b| format!("{b:02x}")).collect()).collect()
}

/// An incident document reduced to what two runs must agree on: everything but its processing times (opened,
/// updated, closed, last page, last problem received), `batches_merged` and the ledger's segmentation. A message
/// whose manifest write failed is left out of every incident and counted by its redelivery, so the same records
/// can be merged in two writes instead of one (docs/replication.md, "Failures"): the number of merges and of
/// ledger segments is the faults' doing. What the ledger holds is kept, as the set of fingerprints counted.
fn normalize_incident(v: &Value, env: &str) -> Value {
    let mut doc = v.clone();
    if let Some(o) = doc.as_object_mut() {
        for k in ["opened_at", "updated_at", "closed_at", "last_page_at", "last_problem_received_at", "batches_merged"] {
            o.remove(k);
        }
        o.insert("owed_pages".into(), json!(v["owed_pages"].as_array().map_or(0, Vec::len)));
        let counted: BTreeSet<String> = v["ledger"]["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| fingerprints(s["fingerprints"].as_str().unwrap_or_default()))
            .collect();
        o.insert("ledger".into(), json!({ "fingerprints": counted.len(), "digest": digest(&counted) }));
    }
    scrub(&doc, env)
}

/// A short digest of a set of strings (the ledger's fingerprints: equal sets, equal digests).
fn digest(set: &BTreeSet<String>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for s in set {
        h.update(s.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The state one run left, normalized into sections, plus facts for the table.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// Section name to its normalized content; two runs of one schedule must agree on every section.
    pub sections: BTreeMap<&'static str, Value>,
    /// Counts for the table and the invariants.
    pub facts: BTreeMap<String, u64>,
    /// Raw material of the invariants.
    records: BTreeMap<String, Value>,
    history: Vec<(i64, Vec<String>, Value)>,
    incidents: BTreeMap<String, Value>,
    manifest_rows: BTreeSet<(String, String, String)>,
    quarantined: BTreeMap<String, usize>,
    status: Value,
    keys: Vec<String>,
}

impl Captured {
    /// Writes what was read (raw records, incidents, keys, status) and the functions' logs under `dir`.
    fn dump(&self, dir: &std::path::Path, logs: &BTreeMap<&'static str, String>) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        std::fs::write(dir.join("records.json"), pretty(&json!(self.records)))?;
        std::fs::write(dir.join("incidents.json"), pretty(&json!(self.incidents)))?;
        std::fs::write(dir.join("status.json"), pretty(&self.status))?;
        std::fs::write(dir.join("sections.json"), pretty(&json!(self.sections)))?;
        std::fs::write(dir.join("keys.txt"), self.keys.join("\n"))?;
        for (name, text) in logs {
            std::fs::write(dir.join(format!("{name}.log")), text)?;
        }
        Ok(())
    }
}

async fn capture(env: &DrEnv, status: &Value) -> Captured {
    let name = env.environment.clone();
    let mut c = Captured {
        history: env.history("active").await,
        status: status.clone(),
        keys: env.keys("").await,
        ..Captured::default()
    };
    fn fact(c: &mut Captured, k: &str, n: usize) {
        c.facts.insert(k.to_owned(), n as u64);
    }

    // {prefix}/active: every version, its labels, and which execution wrote it for which site.
    let active: Vec<Value> =
        c.history.iter().map(|(version, labels, doc)| json!([version, labels, doc["site"], doc["execution_id"]])).collect();
    c.sections.insert("ssm active versions", json!(active));
    let promotions = c.history.len().saturating_sub(seeded_versions(&c.history));
    fact(&mut c, "promotions", promotions);

    let mut records = BTreeMap::new();
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for key in env.keys(domain::layout::EXECUTIONS_PREFIX).await {
        let rec = env.json(&key).await;
        let id = rec["execution_id"].as_str().unwrap_or(&key).to_owned();
        *by_state.entry(rec["state"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        records.insert(id, rec);
    }
    c.sections.insert(
        "execution records",
        Value::Object(records.iter().map(|(id, r)| (id.clone(), normalize_record(r, &name))).collect()),
    );
    fact(&mut c, "execution records", records.len());
    for (state, n) in &by_state {
        fact(&mut c, &format!("records {state}"), *n);
    }
    c.records = records;

    let keys = |prefix: &'static str| async move { env.keys(prefix).await };
    // `check` probes conditional writes with a fresh `locks/probe-{token}.json` and deletes it, ignoring a failed
    // delete: probes left behind are counted, not compared (they lock nothing).
    let (probes, locks): (Vec<String>, Vec<String>) =
        keys("locks/").await.into_iter().partition(|k| k.starts_with("locks/probe-"));
    c.sections.insert("locks", json!(locks));
    fact(&mut c, "check probes left under locks/", probes.len());
    c.sections.insert("reports", json!(keys("reports/").await));
    c.sections.insert("snapshots", json!(keys("snapshots/").await));
    let mut quarantine = Vec::new();
    for key in keys("quarantine/").await {
        // quarantine/{function}/{processing day}/{digest of the input}.json
        let parts: Vec<&str> = key.split('/').collect();
        if let [_, function, _, digest] = parts.as_slice() {
            *c.quarantined.entry((*function).to_owned()).or_default() += 1;
            quarantine.push(format!("quarantine/{function}/<day>/{digest}"));
        }
    }
    quarantine.sort();
    c.sections.insert("quarantine", json!(quarantine));

    for key in keys("replication/incidents/").await {
        let doc = env.json(&key).await;
        c.incidents.insert(doc["id"].as_str().unwrap_or(&key).to_owned(), doc);
    }
    c.sections.insert(
        "replication incidents",
        Value::Object(c.incidents.iter().map(|(id, d)| (id.clone(), normalize_incident(d, &name))).collect()),
    );
    let incidents = c.incidents.len();
    fact(&mut c, "incidents", incidents);

    // Manifests are content-named and at least once (a manifest written before an incident write that failed is
    // written again by the retry, in another file): the set of rows is what must agree.
    let mut rows_total = 0;
    let manifests = keys("replication/manifests/").await;
    for key in &manifests {
        let text = env.object(key).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            rows_total += 1;
            c.manifest_rows.insert((
                f.first().copied().unwrap_or_default().to_owned(),
                percent_decode(f.get(1).copied().unwrap_or_default()),
                f.get(2).copied().unwrap_or_default().to_owned(),
            ));
        }
    }
    c.sections.insert("manifest rows", json!(c.manifest_rows));
    fact(&mut c, "manifest files", manifests.len());
    fact(&mut c, "manifest rows", rows_total);
    let distinct = c.manifest_rows.len();
    fact(&mut c, "manifest rows distinct", distinct);

    // Pages as the pager sees them: which incidents (AlarmName) were opened and resolved. Duplicates (a publish
    // whose answer was lost is sent again) fold into the same incident and are only counted.
    let pages = env.pages().await;
    // `check`'s own pages (AlarmName `DR {env} readiness {finding}`) are left out: in the faulted run the checks
    // see AWS failing and say so (a probe of the bucket or the topic refused), which is right, and the clean run
    // has no such finding.
    type Pages = BTreeSet<(String, String)>;
    let (readiness, seen): (Pages, Pages) = pages
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p["Message"].as_str()?).ok())
        .map(|m| {
            (
                scrub_text(m["AlarmName"].as_str().unwrap_or_default(), &name),
                m["NewStateValue"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .partition(|(alarm, _)| alarm.starts_with("DR <env> readiness "));
    c.sections.insert("pages (AlarmName, state)", json!(seen));
    fact(&mut c, "pages published", pages.len());
    fact(&mut c, "readiness pages (check findings; not compared)", readiness.len());
    fact(&mut c, "page incidents", seen.iter().map(|(a, _)| a).collect::<BTreeSet<_>>().len());
    let chats = env.chats().await;
    fact(&mut c, "chat notes", chats.len());

    // `status` through manual-trigger, as on-call reads it: the active site, what is in flight or resumable,
    // the pages owed, the open replication incidents. (Its list of recent executions is ordered by write time,
    // which the faulted run's retries and check change; it is left out.)
    let s = status;
    c.sections.insert(
        "status",
        scrub(
            &json!({
                "outcome": s["outcome"], "active_site": s["active_site"], "active": s["active"], "sites": s["sites"],
                "policy": s["policy"], "data_plane": s["data_plane"], "problems": s["problems"],
                "in_flight": s["in_flight"], "resumable_executions": s["resumable_executions"],
                "pages_owed": s["pages_owed"], "replication_incidents": s["replication_incidents"],
            }),
            &name,
        ),
    );
    c
}

/// What must hold after any run, faults or not.
/// The versions of `{prefix}/active` the environment was seeded with (the leading ones no execution wrote: the
/// environment's `bootstrap`, then the local workspaces' documents), at least one.
fn seeded_versions(history: &[(i64, Vec<String>, Value)]) -> usize {
    let seeded = |doc: &Value| doc["execution_id"].is_null() || doc["execution_id"] == "bootstrap";
    history.iter().take_while(|(_, _, doc)| seeded(doc)).count().max(1)
}

fn invariants(c: &Captured, expected: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    // One promotion per decision: every version after the seeded one was written by a distinct execution, carries
    // exactly its label, and that execution's record says completed with that version; no completed execution
    // without its version.
    let mut writers = BTreeSet::new();
    for (version, labels, doc) in c.history.iter().skip(seeded_versions(&c.history)) {
        let id = doc["execution_id"].as_str().unwrap_or_default();
        if !writers.insert(id.to_owned()) {
            out.push(format!("{{prefix}}/active version {version}: execution {id} promoted twice"));
        }
        if labels != &vec![id.to_owned()] {
            out.push(format!("{{prefix}}/active version {version}: labels {labels:?}, expected [{id}]"));
        }
        let rec = c.records.get(id).cloned().unwrap_or(Value::Null);
        if rec["state"] != "completed" || rec["promoted_version"] != json!(version) {
            out.push(format!(
                "{{prefix}}/active version {version} by {id}: its record says {} with version {}",
                rec["state"], rec["promoted_version"]
            ));
        }
    }
    for (id, rec) in &c.records {
        if rec["state"] == "completed" && !writers.contains(id) {
            out.push(format!("execution {id} is completed but wrote no version of {{prefix}}/active"));
        }
        let promotes =
            rec["steps"].as_array().into_iter().flatten().filter(|s| s["step"] == "promote" && s["outcome"] == "done").count();
        if promotes > 1 {
            out.push(format!("execution {id} promoted {promotes} times"));
        }
        if matches!(rec["state"].as_str(), Some("running" | "awaiting_approval")) {
            out.push(format!("execution {id} did not end: {}", rec["state"]));
        }
        if rec["state"] == "completed" && !rec["error"].is_null() {
            out.push(format!("execution {id} is completed but its record keeps an error: {}", rec["error"]));
        }
        if let Some(report) = rec["report_key"].as_str() {
            let md = format!("{}.md", report.trim_end_matches(".json"));
            if !c.keys.iter().any(|k| k == report) || !c.keys.contains(&md) {
                out.push(format!("execution {id} names its report {report}, but the bucket lacks it or its .md"));
            }
        }
        if let Some(owed) = rec["owed"].as_array().filter(|o| !o.is_empty()) {
            let events: Vec<&Value> = owed.iter().map(|o| &o["event_type"]).collect();
            out.push(format!("execution {id} still owes pages: {events:?}"));
        }
    }
    // No page owed by an incident, no lock left, nothing owed in `status`.
    for (id, doc) in &c.incidents {
        if doc["owed_pages"].as_array().is_some_and(|o| !o.is_empty()) {
            out.push(format!("incident {id} still owes pages: {}", doc["owed_pages"]));
        }
    }
    if c.sections.get("locks").and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
        out.push(format!("a lock was left: {}", c.sections["locks"]));
    }
    if c.status["pages_owed"] != json!([]) {
        out.push(format!("status lists pages owed: {}", c.status["pages_owed"]));
    }
    if c.status["outcome"] != "noop" {
        out.push(format!("status did not answer: {}", c.status));
    }
    // Exact counts, and every failed object in a manifest.
    for (id, counts) in &expected.incidents {
        let doc = c.incidents.get(id).cloned().unwrap_or(Value::Null);
        let got = json!({ "total_events": doc["total_events"], "total_failed": doc["total_failed"],
                          "counts_by_event_type": doc["counts_by_event_type"], "counts_by_reason": doc["counts_by_reason"] });
        if got != counts.to_json() {
            out.push(format!("incident {id}: counts {got}, expected {}", counts.to_json()));
        }
    }
    if c.incidents.len() != expected.incidents.len() {
        out.push(format!("{} incidents, expected {}", c.incidents.len(), expected.incidents.len()));
    }
    if c.manifest_rows != expected.failed_objects {
        let missing = expected.failed_objects.difference(&c.manifest_rows).count();
        let extra = c.manifest_rows.difference(&expected.failed_objects).count();
        out.push(format!("manifests: {missing} failed objects missing, {extra} rows not expected"));
    }
    // Nothing lost: only the inputs meant to be invalid were quarantined, each once.
    let q = |f: &str| c.quarantined.get(f).copied().unwrap_or(0);
    if q("health-alarm") != expected.not_alarms || q("replication-failure") != expected.poison || c.quarantined.len() > 2 {
        out.push(format!(
            "quarantined {:?}, expected health-alarm {} and replication-failure {}",
            c.quarantined, expected.not_alarms, expected.poison
        ));
    }
    out
}

/// Where two values differ: up to `limit` paths with both sides, shortened.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    let short = |v: &Value| {
        let s = v.to_string();
        if s.len() > 300 { format!("{}...", &s[..s.char_indices().nth(300).map_or(s.len(), |(i, _)| i)]) } else { s }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                    limit,
                );
            }
        }
        // Same length, and the same elements at most places (a field changed): where. A sorted list shifted by an
        // element missing on one side and another added is shown as the set difference below.
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() && x.iter().zip(y).filter(|(p, q)| p != q).count() <= 3 => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out, limit);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            let only = |x: &[Value], y: &[Value]| -> String {
                let items: Vec<String> = x.iter().filter(|v| !y.contains(v)).take(3).map(short).collect();
                let n = x.iter().filter(|v| !y.contains(v)).count();
                format!("{n} ({}{})", items.join(", "), if n > 3 { ", ..." } else { "" })
            };
            out.push(format!(
                "{path}: {} vs {} items; only in the clean run: {}; only in the faulted run: {}",
                x.len(),
                y.len(),
                only(x, y),
                only(y, x)
            ));
        }
        _ => out.push(format!("{path}: clean {} | faulted {}", short(a), short(b))),
    }
}

// ------------------------------------------------------------------------------------------------------------
// The whole soak
// ------------------------------------------------------------------------------------------------------------

/// What the soak found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration it ran.
    pub config: Config,
    /// What the schedule held.
    pub schedule: ScheduleFigures,
    /// The clean run.
    pub clean: PassFigures,
    /// The faulted run.
    pub faulted: PassFigures,
    /// The sections compared, and whether each agreed.
    pub sections: BTreeMap<String, bool>,
    /// Everything that is wrong: differences between the runs, broken invariants, memory beyond its bound,
    /// deliveries that never succeeded. Empty when the soak passed.
    pub problems: Vec<String>,
}

/// Runs the soak: the schedule clean, then with faults, and compares.
pub async fn run(cfg: &Config) -> Report {
    let schedule = Schedule::build(cfg);
    let proxy = FaultProxy::start(&crate::moto::shared().endpoint);
    let (clean, clean_state, mut problems) = run_pass(cfg, &schedule, &proxy, false).await;
    let (faulted, faulted_state, faulted_problems) = run_pass(cfg, &schedule, &proxy, true).await;
    problems.extend(faulted_problems);
    let mut sections = BTreeMap::new();
    for (name, a) in &clean_state.sections {
        let b = faulted_state.sections.get(name).unwrap_or(&Value::Null);
        sections.insert((*name).to_owned(), a == b);
        let mut diffs = Vec::new();
        differences(name, a, b, &mut diffs, 12);
        problems.extend(diffs.into_iter().map(|d| format!("the faulted run differs from the clean run: {d}")));
    }
    Report { config: cfg.clone(), schedule: schedule.figures, clean, faulted, sections, problems }
}

impl Report {
    /// Whether the soak passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The figures as a table.
    pub fn table(&self) -> String {
        let c = &self.config;
        let s = &self.schedule;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "soak: seed {:#x}, {} alarm deliveries, {} replication batches, faults on {:.1}% of AWS calls, AWS latency median {} ms (heavy tail, cap {} ms); sites: two local Databricks workspaces, tagged jobs activated; binaries from {}",
            c.seed,
            c.alarms,
            c.batches,
            c.fault_per_mille as f64 / 10.0,
            c.latency_ms,
            (c.latency_ms * 20).min(600),
            bin_dir().display()
        );
        let list = |m: &BTreeMap<String, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            t,
            "schedule: {} episodes ({}; {} with the secondary's document broken mid-incident, then repaired); {} alarm changes delivered by {} ({} repeats in the episode, {} late copies of earlier episodes, {} muted or suppressed); states {}",
            s.episodes,
            list(&s.modes),
            s.broken_sites,
            s.changes,
            list(&s.by_path),
            s.duplicates,
            s.stragglers,
            s.silenced,
            list(&s.by_state)
        );
        let _ = writeln!(
            t,
            "          {} SQS messages with {} new S3 records, {} S3 duplicates, {} SQS redeliveries regrouped, {} alone",
            s.sqs_messages, s.records, s.s3_duplicates, s.regrouped, s.lone_redeliveries
        );
        let _ = writeln!(t);
        let _ = writeln!(t, "| figure | clean run | faulted run |");
        let _ = writeln!(t, "|---|---:|---:|");
        let row = |t: &mut String, name: &str, a: String, b: String| {
            let _ = writeln!(t, "| {name} | {a} | {b} |");
        };
        let (a, b) = (&self.clean, &self.faulted);
        row(&mut t, "wall time", format!("{:.1} s", a.wall.as_secs_f64()), format!("{:.1} s", b.wall.as_secs_f64()));
        for w in Which::ALL {
            let n = |p: &PassFigures| {
                let inv = p.invocations.get(w.name()).copied().unwrap_or(0);
                let err = p.errors.get(w.name()).copied().unwrap_or(0);
                format!("{inv} ({err} failed, delivered again)")
            };
            row(&mut t, &format!("invocations of {}", w.name()), n(a), n(b));
        }
        row(
            &mut t,
            "SQS partial redeliveries (messages)",
            format!("{} ({})", a.partial_redeliveries, a.redelivered_messages),
            format!("{} ({})", b.partial_redeliveries, b.redelivered_messages),
        );
        row(&mut t, "manual commands answered in_progress (run again)", a.busy_answers.to_string(), b.busy_answers.to_string());
        row(&mut t, "AWS calls", a.aws_calls.to_string(), b.aws_calls.to_string());
        let faults = |p: &PassFigures| {
            let share = 100.0 * p.faults_injected() as f64 / p.aws_calls.max(1) as f64;
            if p.faults.is_empty() {
                "0".to_owned()
            } else {
                format!("{} ({share:.1}%: {})", p.faults_injected(), list(&p.faults))
            }
        };
        row(&mut t, "faults injected", faults(a), faults(b));
        let types = |p: &PassFigures| if p.error_types.is_empty() { "-".to_owned() } else { list(&p.error_types) };
        row(&mut t, "errors answered", types(a), types(b));
        let settle = |p: &PassFigures| {
            format!("{} (checks {}, waited {:.0} s for claims)", p.owed_before_check, p.checks, p.waited_for_claims.as_secs_f64())
        };
        row(&mut t, "pages owed before the scheduled check", settle(a), settle(b));
        let facts: BTreeSet<&String> = a.facts.keys().chain(b.facts.keys()).collect();
        for k in facts {
            let v = |p: &PassFigures| p.facts.get(k).map_or("-".to_owned(), u64::to_string);
            row(&mut t, k, v(a), v(b));
        }
        for w in Which::ALL {
            let m = |p: &PassFigures| match p.memory.get(w.name()) {
                Some(m) => format!(
                    "{} -> {} KiB ({:+} KiB, {:+.0} KiB per 1,000), peak {} KiB; invocations {}..{}",
                    m.warm_rss,
                    m.end_rss,
                    m.growth_kib(),
                    m.growth_per_1000(),
                    m.end_hwm,
                    m.warm_after,
                    m.end_after
                ),
                None => "-".to_owned(),
            };
            row(&mut t, &format!("{} VmRSS after warm-up -> end", w.name()), m(a), m(b));
        }
        let _ = writeln!(t);
        let agreed = self.sections.values().filter(|v| **v).count();
        let _ = writeln!(
            t,
            "state: {agreed} of {} sections equal between the runs ({})",
            self.sections.len(),
            self.sections
                .iter()
                .map(|(k, v)| format!("{k}: {}", if *v { "equal" } else { "DIFFERS" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(t, "memory bound: VmRSS growth after warm-up <= {} KiB per process", c.rss_growth_bound_kib);
        if self.problems.is_empty() {
            let _ = writeln!(t, "result: PASS");
        } else {
            let _ = writeln!(t, "result: FAIL, {} problem(s):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(t, "  - {p}");
            }
        }
        t
    }
}
