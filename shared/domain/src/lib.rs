//! The core of the Databricks DR failover: names, the control bucket's layout, primitives, the documents and the
//! messages every subsystem shares. The subsystems' own rules live in their crates (`dr-failover`,
//! `dr-replication`, `dr-delta`, `dr-workspace`, each under `rules`).
//!
//! No I/O, no async runtime, no AWS SDK, no Lambda runtime: Cargo holds that rule (this crate depends on
//! none of them, and `tests/tests/layering.rs` fails if it ever does). Everything here is a plain function
//! of its inputs.
//!
//! Module map:
//!
//! | module | what |
//! |---|---|
//! | [`names`] | validated newtypes: environment, SSM prefix, bucket, topic ARN |
//! | [`error`] | [`error::InvalidDocument`], the one domain error |
//! | [`primitives`] | time stamps, digests and tokens |
//! | [`layout`] | the control bucket's layout: every key the stack reads or writes |
//! | [`site`], [`policy`], [`data_plane`] | the SSM documents, parsed and validated |
//! | [`kinds`], [`sync_settings`] | the workspace object kinds the documents name, a site's `sync` section |
//! | [`notification`] | pages and chat notes, shaped for the pagers' CloudWatch integrations |

pub mod data_plane;
pub mod error;
pub mod kinds;
pub mod layout;
pub mod names;
pub mod notification;
pub mod policy;
pub mod primitives;
pub mod site;
pub mod sync_settings;

/// "a string", "an array", ...: how error messages name the JSON type they found.
pub fn describe_json(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders a `serde_path_to_error` failure as `field.path: problem`, so messages name the field.
pub fn describe_path_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // serde_json appends " at line 1 column 12"; the field path says more to an operator.
    let inner = match inner.rfind(" at line ") {
        Some(i) => inner[..i].to_owned(),
        None => inner,
    };
    if path.is_empty() || path == "." { inner } else { format!("{path}: {inner}") }
}
