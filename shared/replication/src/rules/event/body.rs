//! The reading of a payload and of each body in it (the module map and the shapes: [`super`]): the envelope read
//! once, every body parsed into borrowing wire structs, then converted into owned [`ReplicationRecord`]s.

use super::{Notification, ParseError, Payload, ReplicationEventType, ReplicationRecord, SnsMessage, SqsMessage, Wrapping};
use crate::rules::reason::FailureReason;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const EXPECTED_BODY: &str = "an S3 notification with Records, an SNS envelope with Type Notification, or s3:TestEvent";
const EXPECTED_EVENT_NAME: &str = "Replication:OperationFailedReplication, Replication:OperationMissedThreshold, \
     Replication:OperationReplicatedAfterThreshold or Replication:OperationNotTracked";

/// A payload read from its text once. The SQS and SNS events (the 6 MB batches) are read straight into the few
/// envelope fields this function uses, without a JSON tree: building and freeing the tree of a 6 MB batch cost
/// about as much as parsing every body in it. Every other shape, and any envelope with a field of an unexpected
/// type, a duplicate key or a source other than SQS or SNS, is read as a tree by [`parse_payload`]: both routes
/// give the same [`Payload`] (tested on every fixture and on the fuzzer's mutants).
#[derive(Debug)]
pub struct Envelope<'a>(Parsed<'a>);

#[derive(Debug)]
enum Parsed<'a> {
    Sqs(Vec<EnvelopeRecord<'a>>),
    Sns(Vec<EnvelopeRecord<'a>>),
    Tree(Value),
}

/// A field that may be absent, `null` or a value: a JSON tree's `get` tells the first two apart, and the route
/// without a tree must decide exactly as [`parse_payload`] does.
#[derive(Debug, Default)]
enum Seen<T> {
    #[default]
    Absent,
    Present(Option<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seen<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(Seen::Present)
    }
}

#[derive(Debug, Deserialize)]
struct EnvelopeTop<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<EnvelopeRecord<'a>>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeRecord<'a> {
    #[serde(rename = "eventSource", default, borrow)]
    event_source: Seen<Cow<'a, str>>,
    #[serde(rename = "EventSource", default, borrow)]
    event_source_sns: Seen<Cow<'a, str>>,
    #[serde(rename = "messageId", default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(rename = "Sns", default, borrow)]
    sns: Option<EnvelopeSns<'a>>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeSns<'a> {
    #[serde(rename = "MessageId", default, borrow)]
    message_id: Option<Cow<'a, str>>,
    #[serde(rename = "Message", default, borrow)]
    message: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    /// Reads `raw`; `Err` only when it is not JSON at all.
    pub fn parse(raw: &'a str) -> Result<Envelope<'a>, serde_json::Error> {
        if let Ok(top) = serde_json::from_str::<EnvelopeTop<'a>>(raw)
            && let Some(first) = top.records.first()
        {
            let source = match (&first.event_source, &first.event_source_sns) {
                (Seen::Present(s), _) | (Seen::Absent, Seen::Present(s)) => s.as_deref(),
                (Seen::Absent, Seen::Absent) => None,
            };
            match source {
                Some("aws:sqs") => return Ok(Envelope(Parsed::Sqs(top.records))),
                Some("aws:sns") => return Ok(Envelope(Parsed::Sns(top.records))),
                _ => {}
            }
        }
        serde_json::from_str::<Value>(raw).map(|v| Envelope(Parsed::Tree(v)))
    }

    /// The payload, message by message (see [`parse_payload`]).
    pub fn payload(&self) -> Payload<'_> {
        match &self.0 {
            Parsed::Sqs(records) => Payload::Sqs(
                records
                    .iter()
                    .map(|r| {
                        let message_id = r.message_id.as_deref().unwrap_or("");
                        match r.body.as_deref() {
                            Some(body) => SqsMessage { message_id, body, parsed: parse_body(body) },
                            None => SqsMessage { message_id, body: "", parsed: Err(missing_sqs_body()) },
                        }
                    })
                    .collect(),
            ),
            Parsed::Sns(records) => Payload::Sns(
                records
                    .iter()
                    .map(|r| {
                        let sns = r.sns.as_ref();
                        let message_id = sns.and_then(|s| s.message_id.as_deref()).unwrap_or("");
                        match sns.and_then(|s| s.message.as_deref()) {
                            Some(message) => SnsMessage { message_id, message, parsed: parse_body(message) },
                            None => SnsMessage { message_id, message: "", parsed: Err(missing_sns_message()) },
                        }
                    })
                    .collect(),
            ),
            Parsed::Tree(v) => parse_payload(v),
        }
    }
}

fn missing_sqs_body() -> ParseError {
    ParseError::MissingField { path: "body".to_owned(), expected: "the SQS message body (a string holding the S3 notification)" }
}

fn missing_sns_message() -> ParseError {
    ParseError::MissingField {
        path: "Sns.Message".to_owned(),
        expected: "the SNS message (a string holding the S3 notification)",
    }
}

/// Recognises the payload's wrapping and parses each message. Never fails: problems are in the result.
pub fn parse_payload(v: &Value) -> Payload<'_> {
    let Some(obj) = v.as_object() else {
        return Payload::Unrecognized(ParseError::UnexpectedShape {
            what: "payload",
            found: format!("a JSON {}", json_type(v)),
            expected: "an SQS event, an SNS event or an S3 event notification (a JSON object)",
        });
    };
    let Some(records) = obj.get("Records") else {
        // A test event, or an SNS envelope, invoked directly.
        return Payload::Direct(parse_body_value(v));
    };
    let Some(records) = records.as_array() else {
        return Payload::Unrecognized(ParseError::UnexpectedShape {
            what: "payload",
            found: format!("Records is a JSON {}", json_type(records)),
            expected: "Records to be an array",
        });
    };
    let Some(first) = records.first() else {
        return Payload::Unrecognized(ParseError::UnexpectedShape {
            what: "payload",
            found: "Records is empty".to_owned(),
            expected: "at least one SQS message, SNS record or S3 record",
        });
    };
    let source = first.get("eventSource").or_else(|| first.get("EventSource")).and_then(Value::as_str);
    match source {
        Some("aws:sqs") => Payload::Sqs(records.iter().map(parse_sqs_record).collect()),
        Some("aws:sns") => Payload::Sns(records.iter().map(parse_sns_record).collect()),
        Some("aws:s3") => Payload::Direct(parse_body_value(v)),
        _ if first.get("body").is_some() && first.get("messageId").is_some() => {
            Payload::Sqs(records.iter().map(parse_sqs_record).collect())
        }
        _ if first.get("Sns").is_some() => Payload::Sns(records.iter().map(parse_sns_record).collect()),
        _ if first.get("eventName").is_some() => Payload::Direct(parse_body_value(v)),
        other => Payload::Unrecognized(ParseError::UnexpectedShape {
            what: "payload",
            found: match other {
                Some(s) => format!("Records[0].eventSource {s:?}"),
                None => "Records[0] without eventSource".to_owned(),
            },
            expected: "eventSource aws:sqs, aws:sns or aws:s3",
        }),
    }
}

/// Parses one SQS body or SNS `Message`: an S3 notification, an SNS envelope around one, or the test event.
pub fn parse_body(body: &str) -> Result<Notification, ParseError> {
    let raw: RawBody<'_> = serde_json::from_str(body).map_err(|e| json_error::<RawBody<'_>>(&e, body))?;
    convert_body(raw, true)
}

fn parse_body_value(v: &Value) -> Result<Notification, ParseError> {
    let raw = RawBody::deserialize(v).map_err(|e| match serde_path_to_error::deserialize::<_, RawBody<'_>>(v) {
        Err(pe) => ParseError::InvalidJson { path: pe.path().to_string(), problem: pe.inner().to_string() },
        Ok(_) => ParseError::InvalidJson { path: ".".to_owned(), problem: e.to_string() },
    })?;
    convert_body(raw, true)
}

fn parse_sqs_record(rec: &Value) -> SqsMessage<'_> {
    let message_id = rec.get("messageId").and_then(Value::as_str).unwrap_or("");
    match rec.get("body").and_then(Value::as_str) {
        Some(body) => SqsMessage { message_id, body, parsed: parse_body(body) },
        None => SqsMessage { message_id, body: "", parsed: Err(missing_sqs_body()) },
    }
}

fn parse_sns_record(rec: &Value) -> SnsMessage<'_> {
    let sns = rec.get("Sns");
    let message_id = sns.and_then(|s| s.get("MessageId")).and_then(Value::as_str).unwrap_or("");
    match sns.and_then(|s| s.get("Message")).and_then(Value::as_str) {
        Some(message) => SnsMessage { message_id, message, parsed: parse_body(message) },
        None => SnsMessage { message_id, message: "", parsed: Err(missing_sns_message()) },
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Turns a serde_json failure into a [`ParseError`]; on a data error, parses again to name the field's path
/// (only on this rare path, so the fast path pays nothing for it).
fn json_error<'de, T: Deserialize<'de>>(e: &serde_json::Error, text: &'de str) -> ParseError {
    use serde_json::error::Category as C;
    match e.classify() {
        C::Syntax | C::Eof | C::Io => ParseError::NotJson { problem: e.to_string() },
        C::Data => {
            let de = &mut serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, T>(de) {
                Err(pe) => ParseError::InvalidJson { path: pe.path().to_string(), problem: strip_position(pe.inner()) },
                Ok(_) => ParseError::InvalidJson { path: ".".to_owned(), problem: strip_position(e) },
            }
        }
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => s,
    }
}

fn convert_body(raw: RawBody<'_>, allow_envelope: bool) -> Result<Notification, ParseError> {
    if let Some(records) = raw.records {
        let records = records.into_iter().enumerate().map(|(i, r)| convert_record(i, r)).collect::<Result<_, _>>()?;
        return Ok(Notification { records, test_event: false, wrapping: Wrapping::S3Notification });
    }
    if let Some(event) = raw.event {
        if event == "s3:TestEvent" {
            return Ok(Notification { records: Vec::new(), test_event: true, wrapping: Wrapping::S3Notification });
        }
        return Err(ParseError::InvalidField {
            path: "Event".to_owned(),
            value: event.into_owned(),
            expected: "s3:TestEvent (the only S3 message without Records)",
        });
    }
    match (raw.kind, raw.message) {
        (Some(kind), Some(message)) if kind == "Notification" && allow_envelope => {
            let inner: RawBody<'_> = serde_json::from_str(&message).map_err(|e| json_error::<RawBody<'_>>(&e, &message))?;
            let mut n = convert_body(inner, false)?;
            n.wrapping = Wrapping::SnsEnvelope;
            Ok(n)
        }
        (Some(kind), _) if kind != "Notification" => Err(ParseError::NotSnsNotification { kind: kind.into_owned() }),
        (Some(_), None) => Err(ParseError::MissingField {
            path: "Message".to_owned(),
            expected: "the SNS envelope's Message (the S3 notification as a JSON string)",
        }),
        _ => Err(ParseError::UnexpectedShape {
            what: "message",
            found: if allow_envelope {
                "a JSON object without Records, Event or Type".to_owned()
            } else {
                "an SNS Message that is not an S3 notification".to_owned()
            },
            expected: EXPECTED_BODY,
        }),
    }
}

/// The record's event type, after its version (2.x) and source (`aws:s3`) are checked.
fn event_type_of(i: usize, r: &RawRecord<'_>) -> Result<ReplicationEventType, ParseError> {
    if let Some(v) = &r.event_version
        && !v.starts_with("2.")
    {
        return Err(ParseError::InvalidField {
            path: format!("Records[{i}].eventVersion"),
            value: v.clone().into_owned(),
            expected: "an S3 notification version 2.x (replication events use 2.2)",
        });
    }
    if let Some(s) = &r.event_source
        && s != "aws:s3"
    {
        return Err(ParseError::InvalidField {
            path: format!("Records[{i}].eventSource"),
            value: s.clone().into_owned(),
            expected: "aws:s3",
        });
    }
    let Some(event_name) = &r.event_name else {
        return Err(ParseError::MissingField { path: format!("Records[{i}].eventName"), expected: EXPECTED_EVENT_NAME });
    };
    ReplicationEventType::from_event_name(event_name).ok_or_else(|| ParseError::InvalidField {
        path: format!("Records[{i}].eventName"),
        value: event_name.to_string(),
        expected: EXPECTED_EVENT_NAME,
    })
}

fn convert_record(i: usize, r: RawRecord<'_>) -> Result<ReplicationRecord, ParseError> {
    let event_type = event_type_of(i, &r)?;
    let event_time = match r.event_time {
        None => None,
        Some(t) => Some(OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| ParseError::InvalidField {
            path: format!("Records[{i}].eventTime"),
            value: t.clone().into_owned(),
            expected: "an RFC 3339 time such as 2024-09-05T21:04:32.527Z",
        })?),
    };
    let (bucket, object) = match r.s3 {
        Some(s3) => (s3.bucket.and_then(|b| b.name), s3.object),
        None => (None, None),
    };
    let Some(source_bucket) = bucket else {
        return Err(ParseError::MissingField {
            path: format!("Records[{i}].s3.bucket.name"),
            expected: "the source bucket's name",
        });
    };
    let Some(object) = object else {
        return Err(ParseError::MissingField { path: format!("Records[{i}].s3.object"), expected: "the object" });
    };
    let Some(raw_key) = object.key else {
        return Err(ParseError::MissingField {
            path: format!("Records[{i}].s3.object.key"),
            expected: "the object key (URL-encoded)",
        });
    };
    let key = decode_key(&raw_key)
        .map_err(|_| ParseError::InvalidField {
            path: format!("Records[{i}].s3.object.key"),
            value: raw_key.to_string(),
            expected: "a URL-encoded key that decodes to UTF-8",
        })?
        .into_owned();
    let data = r.replication_event_data.unwrap_or_default();
    Ok(ReplicationRecord {
        event_type,
        event_time,
        source_bucket: source_bucket.into_owned(),
        key,
        version_id: object.version_id.map(Cow::into_owned),
        size: object.size,
        sequencer: object.sequencer.map(Cow::into_owned),
        rule_id: data.replication_rule_id.map(Cow::into_owned),
        destination_bucket: data.destination_bucket.map(|d| bucket_from_arn(&d).to_owned()),
        failure_reason: data.failure_reason.map(|f| FailureReason::parse(&f)),
        s3_operation: data.s3_operation.map(Cow::into_owned),
        request_time: data.request_time.map(Cow::into_owned),
        threshold: data.threshold,
        replication_time: data.replication_time,
    })
}

/// The bucket name of an S3 ARN (`arn:aws:s3:::bucket`, any partition); a plain name is returned as is.
pub fn bucket_from_arn(arn: &str) -> &str {
    match arn.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4).unwrap_or(arn),
        None => arn,
    }
}

/// A key whose URL-decoding is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyNotUtf8;

/// Decodes a key as S3 notifications encode it: `+` is a space, then `%XX` escapes (a `%` not followed by two hex
/// digits is kept as is). Borrows when there is nothing to decode.
pub fn decode_key(raw: &str) -> Result<Cow<'_, str>, KeyNotUtf8> {
    if !raw.bytes().any(|b| b == b'+' || b == b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (bytes.get(i + 1).and_then(|&h| hex(h)), bytes.get(i + 2).and_then(|&l| hex(l))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| KeyNotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---- the wire shapes of a body (own structs: see the module's doc for why not aws_lambda_events') ----

/// An SQS body, SNS `Message`, or direct payload: S3 notification, SNS envelope or test event.
#[derive(Deserialize)]
#[serde(expecting = "an S3 notification, an SNS envelope or the S3 test event (a JSON object)")]
struct RawBody<'a> {
    #[serde(rename = "Records")]
    records: Option<Vec<RawRecord<'a>>>,
    #[serde(rename = "Event", borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "Type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an S3 event record (a JSON object)")]
struct RawRecord<'a> {
    #[serde(borrow, default)]
    event_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    s3: Option<RawS3<'a>>,
    #[serde(borrow, default)]
    replication_event_data: Option<RawReplicationData<'a>>,
}

#[derive(Deserialize)]
struct RawS3<'a> {
    #[serde(borrow, default)]
    bucket: Option<RawBucket<'a>>,
    #[serde(borrow, default)]
    object: Option<RawObject<'a>>,
}

#[derive(Deserialize)]
struct RawBucket<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObject<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(borrow, default)]
    version_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sequencer: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawReplicationData<'a> {
    #[serde(borrow, default)]
    replication_rule_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    destination_bucket: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    s3_operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    failure_reason: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "string_or_number")]
    threshold: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    replication_time: Option<String>,
}

/// `threshold` / `replicationTime`: AWS publishes no sample, so a string, a number or null are all accepted.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(Some(s.to_owned()))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok(Some(s))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            Ok(Some(n.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}
