//! Parsing of S3 replication notifications in every wrapping Lambda can hand over.
//!
//! | payload | detected by | result |
//! |---|---|---|
//! | SQS event | `Records[0].eventSource` `aws:sqs` (or `body` + `messageId`) | [`Payload::Sqs`], one per message |
//! | SNS event | `Records[0].EventSource` `aws:sns` (or an `Sns` object) | [`Payload::Sns`], one per record |
//! | S3 notification invoked directly | `Records[0].eventSource` `aws:s3` | [`Payload::Direct`] |
//! | SNS envelope or test event invoked directly | no `Records`; `Type` or `Event` | [`Payload::Direct`] |
//!
//! An SQS `body` (and a direct payload) is one of: the S3 notification JSON (S3 -> SQS, or S3 -> SNS -> SQS with
//! raw message delivery), an SNS envelope whose `Message` is that JSON (S3 -> SNS -> SQS without raw delivery), or
//! the `s3:TestEvent`, which parses to no records with [`Notification::test_event`] set.
//!
//! Each message parses on its own, so one poison body fails only its own message (the handler quarantines it
//! and reports nothing for it, or a batch item failure, as it decides). The body is parsed once, into borrowing
//! structs (`Cow<str>` borrows where the JSON string has no escapes), then converted into owned
//! [`ReplicationRecord`]s. Object keys are URL-decoded (`+` is a space, then `%XX`; hand-coded, see
//! [`decode_key`]). Unknown fields are ignored; every field is optional except `eventName`, `s3.bucket.name` and
//! `s3.object.key`, without which a record means nothing.
//!
//! `aws_lambda_events` types none of this, for these reasons:
//! - SQS and SNS event records: the crate's `SqsMessage` and `SnsRecord` accept every real record, but they own
//!   their strings, while [`SqsMessage`] and [`SnsMessage`] lend the message id and body from the payload to the
//!   engine (which quarantines and identifies messages with them). Owning them also costs: deserializing the
//!   crate's `SqsMessage` per record makes [`parse_payload`] about 23% slower on the 6 MB benchmark batch
//!   (`benches/replication_batch.rs`: 9.3 to 11.4 ms), for fields nobody reads. Each record is read on its own either way, so one
//!   odd record never rejects the batch.
//! - The body: the crate's `S3EventRecord` has no `replicationEventData` (the rule, destination and failure
//!   reason that classify a record) and its `S3Event` refuses the `s3:TestEvent`; its `sns::SnsMessage` refuses a
//!   `SubscriptionConfirmation` delivered to the queue (the `crate_*` tests in `replication/tests.rs` prove each).
//!   One borrowing struct reads all three shapes in one pass.

mod body;

pub use body::{Envelope, KeyNotUtf8, bucket_from_arn, decode_key, parse_body, parse_payload};

use super::reason::FailureReason;
use std::fmt;
use time::OffsetDateTime;

/// How a batch of replication events reached the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchSource {
    /// An SQS event (the main path): failures are answered per message (`batchItemFailures`).
    Sqs,
    /// An SNS event.
    Sns,
    /// A direct invocation with an S3 event notification.
    Direct,
    /// None of these (quarantined).
    Unrecognized,
}

impl BatchSource {
    /// `sqs`, `sns`, `direct`, `unrecognized`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchSource::Sqs => "sqs",
            BatchSource::Sns => "sns",
            BatchSource::Direct => "direct",
            BatchSource::Unrecognized => "unrecognized",
        }
    }
}

impl std::fmt::Display for BatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four S3 replication event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReplicationEventType {
    /// `s3:Replication:OperationFailedReplication`: an eligible object failed to replicate.
    OperationFailedReplication,
    /// `s3:Replication:OperationMissedThreshold`: an object exceeded the S3 RTC threshold.
    OperationMissedThreshold,
    /// `s3:Replication:OperationReplicatedAfterThreshold`: an object replicated after the threshold.
    OperationReplicatedAfterThreshold,
    /// `s3:Replication:OperationNotTracked`: an object is no longer tracked by replication metrics.
    OperationNotTracked,
}

impl ReplicationEventType {
    /// All four, in AWS's order.
    pub const ALL: [ReplicationEventType; 4] = [
        ReplicationEventType::OperationFailedReplication,
        ReplicationEventType::OperationMissedThreshold,
        ReplicationEventType::OperationReplicatedAfterThreshold,
        ReplicationEventType::OperationNotTracked,
    ];

    /// Parses a record's `eventName` (`Replication:OperationFailedReplication`; an `s3:` prefix is accepted).
    pub fn from_event_name(event_name: &str) -> Option<ReplicationEventType> {
        let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
        match name.strip_prefix("Replication:")? {
            "OperationFailedReplication" => Some(ReplicationEventType::OperationFailedReplication),
            "OperationMissedThreshold" => Some(ReplicationEventType::OperationMissedThreshold),
            "OperationReplicatedAfterThreshold" => Some(ReplicationEventType::OperationReplicatedAfterThreshold),
            "OperationNotTracked" => Some(ReplicationEventType::OperationNotTracked),
            _ => None,
        }
    }

    /// The type's name without prefix, e.g. `OperationFailedReplication` (the key of incident counts).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationEventType::OperationFailedReplication => "OperationFailedReplication",
            ReplicationEventType::OperationMissedThreshold => "OperationMissedThreshold",
            ReplicationEventType::OperationReplicatedAfterThreshold => "OperationReplicatedAfterThreshold",
            ReplicationEventType::OperationNotTracked => "OperationNotTracked",
        }
    }

    /// The `eventName` S3 writes in records, e.g. `Replication:OperationFailedReplication`.
    pub fn event_name(self) -> &'static str {
        match self {
            ReplicationEventType::OperationFailedReplication => "Replication:OperationFailedReplication",
            ReplicationEventType::OperationMissedThreshold => "Replication:OperationMissedThreshold",
            ReplicationEventType::OperationReplicatedAfterThreshold => "Replication:OperationReplicatedAfterThreshold",
            ReplicationEventType::OperationNotTracked => "Replication:OperationNotTracked",
        }
    }
}

impl fmt::Display for ReplicationEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replication notification record, validated and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRecord {
    /// From `eventName`.
    pub event_type: ReplicationEventType,
    /// `eventTime`, when present.
    pub event_time: Option<OffsetDateTime>,
    /// `s3.bucket.name`: the source bucket.
    pub source_bucket: String,
    /// `s3.object.key`, URL-decoded.
    pub key: String,
    /// `s3.object.versionId`.
    pub version_id: Option<String>,
    /// `s3.object.size` in bytes.
    pub size: Option<u64>,
    /// `s3.object.sequencer`.
    pub sequencer: Option<String>,
    /// `replicationEventData.replicationRuleId`.
    pub rule_id: Option<String>,
    /// The bucket name from `replicationEventData.destinationBucket` (an ARN `arn:aws:s3:::bucket`).
    pub destination_bucket: Option<String>,
    /// `replicationEventData.failureReason`.
    pub failure_reason: Option<FailureReason>,
    /// `replicationEventData.s3Operation`, e.g. `OBJECT_PUT`.
    pub s3_operation: Option<String>,
    /// `replicationEventData.requestTime`, verbatim.
    pub request_time: Option<String>,
    /// `replicationEventData.threshold` (a string or a number in the event), as text.
    pub threshold: Option<String>,
    /// `replicationEventData.replicationTime` (a string or a number in the event), as text.
    pub replication_time: Option<String>,
}

/// How the S3 notification reached the function inside one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// The S3 notification JSON itself (S3 -> SQS, raw SNS delivery, SNS `Message`, direct invoke).
    S3Notification,
    /// An SNS envelope whose `Message` is the S3 notification (S3 -> SNS -> SQS without raw delivery).
    SnsEnvelope,
}

/// The content of one message: its replication records, or the S3 test event (no records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The records, in message order; empty for the test event.
    pub records: Vec<ReplicationRecord>,
    /// The message was `s3:TestEvent` (sent when a notification configuration is saved): accepted, ignored.
    pub test_event: bool,
    /// How the notification was wrapped.
    pub wrapping: Wrapping,
}

/// One SQS message of an SQS event.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsMessage<'a> {
    /// `messageId`, the identifier for `batchItemFailures` (empty if the record had none).
    pub message_id: &'a str,
    /// `body` verbatim, to quarantine it when it cannot be parsed (empty if the record had none).
    pub body: &'a str,
    /// What the body holds.
    pub parsed: Result<Notification, ParseError>,
}

/// One record of an SNS event.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsMessage<'a> {
    /// `Sns.MessageId` (empty if absent).
    pub message_id: &'a str,
    /// `Sns.Message` verbatim (empty if absent).
    pub message: &'a str,
    /// What the message holds.
    pub parsed: Result<Notification, ParseError>,
}

/// A Lambda payload, recognised and parsed message by message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<'a> {
    /// An SQS event: one entry per message, in order.
    Sqs(Vec<SqsMessage<'a>>),
    /// An SNS event: one entry per record.
    Sns(Vec<SnsMessage<'a>>),
    /// An S3 notification (or SNS envelope, or test event) invoked directly.
    Direct(Result<Notification, ParseError>),
    /// Not a shape this function handles.
    Unrecognized(ParseError),
}

impl Payload<'_> {
    /// `sqs`, `sns`, `direct` or `unrecognized`, for logs.
    pub fn source(&self) -> BatchSource {
        match self {
            Payload::Sqs(_) => BatchSource::Sqs,
            Payload::Sns(_) => BatchSource::Sns,
            Payload::Direct(_) => BatchSource::Direct,
            Payload::Unrecognized(_) => BatchSource::Unrecognized,
        }
    }

    /// Every parsed record with the index of its message (SQS message, SNS record; 0 when direct).
    pub fn records(&self) -> impl Iterator<Item = (usize, &ReplicationRecord)> + '_ {
        let (sqs, sns, direct): (&[SqsMessage<'_>], &[SnsMessage<'_>], Option<&Result<Notification, ParseError>>) = match self {
            Payload::Sqs(m) => (m, &[], None),
            Payload::Sns(m) => (&[], m, None),
            Payload::Direct(r) => (&[], &[], Some(r)),
            Payload::Unrecognized(_) => (&[], &[], None),
        };
        sqs.iter()
            .map(|m| &m.parsed)
            .chain(sns.iter().map(|m| &m.parsed))
            .chain(direct)
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|n| (i, n)))
            .flat_map(|(i, n)| n.records.iter().map(move |r| (i, r)))
    }

    /// The messages that could not be parsed, with their index and error.
    pub fn failures(&self) -> Vec<(usize, &ParseError)> {
        match self {
            Payload::Sqs(m) => m.iter().enumerate().filter_map(|(i, m)| m.parsed.as_ref().err().map(|e| (i, e))).collect(),
            Payload::Sns(m) => m.iter().enumerate().filter_map(|(i, m)| m.parsed.as_ref().err().map(|e| (i, e))).collect(),
            Payload::Direct(Err(e)) | Payload::Unrecognized(e) => vec![(0, e)],
            Payload::Direct(Ok(_)) => Vec::new(),
        }
    }
}

/// Why a payload or message could not be parsed. Messages say what is wrong and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON at all.
    #[error("not JSON ({problem}): expected an S3 event notification, an SNS envelope or the S3 test event")]
    NotJson {
        /// serde_json's description, with line and column.
        problem: String,
    },
    /// JSON, but a field has the wrong type.
    #[error("{path}: {problem}")]
    InvalidJson {
        /// Path of the offending field, e.g. `Records[0].s3.object.size`.
        path: String,
        /// serde_json's description.
        problem: String,
    },
    /// JSON of a shape this function does not handle.
    #[error("unrecognized {what}: {found}; expected {expected}")]
    UnexpectedShape {
        /// What was being parsed (`payload`, `message`).
        what: &'static str,
        /// What was found.
        found: String,
        /// What is accepted there.
        expected: &'static str,
    },
    /// A required field is absent.
    #[error("{path} is missing: expected {expected}")]
    MissingField {
        /// Where, e.g. `Records[2].s3.object.key`.
        path: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A field holds a value that is not accepted.
    #[error("{path} is {value:?}: expected {expected}")]
    InvalidField {
        /// Where, e.g. `Records[0].eventVersion`.
        path: String,
        /// The value found.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// An SNS message that is not a `Notification` (e.g. a `SubscriptionConfirmation` delivered to the queue).
    #[error(
        "an SNS {kind} message, not a Notification: expected Type Notification (confirm the SNS subscription \
         out of band with its SubscribeURL)"
    )]
    NotSnsNotification {
        /// The envelope's `Type`.
        kind: String,
    },
}
