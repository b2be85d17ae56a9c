//! The live DR matrix: every row of the seed document's architecture matrix (`seed-matrix.md`, copied
//! verbatim from "Databricks Architecture Matrix (Serverless on AWS) with DR Best Practices"), each with a
//! status computed from what the stack observed, and the evidence for it in words.
//!
//! The engine fills [`MatrixEvidence`]: the latest export of each site, the latest drift between the sites
//! (base `primary`, other `secondary`), the replication state of the data plane and whether a secondary
//! site is configured. [`evaluate`] maps each seed row to its evidence by the rule below.
//!
//! | rows | evidence | protected | at risk | unknown / not applicable |
//! |---|---|---|---|---|
//! | SQL Query Planner, Notebook Outputs, Temporary Spark Shuffle Data | none needed | | | not applicable: managed by Databricks, regenerated from data, recomputed |
//! | Users & Groups, Authentication / SSO, Data Lineage, Audit Logs, Feature Store Metadata, Lakehouse Monitoring Metadata, Job Execution Logs | none this stack collects | | | unknown: `outside what this stack can see: <the practice>` |
//! | Job Scheduler, Workflows (jobs); Cluster Management (clusters, cluster policies, instance pools); SQL Warehouse Management (SQL warehouses); Unity Catalog (catalogs, schemas, grants, external locations, storage credentials); Metastore (metastore, tables); Model Registry Metadata (registered models, serving endpoints); Vector Search Metadata (vector search endpoints and indexes); Repos (repos); Permissions / RBAC (permissions, grants, secret scopes) | the exports of those kinds and the primary/secondary drift | both sites' exports of every kind complete, at most `max_export_age` old, and the secondary missing nothing the primary has (objects that differ are reported, not at risk) | no secondary configured; an export partial or skipped in one site; an export stale; the secondary missing objects (with the count) | unknown: a site not exported yet, no drift computed yet, or the kinds skipped in both sites (typically a feature not enabled: nothing to compare) |
//! | Notebook Source Code | as above for workspace objects and repos, plus the primary's notebooks outside Repos | as above and no notebook outside Repos | as above, or any notebook outside Repos (not in Git) | as above |
//! | Workspace Files | as above, with the primary's files outside Repos | as above and no file outside Repos | as above, or any file outside Repos | as above |
//! | Workspace UI, Workspace APIs, Serverless Spark Compute | a secondary is configured and its latest export answered | configured, some kind exported completely, at most `max_export_age` ago | not configured; its last export answered nothing; stale | unknown: configured, not exported yet |
//! | SQL Warehouse Compute | as above, plus SQL warehouses exported from the secondary | as above and the secondary has a warehouse (when the primary has one) | as above, or the secondary export of warehouses incomplete, or no warehouse there while the primary has some | not applicable: no warehouse in either site |
//! | Delta Table Data, Managed Tables, Delta Transaction Logs | replication evidence, `delta` locations; the Delta RPO assessment when it exists | `delta` locations configured, no open replication incident, no table beyond its RPO | an open incident; a table beyond its RPO; no location at all | unknown: no data-plane document, or no `delta` location in it |
//! | Streaming Checkpoints | replication evidence, `stream-checkpoint` locations | as above | as above | unknown: no data-plane document, or no checkpoint location |
//! | External Tables, DBFS Root, Unity Catalog Managed Storage, Unity Catalog Volumes, MLflow Model Artifacts, Feature Store Data, ML Training Data, Vector Search Index Data | replication evidence, every location | locations configured, no open incident | an open incident; no location at all | unknown: no data-plane document |
//!
//! A seed row without a rule would be `unknown` ("no rule for this component"); a test holds that none is.

mod workspace_rows;

use super::drift::Drift;
use super::{ExportStatus, ObjectKind};
use domain::site::SiteName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::{Duration, OffsetDateTime};
use workspace_rows::{incomplete, kinds_rule, outside_repos};

/// The seed document's two tables, verbatim (control plane, data plane).
pub const SEED: &str = include_str!("seed-matrix.md");

/// The plane a component lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Databricks' control plane.
    Control,
    /// The customer's AWS account.
    Data,
}

impl Plane {
    /// `control plane` / `data plane`.
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Control => "control plane",
            Plane::Data => "data plane",
        }
    }
}

/// One row of the seed matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRow {
    /// `Job Scheduler`.
    pub component: String,
    /// `Schedules workflows`.
    pub purpose: String,
    /// `Databricks orchestration service`.
    pub where_it_runs: String,
    /// Control or data plane.
    pub plane: Plane,
    /// `Define jobs using Infrastructure-as-Code`.
    pub practice: String,
}

/// The rows of [`SEED`], in document order. Lines that are not five-cell rows with a known plane (the
/// header, the separator, headings) are skipped; a test holds the row count.
pub fn seed() -> Vec<SeedRow> {
    SEED.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
            let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
            let [component, purpose, where_it_runs, plane, practice] = cells[..] else {
                return None;
            };
            let plane = match plane {
                "Control Plane" => Plane::Control,
                "Data Plane" => Plane::Data,
                _ => return None,
            };
            Some(SeedRow {
                component: component.to_owned(),
                purpose: purpose.to_owned(),
                where_it_runs: where_it_runs.to_owned(),
                plane,
                practice: practice.to_owned(),
            })
        })
        .collect()
}

/// How well a component is protected, as far as the stack can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// The evidence says a failover would find it in the secondary.
    Protected,
    /// The evidence says it would not, or is too old or partial to say it would.
    AtRisk,
    /// Nothing to protect (managed by Databricks, or recomputed).
    NotApplicable,
    /// No evidence: outside what the stack sees, or not observed yet.
    Unknown,
}

impl Protection {
    /// `protected`, `at risk`, `not applicable`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Protected => "protected",
            Protection::AtRisk => "at risk",
            Protection::NotApplicable => "not applicable",
            Protection::Unknown => "unknown",
        }
    }
}

/// One evaluated row of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRow {
    /// The seed row's component.
    pub component: String,
    /// Its plane.
    pub plane: Plane,
    /// The seed row's DR best practice.
    pub practice: String,
    /// The status the evidence gives.
    pub status: Protection,
    /// The evidence, in words: `42 jobs (secondary 40), exported 10 min ago; secondary missing 2 jobs`.
    pub evidence: String,
}

/// The latest export of one site, as far as the matrix needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteExport {
    /// When the export ended.
    pub exported_at: OffsetDateTime,
    /// How each kind's export ended and how many objects it read; a kind absent was not attempted.
    pub kinds: BTreeMap<ObjectKind, (ExportStatus, usize)>,
    /// Notebooks among the workspace objects (which are all outside /Repos).
    pub notebooks_outside_repos: usize,
    /// Files among the workspace objects.
    pub files_outside_repos: usize,
}

/// How a replicated location is judged (the data-plane document's kinds, with checkpoints told apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicatedKind {
    /// A Delta table.
    Delta,
    /// A plain prefix (MLflow artifacts, volumes, Unity Catalog storage).
    Prefix,
    /// A streaming checkpoint directory.
    StreamCheckpoint,
}

/// One replicated location of the data-plane document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedLocation {
    /// Its operator-chosen name, e.g. `sales.orders`.
    pub name: String,
    /// How it is judged.
    pub kind: ReplicatedKind,
}

/// The state of S3 replication of the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationEvidence {
    /// Replication incidents open now.
    pub open_incidents: usize,
    /// Objects whose replication failed and is not yet resolved, across open incidents.
    pub failed_objects: u64,
    /// The data-plane document's locations.
    pub locations: Vec<ReplicatedLocation>,
}

/// The Delta RPO assessment (hook: not produced yet, so always `None` in [`MatrixEvidence::delta`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaRpo {
    /// Delta tables assessed.
    pub assessed: usize,
    /// Names of the tables whose replica is behind by more than the RPO.
    pub beyond_rpo: Vec<String>,
}

/// Everything [`evaluate`] looks at; the engine fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixEvidence {
    /// The time of evaluation (export ages are measured from it).
    pub now: OffsetDateTime,
    /// The latest export of each site.
    pub exports: BTreeMap<SiteName, SiteExport>,
    /// The latest drift, base `primary`, other `secondary`; `None` when not computed.
    pub site_drift: Option<Drift>,
    /// Replication of the data plane; `None` when there is no data-plane document.
    pub replication: Option<ReplicationEvidence>,
    /// The Delta RPO assessment; `None` until it exists.
    pub delta: Option<DeltaRpo>,
    /// Whether a secondary site document exists.
    pub secondary_configured: bool,
    /// How old an export may be and still count as evidence.
    pub max_export_age: Duration,
    /// The latest `sync` apply to the standby; `None` when none ran.
    pub last_sync: Option<SyncEvidence>,
}

/// What the latest `sync` apply did (`databricks/sync-latest.json`): the kinds it brought in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEvidence {
    /// When it last saved its journal.
    pub at: OffsetDateTime,
    /// Its plan's id.
    pub plan_id: String,
    /// How it ended (`complete`, `incomplete: ...`, `stood down: ...`).
    pub outcome: String,
    /// The kinds every change of which was made, found, or deliberately skipped (none failed or left to do).
    pub kinds: std::collections::BTreeSet<ObjectKind>,
}

/// The evidence a row of synced kinds adds: "synced at ..." when the latest apply covered every kind of the row,
/// "<kinds> synced at ..." when it covered some of them. The row's status still follows the drift.
fn synced_note(ev: &MatrixEvidence, kinds: &[ObjectKind]) -> Option<String> {
    let sync = ev.last_sync.as_ref()?;
    let covered: Vec<&str> = kinds.iter().filter(|k| sync.kinds.contains(k)).map(|k| k.as_str()).collect();
    if covered.is_empty() {
        return None;
    }
    let at = sync.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let which = if covered.len() == kinds.len() { String::new() } else { format!("{} ", covered.join(", ")) };
    Some(format!("{which}synced at {at} ({}; sync {}: {})", ago(ev.now - sync.at), sync.plan_id, sync.outcome))
}

/// Which replicated locations back a data-plane row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Locations {
    All,
    Delta,
    Checkpoints,
}

/// How a seed row is evaluated (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    NotApplicable(&'static str),
    OutsideView,
    Kinds(&'static [ObjectKind]),
    Notebooks,
    Files,
    SecondaryWorkspace,
    WarehouseCompute,
    Replication(Locations),
}

fn rule(component: &str) -> Option<Rule> {
    use ObjectKind as K;
    Some(match component {
        "SQL Query Planner" => Rule::NotApplicable("managed by Databricks"),
        "Notebook Outputs" => Rule::NotApplicable("regenerated from data"),
        "Temporary Spark Shuffle Data" => Rule::NotApplicable("recomputed by Spark"),
        "Users & Groups"
        | "Authentication / SSO"
        | "Data Lineage"
        | "Audit Logs"
        | "Feature Store Metadata"
        | "Lakehouse Monitoring Metadata"
        | "Job Execution Logs" => Rule::OutsideView,
        "Job Scheduler" | "Workflows" => Rule::Kinds(&[K::Jobs]),
        "Cluster Management" => Rule::Kinds(&[K::Clusters, K::ClusterPolicies, K::InstancePools]),
        "SQL Warehouse Management" => Rule::Kinds(&[K::SqlWarehouses]),
        "Unity Catalog" => Rule::Kinds(&[K::Catalogs, K::Schemas, K::Grants, K::ExternalLocations, K::StorageCredentials]),
        "Metastore" => Rule::Kinds(&[K::Metastore, K::Tables]),
        "Model Registry Metadata" => Rule::Kinds(&[K::RegisteredModels, K::ServingEndpoints]),
        "Vector Search Metadata" => Rule::Kinds(&[K::VectorSearchEndpoints, K::VectorSearchIndexes]),
        "Repos (Git Integration)" => Rule::Kinds(&[K::Repos]),
        "Permissions / RBAC" => Rule::Kinds(&[K::Permissions, K::Grants, K::SecretScopes]),
        "Notebook Source Code" => Rule::Notebooks,
        "Workspace Files" => Rule::Files,
        "Workspace UI" | "Workspace APIs" | "Serverless Spark Compute" => Rule::SecondaryWorkspace,
        "SQL Warehouse Compute" => Rule::WarehouseCompute,
        "Delta Table Data" | "Managed Tables" | "Delta Transaction Logs" => Rule::Replication(Locations::Delta),
        "Streaming Checkpoints" => Rule::Replication(Locations::Checkpoints),
        "External Tables"
        | "DBFS Root"
        | "Unity Catalog Managed Storage"
        | "Unity Catalog Volumes"
        | "MLflow Model Artifacts"
        | "Feature Store Data"
        | "ML Training Data"
        | "Vector Search Index Data" => Rule::Replication(Locations::All),
        _ => return None,
    })
}

/// One row per seed row, in document order, each with its status and evidence.
pub fn evaluate(evidence: &MatrixEvidence) -> Vec<MatrixRow> {
    seed()
        .into_iter()
        .map(|row| {
            let (status, text) = match rule(&row.component) {
                Some(Rule::NotApplicable(why)) => (Protection::NotApplicable, format!("{why}: not applicable")),
                Some(Rule::OutsideView) => {
                    (Protection::Unknown, format!("outside what this stack can see: {}", row.practice.to_lowercase()))
                }
                Some(Rule::Kinds(kinds)) => {
                    let (status, text) = kinds_rule(evidence, kinds);
                    match synced_note(evidence, kinds) {
                        Some(note) => (status, format!("{text}; {note}")),
                        None => (status, text),
                    }
                }
                Some(Rule::Notebooks) => outside_repos(evidence, |e| e.notebooks_outside_repos, "notebook", "not in Git"),
                Some(Rule::Files) => outside_repos(evidence, |e| e.files_outside_repos, "file", "store them in S3 or Git"),
                Some(Rule::SecondaryWorkspace) => secondary_workspace(evidence),
                Some(Rule::WarehouseCompute) => warehouse_compute(evidence),
                Some(Rule::Replication(which)) => replication(evidence, which),
                None => (Protection::Unknown, "no rule for this component".to_owned()),
            };
            MatrixRow { component: row.component, plane: row.plane, practice: row.practice, status, evidence: text }
        })
        .collect()
}

/// "just now", "10 min ago", "3 h ago", "2 d ago".
fn ago(age: Duration) -> String {
    let minutes = age.whole_minutes();
    if minutes < 1 {
        "just now".to_owned()
    } else if minutes < 120 {
        format!("{minutes} min ago")
    } else if minutes < 48 * 60 {
        format!("{} h ago", age.whole_hours())
    } else {
        format!("{} d ago", age.whole_days())
    }
}

/// "45 min", "3 h", "2 d".
fn span(d: Duration) -> String {
    ago(d).trim_end_matches(" ago").replace("just now", "0 min")
}

/// "a", "a and b", "a, b and c".
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Workspace UI / APIs / serverless compute: a secondary is configured and answers.
fn secondary_workspace(ev: &MatrixEvidence) -> (Protection, String) {
    if !ev.secondary_configured {
        return (Protection::AtRisk, "no secondary workspace configured".to_owned());
    }
    let Some(secondary) = ev.exports.get(&SiteName::Secondary) else {
        return (Protection::Unknown, "secondary workspace configured, not exported yet".to_owned());
    };
    let complete = secondary.kinds.values().filter(|(s, _)| s.is_complete()).count();
    let age = ev.now - secondary.exported_at;
    if complete == 0 {
        let why = secondary
            .kinds
            .values()
            .find_map(|(s, _)| match s {
                ExportStatus::Skipped { reason } => Some(reason.as_str()),
                ExportStatus::Partial { error } => Some(error.as_str()),
                ExportStatus::Complete => None,
            })
            .unwrap_or("nothing exported");
        return (Protection::AtRisk, format!("secondary workspace did not answer its export {} ({why})", ago(age)));
    }
    let text = format!(
        "secondary workspace configured and answering: exported {}, {complete} of {} types complete",
        ago(age),
        ObjectKind::ALL.len()
    );
    if age > ev.max_export_age {
        return (Protection::AtRisk, format!("{text}; stale (limit {})", span(ev.max_export_age)));
    }
    (Protection::Protected, text)
}

/// SQL Warehouse Compute: the secondary answers and has warehouses to run queries on.
fn warehouse_compute(ev: &MatrixEvidence) -> (Protection, String) {
    let (status, text) = secondary_workspace(ev);
    if status != Protection::Protected {
        return (status, text);
    }
    let Some(secondary) = ev.exports.get(&SiteName::Secondary) else {
        return (Protection::Unknown, text);
    };
    let primary = ev.exports.get(&SiteName::Primary).and_then(|p| p.kinds.get(&ObjectKind::SqlWarehouses)).map(|(_, n)| *n);
    let primary_text = primary.map_or("primary not exported".to_owned(), |n| format!("primary {n}"));
    match secondary.kinds.get(&ObjectKind::SqlWarehouses) {
        Some((ExportStatus::Complete, 0)) if primary == Some(0) => {
            (Protection::NotApplicable, "no SQL warehouse in either site: not applicable".to_owned())
        }
        Some((ExportStatus::Complete, 0)) => (Protection::AtRisk, format!("no SQL warehouse in the secondary ({primary_text})")),
        Some((ExportStatus::Complete, n)) => {
            (Protection::Protected, format!("secondary has {} ({primary_text})", ObjectKind::SqlWarehouses.count_phrase(*n)))
        }
        other => (Protection::AtRisk, incomplete(SiteName::Secondary, ObjectKind::SqlWarehouses, other).unwrap_or_default()),
    }
}

/// Data-plane rows: S3 replication, and for Delta rows the Delta RPO assessment.
fn replication(ev: &MatrixEvidence, which: Locations) -> (Protection, String) {
    let Some(r) = &ev.replication else {
        return (Protection::Unknown, "no data-plane document".to_owned());
    };
    if r.locations.is_empty() {
        return (Protection::AtRisk, "the data-plane document lists no replicated location".to_owned());
    }
    let (n, what) = match which {
        Locations::All => (r.locations.len(), "location"),
        Locations::Delta => (r.locations.iter().filter(|l| l.kind == ReplicatedKind::Delta).count(), "delta location"),
        Locations::Checkpoints => {
            (r.locations.iter().filter(|l| l.kind == ReplicatedKind::StreamCheckpoint).count(), "stream-checkpoint location")
        }
    };
    if n == 0 {
        return (Protection::Unknown, format!("no {what} in the data-plane document"));
    }
    let locations = format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if r.open_incidents > 0 {
        let incidents = if r.open_incidents == 1 { "incident" } else { "incidents" };
        return (
            Protection::AtRisk,
            format!("S3 replication: {locations}, {} open {incidents}, {} objects failed", r.open_incidents, r.failed_objects),
        );
    }
    let text = format!("S3 replication: {locations}, no open incident");
    if which != Locations::Delta {
        return (Protection::Protected, text);
    }
    match &ev.delta {
        None => (Protection::Protected, format!("{text}; Delta RPO not assessed yet")),
        Some(d) if d.beyond_rpo.is_empty() => {
            (Protection::Protected, format!("{text}; Delta RPO: {} tables assessed, all within RPO", d.assessed))
        }
        Some(d) => (
            Protection::AtRisk,
            format!("{text}; Delta RPO: {} of {} tables beyond RPO: {}", d.beyond_rpo.len(), d.assessed, d.beyond_rpo.join(", ")),
        ),
    }
}

/// A table cell: no pipe, no line break.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The matrix as Markdown: a heading, the [`summary`] line, then one table per plane with every row's
/// status as a word, its evidence and the seed's practice.
pub fn to_markdown(rows: &[MatrixRow], generated_at: OffsetDateTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Databricks DR matrix\n");
    let _ = writeln!(
        out,
        "Generated {} from the seed document \"Databricks Architecture Matrix (Serverless on AWS) with DR Best Practices\".\n",
        domain::primitives::rfc3339(generated_at)
    );
    let _ = writeln!(out, "{}", summary(rows));
    for plane in [Plane::Control, Plane::Data] {
        let _ = writeln!(out, "\n## {}{}\n", plane.as_str()[..1].to_uppercase(), &plane.as_str()[1..]);
        let _ = writeln!(out, "| Component | Status | Evidence | DR best practice |");
        let _ = writeln!(out, "|---|---|---|---|");
        for row in rows.iter().filter(|r| r.plane == plane) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&row.component),
                row.status.as_str(),
                cell(&row.evidence),
                cell(&row.practice)
            );
        }
    }
    out
}

/// One line for a chat message: `DR matrix: 20 protected, 9 at risk, 5 not applicable, 4 unknown; at risk:
/// Job Scheduler, Notebook Source Code`.
pub fn summary(rows: &[MatrixRow]) -> String {
    let count = |p: Protection| rows.iter().filter(|r| r.status == p).count();
    let mut line = format!(
        "DR matrix: {} protected, {} at risk, {} not applicable, {} unknown",
        count(Protection::Protected),
        count(Protection::AtRisk),
        count(Protection::NotApplicable),
        count(Protection::Unknown)
    );
    let at_risk: Vec<&str> = rows.iter().filter(|r| r.status == Protection::AtRisk).map(|r| r.component.as_str()).collect();
    if !at_risk.is_empty() {
        line.push_str("; at risk: ");
        line.push_str(&at_risk.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::drift::{Drift, KindDrift};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

    fn export(age_min: i64, n: usize) -> SiteExport {
        SiteExport {
            exported_at: NOW - Duration::minutes(age_min),
            kinds: ObjectKind::ALL.into_iter().map(|k| (k, (ExportStatus::Complete, n))).collect(),
            notebooks_outside_repos: 0,
            files_outside_repos: 0,
        }
    }

    fn no_drift() -> Drift {
        Drift {
            base: "primary".into(),
            other: "secondary".into(),
            kinds: ObjectKind::ALL
                .into_iter()
                .map(|kind| KindDrift {
                    kind,
                    added: vec![],
                    removed: vec![],
                    changed: vec![],
                    aged_out: vec![],
                    unidentified: 0,
                    exact: true,
                })
                .collect(),
        }
    }

    /// Everything fine: both sites fresh and complete, no drift, replication clean.
    fn healthy() -> MatrixEvidence {
        MatrixEvidence {
            now: NOW,
            exports: [(SiteName::Primary, export(10, 42)), (SiteName::Secondary, export(12, 42))].into(),
            site_drift: Some(no_drift()),
            replication: Some(ReplicationEvidence {
                open_incidents: 0,
                failed_objects: 0,
                locations: vec![
                    ReplicatedLocation { name: "sales.orders".into(), kind: ReplicatedKind::Delta },
                    ReplicatedLocation { name: "artifacts".into(), kind: ReplicatedKind::Prefix },
                    ReplicatedLocation { name: "orders-stream".into(), kind: ReplicatedKind::StreamCheckpoint },
                ],
            }),
            delta: None,
            secondary_configured: true,
            max_export_age: Duration::hours(2),
            last_sync: None,
        }
    }

    #[test]
    fn rows_of_synced_kinds_say_when_the_standby_was_synced() {
        let mut ev = healthy();
        let before = evaluate(&ev);
        assert!(!row(&before, "Workflows").evidence.contains("synced"), "{}", row(&before, "Workflows").evidence);
        ev.last_sync = Some(SyncEvidence {
            at: NOW - Duration::minutes(30),
            plan_id: "abc123".into(),
            outcome: "complete".into(),
            kinds: [ObjectKind::Jobs, ObjectKind::ClusterPolicies, ObjectKind::InstancePools, ObjectKind::SqlWarehouses].into(),
        });
        let rows = evaluate(&ev);
        let jobs = &row(&rows, "Workflows").evidence;
        assert!(jobs.contains("synced at") && jobs.contains("sync abc123: complete") && jobs.contains("30 min ago"), "{jobs}");
        let clusters = &row(&rows, "Cluster Management").evidence;
        assert!(clusters.contains("cluster-policies, instance-pools synced at"), "clusters are not synced: {clusters}");
        assert!(!row(&rows, "Unity Catalog").evidence.contains("synced"), "not a synced kind");
        assert_eq!(row(&rows, "Workflows").status, row(&before, "Workflows").status, "the status still follows the drift");
    }

    fn row<'a>(rows: &'a [MatrixRow], component: &str) -> &'a MatrixRow {
        rows.iter().find(|r| r.component == component).unwrap_or_else(|| panic!("no row {component}"))
    }

    #[test]
    fn the_seed_has_38_rows_22_control_16_data_each_with_a_rule() {
        let rows = seed();
        assert_eq!(rows.len(), 38);
        assert_eq!(rows.iter().filter(|r| r.plane == Plane::Control).count(), 22);
        assert_eq!(rows.iter().filter(|r| r.plane == Plane::Data).count(), 16);
        assert_eq!(rows[0].component, "Workspace UI");
        assert_eq!(rows[0].purpose, "User interface for notebooks and jobs");
        assert_eq!(rows[0].where_it_runs, "Databricks SaaS");
        assert_eq!(rows[0].practice, "Create secondary workspace in another region");
        assert_eq!(rows[37].component, "Delta Transaction Logs");
        for r in &rows {
            assert!(rule(&r.component).is_some(), "no rule for {}", r.component);
        }
    }

    #[test]
    fn every_seed_row_gets_a_status_and_the_healthy_case_is_protected() {
        let rows = evaluate(&healthy());
        assert_eq!(rows.len(), 38);
        for r in &rows {
            assert!(!r.evidence.is_empty(), "{}", r.component);
            assert_ne!(r.status, Protection::AtRisk, "{}: {}", r.component, r.evidence);
        }
        assert_eq!(summary(&rows), "DR matrix: 28 protected, 0 at risk, 3 not applicable, 7 unknown");
        let jobs = row(&rows, "Job Scheduler");
        assert_eq!(jobs.status, Protection::Protected);
        assert_eq!(jobs.evidence, "42 jobs (secondary 42), exported 12 min ago; secondary misses nothing");
        assert_eq!(row(&rows, "SQL Query Planner").evidence, "managed by Databricks: not applicable");
        assert_eq!(row(&rows, "SQL Query Planner").status, Protection::NotApplicable);
        assert_eq!(row(&rows, "Audit Logs").status, Protection::Unknown);
        assert_eq!(row(&rows, "Audit Logs").evidence, "outside what this stack can see: send logs to centralized siem storage");
        assert_eq!(
            row(&rows, "Delta Table Data").evidence,
            "S3 replication: 1 delta location, no open incident; Delta RPO not assessed yet"
        );
        assert_eq!(row(&rows, "MLflow Model Artifacts").evidence, "S3 replication: 3 locations, no open incident");
        assert_eq!(row(&rows, "Streaming Checkpoints").status, Protection::Protected);
        assert_eq!(row(&rows, "Workspace UI").status, Protection::Protected);
        assert_eq!(row(&rows, "SQL Warehouse Compute").evidence, "secondary has 42 SQL warehouses (primary 42)");
    }

    #[test]
    fn missing_objects_stale_and_partial_exports_are_at_risk() {
        let mut ev = healthy();
        if let Some(d) = &mut ev.site_drift {
            d.kinds[0].removed = vec!["a".into(), "b".into()];
            d.kinds[0].changed = vec![crate::rules::drift::Changed { identity: "c".into(), fields: vec![] }];
        }
        ev.exports.entry(SiteName::Primary).and_modify(|p| p.notebooks_outside_repos = 17);
        ev.exports.entry(SiteName::Secondary).and_modify(|s| {
            s.kinds.insert(ObjectKind::Tables, (ExportStatus::Partial { error: "deadline".into() }, 10));
        });
        let rows = evaluate(&ev);
        let jobs = row(&rows, "Job Scheduler");
        assert_eq!(jobs.status, Protection::AtRisk);
        assert_eq!(jobs.evidence, "42 jobs (secondary 42), exported 12 min ago; secondary missing 2 jobs; 1 job differs");
        let nb = row(&rows, "Notebook Source Code");
        assert_eq!(nb.status, Protection::AtRisk);
        assert!(nb.evidence.starts_with("17 notebooks outside Repos: not in Git; "), "{}", nb.evidence);
        let meta = row(&rows, "Metastore");
        assert_eq!(meta.status, Protection::AtRisk);
        assert!(meta.evidence.contains("secondary tables export partial after 10 (deadline)"), "{}", meta.evidence);
        assert!(summary(&rows).starts_with("DR matrix: 24 protected, 4 at risk, 3 not applicable, 7 unknown; at risk: Notebook Source Code, Job Scheduler, Workflows, Metastore"));

        let mut stale = healthy();
        stale.now = NOW + Duration::hours(3);
        let rows = evaluate(&stale);
        assert_eq!(row(&rows, "Cluster Management").status, Protection::AtRisk);
        assert!(row(&rows, "Cluster Management").evidence.contains("primary export stale: 3 h old (limit 2 h)"));
        assert_eq!(row(&rows, "Workspace APIs").status, Protection::AtRisk);
    }

    #[test]
    fn no_secondary_no_export_no_data_plane() {
        let mut ev = healthy();
        ev.secondary_configured = false;
        let rows = evaluate(&ev);
        assert_eq!(row(&rows, "Workspace UI").status, Protection::AtRisk);
        assert_eq!(row(&rows, "Unity Catalog").evidence, "no secondary workspace configured");

        let mut ev = healthy();
        ev.exports.clear();
        ev.site_drift = None;
        ev.replication = None;
        let rows = evaluate(&ev);
        assert_eq!(row(&rows, "Job Scheduler").status, Protection::Unknown);
        assert_eq!(row(&rows, "Job Scheduler").evidence, "no export of primary or secondary yet");
        assert_eq!(row(&rows, "Workspace UI").status, Protection::Unknown);
        assert_eq!(row(&rows, "DBFS Root").evidence, "no data-plane document");
        for r in &rows {
            assert_ne!(r.status, Protection::Protected, "{}", r.component);
            assert_ne!(r.status, Protection::AtRisk, "{}", r.component);
        }
    }

    #[test]
    fn skipped_in_both_sites_is_unknown_in_one_at_risk() {
        let mut ev = healthy();
        for site in SiteName::ALL {
            ev.exports.entry(site).and_modify(|e| {
                for k in [ObjectKind::VectorSearchEndpoints, ObjectKind::VectorSearchIndexes] {
                    e.kinds.insert(k, (ExportStatus::Skipped { reason: "not enabled (404)".into() }, 0));
                }
            });
        }
        let rows = evaluate(&ev);
        assert_eq!(row(&rows, "Vector Search Metadata").status, Protection::Unknown);
        ev.exports.entry(SiteName::Primary).and_modify(|e| {
            e.kinds.insert(ObjectKind::VectorSearchEndpoints, (ExportStatus::Complete, 2));
        });
        let rows = evaluate(&ev);
        let vs = row(&rows, "Vector Search Metadata");
        assert_eq!(vs.status, Protection::AtRisk);
        assert!(vs.evidence.contains("secondary vector-search-endpoints not exported (not enabled (404))"), "{}", vs.evidence);
    }

    #[test]
    fn replication_incidents_and_delta_rpo() {
        let mut ev = healthy();
        if let Some(r) = &mut ev.replication {
            r.open_incidents = 2;
            r.failed_objects = 130;
        }
        let rows = evaluate(&ev);
        let dbfs = row(&rows, "DBFS Root");
        assert_eq!(dbfs.status, Protection::AtRisk);
        assert_eq!(dbfs.evidence, "S3 replication: 3 locations, 2 open incidents, 130 objects failed");
        assert_eq!(row(&rows, "Temporary Spark Shuffle Data").status, Protection::NotApplicable);

        let mut ev = healthy();
        ev.delta = Some(DeltaRpo { assessed: 1, beyond_rpo: vec!["sales.orders".into()] });
        let rows = evaluate(&ev);
        assert_eq!(row(&rows, "Managed Tables").status, Protection::AtRisk);
        assert_eq!(row(&rows, "External Tables").status, Protection::Protected);
    }

    #[test]
    fn markdown_has_every_component_and_statuses_as_words() {
        let rows = evaluate(&healthy());
        let md = to_markdown(&rows, NOW);
        assert!(md.contains("Generated 2026-05-01T12:00:00Z"));
        assert!(md.contains("## Control plane") && md.contains("## Data plane"));
        for r in &rows {
            assert!(md.contains(&format!("| {} | {} |", cell(&r.component), r.status.as_str())), "{}", r.component);
        }
        assert!(md.contains("| SQL Query Planner | not applicable | managed by Databricks: not applicable |"));
        assert!(md.contains("| Job Scheduler | protected |"));
    }

    #[test]
    fn statuses_serialize_snake_case() {
        let json =
            serde_json::to_string(&[Protection::Protected, Protection::AtRisk, Protection::NotApplicable, Protection::Unknown])
                .unwrap_or_default();
        assert_eq!(json, r#"["protected","at_risk","not_applicable","unknown"]"#);
    }
}
