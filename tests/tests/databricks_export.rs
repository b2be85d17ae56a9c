//! The Databricks workspaces' metadata, end to end: `manual-trigger` (the built binary, through the Runtime API)
//! exports both workspaces of a local Databricks API (`scripts/databricks_server.py`, speaking the documented
//! REST API) at every snapshot, with its secrets read from SSM (moto) at use; drift between the sites and over
//! time; `status`, `check` (the live DR matrix) and a failover's report say it. No live workspace is tested.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::databricks::{SitePair, sample_workspace};

const KINDS: [&str; 21] = [
    "jobs",
    "clusters",
    "cluster-policies",
    "instance-pools",
    "sql-warehouses",
    "metastore",
    "catalogs",
    "schemas",
    "tables",
    "volumes",
    "external-locations",
    "storage-credentials",
    "grants",
    "registered-models",
    "serving-endpoints",
    "vector-search-endpoints",
    "vector-search-indexes",
    "repos",
    "workspace-objects",
    "secret-scopes",
    "permissions",
];

/// The two local workspaces as the sites: the primary authenticates by OAuth M2M (a service principal's secret
/// in SSM), the secondary by a personal access token in SSM.
type Pair = SitePair;

async fn pair() -> Pair {
    SitePair::start(&json!({}), None).await
}

/// Removes the objects of `key` whose `field` is one of `values` from a seeded state.
fn without(state: &mut Value, key: &str, field: &str, values: &[&str]) {
    state[key].as_array_mut().unwrap().retain(|o| !values.contains(&o[field].as_str().unwrap_or_default()));
}

fn job_named<'a>(state: &'a mut Value, name: &str) -> &'a mut Value {
    state["jobs"].as_array_mut().unwrap().iter_mut().find(|j| j["settings"]["name"] == name).unwrap()
}

fn kind_drift<'a>(drift: &'a Value, kind: &str) -> &'a Value {
    drift["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == kind).unwrap_or_else(|| panic!("{kind} in {drift:#}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().map(str::to_owned).unwrap_or_else(|| s["identity"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_exports_every_type_of_both_workspaces_and_says_what_the_secondary_lacks() {
    let pair = pair().await;
    let mut secondary = sample_workspace("secondary");
    without(&mut secondary, "jobs", "job_id", &[]);
    secondary["jobs"]
        .as_array_mut()
        .unwrap()
        .retain(|j| !["hourly-report", "legacy-backfill"].contains(&j["settings"]["name"].as_str().unwrap()));
    job_named(&mut secondary, "nightly-etl")["settings"]["max_concurrent_runs"] = json!(3);
    pair.secondary().set_state(&secondary);
    let primary = pair.primary().state();

    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    for site in ["primary", "secondary"] {
        assert_eq!(r["workspaces"][site]["exported"], true, "{site}: {r:#}");
        for kind in KINDS {
            assert_eq!(r["workspaces"][site]["kinds"][kind]["status"], "complete", "{site} {kind}: {r:#}");
        }
    }
    // Every object of the seeded state, counted per type.
    let counts = &r["workspaces"]["primary"]["kinds"];
    assert_eq!(counts["jobs"]["count"], primary["jobs"].as_array().unwrap().len());
    assert_eq!(counts["tables"]["count"], primary["tables"].as_array().unwrap().len());
    assert_eq!(counts["catalogs"]["count"], primary["catalogs"].as_array().unwrap().len());
    assert_eq!(counts["permissions"]["count"].as_u64().unwrap() as usize, {
        let clusters = primary["clusters"].as_array().unwrap().iter().filter(|c| c["cluster_source"] != "JOB").count();
        // Jobs, clusters, warehouses, cluster policies and instance pools each have an ACL.
        let count = |k: &str| primary[k].as_array().unwrap().len();
        count("jobs") + clusters + count("warehouses") + count("cluster_policies") + count("instance_pools")
    });

    // One file per site and type, each in the manifest with its digest.
    let manifest_key = r["snapshot_manifest_key"].as_str().unwrap();
    let manifest = pair.env.json(manifest_key).await;
    let folder = manifest_key.trim_end_matches("/manifest.json");
    let listed: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for site in ["primary", "secondary"] {
        for kind in KINDS {
            let name = format!("databricks/{site}/{kind}.json");
            assert!(listed.contains(&name.as_str()), "{name} not in {listed:?}");
        }
    }
    let jobs = pair.env.json(&format!("{folder}/databricks/primary/jobs.json")).await;
    assert_eq!(jobs["status"], "complete");
    let nightly = jobs["objects"].as_array().unwrap().iter().find(|j| j["settings"]["name"] == "nightly-etl").unwrap();
    assert_eq!(nightly["settings"]["tasks"].as_array().unwrap().len(), 2, "full settings, every task");

    // Drift between the sites: exact, by stable identity (ids differ between the workspaces).
    let drift = pair.env.json("databricks/drift.json").await;
    let between = &drift["between_sites"];
    let jobs = kind_drift(between, "jobs");
    let removed = strings(&jobs["removed"]);
    assert_eq!(removed.len(), 2, "{jobs:#}");
    assert!(removed.iter().any(|i| i.starts_with("hourly-report")) && removed.iter().any(|i| i.starts_with("legacy-backfill")));
    assert!(strings(&jobs["added"]).is_empty(), "{jobs:#}");
    let changed = strings(&jobs["changed"]);
    assert_eq!(changed.len(), 1, "only the job whose settings differ (pause states and ids are not drift): {jobs:#}");
    assert!(changed[0].starts_with("nightly-etl"));
    let sentence = r["workspace_drift"].as_str().unwrap();
    assert!(sentence.contains("secondary is missing 2 jobs"), "{sentence}");

    // Secrets never leave SSM: not in the snapshot, the pointers, the answer, or the logs.
    let secrets = [pair.primary().client_secret(), pair.secondary().pat()];
    let mut seen = r.to_string();
    for key in pair.env.keys("").await {
        seen.push_str(&String::from_utf8_lossy(&pair.env.object(&key).await.unwrap_or_default()));
    }
    seen.push_str(&f.logs());
    for secret in &secrets {
        assert!(!seen.contains(secret.as_str()), "a secret leaked");
    }
    // The OAuth secret went to the primary's token endpoint only, by Basic auth; the PAT only to the secondary.
    assert!(pair.primary().requests().iter().any(|q| q.path == "/oidc/v1/token" && q.auth == "basic"));
    assert!(pair.primary().requests().iter().filter(|q| q.path.starts_with("/api/")).all(|q| q.auth == "bearer-oauth"));
    assert!(pair.secondary().requests().iter().filter(|q| q.path.starts_with("/api/")).all(|q| q.auth == "bearer-pat"));

    // status says it in one line.
    let s = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(s["workspaces"]["drift"], sentence, "{s:#}");
    assert!(s["workspaces"]["latest_exports"]["primary"]["age_minutes"].is_i64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_over_time_is_exact_additions_removals_and_changes() {
    let pair = pair().await;
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}");

    let mut state = pair.primary().state();
    let mut added = state["jobs"][0].clone();
    added["job_id"] = json!(987_654);
    added["settings"]["name"] = json!("new-job");
    state["jobs"].as_array_mut().unwrap().push(added);
    let dropped = state["tables"][0]["full_name"].as_str().unwrap().to_owned();
    without(&mut state, "tables", "full_name", &[&dropped]);
    job_named(&mut state, "hourly-report")["settings"]["timeout_seconds"] = json!(7200);
    pair.primary().set_state(&state);

    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let drift = pair.env.json("databricks/drift.json").await;
    let over = &drift["over_time"]["primary"];
    let jobs = kind_drift(over, "jobs");
    assert_eq!(strings(&jobs["added"]).len(), 1);
    assert!(strings(&jobs["added"])[0].starts_with("new-job"), "{jobs:#}");
    assert!(strings(&jobs["removed"]).is_empty());
    let changed = strings(&jobs["changed"]);
    assert_eq!(changed.len(), 1, "{jobs:#}");
    assert!(changed[0].starts_with("hourly-report"));
    assert!(jobs["changed"][0]["fields"].to_string().contains("timeout_seconds"), "{jobs:#}");
    let tables = kind_drift(over, "tables");
    assert_eq!(strings(&tables["removed"]), vec![dropped.clone()]);
    assert!(strings(&tables["added"]).is_empty() && strings(&tables["changed"]).is_empty());
    // Every other type: no change, and every comparison exact (both exports complete).
    for k in over["kinds"].as_array().unwrap() {
        assert_eq!(k["exact"], true, "{k:#}");
        if !["jobs", "tables", "grants", "permissions"].contains(&k["kind"].as_str().unwrap()) {
            assert!(k["added"].as_array().unwrap().is_empty() && k["removed"].as_array().unwrap().is_empty(), "{k:#}");
            assert!(k["changed"].as_array().unwrap().is_empty(), "{k:#}");
        }
    }
    let secondary = &drift["over_time"]["secondary"];
    for k in secondary["kinds"].as_array().unwrap() {
        let nothing = k["added"].as_array().unwrap().is_empty()
            && k["removed"].as_array().unwrap().is_empty()
            && k["changed"].as_array().unwrap().is_empty();
        assert!(nothing, "the secondary did not change: {k:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_a_good_api_citizen_under_throttling_errors_slowness_and_expired_tokens() {
    let pair = pair().await;
    let p = pair.primary();
    // Tokens that expire within the export: the client must fetch a new one on the 401 and carry on.
    p.set_credentials(&tests::databricks::Credentials {
        pats: vec![],
        oauth_clients: [(p.client_id(), p.client_secret())].into_iter().collect(),
        token_ttl_seconds: 1.0,
    });
    p.set_faults(&json!([
        {"path_prefix": "/api/2.2/jobs/list", "status": 429, "retry_after": 1, "times": 1},
        {"path_prefix": "/api/2.1/unity-catalog/tables", "status": 503, "times": 2},
        {"path_prefix": "/api/2.1/unity-catalog/catalogs", "delay_ms": 1500, "times": 1},
    ]));
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    for kind in KINDS {
        assert_eq!(r["workspaces"]["primary"]["kinds"][kind]["status"], "complete", "{kind}: {r:#}\n{}", f.logs());
    }
    let requests = p.requests();
    let jobs: Vec<_> =
        requests.iter().filter(|q| q.path == "/api/2.2/jobs/list" && !q.query.contains_key("page_token")).collect();
    assert_eq!(jobs[0].status, Some(429));
    assert!(jobs[1].at - jobs[0].at >= 1.0, "Retry-After honoured: {:.3} s", jobs[1].at - jobs[0].at);
    let tables: Vec<_> = requests.iter().filter(|q| q.path == "/api/2.1/unity-catalog/tables").collect();
    assert_eq!(tables.iter().filter(|q| q.status == Some(503)).count(), 2);
    assert!(requests.iter().filter(|q| q.path == "/oidc/v1/token").count() >= 2, "a new token after expiry");
    assert!(requests.iter().any(|q| q.status == Some(401)), "the expired token was refused once, then replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_partial_a_refused_token_is_skipped_and_the_last_good_export_stays_the_baseline() {
    let pair = pair().await;
    let mut f = pair.function(&[("DR_DATABRICKS_REQUEST_TIMEOUT_MS", "800")]);
    let first = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(first["outcome"], "completed", "{first:#}");
    let baseline = pair.env.json("databricks/latest-secondary.json").await;

    // Volumes answer slower than the per-request deadline, every time; the secondary's token is revoked.
    pair.primary().set_faults(&json!([{"path_prefix": "/api/2.1/unity-catalog/volumes", "delay_ms": 2500}]));
    pair.secondary().revoke_pats(&[&pair.secondary().pat()]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "a failing export never fails the snapshot: {r:#}");
    let kinds = &r["workspaces"]["primary"]["kinds"];
    assert_eq!(kinds["volumes"]["status"], "partial", "{r:#}");
    assert!(kinds["volumes"]["error"].as_str().unwrap().contains("timed out"), "{r:#}");
    assert_eq!(kinds["jobs"]["status"], "complete");
    for kind in KINDS {
        let k = &r["workspaces"]["secondary"]["kinds"][kind];
        assert_eq!(k["status"], "skipped", "{kind}: {r:#}");
        assert!(k["reason"].as_str().unwrap().contains("authentication"), "{kind}: {k}");
    }
    // The secondary's pointer still names its last good export, and the comparison between the sites used it.
    assert_eq!(pair.env.json("databricks/latest-secondary.json").await, baseline);
    let drift = pair.env.json("databricks/drift.json").await;
    assert!(drift["between_sites"]["kinds"].as_array().is_some_and(|k| !k.is_empty()), "{drift:#}");
    let volumes = kind_drift(&drift["between_sites"], "volumes");
    assert_eq!(volumes["exact"], false, "a partial export is not an exact comparison");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_that_does_not_answer_is_skipped_within_the_deadline() {
    let pair = pair().await;
    pair.primary().set_faults(&json!([{"path_prefix": "", "mode": "hang"}]));
    let mut f = pair.function(&[("DR_DATABRICKS_REQUEST_TIMEOUT_MS", "500"), ("DR_EXPORT_DEADLINE_SECONDS", "3")]);
    let started = std::time::Instant::now();
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    let took = started.elapsed();
    pair.primary().clear_faults();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    assert!(took < std::time::Duration::from_secs(5), "bounded by the deadline: {took:?}");
    assert_eq!(r["workspaces"]["primary"]["exported"], false, "{r:#}");
    assert_eq!(r["workspaces"]["primary"]["kinds"]["jobs"]["status"], "skipped", "{r:#}");
    assert_eq!(r["workspaces"]["secondary"]["kinds"]["jobs"]["status"], "complete", "{r:#}");
    assert!(r["workspace_drift"].as_str().unwrap().contains("no export of primary"), "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_makes_the_seed_dr_matrix_live_and_a_failover_report_carries_the_drift() {
    let pair = pair().await;
    let mut secondary = sample_workspace("secondary");
    secondary["jobs"].as_array_mut().unwrap().retain(|j| j["settings"]["name"] != "hourly-report");
    pair.secondary().set_state(&secondary);
    let mut f = pair.function(&[]);
    assert_eq!(f.invoke(&json!({"command": "snapshot"})).response()["outcome"], "completed");
    pair.env.chats().await;

    let r = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(r["outcome"], "noop", "{r:#}");
    // Every row of the seed document, each with a status and its evidence.
    let matrix = pair.env.json("checks/dr-matrix.json").await;
    let rows = matrix["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 38, "22 control-plane and 16 data-plane rows of the seed matrix");
    for row in rows {
        assert!(["protected", "at_risk", "not_applicable", "unknown"].contains(&row["status"].as_str().unwrap()), "{row}");
        assert!(!row["evidence"].as_str().unwrap().is_empty(), "{row}");
    }
    let row = |component: &str| rows.iter().find(|r| r["component"] == component).unwrap_or_else(|| panic!("{component}"));
    assert_eq!(row("Job Scheduler")["status"], "at_risk", "{}", row("Job Scheduler"));
    assert!(row("Job Scheduler")["evidence"].as_str().unwrap().contains("missing 1 job"), "{}", row("Job Scheduler"));
    assert_eq!(row("Notebook Source Code")["status"], "at_risk", "notebooks outside Repos: {}", row("Notebook Source Code"));
    assert_eq!(row("SQL Query Planner")["status"], "not_applicable");
    assert_eq!(row("Repos (Git Integration)")["status"], "protected", "{}", row("Repos (Git Integration)"));
    let md = String::from_utf8(pair.env.object("checks/dr-matrix.md").await.unwrap()).unwrap();
    for r in rows {
        assert!(md.contains(r["component"].as_str().unwrap()), "{md}");
    }
    // The answer and the findings say it; the chat note summarizes it, once (not again while nothing changes).
    assert!(r["dr_matrix"]["summary"].as_str().unwrap().starts_with("DR matrix:"), "{r:#}");
    let drift = r["findings"].as_array().unwrap().iter().find(|f| f["id"] == "workspace-drift").expect("drift finding");
    assert!(drift["what"].as_str().unwrap().contains("missing 1 job"), "{drift}");
    let chats = pair.env.chats().await;
    let notes: Vec<&Value> = chats.iter().filter(|c| c["MessageAttributes"]["event_type"]["Value"] == "check.matrix").collect();
    assert_eq!(notes.len(), 1, "{chats:#?}");
    assert!(notes[0]["Message"].as_str().unwrap().contains("DR matrix:"), "{}", notes[0]);
    f.invoke(&json!({"command": "check"})).response();
    assert!(
        !pair.env.chats().await.iter().any(|c| c["MessageAttributes"]["event_type"]["Value"] == "check.matrix"),
        "unchanged: no second note"
    );

    // A failover's snapshot copies the pointers (no export on its path), and its report says the drift.
    let r = f
        .invoke(&json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "drill of the report", "requested_by": "oncall@example.com"}))
        .response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let id = r["execution_id"].as_str().unwrap();
    let report = String::from_utf8(pair.env.object(&format!("reports/{id}.md")).await.unwrap()).unwrap();
    assert!(report.contains("- workspaces: secondary is missing 1 job"), "{report}");
    let manifest = pair.env.json(&format!("snapshots/{id}/manifest.json")).await;
    assert!(manifest["files"].as_array().unwrap().iter().any(|f| f["name"] == "databricks-exports.json"), "{manifest:#}");
    let exported: Vec<_> = pair.primary().requests().into_iter().filter(|q| q.path.starts_with("/api/")).collect();
    f.invoke(&json!({"command": "status"})).response();
    assert_eq!(
        pair.primary().requests().iter().filter(|q| q.path.starts_with("/api/")).count(),
        exported.len(),
        "status reads no workspace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_a_page_of_each_array_is_exported_whole_and_git_folders_are_found_wherever_they_live() {
    // Jobs API 2.2 jobs/get pages tasks, job_clusters, parameters and environments together, 100 of each a page
    // (databricks-sdk-go service/jobs/ext_api.go JobsAPI.Get merges all four). Git folders live anywhere in the
    // workspace tree; the deprecated GET /api/2.0/repos lists only those under /Repos
    // (https://docs.databricks.com/gcp/en/repos/migrate-list-repos).
    let pair = pair().await;
    let mut state = sample_workspace("primary");
    let list = |n: usize, f: &dyn Fn(usize) -> Value| -> Value { (0..n).map(f).collect::<Vec<_>>().into() };
    let settings = json!({
        "name": "wide-job",
        "tasks": list(3, &|i| json!({"task_key": format!("t{i}"), "job_cluster_key": "c0", "notebook_task": {"notebook_path": "/Shared/x"}})),
        "job_clusters": list(120, &|i| json!({"job_cluster_key": format!("c{i}"), "new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 1}})),
        "parameters": list(110, &|i| json!({"name": format!("p{i}"), "default": format!("{i}")})),
        "environments": list(105, &|i| json!({"environment_key": format!("e{i}"), "spec": {"client": "1"}})),
    });
    state["jobs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"job_id": 990_001, "creator_user_name": "etl@example.com", "settings": settings}));
    let repo = |id: u64, path: &str| {
        json!({"id": id, "path": path, "url": "https://github.com/acme/x.git", "provider": "gitHub", "branch": "main",
               "head_commit_id": "0123456789abcdef0123456789abcdef01234567"})
    };
    state["repos"].as_array_mut().unwrap().push(repo(880_001, "/Users/ana@example.com/analytics"));
    state["repos"].as_array_mut().unwrap().push(repo(880_002, "/Shared/platform-tools"));
    // The second shows as it does with Git CLI access: a directory marked as a Git folder.
    state["workspace_objects"].as_array_mut().unwrap().push(json!({
        "object_type": "DIRECTORY", "path": "/Shared/platform-tools", "object_id": 880_002,
        "directory_info": {"is_git_folder": true}}));
    pair.primary().set_state(&state);
    // The deprecated listing does not show them: the export must find them another way.
    let listed = pair.primary().get("/api/2.0/repos", Some(&pair.primary().pat())).json();
    assert!(!listed.to_string().contains("analytics") && !listed.to_string().contains("platform-tools"), "{listed}");
    pair.primary().clear_requests();

    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let kinds = &r["workspaces"]["primary"]["kinds"];
    for kind in ["jobs", "repos", "workspace-objects"] {
        assert_eq!(kinds[kind]["status"], "complete", "{kind}: {r:#}");
    }
    let folder = r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json").to_owned();
    let jobs = pair.env.json(&format!("{folder}/databricks/primary/jobs.json")).await;
    let wide = jobs["objects"].as_array().unwrap().iter().find(|j| j["settings"]["name"] == "wide-job").expect("the job");
    let keys = |array: &str, key: &str| -> Vec<String> {
        wide["settings"][array].as_array().unwrap().iter().map(|o| o[key].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(keys("job_clusters", "job_cluster_key"), (0..120).map(|i| format!("c{i}")).collect::<Vec<_>>());
    assert_eq!(keys("parameters", "name"), (0..110).map(|i| format!("p{i}")).collect::<Vec<_>>());
    assert_eq!(keys("environments", "environment_key"), (0..105).map(|i| format!("e{i}")).collect::<Vec<_>>());
    assert_eq!(keys("tasks", "task_key"), ["t0", "t1", "t2"]);

    let repos = pair.env.json(&format!("{folder}/databricks/primary/repos.json")).await;
    let mut paths: Vec<&str> = repos["objects"].as_array().unwrap().iter().map(|r| r["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["/Repos/etl@example.com/pipelines", "/Shared/platform-tools", "/Users/ana@example.com/analytics"]);
    assert!(
        repos["objects"].as_array().unwrap().iter().all(|r| r["head_commit_id"].is_string()),
        "Git metadata from repos/{{id}}"
    );
    let objects = pair.env.json(&format!("{folder}/databricks/primary/workspace-objects.json")).await;
    assert!(
        !objects["objects"].as_array().unwrap().iter().any(|o| o["path"].as_str().unwrap().starts_with("/Shared/platform-tools")),
        "a Git folder is not a workspace object outside Git: {objects:#}"
    );
    let asked: Vec<String> = pair.primary().requests().into_iter().map(|q| q.path).collect();
    assert!(asked.iter().any(|p| p == "/api/2.0/repos/880001") && !asked.iter().any(|p| p == "/api/2.0/repos"), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_cluster_that_ages_out_of_the_listing_is_not_reported_removed() {
    // clusters/list returns "all pinned and active clusters, and all clusters terminated within the last 30
    // days" (https://docs.databricks.com/api/workspace/clusters/list). The local server keeps that window.
    const WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
    let pair = pair().await;
    let now_ms =
        || i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let mut state = sample_workspace("primary");
    let seeded = now_ms();
    let cluster = |id: &str, name: &str, terminated: i64, pinned: bool| {
        json!({"cluster_id": id, "cluster_name": name, "spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge",
               "num_workers": 1, "state": "TERMINATED", "cluster_source": "UI", "terminated_time": terminated, "pinned": pinned})
    };
    let clusters = state["clusters"].as_array_mut().unwrap();
    // Leaves the window 8 s from now; pinned, listed though terminated 60 days ago; unpinned and past the window.
    clusters.push(cluster("0101-000000-aging", "aging-adhoc", seeded - WINDOW_MS + 8_000, false));
    clusters.push(cluster("0101-000000-pinned", "pinned-old", seeded - 2 * WINDOW_MS, true));
    clusters.push(cluster("0101-000000-gone", "long-gone", seeded - WINDOW_MS - 60_000, false));
    pair.primary().set_state(&state);

    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let folder = r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json").to_owned();
    let first = pair.env.json(&format!("{folder}/databricks/primary/clusters.json")).await;
    let names: Vec<&str> = first["objects"].as_array().unwrap().iter().map(|c| c["cluster_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"aging-adhoc") && names.contains(&"pinned-old"), "{names:?}");
    assert!(!names.contains(&"long-gone"), "terminated past the window, not pinned: not listed: {names:?}");
    assert!(first["objects"].as_array().unwrap().iter().all(|c| c.get("pinned").is_none()), "state-only field never answered");

    let wait = (seeded + 9_000 - now_ms()).max(0);
    std::thread::sleep(std::time::Duration::from_millis(u64::try_from(wait).unwrap()));
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let drift = pair.env.json("databricks/drift.json").await;
    let clusters = kind_drift(&drift["over_time"]["primary"], "clusters");
    assert_eq!(clusters["removed"], json!([]), "aged out is not removed: {clusters:#}");
    assert_eq!(clusters["aged_out"], json!(["aging-adhoc"]), "{clusters:#}");
    let sentence = drift["sentence"].as_str().unwrap();
    assert!(!sentence.contains("-1 cluster"), "{sentence}");
    assert!(sentence.contains("1 cluster aged out of the listing"), "{sentence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_behind_privatelink_is_skipped_with_what_to_change() {
    // A workspace behind PrivateLink redirects a caller outside its network to its login page with
    // error=private-link-validation-error (databricks-sdk-go apierr/private_link.go). Never followed; said by name.
    let pair = pair().await;
    pair.secondary().set_faults(&json!([
        {"path_prefix": "/api/", "status": 303, "location": "/login.html?error=private-link-validation-error"}
    ]));
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!(r["workspaces"]["primary"]["kinds"]["jobs"]["status"], "complete", "{r:#}");
    let jobs = &r["workspaces"]["secondary"]["kinds"]["jobs"];
    assert_eq!(jobs["status"], "skipped", "{r:#}");
    let reason = jobs["reason"].as_str().unwrap();
    assert!(
        reason.contains("the workspace is behind PrivateLink and this caller is outside its network: run the function in a VPC"),
        "{reason}"
    );
    let asked: Vec<_> = pair.secondary().requests().into_iter().filter(|q| q.path.starts_with("/api/")).collect();
    assert_eq!(asked.len(), 1, "one probe, not followed, nothing else asked: {asked:#?}");
    assert_eq!(asked[0].status, Some(303));
    assert!(!pair.secondary().requests().iter().any(|q| q.path == "/login.html"), "the redirect is never followed");
    pair.secondary().clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_asks_for_less_no_columns_and_none_of_databricks_own_catalogs() {
    // omit_columns on tables/list (https://docs.databricks.com/api/workspace/tables/list); the system, samples and
    // __databricks_internal catalogs and every information_schema are Databricks' own, recovered by nobody.
    let pair = pair().await;
    let state = tests::databricks::generated_workspace(20, 300);
    pair.primary().set_state(&state);
    pair.primary().clear_requests();
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let kinds = &r["workspaces"]["primary"]["kinds"];
    for kind in KINDS {
        assert_eq!(kinds[kind]["status"], "complete", "{kind}: {r:#}");
    }
    assert_eq!(kinds["tables"]["count"], 300, "the generated tables, not the system views: {r:#}");
    let asked = pair.primary().requests();
    let tables: Vec<_> = asked.iter().filter(|q| q.path == "/api/2.1/unity-catalog/tables").collect();
    assert!(!tables.is_empty() && tables.iter().all(|q| q.query.get("omit_columns").map(String::as_str) == Some("true")));
    let builtin = asked.iter().filter(|q| {
        let text = format!("{} {:?}", q.path, q.query);
        text.contains("\"system\"") || text.contains("information_schema") || q.path.contains("/system")
    });
    assert_eq!(builtin.count(), 0, "nothing asked of Databricks' own catalogs");
    let folder = r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json").to_owned();
    let exported = pair.env.json(&format!("{folder}/databricks/primary/tables.json")).await;
    assert!(exported["objects"].as_array().unwrap().iter().all(|t| t.get("columns").is_none()));
}

/// `status` polled from a second instance while a snapshot exports a slow primary: the export is seen running
/// (started at, kinds in and pending, calls made so far), then finished with every kind complete and the calls
/// the snapshot counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_sites_export_while_it_runs_and_once_it_finished() {
    let pair = pair().await;
    // Slow enough that the primary's export takes seconds: the catalog tree alone is four levels of calls.
    pair.primary().set_latency(std::time::Duration::from_millis(400));
    let mut snapshot = pair.function(&[]);
    let mut status = pair.function(&[]);
    let before = status.invoke(&json!({"command": "status"})).response();
    assert_eq!(before["workspaces"]["exports"], json!({}), "no export yet: {before:#}");

    let running = std::thread::spawn(move || {
        let r = snapshot.invoke(&json!({"command": "snapshot"})).response();
        (r, snapshot)
    });
    let mut seen_running = None;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(50);
    while std::time::Instant::now() < until && !running.is_finished() {
        let s = status.invoke(&json!({"command": "status"})).response();
        let p = &s["workspaces"]["exports"]["primary"];
        if p["state"] == "running" && p["requests"].as_u64().unwrap_or(0) > 0 && p["kinds"]["complete"].as_u64().unwrap_or(0) > 0
        {
            seen_running = Some(p.clone());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (r, snapshot) = running.join().unwrap();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", snapshot.logs());
    let p = seen_running.unwrap_or_else(|| panic!("the export was never seen running with kinds in"));
    assert!(!p["kinds"]["pending"].as_array().unwrap().is_empty(), "{p:#}");
    assert_eq!(p["invocations"], 1);
    assert!(p["started_at"].as_str().unwrap().ends_with('Z'), "{p:#}");
    let folder = r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json");
    assert_eq!(p["snapshot_folder"], folder, "{p:#}");

    let s = status.invoke(&json!({"command": "status"})).response();
    for site in ["primary", "secondary"] {
        let e = &s["workspaces"]["exports"][site];
        assert_eq!(e["state"], "finished", "{site}: {e:#}");
        assert_eq!(e["kinds"]["complete"], KINDS.len(), "{site}: {e:#}");
        assert!(e["kinds"]["pending"].as_array().unwrap().is_empty() && e["kinds"]["partial"].as_array().unwrap().is_empty());
        assert_eq!(e["requests"], r["workspaces"][site]["requests"], "{site}: the calls the snapshot counted");
        assert_eq!(e["snapshot_folder"], folder);
    }
    assert!(
        s["workspaces"]["exports"]["primary"]["requests"].as_u64().unwrap() > p["requests"].as_u64().unwrap(),
        "the running view was a point on the way"
    );
}

/// An invocation that ends mid-export (killed, as Lambda does at its timeout) leaves its record running with
/// what was in: `status` says how far it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_how_far_an_export_cut_short_got() {
    let pair = pair().await;
    pair.primary().set_latency(std::time::Duration::from_millis(400));
    let mut snapshot = pair.function(&[]);
    let mut status = pair.function(&[]);
    let pid = snapshot.pid();
    let handle = std::thread::spawn(move || {
        let _ = snapshot.invoke_with_timeout(&json!({"command": "snapshot"}), std::time::Duration::from_secs(20));
        snapshot
    });
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got = None;
    while std::time::Instant::now() < until {
        let s = status.invoke(&json!({"command": "status"})).response();
        let p = s["workspaces"]["exports"]["primary"].clone();
        if p["state"] == "running" && p["kinds"]["complete"].as_u64().unwrap_or(0) > 0 {
            got = Some(p);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let got = got.unwrap_or_else(|| panic!("never saw the export running"));
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let _ = handle.join();
    let s = status.invoke(&json!({"command": "status"})).response();
    let p = &s["workspaces"]["exports"]["primary"];
    assert_eq!(p["state"], "running", "{p:#}");
    let pending = p["kinds"]["pending"].as_array().unwrap().len();
    assert!(pending > 0 && pending < KINDS.len(), "how far it got: {p:#}");
    assert!(p["requests"].as_u64().unwrap() >= got["requests"].as_u64().unwrap());
    assert!(s["workspaces"]["latest_exports"].get("primary").is_none(), "no pointer to an export that never ended: {s:#}");
}

/// The same workspace exported twice, object by object and then through a SQL warehouse named in the site's
/// export settings (`system.information_schema` over the SQL Statement Execution API): the tables and grants
/// files hold the same documents, the second export made no per-schema table listing nor per-securable
/// `permissions` call of catalogs, schemas or tables, and it waited for a stopped warehouse and read every chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_grants_read_through_a_sql_warehouse_are_the_documents_read_object_by_object() {
    let pair = pair().await;
    let p = pair.primary();
    let state = p.state();
    let stopped = state["warehouses"].as_array().unwrap().iter().find(|w| w["state"] == "STOPPED").unwrap();
    let warehouse = stopped["id"].as_str().unwrap().to_owned();
    // Chunks of 2 rows: every statement's result spans several chunks.
    p.set_sql(std::time::Duration::from_millis(300), 2);
    // A grant on a table that is only inherited in information_schema must not show as the table's.
    let mut f = pair.function(&[]);
    let first = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(first["outcome"], "completed", "{first:#}");
    assert!(!p.requests().iter().any(|q| q.path.starts_with("/api/2.0/sql/statements")));
    p.clear_requests();

    let mut doc = pair.env.get("sites/primary").await;
    doc["export"] = json!({"sql_warehouse_id": warehouse});
    pair.env.put("sites/primary", &doc).await;
    let second = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(second["outcome"], "completed", "{second:#}");

    let folder = |r: &Value| r["snapshot_manifest_key"].as_str().unwrap().trim_end_matches("/manifest.json").to_owned();
    for kind in ["tables", "grants"] {
        let a = pair.env.json(&format!("{}/databricks/primary/{kind}.json", folder(&first))).await;
        let b = pair.env.json(&format!("{}/databricks/primary/{kind}.json", folder(&second))).await;
        assert_eq!((&a["status"], &b["status"]), (&json!("complete"), &json!("complete")), "{kind}");
        assert!(!a["objects"].as_array().unwrap().is_empty(), "{kind}");
        assert_eq!(a["objects"], b["objects"], "{kind}: the same documents both ways");
    }
    let grants = pair.env.json(&format!("{}/databricks/primary/grants.json", folder(&second))).await;
    let customers = grants["objects"].as_array().unwrap().iter().find(|g| g["full_name"] == "sales.curated.customers").unwrap();
    assert_eq!(customers["privilege_assignments"], json!([{"principal": "support@example.com", "privileges": ["SELECT"]}]));
    let orders = grants["objects"].as_array().unwrap().iter().find(|g| g["full_name"] == "sales.raw.orders").unwrap();
    assert_eq!(orders["privilege_assignments"], json!([]), "the catalog's grants it inherits are not the table's");

    let requests = p.requests();
    let statements: Vec<_> = requests.iter().filter(|q| q.method == "POST" && q.path == "/api/2.0/sql/statements").collect();
    let catalogs: Vec<&str> = state["catalogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .filter(|c| !["system", "samples", "__databricks_internal"].contains(c))
        .collect();
    assert_eq!(statements.len(), 4 * catalogs.len(), "per catalog: tables and the grants of catalogs, schemas and tables");
    for s in &statements {
        let body = s.body.as_ref().unwrap();
        assert!(catalogs.contains(&body["parameters"][0]["value"].as_str().unwrap()), "{body:#}");
        assert_eq!(body["warehouse_id"], warehouse.as_str());
        assert_eq!((&body["disposition"], &body["format"]), (&json!("INLINE"), &json!("JSON_ARRAY")));
    }
    assert!(requests.iter().any(|q| q.path.contains("/result/chunks/")), "later chunks were read");
    assert!(
        requests.iter().filter(|q| q.method == "GET" && q.path.starts_with("/api/2.0/sql/statements/")).count() > 4,
        "polled while the warehouse started"
    );
    assert!(!requests.iter().any(|q| q.path == "/api/2.1/unity-catalog/tables"), "no table listing per schema");
    for securable in ["catalog", "schema", "table"] {
        let prefix = format!("/api/2.1/unity-catalog/permissions/{securable}/");
        assert!(!requests.iter().any(|q| q.path.starts_with(&prefix)), "no {securable} permissions call");
    }
    assert!(requests.iter().any(|q| q.path.starts_with("/api/2.1/unity-catalog/permissions/volume/")), "volumes' grants by call");
    let drift = pair.env.json("databricks/drift.json").await;
    for kind in ["tables", "grants"] {
        let d = kind_drift(&drift["over_time"]["primary"], kind);
        assert!(
            strings(&d["added"]).is_empty() && strings(&d["removed"]).is_empty() && d["changed"].as_array().unwrap().is_empty(),
            "{d:#}"
        );
    }
}

/// A statement that fails (here: a warehouse that does not exist) costs the export nothing: the tables and
/// grants are read object by object and complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_warehouse_that_fails_falls_back_to_reading_object_by_object() {
    let pair = pair().await;
    let mut doc = pair.env.get("sites/primary").await;
    doc["export"] = json!({"sql_warehouse_id": "0000000000000000"});
    pair.env.put("sites/primary", &doc).await;
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    for kind in ["tables", "grants"] {
        assert_eq!(r["workspaces"]["primary"]["kinds"][kind]["status"], "complete", "{kind}: {r:#}");
    }
    let requests = pair.primary().requests();
    assert!(requests.iter().any(|q| q.path == "/api/2.0/sql/statements" && q.status == Some(404)));
    assert!(requests.iter().any(|q| q.path == "/api/2.1/unity-catalog/tables"));
    assert!(f.logs().contains("not read through the SQL warehouse"), "said in the logs");
}
