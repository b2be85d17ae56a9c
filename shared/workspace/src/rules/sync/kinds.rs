//! Per kind: how an object is matched, which fields are written, how a body compares, and which calls create,
//! update and delete it.

use super::jobs;
use super::refs::Mapper;
use super::uc;
use super::{Action, Call, Change, Method};
use crate::rules::ObjectKind;
use crate::rules::identity;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Fields of a cluster policy that `policies/clusters/create` and `edit` take.
const POLICY_FIELDS: [&str; 7] = [
    "name",
    "description",
    "definition",
    "max_clusters_per_user",
    "policy_family_id",
    "policy_family_definition_overrides",
    "libraries",
];

/// Fields of an instance pool that `instance-pools/create` takes.
const POOL_FIELDS: [&str; 12] = [
    "instance_pool_name",
    "node_type_id",
    "min_idle_instances",
    "max_capacity",
    "idle_instance_autotermination_minutes",
    "aws_attributes",
    "custom_tags",
    "enable_elastic_disk",
    "disk_spec",
    "preloaded_spark_versions",
    "preloaded_docker_images",
    "node_type_flexibility",
];

/// Fields of an instance pool that `instance-pools/edit` may change (the others are fixed at creation).
const POOL_EDITABLE: [&str; 6] = [
    "instance_pool_name",
    "node_type_id",
    "min_idle_instances",
    "max_capacity",
    "idle_instance_autotermination_minutes",
    "custom_tags",
];

/// Fields of a SQL warehouse that `sql/warehouses` (create) and `{id}/edit` take.
const WAREHOUSE_FIELDS: [&str; 12] = [
    "name",
    "cluster_size",
    "min_num_clusters",
    "max_num_clusters",
    "auto_stop_mins",
    "tags",
    "spot_instance_policy",
    "enable_photon",
    "enable_serverless_compute",
    "warehouse_type",
    "channel",
    "instance_profile_arn",
];

/// The plan of one kind: the active site's `source` objects against the standby's `target`.
pub(crate) fn plan_kind(
    kind: ObjectKind,
    source: &[Value],
    target: &[Value],
    m: &Mapper<'_>,
    tag: Option<&(String, String)>,
) -> Vec<Change> {
    let (src, tgt) = (group(kind, source, tag), group(kind, target, tag));
    let mut out = Vec::new();
    // Each change is named by the object's identity, as drift names it (`nightly-etl [dr=active-passive]`).
    let named = |o: &Value, key: &str| identity::of(kind, o).unwrap_or_else(|| key.to_owned());
    for (key, copies) in &src {
        let name = named(copies[0], key);
        let there = tgt.get(key).map(Vec::as_slice).unwrap_or_default();
        let action = match (copies.as_slice(), there) {
            ([one], []) => match desired(kind, one, m, tag) {
                Ok(body) => Some(Action::Create { call: create(kind, body) }),
                Err(reason) => Some(Action::Blocked { reason }),
            },
            ([one], [theirs]) => update(kind, one, theirs, m, tag),
            (many, _) if many.len() > 1 => Some(Action::Blocked {
                reason: format!("the active site has {} objects of this name: which to sync is unclear", many.len()),
            }),
            (_, many) => Some(Action::Blocked {
                reason: format!("the standby has {} objects of this name: which to update is unclear", many.len()),
            }),
        };
        out.extend(action.map(|action| Change { kind, name, action }));
    }
    for (key, theirs) in &tgt {
        if src.contains_key(key) {
            continue;
        }
        for t in theirs.iter().filter(|t| !never_pruned(kind, t)) {
            if let Some(id) = target_id(kind, t) {
                out.push(Change { kind, name: named(t, key), action: Action::Prune { call: delete(kind, &id), target: id } });
            }
        }
    }
    out
}

/// A side's objects by their sync key.
fn group<'v>(kind: ObjectKind, objects: &'v [Value], tag: Option<&(String, String)>) -> BTreeMap<String, Vec<&'v Value>> {
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for o in objects.iter().filter(|o| !skipped(kind, o)) {
        if let Some(k) = key(kind, o, tag) {
            by.entry(k).or_default().push(o);
        }
    }
    by
}

/// Objects sync leaves alone on both sides.
fn skipped(kind: ObjectKind, o: &Value) -> bool {
    match kind {
        ObjectKind::Clusters => identity::is_ephemeral(kind, o),
        ObjectKind::Catalogs => crate::rules::is_builtin_catalog(o),
        ObjectKind::Schemas => crate::rules::is_builtin_schema(o),
        _ => false,
    }
}

/// Objects of the standby never pruned: Databricks' own default policies.
fn never_pruned(kind: ObjectKind, o: &Value) -> bool {
    kind == ObjectKind::ClusterPolicies && o.get("is_default").and_then(Value::as_bool) == Some(true)
}

pub(crate) fn key(kind: ObjectKind, o: &Value, tag: Option<&(String, String)>) -> Option<String> {
    match kind {
        ObjectKind::Jobs => jobs::key(o, tag),
        _ => identity::of(kind, o),
    }
}

fn target_id(kind: ObjectKind, o: &Value) -> Option<String> {
    let (id, _) = super::refs::id_and_name(kind)?;
    match o.get(id)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The body to write, from the active site's object.
fn desired(kind: ObjectKind, o: &Value, m: &Mapper<'_>, tag: Option<&(String, String)>) -> Result<Value, String> {
    match kind {
        ObjectKind::Jobs => jobs::desired(o, m, tag),
        ObjectKind::ClusterPolicies => policy(o, m),
        ObjectKind::Catalogs | ObjectKind::Schemas => uc::desired(kind, o, m),
        ObjectKind::InstancePools => {
            let mut body = pick(o, &POOL_FIELDS);
            if let Some(Value::Object(aws)) = body.get_mut("aws_attributes") {
                m.aws_attributes(aws)?;
            }
            Ok(Value::Object(body))
        }
        ObjectKind::SqlWarehouses => {
            let mut body = pick(o, &WAREHOUSE_FIELDS);
            if let Some(arn) = body.get("instance_profile_arn").filter(|a| a.as_str().is_some_and(|s| !s.is_empty())) {
                let p = m.mapped(&m.settings.instance_profiles, "instance profile", arn)?;
                body.insert("instance_profile_arn".into(), p);
            }
            Ok(Value::Object(body))
        }
        other => Err(format!("{other} are not synced")),
    }
}

/// The comparable form of a body, or of the standby's object: the same allow-list and normalisation.
pub(crate) fn comparable(kind: ObjectKind, o: &Value, is_body: bool) -> Value {
    match kind {
        ObjectKind::Jobs if is_body => jobs::normalize(o),
        ObjectKind::Jobs => jobs::normalize(o.get("settings").unwrap_or(&Value::Null)),
        ObjectKind::ClusterPolicies => {
            let mut p = pick(o, &POLICY_FIELDS);
            if p.contains_key("policy_family_id") {
                // The API derives the definition from the family and the overrides.
                p.remove("definition");
            }
            for field in ["definition", "policy_family_definition_overrides"] {
                if let Some(Value::String(s)) = p.get(field) {
                    let parsed = serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()));
                    p.insert(field.into(), parsed);
                }
            }
            Value::Object(p)
        }
        ObjectKind::InstancePools => Value::Object(pick(o, &POOL_FIELDS)),
        ObjectKind::Catalogs | ObjectKind::Schemas => uc::comparable(o),
        ObjectKind::SqlWarehouses => {
            let mut w = pick(o, &WAREHOUSE_FIELDS);
            if w.get("instance_profile_arn").and_then(Value::as_str) == Some("") {
                w.remove("instance_profile_arn");
            }
            Value::Object(w)
        }
        _ => o.clone(),
    }
}

/// The update of an object both sites have, `None` when the standby's already compares equal.
fn update(kind: ObjectKind, ours: &Value, theirs: &Value, m: &Mapper<'_>, tag: Option<&(String, String)>) -> Option<Action> {
    let body = match desired(kind, ours, m, tag) {
        Ok(b) => b,
        Err(reason) => return Some(Action::Blocked { reason }),
    };
    let (want, have) = (comparable(kind, &body, true), comparable(kind, theirs, false));
    if identity::canonical(&want) == identity::canonical(&have) {
        return None;
    }
    let fields = differing(&want, &have);
    let id = target_id(kind, theirs)?;
    if kind == ObjectKind::InstancePools {
        let fixed: Vec<&String> = fields.iter().filter(|f| !POOL_EDITABLE.contains(&f.as_str())).collect();
        if !fixed.is_empty() {
            let list: Vec<&str> = fixed.iter().map(|s| s.as_str()).collect();
            return Some(Action::Blocked {
                reason: format!(
                    "{} cannot be changed on an existing pool (instance-pools/edit): recreate the standby's pool by hand",
                    list.join(", ")
                ),
            });
        }
    }
    let call = match kind {
        ObjectKind::Catalogs | ObjectKind::Schemas => uc::update_call(kind, &id, &body, &fields),
        _ => update_call(kind, &id, body),
    };
    Some(Action::Update { target: id, fields, call })
}

/// The top-level keys whose values differ, sorted.
fn differing(a: &Value, b: &Value) -> Vec<String> {
    let empty = Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k).map(identity::canonical) != b.get(*k).map(identity::canonical))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn pick(o: &Value, fields: &[&str]) -> Map<String, Value> {
    fields.iter().filter_map(|f| Some(((*f).to_owned(), o.get(*f)?.clone()))).filter(|(_, v)| !v.is_null()).collect()
}

/// A policy's body with the site-local values of its definition mapped.
fn policy(o: &Value, m: &Mapper<'_>) -> Result<Value, String> {
    let mut body = pick(o, &POLICY_FIELDS);
    if body.contains_key("policy_family_id") {
        body.remove("definition");
    }
    if let Some(Value::String(def)) = body.get("definition") {
        let Ok(Value::Object(mut rules)) = serde_json::from_str::<Value>(def) else {
            return Err("its definition is not a JSON object".into());
        };
        policy_rules(&mut rules, m)?;
        body.insert("definition".into(), Value::String(Value::Object(rules).to_string()));
    }
    Ok(Value::Object(body))
}

/// Maps the values of the rules that name site-local things: pools, the instance profile, the zone.
fn policy_rules(rules: &mut Map<String, Value>, m: &Mapper<'_>) -> Result<(), String> {
    for (path, rule) in rules.iter_mut() {
        let Value::Object(rule) = rule else { continue };
        let map_one = |v: &Value| -> Result<Value, String> {
            match path.as_str() {
                "instance_pool_id" | "driver_instance_pool_id" => m.object_id(ObjectKind::InstancePools, v),
                "aws_attributes.instance_profile_arn" => m.mapped(&m.settings.instance_profiles, "instance profile", v),
                "aws_attributes.zone_id" if v.as_str() != Some("auto") => m.mapped(&m.settings.zone_ids, "availability zone", v),
                _ => Ok(v.clone()),
            }
        };
        for field in ["value", "defaultValue"] {
            if let Some(v) = rule.get(field) {
                let mapped = map_one(v).map_err(|e| format!("rule {path}: {e}"))?;
                rule.insert(field.into(), mapped);
            }
        }
        if let Some(Value::Array(values)) = rule.get("values") {
            let mapped: Result<Vec<Value>, String> =
                values.iter().map(|v| map_one(v).map_err(|e| format!("rule {path}: {e}"))).collect();
            rule.insert("values".into(), Value::Array(mapped?));
        }
    }
    Ok(())
}

fn post(path: &str, body: Value) -> Call {
    Call { method: Method::Post, path: path.to_owned(), body }
}

/// The create call of a kind.
fn create(kind: ObjectKind, body: Value) -> Call {
    match kind {
        ObjectKind::Jobs => post("/api/2.2/jobs/create", body),
        ObjectKind::ClusterPolicies => post("/api/2.0/policies/clusters/create", body),
        ObjectKind::InstancePools => post("/api/2.0/instance-pools/create", body),
        ObjectKind::Catalogs | ObjectKind::Schemas => uc::create_call(kind, body),
        _ => post("/api/2.0/sql/warehouses", body),
    }
}

/// The full-replacement update call of a kind.
fn update_call(kind: ObjectKind, id: &str, body: Value) -> Call {
    let with = |field: &str, body: Value| {
        let mut b = body.as_object().cloned().unwrap_or_default();
        b.insert(field.into(), Value::String(id.to_owned()));
        Value::Object(b)
    };
    match kind {
        ObjectKind::Jobs => {
            let job_id = id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(id.to_owned()));
            post("/api/2.2/jobs/reset", json!({ "job_id": job_id, "new_settings": body }))
        }
        ObjectKind::ClusterPolicies => post("/api/2.0/policies/clusters/edit", with("policy_id", body)),
        ObjectKind::InstancePools => {
            let editable = Value::Object(pick(&body, &POOL_EDITABLE));
            post("/api/2.0/instance-pools/edit", with("instance_pool_id", editable))
        }
        _ => post(&format!("/api/2.0/sql/warehouses/{id}/edit"), body),
    }
}

/// The delete call of a kind.
fn delete(kind: ObjectKind, id: &str) -> Call {
    match kind {
        ObjectKind::Jobs => {
            let job_id = id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(id.to_owned()));
            post("/api/2.2/jobs/delete", json!({ "job_id": job_id }))
        }
        ObjectKind::ClusterPolicies => post("/api/2.0/policies/clusters/delete", json!({ "policy_id": id })),
        ObjectKind::InstancePools => post("/api/2.0/instance-pools/delete", json!({ "instance_pool_id": id })),
        ObjectKind::Catalogs | ObjectKind::Schemas => uc::delete_call(kind, id),
        _ => Call { method: Method::Delete, path: format!("/api/2.0/sql/warehouses/{id}"), body: Value::Null },
    }
}
