//! Re-drive manifests: CSV for S3 Batch Operations (`S3BatchOperations_CSV_20180820`), fit for S3 Batch
//! Replication.
//!
//! Format (S3 User Guide, "Creating an S3 Batch Operations job", "Specifying a manifest"): one object per line,
//! `bucket,key,versionId`, no header; **keys URL-encoded**; and a manifest "must either include version IDs for
//! all objects or omit version IDs for all objects". So [`build_manifests`] writes one manifest per source
//! bucket and per presence of version ids: `Fields` is `["Bucket","Key","VersionId"]` for
//! [`Manifest::with_version_ids`], `["Bucket","Key"]` otherwise (replication needs versioning, so the second
//! kind only appears for events without a `versionId`).
//!
//! Keys are encoded like AWS's examples (`object%20key%20with%20spaces`, `photos/jpgs/objectkey4`): UTF-8 bytes
//! outside `A-Z a-z 0-9 - . _ ~ /` become `%XX`, so commas, line breaks, `+` (`%2B`, never read as a space) and
//! `%` cannot break the CSV or be misread. Bucket names and version ids (AWS-generated, URL-safe) are written as
//! they are.
//!
//! Every input object lands in exactly one manifest, once (duplicates by bucket, key and version id dropped),
//! in first-seen order.

use super::aggregate::{FailedObject, FastSet, hex_upper};

/// One CSV manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bucket every row names.
    pub source_bucket: String,
    /// Rows carry a third column, the version id.
    pub with_version_ids: bool,
    /// Number of rows.
    pub rows: usize,
    /// The CSV text, `\n`-terminated lines.
    pub csv: String,
}

impl Manifest {
    /// The `Fields` value of the `CreateJob` manifest spec for this file.
    pub fn fields(&self) -> &'static [&'static str] {
        if self.with_version_ids { &["Bucket", "Key", "VersionId"] } else { &["Bucket", "Key"] }
    }
}

/// Builds the manifests of a batch's failed objects: one per (source bucket, with or without version ids),
/// sorted by bucket then with-version-ids first; each object exactly once.
pub fn build_manifests(objects: &[FailedObject<'_>]) -> Vec<Manifest> {
    let mut seen: FastSet<&FailedObject<'_>> = FastSet::default();
    seen.reserve(objects.len());
    let mut out: Vec<Manifest> = Vec::new();
    for o in objects {
        if !seen.insert(o) {
            continue;
        }
        let with_versions = o.version_id.is_some();
        let pos = match out.iter().position(|m| m.source_bucket == o.bucket && m.with_version_ids == with_versions) {
            Some(p) => p,
            None => {
                out.push(Manifest {
                    source_bucket: o.bucket.to_owned(),
                    with_version_ids: with_versions,
                    rows: 0,
                    csv: String::new(),
                });
                out.len() - 1
            }
        };
        if let Some(m) = out.get_mut(pos) {
            write_row(&mut m.csv, o);
            m.rows += 1;
        }
    }
    out.sort_by(|a, b| a.source_bucket.cmp(&b.source_bucket).then(b.with_version_ids.cmp(&a.with_version_ids)));
    out
}

fn write_row(csv: &mut String, o: &FailedObject<'_>) {
    csv.push_str(o.bucket);
    csv.push(',');
    encode_key(o.key, csv);
    if let Some(v) = o.version_id {
        csv.push(',');
        csv.push_str(v);
    }
    csv.push('\n');
}

/// Appends `key` URL-encoded for a manifest: bytes outside `A-Z a-z 0-9 - . _ ~ /` as `%XX` (upper-case hex).
pub fn encode_key(key: &str, out: &mut String) {
    out.reserve(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_upper(b >> 4));
            out.push(hex_upper(b));
        }
    }
}
