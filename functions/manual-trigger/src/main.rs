//! `manual-trigger`: on-call and drill commands, invoked directly (`aws lambda invoke`, console, scheduler).
//!
//! Everything is built once here, at cold start; the handler stays thin.

mod event_handler;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::AwsClients;
use shared::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "cold start failed: invalid configuration"))?;
    let clients = AwsClients::from_env().await;
    let deps = event_handler::Deps { engine: shared::aws::engine(&clients, &config), config };
    tracing::info!(environment = %deps.config.environment, ssm_prefix = %deps.config.ssm_prefix, "manual-trigger ready");
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        event_handler::handle(deps, event.payload).await
    }))
    .await
}
