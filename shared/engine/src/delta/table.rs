//! One Delta location: the primary's newest version and its time, the replica's newest consistent version.

use super::{DeltaLimits, get_all, list_all, relative};
use crate::error::StoreError;
use crate::ports::DataBuckets;
use domain::data_plane::Location;
use domain::delta::actions::{Action, FileRef, commit_time, parse_commit};
use domain::delta::log::{CheckpointCandidate, CheckpointKind, LOG_DIR, LogListing, SIDECARS_DIR, commit_name};
use domain::delta::replay::{ConsistentVersion, replay};
use domain::delta::report::{Status, TableReport, rpo_seconds};
use std::collections::{BTreeMap, HashSet};

/// A Delta location's entry, and the `txn` versions at the replica's consistent version (for its streams).
pub(super) async fn assess<D: DataBuckets>(
    data: &D,
    loc: &Location,
    limits: &DeltaLimits,
) -> (TableReport, Option<BTreeMap<String, i64>>) {
    let (primary, replica) = tokio::join!(primary_head(data, loc, limits), replica_consistent(data, loc, limits));
    let mut r = TableReport::bare(&loc.name, "delta", Status::Unknown, "");
    let (replica, catalog_managed) = match replica {
        Ok(x) => x,
        Err(e) => {
            r.reason = format!("the replica could not be read: {e}");
            return (r, None);
        }
    };
    r.replica_consistent_version = replica.consistent.as_ref().map(|c| c.version);
    let txns = replica.consistent.as_ref().map(|c| c.txns.clone());
    let primary = match primary {
        Ok(p) => Some(p),
        Err(e) => {
            r.reason = format!("the primary could not be read ({e}): its newest version is unknown");
            None
        }
    };
    if let Some(p) = &primary {
        r.primary_version = p.version;
    }
    let catalog_managed = catalog_managed
        || primary.as_ref().is_some_and(|p| p.catalog_managed)
        || replica.consistent.as_ref().is_some_and(|c| c.catalog_managed);
    if catalog_managed {
        r.status = Status::CannotBeCertified;
        r.reason = "catalog-managed table (catalogManaged feature, _staged_commits/): its versions are ratified by the \
                    catalog, so it cannot be certified from the log"
            .into();
        return (r, None);
    }
    let Some(consistent) = &replica.consistent else {
        r.status = Status::Inconsistent;
        r.reason = format!("the replica holds no consistent version: {}", replica.why.join("; "));
        return (r, None);
    };
    let Some(primary) = primary else { return (r, txns) };
    let Some(pv) = primary.version else {
        r.reason = "the primary's _delta_log holds no commit".into();
        return (r, txns);
    };
    let behind = pv.saturating_sub(consistent.version);
    r.versions_behind = Some(behind);
    r.rpo_seconds = match (primary.time, replica.time) {
        (Some(p), Some(v)) => Some(if behind == 0 { 0 } else { rpo_seconds(p, v) }),
        _ => None,
    };
    let why = if replica.why.is_empty() { String::new() } else { format!(": {}", replica.why.join("; ")) };
    (r.status, r.reason) = match (behind, r.rpo_seconds) {
        (0, _) => (Status::Current, format!("the replica is consistent at the primary's newest version {pv}{why}")),
        (_, None) => (Status::Unknown, format!("a commit carries no time stamp; {behind} version(s) behind{why}")),
        (_, Some(_)) => (Status::Behind, format!("consistent at {} of {pv}{why}", consistent.version)),
    };
    (r, txns)
}

struct PrimaryHead {
    version: Option<u64>,
    time: Option<i64>,
    catalog_managed: bool,
}

/// The primary's newest commit (listing from its newest checkpoint, by `_last_checkpoint`) and its time.
async fn primary_head<D: DataBuckets>(data: &D, loc: &Location, limits: &DeltaLimits) -> Result<PrimaryHead, StoreError> {
    let log = format!("{}/", join(&loc.primary.prefix, LOG_DIR));
    let hint = data.get(&loc.primary.bucket, &format!("{log}_last_checkpoint"), None).await?;
    let from: Option<u64> = hint.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()?["version"].as_u64());
    let start_after = from.map(|v| format!("{log}{v:020}"));
    let (keys, _) = list_all(data, &loc.primary.bucket, &log, start_after.as_deref(), limits).await?;
    let listing = LogListing::from_names(keys.iter().map(|o| relative(&o.key, &log)));
    let version = listing.newest_commit();
    let mut head = PrimaryHead { version, time: None, catalog_managed: listing.staged_commits };
    if let Some(v) = version
        && let Some(body) = data.get(&loc.primary.bucket, &format!("{log}{}", commit_name(v)), None).await?
    {
        let actions = parse_commit(&body).map_err(|e| bad(&loc.primary.bucket, v, &e))?;
        head.time = commit_time(&actions, true);
        head.catalog_managed |= actions.iter().any(|a| matches!(a, Action::Protocol(p) if p.catalog_managed()));
    }
    Ok(head)
}

fn bad(bucket: &str, v: u64, e: &str) -> StoreError {
    StoreError::Refused { service: "S3", operation: "GetObject", message: format!("commit {v} in {bucket} is unreadable: {e}") }
}

struct ReplicaState {
    consistent: Option<ConsistentVersion>,
    /// The commit time of the consistent version.
    time: Option<i64>,
    /// Why it is not the newest commit the replica holds (incomplete checkpoints, a gap, missing files).
    why: Vec<String>,
}

fn join(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() { rel.to_owned() } else { format!("{prefix}/{rel}") }
}

/// The replica's newest consistent version (and whether its log shows staged commits).
async fn replica_consistent<D: DataBuckets>(
    data: &D,
    loc: &Location,
    limits: &DeltaLimits,
) -> Result<(ReplicaState, bool), StoreError> {
    let bucket = &loc.replica.bucket;
    let root = if loc.replica.prefix.is_empty() { String::new() } else { format!("{}/", loc.replica.prefix) };
    let log = format!("{root}{LOG_DIR}/");
    // The table's files (data files and deletion vectors) beside its log, in one bounded listing.
    let ((log_keys, _), (files, truncated)) =
        tokio::try_join!(list_all(data, bucket, &log, None, limits), list_all(data, bucket, &root, None, limits))?;
    let listing = LogListing::from_names(log_keys.iter().map(|o| relative(&o.key, &log)));
    let present: HashSet<String> = files.iter().map(|o| relative(&o.key, &root).to_owned()).collect();
    let last_listed = files.last().map(|o| relative(&o.key, &root).to_owned());
    let present_fn = |f: &FileRef| match f {
        FileRef::Relative(p) => present.contains(p),
        FileRef::Absolute(_) => false,
    };
    let (candidates, mut why) = listing.checkpoints();
    if truncated {
        why.push(format!(
            "the replica's listing stopped at {} keys (after {}): files beyond it count as missing",
            limits.max_keys,
            last_listed.unwrap_or_default()
        ));
    }
    let mut bases: Vec<Option<CheckpointCandidate>> = candidates.into_iter().take(limits.checkpoint_tries).map(Some).collect();
    if listing.commits.contains(&0) {
        bases.push(None);
    }
    for base in bases {
        let base_actions = match &base {
            Some(c) => match read_checkpoint(data, bucket, &log, c, &listing, limits).await? {
                Ok(actions) => Some((c.version, actions)),
                Err(problem) => {
                    why.push(problem);
                    continue;
                }
            },
            None => None,
        };
        let (run, gap) = listing.run_after(base.as_ref().map(|c| c.version));
        if let Some(g) = gap {
            why.push(format!("commit {g} is missing in the replica (later commits are present)"));
        }
        let keys = run.iter().map(|v| format!("{log}{}", commit_name(*v))).collect();
        let bodies = get_all(data, bucket, keys, limits.reads_in_flight).await?;
        let mut commits: Vec<(u64, Vec<Action>)> = Vec::with_capacity(run.len());
        for (v, body) in run.iter().zip(bodies) {
            commits.push((*v, parse_commit(&body.unwrap_or_default()).map_err(|e| bad(bucket, *v, &e))?));
        }
        let outcome = replay(base_actions.as_ref().map(|(v, a)| (*v, a.as_slice())), &commits, &present_fn);
        if let Some(b) = &outcome.blocked {
            why.push(format!(
                "commit {} is ahead of its files: {} live file(s) missing in the replica, e.g. {}",
                b.version, b.missing, b.example
            ));
        }
        if let Some(c) = outcome.consistent {
            let time = match commits.iter().find(|(v, _)| *v == c.version) {
                Some((_, a)) => commit_time(a, true),
                None => {
                    // The checkpoint's own version: its commit file says when.
                    let key = format!("{log}{}", commit_name(c.version));
                    let body = data.get(bucket, &key, None).await?;
                    body.and_then(|b| parse_commit(&b).ok()).and_then(|a| commit_time(&a, true))
                }
            };
            return Ok((ReplicaState { consistent: Some(c), time, why }, listing.staged_commits));
        }
    }
    if listing.commits.is_empty() {
        why.push("the replica's _delta_log holds no commit".into());
    }
    Ok((ReplicaState { consistent: None, time: None, why }, listing.staged_commits))
}

/// A checkpoint's actions (every part; a v2 checkpoint's sidecars), or why it cannot be used.
async fn read_checkpoint<D: DataBuckets>(
    data: &D,
    bucket: &str,
    log: &str,
    c: &CheckpointCandidate,
    listing: &LogListing,
    limits: &DeltaLimits,
) -> Result<Result<Vec<Action>, String>, StoreError> {
    let keys = c.files.iter().map(|f| format!("{log}{f}")).collect();
    let parts = get_all(data, bucket, keys, limits.reads_in_flight).await?;
    let mut actions = Vec::new();
    for (name, body) in c.files.iter().zip(parts) {
        let Some(body) = body else { return Ok(Err(format!("checkpoint {}: {name} vanished", c.version))) };
        let parsed =
            if matches!(c.kind, CheckpointKind::V2 { json: true }) { parse_commit(&body) } else { super::checkpoint::read(body) };
        match parsed {
            Ok(a) => actions.extend(a),
            Err(e) => return Ok(Err(format!("checkpoint {}: {name}: {e}", c.version))),
        }
    }
    let sidecars: Vec<String> =
        actions.iter().filter_map(|a| if let Action::Sidecar(p) = a { Some(p.clone()) } else { None }).collect();
    if sidecars.is_empty() {
        return Ok(Ok(actions));
    }
    let missing = listing.missing_sidecars(&sidecars);
    if !missing.is_empty() {
        return Ok(Err(format!(
            "checkpoint {}: {} of {} sidecar(s) missing in the replica, e.g. {}",
            c.version,
            missing.len(),
            sidecars.len(),
            missing[0]
        )));
    }
    let keys = sidecars.iter().map(|s| format!("{log}{SIDECARS_DIR}/{}", s.rsplit('/').next().unwrap_or(s))).collect();
    let bodies = get_all(data, bucket, keys, limits.reads_in_flight).await?;
    for body in bodies {
        match super::checkpoint::read(body.unwrap_or_default()) {
            Ok(a) => actions.extend(a),
            Err(e) => return Ok(Err(format!("checkpoint {}: a sidecar: {e}", c.version))),
        }
    }
    Ok(Ok(actions))
}
