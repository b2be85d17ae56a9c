//! The project's assessment (`dr_delta::assess`) over an in-memory copy of the primary and the replica.

use domain::data_plane::DataPlane;
use dr_delta::rules::report::TableReport;
use dr_delta::{DeltaLimits, assess};
use dr_ports::memory::MemDataBuckets;
use std::fs;
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// The one location the comparison assesses.
const PLANE: &str = r#"{"locations":[{"name":"t","kind":"delta","primary":"s3://primary/t","replica":"s3://replica/t"}]}"#;

/// The project's report of the one table: `primary_dir` in bucket `primary`, `replica_dir` in bucket `replica`,
/// both under the key prefix `t/`.
pub async fn project_report(primary_dir: &Path, replica_dir: &Path) -> Result<TableReport, String> {
    let data = load_pair(primary_dir, replica_dir)?;
    let plane = plane()?;
    let limits = DeltaLimits { deadline: Duration::from_secs(60), ..Default::default() };
    let assessment = assess(&data, &plane, &limits, OffsetDateTime::now_utc()).await;
    assessment.tables.into_iter().next().ok_or_else(|| "the assessment has no table".to_owned())
}

/// The one location's data plane (`t` in buckets `primary` and `replica`).
pub fn plane() -> Result<DataPlane, String> {
    DataPlane::parse("data-plane", PLANE).map_err(|e| format!("data plane: {e:?}"))
}

/// `primary_dir` in bucket `primary`, `replica_dir` in bucket `replica`, both under `t/`.
pub fn load_pair(primary_dir: &Path, replica_dir: &Path) -> Result<MemDataBuckets, String> {
    let data = MemDataBuckets::default();
    load(&data, "primary", primary_dir)?;
    load(&data, "replica", replica_dir)?;
    Ok(data)
}

/// Puts every file under `dir` into `bucket` at `t/<relative path>`, with its mtime as last-modified.
fn load(data: &MemDataBuckets, bucket: &str, dir: &Path) -> Result<(), String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).map_err(|e| e.to_string())?;
            let key = format!("t/{}", rel.to_string_lossy());
            let body = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let modified = e.metadata().and_then(|m| m.modified()).ok().map(OffsetDateTime::from);
            data.put(bucket, &key, body, modified);
        }
    }
    Ok(())
}
