//! Benchmark: the Delta replica assessment (`dr_delta::assess` through `aws::data_buckets::S3DataBuckets`)
//! of one real Delta table of 1,000 commits and 10,000 data files (10 per commit; classic checkpoints: delta-rs's
//! own every 100 commits, so one at the newest version, and the script's at the middle one), written by delta-rs
//! into moto by `tests/delta/make_tables.py --bench` and copied whole into the replica; and of a second replica
//! of it without the checkpoints after the middle version (`replay`: the commits after it are read). Prints,
//! per run: the wall time, the commits (versions) and checkpoint parts read, the objects
//! listed, and the growth of this bench process's peak RSS during the assessment (`VmHWM` reset through
//! `/proc/self/clear_refs` before each run); then whether the default deadline (`DeltaLimits::default()`, 3 s)
//! is enough; then, with the built `manual-trigger`, a `snapshot` whose data plane names the table.
//!
//! `cargo bench -p tests --bench delta` (`DR_FUNCTION_BIN_DIR=$PWD/target/release` for the release
//! `manual-trigger`; without a `manual-trigger` binary that part is skipped). `BENCH_RUNS` (default 3),
//! `BENCH_COMMITS` (1000), `BENCH_FILES` (10000). Writing the table takes minutes: `BENCH_DELTA_ENDPOINT` (a
//! moto already running) with `BENCH_DELTA_BUCKETS=PRIMARY,REPLICA` assesses one written there before by
//! `make_tables.py PRIMARY REPLICA --bench COMMITS FILES` (or any Delta table under `bench/big/` in both buckets
//! whose newest version is BENCH_COMMITS - 1, e.g. `scripts/bench-delta-big`'s). `BENCH_REPLAY=0` skips the replay
//! variant (its server-side copy assumes make_tables.py's table); `BENCH_TRIGGER=0` skips the `manual-trigger` part.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use domain::data_plane::DataPlane;
use dr_delta::{DeltaLimits, assess};
use dr_ports::error::StoreError;
use dr_ports::{DataBuckets, ListPage, NotificationTarget, ReplicationRule, Versioning};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tests::dr_env::DrEnv;
use tests::median;
use tests::moto;
use tests::runtime_api::{Function, bin_dir};

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmHWM` or `VmRSS` of this process, KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Counts what the assessment asks of S3.
#[derive(Default)]
struct Counts {
    pages: AtomicU64,
    listed: AtomicU64,
    commits: AtomicU64,
    checkpoints: AtomicU64,
    other_gets: AtomicU64,
    heads: AtomicU64,
    bytes: AtomicU64,
}

struct Counting<D> {
    inner: D,
    n: Counts,
}

impl<D> Counting<D> {
    /// Counts one listing page (plain or delimited) and its keys.
    fn counted(&self, p: ListPage) -> ListPage {
        self.n.pages.fetch_add(1, Relaxed);
        self.n.listed.fetch_add(p.objects.len() as u64, Relaxed);
        p
    }
}

impl<D: DataBuckets> DataBuckets for Counting<D> {
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        Ok(self.counted(self.inner.list_page(bucket, prefix, start_after, token, max_keys).await?))
    }

    async fn list_dir_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        Ok(self.counted(self.inner.list_dir_page(bucket, prefix, start_after, token, max_keys).await?))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<dr_ports::DataObject>, StoreError> {
        self.n.heads.fetch_add(1, Relaxed);
        self.inner.head(bucket, key).await
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.inner.get(bucket, key, range).await?;
        let counter = if key.contains("/_delta_log/") && key.ends_with(".json") {
            &self.n.commits
        } else if key.contains(".checkpoint.") {
            &self.n.checkpoints
        } else {
            &self.n.other_gets
        };
        counter.fetch_add(1, Relaxed);
        self.n.bytes.fetch_add(r.as_ref().map_or(0, |b| b.len() as u64), Relaxed);
        Ok(r)
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        self.inner.versioning(bucket).await
    }

    async fn replication(&self, bucket: &str) -> Result<Vec<ReplicationRule>, StoreError> {
        self.inner.replication(bucket).await
    }

    async fn notifications(&self, bucket: &str) -> Result<Vec<NotificationTarget>, StoreError> {
        self.inner.notifications(bucket).await
    }
}

async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = tests::dr_env::sdk_config(endpoint).await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
}

#[tokio::main]
async fn main() {
    let (runs, commits, files) = (var("BENCH_RUNS", 3), var("BENCH_COMMITS", 1000), var("BENCH_FILES", 10_000));
    // BENCH_DELTA_ENDPOINT with BENCH_DELTA_BUCKETS=PRIMARY,REPLICA: a table written before by make_tables.py
    // --bench into that moto (writing 1,000 commits takes minutes); otherwise written here.
    let reuse = std::env::var("BENCH_DELTA_ENDPOINT").ok().zip(std::env::var("BENCH_DELTA_BUCKETS").ok());
    let endpoint = match &reuse {
        Some((e, _)) => e.clone(),
        None => moto::shared().endpoint.clone(),
    };
    let client = s3(&endpoint).await;
    let made = Instant::now();
    let (primary, replica, manifest) = if let Some((_, buckets)) = &reuse {
        let (p, r) = buckets.split_once(',').expect("BENCH_DELTA_BUCKETS=PRIMARY,REPLICA");
        let m = json!({"bench": {"prefix": "bench/big", "newest": commits - 1}});
        (p.to_owned(), r.to_owned(), m)
    } else {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (primary, replica) = (format!("dlb-p-{}", &id[..12]), format!("dlb-r-{}", &id[..12]));
        let region = aws_sdk_s3::types::BucketLocationConstraint::from(tests::dr_env::REGION);
        let at = aws_sdk_s3::types::CreateBucketConfiguration::builder().location_constraint(region).build();
        for b in [&primary, &replica] {
            client.create_bucket().bucket(b).create_bucket_configuration(at.clone()).send().await.unwrap();
        }
        // The table: make_tables.py's bench mode (delta-rs writes it into the primary, then copies it whole).
        let out = Command::new(tests::delta::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/delta/make_tables.py"))
            .args([primary.as_str(), replica.as_str(), "--bench", &commits.to_string(), &files.to_string()])
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", tests::dr_env::REGION)
            .output()
            .unwrap();
        assert!(out.status.success(), "make_tables.py: {}", String::from_utf8_lossy(&out.stderr));
        let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
        (primary, replica, manifest)
    };
    let prefix = manifest["bench"]["prefix"].as_str().unwrap().to_owned();
    let newest = manifest["bench"]["newest"].as_u64().unwrap();
    let objects = keys_under(&client, &replica, &prefix).await.len();
    let how = match &reuse {
        Some(_) => "written before (BENCH_DELTA_ENDPOINT)".to_owned(),
        None => format!("written and copied in {:.0} s", made.elapsed().as_secs_f64()),
    };
    let replay_on = var("BENCH_REPLAY", 1) != 0;
    if reuse.is_some() {
        println!(
            "Delta table written before into {primary} and {replica} (BENCH_DELTA_ENDPOINT), newest version {newest} (BENCH_COMMITS - 1); {objects} objects in the replica under {prefix}/"
        );
    } else {
        println!(
            "Delta table of {commits} commits, {files} data files requested (make_tables.py --bench: {} per commit, one classic checkpoint at {}), newest version {newest}; {objects} objects in the replica under {prefix}/; {how}",
            (files / commits).max(1),
            commits / 2,
        );
    }

    // A second replica of the same table whose checkpoints after BENCH_REPLAY_BASE (500; make_tables.py's own
    // checkpoint) are absent, as if the writer checkpointed every 500 commits (delta-rs checkpoints every 100):
    // the assessment then replays the commits after the base. A server-side copy in the replica bucket.
    let base = var("BENCH_REPLAY_BASE", commits / 2) as u64;
    let replay = format!("bench/replay-{base}");
    let copied = Instant::now();
    let keys = keys_under(&client, &replica, &prefix).await;
    let late_checkpoint = |k: &str| {
        let name = k.rsplit('/').next().unwrap_or("");
        name == "_last_checkpoint" || (name.contains(".checkpoint.") && name[..20].parse::<u64>().is_ok_and(|v| v > base))
    };
    let keys: Vec<String> = keys.into_iter().filter(|k| !late_checkpoint(k)).collect();
    let exists = !replay_on
        || client
            .head_object()
            .bucket(&replica)
            .key(format!("{replay}/_delta_log/{:020}.json", commits - 1))
            .send()
            .await
            .is_ok();
    if !exists {
        for chunk in keys.chunks(64) {
            let mut set = tokio::task::JoinSet::new();
            for k in chunk {
                let (c, b, k, to) = (client.clone(), replica.clone(), k.clone(), k.replacen(&prefix, &replay, 1));
                set.spawn(
                    async move { c.copy_object().bucket(&b).key(to).copy_source(format!("{b}/{k}")).send().await.unwrap() },
                );
            }
            while set.join_next().await.is_some() {}
        }
    }
    if replay_on {
        println!(
            "replay variant: {} objects of the replica copied to {replay}/ without the checkpoints after {base} (newest checkpoint there: {base}) in {:.0} s",
            keys.len(),
            copied.elapsed().as_secs_f64()
        );
    } else {
        println!("replay variant: skipped (BENCH_REPLAY=0)");
    }

    let location = |name: &str, replica_prefix: &str| {
        json!({
            "name": name, "kind": "delta",
            "primary": format!("s3://{primary}/{prefix}"), "replica": format!("s3://{replica}/{replica_prefix}"),
        })
    };
    let plane_doc = json!({ "locations": [location("big", &prefix)] });
    let replay_doc = json!({ "locations": [location("replay", &replay)] });
    let variants: Vec<(&str, &Value)> =
        if replay_on { vec![("whole", &plane_doc), ("replay", &replay_doc)] } else { vec![("whole", &plane_doc)] };
    let data = Counting { inner: aws::data_buckets::S3DataBuckets::new(s3(&endpoint).await), n: Counts::default() };
    let generous = DeltaLimits { deadline: Duration::from_secs(120), ..DeltaLimits::default() };

    println!();
    println!("`dr_delta::assess` in this process (release build of the bench), deadline 120 s so the whole work is timed:");
    println!();
    println!(
        "| replica | run | wall ms | status | consistent version | commits read (GET) | checkpoint parts read | other GETs | HEADs | bytes read | list pages | objects listed | bench process peak RSS growth MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut medians = Vec::new();
    for &(label, doc) in &variants {
        let plane = DataPlane::parse("data-plane", &doc.to_string()).unwrap();
        let (mut wall, mut rss) = (Vec::new(), Vec::new());
        let mut reason = String::new();
        for run in 1..=runs {
            for c in [
                &data.n.pages,
                &data.n.listed,
                &data.n.commits,
                &data.n.checkpoints,
                &data.n.other_gets,
                &data.n.heads,
                &data.n.bytes,
            ] {
                c.store(0, Relaxed);
            }
            // Reset the peak to the current RSS (Linux: "5" > clear_refs), so each run's growth is its own.
            let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
            let before = if reset { status_kib("VmRSS:") } else { status_kib("VmHWM:") };
            let started = Instant::now();
            let a = assess(&data, &plane, &generous, time::OffsetDateTime::now_utc()).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let grew = status_kib("VmHWM:").saturating_sub(before) as f64 / 1024.0;
            let t = &a.tables[0];
            assert!(a.complete, "{t:?}");
            let n = &data.n;
            println!(
                "| {label} | {run} | {ms:.0} | {} | {:?} | {} | {} | {} | {} | {} | {} | {} | {grew:.1} |",
                serde_json::to_value(t.status).unwrap(),
                t.replica_consistent_version,
                n.commits.load(Relaxed),
                n.checkpoints.load(Relaxed),
                n.other_gets.load(Relaxed),
                n.heads.load(Relaxed),
                n.bytes.load(Relaxed),
                n.pages.load(Relaxed),
                n.listed.load(Relaxed),
            );
            reason.clone_from(&t.reason);
            wall.push(ms);
            rss.push(grew);
        }
        medians.push(format!(
            "{label}: assessment {:.0} ms, bench process peak RSS growth {:.1} MB (reason: {reason})",
            median(wall),
            median(rss)
        ));
    }
    println!();
    println!("medians (peak RSS: the bench process's VmHWM, not a Lambda's):");
    for m in &medians {
        println!("- {m}");
    }

    // The default deadline.
    for &(label, doc) in &variants {
        let plane = DataPlane::parse("data-plane", &doc.to_string()).unwrap();
        let d = DeltaLimits::default();
        let started = Instant::now();
        let a = assess(&data, &plane, &d, time::OffsetDateTime::now_utc()).await;
        println!(
            "{label}, DeltaLimits::default() (deadline {:?}): {} in {:.0} ms, status {}, consistent version {:?}{}",
            d.deadline,
            if a.complete { "complete" } else { "NOT complete" },
            started.elapsed().as_secs_f64() * 1000.0,
            serde_json::to_value(a.tables[0].status).unwrap(),
            a.tables[0].replica_consistent_version,
            if a.complete { "" } else { " (FINDING: the default deadline is not enough for this table)" }
        );
    }

    // Through the built manual-trigger: a snapshot whose data plane names the table.
    if var("BENCH_TRIGGER", 1) == 0 {
        println!("manual-trigger: skipped (BENCH_TRIGGER=0)");
        return;
    }
    if !bin_dir().join("manual-trigger").exists() {
        println!("manual-trigger: no binary in {}: skipped", bin_dir().display());
        return;
    }
    let env = DrEnv::seed(&endpoint).await;
    let vars = env.function_env();
    println!();
    println!("`manual-trigger` `snapshot` ({}), a cold process per run:", bin_dir().join("manual-trigger").display());
    println!();
    println!("| data plane | invocation ms | outcome | delta-tables.json complete | status | function peak RSS MB |");
    println!("|---|---|---|---|---|---|");
    for (label, doc) in [
        ("empty (baseline)", json!({ "locations": [] })),
        ("the table, whole", plane_doc.clone()),
        ("the table, replay", replay_doc.clone()),
    ] {
        env.put("data-plane", &doc).await;
        let mut f = Function::start("manual-trigger", &vars);
        let started = Instant::now();
        let r = f.invoke_with_timeout(&json!({"command": "snapshot"}), Duration::from_secs(180)).response();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let peak = f.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        let (complete, status) = match r["snapshot_manifest_key"].as_str() {
            Some(k) => {
                let key = k.replace("manifest.json", "delta-tables.json");
                let t = env.json(&key).await;
                (t["complete"].to_string(), t["tables"][0]["status"].to_string())
            }
            None => ("?".into(), "?".into()),
        };
        println!("| {label} | {ms:.0} | {} | {complete} | {status} | {peak:.1} |", r["outcome"]);
        if r["outcome"] != "completed" {
            println!("<!-- {r} -->");
        }
    }
}

/// Every key under `prefix/` in `bucket`, page by page.
async fn keys_under(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let r = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{prefix}/"))
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(r.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        token = r.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}
