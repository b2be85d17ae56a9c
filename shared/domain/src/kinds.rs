//! The kinds of Databricks workspace objects the documents name ([`ObjectKind`]) and those sync writes
//! ([`SYNCED`]): the policy's `sync_on_check` is a list of them, so they belong to the core. Also the
//! [`Method`] of a write, which the workspace port and sync's plan share.

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

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds sync writes, in the order they are applied: what is referenced comes first (schemas live in
/// catalogs, grants name catalogs and schemas, policies name pools, jobs name policies, pools and warehouses, and
/// the permissions name the objects they apply to).
pub const SYNCED: [ObjectKind; 8] = [
    ObjectKind::Catalogs,
    ObjectKind::Schemas,
    ObjectKind::Grants,
    ObjectKind::InstancePools,
    ObjectKind::ClusterPolicies,
    ObjectKind::SqlWarehouses,
    ObjectKind::Jobs,
    ObjectKind::Permissions,
];

/// An HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}
