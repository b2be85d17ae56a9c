//! `manual-trigger` run as Lambda runs it (Runtime API) against moto.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use tests::dr_env::{self, DrEnv};
use tests::moto;
use tests::runtime_api::Function;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/manual-trigger/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_from_the_seeded_parameters() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&fixture("status.json")).response();

    assert_eq!(r["outcome"], "noop");
    assert_eq!(r["active_site"], "primary");
    assert_eq!(r["environment"], env.environment.as_str());
    assert_eq!(r["active"]["execution_id"], "bootstrap");
    let mut active_doc = env.get("active").await;
    for k in ["site", "execution_id", "promoted_at"] {
        active_doc.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(r["active"]["config"], active_doc);
    assert_eq!(r["sites"]["primary"]["config"], dr_env::primary_site(&env.environment));
    assert_eq!(r["sites"]["secondary"]["config"], dr_env::secondary_site(&env.environment));
    assert_eq!(r["policy"]["source"], "parameter");
    assert_eq!(r["policy"]["policy"]["mode"], "approval");
    assert_eq!(r["policy"]["policy"]["failover_alarms"][0], format!("databricks-{}-workspace-unhealthy", env.environment));
    assert_eq!(r["data_plane"]["locations"][0]["name"], "sales.orders");
    assert_eq!(r["problems"], json!([]), "{r:#}");

    // SecureString values never leave SSM: not in the answer, not in the logs.
    assert!(!r.to_string().contains(dr_env::PRIMARY_TOKEN));
    assert!(!f.logs().contains(dr_env::PRIMARY_TOKEN));
    // Logs are JSON lines.
    let first = f.logs().lines().next().map(str::to_owned).unwrap_or_default();
    assert!(serde_json::from_str::<Value>(&first).is_ok(), "log line is not JSON: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_broken_documents_instead_of_failing() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("sites/secondary", &json!({"region": "us-west-2"})).await;
    env.put_raw("policy", r#"{"mode":"auto","failover_alarm":["x"]}"#).await;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(r["outcome"], "noop");
    assert_eq!(r["active_site"], "primary");
    let problems = r["problems"].to_string();
    assert!(problems.contains("sites/secondary") && problems.contains("workspace_url"), "{problems}");
    assert!(problems.contains("/policy") && problems.contains("failover_alarm"), "{problems}");
    assert!(r["sites"]["secondary"]["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_payloads_are_rejected_with_what_is_expected_and_change_nothing() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let before = env.ssm.get_parameter().name(format!("{}/active", env.prefix)).send().await.unwrap().parameter.unwrap().version;
    let mut f = Function::start("manual-trigger", &env.function_env());
    let cases = [
        (fixture("rejected-unknown-command.json"), vec!["unknown command \"stauts\"", "expected one of", "status"]),
        (fixture("rejected-misspelled-field.json"), vec!["unknown field `confrim`", "expected one of", "`confirm`"]),
        (fixture("rejected-not-an-object.json"), vec!["an array", "expected a JSON object"]),
        (
            json!({"command": "failover", "target": "secondary", "reason": "r", "requested_by": "me", "confirm": "yes"}),
            vec!["`confirm`", "equal `target`"],
        ),
        (json!({"command": "status", "extra": 1}), vec!["unknown field `extra`"]),
    ];
    for (payload, needles) in cases {
        let r = f.invoke(&payload).response();
        assert_eq!(r["outcome"], "rejected", "{payload}: {r}");
        assert_eq!(r["active_site"], "primary", "{payload}: {r}");
        let msg = r["message"].as_str().unwrap_or_default();
        for n in needles {
            assert!(msg.contains(n), "{payload}: {msg:?} lacks {n:?}");
        }
    }
    let after = env.ssm.get_parameter().name(format!("{}/active", env.prefix)).send().await.unwrap().parameter.unwrap().version;
    assert_eq!(before, after, "a rejected command changed {}/active", env.prefix);
    assert!(env.keys("").await.is_empty(), "a rejected command wrote to the control bucket");
    assert!(env.drain(&env.paging_queue).await.is_empty(), "a rejected command paged");
}

#[test]
fn a_missing_variable_fails_the_cold_start_naming_it() {
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-west-2"),
        ("DR_ENVIRONMENT", "prod"),
        ("DR_SSM_PREFIX", "/dr/prod"),
        ("DR_PAGING_TOPIC_ARN", "arn:aws:sns:us-west-2:123456789012:p"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut f = Function::start("manual-trigger", &env);
    let code = f.wait_exit(Duration::from_secs(20));
    assert!(matches!(code, Some(c) if c != 0), "expected a failed cold start, got {code:?}");
    assert!(f.logs().contains("DR_CONTROL_BUCKET"), "{}", f.logs());
}

#[test]
fn a_malformed_variable_fails_the_cold_start_naming_it() {
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-west-2"),
        ("DR_ENVIRONMENT", "prod"),
        ("DR_SSM_PREFIX", "/dr/prod/"),
        ("DR_CONTROL_BUCKET", "ctl"),
        ("DR_PAGING_TOPIC_ARN", "arn:aws:sns:us-west-2:123456789012:p"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut f = Function::start("manual-trigger", &env);
    let code = f.wait_exit(Duration::from_secs(20));
    assert!(matches!(code, Some(c) if c != 0), "expected a failed cold start, got {code:?}");
    assert!(f.logs().contains("DR_SSM_PREFIX") && f.logs().contains("trailing"), "{}", f.logs());
}
