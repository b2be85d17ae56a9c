//! Jobs: the settings the standby's job is created or reset with, mapped from the active site's job.

use super::refs::Mapper;
use crate::rules::ObjectKind;
use crate::rules::identity;
use serde_json::{Map, Value};

/// `name [k=v,...]`: the job's name and tags, the activation tag aside when it has the activation value (sync
/// sets it on the standby's copy of a job that runs by itself, so the two copies match whether the active one
/// carries it or not; a job tagged with another value, `dr=none`, stays apart).
pub(crate) fn key(job: &Value, tag: Option<&(String, String)>) -> Option<String> {
    let mut job = job.clone();
    if let (Some((k, v)), Some(Value::Object(tags))) = (tag, job.get_mut("settings").and_then(|s| s.get_mut("tags")))
        && tags.get(k).and_then(Value::as_str) == Some(v.as_str())
    {
        tags.remove(k);
    }
    identity::of(ObjectKind::Jobs, &job)
}

/// Whether the job runs by itself (a schedule, continuous run or trigger not paused): its standby copy is what a
/// failover must resume.
fn runs_by_itself(settings: &Map<String, Value>) -> bool {
    ["schedule", "continuous", "trigger"]
        .iter()
        .any(|t| settings.get(*t).is_some_and(|t| t.get("pause_status").and_then(Value::as_str) != Some("PAUSED")))
}

/// The job's settings as comparable: tasks and job clusters sorted by key, fields sync never writes left out.
pub(crate) fn normalize(settings: &Value) -> Value {
    let mut s = settings.clone();
    let Value::Object(o) = &mut s else { return s };
    // Budget policies are not exported: never written, never compared.
    o.remove("budget_policy_id");
    for list in ["tasks", "job_clusters"] {
        if let Some(Value::Array(items)) = o.get_mut(list) {
            for item in items.iter_mut() {
                if let Some(Value::Object(c)) = item.get_mut("new_cluster") {
                    c.remove("cluster_id");
                }
            }
            let by = if list == "tasks" { "task_key" } else { "job_cluster_key" };
            items.sort_by_cached_key(|v| {
                (v.get(by).and_then(Value::as_str).unwrap_or_default().to_owned(), identity::canonical(v))
            });
        }
    }
    s
}

/// The settings to write in the standby (`jobs/create`'s body, `jobs/reset`'s `new_settings`), or why the job
/// cannot be synced.
pub(crate) fn desired(job: &Value, m: &Mapper<'_>, tag: Option<&(String, String)>) -> Result<Value, String> {
    let Some(Value::Object(settings)) = job.get("settings") else { return Err("the job has no settings".into()) };
    let mut s = settings.clone();
    s.remove("budget_policy_id");
    let runs = runs_by_itself(&s);
    for trigger in ["schedule", "continuous", "trigger"] {
        if let Some(Value::Object(t)) = s.get_mut(trigger) {
            t.insert("pause_status".into(), Value::String("PAUSED".into()));
        }
    }
    let url = s.get("trigger").and_then(|t| t.get("file_arrival")).and_then(|f| f.get("url")).cloned();
    if let Some(url) = url {
        let mapped = m.storage("the file-arrival trigger's location", &url)?;
        if let Some(Value::Object(f)) = s.get_mut("trigger").and_then(|t| t.get_mut("file_arrival")) {
            f.insert("url".into(), mapped);
        }
    }
    // A job that runs by itself in the active site is tagged for activation (unless it names the tag's key with
    // another value, an operator's choice): a failover onto the standby resumes it.
    if let Some((k, v)) = tag.filter(|_| runs) {
        let tags = s.entry("tags").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(tags) = tags {
            tags.entry(k.clone()).or_insert_with(|| Value::String(v.clone()));
        }
    }
    if let Some(Value::Array(clusters)) = s.get_mut("job_clusters") {
        for c in clusters.iter_mut() {
            if let Some(Value::Object(spec)) = c.get_mut("new_cluster") {
                m.cluster(spec)?;
            }
        }
    }
    if let Some(Value::Array(tasks)) = s.get_mut("tasks") {
        for t in tasks.iter_mut() {
            if let Value::Object(t) = t {
                task(t, m)?;
            }
        }
    }
    if let Some(Value::Object(run_as)) = s.get_mut("run_as") {
        for who in ["user_name", "service_principal_name", "group_name"] {
            if let Some(to) = run_as.get(who).and_then(Value::as_str).and_then(|p| m.settings.run_as.get(p)) {
                run_as.insert(who.into(), Value::String(to.clone()));
            }
        }
    }
    Ok(Value::Object(s))
}

/// One task with its references mapped (a `for_each_task`'s inner task too).
fn task(t: &mut Map<String, Value>, m: &Mapper<'_>) -> Result<(), String> {
    let key = t.get("task_key").and_then(Value::as_str).unwrap_or("?").to_owned();
    let within = |e: String| format!("task {key:?} {e}");
    if let Some(Value::Object(spec)) = t.get_mut("new_cluster") {
        m.cluster(spec).map_err(within)?;
    }
    if let Some(id) = t.get("existing_cluster_id") {
        let mapped = m.object_id(ObjectKind::Clusters, id).map_err(within)?;
        t.insert("existing_cluster_id".into(), mapped);
    }
    for holder in ["sql_task", "dbt_task"] {
        if let Some(Value::Object(h)) = t.get_mut(holder) {
            if let Some(id) = h.get("warehouse_id") {
                let mapped = m.object_id(ObjectKind::SqlWarehouses, id).map_err(within)?;
                h.insert("warehouse_id".into(), mapped);
            }
            for (field, what) in [("query", "a SQL query"), ("dashboard", "a SQL dashboard"), ("alert", "a SQL alert")] {
                if h.contains_key(field) {
                    return Err(within(format!("runs {what}, which sync does not carry (its id differs in the standby)")));
                }
            }
        }
    }
    if t.contains_key("pipeline_task") {
        return Err(within("runs a pipeline, which sync does not carry (its id differs in the standby)".into()));
    }
    if t.contains_key("dashboard_task") {
        return Err(within("refreshes a dashboard, which sync does not carry (its id differs in the standby)".into()));
    }
    if let Some(Value::Object(inner)) = t.get_mut("for_each_task").and_then(|f| f.get_mut("task")) {
        task(inner, m)?;
    }
    Ok(())
}
