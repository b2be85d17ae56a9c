//! Sync: the plan that brings the standby workspace in line with the active one (`crate::rules::sync`),
//! computed from both sites' latest exports ([`prepare`]), and its apply to the standby ([`apply::apply`]).
//!
//! The plan reads only the control bucket (the exports the schedule already took): `dr sync` and the scheduled
//! `check` never call a workspace to plan. The apply writes to the standby only, through its site document's
//! credentials, never to the active site; it journals every change before its call ([`journal`]) and stands
//! down when the failover lock is taken.

pub mod apply;

pub mod journal;
#[cfg(test)]
mod tests;

use crate::rules::ObjectKind;
use crate::rules::identity::canonical;
use crate::rules::sync::{self, KindObjects, SiteExport, SyncPlan};
use crate::{LatestExport, read_kind, read_latest};
use domain::primitives::{rfc3339, sha256_hex};
use domain::site::ActivationSettings;
use domain::site::SiteName;
use dr_ports::ControlBucket;
use dr_ports::documents::DrDocuments;
use dr_ports::error::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The control bucket could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something a plan needs is missing or invalid: the sentence says what and what to do.
    #[error("{0}")]
    NotReady(String),
}

/// A plan and what it was made from.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The active site (the source).
    pub active: SiteName,
    /// The standby site (written to).
    pub standby: SiteName,
    /// The changes.
    pub plan: SyncPlan,
    /// The digest of the plan's changes (the journal's key): the same exports and mappings give the same id, so
    /// an apply run again after it was killed resumes its journal.
    pub plan_id: String,
    /// The latest export of each site the plan was made from.
    pub exports: BTreeMap<SiteName, LatestExport>,
    /// The activation tag sync sets on the standby's jobs, `key=value` (empty: none configured).
    pub tag: Option<(String, String)>,
}

/// The kinds read from each export: the synced ones, and clusters (jobs name them by id).
const READ: [ObjectKind; sync::SYNCED.len() + 1] = {
    let mut out = [ObjectKind::Clusters; sync::SYNCED.len() + 1];
    let mut i = 0;
    while i < sync::SYNCED.len() {
        out[i] = sync::SYNCED[i];
        i += 1;
    }
    out
};

/// The plan from both sites' latest exports and the documents in force.
pub async fn prepare<B: ControlBucket>(bucket: &B, docs: &DrDocuments) -> Result<Prepared, SyncError> {
    let active = docs.active.valid().map(|a| a.site).ok_or_else(|| {
        SyncError::NotReady("the active document is missing or invalid: which site is the source is unknown".into())
    })?;
    let standby = active.other();
    let config = docs.site(standby).valid().ok_or_else(|| {
        SyncError::NotReady(format!("sites/{standby} is missing or invalid: its `sync` mappings and credentials are needed"))
    })?;
    let settings = config.sync_settings();
    // The standby's own selection is what a failover onto it resumes; the active site's when it has none.
    let tag = [standby, active]
        .into_iter()
        .filter_map(|s| docs.site(s).valid())
        .find_map(|c| ActivationSettings::of(c).ok().flatten().and_then(|a| a.job_tag));
    let exports = read_latest(bucket).await?;
    let mut sides: BTreeMap<SiteName, SiteExport> = BTreeMap::new();
    for site in [active, standby] {
        let pointer = exports.get(&site).ok_or_else(|| {
            SyncError::NotReady(format!(
                "no export of the {site} workspace yet: run the `snapshot` command (it runs on a schedule)"
            ))
        })?;
        let mut side = SiteExport::new();
        for kind in READ {
            if let Some(k) = read_kind(bucket, pointer, kind).await? {
                side.insert(kind, KindObjects { complete: k.status.is_complete(), objects: k.objects });
            }
        }
        sides.insert(site, side);
    }
    let (source, target) = (&sides[&active], &sides[&standby]);
    let plan = sync::plan(source, target, &settings, tag.as_ref());
    let digest = canonical(&serde_json::to_value(&plan.changes).unwrap_or(Value::Null));
    let plan_id = sha256_hex(format!("{active}>{standby}:{digest}").as_bytes())[..20].to_owned();
    Ok(Prepared { active, standby, plan, plan_id, exports, tag })
}

/// The plan as the `sync` command answers it: from where to where, from which exports, the changes per kind
/// and what is not synced.
pub fn view(p: &Prepared) -> PlanView {
    let mut kinds: BTreeMap<String, Vec<ChangeView>> = BTreeMap::new();
    for c in &p.plan.changes {
        let mut v =
            ChangeView { name: c.name.clone(), action: c.action.as_str().to_owned(), fields: None, target: None, reason: None };
        match &c.action {
            sync::Action::Update { fields, target, .. } => {
                v.fields = Some(fields.clone());
                v.target = Some(target.clone());
            }
            sync::Action::Prune { target, .. } => v.target = Some(target.clone()),
            sync::Action::Blocked { reason } => v.reason = Some(reason.clone()),
            sync::Action::Create { .. } => {}
        }
        kinds.entry(c.kind.as_str().to_owned()).or_default().push(v);
    }
    PlanView {
        from: p.active,
        to: p.standby,
        plan_id: p.plan_id.clone(),
        exported_at: p.exports.iter().map(|(s, e)| (s.as_str().to_owned(), rfc3339(e.exported_at))).collect(),
        activation_tag: p.tag.as_ref().map(|(k, v)| format!("{k}={v}")),
        sentence: p.plan.sentence(),
        counts: p.plan.counts().into_iter().map(|(k, n)| (k.to_owned(), n)).collect(),
        kinds,
        not_synced: p.plan.not_synced.clone(),
    }
}

/// The plan as `sync` answers it (`plan`): per kind, each change's name and action with what people need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    /// The active site, whose configuration the standby is brought in line with.
    pub from: SiteName,
    /// The standby, which the plan writes.
    pub to: SiteName,
    /// The plan's id (the exports it was made from).
    pub plan_id: String,
    /// When each site's export the plan rests on was taken, by site.
    pub exported_at: BTreeMap<String, String>,
    /// The activation tag set on the jobs written, `key=value`.
    pub activation_tag: Option<String>,
    /// The plan in one sentence for people.
    pub sentence: String,
    /// Changes by action.
    pub counts: BTreeMap<String, usize>,
    /// The changes by kind.
    pub kinds: BTreeMap<String, Vec<ChangeView>>,
    /// What is never synced, and why.
    pub not_synced: Vec<sync::NotSynced>,
}

/// One change of the plan as people read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeView {
    /// The object's name.
    pub name: String,
    /// `create`, `update`, `prune` or `blocked`.
    pub action: String,
    /// An update's fields that differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// The standby's id of the object updated or pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why a change is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `check` says of sync (`sync` in its answer): the plan, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SyncOnCheck {
    /// No plan: the exports or the documents are not ready (the reason).
    Unavailable {
        /// Why no plan could be made.
        unavailable: String,
    },
    /// The plan from the latest exports, and the apply the policy's `sync_on_check` asked for.
    Planned(Box<PlannedOnCheck>),
}

/// The plan `check` made, and its apply of the policy's chosen kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOnCheck {
    /// The active site, whose configuration the standby is brought in line with.
    pub from: SiteName,
    /// The standby, which the plan writes.
    pub to: SiteName,
    /// The plan's id (the exports it was made from).
    pub plan_id: String,
    /// Changes by action.
    pub counts: BTreeMap<String, usize>,
    /// The plan in one sentence for people.
    pub sentence: String,
    /// The apply of the policy's `sync_on_check` kinds (never a prune), when it names any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyOnCheck>,
}

/// How `check`'s apply ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApplyOnCheck {
    /// It ran: its journal's plan, outcome and changes by status.
    Applied {
        /// The plan applied.
        plan_id: String,
        /// The apply's outcome, as its journal says.
        outcome: Option<String>,
        /// Changes by status.
        counts: BTreeMap<journal::Status, usize>,
    },
    /// It could not run (the reason).
    Failed {
        /// What went wrong.
        error: String,
    },
}
