//! Random partial replications of a generated table, shaped like S3 replication: most replicas lack only a few
//! files written last (replication lag, in no particular order), some lack older files too, and files the primary
//! deleted (log cleanup, VACUUM) may still be in the replica (deletes are not replicated by default).

use crate::generate::read_written;
use crate::prng::Rng;
use std::fs;
use std::path::{Path, PathBuf};

/// What a replication did, for the runner's report.
#[derive(Debug, Clone, Default)]
pub struct Replication {
    /// The shape drawn.
    pub mode: &'static str,
    /// Files of the primary not copied (relative to the table root).
    pub dropped: Vec<String>,
    /// The version of a stale `_last_checkpoint` put in place of the primary's (not yet replicated), if any.
    pub stale_last_checkpoint: Option<u64>,
    /// Files the primary deleted that the replica still holds.
    pub kept_deleted: usize,
}

/// Copies a random subset of `<case_dir>/primary` into `replica_dir` (created) for `seed`.
pub fn replicate(seed: u64, case_dir: &Path, replica_dir: &Path) -> Replication {
    let mut rng = Rng::new(seed, 2);
    let written: Vec<_> = read_written(case_dir).into_iter().filter(|w| w.present).collect();
    let n = written.len();
    let mut keep = vec![true; n];
    let mode = match rng.below(20) {
        0..=1 => "complete",
        2..=11 => "lag",
        12..=15 => "lag+old",
        16..=17 => "old",
        _ => "heavy",
    };
    if mode.starts_with("lag") {
        // The newest files, each still in flight with some probability.
        let tail = match rng.below(10) {
            0..=4 => rng.range(1, 3),
            5..=7 => rng.range(1, 12),
            _ => rng.range(1, (n as u64 / 8).max(2)),
        } as usize;
        let p = *rng.pick(&[0.3, 0.6, 0.9, 1.0]);
        for k in keep.iter_mut().skip(n.saturating_sub(tail)) {
            if rng.chance(p) {
                *k = false;
            }
        }
    }
    if mode.ends_with("old") {
        for _ in 0..rng.range(1, 3) {
            let i = rng.below(n as u64) as usize;
            keep[i] = false;
        }
    }
    if mode == "heavy" {
        let q = *rng.pick(&[0.02, 0.1, 0.3]);
        for k in keep.iter_mut() {
            if rng.chance(q) {
                *k = false;
            }
        }
    }
    // `_last_checkpoint` is rewritten in place after each checkpoint: its newest content is often the one late.
    if rng.chance(0.12)
        && let Some(i) = written.iter().position(|w| w.rel == "_delta_log/_last_checkpoint")
    {
        keep[i] = false;
    }
    let primary = case_dir.join("primary");
    fs::create_dir_all(replica_dir.join("_delta_log")).expect("create the replica dir");
    let mut out = Replication { mode, ..Default::default() };
    for (w, k) in written.iter().zip(&keep) {
        if *k {
            copy(&primary.join(&w.rel), &replica_dir.join(&w.rel));
        } else {
            out.dropped.push(w.rel.clone());
        }
    }
    // A `_last_checkpoint` not yet replicated leaves the replica's previous one in place, when there was one.
    if out.dropped.iter().any(|d| d == "_delta_log/_last_checkpoint") && rng.chance(0.6) {
        let current = fs::read_to_string(primary.join("_delta_log/_last_checkpoint")).unwrap_or_default();
        let current_v = serde_json::from_str::<serde_json::Value>(&current).ok().and_then(|v| v["version"].as_u64());
        let older = history(case_dir).into_iter().rfind(|(v, _)| Some(*v) < current_v);
        if let Some((v, path)) = older {
            copy(&path, &replica_dir.join("_delta_log/_last_checkpoint"));
            out.stale_last_checkpoint = Some(v);
        }
    }
    // Files the primary deleted: all, some or none of them still in the replica.
    let deleted_root = case_dir.join("primary-deleted");
    let deleted: Vec<_> = read_written(case_dir).into_iter().filter(|w| !w.present).collect();
    let share = *rng.pick(&[0.0, 0.0, 0.5, 1.0, 1.0]);
    for w in deleted {
        if rng.chance(share) {
            let from = deleted_root.join(&w.rel);
            if from.exists() {
                copy(&from, &replica_dir.join(&w.rel));
                out.kept_deleted += 1;
            }
        }
    }
    out
}

/// `lastcp-history/<N>.json` files, by version ascending.
fn history(case_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(case_dir.join("lastcp-history"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let v = name.strip_suffix(".json")?.parse().ok()?;
                    Some((v, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Copies a file with its modification time (the project reads objects' last-modified times).
fn copy(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).expect("create a replica dir");
    }
    fs::copy(from, to).expect("copy a file into the replica");
    if let Ok(m) = fs::metadata(from).and_then(|m| m.modified()) {
        let f = fs::File::options().write(true).open(to).expect("reopen a replica file");
        f.set_modified(m).expect("set a replica file's mtime");
    }
}
