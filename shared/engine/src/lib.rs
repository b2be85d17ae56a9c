//! The failover engine: ports (small traits over what it needs from AWS) and the orchestration over them.
//!
//! This crate names no SDK type and no Lambda type: adapters live in the `aws` crate, the Lambda glue in
//! `app`. Cargo holds the rule (`tests/tests/layering.rs`).
//!
//! Module map (dependencies point downwards only):
//!
//! | module | what |
//! |---|---|
//! | [`commands`] | the `manual-trigger` commands, dispatched once for the function and the `dr` CLI |
//! | [`alarm`], [`replication`] | what a health alarm and a batch of replication events do |
//! | [`check`], [`status`], [`drill`] | read-mostly commands |
//! | [`failover`] | single flight, resumable record, snapshot, one promotion, pages, report |
//! | [`lock`], [`record`], [`snapshot`], [`report`], [`quarantine`], [`documents`], [`response`] | its parts |
//! | [`delta`] | data-plane truth: each Delta table's consistent replica version and RPO, prefixes, streams, coverage |
//! | [`workspace`] | the Databricks workspaces' metadata: export of both sites, drift, latest pointers |
//! | [`ports`] | the traits the adapters implement, and (feature `memory`) in-memory fakes for tests |
//! | [`error`] | [`error::StoreError`], [`error::Retry`] ([`commands::CommandError`] is the commands' own) |

pub mod alarm;
pub mod check;
pub mod commands;
pub mod delta;
pub mod documents;
pub mod drill;
pub mod error;
pub mod failover;
pub mod finding;
pub mod lock;
pub mod ports;
pub mod quarantine;
pub mod record;
pub mod replication;
pub mod report;
pub mod response;
pub mod snapshot;
pub mod status;
pub mod workspace;
