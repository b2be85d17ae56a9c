//! How an execution ends other than by completing: stopped (resumable), failed, superseded. Operators' ends
//! (`cancel`, `unlock`) are in `entry`.
use crate::record;
use crate::record::{ExecutionState, Recorder, Step, StepOutcome};
use crate::report;
use crate::response::Outcome;
use crate::{Engine, EngineError, EngineResult, ExecutionResult, Held};
use domain::notification::{PageState, Severity};
use dr_ports::documents::DrDocuments;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::{LockDoc, LockState};
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};
use time::OffsetDateTime;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Records a failure at `step` that a retry may fix, marks the lock stopped (so the next attempt of this
    /// execution resumes at once), pages, and returns the error.
    pub(super) async fn stop(&self, mut rec: Recorder, held: Option<Held>, step: Step, source: StoreError) -> EngineError {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        tracing::error!(execution_id = %id, step = step.as_str(), error = %source, "execution stopped");
        rec.record.error = Some(format!("{}: {source}", step.as_str()));
        rec.record.steps.push(self.step(step, StepOutcome::Failed, now, now, "", Some(source.to_string())));
        rec.record.note(now, format!("stopped at {}: {source}", step.as_str()));
        let hint = rec.record.resume_hint();
        let reason = format!(
            "DR {}: {} {id} stopped at step {}: {source}. {hint}",
            self.settings.environment,
            rec.record.kind,
            step.as_str()
        );
        // The record first, with the stall's page owed: a page goes out only when a record exists to resolve it
        // later (a conflict means another attempt moved the record on: it pages what it must).
        // Resolved, or being resolved (its OK owed): a stall then re-opens nothing.
        let resolved = rec.record.resolved() || rec.record.owed.iter().any(|o| o.resolves());
        if !resolved {
            let page = self.page(
                &rec.record,
                &format!("stalled_{}", step.as_str()),
                PageState::Alarm,
                Severity::Critical,
                reason.clone(),
            );
            self.owe_page(&mut rec.record, &format!("stalled_{}", step.as_str()), &page);
        }
        // `save_now` adopts a write of ours whose answer was lost (it checks the stored writer). Any other conflict
        // is another writer's: one without the lock (a recovery, a joined alarm, `check`) while this attempt still
        // holds it has its pages merged in; a record it ended is left as it is (never written out of its end).
        let mut saved = rec.save_now(&self.bucket, now).await;
        if matches!(saved, Err(StoreError::Conflict { .. })) && self.still_holds(held.as_ref()).await {
            saved = match rec.save_or_reconcile(&self.bucket, now).await {
                Ok(record::Reconciled::Saved) => Ok(()),
                Ok(record::Reconciled::Ended(stored)) => {
                    tracing::warn!(execution_id = %id, state = ?stored.record.state, "the record ended meanwhile; this stop is not recorded nor paged");
                    if let Some(h) = &held {
                        let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &h.doc.attempt_id).await;
                    }
                    return EngineError::Stopped { execution_id: id, step, source, hint };
                }
                Err(e) => Err(e),
            };
        }
        self.page_stall(&mut rec, &saved, resolved, step, reason).await;
        if let Some(held) = held {
            let stopped = LockDoc { state: LockState::Stopped, ..held.doc };
            if let Err(e) = lock::update(&self.bucket, &self.settings.lock_key, &stopped, &held.etag).await {
                tracing::warn!(execution_id = %id, error = %e, "could not mark the lock stopped; it frees itself when its lease expires");
            }
        }
        EngineError::Stopped { execution_id: id, step, source, hint }
    }

    /// Pages the stall a stop recorded (`saved`: how its record write went), or only tells chat when the
    /// execution's `OK` went out already.
    async fn page_stall(&self, rec: &mut Recorder, saved: &Result<(), StoreError>, resolved: bool, step: Step, reason: String) {
        let id = rec.record.execution_id.clone();
        match saved {
            Err(StoreError::Conflict { .. }) => {
                tracing::warn!(execution_id = %id, "another attempt moved the record on; this stop is not recorded nor paged");
            }
            Err(e) if self.stall_pageable(rec, &id).await => {
                // The record exists (an earlier write landed, maybe one whose answer was lost), so whoever ends the
                // execution resolves the page: on-call hears of the stall although this write failed (S3 may be
                // what fails). The page stays owed in the next write.
                tracing::warn!(execution_id = %id, error = %e, "could not record the stop");
                if let Err(e) = self.pay_owed(&mut rec.record).await {
                    tracing::warn!(execution_id = %id, error = %e, "the stall's page is owed");
                }
            }
            Err(e) => {
                // No record exists: a page now could never be resolved (a later delivery may decide otherwise and
                // never page). The error goes back to the trigger's source, which delivers it again; the stack's
                // own alarms page when deliveries fail for good; a human sees the error.
                tracing::warn!(execution_id = %id, error = %e, "could not record the stop; no record, so no page");
            }
            Ok(()) if resolved => {
                // Its OK went out already (the promotion is verified and announced): a stall in what remains (the
                // report, the release) is no incident to re-open; chat says it and the next delivery finishes.
                let chat = self.chat(
                    &rec.record,
                    &format!("stalled_{}", step.as_str()),
                    Severity::Warning,
                    format!("DR {}: {id} stalled", self.settings.environment),
                    reason,
                    vec![],
                );
                self.chat_best_effort(&id, "stalled", &chat).await;
            }
            Ok(()) => {
                if let Err(e) = self.pay_owed(&mut rec.record).await {
                    tracing::warn!(execution_id = %id, error = %e, "the stall's page is owed");
                }
                if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
                    tracing::warn!(execution_id = %id, error = %e, "could not record the stall's page; it is paid again");
                }
            }
        }
    }

    /// Whether a stall whose record could not be written may still be paged: a record exists to resolve it later
    /// and has not ended (a record another writer ended, e.g. the alarm's `OK` before this `ALARM` was handled,
    /// would never resolve it). When the record cannot be read, one of ours that landed is taken to exist.
    async fn stall_pageable(&self, rec: &Recorder, id: &str) -> bool {
        match record::read(&self.bucket, id).await {
            Ok(Some(stored)) => !stored.record.state.is_terminal(),
            Ok(None) => false,
            Err(_) => rec.etag().is_some() && !rec.stored_terminal(),
        }
    }

    /// Whether this attempt still holds the lock it took (`held`), as the lock object says now.
    pub(super) async fn still_holds(&self, held: Option<&Held>) -> bool {
        let Some(h) = held else { return false };
        matches!(lock::read(&self.bucket, &self.settings.lock_key).await, Ok(Some((now, _))) if now.attempt_id == h.doc.attempt_id)
    }

    /// Stands an execution down under the lock: it writes nothing more. The record ends `superseded` with its
    /// page owed (an `OK` under the execution's own AlarmName, so whatever it opened resolves, with the severity
    /// of its ALARM pages), the report is written, then the page goes out and the lock is released. A page that
    /// cannot go out stays owed in the record: the next delivery, or `check`, pays it.
    pub(super) async fn supersede(
        &self,
        mut rec: Recorder,
        held: Held,
        docs: &DrDocuments,
        why: String,
        start: OffsetDateTime,
    ) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        tracing::warn!(execution_id = %id, why = %why, "execution superseded under the lock");
        let text = format!(
            "DR {}: {} {id} stood down without writing anything: {why}. Run `status` to see the active site.",
            self.settings.environment, rec.record.kind
        );
        let page = self.page(&rec.record, "superseded", PageState::Ok, Severity::Critical, text.clone());
        let chat = self.chat(
            &rec.record,
            "superseded",
            Severity::Info,
            format!("DR {}: {id} stood down", self.settings.environment),
            text,
            vec!["Run `status` to see which site is active.".into()],
        );
        self.owe_page(&mut rec.record, "superseded", &page);
        let end = self.now();
        rec.record.steps.push(self.step(Step::Fence, StepOutcome::Done, start, end, "", Some(format!("superseded: {why}"))));
        rec.record.decision.reasons.push(format!("under the lock: {why}"));
        rec.record.state = ExecutionState::Superseded;
        rec.record.error = None;
        rec.record.report_key = Some(report::report_keys(&id).0);
        // The report before the record's end: a record that says `superseded` is never written back to running
        // (a terminal state is final), so its report must exist by then. A failure leaves the record running:
        // the next attempt fences again and ends it.
        let saved = match self.write_report(&rec.record).await {
            Ok(()) => rec.save_now(&self.bucket, end).await,
            Err(e) => Err(e),
        };
        if let Err(source) = saved {
            rec.record.state = ExecutionState::Running;
            return Err(self.stop(rec, Some(held), Step::Report, source).await);
        }
        let (paid, ()) = tokio::join!(self.pay_owed(&mut rec.record), self.chat_best_effort(&id, "superseded", &chat));
        if let Err(e) = paid {
            tracing::warn!(execution_id = %id, error = %e, "the stand-down page is owed");
        }
        if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the stand-down page; it is paid again");
        }
        if let Err(e) = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await {
            tracing::warn!(execution_id = %id, error = %e, "could not release the lock; it frees itself when its lease expires");
        }
        Ok(self.result_of(
            &rec.record,
            Outcome::Superseded,
            docs.active.valid().map(|a| a.site),
            format!("execution {id} stood down: {why}"),
        ))
    }

    /// Ends an execution for good (a human must look): records, pages, writes the report, releases the lock.
    /// `held` is the lock this attempt owns; it is released (if this attempt still holds it) at the end.
    pub(super) async fn fail(&self, mut rec: Recorder, held: Held, step: Step, problem: String) -> EngineError {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        tracing::error!(execution_id = %id, step = step.as_str(), problem = %problem, "execution failed");
        rec.record.state = ExecutionState::Failed;
        rec.record.error = Some(problem.clone());
        rec.record.steps.push(self.step(step, StepOutcome::Failed, now, now, "", Some(problem.clone())));
        let reason = format!(
            "DR {}: {} {id} FAILED at {}: {problem}. Run `status` and act by hand.",
            self.settings.environment,
            rec.record.kind,
            step.as_str()
        );
        let page = self.page(&rec.record, "failed", PageState::Alarm, Severity::Critical, reason);
        self.owe_page(&mut rec.record, "failed", &page);
        rec.record.report_key = Some(report::report_keys(&id).0);
        if let Err(e) = self.write_report(&rec.record).await {
            tracing::warn!(execution_id = %id, error = %e, "could not write the report of the failure");
        }
        // The record (with its page owed) first, then the page: the next delivery or `check` pays it if SNS fails.
        match rec.save_now(&self.bucket, now).await {
            Ok(()) => {
                if let Err(e) = self.pay_owed(&mut rec.record).await {
                    tracing::warn!(execution_id = %id, error = %e, "the failure's page is owed");
                }
                if let Err(e) = rec.save_now(&self.bucket, self.now()).await {
                    tracing::warn!(execution_id = %id, error = %e, "could not record the failure's page; it is paid again");
                }
            }
            Err(e) => tracing::warn!(execution_id = %id, error = %e, "could not record the failure"),
        }
        let _ = lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &held.doc.attempt_id).await;
        EngineError::VerificationFailed { execution_id: id, problem }
    }
}
