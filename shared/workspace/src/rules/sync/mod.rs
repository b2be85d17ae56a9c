//! Sync: the changes that bring the standby workspace's configuration in line with the active site's, computed
//! from the two sites' latest exports ([`plan`]), for people to read and for the engine to apply.
//!
//! Objects are matched across the sites by name, as drift matches them ([`super::identity`]): jobs by name and
//! tags (the activation tag aside, since sync sets it), policies, pools, warehouses and catalogs by name,
//! schemas by full name ([`uc`] says how catalogs and schemas are written). For each kind
//! whose exports are complete on both sides:
//!
//! - an object of the active site that the standby lacks is a [`Action::Create`];
//! - one both have whose desired body differs from the standby's is an [`Action::Update`], with the fields;
//! - one only the standby has is a [`Action::Prune`] (applied only when asked);
//! - an object with a reference that cannot be mapped is [`Action::Blocked`], with the reason: that one object,
//!   never the rest of its kind.
//!
//! The body is the REST request for the standby, built from the active site's object: output fields left out
//! (ids, creators, times, state), site-local values mapped ([`settings::SyncSettings`]; policy, pool, warehouse
//! and cluster ids by the name of the object in the standby), jobs' schedules and triggers `PAUSED` with the
//! activation tag set. "Differs" is decided by the same allow-list and normalisation on both sides, so the
//! standby's object after an apply compares equal to what the plan would write, and a second plan is empty.
//!
//! A reference to a pool, policy or warehouse that the same plan creates is written `${sync:KIND:NAME}`
//! ([`placeholder`]); the apply replaces it with the new object's id once that kind is applied.
//!
//! The object permissions (ACLs) of jobs, policies, pools and warehouses come last ([`acls`]): an object's ACL is
//! written once the object is there, an object the same plan creates named by its placeholder.

pub mod acls;
mod grants;
mod jobs;
mod kinds;
mod refs;
#[cfg(test)]
mod tests;
pub mod uc;

use super::ObjectKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub use domain::sync_settings as settings;
pub use refs::{placeholder, placeholders_in, replace_placeholders};

pub use domain::kinds::{Method, SYNCED};

/// What is never synced, and why (kinds of the export that sync does not write).
pub const NOT_SYNCED: [(&str, &str); 9] = [
    ("secret values", "the API never returns a secret's value: recreate each secret in the standby's scopes by hand"),
    ("managed table data", "comes by storage replication, not by sync"),
    ("model versions' artifacts", "live in S3 and come by storage replication; the registry's entries are not written"),
    (
        "clusters",
        "all-purpose clusters are not created by sync (jobs use job clusters; a job naming a cluster the standby lacks is blocked)",
    ),
    (
        "grants of volumes, models, functions, external locations and credentials",
        "not handled by this version of sync: drift reports them (grants of catalogs, schemas and tables are)",
    ),
    ("permissions of clusters", "all-purpose clusters are not synced, so neither are their ACLs: drift reports them"),
    ("serving and vector search endpoints and indexes", "not handled by sync: recreate them from their source tables"),
    ("repos and workspace objects", "not handled by sync: Git folders come from their remote"),
    ("external locations and storage credentials", "site-local by nature: mapped through the `sync` section, never copied"),
];

/// One kind's objects from one site's export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindObjects {
    /// Whether every page was read (a plan against a partial export could create duplicates).
    pub complete: bool,
    /// The exported objects.
    pub objects: Vec<Value>,
}

/// One site's export, the kinds sync needs.
pub type SiteExport = BTreeMap<ObjectKind, KindObjects>;

/// A REST call against the standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The API path.
    pub path: String,
    /// The JSON body.
    pub body: Value,
}

/// What a change does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Create the object (not idempotent: the apply re-reads by name first).
    Create {
        /// The create call.
        call: Call,
    },
    /// Replace the standby's object's configuration.
    Update {
        /// The standby's id of the object.
        target: String,
        /// The fields that differ (top level of the body).
        fields: Vec<String>,
        /// The update call (a full replacement: idempotent).
        call: Call,
    },
    /// Delete the standby's object, which the active site does not have (only with `prune`).
    Prune {
        /// The standby's id of the object.
        target: String,
        /// The delete call.
        call: Call,
    },
    /// Not synced: a reference could not be mapped, or the change is not possible by the API.
    Blocked {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// `create`, `update`, `prune` or `blocked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Update { .. } => "update",
            Action::Prune { .. } => "prune",
            Action::Blocked { .. } => "blocked",
        }
    }
}

/// One change of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The object's name (its identity across the sites).
    pub name: String,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// A kind that was not planned, or an item never synced, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotSynced {
    /// What.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The changes that bring the standby in line with the active site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPlan {
    /// The changes, kind by kind in [`SYNCED`] order, then by name.
    pub changes: Vec<Change>,
    /// What is not synced, with the reason.
    pub not_synced: Vec<NotSynced>,
}

impl SyncPlan {
    /// Whether no change would be made (blocked objects and prunes count: they are differences).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes of each action: `{"create": 3, "update": 1}`.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for c in &self.changes {
            *out.entry(c.action.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// One line: `3 to create, 1 to update, 2 blocked` or `nothing to sync`.
    pub fn sentence(&self) -> String {
        let parts: Vec<String> = self
            .counts()
            .into_iter()
            .map(|(a, n)| if a == "blocked" { format!("{n} blocked") } else { format!("{n} to {a}") })
            .collect();
        if parts.is_empty() { "nothing to sync".into() } else { parts.join(", ") }
    }
}

/// The name an object is matched by across the sites (a job's ignores the activation tag `tag`), as the
/// plan's [`Change::name`]; the apply re-reads the standby by it.
pub fn sync_key(kind: ObjectKind, object: &Value, tag: Option<&(String, String)>) -> Option<String> {
    kinds::key(kind, object, tag)
}

/// The id field and the name field of a kind's objects (`instance_pool_id`, `instance_pool_name`), for the
/// kinds sync writes or maps.
pub fn id_field(kind: ObjectKind) -> Option<(&'static str, &'static str)> {
    refs::id_and_name(kind)
}

/// The active site's (`source`) and the standby's (`target`) exports, compared kind by kind.
pub fn plan(
    source: &SiteExport,
    target: &SiteExport,
    settings: &settings::SyncSettings,
    tag: Option<&(String, String)>,
) -> SyncPlan {
    let mapper = refs::Mapper::new(source, target, settings);
    let mut changes = Vec::new();
    let mut not_synced: Vec<NotSynced> =
        NOT_SYNCED.iter().map(|(w, r)| NotSynced { what: (*w).to_owned(), reason: (*r).to_owned() }).collect();
    for kind in SYNCED {
        let (Some(s), Some(t)) = (source.get(&kind), target.get(&kind)) else {
            not_synced.push(NotSynced { what: kind.to_string(), reason: "not in both sites' latest exports".into() });
            continue;
        };
        if !s.complete || !t.complete {
            not_synced.push(NotSynced {
                what: kind.to_string(),
                reason: "an export of it was partial: a plan from it could create duplicates or miss prunes".into(),
            });
            continue;
        }
        if kind == ObjectKind::Grants {
            changes.extend(grants::plan(source, target));
        } else if kind == ObjectKind::Permissions {
            let more = acls::plan(source, target, &changes, tag);
            changes.extend(more);
        } else {
            changes.extend(kinds::plan_kind(kind, &s.objects, &t.objects, &mapper, tag));
        }
    }
    SyncPlan { changes, not_synced }
}
