//! `manual-trigger`: on-call and drill commands, invoked directly (`aws lambda invoke`, console, scheduler), and
//! the continuations of a carried workspace export (SQS events from its ExportQueue).
//!
//! Everything is built once here, at cold start (`app::root::cold_start`: the Databricks connector, Route 53, the
//! export queue when `DR_EXPORT_QUEUE_URL` is set); the handler stays thin.

mod event_handler;

use app::root::Role;
use lambda_runtime::{Error, LambdaEvent, service_fn};

// Lambda hands a sandbox one invocation at a time, and the engine's concurrency is futures joined on one task:
// a single-threaded runtime starts without worker threads and keeps less memory (README, "Measured").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let assembly = app::root::cold_start(Role::ManualTrigger).await?;
    let (engine, carrier) = (&assembly.engine, assembly.carrier.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        event_handler::handle(engine, carrier, event.payload).await
    }))
    .await
}
