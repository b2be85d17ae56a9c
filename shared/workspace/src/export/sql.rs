//! Unity Catalog's tables and grants in bulk: a few statements over `system.information_schema` on the site's
//! SQL warehouse (the SQL Statement Execution API) instead of one listing per schema and one `permissions` call
//! per securable. What they read becomes the REST path's documents (`crate::rules::uc`).
//!
//! The API (https://docs.databricks.com/api/workspace/statementexecution; databricks-sdk-go `service/sql`):
//! `POST /api/2.0/sql/statements` with `warehouse_id`, `statement`, `wait_timeout`, `disposition: INLINE`,
//! `format: JSON_ARRAY`; the answer's `status.state` is `PENDING` (the warehouse is starting), `RUNNING`,
//! `SUCCEEDED` (with `manifest` and the first chunk in `result`), `FAILED` (`status.error`), `CANCELED` or
//! `CLOSED`; `GET /api/2.0/sql/statements/{id}` polls; `GET .../result/chunks/{n}` reads chunk `n`, each chunk
//! naming the next in `next_chunk_index` until the last.

use super::Bounded;
use dr_ports::ApiError;
use serde_json::{Map, Value, json};
use std::time::Duration;

const STATEMENTS: &str = "/api/2.0/sql/statements";

/// The first poll's wait, doubled up to [`POLL_MAX`]: a warehouse that starts takes seconds, a statement over
/// `information_schema` on a running one well under a second. The API sends no `Retry-After` on a pending
/// statement: the caller paces itself.
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);

/// More chunks than an INLINE result can have (25 MiB in all).
const MAX_CHUNKS: u64 = 10_000;

/// The rows of `statement` for one catalog (its `:catalog` parameter), each as column name to value (strings or
/// null, as JSON_ARRAY gives them). The catalog is a named parameter, never spliced into the text: its name is
/// the workspace's, and quoting rules are not this code's to get right.
pub(super) async fn rows(
    b: &Bounded<'_>,
    warehouse: &str,
    statement: &str,
    catalog: &str,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    // `0s`: the call answers at once and this polls. A wait of 5 s or more would hold the call past the
    // client's request timeout on a warehouse that starts (10 s) and one of the export's permits with it.
    let body = json!({
        "warehouse_id": warehouse,
        "statement": statement,
        "wait_timeout": "0s",
        "on_wait_timeout": "CONTINUE",
        "disposition": "INLINE",
        "format": "JSON_ARRAY",
        "parameters": [{"name": "catalog", "value": catalog, "type": "STRING"}],
    });
    let mut answer = b.post(STATEMENTS, &body).await?;
    let id = answer.get("statement_id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| bad("no statement_id"))?;
    let path = format!("{STATEMENTS}/{id}");
    let mut wait = POLL_FIRST;
    loop {
        match answer.pointer("/status/state").and_then(Value::as_str) {
            Some("SUCCEEDED") => break,
            Some("PENDING" | "RUNNING") => {
                // The overall deadline ends the wait: the next call past it is refused by `Bounded`.
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(POLL_MAX);
                answer = b.get(&path, &[]).await?;
            }
            Some(state) => {
                let error = answer.pointer("/status/error/message").and_then(Value::as_str).unwrap_or("no message");
                return Err(ApiError::BadAnswer { path: STATEMENTS.into(), problem: format!("statement {state}: {error}") });
            }
            None => return Err(bad("no status.state")),
        }
    }
    let manifest = answer.get("manifest").ok_or_else(|| bad("a SUCCEEDED statement without its manifest"))?;
    if manifest.get("truncated") == Some(&Value::Bool(true)) {
        return Err(bad("the result was truncated (over the INLINE limit)"));
    }
    let columns: Vec<String> = manifest
        .pointer("/schema/columns")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no manifest.schema.columns"))?
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase())
        .collect();
    let mut out = Vec::new();
    let mut chunk = answer.get("result").cloned().unwrap_or(Value::Null);
    let mut read = 0u64;
    loop {
        for row in chunk.get("data_array").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let cells = row.as_array().ok_or_else(|| bad("a row that is not an array"))?;
            out.push(columns.iter().cloned().zip(cells.iter().cloned()).collect::<Map<String, Value>>());
        }
        let Some(next) = chunk.get("next_chunk_index").and_then(Value::as_u64) else { break };
        read += 1;
        // Chunks go forward: one named again or past any result's count would loop.
        if next != read || read > MAX_CHUNKS {
            return Err(bad(&format!("next_chunk_index {next} after chunk {}", read - 1)));
        }
        chunk = b.get(&format!("{path}/result/chunks/{next}"), &[]).await?;
    }
    match manifest.get("total_row_count").and_then(Value::as_u64) {
        Some(total) if total != out.len() as u64 => {
            Err(bad(&format!("{} rows read of the {total} the manifest counts", out.len())))
        }
        _ => Ok(out),
    }
}

fn bad(problem: &str) -> ApiError {
    ApiError::BadAnswer { path: STATEMENTS.into(), problem: problem.to_owned() }
}

/// The tables of one catalog but its `information_schema` (the REST path leaves it out too). One statement per
/// catalog: an INLINE result over 25 MiB is aborted, and 100,000 tables in one would come near it.
pub(super) const TABLES: &str = "SELECT table_catalog, table_schema, table_name, table_type, table_owner, comment, created, \
     created_by, last_altered, last_altered_by, data_source_format, storage_path FROM system.information_schema.tables \
     WHERE table_catalog = :catalog AND table_schema <> 'information_schema'";

/// The direct grants of one securable type in one catalog: `(securable_type, statement, the columns of its full
/// name)`.
/// Inherited grants are left out in the statement (every table inherits its catalog's: most of the rows) and
/// again by `crate::rules::uc`, which only keeps `inherited_from = 'NONE'`.
pub(super) const GRANTS: [(&str, &str, &[&str]); 3] = [
    (
        "catalog",
        "SELECT grantee, catalog_name, privilege_type, inherited_from FROM system.information_schema.catalog_privileges \
         WHERE catalog_name = :catalog AND inherited_from = 'NONE'",
        &["catalog_name"],
    ),
    (
        "schema",
        "SELECT grantee, catalog_name, schema_name, privilege_type, inherited_from FROM system.information_schema.schema_privileges \
         WHERE catalog_name = :catalog AND inherited_from = 'NONE'",
        &["catalog_name", "schema_name"],
    ),
    (
        "table",
        "SELECT grantee, table_catalog, table_schema, table_name, privilege_type, inherited_from \
         FROM system.information_schema.table_privileges WHERE table_catalog = :catalog AND inherited_from = 'NONE'",
        &["table_catalog", "table_schema", "table_name"],
    ),
];
