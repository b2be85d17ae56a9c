//! Shared code of the Databricks DR failover Lambda functions.
//!
//! Module map (dependencies point downwards only):
//!
//! | module | what | may use |
//! |---|---|---|
//! | [`domain`] | pure documents, commands and decisions; validated newtypes | nothing with I/O |
//! | [`ports`] | small traits over what the engine needs from AWS | `domain` |
//! | [`engine`] | orchestration over the ports (status, failover, drill, snapshot) | `domain`, `ports` |
//! | [`aws`] | adapters implementing the ports with the AWS SDK; the only code naming `aws_sdk_*` | `ports` |
//! | [`config`] | typed configuration from the environment | - |
//! | [`error`] | error enums per layer and their mapping to the runtime's `Diagnostic` | - |
//! | [`telemetry`] | JSON logging through `tracing` | - |
//! | [`metrics`] | CloudWatch Embedded Metric Format lines (executions, steps, replication, quarantine) | - |
//!
//! The function binaries build the config, the clients and the adapters once in `main` and hand them to a
//! thin handler that calls into [`engine`].

pub mod aws;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
#[cfg(test)]
pub(crate) mod memory;
pub mod metrics;
pub mod ports;
pub mod telemetry;
