//! Hands the payload to the command dispatch (`app::entry::command`, the same call `dr` makes) and maps the
//! result. No business rules, no SDK types.

use app::error::HandlerError;
use engine::failover::Engine;
use engine::ports::{Clock, ControlBucket, Notifier, ParameterStore};
use serde_json::Value;

/// Handles one invocation.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    payload: Value,
) -> Result<Value, HandlerError> {
    let response = app::entry::command(engine, &payload).await?;
    // Serializing our own response types cannot fail (string keys, no non-finite floats).
    Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
}
