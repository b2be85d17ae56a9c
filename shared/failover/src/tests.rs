//! Unit tests of the engine over the in-memory ports.

use super::*;
use crate::record::{ExecutionRecord, ExecutionState, Step, StepOutcome};
use crate::response::Outcome;
use crate::rules::decision::Initiator;
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports as domain_params;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::{Acquired, LockDoc, LockState};
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use dr_ports::snapshot;
use dr_ports::snapshot::{SnapshotContext, SnapshotSource};
use dr_ports::{Channel, Parameter, ParameterStore, WriteCondition};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use time::OffsetDateTime;
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
        workspaces: None,
        dns: None,
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
    async fn unlabel(&self, name: &str, version: i64, labels: &[String]) -> Result<(), StoreError> {
        self.inner.unlabel(name, version, labels).await
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
        workspaces: None,
        dns: None,
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
    assert_eq!(late.run(alarm_request("alarm-b")).await.unwrap().outcome, Outcome::Superseded);
}

#[tokio::test]
async fn a_resumed_execution_never_writes_active_back_after_a_later_failback() {
    // Issue 11, case 1: an alarm execution promotes and verifies, then stops (here on its report); on-call
    // unlocks and fails back; the alarm is delivered again.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.bucket.failing_puts.lock().unwrap().push("reports/".into());
    let stopped = e.run(alarm_request("alarm-1")).await;
    assert!(matches!(stopped, Err(EngineError::Stopped { step: Step::Report, .. })), "{stopped:?}");
    e.bucket.failing_puts.lock().unwrap().clear();
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
    e.bucket.failing_puts.lock().unwrap().push("snapshots/".into());
    assert!(e.run(alarm_request("alarm-1")).await.is_err());
    e.bucket.failing_puts.lock().unwrap().clear();
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
    // A replay answers the first result as it was (issue 11, case 10), and pages nothing again.
    let replay = e.run(alarm_request("alarm-3")).await.unwrap();
    assert_eq!((replay.outcome, replay.state), (Outcome::Noop, Some(ExecutionState::Notified)));
    assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
}

#[tokio::test]
async fn a_notify_only_page_that_fails_is_owed_and_paid_by_the_next_delivery() {
    // Issue 11, case 3: the decision used to be saved terminal before paging; a failed publish was never retried.
    let e = engine(r#"{"mode":"notify-only","failover_alarms":["wh"]}"#);
    e.notifier.fail(Channel::Paging, true);
    let first = e.run(alarm_request("alarm-1")).await;
    assert!(matches!(first, Err(EngineError::Stopped { step: Step::Notify, .. })), "{first:?}");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-1.json").unwrap()).unwrap();
    assert_eq!((rec.state, rec.owed.len()), (ExecutionState::Notified, 1), "{rec:#?}");
    e.notifier.fail(Channel::Paging, false);
    let again = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!((again.outcome, again.state), (Outcome::Noop, Some(ExecutionState::Notified)));
    assert_eq!(e.notifier.on(Channel::Paging).len(), 1, "the owed page went out once");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-1.json").unwrap()).unwrap();
    assert!(rec.owed.is_empty() && rec.sent(Channel::Paging, "failover.notify_only"), "{rec:#?}");
}

#[tokio::test]
async fn a_failing_paging_topic_never_blocks_a_promotion_and_its_pages_are_paid_later() {
    // Issue 11, case 4: the first page was joined with the snapshot, so a paging failure blocked the promotion;
    // a failing chat publish stalled a verified promotion.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.notifier.fail(Channel::Paging, true);
    e.notifier.fail(Channel::Chat, true);
    let r = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    assert!(r.message.contains("owed"), "{}", r.message);
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 2, "promoted despite the paging failure");
    e.notifier.fail(Channel::Paging, false);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AlreadyCompleted);
    let pages: Vec<Value> = e.notifier.on(Channel::Paging).iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
    let states: Vec<&str> = pages.iter().map(|p| p["NewStateValue"].as_str().unwrap()).collect();
    assert_eq!(states, ["ALARM", "OK"], "paid in order: {pages:#?}");
}

#[tokio::test]
async fn an_approved_execution_that_stopped_is_resumed_by_approving_again() {
    // Issue 11, case 5: `approve` on it answered "running" and a synchronous approve is never redelivered.
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    e.bucket.failing_puts.lock().unwrap().push("reports/".into());
    assert!(matches!(e.approve("alarm-1", "alice").await, Err(EngineError::Stopped { step: Step::Report, .. })));
    e.bucket.failing_puts.lock().unwrap().clear();
    let again = e.approve("alarm-1", "alice").await.unwrap();
    assert_eq!(again.outcome, Outcome::Completed, "{}", again.message);
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_approved_execution_that_stops_before_promoting_pages_approve_again_and_status_says_so() {
    // Issue 23: its page said "delivered again", but nothing redelivers an alarm whose delivery succeeded.
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    e.params.failing_puts.lock().unwrap().push("/dr/p/active".into());
    assert!(matches!(e.approve("alarm-1", "alice").await, Err(EngineError::Stopped { step: Step::Promote, .. })));
    let pages: Vec<Value> = e.notifier.on(Channel::Paging).iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
    let stalled = pages.iter().find(|p| p["NewStateReason"].as_str().unwrap_or_default().contains("stopped at step"));
    let reason = stalled.unwrap_or_else(|| panic!("no stall page: {pages:#?}"))["NewStateReason"].as_str().unwrap();
    assert!(reason.contains("approving again") && reason.contains("dr approve alarm-1"), "{reason}");
    assert!(!reason.contains("delivered again"), "{reason}");
    // What `status` says of it (its `how`) is the record's resume hint.
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-1.json").unwrap()).unwrap();
    assert!(rec.resume_hint().contains("dr approve alarm-1"), "{}", rec.resume_hint());
    e.params.failing_puts.lock().unwrap().clear();
    assert_eq!(e.approve("alarm-1", "alice").await.unwrap().outcome, Outcome::Completed);
}

#[tokio::test]
async fn an_alarm_that_meets_another_executions_lock_is_recorded_and_paged_into_its_incident() {
    // Issue 11, case 7: answered `in_progress` with no record, no page and no retry.
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    let other = e.run(alarm_request("alarm-2")).await.unwrap();
    assert_eq!(other.outcome, Outcome::InProgress);
    assert_eq!(other.in_flight.as_ref().unwrap().execution_id, "alarm-1");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-2.json").unwrap()).unwrap();
    assert_eq!(rec.state, ExecutionState::Joined);
    let pages = e.notifier.on(Channel::Paging);
    assert_eq!(pages.len(), 2);
    let first: Value = serde_json::from_str(&pages[0].body).unwrap();
    let joined: Value = serde_json::from_str(&pages[1].body).unwrap();
    assert_eq!(joined["AlarmName"], first["AlarmName"], "paged into the holder's incident");
    assert_eq!(joined["NewStateValue"], "ALARM");
    // Redelivered: the same answer, no second page.
    assert_eq!(e.run(alarm_request("alarm-2")).await.unwrap().outcome, Outcome::InProgress);
    assert_eq!(e.notifier.on(Channel::Paging).len(), 2);
}

#[tokio::test]
async fn a_stop_beside_a_successful_record_save_keeps_the_record_truthful() {
    // Issue 11, case 8: the save's ETag was lost in `try_join!`; the stop then conflicted, and the stored record
    // said `running, error: null` without the failed step.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.params.failing_puts.lock().unwrap().push("/dr/p/active".into());
    let stopped = e.run(alarm_request("alarm-1")).await;
    assert!(matches!(stopped, Err(EngineError::Stopped { step: Step::Promote, .. })), "{stopped:?}");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-1.json").unwrap()).unwrap();
    assert!(rec.error.as_deref().unwrap_or_default().contains("promote"), "{rec:#?}");
    assert!(rec.steps.iter().any(|s| s.step == Step::Promote && s.outcome == StepOutcome::Failed), "{rec:#?}");
}

#[tokio::test]
async fn replays_answer_the_first_result_of_refused_and_failed_executions() {
    // Issue 11, case 10: a repeat of a failed, refused or notify-only execution answered `already_completed`.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.params.put("/dr/p/sites/secondary", r#"{"region":"us-west-2"}"#, true).await.unwrap();
    let refused = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(refused.outcome, Outcome::Rejected);
    let replay = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!((replay.outcome, replay.state), (Outcome::Rejected, Some(ExecutionState::Refused)));
}

#[tokio::test]
async fn an_attempt_that_lost_its_lease_cannot_promote_and_never_releases_the_new_holders_lock() {
    // Issue 11, case 11: a slow attempt (a CLI on a sleeping laptop) could land its PutParameter after its lease
    // was taken over, and `release` deleted by execution, not by attempt.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    let now = e.clock.now();
    let ours = LockDoc {
        execution_id: "failover-x".into(),
        attempt_id: "a1".into(),
        state: LockState::Running,
        acquired_at: rfc3339(now),
        lease_expires_at: rfc3339(now + e.settings.lock_lease),
        holder: "cli".into(),
    };
    let Acquired::Yes { etag, .. } = lock::acquire(&e.bucket, lock::FAILOVER_LOCK_KEY, &ours, false, now).await.unwrap() else {
        panic!("lock not taken")
    };
    // Early in the lease: nothing to renew.
    let held = e.keep_lease(&Held { doc: ours.clone(), etag: etag.clone(), store: None }).await.unwrap();
    assert_eq!(held.etag, etag);
    // Past the lease, another attempt of the same execution takes the lock over.
    e.clock.advance(e.settings.lock_lease + time::Duration::seconds(1));
    let later = e.clock.now();
    let theirs = LockDoc { attempt_id: "a2".into(), lease_expires_at: rfc3339(later + e.settings.lock_lease), ..ours.clone() };
    assert!(matches!(
        lock::acquire(&e.bucket, lock::FAILOVER_LOCK_KEY, &theirs, false, later).await.unwrap(),
        Acquired::Yes { .. }
    ));
    // The slow attempt wakes up: renewing its lease fails, so it never reaches PutParameter.
    assert!(e.keep_lease(&Held { doc: ours.clone(), etag, store: None }).await.is_err());
    // And its release leaves the new holder's lock alone.
    assert!(!lock::release_attempt(&e.bucket, lock::FAILOVER_LOCK_KEY, "failover-x", "a1").await.unwrap());
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).unwrap().contains("\"a2\""));
}

/// The lock taken by `e` (its local clock) while the store's clock says `store`; the held lock as the attempt has it.
async fn take_with_store_at(e: &Engine<MemParameters, MemBucket, MemNotifier, FixedClock>, store: OffsetDateTime) -> Held {
    e.bucket.set_store_time(store);
    let now = e.clock.now();
    let ours = LockDoc {
        execution_id: "failover-x".into(),
        attempt_id: "a1".into(),
        state: LockState::Running,
        acquired_at: rfc3339(now),
        lease_expires_at: rfc3339(now + e.settings.lock_lease),
        holder: "cli".into(),
    };
    let Acquired::Yes { etag, doc, store, .. } =
        lock::acquire(&e.bucket, lock::FAILOVER_LOCK_KEY, &ours, false, now).await.unwrap()
    else {
        panic!("lock not taken")
    };
    Held { doc, etag, store }
}

#[tokio::test]
async fn a_promotion_whose_clock_is_behind_the_store_does_not_keep_a_lease_the_store_says_expired() {
    // Issue 23: a `dr` 10 minutes behind S3. Three minutes on, its lease (2 min, in the store's time) is past for
    // everyone and a failback took the lock over; by its own clock the lease still had 9 minutes
    // to run (the expiry is the store's), so it skipped the renewal and promoted under the failback.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    let store = e.clock.now();
    *e.clock.0.lock().unwrap() = store - time::Duration::minutes(10);
    let held = take_with_store_at(&e, store).await;
    let later = store + time::Duration::minutes(3);
    e.clock.advance(time::Duration::minutes(3));
    e.bucket.set_store_time(later);
    let failback = LockDoc {
        execution_id: "failback-y".into(),
        attempt_id: "lambda".into(),
        acquired_at: rfc3339(later),
        lease_expires_at: rfc3339(later + e.settings.lock_lease),
        ..held.doc.clone()
    };
    let took = lock::acquire(&e.bucket, lock::FAILOVER_LOCK_KEY, &failback, false, later).await.unwrap();
    assert!(matches!(took, Acquired::Yes { took_over: Some(_), .. }), "{took:?}");
    assert!(e.keep_lease(&held).await.is_err(), "the renewal's compare-and-swap finds the lock taken over");
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).unwrap().contains("failback-y"));
}

#[tokio::test]
async fn a_promotion_whose_clock_is_ahead_of_the_store_renews_to_the_store_s_time_plus_the_lease() {
    // A `dr` 10 minutes ahead: near the end of its lease (by the store) it renews, to the store's time plus the
    // lease, never to its own clock's (an expiry nobody else would see pass for 10 more minutes).
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    let store = e.clock.now();
    *e.clock.0.lock().unwrap() = store + time::Duration::minutes(10);
    let held = take_with_store_at(&e, store).await;
    assert_eq!(held.doc.lease_expires_at, rfc3339(store + e.settings.lock_lease));
    // Early in the lease by the store's clock (though past it by the local one): nothing to renew.
    let same = e.keep_lease(&held).await.unwrap();
    assert_eq!(same.etag, held.etag);
    let later = store + e.settings.lock_lease - time::Duration::seconds(10);
    e.clock.advance(e.settings.lock_lease - time::Duration::seconds(10));
    e.bucket.set_store_time(later);
    let renewed = e.keep_lease(&held).await.unwrap();
    assert_ne!(renewed.etag, held.etag);
    // Counted from the store's time at its earliest (S3's `Date` has whole seconds), as any taker reads it.
    let until = later + e.settings.lock_lease;
    assert_eq!(renewed.doc.lease_expires_at, rfc3339(until));
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).unwrap().contains(&rfc3339(until)));
}

#[tokio::test]
async fn the_hundred_and_first_promotion_does_not_fail_on_ssm_s_version_limit() {
    // Issue 11, case 9: every promotion labels its version of `active`; SSM keeps 100 versions and refuses a
    // new one while the oldest has a label, so the 101st promotion failed mid-flight.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    let body = e.params.get_one("/dr/p/active").await.unwrap().unwrap().value;
    e.params.label("/dr/p/active", 1, "bootstrap").await.unwrap();
    for _ in 0..99 {
        e.params.put("/dr/p/active", &body, true).await.unwrap();
    }
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 100);
    let r = e.run(alarm_request("alarm-1")).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed, "{}", r.message);
    let history = e.params.history("/dr/p/active").await.unwrap();
    assert_eq!(history.len(), 100);
    assert_eq!(history.last().unwrap().labels, vec!["alarm-1".to_owned()]);
}

#[tokio::test]
async fn cancel_ends_a_waiting_execution_resolves_its_page_and_releases_the_lock() {
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    let r = e.cancel("alarm-1", "oncall", Some("false alarm")).await.unwrap();
    assert_eq!((r.outcome, r.state), (Outcome::Completed, Some(ExecutionState::Cancelled)), "{}", r.message);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "the lock is released");
    let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-1.json").unwrap()).unwrap();
    assert!(rec.notes.iter().any(|n| n.what.contains("cancelled by oncall: false alarm")), "{rec:#?}");
    assert!(e.bucket.text("reports/alarm-1.md").unwrap().contains("false alarm"));
    let pages: Vec<(Value, String)> = e
        .notifier
        .on(Channel::Paging)
        .iter()
        .map(|m| (serde_json::from_str(&m.body).unwrap(), m.attributes["severity"].clone()))
        .collect();
    assert_eq!(pages.len(), 2);
    assert_eq!((pages[1].0["NewStateValue"].as_str(), &pages[1].1), (Some("OK"), &pages[0].1), "same severity");
    assert_eq!(pages[1].0["AlarmName"], pages[0].0["AlarmName"]);
    // Nothing can resume it any more; the alarm's redelivery answers the cancellation.
    assert_eq!(e.approve("alarm-1", "alice").await.unwrap().outcome, Outcome::Rejected);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().state, Some(ExecutionState::Cancelled));
    assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 1);
    assert_eq!(e.notifier.on(Channel::Paging).len(), 2);
}

/// Found by the soak: a cancel whose lock release failed answered "run cancel again", and the retry answered
/// "cancelled" but kept the lock (its own `running` lock, within its lease), so the next failover alarm joined a
/// lock nobody worked under.
#[tokio::test]
async fn a_retried_cancel_releases_the_lock_its_first_attempt_could_not() {
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    e.bucket.failing_deletes.lock().unwrap().push(lock::FAILOVER_LOCK_KEY.to_owned());
    let first = e.cancel("alarm-1", "oncall", None).await;
    assert!(matches!(first, Err(EngineError::Stopped { step: Step::Release, .. })), "{first:?}");
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_some());
    e.bucket.failing_deletes.lock().unwrap().clear();
    let again = e.cancel("alarm-1", "oncall", None).await.unwrap();
    assert_eq!((again.outcome, again.state), (Outcome::Completed, Some(ExecutionState::Cancelled)), "{}", again.message);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "the retried cancel released the lock");
    let next = e.run(alarm_request("alarm-2")).await.unwrap();
    assert_eq!(next.outcome, Outcome::AwaitingApproval, "{}", next.message);
}

#[tokio::test]
async fn cancel_refuses_what_it_must_not_end() {
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    assert_eq!(e.cancel("nope", "oncall", None).await.unwrap().outcome, Outcome::Rejected);
    // Promoted already: resume to finish, never cancel.
    e.bucket.failing_puts.lock().unwrap().push("reports/".into());
    assert!(e.run(alarm_request("alarm-1")).await.is_err());
    e.bucket.failing_puts.lock().unwrap().clear();
    let r = e.cancel("alarm-1", "oncall", None).await.unwrap();
    assert_eq!(r.outcome, Outcome::Rejected);
    assert!(r.message.contains("promoted already"), "{}", r.message);
    // Ended: nothing to cancel.
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::Completed);
    assert_eq!(e.cancel("alarm-1", "oncall", None).await.unwrap().outcome, Outcome::Rejected);
}

#[tokio::test]
async fn unlock_says_the_execution_stays_resumable_and_cancel_is_the_way_to_end_it() {
    let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
    assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
    let r = e.unlock("alarm-1", "oncall").await.unwrap();
    assert!(r.message.contains("stays resumable") && r.message.contains("`cancel`"), "{}", r.message);
}

#[tokio::test]
async fn check_pays_pages_that_no_delivery_will_come_for() {
    let e = engine(r#"{"mode":"notify-only","failover_alarms":["wh"]}"#);
    e.notifier.fail(Channel::Paging, true);
    assert!(e.run(alarm_request("alarm-1")).await.is_err());
    let (paid, still) = e.pay_owed_pages(50).await.unwrap();
    assert_eq!((paid.len(), still.len()), (0, 1));
    e.notifier.fail(Channel::Paging, false);
    let (paid, still) = e.pay_owed_pages(50).await.unwrap();
    assert_eq!((paid, still.len()), (vec!["alarm-1: failover.notify_only".to_owned()], 0));
    assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
    assert_eq!(e.pay_owed_pages(50).await.unwrap(), (vec![], vec![]), "paid once");
}

#[tokio::test]
async fn unlock_never_breaks_the_lock_of_a_running_attempt_within_its_lease() {
    // Found by the simulation (seed 3090 of the long search): unlock deleted a live attempt's lock, a second
    // attempt of the same execution took a new one, and both wrote `active`.
    let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    let now = e.clock.now();
    let live = LockDoc {
        execution_id: "failover-x".into(),
        attempt_id: "a1".into(),
        state: LockState::Running,
        acquired_at: rfc3339(now),
        lease_expires_at: rfc3339(now + e.settings.lock_lease),
        holder: "test".into(),
    };
    assert!(matches!(lock::acquire(&e.bucket, lock::FAILOVER_LOCK_KEY, &live, false, now).await.unwrap(), Acquired::Yes { .. }));
    let r = e.unlock("failover-x", "oncall").await.unwrap();
    assert_eq!(r.outcome, Outcome::InProgress, "{}", r.message);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_some(), "the live lock stays");
    // Once its lease is over, it is broken.
    e.clock.advance(e.settings.lock_lease + time::Duration::seconds(1));
    assert_eq!(e.unlock("failover-x", "oncall").await.unwrap().outcome, Outcome::Completed);
    assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none());
}

/// A snapshot source whose Delta assessment was still computing at its deadline (the task goes on and stores
/// its result under `delta::LATEST_KEY`).
struct StillComputing;

impl SnapshotSource for StillComputing {
    fn name(&self) -> &'static str {
        "delta-tables"
    }
    fn collect<'a>(
        &'a self,
        _: &'a SnapshotContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<snapshot::SnapshotFile>, StoreError>> {
        Box::pin(async {
            let body = json!({"generated_at": "2026-11-25T12:00:00Z", "complete": false,
                "workload": {"state": "still-computing", "summary": "workload RPO still computing (at least 3 s, table a)"},
                "tables": [{"name": "a", "kind": "delta", "status": "still-computing"}]});
            Ok(vec![snapshot::SnapshotFile {
                name: dr_delta::rules::report::SNAPSHOT_FILE.into(),
                body: body.to_string().into_bytes(),
            }])
        })
    }
}

#[tokio::test]
async fn the_started_page_says_still_computing_and_the_report_takes_the_finished_assessment() {
    let mut e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.sources = vec![std::sync::Arc::new(StillComputing)];
    // What the assessment's own task stored when it finished (the same assessment: the same start), and an older
    // one that must not be taken for it.
    let finished = json!({"generated_at": "2026-11-25T12:00:00Z", "complete": true,
        "workload": {"state": "known", "summary": "workload RPO 9 s, 2 versions behind (worst table a)"}});
    e.bucket
        .put(dr_delta::LATEST_KEY, finished.to_string().into_bytes(), "application/json", WriteCondition::Overwrite)
        .await
        .unwrap();
    let r = e.run(alarm_request("alarm-9")).await.unwrap();
    assert_eq!(r.outcome, Outcome::Completed);
    let started = &e.notifier.on(Channel::Paging)[0];
    assert!(started.body.contains("RPO: workload RPO still computing (at least 3 s, table a)"), "{}", started.body);
    let report = e.bucket.text("reports/alarm-9.md").unwrap();
    assert!(report.contains("- RPO estimate: workload RPO 9 s, 2 versions behind (worst table a)"), "{report}");

    // Another assessment's result (a different start) is not this one's: the report keeps "still computing".
    let mut e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
    e.sources = vec![std::sync::Arc::new(StillComputing)];
    let other =
        json!({"generated_at": "2026-11-25T06:00:00Z", "complete": true, "workload": {"state": "known", "summary": "old"}});
    e.bucket
        .put(dr_delta::LATEST_KEY, other.to_string().into_bytes(), "application/json", WriteCondition::Overwrite)
        .await
        .unwrap();
    e.run(alarm_request("alarm-10")).await.unwrap();
    let report = e.bucket.text("reports/alarm-10.md").unwrap();
    assert!(report.contains("- RPO estimate: workload RPO still computing"), "{report}");
}
