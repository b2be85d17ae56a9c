//! What `status` shows of workload activation, as types (built by `crate::activation`, answered in `status`):
//! apart from the code that reads it, so that the answers name these types without importing activation's steps.

use crate::fallible::Fallible;
use domain::notification::Severity;
use domain::site::SiteName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The activation view of `status` (`crate::activation::view`): each workspace's selected jobs and warehouses, and what is out
/// of step; or why it could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActivationView {
    /// No view: this function has no workspace connector.
    Unavailable {
        /// Why, in a sentence.
        error: String,
    },
    /// Both workspaces, as read.
    Read {
        /// The active site (its selection decides).
        active: SiteName,
        /// The tag that selects the jobs, as text.
        job_tag: String,
        /// Each workspace's activation, by site name.
        workspaces: BTreeMap<String, WorkspaceActivation>,
        /// What is out of step between the workspaces (the findings, in a few fields).
        out_of_step: Vec<OutOfStepView>,
    },
}

/// One workspace's activation in [`ActivationView`], or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkspaceActivation {
    /// Its jobs and warehouses could not be read.
    Failed {
        /// Whether it is the active site's workspace.
        active: bool,
        /// Why, in a sentence.
        error: String,
    },
    /// Its selected jobs and warehouses.
    Read {
        /// Whether it is the active site's workspace.
        active: bool,
        /// Who its credentials act as, or why that could not be read.
        principal: Fallible<PrincipalView>,
        /// How many selected jobs are scheduled, in words.
        summary: String,
        /// The selected jobs.
        jobs: Vec<JobActivation>,
        /// The named warehouses.
        warehouses: Vec<WarehouseActivation>,
    },
}

/// Who a workspace's credentials act as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalView {
    /// Its name.
    pub name: String,
    /// Whether it is a workspace admin.
    pub admin: bool,
}

/// A selected job in [`WorkspaceActivation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobActivation {
    /// `settings.name`.
    pub name: String,
    /// Whether it runs by itself (a pause field `UNPAUSED`).
    pub runs: bool,
    /// Each pause field present with its `pause_status`.
    pub pause_status: BTreeMap<String, String>,
}

/// A named warehouse in [`WorkspaceActivation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseActivation {
    /// Its name.
    pub name: String,
    /// Its state (`RUNNING`, `STOPPED`, ...).
    pub state: String,
}

/// A finding of [`view`] in a few fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfStepView {
    /// The finding's id.
    pub id: String,
    /// Its severity.
    pub severity: Severity,
    /// What is out of step.
    pub what: String,
}
