//! A local Databricks workspace REST API for tests and the demo (`scripts/databricks_server.py`): one process, one
//! loopback port per workspace, stopped when this process exits (its stdin closes, as with [`crate::moto`]).
//!
//! Each [`Workspace`] is seeded with a whole state document ([`Workspace::set_state`]; [`sample_workspace`] and
//! [`generated_workspace`] build realistic ones), answers the documented REST API with a bearer token (a PAT or
//! an OAuth M2M token from `/oidc/v1/token`), and is steered through its `/__admin/` endpoints: credentials,
//! token expiry, injected faults (429 with `Retry-After`, 5xx, delays, a hang) and the record of every request.
//!
//! Started by [`DatabricksServer::start`], every workspace `NAME` accepts the PAT `dapi-local-NAME`
//! ([`Workspace::pat`]) and the OAuth client `local-client-NAME` / `local-secret-NAME` ([`Workspace::client_id`],
//! [`Workspace::client_secret`]) until [`Workspace::set_credentials`] replaces them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long an admin call may take before the harness panics.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `scripts/databricks_server.py` and its workspaces.
#[derive(Debug)]
pub struct DatabricksServer {
    /// The workspaces, in the order they were named.
    pub workspaces: Vec<Workspace>,
    // Held so that stdin stays open: the server stops when this is dropped or the process exits.
    _child: Child,
}

/// One workspace of the server: its URL and its controls.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The name it was started with (`primary`).
    pub name: String,
    /// `http://127.0.0.1:PORT`: the workspace URL (the API under `/api/`, OAuth at `/oidc/v1/token`).
    pub url: String,
}

/// The credentials a workspace accepts ([`Workspace::set_credentials`] replaces all of them).
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    /// Personal access tokens (`dapi...`).
    pub pats: Vec<String>,
    /// OAuth M2M clients: client id to secret.
    pub oauth_clients: BTreeMap<String, String>,
    /// `expires_in` of every OAuth token issued from now on.
    pub token_ttl_seconds: f64,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials { pats: Vec::new(), oauth_clients: BTreeMap::new(), token_ttl_seconds: 3600.0 }
    }
}

/// One request the workspace received (`/api/` and `/oidc/`; admin calls are not recorded), in arrival order.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    /// `GET`, `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters (the first value of each).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// How it authenticated: `bearer-pat`, `bearer-oauth`, `basic` (HTTP Basic, on `/oidc/`), `form` (client id and
    /// secret in the token request's form), `none`, or `bad` (a token not accepted: unknown, expired, malformed).
    pub auth: String,
    /// The status answered; `None` while it is still being answered (a hang).
    pub status: Option<u16>,
    /// Arrival, in seconds of the server's monotonic clock (only differences mean anything).
    pub at: f64,
    /// The JSON body of a `POST` to `/api/`.
    pub body: Option<Value>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("HTTP {}: not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl DatabricksServer {
    /// Starts a server with these workspaces (distinct names), each on a free loopback port with its default
    /// credentials and an empty state.
    ///
    /// Uses `DR_DATABRICKS_PYTHON` (default `python3`: only the standard library is needed) and
    /// `DR_DATABRICKS_SCRIPT` (default `scripts/databricks_server.py` of the repository).
    pub fn start(names: &[&str]) -> Result<DatabricksServer, String> {
        let python = std::env::var_os("DR_DATABRICKS_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
        let script = std::env::var_os("DR_DATABRICKS_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("scripts/databricks_server.py"));
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--workspaces")
            .arg(names.join(","))
            .arg("--default-credentials")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let urls: BTreeMap<String, String> =
            serde_json::from_str(line.trim()).map_err(|e| format!("{} printed {line:?}: {e}", script.display()))?;
        let workspaces = names
            .iter()
            .map(|n| {
                let url = urls.get(*n).ok_or_else(|| format!("{} printed no URL for {n}: {line}", script.display()))?;
                Ok(Workspace { name: (*n).to_string(), url: url.clone() })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(DatabricksServer { workspaces, _child: child })
    }

    /// The workspace of that name; panics when there is none.
    pub fn workspace(&self, name: &str) -> &Workspace {
        self.workspaces.iter().find(|w| w.name == name).unwrap_or_else(|| panic!("no workspace {name}"))
    }

    /// Every workspace's URL, by name.
    pub fn urls(&self) -> BTreeMap<String, String> {
        self.workspaces.iter().map(|w| (w.name.clone(), w.url.clone())).collect()
    }
}

impl Workspace {
    /// The PAT accepted from the start (`dapi-local-NAME`).
    pub fn pat(&self) -> String {
        format!("dapi-local-{}", self.name)
    }

    /// The OAuth client id accepted from the start (`local-client-NAME`).
    pub fn client_id(&self) -> String {
        format!("local-client-{}", self.name)
    }

    /// The secret of [`Workspace::client_id`] (`local-secret-NAME`).
    pub fn client_secret(&self) -> String {
        format!("local-secret-{}", self.name)
    }

    /// Replaces the whole state (schema: `scripts/databricks_server.py`, [`sample_workspace`]); panics when the
    /// server refuses the document.
    pub fn set_state(&self, state: &Value) {
        self.try_set_state(state).unwrap_or_else(|e| panic!("{}: set_state: {e}", self.name));
    }

    /// Replaces the whole state; the server's reason when it refuses the document (HTTP 400).
    pub fn try_set_state(&self, state: &Value) -> Result<(), String> {
        let r = self.admin("POST", "state", Some(state));
        if r.status == 200 { Ok(()) } else { Err(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body))) }
    }

    /// The current state: what was set, every key present, changed only by `jobs/update`, `jobs/reset` and
    /// warehouse start/stop.
    pub fn state(&self) -> Value {
        self.admin_ok("GET", "state", None).json()
    }

    /// Every API answer takes at least `latency` from now on (0: as fast as it can), as a workspace across a
    /// region does.
    pub fn set_latency(&self, latency: Duration) {
        self.admin_ok("POST", "settings", Some(&json!({"latency_ms": latency.as_secs_f64() * 1000.0})));
    }

    /// How the SQL Statement Execution API answers: how long a statement runs once its warehouse runs, and the
    /// rows of one result chunk.
    pub fn set_sql(&self, statement: Duration, chunk_rows: usize) {
        self.admin_ok(
            "POST",
            "settings",
            Some(&json!({"statement_seconds": statement.as_secs_f64(), "sql_chunk_rows": chunk_rows})),
        );
    }

    /// Replaces the accepted PATs and OAuth clients (tokens already issued stay valid until they expire).
    pub fn set_credentials(&self, credentials: &Credentials) {
        let doc = serde_json::to_value(credentials).unwrap_or_else(|e| panic!("credentials: {e}"));
        self.admin_ok("POST", "credentials", Some(&doc));
    }

    /// Every OAuth token issued so far is expired (a call with one answers 401 saying so); new ones can be had.
    pub fn expire_tokens(&self) {
        self.admin_ok("POST", "expire_tokens", Some(&json!({})));
    }

    /// Expires every OAuth token issued so far and revokes these PATs.
    pub fn revoke_pats(&self, pats: &[&str]) {
        self.admin_ok("POST", "expire_tokens", Some(&json!({ "pats": pats })));
    }

    /// Replaces the fault rules: a list, the first rule matching a request (`path_prefix`, optional `method`, with
    /// `times` left) applies: `{"status": 429, "retry_after": 1}`, `{"status": 503}`, `{"delay_ms": 3000}` (then
    /// answered normally, or with `status`), `{"mode": "hang"}` (no answer until the rules change). Optional
    /// `error_code`, `message`; `times` absent = forever. Panics when the server refuses them.
    pub fn set_faults(&self, rules: &Value) {
        self.admin_ok("POST", "faults", Some(rules));
    }

    /// Removes every fault rule (and releases hung requests, which are then answered normally).
    pub fn clear_faults(&self) {
        self.admin_ok("DELETE", "faults", None);
    }

    /// How long a warehouse stays `STARTING` (`STOPPING`) before it is `RUNNING` (`STOPPED`); 0.2 s at start.
    pub fn set_warehouse_delay(&self, delay: Duration) {
        self.admin_ok("POST", "settings", Some(&json!({ "warehouse_delay_seconds": delay.as_secs_f64() })));
    }

    /// Every request received since the start or [`Workspace::clear_requests`], in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        let r = self.admin_ok("GET", "requests", None);
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{}: requests: {e}", self.name))
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.admin_ok("DELETE", "requests", None);
    }

    /// `GET path_and_query` with `Authorization: Bearer token` (none when `None`).
    pub fn get(&self, path_and_query: &str, token: Option<&str>) -> Response {
        self.call("GET", path_and_query, token, None)
    }

    /// `POST path` with a JSON body and `Authorization: Bearer token` (none when `None`).
    pub fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.call("POST", path, token, Some(body))
    }

    /// `method path` (PATCH, PUT, DELETE, ...) with an optional JSON body and `Authorization: Bearer token`.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Response {
        self.call(method, path, token, body)
    }

    /// An OAuth M2M token request (`client_credentials`, scope `all-apis`, the client by HTTP Basic).
    pub fn oauth_token(&self, client_id: &str, client_secret: &str) -> Response {
        let basic = base64(format!("{client_id}:{client_secret}").as_bytes());
        let auth = format!("Basic {basic}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
        http(&self.url, "POST", "/oidc/v1/token", &headers, Some(b"grant_type=client_credentials&scope=all-apis"), ADMIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: POST /oidc/v1/token: {e}", self.name))
    }

    /// The `access_token` of a successful [`Workspace::oauth_token`] with the default client; panics otherwise.
    pub fn oauth_access_token(&self) -> String {
        let r = self.oauth_token(&self.client_id(), &self.client_secret());
        assert_eq!(r.status, 200, "{}: token: {}", self.name, String::from_utf8_lossy(&r.body));
        r.json()["access_token"].as_str().unwrap_or_default().to_string()
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        http(&self.url, method, path, &headers, bytes.as_deref(), ADMIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name))
    }

    fn admin(&self, method: &str, what: &str, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let path = format!("/__admin/{what}");
        http(&self.url, method, &path, &[("Content-Type", "application/json")], bytes.as_deref(), ADMIN_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name))
    }

    fn admin_ok(&self, method: &str, what: &str, body: Option<&Value>) -> Response {
        let r = self.admin(method, what, body);
        assert_eq!(r.status, 200, "{}: {method} /__admin/{what}: {}", self.name, String::from_utf8_lossy(&r.body));
        r
    }
}

/// One blocking HTTP/1.1 exchange on a new connection (`Connection: close`): `method path` to `base`
/// (`http://host:port`) with these headers and body (sent with its `Content-Length`). `timeout` bounds the connect,
/// each write and each read: a server that does not answer gives an error of kind `WouldBlock` or `TimedOut`.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let socket = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut conn = TcpStream::connect_timeout(&socket, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.set_nodelay(true)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes)?;
    let mut reader = BufReader::new(conn);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response { status, headers, body })
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// --- seeded states ---------------------------------------------------------------------------------------------

/// FNV-1a: stable across runs and platforms.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0u8]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A UUID-shaped id, stable for (site, what).
fn uuid_of(site: &str, what: &str) -> String {
    let a = fnv(&[site, what]);
    let b = fnv(&[what, site, "uuid"]);
    let s = format!("{a:016x}{b:016x}");
    format!("{}-{}-4{}-a{}-{}", &s[0..8], &s[8..12], &s[13..16], &s[17..20], &s[20..32])
}

/// `len` lowercase hex digits, stable for (site, what).
fn hex_of(site: &str, what: &str, len: usize) -> String {
    let s = format!("{:016x}{:016x}", fnv(&[site, what]), fnv(&[what, site, "hex"]));
    s[..len].to_string()
}

/// A cluster-shaped id (`0412-093512-abcd1234`), stable for (site, what).
fn cluster_id_of(site: &str, what: &str) -> String {
    let h = fnv(&[site, what, "cluster"]);
    format!("{:04}-{:06}-{}", 101 + h % 1100, (h >> 16) % 1_000_000, hex_of(site, what, 8))
}

/// A job id as large as real ones, stable for (site, n): the same job has different ids in different workspaces.
fn job_id_of(site: &str, n: u64) -> u64 {
    (100 + fnv(&[site, "jobs"]) % 900) * 1_000_000_000_000 + n * 7919 + 11
}

const T0: u64 = 1_717_000_000_000; // 2024-05-29, milliseconds

fn quartz_schedule(cron: &str, paused: bool) -> Value {
    json!({"quartz_cron_expression": cron, "timezone_id": "UTC", "pause_status": if paused { "PAUSED" } else { "UNPAUSED" }})
}

fn notebook_task(key: &str, path: &str, cluster_key: &str, depends_on: &[&str]) -> Value {
    json!({
        "task_key": key,
        "depends_on": depends_on.iter().map(|d| json!({"task_key": d})).collect::<Vec<_>>(),
        "notebook_task": {"notebook_path": path, "source": "WORKSPACE"},
        "job_cluster_key": cluster_key,
        "timeout_seconds": 0,
        "email_notifications": {},
    })
}

fn job_cluster(key: &str, policy_id: &str) -> Value {
    json!({
        "job_cluster_key": key,
        "new_cluster": {
            "spark_version": "15.4.x-scala2.12",
            "node_type_id": "i3.xlarge",
            "num_workers": 2,
            "policy_id": policy_id,
            "aws_attributes": {"availability": "SPOT_WITH_FALLBACK", "zone_id": "auto", "first_on_demand": 1},
            "data_security_mode": "USER_ISOLATION",
        },
    })
}

fn job(site: &str, n: u64, creator: &str, settings: Value) -> Value {
    json!({
        "job_id": job_id_of(site, n),
        "creator_user_name": creator,
        "run_as_user_name": creator,
        "created_time": T0 + n * 3_600_000,
        "settings": settings,
    })
}

fn base_settings(name: &str, tags: Value, tasks: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "tags": tags,
        "tasks": tasks,
        "job_clusters": clusters,
        "email_notifications": {"on_failure": ["data-oncall@example.com"]},
        "webhook_notifications": {},
        "timeout_seconds": 0,
        "max_concurrent_runs": 1,
        "format": "MULTI_TASK",
        "queue": {"enabled": true},
    })
}

fn with(mut settings: Value, key: &str, value: Value) -> Value {
    settings[key] = value;
    settings
}

fn acl(object_id: &str, object_type: &str, owner: &str, group: &str, level: &str) -> Value {
    json!({
        "object_id": object_id,
        "object_type": object_type,
        "access_control_list": [
            {"user_name": owner, "all_permissions": [{"permission_level": "IS_OWNER", "inherited": false}]},
            {"group_name": group, "all_permissions": [{"permission_level": level, "inherited": false}]},
            {"group_name": "admins", "all_permissions": [
                {"permission_level": "CAN_MANAGE", "inherited": true, "inherited_from_object": [format!("/{object_type}s/")]},
            ]},
        ],
    })
}

fn region_of(site: &str) -> &'static str {
    if site == "primary" { "us-east-1" } else { "us-west-2" }
}

/// A small realistic workspace holding at least one object of every kind the server serves, as `site` would have
/// it: ids (job ids, cluster ids, warehouse ids, UUIDs, metastore, buckets, region) are the site's own, names are
/// the same on every site. On `primary` the DR jobs (tag `"dr": "active-passive"`) run (schedules, continuous and
/// file-arrival triggers `UNPAUSED`) and the `bi` warehouse is `RUNNING`; elsewhere they are `PAUSED` and
/// `STOPPED`. Every site also has a job paused everywhere, an unscheduled one, a `STOPPED` and a `RUNNING` warehouse.
pub fn sample_workspace(site: &str) -> Value {
    let active = site == "primary";
    let region = region_of(site);
    let pause = !active;
    let policy_id = hex_of(site, "policy:dr-standard", 16).to_uppercase();
    let repo_root_path = "/Repos/etl@example.com/pipelines";
    let metastore_id = uuid_of(site, "metastore");
    let dr = json!({"dr": "active-passive", "team": "data-eng"});
    let jobs = vec![
        job(
            site,
            1,
            "etl@example.com",
            with(
                base_settings(
                    "nightly-etl",
                    dr.clone(),
                    vec![
                        notebook_task("ingest", &format!("{repo_root_path}/etl/ingest"), "etl", &[]),
                        notebook_task("transform", &format!("{repo_root_path}/etl/transform"), "etl", &["ingest"]),
                    ],
                    vec![job_cluster("etl", &policy_id)],
                ),
                "schedule",
                quartz_schedule("0 0 2 * * ?", pause),
            ),
        ),
        job(
            site,
            2,
            "alice@example.com",
            with(
                base_settings(
                    "hourly-report",
                    json!({"dr": "active-passive"}),
                    vec![notebook_task("report", "/Shared/reports/weekly", "report", &[])],
                    vec![job_cluster("report", &policy_id)],
                ),
                "schedule",
                quartz_schedule("0 0 * * * ?", pause),
            ),
        ),
        job(
            site,
            3,
            "etl@example.com",
            with(
                base_settings(
                    "stream-ingest",
                    dr.clone(),
                    vec![notebook_task("stream", &format!("{repo_root_path}/etl/stream"), "stream", &[])],
                    vec![job_cluster("stream", &policy_id)],
                ),
                "continuous",
                json!({"pause_status": if pause { "PAUSED" } else { "UNPAUSED" }}),
            ),
        ),
        job(
            site,
            4,
            "etl@example.com",
            with(
                base_settings(
                    "landing-arrival",
                    dr,
                    vec![notebook_task("load", &format!("{repo_root_path}/etl/ingest"), "load", &[])],
                    vec![job_cluster("load", &policy_id)],
                ),
                "trigger",
                json!({
                    "pause_status": if pause { "PAUSED" } else { "UNPAUSED" },
                    "file_arrival": {"url": format!("s3://acme-{site}-landing/incoming/"), "min_time_between_triggers_seconds": 60},
                }),
            ),
        ),
        job(
            site,
            5,
            "bob@example.com",
            with(
                base_settings(
                    "legacy-backfill",
                    json!({"dr": "none"}),
                    vec![notebook_task("backfill", "/Users/alice@example.com/etl/cleanup", "backfill", &[])],
                    vec![job_cluster("backfill", &policy_id)],
                ),
                "schedule",
                quartz_schedule("0 30 4 ? * SUN", true),
            ),
        ),
        job(
            site,
            6,
            "alice@example.com",
            base_settings(
                "adhoc-maintenance",
                json!({}),
                vec![json!({
                    "task_key": "vacuum",
                    "existing_cluster_id": cluster_id_of(site, "shared-analytics"),
                    "spark_python_task": {"python_file": "/Users/alice@example.com/etl/helpers.py", "source": "WORKSPACE"},
                    "depends_on": [],
                    "timeout_seconds": 3600,
                    "email_notifications": {},
                })],
                vec![],
            ),
        ),
    ];
    let shared_cluster = cluster_id_of(site, "shared-analytics");
    let clusters = vec![
        json!({
            "cluster_id": shared_cluster,
            "cluster_name": "shared-analytics",
            "spark_version": "15.4.x-scala2.12",
            "node_type_id": "i3.xlarge",
            "driver_node_type_id": "i3.xlarge",
            "autoscale": {"min_workers": 1, "max_workers": 4},
            "autotermination_minutes": 60,
            "state": if active { "RUNNING" } else { "TERMINATED" },
            "cluster_source": "UI",
            "creator_user_name": "alice@example.com",
            "policy_id": policy_id,
            "data_security_mode": "USER_ISOLATION",
            "aws_attributes": {"availability": "SPOT_WITH_FALLBACK", "zone_id": format!("{region}a"), "first_on_demand": 1},
            "custom_tags": {"team": "analytics"},
            "start_time": T0,
        }),
        json!({
            "cluster_id": cluster_id_of(site, "ml-gpu"),
            "cluster_name": "ml-gpu",
            "spark_version": "15.4.x-gpu-ml-scala2.12",
            "node_type_id": "g5.xlarge",
            "num_workers": 0,
            "autotermination_minutes": 30,
            "state": "TERMINATED",
            "cluster_source": "UI",
            "creator_user_name": "bob@example.com",
            "instance_pool_id": cluster_id_of(site, "pool:gpu-pool"),
            "data_security_mode": "SINGLE_USER",
            "single_user_name": "bob@example.com",
            "custom_tags": {"team": "ml"},
            "start_time": T0 + 1000,
        }),
    ];
    let policies = vec![json!({
        "policy_id": policy_id,
        "name": "dr-standard",
        "definition": "{\"spark_version\":{\"type\":\"regex\",\"pattern\":\"1[4-5]\\\\..*\"},\"autotermination_minutes\":{\"type\":\"range\",\"maxValue\":120}}",
        "description": "Standard clusters for DR-protected jobs",
        "creator_user_name": "admin@example.com",
        "created_at_timestamp": T0,
        "is_default": false,
    })];
    let pools = vec![json!({
        "instance_pool_id": cluster_id_of(site, "pool:gpu-pool"),
        "instance_pool_name": "gpu-pool",
        "node_type_id": "g5.xlarge",
        "min_idle_instances": 0,
        "max_capacity": 8,
        "idle_instance_autotermination_minutes": 15,
        "state": "ACTIVE",
        "aws_attributes": {"availability": "ON_DEMAND", "zone_id": format!("{region}a")},
        "preloaded_spark_versions": ["15.4.x-gpu-ml-scala2.12"],
        "custom_tags": {"team": "ml"},
    })];
    let warehouse = |name: &str, size: &str, state: &str, serverless: bool| {
        json!({
            "id": hex_of(site, &format!("warehouse:{name}"), 16),
            "name": name,
            "cluster_size": size,
            "min_num_clusters": 1,
            "max_num_clusters": 2,
            "auto_stop_mins": if serverless { 10 } else { 45 },
            "state": state,
            "warehouse_type": "PRO",
            "enable_serverless_compute": serverless,
            "enable_photon": true,
            "spot_instance_policy": "COST_OPTIMIZED",
            "creator_name": "admin@example.com",
            "num_clusters": if state == "RUNNING" { 1 } else { 0 },
            "tags": {"custom_tags": [{"key": "dr", "value": "active-passive"}]},
        })
    };
    let warehouses = vec![
        warehouse("bi", "Medium", if active { "RUNNING" } else { "STOPPED" }, false),
        warehouse("adhoc", "Small", "STOPPED", false),
        warehouse("serverless-sql", "X-Small", "RUNNING", true),
    ];
    let metastore = json!({
        "metastore_id": metastore_id,
        "name": format!("metastore-aws-{region}"),
        "cloud": "aws",
        "region": region,
        "global_metastore_id": format!("aws:{region}:{metastore_id}"),
        "storage_root": format!("s3://acme-{site}-uc-root/metastore"),
        "default_data_access_config_id": uuid_of(site, "storage-credential:dr-s3-role"),
        "storage_root_credential_name": "dr-s3-role",
        "owner": "admins",
        "delta_sharing_scope": "INTERNAL",
        "privilege_model_version": "1.0",
        "created_at": T0,
        "created_by": "admin@example.com",
        "updated_at": T0,
        "updated_by": "admin@example.com",
    });
    let catalog = |name: &str, comment: &str| {
        json!({
            "name": name,
            "full_name": name,
            "catalog_type": "MANAGED_CATALOG",
            "owner": "data-engineers",
            "comment": comment,
            "metastore_id": metastore_id,
            "storage_root": format!("s3://acme-{site}-uc-root/{name}"),
            "isolation_mode": "OPEN",
            "securable_type": "CATALOG",
            "created_at": T0,
            "created_by": "admin@example.com",
            "updated_at": T0,
        })
    };
    let schema = |catalog: &str, name: &str| {
        json!({
            "name": name,
            "catalog_name": catalog,
            "full_name": format!("{catalog}.{name}"),
            "owner": "data-engineers",
            "metastore_id": metastore_id,
            "schema_id": uuid_of(site, &format!("schema:{catalog}.{name}")),
            "securable_type": "SCHEMA",
            "created_at": T0,
            "created_by": "admin@example.com",
            "updated_at": T0,
        })
    };
    let columns = |cols: &[(&str, &str)]| {
        cols.iter()
            .enumerate()
            .map(|(i, (n, t))| json!({"name": n, "type_name": t.to_uppercase(), "type_text": t, "position": i, "nullable": true}))
            .collect::<Vec<_>>()
    };
    let table = |catalog: &str, schema: &str, name: &str, kind: &str, location: Option<String>, cols: Vec<Value>| {
        let full = format!("{catalog}.{schema}.{name}");
        let mut t = json!({
            "name": name,
            "catalog_name": catalog,
            "schema_name": schema,
            "full_name": full,
            "table_type": kind,
            "owner": "data-engineers",
            "metastore_id": metastore_id,
            "table_id": uuid_of(site, &format!("table:{full}")),
            "columns": cols,
            "created_at": T0,
            "created_by": "etl@example.com",
            "updated_at": T0,
        });
        if kind == "VIEW" {
            t["view_definition"] = json!("SELECT date, sum(amount) AS revenue FROM sales.curated.orders GROUP BY date");
        } else {
            t["data_source_format"] = json!("DELTA");
            t["storage_location"] = json!(location.unwrap_or_else(|| format!(
                "s3://acme-{site}-uc-root/{catalog}/__unitystorage/tables/{}",
                uuid_of(site, &format!("table:{full}"))
            )));
        }
        t
    };
    let order_cols = columns(&[("order_id", "bigint"), ("customer_id", "bigint"), ("amount", "decimal(10,2)"), ("date", "date")]);
    let tables = vec![
        table("main", "reporting", "daily_revenue", "MANAGED", None, columns(&[("date", "date"), ("revenue", "decimal(18,2)")])),
        table("main", "reporting", "revenue_view", "VIEW", None, columns(&[("date", "date"), ("revenue", "decimal(18,2)")])),
        table("sales", "raw", "orders", "EXTERNAL", Some(format!("s3://acme-{site}-landing/tables/orders")), order_cols.clone()),
        table("sales", "curated", "orders", "MANAGED", None, order_cols),
        table("sales", "curated", "customers", "MANAGED", None, columns(&[("customer_id", "bigint"), ("name", "string")])),
    ];
    let volume = |catalog: &str, schema: &str, name: &str, kind: &str, location: String| {
        json!({
            "name": name,
            "catalog_name": catalog,
            "schema_name": schema,
            "full_name": format!("{catalog}.{schema}.{name}"),
            "volume_type": kind,
            "volume_id": uuid_of(site, &format!("volume:{catalog}.{schema}.{name}")),
            "storage_location": location,
            "owner": "data-engineers",
            "metastore_id": metastore_id,
            "created_at": T0,
            "created_by": "etl@example.com",
            "updated_at": T0,
        })
    };
    let volumes = vec![
        volume("sales", "raw", "landing", "EXTERNAL", format!("s3://acme-{site}-landing/incoming")),
        volume("main", "default", "scratch", "MANAGED", format!("s3://acme-{site}-uc-root/main/__unitystorage/volumes/scratch")),
    ];
    let external_locations = vec![json!({
        "name": "landing",
        "url": format!("s3://acme-{site}-landing/"),
        "credential_name": "dr-s3-role",
        "credential_id": uuid_of(site, "storage-credential:dr-s3-role"),
        "read_only": false,
        "owner": "admins",
        "comment": "Raw files from upstream systems",
        "metastore_id": metastore_id,
        "created_at": T0,
        "created_by": "admin@example.com",
        "updated_at": T0,
    })];
    let storage_credentials = vec![json!({
        "name": "dr-s3-role",
        "id": uuid_of(site, "storage-credential:dr-s3-role"),
        "aws_iam_role": {
            "role_arn": format!("arn:aws:iam::123456789012:role/dr-uc-access-{region}"),
            "unity_catalog_iam_arn": "arn:aws:iam::414351767826:role/unity-catalog-prod-UCMasterRole-14S5ZJVKOTYTL",
            "external_id": uuid_of(site, "external-id"),
        },
        "owner": "admins",
        "read_only": false,
        "metastore_id": metastore_id,
        "created_at": T0,
        "created_by": "admin@example.com",
        "updated_at": T0,
    })];
    let grant = |principal: &str, privileges: &[&str]| json!({"principal": principal, "privileges": privileges});
    let grants = json!({
        "catalog/main": [grant("data-engineers", &["USE_CATALOG", "CREATE_SCHEMA"]), grant("analysts", &["USE_CATALOG"])],
        "catalog/sales": [grant("data-engineers", &["ALL_PRIVILEGES"]), grant("analysts", &["USE_CATALOG"])],
        "schema/main.reporting": [grant("analysts", &["USE_SCHEMA", "SELECT"])],
        "schema/sales.curated": [grant("analysts", &["USE_SCHEMA", "SELECT"])],
        "table/sales.curated.customers": [grant("support@example.com", &["SELECT"])],
        "volume/sales.raw.landing": [grant("etl@example.com", &["READ_VOLUME", "WRITE_VOLUME"])],
        "external_location/landing": [grant("data-engineers", &["READ_FILES", "CREATE_EXTERNAL_TABLE"])],
        "storage_credential/dr-s3-role": [grant("admins", &["CREATE_EXTERNAL_LOCATION"])],
    });
    let registered_models = vec![json!({
        "name": "churn_model",
        "catalog_name": "main",
        "schema_name": "default",
        "full_name": "main.default.churn_model",
        "owner": "bob@example.com",
        "storage_location": format!("s3://acme-{site}-uc-root/main/__unitystorage/models/{}", uuid_of(site, "model:churn")),
        "aliases": [{"alias_name": "champion", "version_num": 3}],
        "metastore_id": metastore_id,
        "created_at": T0,
        "created_by": "bob@example.com",
        "updated_at": T0,
    })];
    let serving_endpoints = vec![json!({
        "name": "churn-scoring",
        "id": hex_of(site, "serving:churn-scoring", 32),
        "creator": "bob@example.com",
        "creation_timestamp": T0,
        "last_updated_timestamp": T0,
        "state": {"ready": if active { "READY" } else { "NOT_READY" }, "config_update": "NOT_UPDATING"},
        "config": {"served_entities": [{
            "name": "churn_model-3",
            "entity_name": "main.default.churn_model",
            "entity_version": "3",
            "workload_size": "Small",
            "scale_to_zero_enabled": true,
        }]},
        "tags": [{"key": "dr", "value": "active-passive"}],
    })];
    let vector_search = json!({
        "enabled": true,
        "endpoints": [{
            "name": "docs-vs",
            "id": uuid_of(site, "vs:docs-vs"),
            "endpoint_type": "STANDARD",
            "endpoint_status": {"state": "ONLINE"},
            "creator": "bob@example.com",
            "creation_timestamp": T0,
            "last_updated_timestamp": T0,
            "num_indexes": 1,
        }],
        "indexes": [{
            "name": "main.default.docs_index",
            "endpoint_name": "docs-vs",
            "index_type": "DELTA_SYNC",
            "primary_key": "id",
            "creator": "bob@example.com",
        }],
    });
    let repo_id = 1_000_000_000_000_000 + fnv(&[site, "repo"]) % 1_000_000_000_000;
    let repos = vec![json!({
        "id": repo_id,
        "path": repo_root_path,
        "url": "https://github.com/acme/pipelines.git",
        "provider": "gitHub",
        "branch": "main",
        "head_commit_id": "7e0847ede61f07adede22e2bcce6050216489171",
    })];
    let object = |kind: &str, path: &str, language: Option<&str>| {
        let mut o = json!({
            "object_type": kind,
            "path": path,
            "object_id": if kind == "REPO" { repo_id } else { 1_000_000_000_000_000 + fnv(&[site, path]) % 1_000_000_000_000 },
        });
        if let Some(l) = language {
            o["language"] = json!(l);
        }
        if kind != "DIRECTORY" && kind != "REPO" {
            o["created_at"] = json!(T0);
            o["modified_at"] = json!(T0 + 86_400_000);
        }
        o
    };
    let workspace_objects = vec![
        object("DIRECTORY", "/Repos", None),
        object("DIRECTORY", "/Repos/etl@example.com", None),
        object("REPO", repo_root_path, None),
        object("DIRECTORY", &format!("{repo_root_path}/etl"), None),
        object("NOTEBOOK", &format!("{repo_root_path}/etl/ingest"), Some("PYTHON")),
        object("NOTEBOOK", &format!("{repo_root_path}/etl/transform"), Some("SQL")),
        object("NOTEBOOK", &format!("{repo_root_path}/etl/stream"), Some("PYTHON")),
        object("FILE", &format!("{repo_root_path}/README.md"), None),
        object("DIRECTORY", "/Users", None),
        object("DIRECTORY", "/Users/alice@example.com", None),
        object("DIRECTORY", "/Users/alice@example.com/etl", None),
        object("NOTEBOOK", "/Users/alice@example.com/etl/cleanup", Some("SQL")),
        object("FILE", "/Users/alice@example.com/etl/helpers.py", None),
        object("DIRECTORY", "/Shared", None),
        object("DIRECTORY", "/Shared/reports", None),
        object("NOTEBOOK", "/Shared/reports/weekly", Some("PYTHON")),
        object("LIBRARY", "/Shared/reports/plotting-0.3.jar", None),
    ];
    let secret_scopes = vec![
        json!({"name": "dr-etl", "backend_type": "DATABRICKS", "acls": [
            {"principal": "admins", "permission": "MANAGE"},
            {"principal": "data-engineers", "permission": "READ"},
        ]}),
        json!({"name": "external-apis", "backend_type": "DATABRICKS", "acls": [
            {"principal": "admins", "permission": "MANAGE"},
            {"principal": "etl@example.com", "permission": "WRITE"},
        ]}),
    ];
    let mut permissions = serde_json::Map::new();
    for (n, owner) in [(1, "etl@example.com"), (2, "alice@example.com"), (3, "etl@example.com")] {
        let id = job_id_of(site, n);
        permissions.insert(format!("jobs/{id}"), acl(&format!("/jobs/{id}"), "job", owner, "data-engineers", "CAN_MANAGE_RUN"));
    }
    permissions.insert(
        format!("clusters/{shared_cluster}"),
        acl(&format!("/clusters/{shared_cluster}"), "cluster", "alice@example.com", "analysts", "CAN_RESTART"),
    );
    let bi = warehouses[0]["id"].as_str().unwrap_or_default().to_string();
    permissions.insert(
        format!("warehouses/{bi}"),
        acl(&format!("/sql/warehouses/{bi}"), "warehouse", "admin@example.com", "analysts", "CAN_USE"),
    );
    json!({
        "jobs": jobs,
        "clusters": clusters,
        "cluster_policies": policies,
        "instance_pools": pools,
        "warehouses": warehouses,
        "metastore": metastore,
        "catalogs": [catalog("main", "Default catalog"), catalog("sales", "Sales data")],
        "schemas": [schema("main", "default"), schema("main", "reporting"), schema("sales", "raw"), schema("sales", "curated")],
        "tables": tables,
        "volumes": volumes,
        "external_locations": external_locations,
        "storage_credentials": storage_credentials,
        "grants": grants,
        "registered_models": registered_models,
        "serving_endpoints": serving_endpoints,
        "vector_search": vector_search,
        "repos": repos,
        "workspace_objects": workspace_objects,
        "secret_scopes": secret_scopes,
        "permissions": permissions,
    })
}

/// A large workspace for the benchmark: `jobs` jobs (schedules, paused one in three, a continuous job in ten, a
/// file-arrival trigger in ten, the `dr` tag on two in three; every 250th job has 130 tasks, past one page of
/// `jobs/get`) and `tables` tables spread evenly over 10 schemas of each of `ceil(tables / 1000)` catalogs (at most
/// 10), plus the objects of [`sample_workspace`]`("primary")` other than its jobs and tables, 30 more repos (past one page)
/// and 60 more notebooks; Databricks' own `system` catalog and an `information_schema` in every catalog (2 views
/// each, beyond the `tables`). Ids are those of `primary`.
pub fn generated_workspace(jobs: usize, tables: usize) -> Value {
    let site = "primary";
    let mut state = sample_workspace(site);
    let policy_id = state["cluster_policies"][0]["policy_id"].as_str().unwrap_or_default().to_string();
    let generated_jobs: Vec<Value> = (0..jobs as u64)
        .map(|i| {
            let name = format!("job-{i:05}");
            let tags = if i % 3 == 2 { json!({"team": "data-eng"}) } else { json!({"dr": "active-passive", "team": "data-eng"}) };
            let task_count = if i % 250 == 249 { 130 } else { 3 };
            let tasks = (0..task_count)
                .map(|t| {
                    let depends: Vec<String> = if t == 0 { vec![] } else { vec![format!("task-{:03}", t - 1)] };
                    let depends: Vec<&str> = depends.iter().map(String::as_str).collect();
                    notebook_task(&format!("task-{t:03}"), &format!("/Repos/etl@example.com/pipelines/jobs/{name}/step{t}"), "main", &depends)
                })
                .collect();
            let settings = base_settings(&name, tags, tasks, vec![job_cluster("main", &policy_id)]);
            let pause = if i % 3 == 1 { "PAUSED" } else { "UNPAUSED" };
            let settings = match i % 10 {
                0 => with(settings, "continuous", json!({"pause_status": pause})),
                5 => with(
                    settings,
                    "trigger",
                    json!({"pause_status": pause, "file_arrival": {"url": format!("s3://acme-{site}-landing/{name}/")}}),
                ),
                _ => with(settings, "schedule", json!({"quartz_cron_expression": format!("0 {} * * * ?", i % 60), "timezone_id": "UTC", "pause_status": pause})),
            };
            job(site, 100 + i, "etl@example.com", settings)
        })
        .collect();
    let catalogs_n = tables.div_ceil(1000).clamp(1, 10);
    let metastore_id = state["metastore"]["metastore_id"].clone();
    let mut catalogs = Vec::new();
    let mut schemas = Vec::new();
    for c in 0..catalogs_n {
        let catalog = format!("cat_{c:02}");
        catalogs
            .push(json!({"name": catalog, "full_name": catalog, "catalog_type": "MANAGED_CATALOG", "owner": "data-engineers",
            "metastore_id": metastore_id, "created_at": T0, "created_by": "admin@example.com"}));
        for s in 0..10 {
            let schema = format!("schema_{s:02}");
            schemas.push(json!({"name": schema, "catalog_name": catalog, "full_name": format!("{catalog}.{schema}"),
                "owner": "data-engineers", "metastore_id": metastore_id, "created_at": T0}));
        }
    }
    let mut generated_tables: Vec<Value> = (0..tables)
        .map(|i| {
            let s = &schemas[i % schemas.len()];
            let (catalog, schema) = (s["catalog_name"].as_str().unwrap_or_default(), s["name"].as_str().unwrap_or_default());
            let name = format!("table_{i:05}");
            let full = format!("{catalog}.{schema}.{name}");
            json!({
                "name": name, "catalog_name": catalog, "schema_name": schema, "full_name": full,
                "table_type": if i % 7 == 0 { "EXTERNAL" } else { "MANAGED" },
                "data_source_format": "DELTA",
                "storage_location": format!("s3://acme-{site}-uc-root/{catalog}/__unitystorage/tables/{}", uuid_of(site, &full)),
                "owner": "data-engineers", "metastore_id": metastore_id, "table_id": uuid_of(site, &format!("table:{full}")),
                "columns": [{"name": "id", "type_name": "LONG", "type_text": "bigint", "position": 0, "nullable": false}],
                "created_at": T0, "updated_at": T0,
            })
        })
        .collect();
    let repos: Vec<Value> = (0..30)
        .map(|i| {
            json!({"id": 2_000_000_000_000_000u64 + i, "path": format!("/Repos/team{}@example.com/project-{i:02}", i % 5),
                "url": format!("https://github.com/acme/project-{i:02}.git"), "provider": "gitHub", "branch": "main",
                "head_commit_id": format!("{:040x}", u128::from(fnv(&["commit", &i.to_string()])))})
        })
        .collect();
    let mut objects = state["workspace_objects"].as_array().cloned().unwrap_or_default();
    for i in 0..60u64 {
        objects.push(json!({"object_type": "NOTEBOOK", "path": format!("/Users/user{}@example.com/notebook-{i:02}", i % 6),
            "language": "PYTHON", "object_id": 3_000_000_000_000_000u64 + i, "created_at": T0, "modified_at": T0}));
    }
    for r in &repos {
        objects.push(json!({"object_type": "REPO", "path": r["path"], "object_id": r["id"]}));
    }
    // Databricks' own: the system catalog, and an information_schema in every catalog (the export leaves them out).
    let mut builtin_schemas = Vec::new();
    let mut builtin_tables = Vec::new();
    catalogs.push(json!({"name": "system", "full_name": "system", "catalog_type": "SYSTEM_CATALOG", "owner": "System user",
        "metastore_id": metastore_id, "created_at": T0}));
    let catalog_names: Vec<String> = catalogs.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect();
    for catalog in &catalog_names {
        let schemas_here: &[&str] =
            if catalog == "system" { &["billing", "access", "information_schema"] } else { &["information_schema"] };
        for schema in schemas_here {
            builtin_schemas.push(json!({"name": schema, "catalog_name": catalog, "full_name": format!("{catalog}.{schema}"),
                "owner": "System user", "metastore_id": metastore_id, "created_at": T0}));
            for table in ["tables", "columns"] {
                builtin_tables.push(json!({"name": table, "catalog_name": catalog, "schema_name": schema,
                    "full_name": format!("{catalog}.{schema}.{table}"), "table_type": "VIEW", "owner": "System user",
                    "metastore_id": metastore_id, "created_at": T0}));
            }
        }
    }
    schemas.extend(builtin_schemas);
    generated_tables.extend(builtin_tables);
    let mut all_repos = state["repos"].as_array().cloned().unwrap_or_default();
    all_repos.extend(repos);
    let mut all_catalogs = state["catalogs"].as_array().cloned().unwrap_or_default();
    all_catalogs.extend(catalogs);
    let mut all_schemas = state["schemas"].as_array().cloned().unwrap_or_default();
    all_schemas.extend(schemas);
    // Exactly `jobs` jobs and `tables` tables: the sample's are replaced, and with them their grants and ACLs.
    let mut permissions = serde_json::Map::new();
    for (key, value) in state["permissions"].as_object().cloned().unwrap_or_default() {
        if !key.starts_with("jobs/") {
            permissions.insert(key, value);
        }
    }
    for j in generated_jobs.iter().take(10) {
        let id = j["job_id"].as_u64().unwrap_or_default();
        permissions.insert(
            format!("jobs/{id}"),
            acl(&format!("/jobs/{id}"), "job", "etl@example.com", "data-engineers", "CAN_MANAGE_RUN"),
        );
    }
    if let Some(grants) = state["grants"].as_object_mut() {
        grants.retain(|k, _| !k.starts_with("table/"));
    }
    let all_jobs = generated_jobs;
    let all_tables = generated_tables;
    state["permissions"] = Value::Object(permissions);
    state["jobs"] = json!(all_jobs);
    state["catalogs"] = json!(all_catalogs);
    state["schemas"] = json!(all_schemas);
    state["tables"] = json!(all_tables);
    state["repos"] = json!(all_repos);
    state["workspace_objects"] = json!(objects);
    state
}

/// The two local workspaces seeded as a DR environment's sites, as the tests and the demo use them: the primary
/// authenticates by OAuth M2M, the secondary by a personal access token, both secrets SecureString parameters
/// under `{prefix}/secrets/`; `extra` keys go into both site documents (e.g. `activation`); the secondary is
/// reached at `secondary_host` instead of 127.0.0.1 when given (two hosts for a DNS name's two targets);
/// `{prefix}/active` is the primary's document; each workspace holds [`sample_workspace`] of its site.
/// Returns the two site documents as written.
pub async fn seed_sites(
    env: &crate::dr_env::DrEnv,
    primary: &Workspace,
    secondary: &Workspace,
    extra: &Value,
    secondary_host: Option<&str>,
) -> (Value, Value) {
    let oauth_secret = format!("{}/secrets/primary-oauth", env.prefix);
    let pat = format!("{}/secrets/secondary-pat", env.prefix);
    for (name, value) in [(&oauth_secret, primary.client_secret()), (&pat, secondary.pat())] {
        let put = env.ssm.put_parameter().name(name).value(value).overwrite(true);
        put.r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let secondary_url = match secondary_host {
        Some(host) => secondary.url.replace("127.0.0.1", host),
        None => secondary.url.clone(),
    };
    let mut p = json!({"workspace_url": primary.url, "region": "us-east-1", "oauth_client_id": primary.client_id(),
                       "oauth_secret_parameter": oauth_secret});
    let mut s = json!({"workspace_url": secondary_url, "region": "us-west-2", "token_parameter": pat});
    for (k, v) in extra.as_object().into_iter().flatten() {
        p[k] = v.clone();
        s[k] = v.clone();
    }
    env.put("sites/primary", &p).await;
    env.put("sites/secondary", &s).await;
    let mut active = p.clone();
    active["site"] = json!("primary");
    env.put("active", &active).await;
    primary.set_state(&sample_workspace("primary"));
    secondary.set_state(&sample_workspace("secondary"));
    (p, s)
}

/// A DR environment (moto) whose sites are two local workspaces seeded by [`seed_sites`], for the end-to-end tests.
pub struct SitePair {
    /// The DR environment.
    pub env: crate::dr_env::DrEnv,
    /// The local Databricks API serving `primary` and `secondary`.
    pub server: DatabricksServer,
}

impl SitePair {
    /// A fresh environment and server, seeded by [`seed_sites`] with `extra` keys and `secondary_host`.
    pub async fn start(extra: &Value, secondary_host: Option<&str>) -> SitePair {
        let env = crate::dr_env::DrEnv::seed(&crate::moto::shared().endpoint).await;
        let server = DatabricksServer::start(&["primary", "secondary"]).unwrap_or_else(|e| panic!("local Databricks API: {e}"));
        seed_sites(&env, server.workspace("primary"), server.workspace("secondary"), extra, secondary_host).await;
        SitePair { env, server }
    }

    /// The primary workspace.
    pub fn primary(&self) -> &Workspace {
        self.server.workspace("primary")
    }

    /// The secondary workspace.
    pub fn secondary(&self) -> &Workspace {
        self.server.workspace("secondary")
    }

    /// `manual-trigger` on this environment, with the client's retry backoff shortened and `extra` variables.
    pub fn function(&self, extra: &[(&str, &str)]) -> crate::runtime_api::Function {
        let mut vars = self.env.function_env();
        vars.push(("DR_DATABRICKS_BACKOFF_MS".into(), "20".into()));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        crate::runtime_api::Function::start("manual-trigger", &vars)
    }
}
