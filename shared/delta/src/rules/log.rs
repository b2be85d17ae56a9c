//! The files of `_delta_log/` by name, and what a listing of them allows: the checkpoints that are complete
//! and the commits that follow them without a gap.

use std::collections::{BTreeMap, BTreeSet};

/// The log directory under a table's root.
pub const LOG_DIR: &str = "_delta_log";
/// The sidecar directory of v2 checkpoints, under the log directory.
pub const SIDECARS_DIR: &str = "_sidecars";
/// The staged commits of catalog-managed tables, under the log directory.
pub const STAGED_COMMITS_DIR: &str = "_staged_commits";
/// The unbackfilled commits of coordinated-commits tables, under the log directory.
pub const COORDINATED_COMMITS_DIR: &str = "_commits";
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
    /// `_staged_commits/N.<uuid>.json` (catalog-managed) or `_commits/N.<uuid>.json` (coordinated commits): a
    /// commit not yet published to the log.
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
    if let Some(name) = rel.strip_prefix("_staged_commits/").or_else(|| rel.strip_prefix("_commits/")) {
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
/// once it is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCandidate {
    /// Its version.
    pub version: u64,
    /// Its files, relative to `_delta_log/` (the parts in order).
    pub files: Vec<String>,
    /// Classic, multi-part (the part of any file) or v2.
    pub kind: CheckpointKind,
}

/// What a listing of `_delta_log/` holds, from version [`LogListing::from`] on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogListing {
    /// The lowest version the listing covers (it started there: nothing is known of the versions before).
    pub from: u64,
    /// Commit versions present.
    pub commits: BTreeSet<u64>,
    /// Checkpoint files present and not empty, by version (names relative to `_delta_log/`). A 0-byte checkpoint
    /// file is left out, as delta-kernel-rs leaves it out: it is a copy cut short, and an older checkpoint serves.
    pub checkpoints: BTreeMap<u64, Vec<(String, CheckpointKind)>>,
    /// Staged (`_staged_commits/`) or unbackfilled (`_commits/`) commits seen: the table's versions are ratified
    /// outside the log.
    pub staged_commits: bool,
}

/// The versions one base serves: a reader of version V in `first..=last` starts from `base` (a checkpoint at
/// `first`, or `None`: the commits from version 0) and replays the commits after it up to V.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The checkpoint, or `None` for a replay from commit 0.
    pub base: Option<CheckpointCandidate>,
    /// The first version it serves (the checkpoint's, or 0).
    pub first: u64,
    /// The last version it serves.
    pub last: u64,
}

/// Versions no reader can open whatever files arrive later, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The first such version.
    pub first: u64,
    /// The last.
    pub last: u64,
    /// Why, in a sentence.
    pub why: String,
}

/// How a listing resolves into bases, as delta-kernel-rs resolves a snapshot of version V (its
/// `LogSegment::for_snapshot`): with a usable `_last_checkpoint` hint (its version at most V) the newest complete
/// checkpoint in `hint..=V`, and none there is an error; without one, the newest complete checkpoint at most V, or
/// the commits from the start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The segments, newest first.
    pub segments: Vec<Segment>,
    /// The versions no reader opens.
    pub unreadable: Vec<Unreadable>,
    /// The versions from [`LogListing::from`] whose base lies before it: list further back to resolve them.
    pub pending: Option<(u64, u64)>,
    /// Why checkpoints present were not complete, e.g. `checkpoint 20: 2 of 3 parts`.
    pub incomplete: Vec<String>,
}

impl LogListing {
    /// Builds the listing from `(name relative to _delta_log/, size)` pairs of a listing that started at `from`.
    pub fn from_objects<'a>(from: u64, objects: impl IntoIterator<Item = (&'a str, u64)>) -> LogListing {
        let mut l = LogListing { from, ..LogListing::default() };
        l.extend(objects);
        l
    }

    /// Builds the listing from names relative to `_delta_log/` (sizes unknown: taken as not empty), from version 0.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> LogListing {
        LogListing::from_objects(0, names.into_iter().map(|n| (n, 1)))
    }

    /// Adds what a listing of earlier versions (or a directory of the log) found.
    pub fn extend<'a>(&mut self, objects: impl IntoIterator<Item = (&'a str, u64)>) {
        for (name, size) in objects {
            match parse_name(name) {
                LogFile::Commit(v) => {
                    self.commits.insert(v);
                }
                LogFile::Checkpoint(v, kind) if size > 0 => {
                    let files = self.checkpoints.entry(v).or_default();
                    if !files.iter().any(|(n, _)| n == name) {
                        files.push((name.to_owned(), kind));
                        files.sort();
                    }
                }
                LogFile::StagedCommit(_) => self.staged_commits = true,
                LogFile::Checkpoint(..) | LogFile::Sidecar(_) | LogFile::LastCheckpoint | LogFile::Other => {}
            }
        }
    }

    /// The newest commit present.
    pub fn newest_commit(&self) -> Option<u64> {
        self.commits.last().copied()
    }

    /// The newest version the log names (a commit, or a checkpoint beyond every commit).
    pub fn newest_version(&self) -> Option<u64> {
        self.newest_commit().max(self.checkpoints.keys().next_back().copied())
    }

    /// The complete checkpoint a reader takes at `version`, if any: among several complete ones, the one
    /// delta-kernel-rs selects (a UUID-named one with the greatest name, then the multi-part one with the most
    /// parts, then the classic one); and why the others there are not complete.
    fn checkpoint_at(&self, version: u64) -> (Option<CheckpointCandidate>, Vec<String>) {
        let Some(files) = self.checkpoints.get(&version) else { return (None, Vec::new()) };
        let mut incomplete = Vec::new();
        let uuid = files.iter().filter(|(_, k)| matches!(k, CheckpointKind::V2 { .. })).max_by(|a, b| a.0.cmp(&b.0));
        if let Some((name, kind)) = uuid {
            return (Some(CheckpointCandidate { version, files: vec![name.clone()], kind: kind.clone() }), incomplete);
        }
        let mut sets: BTreeMap<u32, BTreeMap<u32, &String>> = BTreeMap::new();
        for (name, kind) in files {
            if let CheckpointKind::MultiPart { part, parts } = kind {
                sets.entry(*parts).or_default().insert(*part, name);
            }
        }
        let mut chosen = None;
        for (parts, present) in sets.into_iter().rev() {
            if present.len() == parts as usize {
                let files = present.values().map(|n| (*n).clone()).collect();
                chosen =
                    chosen.or(Some(CheckpointCandidate { version, files, kind: CheckpointKind::MultiPart { part: 1, parts } }));
            } else {
                incomplete.push(format!("checkpoint {version}: {} of {parts} parts in the replica", present.len()));
            }
        }
        if chosen.is_none()
            && let Some((name, kind)) = files.iter().find(|(_, k)| *k == CheckpointKind::Classic)
        {
            chosen = Some(CheckpointCandidate { version, files: vec![name.clone()], kind: kind.clone() });
        }
        (chosen, incomplete)
    }

    /// The complete checkpoints, oldest first, and why the others are not.
    fn complete_checkpoints(&self) -> (Vec<CheckpointCandidate>, Vec<String>) {
        let mut whole = Vec::new();
        let mut incomplete = Vec::new();
        for &v in self.checkpoints.keys() {
            let (c, why) = self.checkpoint_at(v);
            whole.extend(c);
            incomplete.extend(why);
        }
        (whole, incomplete)
    }

    /// Resolves the listed versions into bases, as a reader does (see [`Resolution`]). `hint` is the version the
    /// replica's `_last_checkpoint` names, when it parses.
    pub fn resolve(&self, hint: Option<u64>) -> Resolution {
        let mut r = Resolution::default();
        let Some(newest) = self.newest_version() else { return r };
        let (cps, incomplete) = self.complete_checkpoints();
        r.incomplete = incomplete;
        // A hint beyond everything listed is usable by no version the log holds (a reader of the latest version
        // meets it: see the engine). Versions at or after a usable hint start from a checkpoint at or after it.
        let hint = hint.filter(|h| *h <= newest);
        let upper_from = hint.unwrap_or(u64::MAX);
        if let Some(h) = hint {
            let above: Vec<&CheckpointCandidate> = cps.iter().filter(|c| c.version >= h).collect();
            let first_cp = above.first().map_or(newest + 1, |c| c.version);
            if first_cp > h {
                r.unreadable.push(Unreadable {
                    first: h,
                    last: first_cp - 1,
                    why: format!(
                        "the replica's _last_checkpoint names version {h} but no complete checkpoint at or after it \
                         serves these versions: a reader (delta-kernel-rs) fails there rather than guess from older files"
                    ),
                });
            }
            for (i, c) in above.iter().enumerate() {
                let last = above.get(i + 1).map_or(newest, |n| n.version - 1);
                r.segments.push(Segment { base: Some((*c).clone()), first: c.version, last });
            }
        }
        // Versions before the hint (all of them without one): the newest complete checkpoint at or before V.
        let lower_end = upper_from.min(newest + 1); // exclusive
        let below: Vec<&CheckpointCandidate> = cps.iter().filter(|c| c.version < lower_end).collect();
        for (i, c) in below.iter().enumerate() {
            let last = below.get(i + 1).map_or(lower_end - 1, |n| n.version - 1);
            r.segments.push(Segment { base: Some((*c).clone()), first: c.version, last });
        }
        let first_cp = below.first().map_or(lower_end, |c| c.version);
        if first_cp > self.from {
            if self.from > 0 {
                r.pending = Some((self.from, first_cp - 1));
            } else if self.commits.contains(&0) {
                r.segments.push(Segment { base: None, first: 0, last: first_cp - 1 });
            } else {
                let first_commit = self.commits.iter().next().copied().unwrap_or(first_cp);
                r.unreadable.push(Unreadable {
                    first: 0,
                    last: first_cp - 1,
                    why: format!(
                        "the replica holds no commit 0 and no checkpoint before version {first_commit}: the table's \
                         start (its protocol, metadata and first files) is not in the replica"
                    ),
                });
            }
        }
        r.segments.sort_by_key(|s| std::cmp::Reverse(s.first));
        r
    }

    /// The commits after `base` (or from 0 without a checkpoint) up to `last`, up to the first gap, and the first
    /// missing version when the run stops short of `last`.
    pub fn run(&self, base: Option<u64>, last: u64) -> (Vec<u64>, Option<u64>) {
        let first = base.map_or(0, |b| b + 1);
        let mut run = Vec::new();
        for expected in first..=last {
            if !self.commits.contains(&expected) {
                return (run, Some(expected));
            }
            run.push(expected);
        }
        (run, None)
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

    fn listing(from: u64, names: &[String]) -> LogListing {
        LogListing::from_objects(from, names.iter().map(|n| (n.as_str(), 10)))
    }

    fn cp(v: u64) -> String {
        format!("{v:020}.checkpoint.parquet")
    }

    fn spans(r: &Resolution) -> Vec<(Option<u64>, u64, u64)> {
        r.segments.iter().map(|s| (s.base.as_ref().map(|c| c.version), s.first, s.last)).collect()
    }

    #[test]
    fn bases_are_resolved_as_the_kernel_resolves_them() {
        let mut names: Vec<String> = vec![
            cp(10),
            "00000000000000000020.checkpoint.0000000001.0000000003.parquet".into(),
            "00000000000000000020.checkpoint.0000000003.0000000003.parquet".into(),
            "00000000000000000015.checkpoint.0000000001.0000000002.parquet".into(),
            "00000000000000000015.checkpoint.0000000002.0000000002.parquet".into(),
        ];
        names.extend((0..=23).filter(|v| *v != 21).map(commit_name));
        let l = listing(0, &names);
        // No hint: each complete checkpoint serves up to the next; the incomplete one at 20 serves nothing.
        let r = l.resolve(None);
        assert_eq!(spans(&r), [(Some(15), 15, 23), (Some(10), 10, 14), (None, 0, 9)]);
        assert_eq!(r.incomplete, ["checkpoint 20: 2 of 3 parts in the replica"]);
        assert!(r.unreadable.is_empty() && r.pending.is_none());
        assert_eq!(l.run(Some(15), 23), ((16..=20).collect::<Vec<_>>(), Some(21)));
        assert_eq!(l.run(Some(22), 23), (vec![23], None));
        // A hint naming the incomplete checkpoint: no reader opens 20..=23 (delta-kernel-rs fails rather than fall
        // back), versions before it resolve as without a hint.
        let r = l.resolve(Some(20));
        assert_eq!(spans(&r), [(Some(15), 15, 19), (Some(10), 10, 14), (None, 0, 9)]);
        assert_eq!((r.unreadable[0].first, r.unreadable[0].last), (20, 23));
        assert!(r.unreadable[0].why.contains("_last_checkpoint names version 20"));
        // A hint at a complete checkpoint, and one beyond the log (usable by no version it holds).
        assert_eq!(spans(&l.resolve(Some(15)))[0], (Some(15), 15, 23));
        assert_eq!(spans(&l.resolve(Some(99))), spans(&l.resolve(None)));
    }

    #[test]
    fn log_cleanup_partial_listings_and_the_kernels_choice_at_one_version() {
        // Log cleanup: the log starts at checkpoint 100, which is valid with no commit before it.
        let mut names = vec![cp(100)];
        names.extend((100..=105).map(commit_name));
        let r = listing(0, &names).resolve(Some(100));
        assert_eq!(spans(&r), [(Some(100), 100, 105)]);
        // Without a checkpoint the start must be there: commits from 5 alone are not a table.
        let later: Vec<String> = (5..=9).map(commit_name).collect();
        let r = listing(0, &later).resolve(None);
        assert!(r.segments.is_empty());
        assert!(r.unreadable[0].why.contains("no commit 0"));
        // A listing that started at 50 cannot say where 50..=99 start from: pending, to list further back.
        let mut from_50: Vec<String> = (50..=105).map(commit_name).collect();
        from_50.push(cp(100));
        let r = listing(50, &from_50).resolve(None);
        assert_eq!(spans(&r), [(Some(100), 100, 105)]);
        assert_eq!(r.pending, Some((50, 99)));
        // Several complete checkpoints at one version: the UUID-named one, as the kernel selects it; an empty
        // checkpoint file does not count.
        let uuid = format!("00000000000000000100.checkpoint.{UUID}.json");
        let l = LogListing::from_objects(0, [(cp(100).as_str(), 10), (uuid.as_str(), 10), ("00000000000000000100.json", 1)]);
        assert_eq!(l.resolve(None).segments[0].base.as_ref().map(|c| c.files.clone()), Some(vec![uuid.clone()]));
        let l = LogListing::from_objects(0, [(cp(100).as_str(), 0), ("00000000000000000100.json", 1)]);
        assert!(l.resolve(None).segments.is_empty());
        // Staged and unbackfilled commits both mark a table ratified outside the log.
        assert!(LogListing::from_names([format!("_commits/00000000000000000011.{UUID}.json").as_str()]).staged_commits);
    }
}
