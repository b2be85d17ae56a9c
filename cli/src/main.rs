//! `dr`: break-glass. Runs the `manual-trigger` commands from an operator's shell with the operator's own
//! credentials, without Lambda (for when the stack itself is impaired). Same configuration variables, same
//! code (`engine::commands`, through `app::entry`), same answers.
//!
//! ```sh
//! export AWS_REGION=us-west-2 DR_ENVIRONMENT=prod DR_SSM_PREFIX=/dr/prod DR_CONTROL_BUCKET=... DR_PAGING_TOPIC_ARN=...
//! dr '{"command":"status"}'
//! echo '{"command":"failover","target":"secondary","confirm":"secondary","reason":"...","requested_by":"me","client_token":"inc-1"}' | dr -
//! ```
//!
//! Exit status: 0 answered, 2 rejected, 1 failed (the error is printed as JSON on stdout, logs on stderr).

use app::config::Config;
use aws::AwsClients;
use std::io::Read;
use std::process::ExitCode;

const USAGE: &str = "usage: dr '<command JSON>'   or   dr -   (reads the JSON from stdin)\n\
commands: status, check, snapshot, drill, failover, failback, approve, unlock (see the README's runbook)";

#[tokio::main]
async fn main() -> ExitCode {
    app::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = match args.as_slice() {
        [one] if one == "-" => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                eprintln!("cannot read stdin: {e}");
                return ExitCode::from(1);
            }
            s
        }
        [one] if one == "-h" || one == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [one] => one.clone(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let payload: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"outcome": "rejected", "message": format!("the argument is not JSON ({e}); expected e.g. {{\"command\":\"status\"}}")})
            );
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let clients = AwsClients::from_env().await;
    let engine = app::root::engine(&clients, &config);
    match app::entry::command(&engine, &payload).await {
        Ok(response) => {
            let rejected = response.outcome == engine::response::Outcome::Rejected;
            println!("{}", serde_json::to_string_pretty(&response).unwrap_or_default());
            if rejected { ExitCode::from(2) } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            let message = engine::error::error_chain(&e);
            println!("{}", serde_json::json!({"errorType": e.error_type(), "errorMessage": message}));
            ExitCode::from(1)
        }
    }
}
