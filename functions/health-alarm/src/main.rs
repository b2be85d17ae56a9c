//! `health-alarm`: not built yet (see the project's issues); fails its cold start loudly rather than pretending.

fn main() -> std::process::ExitCode {
    eprintln!("health-alarm is not implemented in this version");
    std::process::ExitCode::FAILURE
}
