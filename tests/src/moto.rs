//! moto's server for tests and the demo: started once per process, on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    // Held so that stdin stays open: the server stops when this process exits and the pipe closes.
    _child: Child,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

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

/// Starts a new moto server (most callers want [`shared`]).
pub fn start() -> Result<Moto, String> {
    let python = std::env::var_os("DR_MOTO_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let script =
        std::env::var_os("DR_MOTO_SCRIPT").map(PathBuf::from).unwrap_or_else(|| repo_root().join("scripts/moto_server.py"));
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
    let addr = line.trim();
    if addr.is_empty() {
        return Err(format!("{} printed no address (is moto installed?)", script.display()));
    }
    Ok(Moto { endpoint: format!("http://{addr}"), _child: child })
}
