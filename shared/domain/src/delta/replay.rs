//! The replay of a table's log on its replica: from a checkpoint's actions through the commits that follow it
//! with no gap, the newest version whose live data files and deletion vectors are all present.

use super::actions::{Action, FileRef, Protocol, data_file, deletion_vector_file};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A version at which every live file is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentVersion {
    /// The version.
    pub version: u64,
    /// The `txn` versions at it, by app id.
    pub txns: BTreeMap<String, i64>,
    /// Whether the table has in-commit timestamps on at it.
    pub in_commit_timestamps: bool,
    /// Whether its protocol makes it catalog-managed.
    pub catalog_managed: bool,
    /// How many files are live at it.
    pub live_files: usize,
}

/// Why the replay stopped short of the last version it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The first version after the consistent one that is not consistent.
    pub version: u64,
    /// How many of its live files (data files and deletion vectors) the replica lacks.
    pub missing: usize,
    /// One of them (relative to the table's root, or absolute).
    pub example: String,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The newest consistent version, if any.
    pub consistent: Option<ConsistentVersion>,
    /// The first version after it whose files are not all present.
    pub blocked: Option<Blocked>,
}

#[derive(Default)]
struct State {
    /// Live data file -> its deletion vector's file, if any.
    live: HashMap<FileRef, Option<FileRef>>,
    /// How many live files name each deletion vector file (one file holds several vectors, at offsets).
    dv_refs: HashMap<FileRef, usize>,
    /// The live files (data and deletion vectors) the replica does not hold.
    missing: BTreeSet<FileRef>,
    txns: BTreeMap<String, i64>,
    protocol: Protocol,
    configuration: BTreeMap<String, String>,
}

impl State {
    fn forget(&mut self, path: &FileRef) {
        if let Some(dv) = self.live.remove(path) {
            self.missing.remove(path);
            if let Some(dv) = dv
                && let Some(n) = self.dv_refs.get_mut(&dv)
            {
                *n -= 1;
                if *n == 0 {
                    self.dv_refs.remove(&dv);
                    self.missing.remove(&dv);
                }
            }
        }
    }

    fn apply(&mut self, action: &Action, present: &dyn Fn(&FileRef) -> bool) {
        match action {
            Action::Add(f) => {
                let path = data_file(&f.path);
                self.forget(&path);
                let dv = f.deletion_vector.as_ref().and_then(deletion_vector_file);
                if !present(&path) {
                    self.missing.insert(path.clone());
                }
                if let Some(dv) = &dv {
                    *self.dv_refs.entry(dv.clone()).or_default() += 1;
                    if !present(dv) {
                        self.missing.insert(dv.clone());
                    }
                }
                self.live.insert(path, dv);
            }
            Action::Remove(f) => self.forget(&data_file(&f.path)),
            Action::Txn { app_id, version } => {
                self.txns.insert(app_id.clone(), *version);
            }
            Action::Protocol(p) => self.protocol = p.clone(),
            Action::Metadata { configuration } => self.configuration = configuration.clone(),
            Action::CommitInfo { .. } | Action::Sidecar(_) => {}
        }
    }

    fn snapshot(&self, version: u64) -> ConsistentVersion {
        ConsistentVersion {
            version,
            txns: self.txns.clone(),
            in_commit_timestamps: self.configuration.get(super::IN_COMMIT_TIMESTAMPS).is_some_and(|v| v == "true"),
            catalog_managed: self.protocol.catalog_managed(),
            live_files: self.live.len(),
        }
    }
}

/// Replays `base` (a checkpoint's actions at its version; `None` to start from commit 0) and then `commits`,
/// which must follow it with no gap, ascending; `present` says whether the replica holds a file. The answer is
/// the newest version at which every live file is present (a version may be inconsistent and a later one
/// consistent again, e.g. once a missing file is removed).
pub fn replay(
    base: Option<(u64, &[Action])>,
    commits: &[(u64, Vec<Action>)],
    present: &dyn Fn(&FileRef) -> bool,
) -> ReplayOutcome {
    let mut state = State::default();
    let mut consistent: Option<ConsistentVersion> = None;
    let mut blocked: Option<Blocked> = None;
    let mut check = |state: &State, version: u64| {
        if state.missing.is_empty() {
            consistent = Some(state.snapshot(version));
            blocked = None;
        } else if blocked.is_none() {
            let example = match state.missing.iter().next() {
                Some(FileRef::Relative(p) | FileRef::Absolute(p)) => p.clone(),
                None => String::new(),
            };
            blocked = Some(Blocked { version, missing: state.missing.len(), example });
        }
    };
    if let Some((version, actions)) = base {
        for a in actions {
            state.apply(a, present);
        }
        check(&state, version);
    }
    for (version, actions) in commits {
        for a in actions {
            state.apply(a, present);
        }
        check(&state, *version);
    }
    ReplayOutcome { consistent, blocked }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::actions::parse_commit;

    fn commit(lines: &str) -> Vec<Action> {
        parse_commit(lines.as_bytes()).unwrap()
    }

    #[test]
    fn the_newest_version_whose_files_are_present() {
        let c0 = commit(
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}
{"metaData":{"configuration":{"delta.enableInCommitTimestamps":"true"}}}
{"add":{"path":"a.parquet"}}"#,
        );
        let c1 = commit(
            r#"{"add":{"path":"b.parquet"}}
{"txn":{"appId":"q","version":0}}"#,
        );
        let c2 = commit(
            r#"{"add":{"path":"c.parquet"}}
{"txn":{"appId":"q","version":1}}"#,
        );
        let c3 = commit(r#"{"remove":{"path":"c.parquet"}}"#);
        let commits = vec![(0, c0), (1, c1), (2, c2), (3, c3)];
        let all = |_: &FileRef| true;
        let r = replay(None, &commits[..3], &all);
        let v = r.consistent.unwrap();
        assert_eq!((v.version, v.live_files, v.in_commit_timestamps), (2, 3, true));
        assert_eq!(v.txns.get("q"), Some(&1));

        // c.parquet has not arrived: 2 is blocked, 3 removes it and is consistent again.
        let no_c = |f: &FileRef| *f != FileRef::Relative("c.parquet".into());
        let r = replay(None, &commits[..3], &no_c);
        assert_eq!(r.consistent.as_ref().map(|c| c.version), Some(1));
        assert_eq!(r.blocked, Some(Blocked { version: 2, missing: 1, example: "c.parquet".into() }));
        let r = replay(None, &commits, &no_c);
        assert_eq!(r.consistent.map(|c| c.version), Some(3));
        assert_eq!(r.blocked, None);
    }

    #[test]
    fn deletion_vectors_count_and_a_checkpoint_is_a_base() {
        let base = commit(r#"{"add":{"path":"a.parquet"}}"#);
        let c = commit(
            r#"{"remove":{"path":"a.parquet"}}
{"add":{"path":"a.parquet","deletionVector":{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"sizeInBytes":36,"cardinality":2}}}"#,
        );
        let no_dv = |f: &FileRef| matches!(f, FileRef::Relative(p) if !p.contains("deletion_vector"));
        let r = replay(Some((10, &base)), &[(11, c.clone())], &no_dv);
        assert_eq!(r.consistent.map(|c| c.version), Some(10));
        assert_eq!(r.blocked.unwrap().example, "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin");
        let r = replay(Some((10, &base)), &[(11, c)], &|_| true);
        assert_eq!(r.consistent.map(|c| (c.version, c.live_files)), Some((11, 1)));
        let r = replay(Some((10, &base)), &[], &|_| false);
        assert_eq!(r.consistent, None);
    }
}
