//! `health-alarm`: CloudWatch alarm state changes (EventBridge rule, the alarm's direct Lambda action, or an
//! SNS-wrapped notification), decided by the policy; a failover alarm may run the failover.
//!
//! Everything is built once here, at cold start (`app::root::cold_start`: its failovers activate the workloads and
//! move the stable DNS name); the handler stays thin.

mod event_handler;

use app::root::Role;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;

// Lambda hands a sandbox one invocation at a time, and the engine's concurrency is futures joined on one task:
// a single-threaded runtime starts without worker threads and keeps less memory (README, "Measured").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let assembly = app::root::cold_start(Role::HealthAlarm).await?;
    let engine = &assembly.engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        event_handler::handle(engine, event.payload.get()).await
    }))
    .await
}
