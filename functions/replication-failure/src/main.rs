//! `replication-failure`: S3 replication event notifications (through SQS, the main path; SNS; or a direct
//! invocation) turned into incidents, re-drive manifests and one page per incident. Never a failover.
//!
//! Everything is built once here, at cold start (`app::root::cold_start`); the handler stays thin. The payload is
//! taken raw so that a body that cannot be parsed is quarantined exactly as it arrived.

mod event_handler;

use app::root::Role;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;

// Lambda hands a sandbox one invocation at a time, and the engine's concurrency is futures joined on one task:
// a single-threaded runtime starts without worker threads and keeps less memory (README, "Measured").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let assembly = app::root::cold_start(Role::ReplicationFailure).await?;
    let engine = &assembly.engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        event_handler::handle(engine, event.payload.get()).await
    }))
    .await
}
