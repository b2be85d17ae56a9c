//! A snapshot's export carried over several invocations, for workspaces too big for one (10,000 jobs and
//! 100,000 tables: two minutes of calls and more than a gigabyte in one process).
//!
//! The export is cut into parts ([`super::export::parts`]): each site's core, one part per catalog, slices of the
//! per-object ACL and grant reads. The run's state, `{folder}/databricks/run.json` in the control bucket, holds
//! every part and its stage (pending, running under a lease, done), changed only by compare-and-swap, so that a
//! continuation delivered twice, two invocations at once, or an invocation that dies mid-part leave one answer:
//!
//! - a part is claimed (pending, or running past its lease) by one invocation; a duplicate finds it running or
//!   done and leaves it;
//! - a part's objects go to S3 under the attempt that read them (`{folder}/databricks/parts/{part}/a{n}/`), and
//!   the part is done only when its holder's finish is swapped in; a late finish of a superseded attempt is refused;
//! - a part cut short by the invocation's deadline is put back (pending) and runs again in a later invocation,
//!   up to [`MAX_ATTEMPTS`], after which what it read is kept as `partial`;
//! - the snapshot's invocation, which no message stands behind, posts a continuation delayed past the lease with
//!   each claim: if it dies holding parts or the merge, that guard takes them over;
//! - an invocation starts parts while a third of its budget is left, then posts one continuation per pending part
//!   (SQS: the messages invoke `manual-trigger` again, in parallel), and the part that finds every part done
//!   merges: kind by kind, both sites, into the same snapshot files, drift, manifest and pointers as one
//!   invocation writes, holding one kind of each side at a time, never the whole export.

use super::export::parts::{self, Found, PartRun, Target, Work};
use super::export::{ExportLimits, KindExport};
use super::progress::{self, ExportRecord, ExportState, PartCounts};
use super::{DriftReport, KindSummary, LatestExport};
use crate::error::StoreError;
use crate::ports::{ApiError, ControlBucket, ExportQueue, WorkspaceApi, WorkspaceConnector, WriteCondition};
use domain::databricks::drift::{self, Drift};
use domain::databricks::{ExportStatus, ObjectKind};
use domain::site::{SiteConfig, SiteName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use time::OffsetDateTime;

/// A part cut short this many times is kept as `partial` rather than run again.
pub const MAX_ATTEMPTS: u32 = 3;

/// Parts one invocation runs at once (all share the client's rate limit per workspace).
const PARTS_AT_ONCE: usize = 4;

/// How a carried export runs.
#[derive(Clone)]
pub struct Carrier {
    /// Where continuations go.
    pub queue: Arc<dyn ExportQueue>,
    /// One invocation's time for the export (`DR_EXPORT_DEADLINE_SECONDS`): no part starts with less than a third
    /// of it left.
    pub budget: std::time::Duration,
    /// Targets (ACLs, grants) per part (`DR_EXPORT_PART_SIZE`).
    pub part_size: usize,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").field("budget", &self.budget).field("part_size", &self.part_size).finish_non_exhaustive()
    }
}

/// A part's or the merge's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for an invocation.
    Pending,
    /// Claimed by `holder` until `lease_until` (after which another may take it: the holder died).
    Running {
        /// The invocation that holds it.
        holder: String,
        /// When the claim lapses.
        #[serde(with = "time::serde::rfc3339")]
        lease_until: OffsetDateTime,
    },
    /// Recorded.
    Done,
}

/// What a part reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum PartWork {
    /// The site's core listings.
    Core,
    /// One catalog's subtree.
    Catalog {
        /// The catalog.
        name: String,
    },
    /// A slice of ACL or grant targets, kept in S3 at `input`.
    Targets {
        /// Grants or permissions.
        kind: ObjectKind,
        /// The key of the targets' list.
        input: String,
        /// The source listing's error, if partial.
        inherited: Option<String>,
    },
}

/// One part of a carried export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// The site.
    pub site: SiteName,
    /// What it reads.
    pub work: PartWork,
    /// Its stage.
    #[serde(flatten)]
    pub stage: Stage,
    /// Claims so far.
    pub attempts: u32,
    /// The kinds it recorded (when done), with their status and count.
    #[serde(default)]
    pub kinds: BTreeMap<ObjectKind, KindSummary>,
    /// Where its objects are (the accepted attempt's folder), when done.
    #[serde(default)]
    pub output: Option<String>,
    /// Calls it made.
    #[serde(default)]
    pub requests: u32,
    /// When its last continuation was posted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub enqueued_at: Option<OffsetDateTime>,
}

impl Part {
    fn new(site: SiteName, work: PartWork) -> Part {
        Part {
            site,
            work,
            stage: Stage::Pending,
            attempts: 0,
            kinds: BTreeMap::new(),
            output: None,
            requests: 0,
            enqueued_at: None,
        }
    }
}

/// The state of one carried export: `{folder}/databricks/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The snapshot's id (its execution id in the manifest).
    pub run_id: String,
    /// The snapshot folder.
    pub folder: String,
    /// When the snapshot started (its files' time stamp).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The snapshot's other files, already written: their manifest entries.
    pub files: Vec<Value>,
    /// The sites exported, with their workspace URL.
    pub sites: BTreeMap<SiteName, String>,
    /// Every part by key (`{site}/core`, `{site}/catalog-{name}`, `{parent}/{kind}-{n}`).
    pub parts: BTreeMap<String, Part>,
    /// Invocations that worked on it.
    pub invocations: u32,
    /// The merge's stage.
    pub merge: Stage,
    /// The manifest, once merged.
    #[serde(default)]
    pub manifest_key: Option<String>,
}

/// What a finished part records.
#[derive(Debug, Clone, PartialEq)]
pub struct PartDone {
    /// The kinds it recorded.
    pub kinds: BTreeMap<ObjectKind, KindSummary>,
    /// Where its objects are.
    pub output: String,
    /// Calls made.
    pub requests: u32,
    /// The parts it found, by key.
    pub found: Vec<(String, Part)>,
}

impl RunState {
    /// A run that starts with each site's core part.
    pub fn new(
        run_id: &str,
        folder: &str,
        started_at: OffsetDateTime,
        files: Vec<Value>,
        sites: BTreeMap<SiteName, String>,
    ) -> Self {
        let parts = sites.keys().map(|site| (format!("{site}/core"), Part::new(*site, PartWork::Core))).collect();
        RunState {
            run_id: run_id.to_owned(),
            folder: folder.to_owned(),
            started_at,
            files,
            sites,
            parts,
            invocations: 0,
            merge: Stage::Pending,
            manifest_key: None,
        }
    }

    /// Whether `stage` may be taken at `now`: pending, or running past its lease.
    fn takeable(stage: &Stage, now: OffsetDateTime) -> bool {
        match stage {
            Stage::Pending => true,
            Stage::Running { lease_until, .. } => *lease_until <= now,
            Stage::Done => false,
        }
    }

    /// The parts that may be claimed at `now`, in key order.
    pub fn claimable(&self, now: OffsetDateTime) -> Vec<String> {
        self.parts.iter().filter(|(_, p)| Self::takeable(&p.stage, now)).map(|(k, _)| k.clone()).collect()
    }

    /// Claims `key` for `holder` until `now + lease`; `false` when it is done or another holds it (a duplicate or
    /// concurrent continuation: it leaves the part alone).
    pub fn claim(&mut self, key: &str, holder: &str, now: OffsetDateTime, lease: time::Duration) -> bool {
        match self.parts.get_mut(key) {
            Some(p) if Self::takeable(&p.stage, now) => {
                p.stage = Stage::Running { holder: holder.to_owned(), lease_until: now + lease };
                p.attempts += 1;
                true
            }
            _ => false,
        }
    }

    fn held_by(&self, key: &str, holder: &str) -> bool {
        matches!(self.parts.get(key).map(|p| &p.stage), Some(Stage::Running { holder: h, .. }) if h == holder)
    }

    /// Records `key` done by `holder` with what it found; `false` (nothing changed) when `holder` no longer holds
    /// it: its lease lapsed and another attempt took it, whose finish is the one kept.
    pub fn finish(&mut self, key: &str, holder: &str, done: PartDone) -> bool {
        if !self.held_by(key, holder) {
            return false;
        }
        for (child, part) in done.found {
            self.parts.entry(child).or_insert(part);
        }
        if let Some(p) = self.parts.get_mut(key) {
            p.stage = Stage::Done;
            p.kinds = done.kinds;
            p.output = Some(done.output);
            p.requests = done.requests;
        }
        true
    }

    /// Puts `key` back (pending) when `holder` could not finish it in time; `false` when it no longer holds it.
    pub fn release(&mut self, key: &str, holder: &str) -> bool {
        if !self.held_by(key, holder) {
            return false;
        }
        if let Some(p) = self.parts.get_mut(key) {
            p.stage = Stage::Pending;
            p.enqueued_at = None;
        }
        true
    }

    /// Whether every part is done.
    pub fn all_done(&self) -> bool {
        self.parts.values().all(|p| p.stage == Stage::Done)
    }

    /// Claims the merge for `holder` (every part done, the merge not done nor held by another).
    pub fn claim_merge(&mut self, holder: &str, now: OffsetDateTime, lease: time::Duration) -> bool {
        if !self.all_done() || !Self::takeable(&self.merge, now) {
            return false;
        }
        self.merge = Stage::Running { holder: holder.to_owned(), lease_until: now + lease };
        true
    }

    /// The pending parts whose continuation is not posted (or was posted a lease ago: lost with an invocation that
    /// died before sending it), marked as posted at `now`.
    pub fn to_enqueue(&mut self, now: OffsetDateTime, lease: time::Duration) -> Vec<String> {
        let mut out = Vec::new();
        for (key, p) in &mut self.parts {
            let stale = p.enqueued_at.is_none_or(|t| now - t >= lease);
            if Self::takeable(&p.stage, now) && stale {
                p.enqueued_at = Some(now);
                out.push(key.clone());
            }
        }
        out
    }

    /// The parts of `site` by stage.
    pub fn counts(&self, site: SiteName) -> PartCounts {
        let mut c = PartCounts::default();
        for p in self.parts.values().filter(|p| p.site == site) {
            match p.stage {
                Stage::Pending => c.pending += 1,
                Stage::Running { .. } => c.running += 1,
                Stage::Done => c.done += 1,
            }
        }
        c
    }

    /// Each kind of `site` as its done parts say so far: the worst status, the objects counted.
    pub fn kinds(&self, site: SiteName) -> BTreeMap<ObjectKind, KindSummary> {
        let mut out: BTreeMap<ObjectKind, Vec<&KindSummary>> = BTreeMap::new();
        for p in self.parts.values().filter(|p| p.site == site && p.stage == Stage::Done) {
            for (kind, k) in &p.kinds {
                out.entry(*kind).or_default().push(k);
            }
        }
        out.into_iter()
            .map(|(kind, ks)| {
                let statuses: Vec<&ExportStatus> = ks.iter().map(|k| &k.status).collect();
                let count = ks.iter().map(|k| k.count).sum();
                (kind, KindSummary { status: combined(&statuses, count), count })
            })
            .collect()
    }

    /// Calls made for `site`.
    pub fn requests(&self, site: SiteName) -> u32 {
        self.parts.values().filter(|p| p.site == site).map(|p| p.requests).sum()
    }
}

/// The status of a kind read by several parts: partial if any is (the first error), skipped if every one is and
/// none read anything, else complete.
fn combined(statuses: &[&ExportStatus], count: usize) -> ExportStatus {
    if let Some(p) = statuses.iter().find(|s| matches!(s, ExportStatus::Partial { .. })) {
        return (*p).clone();
    }
    match statuses.first() {
        Some(s @ ExportStatus::Skipped { .. })
            if count == 0 && statuses.iter().all(|s| matches!(s, ExportStatus::Skipped { .. })) =>
        {
            (*s).clone()
        }
        _ => ExportStatus::Complete,
    }
}

/// The key of a run's state.
pub fn run_key(folder: &str) -> String {
    format!("{folder}/databricks/run.json")
}

/// A continuation's body: the run, and the part to take first (none: whatever is left, or the merge).
pub fn message(run: &str, part: Option<&str>) -> String {
    json!({ "export_run": run, "part": part }).to_string()
}

/// A run's object that is missing or unreadable: retrying cannot fix it.
fn corrupt(key: &str, problem: &str) -> StoreError {
    StoreError::Refused { service: "S3", operation: "GetObject", message: format!("{key}: {problem}") }
}

/// Reads a run's state with its ETag.
pub async fn read<B: ControlBucket>(bucket: &B, key: &str) -> Result<Option<(RunState, String)>, StoreError> {
    let Some(o) = bucket.get(key).await? else { return Ok(None) };
    let state = serde_json::from_slice(&o.body).map_err(|e| corrupt(key, &e.to_string()))?;
    Ok(Some((state, o.etag)))
}

/// Changes a run's state by compare-and-swap: `f` on the state as read, written only if it changed and only over
/// that version (another writer in between: read again and `f` again).
pub async fn update<B: ControlBucket, T>(
    bucket: &B,
    key: &str,
    mut f: impl FnMut(&mut RunState) -> T,
) -> Result<(RunState, T), StoreError> {
    for _ in 0..50 {
        let Some((mut state, etag)) = read(bucket, key).await? else {
            return Err(corrupt(key, "no such export run"));
        };
        let before = state.clone();
        let out = f(&mut state);
        if state == before {
            return Ok((state, out));
        }
        let body = serde_json::to_vec_pretty(&state).unwrap_or_default();
        match bucket.put(key, body, "application/json", WriteCondition::IfMatch(etag)).await {
            Ok(_) => return Ok((state, out)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.to_owned() })
}

/// Writes a new run's state (once: a second writer of the same run is refused).
pub async fn create<B: ControlBucket>(bucket: &B, state: &RunState) -> Result<String, StoreError> {
    let key = run_key(&state.folder);
    let body = serde_json::to_vec_pretty(state).unwrap_or_default();
    bucket.put(&key, body, "application/json", WriteCondition::IfAbsent).await?;
    Ok(key)
}

/// What one invocation did to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Driven {
    /// The run as this invocation left it.
    pub state: RunState,
    /// Parts it finished.
    pub finished: usize,
    /// Continuations it posted.
    pub posted: usize,
    /// Whether it merged (the export is complete).
    pub merged: bool,
}

/// What an invocation works with.
pub struct Context<'a, B> {
    /// The control bucket.
    pub bucket: &'a B,
    /// The workspaces' connector.
    pub connector: &'a dyn WorkspaceConnector,
    /// The valid site documents.
    pub sites: &'a [(SiteName, SiteConfig)],
    /// Calls in flight and page size per part.
    pub limits: ExportLimits,
    /// The queue, budget and part size.
    pub carrier: &'a Carrier,
    /// Now, as the engine's clock says.
    pub now: &'a (dyn Fn() -> OffsetDateTime + Send + Sync),
    /// This invocation's name in leases.
    pub holder: String,
    /// When the invocation started: its budget counts from there.
    pub started: tokio::time::Instant,
    /// Whether a continuation message invoked it: if it dies, SQS delivers that message again. An invocation
    /// without one (the snapshot's) posts a delayed guard whenever it claims work instead ([`Context::guard`]).
    pub from_message: bool,
}

impl<B: ControlBucket> Context<'_, B> {
    fn lease(&self) -> time::Duration {
        // Longer than any invocation's remaining time (manual-trigger's timeout is 110 s), shorter than the
        // queue's visibility timeout (660 s): a redelivered continuation finds the lease lapsed.
        time::Duration::try_from(self.carrier.budget).unwrap_or(time::Duration::ZERO) + time::Duration::minutes(2)
    }
}

impl<B: ControlBucket> Context<'_, B> {
    /// After a claim by an invocation no message stands behind: a continuation delivered once the claim's lease
    /// has lapsed, which takes the work over if this invocation died holding it (and finds it done otherwise).
    async fn guard(&self, key: &str) -> Result<(), StoreError> {
        if self.from_message {
            return Ok(());
        }
        let delay = u32::try_from(self.lease().whole_seconds() + 30).unwrap_or(900).min(900);
        self.carrier.queue.send(message(key, None), delay).await
    }
}

/// Works on the run at `key` for this invocation: parts (`first` first) while a third of the budget is left,
/// then the merge if every part is done, else one continuation per pending part.
pub async fn drive<B: ControlBucket>(cx: &Context<'_, B>, key: &str, first: Option<&str>) -> Result<Driven, StoreError> {
    let deadline = cx.started + cx.carrier.budget;
    let min_left = cx.carrier.budget / 3;
    // A continuation that comes after the merge (a duplicate) did no work on it: not counted.
    let (mut state, ()) = update(cx.bucket, key, |s| {
        if s.merge != Stage::Done {
            s.invocations += 1;
        }
    })
    .await?;
    let mut first = first.map(str::to_owned);
    let mut finished = 0;
    let mut apis: BTreeMap<SiteName, Result<Arc<dyn WorkspaceApi>, ApiError>> = BTreeMap::new();
    while deadline.saturating_duration_since(tokio::time::Instant::now()) >= min_left {
        let now = (cx.now)();
        let lease = cx.lease();
        let holder = cx.holder.clone();
        let wanted = first.take();
        let (s, claimed) = update(cx.bucket, key, |s| {
            let mut order = s.claimable(now);
            if let Some(w) = &wanted
                && let Some(i) = order.iter().position(|k| k == w)
            {
                let w = order.remove(i);
                order.insert(0, w);
            }
            order.into_iter().take(PARTS_AT_ONCE).filter(|k| s.claim(k, &holder, now, lease)).collect::<Vec<_>>()
        })
        .await?;
        state = s;
        if claimed.is_empty() {
            break;
        }
        cx.guard(key).await?;
        for k in &claimed {
            let site = state.parts[k].site;
            apis.entry(site).or_insert_with(|| match cx.sites.iter().find(|(s, _)| *s == site) {
                Some((s, config)) => cx.connector.connect(*s, config),
                None => Err(ApiError::NotConfigured(format!("no valid site document for {site}"))),
            });
        }
        let runs = claimed.iter().map(|k| run_one(cx, key, &state, k, &apis, deadline));
        let results = futures_util::future::join_all(runs).await;
        for r in results {
            let (s, done) = r?;
            state = s;
            finished += usize::from(done);
        }
        write_progress(cx.bucket, &state, (cx.now)()).await;
    }
    // The parts ran side by side: the state each wrote may not be the last; read the last.
    if let Some((s, _)) = read(cx.bucket, key).await? {
        state = s;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if state.all_done() {
        if left >= min_left {
            let merged = merge_if_mine(cx, key).await?;
            let state = read(cx.bucket, key).await?.map(|(s, _)| s).unwrap_or(state);
            return Ok(Driven { merged: merged || state.merge == Stage::Done, state, finished, posted: 0 });
        }
        // Not time enough to merge here: a continuation without a part merges.
        cx.carrier.queue.send(message(key, None), 0).await?;
        return Ok(Driven { state, finished, posted: 1, merged: false });
    }
    let (now, lease) = ((cx.now)(), cx.lease());
    let (state, posts) = update(cx.bucket, key, |s| s.to_enqueue(now, lease)).await?;
    for part in &posts {
        cx.carrier.queue.send(message(key, Some(part)), 0).await?;
    }
    write_progress(cx.bucket, &state, (cx.now)()).await;
    Ok(Driven { merged: state.merge == Stage::Done, posted: posts.len(), state, finished })
}

/// Runs one claimed part and records it (finished, or put back when the deadline cut it and it may run again).
/// Returns the state as written and whether the part was recorded done.
async fn run_one<B: ControlBucket>(
    cx: &Context<'_, B>,
    key: &str,
    state: &RunState,
    part_key: &str,
    apis: &BTreeMap<SiteName, Result<Arc<dyn WorkspaceApi>, ApiError>>,
    deadline: tokio::time::Instant,
) -> Result<(RunState, bool), StoreError> {
    let part = &state.parts[part_key];
    let output_dir = format!("{}/databricks/parts/{part_key}/a{}", state.folder, part.attempts);
    let out = match apis.get(&part.site) {
        Some(Ok(api)) => {
            let work = match work_of(cx.bucket, &part.work).await? {
                Some(w) => w,
                None => Work::Targets { kind: ObjectKind::Permissions, targets: Vec::new(), inherited: None },
            };
            let warehouse =
                cx.sites.iter().find(|(s, _)| *s == part.site).and_then(|(_, c)| c.export_settings().sql_warehouse_id);
            let run = PartRun {
                api: api.as_ref(),
                concurrency: cx.limits.concurrency,
                page_size: cx.limits.page_size,
                deadline,
                warehouse: warehouse.as_deref(),
            };
            parts::run(&run, work).await
        }
        Some(Err(e)) => skipped_part(&part.work, &e.to_string()),
        None => skipped_part(&part.work, "no client"),
    };
    let holder = cx.holder.clone();
    if out.cut_short && part.attempts < MAX_ATTEMPTS {
        tracing::info!(part = part_key, attempt = part.attempts, "export part cut short by the invocation's deadline: put back");
        let (s, _) = update(cx.bucket, key, |s| s.release(part_key, &holder)).await?;
        return Ok((s, false));
    }
    let found = store_found(cx.bucket, part.site, part_key, &output_dir, out.found, cx.carrier.part_size).await?;
    let mut kinds = BTreeMap::new();
    for k in out.kinds {
        kinds.insert(k.kind, KindSummary { status: k.status.clone(), count: k.objects.len() });
        let body = serde_json::to_vec(&json!({ "status": k.status, "objects": k.objects })).unwrap_or_default();
        cx.bucket.put(&format!("{output_dir}/{}.json", k.kind), body, "application/json", WriteCondition::Overwrite).await?;
    }
    let done = PartDone { kinds, output: output_dir, requests: out.requests, found };
    let (s, recorded) = update(cx.bucket, key, |s| s.finish(part_key, &holder, done.clone())).await?;
    if !recorded {
        tracing::warn!(part = part_key, "export part finished after its lease lapsed: another attempt's is kept");
    }
    Ok((s, recorded))
}

/// Every kind a part would hold, skipped for `reason` (its site has no client).
fn skipped_part(work: &PartWork, reason: &str) -> parts::PartOutput {
    let status = ExportStatus::Skipped { reason: reason.to_owned() };
    let kinds: Vec<ObjectKind> = match work {
        PartWork::Core => ObjectKind::ALL.to_vec(),
        PartWork::Catalog { .. } => vec![ObjectKind::Schemas, ObjectKind::Tables, ObjectKind::Volumes, ObjectKind::Grants],
        PartWork::Targets { kind, .. } => vec![*kind],
    };
    let kinds = kinds.into_iter().map(|kind| KindExport { kind, status: status.clone(), objects: Vec::new() }).collect();
    parts::PartOutput { kinds, found: Vec::new(), cut_short: false, requests: 0 }
}

/// The work of a part, its targets read back from S3.
async fn work_of<B: ControlBucket>(bucket: &B, work: &PartWork) -> Result<Option<Work>, StoreError> {
    Ok(Some(match work {
        PartWork::Core => Work::Core,
        PartWork::Catalog { name } => Work::Catalog(name.clone()),
        PartWork::Targets { kind, input, inherited } => {
            let Some(o) = bucket.get(input).await? else { return Ok(None) };
            let targets: Vec<Target> = serde_json::from_slice(&o.body).map_err(|e| corrupt(input, &e.to_string()))?;
            Work::Targets { kind: *kind, targets, inherited: inherited.clone() }
        }
    }))
}

/// The parts a part found, keyed under it: catalogs by name, targets in slices of `size` kept in S3 beside its
/// objects (an empty slice list still records its kind's inherited error through one empty part).
async fn store_found<B: ControlBucket>(
    bucket: &B,
    site: SiteName,
    parent: &str,
    output_dir: &str,
    found: Vec<Found>,
    size: usize,
) -> Result<Vec<(String, Part)>, StoreError> {
    let mut out = Vec::new();
    for f in found {
        match f {
            Found::Catalog(name) => {
                let key = format!("{site}/catalog-{}", super::export::encode_segment(&name));
                out.push((key, Part::new(site, PartWork::Catalog { name })));
            }
            Found::Targets { kind, targets, inherited } => {
                if targets.is_empty() && inherited.is_none() {
                    continue;
                }
                let slices: Vec<&[Target]> = if targets.is_empty() { vec![&[]] } else { targets.chunks(size.max(1)).collect() };
                for (i, slice) in slices.into_iter().enumerate() {
                    let input = format!("{output_dir}/{kind}-{i:04}.input.json");
                    bucket
                        .put(&input, serde_json::to_vec(slice).unwrap_or_default(), "application/json", WriteCondition::Overwrite)
                        .await?;
                    let work = PartWork::Targets { kind, input, inherited: inherited.clone() };
                    out.push((format!("{parent}/{kind}-{i:04}"), Part::new(site, work)));
                }
            }
        }
    }
    Ok(out)
}

/// Each site's progress record as the run stands (advisory, as in one invocation).
async fn write_progress<B: ControlBucket>(bucket: &B, state: &RunState, now: OffsetDateTime) {
    for (site, url) in &state.sites {
        let record = ExportRecord {
            site: *site,
            workspace_url: url.clone(),
            snapshot_folder: state.folder.clone(),
            state: if state.merge == Stage::Done { ExportState::Finished } else { ExportState::Running },
            started_at: state.started_at,
            updated_at: now,
            kinds: state.kinds(*site),
            requests: state.requests(*site),
            invocations: state.invocations,
            parts: Some(state.counts(*site)),
        };
        progress::write(bucket, &record).await;
    }
}

/// Merges the run if every part is done and nobody else merges it; `true` when this invocation merged.
async fn merge_if_mine<B: ControlBucket>(cx: &Context<'_, B>, key: &str) -> Result<bool, StoreError> {
    let (now, lease, holder) = ((cx.now)(), cx.lease(), cx.holder.clone());
    let (state, mine) = update(cx.bucket, key, |s| s.claim_merge(&holder, now, lease)).await?;
    if !mine {
        return Ok(false);
    }
    cx.guard(key).await?;
    let manifest = merge(cx.bucket, &state, (cx.now)()).await?;
    let (state, _) = update(cx.bucket, key, |s| {
        if matches!(&s.merge, Stage::Running { holder: h, .. } if *h == holder) {
            s.merge = Stage::Done;
            s.manifest_key = Some(manifest.clone());
        }
    })
    .await?;
    write_progress(cx.bucket, &state, (cx.now)()).await;
    // The parts' objects are in the snapshot's files now: best effort, the snapshot's expiry takes what is left.
    if let Ok(keys) = cx.bucket.list(&format!("{}/databricks/parts/", state.folder)).await {
        for k in keys {
            if let Err(e) = cx.bucket.delete(&k).await {
                tracing::warn!(key = %k, error = %e, "export part file not deleted");
            }
        }
    }
    Ok(true)
}

/// One kind of one site, concatenated from the parts that hold it (tables in `full_name` order).
async fn merged_kind<B: ControlBucket>(
    bucket: &B,
    state: &RunState,
    site: SiteName,
    kind: ObjectKind,
    summary: Option<&KindSummary>,
) -> Result<KindExport, StoreError> {
    let mut objects = Vec::new();
    for p in state.parts.values().filter(|p| p.site == site && p.kinds.contains_key(&kind)) {
        let Some(dir) = &p.output else { continue };
        let key = format!("{dir}/{kind}.json");
        let Some(o) = bucket.get(&key).await? else {
            return Err(corrupt(&key, "an export part's objects are missing"));
        };
        if let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(&o.body)
            && let Some(Value::Array(a)) = v.remove("objects")
        {
            objects.extend(a);
        }
    }
    if kind == ObjectKind::Tables {
        let name = |v: &Value| v.get("full_name").and_then(Value::as_str).map(str::to_owned);
        objects.sort_by_key(name);
    }
    let status = summary.map(|s| s.status.clone()).unwrap_or(ExportStatus::Complete);
    Ok(KindExport { kind, status, objects })
}

/// Writes the snapshot's Databricks files, drift, manifest and pointers from the parts, one kind at a time; returns
/// the manifest's key.
async fn merge<B: ControlBucket>(bucket: &B, state: &RunState, now: OffsetDateTime) -> Result<String, StoreError> {
    let previous = super::read_latest(bucket).await?;
    let summaries: BTreeMap<SiteName, BTreeMap<ObjectKind, KindSummary>> =
        state.sites.keys().map(|s| (*s, state.kinds(*s))).collect();
    let answered: BTreeSet<SiteName> = summaries
        .iter()
        .filter(|(_, kinds)| kinds.values().any(|k| !matches!(k.status, ExportStatus::Skipped { .. })))
        .map(|(s, _)| *s)
        .collect();
    let now_ms = i64::try_from(state.started_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut aged: BTreeMap<SiteName, BTreeSet<String>> = BTreeMap::new();
    for site in &answered {
        if let Some(before) = previous.get(site)
            && let Some(clusters) = super::read_kind(bucket, before, ObjectKind::Clusters).await?
        {
            aged.insert(*site, drift::aged_out_clusters(&clusters.objects, now_ms));
        }
    }
    let mut entries: BTreeMap<SiteName, Vec<Value>> = BTreeMap::new();
    let mut between = Vec::new();
    let mut over_time: BTreeMap<SiteName, Vec<domain::databricks::drift::KindDrift>> = BTreeMap::new();
    let mut tree_counts: BTreeMap<SiteName, (usize, usize)> = BTreeMap::new();
    for kind in ObjectKind::ALL {
        let mut sides: BTreeMap<SiteName, KindExport> = BTreeMap::new();
        for (site, url) in &state.sites {
            let k = merged_kind(bucket, state, *site, kind, summaries.get(site).and_then(|m| m.get(&kind))).await?;
            let name = super::kind_file(*site, kind);
            let body = super::kind_body(*site, url, &k, state.started_at);
            entries.entry(*site).or_default().push(crate::snapshot::manifest_entry(&state.folder, &name, &body));
            bucket.put(&format!("{}/{name}", state.folder), body, "application/json", WriteCondition::Overwrite).await?;
            if !answered.contains(site) {
                continue;
            }
            if kind == ObjectKind::WorkspaceObjects {
                let count =
                    |t: &str| k.objects.iter().filter(|o| o.get("object_type").and_then(Value::as_str) == Some(t)).count();
                tree_counts.insert(*site, (count("NOTEBOOK"), count("FILE")));
            }
            if let Some(before) = previous.get(site)
                && let Some(old) = super::read_kind(bucket, before, kind).await?
                && let Some(d) = super::compare_kind(&old, &k, aged.get(site).unwrap_or(&BTreeSet::new()))
            {
                over_time.entry(*site).or_default().push(d);
            }
            sides.insert(*site, k);
        }
        for site in SiteName::ALL {
            if !sides.contains_key(&site)
                && let Some(p) = previous.get(&site)
                && let Some(k) = super::read_kind(bucket, p, kind).await?
            {
                sides.insert(site, k);
            }
        }
        if let (Some(p), Some(s)) = (sides.get(&SiteName::Primary), sides.get(&SiteName::Secondary))
            && let Some(d) = super::compare_kind(p, s, &BTreeSet::new())
        {
            between.push(d);
        }
    }
    let elapsed_ms = u64::try_from((now - state.started_at).whole_milliseconds()).unwrap_or(0);
    let mut latest = previous.clone();
    for site in &answered {
        let (notebooks, files) = tree_counts.get(site).copied().unwrap_or_default();
        let pointer = LatestExport {
            site: *site,
            workspace_url: state.sites.get(site).cloned().unwrap_or_default(),
            snapshot_folder: state.folder.clone(),
            exported_at: state.started_at,
            kinds: summaries.get(site).cloned().unwrap_or_default(),
            notebooks_outside_repos: notebooks,
            files_outside_repos: files,
            requests: state.requests(*site),
            elapsed_ms,
        };
        latest.insert(*site, pointer);
    }
    let has_both = SiteName::ALL.iter().all(|s| latest.contains_key(s));
    let between_sites = has_both.then(|| Drift { base: "primary".into(), other: "secondary".into(), kinds: between });
    let over_time: BTreeMap<SiteName, Drift> = over_time
        .into_iter()
        .map(|(s, kinds)| (s, Drift { base: "previous snapshot".into(), other: "this snapshot".into(), kinds }))
        .collect();
    let drift = DriftReport {
        generated_at: state.started_at,
        snapshot_folder: state.folder.clone(),
        sentence: super::sentence(between_sites.as_ref(), &over_time, &latest),
        between_sites,
        over_time,
    };
    let drift_body = serde_json::to_vec_pretty(&drift).unwrap_or_default();
    let mut all: Vec<Value> = state.files.clone();
    all.extend(entries.into_values().flatten());
    all.push(crate::snapshot::manifest_entry(&state.folder, "databricks/drift.json", &drift_body));
    bucket
        .put(
            &format!("{}/databricks/drift.json", state.folder),
            drift_body.clone(),
            "application/json",
            WriteCondition::Overwrite,
        )
        .await?;
    let manifest_key = format!("{}/manifest.json", state.folder);
    let manifest = crate::snapshot::manifest_body(&state.run_id, state.started_at, &all);
    bucket.put(&manifest_key, manifest, "application/json", WriteCondition::Overwrite).await?;
    let mut pointers = Vec::new();
    for (site, pointer) in &latest {
        if previous.get(site) != Some(pointer) {
            pointers.push((domain::layout::databricks_latest(*site), serde_json::to_vec_pretty(pointer).unwrap_or_default()));
        }
    }
    pointers.push((domain::layout::DATABRICKS_DRIFT.to_owned(), drift_body));
    super::write_pointers(bucket, pointers).await?;
    Ok(manifest_key)
}

/// Per site, as the one-invocation snapshot answers it (`workspace::export_summary`): whether it was exported,
/// its calls, its time, each kind's status and count.
pub fn summary(state: &RunState, now: OffsetDateTime) -> Value {
    let mut sites = serde_json::Map::new();
    for site in state.sites.keys() {
        let kinds: serde_json::Map<String, Value> = state
            .kinds(*site)
            .into_iter()
            .map(|(kind, k)| {
                let mut v = json!({ "status": k.status.as_str(), "count": k.count });
                match &k.status {
                    ExportStatus::Partial { error } => v["error"] = json!(error),
                    ExportStatus::Skipped { reason } => v["reason"] = json!(reason),
                    ExportStatus::Complete => {}
                }
                (kind.as_str().to_owned(), v)
            })
            .collect();
        let exported = state.merge == Stage::Done && kinds.values().any(|k| k["status"] != "skipped");
        sites.insert(
            site.as_str().to_owned(),
            json!({
                "exported": exported,
                "requests": state.requests(*site),
                "elapsed_ms": u64::try_from((now - state.started_at).whole_milliseconds()).unwrap_or(0),
                "kinds": kinds,
                "parts": state.counts(*site),
            }),
        );
    }
    Value::Object(sites)
}

#[cfg(test)]
mod tests;
