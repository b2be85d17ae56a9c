//! Inputs that could not be parsed are kept verbatim under `quarantine/`, with the error, so nothing is lost.

use crate::error::StoreError;
use crate::{ControlBucket, WriteCondition};
use domain::primitives::rfc3339;
use domain::primitives::sha256_hex;
use serde_json::json;
use time::OffsetDateTime;

/// Keeps `raw` (the input exactly as received) with `error` and returns the key. The key is derived from
/// the content, so a redelivered input is kept once.
pub async fn keep(
    bucket: &impl ControlBucket,
    function: &str,
    raw: &str,
    error: &str,
    now: OffsetDateTime,
) -> Result<String, StoreError> {
    let day = rfc3339(now).get(..10).unwrap_or("unknown").to_owned();
    let key = domain::layout::quarantined(function, &day, &sha256_hex(raw.as_bytes())[..32]);
    let body = json!({ "function": function, "received_at": rfc3339(now), "error": error, "raw": raw });
    bucket.put(&key, serde_json::to_vec_pretty(&body).unwrap_or_default(), "application/json", WriteCondition::Overwrite).await?;
    Ok(key)
}
