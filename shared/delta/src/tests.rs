//! The assessment over the in-memory buckets: what the end-to-end tests (real tables in moto) and the oracle
//! (delta-kernel-rs over random tables) cannot pin by name.

use super::{DeltaLimits, assess};
use crate::rules::report::{Status, TableReport};
use domain::data_plane::DataPlane;
use dr_ports::memory::MemDataBuckets;
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-12-01 00:00:00 UTC);

/// A table written into both buckets (`primary`, `replica`) under `t/`, one commit at a time, each commit file
/// written a minute after the one before.
struct Table {
    data: MemDataBuckets,
}

impl Table {
    fn new() -> Table {
        Table { data: MemDataBuckets::default() }
    }

    fn put_both(&self, rel: &str, body: &str, minute: i64) {
        let t = Some(T0 + time::Duration::minutes(minute));
        for b in ["primary", "replica"] {
            self.data.put(b, &format!("t/{rel}"), body.as_bytes().to_vec(), t);
        }
    }

    fn commit(&self, v: u64, lines: &[&str]) {
        let info = format!(r#"{{"commitInfo":{{"timestamp":{}}}}}"#, 1_000 * v);
        let body = std::iter::once(info.as_str()).chain(lines.iter().copied()).collect::<Vec<_>>().join("\n");
        self.put_both(&format!("_delta_log/{v:020}.json"), &body, v as i64);
    }

    fn file(&self, path: &str) {
        self.put_both(path, "PAR1", 0);
    }

    fn lose(&self, rel: &str) {
        self.data.remove("replica", &format!("t/{rel}"));
    }

    async fn assess(&self) -> TableReport {
        self.assess_with(&DeltaLimits { deadline: std::time::Duration::from_secs(30), ..DeltaLimits::default() }).await
    }

    async fn assess_with(&self, limits: &DeltaLimits) -> TableReport {
        let plane = DataPlane::parse(
            "data-plane",
            r#"{"locations":[{"name":"t","kind":"delta","primary":"s3://primary/t","replica":"s3://replica/t"}]}"#,
        )
        .unwrap();
        assess(&self.data, &plane, limits, T0).await.tables.remove(0)
    }
}

const PROTOCOL: &str = r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors","v2Checkpoint"],"writerFeatures":["deletionVectors","v2Checkpoint","inCommitTimestamp","changeDataFeed"]}}"#;
const METADATA: &str = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{}}}"#;

fn add(path: &str) -> String {
    format!(r#"{{"add":{{"path":"{path}","partitionValues":{{}},"size":4,"modificationTime":0,"dataChange":true}}}}"#)
}

/// A table of `n` commits, one file each (`f{v}.parquet`).
fn appends(n: u64) -> Table {
    let t = Table::new();
    t.commit(0, &[PROTOCOL, METADATA, &add("f0.parquet")]);
    t.file("f0.parquet");
    for v in 1..n {
        let path = format!("f{v}.parquet");
        t.commit(v, &[&add(&path)]);
        t.file(&path);
    }
    t
}

#[tokio::test]
async fn a_truncated_log_listing_certifies_nothing() {
    let t = appends(30);
    let r = t.assess().await;
    assert_eq!((r.status, r.replica_consistent_version), (Status::Current, Some(29)), "{r:?}");
    // A bound of 10 keys: the listing is incomplete, and that is never a smaller newest version.
    let r = t.assess_with(&DeltaLimits { max_keys: 10, page_size: 5, ..DeltaLimits::default() }).await;
    assert_eq!((r.status, r.replica_consistent_version), (Status::Unknown, None), "{r:?}");
    assert!(r.reason.starts_with("not certified: listing incomplete"), "{}", r.reason);
}

#[tokio::test]
async fn before_in_commit_timestamps_are_enabled_a_commit_is_timed_by_its_file_on_the_primary() {
    let t = appends(6);
    // ICT turned on at 4 (the protocol's properties), commit 4 and 5 carrying one; the replica lacks commit 5.
    let meta = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{"delta.enableInCommitTimestamps":"true","delta.inCommitTimestampEnablementVersion":"4"}}}"#;
    let ict = |v: u64| {
        format!(r#"{{"commitInfo":{{"timestamp":1,"inCommitTimestamp":{}}}}}"#, T0.unix_timestamp() * 1000 + 3_600_000 + v as i64)
    };
    t.put_both(&format!("_delta_log/{:020}.json", 4), &[ict(4).as_str(), meta, &add("f4.parquet")].join("\n"), 4);
    t.put_both(&format!("_delta_log/{:020}.json", 5), &[ict(5).as_str(), &add("f5.parquet")].join("\n"), 5);
    t.lose(&format!("_delta_log/{:020}.json", 5));
    let r = t.assess().await;
    assert_eq!((r.replica_consistent_version, r.versions_behind), (Some(4), Some(1)), "{r:?}");
    // Both after enablement: ICTs 1 ms apart.
    assert_eq!(r.rpo_seconds, Some(0), "{r:?}");
    // The replica consistent at 3, before enablement: 3 is timed by its file on the primary (minute 3), 5 by its
    // ICT (an hour after T0): 57 minutes. By commitInfo.timestamp (3,000 ms) it would read as years.
    t.lose("f4.parquet");
    let r = t.assess().await;
    assert_eq!((r.replica_consistent_version, r.rpo_seconds), (Some(3), Some(57 * 60)), "{r:?}");
}

#[tokio::test]
async fn a_negative_lag_is_clock_skew_said_not_zero() {
    let t = appends(3);
    // Commit 2's file on the primary is older than commit 1's: clocks disagree.
    t.data.put(
        "primary",
        &format!("t/_delta_log/{:020}.json", 1),
        add("f1.parquet").into_bytes(),
        Some(T0 + time::Duration::hours(2)),
    );
    t.lose("f2.parquet");
    let r = t.assess().await;
    assert_eq!((r.status, r.replica_consistent_version, r.rpo_seconds), (Status::Unknown, Some(1), None), "{r:?}");
    assert!(r.reason.starts_with("clock skew"), "{}", r.reason);
    assert_eq!(r.details["clock_skew_seconds"], 2 * 3600 - 120);
}

#[tokio::test]
async fn coordinated_commits_and_a_catalog_feature_in_the_primarys_snapshot_are_never_certified() {
    let t = appends(3);
    t.put_both("_delta_log/_commits/00000000000000000003.3a0d65cd-4056-49b8-937b-95f9e3ee90e5.json", &add("x"), 3);
    let r = t.assess().await;
    assert_eq!((r.status, r.replica_consistent_version), (Status::CannotBeCertified, None), "{r:?}");
    assert!(r.reason.contains("_commits/"), "{}", r.reason);
    // The feature in the primary's v2 checkpoint (JSON top level), not in its newest commit: still found.
    let t = appends(3);
    let cc = PROTOCOL.replace(r#""changeDataFeed"]"#, r#""changeDataFeed","coordinatedCommits-preview"]"#);
    let cp = [
        cc.as_str(),
        METADATA,
        r#"{"checkpointMetadata":{"version":2}}"#,
        &add("f0.parquet"),
        &add("f1.parquet"),
        &add("f2.parquet"),
    ];
    t.data.put(
        "primary",
        "t/_delta_log/00000000000000000002.checkpoint.3a0d65cd-4056-49b8-937b-95f9e3ee90e5.json",
        cp.join("\n").into_bytes(),
        Some(T0),
    );
    t.data.put("primary", "t/_delta_log/_last_checkpoint", br#"{"version":2,"size":6}"#.to_vec(), Some(T0));
    t.commit(3, &[&add("f3.parquet")]);
    t.file("f3.parquet");
    let r = t.assess().await;
    assert_eq!(r.status, Status::CannotBeCertified, "{r:?}");
    assert!(r.reason.contains("coordinatedCommits-preview"), "{}", r.reason);
}

#[tokio::test]
async fn an_empty_or_unreadable_commit_stops_certification_there() {
    let t = appends(4);
    t.data.put("replica", &format!("t/_delta_log/{:020}.json", 2), Vec::new(), Some(T0));
    let r = t.assess().await;
    assert_eq!(r.replica_consistent_version, Some(1), "{r:?}");
    assert!(r.reason.contains("commit 2 cannot be read: empty"), "{}", r.reason);
    t.data.put("replica", &format!("t/_delta_log/{:020}.json", 2), b"{\"add\":".to_vec(), Some(T0));
    assert_eq!(t.assess().await.replica_consistent_version, Some(1));
}

#[tokio::test]
async fn the_change_data_feed_reports_its_own_version() {
    let t = appends(2);
    let cdf = METADATA.replace(r#""configuration":{}"#, r#""configuration":{"delta.enableChangeDataFeed":"true"}"#);
    t.commit(
        2,
        &[
            &cdf,
            &add("f2.parquet"),
            r#"{"cdc":{"path":"_change_data/cdc-2.parquet","partitionValues":{},"size":1,"dataChange":false}}"#,
        ],
    );
    t.file("f2.parquet");
    t.file("_change_data/cdc-2.parquet");
    t.commit(3, &[&add("f3.parquet")]);
    t.file("f3.parquet");
    let r = t.assess().await;
    assert_eq!((r.status, r.details["change_data_consistent_version"].as_u64()), (Status::Current, Some(3)), "{r:?}");
    t.lose("_change_data/cdc-2.parquet");
    let r = t.assess().await;
    assert_eq!(r.status, Status::Current, "the table's snapshot does not need change data files: {r:?}");
    assert_eq!(r.details["change_data_consistent_version"].as_u64(), Some(1), "{r:?}");
    assert_eq!(r.details["change_data_missing_example"], "_change_data/cdc-2.parquet");
}

#[tokio::test]
async fn the_log_is_listed_from_the_hint_and_the_root_never_whole() {
    // 3,000 commits, a v2 checkpoint (JSON top level) at 2,990 naming every file, the hint on it; 3,000 dead files
    // beside the live ones in the root.
    let t = Table::new();
    let live: Vec<String> = (0..3000).map(|v| format!("d={}/f{v}.parquet", v % 10)).collect();
    t.commit(0, &[PROTOCOL, METADATA]);
    for v in 1..3000u64 {
        t.commit(v, &[&add(&live[v as usize])]);
    }
    for f in &live {
        t.file(f);
        t.file(&format!("dead-{f}").replace('/', "-"));
    }
    let mut cp = vec![PROTOCOL.to_owned(), METADATA.to_owned(), r#"{"checkpointMetadata":{"version":2990}}"#.to_owned()];
    cp.extend(live[1..=2990].iter().map(|f| add(f)));
    t.put_both("_delta_log/00000000000000002990.checkpoint.3a0d65cd-4056-49b8-937b-95f9e3ee90e5.json", &cp.join("\n"), 2990);
    t.put_both("_delta_log/_last_checkpoint", r#"{"version":2990,"size":2993}"#, 2990);
    let before = t.data.calls();
    let r = t.assess().await;
    assert_eq!((r.status, r.replica_consistent_version), (Status::Current, Some(2999)), "{r:?}");
    let c = t.data.calls();
    // Per side, the log from 2,990 on (11 commits, the checkpoint, the hint): a page; the files: one listing of each
    // of the 10 partition directories (300 files each), never the 6,000 keys of the root.
    assert!(c.listed - before.listed < 10 * 300 + 3 * 20, "{c:?}");
    assert!(c.pages - before.pages <= 2 + 10 * 4, "{c:?}");
    assert_eq!(c.heads - before.heads, 0, "{c:?}");
}

#[tokio::test]
async fn a_foreach_batch_stream_is_judged_by_the_txn_app_id_it_writes() {
    // The sink's commits carry txn(appId "nightly-merge", version = batch), not the query's id: without the
    // location's txn_app_id the stream looked as if no batch of it were in the sink ("unsafe").
    let t = appends(3);
    t.commit(3, &[&add("f3.parquet"), r#"{"txn":{"appId":"nightly-merge","version":4,"lastUpdated":1}}"#]);
    t.file("f3.parquet");
    let c = "checkpoints/merge";
    t.data.put("replica", &format!("{c}/metadata"), br#"{"id":"5f1b9c3e-0000-4000-8000-000000000009"}"#.to_vec(), Some(T0));
    for b in 0..5 {
        t.data.put("replica", &format!("{c}/offsets/{b}"), b"v1".to_vec(), Some(T0));
        t.data.put("replica", &format!("{c}/commits/{b}"), b"v1".to_vec(), Some(T0));
    }
    let plane = |app: &str| {
        DataPlane::parse(
            "data-plane",
            &format!(
                r#"{{"locations":[{{"name":"t","kind":"delta","primary":"s3://primary/t","replica":"s3://replica/t"}},
                {{"name":"s","kind":"stream-checkpoint","sink":"t"{app},"primary":"s3://primary/{c}","replica":"s3://replica/{c}"}}]}}"#
            ),
        )
        .unwrap()
    };
    let limits = DeltaLimits { deadline: std::time::Duration::from_secs(30), ..DeltaLimits::default() };
    let without = assess(&t.data, &plane(""), &limits, T0).await.tables.remove(1);
    assert_eq!(without.status, Status::Unsafe, "{without:?}");
    let with = assess(&t.data, &plane(r#","txn_app_id":"nightly-merge""#), &limits, T0).await.tables.remove(1);
    assert_eq!(with.status, Status::Current, "{with:?}");
    assert_eq!((with.details["sink_batch"].as_i64(), with.details["txn_app_id"].as_str()), (Some(4), Some("nightly-merge")));
}
