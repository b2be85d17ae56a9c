//! The execution report: `reports/{id}.json` and `reports/{id}.md`.
//!
//! The Markdown report is read by people, often on a phone: it opens with a one-line verdict (what happened,
//! the measured RTO, the RPO estimate), then the facts, then the timeline as a Mermaid Gantt chart (GitHub,
//! GitLab and most Markdown viewers draw it) beside the table of steps.

use crate::record::{ExecutionRecord, ExecutionState, Step, StepOutcome};
use crate::rules::decision::ExecutionKind;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Keys of the two report files.
pub fn report_keys(execution_id: &str) -> (String, String) {
    domain::layout::report(execution_id)
}

/// The measured recovery time: the sum of the steps from decision to verified promotion.
pub fn rto_ms(record: &ExecutionRecord) -> u64 {
    record.steps.iter().filter(|s| s.step <= Step::Verify && s.outcome != StepOutcome::Failed).map(|s| s.duration_ms).sum()
}

/// The JSON report.
pub fn json_report(record: &ExecutionRecord, rpo: &Value) -> Value {
    json!({
        "execution_id": record.execution_id,
        "environment": record.environment,
        "kind": record.kind,
        "state": record.state,
        "initiator": record.initiator,
        "reason": record.reason,
        "trigger": record.trigger,
        "decision": record.decision,
        "timeline": record.steps,
        "timings_ms": record.timings(),
        "rto_ms": rto_ms(record),
        "rpo_estimate": rpo,
        "workspaces": record.workspaces,
        "activation": record.activation,
        "activation_by_hand": record.activation.as_ref().map(crate::rules::activation::Activation::by_hand),
        "config_before": record.config_before,
        "config_after": record.config_after,
        "promoted_version": record.promoted_version,
        "snapshot_manifest_key": record.snapshot_manifest_key,
        "messages": record.messages,
        "notes": record.notes,
        "created_at": record.created_at,
    })
}

/// `12 ms`, `1.2 s`.
fn duration(ms: u64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

/// The RPO estimate (see `failover::rpo_estimate`) in a few words: the Delta tables' workload RPO first, when
/// assessed, then what the open replication incidents say.
pub fn rpo_summary(rpo: &Value) -> String {
    let incidents = incidents_summary(rpo);
    match rpo["delta"]["summary"].as_str() {
        Some(delta) => format!("{delta}; replication {incidents}"),
        None => incidents,
    }
}

fn incidents_summary(rpo: &Value) -> String {
    match rpo["estimate"].as_str() {
        Some("current") => "current (no open replication incident)".into(),
        Some("at_risk") => format!(
            "at risk ({} open replication incident(s), objects unreplicated since {})",
            rpo["open_incidents"],
            rpo["oldest_unreplicated_since"].as_str().unwrap_or("an unknown time")
        ),
        _ => match rpo["why"].as_str() {
            Some(why) => format!("unknown ({why})"),
            None => "unknown".into(),
        },
    }
}

/// The verdict: one line that says what the execution came to, with the RTO and the RPO when it promoted.
pub fn verdict(record: &ExecutionRecord, rpo: &Value) -> String {
    let target = record.target;
    let what = match record.kind {
        ExecutionKind::Drill => format!("drill of a failover to {target} (on a copy of the parameters)"),
        kind => format!("{kind} to {target}"),
    };
    let last_reason = || record.decision.reasons.last().cloned().unwrap_or_else(|| "no reason recorded".into());
    let failed_step = record.steps.iter().rev().find(|s| s.outcome == StepOutcome::Failed).map(|s| s.step.as_str());
    let error = record.error.clone().unwrap_or_else(|| "no error recorded".into());
    let id = &record.execution_id;
    let body = match record.state {
        ExecutionState::Completed => {
            format!("{what} completed and verified in {} (RTO); RPO: {}", duration(rto_ms(record)), rpo_summary(rpo))
        }
        ExecutionState::AwaitingApproval => {
            format!("{what} awaits approval: prepared, nothing promoted (approve or cancel {id})")
        }
        ExecutionState::Running if record.error.is_some() => format!(
            "{what} stopped at {}: {error}; it resumes when its trigger is delivered again",
            failed_step.unwrap_or("a step")
        ),
        ExecutionState::Running => format!("{what} in progress"),
        ExecutionState::Notified => format!("{what} not executed, on-call paged: {}", last_reason()),
        ExecutionState::Refused => format!("{what} refused, nothing promoted: {}", last_reason()),
        ExecutionState::Noop => format!("{what}: nothing to do, {target} is already active"),
        ExecutionState::Failed => {
            format!("{what} FAILED at {}: {error}; act by hand", failed_step.unwrap_or("a step"))
        }
        ExecutionState::Superseded => format!("{what} stood down, nothing written: {}", last_reason()),
        ExecutionState::Joined => format!("{what} joined another execution's incident; this one did nothing"),
        ExecutionState::Cancelled => format!("{what} cancelled before any promotion: {}", last_reason()),
    };
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ").replace('*', "\\*");
    format!("**Verdict: {}.**", one_line.trim_end_matches('.'))
}

/// The steps as a Mermaid Gantt chart, one section per attempt, on a millisecond axis. Steps whose start
/// cannot be read are left out (the table beside it keeps them).
pub fn gantt(record: &ExecutionRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "```mermaid\ngantt\n    title {} {} steps\n    dateFormat x\n    axisFormat %H:%M:%S.%L",
        record.kind, record.execution_id
    );
    let mut attempts: Vec<&str> = Vec::new();
    let mut current: Option<&str> = None;
    for (i, s) in record.steps.iter().enumerate() {
        let Some(start) = domain::primitives::parse_rfc3339(&s.started_at) else { continue };
        let start_ms = start.unix_timestamp_nanos() / 1_000_000;
        // A step of 0 ms still shows as a sliver.
        let end_ms = start_ms + i128::from(s.duration_ms.max(1));
        if current != Some(s.attempt_id.as_str()) {
            let n = match attempts.iter().position(|a| *a == s.attempt_id) {
                Some(n) => n,
                None => {
                    attempts.push(&s.attempt_id);
                    attempts.len() - 1
                }
            };
            let _ = writeln!(out, "    section attempt {}", n + 1);
            current = Some(&s.attempt_id);
        }
        let (name, tag) = match s.outcome {
            StepOutcome::Done => (s.step.as_str().to_owned(), "done, "),
            StepOutcome::AlreadyDone => (format!("{} - already done", s.step.as_str()), ""),
            StepOutcome::Failed => (format!("{} - FAILED", s.step.as_str()), "crit, "),
        };
        let _ = writeln!(out, "    {name} :{tag}s{i}, {start_ms}, {end_ms}");
    }
    out.push_str("```\n");
    out
}

/// The Markdown report, for humans.
pub fn markdown_report(record: &ExecutionRecord, rpo: &Value) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{}\n", verdict(record, rpo));
    let _ = writeln!(md, "# DR {} {}: {}\n", record.environment, record.kind, record.execution_id);
    let _ = writeln!(md, "- state: **{:?}**", record.state);
    let _ = writeln!(md, "- target: {}", record.target);
    let _ = writeln!(md, "- initiator: {}", serde_json::to_string(&record.initiator).unwrap_or_default());
    let _ = writeln!(md, "- reason: {}", record.reason);
    let _ = writeln!(md, "- decision: {:?}", record.decision.action);
    for r in &record.decision.reasons {
        let _ = writeln!(md, "  - {r}");
    }
    for o in &record.decision.overrides {
        let _ = writeln!(md, "  - override: {o}");
    }
    let _ = writeln!(md, "- measured RTO (decide to verified promotion): {} ms", rto_ms(record));
    let _ = writeln!(md, "- RPO estimate: {}", rpo_summary(rpo));
    let _ = writeln!(md, "  - as recorded: `{rpo}`");
    if let Some(k) = &record.snapshot_manifest_key {
        let _ = writeln!(md, "- snapshot manifest: `{k}`");
    }
    if let Some(w) = &record.workspaces {
        let _ = writeln!(md, "- workspaces: {}", dr_workspace::one_line(w));
    }
    if let Some(a) = &record.activation {
        activation_section(&mut md, a);
    }
    let _ = writeln!(md, "\n## Timeline\n\n{}", gantt(record));
    let _ = writeln!(md, "| step | outcome | started | duration (ms) | detail |\n|---|---|---|---|---|");
    for s in &record.steps {
        let _ = writeln!(
            md,
            "| {} | {:?} | {} | {} | {} |",
            s.step.as_str(),
            s.outcome,
            s.started_at,
            s.duration_ms,
            s.detail.as_deref().unwrap_or("").replace('|', "/")
        );
    }
    let _ = writeln!(md, "\n## Config before\n\n```json\n{}\n```", pretty(&record.config_before));
    let _ = writeln!(md, "\n## Config after\n\n```json\n{}\n```", pretty(&record.config_after));
    if !record.messages.is_empty() {
        let _ = writeln!(md, "\n## Messages\n");
        for m in &record.messages {
            let _ = writeln!(md, "- {} {}: {}", m.channel, m.event_type, m.message_id.as_deref().unwrap_or("(not sent)"));
        }
    }
    if !record.notes.is_empty() {
        let _ = writeln!(md, "\n## Notes\n");
        for n in &record.notes {
            let _ = writeln!(md, "- {}: {}", n.at, n.what);
        }
    }
    md
}

/// What was activated (each change with its before and after), what could not be, what to do by hand.
fn activation_section(md: &mut String, a: &crate::rules::activation::Activation) {
    let what = match (&a.reverses, a.drill) {
        (_, true) => "plan only (a drill changes nothing)".to_owned(),
        (Some(prev), false) => format!("reverse of execution {prev}"),
        (None, false) => a.mode.clone(),
    };
    let _ = writeln!(md, "\n## Activation\n\n{}: {what}\n", a.summary());
    if !a.changes.is_empty() {
        let _ = writeln!(md, "| where | object | field | before | after | status | detail |\n|---|---|---|---|---|---|---|");
        for c in &a.changes {
            let _ = writeln!(
                md,
                "| {} | {:?} {} ({}) | {} | {} | {} | {:?} | {} |",
                c.site.map_or("DNS", |s| s.as_str()),
                c.object,
                c.name,
                c.id,
                c.field,
                if c.before.is_empty() { "(absent)" } else { &c.before },
                c.after,
                c.status,
                c.detail.as_deref().unwrap_or("").replace('|', "/")
            );
        }
    }
    let hand = a.by_hand();
    if !hand.is_empty() {
        let _ = writeln!(md, "\n**Do by hand:**\n");
        for h in hand {
            let _ = writeln!(md, "- {h}");
        }
    }
}

fn pretty(v: &Option<Value>) -> String {
    v.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_else(|| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StepRecord;
    use crate::rules::decision::{Action, Decision, Initiator};
    use domain::site::SiteName;

    fn step(step: Step, outcome: StepOutcome, started_at: &str, ms: u64, attempt: &str) -> StepRecord {
        StepRecord {
            step,
            outcome,
            started_at: started_at.into(),
            ended_at: started_at.into(),
            duration_ms: ms,
            attempt_id: attempt.into(),
            detail: None,
        }
    }

    fn record(state: ExecutionState) -> ExecutionRecord {
        ExecutionRecord {
            execution_id: "failover-inc-4711".into(),
            environment: "prod".into(),
            kind: ExecutionKind::Failover,
            initiator: Initiator::Human { requested_by: "oncall@example.com".into() },
            reason: "us-east-1 outage".into(),
            trigger: json!({}),
            target: SiteName::Secondary,
            decision: Decision {
                action: Action::Execute,
                target: SiteName::Secondary,
                reasons: vec!["a human asked".into()],
                overrides: vec![],
            },
            state,
            created_at: "2026-01-05T09:00:00Z".into(),
            updated_at: "2026-01-05T09:00:01Z".into(),
            steps: vec![
                step(Step::Decide, StepOutcome::Done, "2026-01-05T09:00:00.100Z", 4, "a1"),
                step(Step::Snapshot, StepOutcome::Failed, "2026-01-05T09:00:00.104Z", 900, "a1"),
                step(Step::Snapshot, StepOutcome::Done, "2026-01-05T09:01:00Z", 1100, "a2"),
                step(Step::Promote, StepOutcome::Done, "2026-01-05T09:01:01.100Z", 0, "a2"),
                step(Step::Verify, StepOutcome::AlreadyDone, "not a time", 6, "a2"),
            ],
            config_before: None,
            config_after: None,
            promoted_version: Some(3),
            snapshot_manifest_key: None,
            decided_on_version: None,
            approved_by: None,
            rpo_estimate: None,
            activation: None,
            workspaces: None,
            messages: vec![],
            owed: vec![],
            report_key: None,
            notes: vec![],
            error: None,
            writer: None,
            unlocked_alarm_since: None,
        }
    }

    #[test]
    fn the_report_opens_with_a_one_line_verdict() {
        let rpo = json!({"estimate": "current", "open_incidents": 0});
        let md = markdown_report(&record(ExecutionState::Completed), &rpo);
        let first = md.lines().next().unwrap();
        assert_eq!(
            first,
            "**Verdict: failover to secondary completed and verified in 1.1 s (RTO); RPO: current (no open replication incident).**"
        );
        let at_risk = json!({"estimate": "at_risk", "open_incidents": 2, "oldest_unreplicated_since": "2026-01-05T08:00:00Z"});
        assert!(verdict(&record(ExecutionState::Completed), &at_risk).contains("RPO: at risk (2 open replication incident(s)"));
        let mut failed = record(ExecutionState::Failed);
        failed.error = Some("the read-back shows\nprimary".into());
        let v = verdict(&failed, &rpo);
        assert_eq!(v, "**Verdict: failover to secondary FAILED at snapshot: the read-back shows primary; act by hand.**");
        let mut stopped = record(ExecutionState::Running);
        stopped.error = Some("S3 PutObject timed out".into());
        assert!(verdict(&stopped, &rpo).contains("stopped at snapshot: S3 PutObject timed out; it resumes"));
        let mut refused = record(ExecutionState::Refused);
        refused.decision.reasons.push("readiness gate: sites/secondary is invalid".into());
        assert!(verdict(&refused, &rpo).contains("refused, nothing promoted: readiness gate"));
        for state in
            [ExecutionState::AwaitingApproval, ExecutionState::Cancelled, ExecutionState::Superseded, ExecutionState::Noop]
        {
            let v = verdict(&record(state), &rpo);
            assert!(v.starts_with("**Verdict: failover to secondary") && !v.contains('\n'), "{v}");
        }
    }

    #[test]
    fn the_timeline_is_a_gantt_chart_beside_the_table() {
        let md = markdown_report(&record(ExecutionState::Completed), &json!({}));
        let chart_at = md.find("```mermaid\ngantt\n").unwrap();
        let table_at = md.find("| step | outcome |").unwrap();
        assert!(md.find("## Timeline").unwrap() < chart_at && chart_at < table_at, "{md}");
        let chart = gantt(&record(ExecutionState::Completed));
        assert!(chart.contains("dateFormat x\n"), "{chart}");
        // One section per attempt; each step from its start, on a millisecond axis; failures marked critical.
        assert_eq!(chart.matches("section attempt").count(), 2, "{chart}");
        assert!(chart.contains("    decide :done, s0, 1767603600100, 1767603600104\n"), "{chart}");
        assert!(chart.contains("    snapshot - FAILED :crit, s1, 1767603600104, 1767603601004\n"), "{chart}");
        // A 0 ms step is still drawn; a step without a readable start is left to the table.
        assert!(chart.contains("    promote :done, s3, 1767603661100, 1767603661101\n"), "{chart}");
        assert!(!chart.contains("verify"), "{chart}");
        assert!(md.contains("| verify | AlreadyDone |"), "{md}");
        assert!(chart.trim_end().ends_with("```"));
    }
}
