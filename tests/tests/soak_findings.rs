//! What the soak (tests/src/soak.rs) found, each cut down to one deterministic reproducer through the built
//! binaries and the fault proxy. Each failed on the engine before its fix and now guards it
//! (`cargo test -p tests --test soak_findings`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::dr_env::DrEnv;
use tests::fault_proxy::{Fault, FaultProxy, Rule};
use tests::moto;
use tests::runtime_api::{Function, Invocation};

const ALARM: &str = "databricks-prod-workspace-unhealthy";

fn fixture(name: &str) -> Value {
    tests::fixture("health-alarm", name)
}

/// The metric alarm fixture for `alarm` at `timestamp` (another state change of the same alarm, or another alarm).
fn alarm_change(alarm: &str, timestamp: &str) -> Value {
    let mut v = fixture("eventbridge-metric-alarm.json");
    v["resources"] = json!([format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}")]);
    v["detail"]["alarmName"] = json!(alarm);
    v["detail"]["state"]["timestamp"] = json!(timestamp);
    v
}

async fn env_with(mode: &str, alarms: &[&str]) -> DrEnv {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": mode, "failover_alarms": alarms, "cooldown_minutes": 0})).await;
    env
}

fn via(env: &DrEnv, proxy: &FaultProxy) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in &mut vars {
        if k == "AWS_ENDPOINT_URL" {
            v.clone_from(&proxy.endpoint);
        }
    }
    vars
}

fn error_type(i: &Invocation) -> String {
    match i {
        Invocation::Error(e) => e["errorType"].as_str().unwrap_or_default().to_owned(),
        other => format!("{other:?}"),
    }
}

/// The 1-based index of the last call whose label contains `text`, in a clean run of `payload` in a fresh
/// environment (the call sequence of one invocation is deterministic when no fault is injected).
async fn last_call(proxy: &FaultProxy, mode: &str, payload: &Value, text: &str) -> usize {
    let env = env_with(mode, &[ALARM]).await;
    let mut f = Function::start("health-alarm", &via(&env, proxy));
    proxy.plan(vec![]);
    f.invoke(payload).response();
    let calls = proxy.log();
    calls.iter().rposition(|c| c.contains(text)).unwrap_or_else(|| panic!("no call {text}: {calls:#?}")) + 1
}

/// Fixed, found by the soak in engine `join_holder` (shared/failover/src/messages.rs).
/// It was: the joined alarm's record is created before
/// its page is written into the waiting holder's record; when that write fails, the delivery errors and its
/// redelivery answers from the joined record without paging. On-call never hears that the alarm fired again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_alarm_pages_into_the_waiting_incident_even_after_a_failed_write() {
    let other = "databricks-prod-api-5xx";
    let env = env_with("approval", &[ALARM, other]).await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    let holder = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    let holder = holder["execution_id"].as_str().unwrap().to_owned();
    env.pages().await;
    proxy.plan(vec![]);
    proxy.fail_matching(&format!("executions/{holder}.json PutObject"), Fault::ServerError);
    let change = alarm_change(other, "2025-03-14T09:26:53.589+0000");
    assert_eq!(error_type(&f.invoke(&change)), "Retryable.NotStarted");
    proxy.plan(vec![]);
    let joined = f.invoke(&change).response();
    assert_eq!(joined["state"], "joined", "{joined:#}");
    let rec = env.json(&format!("executions/{holder}.json")).await;
    let paged = rec["messages"].as_array().unwrap().iter().any(|m| m["event_type"].as_str().unwrap().contains("alarm_again"));
    assert!(paged, "the holder's record has no alarm_again page: {:#}", rec["messages"]);
    assert_eq!(env.pages().await.len(), 1, "one page into the holder's incident");
}

/// Fixed, found by the soak in engine `cancel` (shared/failover/src/ending.rs).
/// It was: when the release of its lock fails, cancel answers
/// `Retryable.ExecutionStopped` ("run `cancel` again to release it"); the retried cancel finds the record
/// cancelled and calls `lock::release`, which never deletes a `running` lock within its lease, so it answers
/// "cancelled" and leaves the lock (DR_LOCK_LEASE_SECONDS, 120 s by default). A failover alarm meanwhile is
/// recorded `joined` to the cancelled execution and never fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_cancel_releases_its_lock() {
    let env = env_with("approval", &[ALARM]).await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    let mut m = Function::start("manual-trigger", &via(&env, &proxy));
    let first = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    let id = first["execution_id"].as_str().unwrap().to_owned();
    let cancel = json!({"command": "cancel", "execution_id": id, "confirm": id, "requested_by": "oncall@example.com"});
    proxy.plan(vec![]);
    proxy.fail_matching("locks/failover.json DeleteObject", Fault::ServerError);
    assert_eq!(error_type(&m.invoke(&cancel)), "Retryable.ExecutionStopped");
    proxy.plan(vec![]);
    assert_eq!(m.invoke(&cancel).response()["outcome"], "completed");
    assert_eq!(env.json("locks/failover.json").await, Value::Null, "the retried cancel left the lock");
    env.put("policy", &json!({"mode": "auto", "failover_alarms": [ALARM], "cooldown_minutes": 0})).await;
    let next = f.invoke(&alarm_change(ALARM, "2025-03-14T10:26:53.589+0000")).response();
    assert_eq!(next["outcome"], "completed", "{next:#}");
}

/// Fixed, found by the soak in engine `complete` (shared/failover/src/runner.rs).
/// It was: when the record write that says `completed` fails,
/// the stop it reports is saved with the state already `completed`; the redelivery answers `already_completed`
/// and the record keeps `error` and a failed `release` step after the done one (status lists the error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_record_carries_no_error() {
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let alarm = fixture("eventbridge-metric-alarm.json");
    let last = last_call(&proxy, "auto", &alarm, "executions/").await;
    let env = env_with("auto", &[ALARM]).await;
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    // The last record write fails on each of the SDK's three attempts.
    proxy.plan((0..3).map(|k| Rule { at: last + k, fault: Fault::ServerError, persistent: false }).collect());
    assert_eq!(error_type(&f.invoke(&alarm)), "Retryable.ExecutionStopped");
    proxy.plan(vec![]);
    let again = f.invoke(&alarm).response();
    let rec = env.json(&format!("executions/{}.json", again["execution_id"].as_str().unwrap())).await;
    assert_eq!(rec["state"], "completed");
    assert_eq!(rec["error"], Value::Null, "{:#}", rec["steps"]);
}

/// Fixed, found by the soak in engine `prepare_for_approval` (shared/failover/src/steps.rs).
/// It was: the record says `awaiting_approval` as
/// soon as it is written beside the snapshot; when the snapshot or the lock's update to the approval window then
/// fails, the redelivery answers `awaiting_approval` from the record and never finishes the preparation. The
/// lock stays `running` (or `stopped`) with the short lease instead of holding the approval window, so another
/// alarm takes it over once it expires; with a failed snapshot, the snapshot is taken only at approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_finishes_a_stopped_approval_preparation() {
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let alarm = fixture("eventbridge-metric-alarm.json");
    let update = last_call(&proxy, "approval", &alarm, "locks/failover.json PutObject").await;
    let env = env_with("approval", &[ALARM]).await;
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    proxy.plan((0..3).map(|k| Rule { at: update + k, fault: Fault::ServerError, persistent: false }).collect());
    assert_eq!(error_type(&f.invoke(&alarm)), "Retryable.ExecutionStopped");
    proxy.plan(vec![]);
    assert_eq!(f.invoke(&alarm).response()["outcome"], "awaiting_approval");
    let lock = env.json("locks/failover.json").await;
    assert_eq!(lock["state"], "awaiting_approval", "the approval window is not held: {lock:#}");
}
