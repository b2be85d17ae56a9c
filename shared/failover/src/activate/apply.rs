//! The plan made: the target's, the former's and the DNS record's changes side by side ("lanes"), each in fenced
//! waves of at most [`IN_FLIGHT`] calls under its own budget, every status saved to the record as it comes.

use super::fence::{FenceState, Halt};
use crate::Engine;
use crate::activate::{DNS_SYNC_WAIT, Workspaces, until, warehouse_level};
use crate::record::Recorder;
use crate::rules::activation;
use crate::rules::activation::{Change, ChangeStatus, ObjectType};
use crate::runner::{Run, StepEnd};
use domain::site::SiteName;
use dr_ports::error::StoreError;
use dr_ports::{ApiError, Clock, ControlBucket, Idempotency, Notifier, ParameterStore, WorkspaceApi};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

/// A change settled: its index in the plan, its status and detail.
type Settled = (usize, ChangeStatus, Option<String>);

/// The least time between two saves of the record while changes are being made: a record of 2,000 changes is
/// half a megabyte (saving it every 250 ms slowed the bench's 1,000 jobs a side from 27 s to 37 s), and what a
/// crash loses meanwhile is only re-read and found done on resume.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// What the lanes share.
struct Lanes<'a> {
    clients: BTreeMap<SiteName, Result<Arc<dyn WorkspaceApi>, ApiError>>,
    target: SiteName,
    target_until: Instant,
    former_until: Instant,
    /// Sites that timed out or did not answer: their remaining changes are not attempted.
    dead: Mutex<BTreeSet<SiteName>>,
    fence: tokio::sync::Mutex<FenceState>,
    /// Why the lanes stop, once one must.
    halt: Mutex<Option<Halt>>,
    /// The DNS record's TTL.
    ttl: i64,
    execution_id: &'a str,
}

impl Lanes<'_> {
    fn deadline(&self, site: Option<SiteName>) -> Instant {
        if site.is_some_and(|s| s != self.target) { self.former_until } else { self.target_until }
    }

    fn is_dead(&self, site: SiteName) -> bool {
        self.dead.lock().unwrap_or_else(PoisonError::into_inner).contains(&site)
    }

    fn stop(&self, why: Halt) {
        self.halt.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(why);
    }

    fn halted(&self) -> bool {
        self.halt.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// Whether the record may still be saved: not once the lock was lost or a save failed.
    fn may_save(&self) -> bool {
        matches!(*self.halt.lock().unwrap_or_else(PoisonError::into_inner), None | Some(Halt::Superseded(_)))
    }
}

/// The plan's pending changes by lane: the target's, the former's, the DNS record's (in plan order each).
fn lanes_of(changes: &[Change], target: SiteName) -> [(Option<SiteName>, Vec<usize>); 3] {
    let pending = |site: Option<SiteName>| -> Vec<usize> {
        changes.iter().enumerate().filter(|(_, c)| c.status == ChangeStatus::Planned && c.site == site).map(|(i, _)| i).collect()
    };
    [(Some(target), pending(Some(target))), (Some(target.other()), pending(Some(target.other()))), (None, pending(None))]
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Makes the recorded plan's pending changes; `Some` when the attempt must end the step otherwise than done.
    pub(super) async fn apply_plan(&self, run: &mut Run, mut ws: Workspaces) -> Option<StepEnd> {
        let changes = run.rec.record.activation.as_ref().map(|a| a.changes.clone()).unwrap_or_default();
        let lanes_work = lanes_of(&changes, ws.target);
        if lanes_work.iter().all(|(_, l)| l.is_empty()) {
            return None;
        }
        for (site, work) in &lanes_work {
            if let Some(site) = site.filter(|_| !work.is_empty()) {
                // Made before the lanes, which share the clients read-only.
                let _ = self.client(run, &mut ws, site);
            }
        }
        let ttl = match self.redirection(run) {
            Some(Ok(r)) => r.ttl,
            _ => 60,
        };
        let id = run.rec.record.execution_id.clone();
        let lanes = Lanes {
            clients: ws.clients,
            target: ws.target,
            target_until: ws.target_until,
            former_until: ws.former_until,
            dead: Mutex::new(ws.dead),
            fence: tokio::sync::Mutex::new(FenceState::new(run.held.clone())),
            halt: Mutex::new(None),
            ttl,
            execution_id: &id,
        };
        let (tx, rx) = unbounded_channel();
        let work = join_all(lanes_work.into_iter().map(|(site, idx)| self.run_lane(&lanes, &changes, site, idx, tx.clone())));
        drop(tx);
        tokio::join!(work, self.save_as_settled(&mut run.rec, rx, &lanes));
        let halt = lanes.halt.into_inner().unwrap_or_else(PoisonError::into_inner);
        run.held = lanes.fence.into_inner().held;
        match halt {
            None => None,
            Some(Halt::Lost(e)) => Some(StepEnd::LostLock(e)),
            Some(Halt::Stop(e)) => Some(StepEnd::Stop(e)),
            Some(Halt::Superseded(why)) => self.left_to_the_later_execution(run, why).await,
        }
    }

    /// `active` names a later execution: what is still planned is not made (nor to do by hand: the later one owns
    /// the workspaces), and the record says so.
    async fn left_to_the_later_execution(&self, run: &mut Run, why: String) -> Option<StepEnd> {
        let now = self.now();
        let left = format!("not made: {why}");
        if let Some(a) = run.rec.record.activation.as_mut() {
            for c in a.changes.iter_mut().filter(|c| c.status == ChangeStatus::Planned) {
                c.status = ChangeStatus::Skipped;
                c.detail = Some(left.clone());
            }
        }
        run.rec.record.note(now, format!("activation stopped: {why}"));
        run.rec.save_now(&self.bucket, now).await.err().map(StepEnd::Stop)
    }

    /// One lane: its changes in waves of at most [`IN_FLIGHT`], each wave fenced, each status sent as it is known.
    async fn run_lane(
        &self,
        lanes: &Lanes<'_>,
        changes: &[Change],
        site: Option<SiteName>,
        indices: Vec<usize>,
        tx: UnboundedSender<Settled>,
    ) {
        let until = lanes.deadline(site);
        for (n, wave) in indices.chunks(self.settings.activation_in_flight.max(1)).enumerate() {
            if lanes.halted() {
                return;
            }
            if let Some(why) = self.lane_over(lanes, site, until) {
                // Nothing more is sent: the rest of the lane is to do by hand, without a fence or a call.
                for &i in indices.iter().skip(n * self.settings.activation_in_flight.max(1)) {
                    let _ = tx.send((i, ChangeStatus::NotDone, Some(why.clone())));
                }
                return;
            }
            if let Err(halt) = self.fence_wave(&lanes.fence, lanes.execution_id, Instant::now()).await {
                lanes.stop(halt);
                return;
            }
            let tx = &tx;
            join_all(wave.iter().map(|&i| async move {
                let c = &changes[i];
                let (status, detail) = self.apply_change(lanes, c).await;
                tracing::info!(execution_id = %lanes.execution_id, change = %c.line(), ?status, "activation change");
                let _ = tx.send((i, status, detail));
            }))
            .await;
        }
    }

    /// Why a lane sends nothing more: its budget ran out, or its workspace stopped answering.
    fn lane_over(&self, lanes: &Lanes<'_>, site: Option<SiteName>, until: Instant) -> Option<String> {
        let place = site.map_or("the DNS record".to_owned(), |s| format!("the {s} workspace"));
        if Instant::now() >= until {
            return Some(format!("the activation's budget for {place} ran out before this change"));
        }
        site.filter(|s| lanes.is_dead(*s)).map(|s| format!("the {s} workspace did not answer earlier in this step"))
    }

    /// Saves the record as statuses come (all those known at each save, at most one save per [`SAVE_INTERVAL`]),
    /// until every lane is done; a failed save stops the lanes.
    async fn save_as_settled(&self, rec: &mut Recorder, mut rx: UnboundedReceiver<Settled>, lanes: &Lanes<'_>) {
        let mut last: Option<Instant> = None;
        while let Some(first) = rx.recv().await {
            if let Some(at) = last {
                tokio::time::sleep_until(at + SAVE_INTERVAL).await;
            }
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            if let Some(a) = rec.record.activation.as_mut() {
                for (i, status, detail) in batch {
                    if let Some(c) = a.changes.get_mut(i) {
                        c.status = status;
                        c.detail = detail;
                    }
                }
            }
            if !lanes.may_save() {
                continue;
            }
            last = Some(Instant::now());
            if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
                lanes.stop(Halt::Stop(e));
            }
        }
    }

    /// One change: re-read the object, then change it only if it is still at `before`. Never fails the step.
    async fn apply_change(&self, lanes: &Lanes<'_>, c: &Change) -> (ChangeStatus, Option<String>) {
        let Some(site) = c.site else { return self.apply_dns(lanes, c).await };
        if lanes.is_dead(site) {
            return (ChangeStatus::NotDone, Some(format!("the {site} workspace did not answer earlier in this step")));
        }
        let api = match lanes.clients.get(&site) {
            Some(Ok(api)) => api.clone(),
            Some(Err(e)) => return (ChangeStatus::NotDone, Some(e.to_string())),
            None => return (ChangeStatus::NotDone, Some(format!("no client for the {site} workspace"))),
        };
        let r = until(lanes.deadline(Some(site)), &format!("{} {}", c.name, c.field), change_object(api.as_ref(), c)).await;
        match r {
            Ok(done) => done,
            Err(e) => {
                if e.is_unreachable() {
                    lanes.dead.lock().unwrap_or_else(PoisonError::into_inner).insert(site);
                }
                (ChangeStatus::NotDone, Some(e.to_string()))
            }
        }
    }

    /// The DNS change: re-read, upserted only from `before`, then polled for `INSYNC` (within the target's budget).
    async fn apply_dns(&self, lanes: &Lanes<'_>, c: &Change) -> (ChangeStatus, Option<String>) {
        let Some(dns) = &self.dns else {
            return (ChangeStatus::NotDone, Some("this function cannot change DNS".into()));
        };
        let r = async {
            let current = dns.cname(&c.id, &c.name).await?.unwrap_or_default();
            if current == c.after {
                return Ok((ChangeStatus::AlreadyDone, None));
            }
            if current != c.before {
                return Ok((ChangeStatus::Skipped, Some(format!("found {current:?}"))));
            }
            let change_id = dns.upsert_cname(&c.id, &c.name, &c.after, lanes.ttl).await?;
            let waited = (Instant::now() + DNS_SYNC_WAIT).min(lanes.deadline(None));
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
        ObjectType::Job => change_job(api, c).await,
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

/// A job's pause field: re-read, then only that field sent, the rest of it as it was.
async fn change_job(api: &dyn WorkspaceApi, c: &Change) -> Result<(ChangeStatus, Option<String>), ApiError> {
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
