//! The activation step over in-memory ports and a stateful fake workspace API.

use super::*;
use crate::record::{ExecutionRecord, Recorder, Step};
use crate::response::Outcome;
use crate::rules::activation::{Change, ChangeStatus, ObjectType};
use crate::rules::decision::{Action, Decision, Initiator};
use crate::runner::{Run, StepEnd};
use crate::{Attempt, EngineSettings, Held, MoveRequest};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports::Channel;
use dr_ports::Idempotency;
use dr_ports::documents;
use dr_ports::lock;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use dr_ports::{WorkspaceConnector, dns::MemoryDns};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use time::macros::datetime;
use tokio::sync::Notify;

const TAGGED: &str = r#""activation":{"job_tag":"dr=active-passive","warehouses":["bi"]}"#;

/// A workspace: jobs and warehouses as JSON, every POST recorded; `hang` never answers; `after_post` runs
/// after each POST is applied (to inject a crash between a call and the record's update); every call takes
/// `latency`; with `gate`, its jobs listing says it arrived (`.0`) and waits to be let through (`.1`).
#[derive(Default)]
struct FakeWs {
    state: Mutex<Value>,
    posts: Mutex<Vec<(String, Value)>>,
    hang: bool,
    after_post: Mutex<Option<Box<dyn FnMut() + Send>>>,
    latency: Duration,
    gate: Option<(Arc<Notify>, Arc<Notify>)>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl FakeWs {
    fn new(jobs: Value, warehouses: Value) -> Arc<FakeWs> {
        Arc::new(FakeWs { state: Mutex::new(json!({"jobs": jobs, "warehouses": warehouses})), ..FakeWs::default() })
    }

    fn state(&self) -> Value {
        self.state.lock().unwrap().clone()
    }

    fn answer_get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        let state = self.state.lock().unwrap();
        let q = |k: &str| query.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        match path {
            "/api/2.2/jobs/list" => Ok(json!({"jobs": state["jobs"]})),
            "/api/2.2/jobs/get" => state["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["job_id"].as_u64().map(|n| n.to_string()) == Some(q("job_id")))
                .cloned()
                .ok_or_else(|| ApiError::BadAnswer { path: path.into(), problem: "no job".into() }),
            "/api/2.0/sql/warehouses" => Ok(json!({"warehouses": state["warehouses"]})),
            p => state["warehouses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| p.ends_with(w["id"].as_str().unwrap()))
                .cloned()
                .ok_or_else(|| ApiError::BadAnswer { path: path.into(), problem: "unknown".into() }),
        }
    }

    fn answer_post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        {
            let mut state = self.state.lock().unwrap();
            if path == "/api/2.2/jobs/update" {
                let job = state["jobs"].as_array_mut().unwrap().iter_mut().find(|j| j["job_id"] == body["job_id"]).unwrap();
                for (k, v) in body["new_settings"].as_object().unwrap() {
                    job["settings"][k] = v.clone();
                }
            } else {
                let w = state["warehouses"].as_array_mut().unwrap().iter_mut().find(|w| path.contains(w["id"].as_str().unwrap()));
                let w = w.unwrap();
                w["state"] = json!(if path.ends_with("/start") { "RUNNING" } else { "STOPPED" });
            }
            self.posts.lock().unwrap().push((path.to_owned(), body.clone()));
        }
        if let Some(f) = self.after_post.lock().unwrap().as_mut() {
            f();
        }
        Ok(json!({}))
    }
}

impl FakeWs {
    /// Waits as a call does: hangs, or takes `latency`, counting the calls in flight meanwhile.
    async fn wait(&self, path: &str) {
        if self.hang {
            std::future::pending::<()>().await;
        }
        if let Some((arrived, release)) = &self.gate
            && path == "/api/2.2/jobs/list"
        {
            arrived.notify_one();
            release.notified().await;
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WorkspaceApi for FakeWs {
    fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            self.wait(path).await;
            self.answer_get(path, query)
        })
    }
    fn post<'a>(&'a self, path: &'a str, body: &'a Value, idempotency: Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            assert_eq!(idempotency, Idempotency::Idempotent, "{path}: every activation call is idempotent");
            self.wait(path).await;
            self.answer_post(path, body)
        })
    }
}

struct Connector(BTreeMap<SiteName, Arc<FakeWs>>);

impl WorkspaceConnector for Connector {
    fn connect(&self, site: SiteName, _config: &domain::site::SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        Ok(self.0[&site].clone())
    }
}

fn job(id: u64, name: &str, tag: &str, field: &str, pause: &str) -> Value {
    json!({"job_id": id, "settings": {"name": name, "tags": {"dr": tag}, field: {"pause_status": pause, "extra": 1}}})
}

fn warehouse(id: &str, name: &str, state: &str) -> Value {
    json!({"id": id, "name": name, "state": state})
}

type TestEngine = Engine<MemParameters, &'static MemBucket, MemNotifier, FixedClock>;

struct Env {
    engine: TestEngine,
    bucket: &'static MemBucket,
    primary: Arc<FakeWs>,
    secondary: Arc<FakeWs>,
    dns: Arc<MemoryDns>,
}

fn env(hang_primary: bool) -> Env {
    let (mut primary, secondary) = pair();
    if hang_primary {
        Arc::get_mut(&mut primary).unwrap().hang = true;
    }
    env_with(primary, secondary)
}

/// The two workspaces of most tests: two tagged jobs and one untagged in each, the `bi` warehouse.
fn pair() -> (Arc<FakeWs>, Arc<FakeWs>) {
    let primary = FakeWs::new(
        json!([
            job(1, "nightly", "active-passive", "schedule", "UNPAUSED"),
            job(2, "stream", "active-passive", "continuous", "UNPAUSED"),
            job(3, "other", "none", "schedule", "UNPAUSED")
        ]),
        json!([warehouse("pw1", "bi", "RUNNING")]),
    );
    let secondary = FakeWs::new(
        json!([
            job(11, "nightly", "active-passive", "schedule", "PAUSED"),
            job(12, "stream", "active-passive", "continuous", "PAUSED"),
            job(13, "other", "none", "schedule", "PAUSED")
        ]),
        json!([warehouse("sw1", "bi", "STOPPED"), warehouse("sw2", "adhoc", "STOPPED")]),
    );
    (primary, secondary)
}

fn env_with(primary: Arc<FakeWs>, secondary: Arc<FakeWs>) -> Env {
    let params = MemParameters::default();
    let p = format!(r#"{{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1",{TAGGED}}}"#);
    let s = format!(r#"{{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2",{TAGGED}}}"#);
    params.seed("/dr/p/sites/primary", &p, "String");
    params.seed("/dr/p/sites/secondary", &s, "String");
    let mut active: Value = serde_json::from_str(&p).unwrap();
    active["site"] = json!("primary");
    params.seed("/dr/p/active", &active.to_string(), "String");
    params.seed("/dr/p/policy", r#"{"mode":"auto","failover_alarms":["wh"]}"#, "String");
    params.seed("/dr/p/redirection", r#"{"hosted_zone_id":"Z1","record_name":"dbx.example.internal","ttl":30}"#, "String");
    let dns = Arc::new(MemoryDns::default());
    dns.records.lock().unwrap().insert(("Z1".into(), "dbx.example.internal".into()), "p.cloud.databricks.com".into());
    let bucket: &'static MemBucket = Box::leak(Box::default());
    let connector =
        Connector([(SiteName::Primary, primary.clone()), (SiteName::Secondary, secondary.clone())].into_iter().collect());
    let engine = Engine {
        params,
        bucket,
        notifier: MemNotifier::default(),
        clock: FixedClock::at(datetime!(2026-11-25 12:00 UTC)),
        settings: EngineSettings::example(domain::names::SsmPrefix::parse("/dr/p").unwrap()),
        sources: Vec::new(),
        workspaces: Some(Arc::new(connector)),
        dns: Some(dns.clone()),
    };
    Env { engine, bucket, primary, secondary, dns }
}

fn request(id: &str, target: SiteName) -> MoveRequest {
    MoveRequest {
        execution_id: id.into(),
        initiator: Initiator::Human { requested_by: "oncall".into() },
        target,
        reason: "test".into(),
        trigger: json!({}),
    }
}

fn record_of(e: &Env, id: &str) -> ExecutionRecord {
    serde_json::from_str(&e.bucket.text(&format!("executions/{id}.json")).unwrap()).unwrap()
}

fn pause(ws: &FakeWs, id: u64, field: &str) -> String {
    let s = ws.state();
    let j = s["jobs"].as_array().unwrap().iter().find(|j| j["job_id"] == id).unwrap().clone();
    j["settings"][field]["pause_status"].as_str().unwrap().to_owned()
}

fn cname(e: &Env) -> String {
    e.dns.records.lock().unwrap()[&("Z1".to_owned(), "dbx.example.internal".to_owned())].clone()
}

#[tokio::test]
async fn a_failover_activates_the_target_and_a_failback_restores_both_workspaces_exactly() {
    let e = env(false);
    let (p0, s0) = (e.primary.state(), e.secondary.state());
    let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!(
        (pause(&e.secondary, 11, "schedule"), pause(&e.secondary, 12, "continuous")),
        ("UNPAUSED".into(), "UNPAUSED".into())
    );
    assert_eq!(pause(&e.secondary, 13, "schedule"), "PAUSED", "an untagged job is left alone");
    assert_eq!((pause(&e.primary, 1, "schedule"), pause(&e.primary, 2, "continuous")), ("PAUSED".into(), "PAUSED".into()));
    assert_eq!(pause(&e.primary, 3, "schedule"), "UNPAUSED");
    assert_eq!(e.secondary.state()["warehouses"][0]["state"], "RUNNING");
    assert_eq!(e.secondary.state()["warehouses"][1]["state"], "STOPPED", "only the named warehouse");
    assert_eq!(cname(&e), "s.cloud.databricks.com");
    // Only the pause field changes, the rest of the schedule is sent back as it was.
    let posts = e.secondary.posts.lock().unwrap().clone();
    assert_eq!(posts[0].1, json!({"job_id": 11, "new_settings": {"schedule": {"pause_status": "UNPAUSED", "extra": 1}}}));
    let rec = record_of(&e, "fo");
    let a = rec.activation.as_ref().unwrap();
    assert_eq!(a.mode, "forward");
    assert_eq!(a.changes.len(), 6, "{a:#?}");
    assert!(a.changes.iter().all(|c| c.status == ChangeStatus::Done), "{a:#?}");
    assert!(rec.done(Step::Activate));
    let report = e.bucket.text("reports/fo.md").unwrap();
    assert!(
        report.contains("## Activation")
            && report.contains("| secondary | Job nightly (11) | schedule | PAUSED | UNPAUSED | Done |"),
        "{report}"
    );
    let ok = e.engine.notifier.on(Channel::Paging).into_iter().find(|m| m.body.contains("completed and verified")).unwrap();
    assert!(ok.body.contains("activation (forward): 6 of 6 change(s) in effect"), "{}", ok.body);

    let r = e.engine.run(request("fb", SiteName::Primary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    let rec = record_of(&e, "fb");
    let a = rec.activation.as_ref().unwrap();
    assert_eq!((a.mode.as_str(), a.reverses.as_deref()), ("reverse", Some("fo")));
    assert!(a.changes.iter().all(|c| c.status == ChangeStatus::Done), "{a:#?}");
    assert_eq!(e.primary.state(), p0, "the primary exactly as it started");
    assert_eq!(e.secondary.state(), s0, "the secondary exactly as it started");
    assert_eq!(cname(&e), "p.cloud.databricks.com");
}

#[tokio::test]
async fn a_dns_name_the_failover_created_follows_the_failback_to_the_primary() {
    // The record did not exist before: the failover creates it, and the failback must not leave it naming
    // the secondary (clients that adopted the name would stay on the workspace that is no longer active).
    let e = env(false);
    e.dns.records.lock().unwrap().clear();
    let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!(cname(&e), "s.cloud.databricks.com");
    let r = e.engine.run(request("fb", SiteName::Primary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!(cname(&e), "p.cloud.databricks.com");
    let a = record_of(&e, "fb").activation.unwrap();
    let dns: Vec<&Change> = a.changes.iter().filter(|c| c.object == ObjectType::DnsRecord).collect();
    assert_eq!(dns.len(), 1, "{a:#?}");
    assert_eq!((dns[0].before.as_str(), dns[0].after.as_str()), ("s.cloud.databricks.com", "p.cloud.databricks.com"));
    assert_eq!(dns[0].status, ChangeStatus::Done);
    assert!(a.manual.is_empty(), "{:?}", a.manual);
}

#[tokio::test]
async fn a_crash_after_each_call_resumes_without_a_second_change() {
    // Five workspace calls (two resumes, one start, two pauses), then the DNS change.
    for k in 1..=5 {
        let e = env(false);
        let bucket = e.bucket;
        let calls = Arc::new(Mutex::new(0usize));
        for ws in [&e.primary, &e.secondary] {
            let calls = calls.clone();
            *ws.after_post.lock().unwrap() = Some(Box::new(move || {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if *n == k {
                    // The call landed; the record's update (and everything after) fails: the attempt stops.
                    bucket.failing_puts.lock().unwrap().push("executions/".into());
                }
            }));
        }
        let first = e.engine.run(request("fo", SiteName::Secondary)).await;
        assert!(first.is_err(), "k={k}: the attempt stops after its call");
        bucket.failing_puts.lock().unwrap().clear();
        let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
        assert!(matches!(r.outcome, Outcome::Completed | Outcome::AlreadyCompleted), "k={k}: {}", r.message);
        let posts: Vec<String> = [&e.primary, &e.secondary]
            .iter()
            .flat_map(|w| w.posts.lock().unwrap().iter().map(|p| format!("{}{}", p.0, p.1["job_id"])).collect::<Vec<_>>())
            .collect();
        let mut unique = posts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(posts.len(), 5, "k={k}: every workspace change made once: {posts:?}");
        assert_eq!(unique.len(), 5, "k={k}: {posts:?}");
        assert_eq!(e.dns.upserts.lock().unwrap().len(), 1, "k={k}: one DNS change");
        let a = record_of(&e, "fo").activation.unwrap();
        assert!(a.changes.iter().all(|c| c.status.in_effect()), "k={k}: {a:#?}");
        // The k-th call's status never reached the record (nor did those of its wave that landed after the save
        // failed, the calls going side by side): found done on resume, never made twice.
        assert!(a.changes.iter().any(|c| c.status == ChangeStatus::AlreadyDone), "k={k}: {a:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_former_workspace_that_hangs_never_blocks_the_promotion_and_is_paged_as_to_do_by_hand() {
    let e = env(true);
    let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!(pause(&e.secondary, 11, "schedule"), "UNPAUSED");
    assert_eq!(e.secondary.state()["warehouses"][0]["state"], "RUNNING");
    let a = record_of(&e, "fo").activation.unwrap();
    let hand = a.by_hand();
    assert_eq!(hand.len(), 1, "{hand:?}");
    assert!(hand[0].contains("could not read the primary workspace") && hand[0].contains("nightly, stream"), "{hand:?}");
    let ok = e.engine.notifier.on(Channel::Paging).into_iter().find(|m| m.body.contains("completed and verified")).unwrap();
    assert!(ok.body.contains("do by hand: could not read the primary workspace"), "{}", ok.body);
    assert!(e.bucket.text("reports/fo.md").unwrap().contains("**Do by hand:**"));
}

#[tokio::test]
async fn a_drill_lists_the_plan_and_changes_nothing() {
    let mut e = env(false);
    e.engine.settings.drill = true;
    let (p0, s0) = (e.primary.state(), e.secondary.state());
    let r = e.engine.run(request("drill", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!((e.primary.state(), e.secondary.state()), (p0, s0));
    assert_eq!(cname(&e), "p.cloud.databricks.com");
    let a = record_of(&e, "drill").activation.unwrap();
    assert!(a.drill && a.changes.len() == 6 && a.changes.iter().all(|c| c.status == ChangeStatus::Planned), "{a:#?}");
    assert!(a.summary().starts_with("activation (drill, nothing changed): would make 6 change(s)"), "{}", a.summary());
}

#[tokio::test]
async fn an_execution_whose_promotion_was_replaced_never_activates() {
    let e = env(false);
    let bucket = e.bucket;
    *e.secondary.after_post.lock().unwrap() =
        Some(Box::new(move || bucket.failing_puts.lock().unwrap().push("executions/".into())));
    assert!(e.engine.run(request("fo", SiteName::Secondary)).await.is_err(), "stopped after its first wave");
    bucket.failing_puts.lock().unwrap().clear();
    let calls = |e: &Env| {
        (e.secondary.posts.lock().unwrap().len(), e.primary.posts.lock().unwrap().len(), e.dns.upserts.lock().unwrap().len())
    };
    let made = calls(&e);
    // Meanwhile on-call put the primary back by hand.
    let back =
        r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","execution_id":"by-hand"}"#;
    e.engine.params.put("/dr/p/active", back, true).await.unwrap();
    let _ = e.engine.run(request("fo", SiteName::Secondary)).await;
    assert_eq!(calls(&e), made, "no further change by a superseded execution");
}

/// `n` jobs tagged `dr=active-passive`, ids from `first`, each one's schedule at `pause`.
fn many_jobs(first: u64, n: u64, pause: &str) -> Value {
    Value::Array((first..first + n).map(|id| job(id, &format!("job-{id}"), "active-passive", "schedule", pause)).collect())
}

fn slow(jobs: Value, warehouses: Value, latency: Duration) -> Arc<FakeWs> {
    let mut ws = FakeWs::new(jobs, warehouses);
    Arc::get_mut(&mut ws).unwrap().latency = latency;
    ws
}

fn all_at(ws: &FakeWs, pause: &str) -> bool {
    ws.state()["jobs"].as_array().unwrap().iter().all(|j| j["settings"]["schedule"]["pause_status"] == pause)
}

#[tokio::test(start_paused = true)]
async fn a_thousand_jobs_a_side_at_150_ms_a_call_are_all_resumed_and_all_paused_side_by_side() {
    // The target's resumes used to spend the activation's budget one by one before the former's pauses began,
    // under a budget that had run out by then: at real latency every job ran in both workspaces.
    let latency = Duration::from_millis(150);
    let primary = slow(many_jobs(1, 1000, "UNPAUSED"), json!([]), latency);
    let secondary = slow(many_jobs(5001, 1000, "PAUSED"), json!([warehouse("sw1", "bi", "STOPPED")]), latency);
    let e = env_with(primary, secondary);
    let started = Instant::now();
    let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    let a = record_of(&e, "fo").activation.unwrap();
    assert_eq!(a.changes.len(), 2002, "1,000 resumes, the warehouse, 1,000 pauses, the CNAME");
    assert!(a.by_hand().is_empty(), "{:?}", a.by_hand().iter().take(3).collect::<Vec<_>>());
    assert!(a.changes.iter().all(|c| c.status == ChangeStatus::Done));
    assert!(all_at(&e.secondary, "UNPAUSED") && all_at(&e.primary, "PAUSED"), "no job runs twice, none nowhere");
    for ws in [&e.primary, &e.secondary] {
        assert!(ws.most_in_flight.load(Ordering::SeqCst) <= IN_FLIGHT, "bounded: {}", ws.most_in_flight.load(Ordering::SeqCst));
    }
    // The paused clock's time, not a measurement: both sides at once, each well inside its budget.
    assert!(started.elapsed() < TARGET_DEADLINE.min(FORMER_DEADLINE), "{:?}", started.elapsed());
}

/// The two default workspaces, the secondary's jobs listing held until the test lets it through.
fn held_listing() -> (Env, Arc<Notify>, Arc<Notify>) {
    let (primary, mut secondary) = pair();
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    Arc::get_mut(&mut secondary).unwrap().gate = Some((arrived.clone(), release.clone()));
    (env_with(primary, secondary), arrived, release)
}

fn no_call_made(e: &Env) -> bool {
    e.primary.posts.lock().unwrap().is_empty()
        && e.secondary.posts.lock().unwrap().is_empty()
        && e.dns.upserts.lock().unwrap().is_empty()
}

#[tokio::test]
async fn a_run_whose_clock_is_hours_behind_the_store_makes_no_call_once_a_failback_took_the_lock_over() {
    // A break-glass `dr` whose clock is 3 h behind S3's: the lease it wrote was past for everyone else at once,
    // and a failback took the lock over while it listed the workspaces. By its own clock its lease had most of its
    // time left, so it used to resume and pause jobs (and move the CNAME) under the failback.
    let (e, arrived, release) = held_listing();
    let store_now = datetime!(2026-11-25 15:00 UTC);
    e.bucket.set_store_time(store_now);
    let failback = async {
        arrived.notified().await;
        // The lock is taken with the store's expiry now (`lock::acquire`), so nobody takes it over early; the
        // takeover stands for a lease that passed while the laptop slept, the fence's own case.
        let (doc, etag) = lock::read(e.bucket, lock::FAILOVER_LOCK_KEY).await.unwrap().unwrap();
        let theirs = lock::LockDoc {
            execution_id: "failback-x".into(),
            attempt_id: "lambda-1".into(),
            lease_expires_at: rfc3339(store_now + time::Duration::minutes(2)),
            ..doc
        };
        lock::update(e.bucket, lock::FAILOVER_LOCK_KEY, &theirs, &etag).await.unwrap();
        release.notify_one();
    };
    let (r, ()) = tokio::join!(e.engine.run(request("fo", SiteName::Secondary)), failback);
    assert!(r.is_err(), "the attempt stops: {r:?}");
    assert!(no_call_made(&e), "no call after the takeover");
    let (doc, _) = lock::read(e.bucket, lock::FAILOVER_LOCK_KEY).await.unwrap().unwrap();
    assert_eq!(doc.execution_id, "failback-x", "the lock left to the failback");
}

#[tokio::test]
async fn the_lease_renewed_before_each_wave_ends_at_the_store_s_time_plus_the_lease_whatever_the_local_clock() {
    // A clock 3 h ahead of S3's used to write a lease nobody else would see pass for 3 h.
    let e = env(false);
    let store_now = datetime!(2026-11-25 09:00 UTC);
    e.bucket.set_store_time(store_now);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (bucket, leases) = (e.bucket, seen.clone());
    *e.secondary.after_post.lock().unwrap() = Some(Box::new(move || {
        let doc: lock::LockDoc = serde_json::from_str(&bucket.text(lock::FAILOVER_LOCK_KEY).unwrap()).unwrap();
        leases.lock().unwrap().push(doc.lease_expires_at);
    }));
    let r = e.engine.run(request("fo", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    let seen = seen.lock().unwrap().clone();
    let wanted = store_now + e.engine.settings.lock_lease;
    let near = |l: &String| (domain::primitives::parse_rfc3339(l).unwrap() - wanted).abs() < time::Duration::seconds(1);
    assert!(!seen.is_empty() && seen.iter().all(near), "{seen:?}, wanted {wanted}");
}

#[tokio::test]
async fn an_execution_whose_promotion_is_replaced_while_it_plans_makes_no_call() {
    // `active` was read once, at the step's start: a promotion of another execution landing while the workspaces
    // were listed did not stop the calls.
    let (e, arrived, release) = held_listing();
    let by_hand =
        r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","execution_id":"by-hand"}"#;
    let replaced = async {
        arrived.notified().await;
        e.engine.params.put("/dr/p/active", by_hand, true).await.unwrap();
        release.notify_one();
    };
    let (r, ()) = tokio::join!(e.engine.run(request("fo", SiteName::Secondary)), replaced);
    r.unwrap();
    assert!(no_call_made(&e));
    let a = record_of(&e, "fo").activation.unwrap();
    assert!(
        a.changes.iter().all(|c| c.status == ChangeStatus::Skipped
            && c.detail.as_deref().is_some_and(|d| d.contains("no longer names this execution"))),
        "{a:#?}"
    );
    assert!(a.by_hand().is_empty(), "nothing to do by hand: the later execution owns the workspaces");
}

/// A workspace whose jobs listing always answers the same page and token.
struct RepeatingPages;

impl WorkspaceApi for RepeatingPages {
    fn get<'a>(&'a self, _path: &'a str, _query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async { Ok(json!({"jobs": [job(1, "etl", "active-passive", "schedule", "PAUSED")], "next_page_token": "t"})) })
    }

    fn post<'a>(&'a self, path: &'a str, _body: &'a Value, _: Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { Err(ApiError::BadAnswer { path: path.into(), problem: "no posts here".into() }) })
    }
}

#[tokio::test]
async fn a_listing_that_repeats_its_page_token_is_an_error_not_a_partial_list_of_jobs() {
    // Acting on a truncated list would leave a job paused (or scheduled twice) without a word.
    let err = jobs_of(&RepeatingPages).await.unwrap_err();
    assert!(matches!(&err, ApiError::BadAnswer { problem, .. } if problem.contains("same next_page_token")), "{err:?}");
}

#[tokio::test]
async fn a_site_document_broken_since_the_decision_stops_the_activation_instead_of_skipping_it() {
    // A failover promoted, then stopped; meanwhile both site documents were broken (mid-incident). The attempt that
    // resumes it read no `activation` in them. Before, it took that for "nothing configured" and completed: every
    // tagged job stayed running only in the workspace that is now passive (simulation seed 51711). It stops at the
    // step instead, naming the document, and the redelivery after the repair activates.
    let e = env(false);
    e.engine.params.put("/dr/p/sites/secondary", r#"{"region":"us-east-1"}"#, true).await.unwrap();
    e.engine.params.put("/dr/p/sites/primary", "not json {", true).await.unwrap();
    let mut tree = e.engine.read_tree().await.unwrap();
    tree.retain(|p| !p.name.ends_with("/redirection"));
    let docs = documents::from_tree(&tree, &e.engine.settings.prefix);
    let attempt = Attempt { id: "a".into(), tree, docs, prefetched: None };
    let decision = Decision { action: Action::Execute, target: SiteName::Secondary, reasons: vec![], overrides: vec![] };
    let now = e.engine.clock.now();
    let record = e.engine.new_record(&request("fo", SiteName::Secondary), decision, &attempt, now);
    let doc = LockDoc {
        execution_id: "fo".into(),
        attempt_id: "a".into(),
        state: LockState::Running,
        acquired_at: rfc3339(now),
        lease_expires_at: rfc3339(now + time::Duration::minutes(2)),
        holder: "t".into(),
    };
    let held = Held { doc, etag: String::new(), store: None };
    let mut run = Run { rec: Recorder::new(record), attempt, held, version: None };
    let end = e.engine.activate_step(&mut run).await;
    let StepEnd::Stop(source) = end else { panic!("the step must stop, not pass as unconfigured") };
    assert!(source.to_string().contains("sites/secondary") || source.to_string().contains("sites/primary"), "{source}");
    assert!(e.primary.posts.lock().unwrap().is_empty() && e.secondary.posts.lock().unwrap().is_empty(), "no call made");
}

/// The tagged jobs' pause fields of a workspace, by job id.
fn tagged_pauses(ws: &FakeWs) -> Vec<(u64, String)> {
    let s = ws.state();
    let jobs = s["jobs"].as_array().unwrap().iter().filter(|j| j["settings"]["tags"]["dr"] == "active-passive");
    jobs.map(|j| {
        let field = ["schedule", "continuous"].into_iter().find(|f| j["settings"][*f].is_object()).unwrap();
        (j["job_id"].as_u64().unwrap(), j["settings"][field]["pause_status"].as_str().unwrap().to_owned())
    })
    .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failback_after_a_superseded_failback_restores_the_jobs_the_first_failover_moved() {
    // Simulation seed 35600: a failover moves every tagged job; the failback that reverses it is killed after
    // its first calls and is then superseded by a second failover, which plans from the workspaces' states and
    // so moves only what the killed failback had restored. The next failback reversed only the second
    // failover's plan: the jobs the first failover moved stayed paused in the primary and resumed in the
    // secondary.
    let call = Duration::from_millis(100);
    let primary = slow(many_jobs(1, 4, "UNPAUSED"), json!([]), call);
    let secondary = slow(many_jobs(11, 4, "PAUSED"), json!([]), call);
    let mut e = env_with(primary, secondary);
    // One call a wave: the failback is killed after a few of its changes, not after a whole side's.
    e.engine.settings.activation_in_flight = 1;
    let (p0, s0) = (tagged_pauses(&e.primary), tagged_pauses(&e.secondary));
    let r = e.engine.run(request("fo1", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert!(tagged_pauses(&e.primary).iter().all(|(_, p)| p == "PAUSED"));

    // The failback is killed (its invocation dropped, as Lambda's timeout does) after a few of its changes.
    let killed = tokio::time::timeout(call * 5, e.engine.run(request("fb1", SiteName::Primary))).await;
    assert!(killed.is_err(), "the failback is killed mid-activation: {killed:?}");
    let restored = tagged_pauses(&e.primary).iter().filter(|(_, p)| p == "UNPAUSED").count();
    assert!(
        (1..4).contains(&restored) && !all_at(&e.secondary, "UNPAUSED"),
        "the killed failback restored some jobs, not all: {restored}"
    );

    // Its lease runs out; a second failover supersedes it.
    e.engine.clock.advance(time::Duration::minutes(10));
    let r = e.engine.run(request("fo2", SiteName::Secondary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    let fo2 = record_of(&e, "fo2").activation.unwrap();
    assert_eq!(fo2.mode, "forward", "{fo2:#?}");
    assert!(fo2.changes.iter().filter(|c| c.site.is_some()).count() < 8, "it moved only what was back: {fo2:#?}");

    // The next failback restores every tagged job, those the first failover moved too.
    let r = e.engine.run(request("fb2", SiteName::Primary)).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert_eq!(tagged_pauses(&e.primary), p0, "every tagged job resumed in the primary");
    assert_eq!(tagged_pauses(&e.secondary), s0, "every tagged job paused in the secondary");
    assert_eq!(cname(&e), "p.cloud.databricks.com");
    let fb2 = record_of(&e, "fb2").activation.unwrap();
    assert_eq!((fb2.mode.as_str(), fb2.reverses.as_deref()), ("reverse", Some("fo2")));
    assert!(fb2.changes.iter().all(|c| c.status.in_effect()), "{fb2:#?}");
}
