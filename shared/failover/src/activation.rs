//! What `status` and `check` say of workload activation (the failover's `activate` step,
//! `failover::activate`): each workspace's selected jobs (scheduled or paused) and named SQL warehouses, read
//! through the connector under a short deadline, and what is out of step between the two: a selected job that
//! runs by itself in both workspaces is a critical finding (duplicate runs). `check` also proves that each
//! workspace's principal can see what activation acts on there: a workspace admin (`scim/v2/Me`, group `admins`),
//! or one that sees every tagged job the other workspace has; otherwise a finding names the gap.

use crate::activate::{jobs_of, warehouses_of};
use crate::activation_view::{
    ActivationView, JobActivation, OutOfStepView, PrincipalView, WarehouseActivation, WorkspaceActivation,
};
use crate::fallible::Fallible;
use crate::rules::activation::{self, ActivationSettings, JobView, Principal, WarehouseView};
use domain::notification::Severity;
use domain::site::SiteName;
use dr_ports::WorkspaceConnector;
use dr_ports::documents::DrDocuments;
use dr_ports::finding::Finding;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long `status` and `check` wait for a workspace's jobs and warehouses.
pub const VIEW_DEADLINE: Duration = Duration::from_secs(8);

/// One workspace's jobs and warehouses (as its principal sees them) and who that principal is (or why not), or
/// why they could not be read.
type Read = Result<(Vec<JobView>, Vec<WarehouseView>, Result<Principal, String>), String>;

/// Who the credentials authenticate as (databricks-sdk-go `service/iam/impl.go` `CurrentUser.Me`).
const ME_PATH: &str = "/api/2.0/preview/scim/v2/Me";

/// The activation view (for `status`) and the findings (for `check`); `None` when no site document selects
/// anything to activate.
pub async fn view(connector: Option<&dyn WorkspaceConnector>, docs: &DrDocuments) -> Option<(ActivationView, Vec<Finding>)> {
    let settings_of = |site: SiteName| docs.site(site).valid().and_then(|c| ActivationSettings::of(c).ok().flatten());
    let active = docs.active.valid().map(|a| a.site)?;
    // The active site's selection decides; the other's own, when it has one, for its side.
    let settings = settings_of(active).or_else(|| settings_of(active.other()))?;
    let Some(connector) = connector else {
        return Some((ActivationView::Unavailable { error: "no workspace connector in this function".into() }, Vec::new()));
    };
    let read = |site: SiteName| async move {
        let Some(config) = docs.site(site).valid() else { return Err(format!("sites/{site} is not valid")) };
        let api = connector.connect(site, config).map_err(|e| e.to_string())?;
        let me = async {
            match api.get(ME_PATH, &[]).await {
                Ok(me) => Principal::of(&me).ok_or_else(|| format!("{ME_PATH} names nobody")),
                Err(e) => Err(e.to_string()),
            }
        };
        let all = async {
            let (lists, me) = tokio::join!(async { tokio::try_join!(jobs_of(api.as_ref()), warehouses_of(api.as_ref())) }, me);
            lists.map(|(jobs, warehouses)| (jobs, warehouses, me))
        };
        match tokio::time::timeout(VIEW_DEADLINE, all).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", VIEW_DEADLINE.as_secs())),
        }
    };
    let (a, o): (Read, Read) = tokio::join!(read(active), read(active.other()));
    let mut workspaces = BTreeMap::new();
    for (site, r) in [(active, &a), (active.other(), &o)] {
        let s = settings_of(site).unwrap_or_else(|| settings.clone());
        workspaces.insert(site.as_str().to_owned(), site_view(site == active, &s, r));
    }
    let mut findings = Vec::new();
    let finding = |f: activation::OutOfStep| Finding {
        id: f.id,
        severity: if f.critical { Severity::Critical } else { Severity::Warning },
        what: f.what,
        action: f.action,
    };
    match (&a, &o) {
        (Ok((active_jobs, active_warehouses, active_me)), Ok((other_jobs, _, other_me))) => {
            for f in activation::out_of_step(active, &settings, active_jobs, other_jobs, active_warehouses) {
                findings.push(finding(f));
            }
            // Activation acts on the tagged jobs of both workspaces: their principals must see them all.
            for (site, me, here, there) in
                [(active, active_me, active_jobs, other_jobs), (active.other(), other_me, other_jobs, active_jobs)]
            {
                let s = settings_of(site).unwrap_or_else(|| settings.clone());
                match me {
                    Ok(principal) => findings.extend(activation::visibility_gap(site, &s, principal, here, there).map(finding)),
                    Err(e) => findings.push(Finding {
                        id: format!("activation-access-{site}"),
                        severity: Severity::Warning,
                        what: format!("who the {site} credentials act as could not be read ({e}): whether they can see every job activation acts on is not proved"),
                        action: format!("check that sites/{site}'s principal may call {ME_PATH} (every workspace user may)"),
                    }),
                }
            }
        }
        _ => {
            let why: Vec<String> = [(active, &a), (active.other(), &o)]
                .into_iter()
                .filter_map(|(site, r)| r.as_ref().err().map(|e| format!("{site}: {e}")))
                .collect();
            findings.push(Finding {
                id: "activation-unknown".into(),
                severity: Severity::Warning,
                what: format!("the activation state could not be compared ({})", why.join("; ")),
                action: "check the workspaces and their credentials; a job scheduled in both would run twice".into(),
            });
        }
    }
    let out_of_step =
        findings.iter().map(|f| OutOfStepView { id: f.id.clone(), severity: f.severity, what: f.what.clone() }).collect();
    Some((ActivationView::Read { active, job_tag: settings.tag_text(), workspaces, out_of_step }, findings))
}

fn site_view(active: bool, settings: &ActivationSettings, read: &Read) -> WorkspaceActivation {
    match read {
        Err(e) => WorkspaceActivation::Failed { active, error: e.clone() },
        Ok((jobs, warehouses, me)) => {
            let jobs: Vec<JobActivation> = jobs
                .iter()
                .filter(|j| settings.selects(&j.tags))
                .map(|j| JobActivation { name: j.name.clone(), runs: j.runs(), pause_status: j.pauses.iter().cloned().collect() })
                .collect();
            let warehouses = warehouses
                .iter()
                .filter(|w| settings.warehouses.iter().any(|n| n == &w.id || n == &w.name))
                .map(|w| WarehouseActivation { name: w.name.clone(), state: w.state.clone() })
                .collect();
            let running = jobs.iter().filter(|j| j.runs).count();
            let principal = match me {
                Ok(p) => Fallible::Read(PrincipalView { name: p.name.clone(), admin: p.admin }),
                Err(e) => Fallible::Failed { error: e.clone() },
            };
            WorkspaceActivation::Read {
                active,
                principal,
                summary: format!("{running} of {} selected job(s) scheduled", jobs.len()),
                jobs,
                warehouses,
            }
        }
    }
}
