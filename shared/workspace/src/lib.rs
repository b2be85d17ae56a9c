//! The Databricks workspaces' metadata: exported from both sites at every snapshot ([`export`]), written one
//! file per kind into the snapshot, compared with the previous export of the same site and with the other
//! site's latest (drift), and summarized where on-call looks (`status`, `check`, reports).
//!
//! Keys (see `domain::layout`): the files go to `snapshots/{id}/databricks/{site}/{kind}.json`; the latest
//! export of each site is named by `databricks/latest-{site}.json` (written only when the site answered, so a
//! site that is down keeps its last good export as the baseline); `databricks/drift.json` holds the latest drift.
//!
//! Nothing here is on a failover's path to promotion: the failover's snapshot only copies the pointers and the
//! drift (one read each, [`LatestExportsSource`]); the exports run on the schedule and on demand.

pub mod carry;
pub mod export;
pub mod pages;
pub mod progress;
pub mod readiness;
pub mod rules;
pub mod sync;

use crate::rules::drift::{self, Drift, KindDrift};
use crate::rules::{ExportStatus, ObjectKind};
use domain::primitives::rfc3339;
use domain::site::{SiteConfig, SiteName};
use dr_ports::error::StoreError;
use dr_ports::snapshot::{SnapshotContext, SnapshotFile, SnapshotSource};
use dr_ports::{ControlBucket, WorkspaceConnector, WriteCondition};
use export::{ExportLimits, KindExport, SiteObjects};
use futures_util::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The pointer to a site's latest export (`databricks/latest-{site}.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestExport {
    /// The site.
    pub site: SiteName,
    /// The workspace exported.
    pub workspace_url: String,
    /// The snapshot folder holding the files (`snapshots/{id}`).
    pub snapshot_folder: String,
    /// When the export started.
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// Each kind's status and object count.
    pub kinds: BTreeMap<ObjectKind, KindSummary>,
    /// Notebooks in the workspace tree outside Repos: source code that no Git remote holds.
    pub notebooks_outside_repos: usize,
    /// Files in the workspace tree outside Repos.
    pub files_outside_repos: usize,
    /// Calls the export made.
    pub requests: u32,
    /// How long the export took.
    pub elapsed_ms: u64,
}

/// One kind of a [`LatestExport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    /// How it ended.
    #[serde(flatten)]
    pub status: ExportStatus,
    /// Objects exported.
    pub count: usize,
}

/// The latest drift (`databricks/drift.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// When it was computed.
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// The snapshot that computed it.
    pub snapshot_folder: String,
    /// Primary's latest export against secondary's; `None` when either has none.
    pub between_sites: Option<Drift>,
    /// Each site's export against its previous one (only for sites exported by this snapshot).
    pub over_time: BTreeMap<SiteName, Drift>,
    /// One line: what the secondary lacks (or that it is in step), then what changed since the last snapshot.
    pub sentence: String,
}

/// What an export of both sites produced.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    /// The snapshot files (one per site and kind, and the drift).
    pub files: Vec<SnapshotFile>,
    /// The control-bucket keys to write once the snapshot's files are in ([`write_pointers`]): the pointers of
    /// the sites that answered, and the drift.
    pub pointers: Vec<(String, Vec<u8>)>,
    /// Each site's pointer, as written (or as it was, for a site that did not answer).
    pub latest: BTreeMap<SiteName, LatestExport>,
    /// The drift.
    pub drift: DriftReport,
}

/// How often a running export's progress record is written when no kind came in meanwhile (for its calls
/// count).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The file of one kind of one site inside a snapshot folder.
pub fn kind_file(site: SiteName, kind: ObjectKind) -> String {
    format!("databricks/{site}/{kind}.json")
}

/// Exports both sites (concurrently), compares them, and returns the snapshot files; writes the pointers of the
/// sites that answered and the drift. `sites` holds the valid site documents; `folder` is the snapshot's.
pub async fn export_and_compare<B: ControlBucket>(
    bucket: &B,
    connector: &dyn WorkspaceConnector,
    sites: &[(SiteName, SiteConfig)],
    limits: ExportLimits,
    folder: &str,
    now: OffsetDateTime,
) -> Result<ExportOutcome, StoreError> {
    let exports =
        join_all(sites.iter().map(|(site, config)| export_one(bucket, connector, *site, config, limits, folder, now))).await;
    let previous = read_latest(bucket).await?;
    let mut files = Vec::new();
    let mut latest = previous.clone();
    let mut current: BTreeMap<SiteName, BTreeMap<ObjectKind, KindExport>> = BTreeMap::new();
    let mut over_time = BTreeMap::new();
    for (site, url, objects, elapsed_ms) in exports {
        for k in &objects.kinds {
            files.push(SnapshotFile { name: kind_file(site, k.kind), body: kind_body(site, &url, k, now) });
        }
        let answered = objects.kinds.iter().any(|k| !matches!(k.status, ExportStatus::Skipped { .. }));
        if !answered {
            continue;
        }
        let pointer = pointer_of(site, &url, folder, &objects, now, elapsed_ms);
        let this: BTreeMap<ObjectKind, KindExport> = objects.kinds.into_iter().map(|k| (k.kind, k)).collect();
        if let Some(before) = previous.get(&site) {
            let old = read_kinds(bucket, before).await?;
            // Over time, a terminated cluster leaves clusters/list after 30 days unless pinned: not a removal.
            let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
            over_time.insert(site, compare("previous snapshot", &old, "this snapshot", &this, Some(now_ms)));
        }
        latest.insert(site, pointer);
        current.insert(site, this);
    }
    let between_sites = between_sites(bucket, current, &latest).await?;
    let drift = DriftReport {
        generated_at: now,
        snapshot_folder: folder.to_owned(),
        sentence: sentence(between_sites.as_ref(), &over_time, &latest),
        between_sites,
        over_time,
    };
    let drift_body = serde_json::to_vec_pretty(&drift).unwrap_or_default();
    files.push(SnapshotFile { name: "databricks/drift.json".into(), body: drift_body.clone() });
    let mut pointers = Vec::new();
    for (site, pointer) in &latest {
        if previous.get(site) != Some(pointer) {
            pointers.push((domain::layout::databricks_latest(*site), serde_json::to_vec_pretty(pointer).unwrap_or_default()));
        }
    }
    pointers.push((domain::layout::DATABRICKS_DRIFT.to_owned(), drift_body));
    Ok(ExportOutcome { files, pointers, latest, drift })
}

/// Exports one site, its progress recorded as it goes: (site, workspace URL, objects, elapsed ms).
async fn export_one<B: ControlBucket>(
    bucket: &B,
    connector: &dyn WorkspaceConnector,
    site: SiteName,
    config: &SiteConfig,
    limits: ExportLimits,
    folder: &str,
    now: OffsetDateTime,
) -> (SiteName, String, SiteObjects, u64) {
    let started = std::time::Instant::now();
    let record = progress::ExportRecord::started(site, config.workspace_url(), folder, now);
    let tracker = export::Progress::default();
    let objects = progress::tracked(bucket, record, &tracker, PROGRESS_EVERY, async {
        match connector.connect(site, config) {
            Ok(api) => {
                let warehouse = config.export_settings().sql_warehouse_id;
                export::export_site_with(api.as_ref(), limits, &tracker, warehouse.as_deref()).await
            }
            Err(e) => SiteObjects::skipped(&e.to_string()),
        }
    })
    .await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(site = %site, requests = objects.requests, elapsed_ms, "workspace exported");
    (site, config.workspace_url().to_owned(), objects, elapsed_ms)
}

/// The drift between the sites: each side is this snapshot's export, or that site's latest good one; none
/// while either side has never been exported.
async fn between_sites<B: ControlBucket>(
    bucket: &B,
    mut current: BTreeMap<SiteName, BTreeMap<ObjectKind, KindExport>>,
    latest: &BTreeMap<SiteName, LatestExport>,
) -> Result<Option<Drift>, StoreError> {
    let mut sides = BTreeMap::new();
    for site in SiteName::ALL {
        match current.remove(&site) {
            Some(kinds) => {
                sides.insert(site, kinds);
            }
            None => {
                if let Some(p) = latest.get(&site) {
                    sides.insert(site, read_kinds(bucket, p).await?);
                }
            }
        }
    }
    Ok(match (sides.get(&SiteName::Primary), sides.get(&SiteName::Secondary)) {
        (Some(p), Some(s)) => Some(compare("primary", p, "secondary", s, None)),
        _ => None,
    })
}

/// Writes an outcome's pointers and drift: after the snapshot's files, so that a pointer never names files
/// that are not there yet.
pub async fn write_pointers<B: ControlBucket>(bucket: &B, pointers: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
    let writes = pointers.into_iter().map(|(key, body)| async move {
        bucket.put(&key, body, "application/json", WriteCondition::Overwrite).await.map(|_| ())
    });
    join_all(writes).await.into_iter().collect()
}

/// The pointers of both sites' latest exports (absent or unreadable pointers are absent).
pub async fn read_latest<B: ControlBucket>(bucket: &B) -> Result<BTreeMap<SiteName, LatestExport>, StoreError> {
    let reads =
        join_all(SiteName::ALL.map(|site| async move { (site, bucket.get(&domain::layout::databricks_latest(site)).await) }))
            .await;
    let mut out = BTreeMap::new();
    for (site, read) in reads {
        let Some(object) = read? else { continue };
        match serde_json::from_slice::<LatestExport>(&object.body) {
            Ok(p) => {
                out.insert(site, p);
            }
            Err(e) => tracing::warn!(site = %site, error = %e, "unreadable export pointer ignored"),
        }
    }
    Ok(out)
}

/// The latest drift, if any export ran.
pub async fn read_drift<B: ControlBucket>(bucket: &B) -> Result<Option<DriftReport>, StoreError> {
    let Some(object) = bucket.get(domain::layout::DATABRICKS_DRIFT).await? else { return Ok(None) };
    Ok(serde_json::from_slice(&object.body).inspect_err(|e| tracing::warn!(error = %e, "unreadable drift ignored")).ok())
}

/// The kinds of an export a pointer names, read back from its snapshot (a missing file is a skipped kind).
async fn read_kinds<B: ControlBucket>(
    bucket: &B,
    pointer: &LatestExport,
) -> Result<BTreeMap<ObjectKind, KindExport>, StoreError> {
    let reads = join_all(pointer.kinds.keys().map(|kind| async move { (*kind, read_kind(bucket, pointer, *kind).await) })).await;
    let mut out = BTreeMap::new();
    for (kind, read) in reads {
        if let Some(export) = read? {
            out.insert(kind, export);
        }
    }
    Ok(out)
}

/// One kind of the export a pointer names (`None` when the pointer has no such kind; a missing file is skipped).
pub(crate) async fn read_kind<B: ControlBucket>(
    bucket: &B,
    pointer: &LatestExport,
    kind: ObjectKind,
) -> Result<Option<KindExport>, StoreError> {
    let Some(summary) = pointer.kinds.get(&kind) else { return Ok(None) };
    let key = format!("{}/{}", pointer.snapshot_folder, kind_file(pointer.site, kind));
    Ok(Some(match bucket.get(&key).await? {
        Some(object) => {
            let v: Value = serde_json::from_slice(&object.body).unwrap_or(Value::Null);
            let objects = match v {
                Value::Object(mut o) => match o.remove("objects") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            KindExport { kind, status: summary.status.clone(), objects }
        }
        None => KindExport { kind, status: ExportStatus::Skipped { reason: "file missing".into() }, objects: Vec::new() },
    }))
}

/// A kind's file: the site, when, how the export ended, and the objects.
pub(crate) fn kind_body(site: SiteName, url: &str, k: &KindExport, now: OffsetDateTime) -> Vec<u8> {
    let mut v = json!({
        "site": site,
        "workspace_url": url,
        "kind": k.kind,
        "exported_at": rfc3339(now),
        "count": k.objects.len(),
        "objects": k.objects,
    });
    if let (Value::Object(o), Ok(Value::Object(status))) = (&mut v, serde_json::to_value(&k.status)) {
        o.extend(status);
    }
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

fn pointer_of(
    site: SiteName,
    url: &str,
    folder: &str,
    objects: &SiteObjects,
    now: OffsetDateTime,
    elapsed_ms: u64,
) -> LatestExport {
    let tree = objects.kind(ObjectKind::WorkspaceObjects).map(|k| k.objects.as_slice()).unwrap_or_default();
    let count = |t: &str| tree.iter().filter(|o| o.get("object_type").and_then(Value::as_str) == Some(t)).count();
    LatestExport {
        site,
        workspace_url: url.to_owned(),
        snapshot_folder: folder.to_owned(),
        exported_at: now,
        kinds: objects.kinds.iter().map(|k| (k.kind, KindSummary { status: k.status.clone(), count: k.objects.len() })).collect(),
        notebooks_outside_repos: count("NOTEBOOK"),
        files_outside_repos: count("FILE"),
        requests: objects.requests,
        elapsed_ms,
    }
}

/// Compares two exports kind by kind; exact only where both were complete. Kinds skipped on either side are
/// left out (a workspace without vector search is not drift). `other_taken_ms` (one site over time: when `other`
/// was taken) sets aside the clusters that aged out of the listing meanwhile
/// ([`KindDrift::set_aside_aged_out_clusters`]).
fn compare(
    base_label: &str,
    base: &BTreeMap<ObjectKind, KindExport>,
    other_label: &str,
    other: &BTreeMap<ObjectKind, KindExport>,
    other_taken_ms: Option<i64>,
) -> Drift {
    let aged = match (other_taken_ms, base.get(&ObjectKind::Clusters)) {
        (Some(now_ms), Some(clusters)) => drift::aged_out_clusters(&clusters.objects, now_ms),
        _ => Default::default(),
    };
    let kinds = ObjectKind::ALL.into_iter().filter_map(|kind| compare_kind(base.get(&kind)?, other.get(&kind)?, &aged)).collect();
    Drift { base: base_label.to_owned(), other: other_label.to_owned(), kinds }
}

/// One kind's drift from `b` to `o` (`None` when either side is skipped), the clusters of `aged` set aside.
pub(crate) fn compare_kind(b: &KindExport, o: &KindExport, aged: &std::collections::BTreeSet<String>) -> Option<KindDrift> {
    if matches!(b.status, ExportStatus::Skipped { .. }) || matches!(o.status, ExportStatus::Skipped { .. }) {
        return None;
    }
    let exact = b.status.is_complete() && o.status.is_complete();
    let mut d = drift::diff(b.kind, &b.objects, &o.objects, exact);
    d.set_aside_aged_out_clusters(aged);
    Some(d)
}

pub(crate) fn sentence(
    between: Option<&Drift>,
    over_time: &BTreeMap<SiteName, Drift>,
    latest: &BTreeMap<SiteName, LatestExport>,
) -> String {
    let mut parts = Vec::new();
    match between {
        Some(d) => parts.push(d.sentence_between_sites()),
        None => {
            let missing: Vec<&str> = SiteName::ALL.iter().filter(|s| !latest.contains_key(s)).map(|s| s.as_str()).collect();
            parts.push(format!("no comparison between the sites: no export of {} yet", missing.join(" and ")));
        }
    }
    for (site, d) in over_time {
        parts.push(format!("{site} {}", d.sentence_over_time()));
    }
    parts.join("; ")
}

/// A failover's snapshot source: the pointers of both sites' latest exports and the latest drift, copied into
/// `databricks-exports.json` (two small reads, beside the other sources while the lock is taken). It never
/// fails the snapshot: an unreadable bucket is written down as such.
#[derive(Debug, Clone)]
pub struct LatestExportsSource<B> {
    /// The control bucket.
    pub bucket: B,
}

/// The name of [`LatestExportsSource`]'s file.
pub const LATEST_EXPORTS_FILE: &str = "databricks-exports.json";

impl<B: ControlBucket> SnapshotSource for LatestExportsSource<B> {
    fn name(&self) -> &'static str {
        "databricks-exports"
    }

    fn collect<'a>(&'a self, ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Result<Vec<SnapshotFile>, StoreError>> {
        Box::pin(async move {
            let (latest, drift) = tokio::join!(read_latest(&self.bucket), read_drift(&self.bucket));
            let body = match (latest, drift) {
                (Ok(latest), Ok(drift)) => {
                    let ages: BTreeMap<SiteName, i64> =
                        latest.iter().map(|(s, p)| (*s, (ctx.now - p.exported_at).whole_minutes())).collect();
                    json!({
                        "generated_at": rfc3339(ctx.now),
                        "why": "the latest exports of the workspaces (taken on the schedule and on demand, never on a failover's path)",
                        "latest": latest,
                        "age_minutes": ages,
                        "drift": drift.as_ref().map(|d| d.sentence.clone()),
                        "drift_generated_at": drift.as_ref().map(|d| rfc3339(d.generated_at)),
                    })
                }
                (a, b) => {
                    let error = a.err().or(b.err()).map(|e| e.to_string());
                    json!({ "generated_at": rfc3339(ctx.now), "unavailable": error })
                }
            };
            Ok(vec![SnapshotFile {
                name: LATEST_EXPORTS_FILE.into(),
                body: serde_json::to_vec_pretty(&body).unwrap_or_default(),
            }])
        })
    }
}

/// Per site: the workspace, whether it answered, and each kind's status and count (for command answers).
pub fn export_summary(outcome: &ExportOutcome) -> ExportsSummary {
    let mut sites = ExportsSummary::new();
    for site in SiteName::ALL {
        let files: Vec<&SnapshotFile> =
            outcome.files.iter().filter(|f| f.name.starts_with(&format!("databricks/{site}/"))).collect();
        if files.is_empty() {
            continue;
        }
        let mut kinds = BTreeMap::new();
        for f in files {
            let v: Value = serde_json::from_slice(&f.body).unwrap_or(Value::Null);
            let text = |field: &str| v.get(field).and_then(Value::as_str).map(str::to_owned);
            let k = KindExportSummary {
                status: v["status"].as_str().map(str::to_owned),
                count: v["count"].as_u64(),
                error: text("error"),
                reason: text("reason"),
            };
            kinds.insert(v["kind"].as_str().unwrap_or_default().to_owned(), k);
        }
        let pointer = outcome.latest.get(&site).filter(|p| p.snapshot_folder == outcome.drift.snapshot_folder);
        sites.insert(
            site,
            SiteExportSummary {
                exported: pointer.is_some(),
                requests: pointer.map(|p| p.requests),
                elapsed_ms: pointer.map(|p| p.elapsed_ms),
                kinds,
                parts: None,
            },
        );
    }
    sites
}

/// The workspaces' exports in a snapshot's answer (`workspaces`), by site.
pub type ExportsSummary = BTreeMap<SiteName, SiteExportSummary>;

/// One site's export in a snapshot's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteExportSummary {
    /// Whether this snapshot holds the site's latest export (the site answered).
    pub exported: bool,
    /// The calls the export made.
    pub requests: Option<u32>,
    /// How long it took.
    pub elapsed_ms: Option<u64>,
    /// Each kind's outcome, by kind.
    pub kinds: BTreeMap<String, KindExportSummary>,
    /// A carried export's parts by stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<progress::PartCounts>,
}

/// One kind's export in a snapshot's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindExportSummary {
    /// `complete`, `partial` or `skipped`.
    pub status: Option<String>,
    /// The objects exported.
    pub count: Option<u64>,
    /// What stopped a partial export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a kind was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `status` shows of the workspaces ([`status_view`]), or why the latest exports could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkspacesStatus {
    /// The latest exports could not be read.
    Failed {
        /// The failure, in a sentence.
        error: String,
    },
    /// The drift line and each site's exports.
    Read {
        /// The drift between the sites in a sentence (or why there is none yet), or why it could not be read.
        drift: WorkspaceDrift,
        /// Each site's latest finished export, by site name.
        latest_exports: BTreeMap<String, LatestExportView>,
        /// Each site's running or latest export, even one that never finished, by site name.
        exports: BTreeMap<String, progress::ExportView>,
    },
}

/// The drift line of [`WorkspacesStatus`]: a sentence, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkspaceDrift {
    /// The drift (or why there is none yet), in a sentence.
    Sentence(String),
    /// The drift report could not be read.
    Failed {
        /// The failure, in a sentence.
        error: String,
    },
}

/// A site's latest finished export, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestExportView {
    /// When it was exported (RFC 3339).
    pub exported_at: String,
    /// How old it is, in minutes.
    pub age_minutes: i64,
    /// The snapshot that holds it.
    pub snapshot_folder: String,
    /// The kinds not complete, with their status.
    pub incomplete_kinds: BTreeMap<String, String>,
    /// Notebooks outside Repos (not exported as source).
    pub notebooks_outside_repos: usize,
}

/// What `status` shows of the workspaces: the drift line, and each site's latest export (when, how old, which
/// kinds were not complete). Read errors are shown, not raised: status is what on-call runs when things break.
pub async fn status_view<B: ControlBucket>(bucket: &B, now: OffsetDateTime) -> WorkspacesStatus {
    let (latest, drift, running) = tokio::join!(read_latest(bucket), read_drift(bucket), progress::read_all(bucket));
    // The running or latest export of each site, even one that never finished (its pointer is then older).
    let exports = running.iter().map(|(site, r)| (site.as_str().to_owned(), r.view(now))).collect();
    let latest = match latest {
        Ok(l) => l,
        Err(e) => return WorkspacesStatus::Failed { error: e.to_string() },
    };
    let latest_exports = latest
        .iter()
        .map(|(site, p)| {
            let incomplete_kinds = p
                .kinds
                .iter()
                .filter(|(_, k)| !k.status.is_complete())
                .map(|(kind, k)| (kind.as_str().to_owned(), k.status.as_str().to_owned()))
                .collect();
            let view = LatestExportView {
                exported_at: rfc3339(p.exported_at),
                age_minutes: (now - p.exported_at).whole_minutes(),
                snapshot_folder: p.snapshot_folder.clone(),
                incomplete_kinds,
                notebooks_outside_repos: p.notebooks_outside_repos,
            };
            (site.as_str().to_owned(), view)
        })
        .collect();
    let drift = match drift {
        Ok(Some(d)) => WorkspaceDrift::Sentence(d.sentence),
        Ok(None) => {
            WorkspaceDrift::Sentence("no workspace export yet: run the `snapshot` command (it runs on a schedule)".into())
        }
        Err(e) => WorkspaceDrift::Failed { error: e.to_string() },
    };
    WorkspacesStatus::Read { drift, latest_exports, exports }
}

/// What an execution's record keeps of the workspaces, from its snapshot's [`LATEST_EXPORTS_FILE`]: the drift
/// line and each site's export age.
pub fn from_snapshot(files: &[SnapshotFile]) -> Option<Value> {
    let file = files.iter().find(|f| f.name == LATEST_EXPORTS_FILE)?;
    let v: Value = serde_json::from_slice(&file.body).ok()?;
    Some(json!({
        "drift": v.get("drift").cloned().unwrap_or(Value::Null),
        "age_minutes": v.get("age_minutes").cloned().unwrap_or(Value::Null),
        "unavailable": v.get("unavailable").cloned().unwrap_or(Value::Null),
    }))
}

/// [`from_snapshot`]'s value in one line, for reports.
pub fn one_line(v: &Value) -> String {
    if let Some(e) = v.get("unavailable").and_then(Value::as_str) {
        return format!("the latest exports could not be read ({e})");
    }
    let drift = v.get("drift").and_then(Value::as_str).unwrap_or("no workspace export yet");
    let ages: Vec<String> = v
        .get("age_minutes")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(site, age)| format!("{site} exported {age} min before")).collect())
        .unwrap_or_default();
    if ages.is_empty() { drift.to_owned() } else { format!("{drift} ({})", ages.join(", ")) }
}
