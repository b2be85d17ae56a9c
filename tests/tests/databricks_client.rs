//! The Databricks connector's secrets from moto: SecureString parameters read with decryption at the first call
//! (not at connect), used against a local workspace (tiny_http) that checks the `Authorization` header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws::ssm::SsmSecrets;
use domain::site::{SiteConfig, SiteName};
use dr_databricks::DatabricksConnector;
use dr_ports::{ApiError, Idempotency, WorkspaceConnector};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tests::{dr_env, moto};

const CLIENT_ID: &str = "0a1b2c3d-sp-application-id";

/// A request's URL and `Authorization` header.
type Seen = (String, Option<String>);

/// A workspace on a free loopback port: `POST /oidc/v1/token` mints `moto-token-N` for `CLIENT_ID` and
/// `oauth_secret` (HTTP Basic); every other path answers 200 to `Bearer {bearer}` (the PAT) or to a minted
/// token, 401 otherwise. Records the `Authorization` header of each request.
struct Workspace {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
}

impl Workspace {
    fn start(bearer: Option<String>, oauth_secret: Option<String>) -> Workspace {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (srv, log) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut minted: Vec<String> = Vec::new();
            for request in srv.incoming_requests() {
                let authorization = request
                    .headers()
                    .iter()
                    .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case("authorization"))
                    .map(|h| h.value.as_str().to_owned());
                log.lock().unwrap().push((request.url().to_owned(), authorization.clone()));
                let (status, body) = if request.url() == "/oidc/v1/token" {
                    let expected = oauth_secret.as_ref().map(|s| format!("Basic {}", base64(&format!("{CLIENT_ID}:{s}"))));
                    if expected.is_some() && authorization == expected {
                        minted.push(format!("moto-token-{}", minted.len() + 1));
                        (200, json!({"access_token": minted.last(), "token_type": "Bearer", "expires_in": 3600}))
                    } else {
                        (401, json!({"error": "invalid_client", "error_description": "Client authentication failed"}))
                    }
                } else {
                    let ok = authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "))
                        .is_some_and(|t| bearer.as_deref() == Some(t) || minted.iter().any(|m| m == t));
                    if ok {
                        (200, json!({"path": request.url()}))
                    } else {
                        (401, json!({"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}))
                    }
                };
                let _ = request.respond(tiny_http::Response::from_string(body.to_string()).with_status_code(status));
            }
        });
        Workspace { url, seen, server }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Standard base64 with padding (what HTTP Basic authentication sends).
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// An SSM client on moto and a fresh secrets path `/dr/t<id>/secrets/`.
async fn ssm() -> (aws_sdk_ssm::Client, String) {
    let sdk = dr_env::sdk_config(&moto::shared().endpoint).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    (aws_sdk_ssm::Client::new(&sdk), format!("/dr/t{}/secrets/", &id[..12]))
}

async fn put_secure(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter().name(name).value(value).r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();
}

fn site(url: &str, credentials: Value) -> SiteConfig {
    let mut doc = json!({"workspace_url": url, "region": "us-west-2"});
    doc.as_object_mut().unwrap().extend(credentials.as_object().unwrap().clone());
    SiteConfig::parse("test site", &doc.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_personal_access_token_is_read_from_a_securestring_and_sent_as_bearer() {
    let (ssm, secrets) = ssm().await;
    let token = format!("dapi-moto-{}", uuid::Uuid::new_v4().simple());
    let parameter = format!("{secrets}primary-token");
    put_secure(&ssm, &parameter, &token).await;
    let ws = Workspace::start(Some(token.clone()), None);

    let connector = DatabricksConnector::new(Arc::new(SsmSecrets::new(ssm)), &secrets);
    let api = connector.connect(SiteName::Primary, &site(&ws.url, json!({"token_parameter": parameter}))).unwrap();
    let got = api.get("/api/2.1/jobs/list", &[("limit", "25".into())]).await.unwrap();
    assert_eq!(got["path"], "/api/2.1/jobs/list?limit=25");
    api.get("/api/2.0/clusters/list", &[]).await.unwrap();
    let expected = format!("Bearer {token}");
    assert!(ws.seen().iter().all(|(_, a)| a.as_deref() == Some(expected.as_str())), "{:?}", ws.seen().len());

    let concrete = connector.client(SiteName::Primary, &site(&ws.url, json!({"token_parameter": parameter}))).unwrap();
    concrete.site();
    for shown in [format!("{concrete:?}"), format!("{connector:?}")] {
        assert!(!shown.contains(&token), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_secret_is_read_from_a_securestring_and_exchanged_for_a_token_once() {
    let (ssm, secrets) = ssm().await;
    let secret = format!("dose-moto-{}", uuid::Uuid::new_v4().simple());
    let parameter = format!("{secrets}secondary-oauth");
    put_secure(&ssm, &parameter, &secret).await;
    let ws = Workspace::start(None, Some(secret.clone()));

    let connector = DatabricksConnector::new(Arc::new(SsmSecrets::new(ssm)), &secrets);
    let config = site(&ws.url, json!({"oauth_client_id": CLIENT_ID, "oauth_secret_parameter": parameter}));
    let api = connector.connect(SiteName::Secondary, &config).unwrap();
    for _ in 0..3 {
        api.get("/api/2.0/sql/warehouses", &[]).await.unwrap();
    }
    api.post("/api/2.0/sql/warehouses/abc/start", &json!({}), Idempotency::Idempotent).await.unwrap();
    let seen = ws.seen();
    assert_eq!(seen.iter().filter(|(u, _)| u == "/oidc/v1/token").count(), 1, "{seen:?}");
    assert!(seen.iter().skip(1).all(|(_, a)| a.as_deref() == Some("Bearer moto-token-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_read_at_the_first_call_not_at_connect() {
    let (ssm, secrets) = ssm().await;
    let parameter = format!("{secrets}late-token");
    let ws = Workspace::start(Some("dapi-late".into()), None);
    let connector = DatabricksConnector::new(Arc::new(SsmSecrets::new(ssm.clone())), &secrets);
    let config = site(&ws.url, json!({"token_parameter": parameter}));

    // Absent parameter: connecting works (nothing read), the call fails naming the parameter, nothing is sent.
    let api = connector.connect(SiteName::Primary, &config).unwrap();
    let e = api.get("/api/2.0/x", &[]).await.unwrap_err();
    assert!(matches!(&e, ApiError::Auth(m) if m.contains(&parameter) && m.contains("does not exist")), "{e}");
    assert!(ws.seen().is_empty());

    // Written after connect: the first call of a client reads it.
    let api = connector.connect(SiteName::Primary, &config).unwrap();
    put_secure(&ssm, &parameter, "dapi-late").await;
    api.get("/api/2.0/x", &[]).await.unwrap();
    assert_eq!(ws.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_outside_the_secrets_path_is_not_configured() {
    let (ssm, secrets) = ssm().await;
    let connector = DatabricksConnector::new(Arc::new(SsmSecrets::new(ssm)), &secrets);
    let outside = secrets.replace("/secrets/", "/sites/");
    let e = connector
        .connect(SiteName::Primary, &site("https://a.cloud.databricks.com", json!({"token_parameter": format!("{outside}x")})))
        .err()
        .unwrap();
    assert!(matches!(&e, ApiError::NotConfigured(m) if m.contains(&secrets) && m.contains("kms:Decrypt")), "{e}");
}
