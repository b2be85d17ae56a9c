//! The data-plane buckets over S3 ([`dr_ports::DataBuckets`]): listings, objects and byte ranges, and
//! the bucket configuration replication coverage is judged by. Read only.

use super::classify;
use aws_sdk_s3::types::{BucketVersioningStatus, Event, MetricsStatus, ReplicationRuleStatus, ReplicationTimeStatus};
use dr_ports::error::StoreError;
use dr_ports::{DataBuckets, DataObject, ListPage, NotificationTarget, ReplicationRule, Versioning};
use time::OffsetDateTime;

/// The data buckets through one S3 client (the SDK signs each request for the bucket's region when the client's
/// region is the bucket's; cross-region buckets answer with a redirect the SDK reports as an error).
#[derive(Debug, Clone)]
pub struct S3DataBuckets {
    client: aws_sdk_s3::Client,
}

impl S3DataBuckets {
    /// Over `client`.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3DataBuckets { client }
    }
}

impl S3DataBuckets {
    /// One page of ListObjectsV2, delimited or not.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let resp = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_start_after(start_after.map(str::to_owned))
            .set_continuation_token(token.map(str::to_owned))
            .max_keys(i32::try_from(max_keys).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| classify("S3", "ListObjectsV2", e))?;
        let objects = resp
            .contents()
            .iter()
            .filter_map(|o| {
                Some(DataObject {
                    key: o.key()?.to_owned(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                    last_modified: o.last_modified().and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                })
            })
            .collect();
        let prefixes = resp.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)).collect();
        let next = if resp.is_truncated() == Some(true) { resp.next_continuation_token().map(str::to_owned) } else { None };
        Ok(ListPage { objects, next, prefixes })
    }
}

fn is_missing<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

impl DataBuckets for S3DataBuckets {
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.list(bucket, prefix, None, start_after, token, max_keys).await
    }

    async fn list_dir_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        self.list(bucket, prefix, Some("/"), start_after, token, max_keys).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<DataObject>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(o) => Ok(Some(DataObject {
                key: key.to_owned(),
                size: o.content_length().and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                last_modified: o.last_modified().and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
            })),
            // HEAD has no body: a missing key is only its status (NotFound, or 404 on the raw response).
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(classify("S3", "HeadObject", e)),
        }
    }

    async fn get(&self, bucket: &str, key: &str, range: Option<(u64, u64)>) -> Result<Option<Vec<u8>>, StoreError> {
        let range = range.map(|(s, e)| format!("bytes={s}-{}", e.saturating_sub(1)));
        let resp = match self.client.get_object().bucket(bucket).key(key).set_range(range).send().await {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return Ok(None),
            Err(e) => return Err(classify("S3", "GetObject", e)),
        };
        let body = resp.body.collect().await.map_err(|e| StoreError::Transient {
            service: "S3",
            operation: "GetObject",
            message: format!("reading the body of s3://{bucket}/{key}: {e}"),
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn versioning(&self, bucket: &str) -> Result<Versioning, StoreError> {
        let resp = self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| classify("S3", "GetBucketVersioning", e))?;
        Ok(match resp.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Off,
        })
    }

    async fn replication(&self, bucket: &str) -> Result<Vec<ReplicationRule>, StoreError> {
        let resp = match self.client.get_bucket_replication().bucket(bucket).send().await {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| is_missing(s, &["ReplicationConfigurationNotFoundError"])) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(classify("S3", "GetBucketReplication", e)),
        };
        let Some(config) = resp.replication_configuration() else { return Ok(Vec::new()) };
        Ok(config
            .rules()
            .iter()
            .map(|r| {
                #[allow(deprecated)]
                let legacy = r.prefix().map(str::to_owned);
                let prefix = match r.filter() {
                    Some(f) => {
                        f.prefix().map(str::to_owned).or_else(|| f.and().and_then(|a| a.prefix().map(str::to_owned))).or_else(
                            || {
                                // A filter with a tag only covers some objects: not a prefix.
                                if f.tag().is_some() || f.and().is_some() { None } else { Some(String::new()) }
                            },
                        )
                    }
                    None => legacy.or(Some(String::new())),
                };
                let dest = r.destination();
                ReplicationRule {
                    id: r.id().unwrap_or_default().to_owned(),
                    enabled: r.status() == &ReplicationRuleStatus::Enabled,
                    prefix,
                    destination_bucket: dest
                        .map(|d| d.bucket().trim_start_matches("arn:aws:s3:::").to_owned())
                        .unwrap_or_default(),
                    metrics: dest.and_then(|d| d.metrics()).is_some_and(|m| m.status() == &MetricsStatus::Enabled),
                    time_control: dest
                        .and_then(|d| d.replication_time())
                        .is_some_and(|t| t.status() == &ReplicationTimeStatus::Enabled),
                }
            })
            .collect())
    }

    async fn notifications(&self, bucket: &str) -> Result<Vec<NotificationTarget>, StoreError> {
        let resp = self
            .client
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| classify("S3", "GetBucketNotificationConfiguration", e))?;
        let events = |e: &[Event]| e.iter().map(|e| e.as_str().to_owned()).collect::<Vec<_>>();
        let prefix = |f: Option<&aws_sdk_s3::types::NotificationConfigurationFilter>| {
            f.and_then(|f| f.key())
                .and_then(|k| {
                    k.filter_rules().iter().find(|r| r.name().map(|n| n.as_str().eq_ignore_ascii_case("prefix")) == Some(true))
                })
                .and_then(|r| r.value().map(str::to_owned))
        };
        let mut out = Vec::new();
        for t in resp.topic_configurations() {
            out.push(NotificationTarget {
                arn: t.topic_arn().to_owned(),
                events: events(t.events()),
                prefix: prefix(t.filter()),
            });
        }
        for q in resp.queue_configurations() {
            out.push(NotificationTarget {
                arn: q.queue_arn().to_owned(),
                events: events(q.events()),
                prefix: prefix(q.filter()),
            });
        }
        for l in resp.lambda_function_configurations() {
            out.push(NotificationTarget {
                arn: l.lambda_function_arn().to_owned(),
                events: events(l.events()),
                prefix: prefix(l.filter()),
            });
        }
        Ok(out)
    }
}
