//! The `manual-trigger` commands, dispatched in one place so that the Lambda handler and the break-glass CLI
//! (`dr`) run exactly the same code.

use crate::check;
use crate::check_sources::{self, RECENT_SCAN};
use crate::command::{self, Command};
use crate::drill;
use crate::status;
use domain::error::InvalidDocument;
use domain::primitives::new_token;
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_failover::record::{self, ExecutionRecord, ExecutionState};
use dr_failover::response::{
    CarriedParts, CommandResponse, DeltaRpo, Details, ExecutionAnswer, ExecutionSummary, Fallible, Outcome, OwedPages,
    SnapshotAnswer,
};
use dr_failover::rules::decision::Initiator;
use dr_failover::{Engine, ExecutionResult, MoveRequest};
use dr_ports::documents;
use dr_ports::error::{Retry, StoreError};
use dr_ports::lock::{self, FAILOVER_LOCK_KEY};
use dr_ports::snapshot;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use dr_workspace::readiness::MatrixOnCheck;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Why a `manual-trigger` command could not answer with an outcome.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An AWS call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document the command depends on is invalid (an operator must fix it).
    #[error(transparent)]
    Document(#[from] InvalidDocument),
    /// The failover engine could not finish (its record says where it stopped).
    #[error(transparent)]
    Execution(#[from] dr_failover::EngineError),
}

impl CommandError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            CommandError::Store(e) => e.retry(),
            CommandError::Document(_) => Retry::Futile,
            CommandError::Execution(e) => e.retry(),
        }
    }
}

/// Runs one command payload.
pub async fn run<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    payload: &Value,
) -> Result<CommandResponse, CommandError> {
    run_with(engine, payload, None).await
}

/// [`run`]; with `carrier` (the function has an export queue), a snapshot's workspace export is carried over
/// invocations ([`dr_workspace::carry`]) instead of held in this one.
pub async fn run_with<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    payload: &Value,
    carrier: Option<&dr_workspace::carry::Carrier>,
) -> Result<CommandResponse, CommandError> {
    let command = match command::parse(payload) {
        Ok(c) => c,
        Err(rejection) => {
            tracing::warn!(reason = %rejection, "command rejected");
            return Ok(CommandResponse::rejected(rejection.0, active_site(engine).await));
        }
    };
    tracing::info!(command = command.name(), "command");
    let response = match command {
        Command::Status => status_now(engine).await?,
        Command::Move(m) => move_now(engine, &m).await?,
        Command::Approve(a) => execution("approve", engine.approve(&a.execution_id, &a.requested_by).await?),
        Command::Cancel(c) => execution("cancel", engine.cancel(&c.execution_id, &c.requested_by, c.reason.as_deref()).await?),
        Command::Unlock(u) => {
            let who = u.requested_by.as_deref().unwrap_or("unknown (no requested_by given)");
            execution("unlock", engine.unlock(&u.execution_id, who).await?)
        }
        Command::Snapshot => match (carrier, engine.workspaces.as_deref()) {
            (Some(carrier), Some(connector)) => snapshot_carried(engine, connector, carrier).await?,
            _ => snapshot_now(engine).await?,
        },
        Command::Check => check_now(engine).await?,
        Command::Sync(y) => crate::sync::run(engine, &y).await?,
        Command::Drill(d) => {
            let r = drill::drill(engine, &d.requested_by, &d.reason).await?;
            let mut answer = execution_answer("drill", &r.execution);
            answer.cleanup = Some(r.cleanup);
            respond(&r.execution, answer)
        }
    };
    tracing::info!(outcome = ?response.outcome, active_site = ?response.active_site, "command answered");
    Ok(response)
}

/// A failover or failback asked by a human.
async fn move_now<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    m: &command::Move,
) -> Result<CommandResponse, CommandError> {
    let name = dr_failover::rules::decision::ExecutionKind::toward(m.target).as_str();
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
    Ok(execution(name, engine.run(request).await?))
}

/// `check`: the findings of every source, the live DR matrix and the sync plan's size.
async fn check_now<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Result<CommandResponse, CommandError> {
    // The DR documents once, for every part of the check (coverage reads the data plane among them).
    let parameters = documents::load_parameters(&engine.params, &engine.settings.prefix).await?;
    let docs = documents::from_parameters(&parameters, &engine.settings.prefix);
    let tree: Vec<_> = parameters.into_values().collect();
    let mut extra = check_sources::replication_findings(engine).await;
    extra.extend(check_sources::owed_page_findings(engine).await);
    extra.extend(check_sources::abandoned_lock_findings(engine).await);
    extra.extend(check_sources::version_findings(engine).await);
    extra.extend(check_sources::coverage_findings(engine, &tree).await);
    let now = engine.clock.now();
    let (readiness, activation) = tokio::join!(
        dr_workspace::readiness::assess(&engine.bucket, &docs, now),
        dr_failover::activation::view(engine.workspaces.as_deref(), &docs)
    );
    // A job scheduled in both workspaces runs twice: critical, paged.
    if let Some((_, findings)) = activation {
        extra.extend(findings);
    }
    if let Ok(r) = &readiness {
        extra.extend(r.findings.iter().cloned());
    }
    let mut response = check::check(engine, &docs, extra).await?;
    let matrix = match &readiness {
        Ok(r) => {
            let env = &engine.settings.environment;
            MatrixOnCheck::Published(Box::new(
                dr_workspace::readiness::publish(&engine.bucket, &engine.notifier, env, r, now).await,
            ))
        }
        Err(e) => MatrixOnCheck::Failed { error: e.to_string() },
    };
    let sync = crate::sync::on_check(engine, &docs).await;
    if let Details::Check(answer) = &mut response.details {
        answer.dr_matrix = Some(matrix);
        answer.sync = Some(sync);
    }
    Ok(response)
}

/// `status`: the documents' view, what is in flight, the newest executions, the incidents, the workspaces and
/// the latest Delta assessment, each read at once and reported (not raised) when it cannot be read.
async fn status_now<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Result<CommandResponse, CommandError> {
    let docs = documents::load(&engine.params, &engine.settings.prefix).await?;
    let mut answer = status::render(&docs, &engine.settings);
    let (in_flight, recent, incidents, workspaces, delta, activation) = tokio::join!(
        lock::read(&engine.bucket, FAILOVER_LOCK_KEY),
        recent_records(&engine.bucket, RECENT_SCAN),
        dr_replication::open_incidents(&engine.bucket),
        dr_workspace::status_view(&engine.bucket, engine.clock.now()),
        engine.bucket.get(dr_delta::LATEST_KEY),
        dr_failover::activation::view(engine.workspaces.as_deref(), &docs)
    );
    answer.workspaces = Some(workspaces);
    answer.activation = activation.map(|(view, _)| view);
    // The latest Delta assessment (each snapshot's, finished): the workload RPO before anyone approves.
    answer.delta_rpo = Some(match delta {
        Ok(Some(o)) => DeltaRpo::of_document(&o.body),
        Ok(None) => DeltaRpo::not_yet(),
        Err(e) => DeltaRpo::Failed { error: e.to_string() },
    });
    answer.replication_incidents = Some(match incidents {
        Ok(list) => Fallible::Read(dr_replication::summaries(&list)),
        Err(e) => Fallible::Failed { error: e.to_string() },
    });
    answer.in_flight = match in_flight {
        Ok(l) => Fallible::Read(l.map(|(doc, _)| doc)),
        Err(e) => Fallible::Failed { error: e.to_string() },
    };
    match recent {
        Ok(records) => {
            answer.resumable_executions = Some(
                records
                    .iter()
                    .filter(|r| matches!(r.state, ExecutionState::Running | ExecutionState::AwaitingApproval))
                    .map(|r| ExecutionSummary { how: Some(resume_how(r)), ..ExecutionSummary::of(r) })
                    .collect(),
            );
            answer.pages_owed = Some(
                records
                    .iter()
                    .filter(|r| !r.owed.is_empty())
                    .map(|r| OwedPages {
                        execution_id: r.execution_id.clone(),
                        pages_owed: r.owed.iter().map(|o| o.event_type.clone()).collect(),
                    })
                    .collect(),
            );
            answer.recent_executions = Fallible::Read(records.iter().take(5).map(ExecutionSummary::of).collect());
        }
        Err(e) => answer.recent_executions = Fallible::Failed { error: e.to_string() },
    }
    let active_site = docs.active.valid().map(|a| a.site);
    Ok(CommandResponse { outcome: Outcome::Noop, active_site, message: None, details: Details::Status(Box::new(answer)) })
}

/// How to go on with a resumable execution.
fn resume_how(r: &ExecutionRecord) -> String {
    match r.state {
        ExecutionState::AwaitingApproval => "approve it, or cancel it".to_owned(),
        _ if r.done(record::Step::Promote) => format!("{} (its promotion is live: finish it)", r.resume_hint()),
        _ => format!("{} Or cancel it.", r.resume_hint()),
    }
}

/// An execution's answer as a command's. The `command` field says which command ran it: the Lambda glue
/// counts executions by it (`unlock` is not one).
fn execution(command: &str, r: ExecutionResult) -> CommandResponse {
    respond(&r, execution_answer(command, &r))
}

/// The typed fields of an execution's answer to `command`.
fn execution_answer(command: &str, r: &ExecutionResult) -> ExecutionAnswer {
    ExecutionAnswer { command: command.to_owned(), execution: r.fields(), cleanup: None }
}

/// An execution's answer with its fields.
fn respond(r: &ExecutionResult, answer: ExecutionAnswer) -> CommandResponse {
    CommandResponse {
        outcome: r.outcome,
        active_site: r.active_site,
        message: Some(r.message.clone()),
        details: Details::Execution(Box::new(answer)),
    }
}

/// A snapshot on demand (also scheduled): under `snapshots/{timestamp}/`, with its manifest.
async fn snapshot_now<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
) -> Result<CommandResponse, CommandError> {
    let start = engine.clock.now();
    let tree = engine.read_tree().await?;
    let docs = documents::from_tree(&tree, &engine.settings.prefix);
    let id = rfc3339(start).replace(':', "-");
    let folder = domain::layout::snapshot_folder(&id);
    // The workspaces' exports beside the other sources: a snapshot is the schedule's, never a failover's path.
    let sites: Vec<(SiteName, domain::site::SiteConfig)> =
        SiteName::ALL.iter().filter_map(|s| docs.site(*s).valid().map(|c| (*s, c.clone()))).collect();
    let exports = async {
        match &engine.workspaces {
            Some(connector) => {
                let limits = engine.settings.export_limits;
                Some(dr_workspace::export_and_compare(&engine.bucket, connector.as_ref(), &sites, limits, &folder, start).await)
            }
            None => None,
        }
    };
    // Nothing waits for this snapshot: its sources may take their longer deadlines (the Delta assessment's).
    let (files, exports) = tokio::join!(engine.snapshot_files_of(&tree, true), exports);
    let mut files = files?;
    let exports = exports.transpose()?;
    let mut pointers = Vec::new();
    if let Some(e) = &exports {
        files.extend(e.files.iter().cloned());
        pointers.clone_from(&e.pointers);
    }
    let count = files.len();
    let manifest = snapshot::write(&engine.bucket, &folder, &id, files, start).await?;
    dr_workspace::write_pointers(&engine.bucket, pointers).await?;
    let ms = u64::try_from((engine.clock.now() - start).whole_milliseconds()).unwrap_or(0);
    let mut answer = SnapshotAnswer {
        snapshot_manifest_key: Some(manifest),
        files: Some(count),
        timings_ms: Some(BTreeMap::from([("snapshot".to_owned(), ms)])),
        ..SnapshotAnswer::new()
    };
    let mut message = format!("snapshot of {count} files written");
    if let Some(e) = &exports {
        answer.workspaces = Some(dr_workspace::export_summary(e));
        answer.workspace_drift = Some(e.drift.sentence.clone());
        message = format!("{message}; {}", e.drift.sentence);
    }
    Ok(CommandResponse {
        outcome: Outcome::Completed,
        active_site: docs.active.valid().map(|a| a.site),
        message: Some(message),
        details: Details::Snapshot(Box::new(answer)),
    })
}

/// A snapshot whose workspace export is carried over invocations: the other sources' files written now, the
/// export's parts run here while the budget lasts, the rest posted as continuations; the manifest, the
/// workspaces' files, the drift and the pointers are written by the merge, here or in the invocation that
/// finishes the last part.
async fn snapshot_carried<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    connector: &dyn dr_ports::WorkspaceConnector,
    carrier: &dr_workspace::carry::Carrier,
) -> Result<CommandResponse, CommandError> {
    let invocation = tokio::time::Instant::now();
    let start = engine.clock.now();
    let tree = engine.read_tree().await?;
    let docs = documents::from_tree(&tree, &engine.settings.prefix);
    let id = rfc3339(start).replace(':', "-");
    let folder = domain::layout::snapshot_folder(&id);
    let sites: Vec<(SiteName, domain::site::SiteConfig)> =
        SiteName::ALL.iter().filter_map(|s| docs.site(*s).valid().map(|c| (*s, c.clone()))).collect();
    let files = engine.snapshot_files_of(&tree, true).await?;
    let entries: Vec<Value> = files.iter().map(|f| snapshot::manifest_entry(&folder, &f.name, &f.body)).collect();
    let writes = files.into_iter().map(|f| {
        let key = format!("{folder}/{}", f.name);
        let bucket = &engine.bucket;
        async move { bucket.put(&key, f.body, "application/json", dr_ports::WriteCondition::Overwrite).await }
    });
    futures_util::future::try_join_all(writes).await?;
    let urls = sites.iter().map(|(s, c)| (*s, c.workspace_url().to_owned())).collect();
    let key =
        dr_workspace::carry::create(&engine.bucket, &dr_workspace::carry::RunState::new(&id, &folder, start, entries, urls))
            .await?;
    let driven = drive_export(engine, connector, carrier, &sites, &key, None, (invocation, false)).await?;
    Ok(carried_response(engine, &driven, docs.active.valid().map(|a| a.site)).await)
}

/// One invocation's work on a carried export ([`dr_workspace::carry::drive`]).
async fn drive_export<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    connector: &dyn dr_ports::WorkspaceConnector,
    carrier: &dr_workspace::carry::Carrier,
    sites: &[(SiteName, domain::site::SiteConfig)],
    key: &str,
    first: Option<&str>,
    (started, from_message): (tokio::time::Instant, bool),
) -> Result<dr_workspace::carry::Driven, CommandError> {
    let now = || engine.clock.now();
    let cx = dr_workspace::carry::Context {
        bucket: &engine.bucket,
        connector,
        sites,
        limits: engine.settings.export_limits,
        carrier,
        now: &now,
        holder: new_token(),
        started,
        from_message,
    };
    Ok(dr_workspace::carry::drive(&cx, key, first).await?)
}

/// The answer of an invocation that worked on a carried export: as the one-invocation snapshot's when it merged,
/// else how far the export is.
async fn carried_response<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    driven: &dr_workspace::carry::Driven,
    active_site: Option<SiteName>,
) -> CommandResponse {
    let state = &driven.state;
    let pending = state.parts.values().filter(|p| p.stage != dr_workspace::carry::Stage::Done).count();
    let mut answer = SnapshotAnswer {
        export_run: Some(dr_workspace::carry::run_key(&state.folder)),
        invocations: Some(state.invocations),
        parts: Some(CarriedParts { total: state.parts.len(), pending, finished_here: driven.finished, posted: driven.posted }),
        workspaces: Some(dr_workspace::carry::summary(state, engine.clock.now())),
        ..SnapshotAnswer::new()
    };
    let message = match &state.manifest_key {
        Some(manifest) => {
            answer.snapshot_manifest_key = Some(manifest.clone());
            let drift = dr_workspace::read_drift(&engine.bucket).await.ok().flatten().map(|d| d.sentence).unwrap_or_default();
            answer.workspace_drift = Some(drift.clone());
            format!("snapshot written (its workspace export over {} invocation(s)); {drift}", state.invocations)
        }
        None => format!(
            "snapshot's workspace export carried over invocations: {pending} of {} parts pending ({} continuation(s) posted); the manifest is written when the last is in",
            state.parts.len(),
            driven.posted
        ),
    };
    CommandResponse {
        outcome: Outcome::Completed,
        active_site,
        message: Some(message),
        details: Details::Snapshot(Box::new(answer)),
    }
}

/// A continuation of a carried export (an SQS message's body, `{"export_run": key, "part": key or null}`): works
/// on it as [`snapshot_carried`] does. A body that is not one is rejected (retrying cannot fix it).
pub async fn continue_export<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    carrier: &dr_workspace::carry::Carrier,
    body: &str,
) -> Result<CommandResponse, CommandError> {
    let started = tokio::time::Instant::now();
    let parsed: Option<(String, Option<String>)> = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let run = v.get("export_run")?.as_str()?.to_owned();
        Some((run, v.get("part").and_then(Value::as_str).map(str::to_owned)))
    });
    let (Some((key, part)), Some(connector)) = (parsed, engine.workspaces.as_deref()) else {
        return Ok(CommandResponse::rejected(
            "not a continuation of a workspace export: expected {\"export_run\": key, \"part\": key or null}",
            None,
        ));
    };
    let docs = documents::load(&engine.params, &engine.settings.prefix).await?;
    let sites: Vec<(SiteName, domain::site::SiteConfig)> =
        SiteName::ALL.iter().filter_map(|s| docs.site(*s).valid().map(|c| (*s, c.clone()))).collect();
    let driven = drive_export(engine, connector, carrier, &sites, &key, part.as_deref(), (started, true)).await?;
    Ok(carried_response(engine, &driven, docs.active.valid().map(|a| a.site)).await)
}

/// The last `n` execution records, newest first.
async fn recent_records(bucket: &impl ControlBucket, n: usize) -> Result<Vec<ExecutionRecord>, dr_ports::error::StoreError> {
    let keys: Vec<String> =
        bucket.list_recent(domain::layout::EXECUTIONS_PREFIX).await?.into_iter().take(n).map(|(k, _)| k).collect();
    let reads = futures_util::future::join_all(keys.iter().map(|k| bucket.get(k))).await;
    Ok(reads
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .filter_map(|o| serde_json::from_slice::<ExecutionRecord>(&o.body).ok())
        .collect())
}

/// The active site for a rejection's answer, best effort: a rejection must not depend on SSM being up.
async fn active_site<P: ParameterStore, B, N, C>(engine: &Engine<P, B, N, C>) -> Option<SiteName> {
    let docs = documents::load(&engine.params, &engine.settings.prefix).await.ok()?;
    docs.active.valid().map(|a| a.site)
}
