//! The Lambda edge of the errors: [`ConfigError`] at cold start, [`HandlerError`] per invocation, and (with
//! the `lambda` feature) its mapping to the runtime's `Diagnostic`.
//!
//! Every error knows whether a retry can help ([`Retry`]). That decides the `errorType` the runtime
//! reports (`Retryable.*` or `Permanent.*`), which is what on-call reads in the Lambda console and what
//! alarms and destinations can filter on.

use domain::error::InvalidDocument;
use dr_failover::EngineError;
use dr_ports::error::{Retry, StoreError};
use engine::commands::CommandError;

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
    Engine(#[from] EngineError),
    /// Another attempt of the same execution holds the lock: deliver the trigger again later.
    #[error("{0}")]
    InFlight(String),
    /// The execution answered, but pages it owes could not be published: deliver the trigger again so that
    /// they go out (the engine pays owed pages before anything else).
    #[error("{0}")]
    PagesOwed(String),
}

impl HandlerError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            HandlerError::Store(e) => e.retry(),
            HandlerError::Document(_) => Retry::Futile,
            HandlerError::Engine(e) => e.retry(),
            HandlerError::InFlight(_) | HandlerError::PagesOwed(_) => Retry::Helps,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            HandlerError::Store(StoreError::Transient { .. }) => "AwsTransient",
            HandlerError::Store(StoreError::Refused { .. }) => "AwsRefused",
            HandlerError::Store(StoreError::Conflict { .. }) => "Conflict",
            HandlerError::Document(_) => "InvalidDocument",
            HandlerError::Engine(EngineError::NotStarted { .. }) => "NotStarted",
            HandlerError::Engine(EngineError::Stopped { .. }) => "ExecutionStopped",
            HandlerError::Engine(EngineError::VerificationFailed { .. }) => "VerificationFailed",
            HandlerError::Engine(EngineError::Corrupt { .. }) => "CorruptState",
            HandlerError::InFlight(_) => "InFlight",
            HandlerError::PagesOwed(_) => "PagesOwed",
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

impl From<CommandError> for HandlerError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Store(e) => HandlerError::Store(e),
            CommandError::Document(e) => HandlerError::Document(e),
            CommandError::Execution(e) => HandlerError::Engine(e),
        }
    }
}

#[cfg(feature = "lambda")]
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(err: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: err.error_type(), error_message: dr_ports::error::error_chain(&err) }
    }
}

#[cfg(all(test, feature = "lambda"))]
mod tests {
    use super::*;
    use lambda_runtime::Diagnostic;

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
