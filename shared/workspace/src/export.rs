//! One site's export: every kind of [`ObjectKind`], every page, a bounded number of calls in flight, one
//! overall deadline. What the answers mean (identity, drift) is the domain's; this module only fetches.
//!
//! The order: one probe (the metastore summary) decides whether the workspace answers at all, so that a
//! workspace that is down costs one call's retries, not 21 kinds' worth; then every independent listing at
//! once, and the listings that depend on another's answer (schemas of catalogs, tables and volumes of
//! schemas, indexes of endpoints, grants and permissions of what was listed) as soon as it is in.

mod kinds;
pub mod parts;
mod sql;

use self::kinds::{
    acl_of, acl_targets, bulk_grants, catalog_tree, clusters, grant_of, grants, jobs, permissions, secret_scopes, subtree,
    vector_search, workspace_tree,
};
use super::pages::{self, Listing};
use crate::rules::{ExportStatus, ObjectKind};
use dr_ports::{ApiError, WorkspaceApi};
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// How an export is bounded.
#[derive(Debug, Clone, Copy)]
pub struct ExportLimits {
    /// Calls in flight at once, all listings of the site together.
    pub concurrency: usize,
    /// The whole site's export; what is not in by then is `partial`.
    pub deadline: std::time::Duration,
    /// Page size asked of every paginated listing (the APIs cap it: jobs at 100).
    pub page_size: u32,
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits { concurrency: 32, deadline: std::time::Duration::from_secs(120), page_size: 100 }
    }
}

/// The export of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindExport {
    /// Which kind.
    pub kind: ObjectKind,
    /// Complete, partial (with the error) or skipped (with the reason).
    pub status: ExportStatus,
    /// The objects as the API gave them (grants, permissions and secret scopes as documented in
    /// `crate::rules::identity`).
    pub objects: Vec<Value>,
}

/// The export of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteObjects {
    /// Every kind, in [`ObjectKind::ALL`] order.
    pub kinds: Vec<KindExport>,
    /// Calls made (pages included; the adapter's retries not).
    pub requests: u32,
}

impl SiteObjects {
    /// Every kind skipped for the same reason (no credentials, the workspace does not answer).
    pub fn skipped(reason: &str) -> SiteObjects {
        let kinds = ObjectKind::ALL
            .into_iter()
            .map(|kind| KindExport { kind, status: ExportStatus::Skipped { reason: reason.to_owned() }, objects: Vec::new() })
            .collect();
        SiteObjects { kinds, requests: 0 }
    }

    /// The export of `kind`.
    pub fn kind(&self, kind: ObjectKind) -> Option<&KindExport> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// What an export has done so far, readable while it runs: the calls made, and each kind that is in (its
/// status and object count). `status` shows it, so that an export that runs long or is cut short by the
/// invocation's end says how far it got.
#[derive(Debug, Default)]
pub struct Progress {
    requests: AtomicU32,
    done: Mutex<BTreeMap<ObjectKind, (ExportStatus, usize)>>,
    changed: Notify,
    cut_short: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Calls made so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The kinds that are in, with their status and count; a kind absent is still pending.
    pub fn done(&self) -> BTreeMap<ObjectKind, (ExportStatus, usize)> {
        // A poisoned lock only means a panicking writer: what it held is still the best answer.
        self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether the deadline refused or cut a call: what is partial may only be so for want of time.
    pub fn cut_short(&self) -> bool {
        self.cut_short.load(Ordering::Relaxed)
    }

    /// Waits until a kind is in (the caller bounds the wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn finished(&self, kind: ObjectKind, g: &Gathered) {
        let status = g.status();
        self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(kind, (status, g.objects.len()));
        self.changed.notify_waiters();
    }
}

/// What a listing gathered before it ended: its objects, and the error that ended it early, if one did.
struct Gathered {
    objects: Vec<Value>,
    error: Option<ApiError>,
}

impl Gathered {
    fn ok(objects: Vec<Value>) -> Gathered {
        Gathered { objects, error: None }
    }

    /// A child listing's error is the kind's: the kind is partial. A 404 of one child (a schema dropped between
    /// the two listings) is not an error: it is gone.
    fn absorb(&mut self, other: Gathered) {
        self.objects.extend(other.objects);
        if let Some(e) = other.error
            && !e.is_absent()
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }

    fn status(&self) -> ExportStatus {
        match &self.error {
            None => ExportStatus::Complete,
            Some(e) if e.is_absent() && self.objects.is_empty() => {
                ExportStatus::Skipped { reason: format!("not available in this workspace ({e})") }
            }
            Some(e) => ExportStatus::Partial { error: e.to_string() },
        }
    }

    fn into_export(self, kind: ObjectKind) -> KindExport {
        KindExport { kind, status: self.status(), objects: self.objects }
    }
}

/// The API behind the bounds: a permit per call, and the overall deadline on every call.
struct Bounded<'a> {
    api: &'a dyn WorkspaceApi,
    permits: Semaphore,
    deadline: Instant,
    progress: &'a Progress,
    page_size: u32,
    /// The site's SQL warehouse for reading tables and grants in bulk ([`sql`]), if it names one.
    warehouse: Option<&'a str>,
}

impl Bounded<'_> {
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Timeout(path.to_owned()))?;
        if Instant::now() >= self.deadline {
            // Past the deadline nothing is sent: every listing still waiting ends at once.
            return Err(self.out_of_time(path));
        }
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout_at(self.deadline, self.api.get(path, query)).await {
            Ok(answer) => answer,
            Err(_) => Err(self.out_of_time(path)),
        }
    }

    /// A POST under the same bounds. Only the export's SQL statements are posted: a read-only SELECT sent twice
    /// reads twice, so it is retried as idempotent (the repeat leaves a statement nobody polls, which expires).
    async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Timeout(path.to_owned()))?;
        if Instant::now() >= self.deadline {
            return Err(self.out_of_time(path));
        }
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout_at(self.deadline, self.api.post(path, body, dr_ports::Idempotency::Idempotent)).await {
            Ok(answer) => answer,
            Err(_) => Err(self.out_of_time(path)),
        }
    }

    /// The deadline's error, noted in the progress: a carried export runs such a part again with more time.
    fn out_of_time(&self, path: &str) -> ApiError {
        self.progress.cut_short.store(true, Ordering::Relaxed);
        ApiError::Timeout(format!("{path} (the export's overall deadline)"))
    }

    /// Every page of a listing ([`pages::every_page`]): `items` is the array's key, `page_param` the request's
    /// page parameter (`page_token`; the Repos API names it `next_page_token`), `size_param` the page size's
    /// (if any). An error keeps what came before it: the kind is `partial`.
    async fn list(
        &self,
        path: &str,
        base: &[(&str, String)],
        items: &str,
        page_param: &str,
        size_param: Option<&str>,
    ) -> Gathered {
        let listing = Listing { path, items, page_param, size: size_param.map(|p| (p, self.page_size)) };
        let (objects, error) = pages::every_page(listing, base, |q| async move { self.get(path, &q).await }).await;
        Gathered { objects, error }
    }

    /// Runs `f` over `inputs` with the permits as the only bound, gathering every answer.
    async fn fan_out<T, F, Fut>(&self, inputs: Vec<T>, f: F) -> Gathered
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Gathered>,
    {
        let mut all = Gathered::ok(Vec::new());
        // The semaphore bounds the calls; this only bounds the futures alive at once.
        let mut answers = stream::iter(inputs.into_iter().map(f)).buffered(64);
        while let Some(g) = answers.next().await {
            all.absorb(g);
        }
        all
    }

    /// Runs `listing`, then records its kind as in.
    async fn kind(&self, kind: ObjectKind, listing: impl std::future::Future<Output = Gathered>) -> Gathered {
        let g = listing.await;
        self.progress.finished(kind, &g);
        g
    }
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// Exports every kind of one site through `api`.
pub async fn export_site(api: &dyn WorkspaceApi, limits: ExportLimits) -> SiteObjects {
    export_site_with(api, limits, &Progress::default(), None).await
}

/// [`export_site`], recording in `progress` the calls made and each kind as soon as it is in; with
/// `sql_warehouse` (the site's `export.sql_warehouse_id`), tables and the grants of catalogs, schemas and tables
/// are read in bulk from `system.information_schema` on that warehouse, into the same documents.
pub async fn export_site_with(
    api: &dyn WorkspaceApi,
    limits: ExportLimits,
    progress: &Progress,
    sql_warehouse: Option<&str>,
) -> SiteObjects {
    let b = Bounded {
        api,
        permits: Semaphore::new(limits.concurrency.max(1)),
        deadline: Instant::now() + limits.deadline,
        progress,
        page_size: limits.page_size.clamp(1, 100),
        warehouse: sql_warehouse,
    };
    // The probe: the metastore summary is one small answer every Unity Catalog workspace gives.
    let metastore = match b.get("/api/2.1/unity-catalog/metastore_summary", &[]).await {
        Ok(m) => Gathered::ok(vec![m]),
        Err(e) if e.is_site_wide() => {
            let mut out = SiteObjects::skipped(&format!("the workspace did not answer: {e}"));
            out.requests = progress.requests();
            return out;
        }
        Err(e) => Gathered { objects: Vec::new(), error: Some(e) },
    };
    progress.finished(ObjectKind::Metastore, &metastore);
    let b = &b;
    let (jobs, clusters, policies, pools, warehouses) = independent(b).await;
    let (catalog_tree, (locations, credentials, models, serving)) = tokio::join!(catalog_tree(b), unity_extras(b));
    let (vector, (repos, objects), scopes) =
        tokio::join!(vector_search(b), workspace_tree(b), b.kind(ObjectKind::SecretScopes, secret_scopes(b)));
    for (kind, g) in [(ObjectKind::Repos, &repos), (ObjectKind::WorkspaceObjects, &objects)] {
        progress.finished(kind, g);
    }
    let (catalogs, schemas, tables, volumes) = catalog_tree;
    let (grants, permissions) = tokio::join!(
        b.kind(
            ObjectKind::Grants,
            grants(
                b,
                [
                    (&catalogs, "catalog"),
                    (&schemas, "schema"),
                    (&tables, "table"),
                    (&volumes, "volume"),
                    (&locations, "external_location"),
                    (&credentials, "storage_credential")
                ]
            )
        ),
        b.kind(ObjectKind::Permissions, permissions(b, [&jobs, &clusters, &warehouses, &policies, &pools]))
    );
    let (vs_endpoints, vs_indexes) = vector;
    let mut kinds = Vec::with_capacity(ObjectKind::ALL.len());
    for (kind, g) in [
        (ObjectKind::Jobs, jobs),
        (ObjectKind::Clusters, clusters),
        (ObjectKind::ClusterPolicies, policies),
        (ObjectKind::InstancePools, pools),
        (ObjectKind::SqlWarehouses, warehouses),
        (ObjectKind::Metastore, metastore),
        (ObjectKind::Catalogs, catalogs),
        (ObjectKind::Schemas, schemas),
        (ObjectKind::Tables, tables),
        (ObjectKind::Volumes, volumes),
        (ObjectKind::ExternalLocations, locations),
        (ObjectKind::StorageCredentials, credentials),
        (ObjectKind::Grants, grants),
        (ObjectKind::RegisteredModels, models),
        (ObjectKind::ServingEndpoints, serving),
        (ObjectKind::VectorSearchEndpoints, vs_endpoints),
        (ObjectKind::VectorSearchIndexes, vs_indexes),
        (ObjectKind::Repos, repos),
        (ObjectKind::WorkspaceObjects, objects),
        (ObjectKind::SecretScopes, scopes),
        (ObjectKind::Permissions, permissions),
    ] {
        kinds.push(g.into_export(kind));
    }
    SiteObjects { kinds, requests: progress.requests() }
}

/// The listings that depend on no other: jobs, clusters, cluster policies, instance pools, SQL warehouses.
async fn independent(b: &Bounded<'_>) -> (Gathered, Gathered, Gathered, Gathered, Gathered) {
    tokio::join!(
        b.kind(ObjectKind::Jobs, jobs(b)),
        b.kind(ObjectKind::Clusters, clusters(b)),
        b.kind(ObjectKind::ClusterPolicies, b.list("/api/2.0/policies/clusters/list", &[], "policies", "page_token", None)),
        b.kind(ObjectKind::InstancePools, b.list("/api/2.0/instance-pools/list", &[], "instance_pools", "page_token", None)),
        b.kind(ObjectKind::SqlWarehouses, b.list("/api/2.0/sql/warehouses", &[], "warehouses", "page_token", Some("page_size")))
    )
}

/// External locations, storage credentials, registered models and serving endpoints.
async fn unity_extras(b: &Bounded<'_>) -> (Gathered, Gathered, Gathered, Gathered) {
    tokio::join!(
        b.kind(
            ObjectKind::ExternalLocations,
            b.list("/api/2.1/unity-catalog/external-locations", &[], "external_locations", "page_token", Some("max_results"))
        ),
        b.kind(
            ObjectKind::StorageCredentials,
            b.list("/api/2.1/unity-catalog/storage-credentials", &[], "storage_credentials", "page_token", Some("max_results"))
        ),
        b.kind(
            ObjectKind::RegisteredModels,
            b.list("/api/2.1/unity-catalog/models", &[], "registered_models", "page_token", Some("max_results"))
        ),
        b.kind(ObjectKind::ServingEndpoints, b.list("/api/2.0/serving-endpoints", &[], "endpoints", "page_token", None)),
    )
}

/// A listing that depends on another's answer is no more complete than it: it inherits its error.
fn inherit(mut child: Gathered, parent: &Gathered, what: &str) -> Gathered {
    if child.error.is_none()
        && let Some(e) = &parent.error
        && !(e.is_absent() && parent.objects.is_empty())
    {
        child.error =
            Some(ApiError::BadAnswer { path: what.to_owned(), problem: format!("listed from a partial listing ({e})") });
    }
    child
}

/// Percent-encodes one path segment (names may hold spaces, `/` never does in these APIs but is encoded too).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// Canned answers by `path?query` (query in the order the export sends it, without the page size); a path
    /// with no answer is an empty object (every listing empty). Tracks the calls in flight.
    #[derive(Default)]
    struct Canned {
        answers: BTreeMap<String, Result<Value, ApiError>>,
        delay_ms: u64,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        calls: Mutex<Vec<String>>,
    }

    impl Canned {
        fn with(mut self, key: &str, answer: Value) -> Self {
            self.answers.insert(key.to_owned(), Ok(answer));
            self
        }
        fn failing(mut self, key: &str, e: ApiError) -> Self {
            self.answers.insert(key.to_owned(), Err(e));
            self
        }
    }

    impl WorkspaceApi for Canned {
        fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if self.delay_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(self.delay_ms)).await;
                }
                let q: Vec<String> = query
                    .iter()
                    .filter(|(k, _)| !matches!(*k, "limit" | "page_size" | "max_results"))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let key = if q.is_empty() { path.to_owned() } else { format!("{path}?{}", q.join("&")) };
                self.calls.lock().unwrap().push(key.clone());
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.answers.get(&key).cloned().unwrap_or(Ok(json!({})))
            })
        }
        fn post<'a>(&'a self, path: &'a str, _: &'a Value, _: dr_ports::Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
            Box::pin(async move {
                let key = format!("POST {path}");
                self.calls.lock().unwrap().push(key.clone());
                self.answers.get(&key).cloned().unwrap_or(Ok(json!({})))
            })
        }
    }

    fn status(path: &str, status: u16, code: &str) -> ApiError {
        ApiError::Status { method: "GET", path: path.into(), status, error_code: Some(code.into()), message: "m".into() }
    }

    fn limits() -> ExportLimits {
        ExportLimits { concurrency: 3, deadline: std::time::Duration::from_secs(30), page_size: 2 }
    }

    const MS: &str = "/api/2.1/unity-catalog/metastore_summary";

    fn names(e: &SiteObjects, kind: ObjectKind, key: &str) -> Vec<String> {
        e.kind(kind).unwrap().objects.iter().map(|o| o[key].as_str().map(str::to_owned).unwrap_or(o[key].to_string())).collect()
    }

    #[tokio::test]
    async fn follows_every_page_and_every_child_listing() {
        let api = Canned::default()
            .with(MS, json!({"metastore_id": "m1", "name": "main-us-east-1"}))
            .with(
                "/api/2.1/unity-catalog/catalogs",
                json!({"catalogs": [{"name": "main"}, {"name": "system", "catalog_type": "SYSTEM_CATALOG"}, {"name": "dev"}], "next_page_token": "p2"}),
            )
            .with("/api/2.1/unity-catalog/catalogs?page_token=p2", json!({"catalogs": [{"name": "ops"}, {"name": "samples"}]}))
            .with(
                "/api/2.1/unity-catalog/schemas?catalog_name=main",
                json!({"schemas": [{"name": "sales", "catalog_name": "main", "full_name": "main.sales"},
                                   {"name": "information_schema", "catalog_name": "main", "full_name": "main.information_schema"}]}),
            )
            .with(
                "/api/2.1/unity-catalog/tables?catalog_name=main&schema_name=sales&omit_columns=true",
                json!({"tables": [{"full_name": "main.sales.a"}], "next_page_token": "t2"}),
            )
            .with(
                "/api/2.1/unity-catalog/tables?catalog_name=main&schema_name=sales&omit_columns=true&page_token=t2",
                json!({"tables": [{"full_name": "main.sales.b"}], "next_page_token": ""}),
            )
            .with(
                "/api/2.0/workspace/list?path=/",
                json!({"objects": [{"object_type": "DIRECTORY", "path": "/Repos"}, {"object_type": "DIRECTORY", "path": "/Users"}]}),
            )
            .with("/api/2.0/workspace/list?path=/Repos", json!({"objects": [{"object_type": "DIRECTORY", "path": "/Repos/a"}]}))
            .with("/api/2.0/workspace/list?path=/Repos/a", json!({"objects": [{"object_type": "REPO", "path": "/Repos/a/x", "object_id": 11}]}))
            .with("/api/2.0/workspace/list?path=/Users", json!({"objects": [{"object_type": "DIRECTORY", "path": "/Users/b"}]}))
            .with(
                "/api/2.0/workspace/list?path=/Users/b",
                json!({"objects": [{"object_type": "DIRECTORY", "path": "/Users/b/y", "object_id": 12, "directory_info": {"is_git_folder": true}}]}),
            )
            .with("/api/2.0/repos/11", json!({"id": 11, "path": "/Repos/a/x", "branch": "main"}))
            .with("/api/2.0/repos/12", json!({"id": 12, "path": "/Users/b/y", "branch": "dev"}));
        let e = export_site(&api, limits()).await;
        assert_eq!(e.kinds.len(), ObjectKind::ALL.len());
        assert!(e.kinds.iter().all(|k| k.status == ExportStatus::Complete), "{:?}", e.kinds);
        assert_eq!(names(&e, ObjectKind::Catalogs, "name"), ["main", "dev", "ops"], "Databricks' own catalogs left out");
        assert_eq!(names(&e, ObjectKind::Schemas, "full_name"), ["main.sales"], "information_schema left out");
        let calls = api.calls.lock().unwrap().clone();
        assert!(
            !calls.iter().any(|c| c.contains("system") || c.contains("samples") || c.contains("information_schema")),
            "{calls:?}"
        );
        assert_eq!(names(&e, ObjectKind::Tables, "full_name"), ["main.sales.a", "main.sales.b"]);
        assert_eq!(names(&e, ObjectKind::Repos, "path"), ["/Repos/a/x", "/Users/b/y"], "Git folders found wherever they live");
        assert!(!api.calls.lock().unwrap().iter().any(|c| c == "/api/2.0/repos"), "not the deprecated listing");
        // Grants of every securable listed: 3 catalogs, 1 schema, 2 tables.
        assert_eq!(e.kind(ObjectKind::Grants).unwrap().objects.len(), 6);
        assert!(api.max_in_flight.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn a_workspace_that_does_not_answer_costs_one_call_and_skips_every_kind() {
        let api = Canned::default().failing(MS, ApiError::Unreachable("GET /api/2.1/unity-catalog/metastore_summary".into()));
        let e = export_site(&api, limits()).await;
        assert_eq!(api.calls.lock().unwrap().len(), 1);
        assert!(
            e.kinds.iter().all(|k| matches!(&k.status, ExportStatus::Skipped { reason } if reason.contains("did not answer")))
        );
    }

    #[tokio::test]
    async fn an_error_mid_listing_is_partial_with_what_was_read_and_its_children_inherit_it() {
        let api = Canned::default()
            .with("/api/2.1/unity-catalog/catalogs", json!({"catalogs": [{"name": "main"}], "next_page_token": "p2"}))
            .failing(
                "/api/2.1/unity-catalog/catalogs?page_token=p2",
                status("/api/2.1/unity-catalog/catalogs", 503, "TEMPORARILY_UNAVAILABLE"),
            )
            .with(
                "/api/2.1/unity-catalog/schemas?catalog_name=main",
                json!({"schemas": [{"name": "s", "catalog_name": "main", "full_name": "main.s"}]}),
            );
        let e = export_site(&api, limits()).await;
        let catalogs = e.kind(ObjectKind::Catalogs).unwrap();
        assert!(matches!(&catalogs.status, ExportStatus::Partial { error } if error.contains("503")), "{catalogs:?}");
        assert_eq!(catalogs.objects.len(), 1);
        for kind in [ObjectKind::Schemas, ObjectKind::Tables, ObjectKind::Volumes, ObjectKind::Grants] {
            assert!(matches!(e.kind(kind).unwrap().status, ExportStatus::Partial { .. }), "{kind}");
        }
        assert_eq!(e.kind(ObjectKind::Jobs).unwrap().status, ExportStatus::Complete);
    }

    #[tokio::test]
    async fn a_feature_that_is_not_enabled_is_skipped_not_partial() {
        let path = "/api/2.0/vector-search/endpoints";
        let api = Canned::default().failing(path, status(path, 404, "FEATURE_DISABLED"));
        let e = export_site(&api, limits()).await;
        for kind in [ObjectKind::VectorSearchEndpoints, ObjectKind::VectorSearchIndexes] {
            assert!(matches!(e.kind(kind).unwrap().status, ExportStatus::Skipped { .. }), "{kind}");
        }
    }

    #[tokio::test]
    async fn a_repeated_page_token_ends_the_listing_as_partial_instead_of_looping() {
        let api = Canned::default()
            .with("/api/2.0/sql/warehouses", json!({"warehouses": [{"id": "w1", "name": "a"}], "next_page_token": "same"}))
            .with(
                "/api/2.0/sql/warehouses?page_token=same",
                json!({"warehouses": [{"id": "w2", "name": "b"}], "next_page_token": "same"}),
            );
        let e = export_site(&api, limits()).await;
        let w = e.kind(ObjectKind::SqlWarehouses).unwrap();
        assert!(matches!(&w.status, ExportStatus::Partial { error } if error.contains("same next_page_token")));
        assert_eq!(w.objects.len(), 2);
    }

    #[tokio::test]
    async fn jobs_get_pages_tasks_job_clusters_parameters_and_environments_together_and_job_clusters_are_left_out() {
        let n = |prefix: &str, from: usize, to: usize, key: &str| -> Value {
            (from..to).map(|i| json!({ key: format!("{prefix}{i}") })).collect::<Vec<_>>().into()
        };
        let api = Canned::default()
            .with(
                "/api/2.2/jobs/list?expand_tasks=true",
                json!({"jobs": [
                    {"job_id": 7, "settings": {"name": "big", "tasks": [{"task_key": "t1"}]}, "has_more": true},
                    {"job_id": 8, "settings": {"name": "small", "tasks": [{"task_key": "only"}]}},
                    {"job_id": 9, "settings": {"name": "params", "parameters": n("p", 0, 100, "name")}}
                ], "has_more": false}),
            )
            .with(
                "/api/2.2/jobs/get?job_id=7",
                json!({"job_id": 7, "settings": {"name": "big", "tasks": [{"task_key": "t1"}], "job_clusters": n("c", 0, 2, "job_cluster_key"),
                       "parameters": n("p", 0, 2, "name"), "environments": n("e", 0, 1, "environment_key")}, "next_page_token": "n"}),
            )
            .with(
                "/api/2.2/jobs/get?job_id=7&page_token=n",
                json!({"job_id": 7, "settings": {"name": "big", "tasks": [{"task_key": "t2"}], "job_clusters": n("c", 2, 3, "job_cluster_key"),
                       "parameters": n("p", 2, 4, "name"), "environments": n("e", 1, 2, "environment_key")}, "next_page_token": "m"}),
            )
            .with(
                "/api/2.2/jobs/get?job_id=7&page_token=m",
                json!({"job_id": 7, "settings": {"name": "big", "job_clusters": n("c", 3, 4, "job_cluster_key")}}),
            )
            .with("/api/2.2/jobs/get?job_id=9", json!({"job_id": 9, "settings": {"name": "params", "parameters": n("p", 0, 100, "name")}, "next_page_token": "q"}))
            .with("/api/2.2/jobs/get?job_id=9&page_token=q", json!({"job_id": 9, "settings": {"name": "params", "parameters": n("p", 100, 110, "name")}}))
            .with(
                "/api/2.1/clusters/list",
                json!({"clusters": [{"cluster_id": "a", "cluster_name": "shared", "cluster_source": "UI"}, {"cluster_id": "b", "cluster_name": "job-7-run-1", "cluster_source": "JOB"}]}),
            );
        let e = export_site(&api, limits()).await;
        assert_eq!(e.kind(ObjectKind::Jobs).unwrap().status, ExportStatus::Complete);
        let jobs = &e.kind(ObjectKind::Jobs).unwrap().objects;
        let keys = |job: &Value, array: &str, key: &str| -> Vec<String> {
            job["settings"][array].as_array().unwrap().iter().map(|t| t[key].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(keys(&jobs[0], "tasks", "task_key"), ["t1", "t2"]);
        assert_eq!(keys(&jobs[0], "job_clusters", "job_cluster_key"), ["c0", "c1", "c2", "c3"]);
        assert_eq!(keys(&jobs[0], "parameters", "name"), ["p0", "p1", "p2", "p3"]);
        assert_eq!(keys(&jobs[0], "environments", "environment_key"), ["e0", "e1"]);
        assert!(jobs[0].get("has_more").is_none());
        assert_eq!(jobs[1]["settings"]["tasks"][0]["task_key"], "only");
        assert_eq!(keys(&jobs[2], "parameters", "name").len(), 110, "a full page of parameters is read on");
        assert!(!api.calls.lock().unwrap().iter().any(|c| c.contains("job_id=8")), "a job shown whole is not read again");
        assert_eq!(names(&e, ObjectKind::Clusters, "cluster_name"), ["shared"]);
        // Permissions of the jobs and the one cluster, named by stable identity, with the site-local id beside it.
        let perms = &e.kind(ObjectKind::Permissions).unwrap().objects;
        assert_eq!(perms.len(), 4);
        assert!(perms.iter().any(|p| p["object_type"] == "jobs" && p["object_id"] == "7"));
    }

    #[tokio::test]
    async fn a_job_whose_pages_repeat_a_token_makes_the_jobs_partial() {
        let api = Canned::default()
            .with(
                "/api/2.2/jobs/list?expand_tasks=true",
                json!({"jobs": [{"job_id": 7, "settings": {"name": "big"}, "has_more": true}]}),
            )
            .with("/api/2.2/jobs/get?job_id=7", json!({"job_id": 7, "settings": {"name": "big"}, "next_page_token": "n"}))
            .with(
                "/api/2.2/jobs/get?job_id=7&page_token=n",
                json!({"job_id": 7, "settings": {"name": "big"}, "next_page_token": "n"}),
            );
        let e = export_site(&api, limits()).await;
        let jobs = e.kind(ObjectKind::Jobs).unwrap();
        assert!(matches!(&jobs.status, ExportStatus::Partial { error } if error.contains("same next_page_token")), "{jobs:?}");
    }

    #[tokio::test]
    async fn the_workspace_tree_finds_git_folders_anywhere_and_keeps_the_rest_outside_them() {
        let api = Canned::default()
            .with(
                "/api/2.0/workspace/list?path=/",
                json!({"objects": [
                    {"object_type": "DIRECTORY", "path": "/Users"},
                    {"object_type": "DIRECTORY", "path": "/Repos"},
                    {"object_type": "NOTEBOOK", "path": "/etl", "language": "PYTHON"}
                ]}),
            )
            .with(
                "/api/2.0/workspace/list?path=/Users",
                json!({"objects": [{"object_type": "FILE", "path": "/Users/a.txt"}, {"object_type": "REPO", "path": "/Users/r", "object_id": 5}]}),
            )
            .with("/api/2.0/workspace/list?path=/Repos", json!({"objects": [{"object_type": "DIRECTORY", "path": "/Repos/u"}]}))
            .with("/api/2.0/repos/5", json!({"id": 5, "path": "/Users/r", "url": "https://github.com/acme/r.git"}));
        let e = export_site(&api, limits()).await;
        let paths = names(&e, ObjectKind::WorkspaceObjects, "path");
        assert_eq!(paths, ["/Users", "/etl", "/Users/a.txt"], "nothing of /Repos nor of a Git folder");
        assert_eq!(names(&e, ObjectKind::Repos, "path"), ["/Users/r"]);
        let calls = api.calls.lock().unwrap();
        assert!(
            calls.iter().any(|c| c == "/api/2.0/workspace/list?path=/Repos/u"),
            "Git folders are looked for under /Repos too"
        );
        assert!(!calls.iter().any(|c| c.contains("path=/Users/r")), "a Git folder's content is Git's: {calls:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_deadline_ends_what_is_not_in_as_partial() {
        let api = Canned { delay_ms: 400, ..Canned::default() }
            .with("/api/2.1/unity-catalog/catalogs", json!({"catalogs": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
        let bounded = ExportLimits { concurrency: 1, deadline: std::time::Duration::from_secs(2), page_size: 100 };
        let e = export_site(&api, bounded).await;
        let partial =
            e.kinds.iter().filter(|k| matches!(&k.status, ExportStatus::Partial { error } if error.contains("deadline"))).count();
        assert!(partial > 0, "{:?}", e.kinds);
        assert!(e.requests <= 6, "one call at a time, 400 ms each, within 2 s: {}", e.requests);
    }

    /// A workspace with one schema, its table listed by REST, and a SQL warehouse whose statement `s1` pends once,
    /// then succeeds with `chunks` (the manifest counting `total` rows).
    fn with_warehouse(chunks: &[Value], total: usize) -> Canned {
        let columns: Vec<Value> = ["table_catalog", "table_schema", "table_name", "table_type"]
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": c, "position": i, "type_name": "STRING"}))
            .collect();
        let mut first = chunks[0].clone();
        if chunks.len() > 1 {
            first["next_chunk_index"] = json!(1);
        }
        let mut api = Canned::default()
            .with("/api/2.1/unity-catalog/catalogs", json!({"catalogs": [{"name": "main"}]}))
            .with("/api/2.1/unity-catalog/schemas?catalog_name=main", json!({"schemas": [{"name": "s", "catalog_name": "main", "full_name": "main.s"}]}))
            .with(
                "/api/2.1/unity-catalog/tables?catalog_name=main&schema_name=s&omit_columns=true",
                json!({"tables": [{"name": "listed", "catalog_name": "main", "schema_name": "s", "full_name": "main.s.listed"}]}),
            )
            .with("POST /api/2.0/sql/statements", json!({"statement_id": "s1", "status": {"state": "PENDING"}}))
            .with(
                "/api/2.0/sql/statements/s1",
                json!({"statement_id": "s1", "status": {"state": "SUCCEEDED"},
                       "manifest": {"format": "JSON_ARRAY", "schema": {"columns": columns}, "total_row_count": total}, "result": first}),
            );
        for (i, chunk) in chunks.iter().enumerate().skip(1) {
            let mut chunk = chunk.clone();
            if i + 1 < chunks.len() {
                chunk["next_chunk_index"] = json!(i + 1);
            }
            api = api.with(&format!("/api/2.0/sql/statements/s1/result/chunks/{i}"), chunk);
        }
        api
    }

    #[tokio::test(start_paused = true)]
    async fn tables_come_from_every_chunk_of_the_statement_and_a_result_that_does_not_add_up_falls_back_to_the_listings() {
        let row = |t: &str| json!(["main", "s", t, "MANAGED"]);
        let chunks = [json!({"data_array": [row("a"), row("b")]}), json!({"data_array": [row("c")]})];
        let api = with_warehouse(&chunks, 3);
        let e = export_site_with(&api, limits(), &Progress::default(), Some("w1")).await;
        assert_eq!(e.kind(ObjectKind::Tables).unwrap().status, ExportStatus::Complete);
        assert_eq!(names(&e, ObjectKind::Tables, "full_name"), ["main.s.a", "main.s.b", "main.s.c"]);
        let calls = api.calls.lock().unwrap().clone();
        assert!(calls.iter().any(|c| c == "/api/2.0/sql/statements/s1/result/chunks/1"), "{calls:?}");
        assert!(!calls.iter().any(|c| c.starts_with("/api/2.1/unity-catalog/tables")), "no listing: {calls:?}");

        // The manifest counts a row that no chunk holds: the SQL read is not trusted, the listing is read instead.
        let api = with_warehouse(&chunks, 4);
        let e = export_site_with(&api, limits(), &Progress::default(), Some("w1")).await;
        assert_eq!(e.kind(ObjectKind::Tables).unwrap().status, ExportStatus::Complete);
        assert_eq!(names(&e, ObjectKind::Tables, "full_name"), ["main.s.listed"]);

        // A chunk that names an earlier one as next would loop: refused, and the listing read.
        let looping = [json!({"data_array": [row("a")]}), json!({"data_array": [row("b")], "next_chunk_index": 1})];
        let api = with_warehouse(&looping, 2);
        let e = export_site_with(&api, limits(), &Progress::default(), Some("w1")).await;
        assert_eq!(names(&e, ObjectKind::Tables, "full_name"), ["main.s.listed"]);
    }

    #[tokio::test]
    async fn secret_scopes_carry_their_acls_and_never_a_secret() {
        let api = Canned::default()
            .with("/api/2.0/secrets/scopes/list", json!({"scopes": [{"name": "etl", "backend_type": "DATABRICKS"}]}))
            .with("/api/2.0/secrets/acls/list?scope=etl", json!({"items": [{"principal": "data-eng", "permission": "READ"}]}));
        let e = export_site(&api, limits()).await;
        let scopes = &e.kind(ObjectKind::SecretScopes).unwrap().objects;
        assert_eq!(scopes[0]["acls"][0]["principal"], "data-eng");
        assert!(!api.calls.lock().unwrap().iter().any(|c| c.contains("/secrets/get") || c.contains("/secrets/list?")));
    }
}
