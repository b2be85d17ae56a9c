//! The replay of one segment of a table's log on its replica (a checkpoint's actions, or nothing, then the
//! commits after it with no gap): the newest version whose snapshot a reader opens with every file it needs.
//!
//! Reconciliation follows the Delta protocol and delta-kernel-rs's log replay:
//! - a logical file is `(path, deletionVector.uniqueId)` ([`FileKey`]): a DELETE with deletion vectors removes
//!   `(p, old)` and adds `(p, new)`, and `(p, new)` is live with the new vector's file;
//! - the actions of one commit are not ordered: its removes are applied before its adds, which is the same set
//!   whatever order they were written in (the protocol forbids one key in both);
//! - a checkpoint's (or sidecar's) `remove` rows are tombstones, never replayed against that checkpoint's adds
//!   (Spark writes live adds and tombstones sorted by path, so a tombstone may follow the add of its path).

use super::actions::{Action, FileKey, FileRef, Protocol, data_file, deletion_vector_file};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A version at which a reader opens the snapshot and every file it needs is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentVersion {
    /// The version.
    pub version: u64,
    /// The `txn` versions at it, by app id.
    pub txns: BTreeMap<String, i64>,
    /// The table's properties at it.
    pub configuration: BTreeMap<String, String>,
    /// Its protocol.
    pub protocol: Protocol,
    /// How many logical files are live at it.
    pub live_files: usize,
}

impl ConsistentVersion {
    /// The first version whose commit carries an in-commit timestamp, when the table has them on at this version
    /// (`delta.inCommitTimestampEnablementVersion`, or 0 when the table had them from its creation).
    pub fn ict_from(&self) -> Option<u64> {
        ict_from(&self.configuration)
    }

    /// Whether the change data feed is on at this version.
    pub fn change_data_feed(&self) -> bool {
        self.configuration.get(super::CHANGE_DATA_FEED).is_some_and(|v| v == "true")
    }

    /// Whether its protocol makes it catalog-managed or coordinated.
    pub fn catalog_managed(&self) -> bool {
        self.protocol.catalog_managed()
    }
}

/// See [`ConsistentVersion::ict_from`]; for a table's configuration.
pub fn ict_from(configuration: &BTreeMap<String, String>) -> Option<u64> {
    if configuration.get(super::IN_COMMIT_TIMESTAMPS).is_none_or(|v| v != "true") {
        return None;
    }
    Some(configuration.get(super::ICT_ENABLEMENT_VERSION).and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Why a version after the consistent one is not consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The first version after the consistent one that is not consistent.
    pub version: u64,
    /// Why, in a sentence: the files missing (how many, one named), or what is not understood.
    pub why: String,
    /// How many of the live files (data files and deletion vectors) the replica lacks at it.
    pub missing: usize,
}

/// The outcome of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// The newest consistent version, if any.
    pub consistent: Option<ConsistentVersion>,
    /// The first version after it that is not consistent.
    pub blocked: Option<Blocked>,
    /// The newest consistent version up to which every change data file (`cdc` action) of the replayed commits is
    /// present: a change data feed reader restarting on the replica reads changes that far.
    pub change_data: Option<u64>,
    /// A change data file the replica lacks (the first), when there is one.
    pub change_data_missing: Option<String>,
}

#[derive(Default)]
struct State {
    /// Live logical files, with the data file and deletion vector file each needs.
    live: HashMap<FileKey, (FileRef, Option<FileRef>)>,
    /// How many live files need each file (one deletion vector file holds several vectors, at offsets).
    refs: HashMap<FileRef, usize>,
    /// The needed files the replica does not hold.
    missing: BTreeSet<FileRef>,
    txns: BTreeMap<String, i64>,
    protocol: Option<Protocol>,
    configuration: Option<BTreeMap<String, String>>,
}

impl State {
    fn need(&mut self, f: &FileRef, present: &dyn Fn(&FileRef) -> bool) {
        let n = self.refs.entry(f.clone()).or_default();
        *n += 1;
        // An unresolvable deletion vector is missing whatever `present` says: nothing can stand for it.
        if *n == 1 && (matches!(f, FileRef::Unresolvable(_)) || !present(f)) {
            self.missing.insert(f.clone());
        }
    }

    fn release(&mut self, f: &FileRef) {
        if let Some(n) = self.refs.get_mut(f) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(f);
                self.missing.remove(f);
            }
        }
    }

    fn remove(&mut self, key: &FileKey) {
        if let Some((data, dv)) = self.live.remove(key) {
            self.release(&data);
            if let Some(dv) = dv {
                self.release(&dv);
            }
        }
    }

    fn add(&mut self, f: &super::actions::FileAction, present: &dyn Fn(&FileRef) -> bool) {
        let key = f.key();
        self.remove(&key);
        let data = data_file(&f.path);
        let dv = f.deletion_vector.as_ref().and_then(deletion_vector_file);
        self.need(&data, present);
        if let Some(dv) = &dv {
            self.need(dv, present);
        }
        self.live.insert(key, (data, dv));
    }

    fn table_actions(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Txn { app_id, version } => {
                    self.txns.insert(app_id.clone(), *version);
                }
                Action::Protocol(p) => self.protocol = Some(p.clone()),
                Action::Metadata { configuration } => self.configuration = Some(configuration.clone()),
                _ => {}
            }
        }
    }

    /// A checkpoint's rows: its adds are the live files; its removes are tombstones.
    fn checkpoint(&mut self, actions: &[Action], present: &dyn Fn(&FileRef) -> bool) {
        self.table_actions(actions);
        for a in actions {
            if let Action::Add(f) = a {
                self.add(f, present);
            }
        }
    }

    /// A commit's actions, in no order: its removes, then its adds.
    fn commit(&mut self, actions: &[Action], present: &dyn Fn(&FileRef) -> bool) {
        self.table_actions(actions);
        for a in actions {
            if let Action::Remove(f) = a {
                self.remove(&f.key());
            }
        }
        for a in actions {
            if let Action::Add(f) = a {
                self.add(f, present);
            }
        }
    }

    /// Whether a reader opens this version with every file present; why not otherwise.
    fn verdict(&self, version: u64) -> Result<ConsistentVersion, Blocked> {
        let (Some(protocol), Some(configuration)) = (&self.protocol, &self.configuration) else {
            return Err(Blocked {
                version,
                why: "no protocol or metadata action precedes it: a reader cannot open it".into(),
                missing: 0,
            });
        };
        if let Some(why) = protocol.not_understood() {
            return Err(Blocked { version, why, missing: 0 });
        }
        if let Some(first) = self.missing.iter().next() {
            let why = match first {
                FileRef::Unresolvable(why) => why.clone(),
                FileRef::Relative(p) | FileRef::Absolute(p) => format!(
                    "{} live file(s) (data files and deletion vectors) missing in the replica, e.g. {p}",
                    self.missing.len()
                ),
            };
            return Err(Blocked { version, why, missing: self.missing.len() });
        }
        Ok(ConsistentVersion {
            version,
            txns: self.txns.clone(),
            configuration: configuration.clone(),
            protocol: protocol.clone(),
            live_files: self.live.len(),
        })
    }
}

/// Replays `base` (a checkpoint's actions at its version, sidecars included; `None` to start from commit 0) and
/// then `commits`, which must follow it with no gap, ascending; `present` says whether the replica holds a file.
/// The answer is the newest version at which the snapshot opens with every live file present (a version may be
/// inconsistent and a later one consistent again, e.g. once a missing file is removed).
pub fn replay(
    base: Option<(u64, &[Action])>,
    commits: &[(u64, Vec<Action>)],
    present: &dyn Fn(&FileRef) -> bool,
) -> ReplayOutcome {
    let mut state = State::default();
    let mut out = ReplayOutcome { consistent: None, blocked: None, change_data: None, change_data_missing: None };
    let mut cdc_whole = true;
    let check = |state: &State, version: u64, cdc_whole: bool, out: &mut ReplayOutcome| match state.verdict(version) {
        Ok(c) => {
            if cdc_whole {
                out.change_data = Some(version);
            }
            out.consistent = Some(c);
            out.blocked = None;
        }
        Err(b) => {
            if out.blocked.is_none() {
                out.blocked = Some(b);
            }
        }
    };
    if let Some((version, actions)) = base {
        state.checkpoint(actions, present);
        check(&state, version, cdc_whole, &mut out);
    }
    for (version, actions) in commits {
        state.commit(actions, present);
        for a in actions {
            if let Action::Cdc(path) = a
                && cdc_whole
                && !present(&data_file(path))
            {
                cdc_whole = false;
                out.change_data_missing = Some(path.clone());
            }
        }
        check(&state, *version, cdc_whole, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::actions::parse_commit;

    fn commit(lines: &str) -> Vec<Action> {
        parse_commit(lines.as_bytes()).unwrap()
    }

    const P_AND_M: &str = r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors","inCommitTimestamp"]}}
{"metaData":{"configuration":{"delta.enableInCommitTimestamps":"true","delta.inCommitTimestampEnablementVersion":"2"}}}"#;

    // Two deletion vectors of the protocol's own example prefix "ab" (UUIDs differ in their last characters).
    const DV1: &str =
        r#"{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"sizeInBytes":36,"cardinality":2}"#;
    const DV2: &str =
        r#"{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k0","offset":1,"sizeInBytes":40,"cardinality":3}"#;

    fn dv_file(dv: &str) -> FileRef {
        let a = commit(&format!(r#"{{"add":{{"path":"x","deletionVector":{dv}}}}}"#));
        let Action::Add(f) = &a[0] else { panic!() };
        deletion_vector_file(f.deletion_vector.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn the_newest_version_whose_files_are_present() {
        let c0 = commit(&format!("{P_AND_M}\n{}", r#"{"add":{"path":"a.parquet"}}"#));
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
        assert_eq!((v.version, v.live_files, v.ict_from()), (2, 3, Some(2)));
        assert_eq!(v.txns.get("q"), Some(&1));

        // c.parquet has not arrived: 2 is blocked, 3 removes it and is consistent again.
        let no_c = |f: &FileRef| *f != FileRef::Relative("c.parquet".into());
        let r = replay(None, &commits[..3], &no_c);
        assert_eq!(r.consistent.as_ref().map(|c| c.version), Some(1));
        let b = r.blocked.unwrap();
        assert_eq!((b.version, b.missing), (2, 1));
        assert!(b.why.ends_with("e.g. c.parquet"), "{}", b.why);
        let r = replay(None, &commits, &no_c);
        assert_eq!(r.consistent.map(|c| c.version), Some(3));
        assert_eq!(r.blocked, None);
    }

    #[test]
    fn a_second_deletion_vector_in_one_commit_written_add_first_still_needs_its_file() {
        // A file DELETEd twice: the second DELETE removes (a, DV1) and adds (a, DV2). Written add first, a replay
        // in line order (or by path alone) would drop `a` and never ask for DV2's file.
        let c0 = commit(&format!("{P_AND_M}\n{}", r#"{"add":{"path":"a.parquet"}}"#));
        let c1 = commit(&format!(
            r#"{{"remove":{{"path":"a.parquet"}}}}
{{"add":{{"path":"a.parquet","deletionVector":{DV1}}}}}"#
        ));
        let c2 = commit(&format!(
            r#"{{"add":{{"path":"a.parquet","deletionVector":{DV2}}}}}
{{"remove":{{"path":"a.parquet","deletionVector":{DV1}}}}}"#
        ));
        let dv2 = dv_file(DV2);
        let lacks_dv2 = |f: &FileRef| *f != dv2;
        let r = replay(None, &[(0, c0), (1, c1), (2, c2)], &lacks_dv2);
        assert_eq!(r.consistent.map(|c| (c.version, c.live_files)), Some((1, 1)));
        assert_eq!(r.blocked.map(|b| b.version), Some(2));
    }

    #[test]
    fn a_checkpoints_tombstones_are_not_replayed_against_its_adds() {
        // Spark's checkpoint: live adds and tombstones sorted by path; the tombstone (a, DV1) comes right after the
        // live (a, DV2). Replayed as a commit in row order, `a` would vanish and DV2's file would not be asked for.
        let cp = commit(&format!(
            r#"{P_AND_M}
{{"add":{{"path":"a.parquet","deletionVector":{DV2}}}}}
{{"remove":{{"path":"a.parquet","deletionVector":{DV1}}}}}
{{"remove":{{"path":"b.parquet"}}}}"#
        ));
        let dv2 = dv_file(DV2);
        let r = replay(Some((10, &cp)), &[], &|f: &FileRef| *f != dv2);
        assert_eq!(r.consistent, None);
        assert_eq!(r.blocked.map(|b| b.version), Some(10));
        let r = replay(Some((10, &cp)), &[], &|_| true);
        assert_eq!(r.consistent.map(|c| c.live_files), Some(1));
    }

    #[test]
    fn what_is_not_understood_is_never_certified() {
        let start = commit(&format!("{P_AND_M}\n{}", r#"{"add":{"path":"a.parquet"}}"#));
        // A deletion vector whose storage type is unknown.
        let odd = commit(r#"{"add":{"path":"b.parquet","deletionVector":{"storageType":"z","pathOrInlineDv":"q"}}}"#);
        let r = replay(None, &[(0, start.clone()), (1, odd)], &|_| true);
        assert_eq!(r.consistent.as_ref().map(|c| c.version), Some(0));
        assert!(r.blocked.unwrap().why.contains("storage type"));
        // A reader feature the assessment does not know.
        let unknown = commit(
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors","futureThing"],"writerFeatures":["deletionVectors"]}}"#,
        );
        let r = replay(None, &[(0, start.clone()), (1, unknown)], &|_| true);
        assert!(r.blocked.unwrap().why.contains("futureThing"));
        // No protocol or metadata at all: no reader opens it.
        let r = replay(None, &[(0, commit(r#"{"add":{"path":"a.parquet"}}"#))], &|_| true);
        assert_eq!(r.consistent, None);
    }

    #[test]
    fn change_data_files_have_their_own_version() {
        let c0 = commit(
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":4}}
{"metaData":{"configuration":{"delta.enableChangeDataFeed":"true"}}}
{"add":{"path":"a.parquet"}}"#,
        );
        let c1 = commit(
            r#"{"add":{"path":"b.parquet"}}
{"cdc":{"path":"_change_data/cdc-00001.c000.snappy.parquet","partitionValues":{},"size":1,"dataChange":false}}"#,
        );
        let c2 = commit(r#"{"add":{"path":"c.parquet"}}"#);
        let lacks_cdc = |f: &FileRef| !matches!(f, FileRef::Relative(p) if p.starts_with("_change_data/"));
        let r = replay(None, &[(0, c0), (1, c1), (2, c2)], &lacks_cdc);
        let c = r.consistent.unwrap();
        assert!(c.change_data_feed());
        assert_eq!((c.version, r.change_data), (2, Some(0)));
        assert_eq!(r.change_data_missing.as_deref(), Some("_change_data/cdc-00001.c000.snappy.parquet"));
    }
}
