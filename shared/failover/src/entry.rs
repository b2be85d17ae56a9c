//! Before the lock and after a stop: what answers a delivery of an execution that already exists (joins it,
//! resumes it, prepares its approval again, or says where it stands), and the operator's commands on one that
//! waits or stopped: `approve`, `cancel`, `unlock`.
use crate::record::{self, ExecutionRecord, ExecutionState, Recorder, SentMessage, Step};
use crate::report;
use crate::response::Outcome;
use crate::rules::decision::{self, Action, DecisionInput, Initiator};
use crate::{Attempt, Engine, EngineError, EngineResult, ExecutionResult, Held, messages, version_of};
use domain::notification::{PageState, Severity};
use dr_ports::documents;
use dr_ports::error::StoreError;
use dr_ports::lock::{self, Acquired, LockDoc, LockState};
use dr_ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore};
use time::OffsetDateTime;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Continues a failover waiting in approval mode.
    pub async fn approve(&self, execution_id: &str, approver: &str) -> EngineResult<ExecutionResult> {
        let attempt_id = domain::primitives::new_token();
        let (tree, existing) = tokio::try_join!(self.read_tree(), record::read(&self.bucket, execution_id))
            .map_err(|source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source })?;
        let docs = documents::from_tree(&tree, &self.settings.prefix);
        let attempt = Attempt { id: attempt_id, tree, docs, prefetched: None };
        let Some(rec) = existing else {
            let active_site = attempt.docs.active.valid().map(|a| a.site);
            return Ok(ExecutionResult::answer(
                Outcome::Rejected,
                execution_id,
                active_site,
                format!("no execution {execution_id:?} exists; expected the id of a failover awaiting approval (see status)"),
            ));
        };
        self.answer_existing(rec, attempt, Some(approver)).await
    }

    /// Whether an execution waiting for approval finished its preparation: its snapshot is recorded and the lock
    /// holds its approval window. A lock that cannot be read counts as not prepared (the redelivery then tries).
    /// Past its approval window (counted from the execution's start) nothing is prepared again: a late
    /// redelivery must not re-open a wait that on-call let lapse.
    pub(super) async fn prepared_for_approval(&self, rec: &ExecutionRecord) -> bool {
        let lapsed = domain::primitives::parse_rfc3339(&rec.created_at)
            .is_none_or(|started| self.now() > started + self.settings.approval_window);
        lapsed
            || rec.done(Step::Snapshot)
                && matches!(
                    lock::read(&self.bucket, &self.settings.lock_key).await,
                    Ok(Some((l, _))) if l.execution_id == rec.execution_id && l.state == LockState::AwaitingApproval
                )
    }

    /// The answer when the lock is held by `holder`. `resuming` (its resume hint): this execution has a record that
    /// is still running (an attempt stopped or crashed) and another execution holds the lock: it must be delivered
    /// again later, when the fence will tell whether it may still act; the answer names the command that does it.
    pub(super) fn in_progress_answer(
        &self,
        execution_id: &str,
        attempt: &Attempt,
        holder: LockDoc,
        resuming: Option<String>,
    ) -> ExecutionResult {
        let message = if holder.execution_id == execution_id {
            format!(
                "execution {execution_id} is already in flight (attempt {}, {:?}, lease until {}); this delivery changed nothing",
                holder.attempt_id, holder.state, holder.lease_expires_at
            )
        } else if let Some(hint) = &resuming {
            format!(
                "execution {execution_id} stopped and cannot resume while execution {} holds the lock ({:?}, lease until {}); \
                 once it is released: {hint}",
                holder.execution_id, holder.state, holder.lease_expires_at
            )
        } else {
            format!(
                "another execution is in flight: {} ({:?}, lease until {}); this trigger changed nothing",
                holder.execution_id, holder.state, holder.lease_expires_at
            )
        };
        ExecutionResult {
            redeliver: resuming.is_some(),
            in_flight: Some(holder),
            ..ExecutionResult::answer(Outcome::InProgress, execution_id, attempt.docs.active.valid().map(|a| a.site), message)
        }
    }

    /// Answers for an execution that already has a record: the first result, or a resume.
    pub(super) async fn answer_existing(
        &self,
        mut rec: Recorder,
        attempt: Attempt,
        approver: Option<&str>,
    ) -> EngineResult<ExecutionResult> {
        let state = rec.record.state;
        let active_site = attempt.docs.active.valid().map(|a| a.site);
        // Pages owed by an ended (or waiting) execution go out first. A running execution's pages are its lock
        // holder's to pay, in order: a delivery without the lock paying them could send a stale ALARM after its OK.
        if state.is_terminal() || state == ExecutionState::AwaitingApproval {
            self.settle_idle_pages(&mut rec).await?;
        }
        if state.is_terminal() {
            return self.answer_ended(&rec, approver, active_site);
        }
        match (state, approver) {
            (ExecutionState::AwaitingApproval, None) if !self.prepared_for_approval(&rec.record).await => {
                self.finish_preparation(rec, attempt).await
            }
            (ExecutionState::AwaitingApproval, None) => {
                let msg = format!(
                    "execution {} awaits approval: {}",
                    rec.record.execution_id,
                    self.approve_command(&rec.record.execution_id)
                );
                Ok(self.result_of(&rec.record, Outcome::AwaitingApproval, active_site, msg))
            }
            (ExecutionState::Running, Some(approver)) if rec.record.approved_by.is_some() => {
                // Approved, then stopped: approving again resumes it (a synchronous approve is never redelivered).
                let held = match self.lock_or_answer(&mut rec, &attempt, true, true).await? {
                    Ok(held) => held,
                    Err(answer) => return Ok(answer),
                };
                let now = self.now();
                rec.record.note(now, format!("{approver} approved again: attempt {} resumes the execution", attempt.id));
                self.drive(rec, attempt, held).await
            }
            (ExecutionState::Running, Some(_)) => {
                let msg = format!("execution {} is not waiting for approval: it is running", rec.record.execution_id);
                Ok(self.result_of(&rec.record, Outcome::InProgress, active_site, msg))
            }
            (ExecutionState::AwaitingApproval, Some(approver))
                if self.names_execution_now(&attempt, &rec.record.execution_id) =>
            {
                // Approved before, and its promotion landed but its record update did not (a crash between the
                // two): it is approved; resume it (the fence finds its live promotion).
                let held = match self.lock_or_answer(&mut rec, &attempt, true, true).await? {
                    Ok(held) => held,
                    Err(answer) => return Ok(answer),
                };
                let now = self.now();
                rec.record
                    .note(now, format!("{approver} approved again: its promotion is live; attempt {} finishes it", attempt.id));
                rec.record.approved_by.get_or_insert_with(|| approver.to_owned());
                rec.record.state = ExecutionState::Running;
                self.drive(rec, attempt, held).await
            }
            (ExecutionState::AwaitingApproval, Some(approver)) => self.approve_waiting(rec, attempt, approver).await,
            _ => {
                // Running: an earlier attempt stopped or crashed. Resume under the lock.
                let held = match self.lock_or_answer(&mut rec, &attempt, false, true).await? {
                    Ok(held) => held,
                    Err(answer) => return Ok(answer),
                };
                let now = self.now();
                rec.record.note(now, format!("attempt {} resumes the execution", attempt.id));
                self.drive(rec, attempt, held).await
            }
        }
    }

    /// Takes the lock for the execution of `rec` (`approving`: the approval window's takeover rules), or answers
    /// `in_progress` naming the holder; `resuming`: the answer says how to resume this execution once it is free.
    async fn lock_or_answer(
        &self,
        rec: &mut Recorder,
        attempt: &Attempt,
        approving: bool,
        resuming: bool,
    ) -> EngineResult<Result<Held, ExecutionResult>> {
        match self.take_lock(&mut rec.record, attempt, approving).await? {
            Ok(held) => Ok(Ok(held)),
            Err(holder) => {
                let hint = resuming.then(|| rec.record.resume_hint());
                Ok(Err(self.in_progress_answer(&rec.record.execution_id.clone(), attempt, holder, hint)))
            }
        }
    }

    /// The pages an ended or waiting execution owes go out, and the `OK` again after an `ALARM` that crossed it.
    async fn settle_idle_pages(&self, rec: &mut Recorder) -> EngineResult<()> {
        if !rec.record.owed.is_empty()
            && let Err(source) = self.pay_owed_unlocked(rec).await
        {
            return Err(EngineError::Stopped {
                execution_id: rec.record.execution_id.clone(),
                step: Step::Notify,
                source,
                hint: "pages are owed for this execution: the next delivery of the trigger, or `check`, sends them".into(),
            });
        }
        self.follow_unlocked_alarm(rec).await;
        Ok(())
    }

    /// An ended execution's answer: a replay answers the first result as it was (a completed execution says so,
    /// the others repeat their own outcome: refused, notify-only, superseded, ...; a failed one its error), and
    /// an approval has nothing to approve.
    fn answer_ended(
        &self,
        rec: &Recorder,
        approver: Option<&str>,
        active_site: Option<domain::site::SiteName>,
    ) -> EngineResult<ExecutionResult> {
        let state = rec.record.state;
        let id = rec.record.execution_id.clone();
        if approver.is_some() && state != ExecutionState::Completed {
            let msg = format!("execution {id} already ended ({state:?}): there is nothing to approve");
            return Ok(self.result_of(&rec.record, Outcome::Rejected, active_site, msg));
        }
        if state == ExecutionState::Failed {
            return Err(EngineError::VerificationFailed {
                execution_id: id,
                problem: rec.record.error.clone().unwrap_or_else(|| "the execution failed (see its report)".into()),
            });
        }
        let outcome = if state == ExecutionState::Completed { Outcome::AlreadyCompleted } else { messages::outcome_of(state) };
        let reasons = rec.record.decision.reasons.join("; ");
        Ok(self.result_of(&rec.record, outcome, active_site, format!("execution {id} already ended ({state:?}): {reasons}")))
    }

    /// A waiting execution whose preparation stopped (the snapshot, the record or the lock's approval window
    /// failed): the redelivery finishes it, or the execution would wait without a snapshot and without its window
    /// (another alarm would take the lock over once the short lease expired).
    async fn finish_preparation(&self, mut rec: Recorder, attempt: Attempt) -> EngineResult<ExecutionResult> {
        let held = match self.lock_or_answer(&mut rec, &attempt, true, true).await? {
            Ok(held) => held,
            Err(answer) => return Ok(answer),
        };
        // Read again under the lock: the record read before it may be stale. An approval that landed meanwhile
        // (then stopped, leaving the lock `stopped`, which this delivery took over) owns the execution: preparing
        // again would overwrite its snapshot and its `running` record with a wait that the alarm's `OK` withdraws,
        // leaving its promotion recorded `noop` (simulation seed 4700).
        let id = rec.record.execution_id.clone();
        match record::read(&self.bucket, &id).await {
            Ok(Some(fresh)) if fresh.record.state != ExecutionState::AwaitingApproval => {
                let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await;
                return Box::pin(self.answer_existing(fresh, attempt, None)).await;
            }
            Ok(_) => {}
            Err(source) => {
                let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await;
                return Err(EngineError::NotStarted { execution_id: id, source });
            }
        }
        self.prepare_for_approval(rec, attempt, held).await
    }

    /// `approve` of an execution waiting for it: decided again with what is true now (time has passed since the
    /// plan was made), recorded before anything acts on it, then driven under the lock.
    async fn approve_waiting(&self, mut rec: Recorder, attempt: Attempt, approver: &str) -> EngineResult<ExecutionResult> {
        let now = self.now();
        let d = decision::decide(&DecisionInput {
            initiator: &Initiator::Human { requested_by: approver.to_owned() },
            target: rec.record.target,
            active: attempt.docs.active.valid(),
            policy: self.policy_of(&attempt.docs),
            target_problem: attempt.docs.site(rec.record.target).problem(),
            in_flight: None,
            recovered_at: None,
            now,
        });
        rec.record.note(now, format!("approved by {approver}: {:?} ({})", d.action, d.reasons.join("; ")));
        if d.action != Action::Execute {
            rec.record.state = if d.action == Action::Noop { ExecutionState::Noop } else { ExecutionState::Refused };
            rec.record.decision.reasons.extend(d.reasons.iter().map(|r| format!("at approval: {r}")));
            let _ = lock::release(&self.bucket, &self.settings.lock_key, &rec.record.execution_id, self.now()).await;
            return self.record_only(rec, attempt).await;
        }
        rec.record.decision.overrides.extend(d.overrides);
        rec.record.approved_by = Some(approver.to_owned());
        // The approval is a new decision: the fence compares with what the approver saw.
        rec.record.decided_on_version = version_of(&attempt.tree, &self.active_name());
        let held = match self.lock_or_answer(&mut rec, &attempt, true, false).await? {
            Ok(held) => held,
            Err(answer) => return Ok(answer),
        };
        rec.record.state = ExecutionState::Running;
        // The approval lands in the record before anything acts on it: the alarm's OK withdraws a waiting
        // approval by compare-and-swap on the same version, so exactly one of the two wins. (Saved beside the
        // next step instead, a withdrawal written between the fence's read and the promotion would leave a
        // promoted execution recorded `noop`.)
        if let Err(source) = rec.save_now(&self.bucket, self.now()).await {
            let id = rec.record.execution_id.clone();
            let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await;
            if matches!(source, StoreError::Conflict { .. })
                && let Ok(Some(fresh)) = record::read(&self.bucket, &id).await
                && fresh.record.state.is_terminal()
            {
                return Box::pin(self.answer_existing(fresh, attempt, Some(approver))).await;
            }
            return Err(EngineError::NotStarted { execution_id: id, source });
        }
        self.drive(rec, attempt, held).await
    }

    /// Whether `{prefix}/active`, as this attempt read it, names `execution_id`: its promotion is live.
    pub(super) fn names_execution_now(&self, attempt: &Attempt, execution_id: &str) -> bool {
        attempt.docs.active.valid().and_then(|a| a.execution_id.as_deref()) == Some(execution_id)
    }

    /// Breaks the lock of a stuck execution on purpose; recorded in the execution's record and in chat.
    ///
    /// The execution itself is not cancelled: a running one resumes on its next delivery, one awaiting
    /// approval can still be approved (it takes the lock again). The answer says so, and `status` lists it
    /// among the executions that can resume; `cancel` ends one for good.
    pub async fn unlock(&self, execution_id: &str, requested_by: &str) -> EngineResult<ExecutionResult> {
        let not_started = |source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source };
        // The lease is judged by the store's time at the read (the local clock only when the store tells none).
        let (held, docs) = tokio::try_join!(
            lock::read_at(&self.bucket, &self.settings.lock_key, self.now()),
            documents::load(&self.params, &self.settings.prefix)
        )
        .map_err(not_started)?;
        let active_site = docs.active.valid().map(|a| a.site);
        let answer = |outcome, message: String, in_flight| ExecutionResult {
            in_flight,
            ..ExecutionResult::answer(outcome, execution_id, active_site, message)
        };
        let Some((doc, etag, now)) = held else {
            return Ok(answer(Outcome::Noop, "no failover lock is held; nothing to unlock".into(), None));
        };
        if doc.execution_id != execution_id {
            let msg = format!(
                "the lock is held by execution {}, not {execution_id}; expected the id of the holder (see status)",
                doc.execution_id
            );
            return Ok(answer(Outcome::Rejected, msg, Some(doc)));
        }
        // A running attempt within its lease may be between its checks and its write of `active`: breaking its
        // lock would let a second attempt write too. Its lease (at most DR_LOCK_LEASE_SECONDS) ends soon; a
        // stopped, waiting or expired lock is broken at once, and so is one whose lease no attempt of this stack
        // could have taken (a hand-edited or corrupt lock).
        let longest = self.settings.lock_lease + self.settings.approval_window;
        let plausible = domain::primitives::parse_rfc3339(&doc.lease_expires_at).is_some_and(|until| until <= now + longest);
        if doc.state == LockState::Running && !doc.expired(now) && plausible {
            let msg = format!(
                "execution {execution_id} is running (attempt {}, lease until {}): it finishes, or its lease expires, \
                 first; unlock breaks a stopped, waiting or expired lock only. Retry after {}",
                doc.attempt_id, doc.lease_expires_at, doc.lease_expires_at
            );
            return Ok(answer(Outcome::InProgress, msg, Some(doc)));
        }
        // Exactly the lock judged above: if it changed meanwhile (an attempt took it over), nothing is broken.
        match self.bucket.delete_if_match(&self.settings.lock_key, &etag).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                let msg = format!(
                    "the lock of {execution_id} changed while it was being broken (another attempt took it); run status and retry"
                );
                return Ok(answer(Outcome::InProgress, msg, Some(doc)));
            }
            Err(e) => return Err(not_started(e)),
        }
        let now = self.now();
        let what = format!(
            "lock broken by {requested_by} (was attempt {}, {:?}, lease until {})",
            doc.attempt_id, doc.state, doc.lease_expires_at
        );
        tracing::warn!(execution_id, requested_by, "failover lock broken on purpose");
        self.record_unlock(execution_id, &what, now).await;
        let what = format!(
            "{what}. Execution {execution_id} stays resumable: its next delivery (or `approve`) resumes it; \
             `cancel` ends it for good"
        );
        Ok(answer(Outcome::Completed, what, None))
    }

    /// Notes a broken lock in the execution's record (if it has one) and tells chat; best effort.
    async fn record_unlock(&self, execution_id: &str, what: &str, now: OffsetDateTime) {
        if let Ok(Some(mut rec)) = record::read(&self.bucket, execution_id).await {
            rec.record.note(now, what.to_owned());
            let chat = self.chat(
                &rec.record,
                "unlocked",
                Severity::Warning,
                format!("DR {}: lock of {execution_id} broken", self.settings.environment),
                what.to_owned(),
                vec![],
            );
            if let Ok(id) = self.notifier.publish(Channel::Chat, &chat).await {
                rec.record.messages.push(SentMessage {
                    channel: Channel::Chat,
                    event_type: format!("{}.unlocked", rec.record.kind),
                    message_id: id,
                    ok: false,
                });
            }
            if let Err(e) = rec.save_now(&self.bucket, now).await {
                tracing::warn!(execution_id, error = %e, "could not record the unlock in the execution record");
            }
        }
    }

    /// Ends an execution that stopped or awaits approval, before it promotes: recorded (who, why) in the record
    /// and its report, its page resolved by an `OK` of the same severity, the lock released. Refused for an
    /// execution in flight (a live lease: wait, or `unlock` first), for one that promoted already (resume it to
    /// finish, then fail back), and for one that ended.
    pub async fn cancel(&self, execution_id: &str, requested_by: &str, reason: Option<&str>) -> EngineResult<ExecutionResult> {
        let not_started = |source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source };
        let attempt_id = domain::primitives::new_token();
        let (tree, existing) =
            tokio::try_join!(self.read_tree(), record::read(&self.bucket, execution_id)).map_err(not_started)?;
        let docs = documents::from_tree(&tree, &self.settings.prefix);
        let active_site = docs.active.valid().map(|a| a.site);
        let refuse = |message: String| Ok(ExecutionResult::answer(Outcome::Rejected, execution_id, active_site, message));
        let Some(rec) = existing else {
            return refuse(format!("no execution {execution_id:?} exists; expected the id of a stopped execution (see status)"));
        };
        if rec.record.state == ExecutionState::Cancelled {
            // Cancelled already (a retried cancel): make sure its lock is gone, even the `running` lock of the
            // cancel whose release failed, and answer the same.
            lock::release_ended(&self.bucket, &self.settings.lock_key, execution_id).await.map_err(not_started)?;
            return Ok(self.result_of(
                &rec.record,
                Outcome::Completed,
                active_site,
                format!("execution {execution_id} cancelled"),
            ));
        }
        if rec.record.state.is_terminal() {
            return refuse(format!("execution {execution_id} already ended ({:?}): nothing to cancel", rec.record.state));
        }
        let promoted = rec.record.done(Step::Promote)
            || docs.active.valid().and_then(|a| a.execution_id.as_deref()) == Some(execution_id)
            || self.own_promotion_in_history(execution_id).await.map_err(not_started)?.is_some();
        if promoted {
            return refuse(format!(
                "execution {execution_id} promoted already: re-run it to finish its steps, then fail back if needed"
            ));
        }
        // Take the lock so that no attempt of this execution runs meanwhile: a stopped, expired or waiting lock
        // of this execution is taken over; a live attempt is not.
        let now = self.now();
        let ours = self.running_lock(execution_id, &attempt_id, now);
        let held = match lock::acquire(&self.bucket, &self.settings.lock_key, &ours, true, now).await.map_err(not_started)? {
            Acquired::Yes { etag, doc, store, .. } => Some(Held { doc, etag, store }),
            Acquired::Held(doc) if doc.execution_id == execution_id => {
                let message =
                    format!("execution {execution_id} is in flight (a live attempt holds the lock): wait, or `unlock` it first");
                let answer = ExecutionResult::answer(Outcome::InProgress, execution_id, active_site, message);
                return Ok(ExecutionResult { in_flight: Some(doc), ..answer });
            }
            // Another execution holds the lock: this one holds nothing, so nothing of it runs.
            Acquired::Held(_) => None,
        };
        let record = self.record_cancel(rec, requested_by, reason, held, now).await?;
        Ok(self.result_of(&record, Outcome::Completed, active_site, format!("execution {execution_id} cancelled")))
    }

    /// Records a cancellation (who, why) in the record and its report, pays its `OK` page and releases the lock
    /// `held` (if any).
    async fn record_cancel(
        &self,
        mut rec: Recorder,
        requested_by: &str,
        reason: Option<&str>,
        held: Option<Held>,
        now: OffsetDateTime,
    ) -> EngineResult<ExecutionRecord> {
        let execution_id = rec.record.execution_id.clone();
        let execution_id = execution_id.as_str();
        let not_started = |source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source };
        let why = reason.unwrap_or("no reason given");
        rec.record.note(now, format!("cancelled by {requested_by}: {why}"));
        rec.record.decision.reasons.push(format!("cancelled by {requested_by}: {why}"));
        rec.record.state = ExecutionState::Cancelled;
        rec.record.error = None;
        let text = format!(
            "DR {}: {} {execution_id} cancelled by {requested_by} ({why}) before any promotion. Run `status` to see the active site.",
            self.settings.environment, rec.record.kind
        );
        let page = self.page(&rec.record, "cancelled", PageState::Ok, Severity::Critical, text.clone());
        self.owe_page(&mut rec.record, "cancelled", &page);
        rec.record.report_key = Some(report::report_keys(execution_id).0);
        let report = self.write_report(&rec.record);
        if let Err(source) = self.beside(&mut rec, now, report).await {
            if let Some(h) = &held {
                let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, execution_id, &h.doc.attempt_id).await;
            }
            return Err(not_started(source));
        }
        let chat = self.chat(
            &rec.record,
            "cancelled",
            Severity::Info,
            format!("DR {}: {execution_id} cancelled", self.settings.environment),
            text,
            vec![],
        );
        let (paid, ()) = tokio::join!(self.pay_owed(&mut rec.record), self.chat_best_effort(execution_id, "cancelled", &chat));
        if let Err(e) = paid {
            tracing::warn!(execution_id, error = %e, "the cancellation page is owed");
        }
        if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
            tracing::warn!(execution_id, error = %e, "could not record the cancellation page; it is paid again");
        }
        if let Some(h) = &held
            && let Err(source) =
                lock::release_attempt(&self.bucket, &self.settings.lock_key, execution_id, &h.doc.attempt_id).await
        {
            // Cancelled, but its lock would block every other execution until its lease expires: say so, and let
            // the retried `cancel` release it.
            return Err(EngineError::Stopped {
                execution_id: execution_id.to_owned(),
                step: Step::Release,
                source,
                hint: "the execution is cancelled but its lock is still held: run `cancel` again to release it".into(),
            });
        }
        tracing::warn!(execution_id, requested_by, "execution cancelled");
        Ok(rec.record)
    }
}
