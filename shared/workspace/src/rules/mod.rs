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

pub use domain::kinds::ObjectKind;
use serde::{Deserialize, Serialize};

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
