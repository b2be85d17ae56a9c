//! The `manual-trigger` commands (CONTRACT.md, "`manual-trigger` payload and response"), parsed strictly.
//!
//! Parsing happens in two steps so that every rejection names the field: first the `command` tag, then the
//! command's own fields with unknown fields denied (a typo such as `confrim` must not be ignored at 3 a.m.).

use domain::site::SiteName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The command names, in the order the contract lists them.
pub const COMMANDS: [&str; 10] =
    ["status", "check", "snapshot", "drill", "failover", "failback", "approve", "unlock", "cancel", "sync"];

/// A validated manual command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read the active site, both sites, the policy.
    Status,
    /// Readiness evaluation.
    Check,
    /// A metadata snapshot on demand.
    Snapshot,
    /// A failover rehearsal on an isolated copy of the parameters.
    Drill(Drill),
    /// Move the active site (`failover` toward secondary, `failback` toward primary).
    Move(Move),
    /// Continue an execution waiting for approval.
    Approve(Approve),
    /// Break the lock of a stuck execution.
    Unlock(Unlock),
    /// End an execution that stopped or awaits approval, before it promotes.
    Cancel(Cancel),
    /// The plan that brings the standby workspace in line with the active one, and its apply.
    Sync(Sync),
}

impl Command {
    /// The command's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Check => "check",
            Command::Snapshot => "snapshot",
            Command::Drill(_) => "drill",
            Command::Move(m) if m.target == SiteName::Primary => "failback",
            Command::Move(_) => "failover",
            Command::Approve(_) => "approve",
            Command::Unlock(_) => "unlock",
            Command::Cancel(_) => "cancel",
            Command::Sync(_) => "sync",
        }
    }
}

/// `drill` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// Who runs it.
    pub requested_by: String,
    /// What the drill rehearses, for the record and the report (e.g. "quarterly DR test").
    pub reason: String,
}

/// `failover` / `failback` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// The site to make active.
    pub target: SiteName,
    /// Why (goes into the record, the report and the page).
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Must equal `target`: a typed confirmation.
    pub confirm: String,
    /// Idempotency token: the same token returns the first result.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// `approve` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The execution waiting for approval.
    pub execution_id: String,
    /// Who approves.
    pub requested_by: String,
}

/// `unlock` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    /// The stuck execution.
    pub execution_id: String,
    /// Must equal `execution_id`.
    pub confirm: String,
    /// Who breaks the lock (recorded).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// `cancel` fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// The execution to end.
    pub execution_id: String,
    /// Must equal `execution_id` (typed confirmation).
    pub confirm: String,
    /// Who cancels (recorded, paged).
    pub requested_by: String,
    /// Why, for the record and the report.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `sync` fields: none for the plan; `apply` (with the typed confirmation and who asks) to make it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Make the plan's changes in the standby (otherwise only the plan is answered).
    #[serde(default)]
    pub apply: bool,
    /// Also delete the standby's objects the active site does not have (only with `apply`).
    #[serde(default)]
    pub prune: bool,
    /// With `apply`: the standby site's name, typed (checked against `{prefix}/active` when the command runs).
    #[serde(default)]
    pub confirm: Option<String>,
    /// With `apply`: who asks (recorded in the sync record).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// Why a payload was rejected: names what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{0}")]
pub struct Rejection(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

/// Parses and validates a payload.
pub fn parse(payload: &Value) -> Result<Command, Rejection> {
    let Value::Object(map) = payload else {
        return Err(Rejection(format!(
            "the payload is {}; expected a JSON object such as {{\"command\":\"status\"}}",
            kind_of(payload)
        )));
    };
    let name = command_name(map)?;
    let mut fields = map.clone();
    fields.remove("command");
    let fields = Value::Object(fields);
    let cmd = match name {
        "status" => fields_of::<NoFields>(name, fields).map(|_| Command::Status)?,
        "check" => fields_of::<NoFields>(name, fields).map(|_| Command::Check)?,
        "snapshot" => fields_of::<NoFields>(name, fields).map(|_| Command::Snapshot)?,
        "drill" => {
            let d: Drill = fields_of(name, fields)?;
            non_empty(name, "requested_by", &d.requested_by)?;
            non_empty(name, "reason", &d.reason)?;
            Command::Drill(d)
        }
        "failover" | "failback" => parse_move(name, fields)?,
        "sync" => parse_sync(name, fields)?,
        "approve" => {
            let a: Approve = fields_of(name, fields)?;
            token_like(name, "execution_id", &a.execution_id)?;
            non_empty(name, "requested_by", &a.requested_by)?;
            Command::Approve(a)
        }
        "unlock" => {
            let u: Unlock = fields_of(name, fields)?;
            token_like(name, "execution_id", &u.execution_id)?;
            if u.confirm != u.execution_id {
                return Err(Rejection(format!(
                    "unlock: field `confirm` is {:?}; expected it to equal `execution_id` ({:?}) as a typed confirmation",
                    u.confirm, u.execution_id
                )));
            }
            Command::Unlock(u)
        }
        "cancel" => {
            let c: Cancel = fields_of(name, fields)?;
            token_like(name, "execution_id", &c.execution_id)?;
            non_empty(name, "requested_by", &c.requested_by)?;
            if c.confirm != c.execution_id {
                return Err(Rejection(format!(
                    "cancel: field `confirm` is {:?}; expected it to equal `execution_id` ({:?}) as a typed confirmation",
                    c.confirm, c.execution_id
                )));
            }
            Command::Cancel(c)
        }
        other => {
            return Err(Rejection(format!("unknown command {other:?}; expected one of: {}", COMMANDS.join(", "))));
        }
    };
    Ok(cmd)
}

/// The payload's `command` field.
fn command_name(map: &serde_json::Map<String, Value>) -> Result<&str, Rejection> {
    match map.get("command") {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => {
            Err(Rejection(format!("field `command` is {}; expected a string, one of: {}", kind_of(other), COMMANDS.join(", "))))
        }
        None => Err(Rejection(format!("missing field `command`; expected one of: {}", COMMANDS.join(", ")))),
    }
}

/// A `failover` or `failback`: toward the site its name says, confirmed by the target typed again.
fn parse_move(name: &str, fields: Value) -> Result<Command, Rejection> {
    let m: Move = fields_of(name, fields)?;
    let expected = if name == "failover" { SiteName::Secondary } else { SiteName::Primary };
    if m.target != expected {
        return Err(Rejection(format!(
            "{name}: field `target` is {:?}; a {name} moves toward {:?} (use {} to move toward {:?})",
            m.target.as_str(),
            expected.as_str(),
            if name == "failover" { "failback" } else { "failover" },
            m.target.as_str()
        )));
    }
    if m.confirm != m.target.as_str() {
        return Err(Rejection(format!(
            "{name}: field `confirm` is {:?}; expected it to equal `target` ({:?}) as a typed confirmation",
            m.confirm,
            m.target.as_str()
        )));
    }
    non_empty(name, "reason", &m.reason)?;
    non_empty(name, "requested_by", &m.requested_by)?;
    if let Some(t) = &m.client_token {
        token_like(name, "client_token", t)?;
    }
    Ok(Command::Move(m))
}

/// A `sync`: a plan, or (confirmed by the standby's name) an apply.
fn parse_sync(name: &str, fields: Value) -> Result<Command, Rejection> {
    let y: Sync = fields_of(name, fields)?;
    if y.prune && !y.apply {
        return Err(Rejection("sync: field `prune` needs `apply`: true (a plan alone changes nothing)".into()));
    }
    if y.apply {
        match &y.confirm {
            Some(c) if SiteName::parse(c).is_some() => {}
            other => {
                return Err(Rejection(format!(
                    "sync: field `confirm` is {other:?}; with `apply` it must name the standby site (\"primary\" or \"secondary\") as a typed confirmation"
                )));
            }
        }
        non_empty(name, "requested_by", y.requested_by.as_deref().unwrap_or_default())?;
    }
    Ok(Command::Sync(y))
}

fn fields_of<T: DeserializeOwned>(command: &str, fields: Value) -> Result<T, Rejection> {
    serde_path_to_error::deserialize::<_, T>(fields).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.replace("struct NoFields", "no fields");
        if path.is_empty() || path == "." {
            Rejection(format!("{command}: {inner}"))
        } else {
            Rejection(format!("{command}: field `{path}`: {inner}"))
        }
    })
}

fn non_empty(command: &str, field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection(format!("{command}: field `{field}` is empty; expected a non-empty string")));
    }
    Ok(())
}

/// Ids and tokens go into S3 keys and SSM labels: keep them to a safe alphabet.
fn token_like(command: &str, field: &str, value: &str) -> Result<(), Rejection> {
    let ok = (1..=64).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(Rejection(format!(
            "{command}: field `{field}` is {value:?}; expected 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"
        )));
    }
    Ok(())
}

fn kind_of(v: &Value) -> &'static str {
    domain::describe_json(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rejected(v: Value) -> String {
        parse(&v).unwrap_err().0
    }

    #[test]
    fn sync_plans_without_fields_and_applies_only_with_a_confirmation_and_a_requester() {
        assert_eq!(parse(&json!({"command":"sync"})).unwrap(), Command::Sync(Sync::default()));
        let ok = parse(&json!({"command":"sync","apply":true,"prune":true,"confirm":"secondary","requested_by":"me"})).unwrap();
        assert!(matches!(ok, Command::Sync(Sync { apply: true, prune: true, .. })));
        for (bad, says) in [
            (json!({"command":"sync","prune":true}), "needs `apply`"),
            (json!({"command":"sync","apply":true,"requested_by":"me"}), "`confirm`"),
            (json!({"command":"sync","apply":true,"confirm":"standby","requested_by":"me"}), "`confirm`"),
            (json!({"command":"sync","apply":true,"confirm":"secondary"}), "`requested_by`"),
            (json!({"command":"sync","aply":true}), "aply"),
        ] {
            let e = rejected(bad.clone());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse(&json!({"command":"status"})).unwrap(), Command::Status);
        assert_eq!(parse(&json!({"command":"check"})).unwrap(), Command::Check);
        assert_eq!(parse(&json!({"command":"snapshot"})).unwrap(), Command::Snapshot);
        let m = parse(&json!({"command":"failover","target":"secondary","reason":"r","requested_by":"me","confirm":"secondary","client_token":"t-1"})).unwrap();
        assert_eq!(m.name(), "failover");
        let m = parse(&json!({"command":"failback","target":"primary","reason":"r","requested_by":"me","confirm":"primary"}))
            .unwrap();
        assert_eq!(m.name(), "failback");
        assert!(matches!(
            parse(&json!({"command":"approve","execution_id":"ex-1","requested_by":"me"})).unwrap(),
            Command::Approve(_)
        ));
        assert!(matches!(
            parse(&json!({"command":"unlock","execution_id":"ex-1","confirm":"ex-1"})).unwrap(),
            Command::Unlock(_)
        ));
        assert!(matches!(parse(&json!({"command":"drill","requested_by":"me","reason":"q4"})).unwrap(), Command::Drill(_)));
    }

    #[test]
    fn rejections_name_the_problem_and_the_expectation() {
        let cases = [
            (json!([1, 2]), vec!["an array", "expected a JSON object"]),
            (json!("status"), vec!["a string", "expected a JSON object"]),
            (json!({}), vec!["missing field `command`", "status"]),
            (json!({"command": 7}), vec!["`command` is a number", "one of"]),
            (json!({"command": "stauts"}), vec!["unknown command \"stauts\"", "status, check"]),
            (json!({"command": "status", "verbose": true}), vec!["unknown field `verbose`"]),
            (
                json!({"command":"failover","target":"secondary","reason":"r","requested_by":"me"}),
                vec!["missing field `confirm`"],
            ),
            (
                json!({"command":"failover","target":"secondary","reason":"r","requested_by":"me","confrim":"secondary"}),
                vec!["unknown field `confrim`", "confirm"],
            ),
            (
                json!({"command":"failover","target":"secondary","reason":"r","requested_by":"me","confirm":"yes"}),
                vec!["`confirm` is \"yes\"", "equal `target`"],
            ),
            (
                json!({"command":"failover","target":2,"reason":"r","requested_by":"me","confirm":"2"}),
                vec!["field `target`", "invalid type"],
            ),
            (
                json!({"command":"failover","target":"tertiary","reason":"r","requested_by":"me","confirm":"x"}),
                vec!["field `target`", "primary", "secondary"],
            ),
            (
                json!({"command":"failover","target":"primary","reason":"r","requested_by":"me","confirm":"primary"}),
                vec!["failback"],
            ),
            (
                json!({"command":"failover","target":"secondary","reason":" ","requested_by":"me","confirm":"secondary"}),
                vec!["`reason` is empty"],
            ),
            (
                json!({"command":"failover","target":"secondary","reason":"r","requested_by":"me","confirm":"secondary","client_token":"a b"}),
                vec!["`client_token`", "1-64"],
            ),
            (json!({"command":"unlock","execution_id":"ex-1","confirm":"ex-2"}), vec!["equal `execution_id`"]),
            (
                json!({"command":"cancel","execution_id":"ex-1","confirm":"ex-2","requested_by":"me"}),
                vec!["cancel", "equal `execution_id`"],
            ),
            (json!({"command":"cancel","execution_id":"ex-1","confirm":"ex-1"}), vec!["cancel", "requested_by"]),
            (json!({"command":"approve","requested_by":"me"}), vec!["missing field `execution_id`"]),
        ];
        for (payload, needles) in cases {
            let msg = rejected(payload.clone());
            for n in needles {
                assert!(msg.contains(n), "{payload}: {msg:?} lacks {n:?}");
            }
        }
    }
}
