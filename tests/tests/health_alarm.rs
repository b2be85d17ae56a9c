//! `health-alarm` end to end: every fixture through the Runtime API against moto, decided by the policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::dr_env::DrEnv;
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

async fn env_with(mode: &str) -> DrEnv {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": mode, "failover_alarms": [ALARM], "cooldown_minutes": 30})).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_promotes_once_whichever_path_delivers_the_change() {
    let env = env_with("auto").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let first = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(first["outcome"], "completed", "{first:#}\n{}", f.logs());
    assert_eq!(first["active_site"], "secondary");
    let id = first["execution_id"].as_str().unwrap().to_owned();
    for path in ["alarm-action-metric-alarm.json", "sns-metric-alarm.json", "eventbridge-metric-alarm.json"] {
        let again = f.invoke(&fixture(path)).response();
        assert_eq!(again["outcome"], "already_completed", "{path}: {again:#}");
        assert_eq!(again["execution_id"], id.as_str());
    }
    let history = env.history("active").await;
    assert_eq!(history.len(), 2, "exactly one promotion: {history:?}");
    assert_eq!(history[1].2["site"], "secondary");
    assert_eq!(history[1].1, vec![id.clone()]);
    let pages = env.pages().await;
    let states: Vec<String> = pages.iter().map(|p| message_of(p)["NewStateValue"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["ALARM", "OK"], "one incident opened and resolved");

    // The alarm recovers: reported in chat, never a failback.
    env.chats().await;
    let ok = f.invoke(&fixture("eventbridge-ok.json")).response();
    assert_eq!(ok["outcome"], "noop", "{ok:#}");
    assert!(ok["reported"].as_str().unwrap().contains("No failback is automatic"));
    assert_eq!(env.get("active").await["site"], "secondary");
    assert_eq!(env.chats().await.len(), 1);
    assert!(env.pages().await.is_empty(), "the failover's incident is already resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_change_through_three_paths_at_once_is_one_execution() {
    let env = env_with("auto").await;
    let mut fns: Vec<Function> = (0..3).map(|_| Function::start("health-alarm", &env.function_env())).collect();
    let paths = ["eventbridge-metric-alarm.json", "alarm-action-metric-alarm.json", "sns-metric-alarm.json"];
    let answers: Vec<Invocation> = std::thread::scope(|s| {
        let handles: Vec<_> = fns.iter_mut().zip(paths).map(|(f, p)| s.spawn(move || f.invoke(&fixture(p)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let completed = answers.iter().filter(|a| matches!(a, Invocation::Response(v) if v["outcome"] == "completed")).count();
    assert_eq!(completed, 1, "{answers:#?}");
    for a in &answers {
        match a {
            Invocation::Response(v) => {
                assert!(["completed", "already_completed"].contains(&v["outcome"].as_str().unwrap()), "{v:#}")
            }
            // Another attempt of the same execution held the lock: a retryable error, so Lambda redelivers.
            Invocation::Error(e) => assert_eq!(e["errorType"], "Retryable.InFlight", "{e:#}"),
            other => panic!("{other:?}"),
        }
    }
    // The redeliveries find it completed.
    for (f, p) in fns.iter_mut().zip(paths) {
        assert_eq!(f.invoke(&fixture(p)).response()["outcome"], "already_completed");
    }
    assert_eq!(env.history("active").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_mode_prepares_pages_the_command_and_waits() {
    let env = env_with("approval").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let r = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(r["outcome"], "awaiting_approval", "{r:#}\n{}", f.logs());
    let id = r["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(env.get("active").await["site"], "primary");
    assert!(!env.keys(&format!("snapshots/{id}/")).await.is_empty(), "the snapshot is taken while waiting");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    let page = message_of(&pages[0]);
    assert_eq!(page["NewStateValue"], "ALARM");
    let command = page["ApproveCommand"].as_str().unwrap();
    assert!(command.contains("\"command\":\"approve\"") && command.contains(&id), "{command}");

    // Delivered again while waiting: the same answer, nothing new.
    assert_eq!(f.invoke(&fixture("sns-metric-alarm.json")).response()["outcome"], "awaiting_approval");
    assert!(env.pages().await.is_empty());

    // A human approves through manual-trigger.
    let mut m = Function::start("manual-trigger", &env.function_env());
    let approved = m.invoke(&json!({"command": "approve", "execution_id": id, "requested_by": "oncall@example.com"})).response();
    assert_eq!(approved["outcome"], "completed", "{approved:#}\n{}", m.logs());
    assert_eq!(env.get("active").await["site"], "secondary");
    assert_eq!(env.history("active").await.len(), 2);
    let pages = env.pages().await;
    assert_eq!(pages.iter().map(|p| message_of(p)["NewStateValue"].as_str().unwrap().to_owned()).collect::<Vec<_>>(), ["OK"]);
    let rec = env.json(&format!("executions/{id}.json")).await;
    assert!(rec["notes"].to_string().contains("approved by oncall@example.com"));
    // Approving twice changes nothing.
    let twice = m.invoke(&json!({"command": "approve", "execution_id": id, "requested_by": "oncall@example.com"})).response();
    assert_eq!(twice["outcome"], "already_completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_only_pages_and_changes_nothing_and_recovery_resolves_the_page() {
    let env = env_with("notify-only").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let r = f.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(r["outcome"], "noop", "{r:#}");
    assert_eq!(r["state"], "notified");
    assert_eq!(env.history("active").await.len(), 1);
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    let opened = message_of(&pages[0]);
    assert_eq!(opened["NewStateValue"], "ALARM");
    assert!(opened["NewStateReason"].as_str().unwrap().contains("kill switch"));
    // Recovery: the alarm goes OK; the incident the ALARM opened is resolved.
    let ok = f.invoke(&fixture("eventbridge-ok.json")).response();
    assert_eq!(ok["resolved_execution"], r["execution_id"], "{ok:#}");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    let resolved = message_of(&pages[0]);
    assert_eq!(resolved["NewStateValue"], "OK");
    assert_eq!(resolved["AlarmName"], opened["AlarmName"]);
}

/// An EventBridge state change of the alarm from `old` (entered at `old_at`) into `new` at `at`, with the
/// reasons CloudWatch gives: the real sequence, where an OK after INSUFFICIENT_DATA names INSUFFICIENT_DATA.
fn eventbridge(new: &str, at: &str, old: &str, old_at: &str) -> Value {
    let mut e = fixture("eventbridge-ok.json");
    let reason = |state: &str| match state {
        "INSUFFICIENT_DATA" => "Insufficient Data: 3 datapoints were unknown.",
        "ALARM" => "Threshold Crossed: 3 out of the last 3 datapoints were less than the threshold (90.0).",
        _ => "Threshold Crossed: 1 out of the last 3 datapoints was not less than the threshold (90.0).",
    };
    e["time"] = json!(format!("{}Z", &at[..19]));
    e["detail"]["state"] = json!({"value": new, "reason": reason(new), "timestamp": at});
    e["detail"]["previousState"] = json!({"value": old, "reason": reason(old), "timestamp": old_at});
    e
}

/// The same state change as an SNS notification (no previous state's time: SNS never carries one).
fn sns(new: &str, at: &str, old: &str) -> Value {
    let mut e = fixture("sns-metric-alarm.json");
    let mut m: Value = serde_json::from_str(e["Records"][0]["Sns"]["Message"].as_str().unwrap()).unwrap();
    m["NewStateValue"] = json!(new);
    m["OldStateValue"] = json!(old);
    m["StateChangeTime"] = json!(at);
    m["NewStateReason"] = json!(format!("{old} -> {new}"));
    e["Records"][0]["Sns"]["Message"] = json!(m.to_string());
    e["Records"][0]["Sns"]["Subject"] = json!(format!("{new}: \"{ALARM}\" in US East (N. Virginia)"));
    e
}

const T1: &str = "2025-03-14T09:26:53.589+0000";
const T2: &str = "2025-03-14T09:40:00.000+0000";
const T3: &str = "2025-03-14T09:58:02.411+0000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_data_is_no_recovery_and_the_ok_after_it_resolves_the_page() {
    // ALARM -> INSUFFICIENT_DATA (metrics stop arriving in a regional outage) must not resolve the incident; the
    // OK that follows names INSUFFICIENT_DATA as its previous state (CloudWatch's real sequence), and still
    // resolves the ALARM's page, with the ALARM's severity so that a severity filter passes both.
    let env = env_with("notify-only").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let r = f.invoke(&eventbridge("ALARM", T1, "OK", "2025-03-14T08:00:00.000+0000")).response();
    assert_eq!(r["state"], "notified", "{r:#}");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    let alarm_severity = pages[0]["MessageAttributes"]["severity"]["Value"].clone();
    assert_eq!(alarm_severity, "critical");

    let answer = f.invoke(&eventbridge("INSUFFICIENT_DATA", T2, "ALARM", T1)).response();
    assert_eq!(answer["resolved_execution"], Value::Null, "{answer:#}");
    assert!(env.pages().await.is_empty(), "INSUFFICIENT_DATA resolved the incident");

    let ok = f.invoke(&eventbridge("OK", T3, "INSUFFICIENT_DATA", T2)).response();
    assert_eq!(ok["resolved_execution"], r["execution_id"], "{ok:#}\n{}", f.logs());
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(message_of(&pages[0])["NewStateValue"], "OK");
    assert_eq!(pages[0]["MessageAttributes"]["severity"]["Value"], alarm_severity, "{:#}", pages[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_through_sns_only_and_through_both_paths_resolves_the_page_once() {
    let env = env_with("notify-only").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let r = f.invoke(&sns("ALARM", T1, "OK")).response();
    assert_eq!(r["state"], "notified", "{r:#}");
    assert_eq!(env.pages().await.len(), 1);
    // The OK through SNS (no previous state's time) resolves it.
    let ok = f.invoke(&sns("OK", T3, "ALARM")).response();
    assert_eq!(ok["resolved_execution"], r["execution_id"], "{ok:#}\n{}", f.logs());
    let pages = env.pages().await;
    assert_eq!((pages.len(), message_of(&pages[0])["NewStateValue"].as_str()), (1, Some("OK")));
    // The same OK through EventBridge too: nothing more to resolve, no second page.
    let again = f.invoke(&eventbridge("OK", T3, "ALARM", T1)).response();
    assert_eq!(again["resolved_execution"], Value::Null, "{again:#}");
    assert!(env.pages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_ok_resolves_the_alarm_before_it_and_never_the_one_after() {
    // ALARM (T1) -> OK (T2) -> ALARM (T3), the OK delivered last: it resolves T1's page; T3's stays open.
    let env = env_with("notify-only").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let first = f.invoke(&eventbridge("ALARM", T1, "OK", "2025-03-14T08:00:00.000+0000")).response();
    let second = f.invoke(&eventbridge("ALARM", T3, "OK", T2)).response();
    assert_eq!((first["state"].as_str(), second["state"].as_str()), (Some("notified"), Some("notified")));
    assert_ne!(first["execution_id"], second["execution_id"]);
    assert_eq!(env.pages().await.len(), 2);
    let ok = f.invoke(&sns("OK", T2, "ALARM")).response();
    assert_eq!(ok["resolved_execution"], first["execution_id"], "{ok:#}\n{}", f.logs());
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert!(message_of(&pages[0])["AlarmName"].as_str().unwrap().ends_with(first["execution_id"].as_str().unwrap()));
    // And an ALARM older than an OK already handled is over before it is handled: nothing is paged.
    let env = env_with("auto").await;
    let mut f = Function::start("health-alarm", &env.function_env());
    let ok = f.invoke(&sns("OK", T2, "ALARM")).response();
    assert_eq!(ok["outcome"], "noop", "{ok:#}");
    let late = f.invoke(&eventbridge("ALARM", T1, "OK", "2025-03-14T08:00:00.000+0000")).response();
    assert_eq!(late["outcome"], "noop", "{late:#}");
    assert_eq!(env.history("active").await.len(), 1, "a recovered alarm failed over");
    assert!(env.pages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alarm_kind_can_trigger_and_the_rest_is_ignored_or_quarantined() {
    for (fixture_name, expected) in [
        ("eventbridge-metric-math-alarm.json", "completed"),
        ("eventbridge-anomaly-detection-alarm.json", "completed"),
        ("eventbridge-composite-alarm.json", "completed"),
        ("alarm-action-composite-alarm.json", "completed"),
        ("alarm-action-composite-with-suppressor.json", "completed"),
        ("sns-composite-alarm.json", "completed"),
        ("eventbridge-composite-suppressed.json", "ignored"),
        ("eventbridge-muted.json", "ignored"),
        ("eventbridge-not-in-policy.json", "ignored"),
        ("eventbridge-insufficient-data.json", "reported"),
        ("garbage-not-an-alarm.json", "quarantined"),
    ] {
        let env = env_with("auto").await;
        let mut f = Function::start("health-alarm", &env.function_env());
        let r = f.invoke(&fixture(fixture_name)).response();
        let pages = env.pages().await;
        match expected {
            "completed" => {
                assert_eq!(r["outcome"], "completed", "{fixture_name}: {r:#}");
                assert_eq!(env.get("active").await["site"], "secondary", "{fixture_name}");
            }
            "ignored" => {
                assert_eq!(r["outcome"], "noop", "{fixture_name}: {r:#}");
                assert!(r["ignored"].is_string(), "{fixture_name}: {r:#}");
                assert!(pages.is_empty() && env.chats().await.is_empty(), "{fixture_name}: an ignored alarm sent messages");
                assert!(env.keys("").await.is_empty(), "{fixture_name}: an ignored alarm wrote to the bucket");
            }
            "reported" => {
                assert!(r["reported"].is_string(), "{fixture_name}: {r:#}");
                assert_eq!(env.chats().await.len(), 1, "{fixture_name}");
            }
            _ => {
                assert_eq!(r["outcome"], "quarantined", "{fixture_name}: {r:#}");
                let key = r["quarantine_key"].as_str().unwrap();
                let kept = env.json(key).await;
                let raw =
                    std::fs::read_to_string(format!("{}/../events/health-alarm/{fixture_name}", env!("CARGO_MANIFEST_DIR")))
                        .unwrap();
                assert_eq!(
                    serde_json::from_str::<Value>(kept["raw"].as_str().unwrap()).unwrap(),
                    serde_json::from_str::<Value>(&raw).unwrap()
                );
                assert!(kept["error"].as_str().unwrap().contains("expected"), "{kept:#}");
                assert!(f.logs().contains("quarantined"));
            }
        }
        if expected != "completed" {
            assert_eq!(env.history("active").await.len(), 1, "{fixture_name} changed the active site");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primarys_alarm_during_a_failback_before_its_promotion_is_paged() {
    // After a failover the secondary is active; a failback toward the primary holds the lock and has not promoted
    // yet when the primary's health alarm fires. It used to be a silent no-op ("the secondary site is already
    // active"), and CloudWatch does not notify again while the alarm stays in ALARM.
    let env = env_with("auto").await;
    let mut active = tests::dr_env::secondary_site(&env.environment);
    active["site"] = json!("secondary");
    active["execution_id"] = json!("alarm-0000000000000000000a");
    active["promoted_at"] = json!("2025-03-14T08:00:00Z");
    env.put("active", &active).await;
    let now = time::OffsetDateTime::now_utc();
    let lock = json!({
        "execution_id": "failback-2f9c1d", "attempt_id": "a1", "state": "running",
        "acquired_at": domain::primitives::rfc3339(now),
        "lease_expires_at": domain::primitives::rfc3339(now + time::Duration::minutes(5)),
        "holder": "manual-trigger (test)",
    });
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(domain::layout::FAILOVER_LOCK)
        .body(lock.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let mut f = Function::start("health-alarm", &env.function_env());
    let r = f.invoke(&eventbridge("ALARM", T3, "OK", T2)).response();
    assert_eq!(r["state"], "notified", "{r:#}\n{}", f.logs());
    assert!(r["message"].as_str().unwrap().contains("failback-2f9c1d is moving back to the primary"), "{r:#}");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(message_of(&pages[0])["NewStateValue"], "ALARM");
    assert_eq!(env.history("active").await.len(), 2, "the alarm changed the active site");
}
