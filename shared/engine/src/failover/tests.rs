//! Unit tests of the engine over the in-memory ports.

use super::*;
use crate::ports as domain_params;
use crate::ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use std::sync::Mutex;
use time::macros::datetime;

const P: &str = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#;
const S: &str = r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#;

fn engine(policy: &str) -> Engine<MemParameters, MemBucket, MemNotifier, FixedClock> {
    let params = MemParameters::default();
    params.seed("/dr/p/sites/primary", P, "String");
    params.seed("/dr/p/sites/secondary", S, "String");
    params.seed(
        "/dr/p/active",
        r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-01-01T00:00:00Z"}"#,
        "String",
    );
    params.seed("/dr/p/policy", policy, "String");
    params.seed("/dr/p/secrets/token", "TOP-SECRET", "SecureString");
    Engine {
        params,
        bucket: MemBucket::default(),
        notifier: MemNotifier::default(),
        clock: FixedClock::at(datetime!(2026-11-25 12:00 UTC)),
        settings: EngineSettings::example(domain::names::SsmPrefix::parse("/dr/p").unwrap()),
        sources: Vec::new(),
    }
}

fn alarm_request(id: &str) -> MoveRequest {
    MoveRequest {
        execution_id: id.into(),
        initiator: Initiator::Alarm { alarm_name: "wh".into() },
        target: SiteName::Secondary,
        reason: "alarm".into(),
        trigger: json!({}),
    }
}

/// A parameter store whose first tree read answers from an earlier snapshot: the view of an execution
/// whose reads happened before another execution promoted (its lock request was slowed meanwhile).
struct StaleFirstTree<'a> {
    inner: &'a MemParameters,
    stale: Mutex<Option<Vec<Parameter>>>,
}

impl ParameterStore for StaleFirstTree<'_> {
    async fn get_many(&self, names: &[String]) -> Result<BTreeMap<String, Parameter>, StoreError> {
        self.inner.get_many(names).await
    }
    async fn get_tree(&self, path: &str) -> Result<Vec<Parameter>, StoreError> {
        let stale = self.stale.lock().unwrap().take();
        match stale {
            Some(tree) => Ok(tree),
            None => self.inner.get_tree(path).await,
        }
    }
    async fn get_one(&self, selector: &str) -> Result<Option<Parameter>, StoreError> {
        self.inner.get_one(selector).await
    }
    async fn put(&self, name: &str, value: &str, overwrite: bool) -> Result<i64, StoreError> {
        self.inner.put(name, value, overwrite).await
    }
    async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), StoreError> {
        self.inner.label(name, version, label).await
    }
    async fn history(&self, name: &str) -> Result<Vec<domain_params::ParameterVersion>, StoreError> {
        self.inner.history(name).await
    }
    async fn delete(&self, names: &[String]) -> Result<(), StoreError> {
        self.inner.delete(names).await
    }
}

#[tokio::test]
async fn a_decision_made_before_another_promotion_is_decided_again_under_the_lock() {
    // Issue 11, case 2: two failover alarms at once; the second one's reads happened before the first
    // promoted, its lock request was slowed until the first released the lock.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh","wh2"]}"#);
    let before = e.params.get_tree("/dr/p").await.unwrap();
    assert_eq!(e.run(alarm_request("alarm-a")).await.unwrap().outcome, Outcome::Completed);
    let late = Engine {
        params: StaleFirstTree { inner: &e.params, stale: Mutex::new(Some(before)) },
        bucket: &e.bucket,
        notifier: &e.notifier,
        clock: &e.clock,
        settings: e.settings.clone(),
        sources: Vec::new(),
    };
    let r = late.run(alarm_request("alarm-b")).await.unwrap();
    assert_eq!(r.outcome, Outcome::Superseded, "{}", r.message);
    assert!(r.message.contains("alarm-a"), "{}", r.message);
    let history = e.params.history("/dr/p/active").await.unwrap();
    assert_eq!(history.len(), 2, "one promotion only: {history:?}");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-b.json").unwrap()).unwrap();
    assert_eq!(rec.state, ExecutionState::Superseded);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "the lock is released");
    // It said that it stood down, under its own incident.
    let stood_down = e.notifier.on(Channel::Paging).into_iter().filter(|m| m.body.contains("alarm-b")).count();
    assert_eq!(stood_down, 1);
    // A redelivery answers the first result as it was.
    assert_eq!(late.run(alarm_request("alarm-b")).await.unwrap().outcome, Outcome::AlreadyCompleted);
}

#[tokio::test]
async fn a_resumed_execution_never_writes_active_back_after_a_later_failback() {
    // Issue 11, case 1: an alarm execution promotes and verifies, then stops on the chat publish; on-call
    // unlocks and fails back; the alarm is delivered again.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.notifier.fail(Channel::Chat, true);
    let stopped = e.run(alarm_request("alarm-1")).await;
    assert!(matches!(stopped, Err(EngineError::Stopped { step: Step::Notify, .. })), "{stopped:?}");
    e.notifier.fail(Channel::Chat, false);
    assert_eq!(e.unlock("alarm-1", "oncall").await.unwrap().outcome, Outcome::Completed);
    let back = MoveRequest {
        execution_id: "failback-1".into(),
        initiator: Initiator::Human { requested_by: "oncall".into() },
        target: SiteName::Primary,
        reason: "primary healthy".into(),
        trigger: json!({}),
    };
    assert_eq!(e.run(back).await.unwrap().outcome, Outcome::Completed);
    let versions = e.params.history("/dr/p/active").await.unwrap().len();

    let again = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(again.outcome, Outcome::Superseded, "{}", again.message);
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), versions, "active was written again");
    let active = e.params.get_one("/dr/p/active").await.unwrap().unwrap();
    assert!(active.value.contains("failback-1"), "{}", active.value);
}

#[tokio::test]
async fn a_policy_switched_to_notify_only_stops_a_resume() {
    // Issue 11, case 1 (second half): the execution stopped before promoting; the policy became notify-only.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.notifier.fail(Channel::Paging, true);
    assert!(e.run(alarm_request("alarm-1")).await.is_err());
    e.notifier.fail(Channel::Paging, false);
    e.params.put("/dr/p/policy", r#"{"mode":"notify-only","failover_alarms":["wh"]}"#, true).await.unwrap();
    e.clock.advance(time::Duration::minutes(5)); // the stopped attempt's lease has expired
    let again = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(again.outcome, Outcome::Superseded, "{}", again.message);
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 1, "nothing promoted");
}

#[tokio::test]
async fn approval_waits_then_the_approval_promotes_once() {
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    let r = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(r.outcome, Outcome::AwaitingApproval);
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 1);
    let pages = e.notifier.on(Channel::Paging);
    assert_eq!(pages.len(), 1);
    assert!(pages[0].body.contains("dr-prod-manual-trigger") && pages[0].body.contains("alarm-1"));
    // Redelivered while waiting: same answer, nothing sent.
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
    // Another alarm meanwhile: told the truth about the execution in flight.
    let other = e.run(alarm_request("alarm-2")).await.unwrap();
    assert_eq!(other.outcome, Outcome::InProgress);
    assert_eq!(other.in_flight.unwrap().execution_id, "alarm-1");

    e.clock.advance(time::Duration::minutes(5));
    let approved = e.approve("alarm-1", "alice").await.unwrap();
    assert_eq!(approved.outcome, Outcome::Completed);
    let history = e.params.history("/dr/p/active").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].labels, vec!["alarm-1".to_owned()]);
    assert_eq!(e.approve("alarm-1", "alice").await.unwrap().outcome, Outcome::AlreadyCompleted);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none());
    // No secret in anything written or sent.
    let written: String = e.bucket.keys().iter().filter_map(|k| e.bucket.text(k)).collect();
    let sent: String = e.notifier.sent.lock().unwrap().iter().map(|(_, m)| m.body.clone()).collect();
    assert!(!written.contains("TOP-SECRET") && !sent.contains("TOP-SECRET"));
}

#[tokio::test]
async fn cooldown_turns_an_alarm_into_a_page_recorded_once() {
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"],"cooldown_minutes":60}"#);
    e.params.put("/dr/p/active", r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-11-25T11:30:00Z"}"#, true).await.unwrap();
    let r = e.run(alarm_request("alarm-3")).await.unwrap();
    assert_eq!(r.outcome, Outcome::Noop);
    assert_eq!(r.state, Some(ExecutionState::Notified));
    assert!(r.message.contains("cooldown"));
    assert_eq!(e.run(alarm_request("alarm-3")).await.unwrap().outcome, Outcome::AlreadyCompleted);
    assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
}
