//! Structure-aware fuzzing of every normalizer, on stable Rust (cargo-fuzz needs nightly): the three alarm
//! deliveries, every replication wrapping, the manual command parser, and the site, active, policy and
//! data-plane documents.
//!
//! Each case starts from a real payload (the fixtures in `events/`, and valid documents) and applies seeded
//! mutations that real payloads and bad actors produce: a field removed, nulled or retyped, a string made huge
//! or odd (control characters, invalid escapes round-tripped, multi-byte text), an array emptied or
//! duplicated, a value wrapped in a JSON string (SNS's `Message`), nesting made deep. Every input must be
//! answered without a panic and quickly; every rejection must carry a message.
//!
//! CI runs `FUZZ_ITERATIONS` (default 3,000) mutants per normalizer; the long run:
//! `FUZZ_ITERATIONS=200000 FUZZ_SEED=7 cargo test --release -p domain --test fuzz -- --nocapture`.
//! A failure prints the seed and the input; `FUZZ_SEED` replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Map, Value, json};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// SplitMix64: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

fn iterations() -> usize {
    std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED)
}

fn fixtures(folder: &str) -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events").join(folder);
    let mut out: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .collect();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out.sort_by_key(|v| v.to_string());
    out
}

/// Odd strings: huge, control characters, multi-byte, things that look like JSON or timestamps.
fn odd_string(rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => "x".repeat(1 << (10 + rng.below(10))),
        1 => "\u{0}\u{1f}\t\r\n\u{7f}".into(),
        2 => "ümlaut ✓ 🚨 \u{202e}rtl".into(),
        3 => "{\"Type\":\"Notification\",\"Message\":\"{}\"}".into(),
        4 => "2019-10-02T17:04:40.989+0000".into(),
        5 => "arn:aws:cloudwatch:us-east-1:123456789012:alarm:".into(),
        6 => String::new(),
        7 => "%ZZ%2".into(),
        _ => "-1e309".into(),
    }
}

fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1.0e300),
        4 => json!(u64::MAX),
        5 => json!([]),
        6 => json!({}),
        _ => Value::String(odd_string(rng)),
    }
}

/// Every path into `v`, as a list of steps (object keys or array indexes).
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Value::String(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate().take(8) {
                prefix.push(json!(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match (cur, step) {
            (Value::Object(m), Value::String(k)) => m.get_mut(k)?,
            (Value::Array(a), Value::Number(i)) => a.get_mut(i.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One structure-aware mutation of `v` (a string holding JSON is mutated inside, as SNS wraps it, now and then).
fn mutate(v: &mut Value, rng: &mut Rng) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = all[rng.below(all.len())].clone();
    // Mutate inside an embedded JSON string (SNS `Message`, SQS `body`, EventBridge `reasonData`).
    if let Some(Value::String(s)) = at_mut(v, &path)
        && rng.chance(2)
        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
        && inner.is_object()
    {
        mutate(&mut inner, rng);
        *s = inner.to_string();
        return;
    }
    let parent_path = &path[..path.len().saturating_sub(1)];
    match rng.below(9) {
        // Remove the field.
        0 if !path.is_empty() => {
            if let (Some(parent), Some(last)) = (at_mut(v, parent_path), path.last()) {
                match (parent, last) {
                    (Value::Object(m), Value::String(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Value::Number(i)) => {
                        let i = i.as_u64().unwrap_or(0) as usize;
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        // Null it, retype it, make it odd.
        1 => {
            if let Some(t) = at_mut(v, &path) {
                *t = Value::Null;
            }
        }
        2 | 3 => {
            if let Some(t) = at_mut(v, &path) {
                *t = odd_value(rng);
            }
        }
        // Wrap it in a JSON string, or unwrap nothing: SNS and SQS put JSON inside strings.
        4 => {
            if let Some(t) = at_mut(v, &path) {
                *t = Value::String(t.to_string());
            }
        }
        // Nest it deep.
        5 => {
            if let Some(t) = at_mut(v, &path) {
                let depth = 1 + rng.below(200);
                let mut nested = t.take();
                for _ in 0..depth {
                    nested = if rng.chance(2) { json!([nested]) } else { json!({ "x": nested }) };
                }
                *t = nested;
            }
        }
        // Duplicate an array's items, or empty it.
        6 => {
            if let Some(Value::Array(a)) = at_mut(v, &path) {
                if rng.chance(2) {
                    a.clear();
                } else {
                    let copy = a.clone();
                    for _ in 0..rng.below(50) {
                        a.extend(copy.iter().cloned());
                    }
                }
            }
        }
        // Add an unknown field.
        7 => {
            if let Some(Value::Object(m)) = at_mut(v, &path) {
                m.insert(odd_string(rng).chars().take(40).collect(), odd_value(rng));
            }
        }
        // Replace the whole input.
        _ => {
            if path.is_empty() || rng.chance(10) {
                *v = odd_value(rng);
            }
        }
    }
}

/// Runs `check` on `iterations()` mutants of each seed input; panics name the seed, the round and the input.
fn fuzz(name: &str, seeds: &[Value], check: impl Fn(&Value) -> Result<(), String>) -> usize {
    let base = seed();
    let mut rng = Rng(base ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    let mut tried = 0;
    for round in 0..iterations() {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut input, &mut rng);
        }
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let took = started.elapsed();
        let shown: String = input.to_string().chars().take(2_000).collect();
        match outcome {
            Err(_) => panic!("{name}: PANIC on round {round} (FUZZ_SEED={base}); input: {shown}"),
            Ok(Err(problem)) => panic!("{name}: {problem} on round {round} (FUZZ_SEED={base}); input: {shown}"),
            Ok(Ok(())) => {}
        }
        // No hang: the biggest mutants (megabyte strings, 50x arrays) parse in milliseconds; a second is a bug.
        assert!(took < Duration::from_secs(1), "{name}: {took:?} on round {round} (FUZZ_SEED={base}); input: {shown}");
        tried += 1;
    }
    println!("{name}: {tried} mutants, no panic, no hang, every rejection explained");
    tried
}

/// A rejection must say something.
fn explained(message: String) -> Result<(), String> {
    if message.trim().is_empty() { Err("a rejection without a message".into()) } else { Ok(()) }
}

#[test]
fn alarm_deliveries() {
    let seeds = fixtures("health-alarm");
    let n = fuzz("alarm", &seeds, |v| match dr_failover::rules::alarm::parse(v) {
        Ok(change) => {
            // What a parsed change promises: a name, an ARN, an execution id derived from them.
            if change.alarm_name.is_empty() || !change.execution_id().starts_with("alarm-") {
                return Err(format!("accepted a change without a name or an id: {change:?}"));
            }
            Ok(())
        }
        Err(e) => explained(e.to_string()),
    });
    assert_eq!(n, iterations());
}

#[test]
fn replication_wrappings() {
    let seeds = fixtures("replication-failure");
    fuzz("replication", &seeds, |v| {
        let payload = dr_replication::rules::event::parse_payload(v);
        // The route without a JSON tree (the function's) reads every mutant exactly as the tree does.
        let text = v.to_string();
        match dr_replication::rules::event::Envelope::parse(&text) {
            Ok(envelope) if envelope.payload() != payload => {
                return Err(format!(
                    "Envelope::parse and parse_payload differ on {}",
                    text.chars().take(300).collect::<String>()
                ));
            }
            Ok(_) => {}
            // A mutant nested deeper than serde_json reads (its recursion limit, 128) is no payload Lambda can
            // hand over: the runtime's own parse refuses it first. Anything else is a defect.
            Err(e) if serde_json::from_str::<Value>(&text).is_ok() => return Err(format!("valid JSON refused: {e}")),
            Err(_) => {}
        }
        // Every record is reachable, each failure explained.
        let _ = payload.records().count();
        let _ = payload.source();
        if let Some(Value::Array(records)) = v.get("Records") {
            for r in records {
                if let Some(body) = r.get("body").and_then(Value::as_str)
                    && let Err(e) = dr_replication::rules::event::parse_body(body)
                {
                    explained(e.to_string())?;
                }
            }
        }
        Ok(())
    });
}

#[test]
fn manual_commands() {
    let mut seeds = fixtures("manual-trigger");
    seeds.extend([
        json!({"command":"failover","target":"secondary","confirm":"secondary","reason":"r","requested_by":"me","client_token":"t-1"}),
        json!({"command":"failback","target":"primary","confirm":"primary","reason":"r","requested_by":"me"}),
        json!({"command":"approve","execution_id":"alarm-0123","requested_by":"me"}),
        json!({"command":"unlock","execution_id":"ex-1","confirm":"ex-1","requested_by":"me"}),
        json!({"command":"cancel","execution_id":"ex-1","confirm":"ex-1","requested_by":"me","reason":"r"}),
        json!({"command":"drill","requested_by":"me","reason":"r"}),
    ]);
    fuzz("command", &seeds, |v| match engine::command::parse(v) {
        Ok(_) => Ok(()),
        Err(e) => explained(e.to_string()),
    });
}

#[test]
fn ssm_documents() {
    let site = json!({"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","workspace_id":"123"});
    let active = json!({"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary",
                        "execution_id":"bootstrap","promoted_at":"2026-01-01T00:00:00Z"});
    let policy = json!({"mode":"approval","failover_alarms":["wh"],"cooldown_minutes":30,
                        "drill":{"blocked_dates":["2026-12-24"],"blocked_windows":[{"days":["mon"],"start":"09:00","end":"17:00"}]}});
    let data_plane = json!({"locations":[{"name":"sales","kind":"delta","primary":"s3://a-bucket/delta/sales","replica":"s3://b-bucket/delta/sales"}]});
    type Parse = fn(&str) -> Result<(), String>;
    let parsers: [(&str, Value, Parse); 4] = [
        ("site", site, |s| domain::site::SiteConfig::parse("site", s).map(|_| ()).map_err(|e| e.to_string())),
        ("active", active, |s| domain::site::ActiveConfig::parse("active", s).map(|_| ()).map_err(|e| e.to_string())),
        ("policy", policy, |s| domain::policy::Policy::parse("policy", s).map(|_| ()).map_err(|e| e.to_string())),
        ("data-plane", data_plane, |s| {
            domain::data_plane::DataPlane::parse("data-plane", s).map(|_| ()).map_err(|e| e.to_string())
        }),
    ];
    for (name, seed_doc, parse) in parsers {
        fuzz(name, std::slice::from_ref(&seed_doc), |v| match parse(&v.to_string()) {
            Ok(()) => Ok(()),
            Err(e) => explained(e),
        });
        // The raw text, too: SSM values are strings and need not be JSON at all.
        assert!(parse("not json").is_err() && parse("").is_err() && parse("[]").is_err());
        let _ = Map::new();
    }
}

#[test]
#[should_panic(expected = "PANIC")]
fn the_harness_catches_a_normalizer_that_panics() {
    // Proof that the checks above can fail: a normalizer that panics on a missing field is caught.
    let seeds = fixtures("health-alarm");
    fuzz("self-test", &seeds, |v| {
        if v.get("source").is_none() {
            panic!("unexpected shape");
        }
        Ok(())
    });
}
