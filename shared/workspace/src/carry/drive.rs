//! Driving a carried export: one invocation claims parts, runs them under its budget, posts continuations, and
//! merges when it finds every part done ([`super`] says how the run document keeps that single).

use super::merge::merge;
use super::{Carrier, MAX_ATTEMPTS, PARTS_AT_ONCE, Part, PartDone, PartWork, RunState, Stage, corrupt, message, read, update};
use crate::KindSummary;
use crate::export::parts::{self, Found, PartRun, Target, Work};
use crate::export::{ExportLimits, KindExport};
use crate::progress::{self, ExportRecord, ExportState};
use crate::rules::{ExportStatus, ObjectKind};
use domain::site::{SiteConfig, SiteName};
use dr_ports::error::StoreError;
use dr_ports::{ApiError, ControlBucket, WorkspaceApi, WorkspaceConnector, WriteCondition};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

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
pub(super) async fn run_one<B: ControlBucket>(
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
pub(super) fn skipped_part(work: &PartWork, reason: &str) -> parts::PartOutput {
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
pub(super) async fn work_of<B: ControlBucket>(bucket: &B, work: &PartWork) -> Result<Option<Work>, StoreError> {
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
pub(super) async fn store_found<B: ControlBucket>(
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
                let key = format!("{site}/catalog-{}", crate::export::encode_segment(&name));
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
pub(super) async fn write_progress<B: ControlBucket>(bucket: &B, state: &RunState, now: OffsetDateTime) {
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
pub(super) async fn merge_if_mine<B: ControlBucket>(cx: &Context<'_, B>, key: &str) -> Result<bool, StoreError> {
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
