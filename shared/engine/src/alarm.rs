//! What a CloudWatch alarm state change does (the `health-alarm` function's rules).

use crate::documents::{self, Doc};
use crate::error::StoreError;
use crate::failover::{Engine, EngineError, ExecutionResult, MoveRequest};
use crate::ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore};
use crate::record::{self, ExecutionRecord, ExecutionState, Recorder};
use crate::response::Outcome;
use domain::alarm::{AlarmChange, AlarmState};
use domain::decision::Initiator;
use domain::notification::{self, ChatNote, Envelope, Page, PageState, Severity};
use domain::site::SiteName;
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
                let mut m = r.to_fields();
                m.insert("outcome".into(), json!(r.outcome));
                m.insert("active_site".into(), json!(r.active_site));
                m.insert("message".into(), json!(r.message));
                Value::Object(m)
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
        return Ok(AlarmOutcome::Execution(Box::new(result)));
    }
    report_recovery(engine, change).await
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
    // The recovery arrived before its ALARM was handled (deliveries are unordered and retried): the ALARM's
    // execution is recorded now as having nothing to do, so that its late delivery answers that and pages
    // nobody about an alarm that is already over.
    // (Whether or not the alarm is listed now: the policy may list it by the time its ALARM is delivered again.)
    if let (Some(id), None) = (&previous_id, &previous)
        && let Some(alarm_time) = change.previous_state_time
    {
        let now = engine.clock.now();
        let why = format!(
            "alarm {} recovered before its ALARM (at {}) was handled: nothing to do",
            change.alarm_name,
            domain::primitives::rfc3339(alarm_time)
        );
        let marker = ExecutionRecord {
            execution_id: id.clone(),
            environment: engine.settings.environment.clone(),
            kind: domain::decision::ExecutionKind::Failover,
            initiator: Initiator::Alarm { alarm_name: change.alarm_name.clone() },
            reason: why.clone(),
            trigger: json!({ "alarm_name": change.alarm_name, "alarm_arn": change.alarm_arn, "recovered_by": change.execution_id() }),
            target: SiteName::Secondary,
            decision: domain::decision::Decision {
                action: domain::decision::Action::Noop,
                target: SiteName::Secondary,
                reasons: vec![why],
                overrides: Vec::new(),
            },
            state: ExecutionState::Noop,
            created_at: domain::primitives::rfc3339(now),
            updated_at: domain::primitives::rfc3339(now),
            steps: Vec::new(),
            config_before: None,
            config_after: None,
            promoted_version: None,
            snapshot_manifest_key: None,
            decided_on_version: None,
            approved_by: None,
            rpo_estimate: None,
            activation: None,
            workspaces: None,
            messages: Vec::new(),
            owed: Vec::new(),
            report_key: None,
            notes: Vec::new(),
            error: None,
        };
        match Recorder::new(marker).save_now(&engine.bucket, now).await {
            // Created: the ALARM's late delivery will answer `noop`. A conflict: its execution was recorded
            // meanwhile; this delivery fails and is retried to resolve what it opened.
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(not_started(e)),
        }
        if let Ok(Some(now_recorded)) = record::read(&engine.bucket, id).await
            && matches!(
                now_recorded.record.state,
                ExecutionState::Notified | ExecutionState::Refused | ExecutionState::AwaitingApproval
            )
        {
            return Err(EngineError::NotStarted {
                execution_id: change.execution_id(),
                source: StoreError::Conflict {
                    service: "S3",
                    operation: "PutObject",
                    target: domain::layout::execution_record(id),
                },
            });
        }
    }
    let resolvable = previous.filter(|p| {
        matches!(p.record.state, ExecutionState::Notified | ExecutionState::Refused | ExecutionState::AwaitingApproval)
    });
    if !listed && resolvable.is_none() {
        return Ok(AlarmOutcome::Ignored(format!("alarm {} is not in the policy's failover_alarms", change.alarm_name)));
    }
    let env = engine.settings.environment.clone();
    let now = engine.clock.now();
    let mut resolved = None;
    let mut text = if change.new_state == AlarmState::Ok {
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
    };
    if let Some(mut rec) = resolvable {
        if rec.record.state == ExecutionState::AwaitingApproval {
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
            reason: text.clone(),
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
        // Recorded as owed first (a recovery page lost to a failing topic is paid by the next delivery or
        // `check`), then sent; a conflict means another delivery is recording it.
        rec.save_now(&engine.bucket, now).await.map_err(not_started)?;
        let paid = engine.pay_owed(&mut rec.record).await;
        if let Err(e) = rec.save_now(&engine.bucket, engine.clock.now()).await {
            tracing::warn!(execution_id = %rec.record.execution_id, error = %e, "could not record the recovery page");
        }
        paid.map_err(not_started)?;
        resolved = Some(rec.record.execution_id.clone());
    }
    let chat = notification::chat_message(&ChatNote {
        envelope: Envelope {
            event_type: format!("health.{}", change.new_state.as_str().to_lowercase()),
            severity: Severity::Info,
            environment: env.clone(),
            incident_key: resolved
                .clone()
                .map(|id| format!("dr-{env}-{id}"))
                .unwrap_or_else(|| format!("dr-{env}-{}", change.execution_id())),
        },
        title: format!("DR {env}: {} is {}", change.alarm_name, change.new_state),
        description: text.clone(),
        next_steps: vec!["Run `status` to see which site is active.".into()],
    });
    // Chat is best effort: a failing chat topic never fails the recovery's handling.
    if let Err(e) = engine.notifier.publish(Channel::Chat, &chat).await {
        tracing::warn!(alarm = %change.alarm_name, error = %e, "chat note not published (best effort)");
    }
    Ok(AlarmOutcome::Reported { message: text, resolved })
}
