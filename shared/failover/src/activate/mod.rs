//! The activation step, after the verified promotion: workload activation and client redirection.
//!
//! A failover resumes the schedules (and continuous and file-arrival triggers) of the target's jobs that its
//! site document selects (`activation.job_tag`), starts the SQL warehouses it names, pauses the same jobs in the
//! former active workspace (best effort) and moves the stable DNS name (`{prefix}/redirection`). A failback (the
//! promotion that replaces an execution which activated forward) reverses that execution's changes, from its
//! record, completed with what the workspaces show out of place for its target (a tagged job an earlier execution
//! left moved, its failback killed mid-activation and then superseded; see `plan`). A drill records the plan and
//! changes nothing.
//!
//! At size ([`apply`]): the target's changes, the former's and the DNS record's run side by side, each in waves
//! of at most [`IN_FLIGHT`] calls and under a budget of its own ([`TARGET_DEADLINE`], [`FORMER_DEADLINE`]), so
//! the former's pauses are never starved by the target's resumes. Each change's status is sent to the record as
//! it is known and the record is saved compare-and-swap as often as S3 answers (each save carries every status
//! known since the last); the plan is saved before the first call, and a change made but not yet saved when the
//! process dies is re-read on resume and found done.
//!
//! Fencing ([`fence`]): before each wave, the lock's lease is renewed by compare-and-swap on its ETag and judged
//! by the store's clock (S3's `Date`), never the local one, and `{prefix}/active` is read again: the wave goes out
//! only while this attempt provably holds the lock and `active` still names this execution. What remains is a
//! window of one wave: a failback that takes the lock over after the fence answered can still meet the at most
//! [`IN_FLIGHT`] calls of that wave (already sent, or sent within one call's time); the failback re-reads every
//! object before its own change, so it reverses them only if they landed before its re-read.
//!
//! Idempotency: each object is re-read right before its change (found at `after`: already done; found elsewhere
//! than `before`: someone moved it, left alone). Nothing here fails the execution: what could not be done is
//! recorded, paged and reported as to do by hand.

mod apply;
mod fence;
mod plan;

use crate::record::{Step, StepOutcome};
use crate::rules::activation::{Activation, JobView, Redirection, WarehouseView};
use crate::runner::{Run, StepEnd};
use crate::{Engine, names_execution};
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ApiError, WorkspaceApi};
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use dr_workspace::pages::{Listing, every_page};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// Calls in flight per workspace during activation (each change is a re-read then its write, so as many changes
/// are under way). 1,000 changes a side at 150 ms a call need at least 1,000 / 16 waves × 300 ms ≈ 19 s plus a
/// fence per wave; measured (`cargo bench -p tests --bench activation`, debug binaries, local moto and workspaces
/// on a loaded 2-core host): 27 s a side, both sides at once, the invocation 31 s, inside health-alarm's 60 s.
/// Eight would need at least 38 s a side, all of the 40 s budgets.
pub const IN_FLIGHT: usize = 16;

/// The former active workspace's listing: best effort, never blocking (a former that hangs is given up after it).
pub const FORMER_LISTING_DEADLINE: Duration = Duration::from_secs(10);

/// The former active workspace's budget (its listing and its changes together, from the step's start): its own,
/// beside the target's, so that its pauses are never starved by the target's resumes.
pub const FORMER_DEADLINE: Duration = Duration::from_secs(40);

/// The target workspace's listing and changes together (and the DNS change's), from the step's start.
pub const TARGET_DEADLINE: Duration = Duration::from_secs(40);

/// How long a DNS change is polled for `INSYNC`.
const DNS_SYNC_WAIT: Duration = Duration::from_secs(10);

/// The redirection document, under the prefix.
pub const REDIRECTION: &str = "redirection";

/// `RUNNING` for a warehouse up or starting, `STOPPED` for one down or stopping; others as they are.
fn warehouse_level(state: &str) -> &str {
    match state {
        "RUNNING" | "STARTING" => "RUNNING",
        "STOPPED" | "STOPPING" => "STOPPED",
        other => other,
    }
}

/// Every object of a paginated listing, 100 a page. Any error, a page that does not parse or a token the
/// server repeats among them, is the listing's: activation never acts on a partial list of jobs.
async fn list_all(api: &dyn WorkspaceApi, path: &str, items: &str, size_param: &str) -> Result<Vec<Value>, ApiError> {
    let listing = Listing { path, items, page_param: "page_token", size: Some((size_param, 100)) };
    match every_page(listing, &[], |q| async move { api.get(path, &q).await }).await {
        (objects, None) => Ok(objects),
        (_, Some(e)) => Err(e),
    }
}

/// A workspace's jobs, as activation sees them.
pub(crate) async fn jobs_of(api: &dyn WorkspaceApi) -> Result<Vec<JobView>, ApiError> {
    Ok(list_all(api, "/api/2.2/jobs/list", "jobs", "limit").await?.iter().filter_map(JobView::of).collect())
}

/// A workspace's SQL warehouses, as activation sees them.
pub(crate) async fn warehouses_of(api: &dyn WorkspaceApi) -> Result<Vec<WarehouseView>, ApiError> {
    Ok(list_all(api, "/api/2.0/sql/warehouses", "warehouses", "page_size").await?.iter().filter_map(WarehouseView::of).collect())
}

/// `f` under `deadline`, a miss being a timeout.
async fn until<T>(
    deadline: Instant,
    what: &str,
    f: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Timeout(format!("{what} (the activation's deadline)"))),
    }
}

/// The step's clients and budgets.
struct Workspaces {
    clients: BTreeMap<SiteName, Result<Arc<dyn WorkspaceApi>, ApiError>>,
    target: SiteName,
    target_until: Instant,
    former_until: Instant,
    /// Sites that timed out or did not answer: their remaining changes are not attempted.
    dead: BTreeSet<SiteName>,
}

impl Workspaces {
    fn new(target: SiteName) -> Workspaces {
        let start = Instant::now();
        Workspaces {
            clients: BTreeMap::new(),
            target,
            target_until: start + TARGET_DEADLINE,
            former_until: start + FORMER_DEADLINE,
            dead: BTreeSet::new(),
        }
    }
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// The activation step (see the module's documentation).
    pub(super) async fn activate_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        if run.rec.record.activation.is_none() && !self.activation_configured(run) {
            // A site document broken since the decision (mid-incident) hides whether jobs move: finishing without
            // an activation would leave every tagged job running only in the passive workspace. It stops (paged,
            // naming the document); once the document is repaired, the redelivery resumes here and plans.
            if let Some(problem) = unusable_site_document(run) {
                return StepEnd::Stop(StoreError::Transient {
                    service: "SSM",
                    operation: "GetParametersByPath",
                    message: format!(
                        "{problem}: whether tagged jobs move cannot be told; repair the document and the execution resumes"
                    ),
                });
            }
            // Nothing configured: no step, no round trip (the record's steps stay those of a plain failover).
            return StepEnd::Next;
        }
        // The fence: an execution whose promotion was replaced never activates.
        match self.still_active(&run.rec.record.execution_id).await {
            Ok(None) => {}
            Ok(Some(why)) => return self.activation_done(run, start, Some(format!("not run: {why}")), true),
            Err(source) => return StepEnd::Stop(source),
        }
        let mut ws = Workspaces::new(run.rec.record.target);
        if run.rec.record.activation.is_none() {
            match self.record_plan(run, &mut ws).await {
                Ok(true) => {}
                Ok(false) => {
                    let detail = "nothing to activate: no `activation` in the site documents, no {prefix}/redirection";
                    return self.activation_done(run, start, Some(detail.into()), false);
                }
                Err(source) => return StepEnd::Stop(source),
            }
        }
        if !self.settings.drill
            && let Some(end) = self.apply_plan(run, ws).await
        {
            return end;
        }
        let detail = run.rec.record.activation.as_ref().map(Activation::summary);
        self.activation_done(run, start, detail, false)
    }

    /// Plans, and records the plan before the first call (a crash after any call resumes from it); `false` when
    /// nothing is configured.
    async fn record_plan(&self, run: &mut Run, ws: &mut Workspaces) -> Result<bool, StoreError> {
        let Some(mut plan) = self.plan_activation(run, ws).await? else { return Ok(false) };
        plan.drill = self.settings.drill;
        let id = &run.rec.record.execution_id;
        tracing::info!(execution_id = %id, mode = %plan.mode, changes = plan.changes.len(), drill = plan.drill, "activation planned");
        run.rec.record.activation = Some(plan);
        if !self.settings.drill {
            run.rec.save_now(&self.bucket, self.now()).await?;
        }
        Ok(true)
    }

    /// The step recorded done (`noted`: its detail also goes to the record's notes).
    fn activation_done(&self, run: &mut Run, start: OffsetDateTime, detail: Option<String>, noted: bool) -> StepEnd {
        let end = self.now();
        if noted && let Some(d) = &detail {
            run.rec.record.note(start, d.clone());
        }
        run.rec.record.steps.push(self.step(Step::Activate, StepOutcome::Done, start, end, &run.attempt.id, detail));
        StepEnd::Next
    }

    /// `None` while `{prefix}/active` names `execution_id`; else why not (a later execution owns the workspaces).
    async fn still_active(&self, execution_id: &str) -> Result<Option<String>, StoreError> {
        let active_name = self.active_name();
        Ok(match self.params.get_one(&active_name).await? {
            Some(p) if names_execution(&p.value, execution_id) => None,
            _ => Some(format!("{active_name} no longer names this execution (a later one owns the workspaces)")),
        })
    }

    /// Whether either site document has `activation`, or `{prefix}/redirection` exists (no I/O).
    fn activation_configured(&self, run: &Run) -> bool {
        let docs = &run.attempt.docs;
        SiteName::ALL.into_iter().any(|s| docs.site(s).valid().is_some_and(|c| c.document().contains_key("activation")))
            || self.redirection(run).is_some()
    }

    /// The workspace client of `site`, made once per step.
    fn client(&self, run: &Run, ws: &mut Workspaces, site: SiteName) -> Result<Arc<dyn WorkspaceApi>, ApiError> {
        ws.clients
            .entry(site)
            .or_insert_with(|| {
                let connector = self
                    .workspaces
                    .as_ref()
                    .ok_or_else(|| ApiError::NotConfigured("this function has no Databricks connector".into()))?;
                let config = run
                    .attempt
                    .docs
                    .site(site)
                    .valid()
                    .ok_or_else(|| ApiError::NotConfigured(format!("the {site} site document is not usable")))?;
                connector.connect(site, config)
            })
            .clone()
    }

    /// `{prefix}/redirection`, parsed; `None` when absent.
    fn redirection(&self, run: &Run) -> Option<Result<Redirection, String>> {
        let name = self.settings.prefix.child(REDIRECTION);
        let p = run.attempt.tree.iter().find(|p| p.name == name && !p.is_secure())?;
        Some(Redirection::parse(&p.value).map_err(|e| format!("{name}: {e}")))
    }
}

/// The problem of a site document that exists but is not usable (invalid since the decision), if any: it may
/// have held the `activation` that is not seen.
fn unusable_site_document(run: &Run) -> Option<String> {
    SiteName::ALL.into_iter().find_map(|s| match run.attempt.docs.site(s) {
        dr_ports::documents::Doc::Invalid(e) => Some(e.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
