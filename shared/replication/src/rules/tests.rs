//! Tests over the real-shaped fixtures in `events/replication-failure/`.

use super::aggregate::{FailedObject, IncidentKey, SAMPLE_KEYS, aggregate};
use super::classify::{Category, FailureReason, Severity};
use super::event::{
    BatchSource, Envelope, ParseError, Payload, ReplicationEventType as T, ReplicationRecord, Wrapping, bucket_from_arn,
    decode_key, parse_body, parse_payload,
};
use super::incident::{Incident, IncidentState, OwedMessages, PageDecision, evaluate_quiet, merge, merge_delivery};
use super::ledger::{Delivered, message_fingerprint};
use super::manifest::{build_manifests, encode_key};
use super::outbox::{PageKind, StoredMessage};
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sns::SnsMessage;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeSet;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const SQS_DIRECT: &str = include_str!("../../../../events/replication-failure/sqs-direct-failed-replication.json");
const SQS_SNS_ENVELOPE: &str = include_str!("../../../../events/replication-failure/sqs-sns-envelope.json");
const SQS_SNS_RAW: &str = include_str!("../../../../events/replication-failure/sqs-sns-raw.json");
const SNS_EVENT: &str = include_str!("../../../../events/replication-failure/sns-event.json");
const DIRECT: &str = include_str!("../../../../events/replication-failure/direct-s3-event.json");
const MISSED: &str = include_str!("../../../../events/replication-failure/missed-threshold.json");
const AFTER: &str = include_str!("../../../../events/replication-failure/replicated-after-threshold.json");
const NOT_TRACKED: &str = include_str!("../../../../events/replication-failure/not-tracked.json");
const TEST_EVENT: &str = include_str!("../../../../events/replication-failure/s3-test-event.json");
const POISON: &str = include_str!("../../../../events/replication-failure/sqs-with-poison-message.json");

const SRC: &str = "databricks-prod-data-use1";
const DST: &str = "databricks-prod-data-usw2";
const PART_KEY: &str = "tables/sales/orders/date=2024-09-05/part-00000-3f1c2a9e-7b4d-4e2a-9c1f-5d8e6a0b7c12.c000.snappy.parquet";

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn records<'a>(p: &'a Payload<'_>) -> Vec<&'a ReplicationRecord> {
    p.records().map(|(_, r)| r).collect()
}

// ---------- parsing ----------

#[test]
fn sqs_direct_bodies_with_several_records_and_an_encoded_key() {
    let v = value(SQS_DIRECT);
    let p = parse_payload(&v);
    let Payload::Sqs(msgs) = &p else { panic!("expected SQS, got {p:?}") };
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0].message_id, "5f6d3a3e-1c2b-4f4e-9d1a-2b3c4d5e6f70");
    assert!(msgs[0].body.starts_with("{\"Records\":[{\"eventVersion\":\"2.2\""));
    let n = msgs[0].parsed.as_ref().unwrap();
    assert_eq!((n.records.len(), n.test_event, n.wrapping), (2, false, Wrapping::S3Notification));

    let r = &n.records[0];
    assert_eq!(r.event_type, T::OperationFailedReplication);
    assert_eq!(r.event_time, Some(datetime!(2024-09-05 21:04:32.527 UTC)));
    assert_eq!(r.source_bucket, SRC);
    assert_eq!(r.key, PART_KEY);
    assert_eq!(r.version_id.as_deref(), Some("Lm4yb0b1XR0w8c4UOyQ7nqJq3p6HjF1a"));
    assert_eq!(r.size, Some(134_217_728));
    assert_eq!(r.sequencer.as_deref(), Some("0066DA1CBF104C0D51"));
    assert_eq!(r.rule_id.as_deref(), Some("delta-tables"));
    assert_eq!(r.destination_bucket.as_deref(), Some(DST));
    assert_eq!(r.failure_reason, Some(FailureReason::DstPutObjectNotPermitted));
    assert_eq!(r.s3_operation.as_deref(), Some("OBJECT_PUT"));
    assert_eq!(r.request_time.as_deref(), Some("2024-09-05T21:03:59.168Z"));
    assert_eq!((r.threshold.as_deref(), r.replication_time.as_deref()), (None, None));
    assert_eq!(n.records[1].key, "tables/sales/orders/_delta_log/00000000000000000123.json");

    let odd = &msgs[1].parsed.as_ref().unwrap().records[0];
    assert_eq!(odd.key, "reports/Q3 summary+final 100%.csv");
    assert_eq!(odd.failure_reason, Some(FailureReason::AssumeRoleNotPermitted));
    let race = &msgs[2].parsed.as_ref().unwrap().records[0];
    assert_eq!(race.failure_reason, Some(FailureReason::SrcKeyNotFound));

    let indexed: Vec<(usize, &str)> = p.records().map(|(i, r)| (i, r.key.as_str())).collect();
    assert_eq!(indexed.len(), 4);
    assert_eq!(indexed.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 0, 1, 2]);
    assert!(p.failures().is_empty());
    assert_eq!(p.source(), BatchSource::Sqs);
}

#[test]
fn sqs_body_holding_an_sns_envelope() {
    let v = value(SQS_SNS_ENVELOPE);
    let p = parse_payload(&v);
    let Payload::Sqs(msgs) = &p else { panic!("expected SQS, got {p:?}") };
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        let n = m.parsed.as_ref().unwrap();
        assert_eq!(n.wrapping, Wrapping::SnsEnvelope);
        assert_eq!(n.records.len(), 1);
        assert_eq!(n.records[0].failure_reason, Some(FailureReason::DstKmsKeyInvalidState));
        assert_eq!(n.records[0].destination_bucket.as_deref(), Some(DST));
    }
    let r = &msgs[1].parsed.as_ref().unwrap().records[0];
    assert_eq!(r.key, "tables/sales/customers/_delta_log/00000000000000000042.checkpoint.parquet");
    assert_eq!(r.event_time, Some(datetime!(2024-09-05 22:10:02.450 UTC)));
}

#[test]
fn sqs_body_from_raw_sns_delivery() {
    let v = value(SQS_SNS_RAW);
    let p = parse_payload(&v);
    let rs = records(&p);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].failure_reason, Some(FailureReason::DstPutTaggingNotPermitted));
    assert!(rs[0].key.starts_with("unity-catalog/metastore/tables/7d3e1f2a-6b5c-4d8e-9f0a-1b2c3d4e5f6a/part-00000-"));
    let Payload::Sqs(msgs) = &p else { panic!("expected SQS") };
    assert_eq!(msgs[0].parsed.as_ref().unwrap().wrapping, Wrapping::S3Notification);
}

#[test]
fn sns_lambda_event() {
    let v = value(SNS_EVENT);
    let p = parse_payload(&v);
    let Payload::Sns(msgs) = &p else { panic!("expected SNS, got {p:?}") };
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].message_id, "95df01b4-ee98-5cb9-9903-4c221d41eb5e");
    let r = &msgs[0].parsed.as_ref().unwrap().records[0];
    assert_eq!(r.key, "checkpoints/streaming/orders_bronze/offsets/1234");
    assert_eq!(r.failure_reason, Some(FailureReason::DstBucketUnversioned));
    assert_eq!(r.size, Some(512));
    assert_eq!(p.source(), BatchSource::Sns);
}

#[test]
fn direct_s3_invocation() {
    let v = value(DIRECT);
    let p = parse_payload(&v);
    let Payload::Direct(Ok(n)) = &p else { panic!("expected direct, got {p:?}") };
    assert_eq!(n.records.len(), 2);
    assert_eq!(n.records[0].failure_reason, Some(FailureReason::SrcGetObjectNotPermitted));
    assert_eq!(n.records[0].key, "mlflow/artifacts/3/9f8e7d6c5b4a/artifacts/model/model.pkl");
    let delete = &n.records[1];
    assert_eq!(delete.size, None);
    assert_eq!(delete.s3_operation.as_deref(), Some("OBJECT_DELETE"));
    assert_eq!(delete.failure_reason, Some(FailureReason::DstDelObjNotPermitted));
    assert_eq!(p.records().map(|(i, _)| i).collect::<Vec<_>>(), vec![0, 0]);
}

#[test]
fn missed_threshold_with_numbers() {
    let v = value(MISSED);
    let p = parse_payload(&v);
    let rs = records(&p);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].event_type, T::OperationMissedThreshold);
    assert_eq!(rs[0].failure_reason, None);
    assert_eq!(rs[0].threshold.as_deref(), Some("900"));
    assert_eq!(rs[0].replication_time.as_deref(), Some("912"));
    assert_eq!(rs[1].replication_time.as_deref(), Some("905"));
    assert_eq!(
        rs[0].key,
        "tables/sales/orders/date=2024-09-06/part-00012-5e6f7a8b-9c0d-4e1f-2a3b-4c5d6e7f8a9b.c000.snappy.parquet"
    );
}

#[test]
fn replicated_after_threshold_with_strings() {
    let v = value(AFTER);
    let p = parse_payload(&v);
    let rs = records(&p);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].event_type, T::OperationReplicatedAfterThreshold);
    assert_eq!((rs[0].threshold.as_deref(), rs[0].replication_time.as_deref()), (Some("900"), Some("1250")));
}

#[test]
fn not_tracked() {
    let v = value(NOT_TRACKED);
    let p = parse_payload(&v);
    let rs = records(&p);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].event_type, T::OperationNotTracked);
    assert_eq!(rs[0].failure_reason, None);
    assert_eq!(rs[0].rule_id.as_deref(), Some("delta-tables"));
}

#[test]
fn test_event_is_accepted_and_empty() {
    let v = value(TEST_EVENT);
    let p = parse_payload(&v);
    let Payload::Sqs(msgs) = &p else { panic!("expected SQS") };
    let n = msgs[0].parsed.as_ref().unwrap();
    assert!(n.test_event);
    assert!(n.records.is_empty());
    // Directly invoked, and inside an SNS envelope.
    let direct = json!({"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-09-05T20:58:11.712Z",
        "Bucket":SRC,"RequestId":"5582815E1AEA5ADF","HostId":"x"});
    assert!(matches!(parse_payload(&direct), Payload::Direct(Ok(n)) if n.test_event));
    let inner = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-09-05T20:58:11.712Z","Bucket":"b"}"#;
    let envelope = json!({"Type":"Notification","MessageId":"m","TopicArn":"t","Message":inner}).to_string();
    let n = parse_body(&envelope).unwrap();
    assert!(n.test_event);
    assert_eq!(n.wrapping, Wrapping::SnsEnvelope);
}

#[test]
fn poison_message_fails_alone() {
    let v = value(POISON);
    let p = parse_payload(&v);
    let Payload::Sqs(msgs) = &p else { panic!("expected SQS") };
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, r#"{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","#);
    let err = msgs[0].parsed.as_ref().unwrap_err();
    assert!(matches!(err, ParseError::NotJson { .. }), "{err:?}");
    assert!(err.to_string().starts_with("not JSON (EOF while parsing"), "{err}");
    assert!(err.to_string().contains("expected an S3 event notification"));
    let ok = msgs[1].parsed.as_ref().unwrap();
    assert_eq!(ok.records[0].failure_reason, Some(FailureReason::DstBucketNotFound));
    let failures = p.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 0);
    assert_eq!(records(&p).len(), 1);
}

fn one_record(patch: impl FnOnce(&mut Value)) -> Result<super::event::Notification, ParseError> {
    let mut v = value(DIRECT);
    let Value::Array(rs) = &mut v["Records"] else { panic!() };
    rs.truncate(1);
    patch(&mut rs[0]);
    parse_body(&v.to_string())
}

#[test]
fn event_versions() {
    for ok in ["2.1", "2.2", "2.3", "2.10"] {
        assert!(one_record(|r| r["eventVersion"] = json!(ok)).is_ok(), "{ok}");
    }
    assert!(one_record(|r| r.as_object_mut().unwrap().remove("eventVersion").map(|_| ()).unwrap()).is_ok());
    let err = one_record(|r| r["eventVersion"] = json!("1.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Records[0].eventVersion is "1.0": expected an S3 notification version 2.x (replication events use 2.2)"#
    );
    let err = one_record(|r| r["eventVersion"] = json!("3.0")).unwrap_err();
    assert!(err.to_string().contains(r#""3.0""#));
}

#[test]
fn record_errors_name_the_field() {
    let err = one_record(|r| r["eventName"] = json!("ObjectCreated:Put")).unwrap_err();
    assert!(err.to_string().starts_with(r#"Records[0].eventName is "ObjectCreated:Put": expected Replication:"#), "{err}");
    let err = one_record(|r| {
        r["s3"]["object"].as_object_mut().unwrap().remove("key");
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "Records[0].s3.object.key is missing: expected the object key (URL-encoded)");
    let err = one_record(|r| r["s3"]["object"]["size"] = json!("big")).unwrap_err();
    assert_eq!(
        err,
        ParseError::InvalidJson {
            path: "Records[0].s3.object.size".into(),
            problem: r#"invalid type: string "big", expected u64"#.into()
        }
    );
    let err = one_record(|r| r["eventTime"] = json!("yesterday")).unwrap_err();
    assert!(err.to_string().contains("eventTime is \"yesterday\": expected an RFC 3339 time"), "{err}");
    let err = one_record(|r| r["eventSource"] = json!("aws:sqs")).unwrap_err();
    assert!(err.to_string().contains("expected aws:s3"));
    let err = one_record(|r| r["s3"]["object"]["key"] = json!("bad%FF")).unwrap_err();
    assert!(err.to_string().contains("decodes to UTF-8"), "{err}");
}

#[test]
fn lenient_about_optional_and_unknown_fields() {
    let n = one_record(|r| {
        r.as_object_mut().unwrap().remove("replicationEventData");
        r["somethingNew"] = json!({"a": 1});
        r["s3"]["object"]["versionId"] = Value::Null;
    })
    .unwrap();
    let r = &n.records[0];
    assert_eq!((r.rule_id.as_deref(), r.destination_bucket.as_deref(), r.failure_reason.as_ref()), (None, None, None));
    assert_eq!(r.version_id, None);
    let n = one_record(|r| {
        r["replicationEventData"]["threshold"] = json!(15.5);
        r["replicationEventData"]["replicationTime"] = Value::Null;
        r["replicationEventData"]["failureReason"] = json!("BrandNewReason");
    })
    .unwrap();
    assert_eq!(n.records[0].threshold.as_deref(), Some("15.5"));
    assert_eq!(n.records[0].replication_time, None);
    assert_eq!(n.records[0].failure_reason, Some(FailureReason::Unknown("BrandNewReason".into())));
}

#[test]
fn unrecognized_payloads_and_bodies() {
    assert!(matches!(parse_payload(&json!([1, 2])), Payload::Unrecognized(ParseError::UnexpectedShape { .. })));
    assert!(matches!(parse_payload(&json!({"Records": []})), Payload::Unrecognized(_)));
    assert!(matches!(parse_payload(&json!({"Records": [{"eventSource": "aws:kinesis"}]})), Payload::Unrecognized(_)));
    let Payload::Direct(Err(e)) = parse_payload(&json!({"hello": "world"})) else { panic!() };
    assert!(e.to_string().contains("expected an S3 notification with Records"), "{e}");
    let confirm = json!({"Type":"SubscriptionConfirmation","MessageId":"m","Token":"t","TopicArn":"a",
        "Message":"You have chosen to subscribe","SubscribeURL":"https://sns"})
    .to_string();
    assert_eq!(parse_body(&confirm).unwrap_err(), ParseError::NotSnsNotification { kind: "SubscriptionConfirmation".into() });
    let not_s3 = json!({"Type":"Notification","MessageId":"m","Message":"{\"hello\":1}"}).to_string();
    assert!(parse_body(&not_s3).unwrap_err().to_string().contains("not an S3 notification"));
    let err = parse_body("\"just a string\"").unwrap_err();
    assert_eq!(
        err.to_string(),
        concat!(
            r#".: invalid type: string "just a string", "#,
            "expected an S3 notification, an SNS envelope or the S3 test event (a JSON object)"
        )
    );
    let err = parse_body(r#"{"Records":[42]}"#).unwrap_err();
    assert_eq!(err.to_string(), "Records[0]: invalid type: integer `42`, expected an S3 event record (a JSON object)");
    let nested = json!({"Type":"Notification","Message": json!({"Type":"Notification","Message":"{}"}).to_string()});
    assert!(parse_body(&nested.to_string()).is_err(), "an envelope inside an envelope is not accepted");
    let no_body = json!({"Records":[{"eventSource":"aws:sqs","messageId":"x"}]});
    let Payload::Sqs(m) = parse_payload(&no_body) else { panic!() };
    assert!(m[0].parsed.as_ref().unwrap_err().to_string().starts_with("body is missing"));
}

// ---------- why the body has its own structs: aws_lambda_events' types refuse or lose real payloads ----------

/// The body of the first message of an SQS fixture, as JSON.
fn first_body(event: &str) -> Value {
    value(value(event)["Records"][0]["body"].as_str().unwrap())
}

#[test]
fn crate_s3_event_loses_replication_event_data() {
    // s3::S3EventRecord has no replicationEventData field: the crate takes a replication record and drops the
    // rule, destination bucket and failure reason that classify it.
    let body = first_body(SQS_DIRECT);
    assert!(body["Records"][0]["replicationEventData"]["failureReason"].is_string());
    let typed: S3Event = serde_json::from_value(body).expect("accepted");
    let back = serde_json::to_value(&typed).unwrap();
    assert!(back["Records"][0].get("replicationEventData").is_none(), "{back:#}");
}

#[test]
fn crate_s3_event_refuses_the_test_event() {
    // s3::S3Event.records is required; the s3:TestEvent S3 sends when a notification configuration is saved has no
    // Records.
    let body = first_body(TEST_EVENT);
    assert_eq!(body["Event"], "s3:TestEvent");
    let err = serde_json::from_value::<S3Event>(body).unwrap_err();
    assert!(err.to_string().contains("missing field `Records`"), "{err}");
}

#[test]
fn crate_sns_message_refuses_a_subscription_confirmation() {
    // sns::SnsMessage.unsubscribe_url is required; the SubscriptionConfirmation that SNS delivers to a subscribed
    // queue has none (sample from the SNS developer guide, "HTTP/HTTPS subscription confirmation JSON format").
    // Our struct reads its Type and answers "confirm the subscription" instead.
    let confirmation = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
        "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
        "Timestamp": "2012-04-26T20:45:04.751Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
    });
    let err = serde_json::from_value::<SnsMessage>(confirmation.clone()).unwrap_err();
    assert!(err.to_string().contains("missing field `UnsubscribeUrl`"), "{err}");
    assert_eq!(
        parse_body(&confirmation.to_string()).unwrap_err(),
        ParseError::NotSnsNotification { kind: "SubscriptionConfirmation".into() }
    );
    // The Notification envelope of an SQS body (no raw delivery) is one the crate takes: no gap there.
    let envelope: SnsMessage = serde_json::from_value(first_body(SQS_SNS_ENVELOPE)).expect("accepted");
    assert_eq!(envelope.sns_message_type, "Notification");
}

#[test]
fn key_decoding() {
    assert!(matches!(decode_key("plain/key.json"), Ok(Cow::Borrowed("plain/key.json"))));
    assert_eq!(decode_key("a+b%2Bc+100%25").unwrap(), "a b+c 100%");
    assert_eq!(decode_key("date%3D2024-09-05%2Fx").unwrap(), "date=2024-09-05/x");
    assert_eq!(decode_key("caf%C3%A9+%E2%82%AC").unwrap(), "café €");
    assert_eq!(decode_key("50%zz%4").unwrap(), "50%zz%4");
    assert_eq!(decode_key("%e2%82%ac").unwrap(), "€");
    assert!(decode_key("%FF").is_err());
}

#[test]
fn destination_from_arn() {
    assert_eq!(bucket_from_arn("arn:aws:s3:::databricks-prod-data-usw2"), DST);
    assert_eq!(bucket_from_arn("arn:aws-cn:s3:::b"), "b");
    assert_eq!(bucket_from_arn("plain-bucket"), "plain-bucket");
}

// ---------- aggregation ----------

#[test]
fn aggregates_a_batch_into_groups_and_incidents() {
    let v = value(SQS_DIRECT);
    let p = parse_payload(&v);
    let agg = aggregate(p.records());
    assert_eq!((agg.records, agg.duplicates, agg.incidents.len(), agg.group_count()), (4, 0, 1, 3));
    let inc = &agg.incidents[0];
    assert_eq!(inc.key, IncidentKey { source_bucket: SRC.into(), rule_id: "delta-tables".into() });
    assert_eq!(inc.messages, vec![0, 1, 2]);
    let causes: Vec<(&str, u64, Category)> =
        inc.groups.iter().map(|g| (g.key.cause(), g.count, g.classification.category)).collect();
    assert_eq!(
        causes,
        vec![
            ("AssumeRoleNotPermitted", 1, Category::ReplicationBroken),
            ("DstPutObjectNotPermitted", 2, Category::ReplicationBroken),
            ("SrcKeyNotFound", 1, Category::ObjectRace),
        ]
    );
    let put = &inc.groups[1];
    assert_eq!(put.first_event, Some(datetime!(2024-09-05 21:04:32.527 UTC)));
    assert_eq!(put.last_event, Some(datetime!(2024-09-05 21:04:33.104 UTC)));
    assert_eq!(put.sample_keys.len(), 2);
    assert_eq!(inc.failed(), 4);
    assert_eq!(inc.counts_by_reason().get("DstPutObjectNotPermitted"), Some(&2));
    assert_eq!(inc.highest().unwrap().severity, Severity::Critical);
    assert_eq!(inc.destination_buckets().into_iter().collect::<Vec<_>>(), vec![DST]);
    assert_eq!(agg.failed_objects.len(), 4);
    assert_eq!(
        agg.failed_objects[2],
        FailedObject {
            bucket: SRC,
            key: "reports/Q3 summary+final 100%.csv",
            version_id: Some("P9oQ8rS7tU6vW5xY4zA3bC2dE1fG0hIj")
        }
    );
}

#[test]
fn duplicate_deliveries_count_once() {
    let v = value(SQS_DIRECT);
    let p = parse_payload(&v);
    let once = aggregate(p.records());
    let twice = aggregate(p.records().chain(p.records()));
    assert_eq!((twice.records, twice.duplicates), (8, 4));
    assert_eq!(twice.incidents[0].groups, once.incidents[0].groups);
    assert_eq!(twice.failed_objects, once.failed_objects);
}

fn synthetic(n: usize, rule: &str, reason: Option<FailureReason>, event_type: T) -> Vec<ReplicationRecord> {
    (0..n)
        .map(|i| ReplicationRecord {
            event_type,
            event_time: Some(datetime!(2024-09-05 21:00 UTC) + Duration::seconds(i as i64)),
            source_bucket: SRC.into(),
            key: format!("tables/t/part-{i:05}.parquet"),
            version_id: Some(format!("v{i}")),
            size: Some(1),
            sequencer: None,
            rule_id: Some(rule.into()),
            destination_bucket: Some(DST.into()),
            failure_reason: reason.clone(),
            s3_operation: Some("OBJECT_PUT".into()),
            request_time: None,
            threshold: None,
            replication_time: None,
        })
        .collect()
}

#[test]
fn samples_are_bounded_and_order_independent() {
    let rs = synthetic(100, "r", Some(FailureReason::DstPutObjectNotPermitted), T::OperationFailedReplication);
    let fwd = aggregate(rs.iter().map(|r| (0, r)));
    let rev = aggregate(rs.iter().rev().map(|r| (0, r)));
    let s = &fwd.incidents[0].groups[0].sample_keys;
    assert_eq!(s.len(), SAMPLE_KEYS);
    assert_eq!(s, &rev.incidents[0].groups[0].sample_keys);
    assert_eq!(s.iter().collect::<BTreeSet<_>>().len(), SAMPLE_KEYS);
    // Not simply the first keys in either order.
    assert_ne!(s[0], "tables/t/part-00000.parquet");
}

#[test]
fn one_incident_per_bucket_and_rule() {
    let a = synthetic(3, "rule-a", Some(FailureReason::SrcKeyNotFound), T::OperationFailedReplication);
    let b = synthetic(2, "rule-b", None, T::OperationMissedThreshold);
    let agg = aggregate(a.iter().map(|r| (0, r)).chain(b.iter().map(|r| (1, r))));
    let ids: Vec<String> = agg.incidents.iter().map(|i| i.key.id()).collect();
    assert_eq!(ids, vec![format!("{SRC}__rule-a"), format!("{SRC}__rule-b")]);
    assert_eq!(agg.incidents[1].messages, vec![1]);
    assert_eq!(agg.failed_objects.len(), 3, "lag is not a failure and is not re-driven");
}

#[test]
fn incident_ids_are_safe_and_distinct() {
    let id = |b: &str, r: &str| IncidentKey { source_bucket: b.into(), rule_id: r.into() }.id();
    assert_eq!(id(SRC, "delta-tables"), "databricks-prod-data-use1__delta-tables");
    assert_eq!(id("b", "Replicate all/x_y"), "b__Replicate_20all_2Fx_5Fy");
    assert_eq!(id("b", "é"), "b___C3_A9");
    assert_eq!(id("b", ""), "b__");
    let pairs = [("a", "b__c"), ("a__b", "c"), ("a_", "_b"), ("a", "_b"), ("a_b", ""), ("a", "b_20c"), ("a", "b c")];
    let ids: BTreeSet<String> = pairs.iter().map(|(b, r)| id(b, r)).collect();
    assert_eq!(ids.len(), pairs.len(), "{ids:?}");
    for i in &ids {
        assert!(i.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)), "{i}");
    }
}

// ---------- incidents ----------

fn part(rs: &[ReplicationRecord]) -> super::aggregate::GroupedForIncident {
    let mut agg = aggregate(rs.iter().map(|r| (0, r)));
    assert_eq!(agg.incidents.len(), 1);
    agg.incidents.remove(0)
}

const NOW: OffsetDateTime = datetime!(2024-09-05 21:10 UTC);

#[test]
fn opens_pages_once_then_escalates() {
    let warn = part(&synthetic(3, "r", Some(FailureReason::DstPutTaggingNotPermitted), T::OperationFailedReplication));
    let (inc, d) = merge(None, &warn, NOW);
    assert_eq!(d, PageDecision::Opened);
    assert_eq!((inc.state, inc.pages_sent, inc.total_failed, inc.count_at_last_page), (IncidentState::Open, 1, 3, 3));
    assert_eq!((inc.highest_category, inc.highest_severity), (Category::DestinationProblem, Severity::Warning));
    assert_eq!(inc.id, format!("{SRC}__r"));

    let (inc, d) = merge(Some(inc), &warn, NOW + Duration::minutes(1));
    assert_eq!(d, PageDecision::None, "same severity, 6 < 30 failed");
    assert_eq!(inc.total_failed, 6);

    let crit = part(&synthetic(2, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication));
    let (inc, d) = merge(Some(inc), &crit, NOW + Duration::minutes(2));
    assert_eq!(d, PageDecision::Escalated { why: "highest severity rose from warning to critical (replication_broken)".into() });
    assert_eq!((inc.pages_sent, inc.count_at_last_page, inc.severity_at_last_page), (2, 8, Some(Severity::Critical)));

    let storm = part(&synthetic(80, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication));
    let (inc, d) = merge(Some(inc), &storm, NOW + Duration::minutes(3));
    assert_eq!(d, PageDecision::Escalated { why: "failed objects grew from 8 to 88 since the last page (10x or more)".into() });
    assert_eq!(inc.pages_sent, 3);
    let actions = inc.actions();
    assert_eq!(actions[0].cause, "AssumeRoleNotPermitted");
    assert_eq!(actions[0].count, 82);
    assert!(actions[0].action.starts_with("the replication role cannot be assumed"));
    assert_eq!(actions[1].cause, "DstPutTaggingNotPermitted");
}

#[test]
fn info_only_records_but_does_not_page() {
    let race = part(&synthetic(5, "r", Some(FailureReason::SrcKeyNotFound), T::OperationFailedReplication));
    let (inc, d) = merge(None, &race, NOW);
    assert_eq!(d, PageDecision::None);
    assert_eq!((inc.pages_sent, inc.highest_severity, inc.total_failed), (0, Severity::Info, 5));
    let tracked = part(&synthetic(1, "r", None, T::OperationNotTracked));
    let (inc, d) = merge(Some(inc), &tracked, NOW);
    assert_eq!(d, PageDecision::None);
    let lag = part(&synthetic(1, "r", None, T::OperationMissedThreshold));
    let (inc, d) = merge(Some(inc), &lag, NOW);
    assert_eq!(d, PageDecision::Opened, "the first warning opens the page");
    assert_eq!(inc.highest_category, Category::ReplicationLag);

    let mut quiet = merge(None, &race, NOW).0;
    assert_eq!(evaluate_quiet(&mut quiet, NOW + Duration::hours(2), Duration::hours(1)), PageDecision::None);
    assert_eq!(quiet.state, IncidentState::Closed, "info-only closes silently");
}

#[test]
fn merging_is_commutative_in_counts() {
    let mut a = synthetic(30, "r", Some(FailureReason::DstPutObjectNotPermitted), T::OperationFailedReplication);
    a.extend(synthetic(4, "r", None, T::OperationMissedThreshold));
    let mut b = synthetic(50, "r", Some(FailureReason::SrcKeyNotFound), T::OperationFailedReplication);
    for r in &mut b {
        r.key = format!("other/{}", r.key);
        r.event_time = r.event_time.map(|t| t - Duration::hours(1));
        r.destination_bucket = Some("databricks-prod-data-euw1".into());
    }
    b.extend(synthetic(2, "r", None, T::OperationReplicatedAfterThreshold));
    let (pa, pb) = (part(&a), part(&b));
    let (t1, t2) = (NOW, NOW + Duration::minutes(5));
    let ab = merge(Some(merge(None, &pa, t1).0), &pb, t2).0;
    let ba = merge(Some(merge(None, &pb, t1).0), &pa, t2).0;
    let counts = |i: &Incident| {
        let by = (i.counts_by_event_type.clone(), i.counts_by_reason.clone(), i.counts_by_category.clone());
        (by, i.total_events, i.total_failed)
    };
    assert_eq!(counts(&ab), counts(&ba));
    assert_eq!(ab.total_failed, 80);
    assert_eq!(ab.total_events, 86);
    assert_eq!(ab.counts_by_reason.get("SrcKeyNotFound"), Some(&50));
    assert_eq!((ab.first_seen, ab.last_seen), (ba.first_seen, ba.last_seen));
    assert_eq!(ab.first_seen, Some(datetime!(2024-09-05 20:00 UTC)));
    assert_eq!((ab.highest_category, ab.highest_severity), (ba.highest_category, ba.highest_severity));
    assert_eq!(ab.sample_keys, ba.sample_keys);
    assert_eq!(ab.sample_keys.len(), SAMPLE_KEYS);
    assert_eq!(ab.destination_buckets, ba.destination_buckets);
    assert_eq!(ab.destination_buckets.len(), 2);
    assert_eq!(
        (ab.last_missed_threshold_at, ab.last_lag_recovered_at, ab.last_failure_at, ab.state),
        (ba.last_missed_threshold_at, ba.last_lag_recovered_at, ba.last_failure_at, ba.state)
    );
}

#[test]
fn lag_recovers_after_the_quiet_period() {
    let quiet = Duration::minutes(30);
    let missed = part(&synthetic(2, "r", None, T::OperationMissedThreshold));
    let (mut inc, d) = merge(None, &missed, NOW);
    assert_eq!(d, PageDecision::Opened);
    assert!(inc.lag_outstanding());
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::hours(3), quiet), PageDecision::None, "lag outstanding");
    assert_eq!(inc.state, IncidentState::Open);

    let mut after = synthetic(2, "r", None, T::OperationReplicatedAfterThreshold);
    for r in &mut after {
        r.event_time = r.event_time.map(|t| t + Duration::minutes(10));
    }
    let (mut inc, d) = merge(Some(inc), &part(&after), NOW + Duration::minutes(10));
    assert_eq!(d, PageDecision::None);
    assert_eq!(inc.state, IncidentState::Recovered);
    assert!(!inc.lag_outstanding());
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::minutes(20), quiet), PageDecision::None, "still in quiet period");
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::minutes(31), quiet), PageDecision::Recovered);
    assert_eq!((inc.state, inc.closed_at, inc.pages_sent), (IncidentState::Closed, Some(NOW + Duration::minutes(31)), 2));
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::hours(5), quiet), PageDecision::None, "closed stays closed");

    let (again, d) = merge(Some(inc), &missed, NOW + Duration::hours(6));
    assert_eq!(d, PageDecision::Opened);
    assert_eq!((again.occurrence, again.total_events, again.state), (2, 2, IncidentState::Open));
}

#[test]
fn failures_close_after_quiet_period() {
    let crit = part(&synthetic(3, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication));
    let (mut inc, _) = merge(None, &crit, NOW);
    let race = part(&synthetic(3, "r", Some(FailureReason::SrcKeyNotFound), T::OperationFailedReplication));
    let (mut inc2, d) = merge(Some(inc.clone()), &race, NOW + Duration::minutes(50));
    assert_eq!(d, PageDecision::None);
    // Info events do not hold the quiet period open.
    assert_eq!(evaluate_quiet(&mut inc2, NOW + Duration::minutes(61), Duration::hours(1)), PageDecision::Recovered);
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::minutes(59), Duration::hours(1)), PageDecision::None);
}

#[test]
fn incident_document_json() {
    let crit = part(&synthetic(3, "delta-tables", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication));
    let (inc, _) = merge(None, &crit, NOW);
    let j = serde_json::to_value(&inc).unwrap();
    assert_eq!(j["id"], "databricks-prod-data-use1__delta-tables");
    assert_eq!(j["state"], "open");
    assert_eq!(j["highest_category"], "replication_broken");
    assert_eq!(j["highest_severity"], "critical");
    assert_eq!(j["opened_at"], "2024-09-05T21:10:00Z");
    assert_eq!(j["first_seen"], "2024-09-05T21:00:00Z");
    assert_eq!(j["counts_by_reason"]["AssumeRoleNotPermitted"], 3);
    assert_eq!(j["counts_by_event_type"]["OperationFailedReplication"], 3);
    assert_eq!(j["pages_sent"], 1);
    assert_eq!(j["severity_at_last_page"], "critical");
    let back: Incident = serde_json::from_value(j).unwrap();
    assert_eq!(back, inc);
}

#[test]
fn object_races_never_escalate_by_growth() {
    let lag = part(&synthetic(2, "r", None, T::OperationMissedThreshold));
    let (inc, d) = merge(None, &lag, NOW);
    assert_eq!((d, inc.count_at_last_page), (PageDecision::Opened, 0));
    let races = part(&synthetic(50, "r", Some(FailureReason::SrcKeyNotFound), T::OperationFailedReplication));
    let (inc, d) = merge(Some(inc), &races, NOW + Duration::minutes(1));
    assert_eq!(d, PageDecision::None, "50 VACUUM races are noise, not 10x growth");
    assert_eq!((inc.total_failed, inc.actionable_failed()), (50, 0));
    let real = part(&synthetic(10, "r", Some(FailureReason::DstPutTaggingNotPermitted), T::OperationFailedReplication));
    let (inc, d) = merge(Some(inc), &real, NOW + Duration::minutes(2));
    assert_eq!(d, PageDecision::Escalated { why: "failed objects grew from 0 to 10 since the last page (10x or more)".into() });
    assert_eq!(inc.count_at_last_page, 10);
}

/// The records as delivered in messages named `{prefix}-{i}` (one record each).
fn delivered<'a>(prefix: &str, rs: &'a [ReplicationRecord]) -> Vec<Delivered<'a>> {
    rs.iter().enumerate().map(|(i, r)| Delivered::new(i, message_fingerprint(&format!("{prefix}-{i}")), r)).collect()
}

fn key(rule: &str) -> IncidentKey {
    IncidentKey { source_bucket: SRC.into(), rule_id: rule.into() }
}

#[test]
fn a_redelivered_message_counts_once_alone_or_regrouped() {
    let crit = synthetic(3, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication);
    let first = merge_delivery(None, &key("r"), &delivered("m", &crit), NOW);
    assert_eq!((first.decision.clone(), first.counted, first.already_counted), (PageDecision::Opened, 3, 0));
    assert_eq!((first.incident.ledger.len(), first.messages.clone()), (3, vec![0, 1, 2]));

    // One message again, alone: nothing counted, no page, the document unchanged.
    let alone = delivered("m", &crit)[1..2].to_vec();
    let again = merge_delivery(Some(first.incident.clone()), &key("r"), &alone, NOW + Duration::minutes(7));
    assert_eq!((again.counted, again.already_counted, again.decision), (0, 1, PageDecision::None));
    assert_eq!(again.incident, first.incident);

    // Regrouped with new messages: only the new ones count.
    let more = synthetic(5, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication);
    let mut regrouped = delivered("m", &crit);
    regrouped.extend(delivered("n", &more[3..]).into_iter().map(|d| Delivered { message: d.message + 3, ..d }));
    let merged = merge_delivery(Some(first.incident.clone()), &key("r"), &regrouped, NOW + Duration::minutes(8));
    assert_eq!((merged.counted, merged.already_counted, merged.messages.clone()), (2, 3, vec![3, 4]));
    assert_eq!((merged.incident.total_failed, merged.incident.batches_merged, merged.incident.ledger.len()), (5, 2, 5));

    // Records of another incident in the delivery are neither counted nor recorded.
    let other = synthetic(1, "other", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication);
    let mixed: Vec<Delivered<'_>> = delivered("x", &other);
    let none = merge_delivery(Some(merged.incident.clone()), &key("r"), &mixed, NOW);
    assert_eq!((none.counted, none.incident.ledger.len()), (0, 5));
}

#[test]
fn a_duplicate_s3_event_in_another_message_counts_once() {
    let mut rs = synthetic(2, "r", Some(FailureReason::DstPutObjectNotPermitted), T::OperationFailedReplication);
    for (i, r) in rs.iter_mut().enumerate() {
        r.sequencer = Some(format!("0066DA1CBF104C0D5{i}"));
    }
    let first = merge_delivery(None, &key("r"), &delivered("a", &rs[..1]), NOW);
    // S3 sent the first event again: another message id, the same sequencer.
    let second = merge_delivery(Some(first.incident), &key("r"), &delivered("b", &rs), NOW + Duration::minutes(1));
    assert_eq!((second.counted, second.already_counted, second.incident.total_failed), (1, 1, 2));
    // A later event of the same object version (another sequencer) is a new event.
    let mut later = rs[0].clone();
    later.sequencer = Some("0066DA1CBF104C0E00".into());
    let third = merge_delivery(Some(second.incident), &key("r"), &delivered("c", std::slice::from_ref(&later)), NOW);
    assert_eq!(third.counted, 1);
}

#[test]
fn owed_pages_and_the_ledger_carry_into_a_new_occurrence() {
    let crit = synthetic(3, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication);
    let mut inc = merge_delivery(None, &key("r"), &delivered("m", &crit), NOW).incident;
    let rendered = |text: &str| OwedMessages {
        page: StoredMessage { subject: Some(text.into()), body: "{}".into(), attributes: Default::default() },
        chat: None,
    };
    assert!(inc.owe(&PageDecision::Opened, rendered("ALARM"), NOW).is_none());
    assert!(inc.owe(&PageDecision::None, rendered("nothing"), NOW).is_none());
    assert_eq!(inc.owed_pages.iter().map(|p| (p.id.as_str(), p.kind)).collect::<Vec<_>>(), [("1.1", PageKind::Opened)]);
    assert_eq!(evaluate_quiet(&mut inc, NOW + Duration::hours(3), Duration::hours(1)), PageDecision::Recovered);
    inc.owe(&PageDecision::Recovered, rendered("OK"), NOW + Duration::hours(3));
    assert_eq!(inc.state, IncidentState::Closed);

    // A redelivery of a counted message reopens nothing.
    let replay = merge_delivery(Some(inc.clone()), &key("r"), &delivered("m", &crit), NOW + Duration::hours(4));
    assert_eq!((replay.counted, replay.incident.state), (0, IncidentState::Closed), "an old message reopens nothing");

    // A new failure opens occurrence 2: the pages still owed by occurrence 1 come first.
    let fresh = merge_delivery(Some(inc), &key("r"), &delivered("n", &crit), NOW + Duration::hours(4));
    let mut next = fresh.incident;
    assert_eq!((next.occurrence, fresh.decision.clone(), fresh.counted), (2, PageDecision::Opened, 3));
    next.owe(&fresh.decision, rendered("ALARM 2"), NOW + Duration::hours(4));
    let owed: Vec<(&str, PageKind, u32)> = next.owed_pages.iter().map(|p| (p.id.as_str(), p.kind, p.occurrence)).collect();
    assert_eq!(owed, [("1.1", PageKind::Opened, 1), ("1.2", PageKind::Recovered, 1), ("2.1", PageKind::Opened, 2)]);
    assert_eq!(next.ledger.len(), 6, "the ledger carried over: occurrence 1's messages, then occurrence 2's");
    let json = serde_json::to_value(&next).unwrap();
    assert_eq!(json["schema_version"], 2);
    assert!(json["ledger"]["segments"][0]["fingerprints"].is_string());
    assert_eq!(serde_json::from_value::<Incident>(json).unwrap(), next);
}

#[test]
fn a_version_1_document_reads_with_an_empty_ledger() {
    let crit = part(&synthetic(3, "r", Some(FailureReason::AssumeRoleNotPermitted), T::OperationFailedReplication));
    let (inc, _) = merge(None, &crit, NOW);
    let mut v1 = serde_json::to_value(&inc).unwrap();
    let o = v1.as_object_mut().unwrap();
    o.remove("ledger");
    o.remove("owed_pages");
    o.insert("schema_version".into(), json!(1));
    o.insert("merged_batches".into(), json!(["c51eb0079f5f1eb4242b006e5d49e503"]));
    let read: Incident = serde_json::from_value(v1).unwrap();
    assert!(read.ledger.is_empty() && read.owed_pages.is_empty());
    assert_eq!(read.total_failed, 3);
}

// ---------- manifests ----------

#[test]
fn manifest_rows_for_the_fixture_batch() {
    let v = value(SQS_DIRECT);
    let p = parse_payload(&v);
    let agg = aggregate(p.records());
    let ms = build_manifests(&agg.failed_objects);
    assert_eq!(ms.len(), 1);
    assert_eq!((ms[0].source_bucket.as_str(), ms[0].with_version_ids, ms[0].rows), (SRC, true, 4));
    assert_eq!(ms[0].fields(), ["Bucket", "Key", "VersionId"]);
    assert_eq!(
        ms[0].csv,
        "databricks-prod-data-use1,tables/sales/orders/date%3D2024-09-05/\
         part-00000-3f1c2a9e-7b4d-4e2a-9c1f-5d8e6a0b7c12.c000.snappy.parquet,Lm4yb0b1XR0w8c4UOyQ7nqJq3p6HjF1a\n\
         databricks-prod-data-use1,tables/sales/orders/_delta_log/00000000000000000123.json,xQ2kM7Lr0vTnZ3pB9cYdE1fGhJ4wKs6U\n\
         databricks-prod-data-use1,reports/Q3%20summary%2Bfinal%20100%25.csv,P9oQ8rS7tU6vW5xY4zA3bC2dE1fG0hIj\n\
         databricks-prod-data-use1,tables/sales/orders/_delta_log/.00000000000000000124.json.7c1e2f3a-tmp,\
         aBcDeFgHiJkLmNoPqRsTuVwXyZ012345\n"
    );
}

/// Test-only inverse of [`encode_key`].
fn decode_manifest_key(k: &str) -> String {
    let b = k.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&k[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn manifests_lose_nothing_and_duplicate_nothing() {
    let keys = ["a,b.csv", "line\nbreak", "plus+space x", "100%", "é/ü€", "ok/key", "a,b.csv"];
    let mut objects: Vec<FailedObject<'_>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let bucket = if i % 2 == 0 { "bucket-a" } else { "bucket-b" };
        objects.push(FailedObject { bucket, key: k, version_id: Some("v1") });
        objects.push(FailedObject { bucket, key: k, version_id: None });
    }
    objects.push(objects[0]);
    let ms = build_manifests(&objects);
    assert_eq!(
        ms.iter().map(|m| (m.source_bucket.as_str(), m.with_version_ids)).collect::<Vec<_>>(),
        vec![("bucket-a", true), ("bucket-a", false), ("bucket-b", true), ("bucket-b", false)]
    );
    let mut rows: Vec<(String, String, Option<String>)> = Vec::new();
    for m in &ms {
        assert_eq!(m.csv.lines().count(), m.rows);
        for line in m.csv.lines() {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), if m.with_version_ids { 3 } else { 2 }, "{line}");
            assert_eq!(cols[0], m.source_bucket);
            rows.push((cols[0].into(), decode_manifest_key(cols[1]), cols.get(2).map(|v| v.to_string())));
        }
    }
    let expected: BTreeSet<(String, String, Option<String>)> =
        objects.iter().map(|o| (o.bucket.to_string(), o.key.to_string(), o.version_id.map(str::to_string))).collect();
    assert_eq!(rows.len(), expected.len(), "no duplicates");
    assert_eq!(rows.into_iter().collect::<BTreeSet<_>>(), expected, "nothing lost");
}

#[test]
fn key_encoding_for_manifests() {
    let enc = |k: &str| {
        let mut s = String::new();
        encode_key(k, &mut s);
        s
    };
    assert_eq!(enc("object key with spaces"), "object%20key%20with%20spaces");
    assert_eq!(enc("photos/jpgs/objectkey4"), "photos/jpgs/objectkey4");
    assert_eq!(enc("a+b,c\n%"), "a%2Bb%2Cc%0A%25");
    assert_eq!(enc("date=2024/é~_.-"), "date%3D2024/%C3%A9~_.-");
}

// ---------- the route without a JSON tree ----------

/// `Envelope::parse` reads SQS and SNS events without a tree and everything else with one; both routes must give
/// the same payload, including where a tree's `get` tells an absent field from a null one.
#[test]
fn envelope_reads_every_shape_as_the_tree_does() {
    let dir = format!("{}/../../events/replication-failure", env!("CARGO_MANIFEST_DIR"));
    let mut texts: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(texts.len() >= 10, "the fixtures are read");
    let body = r#"{\"Records\":[]}"#;
    for odd in [
        // eventSource null: the tree does not look at EventSource then.
        format!(r#"{{"Records":[{{"eventSource":null,"EventSource":"aws:sqs","messageId":"m","body":"{body}"}}]}}"#),
        format!(r#"{{"Records":[{{"EventSource":"aws:sqs","messageId":"m","body":"{body}"}}]}}"#),
        // A messageId of the wrong type, a body of null, a duplicate key, a later record that is not an object.
        format!(r#"{{"Records":[{{"eventSource":"aws:sqs","messageId":7,"body":"{body}"}}]}}"#),
        r#"{"Records":[{"eventSource":"aws:sqs","messageId":"m","body":null}]}"#.to_owned(),
        format!(r#"{{"Records":[{{"eventSource":"aws:sqs","messageId":"a","messageId":"b","body":"{body}"}}]}}"#),
        format!(r#"{{"Records":[{{"eventSource":"aws:sqs","messageId":"m","body":"{body}"}},"x"]}}"#),
        r#"{"Records":[{"EventSource":"aws:sns","Sns":null}]}"#.to_owned(),
        r#"{"Records":[{"EventSource":"aws:sns","Sns":{"MessageId":"s","Message":"not json"}}]}"#.to_owned(),
        r#"{"Records":[{"messageId":"m","body":"{}"}]}"#.to_owned(),
        r#"{"Records":[]}"#.to_owned(),
        r#"[1,2]"#.to_owned(),
    ] {
        texts.push(odd);
    }
    let mut fast = 0;
    for text in &texts {
        let tree = value(text);
        let envelope = Envelope::parse(text).unwrap();
        fast += usize::from(!format!("{envelope:?}").starts_with("Envelope(Tree"));
        assert_eq!(envelope.payload(), parse_payload(&tree), "{text}");
    }
    assert!(fast >= 6, "the SQS and SNS fixtures take the route without a tree ({fast})");
    assert!(Envelope::parse("not json").is_err());
}
