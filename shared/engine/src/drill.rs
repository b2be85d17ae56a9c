//! Drills: the whole failover sequence, by the same code path as a real failover, against an isolated copy
//! of the DR parameters under `{prefix}/drills/{id}/`, never the live `{prefix}/active`; then clean-up,
//! verified. A drill leaves no trace but its report.

use domain::names::SsmPrefix;
use domain::primitives::rfc3339;
use dr_failover::record::record_key;
use dr_failover::report::report_keys;
use dr_failover::response::{DrillCleanup, Outcome};
use dr_failover::rules::decision::Initiator;
use dr_failover::{Engine, EngineError, EngineSettings, ExecutionResult, MoveRequest};
use dr_ports::documents::{self, ACTIVE, DATA_PLANE, POLICY, SITE_PRIMARY, SITE_SECONDARY};
use dr_ports::error::StoreError;
use dr_ports::lock::{self, DRILL_LOCK_KEY, FAILOVER_LOCK_KEY};
use dr_ports::{Clock, ControlBucket, Notifier, Parameter, ParameterStore, WriteCondition};
use serde_json::{Value, json};

/// A drill's answer: the execution's, plus the verified clean-up.
#[derive(Debug, Clone)]
pub struct DrillResult {
    /// The rehearsed execution (timings, report key), or why the drill was refused.
    pub execution: ExecutionResult,
    /// What the clean-up found and did (none when the drill was refused before it ran).
    pub cleanup: Option<DrillCleanup>,
}

fn refused(id: &str, active_site: Option<domain::site::SiteName>, message: String) -> DrillResult {
    DrillResult { execution: ExecutionResult::answer(Outcome::Rejected, id, active_site, message), cleanup: None }
}

/// Runs a drill for `requested_by`.
pub async fn drill<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    requested_by: &str,
    reason: &str,
) -> Result<DrillResult, EngineError> {
    let id = format!("drill-{}", domain::primitives::new_token());
    let now = engine.clock.now();
    let not_started = |source| EngineError::NotStarted { execution_id: id.clone(), source };
    let live = &engine.settings.prefix;
    let (docs, failover_lock, tree) = tokio::try_join!(
        documents::load(&engine.params, live),
        lock::read_at(&engine.bucket, FAILOVER_LOCK_KEY, now),
        engine.params.get_tree(live.as_str())
    )
    .map_err(not_started)?;
    let active_site = docs.active.valid().map(|a| a.site);

    if let Some(why) = guard_rails(&docs, failover_lock, now) {
        return Ok(refused(&id, active_site, why));
    }
    let Some(active) = docs.active.valid() else {
        let msg = format!("drill refused: {}", docs.active.problem().unwrap_or_default());
        return Ok(refused(&id, active_site, msg));
    };
    let live_active_version = tree.iter().find(|p| p.name == live.child(ACTIVE)).map(|p| p.version);
    let copy_prefix = SsmPrefix::parse(&live.child(&format!("drills/{id}")))
        .map_err(|problem| EngineError::Corrupt { execution_id: id.clone(), problem: format!("drill prefix: {problem}") })?;
    let copied = copy_documents(&engine.params, &tree, live, &copy_prefix).await.map_err(not_started)?;

    // The same engine code path, over the copy, under the drill lock, with info-only messages.
    let drill_engine = Engine {
        params: &engine.params,
        bucket: &engine.bucket,
        notifier: &engine.notifier,
        clock: &engine.clock,
        settings: EngineSettings {
            prefix: copy_prefix.clone(),
            lock_key: DRILL_LOCK_KEY.into(),
            drill: true,
            ..engine.settings.clone()
        },
        sources: engine.sources.clone(),
        workspaces: engine.workspaces.clone(),
        dns: engine.dns.clone(),
    };
    let request = MoveRequest {
        execution_id: id.clone(),
        initiator: Initiator::Human { requested_by: requested_by.to_owned() },
        target: active.site.other(),
        reason: format!("drill: {reason}"),
        trigger: json!({ "command": "drill", "requested_by": requested_by, "reason": reason, "copy_prefix": copy_prefix.as_str() }),
    };
    let run = drill_engine.run(request).await;

    // Clean-up, whatever happened: delete the copy, the record and the snapshot; keep the report.
    let cleanup = clean_up(engine, &id, &copy_prefix, &copied, live_active_version).await;
    let execution = match run {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(execution_id = %id, error = %e, cleanup = %json!(cleanup), "drill failed");
            return Err(e);
        }
    };
    if let Some(key) = &execution.report_key {
        append_cleanup_to_report(engine, &id, key, &cleanup).await.map_err(not_started)?;
    }
    Ok(DrillResult { execution, cleanup: Some(cleanup) })
}

/// Why a drill may not run now, if it may not: never beside a real execution, never in a blocked date or window.
fn guard_rails(
    docs: &documents::DrDocuments,
    failover_lock: Option<(lock::LockDoc, String, time::OffsetDateTime)>,
    now: time::OffsetDateTime,
) -> Option<String> {
    if let Some((holder, _, held_at)) = failover_lock
        && !holder.expired(held_at)
    {
        return Some(format!(
            "a real execution is in flight ({}, {:?}); drills wait until it ends",
            holder.execution_id, holder.state
        ));
    }
    let why = docs.effective_policy()?.drill_blocked(now)?;
    Some(format!("drill refused: {why}"))
}

/// The isolated copy: the six documents as they are now (never SecureStrings), and client redirection's
/// document, so that the drill lists the DNS change it would make. Returns the names written.
async fn copy_documents<P: ParameterStore>(
    params: &P,
    tree: &[Parameter],
    live: &SsmPrefix,
    copy_prefix: &SsmPrefix,
) -> Result<Vec<String>, StoreError> {
    let mut copied = Vec::new();
    for rel in [ACTIVE, SITE_PRIMARY, SITE_SECONDARY, POLICY, DATA_PLANE, dr_failover::REDIRECTION] {
        if let Some(p) = tree.iter().find(|p| p.name == live.child(rel) && !p.is_secure()) {
            let name = copy_prefix.child(rel);
            params.put(&name, &p.value, false).await?;
            copied.push(name);
        }
    }
    Ok(copied)
}

async fn clean_up<P: ParameterStore, B: ControlBucket, N, C: Clock>(
    engine: &Engine<P, B, N, C>,
    id: &str,
    copy_prefix: &SsmPrefix,
    copied: &[String],
    live_active_version: Option<i64>,
) -> DrillCleanup {
    let mut problems = Vec::new();
    let mut names: Vec<String> = copied.to_vec();
    if let Ok(tree) = engine.params.get_tree(copy_prefix.as_str()).await {
        names.extend(tree.into_iter().map(|p| p.name));
    }
    names.sort();
    names.dedup();
    if let Err(e) = engine.params.delete(&names).await {
        problems.push(format!("deleting the parameter copy: {e}"));
    }
    let mut removed_objects = vec![record_key(id)];
    if let Ok(keys) = engine.bucket.list(&format!("{}/", domain::layout::snapshot_folder(id))).await {
        removed_objects.extend(keys);
    }
    for key in &removed_objects {
        if let Err(e) = engine.bucket.delete(key).await {
            problems.push(format!("deleting {key}: {e}"));
        }
    }
    // The drill ran in this very call: no attempt of it runs any more, whatever state its lock was left in.
    if let Ok(Some((doc, etag))) = lock::read(&engine.bucket, DRILL_LOCK_KEY).await
        && doc.execution_id == *id
    {
        let _ = engine.bucket.delete_if_match(DRILL_LOCK_KEY, &etag).await;
    }
    // Verify: nothing left of the copy, the drill lock free, the live active untouched.
    let left = engine.params.get_tree(copy_prefix.as_str()).await.map(|t| t.len()).unwrap_or(usize::MAX);
    if left != 0 {
        problems.push(format!("{left} parameters remain under {copy_prefix}"));
    }
    let lock_left = lock::read(&engine.bucket, DRILL_LOCK_KEY).await.ok().flatten().is_some_and(|(d, _)| d.execution_id == id);
    if lock_left {
        problems.push("the drill lock is still held".into());
    }
    let live_now = engine.params.get_one(&engine.settings.prefix.child(ACTIVE)).await.ok().flatten().map(|p| p.version);
    if live_now != live_active_version {
        problems
            .push(format!("the live active parameter changed during the drill: version {live_active_version:?} -> {live_now:?}"));
    }
    DrillCleanup {
        verified: problems.is_empty(),
        problems,
        deleted_parameters: names,
        deleted_objects: removed_objects,
        live_active_version,
        at: rfc3339(engine.clock.now()),
    }
}

/// A list as the report shows it: a JSON array.
fn list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

async fn append_cleanup_to_report<P, B: ControlBucket, N, C>(
    engine: &Engine<P, B, N, C>,
    id: &str,
    json_key: &str,
    cleanup: &DrillCleanup,
) -> Result<(), StoreError> {
    let (_, md_key) = report_keys(id);
    if let Some(o) = engine.bucket.get(json_key).await? {
        let mut report: Value = serde_json::from_slice(&o.body).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut report {
            m.insert("drill".into(), Value::Bool(true));
            m.insert("cleanup".into(), serde_json::to_value(cleanup).unwrap_or(Value::Null));
        }
        engine
            .bucket
            .put(json_key, serde_json::to_vec_pretty(&report).unwrap_or_default(), "application/json", WriteCondition::Overwrite)
            .await?;
    }
    if let Some(o) = engine.bucket.get(&md_key).await? {
        let mut md = String::from_utf8_lossy(&o.body).into_owned();
        md.push_str(&format!(
            "\n## Drill clean-up\n\n- verified: {}\n- problems: {}\n- deleted parameters: {}\n- deleted objects: {}\n",
            cleanup.verified,
            list(&cleanup.problems),
            list(&cleanup.deleted_parameters),
            list(&cleanup.deleted_objects)
        ));
        engine.bucket.put(&md_key, md.into_bytes(), "text/markdown", WriteCondition::Overwrite).await?;
    }
    Ok(())
}
