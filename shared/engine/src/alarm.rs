//! What a CloudWatch alarm state change does (the `health-alarm` function's rules).

use crate::documents::{self, Doc};
use crate::failover::{Engine, EngineError, ExecutionResult, MoveRequest};
use crate::ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore};
use crate::record::{self, ExecutionState};
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

/// A failover alarm left `ALARM`: say so in chat, and resolve the page of the execution it opened when that
/// execution only paged (notify-only, refused) or still waits for approval. Never fails back.
async fn report_recovery<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    change: &AlarmChange,
) -> Result<AlarmOutcome, EngineError> {
    let not_started = |source| EngineError::NotStarted { execution_id: change.execution_id(), source };
    let docs = documents::load(&engine.params, &engine.settings.prefix).await.map_err(not_started)?;
    let listed = match &docs.policy {
        Some(Doc::Valid { value, .. }) => value.failover_alarms.contains(&change.alarm_name),
        None => false,
        // An unreadable policy: report rather than stay silent.
        Some(_) => true,
    };
    if !listed {
        return Ok(AlarmOutcome::Ignored(format!("alarm {} is not in the policy's failover_alarms", change.alarm_name)));
    }
    let env = engine.settings.environment.clone();
    let previous = match change.previous_execution_id() {
        Some(id) => record::read(&engine.bucket, &id).await.map_err(not_started)?,
        None => None,
    };
    let now = engine.clock.now();
    let mut resolved = None;
    let mut text = format!(
        "alarm {} went from {} to {}: {}. No failback is automatic: only a human returns to the primary.",
        change.alarm_name, change.old_state, change.new_state, change.reason
    );
    // INSUFFICIENT_DATA is no recovery: metrics stop arriving in a regional outage. Only OK resolves a page
    // (the pagers' own CloudWatch integrations resolve on OK only).
    let previous = if change.new_state == AlarmState::Ok { previous } else { None };
    if change.new_state != AlarmState::Ok {
        text = format!(
            "alarm {} went from {} to {}: {}. Not a recovery: the primary may still be down (its metrics may have \
             stopped arriving); nothing is resolved.",
            change.alarm_name, change.old_state, change.new_state, change.reason
        );
    }
    if let Some(rec) = previous {
        let r = &rec.record;
        if matches!(r.state, ExecutionState::Notified | ExecutionState::Refused | ExecutionState::AwaitingApproval) {
            let pending = if r.state == ExecutionState::AwaitingApproval {
                " The failover it prepared still awaits approval: approve only if the primary is still unhealthy."
            } else {
                ""
            };
            text.push_str(pending);
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
            engine.notifier.publish(Channel::Paging, &page).await.map_err(not_started)?;
            resolved = Some(r.execution_id.clone());
        }
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
    engine.notifier.publish(Channel::Chat, &chat).await.map_err(not_started)?;
    Ok(AlarmOutcome::Reported { message: text, resolved })
}
