//! Data-plane truth: the RPO of every replicated Delta table, the objects a prefix's replica lacks, whether a
//! stream's replica can restart without skipping batches ([`assess`], [`DeltaSource`] for `delta-tables.json`),
//! and replication coverage for `check` ([`coverage::plane_findings`]).
//!
//! Cost: every listing is paginated and bounded ([`DeltaLimits::max_keys`]); locations are assessed side by
//! side ([`DeltaLimits::locations_in_flight`]), reads too ([`DeltaLimits::reads_in_flight`]); the whole
//! assessment has a deadline. On a failover's path the source runs beside the lock (prefetched): when the
//! deadline passes, the locations not done are `still-computing` and the promotion does not wait; the
//! assessment goes on and writes [`LATEST_KEY`] when it is done.

pub mod checkpoint;
pub mod coverage;
mod files;
mod log;
mod others;
pub mod rules;
mod table;

pub use coverage::CoverageSettings;

use crate::rules::report::{SNAPSHOT_FILE, Status, TableReport, Workload, workload};
use domain::data_plane::{DataPlane, Location, LocationKind};
use domain::primitives::rfc3339;
use dr_ports::error::StoreError;
use dr_ports::snapshot::{SnapshotContext, SnapshotFile, SnapshotSource};
use dr_ports::{ControlBucket, DataBuckets, DataObject, WriteCondition};
use futures_util::future::{BoxFuture, join_all, try_join_all};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// The newest complete assessment, in the control bucket (written when one finishes, even after its deadline).
pub const LATEST_KEY: &str = "data-plane/delta-tables-latest.json";

/// How an assessment is bounded.
#[derive(Debug, Clone)]
pub struct DeltaLimits {
    /// The whole assessment's deadline on a failover's path: the locations not done by then are `still-computing`
    /// (the assessment goes on as its own task; the report takes its result).
    pub deadline: Duration,
    /// The deadline of the `snapshot` command's assessment (scheduled or on demand: nothing waits for it). Measured:
    /// a replica of 1,000 commits and 10,000 files takes 2.5 s to assess against moto when its newest checkpoint is
    /// recent, 4.2 s when 499 commits follow it (README, "Measured").
    pub patient_deadline: Duration,
    /// Locations assessed side by side.
    pub locations_in_flight: usize,
    /// Object reads in flight per location.
    pub reads_in_flight: usize,
    /// Keys per listing (the rest is not listed: a table's files beyond it count as missing, a prefix is
    /// compared over the listed range only).
    pub max_keys: usize,
    /// Keys per page.
    pub page_size: u32,
    /// Bases (complete checkpoints, or commit 0) tried per table, newest first: when none serves a consistent version,
    /// the older versions are said not assessed rather than read checkpoint after checkpoint.
    pub checkpoint_tries: usize,
}

impl Default for DeltaLimits {
    fn default() -> Self {
        DeltaLimits {
            deadline: Duration::from_secs(3),
            patient_deadline: Duration::from_secs(60),
            locations_in_flight: 8,
            reads_in_flight: 32,
            max_keys: 200_000,
            page_size: 1000,
            checkpoint_tries: 4,
        }
    }
}

/// `key` relative to `prefix` (which ends with `/` or is empty).
pub(crate) fn relative<'a>(key: &'a str, prefix: &str) -> &'a str {
    key.strip_prefix(prefix).unwrap_or(key)
}

/// Lists up to [`DeltaLimits::max_keys`] objects under `prefix` (after `start_after`), page by page; `true`
/// when the bound stopped it.
pub(crate) async fn list_all<D: DataBuckets>(
    data: &D,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
    limits: &DeltaLimits,
) -> Result<(Vec<DataObject>, bool), StoreError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = data.list_page(bucket, prefix, start_after, token.as_deref(), limits.page_size).await?;
        out.extend(page.objects);
        match page.next {
            Some(next) if out.len() < limits.max_keys => token = Some(next),
            Some(_) => {
                out.truncate(limits.max_keys);
                return Ok((out, true));
            }
            None => return Ok((out, false)),
        }
    }
}

/// One assessment: an entry per location, in the data plane's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// When it started.
    pub started_at: OffsetDateTime,
    /// Whether every location was done before the deadline.
    pub complete: bool,
    /// The entries.
    pub tables: Vec<TableReport>,
}

impl Assessment {
    /// The workload's RPO (the worst Delta table's).
    pub fn workload(&self) -> Workload {
        workload(&self.tables)
    }

    /// `delta-tables.json`.
    pub fn to_json(&self) -> Value {
        json!({
            "generated_at": rfc3339(self.started_at),
            "complete": self.complete,
            "workload": self.workload(),
            "tables": self.tables,
        })
    }
}

/// Assesses every location of `plane`, writing each entry into `done` as it finishes (so that a caller whose
/// deadline passed can read what is done). Delta and prefix locations side by side, then the streams (each
/// needs its sink's consistent version).
pub fn assess_into<'a, D: DataBuckets>(
    data: &'a D,
    plane: &'a DataPlane,
    limits: &'a DeltaLimits,
    now: OffsetDateTime,
    done: &'a Mutex<BTreeMap<String, TableReport>>,
) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        let permits = tokio::sync::Semaphore::new(limits.locations_in_flight.max(1));
        let first = plane.locations.iter().filter(|l| l.kind != LocationKind::StreamCheckpoint);
        let sinks: BTreeMap<String, Option<BTreeMap<String, i64>>> =
            join_all(first.map(|loc| assess_one(&permits, data, loc, limits, now, done))).await.into_iter().flatten().collect();
        let streams = plane.locations.iter().filter(|l| l.kind == LocationKind::StreamCheckpoint);
        join_all(streams.map(|loc| assess_stream(&permits, data, loc, &sinks, limits, done))).await;
    })
}

fn record(done: &Mutex<BTreeMap<String, TableReport>>, report: TableReport) {
    if let Ok(mut d) = done.lock() {
        d.insert(report.name.clone(), report);
    }
}

/// A Delta or prefix location; for a Delta one, its name and the `txn` versions at its consistent version.
async fn assess_one<D: DataBuckets>(
    permits: &tokio::sync::Semaphore,
    data: &D,
    loc: &Location,
    limits: &DeltaLimits,
    now: OffsetDateTime,
    done: &Mutex<BTreeMap<String, TableReport>>,
) -> Option<(String, Option<BTreeMap<String, i64>>)> {
    let _permit = permits.acquire().await.ok()?;
    let (report, sink) = match loc.kind {
        LocationKind::Delta => {
            let (report, txns) = table::assess(data, loc, limits).await;
            (report, Some((loc.name.clone(), txns)))
        }
        _ => (others::assess_prefix(data, loc, limits, now).await, None),
    };
    record(done, report);
    sink
}

async fn assess_stream<D: DataBuckets>(
    permits: &tokio::sync::Semaphore,
    data: &D,
    loc: &Location,
    sinks: &BTreeMap<String, Option<BTreeMap<String, i64>>>,
    limits: &DeltaLimits,
    done: &Mutex<BTreeMap<String, TableReport>>,
) {
    let Ok(_permit) = permits.acquire().await else { return };
    let sink = loc.sink.as_deref().and_then(|s| sinks.get(s));
    record(done, others::assess_stream(data, loc, sink.map(Option::as_ref), limits).await);
}

/// Reads `keys` of `bucket`, at most `in_flight` at a time, in order.
pub(crate) async fn get_all<D: DataBuckets>(
    data: &D,
    bucket: &str,
    keys: Vec<String>,
    in_flight: usize,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let permits = tokio::sync::Semaphore::new(in_flight.max(1));
    try_join_all(keys.iter().map(|k| get_one(&permits, data, bucket, k))).await
}

async fn get_one<D: DataBuckets>(
    permits: &tokio::sync::Semaphore,
    data: &D,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let _permit = permits.acquire().await.ok();
    data.get(bucket, key, None).await
}

fn kind_name(kind: LocationKind) -> &'static str {
    match kind {
        LocationKind::Delta => "delta",
        LocationKind::Prefix => "prefix",
        LocationKind::StreamCheckpoint => "stream-checkpoint",
    }
}

/// The entries in the plane's order, `still-computing` for those not done.
fn in_order(plane: &DataPlane, done: &BTreeMap<String, TableReport>) -> (Vec<TableReport>, bool) {
    let mut complete = true;
    let tables = plane
        .locations
        .iter()
        .map(|l| match done.get(&l.name) {
            Some(r) => r.clone(),
            None => {
                complete = false;
                TableReport::bare(
                    &l.name,
                    kind_name(l.kind),
                    Status::StillComputing,
                    "still computing: the assessment's deadline passed first; it finishes for the report",
                )
            }
        })
        .collect();
    (tables, complete)
}

/// Assesses every location within `limits.deadline`: what is not done by then is `still-computing`.
pub async fn assess<D: DataBuckets>(data: &D, plane: &DataPlane, limits: &DeltaLimits, now: OffsetDateTime) -> Assessment {
    let done = Mutex::new(BTreeMap::new());
    let _ = tokio::time::timeout(limits.deadline, assess_into(data, plane, limits, now, &done)).await;
    let done = done.lock().map(|d| d.clone()).unwrap_or_default();
    let (tables, complete) = in_order(plane, &done);
    Assessment { started_at: now, complete, tables }
}

/// A snapshot source: `delta-tables.json`, one entry per data-plane location (see the module's comment).
pub struct DeltaSource<D, B> {
    /// The data buckets (primary and replica).
    pub data: Arc<D>,
    /// The control bucket ([`LATEST_KEY`]).
    pub bucket: B,
    /// Bounds.
    pub limits: DeltaLimits,
    /// What `check` expects of each location's buckets.
    pub coverage: CoverageSettings,
}

impl<D, B> DeltaSource<D, B> {
    /// The source over `data`, writing its latest complete assessment into `bucket`.
    pub fn new(data: D, bucket: B) -> Self {
        DeltaSource { data: Arc::new(data), bucket, limits: DeltaLimits::default(), coverage: CoverageSettings::default() }
    }
}

/// The data plane in the parameter tree, or why there is none.
pub(crate) fn plane_of(ctx: &SnapshotContext<'_>) -> Result<DataPlane, String> {
    let name = format!("{}/{}", ctx.prefix, dr_ports::documents::DATA_PLANE);
    let p = ctx.tree.iter().find(|p| p.name == name).ok_or_else(|| format!("{name} is absent"))?;
    DataPlane::parse(&name, &p.value).map_err(|e| e.to_string())
}

impl<D: DataBuckets + 'static, B: ControlBucket + Clone + 'static> SnapshotSource for DeltaSource<D, B> {
    fn name(&self) -> &'static str {
        "delta-tables"
    }

    fn collect<'a>(&'a self, ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Result<Vec<SnapshotFile>, StoreError>> {
        Box::pin(async move {
            let plane = match plane_of(ctx) {
                Ok(p) => p,
                Err(why) => {
                    let body = json!({ "generated_at": rfc3339(ctx.now), "complete": true, "tables": [], "why": why });
                    return Ok(vec![file(&body)]);
                }
            };
            // The assessment runs as its own task: past the deadline it goes on, and writes LATEST_KEY.
            let done = Arc::new(Mutex::new(BTreeMap::new()));
            let task = {
                let (data, bucket, limits, plane, done, now) =
                    (self.data.clone(), self.bucket.clone(), self.limits.clone(), plane.clone(), done.clone(), ctx.now);
                tokio::spawn(async move {
                    assess_into(data.as_ref(), &plane, &limits, now, &done).await;
                    let done = done.lock().map(|d| d.clone()).unwrap_or_default();
                    let (tables, complete) = in_order(&plane, &done);
                    let a = Assessment { started_at: now, complete, tables };
                    let body = serde_json::to_vec_pretty(&a.to_json()).unwrap_or_default();
                    if let Err(e) = bucket.put(LATEST_KEY, body, "application/json", WriteCondition::Overwrite).await {
                        tracing::warn!(error = %e, "the Delta assessment could not be stored");
                    }
                })
            };
            let deadline = if ctx.patient { self.limits.patient_deadline } else { self.limits.deadline };
            let finished = tokio::time::timeout(deadline, task).await.is_ok();
            let snapshot = done.lock().map(|d| d.clone()).unwrap_or_default();
            let (tables, complete) = in_order(&plane, &snapshot);
            if !finished {
                tracing::info!(done = snapshot.len(), of = plane.locations.len(), "Delta assessment still computing");
            }
            let a = Assessment { started_at: ctx.now, complete, tables };
            Ok(vec![file(&a.to_json())])
        })
    }

    fn findings<'a>(&'a self, ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Vec<dr_ports::finding::Finding>> {
        Box::pin(async move {
            match plane_of(ctx) {
                Ok(plane) => coverage::plane_findings(self.data.as_ref(), &plane, &self.coverage).await,
                Err(_) => Vec::new(), // check reports the data-plane document's own problem
            }
        })
    }
}

fn file(body: &Value) -> SnapshotFile {
    SnapshotFile { name: SNAPSHOT_FILE.to_owned(), body: serde_json::to_vec_pretty(body).unwrap_or_default() }
}

/// The workload RPO recorded in a snapshot's `delta-tables.json`, if the snapshot has one with tables.
pub fn workload_of(files: &[SnapshotFile]) -> Option<Value> {
    let f = files.iter().find(|f| f.name == SNAPSHOT_FILE)?;
    let v: Value = serde_json::from_slice(&f.body).ok()?;
    let w = v.get("workload")?.clone();
    (!v["tables"].as_array().is_none_or(Vec::is_empty)).then_some(w)
}

#[cfg(test)]
mod tests;
