//! What a CloudWatch alarm state change does (the `health-alarm` function's rules).

use crate::record::{self, ExecutionRecord, ExecutionState, NewExecution, Recorder};
use crate::response::{CommandResponse, Outcome};
use crate::rules::alarm::{AlarmChange, AlarmState};
use crate::rules::alarm_pages::AlarmPages;
use crate::rules::decision::Initiator;
use crate::{Engine, EngineError, ExecutionResult, MoveRequest};
use domain::layout;
use domain::notification::{self, ChatNote, Envelope, Page, PageState, Severity};
use domain::site::SiteName;
use dr_ports::documents::{self, Doc};
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore, WriteCondition};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the function answers for one alarm change.
#[derive(Debug, Clone)]
pub enum AlarmOutcome {
    /// An execution ran, or answered for an earlier delivery.
    Execution(Box<ExecutionResult>),
    /// Not a failover trigger: an alarm not in the policy, or suppressed / muted; nothing sent.
    Ignored(String),
    /// A failover alarm left `ALARM`: reported, never a failback.
    Reported {
        /// What was said.
        message: String,
        /// The execution whose incident was resolved, if one was open.
        resolved: Option<String>,
    },
}

impl AlarmOutcome {
    /// The answer as JSON.
    pub fn to_json(&self) -> Value {
        match self {
            AlarmOutcome::Execution(r) => {
                let answer = CommandResponse {
                    outcome: r.outcome,
                    active_site: r.active_site,
                    message: Some(r.message.clone()),
                    details: r.fields(),
                };
                serde_json::to_value(answer).unwrap_or(Value::Null)
            }
            AlarmOutcome::Ignored(why) => json!({ "outcome": Outcome::Noop, "ignored": why }),
            AlarmOutcome::Reported { message, resolved } => {
                json!({ "outcome": Outcome::Noop, "reported": message, "resolved_execution": resolved })
            }
        }
    }
}

/// Applies the rules to one normalized alarm change.
pub async fn on_alarm_change<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
) -> Result<AlarmOutcome, EngineError> {
    if change.new_state == AlarmState::Alarm {
        if let Some(why) = change.silenced_because() {
            return Ok(AlarmOutcome::Ignored(why));
        }
        let request = MoveRequest {
            execution_id: change.execution_id(),
            initiator: Initiator::Alarm { alarm_name: change.alarm_name.clone() },
            // A health alarm on the primary asks to move to the secondary; the policy refuses the rest.
            target: SiteName::Secondary,
            reason: format!("alarm {} is ALARM: {}", change.alarm_name, change.reason),
            trigger: json!({
                "alarm_name": change.alarm_name,
                "alarm_arn": change.alarm_arn,
                "state_change_time": change.state_change_time_rfc3339(),
                "old_state": change.old_state,
                "new_state": change.new_state,
                "kind": change.kind,
                "delivery": change.delivery,
            }),
        };
        let result = engine.run(request).await?;
        if result.outcome == Outcome::Noop && result.state.is_none() {
            return Ok(AlarmOutcome::Ignored(result.message));
        }
        if result.state.is_some_and(page_open) {
            open_page(engine, change, &result.execution_id).await?;
        }
        return Ok(AlarmOutcome::Execution(Box::new(result)));
    }
    report_recovery(engine, change).await
}

/// The states whose `ALARM` page stays open until the alarm's `OK` (the execution only paged, was refused, or
/// waits for approval).
fn page_open(state: ExecutionState) -> bool {
    matches!(state, ExecutionState::Notified | ExecutionState::Refused | ExecutionState::AwaitingApproval)
}

/// An execution whose `ALARM` page is open and not yet resolved (its `OK` page neither sent nor owed): the same
/// `OK` delivered through EventBridge and SNS resolves it once.
fn unresolved(rec: &Recorder) -> bool {
    let recovered = |event_type: &str| event_type.ends_with(".alarm_recovered");
    page_open(rec.record.state)
        && !rec.record.messages.iter().any(|m| recovered(&m.event_type))
        && !rec.record.owed.iter().any(|m| recovered(&m.event_type))
}

/// An execution whose `ALARM` page was resolved but whose `OK` page is still owed (its topic failed).
fn owes_recovery(rec: &Recorder) -> bool {
    page_open(rec.record.state) && rec.record.owed.iter().any(|m| m.event_type.ends_with(".alarm_recovered"))
}

/// Updates the alarm's pages document (`alarms/{digest}.json`) by compare-and-swap, retried on a conflict.
async fn update_pages<B: ControlBucket, R>(
    bucket: &B,
    alarm_arn: &str,
    mut f: impl FnMut(&mut AlarmPages) -> R,
) -> Result<R, StoreError> {
    let key = layout::alarm_pages(alarm_arn);
    let mut last = None;
    for _ in 0..8 {
        let current = bucket.get(&key).await?;
        let (mut pages, condition) = match &current {
            Some(o) => {
                let pages = serde_json::from_slice::<AlarmPages>(&o.body).unwrap_or_else(|e| {
                    // Unreadable (written by hand?): started again, said; an OK still resolves by the previous
                    // state's time, and the pages stay in the executions' records.
                    tracing::warn!(key = %key, error = %e, "alarm pages document unreadable: started again");
                    AlarmPages::new(alarm_arn)
                });
                (pages, WriteCondition::IfMatch(o.etag.clone()))
            }
            None => (AlarmPages::new(alarm_arn), WriteCondition::IfAbsent),
        };
        let out = f(&mut pages);
        let body = serde_json::to_vec_pretty(&pages).unwrap_or_default();
        match bucket.put(&key, body, "application/json", condition).await {
            Ok(_) => return Ok(out),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(StoreError::Conflict { service: "S3", operation: "PutObject", target: key }))
}

/// Records the page an `ALARM`'s execution opened; when the alarm already went `OK` after it (an `OK` handled
/// first, or at the same time), resolves it at once.
async fn open_page<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
    execution_id: &str,
) -> Result<(), EngineError> {
    let not_started = |source| EngineError::NotStarted { execution_id: change.execution_id(), source };
    let recovered = update_pages(&engine.bucket, &change.alarm_arn, |p| p.opened(execution_id, change.state_change_time))
        .await
        .map_err(not_started)?;
    if let Some(ok) = recovered {
        let text = format!(
            "alarm {} went OK at {} while its ALARM was being handled: no failback is automatic, only a human returns \
             to the primary.",
            change.alarm_name,
            domain::primitives::rfc3339(ok)
        );
        // Even when another delivery resolved it already: this delivery's ALARM may have gone out after that OK
        // (a duplicate OK is harmless; an ALARM last is an incident nobody resolves).
        if let Some(rec) = record::read(&engine.bucket, execution_id).await.map_err(not_started)? {
            resolve_page(engine, rec, text, true).await.map_err(not_started)?;
        }
    }
    Ok(())
}

/// A failover alarm left `ALARM`: say so in chat, and resolve the incident of the execution the `ALARM` opened
/// when that execution only paged (notify-only, refused) or still waits for approval — even if the alarm was
/// removed from the policy meanwhile (its page was sent; it must resolve). Never fails back. Only `OK` resolves
/// (`INSUFFICIENT_DATA` is no recovery). An `ALARM` still owed by that execution is dropped rather than sent
/// after its recovery.
async fn report_recovery<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
) -> Result<AlarmOutcome, EngineError> {
    let not_started = |source| EngineError::NotStarted { execution_id: change.execution_id(), source };
    let previous_id = change.previous_execution_id().filter(|_| change.new_state == AlarmState::Ok);
    let previous = async {
        match &previous_id {
            Some(id) => record::read(&engine.bucket, id).await,
            None => Ok(None),
        }
    };
    let (docs, previous) =
        tokio::try_join!(documents::load(&engine.params, &engine.settings.prefix), previous).map_err(not_started)?;
    let listed = match &docs.policy {
        Some(Doc::Valid { value, .. }) => value.failover_alarms.contains(&change.alarm_name),
        None => false,
        // An unreadable policy: report rather than stay silent.
        Some(_) => true,
    };
    if let (Some(id), None) = (&previous_id, &previous) {
        record_early_recovery(engine, change, id).await?;
    }
    let (resolvable, found) = pages_to_resolve(engine, change, previous).await?;
    if !listed && resolvable.is_empty() {
        return Ok(AlarmOutcome::Ignored(format!("alarm {} is not in the policy's failover_alarms", change.alarm_name)));
    }
    let text = recovery_text(change);
    let mut resolved = None;
    for rec in resolvable {
        let id = rec.record.execution_id.clone();
        resolve_page(engine, rec, text.clone(), false).await.map_err(not_started)?;
        // The chat note names the first; every one resolved is in the answer's log line.
        tracing::info!(execution_id = %id, alarm = %change.alarm_name, "ALARM page resolved by the alarm's OK");
        resolved.get_or_insert(id);
    }
    // Closed only now that each one's OK page is in its record (sent or owed): a delivery that stopped before
    // finds them again when it comes again. (One closed and then reopened by nothing: ALARM pages open once.)
    if !found.is_empty() {
        update_pages(&engine.bucket, &change.alarm_arn, |p| found.iter().for_each(|id| p.closed(id)))
            .await
            .map_err(not_started)?;
    }
    recovery_chat(engine, change, &text, resolved.as_deref()).await;
    Ok(AlarmOutcome::Reported { message: text, resolved })
}

/// The recovery arrived before its ALARM was handled (deliveries are unordered and retried): the ALARM's
/// execution `id` is recorded now as having nothing to do, so that its late delivery answers that and pages
/// nobody about an alarm that is already over. (Whether or not the alarm is listed now: the policy may list it
/// by the time its ALARM is delivered again.) If the ALARM's execution got there first and opened a page, the
/// delivery fails to be retried, and the retry resolves it.
async fn record_early_recovery<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
    id: &str,
) -> Result<(), EngineError> {
    let not_started = |source| EngineError::NotStarted { execution_id: change.execution_id(), source };
    let Some(alarm_time) = change.previous_state_time else {
        return Ok(());
    };
    record_recovered(engine, id, change, alarm_time).await.map_err(not_started)?;
    if let Ok(Some(now_recorded)) = record::read(&engine.bucket, id).await
        && page_open(now_recorded.record.state)
    {
        return Err(not_started(StoreError::Conflict {
            service: "S3",
            operation: "PutObject",
            target: domain::layout::execution_record(id),
        }));
    }
    Ok(())
}

/// The executions whose `ALARM` page this change resolves, and the ids of the alarm's open pages it found.
///
/// The pages an `OK` resolves: every one an ALARM before it opened (after INSUFFICIENT_DATA, through SNS without
/// the previous state's time, late after a newer ALARM), and the previous transition's by its time. Each page
/// found is to resolve, or resolved with its OK page still owed (an earlier delivery of this OK met a failing
/// topic): that one is paid now rather than at the next `check`. An ended one may still hold the lock of a
/// withdrawn approval: a redelivered `OK` whose first delivery withdrew it but died before releasing the lock.
async fn pages_to_resolve<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
    previous: Option<Recorder>,
) -> Result<(Vec<Recorder>, Vec<String>), EngineError> {
    let not_started = |source| EngineError::NotStarted { execution_id: change.execution_id(), source };
    let mut ids = Vec::new();
    if change.new_state == AlarmState::Ok {
        ids = update_pages(&engine.bucket, &change.alarm_arn, |p| p.recovered(change.state_change_time))
            .await
            .map_err(not_started)?;
    }
    let found = ids.clone();
    let (mut resolvable, mut owing, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    let mut sort = |r: Recorder| {
        if unresolved(&r) {
            resolvable.push(r);
            return;
        }
        if r.record.state.is_terminal() {
            ended.push(r.record.execution_id.clone());
        }
        if owes_recovery(&r) {
            owing.push(r);
        }
    };
    if let Some(p) = previous {
        ids.retain(|id| *id != p.record.execution_id);
        sort(p);
    }
    for id in &ids {
        if let Some(r) = record::read(&engine.bucket, id).await.map_err(not_started)? {
            sort(r);
        }
    }
    for mut rec in owing {
        let paid = engine.pay_owed(&mut rec.record).await;
        if let Err(e) = rec.save_now(&engine.bucket, engine.clock.now()).await {
            tracing::warn!(execution_id = %rec.record.execution_id, error = %e, "could not record the recovery page");
        }
        paid.map_err(not_started)?;
    }
    for id in &ended {
        release_withdrawn(engine, id).await.map_err(not_started)?;
    }
    Ok((resolvable, found))
}

/// What a recovery (or a change that is not one) says, in the pages it resolves and in chat.
fn recovery_text(change: &AlarmChange) -> String {
    if change.new_state == AlarmState::Ok {
        format!(
            "alarm {} went from {} to {}: {}. No failback is automatic: only a human returns to the primary.",
            change.alarm_name, change.old_state, change.new_state, change.reason
        )
    } else {
        format!(
            "alarm {} went from {} to {}: {}. Not a recovery: the primary may still be down (its metrics may have \
             stopped arriving); nothing is resolved.",
            change.alarm_name, change.old_state, change.new_state, change.reason
        )
    }
}

/// The chat note of an alarm's change, in the incident of the first execution it resolved (else its own).
/// Chat is best effort: a failing chat topic never fails the recovery's handling.
async fn recovery_chat<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
    text: &str,
    resolved: Option<&str>,
) {
    let env = engine.settings.environment.clone();
    let chat = notification::chat_message(&ChatNote {
        envelope: Envelope {
            event_type: format!("health.{}", change.new_state.as_str().to_lowercase()),
            severity: Severity::Info,
            environment: env.clone(),
            incident_key: resolved
                .map(|id| format!("dr-{env}-{id}"))
                .unwrap_or_else(|| format!("dr-{env}-{}", change.execution_id())),
        },
        title: format!("DR {env}: {} is {}", change.alarm_name, change.new_state),
        description: text.to_owned(),
        next_steps: vec!["Run `status` to see which site is active.".into()],
    });
    if let Err(e) = engine.notifier.publish(Channel::Chat, &chat).await {
        tracing::warn!(alarm = %change.alarm_name, error = %e, "chat note not published (best effort)");
    }
}

/// Resolves the page `rec`'s `ALARM` opened (see [`resolve_once`]). When the record changed since it was read,
/// it is read again and resolved on top of the change, instead of failing the delivery to be retried (with
/// nothing left to do: one `OK` through EventBridge and SNS both, two deliveries of one `ALARM` that both found
/// the `OK`). A page another delivery resolved meanwhile is that delivery's to finish (its redelivery pays an
/// `OK` it owes and frees a lock it left) and is left as it is — unless `again`: this delivery may itself have
/// paged the `ALARM` after that `OK`, so one more `OK` follows.
async fn resolve_page<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    mut rec: Recorder,
    text: String,
    again: bool,
) -> Result<(), StoreError> {
    let id = rec.record.execution_id.clone();
    let changed = || StoreError::Conflict { service: "S3", operation: "PutObject", target: layout::execution_record(&id) };
    for _ in 0..4 {
        if resolve_once(engine, rec, text.clone()).await? {
            return Ok(());
        }
        rec = match record::read(&engine.bucket, &id).await? {
            Some(stored) if again || unresolved(&stored) => stored,
            Some(_) => return Ok(()),
            None => return Err(changed()),
        };
    }
    // Changed at every try: this delivery fails and is retried.
    Err(changed())
}

/// Resolves the page `rec`'s `ALARM` opened: the `OK` page recorded as owed first (a page lost to a failing
/// topic is paid by the next delivery or `check`), then sent; an `ALARM` still owed is dropped rather than sent
/// after its recovery. `false`: the record changed since it was read (nothing written, nothing sent).
async fn resolve_once<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    mut rec: Recorder,
    mut text: String,
) -> Result<bool, StoreError> {
    let env = engine.settings.environment.clone();
    let now = engine.clock.now();
    // A failover waiting for approval on this alarm alone is withdrawn: the recovery wins, and no approval window
    // (nor its lock) outlives the alarm's `OK`. One another alarm joined (its page went into this incident) still
    // waits: that alarm may still fire.
    let joined = |event_type: &str| event_type.contains(".alarm_again.");
    let withdraw = rec.record.state == ExecutionState::AwaitingApproval
        && rec.record.approved_by.is_none()
        && !rec.record.messages.iter().any(|m| joined(&m.event_type))
        && !rec.record.owed.iter().any(|o| joined(&o.event_type));
    if withdraw {
        text.push_str(
            " The failover it prepared is withdrawn (nothing to approve): if the primary is still unhealthy, run \
             `failover` by hand.",
        );
        rec.record.state = ExecutionState::Noop;
        // Ended on purpose, as a cancel ends it: a stop of its preparation (its lock update failed) is over.
        rec.record.error = None;
        rec.record.decision.reasons.push("the alarm recovered before the failover was approved: withdrawn".into());
        rec.record.note(now, "withdrawn: the alarm recovered before approval");
    } else if rec.record.state == ExecutionState::AwaitingApproval {
        text.push_str(" The failover it prepared still awaits approval: approve only if the primary is still unhealthy.");
    }
    let r = &rec.record;
    let page = notification::paging_message(&Page {
        envelope: Envelope {
            event_type: format!("{}.alarm_recovered", r.kind),
            // The severity of the execution's ALARM page, so that a severity filter passes both.
            severity: Severity::Critical,
            environment: env.clone(),
            incident_key: format!("dr-{env}-{}", r.execution_id),
        },
        alarm_name: format!("DR {env} {} {}", r.kind, r.execution_id),
        state: PageState::Ok,
        reason: text,
        description: format!("Databricks DR {} of environment {env} toward the {} site ({})", r.kind, r.target, r.reason),
        time: domain::primitives::rfc3339(now),
        region: engine.settings.region.clone(),
        details: BTreeMap::from([("ExecutionId".to_owned(), json!(r.execution_id))]),
    });
    let dropped = rec.record.owed.iter().filter(|o| !o.resolves()).count();
    if dropped > 0 {
        rec.record.owed.retain(|o| o.resolves());
        rec.record.note(now, format!("{dropped} owed ALARM page(s) dropped: the alarm recovered before they could be sent"));
    }
    let event_type = format!("{}.alarm_recovered", rec.record.kind);
    rec.record.owe(Channel::Paging, &event_type, &page);
    // A conflict: another writer changed the record since it was read; the caller reads it again.
    match rec.save_now(&engine.bucket, now).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => return Ok(false),
        Err(e) => return Err(e),
    }
    let paid = engine.pay_owed(&mut rec.record).await;
    if let Err(e) = rec.save_now(&engine.bucket, engine.clock.now()).await {
        tracing::warn!(execution_id = %rec.record.execution_id, error = %e, "could not record the recovery page");
    }
    if withdraw {
        // After the record's end: a preparation that takes the window after this release re-reads the record
        // and finds it ended (see `prepare_for_approval`).
        let released = release_withdrawn(engine, &rec.record.execution_id).await;
        return paid.and(released).map(|()| true);
    }
    paid.map(|()| true)
}

/// Releases the lock of an execution whose record ended (an approval withdrawn by its alarm's `OK`) unless an
/// attempt is running under it within its lease: that attempt finds the end itself and releases it. Tried again
/// on a failure; an error left makes the `OK`'s delivery fail, so that its redelivery releases it (otherwise the
/// lock would hold off every other execution for the approval window).
async fn release_withdrawn<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    id: &str,
) -> Result<(), StoreError> {
    let mut last = Ok(false);
    for wait in [0u64, 100, 400] {
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        last = lock::release(&engine.bucket, &engine.settings.lock_key, id, engine.clock.now()).await;
        if last.is_ok() {
            break;
        }
    }
    last.map(|_| ())
        .inspect_err(|e| tracing::warn!(execution_id = %id, error = %e, "could not release the lock of an ended execution"))
}

/// Records the execution `id` of an `ALARM` at `alarm_time` as having nothing to do: the alarm recovered (by
/// `ok`, this change or an earlier one) before that `ALARM` was handled, so that its late delivery answers `noop`
/// and pages nobody about an alarm that is already over. A conflict: its execution was recorded meanwhile.
async fn record_recovered<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    id: &str,
    ok: &AlarmChange,
    alarm_time: time::OffsetDateTime,
) -> Result<(), StoreError> {
    let now = engine.clock.now();
    let why = format!(
        "alarm {} recovered (OK at {}) before its ALARM (at {}) was handled: nothing to do",
        ok.alarm_name,
        ok.state_change_time_rfc3339(),
        domain::primitives::rfc3339(alarm_time)
    );
    let new = NewExecution {
        execution_id: id.to_owned(),
        environment: engine.settings.environment.clone(),
        kind: crate::rules::decision::ExecutionKind::Failover,
        initiator: Initiator::Alarm { alarm_name: ok.alarm_name.clone() },
        reason: why.clone(),
        trigger: json!({ "alarm_name": ok.alarm_name, "alarm_arn": ok.alarm_arn, "recovered_by": ok.execution_id() }),
        target: SiteName::Secondary,
        decision: crate::rules::decision::Decision {
            action: crate::rules::decision::Action::Noop,
            target: SiteName::Secondary,
            reasons: vec![why],
            overrides: Vec::new(),
        },
        config_before: None,
        decided_on_version: None,
    };
    let marker = ExecutionRecord::new(new, now);
    match Recorder::new(marker).save_now(&engine.bucket, now).await {
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
