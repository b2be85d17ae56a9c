//! The actions of a Delta commit (newline-delimited JSON) and of a checkpoint (the same actions, one row each):
//! only the fields the consistency decision reads.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A deletion vector as an `add` or `remove` names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionVector {
    /// `u` (relative, the UUID in Z85), `p` (absolute path) or `i` (inline: no file).
    pub storage_type: String,
    /// The path or the inline bytes, as the storage type says.
    pub path_or_inline_dv: String,
}

/// The file of a data file's action.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileAction {
    /// The data file: a URI relative to the table's root (percent-encoded), or absolute.
    pub path: String,
    /// Its deletion vector, if any.
    #[serde(default)]
    pub deletion_vector: Option<DeletionVector>,
}

/// The `protocol` action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// Reader version.
    #[serde(default)]
    pub min_reader_version: i64,
    /// Writer version.
    #[serde(default)]
    pub min_writer_version: i64,
    /// Table features a reader must support.
    #[serde(default)]
    pub reader_features: Option<Vec<String>>,
    /// Table features a writer must support.
    #[serde(default)]
    pub writer_features: Option<Vec<String>>,
}

impl Protocol {
    /// Whether the table is catalog-managed (`catalogManaged`, or its preview name).
    pub fn catalog_managed(&self) -> bool {
        let features = self.reader_features.iter().chain(&self.writer_features).flatten();
        features.into_iter().any(|f| super::CATALOG_MANAGED_FEATURES.contains(&f.as_str()))
    }
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A data file becomes live.
    Add(FileAction),
    /// A data file stops being live.
    Remove(FileAction),
    /// A streaming (or other idempotent) writer's transaction: the newest `version` of `app_id`.
    Txn {
        /// The writer's id (a Structured Streaming query's id for a Delta sink).
        app_id: String,
        /// Its newest version (the batch id for a Delta sink).
        version: i64,
    },
    /// The table's protocol.
    Protocol(Protocol),
    /// The table's metadata: only its configuration is kept.
    Metadata {
        /// Table properties.
        configuration: BTreeMap<String, String>,
    },
    /// The commit's information: its time stamps (milliseconds since the epoch).
    CommitInfo {
        /// `timestamp`: the writer's clock.
        timestamp: Option<i64>,
        /// `inCommitTimestamp`: monotonic, written when the table has in-commit timestamps.
        in_commit_timestamp: Option<i64>,
    },
    /// A v2 checkpoint's sidecar file (relative to `_delta_log/_sidecars/`).
    Sidecar(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    add: Option<FileAction>,
    remove: Option<FileAction>,
    txn: Option<RawTxn>,
    protocol: Option<Protocol>,
    meta_data: Option<RawMetadata>,
    commit_info: Option<RawCommitInfo>,
    sidecar: Option<RawSidecar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTxn {
    app_id: String,
    version: i64,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    configuration: BTreeMap<String, Option<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCommitInfo {
    timestamp: Option<i64>,
    in_commit_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct RawSidecar {
    path: String,
}

/// Parses a commit file (or a v2 checkpoint's JSON file): one action per non-empty line. A line that is not
/// JSON, or an action with a missing required field, is an error naming the line.
pub fn parse_commit(body: &[u8]) -> Result<Vec<Action>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.extend(
            l.commit_info.map(|c| Action::CommitInfo { timestamp: c.timestamp, in_commit_timestamp: c.in_commit_timestamp }),
        );
        out.extend(l.protocol.map(Action::Protocol));
        out.extend(l.meta_data.map(|m| Action::Metadata {
            configuration: m.configuration.into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
        }));
        out.extend(l.txn.map(|t| Action::Txn { app_id: t.app_id, version: t.version }));
        out.extend(l.add.map(Action::Add));
        out.extend(l.remove.map(Action::Remove));
        out.extend(l.sidecar.map(|s| Action::Sidecar(s.path)));
    }
    Ok(out)
}

/// A commit's time (milliseconds): `inCommitTimestamp` when `in_commit_timestamps` (the table has them on),
/// else `commitInfo.timestamp`; `None` when the commit carries neither.
pub fn commit_time(actions: &[Action], in_commit_timestamps: bool) -> Option<i64> {
    actions.iter().find_map(|a| match a {
        Action::CommitInfo { timestamp, in_commit_timestamp } => {
            if in_commit_timestamps {
                in_commit_timestamp.or(*timestamp)
            } else {
                *timestamp
            }
        }
        _ => None,
    })
}

/// Decodes `%XX` escapes (Delta's paths are URIs); `None` when an escape is malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a file named by an action lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileRef {
    /// Relative to the table's root (decoded): replicated with the table.
    Relative(String),
    /// An absolute URI (shallow clones, `p` deletion vectors): outside the table's prefix.
    Absolute(String),
}

/// The data file of an action.
pub fn data_file(path: &str) -> FileRef {
    if path.contains("://") {
        FileRef::Absolute(path.to_owned())
    } else {
        FileRef::Relative(percent_decode(path).unwrap_or_else(|| path.to_owned()))
    }
}

/// The file of a deletion vector (`None` for an inline one).
pub fn deletion_vector_file(dv: &DeletionVector) -> Option<FileRef> {
    match dv.storage_type.as_str() {
        "u" => {
            let s = &dv.path_or_inline_dv;
            let split = s.len().checked_sub(20)?;
            let (prefix, encoded) = (s.get(..split)?, s.get(split..)?);
            let uuid = z85_uuid(encoded)?;
            let name = format!("deletion_vector_{uuid}.bin");
            Some(FileRef::Relative(if prefix.is_empty() { name } else { format!("{prefix}/{name}") }))
        }
        "p" => Some(data_file(&dv.path_or_inline_dv)),
        _ => None,
    }
}

const Z85: &[u8; 85] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Decodes a UUID written in Z85 (20 characters) as Delta's `u` deletion vectors name it.
fn z85_uuid(s: &str) -> Option<String> {
    if s.len() != 20 {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for chunk in s.as_bytes().chunks(5) {
        let mut n: u64 = 0;
        for c in chunk {
            n = n * 85 + Z85.iter().position(|z| z == c)? as u64;
        }
        bytes.extend_from_slice(&u32::try_from(n).ok()?.to_be_bytes());
    }
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actions_a_commit_holds() {
        let body = br#"{"commitInfo":{"timestamp":1700000000500,"inCommitTimestamp":1700000000123,"operation":"WRITE"}}
{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["inCommitTimestamp","catalogManaged"]}}
{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{"delta.enableInCommitTimestamps":"true","n":null}}}
{"txn":{"appId":"q-1","version":4,"lastUpdated":1}}
{"add":{"path":"d%3D2024-01-01/part-0.parquet","size":1,"modificationTime":1,"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"sizeInBytes":36,"cardinality":2}}}
{"remove":{"path":"part-old.parquet","dataChange":true}}
"#;
        let a = parse_commit(body).unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(commit_time(&a, true), Some(1_700_000_000_123));
        assert_eq!(commit_time(&a, false), Some(1_700_000_000_500));
        let Action::Protocol(p) = &a[1] else { panic!() };
        assert!(p.catalog_managed());
        let Action::Metadata { configuration } = &a[2] else { panic!() };
        assert_eq!(configuration.get(crate::delta::IN_COMMIT_TIMESTAMPS).map(String::as_str), Some("true"));
        assert_eq!(a[3], Action::Txn { app_id: "q-1".into(), version: 4 });
        let Action::Add(add) = &a[4] else { panic!() };
        assert_eq!(data_file(&add.path), FileRef::Relative("d=2024-01-01/part-0.parquet".into()));
        // The example of the Delta protocol: prefix "ab", UUID d2c639aa-8816-431a-aaf6-d3fe2512ff61.
        assert_eq!(
            deletion_vector_file(add.deletion_vector.as_ref().unwrap()),
            Some(FileRef::Relative("ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin".into()))
        );
        assert!(parse_commit(b"{\"add\":{}}\n").unwrap_err().starts_with("line 1"));
        assert!(parse_commit(b"not json").is_err());
    }

    #[test]
    fn decodes_paths() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(data_file("s3://other/x.parquet"), FileRef::Absolute("s3://other/x.parquet".into()));
        let inline = DeletionVector {
            storage_type: "i".into(),
            path_or_inline_dv: "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L".into(),
        };
        assert_eq!(deletion_vector_file(&inline), None);
    }
}
