//! A generator of random Delta tables written the way Spark/Databricks write them (delta-io PROTOCOL.md).
//!
//! A case directory holds:
//! - `primary/`: the table (`_delta_log/` with commits, checkpoints of every kind, sidecars, `_last_checkpoint`;
//!   data files, deletion-vector files, `_change_data/` files);
//! - `primary-deleted/`: what log cleanup and VACUUM deleted from the table (an S3 replica keeps such files
//!   when deletes are not replicated, so the replication may put them back);
//! - `lastcp-history/<N>.json`: every `_last_checkpoint` ever written (a lagging replica may hold a stale one);
//! - `adds.json`: for each commit, the data and DV files its adds name (the oracle's shortcut, see `kernel`);
//! - `written.json`: every file of the table in write order with the version that wrote it (the replication's
//!   lag is drawn over this order).
//!
//! Only the log is real: data and deletion-vector files are dummy bytes of the size the log gives, since neither
//! the kernel's scan planning nor the project's assessment reads them.

use crate::checkpoint_parquet::json_rows_to_parquet;
use crate::prng::{Rng, uuid_text, z85};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// What the generator built, for the runner's report.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The newest version written.
    pub newest: u64,
    /// The first version still in the log (after cleanup).
    pub log_start: u64,
    /// One-line feature summary.
    pub features: String,
    /// Versions with a checkpoint and its kind, oldest first.
    pub checkpoints: Vec<(u64, &'static str)>,
    /// What the history exercised (for the coverage line): `dv`, `second dv`, `inline dv`, `shared dv file`, ...
    pub tags: BTreeSet<&'static str>,
}

/// One file of the table in write order (`written.json`).
#[derive(Debug, Clone)]
pub struct Written {
    /// Path relative to the table root.
    pub rel: String,
    /// The version whose commit (or checkpoint) wrote it.
    pub version: u64,
    /// Whether it is still in `primary/` (false: cleanup or VACUUM moved it to `primary-deleted/`).
    pub present: bool,
}

/// A live file's add, as the log gives it.
#[derive(Debug, Clone)]
struct FileEntry {
    path: String,
    partition_values: BTreeMap<String, String>,
    size: i64,
    modification_time: i64,
    records: u64,
    dv: Option<Value>,
}

/// The checkpoint layouts the generator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointKind {
    Classic,
    MultiPart,
    V2Json,
    V2Parquet,
    V2Classic,
}

impl CheckpointKind {
    fn name(self) -> &'static str {
        match self {
            CheckpointKind::Classic => "classic",
            CheckpointKind::MultiPart => "multi-part",
            CheckpointKind::V2Json => "v2-json",
            CheckpointKind::V2Parquet => "v2-parquet",
            CheckpointKind::V2Classic => "v2-classic-name",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            CheckpointKind::Classic => "checkpoint classic",
            CheckpointKind::MultiPart => "checkpoint multi-part",
            CheckpointKind::V2Json => "checkpoint v2 json",
            CheckpointKind::V2Parquet => "checkpoint v2 parquet",
            CheckpointKind::V2Classic => "checkpoint v2 classic-named",
        }
    }
}

/// The writer's state: the table as of its newest commit.
struct Writer {
    rng: Rng,
    case_dir: PathBuf,
    root: PathBuf,
    /// The next version to commit.
    next_version: u64,
    /// The newest commit's timestamp (ms).
    clock: i64,
    reader_version: i64,
    writer_version: i64,
    reader_features: Vec<String>,
    writer_features: Vec<String>,
    table_id: String,
    created_time: i64,
    columns: Vec<(String, &'static str)>,
    partition_columns: Vec<String>,
    configuration: BTreeMap<String, String>,
    dv: bool,
    v2: bool,
    cdf: bool,
    ict: bool,
    live: BTreeMap<String, FileEntry>,
    /// Remove tombstones by action identity (path, deletion-vector unique id).
    tombstones: BTreeMap<(String, String), Value>,
    txns: BTreeMap<String, Value>,
    /// Data and DV files that exist (not vacuumed), with the version that wrote them.
    data_files: BTreeMap<String, u64>,
    /// Every file written, in order.
    written: Vec<Written>,
    /// Checkpoints: version -> (kind, its log files).
    /// Checkpoints: version -> each checkpoint written at it (kind, its log files); two at one version happen
    /// when writers race or a v2 table also gets a classic-named one.
    checkpoints: BTreeMap<u64, Vec<(CheckpointKind, Vec<String>)>>,
    log_start: u64,
    app_ids: Vec<String>,
    /// (version, file) for each data file and DV file an add of that version's commit names (`adds.json`).
    add_refs: Vec<(u64, String)>,
    tags: BTreeSet<&'static str>,
    /// Whether each commit gets a `N.crc` (Databricks writes them; delta-rs and older Spark do not).
    crc: bool,
}

/// Writes a random table for `seed` under `case_dir` (see the module's comment); `case_dir` must be empty.
pub fn generate(seed: u64, case_dir: &Path) -> Generated {
    let mut w = Writer::new(seed, case_dir);
    // Most tables are tens of commits; some run to a few hundred (checkpoints and cleanup matter there).
    let commits = match w.rng.below(10) {
        0..=5 => w.rng.range(8, 60),
        6..=8 => w.rng.range(60, 150),
        _ => w.rng.range(150, 300),
    };
    w.create();
    let checkpoint_rate = *w.rng.pick(&[0.03, 0.08, 0.15, 0.3]);
    for _ in 1..commits {
        w.random_commit();
        let v = w.next_version - 1;
        if w.rng.chance(checkpoint_rate) {
            w.checkpoint(v);
            if w.rng.chance(0.2) {
                w.cleanup();
            }
        }
    }
    w.finish()
}

impl Writer {
    fn new(seed: u64, case_dir: &Path) -> Writer {
        let mut rng = Rng::new(seed, 1);
        let root = case_dir.join("primary");
        fs::create_dir_all(root.join("_delta_log")).expect("create the table dir");
        let clock = 1_700_000_000_000 + rng.below(100_000_000_000) as i64;
        let table_id = rng.uuid_string();
        Writer {
            rng,
            case_dir: case_dir.to_path_buf(),
            root,
            next_version: 0,
            clock,
            reader_version: 1,
            writer_version: 2,
            reader_features: vec![],
            writer_features: vec![],
            table_id,
            created_time: clock,
            columns: vec![],
            partition_columns: vec![],
            configuration: BTreeMap::new(),
            dv: false,
            v2: false,
            cdf: false,
            ict: false,
            live: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            txns: BTreeMap::new(),
            data_files: BTreeMap::new(),
            written: vec![],
            checkpoints: BTreeMap::new(),
            log_start: 0,
            app_ids: vec![],
            add_refs: vec![],
            tags: BTreeSet::new(),
            crc: false,
        }
    }

    /// Commit 0: protocol, metaData, and sometimes a first append (CTAS).
    fn create(&mut self) {
        self.columns = vec![("id".into(), "long"), ("value".into(), "string")];
        match self.rng.below(4) {
            0 => {
                self.columns.push(("region".into(), "string"));
                self.partition_columns = vec!["region".into()];
            }
            1 => {
                self.columns.push(("region".into(), "string"));
                self.columns.push(("day".into(), "integer"));
                self.partition_columns = vec!["region".into(), "day".into()];
            }
            _ => {}
        }
        self.crc = self.rng.chance(0.5);
        self.dv = self.rng.chance(0.7);
        self.v2 = self.rng.chance(0.35);
        self.cdf = self.rng.chance(0.2);
        self.ict = self.rng.chance(0.15);
        let legacy = !self.dv && !self.v2 && !self.ict && self.rng.chance(0.5);
        if legacy {
            // A table created before table features: (1, 2), or (1, 4) for change data feed.
            self.reader_version = 1;
            self.writer_version = if self.cdf { 4 } else { 2 };
            self.tags.insert("legacy protocol at creation");
        } else {
            self.writer_features = vec!["appendOnly".into(), "invariants".into()];
            if self.dv {
                self.add_feature("deletionVectors", true);
            }
            if self.v2 {
                self.add_feature("v2Checkpoint", true);
            }
            if self.cdf {
                self.add_feature("changeDataFeed", false);
            }
            if self.ict {
                self.add_feature("inCommitTimestamp", false);
            }
            self.fix_protocol_versions();
        }
        if self.dv {
            self.configuration.insert("delta.enableDeletionVectors".into(), "true".into());
        }
        if self.v2 {
            self.configuration.insert("delta.checkpointPolicy".into(), "v2".into());
        }
        if self.cdf {
            self.configuration.insert("delta.enableChangeDataFeed".into(), "true".into());
        }
        if self.ict {
            // Enabled at creation: no enablement version/timestamp (the protocol's rule).
            self.configuration.insert("delta.enableInCommitTimestamps".into(), "true".into());
        }
        let mut actions = vec![self.protocol_action(), self.metadata_action()];
        let op = if self.rng.chance(0.3) {
            for _ in 0..self.rng.range(1, 4) {
                let add = self.new_file(true);
                actions.push(add);
            }
            "CREATE TABLE AS SELECT"
        } else {
            "CREATE TABLE"
        };
        self.commit(op, actions);
    }

    /// Adds a table feature (a reader-writer feature goes to both lists, as the protocol requires).
    fn add_feature(&mut self, name: &str, reader: bool) {
        if reader && !self.reader_features.iter().any(|f| f == name) {
            self.reader_features.push(name.into());
        }
        if !self.writer_features.iter().any(|f| f == name) {
            self.writer_features.push(name.into());
        }
    }

    /// (3, 7) when any reader feature is listed, else (1, 7).
    fn fix_protocol_versions(&mut self) {
        self.writer_version = 7;
        self.reader_version = if self.reader_features.is_empty() { 1 } else { 3 };
    }

    /// Moves a legacy protocol to table features (writer 7 lists the legacy features it implied).
    fn upgrade_to_table_features(&mut self) {
        if self.writer_version < 7 {
            self.writer_features = vec!["appendOnly".into(), "invariants".into()];
            if self.writer_version >= 4 {
                self.writer_features.push("changeDataFeed".into());
            }
            self.fix_protocol_versions();
        }
    }

    fn protocol_action(&self) -> Value {
        let mut p = Map::new();
        p.insert("minReaderVersion".into(), json!(self.reader_version));
        p.insert("minWriterVersion".into(), json!(self.writer_version));
        if self.reader_version == 3 {
            p.insert("readerFeatures".into(), json!(self.reader_features));
        }
        if self.writer_version == 7 {
            p.insert("writerFeatures".into(), json!(self.writer_features));
        }
        json!({ "protocol": p })
    }

    fn metadata_action(&self) -> Value {
        let fields: Vec<Value> =
            self.columns.iter().map(|(n, t)| json!({"name": n, "type": t, "nullable": true, "metadata": {}})).collect();
        let schema = json!({"type": "struct", "fields": fields}).to_string();
        json!({"metaData": {
            "id": self.table_id,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema,
            "partitionColumns": self.partition_columns,
            "configuration": self.configuration,
            "createdTime": self.created_time,
        }})
    }

    /// Writes `rel` (relative to the table root) and records it.
    fn write_file(&mut self, rel: &str, body: &[u8], version: u64) {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create a dir in the table");
        }
        fs::write(&path, body).expect("write a table file");
        // The object's last-modified time is the commit's time (the project's in-memory copy takes it from here).
        let mtime = UNIX_EPOCH + Duration::from_millis(self.clock.max(0) as u64);
        let f = fs::File::options().write(true).open(&path).expect("reopen a table file");
        f.set_modified(mtime).expect("set a file's mtime");
        // Only `_last_checkpoint` is ever rewritten: keep its last write's place in the order.
        if rel.ends_with("_last_checkpoint") {
            self.written.retain(|x| x.rel != rel);
        }
        self.written.push(Written { rel: rel.to_owned(), version, present: true });
    }

    /// Moves a file to `primary-deleted/` (log cleanup and VACUUM delete; a replica may still hold it).
    fn delete_file(&mut self, rel: &str) {
        let from = self.root.join(rel);
        let to = self.case_dir.join("primary-deleted").join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).expect("create a dir for deleted files");
        }
        if from.exists() {
            fs::rename(&from, &to).expect("move a deleted file");
        }
        for x in self.written.iter_mut().filter(|x| x.rel == rel) {
            x.present = false;
        }
    }

    fn dummy(&mut self, len: usize) -> Vec<u8> {
        self.rng.bytes(len)
    }

    fn partition_values(&mut self) -> BTreeMap<String, String> {
        let mut pv = BTreeMap::new();
        for c in self.partition_columns.clone() {
            let v = if c == "day" {
                self.rng.range(1, 4).to_string()
            } else {
                // A space and a colon: Spark escapes the colon in the directory name, and the log's path is that
                // name URI-encoded (`region=x%253Ay/`, `region=north%20america/`).
                (*self.rng.pick(&["eu", "us", "ap", "eu", "us", "north america", "x:y"])).to_string()
            };
            pv.insert(c, v);
        }
        pv
    }

    /// A new data file (written now) and its add action.
    fn new_file(&mut self, data_change: bool) -> Value {
        let pv = self.partition_values();
        let dir: String = pv.iter().map(|(k, v)| format!("{k}={}/", escape_path_name(v))).collect();
        let rel = format!("{dir}part-{:05}-{}-c000.snappy.parquet", self.rng.below(200), self.rng.uuid_string());
        let size = self.rng.range(16, 96) as usize;
        let body = self.dummy(size);
        let version = self.next_version;
        self.write_file(&rel, &body, version);
        self.data_files.insert(rel.clone(), version);
        let name = uri_encode(&rel);
        if name != rel {
            self.tags.insert("uri-encoded path");
        }
        let entry = FileEntry {
            path: name.clone(),
            partition_values: pv,
            size: size as i64,
            modification_time: self.clock,
            records: self.rng.range(5, 50),
            dv: None,
        };
        let add = add_action(&entry, data_change);
        self.live.insert(name, entry);
        add
    }

    /// A `cdc` action and its `_change_data/` file (a DML's change rows when change data feed is on).
    fn cdc_file(&mut self) -> Value {
        let pv = self.partition_values();
        let dir: String = pv.iter().map(|(k, v)| format!("{k}={}/", escape_path_name(v))).collect();
        let rel = format!("_change_data/{dir}cdc-{:05}-{}.c000.snappy.parquet", self.rng.below(200), self.rng.uuid_string());
        let size = self.rng.range(16, 64) as usize;
        let body = self.dummy(size);
        let version = self.next_version;
        self.write_file(&rel, &body, version);
        self.data_files.insert(rel.clone(), version);
        let name = uri_encode(&rel);
        self.tags.insert("cdc file");
        json!({"cdc": {"path": name, "partitionValues": pv, "size": size, "dataChange": false}})
    }

    /// The remove of a live file (its current deletion vector included), recorded as a tombstone.
    fn remove_live(&mut self, path: &str, data_change: bool) -> Value {
        let entry = self.live.remove(path).expect("remove a live file");
        let mut r = Map::new();
        r.insert("path".into(), json!(entry.path));
        r.insert("deletionTimestamp".into(), json!(self.clock));
        r.insert("dataChange".into(), json!(data_change));
        r.insert("extendedFileMetadata".into(), json!(true));
        r.insert("partitionValues".into(), json!(entry.partition_values));
        r.insert("size".into(), json!(entry.size));
        if let Some(dv) = &entry.dv {
            r.insert("deletionVector".into(), dv.clone());
        }
        let key = (entry.path.clone(), dv_id(entry.dv.as_ref()));
        let mut tomb = r.clone();
        tomb.insert("dataChange".into(), json!(false));
        self.tombstones.insert(key, json!({ "remove": tomb }));
        json!({ "remove": r })
    }

    fn pick_live(&mut self, n: usize) -> Vec<String> {
        let mut paths: Vec<String> = self.live.keys().cloned().collect();
        let mut out = vec![];
        while out.len() < n && !paths.is_empty() {
            let i = self.rng.below(paths.len() as u64) as usize;
            out.push(paths.swap_remove(i));
        }
        out
    }

    /// Writes `actions` as the next commit, commitInfo first (with an in-commit timestamp when ICT is on).
    fn commit(&mut self, operation: &str, actions: Vec<Value>) {
        let version = self.next_version;
        let mut info = Map::new();
        if self.ict {
            info.insert("inCommitTimestamp".into(), json!(self.clock));
        }
        info.insert("timestamp".into(), json!(self.clock));
        info.insert("operation".into(), json!(operation));
        info.insert("operationParameters".into(), json!({}));
        info.insert("isolationLevel".into(), json!("WriteSerializable"));
        info.insert("isBlindAppend".into(), json!(operation == "WRITE"));
        info.insert("engineInfo".into(), json!("Databricks-Runtime/15.4.x-scala2.12"));
        info.insert("txnId".into(), json!(self.rng.uuid_string()));
        let mut body = json!({ "commitInfo": info }).to_string();
        body.push('\n');
        for a in &actions {
            if let Some(add) = a.get("add") {
                if let Some(p) = add["path"].as_str() {
                    self.add_refs.push((version, percent_decode(p)));
                }
                if let Some(f) = dv_file(add.get("deletionVector")) {
                    self.add_refs.push((version, f));
                }
            }
            body.push_str(&a.to_string());
            body.push('\n');
        }
        self.write_file(&format!("_delta_log/{version:020}.json"), body.as_bytes(), version);
        if self.crc {
            self.write_crc(version);
        }
        self.next_version += 1;
    }

    /// The version checksum file (PROTOCOL.md, "Version Checksum File") of the state after `version`.
    fn write_crc(&mut self, version: u64) {
        let mut crc = Map::new();
        crc.insert("txnId".into(), json!(self.rng.uuid_string()));
        crc.insert("tableSizeBytes".into(), json!(self.live.values().map(|e| e.size).sum::<i64>()));
        crc.insert("numFiles".into(), json!(self.live.len()));
        crc.insert("numMetadata".into(), json!(1));
        crc.insert("numProtocol".into(), json!(1));
        if self.ict {
            crc.insert("inCommitTimestampOpt".into(), json!(self.clock));
        }
        crc.insert("setTransactions".into(), json!(self.txns.values().map(|t| t["txn"].clone()).collect::<Vec<_>>()));
        crc.insert("metadata".into(), self.metadata_action()["metaData"].clone());
        crc.insert("protocol".into(), self.protocol_action()["protocol"].clone());
        let body = Value::Object(crc).to_string();
        self.write_file(&format!("_delta_log/{version:020}.crc"), body.as_bytes(), version);
        self.tags.insert("crc files");
    }

    /// One random operation, as a commit.
    fn random_commit(&mut self) {
        self.clock += self.rng.range(1_000, 900_000) as i64;
        let has_files = !self.live.is_empty();
        let weights = [
            40,                                             // append
            if self.dv && has_files { 25 } else { 0 },      // DELETE/UPDATE with deletion vectors
            if has_files { 6 } else { 0 },                  // copy-on-write DELETE/UPDATE
            if self.live.len() > 2 { 4 } else { 0 },        // OPTIMIZE
            if has_files { 4 } else { 0 },                  // DELETE of whole files
            8,                                              // streaming append with txn
            2,                                              // metadata change
            if self.dv { 0 } else { 2 },                    // enable deletion vectors
            if self.cdf { 0 } else { 2 },                   // enable change data feed
            if self.ict { 0 } else { 3 },                   // enable in-commit timestamps
            if self.tombstones.is_empty() { 0 } else { 2 }, // RESTORE of a removed file
            2,                                              // VACUUM (its own commits are not written; files go)
        ];
        match self.rng.weighted(&weights) {
            0 => {
                let mut actions = vec![];
                for _ in 0..self.rng.range(1, 4) {
                    actions.push(self.new_file(true));
                }
                self.commit("WRITE", actions);
            }
            1 => self.dml_with_dvs(),
            2 => {
                let mut actions = vec![];
                let n = self.rng.range(1, 2) as usize;
                for p in self.pick_live(n) {
                    actions.push(self.remove_live(&p, true));
                }
                if self.rng.chance(0.7) {
                    actions.push(self.new_file(true));
                }
                if self.cdf {
                    actions.push(self.cdc_file());
                }
                let op = *self.rng.pick(&["DELETE", "UPDATE", "MERGE"]);
                self.commit(op, actions);
            }
            3 => {
                let n = self.rng.range(2, 5) as usize;
                let mut actions = vec![];
                for p in self.pick_live(n) {
                    actions.push(self.remove_live(&p, false));
                }
                actions.push(self.new_file(false));
                self.commit("OPTIMIZE", actions);
            }
            4 => {
                let mut actions = vec![];
                for p in self.pick_live(1) {
                    actions.push(self.remove_live(&p, true));
                }
                if self.cdf {
                    actions.push(self.cdc_file());
                }
                self.commit("DELETE", actions);
            }
            5 => {
                if self.app_ids.is_empty() || self.rng.chance(0.2) {
                    let id = self.rng.uuid_string();
                    self.app_ids.push(id);
                }
                let app = self.rng.pick(&self.app_ids).clone();
                let v = self.txns.get(&app).and_then(|t| t["txn"]["version"].as_i64()).unwrap_or(-1) + 1;
                self.tags.insert("txn");
                let txn = json!({"txn": {"appId": app, "version": v, "lastUpdated": self.clock}});
                self.txns.insert(app, txn.clone());
                let mut actions = vec![txn];
                actions.push(self.new_file(true));
                self.commit("STREAMING UPDATE", actions);
            }
            6 => {
                if self.rng.chance(0.5) {
                    let n = self.columns.len();
                    self.columns.push((format!("extra_{n}"), "string"));
                } else {
                    let days = self.rng.range(1, 30);
                    self.configuration.insert("delta.logRetentionDuration".into(), format!("interval {days} days"));
                }
                let m = self.metadata_action();
                self.commit("SET TBLPROPERTIES", vec![m]);
            }
            7 => {
                self.upgrade_to_table_features();
                self.dv = true;
                self.add_feature("deletionVectors", true);
                self.fix_protocol_versions();
                self.configuration.insert("delta.enableDeletionVectors".into(), "true".into());
                self.tags.insert("dv enabled mid-history");
                let (p, m) = (self.protocol_action(), self.metadata_action());
                self.commit("SET TBLPROPERTIES", vec![p, m]);
            }
            8 => {
                self.cdf = true;
                let mut actions = vec![];
                if self.writer_version < 4 {
                    self.writer_version = 4;
                    actions.push(self.protocol_action());
                } else if self.writer_version == 7 && !self.writer_features.iter().any(|f| f == "changeDataFeed") {
                    self.add_feature("changeDataFeed", false);
                    actions.push(self.protocol_action());
                }
                self.configuration.insert("delta.enableChangeDataFeed".into(), "true".into());
                self.tags.insert("cdf enabled mid-history");
                actions.push(self.metadata_action());
                self.commit("SET TBLPROPERTIES", actions);
            }
            9 => {
                // Enabled mid-history: the enablement version and timestamp are this commit's (PROTOCOL.md).
                self.upgrade_to_table_features();
                self.add_feature("inCommitTimestamp", false);
                self.fix_protocol_versions();
                self.ict = true;
                self.configuration.insert("delta.enableInCommitTimestamps".into(), "true".into());
                self.configuration.insert("delta.inCommitTimestampEnablementVersion".into(), self.next_version.to_string());
                self.configuration.insert("delta.inCommitTimestampEnablementTimestamp".into(), self.clock.to_string());
                self.tags.insert("ict enabled mid-history");
                let (p, m) = (self.protocol_action(), self.metadata_action());
                self.commit("SET TBLPROPERTIES", vec![p, m]);
            }
            10 => self.restore(),
            _ => {
                self.vacuum();
                let actions = vec![self.new_file(true)];
                self.commit("WRITE", actions);
            }
        }
    }

    /// DELETE/UPDATE/MERGE with deletion vectors: for each touched file a remove of its current (path, DV) and an
    /// add of the same path with a new DV; the commit's file-backed DVs share one DV file at increasing offsets.
    fn dml_with_dvs(&mut self) {
        let n = self.rng.range(1, 3) as usize;
        let touched = self.pick_live(n);
        let prefix = if self.rng.chance(0.5) {
            let len = self.rng.range(1, 3) as usize;
            (0..len).map(|_| *self.rng.pick(&['a', 'b', 'k', 'x', '7', '3', 'Q'])).collect()
        } else {
            String::new()
        };
        let uuid = self.rng.uuid();
        let encoded = format!("{prefix}{}", z85(&uuid));
        let dv_rel = if prefix.is_empty() {
            format!("deletion_vector_{}.bin", uuid_text(&uuid))
        } else {
            format!("{prefix}/deletion_vector_{}.bin", uuid_text(&uuid))
        };
        // The DV file: a format-version byte, then per DV its size, bitmap and checksum.
        let mut dv_file_len: i64 = 1;
        let mut actions = vec![];
        for path in touched {
            let mut entry = self.live.get(&path).cloned().expect("a touched file is live");
            let old_card = entry.dv.as_ref().and_then(|d| d["cardinality"].as_i64()).unwrap_or(0);
            let card = (old_card + self.rng.range(1, 4) as i64).min(entry.records as i64);
            if entry.dv.is_some() {
                self.tags.insert("second dv on a file");
            }
            let new_dv = if self.rng.chance(0.15) {
                let words = self.rng.range(1, 6) as usize;
                let bitmap = self.rng.bytes(words * 4);
                self.tags.insert("inline dv");
                json!({"storageType": "i", "pathOrInlineDv": z85(&bitmap), "sizeInBytes": bitmap.len(), "cardinality": card})
            } else {
                let size = self.rng.range(20, 60) as i64;
                let offset = dv_file_len;
                dv_file_len += 4 + size + 4;
                json!({"storageType": "u", "pathOrInlineDv": encoded, "offset": offset, "sizeInBytes": size, "cardinality": card})
            };
            actions.push(self.remove_live(&path, true));
            entry.dv = Some(new_dv);
            actions.push(add_action(&entry, true));
            self.tombstones.remove(&(entry.path.clone(), dv_id(entry.dv.as_ref())));
            self.live.insert(path, entry);
        }
        if dv_file_len > 1 {
            self.tags.insert("dv file");
            if !prefix.is_empty() {
                self.tags.insert("dv random prefix");
            }
            if actions.iter().filter(|a| a["add"]["deletionVector"]["storageType"] == "u").count() > 1 {
                self.tags.insert("dvs sharing a file");
            }
            let body = self.dummy(dv_file_len as usize);
            let version = self.next_version;
            self.write_file(&dv_rel, &body, version);
            self.data_files.insert(dv_rel, version);
        }
        let op = *self.rng.pick(&["DELETE", "UPDATE", "MERGE"]);
        if op != "DELETE" && self.rng.chance(0.6) {
            actions.push(self.new_file(true));
        }
        if self.cdf {
            actions.push(self.cdc_file());
        }
        self.commit(op, actions);
    }

    /// RESTORE: re-adds a removed file with the same (path, DV) (its tombstone and the add share an identity).
    fn restore(&mut self) {
        let candidates: Vec<(String, String)> = self
            .tombstones
            .keys()
            .filter(|(p, _)| !self.live.contains_key(p) && self.data_files.contains_key(&percent_decode(p)))
            .filter(|k| {
                let dv = self.tombstones[*k]["remove"].get("deletionVector");
                dv_file(dv).is_none_or(|f| self.data_files.contains_key(&f))
            })
            .cloned()
            .collect();
        if candidates.is_empty() {
            let add = self.new_file(true);
            self.commit("WRITE", vec![add]);
            return;
        }
        let key = self.rng.pick(&candidates).clone();
        let tomb = self.tombstones.remove(&key).expect("a candidate tombstone");
        let r = &tomb["remove"];
        let entry = FileEntry {
            path: key.0.clone(),
            partition_values: serde_json::from_value(r["partitionValues"].clone()).unwrap_or_default(),
            size: r["size"].as_i64().unwrap_or(0),
            modification_time: self.clock,
            records: 50,
            dv: r.get("deletionVector").cloned(),
        };
        let add = add_action(&entry, true);
        self.live.insert(key.0, entry);
        self.tags.insert("restore");
        self.commit("RESTORE", vec![add]);
    }

    /// VACUUM: deletes data, DV and change-data files no live file needs, written at least a few versions ago.
    fn vacuum(&mut self) {
        let mut needed: BTreeSet<String> = self.live.keys().map(|p| percent_decode(p)).collect();
        for e in self.live.values() {
            if let Some(f) = dv_file(e.dv.as_ref()) {
                needed.insert(f);
            }
        }
        let horizon = self.next_version.saturating_sub(self.rng.range(2, 20));
        let gone: Vec<String> =
            self.data_files.iter().filter(|(p, v)| !needed.contains(*p) && **v < horizon).map(|(p, _)| p.clone()).collect();
        for p in gone {
            self.tags.insert("vacuum");
            self.data_files.remove(&p);
            self.delete_file(&p);
        }
    }

    /// Writes a checkpoint of the state at `version` (the newest commit), of a random kind, and `_last_checkpoint`.
    fn checkpoint(&mut self, version: u64) {
        let kinds: &[CheckpointKind] = if self.v2 {
            &[CheckpointKind::V2Json, CheckpointKind::V2Parquet, CheckpointKind::V2Parquet, CheckpointKind::V2Classic]
        } else {
            &[CheckpointKind::Classic, CheckpointKind::Classic, CheckpointKind::MultiPart]
        };
        let mut kind = *self.rng.pick(kinds);
        // A multi-part checkpoint has at least two parts (the kernel rejects one), each with rows.
        if kind == CheckpointKind::MultiPart && self.live.len() + self.tombstones.len() < 2 {
            kind = CheckpointKind::Classic;
        }
        self.checkpoint_of(version, kind);
        // Sometimes a second checkpoint of another layout at the same version (not the same file name).
        if self.rng.chance(0.08) {
            let other = *self.rng.pick(kinds);
            let same_name = |k: CheckpointKind| matches!(k, CheckpointKind::Classic | CheckpointKind::V2Classic);
            let parts_ok = other != CheckpointKind::MultiPart || self.live.len() + self.tombstones.len() >= 2;
            if other != kind && !(same_name(kind) && same_name(other)) && parts_ok {
                self.tags.insert("two checkpoints at one version");
                self.checkpoint_of(version, other);
            }
        }
    }

    /// Writes one checkpoint of `kind` at `version`.
    fn checkpoint_of(&mut self, version: u64, kind: CheckpointKind) {
        // Spark's order: protocol, metaData, txns, then live adds ++ remove tombstones sorted by path (a tombstone
        // of a path can follow the live add of the same path, once its DV changed).
        let mut head = vec![self.protocol_action(), self.metadata_action()];
        head.extend(self.txns.values().cloned());
        let mut files: Vec<(String, u8, Value)> = self.live.values().map(|e| (e.path.clone(), 0, add_action(e, false))).collect();
        files.extend(self.tombstones.iter().map(|((p, _), v)| (p.clone(), 1, v.clone())));
        files.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        if files.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 == 0 && w[1].1 == 1) {
            self.tags.insert("checkpoint tombstone after live add of the same path");
        }
        let files: Vec<Value> = files.into_iter().map(|(_, _, v)| v).collect();
        let adds = self.live.len();
        let total = head.len() + files.len();
        let mut log_files = vec![];
        let mut parts = None;
        let mut size_in_bytes = 0usize;
        match kind {
            CheckpointKind::Classic => {
                let mut rows = head;
                rows.extend(files);
                let bytes = json_rows_to_parquet(&rows, false);
                size_in_bytes = bytes.len();
                let rel = format!("_delta_log/{version:020}.checkpoint.parquet");
                self.write_file(&rel, &bytes, version);
                log_files.push(rel);
            }
            CheckpointKind::MultiPart => {
                let k = self.rng.range(2, 4).min(files.len() as u64).max(2) as usize;
                let mut chunks: Vec<Vec<Value>> = vec![head];
                chunks.resize(k, vec![]);
                // Contiguous ranges of the path-sorted rows, each part non-empty (there are at least k rows).
                let n = files.len();
                for (i, row) in files.into_iter().enumerate() {
                    chunks[i * k / n].push(row);
                }
                for (i, rows) in chunks.iter().enumerate() {
                    let bytes = json_rows_to_parquet(rows, false);
                    size_in_bytes += bytes.len();
                    let rel = format!("_delta_log/{version:020}.checkpoint.{:010}.{k:010}.parquet", i + 1);
                    self.write_file(&rel, &bytes, version);
                    log_files.push(rel);
                }
                parts = Some(k);
            }
            CheckpointKind::V2Json | CheckpointKind::V2Parquet | CheckpointKind::V2Classic => {
                let mut top = head;
                top.push(json!({"checkpointMetadata": {"version": version}}));
                let sidecars = if files.is_empty() { 0 } else { self.rng.range(0, 3) as usize };
                if sidecars == 0 {
                    top.extend(files);
                } else {
                    self.tags.insert("sidecars");
                    let per = files.len().div_ceil(sidecars);
                    for chunk in files.chunks(per) {
                        let bytes = json_rows_to_parquet(chunk, true);
                        let name = format!("{}.parquet", self.rng.uuid_string());
                        let rel = format!("_delta_log/_sidecars/{name}");
                        self.write_file(&rel, &bytes, version);
                        log_files.push(rel);
                        top.push(json!({"sidecar": {"path": name, "sizeInBytes": bytes.len(), "modificationTime": self.clock}}));
                    }
                }
                let (rel, bytes) = match kind {
                    CheckpointKind::V2Json => {
                        let mut body = String::new();
                        for a in &top {
                            body.push_str(&a.to_string());
                            body.push('\n');
                        }
                        (format!("_delta_log/{version:020}.checkpoint.{}.json", self.rng.uuid_string()), body.into_bytes())
                    }
                    CheckpointKind::V2Parquet => (
                        format!("_delta_log/{version:020}.checkpoint.{}.parquet", self.rng.uuid_string()),
                        json_rows_to_parquet(&top, false),
                    ),
                    _ => (format!("_delta_log/{version:020}.checkpoint.parquet"), json_rows_to_parquet(&top, false)),
                };
                size_in_bytes = bytes.len();
                self.write_file(&rel, &bytes, version);
                log_files.push(rel);
            }
        }
        let mut last = Map::new();
        last.insert("version".into(), json!(version));
        last.insert("size".into(), json!(total));
        if let Some(k) = parts {
            last.insert("parts".into(), json!(k));
        }
        last.insert("sizeInBytes".into(), json!(size_in_bytes));
        last.insert("numOfAddFiles".into(), json!(adds));
        let body = Value::Object(last).to_string();
        self.write_file("_delta_log/_last_checkpoint", body.as_bytes(), version);
        let hist = self.case_dir.join("lastcp-history");
        fs::create_dir_all(&hist).expect("create lastcp-history");
        fs::write(hist.join(format!("{version}.json")), &body).expect("write lastcp-history");
        self.checkpoints.entry(version).or_default().push((kind, log_files));
    }

    /// Log cleanup: deletes the commits and checkpoints older than a chosen checkpoint (the log then starts at it),
    /// and the sidecars only those checkpoints used.
    fn cleanup(&mut self) {
        let candidates: Vec<u64> = self.checkpoints.keys().copied().filter(|v| *v > self.log_start).collect();
        if candidates.is_empty() {
            return;
        }
        let keep_from = *self.rng.pick(&candidates);
        for v in self.log_start..keep_from {
            self.delete_file(&format!("_delta_log/{v:020}.json"));
            if self.crc {
                self.delete_file(&format!("_delta_log/{v:020}.crc"));
            }
        }
        let old: Vec<u64> = self.checkpoints.range(..keep_from).map(|(v, _)| *v).collect();
        for v in old {
            for (_, files) in self.checkpoints.remove(&v).unwrap_or_default() {
                for f in files {
                    self.delete_file(&f);
                }
            }
        }
        self.log_start = keep_from;
        self.tags.insert("log cleanup");
    }

    fn finish(self) -> Generated {
        let manifest: Vec<Value> =
            self.written.iter().map(|w| json!({"rel": w.rel, "version": w.version, "present": w.present})).collect();
        fs::write(self.case_dir.join("written.json"), Value::Array(manifest).to_string()).expect("write written.json");
        let adds: Vec<Value> = self.add_refs.iter().map(|(v, f)| json!([v, f])).collect();
        fs::write(self.case_dir.join("adds.json"), Value::Array(adds).to_string()).expect("write adds.json");
        let mut features = vec![format!("protocol ({},{})", self.reader_version, self.writer_version)];
        for (on, name) in [(self.dv, "dv"), (self.v2, "v2"), (self.cdf, "cdf"), (self.ict, "ict")] {
            if on {
                features.push(name.to_owned());
            }
        }
        if !self.partition_columns.is_empty() {
            features.push(format!("partitioned by {}", self.partition_columns.join(",")));
        }
        let mut tags = self.tags;
        for (on, name) in [
            (self.dv, "dv table"),
            (self.v2, "v2 checkpoint feature"),
            (self.ict, "ict"),
            (self.cdf, "cdf"),
            (!self.partition_columns.is_empty(), "partitioned"),
        ] {
            if on {
                tags.insert(name);
            }
        }
        for (kind, _) in self.checkpoints.values().flatten() {
            tags.insert(kind.tag());
        }
        Generated {
            tags,
            newest: self.next_version - 1,
            log_start: self.log_start,
            features: features.join(" "),
            checkpoints: self.checkpoints.iter().flat_map(|(v, c)| c.iter().map(|(k, _)| (*v, k.name()))).collect(),
        }
    }
}

/// An add action for a file entry.
fn add_action(e: &FileEntry, data_change: bool) -> Value {
    let mut a = Map::new();
    a.insert("path".into(), json!(e.path));
    a.insert("partitionValues".into(), json!(e.partition_values));
    a.insert("size".into(), json!(e.size));
    a.insert("modificationTime".into(), json!(e.modification_time));
    a.insert("dataChange".into(), json!(data_change));
    a.insert("stats".into(), json!(format!("{{\"numRecords\":{}}}", e.records)));
    if let Some(dv) = &e.dv {
        a.insert("deletionVector".into(), dv.clone());
    }
    json!({ "add": a })
}

/// A deletion vector's unique id (PROTOCOL.md: storageType ++ pathOrInlineDv ++ `@offset` when present); empty
/// without one.
pub fn dv_id(dv: Option<&Value>) -> String {
    let Some(dv) = dv else { return String::new() };
    let mut id = format!("{}{}", dv["storageType"].as_str().unwrap_or(""), dv["pathOrInlineDv"].as_str().unwrap_or(""));
    if let Some(o) = dv["offset"].as_i64() {
        id.push_str(&format!("@{o}"));
    }
    id
}

/// The DV file (relative to the table root) of a `u` deletion vector, if any.
fn dv_file(dv: Option<&Value>) -> Option<String> {
    let dv = dv?;
    if dv["storageType"].as_str()? != "u" {
        return None;
    }
    let encoded = dv["pathOrInlineDv"].as_str()?;
    let (prefix, z) = encoded.split_at(encoded.len().checked_sub(20)?);
    let uuid = z85_decode(z)?;
    let name = format!("deletion_vector_{}.bin", uuid_text(&uuid));
    Some(if prefix.is_empty() { name } else { format!("{prefix}/{name}") })
}

/// A partition value as Spark writes it in a directory name (`ExternalCatalogUtils.escapePathName`).
fn escape_path_name(v: &str) -> String {
    const ESCAPED: &[char] = &['"', '#', '%', '\'', '*', '/', ':', '=', '?', '\\', '\x7f', '{', '[', ']', '^'];
    v.chars().map(|c| if ESCAPED.contains(&c) || c.is_control() { format!("%{:02X}", c as u32) } else { c.to_string() }).collect()
}

/// A relative path as the log names it (a URI path: Hadoop's `Path.toUri`, of which only `%` and space occur here).
fn uri_encode(rel: &str) -> String {
    rel.replace('%', "%25").replace(' ', "%20")
}

/// The relative file path a log path names.
fn percent_decode(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes 20 Z85 characters into 16 bytes.
fn z85_decode(s: &str) -> Option<[u8; 16]> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    let bytes = s.as_bytes();
    if bytes.len() != 20 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in bytes.chunks(5).enumerate() {
        let mut v: u64 = 0;
        for c in chunk {
            v = v * 85 + ALPHABET.iter().position(|a| a == c)? as u64;
        }
        out[i * 4..i * 4 + 4].copy_from_slice(&(v as u32).to_be_bytes());
    }
    Some(out)
}

/// For each file, the versions whose commits add it (as a data file or as a DV file), ascending (`adds.json`).
pub fn read_adds(case_dir: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let text = fs::read_to_string(case_dir.join("adds.json")).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    for pair in v.as_array().into_iter().flatten() {
        if let (Some(version), Some(file)) = (pair[0].as_u64(), pair[1].as_str()) {
            out.entry(file.to_owned()).or_default().push(version);
        }
    }
    out
}

/// Reads `written.json` of a case directory.
pub fn read_written(case_dir: &Path) -> Vec<Written> {
    let text = fs::read_to_string(case_dir.join("written.json")).expect("read written.json");
    let v: Value = serde_json::from_str(&text).expect("parse written.json");
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| Written {
                    rel: x["rel"].as_str().unwrap_or_default().to_owned(),
                    version: x["version"].as_u64().unwrap_or(0),
                    present: x["present"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_value_is_escaped_then_uri_encoded() {
        let rel = format!("region={}/part-0.parquet", escape_path_name("x:y"));
        assert_eq!(rel, "region=x%3Ay/part-0.parquet");
        assert_eq!(uri_encode(&rel), "region=x%253Ay/part-0.parquet");
        assert_eq!(percent_decode(&uri_encode(&rel)), rel);
        assert_eq!(percent_decode(&uri_encode("region=north america/p")), "region=north america/p");
    }

    #[test]
    fn dv_file_inverts_the_encoding() {
        let uuid = [7u8; 16];
        let dv = json!({"storageType": "u", "pathOrInlineDv": format!("ab{}", z85(&uuid)), "offset": 1});
        assert_eq!(dv_file(Some(&dv)), Some(format!("ab/deletion_vector_{}.bin", uuid_text(&uuid))));
        assert_eq!(dv_file(Some(&json!({"storageType": "i", "pathOrInlineDv": "abcde"}))), None);
    }
}
