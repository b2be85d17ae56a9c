//! Orchestration over the ports: what each trigger and command does. No SDK types here.

pub mod alarm;
pub mod check;
pub mod commands;
pub mod documents;
pub mod drill;
pub mod failover;
pub mod lock;
pub mod quarantine;
pub mod record;
pub mod replication;
pub mod report;
pub mod response;
pub mod snapshot;
pub mod status;
