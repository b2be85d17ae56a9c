//! The readers of each kind: every listing and per-object read of a workspace, each bounded by the export's
//! [`Bounded`](super::Bounded) (calls in flight, rate, deadline) and gathered into its [`Gathered`](super::Gathered).

use super::{Bounded, Gathered, encode_segment, inherit, sql, str_field};
use crate::pages;
use crate::rules::{ObjectKind, identity, uc};
use dr_ports::ApiError;
use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value, json};

/// The arrays of a job's settings that `jobs/get` (API 2.2) pages together under one `next_page_token`, 100 of
/// each per page (databricks-sdk-go `service/jobs/ext_api.go`, `JobsAPI.Get`, appends all four).
pub(super) const JOB_PAGED_ARRAYS: [&str; 4] = ["tasks", "job_clusters", "parameters", "environments"];

/// The page size of `jobs/get`'s arrays, and the most `jobs/list` shows of a job's tasks and job clusters.
pub(super) const JOB_ARRAY_PAGE: usize = 100;

/// Jobs with every task, job cluster, parameter and environment: the 2.2 listing expands at most 100 tasks and
/// job clusters of a job and says `has_more` on it; `jobs/get` pages the four arrays together. A job is read
/// again by `jobs/get` when its listing says `has_more`, or shows a full page of any of the four arrays (the
/// listing's truncation of `parameters` and `environments` is not documented: a full page is taken as more).
pub(super) async fn jobs(b: &Bounded<'_>) -> Gathered {
    let listed = b.list("/api/2.2/jobs/list", &[("expand_tasks", "true".into())], "jobs", "page_token", Some("limit")).await;
    let mut out = Gathered { objects: Vec::with_capacity(listed.objects.len()), error: listed.error };
    let mut answers = stream::iter(listed.objects.into_iter().map(|job| async move {
        let truncated = job.get("has_more") == Some(&Value::Bool(true))
            || JOB_PAGED_ARRAYS.iter().any(|k| {
                job.pointer(&format!("/settings/{k}")).and_then(Value::as_array).is_some_and(|a| a.len() >= JOB_ARRAY_PAGE)
            });
        let mut job = job;
        if let Some(o) = job.as_object_mut() {
            o.remove("has_more");
        }
        if !truncated {
            return (job, None);
        }
        let Some(id) = job.get("job_id").map(|v| v.to_string()) else { return (job, None) };
        match full_job(b, &id).await {
            Ok(settings) => {
                if let Some(o) = job.as_object_mut() {
                    o.insert("settings".into(), settings);
                }
                (job, None)
            }
            Err(e) => (job, Some(e)),
        }
    }))
    .buffered(16);
    while let Some((job, error)) = answers.next().await {
        out.objects.push(job);
        if out.error.is_none() {
            out.error = error;
        }
    }
    out
}

/// A job's settings over every page of `jobs/get`: the first page's settings, each later page's four arrays
/// appended. A token answered twice is an error (a truncated job would read as drift), never a silent stop.
pub(super) async fn full_job(b: &Bounded<'_>, id: &str) -> Result<Value, ApiError> {
    const PATH: &str = "/api/2.2/jobs/get";
    let mut settings: Option<Value> = None;
    let mut token: Option<String> = None;
    for _ in 0..pages::MAX_PAGES {
        let mut q = vec![("job_id", id.to_owned())];
        if let Some(t) = &token {
            q.push(("page_token", t.clone()));
        }
        let page = b.get(PATH, &q).await?;
        let page_settings = page.get("settings").cloned().unwrap_or_else(|| json!({}));
        match &mut settings {
            None => settings = Some(page_settings),
            Some(all) => {
                for key in JOB_PAGED_ARRAYS {
                    let Some(Value::Array(more)) = page_settings.get(key) else { continue };
                    match all.get_mut(key) {
                        Some(Value::Array(have)) => have.extend(more.iter().cloned()),
                        _ => {
                            if let Some(o) = all.as_object_mut() {
                                o.insert(key.to_owned(), Value::Array(more.clone()));
                            }
                        }
                    }
                }
            }
        }
        match page.get("next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            Some(next) if token.as_deref() == Some(next) => {
                return Err(ApiError::BadAnswer { path: PATH.into(), problem: "the same next_page_token twice".into() });
            }
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(settings.unwrap_or_else(|| json!({}))),
        }
    }
    Err(ApiError::BadAnswer { path: PATH.into(), problem: format!("more than {} pages", pages::MAX_PAGES) })
}

/// Clusters people and automation made; job clusters (`cluster_source: JOB`) live for one run and are not
/// configuration to recover.
pub(super) async fn clusters(b: &Bounded<'_>) -> Gathered {
    let mut g = b.list("/api/2.1/clusters/list", &[], "clusters", "page_token", Some("page_size")).await;
    g.objects.retain(|c| str_field(c, "cluster_source") != Some("JOB"));
    g
}

/// Catalogs, then the schemas of each, then the tables and volumes of each schema. Databricks' own catalogs
/// (`system`, `samples`, `__databricks_internal`) and every `information_schema` are left out
/// ([`crate::rules::is_builtin_catalog`]): nobody recovers them, and their tables' grants alone would be
/// thousands of calls. Tables are listed without their columns (`omit_columns`,
/// https://docs.databricks.com/api/workspace/tables/list): a wide table's columns are most of its answer.
pub(super) async fn catalog_tree(b: &Bounded<'_>) -> (Gathered, Gathered, Gathered, Gathered) {
    let mut catalogs = b.list("/api/2.1/unity-catalog/catalogs", &[], "catalogs", "page_token", Some("max_results")).await;
    catalogs.objects.retain(|c| !crate::rules::is_builtin_catalog(c));
    b.progress.finished(ObjectKind::Catalogs, &catalogs);
    let (schemas, tables, volumes) = subtree(b, &catalogs).await;
    (catalogs, schemas, tables, volumes)
}

/// The schemas of `catalogs`, then the tables and volumes of each schema (each inheriting its parent's error).
pub(super) async fn subtree(b: &Bounded<'_>, catalogs: &Gathered) -> (Gathered, Gathered, Gathered) {
    let names: Vec<String> = catalogs.objects.iter().filter_map(|c| str_field(c, "name")).map(str::to_owned).collect();
    let schemas = b
        .fan_out(names, |catalog| async move {
            b.list("/api/2.1/unity-catalog/schemas", &[("catalog_name", catalog)], "schemas", "page_token", Some("max_results"))
                .await
        })
        .await;
    let mut schemas = inherit(schemas, catalogs, "/api/2.1/unity-catalog/schemas");
    schemas.objects.retain(|s| !crate::rules::is_builtin_schema(s));
    b.progress.finished(ObjectKind::Schemas, &schemas);
    let pairs: Vec<(String, String)> = schemas
        .objects
        .iter()
        .filter_map(|s| Some((str_field(s, "catalog_name")?.to_owned(), str_field(s, "name")?.to_owned())))
        .collect();
    let (tables, volumes) = tokio::join!(
        tables_of(b, &pairs),
        b.fan_out(pairs.clone(), |(c, s)| async move {
            let q = [("catalog_name", c), ("schema_name", s)];
            b.list("/api/2.1/unity-catalog/volumes", &q, "volumes", "page_token", Some("max_results")).await
        })
    );
    let mut tables = inherit(tables, &schemas, "/api/2.1/unity-catalog/tables");
    // One shape and one order whichever way they were read (`crate::rules::uc`).
    tables.objects = tables.objects.iter().map(uc::table_document).collect();
    tables.objects.sort_by(|a, b| str_field(a, "full_name").cmp(&str_field(b, "full_name")));
    let volumes = inherit(volumes, &schemas, "/api/2.1/unity-catalog/volumes");
    b.progress.finished(ObjectKind::Tables, &tables);
    b.progress.finished(ObjectKind::Volumes, &volumes);
    (schemas, tables, volumes)
}

/// The tables of the schemas `pairs`: from `information_schema` when the site names a SQL warehouse (the rows of
/// other schemas left out, as the REST path never lists them), else one listing per schema. A statement that
/// fails falls back to the listings: the warehouse is an accelerator, never a reason for a partial export.
pub(super) async fn tables_of(b: &Bounded<'_>, pairs: &[(String, String)]) -> Gathered {
    if let Some(warehouse) = b.warehouse {
        let mut catalogs: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
        catalogs.sort_unstable();
        catalogs.dedup();
        let reads = stream::iter(catalogs.into_iter().map(|c| sql::rows(b, warehouse, sql::TABLES, c))).buffered(8);
        let read: Result<Vec<Vec<Map<String, Value>>>, ApiError> = reads.collect::<Vec<_>>().await.into_iter().collect();
        match read.map(|per_catalog| per_catalog.concat()) {
            Ok(rows) => {
                let wanted: std::collections::HashSet<(&str, &str)> =
                    pairs.iter().map(|(c, s)| (c.as_str(), s.as_str())).collect();
                let objects = rows
                    .iter()
                    .filter_map(uc::table_from_information_schema)
                    .filter(|t| {
                        matches!((str_field(t, "catalog_name"), str_field(t, "schema_name")), (Some(c), Some(s)) if wanted.contains(&(c, s)))
                    })
                    .collect();
                return Gathered::ok(objects);
            }
            Err(e) => tracing::warn!(error = %e, "tables not read through the SQL warehouse: listed schema by schema"),
        }
    }
    b.fan_out(pairs.to_vec(), |(c, s)| async move {
        let q = [("catalog_name", c), ("schema_name", s), ("omit_columns", "true".to_owned())];
        b.list("/api/2.1/unity-catalog/tables", &q, "tables", "page_token", Some("max_results")).await
    })
    .await
}

/// The direct grants of every catalog, schema and table from `information_schema` (three statements), by
/// securable type and full name; `None` without a warehouse, or when a statement failed (the `permissions`
/// calls then read them).
pub(super) async fn bulk_grants(
    b: &Bounded<'_>,
    catalogs: &[String],
) -> Option<std::collections::HashMap<&'static str, uc::Grants>> {
    let warehouse = b.warehouse?;
    let statements = sql::GRANTS.iter().flat_map(|g| catalogs.iter().map(move |c| (g, c.as_str())));
    let reads = stream::iter(statements.map(|((securable, statement, names), catalog)| async move {
        sql::rows(b, warehouse, statement, catalog)
            .await
            .map(|rows| (*securable, uc::grants_from_information_schema(&rows, names)))
    }))
    .buffered(8)
    .collect::<Vec<_>>()
    .await;
    let mut all: std::collections::HashMap<&'static str, uc::Grants> = std::collections::HashMap::new();
    let read: Result<(), ApiError> = reads.into_iter().try_for_each(|r| {
        let (securable, grants) = r?;
        all.entry(securable).or_default().extend(grants);
        Ok(())
    });
    match read.map(|()| all) {
        Ok(all) => Some(all),
        Err(e) => {
            tracing::warn!(error = %e, "grants not read through the SQL warehouse: read securable by securable");
            None
        }
    }
}

/// Vector search endpoints, then the indexes of each. A workspace without vector search answers 404 or
/// `FEATURE_DISABLED`: both kinds are then skipped.
pub(super) async fn vector_search(b: &Bounded<'_>) -> (Gathered, Gathered) {
    let endpoints = b.list("/api/2.0/vector-search/endpoints", &[], "endpoints", "page_token", None).await;
    let names: Vec<String> = endpoints.objects.iter().filter_map(|e| str_field(e, "name")).map(str::to_owned).collect();
    let indexes = b
        .fan_out(names, |endpoint| async move {
            b.list("/api/2.0/vector-search/indexes", &[("endpoint_name", endpoint)], "vector_indexes", "page_token", None).await
        })
        .await;
    let indexes = match &endpoints.error {
        Some(e) if e.is_absent() && endpoints.objects.is_empty() => Gathered { objects: Vec::new(), error: Some(e.clone()) },
        _ => inherit(indexes, &endpoints, "/api/2.0/vector-search/indexes"),
    };
    b.progress.finished(ObjectKind::VectorSearchEndpoints, &endpoints);
    b.progress.finished(ObjectKind::VectorSearchIndexes, &indexes);
    (endpoints, indexes)
}

/// Whether a workspace object is a Git folder: `object_type` `REPO`, or a `DIRECTORY` whose
/// `directory_info.is_git_folder` is true (a Git folder with Git CLI access). Source: "Identify Git folders in
/// Workspace API responses", https://docs.databricks.com/gcp/en/repos/migrate-list-repos; ObjectInfo,
/// https://docs.databricks.com/api/workspace/workspace/list.
pub(super) fn is_git_folder(o: &Value) -> bool {
    match str_field(o, "object_type") {
        Some("REPO") => true,
        Some("DIRECTORY") => o.pointer("/directory_info/is_git_folder") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// Whether a path is the `/Repos` folder or under it (its directories only hold Git folders).
pub(super) fn under_repos_folder(path: &str) -> bool {
    ["/Repos", "/Workspace/Repos"].iter().any(|r| path == *r || path.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
}

/// The workspace tree, directory by directory, from `/`: the Git folders wherever they live (each read by
/// `GET /api/2.0/repos/{object_id}` for its remote, branch and commit), and every other object outside them and
/// outside `/Repos` (the notebooks and files no Git remote holds). A Git folder's content is Git's: not walked.
///
/// The deprecated `GET /api/2.0/repos` is not used: it lists only the Git folders under `/Workspace/Repos` that
/// the caller can manage, not those in users' homes or `/Shared`
/// (https://docs.databricks.com/gcp/en/repos/migrate-list-repos).
pub(super) async fn workspace_tree(b: &Bounded<'_>) -> (Gathered, Gathered) {
    let mut objects = Gathered::ok(Vec::new());
    let mut folders: Vec<Value> = Vec::new();
    let mut directories = vec!["/".to_owned()];
    while !directories.is_empty() {
        let level = b
            .fan_out(std::mem::take(&mut directories), |path| async move {
                b.list("/api/2.0/workspace/list", &[("path", path)], "objects", "page_token", None).await
            })
            .await;
        let mut kept = Vec::with_capacity(level.objects.len());
        for o in level.objects {
            if is_git_folder(&o) {
                folders.push(o);
                continue;
            }
            let path = str_field(&o, "path").unwrap_or_default().to_owned();
            if str_field(&o, "object_type") == Some("DIRECTORY") {
                directories.push(path.clone());
            }
            if !under_repos_folder(&path) {
                kept.push(o);
            }
        }
        objects.absorb(Gathered { objects: kept, error: level.error });
    }
    let walk_error = objects.error.clone();
    let mut repos = b
        .fan_out(folders, |folder| async move {
            let id = match folder.get("object_id") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => {
                    let problem = format!("Git folder {} has no object_id", str_field(&folder, "path").unwrap_or("?"));
                    return Gathered {
                        objects: Vec::new(),
                        error: Some(ApiError::BadAnswer { path: "/api/2.0/workspace/list".into(), problem }),
                    };
                }
            };
            match b.get(&format!("/api/2.0/repos/{}", encode_segment(&id)), &[]).await {
                Ok(repo) => Gathered::ok(vec![repo]),
                Err(e) => Gathered { objects: Vec::new(), error: Some(e) },
            }
        })
        .await;
    if repos.error.is_none()
        && let Some(e) = walk_error
    {
        repos.error = Some(ApiError::BadAnswer { path: "repos".into(), problem: format!("listed from a partial listing ({e})") });
    }
    (repos, objects)
}

/// Secret scopes with their ACLs; the secrets themselves are never read.
pub(super) async fn secret_scopes(b: &Bounded<'_>) -> Gathered {
    let scopes = b.list("/api/2.0/secrets/scopes/list", &[], "scopes", "page_token", None).await;
    let error = scopes.error.clone();
    let mut out = b
        .fan_out(scopes.objects, |scope| async move {
            let Some(name) = str_field(&scope, "name").map(str::to_owned) else { return Gathered::ok(vec![scope]) };
            let acls = b.list("/api/2.0/secrets/acls/list", &[("scope", name.clone())], "items", "page_token", None).await;
            let mut entry = Map::new();
            entry.insert("name".into(), json!(name));
            entry.insert("backend_type".into(), scope.get("backend_type").cloned().unwrap_or(Value::Null));
            entry.insert("acls".into(), Value::Array(acls.objects));
            Gathered { objects: vec![Value::Object(entry)], error: acls.error }
        })
        .await;
    if out.error.is_none() {
        out.error = error;
    }
    out
}

/// The grants of every securable listed: `{securable_type, full_name, privilege_assignments}` each.
pub(super) async fn grants(b: &Bounded<'_>, sources: [(&Gathered, &'static str); 6]) -> Gathered {
    let mut targets: Vec<(&'static str, String)> = Vec::new();
    let mut inherited: Option<ApiError> = None;
    for (g, securable) in sources {
        let key = if matches!(securable, "external_location" | "storage_credential" | "catalog") { "name" } else { "full_name" };
        targets.extend(g.objects.iter().filter_map(|o| str_field(o, key)).map(|n| (securable, n.to_owned())));
        if inherited.is_none()
            && let Some(e) = &g.error
            && !(e.is_absent() && g.objects.is_empty())
        {
            inherited = Some(e.clone());
        }
    }
    let catalogs: Vec<String> = sources[0].0.objects.iter().filter_map(|o| str_field(o, "name")).map(str::to_owned).collect();
    let bulk = bulk_grants(b, &catalogs).await;
    let bulk = &bulk;
    let mut out = b
        .fan_out(targets, |(securable, name)| async move {
            if let Some(by_type) = bulk
                && let Some(grants) = by_type.get(securable)
            {
                let assignments = uc::assignments_of(grants.get(&name));
                return Gathered::ok(vec![json!({
                    "securable_type": securable,
                    "full_name": name,
                    "privilege_assignments": assignments,
                })]);
            }
            grant_of(b, securable, &name).await
        })
        .await;
    if out.error.is_none()
        && let Some(e) = inherited
    {
        out.error = Some(ApiError::BadAnswer { path: "grants".into(), problem: format!("listed from a partial listing ({e})") });
    }
    out
}

/// The ACLs of every job, cluster, SQL warehouse, cluster policy and instance pool listed, each named by its
/// object's stable identity (ids differ between sites).
pub(super) async fn permissions(b: &Bounded<'_>, sources: AclSources<'_>) -> Gathered {
    let targets = acl_targets(sources);
    let inherited = sources.into_iter().find_map(|g| g.error.clone());
    let mut out = b.fan_out(targets, |(object_type, id, name)| async move { acl_of(b, object_type, &id, &name).await }).await;
    if out.error.is_none()
        && let Some(e) = inherited
    {
        out.error =
            Some(ApiError::BadAnswer { path: "permissions".into(), problem: format!("listed from a partial listing ({e})") });
    }
    out
}

/// The listings whose objects' ACLs are read: jobs, clusters, SQL warehouses, cluster policies, instance pools.
pub(super) type AclSources<'g> = [&'g Gathered; 5];

/// The objects whose ACLs are exported: every job, cluster, SQL warehouse, cluster policy and instance pool
/// listed, as `(object_type, id, name)` (the name their stable identity: ids differ between sites). The object
/// types are the REST paths' (`/api/2.0/permissions/{object_type}/{id}`; databricks-sdk-py `WarehousesAPI`,
/// `ClusterPoliciesAPI`, `InstancePoolsAPI` `get_permissions`: `warehouses`, `cluster-policies`, `instance-pools`).
pub(super) fn acl_targets(sources: AclSources<'_>) -> Vec<(&'static str, String, String)> {
    let [jobs, clusters, warehouses, policies, pools] = sources;
    let mut targets = Vec::new();
    for (g, kind, object_type, id_key) in [
        (jobs, ObjectKind::Jobs, "jobs", "job_id"),
        (clusters, ObjectKind::Clusters, "clusters", "cluster_id"),
        (warehouses, ObjectKind::SqlWarehouses, "warehouses", "id"),
        (policies, ObjectKind::ClusterPolicies, "cluster-policies", "policy_id"),
        (pools, ObjectKind::InstancePools, "instance-pools", "instance_pool_id"),
    ] {
        for o in &g.objects {
            let id = match o.get(id_key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            let name = identity::of(kind, o).unwrap_or_else(|| format!("{object_type}/{id}"));
            targets.push((object_type, id, name));
        }
    }
    targets
}

/// The ACL of one job, cluster, warehouse, policy or pool: `{object_type, object_name, object_id, access_control_list}`.
pub(super) async fn acl_of(b: &Bounded<'_>, object_type: &str, id: &str, name: &str) -> Gathered {
    let path = format!("/api/2.0/permissions/{object_type}/{}", encode_segment(id));
    match b.get(&path, &[]).await {
        Ok(answer) => Gathered::ok(vec![json!({
            "object_type": object_type,
            "object_name": name,
            "object_id": id,
            "access_control_list": answer.get("access_control_list").cloned().unwrap_or(json!([])),
        })]),
        Err(e) => Gathered { objects: Vec::new(), error: Some(e) },
    }
}

/// The grants of one securable by its `permissions` call: `{securable_type, full_name, privilege_assignments}`.
pub(super) async fn grant_of(b: &Bounded<'_>, securable: &str, name: &str) -> Gathered {
    let path = format!("/api/2.1/unity-catalog/permissions/{securable}/{}", encode_segment(name));
    match b.get(&path, &[]).await {
        Ok(answer) => Gathered::ok(vec![json!({
            "securable_type": securable,
            "full_name": name,
            "privilege_assignments": uc::canonical_assignments(answer.get("privilege_assignments").unwrap_or(&json!([]))),
        })]),
        Err(e) => Gathered { objects: Vec::new(), error: Some(e) },
    }
}
