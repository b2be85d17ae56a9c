//! Listing a table's `_delta_log/` as a reader does: from a version on (`start-after`), delimited (so that
//! `_sidecars/`, `_staged_commits/` and `_commits/` come as one name each, never paged through), and further back
//! only in windows of [`WINDOW`] versions.

use super::DeltaLimits;
use crate::rules::log::{COORDINATED_COMMITS_DIR, LAST_CHECKPOINT, LOG_DIR, LogFile, LogListing, STAGED_COMMITS_DIR, parse_name};
use domain::data_plane::S3Url;
use dr_ports::DataBuckets;
use dr_ports::error::StoreError;
use std::collections::HashMap;

/// How many versions one step back lists (delta-kernel-rs scans back for a checkpoint in windows of 1,000).
pub const WINDOW: u64 = 1000;

/// A table's log in one bucket.
pub(super) struct LogReader<'a> {
    url: &'a S3Url,
    root: String,
    dir: String,
    limits: &'a DeltaLimits,
}

/// What the listings of a log found so far.
#[derive(Debug, Default)]
pub(super) struct Listed {
    /// The files, by version.
    pub listing: LogListing,
    /// The commit files' modification times (milliseconds), by version.
    pub modified: HashMap<u64, i64>,
    /// Whether the bound on keys stopped a listing: then nothing it would have found is known.
    pub truncated: bool,
    /// That bound.
    pub bound: usize,
    keys: usize,
}

impl<'a> LogReader<'a> {
    /// The log of the table at `url`.
    pub fn new(url: &'a S3Url, limits: &'a DeltaLimits) -> Self {
        let root = if url.prefix.is_empty() { String::new() } else { format!("{}/", url.prefix) };
        let dir = format!("{root}{LOG_DIR}/");
        LogReader { url, root, dir, limits }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.url.bucket
    }

    /// The table's root prefix (`""` or ending with `/`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The log's prefix (ending with `/`).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The key of a file of the log, from its name relative to `_delta_log/`.
    pub fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.dir)
    }

    /// Lists every file of the log from version `from` on.
    pub async fn list_from<D: DataBuckets>(&self, data: &D, from: u64) -> Result<Listed, StoreError> {
        let mut listed = Listed { bound: self.limits.max_keys, ..Listed::default() };
        listed.listing.from = from;
        self.list_range(data, from, None, &mut listed).await?;
        Ok(listed)
    }

    /// Lists the window of versions before those listed; `false` when it held nothing (the log was cleaned up
    /// before it, or it reached version 0 empty) or the bound on keys stopped it.
    pub async fn extend_back<D: DataBuckets>(&self, data: &D, listed: &mut Listed) -> Result<bool, StoreError> {
        let until = listed.listing.from;
        let from = until.saturating_sub(WINDOW);
        let found = self.list_range(data, from, Some(until), listed).await?;
        listed.listing.from = from;
        Ok(found && !listed.truncated)
    }

    /// Lists versions `from..until` (to the end without `until`) into `listed`; whether any version file was found.
    async fn list_range<D: DataBuckets>(
        &self,
        data: &D,
        from: u64,
        until: Option<u64>,
        listed: &mut Listed,
    ) -> Result<bool, StoreError> {
        // `…/{from-1}/` sorts after every file of version from-1 ('/' > '.') and before version `from`.
        let start_after = from.checked_sub(1).map(|v| format!("{}{v:020}/", self.dir));
        let mut token: Option<String> = None;
        let mut found = false;
        loop {
            let page = data
                .list_dir_page(self.bucket(), &self.dir, start_after.as_deref(), token.as_deref(), self.limits.page_size)
                .await?;
            for p in &page.prefixes {
                let rel = p.strip_prefix(&self.dir).unwrap_or(p).trim_end_matches('/');
                if rel == STAGED_COMMITS_DIR || rel == COORDINATED_COMMITS_DIR {
                    listed.listing.staged_commits = true;
                }
            }
            let mut stop = false;
            let mut files = Vec::new();
            for o in &page.objects {
                let rel = o.key.strip_prefix(&self.dir).unwrap_or(&o.key);
                let version = rel.get(..20).and_then(|v| v.parse::<u64>().ok());
                if until.is_some_and(|u| version.is_none_or(|v| v >= u)) {
                    stop = true;
                    break;
                }
                if rel == LAST_CHECKPOINT {
                    continue;
                }
                if let (LogFile::Commit(v), Some(t)) = (parse_name(rel), o.last_modified) {
                    listed.modified.insert(v, i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX));
                }
                found |= version.is_some();
                files.push((rel, o.size));
            }
            listed.listing.extend(files);
            listed.keys += page.objects.len();
            if listed.keys > listed.bound {
                listed.truncated = true;
                return Ok(found);
            }
            match page.next {
                Some(t) if !stop => token = Some(t),
                _ => return Ok(found),
            }
        }
    }
}

/// The version the log's `_last_checkpoint` names: `None` when it is absent or does not parse (a reader then
/// lists the log without it, as delta-kernel-rs does).
pub(super) async fn hint_of<D: DataBuckets>(data: &D, log: &LogReader<'_>) -> Result<Option<u64>, StoreError> {
    let body = data.get(log.bucket(), &log.key(LAST_CHECKPOINT), None).await?;
    Ok(body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()?.get("version")?.as_u64()))
}
