//! What an execution says: pages (CloudWatch-alarm-shaped, one AlarmName per execution), chat notes, and
//! the decisions that only page (noop, refused, notify-only).

use super::*;

impl<P: ParameterStore, B: ControlBucket, N: Notifier, C: Clock> Engine<P, B, N, C> {
    pub(super) fn approve_command(&self, execution_id: &str) -> String {
        format!(
            "aws lambda invoke --function-name {} --cli-binary-format raw-in-base64-out --payload '{{\"command\":\"approve\",\"execution_id\":\"{execution_id}\",\"requested_by\":\"<you>\"}}' /dev/stdout",
            self.settings.manual_trigger_function
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

    /// Noop, refuse, notify-only: record the decision (create-only: the record is the idempotency key) and page.
    pub(super) async fn record_only(&self, mut rec: Recorder, attempt: Attempt) -> EngineResult<ExecutionResult> {
        let id = rec.record.execution_id.clone();
        let now = self.now();
        match rec.save_now(&self.bucket, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                // A concurrent delivery of the same trigger recorded it first: answer with its result.
                let existing = record::read(&self.bucket, &id)
                    .await
                    .map_err(|source| EngineError::NotStarted { execution_id: id.clone(), source })?
                    .ok_or_else(|| EngineError::Corrupt { execution_id: id.clone(), problem: "record vanished".into() })?;
                // Boxed: answering an existing record can itself record a decision (recursion).
                return Box::pin(self.answer_existing(existing, attempt, None)).await;
            }
            Err(source) => return Err(EngineError::NotStarted { execution_id: id, source }),
        }
        let reasons = rec.record.decision.reasons.join("; ");
        let (event, page, severity, outcome) = match rec.record.state {
            ExecutionState::Refused => ("refused", true, Severity::Critical, Outcome::Rejected),
            ExecutionState::Notified => ("notify_only", true, Severity::Critical, Outcome::Noop),
            _ => ("noop", false, Severity::Info, Outcome::Noop),
        };
        let title = format!(
            "DR {}: {} toward {} {}",
            self.settings.environment,
            rec.record.kind,
            rec.record.target,
            event.replace('_', "-")
        );
        let page_msg = page.then(|| {
            self.page(
                &rec.record,
                event,
                PageState::Alarm,
                severity,
                format!("{title}. {reasons}. A human must decide: run `status`, then `failover` if needed."),
            )
        });
        let chat =
            self.chat(&rec.record, event, severity, title, reasons.clone(), vec!["Run `status` to see both sites.".into()]);
        let announced = self.publish_event(&rec.record, event, page_msg, chat).await;
        let announced = match announced {
            Ok(sent) => {
                rec.record.messages.extend(sent);
                Ok(())
            }
            Err(e) => {
                rec.record.note(self.now(), format!("could not send the {event} messages: {e}"));
                Err(e)
            }
        };
        let now = self.now();
        if let Err(e) = rec.save_now(&self.bucket, now).await {
            tracing::warn!(execution_id = %id, error = %e, "could not record the messages of a recorded decision");
        }
        announced.map_err(|source| EngineError::Stopped {
            execution_id: id.clone(),
            step: Step::Notify,
            source,
            hint: "the decision is recorded; the page was not sent".into(),
        })?;
        let active = attempt.docs.active.valid().map(|a| a.site);
        Ok(self.result_of(&rec.record, outcome, active, reasons))
    }

    /// Publishes the page (unless the record shows it sent already) and the chat note of an event side by side,
    /// and returns what was sent, for the record.
    pub(super) async fn publish_event(
        &self,
        rec: &ExecutionRecord,
        event: &str,
        page: Option<OutgoingMessage>,
        chat: OutgoingMessage,
    ) -> Result<Vec<SentMessage>, StoreError> {
        let event_type = format!("{}.{event}", rec.kind);
        let page_fut = async {
            match page {
                Some(p) if !rec.sent(Channel::Paging, &event_type) => self.notifier.publish(Channel::Paging, &p).await.map(Some),
                _ => Ok(None),
            }
        };
        let (paged, chatted) = tokio::try_join!(page_fut, self.notifier.publish(Channel::Chat, &chat))?;
        let mut out = Vec::new();
        if let Some(id) = paged {
            out.push(SentMessage { channel: Channel::Paging, event_type: event_type.clone(), message_id: id });
        }
        out.push(SentMessage { channel: Channel::Chat, event_type, message_id: chatted });
        Ok(out)
    }

    pub(super) fn step_summary(&self, rec: &ExecutionRecord) -> String {
        rec.steps
            .iter()
            .map(|s| format!("{} {:?} {} ms", s.step.as_str(), s.outcome, s.duration_ms))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Best effort: a critical `ALARM` page for `event`, recorded when it went out (the failure being
    /// reported may be SNS itself).
    pub(super) async fn alarm_page(&self, rec: &mut ExecutionRecord, event: &str, reason: String) {
        let page = self.page(rec, event, PageState::Alarm, Severity::Critical, reason);
        if let Ok(pid) = self.notifier.publish(Channel::Paging, &page).await {
            rec.messages.push(SentMessage {
                channel: Channel::Paging,
                event_type: format!("{}.{event}", rec.kind),
                message_id: pid,
            });
        }
    }
}
