//! Benchmark: `sync` at size against the local Databricks API (`scripts/databricks_server.py`) and moto, through
//! the `manual-trigger` binary and its real HTTP client, as Lambda runs it. The primary holds `BENCH_JOBS` (1,000)
//! jobs (`tests::databricks::generated_workspace`, no tables); the secondary holds the sample's pools, policies and
//! warehouses and no job. Every API answer of both workspaces takes `BENCH_LATENCY_MS` (150: a workspace across a
//! region). Per run: a snapshot (both exports; not timed here, the export bench measures it), then in a fresh
//! process the plan (`sync`) and the apply (`sync` with `apply`), each timed; the calls the standby received
//! (reads and writes), the journal's outcome and counts, the process's peak RSS; then a snapshot and a second plan
//! and apply (nothing left but what is blocked, no write).
//!
//! `cargo bench -p tests --bench sync --profile dev` (the debug binaries; `DR_FUNCTION_BIN_DIR=$PWD/target/release`
//! for the release ones). `BENCH_RUNS` (1), `BENCH_JOBS` (1000), `BENCH_LATENCY_MS` (150). Not part of CI's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::databricks::{SitePair, generated_workspace, sample_workspace};
use tests::runtime_api::bin_dir;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const LONG: Duration = Duration::from_secs(900);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (runs, jobs, latency_ms) = (var("BENCH_RUNS", 1), var("BENCH_JOBS", 1000), var("BENCH_LATENCY_MS", 150));
    println!(
        "sync of {jobs} jobs (primary) onto a standby with none, {latency_ms} ms per call, {} calls in flight, binaries in {}",
        dr_workspace::sync::apply::IN_FLIGHT,
        bin_dir().display()
    );
    println!(
        "| run | plan s | changes | apply s | standby calls (writes) | outcome | peak RSS MB | second plan | second apply writes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in 1..=runs {
        let mappings = json!({"zone_ids": {"us-east-1a": "us-west-2a"},
            "storage_roots": {"s3://acme-primary-landing/": "s3://acme-secondary-landing/",
                              "s3://acme-primary-uc-root/": "s3://acme-secondary-landing/uc/"}});
        let pair = SitePair::start(&json!({"activation": {"job_tag": "dr=active-passive"}, "sync": mappings}), None).await;
        pair.primary().set_state(&generated_workspace(jobs, 0));
        let mut standby = sample_workspace("secondary");
        standby["jobs"] = json!([]);
        if let Some(p) = standby["permissions"].as_object_mut() {
            p.retain(|k, _| !k.starts_with("jobs/"));
        }
        pair.secondary().set_state(&standby);
        for w in [pair.primary(), pair.secondary()] {
            w.set_latency(Duration::from_millis(latency_ms as u64));
        }
        let snapshot = || {
            let mut f = pair.function(&[]);
            let r = f.invoke_with_timeout(&json!({"command": "snapshot"}), LONG).response();
            assert_eq!(r["outcome"], "completed", "{r:#}");
        };
        snapshot();

        let mut f = pair.function(&[]);
        pair.secondary().clear_requests();
        let t = Instant::now();
        let plan = f.invoke_with_timeout(&json!({"command": "sync"}), LONG).response();
        let plan_s = t.elapsed().as_secs_f64();
        let changes = plan["plan"]["counts"].clone();
        let apply = json!({"command": "sync", "apply": true, "confirm": "secondary", "requested_by": "bench"});
        let t = Instant::now();
        let r = f.invoke_with_timeout(&apply, LONG).response();
        let apply_s = t.elapsed().as_secs_f64();
        let requests = pair.secondary().requests();
        let writes = requests.iter().filter(|q| q.method != "GET").count();
        let rss = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        let outcome = r["apply"]["outcome"].as_str().unwrap_or("?").to_owned();
        let made = pair.secondary().state()["jobs"].as_array().map_or(0, Vec::len);

        snapshot();
        let mut again = pair.function(&[]);
        pair.secondary().clear_requests();
        let second = again.invoke_with_timeout(&json!({"command": "sync"}), LONG).response();
        again.invoke_with_timeout(&apply, LONG).response();
        let second_writes = pair.secondary().requests().iter().filter(|q| q.method != "GET").count();
        let counts = |v: &Value| -> String {
            let parts: Vec<String> = v.as_object().into_iter().flatten().map(|(a, n)| format!("{a} {n}")).collect();
            if parts.is_empty() { "nothing".into() } else { parts.join(", ") }
        };
        println!(
            "| {run} | {plan_s:.2} | {} | {apply_s:.1} | {} ({writes}) | {outcome}, {made} jobs | {rss:.1} | {} | {second_writes} |",
            counts(&changes),
            requests.len(),
            counts(&second["plan"]["counts"]),
        );
    }
}
