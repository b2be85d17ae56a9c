//! The local Databricks workspace API (`scripts/databricks_server.py`) and its harness (`tests::databricks`):
//! pagination, authentication, injected faults, the state changes it supports and the request record.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tests::databricks::{Credentials, DatabricksServer, Workspace, generated_workspace, http, sample_workspace};

fn start() -> DatabricksServer {
    DatabricksServer::start(&["primary", "secondary"])
        .unwrap_or_else(|e| panic!("cannot start scripts/databricks_server.py: {e}"))
}

fn ok(ws: &Workspace, path: &str) -> Value {
    let r = ws.get(path, Some(&ws.pat()));
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Every item of `key` over every page of `path` (which already has a `?`), following `next_page_token` through
/// the request parameter `param`; also the number of pages.
fn every_page(ws: &Workspace, path: &str, key: &str, param: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &token {
            Some(t) => format!("{path}&{param}={t}"),
            None => path.to_string(),
        };
        let page = ok(ws, &url);
        pages += 1;
        items.extend(page[key].as_array().cloned().unwrap_or_default());
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(t) => {
                assert!(!t.is_empty(), "an empty next_page_token on {url}");
                token = Some(t.to_string());
            }
            None => return (items, pages),
        }
        assert!(pages < 10_000, "{path}: no end to the pages");
    }
}

fn names(items: &[Value], field: &str) -> BTreeSet<String> {
    items.iter().map(|i| i[field].to_string()).collect()
}

#[test]
fn pagination_reaches_every_job_table_and_repo() {
    let server = start();
    let ws = server.workspace("primary");
    let state = generated_workspace(250, 1200);
    ws.set_state(&state);
    let seeded_jobs = names(state["jobs"].as_array().unwrap(), "job_id");
    assert_eq!(seeded_jobs.len(), 250);

    // Jobs at the default page size (20), without tasks.
    let (jobs, pages) = every_page(ws, "/api/2.2/jobs/list?", "jobs", "page_token");
    assert_eq!(pages, 13);
    assert_eq!(names(&jobs, "job_id"), seeded_jobs);
    assert!(jobs.iter().all(|j| j["settings"].get("tasks").is_none() && j["settings"]["name"].is_string()));
    let first = ok(ws, "/api/2.2/jobs/list");
    assert_eq!(first["jobs"].as_array().unwrap().len(), 20);
    assert_eq!(first["has_more"], true);

    // With the tasks, 100 a page: the 130-task job says it has more, jobs/get pages the rest.
    let (jobs, pages) = every_page(ws, "/api/2.2/jobs/list?expand_tasks=true&limit=100", "jobs", "page_token");
    assert_eq!(pages, 3);
    assert_eq!(jobs.len(), 250);
    let big: Vec<&Value> = jobs.iter().filter(|j| j["has_more"] == true).collect();
    assert_eq!(big.len(), 1, "one job in 250 has 130 tasks");
    assert_eq!(big[0]["settings"]["tasks"].as_array().unwrap().len(), 100);
    let id = big[0]["job_id"].as_u64().unwrap();
    let page1 = ok(ws, &format!("/api/2.2/jobs/get?job_id={id}"));
    let token = page1["next_page_token"].as_str().expect("next_page_token on a 130-task job").to_string();
    let page2 = ok(ws, &format!("/api/2.2/jobs/get?job_id={id}&page_token={token}"));
    assert!(page2.get("next_page_token").is_none());
    let keys: BTreeSet<String> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["settings"]["tasks"].as_array().unwrap().iter().map(|t| t["task_key"].to_string()))
        .collect();
    assert_eq!(keys.len(), 130);

    let r = ws.get("/api/2.2/jobs/list?limit=101", Some(&ws.pat()));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")));
    let r = ws.get("/api/2.2/jobs/list?page_token=not-a-token", Some(&ws.pat()));
    assert_eq!(r.status, 400);

    // Tables: every catalog, every schema, every table, at a small page size and at the default.
    for size in ["&max_results=37", ""] {
        let (catalogs, _) = every_page(ws, &format!("/api/2.1/unity-catalog/catalogs?{size}"), "catalogs", "page_token");
        let mut tables = Vec::new();
        for c in &catalogs {
            let c = c["name"].as_str().unwrap();
            let (schemas, _) =
                every_page(ws, &format!("/api/2.1/unity-catalog/schemas?catalog_name={c}{size}"), "schemas", "page_token");
            for s in &schemas {
                let s = s["name"].as_str().unwrap();
                let path = format!("/api/2.1/unity-catalog/tables?catalog_name={c}&schema_name={s}{size}");
                tables.extend(every_page(ws, &path, "tables", "page_token").0);
            }
        }
        assert_eq!(tables.len(), state["tables"].as_array().unwrap().len(), "max_results {size:?}");
        assert!(tables.len() > 1200, "the 1200 tables and Databricks' own views");
        assert_eq!(names(&tables, "full_name"), names(state["tables"].as_array().unwrap(), "full_name"));
    }

    // Repos page through a parameter named next_page_token.
    let (repos, pages) = every_page(ws, "/api/2.0/repos?", "repos", "next_page_token");
    assert_eq!((repos.len(), pages), (31, 2));
    let (repos, _) = every_page(ws, "/api/2.0/repos?path_prefix=/Repos/team1@example.com", "repos", "next_page_token");
    assert_eq!(repos.len(), 6);
}

#[test]
fn authentication_pat_oauth_and_expiry() {
    let server = start();
    let ws = server.workspace("primary");
    let other = server.workspace("secondary");

    let r = ws.get("/api/2.0/repos", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_code"], "UNAUTHENTICATED");
    assert_eq!(ws.get("/api/2.0/repos", Some("dapi-wrong")).status, 401);
    assert_eq!(ws.get("/api/2.0/repos", Some(&other.pat())).status, 401, "a PAT of another workspace");
    assert_eq!(ws.get("/api/2.0/repos", Some(&ws.pat())).status, 200);

    // OAuth M2M: client credentials by HTTP Basic.
    let r = ws.oauth_token(&ws.client_id(), &ws.client_secret());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64(), body["scope"].as_str()),
        (Some("Bearer"), Some(3600), Some("all-apis"))
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(ws.get("/api/2.0/repos", Some(&token)).status, 200);
    assert_eq!(other.get("/api/2.0/repos", Some(&token)).status, 401, "tokens are per workspace");

    // ... and by form fields.
    let form =
        format!("grant_type=client_credentials&scope=all-apis&client_id={}&client_secret={}", ws.client_id(), ws.client_secret());
    let r = http(
        &ws.url,
        "POST",
        "/oidc/v1/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 200);

    let r = ws.oauth_token(&ws.client_id(), "wrong");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");

    ws.expire_tokens();
    let r = ws.get("/api/2.0/repos", Some(&token));
    assert_eq!(r.status, 401);
    assert!(r.json()["message"].as_str().unwrap().contains("expired"), "{}", r.json());
    assert_eq!(ws.get("/api/2.0/repos", Some(&ws.oauth_access_token())).status, 200, "a new token works");
    assert_eq!(ws.get("/api/2.0/repos", Some(&ws.pat())).status, 200, "PATs do not expire");
    ws.revoke_pats(&[&ws.pat()]);
    assert_eq!(ws.get("/api/2.0/repos", Some(&ws.pat())).status, 401);

    // Replaced credentials, with a short token lifetime.
    ws.set_credentials(&Credentials {
        pats: vec!["dapi-new".into()],
        oauth_clients: [("sp-dr".to_string(), "s3cret".to_string())].into(),
        token_ttl_seconds: 0.3,
    });
    assert_eq!(ws.get("/api/2.0/repos", Some("dapi-new")).status, 200);
    assert_eq!(ws.oauth_token(&ws.client_id(), &ws.client_secret()).status, 401);
    let r = ws.oauth_token("sp-dr", "s3cret").json();
    assert_eq!(r["expires_in"], 0);
    let short = r["access_token"].as_str().unwrap().to_string();
    assert_eq!(ws.get("/api/2.0/repos", Some(&short)).status, 200);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(ws.get("/api/2.0/repos", Some(&short)).status, 401);

    let auth: Vec<String> = ws.requests().iter().map(|r| r.auth.clone()).collect();
    assert_eq!(&auth[..5], ["none", "bad", "bad", "bearer-pat", "basic"]);
    assert_eq!(auth[5], "bearer-oauth");
    assert!(auth.contains(&"form".to_string()));
}

#[test]
fn faults_429_503_delay_and_hang() {
    let server = start();
    let ws = server.workspace("primary");
    let pat = ws.pat();
    ws.set_state(&sample_workspace("primary"));
    ws.set_faults(&json!([
        {"path_prefix": "/api/2.2/jobs/list", "method": "GET", "status": 429, "retry_after": 1, "times": 1},
        {"path_prefix": "/api/2.1/clusters/", "status": 503, "times": 2},
        {"path_prefix": "/api/2.0/sql/warehouses", "delay_ms": 300, "times": 1},
    ]));
    let r = ws.get("/api/2.2/jobs/list", Some(&pat));
    assert_eq!(r.status, 429);
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(r.json()["error_code"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(ws.get("/api/2.2/jobs/list", Some(&pat)).status, 200, "times: 1");

    let statuses: Vec<u16> = (0..3).map(|_| ws.get("/api/2.1/clusters/list", Some(&pat)).status).collect();
    assert_eq!(statuses, [503, 503, 200]);

    let t = Instant::now();
    assert_eq!(ws.get("/api/2.0/sql/warehouses", Some(&pat)).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(ws.get("/api/2.0/sql/warehouses", Some(&pat)).status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));

    // A workspace that does not answer: the request is accepted, then nothing, until the rules are cleared.
    ws.set_faults(&json!([{"path_prefix": "", "mode": "hang"}]));
    let t = Instant::now();
    let e =
        http(&ws.url, "GET", "/api/2.0/repos", &[("Authorization", &format!("Bearer {pat}"))], None, Duration::from_millis(500))
            .expect_err("a hung workspace answers nothing");
    assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(450));
    assert_eq!(ws.state()["jobs"].as_array().unwrap().len(), 6, "the admin API still answers");
    let url = ws.url.clone();
    let auth = format!("Bearer {pat}");
    let waiting = std::thread::spawn(move || {
        http(&url, "GET", "/api/2.0/repos", &[("Authorization", &auth)], None, Duration::from_secs(20)).unwrap().status
    });
    std::thread::sleep(Duration::from_millis(300));
    let hung = ws.requests().into_iter().filter(|r| r.status.is_none()).count();
    assert_eq!(hung, 2, "both hung requests are recorded without a status");
    ws.clear_faults();
    assert_eq!(waiting.join().unwrap(), 200, "released and answered once the rules are cleared");

    // Bad rules are refused.
    let r = http(
        &ws.url,
        "POST",
        "/__admin/faults",
        &[],
        Some(br#"[{"path_prefix": "/api", "mode": "sleep"}]"#),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn sample_workspaces_serve_every_kind_and_round_trip() {
    let server = start();
    let (p, s) = (server.workspace("primary"), server.workspace("secondary"));
    let (ps, ss) = (sample_workspace("primary"), sample_workspace("secondary"));
    p.set_state(&ps);
    s.set_state(&ss);
    assert!(p.state() == ps, "the state reads back exactly as set");
    assert!(s.state() == ss);
    // Same names, site-specific ids.
    assert_eq!(
        names(ps["jobs"].as_array().unwrap(), "job_id").intersection(&names(ss["jobs"].as_array().unwrap(), "job_id")).count(),
        0
    );
    let job_names =
        |st: &Value| st["jobs"].as_array().unwrap().iter().map(|j| j["settings"]["name"].to_string()).collect::<BTreeSet<_>>();
    assert_eq!(job_names(&ps), job_names(&ss));
    assert_ne!(ps["warehouses"][0]["id"], ss["warehouses"][0]["id"]);
    assert_eq!(ps["warehouses"][0]["name"], ss["warehouses"][0]["name"]);

    for (path, key) in [
        ("/api/2.2/jobs/list", "jobs"),
        ("/api/2.1/clusters/list", "clusters"),
        ("/api/2.0/policies/clusters/list", "policies"),
        ("/api/2.0/instance-pools/list", "instance_pools"),
        ("/api/2.0/sql/warehouses", "warehouses"),
        ("/api/2.1/unity-catalog/catalogs", "catalogs"),
        ("/api/2.1/unity-catalog/schemas?catalog_name=sales", "schemas"),
        ("/api/2.1/unity-catalog/tables?catalog_name=sales&schema_name=curated", "tables"),
        ("/api/2.1/unity-catalog/volumes?catalog_name=sales&schema_name=raw", "volumes"),
        ("/api/2.1/unity-catalog/external-locations", "external_locations"),
        ("/api/2.1/unity-catalog/storage-credentials", "storage_credentials"),
        ("/api/2.1/unity-catalog/models", "registered_models"),
        ("/api/2.0/serving-endpoints", "endpoints"),
        ("/api/2.0/vector-search/endpoints", "endpoints"),
        ("/api/2.0/vector-search/indexes?endpoint_name=docs-vs", "vector_indexes"),
        ("/api/2.0/repos", "repos"),
        ("/api/2.0/workspace/list?path=/Users/alice@example.com/etl", "objects"),
        ("/api/2.0/secrets/scopes/list", "scopes"),
        ("/api/2.0/secrets/acls/list?scope=dr-etl", "items"),
    ] {
        let body = ok(p, path);
        assert!(!body[key].as_array().unwrap_or_else(|| panic!("{path}: no {key}: {body}")).is_empty(), "{path}");
    }
    assert_eq!(ok(p, "/api/2.0/policies/clusters/list")["total_count"], 1);
    assert_eq!(ok(p, "/api/2.1/unity-catalog/metastore_summary")["region"], "us-east-1");
    assert_eq!(ok(s, "/api/2.1/unity-catalog/metastore_summary")["region"], "us-west-2");
    let grants = ok(p, "/api/2.1/unity-catalog/permissions/catalog/main");
    assert_eq!(grants["privilege_assignments"][0]["principal"], "data-engineers");
    assert_eq!(
        ok(p, "/api/2.1/unity-catalog/permissions/table/main.reporting.daily_revenue")["privilege_assignments"],
        json!([])
    );
    let r = p.get("/api/2.1/unity-catalog/permissions/catalog/nope", Some(&p.pat()));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (404, Some("CATALOG_DOES_NOT_EXIST")));

    // Workspace tree: children only, Repos and elsewhere.
    let top = ok(p, "/api/2.0/workspace/list?path=/");
    assert_eq!(
        names(top["objects"].as_array().unwrap(), "path"),
        ["\"/Repos\"", "\"/Shared\"", "\"/Users\""].map(String::from).into()
    );
    let repo = ok(p, "/api/2.0/workspace/list?path=/Repos/etl@example.com");
    assert_eq!(repo["objects"][0]["object_type"], "REPO");
    let shared = ok(p, "/api/2.0/workspace/list?path=/Shared/reports");
    let kinds: BTreeSet<String> = shared["objects"].as_array().unwrap().iter().map(|o| o["object_type"].to_string()).collect();
    assert!(kinds.contains("\"NOTEBOOK\"") && kinds.contains("\"LIBRARY\""), "{kinds:?}");
    let r = p.get("/api/2.0/workspace/list?path=/Users/nobody", Some(&p.pat()));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));

    // Permissions of jobs, clusters and warehouses.
    let job_id = ps["jobs"][0]["job_id"].as_u64().unwrap();
    let acl = ok(p, &format!("/api/2.0/permissions/jobs/{job_id}"));
    assert_eq!((acl["object_id"].as_str(), acl["object_type"].as_str()), (Some(format!("/jobs/{job_id}").as_str()), Some("job")));
    assert_eq!(acl["access_control_list"][0]["all_permissions"][0]["permission_level"], "IS_OWNER");
    let cluster = ps["clusters"][0]["cluster_id"].as_str().unwrap();
    assert_eq!(ok(p, &format!("/api/2.0/permissions/clusters/{cluster}"))["object_type"], "cluster");
    let wh = ps["warehouses"][0]["id"].as_str().unwrap();
    assert_eq!(ok(p, &format!("/api/2.0/permissions/warehouses/{wh}"))["object_type"], "warehouse");
    assert_eq!(p.get("/api/2.0/permissions/jobs/1", Some(&p.pat())).status, 404);
    assert_eq!(p.get("/api/2.2/jobs/get?job_id=1", Some(&p.pat())).json()["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert_eq!(p.get(&format!("/api/2.2/jobs/get?job_id={job_id}"), Some(&s.pat())).status, 401);
    assert_eq!(s.get(&format!("/api/2.2/jobs/get?job_id={job_id}"), Some(&s.pat())).status, 404, "ids are per site");

    // Vector search disabled.
    let mut off = ss.clone();
    off["vector_search"] = json!({"enabled": false});
    s.set_state(&off);
    let r = s.get("/api/2.0/vector-search/endpoints", Some(&s.pat()));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (404, Some("FEATURE_DISABLED")));

    // Bad documents are refused with a reason; the state is unchanged.
    for bad in [
        json!([]),
        json!({"jobs": 3}),
        json!({"jobz": []}),
        json!({"jobs": [{"job_id": "x", "settings": {}}]}),
        json!({"tables": [{"name": "t"}]}),
    ] {
        let e = p.try_set_state(&bad).expect_err("refused");
        assert!(e.starts_with("HTTP 400"), "{e}");
    }
    assert!(p.state() == ps, "a refused document changes nothing");
}

#[test]
fn job_updates_warehouse_start_and_the_request_record() {
    let server = start();
    let ws = server.workspace("secondary");
    let state = sample_workspace("secondary");
    ws.set_state(&state);
    ws.clear_requests();
    let token = ws.oauth_access_token();
    let job = &state["jobs"][0];
    let id = job["job_id"].as_u64().unwrap();
    assert_eq!(job["settings"]["schedule"]["pause_status"], "PAUSED");

    let mut schedule = job["settings"]["schedule"].clone();
    schedule["pause_status"] = json!("UNPAUSED");
    let r = ws.post("/api/2.2/jobs/update", &json!({"job_id": id, "new_settings": {"schedule": schedule}}), Some(&token));
    assert_eq!((r.status, r.json()), (200, json!({})));
    let got = ws.get(&format!("/api/2.2/jobs/get?job_id={id}"), Some(&token)).json();
    assert_eq!(got["settings"]["schedule"]["pause_status"], "UNPAUSED");
    assert_eq!(got["settings"]["tasks"], job["settings"]["tasks"], "other fields are kept");
    // The continuous and trigger jobs.
    for (n, field) in [(2, "continuous"), (3, "trigger")] {
        let j = &state["jobs"][n];
        let mut v = j["settings"][field].clone();
        v["pause_status"] = json!("UNPAUSED");
        let jid = j["job_id"].as_u64().unwrap();
        assert_eq!(
            ws.post("/api/2.2/jobs/update", &json!({"job_id": jid, "new_settings": {field: v}}), Some(&token)).status,
            200
        );
        assert_eq!(ws.state()["jobs"][n]["settings"][field]["pause_status"], "UNPAUSED");
        let back = json!({"job_id": jid, "new_settings": {field: j["settings"][field]}});
        assert_eq!(ws.post("/api/2.2/jobs/update", &back, Some(&token)).status, 200);
    }
    let r = ws.post("/api/2.2/jobs/update", &json!({"job_id": 42, "new_settings": {}}), Some(&token));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));

    // reset replaces the whole settings: back to the start.
    let r = ws.post("/api/2.2/jobs/reset", &json!({"job_id": id, "new_settings": job["settings"]}), Some(&token));
    assert_eq!(r.status, 200);
    assert_eq!(ws.state()["jobs"][0], *job);

    // A stopped warehouse starts: STARTING, then RUNNING after the delay.
    let wh = state["warehouses"].as_array().unwrap().iter().find(|w| w["state"] == "STOPPED").unwrap();
    let wid = wh["id"].as_str().unwrap();
    assert_eq!(ws.post(&format!("/api/2.0/sql/warehouses/{wid}/start"), &json!({}), Some(&token)).status, 200);
    assert_eq!(ws.get(&format!("/api/2.0/sql/warehouses/{wid}"), Some(&token)).json()["state"], "STARTING");
    let t = Instant::now();
    while ws.get(&format!("/api/2.0/sql/warehouses/{wid}"), Some(&token)).json()["state"] != "RUNNING" {
        assert!(t.elapsed() < Duration::from_secs(5), "still not RUNNING");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ws.post(&format!("/api/2.0/sql/warehouses/{wid}/stop"), &json!({}), Some(&token)).status, 200);
    ws.set_warehouse_delay(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ws.get(&format!("/api/2.0/sql/warehouses/{wid}"), Some(&token)).json()["state"], "STOPPED");
    assert!(ws.state() == state, "the workspace is exactly as it started");
    assert_eq!(ws.post("/api/2.0/sql/warehouses/nope/start", &json!({}), Some(&token)).status, 404);

    // The record: every /api/ and /oidc/ request in order, the bodies of POSTs to /api/.
    let requests = ws.requests();
    assert_eq!(requests[0].path, "/oidc/v1/token");
    assert_eq!((requests[0].auth.as_str(), requests[0].status), ("basic", Some(200)));
    assert_eq!(requests[0].body, None, "token requests are recorded without their form");
    let update = &requests[1];
    assert_eq!(
        (update.method.as_str(), update.path.as_str(), update.auth.as_str()),
        ("POST", "/api/2.2/jobs/update", "bearer-oauth")
    );
    assert_eq!(update.body.as_ref().unwrap()["job_id"], id);
    assert_eq!(requests[2].query.get("job_id").map(String::as_str), Some(id.to_string().as_str()));
    assert!(requests.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(requests.iter().all(|r| r.status.is_some()));
    ws.clear_requests();
    assert!(ws.requests().is_empty());
}

#[test]
fn the_published_rules_of_issue_24_hold_on_the_server() {
    let server = start();
    let ws = server.workspace("primary");
    let pat = ws.pat();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut state = sample_workspace("primary");
    let n = |count: usize, key: &str| -> Value {
        (0..count).map(|i| json!({ key: format!("{key}-{i}") })).collect::<Vec<_>>().into()
    };
    state["jobs"].as_array_mut().unwrap().push(json!({"job_id": 77, "creator_user_name": "etl@example.com", "settings": {
        "name": "wide", "tasks": n(3, "task_key"), "job_clusters": n(120, "job_cluster_key"),
        "parameters": n(110, "name"), "environments": n(105, "environment_key")}}));
    state["repos"].as_array_mut().unwrap().push(json!({"id": 555, "path": "/Users/ana@example.com/tools", "branch": "main"}));
    let day = 24 * 3600 * 1000;
    for (id, terminated, pinned) in
        [("c-in", now_ms - 29 * day, false), ("c-out", now_ms - 31 * day, false), ("c-pin", now_ms - 90 * day, true)]
    {
        state["clusters"].as_array_mut().unwrap().push(
            json!({"cluster_id": id, "cluster_name": id, "state": "TERMINATED", "terminated_time": terminated, "pinned": pinned}),
        );
    }
    ws.set_state(&state);

    // jobs/get pages the four arrays together, 100 of each a page, one next_page_token.
    let p1 = ok(ws, "/api/2.2/jobs/get?job_id=77");
    let len = |p: &Value, k: &str| p["settings"][k].as_array().map_or(0, Vec::len);
    assert_eq!(
        [len(&p1, "tasks"), len(&p1, "job_clusters"), len(&p1, "parameters"), len(&p1, "environments")],
        [3, 100, 100, 100]
    );
    let p2 = ok(ws, &format!("/api/2.2/jobs/get?job_id=77&page_token={}", p1["next_page_token"].as_str().unwrap()));
    assert_eq!([len(&p2, "tasks"), len(&p2, "job_clusters"), len(&p2, "parameters"), len(&p2, "environments")], [0, 20, 10, 5]);
    assert!(p2.get("next_page_token").is_none());

    // Git folders: in the workspace tree wherever they live, repos/{id} for each; the deprecated list only /Repos.
    let home = ok(ws, "/api/2.0/workspace/list?path=/Users/ana@example.com");
    assert_eq!(home["objects"][0], json!({"object_type": "REPO", "path": "/Users/ana@example.com/tools", "object_id": 555}));
    assert_eq!(ok(ws, "/api/2.0/repos/555")["branch"], "main");
    let (listed, _) = every_page(ws, "/api/2.0/repos?", "repos", "next_page_token");
    assert!(listed.iter().all(|r| r["path"].as_str().unwrap().starts_with("/Repos/")), "{listed:?}");

    // clusters/list: pinned, active, and terminated within 30 days; "pinned" never answered.
    let (clusters, _) = every_page(ws, "/api/2.1/clusters/list?", "clusters", "page_token");
    let ids = names(&clusters, "cluster_id");
    assert!(ids.contains("\"c-in\"") && ids.contains("\"c-pin\"") && !ids.contains("\"c-out\""), "{ids:?}");
    assert!(clusters.iter().all(|c| c.get("pinned").is_none()));

    // tables/list omit_columns.
    let t = ok(ws, "/api/2.1/unity-catalog/tables?catalog_name=sales&schema_name=raw&omit_columns=true");
    assert!(
        !t["tables"].as_array().unwrap().is_empty() && t["tables"].as_array().unwrap().iter().all(|t| t.get("columns").is_none())
    );

    // scim/v2/Me and job visibility: an admin by default; a seeded principal sees only the jobs it may view.
    let me = ok(ws, "/api/2.0/preview/scim/v2/Me");
    assert!(me["groups"].as_array().unwrap().iter().any(|g| g["display"] == "admins"), "{me}");
    let mut state = ws.state();
    state["principals"] = json!({ pat.clone(): {"user_name": "etl@example.com", "admin": false} });
    ws.set_state(&state);
    let me = ok(ws, "/api/2.0/preview/scim/v2/Me");
    assert_eq!(me["userName"], "etl@example.com");
    assert!(!me["groups"].as_array().unwrap().iter().any(|g| g["display"] == "admins"), "{me}");
    let (jobs, _) = every_page(ws, "/api/2.2/jobs/list?", "jobs", "page_token");
    let all = state["jobs"].as_array().unwrap();
    let visible = all.iter().filter(|j| j["creator_user_name"] == "etl@example.com").count();
    assert!(jobs.len() == visible && visible < all.len(), "{} of {}", jobs.len(), all.len());
    let hidden = all.iter().find(|j| j["creator_user_name"] != "etl@example.com").unwrap();
    let r = ws.get(&format!("/api/2.2/jobs/get?job_id={}", hidden["job_id"]), Some(&pat));
    assert_eq!((r.status, r.json()["error_code"].as_str()), (403, Some("PERMISSION_DENIED")));

    // A redirect rule (the PrivateLink one) and 503 with Retry-After on a POST.
    ws.set_faults(&json!([
        {"path_prefix": "/api/2.0/x", "status": 303, "location": "/login.html?error=private-link-validation-error"},
        {"path_prefix": "/api/2.2/jobs/update", "method": "POST", "status": 503, "retry_after": 2, "times": 1}
    ]));
    let r = ws.get("/api/2.0/x", Some(&pat));
    assert_eq!((r.status, r.header("Location")), (303, Some("/login.html?error=private-link-validation-error")));
    let r = ws.post("/api/2.2/jobs/update", &json!({"job_id": 77, "new_settings": {}}), Some(&pat));
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("2")));
    ws.clear_faults();

    // Latency from a setting: every answer takes at least that long.
    ws.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    ok(ws, "/api/2.0/preview/scim/v2/Me");
    assert!(t.elapsed() >= Duration::from_millis(150), "{:?}", t.elapsed());
    ws.set_latency(Duration::ZERO);
}

/// The SQL Statement Execution API as published (docs.databricks.com/api/workspace/statementexecution): a
/// statement on a stopped warehouse is PENDING while it starts, RUNNING, then SUCCEEDED with its manifest and
/// the first chunk, each chunk naming the next until the last; only direct grants when the statement asks for
/// `inherited_from = 'NONE'`; a view that does not exist FAILED with its error; bad requests refused.
#[test]
fn sql_statements_pend_run_succeed_in_chunks_and_fail_as_published() {
    let server = start();
    let ws = server.workspace("primary");
    ws.set_state(&sample_workspace("primary"));
    ws.set_sql(Duration::from_millis(200), 2);
    let state = ws.state();
    let warehouse = state["warehouses"].as_array().unwrap().iter().find(|w| w["state"] == "STOPPED").unwrap()["id"].clone();
    let post = |statement: &str, extra: Value| {
        let mut body = json!({"warehouse_id": warehouse, "statement": statement, "wait_timeout": "0s",
                              "disposition": "INLINE", "format": "JSON_ARRAY"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        ws.post("/api/2.0/sql/statements", &body, Some(&ws.pat()))
    };
    let run = |statement: &str| -> Value {
        let r = post(statement, json!({}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["statement_id"].as_str().unwrap().to_owned();
        let mut states = vec![r.json()["status"]["state"].as_str().unwrap().to_owned()];
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = ok(ws, &format!("/api/2.0/sql/statements/{id}"));
            let state = answer["status"]["state"].as_str().unwrap().to_owned();
            if states.last() != Some(&state) {
                states.push(state.clone());
            }
            if !["PENDING", "RUNNING"].contains(&state.as_str()) || Instant::now() > until {
                return json!({"id": id, "states": states, "answer": answer});
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let tables = run("SELECT * FROM system.information_schema.tables");
    assert_eq!(tables["states"], json!(["PENDING", "RUNNING", "SUCCEEDED"]), "{tables:#}");
    let answer = &tables["answer"];
    let manifest = &answer["manifest"];
    assert_eq!(manifest["format"], "JSON_ARRAY");
    assert_eq!(manifest["schema"]["columns"][0]["name"], "table_catalog");
    let total = manifest["total_row_count"].as_u64().unwrap();
    assert_eq!(total as usize, state["tables"].as_array().unwrap().len());
    assert_eq!(manifest["total_chunk_count"].as_u64().unwrap(), total.div_ceil(2));
    let mut rows = answer["result"]["data_array"].as_array().unwrap().clone();
    let mut next = answer["result"]["next_chunk_index"].as_u64();
    let id = tables["id"].as_str().unwrap();
    while let Some(n) = next {
        let chunk = ok(ws, &format!("/api/2.0/sql/statements/{id}/result/chunks/{n}"));
        assert_eq!(chunk["chunk_index"], n);
        rows.extend(chunk["data_array"].as_array().unwrap().iter().cloned());
        next = chunk["next_chunk_index"].as_u64();
    }
    assert_eq!(rows.len() as u64, total);
    assert!(rows.iter().flat_map(|r| r.as_array().unwrap()).all(|v| v.is_string() || v.is_null()), "JSON_ARRAY: strings or null");

    let all = run("SELECT * FROM system.information_schema.table_privileges");
    let direct = run("SELECT * FROM system.information_schema.table_privileges WHERE inherited_from = 'NONE'");
    let count = |v: &Value| v["answer"]["manifest"]["total_row_count"].as_u64().unwrap();
    assert!(count(&all) > count(&direct), "inherited grants show on every descendant");
    assert_eq!(count(&direct), 1, "the one direct table grant of the sample");

    // One catalog's rows when the statement compares its catalog column with the named parameter.
    let r = post(
        "SELECT * FROM system.information_schema.tables WHERE table_catalog = :catalog",
        json!({"parameters": [{"name": "catalog", "value": "sales", "type": "STRING"}]}),
    );
    assert_eq!(r.status, 200);
    let id = r.json()["statement_id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let a = ok(ws, &format!("/api/2.0/sql/statements/{id}"));
        if a["status"]["state"] == "SUCCEEDED" || Instant::now() > until {
            break a;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let sales = state["tables"].as_array().unwrap().iter().filter(|t| t["catalog_name"] == "sales").count();
    assert!(sales > 0 && sales < state["tables"].as_array().unwrap().len());
    assert_eq!(answer["manifest"]["total_row_count"], sales);
    assert_eq!(post("SELECT * FROM system.information_schema.tables WHERE table_catalog = :catalog", json!({})).status, 400);

    let missing = run("SELECT * FROM system.information_schema.nothing_here");
    assert_eq!(missing["answer"]["status"]["state"], "FAILED");
    assert!(missing["answer"]["status"]["error"]["message"].as_str().unwrap().contains("TABLE_OR_VIEW_NOT_FOUND"));
    assert_eq!(post("SELECT 1", json!({"wait_timeout": "3s"})).status, 400, "wait_timeout is 0s or 5s to 50s");
    assert_eq!(post("SELECT 1", json!({"disposition": "EXTERNAL_LINKS"})).status, 400);
    assert_eq!(post("SELECT 1", json!({"warehouse_id": "nope"})).status, 404);
}
