//! Benchmark: the handler time of a whole failover against local moto, through the Runtime API.
//!
//! `cargo bench -p tests --bench failover` (after `cargo build --release --bins`; set
//! `DR_FUNCTION_BIN_DIR=target/release` to measure the release binaries, the default is target/debug).
//! Prints the wall time of the invocation, the engine's own step timings, and the AWS calls it made.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::json;
use std::time::Instant;
use tests::dr_env::DrEnv;
use tests::fault_proxy::FaultProxy;
use tests::moto;
use tests::runtime_api::Function;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let moto = moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint);
    let mut wall = Vec::new();
    let mut rto = Vec::new();
    let mut steps: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut calls = 0;
    // Run 0 goes through the counting proxy (which adds latency); the timed runs talk to moto directly.
    for i in 0..=runs {
        let env = DrEnv::seed(&moto.endpoint).await;
        let mut vars = env.function_env();
        for (k, v) in vars.iter_mut() {
            if k == "AWS_ENDPOINT_URL" && i == 0 {
                *v = proxy.endpoint.clone();
            }
        }
        let mut f = Function::start("manual-trigger", &vars);
        // Warm the sandbox (a cold start is measured apart from the handler), then fail over.
        f.invoke(&json!({"command": "status"})).response();
        proxy.plan(vec![]);
        let t = Instant::now();
        let r = f
            .invoke(&json!({"command": "failover", "target": "secondary", "reason": "bench", "requested_by": "bench",
                            "confirm": "secondary", "client_token": format!("b{i}")}))
            .response();
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(r["outcome"], "completed", "{r}");
        if i == 0 {
            calls = proxy.log().len();
            continue;
        }
        wall.push(elapsed);
        let mut to_verify = 0.0;
        for (step, ms) in r["timings_ms"].as_object().unwrap() {
            let ms = ms.as_f64().unwrap_or(0.0);
            steps.entry(step.clone()).or_default().push(ms);
            if ["decide", "lock", "fence", "snapshot", "promote", "verify"].contains(&step.as_str()) {
                to_verify += ms;
            }
        }
        rto.push(to_verify);
    }
    for v in [&mut wall, &mut rto] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!("failover against local moto, {runs} runs, binaries from {}", tests::runtime_api::bin_dir().display());
    println!(
        "handler wall time (invoke to response), ms: min {:.1}  median {:.1}  p90 {:.1}",
        wall[0],
        percentile(&wall, 0.5),
        percentile(&wall, 0.9)
    );
    println!(
        "trigger to verified promotion (decide..verify), ms: min {:.1}  median {:.1}  p90 {:.1}",
        rto[0],
        percentile(&rto, 0.5),
        percentile(&rto, 0.9)
    );
    for (step, mut v) in steps {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("  step {step:<9} median {:>6.1} ms", percentile(&v, 0.5));
    }
    println!("AWS calls per failover: {calls} (sequential round trips to the verified promotion: tests/benches/tls.rs)");
}
