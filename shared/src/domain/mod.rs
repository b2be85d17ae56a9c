//! Pure domain: documents, commands and decisions. No I/O, no SDK types.

pub mod alarm;
pub mod command;
pub mod data_plane;
pub mod decision;
pub mod notification;
pub mod policy;
pub mod replication;
pub mod site;

/// "a string", "an array", ...: how error messages name the JSON type they found.
pub(crate) fn describe_json(v: &serde_json::Value) -> &'static str {
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
pub(crate) fn describe_path_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // serde_json appends " at line 1 column 12"; the field path says more to an operator.
    let inner = match inner.rfind(" at line ") {
        Some(i) => inner[..i].to_owned(),
        None => inner,
    };
    if path.is_empty() || path == "." { inner } else { format!("{path}: {inner}") }
}
