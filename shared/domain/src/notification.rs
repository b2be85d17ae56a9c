//! The messages on-call receives, as pure functions (CONTRACT.md, "SNS messages").
//!
//! Paging messages are shaped like a CloudWatch alarm notification so that the PagerDuty and Opsgenie
//! CloudWatch integrations open an incident on `ALARM` and resolve it on `OK`, keyed by `AlarmName`. Because
//! the key is stable per incident, a page sent twice (at-least-once delivery, a resumed execution) lands in
//! the same incident instead of paging a second time.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where a message goes (`paging` or `chat` in records and reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The paging topic (PagerDuty, Opsgenie).
    Paging,
    /// The chat topic (AWS Chatbot); optional.
    Chat,
}

impl Channel {
    /// `paging` or `chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Paging => "paging",
            Channel::Chat => "chat",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// SNS subject (paging only): ASCII, under 100 characters, one line.
    pub subject: Option<String>,
    /// The JSON body.
    pub body: String,
    /// Message attributes (`event_type`, `severity`, `environment`, `incident_key`).
    pub attributes: BTreeMap<String, String>,
}

/// How urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Look soon.
    Warning,
    /// Wake someone up.
    Critical,
}

impl Severity {
    /// `info`, `warning`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// `ALARM` opens an incident, `OK` resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// Open (or re-notify) the incident.
    Alarm,
    /// Resolve it.
    Ok,
}

impl PageState {
    fn as_str(self) -> &'static str {
        match self {
            PageState::Alarm => "ALARM",
            PageState::Ok => "OK",
        }
    }
}

/// What a message is about; becomes the message attributes every subscriber can filter on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// e.g. `failover.started`, `replication.incident_opened`.
    pub event_type: String,
    /// Severity.
    pub severity: Severity,
    /// `DR_ENVIRONMENT`.
    pub environment: String,
    /// Stable per incident or execution.
    pub incident_key: String,
}

impl Envelope {
    fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("event_type".to_owned(), self.event_type.clone()),
            ("severity".to_owned(), self.severity.as_str().to_owned()),
            ("environment".to_owned(), self.environment.clone()),
            ("incident_key".to_owned(), self.incident_key.clone()),
        ])
    }
}

/// A page, before rendering.
#[derive(Debug, Clone)]
pub struct Page {
    /// Attributes.
    pub envelope: Envelope,
    /// `AlarmName`: stable per incident (the incident key of PagerDuty's integration).
    pub alarm_name: String,
    /// ALARM or OK.
    pub state: PageState,
    /// `NewStateReason`: what happened, with the command to run when a human must act.
    pub reason: String,
    /// `AlarmDescription`: what this incident is.
    pub description: String,
    /// `StateChangeTime`, RFC 3339.
    pub time: String,
    /// The AWS region code of the stack.
    pub region: String,
    /// Extra fields for humans and tools (execution id, commands, links).
    pub details: BTreeMap<String, Value>,
}

/// The SNS body limit (256 KB); bodies are kept well under it by truncating free text.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Renders a page as an SNS message: CloudWatch-alarm-shaped JSON, an `ALARM: ...`/`OK: ...` subject.
pub fn paging_message(page: &Page) -> OutgoingMessage {
    let mut body = json!({
        "AlarmName": page.alarm_name,
        "AlarmDescription": page.description,
        "AWSAccountId": Value::Null,
        "NewStateValue": page.state.as_str(),
        "OldStateValue": if page.state == PageState::Alarm { "OK" } else { "ALARM" },
        "NewStateReason": truncate(&page.reason, 16 * 1024),
        "StateChangeTime": page.time,
        "Region": region_display_name(&page.region),
        "Environment": page.envelope.environment,
        "IncidentKey": page.envelope.incident_key,
        "EventType": page.envelope.event_type,
        "Severity": page.envelope.severity.as_str(),
    });
    if let Value::Object(map) = &mut body {
        for (k, v) in &page.details {
            map.insert(k.clone(), v.clone());
        }
    }
    let subject = subject(&format!("{}: \"{}\" in {}", page.state.as_str(), page.alarm_name, region_display_name(&page.region)));
    OutgoingMessage { subject: Some(subject), body: body.to_string(), attributes: page.envelope.attributes() }
}

/// A chat message (AWS Chatbot / Amazon Q Developer custom notification schema).
#[derive(Debug, Clone)]
pub struct ChatNote {
    /// Attributes; `incident_key` is also the thread id.
    pub envelope: Envelope,
    /// Title (one line).
    pub title: String,
    /// Markdown description.
    pub description: String,
    /// Next steps, one per line.
    pub next_steps: Vec<String>,
}

/// Renders a chat note as an SNS message.
pub fn chat_message(note: &ChatNote) -> OutgoingMessage {
    let body = json!({
        "version": "1.0",
        "source": "custom",
        "id": format!("{}-{}", note.envelope.incident_key, note.envelope.event_type),
        "content": {
            "textType": "client-markdown",
            "title": truncate(&note.title, 250),
            "description": truncate(&note.description, 8000),
            "nextSteps": note.next_steps,
        },
        "metadata": {
            "threadId": note.envelope.incident_key,
            "summary": truncate(&note.title, 250),
            "eventType": note.envelope.event_type,
            "relatedResources": [],
            "additionalContext": {
                "environment": note.envelope.environment,
                "severity": note.envelope.severity.as_str(),
            },
        },
    });
    OutgoingMessage { subject: None, body: body.to_string(), attributes: note.envelope.attributes() }
}

/// An SNS subject: printable ASCII, one line, under 100 characters (SNS rejects anything else).
pub fn subject(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect();
    if out.len() > 99 {
        out.truncate(96);
        out.push_str("...");
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The display name CloudWatch uses in the `Region` field, e.g. `US West (Oregon)`; the code if unknown.
pub fn region_display_name(code: &str) -> String {
    let name = match code {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "ca-central-1" => "Canada (Central)",
        "eu-west-1" => "EU (Ireland)",
        "eu-west-2" => "EU (London)",
        "eu-west-3" => "EU (Paris)",
        "eu-central-1" => "EU (Frankfurt)",
        "eu-central-2" => "EU (Zurich)",
        "eu-north-1" => "EU (Stockholm)",
        "eu-south-1" => "EU (Milan)",
        "ap-south-1" => "Asia Pacific (Mumbai)",
        "ap-northeast-1" => "Asia Pacific (Tokyo)",
        "ap-northeast-2" => "Asia Pacific (Seoul)",
        "ap-southeast-1" => "Asia Pacific (Singapore)",
        "ap-southeast-2" => "Asia Pacific (Sydney)",
        "sa-east-1" => "South America (Sao Paulo)",
        other => other,
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            event_type: "failover.started".into(),
            severity: Severity::Critical,
            environment: "prod".into(),
            incident_key: "dr-prod-failover-x".into(),
        }
    }

    #[test]
    fn pages_look_like_cloudwatch_alarms() {
        let page = Page {
            envelope: envelope(),
            alarm_name: "DR prod failover x".into(),
            state: PageState::Alarm,
            reason: "line one\nline two".into(),
            description: "d".into(),
            time: "2026-11-25T12:00:00.000Z".into(),
            region: "us-west-2".into(),
            details: BTreeMap::from([("ExecutionId".to_owned(), json!("x"))]),
        };
        let m = paging_message(&page);
        let body: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(body["NewStateValue"], "ALARM");
        assert_eq!(body["AlarmName"], "DR prod failover x");
        assert_eq!(body["Region"], "US West (Oregon)");
        assert_eq!(body["ExecutionId"], "x");
        assert_eq!(m.subject.as_deref(), Some("ALARM: \"DR prod failover x\" in US West (Oregon)"));
        assert_eq!(m.attributes["severity"], "critical");
        assert_eq!(m.attributes["incident_key"], "dr-prod-failover-x");
    }

    #[test]
    fn subjects_are_ascii_one_line_and_short() {
        let s = subject(&format!("ALARM: é\nline {}", "x".repeat(200)));
        assert!(s.len() < 100 && s.is_ascii() && !s.contains('\n'), "{s}");
        assert!(s.ends_with("..."));
    }

    #[test]
    fn chat_uses_the_custom_notification_schema() {
        let m = chat_message(&ChatNote {
            envelope: envelope(),
            title: "t".into(),
            description: "d".into(),
            next_steps: vec!["s".into()],
        });
        let body: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(body["version"], "1.0");
        assert_eq!(body["source"], "custom");
        assert_eq!(body["content"]["textType"], "client-markdown");
        assert_eq!(body["metadata"]["threadId"], "dr-prod-failover-x");
        assert!(m.subject.is_none());
    }

    #[test]
    fn long_reasons_are_truncated_on_a_char_boundary() {
        let t = truncate(&"é".repeat(100), 11);
        assert!(t.ends_with("...") && t.len() <= 11);
    }
}
