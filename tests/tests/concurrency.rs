//! The engine's promises with more than one execution, through the built binaries against moto (issue 11):
//! fencing, pages owed, joined alarms, approve after a stop, cancel, truthful replays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use tests::dr_env::DrEnv;
use tests::fault_proxy::{Fault, FaultProxy};
use tests::moto;
use tests::runtime_api::{Function, Invocation};

const ALARM: &str = "databricks-prod-workspace-unhealthy";

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/health-alarm/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The same alarm firing again later: another state change, so another execution.
fn fired_again(minutes_later: i64) -> Value {
    let mut v = fixture("eventbridge-metric-alarm.json");
    let t = v["detail"]["state"]["timestamp"].as_str().unwrap().to_owned();
    let at = time::OffsetDateTime::parse(&t.replace("+0000", "Z"), &time::format_description::well_known::Rfc3339).unwrap()
        + time::Duration::minutes(minutes_later);
    let stamp = at.format(&time::format_description::well_known::Rfc3339).unwrap().replace('Z', "+0000");
    v["detail"]["state"]["timestamp"] = json!(stamp);
    v
}

async fn env_with(mode: &str) -> DrEnv {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": mode, "failover_alarms": [ALARM], "cooldown_minutes": 0})).await;
    env
}

/// The functions' environment with the SDK pointed at the proxy and quick retries.
fn via(env: &DrEnv, proxy: &FaultProxy) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint.clone();
        }
    }
    vars.push(("DR_AWS_ATTEMPT_TIMEOUT_MS".into(), "500".into()));
    vars.push(("DR_AWS_INITIAL_BACKOFF_MS".into(), "20".into()));
    vars
}

fn error_of(i: Invocation) -> Value {
    match i {
        Invocation::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_alarm_never_writes_active_back_after_a_failback() {
    // Case 1 (seen): an alarm execution promotes and verifies, then stops; on-call unlocks and fails back; the
    // alarm is delivered again: it used to write `active` back to the secondary.
    let env = env_with("auto").await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.plan(vec![]);
    proxy.fail_matching("/reports/", Fault::ServerError);
    let mut alarm = Function::start("health-alarm", &via(&env, &proxy));
    let stopped = error_of(alarm.invoke(&fixture("eventbridge-metric-alarm.json")));
    assert_eq!(stopped["errorType"], "Retryable.ExecutionStopped", "{stopped:#}");
    proxy.plan(vec![]);
    let id = env.history("active").await[1].2["execution_id"].as_str().unwrap().to_owned();

    let mut m = Function::start("manual-trigger", &via(&env, &proxy));
    let unlocked =
        m.invoke(&json!({"command": "unlock", "execution_id": id, "confirm": id, "requested_by": "oncall"})).response();
    assert_eq!(unlocked["outcome"], "completed", "{unlocked:#}");
    let back = m
        .invoke(&json!({"command": "failback", "target": "primary", "confirm": "primary", "reason": "primary is back",
                        "requested_by": "oncall", "client_token": "fb1"}))
        .response();
    assert_eq!(back["outcome"], "completed", "{back:#}");
    assert_eq!(env.history("active").await.len(), 3);

    let again = alarm.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(again["outcome"], "superseded", "{again:#}");
    let history = env.history("active").await;
    assert_eq!(history.len(), 3, "active was written again: {history:?}");
    assert_eq!(history[2].2["execution_id"], "failback-fb1");
    // The stand-down resolved the alarm's incident with the severity of its ALARM.
    let pages: Vec<Value> =
        env.pages().await.iter().map(message_of).filter(|p| p["AlarmName"].as_str().unwrap().contains(&id)).collect();
    assert_eq!(pages.last().unwrap()["NewStateValue"], "OK", "{pages:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_only_page_that_fails_goes_out_with_the_redelivery() {
    // Case 3 (seen): the decision was saved terminal before its page; a failed publish was never retried.
    let env = env_with("notify-only").await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.plan(vec![]);
    proxy.fail_matching("SNS Publish", Fault::ServerError);
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    let first = error_of(f.invoke(&fixture("eventbridge-metric-alarm.json")));
    assert!(first["errorType"].as_str().unwrap().starts_with("Retryable."), "{first:#}");
    assert!(env.pages().await.is_empty());
    proxy.plan(vec![]);
    let again = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!((again["outcome"].as_str(), again["state"].as_str()), (Some("noop"), Some("notified")), "{again:#}");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1, "the owed page went out once");
    assert_eq!(message_of(&pages[0])["NewStateValue"], "ALARM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_paging_topic_never_blocks_the_promotion() {
    // Case 4: the first page was joined with the snapshot: a paging failure blocked the promotion itself.
    let env = env_with("auto").await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.plan(vec![]);
    proxy.fail_matching("SNS Publish", Fault::ServerError);
    let mut f = Function::start("health-alarm", &via(&env, &proxy));
    let owed = error_of(f.invoke(&fixture("eventbridge-metric-alarm.json")));
    assert_eq!(owed["errorType"], "Retryable.PagesOwed", "{owed:#}");
    assert_eq!(env.history("active").await.len(), 2, "promoted although no page could go out");
    proxy.plan(vec![]);
    let again = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(again["outcome"], "already_completed", "{again:#}");
    let states: Vec<String> =
        env.pages().await.iter().map(|p| message_of(p)["NewStateValue"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["ALARM", "OK"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_firing_again_after_its_recovery_withdrew_the_approval_pages_a_new_one() {
    // Case 7 (seen): an alarm that fires, recovers and fires again while the first execution waits for approval
    // paged nobody. Issue 23: the recovery withdraws the waiting approval (no approval window outlives the OK),
    // so the alarm firing again prepares and pages an approval of its own.
    let env = env_with("approval").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let first = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(first["outcome"], "awaiting_approval", "{first:#}");
    let recovered = f.invoke(&fixture("eventbridge-ok.json")).response();
    assert_eq!(recovered["resolved_execution"], first["execution_id"], "{recovered:#}");
    let opened = env.pages().await;
    assert_eq!(opened.len(), 2, "ALARM then OK");
    let withdrawn = env.json(&format!("executions/{}.json", first["execution_id"].as_str().unwrap())).await;
    assert_eq!(withdrawn["state"], "noop", "{withdrawn:#}");
    assert!(env.object("locks/failover.json").await.is_none(), "the approval's lock is released with it");
    let again = f.invoke(&fired_again(45)).response();
    assert_eq!(again["outcome"], "awaiting_approval", "{again:#}");
    assert_ne!(again["execution_id"], first["execution_id"]);
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = message_of(&pages[0]);
    assert_eq!(page["NewStateValue"], "ALARM");
    assert!(page["AlarmName"].as_str().unwrap().contains(again["execution_id"].as_str().unwrap()), "{page:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_again_resumes_an_approved_execution_that_stopped_and_cancel_ends_a_waiting_one() {
    // Case 5: an approved execution that stopped answered "running" to approve, and nothing resumed it.
    let env = env_with("approval").await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.plan(vec![]);
    let mut alarm = Function::start("health-alarm", &via(&env, &proxy));
    let first = alarm.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    let id = first["execution_id"].as_str().unwrap().to_owned();
    let mut m = Function::start("manual-trigger", &via(&env, &proxy));
    proxy.fail_matching("/reports/", Fault::ServerError);
    let approve = json!({"command": "approve", "execution_id": id, "requested_by": "oncall"});
    let stopped = error_of(m.invoke(&approve));
    assert_eq!(stopped["errorType"], "Retryable.ExecutionStopped", "{stopped:#}");
    proxy.plan(vec![]);
    let resumed = m.invoke(&approve).response();
    assert_eq!(resumed["outcome"], "completed", "{resumed:#}");
    assert_eq!(env.history("active").await.len(), 2);

    // Cancel: a second environment with an execution waiting for approval.
    let env = env_with("approval").await;
    let mut alarm = Function::start("health-alarm", &env.function_env());
    let waiting = alarm.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    let id = waiting["execution_id"].as_str().unwrap().to_owned();
    let mut m = Function::start("manual-trigger", &env.function_env());
    let wrong = m.invoke(&json!({"command": "cancel", "execution_id": id, "confirm": "x", "requested_by": "oncall"})).response();
    assert_eq!(wrong["outcome"], "rejected", "{wrong:#}");
    let cancel =
        json!({"command": "cancel", "execution_id": id, "confirm": id, "requested_by": "oncall", "reason": "false alarm"});
    let cancelled = m.invoke(&cancel).response();
    assert_eq!(
        (cancelled["outcome"].as_str(), cancelled["state"].as_str()),
        (Some("completed"), Some("cancelled")),
        "{cancelled:#}"
    );
    assert!(env.keys("locks/").await.is_empty());
    let states: Vec<String> =
        env.pages().await.iter().map(|p| message_of(p)["NewStateValue"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["ALARM", "OK"], "the page resolved");
    let report = String::from_utf8(env.object(&format!("reports/{id}.md")).await.unwrap()).unwrap();
    assert!(report.contains("false alarm"), "{report}");
    let late = m.invoke(&json!({"command": "approve", "execution_id": id, "requested_by": "oncall"})).response();
    assert_eq!(late["outcome"], "rejected");
    assert_eq!(env.history("active").await.len(), 1, "nothing promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_answer_the_first_result() {
    // Case 10: a repeat of a refused execution answered `already_completed`.
    let env = env_with("auto").await;
    env.put("sites/secondary", &json!({"region": "us-west-2"})).await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let first = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(first["state"], "refused", "{first:#}");
    std::thread::sleep(Duration::from_millis(10));
    let again = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!((again["outcome"].as_str(), again["state"].as_str()), (first["outcome"].as_str(), Some("refused")), "{again:#}");
}
