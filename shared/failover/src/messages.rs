//! What an execution says: pages (CloudWatch-alarm-shaped, one AlarmName per execution), chat notes, and
//! the decisions that only page (noop, refused, notify-only).
use crate::record;
use crate::record::{ExecutionRecord, ExecutionState, Recorder, Step};
use crate::response::Outcome;
use crate::rules::decision::Initiator;
use crate::{Attempt, Engine, EngineError, EngineResult, ExecutionResult};
use domain::notification;
use domain::notification::{ChatNote, Envelope, Page, PageState, Severity};
use domain::primitives::rfc3339;
use dr_ports::documents;
use dr_ports::error::StoreError;
use dr_ports::lock;
use dr_ports::lock::LockDoc;
use dr_ports::{Channel, Clock, ControlBucket, Notifier, OutgoingMessage, ParameterStore};
use serde_json::json;
use std::collections::BTreeMap;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    pub(super) fn approve_command(&self, execution_id: &str) -> String {
        let function = &self.settings.manual_trigger_function;
        format!(
            "dr approve {execution_id} --function {function} (or, without dr: aws lambda invoke --function-name {function} --cli-binary-format raw-in-base64-out --payload '{{\"command\":\"approve\",\"execution_id\":\"{execution_id}\",\"requested_by\":\"<you>\"}}' /dev/stdout)"
        )
    }

    pub(super) fn envelope(&self, rec: &ExecutionRecord, event: &str, severity: Severity) -> Envelope {
        Envelope {
            event_type: format!("{}.{event}", rec.kind),
            // A drill never wakes anyone: subscription filter policies route `info` away from paging.
            severity: if self.settings.drill { Severity::Info } else { severity },
            environment: self.settings.environment.clone(),
            incident_key: format!("dr-{}-{}", self.settings.environment, rec.execution_id),
        }
    }

    pub(super) fn page(
        &self,
        rec: &ExecutionRecord,
        event: &str,
        state: PageState,
        severity: Severity,
        reason: String,
    ) -> OutgoingMessage {
        let mut details = BTreeMap::from([
            ("ExecutionId".to_owned(), json!(rec.execution_id)),
            ("Target".to_owned(), json!(rec.target)),
            ("Decision".to_owned(), json!(rec.decision.action)),
        ]);
        if rec.state == ExecutionState::AwaitingApproval {
            details.insert("ApproveCommand".into(), json!(self.approve_command(&rec.execution_id)));
        }
        notification::paging_message(&Page {
            envelope: self.envelope(rec, event, severity),
            alarm_name: format!("DR {} {} {}", self.settings.environment, rec.kind, rec.execution_id),
            state,
            reason,
            description: format!(
                "Databricks DR {} of environment {} toward the {} site ({})",
                rec.kind, self.settings.environment, rec.target, rec.reason
            ),
            time: rfc3339(self.now()),
            region: self.settings.region.clone(),
            details,
        })
    }

    pub(super) fn chat(
        &self,
        rec: &ExecutionRecord,
        event: &str,
        severity: Severity,
        title: String,
        description: String,
        next: Vec<String>,
    ) -> OutgoingMessage {
        notification::chat_message(&ChatNote {
            envelope: self.envelope(rec, event, severity),
            title,
            description,
            next_steps: next,
        })
    }

    /// Noop, refuse, notify-only: record the decision with its page owed (create-only: the record is the
    /// idempotency key), then page and settle. A page that cannot go out stays owed in the terminal record and
    /// the answer is a retryable stop: the next delivery of the trigger (or `check`) pays it.
    pub(super) async fn record_only(&self, mut rec: Recorder, attempt: Attempt) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let reasons = rec.record.decision.reasons.join("; ");
        let (event, page, severity) = match rec.record.state {
            ExecutionState::Refused => ("refused", true, Severity::Critical),
            ExecutionState::Notified => ("notify_only", true, Severity::Critical),
            _ => ("noop", false, Severity::Info),
        };
        let title = format!(
            "DR {}: {} toward {} {}",
            self.settings.environment,
            rec.record.kind,
            rec.record.target,
            event.replace('_', "-")
        );
        if page {
            let msg = self.page(
                &rec.record,
                event,
                PageState::Alarm,
                severity,
                match rec.record.state {
                    // A refused human request: no alarm will resolve it; `check` does once the config is usable.
                    ExecutionState::Refused if matches!(rec.record.initiator, Initiator::Human { .. }) => format!(
                        "{title}. {reasons}. Fix the {} site's document; the next `check` resolves this page.",
                        rec.record.target
                    ),
                    _ => format!("{title}. {reasons}. A human must decide: run `status`, then `failover` if needed."),
                },
            );
            self.owe_page(&mut rec.record, event, &msg);
        } else if rec.record.incident_open() {
            // Nothing to do after all (decided again at approval): the incident its approval page opened resolves.
            let msg =
                self.page(&rec.record, event, PageState::Ok, Severity::Critical, format!("{title}: {reasons}. Nothing changed."));
            self.owe_page(&mut rec.record, event, &msg);
        }
        if let Some(existing) = self.create_record(&mut rec).await? {
            // A concurrent delivery of the same trigger recorded it first: answer with its result. Boxed:
            // answering an existing record can itself record a decision (recursion).
            return Box::pin(self.answer_existing(existing, attempt, None)).await;
        }
        let chat =
            self.chat(&rec.record, event, severity, title, reasons.clone(), vec!["Run `status` to see both sites.".into()]);
        // A lock this execution left behind (an earlier attempt that died after taking it, then decided
        // otherwise on redelivery) is released: conditionally, so a live attempt's lock is never touched.
        let orphan = async {
            if let Err(e) = lock::release_abandoned(&self.bucket, &self.settings.lock_key, Some(&id), self.now()).await {
                tracing::warn!(execution_id = %id, error = %e, "could not check for a lock left behind");
            }
        };
        let (paid, (), ()) = tokio::join!(self.pay_owed(&mut rec.record), self.chat_best_effort(&id, event, &chat), orphan);
        let now = self.now();
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the messages of a recorded decision");
        }
        paid.map_err(|source| EngineError::Stopped {
            execution_id: id.clone(),
            step: Step::Notify,
            source,
            hint: "the decision is recorded and its page is owed: the next delivery of the trigger, or `check`, sends it".into(),
        })?;
        let active = attempt.docs.active.valid().map(|a| a.site);
        Ok(self.result_of(&rec.record, outcome_of(rec.record.state), active, reasons))
    }

    /// An alarm that meets another execution's lock: recorded (state `joined`, create-only: redeliveries answer
    /// the same). When the holder waits for approval, the alarm is paged into the holder's incident (its
    /// AlarmName): an alarm that fires, recovers and fires again while a failover waits for approval must reach
    /// on-call, and the holder's end (approval, cancel, recovery) resolves it. When the holder is running, its
    /// own pages cover the incident: the alarm goes to chat only.
    pub(super) async fn join_holder(
        &self,
        mut rec: ExecutionRecord,
        attempt: Attempt,
        holder: LockDoc,
    ) -> EngineResult<ExecutionResult> {
        let id = rec.execution_id.clone();
        let not_started = |source| EngineError::NotStarted { execution_id: id.clone(), source };
        let holder_rec = record::read(&self.bucket, &holder.execution_id).await.map_err(not_started)?;
        let waiting = holder_rec.as_ref().is_some_and(|h| h.record.state == ExecutionState::AwaitingApproval);
        let text = format!(
            "DR {}: {} while execution {} holds the failover lock ({:?}): this alarm joins its incident. {}",
            self.settings.environment,
            rec.reason,
            holder.execution_id,
            holder_rec.as_ref().map(|h| h.record.state),
            if waiting {
                format!("It still awaits approval: {}", self.approve_command(&holder.execution_id))
            } else {
                "Run `status` to follow it.".to_owned()
            }
        );
        rec.state = ExecutionState::Joined;
        rec.note(self.now(), format!("joined execution {}, which held the lock", holder.execution_id));
        rec.decision.reasons.push(format!("execution {} held the failover lock", holder.execution_id));
        // The page goes into the waiting holder's own record (owed, then paid), so that the holder knows its
        // incident is open again and its end (approval, noop, cancel) resolves it. Before this alarm's own record:
        // a redelivery answers from that record, so once it exists the page must be in the holder's (found by the
        // soak: a failed holder write after the joined record was created lost the page for good). Keyed by this
        // execution, so a redelivery or a concurrent delivery owes it once and sends it once.
        let mut paged = Ok(());
        if waiting {
            for _ in 0..3 {
                let Some(mut h) = record::read(&self.bucket, &holder.execution_id).await.map_err(not_started)? else { break };
                if h.record.state != ExecutionState::AwaitingApproval {
                    break;
                }
                let key = format!("{}.alarm_again.{id}", h.record.kind);
                if h.record.messages.iter().any(|m| m.channel == Channel::Paging && m.event_type == key) {
                    break;
                }
                let page = self.page(&h.record, "alarm_again", PageState::Alarm, Severity::Critical, text.clone());
                h.record.owe(Channel::Paging, &key, &page);
                match h.save_now(&self.bucket, self.now()).await {
                    Ok(()) => {
                        // Without the holder's lock: the holder's `OK` (its alarm's recovery, a cancel) may end the
                        // record while this page goes out, so the crossing is checked and resolved again.
                        paged = self.pay_owed_unlocked(&mut h).await;
                        break;
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(source) => return Err(not_started(source)),
                }
            }
        }
        let mut rec = Recorder::new(rec);
        if let Some(existing) = self.create_record(&mut rec).await? {
            // A concurrent delivery of the same trigger recorded it first: answer with its result. Boxed:
            // answering an existing record can itself record a decision (recursion).
            return Box::pin(self.answer_existing(existing, attempt, None)).await;
        }
        let chat = self.chat(
            &rec.record,
            "joined",
            Severity::Warning,
            format!("DR {}: {id} joined {}", self.settings.environment, holder.execution_id),
            text.clone(),
            vec![],
        );
        self.chat_best_effort(&id, "joined", &chat).await;
        paged.map_err(|source| EngineError::Stopped {
            execution_id: id.clone(),
            step: Step::Notify,
            source,
            hint: "the alarm is recorded; its page is owed by the execution it joined: the next check sends it".into(),
        })?;
        let active = attempt.docs.active.valid().map(|a| a.site);
        Ok(ExecutionResult { in_flight: Some(holder), ..self.result_of(&rec.record, Outcome::InProgress, active, text) })
    }

    /// `check`'s sweep of owed pages: the newest `records` execution records that owe pages are paid (a
    /// redelivery pays its own execution's; this pays those no delivery will come for). Returns the event types
    /// paid and those still owed, each as `execution: event`.
    pub async fn pay_owed_pages(&self, records: usize) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let keys: Vec<String> =
            self.bucket.list_recent(domain::layout::EXECUTIONS_PREFIX).await?.into_iter().take(records).map(|(k, _)| k).collect();
        let (mut paid, mut still) = (Vec::new(), Vec::new());
        // The documents tell whether a refused request's cause is gone; without them (SSM failing) the owed pages
        // are still paid, and the refusals wait for the next sweep.
        let docs = match self.read_tree().await {
            Ok(tree) => Some(documents::from_tree(&tree, &self.settings.prefix)),
            Err(e) => {
                tracing::warn!(error = %e, "parameters unreadable: refused requests are resolved by the next check");
                None
            }
        };
        for key in keys {
            let Some(id) = key.strip_prefix(domain::layout::EXECUTIONS_PREFIX).and_then(|k| k.strip_suffix(".json")) else {
                continue;
            };
            let Some(mut rec) = record::read(&self.bucket, id).await? else { continue };
            if let Some(docs) = &docs {
                self.resolve_refusal_if_ready(&mut rec.record, docs);
            }
            // A running execution's pages are its lock holder's to pay (in order); ended or waiting ones are ours.
            let idle = rec.record.state.is_terminal() || rec.record.state == ExecutionState::AwaitingApproval;
            if !idle {
                continue;
            }
            self.follow_unlocked_alarm(&mut rec).await;
            if rec.record.owed.is_empty() {
                continue;
            }
            let before: Vec<String> = rec.record.owed.iter().map(|o| format!("{id}: {}", o.event_type)).collect();
            // A conflict means another writer wrote the record meanwhile: it pays (or paid) the same pages, and an
            // ALARM paid here that crossed its resolution is followed by an OK again.
            let result = self.pay_owed_unlocked(&mut rec).await;
            let after: Vec<String> = rec.record.owed.iter().map(|o| format!("{id}: {}", o.event_type)).collect();
            paid.extend(before.iter().filter(|b| !after.contains(b)).cloned());
            still.extend(after);
            if let Err(e) = result {
                tracing::warn!(execution_id = id, error = %e, "owed pages still cannot be published");
            }
        }
        Ok((paid, still))
    }

    /// A human's failover refused by the readiness gate opened a page that no alarm's `OK` will close: it resolves
    /// when the target's document is usable again (found by `check`'s sweep), so that the refusal's `ALARM` has its
    /// `OK`. The `OK` is owed here and paid with the sweep. So does an alarm's execution refused by the gate when a
    /// human approved it: the refusal's cause is the document, and the alarm's `OK` (which withdraws an approval
    /// still waiting) may never come while the primary stays down.
    fn resolve_refusal_if_ready(&self, rec: &mut ExecutionRecord, docs: &documents::DrDocuments) {
        let human = matches!(rec.initiator, Initiator::Human { .. });
        let gated = rec.decision.reasons.iter().any(|r| r.starts_with("readiness gate:"));
        let gated_at_approval = rec.decision.reasons.iter().any(|r| r.starts_with("at approval: readiness gate:"));
        if !((human && gated) || gated_at_approval) || rec.state != ExecutionState::Refused || !rec.incident_open() {
            return;
        }
        if docs.site(rec.target).problem().is_some() {
            return;
        }
        let msg = self.page(
            rec,
            "refused",
            PageState::Ok,
            Severity::Critical,
            format!(
                "DR {}: the {} site's config is usable again (found by `check`): the refused {} {} can be requested again.",
                self.settings.environment, rec.target, rec.kind, rec.execution_id
            ),
        );
        rec.owe(Channel::Paging, &format!("{}.refusal_resolved", rec.kind), &msg);
    }

    /// Records `page` as owed under `event` (unless a page of that event went out already): it is saved with the
    /// record's next write, before or beside its publish, so that a crash or a failing topic cannot lose it.
    pub(super) fn owe_page(&self, rec: &mut ExecutionRecord, event: &str, page: &OutgoingMessage) {
        let event_type = format!("{}.{event}", rec.kind);
        if !rec.sent(Channel::Paging, &event_type) {
            rec.owe(Channel::Paging, &event_type, page);
        }
    }

    /// Publishes every owed page, in order, moving each to the sent ones; stops at the first failure (the rest
    /// stay owed, in order). Never fails the caller's step: the error only says that something is still owed.
    pub(crate) async fn pay_owed(&self, rec: &mut ExecutionRecord) -> Result<(), StoreError> {
        while let Some(first) = rec.owed.first().cloned() {
            let id = self.notifier.publish(first.channel, &first.message()).await?;
            rec.paid(first.channel, &first.event_type, id);
        }
        Ok(())
    }

    /// Publishes a chat note; chat is an optional, best-effort channel: a failure is logged, never owed, and
    /// never stalls an execution.
    pub(super) async fn chat_best_effort(&self, execution_id: &str, event: &str, chat: &OutgoingMessage) {
        if let Err(e) = self.notifier.publish(Channel::Chat, chat).await {
            tracing::warn!(execution_id, event, error = %e, "chat note not published (best effort)");
        }
    }

    pub(super) fn step_summary(&self, rec: &ExecutionRecord) -> String {
        rec.steps
            .iter()
            .map(|s| format!("{} {:?} {} ms", s.step.as_str(), s.outcome, s.duration_ms))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The answer an execution's state gives, first time or replayed: what happened, as it happened.
pub(super) fn outcome_of(state: ExecutionState) -> Outcome {
    match state {
        ExecutionState::Completed => Outcome::Completed,
        ExecutionState::Refused => Outcome::Rejected,
        ExecutionState::Notified | ExecutionState::Noop | ExecutionState::Cancelled => Outcome::Noop,
        ExecutionState::Superseded => Outcome::Superseded,
        ExecutionState::Joined | ExecutionState::Running => Outcome::InProgress,
        ExecutionState::AwaitingApproval => Outcome::AwaitingApproval,
        // A failed execution answers with its error, not an outcome (see `answer_existing`).
        ExecutionState::Failed => Outcome::Rejected,
    }
}
