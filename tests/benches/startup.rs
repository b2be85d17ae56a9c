//! Benchmark: each function as Lambda runs it, beside a bare `lambda_runtime` hello-world built with the same
//! profile: init time (process start to its first request for an invocation, on a local Runtime API), handler
//! time on a representative event against moto (warm), peak RSS, binary size; and the replication batch's CPU
//! time per 6 MB batch (the function process's user + system time, warm).
//!
//! `scripts/bench` builds the release binaries and runs this with `DR_FUNCTION_BIN_DIR=target/release`
//! (`BENCH_RUNS`, default 20 cold starts per function). Prints one table.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::{Function, bin_dir};
use tests::{fixture, median};

/// A 6 MB SQS batch of replication failures (the size limit of an SQS batch to Lambda).
fn big_batch() -> Value {
    let one = fixture("replication-failure", "sqs-direct-failed-replication.json");
    let record = one["Records"][0].clone();
    let mut records = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < 6_000_000 {
        let mut r = record.clone();
        r["messageId"] = json!(format!("bench-{i:06}"));
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        let mut body = body;
        if let Some(recs) = body["Records"].as_array_mut() {
            for (j, rec) in recs.iter_mut().enumerate() {
                rec["s3"]["object"]["key"] = json!(format!("delta/sales/part-{i:06}-{j}.parquet"));
                rec["s3"]["object"]["sequencer"] = json!(format!("{:016X}", i * 10 + j));
            }
        }
        r["body"] = json!(body.to_string());
        size += r.to_string().len();
        records.push(r);
        i += 1;
    }
    json!({ "Records": records })
}

struct Row {
    name: &'static str,
    init_ms: f64,
    /// Init with an empty trust store (`SSL_CERT_FILE=/dev/null`): the difference is the certificate store's
    /// share (the SDK loads the platform's roots while the clients are built).
    init_no_roots_ms: f64,
    handler_ms: f64,
    rss_kib: u64,
    size: u64,
    /// The arm64 build of `scripts/build-lambda` (`target/lambda/<name>/bootstrap`), when present.
    arm64_size: Option<u64>,
}

/// The stripped arm64 binary that `scripts/build-lambda` wrote for `name`, if any.
fn arm64_size(name: &str) -> Option<u64> {
    let path = format!("{}/../target/lambda/{name}/bootstrap", env!("CARGO_MANIFEST_DIR"));
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let moto = moto::shared();
    let env = DrEnv::seed(&moto.endpoint).await;
    env.put("policy", &json!({"mode": "notify-only", "failover_alarms": ["databricks-prod-workspace-unhealthy"]})).await;
    let mut vars = env.function_env();
    // The production log level: the bench measures what Lambda runs.
    vars.push(("AWS_LAMBDA_LOG_LEVEL".into(), "info".into()));
    let cases: [(&'static str, Value); 4] = [
        ("hello-lambda", json!({})),
        ("manual-trigger", json!({"command": "status"})),
        ("health-alarm", fixture("health-alarm", "eventbridge-metric-alarm.json")),
        ("replication-failure", fixture("replication-failure", "sqs-direct-failed-replication.json")),
    ];
    let mut rows = Vec::new();
    for (name, event) in &cases {
        let (mut inits, mut handlers, mut rss) = (Vec::new(), Vec::new(), 0);
        let mut no_roots = Vec::new();
        let mut bare = vars.clone();
        bare.push(("SSL_CERT_FILE".into(), "/dev/null".into()));
        for _ in 0..runs {
            let f = Function::start(name, &bare);
            no_roots.push(f.init_duration(Duration::from_secs(10)).expect("init").as_secs_f64() * 1000.0);
        }
        for _ in 0..runs {
            let mut f = Function::start(name, &vars);
            let init = f.init_duration(Duration::from_secs(10)).expect("the function asked for an invocation");
            inits.push(init.as_secs_f64() * 1000.0);
            // Two warm invocations of the same event (the first pays the connections), the second is timed.
            let _ = f.invoke(event);
            let t = Instant::now();
            let _ = f.invoke(event);
            handlers.push(t.elapsed().as_secs_f64() * 1000.0);
            rss = rss.max(f.peak_rss_kib().unwrap_or(0));
        }
        let size = std::fs::metadata(bin_dir().join(name)).map(|m| m.len()).unwrap_or(0);
        let init_no_roots_ms = median(no_roots);
        let arm64_size = arm64_size(if *name == "hello-lambda" { "hello-lambda" } else { name });
        rows.push(Row {
            name,
            init_ms: median(inits),
            init_no_roots_ms,
            handler_ms: median(handlers),
            rss_kib: rss,
            size,
            arm64_size,
        });
    }
    let hello = rows.iter().find(|r| r.name == "hello-lambda").map(|r| (r.init_ms, r.rss_kib, r.size, r.arm64_size)).unwrap();
    println!("binaries: {} ({runs} cold starts each; handler = a warm invocation against moto)", bin_dir().display());
    println!(
        "| function | init ms (median) | x hello | init without the cert store | handler ms (median) | peak RSS MB | x hello | x86_64 MB | x hello | arm64 MB | x hello |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (arm, arm_ratio) = match (r.arm64_size, hello.3) {
            (Some(a), Some(h)) => (format!("{:.1}", a as f64 / 1e6), format!("{:.2}", a as f64 / h as f64)),
            (Some(a), None) => (format!("{:.1}", a as f64 / 1e6), "-".to_owned()),
            _ => ("not built (scripts/build-lambda)".to_owned(), "-".to_owned()),
        };
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {arm} | {arm_ratio} |",
            r.name,
            r.init_ms,
            r.init_ms / hello.0,
            r.init_no_roots_ms,
            r.handler_ms,
            r.rss_kib as f64 / 1024.0,
            r.rss_kib as f64 / hello.1 as f64,
            r.size as f64 / 1e6,
            r.size as f64 / hello.2 as f64
        );
    }

    // The replication batch as the deployed binary spends it: CPU time per 6 MB batch, warm.
    let batch = big_batch();
    let batches: usize = std::env::var("BENCH_BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let mut f = Function::start("replication-failure", &vars);
    let _ = f.invoke(&batch);
    let before = f.cpu_time().unwrap_or_default();
    let t = Instant::now();
    for _ in 0..batches {
        let r = f.invoke(&batch);
        assert!(matches!(r, tests::runtime_api::Invocation::Response(_)), "{r:?}");
    }
    let wall = t.elapsed();
    let cpu = f.cpu_time().unwrap_or_default() - before;
    println!(
        "replication-failure, 6 MB SQS batch ({} messages), warm, {batches} batches: CPU {:.1} ms/batch, wall {:.0} ms/batch (wall is mostly moto), peak RSS {:.1} MB",
        batch["Records"].as_array().map_or(0, Vec::len),
        cpu.as_secs_f64() * 1000.0 / batches as f64,
        wall.as_secs_f64() * 1000.0 / batches as f64,
        f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
}
