//! Reading the DR documents under the SSM prefix in one round trip.

use crate::error::StoreError;
use crate::{Parameter, ParameterStore};
use domain::data_plane::DataPlane;
use domain::error::InvalidDocument;
use domain::names::SsmPrefix;
use domain::policy::Policy;
use domain::site::{ActiveConfig, SiteConfig, SiteName};
use std::collections::BTreeMap;

/// A document as found: absent, present but invalid, or valid (with its SSM version).
#[derive(Debug, Clone)]
pub enum Doc<T> {
    /// The parameter does not exist.
    Missing {
        /// Its full name.
        name: String,
    },
    /// The parameter exists but its value is not valid.
    Invalid(InvalidDocument),
    /// A valid value.
    Valid {
        /// The parsed document.
        value: T,
        /// The SSM version it was read at.
        version: i64,
    },
}

impl<T> Doc<T> {
    /// The value when valid.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Doc::Valid { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A one-line problem description, when not valid.
    pub fn problem(&self) -> Option<String> {
        match self {
            Doc::Missing { name } => Some(format!("SSM parameter {name} does not exist")),
            Doc::Invalid(e) => Some(e.to_string()),
            Doc::Valid { .. } => None,
        }
    }
}

/// The five DR documents of an environment.
#[derive(Debug, Clone)]
pub struct DrDocuments {
    /// `{prefix}/active`.
    pub active: Doc<ActiveConfig>,
    /// `{prefix}/sites/primary`.
    pub primary: Doc<SiteConfig>,
    /// `{prefix}/sites/secondary`.
    pub secondary: Doc<SiteConfig>,
    /// `{prefix}/policy`; `None` when the parameter does not exist (the default policy applies).
    pub policy: Option<Doc<Policy>>,
    /// `{prefix}/data-plane`.
    pub data_plane: Doc<DataPlane>,
}

impl DrDocuments {
    /// The site document of `site`.
    pub fn site(&self, site: SiteName) -> &Doc<SiteConfig> {
        match site {
            SiteName::Primary => &self.primary,
            SiteName::Secondary => &self.secondary,
        }
    }

    /// The policy in force: the parameter's when valid, the default (approval) when absent.
    /// An invalid policy is `None`: the caller must not act automatically on it.
    pub fn effective_policy(&self) -> Option<Policy> {
        match &self.policy {
            None => Some(Policy::default()),
            Some(Doc::Valid { value, .. }) => Some(value.clone()),
            Some(_) => None,
        }
    }
}

/// Relative names of the DR documents.
pub const ACTIVE: &str = "active";
/// Relative name of the primary site document.
pub const SITE_PRIMARY: &str = "sites/primary";
/// Relative name of the secondary site document.
pub const SITE_SECONDARY: &str = "sites/secondary";
/// Relative name of the policy.
pub const POLICY: &str = "policy";
/// Relative name of the data-plane document.
pub const DATA_PLANE: &str = "data-plane";

/// Reads all five documents with one `GetParameters` call and validates them.
pub async fn load(store: &impl ParameterStore, prefix: &SsmPrefix) -> Result<DrDocuments, StoreError> {
    Ok(from_parameters(&load_parameters(store, prefix).await?, prefix))
}

/// The five documents' parameters as read (one `GetParameters` call), for callers that need the raw parameters
/// beside the validated documents ([`from_parameters`]).
pub async fn load_parameters(store: &impl ParameterStore, prefix: &SsmPrefix) -> Result<BTreeMap<String, Parameter>, StoreError> {
    let names: Vec<String> = [ACTIVE, SITE_PRIMARY, SITE_SECONDARY, POLICY, DATA_PLANE].iter().map(|n| prefix.child(n)).collect();
    store.get_many(&names).await
}

/// Validates the five documents from parameters already read (by name); each on its own, so that one bad
/// document does not hide the others.
pub fn from_parameters(found: &BTreeMap<String, Parameter>, prefix: &SsmPrefix) -> DrDocuments {
    DrDocuments {
        active: doc(found, prefix.child(ACTIVE), ActiveConfig::parse),
        primary: doc(found, prefix.child(SITE_PRIMARY), SiteConfig::parse),
        secondary: doc(found, prefix.child(SITE_SECONDARY), SiteConfig::parse),
        policy: found.contains_key(&prefix.child(POLICY)).then(|| doc(found, prefix.child(POLICY), Policy::parse)),
        data_plane: doc(found, prefix.child(DATA_PLANE), DataPlane::parse),
    }
}

/// Validates the documents from a tree read with [`ParameterStore::get_tree`].
pub fn from_tree(tree: &[Parameter], prefix: &SsmPrefix) -> DrDocuments {
    let found: BTreeMap<String, Parameter> = tree.iter().map(|p| (p.name.clone(), p.clone())).collect();
    from_parameters(&found, prefix)
}

fn doc<T>(found: &BTreeMap<String, Parameter>, name: String, parse: fn(&str, &str) -> Result<T, InvalidDocument>) -> Doc<T> {
    match found.get(&name) {
        None => Doc::Missing { name },
        Some(p) if p.kind != "String" => Doc::Invalid(InvalidDocument {
            what: format!("SSM parameter {name}"),
            problem: format!("has type {}; expected String (a JSON document)", p.kind),
        }),
        Some(p) => match parse(&format!("SSM parameter {name}"), &p.value) {
            Ok(value) => Doc::Valid { value, version: p.version },
            Err(e) => Doc::Invalid(e),
        },
    }
}
