//! The domain's one error: a document that does not have the expected shape.

/// A document (SSM parameter value, control-bucket object) that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is invalid: {problem}")]
pub struct InvalidDocument {
    /// Which document, e.g. `SSM parameter /dr/prod/sites/primary`.
    pub what: String,
    /// What is wrong, naming the field.
    pub problem: String,
}
