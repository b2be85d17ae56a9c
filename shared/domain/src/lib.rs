//! The pure domain of the Databricks DR failover: documents, commands, decisions and messages.
//!
//! No I/O, no async runtime, no AWS SDK, no Lambda runtime: Cargo holds that rule (this crate depends on
//! none of them, and `tests/tests/layering.rs` fails if it ever does). Everything here is a plain function
//! of its inputs, so the policy can be tested exhaustively and reasoned about at 3 a.m.
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
//! | [`command`] | the `manual-trigger` commands, parsed |
//! | [`alarm`] | CloudWatch alarm state changes from every delivery path, normalized |
//! | [`alarm_pages`] | which open pages an alarm's `OK` resolves (after `INSUFFICIENT_DATA`, through SNS, late) |
//! | [`decision`] | the failover policy as pure functions |
//! | [`notification`] | pages and chat notes, shaped for the pagers' CloudWatch integrations |
//! | [`databricks`] | workspace metadata: exported kinds, stable identities, drift, the live DR matrix |
//! | [`replication`] | S3 replication events: parsing, classification, aggregation, incidents, manifests |
//! | [`activation`] | workload activation and client redirection: the plan, its reverse, out-of-step findings |
//! | [`delta`] | Delta tables on a replica: the log's files and actions, the consistent version, RPO, streams |

pub mod activation;
pub mod alarm;
pub mod alarm_pages;
pub mod command;
pub mod data_plane;
pub mod databricks;
pub mod decision;
pub mod delta;
pub mod error;
pub mod kinds;
pub mod layout;
pub mod names;
pub mod notification;
pub mod policy;
pub mod primitives;
pub mod replication;
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
