//! The execution report: `reports/{id}.json` and `reports/{id}.md`.

use crate::record::{ExecutionRecord, Step, StepOutcome};
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
        "config_before": record.config_before,
        "config_after": record.config_after,
        "promoted_version": record.promoted_version,
        "snapshot_manifest_key": record.snapshot_manifest_key,
        "messages": record.messages,
        "notes": record.notes,
        "created_at": record.created_at,
    })
}

/// The Markdown report, for humans.
pub fn markdown_report(record: &ExecutionRecord, rpo: &Value) -> String {
    let mut md = String::new();
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
    let _ = writeln!(md, "- RPO estimate: {rpo}");
    if let Some(k) = &record.snapshot_manifest_key {
        let _ = writeln!(md, "- snapshot manifest: `{k}`");
    }
    let _ = writeln!(md, "\n## Timeline\n\n| step | outcome | started | duration (ms) | detail |\n|---|---|---|---|---|");
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

fn pretty(v: &Option<Value>) -> String {
    v.as_ref().map(|v| serde_json::to_string_pretty(v).unwrap_or_default()).unwrap_or_else(|| "null".into())
}
