//! `--bench`: the project's assessment (`dr_delta::assess`, default `DeltaLimits`) of one large table.
//!
//! The table is what the storage of a long-lived Databricks table holds after log cleanup, written directly (its
//! 100,000 commits are not simulated one by one; only the state at the start of the kept log is drawn at once):
//! - protocol (3,7) with `deletionVectors`, partitioned by `region` into [`Shape::partitions`] directories;
//! - the log keeps the last [`Shape::kept`] versions: commits `newest-kept+1..=newest`, a classic Parquet checkpoint
//!   every [`Shape::checkpoint_interval`] commits among them (Spark's row order: protocol, metaData, then live
//!   adds ++ tombstones sorted by path), `_last_checkpoint` naming the newest checkpoint; the older commits and
//!   checkpoints are gone, as Delta's cleanup leaves them;
//! - about [`Shape::live_files`] live data files, 90% with a `u` deletion vector, [`Shape::dvs_per_file`] DVs
//!   sharing one DV file at increasing offsets; tombstones within the 7-day retention;
//! - each kept commit is a small DML: [`DML_FILES`] files removed and re-added with new DVs (sharing the commit's
//!   DV file), every fourth one (an UPDATE) adding a new data file too;
//! - data and DV files are dummy bytes of the sizes the log gives.
//!
//! The replica is a copy lacking the data and DV files written by the last [`Shape::lagging`] commits (their
//! commit JSONs did arrive, as replication's small log files often do first): its consistent version is
//! `newest - lagging`, and the assessment has to find the missing files to say so.

use crate::checkpoint_parquet::json_rows_to_parquet;
use crate::prng::{Rng, uuid_text, z85};
use crate::project;
use dr_delta::{DeltaLimits, assess};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};
use time::OffsetDateTime;

/// Files each kept commit removes and re-adds with a new deletion vector.
const DML_FILES: usize = 3;
/// Minutes between commits (so a week of tombstone retention spans about 1,000 commits).
const COMMIT_EVERY_MS: i64 = 10 * 60 * 1000;
/// `delta.deletedFileRetentionDuration`'s default: tombstones older than this leave the checkpoints.
const TOMBSTONE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// The table's shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The newest version.
    pub newest: u64,
    /// Versions the log keeps (commits `newest - kept + 1 ..= newest`).
    pub kept: u64,
    /// A checkpoint every this many commits.
    pub checkpoint_interval: u64,
    /// Live data files at the newest version.
    pub live_files: usize,
    /// Partition directories.
    pub partitions: usize,
    /// Deletion vectors per DV file in the state drawn at the log's start.
    pub dvs_per_file: usize,
    /// The newest commits whose data and DV files the replica lacks.
    pub lagging: u64,
    /// Tombstones drawn at the log's start (removes of the week before it).
    pub old_tombstones: usize,
}

/// The table: 100,000 commits, 20,000 live files.
pub const BIG: Shape = Shape {
    newest: 99_999,
    kept: 1000,
    checkpoint_interval: 100,
    live_files: 20_000,
    partitions: 20,
    dvs_per_file: 8,
    lagging: 3,
    old_tombstones: 2000,
};

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub primary_objects: usize,
    pub replica_objects: usize,
    pub primary_bytes: u64,
    pub live_files: usize,
    pub live_u_dvs: usize,
    pub dv_files: usize,
    pub newest_checkpoint: u64,
    pub newest_checkpoint_rows: usize,
    pub newest_checkpoint_bytes: usize,
    /// The replica's expected consistent version.
    pub expected: u64,
}

/// A live file's add.
struct Entry {
    path: String,
    region: String,
    size: i64,
    modification_time: i64,
    records: u64,
    dv: Option<Value>,
}

struct Table {
    rng: Rng,
    primary: PathBuf,
    replica: PathBuf,
    clock: i64,
    live: BTreeMap<String, Entry>,
    /// Live paths, for drawing (no file ever leaves the table here: DMLs only change DVs).
    paths: Vec<String>,
    /// (path, DV id) -> (deletion time, the checkpoint's `remove` row).
    tombstones: BTreeMap<(String, String), (i64, Value)>,
    table_id: String,
    created: i64,
    partitions: usize,
    out: Written,
}

/// Writes the table into `dir/primary` and `dir/replica` (both emptied first).
pub fn write_table(shape: &Shape, dir: &Path, seed: u64) -> Written {
    let primary = dir.join("primary");
    let replica = dir.join("replica");
    for d in [&primary, &replica] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d.join("_delta_log")).expect("create a table dir");
    }
    let first = shape.newest + 1 - shape.kept;
    let start = 1_780_000_000_000i64; // 2026-05-28
    let mut t = Table {
        rng: Rng::new(seed, 77),
        primary,
        replica,
        clock: start,
        live: BTreeMap::new(),
        paths: vec![],
        tombstones: BTreeMap::new(),
        table_id: String::new(),
        created: start - 400 * 24 * 3600 * 1000,
        partitions: shape.partitions,
        out: Written { expected: shape.newest - shape.lagging, ..Default::default() },
    };
    t.table_id = t.rng.uuid_string();

    // The state before the kept log: its files exist (written over the months before), its log is cleaned up.
    let updates = (first..=shape.newest).filter(|v| v % 4 == 3).count();
    let initial = shape.live_files.saturating_sub(updates);
    t.clock = start - 24 * 3600 * 1000;
    let mut dv_file: Option<(String, String, i64, usize)> = None; // (encoded, rel, length, DVs)
    for i in 0..initial {
        let path = t.new_data_file(i % shape.partitions, true);
        if t.rng.chance(0.9) {
            let (encoded, rel, len, n) = match dv_file.take() {
                Some(f) => f,
                None => {
                    let uuid = t.rng.uuid();
                    (z85(&uuid), format!("deletion_vector_{}.bin", uuid_text(&uuid)), 1, 0)
                }
            };
            let size = t.rng.range(20, 60) as i64;
            let records = t.live[&path].records as i64;
            let dv = json!({"storageType": "u", "pathOrInlineDv": encoded, "offset": len, "sizeInBytes": size,
                "cardinality": t.rng.range(1, 4).min(records as u64)});
            t.live.get_mut(&path).expect("just added").dv = Some(dv);
            let f = (encoded, rel, len + 4 + size + 4, n + 1);
            if f.3 == shape.dvs_per_file {
                t.write_dv_file(&f.1, f.2, true);
            } else {
                dv_file = Some(f);
            }
        }
    }
    if let Some(f) = dv_file {
        t.write_dv_file(&f.1, f.2, true);
    }
    // Removes of the week before the kept log (an older DV of a live file, whose DV file VACUUM may have taken).
    for _ in 0..shape.old_tombstones {
        let path = t.paths[t.rng.below(t.paths.len() as u64) as usize].clone();
        let uuid = t.rng.uuid();
        let dv = json!({"storageType": "u", "pathOrInlineDv": z85(&uuid), "offset": 1, "sizeInBytes": 30, "cardinality": 1});
        let at = start - t.rng.range(0, TOMBSTONE_RETENTION_MS as u64 - 1) as i64;
        let e = &t.live[&path];
        let row = remove_row(e, Some(&dv), at, false);
        t.tombstones.insert((path, dv_id(&dv)), (at, row));
    }

    // The kept log.
    for v in first..=shape.newest {
        t.clock = start + (v - first) as i64 * COMMIT_EVERY_MS;
        let in_replica = v + shape.lagging <= shape.newest;
        t.dml(v, in_replica);
        if v.is_multiple_of(shape.checkpoint_interval) {
            t.checkpoint(v);
        }
    }
    t.out.live_files = t.live.len();
    t.out.live_u_dvs = t.live.values().filter(|e| e.dv.is_some()).count();
    t.out
}

impl Table {
    /// Writes `rel` into the primary and, when `in_replica`, the replica; last-modified = the clock.
    fn put(&mut self, rel: &str, body: &[u8], in_replica: bool) {
        let mtime = UNIX_EPOCH + Duration::from_millis(self.clock.max(0) as u64);
        let roots: &[&PathBuf] = if in_replica { &[&self.primary, &self.replica] } else { &[&self.primary] };
        for root in roots {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create a dir in the table");
            }
            fs::write(&path, body).expect("write a table file");
            let f = fs::File::options().write(true).open(&path).expect("reopen a table file");
            f.set_modified(mtime).expect("set a file's mtime");
        }
        // `_last_checkpoint` is rewritten: count it once.
        if rel != "_delta_log/_last_checkpoint" || self.out.primary_objects == 0 {
            self.out.primary_objects += 1;
            self.out.replica_objects += usize::from(in_replica);
        }
        self.out.primary_bytes += body.len() as u64;
    }

    fn new_data_file(&mut self, partition: usize, in_replica: bool) -> String {
        let region = format!("p{:02}", partition % self.partitions);
        let path = format!("region={region}/part-{:05}-{}-c000.snappy.parquet", self.rng.below(200), self.rng.uuid_string());
        let size = self.rng.range(16, 96) as i64;
        let body = self.rng.bytes(size as usize);
        self.put(&path, &body, in_replica);
        let records = self.rng.range(5, 50);
        let e = Entry { path: path.clone(), region, size, modification_time: self.clock, records, dv: None };
        self.live.insert(path.clone(), e);
        self.paths.push(path.clone());
        path
    }

    fn write_dv_file(&mut self, rel: &str, len: i64, in_replica: bool) {
        let body = self.rng.bytes(len as usize);
        self.put(rel, &body, in_replica);
        self.out.dv_files += 1;
    }

    /// One DML commit at `v`: DML_FILES files get a new DV (one new DV file), every fourth commit adds a file.
    fn dml(&mut self, v: u64, in_replica: bool) {
        let uuid = self.rng.uuid();
        let encoded = z85(&uuid);
        let dv_rel = format!("deletion_vector_{}.bin", uuid_text(&uuid));
        let mut len: i64 = 1;
        let mut actions = vec![];
        let mut touched: Vec<String> = vec![];
        while touched.len() < DML_FILES {
            let p = self.paths[self.rng.below(self.paths.len() as u64) as usize].clone();
            if !touched.contains(&p) {
                touched.push(p);
            }
        }
        for path in touched {
            let e = self.live.get_mut(&path).expect("a live file");
            let old = e.dv.take();
            let card = old.as_ref().and_then(|d| d["cardinality"].as_u64()).unwrap_or(0) + 1;
            let size = 20 + (card as i64 % 40);
            let dv = json!({"storageType": "u", "pathOrInlineDv": encoded, "offset": len, "sizeInBytes": size,
                "cardinality": card.min(e.records)});
            len += 4 + size + 4;
            let remove = remove_row(e, old.as_ref(), self.clock, true);
            let mut tomb = remove.clone();
            tomb["remove"]["dataChange"] = json!(false);
            self.tombstones.insert((path.clone(), old.as_ref().map(dv_id).unwrap_or_default()), (self.clock, tomb));
            e.dv = Some(dv);
            actions.push(remove);
            actions.push(add_row(e, true));
        }
        self.write_dv_file(&dv_rel, len, in_replica);
        let op = if v % 4 == 3 {
            let p = self.rng.below(self.partitions as u64) as usize;
            let path = self.new_data_file(p, in_replica);
            actions.push(add_row(&self.live[&path], true));
            "UPDATE"
        } else if v.is_multiple_of(2) {
            "DELETE"
        } else {
            "MERGE"
        };
        let info = json!({"commitInfo": {
            "timestamp": self.clock, "operation": op, "operationParameters": {}, "readVersion": v - 1,
            "isolationLevel": "WriteSerializable", "isBlindAppend": false,
            "engineInfo": "Databricks-Runtime/15.4.x-scala2.12", "txnId": self.rng.uuid_string(),
        }});
        let mut body = info.to_string();
        body.push('\n');
        for a in &actions {
            body.push_str(&a.to_string());
            body.push('\n');
        }
        // The commit JSON reached the replica even when its files did not (see the module's doc).
        self.put(&format!("_delta_log/{v:020}.json"), body.as_bytes(), true);
    }

    /// A classic checkpoint of the state at `v` and `_last_checkpoint` naming it.
    fn checkpoint(&mut self, v: u64) {
        let horizon = self.clock - TOMBSTONE_RETENTION_MS;
        self.tombstones.retain(|_, (at, _)| *at >= horizon);
        let protocol = json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]}});
        let schema = json!({"type": "struct", "fields": [
            {"name": "id", "type": "long", "nullable": true, "metadata": {}},
            {"name": "value", "type": "string", "nullable": true, "metadata": {}},
            {"name": "region", "type": "string", "nullable": true, "metadata": {}},
        ]})
        .to_string();
        let metadata = json!({"metaData": {
            "id": self.table_id, "format": {"provider": "parquet", "options": {}}, "schemaString": schema,
            "partitionColumns": ["region"], "createdTime": self.created,
            "configuration": {"delta.enableDeletionVectors": "true", "delta.checkpointInterval": "100"},
        }});
        let mut files: Vec<(&str, u8, Value)> = self.live.values().map(|e| (e.path.as_str(), 0, add_row(e, false))).collect();
        files.extend(self.tombstones.iter().map(|((p, _), (_, row))| (p.as_str(), 1, row.clone())));
        files.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut rows = vec![protocol, metadata];
        rows.extend(files.into_iter().map(|(_, _, r)| r));
        let bytes = json_rows_to_parquet(&rows, false);
        self.put(&format!("_delta_log/{v:020}.checkpoint.parquet"), &bytes, true);
        let last = json!({"version": v, "size": rows.len(), "sizeInBytes": bytes.len(), "numOfAddFiles": self.live.len()});
        self.put("_delta_log/_last_checkpoint", last.to_string().as_bytes(), true);
        self.out.newest_checkpoint = v;
        self.out.newest_checkpoint_rows = rows.len();
        self.out.newest_checkpoint_bytes = bytes.len();
    }
}

fn add_row(e: &Entry, data_change: bool) -> Value {
    let mut a = Map::new();
    a.insert("path".into(), json!(e.path));
    a.insert("partitionValues".into(), json!({"region": e.region}));
    a.insert("size".into(), json!(e.size));
    a.insert("modificationTime".into(), json!(e.modification_time));
    a.insert("dataChange".into(), json!(data_change));
    a.insert("stats".into(), json!(format!("{{\"numRecords\":{}}}", e.records)));
    if let Some(dv) = &e.dv {
        a.insert("deletionVector".into(), dv.clone());
    }
    json!({ "add": a })
}

fn remove_row(e: &Entry, dv: Option<&Value>, at: i64, data_change: bool) -> Value {
    let mut r = Map::new();
    r.insert("path".into(), json!(e.path));
    r.insert("deletionTimestamp".into(), json!(at));
    r.insert("dataChange".into(), json!(data_change));
    r.insert("extendedFileMetadata".into(), json!(true));
    r.insert("partitionValues".into(), json!({"region": e.region}));
    r.insert("size".into(), json!(e.size));
    if let Some(dv) = dv {
        r.insert("deletionVector".into(), dv.clone());
    }
    json!({ "remove": r })
}

fn dv_id(dv: &Value) -> String {
    format!("{}{}@{}", dv["storageType"].as_str().unwrap_or(""), dv["pathOrInlineDv"].as_str().unwrap_or(""), dv["offset"])
}

/// `VmHWM:` or `VmRSS:` of this process, KiB.
fn status_kib(field: &str) -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Returns the heap's free pages to the system (glibc), so that the next run's growth is not hidden by pages
/// the table's writing and earlier runs freed but kept resident.
fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim has no preconditions; it only releases free heap memory.
        unsafe { malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() { 0.0 } else { xs[xs.len() / 2] }
}

/// `--bench [--write DIR]`: writes the table (into DIR, kept, or a temporary directory under /dev/shm), then
/// assesses it BENCH_RUNS times (default 5) with the default limits and prints the figures. Non-zero exit when an
/// assessment does not say the expected consistent version.
pub fn run(write: Option<&Path>) -> Result<(), String> {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let temp;
    let dir = match write {
        Some(d) => d.to_path_buf(),
        None => {
            let shm = Path::new("/dev/shm");
            temp = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let shape = BIG;
    let started = Instant::now();
    let w = write_table(&shape, &dir, 1);
    println!(
        "Delta table: versions 0..={} (log keeps {}..={}: {} commits, classic Parquet checkpoints every {}, \
         `_last_checkpoint` = {}), protocol (3,7) deletionVectors, {} partitions; {} live files, {} with a `u` DV, \
         {} DV files; newest checkpoint {} rows, {} bytes; primary {} objects ({:.1} MB), replica {} objects \
         (lacks the data/DV files of the last {} commits: expected consistent version {}); written into {} in {:.1} s",
        shape.newest,
        shape.newest + 1 - shape.kept,
        shape.newest,
        shape.kept,
        shape.checkpoint_interval,
        w.newest_checkpoint,
        shape.partitions,
        w.live_files,
        w.live_u_dvs,
        w.dv_files,
        w.newest_checkpoint_rows,
        w.newest_checkpoint_bytes,
        w.primary_objects,
        w.primary_bytes as f64 / 1e6,
        w.replica_objects,
        shape.lagging,
        w.expected,
        dir.display(),
        started.elapsed().as_secs_f64(),
    );
    let loaded = Instant::now();
    let data = project::load_pair(&dir.join("primary"), &dir.join("replica"))?;
    let plane = project::plane()?;
    println!("loaded into MemDataBuckets in {:.1} s", loaded.elapsed().as_secs_f64());
    let limits = DeltaLimits::default();
    println!();
    println!(
        "`dr_delta::assess`, `DeltaLimits::default()` (deadline {:?}), in-process `MemDataBuckets`, release build, \
         tokio current-thread runtime, BENCH_RUNS={runs}. Peak RSS growth: VmHWM after the assessment minus VmRSS \
         before it, VmHWM reset by writing \"5\" to /proc/self/clear_refs before each run (Linux); the table's \
         bytes held by the store are not in it; glibc's `malloc_trim(0)` before each run{} so that heap pages \
         freed earlier (the table's writing, earlier runs) but still resident do not hide the growth.",
        limits.deadline,
        if trim_heap() { "" } else { " (not available on this target: growth may be understated)" }
    );
    println!();
    println!(
        "| run | wall ms | status | consistent version | list pages | keys listed | GETs | HEADs | bytes read | peak RSS growth MB | VmHWM after MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (mut walls, mut rss) = (vec![], vec![]);
    let mut ok = true;
    let mut last = String::new();
    for run in 1..=runs {
        let before_calls = data.calls();
        let trimmed = trim_heap();
        let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
        let before = if reset { status_kib("VmRSS:") } else { status_kib("VmHWM:") };
        let t0 = Instant::now();
        let a = rt.block_on(assess(&data, &plane, &limits, OffsetDateTime::now_utc()));
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let hwm = status_kib("VmHWM:");
        let grew = hwm.saturating_sub(before) as f64 / 1024.0;
        let c = data.calls();
        let t = a.tables.first().ok_or("the assessment has no table")?;
        let status = serde_json::to_value(t.status).map_err(|e| e.to_string())?;
        let status = status.as_str().map_or_else(|| status.to_string(), str::to_owned);
        println!(
            "| {run} | {ms:.0} | {status}{} | {} | {} | {} | {} | {} | {} | {grew:.1} | {:.1} |",
            if a.complete { "" } else { " (NOT complete)" },
            t.replica_consistent_version.map_or("none".to_owned(), |v| v.to_string()),
            c.pages - before_calls.pages,
            c.listed - before_calls.listed,
            c.gets - before_calls.gets,
            c.heads - before_calls.heads,
            c.bytes - before_calls.bytes,
            hwm as f64 / 1024.0,
        );
        let _ = trimmed;
        ok &= a.complete && t.replica_consistent_version == Some(w.expected);
        last = t.reason.clone();
        walls.push(ms);
        rss.push(grew);
    }
    let (wall, grew) = (median(walls.clone()), median(rss.clone()));
    let worst = walls.iter().copied().fold(0.0, f64::max);
    let worst_rss = rss.iter().copied().fold(0.0, f64::max);
    println!();
    println!("median: {wall:.0} ms, peak RSS growth {grew:.1} MB (worst {worst:.0} ms, {worst_rss:.1} MB); reason: {last}");
    println!(
        "target (within the {:?} deadline and 64 MB, in-process store): {} (every run {} the deadline, {} 64 MB)",
        limits.deadline,
        if worst < limits.deadline.as_secs_f64() * 1000.0 && worst_rss < 64.0 && ok { "HOLDS" } else { "DOES NOT HOLD" },
        if worst < limits.deadline.as_secs_f64() * 1000.0 { "within" } else { "NOT within" },
        if worst_rss < 64.0 { "under" } else { "NOT under" },
    );
    if ok { Ok(()) } else { Err(format!("an assessment did not say consistent version {} (complete)", w.expected)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel;

    /// A small table of the same kind: the kernel reads the primary at its newest version and at every kept
    /// checkpoint, the replica at the expected version and not after it; the project says the expected version.
    #[test]
    fn a_small_bench_table_is_what_the_kernel_reads() {
        let shape = Shape { live_files: 300, partitions: 4, old_tombstones: 40, kept: 250, ..BIG };
        let dir = tempfile::tempdir().expect("a temp dir");
        let w = write_table(&shape, dir.path(), 5);
        assert_eq!(w.newest_checkpoint, 99_900);
        let kernel = kernel::Kernel::new();
        let (primary, replica) = (dir.path().join("primary"), dir.path().join("replica"));
        for v in [99_800, 99_900, shape.newest] {
            kernel.check(&primary, v).unwrap_or_else(|e| panic!("primary at {v}: {e}"));
        }
        kernel.check(&replica, w.expected).unwrap_or_else(|e| panic!("replica at {}: {e}", w.expected));
        assert!(kernel.check(&replica, w.expected + 1).is_err());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let report = rt.block_on(project::project_report(&primary, &replica)).expect("a report");
        assert_eq!(report.replica_consistent_version, Some(w.expected), "{}", report.reason);
    }
}
