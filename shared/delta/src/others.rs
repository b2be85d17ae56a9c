//! `prefix` and `stream-checkpoint` locations.

use super::{DeltaLimits, list_all, relative};
use crate::rules::report::{Status, TableReport};
use crate::rules::stream::{StreamCheckpoint, StreamVerdict, judge};
use domain::data_plane::Location;
use dr_ports::DataBuckets;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use time::OffsetDateTime;

fn root(prefix: &str) -> String {
    if prefix.is_empty() { String::new() } else { format!("{prefix}/") }
}

/// The objects of the primary missing in the replica (over the listed range when the primary is larger than
/// the bound: a sample), and the oldest one's age.
pub(super) async fn assess_prefix<D: DataBuckets>(
    data: &D,
    loc: &Location,
    limits: &DeltaLimits,
    now: OffsetDateTime,
) -> TableReport {
    let mut r = TableReport::bare(&loc.name, "prefix", Status::Unknown, "");
    let (proot, rroot) = (root(&loc.primary.prefix), root(&loc.replica.prefix));
    let (primary, replica) = tokio::join!(
        list_all(data, &loc.primary.bucket, &proot, None, limits),
        list_all(data, &loc.replica.bucket, &rroot, None, limits)
    );
    let (primary, sampled) = match primary {
        Ok(p) => p,
        Err(e) => {
            r.reason = format!("the primary could not be listed: {e}");
            return r;
        }
    };
    let (replica, replica_truncated) = match replica {
        Ok(p) => p,
        Err(e) => {
            r.reason = format!("the replica could not be listed: {e}");
            return r;
        }
    };
    let have: HashSet<&str> = replica.iter().map(|o| relative(&o.key, &rroot)).collect();
    // Beyond the replica's listed range nothing can be said: the comparison stops at its last key.
    let bound = replica_truncated.then(|| replica.last().map(|o| relative(&o.key, &rroot))).flatten();
    let missing: Vec<_> = primary
        .iter()
        .map(|o| (relative(&o.key, &proot), o))
        .filter(|(k, _)| bound.is_none_or(|b| *k <= b) && !have.contains(k))
        .collect();
    let oldest = missing.iter().filter_map(|(_, o)| o.last_modified).min();
    let age = oldest.map(|t| (now - t).whole_seconds().max(0));
    r.details.insert("primary_objects_compared".into(), json!(primary.len()));
    r.details.insert("missing_objects".into(), json!(missing.len()));
    r.details.insert("sampled".into(), json!(sampled || replica_truncated));
    r.details.insert("oldest_missing_age_seconds".into(), json!(age));
    r.details.insert("missing_examples".into(), json!(missing.iter().take(5).map(|(k, _)| k).collect::<Vec<_>>()));
    r.rpo_seconds = if missing.is_empty() { Some(0) } else { age };
    (r.status, r.reason) = if missing.is_empty() {
        (Status::Current, format!("every one of the {} object(s) compared is in the replica", primary.len()))
    } else {
        (
            Status::Behind,
            format!(
                "{} of {} object(s) missing in the replica{}, the oldest written {} s ago",
                missing.len(),
                primary.len(),
                if sampled { " (a sample: the listing's bound was reached)" } else { "" },
                age.map_or("an unknown time".into(), |a| a.to_string())
            ),
        )
    };
    r
}

/// The replica's checkpoint against its sink's `txn` at the sink's consistent version (`sink`: `None` when the
/// sink's assessment is absent, `Some(None)` when it has no consistent version).
pub(super) async fn assess_stream<D: DataBuckets>(
    data: &D,
    loc: &Location,
    sink: Option<Option<&BTreeMap<String, i64>>>,
    limits: &DeltaLimits,
) -> TableReport {
    let mut r = TableReport::bare(&loc.name, "stream-checkpoint", Status::Unknown, "");
    let rroot = root(&loc.replica.prefix);
    let bucket = &loc.replica.bucket;
    let (o, c, m) = (format!("{rroot}offsets/"), format!("{rroot}commits/"), format!("{rroot}metadata"));
    let (offsets, commits, metadata) = tokio::join!(
        list_all(data, bucket, &o, None, limits),
        list_all(data, bucket, &c, None, limits),
        data.get(bucket, &m, None)
    );
    let (offsets, commits, metadata) = match (offsets, commits, metadata) {
        (Ok((o, _)), Ok((c, _)), Ok(m)) => (o, c, m),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            r.reason = format!("the replica's checkpoint could not be read: {e}");
            return r;
        }
    };
    let names = offsets.iter().chain(&commits).map(|o| relative(&o.key, &rroot));
    let ckpt = StreamCheckpoint::from_listing(names, metadata.as_deref());
    let sink_name = loc.sink.clone().unwrap_or_default();
    let Some(Some(txns)) = sink else {
        r.reason = format!("the sink {sink_name} has no consistent version on the replica: a restart cannot be judged");
        return r;
    };
    // A Delta sink writes its batches as `txn` actions of the query's id; a foreachBatch writer, of the app id it
    // passes as `txnAppId` (named by the location).
    let app_id = loc.txn_app_id.as_ref().or(ckpt.query_id.as_ref());
    let sink_batch = app_id.and_then(|q| txns.get(q).copied());
    r.details.insert("query_id".into(), json!(ckpt.query_id));
    if let Some(app) = &loc.txn_app_id {
        r.details.insert("txn_app_id".into(), json!(app));
    }
    r.details.insert("checkpoint_batch".into(), json!(ckpt.done()));
    r.details.insert("sink_batch".into(), json!(sink_batch));
    // The id that names the sink's txn: with a foreachBatch app id, the checkpoint's own metadata is not needed.
    let judged = StreamCheckpoint { query_id: app_id.cloned(), ..ckpt.clone() };
    (r.status, r.reason) = match judge(&judged, sink_batch) {
        StreamVerdict::Safe { done, .. } => (
            Status::Current,
            format!(
                "the checkpoint (batch {}) is not ahead of its sink {sink_name} (batch {}): a restart skips nothing",
                done.map_or("none".into(), |d| d.to_string()),
                sink_batch.map_or("none".into(), |s| s.to_string())
            ),
        ),
        StreamVerdict::Ahead { done, sink, roll_back_to } => {
            r.details.insert("roll_back_to_batch".into(), json!(roll_back_to));
            let first_skipped = sink.map_or(0, |s| s + 1);
            let fix = match roll_back_to {
                Some(b) => format!("roll the checkpoint back to batch {b}: delete offsets/ and commits/ after {b}"),
                None => "delete offsets/ and commits/ (no batch of this query is in the sink)".to_owned(),
            };
            (
                Status::Unsafe,
                format!(
                    "the checkpoint is at batch {done} but its sink {sink_name} holds batches up to {}: a restart would \
                     skip batches {first_skipped}..={done}; {fix}",
                    sink.map_or("none".into(), |s| s.to_string())
                ),
            )
        }
        StreamVerdict::Unknown(why) => (Status::Unknown, why),
    };
    r
}
