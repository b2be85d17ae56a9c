//! The incident store: documents under `replication/incidents/`, read with their ETag and written with
//! compare-and-swap. An unreadable document is kept under `quarantine/` and replaced rather than silencing its
//! incident forever.

use super::{CAS_ATTEMPTS, FUNCTION_NAME};
use crate::rules::incident::Incident;
use dr_ports::error::StoreError;
use dr_ports::quarantine;
use dr_ports::{ControlBucket, WriteCondition};
use time::OffsetDateTime;

/// A document as read: the incident (`None` when absent or unreadable) and the condition to write it back.
pub(super) struct Read {
    pub incident: Option<Incident>,
    pub condition: WriteCondition,
}

/// Reads an incident with the condition to write it back. An unreadable document is kept under `quarantine/`
/// and will be replaced (a new occurrence starts).
pub(super) async fn read<B: ControlBucket>(bucket: &B, key: &str, now: OffsetDateTime) -> Result<Read, StoreError> {
    let Some(object) = bucket.get(key).await? else { return Ok(Read { incident: None, condition: WriteCondition::IfAbsent }) };
    match serde_json::from_slice::<Incident>(&object.body) {
        Ok(incident) => Ok(Read { incident: Some(incident), condition: WriteCondition::IfMatch(object.etag) }),
        Err(e) => {
            let problem = format!("incident document {key} is unreadable ({e}); replaced by a new occurrence");
            let kept = quarantine::keep(bucket, FUNCTION_NAME, &String::from_utf8_lossy(&object.body), &problem, now).await?;
            tracing::error!(key, quarantine_key = %kept, error = %e, "unreadable incident document quarantined and replaced");
            Ok(Read { incident: None, condition: WriteCondition::IfMatch(object.etag) })
        }
    }
}

/// Writes an incident under `condition`; returns its new ETag.
pub(super) async fn write<B: ControlBucket>(
    bucket: &B,
    key: &str,
    incident: &Incident,
    condition: WriteCondition,
) -> Result<String, StoreError> {
    let body = serde_json::to_vec_pretty(incident).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "PutObject",
        message: format!("incident {} cannot be serialized: {e}", incident.id),
    })?;
    bucket.put(key, body, "application/json", condition).await
}

/// A stored incident after a change: the document as written and its ETag.
pub(super) struct Written<T> {
    pub incident: Incident,
    pub etag: String,
    pub result: T,
}

/// Applies `change` to the stored incident with compare-and-swap. Starts from `known` (a document and its ETag
/// already in hand, e.g. the one this instance wrote last: no read) when given, and re-reads after a lost race,
/// at most [`CAS_ATTEMPTS`] times. `change` sees the current document and returns `None` to leave it alone (then
/// nothing is written). Absent or unreadable documents are left alone.
pub(super) async fn update<B: ControlBucket, T>(
    bucket: &B,
    key: &str,
    known: Option<(Incident, String)>,
    mut change: impl FnMut(&mut Incident) -> Option<T>,
) -> Result<Option<Written<T>>, StoreError> {
    let mut current = known;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut incident, etag) = match current.take() {
            Some(known) => known,
            None => {
                let Some(object) = bucket.get(key).await? else { return Ok(None) };
                let Ok(incident) = serde_json::from_slice::<Incident>(&object.body) else {
                    tracing::warn!(key, "unreadable incident document left alone (the next batch replaces it)");
                    return Ok(None);
                };
                (incident, object.etag)
            }
        };
        let Some(result) = change(&mut incident) else { return Ok(None) };
        match write(bucket, key, &incident, WriteCondition::IfMatch(etag)).await {
            Ok(etag) => return Ok(Some(Written { incident, etag, result })),
            Err(StoreError::Conflict { .. }) if attempt < CAS_ATTEMPTS => backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
}

/// Waits a random time below 25 ms x 2^attempt (at most 400 ms): full jitter, so racing instances spread out.
pub(super) async fn backoff(attempt: u32) {
    let cap = 25u64 << attempt.min(4);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(cap)) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
}
