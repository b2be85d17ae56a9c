//! Errors of the engine's layer: what the ports report ([`StoreError`]), what a command can fail with
//! ([`CommandError`]), and whether a retry can help ([`Retry`]), decided once where the cause is in hand.

/// Whether repeating the same invocation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient condition (throttling, a 5xx, a timeout, a lost race): the same input may succeed later.
    Helps,
    /// The input or the configuration is wrong: repeating it changes nothing.
    Futile,
}

/// Failures of the AWS adapters, classified once where the SDK error is still in hand.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The service could not be reached or answered with a transient failure after the SDK's retries.
    #[error("{service} {operation} failed transiently: {message}")]
    Transient {
        /// AWS service, e.g. `SSM`.
        service: &'static str,
        /// API operation, e.g. `GetParameters`.
        operation: &'static str,
        /// The SDK's description, with its cause chain.
        message: String,
    },
    /// The service refused the request in a way a retry cannot fix (access denied, missing resource).
    #[error("{service} {operation} was refused: {message}")]
    Refused {
        /// AWS service, e.g. `S3`.
        service: &'static str,
        /// API operation.
        operation: &'static str,
        /// The SDK's description, with its cause chain.
        message: String,
    },
    /// A conditional write lost: the object or parameter changed (or exists) already.
    #[error("{service} {operation}: precondition failed on {target}")]
    Conflict {
        /// AWS service.
        service: &'static str,
        /// API operation.
        operation: &'static str,
        /// The key or name written.
        target: String,
    },
}

impl StoreError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            StoreError::Transient { .. } | StoreError::Conflict { .. } => Retry::Helps,
            StoreError::Refused { .. } => Retry::Futile,
        }
    }
}

/// Renders an error with its whole `source()` chain, `outer: inner: root`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
