//! Issue 23, the OK again after an `ALARM` paid without the lock, through the built `health-alarm` and
//! `manual-trigger`: a failover in approval mode holds the lock; a second alarm joins it and pays its page into
//! the holder's incident without the lock. The fault proxy holds that page's `SNS Publish` while another process
//! delivers the holder's `OK` (straight against moto), so the joiner's `ALARM` reaches the pager after the `OK`.
//! Then the joiner never gets to check for the crossing: its process is killed while its next record write is
//! held, or every record call it makes fails. The mark it left in the holder's record (`unlocked_alarm_since`) is
//! what lets the next reader (`check`, or a later delivery of the holder's trigger) send the `OK` again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::dr_env::DrEnv;
use tests::fault_proxy::{Fault, FaultProxy};
use tests::moto;
use tests::runtime_api::{Function, Invocation};

const HOLDER_ALARM: &str = "databricks-prod-workspace-unhealthy";
const JOINER_ALARM: &str = "databricks-prod-sql-unhealthy";

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/health-alarm/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The second failover alarm going to `ALARM` a minute after the first (another ARN, so another execution).
fn joiner_alarm() -> Value {
    let mut v = fixture("eventbridge-metric-alarm.json");
    v["detail"]["alarmName"] = json!(JOINER_ALARM);
    let arn = v["resources"][0].as_str().unwrap().replace(HOLDER_ALARM, JOINER_ALARM);
    v["resources"] = json!([arn]);
    v["time"] = json!("2025-03-14T09:27:53Z");
    v["detail"]["state"]["timestamp"] = json!("2025-03-14T09:27:53.589+0000");
    v["id"] = json!("6c7f9b5d-3a2e-4f0a-8d1b-e5a9f3c2b7a4");
    v
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The pages' states (`ALARM`/`OK`) with their event types, in the order the pager got them.
async fn pages(env: &DrEnv, seen: &mut Vec<(String, String)>) -> Vec<(String, String)> {
    for envelope in env.pages().await {
        let state = message_of(&envelope)["NewStateValue"].as_str().unwrap_or("?").to_owned();
        let event = envelope["MessageAttributes"]["event_type"]["Value"].as_str().unwrap_or("?").to_owned();
        seen.push((state, event));
    }
    seen.clone()
}

/// How the joiner ends after its `ALARM` went out (after the holder's `OK`).
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Its next write of the holder's record is held and its process killed (a crash, a Lambda timeout).
    Killed,
    /// Every call on an execution record fails (S3 answering 500): the invocation ends in an error.
    RecordCallsFail,
}

/// Runs the crossing and the joiner's ending; returns the environment, the holder's execution id and the pages
/// so far.
async fn alarm_crosses_the_ok_and_its_payer_is_gone(ending: Ending) -> (DrEnv, String, Vec<(String, String)>) {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let policy = json!({"mode": "approval", "failover_alarms": [HOLDER_ALARM, JOINER_ALARM], "cooldown_minutes": 0});
    env.put("policy", &policy).await;
    let mut seen = Vec::new();
    let mut holder_fn = Function::start("health-alarm", &env.function_env());
    let first = holder_fn.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(first["outcome"], "awaiting_approval", "{first:#}\n{}", holder_fn.logs());
    let holder = first["execution_id"].as_str().unwrap().to_owned();
    let record_text = format!("executions/{holder}.json");

    let proxy = FaultProxy::start(&moto::shared().endpoint);
    let mut vars = env.function_env();
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            v.clone_from(&proxy.endpoint);
        }
    }
    // Long enough for the OK to be handled while the joiner's publish is held.
    vars.push(("DR_AWS_ATTEMPT_TIMEOUT_MS".into(), "20000".into()));
    let mut joiner_fn = Function::start("health-alarm", &vars);
    let joiner_pid = joiner_fn.pid();
    proxy.gate_nth("SNS Publish", 1);
    let joined = std::thread::scope(|s| {
        let joiner = s.spawn(|| joiner_fn.invoke_with_timeout(&joiner_alarm(), Duration::from_secs(60)));
        assert!(proxy.wait_held(Duration::from_secs(30)), "the joiner's page is held: {:?}", proxy.log());
        let log = proxy.log();
        assert!(
            log.iter().any(|l| l.contains(&record_text) && l.contains("PutObject")),
            "the joiner pays into the holder's record: {log:?}"
        );
        // The holder's alarm recovers while the joiner's ALARM is on its way.
        let ok = holder_fn.invoke(&fixture("eventbridge-ok.json"));
        assert!(matches!(ok, Invocation::Response(_)), "the OK is handled: {ok:?}\n{}", holder_fn.logs());
        let after_gate = proxy.log().len();
        match ending {
            Ending::Killed => proxy.fail_matching(&format!("{record_text} PutObject"), Fault::HoldBefore),
            Ending::RecordCallsFail => proxy.fail_matching("/executions/", Fault::ServerError),
        }
        proxy.open_gate();
        if let Ending::Killed = ending {
            // The joiner's next write of the record reaches the proxy (held, never forwarded): it dies there.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !proxy.log().iter().skip(after_gate).any(|l| l.contains(&record_text)) {
                assert!(Instant::now() < deadline, "the joiner's write after its ALARM: {:?}", proxy.log());
                std::thread::sleep(Duration::from_millis(20));
            }
            let killed = std::process::Command::new("kill").args(["-9", &joiner_pid.to_string()]).status();
            assert!(killed.is_ok_and(|s| s.success()), "kill -9 {joiner_pid}");
        }
        joiner.join().unwrap()
    });
    match ending {
        Ending::Killed => assert!(matches!(joined, Invocation::NoAnswer(_)), "the joiner died: {joined:?}"),
        Ending::RecordCallsFail => {
            assert!(matches!(joined, Invocation::Error(_)), "the joiner's invocation fails: {joined:?}\n{}", joiner_fn.logs())
        }
    }
    let so_far = pages(&env, &mut seen).await;
    let states: Vec<&str> = so_far.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, ["ALARM", "OK", "ALARM"], "the joiner's ALARM crossed the holder's OK: {so_far:?}");
    let rec = env.json(&format!("executions/{holder}.json")).await;
    // Another alarm joined the holder, so its OK resolves the page and leaves the approval waiting.
    assert_eq!(rec["state"], "awaiting_approval", "{rec:#}");
    assert_eq!(rec["messages"].as_array().unwrap().last().unwrap()["ok"], true, "the record ends with the OK: {rec:#}");
    assert!(rec["unlocked_alarm_since"].is_string(), "the joiner's mark stays in the record: {rec:#}");
    (env, holder, seen)
}

async fn assert_ok_again(env: &DrEnv, holder: &str, seen: &mut Vec<(String, String)>, by: &str) {
    let all = pages(env, seen).await;
    assert_eq!(all.last().map(|(s, _)| s.as_str()), Some("OK"), "{by} sends the OK again after the crossing ALARM: {all:?}");
    // After the crossing ALARM (the third page), an OK that says why (a duplicate OK may follow: harmless).
    assert!(all.iter().skip(3).any(|(s, e)| s == "OK" && e.contains(".resolved_again")), "the OK again says why: {all:?}");
    let rec = env.json(&format!("executions/{holder}.json")).await;
    assert!(rec["owed"].as_array().is_none_or(Vec::is_empty), "nothing left owed: {rec:#}");
    let resolved_again = rec["messages"].as_array().unwrap().iter().filter(|m| m["ok"] == true).count();
    assert!(resolved_again >= 2, "the record holds the OK and the OK again: {rec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sends_the_ok_again_after_a_joiners_alarm_whose_process_died() {
    let (env, holder, mut seen) = alarm_crosses_the_ok_and_its_payer_is_gone(Ending::Killed).await;
    let mut manual = Function::start("manual-trigger", &env.function_env());
    let checked = manual.invoke(&json!({"command": "check"}));
    assert!(matches!(checked, Invocation::Response(_)), "{checked:?}\n{}", manual.logs());
    assert_ok_again(&env, &holder, &mut seen, "check").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_delivery_sends_the_ok_again_after_a_joiners_alarm_whose_invocation_failed() {
    let (env, holder, mut seen) = alarm_crosses_the_ok_and_its_payer_is_gone(Ending::RecordCallsFail).await;
    // The holder's ALARM delivered again (a late copy through another path): it reads the record resolved and
    // marked, and sends the OK again.
    let mut later = Function::start("health-alarm", &env.function_env());
    let again = later.invoke(&fixture("sns-metric-alarm.json"));
    assert!(matches!(again, Invocation::Response(_) | Invocation::Error(_)), "{again:?}\n{}", later.logs());
    assert_ok_again(&env, &holder, &mut seen, "a later delivery").await;
}
