//! Errors of the shared layers and how they reach the Lambda runtime.
//!
//! Every error knows whether a retry can help ([`Retry`]). That decides the `errorType` the runtime
//! reports (`Retryable.*` or `Permanent.*`), which is what on-call reads in the Lambda console and what
//! alarms and destinations can filter on.

use lambda_runtime::Diagnostic;

/// Whether repeating the same invocation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient condition (throttling, a 5xx, a timeout, a lost race): the same input may succeed later.
    Helps,
    /// The input or the configuration is wrong: repeating it changes nothing.
    Futile,
}

/// Errors raised while reading the configuration from the environment at cold start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("environment variable {name} is not set: expected {expected}")]
    Missing {
        /// The variable's name.
        name: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A variable is set but its value is not valid.
    #[error("environment variable {name} is invalid ({value:?}): {problem}; expected {expected}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
}

/// A document (SSM parameter value, control-bucket object) that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is invalid: {problem}")]
pub struct InvalidDocument {
    /// Which document, e.g. `SSM parameter /dr/prod/sites/primary`.
    pub what: String,
    /// What is wrong, naming the field.
    pub problem: String,
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

/// The error a handler returns to the runtime when it cannot answer with a domain outcome.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// An AWS call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document the handler depends on is invalid (an operator must fix it).
    #[error(transparent)]
    Document(#[from] InvalidDocument),
    /// The failover engine could not finish (its record says where it stopped).
    #[error(transparent)]
    Engine(#[from] crate::engine::failover::EngineError),
    /// Another attempt of the same execution holds the lock: deliver the trigger again later.
    #[error("{0}")]
    InFlight(String),
}

impl HandlerError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            HandlerError::Store(e) => e.retry(),
            HandlerError::Document(_) => Retry::Futile,
            HandlerError::Engine(e) => e.retry(),
            HandlerError::InFlight(_) => Retry::Helps,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            HandlerError::Store(StoreError::Transient { .. }) => "AwsTransient",
            HandlerError::Store(StoreError::Refused { .. }) => "AwsRefused",
            HandlerError::Store(StoreError::Conflict { .. }) => "Conflict",
            HandlerError::Document(_) => "InvalidDocument",
            HandlerError::Engine(crate::engine::failover::EngineError::NotStarted { .. }) => "NotStarted",
            HandlerError::Engine(crate::engine::failover::EngineError::Stopped { .. }) => "ExecutionStopped",
            HandlerError::Engine(crate::engine::failover::EngineError::VerificationFailed { .. }) => "VerificationFailed",
            HandlerError::Engine(crate::engine::failover::EngineError::Corrupt { .. }) => "CorruptState",
            HandlerError::InFlight(_) => "InFlight",
        }
    }
}

impl HandlerError {
    /// `Retryable.<Kind>` or `Permanent.<Kind>`: the `errorType` the runtime reports.
    pub fn error_type(&self) -> String {
        let prefix = match self.retry() {
            Retry::Helps => "Retryable",
            Retry::Futile => "Permanent",
        };
        format!("{prefix}.{}", self.kind())
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(err: HandlerError) -> Self {
        Diagnostic { error_type: err.error_type(), error_message: error_chain(&err) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_reported_as_retryable() {
        let d: Diagnostic =
            HandlerError::from(StoreError::Transient { service: "SSM", operation: "GetParameters", message: "throttled".into() })
                .into();
        assert_eq!(d.error_type, "Retryable.AwsTransient");
        assert!(d.error_message.contains("GetParameters"));
    }

    #[test]
    fn invalid_documents_are_permanent() {
        let d: Diagnostic =
            HandlerError::from(InvalidDocument { what: "SSM parameter /dr/p/policy".into(), problem: "mode: unknown".into() })
                .into();
        assert_eq!(d.error_type, "Permanent.InvalidDocument");
        assert!(d.error_message.contains("/dr/p/policy"));
    }
}
