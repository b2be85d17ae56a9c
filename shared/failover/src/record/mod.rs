//! The resumable execution record `executions/{execution_id}.json`, written with compare-and-swap.

use crate::rules::decision::{Action, Decision, ExecutionKind, Initiator};
use domain::primitives::rfc3339;
use domain::site::SiteName;
use dr_ports::{Channel, OutgoingMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

mod recorder;
pub use recorder::{Reconciled, Recorder, read};

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
    pub activation: Option<crate::rules::activation::Activation>,
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
