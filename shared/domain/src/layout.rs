//! The control bucket's layout: every key the stack reads or writes, in one place.
//!
//! template.yaml scopes the functions' S3 grants to these prefixes, and docs/CONTRACT.md ("Control bucket")
//! documents them for the people who read the bucket by hand; `tests/tests/template.rs` keeps the grants in
//! step with [`PREFIXES`].
//!
//! | key | what |
//! |---|---|
//! | `locks/failover.json`, `locks/drill.json` | the single-flight locks |
//! | `locks/probe-{token}.json` | `check`'s conditional-write probe (deleted at once) |
//! | `executions/{id}.json` | an execution's resumable record |
//! | `snapshots/{id}/` | a snapshot's files and `manifest.json` |
//! | `reports/{id}.json`, `reports/{id}.md` | an execution's report |
//! | `quarantine/{function}/{day}/{digest}.json` | an input that could not be parsed, kept verbatim |
//! | `replication/incidents/{id}.json` | a replication incident |
//! | `replication/manifests/{day}/{batch}-{n}.csv` | S3 Batch Operations re-drive manifests |
//! | `checks/state.json` | the critical findings of `check` that are paged and not yet resolved |
//! | `checks/dr-matrix.json`, `checks/dr-matrix.md` | the live DR matrix of the latest `check` |
//! | `databricks/latest-{site}.json` | which snapshot holds the latest export of a site's workspace |
//! | `databricks/drift.json` | the latest drift between the sites and over time |
//! | `databricks/export-{site}.json` | the running or latest export of a site: started when, kinds in, calls made |
//! | `databricks/sync/{plan_id}.json` | a sync apply's journal and record: each change's status, written before its call |
//! | `databricks/sync-latest.json` | the latest sync apply's record |
//! | `alarms/{digest}.json` | an alarm's open pages and its newest `OK` (which pages an `OK` resolves) |

/// Every top-level prefix of the control bucket.
pub const PREFIXES: [&str; 9] =
    ["locks/", "executions/", "snapshots/", "reports/", "quarantine/", "replication/", "checks/", "databricks/", "alarms/"];

/// An alarm's open pages and newest recovery (`dr-failover`'s `AlarmPages`), by the digest of its ARN.
pub fn alarm_pages(alarm_arn: &str) -> String {
    format!("alarms/{}.json", &crate::primitives::sha256_hex(alarm_arn.as_bytes())[..32])
}

/// The pointer to the latest export of a site's workspace.
pub fn databricks_latest(site: crate::site::SiteName) -> String {
    format!("databricks/latest-{site}.json")
}

/// The running or latest export of a site's workspace: its progress, for `status`.
pub fn databricks_export_progress(site: crate::site::SiteName) -> String {
    format!("databricks/export-{site}.json")
}

/// A sync apply's journal and record, by its plan's id.
pub fn databricks_sync(plan_id: &str) -> String {
    format!("databricks/sync/{plan_id}.json")
}

/// The latest sync apply's record.
pub const DATABRICKS_SYNC_LATEST: &str = "databricks/sync-latest.json";

/// The latest drift between the workspaces (and of each over time).
pub const DATABRICKS_DRIFT: &str = "databricks/drift.json";

/// The live DR matrix of the latest `check`: `(JSON, Markdown)`.
pub const DR_MATRIX: (&str, &str) = ("checks/dr-matrix.json", "checks/dr-matrix.md");

/// The lock of failovers and failbacks.
pub const FAILOVER_LOCK: &str = "locks/failover.json";

/// The lock of drills (a drill never blocks a real failover).
pub const DRILL_LOCK: &str = "locks/drill.json";

/// The state of the scheduled `check`: the critical findings paged and not yet resolved.
pub const CHECK_STATE: &str = "checks/state.json";

/// Execution records.
pub const EXECUTIONS_PREFIX: &str = "executions/";

/// Open and closed replication incidents.
pub const INCIDENTS_PREFIX: &str = "replication/incidents/";

/// Re-drive manifests of objects that failed to replicate.
pub const MANIFESTS_PREFIX: &str = "replication/manifests/";

/// `check`'s probe of conditional writes: a fresh key under `locks/`.
pub fn probe_lock(token: &str) -> String {
    format!("locks/probe-{token}.json")
}

/// The resumable record of an execution.
pub fn execution_record(execution_id: &str) -> String {
    format!("{EXECUTIONS_PREFIX}{execution_id}.json")
}

/// The folder of a snapshot (no trailing `/`): its files and `manifest.json` are below it.
pub fn snapshot_folder(id: &str) -> String {
    format!("snapshots/{id}")
}

/// The report of an execution: `(JSON, Markdown)`.
pub fn report(execution_id: &str) -> (String, String) {
    (format!("reports/{execution_id}.json"), format!("reports/{execution_id}.md"))
}

/// The Markdown report of an execution (the one people open).
pub fn report_markdown(execution_id: &str) -> String {
    report(execution_id).1
}

/// Where an unparseable input of `function` received on `day` (`YYYY-MM-DD`) is kept; `digest` is derived
/// from the input so that a redelivery is kept once.
pub fn quarantined(function: &str, day: &str, digest: &str) -> String {
    format!("quarantine/{function}/{day}/{digest}.json")
}

/// The prefix of one function's quarantined inputs.
pub fn quarantine_prefix(function: &str) -> String {
    format!("quarantine/{function}/")
}

/// A replication incident's document.
pub fn incident(id: &str) -> String {
    format!("{INCIDENTS_PREFIX}{id}.json")
}

/// The `n`th (from 1) re-drive manifest of a batch received on `day`.
pub fn manifest(day: &str, batch_id: &str, n: usize) -> String {
    format!("{MANIFESTS_PREFIX}{day}/{batch_id}-{n}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_a_listed_prefix() {
        let keys = [
            FAILOVER_LOCK.to_owned(),
            DRILL_LOCK.to_owned(),
            probe_lock("t"),
            execution_record("e"),
            alarm_pages("arn:aws:cloudwatch:us-east-1:123456789012:alarm:x"),
            format!("{}/manifest.json", snapshot_folder("s")),
            report("e").0,
            report_markdown("e"),
            quarantined("f", "2026-01-01", "d"),
            incident("i"),
            manifest("2026-01-01", "b", 1),
            CHECK_STATE.to_owned(),
        ];
        for key in keys {
            assert!(PREFIXES.iter().any(|p| key.starts_with(p)), "{key}");
        }
    }
}
