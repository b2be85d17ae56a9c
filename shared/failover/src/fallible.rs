//! A value read, or why it could not be: how an answer reports a failed read without raising it.

use serde::{Deserialize, Serialize};

/// A value read, or why it could not be (`{"error": ...}`): `status` reports a failed read, never raises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Fallible<T> {
    /// The value.
    Read(T),
    /// Why it could not be read.
    Failed {
        /// The failure, in a sentence.
        error: String,
    },
}

impl<T> Fallible<T> {
    /// The value, when it was read.
    pub fn read(&self) -> Option<&T> {
        match self {
            Fallible::Read(v) => Some(v),
            Fallible::Failed { .. } => None,
        }
    }
    /// Why it could not be read.
    pub fn error(&self) -> Option<&str> {
        match self {
            Fallible::Read(_) => None,
            Fallible::Failed { error } => Some(error),
        }
    }
}
