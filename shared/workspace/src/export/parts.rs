//! One site's export cut into parts, each small enough for one invocation, for an export carried over several
//! (`workspace::carry`): the **core** (every listing but Unity Catalog's subtree and the per-object ACLs and
//! grants), one part per **catalog** (its schemas, tables, volumes, and its grants read in bulk when the site names
//! a SQL warehouse), and **targets** parts (a slice of the objects whose ACLs or grants are read one call each).
//! A part names the parts it found (catalogs, target slices) instead of running them; the merge concatenates the
//! parts' objects kind by kind into the same documents as [`super::export_site_with`].

use super::{Bounded, Gathered, Progress, acl_of, acl_targets, grant_of, str_field};
use crate::rules::{ExportStatus, ObjectKind, uc};
use dr_ports::{ApiError, WorkspaceApi};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// One object whose ACL or grants are read by a call of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Target {
    /// A job, cluster, warehouse, policy or pool's ACL (`/api/2.0/permissions/{object_type}/{id}`), named by
    /// stable identity.
    Acl {
        /// `jobs`, `clusters`, `warehouses`, `cluster-policies` or `instance-pools`.
        object_type: String,
        /// The site-local id.
        id: String,
        /// The stable identity.
        name: String,
    },
    /// A securable's grants (`/api/2.1/unity-catalog/permissions/{securable}/{name}`).
    Grant {
        /// `catalog`, `schema`, `table`, `volume`, `external_location` or `storage_credential`.
        securable: String,
        /// Its full name.
        name: String,
    },
}

/// A part that a part found: run later, maybe elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// One catalog's subtree.
    Catalog(String),
    /// Objects of `kind` (grants or permissions) read one call each; `inherited` is the error of the listing they
    /// come from (the kind is then partial, as in one invocation).
    Targets {
        /// [`ObjectKind::Grants`] or [`ObjectKind::Permissions`].
        kind: ObjectKind,
        /// The objects.
        targets: Vec<Target>,
        /// The source listing's error, if it was partial.
        inherited: Option<String>,
    },
}

/// What one part exported.
#[derive(Debug, Clone, PartialEq)]
pub struct PartOutput {
    /// The kinds it holds objects or a status of (the others are other parts').
    pub kinds: Vec<super::KindExport>,
    /// The parts it found.
    pub found: Vec<Found>,
    /// Whether the deadline cut a call: the part may be partial for want of time only.
    pub cut_short: bool,
    /// Calls made.
    pub requests: u32,
}

/// How one part runs: the API, the calls in flight, the part's deadline, the site's SQL warehouse.
pub struct PartRun<'a> {
    /// The site's API.
    pub api: &'a dyn WorkspaceApi,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Page size of the listings.
    pub page_size: u32,
    /// When the invocation must stop calling.
    pub deadline: Instant,
    /// `export.sql_warehouse_id`, if the site names one.
    pub warehouse: Option<&'a str>,
}

/// Which part to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// The core listings.
    Core,
    /// One catalog's subtree.
    Catalog(String),
    /// A slice of targets of one kind.
    Targets {
        /// Grants or permissions.
        kind: ObjectKind,
        /// The objects.
        targets: Vec<Target>,
        /// The source listing's error.
        inherited: Option<String>,
    },
}

/// Runs one part.
pub async fn run(r: &PartRun<'_>, work: Work) -> PartOutput {
    let progress = Progress::default();
    let b = Bounded {
        api: r.api,
        permits: Semaphore::new(r.concurrency.max(1)),
        deadline: r.deadline,
        progress: &progress,
        page_size: r.page_size.clamp(1, 100),
        warehouse: r.warehouse,
    };
    let (kinds, found) = match work {
        Work::Core => core(&b).await,
        Work::Catalog(name) => catalog(&b, &name).await,
        Work::Targets { kind, targets, inherited } => (vec![targets_of(&b, kind, targets, inherited).await], Vec::new()),
    };
    PartOutput { kinds, found, cut_short: progress.cut_short(), requests: progress.requests() }
}

type Parted = (Vec<super::KindExport>, Vec<Found>);

/// The error a kind inherits from its source listings, as one invocation words it.
fn inherited_error(sources: &[&Gathered]) -> Option<String> {
    sources.iter().find_map(|g| g.error.as_ref().filter(|e| !(e.is_absent() && g.objects.is_empty())).map(ToString::to_string))
}

/// Every listing of the site but Unity Catalog's subtree and the per-object reads; finds the catalogs and the
/// targets of ACLs (jobs, clusters, warehouses, policies, pools) and of grants (external locations, storage
/// credentials).
async fn core(b: &Bounded<'_>) -> Parted {
    let metastore = match b.get("/api/2.1/unity-catalog/metastore_summary", &[]).await {
        Ok(m) => Gathered::ok(vec![m]),
        Err(e) if e.is_site_wide() => {
            let all = super::SiteObjects::skipped(&format!("the workspace did not answer: {e}"));
            return (all.kinds, Vec::new());
        }
        Err(e) => Gathered { objects: Vec::new(), error: Some(e) },
    };
    let ((jobs, clusters, policies, pools, warehouses), (catalogs, locations, credentials, models, serving)) =
        tokio::join!(super::independent(b), async {
            let mut catalogs =
                b.list("/api/2.1/unity-catalog/catalogs", &[], "catalogs", "page_token", Some("max_results")).await;
            catalogs.objects.retain(|c| !crate::rules::is_builtin_catalog(c));
            let (locations, credentials, models, serving) = super::unity_extras(b).await;
            (catalogs, locations, credentials, models, serving)
        });
    let ((vs_endpoints, vs_indexes), (repos, objects), scopes) =
        tokio::join!(super::vector_search(b), super::workspace_tree(b), super::secret_scopes(b));
    let mut found: Vec<Found> =
        catalogs.objects.iter().filter_map(|c| str_field(c, "name")).map(|n| Found::Catalog(n.to_owned())).collect();
    let acl = acl_targets([&jobs, &clusters, &warehouses, &policies, &pools])
        .into_iter()
        .map(|(object_type, id, name)| Target::Acl { object_type: object_type.to_owned(), id, name })
        .collect();
    // As one invocation: the ACLs inherit any error of their listings.
    let acl_inherited =
        [&jobs, &clusters, &warehouses, &policies, &pools].into_iter().find_map(|g| g.error.as_ref().map(ToString::to_string));
    found.push(Found::Targets { kind: ObjectKind::Permissions, targets: acl, inherited: acl_inherited });
    let mut grants = Vec::new();
    for (g, securable) in [(&locations, "external_location"), (&credentials, "storage_credential")] {
        grants.extend(
            g.objects
                .iter()
                .filter_map(|o| str_field(o, "name"))
                .map(|n| Target::Grant { securable: securable.to_owned(), name: n.to_owned() }),
        );
    }
    // The catalogs' listing is a source of every grant too: a partial one makes the grants partial.
    let inherited = inherited_error(&[&catalogs, &locations, &credentials]);
    found.push(Found::Targets { kind: ObjectKind::Grants, targets: grants, inherited });
    let mut kinds = Vec::new();
    // A partial catalogs' listing leaves its subtree partial, even where no catalog part says so.
    if let Some(e) = inherited_error(&[&catalogs]) {
        for kind in [ObjectKind::Schemas, ObjectKind::Tables, ObjectKind::Volumes] {
            let status = ExportStatus::Partial { error: format!("listed from a partial listing ({e})") };
            kinds.push(super::KindExport { kind, status, objects: Vec::new() });
        }
    }
    for (kind, g) in [
        (ObjectKind::Jobs, jobs),
        (ObjectKind::Clusters, clusters),
        (ObjectKind::ClusterPolicies, policies),
        (ObjectKind::InstancePools, pools),
        (ObjectKind::SqlWarehouses, warehouses),
        (ObjectKind::Metastore, metastore),
        (ObjectKind::Catalogs, catalogs),
        (ObjectKind::ExternalLocations, locations),
        (ObjectKind::StorageCredentials, credentials),
        (ObjectKind::RegisteredModels, models),
        (ObjectKind::ServingEndpoints, serving),
        (ObjectKind::VectorSearchEndpoints, vs_endpoints),
        (ObjectKind::VectorSearchIndexes, vs_indexes),
        (ObjectKind::Repos, repos),
        (ObjectKind::WorkspaceObjects, objects),
        (ObjectKind::SecretScopes, scopes),
    ] {
        kinds.push(g.into_export(kind));
    }
    (kinds, found)
}

/// One catalog's schemas, tables and volumes, and its grants: the catalog's, its schemas' and tables' read in
/// bulk when the site names a warehouse (the volumes' then found as targets), else all found as targets.
async fn catalog(b: &Bounded<'_>, name: &str) -> Parted {
    let catalogs = Gathered::ok(vec![json!({ "name": name })]);
    let (schemas, tables, volumes) = super::subtree(b, &catalogs).await;
    let bulk = super::bulk_grants(b, &[name.to_owned()]).await;
    let sources: [(&Gathered, &str, &str); 4] = [
        (&catalogs, "catalog", "name"),
        (&schemas, "schema", "full_name"),
        (&tables, "table", "full_name"),
        (&volumes, "volume", "full_name"),
    ];
    let mut read = Vec::new();
    let mut targets = Vec::new();
    for (g, securable, key) in sources {
        for full_name in g.objects.iter().filter_map(|o| str_field(o, key)) {
            match bulk.as_ref().and_then(|by_type| by_type.get(securable)) {
                Some(grants) => read.push(json!({
                    "securable_type": securable,
                    "full_name": full_name,
                    "privilege_assignments": uc::assignments_of(grants.get(full_name)),
                })),
                None => targets.push(Target::Grant { securable: securable.to_owned(), name: full_name.to_owned() }),
            }
        }
    }
    let inherited = inherited_error(&[&schemas, &tables, &volumes]);
    let mut grants = Gathered::ok(read);
    if let Some(e) = &inherited {
        grants.error =
            Some(ApiError::BadAnswer { path: "grants".into(), problem: format!("listed from a partial listing ({e})") });
    }
    let kinds = vec![
        schemas.into_export(ObjectKind::Schemas),
        tables.into_export(ObjectKind::Tables),
        volumes.into_export(ObjectKind::Volumes),
        grants.into_export(ObjectKind::Grants),
    ];
    (kinds, vec![Found::Targets { kind: ObjectKind::Grants, targets, inherited }])
}

/// The ACLs or grants of a slice of targets, one call each.
async fn targets_of(b: &Bounded<'_>, kind: ObjectKind, targets: Vec<Target>, inherited: Option<String>) -> super::KindExport {
    let mut out = b
        .fan_out(targets, |t| async move {
            match t {
                Target::Acl { object_type, id, name } => acl_of(b, &object_type, &id, &name).await,
                Target::Grant { securable, name } => grant_of(b, &securable, &name).await,
            }
        })
        .await;
    if out.error.is_none()
        && let Some(e) = inherited
    {
        out.error =
            Some(ApiError::BadAnswer { path: kind.as_str().into(), problem: format!("listed from a partial listing ({e})") });
    }
    out.into_export(kind)
}
