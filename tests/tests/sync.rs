//! Sync end to end: `manual-trigger` (the built binary) exports both workspaces of the local Databricks API
//! (`scripts/databricks_server.py`) with moto's S3 and SSM; the break-glass `dr` shows the plan (`dr sync`) and
//! applies it (`dr sync --apply`) to the standby; a second apply changes nothing and the next export shows no
//! drift for the synced kinds; an unmappable reference blocks its one object.
//!
//! Needs the local server's write endpoints (`jobs/create`, `jobs/reset`, `policies/clusters/create|edit`,
//! `instance-pools/create|edit`, `sql/warehouses` create, edit and stop), which the lead adds to
//! `scripts/databricks_server.py`: until they are there, these tests are ignored
//! (`cargo test -p tests --test sync -- --ignored` runs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::databricks::{SitePair, sample_workspace};

const SYNCED: [&str; 4] = ["jobs", "cluster-policies", "instance-pools", "sql-warehouses"];

async fn pair(sync: Value) -> SitePair {
    SitePair::start(&json!({"activation": {"job_tag": "dr=active-passive"}, "sync": sync}), None).await
}

fn mappings() -> Value {
    json!({"zone_ids": {"us-east-1a": "us-west-2a"},
           "storage_roots": {"s3://acme-primary-landing/": "s3://acme-secondary-landing/"}})
}

/// Runs the built `dr --json` with the environment's variables and no terminal: exit status, answer, stderr.
fn dr(pair: &SitePair, args: &[&str]) -> (Option<i32>, Value, String) {
    let bin = tests::runtime_api::bin_dir().join("dr");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins`", bin.display());
    let out = std::process::Command::new(bin)
        .env_clear()
        .envs(pair.env.function_env())
        .env("DR_DATABRICKS_BACKOFF_MS", "20")
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null), stderr)
}

fn snapshot(pair: &SitePair) -> Value {
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    r
}

/// The secondary without two of the primary's jobs, one job changed, and without the primary's instance pools.
fn lagging_secondary() -> Value {
    let mut s = sample_workspace("secondary");
    s["jobs"]
        .as_array_mut()
        .unwrap()
        .retain(|j| !["hourly-report", "legacy-backfill"].contains(&j["settings"]["name"].as_str().unwrap()));
    let nightly = s["jobs"].as_array_mut().unwrap().iter_mut().find(|j| j["settings"]["name"] == "nightly-etl").unwrap();
    nightly["settings"]["max_concurrent_runs"] = json!(3);
    s["instance_pools"] = json!([]);
    s
}

async fn between_sites(pair: &SitePair, kind: &str) -> Value {
    let drift = pair.env.json("databricks/drift.json").await;
    drift["between_sites"]["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == kind).cloned().unwrap_or(Value::Null)
}

fn names(changes: &Value, action: &str) -> Vec<String> {
    let mut out: Vec<String> = changes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["action"] == action)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

fn writes(pair: &SitePair) -> usize {
    pair.secondary()
        .requests()
        .iter()
        .filter(|q| q.method == "POST" || q.method == "PUT" || q.method == "PATCH" || q.method == "DELETE")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_matches_the_drift_an_apply_converges_and_a_second_changes_nothing() {
    let pair = pair(mappings()).await;
    pair.secondary().set_state(&lagging_secondary());
    snapshot(&pair);
    let jobs_drift = between_sites(&pair, "jobs").await;
    let mut missing: Vec<String> =
        jobs_drift["removed"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    missing.sort();
    assert_eq!(missing.len(), 2, "{jobs_drift:#}");

    let (code, plan, stderr) = dr(&pair, &["sync"]);
    assert_eq!((code, plan["outcome"].as_str()), (Some(0), Some("noop")), "{plan:#}\n{stderr}");
    let p = &plan["plan"];
    assert_eq!((p["from"].as_str(), p["to"].as_str()), (Some("primary"), Some("secondary")));
    assert_eq!(names(&p["kinds"]["jobs"], "create"), missing, "the plan creates what the drift says is missing: {p:#}");
    let update = p["kinds"]["jobs"].as_array().unwrap().iter().find(|c| c["action"] == "update").unwrap();
    assert!(update["name"].as_str().unwrap().starts_with("nightly-etl"), "{update:#}");
    assert!(update["fields"].as_array().unwrap().contains(&json!("max_concurrent_runs")), "{update:#}");
    assert!(!names(&p["kinds"]["instance-pools"], "create").is_empty(), "{p:#}");
    assert!(p["not_synced"].as_array().unwrap().iter().any(|n| n["what"] == "secret values"));

    let before = writes(&pair);
    let (code, r, stderr) = dr(&pair, &["sync", "--apply", "--confirm", "secondary", "--requested-by", "oncall@example.com"]);
    assert_eq!((code, r["outcome"].as_str()), (Some(0), Some("completed")), "{r:#}\n{stderr}");
    assert_eq!(r["apply"]["outcome"], "complete", "{r:#}");
    assert!(writes(&pair) > before);
    let written =
        |q: &tests::databricks::Request| ["create", "reset", "edit", "delete", "stop"].iter().any(|w| q.path.contains(w));
    assert!(!pair.primary().requests().iter().any(written), "never a write to the active site");
    let state = pair.secondary().state();
    for j in state["jobs"].as_array().unwrap() {
        for t in ["schedule", "continuous", "trigger"] {
            if let Some(p) = j["settings"][t]["pause_status"].as_str() {
                assert_eq!(p, "PAUSED", "{}: {t}", j["settings"]["name"]);
            }
        }
    }

    // Run again on the same exports: its journal is settled, nothing is sent.
    let before = writes(&pair);
    let (code, r, stderr) = dr(&pair, &["sync", "--apply", "--confirm", "secondary", "--requested-by", "oncall@example.com"]);
    assert_eq!((code, r["apply"]["outcome"].as_str()), (Some(0), Some("complete")), "{r:#}\n{stderr}");
    assert_eq!(writes(&pair), before, "a second apply changes nothing");

    // The next export: no drift for the synced kinds, and nothing left to plan but what is blocked.
    snapshot(&pair);
    for kind in SYNCED {
        let d = between_sites(&pair, kind).await;
        for list in ["removed", "added", "changed"] {
            assert!(d[list].as_array().is_none_or(|l| l.is_empty()), "{kind} {list}: {d:#}");
        }
    }
    let (_, plan, _) = dr(&pair, &["sync"]);
    let left: Vec<&Value> = plan["plan"]["kinds"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap())
        .filter(|c| c["action"] != "blocked")
        .collect();
    assert!(left.is_empty(), "{plan:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmappable_reference_blocks_one_object_and_the_rest_is_applied() {
    // No storage root mapped: the file-arrival job's location cannot be mapped.
    let pair = pair(json!({"zone_ids": {"us-east-1a": "us-west-2a"}})).await;
    let mut s = lagging_secondary();
    s["jobs"].as_array_mut().unwrap().retain(|j| j["settings"]["name"] != "landing-arrival");
    pair.secondary().set_state(&s);
    snapshot(&pair);
    let (code, r, stderr) = dr(&pair, &["sync", "--apply", "--confirm", "secondary", "--requested-by", "oncall@example.com"]);
    assert_eq!((code, r["outcome"].as_str()), (Some(0), Some("completed")), "{r:#}\n{stderr}");
    let jobs = r["plan"]["kinds"]["jobs"].as_array().unwrap();
    let blocked: Vec<&Value> = jobs.iter().filter(|c| c["action"] == "blocked").collect();
    assert_eq!(blocked.len(), 1, "{jobs:#?}");
    assert!(blocked[0]["name"].as_str().unwrap().starts_with("landing-arrival"));
    assert!(blocked[0]["reason"].as_str().unwrap().contains("storage_roots"), "{blocked:#?}");
    let made: Vec<String> = pair.secondary().state()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["settings"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(made.contains(&"hourly-report".to_owned()) && !made.contains(&"landing-arrival".to_owned()), "{made:?}");
    // A confirmation naming the active site is refused: sync writes only to the standby.
    let (code, r, _) = dr(&pair, &["sync", "--apply", "--confirm", "primary", "--requested-by", "me"]);
    assert_eq!((code, r["outcome"].as_str()), (Some(2), Some("rejected")), "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_reads_without_a_write_and_an_apply_needs_the_standby_s_name() {
    let pair = pair(mappings()).await;
    pair.secondary().set_state(&lagging_secondary());
    snapshot(&pair);
    let before = writes(&pair);
    let (code, plan, stderr) = dr(&pair, &["sync"]);
    assert_eq!((code, plan["outcome"].as_str()), (Some(0), Some("noop")), "{plan:#}\n{stderr}");
    assert!(plan["message"].as_str().unwrap().contains("to create"), "{plan:#}");
    assert_eq!(writes(&pair), before, "a plan calls no workspace");
    // No terminal and no --confirm: refused before anything is sent.
    let (code, _, stderr) = dr(&pair, &["sync", "--apply"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--confirm"), "{stderr}");
    let (code, r, _) = dr(&pair, &["sync", "--apply", "--confirm", "primary", "--requested-by", "me"]);
    assert_eq!((code, r["outcome"].as_str()), (Some(2), Some("rejected")), "{r:#}");
    assert!(r["message"].as_str().unwrap().contains("standby"), "{r:#}");
    assert_eq!(writes(&pair), before);
}
