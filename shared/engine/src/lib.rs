//! The use cases that combine the subsystems: the `manual-trigger` commands, `check`, `status` and the drill.
//!
//! The subsystems sit below, each one crate over the core (`domain`, the pure documents and names; `dr-ports`,
//! the port traits and the documents read through them): `dr-failover` (decision, lock, record, steps,
//! activation, alarms), `dr-replication`, `dr-delta` and `dr-workspace` (export, drift, matrix, sync). This
//! crate names no SDK type and no Lambda type: adapters live in the `aws` crate, the Lambda glue in `app`.
//! Cargo holds the rule (`tests/tests/layering.rs`).
//!
//! Module map (dependencies point downwards only):
//!
//! | module | what |
//! |---|---|
//! | [`command`] | the `manual-trigger` commands, parsed (pure) |
//! | [`commands`] | the commands, dispatched once for the function and the `dr` CLI |
//! | [`check`], [`status`], [`drill`], [`sync`] | the read-mostly commands, the drill, and `sync` (plan or apply) |

pub mod check;
mod check_sources;
pub mod command;
pub mod commands;
pub mod drill;
pub mod status;
pub mod sync;
