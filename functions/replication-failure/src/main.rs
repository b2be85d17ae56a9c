//! `replication-failure`: not built yet (see the project's issues); fails its cold start loudly rather than pretending.

fn main() -> std::process::ExitCode {
    eprintln!("replication-failure is not implemented in this version");
    std::process::ExitCode::FAILURE
}
