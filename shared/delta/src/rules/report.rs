//! One entry of `delta-tables.json` per data-plane location, the RPO of a table, and the workload's RPO.

use serde::{Deserialize, Serialize};

/// The snapshot file.
pub const SNAPSHOT_FILE: &str = "delta-tables.json";

/// How a location's replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The replica's consistent version is the primary's newest (or nothing is missing under the prefix; or a
    /// stream restart is safe).
    Current,
    /// The replica is behind by the RPO given.
    Behind,
    /// A restart of the stream from the replica would skip batches.
    Unsafe,
    /// The replica holds no consistent version.
    Inconsistent,
    /// The primary (or the replica) could not be read: never a guess.
    Unknown,
    /// Catalog-managed: the log alone cannot say which version is the table's.
    CannotBeCertified,
    /// The assessment's deadline passed before this location was done.
    StillComputing,
}

/// One location's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    /// The location's name.
    pub name: String,
    /// `delta`, `prefix` or `stream-checkpoint`.
    pub kind: String,
    /// The primary's newest version (Delta).
    pub primary_version: Option<u64>,
    /// The replica's newest consistent version (Delta).
    pub replica_consistent_version: Option<u64>,
    /// `primary_version - replica_consistent_version`.
    pub versions_behind: Option<u64>,
    /// The commit time of the primary's newest version minus that of the consistent version; `null` when it
    /// cannot be known.
    pub rpo_seconds: Option<i64>,
    /// How it stands.
    pub status: Status,
    /// Why, in a sentence.
    pub reason: String,
    /// Kind-specific facts (a prefix's missing objects, a stream's batches).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl TableReport {
    /// An entry with only a status and a reason.
    pub fn bare(name: &str, kind: &str, status: Status, reason: impl Into<String>) -> TableReport {
        TableReport {
            name: name.to_owned(),
            kind: kind.to_owned(),
            primary_version: None,
            replica_consistent_version: None,
            versions_behind: None,
            rpo_seconds: None,
            status,
            reason: reason.into(),
            details: serde_json::Map::new(),
        }
    }
}

/// RPO in whole seconds (rounded down) from two commit times in milliseconds; never negative (clocks of
/// `commitInfo.timestamp` may disagree between writers).
pub fn rpo_seconds(primary_ms: i64, replica_ms: i64) -> i64 {
    (primary_ms - replica_ms).max(0) / 1000
}

/// The workload's RPO: the worst table's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// `known` (every Delta table has an RPO), `still-computing`, or `unknown`.
    pub state: String,
    /// The worst RPO among the tables that have one (a lower bound unless `state` is `known`).
    pub rpo_seconds: Option<i64>,
    /// The table it belongs to.
    pub worst_table: Option<String>,
    /// Locations without an RPO (unknown, cannot be certified, inconsistent, still computing).
    pub without_rpo: Vec<String>,
    /// Streams whose restart would skip batches.
    pub unsafe_streams: Vec<String>,
    /// Prefix locations missing objects.
    pub prefixes_missing_objects: Vec<String>,
    /// One line for pages and reports.
    pub summary: String,
}

/// The workload's RPO from every location's entry.
pub fn workload(tables: &[TableReport]) -> Workload {
    let delta: Vec<&TableReport> = tables.iter().filter(|t| t.kind == "delta").collect();
    // The worst table: the largest RPO, then the most versions behind (commits seconds apart round to the same
    // RPO; the versions behind tell them apart, and say what the RPO in seconds cannot).
    let worst_table =
        delta.iter().filter(|t| t.rpo_seconds.is_some()).max_by_key(|t| (t.rpo_seconds, t.versions_behind.unwrap_or(0)));
    let worst = worst_table.and_then(|t| t.rpo_seconds.map(|r| (r, &t.name)));
    let behind = match worst_table.and_then(|t| t.versions_behind) {
        Some(0) | None => String::new(),
        Some(1) => ", 1 version behind".to_owned(),
        Some(n) => format!(", {n} versions behind"),
    };
    let without: Vec<&TableReport> = delta.iter().copied().filter(|t| t.rpo_seconds.is_none()).collect();
    let computing = tables.iter().any(|t| t.status == Status::StillComputing);
    let state = if computing {
        "still-computing"
    } else if without.is_empty() {
        "known"
    } else {
        "unknown"
    };
    let unsafe_streams: Vec<String> = tables.iter().filter(|t| t.status == Status::Unsafe).map(|t| t.name.clone()).collect();
    let prefixes: Vec<String> =
        tables.iter().filter(|t| t.kind == "prefix" && t.status == Status::Behind).map(|t| t.name.clone()).collect();
    let mut summary = match (state, worst) {
        ("known", Some((r, name))) => format!("workload RPO {r} s{behind} (worst table {name})"),
        ("known", None) => "workload RPO: no Delta table in the data plane".to_owned(),
        ("still-computing", w) => {
            format!("workload RPO still computing{}", w.map(|(r, n)| format!(" (at least {r} s, table {n})")).unwrap_or_default())
        }
        (_, w) => format!(
            "workload RPO unknown: {} without one{}",
            without.iter().map(|t| format!("{} ({})", t.name, t.reason)).collect::<Vec<_>>().join("; "),
            w.map(|(r, n)| format!("; at least {r} s (table {n})")).unwrap_or_default()
        ),
    };
    if !unsafe_streams.is_empty() {
        summary.push_str(&format!("; stream restart would skip batches: {}", unsafe_streams.join(", ")));
    }
    if !prefixes.is_empty() {
        summary.push_str(&format!("; prefixes missing objects: {}", prefixes.join(", ")));
    }
    Workload {
        state: state.to_owned(),
        rpo_seconds: worst.map(|(r, _)| r),
        worst_table: worst.map(|(_, n)| n.clone()),
        without_rpo: without.iter().map(|t| t.name.clone()).collect(),
        unsafe_streams,
        prefixes_missing_objects: prefixes,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(name: &str, rpo: Option<i64>, status: Status) -> TableReport {
        TableReport { rpo_seconds: rpo, ..TableReport::bare(name, "delta", status, "because") }
    }

    #[test]
    fn the_worst_table_is_the_workload() {
        assert_eq!(rpo_seconds(10_999, 1_000), 9);
        assert_eq!(rpo_seconds(1_000, 2_000), 0);
        let w = workload(&[
            delta("a", Some(3), Status::Behind),
            delta("b", Some(40), Status::Behind),
            delta("c", Some(0), Status::Current),
        ]);
        assert_eq!((w.state.as_str(), w.rpo_seconds, w.worst_table.as_deref()), ("known", Some(40), Some("b")));
        assert_eq!(w.summary, "workload RPO 40 s (worst table b)");
        let w = workload(&[delta("a", Some(3), Status::Behind), delta("u", None, Status::Unknown)]);
        assert_eq!(w.state, "unknown");
        assert_eq!(w.summary, "workload RPO unknown: u (because) without one; at least 3 s (table a)");
        let w = workload(&[delta("a", Some(3), Status::Behind), delta("s", None, Status::StillComputing)]);
        assert_eq!(w.summary, "workload RPO still computing (at least 3 s, table a)");
        // Commits a second apart round to the same RPO: the versions behind pick the worst and are said.
        let behind = |name: &str, v: u64| TableReport { versions_behind: Some(v), ..delta(name, Some(0), Status::Behind) };
        let w = workload(&[behind("x", 1), behind("y", 3), delta("z", Some(0), Status::Current)]);
        assert_eq!(w.summary, "workload RPO 0 s, 3 versions behind (worst table y)");
        let entry = serde_json::to_value(delta("a", None, Status::CannotBeCertified)).unwrap();
        assert_eq!(entry["status"], "cannot-be-certified");
        assert!(entry["rpo_seconds"].is_null() && entry.get("details").is_none());
    }
}
