//! Races between writers of one execution record: the alarm's `OK` (no lock) against the preparation of an
//! approval (under the lock), and a write whose answer was lost against another writer's. The interleavings are
//! forced by ports that run the other writer at an exact call.

use super::*;
use crate::alarm;
use crate::record;
use crate::record::{ExecutionRecord, ExecutionState, Recorder, Step};
use crate::response::Outcome;
use crate::rules::decision::{Action, Decision, Initiator};
use domain::notification::{PageState, Severity};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports::documents;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
use dr_ports::{Channel, ControlBucket, Notifier, OutgoingMessage, StoredObject, WriteCondition};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use time::macros::datetime;

const POLICY: &str = r#"{"mode":"approval","failover_alarms":["databricks-prod-workspace-unhealthy"]}"#;

type Hook<'a> = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> + Send + 'a>;

/// Runs `hook` once, just before the first call whose description contains every one of `needles`.
struct Trap<'a> {
    needles: Vec<&'static str>,
    hook: Mutex<Option<Hook<'a>>>,
}

impl<'a> Trap<'a> {
    fn new(needles: Vec<&'static str>, hook: Hook<'a>) -> Self {
        Trap { needles, hook: Mutex::new(Some(hook)) }
    }

    async fn spring(&self, call: &str) {
        if !self.needles.iter().all(|n| call.contains(n)) {
            return;
        }
        let hook = self.hook.lock().unwrap().take();
        if let Some(h) = hook {
            h().await;
        }
    }

    fn sprung(&self) -> bool {
        self.hook.lock().unwrap().is_none()
    }
}

/// The bucket, with a trap before one put (described as `put {key} {body}`).
struct TrapBucket<'a, 'h, B = MemBucket> {
    inner: &'a B,
    trap: Trap<'h>,
}

impl<B: ControlBucket> ControlBucket for TrapBucket<'_, '_, B> {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        self.trap.spring(&format!("put {key} {}", String::from_utf8_lossy(&body))).await;
        self.inner.put(key, body, content_type, condition).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_recent(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.list_recent(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
    }
}

/// The topics, with a trap before one publish (described by its body).
struct TrapNotifier<'a> {
    inner: &'a MemNotifier,
    trap: Trap<'a>,
}

impl Notifier for TrapNotifier<'_> {
    async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        self.trap.spring(&format!("{channel} {}", message.body)).await;
        self.inner.publish(channel, message).await
    }
    async fn probe(&self, channel: Channel) -> Result<bool, StoreError> {
        self.inner.probe(channel).await
    }
    async fn publish_all(&self, channel: Channel, messages: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
        self.inner.publish_all(channel, messages).await
    }
}

struct World {
    params: MemParameters,
    bucket: MemBucket,
    notifier: MemNotifier,
    clock: FixedClock,
}

fn world() -> World {
    let params = MemParameters::default();
    params.seed("/dr/p/sites/primary", r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#, "String");
    params.seed("/dr/p/sites/secondary", r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#, "String");
    params.seed(
        "/dr/p/active",
        r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-01-01T00:00:00Z"}"#,
        "String",
    );
    params.seed("/dr/p/policy", POLICY, "String");
    World {
        params,
        bucket: MemBucket::default(),
        notifier: MemNotifier::default(),
        clock: FixedClock::at(datetime!(2026-11-25 12:00 UTC)),
    }
}

fn engine_over<B: ControlBucket, N: Notifier>(w: &World, bucket: B, notifier: N) -> Engine<&MemParameters, B, N, &FixedClock> {
    Engine {
        params: &w.params,
        bucket,
        notifier,
        clock: &w.clock,
        settings: EngineSettings::example(domain::names::SsmPrefix::parse("/dr/p").unwrap()),
        sources: Vec::new(),
        workspaces: None,
        dns: None,
    }
}

fn change(file: &str) -> crate::rules::alarm::AlarmChange {
    let text = match file {
        "alarm" => include_str!("../../../events/health-alarm/eventbridge-metric-alarm.json"),
        _ => include_str!("../../../events/health-alarm/eventbridge-ok.json"),
    };
    crate::rules::alarm::parse(&serde_json::from_str(text).unwrap()).unwrap()
}

/// The paging topic's states, in order (`ALARM`/`OK`).
fn page_states(n: &MemNotifier) -> Vec<String> {
    n.on(Channel::Paging)
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.body).unwrap()["NewStateValue"].as_str().unwrap().to_owned())
        .collect()
}

fn stored(w: &World, id: &str) -> ExecutionRecord {
    serde_json::from_str(&w.bucket.text(&record::record_key(id)).unwrap()).unwrap()
}

/// The recovery wins whatever point of the preparation it lands at: the record ends (never written back to
/// waiting), the last page is an `OK`, and no lock is left.
fn assert_recovery_won(w: &World, id: &str) {
    let rec = stored(w, id);
    assert!(rec.state.is_terminal(), "the recovered execution's record stays ended: {:?}", rec.state);
    let states = page_states(&w.notifier);
    assert_ne!(states.last().map(String::as_str), Some("ALARM"), "no ALARM after the recovery's OK: {states:?}");
    assert!(
        w.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(),
        "no lock left for an alarm that is OK: {:?}",
        w.bucket.text(lock::FAILOVER_LOCK_KEY)
    );
}

/// Runs the ALARM with the OK handled at the call `needles` describe (a put when `on_put`, else a publish).
async fn alarm_with_ok_at(w: &World, on_put: bool, needles: Vec<&'static str>) -> String {
    let ok_engine = engine_over(w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let r = alarm::on_alarm_change(&ok_engine, &change("ok")).await;
            assert!(r.is_ok(), "the OK is handled: {r:?}");
        })
    });
    let a = change("alarm");
    if on_put {
        let e = engine_over(w, TrapBucket { inner: &w.bucket, trap: Trap::new(needles, hook) }, &w.notifier);
        let r = alarm::on_alarm_change(&e, &a).await;
        assert!(e.bucket.trap.sprung(), "the OK landed");
        tracing::info!(answer = ?r.map(|o| o.to_json()), "alarm answered");
    } else {
        let e = engine_over(w, &w.bucket, TrapNotifier { inner: &w.notifier, trap: Trap::new(needles, hook) });
        let r = alarm::on_alarm_change(&e, &a).await;
        assert!(e.notifier.trap.sprung(), "the OK landed");
        tracing::info!(answer = ?r.map(|o| o.to_json()), "alarm answered");
    }
    a.execution_id()
}

#[tokio::test]
async fn an_ok_before_the_first_record_write_is_never_overwritten_by_the_preparation() {
    let w = world();
    let id = alarm_with_ok_at(&w, true, vec!["put executions/", "awaiting_approval"]).await;
    assert_eq!(stored(&w, &id).state, ExecutionState::Noop, "the recovery's record");
    assert!(page_states(&w.notifier).is_empty(), "an ALARM over before it started pages nobody");
    assert_recovery_won(&w, &id);
}

#[tokio::test]
async fn an_ok_while_the_approval_page_is_published_is_followed_by_an_ok() {
    let w = world();
    // The OK is handled just before the ALARM page goes out: the ALARM reaches the pager after the OK.
    let id = alarm_with_ok_at(&w, false, vec!["paging", "\"ALARM\""]).await;
    assert_recovery_won(&w, &id);
    assert_eq!(page_states(&w.notifier), ["OK", "ALARM", "OK"]);
}

#[tokio::test]
async fn an_ok_while_the_record_holds_the_page_paid_ends_the_execution() {
    let w = world();
    // The record's second write (the page paid): the OK has already ended the record.
    let id = alarm_with_ok_at(&w, true, vec!["put executions/", "awaiting_approval", "\"message_id\": \"msg-1\""]).await;
    assert_recovery_won(&w, &id);
    // The OK's record did not show the ALARM sent, so the preparation cannot tell which went first: it sends the
    // OK again (a duplicate OK is harmless; an ALARM last is an incident nobody resolves).
    assert_eq!(page_states(&w.notifier), ["ALARM", "OK", "OK"]);
}

#[tokio::test]
async fn an_ok_before_the_approval_window_is_taken_releases_the_lock() {
    let w = world();
    // The OK ends the record while the lock still says running (so it leaves the lock to the attempt); the
    // attempt then takes the window and must find the end.
    let id = alarm_with_ok_at(&w, true, vec!["put locks/failover.json", "awaiting_approval"]).await;
    assert_recovery_won(&w, &id);
    assert_eq!(page_states(&w.notifier), ["ALARM", "OK"]);
}

#[tokio::test]
async fn an_ok_after_the_preparation_withdraws_the_approval_and_its_lock() {
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    let r = alarm::on_alarm_change(&e, &a).await.unwrap();
    assert_eq!(r.to_json()["outcome"], "awaiting_approval");
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).unwrap().contains("awaiting_approval"));
    alarm::on_alarm_change(&e, &change("ok")).await.unwrap();
    assert_recovery_won(&w, &a.execution_id());
    let approved = e.approve(&a.execution_id(), "oncall").await.unwrap();
    assert_eq!(approved.outcome, Outcome::Rejected, "nothing to approve: {}", approved.message);
}

/// A bucket that applies the first put of a key containing `lost` and then answers with an error (a timeout
/// after S3 applied it).
struct LosesAnswer<'a> {
    inner: &'a MemBucket,
    lost: &'static str,
    done: Mutex<bool>,
}

impl ControlBucket for LosesAnswer<'_> {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        let r = self.inner.put(key, body, content_type, condition).await;
        let mut done = self.done.lock().unwrap();
        if key.contains(self.lost) && r.is_ok() && !*done {
            *done = true;
            return Err(StoreError::Transient { service: "S3", operation: "PutObject", message: "answer lost".into() });
        }
        r
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
    }
}

fn record(id: &str, state: ExecutionState) -> ExecutionRecord {
    let mut r = stored_example(id);
    r.state = state;
    r
}

fn stored_example(id: &str) -> ExecutionRecord {
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let req = MoveRequest {
        execution_id: id.into(),
        initiator: Initiator::Human { requested_by: "h".into() },
        target: SiteName::Secondary,
        reason: "r".into(),
        trigger: json!({}),
    };
    let decision = Decision { action: Action::Execute, target: SiteName::Secondary, reasons: vec![], overrides: vec![] };
    let attempt =
        Attempt { id: "a".into(), tree: Vec::new(), docs: documents::from_tree(&[], &e.settings.prefix), prefetched: None };
    e.new_record(&req, decision, &attempt, w.clock.now())
}

#[tokio::test]
async fn a_lost_answer_is_adopted_only_when_the_stored_write_is_ours() {
    let w = world();
    let now = w.clock.now();
    let lossy = LosesAnswer { inner: &w.bucket, lost: "executions/x", done: Mutex::new(false) };
    let mut ours = Recorder::new(record("x", ExecutionState::Running));
    assert!(ours.save_now(&lossy, now).await.is_err(), "the answer is lost");
    ours.record.note(now, "later");
    ours.save_now(&lossy, now).await.expect("our own applied write is recognized and written over");
    assert_eq!(stored(&w, "x").notes.len(), 1);

    // Another writer (the recovery) ends the record: ours is refused, and re-reading finds the end.
    let mut theirs = record::read(&w.bucket, "x").await.unwrap().unwrap();
    theirs.record.state = ExecutionState::Noop;
    theirs.save_now(&w.bucket, now).await.unwrap();
    ours.record.note(now, "stopped");
    assert!(matches!(ours.save_now(&w.bucket, now).await, Err(StoreError::Conflict { .. })));
    assert!(matches!(ours.save_or_reconcile(&w.bucket, now).await, Ok(record::Reconciled::Ended(_))));
    assert_eq!(stored(&w, "x").state, ExecutionState::Noop);

    // A record read in a terminal state is never written out of it.
    let mut reread = record::read(&w.bucket, "x").await.unwrap().unwrap();
    reread.record.state = ExecutionState::Running;
    assert!(matches!(reread.save_now(&w.bucket, now).await, Err(StoreError::Conflict { .. })));
    assert_eq!(stored(&w, "x").state, ExecutionState::Noop);
}

#[tokio::test]
async fn a_stop_after_a_lost_answer_never_overwrites_a_record_the_recovery_ended() {
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let held = Held {
        doc: LockDoc {
            execution_id: "x".into(),
            attempt_id: "a".into(),
            state: LockState::Running,
            acquired_at: rfc3339(w.clock.now()),
            lease_expires_at: rfc3339(w.clock.now() + time::Duration::minutes(2)),
            holder: "t".into(),
        },
        etag: String::new(),
        store: None,
    };
    let etag = w
        .bucket
        .put(lock::FAILOVER_LOCK_KEY, serde_json::to_vec(&held.doc).unwrap(), "application/json", WriteCondition::IfAbsent)
        .await
        .unwrap();
    let held = Held { etag, ..held };
    let mut ours = Recorder::new(record("x", ExecutionState::AwaitingApproval));
    ours.save_now(&w.bucket, w.clock.now()).await.unwrap();
    // The recovery (no lock) ends it meanwhile.
    let mut theirs = record::read(&w.bucket, "x").await.unwrap().unwrap();
    theirs.record.state = ExecutionState::Noop;
    theirs.save_now(&w.bucket, w.clock.now()).await.unwrap();
    let source = StoreError::Transient { service: "S3", operation: "PutObject", message: "x".into() };
    let err = e.stop(ours, Some(held), Step::Snapshot, source).await;
    assert!(matches!(err, EngineError::Stopped { .. }));
    assert_eq!(stored(&w, "x").state, ExecutionState::Noop, "the stop never writes over the recovery's end");
    assert!(page_states(&w.notifier).is_empty(), "nor pages a stall of an ended execution");
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "and releases its lock");
}

#[tokio::test]
async fn an_alarm_page_check_pays_while_the_ok_resolves_it_is_followed_by_an_ok() {
    let w = world();
    w.params.seed(
        "/dr/p/policy",
        r#"{"mode":"notify-only","failover_alarms":["databricks-prod-workspace-unhealthy"]}"#,
        "String",
    );
    let e = engine_over(&w, &w.bucket, &w.notifier);
    // Notify-only while the paging topic fails: the ALARM page is owed.
    w.notifier.fail(Channel::Paging, true);
    let a = change("alarm");
    assert!(alarm::on_alarm_change(&e, &a).await.is_err(), "the page is owed");
    w.notifier.fail(Channel::Paging, false);
    assert_eq!(stored(&w, &a.execution_id()).owed.len(), 1);
    // `check` pays it; the alarm's OK is handled just before the ALARM goes out (check read the record first).
    let ok_engine = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            alarm::on_alarm_change(&ok_engine, &change("ok")).await.unwrap();
        })
    });
    let checker =
        engine_over(&w, &w.bucket, TrapNotifier { inner: &w.notifier, trap: Trap::new(vec!["paging", "\"ALARM\""], hook) });
    checker.pay_owed_pages(10).await.unwrap();
    assert!(checker.notifier.trap.sprung());
    assert_eq!(page_states(&w.notifier), ["OK", "ALARM", "OK"], "the ALARM that crossed the OK is followed by an OK");
}

#[tokio::test]
async fn an_ok_racing_an_approval_never_leaves_a_promotion_recorded_noop() {
    // The approval takes the lock and acts; the alarm's OK lands before the approval's first record write. Before,
    // that write went out beside the promotion: the OK withdrew the still-waiting record and the promotion landed
    // anyway, recorded `noop` (simulation seed 12839). Now exactly one wins: a promotion has a completed record,
    // or the approval is withdrawn and nothing is promoted.
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    let id = a.execution_id();
    assert_eq!(alarm::on_alarm_change(&e, &a).await.unwrap().to_json()["outcome"], "awaiting_approval");
    let ok_engine = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let r = alarm::on_alarm_change(&ok_engine, &change("ok")).await;
            assert!(r.is_ok(), "the OK is handled: {r:?}");
        })
    });
    let approving = engine_over(
        &w,
        TrapBucket { inner: &w.bucket, trap: Trap::new(vec!["put executions/", "\"state\": \"running\""], hook) },
        &w.notifier,
    );
    let answer = approving.approve(&id, "oncall").await;
    assert!(approving.bucket.trap.sprung(), "the OK landed");
    let promoted = w.params.get_one("/dr/p/active").await.unwrap().unwrap().value.contains(&id);
    let rec = stored(&w, &id);
    assert_eq!(
        promoted,
        rec.state == ExecutionState::Completed,
        "promoted {promoted} but the record is {:?} (answer {answer:?})",
        rec.state
    );
    assert!(rec.state.is_terminal(), "{:?}", rec.state);
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "no lock left: {:?}", w.bucket.text(lock::FAILOVER_LOCK_KEY));
}

#[tokio::test]
async fn two_deliveries_of_one_ok_racing_on_the_record_both_answer_finally() {
    // One OK through EventBridge and SNS both (or delivered twice): the second delivery writes the withdrawn record
    // first, so the first one's compare-and-swap fails. Before, that delivery answered with an error to be retried
    // for a page already resolved (simulation seed 18806, faults off: a fourth round of redelivery). It re-reads
    // instead, finds the page resolved by the other delivery, and answers finally; one OK page only.
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    let id = a.execution_id();
    assert_eq!(alarm::on_alarm_change(&e, &a).await.unwrap().to_json()["outcome"], "awaiting_approval");
    let other = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let r = alarm::on_alarm_change(&other, &change("ok")).await;
            assert!(r.is_ok(), "the other delivery resolves the page: {r:?}");
        })
    });
    let first = engine_over(
        &w,
        TrapBucket { inner: &w.bucket, trap: Trap::new(vec!["put executions/", "\"state\": \"noop\""], hook) },
        &w.notifier,
    );
    let answer = alarm::on_alarm_change(&first, &change("ok")).await;
    assert!(first.bucket.trap.sprung(), "the other delivery landed");
    assert!(answer.is_ok(), "a page another delivery resolved is a final answer: {answer:?}");
    assert_recovery_won(&w, &id);
    assert_eq!(page_states(&w.notifier), ["ALARM", "OK"], "resolved once");
}

#[tokio::test]
async fn two_deliveries_of_an_alarm_that_both_find_its_ok_both_answer_finally() {
    // The OK comes through SNS only (no previous state's time) while the ALARM's delivery prepares the approval:
    // that delivery then finds the OK in the alarm's pages document and withdraws the approval. A second delivery
    // of the ALARM (EventBridge and SNS both), answering from the waiting record, finds the OK too and writes the
    // withdrawn record first. Before, the first one's compare-and-swap failed and it answered with an error to be
    // retried (simulation seed 18806). It re-reads and resolves on top; since its own ALARM page may have gone
    // out after the other's OK, one more OK follows (a duplicate OK is harmless, an ALARM last is not).
    let w = world();
    let a = change("alarm");
    let (ok_engine, other) = (engine_over(&w, &w.bucket, &w.notifier), engine_over(&w, &w.bucket, &w.notifier));
    let sns_ok: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let mut ok = change("ok");
            ok.previous_state_time = None;
            alarm::on_alarm_change(&ok_engine, &ok).await.unwrap();
        })
    });
    let second_delivery: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let r = alarm::on_alarm_change(&other, &change("alarm")).await;
            assert!(r.is_ok(), "the other delivery resolves the page: {r:?}");
        })
    });
    let inner = TrapBucket { inner: &w.bucket, trap: Trap::new(vec!["put alarms/"], sns_ok) };
    let first = engine_over(
        &w,
        TrapBucket { inner: &inner, trap: Trap::new(vec!["put executions/", "\"state\": \"noop\""], second_delivery) },
        &w.notifier,
    );
    let answer = alarm::on_alarm_change(&first, &a).await;
    assert!(first.bucket.inner.trap.sprung() && first.bucket.trap.sprung(), "the OK and the other delivery landed");
    assert!(answer.is_ok(), "a page another delivery resolved is a final answer: {answer:?}");
    assert_recovery_won(&w, &a.execution_id());
    let states = page_states(&w.notifier);
    assert_eq!(states.first().map(String::as_str), Some("ALARM"), "{states:?}");
    assert!(states[1..].iter().all(|s| s == "OK") && states.len() > 1, "only OKs after the ALARM: {states:?}");
}

#[tokio::test]
async fn a_stall_decided_on_an_older_read_is_not_paged_after_another_attempt_announced_the_end() {
    // Two attempts of one execution (a human's command sent twice): one verifies the promotion and pages its OK;
    // the other, working from an older read, stops at a later step while still holding the lock and merges the
    // stored record in. Before, the stall's ALARM it had decided on went out after the OK, and the next attempt
    // paged its own stall on top (simulation seed 33114): an incident re-opened that nothing resolves.
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let now = w.clock.now();
    let held = Held {
        doc: LockDoc {
            execution_id: "x".into(),
            attempt_id: "a".into(),
            state: LockState::Running,
            acquired_at: rfc3339(now),
            lease_expires_at: rfc3339(now + time::Duration::minutes(2)),
            holder: "t".into(),
        },
        etag: String::new(),
        store: None,
    };
    let etag = w
        .bucket
        .put(lock::FAILOVER_LOCK_KEY, serde_json::to_vec(&held.doc).unwrap(), "application/json", WriteCondition::IfAbsent)
        .await
        .unwrap();
    let held = Held { etag, ..held };
    let mut ours = Recorder::new(record("x", ExecutionState::Running));
    ours.save_now(&w.bucket, now).await.unwrap();
    // The other attempt: the started ALARM, then the completed OK, recorded on a still-running record.
    let mut theirs = record::read(&w.bucket, "x").await.unwrap().unwrap();
    let page = |state| e.page(&theirs.record, "x", state, Severity::Critical, "r".into());
    let (alarm_page, ok_page) = (page(PageState::Alarm), page(PageState::Ok));
    theirs.record.owe(Channel::Paging, "failover.started", &alarm_page);
    theirs.record.paid(Channel::Paging, "failover.started", Some("m1".into()));
    theirs.record.owe(Channel::Paging, "failover.completed", &ok_page);
    theirs.record.paid(Channel::Paging, "failover.completed", Some("m2".into()));
    theirs.save_now(&w.bucket, now).await.unwrap();
    let source = StoreError::Transient { service: "S3", operation: "PutObject", message: "x".into() };
    let err = e.stop(ours, Some(held), Step::Fence, source).await;
    assert!(matches!(err, EngineError::Stopped { .. }));
    assert!(page_states(&w.notifier).is_empty(), "no stall ALARM after the OK: {:?}", page_states(&w.notifier));
    let rec = stored(&w, "x");
    assert!(rec.resolved(), "the incident stays resolved: {:?}", rec.messages);
    assert!(rec.owed.iter().all(|o| o.resolves()), "nor is the stall left owed for the next attempt: {:?}", rec.owed);
}

/// A bucket whose writes of execution records never answer (the function dies there: its future is dropped).
struct DiesOnRecordWrite<'a>(&'a MemBucket);

impl ControlBucket for DiesOnRecordWrite<'_> {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        if key.starts_with("executions/") {
            std::future::pending::<()>().await;
        }
        self.0.put(key, body, content_type, condition).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.0.delete_if_match(key, etag).await
    }
}

#[tokio::test]
async fn a_delivery_that_dies_resolving_again_leaves_the_lock_for_the_next_one() {
    // The approval was withdrawn by the OK, but an attempt that died holding the (stopped) lock paged a stall
    // after that OK without recording it. The next delivery that frees the lock sends the OK again. Before, it
    // freed the lock first and died before the OK: the deliveries after it found nothing to do and the ALARM stayed
    // last (simulation seed 51560).
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    let id = a.execution_id();
    assert_eq!(alarm::on_alarm_change(&e, &a).await.unwrap().to_json()["outcome"], "awaiting_approval");
    alarm::on_alarm_change(&e, &change("ok")).await.unwrap();
    assert_eq!(stored(&w, &id).state, ExecutionState::Noop);
    // The dead attempt's lock and its unrecorded stall page.
    let now = w.clock.now();
    let doc = LockDoc {
        execution_id: id.clone(),
        attempt_id: "dead".into(),
        state: LockState::Stopped,
        acquired_at: rfc3339(now),
        lease_expires_at: rfc3339(now + time::Duration::minutes(2)),
        holder: "t".into(),
    };
    w.bucket
        .put(lock::FAILOVER_LOCK_KEY, serde_json::to_vec(&doc).unwrap(), "application/json", WriteCondition::IfAbsent)
        .await
        .unwrap();
    let stall = e.page(&stored(&w, &id), "stalled_snapshot", PageState::Alarm, Severity::Critical, "stalled".into());
    w.notifier.publish(Channel::Paging, &stall).await.unwrap();
    assert_eq!(page_states(&w.notifier).last().map(String::as_str), Some("ALARM"));
    // A delivery dies while recording the OK it owes.
    let dying = engine_over(&w, DiesOnRecordWrite(&w.bucket), &w.notifier);
    let died = tokio::time::timeout(std::time::Duration::from_millis(200), alarm::on_alarm_change(&dying, &a)).await;
    assert!(died.is_err(), "the delivery died");
    // The next delivery finds the lock still there and resolves the incident again.
    alarm::on_alarm_change(&e, &a).await.unwrap();
    assert_eq!(page_states(&w.notifier).last().map(String::as_str), Some("OK"), "{:?}", page_states(&w.notifier));
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "and frees the lock");
}

/// The topics, where the first `ALARM` page runs `hook` (the alarm's `OK`) just before it goes out, and the
/// function dies just after it went out (its future is dropped before it can check for the crossing).
struct DiesAfterAlarm<'a> {
    inner: &'a MemNotifier,
    trap: Trap<'a>,
}

impl Notifier for DiesAfterAlarm<'_> {
    async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        let call = format!("{channel} {}", message.body);
        let first = !self.trap.sprung() && self.trap.needles.iter().all(|n| call.contains(n));
        self.trap.spring(&call).await;
        let id = self.inner.publish(channel, message).await;
        if first {
            std::future::pending::<()>().await;
        }
        id
    }
    async fn probe(&self, channel: Channel) -> Result<bool, StoreError> {
        self.inner.probe(channel).await
    }
    async fn publish_all(&self, channel: Channel, messages: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
        self.inner.publish_all(channel, messages).await
    }
}

#[tokio::test]
async fn an_alarm_paid_without_the_lock_by_a_delivery_that_dies_after_it_still_gets_its_ok() {
    // A delivery without the lock pays an owed ALARM; the alarm's OK resolves the incident just before that ALARM
    // goes out, and the delivery dies right after publishing it, before its crossing check. Before, nothing was
    // left to say an ALARM might have crossed the OK: `check` (and the deliveries of other triggers, such as an
    // approval) found nothing owed and the ALARM stayed last (simulation seeds 22433, 94144, 86108).
    let w = world();
    w.params.seed(
        "/dr/p/policy",
        r#"{"mode":"notify-only","failover_alarms":["databricks-prod-workspace-unhealthy"]}"#,
        "String",
    );
    let e = engine_over(&w, &w.bucket, &w.notifier);
    w.notifier.fail(Channel::Paging, true);
    let a = change("alarm");
    let id = a.execution_id();
    assert!(alarm::on_alarm_change(&e, &a).await.is_err(), "the page is owed");
    w.notifier.fail(Channel::Paging, false);
    let ok_engine = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            alarm::on_alarm_change(&ok_engine, &change("ok")).await.unwrap();
        })
    });
    let dying =
        engine_over(&w, &w.bucket, DiesAfterAlarm { inner: &w.notifier, trap: Trap::new(vec!["paging", "\"ALARM\""], hook) });
    let died = tokio::time::timeout(std::time::Duration::from_millis(200), alarm::on_alarm_change(&dying, &a)).await;
    assert!(died.is_err(), "the delivery died");
    assert_eq!(page_states(&w.notifier), ["OK", "ALARM"], "the ALARM crossed the OK");
    // `check`'s sweep (still within the dead one's lease; no delivery of the trigger comes for an approval's
    // payer) sends the OK again.
    e.pay_owed_pages(10).await.unwrap();
    assert_eq!(page_states(&w.notifier).last().map(String::as_str), Some("OK"), "{:?}", page_states(&w.notifier));
    assert!(stored(&w, &id).unlocked_alarm_since.is_some(), "the mark stays while its payer may still be alive");
    // Past the lease, `check`'s sweep sends it once more and clears the mark.
    w.clock.advance(time::Duration::minutes(5));
    e.pay_owed_pages(10).await.unwrap();
    assert_eq!(page_states(&w.notifier).last().map(String::as_str), Some("OK"));
    assert!(stored(&w, &id).unlocked_alarm_since.is_none(), "the mark is cleared once its payer is over");
    assert!(stored(&w, &id).resolved());
}

#[tokio::test]
async fn a_joined_alarms_page_that_crosses_the_holders_ok_is_followed_by_an_ok() {
    // A failover waits for approval; a second alarm joins it and pages into its incident without the lock. The
    // holder's alarm goes OK just before that page goes out. Before, the joiner recorded the page without checking
    // for the crossing: its ALARM stayed last (simulation seeds 67540, 75748, 95393).
    let w = world();
    w.params.seed(
        "/dr/p/policy",
        r#"{"mode":"approval","failover_alarms":["databricks-prod-workspace-unhealthy","databricks-prod-sql-unhealthy"]}"#,
        "String",
    );
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    assert_eq!(alarm::on_alarm_change(&e, &a).await.unwrap().to_json()["outcome"], "awaiting_approval");
    let mut joiner = change("alarm");
    joiner.alarm_name = "databricks-prod-sql-unhealthy".into();
    joiner.alarm_arn = joiner.alarm_arn.replace("workspace", "sql");
    joiner.state_change_time += time::Duration::minutes(1);
    let ok_engine = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            alarm::on_alarm_change(&ok_engine, &change("ok")).await.unwrap();
        })
    });
    let joining = engine_over(
        &w,
        &w.bucket,
        TrapNotifier { inner: &w.notifier, trap: Trap::new(vec!["paging", "\"ALARM\"", "joins its incident"], hook) },
    );
    let r = alarm::on_alarm_change(&joining, &joiner).await;
    assert!(joining.notifier.trap.sprung(), "the OK landed: {r:?}");
    let states = page_states(&w.notifier);
    assert_eq!(
        states.last().map(String::as_str),
        Some("OK"),
        "the joined ALARM that crossed the OK is followed by an OK: {states:?}"
    );
    assert!(stored(&w, &a.execution_id()).resolved());
}

#[tokio::test]
async fn an_approval_page_that_crosses_the_ok_after_a_duplicate_sent_it_is_followed_by_an_ok() {
    // The preparation records its approval page owed; a duplicate delivery of the ALARM pays it (without the lock),
    // the alarm's OK ends the record, and only then the preparation's own publish of that page goes out. Before, the
    // preparation found the event recorded as sent (the duplicate's) and took its own page for one the end came
    // after: its ALARM stayed last (simulation seed 90575). Now it is judged by its message id.
    let w = world();
    let a = change("alarm");
    let id = a.execution_id();
    let other = engine_over(&w, &w.bucket, &w.notifier);
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            let dup = alarm::on_alarm_change(&other, &change("alarm")).await;
            assert!(dup.is_ok(), "the duplicate answers: {dup:?}");
            alarm::on_alarm_change(&other, &change("ok")).await.unwrap();
        })
    });
    let e = engine_over(&w, &w.bucket, TrapNotifier { inner: &w.notifier, trap: Trap::new(vec!["paging", "\"ALARM\""], hook) });
    let r = alarm::on_alarm_change(&e, &a).await;
    assert!(e.notifier.trap.sprung(), "the duplicate and the OK landed: {r:?}");
    let states = page_states(&w.notifier);
    assert_eq!(states[..3], ["ALARM", "OK", "ALARM"], "the preparation's page crossed the OK: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("OK"), "and is followed by an OK: {states:?}");
    assert!(stored(&w, &id).state.is_terminal());
}

/// The bucket, answering the record's first read with an older version of it (read before another writer's).
struct StaleRecordBucket<'a> {
    inner: &'a MemBucket,
    stale: Mutex<Option<(String, StoredObject)>>,
}

impl ControlBucket for StaleRecordBucket<'_> {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let stale = self.stale.lock().unwrap().take_if(|(k, _)| k == key);
        match stale {
            Some((_, o)) => Ok(Some(o)),
            None => self.inner.get(key).await,
        }
    }
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        self.inner.put(key, body, content_type, condition).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_recent(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.list_recent(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
    }
}

#[tokio::test]
async fn a_redelivery_that_read_the_record_before_an_approval_never_prepares_the_approved_execution_again() {
    // Simulation seed 4700: a redelivery of the alarm reads the record while it awaits approval; the approval then
    // promotes and stops (its lock left `stopped`); the redelivery, finding no approval window on the lock, took
    // the lock over and prepared again: it rewrote the snapshot after the promotion and wrote the record back to
    // waiting, which the alarm's OK then withdrew, leaving the promotion recorded `noop`.
    let w = world();
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let a = change("alarm");
    let id = a.execution_id();
    assert_eq!(alarm::on_alarm_change(&e, &a).await.unwrap().to_json()["outcome"], "awaiting_approval");
    let key = record::record_key(&id);
    let before_approval = w.bucket.get(&key).await.unwrap().unwrap();
    let snapshot = format!("snapshots/{id}/active.json");
    let snapshot_before = w.bucket.text(&snapshot);
    assert!(snapshot_before.is_some());

    // The approval promotes; its next record write fails: it stops, approved and promoted.
    let hook: Hook<'_> = Box::new(|| {
        Box::pin(async {
            w.bucket.failing_puts.lock().unwrap().push("executions/".into());
        })
    });
    let approving = engine_over(
        &w,
        TrapBucket { inner: &w.bucket, trap: Trap::new(vec!["put executions/", "\"promoted_version\": 2"], hook) },
        &w.notifier,
    );
    assert!(approving.approve(&id, "oncall").await.is_err(), "the approval stops after its promotion");
    assert!(approving.bucket.trap.sprung());
    w.bucket.failing_puts.lock().unwrap().clear();
    assert!(w.params.get_one("/dr/p/active").await.unwrap().unwrap().value.contains(&id), "promoted");
    assert_eq!(stored(&w, &id).state, ExecutionState::Running);

    // The redelivery that read the record before the approval.
    let late =
        engine_over(&w, StaleRecordBucket { inner: &w.bucket, stale: Mutex::new(Some((key, before_approval))) }, &w.notifier);
    let r = alarm::on_alarm_change(&late, &a).await;
    let rec = stored(&w, &id);
    assert_eq!(rec.state, ExecutionState::Completed, "the approved execution is resumed, never waiting again: {r:?}");
    assert_eq!(w.bucket.text(&snapshot), snapshot_before, "the snapshot taken before the promotion is kept");
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "no lock left: {:?}", w.bucket.text(lock::FAILOVER_LOCK_KEY));
}

/// A bucket that fails (without applying) the first put described (`put {key} {body}`) with every one of
/// `needles`, as S3 answering 500 to every retry of it.
struct FailsOnce<'a> {
    inner: &'a MemBucket,
    needles: Vec<&'static str>,
    done: Mutex<bool>,
}

impl ControlBucket for FailsOnce<'_> {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        let call = format!("put {key} {}", String::from_utf8_lossy(&body));
        let fail = {
            let mut done = self.done.lock().unwrap();
            let fail = !*done && self.needles.iter().all(|n| call.contains(n));
            *done |= fail;
            fail
        };
        if fail {
            return Err(StoreError::Transient {
                service: "S3",
                operation: "PutObject",
                message: "InternalError: injected".into(),
            });
        }
        self.inner.put(key, body, content_type, condition).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        self.inner.delete_if_match(key, etag).await
    }
}

/// The alarm in approval mode, its approval window's lock update failing once: the execution stops at `lock`.
async fn approval_stopped_at_lock(w: &World) -> String {
    let failing =
        FailsOnce { inner: &w.bucket, needles: vec!["put locks/failover.json", "awaiting_approval"], done: Mutex::new(false) };
    let e = engine_over(w, &failing, &w.notifier);
    let a = change("alarm");
    let stopped = alarm::on_alarm_change(&e, &a).await;
    assert!(matches!(stopped, Err(EngineError::Stopped { step: Step::Lock, .. })), "{stopped:?}");
    let id = a.execution_id();
    assert!(stored(w, &id).error.is_some(), "the stop is recorded");
    id
}

#[tokio::test]
async fn a_redelivery_that_resumes_a_stopped_approval_clears_the_stops_error() {
    // Found by the longer soak (record alarm-04935a7da3df2da2fd19): the approval window's lock update failed, the
    // redelivery took over and prepared the approval, the alarm's OK withdrew it; the record ended `noop` with the
    // stop's error still in it (status and the report then say it stopped), where the clean run had none.
    let w = world();
    let id = approval_stopped_at_lock(&w).await;
    let e = engine_over(&w, &w.bucket, &w.notifier);
    let again = alarm::on_alarm_change(&e, &change("alarm")).await.unwrap();
    assert_eq!(again.to_json()["outcome"], "awaiting_approval");
    assert!(w.bucket.text(lock::FAILOVER_LOCK_KEY).unwrap().contains("awaiting_approval"));
    assert_eq!(stored(&w, &id).state, ExecutionState::AwaitingApproval);
    assert_eq!(stored(&w, &id).error, None, "the resumed preparation is no longer stopped");
    alarm::on_alarm_change(&e, &change("ok")).await.unwrap();
    let rec = stored(&w, &id);
    assert_eq!((rec.state, rec.error), (ExecutionState::Noop, None));
    assert!(rec.notes.iter().any(|n| n.what.starts_with("stopped at lock")), "the stop stays in the history");
}

#[tokio::test]
async fn an_ok_that_withdraws_a_stopped_approval_clears_the_stops_error() {
    // The same stop, the alarm's OK coming before any redelivery: the withdrawal ends the execution on purpose.
    let w = world();
    let id = approval_stopped_at_lock(&w).await;
    let e = engine_over(&w, &w.bucket, &w.notifier);
    alarm::on_alarm_change(&e, &change("ok")).await.unwrap();
    let rec = stored(&w, &id);
    assert_eq!((rec.state, rec.error), (ExecutionState::Noop, None));
    assert_eq!(page_states(&w.notifier).last().map(String::as_str), Some("OK"), "{:?}", page_states(&w.notifier));
}
