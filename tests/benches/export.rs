//! Benchmark: a snapshot's export of two Databricks workspaces of 1,000 jobs and 5,000 tables each (plus every
//! other type: `tests::databricks::generated_workspace`), by the `manual-trigger` binary against the local
//! Databricks API (`scripts/databricks_server.py`) and moto, as Lambda runs it. Prints, per run: the
//! invocation's wall time, each site's export time and calls, the objects exported, and the function's peak RSS.
//!
//! Every API answer of the local workspaces takes `BENCH_LATENCY_MS` (150: a workspace across a region), and both
//! sites' exports must end `complete` for every kind within the production deadline (`DR_EXPORT_DEADLINE_SECONDS`,
//! 90 s): the bench fails otherwise.
//!
//! `DR_FUNCTION_BIN_DIR=$PWD/target/release cargo bench -p tests --bench export` (the release build; the
//! debug binaries work too, slower). `BENCH_RUNS` (default 3), `BENCH_JOBS` (1000), `BENCH_TABLES` (5000),
//! `BENCH_LATENCY_MS` (150), `BENCH_CONCURRENCY` (the default of `DR_EXPORT_CONCURRENCY`, 32), `BENCH_RATE_LIMIT`
//! (the default of `DR_DATABRICKS_RATE_LIMIT`, 150 requests per second to one workspace), `BENCH_SQL` (1: the
//! site documents name a running SQL warehouse in `export.sql_warehouse_id`, so that tables and grants are read
//! from `system.information_schema`), `BENCH_DEADLINE_SECONDS` (`DR_EXPORT_DEADLINE_SECONDS`, 90).
//!
//! The two sizes of issue 24: `BENCH_RUNS=1 cargo bench -p tests --bench export` (1,000 jobs, 5,000 tables,
//! object by object) and `BENCH_RUNS=1 BENCH_JOBS=10000 BENCH_TABLES=100000 BENCH_SQL=1 cargo bench -p tests --bench
//! export` (through the SQL warehouse). Each run is one invocation: the export is not carried over invocations.
//!
//! `BENCH_CARRIED=1`: the export carried over invocations (`dr_workspace::carry`): the function gets an export
//! queue (moto's SQS), the `snapshot` invocation runs what its budget (`BENCH_DEADLINE_SECONDS`) holds and posts
//! the rest; `BENCH_PARALLEL` (2, the template's `MaximumConcurrency`) sandboxes then play the SQS event source
//! mapping, one continuation per invocation, until the run is merged. Prints the total time (the snapshot's start
//! to the merge), the invocations, the continuations delivered and the largest peak RSS of any sandbox. The big
//! size: `BENCH_RUNS=1 BENCH_CARRIED=1 BENCH_SQL=1 BENCH_JOBS=10000 BENCH_TABLES=100000 cargo bench -p tests --bench
//! export`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aws_sdk_ssm::types::ParameterType;
use serde_json::json;
use std::time::Instant;
use tests::databricks::{DatabricksServer, generated_workspace};
use tests::dr_env::DrEnv;
use tests::median;
use tests::moto;
use tests::runtime_api::{Function, bin_dir};

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Drives a carried export's continuations from `queue` with `functions` (one sandbox each, in parallel) until
/// the run at `run` is merged; returns the sandboxes (for their RSS) and the continuations delivered.
async fn drive_continuations(env: &DrEnv, queue: &str, run: &str, functions: Vec<Function>) -> (Vec<Function>, usize) {
    let workers = functions.into_iter().map(|mut f| {
        let (sqs, queue, run, s3, bucket) =
            (env.sqs.clone(), queue.to_owned(), run.to_owned(), env.s3.clone(), env.bucket.clone());
        tokio::spawn(async move {
            let mut delivered = 0usize;
            let mut idle = Instant::now();
            loop {
                let r = sqs.receive_message().queue_url(&queue).max_number_of_messages(1).wait_time_seconds(1).send().await.unwrap();
                let Some(m) = r.messages.unwrap_or_default().into_iter().next() else {
                    let state = s3.get_object().bucket(&bucket).key(&run).send().await.unwrap().body.collect().await.unwrap();
                    let state: serde_json::Value = serde_json::from_slice(&state.into_bytes()).unwrap();
                    if state["manifest_key"].is_string() {
                        return (f, delivered);
                    }
                    assert!(idle.elapsed().as_secs() < 300, "no continuation for 300 s and the run is not merged: {state:#}");
                    continue;
                };
                idle = Instant::now();
                let event = json!({"Records": [{"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                    "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:export", "awsRegion": "us-west-2"}]});
                let (back, answer) = tokio::task::spawn_blocking(move || {
                    let a = f.invoke_with_timeout(&event, std::time::Duration::from_secs(900));
                    (f, a)
                })
                .await
                .unwrap();
                f = back;
                assert_eq!(answer.clone().response(), json!({"batchItemFailures": []}), "{answer:?}");
                sqs.delete_message().queue_url(&queue).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
                delivered += 1;
            }
        })
    });
    let mut out = Vec::new();
    let mut delivered = 0;
    for w in workers.collect::<Vec<_>>() {
        let (f, n) = w.await.unwrap();
        out.push(f);
        delivered += n;
    }
    (out, delivered)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (runs, jobs, tables) = (var("BENCH_RUNS", 3), var("BENCH_JOBS", 1000), var("BENCH_TABLES", 5000));
    let concurrency = var("BENCH_CONCURRENCY", 32).to_string();
    let rate_limit = var("BENCH_RATE_LIMIT", 150).to_string();
    let latency_ms = var("BENCH_LATENCY_MS", 150);
    let sql = var("BENCH_SQL", 0) == 1;
    let deadline = var("BENCH_DEADLINE_SECONDS", 90).to_string();
    let carried = var("BENCH_CARRIED", 0) == 1;
    let parallel = var("BENCH_PARALLEL", 2);
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let server = DatabricksServer::start(&["primary", "secondary"]).unwrap();
    let (p, s) = (server.workspace("primary"), server.workspace("secondary"));
    let state = generated_workspace(jobs, tables);
    p.set_state(&state);
    s.set_state(&state);
    for w in [p, s] {
        w.set_latency(std::time::Duration::from_millis(latency_ms as u64));
    }
    for (name, value) in [("primary-pat", p.pat()), ("secondary-pat", s.pat())] {
        let full = format!("{}/secrets/{name}", env.prefix);
        env.ssm.put_parameter().name(full).value(value).r#type(ParameterType::SecureString).overwrite(true).send().await.unwrap();
    }
    // A warehouse that runs: the statements do not wait for one to start.
    let warehouse = state["warehouses"].as_array().unwrap().iter().find(|w| w["state"] == "RUNNING").unwrap()["id"].clone();
    for (site, w, region) in [("primary", p, "us-east-1"), ("secondary", s, "us-west-2")] {
        let mut doc =
            json!({"workspace_url": w.url, "region": region, "token_parameter": format!("{}/secrets/{site}-pat", env.prefix)});
        if sql {
            doc["export"] = json!({"sql_warehouse_id": warehouse});
        }
        env.put(&format!("sites/{site}"), &doc).await;
    }
    let mut vars = env.function_env();
    vars.push(("DR_EXPORT_CONCURRENCY".into(), concurrency.clone()));
    vars.push(("DR_DATABRICKS_RATE_LIMIT".into(), rate_limit.clone()));
    vars.push(("DR_EXPORT_DEADLINE_SECONDS".into(), deadline.clone()));
    if carried {
        let q = env.sqs.create_queue().queue_name(format!("{}-export", env.environment)).send().await.unwrap();
        let queue = q.queue_url.unwrap();
        vars.push(("DR_EXPORT_QUEUE_URL".into(), queue.clone()));
        println!(
            "export of 2 workspaces x ({jobs} jobs, {tables} tables), {latency_ms} ms per call, carried over invocations: budget {deadline} s \
             per invocation, {parallel} sandboxes consuming the continuations, tables and grants {}, binaries in {}",
            if sql { "through a SQL warehouse" } else { "object by object" },
            bin_dir().display()
        );
        println!(
            "| run | total s | invocations | continuations | parts | primary calls | objects per site | largest peak RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for run in 1..=runs {
            let mut first = Function::start("manual-trigger", &vars);
            let started = Instant::now();
            let r = first.invoke_with_timeout(&json!({"command": "snapshot"}), std::time::Duration::from_secs(900)).response();
            let run_key = r["export_run"].as_str().unwrap_or_else(|| panic!("not carried: {r:#}")).to_owned();
            let mut functions = vec![first];
            functions.extend((1..parallel).map(|_| Function::start("manual-trigger", &vars)));
            let (functions, delivered) = drive_continuations(&env, &queue, &run_key, functions).await;
            let total = started.elapsed().as_secs_f64();
            let state = env.json(&run_key).await;
            let pointer = env.json("databricks/latest-primary.json").await;
            for site in ["primary", "secondary"] {
                let p = env.json(&format!("databricks/latest-{site}.json")).await;
                assert_eq!(p["snapshot_folder"].as_str(), state["folder"].as_str(), "{site} not exported by this run");
                let incomplete: Vec<(&String, &serde_json::Value)> =
                    p["kinds"].as_object().unwrap().iter().filter(|(_, k)| k["status"] != "complete").collect();
                assert!(incomplete.is_empty(), "{site}: incomplete kinds {incomplete:?}");
            }
            let objects: u64 = pointer["kinds"].as_object().unwrap().values().filter_map(|k| k["count"].as_u64()).sum();
            let rss = functions.iter().filter_map(|f| f.peak_rss_kib()).max().unwrap_or(0) as f64 / 1024.0;
            println!(
                "| {run} | {total:.1} | {} | {delivered} | {} | {} | {objects} | {rss:.1} |",
                state["invocations"],
                state["parts"].as_object().map_or(0, |p| p.len()),
                pointer["requests"]
            );
        }
        return;
    }
    println!(
        "export of 2 workspaces x ({jobs} jobs, {tables} tables, every other type), {latency_ms} ms per call, concurrency {concurrency}, \
         rate limit {rate_limit}/s, deadline {deadline} s, tables and grants {}, one invocation per run, binaries in {}",
        if sql { "through a SQL warehouse (information_schema)" } else { "object by object" },
        bin_dir().display()
    );
    println!(
        "| run | invocation ms | primary export ms | primary calls | secondary export ms | objects per site | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut wall, mut export, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        // A cold process each run: the connector, its HTTP client and the token are built at the first export.
        let mut f = Function::start("manual-trigger", &vars);
        let started = Instant::now();
        let r = f.invoke_with_timeout(&json!({"command": "snapshot"}), std::time::Duration::from_secs(900)).response();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let primary = &r["workspaces"]["primary"];
        for site in ["primary", "secondary"] {
            let incomplete: Vec<&String> = r["workspaces"][site]["kinds"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, k)| k["status"] != "complete")
                .map(|(n, _)| n)
                .collect();
            assert!(incomplete.is_empty(), "{site}: incomplete kinds {incomplete:?} (none may time out): {r:#}");
        }
        let objects: u64 = primary["kinds"].as_object().unwrap().values().filter_map(|k| k["count"].as_u64()).sum();
        let peak = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        let secondary = &r["workspaces"]["secondary"];
        println!(
            "| {run} | {ms:.0} | {} | {} | {} | {objects} | {peak:.1} |",
            primary["elapsed_ms"], primary["requests"], secondary["elapsed_ms"]
        );
        wall.push(ms);
        export.push(primary["elapsed_ms"].as_f64().unwrap_or(f64::NAN));
        rss.push(peak);
    }
    println!(
        "median: invocation {:.0} ms (both sites at once), one site's export {:.0} ms, peak RSS {:.1} MB",
        median(wall),
        median(export),
        median(rss)
    );
}
