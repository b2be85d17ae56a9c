//! Sync end to end: `manual-trigger` (the built binary) exports both workspaces of the local Databricks API
//! (`scripts/databricks_server.py`) with moto's S3 and SSM; the break-glass `dr` shows the plan (`dr sync`) and
//! applies it (`dr sync --apply`) to the standby; a second apply changes nothing and the next export shows no
//! drift for the synced kinds; an unmappable reference blocks its one object.
//! A `dr` killed mid-apply (its creates held by the server, then applied after it died) and run again makes each
//! change once; a failover that takes the lock during an apply makes it stand down before its next wave. The
//! local server validates every write with the published rules (`scripts/databricks_writes.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::databricks::{SitePair, sample_workspace};

const SYNCED: [&str; 7] = ["jobs", "cluster-policies", "instance-pools", "sql-warehouses", "catalogs", "schemas", "permissions"];

async fn pair(sync: Value) -> SitePair {
    SitePair::start(&json!({"activation": {"job_tag": "dr=active-passive"}, "sync": sync}), None).await
}

fn mappings() -> Value {
    json!({"zone_ids": {"us-east-1a": "us-west-2a"},
           "storage_roots": {"s3://acme-primary-landing/": "s3://acme-secondary-landing/",
                             "s3://acme-primary-uc-root/": "s3://acme-secondary-landing/uc/"}})
}

/// The built `dr --json` with the environment's variables and no terminal.
fn dr_command(pair: &SitePair, args: &[&str]) -> std::process::Command {
    let bin = tests::runtime_api::bin_dir().join("dr");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins`", bin.display());
    let mut c = std::process::Command::new(bin);
    c.env_clear()
        .envs(pair.env.function_env())
        .env("DR_DATABRICKS_BACKOFF_MS", "20")
        .arg("--json")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// Runs the built `dr --json` with the environment's variables and no terminal: exit status, answer, stderr.
fn dr(pair: &SitePair, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = dr_command(pair, args).output().unwrap();
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

/// [`lagging_secondary`] without the primary's catalog `sales` (and what it holds), and with catalog `main`'s
/// comment and schema `main.reporting`'s owner changed.
fn uc_lagging_secondary() -> Value {
    let mut s = lagging_secondary();
    for list in ["catalogs", "schemas", "tables", "volumes"] {
        if let Some(a) = s[list].as_array_mut() {
            a.retain(|o| o["name"] != "sales" && o["catalog_name"] != "sales");
        }
    }
    let main = s["catalogs"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "main").unwrap();
    main["comment"] = json!("changed by hand");
    let reporting = s["schemas"].as_array_mut().unwrap().iter_mut().find(|c| c["full_name"] == "main.reporting").unwrap();
    reporting["owner"] = json!("admin@example.com");
    s
}

/// A direct ACL entry.
fn direct(field: &str, name: &str, level: &str) -> Value {
    json!({field: name, "all_permissions": [{"permission_level": level, "inherited": false}]})
}

/// The id of the object of `list` whose `name_at` (a JSON pointer) is `name`.
fn id_of(state: &Value, list: &str, name_at: &str, name: &str, id_field: &str) -> String {
    let o = state[list].as_array().unwrap().iter().find(|o| o.pointer(name_at) == Some(&json!(name))).unwrap();
    o[id_field].as_str().map(str::to_owned).unwrap_or_else(|| o[id_field].to_string())
}

/// Sets the ACL of an object (`kind/ID` of the state's permissions) to `entries`, and for a job or warehouse the
/// admins' CAN_MANAGE inherited from the root (as the local server gives every job and warehouse).
fn set_acl(state: &mut Value, kind: &str, id: &str, object_type: &str, prefix: &str, mut entries: Vec<Value>) {
    if ["jobs", "warehouses"].contains(&kind) {
        entries.push(json!({"group_name": "admins", "all_permissions": [
            {"permission_level": "CAN_MANAGE", "inherited": true, "inherited_from_object": [prefix]}]}));
    }
    state["permissions"][format!("{kind}/{id}")] =
        json!({"object_id": format!("{prefix}{id}"), "object_type": object_type, "access_control_list": entries});
}

/// The primary with ACLs on its pool and policy (the secondary lacks the pool, and the policy's ACL), and the
/// secondary's `nightly-etl` granting `data-engineers` less, its warehouse `bi` without `analysts`.
fn permission_drift(pair: &SitePair, secondary: &mut Value) {
    let mut p = pair.primary().state();
    let pool = id_of(&p, "instance_pools", "/instance_pool_name", "gpu-pool", "instance_pool_id");
    set_acl(
        &mut p,
        "instance-pools",
        &pool,
        "instance-pool",
        "/instance-pools/",
        vec![direct("group_name", "data-engineers", "CAN_ATTACH_TO")],
    );
    let policy = id_of(&p, "cluster_policies", "/name", "dr-standard", "policy_id");
    set_acl(
        &mut p,
        "cluster-policies",
        &policy,
        "cluster-policy",
        "/cluster-policies/",
        vec![direct("group_name", "data-engineers", "CAN_USE")],
    );
    pair.primary().set_state(&p);
    let job = id_of(secondary, "jobs", "/settings/name", "nightly-etl", "job_id");
    set_acl(
        secondary,
        "jobs",
        &job,
        "job",
        "/jobs/",
        vec![direct("user_name", "etl@example.com", "IS_OWNER"), direct("group_name", "data-engineers", "CAN_VIEW")],
    );
    let bi = id_of(secondary, "warehouses", "/name", "bi", "id");
    set_acl(
        secondary,
        "warehouses",
        &bi,
        "warehouse",
        "/sql/warehouses/",
        vec![direct("user_name", "admin@example.com", "IS_OWNER")],
    );
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
    let mut secondary = uc_lagging_secondary();
    permission_drift(&pair, &mut secondary);
    pair.secondary().set_state(&secondary);
    snapshot(&pair);
    let acl_drift = between_sites(&pair, "permissions").await;
    assert!(acl_drift.to_string().contains("nightly-etl") && acl_drift.to_string().contains("warehouses:bi"), "{acl_drift:#}");
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
    assert_eq!(names(&p["kinds"]["catalogs"], "create"), ["sales"], "{p:#}");
    assert_eq!(names(&p["kinds"]["catalogs"], "update"), ["main"], "{p:#}");
    assert_eq!(names(&p["kinds"]["schemas"], "create"), ["sales.curated", "sales.raw"], "{p:#}");
    assert_eq!(names(&p["kinds"]["schemas"], "update"), ["main.reporting"], "{p:#}");
    // The ACLs: of the objects both have, and of those the plan creates (their owner as in the active site).
    let acls = names(&p["kinds"]["permissions"], "update");
    for want in
        ["cluster-policies:dr-standard", "instance-pools:gpu-pool", "jobs:hourly-report", "jobs:nightly-etl", "warehouses:bi"]
    {
        assert!(acls.iter().any(|n| n.starts_with(want)), "{want} not in {acls:?}");
    }
    let nightly = p["kinds"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("jobs:nightly"))
        .unwrap();
    assert_eq!(nightly["fields"], json!(["data-engineers"]), "{nightly:#}");
    assert!(names(&p["kinds"]["permissions"], "prune").is_empty(), "no extra grant to prune: {p:#}");

    let before = writes(&pair);
    let (code, r, stderr) = dr(&pair, &["sync", "--apply", "--confirm", "secondary", "--requested-by", "oncall@example.com"]);
    assert_eq!((code, r["outcome"].as_str()), (Some(0), Some("completed")), "{r:#}\n{stderr}");
    assert_eq!(r["apply"]["outcome"], "complete", "{r:#}");
    assert!(writes(&pair) > before);
    let written =
        |q: &tests::databricks::Request| ["create", "reset", "edit", "delete", "stop"].iter().any(|w| q.path.contains(w));
    assert!(!pair.primary().requests().iter().any(written), "never a write to the active site");
    let state = pair.secondary().state();
    // Each ACL written by a PUT after its object, never with a placeholder left in its path.
    let puts: Vec<String> = pair.secondary().requests().iter().filter(|q| q.method == "PUT").map(|q| q.path.clone()).collect();
    assert!(puts.iter().any(|p| p.starts_with("/api/2.0/permissions/instance-pools/")), "{puts:?}");
    assert!(!puts.iter().any(|p| p.contains("sync:")), "{puts:?}");
    let hourly = id_of(&state, "jobs", "/settings/name", "hourly-report", "job_id");
    let acl = pair.secondary().get(&format!("/api/2.0/permissions/jobs/{hourly}"), Some(&pair.secondary().pat())).json();
    let owner = acl["access_control_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["all_permissions"][0]["permission_level"] == "IS_OWNER")
        .unwrap();
    assert_eq!(owner["user_name"], "alice@example.com", "the active site's owner: {acl:#}");
    let sales = state["catalogs"].as_array().unwrap().iter().find(|c| c["name"] == "sales").unwrap();
    assert_eq!(sales["storage_root"], "s3://acme-secondary-landing/uc/sales", "the root mapped, never copied");
    assert_eq!(sales["owner"], "data-engineers", "the active site's owner, set after the create");
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

const APPLY: [&str; 6] = ["sync", "--apply", "--confirm", "secondary", "--requested-by", "oncall@example.com"];

/// Waits (up to 30 s) until the standby has received a call whose path contains `what`.
async fn until_called(pair: &SitePair, what: &str) {
    for _ in 0..300 {
        if pair.secondary().requests().iter().any(|q| q.path.contains(what)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the standby never received {what}");
}

/// How many of the standby's jobs carry each name.
fn job_names(pair: &SitePair) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for j in pair.secondary().state()["jobs"].as_array().unwrap() {
        *out.entry(j["settings"]["name"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dr_killed_mid_apply_whose_creates_landed_after_it_died_is_run_again_and_makes_each_change_once() {
    let pair = pair(mappings()).await;
    pair.secondary().set_state(&lagging_secondary());
    snapshot(&pair);
    // The jobs' creates are held by the workspace; the `dr` that sent them is killed; then they apply.
    pair.secondary().set_faults(&json!([{"path_prefix": "/api/2.2/jobs/create", "mode": "hang"}]));
    let mut child = dr_command(&pair, &APPLY).spawn().unwrap();
    until_called(&pair, "/jobs/create").await;
    child.kill().unwrap();
    child.wait().unwrap();
    pair.secondary().clear_faults();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let landed = job_names(&pair);
    assert!(
        landed.contains_key("hourly-report") || landed.contains_key("legacy-backfill"),
        "the held creates applied: {landed:?}"
    );

    let (code, r, stderr) = dr(&pair, &APPLY);
    assert_eq!((code, r["apply"]["outcome"].as_str()), (Some(0), Some("complete")), "{r:#}\n{stderr}");
    let names = job_names(&pair);
    for name in ["hourly-report", "legacy-backfill"] {
        assert_eq!(names.get(name), Some(&1), "{name} exactly once after the resume: {names:?}");
    }
    let found = r["apply"]["entries"].as_array().unwrap().iter().filter(|e| e["status"] == "found").count();
    assert!(found >= 1, "the resume found what the killed apply's creates made: {r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_takes_the_lock_during_an_apply_makes_it_stand_down_before_its_next_kind() {
    let pair = pair(mappings()).await;
    pair.secondary().set_state(&lagging_secondary());
    snapshot(&pair);
    // The pools go first; while their creates are held, a failover takes the lock.
    pair.secondary().set_faults(&json!([{"path_prefix": "/api/2.0/instance-pools/create", "mode": "hang"}]));
    let child = dr_command(&pair, &APPLY).spawn().unwrap();
    until_called(&pair, "/instance-pools/create").await;
    let now = time::OffsetDateTime::now_utc();
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let lock = json!({"execution_id": "failover-mid-sync", "attempt_id": "a1", "state": "running",
                      "acquired_at": rfc(now), "lease_expires_at": rfc(now + time::Duration::minutes(5)),
                      "holder": "health-alarm (test)"});
    pair.env.put_json("locks/failover.json", &lock).await;
    pair.secondary().clear_faults();
    let out = child.wait_with_output().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(r["apply"]["outcome"].as_str().unwrap_or_default().contains("stood down"), "{r:#}\n{stderr}");
    assert!(r["apply"]["outcome"].as_str().unwrap().contains("failover-mid-sync"), "{r:#}");
    let names = job_names(&pair);
    assert!(!names.contains_key("hourly-report") && !names.contains_key("legacy-backfill"), "no job after the lock: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_only_the_standby_has_is_kept_without_prune_and_removed_with_it() {
    let pair = pair(mappings()).await;
    let mut s = sample_workspace("secondary");
    let job = id_of(&s, "jobs", "/settings/name", "nightly-etl", "job_id");
    set_acl(
        &mut s,
        "jobs",
        &job,
        "job",
        "/jobs/",
        vec![
            direct("user_name", "etl@example.com", "IS_OWNER"),
            direct("group_name", "data-engineers", "CAN_MANAGE_RUN"),
            direct("group_name", "contractors", "CAN_VIEW"),
        ],
    );
    pair.secondary().set_state(&s);
    snapshot(&pair);
    let (_, plan, stderr) = dr(&pair, &["sync"]);
    let acls = &plan["plan"]["kinds"]["permissions"];
    assert!(names(acls, "update").is_empty(), "{acls:#}\n{stderr}");
    let pruned = names(acls, "prune");
    assert!(pruned.len() == 1 && pruned[0].starts_with("jobs:nightly-etl"), "{acls:#}");

    let path = format!("/api/2.0/permissions/jobs/{job}");
    let holders = |pair: &SitePair| -> String {
        pair.secondary().get(&path, Some(&pair.secondary().pat())).json()["access_control_list"].to_string()
    };
    let (code, r, stderr) = dr(&pair, &APPLY);
    assert_eq!((code, r["apply"]["outcome"].as_str()), (Some(0), Some("complete")), "{r:#}\n{stderr}");
    assert!(holders(&pair).contains("contractors"), "kept without --prune");
    let mut with_prune = APPLY.to_vec();
    with_prune.push("--prune");
    let (code, r, stderr) = dr(&pair, &with_prune);
    assert_eq!((code, r["apply"]["outcome"].as_str()), (Some(0), Some("complete")), "{r:#}\n{stderr}");
    let after = holders(&pair);
    assert!(!after.contains("contractors") && after.contains("etl@example.com") && after.contains("admins"), "{after}");
    snapshot(&pair);
    let d = between_sites(&pair, "permissions").await;
    for list in ["removed", "added", "changed"] {
        assert!(d[list].as_array().is_none_or(|l| l.is_empty()), "permissions {list}: {d:#}");
    }
}
