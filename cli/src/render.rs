//! The answers for people: a few aligned lines per command, the important word first, colour only when
//! asked for (a terminal, `NO_COLOR` unset, or `--color always`). Everything here reads the function's answer
//! (typed: `dr_failover::response`), so a local run and `--function` print alike.

use domain::notification::Severity;
use dr_failover::response::{
    ActivationView, CheckAnswer, CommandResponse, DeltaRpo, ExecutionAnswer, ExportView, Fallible, IncidentSummary, MatrixAnswer,
    MatrixOnCheck, PolicyView, Protection, SnapshotAnswer, StatusAnswer, WorkspaceActivation, WorkspaceDrift, WorkspacesStatus,
};
use dr_ports::finding::Finding;
use serde::Deserialize as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// Whether to colour, and the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours on.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Bold red: what is wrong.
    pub fn bad(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    /// Yellow: look soon.
    pub fn warn(self, text: &str) -> String {
        self.paint("33", text)
    }
    /// Green: fine.
    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    /// Dim: detail.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    /// A severity word, coloured by severity.
    pub fn severity(self, severity: &str) -> String {
        let word = format!("{:<8}", severity.to_uppercase());
        match severity {
            "critical" => self.bad(&word),
            "warning" => self.warn(&word),
            _ => self.dim(&word),
        }
    }
    /// An outcome word, coloured by what it means for on-call.
    pub fn outcome(self, outcome: &str) -> String {
        match outcome {
            "completed" | "already_completed" | "noop" => self.good(outcome),
            "rejected" | "superseded" => self.bad(outcome),
            _ => self.warn(outcome),
        }
    }
}

/// One site's running or latest export in a line: its state, how far it got, the calls, when it started.
fn export_line(site: &str, e: &ExportView) -> String {
    let mut parts = vec![format!(
        "{site} {} since {}: {}, {} complete, {} calls",
        e.state, e.started_at, e.in_, e.kinds.complete, e.requests
    )];
    for (key, names) in [("partial", &e.kinds.partial), ("skipped", &e.kinds.skipped)] {
        if !names.is_empty() {
            parts.push(format!("{key}: {}", names.join(", ")));
        }
    }
    if !e.kinds.pending.is_empty() {
        parts.push(format!("pending: {}", e.kinds.pending.len()));
    }
    parts.join("; ")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `12 ms`, `1.2 s`, `3 min 4 s`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// An RFC 3339 time stamp to the second, in UTC (`2026-01-05T09:00:00Z`); as given when it is not one.
pub fn short_time(at: &str) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    domain::primitives::parse_rfc3339(at)
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| at.to_owned())
}

/// `5 min ago`, `2 h 3 min ago`, `3 d ago` (empty when `at` is not a time stamp).
pub fn ago(at: &str, now: OffsetDateTime) -> String {
    let Some(t) = domain::primitives::parse_rfc3339(at) else { return String::new() };
    let secs = (now - t).whole_seconds();
    if secs < 0 {
        return "in the future".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{m} min ago"),
        3600..86_400 => format!("{h} h {} min ago", m % 60),
        _ => format!("{d} d {} h ago", h % 24),
    }
}

/// A label and its lines, aligned.
struct Block {
    out: String,
}

impl Block {
    fn new() -> Self {
        Block { out: String::new() }
    }
    fn line(&mut self, label: &str, value: impl AsRef<str>) {
        let mut lines = value.as_ref().lines();
        let first = lines.next().unwrap_or_default();
        let _ = writeln!(self.out, "  {label:<13} {first}");
        for l in lines {
            let _ = writeln!(self.out, "  {:<13} {l}", "");
        }
    }
}

/// `status` as a short summary.
pub fn status(r: &CommandResponse<StatusAnswer>, s: Style, now: OffsetDateTime) -> String {
    let v = &r.details;
    let mut b = Block::new();
    let _ = writeln!(b.out, "{} {}", s.bold(&format!("DR {}", v.environment)), s.dim(&format!("({})", v.ssm_prefix)));
    active_lines(&mut b, v, s, now);
    in_flight_line(&mut b, v, s);
    let (drift, other): (Vec<&String>, Vec<&String>) = v.problems.iter().partition(|p| p.contains("differs from sites/"));
    if other.is_empty() {
        b.line("problems", s.good("none"));
    } else {
        b.line("problems", other.iter().map(|p| s.bad(&format!("- {p}"))).collect::<Vec<_>>().join("\n"));
    }
    replication_lines(&mut b, v.replication_incidents.as_ref(), s);
    if let Some(act) = &v.activation {
        activation_line(&mut b, act, s);
    }
    if let Some(DeltaRpo::Assessed { generated_at, workload: Some(workload), .. }) = &v.delta_rpo {
        let line = format!("{} (assessed {})", workload.summary, generated_at.as_deref().unwrap_or_default());
        let known_small = workload.state == "known";
        b.line("Delta RPO", if known_small { line } else { s.warn(&line) });
    }
    workspaces_lines(&mut b, v.workspaces.as_ref(), s);
    let site = v.active.read().map(|a| a.site.as_str());
    let site_known = site.is_some_and(|st| v.sites.get(st).and_then(Fallible::read).is_some());
    if let Some(d) = drift.first() {
        b.line("drift", s.warn(&format!("DRIFT: {d}")));
    } else if site_known {
        b.line("drift", s.good(&format!("none: the active config matches sites/{}", site.unwrap_or_default())));
    } else {
        b.line("drift", s.dim("unknown (the active or the site document is not readable)"));
    }
    policy_line(&mut b, &v.policy, s);
    executions_lines(&mut b, v, s);
    b.out
}

/// The active site, since when and by whom.
fn active_lines(b: &mut Block, v: &StatusAnswer, s: Style, now: OffsetDateTime) {
    match &v.active {
        Fallible::Read(active) => {
            let promoted = active.promoted_at.clone().unwrap_or_default();
            let since = if promoted.is_empty() {
                "since an unknown time".to_owned()
            } else {
                format!("since {} ({})", short_time(&promoted), ago(&promoted, now))
            };
            let by = active.execution_id.as_deref().filter(|by| !by.is_empty()).unwrap_or("?");
            b.line(
                "active site",
                format!(
                    "{} {since}\n{}",
                    s.good(&s.bold(&active.site.as_str().to_uppercase())),
                    s.dim(&format!("promoted by {by}, SSM version {}", active.version))
                ),
            );
        }
        Fallible::Failed { error } => b.line("active site", s.bad(&format!("UNKNOWN: {error}"))),
    }
}

/// The execution holding the failover lock, and what to do about it.
fn in_flight_line(b: &mut Block, v: &StatusAnswer, s: Style) {
    match &v.in_flight {
        Fallible::Read(None) => b.line("in flight", "none"),
        Fallible::Failed { error } => b.line("in flight", s.warn(&format!("unknown (the lock could not be read: {error})"))),
        Fallible::Read(Some(lock)) => {
            let id = &lock.execution_id;
            let state = word(&lock.state);
            let mut line = format!(
                "{} {} since {}, lease until {}",
                s.warn(id),
                state.replace('_', " "),
                short_time(&lock.acquired_at),
                short_time(&lock.lease_expires_at)
            );
            let hint = match state.as_str() {
                "awaiting_approval" => format!("dr approve {id}   or   dr cancel {id}"),
                "stopped" => format!("re-run its command with the same --token to resume, or dr cancel {id}"),
                _ => format!("dr watch {id}"),
            };
            let _ = write!(line, "\n{}", s.dim(&hint));
            b.line("in flight", line);
        }
    }
}

/// The replication incidents and what they mean for the RPO (`replication::summaries`'s list, or its error;
/// `None`: not in the answer).
fn replication_lines(b: &mut Block, incidents: Option<&Fallible<Vec<IncidentSummary>>>, s: Style) {
    let (replication, rpo) = match incidents {
        Some(Fallible::Read(list)) if list.is_empty() => (
            s.good("no open incident"),
            s.good("current: no open replication incident (the replicas trail by S3 replication's normal delay)"),
        ),
        Some(Fallible::Read(list)) => {
            let lines: Vec<String> = list.iter().map(|i| s.warn(&incident_line(i))).collect();
            let oldest = list
                .iter()
                .map(|i| i.first_seen.as_deref().unwrap_or(&i.opened_at))
                .min()
                .unwrap_or("an unknown time")
                .to_owned();
            (
                format!("{} open incident(s)\n{}", list.len(), lines.join("\n")),
                s.warn(&format!("AT RISK: objects written since {} may be missing on the replica", short_time(&oldest))),
            )
        }
        other => {
            let why = other.and_then(Fallible::error).unwrap_or_default();
            (s.warn(&format!("unknown ({why})")), s.warn("unknown: the replication incidents could not be read"))
        }
    };
    b.line("replication", replication);
    b.line("RPO", rpo);
}

/// One open incident in a line.
fn incident_line(i: &IncidentSummary) -> String {
    format!(
        "- {} ({}, {}): {} object(s) failed from {}, since {}",
        i.id,
        word(&i.highest_severity),
        word(&i.highest_category),
        i.total_failed,
        i.source_bucket,
        short_time(&i.first_seen.clone().unwrap_or_default().if_empty(&i.opened_at))
    )
}

/// The workload activation per workspace (`failover::activation::view`).
fn activation_line(b: &mut Block, act: &ActivationView, s: Style) {
    let ActivationView::Read { job_tag, workspaces, out_of_step, .. } = act else {
        // Without a connector there is nothing per workspace: the line says only that (an empty tag).
        b.line("activation", " ()");
        return;
    };
    let per: Vec<String> = ["primary", "secondary"]
        .iter()
        .filter_map(|site| {
            workspaces.get(*site).map(|w| match w {
                WorkspaceActivation::Failed { error, .. } => format!("{site}: unknown ({error})"),
                WorkspaceActivation::Read { summary, .. } => format!("{site}: {summary}"),
            })
        })
        .collect();
    let out: Vec<&str> = out_of_step.iter().map(|f| f.what.as_str()).collect();
    let line = format!("{} ({job_tag})", per.join("; "));
    b.line("activation", if out.is_empty() { line } else { s.bad(&format!("{line}; OUT OF STEP: {}", out.join("; "))) });
}

/// The workspaces' drift and each site's export (`workspace::status_view`).
fn workspaces_lines(b: &mut Block, ws: Option<&WorkspacesStatus>, s: Style) {
    let (drift, exports) = match ws {
        None => return,
        // The latest exports could not be read: the drift is unknown, and there is no export to show.
        Some(WorkspacesStatus::Failed { .. }) => return b.line("workspaces", s.warn("unknown ()")),
        Some(WorkspacesStatus::Read { drift, exports, .. }) => (drift, exports),
    };
    match drift {
        WorkspaceDrift::Sentence(line) if line.contains("missing") || line.contains("extra") || line.contains("differ") => {
            b.line("workspaces", s.warn(line));
        }
        WorkspaceDrift::Sentence(line) => b.line("workspaces", line),
        WorkspaceDrift::Failed { error } => b.line("workspaces", s.warn(&format!("unknown ({error})"))),
    }
    for (site, e) in exports {
        let line = export_line(site, e);
        let fine = e.state == "finished" && e.kinds.partial.is_empty();
        b.line("export", if fine { line } else { s.warn(&line) });
    }
}

/// The policy in force.
fn policy_line(b: &mut Block, policy: &PolicyView, s: Style) {
    if let Some(e) = &policy.error {
        b.line("policy", s.bad(&format!("invalid: {e}")));
        return;
    }
    let source = if policy.source.starts_with("default") {
        "default: no policy parameter".to_owned()
    } else {
        format!("version {}", policy.version.map(|v| v.to_string()).unwrap_or_default())
    };
    let (mode, cooldown, alarms) = match &policy.policy {
        Some(p) => (word(&p.mode), p.cooldown_minutes.to_string(), p.failover_alarms.join(", ")),
        None => (String::new(), String::new(), String::new()),
    };
    b.line(
        "policy",
        format!(
            "{} ({source}); cooldown {cooldown} min; failover alarms: {}",
            s.bold(&mode),
            if alarms.is_empty() { "none" } else { &alarms }
        ),
    );
}

/// The resumable executions, the pages owed, and the newest executions.
fn executions_lines(b: &mut Block, v: &StatusAnswer, s: Style) {
    let resumable: Vec<String> = v
        .resumable_executions
        .iter()
        .flatten()
        .map(|r| {
            let how = r.how.clone().unwrap_or_default();
            format!("- {} ({}): {how}", s.warn(&r.execution_id), word(&r.state).replace('_', " "))
        })
        .collect();
    if !resumable.is_empty() {
        b.line("resumable", resumable.join("\n"));
    }
    let owed: Vec<String> =
        v.pages_owed.iter().flatten().map(|o| format!("- {}: {}", o.execution_id, o.pages_owed.join(", "))).collect();
    if !owed.is_empty() {
        b.line("pages owed", s.bad(&format!("{}\n(dr check sends them)", owed.join("\n"))));
    }
    match &v.recent_executions {
        Fallible::Read(list) if !list.is_empty() => {
            let lines: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "{:<28} {:<8} {:<17} {}",
                        r.execution_id,
                        r.kind.as_str(),
                        word(&r.state),
                        s.dim(&short_time(&r.updated_at))
                    )
                })
                .collect();
            b.line("recent", lines.join("\n"));
        }
        Fallible::Read(_) => b.line("recent", "no execution yet"),
        Fallible::Failed { error } => b.line("recent", s.warn(&format!("unknown ({error})"))),
    }
}

/// A unit variant's word in the answer (`awaiting_approval`, `notify-only`): its serde name.
fn word(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).map(|v| text(&v)).unwrap_or_default()
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() { other.to_owned() } else { self }
    }
}

/// `check` as a table of findings, most severe first.
pub fn check(r: &CommandResponse<CheckAnswer>, s: Style) -> String {
    let v = &r.details;
    let mut out = String::new();
    let c = v.counts;
    let headline = if v.ready { s.good("READY: no critical finding") } else { s.bad("NOT READY: critical findings") };
    let _ = writeln!(out, "{headline}   {}", s.dim(&format!("critical {}, warning {}, info {}", c.critical, c.warning, c.info)));
    let dr_matrix = match &v.dr_matrix {
        Some(MatrixOnCheck::Published(m)) => Some(m.as_ref()),
        _ => None,
    };
    let mut findings: Vec<&Finding> = v.findings.iter().collect();
    let rank = |f: &Finding| match f.severity {
        Severity::Critical => 0,
        Severity::Warning => 1,
        _ => 2,
    };
    findings.sort_by_key(|f| rank(f));
    if findings.is_empty() {
        let _ = writeln!(out, "no findings");
        matrix(&mut out, dr_matrix, s);
        return out;
    }
    let width = findings.iter().map(|f| f.id.len()).max().unwrap_or(2).clamp(2, 40);
    let _ = writeln!(out, "\n{:<8}  {:<width$}  FINDING / ACTION", "SEVERITY", "ID");
    for f in findings {
        let _ = writeln!(out, "{}  {:<width$}  {}", s.severity(f.severity.as_str()), f.id, f.what);
        if !f.action.is_empty() && f.action != "none" {
            let _ = writeln!(out, "{:<8}  {:<width$}  {}", "", "", s.dim(&format!("-> {}", f.action)));
        }
    }
    if !v.paged.is_empty() {
        let _ = writeln!(out, "\npaged: {}", v.paged.join(", "));
    }
    matrix(&mut out, dr_matrix, s);
    out
}

/// The live DR matrix of a `check`: its summary, the drift line, and the rows at risk with their evidence.
fn matrix(out: &mut String, m: Option<&MatrixAnswer>, s: Style) {
    let Some(m) = m else { return };
    let _ = writeln!(out, "\n{}   {}", m.summary, s.dim(&format!("({})", m.matrix_key)));
    if let Some(d) = &m.drift {
        let _ = writeln!(out, "workspaces: {d}");
    }
    for row in m.rows.iter().filter(|r| r.status == Protection::AtRisk) {
        let _ = writeln!(out, "  {} {}: {}", s.warn("AT RISK"), row.component, row.evidence);
    }
}

/// An execution's steps in the order they run (`dr_failover::record::Step`).
const STEPS: [&str; 10] = ["decide", "lock", "fence", "snapshot", "promote", "verify", "activate", "notify", "report", "release"];
/// The index of `verify` in [`STEPS`]: the RTO runs from `decide` through it.
const RTO_LAST: usize = 5;

/// An execution's answer (drill, failover, failback, approve, cancel, unlock).
pub fn execution(r: &CommandResponse<ExecutionAnswer>, s: Style) -> String {
    let mut out = String::new();
    let (a, e) = (&r.details, &r.details.execution);
    let outcome = r.outcome.as_str();
    let id = &e.execution_id;
    let _ = writeln!(out, "{} {} {}", s.outcome(outcome), s.bold(&a.command), id);
    if let Some(m) = &r.message {
        let _ = writeln!(out, "  {m}");
    }
    let mut b = Block::new();
    let state = e.state.as_ref().map(word).unwrap_or_default();
    if e.state.is_some() {
        b.line("state", state.replace('_', " "));
    }
    let active_site = r.active_site.map(|site| site.as_str()).unwrap_or_default();
    if a.command == "drill" {
        // A drill promotes on its copy of the parameters; the live active site is not touched.
        b.line("active site", format!("{active_site} on the drill's copy; the live active site is not touched"));
    } else {
        b.line("active site", active_site.to_owned().if_empty("unknown"));
    }
    if !e.timings_ms.is_empty() {
        timing_lines(&mut b, &e.timings_ms);
    }
    if let Some(decision) = &e.decision {
        b.line("decision", format!("{}\n{}", word(&decision.action), s.dim(&decision.reasons.join("\n"))));
        for o in &decision.overrides {
            b.line("override", s.warn(o));
        }
    }
    if let Some(Some(cleanup)) = &a.cleanup {
        let problems = serde_json::to_string(&cleanup.problems).unwrap_or_default();
        b.line("clean-up", if cleanup.verified { s.good("verified") } else { s.bad(&format!("NOT verified: {problems}")) });
    }
    if let Some(l) = &e.in_flight {
        b.line("in flight", s.warn(&format!("{} ({})", l.execution_id, word(&l.state))));
    }
    if !e.pages_owed.is_empty() {
        let owed = serde_json::to_string(&e.pages_owed).unwrap_or_default();
        b.line("pages owed", s.bad(&format!("{owed} (the next delivery or dr check sends them)")));
    }
    if let Some(key) = e.report_key.as_ref().filter(|_| !id.is_empty()) {
        b.line("report", format!("dr report {id}   {}", s.dim(&format!("({key})"))));
    }
    let next = match (outcome, state.as_str()) {
        ("awaiting_approval", _) => format!("dr approve {id}   or   dr cancel {id}"),
        ("in_progress", _) => format!("dr watch {id}"),
        (_, "superseded") | ("superseded", _) => "dr status".to_owned(),
        _ => String::new(),
    };
    if !next.is_empty() {
        b.line("next", s.bold(&next));
    }
    out.push_str(&b.out);
    out
}

/// Each step's duration in the order the steps run, and the RTO when the promotion was verified.
fn timing_lines(b: &mut Block, timings: &BTreeMap<String, u64>) {
    let rank = |step: &str| STEPS.iter().position(|s| *s == step).unwrap_or(STEPS.len());
    let mut steps: Vec<(&String, u64)> = timings.iter().map(|(step, ms)| (step, *ms)).collect();
    steps.sort_by_key(|(step, _)| rank(step));
    let line: Vec<String> = steps.iter().map(|(step, ms)| format!("{step} {}", duration_ms(*ms))).collect();
    b.line("steps", line.join(", "));
    // The report's RTO: decide to verified promotion.
    let rto: u64 = steps.iter().filter(|(step, _)| rank(step) <= RTO_LAST).map(|(_, ms)| ms).sum();
    if steps.iter().any(|(step, _)| step.as_str() == "verify") {
        b.line("RTO", format!("{} (decide to verified promotion)", duration_ms(rto)));
    }
}

/// A snapshot's answer.
pub fn snapshot(r: &CommandResponse<SnapshotAnswer>, s: Style) -> String {
    format!(
        "{} snapshot: {}\n  manifest      {}\n",
        s.outcome(r.outcome.as_str()),
        r.message.as_deref().unwrap_or_default(),
        r.details.snapshot_manifest_key.as_deref().unwrap_or_default()
    )
}

/// A rejection: what is wrong, what is expected; nothing changed.
pub fn rejected(v: &Value, s: Style) -> String {
    format!("{}: {}\n  nothing changed\n", s.bad("rejected"), text(&v["message"]))
}

/// An error answer (`errorType`, `errorMessage`).
pub fn error(v: &Value, s: Style) -> String {
    format!("{} ({}): {}\n", s.bad("failed"), text(&v["errorType"]), text(&v["errorMessage"]))
}

/// The answer to `command`, for people: read back into the engine's typed answer where the command has one
/// (`status`, `check`, `snapshot`, the executions).
pub fn answer(command: &str, v: &Value, s: Style, now: OffsetDateTime) -> String {
    if v["outcome"] == "rejected" {
        return rejected(v, s);
    }
    match command {
        "status" => typed(v, |r| status(&r, s, now)),
        "check" => typed(v, |r| check(&r, s)),
        "snapshot" => typed(v, |r| snapshot(&r, s)),
        _ => typed(v, |r| execution(&r, s)),
    }
}

/// `v` read as the typed answer `T` and rendered; an answer that does not read (a function of another version)
/// is shown as it came, after why.
fn typed<T: serde::de::DeserializeOwned>(v: &Value, render: impl FnOnce(CommandResponse<T>) -> String) -> String {
    match CommandResponse::<T>::deserialize(v) {
        Ok(r) => render(r),
        Err(e) => {
            format!("the answer could not be read ({e}); as it came:\n{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Style = Style { color: false };

    fn now() -> OffsetDateTime {
        domain::primitives::parse_rfc3339("2026-01-05T11:03:00Z").unwrap()
    }

    /// An answer as `dr` reads it from the function.
    fn typed_as<T: serde::de::DeserializeOwned>(v: &Value) -> CommandResponse<T> {
        CommandResponse::deserialize(v).unwrap()
    }

    fn status_answer() -> Value {
        json!({
            "outcome": "noop", "active_site": "secondary", "command": "status", "environment": "prod", "ssm_prefix": "/dr/prod",
            "active": {"site": "secondary", "execution_id": "failover-inc-4711", "promoted_at": "2026-01-05T09:00:00Z",
                       "version": 3, "config": {}},
            "sites": {"primary": {"version": 1, "config": {}}, "secondary": {"version": 1, "config": {}}},
            "policy": {"source": "parameter", "version": 2, "policy": {"mode": "approval", "failover_alarms": ["a"], "cooldown_minutes": 60}},
            "data_plane": {"error": "SSM parameter /dr/prod/data-plane does not exist"},
            "problems": [], "in_flight": null, "recent_executions": [], "resumable_executions": [], "pages_owed": [],
            "replication_incidents": [],
        })
    }

    #[test]
    fn status_says_where_we_are_at_a_glance() {
        let out = status(&typed_as(&status_answer()), PLAIN, now());
        for needle in [
            "DR prod",
            "active site   SECONDARY since 2026-01-05T09:00:00Z (2 h 3 min ago)",
            "promoted by failover-inc-4711, SSM version 3",
            "in flight     none",
            "problems      none",
            "RPO           current",
            "drift         none",
            "policy        approval (version 2)",
        ] {
            assert!(out.contains(needle), "{needle:?} missing from\n{out}");
        }
        assert!(!out.contains('\x1b'), "no colour unless asked");
    }

    #[test]
    fn status_shows_each_sites_export_and_how_far_it_got() {
        let mut v = status_answer();
        v["workspaces"] = json!({"drift": "the sites are in step", "latest_exports": {}, "exports": {
            "primary": {"state": "running", "started_at": "2026-01-05T11:00:00Z", "updated_at": "2026-01-05T11:02:00Z",
                        "snapshot_folder": "snapshots/x", "invocations": 1, "in": "12 of 21 kinds", "requests": 340,
                        "kinds": {"complete": 11, "partial": ["tables"], "skipped": [], "pending": ["grants", "permissions"]}},
            "secondary": {"state": "finished", "started_at": "2026-01-05T11:00:00Z", "updated_at": "2026-01-05T11:02:00Z",
                          "snapshot_folder": "snapshots/x", "invocations": 1, "in": "21 of 21 kinds", "requests": 900,
                          "kinds": {"complete": 21, "partial": [], "skipped": [], "pending": []}}}});
        let out = status(&typed_as(&v), PLAIN, now());
        assert!(
            out.contains(
                "primary running since 2026-01-05T11:00:00Z: 12 of 21 kinds, 11 complete, 340 calls; partial: tables; pending: 2"
            ),
            "{out}"
        );
        assert!(out.contains("secondary finished since 2026-01-05T11:00:00Z: 21 of 21 kinds, 21 complete, 900 calls\n"), "{out}");
    }

    #[test]
    fn status_shows_what_is_wrong() {
        let mut v = status_answer();
        v["problems"] = json!([
            "/dr/prod/sites/primary: missing `region`",
            "the active config (site secondary) differs from sites/secondary: ..."
        ]);
        v["in_flight"] = json!({"execution_id": "alarm-1", "state": "awaiting_approval", "attempt_id": "a", "acquired_at": "t0", "lease_expires_at": "t1", "holder": "h"});
        v["replication_incidents"] = json!([{"id": "b__r", "highest_severity": "critical", "highest_category": "replication_broken",
            "total_failed": 400, "source_bucket": "b", "first_seen": "2026-01-05T08:00:00Z", "rule_id": "r", "state": "open",
            "actionable_failed": 400, "lag_outstanding": false, "opened_at": "2026-01-05T08:01:00Z", "last_seen": null,
            "document": "replication/incidents/b__r.json", "pages_owed": 0}]);
        let out = status(&typed_as(&v), PLAIN, now());
        for needle in [
            "- /dr/prod/sites/primary: missing `region`",
            "DRIFT: the active config",
            "alarm-1 awaiting approval",
            "dr approve alarm-1",
            "1 open incident(s)",
            "AT RISK: objects written since 2026-01-05T08:00:00Z",
        ] {
            assert!(out.contains(needle), "{needle:?} missing from\n{out}");
        }
        let coloured = status(&typed_as(&v), Style { color: true }, now());
        assert!(coloured.contains("\x1b[1;31m"), "{coloured}");
    }

    #[test]
    fn check_lists_findings_most_severe_first_with_their_action() {
        let v = json!({"outcome": "noop", "command": "check", "ready": false, "message": "NOT ready: critical findings",
            "counts": {"critical": 1, "warning": 1, "info": 0},
            "findings": [
                {"id": "policy", "severity": "warning", "what": "w", "action": "fix the policy"},
                {"id": "site-secondary", "severity": "critical", "what": "missing `region`", "action": "fix sites/secondary"}
            ], "paged": []});
        let out = check(&typed_as(&v), PLAIN);
        assert!(out.starts_with("NOT READY"), "{out}");
        let critical = out.find("CRITICAL  site-secondary").unwrap();
        let warning = out.find("WARNING   policy").unwrap();
        assert!(critical < warning, "{out}");
        assert!(out.contains("-> fix sites/secondary"), "{out}");
    }

    #[test]
    fn check_shows_the_dr_matrix_summary_the_drift_and_the_rows_at_risk() {
        let v = json!({"outcome": "noop", "command": "check", "ready": true, "counts": {"critical": 0, "warning": 0, "info": 0}, "findings": [],
            "dr_matrix": {"summary": "DR matrix: 27 protected, 1 at risk, 3 not applicable, 7 unknown", "matrix_key": "checks/dr-matrix.md", "changed": true, "chat_sent": false,
                "drift": "secondary is missing 2 jobs that primary has",
                "rows": [{"component": "Job Scheduler", "status": "at_risk", "evidence": "secondary missing 2 jobs"},
                         {"component": "Repos", "status": "protected", "evidence": "3 repos"}]}});
        let out = check(&typed_as(&v), PLAIN);
        assert!(out.contains("DR matrix: 27 protected, 1 at risk"), "{out}");
        assert!(out.contains("workspaces: secondary is missing 2 jobs that primary has"), "{out}");
        assert!(out.contains("AT RISK Job Scheduler: secondary missing 2 jobs"), "{out}");
        assert!(!out.contains("Repos"), "only the rows at risk: {out}");
    }

    #[test]
    fn executions_say_what_to_do_next() {
        let v = json!({"outcome": "awaiting_approval", "command": "failover", "execution_id": "alarm-1", "state": "awaiting_approval",
            "active_site": "primary", "message": "prepared", "timings_ms": {"decide": 3, "snapshot": 1200}, "report_key": null});
        let out = execution(&typed_as(&v), PLAIN);
        assert!(out.starts_with("awaiting_approval failover alarm-1"), "{out}");
        assert!(out.contains("decide 3 ms, snapshot 1.2 s"), "{out}");
        assert!(out.contains("\n  prepared\n"), "{out}");
        assert!(out.contains("next          dr approve alarm-1   or   dr cancel alarm-1"), "{out}");
        let done = json!({"outcome": "completed", "command": "failover", "execution_id": "failover-1", "state": "completed",
            "timings_ms": {"verify": 6, "report": 9, "decide": 4, "promote": 5, "snapshot": 52, "lock": 4, "fence": 1}});
        let out = execution(&typed_as(&done), PLAIN);
        assert!(
            out.contains("decide 4 ms, lock 4 ms, fence 1 ms, snapshot 52 ms, promote 5 ms, verify 6 ms, report 9 ms"),
            "{out}"
        );
        assert!(out.contains("RTO           72 ms"), "{out}");
        assert!(!out.contains("next"), "{out}");
    }

    /// The engine's golden answers (`shared/engine/tests/golden`) read back into the typed answers.
    fn golden(name: &str) -> Value {
        let path = format!("{}/../shared/engine/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_engines_answers_read_back_typed() {
        for name in ["status", "status_awaiting_approval", "status_after_failover"] {
            let out = answer("status", &golden(name), PLAIN, now());
            assert!(out.starts_with("DR prod (/dr/p)"), "{name}: {out}");
        }
        let out = answer("status", &golden("status_awaiting_approval"), PLAIN, now());
        assert!(out.contains("alarm-1 awaiting approval since 2026-11-25T12:00:00Z"), "{out}");
        assert!(out.contains("- alarm-1 (awaiting approval): approve it, or cancel it"), "{out}");
        assert!(out.contains("policy        approval (version 1); cooldown 60 min; failover alarms: wh"), "{out}");
        for name in ["failover_completed", "failover_in_progress", "approve", "cancel", "unlock_nothing", "drill"] {
            let v = golden(name);
            let command = v["command"].as_str().unwrap().to_owned();
            let out = answer(&command, &v, PLAIN, now());
            assert!(out.starts_with(&format!("{} {command} ", v["outcome"].as_str().unwrap())), "{name}: {out}");
        }
        let out = answer("drill", &golden("drill"), PLAIN, now());
        assert!(out.contains("clean-up      verified"), "{out}");
        let out = answer("failover", &golden("failover_in_progress"), PLAIN, now());
        assert!(
            out.contains("in flight     alarm-1 (awaiting_approval)") && out.contains("next          dr watch failover-t4"),
            "{out}"
        );
    }

    #[test]
    fn the_engines_check_reads_back_typed() {
        let out = answer("check", &golden("check"), PLAIN, now());
        assert!(out.starts_with("READY: no critical finding   critical 0, warning 3, info 1"), "{out}");
        assert!(out.contains("INFO      policy                      no policy parameter: approval mode applies"), "{out}");
        assert!(out.contains("DR matrix:"), "{out}");
        let out = answer("snapshot", &golden("snapshot"), PLAIN, now());
        assert_eq!(
            out,
            "completed snapshot: snapshot of 4 files written\n  manifest      snapshots/2026-11-25T12-00-00Z/manifest.json\n"
        );
    }

    #[test]
    fn an_answer_that_does_not_read_is_shown_as_it_came() {
        let out = answer("failover", &json!({"outcome": "completed", "surprise": 1}), PLAIN, now());
        assert!(out.starts_with("the answer could not be read") && out.contains("\"surprise\": 1"), "{out}");
    }

    #[test]
    fn durations_and_ages_read_like_speech() {
        assert_eq!(duration_ms(70), "70 ms");
        assert_eq!(duration_ms(1234), "1.2 s");
        assert_eq!(duration_ms(125_000), "2 min 5 s");
        assert_eq!(ago("2026-01-05T11:02:00Z", now()), "1 min ago");
        assert_eq!(ago("not a time", now()), "");
    }
}
