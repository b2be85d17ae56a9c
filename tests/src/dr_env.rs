//! A realistic DR environment seeded into moto: the contract's SSM parameters for two sites, the control
//! bucket, and the paging and chat topics, each with an SQS queue subscribed so that what is published can
//! be read back. Every environment has its own names, so tests sharing one moto server do not meet.

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_ssm::types::ParameterType;
use serde_json::{Value, json};
use std::time::Duration;

/// The region the stack runs in (the secondary region, CONTRACT.md).
pub const REGION: &str = "us-west-2";

/// A seeded environment and clients to inspect it.
#[derive(Debug, Clone)]
pub struct DrEnv {
    /// moto's endpoint.
    pub endpoint: String,
    /// `DR_ENVIRONMENT`.
    pub environment: String,
    /// `DR_SSM_PREFIX`.
    pub prefix: String,
    /// `DR_CONTROL_BUCKET`.
    pub bucket: String,
    /// `DR_PAGING_TOPIC_ARN`.
    pub paging_topic: String,
    /// `DR_CHAT_TOPIC_ARN`.
    pub chat_topic: String,
    /// SQS queue subscribed to the paging topic.
    pub paging_queue: String,
    /// SQS queue subscribed to the chat topic.
    pub chat_queue: String,
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// SNS client.
    pub sns: aws_sdk_sns::Client,
    /// SSM client.
    pub ssm: aws_sdk_ssm::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
}

/// The primary site's document as seeded.
pub fn primary_site(env: &str) -> Value {
    json!({
        "workspace_url": "https://dbc-a1b2c3d4-use1.cloud.databricks.com",
        "region": "us-east-1",
        "workspace_id": "1234567890123456",
        "sql_warehouse_id": "4b9b953939869799",
        "token_parameter": format!("/dr/{env}/secrets/primary-token"),
    })
}

/// The secondary site's document as seeded.
pub fn secondary_site(env: &str) -> Value {
    json!({
        "workspace_url": "https://dbc-e5f6a7b8-usw2.cloud.databricks.com",
        "region": "us-west-2",
        "workspace_id": "6543210987654321",
        "sql_warehouse_id": "9a8b7c6d5e4f3a2b",
        "token_parameter": format!("/dr/{env}/secrets/secondary-token"),
    })
}

/// The secret seeded in the primary token parameter: must never appear outside SSM.
pub const PRIMARY_TOKEN: &str = "dapi-SEEDED-SECRET-0123456789abcdef";

/// Builds SDK clients for moto.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

impl DrEnv {
    /// Seeds a new environment named `t<random>` into the moto server at `endpoint`.
    pub async fn seed(endpoint: &str) -> DrEnv {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::seed_named(endpoint, &format!("t{}", &id[..10])).await
    }

    /// Seeds an environment with the given name.
    pub async fn seed_named(endpoint: &str, environment: &str) -> DrEnv {
        let sdk = sdk_config(endpoint).await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        let sns = aws_sdk_sns::Client::new(&sdk);
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let prefix = format!("/dr/{environment}");
        let bucket = format!("dr-control-{environment}");

        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket: {e:?}"));

        let mut topics = Vec::new();
        for kind in ["paging", "chat"] {
            let topic =
                sns.create_topic().name(format!("dr-{kind}-{environment}")).send().await.unwrap_or_else(|e| panic!("{e:?}"));
            let topic_arn = topic.topic_arn.unwrap_or_default();
            let queue = sqs
                .create_queue()
                .queue_name(format!("dr-{kind}-{environment}-tap"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            let queue_url = queue.queue_url.unwrap_or_default();
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            let queue_arn = attrs.attributes.and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned()).unwrap_or_default();
            sns.subscribe()
                .topic_arn(&topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            topics.push((topic_arn, queue_url));
        }
        let [(paging_topic, paging_queue), (chat_topic, chat_queue)] =
            <[(String, String); 2]>::try_from(topics).unwrap_or_else(|_| unreachable!());

        let env = DrEnv {
            endpoint: endpoint.to_owned(),
            environment: environment.to_owned(),
            prefix,
            bucket,
            paging_topic,
            chat_topic,
            paging_queue,
            chat_queue,
            s3,
            sns,
            ssm,
            sqs,
        };

        let mut active = primary_site(environment);
        active["site"] = json!("primary");
        active["execution_id"] = json!("bootstrap");
        active["promoted_at"] = json!("2026-01-05T09:00:00Z");
        env.put("sites/primary", &primary_site(environment)).await;
        env.put("sites/secondary", &secondary_site(environment)).await;
        env.put("active", &active).await;
        env.put(
            "policy",
            &json!({
                "mode": "approval",
                "failover_alarms": [format!("databricks-{environment}-workspace-unhealthy")],
                "cooldown_minutes": 60,
                "drill": { "blocked_dates": ["2026-12-24"], "blocked_windows": [] }
            }),
        )
        .await;
        env.put(
            "data-plane",
            &json!({ "locations": [
                { "name": "sales.orders", "kind": "delta",
                  "primary": format!("s3://{environment}-data-use1/tables/sales/orders"),
                  "replica": format!("s3://{environment}-data-usw2/tables/sales/orders") },
                { "name": "mlflow-artifacts", "kind": "prefix",
                  "primary": format!("s3://{environment}-data-use1/mlflow"),
                  "replica": format!("s3://{environment}-data-usw2/mlflow") }
            ]}),
        )
        .await;
        for (site, secret) in [("primary", PRIMARY_TOKEN), ("secondary", "dapi-SEEDED-SECRET-secondary-fedcba9876543210")] {
            env.ssm
                .put_parameter()
                .name(format!("{}/secrets/{site}-token", env.prefix))
                .value(secret)
                .r#type(ParameterType::SecureString)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
        }
        env
    }

    /// Writes (overwrites) a JSON document under the prefix.
    pub async fn put(&self, relative: &str, value: &Value) {
        self.put_raw(relative, &value.to_string()).await;
    }

    /// Writes (overwrites) a raw string under the prefix.
    pub async fn put_raw(&self, relative: &str, value: &str) {
        self.ssm
            .put_parameter()
            .name(format!("{}/{relative}", self.prefix))
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {relative}: {e:?}"));
    }

    /// Deletes a parameter under the prefix.
    pub async fn delete(&self, relative: &str) {
        let _ = self.ssm.delete_parameter().name(format!("{}/{relative}", self.prefix)).send().await;
    }

    /// Reads a JSON document under the prefix.
    pub async fn get(&self, relative: &str) -> Value {
        let p = self
            .ssm
            .get_parameter()
            .name(format!("{}/{relative}", self.prefix))
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {relative}: {e:?}"));
        serde_json::from_str(p.parameter.and_then(|p| p.value).as_deref().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// The environment variables of the functions (the template's, pointed at moto).
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("DR_ENVIRONMENT", &self.environment),
            ("DR_SSM_PREFIX", &self.prefix),
            ("DR_CONTROL_BUCKET", &self.bucket),
            ("DR_PAGING_TOPIC_ARN", &self.paging_topic),
            ("DR_CHAT_TOPIC_ARN", &self.chat_topic),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Drains a tap queue: the SNS envelopes (Subject, Message, MessageAttributes) published so far.
    pub async fn drain(&self, queue_url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                out.push(serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap_or(Value::Null));
                if let Some(h) = m.receipt_handle {
                    let _ = self.sqs.delete_message().queue_url(queue_url).receipt_handle(h).send().await;
                }
            }
        }
        out
    }

    /// Reads an object of the control bucket, if present.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let o = self.s3.get_object().bucket(&self.bucket).key(key).send().await.ok()?;
        Some(o.body.collect().await.ok()?.into_bytes().to_vec())
    }

    /// Writes a JSON object of the control bucket (as another writer would: a lock, a record).
    pub async fn put_json(&self, key: &str, value: &Value) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(value.to_string().into_bytes().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Reads a JSON object of the control bucket (`Null` when absent).
    pub async fn json(&self, key: &str) -> Value {
        self.object(key).await.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
    }

    /// The history of a parameter under the prefix: (version, labels, value as JSON).
    pub async fn history(&self, relative: &str) -> Vec<(i64, Vec<String>, Value)> {
        let mut out = Vec::new();
        let mut pages = self.ssm.get_parameter_history().name(format!("{}/{relative}", self.prefix)).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("{e:?}"));
            for h in page.parameters.unwrap_or_default() {
                let value = serde_json::from_str(h.value.as_deref().unwrap_or("null")).unwrap_or(Value::Null);
                out.push((h.version, h.labels.unwrap_or_default(), value));
            }
        }
        out
    }

    /// The SNS envelopes published to the paging topic so far (drained).
    pub async fn pages(&self) -> Vec<Value> {
        self.drain(&self.paging_queue.clone()).await
    }

    /// The SNS envelopes published to the chat topic so far (drained).
    pub async fn chats(&self) -> Vec<Value> {
        self.drain(&self.chat_queue.clone()).await
    }

    /// Lists the keys under a prefix of the control bucket.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("{e:?}"));
            out.extend(page.contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
        }
        out
    }
}

/// Gives moto a moment to fan SNS out to SQS (it does so synchronously, but be tolerant).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
