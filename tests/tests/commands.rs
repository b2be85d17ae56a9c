//! `manual-trigger` commands beyond failover: check, snapshot, drill, validation, and the break-glass CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::dr_env::{self, DrEnv};
use tests::moto;
use tests::runtime_api::{Function, bin_dir};

fn message_of(envelope: &Value) -> Value {
    serde_json::from_str(envelope["Message"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_what_would_break_a_failover_and_pages_once_per_finding() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(r["outcome"], "noop", "{r:#}");
    assert_eq!(r["ready"], true, "{r:#}");
    assert_eq!(r["counts"]["critical"], 0);
    assert!(env.pages().await.is_empty());
    assert!(env.keys("locks/").await.is_empty(), "the write probe cleans up after itself");

    env.put("sites/secondary", &json!({"workspace_url": "https://x.cloud.databricks.com"})).await;
    let r = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(r["ready"], false);
    let finding = r["findings"].as_array().unwrap().iter().find(|f| f["id"] == "site-secondary").unwrap().clone();
    assert_eq!(finding["severity"], "critical");
    assert!(finding["what"].as_str().unwrap().contains("missing `region`"));
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(message_of(&pages[0])["NewStateValue"], "ALARM");
    // Unchanged: no second page.
    f.invoke(&json!({"command": "check"})).response();
    assert!(env.pages().await.is_empty());
    // Fixed: resolved.
    env.put("sites/secondary", &dr_env::secondary_site(&env.environment)).await;
    let r = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(r["ready"], true);
    let pages = env.pages().await;
    assert_eq!(pages.len(), 1);
    assert_eq!(message_of(&pages[0])["NewStateValue"], "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_on_demand_writes_files_and_a_manifest() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&json!({"command": "snapshot"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let key = r["snapshot_manifest_key"].as_str().unwrap();
    let manifest = env.json(key).await;
    assert_eq!(manifest["files"].as_array().unwrap().len(), r["files"].as_u64().unwrap() as usize);
    let text: String = env.keys("snapshots/").await.len().to_string();
    assert!(text.parse::<usize>().unwrap() >= 3);
    let params = env.json(&key.replace("manifest.json", "parameters.json")).await;
    assert!(!params.to_string().contains(dr_env::PRIMARY_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_runs_the_failover_on_a_copy_and_leaves_only_its_report() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": "auto", "failover_alarms": []})).await;
    let before = env.history("active").await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&json!({"command": "drill", "requested_by": "dr-team@example.com", "reason": "Q4 drill"})).response();
    assert_eq!(r["outcome"], "completed", "{r:#}\n{}", f.logs());
    assert_eq!(r["active_site"], "secondary", "the copy was promoted: {r:#}");
    for step in ["decide", "lock", "snapshot", "promote", "verify", "notify", "report"] {
        assert!(r["timings_ms"][step].is_u64(), "{step}: {r:#}");
    }
    assert_eq!(r["cleanup"]["verified"], true, "{r:#}");
    // The live active parameter was never written.
    assert_eq!(env.history("active").await, before);
    assert_eq!(env.get("active").await["site"], "primary");
    // No trace but the report, and the Delta assessment of the real data plane its snapshot made (not a drill
    // artefact: the latest assessment of the live replicas, which status reads).
    let id = r["execution_id"].as_str().unwrap();
    let mut keys = env.keys("").await;
    keys.sort();
    let expected = ["data-plane/delta-tables-latest.json".to_owned(), format!("reports/{id}.json"), format!("reports/{id}.md")];
    assert_eq!(keys, expected);
    let leftovers = env.ssm.get_parameters_by_path().path(format!("{}/drills", env.prefix)).recursive(true).send().await.unwrap();
    assert!(leftovers.parameters.unwrap_or_default().is_empty());
    let report = env.json(&format!("reports/{id}.json")).await;
    assert_eq!(report["drill"], true);
    assert_eq!(report["cleanup"]["verified"], true);
    assert!(report["rto_ms"].is_u64());
    assert!(report["rpo_estimate"].is_object());
    // Messages are info only: never an incident for on-call.
    let pages = env.pages().await;
    assert!(!pages.is_empty());
    for p in &pages {
        assert_eq!(p["MessageAttributes"]["severity"]["Value"], "info", "{p:#}");
        assert!(p["MessageAttributes"]["event_type"]["Value"].as_str().unwrap().starts_with("drill."));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_are_refused_beside_a_real_execution_and_on_blocked_dates() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let held = json!({"execution_id": "failover-live", "attempt_id": "a", "state": "running", "acquired_at": "2026-01-01T00:00:00Z",
                      "lease_expires_at": "2099-01-01T00:00:00Z", "holder": "test"});
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key("locks/failover.json")
        .body(held.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let r = f.invoke(&json!({"command": "drill", "requested_by": "me", "reason": "r"})).response();
    assert_eq!(r["outcome"], "rejected", "{r:#}");
    assert!(r["message"].as_str().unwrap().contains("failover-live"));
    env.s3.delete_object().bucket(&env.bucket).key("locks/failover.json").send().await.unwrap();

    let today = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap();
    let today = String::from_utf8(today.stdout).unwrap().trim().to_owned();
    env.put("policy", &json!({"mode": "approval", "drill": {"blocked_dates": [today]}})).await;
    let r = f.invoke(&json!({"command": "drill", "requested_by": "me", "reason": "r"})).response();
    assert_eq!(r["outcome"], "rejected", "{r:#}");
    assert!(r["message"].as_str().unwrap().contains("blocked date"), "{r:#}");
    assert!(env.keys("").await.is_empty(), "a refused drill leaves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_validates_its_payload() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    for (payload, needle) in [
        (json!({"command": "drill", "requested_by": "me"}), "missing field `reason`"),
        (json!({"command": "drill", "requested_by": "me", "reason": "r", "dry_run": true}), "unknown field `dry_run`"),
        (json!({"command": "approve", "execution_id": 12, "requested_by": "me"}), "field `execution_id`"),
        (json!({"command": "unlock", "execution_id": "x-1", "confirm": "x-2"}), "equal `execution_id`"),
        (
            json!({"command": "failback", "target": "primary", "reason": "r", "requested_by": "me", "confirm": "secondary"}),
            "`confirm`",
        ),
        (json!({"command": "check", "verbose": true}), "unknown field `verbose`"),
        (json!({"command": "snapshot", "label": "x"}), "unknown field `label`"),
    ] {
        let r = f.invoke(&payload).response();
        assert_eq!(r["outcome"], "rejected", "{payload}: {r:#}");
        assert!(r["message"].as_str().unwrap().contains(needle), "{payload}: {r:#}");
    }
    assert!(env.keys("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_runs_the_same_commands_without_lambda() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let dr = |payload: &Value| {
        let out = std::process::Command::new(bin_dir().join("dr"))
            .env_clear()
            .envs(env.function_env())
            .arg(payload.to_string())
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, status, logs) = dr(&json!({"command": "status"}));
    assert_eq!(code, Some(0), "{logs}");
    let mut f = Function::start("manual-trigger", &env.function_env());
    let lambda_status = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(status, lambda_status, "the CLI answers exactly what the function answers");

    let (code, r, logs) =
        dr(&json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "stack impaired",
                                      "requested_by": "me", "client_token": "bg1"}));
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(r["outcome"], "completed", "{r:#}");
    assert_eq!(env.get("active").await["execution_id"], "failover-bg1");
    let (code, r, _) = dr(&json!({"command": "stauts"}));
    assert_eq!(code, Some(2));
    assert_eq!(r["outcome"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_replication_incidents_show_in_status_check_snapshots_and_the_rpo_estimate() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let fixture = std::fs::read_to_string(format!(
        "{}/../events/replication-failure/sqs-direct-failed-replication.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut rf = Function::start("replication-failure", &env.function_env());
    let r = rf.invoke(&serde_json::from_str(&fixture).unwrap()).response();
    assert_eq!(r["batchItemFailures"], json!([]), "{r:#}");
    env.pages().await;

    let mut f = Function::start("manual-trigger", &env.function_env());
    let status = f.invoke(&json!({"command": "status"})).response();
    let incidents = status["replication_incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{status:#}");
    let check = f.invoke(&json!({"command": "check"})).response();
    let finding = check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"].as_str().unwrap().starts_with("replication-"))
        .unwrap()
        .clone();
    assert!(finding["what"].as_str().unwrap().contains("RPO risk"), "{finding:#}");
    assert!(env.pages().await.is_empty(), "check does not page again what replication-failure paged");

    let r = f
        .invoke(&json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "r", "requested_by": "me", "client_token": "rpo"}))
        .response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let report = env.json("reports/failover-rpo.json").await;
    assert_eq!(report["rpo_estimate"]["estimate"], "at_risk", "{:#}", report["rpo_estimate"]);
    assert_eq!(report["rpo_estimate"]["open_incidents"], 1);
    let snap = env.json("snapshots/failover-rpo/replication-incidents.json").await;
    assert_eq!(snap["open_incidents"], 1);
    let manifest = env.json("snapshots/failover-rpo/manifest.json").await;
    assert!(manifest["files"].as_array().unwrap().iter().any(|x| x["name"] == "replication-incidents.json"));
}
