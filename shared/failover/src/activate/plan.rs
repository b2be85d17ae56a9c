//! The activation's plan: the reverse of the replaced execution's changes, or a forward plan from the
//! workspaces' states and the DNS record.
use crate::Engine;
use crate::activate::{FORMER_LISTING_DEADLINE, Workspaces, jobs_of, until, warehouses_of};
use crate::record;
use crate::rules::activation;
use crate::rules::activation::{
    Activation, ActivationSettings, Change, ChangeStatus, JobView, ObjectType, Redirection, WarehouseView,
};
use crate::runner::Run;
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ApiError, Clock, ControlBucket, Notifier, ParameterStore};
use tokio::time::Instant;

/// The target's jobs and warehouses, or why they could not be read.
type TargetRead = Result<(Vec<JobView>, Vec<WarehouseView>), ApiError>;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// The plan: the reverse of the replaced execution's forward activation, or a forward plan from the
    /// workspaces' states; `None` when nothing is configured.
    pub(super) async fn plan_activation(&self, run: &Run, ws: &mut Workspaces) -> Result<Option<Activation>, StoreError> {
        let target = run.rec.record.target;
        let docs = &run.attempt.docs;
        let settings_of = |site: SiteName| docs.site(site).valid().and_then(|c| ActivationSettings::of(c).ok().flatten());
        let (target_settings, former_settings) = (settings_of(target), settings_of(target.other()));
        let redirection = self.redirection(run);
        if target_settings.is_none() && former_settings.is_none() && redirection.is_none() {
            return Ok(None);
        }
        // A reverse with no workspace change to undo (the replaced execution found every job already in place
        // for its site) says nothing about where the jobs are now: this execution plans forward from their states
        // (simulation seed 2941: the jobs stayed on the primary while the secondary was active).
        if let Some(reverse) = self.reverse_plan(run).await?
            && reverse.changes.iter().any(|c| c.site.is_some())
        {
            let settings = target_settings.as_ref().or(former_settings.as_ref());
            return Ok(Some(self.with_leftovers(run, ws, reverse, settings, former_settings.as_ref(), redirection).await));
        }
        let mut plan = Activation { mode: "forward".into(), ..Activation::default() };
        if let Some(settings) = target_settings.as_ref().or(former_settings.as_ref()) {
            plan = self.forward_plan(run, ws, settings, former_settings.as_ref()).await;
        }
        self.plan_dns(run, redirection, &mut plan).await;
        Ok(Some(plan))
    }

    /// A failback: the execution whose promotion this one replaces activated forward: undo that.
    async fn reverse_plan(&self, run: &Run) -> Result<Option<Activation>, StoreError> {
        let target = run.rec.record.target;
        let previous = run.rec.record.config_before.as_ref().and_then(|v| v["execution_id"].as_str()).map(str::to_owned);
        if let Some(prev) = previous.filter(|p| *p != run.rec.record.execution_id)
            && let Some(r) = record::read(&self.bucket, &prev).await?
            && let Some(a) = &r.record.activation
            && a.mode == "forward"
            && !a.drill
            && r.record.target == target.other()
        {
            let host = run.attempt.docs.site(target).valid().map(Redirection::target_of);
            let (changes, manual) = activation::reverse(&a.changes, target, host.as_deref());
            return Ok(Some(Activation { mode: "reverse".into(), reverses: Some(prev), changes, manual, drill: false }));
        }
        Ok(None)
    }

    /// A reverse plan completed with what the workspaces show out of place for the target beyond it: its tagged
    /// jobs (resumed in the target, paused in the other; not its warehouses, which a reverse leaves as they were)
    /// and the DNS record when the reverse does not hold it. The reverse covers the replaced execution's changes,
    /// even those not known done (a call that applied and answered late, or lands in the fence's window after
    /// this listing); the listing covers those an earlier execution left (its failback killed mid-activation,
    /// then superseded) and those made by hand. Each is re-read and made only from its expected value.
    async fn with_leftovers(
        &self,
        run: &Run,
        ws: &mut Workspaces,
        reverse: Activation,
        settings: Option<&ActivationSettings>,
        former_settings: Option<&ActivationSettings>,
        redirection: Option<Result<Redirection, String>>,
    ) -> Activation {
        let mut found = Activation { mode: "forward".into(), ..Activation::default() };
        let tagged = |s: &ActivationSettings| s.job_tag.is_some();
        if let Some(settings) = settings.filter(|s| tagged(s) || former_settings.is_some_and(tagged)) {
            let jobs_only = |s: &ActivationSettings| ActivationSettings { warehouses: Vec::new(), ..s.clone() };
            let former = former_settings.map(jobs_only);
            found = self.forward_plan(run, ws, &jobs_only(settings), former.as_ref()).await;
        }
        // A reverse that holds the DNS record (or says it is to do by hand) settles it; else it is read.
        if !reverse.changes.iter().any(|c| c.object == ObjectType::DnsRecord) && reverse.manual.is_empty() {
            self.plan_dns(run, redirection, &mut found).await;
        }
        activation::with_leftovers(reverse, found)
    }

    /// Both workspaces listed side by side (the former's listing bounded by [`FORMER_LISTING_DEADLINE`]), then
    /// the forward plan of their jobs and warehouses.
    async fn forward_plan(
        &self,
        run: &Run,
        ws: &mut Workspaces,
        settings: &ActivationSettings,
        former_settings: Option<&ActivationSettings>,
    ) -> Activation {
        let target = run.rec.record.target;
        let former = target.other();
        let target_api = self.client(run, ws, target);
        let former_api = self.client(run, ws, former);
        let t_until = ws.target_until;
        let f_until = ws.former_until.min(Instant::now() + FORMER_LISTING_DEADLINE);
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
        plan_of(target, settings, former_settings, &target_read, former_jobs)
    }

    /// The DNS change, when `{prefix}/redirection` is set and the record does not already name the target.
    async fn plan_dns(&self, run: &Run, redirection: Option<Result<Redirection, String>>, plan: &mut Activation) {
        let target = run.rec.record.target;
        match (redirection, &self.dns, run.attempt.docs.site(target).valid()) {
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
    }
}

/// The forward plan from what the listings answered: a target that could not be read is to do by hand, its
/// former's pauses still planned.
fn plan_of(
    target: SiteName,
    settings: &ActivationSettings,
    former_settings: Option<&ActivationSettings>,
    target_read: &TargetRead,
    former_jobs: Result<&[JobView], String>,
) -> Activation {
    match target_read {
        Ok((jobs, warehouses)) => activation::plan(&activation::PlanInput {
            target,
            settings,
            target_jobs: jobs,
            target_warehouses: warehouses,
            former_jobs,
            former_settings,
        }),
        Err(e) => {
            let wanted = if settings.warehouses.is_empty() {
                String::new()
            } else {
                format!(" and start its SQL warehouses {}", settings.warehouses.join(", "))
            };
            let mut plan = Activation { mode: "forward".into(), ..Activation::default() };
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
                former_settings,
            });
            plan.changes = partial.changes;
            plan.manual.extend(partial.manual);
            plan
        }
    }
}
