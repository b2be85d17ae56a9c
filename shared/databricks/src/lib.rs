//! The Databricks REST client: [`WorkspaceConnector`] and [`WorkspaceApi`] over the workspaces' API.
//!
//! An adapter of the `dr-ports` traits like the `aws` crate, but naming no AWS SDK type: its secrets come through
//! the [`SecretStore`] port (SSM's SecureString parameters in `aws::ssm::SsmSecrets`).
//!
//! - Transport (`http.rs`): hyper 1 + hyper-rustls + rustls on AWS-LC with the platform's trust store, the stack
//!   the AWS SDK already links; built at the connector's first [`connect`](DatabricksConnector::connect).
//! - Authentication (`auth.rs`): OAuth machine-to-machine (`oauth_client_id` + `oauth_secret_parameter`) or a
//!   personal access token (`token_parameter`), the secret read through the [`SecretStore`] (SSM: SecureString, decrypted) at the first
//!   call, kept in the client only, never logged nor put in an error; sent to that workspace's URL only.
//! - Retries, classified per call by the caller's [`Idempotency`] (every GET is idempotent): 429 after
//!   `Retry-After` (at most 30 s; 1 s when absent) for every call; for idempotent calls (GETs, a full
//!   `jobs/update`, a warehouse start or stop) also 503 after `Retry-After` (backoff when absent), other 5xx, a
//!   lost connection and a broken answer, after an exponential backoff with full jitter; a non-idempotent call
//!   is otherwise repeated only when its connection never opened (nothing was sent). At most [`MAX_ATTEMPTS`]
//!   sends per call. Each send has a deadline ([`REQUEST_TIMEOUT`]); one that passes it is not repeated. The
//!   rule is the official SDKs': 429 and 503 are retried on every method, honouring `Retry-After`
//!   (databricks-sdk-go `apierr/errors.go` `IsRetriable`; databricks-sdk-py `_base_client.py` `_is_retryable`,
//!   `errors/customizer.py` `_RetryAfterCustomizer`).
//! - Redirects are never followed (the request carries the token); each is an error saying what is wrong and what
//!   to change, the PrivateLink validation redirect by name.
//! - Logs (`tracing`, debug): method, path, status, attempt, elapsed ms; never headers, query values or bodies.

mod answers;
mod auth;
mod http;
#[cfg(test)]
mod tests;

pub use auth::{OAUTH_CLIENT_ID_KEY, OAUTH_SECRET_PARAMETER_KEY, TOKEN_PARAMETER_KEY};

use self::answers::{error_fields, is_invalid_token, jitter, json_body, redirect_error, retry_after, status_error};
use self::auth::{AuthState, Credentials, Secret, SecretSource, TOKEN_EXPIRY_MARGIN, Token, TokenAnswer};
use self::http::{Answer, Failure, Outgoing, Transport};
use ::http::{HeaderValue, Method, StatusCode};
use bytes::Bytes;
use domain::site::{SiteConfig, SiteName};
use dr_ports::{ApiError, Idempotency, SecretStore, WorkspaceApi, WorkspaceConnector};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Deadline of one request (one send and its whole answer), unless `DR_DATABRICKS_REQUEST_TIMEOUT_MS` says.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect timeout (the same as the AWS clients' `aws::CONNECT_TIMEOUT`; `app` checks they agree).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Sends per call at most, retries included (a 401 answered by a fresh OAuth token counts too).
pub const MAX_ATTEMPTS: u32 = 4;
/// First backoff of a retried GET, unless `DR_DATABRICKS_BACKOFF_MS` says; doubled per attempt, full jitter.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The longest wait a `Retry-After` may ask for.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// The wait after a 429 without `Retry-After`.
pub const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);
/// Requests per second sent to one workspace at most (every send, retries included), unless
/// `DR_DATABRICKS_RATE_LIMIT` says: a client-side limit, as databricks-sdk-go's `rate_limit`
/// (`httpclient/api_client.go`, a limiter waited on before each attempt), so that an export's fan-out stays under
/// the workspace's own limits instead of meeting them as 429s.
pub const RATE_LIMIT: u32 = 150;

/// The OAuth token endpoint of a workspace.
const TOKEN_PATH: &str = "/oidc/v1/token";

/// Timing knobs, fixed when the connector is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub request_timeout: Duration,
    pub backoff_base: Duration,
    /// Requests per second to one workspace ([`RATE_LIMIT`]).
    pub rate_limit: u32,
}

impl Settings {
    /// The defaults, with `DR_DATABRICKS_REQUEST_TIMEOUT_MS`, `DR_DATABRICKS_BACKOFF_MS` (the tests shorten both;
    /// production keeps the defaults) and `DR_DATABRICKS_RATE_LIMIT` (requests per second to one workspace) applied.
    fn from_env() -> Settings {
        let ms = |var: &str, range: std::ops::RangeInclusive<u64>| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| range.contains(ms))
                .map(Duration::from_millis)
        };
        Settings {
            request_timeout: ms("DR_DATABRICKS_REQUEST_TIMEOUT_MS", 10..=300_000).unwrap_or(REQUEST_TIMEOUT),
            backoff_base: ms("DR_DATABRICKS_BACKOFF_MS", 1..=10_000).unwrap_or(BACKOFF_BASE),
            rate_limit: std::env::var("DR_DATABRICKS_RATE_LIMIT")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|r| (1..=10_000).contains(r))
                .unwrap_or(RATE_LIMIT),
        }
    }
}

/// Builds a [`DatabricksClient`] per site from its document. Holds the HTTP client (built at the first
/// `connect`, shared by every client it builds: one connection pool) and the SSM client that reads secrets.
pub struct DatabricksConnector {
    secrets: SecretSource,
    secrets_path: String,
    settings: Settings,
    transport: OnceLock<Transport>,
}

impl std::fmt::Debug for DatabricksConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabricksConnector")
            .field("secrets_path", &self.secrets_path)
            .field("settings", &self.settings)
            .field("transport_built", &self.transport.get().is_some())
            .finish()
    }
}

impl DatabricksConnector {
    /// A connector reading secrets from `secrets`; every secret parameter must lie under `secrets_path`
    /// (`{DR_SSM_PREFIX}/secrets/`, where the functions' role may decrypt). Reads the environment overrides
    /// `DR_DATABRICKS_REQUEST_TIMEOUT_MS` and `DR_DATABRICKS_BACKOFF_MS`; builds nothing else yet.
    pub fn new(secrets: Arc<dyn SecretStore>, secrets_path: &str) -> Self {
        Self::with_source(SecretSource(secrets), secrets_path, Settings::from_env())
    }

    pub(crate) fn with_source(secrets: SecretSource, secrets_path: &str, settings: Settings) -> Self {
        let mut secrets_path = secrets_path.trim().to_owned();
        if !secrets_path.ends_with('/') {
            secrets_path.push('/');
        }
        DatabricksConnector { secrets, secrets_path, settings, transport: OnceLock::new() }
    }

    /// The concrete client of `site` (what [`WorkspaceConnector::connect`] returns, boxed).
    pub fn client(&self, site: SiteName, config: &SiteConfig) -> Result<DatabricksClient, ApiError> {
        let credentials = Credentials::from_document(site.as_str(), config.document(), &self.secrets_path)?;
        let base = url::Url::parse(config.workspace_url())
            .map_err(|e| ApiError::NotConfigured(format!("site {site}: `workspace_url` is not a URL ({e})")))?;
        let transport = self.transport.get_or_init(|| Transport::new(CONNECT_TIMEOUT)).clone();
        Ok(DatabricksClient {
            site,
            base,
            credentials,
            secrets: self.secrets.clone(),
            settings: self.settings,
            transport,
            state: tokio::sync::Mutex::new(AuthState::default()),
            limiter: RateLimiter::new(self.settings.rate_limit),
        })
    }
}

impl WorkspaceConnector for DatabricksConnector {
    fn connect(&self, site: SiteName, config: &SiteConfig) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        Ok(Arc::new(self.client(site, config)?))
    }
}

/// One workspace's REST API client: its URL, its credentials (names), and once used its secret and token.
pub struct DatabricksClient {
    site: SiteName,
    base: url::Url,
    credentials: Credentials,
    secrets: SecretSource,
    settings: Settings,
    transport: Transport,
    /// Locked while the secret is read or a token fetched: concurrent calls wait for one fetch.
    state: tokio::sync::Mutex<AuthState>,
    /// The client-side rate limit of this workspace.
    limiter: RateLimiter,
}

/// Spaces sends evenly at `rate` per second: each send takes the next free slot (no burst, so that a fan-out's
/// first second is no harder on the workspace than the others).
struct RateLimiter {
    interval: Duration,
    next: std::sync::Mutex<Instant>,
}

impl RateLimiter {
    fn new(rate: u32) -> RateLimiter {
        RateLimiter { interval: Duration::from_secs(1) / rate.max(1), next: std::sync::Mutex::new(Instant::now()) }
    }

    /// Waits for this send's slot.
    async fn wait(&self) {
        let slot = {
            // A poisoned lock only means another send panicked while holding a time stamp: the value is usable.
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

impl std::fmt::Debug for DatabricksClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state holds the secret and the token: never shown, not even their presence.
        f.debug_struct("DatabricksClient")
            .field("site", &self.site)
            .field("workspace_url", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What the retry loop sends: the authorization is fetched per attempt by the caller.
struct Call<'a> {
    method: Method,
    /// The API path, for logs and errors (never the query).
    path: &'a str,
    url: &'a url::Url,
    body: Option<(&'a Bytes, &'static str)>,
    /// Whether a 5xx, a lost connection or a broken answer may be retried (every GET, the token request, and the
    /// POSTs their caller says are idempotent).
    idempotent: bool,
}

impl DatabricksClient {
    /// The site this client talks to.
    pub fn site(&self) -> SiteName {
        self.site
    }

    /// `{workspace_url}{path}` with the query pairs URL-encoded. The path must be absolute (`/api/...`): it
    /// replaces the URL's path and cannot change its host.
    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, ApiError> {
        if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#']) {
            return Err(ApiError::BadAnswer {
                path: path.to_owned(),
                problem: "not an API path (expected /api/..., the query given apart)".into(),
            });
        }
        let mut url = self.base.clone();
        url.set_path(path);
        url.set_query(None);
        url.set_fragment(None);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// A GET or POST of the API: authorization, retries, the 401 of an expired OAuth token, errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        url: url::Url,
        body: Option<Bytes>,
        idempotency: Idempotency,
    ) -> Result<Value, ApiError> {
        let idempotent = idempotency == Idempotency::Idempotent;
        let call = Call { method, path, url: &url, body: body.as_ref().map(|b| (b, "application/json")), idempotent };
        let mut budget = MAX_ATTEMPTS;
        let mut renewed = false;
        loop {
            let (authorization, generation) = self.authorization().await?;
            let answer = self.send(&call, &authorization, &mut budget).await?;
            if answer.status.is_redirection() {
                return Err(redirect_error(&call.method, path, &self.base, &answer));
            }
            if answer.status.is_success() {
                return json_body(path, &answer.body);
            }
            if answer.status == StatusCode::UNAUTHORIZED || is_invalid_token(&answer) {
                match &self.credentials {
                    Credentials::OAuth { .. } if !renewed && budget > 0 => {
                        // Revoked or expired early: one fresh token, one more try.
                        self.forget_token(generation).await;
                        renewed = true;
                        continue;
                    }
                    _ => {
                        // The secret may have been rotated in SSM: the next call reads it again.
                        self.forget_secret().await;
                        let (code, message) = error_fields(&answer);
                        let what = match &self.credentials {
                            Credentials::OAuth { client_id, .. } => format!("a fresh OAuth token of client {client_id}"),
                            Credentials::Pat { token_parameter } => {
                                format!("the personal access token of parameter {token_parameter}")
                            }
                        };
                        return Err(ApiError::Auth(format!(
                            "site {}: {} {path}: the workspace refused {what} (HTTP {}{}: {message})",
                            self.site,
                            call.method,
                            answer.status.as_u16(),
                            code.map(|c| format!(" {c}")).unwrap_or_default(),
                        )));
                    }
                }
            }
            return Err(status_error(&call.method, path, &answer));
        }
    }

    /// The `Authorization` header of the next attempt, and the token generation it carries (OAuth).
    async fn authorization(&self) -> Result<(HeaderValue, u64), ApiError> {
        let mut state = self.state.lock().await;
        if state.secret.is_none() {
            state.secret = Some(self.secrets.read(self.credentials.parameter()).await?);
        }
        let unusable = || {
            ApiError::Auth(format!(
                "site {}: parameter {} does not hold a usable secret (not printable ASCII)",
                self.site,
                self.credentials.parameter()
            ))
        };
        let Credentials::OAuth { client_id, secret_parameter } = &self.credentials else {
            let secret = state.secret.as_ref().ok_or_else(unusable)?;
            return Ok((secret.bearer().ok_or_else(unusable)?, 0));
        };
        if let Some(token) = &state.token
            && Instant::now() < token.refresh_after
        {
            return Ok((token.value.bearer().ok_or_else(unusable)?, token.generation));
        }
        let secret = state.secret.clone().ok_or_else(unusable)?;
        let token = match self.fetch_token(client_id, secret_parameter, &secret).await {
            Ok(token) => token,
            Err(e) => {
                if matches!(e, ApiError::Auth(_)) {
                    state.secret = None;
                }
                return Err(e);
            }
        };
        state.generation += 1;
        let generation = state.generation;
        let header = token.0.bearer().ok_or_else(|| ApiError::BadAnswer {
            path: TOKEN_PATH.into(),
            problem: "the access token is not a valid header value".into(),
        })?;
        state.token = Some(Token { value: token.0, refresh_after: token.1, generation });
        Ok((header, generation))
    }

    /// `POST /oidc/v1/token` (client credentials, scope `all-apis`, the client authenticated by HTTP Basic).
    async fn fetch_token(&self, client_id: &str, secret_parameter: &str, secret: &Secret) -> Result<(Secret, Instant), ApiError> {
        let url = self.url(TOKEN_PATH, &[])?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = {
            use base64::Engine;
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret.expose())));
            let mut v = HeaderValue::from_str(&format!("Basic {creds}")).map_err(|_| {
                ApiError::Auth(format!("site {}: parameter {secret_parameter} does not hold a usable OAuth secret", self.site))
            })?;
            v.set_sensitive(true);
            v
        };
        let form = Bytes::from_static(b"grant_type=client_credentials&scope=all-apis");
        // Minting a second token when an answer was lost is harmless: the token request is retried like a GET.
        let call = Call {
            method: Method::POST,
            path: TOKEN_PATH,
            url: &url,
            body: Some((&form, "application/x-www-form-urlencoded")),
            idempotent: true,
        };
        let mut budget = MAX_ATTEMPTS;
        let asked = Instant::now();
        let answer = self.send(&call, &basic, &mut budget).await?;
        if answer.status.is_redirection() {
            return Err(redirect_error(&call.method, TOKEN_PATH, &self.base, &answer));
        }
        if answer.status.is_client_error() && answer.status != StatusCode::TOO_MANY_REQUESTS {
            let (code, message) = error_fields(&answer);
            return Err(ApiError::Auth(format!(
                "site {}: the workspace refused an OAuth token to client {client_id} (secret in {secret_parameter}): HTTP {}{}: {message}",
                self.site,
                answer.status.as_u16(),
                code.map(|c| format!(" {c}")).unwrap_or_default(),
            )));
        }
        if !answer.status.is_success() {
            return Err(status_error(&call.method, TOKEN_PATH, &answer));
        }
        // The answer's text is never quoted in an error: it holds the token.
        let token: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|e| ApiError::BadAnswer {
            path: TOKEN_PATH.into(),
            problem: format!(
                "not the token answer (access_token, expires_in): {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        })?;
        if token.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(ApiError::BadAnswer { path: TOKEN_PATH.into(), problem: "token_type is not Bearer".into() });
        }
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(TOKEN_EXPIRY_MARGIN);
        tracing::debug!(site = %self.site, expires_in = token.expires_in, "Databricks OAuth token fetched");
        Ok((Secret::new(token.access_token), asked + lifetime))
    }

    async fn forget_token(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|t| t.generation == generation) {
            state.token = None;
        }
    }

    async fn forget_secret(&self) {
        let mut state = self.state.lock().await;
        state.secret = None;
        state.token = None;
    }

    /// Sends `call` until it has an answer that retrying will not change, spending `budget` (one per send).
    /// Every call: 429 after `Retry-After`, and a connection that never opened (nothing was sent). Idempotent
    /// calls also: 503 after `Retry-After` (the backoff when absent), other 5xx, a connection lost before the
    /// answer, a broken answer. Returns the last answer whatever its status; `Err` when there was none.
    ///
    /// A non-idempotent call is not repeated once it may have reached the workspace (a 5xx, a lost answer): the
    /// workspace may have acted on it, and a second send could act again.
    async fn send(&self, call: &Call<'_>, authorization: &HeaderValue, budget: &mut u32) -> Result<Answer, ApiError> {
        let what = || format!("{} {}", call.method, call.path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            *budget = budget.saturating_sub(1);
            let last = *budget == 0;
            self.limiter.wait().await;
            let started = Instant::now();
            let out = Outgoing { method: call.method.clone(), url: call.url, authorization, body: call.body };
            let outcome = self.transport.exchange(out, self.settings.request_timeout).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (method, path) = (call.method.as_str(), call.path);
            match outcome {
                Ok(answer) => {
                    let status = answer.status.as_u16();
                    tracing::debug!(site = %self.site, method, path, status, attempt, elapsed_ms, "Databricks call");
                    if answer.status == StatusCode::TOO_MANY_REQUESTS && !last {
                        tokio::time::sleep(retry_after(&answer).unwrap_or(RETRY_AFTER_DEFAULT)).await;
                    } else if answer.status == StatusCode::SERVICE_UNAVAILABLE && call.idempotent && !last {
                        tokio::time::sleep(retry_after(&answer).unwrap_or_else(|| self.backoff(attempt))).await;
                    } else if answer.status.is_server_error() && call.idempotent && !last {
                        tokio::time::sleep(self.backoff(attempt)).await;
                    } else {
                        return Ok(answer);
                    }
                }
                Err(Failure::Timeout) => {
                    // Not retried: a workspace that does not answer within the deadline is likely to hang again,
                    // and the engine's own deadline is better spent on the other calls.
                    tracing::debug!(site = %self.site, method, path, outcome = "timeout", attempt, elapsed_ms, "Databricks call");
                    return Err(ApiError::Timeout(what()));
                }
                Err(Failure::NoAnswer { cause, sent }) => {
                    tracing::debug!(site = %self.site, method, path, outcome = "no answer", attempt, elapsed_ms, "Databricks call");
                    if last || (sent && !call.idempotent) {
                        return Err(ApiError::Unreachable(format!("{} ({cause})", what())));
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(Failure::BrokenAnswer { cause }) => {
                    tracing::debug!(site = %self.site, method, path, outcome = "broken answer", attempt, elapsed_ms, "Databricks call");
                    if last || !call.idempotent {
                        return Err(ApiError::Unreachable(format!("{} (the answer broke off: {cause})", what())));
                    }
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        }
    }

    /// Full jitter: uniform in `[0, min(cap, base * 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.settings.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(BACKOFF_CAP);
        ceiling.mul_f64(jitter())
    }
}

impl WorkspaceApi for DatabricksClient {
    fn get<'a>(&'a self, path: &'a str, query: &'a [(&'a str, String)]) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = self.url(path, query)?;
            self.call(Method::GET, path, url, None, Idempotency::Idempotent).await
        })
    }

    fn post<'a>(&'a self, path: &'a str, body: &'a Value, idempotency: Idempotency) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let url = self.url(path, &[])?;
            let body = serde_json::to_vec(body).map_err(|e| ApiError::BadAnswer {
                path: path.to_owned(),
                problem: format!("the request body cannot be serialized: {e}"),
            })?;
            self.call(Method::POST, path, url, Some(Bytes::from(body)), idempotency).await
        })
    }

    fn send<'a>(
        &'a self,
        method: domain::kinds::Method,
        path: &'a str,
        body: &'a Value,
        idempotency: Idempotency,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        use domain::kinds::Method as M;
        Box::pin(async move {
            let url = self.url(path, &[])?;
            let method = match method {
                M::Post => Method::POST,
                M::Put => Method::PUT,
                M::Patch => Method::PATCH,
                M::Delete => Method::DELETE,
            };
            // A DELETE without a body sends none (`null` is no body).
            let body = match body {
                Value::Null => None,
                b => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| ApiError::BadAnswer {
                    path: path.to_owned(),
                    problem: format!("the request body cannot be serialized: {e}"),
                })?)),
            };
            self.call(method, path, url, body, idempotency).await
        })
    }
}
