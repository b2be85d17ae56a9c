//! The break-glass CLI `dr` as an operator runs it (issue 17): the built binary against moto, with plain pipes
//! (scripts, no terminal) and on a pseudo-terminal (`script(1)`) for the typed confirmation; `--json` against
//! the function's own answer; the runbook end to end (drill, failover, approve, failback, cancel); `watch`,
//! `report`, profile files, `--function` through a Lambda Invoke endpoint, completions and the man page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::{Function, Invocation, bin_dir};

const ALARM: &str = "databricks-prod-workspace-unhealthy";

/// Who asks, as `dr` records it, with moto's credentials `testing`: moto's caller identity for credentials it did not
/// issue is `arn:aws:sts::123456789012:user/moto`, shortened for people.
const MOTO_IDENTITY: &str = "moto (IAM user)";

/// What one run of `dr` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

fn dr_bin() -> std::path::PathBuf {
    let bin = bin_dir().join("dr");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` (scripts/test does)", bin.display());
    bin
}

/// The environment an operator's shell would have: the function's variables, a login name (which `dr` no longer
/// takes for who asks), no terminal.
fn shell_env(env: &DrEnv) -> Vec<(String, String)> {
    let mut vars = env.function_env();
    vars.push(("USER".into(), "oncall".into()));
    vars.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    vars
}

/// Runs `dr args` with `vars` only, stdin from `input` (a pipe; empty means /dev/null).
fn run_with(vars: &[(String, String)], args: &[&str], input: &str) -> Run {
    let mut child = Command::new(dr_bin())
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .stdin(if input.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn dr(env: &DrEnv, args: &[&str]) -> Run {
    run_with(&shell_env(env), args, "")
}

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `dr args` on a pseudo-terminal (`script(1)` allocates it), typing `typed` and Enter. The terminal's
/// output (stdout and stderr together, as a person sees them) is in `stdout`.
fn dr_on_terminal(env: &DrEnv, args: &[&str], typed: &str) -> Run {
    let line = std::iter::once(dr_bin().display().to_string()).chain(args.iter().map(|a| a.to_string())).map(|a| quote(&a));
    let command = line.collect::<Vec<_>>().join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .env_clear()
        .envs(shell_env(env))
        .env("TERM", "xterm")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("script(1) (util-linux) runs the pseudo-terminal: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    // The terminal keeps what is typed until the program reads it, as a person typing ahead. A program that
    // asks nothing may be gone already (a broken pipe).
    std::thread::sleep(Duration::from_millis(300));
    let _ = stdin.write_all(format!("{typed}\n").as_bytes()).and_then(|()| stdin.flush());
    let status = child.wait().unwrap();
    drop(stdin);
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap()).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/health-alarm/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The alarm firing `minutes_later`: another state change, so another execution.
fn alarm_fired(minutes_later: i64) -> Value {
    let mut v = fixture("eventbridge-metric-alarm.json");
    let t = v["detail"]["state"]["timestamp"].as_str().unwrap().to_owned();
    let at = time::OffsetDateTime::parse(&t.replace("+0000", "Z"), &time::format_description::well_known::Rfc3339).unwrap()
        + time::Duration::minutes(minutes_later);
    v["detail"]["state"]["timestamp"] =
        json!(at.format(&time::format_description::well_known::Rfc3339).unwrap().replace('Z', "+0000"));
    v
}

async fn env_with(mode: &str) -> DrEnv {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    env.put("policy", &json!({"mode": mode, "failover_alarms": [ALARM], "cooldown_minutes": 0})).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_exactly_the_functions_answer() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let mut f = Function::start("manual-trigger", &env.function_env());

    let cli = dr(&env, &["--json", "status"]);
    assert_eq!(cli.code, Some(0), "{cli:#?}");
    assert_eq!(cli.json(), f.invoke(&json!({"command": "status"})).response(), "status");
    // A first check writes the DR matrix (and says it changed); the two compared below both find it unchanged.
    f.invoke(&json!({"command": "check"})).response();
    let cli = dr(&env, &["check", "--json"]);
    assert_eq!(cli.json(), f.invoke(&json!({"command": "check"})).response(), "check");

    // An execution: the CLI's command and the function's payload are the same execution (the same client token),
    // and the replays answer alike, byte for byte.
    let first = dr(
        &env,
        &["--json", "failover", "--to", "secondary", "--reason", "stack impaired", "--token", "j1", "--confirm", "secondary"],
    );
    assert_eq!(first.code, Some(0), "{first:#?}");
    assert_eq!(first.json()["outcome"], "completed");
    assert_eq!(first.json()["execution_id"], "failover-j1");
    let record = env.json("executions/failover-j1.json").await;
    assert_eq!(record["trigger"]["requested_by"], MOTO_IDENTITY, "the AWS identity when --requested-by is not given");
    let replay = dr(&env, &["--json", "failover", "--reason", "stack impaired", "--token", "j1", "--confirm", "secondary"]);
    let payload = json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "stack impaired",
                         "requested_by": MOTO_IDENTITY, "client_token": "j1"});
    let lambda = f.invoke(&payload).response();
    assert_eq!(lambda["outcome"], "already_completed");
    assert_eq!(replay.json(), lambda);

    // The JSON payload itself still works, as an argument or on stdin, and answers the same.
    let status = f.invoke(&json!({"command": "status"})).response();
    assert_eq!(dr(&env, &[r#"{"command":"status"}"#]).json(), status);
    assert_eq!(run_with(&shell_env(&env), &["-"], r#"{"command":"status"}"#).json(), status);
    let typo = dr(&env, &[r#"{"command":"stauts"}"#]);
    assert_eq!((typo.code, typo.json()["outcome"].as_str()), (Some(2), Some("rejected")));
    // A rejection by the engine is exit status 2 in either form.
    let wrong_way = dr(&env, &["--json", "failover", "--to", "primary", "--reason", "r", "--confirm", "primary"]);
    assert_eq!(wrong_way.code, Some(2), "{wrong_way:#?}");
    assert!(wrong_way.json()["message"].as_str().unwrap().contains("failback"), "{wrong_way:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_the_confirmation_is_a_required_flag() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let r = dr(&env, &["failover", "--reason", "us-east-1 outage", "--token", "nt1"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("no terminal is attached: pass --confirm secondary"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{r:#?}");
    let r = dr(&env, &["cancel", "alarm-0123456789abcdef0123"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--confirm alarm-0123456789abcdef0123"), "{}", r.stderr);
    assert_eq!(env.get("active").await["site"], "primary", "nothing changed");
    assert!(env.keys("executions/").await.is_empty(), "nothing was sent");

    // Who asks is recorded: when STS cannot say who the credentials are, the command is not sent, and the message
    // says what failed and that --requested-by does without it.
    let mut vars = shell_env(&env);
    vars.push(("AWS_ENDPOINT_URL_STS".into(), "http://127.0.0.1:9".into()));
    vars.push(("DR_AWS_INITIAL_BACKOFF_MS".into(), "10".into()));
    let r = run_with(&vars, &["drill", "--reason", "Q4"], "");
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(
        r.stderr.contains("cannot tell who is asking from your AWS identity (STS GetCallerIdentity failed: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was sent; pass --requested-by"), "{}", r.stderr);
    assert!(env.keys("executions/").await.is_empty(), "nothing was sent");
    let r = run_with(&vars, &["--json", "drill", "--reason", "Q4", "--requested-by", "dr-team@example.com"], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert!(r.json()["decision"]["reasons"].to_string().contains("requested by dr-team@example.com"), "{r:#?}");

    // A usage error is clap's, with exit status 2; --help is 0.
    let r = dr(&env, &["failover", "--token", "x"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--reason <REASON>"), "{}", r.stderr);
    let r = dr(&env, &["stauts"]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("'status'"), "{}", r.stderr);
    let help = dr(&env, &["failover", "--help"]);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("Examples:") && help.stdout.contains("--confirm secondary"), "{}", help.stdout);
}

/// The shell of an operator signed in as `session` in the role `role` (an assume-role profile, IAM Identity
/// Center): moto's temporary credentials for it, in place of the static ones.
async fn signed_in(env: &DrEnv, role: &str, session: &str) -> Vec<(String, String)> {
    let sts = aws_sdk_sts::Client::new(&tests::dr_env::sdk_config(&env.endpoint).await);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::123456789012:role/{role}"))
        .role_session_name(session)
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    let mut vars = shell_env(env);
    vars.retain(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET") && k != "USER");
    vars.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id().to_owned()));
    vars.push(("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key().to_owned()));
    vars.push(("AWS_SESSION_TOKEN".into(), c.session_token().to_owned()));
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_asks_is_the_aws_caller_identity_unless_said_otherwise() {
    let env = env_with("approval").await;
    let alice = signed_in(&env, "DrOperator", "alice@example.com").await;
    // No login name, no --requested-by: the command is not refused, the caller identity is recorded.
    let r =
        run_with(&alice, &["--json", "failover", "--reason", "us-east-1 outage", "--token", "id1", "--confirm", "secondary"], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    let record = env.json("executions/failover-id1.json").await;
    assert_eq!(record["trigger"]["requested_by"], "alice@example.com (DrOperator)", "{record:#}");
    let report = String::from_utf8(env.object("reports/failover-id1.md").await.unwrap()).unwrap();
    assert!(report.contains("alice@example.com (DrOperator)"), "{report}");

    // The override wins over the identity: --requested-by, and DR_REQUESTED_BY (a profile file's or the shell's).
    let r = run_with(
        &alice,
        &[
            "--json",
            "failback",
            "--reason",
            "recovered",
            "--token",
            "id2",
            "--confirm",
            "primary",
            "--requested-by",
            "bob@example.com",
        ],
        "",
    );
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert_eq!(env.json("executions/failback-id2.json").await["trigger"]["requested_by"], "bob@example.com");
    let mut team = alice.clone();
    team.push(("DR_REQUESTED_BY".into(), "dr-team@example.com".into()));
    let r = run_with(&team, &["--json", "drill", "--reason", "Q4"], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert!(r.json()["decision"]["reasons"].to_string().contains("requested by dr-team@example.com"), "{r:#?}");

    // An approval records its approver the same way.
    let mut alarm = Function::start("health-alarm", &env.function_env());
    let waiting = alarm.invoke(&alarm_fired(0)).response();
    assert_eq!(waiting["outcome"], "awaiting_approval", "{waiting:#}");
    let id = waiting["execution_id"].as_str().unwrap().to_owned();
    let carol = signed_in(&env, "AWSReservedSSO_DrOnCall_0123456789abcdef", "carol@example.com").await;
    let r = run_with(&carol, &["--json", "approve", &id], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert_eq!(env.json(&format!("executions/{id}.json")).await["approved_by"], "carol@example.com (DrOnCall)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_target_is_typed_to_confirm() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    // The wrong word: nothing is sent.
    let r = dr_on_terminal(&env, &["failover", "--to", "secondary", "--reason", "us-east-1 outage", "--token", "pty1"], "yes");
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stdout.contains("About to FAIL OVER"), "{}", r.stdout);
    assert!(r.stdout.contains("Type the target site (") && r.stdout.contains("secondary"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("Requested by {MOTO_IDENTITY} (--requested-by to say otherwise)")), "{}", r.stdout);
    assert!(r.stdout.contains("nothing was sent"), "{}", r.stdout);
    assert_eq!(env.get("active").await["site"], "primary");
    assert!(env.keys("executions/").await.is_empty());

    // The target's name: the failover runs, and the answer is for a person, in colour on the terminal.
    let r =
        dr_on_terminal(&env, &["failover", "--to", "secondary", "--reason", "us-east-1 outage", "--token", "pty1"], "secondary");
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert_eq!(env.get("active").await["execution_id"], "failover-pty1");
    assert!(r.stdout.contains("failover-pty1") && r.stdout.contains("completed"), "{}", r.stdout);
    assert!(r.stdout.contains("\x1b["), "colour on a terminal: {:?}", r.stdout);
    assert!(r.stdout.contains("dr report failover-pty1"), "{}", r.stdout);

    // cancel asks for the execution id.
    let r = dr_on_terminal(&env, &["cancel", "failover-pty1"], "failover-pty2");
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stdout.contains("Type the execution id"), "{}", r.stdout);

    // The same status on a pipe has no colour.
    let plain = dr(&env, &["status"]);
    assert!(!plain.stdout.contains('\x1b'), "{:?}", plain.stdout);
    let on_terminal = dr_on_terminal(&env, &["status"], "");
    assert!(on_terminal.stdout.contains("\x1b["), "{:?}", on_terminal.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_check_read_at_a_glance() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let r = dr(&env, &["status"]);
    assert_eq!(r.code, Some(0), "{r:#?}");
    for needle in [
        format!("DR {}", env.environment),
        "active site   PRIMARY since 2026-01-05T09:00:00Z".into(),
        "promoted by bootstrap".into(),
        "in flight     none".into(),
        "problems      none".into(),
        "replication   no open incident".into(),
        "RPO           current".into(),
        "drift         none: the active config matches sites/primary".into(),
        "policy        approval (version".into(),
    ] {
        assert!(r.stdout.contains(&needle), "{needle:?} missing from\n{}", r.stdout);
    }

    // Drift and a broken document show; check lists the findings, the critical first, each with its action.
    let mut active = env.get("active").await;
    active["workspace_url"] = json!("https://dbc-edited-by-hand.cloud.databricks.com");
    env.put("active", &active).await;
    env.put("sites/secondary", &json!({"workspace_url": "https://x.cloud.databricks.com"})).await;
    let r = dr(&env, &["status"]);
    assert!(
        r.stdout.contains("drift         DRIFT: the active config (site primary) differs from sites/primary"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("missing `region`"), "{}", r.stdout);
    let r = dr(&env, &["check"]);
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert!(r.stdout.starts_with("NOT READY"), "{}", r.stdout);
    let critical = r.stdout.find("CRITICAL  site-secondary").unwrap_or_else(|| panic!("{}", r.stdout));
    let warning = r.stdout.find("WARNING   active-drift").unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(critical < warning, "most severe first:\n{}", r.stdout);
    assert!(r.stdout.contains("-> fix sites/secondary"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_end_to_end() {
    // README, Runbook: drill, an alarm's failover cancelled, a failover by hand, failback, an alarm approved.
    let env = env_with("approval").await;
    let drill = dr(&env, &["drill", "--reason", "Q4 drill"]);
    assert_eq!(drill.code, Some(0), "{drill:#?}");
    assert!(drill.stdout.starts_with("completed drill drill-"), "{}", drill.stdout);
    assert!(drill.stdout.contains("clean-up      verified"), "{}", drill.stdout);

    let mut alarm = Function::start("health-alarm", &env.function_env());
    let waiting = alarm.invoke(&alarm_fired(0)).response();
    assert_eq!(waiting["outcome"], "awaiting_approval", "{waiting:#}");
    let first = waiting["execution_id"].as_str().unwrap().to_owned();
    let status = dr(&env, &["status"]);
    assert!(status.stdout.contains(&format!("in flight     {first} awaiting approval")), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("dr approve {first}")), "{}", status.stdout);
    let cancel = dr(&env, &["cancel", &first, "--reason", "false alarm", "--confirm", &first]);
    assert_eq!(cancel.code, Some(0), "{cancel:#?}");
    assert!(cancel.stdout.contains("state         cancelled"), "{}", cancel.stdout);

    let failover = dr(
        &env,
        &["failover", "--to", "secondary", "--reason", "us-east-1 outage", "--token", "inc-4711", "--confirm", "secondary"],
    );
    assert_eq!(failover.code, Some(0), "{failover:#?}");
    assert!(failover.stdout.starts_with("completed failover failover-inc-4711"), "{}", failover.stdout);
    assert!(dr(&env, &["status"]).stdout.contains("active site   SECONDARY"));
    let failback = dr(
        &env,
        &["failback", "--to", "primary", "--reason", "us-east-1 recovered", "--token", "inc-4711-back", "--confirm", "primary"],
    );
    assert_eq!(failback.code, Some(0), "{failback:#?}");
    assert_eq!(env.get("active").await["execution_id"], "failback-inc-4711-back");

    let waiting = alarm.invoke(&alarm_fired(30)).response();
    assert_eq!(waiting["outcome"], "awaiting_approval", "{waiting:#}");
    let second = waiting["execution_id"].as_str().unwrap().to_owned();
    let approve = dr(&env, &["approve", &second]);
    assert_eq!(approve.code, Some(0), "{approve:#?}");
    assert!(approve.stdout.starts_with(&format!("completed approve {second}")), "{}", approve.stdout);
    let after = dr(&env, &["status"]);
    assert!(after.stdout.contains("active site   SECONDARY"), "{}", after.stdout);
    assert!(after.stdout.contains(&format!("promoted by {second}")), "{}", after.stdout);
    assert!(after.stdout.contains("in flight     none"), "{}", after.stdout);
    let record = env.json(&format!("executions/{second}.json")).await;
    assert_eq!(record["approved_by"], MOTO_IDENTITY);

    // The reports: a verdict first, the steps as a Gantt chart beside the table.
    let report = dr(&env, &["report", &second]);
    assert_eq!(report.code, Some(0), "{report:#?}");
    assert!(report.stdout.starts_with("**Verdict: failover to secondary completed and verified in "), "{}", report.stdout);
    // The seeded data-plane document names Delta buckets that do not exist here: the RPO says so, never a guess.
    assert!(
        report.stdout.contains("(RTO); RPO: workload RPO unknown: sales.orders (the replica could not be read"),
        "{}",
        report.stdout
    );
    assert!(report.stdout.contains("```mermaid\ngantt\n") && report.stdout.contains("| promote |"), "{}", report.stdout);
    let cancelled = dr(&env, &["report", &first]);
    assert!(
        cancelled.stdout.starts_with("**Verdict: failover to secondary cancelled before any promotion"),
        "{}",
        cancelled.stdout
    );
    let json_report = dr(&env, &["--json", "report", "failover-inc-4711"]);
    assert_eq!(json_report.json()["execution_id"], "failover-inc-4711");
    let missing = dr(&env, &["report", "failover-nope"]);
    assert_eq!(missing.code, Some(2), "{missing:#?}");
    assert!(missing.stderr.contains("reports/failover-nope.md does not exist"), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_an_execution_step_by_step() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    // Started before the execution exists: it waits for the record, then prints each step until the end.
    let vars = shell_env(&env);
    let watcher =
        std::thread::spawn(move || run_with(&vars, &["watch", "failover-w1", "--interval", "0.1", "--timeout", "60"], ""));
    std::thread::sleep(Duration::from_millis(500));
    let mut f = Function::start("manual-trigger", &env.function_env());
    let r = f
        .invoke(&json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "r",
                        "requested_by": "oncall", "client_token": "w1"}))
        .response();
    assert_eq!(r["outcome"], "completed", "{r:#}");
    let watched = watcher.join().unwrap();
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    let out = &watched.stdout;
    assert!(out.contains("no record yet; waiting"), "{out}");
    let mut at = 0;
    for step in ["decide", "lock", "snapshot", "promote", "verify", "notify", "report"] {
        let found = out[at..].find(&format!("\n  {step} ")).unwrap_or_else(|| panic!("{step} missing or out of order:\n{out}"));
        at += found + 1;
    }
    assert!(out.contains("completed: failover to secondary verified (RTO "), "{out}");
    assert!(out.trim_end().ends_with("report: dr report failover-w1"), "{out}");

    // JSON lines for scripts; a mistyped id ends with 2 (after a short wait for the record to appear).
    let lines = dr(&env, &["--json", "watch", "failover-w1"]);
    let last: Value = serde_json::from_str(lines.stdout.lines().last().unwrap()).unwrap();
    assert_eq!((last["state"].as_str(), last["ended"].as_bool()), (Some("completed"), Some(true)), "{}", lines.stdout);
    assert!(lines.stdout.lines().filter(|l| l.contains("\"step\"")).count() >= 7, "{}", lines.stdout);
    let nope = dr(&env, &["watch", "failover-nope", "--timeout", "1"]);
    assert_eq!(nope.code, Some(2), "{nope:#?}");
    assert!(nope.stderr.contains("no execution failover-nope"), "{}", nope.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_file_per_environment_configures_it() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let dir = std::env::temp_dir().join(format!("dr-profiles-{}", env.environment));
    std::fs::create_dir_all(&dir).unwrap();
    let profile: String = env
        .function_env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let file = format!("# the {} stack\n{profile}DR_REQUESTED_BY=\"dr-team@example.com\"   # recorded\n", env.environment);
    std::fs::write(dir.join("staging.env"), file).unwrap();
    // The shell has credentials and another environment's leftovers; the profile wins for what it sets.
    let vars: Vec<(String, String)> = vec![
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("DR_ENVIRONMENT".into(), "prod".into()),
        ("DR_SSM_PREFIX".into(), "/dr/prod".into()),
        ("DR_PROFILE_DIR".into(), dir.display().to_string()),
        ("USER".into(), "oncall".into()),
    ];
    let r = run_with(&vars, &["--env", "staging", "--json", "status"], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    let mut f = Function::start("manual-trigger", &env.function_env());
    assert_eq!(r.json(), f.invoke(&json!({"command": "status"})).response());
    let by_path = run_with(&vars, &["status", "--env", &dir.join("staging.env").display().to_string()], "");
    assert!(by_path.stdout.contains(&format!("DR {}", env.environment)), "{by_path:#?}");
    let drill = run_with(&vars, &["--env", "staging", "--json", "drill", "--reason", "profile"], "");
    assert_eq!(drill.code, Some(0), "{drill:#?}");
    assert!(drill.json()["decision"]["reasons"].to_string().contains("requested by dr-team@example.com"), "{drill:#?}");

    std::fs::write(dir.join("typo.env"), "AWS_REGION=us-west-2\nDR_CONTROL_BUCKT=x\n").unwrap();
    let r = run_with(&vars, &["--env", "typo", "status"], "");
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("typo.env: line 2: unknown variable \"DR_CONTROL_BUCKT\""), "{}", r.stderr);
    let r = run_with(&vars, &["--env", "absent", "status"], "");
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("absent.env"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The requests a Lambda endpoint received: path, `X-Amz-Invocation-Type`, payload.
type Requests = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A stand-in for the Lambda Invoke API: each request is checked, then run by the real manual-trigger binary
/// through the Runtime API; a name other than `name` is not found, as Lambda answers.
fn lambda_endpoint(name: &'static str, function: Function) -> (String, Requests) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Requests::default();
    let log = seen.clone();
    let function = Arc::new(Mutex::new(function));
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            let invocation_type = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-Amz-Invocation-Type"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let payload: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push((request.url().to_owned(), invocation_type, payload.clone()));
            let header = |k: &str, v: &str| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
            if request.url() != format!("/2015-03-31/functions/{name}/invocations") {
                let missing = json!({"Type": "User", "message": format!("Function not found: {}", request.url())});
                let _ = request.respond(
                    tiny_http::Response::from_string(missing.to_string())
                        .with_status_code(404)
                        .with_header(header("x-amzn-ErrorType", "ResourceNotFoundException"))
                        .with_header(header("Content-Type", "application/json")),
                );
                continue;
            }
            let answer = function.lock().unwrap().invoke(&payload);
            let response = match answer {
                Invocation::Response(v) => tiny_http::Response::from_string(v.to_string()),
                Invocation::Error(e) => {
                    tiny_http::Response::from_string(e.to_string()).with_header(header("X-Amz-Function-Error", "Unhandled"))
                }
                Invocation::NoAnswer(why) => tiny_http::Response::from_string(why).with_status_code(500),
            };
            let _ = request.respond(response.with_header(header("X-Amz-Executed-Version", "$LATEST")));
        }
    });
    (endpoint, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_sends_the_command_through_the_deployed_manual_trigger() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let deployed = Function::start("manual-trigger", &env.function_env());
    let (endpoint, seen) = lambda_endpoint("stack-manual-trigger", deployed);
    // The operator's shell: credentials and a region, nothing of the stack's configuration.
    let vars: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-west-2".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_ENDPOINT_URL_LAMBDA".into(), endpoint),
        // Who asks: the operator's AWS identity, asked of STS (moto) before the command is sent.
        ("AWS_ENDPOINT_URL_STS".into(), env.endpoint.clone()),
    ];
    let r = run_with(&vars, &["--function", "stack-manual-trigger", "--json", "status"], "");
    assert_eq!(r.code, Some(0), "{r:#?}");
    let mut f = Function::start("manual-trigger", &env.function_env());
    assert_eq!(r.json(), f.invoke(&json!({"command": "status"})).response());
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            (
                "/2015-03-31/functions/stack-manual-trigger/invocations".into(),
                "RequestResponse".into(),
                json!({"command": "status"})
            )
        );
    }
    let r = run_with(
        &vars,
        &["--function", "stack-manual-trigger", "failover", "--reason", "via lambda", "--token", "fn1", "--confirm", "secondary"],
        "",
    );
    assert_eq!(r.code, Some(0), "{r:#?}");
    assert!(r.stdout.starts_with("completed failover failover-fn1"), "{}", r.stdout);
    assert_eq!(env.get("active").await["execution_id"], "failover-fn1");
    assert_eq!(
        seen.lock().unwrap()[1].2,
        json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "via lambda",
               "requested_by": MOTO_IDENTITY, "client_token": "fn1"})
    );
    // The JSON payload form goes through it too; a function that is not there is named, with Lambda's error code.
    let r = run_with(&vars, &["--function", "stack-manual-trigger", r#"{"command":"check"}"#], "");
    assert_eq!((r.code, r.json()["command"].as_str()), (Some(0), Some("check")), "{r:#?}");
    let r = run_with(&vars, &["--function", "other-function", "status"], "");
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("cannot invoke other-function (ResourceNotFoundException)"), "{}", r.stderr);

    // Against moto's Lambda (which runs functions only with Docker): an unknown function is named in the error.
    let vars: Vec<(String, String)> = vec![
        ("AWS_REGION".into(), "us-west-2".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_ENDPOINT_URL".into(), env.endpoint.clone()),
    ];
    let r = run_with(&vars, &["--function", "not-deployed", "status"], "");
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("cannot invoke not-deployed (ResourceNotFoundException)"), "{}", r.stderr);
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run_with(&[], &["completions", shell], "");
        assert_eq!(r.code, Some(0), "{shell}: {r:#?}");
        for word in ["failover", "failback", "approve", "watch", "report", "reason", "confirm"] {
            assert!(r.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let man = run_with(&[], &["man"], "");
    assert_eq!(man.code, Some(0));
    assert!(man.stdout.starts_with(".ie") || man.stdout.contains(".TH dr 1"), "{}", &man.stdout[..200.min(man.stdout.len())]);
    for word in ["failover", "\\-\\-json", "\\-\\-function", "Exit status"] {
        assert!(man.stdout.contains(word), "the man page lacks {word}");
    }
}
