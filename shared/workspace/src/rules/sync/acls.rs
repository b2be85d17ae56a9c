//! Object permissions (ACLs) of jobs, cluster policies, instance pools and SQL warehouses: per object present on
//! both sides (matched by the same key as its kind's plan), the `PUT /api/2.0/permissions/{type}/{id}` that gives
//! the standby's object the active site's direct permissions. Principals (users, groups, service principals) are
//! account-wide: kept as they are. Inherited entries (`admins` from the root `/jobs/`) are never sent; a `PUT`
//! replaces only the direct ones (https://docs.databricks.com/api/workspace/permissions/set; databricks-sdk-py
//! `JobsAPI.set_permissions`: "replacing existing permissions ... Objects can inherit permissions from their root
//! object").
//!
//! Prune semantics, as for grants: a direct permission the standby has and the active site lacks is
//! configuration the active site lacks, removed only with `prune`. So each object may have two changes:
//! - an [`Action::Update`], the `PUT` of the union: the active site's entries, each principal it names at its
//!   level(s), plus the standby's other principals as they are;
//! - an [`Action::Prune`], the `PUT` of the active site's entries alone (applied only with `prune`, after the
//!   updates of the kind: the apply runs a kind's prunes after its other changes).
//!
//! Ownership is one entry (`IS_OWNER`, jobs and warehouses): the active site's owner replaces the standby's; when
//! the active site names none, the standby's is kept. The Permissions API refuses a job's `PUT` without exactly
//! one owner ("The job must have exactly one owner.", databricks/cli issues 3849 and 5682), so the apply re-reads
//! the standby's ACL right before the write ([`rebase`]) and carries its owner when the body names none.
//!
//! An object the same plan creates gets its ACL after it is created: the path names it by its placeholder
//! (`${sync:jobs:NAME}`), which the apply resolves to the new id.

use super::kinds;
use super::refs::{id_and_name, placeholder};
use super::{Action, Call, Change, Method, SiteExport};
use crate::rules::ObjectKind;
use crate::rules::identity;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The object types whose ACLs sync writes: `(object_type in the REST path, kind)`. The paths are the published
/// ones (databricks-sdk-py `JobsAPI`, `ClusterPoliciesAPI`, `InstancePoolsAPI`, `WarehousesAPI`
/// `set_permissions`: `/api/2.0/permissions/jobs/{id}`, `cluster-policies/{id}`, `instance-pools/{id}`,
/// `warehouses/{id}`).
pub const TYPES: [(&str, ObjectKind); 4] = [
    ("jobs", ObjectKind::Jobs),
    ("cluster-policies", ObjectKind::ClusterPolicies),
    ("instance-pools", ObjectKind::InstancePools),
    ("warehouses", ObjectKind::SqlWarehouses),
];

/// The principal fields of an ACL entry: exactly one per entry.
const PRINCIPALS: [&str; 3] = ["user_name", "group_name", "service_principal_name"];

/// The owner's level.
const OWNER: &str = "IS_OWNER";

/// `(principal field, name)` to its direct levels.
type Acl = BTreeMap<(String, String), BTreeSet<String>>;

/// The direct permissions of an ACL (`access_control_list` of a `GET` answer or an export): inherited ones left
/// out, an entry without `all_permissions` read as a request entry (`permission_level`).
fn direct(answer: &Value) -> Acl {
    let mut out = Acl::new();
    for e in answer.get("access_control_list").and_then(Value::as_array).into_iter().flatten() {
        let Some((field, name)) =
            PRINCIPALS.iter().find_map(|f| Some((*f, e.get(*f).and_then(Value::as_str).filter(|s| !s.is_empty())?)))
        else {
            continue;
        };
        let mut levels: Vec<String> = Vec::new();
        if let Some(all) = e.get("all_permissions").and_then(Value::as_array) {
            for p in all.iter().filter(|p| p.get("inherited").and_then(Value::as_bool) != Some(true)) {
                levels.extend(p.get("permission_level").and_then(Value::as_str).map(str::to_owned));
            }
        } else {
            levels.extend(e.get("permission_level").and_then(Value::as_str).map(str::to_owned));
        }
        if !levels.is_empty() {
            out.entry((field.to_owned(), name.to_owned())).or_default().extend(levels);
        }
    }
    out
}

/// The owner entry of an ACL, if any.
fn owner(acl: &Acl) -> Option<(String, String)> {
    acl.iter().find(|(_, levels)| levels.contains(OWNER)).map(|(p, _)| p.clone())
}

/// `theirs` with `ours` laid over it: each principal `ours` names at its levels, the others as they are; the
/// owner of `ours` (if any) the only owner.
fn union(ours: &Acl, theirs: &Acl) -> Acl {
    let has_owner = owner(ours).is_some();
    let mut out: Acl = theirs
        .iter()
        .filter(|(p, _)| !ours.contains_key(*p))
        .map(|(p, levels)| {
            let kept = levels.iter().filter(|l| !(has_owner && l.as_str() == OWNER)).cloned().collect();
            (p.clone(), kept)
        })
        .filter(|(_, levels): &(_, BTreeSet<String>)| !levels.is_empty())
        .collect();
    out.extend(ours.iter().map(|(p, l)| (p.clone(), l.clone())));
    out
}

/// `ours`, with the standby's owner when `ours` names none (a job's `PUT` needs one).
fn exact(ours: &Acl, theirs: &Acl) -> Acl {
    let mut out = ours.clone();
    if owner(ours).is_none()
        && let Some(p) = owner(theirs)
    {
        out.entry(p).or_default().insert(OWNER.to_owned());
    }
    out
}

/// The `PUT` body of an ACL: one entry per principal and level, sorted.
fn body(acl: &Acl) -> Value {
    let entries: Vec<Value> = acl
        .iter()
        .flat_map(|((field, name), levels)| levels.iter().map(move |l| json!({ field.as_str(): name, "permission_level": l })))
        .collect();
    json!({ "access_control_list": entries })
}

/// The path of an object's permissions.
pub fn path(object_type: &str, id: &str) -> String {
    format!("/api/2.0/permissions/{object_type}/{id}")
}

/// The body to write after re-reading the standby's ACL (`current`, the `GET` answer), or `None` when the
/// standby already has it. An update (`keep_others`) keeps the principals the standby gained since the export;
/// a prune does not. Either carries the standby's owner when the planned body names none.
pub fn rebase(planned: &Value, current: &Value, keep_others: bool) -> Option<Value> {
    let (want, have) = (direct(planned), direct(current));
    let next = if keep_others { union(&want, &have) } else { exact(&want, &have) };
    (next != have).then(|| body(&next))
}

/// A side's objects of `kind` by their sync key: `(id, change name)` of each; a key held twice is left out (the
/// kind's plan blocks it).
fn by_key(export: &SiteExport, kind: ObjectKind, tag: Option<&(String, String)>) -> BTreeMap<String, (String, String)> {
    let Some((id_field, _)) = id_and_name(kind) else { return BTreeMap::new() };
    let mut seen: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for o in export.get(&kind).map(|k| k.objects.as_slice()).unwrap_or_default() {
        let Some(key) = kinds::key(kind, o, tag) else { continue };
        let id = match o.get(id_field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        let name = identity::of(kind, o).unwrap_or_else(|| key.clone());
        seen.entry(key).or_default().push((id, name));
    }
    seen.into_iter().filter_map(|(k, mut v)| (v.len() == 1).then(|| (k, v.remove(0)))).collect()
}

/// A side's ACLs by `(object_type, object_id)`.
fn acls(export: &SiteExport) -> BTreeMap<(String, String), Acl> {
    let objects = export.get(&ObjectKind::Permissions).map(|k| k.objects.as_slice()).unwrap_or_default();
    objects
        .iter()
        .filter_map(|o| {
            let t = o.get("object_type").and_then(Value::as_str)?;
            let id = match o.get("object_id")? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(((t.to_owned(), id), direct(o)))
        })
        .collect()
}

/// The ACL changes: per object of [`TYPES`] that both sides have (or that `planned`, the plan's changes so far,
/// creates), the update of the union and, apart, the prune to the active site's entries.
pub(crate) fn plan(source: &SiteExport, target: &SiteExport, planned: &[Change], tag: Option<&(String, String)>) -> Vec<Change> {
    let (src_acls, tgt_acls) = (acls(source), acls(target));
    let empty = Acl::new();
    let mut out = Vec::new();
    for (object_type, kind) in TYPES {
        let (src, tgt) = (by_key(source, kind, tag), by_key(target, kind, tag));
        for (key, (id, name)) in &src {
            let Some(ours) = src_acls.get(&(object_type.to_owned(), id.clone())) else { continue };
            let (target_id, theirs) = match tgt.get(key) {
                Some((tid, _)) => match tgt_acls.get(&(object_type.to_owned(), tid.clone())) {
                    Some(theirs) => (tid.clone(), theirs),
                    // Its ACL was not read: nothing to compare with.
                    None => continue,
                },
                None if planned
                    .iter()
                    .any(|c| c.kind == kind && c.name == *name && matches!(c.action, Action::Create { .. })) =>
                {
                    (placeholder(kind, name), &empty)
                }
                None => continue,
            };
            let change_name = format!("{object_type}:{name}");
            let merged = union(ours, theirs);
            if merged != *theirs {
                let fields: Vec<String> = merged
                    .iter()
                    .filter(|(p, l)| theirs.get(*p) != Some(*l))
                    .map(|((_, n), _)| n.clone())
                    .chain(theirs.keys().filter(|p| !merged.contains_key(*p)).map(|(_, n)| n.clone()))
                    .collect();
                let call = Call { method: Method::Put, path: path(object_type, &target_id), body: body(&merged) };
                out.push(Change {
                    kind: ObjectKind::Permissions,
                    name: change_name.clone(),
                    action: Action::Update { target: target_id.clone(), fields, call },
                });
            }
            let only = exact(ours, theirs);
            if only != merged {
                let call = Call { method: Method::Put, path: path(object_type, &target_id), body: body(&only) };
                out.push(Change {
                    kind: ObjectKind::Permissions,
                    name: change_name,
                    action: Action::Prune { target: target_id, call },
                });
            }
        }
    }
    out
}
