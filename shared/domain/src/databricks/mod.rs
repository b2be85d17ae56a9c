//! Databricks workspace metadata: what is exported from each site ([`ObjectKind`]), how an export of a kind
//! ended ([`ExportStatus`]), the stable identity that matches objects between sites ([`identity`]), drift
//! between two exports ([`drift`]) and the live DR matrix built from the seed document ([`matrix`]).
//!
//! Pure: the engine fetches, this module decides what the answers mean.

pub mod drift;
pub mod identity;
pub mod matrix;
pub mod sync;
pub mod uc;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A type of workspace object exported at every snapshot; each is its own file of the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// Jobs, full settings with every task (`/api/2.2/jobs/list?expand_tasks=true`, then `jobs/get` for the rest).
    Jobs,
    /// All-purpose and job clusters (`/api/2.1/clusters/list`).
    Clusters,
    /// Cluster policies (`/api/2.0/policies/clusters/list`).
    ClusterPolicies,
    /// Instance pools (`/api/2.0/instance-pools/list`).
    InstancePools,
    /// SQL warehouses (`/api/2.0/sql/warehouses`).
    SqlWarehouses,
    /// The Unity Catalog metastore summary (`/api/2.1/unity-catalog/metastore_summary`).
    Metastore,
    /// Unity Catalog catalogs.
    Catalogs,
    /// Unity Catalog schemas, of every catalog.
    Schemas,
    /// Unity Catalog tables, of every schema.
    Tables,
    /// Unity Catalog volumes, of every schema.
    Volumes,
    /// Unity Catalog external locations.
    ExternalLocations,
    /// Unity Catalog storage credentials.
    StorageCredentials,
    /// Unity Catalog grants on catalogs, schemas, tables, volumes, external locations and storage credentials.
    Grants,
    /// Registered models (Unity Catalog).
    RegisteredModels,
    /// Model serving endpoints.
    ServingEndpoints,
    /// Vector search endpoints.
    VectorSearchEndpoints,
    /// Vector search indexes, of every endpoint.
    VectorSearchIndexes,
    /// Git folders (Repos).
    Repos,
    /// Workspace objects (notebooks, files, directories) outside Repos: notebooks here are at risk.
    WorkspaceObjects,
    /// Secret scopes: names, backends and ACLs, never a secret.
    SecretScopes,
    /// The permissions (ACLs) of jobs, clusters and SQL warehouses.
    Permissions,
}

impl ObjectKind {
    /// Every kind, in export order.
    pub const ALL: [ObjectKind; 21] = [
        ObjectKind::Jobs,
        ObjectKind::Clusters,
        ObjectKind::ClusterPolicies,
        ObjectKind::InstancePools,
        ObjectKind::SqlWarehouses,
        ObjectKind::Metastore,
        ObjectKind::Catalogs,
        ObjectKind::Schemas,
        ObjectKind::Tables,
        ObjectKind::Volumes,
        ObjectKind::ExternalLocations,
        ObjectKind::StorageCredentials,
        ObjectKind::Grants,
        ObjectKind::RegisteredModels,
        ObjectKind::ServingEndpoints,
        ObjectKind::VectorSearchEndpoints,
        ObjectKind::VectorSearchIndexes,
        ObjectKind::Repos,
        ObjectKind::WorkspaceObjects,
        ObjectKind::SecretScopes,
        ObjectKind::Permissions,
    ];

    /// The kebab-case name: `jobs`, `cluster-policies`, ... (file names, JSON keys).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Jobs => "jobs",
            ObjectKind::Clusters => "clusters",
            ObjectKind::ClusterPolicies => "cluster-policies",
            ObjectKind::InstancePools => "instance-pools",
            ObjectKind::SqlWarehouses => "sql-warehouses",
            ObjectKind::Metastore => "metastore",
            ObjectKind::Catalogs => "catalogs",
            ObjectKind::Schemas => "schemas",
            ObjectKind::Tables => "tables",
            ObjectKind::Volumes => "volumes",
            ObjectKind::ExternalLocations => "external-locations",
            ObjectKind::StorageCredentials => "storage-credentials",
            ObjectKind::Grants => "grants",
            ObjectKind::RegisteredModels => "registered-models",
            ObjectKind::ServingEndpoints => "serving-endpoints",
            ObjectKind::VectorSearchEndpoints => "vector-search-endpoints",
            ObjectKind::VectorSearchIndexes => "vector-search-indexes",
            ObjectKind::Repos => "repos",
            ObjectKind::WorkspaceObjects => "workspace-objects",
            ObjectKind::SecretScopes => "secret-scopes",
            ObjectKind::Permissions => "permissions",
        }
    }

    /// Parses [`ObjectKind::as_str`].
    pub fn parse(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How one sentence names `n` objects of the kind: "1 job", "3 jobs", "2 cluster policies".
    pub fn count_phrase(self, n: usize) -> String {
        let (one, many) = match self {
            ObjectKind::Jobs => ("job", "jobs"),
            ObjectKind::Clusters => ("cluster", "clusters"),
            ObjectKind::ClusterPolicies => ("cluster policy", "cluster policies"),
            ObjectKind::InstancePools => ("instance pool", "instance pools"),
            ObjectKind::SqlWarehouses => ("SQL warehouse", "SQL warehouses"),
            ObjectKind::Metastore => ("metastore", "metastores"),
            ObjectKind::Catalogs => ("catalog", "catalogs"),
            ObjectKind::Schemas => ("schema", "schemas"),
            ObjectKind::Tables => ("table", "tables"),
            ObjectKind::Volumes => ("volume", "volumes"),
            ObjectKind::ExternalLocations => ("external location", "external locations"),
            ObjectKind::StorageCredentials => ("storage credential", "storage credentials"),
            ObjectKind::Grants => ("grant set", "grant sets"),
            ObjectKind::RegisteredModels => ("registered model", "registered models"),
            ObjectKind::ServingEndpoints => ("serving endpoint", "serving endpoints"),
            ObjectKind::VectorSearchEndpoints => ("vector search endpoint", "vector search endpoints"),
            ObjectKind::VectorSearchIndexes => ("vector search index", "vector search indexes"),
            ObjectKind::Repos => ("repo", "repos"),
            ObjectKind::WorkspaceObjects => ("workspace object", "workspace objects"),
            ObjectKind::SecretScopes => ("secret scope", "secret scopes"),
            ObjectKind::Permissions => ("permission set", "permission sets"),
        };
        format!("{n} {}", if n == 1 { one } else { many })
    }
}

/// Catalogs every workspace has and no one recovers: Databricks' own (`system`, the system tables; `samples`;
/// `__databricks_internal`). An export does not list their schemas, tables, volumes or grants.
pub const BUILTIN_CATALOGS: [&str; 3] = ["system", "samples", "__databricks_internal"];

/// The schema every catalog has, generated from the catalog itself (its views describe the catalog).
pub const BUILTIN_SCHEMA: &str = "information_schema";

/// Whether an export leaves a catalog out: one of [`BUILTIN_CATALOGS`], or any whose `catalog_type` says the
/// system made it (`SYSTEM_CATALOG`, `INTERNAL_CATALOG`).
pub fn is_builtin_catalog(catalog: &serde_json::Value) -> bool {
    let name = catalog.get("name").and_then(serde_json::Value::as_str).unwrap_or_default();
    let kind = catalog.get("catalog_type").and_then(serde_json::Value::as_str).unwrap_or_default();
    BUILTIN_CATALOGS.contains(&name) || matches!(kind, "SYSTEM_CATALOG" | "INTERNAL_CATALOG")
}

/// Whether an export leaves a schema out: [`BUILTIN_SCHEMA`].
pub fn is_builtin_schema(schema: &serde_json::Value) -> bool {
    schema.get("name").and_then(serde_json::Value::as_str) == Some(BUILTIN_SCHEMA)
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the export of one kind ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ExportStatus {
    /// Every page of every listing was read.
    Complete,
    /// Some objects were read, then a call failed or the deadline passed: the objects are a lower bound.
    Partial {
        /// What stopped it.
        error: String,
    },
    /// Not exported: no credentials, the feature is not enabled in the workspace (404), or the workspace did
    /// not answer at all.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl ExportStatus {
    /// `complete`, `partial` or `skipped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportStatus::Complete => "complete",
            ExportStatus::Partial { .. } => "partial",
            ExportStatus::Skipped { .. } => "skipped",
        }
    }

    /// Whether the objects are every object of the kind (drift is exact only between complete exports).
    pub fn is_complete(&self) -> bool {
        matches!(self, ExportStatus::Complete)
    }
}
