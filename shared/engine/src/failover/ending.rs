//! How an execution ends other than by completing: stopped (resumable), failed, superseded, unlocked.

use super::*;

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
        let hint = match &rec.record.initiator {
            Initiator::Human { .. } => {
                format!("Resume by re-running the same command with \"client_token\" set so the execution id is {id}.")
            }
            Initiator::Alarm { .. } => {
                "It resumes when the trigger is delivered again (Lambda and EventBridge retry).".to_owned()
            }
        };
        let reason = format!(
            "DR {}: {} {id} stopped at step {}: {source}. {hint}",
            self.settings.environment,
            rec.record.kind,
            step.as_str()
        );
        self.alarm_page(&mut rec.record, &format!("stalled_{}", step.as_str()), reason).await;
        // Best effort: the record may be the thing that failed. A stale ETag means our view is behind; the
        // next attempt re-reads the record and the world anyway.
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the stop");
        }
        if let Some(held) = held {
            let stopped = LockDoc { state: LockState::Stopped, ..held.doc };
            if let Err(e) = lock::update(&self.bucket, &self.settings.lock_key, &stopped, &held.etag).await {
                tracing::warn!(execution_id = %id, error = %e, "could not mark the lock stopped; it frees itself when its lease expires");
            }
        }
        EngineError::Stopped { execution_id: id, step, source, hint }
    }

    /// Stands an execution down under the lock: it writes nothing more. The page says so (an `OK` under the
    /// execution's own AlarmName, so whatever it opened resolves), then the record ends `superseded`, the report
    /// is written and the lock released. The page goes first: a failure to send it stops the execution
    /// (resumable) instead of leaving a terminal record whose page was never sent.
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
        let severity = if self.settings.drill { Severity::Info } else { Severity::Critical };
        let page = self.page(&rec.record, "superseded", PageState::Ok, severity, text.clone());
        let chat = self.chat(
            &rec.record,
            "superseded",
            Severity::Info,
            format!("DR {}: {id} stood down", self.settings.environment),
            text,
            vec!["Run `status` to see which site is active.".into()],
        );
        match self.publish_event(&rec.record, "superseded", Some(page), chat).await {
            Ok(sent) => rec.record.messages.extend(sent),
            Err(source) => return Err(self.stop(rec, Some(held), Step::Fence, source).await),
        }
        let end = self.now();
        rec.record.steps.push(self.step(Step::Fence, StepOutcome::Done, start, end, "", Some(format!("superseded: {why}"))));
        rec.record.decision.reasons.push(format!("under the lock: {why}"));
        rec.record.state = ExecutionState::Superseded;
        rec.record.error = None;
        let (json_key, md_key) = report::report_keys(&id);
        rec.record.report_key = Some(json_key.clone());
        let rpo = rec.record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
        let written = tokio::try_join!(
            self.bucket.put(
                &json_key,
                serde_json::to_vec_pretty(&report::json_report(&rec.record, &rpo)).unwrap_or_default(),
                "application/json",
                WriteCondition::Overwrite
            ),
            self.bucket.put(
                &md_key,
                report::markdown_report(&rec.record, &rpo).into_bytes(),
                "text/markdown",
                WriteCondition::Overwrite
            ),
        );
        if let Err(source) = written {
            return Err(self.stop(rec, Some(held), Step::Report, source).await);
        }
        if let Err(source) = rec.save_now(&self.bucket, end).await {
            return Err(self.stop(rec, Some(held), Step::Fence, source).await);
        }
        if let Err(e) = lock::release(&self.bucket, &self.settings.lock_key, &id).await {
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
    /// `_held` is the lock this attempt owns; it is released (by execution id) at the end.
    pub(super) async fn fail(&self, mut rec: Recorder, _held: Held, step: Step, problem: String) -> EngineError {
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
        self.alarm_page(&mut rec.record, "failed", reason).await;
        let (json_key, md_key) = report::report_keys(&id);
        rec.record.report_key = Some(json_key.clone());
        let rpo = rec.record.rpo_estimate.clone().unwrap_or_else(|| rpo_estimate(&[]));
        let _ = self
            .bucket
            .put(
                &json_key,
                serde_json::to_vec_pretty(&report::json_report(&rec.record, &rpo)).unwrap_or_default(),
                "application/json",
                WriteCondition::Overwrite,
            )
            .await;
        let _ = self
            .bucket
            .put(&md_key, report::markdown_report(&rec.record, &rpo).into_bytes(), "text/markdown", WriteCondition::Overwrite)
            .await;
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the failure");
        }
        let _ = lock::release(&self.bucket, &self.settings.lock_key, &id).await;
        EngineError::VerificationFailed { execution_id: id, problem }
    }
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Breaks the lock of a stuck execution on purpose; recorded in the execution's record and in chat.
    ///
    /// The execution itself is not cancelled: a running one resumes on its next delivery, one awaiting
    /// approval can still be approved (it takes the lock again).
    pub async fn unlock(&self, execution_id: &str, requested_by: &str) -> EngineResult<ExecutionResult> {
        let not_started = |source| EngineError::NotStarted { execution_id: execution_id.to_owned(), source };
        let (held, docs) = tokio::try_join!(
            lock::read(&self.bucket, &self.settings.lock_key),
            documents::load(&self.params, &self.settings.prefix)
        )
        .map_err(not_started)?;
        let active_site = docs.active.valid().map(|a| a.site);
        let answer = |outcome, message: String, in_flight| ExecutionResult {
            in_flight,
            ..ExecutionResult::answer(outcome, execution_id, active_site, message)
        };
        let Some((doc, _)) = held else {
            return Ok(answer(Outcome::Noop, "no failover lock is held; nothing to unlock".into(), None));
        };
        if doc.execution_id != execution_id {
            let msg = format!(
                "the lock is held by execution {}, not {execution_id}; expected the id of the holder (see status)",
                doc.execution_id
            );
            return Ok(answer(Outcome::Rejected, msg, Some(doc)));
        }
        lock::release(&self.bucket, &self.settings.lock_key, execution_id).await.map_err(not_started)?;
        let now = self.now();
        let what = format!(
            "lock broken by {requested_by} (was attempt {}, {:?}, lease until {})",
            doc.attempt_id, doc.state, doc.lease_expires_at
        );
        tracing::warn!(execution_id, requested_by, "failover lock broken on purpose");
        if let Ok(Some(mut rec)) = record::read(&self.bucket, execution_id).await {
            rec.record.note(now, what.clone());
            let chat = self.chat(
                &rec.record,
                "unlocked",
                Severity::Warning,
                format!("DR {}: lock of {execution_id} broken", self.settings.environment),
                what.clone(),
                vec![],
            );
            if let Ok(id) = self.notifier.publish(Channel::Chat, &chat).await {
                rec.record.messages.push(SentMessage {
                    channel: Channel::Chat,
                    event_type: format!("{}.unlocked", rec.record.kind),
                    message_id: id,
                });
            }
            if let Err(e) = rec.save_now(&self.bucket, now).await {
                tracing::warn!(execution_id, error = %e, "could not record the unlock in the execution record");
            }
        }
        Ok(answer(Outcome::Completed, what, None))
    }
}
