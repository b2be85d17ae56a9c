//! The replicated data plane document `{prefix}/data-plane`.

use crate::error::InvalidDocument;
use serde::{Deserialize, Serialize};

/// How a location's replica is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    /// A Delta table: the replica is judged by its `_delta_log`.
    Delta,
    /// A plain prefix (checkpoints, MLflow artifacts, Unity Catalog storage).
    Prefix,
}

/// One replicated location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Operator-chosen name, e.g. `sales.orders`.
    pub name: String,
    /// `delta` or `prefix`.
    pub kind: LocationKind,
    /// `s3://bucket/path` in the primary region.
    pub primary: S3Url,
    /// `s3://bucket/path` of its replica.
    pub replica: S3Url,
}

/// An `s3://bucket/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, without a leading `/` (may be empty).
    pub prefix: String,
}

impl TryFrom<String> for S3Url {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| format!("{s:?} is not an s3:// URL; expected s3://bucket/path"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        crate::names::BucketName::parse(bucket).map_err(|p| format!("bucket {bucket:?} in {s:?} {p}"))?;
        Ok(S3Url { bucket: bucket.to_owned(), prefix: prefix.trim_end_matches('/').to_owned() })
    }
}

impl From<S3Url> for String {
    fn from(u: S3Url) -> String {
        if u.prefix.is_empty() { format!("s3://{}", u.bucket) } else { format!("s3://{}/{}", u.bucket, u.prefix) }
    }
}

/// The validated data-plane document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlane {
    /// Replicated locations.
    pub locations: Vec<Location>,
}

impl DataPlane {
    /// Validates the document; errors name the field.
    pub fn parse(what: &str, json: &str) -> Result<DataPlane, InvalidDocument> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de)
            .map_err(|e| InvalidDocument { what: what.to_owned(), problem: super::describe_path_error(&e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let d = DataPlane::parse(
            "d",
            r#"{"locations":[{"name":"orders","kind":"delta","primary":"s3://data-use1/tables/orders/","replica":"s3://data-usw2/tables/orders"}]}"#,
        )
        .unwrap();
        assert_eq!(d.locations[0].primary.prefix, "tables/orders");
        assert_eq!(String::from(d.locations[0].replica.clone()), "s3://data-usw2/tables/orders");
    }

    #[test]
    fn names_the_bad_location_field() {
        let e =
            DataPlane::parse("d", r#"{"locations":[{"name":"o","kind":"delta","primary":"https://x","replica":"s3://b/p"}]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("locations[0].primary"), "{e}");
        let e =
            DataPlane::parse("d", r#"{"locations":[{"name":"o","kind":"iceberg","primary":"s3://a/b","replica":"s3://b/p"}]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("locations[0].kind"), "{e}");
    }
}
