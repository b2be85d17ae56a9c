//! [`ExportQueue`] over SQS: the continuations of a carried workspace export (manual-trigger's `ExportQueue`).

use super::classify;
use dr_ports::ExportQueue;
use dr_ports::error::StoreError;
use futures_util::future::BoxFuture;

/// The SQS adapter: one queue.
#[derive(Debug, Clone)]
pub struct SqsExportQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsExportQueue {
    /// Wraps a client built at cold start and the queue's URL (`DR_EXPORT_QUEUE_URL`).
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }
}

impl ExportQueue for SqsExportQueue {
    fn send<'a>(&'a self, body: String, delay_seconds: u32) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .send_message()
                .queue_url(&self.url)
                .message_body(body)
                .delay_seconds(i32::try_from(delay_seconds.min(900)).unwrap_or(900))
                .send()
                .await
                .map_err(|e| classify("SQS", "SendMessage", e))?;
            Ok(())
        })
    }
}
