//! The write side of the local Databricks workspace API (`scripts/databricks_writes.py`), which `dr sync` and
//! activation change workspaces through: each published rule it keeps (required fields, name uniqueness,
//! references that must exist, permission levels, Unity Catalog's privileges and site-local values) refuses what a
//! real workspace refuses, with the error code and a message that names the field.

use serde_json::{Value, json};
use tests::databricks::{DatabricksServer, Response, Workspace};

fn start() -> DatabricksServer {
    DatabricksServer::start(&["secondary"]).unwrap_or_else(|e| panic!("cannot start scripts/databricks_server.py: {e}"))
}

fn call(ws: &Workspace, method: &str, path: &str, body: Value) -> Response {
    let body = (method != "GET" && method != "DELETE").then_some(body);
    ws.send(method, path, body.as_ref(), Some(&ws.pat()))
}

/// The call's answer when it succeeded; panics with the server's message otherwise.
fn ok(ws: &Workspace, method: &str, path: &str, body: Value) -> Value {
    let r = call(ws, method, path, body);
    assert_eq!(r.status, 200, "{method} {path}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Asserts the call is refused with `status` and `code`, and that the message mentions `says`.
fn refused(ws: &Workspace, method: &str, path: &str, body: Value, status: u16, code: &str, says: &str) {
    let r = call(ws, method, path, body);
    let answer = r.json();
    assert_eq!(r.status, status, "{method} {path}: {answer}");
    assert_eq!(answer["error_code"], code, "{method} {path}: {answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{method} {path}: {message:?} should mention {says:?}");
}

/// A workspace in us-west-2 with one policy, one pool, one cluster, one warehouse and a metastore whose one
/// external location is s3://standby-uc/; it knows two zones, one instance profile and three identities.
fn seeded() -> Value {
    json!({
        "cluster_policies": [{"policy_id": "P1", "name": "dr-standard", "definition": "{}"}],
        "instance_pools": [{"instance_pool_id": "pool-1", "instance_pool_name": "etl-pool", "node_type_id": "i3.xlarge"}],
        "clusters": [{"cluster_id": "c-1", "cluster_name": "shared", "state": "RUNNING"}],
        "warehouses": [{"id": "w1", "name": "bi", "cluster_size": "Small", "state": "STOPPED"}],
        "metastore": {"metastore_id": "ms-west", "name": "west"},
        "external_locations": [{"name": "standby-root", "url": "s3://standby-uc"}],
        "site": {"zones": ["us-west-2a", "us-west-2b"],
                 "instance_profiles": ["arn:aws:iam::111122223333:instance-profile/dbx-west"],
                 "identities": ["etl@example.com", "data-eng", "sp-etl"]}
    })
}

fn job(tasks: Value) -> Value {
    json!({"name": "nightly-etl", "tasks": tasks,
           "job_clusters": [{"job_cluster_key": "etl", "new_cluster": {"spark_version": "15.4.x-scala2.12", "policy_id": "P1"}}],
           "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"},
           "tags": {"dr": "active-passive"}})
}

fn notebook(key: &str, deps: &[&str]) -> Value {
    let deps: Vec<Value> = deps.iter().map(|d| json!({"task_key": d})).collect();
    json!({"task_key": key, "notebook_task": {"notebook_path": format!("/Shared/{key}")}, "job_cluster_key": "etl", "depends_on": deps})
}

#[test]
fn jobs_create_and_reset_refuse_what_the_jobs_api_refuses() {
    let server = start();
    let ws = server.workspace("secondary");
    ws.set_state(&seeded());
    let create = "/api/2.2/jobs/create";
    let bad = "INVALID_PARAMETER_VALUE";

    let mut no_type = notebook("a", &[]);
    no_type.as_object_mut().unwrap().remove("notebook_task");
    refused(ws, "POST", create, job(json!([no_type])), 400, bad, "exactly one task type");
    refused(ws, "POST", create, job(json!([notebook("a", &[]), notebook("a", &[])])), 400, bad, "unique");
    refused(ws, "POST", create, job(json!([notebook("b", &["a"])])), 400, bad, "depends on");
    refused(ws, "POST", create, job(json!([{"task_key": "bad key!", "notebook_task": {}}])), 400, bad, "task_key");
    let mut other_cluster = notebook("a", &[]);
    other_cluster["job_cluster_key"] = json!("nope");
    refused(ws, "POST", create, job(json!([other_cluster])), 400, bad, "job_cluster_key");
    let mut primary_cluster = notebook("a", &[]);
    primary_cluster.as_object_mut().unwrap().remove("job_cluster_key");
    primary_cluster["existing_cluster_id"] = json!("0101-primary-cluster");
    refused(ws, "POST", create, job(json!([primary_cluster])), 400, bad, "cluster 0101-primary-cluster does not exist");
    let mut primary_policy = job(json!([notebook("a", &[])]));
    primary_policy["job_clusters"][0]["new_cluster"]["policy_id"] = json!("PRIMARY-POLICY");
    refused(ws, "POST", create, primary_policy, 400, bad, "cluster policy PRIMARY-POLICY does not exist");
    let mut primary_pool = job(json!([notebook("a", &[])]));
    primary_pool["job_clusters"][0]["new_cluster"]["instance_pool_id"] = json!("pool-primary");
    refused(ws, "POST", create, primary_pool, 400, bad, "instance pool pool-primary does not exist");
    let sql = json!({"task_key": "q", "sql_task": {"warehouse_id": "w-primary", "query": {"query_id": "1"}}});
    refused(ws, "POST", create, job(json!([sql])), 400, bad, "SQL warehouse w-primary does not exist");
    let mut two_triggers = job(json!([notebook("a", &[])]));
    two_triggers["continuous"] = json!({"pause_status": "PAUSED"});
    refused(ws, "POST", create, two_triggers, 400, bad, "only one of schedule, continuous and trigger");
    let mut many_tags = job(json!([notebook("a", &[])]));
    many_tags["tags"] = (0..26).map(|i| (format!("t{i}"), json!("v"))).collect::<serde_json::Map<_, _>>().into();
    refused(ws, "POST", create, many_tags, 400, bad, "at most 25 tags");
    let mut no_cron = job(json!([notebook("a", &[])]));
    no_cron["schedule"].as_object_mut().unwrap().remove("quartz_cron_expression");
    refused(ws, "POST", create, no_cron, 400, bad, "schedule.quartz_cron_expression");
    let mut bad_pause = job(json!([notebook("a", &[])]));
    bad_pause["schedule"]["pause_status"] = json!("STOPPED");
    refused(ws, "POST", create, bad_pause, 400, bad, "PAUSED or UNPAUSED");
    assert!(ws.state()["jobs"].as_array().is_none_or(Vec::is_empty), "nothing refused was created");

    // A valid job is created with a new id, owned by the caller, found by name.
    let settings = job(json!([notebook("ingest", &[]), notebook("transform", &["ingest"])]));
    let id = ok(ws, "POST", create, settings.clone())["job_id"].as_i64().expect("job_id");
    let got = ok(ws, "GET", &format!("/api/2.2/jobs/get?job_id={id}"), Value::Null);
    assert_eq!(got["settings"], settings);
    assert_eq!(got["creator_user_name"], "local-admin@example.com");
    let listed = ok(ws, "GET", "/api/2.2/jobs/list?name=nightly-etl", Value::Null);
    assert_eq!(listed["jobs"][0]["job_id"], id);
    let second = ok(ws, "POST", create, settings.clone())["job_id"].as_i64().unwrap();
    assert_ne!(second, id, "jobs/create is not idempotent: names may repeat, ids never do");

    // reset validates the new settings as create does, and a refused reset leaves the job as it was.
    let mut broken = settings.clone();
    broken["tasks"][1]["depends_on"] = json!([{"task_key": "gone"}]);
    refused(ws, "POST", "/api/2.2/jobs/reset", json!({"job_id": id, "new_settings": broken}), 400, bad, "depends on");
    assert_eq!(ok(ws, "GET", &format!("/api/2.2/jobs/get?job_id={id}"), Value::Null)["settings"], settings);
    refused(ws, "POST", "/api/2.2/jobs/reset", json!({"job_id": id}), 400, bad, "new_settings");

    ok(ws, "POST", "/api/2.2/jobs/delete", json!({"job_id": second}));
    refused(ws, "GET", &format!("/api/2.2/jobs/get?job_id={second}"), Value::Null, 404, "RESOURCE_DOES_NOT_EXIST", "");
}

#[test]
fn policies_pools_and_warehouses_keep_names_unique_and_fields_valid() {
    let server = start();
    let ws = server.workspace("secondary");
    ws.set_state(&seeded());
    let bad = "INVALID_PARAMETER_VALUE";

    let policies = "/api/2.0/policies/clusters";
    refused(ws, "POST", &format!("{policies}/create"), json!({"name": "dr-standard"}), 400, bad, "already exists");
    refused(ws, "POST", &format!("{policies}/create"), json!({"definition": "{}"}), 400, bad, "name");
    refused(
        ws,
        "POST",
        &format!("{policies}/create"),
        json!({"name": "x", "definition": {"a": 1}}),
        400,
        bad,
        "JSON object passed as a string",
    );
    refused(ws, "POST", &format!("{policies}/create"), json!({"name": "x".repeat(101)}), 400, bad, "between 1 and 100");
    let pid = ok(
        ws,
        "POST",
        &format!("{policies}/create"),
        json!({"name": "ml", "definition": "{\"x\": {\"type\": \"fixed\", \"value\": 1}}"}),
    )["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ok(ws, "GET", &format!("{policies}/get?policy_id={pid}"), Value::Null)["name"], "ml");
    refused(
        ws,
        "POST",
        &format!("{policies}/edit"),
        json!({"policy_id": pid, "name": "dr-standard"}),
        400,
        bad,
        "already exists",
    );
    ok(ws, "POST", &format!("{policies}/edit"), json!({"policy_id": pid, "name": "ml-2", "definition": "{}"}));
    refused(
        ws,
        "POST",
        &format!("{policies}/edit"),
        json!({"policy_id": "NOPE", "name": "z"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "NOPE",
    );

    let pools = "/api/2.0/instance-pools";
    refused(
        ws,
        "POST",
        &format!("{pools}/create"),
        json!({"instance_pool_name": "etl-pool", "node_type_id": "i3.xlarge"}),
        400,
        bad,
        "already exists",
    );
    refused(ws, "POST", &format!("{pools}/create"), json!({"instance_pool_name": "p2"}), 400, bad, "node_type_id");
    refused(
        ws,
        "POST",
        &format!("{pools}/create"),
        json!({"instance_pool_name": "p2", "node_type_id": "i3.xlarge", "min_idle_instances": 5, "max_capacity": 2}),
        400,
        bad,
        "max_capacity",
    );
    refused(
        ws,
        "POST",
        &format!("{pools}/edit"),
        json!({"instance_pool_id": "pool-1", "instance_pool_name": "etl-pool", "node_type_id": "r5.xlarge"}),
        400,
        bad,
        "cannot be changed",
    );
    ok(
        ws,
        "POST",
        &format!("{pools}/edit"),
        json!({"instance_pool_id": "pool-1", "instance_pool_name": "etl-pool", "node_type_id": "i3.xlarge", "max_capacity": 10}),
    );
    assert_eq!(ok(ws, "GET", &format!("{pools}/get?instance_pool_id=pool-1"), Value::Null)["max_capacity"], 10);

    let warehouses = "/api/2.0/sql/warehouses";
    refused(ws, "POST", warehouses, json!({"name": "bi", "cluster_size": "Small"}), 400, bad, "unique");
    refused(ws, "POST", warehouses, json!({"name": "bi-2", "cluster_size": "Tiny"}), 400, bad, "cluster_size");
    refused(
        ws,
        "POST",
        warehouses,
        json!({"name": "bi-2", "cluster_size": "Small", "auto_stop_mins": 5}),
        400,
        bad,
        "auto_stop_mins",
    );
    refused(
        ws,
        "POST",
        warehouses,
        json!({"name": "bi-2", "cluster_size": "Small", "min_num_clusters": 3, "max_num_clusters": 2}),
        400,
        bad,
        "min_num_clusters",
    );
    refused(
        ws,
        "POST",
        warehouses,
        json!({"name": "bi-2", "cluster_size": "Small", "enable_serverless_compute": true, "warehouse_type": "CLASSIC"}),
        400,
        bad,
        "PRO",
    );
    let wid = ok(ws, "POST", warehouses, json!({"name": "bi-2", "cluster_size": "Small"}))["id"].as_str().unwrap().to_owned();
    let created = ok(ws, "GET", &format!("{warehouses}/{wid}"), Value::Null);
    assert!(matches!(created["state"].as_str(), Some("STARTING" | "RUNNING")), "a new warehouse starts: {created}");
    assert_eq!(created["auto_stop_mins"], 120, "the documented default");
    refused(ws, "POST", &format!("{warehouses}/{wid}/edit"), json!({"name": "bi", "cluster_size": "Small"}), 400, bad, "unique");
    ok(ws, "POST", &format!("{warehouses}/{wid}/edit"), json!({"name": "bi-2", "cluster_size": "Medium"}));
    assert_eq!(ok(ws, "GET", &format!("{warehouses}/{wid}"), Value::Null)["cluster_size"], "Medium");
    ok(ws, "DELETE", &format!("{warehouses}/{wid}"), Value::Null);
    refused(ws, "GET", &format!("{warehouses}/{wid}"), Value::Null, 404, "RESOURCE_DOES_NOT_EXIST", &wid);

    // Only workspace admins create policies, pools and warehouses.
    let mut state = seeded();
    state["principals"] = json!({"dapi-local-secondary": {"user_name": "etl@example.com", "admin": false}});
    ws.set_state(&state);
    refused(ws, "POST", &format!("{policies}/create"), json!({"name": "q"}), 403, "PERMISSION_DENIED", "admins");
    refused(
        ws,
        "POST",
        &format!("{pools}/create"),
        json!({"instance_pool_name": "q", "node_type_id": "i3.xlarge"}),
        403,
        "PERMISSION_DENIED",
        "admins",
    );
    refused(ws, "POST", warehouses, json!({"name": "q", "cluster_size": "Small"}), 403, "PERMISSION_DENIED", "admins");
}

#[test]
fn unity_catalog_writes_keep_names_storage_and_privileges_valid() {
    let server = start();
    let ws = server.workspace("secondary");
    ws.set_state(&seeded());
    let bad = "INVALID_PARAMETER_VALUE";
    let catalogs = "/api/2.1/unity-catalog/catalogs";
    let schemas = "/api/2.1/unity-catalog/schemas";

    refused(
        ws,
        "POST",
        catalogs,
        json!({"name": "sales", "storage_root": "s3://primary-uc/sales"}),
        400,
        bad,
        "not under any external location",
    );
    let sales = ok(ws, "POST", catalogs, json!({"name": "sales", "storage_root": "s3://standby-uc/sales", "comment": "c"}));
    assert_eq!(sales["owner"], "local-admin@example.com");
    refused(ws, "POST", catalogs, json!({"name": "SALES"}), 409, "CATALOG_ALREADY_EXISTS", "already exists");
    refused(ws, "POST", schemas, json!({"name": "raw", "catalog_name": "nope"}), 404, "CATALOG_DOES_NOT_EXIST", "nope");
    ok(ws, "POST", schemas, json!({"name": "raw", "catalog_name": "sales"}));
    refused(ws, "POST", schemas, json!({"name": "Raw", "catalog_name": "sales"}), 409, "SCHEMA_ALREADY_EXISTS", "already exists");
    assert_eq!(ok(ws, "GET", &format!("{schemas}/sales.raw"), Value::Null)["full_name"], "sales.raw");
    refused(
        ws,
        "PATCH",
        &format!("{catalogs}/sales"),
        json!({"storage_root": "s3://standby-uc/other"}),
        400,
        bad,
        "cannot be updated",
    );
    refused(ws, "PATCH", &format!("{catalogs}/sales"), json!({"owner": "mallory"}), 404, "PRINCIPAL_DOES_NOT_EXIST", "mallory");
    assert_eq!(ok(ws, "PATCH", &format!("{catalogs}/sales"), json!({"owner": "data-eng", "comment": "d"}))["owner"], "data-eng");
    assert_eq!(ok(ws, "PATCH", &format!("{schemas}/sales.raw"), json!({"comment": "landing"}))["comment"], "landing");

    let grants = "/api/2.1/unity-catalog/permissions";
    refused(
        ws,
        "PATCH",
        &format!("{grants}/schema/sales.raw"),
        json!({"changes": [{"principal": "data-eng", "add": ["USE_CATALOG"]}]}),
        400,
        bad,
        "not applicable",
    );
    refused(
        ws,
        "PATCH",
        &format!("{grants}/schema/sales.raw"),
        json!({"changes": [{"principal": "mallory", "add": ["SELECT"]}]}),
        404,
        "PRINCIPAL_DOES_NOT_EXIST",
        "mallory",
    );
    refused(
        ws,
        "PATCH",
        &format!("{grants}/schema/sales.none"),
        json!({"changes": []}),
        404,
        "SCHEMA_DOES_NOT_EXIST",
        "sales.none",
    );
    refused(ws, "PATCH", &format!("{grants}/schema/sales.raw"), json!({"changes": [{"add": ["SELECT"]}]}), 400, bad, "principal");
    ok(
        ws,
        "PATCH",
        &format!("{grants}/catalog/sales"),
        json!({"changes": [{"principal": "data-eng", "add": ["USE_CATALOG", "BROWSE"]}]}),
    );
    let after = ok(
        ws,
        "PATCH",
        &format!("{grants}/catalog/sales"),
        json!({"changes": [{"principal": "data-eng", "add": ["SELECT"], "remove": ["BROWSE"]}]}),
    );
    assert_eq!(after["privilege_assignments"], json!([{"principal": "data-eng", "privileges": ["USE_CATALOG", "SELECT"]}]));
    let read = ok(ws, "GET", &format!("{grants}/catalog/sales"), Value::Null);
    assert_eq!(read["privilege_assignments"], after["privilege_assignments"], "the export reads what the change wrote");
    let gone = ok(
        ws,
        "PATCH",
        &format!("{grants}/catalog/sales"),
        json!({"changes": [{"principal": "data-eng", "remove": ["USE_CATALOG", "SELECT"]}]}),
    );
    assert_eq!(gone["privilege_assignments"], json!([]), "a principal with no privilege left is no assignment");

    refused(ws, "DELETE", &format!("{catalogs}/sales"), Value::Null, 400, bad, "not empty");
    ok(ws, "DELETE", &format!("{schemas}/sales.raw"), Value::Null);
    ok(ws, "DELETE", &format!("{catalogs}/sales"), Value::Null);
    refused(ws, "GET", &format!("{catalogs}/sales"), Value::Null, 404, "CATALOG_DOES_NOT_EXIST", "sales");
}

#[test]
fn site_local_values_copied_from_the_other_region_are_refused() {
    let server = start();
    let ws = server.workspace("secondary");
    ws.set_state(&seeded());
    let bad = "INVALID_PARAMETER_VALUE";
    let create = "/api/2.2/jobs/create";

    let mut zone = job(json!([notebook("a", &[])]));
    zone["job_clusters"][0]["new_cluster"]["aws_attributes"] = json!({"zone_id": "us-east-1a"});
    refused(ws, "POST", create, zone.clone(), 400, bad, "invalid zone 'us-east-1a'");
    zone["job_clusters"][0]["new_cluster"]["aws_attributes"] = json!({"zone_id": "auto"});
    ok(ws, "POST", create, zone);

    let mut profile = job(json!([notebook("a", &[])]));
    profile["job_clusters"][0]["new_cluster"]["aws_attributes"] =
        json!({"instance_profile_arn": "arn:aws:iam::111122223333:instance-profile/dbx-east"});
    refused(ws, "POST", create, profile, 400, bad, "dbx-east is not registered");
    let pool = json!({"instance_pool_name": "p", "node_type_id": "i3.xlarge", "aws_attributes": {"zone_id": "us-east-1b"}});
    refused(ws, "POST", "/api/2.0/instance-pools/create", pool, 400, bad, "invalid zone");

    let mut run_as = job(json!([notebook("a", &[])]));
    run_as["run_as"] = json!({"service_principal_name": "sp-east"});
    refused(ws, "POST", create, run_as.clone(), 404, "PRINCIPAL_DOES_NOT_EXIST", "sp-east");
    run_as["run_as"] = json!({"service_principal_name": "sp-etl"});
    ok(ws, "POST", create, run_as.clone());
    run_as["run_as"] = json!({"user_name": "etl@example.com", "service_principal_name": "sp-etl"});
    refused(ws, "POST", create, run_as, 400, bad, "exactly one");
}

#[test]
fn object_permissions_take_only_their_type_s_levels_and_one_owner() {
    let server = start();
    let ws = server.workspace("secondary");
    ws.set_state(&seeded());
    let bad = "INVALID_PARAMETER_VALUE";
    let id = ok(ws, "POST", "/api/2.2/jobs/create", job(json!([notebook("a", &[])])))["job_id"].as_i64().unwrap();
    let path = format!("/api/2.0/permissions/jobs/{id}");
    let acl = |entries: Value| json!({"access_control_list": entries});

    refused(ws, "PUT", &path, acl(json!([{"group_name": "data-eng", "permission_level": "CAN_USE"}])), 400, bad, "CAN_USE");
    refused(
        ws,
        "PUT",
        &path,
        acl(json!([{"group_name": "data-eng", "permission_level": "IS_OWNER"}])),
        400,
        bad,
        "group cannot own",
    );
    refused(
        ws,
        "PUT",
        &path,
        acl(json!([{"user_name": "etl@example.com", "permission_level": "IS_OWNER"},
                                          {"service_principal_name": "sp-etl", "permission_level": "IS_OWNER"}])),
        400,
        bad,
        "exactly one owner",
    );
    refused(
        ws,
        "PUT",
        &path,
        acl(json!([{"user_name": "etl@example.com", "group_name": "data-eng", "permission_level": "CAN_VIEW"}])),
        400,
        bad,
        "exactly one of",
    );
    refused(
        ws,
        "PUT",
        &path,
        acl(json!([{"group_name": "east-team", "permission_level": "CAN_VIEW"}])),
        404,
        "PRINCIPAL_DOES_NOT_EXIST",
        "east-team",
    );

    let level = |v: &Value, who: &str| -> Vec<String> {
        v["access_control_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| ["user_name", "group_name", "service_principal_name"].iter().any(|f| e[f] == who))
            .flat_map(|e| {
                e["all_permissions"].as_array().unwrap().iter().map(|p| p["permission_level"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    ok(
        ws,
        "PUT",
        &path,
        acl(json!([{"user_name": "etl@example.com", "permission_level": "IS_OWNER"},
                                     {"group_name": "data-eng", "permission_level": "CAN_VIEW"}])),
    );
    // PATCH adds and changes; PUT replaces every direct permission but keeps the owner it does not name.
    ok(
        ws,
        "PATCH",
        &path,
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_MANAGE_RUN"},
                                       {"service_principal_name": "sp-etl", "permission_level": "CAN_VIEW"}])),
    );
    let patched = ok(ws, "GET", &path, Value::Null);
    assert_eq!(level(&patched, "data-eng"), ["CAN_MANAGE_RUN"]);
    assert_eq!(level(&patched, "sp-etl"), ["CAN_VIEW"]);
    // A job's PUT replaces its owner too: one naming none is refused.
    refused(
        ws,
        "PUT",
        &path,
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_VIEW"}])),
        400,
        bad,
        "must have exactly one owner",
    );
    let put = ok(
        ws,
        "PUT",
        &path,
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_VIEW"},
                   {"service_principal_name": "sp-etl", "permission_level": "IS_OWNER"}])),
    );
    assert_eq!(level(&put, "sp-etl"), ["IS_OWNER"], "the new owner");
    assert!(level(&put, "etl@example.com").is_empty(), "PUT replaced the rest: {put}");
    // The inherited entry (admins, from the root /jobs/) is never replaced.
    let admins = put["access_control_list"].as_array().unwrap().iter().find(|e| e["group_name"] == "admins").unwrap();
    assert_eq!(admins["all_permissions"][0]["inherited"], true, "{put}");
    refused(ws, "PUT", "/api/2.0/permissions/jobs/424242", acl(json!([])), 404, "RESOURCE_DOES_NOT_EXIST", "424242");

    ok(
        ws,
        "PUT",
        "/api/2.0/permissions/cluster-policies/P1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_USE"}])),
    );
    refused(
        ws,
        "PUT",
        "/api/2.0/permissions/cluster-policies/P1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_MANAGE"}])),
        400,
        bad,
        "CAN_USE",
    );
    ok(
        ws,
        "PATCH",
        "/api/2.0/permissions/instance-pools/pool-1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_ATTACH_TO"}])),
    );
    // The published path of a warehouse's permissions is `warehouses/{id}` (databricks-sdk-py WarehousesAPI).
    ok(
        ws,
        "PUT",
        "/api/2.0/permissions/warehouses/w1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_MONITOR"},
                   {"user_name": "etl@example.com", "permission_level": "IS_OWNER"}])),
    );
    refused(
        ws,
        "PATCH",
        "/api/2.0/permissions/warehouses/w1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_MANAGE_RUN"}])),
        400,
        bad,
        "CAN_MANAGE_RUN",
    );
    refused(
        ws,
        "PATCH",
        "/api/2.0/permissions/instance-pools/pool-1",
        acl(json!([{"group_name": "data-eng", "permission_level": "CAN_USE"}])),
        400,
        bad,
        "CAN_USE",
    );
    let pool = ok(ws, "GET", "/api/2.0/permissions/instance-pools/pool-1", Value::Null);
    assert_eq!(pool["object_type"], "instance-pool");
    assert_eq!(level(&pool, "data-eng"), ["CAN_ATTACH_TO"]);
    refused(ws, "PUT", "/api/2.0/permissions/instance-pools/pool-9", acl(json!([])), 404, "RESOURCE_DOES_NOT_EXIST", "pool-9");
}
