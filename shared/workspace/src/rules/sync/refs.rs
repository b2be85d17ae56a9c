//! Mapping the active site's site-local values onto the standby's: object ids by the name of the object in the
//! standby, and the values of the `sync` section ([`SyncSettings`]). Each failure is the reason an object is
//! blocked.

use super::settings::SyncSettings;
use super::{KindObjects, SiteExport};
use crate::rules::ObjectKind;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The marker of a reference to an object that the same plan creates: `${sync:instance-pools:NAME}`.
pub fn placeholder(kind: ObjectKind, name: &str) -> String {
    format!("${{sync:{kind}:{name}}}")
}

/// `(kind, name)` of every [`placeholder`] in `value` (in its strings, at any depth).
pub fn placeholders_in(value: &Value) -> Vec<(ObjectKind, String)> {
    let mut out = Vec::new();
    walk(value, &mut |s| {
        let mut rest = s;
        while let Some(at) = rest.find("${sync:") {
            let Some(len) = rest[at..].find('}').map(|end| end + 1) else { break };
            out.extend(parse_placeholder(&rest[at..at + len]));
            rest = &rest[at + len..];
        }
    });
    out
}

/// Replaces every [`placeholder`] whose object `resolve` knows by its id; the placeholders it does not know.
pub fn replace_placeholders(value: &mut Value, resolve: &dyn Fn(ObjectKind, &str) -> Option<String>) -> Vec<String> {
    let mut missing = Vec::new();
    replace(value, resolve, &mut missing);
    missing
}

fn replace(value: &mut Value, resolve: &dyn Fn(ObjectKind, &str) -> Option<String>, missing: &mut Vec<String>) {
    match value {
        // A placeholder may be the whole string or inside one (a policy's definition is JSON in a string).
        Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(at) = rest.find("${sync:") {
                let Some(len) = rest[at..].find('}').map(|end| end + 1) else { break };
                out.push_str(&rest[..at]);
                let marker = &rest[at..at + len];
                match parse_placeholder(marker) {
                    Some((kind, name)) => match resolve(kind, &name) {
                        Some(id) => out.push_str(&id),
                        None => {
                            missing.push(format!("{} {name}", kind.count_phrase(1).trim_start_matches("1 ")));
                            out.push_str(marker);
                        }
                    },
                    None => out.push_str(marker),
                }
                rest = &rest[at + len..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|v| replace(v, resolve, missing)),
        Value::Object(o) => o.values_mut().for_each(|v| replace(v, resolve, missing)),
        _ => {}
    }
}

fn walk(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        Value::Object(o) => o.values().for_each(|v| walk(v, f)),
        _ => {}
    }
}

fn parse_placeholder(s: &str) -> Option<(ObjectKind, String)> {
    let inner = s.strip_prefix("${sync:")?.strip_suffix('}')?;
    let (kind, name) = inner.split_once(':')?;
    Some((ObjectKind::parse(kind)?, name.to_owned()))
}

/// The id field and name field of the kinds referenced by id.
pub(crate) fn id_and_name(kind: ObjectKind) -> Option<(&'static str, &'static str)> {
    match kind {
        ObjectKind::ClusterPolicies => Some(("policy_id", "name")),
        ObjectKind::InstancePools => Some(("instance_pool_id", "instance_pool_name")),
        ObjectKind::SqlWarehouses => Some(("id", "name")),
        ObjectKind::Clusters => Some(("cluster_id", "cluster_name")),
        ObjectKind::Jobs => Some(("job_id", "name")),
        // Unity Catalog objects are addressed by their names.
        ObjectKind::Catalogs => Some(("name", "name")),
        ObjectKind::Schemas => Some(("full_name", "full_name")),
        _ => None,
    }
}

/// Ids to names (active site) and names to ids (standby), per referenced kind, and the `sync` mappings.
pub(crate) struct Mapper<'a> {
    source_names: BTreeMap<ObjectKind, BTreeMap<String, String>>,
    target_ids: BTreeMap<ObjectKind, BTreeMap<String, Vec<String>>>,
    /// Names of the active site's objects of each synced kind (the plan creates those the standby lacks).
    source_has: BTreeMap<ObjectKind, BTreeMap<String, usize>>,
    /// The `sync` section of the standby's document.
    pub settings: &'a SyncSettings,
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Mapper<'a> {
    /// The lookups of two exports.
    pub(crate) fn new(source: &SiteExport, target: &SiteExport, settings: &'a SyncSettings) -> Mapper<'a> {
        let kinds = [ObjectKind::ClusterPolicies, ObjectKind::InstancePools, ObjectKind::SqlWarehouses, ObjectKind::Clusters];
        let mut m = Mapper { source_names: BTreeMap::new(), target_ids: BTreeMap::new(), source_has: BTreeMap::new(), settings };
        for kind in kinds {
            let Some((id, name)) = id_and_name(kind) else { continue };
            let pairs = |k: Option<&KindObjects>| -> Vec<(String, String)> {
                k.map(|k| k.objects.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|o| Some((scalar_text(o.get(id)?)?, scalar_text(o.get(name)?)?)))
                    .collect()
            };
            let src = pairs(source.get(&kind));
            for (_, n) in &src {
                *m.source_has.entry(kind).or_default().entry(n.clone()).or_insert(0) += 1;
            }
            m.source_names.insert(kind, src.into_iter().collect());
            let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (i, n) in pairs(target.get(&kind)) {
                by_name.entry(n).or_default().push(i);
            }
            m.target_ids.insert(kind, by_name);
        }
        m
    }

    /// The standby's id of the object the active site names by `id` (or a [`placeholder`] when the plan
    /// creates it), or why there is none.
    pub(crate) fn object_id(&self, kind: ObjectKind, id: &Value) -> Result<Value, String> {
        let noun = kind.count_phrase(1).trim_start_matches("1 ").to_owned();
        let id = scalar_text(id).ok_or_else(|| format!("a {noun} reference is {id}, not an id"))?;
        if refs_placeholder(&id) {
            return Ok(Value::String(id));
        }
        let name = self
            .source_names
            .get(&kind)
            .and_then(|m| m.get(&id))
            .ok_or_else(|| format!("references {noun} {id}, which the active site's export does not list"))?;
        match self.target_ids.get(&kind).and_then(|m| m.get(name)).map(Vec::as_slice) {
            Some([one]) => Ok(Value::String(one.clone())),
            Some(many) if many.len() > 1 => {
                Err(format!("references {noun} {name:?}, and the standby has {} of that name", many.len()))
            }
            _ if kind != ObjectKind::Clusters && self.source_has.get(&kind).and_then(|m| m.get(name)) == Some(&1) => {
                Ok(Value::String(placeholder(kind, name)))
            }
            _ => Err(format!("references {noun} {name:?}, which the standby does not have")),
        }
    }

    /// The standby's value of a mapped site-local value, or why there is none.
    pub(crate) fn mapped(&self, map: &BTreeMap<String, String>, what: &str, value: &Value) -> Result<Value, String> {
        let v = value.as_str().ok_or_else(|| format!("{what} is {value}, not a string"))?;
        map.get(v)
            .map(|s| Value::String(s.clone()))
            .ok_or_else(|| format!("{what} {v:?} has no mapping in the standby's `sync` section"))
    }

    /// A storage path mapped by its longest prefix in `sync.storage_roots`, or why not.
    pub(crate) fn storage(&self, what: &str, value: &Value) -> Result<Value, String> {
        let v = value.as_str().ok_or_else(|| format!("{what} is {value}, not a string"))?;
        self.settings
            .storage_path(v)
            .map(Value::String)
            .ok_or_else(|| format!("{what} {v:?} has no prefix in the standby's `sync.storage_roots`"))
    }

    /// A cluster specification (a job's `new_cluster`, or an instance pool's attributes) with its site-local
    /// values mapped: policy and pool ids, the instance profile, the zone; its own cluster id left out.
    pub(crate) fn cluster(&self, spec: &mut Map<String, Value>) -> Result<(), String> {
        spec.remove("cluster_id");
        if let Some(v) = spec.get("policy_id") {
            let id = self.object_id(ObjectKind::ClusterPolicies, v)?;
            spec.insert("policy_id".into(), id);
        }
        for key in ["instance_pool_id", "driver_instance_pool_id"] {
            if let Some(v) = spec.get(key) {
                let id = self.object_id(ObjectKind::InstancePools, v)?;
                spec.insert(key.into(), id);
            }
        }
        if let Some(Value::Object(aws)) = spec.get_mut("aws_attributes") {
            self.aws_attributes(aws)?;
        }
        if let Some(dest) = spec.get("cluster_log_conf").and_then(|c| c.get("s3")).and_then(|s| s.get("destination")).cloned() {
            let mapped = self.storage("the cluster log destination", &dest)?;
            if let Some(Value::Object(s3)) = spec.get_mut("cluster_log_conf").and_then(|c| c.get_mut("s3")) {
                s3.insert("destination".into(), mapped);
                s3.remove("region");
            }
        }
        Ok(())
    }

    /// `aws_attributes` with the zone and instance profile mapped (a zone of `auto` is kept).
    pub(crate) fn aws_attributes(&self, aws: &mut Map<String, Value>) -> Result<(), String> {
        if let Some(z) = aws.get("zone_id").filter(|z| z.as_str() != Some("auto")) {
            let zone = self.mapped(&self.settings.zone_ids, "availability zone", z)?;
            aws.insert("zone_id".into(), zone);
        }
        if let Some(arn) = aws.get("instance_profile_arn") {
            let p = self.mapped(&self.settings.instance_profiles, "instance profile", arn)?;
            aws.insert("instance_profile_arn".into(), p);
        }
        Ok(())
    }
}

fn refs_placeholder(s: &str) -> bool {
    parse_placeholder(s).is_some()
}
