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
    /// Where the vector starts in its file (absent for inline vectors).
    #[serde(default)]
    pub offset: Option<i32>,
}

impl DeletionVector {
    /// The vector's unique id as the protocol defines it (storage type, path or inline bytes, and `@offset` when
    /// an offset is given): with the path it names one logical file of the table.
    pub fn unique_id(&self) -> String {
        match self.offset {
            Some(o) => format!("{}{}@{o}", self.storage_type, self.path_or_inline_dv),
            None => format!("{}{}", self.storage_type, self.path_or_inline_dv),
        }
    }
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

impl FileAction {
    /// The logical file this action adds or removes: its path (as written) and its deletion vector's unique id.
    /// A DELETE with deletion vectors removes `(path, old vector)` and adds `(path, new vector)`: two files.
    pub fn key(&self) -> FileKey {
        FileKey { path: self.path.clone(), dv: self.deletion_vector.as_ref().map(DeletionVector::unique_id) }
    }
}

/// A logical file of a Delta table: `(path, deletionVector.uniqueId)`, as the protocol's reconciliation and
/// delta-kernel-rs's log replay identify it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    /// The data file's path, as the action writes it.
    pub path: String,
    /// Its deletion vector's unique id, if any.
    pub dv: Option<String>,
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
    /// Whether the table is catalog-managed or has coordinated commits (`catalogManaged`, `catalogOwned-preview`,
    /// `coordinatedCommits-preview`): its versions are ratified outside the log.
    pub fn catalog_managed(&self) -> bool {
        self.catalog_feature().is_some()
    }

    /// The feature that makes the table catalog-managed or coordinated, if any.
    pub fn catalog_feature(&self) -> Option<&str> {
        let mut features = self.reader_features.iter().chain(&self.writer_features).flatten();
        features.find(|f| super::CATALOG_MANAGED_FEATURES.contains(&f.as_str())).map(String::as_str)
    }

    /// Why this protocol cannot be read by the assessment, if it cannot: a reader or writer version above
    /// those the protocol defines, or a feature not in [`super::UNDERSTOOD_FEATURES`]. Unknown never means
    /// "nothing required": a feature may change which files a reader needs.
    pub fn not_understood(&self) -> Option<String> {
        if !(1..=3).contains(&self.min_reader_version) {
            return Some(format!("reader version {} is not one the Delta protocol defines (1 to 3)", self.min_reader_version));
        }
        if !(1..=7).contains(&self.min_writer_version) {
            return Some(format!("writer version {} is not one the Delta protocol defines (1 to 7)", self.min_writer_version));
        }
        let readers = self.reader_features.iter().flatten().map(|f| ("reader", f));
        let writers = self.writer_features.iter().flatten().map(|f| ("writer", f));
        readers.chain(writers).find(|(_, f)| !super::UNDERSTOOD_FEATURES.contains(&f.as_str())).map(|(kind, f)| {
            format!("the {kind} feature {f:?} is not one the assessment understands, so the files a reader needs are unknown")
        })
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
    /// A change data file (`_change_data/...`, relative to the table's root) written for the change data feed.
    Cdc(String),
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
    cdc: Option<RawSidecar>,
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
/// JSON, or an action with a missing required field, is an error naming the line; so is a file with no action
/// (Delta never writes one: it is a copy cut short).
pub fn parse_commit(body: &[u8]) -> Result<Vec<Action>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Err("empty: no action (Delta never writes an empty commit; the copy is cut short)".into());
    }
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
        out.extend(l.cdc.map(|c| Action::Cdc(c.path)));
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

/// A commit's `inCommitTimestamp` (milliseconds), if it carries one.
pub fn in_commit_timestamp(actions: &[Action]) -> Option<i64> {
    actions.iter().find_map(|a| match a {
        Action::CommitInfo { in_commit_timestamp, .. } => *in_commit_timestamp,
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
    /// A deletion vector whose descriptor does not decode, or whose storage type is unknown: never present, so
    /// the versions that need it are not certified (the string says which and why).
    Unresolvable(String),
}

/// The data file of an action.
pub fn data_file(path: &str) -> FileRef {
    if path.contains("://") {
        FileRef::Absolute(path.to_owned())
    } else {
        FileRef::Relative(percent_decode(path).unwrap_or_else(|| path.to_owned()))
    }
}

/// The file of a deletion vector (`None` for an inline one). A descriptor that does not decode, or an unknown
/// storage type, is [`FileRef::Unresolvable`]: the assessment fails closed on what it does not understand.
pub fn deletion_vector_file(dv: &DeletionVector) -> Option<FileRef> {
    let unresolvable = |why: &str| {
        FileRef::Unresolvable(format!("deletion vector {:?} (storage type {:?}) {why}", dv.path_or_inline_dv, dv.storage_type))
    };
    match dv.storage_type.as_str() {
        "u" => {
            let s = &dv.path_or_inline_dv;
            let decoded = s.len().checked_sub(20).and_then(|split| {
                let (prefix, encoded) = (s.get(..split)?, s.get(split..)?);
                Some((prefix, z85_uuid(encoded)?))
            });
            let Some((prefix, uuid)) = decoded else {
                return Some(unresolvable("does not decode: expected an optional prefix and a 20-character Z85 UUID"));
            };
            let name = format!("deletion_vector_{uuid}.bin");
            Some(FileRef::Relative(if prefix.is_empty() { name } else { format!("{prefix}/{name}") }))
        }
        "p" => Some(data_file(&dv.path_or_inline_dv)),
        "i" => None,
        _ => Some(unresolvable("has a storage type the protocol does not define (expected u, p or i)")),
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
        assert_eq!(configuration.get(crate::rules::IN_COMMIT_TIMESTAMPS).map(String::as_str), Some("true"));
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
            offset: None,
        };
        assert_eq!(deletion_vector_file(&inline), None);
        // Fail closed: an unknown storage type or a path that does not decode is never "nothing required".
        let odd = DeletionVector { storage_type: "x".into(), ..inline.clone() };
        assert!(matches!(deletion_vector_file(&odd), Some(FileRef::Unresolvable(w)) if w.contains("storage type")));
        let short = DeletionVector { storage_type: "u".into(), path_or_inline_dv: "abc".into(), offset: None };
        assert!(matches!(deletion_vector_file(&short), Some(FileRef::Unresolvable(w)) if w.contains("does not decode")));
        let bad = DeletionVector { storage_type: "u".into(), path_or_inline_dv: "~~~~~~~~~~~~~~~~~~~~".into(), offset: None };
        assert!(matches!(deletion_vector_file(&bad), Some(FileRef::Unresolvable(_))));
        // The unique id: storage type, path or inline bytes, and @offset when there is one.
        let u = DeletionVector { storage_type: "u".into(), path_or_inline_dv: "ab^-aqEH.-t@S}K{vb[*k^".into(), offset: Some(4) };
        assert_eq!(u.unique_id(), "uab^-aqEH.-t@S}K{vb[*k^@4");
        assert_eq!(DeletionVector { offset: None, ..u }.unique_id(), "uab^-aqEH.-t@S}K{vb[*k^");
    }
}
