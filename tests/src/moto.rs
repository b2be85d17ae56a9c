//! moto's server for tests and the demo: started once per process, on a free loopback port.
//!
//! [`shared_tls`] starts another one that also serves HTTPS (`scripts/moto_server.py --tls`): a certificate for
//! 127.0.0.1 signed by a CA generated at start, which a function trusts through the SDK's own configuration
//! (`SSL_CERT_FILE`, [`TlsEndpoint::function_env`]); its record of connections and requests ([`Moto::tls_record`])
//! counts the TLS handshakes a function makes.

use serde::Deserialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The same moto over HTTPS, when started by [`start_tls`].
    pub tls: Option<TlsEndpoint>,
    // Held so that stdin stays open: the server stops when this process exits and the pipe closes.
    _child: Child,
}

/// moto's HTTPS endpoint and how a client trusts it.
#[derive(Debug, Clone)]
pub struct TlsEndpoint {
    /// `https://127.0.0.1:PORT`: the same backends as the plain endpoint (seed over one, read over the other).
    pub endpoint: String,
    /// The generated CA's certificate (PEM), removed when the server stops.
    pub ca_file: PathBuf,
    /// An empty directory: with `SSL_CERT_DIR` on it, no system CA is trusted beside `ca_file`.
    pub cert_dir: PathBuf,
}

impl TlsEndpoint {
    /// The variables that point a function at the HTTPS endpoint and make its SDK trust the CA, added after
    /// [`crate::dr_env::DrEnv::function_env`] (later variables win): `AWS_ENDPOINT_URL`, and `SSL_CERT_FILE` with
    /// `SSL_CERT_DIR`, which rustls-native-certs (the SDK's default HTTPS client's trust store) reads instead
    /// of the system's store when they are set. Nothing in the product knows about them.
    pub fn function_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("SSL_CERT_FILE".into(), self.ca_file.display().to_string()),
            ("SSL_CERT_DIR".into(), self.cert_dir.display().to_string()),
        ]
    }
}

/// What the HTTPS server saw, in arrival order (times are seconds on the server's monotonic clock).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsRecord {
    /// Every accepted connection: one TLS handshake each.
    pub connections: Vec<TlsConnection>,
    /// Every request answered.
    pub requests: Vec<TlsRequest>,
}

/// One connection to the HTTPS server.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsConnection {
    /// When the server accepted it (the client's TCP handshake is done).
    pub accepted: f64,
    /// When its TLS handshake ended; `None` if it failed.
    pub handshake_end: Option<f64>,
    /// The TLS version agreed (`TLSv1.3`).
    pub version: Option<String>,
    /// Why the handshake failed.
    pub error: Option<String>,
}

/// One request to the HTTPS server.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsRequest {
    /// The index of its connection in [`TlsRecord::connections`].
    pub connection: Option<usize>,
    /// The signing service (`ssm`, `s3`, `sns`).
    pub service: String,
    /// The operation (`GetParameter`, `Publish`, `PUT /bucket/key PutObject`).
    pub operation: String,
    /// The HTTP status code.
    pub status: String,
    /// When moto began handling it.
    pub start: f64,
    /// When moto had its answer.
    pub end: f64,
}

/// A point in a [`TlsRecord`]: how many connections and requests it held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// Connections so far.
    pub connections: usize,
    /// Requests so far.
    pub requests: usize,
}

impl TlsRecord {
    /// Where the record ends now.
    pub fn mark(&self) -> Mark {
        Mark { connections: self.connections.len(), requests: self.requests.len() }
    }

    /// What came after `from` and up to `to`: the connections and the requests between the two marks.
    pub fn between(&self, from: Mark, to: Mark) -> (&[TlsConnection], &[TlsRequest]) {
        (&self.connections[from.connections..to.connections], &self.requests[from.requests..to.requests])
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static MOTO_TLS: OnceLock<Moto> = OnceLock::new();

/// The process-wide moto server, started on first use.
///
/// Uses `DR_MOTO_PYTHON` and `DR_MOTO_SCRIPT` (set by `scripts/lib.sh`), else `.venv/bin/python` and
/// `scripts/moto_server.py` in the repository.
pub fn shared() -> &'static Moto {
    MOTO.get_or_init(|| start().unwrap_or_else(|e| panic!("cannot start moto: {e}. Run scripts/test, which installs it.")))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The process-wide moto server that also serves HTTPS ([`Moto::tls`]), started on first use.
pub fn shared_tls() -> &'static Moto {
    MOTO_TLS.get_or_init(|| {
        start_tls().unwrap_or_else(|e| panic!("cannot start moto with TLS: {e}. Run scripts/test, which installs it."))
    })
}

/// Starts a new moto server (most callers want [`shared`]).
pub fn start() -> Result<Moto, String> {
    spawn(false)
}

/// Starts a new moto server that also serves HTTPS (most callers want [`shared_tls`]).
pub fn start_tls() -> Result<Moto, String> {
    spawn(true)
}

fn spawn(tls: bool) -> Result<Moto, String> {
    let python = std::env::var_os("DR_MOTO_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let script =
        std::env::var_os("DR_MOTO_SCRIPT").map(PathBuf::from).unwrap_or_else(|| repo_root().join("scripts/moto_server.py"));
    let mut child = Command::new(&python)
        .arg(&script)
        .args(tls.then_some("--tls"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    let addr = line.trim();
    if addr.is_empty() {
        return Err(format!("{} printed no address (is moto installed?)", script.display()));
    }
    let endpoint = format!("http://{addr}");
    let tls = if tls {
        // "tls 127.0.0.1:PORT <ca.pem> <empty dir>"
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let ["tls", addr, ca, dir] = parts[..] else {
            return Err(format!("{} --tls printed {line:?}", script.display()));
        };
        Some(TlsEndpoint { endpoint: format!("https://{addr}"), ca_file: ca.into(), cert_dir: dir.into() })
    } else {
        None
    };
    Ok(Moto { endpoint, tls, _child: child })
}

impl Moto {
    /// The HTTPS server's record so far (empty without TLS): `GET /_dr/tls` on the plain endpoint.
    pub fn tls_record(&self) -> TlsRecord {
        if self.tls.is_none() {
            return TlsRecord::default();
        }
        let body = self.control("/_dr/tls");
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {}/_dr/tls: {e}", self.endpoint))
    }

    /// Adds a simulated network round trip to the HTTPS server: every answer waits `rtt`, every new connection
    /// `2 * rtt` (its TCP and TLS 1.3 handshakes). Zero removes it. Process-wide: for benchmarks.
    pub fn set_tls_round_trip(&self, rtt: std::time::Duration) {
        self.control(&format!("/_dr/tls/latency?ms={}", rtt.as_secs_f64() * 1000.0));
    }

    /// `GET path` on the plain endpoint (HTTP/1.0: the answer ends with the connection): the body.
    fn control(&self, path: &str) -> Vec<u8> {
        let addr = self.endpoint.trim_start_matches("http://");
        let fetch = || -> std::io::Result<Vec<u8>> {
            let mut conn = std::net::TcpStream::connect(addr)?;
            conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
            let mut out = Vec::new();
            conn.read_to_end(&mut out)?;
            Ok(out)
        };
        let response = fetch().unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |i| i + 4);
        response[at..].to_vec()
    }
}
