//! The client against a scripted workspace (tiny_http in a thread): retries, deadlines, OAuth, PAT, errors,
//! and the secret kept out of every `Debug` and error. The SSM side is in tests/tests/databricks_client.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::auth::SecretSource;
use super::*;
use ::http::header;
use dr_ports::SecretStore;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Secrets from a fixed map (a missing one answers as SSM's ParameterNotFound does).
#[derive(Debug, Default)]
struct Fixed(BTreeMap<String, String>);

impl SecretStore for Fixed {
    fn read_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<String, ApiError>> {
        let found = self.0.get(name).cloned();
        Box::pin(async move {
            found.ok_or_else(|| ApiError::Auth(format!("cannot read SecureString parameter {name}: it does not exist")))
        })
    }
}

const SECRETS: &str = "/dr/t/secrets/";
const PAT: &str = "dapi-TOP-SECRET-pat-0123456789";
const OAUTH_SECRET: &str = "dose-TOP-SECRET-oauth-9876543210";
const CLIENT_ID: &str = "6f0c1a2b-client";

/// A request as the workspace saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
    at: Instant,
}

/// What the workspace answers.
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body: body.to_string(), headers: Vec::new(), delay: Duration::ZERO }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Handler = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

/// A scripted workspace on a free loopback port; each request is answered in its own thread by `handler`
/// (given the request's index among all those received).
struct Workspace {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
}

impl Workspace {
    fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Workspace {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (srv, log) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_owned())
                };
                let mut body = String::new();
                let (authorization, content_type) = (header("Authorization"), header("Content-Type"));
                request.as_reader().read_to_string(&mut body).unwrap();
                let s = Seen {
                    method: request.method().as_str().to_owned(),
                    url: request.url().to_owned(),
                    authorization,
                    content_type,
                    body,
                    at: Instant::now(),
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(s.clone());
                    log.len() - 1
                };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let r = handler(index, &s);
                    std::thread::sleep(r.delay);
                    let mut response = tiny_http::Response::from_string(r.body)
                        .with_status_code(r.status)
                        .with_header(tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap());
                    for (k, v) in r.headers {
                        response = response.with_header(tiny_http::Header::from_bytes(k, v).unwrap());
                    }
                    let _ = request.respond(response);
                });
            }
        });
        Workspace { url, seen, server }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.url.split('?').next() == Some(path)).count()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn connector_with(secrets: &[(&str, &str)], request_timeout: Duration) -> DatabricksConnector {
    let map: BTreeMap<String, String> = secrets.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    DatabricksConnector::with_source(
        SecretSource(Arc::new(Fixed(map))),
        SECRETS,
        Settings { request_timeout, backoff_base: Duration::from_millis(1), rate_limit: 10_000 },
    )
}

fn connector() -> DatabricksConnector {
    connector_with(&[("/dr/t/secrets/pat", PAT), ("/dr/t/secrets/oauth", OAUTH_SECRET)], Duration::from_secs(5))
}

fn site(url: &str, extra: Value) -> SiteConfig {
    let mut doc = json!({"workspace_url": url, "region": "us-east-1"});
    doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    SiteConfig::parse("test site", &doc.to_string()).unwrap()
}

fn pat_site(url: &str) -> SiteConfig {
    site(url, json!({"token_parameter": "/dr/t/secrets/pat"}))
}

fn oauth_site(url: &str) -> SiteConfig {
    site(
        url,
        json!({"oauth_client_id": CLIENT_ID, "oauth_secret_parameter": "/dr/t/secrets/oauth", "token_parameter": "/dr/t/secrets/pat"}),
    )
}

fn client(c: &DatabricksConnector, config: &SiteConfig) -> DatabricksClient {
    c.client(SiteName::Primary, config).unwrap()
}

fn assert_no_secret(text: &str) {
    for secret in [PAT, OAUTH_SECRET, "tok-1", "tok-2"] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

/// A token endpoint minting `tok-N` (N counts the token requests) valid `expires_in` seconds, checking the
/// client's Basic authentication and form; the API answers `api(index, seen)`.
fn oauth_workspace(expires_in: u64, api: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Workspace {
    let minted = Arc::new(Mutex::new(0u32));
    Workspace::start(move |_, s| {
        if s.url == TOKEN_PATH {
            use base64::Engine;
            let expected = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{OAUTH_SECRET}"));
            if s.method != "POST"
                || s.authorization.as_deref() != Some(&format!("Basic {expected}"))
                || s.content_type.as_deref() != Some("application/x-www-form-urlencoded")
                || s.body != "grant_type=client_credentials&scope=all-apis"
            {
                return reply(401, json!({"error": "invalid_client", "error_description": "Client authentication failed"}));
            }
            let mut n = minted.lock().unwrap();
            *n += 1;
            return reply(200, json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": expires_in}));
        }
        api(s)
    })
}

#[tokio::test]
async fn pat_is_sent_as_bearer_and_query_values_are_encoded() {
    let ws = Workspace::start(|_, s| {
        if s.authorization.as_deref() == Some(&format!("Bearer {PAT}")) {
            reply(200, json!({"jobs": [], "url": s.url}))
        } else {
            reply(401, json!({"error_code": "UNAUTHENTICATED", "message": "bad token"}))
        }
    });
    let c = connector();
    let api = c.connect(SiteName::Primary, &pat_site(&ws.url)).unwrap();
    let got = api.get("/api/2.1/jobs/list", &[("name", "a b&c=d/é".into()), ("limit", "25".into())]).await.unwrap();
    assert_eq!(got["url"], "/api/2.1/jobs/list?name=a+b%26c%3Dd%2F%C3%A9&limit=25");
    let got = api.get("/api/2.0/clusters/list", &[]).await.unwrap();
    assert_eq!(got["url"], "/api/2.0/clusters/list");
    assert_eq!(ws.count(TOKEN_PATH), 0);
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let ws = Workspace::start(|i, _| match i {
        0 => reply(429, json!({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"})).header("Retry-After", "1"),
        _ => reply(200, json!({"ok": true})),
    });
    let c = connector();
    let got = client(&c, &pat_site(&ws.url)).get("/api/2.0/x", &[]).await.unwrap();
    assert_eq!(got["ok"], true);
    let seen = ws.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
}

#[tokio::test]
async fn a_post_is_retried_on_429_idempotent_or_not() {
    // 429 is the rate limiter's refusal before the call ran: repeating it cannot act twice.
    for idempotency in [Idempotency::Idempotent, Idempotency::NotIdempotent] {
        let ws = Workspace::start(|i, s| match i {
            0 => reply(429, json!({})).header("Retry-After", "0"),
            _ => reply(200, json!({"body": s.body, "type": s.content_type})),
        });
        let c = connector();
        let got = client(&c, &pat_site(&ws.url)).post("/api/2.1/jobs/update", &json!({"job_id": 1}), idempotency).await.unwrap();
        assert_eq!(got["body"], r#"{"job_id":1}"#);
        assert_eq!(got["type"], "application/json");
        assert_eq!(ws.seen().len(), 2, "{idempotency:?}");
    }
}

#[tokio::test]
async fn an_idempotent_post_is_retried_on_503_after_retry_after() {
    let ws = Workspace::start(|i, _| match i {
        0 => reply(503, json!({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "later"})).header("Retry-After", "1"),
        _ => reply(200, json!({})),
    });
    let c = connector();
    let body = json!({"job_id": 1, "new_settings": {"schedule": {"pause_status": "UNPAUSED"}}});
    client(&c, &pat_site(&ws.url)).post("/api/2.2/jobs/update", &body, Idempotency::Idempotent).await.unwrap();
    let seen = ws.seen();
    assert_eq!(seen.len(), 2);
    let sent = body.to_string();
    assert!(seen.iter().all(|s| s.method == "POST" && s.body == sent), "the same body again: {seen:?}");
    let waited = seen[1].at - seen[0].at;
    assert!(waited >= Duration::from_secs(1), "Retry-After honoured: waited {waited:?}");
}

#[tokio::test]
async fn an_idempotent_post_is_retried_on_other_5xx_until_the_budget_is_spent() {
    let ws = Workspace::start(|_, _| reply(500, json!({"error_code": "INTERNAL_ERROR", "message": "boom"})));
    let c = connector();
    let e = client(&c, &pat_site(&ws.url))
        .post("/api/2.0/sql/warehouses/w/stop", &json!({}), Idempotency::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Status { method: "POST", status: 500, .. }), "{e:?}");
    assert_eq!(ws.seen().len(), MAX_ATTEMPTS as usize);
}

#[tokio::test]
async fn a_get_is_retried_on_503_twice_then_succeeds() {
    let ws = Workspace::start(|i, _| {
        if i < 2 { reply(503, json!({"error_code": "TEMPORARILY_UNAVAILABLE"})) } else { reply(200, json!({"n": i})) }
    });
    let c = connector();
    let got = client(&c, &pat_site(&ws.url)).get("/api/2.0/x", &[]).await.unwrap();
    assert_eq!(got["n"], 2);
    assert_eq!(ws.seen().len(), 3);
}

#[tokio::test]
async fn a_get_gives_up_after_four_attempts() {
    let ws = Workspace::start(|_, _| reply(500, json!({"error_code": "INTERNAL_ERROR", "message": "boom"})));
    let c = connector();
    let e = client(&c, &pat_site(&ws.url)).get("/api/2.0/x", &[("q", "v".into())]).await.unwrap_err();
    assert_eq!(
        e,
        ApiError::Status {
            method: "GET",
            path: "/api/2.0/x".into(),
            status: 500,
            error_code: Some("INTERNAL_ERROR".into()),
            message: "boom".into()
        }
    );
    assert_eq!(ws.seen().len(), MAX_ATTEMPTS as usize);
}

#[tokio::test]
async fn a_non_idempotent_post_is_never_retried_on_5xx() {
    // The workspace may have created the job (or started the run) before it failed: a second send could too.
    for status in [500, 503] {
        let ws = Workspace::start(move |_, _| reply(status, json!({"message": "later"})).header("Retry-After", "0"));
        let c = connector();
        let e = client(&c, &pat_site(&ws.url))
            .post("/api/2.2/jobs/run-now", &json!({"job_id": 1}), Idempotency::NotIdempotent)
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Status { method: "POST", status: s, .. } if s == status), "{e:?}");
        assert_eq!(ws.seen().len(), 1, "HTTP {status}");
    }
}

#[tokio::test]
async fn a_non_idempotent_post_is_retried_only_when_nothing_was_sent() {
    // A connection that never opened sent nothing: repeating is safe, and it is repeated.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = connector();
    let started = Instant::now();
    let e = client(&c, &pat_site(&format!("http://127.0.0.1:{port}")))
        .post("/api/2.2/jobs/create", &json!({"name": "x"}), Idempotency::NotIdempotent)
        .await
        .unwrap_err();
    assert!(matches!(&e, ApiError::Unreachable(m) if m.contains("cannot connect")), "{e}");
    // A connection that answers nothing after the request was sent: the job may exist; not repeated.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            drop(stream);
        }
    });
    let e = client(&c, &pat_site(&format!("http://127.0.0.1:{port}")))
        .post("/api/2.2/jobs/create", &json!({"name": "x"}), Idempotency::NotIdempotent)
        .await
        .unwrap_err();
    assert!(matches!(&e, ApiError::Unreachable(_)), "{e}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "sent once, never repeated");
    // The same lost answer of an idempotent call is repeated.
    let e = client(&c, &pat_site(&format!("http://127.0.0.1:{port}")))
        .post("/api/2.2/jobs/update", &json!({"job_id": 1}), Idempotency::Idempotent)
        .await
        .unwrap_err();
    assert!(matches!(&e, ApiError::Unreachable(_)), "{e}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1 + MAX_ATTEMPTS as usize);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_slow_answer_passes_the_deadline() {
    let ws = Workspace::start(|_, _| Reply { delay: Duration::from_secs(3), ..reply(200, json!({})) });
    let c = connector_with(&[("/dr/t/secrets/pat", PAT)], Duration::from_millis(300));
    let started = Instant::now();
    let e = client(&c, &pat_site(&ws.url)).get("/api/2.0/slow", &[]).await.unwrap_err();
    assert_eq!(e, ApiError::Timeout("GET /api/2.0/slow".into()));
    assert!(e.is_unreachable());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(ws.seen().len(), 1, "a timed-out request is not repeated");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_after_the_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = connector();
    let e = client(&c, &pat_site(&format!("http://127.0.0.1:{port}"))).get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Unreachable(m) if m.starts_with("GET /api/2.0/x (cannot connect")), "{e}");
}

#[tokio::test]
async fn https_goes_through_tls() {
    // A server that answers in plain text behind an https:// URL: the TLS handshake fails, and says so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(MAX_ATTEMPTS as usize) {
            use std::io::Write;
            let _ = stream.unwrap().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        }
    });
    let c = connector();
    let e = client(&c, &pat_site(&format!("https://127.0.0.1:{port}"))).get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Unreachable(m) if m.contains("GET /api/2.0/x")), "{e}");
}

#[tokio::test]
async fn errors_carry_the_error_code_and_answers_must_be_json() {
    let ws = Workspace::start(|_, s| match s.url.as_str() {
        "/api/2.0/missing" => reply(404, json!({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such job"})),
        "/api/2.0/html" => Reply { body: "<html>".into(), ..reply(200, json!({})) },
        "/api/2.0/text" => Reply { body: "Bad Gateway from the proxy".into(), ..reply(400, json!({})) },
        _ => Reply { body: String::new(), ..reply(200, json!({})) },
    });
    let c = connector();
    let api = client(&c, &pat_site(&ws.url));
    let e = api.get("/api/2.0/missing", &[]).await.unwrap_err();
    assert!(e.is_absent(), "{e:?}");
    assert_eq!(e.to_string(), "GET /api/2.0/missing: HTTP 404 RESOURCE_DOES_NOT_EXIST: no such job");
    let e = api.get("/api/2.0/html", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::BadAnswer { path, .. } if path == "/api/2.0/html"), "{e:?}");
    let e = api.get("/api/2.0/text", &[]).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Status { status: 400, error_code: None, message, .. } if message == "Bad Gateway from the proxy")
    );
    assert_eq!(api.post("/api/2.0/empty", &json!({}), Idempotency::Idempotent).await.unwrap(), json!({}));
    for bad in ["api/2.0/x", "//elsewhere.example/x", "/api/2.0/x?y=1"] {
        assert!(matches!(api.get(bad, &[]).await, Err(ApiError::BadAnswer { .. })), "{bad}");
    }
}

#[tokio::test]
async fn oauth_fetches_one_token_for_several_calls() {
    let ws = oauth_workspace(3600, |s| {
        if s.authorization.as_deref() == Some("Bearer tok-1") { reply(200, json!({})) } else { reply(401, json!({})) }
    });
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    for _ in 0..3 {
        api.get("/api/2.0/x", &[]).await.unwrap();
    }
    let (a, b, d) = tokio::join!(api.get("/api/2.0/a", &[]), api.get("/api/2.0/b", &[]), api.get("/api/2.0/c", &[]));
    a.unwrap();
    b.unwrap();
    d.unwrap();
    assert_eq!(ws.count(TOKEN_PATH), 1);
    assert_eq!(ws.seen().len(), 7);
}

#[tokio::test]
async fn oauth_renews_a_token_about_to_expire() {
    // Valid for less than the 60 s margin: every call fetches a fresh one.
    let ws = oauth_workspace(30, |_| reply(200, json!({})));
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    api.get("/api/2.0/x", &[]).await.unwrap();
    api.get("/api/2.0/x", &[]).await.unwrap();
    assert_eq!(ws.count(TOKEN_PATH), 2);
}

#[tokio::test]
async fn oauth_401_fetches_a_new_token_and_retries_once() {
    let ws = oauth_workspace(3600, |s| {
        if s.authorization.as_deref() == Some("Bearer tok-2") { reply(200, json!({"ok": 1})) } else { reply(401, json!({})) }
    });
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    assert_eq!(api.get("/api/2.0/x", &[]).await.unwrap()["ok"], 1);
    assert_eq!(ws.count(TOKEN_PATH), 2);
    assert_eq!(ws.count("/api/2.0/x"), 2);
    // The new token is kept.
    api.get("/api/2.0/x", &[]).await.unwrap();
    assert_eq!(ws.count(TOKEN_PATH), 2);
}

#[tokio::test]
async fn oauth_401_with_a_fresh_token_is_an_auth_error() {
    let ws = oauth_workspace(3600, |_| reply(401, json!({"error_code": "UNAUTHENTICATED", "message": "no"})));
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    let e = api.get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Auth(m) if m.contains(CLIENT_ID) && m.contains("UNAUTHENTICATED")), "{e}");
    assert_eq!(ws.count(TOKEN_PATH), 2);
    assert_eq!(ws.count("/api/2.0/x"), 2);
    assert_no_secret(&format!("{e:?} {e}"));
}

#[tokio::test]
async fn a_refused_token_request_is_an_auth_error() {
    let ws = Workspace::start(|_, _| {
        reply(401, json!({"error": "invalid_client", "error_description": "Client authentication failed"}))
    });
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    let e = api.get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Auth(m) if m.contains(CLIENT_ID) && m.contains("/dr/t/secrets/oauth") && m.contains("invalid_client")),
        "{e}"
    );
    assert_eq!(ws.count(TOKEN_PATH), 1);
    assert_eq!(ws.count("/api/2.0/x"), 0, "no API call without a token");
    assert_no_secret(&format!("{e:?} {e}"));
}

#[tokio::test]
async fn a_refused_pat_is_an_auth_error_naming_the_parameter() {
    let ws = Workspace::start(|_, _| reply(403, json!({"error_code": "403", "message": "Invalid access token."})));
    let c = connector();
    let e = client(&c, &pat_site(&ws.url)).get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Auth(m) if m.contains("/dr/t/secrets/pat")), "{e}");
    assert_no_secret(&format!("{e:?} {e}"));
}

#[tokio::test]
async fn a_missing_secret_is_an_auth_error_and_nothing_is_sent() {
    let ws = Workspace::start(|_, _| reply(200, json!({})));
    let c = connector_with(&[], Duration::from_secs(5));
    // Connecting reads nothing.
    let api = c.connect(SiteName::Secondary, &pat_site(&ws.url)).unwrap();
    let e = api.get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Auth(m) if m.contains("/dr/t/secrets/pat")), "{e}");
    assert!(ws.seen().is_empty());
}

#[test]
fn not_configured_says_what_is_expected() {
    let c = connector();
    let url = "https://a.cloud.databricks.com";
    for (extra, needle) in [
        (json!({}), "expected `oauth_client_id` and `oauth_secret_parameter`"),
        (json!({"oauth_client_id": CLIENT_ID}), "`oauth_secret_parameter` is not"),
        (json!({"oauth_secret_parameter": "/dr/t/secrets/oauth"}), "`oauth_client_id` is not"),
        (json!({"oauth_client_id": 3, "oauth_secret_parameter": "/dr/t/secrets/oauth"}), "non-empty string"),
        (json!({"token_parameter": "/dr/other/secrets/pat"}), "not under /dr/t/secrets/"),
        (json!({"token_parameter": "/dr/t/secrets/../pat"}), "not under /dr/t/secrets/"),
        (json!({"token_parameter": "/dr/t/secrets/"}), "not under /dr/t/secrets/"),
        (json!({"oauth_client_id": CLIENT_ID, "oauth_secret_parameter": "/dr/t/oauth"}), "kms:Decrypt"),
    ] {
        let e = c.connect(SiteName::Primary, &site(url, extra.clone())).err().unwrap();
        assert!(matches!(&e, ApiError::NotConfigured(m) if m.contains(needle) && m.contains("site primary")), "{extra}: {e}");
    }
    assert!(c.connect(SiteName::Primary, &pat_site(url)).is_ok());
}

#[tokio::test]
async fn the_secret_never_shows_in_debug() {
    let ws = oauth_workspace(3600, |_| reply(200, json!({})));
    let c = connector();
    let api = client(&c, &oauth_site(&ws.url));
    api.get("/api/2.0/x", &[]).await.unwrap();
    let pat = client(&c, &pat_site(&ws.url));
    pat.get("/api/2.0/x", &[]).await.unwrap();
    let shown = format!("{api:?} {api:#?} {pat:?} {c:?}");
    assert!(shown.contains("<redacted>") && shown.contains(CLIENT_ID), "{shown}");
    assert_no_secret(&shown);
    assert_eq!(format!("{:?}", Secret::new(PAT.into())), "<redacted>");
}

#[test]
fn retry_after_is_capped_and_absent_when_not_seconds() {
    let answer = |value: Option<&str>| {
        let mut headers = ::http::HeaderMap::new();
        if let Some(v) = value {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        Answer { status: StatusCode::TOO_MANY_REQUESTS, headers, body: Bytes::new() }
    };
    assert_eq!(retry_after(&answer(Some("7"))), Some(Duration::from_secs(7)));
    assert_eq!(retry_after(&answer(Some("3600"))), Some(RETRY_AFTER_CAP));
    assert_eq!(retry_after(&answer(None)), None);
    assert_eq!(retry_after(&answer(Some("Wed, 21 Oct 2015 07:28:00 GMT"))), None);
}

#[test]
fn backoff_is_full_jitter_under_an_exponential_ceiling() {
    let c = DatabricksConnector::with_source(
        SecretSource(Arc::new(Fixed::default())),
        SECRETS,
        Settings { request_timeout: REQUEST_TIMEOUT, backoff_base: BACKOFF_BASE, rate_limit: RATE_LIMIT },
    );
    let api = client(&c, &pat_site("https://a.cloud.databricks.com"));
    for attempt in 1..=8u32 {
        let ceiling = (BACKOFF_BASE * 2u32.pow(attempt - 1)).min(BACKOFF_CAP);
        let waits: Vec<Duration> = (0..50).map(|_| api.backoff(attempt)).collect();
        assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}: {waits:?}");
        assert!(waits.iter().any(|w| *w < ceiling / 2) && waits.iter().any(|w| *w > ceiling / 2), "{waits:?}");
    }
}

#[tokio::test]
async fn a_redirect_is_never_followed_and_says_what_to_change() {
    let ws = Workspace::start(|_, s| match s.url.as_str() {
        "/api/2.0/pl" => reply(303, json!({})).header("Location", "/login.html?error=private-link-validation-error&x=1"),
        "/api/2.0/moved" => reply(301, json!({})).header("Location", "https://dbc-1234.cloud.databricks.com/api/2.0/moved?q=s"),
        "/api/2.0/login" => reply(302, json!({})).header("Location", "/login.html?next_url=%2Fapi"),
        _ => reply(307, json!({})).header("Location", "/api/2.0/elsewhere"),
    });
    let c = connector();
    let api = client(&c, &pat_site(&ws.url));
    let e = api.get("/api/2.0/pl", &[]).await.unwrap_err();
    let ApiError::Redirected { status, location, advice, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*status, 303);
    assert!(location.ends_with("/login.html?error=private-link-validation-error"), "{location}");
    assert!(
        advice
            .starts_with("the workspace is behind PrivateLink and this caller is outside its network: run the function in a VPC"),
        "{advice}"
    );
    assert!(e.is_site_wide(), "every call would be redirected: the export skips the site");

    let e = api.post("/api/2.0/moved", &json!({}), Idempotency::Idempotent).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Redirected { method: "POST", advice, location, .. }
            if advice.contains("set `workspace_url` in the site document to it") && advice.contains("https://dbc-1234.cloud.databricks.com")
            && !location.contains("q=s")),
        "{e:?}"
    );
    let e = api.get("/api/2.0/login", &[]).await.unwrap_err();
    assert!(
        matches!(&e, ApiError::Redirected { advice, .. } if advice.contains("login page") && advice.contains("workspace_url")),
        "{e:?}"
    );
    let e = api.get("/api/2.0/other", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Redirected { status: 307, advice, .. } if advice.contains("no proxy rewrites")), "{e:?}");
    // Never followed: one request per call, the token never sent to the redirect's target.
    assert_eq!(ws.seen().len(), 4);
}

#[tokio::test]
async fn sends_to_one_workspace_are_spaced_by_the_rate_limit() {
    let ws = Workspace::start(|_, _| reply(200, json!({})));
    let c = DatabricksConnector::with_source(
        SecretSource(Arc::new(Fixed([("/dr/t/secrets/pat".to_owned(), PAT.to_owned())].into_iter().collect()))),
        SECRETS,
        Settings { request_timeout: Duration::from_secs(5), backoff_base: Duration::from_millis(1), rate_limit: 20 },
    );
    let api = client(&c, &pat_site(&ws.url));
    let calls: Vec<_> = (0..10).map(|_| api.get("/api/2.0/x", &[])).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    let seen = ws.seen();
    let span = seen.last().unwrap().at - seen[0].at;
    // 10 sends at 20 per second, all asked at once: the last goes out 9 intervals of 50 ms after the first.
    assert!(span >= Duration::from_millis(430), "{span:?}");
}
