//! Unit tests of the alarm rules over the in-memory ports.

use super::*;
use crate::EngineSettings;
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use time::macros::datetime;

const ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:wh";

fn engine() -> Engine<MemParameters, MemBucket, MemNotifier, FixedClock> {
    engine_in(r#"{"mode":"notify-only","failover_alarms":["wh"],"cooldown_minutes":0}"#)
}

fn engine_in(policy: &str) -> Engine<MemParameters, MemBucket, MemNotifier, FixedClock> {
    let params = MemParameters::default();
    params.seed("/dr/p/sites/primary", r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#, "String");
    params.seed("/dr/p/sites/secondary", r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#, "String");
    params.seed(
        "/dr/p/active",
        r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-01-01T00:00:00Z"}"#,
        "String",
    );
    params.seed("/dr/p/policy", policy, "String");
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

/// An EventBridge state change of the alarm `wh`: `old` (entered at `old_at`) -> `new` at `at`.
fn change(new: &str, at: &str, old: &str, old_at: &str) -> AlarmChange {
    crate::rules::alarm::parse(&json!({
        "version": "0", "id": "x", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "account": "123456789012", "time": at, "region": "us-east-1", "resources": [ARN],
        "detail": {
            "alarmName": "wh",
            "state": { "value": new, "reason": "r", "timestamp": at },
            "previousState": { "value": old, "reason": "r", "timestamp": old_at },
            "configuration": { "metrics": [] }
        }
    }))
    .unwrap()
}

/// The `NewStateValue`s paged under the page name of `execution_id`.
fn pages_of(engine: &Engine<MemParameters, MemBucket, MemNotifier, FixedClock>, execution_id: &str) -> Vec<String> {
    engine
        .notifier
        .on(Channel::Paging)
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.body).unwrap())
        .filter(|b| b["AlarmName"].as_str().is_some_and(|n| n.ends_with(execution_id)))
        .map(|b| b["NewStateValue"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_ok_that_fails_midway_still_resolves_every_alarm_before_it_when_delivered_again() {
    // ALARM at T1, INSUFFICIENT_DATA, ALARM at T3, OK at T4: the OK resolves both pages. Its first delivery fails
    // while paging (the topic is down): delivered again, it must still resolve the older page, which only the
    // alarm's pages document links to this OK (the OK's previous state is the ALARM at T3).
    let e = engine();
    let (t1, t2, t3, t4) =
        ("2026-11-25T12:00:00.000Z", "2026-11-25T12:05:00.000Z", "2026-11-25T12:10:00.000Z", "2026-11-25T12:15:00.000Z");
    let first = change("ALARM", t1, "OK", "2026-11-24T12:00:00.000Z");
    on_alarm_change(&e, &first).await.unwrap();
    on_alarm_change(&e, &change("INSUFFICIENT_DATA", t2, "ALARM", t1)).await.unwrap();
    let second = change("ALARM", t3, "INSUFFICIENT_DATA", t2);
    on_alarm_change(&e, &second).await.unwrap();
    let ok = change("OK", t4, "ALARM", t3);
    e.notifier.fail(Channel::Paging, true);
    let r = on_alarm_change(&e, &ok).await;
    assert!(r.is_err(), "the paging topic fails: the delivery fails, to come again");
    e.notifier.fail(Channel::Paging, false);
    on_alarm_change(&e, &ok).await.unwrap();
    assert_eq!(pages_of(&e, &second.execution_id()), ["ALARM", "OK"], "the OK page owed by the failed delivery is paid");
    assert_eq!(pages_of(&e, &first.execution_id()), ["ALARM", "OK"], "the older ALARM's page is resolved too");
}

#[tokio::test]
async fn an_approval_refused_by_the_readiness_gate_is_resolved_once_the_site_is_usable() {
    // Approval mode: the ALARM prepares a failover; the secondary's document breaks; a human approves and the
    // readiness gate refuses: an ALARM page whose cause is the document, not the alarm. Like a human's refused
    // request, `check` resolves it once the document is usable again. (An OK before the approval withdraws the
    // approval: `approve` then has nothing to approve.)
    let e = engine_in(r#"{"mode":"approval","failover_alarms":["wh"],"cooldown_minutes":0}"#);
    let alarm = change("ALARM", "2026-11-25T12:00:00.000Z", "OK", "2026-11-24T12:00:00.000Z");
    let id = alarm.execution_id();
    on_alarm_change(&e, &alarm).await.unwrap();
    assert_eq!(pages_of(&e, &id), ["ALARM"]);
    let good = e.params.get_one("/dr/p/sites/secondary").await.unwrap().unwrap().value;
    e.params.put("/dr/p/sites/secondary", "not json {", true).await.unwrap();
    let refused = e.approve(&id, "oncall").await.unwrap();
    assert_eq!(refused.state, Some(ExecutionState::Refused), "{}", refused.message);
    let at_refusal = pages_of(&e, &id);
    assert_eq!(at_refusal.last().map(String::as_str), Some("ALARM"), "{at_refusal:?}");
    // While the document is unusable the refusal stands; once repaired, check's sweep resolves it.
    e.pay_owed_pages(50).await.unwrap();
    assert_eq!(pages_of(&e, &id), at_refusal);
    e.params.put("/dr/p/sites/secondary", &good, true).await.unwrap();
    e.pay_owed_pages(50).await.unwrap();
    let resolved = pages_of(&e, &id);
    assert_eq!(resolved.len(), at_refusal.len() + 1, "{resolved:?}");
    assert_eq!(resolved.last().map(String::as_str), Some("OK"), "the refusal's page is resolved");
    e.pay_owed_pages(50).await.unwrap();
    assert_eq!(pages_of(&e, &id).len(), resolved.len(), "once");
}

#[tokio::test]
async fn an_ok_before_the_approval_withdraws_it() {
    // The alarm recovers while its failover awaits approval: the page is resolved and nothing is left to approve.
    let e = engine_in(r#"{"mode":"approval","failover_alarms":["wh"],"cooldown_minutes":0}"#);
    let alarm = change("ALARM", "2026-11-25T12:00:00.000Z", "OK", "2026-11-24T12:00:00.000Z");
    let id = alarm.execution_id();
    on_alarm_change(&e, &alarm).await.unwrap();
    on_alarm_change(&e, &change("OK", "2026-11-25T12:05:00.000Z", "ALARM", "2026-11-25T12:00:00.000Z")).await.unwrap();
    assert_eq!(pages_of(&e, &id), ["ALARM", "OK"]);
    let answer = e.approve(&id, "oncall").await.unwrap();
    assert_eq!(answer.state, Some(ExecutionState::Noop), "{}", answer.message);
    assert_eq!(pages_of(&e, &id), ["ALARM", "OK"], "no page after the recovery");
}
