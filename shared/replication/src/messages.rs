//! The messages of a decision: the page (CloudWatch-alarm-shaped, for the PagerDuty / Opsgenie integrations)
//! and the chat note (AWS Chatbot), rendered from the incident when the page is decided and kept in its outbox
//! until published, so that what goes out is what was decided, even when a later writer pays it.

use super::{Ctx, alarm_name, incident_attribute, incident_key};
use crate::rules::classify::Severity;
use crate::rules::incident::{Incident, OwedMessages, PageDecision};
use crate::rules::outbox::{OwedPage, StoredMessage};
use domain::notification::{self, ChatNote, Envelope, Page, PageState};
use domain::primitives::rfc3339;
use dr_ports::error::StoreError;
use dr_ports::{Channel, Notifier, OutgoingMessage};
use futures_util::future::join;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Renders the page of `decision` and records it as owed in `incident` (nothing for [`PageDecision::None`]).
/// `manifest_keys` are the batch's manifests of the incident's bucket (named in the page).
pub(super) fn owe<B, N>(ctx: &Ctx<'_, B, N>, incident: &mut Incident, decision: &PageDecision, manifest_keys: &[String]) {
    let Some((page, chat)) = messages_for(ctx.environment, ctx.region, incident, decision, manifest_keys, ctx.now) else {
        return;
    };
    let rendered = OwedMessages { page: StoredMessage::from(&page), chat: Some(StoredMessage::from(&chat)) };
    if let Some(dropped) = incident.owe(decision, rendered, ctx.now) {
        tracing::error!(
            incident = %incident.id, dropped = %dropped.id, kind = ?dropped.kind,
            "too many pages owed (the paging topic keeps failing): the oldest is dropped"
        );
    }
}

/// Publishes an owed page and its chat note side by side. The page must go out; a chat failure is only logged.
pub(super) async fn publish<N: Notifier>(notifier: &N, incident_id: &str, owed: &OwedPage) -> Result<(), StoreError> {
    let page = OutgoingMessage::from(&owed.page);
    let chat = owed.chat.as_ref().map(OutgoingMessage::from);
    let chat_sent = async {
        match &chat {
            Some(c) => notifier.publish(Channel::Chat, c).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let (paged, chatted) = join(notifier.publish(Channel::Paging, &page), chat_sent).await;
    if let Err(e) = chatted {
        tracing::warn!(incident = %incident_id, page = %owed.id, error = %e, "chat note could not be published");
    }
    paged.map(|_| ())
}

fn severity(s: Severity) -> notification::Severity {
    match s {
        Severity::Info => notification::Severity::Info,
        Severity::Warning => notification::Severity::Warning,
        Severity::Critical => notification::Severity::Critical,
    }
}

/// The paging message and the chat note for a decision (`None` for [`PageDecision::None`]).
fn messages_for(
    environment: &str,
    region: &str,
    inc: &Incident,
    decision: &PageDecision,
    manifest_keys: &[String],
    now: OffsetDateTime,
) -> Option<(OutgoingMessage, OutgoingMessage)> {
    let (state, event, verb) = match decision {
        PageDecision::None => return None,
        PageDecision::Opened => (PageState::Alarm, "opened", "Replication incident opened"),
        PageDecision::Escalated { .. } => (PageState::Alarm, "escalated", "Replication incident escalated"),
        PageDecision::Recovered => (PageState::Ok, "recovered", "Replication incident recovered"),
    };
    let envelope = Envelope {
        event_type: format!("replication.incident_{event}"),
        // The OK page keeps the incident's severity, so that a subscription filter routing `critical` to
        // PagerDuty also routes the OK that resolves it.
        severity: severity(inc.highest_severity),
        environment: environment.to_owned(),
        incident_key: incident_attribute(environment, &inc.id),
    };
    let words = Words::of(inc);
    let document = incident_key(&inc.id);
    let page = notification::paging_message(&Page {
        envelope: envelope.clone(),
        alarm_name: alarm_name(environment, &inc.id),
        state,
        reason: page_reason(inc, decision, &words),
        description: format!(
            "Databricks DR {environment}: S3 replication of {} (rule {}); incident {}, occurrence {}",
            inc.source_bucket, words.rule, inc.id, inc.occurrence
        ),
        time: rfc3339(now),
        region: region.to_owned(),
        details: page_details(inc, decision, &document, manifest_keys),
    });
    let chat = notification::chat_message(&ChatNote {
        envelope,
        title: format!("{verb}: {} rule {} ({})", inc.source_bucket, words.rule, inc.highest_severity.as_str()),
        description: chat_description(inc, decision, &words, &document, manifest_keys),
        next_steps: next_steps(inc, decision),
    });
    Some((page, chat))
}

const REDRIVE: &str = "Re-drive the failed objects with S3 Batch Replication using the CSV manifests under \
                       replication/manifests/ in the DR control bucket (docs/replication.md).";
const NO_FAILOVER: &str = "Replication failures never trigger a failover: the replica is behind, and failing over \
                           now would lose the objects that did not replicate (RPO risk).";

/// The phrases an incident's page and chat note share.
struct Words {
    /// The rule id, or "(no rule id)".
    rule: String,
    /// One sentence: how many objects failed from where to where, or that replication is behind.
    headline: String,
}

impl Words {
    fn of(inc: &Incident) -> Words {
        let rule = if inc.rule_id.is_empty() { "(no rule id)".to_owned() } else { inc.rule_id.clone() };
        let destinations = if inc.destination_buckets.is_empty() {
            "its destination".to_owned()
        } else {
            inc.destination_buckets.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        let headline = if inc.total_failed > 0 {
            format!("{} objects failed to replicate from {} (rule {rule}) to {destinations}", inc.total_failed, inc.source_bucket)
        } else {
            format!("replication from {} (rule {rule}) to {destinations} is behind or no longer tracked", inc.source_bucket)
        };
        Words { rule, headline }
    }
}

/// The page's reason: what happened, the four most severe actions, how to re-drive, and why no failover.
fn page_reason(inc: &Incident, decision: &PageDecision, words: &Words) -> String {
    let actions = inc.actions();
    let action_lines: Vec<String> = actions
        .iter()
        .filter(|a| a.severity >= Severity::Warning)
        .chain(actions.iter().filter(|a| a.severity < Severity::Warning))
        .take(4)
        .map(|a| format!("{} x{} ({}, {}): {}", a.cause, a.count, a.category.as_str(), a.severity.as_str(), a.action))
        .collect();
    let headline = &words.headline;
    match decision {
        PageDecision::Recovered => format!(
            "Recovered: no warning or critical replication event for the quiet period and no lag outstanding. {} \
             objects failed during the incident ({} need action); check that their re-drive completed.",
            inc.total_failed,
            inc.actionable_failed()
        ),
        PageDecision::Escalated { why } => {
            format!("Escalated: {why}. {headline}. {}. {REDRIVE} {NO_FAILOVER}", action_lines.join(". Also: "))
        }
        _ => format!("{headline}. {}. {REDRIVE} {NO_FAILOVER}", action_lines.join(". Also: ")),
    }
}

/// The page's custom details: the incident's counts, where its document and manifests are.
fn page_details(inc: &Incident, decision: &PageDecision, document: &str, manifest_keys: &[String]) -> BTreeMap<String, Value> {
    let mut details = BTreeMap::from([
        ("IncidentId".to_owned(), json!(inc.id)),
        ("Occurrence".to_owned(), json!(inc.occurrence)),
        ("SourceBucket".to_owned(), json!(inc.source_bucket)),
        ("RuleId".to_owned(), json!(inc.rule_id)),
        ("DestinationBuckets".to_owned(), json!(inc.destination_buckets)),
        ("HighestCategory".to_owned(), json!(inc.highest_category)),
        ("TotalFailed".to_owned(), json!(inc.total_failed)),
        ("ActionableFailed".to_owned(), json!(inc.actionable_failed())),
        ("TotalEvents".to_owned(), json!(inc.total_events)),
        ("CountsByReason".to_owned(), json!(inc.counts_by_reason)),
        ("CountsByEventType".to_owned(), json!(inc.counts_by_event_type)),
        ("FirstSeen".to_owned(), json!(inc.first_seen.map(rfc3339))),
        ("LastSeen".to_owned(), json!(inc.last_seen.map(rfc3339))),
        ("SampleKeys".to_owned(), json!(inc.sample_keys.iter().take(5).collect::<Vec<_>>())),
        ("IncidentDocument".to_owned(), json!(document)),
        ("ManifestKeys".to_owned(), json!(manifest_keys)),
        ("Failover".to_owned(), json!("never triggered by replication failures")),
    ]);
    if let PageDecision::Escalated { why } = decision {
        details.insert("Escalation".to_owned(), json!(why));
    }
    details
}

/// The chat note's body (Markdown): the headline, the counts, where the document and manifests are.
fn chat_description(inc: &Incident, decision: &PageDecision, words: &Words, document: &str, manifest_keys: &[String]) -> String {
    let by_reason: Vec<String> = inc.counts_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let mut description = format!(
        "*{}*\n- failed objects: {} ({} need action), events: {}\n- highest: {} ({})\n",
        words.headline,
        inc.total_failed,
        inc.actionable_failed(),
        inc.total_events,
        inc.highest_category.as_str(),
        inc.highest_severity.as_str()
    );
    if !by_reason.is_empty() {
        description.push_str(&format!("- by reason: {}\n", by_reason.join(", ")));
    }
    if let PageDecision::Escalated { why } = decision {
        description.push_str(&format!("- escalated: {why}\n"));
    }
    description.push_str(&format!("- incident document: `{document}`\n"));
    if !manifest_keys.is_empty() {
        description.push_str(&format!("- re-drive manifests of this batch: `{}`\n", manifest_keys.join("`, `")));
    }
    description.push_str(NO_FAILOVER);
    description
}

/// The chat note's next steps: the three most severe actions and the re-drive, or (recovered) the check that
/// the re-drive completed.
fn next_steps(inc: &Incident, decision: &PageDecision) -> Vec<String> {
    if *decision == PageDecision::Recovered {
        return vec!["Check that the re-drive (S3 Batch Replication) of the failed objects completed.".to_owned()];
    }
    let mut steps: Vec<String> = inc
        .actions()
        .iter()
        .filter(|a| a.severity >= Severity::Warning)
        .take(3)
        .map(|a| format!("{}: {}", a.cause, a.action))
        .collect();
    if inc.total_failed > 0 {
        steps.push(REDRIVE.to_owned());
    }
    steps
}
