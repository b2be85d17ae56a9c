//! The Lambda glue of the DR failover functions and of the break-glass `dr` CLI: configuration from the
//! environment, telemetry, metrics, the error mapping, the composition root, and the two calls every
//! entry point makes (run a command; keep an unparseable input).
//!
//! Module map:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | typed configuration from the environment, validated at cold start |
//! | [`telemetry`] | JSON logging through `tracing` |
//! | [`metrics`] | CloudWatch Embedded Metric Format lines (executions, steps, replication, quarantine) |
//! | [`error`] | [`error::HandlerError`] and, with the `lambda` feature, its `Diagnostic` mapping |
//! | [`root`] | the composition root: one assembly of the engine per entry point's role (`root::assemble`), the functions' cold start |
//! | [`entry`] | what each entry point does around the engine: commands with their metrics, quarantine |
//!
//! The workspace's layering (each crate uses only those below it; Cargo enforces it, and
//! `tests/tests/layering.rs` checks the external dependencies):
//!
//! ```text
//! functions/*  ->  app[lambda]  ->  aws  ->  engine  ->  domain
//! cli (dr)     ->  app          ->  aws  ->  engine  ->  domain
//! (app also uses engine and domain directly; aws uses domain)
//! ```
//!
//! The `lambda` feature (the functions enable it; `dr` does not) adds `lambda_runtime`, so the break-glass
//! CLI does not link the Lambda runtime.

pub mod config;
pub mod entry;
pub mod error;
pub mod metrics;
pub mod root;
pub mod telemetry;
