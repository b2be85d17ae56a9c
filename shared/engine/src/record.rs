//! The resumable execution record `executions/{execution_id}.json`, written with compare-and-swap.

use crate::error::StoreError;
use crate::ports::{Channel, ControlBucket, OutgoingMessage, WriteCondition};
use domain::decision::{Action, Decision, ExecutionKind, Initiator};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// The key of an execution's record.
pub fn record_key(execution_id: &str) -> String {
    domain::layout::execution_record(execution_id)
}

/// The steps of an execution, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Apply the policy.
    Decide,
    /// Take the single-flight lock.
    Lock,
    /// Re-read `{prefix}/active` and the policy under the lock and decide again (the fence).
    Fence,
    /// Snapshot the metadata to S3.
    Snapshot,
    /// Write `{prefix}/active` (one `PutParameter`).
    Promote,
    /// Label the version and read it back.
    Verify,
    /// Workload activation and client redirection: resume the target's selected jobs, start its warehouses,
    /// pause the former's jobs (best effort), move the stable DNS name; or reverse what the failover changed.
    Activate,
    /// Page `OK` and post the chat summary.
    Notify,
    /// Write the report.
    Report,
    /// Release the lock.
    Release,
}

impl Step {
    /// The step's name as written in records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Decide => "decide",
            Step::Lock => "lock",
            Step::Fence => "fence",
            Step::Snapshot => "snapshot",
            Step::Promote => "promote",
            Step::Verify => "verify",
            Step::Activate => "activate",
            Step::Notify => "notify",
            Step::Report => "report",
            Step::Release => "release",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// This attempt did it.
    Done,
    /// Found already done by an earlier attempt (resume).
    AlreadyDone,
    /// Failed; `detail` says why.
    Failed,
}

/// One step's timing and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Which step.
    pub step: Step,
    /// Done now, found done by an earlier attempt, or failed.
    pub outcome: StepOutcome,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub ended_at: String,
    /// Measured duration.
    pub duration_ms: u64,
    /// The attempt that ran it.
    pub attempt_id: String,
    /// What happened (version written, keys, error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Steps are being run (or an attempt stopped and will be resumed).
    Running,
    /// Prepared, waiting for `approve`.
    AwaitingApproval,
    /// Promoted and verified.
    Completed,
    /// Paged only (notify-only, cooldown, no automatic failback).
    Notified,
    /// Refused (readiness gate).
    Refused,
    /// Nothing to do (target already active).
    Noop,
    /// Stopped for good (verification failed); a human must look.
    Failed,
    /// Stood down under the lock without writing: its premise no longer held (see the decision's reasons).
    Superseded,
    /// An alarm that met another execution's lock: recorded and paged into that execution's incident.
    Joined,
    /// Ended by a human (`cancel`) while stopped or awaiting approval, before any promotion.
    Cancelled,
}

impl ExecutionState {
    /// Whether nothing more will happen to this execution.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionState::Running | ExecutionState::AwaitingApproval)
    }
}

/// A message sent for an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The topic it went to.
    pub channel: Channel,
    /// e.g. `failover.started`.
    pub event_type: String,
    /// SNS message id.
    pub message_id: Option<String>,
    /// A page that resolves (`OK`) rather than opens (`ALARM`) the execution's incident.
    #[serde(default)]
    pub ok: bool,
}

/// A page that must still go out: recorded before it is published, removed once it is, so that a crash or a
/// failing topic never loses it (the next delivery of the trigger, or `check`, pays it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedMessage {
    /// The topic it goes to.
    pub channel: Channel,
    /// e.g. `failover.started`.
    pub event_type: String,
    /// SNS subject.
    pub subject: Option<String>,
    /// The JSON body, exactly as it will be published.
    pub body: String,
    /// Message attributes.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl OwedMessage {
    /// Whether it is an `OK` page (it resolves the incident) rather than an `ALARM`.
    pub fn resolves(&self) -> bool {
        serde_json::from_str::<Value>(&self.body).is_ok_and(|b| b["NewStateValue"] == "OK")
    }

    /// The message to publish.
    pub fn message(&self) -> OutgoingMessage {
        OutgoingMessage { subject: self.subject.clone(), body: self.body.clone(), attributes: self.attributes.clone() }
    }
}

/// A note in the record's history (takeovers, approvals, unlocks, errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// When (RFC 3339).
    pub at: String,
    /// What happened, in a sentence (who took over, who approved, which error).
    pub what: String,
}

/// The execution record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// The execution id.
    pub execution_id: String,
    /// `DR_ENVIRONMENT`.
    pub environment: String,
    /// Failover, failback or drill.
    pub kind: ExecutionKind,
    /// Who started it.
    pub initiator: Initiator,
    /// Why (the alarm's reason, or the human's).
    pub reason: String,
    /// The trigger as received (alarm ARN and time, command fields); never a secret.
    pub trigger: Value,
    /// The site to make active.
    pub target: SiteName,
    /// The decision and its reasons.
    pub decision: Decision,
    /// Where it stands.
    pub state: ExecutionState,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last written (RFC 3339).
    pub updated_at: String,
    /// Each step's timing and outcome, in the order run.
    pub steps: Vec<StepRecord>,
    /// `{prefix}/active` before (the document).
    pub config_before: Option<Value>,
    /// `{prefix}/active` as promoted.
    pub config_after: Option<Value>,
    /// The SSM version the promotion wrote.
    pub promoted_version: Option<i64>,
    /// The snapshot's manifest key.
    pub snapshot_manifest_key: Option<String>,
    /// The SSM version of `{prefix}/active` the decision rested on (`None`: absent); the fence compares it.
    #[serde(default)]
    pub decided_on_version: Option<i64>,
    /// Who approved it, once approved: the fence decides again as that person.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// The RPO estimate made at the snapshot (open replication incidents).
    #[serde(default)]
    pub rpo_estimate: Option<Value>,
    /// The Databricks workspaces as the snapshot found them: the drift line and the age of each site's latest
    /// export (`workspace::LatestExportsSource`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspaces: Option<Value>,
    /// What the activation step planned and changed, each change with its `before` and `after` (written before
    /// each call, marked after it: a resumed attempt re-reads each object and never changes it twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<domain::activation::Activation>,
    /// Every page and chat note published for this execution, with its SNS message id.
    pub messages: Vec<SentMessage>,
    /// Pages recorded but not (yet) published: paid before anything else by the next attempt or `check`.
    #[serde(default)]
    pub owed: Vec<OwedMessage>,
    /// The report's key (JSON; the `.md` sits beside it).
    pub report_key: Option<String>,
    /// History: takeovers, approvals, unlocks, errors.
    pub notes: Vec<Note>,
    /// The last error, if the execution stopped.
    pub error: Option<String>,
    /// The token of the writer that stored this version (see [`Recorder`]): a writer whose answer was lost
    /// recognizes its own write by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// When a delivery without the lock set out to publish an owed `ALARM` page (RFC 3339), until it recorded it
    /// paid: that `ALARM` may reach the pager after the incident's `OK`, and its payer may die before it can
    /// follow it with an `OK` again, so whoever reads the record resolved meanwhile sends the `OK` again (see
    /// `Engine::follow_unlocked_alarm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlocked_alarm_since: Option<String>,
}

/// What a new execution record is made of: who asked, why, what was decided and on which version of
/// `{prefix}/active`. Everything an execution accumulates (steps, pages, notes, activation) starts empty.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// The execution id.
    pub execution_id: String,
    /// `DR_ENVIRONMENT`.
    pub environment: String,
    /// Failover, failback or drill.
    pub kind: ExecutionKind,
    /// Who started it.
    pub initiator: Initiator,
    /// Why.
    pub reason: String,
    /// The trigger as received; never a secret.
    pub trigger: Value,
    /// The site to make active.
    pub target: SiteName,
    /// The decision and its reasons.
    pub decision: Decision,
    /// `{prefix}/active` as the decision read it.
    pub config_before: Option<Value>,
    /// The SSM version of `{prefix}/active` the decision rested on.
    pub decided_on_version: Option<i64>,
}

impl ExecutionState {
    /// The state a new execution starts in, from its decision's action: an execution to run (or one the
    /// policy ignores, which still runs its bookkeeping) is running; the rest end or wait where they are decided.
    pub fn opening(action: Action) -> ExecutionState {
        match action {
            Action::Execute | Action::Ignore => ExecutionState::Running,
            Action::AwaitApproval => ExecutionState::AwaitingApproval,
            Action::NotifyOnly => ExecutionState::Notified,
            Action::Refuse => ExecutionState::Refused,
            Action::Noop => ExecutionState::Noop,
        }
    }
}

impl ExecutionRecord {
    /// The record of an execution decided at `now`, in the state its decision opens ([`ExecutionState::opening`]),
    /// with nothing run yet.
    pub fn new(new: NewExecution, now: OffsetDateTime) -> ExecutionRecord {
        ExecutionRecord {
            execution_id: new.execution_id,
            environment: new.environment,
            kind: new.kind,
            initiator: new.initiator,
            reason: new.reason,
            trigger: new.trigger,
            target: new.target,
            state: ExecutionState::opening(new.decision.action),
            decision: new.decision,
            created_at: rfc3339(now),
            updated_at: rfc3339(now),
            steps: Vec::new(),
            config_before: new.config_before,
            config_after: None,
            promoted_version: None,
            snapshot_manifest_key: None,
            decided_on_version: new.decided_on_version,
            approved_by: None,
            rpo_estimate: None,
            activation: None,
            workspaces: None,
            messages: Vec::new(),
            owed: Vec::new(),
            report_key: None,
            notes: Vec::new(),
            error: None,
            writer: None,
            unlocked_alarm_since: None,
        }
    }

    /// Whether `step` has completed (in any attempt).
    pub fn done(&self, step: Step) -> bool {
        self.steps.iter().any(|s| s.step == step && s.outcome != StepOutcome::Failed)
    }

    /// Records `message` as owed before it is published (see [`OwedMessage`]).
    pub fn owe(&mut self, channel: Channel, event_type: &str, message: &OutgoingMessage) {
        if self.owed.iter().any(|o| o.channel == channel && o.event_type == event_type) {
            return;
        }
        self.owed.push(OwedMessage {
            channel,
            event_type: event_type.to_owned(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            attributes: message.attributes.clone(),
        });
    }

    /// Moves an owed message to the sent ones.
    pub fn paid(&mut self, channel: Channel, event_type: &str, message_id: Option<String>) {
        let ok = self.owed.iter().find(|o| o.channel == channel && o.event_type == event_type).is_some_and(OwedMessage::resolves);
        self.owed.retain(|o| !(o.channel == channel && o.event_type == event_type));
        self.messages.push(SentMessage { channel, event_type: event_type.to_owned(), message_id, ok });
    }

    /// Whether the execution's incident is open: its last page sent was an `ALARM` (or an `ALARM` is owed).
    pub fn incident_open(&self) -> bool {
        let owed_alarm = self.owed.iter().any(|o| o.channel == Channel::Paging && !o.resolves());
        owed_alarm || self.messages.iter().rev().find(|m| m.channel == Channel::Paging).is_some_and(|m| !m.ok)
    }

    /// Whether the execution's incident was resolved by an `OK` page after its last `ALARM`.
    pub fn resolved(&self) -> bool {
        self.messages.iter().rev().find(|m| m.channel == Channel::Paging).is_some_and(|m| m.ok)
    }

    /// Whether the alarm that opened this execution's page recovered: its `.alarm_recovered` `OK` sent or owed.
    pub fn recovered(&self) -> bool {
        let recovered = |event_type: &str| event_type.ends_with(".alarm_recovered");
        self.messages.iter().any(|m| recovered(&m.event_type)) || self.owed.iter().any(|o| recovered(&o.event_type))
    }

    /// Whether a message of `event_type` was sent on `channel`.
    pub fn sent(&self, channel: Channel, event_type: &str) -> bool {
        self.messages.iter().any(|m| m.channel == channel && m.event_type == event_type && m.message_id.is_some())
    }

    /// Adds a note.
    pub fn note(&mut self, now: OffsetDateTime, what: impl Into<String>) {
        self.notes.push(Note { at: rfc3339(now), what: what.into() });
    }

    /// Duration of each completed step, in ms (for the response and the report).
    pub fn timings(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        for s in &self.steps {
            if s.outcome != StepOutcome::Failed {
                let prev = out.get(s.step.as_str()).and_then(Value::as_u64).unwrap_or(0);
                out.insert(s.step.as_str().into(), Value::from(prev + s.duration_ms));
            }
        }
        out
    }
}

/// The record plus the ETag it was last written at: every write is a compare-and-swap on it.
///
/// Each `Recorder` writes with a token of its own (`ExecutionRecord::writer`), so that after a conflict it can
/// tell one of its own writes whose answer was lost (a timeout after S3 applied it: its in-memory record is newer)
/// from another writer's (`report_recovery`, a joined alarm, `check`, another attempt): only the former is adopted
/// without a decision. A record stored in a terminal state is never written out of it.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The record as we believe it is stored.
    pub record: ExecutionRecord,
    etag: Option<String>,
    /// The state stored at `etag` (`None`: not written yet).
    stored_state: Option<ExecutionState>,
    writer: String,
}

/// What a writer holding the lock found after a conflicting write (see [`Recorder::save_or_reconcile`]).
#[derive(Debug)]
pub enum Reconciled {
    /// Written (after adopting its own lost write, or merging another writer's pages).
    Saved,
    /// The stored record ended meanwhile (a recovery, a cancel, another attempt): it is left as it is.
    Ended(Box<Recorder>),
}

impl Recorder {
    /// A record not yet written.
    pub fn new(record: ExecutionRecord) -> Self {
        Recorder { record, etag: None, stored_state: None, writer: domain::primitives::new_token() }
    }

    /// The ETag the record was last read or written at (`None`: not written yet).
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// A record read from the bucket at `etag`.
    pub fn existing(record: ExecutionRecord, etag: String) -> Self {
        let stored_state = Some(record.state);
        Recorder { record, etag: Some(etag), stored_state, writer: domain::primitives::new_token() }
    }

    /// Whether the record stored at our ETag is in a terminal state.
    pub fn stored_terminal(&self) -> bool {
        self.stored_state.is_some_and(ExecutionState::is_terminal)
    }

    /// The future of writing the current state (create-only the first time, then compare-and-swap); run it
    /// beside the next step and hand its ETag to [`Recorder::saved`]. A write that would move a record stored in
    /// a terminal state out of it fails as a conflict without being sent.
    pub fn save<'a, B: ControlBucket>(
        &self,
        bucket: &'a B,
        now: OffsetDateTime,
    ) -> impl std::future::Future<Output = Result<String, StoreError>> + Send + 'a {
        let mut record = self.record.clone();
        record.updated_at = rfc3339(now);
        record.writer = Some(self.writer.clone());
        let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        let key = record_key(&record.execution_id);
        let condition = match &self.etag {
            None => WriteCondition::IfAbsent,
            Some(e) => WriteCondition::IfMatch(e.clone()),
        };
        let leaves_terminal = self.stored_terminal() && self.stored_state != Some(self.record.state);
        async move {
            if leaves_terminal {
                return Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key });
            }
            bucket.put(&key, body, "application/json", condition).await
        }
    }

    /// Notes the ETag of a successful save.
    pub fn saved(&mut self, etag: String, now: OffsetDateTime) {
        self.record.updated_at = rfc3339(now);
        self.record.writer = Some(self.writer.clone());
        self.etag = Some(etag);
        self.stored_state = Some(self.record.state);
    }

    /// Saves now and waits. A conflict caused by one of this writer's own writes whose answer was lost is
    /// resolved by writing again on top of it (after checking, by re-reading, that it is ours); any other
    /// conflict is returned: the caller re-reads and decides again.
    pub async fn save_now<B: ControlBucket>(&mut self, bucket: &B, now: OffsetDateTime) -> Result<(), StoreError> {
        match self.save(bucket, now).await {
            Ok(etag) => {
                self.saved(etag, now);
                Ok(())
            }
            Err(e @ StoreError::Conflict { .. }) => {
                if !self.adopt_own_lost_write(bucket).await? {
                    return Err(e);
                }
                let etag = self.save(bucket, now).await?;
                self.saved(etag, now);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// After a conflict: re-reads the record and, when the stored version was written by this very writer (a
    /// write of ours whose answer was lost), takes its ETag: our record is newer. Never takes another writer's.
    pub async fn adopt_own_lost_write<B: ControlBucket>(&mut self, bucket: &B) -> Result<bool, StoreError> {
        let Some(stored) = read(bucket, &self.record.execution_id).await? else { return Ok(false) };
        if stored.record.writer.as_deref() != Some(self.writer.as_str()) || stored.etag == self.etag {
            return Ok(false);
        }
        self.etag = stored.etag;
        self.stored_state = Some(stored.record.state);
        Ok(true)
    }

    /// Takes in what another writer stored (`stored`, just read) so that the next write is a compare-and-swap on
    /// it and loses nothing of it: its pages sent and owed, its notes. When the stored record says the alarm
    /// recovered (its `OK` sent or owed), the `ALARM` pages still owed here are dropped: they must never go out
    /// after the recovery.
    pub fn merge_from(&mut self, stored: Recorder) {
        let mut messages = stored.record.messages.clone();
        for m in &self.record.messages {
            if !messages.contains(m) {
                messages.push(m.clone());
            }
        }
        // Only a waiting record: a recovery then withdraws its approval page (a running one's stalls still page).
        let recovered = stored.record.recovered() && stored.record.state == ExecutionState::AwaitingApproval;
        // The stored incident was resolved by another attempt (its last page an `OK`: the promotion verified and
        // announced): a stall this writer decided to page on an older read re-opens nothing, as `stop` decides on
        // a resolved record (its `ALARM` would follow the `OK`, and nothing would resolve it again).
        let resolved = stored.record.resolved();
        let mut owed = stored.record.owed.clone();
        for o in &self.record.owed {
            let sent = messages.iter().any(|m| m.channel == o.channel && m.event_type == o.event_type);
            let stale_alarm = (recovered || resolved && o.event_type.contains(".stalled_")) && !o.resolves();
            if !sent && !stale_alarm && !owed.iter().any(|x| x.channel == o.channel && x.event_type == o.event_type) {
                owed.push(o.clone());
            }
        }
        for n in &stored.record.notes {
            if !self.record.notes.contains(n) {
                self.record.notes.push(n.clone());
            }
        }
        self.record.messages = messages;
        self.record.owed = owed;
        // A delivery without the lock may be publishing an `ALARM` (or have died after it): its mark stays.
        self.record.unlocked_alarm_since =
            self.record.unlocked_alarm_since.take().max(stored.record.unlocked_alarm_since.clone());
        self.etag = stored.etag;
        self.stored_state = stored.stored_state;
    }

    /// Saves for a writer that holds the lock: on a conflict with another writer, re-reads; a record that ended
    /// meanwhile is left as it is ([`Reconciled::Ended`]); otherwise its pages are merged in and the write is tried
    /// again (a few times).
    pub async fn save_or_reconcile<B: ControlBucket>(
        &mut self,
        bucket: &B,
        now: OffsetDateTime,
    ) -> Result<Reconciled, StoreError> {
        let mut last = None;
        for _ in 0..4 {
            match self.save_now(bucket, now).await {
                Ok(()) => return Ok(Reconciled::Saved),
                Err(e @ StoreError::Conflict { .. }) => {
                    let Some(stored) = read(bucket, &self.record.execution_id).await? else { return Err(e) };
                    if stored.record.state.is_terminal() {
                        return Ok(Reconciled::Ended(Box::new(stored)));
                    }
                    self.merge_from(stored);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Conflict {
            service: "S3",
            operation: "PutObject",
            target: record_key(&self.record.execution_id),
        }))
    }
}

impl ExecutionRecord {
    /// The command that resumes this execution when it stopped, in a sentence: `approve` again for one a human
    /// approved (nothing redelivers an alarm whose delivery already succeeded), the same command with its client
    /// token for a human's, and for an alarm's the redelivery Lambda and EventBridge make, then `approve`.
    pub fn resume_hint(&self) -> String {
        let id = &self.execution_id;
        match (&self.approved_by, &self.initiator) {
            (Some(by), _) => format!(
                "Resume it by approving again: `approve` with execution_id {id} (`dr approve {id}`); it was approved by \
                 {by}, and approving an approved execution resumes it."
            ),
            (None, Initiator::Human { .. }) => match self.client_token() {
                Some((command, token)) => format!(
                    "Resume it by running the same command again with its client token {token}: `dr {command} --to {} \
                     --reason <the same reason> --token {token}` (or \"client_token\": \"{token}\" in the manual-trigger \
                     payload); the same token resumes execution {id}.",
                    self.target
                ),
                None => format!(
                    "Resume it by re-running the same command with \"client_token\" set so that the execution id is {id}."
                ),
            },
            (None, Initiator::Alarm { .. }) => format!(
                "Lambda and EventBridge deliver the alarm again (their retries); once those are spent, `approve` with \
                 execution_id {id} (`dr approve {id}`) resumes it."
            ),
        }
    }
}

impl ExecutionRecord {
    /// A human's command and the client token that names this execution (`{command}-{token}`): the one given,
    /// or the one generated when none was (re-running the command with it resumes the same execution).
    pub fn client_token(&self) -> Option<(String, String)> {
        let command = self.trigger["command"].as_str()?.to_owned();
        let token = match self.trigger["client_token"].as_str() {
            Some(t) => t.to_owned(),
            None => self.execution_id.strip_prefix(&format!("{command}-"))?.to_owned(),
        };
        Some((command, token))
    }
}

/// Reads a record, if it exists.
pub async fn read(bucket: &impl ControlBucket, execution_id: &str) -> Result<Option<Recorder>, StoreError> {
    let Some(o) = bucket.get(&record_key(execution_id)).await? else { return Ok(None) };
    let record = serde_json::from_slice(&o.body).map_err(|e| StoreError::Refused {
        service: "S3",
        operation: "GetObject",
        message: format!("{} is not an execution record: {e}", record_key(execution_id)),
    })?;
    Ok(Some(Recorder::existing(record, o.etag)))
}
