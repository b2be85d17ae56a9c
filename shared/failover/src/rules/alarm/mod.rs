//! CloudWatch alarm state changes, normalized (docs/aws-facts.md, "CloudWatch alarm state changes").
//!
//! The `health-alarm` function can be reached three ways, and each way spells the same state change
//! differently:
//!
//! | delivery | shape | alarm ARN | state change time |
//! |---|---|---|---|
//! | EventBridge | [`EVENTBRIDGE_DETAIL_TYPE`] from [`CLOUDWATCH_SOURCE`] | `resources[0]` | `detail.state.timestamp` |
//! | alarm action | `{"source":"aws.cloudwatch","alarmArn",...,"alarmData":{...}}` | `alarmArn` | `alarmData.state.timestamp` |
//! | SNS | `Records[0].Sns.Message` = the PascalCase notification, as a JSON string | `AlarmArn` | `StateChangeTime` |
//!
//! [`parse`] turns any of them (and the bare SNS notification or SNS envelope) into one [`AlarmChange`].
//! Parsing is lenient where AWS is loose (unknown fields are ignored, optional fields may be absent or
//! `null`) and strict only about what a decision needs: the alarm ARN, the new and old state and the
//! state change time. The region is always taken from the ARN: the SNS notification only has a display
//! name ("US East (N. Virginia)").
//!
//! [`AlarmChange::execution_id`] depends only on the alarm ARN and the state change time at millisecond
//! precision, so one state change delivered twice, or through two paths, yields one id.
//!
//! The envelopes are `aws_lambda_events` types where they accept real deliveries: the EventBridge envelope
//! ([`EventBridgeEvent`](aws_lambda_events::event::eventbridge::EventBridgeEvent), its `detail` parsed here), the SNS event's record ([`SnsRecord`](aws_lambda_events::event::sns::SnsRecord)) and the SNS
//! envelope ([`SnsMessage`](aws_lambda_events::event::sns::SnsMessage)). What is inside is parsed here, from JSON values, because the crate's types for it
//! refuse real payloads (each proven by a `crate_*` test below): `sns::CloudWatchAlarmPayload` (a `null`
//! `AlarmDescription`; a composite alarm has no `Trigger`) and `cloudwatch_alarms`' configurations (a
//! metric-math or anomaly-detection alarm has an entry without `metricStat`; a composite alarm without an
//! actions suppressor has no `actionsSuppressor`). The alarm action payload is the same camelCase shape as
//! EventBridge's `detail`, so it is parsed by the same code.
//!
//! An SNS record or envelope that the crate refuses (a trimmed or hand-written test event: the crate requires
//! every field SNS sends, ids, timestamp and signature included) is still read, leniently, for its `Message`: a
//! decision needs nothing else from it, and an alarm must not be dropped for a missing signature.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use time::OffsetDateTime;

mod wire;

use wire::format_millis_utc;
pub use wire::{parse, parse_timestamp};

/// The EventBridge `detail-type` of an alarm state change.
pub const EVENTBRIDGE_DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The `source` of CloudWatch's EventBridge events and of the alarm Lambda action payload.
pub const CLOUDWATCH_SOURCE: &str = "aws.cloudwatch";

/// A payload that is not a CloudWatch alarm state change in any of the accepted shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a CloudWatch alarm state change: {problem}; expected an EventBridge 'CloudWatch Alarm State Change' \
     event, a CloudWatch alarm Lambda action payload, or an SNS-wrapped alarm notification"
)]
pub struct NotAnAlarm {
    /// What is wrong, naming the field (`missing detail.state.value`).
    pub problem: String,
}

impl NotAnAlarm {
    fn new(problem: impl Into<String>) -> Self {
        NotAnAlarm { problem: problem.into() }
    }
}

/// The state of a CloudWatch alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    /// `OK`: the metric or expression is within the threshold.
    Ok,
    /// `ALARM`: the threshold is breached (or, for a composite alarm, its rule is true).
    Alarm,
    /// `INSUFFICIENT_DATA`: not enough data to decide (also the state of a new alarm).
    InsufficientData,
}

impl AlarmState {
    /// Parses CloudWatch's spelling (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
    pub fn from_cloudwatch(value: &str) -> Option<AlarmState> {
        match value {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }

    /// CloudWatch's spelling of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of alarm changed state, as far as the payload tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A single-metric alarm (one `metricStat`, or an SNS `Trigger` with `MetricName`).
    Metric,
    /// A metric-math alarm: an `expression` entry without `metricStat` (Metrics Insights queries included).
    MetricMath,
    /// An anomaly-detection alarm (`ThresholdMetricId`, or an `ANOMALY_DETECTION_BAND` expression).
    AnomalyDetection,
    /// A composite alarm (`alarmRule` / `AlarmRule`).
    Composite,
    /// The payload does not say (no configuration, no trigger, no rule).
    Unknown,
}

/// How the state change reached the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// An EventBridge `CloudWatch Alarm State Change` event.
    #[serde(rename = "eventbridge")]
    EventBridge,
    /// The alarm's direct Lambda action.
    AlarmAction,
    /// An alarm notification through SNS (a Lambda SNS event, an SNS envelope, or the bare notification).
    Sns,
}

/// One CloudWatch alarm state change, whatever the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmChange {
    /// The alarm's name (from the payload; from the ARN when the payload has none).
    pub alarm_name: String,
    /// The alarm's ARN, `arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>`.
    pub alarm_arn: String,
    /// The account that owns the alarm (from the ARN).
    pub account_id: String,
    /// The alarm's AWS region code, e.g. `us-east-1` (from the ARN, never from a display name).
    pub region: String,
    /// The state the alarm went into.
    pub new_state: AlarmState,
    /// The state the alarm left.
    pub old_state: AlarmState,
    /// CloudWatch's human-readable reason for the new state (empty when the payload has none).
    pub reason: String,
    /// The machine-readable reason (`state.reasonData`, decoded from its JSON string when it is JSON;
    /// kept as a string otherwise). SNS notifications carry none.
    pub reason_data: Option<Value>,
    /// When the state changed, in UTC, at millisecond precision.
    #[serde(with = "time::serde::rfc3339")]
    pub state_change_time: OffsetDateTime,
    /// What kind of alarm this is.
    pub kind: AlarmKind,
    /// The alarm's description, if it has one (`null` and empty count as none).
    pub description: Option<String>,
    /// For a composite alarm, the ARNs of the child alarms that triggered this change.
    pub triggering_children: Vec<String>,
    /// Why the composite alarm's actions are suppressed in the new state (`state.actionsSuppressedBy`:
    /// `Alarm`, `WaitPeriod` or `ExtensionPeriod`), if they are.
    pub suppressed_by: Option<String>,
    /// CloudWatch's text for the suppression (`state.actionsSuppressedReason`).
    pub suppressed_reason: Option<String>,
    /// The alarm mute rule that mutes the alarm's actions (`muteDetail.mutedByArn`), if one applies.
    pub muted_by: Option<String>,
    /// How the change was delivered.
    pub delivery: Delivery,
    /// When the alarm entered the state it just left (`previousState.timestamp`; SNS notifications carry
    /// none). With the ARN it names the execution of that earlier transition.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub previous_state_time: Option<OffsetDateTime>,
}

impl AlarmChange {
    /// The execution id of this state change: `alarm-` and 20 lowercase hex characters of the SHA-256 of
    /// [`dedup_key`](Self::dedup_key). Equal for the same state change delivered through any path.
    pub fn execution_id(&self) -> String {
        let digest = Sha256::digest(self.dedup_key().as_bytes());
        let mut id = String::from("alarm-");
        id.extend(digest.iter().take(10).map(|b| format!("{b:02x}")));
        id
    }

    /// The execution id of the transition this change ends (e.g. the `ALARM` that an `OK` recovers from),
    /// when the delivery says when that transition happened.
    pub fn previous_execution_id(&self) -> Option<String> {
        let t = self.previous_state_time?;
        let key = format!("{}|{}", self.alarm_arn, format_millis_utc(t));
        let digest = Sha256::digest(key.as_bytes());
        let mut id = String::from("alarm-");
        id.extend(digest.iter().take(10).map(|b| format!("{b:02x}")));
        Some(id)
    }

    /// What identifies the state change: the alarm ARN and the state change time in UTC at millisecond
    /// precision, e.g. `arn:aws:cloudwatch:us-east-1:123456789012:alarm:x|2019-10-02T17:04:40.989Z`.
    pub fn dedup_key(&self) -> String {
        format!("{}|{}", self.alarm_arn, format_millis_utc(self.state_change_time))
    }

    /// The state change time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn state_change_time_rfc3339(&self) -> String {
        format_millis_utc(self.state_change_time)
    }

    /// The state actually changed (composite alarms also report `ALARM` -> `ALARM`, for instance when a
    /// suppressor's wait period runs out).
    pub fn is_transition(&self) -> bool {
        self.new_state != self.old_state
    }

    /// The alarm's actions are suppressed (composite alarm with an actions suppressor).
    pub fn is_suppressed(&self) -> bool {
        self.suppressed_by.is_some()
    }

    /// An alarm mute rule mutes the alarm's actions.
    pub fn is_muted(&self) -> bool {
        self.muted_by.is_some()
    }

    /// The alarm is in `ALARM` and CloudWatch would run its actions: neither suppressed nor muted.
    ///
    /// `ALARM` -> `ALARM` counts: CloudWatch sends it when a composite alarm's suppression ends and its
    /// actions run. Whether this leads to a failover is the policy's decision, not this function's.
    pub fn is_actionable_transition(&self) -> bool {
        self.new_state == AlarmState::Alarm && self.silenced_because().is_none()
    }

    /// Why CloudWatch would not run this alarm's actions (suppressed by a composite alarm's suppressor, or
    /// muted by a mute rule), in a sentence; `None` when it would.
    pub fn silenced_because(&self) -> Option<String> {
        if let Some(by) = &self.suppressed_by {
            return Some(format!("actions of {} are suppressed ({by})", self.alarm_name));
        }
        self.muted_by.as_ref().map(|rule| format!("{} is muted by {rule}", self.alarm_name))
    }
}

#[cfg(test)]
mod tests {
    use super::wire::EventBridgeEnvelope;
    use super::*;
    use aws_lambda_events::event::cloudwatch_alarms::{
        CloudWatchAlarmData, CloudWatchCompositeAlarm, CloudWatchCompositeAlarmConfiguration, CloudWatchMetricAlarmConfiguration,
    };
    use aws_lambda_events::event::sns::CloudWatchAlarmPayload;
    use aws_lambda_events::event::sns::SnsMessage;
    use serde_json::json;
    use time::macros::datetime;

    const ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:databricks-prod-workspace-unhealthy";
    const NAME: &str = "databricks-prod-workspace-unhealthy";

    macro_rules! fixture {
        ($file:literal) => {
            serde_json::from_str::<Value>(include_str!(concat!("../../../../../events/health-alarm/", $file)))
                .expect(concat!("fixture ", $file, " is JSON"))
        };
    }

    fn parsed(v: Value) -> AlarmChange {
        parse(&v).expect("parses")
    }

    fn rejected(v: Value) -> String {
        parse(&v).expect_err("is rejected").to_string()
    }

    /// The primary alarm, in ALARM, from OK.
    fn assert_primary_into_alarm(c: &AlarmChange) {
        assert_eq!(c.alarm_name, NAME);
        assert_eq!(c.alarm_arn, ARN);
        assert_eq!(c.account_id, "123456789012");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.new_state, AlarmState::Alarm);
    }

    #[test]
    fn eventbridge_metric_alarm() {
        let c = parsed(fixture!("eventbridge-metric-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert_eq!(c.delivery, Delivery::EventBridge);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 09:26:53.589 UTC));
        assert!(c.reason.starts_with("Threshold Crossed: 3 out of the last 3 datapoints"), "{}", c.reason);
        assert_eq!(c.suppressed_by, None);
        assert_eq!(c.muted_by, None);
        assert!(c.triggering_children.is_empty());
        assert!(c.description.as_deref().is_some_and(|d| d.contains("canary")));
        assert!(c.is_transition());
        assert!(c.is_actionable_transition());
    }

    #[test]
    fn reason_data_string_with_escaped_json_is_decoded() {
        let c = parsed(fixture!("eventbridge-metric-alarm.json"));
        let data = c.reason_data.expect("reasonData");
        assert_eq!(data["threshold"], json!(90.0));
        assert_eq!(data["recentDatapoints"], json!([33.33333333333333, 0.0, 0.0]));
        assert_eq!(data["evaluatedDatapoints"][0]["timestamp"], "2025-03-14T09:25:00.000+0000");

        // Not JSON: kept as the string it is. Empty: none.
        let mut v = fixture!("eventbridge-metric-alarm.json");
        v["detail"]["state"]["reasonData"] = json!("{not json");
        assert_eq!(parsed(v.clone()).reason_data, Some(json!("{not json")));
        v["detail"]["state"]["reasonData"] = json!("");
        assert_eq!(parsed(v.clone()).reason_data, None);
        v["detail"]["state"].as_object_mut().expect("state").remove("reasonData");
        assert_eq!(parsed(v).reason_data, None);
    }

    #[test]
    fn eventbridge_metric_math_alarm() {
        let c = parsed(fixture!("eventbridge-metric-math-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::MetricMath);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(c.delivery, Delivery::EventBridge);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 10:02:17.114 UTC));
        assert_eq!(c.reason_data.as_ref().map(|d| d["threshold"].clone()), Some(json!(20.0)));
    }

    #[test]
    fn eventbridge_anomaly_detection_alarm() {
        let c = parsed(fixture!("eventbridge-anomaly-detection-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::AnomalyDetection);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 10:15:41.902 UTC));
        let data = c.reason_data.expect("reasonData");
        assert_eq!(data["recentUpperThresholds"], json!([905.17]));
    }

    #[test]
    fn anomaly_detection_by_threshold_metric_id() {
        let mut v = fixture!("eventbridge-metric-math-alarm.json");
        v["detail"]["configuration"]["thresholdMetricId"] = json!("e1");
        assert_eq!(parsed(v).kind, AlarmKind::AnomalyDetection);
    }

    #[test]
    fn eventbridge_composite_alarm() {
        let c = parsed(fixture!("eventbridge-composite-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Composite);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(
            c.triggering_children,
            vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:databricks-prod-workspace-canary-failed"]
        );
        assert_eq!(c.suppressed_by, None);
        assert!(c.is_actionable_transition());
    }

    #[test]
    fn eventbridge_composite_suppressed() {
        let c = parsed(fixture!("eventbridge-composite-suppressed.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Composite);
        assert_eq!(c.suppressed_by.as_deref(), Some("Alarm"));
        assert_eq!(c.suppressed_reason.as_deref(), Some("Actions suppressed by Alarm"));
        assert_eq!(c.muted_by, None);
        assert!(c.is_suppressed());
        assert!(!c.is_actionable_transition());
    }

    #[test]
    fn eventbridge_muted() {
        let c = parsed(fixture!("eventbridge-muted.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert_eq!(
            c.muted_by.as_deref(),
            Some("arn:aws:cloudwatch:us-east-1:123456789012:alarm-mute-rule:databricks-prod-weekly-maintenance")
        );
        assert_eq!(c.suppressed_by, None);
        assert!(c.is_muted());
        assert!(!c.is_actionable_transition());

        // A muteDetail without the rule's ARN still means muted; null or {} means not muted.
        let mut v = fixture!("eventbridge-muted.json");
        v["detail"]["muteDetail"] = json!({"muteWindowEnd": "2025-03-14T13:45:00.000+0000"});
        assert!(parsed(v.clone()).muted_by.is_some_and(|m| m.contains("muteWindowEnd")));
        v["detail"]["muteDetail"] = json!(null);
        assert_eq!(parsed(v.clone()).muted_by, None);
        v["detail"]["muteDetail"] = json!({});
        assert_eq!(parsed(v).muted_by, None);
    }

    #[test]
    fn alarm_action_metric_alarm() {
        let c = parsed(fixture!("alarm-action-metric-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert_eq!(c.delivery, Delivery::AlarmAction);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 09:26:53.589 UTC));
    }

    #[test]
    fn alarm_action_composite_alarm() {
        let c = parsed(fixture!("alarm-action-composite-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Composite);
        assert_eq!(c.delivery, Delivery::AlarmAction);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(
            c.triggering_children,
            vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:databricks-prod-workspace-api-5xx"]
        );
        assert!(c.is_actionable_transition());
    }

    #[test]
    fn alarm_action_composite_with_suppressor_whose_wait_period_ran_out() {
        let c = parsed(fixture!("alarm-action-composite-with-suppressor.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Composite);
        assert_eq!(c.delivery, Delivery::AlarmAction);
        // The previous state was suppressed by WaitPeriod; only the new state's suppression counts.
        assert_eq!(c.old_state, AlarmState::Alarm);
        assert_eq!(c.suppressed_by, None);
        assert!(!c.is_transition());
        assert!(c.is_actionable_transition());
    }

    #[test]
    fn sns_metric_alarm() {
        let c = parsed(fixture!("sns-metric-alarm.json"));
        assert_primary_into_alarm(&c);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert_eq!(c.delivery, Delivery::Sns);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 09:26:53.589 UTC));
        // AlarmDescription is null.
        assert_eq!(c.description, None);
        assert_eq!(c.reason_data, None);
        assert!(c.reason.starts_with("Threshold Crossed: 3 out of the last 3 datapoints"));
    }

    #[test]
    fn sns_composite_alarm_without_trigger() {
        let v = fixture!("sns-composite-alarm.json");
        let message: Value = serde_json::from_str(v["Records"][0]["Sns"]["Message"].as_str().expect("Message")).expect("JSON");
        assert!(message.get("Trigger").is_none(), "the fixture must have no Trigger");
        let c = parsed(v);
        assert_primary_into_alarm(&c);
        assert_eq!(c.kind, AlarmKind::Composite);
        assert_eq!(c.delivery, Delivery::Sns);
        assert_eq!(c.state_change_time, datetime!(2025-03-14 15:41:07.250 UTC));
        assert_eq!(
            c.triggering_children,
            vec!["arn:aws:cloudwatch:us-east-1:123456789012:alarm:databricks-prod-workspace-canary-failed"]
        );
        assert!(c.description.is_some());
    }

    #[test]
    fn the_same_state_change_through_three_paths_has_one_execution_id() {
        let eventbridge = parsed(fixture!("eventbridge-metric-alarm.json"));
        let action = parsed(fixture!("alarm-action-metric-alarm.json"));
        let sns = parsed(fixture!("sns-metric-alarm.json"));
        assert_eq!(
            [eventbridge.delivery, action.delivery, sns.delivery],
            [Delivery::EventBridge, Delivery::AlarmAction, Delivery::Sns]
        );
        let id = eventbridge.execution_id();
        assert_eq!(action.execution_id(), id);
        assert_eq!(sns.execution_id(), id);
        assert_eq!(eventbridge.dedup_key(), format!("{ARN}|2025-03-14T09:26:53.589Z"));
        // Same normalized values apart from the delivery and what SNS does not carry.
        assert_eq!(AlarmChange { delivery: Delivery::EventBridge, ..action }, eventbridge);
        assert_eq!(
            (sns.alarm_arn, sns.region, sns.new_state, sns.old_state, sns.kind, sns.reason),
            (
                eventbridge.alarm_arn,
                eventbridge.region,
                eventbridge.new_state,
                eventbridge.old_state,
                eventbridge.kind,
                eventbridge.reason
            )
        );
    }

    #[test]
    fn execution_ids_are_short_safe_and_distinct() {
        let files = [
            fixture!("eventbridge-metric-alarm.json"),
            fixture!("eventbridge-metric-math-alarm.json"),
            fixture!("eventbridge-anomaly-detection-alarm.json"),
            fixture!("eventbridge-composite-alarm.json"),
            fixture!("eventbridge-composite-suppressed.json"),
            fixture!("eventbridge-muted.json"),
            fixture!("alarm-action-composite-alarm.json"),
            fixture!("alarm-action-composite-with-suppressor.json"),
            fixture!("sns-composite-alarm.json"),
            fixture!("eventbridge-ok.json"),
            fixture!("eventbridge-insufficient-data.json"),
            fixture!("eventbridge-not-in-policy.json"),
        ];
        let mut ids: Vec<String> = files.into_iter().map(|v| parsed(v).execution_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), "alarm-".len() + 20, "{id}");
            assert!(id.len() <= 64);
            assert!(id.starts_with("alarm-"));
            assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{id}");
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "every fixture is a different state change");
    }

    #[test]
    fn execution_id_is_stable_across_releases() {
        // Pinned: a changed hash would re-run executions already recorded under the old id.
        // Computed independently: python3 -c "import hashlib; print(hashlib.sha256(b'<ARN>|<time>').hexdigest()[:20])"
        let c = parsed(fixture!("eventbridge-metric-alarm.json"));
        assert_eq!(c.execution_id(), "alarm-df6f1cec6f49a306bbc3");
    }

    #[test]
    fn execution_id_ignores_precision_beyond_milliseconds_and_the_offset() {
        let base = parsed(fixture!("eventbridge-metric-alarm.json"));
        for ts in [
            "2025-03-14T09:26:53.589+00:00",
            "2025-03-14T09:26:53.589Z",
            "2025-03-14T09:26:53.589912Z",
            "2025-03-14T11:26:53.589+0200",
            "2025-03-14T04:26:53.589-05:00",
        ] {
            let mut v = fixture!("eventbridge-metric-alarm.json");
            v["detail"]["state"]["timestamp"] = json!(ts);
            assert_eq!(parsed(v).execution_id(), base.execution_id(), "{ts}");
        }
        let mut v = fixture!("eventbridge-metric-alarm.json");
        v["detail"]["state"]["timestamp"] = json!("2025-03-14T09:26:53.590+0000");
        assert_ne!(parsed(v).execution_id(), base.execution_id());
    }

    #[test]
    fn eventbridge_ok() {
        let c = parsed(fixture!("eventbridge-ok.json"));
        assert_eq!(c.alarm_arn, ARN);
        assert_eq!(c.new_state, AlarmState::Ok);
        assert_eq!(c.old_state, AlarmState::Alarm);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert!(c.is_transition());
        assert!(!c.is_actionable_transition());
    }

    #[test]
    fn eventbridge_insufficient_data() {
        let c = parsed(fixture!("eventbridge-insufficient-data.json"));
        assert_eq!(c.alarm_arn, ARN);
        assert_eq!(c.new_state, AlarmState::InsufficientData);
        assert_eq!(c.old_state, AlarmState::Ok);
        assert_eq!(c.reason, "Insufficient Data: 3 datapoints were unknown.");
        assert!(!c.is_actionable_transition());
    }

    #[test]
    fn eventbridge_not_in_policy_names_another_alarm() {
        let c = parsed(fixture!("eventbridge-not-in-policy.json"));
        assert_eq!(c.alarm_name, "databricks-prod-cluster-cost-high");
        assert_eq!(c.alarm_arn, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:databricks-prod-cluster-cost-high");
        assert_eq!(c.new_state, AlarmState::Alarm);
        assert_eq!(c.kind, AlarmKind::Metric);
        assert!(c.is_actionable_transition());
    }

    #[test]
    fn garbage_is_not_an_alarm() {
        let msg = rejected(fixture!("garbage-not-an-alarm.json"));
        assert_eq!(
            msg,
            "not a CloudWatch alarm state change: Records[0] is not an SNS record (event source \"aws:s3\"); \
             expected an EventBridge 'CloudWatch Alarm State Change' event, a CloudWatch alarm Lambda action \
             payload, or an SNS-wrapped alarm notification"
        );
        let msg = rejected(json!({"hello": "world"}));
        assert!(msg.starts_with("not a CloudWatch alarm state change: unrecognized payload"), "{msg}");
        assert!(msg.ends_with("or an SNS-wrapped alarm notification"), "{msg}");
    }

    #[test]
    fn rejections_name_the_field() {
        let mut v = fixture!("eventbridge-metric-alarm.json");
        v["detail"]["state"].as_object_mut().expect("state").remove("value");
        let msg = rejected(v);
        assert!(msg.starts_with("not a CloudWatch alarm state change: missing detail.state.value; expected"), "{msg}");

        let cases: Vec<(Value, &str)> = vec![
            (json!([1, 2]), "the payload is an array, not a JSON object"),
            (json!(null), "the payload is null, not a JSON object"),
            (json!("nope"), "the payload is a string that is not JSON"),
            (
                json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"}),
                "EventBridge event with detail-type \"EC2 Instance State-change Notification\"",
            ),
            (
                json!({"detail-type": "CloudWatch Alarm State Change", "source": "my.app", "detail": {}}),
                "EventBridge event with source \"my.app\", not \"aws.cloudwatch\"",
            ),
            (
                json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "resources": []}),
                "missing resources[0] (the alarm ARN)",
            ),
            (json!({"Records": []}), "Records is empty"),
            (json!({"Records": [{"Sns": {"Message": "{oops"}}]}), "Records[0].Sns.Message is not JSON"),
            (json!({"Records": [{"Sns": {"Message": {"AlarmName": "x"}}}]}), "Records[0].Sns.Message is an object, not a string"),
            (
                json!({"Records": [{"Sns": {"Message": "{}"}}, {"Sns": {"Message": "{}"}}]}),
                "Records has 2 entries, an SNS event has one",
            ),
            (json!({"AlarmName": "x", "NewStateValue": "ALARM"}), "missing AlarmArn"),
            (json!({"alarmArn": ARN, "alarmData": []}), "alarmData is an array, not an object"),
            (
                json!({"alarmArn": "arn:aws:sns:us-east-1:123456789012:topic", "alarmData": {}}),
                "\"arn:aws:sns:us-east-1:123456789012:topic\" is not a CloudWatch alarm ARN",
            ),
            (
                json!({"alarmArn": ARN, "alarmData": {"state": {"value": "FIRING"}}}),
                "alarmData.state.value is \"FIRING\", not an alarm state (OK, ALARM or INSUFFICIENT_DATA)",
            ),
            (json!({"alarmArn": ARN, "alarmData": {"state": {"value": "ALARM"}}}), "missing alarmData.previousState"),
            (
                json!({"alarmArn": ARN, "alarmData": {"state": {"value": "ALARM"}, "previousState": {"value": "OK"}}}),
                "missing alarmData.state.timestamp",
            ),
            (
                json!({"alarmArn": ARN, "alarmData": {"state": {"value": "ALARM", "timestamp": "yesterday"},
                    "previousState": {"value": "OK"}}}),
                "alarmData.state.timestamp is \"yesterday\", not a timestamp",
            ),
        ];
        for (payload, expected) in cases {
            let msg = rejected(payload.clone());
            assert!(msg.contains(expected), "{payload}: {msg}");
            assert!(msg.ends_with("or an SNS-wrapped alarm notification"), "{msg}");
        }
    }

    #[test]
    fn region_comes_from_the_arn_not_the_display_name() {
        let mut v = fixture!("sns-metric-alarm.json");
        let mut message: Value =
            serde_json::from_str(v["Records"][0]["Sns"]["Message"].as_str().expect("Message")).expect("JSON");
        assert_eq!(message["Region"], "US East (N. Virginia)");
        message["AlarmArn"] = json!("arn:aws:cloudwatch:eu-west-1:210987654321:alarm:elsewhere");
        message["Region"] = json!("EU (Ireland)");
        v["Records"][0]["Sns"]["Message"] = json!(message.to_string());
        let c = parsed(v);
        assert_eq!((c.region.as_str(), c.account_id.as_str()), ("eu-west-1", "210987654321"));
        // The EventBridge envelope's region/account are ignored too: the ARN decides.
        let mut v = fixture!("eventbridge-metric-alarm.json");
        v["region"] = json!("us-west-2");
        assert_eq!(parsed(v).region, "us-east-1");
    }

    #[test]
    fn bare_notification_envelope_and_string_payloads() {
        let event = fixture!("sns-metric-alarm.json");
        let expected = parsed(event.clone()).execution_id();
        let envelope = event["Records"][0]["Sns"].clone();
        let message_text = envelope["Message"].as_str().expect("Message").to_owned();
        let bare: Value = serde_json::from_str(&message_text).expect("JSON");
        for payload in [envelope, bare, json!(message_text), json!(event.to_string())] {
            let c = parsed(payload);
            assert_eq!(c.delivery, Delivery::Sns);
            assert_eq!(c.execution_id(), expected);
        }
    }

    #[test]
    fn an_older_sns_notification_without_alarm_arn_gets_it_derived() {
        // Older notifications carry no AlarmArn: account + the region's display name + the alarm name give it,
        // and so the same execution id as the other deliveries of the same change.
        let with_arn: Value = json!({
            "AlarmName": NAME, "AWSAccountId": "123456789012", "NewStateValue": "ALARM", "OldStateValue": "OK",
            "StateChangeTime": "2021-06-21T18:56:35.084+0000", "Region": "US East (N. Virginia)", "AlarmArn": ARN,
        });
        let mut without = with_arn.clone();
        without.as_object_mut().unwrap().remove("AlarmArn");
        let (a, b) = (parsed(with_arn), parsed(without.clone()));
        assert_eq!((b.alarm_arn.as_str(), b.region.as_str()), (ARN, "us-east-1"));
        assert_eq!(a.execution_id(), b.execution_id());
        without["Region"] = json!("AWS GovCloud (US-West)");
        assert!(parsed(without.clone()).alarm_arn.starts_with("arn:aws-us-gov:cloudwatch:us-gov-west-1:"));
        without["Region"] = json!("Atlantis (Deep)");
        assert!(parse(&without).unwrap_err().to_string().contains("missing AlarmArn"));
    }

    #[test]
    fn sns_edge_cases() {
        let base: Value = json!({
            "AlarmName": NAME, "AlarmDescription": null, "AWSAccountId": "123456789012",
            "NewStateValue": "ALARM", "OldStateValue": "INSUFFICIENT_DATA", "NewStateReason": "r",
            "StateChangeTime": "2021-06-21T18:56:35.084+0000", "Region": "US East (N. Virginia)", "AlarmArn": ARN,
        });
        // No Trigger, no AlarmRule: unknown kind, still parsed.
        let c = parsed(base.clone());
        assert_eq!(c.kind, AlarmKind::Unknown);
        assert_eq!(c.old_state, AlarmState::InsufficientData);
        assert_eq!(c.state_change_time, datetime!(2021-06-21 18:56:35.084 UTC));
        assert_eq!(c.description, None);

        let with = |trigger: Value| {
            let mut v = base.clone();
            v["Trigger"] = trigger;
            parsed(v).kind
        };
        assert_eq!(with(json!({"MetricName": "CPUUtilization", "Namespace": "AWS/EC2"})), AlarmKind::Metric);
        assert_eq!(
            with(json!({"Metrics": [{"Expression": "m1*1", "Id": "e1", "ReturnData": true},
                {"Id": "m1", "MetricStat": {"Metric": {"MetricName": "NetworkOut"}}, "ReturnData": false}]})),
            AlarmKind::MetricMath
        );
        assert_eq!(
            with(json!({"ThresholdMetricId": "ad1", "Metrics": [{"Id": "m1", "MetricStat": {}},
                {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)"}]})),
            AlarmKind::AnomalyDetection
        );
        assert_eq!(with(json!(null)), AlarmKind::Unknown);

        // An empty description counts as none; the alarm name falls back to the ARN's.
        let mut v = base.clone();
        v["AlarmDescription"] = json!("");
        v.as_object_mut().expect("object").remove("AlarmName");
        let c = parsed(v);
        assert_eq!(c.description, None);
        assert_eq!(c.alarm_name, NAME);
    }

    #[test]
    fn eventbridge_minimal_event_and_unknown_fields() {
        let v = json!({
            "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
            "resources": ["arn:aws-us-gov:cloudwatch:us-gov-west-1:123456789012:alarm:a:with:colons"],
            "something-new": {"x": 1},
            "detail": {
                "state": {"value": "ALARM", "timestamp": "2019-10-02T17:04:40Z", "newField": true},
                "previousState": {"value": "OK"},
                "configuration": null,
            }
        });
        let c = parsed(v);
        assert_eq!(c.alarm_name, "a:with:colons");
        assert_eq!(c.region, "us-gov-west-1");
        assert_eq!(c.kind, AlarmKind::Unknown);
        assert_eq!(c.reason, "");
        assert_eq!(c.state_change_time, datetime!(2019-10-02 17:04:40 UTC));
    }

    #[test]
    fn metrics_insights_query_is_metric_math() {
        let mut v = fixture!("eventbridge-metric-alarm.json");
        v["detail"]["configuration"]["metrics"] = json!([{
            "id": "m1", "returnData": true, "period": 60,
            "expression": "SELECT AVG(ConsumedWriteCapacityUnits) FROM \"AWS/DynamoDB\" GROUP BY TableName"
        }]);
        assert_eq!(parsed(v).kind, AlarmKind::MetricMath);
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| parse_timestamp(s);
        let expected = Some(datetime!(2019-10-02 17:04:40.989 UTC));
        assert_eq!(t("2019-10-02T17:04:40.989+0000"), expected);
        assert_eq!(t("2019-10-02T17:04:40.989+00:00"), expected);
        assert_eq!(t("2019-10-02T17:04:40.989Z"), expected);
        assert_eq!(t("2019-10-02T17:04:40.989123456Z"), expected);
        assert_eq!(t("2019-10-02T19:04:40.989+0200"), expected);
        assert_eq!(t("2019-10-02T17:04:40Z"), Some(datetime!(2019-10-02 17:04:40 UTC)));
        assert_eq!(t("2019-10-02T17:04:40+0000"), Some(datetime!(2019-10-02 17:04:40 UTC)));
        assert_eq!(t(" 2019-10-02T17:04:40.989+0000 "), expected);
        for bad in [
            "",
            "2019-10-02",
            "2019-10-02 17:04:40",
            "2019-10-02T17:04:40.989+000",
            "+0000",
            "2019-10-02T17:04:40.989+00000",
            "2023-08-04T12: 36: 15.490+0000",
            "9999-12-31T23:59:59.999-2359",
            "é2019-10-02T17:04:40+0000",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        let c = parsed(fixture!("eventbridge-metric-alarm.json"));
        assert_eq!(c.state_change_time_rfc3339(), "2025-03-14T09:26:53.589Z");
    }

    #[test]
    fn serializes_in_cloudwatch_words() {
        let c = parsed(fixture!("eventbridge-composite-suppressed.json"));
        let v = serde_json::to_value(&c).expect("serializes");
        assert_eq!(v["new_state"], "ALARM");
        assert_eq!(v["old_state"], "OK");
        assert_eq!(v["kind"], "composite");
        assert_eq!(v["delivery"], "eventbridge");
        assert_eq!(v["state_change_time"], "2025-03-14T11:30:00.021Z");
        let back: AlarmChange = serde_json::from_value(v).expect("deserializes");
        assert_eq!(back, c);
    }

    #[test]
    fn never_panics_on_odd_shapes() {
        let odd = [
            json!({}),
            json!({"detail-type": 7}),
            json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "resources": "x"}),
            json!({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "resources": [ARN],
                   "detail": {"state": [], "previousState": 3}}),
            json!({"alarmData": null}),
            json!({"alarmArn": 5, "alarmData": {}}),
            json!({"Records": {"Sns": 1}}),
            json!({"Records": [{"Sns": null}]}),
            json!({"Records": [42]}),
            json!({"Type": "Notification", "Message": 5}),
            json!({"AlarmArn": "arn:aws:cloudwatch:us-east-1:123:alarm:", "NewStateValue": "ALARM"}),
            json!({"AlarmArn": "arn:aws:cloudwatch:US-EAST-1:123:alarm:x", "NewStateValue": "ALARM"}),
            json!({"AlarmArn": ARN, "NewStateValue": 1, "OldStateValue": "OK"}),
            json!({"AlarmArn": ARN, "NewStateValue": "ALARM", "OldStateValue": "OK", "StateChangeTime": 17}),
            json!(json!({"a": 1}).to_string()),
        ];
        for v in odd {
            let msg = rejected(v.clone());
            assert!(msg.starts_with("not a CloudWatch alarm state change: "), "{v}: {msg}");
        }
    }

    // ---- the crate's types for what is inside the envelopes refuse real payloads: why our parsing stays ----

    /// The alarm notification inside an SNS fixture's `Message`.
    fn sns_notification(event: &Value) -> Value {
        serde_json::from_str(event["Records"][0]["Sns"]["Message"].as_str().expect("Message")).expect("JSON")
    }

    #[test]
    fn crate_sns_event_and_envelope_accept_the_real_deliveries() {
        // The envelopes themselves are the crate's: every real SNS delivery fits them.
        for event in [fixture!("sns-metric-alarm.json"), fixture!("sns-composite-alarm.json")] {
            let typed: aws_lambda_events::event::sns::SnsEvent = serde_json::from_value(event.clone()).expect("SnsEvent");
            assert_eq!(Some(typed.records[0].sns.message.as_str()), event["Records"][0]["Sns"]["Message"].as_str());
            SnsMessage::deserialize(&event["Records"][0]["Sns"]).expect("SnsMessage");
        }
        for file in [fixture!("eventbridge-metric-alarm.json"), fixture!("eventbridge-composite-suppressed.json")] {
            EventBridgeEnvelope::deserialize(&file).expect("EventBridgeEvent");
        }
    }

    #[test]
    fn crate_sns_alarm_payload_refuses_a_null_alarm_description() {
        // sns::CloudWatchAlarmPayload.alarm_description is a String; CloudWatch sends `"AlarmDescription": null`
        // for an alarm that has no description.
        let notification = sns_notification(&fixture!("sns-metric-alarm.json"));
        assert!(notification["AlarmDescription"].is_null());
        let err = serde_json::from_value::<CloudWatchAlarmPayload>(notification).expect_err("refused");
        assert!(err.to_string().contains("invalid type: null, expected a string"), "{err}");
    }

    #[test]
    fn crate_sns_alarm_payload_refuses_a_composite_alarm() {
        // sns::CloudWatchAlarmPayload.trigger is required; a composite alarm's notification has an AlarmRule and
        // TriggeringChildren, never a Trigger.
        let notification = sns_notification(&fixture!("sns-composite-alarm.json"));
        assert!(notification.get("Trigger").is_none() && notification["AlarmDescription"].is_string());
        let err = serde_json::from_value::<CloudWatchAlarmPayload>(notification).expect_err("refused");
        assert!(err.to_string().contains("missing field `Trigger`"), "{err}");
    }

    #[test]
    fn crate_metric_alarm_configuration_refuses_metric_math_and_anomaly_detection() {
        // cloudwatch_alarms::CloudWatchMetricDefinition.metric_stat is required; a metric-math alarm's expression
        // entry, and an anomaly-detection alarm's ANOMALY_DETECTION_BAND entry, have none.
        type MetricAlarmData = CloudWatchAlarmData<CloudWatchMetricAlarmConfiguration>;
        for file in [fixture!("eventbridge-metric-math-alarm.json"), fixture!("eventbridge-anomaly-detection-alarm.json")] {
            let err = serde_json::from_value::<MetricAlarmData>(file["detail"].clone()).expect_err("refused");
            assert!(err.to_string().contains("missing field `metricStat`"), "{err}");
        }
        // The same type takes a single-metric alarm: metricStat is the only field at fault.
        serde_json::from_value::<MetricAlarmData>(fixture!("eventbridge-metric-alarm.json")["detail"].clone())
            .expect("a single-metric alarm is accepted");
    }

    #[test]
    fn crate_composite_alarm_refuses_a_composite_without_suppressor() {
        // cloudwatch_alarms::CloudWatchCompositeAlarmConfiguration requires actions_suppressor and both of its
        // periods; a composite alarm without an actions suppressor has none of them.
        let action = fixture!("alarm-action-composite-alarm.json");
        assert!(action["alarmData"]["configuration"].get("actionsSuppressor").is_none());
        let err = serde_json::from_value::<CloudWatchCompositeAlarm>(action).expect_err("refused");
        assert!(err.to_string().contains("missing field `actionsSuppressor`"), "{err}");
        let event = fixture!("eventbridge-composite-alarm.json");
        let err = serde_json::from_value::<CloudWatchAlarmData<CloudWatchCompositeAlarmConfiguration>>(event["detail"].clone())
            .expect_err("refused");
        assert!(err.to_string().contains("missing field `actionsSuppressor`"), "{err}");
        // The same type takes a composite alarm that has a suppressor.
        serde_json::from_value::<CloudWatchCompositeAlarm>(fixture!("alarm-action-composite-with-suppressor.json"))
            .expect("a composite alarm with a suppressor is accepted");
    }
}
