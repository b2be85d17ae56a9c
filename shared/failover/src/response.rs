//! The response every `manual-trigger` command answers with (CONTRACT.md), and the typed answers of the
//! commands. The engine builds them as structs; they become JSON only where they leave the process (the
//! function's answer, `dr --json`), through `serde_json::to_value`, whose maps sort their keys (the crate's
//! `preserve_order` feature is off): the field order of these structs does not reach the bytes. `dr` reads an
//! answer back into the same structs (`tests/golden/*.json` pin the bytes).

use crate::record::{ExecutionRecord, ExecutionState};
use crate::rules::decision::{Decision, ExecutionKind, Initiator};
use domain::site::SiteName;
use dr_ports::finding::Finding;
use dr_ports::lock::LockDoc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An execution ran to its end.
    Completed,
    /// The same trigger already completed; nothing was done again.
    AlreadyCompleted,
    /// An execution is running.
    InProgress,
    /// Prepared, waiting for a human's `approve`.
    AwaitingApproval,
    /// The payload was not valid; nothing changed.
    Rejected,
    /// Nothing to change (read-only commands answer this).
    Noop,
    /// Stood down under the lock: what the decision rested on no longer holds (`{prefix}/active` moved, the
    /// policy changed); nothing was written.
    Superseded,
}

impl Outcome {
    /// The contract's word for it (`completed`, `awaiting_approval`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::AlreadyCompleted => "already_completed",
            Outcome::InProgress => "in_progress",
            Outcome::AwaitingApproval => "awaiting_approval",
            Outcome::Rejected => "rejected",
            Outcome::Noop => "noop",
            Outcome::Superseded => "superseded",
        }
    }
}

/// A command's answer: `outcome`, `active_site`, an optional message, and the command's own fields (`D`: the
/// engine answers [`Details`]; `dr` reads an answer back as the command's own struct, e.g. [`ExecutionAnswer`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResponse<D = Details> {
    /// What happened.
    pub outcome: Outcome,
    /// The site live in `{prefix}/active`, when it could be read.
    pub active_site: Option<SiteName>,
    /// A human sentence: for `rejected`, what is wrong and what is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The command's own fields.
    #[serde(flatten)]
    pub details: D,
}

/// The command's own fields of an answer: typed for the commands converted so far, a JSON map for the others.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Details {
    /// An execution's answer (`failover`, `failback`, `approve`, `cancel`, `unlock`, `drill`).
    Execution(Box<ExecutionAnswer>),
    /// `status`.
    Status(Box<StatusAnswer>),
    /// `check`.
    Check(Box<CheckAnswer>),
    /// `snapshot` (and a carried export's continuation).
    Snapshot(Box<SnapshotAnswer>),
    /// `sync`: the plan, and the apply's record when it ran.
    Sync(Box<SyncAnswer>),
    /// A rejection (no field).
    Fields(Map<String, Value>),
}

/// `sync`'s answer: the plan; with `apply`, the apply's journal and where its record is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// `sync`.
    pub command: String,
    /// The plan from the latest exports.
    pub plan: dr_workspace::sync::PlanView,
    /// The apply's journal (`--apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<dr_workspace::sync::journal::Journal>,
    /// Where the apply's record is (`databricks/sync/{plan_id}.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_key: Option<String>,
}

impl CommandResponse {
    /// A rejection: nothing changed.
    pub fn rejected(message: impl Into<String>, active_site: Option<SiteName>) -> Self {
        CommandResponse {
            outcome: Outcome::Rejected,
            active_site,
            message: Some(message.into()),
            details: Details::Fields(Map::new()),
        }
    }

    /// The command that answered (the `command` field; none for a rejection).
    pub fn command(&self) -> Option<&str> {
        match &self.details {
            Details::Execution(e) => Some(&e.command),
            Details::Status(s) => Some(&s.command),
            Details::Check(c) => Some(&c.command),
            Details::Snapshot(a) => Some(&a.command),
            Details::Sync(a) => Some(&a.command),
            Details::Fields(m) => m.get("command").and_then(Value::as_str),
        }
    }

    /// Each step's duration in milliseconds, for an answer that has them.
    pub fn timings_ms(&self) -> BTreeMap<String, u64> {
        match &self.details {
            Details::Execution(e) => e.execution.timings_ms.clone(),
            Details::Snapshot(a) => a.timings_ms.clone().unwrap_or_default(),
            Details::Status(_) | Details::Check(_) | Details::Sync(_) => BTreeMap::new(),
            Details::Fields(m) => m
                .get("timings_ms")
                .and_then(Value::as_object)
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
                .unwrap_or_default(),
        }
    }

    /// The untyped fields, for the commands not typed yet (`None` for a typed answer).
    pub fn fields_mut(&mut self) -> Option<&mut Map<String, Value>> {
        match &mut self.details {
            Details::Fields(m) => Some(m),
            _ => None,
        }
    }
}

/// An execution's answer to a command: which command ran it, how far the execution got, and a drill's clean-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionAnswer {
    /// The command that ran it (the Lambda glue counts executions by it: `unlock` is not one).
    pub command: String,
    /// How far the execution got.
    #[serde(flatten)]
    pub execution: ExecutionFields,
    /// A drill's clean-up of its copy: `drill` only, `null` when the drill was refused before it ran (an
    /// answer read back does not tell `null` from absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Option<DrillCleanup>>,
}

/// How far an execution got: the fields of an execution's answer (a command's, an alarm's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFields {
    /// The execution.
    pub execution_id: String,
    /// Its state, when it has a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ExecutionState>,
    /// Each step's duration.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, u64>,
    /// The report's key (`null` until there is one).
    #[serde(default)]
    pub report_key: Option<String>,
    /// The decision, when one was made or recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The lock's holder, when the answer is `in_progress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<LockDoc>,
    /// Pages recorded but not yet published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages_owed: Vec<String>,
    /// The trigger must be delivered again (present only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// What a drill removed after itself, and whether the live site stayed untouched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillCleanup {
    /// When the clean-up ran (RFC 3339).
    pub at: String,
    /// The drill's objects deleted from the control bucket.
    #[serde(default)]
    pub deleted_objects: Vec<String>,
    /// The drill's copies of the parameters deleted.
    #[serde(default)]
    pub deleted_parameters: Vec<String>,
    /// The version of the live `{prefix}/active` after the drill, when it could be read.
    #[serde(default)]
    pub live_active_version: Option<i64>,
    /// What the verification found left over or changed.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Nothing is left over and the live active site is untouched.
    pub verified: bool,
}

/// `status`'s answer: the active site and its config, both sites, the policy, the data plane, what is in flight
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// Always `status`.
    pub command: String,
    /// The deployment's environment.
    pub environment: String,
    /// The SSM prefix of the DR documents.
    pub ssm_prefix: String,
    /// `{prefix}/active`.
    pub active: Fallible<ActiveView>,
    /// Each site's document, by site name.
    pub sites: BTreeMap<String, Fallible<SiteView>>,
    /// The policy in force and where it comes from.
    pub policy: PolicyView,
    /// `{prefix}/data-plane` (`dr` does not render it: kept as the document says it).
    pub data_plane: Fallible<DataPlaneView>,
    /// Every document problem.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The workspaces' drift and exports (`workspace::status_view`); `null` until read.
    #[serde(default)]
    pub workspaces: Option<dr_workspace::WorkspacesStatus>,
    /// The workload activation per workspace (when a site document selects something to activate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<crate::activation_view::ActivationView>,
    /// The latest Delta assessment; `null` until read.
    #[serde(default)]
    pub delta_rpo: Option<DeltaRpo>,
    /// The open replication incidents (`replication::summaries`), or why they could not be read; `null` until
    /// read.
    #[serde(default)]
    pub replication_incidents: Option<Fallible<Vec<dr_replication::IncidentSummary>>>,
    /// The failover lock's holder (`null`: none).
    #[serde(default = "no_lock")]
    pub in_flight: Fallible<Option<LockDoc>>,
    /// The newest executions (five).
    pub recent_executions: Fallible<Vec<ExecutionSummary>>,
    /// The executions running or awaiting approval, and how to go on (absent when the records could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumable_executions: Option<Vec<ExecutionSummary>>,
    /// The executions that owe pages (absent when the records could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_owed: Option<Vec<OwedPages>>,
}

/// The parts of `status` that other crates build, named here so that readers of the answer (`dr`) need only
/// this crate.
pub use crate::activation_view::{ActivationView, WorkspaceActivation};
pub use crate::fallible::Fallible;
pub use dr_replication::IncidentSummary;
pub use dr_workspace::progress::ExportView;
pub use dr_workspace::readiness::{MatrixAnswer, MatrixOnCheck, MatrixRowAnswer};
pub use dr_workspace::rules::matrix::Protection;
pub use dr_workspace::sync::{ApplyOnCheck, PlannedOnCheck, SyncOnCheck};
pub use dr_workspace::{WorkspaceDrift, WorkspacesStatus};

/// The latest Delta assessment in `status` (`delta::LATEST_KEY`), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeltaRpo {
    /// The assessment could not be read.
    Failed {
        /// The failure, in a sentence.
        error: String,
    },
    /// No assessment yet.
    NotYet {
        /// Always `null` (no workload RPO): `()` serializes as `null`.
        workload: (),
        /// Why there is none.
        why: String,
    },
    /// The latest assessment, each field as stored (`null` when the document lacks it or does not read).
    Assessed {
        /// When it ran (RFC 3339).
        generated_at: Option<String>,
        /// Whether every location was assessed.
        complete: Option<bool>,
        /// The workload's RPO.
        workload: Option<dr_delta::rules::report::Workload>,
    },
}

impl DeltaRpo {
    /// The assessment stored under `delta::LATEST_KEY` (its body), each field read on its own.
    pub fn of_document(body: &[u8]) -> DeltaRpo {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |name: &str| v.get(name).cloned().unwrap_or(Value::Null);
        DeltaRpo::Assessed {
            generated_at: serde_json::from_value(field("generated_at")).ok().flatten(),
            complete: serde_json::from_value(field("complete")).ok().flatten(),
            workload: serde_json::from_value(field("workload")).ok().flatten(),
        }
    }

    /// No assessment yet.
    pub fn not_yet() -> DeltaRpo {
        DeltaRpo::NotYet { workload: (), why: "no Delta assessment yet: it runs with every snapshot".into() }
    }

    /// The workload's RPO, when assessed.
    pub fn workload(&self) -> Option<&dr_delta::rules::report::Workload> {
        match self {
            DeltaRpo::Assessed { workload, .. } => workload.as_ref(),
            _ => None,
        }
    }
}

fn no_lock() -> Fallible<Option<LockDoc>> {
    Fallible::Read(None)
}

/// `{prefix}/active` in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveView {
    /// The active site.
    pub site: SiteName,
    /// The execution that promoted it, when known.
    pub execution_id: Option<String>,
    /// When it was promoted (RFC 3339), when known.
    pub promoted_at: Option<String>,
    /// The parameter's version.
    pub version: i64,
    /// The active config as stored.
    pub config: Map<String, Value>,
}

/// A site's document in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteView {
    /// The parameter's version.
    pub version: i64,
    /// The site config as stored.
    pub config: Map<String, Value>,
}

/// The policy in `status`: where it comes from, and the policy or why it is invalid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    /// `parameter`, or the default's explanation.
    pub source: String,
    /// The parameter's version (a parameter only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<domain::policy::Policy>,
    /// Why the parameter is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `{prefix}/data-plane` in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPlaneView {
    /// The parameter's version.
    pub version: i64,
    /// The replicated locations.
    pub locations: Vec<domain::data_plane::Location>,
}

/// An execution record in a few fields, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The execution.
    pub execution_id: String,
    /// Failover, failback or drill.
    pub kind: ExecutionKind,
    /// Its state.
    pub state: ExecutionState,
    /// The site it moves toward.
    pub target: SiteName,
    /// Who started it.
    pub initiator: Initiator,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was last written (RFC 3339).
    pub updated_at: String,
    /// Its report, once written.
    pub report_key: Option<String>,
    /// Its last error.
    pub error: Option<String>,
    /// How to go on (resumable executions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
}

impl ExecutionSummary {
    /// The record in a few fields.
    pub fn of(r: &ExecutionRecord) -> Self {
        ExecutionSummary {
            execution_id: r.execution_id.clone(),
            kind: r.kind,
            state: r.state,
            target: r.target,
            initiator: r.initiator.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
            report_key: r.report_key.clone(),
            error: r.error.clone(),
            how: None,
        }
    }
}

/// An execution whose pages are owed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedPages {
    /// The execution.
    pub execution_id: String,
    /// The event types of the pages it owes.
    pub pages_owed: Vec<String>,
}

/// `check`'s answer: whether a failover would work now, and what would make it fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// Always `check`.
    pub command: String,
    /// No critical finding.
    pub ready: bool,
    /// The findings by severity.
    pub counts: FindingCounts,
    /// The findings, most severe first.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// The finding ids paged (or resolved) by this check.
    #[serde(default)]
    pub paged: Vec<String>,
    /// The live DR matrix (`workspace::readiness::publish`), or why it could not be assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr_matrix: Option<MatrixOnCheck>,
    /// The sync plan's size (and the apply of the kinds the policy's `sync_on_check` names), or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncOnCheck>,
}

/// How many findings of each severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    /// Critical: a failover would fail or page.
    pub critical: usize,
    /// Warning: look soon.
    pub warning: usize,
    /// Info.
    pub info: usize,
}

/// `snapshot`'s answer: the manifest written, or how far a workspace export carried over invocations got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotAnswer {
    /// Always `snapshot`.
    pub command: String,
    /// The snapshot's manifest, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_manifest_key: Option<String>,
    /// How many files the snapshot holds (a snapshot taken in one invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    /// The snapshot's duration (a snapshot taken in one invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings_ms: Option<BTreeMap<String, u64>>,
    /// The workspaces' exports (`workspace::export_summary`, `workspace::carry::summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspaces: Option<dr_workspace::ExportsSummary>,
    /// The drift between the workspaces, in a sentence, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_drift: Option<String>,
    /// A carried export's run (its state object's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_run: Option<String>,
    /// The invocations a carried export has taken so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<u32>,
    /// A carried export's parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<CarriedParts>,
}

impl SnapshotAnswer {
    /// An answer with only its command: the rest is filled by the path taken.
    pub fn new() -> Self {
        SnapshotAnswer {
            command: "snapshot".into(),
            snapshot_manifest_key: None,
            files: None,
            timings_ms: None,
            workspaces: None,
            workspace_drift: None,
            export_run: None,
            invocations: None,
            parts: None,
        }
    }
}

impl Default for SnapshotAnswer {
    fn default() -> Self {
        SnapshotAnswer::new()
    }
}

/// A carried export's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedParts {
    /// All its parts.
    pub total: usize,
    /// Those not done yet.
    pub pending: usize,
    /// Those finished in this invocation.
    pub finished_here: usize,
    /// Continuations posted by this invocation.
    pub posted: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON that `status` wrote for `delta_rpo` when it was built with `json!`: the typed parts must write
    /// the same (the goldens cover only the no-assessment case).
    #[test]
    fn delta_rpo_writes_what_the_untyped_answer_wrote() {
        let stored = json!({"generated_at": "2026-01-05T09:00:00Z", "complete": true, "tables": [],
            "workload": {"state": "known", "rpo_seconds": 60, "worst_table": "t", "without_rpo": [], "unsafe_streams": [],
                         "prefixes_missing_objects": [], "summary": "RPO 1 min (t)"}});
        let body = serde_json::to_vec(&stored).unwrap();
        let want =
            json!({"generated_at": stored["generated_at"], "complete": stored["complete"], "workload": stored["workload"]});
        assert_eq!(serde_json::to_value(DeltaRpo::of_document(&body)).unwrap(), want);
        // A document that does not read: each field `null`, as `v["..."]` gave.
        let want = json!({"generated_at": null, "complete": null, "workload": null});
        assert_eq!(serde_json::to_value(DeltaRpo::of_document(b"not json")).unwrap(), want);
        let want = json!({"workload": null, "why": "no Delta assessment yet: it runs with every snapshot"});
        assert_eq!(serde_json::to_value(DeltaRpo::not_yet()).unwrap(), want);
        let failed = DeltaRpo::Failed { error: "denied".into() };
        assert_eq!(serde_json::to_value(&failed).unwrap(), json!({"error": "denied"}));
        // And `dr` reads each back as the same variant.
        for v in [DeltaRpo::of_document(&body), DeltaRpo::not_yet(), failed] {
            assert_eq!(serde_json::from_value::<DeltaRpo>(serde_json::to_value(&v).unwrap()).unwrap(), v);
        }
    }

    /// `workspaces` and `replication_incidents` as the untyped answer wrote them when they could not be read, and
    /// `null` before they are read.
    #[test]
    fn failed_parts_write_an_error_object_and_unread_parts_null() {
        let ws = WorkspacesStatus::Failed { error: "denied".into() };
        assert_eq!(serde_json::to_value(&ws).unwrap(), json!({"error": "denied"}));
        let ws = WorkspacesStatus::Read {
            drift: WorkspaceDrift::Failed { error: "denied".into() },
            latest_exports: BTreeMap::new(),
            exports: BTreeMap::new(),
        };
        let want = json!({"drift": {"error": "denied"}, "latest_exports": {}, "exports": {}});
        assert_eq!(serde_json::to_value(&ws).unwrap(), want);
        assert_eq!(serde_json::from_value::<WorkspacesStatus>(want).unwrap(), ws);
        let incidents: Option<Fallible<Vec<IncidentSummary>>> = Some(Fallible::Failed { error: "denied".into() });
        assert_eq!(serde_json::to_value(&incidents).unwrap(), json!({"error": "denied"}));
        assert_eq!(serde_json::to_value(None::<DeltaRpo>).unwrap(), Value::Null);
    }
}
