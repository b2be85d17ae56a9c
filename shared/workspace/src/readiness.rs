//! What `check` says of the workspaces and the data plane: the live DR matrix (every row of the seed
//! document with its status and evidence, `checks/dr-matrix.json` and `.md`), findings for what on-call should
//! fix (the secondary missing objects, an export missing, stale or incomplete), and a chat summary whenever the
//! matrix or the drift line changes (not at every check: a scheduled check runs every 30 minutes).

use super::{DriftReport, LatestExport, read_drift, read_latest};
use crate::rules::matrix::{
    self, DeltaRpo, MatrixEvidence, MatrixRow, Protection, ReplicatedKind, ReplicatedLocation, ReplicationEvidence, SiteExport,
};
use crate::rules::{ExportStatus, ObjectKind};
use domain::data_plane::LocationKind;
use domain::notification::{self, ChatNote, Envelope, Severity};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports::documents::DrDocuments;
use dr_ports::error::StoreError;
use dr_ports::finding::Finding;
use dr_ports::{Channel, ControlBucket, Notifier, WriteCondition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// How old the latest export of a site may be before it is stale: four missed runs of the default 6-hour
/// snapshot schedule, whatever the schedule is.
pub const MAX_EXPORT_AGE: time::Duration = time::Duration::hours(25);

/// The matrix and the findings of one check.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// One row per seed row.
    pub rows: Vec<MatrixRow>,
    /// The one-line summary (`DR matrix: 28 protected, 2 at risk, ...`).
    pub summary: String,
    /// The latest drift line, if any export ran.
    pub drift: Option<String>,
    /// Findings for `check`.
    pub findings: Vec<Finding>,
}

/// Reads the evidence (the export pointers, the drift, the open replication incidents) and evaluates the matrix.
pub async fn assess<B: ControlBucket>(bucket: &B, docs: &DrDocuments, now: OffsetDateTime) -> Result<Readiness, StoreError> {
    let (latest, drift, incidents, delta) = tokio::join!(
        read_latest(bucket),
        read_drift(bucket),
        dr_replication::open_incidents(bucket),
        bucket.get(dr_delta::LATEST_KEY)
    );
    let delta = match delta {
        Ok(Some(o)) => delta_rpo(&serde_json::from_slice::<Value>(&o.body).unwrap_or(Value::Null)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the latest Delta assessment is unreadable: the matrix says not assessed");
            None
        }
    };
    let (latest, drift) = (latest?, drift?);
    let replication = match (docs.data_plane.valid(), incidents) {
        (Some(plane), Ok(open)) => Some(ReplicationEvidence {
            open_incidents: open.len(),
            failed_objects: open.iter().map(|i| i.total_failed).sum(),
            locations: plane
                .locations
                .iter()
                .map(|l| ReplicatedLocation {
                    name: l.name.clone(),
                    kind: match l.kind {
                        LocationKind::Delta => ReplicatedKind::Delta,
                        LocationKind::Prefix => ReplicatedKind::Prefix,
                        LocationKind::StreamCheckpoint => ReplicatedKind::StreamCheckpoint,
                    },
                })
                .collect(),
        }),
        (_, Err(e)) => {
            tracing::warn!(error = %e, "replication incidents unreadable: data-plane rows unknown");
            None
        }
        (None, Ok(_)) => None,
    };
    let evidence = MatrixEvidence {
        now,
        exports: latest.iter().map(|(site, p)| (*site, site_export(p))).collect(),
        site_drift: drift.as_ref().and_then(|d| d.between_sites.clone()),
        replication,
        delta,
        secondary_configured: docs.secondary.valid().is_some(),
        max_export_age: MAX_EXPORT_AGE,
        last_sync: last_sync(bucket).await,
    };
    let rows = matrix::evaluate(&evidence);
    let summary = matrix::summary(&rows);
    Ok(Readiness { findings: findings(&latest, drift.as_ref(), now), summary, drift: drift.map(|d| d.sentence), rows })
}

/// The latest `sync` apply as matrix evidence: the synced kinds none of whose changes failed or is left to do.
/// An unreadable journal is no evidence (logged).
async fn last_sync<B: ControlBucket>(bucket: &B) -> Option<matrix::SyncEvidence> {
    let read = bucket.get(domain::layout::DATABRICKS_SYNC_LATEST).await;
    let body = match read {
        Ok(Some(o)) => o.body,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "the latest sync journal is unreadable: no sync evidence in the matrix");
            return None;
        }
    };
    let journal: crate::sync::journal::Journal = serde_json::from_slice(&body)
        .inspect_err(|e| tracing::warn!(error = %e, "the latest sync journal is not one: no sync evidence in the matrix"))
        .ok()?;
    let kinds = crate::rules::sync::SYNCED
        .into_iter()
        .filter(|k| {
            journal
                .entries
                .iter()
                .filter(|e| e.kind == *k)
                .all(|e| e.status.settled() && e.note.as_deref() != Some(crate::sync::journal::NOT_CHOSEN))
        })
        .collect();
    Some(matrix::SyncEvidence {
        at: journal.updated_at,
        plan_id: journal.plan_id,
        outcome: journal.outcome.unwrap_or_else(|| "running".into()),
        kinds,
    })
}

/// How far behind a replica may be before its table is at risk: the 15 minutes within which S3 Replication Time
/// Control replicates 99.99% of objects (a replica a few seconds behind is S3 replication working normally).
pub const DELTA_RPO_OBJECTIVE_SECONDS: i64 = 900;

/// The matrix's view of the latest Delta assessment: the Delta tables assessed, and those at risk (behind by more
/// than [`DELTA_RPO_OBJECTIVE_SECONDS`], or with no consistent version, unreadable, or not certifiable).
fn delta_rpo(assessment: &Value) -> Option<DeltaRpo> {
    let tables: Vec<&Value> = assessment["tables"].as_array()?.iter().filter(|t| t["kind"] == "delta").collect();
    if tables.is_empty() {
        return None;
    }
    let beyond_rpo = tables
        .iter()
        .filter(|t| match t["status"].as_str() {
            Some("current") | Some("still-computing") => false,
            Some("behind") => t["rpo_seconds"].as_i64().is_none_or(|r| r > DELTA_RPO_OBJECTIVE_SECONDS),
            _ => true,
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    Some(DeltaRpo { assessed: tables.len(), beyond_rpo })
}

fn site_export(p: &LatestExport) -> SiteExport {
    SiteExport {
        exported_at: p.exported_at,
        kinds: p.kinds.iter().map(|(k, s)| (*k, (s.status.clone(), s.count))).collect(),
        notebooks_outside_repos: p.notebooks_outside_repos,
        files_outside_repos: p.files_outside_repos,
    }
}

/// The findings: per site, no export yet, a stale one, or kinds that were not exported completely (a feature
/// the workspace does not have is not one); and the secondary missing what the primary has.
pub fn findings(latest: &BTreeMap<SiteName, LatestExport>, drift: Option<&DriftReport>, now: OffsetDateTime) -> Vec<Finding> {
    let mut out = Vec::new();
    for site in SiteName::ALL {
        let id = format!("workspace-export-{site}");
        let Some(p) = latest.get(&site) else {
            out.push(Finding {
                id,
                severity: Severity::Warning,
                what: format!("no export of the {site} workspace yet: its metadata is not protected by this stack"),
                action: format!(
                    "run the snapshot command; if it says skipped, give sites/{site} credentials (oauth_client_id and \
                     oauth_secret_parameter, or token_parameter, under {{prefix}}/secrets/)"
                ),
            });
            continue;
        };
        let age = now - p.exported_at;
        if age > MAX_EXPORT_AGE {
            out.push(Finding {
                id,
                severity: Severity::Warning,
                what: format!("the latest export of the {site} workspace is {} h old", age.whole_hours()),
                action: "check the snapshot schedule and its last runs (the schedule's failure queue)".into(),
            });
            continue;
        }
        let incomplete: Vec<String> = p
            .kinds
            .iter()
            .filter_map(|(kind, k)| match &k.status {
                ExportStatus::Complete => None,
                ExportStatus::Skipped { reason } if reason.starts_with("not available in this workspace") => None,
                ExportStatus::Partial { error } => Some(format!("{kind} partial ({error})")),
                ExportStatus::Skipped { reason } => Some(format!("{kind} skipped ({reason})")),
            })
            .collect();
        if !incomplete.is_empty() {
            out.push(Finding {
                id,
                severity: Severity::Warning,
                what: format!("the latest export of the {site} workspace is incomplete: {}", incomplete.join("; ")),
                action: "see the kinds' files in the snapshot; grant the service principal read access, or raise \
                         DR_EXPORT_DEADLINE_SECONDS if the deadline passed"
                    .into(),
            });
        }
    }
    if let Some(between) = drift.and_then(|d| d.between_sites.as_ref()) {
        let missing: Vec<String> = between
            .kinds
            .iter()
            .filter(|k| !k.removed.is_empty() && k.kind != ObjectKind::Metastore)
            .map(|k| k.kind.count_phrase(k.removed.len()))
            .collect();
        if !missing.is_empty() {
            out.push(Finding {
                id: "workspace-drift".into(),
                severity: Severity::Warning,
                what: format!("the secondary workspace is missing {} that the primary has", missing.join(", ")),
                action: format!(
                    "recreate them in the secondary (IaC), or remove them from the primary; the list is in {}",
                    domain::layout::DATABRICKS_DRIFT
                ),
            });
        }
    }
    out
}

/// Writes the matrix (JSON and Markdown) and, when its summary or the drift line changed since the last check,
/// a chat note summarizing it. Returns what the check's answer shows.
pub async fn publish<B: ControlBucket, N: Notifier>(
    bucket: &B,
    notifier: &N,
    environment: &str,
    readiness: &Readiness,
    now: OffsetDateTime,
) -> MatrixAnswer {
    let (json_key, md_key) = domain::layout::DR_MATRIX;
    let previous = match bucket.get(json_key).await {
        Ok(Some(o)) => serde_json::from_slice::<Value>(&o.body).ok(),
        _ => None,
    };
    let changed =
        previous.as_ref().is_none_or(|p| p["summary"] != json!(readiness.summary) || p["drift"] != json!(readiness.drift));
    let body = json!({
        "generated_at": rfc3339(now),
        "summary": readiness.summary,
        "drift": readiness.drift,
        "rows": readiness.rows,
    });
    let markdown = matrix::to_markdown(&readiness.rows, now);
    let (a, b) = tokio::join!(
        bucket.put(json_key, serde_json::to_vec_pretty(&body).unwrap_or_default(), "application/json", WriteCondition::Overwrite),
        bucket.put(md_key, markdown.into_bytes(), "text/markdown", WriteCondition::Overwrite)
    );
    for e in [a.err(), b.err()].into_iter().flatten() {
        tracing::warn!(error = %e, "the DR matrix could not be written");
    }
    let mut chat_sent = false;
    if changed {
        let at_risk: Vec<String> = readiness
            .rows
            .iter()
            .filter(|r| r.status == Protection::AtRisk)
            .map(|r| format!("{}: {}", r.component, r.evidence))
            .collect();
        let mut description = readiness.summary.clone();
        if let Some(d) = &readiness.drift {
            description.push_str(&format!("\nWorkspaces: {d}"));
        }
        for line in at_risk.iter().take(10) {
            description.push_str(&format!("\n- {line}"));
        }
        let note = notification::chat_message(&ChatNote {
            envelope: Envelope {
                event_type: "check.matrix".into(),
                severity: if at_risk.is_empty() { Severity::Info } else { Severity::Warning },
                environment: environment.to_owned(),
                incident_key: format!("dr-{environment}-dr-matrix"),
            },
            title: format!("DR {environment}: {}", readiness.summary),
            description,
            next_steps: vec![format!("the whole matrix: s3://<control bucket>/{md_key}")],
        });
        match notifier.publish(Channel::Chat, &note).await {
            Ok(id) => chat_sent = id.is_some(),
            Err(e) => tracing::warn!(error = %e, "the DR matrix chat note was not published (best effort)"),
        }
    }
    MatrixAnswer {
        summary: readiness.summary.clone(),
        drift: readiness.drift.clone(),
        matrix_key: md_key.to_owned(),
        changed,
        chat_sent,
        rows: readiness
            .rows
            .iter()
            .map(|r| MatrixRowAnswer { component: r.component.clone(), status: r.status, evidence: r.evidence.clone() })
            .collect(),
    }
}

/// `dr_matrix` in `check`'s answer: the matrix published, or why the evidence could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MatrixOnCheck {
    /// Published: what the answer shows of it.
    Published(Box<MatrixAnswer>),
    /// The evidence could not be read (the error).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// What `check`'s answer shows of the DR matrix it published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixAnswer {
    /// The one-line summary (`DR matrix: 28 protected, 2 at risk, ...`).
    pub summary: String,
    /// The latest drift line between the sites, if any export ran.
    pub drift: Option<String>,
    /// Where the whole matrix is, as Markdown.
    pub matrix_key: String,
    /// Whether the summary or the drift changed since the last check (a chat note is due).
    pub changed: bool,
    /// Whether that chat note went out.
    pub chat_sent: bool,
    /// Every row: component, status, evidence.
    pub rows: Vec<MatrixRowAnswer>,
}

/// One row of the DR matrix in `check`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixRowAnswer {
    /// The seed's component.
    pub component: String,
    /// How well it is protected.
    pub status: Protection,
    /// What the status rests on.
    pub evidence: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KindSummary;
    use crate::rules::drift::{Drift, KindDrift};
    use time::macros::datetime;

    fn pointer(site: SiteName, at: OffsetDateTime, kinds: &[(ObjectKind, ExportStatus)]) -> LatestExport {
        LatestExport {
            site,
            workspace_url: "https://x".into(),
            snapshot_folder: "snapshots/s".into(),
            exported_at: at,
            kinds: kinds.iter().map(|(k, s)| (*k, KindSummary { status: s.clone(), count: 1 })).collect(),
            notebooks_outside_repos: 0,
            files_outside_repos: 0,
            requests: 1,
            elapsed_ms: 1,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    #[test]
    fn a_missing_stale_or_incomplete_export_is_a_finding_a_disabled_feature_is_not() {
        let mut latest = BTreeMap::new();
        assert_eq!(findings(&latest, None, NOW).len(), 2, "no export of either site");
        latest.insert(SiteName::Primary, pointer(SiteName::Primary, NOW - time::Duration::hours(26), &[]));
        latest.insert(
            SiteName::Secondary,
            pointer(
                SiteName::Secondary,
                NOW - time::Duration::minutes(5),
                &[
                    (ObjectKind::Jobs, ExportStatus::Complete),
                    (ObjectKind::Tables, ExportStatus::Partial { error: "timed out".into() }),
                    (
                        ObjectKind::VectorSearchEndpoints,
                        ExportStatus::Skipped { reason: "not available in this workspace (404)".into() },
                    ),
                ],
            ),
        );
        let f = findings(&latest, None, NOW);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].what.contains("26 h old"), "{f:?}");
        assert!(f[1].what.contains("tables partial (timed out)") && !f[1].what.contains("vector"), "{f:?}");
    }

    #[test]
    fn a_delta_table_is_at_risk_beyond_the_objective_or_without_a_consistent_version() {
        let a = serde_json::json!({"tables": [
            {"name": "a", "kind": "delta", "status": "current", "rpo_seconds": 0},
            {"name": "b", "kind": "delta", "status": "behind", "rpo_seconds": 30},
            {"name": "c", "kind": "delta", "status": "behind", "rpo_seconds": 3600},
            {"name": "d", "kind": "delta", "status": "unknown", "rpo_seconds": null},
            {"name": "e", "kind": "prefix", "status": "behind"}
        ]});
        assert_eq!(delta_rpo(&a), Some(DeltaRpo { assessed: 4, beyond_rpo: vec!["c".into(), "d".into()] }));
        assert_eq!(delta_rpo(&serde_json::json!({"tables": []})), None);
    }

    #[test]
    fn the_secondary_missing_objects_is_a_finding_that_counts_them() {
        let latest: BTreeMap<SiteName, LatestExport> =
            SiteName::ALL.into_iter().map(|s| (s, pointer(s, NOW, &[(ObjectKind::Jobs, ExportStatus::Complete)]))).collect();
        let kind = |kind, removed: &[&str], added: &[&str]| KindDrift {
            kind,
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
            changed: vec![],
            aged_out: vec![],
            unidentified: 0,
            exact: true,
        };
        let drift = DriftReport {
            generated_at: NOW,
            snapshot_folder: "snapshots/s".into(),
            between_sites: Some(Drift {
                base: "primary".into(),
                other: "secondary".into(),
                kinds: vec![kind(ObjectKind::Jobs, &["a", "b"], &["c"]), kind(ObjectKind::Catalogs, &["ops"], &[])],
            }),
            over_time: BTreeMap::new(),
            sentence: String::new(),
        };
        let f = findings(&latest, Some(&drift), NOW);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].id, "workspace-drift");
        assert!(f[0].what.contains("missing 2 jobs, 1 catalog"), "{}", f[0].what);
    }
}
