//! The steps of an execution under the lock: fence, snapshot, promote, verify, notify, report, release.
use crate::record;
use crate::record::{ExecutionRecord, ExecutionState, OwedMessage, Recorder, Step, StepOutcome};
use crate::report;
use crate::rpo::rpo_estimate;
use crate::rules::decision;
use crate::rules::decision::{DecisionInput, Fence, FenceInput, Initiator};
use crate::runner::{Run, StepEnd};
use crate::{
    Engine, EngineError, EngineResult, Held, SSM_VERSIONS_KEPT, VERSIONS_BEFORE_HYGIENE, names_execution, raw_doc, version_of,
};
use domain::notification::{PageState, Severity};
use domain::primitives::rfc3339;
use domain::site::ActiveConfig;
use dr_ports::documents;
use dr_ports::documents::Doc;
use dr_ports::error::{Retry, StoreError};
use dr_ports::lock;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore, WriteCondition};
use serde_json::Value;
use time::OffsetDateTime;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// The fence: what the decision rested on was read before the lock; read it again now that the lock is held
    /// (every writer of `active` holds it) and decide again. One round trip. The fresh tree replaces the one
    /// read before the lock for every later step.
    pub(super) async fn fence_step(&self, run: &mut Run) -> StepEnd {
        let active_name = self.active_name();
        let start = self.now();
        // The record too, beside the tree: another attempt of this execution may have moved it on (or ended it)
        // between our read and our lock; under the lock, the stored record is the truth.
        let id = run.rec.record.execution_id.clone();
        let (fresh, stored) = match tokio::try_join!(self.read_tree(), record::read(&self.bucket, &id)) {
            Ok(v) => v,
            Err(source) => return StepEnd::Stop(source),
        };
        if let Some(stored) = stored
            && stored.etag() != run.rec.etag()
        {
            if stored.record.state.is_terminal() {
                return StepEnd::Ended(Box::new(stored));
            }
            if stored.record.state == ExecutionState::AwaitingApproval && run.rec.record.state == ExecutionState::Running {
                // Being approved by this attempt, while a joined alarm appended its page to the waiting record:
                // keep this attempt's record (the approval) and take in the pages it lacks, read just now.
                run.rec.merge_from(stored);
            } else {
                let mut stored = stored;
                stored
                    .record
                    .note(start, format!("attempt {} resumes it (the record was moved on by another attempt)", run.attempt.id));
                run.rec = stored;
            }
        }
        let rec = &run.rec.record;
        let docs = documents::from_tree(&fresh, &self.settings.prefix);
        let approver = rec.approved_by.clone().map(|requested_by| Initiator::Human { requested_by });
        let verdict = decision::fence(&FenceInput {
            execution_id: &rec.execution_id,
            decided_on_version: rec.decided_on_version,
            promoted: rec.done(Step::Promote),
            active_version: version_of(&fresh, &active_name),
            now: DecisionInput {
                initiator: approver.as_ref().unwrap_or(&rec.initiator),
                target: rec.target,
                active: docs.active.valid(),
                policy: self.policy_of(&docs),
                target_problem: docs.site(rec.target).problem(),
                in_flight: None,
                recovered_at: None,
                now: start,
            },
        });
        run.attempt.tree = fresh;
        run.attempt.docs = docs;
        match verdict {
            Fence::Superseded(why) if !run.rec.record.done(Step::Promote) => self.superseded_unless_promoted(run, &id, why).await,
            Fence::Superseded(why) => StepEnd::Supersede(why),
            verdict => {
                let end = self.now();
                let step = self.step(Step::Fence, StepOutcome::Done, start, end, &run.attempt.id, Some(format!("{verdict:?}")));
                run.rec.record.steps.push(step);
                StepEnd::Next
            }
        }
    }

    /// The fence found the execution superseded, with no promotion in its record. Its promotion may still have
    /// landed without the record saying so (a crash between the put and the record's update), then been replaced:
    /// the history tells, and the record says it.
    async fn superseded_unless_promoted(&self, run: &mut Run, id: &str, why: String) -> StepEnd {
        match self.own_promotion_in_history(id).await {
            Ok(Some(version)) => {
                let now = self.now();
                run.rec.record.promoted_version = Some(version);
                let detail = Some(format!("version {version}, found in the history (its record update was lost)"));
                let step = self.step(Step::Promote, StepOutcome::AlreadyDone, now, now, &run.attempt.id, detail);
                run.rec.record.steps.push(step);
                StepEnd::Supersede(format!("{why}; its own promotion (version {version}) was live before that"))
            }
            Ok(None) => StepEnd::Supersede(why),
            Err(source) => StepEnd::Stop(source),
        }
    }

    /// The version of `{prefix}/active` this execution wrote, if any version in SSM's history names it.
    pub(super) async fn own_promotion_in_history(&self, execution_id: &str) -> Result<Option<i64>, StoreError> {
        let history = self.params.history(&self.active_name()).await?;
        Ok(history.iter().rev().find(|v| names_execution(&v.value, execution_id)).map(|v| v.version))
    }

    /// Whether `{prefix}/active`, as read under the lock, names this execution: its promotion is live.
    pub(super) fn promoted_earlier(&self, run: &Run) -> bool {
        run.attempt.docs.active.valid().and_then(|a| a.execution_id.as_deref()) == Some(run.rec.record.execution_id.as_str())
    }

    /// Round trip 4: the one `PutParameter` of `{prefix}/active` (the atomic switch), beside the record's update;
    /// or, when the promotion of an earlier attempt is live, its version. Before writing: the lease is renewed if
    /// it is running out, and SSM is made room for the new version.
    pub(super) async fn promote_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        let target = run.rec.record.target;
        let active_name = self.active_name();
        if self.promoted_earlier(run) {
            let version = match &run.attempt.docs.active {
                Doc::Valid { version, .. } => *version,
                _ => 0,
            };
            run.version = Some(version);
            if !run.rec.record.done(Step::Promote) {
                run.rec.record.promoted_version = Some(version);
                run.rec.record.config_after = raw_doc(&run.attempt.tree, &active_name);
                let detail = Some(format!("version {version} written by an earlier attempt"));
                run.rec.record.steps.push(self.step(
                    Step::Promote,
                    StepOutcome::AlreadyDone,
                    start,
                    start,
                    &run.attempt.id,
                    detail,
                ));
            }
            return StepEnd::Next;
        }
        let Some(target_config) = run.attempt.docs.site(target).valid().cloned() else {
            let problem = run.attempt.docs.site(target).problem().unwrap_or_default();
            return StepEnd::Fail(format!("the {target} site's config is not usable: {problem}"));
        };
        // No attempt that may have lost its lease reaches PutParameter: near the end of the lease the lock is
        // renewed by compare-and-swap on its ETag, which fails if another attempt took it over meanwhile.
        match self.keep_lease(&run.held).await {
            Ok(held) => run.held = held,
            Err(source) => return StepEnd::LostLock(source),
        }
        match self.make_room_for_a_version(&active_name, version_of(&run.attempt.tree, &active_name)).await {
            Ok(unlabelled) if !unlabelled.is_empty() => {
                let now = self.now();
                run.rec.record.note(now, format!("unlabelled versions {unlabelled:?} of {active_name}: SSM keeps 100 versions"));
            }
            Ok(_) => {}
            Err(source) => return StepEnd::Stop(source),
        }
        let start = self.now();
        let doc = ActiveConfig::promotion_document(target, &target_config, &id, &rfc3339(start));
        let body = Value::Object(doc.clone()).to_string();
        // The pages owed so far (the first page) ride beside the put: off the critical path, never blocking it.
        let owed = run.rec.record.owed.clone();
        let (put, paged) = tokio::join!(
            self.beside(&mut run.rec, start, self.put_active_once(&active_name, &body, &id)),
            self.publish_owed(&owed)
        );
        self.settle_owed(&mut run.rec.record, paged);
        let version = match put {
            Ok(v) => v,
            Err(source) => return StepEnd::Stop(source),
        };
        let end = self.now();
        run.version = Some(version);
        run.rec.record.promoted_version = Some(version);
        run.rec.record.config_after = Some(Value::Object(doc));
        let detail = Some(format!("{active_name} version {version}"));
        run.rec.record.steps.push(self.step(Step::Promote, StepOutcome::Done, start, end, &run.attempt.id, detail));
        StepEnd::Next
    }

    /// Round trip 5: label the version and read it back, side by side (beside the record's update). A read-back
    /// that differs is a failure a human must look at.
    pub(super) async fn verify_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        let active_name = self.active_name();
        let Some(version) = run.version.or(run.rec.record.promoted_version) else {
            return StepEnd::Fail("no promoted version to verify".into());
        };
        let r = self
            .beside(&mut run.rec, start, async {
                tokio::try_join!(self.params.label(&active_name, version, &id), self.params.get_one(&active_name))
            })
            .await;
        let read_back = match r {
            Ok((_, read_back)) => read_back,
            Err(source) => return StepEnd::Stop(source),
        };
        let end = self.now();
        let problem = match read_back {
            None => Some(format!("{active_name} does not exist after the promotion")),
            Some(p) if p.version != version => {
                Some(format!("{active_name} is at version {} after writing version {version}: someone else wrote it", p.version))
            }
            Some(p) => {
                let read: Option<Value> = serde_json::from_str(&p.value).ok();
                (read != run.rec.record.config_after)
                    .then(|| format!("{active_name} version {version} does not hold the promoted document"))
            }
        };
        if let Some(problem) = problem {
            return StepEnd::Fail(problem);
        }
        let detail = Some(format!("labelled {id}; read back version {version}"));
        run.rec.record.steps.push(self.step(Step::Verify, StepOutcome::Done, start, end, &run.attempt.id, detail));
        tracing::info!(execution_id = %id, version, target = %run.rec.record.target, "promotion verified");
        StepEnd::Next
    }

    /// After the critical path: the `OK` page (owed first) and the chat summary (best effort). Neither a
    /// failing paging topic nor a failing chat topic stalls a verified promotion.
    pub(super) async fn notify_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        let rec = &run.rec.record;
        let mut summary = self.step_summary(rec);
        if let Some(a) = &rec.activation {
            summary.push_str(&format!(". {}", a.summary()));
        }
        let ok = self.page(
            rec,
            "completed",
            PageState::Ok,
            // The severity of its ALARM pages: a severity-filtered pager subscription must see the OK.
            Severity::Critical,
            format!(
                "DR {}: {} to the {} site completed and verified ({}). {summary}",
                self.settings.environment, rec.kind, rec.target, rec.reason
            ),
        );
        let chat = self.chat(
            rec,
            "completed",
            Severity::Info,
            format!("DR {}: {} to {} completed", self.settings.environment, rec.kind, rec.target),
            summary,
            vec![
                "Consumers reading {prefix}/active now see the new site.".into(),
                format!("Report: {}", domain::layout::report_markdown(&id)),
            ],
        );
        self.owe_page(&mut run.rec.record, "completed", &ok);
        let owed = run.rec.record.owed.clone();
        let (saved, paged, ()) = tokio::join!(
            self.beside(&mut run.rec, start, async { Ok(()) }),
            self.publish_owed(&owed),
            self.chat_best_effort(&id, "completed", &chat)
        );
        self.settle_owed(&mut run.rec.record, paged);
        if let Err(source) = saved {
            return StepEnd::Stop(source);
        }
        let end = self.now();
        let owed = run.rec.record.owed.len();
        let detail = (owed > 0).then(|| format!("{owed} page(s) owed"));
        run.rec.record.steps.push(self.step(Step::Notify, StepOutcome::Done, start, end, &run.attempt.id, detail));
        StepEnd::Next
    }

    /// The report (`reports/{id}.json` and `.md`), beside the record's update.
    pub(super) async fn report_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        let (json_key, _) = report::report_keys(&id);
        run.rec.record.report_key = Some(json_key.clone());
        self.finish_delta_assessment(&mut run.rec.record).await;
        let mut for_report = run.rec.record.clone();
        for_report.state = ExecutionState::Completed;
        for_report.steps.push(self.step(Step::Report, StepOutcome::Done, start, start, &run.attempt.id, None));
        let written = self.write_report(&for_report);
        if let Err(source) = self.beside(&mut run.rec, start, written).await {
            return StepEnd::Stop(source);
        }
        let end = self.now();
        run.rec.record.steps.push(self.step(Step::Report, StepOutcome::Done, start, end, &run.attempt.id, Some(json_key)));
        StepEnd::Next
    }

    /// A Delta assessment still computing at the snapshot (its deadline passed beside the lock) went on as its own
    /// task and stores its result under `delta::LATEST_KEY` when done: the report takes it from there, if it is
    /// the same assessment (one read, after the promotion, never on its path).
    async fn finish_delta_assessment(&self, record: &mut ExecutionRecord) {
        let Some(rpo) = record.rpo_estimate.as_mut() else { return };
        if rpo["delta"]["state"] != "still-computing" {
            return;
        }
        let latest = match self.bucket.get(dr_delta::LATEST_KEY).await {
            Ok(Some(o)) => serde_json::from_slice::<Value>(&o.body).unwrap_or(Value::Null),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "the finished Delta assessment could not be read for the report");
                return;
            }
        };
        if latest["generated_at"] == rpo["delta_generated_at"] && latest["complete"] == true {
            rpo["delta"] = latest["workload"].clone();
            rpo["delta_finished_after_promotion"] = Value::Bool(true);
        }
    }

    /// Releases the lock, if this attempt still holds it.
    pub(super) async fn release_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        if let Err(source) = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &run.held.doc.attempt_id).await {
            return StepEnd::Stop(source);
        }
        let end = self.now();
        run.rec.record.steps.push(self.step(Step::Release, StepOutcome::Done, start, end, &run.attempt.id, None));
        StepEnd::Next
    }

    /// Writes an execution's report (`reports/{id}.json` and `.md`) from `record` as given. The bodies are built
    /// now, so the record itself can be saved beside the writes.
    pub(super) fn write_report<'a>(
        &'a self,
        record: &ExecutionRecord,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<'a, P, B, N, C> {
        let (json_key, md_key) = report::report_keys(&record.execution_id);
        let rpo = record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
        let json_body = serde_json::to_vec_pretty(&report::json_report(record, &rpo)).unwrap_or_default();
        let md_body = report::markdown_report(record, &rpo).into_bytes();
        async move {
            tokio::try_join!(
                self.bucket.put(&json_key, json_body, "application/json", WriteCondition::Overwrite),
                self.bucket.put(&md_key, md_body, "text/markdown", WriteCondition::Overwrite),
            )
            .map(|_| ())
        }
    }

    /// Writes a new record create-only (the record is the execution's idempotency key). `Some(existing)` when a
    /// concurrent delivery of the same trigger recorded it first: the caller answers with that one's result.
    pub(super) async fn create_record(&self, rec: &mut Recorder) -> EngineResult<Option<Recorder>> {
        let id = rec.record.execution_id.clone();
        match rec.save_now(&self.bucket, self.now()).await {
            Ok(()) => Ok(None),
            Err(StoreError::Conflict { .. }) => {
                let existing = record::read(&self.bucket, &id)
                    .await
                    .map_err(|source| EngineError::NotStarted { execution_id: id.clone(), source })?
                    .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "record vanished".into() })?;
                Ok(Some(existing))
            }
            Err(source) => Err(EngineError::NotStarted { execution_id: id, source }),
        }
    }

    /// One round trip: `action` beside the record's save. The save's ETag is kept whatever the action answered
    /// (a stop after a failed action then writes the record at the ETag it really has); the action's error
    /// comes first, then the save's.
    pub(super) async fn beside<T>(
        &self,
        rec: &mut Recorder,
        at: OffsetDateTime,
        action: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let save = rec.save(&self.bucket, at);
        let (outcome, saved) = tokio::join!(action, save);
        match saved {
            Ok(etag) => {
                rec.saved(etag, self.now());
                outcome
            }
            // The SDK's retry of a save whose answer was lost meets our own write: checked by re-reading (the
            // stored writer is ours), then written again on top of it so the stored record is this one.
            Err(StoreError::Conflict { .. }) if matches!(rec.adopt_own_lost_write(&self.bucket).await, Ok(true)) => {
                match rec.save_now(&self.bucket, at).await {
                    Ok(()) => outcome,
                    Err(e) => outcome.and(Err(e)),
                }
            }
            Err(e) => outcome.and(Err(e)),
        }
    }

    /// Publishes `owed` in order and returns each result (stopping at the first failure); see `settle_owed`.
    pub(super) async fn publish_owed(&self, owed: &[OwedMessage]) -> Vec<Result<Option<String>, StoreError>> {
        let mut out = Vec::new();
        for o in owed {
            let r = self.notifier.publish(o.channel, &o.message()).await;
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    }

    /// Applies the results of `publish_owed` to the record: each published page moves to the sent ones.
    pub(super) fn settle_owed(&self, rec: &mut ExecutionRecord, results: Vec<Result<Option<String>, StoreError>>) {
        let owed = rec.owed.clone();
        for (o, r) in owed.iter().zip(results) {
            match r {
                Ok(id) => rec.paid(o.channel, &o.event_type, id),
                Err(e) => {
                    tracing::warn!(execution_id = %rec.execution_id, event_type = %o.event_type, error = %e, "page owed");
                    let now = self.now();
                    rec.note(now, format!("page {} owed: {e}", o.event_type));
                    break;
                }
            }
        }
    }

    /// SSM keeps 100 versions of a parameter and refuses a new one while the oldest carries a label, and every
    /// promotion labels its version: near the limit, the labels of the versions the next writes will drop are
    /// removed first (the reports and the records keep the history). Costs a round trip only from version 98.
    pub(super) async fn make_room_for_a_version(&self, name: &str, current: Option<i64>) -> Result<Vec<i64>, StoreError> {
        if current.unwrap_or(0) < VERSIONS_BEFORE_HYGIENE {
            return Ok(Vec::new());
        }
        let history = self.params.history(name).await?;
        // Keep room for two writes (ours and the next), so that no put ever meets a labelled oldest version.
        let dropped = history.len().saturating_sub(SSM_VERSIONS_KEPT - 2);
        let mut unlabelled = Vec::new();
        for v in history.iter().take(dropped).filter(|v| !v.labels.is_empty()) {
            self.params.unlabel(name, v.version, &v.labels).await?;
            unlabelled.push(v.version);
        }
        Ok(unlabelled)
    }

    /// Renews the lock's lease by compare-and-swap when less than a quarter of it is left: the attempt goes on
    /// only while it provably holds the lock (an attempt slowed past its lease, a CLI on a sleeping laptop,
    /// finds the lock taken over and stops without writing).
    ///
    /// What is left is judged by the store's time (its clock at our last write of the lock, plus the time since),
    /// the time every other taker judges the lease by: a `dr` whose clock is minutes behind must not believe a
    /// lease the store says has expired, nor one minutes ahead renew a lease it still holds to an expiry nobody
    /// else would see pass. The renewal's expiry is the store's time plus the lease, written again from the
    /// store's answer when the estimate was off (as the activation's fence does).
    pub(super) async fn keep_lease(&self, held: &Held) -> Result<Held, StoreError> {
        let local = self.now();
        let now = held.store_now(local);
        let until = domain::primitives::parse_rfc3339(&held.doc.lease_expires_at).unwrap_or(now);
        let lease =
            if held.doc.state == LockState::AwaitingApproval { self.settings.approval_window } else { self.settings.lock_lease };
        if until - now > lease / 4 {
            return Ok(held.clone());
        }
        let from = held.store_earliest(local);
        let renewed = self.renew_to(held, from + lease).await?;
        match renewed.store {
            Some(c) if (from - c.at).abs() > lock::SKEW_TOLERATED => self.renew_to(&renewed, c.at + lease).await,
            _ => Ok(renewed),
        }
    }

    /// Rewrites our lock with the expiry `until` (compare-and-swap on its ETag), keeping the store's clock of
    /// the write's answer.
    pub(super) async fn renew_to(&self, held: &Held, until: OffsetDateTime) -> Result<Held, StoreError> {
        let doc = LockDoc { lease_expires_at: rfc3339(until), ..held.doc.clone() };
        let written = lock::update_dated(&self.bucket, &self.settings.lock_key, &doc, &held.etag).await?;
        let store = written.store_time.map(|t| lock::StoreClock::answered(t, self.now())).or(held.store);
        Ok(Held { doc, etag: written.etag, store })
    }

    /// Writes `{prefix}/active` exactly once. `PutParameter` has no idempotency token, so the adapter does not
    /// retry it; here a failed attempt is followed by a read: when the value names this execution, the write
    /// did land (its answer was lost) and that version is the promotion; otherwise it is written again.
    pub(super) async fn put_active_once(&self, name: &str, body: &str, execution_id: &str) -> Result<i64, StoreError> {
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100 * 2u64.pow(attempt))).await;
                match self.params.get_one(name).await {
                    Ok(Some(p)) if names_execution(&p.value, execution_id) => return Ok(p.version),
                    Ok(_) => {}
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            }
            match self.params.put(name, body, true).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retry() == Retry::Helps => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Transient {
            service: "SSM",
            operation: "PutParameter",
            message: "no attempt made".into(),
        }))
    }
}
