//! End-to-end harness for the DR failover functions.
//!
//! | module | what |
//! |---|---|
//! | [`databricks`] | a local Databricks workspace REST API (several workspaces, seeded states, faults, request record) |
//! | [`moto`] | one moto server per process, on 127.0.0.1, stopped when the process exits |
//! | [`runtime_api`] | a Lambda Runtime API server that runs a built function binary as Lambda does |
//! | [`fault_proxy`] | a fault-injecting HTTP proxy between the SDK and moto |
//! | [`delta`] | real Delta tables written into moto by delta-rs (`tests/delta/make_tables.py`), replicated partially |
//! | [`dns`] | Route 53 in moto: a hosted zone and the CNAME that client redirection moves |
//! | [`dr_env`] | a realistic DR environment seeded into moto, isolated per test, with readable topics |
//! | [`soak`] | the soak: a seeded schedule through warm processes with faults, compared with a clean run |
//! | [`fixture`], [`median`] | a sample event of `events/`, and the median the benches print |
//!
//! The function binaries are the ones `cargo build --workspace --bins` leaves in `target/debug` (the test
//! script builds them first); `DR_FUNCTION_BIN_DIR` points elsewhere (e.g. `target/release`).

pub mod databricks;
pub mod delta;
pub mod dns;
pub mod dr_env;
pub mod fault_proxy;
pub mod moto;
pub mod runtime_api;
pub mod soak;

/// The sample event `events/<folder>/<name>` (real AWS shapes, shared with `sam local invoke`); panics with the
/// path when it is missing or not JSON.
pub fn fixture(folder: &str, name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{folder}/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The median of the figures (the upper one of an even count), `NaN` when there are none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}
