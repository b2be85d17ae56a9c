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

use super::documents::{self, Doc, DrDocuments};
use super::lock::{self, Acquired, LockDoc, LockState};
use super::record::{self, ExecutionRecord, ExecutionState, Recorder, SentMessage, Step, StepOutcome, StepRecord};
use super::report;
use super::response::Outcome;
use super::snapshot::{self, SnapshotContext, SnapshotSource};
use crate::error::{Retry, StoreError};
use crate::ports::{Channel, Clock, ControlBucket, Notifier, OutgoingMessage, Parameter, ParameterStore, WriteCondition};
use domain::decision::{self, Action, Decision, DecisionInput, ExecutionKind, Fence, FenceInput, Initiator};
use domain::names::SsmPrefix;
use domain::notification::{self, ChatNote, Envelope, Page, PageState, Severity};
use domain::primitives::{ms_between, rfc3339};
use domain::site::{ActiveConfig, SiteName};
use futures_util::future::try_join_all;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

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
        }
    }

    /// Whether the lock is held by another attempt of this same execution (a duplicate delivery, or a crashed
    /// attempt whose lease has not expired yet): an automatic trigger should be redelivered later.
    pub fn same_execution_in_flight(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|l| l.execution_id == self.execution_id)
    }

    /// The answer as JSON fields (for the manual-trigger response).
    pub fn to_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("execution_id".into(), json!(self.execution_id));
        if let Some(s) = self.state {
            m.insert("state".into(), json!(s));
        }
        m.insert("timings_ms".into(), Value::Object(self.timings_ms.clone()));
        m.insert("report_key".into(), json!(self.report_key));
        if let Some(d) = &self.decision {
            m.insert("decision".into(), json!(d));
        }
        if let Some(l) = &self.in_flight {
            m.insert("in_flight".into(), json!(l));
        }
        m
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
struct Held {
    doc: LockDoc,
    etag: String,
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
        // Round trip 1: the tree and the record, side by side.
        let (tree, existing) = tokio::try_join!(self.read_tree(), record::read(&self.bucket, &req.execution_id))
            .map_err(|source| EngineError::NotStarted { execution_id: req.execution_id.clone(), source })?;
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
            }),
            Action::Noop | Action::Refuse | Action::NotifyOnly => self.record_only(Recorder::new(rec), attempt).await,
            Action::Execute | Action::AwaitApproval => {
                let awaiting = decision.action == Action::AwaitApproval;
                // The snapshot sources read while the lock is taken: their answers wait for the snapshot step.
                let (held, files) =
                    tokio::join!(self.take_lock(&mut rec, &attempt, awaiting, false), self.snapshot_files(&attempt));
                let Some(held) = held? else {
                    return self.in_progress_answer(&req.execution_id, &attempt).await;
                };
                let mut attempt = attempt;
                attempt.prefetched = files.ok();
                let rec = Recorder::new(rec);
                if awaiting { self.prepare_for_approval(rec, attempt, held).await } else { self.drive(rec, attempt, held).await }
            }
        }
    }

    /// Continues a failover waiting in approval mode.
    pub async fn approve(&self, execution_id: &str, approver: &str) -> EngineResult<ExecutionResult> {
        let attempt_id = domain::primitives::new_token();
        let (tree, existing) = tokio::try_join!(self.read_tree(), record::read(&self.bucket, execution_id))
            .map_err(|source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source })?;
        let docs = documents::from_tree(&tree, &self.settings.prefix);
        let attempt = Attempt { id: attempt_id, tree, docs, prefetched: None };
        let Some(rec) = existing else {
            let active_site = attempt.docs.active.valid().map(|a| a.site);
            return Ok(ExecutionResult::answer(
                Outcome::Rejected,
                execution_id,
                active_site,
                format!("no execution {execution_id:?} exists; expected the id of a failover awaiting approval (see status)"),
            ));
        };
        self.answer_existing(rec, attempt, Some(approver)).await
    }

    /// The parameter tree under the prefix, without drill copies (`{prefix}/drills/...`).
    pub(crate) async fn read_tree(&self) -> Result<Vec<Parameter>, StoreError> {
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
        let state = match decision.action {
            Action::Execute | Action::Ignore => ExecutionState::Running,
            Action::AwaitApproval => ExecutionState::AwaitingApproval,
            Action::NotifyOnly => ExecutionState::Notified,
            Action::Refuse => ExecutionState::Refused,
            Action::Noop => ExecutionState::Noop,
        };
        ExecutionRecord {
            execution_id: req.execution_id.clone(),
            environment: self.settings.environment.clone(),
            kind: if self.settings.drill { ExecutionKind::Drill } else { ExecutionKind::toward(req.target) },
            initiator: req.initiator.clone(),
            reason: req.reason.clone(),
            trigger: req.trigger.clone(),
            target: req.target,
            decision,
            state,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
            steps: Vec::new(),
            config_before: raw_doc(&attempt.tree, &self.active_name()),
            config_after: None,
            promoted_version: None,
            snapshot_manifest_key: None,
            decided_on_version: version_of(&attempt.tree, &self.active_name()),
            approved_by: None,
            rpo_estimate: None,
            messages: Vec::new(),
            report_key: None,
            notes: Vec::new(),
            error: None,
        }
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
    async fn take_lock(
        &self,
        rec: &mut ExecutionRecord,
        attempt: &Attempt,
        awaiting: bool,
        approving: bool,
    ) -> EngineResult<Option<Held>> {
        let start = self.now();
        let lease = if awaiting { self.settings.approval_window } else { self.settings.lock_lease };
        let doc = LockDoc {
            execution_id: rec.execution_id.clone(),
            attempt_id: attempt.id.clone(),
            state: if awaiting { LockState::AwaitingApproval } else { LockState::Running },
            acquired_at: rfc3339(start),
            lease_expires_at: rfc3339(start + lease),
            holder: self.settings.holder.clone(),
        };
        let acquired = lock::acquire(&self.bucket, &self.settings.lock_key, &doc, approving, start)
            .await
            .map_err(|source| EngineError::NotStarted { execution_id: rec.execution_id.clone(), source })?;
        match acquired {
            Acquired::Held(holder) => {
                tracing::info!(execution_id = %rec.execution_id, holder = %holder.execution_id, "lock held");
                Ok(None)
            }
            Acquired::Yes { etag, took_over } => {
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
                Ok(Some(Held { doc, etag }))
            }
        }
    }

    async fn in_progress_answer(&self, execution_id: &str, attempt: &Attempt) -> EngineResult<ExecutionResult> {
        let holder = lock::read(&self.bucket, &self.settings.lock_key).await.ok().flatten().map(|(d, _)| d);
        let message = match &holder {
            Some(h) if h.execution_id == execution_id => format!(
                "execution {execution_id} is already in flight (attempt {}, {:?}, lease until {}); this delivery changed nothing",
                h.attempt_id, h.state, h.lease_expires_at
            ),
            Some(h) => format!(
                "another execution is in flight: {} ({:?}, lease until {}); this trigger changed nothing",
                h.execution_id, h.state, h.lease_expires_at
            ),
            None => "the lock was busy and has just been released; deliver the trigger again".to_owned(),
        };
        Ok(ExecutionResult {
            outcome: Outcome::InProgress,
            execution_id: execution_id.to_owned(),
            state: None,
            active_site: attempt.docs.active.valid().map(|a| a.site),
            message,
            decision: None,
            timings_ms: Map::new(),
            report_key: None,
            in_flight: holder,
        })
    }

    /// Answers for an execution that already has a record: the first result, or a resume.
    async fn answer_existing(
        &self,
        mut rec: Recorder,
        attempt: Attempt,
        approver: Option<&str>,
    ) -> EngineResult<ExecutionResult> {
        let state = rec.record.state;
        let active_site = attempt.docs.active.valid().map(|a| a.site);
        if state.is_terminal() {
            let outcome = if approver.is_some() && state != ExecutionState::Completed {
                Outcome::Rejected
            } else {
                Outcome::AlreadyCompleted
            };
            return Ok(self.result_of(
                &rec.record,
                outcome,
                active_site,
                format!("execution {} already ended: {:?}", rec.record.execution_id, state),
            ));
        }
        match (state, approver) {
            (ExecutionState::AwaitingApproval, None) => {
                let msg = format!(
                    "execution {} awaits approval: {}",
                    rec.record.execution_id,
                    self.approve_command(&rec.record.execution_id)
                );
                Ok(self.result_of(&rec.record, Outcome::AwaitingApproval, active_site, msg))
            }
            (ExecutionState::Running, Some(_)) => {
                let msg = format!("execution {} is not waiting for approval: it is running", rec.record.execution_id);
                Ok(self.result_of(&rec.record, Outcome::InProgress, active_site, msg))
            }
            (ExecutionState::AwaitingApproval, Some(approver)) => {
                // Re-check with what is true now: time has passed since the plan was made.
                let now = self.now();
                let d = decision::decide(&DecisionInput {
                    initiator: &Initiator::Human { requested_by: approver.to_owned() },
                    target: rec.record.target,
                    active: attempt.docs.active.valid(),
                    policy: self.policy_of(&attempt.docs),
                    target_problem: attempt.docs.site(rec.record.target).problem(),
                    now,
                });
                rec.record.note(now, format!("approved by {approver}: {:?} ({})", d.action, d.reasons.join("; ")));
                if d.action != Action::Execute {
                    rec.record.state = if d.action == Action::Noop { ExecutionState::Noop } else { ExecutionState::Refused };
                    rec.record.decision.reasons.extend(d.reasons.iter().map(|r| format!("at approval: {r}")));
                    let _ = lock::release(&self.bucket, &self.settings.lock_key, &rec.record.execution_id).await;
                    return self.record_only(rec, attempt).await;
                }
                rec.record.decision.overrides.extend(d.overrides);
                rec.record.approved_by = Some(approver.to_owned());
                // The approval is a new decision: the fence compares with what the approver saw.
                rec.record.decided_on_version = version_of(&attempt.tree, &self.active_name());
                let Some(held) = self.take_lock(&mut rec.record, &attempt, false, true).await? else {
                    return self.in_progress_answer(&rec.record.execution_id.clone(), &attempt).await;
                };
                rec.record.state = ExecutionState::Running;
                self.drive(rec, attempt, held).await
            }
            _ => {
                // Running: an earlier attempt stopped or crashed. Resume under the lock.
                let Some(held) = self.take_lock(&mut rec.record, &attempt, false, false).await? else {
                    return self.in_progress_answer(&rec.record.execution_id.clone(), &attempt).await;
                };
                let now = self.now();
                rec.record.note(now, format!("attempt {} resumes the execution", attempt.id));
                self.drive(rec, attempt, held).await
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
        }
    }

    fn approve_command(&self, execution_id: &str) -> String {
        format!(
            "aws lambda invoke --function-name {} --cli-binary-format raw-in-base64-out --payload '{{\"command\":\"approve\",\"execution_id\":\"{execution_id}\",\"requested_by\":\"<you>\"}}' /dev/stdout",
            self.settings.manual_trigger_function
        )
    }

    fn envelope(&self, rec: &ExecutionRecord, event: &str, severity: Severity) -> Envelope {
        Envelope {
            event_type: format!("{}.{event}", rec.kind),
            // A drill never wakes anyone: subscription filter policies route `info` away from paging.
            severity: if self.settings.drill { Severity::Info } else { severity },
            environment: self.settings.environment.clone(),
            incident_key: format!("dr-{}-{}", self.settings.environment, rec.execution_id),
        }
    }

    fn page(&self, rec: &ExecutionRecord, event: &str, state: PageState, severity: Severity, reason: String) -> OutgoingMessage {
        let mut details = BTreeMap::from([
            ("ExecutionId".to_owned(), json!(rec.execution_id)),
            ("Target".to_owned(), json!(rec.target)),
            ("Decision".to_owned(), json!(rec.decision.action)),
        ]);
        if rec.state == ExecutionState::AwaitingApproval {
            details.insert("ApproveCommand".into(), json!(self.approve_command(&rec.execution_id)));
        }
        notification::paging_message(&Page {
            envelope: self.envelope(rec, event, severity),
            alarm_name: format!("DR {} {} {}", self.settings.environment, rec.kind, rec.execution_id),
            state,
            reason,
            description: format!(
                "Databricks DR {} of environment {} toward the {} site ({})",
                rec.kind, self.settings.environment, rec.target, rec.reason
            ),
            time: rfc3339(self.now()),
            region: self.settings.region.clone(),
            details,
        })
    }

    fn chat(
        &self,
        rec: &ExecutionRecord,
        event: &str,
        severity: Severity,
        title: String,
        description: String,
        next: Vec<String>,
    ) -> OutgoingMessage {
        notification::chat_message(&ChatNote {
            envelope: self.envelope(rec, event, severity),
            title,
            description,
            next_steps: next,
        })
    }

    /// Noop, refuse, notify-only: record the decision (create-only: the record is the idempotency key) and page.
    async fn record_only(&self, mut rec: Recorder, attempt: Attempt) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        match rec.save_now(&self.bucket, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                // A concurrent delivery of the same trigger recorded it first: answer with its result.
                let existing = record::read(&self.bucket, &id)
                    .await
                    .map_err(|source| EngineError::NotStarted { execution_id: id.clone(), source })?
                    .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "record vanished".into() })?;
                // Boxed: answering an existing record can itself record a decision (recursion).
                return Box::pin(self.answer_existing(existing, attempt, None)).await;
            }
            Err(source) => return Err(EngineError::NotStarted { execution_id: id, source }),
        }
        let reasons = rec.record.decision.reasons.join("; ");
        let (event, page, severity, outcome) = match rec.record.state {
            ExecutionState::Refused => ("refused", true, Severity::Critical, Outcome::Rejected),
            ExecutionState::Notified => ("notify_only", true, Severity::Critical, Outcome::Noop),
            _ => ("noop", false, Severity::Info, Outcome::Noop),
        };
        let title = format!(
            "DR {}: {} toward {} {}",
            self.settings.environment,
            rec.record.kind,
            rec.record.target,
            event.replace('_', "-")
        );
        let page_msg = page.then(|| {
            self.page(
                &rec.record,
                event,
                PageState::Alarm,
                severity,
                format!("{title}. {reasons}. A human must decide: run `status`, then `failover` if needed."),
            )
        });
        let chat =
            self.chat(&rec.record, event, severity, title, reasons.clone(), vec!["Run `status` to see both sites.".into()]);
        let announced = self.publish_event(&rec.record, event, page_msg, chat).await;
        let announced = match announced {
            Ok(sent) => {
                rec.record.messages.extend(sent);
                Ok(())
            }
            Err(e) => {
                rec.record.note(self.now(), format!("could not send the {event} messages: {e}"));
                Err(e)
            }
        };
        let now = self.now();
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the messages of a recorded decision");
        }
        announced.map_err(|source| EngineError::Stopped {
            execution_id: id.clone(),
            step: Step::Notify,
            source,
            hint: "the decision is recorded; the page was not sent".into(),
        })?;
        let active = attempt.docs.active.valid().map(|a| a.site);
        Ok(self.result_of(&rec.record, outcome, active, reasons))
    }

    /// Approval mode: snapshot, write the plan, page with the exact `approve` command, keep the lock, wait.
    async fn prepare_for_approval(&self, mut rec: Recorder, attempt: Attempt, held: Held) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let start = self.now();
        let files = self.snapshot_files(&attempt).await;
        if let Ok(f) = &files {
            rec.record.rpo_estimate = Some(rpo_estimate(f));
        }
        let folder = domain::layout::snapshot_folder(&id);
        let plan = ActiveConfig::promotion_document(
            rec.record.target,
            attempt
                .docs
                .site(rec.record.target)
                .valid()
                .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "target vanished".into() })?,
            &id,
            "<at promotion>",
        );
        rec.record.config_after = Some(Value::Object(plan));
        let reason = format!(
            "DR {}: failover toward {} awaits approval ({}). Approve with: {}",
            self.settings.environment,
            rec.record.target,
            rec.record.decision.reasons.join("; "),
            self.approve_command(&id)
        );
        let page = self.page(&rec.record, "awaiting_approval", PageState::Alarm, Severity::Critical, reason.clone());
        let save = rec.save(&self.bucket, start);
        let result = async {
            let (manifest, etag, paged) = tokio::try_join!(
                async {
                    match files {
                        Ok(f) => snapshot::write(&self.bucket, &folder, &id, f, start).await,
                        Err(e) => Err(e),
                    }
                },
                save,
                self.notifier.publish(Channel::Paging, &page)
            )?;
            Ok::<_, StoreError>((manifest, etag, paged))
        }
        .await;
        let (manifest, etag, paged) = match result {
            Ok(r) => r,
            Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
        };
        let end = self.now();
        rec.saved(etag, end);
        rec.record.snapshot_manifest_key = Some(manifest.clone());
        rec.record.steps.push(self.step(Step::Snapshot, StepOutcome::Done, start, end, &attempt.id, Some(manifest)));
        rec.record.messages.push(SentMessage {
            channel: Channel::Paging,
            event_type: format!("{}.awaiting_approval", rec.record.kind),
            message_id: paged,
        });
        let chat = self.chat(
            &rec.record,
            "awaiting_approval",
            Severity::Critical,
            format!("DR {}: failover awaits approval", self.settings.environment),
            reason,
            vec![self.approve_command(&id)],
        );
        if let Ok(chatted) = self.notifier.publish(Channel::Chat, &chat).await {
            rec.record.messages.push(SentMessage {
                channel: Channel::Chat,
                event_type: format!("{}.awaiting_approval", rec.record.kind),
                message_id: chatted,
            });
        }
        if let Err(source) = rec.save_now(&self.bucket, self.now()).await {
            return Err(self.stop(rec, Some(held), Step::Snapshot, source).await);
        }
        let active = attempt.docs.active.valid().map(|a| a.site);
        let msg = format!("prepared; awaiting approval: {}", self.approve_command(&id));
        Ok(self.result_of(&rec.record, Outcome::AwaitingApproval, active, msg))
    }

    pub(crate) async fn snapshot_files_of(&self, tree: &[Parameter]) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        let ctx = SnapshotContext { tree, prefix: self.settings.prefix.as_str(), now: self.now() };
        let mut files = vec![snapshot::tree_file(tree)];
        files.extend(snapshot::document_files(tree, self.settings.prefix.as_str()));
        let extra = try_join_all(self.sources.iter().map(|s| s.collect(&ctx))).await?;
        files.extend(extra.into_iter().flatten());
        Ok(files)
    }

    async fn snapshot_files(&self, attempt: &Attempt) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        match &attempt.prefetched {
            Some(files) => Ok(files.clone()),
            None => self.snapshot_files_of(&attempt.tree).await,
        }
    }

    /// Runs the remaining steps of an execution under the lock.
    async fn drive(&self, mut rec: Recorder, attempt: Attempt, held: Held) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let target = rec.record.target;
        let active_name = self.active_name();
        // The fence: what the decision rested on was read before the lock; read it again now that the lock is
        // held (every writer of `active` holds it), and decide again. One round trip.
        let start = self.now();
        let fresh = match self.read_tree().await {
            Ok(tree) => tree,
            Err(source) => return Err(self.stop(rec, Some(held), Step::Fence, source).await),
        };
        let docs = documents::from_tree(&fresh, &self.settings.prefix);
        let approver = rec.record.approved_by.clone().map(|requested_by| Initiator::Human { requested_by });
        let verdict = decision::fence(&FenceInput {
            execution_id: &id,
            decided_on_version: rec.record.decided_on_version,
            promoted: rec.record.done(Step::Promote),
            active_version: version_of(&fresh, &active_name),
            now: DecisionInput {
                initiator: approver.as_ref().unwrap_or(&rec.record.initiator),
                target,
                active: docs.active.valid(),
                policy: self.policy_of(&docs),
                target_problem: docs.site(target).problem(),
                now: start,
            },
        });
        let end = self.now();
        if let Fence::Superseded(why) = verdict {
            return self.supersede(rec, held, &docs, why, start).await;
        }
        rec.record.steps.push(self.step(Step::Fence, StepOutcome::Done, start, end, &attempt.id, Some(format!("{verdict:?}"))));
        let attempt = Attempt { tree: fresh, docs, ..attempt };
        let promoted_earlier = attempt.docs.active.valid().and_then(|a| a.execution_id.as_deref()) == Some(id.as_str());
        let Some(target_config) = attempt.docs.site(target).valid().cloned() else {
            let problem = attempt.docs.site(target).problem().unwrap_or_default();
            return Err(self
                .fail(rec, held, Step::Promote, format!("the {target} site's config is not usable: {problem}"))
                .await);
        };

        // Round trip 3: snapshot, record, first page.
        if !rec.record.done(Step::Snapshot) {
            let start = self.now();
            if promoted_earlier {
                rec.record.steps.push(self.step(
                    Step::Snapshot,
                    StepOutcome::AlreadyDone,
                    start,
                    start,
                    &attempt.id,
                    Some("the promotion of an earlier attempt is live: its snapshot preceded it".into()),
                ));
            } else {
                let folder = domain::layout::snapshot_folder(&id);
                let event_type = format!("{}.started", rec.record.kind);
                let first_page = (!rec.record.sent(Channel::Paging, &event_type)
                    && !rec.record.sent(Channel::Paging, &format!("{}.awaiting_approval", rec.record.kind)))
                .then(|| {
                    self.page(
                        &rec.record,
                        "started",
                        PageState::Alarm,
                        Severity::Critical,
                        format!(
                            "DR {}: {} toward the {} site started ({}). Decision: {}.",
                            self.settings.environment,
                            rec.record.kind,
                            target,
                            rec.record.reason,
                            rec.record.decision.reasons.join("; ")
                        ),
                    )
                });
                let files = match self.snapshot_files(&attempt).await {
                    Ok(f) => f,
                    Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
                };
                rec.record.rpo_estimate = Some(rpo_estimate(&files));
                let save = rec.save(&self.bucket, start);
                let page_fut = async {
                    match &first_page {
                        Some(p) => self.notifier.publish(Channel::Paging, p).await.map(Some),
                        None => Ok(None),
                    }
                };
                let r = tokio::try_join!(snapshot::write(&self.bucket, &folder, &id, files, start), save, page_fut);
                let (manifest, etag, paged) = match r {
                    Ok(v) => v,
                    Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
                };
                let end = self.now();
                rec.saved(etag, end);
                if let Some(pid) = paged {
                    rec.record.messages.push(SentMessage { channel: Channel::Paging, event_type, message_id: pid });
                }
                rec.record.snapshot_manifest_key = Some(manifest.clone());
                rec.record.steps.push(self.step(Step::Snapshot, StepOutcome::Done, start, end, &attempt.id, Some(manifest)));
            }
        }

        // Round trip 4: the one PutParameter (the atomic switch), beside the record's update.
        let version = if rec.record.done(Step::Promote) && rec.record.promoted_version.is_some() && promoted_earlier {
            rec.record.promoted_version.unwrap_or_default()
        } else if promoted_earlier {
            let start = self.now();
            let version = match &attempt.docs.active {
                Doc::Valid { version, .. } => *version,
                _ => 0,
            };
            rec.record.promoted_version = Some(version);
            rec.record.config_after = raw_doc(&attempt.tree, &active_name);
            rec.record.steps.push(self.step(
                Step::Promote,
                StepOutcome::AlreadyDone,
                start,
                start,
                &attempt.id,
                Some(format!("version {version} written by an earlier attempt")),
            ));
            version
        } else {
            let start = self.now();
            let doc = ActiveConfig::promotion_document(target, &target_config, &id, &rfc3339(start));
            let body = Value::Object(doc.clone()).to_string();
            let save = rec.save(&self.bucket, start);
            let r = tokio::try_join!(self.put_active_once(&active_name, &body, &id), save);
            let (version, etag) = match r {
                Ok(v) => v,
                Err(source) => return Err(self.stop(rec, Some(held), Step::Promote, source).await),
            };
            let end = self.now();
            rec.saved(etag, end);
            rec.record.promoted_version = Some(version);
            rec.record.config_after = Some(Value::Object(doc));
            rec.record.steps.push(self.step(
                Step::Promote,
                StepOutcome::Done,
                start,
                end,
                &attempt.id,
                Some(format!("{active_name} version {version}")),
            ));
            version
        };

        // Round trip 5: label and read back, side by side (beside the record's update).
        if !rec.record.done(Step::Verify) {
            let start = self.now();
            let save = rec.save(&self.bucket, start);
            let r = tokio::try_join!(self.params.label(&active_name, version, &id), self.params.get_one(&active_name), save);
            let (_, read_back, etag) = match r {
                Ok(v) => v,
                Err(source) => return Err(self.stop(rec, Some(held), Step::Verify, source).await),
            };
            let end = self.now();
            rec.saved(etag, end);
            let problem = match read_back {
                None => Some(format!("{active_name} does not exist after the promotion")),
                Some(p) if p.version != version => Some(format!(
                    "{active_name} is at version {} after writing version {version}: someone else wrote it",
                    p.version
                )),
                Some(p) => {
                    let read: Option<Value> = serde_json::from_str(&p.value).ok();
                    (read != rec.record.config_after)
                        .then(|| format!("{active_name} version {version} does not hold the promoted document"))
                }
            };
            if let Some(problem) = problem {
                return Err(self.fail(rec, held, Step::Verify, problem).await);
            }
            rec.record.steps.push(self.step(
                Step::Verify,
                StepOutcome::Done,
                start,
                end,
                &attempt.id,
                Some(format!("labelled {id}; read back version {version}")),
            ));
            tracing::info!(execution_id = %id, version, target = %target, "promotion verified");
        }

        // After the critical path: OK page and chat summary, then the report, then the lock.
        if !rec.record.done(Step::Notify) {
            let start = self.now();
            let summary = self.step_summary(&rec.record);
            let ok = self.page(
                &rec.record,
                "completed",
                PageState::Ok,
                // The severity of its ALARM pages: a severity-filtered pager subscription must see the OK.
                Severity::Critical,
                format!(
                    "DR {}: {} to the {} site completed and verified ({}). {summary}",
                    self.settings.environment, rec.record.kind, target, rec.record.reason
                ),
            );
            let chat = self.chat(
                &rec.record,
                "completed",
                Severity::Info,
                format!("DR {}: {} to {} completed", self.settings.environment, rec.record.kind, target),
                summary,
                vec![
                    "Consumers reading {prefix}/active now see the new site.".into(),
                    format!("Report: {}", domain::layout::report_markdown(&id)),
                ],
            );
            let save = rec.save(&self.bucket, start);
            let r = tokio::try_join!(self.publish_event(&rec.record, "completed", Some(ok), chat), save);
            let (sent, etag) = match r {
                Ok(v) => v,
                Err(source) => return Err(self.stop(rec, Some(held), Step::Notify, source).await),
            };
            let end = self.now();
            rec.saved(etag, end);
            rec.record.messages.extend(sent);
            rec.record.steps.push(self.step(Step::Notify, StepOutcome::Done, start, end, &attempt.id, None));
        }
        if !rec.record.done(Step::Report) {
            let start = self.now();
            let (json_key, md_key) = report::report_keys(&id);
            rec.record.report_key = Some(json_key.clone());
            let rpo = rec.record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
            let mut for_report = rec.record.clone();
            for_report.state = ExecutionState::Completed;
            for_report.steps.push(self.step(Step::Report, StepOutcome::Done, start, start, &attempt.id, None));
            let json_body = serde_json::to_vec_pretty(&report::json_report(&for_report, &rpo)).unwrap_or_default();
            let md_body = report::markdown_report(&for_report, &rpo).into_bytes();
            let save = rec.save(&self.bucket, start);
            let r = tokio::try_join!(
                self.bucket.put(&json_key, json_body, "application/json", WriteCondition::Overwrite),
                self.bucket.put(&md_key, md_body, "text/markdown", WriteCondition::Overwrite),
                save
            );
            let (_, _, etag) = match r {
                Ok(v) => v,
                Err(source) => return Err(self.stop(rec, Some(held), Step::Report, source).await),
            };
            let end = self.now();
            rec.saved(etag, end);
            rec.record.steps.push(self.step(Step::Report, StepOutcome::Done, start, end, &attempt.id, Some(json_key)));
        }
        let start = self.now();
        if let Err(source) = lock::release(&self.bucket, &self.settings.lock_key, &id).await {
            return Err(self.stop(rec, Some(held), Step::Release, source).await);
        }
        let end = self.now();
        rec.record.steps.push(self.step(Step::Release, StepOutcome::Done, start, end, &attempt.id, None));
        // Completed only now: until every step is done the record stays resumable.
        rec.record.state = ExecutionState::Completed;
        rec.record.error = None;
        if let Err(source) = rec.save_now(&self.bucket, end).await {
            // Promoted, verified and released, but the record does not say so yet: report it as a stop so the
            // trigger is delivered again and the record is finished (never left behind as "running").
            return Err(self.stop(rec, None, Step::Release, source).await);
        }
        Ok(self.result_of(
            &rec.record,
            Outcome::Completed,
            Some(target),
            format!("{} to {target} completed and verified (version {version})", rec.record.kind),
        ))
    }

    /// Writes `{prefix}/active` exactly once. `PutParameter` has no idempotency token, so the adapter does not
    /// retry it; here a failed attempt is followed by a read: when the value names this execution, the write
    /// did land (its answer was lost) and that version is the promotion; otherwise it is written again.
    async fn put_active_once(&self, name: &str, body: &str, execution_id: &str) -> Result<i64, StoreError> {
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100 * 2u64.pow(attempt))).await;
                match self.params.get_one(name).await {
                    Ok(Some(p)) if names_execution(&p.value, execution_id) => return Ok(p.version),
                    Ok(_) => {}
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            }
            match self.params.put(name, body, true).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retry() == Retry::Helps => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Transient {
            service: "SSM",
            operation: "PutParameter",
            message: "no attempt made".into(),
        }))
    }

    /// Publishes the page (unless the record shows it sent already) and the chat note of an event side by side,
    /// and returns what was sent, for the record.
    async fn publish_event(
        &self,
        rec: &ExecutionRecord,
        event: &str,
        page: Option<OutgoingMessage>,
        chat: OutgoingMessage,
    ) -> Result<Vec<SentMessage>, StoreError> {
        let event_type = format!("{}.{event}", rec.kind);
        let page_fut = async {
            match page {
                Some(p) if !rec.sent(Channel::Paging, &event_type) => self.notifier.publish(Channel::Paging, &p).await.map(Some),
                _ => Ok(None),
            }
        };
        let (paged, chatted) = tokio::try_join!(page_fut, self.notifier.publish(Channel::Chat, &chat))?;
        let mut out = Vec::new();
        if let Some(id) = paged {
            out.push(SentMessage { channel: Channel::Paging, event_type: event_type.clone(), message_id: id });
        }
        out.push(SentMessage { channel: Channel::Chat, event_type, message_id: chatted });
        Ok(out)
    }

    fn step_summary(&self, rec: &ExecutionRecord) -> String {
        rec.steps
            .iter()
            .map(|s| format!("{} {:?} {} ms", s.step.as_str(), s.outcome, s.duration_ms))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Records a failure at `step` that a retry may fix, marks the lock stopped (so the next attempt of this
    /// execution resumes at once), pages, and returns the error.
    async fn stop(&self, mut rec: Recorder, held: Option<Held>, step: Step, source: StoreError) -> EngineError {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        tracing::error!(execution_id = %id, step = step.as_str(), error = %source, "execution stopped");
        rec.record.error = Some(format!("{}: {source}", step.as_str()));
        rec.record.steps.push(self.step(step, StepOutcome::Failed, now, now, "", Some(source.to_string())));
        rec.record.note(now, format!("stopped at {}: {source}", step.as_str()));
        let hint = match &rec.record.initiator {
            Initiator::Human { .. } => {
                format!("Resume by re-running the same command with \"client_token\" set so the execution id is {id}.")
            }
            Initiator::Alarm { .. } => {
                "It resumes when the trigger is delivered again (Lambda and EventBridge retry).".to_owned()
            }
        };
        let reason = format!(
            "DR {}: {} {id} stopped at step {}: {source}. {hint}",
            self.settings.environment,
            rec.record.kind,
            step.as_str()
        );
        self.alarm_page(&mut rec.record, &format!("stalled_{}", step.as_str()), reason).await;
        // Best effort: the record may be the thing that failed. A stale ETag means our view is behind; the
        // next attempt re-reads the record and the world anyway.
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the stop");
        }
        if let Some(held) = held {
            let stopped = LockDoc { state: LockState::Stopped, ..held.doc };
            if let Err(e) = lock::update(&self.bucket, &self.settings.lock_key, &stopped, &held.etag).await {
                tracing::warn!(execution_id = %id, error = %e, "could not mark the lock stopped; it frees itself when its lease expires");
            }
        }
        EngineError::Stopped { execution_id: id, step, source, hint }
    }

    /// Best effort: a critical `ALARM` page for `event`, recorded when it went out (the failure being
    /// reported may be SNS itself).
    async fn alarm_page(&self, rec: &mut ExecutionRecord, event: &str, reason: String) {
        let page = self.page(rec, event, PageState::Alarm, Severity::Critical, reason);
        if let Ok(pid) = self.notifier.publish(Channel::Paging, &page).await {
            rec.messages.push(SentMessage {
                channel: Channel::Paging,
                event_type: format!("{}.{event}", rec.kind),
                message_id: pid,
            });
        }
    }

    /// Stands an execution down under the lock: it writes nothing more. The page says so (an `OK` under the
    /// execution's own AlarmName, so whatever it opened resolves), then the record ends `superseded`, the report
    /// is written and the lock released. The page goes first: a failure to send it stops the execution
    /// (resumable) instead of leaving a terminal record whose page was never sent.
    async fn supersede(
        &self,
        mut rec: Recorder,
        held: Held,
        docs: &DrDocuments,
        why: String,
        start: OffsetDateTime,
    ) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        tracing::warn!(execution_id = %id, why = %why, "execution superseded under the lock");
        let text = format!(
            "DR {}: {} {id} stood down without writing anything: {why}. Run `status` to see the active site.",
            self.settings.environment, rec.record.kind
        );
        let severity = if self.settings.drill { Severity::Info } else { Severity::Critical };
        let page = self.page(&rec.record, "superseded", PageState::Ok, severity, text.clone());
        let chat = self.chat(
            &rec.record,
            "superseded",
            Severity::Info,
            format!("DR {}: {id} stood down", self.settings.environment),
            text,
            vec!["Run `status` to see which site is active.".into()],
        );
        match self.publish_event(&rec.record, "superseded", Some(page), chat).await {
            Ok(sent) => rec.record.messages.extend(sent),
            Err(source) => return Err(self.stop(rec, Some(held), Step::Fence, source).await),
        }
        let end = self.now();
        rec.record.steps.push(self.step(Step::Fence, StepOutcome::Done, start, end, "", Some(format!("superseded: {why}"))));
        rec.record.decision.reasons.push(format!("under the lock: {why}"));
        rec.record.state = ExecutionState::Superseded;
        rec.record.error = None;
        let (json_key, md_key) = report::report_keys(&id);
        rec.record.report_key = Some(json_key.clone());
        let rpo = rec.record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
        let written = tokio::try_join!(
            self.bucket.put(
                &json_key,
                serde_json::to_vec_pretty(&report::json_report(&rec.record, &rpo)).unwrap_or_default(),
                "application/json",
                WriteCondition::Overwrite
            ),
            self.bucket.put(
                &md_key,
                report::markdown_report(&rec.record, &rpo).into_bytes(),
                "text/markdown",
                WriteCondition::Overwrite
            ),
        );
        if let Err(source) = written {
            return Err(self.stop(rec, Some(held), Step::Report, source).await);
        }
        if let Err(source) = rec.save_now(&self.bucket, end).await {
            return Err(self.stop(rec, Some(held), Step::Fence, source).await);
        }
        if let Err(e) = lock::release(&self.bucket, &self.settings.lock_key, &id).await {
            tracing::warn!(execution_id = %id, error = %e, "could not release the lock; it frees itself when its lease expires");
        }
        Ok(self.result_of(
            &rec.record,
            Outcome::Superseded,
            docs.active.valid().map(|a| a.site),
            format!("execution {id} stood down: {why}"),
        ))
    }

    /// Ends an execution for good (a human must look): records, pages, writes the report, releases the lock.
    /// `_held` is the lock this attempt owns; it is released (by execution id) at the end.
    async fn fail(&self, mut rec: Recorder, _held: Held, step: Step, problem: String) -> EngineError {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        tracing::error!(execution_id = %id, step = step.as_str(), problem = %problem, "execution failed");
        rec.record.state = ExecutionState::Failed;
        rec.record.error = Some(problem.clone());
        rec.record.steps.push(self.step(step, StepOutcome::Failed, now, now, "", Some(problem.clone())));
        let reason = format!(
            "DR {}: {} {id} FAILED at {}: {problem}. Run `status` and act by hand.",
            self.settings.environment,
            rec.record.kind,
            step.as_str()
        );
        self.alarm_page(&mut rec.record, "failed", reason).await;
        let (json_key, md_key) = report::report_keys(&id);
        rec.record.report_key = Some(json_key.clone());
        let rpo = rec.record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
        let _ = self
            .bucket
            .put(
                &json_key,
                serde_json::to_vec_pretty(&report::json_report(&rec.record, &rpo)).unwrap_or_default(),
                "application/json",
                WriteCondition::Overwrite,
            )
            .await;
        let _ = self
            .bucket
            .put(&md_key, report::markdown_report(&rec.record, &rpo).into_bytes(), "text/markdown", WriteCondition::Overwrite)
            .await;
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the failure");
        }
        let _ = lock::release(&self.bucket, &self.settings.lock_key, &id).await;
        EngineError::VerificationFailed { execution_id: id, problem }
    }
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Breaks the lock of a stuck execution on purpose; recorded in the execution's record and in chat.
    ///
    /// The execution itself is not cancelled: a running one resumes on its next delivery, one awaiting
    /// approval can still be approved (it takes the lock again).
    pub async fn unlock(&self, execution_id: &str, requested_by: &str) -> EngineResult<ExecutionResult> {
        let not_started = |source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source };
        let (held, docs) = tokio::try_join!(
            lock::read(&self.bucket, &self.settings.lock_key),
            documents::load(&self.params, &self.settings.prefix)
        )
        .map_err(not_started)?;
        let active_site = docs.active.valid().map(|a| a.site);
        let answer = |outcome, message: String, in_flight| ExecutionResult {
            in_flight,
            ..ExecutionResult::answer(outcome, execution_id, active_site, message)
        };
        let Some((doc, _)) = held else {
            return Ok(answer(Outcome::Noop, "no failover lock is held; nothing to unlock".into(), None));
        };
        if doc.execution_id != execution_id {
            let msg = format!(
                "the lock is held by execution {}, not {execution_id}; expected the id of the holder (see status)",
                doc.execution_id
            );
            return Ok(answer(Outcome::Rejected, msg, Some(doc)));
        }
        lock::release(&self.bucket, &self.settings.lock_key, execution_id).await.map_err(not_started)?;
        let now = self.now();
        let what = format!(
            "lock broken by {requested_by} (was attempt {}, {:?}, lease until {})",
            doc.attempt_id, doc.state, doc.lease_expires_at
        );
        tracing::warn!(execution_id, requested_by, "failover lock broken on purpose");
        if let Ok(Some(mut rec)) = record::read(&self.bucket, execution_id).await {
            rec.record.note(now, what.clone());
            let chat = self.chat(
                &rec.record,
                "unlocked",
                Severity::Warning,
                format!("DR {}: lock of {execution_id} broken", self.settings.environment),
                what.clone(),
                vec![],
            );
            if let Ok(id) = self.notifier.publish(Channel::Chat, &chat).await {
                rec.record.messages.push(SentMessage {
                    channel: Channel::Chat,
                    event_type: format!("{}.unlocked", rec.record.kind),
                    message_id: id,
                });
            }
            if let Err(e) = rec.save_now(&self.bucket, now).await {
                tracing::warn!(execution_id, error = %e, "could not record the unlock in the execution record");
            }
        }
        Ok(answer(Outcome::Completed, what, None))
    }
}

/// The RPO estimate from the snapshot's replication incidents file: open incidents say how far behind the
/// replica may be. Without that source, the estimate is unknown.
pub fn rpo_estimate(files: &[snapshot::SnapshotFile]) -> Value {
    let Some(file) = files.iter().find(|f| f.name == super::replication::SNAPSHOT_FILE) else {
        return json!({ "estimate": "unknown", "why": "no replication incidents source in this snapshot" });
    };
    let v: Value = serde_json::from_slice(&file.body).unwrap_or(Value::Null);
    let open = v["open_incidents"].as_u64().unwrap_or(0);
    if open == 0 {
        return json!({
            "estimate": "current",
            "open_incidents": 0,
            "why": "no open replication incident: the replicas trail by S3 replication's normal delay only",
        });
    }
    let summary = v["summary"].as_array().cloned().unwrap_or_default();
    let oldest = summary.iter().filter_map(|i| i["first_seen"].as_str()).min().map(str::to_owned);
    let lagging = summary.iter().any(|i| i["lag_outstanding"] == Value::Bool(true));
    json!({
        "estimate": "at_risk",
        "open_incidents": open,
        "failed_objects": v["failed_objects"],
        "oldest_unreplicated_since": oldest,
        "lag_outstanding": lagging,
        "why": format!(
            "{open} open replication incident(s): objects written since {} may be missing on the replica; re-drive them \
             with the manifests under replication/manifests/",
            oldest.as_deref().unwrap_or("an unknown time")
        ),
        "incidents": summary,
    })
}

/// Whether an active document was written by `execution_id`.
fn names_execution(value: &str, execution_id: &str) -> bool {
    serde_json::from_str::<Value>(value)
        .ok()
        .and_then(|v| v.get("execution_id").and_then(Value::as_str).map(|e| e == execution_id))
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports as domain_params;
    use crate::ports::memory::{FixedClock, MemBucket, MemNotifier, MemParameters};
    use std::sync::Mutex;
    use time::macros::datetime;

    const P: &str = r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1"}"#;
    const S: &str = r#"{"workspace_url":"https://s.cloud.databricks.com","region":"us-west-2"}"#;

    fn engine(policy: &str) -> Engine<MemParameters, MemBucket, MemNotifier, FixedClock> {
        let params = MemParameters::default();
        params.seed("/dr/p/sites/primary", P, "String");
        params.seed("/dr/p/sites/secondary", S, "String");
        params.seed(
            "/dr/p/active",
            r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-01-01T00:00:00Z"}"#,
            "String",
        );
        params.seed("/dr/p/policy", policy, "String");
        params.seed("/dr/p/secrets/token", "TOP-SECRET", "SecureString");
        Engine {
            params,
            bucket: MemBucket::default(),
            notifier: MemNotifier::default(),
            clock: FixedClock::at(datetime!(2026-11-25 12:00 UTC)),
            settings: EngineSettings::example(domain::names::SsmPrefix::parse("/dr/p").unwrap()),
            sources: Vec::new(),
        }
    }

    fn alarm_request(id: &str) -> MoveRequest {
        MoveRequest {
            execution_id: id.into(),
            initiator: Initiator::Alarm { alarm_name: "wh".into() },
            target: SiteName::Secondary,
            reason: "alarm".into(),
            trigger: json!({}),
        }
    }

    /// A parameter store whose first tree read answers from an earlier snapshot: the view of an execution
    /// whose reads happened before another execution promoted (its lock request was slowed meanwhile).
    struct StaleFirstTree<'a> {
        inner: &'a MemParameters,
        stale: Mutex<Option<Vec<Parameter>>>,
    }

    impl ParameterStore for StaleFirstTree<'_> {
        async fn get_many(&self, names: &[String]) -> Result<BTreeMap<String, Parameter>, StoreError> {
            self.inner.get_many(names).await
        }
        async fn get_tree(&self, path: &str) -> Result<Vec<Parameter>, StoreError> {
            let stale = self.stale.lock().unwrap().take();
            match stale {
                Some(tree) => Ok(tree),
                None => self.inner.get_tree(path).await,
            }
        }
        async fn get_one(&self, selector: &str) -> Result<Option<Parameter>, StoreError> {
            self.inner.get_one(selector).await
        }
        async fn put(&self, name: &str, value: &str, overwrite: bool) -> Result<i64, StoreError> {
            self.inner.put(name, value, overwrite).await
        }
        async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), StoreError> {
            self.inner.label(name, version, label).await
        }
        async fn history(&self, name: &str) -> Result<Vec<domain_params::ParameterVersion>, StoreError> {
            self.inner.history(name).await
        }
        async fn delete(&self, names: &[String]) -> Result<(), StoreError> {
            self.inner.delete(names).await
        }
    }

    #[tokio::test]
    async fn a_decision_made_before_another_promotion_is_decided_again_under_the_lock() {
        // Issue 11, case 2: two failover alarms at once; the second one's reads happened before the first
        // promoted, its lock request was slowed until the first released the lock.
        let e = engine(r#"{"mode":"auto","failover_alarms":["wh","wh2"]}"#);
        let before = e.params.get_tree("/dr/p").await.unwrap();
        assert_eq!(e.run(alarm_request("alarm-a")).await.unwrap().outcome, Outcome::Completed);
        let late = Engine {
            params: StaleFirstTree { inner: &e.params, stale: Mutex::new(Some(before)) },
            bucket: &e.bucket,
            notifier: &e.notifier,
            clock: &e.clock,
            settings: e.settings.clone(),
            sources: Vec::new(),
        };
        let r = late.run(alarm_request("alarm-b")).await.unwrap();
        assert_eq!(r.outcome, Outcome::Superseded, "{}", r.message);
        assert!(r.message.contains("alarm-a"), "{}", r.message);
        let history = e.params.history("/dr/p/active").await.unwrap();
        assert_eq!(history.len(), 2, "one promotion only: {history:?}");
        let rec: ExecutionRecord = serde_json::from_str(&e.bucket.text("executions/alarm-b.json").unwrap()).unwrap();
        assert_eq!(rec.state, ExecutionState::Superseded);
        assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none(), "the lock is released");
        // It said that it stood down, under its own incident.
        let stood_down = e.notifier.on(Channel::Paging).into_iter().filter(|m| m.body.contains("alarm-b")).count();
        assert_eq!(stood_down, 1);
        // A redelivery answers the first result as it was.
        assert_eq!(late.run(alarm_request("alarm-b")).await.unwrap().outcome, Outcome::AlreadyCompleted);
    }

    #[tokio::test]
    async fn a_resumed_execution_never_writes_active_back_after_a_later_failback() {
        // Issue 11, case 1: an alarm execution promotes and verifies, then stops on the chat publish; on-call
        // unlocks and fails back; the alarm is delivered again.
        let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
        e.notifier.fail(Channel::Chat, true);
        let stopped = e.run(alarm_request("alarm-1")).await;
        assert!(matches!(stopped, Err(EngineError::Stopped { step: Step::Notify, .. })), "{stopped:?}");
        e.notifier.fail(Channel::Chat, false);
        assert_eq!(e.unlock("alarm-1", "oncall").await.unwrap().outcome, Outcome::Completed);
        let back = MoveRequest {
            execution_id: "failback-1".into(),
            initiator: Initiator::Human { requested_by: "oncall".into() },
            target: SiteName::Primary,
            reason: "primary healthy".into(),
            trigger: json!({}),
        };
        assert_eq!(e.run(back).await.unwrap().outcome, Outcome::Completed);
        let versions = e.params.history("/dr/p/active").await.unwrap().len();

        let again = e.run(alarm_request("alarm-1")).await.unwrap();
        assert_eq!(again.outcome, Outcome::Superseded, "{}", again.message);
        assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), versions, "active was written again");
        let active = e.params.get_one("/dr/p/active").await.unwrap().unwrap();
        assert!(active.value.contains("failback-1"), "{}", active.value);
    }

    #[tokio::test]
    async fn a_policy_switched_to_notify_only_stops_a_resume() {
        // Issue 11, case 1 (second half): the execution stopped before promoting; the policy became notify-only.
        let e = engine(r#"{"mode":"auto","failover_alarms":["wh"]}"#);
        e.notifier.fail(Channel::Paging, true);
        assert!(e.run(alarm_request("alarm-1")).await.is_err());
        e.notifier.fail(Channel::Paging, false);
        e.params.put("/dr/p/policy", r#"{"mode":"notify-only","failover_alarms":["wh"]}"#, true).await.unwrap();
        e.clock.advance(time::Duration::minutes(5)); // the stopped attempt's lease has expired
        let again = e.run(alarm_request("alarm-1")).await.unwrap();
        assert_eq!(again.outcome, Outcome::Superseded, "{}", again.message);
        assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 1, "nothing promoted");
    }

    #[tokio::test]
    async fn approval_waits_then_the_approval_promotes_once() {
        let e = engine(r#"{"mode":"approval","failover_alarms":["wh"]}"#);
        let r = e.run(alarm_request("alarm-1")).await.unwrap();
        assert_eq!(r.outcome, Outcome::AwaitingApproval);
        assert_eq!(e.params.history("/dr/p/active").await.unwrap().len(), 1);
        let pages = e.notifier.on(Channel::Paging);
        assert_eq!(pages.len(), 1);
        assert!(pages[0].body.contains("dr-prod-manual-trigger") && pages[0].body.contains("alarm-1"));
        // Redelivered while waiting: same answer, nothing sent.
        assert_eq!(e.run(alarm_request("alarm-1")).await.unwrap().outcome, Outcome::AwaitingApproval);
        assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
        // Another alarm meanwhile: told the truth about the execution in flight.
        let other = e.run(alarm_request("alarm-2")).await.unwrap();
        assert_eq!(other.outcome, Outcome::InProgress);
        assert_eq!(other.in_flight.unwrap().execution_id, "alarm-1");

        e.clock.advance(time::Duration::minutes(5));
        let approved = e.approve("alarm-1", "alice").await.unwrap();
        assert_eq!(approved.outcome, Outcome::Completed);
        let history = e.params.history("/dr/p/active").await.unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].labels, vec!["alarm-1".to_owned()]);
        assert_eq!(e.approve("alarm-1", "alice").await.unwrap().outcome, Outcome::AlreadyCompleted);
        assert!(e.bucket.text(lock::FAILOVER_LOCK_KEY).is_none());
        // No secret in anything written or sent.
        let written: String = e.bucket.keys().iter().filter_map(|k| e.bucket.text(k)).collect();
        let sent: String = e.notifier.sent.lock().unwrap().iter().map(|(_, m)| m.body.clone()).collect();
        assert!(!written.contains("TOP-SECRET") && !sent.contains("TOP-SECRET"));
    }

    #[tokio::test]
    async fn cooldown_turns_an_alarm_into_a_page_recorded_once() {
        let e = engine(r#"{"mode":"auto","failover_alarms":["wh"],"cooldown_minutes":60}"#);
        e.params.put("/dr/p/active", r#"{"workspace_url":"https://p.cloud.databricks.com","region":"us-east-1","site":"primary","promoted_at":"2026-11-25T11:30:00Z"}"#, true).await.unwrap();
        let r = e.run(alarm_request("alarm-3")).await.unwrap();
        assert_eq!(r.outcome, Outcome::Noop);
        assert_eq!(r.state, Some(ExecutionState::Notified));
        assert!(r.message.contains("cooldown"));
        assert_eq!(e.run(alarm_request("alarm-3")).await.unwrap().outcome, Outcome::AlreadyCompleted);
        assert_eq!(e.notifier.on(Channel::Paging).len(), 1);
    }
}
