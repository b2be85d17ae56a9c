//! The `manual-trigger` commands, dispatched in one place so that the Lambda handler and the break-glass CLI
//! (`dr`) run exactly the same code.

use super::check::{self, Finding};
use super::documents;
use super::drill;
use super::failover::{Engine, ExecutionResult, MoveRequest, new_token};
use super::lock::{self, FAILOVER_LOCK_KEY, rfc3339};
use super::record::ExecutionRecord;
use super::response::{CommandResponse, Outcome};
use super::snapshot;
use super::status;
use crate::config::Config;
use crate::domain::command::{self, Command};
use crate::domain::decision::Initiator;
use crate::domain::site::SiteName;
use crate::error::HandlerError;
use crate::ports::{Clock, ControlBucket, Notifier, ParameterStore};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

/// Extra readiness findings from other capabilities (e.g. open replication incidents), asked for by `check`.
pub type FindingsHook<'a> = &'a (dyn Fn() -> BoxFuture<'a, Vec<Finding>> + Send + Sync);

/// Runs one command payload.
pub async fn run<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    config: &Config,
    payload: &Value,
    extra_findings: Option<FindingsHook<'_>>,
) -> Result<CommandResponse, HandlerError> {
    let command = match command::parse(payload) {
        Ok(c) => c,
        Err(rejection) => {
            tracing::warn!(reason = %rejection, "command rejected");
            return Ok(CommandResponse::rejected(rejection.0, active_site(engine).await));
        }
    };
    tracing::info!(command = command.name(), "command");
    let response = match command {
        Command::Status => {
            let mut response = status::status(&engine.params, config).await?;
            let (in_flight, recent) =
                tokio::join!(lock::read(&engine.bucket, FAILOVER_LOCK_KEY), recent_executions(&engine.bucket, 5));
            response.details.insert(
                "in_flight".into(),
                match in_flight {
                    Ok(l) => json!(l.map(|(doc, _)| doc)),
                    Err(e) => json!({ "error": e.to_string() }),
                },
            );
            response.details.insert(
                "recent_executions".into(),
                match recent {
                    Ok(list) => json!(list),
                    Err(e) => json!({ "error": e.to_string() }),
                },
            );
            response
        }
        Command::Move(m) => {
            let name = if m.target == SiteName::Secondary { "failover" } else { "failback" };
            // The client token makes a retried command the same execution; without one, each command is new.
            let token = m.client_token.clone().unwrap_or_else(new_token);
            let request = MoveRequest {
                execution_id: format!("{name}-{token}"),
                initiator: Initiator::Human { requested_by: m.requested_by.clone() },
                target: m.target,
                reason: m.reason.clone(),
                trigger: json!({ "command": name, "target": m.target, "requested_by": m.requested_by, "reason": m.reason,
                                 "client_token": m.client_token }),
            };
            execution(name, engine.run(request).await?)
        }
        Command::Approve(a) => execution("approve", engine.approve(&a.execution_id, &a.requested_by).await?),
        Command::Unlock(u) => {
            let who = u.requested_by.as_deref().unwrap_or("unknown (no requested_by given)");
            execution("unlock", engine.unlock(&u.execution_id, who).await?)
        }
        Command::Snapshot => snapshot_now(engine).await?,
        Command::Check => {
            let extra = match extra_findings {
                Some(hook) => hook().await,
                None => Vec::new(),
            };
            check::check(engine, extra).await?
        }
        Command::Drill(d) => {
            let r = drill::drill(engine, &d.requested_by, &d.reason).await?;
            let mut response = execution("drill", r.execution);
            response.details.insert("cleanup".into(), r.cleanup);
            response
        }
    };
    tracing::info!(outcome = ?response.outcome, active_site = ?response.active_site, "command answered");
    Ok(response)
}

fn execution(command: &str, r: ExecutionResult) -> CommandResponse {
    let mut details = r.to_fields();
    details.insert("command".into(), json!(command));
    CommandResponse { outcome: r.outcome, active_site: r.active_site, message: Some(r.message), details }
}

/// A snapshot on demand (also scheduled): under `snapshots/{timestamp}/`, with its manifest.
async fn snapshot_now<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Result<CommandResponse, HandlerError> {
    let start = engine.clock.now();
    let tree = engine.read_tree().await?;
    let files = engine.snapshot_files_of(&tree).await?;
    let count = files.len();
    let id = rfc3339(start).replace(':', "-");
    let manifest = snapshot::write(&engine.bucket, &format!("snapshots/{id}"), &id, files, start).await?;
    let ms = u64::try_from((engine.clock.now() - start).whole_milliseconds()).unwrap_or(0);
    let docs = documents::from_tree(&tree, &engine.settings.prefix);
    let mut details = serde_json::Map::new();
    details.insert("command".into(), json!("snapshot"));
    details.insert("snapshot_manifest_key".into(), json!(manifest));
    details.insert("files".into(), json!(count));
    details.insert("timings_ms".into(), json!({ "snapshot": ms }));
    Ok(CommandResponse {
        outcome: Outcome::Completed,
        active_site: docs.active.valid().map(|a| a.site),
        message: Some(format!("snapshot of {count} files written")),
        details,
    })
}

/// The last `n` execution records, newest first, summarized.
async fn recent_executions(bucket: &impl ControlBucket, n: usize) -> Result<Vec<Value>, crate::error::StoreError> {
    let keys: Vec<String> = bucket.list_recent("executions/").await?.into_iter().take(n).map(|(k, _)| k).collect();
    let reads = futures_util::future::join_all(keys.iter().map(|k| bucket.get(k))).await;
    Ok(reads
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .filter_map(|o| serde_json::from_slice::<ExecutionRecord>(&o.body).ok())
        .map(|r| {
            json!({
                "execution_id": r.execution_id, "kind": r.kind, "state": r.state, "target": r.target,
                "initiator": r.initiator, "created_at": r.created_at, "updated_at": r.updated_at,
                "report_key": r.report_key, "error": r.error,
            })
        })
        .collect())
}

/// The active site for a rejection's answer, best effort: a rejection must not depend on SSM being up.
async fn active_site<P: ParameterStore, B, N, C>(engine: &Engine<P, B, N, C>) -> Option<SiteName> {
    let docs = documents::load(&engine.params, &engine.settings.prefix).await.ok()?;
    docs.active.valid().map(|a| a.site)
}
