//! The `sync` command (plan, or apply with the typed confirmation) and what the scheduled `check` says of sync:
//! the plan's size, and the apply of the kinds the policy's `sync_on_check` names (never a prune).

use crate::command::Sync;
use dr_failover::Engine;
use dr_failover::response::{CommandResponse, Details, Outcome, SyncAnswer};
use dr_ports::documents::{self, DrDocuments};
use dr_ports::error::StoreError;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use dr_workspace::sync::apply::{ApplyOptions, apply};
use dr_workspace::sync::{ApplyOnCheck, PlannedOnCheck, SyncError, SyncOnCheck, prepare, view};
use std::collections::BTreeSet;

/// Runs `sync`: answers the plan; with `apply`, applies it to the standby and answers its record.
pub async fn run<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    y: &Sync,
) -> Result<CommandResponse, StoreError> {
    let docs = documents::load(&engine.params, &engine.settings.prefix).await?;
    let active = docs.active.valid().map(|a| a.site);
    let prepared = match prepare(&engine.bucket, &docs).await {
        Ok(p) => p,
        Err(SyncError::Store(e)) => return Err(e),
        Err(SyncError::NotReady(why)) => return Ok(CommandResponse::rejected(format!("sync: {why}"), active)),
    };
    let mut answer = SyncAnswer { command: "sync".into(), plan: view(&prepared), apply: None, record_key: None };
    if !y.apply {
        let message = Some(format!("{} ({} to {})", prepared.plan.sentence(), prepared.active, prepared.standby));
        let details = Details::Sync(Box::new(answer));
        return Ok(CommandResponse { outcome: Outcome::Noop, active_site: active, message, details });
    }
    if y.confirm.as_deref() != Some(prepared.standby.as_str()) {
        return Ok(CommandResponse::rejected(
            format!(
                "sync: field `confirm` is {:?}; the standby is {:?} (sync writes only to it): type its name to confirm",
                y.confirm.as_deref().unwrap_or_default(),
                prepared.standby.as_str()
            ),
            active,
        ));
    }
    let Some(connector) = engine.workspaces.as_deref() else {
        return Ok(CommandResponse::rejected("sync: this function has no workspace connector", active));
    };
    let opts = ApplyOptions { prune: y.prune, requested_by: y.requested_by.clone().unwrap_or_default(), kinds: None };
    let journal = match apply(&engine.bucket, connector, &docs, &prepared, &opts, &engine.clock).await {
        Ok(j) => j,
        Err(SyncError::Store(e)) => return Err(e),
        Err(SyncError::NotReady(why)) => return Ok(CommandResponse::rejected(format!("sync: {why}"), active)),
    };
    let stood_down = journal.outcome.as_deref().is_some_and(|o| o.starts_with("stood down"));
    let message = Some(format!("sync apply {}: {}", journal.plan_id, journal.outcome.clone().unwrap_or_default()));
    answer.record_key = Some(domain::layout::databricks_sync(&journal.plan_id));
    answer.apply = Some(journal);
    let outcome = if stood_down { Outcome::Superseded } else { Outcome::Completed };
    Ok(CommandResponse { outcome, active_site: active, message, details: Details::Sync(Box::new(answer)) })
}

/// What `check` says of sync: the plan's counts and sentence; with the policy's `sync_on_check`, the apply of
/// those kinds (no prune). Errors are reported, never raised: `check` goes on.
pub async fn on_check<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock>(
    engine: &Engine<P, B, N, C>,
    docs: &DrDocuments,
) -> SyncOnCheck {
    let prepared = match prepare(&engine.bucket, docs).await {
        Ok(p) => p,
        Err(e) => return SyncOnCheck::Unavailable { unavailable: e.to_string() },
    };
    let mut planned = PlannedOnCheck {
        from: prepared.active,
        to: prepared.standby,
        plan_id: prepared.plan_id.clone(),
        counts: prepared.plan.counts().into_iter().map(|(k, n)| (k.to_owned(), n)).collect(),
        sentence: prepared.plan.sentence(),
        apply: None,
    };
    let kinds: BTreeSet<_> = docs.effective_policy().map(|p| p.sync_on_check).unwrap_or_default().into_iter().collect();
    if let Some(connector) = engine.workspaces.as_deref().filter(|_| !kinds.is_empty()) {
        let opts = ApplyOptions { prune: false, requested_by: "check (policy sync_on_check)".into(), kinds: Some(kinds) };
        planned.apply = Some(match apply(&engine.bucket, connector, docs, &prepared, &opts, &engine.clock).await {
            Ok(j) => ApplyOnCheck::Applied { plan_id: j.plan_id.clone(), outcome: j.outcome.clone(), counts: j.counts() },
            Err(e) => ApplyOnCheck::Failed { error: e.to_string() },
        });
    }
    SyncOnCheck::Planned(Box::new(planned))
}
