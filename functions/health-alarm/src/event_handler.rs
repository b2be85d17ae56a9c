//! Parses the alarm change, calls `shared`, maps the result. No business rules, no SDK types.

use serde_json::{Value, json};
use shared::domain::alarm;
use shared::engine::alarm::{AlarmOutcome, on_alarm_change};
use shared::engine::failover::Engine;
use shared::engine::quarantine;
use shared::error::HandlerError;
use shared::ports::{Clock, ControlBucket, Notifier, ParameterStore};

/// Handles one invocation; `raw` is the payload exactly as delivered.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    raw: &str,
) -> Result<Value, HandlerError> {
    let parsed =
        serde_json::from_str::<Value>(raw).map_err(|e| e.to_string()).and_then(|v| alarm::parse(&v).map_err(|e| e.to_string()));
    let change = match parsed {
        Ok(change) => change,
        Err(problem) => {
            // Retrying cannot make this an alarm: keep it and answer without a retry-worthy error.
            let key = quarantine::keep(&engine.bucket, "health-alarm", raw, &problem, engine.clock.now()).await?;
            tracing::error!(quarantine_key = %key, error = %problem, "input is not an alarm state change; quarantined");
            shared::metrics::quarantined(&engine.settings.environment, "health-alarm");
            return Ok(json!({ "outcome": "quarantined", "quarantine_key": key, "message": problem }));
        }
    };
    tracing::info!(
        alarm_name = %change.alarm_name,
        new_state = %change.new_state,
        delivery = ?change.delivery,
        execution_id = %change.execution_id(),
        "alarm state change"
    );
    let outcome = on_alarm_change(engine, &change).await?;
    match &outcome {
        AlarmOutcome::Ignored(why) => tracing::debug!(reason = %why, "ignored"),
        AlarmOutcome::Reported { message, .. } => tracing::info!(message = %message, "recovery reported"),
        AlarmOutcome::Execution(r) => {
            tracing::info!(outcome = ?r.outcome, execution_id = %r.execution_id, "execution answered");
            shared::metrics::execution(&engine.settings.environment, r);
            // Another attempt of this very execution holds the lock: it may be running, or it may have
            // crashed. Fail this delivery so that Lambda/EventBridge redeliver it: once the lease expires
            // the redelivery resumes the execution, or finds it completed.
            if r.same_execution_in_flight() {
                return Err(HandlerError::InFlight(r.message.clone()));
            }
        }
    }
    Ok(outcome.to_json())
}
