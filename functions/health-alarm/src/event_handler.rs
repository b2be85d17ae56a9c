//! Parses the alarm change, calls the engine, maps the result. No business rules, no SDK types.

use app::error::HandlerError;
use dr_failover::Engine;
use dr_failover::alarm::{AlarmOutcome, on_alarm_change};
use dr_failover::rules::alarm;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use serde_json::Value;

/// Handles one invocation; `raw` is the payload exactly as delivered.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    raw: &str,
) -> Result<Value, HandlerError> {
    let parsed =
        serde_json::from_str::<Value>(raw).map_err(|e| e.to_string()).and_then(|v| alarm::parse(&v).map_err(|e| e.to_string()));
    let change = match parsed {
        Ok(change) => change,
        // Retrying cannot make this an alarm: keep it and answer without a retry-worthy error.
        Err(problem) => return app::entry::quarantined(engine, "health-alarm", raw, &problem).await,
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
            app::metrics::execution(&engine.settings.environment, r);
            // Another attempt of this very execution holds the lock: it may be running, or it may have
            // crashed. Fail this delivery so that Lambda/EventBridge redeliver it: once the lease expires
            // the redelivery resumes the execution, or finds it completed.
            if r.should_redeliver() {
                return Err(HandlerError::InFlight(r.message.clone()));
            }
            // Pages it owes could not be published (the paging topic failed): a redelivery pays them.
            if !r.pages_owed.is_empty() {
                return Err(HandlerError::PagesOwed(format!("{}; pages owed: {}", r.message, r.pages_owed.join(", "))));
            }
        }
    }
    Ok(outcome.to_json())
}
