//! Data-plane truth end to end: real Delta tables written by delta-rs (the `deltalake` package, pinned, in
//! `.venv-tools/deltalake`, created on first use) into moto's S3 by `tests/delta/make_tables.py`, copied into a
//! replica bucket partially, one case per table; the engine's assessment (`dr_delta::assess`) through the S3
//! adapter (`aws::data_buckets::S3DataBuckets`) must find each table's consistent version, versions behind and
//! RPO exactly. The expected times come from the commits the writer made (the script prints them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::data_plane::DataPlane;
use dr_delta::rules::report::{Status, TableReport};
use dr_delta::{Assessment, DeltaLimits, assess};
use serde_json::Value;
use tokio::sync::OnceCell;

struct World {
    primary: String,
    replica: String,
    manifest: Value,
}

/// An S3 client per test: each test has its own runtime, and a client's connections belong to one.
async fn s3() -> aws_sdk_s3::Client {
    let conf = tests::dr_env::sdk_config(&tests::moto::shared().endpoint).await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
}

async fn world() -> &'static World {
    static W: OnceCell<World> = OnceCell::const_new();
    W.get_or_init(|| async {
        let moto = tests::moto::shared();
        let s3 = s3().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (primary, replica) = (format!("dl-p-{}", &id[..12]), format!("dl-r-{}", &id[..12]));
        let region = aws_sdk_s3::types::BucketLocationConstraint::from(tests::dr_env::REGION);
        let at = aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(region).build();
        for b in [&primary, &replica] {
            s3.create_bucket().bucket(b).create_bucket_configuration(at.clone()).send().await.unwrap();
        }
        let manifest = tests::delta::make_tables(&moto.endpoint, &primary, &replica);
        World { primary, replica, manifest }
    })
    .await
}

fn location(w: &World, name: &str, kind: &str, path: &str, sink: Option<&str>) -> Value {
    let mut l = serde_json::json!({
        "name": name, "kind": kind,
        "primary": format!("s3://{}/{path}", w.primary), "replica": format!("s3://{}/{path}", w.replica),
    });
    if let Some(s) = sink {
        l["sink"] = s.into();
    }
    l
}

async fn run(locations: Vec<Value>) -> Assessment {
    world().await;
    let plane = DataPlane::parse("data-plane", &serde_json::json!({ "locations": locations }).to_string()).unwrap();
    let data = aws::data_buckets::S3DataBuckets::new(s3().await);
    let limits = DeltaLimits { deadline: std::time::Duration::from_secs(60), ..DeltaLimits::default() };
    assess(&data, &plane, &limits, time::OffsetDateTime::now_utc()).await
}

async fn delta(case: &str) -> (TableReport, Value) {
    let w = world().await;
    let a = run(vec![location(w, case, "delta", &format!("tables/{case}"), None)]).await;
    assert!(a.complete);
    (a.tables[0].clone(), w.manifest[case].clone())
}

/// The entry must say: consistent at `consistent`, `newest - consistent` behind, and the RPO from the commits'
/// own times (ms, rounded down to seconds).
fn assert_rpo(t: &TableReport, m: &Value) {
    let (newest, consistent) = (m["newest"].as_u64().unwrap(), m["consistent"].as_u64().unwrap());
    let time = |v: u64| m["times"][v.to_string()].as_i64().unwrap();
    assert_eq!(t.primary_version, Some(newest), "{t:?}");
    assert_eq!(t.replica_consistent_version, Some(consistent), "{t:?}");
    assert_eq!(t.versions_behind, Some(newest - consistent), "{t:?}");
    assert_eq!(t.rpo_seconds, Some((time(newest) - time(consistent)) / 1000), "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_replica_is_current() {
    let (t, m) = delta("complete").await;
    assert_rpo(&t, &m);
    assert_eq!((t.status, t.rpo_seconds), (Status::Current, Some(0)), "{t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_commit_stops_at_the_checkpoint_before_it() {
    let (t, m) = delta("missing_commit").await;
    assert_rpo(&t, &m);
    assert_eq!(t.status, Status::Behind);
    assert!(t.reason.contains("commit 5 is missing"), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_ahead_of_its_data_files_is_not_consistent() {
    let (t, m) = delta("data_ahead").await;
    assert_rpo(&t, &m);
    assert!(
        t.reason.contains("version 6 is not consistent: 1 live file(s) (data files and deletion vectors) missing"),
        "{}",
        t.reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incomplete_multi_part_checkpoint_named_by_the_hint_stops_readers_of_the_versions_it_serves() {
    // The replica's _last_checkpoint names 8, whose part 2 has not arrived: delta-kernel-rs fails for 8..=10 rather
    // than replay them from checkpoint 4 (it never falls back from a hint), so 7 is the newest a reader opens.
    let (t, m) = delta("incomplete_checkpoint").await;
    assert_rpo(&t, &m);
    assert!(t.reason.contains("checkpoint 8: 2 of 3 parts in the replica"), "{}", t.reason);
    assert!(t.reason.contains("versions 8..=10: the replica's _last_checkpoint names version 8"), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_multi_part_checkpoint_in_snappy_is_a_base() {
    let (t, m) = delta("multipart").await;
    assert_rpo(&t, &m);
    assert_eq!(t.status, Status::Behind);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_vector_counts_as_a_file_of_its_commit() {
    let (t, m) = delta("dv_whole").await;
    assert_rpo(&t, &m);
    assert_eq!(t.status, Status::Current, "{t:?}");
    let (t, m) = delta("dv_late").await;
    assert_rpo(&t, &m);
    let dv = m["dv_file"].as_str().unwrap();
    assert!(t.reason.contains("version 4 is not consistent: 1 live file(s)") && t.reason.contains(dv), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_deleted_twice_with_deletion_vectors_and_checkpointed_as_spark_does_needs_its_newest_vector() {
    // The replica lacks only DV2's file. Replayed in row order, the checkpoint's tombstone (a, DV1) after the live
    // (a, DV2) dropped `a`, and the replica was certified current.
    let (t, m) = delta("dv_twice").await;
    assert_rpo(&t, &m);
    assert_eq!(t.status, Status::Behind, "{t:?}");
    let dv = m["dv_file"].as_str().unwrap();
    assert!(t.reason.contains("version 5 is not consistent: 1 live file(s)") && t.reason.contains(dv), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_checkpoint_in_parquet_or_json_with_its_sidecars_is_a_base() {
    // The replica's log starts at commit 5: version 8 can only come from the v2 checkpoint and its sidecars.
    for case in ["v2_checkpoint", "v2_json_checkpoint"] {
        let (t, m) = delta(case).await;
        assert_rpo(&t, &m);
        assert_eq!(t.status, Status::Behind, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_named_only_in_a_v2_sidecar_and_missing_in_the_replica_leaves_no_consistent_version() {
    // Proves the sidecars are read: without their add actions, version 8 would look consistent.
    let (t, m) = delta("v2_file_late").await;
    assert_eq!(t.primary_version, m["newest"].as_u64(), "{t:?}");
    assert_eq!((t.replica_consistent_version, t.rpo_seconds), (None, None), "{t:?}");
    let late = m["late"][0].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert!(t.reason.contains("missing in the replica") && t.reason.contains(&late), "{late}: {}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_checkpoint_missing_a_sidecar_caps_the_consistent_version_before_it() {
    // A reader of 8..=10 starts from the v2 checkpoint and fails on its sidecar: those versions are never certified
    // from the older checkpoint (the assessment used to say 10).
    let (t, m) = delta("v2_missing_sidecar").await;
    assert_rpo(&t, &m);
    assert!(t.reason.contains("versions 8..=10: checkpoint 8: its sidecar"), "{}", t.reason);
    assert!(t.reason.contains("is missing in the replica: a reader of them fails"), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_commit_timestamps_give_the_rpo() {
    let (t, m) = delta("ict").await;
    assert_rpo(&t, &m);
    // 1_700_000_000_000 + v * 60 s: commits 5 and 3 are two minutes apart by their in-commit timestamps.
    assert_eq!(t.rpo_seconds, Some(120));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_managed_table_cannot_be_certified() {
    let (t, _) = delta("catalog_managed").await;
    assert_eq!((t.status, t.rpo_seconds), (Status::CannotBeCertified, None), "{t:?}");
    assert!(t.reason.contains("the table has the catalogManaged feature") && t.reason.contains("cannot certify"), "{}", t.reason);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_ahead_of_its_sink_is_rolled_back_to_the_sink() {
    let w = world().await;
    let a = run(vec![
        location(w, "sink", "delta", "tables/stream_sink", None),
        location(w, "stream", "stream-checkpoint", "checkpoints/stream", Some("sink")),
    ])
    .await;
    let (sink, stream) = (&a.tables[0], &a.tables[1]);
    let m = &w.manifest["stream"];
    assert_eq!(sink.replica_consistent_version, Some(3), "{sink:?}");
    assert_eq!(stream.status, Status::Unsafe, "{stream:?}");
    assert_eq!(stream.details["checkpoint_batch"], 5);
    assert_eq!(stream.details["sink_batch"], 3);
    assert_eq!(stream.details["roll_back_to_batch"], 3);
    assert_eq!(stream.details["query_id"], m["query_id"]);
    assert!(stream.reason.contains("skip batches 4..=5"), "{}", stream.reason);
    let w = a.workload();
    assert_eq!(w.unsafe_streams, ["stream"]);
    assert_eq!(w.worst_table.as_deref(), Some("sink"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_reports_its_missing_objects() {
    let w = world().await;
    let a = run(vec![location(w, "artifacts", "prefix", "artifacts", None)]).await;
    let t = &a.tables[0];
    assert_eq!(t.status, Status::Behind, "{t:?}");
    assert_eq!(t.details["missing_objects"], 2);
    assert_eq!(t.details["missing_examples"], serde_json::json!(["run-1.bin", "run-3.bin"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_primary_gives_unknown_and_a_deadline_gives_still_computing() {
    let w = world().await;
    let mut l = location(w, "gone", "delta", "tables/complete", None);
    l["primary"] = "s3://dl-no-such-bucket-x/tables/complete".into();
    let a = run(vec![l]).await;
    assert_eq!((a.tables[0].status, a.tables[0].rpo_seconds), (Status::Unknown, None), "{:?}", a.tables[0]);
    assert_eq!(a.tables[0].replica_consistent_version, Some(6));
    assert!(a.workload().summary.starts_with("workload RPO unknown"));

    let plane = DataPlane::parse(
        "d",
        &serde_json::json!({ "locations": [location(w, "complete", "delta", "tables/complete", None)] }).to_string(),
    )
    .unwrap();
    let data = aws::data_buckets::S3DataBuckets::new(s3().await);
    let limits = DeltaLimits { deadline: std::time::Duration::from_millis(1), ..DeltaLimits::default() };
    let a = assess(&data, &plane, &limits, time::OffsetDateTime::now_utc()).await;
    assert!(!a.complete);
    assert_eq!(a.tables[0].status, Status::StillComputing);
    assert_eq!(a.workload().state, "still-computing");
}

/// Through the built binaries, as Lambda runs them: an alarm in approval mode prepares a failover whose page
/// carries the workload RPO (the worst table's) before anyone approves; `status` shows the latest assessment;
/// the approved failover's page and report carry it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_page_status_and_the_report_carry_the_workload_rpo() {
    use serde_json::json;
    use tests::runtime_api::Function;
    let w = world().await;
    let env = tests::dr_env::DrEnv::seed(&tests::moto::shared().endpoint).await;
    let locations = vec![
        location(w, "complete", "delta", "tables/complete", None),
        location(w, "missing_commit", "delta", "tables/missing_commit", None),
    ];
    env.put("data-plane", &json!({ "locations": locations })).await;
    env.put(
        "policy",
        &json!({"mode": "approval", "failover_alarms": ["databricks-prod-workspace-unhealthy"], "cooldown_minutes": 0}),
    )
    .await;
    let m = &w.manifest["missing_commit"];
    let time = |v: &Value| m["times"][v.as_u64().unwrap().to_string()].as_i64().unwrap();
    let rpo = (time(&m["newest"]) - time(&m["consistent"])) / 1000;
    let behind = m["newest"].as_u64().unwrap() - m["consistent"].as_u64().unwrap();
    let expected = format!("workload RPO {rpo} s, {behind} versions behind (worst table missing_commit)");

    let vars = env.function_env();
    let mut health = Function::start("health-alarm", &vars);
    let r = health.invoke(&tests::fixture("health-alarm", "eventbridge-metric-alarm.json")).response();
    assert_eq!(r["outcome"], "awaiting_approval", "{r:#}\n{}", health.logs());
    let pages = env.pages().await;
    let reason = |p: &Value| {
        let m: Value = serde_json::from_str(p["Message"].as_str().unwrap()).unwrap();
        m["NewStateReason"].as_str().unwrap().to_owned()
    };
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert!(reason(&pages[0]).contains(&expected), "the approval page: {}", reason(&pages[0]));

    let mut manual = Function::start("manual-trigger", &vars);
    let s = manual.invoke(&json!({"command": "status"})).response();
    assert_eq!(s["delta_rpo"]["workload"]["summary"], expected, "{:#}", s["delta_rpo"]);

    let id = r["execution_id"].as_str().unwrap();
    let a = manual.invoke(&json!({"command": "approve", "execution_id": id, "requested_by": "oncall@example.com"})).response();
    assert_eq!(a["outcome"], "completed", "{a:#}\n{}", manual.logs());
    let report = String::from_utf8(env.object(&format!("reports/{id}.md")).await.unwrap()).unwrap();
    assert!(report.contains(&format!("- RPO estimate: {expected}")), "{report}");
}
