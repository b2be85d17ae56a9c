//! End-to-end harness for the DR failover functions.
//!
//! | module | what |
//! |---|---|
//! | [`moto`] | one moto server per process, on 127.0.0.1, stopped when the process exits |
//! | [`runtime_api`] | a Lambda Runtime API server that runs a built function binary as Lambda does |
//! | [`fault_proxy`] | a fault-injecting HTTP proxy between the SDK and moto |
//! | [`dr_env`] | a realistic DR environment seeded into moto, isolated per test, with readable topics |
//! | [`soak`] | the soak: a seeded schedule through warm processes with faults, compared with a clean run |
//!
//! The function binaries are the ones `cargo build --workspace --bins` leaves in `target/debug` (the test
//! script builds them first); `DR_FUNCTION_BIN_DIR` points elsewhere (e.g. `target/release`).

pub mod dr_env;
pub mod fault_proxy;
pub mod moto;
pub mod runtime_api;
pub mod soak;
