//! What every entry point does around the engine, written once: a command with its metrics, and an input
//! that cannot be parsed kept under `quarantine/` with an answer that says so.

use crate::error::HandlerError;
use crate::metrics;
use dr_failover::Engine;
use dr_failover::response::CommandResponse;
use dr_ports::quarantine;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use serde_json::{Value, json};

/// Runs one `manual-trigger` command payload (the function and `dr` alike) and counts the execution it ran.
pub async fn command<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    payload: &Value,
) -> Result<CommandResponse, HandlerError> {
    // Boxed: the dispatch's future nests every command's; inline, its layout overflows rustc's query depth in
    // the callers' `main`. One allocation per command.
    let response = Box::pin(engine::commands::run(engine, payload)).await?;
    metrics::command(&engine.settings.environment, &response);
    Ok(response)
}

/// [`command`] in a function that carries its snapshots' workspace exports over invocations (`carrier`).
pub async fn command_with<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    payload: &Value,
    carrier: Option<&dr_workspace::carry::Carrier>,
) -> Result<CommandResponse, HandlerError> {
    let response = Box::pin(engine::commands::run_with(engine, payload, carrier)).await?;
    metrics::command(&engine.settings.environment, &response);
    Ok(response)
}

/// One continuation of a carried workspace export (an SQS message's body).
pub async fn continue_export<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    carrier: &dr_workspace::carry::Carrier,
    body: &str,
) -> Result<CommandResponse, HandlerError> {
    Ok(Box::pin(engine::commands::continue_export(engine, carrier, body)).await?)
}

/// Keeps `raw` (the input exactly as delivered) under `quarantine/{function}/` with `problem`, logs and counts
/// it, and returns the answer: `{"outcome": "quarantined", "quarantine_key", "message"}`. Retrying cannot make
/// such an input valid, so the answer is not an error; only a failure to keep it is (and is retried).
pub async fn quarantined<P, B: ControlBucket, N, C: Clock>(
    engine: &Engine<P, B, N, C>,
    function: &str,
    raw: &str,
    problem: &str,
) -> Result<Value, HandlerError> {
    let key = quarantine::keep(&engine.bucket, function, raw, problem, engine.clock.now()).await?;
    tracing::error!(quarantine_key = %key, error = %problem, function, "input could not be parsed; quarantined");
    metrics::quarantined(&engine.settings.environment, function);
    Ok(json!({ "outcome": "quarantined", "quarantine_key": key, "message": problem }))
}
