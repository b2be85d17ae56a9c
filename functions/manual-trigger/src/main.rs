//! `manual-trigger`: on-call and drill commands, invoked directly (`aws lambda invoke`, console, scheduler).
//!
//! Everything is built once here, at cold start; the handler stays thin.

mod event_handler;

use app::config::Config;
use aws::AwsClients;
use lambda_runtime::{Error, LambdaEvent, service_fn};

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
    // Only manual-trigger exports the Databricks workspaces (the `snapshot` command, scheduled): the connector
    // builds its HTTP client at the first export, never at init; secrets only from {prefix}/secrets/.
    let secrets = config.ssm_prefix.child("secrets");
    engine.workspaces = Some(std::sync::Arc::new(aws::databricks::DatabricksConnector::new(clients.ssm.clone(), &secrets)));
    // Its failovers and failbacks activate the workloads and move the stable DNS name (engine::failover::activate).
    app::root::with_activation(&mut engine, &clients, &config);
    // With an export queue (template: ExportQueue), a snapshot's workspace export is carried over invocations,
    // whose continuations come back as SQS events (engine::workspace::carry).
    let carrier = config.export_queue_url.clone().map(|url| engine::workspace::carry::Carrier {
        queue: std::sync::Arc::new(aws::sqs::SqsExportQueue::new(clients.sqs.clone(), url)),
        budget: std::time::Duration::from_secs(u64::from(config.export_deadline_seconds)),
        part_size: config.export_part_size as usize,
    });
    tracing::info!(environment = %config.environment, ssm_prefix = %config.ssm_prefix, carried_exports = carrier.is_some(), "manual-trigger ready");
    let (engine, carrier) = (&engine, carrier.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        event_handler::handle(engine, carrier, event.payload).await
    }))
    .await
}
