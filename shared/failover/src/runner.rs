//! The step runner: an execution's steps under the lock, in order, each one function that ends with a
//! [`StepEnd`]; the runner alone turns an end into a stop (resumable), a failure (a human must look) or a
//! stand-down, so no step repeats "start, save beside the action, stop on error".
use crate::record::{ExecutionState, Recorder, Step};
use crate::response::Outcome;
use crate::{Attempt, Engine, EngineResult, ExecutionResult, Held, messages};
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::{Clock, ControlBucket, Notifier, ParameterStore};

/// The steps run under the lock, in order. A step already done by an earlier attempt is skipped, except the
/// fence (always decided again) and the promotion (which finds its live version).
const STEPS: [Step; 8] =
    [Step::Fence, Step::Snapshot, Step::Promote, Step::Verify, Step::Activate, Step::Notify, Step::Report, Step::Release];

/// One attempt of an execution under the lock, as its steps see it.
pub(super) struct Run {
    /// The record, and the ETag every write compares with.
    pub(super) rec: Recorder,
    /// What the attempt read (the tree is read again by the fence).
    pub(super) attempt: Attempt,
    /// The lock this attempt holds (renewed before the promotion when its lease runs out).
    pub(super) held: Held,
    /// The version of `{prefix}/active` this execution promoted, once known.
    pub(super) version: Option<i64>,
}

/// How a step ended.
pub(super) enum StepEnd {
    /// Done (or found done): on to the next step.
    Next,
    /// A retry may help: recorded, the lock marked stopped, paged; the next delivery resumes at this step.
    Stop(StoreError),
    /// Like [`StepEnd::Stop`], but the lock was taken over: it is left to its new holder.
    LostLock(StoreError),
    /// A human must look: recorded, paged, reported, the lock released.
    Fail(String),
    /// The premise of the decision no longer holds: stand down without writing.
    Supersede(String),
    /// Another attempt ended the execution meanwhile (its stored record): release the lock, answer its result.
    Ended(Box<Recorder>),
}

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    /// Runs the remaining steps of an execution under the lock, then completes it.
    pub(super) async fn drive(&self, rec: Recorder, attempt: Attempt, held: Held) -> EngineResult<ExecutionResult> {
        let mut run = Run { rec, attempt, held, version: None };
        for step in STEPS {
            let skip = !matches!(step, Step::Fence | Step::Promote | Step::Release) && run.rec.record.done(step);
            if skip {
                continue;
            }
            let start = self.now();
            let end = match step {
                Step::Fence => self.fence_step(&mut run).await,
                Step::Snapshot => self.snapshot_step(&mut run).await,
                Step::Promote => self.promote_step(&mut run).await,
                Step::Verify => self.verify_step(&mut run).await,
                Step::Activate => self.activate_step(&mut run).await,
                Step::Notify => self.notify_step(&mut run).await,
                Step::Report => self.report_step(&mut run).await,
                Step::Decide | Step::Lock | Step::Release => self.release_step(&mut run).await,
            };
            match end {
                StepEnd::Next => {}
                StepEnd::Stop(source) => return Err(self.stop(run.rec, Some(run.held), step, source).await),
                StepEnd::LostLock(source) => return Err(self.stop(run.rec, None, step, source).await),
                StepEnd::Fail(problem) => return Err(self.fail(run.rec, run.held, step, problem).await),
                StepEnd::Ended(stored) => {
                    let id = stored.record.execution_id.clone();
                    if let Err(e) =
                        lock::release_attempt(&self.bucket, &self.settings.lock_key, &id, &run.held.doc.attempt_id).await
                    {
                        tracing::warn!(execution_id = %id, error = %e, "could not release the lock; it frees itself when its lease expires");
                    }
                    let state = stored.record.state;
                    let outcome =
                        if state == ExecutionState::Completed { Outcome::AlreadyCompleted } else { messages::outcome_of(state) };
                    let active = run.attempt.docs.active.valid().map(|a| a.site);
                    let msg = format!("execution {id} already ended ({state:?}) by another attempt");
                    return Ok(self.result_of(&stored.record, outcome, active, msg));
                }
                StepEnd::Supersede(why) => {
                    let docs = run.attempt.docs.clone();
                    return self.supersede(run.rec, run.held, &docs, why, start).await;
                }
            }
        }
        self.complete(run).await
    }

    /// Every step done: the record says `completed` only now (until then it stays resumable).
    async fn complete(&self, mut run: Run) -> EngineResult<ExecutionResult> {
        let rec = &mut run.rec;
        let target = rec.record.target;
        let version = run.version.or(rec.record.promoted_version).unwrap_or_default();
        let (state_before, error_before) = (rec.record.state, rec.record.error.take());
        rec.record.state = ExecutionState::Completed;
        if let Err(source) = rec.save_now(&self.bucket, self.now()).await {
            // Promoted, verified and released, but the record does not say so yet: report it as a stop so the
            // trigger is delivered again and the record is finished (never left behind as "running"). The stop
            // is recorded in the state the record had: a record that says `completed` is never written with an
            // error (the redelivery would answer "completed" and leave the error there for `status`).
            rec.record.state = state_before;
            rec.record.error = error_before;
            return Err(self.stop(run.rec, None, Step::Release, source).await);
        }
        let owed = rec.record.owed.len();
        let mut message = format!("{} to {target} completed and verified (version {version})", rec.record.kind);
        if owed > 0 {
            message.push_str(&format!(
                "; {owed} page(s) could not be published and are owed: the next delivery of the trigger, or `check`, sends them"
            ));
        }
        Ok(self.result_of(&rec.record, Outcome::Completed, Some(target), message))
    }
}
