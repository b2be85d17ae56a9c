use super::*;
use crate::export::{ExportLimits, export_site};
use domain::site::SiteConfig;
use dr_ports::memory::{MemBucket, MemQueue};
use dr_ports::{ApiError, WorkspaceApi, WorkspaceConnector};
use futures_util::future::BoxFuture;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-05 09:00 UTC);

/// A small workspace: three jobs, one cluster, two catalogs of one schema and two tables each; every call takes
/// `delay` (of tokio's clock: the tests run it paused).
struct Fake {
    answers: BTreeMap<String, Value>,
    delay: std::time::Duration,
    calls: AtomicU32,
}

impl Fake {
    fn new(delay_ms: u64) -> Fake {
        let mut a = BTreeMap::new();
        a.insert("/api/2.1/unity-catalog/metastore_summary".to_owned(), json!({"metastore_id": "m1"}));
        a.insert(
            "/api/2.2/jobs/list?expand_tasks=true".to_owned(),
            json!({ "jobs": ([1, 2, 3].map(|i| json!({"job_id": i, "settings": {"name": format!("job-{i}")}}))) }),
        );
        a.insert("/api/2.1/clusters/list".to_owned(), json!({"clusters": [{"cluster_id": "c1", "cluster_name": "shared"}]}));
        a.insert("/api/2.1/unity-catalog/catalogs".to_owned(), json!({"catalogs": [{"name": "main"}, {"name": "dev"}]}));
        for c in ["main", "dev"] {
            a.insert(
                format!("/api/2.1/unity-catalog/schemas?catalog_name={c}"),
                json!({"schemas": [{"name": "s", "catalog_name": c, "full_name": format!("{c}.s")}]}),
            );
            let tables: Vec<Value> = ["b", "a"]
                .iter()
                .map(|t| json!({"name": t, "catalog_name": c, "schema_name": "s", "full_name": format!("{c}.s.{t}")}))
                .collect();
            a.insert(
                format!("/api/2.1/unity-catalog/tables?catalog_name={c}&schema_name=s&omit_columns=true"),
                json!({ "tables": tables }),
            );
            a.insert(
                format!("/api/2.1/unity-catalog/permissions/catalog/{c}"),
                json!({"privilege_assignments": [{"principal": "eng", "privileges": ["USE_CATALOG"]}]}),
            );
        }
        for i in 1..=3 {
            a.insert(
                format!("/api/2.0/permissions/jobs/{i}"),
                json!({"access_control_list": [{"user_name": format!("u{i}"), "all_permissions": [{"permission_level": "CAN_VIEW"}]}]}),
            );
        }
        Fake { answers: a, delay: std::time::Duration::from_millis(delay_ms), calls: AtomicU32::new(0) }
    }
}

impl WorkspaceApi for Fake {
    fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let q: Vec<String> = query
                .iter()
                .filter(|(k, _)| !matches!(*k, "limit" | "page_size" | "max_results"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let key = if q.is_empty() { path.to_owned() } else { format!("{path}?{}", q.join("&")) };
            Ok(self.answers.get(&key).cloned().unwrap_or(json!({})))
        })
    }
    fn post<'a>(&'a self, _: &'a str, _: &'a Value, _: dr_ports::Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async { Ok(json!({})) })
    }
}

struct Conn(Arc<Fake>);

impl WorkspaceConnector for Conn {
    fn connect(&self, _: SiteName, _: &SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        Ok(self.0.clone())
    }
}

fn site() -> (SiteName, SiteConfig) {
    let doc = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","token_parameter":"/dr/x/secrets/p"}"#;
    (SiteName::Primary, SiteConfig::parse("primary", doc).unwrap())
}

const FOLDER: &str = "snapshots/2026-01-05T09-00-00Z";

async fn new_run(bucket: &MemBucket) -> String {
    let sites = BTreeMap::from([(SiteName::Primary, "https://p.cloud.databricks.com".to_owned())]);
    create(bucket, &RunState::new("run-1", FOLDER, T0, vec![json!({"name": "parameters.json"})], sites)).await.unwrap()
}

struct World {
    bucket: MemBucket,
    queue: Arc<MemQueue>,
    conn: Conn,
    sites: Vec<(SiteName, SiteConfig)>,
    clock: Arc<Mutex<OffsetDateTime>>,
    carrier: Carrier,
}

impl World {
    fn new(delay_ms: u64, budget_ms: u64) -> World {
        let queue = Arc::new(MemQueue::default());
        let carrier = Carrier { queue: queue.clone(), budget: std::time::Duration::from_millis(budget_ms), part_size: 2 };
        World {
            bucket: MemBucket::default(),
            queue,
            conn: Conn(Arc::new(Fake::new(delay_ms))),
            sites: vec![site()],
            clock: Arc::new(Mutex::new(T0)),
            carrier,
        }
    }

    /// One invocation's drive, named `holder` (a message's when `first` is given).
    async fn drive(&self, key: &str, first: Option<&str>, holder: &str) -> Driven {
        self.drive_as(key, first, holder, first.is_some()).await
    }

    async fn drive_as(&self, key: &str, first: Option<&str>, holder: &str, from_message: bool) -> Driven {
        let clock = self.clock.clone();
        let now = move || *clock.lock().unwrap();
        let cx = Context {
            bucket: &self.bucket,
            connector: &self.conn,
            sites: &self.sites,
            limits: ExportLimits { concurrency: 4, deadline: std::time::Duration::from_secs(30), page_size: 100 },
            carrier: &self.carrier,
            now: &now,
            holder: holder.to_owned(),
            started: tokio::time::Instant::now(),
            from_message,
        };
        drive(&cx, key, first).await.unwrap()
    }
}

fn done(kinds: &[ObjectKind]) -> PartDone {
    let kinds = kinds.iter().map(|k| (*k, KindSummary { status: ExportStatus::Complete, count: 1 })).collect();
    PartDone {
        kinds,
        output: "out".into(),
        requests: 1,
        found: vec![("primary/catalog-main".into(), Part::new(SiteName::Primary, PartWork::Catalog { name: "main".into() }))],
    }
}

#[test]
fn a_duplicate_continuation_leaves_a_claimed_or_done_part_alone_and_adds_nothing_twice() {
    let mut s = RunState::new("r", FOLDER, T0, Vec::new(), BTreeMap::from([(SiteName::Primary, "u".to_owned())]));
    let lease = time::Duration::minutes(2);
    assert!(s.claim("primary/core", "a", T0, lease));
    assert!(!s.claim("primary/core", "b", T0, lease), "the duplicate finds it running");
    assert!(s.finish("primary/core", "a", done(&[ObjectKind::Jobs])));
    assert!(!s.claim("primary/core", "b", T0 + time::Duration::hours(1), lease), "done is done, lease or not");
    let before = s.clone();
    assert!(!s.finish("primary/core", "a", done(&[ObjectKind::Jobs])), "a second finish is refused");
    assert_eq!(s, before);
    assert_eq!(s.parts.len(), 2, "the catalog it found, once");
    assert_eq!(s.parts["primary/core"].attempts, 1);
    assert_eq!(s.kinds(SiteName::Primary)[&ObjectKind::Jobs].count, 1);
    assert!(!s.all_done());
}

#[test]
fn a_part_whose_invocation_died_is_taken_again_after_its_lease_and_the_late_finish_is_refused() {
    let mut s = RunState::new("r", FOLDER, T0, Vec::new(), BTreeMap::from([(SiteName::Primary, "u".to_owned())]));
    let lease = time::Duration::minutes(2);
    assert!(s.claim("primary/core", "dead", T0, lease));
    assert!(!s.claim("primary/core", "next", T0 + time::Duration::seconds(119), lease), "the lease still holds");
    assert!(s.claim("primary/core", "next", T0 + time::Duration::seconds(121), lease), "lapsed: taken again");
    assert_eq!(s.parts["primary/core"].attempts, 2);
    assert!(!s.finish("primary/core", "dead", done(&[ObjectKind::Jobs])), "the dead attempt's late finish");
    assert!(!s.release("primary/core", "dead"));
    assert!(s.finish("primary/core", "next", done(&[ObjectKind::Clusters])));
    assert!(s.parts["primary/core"].kinds.contains_key(&ObjectKind::Clusters), "the live attempt's record is kept");
    // A part not yet posted is posted once, and again only when a lease has passed without anyone taking it.
    assert_eq!(s.to_enqueue(T0, lease), ["primary/catalog-main"]);
    assert!(s.to_enqueue(T0 + time::Duration::seconds(60), lease).is_empty());
    assert_eq!(s.to_enqueue(T0 + time::Duration::seconds(121), lease), ["primary/catalog-main"]);
    assert!(
        s.claim("primary/catalog-main", "x", T0, lease)
            && s.finish("primary/catalog-main", "x", PartDone { found: Vec::new(), ..done(&[]) })
    );
    assert!(s.all_done());
    assert!(s.claim_merge("x", T0, lease));
    assert!(!s.claim_merge("y", T0, lease), "one merger at a time");
}

/// Every kind's objects of a snapshot file, each as its JSON text, sorted (parts may order grants differently).
async fn objects(bucket: &MemBucket, kind: ObjectKind) -> (Value, Vec<String>) {
    let v: Value = serde_json::from_str(&bucket.text(&format!("{FOLDER}/databricks/primary/{kind}.json")).unwrap()).unwrap();
    let mut o: Vec<String> = v["objects"].as_array().unwrap().iter().map(Value::to_string).collect();
    o.sort();
    (v["status"].clone(), o)
}

#[tokio::test(start_paused = true)]
async fn an_export_carried_over_invocations_ends_equal_to_one_invocations_and_writes_the_same_files() {
    let w = World::new(100, 1000);
    let one = export_site(w.conn.0.as_ref(), ExportLimits::default()).await;
    let key = new_run(&w.bucket).await;
    let mut messages = vec![None];
    let mut invocations = 0;
    let mut merged = false;
    while let Some(first) = messages.pop() {
        invocations += 1;
        let first: Option<String> = first;
        let d = w.drive(&key, first.as_deref(), &format!("inv-{invocations}")).await;
        merged |= d.merged;
        for body in w.queue.take() {
            let m: Value = serde_json::from_str(&body).unwrap();
            messages.insert(0, m["part"].as_str().map(str::to_owned));
        }
        assert!(invocations < 50, "no end");
    }
    assert!(merged, "{:#?}", read(&w.bucket, &key).await.unwrap());
    assert!(invocations >= 2, "a budget of 1 s at 100 ms a call cannot hold it all: {invocations}");
    let (state, _) = read(&w.bucket, &key).await.unwrap().unwrap();
    assert!(state.parts.len() > 4, "{:?}", state.parts.keys().collect::<Vec<_>>());
    assert!(state.parts.values().all(|p| p.attempts >= 1 && p.stage == Stage::Done));
    for k in &one.kinds {
        let (status, got) = objects(&w.bucket, k.kind).await;
        let mut want: Vec<String> = k.objects.iter().map(Value::to_string).collect();
        want.sort();
        assert_eq!(got, want, "{}", k.kind);
        assert_eq!(status, "complete", "{}", k.kind);
    }
    // The tables in full_name order, as one invocation writes them.
    let tables: Value =
        serde_json::from_str(&w.bucket.text(&format!("{FOLDER}/databricks/primary/tables.json")).unwrap()).unwrap();
    let names: Vec<&str> = tables["objects"].as_array().unwrap().iter().map(|t| t["full_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev.s.a", "dev.s.b", "main.s.a", "main.s.b"]);
    // The manifest: the other files, every kind's file with its digest, the drift; the pointer; no part left.
    let manifest: Value = serde_json::from_str(&w.bucket.text(&format!("{FOLDER}/manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 1 + ObjectKind::ALL.len() + 1);
    assert_eq!(files[0]["name"], "parameters.json");
    assert_eq!(files.last().unwrap()["name"], "databricks/drift.json");
    assert!(w.bucket.text(&domain::layout::databricks_latest(SiteName::Primary)).unwrap().contains(FOLDER));
    assert!(w.bucket.keys().iter().all(|k| !k.contains("/databricks/parts/")), "parts cleaned up");
    // status: finished, every part done, the invocations counted.
    let progress: Value =
        serde_json::from_str(&w.bucket.text(&domain::layout::databricks_export_progress(SiteName::Primary)).unwrap()).unwrap();
    assert_eq!(progress["state"], "finished");
    assert_eq!(progress["invocations"], state.invocations, "the invocations that worked on it");
    assert!(state.invocations >= 2);
    assert_eq!(progress["parts"]["pending"], 0);
    assert_eq!(progress["parts"]["done"].as_u64().unwrap() as usize, state.parts.len());
}

#[tokio::test(start_paused = true)]
async fn concurrent_and_duplicate_continuations_run_each_part_once_and_merge_once() {
    let w = World::new(100, 1000);
    let key = new_run(&w.bucket).await;
    w.drive(&key, None, "first").await;
    let posted: Vec<Option<String>> =
        w.queue.take().iter().map(|b| serde_json::from_str::<Value>(b).unwrap()["part"].as_str().map(str::to_owned)).collect();
    assert!(!posted.is_empty());
    // Every continuation delivered twice, all at once, to as many invocations.
    let calls_before = w.conn.0.calls.load(Ordering::SeqCst);
    let drives = posted.iter().chain(posted.iter()).enumerate().map(|(i, p)| {
        let holder = format!("c{i}");
        let w = &w;
        let key = key.clone();
        async move { w.drive(&key, p.as_deref(), &holder).await }
    });
    let results = futures_util::future::join_all(drives).await;
    // What is still pending (the budget) goes on until the end, one invocation at a time.
    let mut rounds = 0;
    while read(&w.bucket, &key).await.unwrap().unwrap().0.manifest_key.is_none() {
        w.queue.take();
        w.drive(&key, None, &format!("r{rounds}")).await;
        rounds += 1;
        assert!(rounds < 20);
    }
    let (state, _) = read(&w.bucket, &key).await.unwrap().unwrap();
    assert!(state.parts.values().all(|p| p.attempts == 1), "no part ran twice: {:?}", state.parts);
    assert!(results.iter().filter(|d| d.merged).count() <= 1);
    // Each part's calls once: the job ACLs were read once each.
    let one = Fake::new(0);
    let calls = w.conn.0.calls.load(Ordering::SeqCst) - calls_before;
    assert!(calls < 40, "{calls} calls after the core: duplicates called nothing ({})", one.answers.len());
    let (_, perms) = objects(&w.bucket, ObjectKind::Permissions).await;
    assert_eq!(perms.len(), 4, "3 jobs and 1 cluster, once each");
}

#[tokio::test(start_paused = true)]
async fn a_part_cut_short_by_the_deadline_is_put_back_and_runs_whole_in_the_next_invocation() {
    // 400 ms a call, a budget of 1 s: the core (a probe, then listings two or three deep) cannot finish.
    let w = World::new(400, 1000);
    let key = new_run(&w.bucket).await;
    let d = w.drive(&key, None, "a").await;
    assert_eq!(d.finished, 0);
    assert_eq!(d.state.parts["primary/core"].stage, Stage::Pending, "put back, not kept partial");
    assert_eq!(w.queue.take().len(), 1, "its continuation posted");
    // Three attempts at most: the third keeps what it read, partial.
    w.drive(&key, Some("primary/core"), "b").await;
    let d = w.drive(&key, Some("primary/core"), "c").await;
    let core = &d.state.parts["primary/core"];
    assert_eq!((core.attempts, &core.stage), (MAX_ATTEMPTS, &Stage::Done));
    assert!(core.kinds.values().any(|k| matches!(&k.status, ExportStatus::Partial { error } if error.contains("deadline"))));
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_invocation_that_dies_mid_part_is_taken_over_by_its_delayed_guard_after_the_lease() {
    let w = World::new(100, 1000);
    let key = new_run(&w.bucket).await;
    // The snapshot's invocation (no message behind it) dies 250 ms in: the core claimed, not finished.
    let died = tokio::time::timeout(std::time::Duration::from_millis(250), w.drive_as(&key, None, "snapshot", false)).await;
    assert!(died.is_err());
    let (state, _) = read(&w.bucket, &key).await.unwrap().unwrap();
    assert!(matches!(&state.parts["primary/core"].stage, Stage::Running { holder, .. } if holder == "snapshot"));
    assert!(w.queue.take().is_empty(), "nothing posted at once");
    let guards = std::mem::take(&mut *w.queue.delayed.lock().unwrap());
    assert_eq!(guards.len(), 1, "one guard for its claim");
    assert!(guards[0].1 > 120, "delivered after the lease: {}", guards[0].1);
    // The guard comes when the lease has lapsed: it takes the core over, and the export goes on to the end.
    *w.clock.lock().unwrap() += time::Duration::seconds(i64::from(guards[0].1));
    let mut messages = vec![None];
    let mut n = 0;
    while let Some(first) = messages.pop() {
        n += 1;
        let first: Option<String> = first;
        w.drive_as(&key, first.as_deref(), &format!("m{n}"), true).await;
        for body in w.queue.take() {
            messages.insert(0, serde_json::from_str::<Value>(&body).unwrap()["part"].as_str().map(str::to_owned));
        }
        assert!(n < 50);
    }
    let (state, _) = read(&w.bucket, &key).await.unwrap().unwrap();
    assert!(state.manifest_key.is_some(), "{state:#?}");
    assert_eq!(state.parts["primary/core"].attempts, 2, "the dead claim, then the guard's");
    assert!(w.queue.delayed.lock().unwrap().is_empty(), "continuations of messages need no guard");
}
