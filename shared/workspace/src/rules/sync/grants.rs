//! Unity Catalog grants of catalogs, schemas and tables: per securable, the `PATCH` of
//! `/api/2.1/unity-catalog/permissions/{type}/{full_name}` that gives the standby what the active site grants
//! (an [`Action::Update`] of adds) and, apart, what takes away what the standby grants beyond it (an
//! [`Action::Prune`] of removes, applied only with `prune`: an extra grant is configuration the active site
//! lacks, as an extra job is). Both are sets, so a `PATCH` sent again changes nothing.
//!
//! A securable is planned when both sites' exports list its grants, or when the standby lacks a catalog or
//! schema that the same plan creates (its grants are then all adds, applied after the create). A table the
//! standby lacks is left out: its data comes by replication, its grants once it is there.

use super::{Action, Call, Change, KindObjects, Method, SiteExport};
use crate::rules::ObjectKind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The securable types whose grants sync writes.
const TYPES: [&str; 3] = ["catalog", "schema", "table"];

/// Principal to privileges.
type Assignments = BTreeMap<String, BTreeSet<String>>;

/// A grants export by `(securable_type, full_name)`.
fn by_securable(objects: &[Value]) -> BTreeMap<(String, String), Assignments> {
    let mut out = BTreeMap::new();
    for o in objects {
        let (Some(t), Some(n)) = (o.get("securable_type").and_then(Value::as_str), o.get("full_name").and_then(Value::as_str))
        else {
            continue;
        };
        let t = t.to_ascii_lowercase();
        if !TYPES.contains(&t.as_str()) {
            continue;
        }
        let mut a = Assignments::new();
        for p in o.get("privilege_assignments").and_then(Value::as_array).into_iter().flatten() {
            let Some(principal) = p.get("principal").and_then(Value::as_str) else { continue };
            let privileges = p.get("privileges").and_then(Value::as_array).into_iter().flatten();
            let set: BTreeSet<String> = privileges.filter_map(privilege).collect();
            if !set.is_empty() {
                a.entry(principal.to_owned()).or_default().extend(set);
            }
        }
        out.insert((t, n.to_owned()), a);
    }
    out
}

/// A privilege as a string, or as `{"privilege": ...}` (the REST answer of some versions).
fn privilege(v: &Value) -> Option<String> {
    v.as_str().or_else(|| v.get("privilege").and_then(Value::as_str)).map(str::to_owned)
}

/// The full names of a kind's objects in one export.
fn names(export: &SiteExport, kind: ObjectKind, field: &str) -> BTreeSet<String> {
    let objects = export.get(&kind).map(|k: &KindObjects| k.objects.as_slice()).unwrap_or_default();
    objects.iter().filter_map(|o| o.get(field).and_then(Value::as_str).map(str::to_owned)).collect()
}

/// The catalogs and schemas the active site has and the standby lacks (the plan creates them).
fn created(source: &SiteExport, target: &SiteExport) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (kind, field, t) in [(ObjectKind::Catalogs, "name", "catalog"), (ObjectKind::Schemas, "full_name", "schema")] {
        let there = names(target, kind, field);
        out.extend(names(source, kind, field).into_iter().filter(|n| !there.contains(n)).map(|n| (t.to_owned(), n)));
    }
    out
}

/// The grant changes: per securable, the adds (update) and, apart, the removes (prune).
pub(crate) fn plan(source: &SiteExport, target: &SiteExport) -> Vec<Change> {
    let objects = |e: &SiteExport| e.get(&ObjectKind::Grants).map(|k| k.objects.clone()).unwrap_or_default();
    let (src, tgt) = (by_securable(&objects(source)), by_securable(&objects(target)));
    let new = created(source, target);
    let empty = Assignments::new();
    let mut out = Vec::new();
    for (key, ours) in &src {
        let theirs = match tgt.get(key) {
            Some(t) => t,
            None if new.contains(key) => &empty,
            None => continue,
        };
        let name = format!("{}:{}", key.0, key.1);
        let adds = diff(ours, theirs);
        if !adds.is_empty() {
            let fields = adds.keys().cloned().collect();
            let call = patch(key, &adds, "add");
            out.push(Change {
                kind: ObjectKind::Grants,
                name: name.clone(),
                action: Action::Update { target: key.1.clone(), fields, call },
            });
        }
        let removes = diff(theirs, ours);
        if !removes.is_empty() {
            let call = patch(key, &removes, "remove");
            out.push(Change { kind: ObjectKind::Grants, name, action: Action::Prune { target: key.1.clone(), call } });
        }
    }
    out
}

/// What `a` grants that `b` does not, per principal.
fn diff(a: &Assignments, b: &Assignments) -> Assignments {
    let none = BTreeSet::new();
    a.iter()
        .map(|(p, privs)| (p.clone(), privs.difference(b.get(p).unwrap_or(&none)).cloned().collect::<BTreeSet<String>>()))
        .filter(|(_, d)| !d.is_empty())
        .collect()
}

/// The `PATCH` of a securable's grants: one change per principal, its privileges under `add` or `remove`.
fn patch(key: &(String, String), per: &Assignments, verb: &str) -> Call {
    let changes: Vec<Value> = per.iter().map(|(p, privs)| json!({ "principal": p, verb: privs })).collect();
    Call {
        method: Method::Patch,
        path: format!("/api/2.1/unity-catalog/permissions/{}/{}", key.0, key.1),
        body: json!({ "changes": changes }),
    }
}
