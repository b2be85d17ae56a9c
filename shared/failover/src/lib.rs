//! The failover engine: single flight, a resumable record, snapshot, one atomic promotion, pages, report.
//!
//! Sequential AWS round trips from trigger to verified promotion (the critical path):
//! 1. read the parameter tree and the execution record, side by side (idempotency before any side effect);
//! 2. take the lock (`If-None-Match: *`);
//! 3. snapshot files, the record and the first page, side by side;
//! 4. `PutParameter` of `{prefix}/active` (beside the record's update);
//! 5. label the version and read it back, side by side (beside the record's update).
//!
//! The chat summary, the `OK` page, the report and the lock's release follow the verified promotion.
//!
//! Every step is idempotent or detects that an earlier attempt did it (`{prefix}/active` names the execution
//! that wrote it), so a re-invocation after a crash at any point resumes without promoting twice.

use crate::record::{ExecutionRecord, ExecutionState, NewExecution, Recorder, Step, StepOutcome, StepRecord};
use crate::response::Outcome;
use crate::rules::decision::{self, Action, Decision, DecisionInput, ExecutionKind, Initiator};
use domain::names::SsmPrefix;
use domain::primitives::{ms_between, rfc3339};
use domain::site::SiteName;
use dr_ports::documents::{self, Doc, DrDocuments};
use dr_ports::error::{Retry, StoreError};
use dr_ports::lock::{self, Acquired, LockDoc, LockState};
use dr_ports::snapshot::{self, SnapshotSource};
use dr_ports::{Clock, ControlBucket, Notifier, Parameter, ParameterStore};
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub(crate) mod activate;
pub mod activation;
pub mod activation_view;
pub mod alarm;
pub mod fallible;
pub mod record;
pub mod report;
pub mod response;
pub mod rules;
pub use activate::{FORMER_DEADLINE, IN_FLIGHT as ACTIVATION_IN_FLIGHT, REDIRECTION, TARGET_DEADLINE};
mod approval;
mod ending;
mod entry;
mod messages;
#[cfg(test)]
mod race_tests;
mod rpo;
mod runner;
mod snapshot_step;
mod steps;
#[cfg(test)]
mod tests;

/// How many versions SSM keeps of a parameter.
pub const SSM_VERSIONS_KEPT: usize = 100;

/// From which version of `{prefix}/active` a promotion first makes room for its version (see
/// `make_room_for_a_version`); `check` warns from [`VERSIONS_WARNING`].
const VERSIONS_BEFORE_HYGIENE: i64 = 98;

/// From which version of `{prefix}/active` `check` warns that SSM's 100-version limit is near.
pub const VERSIONS_WARNING: i64 = 90;

/// Settings of the engine, from the function's configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// `DR_ENVIRONMENT`.
    pub environment: String,
    /// `DR_SSM_PREFIX`.
    pub prefix: SsmPrefix,
    /// The region the stack runs in (for the `Region` of pages).
    pub region: String,
    /// How long a running attempt holds the lock: longer than the function's timeout, so that a live
    /// attempt is never taken over, short enough that a crashed one is resumed by the next delivery.
    pub lock_lease: time::Duration,
    /// How long a failover prepared in approval mode holds the lock waiting for `approve`.
    pub approval_window: time::Duration,
    /// How long a replication incident must stay quiet before the scheduled `check` closes it.
    pub replication_quiet: time::Duration,
    /// The function (and request) holding locks, for humans reading them.
    pub holder: String,
    /// The name of the `manual-trigger` function, for the commands printed in pages.
    pub manual_trigger_function: String,
    /// The lock object: [`lock::FAILOVER_LOCK_KEY`], or [`lock::DRILL_LOCK_KEY`] for drills.
    pub lock_key: String,
    /// A drill: messages are `drill.*` events of severity info, never an incident for on-call.
    pub drill: bool,
    /// How the Databricks workspaces' exports are bounded (calls in flight, overall deadline, page size).
    pub export_limits: dr_workspace::export::ExportLimits,
    /// Activation's calls in flight per workspace ([`ACTIVATION_IN_FLIGHT`]; benches compare others).
    pub activation_in_flight: usize,
}

impl EngineSettings {
    /// Settings for tests and examples: environment `prod` in `us-west-2`, the defaults of the configuration
    /// (lease 120 s, approval window 60 min, replication quiet 30 min), the failover lock.
    pub fn example(prefix: SsmPrefix) -> EngineSettings {
        EngineSettings {
            environment: "prod".into(),
            prefix,
            region: "us-west-2".into(),
            lock_lease: time::Duration::seconds(120),
            approval_window: time::Duration::minutes(60),
            replication_quiet: time::Duration::minutes(30),
            holder: "test".into(),
            manual_trigger_function: "dr-prod-manual-trigger".into(),
            lock_key: lock::FAILOVER_LOCK_KEY.into(),
            drill: false,
            export_limits: dr_workspace::export::ExportLimits::default(),
            activation_in_flight: activate::IN_FLIGHT,
        }
    }
}

/// The engine over its ports.
pub struct Engine<P, B, N, C> {
    /// The DR parameters (`{prefix}/active`, the site documents, the policy): what is promoted.
    pub params: P,
    /// The control bucket: locks, execution records, snapshots, reports, quarantine.
    pub bucket: B,
    /// The paging and chat topics.
    pub notifier: N,
    /// Now: leases, cooldowns, time stamps (a fixed clock in tests).
    pub clock: C,
    /// What the engine is configured with (prefix, lease, approval window, ...).
    pub settings: EngineSettings,
    /// Extra snapshot sources (the parameter tree is always included); shared so a drill's engine reuses them.
    pub sources: Vec<std::sync::Arc<dyn SnapshotSource>>,
    /// The Databricks workspaces' API clients, built from the site documents at use (`None`: no export).
    pub workspaces: Option<std::sync::Arc<dyn dr_ports::WorkspaceConnector>>,
    /// Client redirection's DNS records (`None`: the function cannot redirect; a `{prefix}/redirection` document
    /// is then reported as to do by hand).
    pub dns: Option<std::sync::Arc<dyn dr_ports::DnsRecords>>,
}

/// A request to move the active site.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    /// Derived from the trigger (alarm ARN + state-change time; command + client token).
    pub execution_id: String,
    /// Who asks: an alarm (subject to the policy's automatic rules) or a human.
    pub initiator: Initiator,
    /// The site to make active.
    pub target: SiteName,
    /// The reason given (the alarm's, or the human's), kept in the record, the pages and the report.
    pub reason: String,
    /// The trigger's fields, for the record (never a secret).
    pub trigger: Value,
}

/// What an execution answered.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    /// The contract's outcome.
    pub outcome: Outcome,
    /// The execution.
    pub execution_id: String,
    /// Its state, when it has a record.
    pub state: Option<ExecutionState>,
    /// The active site after this answer, when known.
    pub active_site: Option<SiteName>,
    /// What happened, in a sentence.
    pub message: String,
    /// The decision, when one was made or recorded.
    pub decision: Option<Decision>,
    /// Each step's duration.
    pub timings_ms: Map<String, Value>,
    /// The report's key.
    pub report_key: Option<String>,
    /// The lock's holder, when the answer is `in_progress`.
    pub in_flight: Option<LockDoc>,
    /// Pages recorded but not yet published (their topic failed): the next delivery of the trigger, or `check`,
    /// sends them. An automatic trigger should be redelivered while this is not empty.
    pub pages_owed: Vec<String>,
    /// The trigger was answered without being acted on and must be delivered again later (a resume blocked by
    /// another execution's lock, a lock that was just released): an automatic trigger is failed so that its
    /// source redelivers it; a human re-runs the command.
    pub redeliver: bool,
}

impl ExecutionResult {
    /// An answer that ran no step (refusals, rejections, nothing to do).
    pub fn answer(outcome: Outcome, execution_id: &str, active_site: Option<SiteName>, message: String) -> ExecutionResult {
        ExecutionResult {
            outcome,
            execution_id: execution_id.to_owned(),
            state: None,
            active_site,
            message,
            decision: None,
            timings_ms: Map::new(),
            report_key: None,
            in_flight: None,
            pages_owed: Vec::new(),
            redeliver: false,
        }
    }

    /// Whether the lock is held by another attempt of this same execution (a duplicate delivery, or a crashed
    /// attempt whose lease has not expired yet): an automatic trigger should be redelivered later.
    pub fn same_execution_in_flight(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|l| l.execution_id == self.execution_id)
    }

    /// Whether the trigger must be delivered again: its own execution is in flight, or it was answered without
    /// being acted on ([`ExecutionResult::redeliver`]).
    pub fn should_redeliver(&self) -> bool {
        self.redeliver || self.same_execution_in_flight()
    }

    /// How far the execution got, as the fields of an answer (a command's, an alarm's).
    pub fn fields(&self) -> crate::response::ExecutionFields {
        crate::response::ExecutionFields {
            execution_id: self.execution_id.clone(),
            state: self.state,
            timings_ms: self.timings_ms.iter().map(|(step, ms)| (step.clone(), ms.as_u64().unwrap_or(0))).collect(),
            report_key: self.report_key.clone(),
            decision: self.decision.clone(),
            in_flight: self.in_flight.clone(),
            pages_owed: self.pages_owed.clone(),
            retry: self.redeliver,
        }
    }
}

/// Why an execution could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Nothing was changed: the first reads failed.
    #[error("execution {execution_id} could not start: {source}")]
    NotStarted {
        /// The execution.
        execution_id: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// Stopped at a step after recording it; a re-invocation of the same trigger resumes.
    #[error("execution {execution_id} stopped at step {step}: {source}. {hint}", step = step.as_str())]
    Stopped {
        /// The execution.
        execution_id: String,
        /// The step that failed.
        step: Step,
        /// The failure.
        #[source]
        source: StoreError,
        /// How to resume.
        hint: String,
    },
    /// The promotion was written but reading it back did not show it: a human must look.
    #[error("execution {execution_id}: verification failed: {problem}")]
    VerificationFailed {
        /// The execution.
        execution_id: String,
        /// What differed.
        problem: String,
    },
    /// A stored record or lock could not be understood.
    #[error("execution {execution_id}: {problem}")]
    Corrupt {
        /// The execution.
        execution_id: String,
        /// What is wrong.
        problem: String,
    },
}

impl EngineError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            EngineError::NotStarted { source, .. } | EngineError::Stopped { source, .. } => source.retry(),
            EngineError::VerificationFailed { .. } | EngineError::Corrupt { .. } => Retry::Futile,
        }
    }
}

/// What the engine's steps answer.
type EngineResult<T> = Result<T, EngineError>;

/// The lock we hold.
#[derive(Debug, Clone)]
struct Held {
    doc: LockDoc,
    etag: String,
    /// The store's clock at our last write of it (`None`: the store told no time; the local clock judges).
    store: Option<lock::StoreClock>,
}

impl Held {
    /// The store's time now at its latest, as the holder judges what is left of its lease (the local clock
    /// `local` when the store told none).
    fn store_now(&self, local: OffsetDateTime) -> OffsetDateTime {
        self.store.map_or(local, |c| c.now(local))
    }

    /// The store's time now at its earliest, to count a new expiry from: no later than any taker's reading, so
    /// the lease it writes ends for them when it ends for us.
    fn store_earliest(&self, local: OffsetDateTime) -> OffsetDateTime {
        self.store.map_or(local, |c| c.now(local) - lock::DATE_RESOLUTION)
    }
}

/// Everything one attempt works with.
struct Attempt {
    id: String,
    tree: Vec<Parameter>,
    docs: DrDocuments,
    /// Snapshot files collected while the lock was being taken (so the sources' reads cost no round trip).
    prefetched: Option<Vec<snapshot::SnapshotFile>>,
}

/// The SSM version of a parameter in the tree (`None`: absent).
fn version_of(tree: &[Parameter], name: &str) -> Option<i64> {
    tree.iter().find(|p| p.name == name).map(|p| p.version)
}

/// The raw JSON of a parameter in the tree.
fn raw_doc(tree: &[Parameter], name: &str) -> Option<Value> {
    tree.iter().find(|p| p.name == name && !p.is_secure()).and_then(|p| serde_json::from_str(&p.value).ok())
}
impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn active_name(&self) -> String {
        self.settings.prefix.child(documents::ACTIVE)
    }

    /// Runs (or answers for) the execution of `req`.
    pub async fn run(&self, req: MoveRequest) -> EngineResult<ExecutionResult> {
        let started = self.now();
        let attempt_id = domain::primitives::new_token();
        // Round trip 1: the tree, the record and (for an alarm) the lock, side by side. An alarm reads the lock
        // because a failback in flight when the primary's alarm fires is paged, not a no-op.
        // So does the alarm's pages document: an OK later than this ALARM, handled first, makes it a no-op.
        let is_alarm = matches!(req.initiator, Initiator::Alarm { .. });
        // Its lease is judged by the store's time at the read (`held_at`), not the local clock.
        let holder =
            async { if is_alarm { lock::read_at(&self.bucket, &self.settings.lock_key, started).await } else { Ok(None) } };
        let arn = req.trigger["alarm_arn"].as_str().filter(|_| is_alarm);
        let pages = async {
            match arn {
                Some(arn) => self.bucket.get(&domain::layout::alarm_pages(arn)).await,
                None => Ok(None),
            }
        };
        let (tree, existing, holder, pages) =
            tokio::try_join!(self.read_tree(), record::read(&self.bucket, &req.execution_id), holder, pages)
                .map_err(|source| EngineError::NotStarted { execution_id: req.execution_id.clone(), source })?;
        let mut existing = existing;
        if let (Some(rec), Some((doc, etag, held_at))) = (existing.as_mut(), &holder)
            && rec.record.state.is_terminal()
            && doc.execution_id == req.execution_id
            && (doc.state != LockState::Running || doc.expired(*held_at))
        {
            // An ending whose own release was lost (an OK that withdrew an approval, then timed out) leaves a lock
            // nobody works under: a redelivery frees it (conditional on the ETag read), or it would block every
            // other execution for its window. A live (`running`, in lease) lock is its attempt's to release.
            // The attempt that held it died after the execution ended: it may have paged an ALARM from what it
            // read before the end (its crossing check died with it). One OK again, by the delivery that frees it —
            // before freeing it: a delivery that dies in between leaves the lock, so the next one sends it again
            // (freed first, the next delivery would find nothing to do and the ALARM would stay last).
            if rec.record.resolved() {
                self.resolve_again(rec, "an attempt that died holding its lock may have paged after the incident ended").await;
            }
            match self.bucket.delete_if_match(&self.settings.lock_key, etag).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(execution_id = %req.execution_id, error = %e, "could not release the lock of an ended execution");
                }
            }
        }
        let in_flight = holder.filter(|(doc, _, at)| !doc.expired(*at)).map(|(doc, _, _)| doc.execution_id);
        let alarm_time = req.trigger["state_change_time"].as_str().and_then(crate::rules::alarm::parse_timestamp);
        let recovered_at = pages
            .and_then(|o| serde_json::from_slice::<crate::rules::alarm_pages::AlarmPages>(&o.body).ok())
            .zip(alarm_time)
            .and_then(|(p, t)| p.recovered_since(t));
        let docs = documents::from_tree(&tree, &self.settings.prefix);
        let attempt = Attempt { id: attempt_id, tree, docs, prefetched: None };
        if let Some(rec) = existing {
            return self.answer_existing(rec, attempt, None).await;
        }

        let decision = decision::decide(&DecisionInput {
            initiator: &req.initiator,
            target: req.target,
            active: attempt.docs.active.valid(),
            policy: self.policy_of(&attempt.docs),
            target_problem: attempt.docs.site(req.target).problem(),
            in_flight: in_flight.as_deref(),
            recovered_at,
            now: started,
        });
        let decided = self.now();
        tracing::info!(execution_id = %req.execution_id, action = ?decision.action, target = %req.target, "decision");
        let mut rec = self.new_record(&req, decision.clone(), &attempt, started);
        rec.steps.push(self.step(
            Step::Decide,
            StepOutcome::Done,
            started,
            decided,
            &attempt.id,
            Some(format!("{:?}", decision.action)),
        ));

        match decision.action {
            Action::Ignore => Ok(ExecutionResult {
                outcome: Outcome::Noop,
                execution_id: req.execution_id,
                state: None,
                active_site: attempt.docs.active.valid().map(|a| a.site),
                message: decision.reasons.join("; "),
                decision: Some(decision),
                timings_ms: Map::new(),
                report_key: None,
                in_flight: None,
                pages_owed: Vec::new(),
                redeliver: false,
            }),
            Action::Noop | Action::Refuse | Action::NotifyOnly => self.record_only(Recorder::new(rec), attempt).await,
            Action::Execute | Action::AwaitApproval => {
                let awaiting = decision.action == Action::AwaitApproval;
                // The snapshot sources read while the lock is taken: their answers wait for the snapshot step.
                let (held, files) = tokio::join!(self.take_lock(&mut rec, &attempt, false), self.snapshot_files(&attempt));
                let held = match held? {
                    Ok(held) => held,
                    Err(holder)
                        if holder.execution_id != req.execution_id && matches!(req.initiator, Initiator::Alarm { .. }) =>
                    {
                        return Box::pin(self.join_holder(rec, attempt, holder)).await;
                    }
                    Err(holder) => return Ok(self.in_progress_answer(&req.execution_id, &attempt, holder, None)),
                };
                let mut attempt = attempt;
                attempt.prefetched = files.ok();
                let rec = Recorder::new(rec);
                if awaiting { self.prepare_for_approval(rec, attempt, held).await } else { self.drive(rec, attempt, held).await }
            }
        }
    }

    /// The parameter tree under the prefix, without drill copies (`{prefix}/drills/...`).
    pub async fn read_tree(&self) -> Result<Vec<Parameter>, StoreError> {
        let drills = format!("{}/drills/", self.settings.prefix);
        let mut tree = self.params.get_tree(self.settings.prefix.as_str()).await?;
        tree.retain(|p| !p.name.starts_with(&drills));
        Ok(tree)
    }

    fn policy_of<'d>(&self, docs: &'d DrDocuments) -> Result<&'d domain::policy::Policy, String> {
        static DEFAULT: std::sync::OnceLock<domain::policy::Policy> = std::sync::OnceLock::new();
        match &docs.policy {
            None => Ok(DEFAULT.get_or_init(domain::policy::Policy::default)),
            Some(Doc::Valid { value, .. }) => Ok(value),
            Some(other) => Err(other.problem().unwrap_or_default()),
        }
    }

    fn new_record(&self, req: &MoveRequest, decision: Decision, attempt: &Attempt, now: OffsetDateTime) -> ExecutionRecord {
        let new = NewExecution {
            execution_id: req.execution_id.clone(),
            environment: self.settings.environment.clone(),
            kind: if self.settings.drill { ExecutionKind::Drill } else { ExecutionKind::toward(req.target) },
            initiator: req.initiator.clone(),
            reason: req.reason.clone(),
            trigger: req.trigger.clone(),
            target: req.target,
            decision,
            config_before: raw_doc(&attempt.tree, &self.active_name()),
            decided_on_version: version_of(&attempt.tree, &self.active_name()),
        };
        ExecutionRecord::new(new, now)
    }

    fn step(
        &self,
        step: Step,
        outcome: StepOutcome,
        start: OffsetDateTime,
        end: OffsetDateTime,
        attempt: &str,
        detail: Option<String>,
    ) -> StepRecord {
        StepRecord {
            step,
            outcome,
            started_at: rfc3339(start),
            ended_at: rfc3339(end),
            duration_ms: ms_between(start, end),
            attempt_id: attempt.to_owned(),
            detail,
        }
    }

    /// Takes the lock; `None` when someone holds it.
    /// The lock document of an attempt that runs `execution_id` from `now`, with the short lease.
    pub(crate) fn running_lock(&self, execution_id: &str, attempt_id: &str, now: OffsetDateTime) -> LockDoc {
        LockDoc {
            execution_id: execution_id.to_owned(),
            attempt_id: attempt_id.to_owned(),
            state: LockState::Running,
            acquired_at: rfc3339(now),
            lease_expires_at: rfc3339(now + self.settings.lock_lease),
            holder: self.settings.holder.clone(),
        }
    }

    /// Takes the lock for this attempt (always with the short lease: an approval's long lease is set only once
    /// its record and page exist, so that an attempt that dies before never holds the lock for an hour);
    /// `Err(holder)` when someone else holds it.
    async fn take_lock(
        &self,
        rec: &mut ExecutionRecord,
        attempt: &Attempt,
        approving: bool,
    ) -> EngineResult<Result<Held, LockDoc>> {
        let start = self.now();
        let doc = self.running_lock(&rec.execution_id, &attempt.id, start);
        let acquired = lock::acquire(&self.bucket, &self.settings.lock_key, &doc, approving, start)
            .await
            .map_err(|source| EngineError::NotStarted { execution_id: rec.execution_id.clone(), source })?;
        match acquired {
            Acquired::Held(holder) => {
                tracing::info!(execution_id = %rec.execution_id, holder = %holder.execution_id, "lock held");
                Ok(Err(holder))
            }
            Acquired::Yes { etag, doc, store, took_over } => {
                let end = self.now();
                let detail = match &took_over {
                    Some(prev) => {
                        let what = format!(
                            "took over the lock of execution {} (attempt {}, state {:?}, lease until {})",
                            prev.execution_id, prev.attempt_id, prev.state, prev.lease_expires_at
                        );
                        rec.note(end, what.clone());
                        Some(what)
                    }
                    None => None,
                };
                rec.steps.push(self.step(Step::Lock, StepOutcome::Done, start, end, &attempt.id, detail));
                Ok(Ok(Held { doc, etag, store }))
            }
        }
    }

    fn result_of(
        &self,
        rec: &ExecutionRecord,
        outcome: Outcome,
        active_site: Option<SiteName>,
        message: String,
    ) -> ExecutionResult {
        ExecutionResult {
            outcome,
            execution_id: rec.execution_id.clone(),
            state: Some(rec.state),
            active_site,
            message,
            decision: Some(rec.decision.clone()),
            timings_ms: rec.timings(),
            report_key: rec.report_key.clone(),
            in_flight: None,
            pages_owed: rec.owed.iter().map(|o| o.event_type.clone()).collect(),
            redeliver: false,
        }
    }
}

/// Whether an active document was written by `execution_id`.
fn names_execution(value: &str, execution_id: &str) -> bool {
    serde_json::from_str::<Value>(value)
        .ok()
        .and_then(|v| v.get("execution_id").and_then(Value::as_str).map(|e| e == execution_id))
        == Some(true)
}
