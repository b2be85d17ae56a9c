//! The RPO estimate an execution records at its snapshot (and an approval page quotes): open replication
//! incidents and the Delta assessment's workload RPO.
use dr_ports::snapshot;
use serde_json::{Value, json};

/// The RPO estimate from the snapshot's replication incidents file: open incidents say how far behind the
/// replica may be. Without that source, the estimate is unknown.
pub fn rpo_estimate(files: &[snapshot::SnapshotFile]) -> Value {
    let mut estimate = incidents_estimate(files);
    // The Delta assessment's workload RPO (the worst table's), when the snapshot has one: the number on-call
    // needs before approving. "still-computing" when its deadline passed; the report finishes it.
    if let (Some(workload), Value::Object(o)) = (dr_delta::workload_of(files), &mut estimate) {
        o.insert("delta".into(), workload);
        let assessed = files.iter().find(|f| f.name == dr_delta::rules::report::SNAPSHOT_FILE);
        let at = assessed.and_then(|f| serde_json::from_slice::<Value>(&f.body).ok()).map(|v| v["generated_at"].clone());
        o.insert("delta_generated_at".into(), at.unwrap_or(Value::Null));
    }
    estimate
}

/// The estimate from the open replication incidents alone.
fn incidents_estimate(files: &[snapshot::SnapshotFile]) -> Value {
    let Some(file) = files.iter().find(|f| f.name == dr_replication::SNAPSHOT_FILE) else {
        return json!({ "estimate": "unknown", "why": "no replication incidents source in this snapshot" });
    };
    let v: Value = serde_json::from_slice(&file.body).unwrap_or(Value::Null);
    let open = v["open_incidents"].as_u64().unwrap_or(0);
    if open == 0 {
        return json!({
            "estimate": "current",
            "open_incidents": 0,
            "why": "no open replication incident: the replicas trail by S3 replication's normal delay only",
        });
    }
    let summary = v["summary"].as_array().cloned().unwrap_or_default();
    let oldest = summary.iter().filter_map(|i| i["first_seen"].as_str()).min().map(str::to_owned);
    let lagging = summary.iter().any(|i| i["lag_outstanding"] == Value::Bool(true));
    json!({
        "estimate": "at_risk",
        "open_incidents": open,
        "failed_objects": v["failed_objects"],
        "oldest_unreplicated_since": oldest,
        "lag_outstanding": lagging,
        "why": format!(
            "{open} open replication incident(s): objects written since {} may be missing on the replica; re-drive them \
             with the manifests under replication/manifests/",
            oldest.as_deref().unwrap_or("an unknown time")
        ),
        "incidents": summary,
    })
}
