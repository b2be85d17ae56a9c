//! `dr sync`'s answer for people: the plan per kind (create, update with its fields, prune, blocked with the
//! reason), what is not synced, and the apply's record when one ran.

use crate::render::Style;
use serde_json::Value;
use std::fmt::Write;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The `sync` answer (`plan`, and `apply` when it ran).
pub fn render(v: &Value, s: Style) -> String {
    let mut out = String::new();
    let plan = &v["plan"];
    let exported: Vec<String> =
        plan["exported_at"].as_object().into_iter().flatten().map(|(site, at)| format!("{site} exported {}", text(at))).collect();
    let _ = writeln!(
        out,
        "{}",
        s.bold(&format!("SYNC {} -> {}   plan {}", text(&plan["from"]), text(&plan["to"]), text(&plan["plan_id"])))
    );
    let _ = writeln!(out, "{}", s.dim(&format!("from the latest exports: {}", exported.join(", "))));
    if let Some(tag) = plan["activation_tag"].as_str() {
        let _ = writeln!(out, "{}", s.dim(&format!("jobs are written paused, tagged {tag}")));
    }
    let _ = writeln!(out, "{}", text(&plan["sentence"]));
    for (kind, changes) in plan["kinds"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "\n{}", s.bold(kind));
        for c in changes.as_array().into_iter().flatten() {
            let name = text(&c["name"]);
            let line = match text(&c["action"]) {
                "create" => format!("  {}  {name}", s.good("+ create ")),
                "update" => {
                    let fields: Vec<&str> = c["fields"].as_array().into_iter().flatten().map(text).collect();
                    format!("  {}  {name}  {}", s.warn("~ update "), s.dim(&format!("({})", fields.join(", "))))
                }
                "prune" => format!("  {}  {name}  {}", s.bad("- prune  "), s.dim("(only with --prune)")),
                _ => format!("  {}  {name}: {}", s.bad("! blocked"), text(&c["reason"])),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "\n{}", s.bold("not synced"));
    for n in plan["not_synced"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}: {}", text(&n["what"]), s.dim(text(&n["reason"])));
    }
    if let Some(j) = v.get("apply").filter(|j| j.is_object()) {
        let _ = writeln!(out, "\n{}", s.bold(&format!("apply: {}", text(&j["outcome"]))));
        let _ = writeln!(out, "  record  {}", text(&v["record_key"]));
        for e in j["entries"].as_array().into_iter().flatten().filter(|e| !matches!(text(&e["status"]), "skipped")) {
            let note = e["note"].as_str().map(|n| format!(": {n}")).unwrap_or_default();
            let _ = writeln!(out, "  {:<8} {} {}{note}", text(&e["status"]), text(&e["kind"]), text(&e["name"]));
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
        let v = json!({"plan": {"from": "primary", "to": "secondary", "plan_id": "abc", "exported_at": {"primary": "t1"},
            "activation_tag": "dr=standby", "sentence": "1 blocked, 1 to create, 1 to update",
            "kinds": {"jobs": [{"name": "nightly", "action": "create"}, {"name": "etl", "action": "update", "fields": ["schedule", "tasks"]},
                {"name": "p", "action": "blocked", "reason": "task \"p\" runs a pipeline"}], "sql-warehouses": [{"name": "old", "action": "prune"}]},
            "not_synced": [{"what": "secret values", "reason": "never returned"}]},
            "apply": {"outcome": "complete", "entries": [{"kind": "jobs", "name": "nightly", "status": "done"}]}, "record_key": "databricks/sync/abc.json"});
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
