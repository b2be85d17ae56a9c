//! Merging a carried export, kind by kind, both sites, into the files, drift, manifest and pointers one
//! invocation writes ([`super`]).

use super::{RunState, Stage, corrupt};
use crate::export::KindExport;
use crate::rules::drift::{self, Drift};
use crate::rules::{ExportStatus, ObjectKind};
use crate::{DriftReport, ExportsSummary, KindExportSummary, KindSummary, LatestExport, SiteExportSummary};
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, WriteCondition};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// One kind of one site, concatenated from the parts that hold it (tables in `full_name` order).
pub(super) async fn merged_kind<B: ControlBucket>(
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
pub(super) async fn merge<B: ControlBucket>(bucket: &B, state: &RunState, now: OffsetDateTime) -> Result<String, StoreError> {
    let previous = crate::read_latest(bucket).await?;
    let summaries: BTreeMap<SiteName, BTreeMap<ObjectKind, KindSummary>> =
        state.sites.keys().map(|s| (*s, state.kinds(*s))).collect();
    let answered: BTreeSet<SiteName> = summaries
        .iter()
        .filter(|(_, kinds)| kinds.values().any(|k| !matches!(k.status, ExportStatus::Skipped { .. })))
        .map(|(s, _)| *s)
        .collect();
    let base = Baseline { aged: aged_clusters(bucket, state, &previous, &answered).await?, previous, answered };
    let merged = merge_kinds(bucket, state, &summaries, &base).await?;
    let Baseline { previous, answered, .. } = base;
    let elapsed_ms = u64::try_from((now - state.started_at).whole_milliseconds()).unwrap_or(0);
    let mut latest = previous.clone();
    for site in &answered {
        let (notebooks, files) = merged.tree_counts.get(site).copied().unwrap_or_default();
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
    let drift_body =
        serde_json::to_vec_pretty(&drift_report(state, merged.between, merged.over_time, &latest)).unwrap_or_default();
    let mut all: Vec<Value> = state.files.clone();
    all.extend(merged.entries.into_values().flatten());
    all.push(dr_ports::snapshot::manifest_entry(&state.folder, "databricks/drift.json", &drift_body));
    let drift_key = format!("{}/databricks/drift.json", state.folder);
    bucket.put(&drift_key, drift_body.clone(), "application/json", WriteCondition::Overwrite).await?;
    let manifest_key = format!("{}/manifest.json", state.folder);
    let manifest = dr_ports::snapshot::manifest_body(&state.run_id, state.started_at, &all);
    bucket.put(&manifest_key, manifest, "application/json", WriteCondition::Overwrite).await?;
    let mut pointers = Vec::new();
    for (site, pointer) in &latest {
        if previous.get(site) != Some(pointer) {
            pointers.push((domain::layout::databricks_latest(*site), serde_json::to_vec_pretty(pointer).unwrap_or_default()));
        }
    }
    pointers.push((domain::layout::DATABRICKS_DRIFT.to_owned(), drift_body));
    crate::write_pointers(bucket, pointers).await?;
    Ok(manifest_key)
}

/// What a merge compares against: the latest exports before this run, the sites that answered this run, and
/// the clusters of each that may have aged out of `clusters/list` since.
struct Baseline {
    previous: BTreeMap<SiteName, LatestExport>,
    answered: BTreeSet<SiteName>,
    aged: BTreeMap<SiteName, BTreeSet<String>>,
}

/// What merging every kind gives: each site's manifest entries, the drift between the sites and over time, and
/// each site's counts of notebooks and files outside Repos.
struct Merged {
    entries: BTreeMap<SiteName, Vec<Value>>,
    between: Vec<drift::KindDrift>,
    over_time: BTreeMap<SiteName, Vec<drift::KindDrift>>,
    tree_counts: BTreeMap<SiteName, (usize, usize)>,
}

/// The clusters of each answering site's previous export that may have aged out of the listing since: not
/// reported removed.
async fn aged_clusters<B: ControlBucket>(
    bucket: &B,
    state: &RunState,
    previous: &BTreeMap<SiteName, LatestExport>,
    answered: &BTreeSet<SiteName>,
) -> Result<BTreeMap<SiteName, BTreeSet<String>>, StoreError> {
    let now_ms = i64::try_from(state.started_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut aged = BTreeMap::new();
    for site in answered {
        if let Some(before) = previous.get(site)
            && let Some(clusters) = crate::read_kind(bucket, before, ObjectKind::Clusters).await?
        {
            aged.insert(*site, drift::aged_out_clusters(&clusters.objects, now_ms));
        }
    }
    Ok(aged)
}

/// Writes each kind's file of each site and compares it with the other site (this run's, or the latest export
/// of a site that did not answer) and with the site's previous export.
async fn merge_kinds<B: ControlBucket>(
    bucket: &B,
    state: &RunState,
    summaries: &BTreeMap<SiteName, BTreeMap<ObjectKind, KindSummary>>,
    base: &Baseline,
) -> Result<Merged, StoreError> {
    let mut m =
        Merged { entries: BTreeMap::new(), between: Vec::new(), over_time: BTreeMap::new(), tree_counts: BTreeMap::new() };
    for kind in ObjectKind::ALL {
        let mut sides: BTreeMap<SiteName, KindExport> = BTreeMap::new();
        for (site, url) in &state.sites {
            let k = merged_kind(bucket, state, *site, kind, summaries.get(site).and_then(|m| m.get(&kind))).await?;
            let name = crate::kind_file(*site, kind);
            let body = crate::kind_body(*site, url, &k, state.started_at);
            m.entries.entry(*site).or_default().push(dr_ports::snapshot::manifest_entry(&state.folder, &name, &body));
            bucket.put(&format!("{}/{name}", state.folder), body, "application/json", WriteCondition::Overwrite).await?;
            if !base.answered.contains(site) {
                continue;
            }
            if kind == ObjectKind::WorkspaceObjects {
                let count =
                    |t: &str| k.objects.iter().filter(|o| o.get("object_type").and_then(Value::as_str) == Some(t)).count();
                m.tree_counts.insert(*site, (count("NOTEBOOK"), count("FILE")));
            }
            if let Some(before) = base.previous.get(site)
                && let Some(old) = crate::read_kind(bucket, before, kind).await?
                && let Some(d) = crate::compare_kind(&old, &k, base.aged.get(site).unwrap_or(&BTreeSet::new()))
            {
                m.over_time.entry(*site).or_default().push(d);
            }
            sides.insert(*site, k);
        }
        for site in SiteName::ALL {
            if !sides.contains_key(&site)
                && let Some(p) = base.previous.get(&site)
                && let Some(k) = crate::read_kind(bucket, p, kind).await?
            {
                sides.insert(site, k);
            }
        }
        if let (Some(p), Some(s)) = (sides.get(&SiteName::Primary), sides.get(&SiteName::Secondary))
            && let Some(d) = crate::compare_kind(p, s, &BTreeSet::new())
        {
            m.between.push(d);
        }
    }
    Ok(m)
}

/// The drift document of the run: between the sites (when both have an export) and each site over time.
fn drift_report(
    state: &RunState,
    between: Vec<drift::KindDrift>,
    over_time: BTreeMap<SiteName, Vec<drift::KindDrift>>,
    latest: &BTreeMap<SiteName, LatestExport>,
) -> DriftReport {
    let has_both = SiteName::ALL.iter().all(|s| latest.contains_key(s));
    let between_sites = has_both.then(|| Drift { base: "primary".into(), other: "secondary".into(), kinds: between });
    let over_time: BTreeMap<SiteName, Drift> = over_time
        .into_iter()
        .map(|(s, kinds)| (s, Drift { base: "previous snapshot".into(), other: "this snapshot".into(), kinds }))
        .collect();
    DriftReport {
        generated_at: state.started_at,
        snapshot_folder: state.folder.clone(),
        sentence: crate::sentence(between_sites.as_ref(), &over_time, latest),
        between_sites,
        over_time,
    }
}

/// Per site, as the one-invocation snapshot answers it (`workspace::export_summary`): whether it was exported,
/// its calls, its time, each kind's status and count.
pub fn summary(state: &RunState, now: OffsetDateTime) -> ExportsSummary {
    let mut sites = ExportsSummary::new();
    for site in state.sites.keys() {
        let kinds: BTreeMap<String, KindExportSummary> = state
            .kinds(*site)
            .into_iter()
            .map(|(kind, k)| {
                let (error, reason) = match &k.status {
                    ExportStatus::Partial { error } => (Some(error.clone()), None),
                    ExportStatus::Skipped { reason } => (None, Some(reason.clone())),
                    ExportStatus::Complete => (None, None),
                };
                let summary = KindExportSummary {
                    status: Some(k.status.as_str().to_owned()),
                    count: u64::try_from(k.count).ok(),
                    error,
                    reason,
                };
                (kind.as_str().to_owned(), summary)
            })
            .collect();
        let exported = state.merge == Stage::Done && kinds.values().any(|k| k.status.as_deref() != Some("skipped"));
        sites.insert(
            *site,
            SiteExportSummary {
                exported,
                requests: Some(state.requests(*site)),
                elapsed_ms: Some(u64::try_from((now - state.started_at).whole_milliseconds()).unwrap_or(0)),
                kinds,
                parts: Some(state.counts(*site)),
            },
        );
    }
    sites
}
