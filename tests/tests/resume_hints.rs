//! Issue 23, point 5, through the built binaries: every stall names the command that resumes it — the client
//! token for a human's execution, `approve` again for an approved one — in the answer, in the stall's page and
//! in `status`; and that command does resume it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
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

/// The functions' environment with the SDK pointed at the proxy and quick retries.
fn via(env: &DrEnv, proxy: &FaultProxy) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    for (k, v) in vars.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint.clone();
        }
    }
    vars.push(("DR_AWS_ATTEMPT_TIMEOUT_MS".into(), "2000".into()));
    vars.push(("DR_AWS_INITIAL_BACKOFF_MS".into(), "20".into()));
    vars
}

fn failover(client_token: Option<&str>) -> Value {
    let mut p = json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "us-east-1 outage",
                       "requested_by": "oncall@example.com"});
    if let Some(t) = client_token {
        p["client_token"] = json!(t);
    }
    p
}

fn error_message(i: Invocation) -> String {
    match i {
        Invocation::Error(e) => e["errorMessage"].as_str().unwrap_or_default().to_owned(),
        other => panic!("expected the stall's error, got {other:?}"),
    }
}

/// The reason of the stall's page (an `ALARM` that says where the execution stopped).
async fn stall_page(env: &DrEnv) -> String {
    let pages: Vec<Value> = env.pages().await.iter().map(message_of).collect();
    let stall = pages
        .iter()
        .find(|p| p["NewStateValue"] == "ALARM" && p["NewStateReason"].as_str().unwrap_or_default().contains("stopped at step"));
    stall.unwrap_or_else(|| panic!("no stall page: {pages:#?}"))["NewStateReason"].as_str().unwrap().to_owned()
}

/// What `status` says about resuming `id`.
fn status_how(m: &mut Function, id: &str) -> String {
    let status = m.invoke(&json!({"command": "status"})).response();
    let resumable = status["resumable_executions"].as_array().cloned().unwrap_or_default();
    let entry = resumable.iter().find(|r| r["execution_id"] == id);
    entry.unwrap_or_else(|| panic!("{id} is not listed as resumable: {status:#}"))["how"].as_str().unwrap().to_owned()
}

/// A human's failover that stops at its promotion (SSM refuses the write through the proxy).
async fn human_failover_that_stops(client_token: Option<&str>) -> (DrEnv, FaultProxy, String) {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.fail_matching("SSM PutParameter", Fault::ServerError);
    let mut m = Function::start("manual-trigger", &via(&env, &proxy));
    let message = error_message(m.invoke(&failover(client_token)));
    assert!(message.contains("stopped at step promote"), "{message}\n{}", m.logs());
    (env, proxy, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_failover_that_stops_names_its_client_token_everywhere() {
    let (env, _proxy, message) = human_failover_that_stops(Some("inc-23")).await;
    let command = "dr failover --to secondary --reason <the same reason> --token inc-23";
    assert!(message.contains(command) && message.contains("\"client_token\": \"inc-23\""), "{message}");
    let page = stall_page(&env).await;
    assert!(page.contains(command), "{page}");
    let mut m = Function::start("manual-trigger", &env.function_env());
    let how = status_how(&mut m, "failover-inc-23");
    assert!(how.contains(command), "{how}");
    // The command it names resumes it.
    let resumed = m.invoke(&failover(Some("inc-23"))).response();
    assert_eq!(resumed["outcome"], "completed", "{resumed:#}\n{}", m.logs());
    assert_eq!(resumed["execution_id"], "failover-inc-23");
    assert_eq!(env.get("active").await["site"], "secondary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_failover_without_a_token_names_the_generated_one() {
    let (env, _proxy, message) = human_failover_that_stops(None).await;
    // The execution id is `failover-<token>`: the token generated for the command is the one to give again.
    let id = message.split_whitespace().nth(1).unwrap().to_owned();
    let token = id.strip_prefix("failover-").unwrap_or_else(|| panic!("{message}")).to_owned();
    let command = format!("--token {token}");
    assert!(message.contains(&command), "{message}");
    assert!(stall_page(&env).await.contains(&command));
    let mut m = Function::start("manual-trigger", &env.function_env());
    assert!(status_how(&mut m, &id).contains(&command));
    let resumed = m.invoke(&failover(Some(&token))).response();
    assert_eq!(resumed["outcome"], "completed", "{resumed:#}\n{}", m.logs());
    assert_eq!(resumed["execution_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_failover_that_stops_names_approve_again_everywhere() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": "approval", "failover_alarms": [ALARM], "cooldown_minutes": 0})).await;
    let mut h = Function::start("health-alarm", &env.function_env());
    let waiting = h.invoke(&fixture("eventbridge-metric-alarm.json")).response();
    assert_eq!(waiting["outcome"], "awaiting_approval", "{waiting:#}");
    let id = waiting["execution_id"].as_str().unwrap().to_owned();
    env.pages().await;

    let proxy = FaultProxy::start(&moto::shared().endpoint);
    proxy.fail_matching("SSM PutParameter", Fault::ServerError);
    let mut approver = Function::start("manual-trigger", &via(&env, &proxy));
    let approve = json!({"command": "approve", "execution_id": id, "requested_by": "oncall@example.com"});
    let message = error_message(approver.invoke(&approve));
    let command = format!("dr approve {id}");
    assert!(message.contains("approving again") && message.contains(&command), "{message}");
    assert!(!message.contains("deliver the alarm again") && !message.contains("Lambda and EventBridge"), "{message}");
    let page = stall_page(&env).await;
    assert!(page.contains("approving again") && page.contains(&command), "{page}");
    let mut m = Function::start("manual-trigger", &env.function_env());
    assert!(status_how(&mut m, &id).contains(&command));
    // The command it names resumes it.
    let resumed = m.invoke(&approve).response();
    assert_eq!(resumed["outcome"], "completed", "{resumed:#}\n{}", m.logs());
    assert_eq!(env.get("active").await["site"], "secondary");
}
