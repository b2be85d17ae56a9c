//! The oracle: delta-kernel-rs (the reference reader) on the replica's directory.
//!
//! A version V is consistent when the kernel opens a snapshot at V (time travel) and every file of that
//! snapshot's scan is in the replica: each data file, and each deletion vector's file (`u`/`p`; an inline `i`
//! DV has none).
//!
//! One shortcut keeps it fast: when the scan at V lacks a file F whose latest add at or before V is at version A,
//! that add stays live from A to V, so every snapshot from A to V-1 needs F too and none is consistent; the oracle
//! goes on at A-1; and a version with neither a commit nor a checkpoint file is not asked about (`--exhaustive`
//! asks the kernel at every version instead).

use delta_kernel::Snapshot;
use delta_kernel::actions::deletion_vector::{DeletionVectorDescriptor, DeletionVectorStorageType};
use delta_kernel::arrow::array::{Array, AsArray, Int32Array, Int64Array, StructArray};
use delta_kernel::arrow::compute::cast;
use delta_kernel::arrow::datatypes::DataType;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel_default_engine::DefaultEngine;
use delta_kernel_default_engine::executor::tokio::TokioBackgroundExecutor;
use delta_kernel_default_engine::storage::store_from_url_opts;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::str::FromStr;
use url::Url;

/// The kernel's default engine over the local filesystem (one serves every case: `file://` URLs are absolute).
pub struct Kernel {
    engine: DefaultEngine<TokioBackgroundExecutor>,
}

/// The oracle's answer for a replica.
#[derive(Debug, Clone, Default)]
pub struct KernelAnswer {
    /// The newest consistent version, if any.
    pub consistent: Option<u64>,
    /// The replica's newest commit or checkpoint version.
    pub newest: Option<u64>,
    /// Why the newest version is not consistent (the kernel's error, or the first missing file).
    pub newest_problem: Option<String>,
    /// Versions handed to the kernel.
    pub tried: usize,
    /// Versions skipped by the shortcut (see the module).
    pub skipped: usize,
}

/// Why a version is not consistent.
#[derive(Debug, Clone)]
pub enum Problem {
    /// The snapshot opens, but a file of its scan is not in the directory (relative to the table root).
    Missing(String),
    /// The kernel failed.
    Kernel(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(rel) => write!(f, "scan file missing: {rel}"),
            Problem::Kernel(e) => write!(f, "{e}"),
        }
    }
}

impl Kernel {
    /// The default engine on `file:///`.
    pub fn new() -> Kernel {
        let url = Url::parse("file:///").expect("a file URL");
        let store = store_from_url_opts(&url, std::iter::empty::<(&str, &str)>()).expect("a local object store");
        Kernel { engine: DefaultEngine::builder(store).build() }
    }

    /// The newest version of `table_dir` that the kernel reads with every scan file present (see the module);
    /// `adds` (file -> versions adding it) enables the shortcut.
    pub fn consistent(&self, table_dir: &Path, adds: Option<&BTreeMap<String, Vec<u64>>>) -> KernelAnswer {
        let log = log_versions(table_dir);
        let mut answer = KernelAnswer { newest: log.iter().next_back().copied(), ..Default::default() };
        let Some(newest) = answer.newest else {
            answer.newest_problem = Some("no commit or checkpoint in _delta_log".into());
            return answer;
        };
        let root = dir_url(table_dir);
        let mut v = newest;
        loop {
            // Without a commit or checkpoint named V the kernel cannot end a log segment at V: not worth asking
            // (unless exhaustive: no `adds`).
            let result = if log.contains(&v) || adds.is_none() {
                answer.tried += 1;
                self.check_version(&root, table_dir, v)
            } else {
                Err(Problem::Kernel(format!("no commit or checkpoint file at version {v}")))
            };
            let mut next = v.checked_sub(1);
            match result {
                Ok(()) => {
                    answer.consistent = Some(v);
                    break;
                }
                Err(e) => {
                    if let (Problem::Missing(rel), Some(adds)) = (&e, adds)
                        && let Some(a) = adds.get(rel).and_then(|vs| vs.iter().rev().find(|a| **a <= v))
                    {
                        answer.skipped += (v - *a) as usize;
                        next = a.checked_sub(1);
                    }
                    if v == newest {
                        answer.newest_problem = Some(format!("version {v}: {e}"));
                    }
                }
            }
            match next {
                Some(n) => v = n,
                None => break,
            }
        }
        answer
    }

    /// Whether version `v` of `table_dir` is consistent (the kernel's error or the missing file otherwise).
    pub fn check(&self, table_dir: &Path, v: u64) -> Result<(), Problem> {
        self.check_version(&dir_url(table_dir), table_dir, v)
    }

    /// Opens the snapshot at `v` and checks every scan file is present.
    fn check_version(&self, root: &Url, table_dir: &Path, v: u64) -> Result<(), Problem> {
        self.scan_files(root, v).map_err(Problem::Kernel)?.into_iter().try_for_each(|f| {
            let local = f.to_file_path().map_err(|_| Problem::Kernel(format!("not a local path: {f}")))?;
            if local.exists() {
                return Ok(());
            }
            let rel = local.strip_prefix(table_dir).map(|p| p.display().to_string());
            Err(Problem::Missing(rel.unwrap_or_else(|_| f.to_string())))
        })
    }

    /// Every file the scan of the snapshot at `v` needs.
    fn scan_files(&self, root: &Url, v: u64) -> Result<Vec<Url>, String> {
        let mut out = vec![];
        let snapshot = Snapshot::builder_for(root.as_str())
            .at_version(v)
            .build(&self.engine)
            .map_err(|e| format!("snapshot at {v}: {e}"))?;
        let scan = snapshot.scan_builder().build().map_err(|e| format!("scan at {v}: {e}"))?;
        let iter = scan.scan_metadata(&self.engine).map_err(|e| format!("scan metadata at {v}: {e}"))?;
        for meta in iter {
            let meta = meta.map_err(|e| format!("scan metadata at {v}: {e}"))?;
            let (data, selection) = meta.scan_files.into_parts();
            let data = ArrowEngineData::try_from_engine_data(data).map_err(|e| format!("scan rows at {v}: {e}"))?;
            out.extend(scan_file_paths(data.record_batch(), &selection, root)?);
        }
        Ok(out)
    }
}

/// The selected scan rows' files: each data file and each DV file (as URLs).
fn scan_file_paths(batch: &delta_kernel::arrow::array::RecordBatch, selection: &[bool], root: &Url) -> Result<Vec<Url>, String> {
    let paths = batch.column_by_name("path").ok_or("scan rows without path")?;
    let paths = cast(paths, &DataType::Utf8).map_err(|e| e.to_string())?;
    let paths = paths.as_string::<i32>();
    let dvs = batch.column_by_name("deletionVector").ok_or("scan rows without deletionVector")?;
    let dvs: &StructArray = dvs.as_struct();
    let text = |name: &str| -> Result<_, String> {
        let c = dvs.column_by_name(name).ok_or(format!("deletionVector without {name}"))?;
        cast(c, &DataType::Utf8).map_err(|e| e.to_string())
    };
    let (storage, pod) = (text("storageType")?, text("pathOrInlineDv")?);
    let (storage, pod) = (storage.as_string::<i32>(), pod.as_string::<i32>());
    let offsets = dvs.column_by_name("offset").and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
    let sizes = dvs.column_by_name("sizeInBytes").and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned());
    let cards = dvs.column_by_name("cardinality").and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
    let mut out = vec![];
    for i in 0..batch.num_rows() {
        // Rows past the selection vector's end are selected (FilteredEngineData's rule).
        if !selection.get(i).copied().unwrap_or(true) || paths.is_null(i) {
            continue;
        }
        let p = paths.value(i);
        let url = Url::parse(p).or_else(|_| root.join(p)).map_err(|e| format!("scan path {p:?}: {e}"))?;
        out.push(url);
        if dvs.is_null(i) || storage.is_null(i) {
            continue;
        }
        let storage_type = DeletionVectorStorageType::from_str(storage.value(i)).map_err(|e| e.to_string())?;
        let dv = DeletionVectorDescriptor {
            storage_type,
            path_or_inline_dv: pod.value(i).to_owned(),
            offset: offsets.as_ref().filter(|o| !o.is_null(i)).map(|o| o.value(i)),
            size_in_bytes: sizes.as_ref().map(|s| s.value(i)).unwrap_or(0),
            cardinality: cards.as_ref().map(|c| c.value(i)).unwrap_or(0),
        };
        if let Some(dv_url) = dv.absolute_path(root).map_err(|e| format!("deletion vector of {p}: {e}"))? {
            out.push(dv_url);
        }
    }
    Ok(out)
}

/// The table directory as a `file://` URL ending in `/` (the kernel joins relative paths onto it).
pub fn dir_url(dir: &Path) -> Url {
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Url::from_directory_path(abs).expect("an absolute directory path")
}

/// Versions named by a commit or checkpoint file in `_delta_log`.
pub fn log_versions(table_dir: &Path) -> BTreeSet<u64> {
    log_files(table_dir).into_iter().map(|(v, _)| v).collect()
}

/// The commit and checkpoint files of `_delta_log`: (version, file name).
pub fn log_files(table_dir: &Path) -> Vec<(u64, String)> {
    let mut out = vec![];
    let Ok(rd) = fs::read_dir(table_dir.join("_delta_log")) else { return out };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let (digits, rest) = name.split_at(name.len().min(20));
        let is_log = rest == ".json" || rest.starts_with(".checkpoint.");
        if digits.len() == 20
            && digits.bytes().all(|b| b.is_ascii_digit())
            && is_log
            && let Ok(v) = digits.parse()
        {
            out.push((v, name));
        }
    }
    out
}
