//! The soak (issue 16, item 8), as a figure-printing bench: a seeded schedule of alarm deliveries, replication
//! batches and manual commands through the built binaries, one warm process per function, first clean, then
//! with the fault proxy failing a share of the AWS calls; the faulted run must leave the clean run's state, and
//! each process's memory must stay within its bound. See `tests/src/soak.rs` for what is compared and why.
//!
//! `scripts/soak` builds the release binaries and runs this with `DR_FUNCTION_BIN_DIR=target/release`.
//! `SOAK_SEED` (default 0x5eed50a4), `SOAK_ALARMS` (default 1000), `SOAK_BATCHES` (default 100) and
//! `SOAK_FAULT_PERMILLE` (default 70) set the run. Prints one table; exits 1 when the soak fails.
#![allow(missing_docs)]

#[tokio::main]
async fn main() {
    let cfg = tests::soak::Config::from_env(1000, 100);
    let report = tests::soak::run(&cfg).await;
    println!("{}", report.table());
    if !report.passed() {
        std::process::exit(1);
    }
}
