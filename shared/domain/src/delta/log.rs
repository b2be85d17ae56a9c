//! The files of `_delta_log/` by name, and what a listing of them allows: the checkpoints that are complete
//! and the commits that follow them without a gap.

use std::collections::{BTreeMap, BTreeSet};

/// The log directory under a table's root.
pub const LOG_DIR: &str = "_delta_log";
/// The sidecar directory of v2 checkpoints, under the log directory.
pub const SIDECARS_DIR: &str = "_sidecars";
/// The staged commits of catalog-managed tables, under the log directory.
pub const STAGED_COMMITS_DIR: &str = "_staged_commits";
/// The hint naming the newest checkpoint, under the log directory.
pub const LAST_CHECKPOINT: &str = "_last_checkpoint";

/// How a checkpoint is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointKind {
    /// `N.checkpoint.parquet`.
    Classic,
    /// `N.checkpoint.P.K.parquet`: part P of K (both from 1).
    MultiPart {
        /// This part.
        part: u32,
        /// How many parts the checkpoint has.
        parts: u32,
    },
    /// `N.checkpoint.<uuid>.parquet|json`: its `sidecar` actions name files under `_sidecars/`.
    V2 {
        /// Whether the top-level file is JSON (else Parquet).
        json: bool,
    },
}

/// One file of the log, by its name relative to `_delta_log/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// `N.json` (20 digits).
    Commit(u64),
    /// A checkpoint file (or part of one) of version N.
    Checkpoint(u64, CheckpointKind),
    /// `_sidecars/<name>`.
    Sidecar(String),
    /// `_staged_commits/N.<uuid>.json`: a catalog-managed table's commit not yet published.
    StagedCommit(u64),
    /// `_last_checkpoint`.
    LastCheckpoint,
    /// Anything else (`.crc`, compacted logs, temporary files): not needed to read the table.
    Other,
}

fn version(s: &str) -> Option<u64> {
    (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Names a file of the log from its path relative to `_delta_log/`.
pub fn parse_name(rel: &str) -> LogFile {
    if rel == LAST_CHECKPOINT {
        return LogFile::LastCheckpoint;
    }
    if let Some(name) = rel.strip_prefix("_sidecars/") {
        return LogFile::Sidecar(name.to_owned());
    }
    if let Some(name) = rel.strip_prefix("_staged_commits/") {
        return match name.split('.').next().and_then(version) {
            Some(v) => LogFile::StagedCommit(v),
            None => LogFile::Other,
        };
    }
    let parts: Vec<&str> = rel.split('.').collect();
    let Some(v) = parts.first().copied().and_then(version) else { return LogFile::Other };
    match parts[1..] {
        ["json"] => LogFile::Commit(v),
        ["checkpoint", "parquet"] => LogFile::Checkpoint(v, CheckpointKind::Classic),
        ["checkpoint", p, k, "parquet"] if p.len() == 10 && k.len() == 10 => match (p.parse(), k.parse()) {
            (Ok(part), Ok(parts)) if part >= 1 && part <= parts => {
                LogFile::Checkpoint(v, CheckpointKind::MultiPart { part, parts })
            }
            _ => LogFile::Other,
        },
        ["checkpoint", uuid, ext @ ("parquet" | "json")] if uuid.len() == 36 => {
            LogFile::Checkpoint(v, CheckpointKind::V2 { json: ext == "json" })
        }
        _ => LogFile::Other,
    }
}

/// The name of commit `v`.
pub fn commit_name(v: u64) -> String {
    format!("{v:020}.json")
}

/// A checkpoint that a listing shows whole (for a v2 checkpoint: its top-level file; its sidecars are known only
/// once it is read, see [`LogListing::missing_sidecars`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCandidate {
    /// Its version.
    pub version: u64,
    /// Its files, relative to `_delta_log/` (the parts in order).
    pub files: Vec<String>,
    /// Classic, multi-part (the part of any file) or v2.
    pub kind: CheckpointKind,
}

/// What a listing of `_delta_log/` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogListing {
    /// Commit versions present.
    pub commits: BTreeSet<u64>,
    /// Checkpoint files present, by version (names relative to `_delta_log/`).
    pub checkpoints: BTreeMap<u64, Vec<(String, CheckpointKind)>>,
    /// Sidecar file names present (under `_sidecars/`).
    pub sidecars: BTreeSet<String>,
    /// Staged commits seen: the table is catalog-managed.
    pub staged_commits: bool,
}

impl LogListing {
    /// Builds the listing from names relative to `_delta_log/`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> LogListing {
        let mut l = LogListing::default();
        for name in names {
            match parse_name(name) {
                LogFile::Commit(v) => {
                    l.commits.insert(v);
                }
                LogFile::Checkpoint(v, kind) => l.checkpoints.entry(v).or_default().push((name.to_owned(), kind)),
                LogFile::Sidecar(s) => {
                    l.sidecars.insert(s);
                }
                LogFile::StagedCommit(_) => l.staged_commits = true,
                LogFile::LastCheckpoint | LogFile::Other => {}
            }
        }
        for files in l.checkpoints.values_mut() {
            files.sort();
        }
        l
    }

    /// The newest commit present.
    pub fn newest_commit(&self) -> Option<u64> {
        self.commits.last().copied()
    }

    /// The checkpoints this listing shows complete, newest first (at one version: v2, then classic, then the
    /// multi-part set with every part), and why the others are not, e.g. `checkpoint 20: 2 of 3 parts`.
    pub fn checkpoints(&self) -> (Vec<CheckpointCandidate>, Vec<String>) {
        let mut whole = Vec::new();
        let mut incomplete = Vec::new();
        for (&version, files) in self.checkpoints.iter().rev() {
            for (name, kind) in files {
                if matches!(kind, CheckpointKind::V2 { .. }) {
                    whole.push(CheckpointCandidate { version, files: vec![name.clone()], kind: kind.clone() });
                }
            }
            if let Some((name, kind)) = files.iter().find(|(_, k)| *k == CheckpointKind::Classic) {
                whole.push(CheckpointCandidate { version, files: vec![name.clone()], kind: kind.clone() });
            }
            let mut sets: BTreeMap<u32, BTreeMap<u32, &String>> = BTreeMap::new();
            for (name, kind) in files {
                if let CheckpointKind::MultiPart { part, parts } = kind {
                    sets.entry(*parts).or_default().insert(*part, name);
                }
            }
            for (parts, present) in sets.into_iter().rev() {
                if present.len() == parts as usize {
                    let files = present.values().map(|n| (*n).clone()).collect();
                    whole.push(CheckpointCandidate { version, files, kind: CheckpointKind::MultiPart { part: 1, parts } });
                } else {
                    incomplete.push(format!("checkpoint {version}: {} of {parts} parts in the replica", present.len()));
                }
            }
        }
        (whole, incomplete)
    }

    /// The commits after `base` (or from 0 without a checkpoint) up to the first gap, and the first missing
    /// version when commits exist beyond it.
    pub fn run_after(&self, base: Option<u64>) -> (Vec<u64>, Option<u64>) {
        let first = base.map_or(0, |b| b + 1);
        let mut run = Vec::new();
        for (expected, &v) in (first..).zip(self.commits.range(first..)) {
            if v != expected {
                return (run, Some(expected));
            }
            run.push(v);
        }
        (run, None)
    }

    /// The sidecars named by a v2 checkpoint that this listing does not hold.
    pub fn missing_sidecars<'a>(&self, named: &'a [String]) -> Vec<&'a str> {
        named.iter().map(|s| s.rsplit('/').next().unwrap_or(s)).filter(|s| !self.sidecars.contains(*s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "3a0d65cd-4056-49b8-937b-95f9e3ee90e5";

    #[test]
    fn names() {
        assert_eq!(parse_name("00000000000000000007.json"), LogFile::Commit(7));
        assert_eq!(parse_name("00000000000000000010.checkpoint.parquet"), LogFile::Checkpoint(10, CheckpointKind::Classic));
        assert_eq!(
            parse_name("00000000000000000010.checkpoint.0000000002.0000000003.parquet"),
            LogFile::Checkpoint(10, CheckpointKind::MultiPart { part: 2, parts: 3 })
        );
        assert_eq!(
            parse_name(&format!("00000000000000000010.checkpoint.{UUID}.json")),
            LogFile::Checkpoint(10, CheckpointKind::V2 { json: true })
        );
        assert_eq!(parse_name(&format!("_sidecars/{UUID}.parquet")), LogFile::Sidecar(format!("{UUID}.parquet")));
        assert_eq!(parse_name(&format!("_staged_commits/00000000000000000011.{UUID}.json")), LogFile::StagedCommit(11));
        assert_eq!(parse_name("_last_checkpoint"), LogFile::LastCheckpoint);
        for other in ["00000000000000000007.crc", "00000000000000000001.00000000000000000009.compacted.json", "7.json", ".tmp"] {
            assert_eq!(parse_name(other), LogFile::Other, "{other}");
        }
        assert_eq!(parse_name("00000000000000000010.checkpoint.0000000004.0000000003.parquet"), LogFile::Other);
    }

    #[test]
    fn complete_checkpoints_newest_first_and_the_run_after_them() {
        let names = [
            "00000000000000000010.checkpoint.parquet",
            "00000000000000000020.checkpoint.0000000001.0000000003.parquet",
            "00000000000000000020.checkpoint.0000000003.0000000003.parquet",
            "00000000000000000015.checkpoint.0000000001.0000000002.parquet",
            "00000000000000000015.checkpoint.0000000002.0000000002.parquet",
        ];
        let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        all.extend((8..=23).filter(|v| *v != 21).map(commit_name));
        let l = LogListing::from_names(all.iter().map(String::as_str));
        let (whole, incomplete) = l.checkpoints();
        assert_eq!(whole.iter().map(|c| c.version).collect::<Vec<_>>(), [15, 10]);
        assert_eq!(whole[0].files.len(), 2);
        assert_eq!(incomplete, ["checkpoint 20: 2 of 3 parts in the replica"]);
        assert_eq!(l.run_after(Some(15)), (vec![16, 17, 18, 19, 20], Some(21)));
        assert_eq!(l.run_after(Some(22)), (vec![23], None));
        assert_eq!(l.run_after(None), (vec![], Some(0)));
        assert_eq!(l.newest_commit(), Some(23));
        assert_eq!(l.missing_sidecars(&["_sidecars/a.parquet".into()]), ["a.parquet"]);
    }
}
