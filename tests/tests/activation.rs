//! Workload activation and client redirection, end to end: `manual-trigger` (the built binary) fails over
//! between the two local Databricks workspaces (`scripts/databricks_server.py`) and moto's Route 53: the
//! secondary's jobs tagged `dr=active-passive` are resumed, its `bi` warehouse started, the primary's same jobs
//! paused, the stable CNAME moved; a failback reverses exactly that; a drill changes nothing; a primary that
//! hangs never blocks the promotion and is paged as to do by hand; a crash after an activation call resumes
//! without a second change; a break-glass `dr` failover does all of it as the function does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use tests::databricks::{SitePair, Workspace};
use tests::runtime_api::Invocation;

const RECORD: &str = "dbx.example.internal";
const ACTIVATION: &str = r#"{"job_tag": "dr=active-passive", "warehouses": ["bi"]}"#;

/// The two local workspaces as the sites, with a Route 53 zone for the stable name.
struct Pair {
    sites: SitePair,
    route53: aws_sdk_route53::Client,
    zone: String,
}

// The pair's environment, workspaces and function are the sites': `pair.env`, `pair.primary()`, `pair.function()`.
impl std::ops::Deref for Pair {
    type Target = SitePair;
    fn deref(&self) -> &SitePair {
        &self.sites
    }
}

fn host(url: &str) -> String {
    url.trim_start_matches("http://").split(':').next().unwrap().to_owned()
}

impl Pair {
    /// The two local workspaces as the sites (OAuth M2M and a PAT, secrets in SSM), both documents selecting
    /// `dr=active-passive` and naming the `bi` warehouse; a hosted zone whose CNAME points at the primary.
    async fn start() -> Pair {
        Pair::start_with_record(true).await
    }

    /// The same, the CNAME existing (pointing at the primary) or not before the first failover.
    async fn start_with_record(existing: bool) -> Pair {
        let activation: Value = serde_json::from_str(ACTIVATION).unwrap();
        // Distinct hosts for the two workspaces' CNAME values: 127.0.0.1 and localhost.
        let sites = SitePair::start(&json!({ "activation": activation }), Some("localhost")).await;
        let primary_url = sites.primary().url.clone();
        let (route53, zone) = tests::dns::zone(&sites.env.endpoint, "example.internal").await;
        let pair = Pair { sites, route53, zone };
        if existing {
            pair.upsert(&host(&primary_url)).await;
        }
        pair.env.put("redirection", &json!({"hosted_zone_id": pair.zone, "record_name": RECORD, "ttl": 30})).await;
        pair
    }

    async fn upsert(&self, value: &str) {
        tests::dns::upsert_cname(&self.route53, &self.zone, RECORD, value).await;
    }

    async fn cname(&self) -> String {
        tests::dns::cname(&self.route53, &self.zone, RECORD).await
    }
}

fn failover(token: &str) -> Value {
    json!({"command": "failover", "target": "secondary", "reason": "us-east-1 outage", "requested_by": "oncall@example.com",
           "confirm": "secondary", "client_token": token})
}

fn failback(token: &str) -> Value {
    json!({"command": "failback", "target": "primary", "reason": "region recovered", "requested_by": "oncall@example.com",
           "confirm": "primary", "client_token": token})
}

fn job<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["jobs"].as_array().unwrap().iter().find(|j| j["settings"]["name"] == name).unwrap()
}

fn pause(state: &Value, name: &str, field: &str) -> String {
    job(state, name)["settings"][field]["pause_status"].as_str().unwrap().to_owned()
}

fn warehouse_state(state: &Value, name: &str) -> String {
    state["warehouses"].as_array().unwrap().iter().find(|w| w["name"] == name).unwrap()["state"].as_str().unwrap().to_owned()
}

/// A workspace's state with the warehouses' transient states settled (STARTING is RUNNING, STOPPING STOPPED).
fn settled(mut state: Value) -> Value {
    for w in state["warehouses"].as_array_mut().unwrap() {
        let s = match w["state"].as_str().unwrap() {
            "STARTING" => "RUNNING",
            "STOPPING" => "STOPPED",
            s => s,
        }
        .to_owned();
        w["state"] = json!(s);
    }
    state
}

/// The activation calls a workspace received: `jobs/update` and warehouse start/stop.
fn changes(ws: &Workspace) -> Vec<String> {
    ws.requests()
        .iter()
        .filter(|q| q.method == "POST" && q.path.starts_with("/api/"))
        .map(|q| match &q.body {
            Some(b) if q.path.ends_with("jobs/update") => format!("update {} {}", b["job_id"], b["new_settings"]),
            _ => q.path.clone(),
        })
        .collect()
}

const TAGGED: [(&str, &str); 4] =
    [("nightly-etl", "schedule"), ("hourly-report", "schedule"), ("stream-ingest", "continuous"), ("landing-arrival", "trigger")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_activates_the_secondary_and_a_failback_leaves_both_workspaces_as_they_started() {
    let pair = Pair::start().await;
    let (p0, s0) = (pair.primary().state(), pair.secondary().state());
    let primary_host = host(&pair.primary().url);
    assert_eq!(pair.cname().await, primary_host);
    let mut f = pair.function(&[]);

    let r = f.invoke(&failover("a1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let (p1, s1) = (pair.primary().state(), pair.secondary().state());
    for (name, field) in TAGGED {
        assert_eq!(pause(&s1, name, field), "UNPAUSED", "secondary {name}");
        assert_eq!(pause(&p1, name, field), "PAUSED", "primary {name}");
    }
    assert_eq!(pause(&s1, "legacy-backfill", "schedule"), "PAUSED", "a job not tagged dr=active-passive is left alone");
    assert!(matches!(warehouse_state(&s1, "bi").as_str(), "STARTING" | "RUNNING"));
    assert_eq!(warehouse_state(&s1, "adhoc"), "STOPPED", "only the named warehouse");
    assert_eq!(pair.cname().await, "localhost", "the stable name follows the failover");
    // Only the pause field was sent, with the rest of the schedule as it was.
    let sent = changes(pair.secondary());
    assert_eq!(sent.len(), 5, "{sent:#?}");
    let nightly = sent.iter().find(|c| c.contains("quartz_cron_expression\":\"0 0 2 * * ?")).unwrap();
    assert!(nightly.contains("\"pause_status\":\"UNPAUSED\"") && !nightly.contains("tasks"), "{nightly}");

    // The record and the report: every change with what it was before.
    let rec = pair.env.json("executions/failover-a1.json").await;
    let a = &rec["activation"];
    assert_eq!(a["mode"], "forward");
    let list = a["changes"].as_array().unwrap();
    assert_eq!(list.len(), 10, "4 resumed, 1 warehouse, 4 paused, the CNAME: {a:#}");
    assert!(list.iter().all(|c| c["status"] == "done"), "{a:#}");
    let dns = list.iter().find(|c| c["object"] == "dns_record").unwrap();
    assert_eq!((dns["before"].as_str().unwrap(), dns["after"].as_str().unwrap()), (primary_host.as_str(), "localhost"));
    assert!(dns["detail"].as_str().unwrap().contains("INSYNC"), "{dns:#}");
    let report = String::from_utf8(pair.env.object("reports/failover-a1.md").await.unwrap()).unwrap();
    assert!(report.contains("## Activation") && report.contains("| secondary | Job nightly-etl"), "{report}");
    assert!(report.contains("| primary | Warehouse") || report.contains("| secondary | Warehouse bi"), "{report}");
    let pages = pair.env.pages().await;
    assert!(pages.iter().any(|p| p.to_string().contains("activation (forward): 10 of 10 change(s) in effect")), "{pages:#?}");

    // The warehouse comes up; the failback restores both workspaces exactly, from the failover's record.
    std::thread::sleep(Duration::from_millis(400));
    let r = f.invoke(&failback("b1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let rec = pair.env.json("executions/failback-b1.json").await;
    assert_eq!(rec["activation"]["mode"], "reverse");
    assert_eq!(rec["activation"]["reverses"], "failover-a1");
    assert!(rec["activation"]["changes"].as_array().unwrap().iter().all(|c| c["status"] == "done"), "{rec:#}");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(settled(pair.primary().state()), settled(p0), "the primary exactly as it started");
    assert_eq!(settled(pair.secondary().state()), settled(s0), "the secondary exactly as it started");
    assert_eq!(pair.cname().await, primary_host);
}

/// `n` copies of the tagged `nightly-etl` job (ids from 900,000, names `bulk-N`), added to the workspace.
fn add_tagged_jobs(ws: &Workspace, n: u64) {
    let mut state = ws.state();
    let model = job(&state, "nightly-etl").clone();
    let jobs = state["jobs"].as_array_mut().unwrap();
    for i in 0..n {
        let mut j = model.clone();
        j["job_id"] = json!(900_000 + i);
        j["settings"]["name"] = json!(format!("bulk-{i}"));
        jobs.push(j);
    }
    ws.set_state(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_150_ms_a_call_the_former_primary_s_pauses_go_beside_the_target_s_resumes() {
    // 64 tagged jobs a side, every call taking 150 ms. The target's resumes used to go one by one (about 20 s)
    // before the former's pauses, whose 10 s budget had run out by then: every job ran in both workspaces.
    let pair = Pair::start().await;
    for ws in [pair.primary(), pair.secondary()] {
        add_tagged_jobs(ws, 60);
        ws.set_latency(Duration::from_millis(150));
    }
    let mut f = pair.function(&[]);
    let r = f.invoke(&failover("size1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let (p1, s1) = (pair.primary().state(), pair.secondary().state());
    let bulk = |state: &Value, pause: &str| {
        state["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["settings"]["name"].as_str().unwrap().starts_with("bulk-"))
            .all(|j| j["settings"]["schedule"]["pause_status"] == pause)
    };
    assert!(bulk(&s1, "UNPAUSED"), "every tagged job resumed in the secondary");
    assert!(bulk(&p1, "PAUSED"), "every tagged job paused in the primary: none runs in both");
    for (name, field) in TAGGED {
        assert_eq!((pause(&s1, name, field), pause(&p1, name, field)), ("UNPAUSED".into(), "PAUSED".into()), "{name}");
    }
    let rec = pair.env.json("executions/failover-size1.json").await;
    let list = rec["activation"]["changes"].as_array().unwrap();
    assert_eq!(list.len(), 130, "64 resumes, the warehouse, 64 pauses, the CNAME");
    assert!(list.iter().all(|c| c["status"] == "done"), "{:#}", rec["activation"]["manual"]);
    // At most IN_FLIGHT (16) calls at once in a workspace: every call takes at least 150 ms from its arrival, so
    // those that arrived less than 150 ms before another were still unanswered when it arrived.
    for ws in [pair.primary(), pair.secondary()] {
        let calls: Vec<(f64, f64)> =
            ws.requests().iter().filter(|q| q.path.starts_with("/api/2.2/jobs/")).map(|q| (q.at, q.at + 0.15)).collect();
        let most = calls.iter().map(|(a, _)| calls.iter().filter(|(b, e)| b <= a && a < e).count()).max().unwrap();
        assert!(most <= 16, "{} calls in flight at once in {}", most, ws.name);
    }
    for ws in [pair.primary(), pair.secondary()] {
        ws.set_latency(Duration::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_on_jobs_update_is_retried_after_retry_after_and_the_job_ends_resumed() {
    // The official SDKs retry 503 on every idempotent call, POST included, honouring Retry-After
    // (databricks-sdk-go apierr/errors.go IsRetriable; databricks-sdk-py _base_client.py _is_retryable). A full
    // jobs/update with the same settings is idempotent: a 503 must not leave a DR job paused in the target.
    let pair = Pair::start().await;
    pair.secondary().set_faults(&json!([
        {"path_prefix": "/api/2.2/jobs/update", "method": "POST", "status": 503, "retry_after": 1, "times": 1}
    ]));
    let mut f = pair.function(&[]);
    let r = f.invoke(&failover("u1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let s1 = pair.secondary().state();
    for (name, field) in TAGGED {
        assert_eq!(pause(&s1, name, field), "UNPAUSED", "secondary {name}");
    }
    let updates: Vec<_> = pair.secondary().requests().into_iter().filter(|q| q.path == "/api/2.2/jobs/update").collect();
    let refused: Vec<_> = updates.iter().filter(|q| q.status == Some(503)).collect();
    assert_eq!(refused.len(), 1, "{updates:#?}");
    let again = updates.iter().find(|q| q.body == refused[0].body && q.status == Some(200)).expect("the same call again");
    assert!(again.at - refused[0].at >= 1.0, "Retry-After honoured: {} s", again.at - refused[0].at);
    let rec = pair.env.json("executions/failover-u1.json").await;
    let list = rec["activation"]["changes"].as_array().unwrap();
    assert!(list.iter().all(|c| c["status"] == "done"), "{rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_name_the_failover_created_follows_the_failback_to_the_primary() {
    // Exact reversal would delete the record; clients that adopted the name during the failover would lose it,
    // and leaving it would keep them on the secondary after the failback. It follows the failback instead.
    let pair = Pair::start_with_record(false).await;
    let primary_host = host(&pair.primary().url);
    assert_eq!(pair.cname().await, "", "no record before the failover");
    let mut f = pair.function(&[]);
    let r = f.invoke(&failover("n1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!(pair.cname().await, "localhost");
    std::thread::sleep(Duration::from_millis(400));
    let r = f.invoke(&failback("n2")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!(pair.cname().await, primary_host, "the stable name follows the failback");
    let rec = pair.env.json("executions/failback-n2.json").await;
    let list = rec["activation"]["changes"].as_array().unwrap();
    let dns = list.iter().find(|c| c["object"] == "dns_record").unwrap();
    assert_eq!((dns["before"].as_str().unwrap(), dns["after"].as_str().unwrap()), ("localhost", primary_host.as_str()));
    assert_eq!(dns["status"], "done", "{dns:#}");
    assert!(rec["activation"]["manual"].as_array().is_none_or(|m| m.is_empty()), "{rec:#}");
}

/// Runs the built break-glass `dr` with the environment's variables (no terminal, no login name): exit status and
/// stdout parsed as JSON (its `--json` answer), stderr for messages.
fn dr(pair: &Pair, args: &[&str]) -> (Option<i32>, Value, String) {
    let bin = tests::runtime_api::bin_dir().join("dr");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins`", bin.display());
    let out = std::process::Command::new(bin)
        .env_clear()
        .envs(pair.env.function_env())
        .env("DR_DATABRICKS_BACKOFF_MS", "20")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_failover_through_dr_moves_the_stable_name_as_the_function_does() {
    // `dr` used to wire the engine by itself, without Route 53: its failover left the CNAME on the primary and
    // asked for the change by hand, while the Lambda's moved it.
    let pair = Pair::start().await;
    let primary_host = host(&pair.primary().url);
    assert_eq!(pair.cname().await, primary_host);
    let who = ["--requested-by", "oncall@example.com"];
    let (code, r, stderr) = dr(
        &pair,
        &[&["--json", "failover", "--reason", "stack impaired", "--token", "bg1", "--confirm", "secondary"], &who[..]].concat(),
    );
    assert_eq!((code, r["outcome"].as_str()), (Some(0), Some("completed")), "{r:#}\n{stderr}");
    assert_eq!(pair.cname().await, "localhost", "the stable name follows a break-glass failover");
    let rec = pair.env.json("executions/failover-bg1.json").await;
    let a = &rec["activation"];
    assert!(a["manual"].as_array().is_none_or(|m| m.is_empty()), "nothing left to do by hand: {a:#}");
    let list = a["changes"].as_array().unwrap();
    assert_eq!(list.len(), 10, "4 resumed, 1 warehouse, 4 paused, the CNAME, as the function's: {a:#}");
    let dns = list.iter().find(|c| c["object"] == "dns_record").unwrap();
    assert_eq!((dns["before"].as_str().unwrap(), dns["after"].as_str().unwrap()), (primary_host.as_str(), "localhost"));
    assert_eq!(dns["status"], "done", "{dns:#}");
    for (name, field) in TAGGED {
        assert_eq!(pause(&pair.secondary().state(), name, field), "UNPAUSED", "secondary {name}");
    }

    // Its failback, through dr too, reverses the name with the rest.
    std::thread::sleep(Duration::from_millis(400));
    let (code, r, stderr) = dr(
        &pair,
        &[&["--json", "failback", "--reason", "recovered", "--token", "bg2", "--confirm", "primary"], &who[..]].concat(),
    );
    assert_eq!((code, r["outcome"].as_str()), (Some(0), Some("completed")), "{r:#}\n{stderr}");
    assert_eq!(pair.cname().await, primary_host, "the stable name follows the failback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_lists_the_plan_and_changes_nothing() {
    let pair = Pair::start().await;
    let (p0, s0) = (pair.primary().state(), pair.secondary().state());
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "drill", "reason": "Q4", "requested_by": "oncall@example.com"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!((pair.primary().state(), pair.secondary().state()), (p0, s0));
    assert!(changes(pair.primary()).is_empty() && changes(pair.secondary()).is_empty());
    assert_eq!(pair.cname().await, host(&pair.primary().url));
    let id = r["execution_id"].as_str().unwrap();
    // A drill's record is cleaned up with its copy; its report stays.
    let rec = pair.env.json(&format!("reports/{id}.json")).await;
    let a = &rec["activation"];
    assert_eq!(a["drill"], true, "{rec:#}");
    assert_eq!(a["changes"].as_array().unwrap().len(), 10, "{a:#}");
    assert!(a["changes"].as_array().unwrap().iter().all(|c| c["status"] == "planned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_hangs_never_blocks_the_promotion_and_is_paged_as_to_do_by_hand() {
    let pair = Pair::start().await;
    pair.primary().set_faults(&json!([{"path_prefix": "/api/", "mode": "hang"}]));
    let mut f = pair.function(&[]);
    let started = std::time::Instant::now();
    let r = f.invoke(&failover("h1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert!(started.elapsed() < Duration::from_secs(40), "bounded by the former's deadline: {:?}", started.elapsed());
    assert_eq!(pair.env.get("active").await["site"], "secondary");
    let s1 = pair.secondary().state();
    for (name, field) in TAGGED {
        assert_eq!(pause(&s1, name, field), "UNPAUSED", "secondary {name}");
    }
    assert_eq!(pair.cname().await, "localhost");
    let rec = pair.env.json("executions/failover-h1.json").await;
    assert_eq!(rec["state"], "completed");
    let manual = rec["activation"]["manual"].as_array().unwrap();
    assert!(manual.iter().any(|m| m.as_str().unwrap().contains("could not read the primary workspace")), "{rec:#}");
    let pages = pair.env.pages().await;
    assert!(pages.iter().any(|p| p.to_string().contains("do by hand: could not read the primary workspace")), "{pages:#?}");
    let report = String::from_utf8(pair.env.object("reports/failover-h1.md").await.unwrap()).unwrap();
    assert!(report.contains("**Do by hand:**") && report.contains("pause by hand"), "{report}");
    pair.primary().clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_applied_but_answered_late_is_reversed_by_the_failback() {
    // The former primary applies the failover's pauses but answers after the client's timeout: recorded NOT DONE.
    // The failback used to reverse only what was known done, leaving the tagged jobs paused in both workspaces.
    let pair = Pair::start().await;
    let (p0, s0) = (pair.primary().state(), pair.secondary().state());
    pair.primary().set_faults(&json!([{"path_prefix": "/api/2.2/jobs/update", "mode": "late", "delay_ms": 1500}]));
    let mut f = pair.function(&[("DR_DATABRICKS_REQUEST_TIMEOUT_MS", "500")]);
    let r = f.invoke(&failover("late1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let rec = pair.env.json("executions/failover-late1.json").await;
    let primary_changes: Vec<&Value> =
        rec["activation"]["changes"].as_array().unwrap().iter().filter(|c| c["site"] == "primary").collect();
    assert!(
        !primary_changes.is_empty() && primary_changes.iter().all(|c| c["status"] != "done"),
        "{primary_changes:#?}\n{:#?}",
        pair.primary().requests().iter().map(|q| format!("{} {} {:?}", q.method, q.path, q.status)).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(1600));
    // The first pause applied though its answer came too late (the workspace was then taken as not answering and
    // the rest were not sent): that job is now paused in both workspaces until the failback.
    let p1 = pair.primary().state();
    let applied: Vec<&str> = TAGGED.iter().filter(|(n, f)| pause(&p1, n, f) == "PAUSED").map(|(n, _)| *n).collect();
    assert!(!applied.is_empty(), "no late pause applied");
    pair.primary().clear_faults();
    std::thread::sleep(Duration::from_millis(400));
    let r = f.invoke(&failback("late2")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(settled(pair.primary().state()), settled(p0), "the primary's jobs resumed: none left paused in both");
    assert_eq!(settled(pair.secondary().state()), settled(s0), "the secondary exactly as it started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_an_activation_call_resumes_without_a_second_change() {
    // The process is killed while a change's call is held (the server applies it after the kill), then the
    // trigger is delivered again once the lease has expired: the change is found done, never made twice.
    for nth in [1usize, 3, 5] {
        let pair = Pair::start().await;
        // Hold the nth activation call long enough to kill the process meanwhile.
        let (ws, skip) = if nth <= 4 { (pair.secondary(), nth - 1) } else { (pair.primary(), nth - 5) };
        let mut rules = Vec::new();
        if skip > 0 {
            rules.push(json!({"path_prefix": "/api/2.2/jobs/update", "method": "POST", "delay_ms": 1, "times": skip}));
        }
        rules.push(json!({"path_prefix": "/api/2.2/jobs/update", "method": "POST", "delay_ms": 1500, "times": 1}));
        ws.set_faults(&json!(rules));
        let mut f = pair.function(&[("DR_LOCK_LEASE_SECONDS", "5")]);
        let payload = failover("c1");
        let _ = f.invoke_with_timeout(&payload, Duration::from_millis(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let wanted = if nth <= 4 { nth } else { nth - 4 };
        while changes(ws).len() < wanted && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        f.kill();
        std::thread::sleep(Duration::from_millis(1600));
        ws.clear_faults();
        std::thread::sleep(Duration::from_secs(6));
        let mut f = pair.function(&[("DR_LOCK_LEASE_SECONDS", "5")]);
        let r = loop {
            match f.invoke(&payload) {
                Invocation::Response(r) if r["outcome"] == "in_progress" => std::thread::sleep(Duration::from_secs(1)),
                other => break other.response(),
            }
        };
        assert!(matches!(r["outcome"].as_str(), Some("completed" | "already_completed")), "nth={nth}: {r:#}\n{}", f.logs());
        let mut all = changes(pair.secondary());
        all.extend(changes(pair.primary()));
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(all.len(), 9, "nth={nth}: each change once: {all:#?}");
        assert_eq!(unique.len(), 9, "nth={nth}: {all:#?}");
        let rec = pair.env.json("executions/failover-c1.json").await;
        let statuses: Vec<&str> =
            rec["activation"]["changes"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
        // The held call is found done; so may be others of its wave whose statuses were not saved before the kill
        // (the changes go side by side, saved at most every 250 ms): found done, never made twice.
        assert!(statuses.contains(&"already_done"), "nth={nth}: the held call found done: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == "done" || *s == "already_done"), "nth={nth}: {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_workspace_and_check_pages_a_job_scheduled_in_both() {
    let pair = Pair::start().await;
    let mut f = pair.function(&[]);
    let s = f.invoke(&json!({"command": "status"})).response();
    let view = &s["activation"];
    assert_eq!(view["active"], "primary", "{s:#}");
    assert_eq!(view["workspaces"]["primary"]["summary"], "4 of 4 selected job(s) scheduled", "{view:#}");
    assert_eq!(view["workspaces"]["secondary"]["summary"], "0 of 4 selected job(s) scheduled", "{view:#}");
    assert_eq!(view["workspaces"]["primary"]["warehouses"][0]["state"], "RUNNING", "{view:#}");
    assert_eq!(view["out_of_step"], json!([]), "{view:#}");
    let r = f.invoke(&json!({"command": "check"})).response();
    assert!(!r["findings"].to_string().contains("activation-"), "in step: {r:#}");
    let _ = pair.env.pages().await;

    // Someone resumes nightly-etl in the standby by hand: it now runs twice.
    let mut state = pair.secondary().state();
    let job = state["jobs"].as_array_mut().unwrap().iter_mut().find(|j| j["settings"]["name"] == "nightly-etl").unwrap();
    job["settings"]["schedule"]["pause_status"] = json!("UNPAUSED");
    pair.secondary().set_state(&state);
    let r = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(r["ready"], false, "{r:#}");
    let finding =
        r["findings"].as_array().unwrap().iter().find(|f| f["id"] == "activation-duplicate-nightly-etl").expect("the finding");
    assert_eq!(finding["severity"], "critical");
    assert!(finding["what"].as_str().unwrap().contains("runs twice"), "{finding}");
    assert!(finding["action"].as_str().unwrap().contains("secondary"), "{finding}");
    let pages = pair.env.pages().await;
    assert!(pages.iter().any(|p| p.to_string().contains("activation-duplicate-nightly-etl")), "paged: {pages:#?}");
    let s = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(s["activation"]["out_of_step"][0]["severity"], "critical", "{:#}", s["activation"]);

    // A workspace that does not answer: the view says so, status still answers.
    pair.secondary().set_faults(&json!([{"path_prefix": "", "mode": "hang"}]));
    let mut f = pair.function(&[("DR_DATABRICKS_REQUEST_TIMEOUT_MS", "500")]);
    let s = f.invoke(&json!({"command": "status"})).response();
    pair.secondary().clear_faults();
    assert_eq!(s["outcome"], "noop", "{s:#}");
    assert!(s["activation"]["workspaces"]["secondary"]["error"].is_string(), "{:#}", s["activation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_principal_can_see_the_tagged_jobs_or_names_the_gap() {
    // Workspace admins (group "admins" in scim/v2/Me) see every job; anyone else only the jobs it has a
    // permission on (https://docs.databricks.com/jobs/privileges.html): jobs/list answers only those.
    let pair = Pair::start().await;
    let mut f = pair.function(&[]);
    let r = f.invoke(&json!({"command": "check"})).response();
    assert!(!r["findings"].to_string().contains("activation-access"), "admins by default: {r:#}");

    // The secondary's token acts as a service principal that is not an admin and may manage two tagged jobs.
    let mut state = pair.secondary().state();
    let id = |name: &str| job(&state, name)["job_id"].as_u64().unwrap();
    let grant = |id: u64| {
        (
            format!("jobs/{id}"),
            json!({"object_id": format!("/jobs/{id}"), "object_type": "job", "access_control_list": [
            {"service_principal_name": "dr-sp@example.com", "all_permissions": [{"permission_level": "CAN_MANAGE"}]}]}),
        )
    };
    let (a, b) = (grant(id("nightly-etl")), grant(id("stream-ingest")));
    state["permissions"][&a.0] = a.1;
    state["permissions"][&b.0] = b.1;
    state["principals"] = json!({ pair.secondary().pat(): {"user_name": "dr-sp@example.com", "admin": false} });
    pair.secondary().set_state(&state);

    let r = f.invoke(&json!({"command": "check"})).response();
    let gap = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "activation-access-secondary")
        .unwrap_or_else(|| panic!("the gap: {r:#}"));
    let what = gap["what"].as_str().unwrap();
    assert!(what.contains("dr-sp@example.com (not a workspace admin) cannot see 2 job(s) tagged dr=active-passive"), "{what}");
    assert!(what.contains("hourly-report") && what.contains("landing-arrival"), "{what}");
    assert!(!what.contains("nightly-etl"), "{what}");
    assert!(gap["action"].as_str().unwrap().contains("admins group of the secondary workspace"), "{gap}");
    assert!(!r["findings"].to_string().contains("activation-access-primary"), "the primary's principal is an admin: {r:#}");
    let s = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(s["activation"]["workspaces"]["secondary"]["principal"], json!({"name": "dr-sp@example.com", "admin": false}));

    // Made an admin: proved, no finding.
    state["principals"] = json!({ pair.secondary().pat(): {"user_name": "dr-sp@example.com", "admin": true} });
    pair.secondary().set_state(&state);
    let r = f.invoke(&json!({"command": "check"})).response();
    assert!(!r["findings"].to_string().contains("activation-access"), "{r:#}");
}
