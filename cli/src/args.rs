//! The command line, in clap's derive form: one definition for the parser, `--help`, the shell completions
//! and the man page. Each command builds the very JSON payload the `manual-trigger` function takes
//! ([`Command::payload`]), so that `dr` and the function answer alike by construction.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

/// `dr`: the DR failover's manual commands from an operator's shell.
#[derive(Debug, Parser)]
#[command(
    name = "dr",
    version,
    about = "Break-glass CLI of the Databricks DR failover: the manual-trigger commands from an operator's shell",
    long_about = "Break-glass CLI of the Databricks DR failover.\n\n\
        Runs the manual-trigger commands (status, check, snapshot, drill, failover, failback, approve, cancel, \
        unlock) with the operator's own credentials and the very code the function runs, without Lambda (for when \
        the stack itself is impaired); or, with --function, through the deployed manual-trigger function.\n\n\
        Configuration: the function's variables (AWS_REGION, DR_ENVIRONMENT, DR_SSM_PREFIX, DR_CONTROL_BUCKET, \
        DR_PAGING_TOPIC_ARN, optional DR_CHAT_TOPIC_ARN), from the environment or from a profile file per \
        environment (--env).\n\n\
        Scripts may still pass the JSON payload itself: dr '{\"command\":\"status\"}', or dr - to read it from \
        stdin; the answer is then the function's JSON.",
    after_help = "Examples:\n  \
        dr status\n  \
        dr --env prod check\n  \
        dr drill --reason \"Q4 drill\"\n  \
        dr failover --to secondary --reason \"us-east-1 outage\" --token inc-4711\n  \
        dr watch failover-inc-4711\n  \
        dr report failover-inc-4711\n  \
        dr --json status | jq .active_site\n  \
        dr '{\"command\":\"status\"}'\n\n\
        Exit status: 0 answered, 2 rejected (nothing changed), 1 failed.",
    override_usage = "dr [OPTIONS] <COMMAND>\n       dr [OPTIONS] '<JSON payload>' | -     (scripts: the function's payload and answer)"
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Print the exact answer the function gives (JSON), instead of the summary for people.
    #[arg(long, global = true)]
    pub json: bool,

    /// Send the command through the deployed manual-trigger function NAME (Lambda Invoke) instead of running it
    /// here. Needs lambda:InvokeFunction on it.
    #[arg(long, global = true, value_name = "NAME")]
    pub function: Option<String>,

    /// Read the configuration from the profile file of a DR environment: NAME.env in $DR_PROFILE_DIR (default
    /// ~/.config/dr), or a path. Its variables override the environment's.
    #[arg(long = "env", global = true, value_name = "NAME|PATH")]
    pub profile: Option<String>,

    /// Who asks, for the record, the report and the pages (default: $DR_REQUESTED_BY, else your AWS identity,
    /// shortened: `alice@example.com (DrOperator)` for an assumed role's session).
    #[arg(long, global = true, value_name = "WHO")]
    pub requested_by: Option<String>,

    /// When to colour the output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Log progress on stderr (the engine's log lines).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// A site, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Site {
    /// The primary site (the region that normally serves).
    Primary,
    /// The secondary site (this stack's region).
    Secondary,
}

impl Site {
    /// The site's name in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::Primary => "primary",
            Site::Secondary => "secondary",
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Where are we: the active site and since when, the execution in flight, problems, replication, RPO, drift.
    #[command(after_help = "Examples:\n  dr status\n  dr --env prod status\n  dr --json status\n\n\
        Exit status: 0 answered, 2 rejected (nothing changed), 1 failed.")]
    Status,

    /// Readiness: what would make a failover fail, as a table of findings by severity.
    #[command(after_help = "Examples:\n  dr check\n  dr --json check | jq '.findings[] | select(.severity == \"critical\")'\n\n\
        Critical findings page once, when they appear or change. Exit status: 0 answered, 2 rejected, 1 failed.")]
    Check,

    /// A metadata snapshot on demand, under snapshots/<timestamp>/ with its manifest.
    #[command(after_help = "Examples:\n  dr snapshot\n\nExit status: 0 answered, 2 rejected, 1 failed.")]
    Snapshot,

    /// The standby workspace's jobs, cluster policies, instance pools and SQL warehouses brought in line with the
    /// active one's: the plan (the default, read from the latest exports), or its apply to the standby.
    #[command(
        after_help = "Examples:\n  dr sync                       # the plan: per kind, create / update (fields) / prune / blocked, then not synced\n  \
        dr sync --apply               # shows the plan, then asks for the standby site's name\n  \
        dr sync --apply --prune --confirm secondary   # no terminal; also deletes what the active site lacks\n\n\
        The apply writes only to the standby, pauses every job it writes and tags it for activation, journals each change \
        before its call (run it again after an interruption: nothing is made twice) and stands down if a failover takes \
        the lock. Exit status: 0 answered, 2 rejected (nothing changed), 1 failed."
    )]
    Sync {
        /// Make the plan's changes in the standby (asks for the typed confirmation: the standby site's name).
        #[arg(long)]
        apply: bool,
        /// With --apply: also delete the standby's objects that the active site does not have.
        #[arg(long, requires = "apply")]
        prune: bool,
        /// The typed confirmation: the standby site's name (asked for, after the plan, when a terminal is attached).
        #[arg(long, value_name = "SITE", requires = "apply")]
        confirm: Option<String>,
    },

    /// A drill: the whole failover on a copy of the parameters (never the live active), then clean-up.
    #[command(
        after_help = "Examples:\n  dr drill --reason \"Q4 drill\"\n  dr drill --reason \"game day\" --requested-by dr-team@example.com\n\n\
        Exit status: 0 answered, 2 rejected (e.g. inside the policy's drill guard rails), 1 failed."
    )]
    Drill {
        /// What the drill rehearses (recorded, reported).
        #[arg(long)]
        reason: String,
    },

    /// Fail over: make the secondary site active (asks for the typed confirmation).
    #[command(after_help = "Examples:\n  \
        dr failover --to secondary --reason \"us-east-1 outage\" --token inc-4711\n  \
        dr failover --reason \"us-east-1 outage\" --token inc-4711 --confirm secondary   # no terminal\n\n\
        Keep the token: the same command with the same token returns the first result, or resumes an execution \
        that stopped.\nExit status: 0 answered, 2 rejected (nothing changed), 1 failed (the error says how to resume).")]
    Failover(Move),

    /// Fail back: make the primary site active again, once it is healthy (never automatic).
    #[command(after_help = "Examples:\n  \
        dr failback --to primary --reason \"us-east-1 recovered\" --token inc-4711-back\n\n\
        Exit status: 0 answered, 2 rejected (nothing changed), 1 failed (the error says how to resume).")]
    Failback(Move),

    /// Approve a failover prepared in approval mode (the page carries this command); again resumes one that stopped.
    #[command(after_help = "Examples:\n  dr approve alarm-0123456789abcdef0123\n\n\
        Exit status: 0 answered, 2 rejected, 1 failed.")]
    Approve {
        /// The execution waiting for approval (e.g. alarm-0123456789abcdef0123).
        #[arg(value_name = "EXECUTION")]
        execution: String,
    },

    /// End an execution that stopped or awaits approval, without promoting (asks for the typed confirmation).
    #[command(after_help = "Examples:\n  dr cancel alarm-0123456789abcdef0123 --reason \"false alarm\"\n  \
        dr cancel alarm-0123456789abcdef0123 --confirm alarm-0123456789abcdef0123   # no terminal\n\n\
        Exit status: 0 answered, 2 rejected, 1 failed.")]
    Cancel {
        /// The execution to end.
        #[arg(value_name = "EXECUTION")]
        execution: String,
        /// Why (recorded, reported).
        #[arg(long)]
        reason: Option<String>,
        /// The typed confirmation: the execution id again (asked for when a terminal is attached).
        #[arg(long, value_name = "EXECUTION")]
        confirm: Option<String>,
    },

    /// Break the lock of a stuck execution (status shows the holder); the execution stays resumable.
    #[command(
        after_help = "Examples:\n  dr unlock failover-inc-4711\n  dr unlock failover-inc-4711 --confirm failover-inc-4711   # no terminal\n\n\
        Exit status: 0 answered, 2 rejected, 1 failed."
    )]
    Unlock {
        /// The execution holding the lock.
        #[arg(value_name = "EXECUTION")]
        execution: String,
        /// The typed confirmation: the execution id again (asked for when a terminal is attached).
        #[arg(long, value_name = "EXECUTION")]
        confirm: Option<String>,
    },

    /// Follow an execution step by step until it ends (reads its record in the control bucket).
    #[command(after_help = "Examples:\n  dr watch failover-inc-4711\n  dr watch alarm-0123456789abcdef0123 --timeout 3600\n\n\
        Exit status: 0 the execution ended (or awaits approval with --until-approval), 1 it failed or the wait timed out, \
        2 no such execution appeared.")]
    Watch {
        /// The execution to follow.
        #[arg(value_name = "EXECUTION")]
        execution: String,
        /// Seconds between two reads of the record.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 900, value_name = "SECONDS")]
        timeout: u64,
        /// Stop when the execution awaits approval, instead of waiting for someone to approve it.
        #[arg(long)]
        until_approval: bool,
    },

    /// Print an execution's report (Markdown; --json for the JSON report).
    #[command(after_help = "Examples:\n  dr report failover-inc-4711\n  dr report failover-inc-4711 > failover-inc-4711.md\n  \
        dr --json report failover-inc-4711 | jq .rto_ms\n\n\
        Exit status: 0 printed, 2 no such report, 1 failed.")]
    Report {
        /// The execution.
        #[arg(value_name = "EXECUTION")]
        execution: String,
    },

    /// Print the shell completion script for SHELL (generated from these definitions).
    #[command(after_help = "Examples:\n  dr completions bash > /etc/bash_completion.d/dr\n  \
        dr completions zsh > \"${fpath[1]}/_dr\"\n  dr completions fish > ~/.config/fish/completions/dr.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff, generated from these definitions).
    #[command(after_help = "Examples:\n  dr man | man -l -\n  dr man > /usr/local/share/man/man1/dr.1")]
    Man,

    /// For scripts (compatible with earlier versions): a command's JSON payload, or `-` to read it from stdin;
    /// the answer is the function's JSON. Any other word is a mistyped command.
    #[command(external_subcommand)]
    Payload(Vec<String>),
}

/// `failover` and `failback` arguments.
#[derive(Debug, Args)]
pub struct Move {
    /// The site to make active (failover: secondary; failback: primary).
    #[arg(long, value_enum, value_name = "SITE")]
    pub to: Option<Site>,
    /// Why (recorded, reported, paged).
    #[arg(long)]
    pub reason: String,
    /// Idempotency token: the same token returns the first result or resumes (becomes the execution id's suffix).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The typed confirmation: the target site's name (asked for when a terminal is attached).
    #[arg(long, value_name = "SITE")]
    pub confirm: Option<String>,
}

/// What a command needs before it can be sent: a typed confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// What must be typed.
    pub expected: String,
    /// What the operator is asked to type ("the target site", "the execution id").
    pub what: &'static str,
    /// The sentence shown before the question.
    pub summary: String,
}

impl Command {
    /// The command's name in payloads, when it is a `manual-trigger` command.
    pub fn function_command(&self) -> Option<&'static str> {
        Some(match self {
            Command::Status => "status",
            Command::Check => "check",
            Command::Snapshot => "snapshot",
            Command::Drill { .. } => "drill",
            Command::Failover(_) => "failover",
            Command::Failback(_) => "failback",
            Command::Approve { .. } => "approve",
            Command::Cancel { .. } => "cancel",
            Command::Unlock { .. } => "unlock",
            Command::Sync { .. } => "sync",
            Command::Watch { .. } | Command::Report { .. } | Command::Completions { .. } | Command::Man | Command::Payload(_) => {
                return None;
            }
        })
    }

    /// Whether the command records who asked.
    pub fn needs_requester(&self) -> bool {
        matches!(
            self,
            Command::Drill { .. }
                | Command::Failover(_)
                | Command::Failback(_)
                | Command::Approve { .. }
                | Command::Cancel { .. }
                | Command::Unlock { .. }
                | Command::Sync { apply: true, .. }
        )
    }

    /// The typed confirmation this command needs and was not given (`None` when given or not needed).
    pub fn missing_confirmation(&self, environment: &str) -> Option<Confirmation> {
        match self {
            Command::Failover(m) | Command::Failback(m) if m.confirm.is_none() => {
                let target = self.target().unwrap_or(Site::Secondary);
                let verb = if matches!(self, Command::Failover(_)) { "FAIL OVER" } else { "FAIL BACK" };
                Some(Confirmation {
                    expected: target.as_str().to_owned(),
                    what: "the target site",
                    summary: format!("About to {verb} {environment}: make the {} site active ({}).", target.as_str(), m.reason),
                })
            }
            Command::Cancel { execution, confirm: None, .. } => Some(Confirmation {
                expected: execution.clone(),
                what: "the execution id",
                summary: format!("About to CANCEL execution {execution} in {environment}: it will never promote."),
            }),
            Command::Unlock { execution, confirm: None } => Some(Confirmation {
                expected: execution.clone(),
                what: "the execution id",
                summary: format!(
                    "About to BREAK THE LOCK of execution {execution} in {environment}: another execution may then start."
                ),
            }),
            _ => None,
        }
    }

    /// The site a move goes to (its default: failover to secondary, failback to primary).
    pub fn target(&self) -> Option<Site> {
        match self {
            Command::Failover(m) => Some(m.to.unwrap_or(Site::Secondary)),
            Command::Failback(m) => Some(m.to.unwrap_or(Site::Primary)),
            _ => None,
        }
    }

    /// The `manual-trigger` payload, exactly as a script would write it. `confirm` is the typed confirmation
    /// when the command needs one and `--confirm` was not given; `requested_by` who asks.
    pub fn payload(&self, requested_by: Option<&str>, confirm: Option<&str>) -> Option<Value> {
        let name = self.function_command()?;
        let mut p = Map::new();
        p.insert("command".into(), json!(name));
        let who = requested_by.unwrap_or_default();
        match self {
            Command::Drill { reason } => {
                p.insert("requested_by".into(), json!(who));
                p.insert("reason".into(), json!(reason));
            }
            Command::Failover(m) | Command::Failback(m) => {
                let target = self.target().unwrap_or(Site::Secondary).as_str();
                p.insert("target".into(), json!(target));
                p.insert("confirm".into(), json!(m.confirm.as_deref().or(confirm).unwrap_or_default()));
                p.insert("reason".into(), json!(m.reason));
                p.insert("requested_by".into(), json!(who));
                if let Some(t) = &m.token {
                    p.insert("client_token".into(), json!(t));
                }
            }
            Command::Approve { execution } => {
                p.insert("execution_id".into(), json!(execution));
                p.insert("requested_by".into(), json!(who));
            }
            Command::Cancel { execution, reason, confirm: flag } => {
                p.insert("execution_id".into(), json!(execution));
                p.insert("confirm".into(), json!(flag.as_deref().or(confirm).unwrap_or_default()));
                p.insert("requested_by".into(), json!(who));
                if let Some(r) = reason {
                    p.insert("reason".into(), json!(r));
                }
            }
            Command::Sync { apply: true, prune, confirm: flag } => {
                p.insert("apply".into(), json!(true));
                p.insert("prune".into(), json!(prune));
                p.insert("confirm".into(), json!(flag.as_deref().or(confirm).unwrap_or_default()));
                p.insert("requested_by".into(), json!(who));
            }
            Command::Unlock { execution, confirm: flag } => {
                p.insert("execution_id".into(), json!(execution));
                p.insert("confirm".into(), json!(flag.as_deref().or(confirm).unwrap_or_default()));
                if requested_by.is_some() {
                    p.insert("requested_by".into(), json!(who));
                }
            }
            _ => {}
        }
        Some(Value::Object(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("dr").chain(args.iter().copied())).unwrap()
    }

    fn payload(args: &[&str]) -> Value {
        parse(args).command.unwrap().payload(Some("me@example.com"), Some("typed")).unwrap()
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_command_builds_the_functions_payload() {
        assert_eq!(payload(&["status"]), json!({"command": "status"}));
        assert_eq!(payload(&["check"]), json!({"command": "check"}));
        assert_eq!(payload(&["snapshot"]), json!({"command": "snapshot"}));
        assert_eq!(payload(&["sync"]), json!({"command": "sync"}));
        assert_eq!(
            payload(&["sync", "--apply", "--prune", "--confirm", "secondary"]),
            json!({"command": "sync", "apply": true, "prune": true, "confirm": "secondary", "requested_by": "me@example.com"})
        );
        assert_eq!(
            payload(&["drill", "--reason", "Q4"]),
            json!({"command": "drill", "requested_by": "me@example.com", "reason": "Q4"})
        );
        assert_eq!(
            payload(&["failover", "--to", "secondary", "--reason", "outage", "--token", "inc-1", "--confirm", "secondary"]),
            json!({"command": "failover", "target": "secondary", "confirm": "secondary", "reason": "outage",
                   "requested_by": "me@example.com", "client_token": "inc-1"})
        );
        // Without --confirm, the typed confirmation goes in; without --to, the direction's only target.
        assert_eq!(
            payload(&["failback", "--reason", "recovered"]),
            json!({"command": "failback", "target": "primary", "confirm": "typed", "reason": "recovered",
                   "requested_by": "me@example.com"})
        );
        assert_eq!(
            payload(&["approve", "alarm-1"]),
            json!({"command": "approve", "execution_id": "alarm-1", "requested_by": "me@example.com"})
        );
        assert_eq!(
            payload(&["cancel", "alarm-1", "--reason", "false alarm", "--confirm", "alarm-1"]),
            json!({"command": "cancel", "execution_id": "alarm-1", "confirm": "alarm-1", "requested_by": "me@example.com",
                   "reason": "false alarm"})
        );
        assert_eq!(
            payload(&["unlock", "failover-1"]),
            json!({"command": "unlock", "execution_id": "failover-1", "confirm": "typed", "requested_by": "me@example.com"})
        );
        // The engine judges the direction: `failover --to primary` is sent as typed and rejected there.
        assert_eq!(payload(&["failover", "--to", "primary", "--reason", "r", "--confirm", "primary"])["target"], "primary");
    }

    #[test]
    fn every_payload_parses_as_the_function_would() {
        for args in [
            &["status"][..],
            &["drill", "--reason", "Q4"],
            &["failover", "--reason", "r", "--token", "t-1"],
            &["failback", "--reason", "r"],
            &["approve", "alarm-1"],
            &["cancel", "alarm-1"],
            &["unlock", "alarm-1"],
        ] {
            let cli = parse(args);
            let command = cli.command.unwrap();
            let confirm = command.missing_confirmation("prod").map(|c| c.expected);
            let p = command.payload(Some("me"), confirm.as_deref()).unwrap();
            assert!(engine::command::parse(&p).is_ok(), "{args:?}: {p} -> {:?}", engine::command::parse(&p));
        }
    }

    #[test]
    fn confirmations_are_asked_only_when_not_given() {
        let c = parse(&["failover", "--reason", "r"]).command.unwrap().missing_confirmation("prod").unwrap();
        assert_eq!(c.expected, "secondary");
        assert!(c.summary.contains("FAIL OVER prod"), "{}", c.summary);
        assert!(parse(&["failover", "--reason", "r", "--confirm", "x"]).command.unwrap().missing_confirmation("prod").is_none());
        assert_eq!(parse(&["cancel", "a-1"]).command.unwrap().missing_confirmation("prod").unwrap().expected, "a-1");
        assert!(parse(&["status"]).command.unwrap().missing_confirmation("prod").is_none());
    }

    fn raw(cli: Cli) -> Vec<String> {
        match cli.command {
            Some(Command::Payload(words)) => words,
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    #[test]
    fn the_json_payload_form_still_parses() {
        assert_eq!(raw(parse(&[r#"{"command":"status"}"#])), [r#"{"command":"status"}"#]);
        assert_eq!(raw(parse(&["-"])), ["-"]);
        let cli = parse(&["--function", "stack-manual-trigger", r#"{"command":"check"}"#]);
        assert_eq!(cli.global.function.as_deref(), Some("stack-manual-trigger"));
        assert_eq!(raw(cli), [r#"{"command":"check"}"#]);
        // Global options before or after the command.
        assert!(parse(&["status", "--json"]).global.json);
        let cli = parse(&["--json", "--color", "never", "report", "x"]);
        assert!(cli.global.json && matches!(cli.command, Some(Command::Report { .. })), "{cli:?}");
    }
}
