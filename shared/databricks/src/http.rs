//! The transport: one HTTP exchange at a time over the TLS stack the AWS SDK already links, built once per
//! connector at its first `connect` (loading the trust store costs a few milliseconds and memory that functions
//! which never talk to Databricks should not pay).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// The largest answer read: listings are paged by the API, far below this.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Sent with every request: Databricks asks API clients to name themselves.
const USER_AGENT: &str = concat!("databricks-dr-failover/", env!("CARGO_PKG_VERSION"));

/// A pooled HTTP/1.1 client for `https://` and (loopback, tests) `http://` URLs. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

/// One request, ready to send (rebuilt for each attempt: `Request` is consumed by sending).
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    pub url: &'a url::Url,
    /// `Authorization` (marked sensitive: hyper and `Debug` never show it).
    pub authorization: &'a HeaderValue,
    /// The body and its content type.
    pub body: Option<(&'a Bytes, &'static str)>,
}

/// An answer, whatever its status.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an exchange has no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The deadline passed (connecting, waiting, or reading the body).
    Timeout,
    /// No answer began: connection refused or reset, DNS, TLS, the connect timeout. `sent` is false when the
    /// connection itself could not be opened (nothing reached the workspace), true when it may have been sent.
    NoAnswer { cause: String, sent: bool },
    /// The answer began (status and headers) and then broke.
    BrokenAnswer { cause: String },
}

impl Transport {
    /// Builds the client: rustls on AWS-LC (the provider the SDK uses), the platform's roots (or those of
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, as for the SDK), TCP connect timeout `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Transport {
        let native = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() || ignored > 0 {
            tracing::debug!(errors = native.errors.len(), ignored, "some trusted CA certificates could not be loaded");
        }
        if added == 0 {
            tracing::warn!("no trusted CA certificate found: https calls to Databricks will fail");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
            // The default provider supports the default versions; kept as a fallback rather than a panic.
            Err(e) => {
                tracing::warn!(error = %e, "TLS configuration refused; using rustls' defaults");
                rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
            }
        };
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Transport { client }
    }

    /// One exchange, the whole of it (connecting, sending, the answer's body) within `deadline`.
    pub(crate) async fn exchange(&self, out: Outgoing<'_>, deadline: Duration) -> Result<Answer, Failure> {
        let mut builder = Request::builder()
            .method(out.method)
            .uri(out.url.as_str())
            .header(header::AUTHORIZATION, out.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT);
        let body = match out.body {
            Some((bytes, content_type)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let request =
            builder.body(body).map_err(|e| Failure::NoAnswer { cause: format!("invalid request: {e}"), sent: false })?;
        let exchange = async {
            let response =
                self.client.request(request).await.map_err(|e| Failure::NoAnswer { cause: cause(&e), sent: !e.is_connect() })?;
            let (parts, incoming) = response.into_parts();
            let body = Limited::new(incoming, MAX_BODY)
                .collect()
                .await
                .map_err(|e| Failure::BrokenAnswer { cause: dr_ports::error::error_chain(e.as_ref()) })?
                .to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(deadline, exchange).await.unwrap_or(Err(Failure::Timeout))
    }
}

/// The cause of a failed exchange, without the URL (its query could carry values the logs must not show).
fn cause(e: &hyper_util::client::legacy::Error) -> String {
    let chain = dr_ports::error::error_chain(e);
    if e.is_connect() { format!("cannot connect: {chain}") } else { chain }
}
