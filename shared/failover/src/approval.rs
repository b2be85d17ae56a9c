//! Approval mode and the pages that cross an incident's end: an approval prepared (snapshot, plan, page, the
//! window's lock) or withdrawn by the alarm's `OK`, and the `OK` sent again after an `ALARM` that may have
//! reached the pager after it (paid without the lock, or crossing a recovery).
use crate::record;
use crate::record::{ExecutionRecord, OwedMessage, Reconciled, Recorder, Step};
use crate::response::Outcome;
use crate::{Attempt, Engine, EngineError, EngineResult, ExecutionResult, Held, messages};
use domain::notification::{PageState, Severity};
use domain::primitives::rfc3339;
use domain::site::ActiveConfig;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::{Channel, Clock, ControlBucket, Notifier, ParameterStore};
use serde_json::Value;

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
        // The snapshot step's own halves (collect, then write and record), around the plan and its owed page.
        let files = self.collect_snapshot(&mut rec.record, &attempt).await;
        let reason = self.plan_approval(&mut rec.record, &attempt)?;
        // The record (holding the page as owed) and the snapshot first; then the page, which never blocks them and
        // never goes out without a record to resolve it.
        let snapshot = async {
            match files {
                Ok(f) => self.write_snapshot(&id, f, start).await,
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
        self.snapshot_recorded(&mut rec.record, manifest, start, &attempt.id);
        let published = self.publish_approval(&mut rec, reason).await;
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
        self.open_approval_window(rec, attempt, held, &published).await
    }

    /// The plan an approval shows (the target's promotion document, into `config_after`) and its `ALARM` page,
    /// owed in the record; answers the page's reason, which the chat note repeats.
    fn plan_approval(&self, rec: &mut ExecutionRecord, attempt: &Attempt) -> EngineResult<String> {
        let id = rec.execution_id.clone();
        let target = attempt
            .docs
            .site(rec.target)
            .valid()
            .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "target vanished".into() })?;
        let plan = ActiveConfig::promotion_document(rec.target, target, &id, "<at promotion>");
        rec.config_after = Some(Value::Object(plan));
        let rpo = rec.rpo_estimate.as_ref().map(|r| format!(" RPO: {}.", crate::report::rpo_summary(r)));
        let reason = format!(
            "DR {}: failover toward {} awaits approval ({}).{} Approve with: {}",
            self.settings.environment,
            rec.target,
            rec.decision.reasons.join("; "),
            rpo.unwrap_or_default(),
            self.approve_command(&id)
        );
        let page = self.page(rec, "awaiting_approval", PageState::Alarm, Severity::Critical, reason.clone());
        self.owe_page(rec, "awaiting_approval", &page);
        Ok(reason)
    }

    /// Publishes the approval's owed page and its chat note side by side; answers the message ids of the pages
    /// this attempt published (another attempt may have sent the same event before).
    async fn publish_approval(&self, rec: &mut Recorder, reason: String) -> Vec<String> {
        let id = rec.record.execution_id.clone();
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
        if let Err(e) = paid {
            tracing::warn!(execution_id = %id, error = %e, "the approval page is owed");
        }
        rec.record.messages[before..]
            .iter()
            .filter(|m| m.channel == Channel::Paging && !m.ok)
            .map(|m| m.message_id.clone().unwrap_or_default())
            .collect()
    }

    /// Only now, with the record and its page in place, the lock takes the approval window's long lease. The
    /// window is counted on the store's clock, the one the approval's takeover is judged by.
    async fn open_approval_window(
        &self,
        rec: Recorder,
        attempt: Attempt,
        held: Held,
        published: &[String],
    ) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
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
            return Ok(self.withdraw_approval(stored, &attempt, &held, published).await);
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
}
