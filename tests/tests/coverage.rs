//! Replication coverage in `check`, end to end through the `manual-trigger` binary against moto's S3: each
//! data-plane location's primary bucket versioned, with an enabled replication rule covering its prefix toward
//! the replica bucket (with replication metrics), the replica versioned, and the `s3:Replication:*` events sent
//! on; what is missing is a finding with its fix.
//!
//! Said plainly: moto answers GetBucketVersioning with a `<GetBucketVersioningResponse>` root where S3 answers
//! `<VersioningConfiguration>` (the API reference's response syntax), and the Rust SDK rejects moto's. The
//! harness corrects that answer (`scripts/moto_server.py`, `answer_versioning_as_s3_documents`); the SDK's
//! parser is not weakened. moto's GetBucketReplication and GetBucketNotificationConfiguration answers parse as
//! they are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, Event, Metrics, MetricsStatus,
    NotificationConfiguration, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    TopicConfiguration, VersioningConfiguration,
};
use serde_json::{Value, json};
use tests::dr_env::DrEnv;
use tests::moto;
use tests::runtime_api::Function;

fn coverage(r: &Value) -> Vec<(String, String, String)> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"].as_str().unwrap().starts_with("coverage-"))
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["what"].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_each_missing_piece_of_replication_coverage_with_its_fix() {
    let env = DrEnv::seed(&moto::shared().endpoint).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&tests::dr_env::sdk_config(&moto::shared().endpoint).await)
            .force_path_style(true)
            .build(),
    );
    let (p, r) = (format!("{}-cov-use1", env.environment), format!("{}-cov-usw2", env.environment));
    for b in [&p, &r] {
        let at = aws_sdk_s3::types::CreateBucketConfiguration::builder()
            .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(tests::dr_env::REGION))
            .build();
        s3.create_bucket().bucket(b).create_bucket_configuration(at).send().await.unwrap();
        let on = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        s3.put_bucket_versioning().bucket(b).versioning_configuration(on).send().await.unwrap();
    }
    let rule = ReplicationRule::builder()
        .id("delta-tables")
        .priority(1)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix("tables/").build())
        .delete_marker_replication(DeleteMarkerReplication::builder().status(DeleteMarkerReplicationStatus::Enabled).build())
        .destination(
            Destination::builder()
                .bucket(format!("arn:aws:s3:::{r}"))
                .metrics(Metrics::builder().status(MetricsStatus::Enabled).build().unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let replication =
        ReplicationConfiguration::builder().role("arn:aws:iam::123456789012:role/s3-replication").rules(rule).build().unwrap();
    s3.put_bucket_replication().bucket(&p).replication_configuration(replication).send().await.unwrap();
    let topic = env.sns.create_topic().name(format!("{}-replication-events", env.environment)).send().await.unwrap();
    let events = TopicConfiguration::builder()
        .topic_arn(topic.topic_arn().unwrap())
        .events(Event::from("s3:Replication:OperationFailedReplication"))
        .events(Event::from("s3:Replication:OperationMissedThreshold"))
        .build()
        .unwrap();
    let notifications = NotificationConfiguration::builder().topic_configurations(events).build();
    s3.put_bucket_notification_configuration().bucket(&p).notification_configuration(notifications).send().await.unwrap();
    let location = json!({"name": "sales.orders", "kind": "delta",
        "primary": format!("s3://{p}/tables/orders"), "replica": format!("s3://{r}/tables/orders")});
    env.put("data-plane", &json!({"locations": [location]})).await;

    let mut f = Function::start("manual-trigger", &env.function_env());
    let answer = f.invoke(&json!({"command": "check"})).response();
    assert_eq!(coverage(&answer), vec![], "covered: no finding\n{answer:#}\n{}", f.logs());

    // The replica's versioning suspended, and the rule removed: one finding each, with its fix.
    let off = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
    s3.put_bucket_versioning().bucket(&r).versioning_configuration(off).send().await.unwrap();
    s3.delete_bucket_replication().bucket(&p).send().await.unwrap();
    let answer = f.invoke(&json!({"command": "check"})).response();
    let found = coverage(&answer);
    let ids: Vec<&str> = found.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["coverage-sales.orders-replica-versioning", "coverage-sales.orders-replication"], "{found:#?}");
    let (_, what, action) = &found[1];
    assert!(what.contains(&format!("no enabled replication rule of {p} covers s3://{p}/tables/orders toward {r}")), "{what}");
    assert!(action.contains("tables/orders") && action.contains(&format!("arn:aws:s3:::{r}")), "{action}");
    assert!(found[0].1.contains(&r) && found[0].2.to_lowercase().contains("versioning"), "{found:#?}");
}
