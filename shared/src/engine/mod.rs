//! Orchestration over the ports: what each trigger and command does. No SDK types here.

pub mod documents;
pub mod response;
pub mod status;
