//! The failover engine end to end: `manual-trigger` run through the Runtime API against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::dr_env::{self, DrEnv};
use tests::moto;
use tests::runtime_api::Function;

fn failover(token: &str) -> Value {
    json!({"command": "failover", "target": "secondary", "reason": "us-east-1 outage drill", "requested_by": "oncall@example.com",
           "confirm": "secondary", "client_token": token})
}

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn attr(envelope: &Value, name: &str) -> String {
    envelope["MessageAttributes"][name]["Value"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_failover_promotes_snapshots_pages_and_reports_once() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());

    let r = f.invoke(&failover("t1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!(r["active_site"], "secondary");
    assert_eq!(r["execution_id"], "failover-t1");
    for step in ["decide", "lock", "snapshot", "promote", "verify", "notify", "report"] {
        assert!(r["timings_ms"][step].is_u64(), "no timing for {step}: {r:#}");
    }
    assert_eq!(r["report_key"], "reports/failover-t1.json");

    // One promotion: the secondary's document plus site, execution_id, promoted_at, labelled.
    let active = env.get("active").await;
    assert_eq!(active["site"], "secondary");
    assert_eq!(active["execution_id"], "failover-t1");
    assert_eq!(active["workspace_url"], dr_env::secondary_site(&env.environment)["workspace_url"]);
    assert!(active["promoted_at"].as_str().unwrap().ends_with('Z'));
    let history = env.history("active").await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].1, vec!["failover-t1".to_owned()]);

    // The record: completed, every step once, in order.
    let rec = env.json("executions/failover-t1.json").await;
    assert_eq!(rec["state"], "completed");
    let steps: Vec<&str> = rec["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["decide", "lock", "fence", "snapshot", "promote", "verify", "notify", "report", "release"]);
    assert_eq!(rec["config_before"]["site"], "primary");
    assert_eq!(rec["config_after"]["site"], "secondary");

    // The snapshot: every file in the manifest with its sha256; the secret withheld.
    let manifest = env.json("snapshots/failover-t1/manifest.json").await;
    let files = manifest["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["name"] == "parameters.json") && files.iter().any(|f| f["name"] == "policy.json"));
    for file in files {
        let body = env.object(file["key"].as_str().unwrap()).await.unwrap();
        let sha: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(file["sha256"], sha.as_str(), "{file}");
    }
    let params = env.json("snapshots/failover-t1/parameters.json").await;
    let secret = params["parameters"].as_array().unwrap().iter().find(|p| p["type"] == "SecureString").unwrap();
    assert_eq!(secret["value"], Value::Null);
    let active_entry =
        params["parameters"].as_array().unwrap().iter().find(|p| p["name"].as_str().unwrap().ends_with("/active")).unwrap();
    assert!(active_entry["value"].as_str().unwrap().contains("\"site\":\"primary\""), "{active_entry}");

    // Report, both forms.
    let report = env.json("reports/failover-t1.json").await;
    assert_eq!(report["state"], "completed");
    assert!(report["rto_ms"].is_u64());
    let md = String::from_utf8(env.object("reports/failover-t1.md").await.unwrap()).unwrap();
    assert!(md.contains("## Timeline") && md.contains("| promote |"), "{md}");

    // Pages: ALARM when it starts, OK when verified, same AlarmName, CloudWatch-shaped, with attributes.
    let pages = env.pages().await;
    assert_eq!(pages.len(), 2, "{pages:#?}");
    let (start, done) = (message_of(&pages[0]), message_of(&pages[1]));
    assert_eq!(start["NewStateValue"], "ALARM");
    assert_eq!(done["NewStateValue"], "OK");
    assert_eq!(start["AlarmName"], done["AlarmName"]);
    assert_eq!(start["Region"], "US West (Oregon)");
    for p in &pages {
        let subject = p["Subject"].as_str().unwrap();
        assert!(subject.len() < 100 && subject.is_ascii() && !subject.contains('\n'), "{subject}");
        assert_eq!(attr(p, "environment"), env.environment);
        assert_eq!(attr(p, "incident_key"), format!("dr-{}-failover-t1", env.environment));
        assert!(["critical", "info"].contains(&attr(p, "severity").as_str()));
    }
    assert!(pages[0]["Subject"].as_str().unwrap().starts_with("ALARM: "));
    assert!(pages[1]["Subject"].as_str().unwrap().starts_with("OK: "));
    // Chat: the custom notification schema, one thread.
    let chats = env.chats().await;
    assert!(!chats.is_empty());
    for c in &chats {
        let m = message_of(c);
        assert_eq!(m["version"], "1.0");
        assert_eq!(m["metadata"]["threadId"], format!("dr-{}-failover-t1", env.environment));
    }
    // The lock is released.
    assert!(env.keys("locks/").await.is_empty());
    // CloudWatch metrics in Embedded Metric Format: the outcome and each step's duration.
    let emf: Vec<Value> =
        f.logs().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect();
    assert!(emf.iter().any(|m| m["ExecutionsByOutcome"] == 1 && m["Outcome"] == "completed"), "{emf:#?}");
    assert!(emf.iter().any(|m| m["Step"] == "promote" && m["StepDurationMs"].is_u64()), "{emf:#?}");

    // The same command again (same client token): the first result, nothing done again.
    let again = f.invoke(&failover("t1")).response();
    assert_eq!(again["outcome"], "already_completed", "{again:#}");
    assert_eq!(again["execution_id"], "failover-t1");
    assert_eq!(env.history("active").await.len(), 2);
    assert!(env.pages().await.is_empty());

    // A new failover toward the active site: nothing to do, recorded, no page.
    let noop = f.invoke(&failover("t2")).response();
    assert_eq!(noop["outcome"], "noop", "{noop:#}");
    assert_eq!(env.json("executions/failover-t2.json").await["state"], "noop");
    assert_eq!(env.history("active").await.len(), 2);
    assert!(env.pages().await.is_empty());

    // Failback is the same move toward the primary.
    let back = f
        .invoke(&json!({"command": "failback", "target": "primary", "reason": "region recovered", "requested_by": "oncall@example.com",
                        "confirm": "primary", "client_token": "b1"}))
        .response();
    assert_eq!(back["outcome"], "completed", "{back:#}");
    assert_eq!(env.get("active").await["site"], "primary");
    assert_eq!(env.get("active").await["execution_id"], "failback-b1");

    // No secret anywhere: messages, bucket objects, logs.
    let mut everything = f.logs();
    for m in env.pages().await.into_iter().chain(env.chats().await) {
        everything.push_str(&m.to_string());
    }
    for key in env.keys("").await {
        everything.push_str(&String::from_utf8_lossy(&env.object(&key).await.unwrap()));
    }
    assert!(!everything.contains(dr_env::PRIMARY_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_may_override_notify_only_and_the_override_is_recorded() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": "notify-only", "failover_alarms": []})).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&failover("o1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let overrides = r["decision"]["overrides"].to_string();
    assert!(overrides.contains("notify-only") && overrides.contains("oncall@example.com"), "{overrides}");
    let md = String::from_utf8(env.object("reports/failover-o1.md").await.unwrap()).unwrap();
    assert!(md.contains("override: policy mode is notify-only"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_gate_refuses_an_invalid_target_and_pages() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("sites/secondary", &json!({"workspace_url": "http://not-loopback.example.com", "region": "us-west-2"})).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&failover("g1")).response();
    assert_eq!(r["outcome"], "rejected", "{r:#}");
    assert!(r["message"].as_str().unwrap().contains("readiness gate"), "{r:#}");
    assert_eq!(env.get("active").await["site"], "primary");
    assert_eq!(env.history("active").await.len(), 1);
    assert_eq!(env.json("executions/failover-g1.json").await["state"], "refused");
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    let opened = message_of(&pages[0]);
    assert_eq!(opened["NewStateValue"], "ALARM");
    assert!(opened["NewStateReason"].as_str().unwrap().contains("the next `check` resolves this page"), "{opened:#}");
    // The refusal's ALARM has its OK: a `check` while the document is still broken resolves nothing; once it is
    // fixed, the next `check` resolves the page (it used to stay open for ever: no alarm's OK comes for a human).
    f.invoke(&json!({"command": "check"})).response();
    assert!(env.pages().await.iter().all(|p| message_of(p)["AlarmName"] != opened["AlarmName"]), "resolved too early");
    env.put("sites/secondary", &dr_env::secondary_site(&env.environment)).await;
    f.invoke(&json!({"command": "check"})).response();
    let resolved: Vec<Value> =
        env.pages().await.iter().map(message_of).filter(|m| m["AlarmName"] == opened["AlarmName"]).collect();
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["NewStateValue"], "OK");
    assert!(resolved[0]["NewStateReason"].as_str().unwrap().contains("usable again"), "{:#}", resolved[0]);
    // And once only.
    f.invoke(&json!({"command": "check"})).response();
    assert!(env.pages().await.iter().all(|p| message_of(p)["AlarmName"] != opened["AlarmName"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_breaks_a_stuck_lock_and_records_it() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let stuck = json!({"execution_id": "failover-stuck", "attempt_id": "a1", "state": "running",
                       "acquired_at": "2026-11-25T10:00:00Z", "lease_expires_at": "2099-01-01T00:00:00Z", "holder": "test"});
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key("locks/failover.json")
        .body(stuck.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let mut f = Function::start("manual-trigger", &env.function_env());

    // While it is held, a failover is told the truth and changes nothing.
    let r = f.invoke(&failover("u1")).response();
    assert_eq!(r["outcome"], "in_progress", "{r:#}");
    assert_eq!(r["in_flight"]["execution_id"], "failover-stuck");
    assert_eq!(env.get("active").await["site"], "primary");

    let wrong = f.invoke(&json!({"command": "unlock", "execution_id": "failover-other", "confirm": "failover-other"})).response();
    assert_eq!(wrong["outcome"], "rejected");
    let ok = f
        .invoke(
            &json!({"command": "unlock", "execution_id": "failover-stuck", "confirm": "failover-stuck", "requested_by": "me"}),
        )
        .response();
    assert_eq!(ok["outcome"], "completed", "{ok:#}");
    assert!(env.keys("locks/").await.is_empty());
    let r = f.invoke(&failover("u1")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hundred_and_first_promotion_makes_room_in_ssm_first() {
    // Issue 11, case 9 (seen): SSM keeps 100 versions and refuses a new one while the oldest carries a label
    // (moto enforces it too); every promotion labels its version, so the 101st promotion failed mid-flight.
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let name = format!("{}/active", env.prefix);
    env.ssm.label_parameter_version().name(&name).parameter_version(1).labels("bootstrap").send().await.unwrap();
    let body = env.get("active").await;
    for _ in 0..99 {
        env.put("active", &body).await;
    }
    assert_eq!(env.history("active").await.len(), 100);
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&failover("v101")).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    let history = env.history("active").await;
    assert_eq!(history.len(), 100, "SSM keeps 100");
    assert_eq!(history.last().unwrap().1, vec!["failover-v101".to_owned()], "{history:?}");
    assert_eq!(history.last().unwrap().2["site"], "secondary");
}
