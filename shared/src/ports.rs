//! Small traits, in domain words, over what the engine needs from AWS.
//!
//! `aws/` implements them with the SDK; unit tests implement them in memory. The futures are `Send` so
//! that the Lambda runtime can drive them on its multi-threaded executor.

use crate::error::StoreError;
use std::collections::BTreeMap;
use std::future::Future;

/// A parameter as SSM holds it. SecureString values are never fetched (no decryption is requested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Full name.
    pub name: String,
    /// The value (for a SecureString, the encrypted blob SSM returns without decryption; never shown).
    pub value: String,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    /// Version number.
    pub version: i64,
    /// Last modification, RFC 3339, if known.
    pub last_modified: Option<String>,
}

/// The DR parameters in SSM Parameter Store.
pub trait ParameterStore: Send + Sync {
    /// Reads the named parameters in as few calls as the service allows; absent names are absent from the map.
    fn get_many(&self, names: &[String]) -> impl Future<Output = Result<BTreeMap<String, Parameter>, StoreError>> + Send;
}
