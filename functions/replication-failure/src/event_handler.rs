//! Parses the payload, calls the engine, maps the result to the answer Lambda expects. No rules, no SDK types.
//!
//! - SQS: `aws_lambda_events`' `SqsBatchResponse`, which serializes as
//!   `{"batchItemFailures": [{"itemIdentifier": "<messageId>"}, ...]}` (`ReportBatchItemFailures` on the event
//!   source mapping): only the messages whose processing failed are retried; an empty list acknowledges the whole
//!   batch, poison messages included (they are kept under `quarantine/`).
//! - SNS or direct: a summary object; if any write failed, an error (`Retryable.*` for a transient failure) so
//!   that Lambda retries the invocation, which counts nothing twice (each incident keeps the fingerprints of what
//!   it counted) and pays any page still owed.

use app::error::HandlerError;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use dr_failover::Engine;
use dr_ports::{Clock, ControlBucket, Notifier};
use dr_replication::rules::event::{BatchSource, Envelope};
use dr_replication::{BatchOutcome, PageStatus};
use serde::Serialize;
use serde_json::Value;

/// What the function answers; serialized as the inner value alone.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// An SQS event's answer: the messages to retry (`{"batchItemFailures": [{"itemIdentifier": ...}]}`).
    Sqs(SqsBatchResponse),
    /// Anything else: the summary of an SNS or direct invocation, or the quarantine answer of a payload that is
    /// not JSON.
    Other(Value),
}

/// Handles one invocation; `raw` is the payload exactly as delivered.
pub async fn handle<P, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    raw: &str,
) -> Result<Answer, HandlerError> {
    let envelope = match Envelope::parse(raw) {
        Ok(envelope) => envelope,
        Err(e) => {
            let problem = format!("not JSON ({e}): expected an SQS event, an SNS event or an S3 event notification");
            return app::entry::quarantined(engine, dr_replication::FUNCTION_NAME, raw, &problem).await.map(Answer::Other);
        }
    };
    let settings = &engine.settings;
    let outcome = dr_replication::process_batch(
        &engine.bucket,
        &engine.notifier,
        &engine.clock,
        &settings.environment,
        &settings.region,
        &envelope,
        raw,
    )
    .await;
    log(&outcome);
    emit_metrics(&settings.environment, &outcome);
    if outcome.source == BatchSource::Sqs {
        let mut response = SqsBatchResponse::default();
        response.set_failures(outcome.batch_item_failures());
        return Ok(Answer::Sqs(response));
    }
    let summary = outcome.summary();
    match outcome.into_error() {
        Some(error) => Err(HandlerError::Store(error)),
        None => Ok(Answer::Other(summary)),
    }
}

/// The batch's CloudWatch metrics (EMF lines): failures by category, quarantined bodies.
fn emit_metrics(env: &str, o: &BatchOutcome) {
    for (category, count) in &o.counts_by_category {
        app::metrics::replication_failures(env, &category.to_string(), *count);
    }
    for _ in &o.quarantined {
        app::metrics::quarantined(env, dr_replication::FUNCTION_NAME);
    }
}

/// Counts, per category and per incident, as JSON log lines; never the event itself.
fn log(o: &BatchOutcome) {
    tracing::info!(
        outcome = o.outcome(),
        source = %o.source,
        batch_id = %o.batch_id,
        messages = o.messages,
        records = o.records,
        duplicates = o.duplicates,
        already_counted = o.already_counted,
        groups = o.groups,
        test_events = o.test_events,
        incidents = o.incidents.len(),
        quarantined = o.quarantined.len(),
        manifests = o.manifests.len(),
        manifest_rows = o.manifest_rows(),
        pages = o.pages_sent(),
        failed_messages = o.batch_item_failures().len(),
        "replication batch"
    );
    for (category, count) in &o.counts_by_category {
        tracing::info!(category = %category, count, "replication events by category");
    }
    for i in &o.incidents {
        let (state, severity, total_failed) = match &i.incident {
            Some(d) => (Some(d.state), Some(d.highest_severity.as_str()), d.total_failed),
            None => (None, None, 0),
        };
        tracing::info!(
            incident = %i.id,
            records = i.records,
            already_counted = i.already_counted,
            result = ?i.result,
            decision = ?i.decision,
            page = ?i.page,
            page_sent = i.page == PageStatus::Sent,
            pages_published = i.pages_published,
            pages_owed = i.incident.as_ref().map_or(0, |d| d.owed_pages.len()),
            attempts = i.attempts,
            state = ?state,
            severity = ?severity,
            total_failed,
            "replication incident"
        );
    }
    for q in &o.quarantined {
        tracing::error!(message_id = %q.message_id, quarantine_key = ?q.key, error = %q.error, "unparseable message quarantined");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_serialize_as_lambda_expects() {
        let mut response = SqsBatchResponse::default();
        let json = |a: &Answer| serde_json::to_value(a).expect("serializes");
        assert_eq!(json(&Answer::Sqs(response.clone())), json!({ "batchItemFailures": [] }));
        response.set_failures(["m-1", "m-2"]);
        assert_eq!(
            serde_json::to_string(&Answer::Sqs(response)).expect("serializes"),
            r#"{"batchItemFailures":[{"itemIdentifier":"m-1"},{"itemIdentifier":"m-2"}]}"#
        );
        assert_eq!(json(&Answer::Other(json!({ "outcome": "processed" }))), json!({ "outcome": "processed" }));
    }
}
