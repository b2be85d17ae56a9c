//! The replicated data plane document `{prefix}/data-plane`.

use crate::error::InvalidDocument;
use serde::{Deserialize, Serialize};

/// How a location's replica is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocationKind {
    /// A Delta table: the replica is judged by its `_delta_log`.
    Delta,
    /// A plain prefix (checkpoints, MLflow artifacts, Unity Catalog storage).
    Prefix,
    /// A Structured Streaming checkpoint (`offsets/`, `commits/`, `metadata`) writing into the Delta location
    /// named by its `sink`: the replica is judged by whether a restart from it would skip batches.
    StreamCheckpoint,
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
    /// For a `stream-checkpoint`: the `name` of the `delta` location the stream writes into (required there,
    /// refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// For a `stream-checkpoint` whose `foreachBatch` writes the sink with `txnAppId`/`txnVersion`: that app id (the
    /// sink's `txn` actions carry it rather than the query's id). Only with a `sink`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_app_id: Option<String>,
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
        let plane: DataPlane = serde_path_to_error::deserialize(de)
            .map_err(|e| InvalidDocument { what: what.to_owned(), problem: super::describe_path_error(&e) })?;
        plane.validate().map_err(|problem| InvalidDocument { what: what.to_owned(), problem })?;
        Ok(plane)
    }

    /// The location called `name`.
    pub fn location(&self, name: &str) -> Option<&Location> {
        self.locations.iter().find(|l| l.name == name)
    }

    /// Names are unique, and a `sink` is given exactly for a `stream-checkpoint`, naming a `delta` location.
    fn validate(&self) -> Result<(), String> {
        for (i, l) in self.locations.iter().enumerate() {
            if self.locations[..i].iter().any(|o| o.name == l.name) {
                return Err(format!("locations[{i}].name: {:?} is used by an earlier location; names must be unique", l.name));
            }
            match (l.kind, &l.sink) {
                (LocationKind::StreamCheckpoint, None) => {
                    return Err(format!(
                        "locations[{i}].sink: missing; a stream-checkpoint names the delta location it writes into"
                    ));
                }
                (LocationKind::StreamCheckpoint, Some(sink)) => match self.location(sink) {
                    Some(s) if s.kind == LocationKind::Delta => {}
                    Some(_) => return Err(format!("locations[{i}].sink: {sink:?} is not a delta location")),
                    None => return Err(format!("locations[{i}].sink: no location is named {sink:?}")),
                },
                (_, Some(_)) => {
                    return Err(format!("locations[{i}].sink: only a stream-checkpoint location has a sink"));
                }
                (_, None) => {}
            }
            if l.txn_app_id.as_deref().is_some_and(str::is_empty) || l.txn_app_id.is_some() && l.sink.is_none() {
                return Err(format!(
                    "locations[{i}].txn_app_id: only a stream-checkpoint with a sink has one, and it is not empty"
                ));
            }
        }
        Ok(())
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

    #[test]
    fn a_stream_checkpoint_names_its_delta_sink() {
        let ok = r#"{"locations":[
            {"name":"events","kind":"delta","primary":"s3://data-use1/t/events","replica":"s3://data-usw2/t/events"},
            {"name":"events-stream","kind":"stream-checkpoint","sink":"events","primary":"s3://data-use1/c/ev","replica":"s3://data-usw2/c/ev"}]}"#;
        let d = DataPlane::parse("d", ok).unwrap();
        assert_eq!(d.locations[1].kind, LocationKind::StreamCheckpoint);
        assert_eq!(d.locations[1].sink.as_deref(), Some("events"));
        let with_app = ok.replace(r#""sink":"events""#, r#""sink":"events","txn_app_id":"nightly-merge""#);
        assert_eq!(DataPlane::parse("d", &with_app).unwrap().locations[1].txn_app_id.as_deref(), Some("nightly-merge"));
        let round = serde_json::to_value(&d).unwrap();
        assert!(round["locations"][0].get("sink").is_none());
        assert_eq!(round["locations"][1]["kind"], "stream-checkpoint");

        for (doc, field) in [
            (ok.replace(r#""sink":"events","#, ""), "locations[1].sink: missing"),
            (ok.replace(r#""sink":"events""#, r#""sink":"nope""#), "no location is named"),
            (ok.replace(r#""sink":"events""#, r#""sink":"events-stream""#), "is not a delta location"),
            (ok.replace(r#""kind":"delta","#, r#""kind":"delta","sink":"events","#), "locations[0].sink: only"),
            (ok.replace("events-stream", "events"), "locations[1].name"),
            (ok.replace(r#""sink":"events""#, r#""sink":"events","extra":1"#), "unknown field"),
            (ok.replace(r#""kind":"delta","#, r#""kind":"delta","txn_app_id":"x","#), "locations[0].txn_app_id"),
            (ok.replace(r#""sink":"events""#, r#""sink":"events","txn_app_id":"""#), "locations[1].txn_app_id"),
        ] {
            let e = DataPlane::parse("d", &doc).unwrap_err().to_string();
            assert!(e.contains(field), "{e} should say {field}");
        }
    }
}
