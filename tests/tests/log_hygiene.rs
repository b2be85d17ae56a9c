//! Log hygiene (issue 16): every fixture through every function, and every manual command, end to end; the
//! processes' whole output (stdout and stderr: logs and EMF metrics) and everything published is searched for
//! the seeded secrets, and no line at INFO or above carries a whole event.
//!
//! Each input gets a canary: a unique value in a field no handler reads. A handler that logs the event (or a
//! body, a record, a message) as a whole prints the canary; one that logs only the fields it names does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::dr_env::{self, DrEnv};
use tests::moto;
use tests::runtime_api::Function;

fn fixtures(folder: &str) -> Vec<(String, Value)> {
    let dir = format!("{}/../events/{folder}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

const CANARY: &str = "CANARY-8d4f6b2e-whole-event-logged";

/// Puts the canary where no handler looks: a top-level field, and inside every embedded JSON string body
/// (SQS `body`, SNS `Message`), so that logging a body or a message as a whole shows too.
fn with_canary(v: &Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    if (k == "body" || k == "Message")
                        && let Value::String(s) = child
                        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
                    {
                        walk(&mut inner);
                        if let Value::Object(im) = &mut inner {
                            im.insert("logHygieneCanary".into(), json!(CANARY));
                        }
                        *s = inner.to_string();
                        continue;
                    }
                    walk(child);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = v.clone();
    walk(&mut v);
    if let Value::Object(m) = &mut v {
        m.insert("logHygieneCanary".into(), json!(CANARY));
    }
    v
}

/// The lines of `output` that break a rule, with the rule.
fn offences(output: &str, secrets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for line in output.lines() {
        for s in secrets {
            if line.contains(s) {
                out.push(format!("secret {s:?} in: {line}"));
            }
        }
        let level = serde_json::from_str::<Value>(line).ok().and_then(|v| v["level"].as_str().map(str::to_owned));
        let at_info_or_above = matches!(level.as_deref(), Some("INFO" | "WARN" | "ERROR"));
        if at_info_or_above && line.contains(CANARY) {
            out.push(format!("a whole event at {level:?}: {line}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_and_no_whole_event_in_any_output() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": "notify-only", "failover_alarms": ["databricks-prod-workspace-unhealthy"]})).await;
    let secrets = [dr_env::PRIMARY_TOKEN, "dapi-SEEDED-SECRET-secondary-fedcba9876543210"];
    let mut checked = 0;
    for function in ["health-alarm", "replication-failure", "manual-trigger"] {
        let mut f = Function::start(function, &env.function_env());
        let mut inputs = fixtures(function);
        if function == "manual-trigger" {
            for payload in [
                json!({"command": "check"}),
                json!({"command": "snapshot"}),
                json!({"command": "drill", "requested_by": "hygiene@example.com", "reason": "log hygiene"}),
                json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "hygiene",
                       "requested_by": "hygiene@example.com", "client_token": "hyg-1"}),
                json!({"command": "failback", "target": "primary", "confirm": "primary", "reason": "hygiene",
                       "requested_by": "hygiene@example.com", "client_token": "hyg-2"}),
                json!({"command": "unlock", "execution_id": "nothing", "confirm": "nothing", "requested_by": "hygiene@example.com"}),
                json!({"command": "cancel", "execution_id": "nothing", "confirm": "nothing", "requested_by": "hygiene@example.com"}),
                json!({"command": "approve", "execution_id": "nothing", "requested_by": "hygiene@example.com"}),
            ] {
                inputs.push((format!("{}", payload["command"]), payload));
            }
        }
        for (name, input) in inputs {
            // Commands are strict (unknown fields are rejected): they get no canary, their fields are known.
            let payload = if function == "manual-trigger" { input } else { with_canary(&input) };
            let answer = format!("{:?}", f.invoke(&payload));
            for s in secrets {
                assert!(!answer.contains(s), "{function} {name}: the answer holds a secret: {answer}");
            }
            checked += 1;
        }
        let bad = offences(&f.logs(), &secrets);
        assert!(bad.is_empty(), "{function}:\n{}", bad.join("\n"));
        // The check can fail: the canary did reach the function (its quarantine keeps raw inputs verbatim).
        assert!(f.logs().lines().count() > 0, "{function} logged nothing: the search saw nothing");
    }
    // Everything published and everything written to the control bucket: no secret either.
    let published: String =
        env.pages().await.iter().chain(env.chats().await.iter()).map(|m| m.to_string()).collect::<Vec<_>>().join("\n");
    let mut written = String::new();
    for key in env.keys("").await {
        written.push_str(&String::from_utf8_lossy(&env.object(&key).await.unwrap_or_default()));
    }
    assert!(written.contains(CANARY), "the quarantine keeps inputs verbatim: the canary must be in the bucket");
    for s in secrets {
        assert!(!published.contains(s), "a secret was published");
        assert!(!written.contains(s), "a secret was written to the control bucket");
    }
    println!("{checked} inputs through the three functions; no secret, no whole event at INFO or above");
    assert!(checked > 30);
}

#[test]
fn the_search_finds_what_it_looks_for() {
    // Proof that the rules can fail.
    let line = format!(r#"{{"level":"INFO","message":"event","event":"{{\"logHygieneCanary\":\"{CANARY}\"}}"}}"#);
    assert_eq!(offences(&line, &["s3cr3t"]).len(), 1);
    assert_eq!(offences(r#"{"level":"DEBUG","token":"s3cr3t"}"#, &["s3cr3t"]).len(), 1);
    assert!(offences(&format!(r#"{{"level":"DEBUG","event":"{CANARY}"}}"#), &[]).is_empty(), "DEBUG may hold an event");
}
