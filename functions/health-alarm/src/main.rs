//! `health-alarm`: CloudWatch alarm state changes (EventBridge rule, the alarm's direct Lambda action, or an
//! SNS-wrapped notification), decided by the policy; a failover alarm may run the failover.
//!
//! Everything is built once here, at cold start; the handler stays thin.

mod event_handler;

use app::config::Config;
use aws::AwsClients;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;

// Lambda hands a sandbox one invocation at a time, and the engine's concurrency is futures joined on one task:
// a single-threaded runtime starts without worker threads and keeps less memory (README, "Measured").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    app::telemetry::init();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start failed: invalid configuration"))?;
    let clients = AwsClients::from_env().await;
    if config.prime_connections {
        clients.prime(&app::root::prime_targets(&config), aws::PRIME_DEADLINE).await;
    }
    let mut engine = app::root::engine(&clients, &config);
    // Its failovers activate the workloads and move the stable DNS name (engine::failover::activate).
    app::root::with_activation(&mut engine, &clients, &config);
    tracing::info!(environment = %config.environment, ssm_prefix = %config.ssm_prefix, "health-alarm ready");
    let engine = &engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        event_handler::handle(engine, event.payload.get()).await
    }))
    .await
}
