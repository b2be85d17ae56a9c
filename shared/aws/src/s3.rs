//! [`ControlBucket`] over S3, with conditional writes for locks and compare-and-swap records.

use super::classify;
use aws_sdk_s3::primitives::ByteStream;
use domain::names::BucketName;
use dr_ports::error::StoreError;
use dr_ports::{ControlBucket, DatedObject, StoredObject, WriteCondition, Written};
use std::sync::{Arc, Mutex, PoisonError};

/// The S3 adapter for the control bucket.
#[derive(Debug, Clone)]
pub struct S3ControlBucket {
    client: aws_sdk_s3::Client,
    bucket: BucketName,
}

impl S3ControlBucket {
    /// Wraps a client built at cold start.
    pub fn new(client: aws_sdk_s3::Client, bucket: BucketName) -> Self {
        Self { client, bucket }
    }
}

fn status_of<E, R: HasStatus>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status_code)
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Keeps the `Date` header of the response it sees: S3's clock, which judges the failover lock's lease.
#[derive(Debug, Clone, Default)]
struct DateOfResponse(Arc<Mutex<Option<String>>>);

impl aws_sdk_s3::config::Intercept for DateOfResponse {
    fn name(&self) -> &'static str {
        "DateOfResponse"
    }

    fn read_after_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let date = context.response().headers().get("date").map(str::to_owned);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = date;
        Ok(())
    }
}

impl DateOfResponse {
    /// The last response's `Date` (an HTTP date, whole seconds), parsed.
    fn time(&self) -> Option<time::OffsetDateTime> {
        let text = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        let parsed = aws_sdk_s3::primitives::DateTime::from_str(&text, aws_sdk_s3::primitives::DateTimeFormat::HttpDate).ok()?;
        time::OffsetDateTime::from_unix_timestamp(parsed.secs()).ok()
    }
}

impl S3ControlBucket {
    /// One conditional `PutObject`; `date` keeps its response's `Date` when given.
    async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: &WriteCondition,
        date: Option<DateOfResponse>,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        req = match condition {
            WriteCondition::Overwrite => req,
            WriteCondition::IfAbsent => req.if_none_match("*"),
            WriteCondition::IfMatch(etag) => req.if_match(etag),
        };
        let sent = match date {
            Some(d) => req.customize().interceptor(d).send().await,
            None => req.send().await,
        };
        match sent {
            Ok(resp) => Ok(resp.e_tag.unwrap_or_default()),
            // 412 PreconditionFailed: the condition did not hold; 409 ConditionalRequestConflict: a concurrent
            // conditional write to the same key won. Both mean "someone else got there first". A 404 on `If-Match`:
            // the object is gone (deleted by whoever took it over and released it): the condition did not hold.
            Err(e) if *condition != WriteCondition::Overwrite && matches!(status_of(&e), Some(412 | 409)) => {
                Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.to_owned() })
            }
            Err(e) if matches!(condition, WriteCondition::IfMatch(_)) && status_of(&e) == Some(404) => {
                Err(StoreError::Conflict { service: "S3", operation: "PutObject", target: key.to_owned() })
            }
            Err(e) => Err(classify("S3", "PutObject", e)),
        }
    }
}

impl S3ControlBucket {
    /// One `GetObject`; `date` keeps its response's `Date` when given (a 404's too: the store's clock then).
    async fn get_object(&self, key: &str, date: Option<DateOfResponse>) -> Result<Option<StoredObject>, StoreError> {
        let req = self.client.get_object().bucket(self.bucket.as_str()).key(key);
        let sent = match date {
            Some(d) => req.customize().interceptor(d).send().await,
            None => req.send().await,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status_of(&e) == Some(404) => return Ok(None),
            Err(e) if status_of(&e) == Some(403) => {
                // S3 answers 403, not 404, for a missing key when the caller may not list the bucket: say so,
                // or an absent record reads as "access denied" and the cause is hunted in the wrong place.
                return Err(match classify("S3", "GetObject", e) {
                    StoreError::Refused { service, operation, message } => StoreError::Refused {
                        service,
                        operation,
                        message: format!(
                            "{message} (reading s3://{}/{key}: a 403 on a read means this role may not read the key, \
                             or the key is absent and the role lacks s3:ListBucket on the bucket, which turns S3's \
                             404 into a 403; the stack grants both)",
                            self.bucket
                        ),
                    },
                    other => other,
                });
            }
            Err(e) => return Err(classify("S3", "GetObject", e)),
        };
        let etag = resp.e_tag.clone().unwrap_or_default();
        let body = resp.body.collect().await.map_err(|e| StoreError::Transient {
            service: "S3",
            operation: "GetObject",
            message: format!("reading the body of {key}: {e}"),
        })?;
        Ok(Some(StoredObject { body: body.into_bytes().to_vec(), etag }))
    }
}

impl ControlBucket for S3ControlBucket {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.get_object(key, None).await
    }

    async fn get_dated(&self, key: &str) -> Result<DatedObject, StoreError> {
        let date = DateOfResponse::default();
        let object = self.get_object(key, Some(date.clone())).await?;
        Ok(DatedObject { object, store_time: date.time() })
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str, condition: WriteCondition) -> Result<String, StoreError> {
        self.put_object(key, body, content_type, &condition, None).await
    }

    async fn put_dated(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: WriteCondition,
    ) -> Result<Written, StoreError> {
        let date = DateOfResponse::default();
        let etag = self.put_object(key, body, content_type, &condition, Some(date.clone())).await?;
        Ok(Written { etag, store_time: date.time() })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(self.bucket.as_str()).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("S3", "ListObjectsV2", e))?;
            out.extend(page.contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
        }
        Ok(out)
    }

    async fn list_recent(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(self.bucket.as_str()).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("S3", "ListObjectsV2", e))?;
            out.extend(page.contents.unwrap_or_default().into_iter().filter_map(|o| {
                let when = o
                    .last_modified
                    .and_then(|d| d.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
                    .unwrap_or_default();
                Some((o.key?, when))
            }));
        }
        out.sort_by(|a, b| b.1.cmp(&a.1));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .send()
            .await
            .map_err(|e| classify("S3", "DeleteObject", e))?;
        Ok(())
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        match self.client.delete_object().bucket(self.bucket.as_str()).key(key).if_match(etag).send().await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(412) => {
                Err(StoreError::Conflict { service: "S3", operation: "DeleteObject", target: key.to_owned() })
            }
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify("S3", "DeleteObject", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_of_a_response_is_the_store_s_time() {
        let date = DateOfResponse::default();
        assert_eq!(date.time(), None, "no answer yet: no store time");
        *date.0.lock().unwrap_or_else(PoisonError::into_inner) = Some("Mon, 07 Dec 2026 06:45:12 GMT".into());
        assert_eq!(date.time(), Some(time::macros::datetime!(2026-12-07 06:45:12 UTC)));
        *date.0.lock().unwrap_or_else(PoisonError::into_inner) = Some("yesterday".into());
        assert_eq!(date.time(), None, "an unreadable Date is no store time (the local clock judges)");
    }
}
