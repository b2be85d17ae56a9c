//! Reading each delivery's shape into an [`AlarmChange`] (the shapes and why these parsers: [`super`]).

use super::{AlarmChange, AlarmKind, AlarmState, CLOUDWATCH_SOURCE, Delivery, EVENTBRIDGE_DETAIL_TYPE, NotAnAlarm};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::{SnsMessage, SnsRecord};
use serde::Deserialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Parses any accepted delivery of a CloudWatch alarm state change.
///
/// Accepted: an EventBridge `CloudWatch Alarm State Change` event; the alarm's direct Lambda action
/// payload; a Lambda SNS event whose single record carries the alarm notification; an SNS envelope
/// (`Type` `Notification`, `Message`); the bare notification; any of these as a JSON string.
pub fn parse(payload: &Value) -> Result<AlarmChange, NotAnAlarm> {
    parse_at_depth(payload, 0)
}

pub(super) fn parse_at_depth(payload: &Value, depth: u8) -> Result<AlarmChange, NotAnAlarm> {
    let obj = match payload {
        Value::Object(obj) => obj,
        Value::String(s) if depth == 0 => {
            let inner: Value =
                serde_json::from_str(s).map_err(|_| NotAnAlarm::new("the payload is a string that is not JSON"))?;
            return parse_at_depth(&inner, depth + 1);
        }
        other => return Err(NotAnAlarm::new(format!("the payload is {}, not a JSON object", describe(other)))),
    };

    if obj.contains_key("detail-type") {
        return parse_eventbridge(payload);
    }
    if obj.contains_key("alarmData") {
        return parse_alarm_action(payload);
    }
    if let Some(records) = obj.get("Records") {
        return parse_sns_event(records);
    }
    if obj.contains_key("AlarmArn") || obj.contains_key("NewStateValue") || obj.contains_key("AlarmName") {
        return parse_notification(payload, "");
    }
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") && obj.contains_key("Message") {
        return match SnsMessage::deserialize(payload) {
            Ok(envelope) => parse_notification_text(&envelope.message, "Message"),
            // A trimmed envelope: its Message is all a decision needs.
            Err(_) => parse_notification_string(obj.get("Message"), "Message"),
        };
    }
    Err(NotAnAlarm::new("unrecognized payload (none of detail-type, alarmData, Records, AlarmArn, or an SNS Message)"))
}

/// The EventBridge envelope as the crate types it. `detail` is an `Option` so that an event without one is
/// reported after the envelope's own fields (`detail-type`, `source`, `resources`), in that order.
pub(super) type EventBridgeEnvelope = EventBridgeEvent<Option<Value>>;

pub(super) fn parse_eventbridge(event: &Value) -> Result<AlarmChange, NotAnAlarm> {
    let envelope: EventBridgeEnvelope = serde_path_to_error::deserialize(event).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!(" {path}:") };
        NotAnAlarm::new(format!("EventBridge event:{at} {}", e.inner()))
    })?;
    let detail_type = envelope.detail_type.as_str();
    if detail_type != EVENTBRIDGE_DETAIL_TYPE {
        return Err(NotAnAlarm::new(format!("EventBridge event with detail-type {detail_type:?}")));
    }
    let source = envelope.source.as_str();
    if source != CLOUDWATCH_SOURCE {
        return Err(NotAnAlarm::new(format!("EventBridge event with source {source:?}, not {CLOUDWATCH_SOURCE:?}")));
    }
    let arn = envelope
        .resources
        .as_deref()
        .and_then(<[String]>::first)
        .map(String::as_str)
        .filter(|arn| !arn.trim().is_empty())
        .ok_or_else(|| NotAnAlarm::new("missing resources[0] (the alarm ARN)"))?;
    match &envelope.detail {
        Some(detail) => parse_alarm_data(detail, "detail", arn, Delivery::EventBridge),
        // `"detail": null` reads as None too; it is reported as the null it is.
        None if event.get("detail").is_some() => parse_alarm_data(&Value::Null, "detail", arn, Delivery::EventBridge),
        None => Err(NotAnAlarm::new("missing detail")),
    }
}

pub(super) fn parse_alarm_action(payload: &Value) -> Result<AlarmChange, NotAnAlarm> {
    if let Some(source) = payload.get("source").and_then(Value::as_str)
        && source != CLOUDWATCH_SOURCE
    {
        return Err(NotAnAlarm::new(format!("alarm action payload with source {source:?}, not {CLOUDWATCH_SOURCE:?}")));
    }
    let arn = payload.get("alarmArn").and_then(non_empty_str).ok_or_else(|| NotAnAlarm::new("missing alarmArn"))?;
    let data = payload.get("alarmData").ok_or_else(|| NotAnAlarm::new("missing alarmData"))?;
    parse_alarm_data(data, "alarmData", arn, Delivery::AlarmAction)
}

/// The camelCase shape shared by EventBridge's `detail` and the alarm action's `alarmData`.
pub(super) fn parse_alarm_data(data: &Value, at: &str, arn: &str, delivery: Delivery) -> Result<AlarmChange, NotAnAlarm> {
    if !data.is_object() {
        return Err(NotAnAlarm::new(format!("{at} is {}, not an object", describe(data))));
    }
    let parsed_arn = AlarmArn::parse(arn)?;
    let state = data.get("state").ok_or_else(|| NotAnAlarm::new(format!("missing {at}.state")))?;
    let new_state = state_at(state, "value", &format!("{at}.state.value"))?;
    let previous = data.get("previousState").ok_or_else(|| NotAnAlarm::new(format!("missing {at}.previousState")))?;
    let old_state = state_at(previous, "value", &format!("{at}.previousState.value"))?;
    let state_change_time = time_at(state, "timestamp", &format!("{at}.state.timestamp"))?;
    let reason_data = state.get("reasonData").and_then(decode_reason_data);
    let configuration = data.get("configuration");
    let kind = kind_from_configuration(configuration);
    let triggering_children =
        if kind == AlarmKind::Composite { reason_data.as_ref().map(triggering_alarms).unwrap_or_default() } else { Vec::new() };
    Ok(AlarmChange {
        alarm_name: data.get("alarmName").and_then(non_empty_str).unwrap_or(parsed_arn.name).to_owned(),
        alarm_arn: arn.to_owned(),
        account_id: parsed_arn.account.to_owned(),
        region: parsed_arn.region.to_owned(),
        new_state,
        old_state,
        reason: state.get("reason").and_then(Value::as_str).unwrap_or_default().to_owned(),
        reason_data,
        state_change_time,
        kind,
        description: configuration.and_then(|c| c.get("description")).and_then(non_empty_str).map(str::to_owned),
        triggering_children,
        suppressed_by: state.get("actionsSuppressedBy").and_then(non_empty_str).map(str::to_owned),
        suppressed_reason: state.get("actionsSuppressedReason").and_then(non_empty_str).map(str::to_owned),
        muted_by: data.get("muteDetail").and_then(mute_rule),
        delivery,
        previous_state_time: previous.get("timestamp").and_then(Value::as_str).and_then(parse_timestamp),
    })
}

pub(super) fn parse_sns_event(records: &Value) -> Result<AlarmChange, NotAnAlarm> {
    let records = records.as_array().ok_or_else(|| NotAnAlarm::new("Records is not an array"))?;
    let record = match records.as_slice() {
        [record] => record,
        [] => return Err(NotAnAlarm::new("Records is empty")),
        // SNS hands Lambda one record per invocation; anything else was not sent by SNS.
        more => return Err(NotAnAlarm::new(format!("Records has {} entries, an SNS event has one", more.len()))),
    };
    let Some(sns) = record.get("Sns") else {
        let source = record.get("EventSource").or_else(|| record.get("eventSource")).and_then(Value::as_str).unwrap_or("unknown");
        return Err(NotAnAlarm::new(format!("Records[0] is not an SNS record (event source {source:?})")));
    };
    const AT: &str = "Records[0].Sns.Message";
    match SnsRecord::deserialize(record) {
        Ok(record) => parse_notification_text(&record.sns.message, AT),
        // A trimmed or hand-written record: its Message is all a decision needs.
        Err(_) => parse_notification_string(sns.get("Message"), AT),
    }
}

/// `Message` read from the JSON value, for the SNS deliveries that the crate's types refuse.
pub(super) fn parse_notification_string(message: Option<&Value>, at: &str) -> Result<AlarmChange, NotAnAlarm> {
    match message {
        Some(Value::String(text)) => parse_notification_text(text, at),
        Some(other) => Err(NotAnAlarm::new(format!("{at} is {}, not a string", describe(other)))),
        None => Err(NotAnAlarm::new(format!("missing {at}"))),
    }
}

/// AWS regions by the display name CloudWatch writes in an SNS notification's `Region`, with their partition.
pub(super) const REGION_NAMES: &[(&str, &str, &str)] = &[
    ("US East (N. Virginia)", "us-east-1", "aws"),
    ("US East (Ohio)", "us-east-2", "aws"),
    ("US West (N. California)", "us-west-1", "aws"),
    ("US West (Oregon)", "us-west-2", "aws"),
    ("Africa (Cape Town)", "af-south-1", "aws"),
    ("Asia Pacific (Hong Kong)", "ap-east-1", "aws"),
    ("Asia Pacific (Taipei)", "ap-east-2", "aws"),
    ("Asia Pacific (Hyderabad)", "ap-south-2", "aws"),
    ("Asia Pacific (Jakarta)", "ap-southeast-3", "aws"),
    ("Asia Pacific (Malaysia)", "ap-southeast-5", "aws"),
    ("Asia Pacific (Melbourne)", "ap-southeast-4", "aws"),
    ("Asia Pacific (Mumbai)", "ap-south-1", "aws"),
    ("Asia Pacific (Osaka)", "ap-northeast-3", "aws"),
    ("Asia Pacific (Seoul)", "ap-northeast-2", "aws"),
    ("Asia Pacific (Singapore)", "ap-southeast-1", "aws"),
    ("Asia Pacific (Sydney)", "ap-southeast-2", "aws"),
    ("Asia Pacific (Thailand)", "ap-southeast-7", "aws"),
    ("Asia Pacific (Tokyo)", "ap-northeast-1", "aws"),
    ("Canada (Central)", "ca-central-1", "aws"),
    ("Canada West (Calgary)", "ca-west-1", "aws"),
    ("Europe (Frankfurt)", "eu-central-1", "aws"),
    ("Europe (Ireland)", "eu-west-1", "aws"),
    ("Europe (London)", "eu-west-2", "aws"),
    ("Europe (Milan)", "eu-south-1", "aws"),
    ("Europe (Paris)", "eu-west-3", "aws"),
    ("Europe (Spain)", "eu-south-2", "aws"),
    ("Europe (Stockholm)", "eu-north-1", "aws"),
    ("Europe (Zurich)", "eu-central-2", "aws"),
    ("Israel (Tel Aviv)", "il-central-1", "aws"),
    ("Mexico (Central)", "mx-central-1", "aws"),
    ("Middle East (Bahrain)", "me-south-1", "aws"),
    ("Middle East (UAE)", "me-central-1", "aws"),
    ("South America (Sao Paulo)", "sa-east-1", "aws"),
    ("South America (São Paulo)", "sa-east-1", "aws"),
    ("AWS GovCloud (US-East)", "us-gov-east-1", "aws-us-gov"),
    ("AWS GovCloud (US-West)", "us-gov-west-1", "aws-us-gov"),
    ("China (Beijing)", "cn-north-1", "aws-cn"),
    ("China (Ningxia)", "cn-northwest-1", "aws-cn"),
];

/// The ARN of an alarm whose notification has none: `AWSAccountId`, the `Region` display name and `AlarmName`.
pub(super) fn derive_alarm_arn(n: &Value) -> Option<String> {
    let account =
        n.get("AWSAccountId").and_then(non_empty_str).filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))?;
    let display = n.get("Region").and_then(non_empty_str)?;
    let name = n.get("AlarmName").and_then(non_empty_str)?;
    let (_, code, partition) = REGION_NAMES.iter().find(|(d, _, _)| *d == display)?;
    Some(format!("arn:{partition}:cloudwatch:{code}:{account}:alarm:{name}"))
}

/// The alarm notification that `at` holds as JSON text.
pub(super) fn parse_notification_text(text: &str, at: &str) -> Result<AlarmChange, NotAnAlarm> {
    let notification: Value = serde_json::from_str(text).map_err(|_| NotAnAlarm::new(format!("{at} is not JSON")))?;
    if !notification.is_object() {
        return Err(NotAnAlarm::new(format!("{at} is {}, not an alarm notification", describe(&notification))));
    }
    parse_notification(&notification, at)
}

/// The PascalCase alarm notification that CloudWatch publishes to SNS.
pub(super) fn parse_notification(n: &Value, at: &str) -> Result<AlarmChange, NotAnAlarm> {
    let field = |name: &str| if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
    // Older notifications carry no `AlarmArn`: it is derived from the account, the region's display name and the
    // alarm's name, which they do carry.
    let derived;
    let arn = match n.get("AlarmArn").and_then(non_empty_str) {
        Some(arn) => arn,
        None => {
            derived = derive_alarm_arn(n).ok_or_else(|| {
                NotAnAlarm::new(format!(
                    "missing {} (and no AWSAccountId, Region display name and AlarmName to derive it from)",
                    field("AlarmArn")
                ))
            })?;
            derived.as_str()
        }
    };
    let parsed_arn = AlarmArn::parse(arn)?;
    let new_state = state_at(n, "NewStateValue", &field("NewStateValue"))?;
    let old_state = state_at(n, "OldStateValue", &field("OldStateValue"))?;
    let state_change_time = time_at(n, "StateChangeTime", &field("StateChangeTime"))?;
    let kind = kind_from_notification(n);
    let triggering_children = n
        .get("TriggeringChildren")
        .and_then(Value::as_array)
        .map(|children| children.iter().filter_map(|c| c.get("Arn").and_then(non_empty_str)).map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(AlarmChange {
        alarm_name: n.get("AlarmName").and_then(non_empty_str).unwrap_or(parsed_arn.name).to_owned(),
        alarm_arn: arn.to_owned(),
        account_id: parsed_arn.account.to_owned(),
        region: parsed_arn.region.to_owned(),
        new_state,
        old_state,
        reason: n.get("NewStateReason").and_then(Value::as_str).unwrap_or_default().to_owned(),
        reason_data: None,
        state_change_time,
        kind,
        description: n.get("AlarmDescription").and_then(non_empty_str).map(str::to_owned),
        triggering_children,
        suppressed_by: None,
        suppressed_reason: None,
        muted_by: None,
        delivery: Delivery::Sns,
        previous_state_time: None,
    })
}

/// The parts of `arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>` (the name may hold colons).
pub(super) struct AlarmArn<'a> {
    region: &'a str,
    account: &'a str,
    name: &'a str,
}

impl<'a> AlarmArn<'a> {
    fn parse(arn: &'a str) -> Result<AlarmArn<'a>, NotAnAlarm> {
        let bad = || {
            NotAnAlarm::new(format!("{arn:?} is not a CloudWatch alarm ARN (arn:aws:cloudwatch:<region>:<account>:alarm:<name>)"))
        };
        let mut parts = arn.splitn(7, ':');
        let mut next = || parts.next().ok_or_else(bad);
        let (prefix, partition, service) = (next()?, next()?, next()?);
        let (region, account, resource, name) = (next()?, next()?, next()?, next()?);
        let region_ok = !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let account_ok = !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit());
        if prefix != "arn"
            || !partition.starts_with("aws")
            || service != "cloudwatch"
            || resource != "alarm"
            || !region_ok
            || !account_ok
            || name.is_empty()
        {
            return Err(bad());
        }
        Ok(AlarmArn { region, account, name })
    }
}

pub(super) fn state_at(container: &Value, key: &str, at: &str) -> Result<AlarmState, NotAnAlarm> {
    match container.get(key) {
        None | Some(Value::Null) => Err(NotAnAlarm::new(format!("missing {at}"))),
        Some(Value::String(s)) => AlarmState::from_cloudwatch(s)
            .ok_or_else(|| NotAnAlarm::new(format!("{at} is {s:?}, not an alarm state (OK, ALARM or INSUFFICIENT_DATA)"))),
        Some(other) => Err(NotAnAlarm::new(format!("{at} is {}, not a string", describe(other)))),
    }
}

pub(super) fn time_at(container: &Value, key: &str, at: &str) -> Result<OffsetDateTime, NotAnAlarm> {
    match container.get(key) {
        None | Some(Value::Null) => Err(NotAnAlarm::new(format!("missing {at}"))),
        Some(Value::String(s)) => parse_timestamp(s).ok_or_else(|| {
            NotAnAlarm::new(format!("{at} is {s:?}, not a timestamp (e.g. 2019-10-02T17:04:40.989+0000, +00:00 or Z)"))
        }),
        Some(other) => Err(NotAnAlarm::new(format!("{at} is {}, not a string", describe(other)))),
    }
}

/// Parses CloudWatch's timestamps: RFC 3339 with a `Z`, `+00:00` or colon-less `+0000` offset, with or
/// without fractional seconds. Returns the instant in UTC, truncated to milliseconds.
pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let parsed = match split_colonless_offset(text) {
        Some((head, sign, hours, minutes)) => OffsetDateTime::parse(&format!("{head}{sign}{hours}:{minutes}"), &Rfc3339).ok()?,
        None => OffsetDateTime::parse(text, &Rfc3339).ok()?,
    };
    let utc = parsed.checked_to_offset(UtcOffset::UTC)?;
    utc.replace_nanosecond(u32::from(utc.millisecond()) * 1_000_000).ok()
}

/// `2019-10-02T17:04:40.989+0000` -> (`2019-10-02T17:04:40.989`, `+`, `00`, `00`).
pub(super) fn split_colonless_offset(text: &str) -> Option<(&str, char, &str, &str)> {
    let split = text.len().checked_sub(5)?;
    let (head, offset) = (text.get(..split)?, text.get(split..)?);
    let sign = offset.chars().next().filter(|c| *c == '+' || *c == '-')?;
    let digits = offset.get(1..)?;
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || !head.contains('T') {
        return None;
    }
    Some((head, sign, digits.get(..2)?, digits.get(2..)?))
}

pub(super) fn format_millis_utc(t: OffsetDateTime) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `reasonData` is a JSON document inside a string; decode it, or keep the string when it is not JSON.
pub(super) fn decode_reason_data(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(serde_json::from_str(s).unwrap_or_else(|_| value.clone())),
        other => Some(other.clone()),
    }
}

/// `reasonData.triggeringAlarms[].arn` of a composite alarm.
pub(super) fn triggering_alarms(reason_data: &Value) -> Vec<String> {
    reason_data
        .get("triggeringAlarms")
        .and_then(Value::as_array)
        .map(|alarms| alarms.iter().filter_map(|a| a.get("arn").and_then(non_empty_str)).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The mute rule named by `muteDetail`: its `mutedByArn`; a `muteDetail` without one still means muted.
pub(super) fn mute_rule(detail: &Value) -> Option<String> {
    match detail {
        Value::Null => None,
        Value::Object(o) if o.is_empty() => None,
        _ => Some(
            detail.get("mutedByArn").and_then(non_empty_str).map_or_else(|| format!("unnamed mute rule {detail}"), str::to_owned),
        ),
    }
}

pub(super) fn kind_from_configuration(configuration: Option<&Value>) -> AlarmKind {
    let Some(c) = configuration else { return AlarmKind::Unknown };
    if c.get("alarmRule").and_then(non_empty_str).is_some() {
        return AlarmKind::Composite;
    }
    if c.get("thresholdMetricId").and_then(non_empty_str).is_some() {
        return AlarmKind::AnomalyDetection;
    }
    let metrics = c.get("metrics").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    kind_from_metrics(metrics, "expression", "metricStat")
}

pub(super) fn kind_from_notification(n: &Value) -> AlarmKind {
    match n.get("Trigger") {
        Some(trigger) if trigger.is_object() => {
            if trigger.get("ThresholdMetricId").and_then(non_empty_str).is_some() {
                return AlarmKind::AnomalyDetection;
            }
            if let Some(metrics) = trigger.get("Metrics").and_then(Value::as_array) {
                return kind_from_metrics(metrics, "Expression", "MetricStat");
            }
            if trigger.get("MetricName").and_then(non_empty_str).is_some() { AlarmKind::Metric } else { AlarmKind::Unknown }
        }
        _ if n.get("AlarmRule").and_then(non_empty_str).is_some() => AlarmKind::Composite,
        _ => AlarmKind::Unknown,
    }
}

pub(super) fn kind_from_metrics(metrics: &[Value], expression_key: &str, stat_key: &str) -> AlarmKind {
    let is_stat = |m: &Value| m.get(stat_key).is_some_and(|s| !s.is_null());
    let expressions: Vec<&str> =
        metrics.iter().filter(|m| !is_stat(m)).filter_map(|m| m.get(expression_key).and_then(non_empty_str)).collect();
    if expressions.iter().any(|e| e.to_ascii_uppercase().contains("ANOMALY_DETECTION_BAND")) {
        AlarmKind::AnomalyDetection
    } else if !expressions.is_empty() {
        AlarmKind::MetricMath
    } else if metrics.iter().any(is_stat) {
        AlarmKind::Metric
    } else {
        AlarmKind::Unknown
    }
}

pub(super) fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.trim().is_empty())
}

pub(super) fn describe(v: &Value) -> &'static str {
    domain::describe_json(v)
}
