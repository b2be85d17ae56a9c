//! `dr`: break-glass. Runs the `manual-trigger` commands from an operator's shell with the operator's own
//! credentials, without Lambda (for when the stack itself is impaired), or through the deployed function
//! (`--function NAME`). Same configuration variables, same code (`engine::commands`, through
//! `app::entry::command`), same answers: each subcommand builds the JSON payload the function takes.
//!
//! ```sh
//! dr --env prod status                  # a summary for people; --json prints the function's answer
//! dr failover --to secondary --reason "us-east-1 outage" --token inc-4711    # asks for the typed confirmation
//! dr watch failover-inc-4711
//! dr report failover-inc-4711
//! dr '{"command":"status"}'             # scripts: the JSON payload itself (or `dr -` to read it from stdin)
//! ```
//!
//! Exit status: 0 answered, 2 rejected (nothing changed), 1 failed. With `--json` (and the JSON payload form)
//! the answer, or the error as `{"errorType", "errorMessage"}`, is printed on stdout; logs go to stderr.
//!
//! Who asks is recorded with every command that changes something: `--requested-by`, else `DR_REQUESTED_BY`, else
//! the AWS caller identity (STS `GetCallerIdentity`) shortened for people
//! (`aws::operator::identity::for_people`: `arn:aws:sts::123456789012:assumed-role/DrOperator/alice@example.com`
//! is `alice@example.com (DrOperator)`).
//!
//! What a command runs with is built by the same assembly as the functions' (`app::root::assemble`, role
//! `BreakGlass`): the Databricks connector and Route 53, so that a break-glass failover activates the workloads
//! and moves the stable name as the Lambda does. Every AWS call goes through the adapters' crate (`aws`, with its
//! `operator` feature for STS and `--function`'s Lambda Invoke): `dr` names no AWS SDK.
//!
//! Module map: [`args`] (the command line), [`profile`] (configuration from the environment or a profile file),
//! [`render`] (the answers for people), [`follow`] (`watch` and `report`).

mod args;
mod follow;
mod profile;
mod render;
mod sync_view;

use app::config::Config;
use app::root::Role;
use args::{Cli, ColorChoice, Command};
use aws::AwsClients;
use aws::operator::invoke;
use aws::s3::S3ControlBucket;
use clap::{CommandFactory, Parser};
use domain::names::BucketName;
use profile::Settings;
use render::Style;
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status: answered.
const ANSWERED: u8 = 0;
/// Exit status: failed (an AWS call, the configuration, the execution).
const FAILED: u8 = 1;
/// Exit status: rejected; nothing changed.
const REJECTED: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap: 0 for --help and --version, 2 for a usage error (rejected: nothing was sent).
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(REJECTED));
        }
    };
    ExitCode::from(run(cli).await)
}

/// How the answer is printed.
#[derive(Debug, Clone, Copy)]
struct Output {
    /// The function's JSON.
    json: bool,
    /// Colours on stdout.
    style: Style,
    /// Colours on stderr (prompts, errors).
    err_style: Style,
}

async fn run(cli: Cli) -> u8 {
    let command = match cli.command {
        None => {
            let _ = Cli::command().print_help();
            return REJECTED;
        }
        Some(Command::Payload(words)) => return legacy(&cli.global, words).await,
        Some(c) => c,
    };
    match &command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "dr", &mut std::io::stdout());
            return ANSWERED;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ANSWERED,
                Err(e) => {
                    eprintln!("cannot write the man page: {e}");
                    FAILED
                }
            };
        }
        _ => {}
    }
    let g = &cli.global;
    let out = Output {
        json: g.json,
        style: style(g.color, std::io::stdout().is_terminal()),
        err_style: style(g.color, std::io::stderr().is_terminal()),
    };
    init_logs(g.json, g.verbose, out.err_style.color);
    let settings = match Settings::load(g.profile.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return FAILED;
        }
    };
    // Built once for the command: the adapters' clients, and the operator's calls made with the same credentials.
    let clients = AwsClients::load(&settings.sdk_overrides()).await;
    if let Some(status) = follow_command(&command, g, &settings, &clients, out).await {
        return status;
    }
    manual_command(&command, g, &settings, clients, out).await
}

/// `watch` and `report`, which read the control bucket directly: their exit status, or `None` for another command.
async fn follow_command(
    command: &Command,
    g: &args::Global,
    settings: &Settings,
    clients: &AwsClients,
    out: Output,
) -> Option<u8> {
    match command {
        Command::Watch { execution, interval, timeout, until_approval } => {
            let Some(bucket) = control_bucket(settings, clients) else { return Some(FAILED) };
            let opts = follow::WatchOptions {
                execution_id: execution.clone(),
                interval: Duration::from_secs_f64(interval.clamp(0.1, 60.0)),
                timeout: Duration::from_secs(*timeout),
                until_approval: *until_approval,
                json: g.json,
            };
            let status = match follow::watch(&bucket, &opts, out.style).await {
                Ok(follow::Watched::Ended) => ANSWERED,
                Ok(follow::Watched::Failed) => FAILED,
                Ok(follow::Watched::TimedOut) => {
                    eprintln!("{execution} has not ended after {timeout} s; dr watch {execution} again to keep following it");
                    FAILED
                }
                Ok(follow::Watched::NotFound) => {
                    eprintln!(
                        "no execution {execution}: {} does not exist (dr status lists the recent executions)",
                        domain::layout::execution_record(execution)
                    );
                    REJECTED
                }
                Err(e) => {
                    eprintln!("{e}");
                    FAILED
                }
            };
            Some(status)
        }
        Command::Report { execution } => {
            let Some(bucket) = control_bucket(settings, clients) else { return Some(FAILED) };
            let status = match follow::report(&bucket, execution, g.json).await {
                Ok(Some(text)) => {
                    println!("{}", text.trim_end());
                    ANSWERED
                }
                Ok(None) => {
                    eprintln!(
                        "no report for {execution}: {} does not exist (an execution writes it when it ends; dr watch {execution} follows one)",
                        domain::layout::report_markdown(execution)
                    );
                    REJECTED
                }
                Err(e) => {
                    eprintln!("{e}");
                    FAILED
                }
            };
            Some(status)
        }
        _ => None,
    }
}

/// A manual-trigger command: who asks, the typed confirmation, then the same payload as the function's, run here or
/// sent with `--function`.
async fn manual_command(command: &Command, g: &args::Global, settings: &Settings, clients: AwsClients, out: Output) -> u8 {
    let requested_by = if command.needs_requester() {
        match requester(g, settings, &clients).await {
            Ok(who) => Some(who),
            Err(e) => {
                eprintln!("{}", out.err_style.bad(&e));
                return FAILED;
            }
        }
    } else {
        None
    };
    let mut typed = None;
    let environment = settings.get("DR_ENVIRONMENT").or_else(|| g.function.clone()).unwrap_or_else(|| "this environment".into());
    let missing = match command {
        // The standby is named by the plan: shown first, then its name is asked for.
        Command::Sync { apply: true, confirm: None, prune } => {
            match sync_confirmation(g, settings, &clients, out, &environment, *prune).await {
                Ok(c) => Some(c),
                Err(status) => return status,
            }
        }
        _ => command.missing_confirmation(&environment),
    };
    if let Some(c) = missing {
        if !std::io::stdin().is_terminal() {
            let flag = format!("--confirm {}", c.expected);
            return refuse(
                out,
                &format!(
                    "{} needs a typed confirmation and no terminal is attached: pass {flag}",
                    command.function_command().unwrap_or_default()
                ),
            );
        }
        match ask(&c, requested_by.as_deref(), out.err_style) {
            Some(t) => typed = Some(t),
            None => {
                eprintln!("{}", out.err_style.bad(&format!("confirmation did not match {:?}: nothing was sent", c.expected)));
                return REJECTED;
            }
        }
    }
    let Some(payload) = command.payload(requested_by.as_deref(), typed.as_deref()) else { return FAILED };
    let name = command.function_command().unwrap_or_default();
    let answer = dispatch(g.function.as_deref(), settings, clients, &payload).await;
    print(name, &answer, out)
}

/// `dr sync --apply` without `--confirm`: the plan, shown, and the confirmation it asks for (the standby's name);
/// `Err(status)` when there is nothing to confirm (rejected, failed, or no terminal to ask on).
async fn sync_confirmation(
    g: &args::Global,
    settings: &Settings,
    clients: &AwsClients,
    out: Output,
    environment: &str,
    prune: bool,
) -> Result<args::Confirmation, u8> {
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            out,
            "sync --apply needs a typed confirmation and no terminal is attached: pass --confirm <standby site>",
        ));
    }
    let answer = dispatch(g.function.as_deref(), settings, clients.clone(), &json!({"command": "sync"})).await;
    let plan = match &answer {
        Answer::Answered(v) if v["outcome"] != "rejected" => v.clone(),
        _ => return Err(print("sync", &answer, out)),
    };
    eprint!("{}", sync_view::render(&plan, out.err_style));
    let standby = sync_view::typed(&plan).map(|r| r.details.plan.to.as_str().to_owned()).unwrap_or_default();
    let also = if prune { " and delete what the active site lacks" } else { "" };
    Ok(args::Confirmation {
        summary: format!("About to SYNC {environment}: write the plan above to the {standby} workspace{also}."),
        expected: standby,
        what: "the standby site",
    })
}

/// The earlier interface, kept for scripts: `dr '<json>'` or `dr -`; the answer is the function's JSON.
async fn legacy(g: &args::Global, words: Vec<String>) -> u8 {
    let text = match legacy_text(&words) {
        Ok(t) => t,
        Err(code) => return code,
    };
    app::telemetry::init();
    let payload: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            println!(
                "{}",
                json!({"outcome": "rejected", "message": format!("the argument is not JSON ({e}); expected e.g. {{\"command\":\"status\"}}")})
            );
            return REJECTED;
        }
    };
    let settings = match Settings::load(g.profile.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return FAILED;
        }
    };
    let clients = AwsClients::load(&settings.sdk_overrides()).await;
    let answer = dispatch(g.function.as_deref(), &settings, clients, &payload).await;
    let style = Style { color: false };
    print("", &answer, Output { json: true, style, err_style: style })
}

/// The one JSON payload of a legacy call (`dr '{"command":...}'`, or `-` for stdin); a mistyped command name is
/// rejected as clap would reject it. `Err`: the exit code, once said why.
fn legacy_text(words: &[String]) -> Result<String, u8> {
    let [arg] = words else {
        let mut cmd = Cli::command();
        let e = cmd.error(
            clap::error::ErrorKind::TooManyValues,
            format!("one JSON payload expected, found {} arguments: {words:?} (quote the JSON)", words.len()),
        );
        let _ = e.print();
        return Err(REJECTED);
    };
    let arg = arg.clone();
    if arg == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("cannot read stdin: {e}");
            return Err(FAILED);
        }
        Ok(s)
    } else if matches!(arg.trim_start().chars().next(), Some('{' | '[' | '"')) {
        Ok(arg)
    } else {
        // A mistyped command name: say so as clap would, with its suggestion.
        let mut cmd = Cli::command();
        let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        let close = names.iter().find(|n| edit_distance(n, &arg) <= 2);
        let hint = close.map(|n| format!("\n\n  tip: a similar command exists: '{n}'")).unwrap_or_default();
        let e = cmd.error(clap::error::ErrorKind::InvalidSubcommand, format!("unrecognized command '{arg}'{hint}"));
        let _ = e.print();
        Err(REJECTED)
    }
}

/// What a command came to.
enum Answer {
    /// The function's answer.
    Answered(Value),
    /// The function's error, `{"errorType", "errorMessage"}`.
    Failed(Value),
    /// Nothing could be sent (configuration, the Lambda API): printed on stderr.
    NotSent(String),
}

/// Runs the payload here (the function's own dispatch, over what `app::root::assemble` builds for `dr`) or, with
/// `--function`, through the deployed function.
async fn dispatch(function: Option<&str>, settings: &Settings, clients: AwsClients, payload: &Value) -> Answer {
    if let Some(function) = function {
        return match invoke::invoke(&clients, function, payload).await {
            Ok(invoke::Answer::Response(v)) => Answer::Answered(v),
            Ok(invoke::Answer::FunctionError(v)) => Answer::Failed(v),
            Err(e) => Answer::NotSent(e.to_string()),
        };
    }
    let config = match Config::from_lookup(|name| settings.get(name)) {
        Ok(c) => c,
        Err(e) => {
            let from = settings.path.as_ref().map(|p| format!(" (profile {})", p.display())).unwrap_or_default();
            return Answer::NotSent(format!("{e}{from}"));
        }
    };
    // The functions' own wiring: `dr snapshot` exports the workspaces as manual-trigger does, and a failover
    // activates the workloads and moves the stable name (the operator's credentials must allow the SecureString
    // reads under {prefix}/secrets/ and the Route 53 change).
    let engine = app::root::assemble(Role::BreakGlass, config, clients).engine;
    match app::entry::command(&engine, payload).await {
        Ok(response) => Answer::Answered(serde_json::to_value(&response).unwrap_or(Value::Null)),
        Err(e) => Answer::Failed(json!({"errorType": e.error_type(), "errorMessage": dr_ports::error::error_chain(&e)})),
    }
}

/// Prints an answer and returns the exit status.
fn print(command: &str, answer: &Answer, out: Output) -> u8 {
    match answer {
        Answer::Answered(v) => {
            if out.json {
                println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            } else {
                if command == "sync" && v["outcome"] != "rejected" {
                    print!("{}", sync_view::render(v, out.style));
                } else {
                    print!("{}", render::answer(command, v, out.style, time::OffsetDateTime::now_utc()));
                }
            }
            if v["outcome"] == "rejected" { REJECTED } else { ANSWERED }
        }
        Answer::Failed(v) => {
            if out.json {
                println!("{v}");
            } else {
                eprint!("{}", render::error(v, out.err_style));
            }
            FAILED
        }
        // Nothing reached the function's code: on stderr, as a configuration error always was.
        Answer::NotSent(e) => {
            eprintln!("{}", out.err_style.bad(e));
            FAILED
        }
    }
}

/// Rejects before anything is sent: on stderr (and as a rejection on stdout with `--json`).
fn refuse(out: Output, message: &str) -> u8 {
    if out.json {
        println!("{}", json!({"outcome": "rejected", "message": message}));
    }
    eprintln!("{}", out.err_style.bad(&format!("rejected: {message}")));
    REJECTED
}

/// Asks for the typed confirmation on the terminal (saying who will be recorded as asking); `Some(typed)` when it
/// matches.
fn ask(c: &args::Confirmation, requested_by: Option<&str>, s: Style) -> Option<String> {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{}", s.bold(&c.summary));
    if let Some(who) = requested_by {
        let _ = writeln!(err, "Requested by {who} (--requested-by to say otherwise).");
    }
    let _ = write!(err, "Type {} ({}) to confirm, anything else aborts: ", c.what, s.bold(&c.expected));
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    let typed = line.trim();
    (typed == c.expected).then(|| typed.to_owned())
}

/// Who asks: `--requested-by`, else `DR_REQUESTED_BY`, else the AWS caller identity shortened for people. The
/// error says what is wrong with the identity and that `--requested-by` works without it.
async fn requester(g: &args::Global, settings: &Settings, clients: &AwsClients) -> Result<String, String> {
    let given = g.requested_by.clone().filter(|w| !w.trim().is_empty()).or_else(|| settings.get("DR_REQUESTED_BY"));
    if let Some(who) = given {
        return Ok(who);
    }
    match aws::operator::identity::caller_identity(clients).await {
        Ok(id) => {
            let who = id.for_people();
            tracing::info!(arn = %id.arn, account = %id.account, requested_by = %who, "who asks: the AWS caller identity");
            Ok(who)
        }
        Err(e) => Err(format!(
            "cannot tell who is asking from your AWS identity ({e}): nothing was sent; pass --requested-by you@example.com \
             (or set DR_REQUESTED_BY) to say who asks"
        )),
    }
}

fn style(choice: ColorChoice, terminal: bool) -> Style {
    let color = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    Style { color }
}

/// Logs on stderr: JSON lines (as the functions log) with `--json`; otherwise terse text, warnings only unless
/// `--verbose` or `RUST_LOG`.
fn init_logs(json: bool, verbose: bool, ansi: bool) {
    if json {
        app::telemetry::init();
        return;
    }
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let default = if verbose { LevelFilter::INFO } else { LevelFilter::WARN };
    let filter = app::telemetry::filter(None, std::env::var("RUST_LOG").ok().as_deref(), default);
    let layer = tracing_subscriber::fmt::layer().compact().with_writer(std::io::stderr).with_ansi(ansi).with_target(false);
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

/// The control bucket, for `watch` and `report` (only `DR_CONTROL_BUCKET` and the AWS variables are needed).
fn control_bucket(settings: &Settings, clients: &AwsClients) -> Option<S3ControlBucket> {
    let name = match settings.get("DR_CONTROL_BUCKET").map(|b| BucketName::parse(&b)) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            eprintln!("DR_CONTROL_BUCKET is not a bucket name: {e}");
            return None;
        }
        None => {
            eprintln!("DR_CONTROL_BUCKET is not set: export it, or pass --env with a profile file that sets it");
            return None;
        }
    };
    Some(S3ControlBucket::new(clients.s3.clone(), name))
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(row[j + 1]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_names() {
        assert_eq!(edit_distance("stauts", "status"), 2);
        assert_eq!(edit_distance("failover", "failover"), 0);
        assert!(edit_distance("snapshot", "status") > 2);
    }

    #[test]
    fn completions_and_the_man_page_are_generated_from_the_definitions() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "dr", &mut buf);
            let text = String::from_utf8(buf).unwrap();
            assert!(text.contains("failover") && text.contains("reason") && text.contains("secondary"), "{shell}: {text}");
        }
        let mut buf = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut buf).unwrap();
        let man = String::from_utf8(buf).unwrap();
        assert!(man.contains(".TH dr") && man.contains("failover"), "{man}");
    }
}
