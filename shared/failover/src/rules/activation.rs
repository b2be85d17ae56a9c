//! Workload activation and client redirection, as pure functions: which jobs a site document selects, the
//! changes a promotion makes (resume the target's selected jobs, start its named SQL warehouses, pause the same
//! jobs in the former active workspace, move the stable DNS name), the exact reverse of recorded changes (a
//! failback restores each object's `before`), and the "out of step" findings (a selected job scheduled in both
//! workspaces runs twice).
//!
//! The settings:
//! - a site document's optional `activation` object: `{"job_tag": "dr=active-passive", "warehouses": ["bi"]}`
//!   (`job_tag` `key=value` selects the jobs whose `settings.tags[key] == value`; `warehouses` names SQL
//!   warehouses by name or id);
//! - the environment's optional `{prefix}/redirection` document:
//!   `{"hosted_zone_id": "Z…", "record_name": "dbx.example.internal", "ttl": 60}` (a CNAME to the active
//!   workspace's host).

pub use domain::site::ActivationSettings;
use domain::site::{SiteConfig, SiteName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The pause fields of a job's settings that start runs by themselves.
pub const PAUSE_FIELDS: [&str; 3] = ["schedule", "continuous", "trigger"];

/// `PAUSED` / `UNPAUSED`, as the Jobs API writes them.
pub const PAUSED: &str = "PAUSED";
/// See [`PAUSED`].
pub const UNPAUSED: &str = "UNPAUSED";

/// The environment's client redirection (`{prefix}/redirection`): a Route 53 CNAME moved with the promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirection {
    /// The hosted zone holding the record.
    pub hosted_zone_id: String,
    /// The stable name clients use, e.g. `dbx.example.internal`.
    pub record_name: String,
    /// The record's TTL in seconds.
    pub ttl: i64,
}

impl Redirection {
    /// Validates the document.
    pub fn parse(json: &str) -> Result<Redirection, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON ({e}); expected a JSON object"))?;
        let Value::Object(m) = v else { return Err("expected a JSON object".into()) };
        let text = |k: &str, what: &str| match m.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(other) => Err(format!("`{k}` is {}; expected {what}", domain::describe_json(other))),
            None => Err(format!("missing `{k}` (expected {what})")),
        };
        let hosted_zone_id = text("hosted_zone_id", "the Route 53 hosted zone id, e.g. Z0123456789ABC")?;
        let hosted_zone_id = hosted_zone_id.trim_start_matches("/hostedzone/").to_owned();
        let record_name = text("record_name", "the stable DNS name clients use, e.g. dbx.example.internal")?;
        let ttl = match m.get("ttl") {
            None => 60,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|t| (0..=172_800).contains(&t)) => n.as_i64().unwrap_or(60),
            Some(other) => return Err(format!("`ttl` is {other}; expected seconds between 0 and 172800")),
        };
        Ok(Redirection { hosted_zone_id, record_name: record_name.trim_end_matches('.').to_owned(), ttl })
    }

    /// The CNAME value for a site: the host of its workspace URL.
    pub fn target_of(config: &SiteConfig) -> String {
        url::Url::parse(config.workspace_url()).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
    }
}

/// A job as activation sees it (from `jobs/list` or `jobs/get`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The job id (a number, as text).
    pub id: String,
    /// `settings.name`.
    pub name: String,
    /// `settings.tags`.
    pub tags: BTreeMap<String, String>,
    /// Each pause field present (`schedule`, `continuous`, `trigger`) with its `pause_status` (absent: `UNPAUSED`,
    /// the API's default).
    pub pauses: Vec<(String, String)>,
}

impl JobView {
    /// Reads a job object; `None` without a `job_id`.
    pub fn of(job: &Value) -> Option<JobView> {
        let id = match &job["job_id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return None,
        };
        let settings = &job["settings"];
        let tags = settings["tags"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
            .unwrap_or_default();
        let pauses = PAUSE_FIELDS
            .iter()
            .filter(|f| settings[**f].is_object())
            .map(|f| ((*f).to_owned(), settings[*f]["pause_status"].as_str().unwrap_or(UNPAUSED).to_owned()))
            .collect();
        Some(JobView { id, name: settings["name"].as_str().unwrap_or_default().to_owned(), tags, pauses })
    }

    /// Whether any of its pause fields lets it run by itself.
    pub fn runs(&self) -> bool {
        self.pauses.iter().any(|(_, p)| p == UNPAUSED)
    }

    /// The pause status of `field`, if the job has it.
    pub fn pause(&self, field: &str) -> Option<&str> {
        self.pauses.iter().find(|(f, _)| f == field).map(|(_, p)| p.as_str())
    }
}

/// A SQL warehouse as activation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `RUNNING`, `STOPPED`, `STARTING`, `STOPPING`, `DELETED`, ...
    pub state: String,
}

impl WarehouseView {
    /// Reads a warehouse object; `None` without an `id`.
    pub fn of(w: &Value) -> Option<WarehouseView> {
        Some(WarehouseView {
            id: w["id"].as_str()?.to_owned(),
            name: w["name"].as_str().unwrap_or_default().to_owned(),
            state: w["state"].as_str().unwrap_or("UNKNOWN").to_owned(),
        })
    }

    /// Running or on its way.
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "RUNNING" | "STARTING")
    }
}

/// What a change touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    /// A job's pause field (`jobs/update` with only that field).
    Job,
    /// A SQL warehouse's state (`sql/warehouses/{id}/start` or `/stop`).
    Warehouse,
    /// The Route 53 CNAME (`ChangeResourceRecordSets` UPSERT).
    DnsRecord,
}

/// Where a change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Recorded, not attempted (a drill's plan stays so).
    #[default]
    Planned,
    /// Made by this execution.
    Done,
    /// Found already at `after` when its turn came (an earlier attempt's call landed before a crash).
    AlreadyDone,
    /// Left as it was: the object had moved on (someone changed it), so it was not touched.
    Skipped,
    /// Could not be made (the workspace did not answer, the deadline passed, an error): someone must do it by hand.
    NotDone,
}

impl ChangeStatus {
    /// Whether the change is in effect because of this execution (a failback reverses it).
    pub fn in_effect(self) -> bool {
        matches!(self, ChangeStatus::Done | ChangeStatus::AlreadyDone)
    }
}

/// One change of an activation: `{site, object, field, before, after}`, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The workspace (`None`: the DNS record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteName>,
    /// What kind of object.
    pub object: ObjectType,
    /// Its id (job id, warehouse id, record name).
    pub id: String,
    /// Its name, for humans.
    pub name: String,
    /// `schedule` / `continuous` / `trigger`, `state`, `CNAME`.
    pub field: String,
    /// The value found.
    pub before: String,
    /// The value made.
    pub after: String,
    /// In the former active workspace: bounded by a deadline, never failing the execution.
    #[serde(default)]
    pub best_effort: bool,
    /// Where it stands.
    #[serde(default)]
    pub status: ChangeStatus,
    /// Why not done, or what was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Change {
    /// One line for pages and reports: `secondary job nightly-etl (123) schedule PAUSED -> UNPAUSED: done`.
    pub fn line(&self) -> String {
        let place = self.site.map(|s| format!("{s} ")).unwrap_or_default();
        let object = match self.object {
            ObjectType::Job => "job",
            ObjectType::Warehouse => "warehouse",
            ObjectType::DnsRecord => "DNS record",
        };
        let id = if self.id == self.name { String::new() } else { format!(" ({})", self.id) };
        let status = match self.status {
            ChangeStatus::Planned => "planned",
            ChangeStatus::Done => "done",
            ChangeStatus::AlreadyDone => "already done",
            ChangeStatus::Skipped => "skipped",
            ChangeStatus::NotDone => "NOT DONE",
        };
        let before = if self.before.is_empty() { "(absent)" } else { &self.before };
        let detail = self.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        format!("{place}{object} {}{id} {} {before} -> {}: {status}{detail}", self.name, self.field, self.after)
    }

    /// What someone must do by hand, when the change was not made.
    pub fn by_hand(&self) -> Option<String> {
        (self.status == ChangeStatus::NotDone).then(|| {
            let what = match (self.object, self.after.as_str()) {
                (ObjectType::Job, PAUSED) => format!("pause the {} of job {} ({})", self.field, self.name, self.id),
                (ObjectType::Job, _) => format!("resume the {} of job {} ({})", self.field, self.name, self.id),
                (ObjectType::Warehouse, "RUNNING") => format!("start SQL warehouse {} ({})", self.name, self.id),
                (ObjectType::Warehouse, _) => format!("stop SQL warehouse {} ({})", self.name, self.id),
                (ObjectType::DnsRecord, _) => format!("point the CNAME {} at {}", self.name, self.after),
            };
            match self.site {
                Some(s) => format!("in the {s} workspace, {what}"),
                None => what,
            }
        })
    }
}

/// How many things to do by hand a summary (a page) names; the report lists every one.
pub const BY_HAND_IN_SUMMARY: usize = 10;

/// Everything activation found and planned, as the execution record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Activation {
    /// `forward` (a plan from the workspaces' states) or `reverse` (the changes of `reverses` undone).
    pub mode: String,
    /// The execution whose changes this one reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<String>,
    /// The changes, in the order they are made.
    pub changes: Vec<Change>,
    /// What could not be planned and someone must do by hand (a workspace that did not answer, a warehouse not
    /// found).
    #[serde(default)]
    pub manual: Vec<String>,
    /// A drill: the plan only, nothing changed.
    #[serde(default)]
    pub drill: bool,
}

impl Activation {
    /// Whether every change has been settled (none left planned).
    pub fn settled(&self) -> bool {
        self.changes.iter().all(|c| c.status != ChangeStatus::Planned)
    }

    /// Everything someone must do by hand: the unplannable, and the changes not made.
    pub fn by_hand(&self) -> Vec<String> {
        let mut out = self.manual.clone();
        out.extend(self.changes.iter().filter_map(Change::by_hand));
        out
    }

    /// One sentence for pages: `activation: 7 changes done, 1 not done (do by hand: ...)`.
    pub fn summary(&self) -> String {
        if self.drill {
            let lines: Vec<String> = self.changes.iter().map(Change::line).collect();
            return format!("activation (drill, nothing changed): would make {} change(s): {}", lines.len(), lines.join("; "));
        }
        let done = self.changes.iter().filter(|c| c.status.in_effect()).count();
        let skipped = self.changes.iter().filter(|c| c.status == ChangeStatus::Skipped).count();
        let mut s = format!("activation ({}): {done} of {} change(s) in effect", self.mode, self.changes.len());
        if skipped > 0 {
            s.push_str(&format!(", {skipped} skipped (the object had moved on)"));
        }
        let hand = self.by_hand();
        if hand.len() > BY_HAND_IN_SUMMARY {
            // At size (a workspace that stopped answering with 1,000 jobs left) the page names the first few and
            // the count: a page cut at its size limit would drop the rest without a word.
            let more = hand.len() - BY_HAND_IN_SUMMARY;
            s.push_str(&format!(
                "; do by hand ({} item(s)): {}; and {more} more: every one in the report's \"Do by hand\" list",
                hand.len(),
                hand[..BY_HAND_IN_SUMMARY].join("; ")
            ));
        } else if !hand.is_empty() {
            s.push_str(&format!("; do by hand: {}", hand.join("; ")));
        }
        s
    }
}

/// The workspaces' states a forward plan rests on.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The site made active.
    pub target: SiteName,
    /// The target's activation settings.
    pub settings: &'a ActivationSettings,
    /// The target's jobs (every job listed; the plan selects).
    pub target_jobs: &'a [JobView],
    /// The target's SQL warehouses.
    pub target_warehouses: &'a [WarehouseView],
    /// The former active workspace's jobs, or why they could not be read.
    pub former_jobs: Result<&'a [JobView], String>,
    /// The former's own settings, when its document has them (its tag selects there); else the target's.
    pub former_settings: Option<&'a ActivationSettings>,
}

/// The forward plan: resume the target's selected jobs, start its named warehouses, pause the former's selected
/// jobs (best effort). Only what differs from the wanted state is a change.
pub fn plan(input: &PlanInput<'_>) -> Activation {
    let mut changes = Vec::new();
    let mut manual = Vec::new();
    let target = input.target;
    let former = target.other();
    for job in input.target_jobs.iter().filter(|j| input.settings.selects(&j.tags)) {
        for (field, pause) in &job.pauses {
            if pause != UNPAUSED {
                changes.push(job_change(target, job, field, pause, UNPAUSED, false));
            }
        }
    }
    for wanted in &input.settings.warehouses {
        match input.target_warehouses.iter().find(|w| &w.id == wanted || &w.name == wanted) {
            None => {
                manual.push(format!("SQL warehouse {wanted:?} is not in the {target} workspace: start the right one by hand"))
            }
            Some(w) if w.is_up() => {}
            Some(w) => changes.push(Change {
                site: Some(target),
                object: ObjectType::Warehouse,
                id: w.id.clone(),
                name: w.name.clone(),
                field: "state".into(),
                before: "STOPPED".into(),
                after: "RUNNING".into(),
                best_effort: false,
                status: ChangeStatus::Planned,
                detail: (w.state != "STOPPED").then(|| format!("found {}", w.state)),
            }),
        }
    }
    let former_settings = input.former_settings.unwrap_or(input.settings);
    match &input.former_jobs {
        Ok(jobs) => {
            for job in jobs.iter().filter(|j| former_settings.selects(&j.tags)) {
                for (field, pause) in &job.pauses {
                    if pause == UNPAUSED {
                        changes.push(job_change(former, job, field, pause, PAUSED, true));
                    }
                }
            }
        }
        Err(why) if former_settings.job_tag.is_some() => {
            let names: Vec<&str> =
                input.target_jobs.iter().filter(|j| input.settings.selects(&j.tags)).map(|j| j.name.as_str()).collect();
            manual.push(format!(
                "could not read the {former} workspace ({why}): pause by hand the schedules and triggers of its jobs tagged {} ({})",
                former_settings.tag_text(),
                names.join(", ")
            ));
        }
        Err(_) => {}
    }
    Activation { mode: "forward".into(), reverses: None, changes, manual, drill: false }
}

fn job_change(site: SiteName, job: &JobView, field: &str, before: &str, after: &str, best_effort: bool) -> Change {
    Change {
        site: Some(site),
        object: ObjectType::Job,
        id: job.id.clone(),
        name: job.name.clone(),
        field: field.to_owned(),
        before: before.to_owned(),
        after: after.to_owned(),
        best_effort,
        status: ChangeStatus::Planned,
        detail: None,
    }
}

/// The reverse of recorded changes toward `target`: every change that may have taken effect (all but a skipped
/// one: done, not done and planned alike, see the loop's comment), undone in reverse order (each object back to
/// its `before`; nothing else). Changes in the site that is not `target` are best effort.
///
/// One exception: a DNS record the failover created (its `before` empty) is not deleted but pointed at
/// `target_host`, the host of `target`'s workspace: clients that adopted the stable name during the failover
/// must follow the failback, not be left on the workspace that is no longer active, nor lose the name. Without
/// a host (the target's site document unusable) that record is left out, and the second list says it is to do
/// by hand.
pub fn reverse(changes: &[Change], target: SiteName, target_host: Option<&str>) -> (Vec<Change>, Vec<String>) {
    let host = target_host.filter(|h| !h.is_empty());
    let mut by_hand = Vec::new();
    let mut out = Vec::new();
    // Every change that may have taken effect: done, and also not done or still planned, since a call can apply
    // and answer late (the former primary paused the jobs after the client's timeout) and on-call makes by hand
    // what a page asked. The step re-reads each object and acts only from the value the failover left
    // (`before` here), so reversing one that never took effect finds it already done and calls nothing. A change
    // skipped because the object had moved on is left alone.
    for c in changes.iter().rev().filter(|c| c.status != ChangeStatus::Skipped) {
        let after = match (c.object, c.before.is_empty(), host) {
            (ObjectType::DnsRecord, true, Some(host)) => host.to_owned(),
            (ObjectType::DnsRecord, true, None) => {
                by_hand
                    .push(format!("the failover created the DNS record {}: point it at the {target} workspace by hand", c.name));
                continue;
            }
            _ => c.before.clone(),
        };
        out.push(Change {
            before: c.after.clone(),
            after,
            best_effort: c.site.is_some_and(|s| s != target),
            status: ChangeStatus::Planned,
            detail: None,
            ..c.clone()
        });
    }
    (out, by_hand)
}

/// A reverse plan completed with the changes of `forward` (planned from the workspaces' states toward the same
/// target) to objects it does not already hold. The reverse undoes only the replaced execution's own plan; a
/// tagged job moved by an earlier execution whose reverse never finished (a failback killed mid-activation, then
/// superseded) is found out of place by the listing, and moved back with the rest (simulation seed 35600).
pub fn with_leftovers(mut reverse: Activation, forward: Activation) -> Activation {
    let key = |c: &Change| (c.site, c.object, c.id.clone(), c.field.clone());
    let held: BTreeSet<_> = reverse.changes.iter().map(key).collect();
    reverse.changes.extend(forward.changes.into_iter().filter(|c| !held.contains(&key(c))));
    reverse.manual.extend(forward.manual);
    reverse
}

/// A finding of `status` / `check` about activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfStep {
    /// Stable id, e.g. `activation-duplicate-nightly-etl`.
    pub id: String,
    /// Critical: runs twice; warning: does not run where it should.
    pub critical: bool,
    /// What is wrong.
    pub what: String,
    /// What to do.
    pub action: String,
}

/// What is out of step between the workspaces: a selected job that runs by itself in both workspaces (critical:
/// duplicate runs), a selected job paused in the active workspace (warning), a named warehouse down there.
pub fn out_of_step(
    active: SiteName,
    settings: &ActivationSettings,
    active_jobs: &[JobView],
    other_jobs: &[JobView],
    active_warehouses: &[WarehouseView],
) -> Vec<OutOfStep> {
    let other = active.other();
    let mut out = Vec::new();
    for job in active_jobs.iter().filter(|j| settings.selects(&j.tags)) {
        let twin = other_jobs.iter().find(|o| o.name == job.name && settings.selects(&o.tags));
        if job.runs() && twin.is_some_and(JobView::runs) {
            out.push(OutOfStep {
                id: format!("activation-duplicate-{}", job.name),
                critical: true,
                what: format!("job {} is scheduled in both workspaces ({active} and {other}): it runs twice", job.name),
                action: format!("pause its schedule and triggers in the {other} workspace (the passive one)"),
            });
        } else if !job.runs() && !job.pauses.is_empty() {
            out.push(OutOfStep {
                id: format!("activation-paused-{}", job.name),
                critical: false,
                what: format!("job {} (tagged {}) is paused in the active {active} workspace", job.name, settings.tag_text()),
                action: "resume it if it should run (was the activation done by hand?)".into(),
            });
        }
    }
    for wanted in &settings.warehouses {
        if let Some(w) = active_warehouses.iter().find(|w| &w.id == wanted || &w.name == wanted)
            && !w.is_up()
        {
            out.push(OutOfStep {
                id: format!("activation-warehouse-{}", w.name),
                critical: false,
                what: format!("SQL warehouse {} of the active {active} workspace is {}", w.name, w.state),
                action: "start it if clients need it".into(),
            });
        }
    }
    out
}

/// The principal a site document's credentials authenticate as, from `GET /api/2.0/preview/scim/v2/Me`
/// (databricks-sdk-go `service/iam/impl.go` `CurrentUser.Me`; its `User` answer, `service/iam/model.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `userName` (an e-mail, or a service principal's application id), else `displayName`, else `id`.
    pub name: String,
    /// Whether `groups` holds the `admins` group: workspace admins have CAN MANAGE on every job
    /// (https://docs.databricks.com/jobs/privileges.html, "Default privileges for jobs").
    pub admin: bool,
}

impl Principal {
    /// Reads a SCIM `Me` answer; `None` when it names nobody.
    pub fn of(me: &Value) -> Option<Principal> {
        let name = ["userName", "displayName", "id"].iter().find_map(|k| me[*k].as_str().filter(|s| !s.is_empty()))?;
        let admin = me["groups"].as_array().is_some_and(|g| g.iter().any(|g| g["display"].as_str() == Some("admins")));
        Some(Principal { name: name.to_owned(), admin })
    }
}

/// Whether the principal of `site` can see every job activation acts on there. A workspace admin sees every
/// job. Anyone else sees only the jobs it has a permission on (CAN VIEW at least: jobs/list answers only those),
/// so a selected job that the other workspace shows and this one does not is taken as hidden from it: activation
/// would leave it as it is (a job left paused in the target, or running in the former). A principal that is not an
/// admin and sees no selected job in either workspace cannot be judged: that is said too.
pub fn visibility_gap(
    site: SiteName,
    settings: &ActivationSettings,
    principal: &Principal,
    seen_here: &[JobView],
    seen_there: &[JobView],
) -> Option<OutOfStep> {
    if principal.admin {
        return None;
    }
    let here: BTreeSet<&str> = seen_here.iter().filter(|j| settings.selects(&j.tags)).map(|j| j.name.as_str()).collect();
    let there: BTreeSet<&str> = seen_there.iter().filter(|j| settings.selects(&j.tags)).map(|j| j.name.as_str()).collect();
    let hidden: Vec<&str> = there.difference(&here).copied().collect();
    let action = format!(
        "add {} to the admins group of the {site} workspace, or grant it CAN MANAGE on every job tagged {} there \
         (activation changes their schedules and triggers)",
        principal.name,
        settings.tag_text()
    );
    if !hidden.is_empty() {
        return Some(OutOfStep {
            id: format!("activation-access-{site}"),
            critical: false,
            what: format!(
                "{} (not a workspace admin) cannot see {} job(s) tagged {} in the {site} workspace that the other \
                 workspace has: {}; activation would leave them as they are",
                principal.name,
                hidden.len(),
                settings.tag_text(),
                hidden.join(", ")
            ),
            action,
        });
    }
    if here.is_empty() && settings.job_tag.is_some() {
        return Some(OutOfStep {
            id: format!("activation-access-{site}"),
            critical: false,
            what: format!(
                "{} (not a workspace admin) sees no job tagged {} in the {site} workspace: whether activation can act \
                 there cannot be proved",
                principal.name,
                settings.tag_text()
            ),
            action,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: u64, name: &str, tag: &str, pauses: &[(&str, &str)]) -> JobView {
        let mut settings = json!({"name": name, "tags": {"dr": tag}});
        for (f, p) in pauses {
            settings[*f] = json!({"pause_status": p});
        }
        JobView::of(&json!({"job_id": id, "settings": settings})).unwrap()
    }

    fn settings() -> ActivationSettings {
        ActivationSettings::from_value(Some(&json!({"job_tag": "dr=active-passive", "warehouses": ["bi"]}))).unwrap().unwrap()
    }

    #[test]
    fn settings_say_what_is_expected() {
        assert_eq!(ActivationSettings::from_value(None).unwrap(), None);
        for (v, needle) in [
            (json!("dr"), "expected an object"),
            (json!({"job_tag": "dr"}), "key=value"),
            (json!({"job_tag": 3}), "key=value"),
            (json!({"warehouses": "bi"}), "array of SQL warehouse"),
            (json!({"warehouses": [""]}), "non-empty"),
            (json!({"jobs": []}), "`activation.jobs` is not a known key"),
        ] {
            let e = ActivationSettings::from_value(Some(&v)).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
        let s = settings();
        assert_eq!(s.job_tag, Some(("dr".into(), "active-passive".into())));
        assert_eq!(s.warehouses, vec!["bi"]);
    }

    #[test]
    fn redirection_is_validated() {
        let r = Redirection::parse(r#"{"hosted_zone_id":"/hostedzone/Z1","record_name":"dbx.example.internal."}"#).unwrap();
        assert_eq!((r.hosted_zone_id.as_str(), r.record_name.as_str(), r.ttl), ("Z1", "dbx.example.internal", 60));
        for (doc, needle) in [
            (r#"{"record_name":"a.b"}"#, "missing `hosted_zone_id`"),
            (r#"{"hosted_zone_id":"Z1"}"#, "missing `record_name`"),
            (r#"{"hosted_zone_id":"Z1","record_name":"a.b","ttl":-1}"#, "`ttl`"),
            ("[]", "JSON object"),
        ] {
            let e = Redirection::parse(doc).unwrap_err();
            assert!(e.contains(needle), "{doc}: {e}");
        }
        let site =
            SiteConfig::parse("s", r#"{"workspace_url":"https://dbc-1.cloud.databricks.com/","region":"us-west-2"}"#).unwrap();
        assert_eq!(Redirection::target_of(&site), "dbc-1.cloud.databricks.com");
    }

    #[test]
    fn the_plan_resumes_the_target_starts_its_warehouses_and_pauses_the_former() {
        let s = settings();
        let target_jobs = [
            job(1, "nightly", "active-passive", &[("schedule", PAUSED)]),
            job(2, "stream", "active-passive", &[("continuous", PAUSED), ("trigger", UNPAUSED)]),
            job(3, "other", "none", &[("schedule", PAUSED)]),
        ];
        let former_jobs = [
            job(11, "nightly", "active-passive", &[("schedule", UNPAUSED)]),
            job(12, "stream", "active-passive", &[("continuous", PAUSED)]),
            job(13, "other", "none", &[("schedule", UNPAUSED)]),
        ];
        let warehouses = [
            WarehouseView { id: "w1".into(), name: "bi".into(), state: "STOPPED".into() },
            WarehouseView { id: "w2".into(), name: "adhoc".into(), state: "STOPPED".into() },
        ];
        let a = plan(&PlanInput {
            target: SiteName::Secondary,
            settings: &s,
            target_jobs: &target_jobs,
            target_warehouses: &warehouses,
            former_jobs: Ok(&former_jobs),
            former_settings: None,
        });
        let lines: Vec<String> = a.changes.iter().map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "secondary job nightly (1) schedule PAUSED -> UNPAUSED: planned",
                "secondary job stream (2) continuous PAUSED -> UNPAUSED: planned",
                "secondary warehouse bi (w1) state STOPPED -> RUNNING: planned",
                "primary job nightly (11) schedule UNPAUSED -> PAUSED: planned",
            ]
        );
        assert!(a.changes[3].best_effort && !a.changes[0].best_effort);
        assert!(a.manual.is_empty());

        // A former that does not answer: the plan says what to pause by hand; a missing warehouse, to start one.
        let mut s2 = s.clone();
        s2.warehouses.push("gone".into());
        let a = plan(&PlanInput {
            target: SiteName::Secondary,
            settings: &s2,
            target_jobs: &target_jobs,
            target_warehouses: &warehouses,
            former_jobs: Err("timed out".into()),
            former_settings: None,
        });
        assert_eq!(a.changes.len(), 3);
        assert!(a.manual[0].contains("\"gone\""), "{:?}", a.manual);
        assert!(
            a.manual[1].contains("could not read the primary workspace (timed out)") && a.manual[1].contains("nightly, stream")
        );
    }

    #[test]
    fn the_reverse_restores_exactly_what_was_changed() {
        let mut changes = vec![
            job_change(SiteName::Secondary, &job(1, "n", "x", &[]), "schedule", PAUSED, UNPAUSED, false),
            job_change(SiteName::Primary, &job(11, "n", "x", &[]), "schedule", UNPAUSED, PAUSED, true),
            job_change(SiteName::Primary, &job(12, "m", "x", &[]), "trigger", UNPAUSED, PAUSED, true),
            Change {
                site: None,
                object: ObjectType::DnsRecord,
                id: "dbx.example.internal".into(),
                name: "dbx.example.internal".into(),
                field: "CNAME".into(),
                before: "a.host".into(),
                after: "b.host".into(),
                best_effort: false,
                status: ChangeStatus::Done,
                detail: None,
            },
        ];
        changes[0].status = ChangeStatus::Done;
        changes[1].status = ChangeStatus::AlreadyDone;
        changes[2].status = ChangeStatus::NotDone;
        let (r, by_hand) = reverse(&changes, SiteName::Primary, Some("p.host"));
        assert!(by_hand.is_empty());
        let lines: Vec<String> = r.iter().map(Change::line).collect();
        // The trigger's pause was NOT DONE (no answer in time) yet is reversed too: it may have applied late.
        assert_eq!(
            lines,
            [
                "DNS record dbx.example.internal CNAME b.host -> a.host: planned",
                "primary job m (12) trigger PAUSED -> UNPAUSED: planned",
                "primary job n (11) schedule PAUSED -> UNPAUSED: planned",
                "secondary job n (1) schedule UNPAUSED -> PAUSED: planned",
            ]
        );
        assert!(!r[2].best_effort && r[3].best_effort);
        // A change skipped (the object had moved on) is left alone.
        changes[2].status = ChangeStatus::Skipped;
        assert_eq!(reverse(&changes, SiteName::Primary, Some("p.host")).0.len(), 3);
    }

    #[test]
    fn leftovers_complete_a_reverse_without_repeating_what_it_holds() {
        let resumed = |id, status| Change {
            status,
            ..job_change(SiteName::Secondary, &job(id, "n", "x", &[]), "schedule", PAUSED, UNPAUSED, false)
        };
        let (reverse, _) = reverse(&[resumed(1, ChangeStatus::Done)], SiteName::Primary, None);
        let reverse =
            Activation { mode: "reverse".into(), reverses: Some("fo2".into()), changes: reverse, ..Activation::default() };
        // The listing finds job 1 (held by the reverse) and job 2, left resumed by an earlier failover.
        let mut found = reverse.changes.clone();
        found.push(job_change(SiteName::Secondary, &job(2, "m", "x", &[]), "schedule", UNPAUSED, PAUSED, true));
        let found = Activation { mode: "forward".into(), changes: found, manual: vec!["hand".into()], ..Activation::default() };
        let a = with_leftovers(reverse, found);
        let lines: Vec<String> = a.changes.iter().map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "secondary job n (1) schedule UNPAUSED -> PAUSED: planned",
                "secondary job m (2) schedule UNPAUSED -> PAUSED: planned"
            ]
        );
        assert_eq!(
            (a.mode.as_str(), a.reverses.as_deref(), a.manual.as_slice()),
            ("reverse", Some("fo2"), &["hand".to_owned()][..])
        );
    }

    #[test]
    fn a_dns_record_the_failover_created_follows_the_failback_rather_than_staying_on_the_former_workspace() {
        let created = Change {
            site: None,
            object: ObjectType::DnsRecord,
            id: "Z1".into(),
            name: "dbx.example.internal".into(),
            field: "CNAME".into(),
            before: String::new(),
            after: "s.host".into(),
            best_effort: false,
            status: ChangeStatus::Done,
            detail: None,
        };
        let (r, _) = reverse(std::slice::from_ref(&created), SiteName::Primary, Some("p.host"));
        let lines: Vec<String> = r.iter().map(Change::line).collect();
        assert_eq!(lines, ["DNS record dbx.example.internal (Z1) CNAME s.host -> p.host: planned"]);
        let (r, by_hand) = reverse(std::slice::from_ref(&created), SiteName::Primary, None);
        assert!(r.is_empty(), "no host: left, said by hand");
        assert_eq!(
            by_hand,
            ["the failover created the DNS record dbx.example.internal: point it at the primary workspace by hand"]
        );
        assert!(reverse(&[created], SiteName::Primary, Some("")).0.is_empty());
    }

    #[test]
    fn a_job_scheduled_in_both_workspaces_is_critical() {
        let s = settings();
        let active =
            [job(1, "n", "active-passive", &[("schedule", UNPAUSED)]), job(2, "m", "active-passive", &[("schedule", PAUSED)])];
        let other = [
            job(11, "n", "active-passive", &[("continuous", UNPAUSED)]),
            job(12, "m", "active-passive", &[("schedule", PAUSED)]),
        ];
        let w = [WarehouseView { id: "w1".into(), name: "bi".into(), state: "STOPPED".into() }];
        let f = out_of_step(SiteName::Primary, &s, &active, &other, &w);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].critical && f[0].what.contains("runs twice"));
        assert!(!f[1].critical && f[1].what.contains("paused in the active"));
        assert!(f[2].what.contains("bi") && f[2].what.contains("STOPPED"));
    }

    #[test]
    fn by_hand_lines_name_the_object() {
        let mut c = job_change(SiteName::Primary, &job(11, "n", "x", &[]), "schedule", UNPAUSED, PAUSED, true);
        assert_eq!(c.by_hand(), None);
        c.status = ChangeStatus::NotDone;
        assert_eq!(c.by_hand().unwrap(), "in the primary workspace, pause the schedule of job n (11)");
        let a = Activation { mode: "forward".into(), changes: vec![c], ..Activation::default() };
        assert!(
            a.summary().contains("0 of 1 change(s) in effect; do by hand: in the primary workspace, pause"),
            "{}",
            a.summary()
        );
    }

    #[test]
    fn a_thousand_things_to_do_by_hand_are_counted_in_the_summary_and_all_kept_for_the_report() {
        // A page is cut at its size limit: 1,000 lines listed in full would lose the tail without a word.
        let changes: Vec<Change> = (0..1000)
            .map(|i| Change {
                status: ChangeStatus::NotDone,
                ..job_change(SiteName::Primary, &job(i, &format!("j{i}"), "x", &[]), "schedule", UNPAUSED, PAUSED, true)
            })
            .collect();
        let a = Activation { mode: "forward".into(), changes, ..Activation::default() };
        let s = a.summary();
        assert!(s.contains("do by hand (1000 item(s)): in the primary workspace, pause the schedule of job j0 (0)"), "{s}");
        assert!(s.contains("job j9 (9); and 990 more: every one in the report's \"Do by hand\" list"), "{s}");
        assert!(!s.contains("job j10 "), "{s}");
        assert_eq!(a.by_hand().len(), 1000, "the report lists every one");
        assert!(s.len() < 2000, "{} bytes", s.len());
    }

    #[test]
    fn a_principal_that_is_not_admin_and_misses_selected_jobs_is_a_gap_naming_them() {
        let s = settings();
        let admin = Principal::of(&json!({"userName": "sp-1", "groups": [{"display": "admins", "value": "1"}]})).unwrap();
        let plain = Principal::of(&json!({"userName": "sp-1", "groups": [{"display": "users"}]})).unwrap();
        assert!(admin.admin && !plain.admin);
        let here = vec![job(1, "etl", "active-passive", &[]), job(2, "other", "none", &[])];
        let there = vec![job(7, "etl", "active-passive", &[]), job(8, "report", "active-passive", &[])];
        assert_eq!(visibility_gap(SiteName::Secondary, &s, &admin, &[], &there), None, "an admin sees every job");
        let gap = visibility_gap(SiteName::Secondary, &s, &plain, &here, &there).unwrap();
        assert_eq!(gap.id, "activation-access-secondary");
        assert!(gap.what.contains("sp-1 (not a workspace admin) cannot see 1 job(s) tagged dr=active-passive"), "{}", gap.what);
        assert!(gap.what.ends_with("report; activation would leave them as they are"), "{}", gap.what);
        assert!(gap.action.contains("admins group") && gap.action.contains("CAN MANAGE"), "{}", gap.action);
        assert_eq!(visibility_gap(SiteName::Secondary, &s, &plain, &there, &here), None, "sees all the other has");
        let blind = visibility_gap(SiteName::Primary, &s, &plain, &[], &[]).unwrap();
        assert!(blind.what.contains("sees no job tagged dr=active-passive"), "{}", blind.what);
        assert_eq!(Principal::of(&json!({"groups": []})), None);
    }
}
