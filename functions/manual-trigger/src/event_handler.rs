//! Hands the payload to the command dispatch (`app::entry::command`, the same call `dr` makes) and maps the
//! result; an SQS event (the continuations of a carried workspace export, `ExportQueue`) goes to
//! `app::entry::continue_export`, message by message, and answers the messages to retry
//! (`{"batchItemFailures": [{"itemIdentifier": ...}]}`, `ReportBatchItemFailures` on the mapping). No business
//! rules, no SDK types.

use app::error::HandlerError;
use dr_failover::Engine;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use dr_workspace::carry::Carrier;
use serde_json::{Value, json};

/// Handles one invocation.
pub async fn handle<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    carrier: Option<&Carrier>,
    payload: Value,
) -> Result<Value, HandlerError> {
    if let (Some(carrier), Some(records)) = (carrier, sqs_records(&payload)) {
        let mut failures = Vec::new();
        for r in records {
            let id = r.get("messageId").and_then(Value::as_str).unwrap_or_default();
            let body = r.get("body").and_then(Value::as_str).unwrap_or_default();
            match app::entry::continue_export(engine, carrier, body).await {
                Ok(response) => {
                    tracing::info!(message_id = id, outcome = ?response.outcome, details = ?response.message, "export continuation")
                }
                // Retried by SQS after its visibility timeout (the part's lease has lapsed by then).
                Err(e) => {
                    tracing::warn!(message_id = id, error = %e, "export continuation failed: to retry");
                    failures.push(json!({ "itemIdentifier": id }));
                }
            }
        }
        return Ok(json!({ "batchItemFailures": failures }));
    }
    let response = app::entry::command_with(engine, &payload, carrier).await?;
    // Serializing our own response types cannot fail (string keys, no non-finite floats).
    Ok(serde_json::to_value(&response).unwrap_or(Value::Null))
}

/// The records of an SQS event (`Records[].eventSource` `aws:sqs`), if the payload is one.
fn sqs_records(payload: &Value) -> Option<&Vec<Value>> {
    let records = payload.get("Records")?.as_array()?;
    let all_sqs = !records.is_empty() && records.iter().all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"));
    all_sqs.then_some(records)
}
