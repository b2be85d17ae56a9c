//! Real Delta tables in moto for the tests, the demo and the benches: `tests/delta/make_tables.py` writes them
//! with delta-rs (the `deltalake` package, pinned, in `.venv-tools/deltalake`, created on first use) into a
//! primary bucket, then copies each into a replica bucket partially, one case per table (its stdout, JSON: each
//! case's newest and consistent versions and its commits' times).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The pins of the writer's virtualenv.
pub const DELTALAKE: &str = "deltalake==1.6.6 pyarrow==26.0.1 boto3==1.44.8";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// The Python of `.venv-tools/deltalake` with [`DELTALAKE`] (created, or re-created when the pins changed, on
/// first use, as `scripts/lib.sh`'s `ensure_venv`); panics with pip's failure.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = root().join(".venv-tools/deltalake");
        let py = venv.join("bin/python");
        if std::fs::read_to_string(venv.join(".pins")).ok().as_deref() != Some(DELTALAKE) || !py.exists() {
            let _ = std::fs::remove_dir_all(&venv);
            let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
            assert!(made.is_ok_and(|s| s.success()), "python3 -m venv {}", venv.display());
            let mut pip = Command::new(&py);
            pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(DELTALAKE.split(' '));
            assert!(pip.status().is_ok_and(|s| s.success()), "pip install {DELTALAKE}");
            let _ = std::fs::write(venv.join(".pins"), DELTALAKE);
        }
        py
    })
    .clone()
}

/// Runs `make_tables.py PRIMARY REPLICA` against moto at `endpoint` (both buckets must exist) and returns its
/// manifest; panics with the script's stderr when it fails.
pub fn make_tables(endpoint: &str, primary: &str, replica: &str) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/delta/make_tables.py"))
        .args([primary, replica])
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", crate::dr_env::REGION)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("make_tables.py: {e}"),
    };
    assert!(out.status.success(), "make_tables.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}
