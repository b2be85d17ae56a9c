//! One Delta location: the primary's newest version, its protocol and time, and the replica's newest consistent
//! version (the newest version a reader opens with every file of its scan present: see `crate::rules`).
//!
//! What is read, and why it stays small at 100,000 commits:
//! - the log is listed from the `_last_checkpoint` hint on (`start-after`), delimited so that `_sidecars/` and
//!   staged commits are never paged through; further back only in windows, when no base above serves;
//! - a checkpoint is read once, only the columns the replay needs; commits only from their checkpoint on;
//! - the files a snapshot needs are checked by key: each directory holding many of them is listed (bounded),
//!   the rest are HEADed. The table's root is never listed whole.

use super::files::present_files;
use super::log::{LogReader, hint_of};
use super::{DeltaLimits, get_all};
use crate::rules::actions::{Action, FileRef, Protocol, in_commit_timestamp, parse_commit};
use crate::rules::log::{CheckpointCandidate, CheckpointKind, LogListing, SIDECARS_DIR, Segment, commit_name};
use crate::rules::replay::{ConsistentVersion, ReplayOutcome, ict_from, replay};
use crate::rules::report::{Status, TableReport, rpo_seconds};
use domain::data_plane::Location;
use dr_ports::DataBuckets;
use dr_ports::error::StoreError;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::OffsetDateTime;

/// A Delta location's entry, and the `txn` versions at the replica's consistent version (for its streams).
pub(super) async fn assess<D: DataBuckets>(
    data: &D,
    loc: &Location,
    limits: &DeltaLimits,
) -> (TableReport, Option<BTreeMap<String, i64>>) {
    let mut r = TableReport::bare(&loc.name, "delta", Status::Unknown, "");
    let (plog, rlog) = (LogReader::new(&loc.primary, limits), LogReader::new(&loc.replica, limits));
    // Each side's hint; the primary's also tells where to start listing a replica whose hint has not arrived.
    let (phint, rhint) = tokio::join!(hint_of(data, &plog), hint_of(data, &rlog));
    let (primary, replica) = tokio::join!(
        primary_head(data, &plog, phint.as_ref().ok().copied().flatten(), limits),
        replica_consistent(data, &rlog, rhint, phint.as_ref().ok().copied().flatten(), limits)
    );
    let replica = match replica {
        Ok(x) => x,
        Err(e) => {
            r.reason = format!("the replica could not be read: {e}");
            return (r, None);
        }
    };
    r.replica_consistent_version = replica.consistent.as_ref().map(|c| c.version);
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
    if let Some(why) = catalog_reason(primary.as_ref(), &replica) {
        r.status = Status::CannotBeCertified;
        r.replica_consistent_version = None;
        r.reason =
            format!("{why}: its versions are ratified by a catalog or commit coordinator, so the log alone cannot certify one");
        return (r, None);
    }
    if let Some(why) = &replica.incomplete {
        r.reason = format!("not certified: listing incomplete ({why})");
        r.replica_consistent_version = None;
        return (r, None);
    }
    let txns = replica.consistent.as_ref().map(|c| c.txns.clone());
    let Some(consistent) = &replica.consistent else {
        r.status = Status::Inconsistent;
        r.reason = format!("the replica holds no consistent version: {}", replica.why.join("; "));
        return (r, None);
    };
    if let Some(cdf) = &replica.change_data {
        r.details.insert("change_data_consistent_version".into(), json!(cdf.0));
        if let Some(missing) = &cdf.1 {
            r.details.insert("change_data_missing_example".into(), json!(missing));
        }
    }
    let Some(primary) = primary else { return (r, txns) };
    let Some(pv) = primary.version else {
        r.reason = "the primary's _delta_log holds no commit".into();
        return (r, txns);
    };
    judge(&mut r, &primary, pv, consistent, &replica, data, &plog, &rlog).await;
    (r, txns)
}

/// The status, RPO and reason of a table whose replica has a consistent version.
#[allow(clippy::too_many_arguments)]
async fn judge<D: DataBuckets>(
    r: &mut TableReport,
    primary: &PrimaryHead,
    pv: u64,
    consistent: &ConsistentVersion,
    replica: &ReplicaState,
    data: &D,
    plog: &LogReader<'_>,
    rlog: &LogReader<'_>,
) {
    let behind = pv.saturating_sub(consistent.version);
    r.versions_behind = Some(behind);
    let why = if replica.why.is_empty() { String::new() } else { format!(": {}", replica.why.join("; ")) };
    if behind == 0 {
        r.rpo_seconds = Some(0);
        r.status = Status::Current;
        r.reason = format!("the replica is consistent at the primary's newest version {pv}{why}");
        return;
    }
    let replica_time = commit_time(data, consistent, replica, primary, plog, rlog).await;
    match (primary.time.clone(), replica_time) {
        (Ok(p), Ok(v)) if p >= v => {
            r.rpo_seconds = Some(rpo_seconds(p, v));
            r.status = Status::Behind;
            r.reason = format!("consistent at {} of {pv}{why}", consistent.version);
        }
        (Ok(p), Ok(v)) => {
            // A later version that reads as older: the clocks disagree. Said, never clamped to 0 in silence.
            let skew = (v - p) / 1000;
            r.details.insert("clock_skew_seconds".into(), json!(skew));
            r.status = Status::Unknown;
            r.reason = format!(
                "clock skew: the replica's consistent version {} reads {skew} s later than the primary's newest {pv}, so \
                 the RPO cannot be told; {behind} version(s) behind{why}",
                consistent.version
            );
        }
        (Err(e), _) | (_, Err(e)) => {
            r.status = Status::Unknown;
            r.reason = format!("{e}; {behind} version(s) behind{why}");
        }
    }
}

/// Why the table cannot be certified from its log, if it cannot: a catalog-managed or coordinated-commits feature
/// in the primary's snapshot or at the replica's consistent version, or staged / unbackfilled commits on either.
fn catalog_reason(primary: Option<&PrimaryHead>, replica: &ReplicaState) -> Option<String> {
    let feature = primary
        .and_then(|p| p.protocol.as_ref())
        .and_then(Protocol::catalog_feature)
        .or_else(|| replica.consistent.as_ref().and_then(|c| c.protocol.catalog_feature()));
    if let Some(f) = feature {
        return Some(format!("the table has the {f} feature"));
    }
    (primary.is_some_and(|p| p.staged_commits) || replica.staged_commits)
        .then(|| "the log holds _staged_commits/ or _commits/ (commits not yet published)".to_owned())
}

/// The time (milliseconds) of the replica's consistent version: its in-commit timestamp from the version the table
/// turned them on, else the modification time of its commit file on the primary (the protocol's commit time
/// before in-commit timestamps; the replica's copy is only as old as its replication).
async fn commit_time<D: DataBuckets>(
    data: &D,
    c: &ConsistentVersion,
    replica: &ReplicaState,
    primary: &PrimaryHead,
    plog: &LogReader<'_>,
    rlog: &LogReader<'_>,
) -> Result<i64, String> {
    let v = c.version;
    if c.ict_from().is_some_and(|from| v >= from) {
        if let Some(t) = replica.ict.get(&v) {
            return Ok(*t);
        }
        // The checkpoint's own version: its commit says when (the replica's copy, else the primary's).
        for log in [rlog, plog] {
            if let Ok(Some(body)) = data.get(log.bucket(), &log.key(&commit_name(v)), None).await
                && let Some(t) = parse_commit(&body).ok().as_deref().and_then(in_commit_timestamp)
            {
                return Ok(t);
            }
        }
        return Err(format!("commit {v} has in-commit timestamps on but neither copy of it carries one"));
    }
    if let Some(t) = primary.modified.get(&v) {
        return Ok(*t);
    }
    match data.head(plog.bucket(), &plog.key(&commit_name(v))).await {
        Ok(Some(o)) => o.last_modified.map(millis).ok_or_else(|| format!("commit {v} on the primary has no time")),
        Ok(None) => Err(format!(
            "commit {v} is no longer in the primary's log (cleaned up), so its time is unknown: the replica is at least \
             the log's retention behind"
        )),
        Err(e) => Err(format!("the time of commit {v} on the primary could not be read: {e}")),
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The primary's snapshot, as far as the assessment needs it.
struct PrimaryHead {
    /// Its newest version.
    version: Option<u64>,
    /// The time of its newest version (milliseconds), or why it is unknown.
    time: Result<i64, String>,
    /// Its protocol (from its newest checkpoint and the commits after it).
    protocol: Option<Protocol>,
    /// Staged or unbackfilled commits in its log.
    staged_commits: bool,
    /// The modification times of the commit files listed (milliseconds).
    modified: HashMap<u64, i64>,
}

/// The primary's newest version, its protocol and metadata from its snapshot (newest checkpoint, then every commit
/// after it: a protocol change need not be in the newest commit), and its time.
async fn primary_head<D: DataBuckets>(
    data: &D,
    log: &LogReader<'_>,
    hint: Option<u64>,
    limits: &DeltaLimits,
) -> Result<PrimaryHead, StoreError> {
    let mut listed = log.list_from(data, hint.unwrap_or(0)).await?;
    // The newest complete checkpoint at or before the newest version (further back only when none is listed).
    let base = loop {
        let res = listed.listing.resolve(hint);
        if let Some(seg) = res.segments.first() {
            break seg.base.clone();
        }
        if listed.listing.from == 0 {
            break None;
        }
        if !log.extend_back(data, &mut listed).await? {
            break None;
        }
    };
    let mut head = PrimaryHead {
        version: listed.listing.newest_version(),
        time: Err("the primary's newest commit carries no time".into()),
        protocol: None,
        staged_commits: listed.listing.staged_commits,
        modified: listed.modified.clone(),
    };
    let Some(newest) = head.version else { return Ok(head) };
    let mut configuration = BTreeMap::new();
    if let Some(cp) = &base {
        let table = read_checkpoint(data, log, cp, limits, true).await?.map_err(|e| refused(log, &e))?;
        absorb(&table, &mut head.protocol, &mut configuration);
    }
    let (run, _) = listed.listing.run(base.as_ref().map(|c| c.version), newest);
    let keys = run.iter().map(|v| log.key(&commit_name(*v))).collect();
    let mut newest_ict = None;
    for (v, body) in run.iter().zip(get_all(data, log.bucket(), keys, limits.reads_in_flight).await?) {
        let body = body.ok_or_else(|| refused(log, &format!("commit {v} vanished while it was read")))?;
        let actions = parse_commit(&body).map_err(|e| refused(log, &format!("commit {v} is unreadable: {e}")))?;
        absorb(&actions, &mut head.protocol, &mut configuration);
        if *v == newest {
            newest_ict = in_commit_timestamp(&actions);
        }
    }
    head.time = match ict_from(&configuration) {
        Some(from) if newest >= from => {
            newest_ict.ok_or_else(|| format!("the primary's commit {newest} lacks its in-commit timestamp"))
        }
        _ => head.modified.get(&newest).copied().ok_or_else(|| format!("the primary's commit {newest} has no file time")),
    };
    Ok(head)
}

fn absorb(actions: &[Action], protocol: &mut Option<Protocol>, configuration: &mut BTreeMap<String, String>) {
    for a in actions {
        match a {
            Action::Protocol(p) => *protocol = Some(p.clone()),
            Action::Metadata { configuration: c } => *configuration = c.clone(),
            _ => {}
        }
    }
}

fn refused(log: &LogReader<'_>, message: &str) -> StoreError {
    StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{} in {}: {message}", log.dir(), log.bucket()),
    }
}

/// What the replica holds.
struct ReplicaState {
    consistent: Option<ConsistentVersion>,
    /// Why it is not the newest version the replica's log names (what a reader of those versions meets).
    why: Vec<String>,
    /// The in-commit timestamps of the commits read, by version.
    ict: HashMap<u64, i64>,
    /// The newest version up to which the change data files are all present (with a missing one), when the change
    /// data feed is on at the consistent version.
    change_data: Option<(u64, Option<String>)>,
    /// Staged or unbackfilled commits in its log.
    staged_commits: bool,
    /// Why the listing is incomplete, when it is: then nothing is certified.
    incomplete: Option<String>,
}

/// The replica's newest consistent version: the segments of its log (see `LogListing::resolve`), newest first, each
/// replayed until one serves a consistent version; further back in windows only when none above does.
async fn replica_consistent<D: DataBuckets>(
    data: &D,
    log: &LogReader<'_>,
    hint: Result<Option<u64>, StoreError>,
    guess: Option<u64>,
    limits: &DeltaLimits,
) -> Result<ReplicaState, StoreError> {
    let hint = hint?;
    // Without its own hint (not replicated yet), the replica is listed from the primary's: the versions before it
    // are listed only if nothing after it serves.
    let mut listed = log.list_from(data, hint.or(guess).unwrap_or(0)).await?;
    let mut state = ReplicaState {
        consistent: None,
        why: Vec::new(),
        ict: HashMap::new(),
        change_data: None,
        staged_commits: listed.listing.staged_commits,
        incomplete: None,
    };
    if let Some(h) = hint.filter(|h| listed.listing.newest_version().is_some_and(|n| *h > n)) {
        state.why.push(format!(
            "the replica's _last_checkpoint names version {h}, beyond its log: a reader of its latest version fails"
        ));
    }
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let mut incomplete_said = BTreeSet::new();
    let mut tried = 0;
    loop {
        let res = listed.listing.resolve(hint);
        for i in res.incomplete.iter().filter(|i| incomplete_said.insert((*i).clone())) {
            state.why.push(i.clone());
        }
        for u in res.unreadable.iter().filter(|u| done.insert(u.first)) {
            state.why.push(format!("versions {}..={}: {}", u.first, u.last, u.why));
        }
        for seg in res.segments.iter() {
            if !done.insert(seg.first) {
                continue;
            }
            if tried >= limits.checkpoint_tries {
                break;
            }
            tried += 1;
            if let Some(outcome) = evaluate(data, log, &listed.listing, seg, limits, &mut state).await? {
                state.consistent = outcome.consistent;
                return finish(state, &listed);
            }
        }
        // Nothing listed so far serves: the versions before the listing may (their base lies further back), within
        // the bound on bases tried.
        if tried >= limits.checkpoint_tries {
            state.why.push(format!(
                "versions before {}: not assessed (the {tried} newest bases were tried; older replicas of the table are \
                 not certified)",
                listed.listing.from
            ));
            break;
        }
        if listed.listing.from == 0 || !log.extend_back(data, &mut listed).await? {
            if let Some((first, last)) = listed.listing.resolve(hint).pending.or(res.pending) {
                state.why.push(format!(
                    "versions {first}..={last}: the commits and checkpoints before version {first} are not in the replica \
                     (log cleanup, or not replicated), so no reader opens them"
                ));
            }
            break;
        }
    }
    if listed.listing.newest_version().is_none() {
        state.why.push("the replica's _delta_log holds no commit".into());
    }
    finish(state, &listed)
}

fn finish(mut state: ReplicaState, listed: &super::log::Listed) -> Result<ReplicaState, StoreError> {
    state.staged_commits |= listed.listing.staged_commits;
    if listed.truncated {
        state.incomplete = Some(format!("the replica's log listing stopped at its bound of {} keys", listed.bound));
    }
    Ok(state)
}

/// One segment replayed: `Some` with the outcome when it serves a consistent version, `None` (its problems added
/// to `state.why`) when it does not.
async fn evaluate<D: DataBuckets>(
    data: &D,
    log: &LogReader<'_>,
    listing: &LogListing,
    seg: &Segment,
    limits: &DeltaLimits,
    state: &mut ReplicaState,
) -> Result<Option<ReplayOutcome>, StoreError> {
    let base = match &seg.base {
        Some(cp) => match read_checkpoint(data, log, cp, limits, false).await? {
            Ok(actions) => Some((cp.version, actions)),
            Err(problem) => {
                state.why.push(format!("versions {}..={}: {problem}: a reader of them fails", seg.first, seg.last));
                return Ok(None);
            }
        },
        None => None,
    };
    let (run, gap) = listing.run(seg.base.as_ref().map(|c| c.version), seg.last);
    let keys = run.iter().map(|v| log.key(&commit_name(*v))).collect();
    let bodies = get_all(data, log.bucket(), keys, limits.reads_in_flight).await?;
    let mut commits: Vec<(u64, Vec<Action>)> = Vec::with_capacity(run.len());
    let mut stopped = gap.map(|g| format!("commit {g} is missing in the replica (later versions need it)"));
    for (v, body) in run.iter().zip(bodies) {
        // A listed commit that cannot be read, or reads empty, stops the replay: unknown is never "nothing".
        let parsed = body.ok_or_else(|| "vanished while it was read".to_owned()).and_then(|b| parse_commit(&b));
        match parsed {
            Ok(actions) => {
                if let Some(t) = in_commit_timestamp(&actions) {
                    state.ict.insert(*v, t);
                }
                commits.push((*v, actions));
            }
            Err(e) => {
                stopped = Some(format!("commit {v} cannot be read: {e}"));
                break;
            }
        }
    }
    let needed = needed_files(base.as_ref().map(|(_, a)| a.as_slice()), &commits);
    let present = present_files(data, log.bucket(), log.root(), &needed, limits).await?;
    let present_fn = |f: &FileRef| match f {
        FileRef::Relative(p) => present.contains(p),
        FileRef::Absolute(_) | FileRef::Unresolvable(_) => false,
    };
    let outcome = replay(base.as_ref().map(|(v, a)| (*v, a.as_slice())), &commits, &present_fn);
    if let Some(b) = &outcome.blocked {
        state.why.push(format!("version {} is not consistent: {}", b.version, b.why));
    }
    if let Some(s) = stopped {
        state.why.push(s);
    }
    if let Some(c) = outcome.consistent.as_ref().filter(|c| c.change_data_feed()) {
        state.change_data = Some((outcome.change_data.unwrap_or(c.version), outcome.change_data_missing.clone()));
    }
    Ok(outcome.consistent.is_some().then_some(outcome))
}

/// The files (relative to the table's root) a segment's snapshots may need: every add's data file and deletion
/// vector file, and every change data file.
fn needed_files(base: Option<&[Action]>, commits: &[(u64, Vec<Action>)]) -> BTreeSet<String> {
    let all = base.into_iter().flatten().chain(commits.iter().flat_map(|(_, a)| a));
    let mut out = BTreeSet::new();
    for a in all {
        let files = match a {
            Action::Add(f) => {
                let dv = f.deletion_vector.as_ref().and_then(crate::rules::actions::deletion_vector_file);
                vec![Some(crate::rules::actions::data_file(&f.path)), dv]
            }
            Action::Cdc(p) => vec![Some(crate::rules::actions::data_file(p))],
            _ => vec![],
        };
        out.extend(files.into_iter().flatten().filter_map(|f| match f {
            FileRef::Relative(p) => Some(p),
            _ => None,
        }));
    }
    out
}

/// A checkpoint's actions (every part; a v2 checkpoint's sidecars), or why a reader cannot use it. `table_only`:
/// the protocol and metadata only (sidecars hold file actions only, so they are not read then).
async fn read_checkpoint<D: DataBuckets>(
    data: &D,
    log: &LogReader<'_>,
    c: &CheckpointCandidate,
    limits: &DeltaLimits,
    table_only: bool,
) -> Result<Result<Vec<Action>, String>, StoreError> {
    let keys = c.files.iter().map(|f| log.key(f)).collect();
    let parts = get_all(data, log.bucket(), keys, limits.reads_in_flight).await?;
    let mut actions = Vec::new();
    for (name, body) in c.files.iter().zip(parts) {
        let Some(body) = body else { return Ok(Err(format!("checkpoint {}: {name} vanished", c.version))) };
        let parsed = match (&c.kind, table_only) {
            (CheckpointKind::V2 { json: true }, _) => parse_commit(&body),
            (_, true) => super::checkpoint::read_table(body),
            (_, false) => super::checkpoint::read(body),
        };
        match parsed {
            Ok(a) => actions.extend(a),
            Err(e) => return Ok(Err(format!("checkpoint {}: {name} cannot be read: {e}", c.version))),
        }
    }
    let sidecars: Vec<String> =
        actions.iter().filter_map(|a| if let Action::Sidecar(p) = a { Some(p.clone()) } else { None }).collect();
    if sidecars.is_empty() || table_only {
        return Ok(Ok(actions));
    }
    // A sidecar's path is relative to `_delta_log/_sidecars/` (the protocol allows an absolute one too).
    let keys = sidecars.iter().map(|s| log.key(&format!("{SIDECARS_DIR}/{}", s.rsplit('/').next().unwrap_or(s)))).collect();
    let bodies = get_all(data, log.bucket(), keys, limits.reads_in_flight).await?;
    for (name, body) in sidecars.iter().zip(bodies) {
        let Some(body) = body else {
            return Ok(Err(format!("checkpoint {}: its sidecar {name} is missing in the replica", c.version)));
        };
        match super::checkpoint::read(body) {
            Ok(a) => actions.extend(a),
            Err(e) => return Ok(Err(format!("checkpoint {}: its sidecar {name} cannot be read: {e}", c.version))),
        }
    }
    Ok(Ok(actions))
}
