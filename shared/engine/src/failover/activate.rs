//! The activation step, after the verified promotion: workload activation and client redirection.
//!
//! A failover resumes the schedules (and continuous and file-arrival triggers) of the target's jobs that its
//! site document selects (`activation.job_tag`), starts the SQL warehouses it names, pauses the same jobs in the
//! former active workspace (best effort, under [`FORMER_DEADLINE`]) and moves the stable DNS name
//! (`{prefix}/redirection`). A failback (the promotion that replaces an execution which activated forward)
//! reverses exactly that execution's changes, from its record. A drill records the plan and changes nothing.
//!
//! Fencing and idempotency: the step runs only while `{prefix}/active` names this execution and its lease
//! holds; the plan is written to the record before the first call, each change is marked after its call, and
//! each object is re-read right before its change (found at `after`: already done; found elsewhere than
//! `before`: someone moved it, left alone). Nothing here fails the execution: what could not be done is
//! recorded, paged and reported as to do by hand.

use super::*;
use crate::ports::{ApiError, Idempotency, WorkspaceApi};
use crate::workspace::pages::{Listing, every_page};
use domain::activation::{
    self, Activation, ActivationSettings, Change, ChangeStatus, JobView, ObjectType, Redirection, WarehouseView,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The former active workspace's share (its listing and its changes together): best effort, never blocking.
pub const FORMER_DEADLINE: Duration = Duration::from_secs(10);

/// The target workspace's listing and changes together.
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
    fn deadline(&self, site: SiteName) -> Instant {
        if site == self.target { self.target_until } else { self.former_until }
    }
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// The activation step (see the module's documentation).
    pub(super) async fn activate_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        let target = run.rec.record.target;
        if run.rec.record.activation.is_none() && !self.activation_configured(run) {
            // Nothing configured: no step, no round trip (the record's steps stay those of a plain failover).
            return StepEnd::Next;
        }
        // The fence: an execution whose promotion was replaced never activates.
        let active_name = self.active_name();
        match self.params.get_one(&active_name).await {
            Ok(Some(p)) if names_execution(&p.value, &id) => {}
            Ok(_) => {
                let what = format!("not run: {active_name} no longer names this execution (a later one owns the workspaces)");
                run.rec.record.note(start, what.clone());
                run.rec.record.steps.push(self.step(
                    Step::Activate,
                    StepOutcome::Done,
                    start,
                    start,
                    &run.attempt.id,
                    Some(what),
                ));
                return StepEnd::Next;
            }
            Err(source) => return StepEnd::Stop(source),
        }
        let mut ws = Workspaces {
            clients: BTreeMap::new(),
            target,
            target_until: Instant::now() + TARGET_DEADLINE,
            former_until: Instant::now() + FORMER_DEADLINE,
            dead: BTreeSet::new(),
        };
        if run.rec.record.activation.is_none() {
            let planned = match self.plan_activation(run, &mut ws).await {
                Ok(p) => p,
                Err(source) => return StepEnd::Stop(source),
            };
            let Some(mut plan) = planned else {
                let end = self.now();
                let detail = Some("nothing to activate: no `activation` in the site documents, no {prefix}/redirection".into());
                run.rec.record.steps.push(self.step(Step::Activate, StepOutcome::Done, start, end, &run.attempt.id, detail));
                return StepEnd::Next;
            };
            plan.drill = self.settings.drill;
            tracing::info!(execution_id = %id, mode = %plan.mode, changes = plan.changes.len(), drill = plan.drill, "activation planned");
            run.rec.record.activation = Some(plan);
            if !self.settings.drill {
                // The plan is recorded before the first call: a crash after any call resumes from it.
                if let Err(source) = run.rec.save_now(&self.bucket, self.now()).await {
                    return StepEnd::Stop(source);
                }
            }
        }
        if !self.settings.drill {
            let n = run.rec.record.activation.as_ref().map_or(0, |a| a.changes.len());
            for i in 0..n {
                let Some(change) = run.rec.record.activation.as_ref().and_then(|a| a.changes.get(i)).cloned() else { break };
                if change.status != ChangeStatus::Planned {
                    continue;
                }
                // Only while this attempt provably holds the lock (renewed by compare-and-swap near its end).
                match self.keep_lease(&run.held).await {
                    Ok(held) => run.held = held,
                    Err(source) => return StepEnd::LostLock(source),
                }
                let (status, detail) = self.apply_change(run, &mut ws, &change).await;
                tracing::info!(execution_id = %id, change = %change.line(), ?status, "activation change");
                if let Some(c) = run.rec.record.activation.as_mut().and_then(|a| a.changes.get_mut(i)) {
                    c.status = status;
                    c.detail = detail;
                }
                if let Err(source) = run.rec.save_now(&self.bucket, self.now()).await {
                    return StepEnd::Stop(source);
                }
            }
        }
        let end = self.now();
        let detail = run.rec.record.activation.as_ref().map(Activation::summary);
        run.rec.record.steps.push(self.step(Step::Activate, StepOutcome::Done, start, end, &run.attempt.id, detail));
        StepEnd::Next
    }

    /// Whether either site document has `activation`, or `{prefix}/redirection` exists (no I/O).
    fn activation_configured(&self, run: &Run) -> bool {
        let docs = &run.attempt.docs;
        SiteName::ALL.into_iter().any(|s| docs.site(s).valid().is_some_and(|c| c.document().contains_key("activation")))
            || self.redirection(run).is_some()
    }

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

    fn redirection(&self, run: &Run) -> Option<Result<Redirection, String>> {
        let name = self.settings.prefix.child(REDIRECTION);
        let p = run.attempt.tree.iter().find(|p| p.name == name && !p.is_secure())?;
        Some(Redirection::parse(&p.value).map_err(|e| format!("{name}: {e}")))
    }

    /// The plan: the reverse of the replaced execution's forward activation, or a forward plan from the
    /// workspaces' states; `None` when nothing is configured.
    async fn plan_activation(&self, run: &Run, ws: &mut Workspaces) -> Result<Option<Activation>, StoreError> {
        let target = run.rec.record.target;
        let former = target.other();
        let docs = &run.attempt.docs;
        let settings_of = |site: SiteName| docs.site(site).valid().and_then(|c| ActivationSettings::of(c).ok().flatten());
        let (target_settings, former_settings) = (settings_of(target), settings_of(former));
        let redirection = self.redirection(run);
        if target_settings.is_none() && former_settings.is_none() && redirection.is_none() {
            return Ok(None);
        }
        // A failback: the execution whose promotion this one replaces activated forward: undo exactly that.
        let previous = run.rec.record.config_before.as_ref().and_then(|v| v["execution_id"].as_str()).map(str::to_owned);
        if let Some(prev) = previous.filter(|p| *p != run.rec.record.execution_id)
            && let Some(r) = record::read(&self.bucket, &prev).await?
            && let Some(a) = &r.record.activation
            && a.mode == "forward"
            && !a.drill
            && r.record.target == former
        {
            let host = docs.site(target).valid().map(Redirection::target_of);
            let (changes, manual) = activation::reverse(&a.changes, target, host.as_deref());
            return Ok(Some(Activation { mode: "reverse".into(), reverses: Some(prev), changes, manual, drill: false }));
        }
        let mut plan = Activation { mode: "forward".into(), ..Activation::default() };
        if let Some(settings) = target_settings.as_ref().or(former_settings.as_ref()) {
            let target_api = self.client(run, ws, target);
            let former_api = self.client(run, ws, former);
            let (t_until, f_until) = (ws.target_until, ws.former_until);
            let target_read = async {
                let api = target_api?;
                until(t_until, "listing the target's jobs and warehouses", async {
                    tokio::try_join!(jobs_of(api.as_ref()), warehouses_of(api.as_ref()))
                })
                .await
            };
            let former_read = async {
                let api = former_api?;
                until(f_until, "listing the former active workspace's jobs", jobs_of(api.as_ref())).await
            };
            let (target_read, former_read) = tokio::join!(target_read, former_read);
            if former_read.as_ref().is_err_and(ApiError::is_unreachable) {
                ws.dead.insert(former);
            }
            let former_jobs = former_read.as_deref().map_err(ToString::to_string);
            match &target_read {
                Ok((jobs, warehouses)) => {
                    plan = activation::plan(&activation::PlanInput {
                        target,
                        settings,
                        target_jobs: jobs,
                        target_warehouses: warehouses,
                        former_jobs,
                        former_settings: former_settings.as_ref(),
                    });
                }
                Err(e) => {
                    let wanted = if settings.warehouses.is_empty() {
                        String::new()
                    } else {
                        format!(" and start its SQL warehouses {}", settings.warehouses.join(", "))
                    };
                    plan.manual.push(format!(
                        "could not read the {target} workspace ({e}): resume by hand its jobs tagged {}{wanted}",
                        settings.tag_text()
                    ));
                    let none = ActivationSettings { warehouses: Vec::new(), ..settings.clone() };
                    let partial = activation::plan(&activation::PlanInput {
                        target,
                        settings: &none,
                        target_jobs: &[],
                        target_warehouses: &[],
                        former_jobs,
                        former_settings: former_settings.as_ref(),
                    });
                    plan.changes = partial.changes;
                    plan.manual.extend(partial.manual);
                }
            }
        }
        match (redirection, &self.dns, docs.site(target).valid()) {
            (None, _, _) => {}
            (Some(Err(problem)), _, _) => {
                plan.manual.push(format!(
                    "client redirection is not usable ({problem}): point clients at the {target} workspace by hand"
                ));
            }
            (Some(Ok(r)), _, None) => {
                plan.manual.push(format!("the {target} site document is not usable: point {} by hand", r.record_name))
            }
            (Some(Ok(r)), None, Some(cfg)) => plan.manual.push(format!(
                "this function cannot change DNS: point the CNAME {} at {} by hand",
                r.record_name,
                Redirection::target_of(cfg)
            )),
            (Some(Ok(r)), Some(dns), Some(cfg)) => {
                let host = Redirection::target_of(cfg);
                match dns.cname(&r.hosted_zone_id, &r.record_name).await {
                    Ok(current) if current.as_deref() == Some(host.as_str()) => {}
                    Ok(current) => plan.changes.push(Change {
                        site: None,
                        object: ObjectType::DnsRecord,
                        id: r.hosted_zone_id.clone(),
                        name: r.record_name.clone(),
                        field: "CNAME".into(),
                        before: current.unwrap_or_default(),
                        after: host,
                        best_effort: false,
                        status: ChangeStatus::Planned,
                        detail: None,
                    }),
                    Err(e) => plan
                        .manual
                        .push(format!("could not read the DNS record {} ({e}): point it at {host} by hand", r.record_name)),
                }
            }
        }
        Ok(Some(plan))
    }

    /// One change: re-read the object, then change it only if it is still at `before`. Never fails the step.
    async fn apply_change(&self, run: &Run, ws: &mut Workspaces, c: &Change) -> (ChangeStatus, Option<String>) {
        let Some(site) = c.site else { return self.apply_dns(run, c).await };
        if ws.dead.contains(&site) {
            return (ChangeStatus::NotDone, Some(format!("the {site} workspace did not answer earlier in this step")));
        }
        let api = match self.client(run, ws, site) {
            Ok(api) => api,
            Err(e) => return (ChangeStatus::NotDone, Some(e.to_string())),
        };
        let r = until(ws.deadline(site), &format!("{} {}", c.name, c.field), change_object(api.as_ref(), c)).await;
        match r {
            Ok(done) => done,
            Err(e) => {
                if e.is_unreachable() {
                    ws.dead.insert(site);
                }
                (ChangeStatus::NotDone, Some(e.to_string()))
            }
        }
    }

    async fn apply_dns(&self, run: &Run, c: &Change) -> (ChangeStatus, Option<String>) {
        let Some(dns) = &self.dns else {
            return (ChangeStatus::NotDone, Some("this function cannot change DNS".into()));
        };
        let ttl = match self.redirection(run) {
            Some(Ok(r)) => r.ttl,
            _ => 60,
        };
        let r = async {
            let current = dns.cname(&c.id, &c.name).await?.unwrap_or_default();
            if current == c.after {
                return Ok((ChangeStatus::AlreadyDone, None));
            }
            if current != c.before {
                return Ok((ChangeStatus::Skipped, Some(format!("found {current:?}"))));
            }
            let change_id = dns.upsert_cname(&c.id, &c.name, &c.after, ttl).await?;
            let waited = Instant::now() + DNS_SYNC_WAIT;
            loop {
                let status = dns.change_status(&change_id).await?;
                if status == "INSYNC" {
                    return Ok((ChangeStatus::Done, Some(format!("change {change_id} INSYNC"))));
                }
                if Instant::now() >= waited {
                    let detail = format!("change {change_id} still {status} after {} s", DNS_SYNC_WAIT.as_secs());
                    return Ok((ChangeStatus::Done, Some(detail)));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let r: Result<_, StoreError> = r.await;
        match r {
            Ok(done) => done,
            Err(e) => (ChangeStatus::NotDone, Some(e.to_string())),
        }
    }
}

/// A job's pause field or a warehouse's state: re-read, then changed only from `before`.
async fn change_object(api: &dyn WorkspaceApi, c: &Change) -> Result<(ChangeStatus, Option<String>), ApiError> {
    match c.object {
        ObjectType::Job => {
            let job = api.get("/api/2.2/jobs/get", &[("job_id", c.id.clone())]).await?;
            let field = &job["settings"][c.field.as_str()];
            if !field.is_object() {
                return Ok((ChangeStatus::Skipped, Some(format!("the job has no {} any more", c.field))));
            }
            let current = field["pause_status"].as_str().unwrap_or(activation::UNPAUSED);
            if current == c.after {
                return Ok((ChangeStatus::AlreadyDone, None));
            }
            if current != c.before {
                return Ok((ChangeStatus::Skipped, Some(format!("found {current}"))));
            }
            let mut value = field.clone();
            value["pause_status"] = json!(c.after);
            let job_id = c.id.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(c.id));
            let body = json!({ "job_id": job_id, "new_settings": { c.field.as_str(): value } });
            // The same settings sent twice leave the job as sent once: idempotent (retried on 429 and 503).
            api.post("/api/2.2/jobs/update", &body, Idempotency::Idempotent).await?;
            Ok((ChangeStatus::Done, None))
        }
        ObjectType::Warehouse => {
            let path = format!("/api/2.0/sql/warehouses/{}", c.id);
            let w = api.get(&path, &[]).await?;
            let state = w["state"].as_str().unwrap_or("UNKNOWN");
            let level = warehouse_level(state);
            if level == c.after {
                return Ok((ChangeStatus::AlreadyDone, (state != level).then(|| format!("found {state}"))));
            }
            if level != c.before {
                return Ok((ChangeStatus::Skipped, Some(format!("found {state}"))));
            }
            let action = if c.after == "RUNNING" { "start" } else { "stop" };
            // Starting a starting or running warehouse (stopping a stopped one) changes nothing: idempotent.
            api.post(&format!("{path}/{action}"), &json!({}), Idempotency::Idempotent).await?;
            Ok((ChangeStatus::Done, None))
        }
        ObjectType::DnsRecord => Ok((ChangeStatus::NotDone, Some("not a workspace object".into()))),
    }
}

#[cfg(test)]
#[path = "activate_tests.rs"]
mod tests;
