//! Unity Catalog catalogs and schemas: matched by name (a schema by its full name), created with their storage
//! root mapped through `sync.storage_roots` (never copied: an unmappable root blocks that one object), updated
//! by `PATCH` of the fields that may change (comment, properties, owner), deleted only by a prune.
//!
//! The storage root is fixed at creation: a standby object whose root differs is left as it is (the API cannot
//! move it). The create call takes no owner (the caller owns what it creates), so a create's body carries the
//! active site's `owner` for the apply to set by a `PATCH` right after the create.

use super::refs::Mapper;
use super::{Call, Method};
use crate::rules::ObjectKind;
use serde_json::{Map, Value};

/// The fields a catalog or schema `PATCH` changes, the ones the plan compares (`isolation_mode`: catalogs only).
pub(crate) const EDITABLE: [&str; 4] = ["comment", "owner", "properties", "isolation_mode"];

/// The fields the create takes none of, set by the apply's `PATCH` right after it.
pub const AFTER_CREATE: [&str; 2] = ["owner", "isolation_mode"];

/// The base path of a kind's objects.
fn base(kind: ObjectKind) -> &'static str {
    if kind == ObjectKind::Catalogs { "/api/2.1/unity-catalog/catalogs" } else { "/api/2.1/unity-catalog/schemas" }
}

/// The path of one object by its name (a catalog's name, a schema's full name).
pub fn object_path(kind: ObjectKind, name: &str) -> String {
    format!("{}/{name}", base(kind))
}

/// The create body, from the active site's object; the owner rides along for the apply's `PATCH`.
pub(crate) fn desired(kind: ObjectKind, o: &Value, m: &Mapper<'_>) -> Result<Value, String> {
    if kind == ObjectKind::Catalogs
        && let Some(t) = o.get("catalog_type").and_then(Value::as_str).filter(|t| *t != "MANAGED_CATALOG")
    {
        return Err(format!("a catalog of type {t} is not synced: create it in the standby by hand"));
    }
    let fields: &[&str] = if kind == ObjectKind::Catalogs {
        &["name", "comment", "properties"]
    } else {
        &["name", "catalog_name", "comment", "properties"]
    };
    let mut body: Map<String, Value> =
        fields.iter().filter_map(|f| Some(((*f).to_owned(), o.get(*f).filter(|v| !v.is_null())?.clone()))).collect();
    if let Some(root) = o.get("storage_root").filter(|r| r.as_str().is_some_and(|s| !s.is_empty())) {
        body.insert("storage_root".into(), m.storage("storage root", root)?);
    }
    for f in AFTER_CREATE.iter().filter(|f| kind == ObjectKind::Catalogs || **f == "owner") {
        if let Some(v) = o.get(*f).filter(|v| v.is_string()) {
            body.insert((*f).into(), v.clone());
        }
    }
    Ok(Value::Object(body))
}

/// The comparable form: the editable fields, an empty comment or property map as absent.
pub(crate) fn comparable(o: &Value) -> Value {
    let mut out = Map::new();
    for f in EDITABLE {
        match o.get(f) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Object(p)) if p.is_empty() => {}
            Some(v) => {
                out.insert(f.to_owned(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The `PATCH` of the differing editable `fields`, from the desired body (a field the active site lacks is
/// cleared: an empty comment, no properties).
pub(crate) fn update_call(kind: ObjectKind, name: &str, body: &Value, fields: &[String]) -> Call {
    let mut patch = Map::new();
    for f in fields.iter().filter(|f| EDITABLE.contains(&f.as_str())) {
        let v = match (f.as_str(), body.get(f)) {
            (_, Some(v)) => v.clone(),
            ("properties", None) => Value::Object(Map::new()),
            (_, None) => Value::String(String::new()),
        };
        patch.insert(f.clone(), v);
    }
    Call { method: Method::Patch, path: object_path(kind, name), body: Value::Object(patch) }
}

/// The create call; the body without its owner (set by the apply's `PATCH` after).
pub(crate) fn create_call(kind: ObjectKind, body: Value) -> Call {
    Call { method: Method::Post, path: base(kind).to_owned(), body }
}

/// The delete call: never forced, so a catalog that still holds schemas is refused rather than emptied.
pub(crate) fn delete_call(kind: ObjectKind, name: &str) -> Call {
    Call { method: Method::Delete, path: object_path(kind, name), body: Value::Null }
}
