//! Faults, crashes and concurrency on the failover path: `manual-trigger` through the Runtime API, with a
//! fault-injecting proxy between the SDK and moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use tests::dr_env::DrEnv;
use tests::fault_proxy::{Fault, FaultProxy, Rule};
use tests::moto;
use tests::runtime_api::{Function, Invocation};

fn failover(token: &str) -> Value {
    json!({"command": "failover", "target": "secondary", "reason": "fault test", "requested_by": "oncall@example.com",
           "confirm": "secondary", "client_token": token})
}

/// The function's environment with the SDK pointed at the proxy, short attempt timeouts and a short lease.
fn via(env: &DrEnv, proxy: &FaultProxy) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint.clone();
        }
    }
    vars.push(("DR_AWS_ATTEMPT_TIMEOUT_MS".into(), "300".into()));
    vars.push(("DR_AWS_INITIAL_BACKOFF_MS".into(), "50".into()));
    vars.push(("DR_LOCK_LEASE_SECONDS".into(), "1".into()));
    vars
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// What must hold after any run that ended: one promotion, a completed and consistent record, no lock.
async fn assert_consistent(env: &DrEnv, id: &str, context: &str) {
    let history = env.history("active").await;
    assert_eq!(history.len(), 2, "{context}: exactly one promotion expected, history {history:?}");
    assert_eq!(history[1].2["execution_id"], id, "{context}");
    assert!(history[1].1.contains(&id.to_owned()), "{context}: the promoted version carries the label: {history:?}");
    let rec = env.json(&format!("executions/{id}.json")).await;
    assert_eq!(rec["state"], "completed", "{context}: {rec:#}");
    for step in ["decide", "lock", "snapshot", "promote", "verify", "notify", "report"] {
        let ok = rec["steps"].as_array().unwrap().iter().any(|s| s["step"] == step && s["outcome"] != "failed");
        assert!(ok, "{context}: step {step} not done in {rec:#}");
    }
    let promotes = rec["steps"].as_array().unwrap().iter().filter(|s| s["step"] == "promote" && s["outcome"] == "done").count();
    assert!(promotes <= 1, "{context}: promoted twice: {rec:#}");
    assert!(env.keys("locks/").await.is_empty(), "{context}: the lock was not released");
    assert!(env.object(&format!("reports/{id}.json")).await.is_some(), "{context}: no report");
}

/// Re-invokes after a stop or a crash, once the lease of a dead attempt has expired by S3's clock: its `Date` has
/// whole seconds, so a lease is judged past up to a second after its instant (never before).
async fn resume(env: &DrEnv, proxy: &FaultProxy, token: &str, context: &str) {
    proxy.plan(vec![]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut f = Function::start("manual-trigger", &via(env, proxy));
    let r = f.invoke(&failover(token)).response();
    let outcome = r["outcome"].as_str().unwrap_or_default();
    assert!(["completed", "already_completed"].contains(&outcome), "{context}: resume answered {r:#}\n{}", f.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_failing_in_turn_completes_through_retries_or_stops_and_resumes() {
    let upstream = &moto::shared().endpoint;
    let proxy = FaultProxy::start(upstream);

    // A clean run: the sequence of calls on the failover path.
    let env = DrEnv::seed(upstream).await;
    let mut f = Function::start("manual-trigger", &via(&env, &proxy));
    proxy.plan(vec![]);
    assert_eq!(f.invoke(&failover("clean")).response()["outcome"], "completed");
    let calls = proxy.log();
    println!("failover path, {} calls:\n{}", calls.len(), calls.join("\n"));
    assert!(calls.len() >= 10, "{calls:?}");

    let faults = [
        (Fault::ServerError, false),
        (Fault::Throttle, false),
        (Fault::Timeout(Duration::from_millis(400)), false),
        (Fault::Reset, false),
        (Fault::ServerError, true),
        (Fault::Timeout(Duration::from_millis(400)), true),
    ];
    let mut stopped = 0;
    let only: Option<usize> = std::env::var("FAULT_AT").ok().and_then(|v| v.parse().ok());
    for at in (1..=calls.len()).filter(|a| only.is_none_or(|o| o == *a)) {
        for (fault, persistent) in faults {
            let context = format!("call {at} ({}), {fault:?}, persistent {persistent}", calls[at - 1]);
            let env = DrEnv::seed(upstream).await;
            let token = format!("f{at}");
            let id = format!("failover-{token}");
            proxy.plan(vec![Rule { at, fault, persistent }]);
            let mut f = Function::start("manual-trigger", &via(&env, &proxy));
            match f.invoke_with_timeout(&failover(&token), Duration::from_secs(30)) {
                Invocation::Response(r) if r["outcome"] == "completed" => {}
                Invocation::Response(r) => panic!("{context}: unexpected answer {r:#}"),
                Invocation::Error(e) => {
                    stopped += 1;
                    // Calls side by side arrive in any order: name the call that was really failed.
                    let failed = proxy.log().get(at - 1).cloned().unwrap_or_default();
                    let context = format!("{context} (this run: {failed})");
                    let kind = e["errorType"].as_str().unwrap_or_default();
                    assert!(kind.starts_with("Retryable."), "{context}: {e:#}");
                    let message = e["errorMessage"].as_str().unwrap_or_default();
                    assert!(message.contains(&id), "{context}: the error names the execution: {message}");
                    // A page says what failed, unless publishing is what fails.
                    let pages = env.pages().await;
                    let record_exists = env.object(&format!("executions/{id}.json")).await.is_some();
                    if std::env::var("FAULT_DEBUG").is_ok() {
                        eprintln!("{context}\n{}\n{:#?}", f.logs(), proxy.log());
                    }
                    // ... unless the execution's OK is out or owed already (the promotion is verified and
                    // announced): a stall after it re-opens no incident; chat says it and the resume finishes.
                    let record = env.json(&format!("executions/{id}.json")).await;
                    let announced = record["steps"]
                        .as_array()
                        .is_some_and(|steps| steps.iter().any(|s| s["step"] == "notify" && s["outcome"] != "failed"))
                        || pages.iter().any(|p| message_of(p)["NewStateValue"] == "OK")
                        || record["owed"]
                            .as_array()
                            .is_some_and(|o| o.iter().any(|m| m["body"].as_str().unwrap_or_default().contains("\"OK\"")));
                    // A page needs a record to be resolved later: none is sent for an execution whose record was
                    // never written (the error itself answers the caller, and the source redelivers).
                    if kind == "Retryable.ExecutionStopped" && !failed.starts_with("SNS") && !announced && record_exists {
                        assert!(
                            pages.iter().any(|p| message_of(p)["EventType"].as_str().unwrap_or_default().contains("stalled")),
                            "{context}: no stall page; record exists {record_exists}: {pages:#?}"
                        );
                    }
                    resume(&env, &proxy, &token, &context).await;
                }
                Invocation::NoAnswer(why) => panic!("{context}: {why}\n{}", f.logs()),
            }
            assert_consistent(&env, &id, &context).await;
        }
    }
    println!("{stopped} runs stopped and were resumed; the rest completed through retries");
    assert!(stopped > 0, "persistent faults must stop some runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_each_call_then_reinvoked_promotes_exactly_once() {
    let upstream = &moto::shared().endpoint;
    let proxy = FaultProxy::start(upstream);
    let env = DrEnv::seed(upstream).await;
    proxy.plan(vec![]);
    let mut f = Function::start("manual-trigger", &via(&env, &proxy));
    assert_eq!(f.invoke(&failover("clean")).response()["outcome"], "completed");
    let calls = proxy.log();
    let mut unreached = 0;

    for at in 1..=calls.len() {
        for hold in [Fault::HoldBefore, Fault::HoldAfter] {
            let context = format!("killed at call {at} ({}), {hold:?}", calls[at - 1]);
            let env = DrEnv::seed(upstream).await;
            let token = format!("k{at}");
            let id = format!("failover-{token}");
            proxy.plan(vec![Rule { at, fault: hold, persistent: false }]);
            let mut f = Function::start("manual-trigger", &via(&env, &proxy));
            let pid = f.pid();
            let held_label = std::sync::Mutex::new(String::new());
            let (reached, answer) = std::thread::scope(|s| {
                let h = s.spawn(|| f.invoke_with_timeout(&failover(&token), Duration::from_secs(30)));
                if !proxy.wait_held(Duration::from_secs(20)) {
                    return (false, h.join().unwrap());
                }
                *held_label.lock().unwrap() = proxy.log().get(at - 1).cloned().unwrap_or_default();
                let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                (true, h.join().unwrap())
            });
            if !reached {
                // The lease (1 s here) is renewed when less than a quarter of it is left, so a slower run makes a
                // renewal or two more than a faster one: the clean run's last calls may not exist in this run. A
                // run that completed without a call `at` had nothing to be killed after; anything else fails.
                let completed = matches!(&answer, Invocation::Response(r) if r["outcome"] == "completed");
                assert!(completed && at + 3 > calls.len(), "{context}: the call was never made: {answer:?}");
                unreached += 1;
                continue;
            }
            assert!(matches!(answer, Invocation::NoAnswer(_)), "{context}: {answer:?}");
            resume(&env, &proxy, &token, &context).await;
            assert_consistent(&env, &id, &context).await;
            // Pages: one incident (one AlarmName); a page is sent again only when the crash hid whether it went.
            let pages = env.pages().await;
            let names: std::collections::BTreeSet<String> =
                pages.iter().map(|p| message_of(p)["AlarmName"].as_str().unwrap_or_default().to_owned()).collect();
            assert_eq!(names.len(), 1, "{context}: {pages:#?}");
            let alarms = pages.iter().filter(|p| message_of(p)["NewStateValue"] == "ALARM").count();
            let oks = pages.iter().filter(|p| message_of(p)["NewStateValue"] == "OK").count();
            // A crash in the round trip that sends a page can hide whether it went: the resumed attempt sends it
            // again, under the same AlarmName, which the paging service folds into the same incident. Never more.
            let held = held_label.into_inner().unwrap();
            assert!(oks == 1 || oks == 2, "{context} (held {held}): {oks} OK pages");
            assert!((1..=2).contains(&alarms), "{context} (held {held}): {alarms} ALARM pages");
        }
    }
    assert!(unreached <= 4, "{unreached} of {} kill points were never reached", 2 * calls.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_copies_of_a_trigger_and_one_other_at_once_promote_exactly_once() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut fns: Vec<Function> = (0..11).map(|_| Function::start("manual-trigger", &env.function_env())).collect();
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = fns
            .iter_mut()
            .enumerate()
            .map(|(i, f)| {
                let token = if i == 10 { "other" } else { "same" };
                s.spawn(move || f.invoke(&failover(token)).response())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let history = env.history("active").await;
    assert_eq!(history.len(), 2, "exactly one promotion: {history:?}\n{answers:#?}");
    let winner = history[1].2["execution_id"].as_str().unwrap().to_owned();
    let completed: Vec<&Value> = answers.iter().filter(|a| a["outcome"] == "completed").collect();
    assert_eq!(completed.len(), 1, "{answers:#?}");
    assert_eq!(completed[0]["execution_id"], winner.as_str());
    for a in &answers {
        match a["outcome"].as_str().unwrap() {
            "completed" => {}
            // Told the truth: which execution is in flight.
            "in_progress" => assert_eq!(a["in_flight"]["execution_id"], winner.as_str(), "{a:#}"),
            "already_completed" => assert_eq!(a["execution_id"], winner.as_str(), "{a:#}"),
            // The other trigger, after the winner finished: the secondary is already active.
            "noop" => assert_ne!(a["execution_id"], winner.as_str(), "{a:#}"),
            other => panic!("unexpected outcome {other}: {a:#}"),
        }
    }
    assert!(env.keys("locks/").await.is_empty());
}
