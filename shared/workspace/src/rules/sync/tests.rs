use super::settings::SyncSettings;
use super::*;
use serde_json::json;

fn tag() -> (String, String) {
    ("dr".into(), "active-passive".into())
}

fn settings() -> SyncSettings {
    SyncSettings::from_value(Some(&json!({
        "zone_ids": {"us-east-1a": "us-west-2a"},
        "instance_profiles": {"arn:p/etl-use1": "arn:p/etl-usw2"},
        "storage_roots": {"s3://acme-use1/": "s3://acme-usw2/", "s3://acme-use1/deep/": "s3://deep-usw2/"},
        "run_as": {"etl@use1": "etl@usw2"}
    })))
    .unwrap()
}

fn export(kinds: &[(ObjectKind, Value)]) -> SiteExport {
    let mut e: SiteExport = SYNCED.iter().map(|k| (*k, KindObjects { complete: true, objects: vec![] })).collect();
    e.insert(ObjectKind::Clusters, KindObjects { complete: true, objects: vec![] });
    for (k, objects) in kinds {
        e.insert(*k, KindObjects { complete: true, objects: objects.as_array().cloned().unwrap_or_default() });
    }
    e
}

fn primary() -> SiteExport {
    export(&[
        (
            ObjectKind::InstancePools,
            json!([{"instance_pool_id": "pool-p1", "instance_pool_name": "etl-pool", "node_type_id": "i3.xlarge",
            "min_idle_instances": 0, "state": "ACTIVE", "stats": {"used_count": 2}, "default_tags": {"x": "y"},
            "aws_attributes": {"zone_id": "us-east-1a", "availability": "SPOT"}}]),
        ),
        (
            ObjectKind::ClusterPolicies,
            json!([{"policy_id": "pol-p1", "name": "small", "created_at_timestamp": 1, "creator_user_name": "a",
            "definition": "{\"instance_pool_id\":{\"type\":\"fixed\",\"value\":\"pool-p1\"},\"spark_version\":{\"type\":\"unlimited\"}}"}]),
        ),
        (
            ObjectKind::SqlWarehouses,
            json!([{"id": "wh-p1", "name": "bi", "cluster_size": "Small", "auto_stop_mins": 10, "state": "RUNNING",
            "jdbc_url": "jdbc:p", "creator_name": "a", "num_clusters": 1, "max_num_clusters": 1}]),
        ),
        (ObjectKind::Clusters, json!([{"cluster_id": "c-p1", "cluster_name": "shared", "cluster_source": "UI"}])),
        (
            ObjectKind::Jobs,
            json!([
                {"job_id": 11, "created_time": 5, "creator_user_name": "a", "settings": {"name": "nightly", "tags": {"team": "data"},
                    "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC", "pause_status": "UNPAUSED"},
                    "run_as": {"user_name": "etl@use1"},
                    "trigger": {"file_arrival": {"url": "s3://acme-use1/deep/in/"}, "pause_status": "UNPAUSED"},
                    "job_clusters": [{"job_cluster_key": "main", "new_cluster": {"policy_id": "pol-p1", "instance_pool_id": "pool-p1",
                        "aws_attributes": {"instance_profile_arn": "arn:p/etl-use1"}}}],
                    "tasks": [{"task_key": "report", "sql_task": {"warehouse_id": "wh-p1", "file": {"path": "r.sql"}}},
                              {"task_key": "load", "job_cluster_key": "main", "notebook_task": {"notebook_path": "/Repos/x"}}]}},
                {"job_id": 12, "settings": {"name": "adhoc", "tasks": [{"task_key": "t", "existing_cluster_id": "c-p1"}]}},
                {"job_id": 13, "settings": {"name": "pipeline", "tasks": [{"task_key": "p", "pipeline_task": {"pipeline_id": "pl"}}]}}
            ]),
        ),
    ])
}

/// What the standby's export would show after the plan was applied as written (ids handed out, output fields
/// added), placeholders resolved by name.
fn applied(plan: &SyncPlan, mut standby: SiteExport) -> SiteExport {
    for kind in SYNCED {
        for c in plan.changes.iter().filter(|c| c.kind == kind) {
            let Action::Create { call } = &c.action else { continue };
            let mut body = call.body.clone();
            let lookup = standby.clone();
            replace_placeholders(&mut body, &|k, name| {
                let (id, field) = refs::id_and_name(k)?;
                lookup[&k].objects.iter().find(|o| o[field] == json!(name)).map(|o| o[id].as_str().unwrap_or_default().to_owned())
            });
            let n = standby[&kind].objects.len();
            let object = match kind {
                ObjectKind::Jobs => json!({"job_id": 900 + n, "created_time": 9, "creator_user_name": "sync", "settings": body}),
                ObjectKind::InstancePools => {
                    let mut o = body.clone();
                    o["instance_pool_id"] = json!(format!("pool-s{n}"));
                    o["state"] = json!("ACTIVE");
                    o["default_tags"] = json!({"z": "w"});
                    o
                }
                ObjectKind::ClusterPolicies => {
                    let mut o = body.clone();
                    o["policy_id"] = json!(format!("pol-s{n}"));
                    o["created_at_timestamp"] = json!(7);
                    o
                }
                _ => {
                    let mut o = body.clone();
                    o["id"] = json!(format!("wh-s{n}"));
                    o["state"] = json!("STOPPED");
                    o["jdbc_url"] = json!("jdbc:s");
                    o
                }
            };
            standby.get_mut(&kind).unwrap().objects.push(object);
        }
    }
    standby
}

fn secondary_with_cluster() -> SiteExport {
    export(&[(ObjectKind::Clusters, json!([{"cluster_id": "c-s1", "cluster_name": "shared", "cluster_source": "UI"}]))])
}

fn change<'a>(plan: &'a SyncPlan, kind: ObjectKind, name: &str) -> &'a Action {
    &plan
        .changes
        .iter()
        .find(|c| c.kind == kind && c.name == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in {plan:#?}"))
        .action
}

#[test]
fn a_new_job_is_created_paused_tagged_and_mapped_with_output_fields_left_out() {
    let plan = plan(&primary(), &secondary_with_cluster(), &settings(), Some(&tag()));
    let Action::Create { call } = change(&plan, ObjectKind::Jobs, "nightly [team=data]") else { panic!("{plan:#?}") };
    assert_eq!(call.path, "/api/2.2/jobs/create");
    let b = &call.body;
    assert!(b.get("job_id").is_none() && b.get("created_time").is_none() && b.get("creator_user_name").is_none());
    assert_eq!(b["schedule"]["pause_status"], "PAUSED");
    assert_eq!(b["trigger"]["pause_status"], "PAUSED");
    assert_eq!(b["trigger"]["file_arrival"]["url"], "s3://deep-usw2/in/", "longest prefix wins");
    assert_eq!(b["tags"], json!({"team": "data", "dr": "active-passive"}));
    assert_eq!(b["run_as"]["user_name"], "etl@usw2");
    let cluster = &b["job_clusters"][0]["new_cluster"];
    assert_eq!(cluster["policy_id"], "${sync:cluster-policies:small}", "the policy is created by the same plan");
    assert_eq!(cluster["instance_pool_id"], "${sync:instance-pools:etl-pool}");
    assert_eq!(cluster["aws_attributes"]["instance_profile_arn"], "arn:p/etl-usw2");
    assert_eq!(b["tasks"][0]["sql_task"]["warehouse_id"], "${sync:sql-warehouses:bi}");
    assert_eq!(placeholders_in(b).len(), 3);
    // The cluster the standby has is mapped by name.
    let Action::Create { call } = change(&plan, ObjectKind::Jobs, "adhoc") else { panic!() };
    assert_eq!(call.body["tasks"][0]["existing_cluster_id"], "c-s1");
    assert!(call.body.get("tags").is_none(), "a job that never runs by itself is not tagged for activation");
}

#[test]
fn pools_policies_and_warehouses_are_created_with_their_site_local_values_mapped() {
    let plan = plan(&primary(), &secondary_with_cluster(), &settings(), Some(&tag()));
    let Action::Create { call } = change(&plan, ObjectKind::InstancePools, "etl-pool") else { panic!() };
    assert_eq!(call.body["aws_attributes"]["zone_id"], "us-west-2a");
    assert!(call.body.get("state").is_none() && call.body.get("stats").is_none() && call.body.get("default_tags").is_none());
    let Action::Create { call } = change(&plan, ObjectKind::ClusterPolicies, "small") else { panic!() };
    let def: Value = serde_json::from_str(call.body["definition"].as_str().unwrap()).unwrap();
    assert_eq!(def["instance_pool_id"]["value"], "${sync:instance-pools:etl-pool}");
    assert!(call.body.get("creator_user_name").is_none());
    let Action::Create { call } = change(&plan, ObjectKind::SqlWarehouses, "bi") else { panic!() };
    assert_eq!(call.body, json!({"name": "bi", "cluster_size": "Small", "auto_stop_mins": 10, "max_num_clusters": 1}));
    // Creates come in dependency order: policies, pools, warehouses, then jobs.
    let order: Vec<ObjectKind> = plan.changes.iter().map(|c| c.kind).collect();
    assert!(order.windows(2).all(|w| SYNCED.iter().position(|k| *k == w[0]) <= SYNCED.iter().position(|k| *k == w[1])));
}

#[test]
fn an_unmappable_reference_blocks_that_object_only() {
    let mut s = settings();
    s.zone_ids.clear();
    let plan = plan(&primary(), &export(&[]), &s, Some(&tag()));
    let Action::Blocked { reason } = change(&plan, ObjectKind::InstancePools, "etl-pool") else { panic!("{plan:#?}") };
    assert!(reason.contains("us-east-1a") && reason.contains("sync"), "{reason}");
    let Action::Blocked { reason } = change(&plan, ObjectKind::Jobs, "adhoc") else { panic!() };
    assert!(reason.contains("\"shared\"") && reason.contains("standby does not have"), "{reason}");
    let Action::Blocked { reason } = change(&plan, ObjectKind::Jobs, "pipeline") else { panic!() };
    assert!(reason.contains("pipeline"), "{reason}");
    assert!(matches!(change(&plan, ObjectKind::Jobs, "nightly [team=data]"), Action::Create { .. }));
    assert!(matches!(change(&plan, ObjectKind::SqlWarehouses, "bi"), Action::Create { .. }));
    assert!(matches!(change(&plan, ObjectKind::ClusterPolicies, "small"), Action::Create { .. }));
}

#[test]
fn a_second_plan_after_an_apply_is_empty_but_the_blocked() {
    let first = plan(&primary(), &secondary_with_cluster(), &settings(), Some(&tag()));
    assert_eq!(first.counts().get("create"), Some(&5), "{first:#?}");
    let after = applied(&first, secondary_with_cluster());
    let second = plan(&primary(), &after, &settings(), Some(&tag()));
    let left: Vec<&str> = second.changes.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(left, ["blocked"], "{second:#?}");
    assert_eq!(second.changes[0].name, "pipeline");
}

#[test]
fn a_changed_object_is_updated_with_its_fields_and_a_paused_schedule_is_not_a_change() {
    let first = plan(&primary(), &secondary_with_cluster(), &settings(), Some(&tag()));
    let mut after = applied(&first, secondary_with_cluster());
    let mut p = primary();
    let jobs = &mut p.get_mut(&ObjectKind::Jobs).unwrap().objects;
    jobs[0]["settings"]["max_concurrent_runs"] = json!(3);
    jobs[0]["settings"]["schedule"]["pause_status"] = json!("PAUSED");
    p.get_mut(&ObjectKind::SqlWarehouses).unwrap().objects[0]["auto_stop_mins"] = json!(30);
    p.get_mut(&ObjectKind::InstancePools).unwrap().objects[0]["max_capacity"] = json!(9);
    // A job the standby runs by itself is paused again.
    let nightly = after.get_mut(&ObjectKind::Jobs).unwrap().objects.iter_mut().find(|j| j["settings"]["name"] == "nightly");
    nightly.unwrap()["settings"]["schedule"]["pause_status"] = json!("UNPAUSED");
    let plan = plan(&p, &after, &settings(), Some(&tag()));
    let Action::Update { fields, call, target } = change(&plan, ObjectKind::Jobs, "nightly [team=data]") else {
        panic!("{plan:#?}")
    };
    assert_eq!(fields, &["max_concurrent_runs", "schedule"]);
    assert_eq!(call.path, "/api/2.2/jobs/reset");
    assert_eq!(call.body["job_id"], json!(target.parse::<i64>().unwrap()));
    assert_eq!(call.body["new_settings"]["schedule"]["pause_status"], "PAUSED");
    let Action::Update { fields, call, .. } = change(&plan, ObjectKind::SqlWarehouses, "bi") else { panic!() };
    assert_eq!(fields, &["auto_stop_mins"]);
    assert!(call.path.ends_with("/edit"));
    let Action::Update { call, .. } = change(&plan, ObjectKind::InstancePools, "etl-pool") else { panic!() };
    assert!(call.body.get("aws_attributes").is_none(), "edit takes only the editable fields: {call:?}");
    assert_eq!(plan.changes.iter().filter(|c| c.action.as_str() == "update").count(), 3, "{plan:#?}");
}

#[test]
fn a_fixed_pool_field_blocks_and_the_standby_s_extra_objects_are_pruned_defaults_aside() {
    let first = plan(&primary(), &secondary_with_cluster(), &settings(), Some(&tag()));
    let mut after = applied(&first, secondary_with_cluster());
    after.get_mut(&ObjectKind::InstancePools).unwrap().objects[0]["node_type_id"] = json!("i3.2xlarge");
    after.get_mut(&ObjectKind::InstancePools).unwrap().objects[0]["enable_elastic_disk"] = json!(true);
    after.get_mut(&ObjectKind::ClusterPolicies).unwrap().objects.extend([
        json!({"policy_id": "pol-x", "name": "old"}),
        json!({"policy_id": "pol-d", "name": "Personal Compute", "is_default": true}),
    ]);
    let plan = plan(&primary(), &after, &settings(), Some(&tag()));
    let Action::Blocked { reason } = change(&plan, ObjectKind::InstancePools, "etl-pool") else { panic!("{plan:#?}") };
    assert!(reason.contains("enable_elastic_disk") && !reason.contains("node_type_id"), "{reason}");
    let Action::Prune { target, call } = change(&plan, ObjectKind::ClusterPolicies, "old") else { panic!() };
    assert_eq!((target.as_str(), call.body["policy_id"].as_str()), ("pol-x", Some("pol-x")));
    assert!(!plan.changes.iter().any(|c| c.name == "Personal Compute"));
}

#[test]
fn a_partial_export_or_a_duplicate_name_is_not_planned() {
    let mut standby = secondary_with_cluster();
    standby.get_mut(&ObjectKind::Jobs).unwrap().complete = false;
    let mut p = primary();
    let pools = &mut p.get_mut(&ObjectKind::InstancePools).unwrap().objects;
    pools.push(json!({"instance_pool_id": "pool-p2", "instance_pool_name": "etl-pool"}));
    let plan = plan(&p, &standby, &settings(), Some(&tag()));
    assert!(!plan.changes.iter().any(|c| c.kind == ObjectKind::Jobs));
    assert!(plan.not_synced.iter().any(|n| n.what == "jobs" && n.reason.contains("partial")));
    let Action::Blocked { reason } = change(&plan, ObjectKind::InstancePools, "etl-pool") else { panic!() };
    assert!(reason.contains("2 objects"), "{reason}");
    assert!(plan.not_synced.iter().any(|n| n.what == "secret values"));
}

#[test]
fn the_job_matches_its_copy_whether_or_not_the_active_one_carries_the_activation_tag() {
    let job = |tags: Value| json!({"job_id": 1, "settings": {"name": "j", "tags": tags}});
    assert_eq!(
        jobs::key(&job(json!({"a": "b"})), Some(&tag())),
        jobs::key(&job(json!({"a": "b", "dr": "active-passive"})), Some(&tag()))
    );
    assert_ne!(jobs::key(&job(json!({"a": "b"})), None), jobs::key(&job(json!({"a": "c"})), None));
}

#[test]
fn placeholders_are_replaced_and_the_unknown_named() {
    let mut v = json!({"a": [placeholder(ObjectKind::InstancePools, "p")], "b": placeholder(ObjectKind::SqlWarehouses, "w")});
    let missing = replace_placeholders(&mut v, &|k, _| (k == ObjectKind::InstancePools).then(|| "id-1".to_owned()));
    assert_eq!(v["a"][0], "id-1");
    assert_eq!(missing, ["SQL warehouse w"]);
}

#[test]
fn the_sync_section_is_validated_strictly() {
    assert_eq!(SyncSettings::from_value(None).unwrap(), SyncSettings::default());
    for (bad, says) in [
        (json!([]), "expected an object"),
        (json!({"zone": {}}), "`sync.zone` is not a setting"),
        (json!({"zone_ids": {"a": 1}}), "`sync.zone_ids[\"a\"]` is a number"),
        (json!({"storage_roots": "s3://x"}), "`sync.storage_roots` is a string"),
    ] {
        let e = SyncSettings::from_value(Some(&bad)).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
    assert_eq!(settings().storage_path("s3://acme-use1/a/b").as_deref(), Some("s3://acme-usw2/a/b"));
    assert_eq!(settings().storage_path("s3://other/a"), None);
}

#[test]
fn only_a_job_that_runs_by_itself_is_tagged_and_an_operator_s_other_value_is_kept() {
    let job = |tags: Value, pause: &str| {
        json!({"job_id": 1, "settings": {"name": "j", "tags": tags,
            "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC", "pause_status": pause}}})
    };
    let settings = SyncSettings::default();
    let m = refs::Mapper::new(&export(&[]), &export(&[]), &settings);
    let body = |j: &Value| jobs::desired(j, &m, Some(&tag())).unwrap();
    assert_eq!(body(&job(json!({}), "UNPAUSED"))["tags"], json!({"dr": "active-passive"}));
    assert_eq!(body(&job(json!({}), "PAUSED"))["tags"], json!({}), "paused in the active site: not resumed by a failover");
    assert_eq!(body(&job(json!({"dr": "none"}), "UNPAUSED"))["tags"], json!({"dr": "none"}));
    assert_eq!(body(&job(json!({"dr": "none"}), "UNPAUSED"))["schedule"]["pause_status"], "PAUSED");
    let key = |tags: Value| jobs::key(&job(tags, "PAUSED"), Some(&tag()));
    assert_eq!(key(json!({})), key(json!({"dr": "active-passive"})));
    assert_ne!(key(json!({})), key(json!({"dr": "none"})));
}

fn uc_primary() -> SiteExport {
    export(&[
        (
            ObjectKind::Catalogs,
            json!([
                {"name": "sales", "comment": "sales data", "properties": {"team": "s"}, "owner": "data-eng",
                 "storage_root": "s3://acme-use1/uc/sales", "catalog_type": "MANAGED_CATALOG", "created_at": 1,
                 "metastore_id": "m-p", "securable_type": "CATALOG"},
                {"name": "odd", "storage_root": "s3://elsewhere/odd", "owner": "a"},
                {"name": "shared", "catalog_type": "DELTASHARING_CATALOG"},
                {"name": "system", "catalog_type": "SYSTEM_CATALOG"},
                {"name": "same", "owner": "a", "comment": ""}
            ]),
        ),
        (
            ObjectKind::Schemas,
            json!([
                {"name": "orders", "catalog_name": "sales", "full_name": "sales.orders", "owner": "data-eng", "comment": "o"},
                {"name": "information_schema", "catalog_name": "sales", "full_name": "sales.information_schema"}
            ]),
        ),
    ])
}

#[test]
fn catalogs_and_schemas_are_created_with_their_storage_root_mapped_and_an_unmappable_root_blocks_that_one() {
    let standby = export(&[(ObjectKind::Catalogs, json!([{"name": "same", "owner": "a", "properties": {}}]))]);
    let plan = plan(&uc_primary(), &standby, &settings(), Some(&tag()));
    let Action::Create { call } = change(&plan, ObjectKind::Catalogs, "sales") else { panic!("{plan:#?}") };
    assert_eq!((call.method, call.path.as_str()), (Method::Post, "/api/2.1/unity-catalog/catalogs"));
    assert_eq!(
        call.body,
        json!({"name": "sales", "comment": "sales data", "properties": {"team": "s"}, "owner": "data-eng",
               "storage_root": "s3://acme-usw2/uc/sales"}),
        "output fields left out, the root mapped, the owner carried for the apply's PATCH"
    );
    let Action::Blocked { reason } = change(&plan, ObjectKind::Catalogs, "odd") else { panic!() };
    assert!(reason.contains("s3://elsewhere/odd") && reason.contains("storage_roots"), "{reason}");
    let Action::Blocked { reason } = change(&plan, ObjectKind::Catalogs, "shared") else { panic!() };
    assert!(reason.contains("DELTASHARING_CATALOG"), "{reason}");
    assert!(!plan.changes.iter().any(|c| c.name == "system" || c.name == "same" || c.name.ends_with("information_schema")));
    let Action::Create { call } = change(&plan, ObjectKind::Schemas, "sales.orders") else { panic!() };
    assert_eq!(call.path, "/api/2.1/unity-catalog/schemas");
    assert_eq!(call.body, json!({"name": "orders", "catalog_name": "sales", "comment": "o", "owner": "data-eng"}));
    let first_schema = plan.changes.iter().position(|c| c.kind == ObjectKind::Schemas).unwrap();
    assert!(plan.changes[..first_schema].iter().all(|c| c.kind == ObjectKind::Catalogs), "catalogs before schemas");
}

#[test]
fn a_catalog_s_comment_properties_or_owner_is_patched_and_the_standby_s_extra_ones_pruned() {
    let standby = export(&[
        (
            ObjectKind::Catalogs,
            json!([
                {"name": "sales", "comment": "old", "properties": {"team": "s"}, "owner": "me", "storage_root": "s3://other/x",
                 "created_at": 9},
                {"name": "same", "owner": "a"},
                {"name": "gone", "owner": "a"},
                {"name": "__databricks_internal"}
            ]),
        ),
        (
            ObjectKind::Schemas,
            json!([
                {"name": "orders", "catalog_name": "sales", "full_name": "sales.orders", "owner": "data-eng", "comment": "o",
                 "properties": {"x": "y"}},
                {"name": "tmp", "catalog_name": "sales", "full_name": "sales.tmp"}
            ]),
        ),
    ]);
    let plan = plan(&uc_primary(), &standby, &settings(), Some(&tag()));
    let Action::Update { target, fields, call } = change(&plan, ObjectKind::Catalogs, "sales") else { panic!("{plan:#?}") };
    assert_eq!(target, "sales");
    assert_eq!(fields, &["comment", "owner"], "the storage root is fixed at creation: not a change");
    assert_eq!((call.method, call.path.as_str()), (Method::Patch, "/api/2.1/unity-catalog/catalogs/sales"));
    assert_eq!(call.body, json!({"comment": "sales data", "owner": "data-eng"}));
    let Action::Update { fields, call, .. } = change(&plan, ObjectKind::Schemas, "sales.orders") else { panic!() };
    assert_eq!(fields, &["properties"]);
    assert_eq!(call.body, json!({"properties": {}}), "a property map the active site lacks is cleared");
    assert_eq!(call.path, "/api/2.1/unity-catalog/schemas/sales.orders");
    let Action::Prune { target, call } = change(&plan, ObjectKind::Schemas, "sales.tmp") else { panic!() };
    assert_eq!(
        (target.as_str(), call.method, call.path.as_str()),
        ("sales.tmp", Method::Delete, "/api/2.1/unity-catalog/schemas/sales.tmp")
    );
    assert!(matches!(change(&plan, ObjectKind::Catalogs, "gone"), Action::Prune { .. }));
    assert!(!plan.changes.iter().any(|c| c.name == "same" || c.name == "__databricks_internal"), "{plan:#?}");
}

fn grants_doc(t: &str, name: &str, a: Value) -> Value {
    json!({"securable_type": t, "full_name": name, "privilege_assignments": a})
}

#[test]
fn grants_add_what_the_standby_lacks_and_remove_its_extra_only_as_a_prune() {
    let mut p = uc_primary();
    p.insert(
        ObjectKind::Grants,
        KindObjects {
            complete: true,
            objects: vec![
                grants_doc("catalog", "sales", json!([{"principal": "analysts", "privileges": ["USE_CATALOG", "BROWSE"]}])),
                grants_doc("schema", "sales.orders", json!([{"principal": "analysts", "privileges": ["SELECT"]}])),
                grants_doc("table", "main.a.t", json!([{"principal": "bi", "privileges": ["SELECT"]}])),
                grants_doc("table", "main.a.only_here", json!([{"principal": "bi", "privileges": ["SELECT"]}])),
                grants_doc("volume", "main.a.v", json!([{"principal": "bi", "privileges": ["READ_VOLUME"]}])),
            ],
        },
    );
    let mut s =
        export(&[(ObjectKind::Schemas, json!([{"name": "orders", "catalog_name": "sales", "full_name": "sales.orders"}]))]);
    s.insert(
        ObjectKind::Grants,
        KindObjects {
            complete: true,
            objects: vec![
                grants_doc(
                    "schema",
                    "sales.orders",
                    json!([{"principal": "analysts", "privileges": ["SELECT", "MODIFY"]},
                                                              {"principal": "old", "privileges": ["USE_SCHEMA"]}]),
                ),
                grants_doc("table", "main.a.t", json!([{"principal": "bi", "privileges": [{"privilege": "SELECT"}]}])),
            ],
        },
    );
    let plan = plan(&p, &s, &settings(), Some(&tag()));
    let grants: Vec<&Change> = plan.changes.iter().filter(|c| c.kind == ObjectKind::Grants).collect();
    // The catalog is created by the plan: all its grants are adds. The table equal on both sides, the table the
    // standby lacks and the volume are not planned.
    let names: Vec<(&str, &str)> = grants.iter().map(|c| (c.name.as_str(), c.action.as_str())).collect();
    assert_eq!(names, [("catalog:sales", "update"), ("schema:sales.orders", "prune")], "{plan:#?}");
    let Action::Update { call, fields, target } = &grants[0].action else { panic!() };
    assert_eq!((call.method, call.path.as_str()), (Method::Patch, "/api/2.1/unity-catalog/permissions/catalog/sales"));
    assert_eq!(call.body, json!({"changes": [{"principal": "analysts", "add": ["BROWSE", "USE_CATALOG"]}]}));
    assert_eq!((fields.as_slice(), target.as_str()), (&["analysts".to_owned()][..], "sales"));
    let Action::Prune { call, .. } = &grants[1].action else { panic!() };
    assert_eq!(
        call.body,
        json!({"changes": [{"principal": "analysts", "remove": ["MODIFY"]}, {"principal": "old", "remove": ["USE_SCHEMA"]}]})
    );
    let catalogs_last = plan.changes.iter().rposition(|c| c.kind == ObjectKind::Catalogs).unwrap();
    assert!(plan.changes.iter().position(|c| c.kind == ObjectKind::Grants).unwrap() > catalogs_last, "grants after creates");
}

fn acl_doc(object_type: &str, id: &str, entries: Value) -> Value {
    json!({"object_type": object_type, "object_id": id, "object_name": "n", "access_control_list": entries})
}

fn entry(field: &str, name: &str, level: &str, inherited: bool) -> Value {
    json!({field: name, "all_permissions": [{"permission_level": level, "inherited": inherited}]})
}

#[test]
fn an_object_s_acl_is_put_as_the_union_and_the_standby_s_extra_principals_only_pruned() {
    let admins = entry("group_name", "admins", "CAN_MANAGE", true);
    let mut p = primary();
    p.insert(
        ObjectKind::Permissions,
        KindObjects {
            complete: true,
            objects: vec![
                acl_doc(
                    "warehouses",
                    "wh-p1",
                    json!([
                        entry("user_name", "ann", "IS_OWNER", false),
                        entry("group_name", "analysts", "CAN_USE", false),
                        admins.clone()
                    ]),
                ),
                acl_doc("instance-pools", "pool-p1", json!([entry("group_name", "eng", "CAN_ATTACH_TO", false)])),
                acl_doc("jobs", "11", json!([entry("user_name", "etl@use1", "IS_OWNER", false)])),
                acl_doc("jobs", "13", json!([entry("user_name", "etl@use1", "IS_OWNER", false)])),
            ],
        },
    );
    let mut s = export(&[
        (
            ObjectKind::SqlWarehouses,
            json!([{"id": "wh-s1", "name": "bi", "cluster_size": "Small", "auto_stop_mins": 10, "max_num_clusters": 1}]),
        ),
        (ObjectKind::Clusters, json!([{"cluster_id": "c-s1", "cluster_name": "shared", "cluster_source": "UI"}])),
    ]);
    s.insert(
        ObjectKind::Permissions,
        KindObjects {
            complete: true,
            objects: vec![acl_doc(
                "warehouses",
                "wh-s1",
                json!([
                    entry("user_name", "bob", "IS_OWNER", false),
                    entry("group_name", "analysts", "CAN_VIEW", false),
                    entry("group_name", "temps", "CAN_USE", false),
                    admins
                ]),
            )],
        },
    );
    let plan = plan(&p, &s, &settings(), Some(&tag()));
    let acl_changes: Vec<&Change> = plan.changes.iter().filter(|c| c.kind == ObjectKind::Permissions).collect();
    // The warehouse both have: its owner and the analysts' level from the active site, the temps kept (update),
    // then removed only by the prune; the inherited admins never sent.
    let Action::Update { call, target, fields } = change(&plan, ObjectKind::Permissions, "warehouses:bi") else {
        panic!("{plan:#?}")
    };
    assert_eq!(
        (call.method, call.path.as_str(), target.as_str()),
        (Method::Put, "/api/2.0/permissions/warehouses/wh-s1", "wh-s1")
    );
    assert_eq!(fields, &["analysts", "ann", "bob"]);
    assert_eq!(
        call.body,
        json!({"access_control_list": [{"group_name": "analysts", "permission_level": "CAN_USE"},
            {"group_name": "temps", "permission_level": "CAN_USE"}, {"permission_level": "IS_OWNER", "user_name": "ann"}]})
    );
    let prune = acl_changes.iter().find(|c| c.name == "warehouses:bi" && c.action.as_str() == "prune").unwrap();
    let Action::Prune { call, .. } = &prune.action else { unreachable!() };
    assert!(!call.body.to_string().contains("temps") && call.body.to_string().contains("ann"), "{call:?}");
    // The pool and the job the plan creates: their ACLs after them, by placeholder.
    let Action::Update { call, .. } = change(&plan, ObjectKind::Permissions, "instance-pools:etl-pool") else { panic!() };
    assert_eq!(call.path, "/api/2.0/permissions/instance-pools/${sync:instance-pools:etl-pool}");
    assert!(acl_changes.iter().any(|c| c.name.starts_with("jobs:nightly")), "{acl_changes:#?}");
    assert_eq!(plan.changes.last().unwrap().kind, ObjectKind::Permissions, "ACLs come after their objects");
    // A blocked job (the pipeline) gets no ACL change: it will not be there.
    assert!(!acl_changes.iter().any(|c| c.name.starts_with("jobs:pipeline")));
}

#[test]
fn the_acl_is_rebased_on_the_standby_s_as_read_and_nothing_is_written_when_it_is_there() {
    let planned = json!({"access_control_list": [{"group_name": "analysts", "permission_level": "CAN_USE"}]});
    let current = json!({"access_control_list": [entry("user_name", "creator", "IS_OWNER", false),
        entry("group_name", "admins", "CAN_MANAGE", true), entry("group_name", "late", "CAN_VIEW", false)]});
    // An update keeps the owner and the principal added since the export; a prune keeps only the owner.
    let up = acls::rebase(&planned, &current, true).unwrap();
    assert_eq!(up["access_control_list"].as_array().unwrap().len(), 3, "{up}");
    let pr = acls::rebase(&planned, &current, false).unwrap();
    assert_eq!(
        pr,
        json!({"access_control_list": [{"group_name": "analysts", "permission_level": "CAN_USE"},
            {"permission_level": "IS_OWNER", "user_name": "creator"}]})
    );
    let done = json!({"access_control_list": [entry("user_name", "creator", "IS_OWNER", false),
        entry("group_name", "analysts", "CAN_USE", false), entry("group_name", "admins", "CAN_MANAGE", true)]});
    assert_eq!(acls::rebase(&planned, &done, false), None);
    assert_eq!(acls::rebase(&planned, &done, true), None);
}

#[test]
fn the_sentence_says_blocked_without_to() {
    let p = SyncPlan {
        changes: vec![
            Change { kind: ObjectKind::Jobs, name: "a".into(), action: Action::Blocked { reason: "r".into() } },
            Change {
                kind: ObjectKind::Jobs,
                name: "b".into(),
                action: Action::Create { call: Call { method: Method::Post, path: "/x".into(), body: Value::Null } },
            },
        ],
        not_synced: vec![],
    };
    assert_eq!(p.sentence(), "1 blocked, 1 to create");
}
