//! Unity Catalog tables and grants in one shape, whichever way they were read: by the REST API (one listing per
//! schema, one `permissions` call per securable) or in bulk from `system.information_schema` through the SQL
//! Statement Execution API. The two exports of one workspace are then the same documents, so that drift never
//! depends on how a site was read.
//!
//! A table is [`TABLE_FIELDS`] (what both sources have; `information_schema.tables` has no table id, metastore
//! id nor properties, and ids differ between sites anyway). A grant is `{securable_type, full_name,
//! privilege_assignments}` with the direct grants only, principals in order and each one's privileges in order,
//! spelled as the REST API spells them (`USE_CATALOG`, where `information_schema` says `USE CATALOG`).

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The fields of an exported table, as `GET /api/2.1/unity-catalog/tables` names them.
pub const TABLE_FIELDS: [&str; 13] = [
    "name",
    "catalog_name",
    "schema_name",
    "full_name",
    "table_type",
    "data_source_format",
    "storage_location",
    "owner",
    "comment",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
];

/// A table of the REST listing as exported: [`TABLE_FIELDS`] only, nulls left out.
pub fn table_document(table: &Value) -> Value {
    let mut out = Map::new();
    for key in TABLE_FIELDS {
        if let Some(v) = table.get(key).filter(|v| !v.is_null()) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// A row of `system.information_schema.tables` (column name to value, as the JSON_ARRAY format gives them:
/// strings or null) as the REST listing's table ([`table_document`]'s shape). `None` without its three names.
pub fn table_from_information_schema(row: &Map<String, Value>) -> Option<Value> {
    let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
    let (catalog, schema, name) = (text("table_catalog")?, text("table_schema")?, text("table_name")?);
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("catalog_name".into(), json!(catalog));
    out.insert("schema_name".into(), json!(schema));
    out.insert("full_name".into(), json!(format!("{catalog}.{schema}.{name}")));
    for (to, from) in [
        ("table_type", "table_type"),
        ("data_source_format", "data_source_format"),
        ("storage_location", "storage_path"),
        ("owner", "table_owner"),
        ("comment", "comment"),
        ("created_by", "created_by"),
        ("updated_by", "last_altered_by"),
    ] {
        if let Some(v) = text(from) {
            out.insert(to.into(), json!(v));
        }
    }
    // The REST API gives epoch milliseconds where information_schema gives a TIMESTAMP.
    for (to, from) in [("created_at", "created"), ("updated_at", "last_altered")] {
        if let Some(ms) = text(from).and_then(|t| epoch_ms(&t)) {
            out.insert(to.into(), json!(ms));
        }
    }
    Some(Value::Object(out))
}

/// Epoch milliseconds of a SQL TIMESTAMP as JSON_ARRAY renders it (RFC 3339; a space for the `T` is accepted).
fn epoch_ms(t: &str) -> Option<i64> {
    let t = t.replacen(' ', "T", 1);
    let parsed = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A REST `privilege_assignments` array in order: principals sorted, each one's privileges sorted.
pub fn canonical_assignments(assignments: &Value) -> Value {
    let Some(list) = assignments.as_array() else { return json!([]) };
    let mut list: Vec<Value> = list
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if let Some(Value::Array(p)) = a.get_mut("privileges") {
                p.sort_by_key(Value::to_string);
            }
            a
        })
        .collect();
    list.sort_by_key(|x| x.get("principal").map(Value::to_string));
    Value::Array(list)
}

/// The direct grants of securables of one type: full name, then principal, then privileges.
pub type Grants = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The direct grants of each securable from `information_schema` privilege rows: keyed by the securable's full
/// name (its `name_columns` joined by dots), the `grantee`s with their privileges (`privilege_type`,
/// underscores for spaces). Rows whose `inherited_from` is not `NONE` are inherited grants, which the REST API's
/// `permissions` does not list: left out.
pub fn grants_from_information_schema(rows: &[Map<String, Value>], name_columns: &[&str]) -> Grants {
    let mut out = Grants::new();
    for row in rows {
        let text = |k: &str| row.get(k).and_then(Value::as_str);
        if text("inherited_from").is_some_and(|i| i != "NONE") {
            continue;
        }
        let Some(parts) = name_columns.iter().map(|c| text(c)).collect::<Option<Vec<&str>>>() else { continue };
        let (Some(grantee), Some(privilege)) = (text("grantee"), text("privilege_type")) else { continue };
        out.entry(parts.join(".")).or_default().entry(grantee.to_owned()).or_default().insert(privilege.trim().replace(' ', "_"));
    }
    out
}

/// A securable's `privilege_assignments` from [`grants_from_information_schema`]'s entry (absent: no grants).
pub fn assignments_of(grants: Option<&BTreeMap<String, BTreeSet<String>>>) -> Value {
    let list: Vec<Value> = grants
        .map(|g| g.iter().map(|(principal, privileges)| json!({"principal": principal, "privileges": privileges})).collect())
        .unwrap_or_default();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_table_read_either_way_is_the_same_document() {
        let rest = json!({"name": "orders", "catalog_name": "sales", "schema_name": "raw", "full_name": "sales.raw.orders",
            "table_type": "EXTERNAL", "data_source_format": "DELTA", "storage_location": "s3://b/orders", "owner": "eng",
            "created_at": 1_736_067_600_000_i64, "updated_at": 1_736_067_600_500_i64, "table_id": "t1", "metastore_id": "m",
            "properties": {"delta.appendOnly": "true"}, "comment": null});
        let sql = row(json!({"table_catalog": "sales", "table_schema": "raw", "table_name": "orders", "table_type": "EXTERNAL",
            "table_owner": "eng", "comment": null, "created": "2025-01-05T09:00:00.000Z", "created_by": null,
            "last_altered": "2025-01-05 09:00:00.500Z", "last_altered_by": null, "data_source_format": "DELTA",
            "storage_path": "s3://b/orders"}));
        assert_eq!(table_from_information_schema(&sql).unwrap(), table_document(&rest));
        assert!(table_document(&rest).get("table_id").is_none());
    }

    #[test]
    fn only_direct_grants_spelled_as_the_rest_api_in_order() {
        let rows = [
            row(
                json!({"grantee": "b", "table_catalog": "c", "table_schema": "s", "table_name": "t", "privilege_type": "SELECT", "inherited_from": "NONE"}),
            ),
            row(
                json!({"grantee": "a", "table_catalog": "c", "table_schema": "s", "table_name": "t", "privilege_type": "ALL PRIVILEGES", "inherited_from": "NONE"}),
            ),
            row(
                json!({"grantee": "b", "table_catalog": "c", "table_schema": "s", "table_name": "t", "privilege_type": "MODIFY", "inherited_from": "NONE"}),
            ),
            row(
                json!({"grantee": "z", "table_catalog": "c", "table_schema": "s", "table_name": "t", "privilege_type": "SELECT", "inherited_from": "c.s"}),
            ),
        ];
        let g = grants_from_information_schema(&rows, &["table_catalog", "table_schema", "table_name"]);
        let sql = assignments_of(g.get("c.s.t"));
        let rest = canonical_assignments(
            &json!([{"principal": "b", "privileges": ["SELECT", "MODIFY"]}, {"principal": "a", "privileges": ["ALL_PRIVILEGES"]}]),
        );
        assert_eq!(sql, rest);
        assert_eq!(assignments_of(g.get("c.s.other")), json!([]));
    }
}
