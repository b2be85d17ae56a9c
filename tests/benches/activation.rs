//! Benchmark: workload activation at size. `manual-trigger` (the built binary) fails over between the two local
//! Databricks workspaces (`scripts/databricks_server.py`), each holding `BENCH_JOBS` (1,000) jobs tagged
//! `dr=active-passive`, every API answer taking `BENCH_LATENCY_MS` (150: a workspace across a region), with moto's
//! S3, SSM and Route 53. Prints, per run: the invocation's wall time, the activation step's time, each side's
//! time from its first to its last `jobs/update`, and how many changes were made.
//!
//! The bench fails unless every change is made and the invocation ends within health-alarm's timeout (60 s,
//! `template.yaml`) less a margin for the rest of a failover on AWS (`BENCH_BUDGET_SECONDS`, 45).
//!
//! `cargo build --workspace --bins && cargo bench --profile dev -p tests --bench activation` (`--profile dev`
//! spares a release build of the harness; set `DR_FUNCTION_BIN_DIR=$PWD/target/release` for the release
//! binaries). `BENCH_RUNS` (default 2).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::databricks::{SitePair, Workspace};
use tests::median;

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Makes `jobs` of the workspace's jobs tagged `dr=active-passive` (copies of its tagged `nightly-etl`), their
/// schedules at `pause`.
fn tagged_jobs(ws: &Workspace, jobs: u64, pause: &str) {
    let mut state = ws.state();
    let model = state["jobs"].as_array().unwrap().iter().find(|j| j["settings"]["name"] == "nightly-etl").unwrap().clone();
    let list = state["jobs"].as_array_mut().unwrap();
    list.retain(|j| j["settings"]["tags"]["dr"] != "active-passive");
    for i in 0..jobs {
        let mut j = model.clone();
        j["job_id"] = json!(900_000 + i);
        j["settings"]["name"] = json!(format!("bulk-{i}"));
        j["settings"]["schedule"]["pause_status"] = json!(pause);
        list.push(j);
    }
    ws.set_state(&state);
}

/// Seconds from the workspace's first `jobs/update` to its last, and how many there were.
fn update_span(ws: &Workspace) -> (f64, usize) {
    let at: Vec<f64> = ws.requests().iter().filter(|q| q.path == "/api/2.2/jobs/update").map(|q| q.at).collect();
    let span = at.iter().copied().fold(f64::NEG_INFINITY, f64::max) - at.iter().copied().fold(f64::INFINITY, f64::min);
    (span.max(0.0), at.len())
}

#[tokio::main]
async fn main() {
    let (runs, jobs, latency_ms, budget) =
        (var("BENCH_RUNS", 2), var("BENCH_JOBS", 1000), var("BENCH_LATENCY_MS", 150), var("BENCH_BUDGET_SECONDS", 45));
    let activation = json!({"job_tag": "dr=active-passive", "warehouses": ["bi"]});
    let (mut wall, mut step) = (Vec::new(), Vec::new());
    println!(
        "activation: {jobs} tagged jobs a workspace, {latency_ms} ms a call, {} calls in flight a workspace, binaries from {}",
        dr_failover::ACTIVATION_IN_FLIGHT,
        tests::runtime_api::bin_dir().display()
    );
    for run in 0..runs {
        let pair = SitePair::start(&json!({ "activation": activation }), None).await;
        tagged_jobs(pair.primary(), jobs, "UNPAUSED");
        tagged_jobs(pair.secondary(), jobs, "PAUSED");
        for ws in [pair.primary(), pair.secondary()] {
            ws.set_latency(Duration::from_millis(latency_ms));
        }
        let mut f = pair.function(&[]);
        let t = Instant::now();
        let r = f
            .invoke(&json!({"command": "failover", "target": "secondary", "reason": "bench", "requested_by": "bench",
                            "confirm": "secondary", "client_token": format!("a{run}")}))
            .response();
        let elapsed = t.elapsed().as_secs_f64();
        assert_eq!(r["outcome"], "completed", "{r:#}");
        let rec = pair.env.json(&format!("executions/failover-a{run}.json")).await;
        let changes = rec["activation"]["changes"].as_array().cloned().unwrap_or_default();
        let done = changes.iter().filter(|c| c["status"] == "done").count();
        let activate = r["timings_ms"]["activate"].as_f64().unwrap_or(f64::NAN) / 1000.0;
        let ((target_span, target_n), (former_span, former_n)) = (update_span(pair.secondary()), update_span(pair.primary()));
        println!(
            "run {run}: invocation {elapsed:.1} s, activate step {activate:.1} s; target (secondary) {target_n} resumes over \
             {target_span:.1} s, former (primary) {former_n} pauses over {former_span:.1} s; {done} of {} change(s) done",
            changes.len()
        );
        let undone: Vec<&Value> = changes.iter().filter(|c| c["status"] != "done").take(3).collect();
        assert!(undone.is_empty(), "changes not done: {undone:#?}");
        assert!(elapsed < budget as f64, "{elapsed:.1} s: over the {budget} s budget");
        wall.push(elapsed);
        step.push(activate);
    }
    println!("median: invocation {:.1} s, activate step {:.1} s (health-alarm's timeout: 60 s)", median(wall), median(step));
}
