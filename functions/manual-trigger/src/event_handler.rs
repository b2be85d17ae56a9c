//! Hands the payload to `shared`'s command dispatch and maps the result. No business rules, no SDK types.

use serde_json::Value;
use shared::config::Config;
use shared::engine::commands;
use shared::engine::failover::Engine;
use shared::error::HandlerError;
use shared::ports::{Clock, ControlBucket, Notifier, ParameterStore};

/// What the handler needs, built once in `main`.
pub struct Deps<P, B, N, C> {
    /// The engine over its adapters.
    pub engine: Engine<P, B, N, C>,
    /// The function's configuration.
    pub config: Config,
}

/// Handles one invocation.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    deps: &Deps<P, B, N, C>,
    payload: Value,
) -> Result<Value, HandlerError> {
    let response = commands::run(&deps.engine, &deps.config, &payload).await?;
    // Serializing our own response types cannot fail (string keys, no non-finite floats).
    Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
}
