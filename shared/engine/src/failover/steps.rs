//! The steps of an execution under the lock: fence, snapshot, promote, verify, notify, report, release.
use crate::documents::Doc;
use crate::error::{Retry, StoreError};
use crate::failover::runner::{Run, StepEnd};
use crate::failover::{
    Attempt, Engine, EngineError, EngineResult, ExecutionResult, Held, SSM_VERSIONS_KEPT, VERSIONS_BEFORE_HYGIENE, messages,
    names_execution, raw_doc, rpo_estimate, version_of,
};
use crate::lock::{LockDoc, LockState};
use crate::ports::{Channel, Clock, ControlBucket, Notifier, Parameter, ParameterStore, WriteCondition};
use crate::record::{ExecutionRecord, ExecutionState, OwedMessage, Reconciled, Recorder, Step, StepOutcome};
use crate::response::Outcome;
use crate::snapshot::SnapshotContext;
use crate::{documents, lock, record, report, snapshot};
use domain::decision;
use domain::decision::{DecisionInput, Fence, FenceInput, Initiator};
use domain::notification::{PageState, Severity};
use domain::primitives::rfc3339;
use domain::site::ActiveConfig;
use futures_util::future::try_join_all;
use serde_json::Value;
use time::OffsetDateTime;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Approval mode: snapshot, write the plan, page with the exact `approve` command, keep the lock, wait.
    pub(super) async fn prepare_for_approval(
        &self,
        mut rec: Recorder,
        attempt: Attempt,
        held: Held,
    ) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let start = self.now();
        // A preparation resumed after a stop (a redelivery taking over the stopped lock) starts afresh: the error
        // of that stop no longer holds (its steps and notes keep it), and a stop of this attempt records its own.
        // Left, it would outlive the approval and the execution's end (found by the soak: a noop "stopped with
        // error" after a transient failure of the approval window's lock update).
        rec.record.error = None;
        let files = self.snapshot_files(&attempt).await;
        if let Ok(f) = &files {
            rec.record.rpo_estimate = Some(rpo_estimate(f));
            rec.record.workspaces = crate::workspace::from_snapshot(f);
        }
        let folder = domain::layout::snapshot_folder(&id);
        let plan = ActiveConfig::promotion_document(
            rec.record.target,
            attempt
                .docs
                .site(rec.record.target)
                .valid()
                .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "target vanished".into() })?,
            &id,
            "<at promotion>",
        );
        rec.record.config_after = Some(Value::Object(plan));
        let rpo = rec.record.rpo_estimate.as_ref().map(|r| format!(" RPO: {}.", crate::report::rpo_summary(r)));
        let reason = format!(
            "DR {}: failover toward {} awaits approval ({}).{} Approve with: {}",
            self.settings.environment,
            rec.record.target,
            rec.record.decision.reasons.join("; "),
            rpo.unwrap_or_default(),
            self.approve_command(&id)
        );
        let page = self.page(&rec.record, "awaiting_approval", PageState::Alarm, Severity::Critical, reason.clone());
        self.owe_page(&mut rec.record, "awaiting_approval", &page);
        // The record (holding the page as owed) and the snapshot first; then the page, which never blocks them and
        // never goes out without a record to resolve it.
        let snapshot = async {
            match files {
                Ok(f) => snapshot::write(&self.bucket, &folder, &id, f, start).await,
                Err(e) => Err(e),
            }
        };
        // Every write below is a compare-and-swap that decides again on a conflict: the alarm's `OK` (or a cancel)
        // may end the record while it is prepared, without the lock. The recovery wins: the preparation stands
        // down, its `ALARM` resolved, the lock released.
        let (written, saved) = tokio::join!(snapshot, rec.save_or_reconcile(&self.bucket, start));
        match saved {
            Ok(Reconciled::Saved) => {}
            Ok(Reconciled::Ended(stored)) => return Ok(self.withdraw_approval(*stored, &attempt, &held, &[]).await),
            Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
        }
        let manifest = match written {
            Ok(m) => m,
            Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
        };
        let end = self.now();
        rec.record.snapshot_manifest_key = Some(manifest.clone());
        rec.record.steps.push(self.step(Step::Snapshot, StepOutcome::Done, start, end, &attempt.id, Some(manifest)));
        let chat = self.chat(
            &rec.record,
            "awaiting_approval",
            Severity::Critical,
            format!("DR {}: failover awaits approval", self.settings.environment),
            reason,
            vec![self.approve_command(&id)],
        );
        let before = rec.record.messages.len();
        let (paid, ()) = tokio::join!(self.pay_owed(&mut rec.record), self.chat_best_effort(&id, "awaiting_approval", &chat));
        // The pages this attempt published, by message id: another attempt may have sent the same event before.
        let published: Vec<String> = rec.record.messages[before..]
            .iter()
            .filter(|m| m.channel == Channel::Paging && !m.ok)
            .map(|m| m.message_id.clone().unwrap_or_default())
            .collect();
        if let Err(e) = paid {
            tracing::warn!(execution_id = %id, error = %e, "the approval page is owed");
        }
        let paged = rec.record.sent(Channel::Paging, &format!("{}.awaiting_approval", rec.record.kind));
        match rec.save_or_reconcile(&self.bucket, self.now()).await {
            Ok(Reconciled::Saved) => {}
            Ok(Reconciled::Ended(stored)) => return Ok(self.withdraw_approval(*stored, &attempt, &held, &published).await),
            Err(source) => return Err(self.stop(rec, Some(held), Step::Snapshot, source).await),
        }
        if paged && rec.record.recovered() {
            // The alarm recovered (its `OK` was merged in) while this page was being published: it may have gone
            // out after that `OK`, so the `OK` goes out again after it.
            self.resolve_again(&mut rec, "the alarm recovered while its approval was being prepared").await;
        }
        // Only now, with the record and its page in place, the lock takes the approval window's long lease.
        // The window is counted on the store's clock, the one the approval's takeover is judged by.
        let now = held.store_earliest(self.now());
        let waiting = LockDoc {
            state: LockState::AwaitingApproval,
            lease_expires_at: rfc3339(now + self.settings.approval_window),
            ..held.doc.clone()
        };
        if let Err(source) = lock::update(&self.bucket, &self.settings.lock_key, &waiting, &held.etag).await {
            // The lock is marked stopped (conditional on its ETag: if the update landed and only its answer was
            // lost, the lock holds the window and stays so), so the redelivery takes it over and finishes.
            return Err(self.stop(rec, Some(held), Step::Lock, source).await);
        }
        // The recovery may have ended the record between its last write and the window: the recovery releases a
        // waiting lock it finds after ending the record, and this re-read finds an end written before the window.
        // One of the two sees the other, so no approval window outlives the alarm's `OK`.
        if let Ok(Some(stored)) = record::read(&self.bucket, &id).await
            && stored.record.state.is_terminal()
        {
            return Ok(self.withdraw_approval(stored, &attempt, &held, &published).await);
        }
        let active = attempt.docs.active.valid().map(|a| a.site);
        let msg = format!("prepared; awaiting approval: {}", self.approve_command(&id));
        Ok(self.result_of(&rec.record, Outcome::AwaitingApproval, active, msg))
    }

    /// The preparation of an approval found its record ended by another writer (the alarm's `OK`, a cancel):
    /// it stands down. Its `ALARM` page, if this attempt published it, may have gone out after the recovery's `OK`,
    /// so an `OK` goes out again after it; the lock this attempt holds is released.
    async fn withdraw_approval(
        &self,
        mut stored: Recorder,
        attempt: &Attempt,
        held: &Held,
        published: &[String],
    ) -> ExecutionResult {
        let id = stored.record.execution_id.clone();
        let state = stored.record.state;
        tracing::warn!(execution_id = %id, state = ?state, "the record ended while its approval was being prepared");
        // An end that records each page this attempt published (by its message id, not its event: another
        // attempt may have sent the same event before the end) was written after them, so its `OK` followed them.
        let seen = |id: &String| !id.is_empty() && stored.record.messages.iter().any(|m| m.message_id.as_ref() == Some(id));
        if !published.iter().all(seen) {
            self.resolve_again(
                &mut stored,
                "its approval page crossed the end of the execution: nothing awaits approval; if the primary is still \
                 unhealthy, run `failover` by hand",
            )
            .await;
        }
        if let Err(e) = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await {
            tracing::warn!(execution_id = %id, error = %e, "could not release the lock; it frees itself when its lease expires");
        }
        let active = attempt.docs.active.valid().map(|a| a.site);
        let reasons = stored.record.decision.reasons.join("; ");
        let msg = format!("execution {id} ended ({state:?}) while its approval was being prepared: {reasons}");
        self.result_of(&stored.record, messages::outcome_of(state), active, msg)
    }

    /// Sends the execution's `OK` page again (owed first), after an `ALARM` of it that may have crossed its first
    /// `OK`: a pager resolves an incident by the last page it received.
    pub(super) async fn resolve_again(&self, rec: &mut Recorder, why: &str) {
        let id = rec.record.execution_id.clone();
        let text =
            format!("DR {}: {} {id}: {why}. This OK resolves its incident again.", self.settings.environment, rec.record.kind);
        let page = self.page(&rec.record, "resolved_again", PageState::Ok, Severity::Critical, text);
        // One per crossing: a second ALARM that crossed the incident's end after a first `resolved_again` went out
        // needs an OK of its own (a fixed event type would find it sent and owe nothing).
        let event = format!("resolved_again.{}", rec.record.messages.len());
        self.owe_page(&mut rec.record, &event, &page);
        if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the OK owed after a crossing ALARM");
        }
        if let Err(e) = self.pay_owed(&mut rec.record).await {
            tracing::warn!(execution_id = %id, error = %e, "the OK after a crossing ALARM is owed");
        }
        if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the OK sent after a crossing ALARM");
        }
    }

    /// Pays the owed pages of an ended or waiting execution without the lock (a duplicate delivery, `check`),
    /// then records them. A conflict means another writer moved the record on meanwhile; when it resolved the
    /// incident (the alarm's `OK`) and an `ALARM` went out here, that `ALARM` may have reached the pager after the
    /// `OK`, so an `OK` goes out again after it.
    ///
    /// Before an `ALARM` goes out, the record says so (`unlocked_alarm_since`, by compare-and-swap): a payer that
    /// dies between its publish and that check leaves the mark, and the next delivery or `check` that finds the
    /// record resolved sends the `OK` again ([`Self::follow_unlocked_alarm`]).
    pub(super) async fn pay_owed_unlocked(&self, rec: &mut Recorder) -> Result<(), StoreError> {
        if !self.mark_unlocked_alarm(rec).await? {
            // Moved on by another writer at every try: it pays (or dropped) the pages; nothing goes out from here.
            return Ok(());
        }
        let before = rec.record.messages.len();
        let paid = self.pay_owed(&mut rec.record).await;
        let alarm_sent = rec.record.messages.iter().skip(before).any(|m| m.channel == Channel::Paging && !m.ok);
        // Our own mark, on the version we wrote: the save below is a compare-and-swap on it.
        rec.record.unlocked_alarm_since = None;
        match rec.save_now(&self.bucket, self.now()).await {
            Ok(()) => {}
            // Any failure, not only a conflict: the save's own check of the stored record may be what failed.
            Err(_) if alarm_sent => {
                let id = rec.record.execution_id.clone();
                // The check is what resolves a crossing ALARM: a read that fails is tried again, not skipped.
                let mut read = record::read(&self.bucket, &id).await;
                for wait in [100u64, 400] {
                    if read.is_ok() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    read = record::read(&self.bucket, &id).await;
                }
                if let Ok(Some(mut stored)) = read
                    && (stored.record.resolved() || stored.record.owed.iter().any(OwedMessage::resolves))
                {
                    self.resolve_again(&mut stored, "an ALARM owed by it was paid while its incident was being resolved").await;
                }
            }
            Err(e) => {
                tracing::warn!(execution_id = %rec.record.execution_id, error = %e, "could not record the pages paid");
            }
        }
        paid
    }

    /// Marks `rec` as about to publish an owed `ALARM` without the lock (see [`Self::pay_owed_unlocked`]). On a
    /// conflict the record is read again (up to three times). `false`: another writer moved it on at every try.
    async fn mark_unlocked_alarm(&self, rec: &mut Recorder) -> Result<bool, StoreError> {
        for _ in 0..3 {
            let alarm_owed = rec.record.owed.iter().any(|o| o.channel == Channel::Paging && !o.resolves());
            if !alarm_owed {
                return Ok(true);
            }
            let mut marked = rec.clone();
            marked.record.unlocked_alarm_since = Some(rfc3339(self.now()));
            match marked.save_now(&self.bucket, self.now()).await {
                Ok(()) => {
                    *rec = marked;
                    return Ok(true);
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            match record::read(&self.bucket, &rec.record.execution_id).await? {
                Some(stored) => *rec = stored,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// A record marked by a delivery that set out to publish an `ALARM` without the lock (see
    /// [`Self::pay_owed_unlocked`]): when the incident is resolved, that `ALARM` may have gone out after its `OK`
    /// and its payer may be dead, so the `OK` goes out again. The mark is cleared once older than the lease (its
    /// payer, a function invocation, is over by then); until then each reader resolves again (a duplicate `OK`
    /// is harmless; a payer still alive checks for the crossing itself).
    pub(super) async fn follow_unlocked_alarm(&self, rec: &mut Recorder) {
        let Some(since) = rec.record.unlocked_alarm_since.as_deref() else { return };
        let expired = domain::primitives::parse_rfc3339(since).is_none_or(|t| t + self.settings.lock_lease < self.now());
        let resolved = rec.record.resolved();
        if expired {
            rec.record.unlocked_alarm_since = None;
        }
        if resolved {
            self.resolve_again(rec, "an ALARM paid without the lock may have gone out after its OK").await;
        } else if expired && let Err(e) = rec.save_now(&self.bucket, self.now()).await {
            tracing::warn!(execution_id = %rec.record.execution_id, error = %e, "could not clear the mark of an unlocked ALARM");
        }
    }

    pub(crate) async fn snapshot_files_of(
        &self,
        tree: &[Parameter],
        patient: bool,
    ) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        let ctx = SnapshotContext { tree, prefix: self.settings.prefix.as_str(), now: self.now(), patient };
        let mut files = vec![snapshot::tree_file(tree)];
        files.extend(snapshot::document_files(tree, self.settings.prefix.as_str()));
        let extra = try_join_all(self.sources.iter().map(|s| s.collect(&ctx))).await?;
        files.extend(extra.into_iter().flatten());
        Ok(files)
    }

    pub(super) async fn snapshot_files(&self, attempt: &Attempt) -> Result<Vec<snapshot::SnapshotFile>, StoreError> {
        match &attempt.prefetched {
            Some(files) => Ok(files.clone()),
            None => self.snapshot_files_of(&attempt.tree, false).await,
        }
    }
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
            Fence::Superseded(why) if !run.rec.record.done(Step::Promote) => {
                // A promotion of this execution may have landed without its record saying so (a crash between
                // the put and the record's update), then been replaced: the history tells, and the record says it.
                match self.own_promotion_in_history(&id).await {
                    Ok(Some(version)) => {
                        let now = self.now();
                        run.rec.record.promoted_version = Some(version);
                        let detail = Some(format!("version {version}, found in the history (its record update was lost)"));
                        run.rec.record.steps.push(self.step(
                            Step::Promote,
                            StepOutcome::AlreadyDone,
                            now,
                            now,
                            &run.attempt.id,
                            detail,
                        ));
                        StepEnd::Supersede(format!("{why}; its own promotion (version {version}) was live before that"))
                    }
                    Ok(None) => StepEnd::Supersede(why),
                    Err(source) => StepEnd::Stop(source),
                }
            }
            Fence::Superseded(why) => StepEnd::Supersede(why),
            verdict => {
                let end = self.now();
                let step = self.step(Step::Fence, StepOutcome::Done, start, end, &run.attempt.id, Some(format!("{verdict:?}")));
                run.rec.record.steps.push(step);
                StepEnd::Next
            }
        }
    }

    /// The version of `{prefix}/active` this execution wrote, if any version in SSM's history names it.
    pub(super) async fn own_promotion_in_history(&self, execution_id: &str) -> Result<Option<i64>, StoreError> {
        let history = self.params.history(&self.active_name()).await?;
        Ok(history.iter().rev().find(|v| names_execution(&v.value, execution_id)).map(|v| v.version))
    }

    /// Whether `{prefix}/active`, as read under the lock, names this execution: its promotion is live.
    fn promoted_earlier(&self, run: &Run) -> bool {
        run.attempt.docs.active.valid().and_then(|a| a.execution_id.as_deref()) == Some(run.rec.record.execution_id.as_str())
    }

    /// Round trip 3: the snapshot, beside the record, which holds the first page as owed: the page goes out
    /// only once a record exists to resolve it (beside the promotion), and never blocks anything.
    pub(super) async fn snapshot_step(&self, run: &mut Run) -> StepEnd {
        let start = self.now();
        let id = run.rec.record.execution_id.clone();
        if self.promoted_earlier(run) {
            let detail = Some("the promotion of an earlier attempt is live: its snapshot preceded it".into());
            let step = self.step(Step::Snapshot, StepOutcome::AlreadyDone, start, start, &run.attempt.id, detail);
            run.rec.record.steps.push(step);
            return StepEnd::Next;
        }
        // The files first (collected while the lock was taken): the started page carries the RPO.
        let files = self.snapshot_files(&run.attempt).await;
        let estimate = files.as_ref().ok().map(|f| rpo_estimate(f));
        let rpo = estimate.as_ref().map(|e| format!(" RPO: {}.", crate::report::rpo_summary(e)));
        let rec = &mut run.rec.record;
        if !rec.sent(Channel::Paging, &format!("{}.awaiting_approval", rec.kind)) {
            let page = self.page(
                rec,
                "started",
                PageState::Alarm,
                Severity::Critical,
                format!(
                    "DR {}: {} toward the {} site started ({}). Decision: {}.{}",
                    self.settings.environment,
                    rec.kind,
                    rec.target,
                    rec.reason,
                    rec.decision.reasons.join("; "),
                    rpo.unwrap_or_default()
                ),
            );
            self.owe_page(rec, "started", &page);
        }
        let files = match files {
            Ok(f) => f,
            Err(source) => return StepEnd::Stop(source),
        };
        run.rec.record.rpo_estimate = estimate;
        run.rec.record.workspaces = crate::workspace::from_snapshot(&files);
        let folder = domain::layout::snapshot_folder(&id);
        let written = self.beside(&mut run.rec, start, snapshot::write(&self.bucket, &folder, &id, files, start)).await;
        let manifest = match written {
            Ok(m) => m,
            Err(source) => return StepEnd::Stop(source),
        };
        let end = self.now();
        run.rec.record.snapshot_manifest_key = Some(manifest.clone());
        run.rec.record.steps.push(self.step(Step::Snapshot, StepOutcome::Done, start, end, &run.attempt.id, Some(manifest)));
        StepEnd::Next
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
        let latest = match self.bucket.get(crate::delta::LATEST_KEY).await {
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
