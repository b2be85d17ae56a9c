//! `dr sync`'s answer for people: the plan per kind (create, update with its fields, prune, blocked with the
//! reason), what is not synced, and the apply's record when one ran.

use crate::render::Style;
use dr_failover::response::{CommandResponse, SyncAnswer};
use serde::Deserialize as _;
use serde_json::Value;
use std::fmt::Write;

/// The `sync` answer as it came (from the function, or this process) read as its type; `None` when it does not
/// read (a function of another version).
pub fn typed(v: &Value) -> Option<CommandResponse<SyncAnswer>> {
    CommandResponse::<SyncAnswer>::deserialize(v).ok()
}

/// The `sync` answer (`plan`, and `apply` when it ran).
pub fn render(v: &Value, s: Style) -> String {
    match typed(v) {
        Some(r) => render_typed(&r.details, s),
        None => format!("the answer could not be read; as it came:\n{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// The plan per kind, what is never synced, and the apply's record.
fn render_typed(a: &SyncAnswer, s: Style) -> String {
    let mut out = String::new();
    let plan = &a.plan;
    let exported: Vec<String> = plan.exported_at.iter().map(|(site, at)| format!("{site} exported {at}")).collect();
    let _ = writeln!(out, "{}", s.bold(&format!("SYNC {} -> {}   plan {}", plan.from, plan.to, plan.plan_id)));
    let _ = writeln!(out, "{}", s.dim(&format!("from the latest exports: {}", exported.join(", "))));
    if let Some(tag) = &plan.activation_tag {
        let _ = writeln!(out, "{}", s.dim(&format!("jobs are written paused, tagged {tag}")));
    }
    let _ = writeln!(out, "{}", plan.sentence);
    for (kind, changes) in &plan.kinds {
        let _ = writeln!(out, "\n{}", s.bold(kind));
        for c in changes {
            let name = &c.name;
            let line = match c.action.as_str() {
                "create" => format!("  {}  {name}", s.good("+ create ")),
                "update" => {
                    let fields = c.fields.as_deref().unwrap_or_default().join(", ");
                    format!("  {}  {name}  {}", s.warn("~ update "), s.dim(&format!("({fields})")))
                }
                "prune" => format!("  {}  {name}  {}", s.bad("- prune  "), s.dim("(only with --prune)")),
                _ => format!("  {}  {name}: {}", s.bad("! blocked"), c.reason.as_deref().unwrap_or_default()),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "\n{}", s.bold("not synced"));
    for n in &plan.not_synced {
        let _ = writeln!(out, "  {}: {}", n.what, s.dim(&n.reason));
    }
    if let Some(j) = &a.apply {
        let _ = writeln!(out, "\n{}", s.bold(&format!("apply: {}", j.outcome.as_deref().unwrap_or_default())));
        let _ = writeln!(out, "  record  {}", a.record_key.as_deref().unwrap_or_default());
        for e in &j.entries {
            let status = serde_json::to_value(e.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            if status == "skipped" {
                continue;
            }
            let note = e.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
            let _ = writeln!(out, "  {:<8} {} {}{note}", status, e.kind, e.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_plan_reads_per_kind_with_fields_reasons_and_what_is_not_synced() {
        let v = json!({"outcome": "completed", "active_site": "primary", "command": "sync",
            "plan": {"from": "primary", "to": "secondary", "plan_id": "abc", "exported_at": {"primary": "t1"},
            "activation_tag": "dr=standby", "sentence": "1 blocked, 1 to create, 1 to update", "counts": {"create": 1, "update": 1, "blocked": 1},
            "kinds": {"jobs": [{"name": "nightly", "action": "create"}, {"name": "etl", "action": "update", "fields": ["schedule", "tasks"], "target": "7"},
                {"name": "p", "action": "blocked", "reason": "task \"p\" runs a pipeline"}], "sql-warehouses": [{"name": "old", "action": "prune", "target": "w1"}]},
            "not_synced": [{"what": "secret values", "reason": "never returned"}]},
            "apply": {"plan_id": "abc", "from": "primary", "to": "secondary", "requested_by": "me", "prune": false, "started_at": "2026-12-07T10:00:00Z", "updated_at": "2026-12-07T10:01:00Z", "outcome": "complete",
                "entries": [{"kind": "jobs", "name": "nightly", "action": "create", "status": "done"}]},
            "record_key": "databricks/sync/abc.json"});
        let out = render(&v, Style { color: false });
        for needle in [
            "SYNC primary -> secondary   plan abc",
            "1 blocked, 1 to create, 1 to update",
            "+ create   nightly",
            "~ update   etl  (schedule, tasks)",
            "! blocked  p: task \"p\" runs a pipeline",
            "- prune    old  (only with --prune)",
            "secret values: never returned",
            "apply: complete",
            "done     jobs nightly",
        ] {
            assert!(out.contains(needle), "{needle:?} not in\n{out}");
        }
    }
}
