//! Golden answers: each `manual-trigger` command's answer, as it crosses the process boundary (the function and
//! `dr --json` serialize it through `serde_json::to_value`, so keys are sorted), compared byte for byte with
//! `tests/golden/<name>.json`. The engine runs over the in-memory ports on a fixed clock with fixed client
//! tokens, so the answers are stable. `BLESS=1 cargo test -p engine --test golden` rewrites the files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use domain::site::SiteName;
use dr_failover::record::ExecutionState;
use dr_failover::rules::decision::Initiator;
use dr_failover::{Engine, EngineSettings, MoveRequest};
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use engine::commands;
use serde_json::{Value, json};
use std::path::PathBuf;
use time::macros::datetime;

/// The approval policy over the alarm `wh`.
const APPROVAL: &str = r#"{"mode":"approval","failover_alarms":["wh"]}"#;

type MemEngine = Engine<MemParameters, MemBucket, MemNotifier, FixedClock>;

const P: &str = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#;
const S: &str = r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#;
const ACTIVE: &str = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-01-01T00:00:00Z"}"#;

fn engine(policy: Option<&str>) -> MemEngine {
    let params = MemParameters::default();
    params.seed("/dr/p/sites/primary", P, "String");
    params.seed("/dr/p/sites/secondary", S, "String");
    params.seed("/dr/p/active", ACTIVE, "String");
    if let Some(policy) = policy {
        params.seed("/dr/p/policy", policy, "String");
    }
    Engine {
        params,
        bucket: MemBucket::default(),
        notifier: MemNotifier::default(),
        clock: FixedClock::at(datetime!(2026-11-25 12:00 UTC)),
        settings: EngineSettings::example(domain::names::SsmPrefix::parse("/dr/p").unwrap()),
        sources: Vec::new(),
        workspaces: None,
        dns: None,
    }
}

/// `text` with each random token (32 lowercase hex digits: attempt ids, a drill's id) shown as `<token>`.
fn tokens_masked(text: &str) -> String {
    let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if is_hex(c) {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 32 { "<token>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// Checks `value` against `golden/<name>.json` (or rewrites it under `BLESS=1`).
fn compare(name: &str, value: &Value) {
    let text = tokens_masked(&format!("{}\n", serde_json::to_string_pretty(value).unwrap()));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.json"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    } else {
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", path.display()));
        assert!(want == text, "{name}: the answer differs from {}:\n{text}", path.display());
    }
}

/// Runs `payload` and checks its answer against `golden/<name>.json`.
async fn golden(engine: &MemEngine, name: &str, payload: Value) -> Value {
    let response = commands::run(engine, &payload).await.unwrap();
    let value = serde_json::to_value(&response).unwrap();
    compare(name, &value);
    value
}

fn failover(token: &str) -> Value {
    json!({"command": "failover", "target": "secondary", "reason": "region down", "requested_by": "alice",
           "confirm": "secondary", "client_token": token})
}

/// An alarm's failover: under the approval policy it stops awaiting a human.
async fn alarm(engine: &MemEngine, id: &str) {
    let request = MoveRequest {
        execution_id: id.into(),
        initiator: Initiator::Alarm { alarm_name: "wh".into() },
        target: SiteName::Secondary,
        reason: "alarm".into(),
        trigger: json!({}),
    };
    let r = engine.run(request).await.unwrap();
    assert_eq!(r.state, Some(ExecutionState::AwaitingApproval), "{r:?}");
}

#[tokio::test]
async fn status_check_snapshot_and_rejection_answers_are_stable() {
    let e = engine(None);
    golden(&e, "status", json!({"command": "status"})).await;
    golden(&e, "check", json!({"command": "check"})).await;
    golden(&e, "snapshot", json!({"command": "snapshot"})).await;
    golden(&e, "rejected", json!({"command": "launch"})).await;
}

#[tokio::test]
async fn human_failover_and_failback_answers_are_stable() {
    let e = engine(None);
    golden(&e, "failover_completed", failover("t1")).await;
    golden(&e, "failover_again", failover("t1")).await;
    golden(&e, "failover_noop", failover("t2")).await;
    golden(&e, "status_after_failover", json!({"command": "status"})).await;
    golden(&e, "check_after_failover", json!({"command": "check"})).await;
    let back = json!({"command": "failback", "target": "primary", "reason": "back", "requested_by": "alice",
                      "confirm": "primary", "client_token": "t3"});
    golden(&e, "failback_completed", back).await;
}

#[tokio::test]
async fn approval_answers_are_stable() {
    let e = engine(Some(APPROVAL));
    alarm(&e, "alarm-1").await;
    golden(&e, "status_awaiting_approval", json!({"command": "status"})).await;
    golden(&e, "failover_in_progress", failover("t4")).await;
    golden(&e, "approve", json!({"command": "approve", "execution_id": "alarm-1", "requested_by": "bob"})).await;
    golden(&e, "approve_again", json!({"command": "approve", "execution_id": "alarm-1", "requested_by": "bob"})).await;
}

#[tokio::test]
async fn cancel_and_unlock_answers_are_stable() {
    let e = engine(Some(APPROVAL));
    alarm(&e, "alarm-2").await;
    golden(&e, "unlock_awaiting", json!({"command": "unlock", "execution_id": "alarm-2", "confirm": "alarm-2"})).await;
    let cancel = json!({"command": "cancel", "execution_id": "alarm-2", "confirm": "alarm-2", "requested_by": "bob",
                        "reason": "false alarm"});
    golden(&e, "cancel", cancel).await;
    golden(&e, "unlock_nothing", json!({"command": "unlock", "execution_id": "alarm-2", "confirm": "alarm-2"})).await;
}

#[tokio::test]
async fn drill_answer_is_stable() {
    let e = engine(None);
    golden(&e, "drill", json!({"command": "drill", "requested_by": "carol", "reason": "quarterly"})).await;
}
