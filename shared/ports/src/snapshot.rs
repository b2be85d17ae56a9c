//! Metadata snapshots under `snapshots/{id}/`, with a `manifest.json` holding each file's sha256.
//!
//! Sources are pluggable ([`SnapshotSource`]): the DR parameter tree is built in; Delta tables, replication
//! incidents and Databricks workspace objects join as their own sources.

use crate::error::StoreError;
use crate::{ControlBucket, Parameter, WriteCondition};
use domain::primitives::rfc3339;
use domain::primitives::sha256_hex;
use futures_util::future::{BoxFuture, try_join_all};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// A file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Name inside the snapshot folder, e.g. `parameters.json`.
    pub name: String,
    /// The bytes written (JSON for every built-in source).
    pub body: Vec<u8>,
}

/// What sources see: what the engine has already read (no source repeats an AWS call the engine made).
#[derive(Debug)]
pub struct SnapshotContext<'a> {
    /// The parameter tree under the prefix, as read (SecureString values are SSM ciphertext and are never
    /// copied: see [`tree_file`]).
    pub tree: &'a [Parameter],
    /// The SSM prefix the tree was read under.
    pub prefix: &'a str,
    /// When the snapshot is taken (its folder's name and the files' time stamps).
    pub now: OffsetDateTime,
    /// No promotion waits for this snapshot (the `snapshot` command, scheduled or on demand): a source may take its
    /// longer deadline. `false` on a failover's path, where sources return by their short deadline.
    pub patient: bool,
}

/// A source of snapshot files.
pub trait SnapshotSource: Send + Sync {
    /// A short name, for errors and the manifest.
    fn name(&self) -> &'static str;
    /// Collects the source's files.
    fn collect<'a>(&'a self, ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Result<Vec<SnapshotFile>, StoreError>>;
    /// Findings for `check` about what the source reads (the Delta source: replication coverage); none by default.
    fn findings<'a>(&'a self, _ctx: &'a SnapshotContext<'a>) -> BoxFuture<'a, Vec<crate::finding::Finding>> {
        Box::pin(async { Vec::new() })
    }
}

/// The DR parameter tree: names, types, versions, last-modified, values (SecureString values withheld).
pub fn tree_file(tree: &[Parameter]) -> SnapshotFile {
    let params: Vec<Value> = tree
        .iter()
        .map(|p| {
            let value = if p.is_secure() { Value::Null } else { json!(p.value) };
            json!({
                "name": p.name,
                "type": p.kind,
                "version": p.version,
                "last_modified": p.last_modified,
                "value": value,
                "value_withheld": p.is_secure(),
            })
        })
        .collect();
    SnapshotFile { name: "parameters.json".into(), body: pretty(&json!({ "parameters": params })) }
}

/// One file per DR document (`active.json`, `policy.json`, `sites-primary.json`, ...), as parsed JSON, so a
/// human can diff them; SecureString parameters are never among them.
pub fn document_files(tree: &[Parameter], prefix: &str) -> Vec<SnapshotFile> {
    let docs = [("active", "active.json"), ("policy", "policy.json"), ("data-plane", "data-plane.json")]
        .into_iter()
        .chain([("sites/primary", "sites-primary.json"), ("sites/secondary", "sites-secondary.json")]);
    docs.filter_map(|(rel, file)| {
        let p = tree.iter().find(|p| p.name == format!("{prefix}/{rel}") && !p.is_secure())?;
        let value: Value = serde_json::from_str(&p.value).unwrap_or(Value::String(p.value.clone()));
        Some(SnapshotFile {
            name: file.into(),
            body: pretty(&json!({ "name": p.name, "version": p.version, "document": value })),
        })
    })
    .collect()
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// A file's entry in a snapshot's manifest: its name, key, sha256 and size.
pub fn manifest_entry(folder: &str, name: &str, body: &[u8]) -> Value {
    json!({ "name": name, "key": format!("{folder}/{name}"), "sha256": sha256_hex(body), "bytes": body.len() })
}

/// A snapshot's `manifest.json`: the execution, when, and every file's entry.
pub fn manifest_body(execution_id: &str, now: OffsetDateTime, entries: &[Value]) -> Vec<u8> {
    pretty(&json!({ "execution_id": execution_id, "created_at": rfc3339(now), "files": entries }))
}

/// Writes the files and the manifest in parallel (the manifest's hashes are computed locally, so it need not
/// wait for the files) and returns the manifest's key.
pub async fn write(
    bucket: &impl ControlBucket,
    folder: &str,
    execution_id: &str,
    files: Vec<SnapshotFile>,
    now: OffsetDateTime,
) -> Result<String, StoreError> {
    let entries: Vec<Value> = files.iter().map(|f| manifest_entry(folder, &f.name, &f.body)).collect();
    let manifest = manifest_body(execution_id, now, &entries);
    let manifest_key = format!("{folder}/manifest.json");
    let mut writes: Vec<BoxFuture<'_, Result<String, StoreError>>> = files
        .into_iter()
        .map(|f| {
            let key = format!("{folder}/{}", f.name);
            Box::pin(async move { bucket.put(&key, f.body, "application/json", WriteCondition::Overwrite).await })
                as BoxFuture<'_, Result<String, StoreError>>
        })
        .collect();
    let mk = manifest_key.clone();
    writes.push(Box::pin(async move { bucket.put(&mk, manifest, "application/json", WriteCondition::Overwrite).await }));
    try_join_all(writes).await?;
    Ok(manifest_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: &str, kind: &str) -> Parameter {
        Parameter { name: name.into(), value: value.into(), kind: kind.into(), version: 3, last_modified: None }
    }

    #[test]
    fn secure_strings_are_withheld() {
        let tree =
            [p("/dr/x/active", r#"{"site":"primary"}"#, "String"), p("/dr/x/secrets/t", "SECRET-CIPHERTEXT", "SecureString")];
        let f = tree_file(&tree);
        let text = String::from_utf8(f.body).unwrap();
        assert!(!text.contains("SECRET-CIPHERTEXT"));
        assert!(text.contains("\"value_withheld\": true"));
        let docs = document_files(&tree, "/dr/x");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].name, "active.json");
    }
}
