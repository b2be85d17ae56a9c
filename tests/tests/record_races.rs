//! Issue 23, point 4, through the built `health-alarm`: the alarm's `OK` lands while a failover in approval mode
//! is being prepared (its call held by the fault proxy's gate while another process handles the `OK` against
//! moto). The recovery wins: the execution's record stays ended, no `ALARM` is the last page of its incident, and
//! no approval lock is left for an alarm that is `OK`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use tests::dr_env::DrEnv;
use tests::fault_proxy::FaultProxy;
use tests::moto;
use tests::runtime_api::{Function, Invocation};

const ALARM: &str = "databricks-prod-workspace-unhealthy";
/// The fixture's execution (its ARN and state change time), as the fault proxy labels a put of its record.
const RECORD_PUT: &str = "executions/alarm-df6f1cec6f49a306bbc3.json PutObject";
const LOCK_PUT: &str = "locks/failover.json PutObject";

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/health-alarm/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The functions' environment with the SDK pointed at the proxy; the attempt timeout is long enough for the
/// `OK` to be handled while a call is held.
fn via(env: &DrEnv, proxy: &FaultProxy) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint.clone();
        }
    }
    vars.push(("DR_AWS_ATTEMPT_TIMEOUT_MS".into(), "20000".into()));
    vars
}

/// The `ALARM` in approval mode, with the `OK` handled (by another process, straight against moto) while the
/// `nth` call whose label contains `gate` is held. Returns the execution id, the `ALARM`'s answer and the logs.
async fn ok_lands_during_preparation(gate: &str, nth: usize) -> (DrEnv, String, Invocation, String) {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": "approval", "failover_alarms": [ALARM], "cooldown_minutes": 0})).await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let mut alarm_fn = Function::start("health-alarm", &via(&env, &proxy));
    let mut ok_fn = Function::start("health-alarm", &env.function_env());
    proxy.gate_nth(gate, nth);
    let (answer, ok) = std::thread::scope(|s| {
        let alarm = s.spawn(|| alarm_fn.invoke(&fixture("eventbridge-metric-alarm.json")));
        assert!(proxy.wait_held(Duration::from_secs(30)), "the preparation reached {gate} #{nth}: {:?}", proxy.log());
        let ok = ok_fn.invoke(&fixture("eventbridge-ok.json"));
        proxy.open_gate();
        (alarm.join().unwrap(), ok)
    });
    assert!(matches!(ok, Invocation::Response(_)), "the OK is handled: {ok:?}\n{}", ok_fn.logs());
    // The ALARM's execution (its answer may be an error): the only alarm record besides the OK's markers.
    let id = match answer_id(&answer) {
        Some(id) => id,
        None => {
            let keys = env.keys("executions/alarm-").await;
            let key = keys.first().cloned().expect("the ALARM's record");
            key.trim_start_matches("executions/").trim_end_matches(".json").to_owned()
        }
    };
    let logs = alarm_fn.logs();
    (env, id, answer, logs)
}

fn answer_id(answer: &Invocation) -> Option<String> {
    match answer {
        Invocation::Response(v) => v["execution_id"].as_str().map(str::to_owned),
        _ => None,
    }
}

async fn assert_recovery_won(env: &DrEnv, id: &str, context: &str) -> Vec<String> {
    let rec = env.json(&format!("executions/{id}.json")).await;
    let state = rec["state"].as_str().unwrap_or("absent").to_owned();
    assert!(
        !["running", "awaiting_approval"].contains(&state.as_str()),
        "the recovered execution's record stays ended, found {state}: {rec:#}\n{context}"
    );
    let pages: Vec<Value> = env.pages().await.iter().map(message_of).collect();
    let states: Vec<String> = pages.iter().map(|p| p["NewStateValue"].as_str().unwrap_or("?").to_owned()).collect();
    assert_ne!(states.last().map(String::as_str), Some("ALARM"), "no ALARM after the recovery's OK: {pages:#?}\n{context}");
    let lock = env.object("locks/failover.json").await.map(|b| String::from_utf8_lossy(&b).into_owned());
    assert!(lock.is_none(), "no lock left for an alarm that is OK: {lock:?}\n{context}");
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_before_the_preparation_records_it_is_never_overwritten() {
    // The first write of the record (create-only) is held; the OK records the ALARM's execution as over.
    let (env, id, answer, logs) = ok_lands_during_preparation(RECORD_PUT, 1).await;
    let states = assert_recovery_won(&env, &id, &format!("{answer:?}\n{logs}")).await;
    assert_eq!(env.json(&format!("executions/{id}.json")).await["state"], "noop");
    assert!(states.is_empty(), "an ALARM over before it was handled pages nobody: {states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_while_the_approval_page_is_recorded_ends_the_execution() {
    // The second write (the approval page paid) is held; the OK resolves the page and withdraws the approval.
    let (env, id, answer, logs) = ok_lands_during_preparation(RECORD_PUT, 2).await;
    let states = assert_recovery_won(&env, &id, &format!("{answer:?}\n{logs}")).await;
    assert_eq!(states.first().map(String::as_str), Some("ALARM"), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_before_the_approval_window_is_taken_leaves_no_lock() {
    // The lock's update to the approval window is held; the OK ends the record while the lock says running.
    let (env, id, answer, logs) = ok_lands_during_preparation(LOCK_PUT, 2).await;
    let states = assert_recovery_won(&env, &id, &format!("{answer:?}\n{logs}")).await;
    assert_eq!(states, ["ALARM", "OK"]);
}
