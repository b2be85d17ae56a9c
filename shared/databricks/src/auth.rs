//! Authentication: which credentials a site document names, the secret read from SSM at first use, and the
//! OAuth access token cached until shortly before it expires.

use dr_ports::{ApiError, SecretStore};
use http::HeaderValue;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Site-document key: the OAuth client (service principal application) id.
pub const OAUTH_CLIENT_ID_KEY: &str = "oauth_client_id";
/// Site-document key: the SecureString parameter holding the OAuth secret.
pub const OAUTH_SECRET_PARAMETER_KEY: &str = "oauth_secret_parameter";
/// Site-document key: the SecureString parameter holding a personal access token.
pub const TOKEN_PARAMETER_KEY: &str = "token_parameter";

/// A token is renewed this long before it expires.
pub(crate) const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// A secret (an OAuth secret, a personal access token, an access token): kept in memory, never shown.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `Bearer {secret}` as a header value marked sensitive, or `None` if the value cannot be a header.
    pub(crate) fn bearer(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a site authenticates, from its document: names only, no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// OAuth machine-to-machine: a service principal's client id and the parameter holding its secret.
    OAuth { client_id: String, secret_parameter: String },
    /// A personal access token, in this parameter.
    Pat { token_parameter: String },
}

impl Credentials {
    /// The parameter holding the secret.
    pub(crate) fn parameter(&self) -> &str {
        match self {
            Credentials::OAuth { secret_parameter, .. } => secret_parameter,
            Credentials::Pat { token_parameter } => token_parameter,
        }
    }

    /// Reads the credentials of a site document. OAuth wins when both are configured (Databricks recommends
    /// it over personal access tokens). Every secret parameter must lie under `secrets_path` (ending in `/`):
    /// the stack's IAM policy grants `ssm:GetParameter` and `kms:Decrypt` there only.
    pub(crate) fn from_document(site: &str, doc: &Map<String, Value>, secrets_path: &str) -> Result<Credentials, ApiError> {
        let not_configured = |problem: String| ApiError::NotConfigured(format!("site {site}: {problem}"));
        let string = |key: &str| -> Result<Option<String>, ApiError> {
            match doc.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(not_configured(format!("`{key}` must be a non-empty string"))),
            }
        };
        let under_secrets = |key: &str, name: String| -> Result<String, ApiError> {
            let rest = name.strip_prefix(secrets_path).unwrap_or_default();
            if rest.is_empty() || rest.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
                return Err(not_configured(format!(
                    "`{key}` is {name:?}, which is not under {secrets_path}: the functions may read (ssm:GetParameter, \
                     kms:Decrypt) only the SecureString parameters under that path"
                )));
            }
            Ok(name)
        };
        let client_id = string(OAUTH_CLIENT_ID_KEY)?;
        let secret_parameter = string(OAUTH_SECRET_PARAMETER_KEY)?;
        let token_parameter = string(TOKEN_PARAMETER_KEY)?;
        match (client_id, secret_parameter, token_parameter) {
            (Some(client_id), Some(p), _) => {
                Ok(Credentials::OAuth { client_id, secret_parameter: under_secrets(OAUTH_SECRET_PARAMETER_KEY, p)? })
            }
            (Some(_), None, _) => Err(not_configured(format!(
                "`{OAUTH_CLIENT_ID_KEY}` is set but `{OAUTH_SECRET_PARAMETER_KEY}` is not (the name of the SecureString \
                 parameter under {secrets_path} holding the OAuth secret)"
            ))),
            (None, Some(_), _) => Err(not_configured(format!(
                "`{OAUTH_SECRET_PARAMETER_KEY}` is set but `{OAUTH_CLIENT_ID_KEY}` is not (the service principal's \
                 application id)"
            ))),
            (None, None, Some(p)) => Ok(Credentials::Pat { token_parameter: under_secrets(TOKEN_PARAMETER_KEY, p)? }),
            (None, None, None) => Err(not_configured(format!(
                "no Databricks credentials: expected `{OAUTH_CLIENT_ID_KEY}` and `{OAUTH_SECRET_PARAMETER_KEY}` (OAuth \
                 machine-to-machine, recommended) or `{TOKEN_PARAMETER_KEY}` (a personal access token), the secret in a \
                 SecureString parameter under {secrets_path}"
            ))),
        }
    }
}

/// Where secrets are read: the [`SecretStore`] port (SSM in production, a fixed map in unit tests).
#[derive(Clone, Debug)]
pub(crate) struct SecretSource(pub Arc<dyn SecretStore>);

impl SecretSource {
    /// The secret `name`, trimmed; empty is an error. Errors name the parameter, never a value.
    pub(crate) async fn read(&self, name: &str) -> Result<Secret, ApiError> {
        let value = self.0.read_secret(name).await?;
        let value = value.trim();
        if value.is_empty() {
            return Err(ApiError::Auth(format!("SecureString parameter {name} is empty")));
        }
        tracing::debug!(parameter = name, "Databricks secret read");
        Ok(Secret::new(value.to_owned()))
    }
}

/// An OAuth access token and when to stop using it.
#[derive(Debug)]
pub(crate) struct Token {
    pub value: Secret,
    pub refresh_after: Instant,
    /// Which fetch this is: a 401 invalidates only the token it was answered to.
    pub generation: u64,
}

/// What a client learns at use: the secret, the current access token.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub secret: Option<Secret>,
    pub token: Option<Token>,
    pub generation: u64,
}

/// The token endpoint's answer (only what is used).
#[derive(serde::Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer").field("access_token", &"<redacted>").field("expires_in", &self.expires_in).finish()
    }
}
