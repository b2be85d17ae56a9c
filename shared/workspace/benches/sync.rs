//! Benchmark: sync at size, in memory but for the latency. The active workspace holds `BENCH_JOBS` (1,000) jobs
//! (each with a job cluster on a pool and a policy, and a SQL task on a warehouse); the standby holds none, and
//! answers every call after `BENCH_LATENCY_MS` (150: a workspace across a region). Prints the plan's time, the
//! apply's (pools, policies and warehouses first, then the jobs, each create after its re-read by name, in waves
//! of `dr_workspace::sync::apply::IN_FLIGHT`), the calls made, and a second plan and apply after a fresh
//! export of the standby (nothing to do, no call). The control bucket is in memory (no S3 latency).
//!
//! `cargo bench --profile dev -p engine --bench sync`; `BENCH_RUNS` (default 1).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use domain::names::SsmPrefix;
use domain::site::{SiteConfig, SiteName};
use dr_ports::documents;
use dr_ports::memory::{FixedClock, MemBucket, MemParameters};
use dr_ports::memory_workspace::MemWorkspace;
use dr_ports::{ApiError, ControlBucket, WorkspaceApi, WorkspaceConnector, WriteCondition};
use dr_workspace::rules::{ExportStatus, ObjectKind};
use dr_workspace::sync::apply::{ApplyOptions, IN_FLIGHT, apply};
use dr_workspace::sync::prepare;
use dr_workspace::{KindSummary, LatestExport, kind_file};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KINDS: [ObjectKind; 5] =
    [ObjectKind::InstancePools, ObjectKind::ClusterPolicies, ObjectKind::SqlWarehouses, ObjectKind::Jobs, ObjectKind::Clusters];

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Connector(Arc<MemWorkspace>);

impl WorkspaceConnector for Connector {
    fn connect(&self, site: SiteName, _: &SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        assert_eq!(site, SiteName::Secondary, "sync never connects to the active site");
        Ok(self.0.clone())
    }
}

async fn export(bucket: &MemBucket, site: SiteName, ws: &MemWorkspace, folder: &str) {
    let mut kinds = BTreeMap::new();
    for kind in KINDS {
        let objects = ws.list(kind);
        let body = json!({ "kind": kind, "status": "complete", "objects": objects });
        let key = format!("{folder}/{}", kind_file(site, kind));
        bucket.put(&key, serde_json::to_vec(&body).unwrap(), "application/json", WriteCondition::Overwrite).await.unwrap();
        kinds.insert(kind, KindSummary { status: ExportStatus::Complete, count: objects.len() });
    }
    let now = time::OffsetDateTime::now_utc();
    let pointer = LatestExport {
        site,
        workspace_url: String::new(),
        snapshot_folder: folder.into(),
        exported_at: now,
        kinds,
        notebooks_outside_repos: 0,
        files_outside_repos: 0,
        requests: 0,
        elapsed_ms: 0,
    };
    let key = domain::layout::databricks_latest(site);
    bucket.put(&key, serde_json::to_vec(&pointer).unwrap(), "application/json", WriteCondition::Overwrite).await.unwrap();
}

fn active(jobs: u64) -> MemWorkspace {
    let ws = MemWorkspace::default();
    let mut o = ws.objects.lock().unwrap();
    o.insert(
        ObjectKind::InstancePools,
        vec![json!({"instance_pool_id": "p-pool", "instance_pool_name": "etl", "node_type_id": "i3.xlarge"})],
    );
    o.insert(ObjectKind::ClusterPolicies, vec![json!({"policy_id": "p-pol", "name": "small", "definition": "{}"})]);
    o.insert(ObjectKind::SqlWarehouses, vec![json!({"id": "p-wh", "name": "bi", "cluster_size": "Small"})]);
    let list: Vec<Value> = (0..jobs)
        .map(|i| {
            json!({"job_id": i, "settings": {"name": format!("job-{i:04}"), "tags": {"team": "data"},
            "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"},
            "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"policy_id": "p-pol", "instance_pool_id": "p-pool"}}],
            "tasks": [{"task_key": "t", "sql_task": {"warehouse_id": "p-wh", "file": {"path": "a.sql"}}}]}})
        })
        .collect();
    o.insert(ObjectKind::Jobs, list);
    drop(o);
    ws
}

#[tokio::main]
async fn main() {
    let (runs, jobs, latency_ms) = (var("BENCH_RUNS", 1), var("BENCH_JOBS", 1000), var("BENCH_LATENCY_MS", 150));
    println!("sync: {jobs} jobs to create, {latency_ms} ms a call, {IN_FLIGHT} calls in flight");
    for run in 0..runs {
        let params = MemParameters::default();
        let p =
            r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","activation":{"job_tag":"dr=standby"}}"#;
        params.seed("/dr/p/sites/primary", p, "String");
        params.seed(
            "/dr/p/sites/secondary",
            r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#,
            "String",
        );
        let mut doc: Value = serde_json::from_str(p).unwrap();
        doc["site"] = json!("primary");
        params.seed("/dr/p/active", &doc.to_string(), "String");
        let docs = documents::load(&params, &SsmPrefix::parse("/dr/p").unwrap()).await.unwrap();
        let bucket = MemBucket::default();
        let standby = Arc::new(MemWorkspace::with_latency(Duration::from_millis(latency_ms)));
        export(&bucket, SiteName::Primary, &active(jobs), "snapshots/1").await;
        export(&bucket, SiteName::Secondary, &standby, "snapshots/1").await;
        let clock = FixedClock::at(time::OffsetDateTime::now_utc());
        let connector = Connector(standby.clone());
        let opts = ApplyOptions { prune: false, requested_by: "bench".into(), kinds: None };

        let t = Instant::now();
        let prepared = prepare(&bucket, &docs).await.unwrap();
        let plan_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let journal = apply(&bucket, &connector, &docs, &prepared, &opts, &clock).await.unwrap();
        let apply_s = t.elapsed().as_secs_f64();
        let calls = standby.calls.lock().unwrap().len();
        assert_eq!(journal.outcome.as_deref(), Some("complete"));
        assert_eq!(standby.list(ObjectKind::Jobs).len() as u64, jobs);

        export(&bucket, SiteName::Secondary, &standby, "snapshots/2").await;
        let t = Instant::now();
        let again = prepare(&bucket, &docs).await.unwrap();
        let replan_s = t.elapsed().as_secs_f64();
        let second = apply(&bucket, &connector, &docs, &again, &opts, &clock).await.unwrap();
        let second_calls = standby.calls.lock().unwrap().len() - calls;
        println!(
            "run {run}: plan {plan_s:.2} s ({} changes), apply {apply_s:.1} s ({calls} calls, {}), re-plan {replan_s:.2} s ({} changes), second apply {} with {second_calls} calls",
            prepared.plan.changes.len(),
            journal.outcome.unwrap_or_default(),
            again.plan.changes.len(),
            second.outcome.unwrap_or_default(),
        );
        assert!(again.plan.is_empty() && second_calls == 0);
    }
}
