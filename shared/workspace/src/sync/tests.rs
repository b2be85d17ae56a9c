use super::apply::{ApplyOptions, apply};
use super::journal::Status;
use super::*;
use domain::names::SsmPrefix;
use domain::site::SiteConfig;
use dr_ports::documents;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::memory::{FixedClock, MemBucket, MemParameters};
use dr_ports::memory_workspace::MemWorkspace as Ws;
use dr_ports::{ApiError, WorkspaceApi, WorkspaceConnector, WriteCondition};
use serde_json::json;
use std::sync::{Arc, Mutex};
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2026-12-07 12:00 UTC);

struct Connector {
    sites: BTreeMap<SiteName, Arc<Ws>>,
    connected: Mutex<Vec<SiteName>>,
}

impl WorkspaceConnector for Connector {
    fn connect(&self, site: SiteName, _: &SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        self.connected.lock().unwrap().push(site);
        Ok(self.sites[&site].clone())
    }
}

fn take_lock(bucket: &MemBucket) {
    let doc = LockDoc {
        execution_id: "failover-inc-1".into(),
        attempt_id: "a".into(),
        state: LockState::Running,
        acquired_at: "2026-12-07T12:00:00Z".into(),
        lease_expires_at: "2026-12-07T12:15:00Z".into(),
        holder: "test".into(),
    };
    let body = serde_json::to_vec(&doc).unwrap();
    futures_util::FutureExt::now_or_never(bucket.put(
        FAILOVER_LOCK_KEY_FOR_TESTS,
        body,
        "application/json",
        WriteCondition::Overwrite,
    ))
    .unwrap()
    .unwrap();
}

const FAILOVER_LOCK_KEY_FOR_TESTS: &str = dr_ports::lock::FAILOVER_LOCK_KEY;

/// Writes a site's export of the workspace `ws` as the latest (every kind complete).
async fn export(bucket: &MemBucket, site: SiteName, ws: &Ws, folder: &str) {
    let mut kinds = BTreeMap::new();
    for kind in READ {
        let objects = ws.list(kind);
        let body = json!({ "kind": kind, "status": "complete", "objects": objects });
        let key = format!("{folder}/{}", crate::kind_file(site, kind));
        bucket.put(&key, serde_json::to_vec(&body).unwrap(), "application/json", WriteCondition::Overwrite).await.unwrap();
        kinds.insert(kind, crate::KindSummary { status: crate::rules::ExportStatus::Complete, count: objects.len() });
    }
    let pointer = LatestExport {
        site,
        workspace_url: String::new(),
        snapshot_folder: folder.into(),
        exported_at: NOW,
        kinds,
        notebooks_outside_repos: 0,
        files_outside_repos: 0,
        requests: 0,
        elapsed_ms: 0,
    };
    let key = domain::layout::databricks_latest(site);
    bucket.put(&key, serde_json::to_vec(&pointer).unwrap(), "application/json", WriteCondition::Overwrite).await.unwrap();
}

fn primary_ws(jobs: usize) -> Ws {
    let ws = Ws::default();
    let mut o = ws.objects.lock().unwrap();
    o.insert(
        ObjectKind::InstancePools,
        vec![json!({"instance_pool_id": "p-pool", "instance_pool_name": "etl", "node_type_id": "i3.xlarge",
        "aws_attributes": {"zone_id": "us-east-1a"}, "state": "ACTIVE"})],
    );
    o.insert(
        ObjectKind::ClusterPolicies,
        vec![json!({"policy_id": "p-pol", "name": "small",
        "definition": "{\"instance_pool_id\":{\"type\":\"fixed\",\"value\":\"p-pool\"}}"})],
    );
    o.insert(ObjectKind::SqlWarehouses, vec![json!({"id": "p-wh", "name": "bi", "cluster_size": "Small", "state": "RUNNING"})]);
    let mut list: Vec<Value> = (0..jobs)
        .map(|i| {
            json!({"job_id": i, "settings": {"name": format!("job-{i:04}"), "schedule": {"quartz_cron_expression": "0 0 * * * ?",
            "timezone_id": "UTC", "pause_status": "UNPAUSED"}, "job_clusters": [{"job_cluster_key": "c",
            "new_cluster": {"policy_id": "p-pol", "instance_pool_id": "p-pool"}}],
            "tasks": [{"task_key": "t", "sql_task": {"warehouse_id": "p-wh", "file": {"path": "a.sql"}}}]}})
        })
        .collect();
    list.push(json!({"job_id": 9999, "settings": {"name": "blocked", "tasks": [{"task_key": "t", "pipeline_task": {"pipeline_id": "x"}}]}}));
    o.insert(ObjectKind::Jobs, list);
    drop(o);
    ws
}

struct Env {
    bucket: &'static MemBucket,
    docs: DrDocuments,
    primary: Arc<Ws>,
    secondary: Arc<Ws>,
    connector: Connector,
    clock: FixedClock,
}

async fn env(jobs: usize) -> Env {
    let params = MemParameters::default();
    let p = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","activation":{"job_tag":"dr=standby"}}"#;
    let s = r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2","sync":{"zone_ids":{"us-east-1a":"us-west-2a"}}}"#;
    params.seed("/dr/p/sites/primary", p, "String");
    params.seed("/dr/p/sites/secondary", s, "String");
    let mut active: Value = serde_json::from_str(p).unwrap();
    active["site"] = json!("primary");
    params.seed("/dr/p/active", &active.to_string(), "String");
    let docs = documents::load(&params, &SsmPrefix::parse("/dr/p").unwrap()).await.unwrap();
    let bucket: &'static MemBucket = Box::leak(Box::default());
    let (primary, secondary) = (Arc::new(primary_ws(jobs)), Arc::new(Ws::default()));
    export(bucket, SiteName::Primary, &primary, "snapshots/1").await;
    export(bucket, SiteName::Secondary, &secondary, "snapshots/1").await;
    let sites = BTreeMap::from([(SiteName::Primary, primary.clone()), (SiteName::Secondary, secondary.clone())]);
    Env {
        bucket,
        docs,
        primary,
        secondary,
        connector: Connector { sites, connected: Mutex::new(vec![]) },
        clock: FixedClock::at(NOW),
    }
}

impl Env {
    async fn apply(&self, prune: bool) -> Journal {
        let prepared = prepare(self.bucket, &self.docs).await.unwrap();
        let opts = ApplyOptions { prune, requested_by: "me".into(), kinds: None };
        apply(self.bucket, &self.connector, &self.docs, &prepared, &opts, &self.clock).await.unwrap()
    }

    async fn reexport(&self, n: u32) {
        export(self.bucket, SiteName::Secondary, &self.secondary, &format!("snapshots/{n}")).await;
    }
}

use super::journal::Journal;

#[tokio::test]
async fn an_apply_creates_everything_mapped_paused_and_stopped_and_the_next_plan_is_empty_but_the_blocked() {
    let e = env(3).await;
    let before = prepare(e.bucket, &e.docs).await.unwrap();
    assert_eq!(before.plan.counts(), BTreeMap::from([("create", 6), ("blocked", 1)]), "{:#?}", before.plan);
    let j = e.apply(false).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    assert_eq!(*e.connector.connected.lock().unwrap(), [SiteName::Secondary], "never the active site");
    assert!(e.primary.calls.lock().unwrap().is_empty());
    let jobs = e.secondary.list(ObjectKind::Jobs);
    assert_eq!(jobs.len(), 3);
    let pool = &e.secondary.list(ObjectKind::InstancePools)[0];
    assert_eq!(pool["aws_attributes"]["zone_id"], "us-west-2a");
    let policy = &e.secondary.list(ObjectKind::ClusterPolicies)[0];
    assert!(policy["definition"].as_str().unwrap().contains(pool["instance_pool_id"].as_str().unwrap()), "{policy}");
    let s = &jobs[0]["settings"];
    assert_eq!(s["schedule"]["pause_status"], "PAUSED");
    assert_eq!(s["tags"]["dr"], "standby");
    assert_eq!(s["job_clusters"][0]["new_cluster"]["instance_pool_id"], pool["instance_pool_id"]);
    assert_eq!(s["job_clusters"][0]["new_cluster"]["policy_id"], policy["policy_id"]);
    assert_eq!(s["tasks"][0]["sql_task"]["warehouse_id"], e.secondary.list(ObjectKind::SqlWarehouses)[0]["id"]);
    assert_eq!(e.secondary.list(ObjectKind::SqlWarehouses)[0]["state"], "STOPPED", "created, then stopped");
    let latest = e.bucket.text(domain::layout::DATABRICKS_SYNC_LATEST).unwrap();
    assert!(latest.contains(&j.plan_id));
    e.reexport(2).await;
    let after = prepare(e.bucket, &e.docs).await.unwrap();
    assert_eq!(after.plan.counts(), BTreeMap::from([("blocked", 1)]), "{:#?}", after.plan);
    let calls = e.secondary.calls.lock().unwrap().len();
    let again = e.apply(false).await;
    assert_eq!(again.outcome.as_deref(), Some("complete"));
    assert_eq!(e.secondary.calls.lock().unwrap().len(), calls, "a second apply makes no call");
}

#[tokio::test]
async fn an_apply_run_again_after_a_lost_answer_creates_each_job_once() {
    let e = env(3).await;
    e.secondary.lose_answer_of.lock().unwrap().push("job-0001".into());
    let first = e.apply(false).await;
    assert!(first.outcome.as_deref().unwrap().starts_with("incomplete: 1"), "{first:#?}");
    let failed = first.entries.iter().find(|x| x.name == "job-0001").unwrap();
    assert_eq!(failed.status, Status::Failed);
    // Run again on the same exports: the same plan, its journal resumed; the job is found, not created again.
    let second = e.apply(false).await;
    assert_eq!(second.plan_id, first.plan_id);
    assert_eq!(second.outcome.as_deref(), Some("complete"), "{second:#?}");
    assert_eq!(second.entries.iter().find(|x| x.name == "job-0001").unwrap().status, Status::Found);
    let names: Vec<Value> = e.secondary.list(ObjectKind::Jobs).iter().map(|j| j["settings"]["name"].clone()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[tokio::test]
async fn an_apply_stands_down_when_a_failover_takes_the_lock() {
    let e = env(40).await;
    *e.secondary.after_creates.lock().unwrap() = Some((5, Box::new(move || take_lock(e.bucket))));
    let j = e.apply(false).await;
    assert!(j.outcome.as_deref().unwrap().contains("failover-inc-1"), "{:?}", j.outcome);
    let made = e.secondary.list(ObjectKind::Jobs).len();
    assert!(made <= super::apply::IN_FLIGHT, "only the wave in flight when the lock was taken: {made}");
    assert!(j.entries.iter().any(|x| x.status == Status::Pending));
    // While it is held, an apply refuses to start.
    let prepared = prepare(e.bucket, &e.docs).await.unwrap();
    let opts = ApplyOptions { prune: false, requested_by: "me".into(), kinds: None };
    let refused = apply(e.bucket, &e.connector, &e.docs, &prepared, &opts, &e.clock).await.unwrap_err();
    assert!(refused.to_string().contains("failover lock"), "{refused}");
}

#[tokio::test]
async fn prunes_wait_for_prune_and_a_chosen_kind_limits_the_apply() {
    let e = env(1).await;
    e.secondary
        .objects
        .lock()
        .unwrap()
        .insert(ObjectKind::SqlWarehouses, vec![json!({"id": "old", "name": "old", "state": "STOPPED"})]);
    e.reexport(2).await;
    let prepared = prepare(e.bucket, &e.docs).await.unwrap();
    let opts =
        ApplyOptions { prune: false, requested_by: "check".into(), kinds: Some(BTreeSet::from([ObjectKind::SqlWarehouses])) };
    let j = apply(e.bucket, &e.connector, &e.docs, &prepared, &opts, &e.clock).await.unwrap();
    let prune = j.entries.iter().find(|x| x.action == "prune").unwrap();
    assert_eq!((prune.status, prune.note.as_deref()), (Status::Skipped, Some("prune not asked (--prune)")));
    assert!(e.secondary.list(ObjectKind::Jobs).is_empty(), "jobs were not chosen");
    assert_eq!(e.secondary.list(ObjectKind::SqlWarehouses).len(), 2);
    let j = e.apply(true).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    let names: Vec<Value> = e.secondary.list(ObjectKind::SqlWarehouses).iter().map(|w| w["name"].clone()).collect();
    assert_eq!(names, [json!("bi")]);
}

use std::collections::BTreeSet;

/// An environment whose active site has catalog `sales` (schema `sales.orders`) and catalog `far` (a storage root
/// without a mapping), and whose standby has catalog `old`; both exported anew.
async fn uc_env() -> Env {
    let e = env(0).await;
    {
        let mut o = e.primary.objects.lock().unwrap();
        o.insert(
            ObjectKind::Catalogs,
            vec![
                json!({"name": "sales", "full_name": "sales", "owner": "data-eng", "comment": "c", "catalog_type": "MANAGED_CATALOG",
                       "created_at": 1}),
                json!({"name": "far", "full_name": "far", "owner": "a", "storage_root": "s3://acme-use1/far"}),
            ],
        );
        o.insert(
            ObjectKind::Schemas,
            vec![json!({"name": "orders", "catalog_name": "sales", "full_name": "sales.orders", "owner": "data-eng"})],
        );
    }
    e.secondary
        .objects
        .lock()
        .unwrap()
        .insert(ObjectKind::Catalogs, vec![json!({"name": "old", "full_name": "old", "owner": "x"})]);
    export(e.bucket, SiteName::Primary, &e.primary, "snapshots/2").await;
    e.reexport(2).await;
    e
}

#[tokio::test]
async fn catalogs_then_schemas_are_created_owned_as_in_the_active_site_and_pruned_only_with_prune() {
    let e = uc_env().await;
    let j = e.apply(false).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    let catalogs = e.secondary.list(ObjectKind::Catalogs);
    let sales = catalogs.iter().find(|c| c["name"] == "sales").unwrap();
    assert_eq!((sales["owner"].as_str(), sales["comment"].as_str()), (Some("data-eng"), Some("c")), "owner set by a PATCH");
    assert!(sales.get("created_at").is_none(), "output fields are not copied");
    assert!(!catalogs.iter().any(|c| c["name"] == "far"), "an unmappable storage root blocks that catalog");
    assert!(catalogs.iter().any(|c| c["name"] == "old"), "no prune without --prune");
    let schemas = e.secondary.list(ObjectKind::Schemas);
    assert_eq!((schemas.len(), schemas[0]["owner"].as_str()), (1, Some("data-eng")));
    let calls = e.secondary.calls.lock().unwrap().clone();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} not in {calls:?}"));
    assert!(
        at("GET /api/2.1/unity-catalog/catalogs/sales") < at("POST /API/2.1/UNITY-CATALOG/CATALOGS"),
        "re-read by name first"
    );
    assert!(
        at("PATCH /API/2.1/UNITY-CATALOG/CATALOGS/SALES") < at("POST /API/2.1/UNITY-CATALOG/SCHEMAS"),
        "catalogs before schemas"
    );
    let j = e.apply(true).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    assert!(!e.secondary.list(ObjectKind::Catalogs).iter().any(|c| c["name"] == "old"));
    e.reexport(3).await;
    let after = prepare(e.bucket, &e.docs).await.unwrap();
    let left: Vec<&str> = after.plan.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(left, ["far", "blocked"], "{:#?}", after.plan);
}

#[tokio::test]
async fn a_catalog_already_in_the_standby_when_the_apply_comes_is_found_not_created_again() {
    let e = uc_env().await;
    let prepared = prepare(e.bucket, &e.docs).await.unwrap();
    // Made between the plan and the apply (an earlier apply whose answer was lost).
    e.secondary
        .objects
        .lock()
        .unwrap()
        .get_mut(&ObjectKind::Catalogs)
        .unwrap()
        .push(json!({"name": "sales", "full_name": "sales"}));
    let opts = ApplyOptions { prune: false, requested_by: "me".into(), kinds: None };
    let j = apply(e.bucket, &e.connector, &e.docs, &prepared, &opts, &e.clock).await.unwrap();
    let sales = j.entries.iter().find(|x| x.name == "sales").unwrap();
    assert_eq!((sales.status, sales.id.as_deref()), (Status::Found, Some("sales")));
    assert!(!e.secondary.calls.lock().unwrap().iter().any(|c| c == "POST /API/2.1/UNITY-CATALOG/CATALOGS"));
    assert_eq!(e.secondary.list(ObjectKind::Schemas).len(), 1, "its schema still created");
}

#[tokio::test]
async fn grants_are_added_to_a_created_catalog_and_an_extra_grant_removed_only_with_prune() {
    let e = uc_env().await;
    let doc = |t: &str, n: &str, a: Value| json!({"securable_type": t, "full_name": n, "privilege_assignments": a});
    e.primary.objects.lock().unwrap().insert(
        ObjectKind::Grants,
        vec![
            doc("catalog", "sales", json!([{"principal": "analysts", "privileges": ["USE_CATALOG"]}])),
            doc("catalog", "old2", json!([])),
        ],
    );
    e.primary.objects.lock().unwrap().get_mut(&ObjectKind::Catalogs).unwrap().push(json!({"name": "old2", "full_name": "old2"}));
    {
        let mut s = e.secondary.objects.lock().unwrap();
        s.get_mut(&ObjectKind::Catalogs).unwrap().push(json!({"name": "old2", "full_name": "old2"}));
        s.insert(ObjectKind::Grants, vec![doc("catalog", "old2", json!([{"principal": "x", "privileges": ["BROWSE"]}]))]);
    }
    export(e.bucket, SiteName::Primary, &e.primary, "snapshots/3").await;
    e.reexport(3).await;
    let j = e.apply(false).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    let grants = e.secondary.list(ObjectKind::Grants);
    let of = |n: &str| grants.iter().find(|d| d["full_name"] == n).unwrap()["privilege_assignments"].clone();
    assert_eq!(of("sales"), json!([{"principal": "analysts", "privileges": ["USE_CATALOG"]}]), "added after the create");
    assert_eq!(of("old2"), json!([{"principal": "x", "privileges": ["BROWSE"]}]), "no removal without --prune");
    let calls = e.secondary.calls.lock().unwrap().clone();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} not in {calls:?}"));
    assert!(at("POST /API/2.1/UNITY-CATALOG/CATALOGS") < at("PATCH /API/2.1/UNITY-CATALOG/PERMISSIONS/CATALOG/SALES"));
    let j = e.apply(true).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    assert_eq!(
        e.secondary.list(ObjectKind::Grants).iter().find(|d| d["full_name"] == "old2").unwrap()["privilege_assignments"],
        json!([])
    );
    e.reexport(4).await;
    let after = prepare(e.bucket, &e.docs).await.unwrap();
    assert!(!after.plan.changes.iter().any(|c| c.kind == ObjectKind::Grants), "{:#?}", after.plan);
}

fn acl_entry(field: &str, name: &str, level: &str) -> Value {
    json!({field: name, "all_permissions": [{"permission_level": level, "inherited": false}]})
}

#[tokio::test]
async fn acls_follow_their_objects_once_created_and_an_extra_principal_goes_only_with_prune() {
    let e = env(1).await;
    e.primary.objects.lock().unwrap().insert(
        ObjectKind::Permissions,
        vec![
            json!({"object_type": "instance-pools", "object_id": "p-pool", "access_control_list": [acl_entry("group_name", "eng", "CAN_ATTACH_TO")]}),
            json!({"object_type": "jobs", "object_id": "0", "access_control_list": [acl_entry("user_name", "ann", "IS_OWNER"),
                acl_entry("group_name", "eng", "CAN_MANAGE_RUN")]}),
            json!({"object_type": "warehouses", "object_id": "p-wh", "access_control_list": [acl_entry("group_name", "bi", "CAN_USE")]}),
        ],
    );
    export(e.bucket, SiteName::Primary, &e.primary, "snapshots/1").await;
    let j = e.apply(false).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    let acl_of = |object_type: &str, id: &Value| -> Value {
        let docs = e.secondary.list(ObjectKind::Permissions);
        let id = id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string());
        docs.into_iter().find(|d| d["object_type"] == object_type && d["object_id"] == json!(id)).unwrap_or(Value::Null)
    };
    let pool = &e.secondary.list(ObjectKind::InstancePools)[0];
    let job = &e.secondary.list(ObjectKind::Jobs)[0];
    assert_eq!(acl_of("instance-pools", &pool["instance_pool_id"])["access_control_list"][0]["group_name"], "eng");
    let job_acl = acl_of("jobs", &job["job_id"]);
    assert_eq!(job_acl["access_control_list"].as_array().map(Vec::len), Some(2), "{job_acl}");
    // Each ACL written after its object: the object's create precedes its PUT, which names the new id.
    let calls = e.secondary.calls.lock().unwrap().clone();
    let put = calls.iter().position(|c| c.starts_with("PUT /API/2.0/PERMISSIONS/INSTANCE-POOLS/")).unwrap();
    let create = calls.iter().position(|c| c == "POST /API/2.0/INSTANCE-POOLS/CREATE").unwrap();
    assert!(create < put && !calls[put].contains("SYNC:"), "{calls:#?}");

    // The next export: nothing to plan but the blocked job.
    e.reexport(2).await;
    let after = prepare(e.bucket, &e.docs).await.unwrap();
    assert_eq!(after.plan.counts(), BTreeMap::from([("blocked", 1)]), "{:#?}", after.plan);

    // A principal only the standby has: kept without prune, removed with it.
    let pool_id = pool["instance_pool_id"].as_str().unwrap().to_owned();
    for d in e.secondary.objects.lock().unwrap().get_mut(&ObjectKind::Permissions).unwrap() {
        if d["object_id"] == json!(pool_id) {
            d["access_control_list"].as_array_mut().unwrap().push(acl_entry("group_name", "temps", "CAN_MANAGE"));
        }
    }
    e.reexport(3).await;
    let plan = prepare(e.bucket, &e.docs).await.unwrap().plan;
    assert_eq!(plan.counts(), BTreeMap::from([("blocked", 1), ("prune", 1)]), "{plan:#?}");
    e.apply(false).await;
    assert!(acl_of("instance-pools", &json!(pool_id)).to_string().contains("temps"));
    let j = e.apply(true).await;
    assert_eq!(j.outcome.as_deref(), Some("complete"), "{j:#?}");
    let pruned = acl_of("instance-pools", &json!(pool_id));
    assert!(!pruned.to_string().contains("temps") && pruned.to_string().contains("eng"), "{pruned}");
}

#[test]
fn the_kinds_read_are_the_synced_ones_and_clusters() {
    assert!(sync::SYNCED.iter().all(|k| READ.contains(k)));
    assert_eq!(READ.len(), sync::SYNCED.len() + 1);
    assert!(READ.contains(&ObjectKind::Clusters));
}
