//! The stable identity of an exported object, and its comparable content.
//!
//! The two sites are separate workspaces with separate metastores: every id the API hands out (`job_id`,
//! `cluster_id`, table UUIDs, ...) differs between them even for the same configuration, and so do
//! timestamps, creators and runtime state. [`of`] names an object by what an operator would call it (a
//! job's name and tags, a table's full name), so the same object is matched across sites and over time;
//! [`content`] removes what is site-local or volatile, so equal configuration compares equal.
//!
//! Identities:
//!
//! | kind | identity |
//! |---|---|
//! | jobs | `settings.name`, then its tags sorted by key: `nightly-etl [dr=active-passive,team=data]` |
//! | clusters | `cluster_name` (job and pipeline clusters are [`is_ephemeral`]: not compared) |
//! | cluster policies, catalogs, external locations, storage credentials, serving endpoints, vector search endpoints and indexes, secret scopes, SQL warehouses | `name` |
//! | instance pools | `instance_pool_name` |
//! | metastore | the constant `metastore`: one per workspace, and the two sites' metastores are different objects in different regions, so they are compared rather than reported as one added and one removed |
//! | schemas, tables, volumes, registered models | `full_name` |
//! | grants | `securable_type:full_name`, e.g. `schema:main.sales` |
//! | permissions | `object_type:object_name`, e.g. `jobs:nightly-etl` |
//! | repos, workspace objects | `path` |
//!
//! An object without its identity field (or with an empty one) has no identity: [`of`] returns `None` and
//! drift counts it as unidentified.
//!
//! What [`content`] removes (`*` = wherever the key appears, at any depth; otherwise top level only):
//!
//! | removed | kinds | why |
//! |---|---|---|
//! | `id`, `job_id`, `cluster_id`, `policy_id`, `instance_pool_id`, `table_id`, `volume_id`, `schema_id`, `catalog_id`, `metastore_id`, `object_id`, `resource_id`, `workspace_id`, `endpoint_id` | `id` top level, the others `*` | handed out by each workspace or metastore: never equal between sites |
//! | `existing_cluster_id`, `driver_instance_pool_id`, `warehouse_id`, `pipeline_id`, `dashboard_id`, `query_id`, `alert_id`, `budget_policy_id`, `effective_budget_policy_id`, `data_access_configuration_id`, `storage_root_credential_id`, `default_data_access_config_id` | `*` | references to another object by its site-local id; the referenced object is compared under its own kind, by name |
//! | `created_time`, `created_at`, `creation_time`, `creation_timestamp`, `updated_at`, `modified_at`, `last_modified`, `last_updated_timestamp`, `start_time`, `terminated_time`, `last_restarted_time`, `last_state_loss_time`, `last_activity_time`, `deleted_at` | `*` | timestamps: change without any change of configuration |
//! | `creator_user_name`, `creator_name`, `creator`, `created_by`, `updated_by`, `last_updated_user` | `*` | who created or last touched it: the secondary is deployed by automation, not by the same person (`owner` and `run_as` stay: they are configuration) |
//! | `state`, `state_message`, `termination_reason` | `*` | runtime state of clusters, warehouses, endpoints, served entities |
//! | `status`, `health`, `num_clusters`, `num_active_sessions`, `endpoint_status`, `num_indexes`, `pending_config`, `stats`, `has_more` | top level | runtime state and listing artefacts (`settings.health` of a job is configuration and stays) |
//! | `inherited_from_object` | `*` | names the parent by its site-local id (`/directories/1234`) |
//! | `zone_id` | `*` | an availability zone of the site's region: necessarily differs between regions (`auto` is equal and would have compared equal anyway) |
//! | `storage_location`, `storage_root` | `*` | managed storage paths embed the site's metastore, catalog and table UUIDs, and external paths point at the site's bucket (the replica bucket in the secondary): bucket pairing is the data-plane document's job, not drift's |
//! | `url` | external locations | the site's bucket, as above |
//! | `name`, `region`, `global_metastore_id` | metastore | the two metastores are distinct by design (per-region name and region); the rest of the summary (owner, Delta Sharing settings, privilege model) is compared |
//! | `external_id`, `unity_catalog_iam_arn` | storage credentials (top level and in `aws_iam_role`) | the trust relation Databricks generates per metastore |
//! | `jdbc_url`, `odbc_params` | SQL warehouses | embed the site's workspace host name |
//! | `default_tags`, `driver`, `executors`, `spark_context_id`, `jdbc_port`, `cluster_memory_mb`, `cluster_cores`, `cluster_log_status`, `init_scripts_safe_mode` | clusters, instance pools | derived at runtime (the default tags carry the cluster id and creator) |
//! | `num_workers` when `autoscale` is set | clusters | the current size of an autoscaling cluster, not its configuration |
//! | `settings.schedule.pause_status`, `settings.continuous.pause_status`, `settings.trigger.pause_status` | jobs | the secondary's jobs are deployed paused on purpose: that must not read as drift |
//! | `settings.trigger.file_arrival.url` | jobs | the storage location a file-arrival trigger watches: the site's own bucket (the replica in the secondary), like `storage_location` above |
//! | `properties["delta.lastCommitTimestamp"]`, `properties["delta.lastUpdateVersion"]` | tables | move at every write |
//! | `index_url` | `*` | the site's host name (vector search index status) |
//!
//! What is kept on purpose: a repo's `head_commit_id` (a repo on another commit in the secondary is drift),
//! a workspace object's `size`, owners, grants, ACLs, table columns and properties.
//!
//! Arrays whose order carries no meaning are sorted, so the order the API happened to list them in is not
//! drift: a job's `settings.tasks` by `task_key` and `settings.job_clusters` by `job_cluster_key`, grants'
//! `privilege_assignments` by principal (and each `privileges` list), permissions' `access_control_list` and
//! each `all_permissions`, secret scopes' `acls`.

use super::ObjectKind;
use serde_json::{Map, Value};

/// Keys removed wherever they appear (ids, references by id, timestamps, creators, runtime state).
const ANY_DEPTH: [&str; 50] = [
    // Site-local ids.
    "job_id",
    "cluster_id",
    "policy_id",
    "instance_pool_id",
    "table_id",
    "volume_id",
    "schema_id",
    "catalog_id",
    "metastore_id",
    "object_id",
    "resource_id",
    "workspace_id",
    "endpoint_id",
    // References by site-local id.
    "existing_cluster_id",
    "driver_instance_pool_id",
    "warehouse_id",
    "pipeline_id",
    "dashboard_id",
    "query_id",
    "alert_id",
    "budget_policy_id",
    "effective_budget_policy_id",
    "data_access_configuration_id",
    "storage_root_credential_id",
    "default_data_access_config_id",
    // Timestamps.
    "created_time",
    "created_at",
    "creation_time",
    "creation_timestamp",
    "updated_at",
    "modified_at",
    "last_modified",
    "last_updated_timestamp",
    "start_time",
    "terminated_time",
    "last_restarted_time",
    "last_state_loss_time",
    "last_activity_time",
    "deleted_at",
    // Who.
    "creator_user_name",
    "creator_name",
    "creator",
    "created_by",
    "updated_by",
    "last_updated_user",
    // Runtime state, parent ids, region-bound values.
    "state",
    "state_message",
    "termination_reason",
    "inherited_from_object",
    "zone_id",
];

/// Keys removed wherever they appear that embed the site's storage or host (see the module table).
const SITE_PATHS: [&str; 3] = ["storage_location", "storage_root", "index_url"];

/// Keys removed at the top level of every kind: the object's own id, runtime state, listing artefacts.
const TOP_LEVEL: [&str; 10] = [
    "id",
    "status",
    "health",
    "num_clusters",
    "num_active_sessions",
    "endpoint_status",
    "num_indexes",
    "pending_config",
    "stats",
    "has_more",
];

/// Keys removed at the top level of one kind only.
fn top_level_of(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Metastore => &["name", "region", "global_metastore_id"],
        ObjectKind::ExternalLocations => &["url"],
        ObjectKind::StorageCredentials => &["external_id", "unity_catalog_iam_arn"],
        ObjectKind::SqlWarehouses => &["jdbc_url", "odbc_params"],
        ObjectKind::Clusters | ObjectKind::InstancePools => &[
            "default_tags",
            "driver",
            "executors",
            "spark_context_id",
            "jdbc_port",
            "cluster_memory_mb",
            "cluster_cores",
            "cluster_log_status",
            "init_scripts_safe_mode",
        ],
        _ => &[],
    }
}

/// Table properties that move at every write.
const VOLATILE_TABLE_PROPERTIES: [&str; 2] = ["delta.lastCommitTimestamp", "delta.lastUpdateVersion"];

/// `cluster_source` values of clusters created for one run (job runs, pipeline updates, model serving):
/// their names carry run ids and they come and go, so they are neither configuration nor drift.
const EPHEMERAL_CLUSTER_SOURCES: [&str; 4] = ["JOB", "PIPELINE", "PIPELINE_MAINTENANCE", "MODELS"];

/// The stable identity of `object` of `kind`, equal for the same object in both sites (see the module
/// table); `None` when the object lacks its identity field.
pub fn of(kind: ObjectKind, object: &Value) -> Option<String> {
    match kind {
        ObjectKind::Jobs => job_identity(object),
        ObjectKind::Clusters => text(object, "cluster_name"),
        ObjectKind::InstancePools => text(object, "instance_pool_name"),
        ObjectKind::Metastore => object.is_object().then(|| "metastore".to_owned()),
        ObjectKind::Schemas | ObjectKind::Tables | ObjectKind::Volumes | ObjectKind::RegisteredModels => {
            text(object, "full_name")
        }
        ObjectKind::Grants => Some(format!("{}:{}", text(object, "securable_type")?, text(object, "full_name")?)),
        ObjectKind::Permissions => Some(format!("{}:{}", text(object, "object_type")?, text(object, "object_name")?)),
        ObjectKind::Repos | ObjectKind::WorkspaceObjects => text(object, "path"),
        ObjectKind::ClusterPolicies
        | ObjectKind::SqlWarehouses
        | ObjectKind::Catalogs
        | ObjectKind::ExternalLocations
        | ObjectKind::StorageCredentials
        | ObjectKind::ServingEndpoints
        | ObjectKind::VectorSearchEndpoints
        | ObjectKind::VectorSearchIndexes
        | ObjectKind::SecretScopes => text(object, "name"),
    }
}

/// Whether `object` exists only for one run (a job or pipeline cluster): drift leaves it out entirely.
pub fn is_ephemeral(kind: ObjectKind, object: &Value) -> bool {
    kind == ObjectKind::Clusters
        && object.get("cluster_source").and_then(Value::as_str).is_some_and(|s| EPHEMERAL_CLUSTER_SOURCES.contains(&s))
}

/// `object` without what is site-local or volatile, with meaningless array order normalized (see the
/// module table), so that equal configuration compares equal between sites and over time.
pub fn content(kind: ObjectKind, object: &Value) -> Value {
    let mut value = object.clone();
    strip_any_depth(&mut value);
    let Value::Object(map) = &mut value else {
        return value;
    };
    for key in TOP_LEVEL.iter().chain(top_level_of(kind)) {
        map.remove(*key);
    }
    match kind {
        ObjectKind::Jobs => normalize_job(map),
        // An autoscaling cluster's `num_workers` is how many it runs now.
        ObjectKind::Clusters if map.contains_key("autoscale") => {
            map.remove("num_workers");
        }
        ObjectKind::StorageCredentials => {
            if let Some(Value::Object(role)) = map.get_mut("aws_iam_role") {
                role.remove("external_id");
                role.remove("unity_catalog_iam_arn");
            }
        }
        ObjectKind::Tables => {
            if let Some(Value::Object(properties)) = map.get_mut("properties") {
                for key in VOLATILE_TABLE_PROPERTIES {
                    properties.remove(key);
                }
            }
        }
        ObjectKind::Grants => {
            if let Some(Value::Array(assignments)) = map.get_mut("privilege_assignments") {
                for assignment in assignments.iter_mut() {
                    if let Some(Value::Array(privileges)) = assignment.get_mut("privileges") {
                        sort_canonical(privileges);
                    }
                }
                sort_by_key_then_canonical(assignments, "principal");
            }
        }
        ObjectKind::Permissions => {
            if let Some(Value::Array(acl)) = map.get_mut("access_control_list") {
                for entry in acl.iter_mut() {
                    if let Some(Value::Array(all)) = entry.get_mut("all_permissions") {
                        sort_canonical(all);
                    }
                }
                sort_canonical(acl);
            }
        }
        ObjectKind::SecretScopes => {
            if let Some(Value::Array(acls)) = map.get_mut("acls") {
                sort_by_key_then_canonical(acls, "principal");
            }
        }
        _ => {}
    }
    value
}

/// A text rendering of `value` with object keys sorted: equal values give equal strings whatever the
/// map's insertion order, so it is a total, deterministic sort key.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `object[field]` as a non-empty string.
fn text(object: &Value, field: &str) -> Option<String> {
    object.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `name [k=v,...]`, tags sorted by key; just `name` without tags.
fn job_identity(job: &Value) -> Option<String> {
    let settings = job.get("settings")?;
    let name = text(settings, "name")?;
    let Some(Value::Object(tags)) = settings.get("tags") else {
        return Some(name);
    };
    if tags.is_empty() {
        return Some(name);
    }
    let mut pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    pairs.sort();
    Some(format!("{name} [{}]", pairs.join(",")))
}

fn strip_any_depth(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ANY_DEPTH.iter().chain(SITE_PATHS.iter()) {
                map.remove(*key);
            }
            for v in map.values_mut() {
                strip_any_depth(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_any_depth),
        _ => {}
    }
}

fn normalize_job(job: &mut Map<String, Value>) {
    let Some(Value::Object(settings)) = job.get_mut("settings") else {
        return;
    };
    // The secondary's jobs are deployed paused on purpose.
    for trigger in ["schedule", "continuous", "trigger"] {
        if let Some(Value::Object(t)) = settings.get_mut(trigger) {
            t.remove("pause_status");
        }
    }
    // A file-arrival trigger watches the site's own bucket (the replica bucket in the secondary).
    if let Some(Value::Object(arrival)) = settings.get_mut("trigger").and_then(|t| t.get_mut("file_arrival")) {
        arrival.remove("url");
    }
    if let Some(Value::Array(tasks)) = settings.get_mut("tasks") {
        sort_by_key_then_canonical(tasks, "task_key");
    }
    if let Some(Value::Array(clusters)) = settings.get_mut("job_clusters") {
        sort_by_key_then_canonical(clusters, "job_cluster_key");
    }
}

fn sort_canonical(items: &mut [Value]) {
    items.sort_by_cached_key(canonical);
}

fn sort_by_key_then_canonical(items: &mut [Value], key: &str) {
    items.sort_by_cached_key(|v| (v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned(), canonical(v)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn primary_job() -> Value {
        json!({
            "job_id": 101,
            "created_time": 1_700_000_000_000_i64,
            "creator_user_name": "alice@example.com",
            "run_as_user_name": "etl-sp",
            "settings": {
                "name": "nightly-etl",
                "tags": {"team": "data", "dr": "active-passive"},
                "max_concurrent_runs": 1,
                "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"},
                "tasks": [
                    {"task_key": "load", "existing_cluster_id": "0101-aaa", "notebook_task": {"notebook_path": "/Repos/etl/load"}},
                    {"task_key": "report", "sql_task": {"warehouse_id": "w1", "query": {"query_id": "q1"}}}
                ]
            }
        })
    }

    fn secondary_job() -> Value {
        json!({
            "job_id": 9_001,
            "created_time": 1_710_000_000_000_i64,
            "creator_user_name": "terraform@example.com",
            "run_as_user_name": "etl-sp",
            "settings": {
                "name": "nightly-etl",
                "tags": {"dr": "active-passive", "team": "data"},
                "max_concurrent_runs": 1,
                "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"},
                "tasks": [
                    {"task_key": "report", "sql_task": {"warehouse_id": "w9", "query": {"query_id": "q9"}}},
                    {"task_key": "load", "existing_cluster_id": "0909-zzz", "notebook_task": {"notebook_path": "/Repos/etl/load"}}
                ]
            }
        })
    }

    #[test]
    fn a_job_is_named_by_its_name_and_sorted_tags() {
        assert_eq!(of(ObjectKind::Jobs, &primary_job()).as_deref(), Some("nightly-etl [dr=active-passive,team=data]"));
        assert_eq!(of(ObjectKind::Jobs, &primary_job()), of(ObjectKind::Jobs, &secondary_job()));
        assert_eq!(of(ObjectKind::Jobs, &json!({"settings": {"name": "plain"}})).as_deref(), Some("plain"));
        assert_eq!(of(ObjectKind::Jobs, &json!({"settings": {"name": "t", "tags": {}}})).as_deref(), Some("t"));
        assert_eq!(of(ObjectKind::Jobs, &json!({"job_id": 1})), None);
        assert_eq!(of(ObjectKind::Jobs, &json!({"settings": {"name": ""}})), None);
    }

    #[test]
    fn every_kind_has_its_identity_and_none_without_it() {
        let cases = [
            (ObjectKind::Clusters, json!({"cluster_id": "x", "cluster_name": "shared"}), "shared"),
            (ObjectKind::ClusterPolicies, json!({"policy_id": "p", "name": "small"}), "small"),
            (ObjectKind::InstancePools, json!({"instance_pool_id": "i", "instance_pool_name": "pool"}), "pool"),
            (ObjectKind::SqlWarehouses, json!({"id": "w", "name": "bi"}), "bi"),
            (ObjectKind::Metastore, json!({"metastore_id": "m", "name": "use1", "region": "us-east-1"}), "metastore"),
            (ObjectKind::Catalogs, json!({"name": "main"}), "main"),
            (ObjectKind::Schemas, json!({"full_name": "main.sales"}), "main.sales"),
            (ObjectKind::Tables, json!({"full_name": "main.sales.orders", "table_id": "t"}), "main.sales.orders"),
            (ObjectKind::Volumes, json!({"full_name": "main.sales.raw"}), "main.sales.raw"),
            (ObjectKind::ExternalLocations, json!({"name": "landing"}), "landing"),
            (ObjectKind::StorageCredentials, json!({"name": "cred"}), "cred"),
            (
                ObjectKind::Grants,
                json!({"securable_type": "schema", "full_name": "main.sales", "privilege_assignments": []}),
                "schema:main.sales",
            ),
            (ObjectKind::RegisteredModels, json!({"full_name": "main.ml.churn"}), "main.ml.churn"),
            (ObjectKind::ServingEndpoints, json!({"name": "churn"}), "churn"),
            (ObjectKind::VectorSearchEndpoints, json!({"name": "vs"}), "vs"),
            (ObjectKind::VectorSearchIndexes, json!({"name": "main.ml.idx", "endpoint_name": "vs"}), "main.ml.idx"),
            (ObjectKind::Repos, json!({"id": 5, "path": "/Repos/etl/etl"}), "/Repos/etl/etl"),
            (
                ObjectKind::WorkspaceObjects,
                json!({"object_id": 5, "path": "/Users/a/nb", "object_type": "NOTEBOOK"}),
                "/Users/a/nb",
            ),
            (ObjectKind::SecretScopes, json!({"name": "etl", "backend_type": "DATABRICKS"}), "etl"),
            (
                ObjectKind::Permissions,
                json!({"object_type": "jobs", "object_name": "nightly-etl", "object_id": "101"}),
                "jobs:nightly-etl",
            ),
        ];
        for (kind, object, want) in &cases {
            assert_eq!(of(*kind, object).as_deref(), Some(*want), "{kind}");
        }
        // Every kind but jobs (tested above) is covered, and each answers None on an empty object but the
        // metastore, whose identity is a constant.
        assert_eq!(cases.len() + 1, ObjectKind::ALL.len());
        for kind in ObjectKind::ALL {
            let want = (kind == ObjectKind::Metastore).then(|| "metastore".to_owned());
            assert_eq!(of(kind, &json!({})), want, "{kind}");
            assert_eq!(of(kind, &json!("not an object")), None, "{kind}");
        }
    }

    #[test]
    fn a_file_arrival_trigger_on_each_site_s_own_bucket_is_not_drift_its_other_settings_are() {
        let job = |url: &str, min: u64| {
            json!({"job_id": 1, "settings": {"name": "landing", "trigger": {"pause_status": "PAUSED",
                "file_arrival": {"url": url, "min_time_between_triggers_seconds": min}}}})
        };
        let (p, s) = (job("s3://acme-primary-landing/in/", 60), job("s3://acme-secondary-landing/in/", 60));
        assert_eq!(content(ObjectKind::Jobs, &p), content(ObjectKind::Jobs, &s));
        assert_ne!(content(ObjectKind::Jobs, &p), content(ObjectKind::Jobs, &job("s3://acme-primary-landing/in/", 120)));
    }

    #[test]
    fn content_strips_ids_timestamps_and_pause_status_so_equal_jobs_compare_equal() {
        let a = content(ObjectKind::Jobs, &primary_job());
        let b = content(ObjectKind::Jobs, &secondary_job());
        assert_eq!(a, b);
        assert_eq!(canonical(&a), canonical(&b));
        assert!(a.get("job_id").is_none() && a.get("created_time").is_none() && a.get("creator_user_name").is_none());
        assert_eq!(a["settings"]["schedule"], json!({"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC"}));
        assert_eq!(a["run_as_user_name"], "etl-sp", "configuration stays");
        assert_eq!(a["settings"]["tasks"][0]["task_key"], "load", "tasks sorted by key");
        // A real change still shows.
        let mut changed = secondary_job();
        changed["settings"]["max_concurrent_runs"] = json!(4);
        assert_ne!(content(ObjectKind::Jobs, &changed), a);
    }

    #[test]
    fn content_strips_runtime_state_and_site_paths_but_keeps_the_repo_commit() {
        let cluster = json!({"cluster_id": "1", "cluster_name": "c", "state": "RUNNING", "num_workers": 7,
            "autoscale": {"min_workers": 1, "max_workers": 8}, "default_tags": {"ClusterId": "1"},
            "aws_attributes": {"zone_id": "us-east-1a", "first_on_demand": 1}});
        assert_eq!(
            content(ObjectKind::Clusters, &cluster),
            json!({"cluster_name": "c", "autoscale": {"min_workers": 1, "max_workers": 8}, "aws_attributes": {"first_on_demand": 1}})
        );
        let table = json!({"full_name": "a.b.c", "table_id": "u1", "metastore_id": "m", "storage_location": "s3://b/__unitystorage/x",
            "updated_at": 5, "owner": "data", "properties": {"delta.lastCommitTimestamp": "1", "delta.appendOnly": "true"}});
        assert_eq!(
            content(ObjectKind::Tables, &table),
            json!({"full_name": "a.b.c", "owner": "data", "properties": {"delta.appendOnly": "true"}})
        );
        let repo = json!({"id": 1, "path": "/Repos/a/b", "url": "https://git/x", "branch": "main", "head_commit_id": "abc"});
        assert_eq!(content(ObjectKind::Repos, &repo)["head_commit_id"], "abc");
        assert!(content(ObjectKind::Repos, &repo).get("id").is_none());
        let primary = json!({"metastore_id": "m1", "name": "use1", "region": "us-east-1", "owner": "admins"});
        let secondary = json!({"metastore_id": "m2", "name": "usw2", "region": "us-west-2", "owner": "admins"});
        assert_eq!(content(ObjectKind::Metastore, &primary), content(ObjectKind::Metastore, &secondary));
    }

    #[test]
    fn content_sorts_grants_acls_and_scopes() {
        let a = json!({"securable_type": "catalog", "full_name": "main", "privilege_assignments": [
            {"principal": "b", "privileges": ["SELECT", "USE_CATALOG"]}, {"principal": "a", "privileges": ["USE_CATALOG"]}]});
        let b = json!({"securable_type": "catalog", "full_name": "main", "privilege_assignments": [
            {"principal": "a", "privileges": ["USE_CATALOG"]}, {"principal": "b", "privileges": ["USE_CATALOG", "SELECT"]}]});
        assert_eq!(content(ObjectKind::Grants, &a), content(ObjectKind::Grants, &b));
        let p = |id: &str, order: bool| {
            let mut acl = vec![
                json!({"user_name": "u", "all_permissions": [{"permission_level": "CAN_VIEW", "inherited": false}]}),
                json!({"group_name": "admins", "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": true,
                    "inherited_from_object": [format!("/jobs/{id}")]}]}),
            ];
            if order {
                acl.reverse();
            }
            json!({"object_type": "jobs", "object_name": "j", "object_id": id, "access_control_list": acl})
        };
        assert_eq!(content(ObjectKind::Permissions, &p("1", false)), content(ObjectKind::Permissions, &p("2", true)));
        let s = |acls: Value| json!({"name": "s", "backend_type": "DATABRICKS", "acls": acls});
        assert_eq!(
            content(
                ObjectKind::SecretScopes,
                &s(json!([{"principal": "b", "permission": "READ"}, {"principal": "a", "permission": "MANAGE"}]))
            ),
            content(
                ObjectKind::SecretScopes,
                &s(json!([{"principal": "a", "permission": "MANAGE"}, {"principal": "b", "permission": "READ"}]))
            )
        );
    }

    #[test]
    fn job_and_pipeline_clusters_are_ephemeral() {
        assert!(is_ephemeral(ObjectKind::Clusters, &json!({"cluster_name": "job-1-run-2", "cluster_source": "JOB"})));
        assert!(!is_ephemeral(ObjectKind::Clusters, &json!({"cluster_name": "shared", "cluster_source": "UI"})));
        assert!(!is_ephemeral(ObjectKind::Jobs, &json!({"cluster_source": "JOB"})));
    }

    #[test]
    fn canonical_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,"x"],"x":null}}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical(&a), r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
        assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn every_removed_key_is_in_the_module_table() {
        let doc = include_str!("identity.rs");
        let table: String = doc.lines().filter(|l| l.starts_with("//! |")).collect::<Vec<_>>().join("\n");
        let all = ANY_DEPTH.iter().chain(&SITE_PATHS).chain(&TOP_LEVEL).chain(&VOLATILE_TABLE_PROPERTIES);
        let per_kind = ObjectKind::ALL.into_iter().flat_map(|k| top_level_of(k).iter());
        for key in all.chain(per_kind) {
            assert!(table.contains(&format!("`{key}`")) || table.contains(&format!("\"{key}\"")), "{key} not documented");
        }
    }
}
