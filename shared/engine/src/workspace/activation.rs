//! What `status` and `check` say of workload activation (the failover's `activate` step,
//! `failover::activate`): each workspace's selected jobs (scheduled or paused) and named SQL warehouses, read
//! through the connector under a short deadline, and what is out of step between the two: a selected job that
//! runs by itself in both workspaces is a critical finding (duplicate runs).

use crate::check::Finding;
use crate::documents::DrDocuments;
use crate::failover::activate::{jobs_of, warehouses_of};
use crate::ports::WorkspaceConnector;
use domain::activation::{self, ActivationSettings, JobView, WarehouseView};
use domain::notification::Severity;
use domain::site::SiteName;
use serde_json::{Value, json};
use std::time::Duration;

/// How long `status` and `check` wait for a workspace's jobs and warehouses.
pub const VIEW_DEADLINE: Duration = Duration::from_secs(8);

/// One workspace's jobs and warehouses, or why they could not be read.
type Read = Result<(Vec<JobView>, Vec<WarehouseView>), String>;

/// The activation view (for `status`) and the findings (for `check`); `None` when no site document selects
/// anything to activate.
pub async fn view(connector: Option<&dyn WorkspaceConnector>, docs: &DrDocuments) -> Option<(Value, Vec<Finding>)> {
    let settings_of = |site: SiteName| docs.site(site).valid().and_then(|c| ActivationSettings::of(c).ok().flatten());
    let active = docs.active.valid().map(|a| a.site)?;
    // The active site's selection decides; the other's own, when it has one, for its side.
    let settings = settings_of(active).or_else(|| settings_of(active.other()))?;
    let Some(connector) = connector else {
        return Some((json!({ "error": "no workspace connector in this function" }), Vec::new()));
    };
    let read = |site: SiteName| async move {
        let Some(config) = docs.site(site).valid() else { return Err(format!("sites/{site} is not valid")) };
        let api = connector.connect(site, config).map_err(|e| e.to_string())?;
        let both = async { tokio::try_join!(jobs_of(api.as_ref()), warehouses_of(api.as_ref())) };
        match tokio::time::timeout(VIEW_DEADLINE, both).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", VIEW_DEADLINE.as_secs())),
        }
    };
    let (a, o): (Read, Read) = tokio::join!(read(active), read(active.other()));
    let mut workspaces = serde_json::Map::new();
    for (site, r) in [(active, &a), (active.other(), &o)] {
        let s = settings_of(site).unwrap_or_else(|| settings.clone());
        workspaces.insert(site.as_str().to_owned(), site_view(site == active, &s, r));
    }
    let mut findings = Vec::new();
    match (&a, &o) {
        (Ok((active_jobs, active_warehouses)), Ok((other_jobs, _))) => {
            for f in activation::out_of_step(active, &settings, active_jobs, other_jobs, active_warehouses) {
                findings.push(Finding {
                    id: f.id,
                    severity: if f.critical { Severity::Critical } else { Severity::Warning },
                    what: f.what,
                    action: f.action,
                });
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
    let out_of_step: Vec<Value> =
        findings.iter().map(|f| json!({ "id": f.id, "severity": f.severity, "what": f.what })).collect();
    Some((
        json!({ "active": active, "job_tag": settings.tag_text(), "workspaces": workspaces, "out_of_step": out_of_step }),
        findings,
    ))
}

fn site_view(active: bool, settings: &ActivationSettings, read: &Read) -> Value {
    match read {
        Err(e) => json!({ "active": active, "error": e }),
        Ok((jobs, warehouses)) => {
            let jobs: Vec<Value> = jobs
                .iter()
                .filter(|j| settings.selects(j))
                .map(|j| json!({ "name": j.name, "runs": j.runs(), "pause_status": j.pauses.iter().map(|(f, p)| (f.clone(), json!(p))).collect::<serde_json::Map<String, Value>>() }))
                .collect();
            let warehouses: Vec<Value> = warehouses
                .iter()
                .filter(|w| settings.warehouses.iter().any(|n| n == &w.id || n == &w.name))
                .map(|w| json!({ "name": w.name, "state": w.state }))
                .collect();
            let running = jobs.iter().filter(|j| j["runs"] == true).count();
            json!({
                "active": active,
                "summary": format!("{running} of {} selected job(s) scheduled", jobs.len()),
                "jobs": jobs,
                "warehouses": warehouses,
            })
        }
    }
}
