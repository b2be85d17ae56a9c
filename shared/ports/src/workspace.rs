//! The Databricks workspace REST API, as the metadata export (and, later, workload activation) needs it.
//!
//! The adapter (the `dr-databricks` crate) owns everything of the transport: TLS, authentication (OAuth M2M or a
//! personal access token, its secret read at use through the [`SecretStore`]), retries of 429 and 503 (honouring `Retry-After`) and other
//! 5xx (backoff with jitter) as each call's [`Idempotency`] allows, and the per-request deadline. The engine owns
//! what is asked: which endpoints, whether each is idempotent, every page, how many listings at once, the overall deadline, and what an answer means.

use domain::kinds::Method;
use domain::site::{SiteConfig, SiteName};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

/// Why a workspace call failed, classified so that the export can say "skipped" or "partial" with a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The site document names no usable credentials (no `token_parameter`, no OAuth client): nothing was sent.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// The credentials were refused, or the secret could not be read from SSM (what, never the secret).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The workspace answered with an error status after the adapter's retries.
    #[error("{method} {path}: HTTP {status}{}: {message}", error_code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// The API path, without the query.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Databricks' `error_code`, when the body had one (`RESOURCE_DOES_NOT_EXIST`, `FEATURE_DISABLED`, ...).
        error_code: Option<String>,
        /// The body's `message`, or the start of the body.
        message: String,
    },
    /// The workspace answered with a redirect (3xx), which is never followed (it would carry the token to another
    /// place): what is wrong and what to change, e.g. the PrivateLink validation redirect to the login page.
    #[error("{method} {path}: redirected (HTTP {status}) to {location}: {advice}")]
    Redirected {
        /// `GET` or `POST`.
        method: &'static str,
        /// The API path, without the query.
        path: String,
        /// The HTTP status (301, 302, 303, 307, 308).
        status: u16,
        /// Where to: scheme, host and path (the query left out, but for the error it names).
        location: String,
        /// What is wrong and what to change.
        advice: String,
    },
    /// The per-request deadline (or the caller's) passed.
    #[error("{0}: timed out")]
    Timeout(String),
    /// No answer: connection refused, reset, DNS, TLS.
    #[error("{0}: unreachable")]
    Unreachable(String),
    /// An answer that is not the JSON the API documents.
    #[error("{path}: unexpected answer: {problem}")]
    BadAnswer {
        /// The API path.
        path: String,
        /// What was wrong.
        problem: String,
    },
}

impl ApiError {
    /// Whether the workspace says the API or object does not exist here (404, or a feature that is not enabled):
    /// an export of that kind is skipped rather than partial.
    pub fn is_absent(&self) -> bool {
        match self {
            ApiError::Status { status, error_code, .. } => {
                *status == 404
                    || matches!(error_code.as_deref(), Some("FEATURE_DISABLED" | "ENDPOINT_NOT_FOUND" | "NOT_IMPLEMENTED"))
            }
            _ => false,
        }
    }

    /// Whether the workspace did not answer at all (down, unreachable, timing out): every other call will fail too.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable(_) | ApiError::Timeout(_))
    }

    /// Whether no call to this workspace can succeed from here as configured (unreachable, credentials refused
    /// or missing, every call redirected): an export skips the whole site after the first such answer.
    pub fn is_site_wide(&self) -> bool {
        self.is_unreachable() || matches!(self, ApiError::Auth(_) | ApiError::NotConfigured(_) | ApiError::Redirected { .. })
    }
}

/// Whether a call may be sent again when its answer says "try again" or is lost: said by the caller, per call,
/// because only the caller knows what the call does (a POST is not unsafe by being a POST).
///
/// The official SDKs retry 429 and 503 on every call, GET and POST alike, honouring `Retry-After`
/// (databricks-sdk-go `apierr/errors.go` `IsRetriable`, databricks-sdk-py `_base_client.py` `_is_retryable` and
/// `errors/customizer.py` `_RetryAfterCustomizer`). A non-idempotent call (`jobs/create`, `jobs/run-now`) repeated
/// after the workspace acted on it makes a second job or a second run, so it is never repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Sending it twice has the effect of sending it once: every GET; a full `jobs/update` or `jobs/reset` with
    /// the same settings; `sql/warehouses/{id}/start` and `/stop`. Retried on 429, 503 (after `Retry-After`),
    /// other 5xx, a lost connection and a broken answer.
    Idempotent,
    /// A second send may act a second time (`jobs/create`, `jobs/run-now`). Retried only where the workspace
    /// surely did not act: a 429 (the rate limiter refused it before it ran) or a connection that never opened.
    NotIdempotent,
}

/// One workspace's REST API. Object-safe (boxed futures): the engine holds one per site, built from the site
/// document at use time.
pub trait WorkspaceApi: Send + Sync {
    /// `GET {workspace_url}{path}?{query}`; the JSON body of a 2xx answer.
    fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// `POST {workspace_url}{path}` with a JSON body, retried as `idempotency` allows; the JSON body of a 2xx
    /// answer (`{}` when empty).
    fn post<'a>(&'a self, path: &'a str, body: &'a Value, idempotency: Idempotency) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// `{method} {workspace_url}{path}` with a JSON body (none for `null`), retried as `idempotency` allows: the
    /// writes of sync (`PUT`, `PATCH` and `DELETE` beside `POST`). Clients that only read and post answer the
    /// other methods with [`ApiError::BadAnswer`].
    fn send<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        body: &'a Value,
        idempotency: Idempotency,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        match method {
            Method::Post => self.post(path, body, idempotency),
            other => Box::pin(async move {
                Err(ApiError::BadAnswer { path: path.to_owned(), problem: format!("this client does not send {other:?}") })
            }),
        }
    }
}

/// Builds the API client of a site from its document (URL, how to authenticate). Building sends nothing: the
/// secret is read, and the token fetched, at the first call.
pub trait WorkspaceConnector: Send + Sync {
    /// The client of `site`, or why there can be none ([`ApiError::NotConfigured`]).
    fn connect(&self, site: SiteName, config: &SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError>;
}

/// Where a workspace's secrets are read: SecureString parameters, decrypted (SSM, in the `aws` crate). A port of
/// its own so that the Databricks client names no AWS SDK type.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The value of the parameter `name`. An error is an [`ApiError::Auth`] that names the parameter and why it
    /// cannot be read (missing, access denied and what to grant), never a value.
    fn read_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, ApiError>>;
}
