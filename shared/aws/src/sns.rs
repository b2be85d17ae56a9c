//! [`Notifier`] over SNS: the paging topic and the optional chat topic.

use super::classify;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use domain::names::TopicArn;
use dr_ports::error::StoreError;
use dr_ports::{Channel, Notifier, OutgoingMessage};
use std::collections::HashMap;

/// The SNS adapter.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    paging: TopicArn,
    chat: Option<TopicArn>,
}

impl SnsNotifier {
    /// Wraps a client built at cold start.
    pub fn new(client: aws_sdk_sns::Client, paging: TopicArn, chat: Option<TopicArn>) -> Self {
        Self { client, paging, chat }
    }

    fn topic(&self, channel: Channel) -> Option<&TopicArn> {
        match channel {
            Channel::Paging => Some(&self.paging),
            Channel::Chat => self.chat.as_ref(),
        }
    }
}

fn attributes(m: &OutgoingMessage) -> Result<HashMap<String, MessageAttributeValue>, StoreError> {
    m.attributes
        .iter()
        .map(|(k, v)| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map(|a| (k.clone(), a))
                .map_err(|e| StoreError::Refused { service: "SNS", operation: "Publish", message: format!("attribute {k}: {e}") })
        })
        .collect()
}

/// `PublishBatch` takes at most 10 entries.
const BATCH_MAX: usize = 10;

impl Notifier for SnsNotifier {
    async fn publish(&self, channel: Channel, message: &OutgoingMessage) -> Result<Option<String>, StoreError> {
        let Some(topic) = self.topic(channel) else { return Ok(None) };
        let resp = self
            .client
            .publish()
            .topic_arn(topic.as_str())
            .message(&message.body)
            .set_subject(message.subject.clone())
            .set_message_attributes(Some(attributes(message)?))
            .send()
            .await
            .map_err(|e| classify("SNS", "Publish", e))?;
        Ok(resp.message_id)
    }

    async fn publish_all(&self, channel: Channel, messages: &[OutgoingMessage]) -> Result<Vec<Option<String>>, StoreError> {
        let Some(topic) = self.topic(channel) else { return Ok(vec![None; messages.len()]) };
        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(BATCH_MAX) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                let entry = PublishBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message(&m.body)
                    .set_subject(m.subject.clone())
                    .set_message_attributes(Some(attributes(m)?))
                    .build()
                    .map_err(|e| StoreError::Refused { service: "SNS", operation: "PublishBatch", message: e.to_string() })?;
                entries.push(entry);
            }
            let resp = self
                .client
                .publish_batch()
                .topic_arn(topic.as_str())
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify("SNS", "PublishBatch", e))?;
            if let Some(failed) = resp.failed.filter(|f| !f.is_empty()) {
                let first = &failed[0];
                let message = format!(
                    "{} of {} entries failed: {} {}",
                    failed.len(),
                    chunk.len(),
                    first.code,
                    first.message.clone().unwrap_or_default()
                );
                return Err(if first.sender_fault {
                    StoreError::Refused { service: "SNS", operation: "PublishBatch", message }
                } else {
                    StoreError::Transient { service: "SNS", operation: "PublishBatch", message }
                });
            }
            let mut by_id: HashMap<String, String> =
                resp.successful.unwrap_or_default().into_iter().filter_map(|s| Some((s.id?, s.message_id?))).collect();
            ids.extend((0..chunk.len()).map(|i| by_id.remove(&format!("m{i}"))));
        }
        Ok(ids)
    }

    async fn probe(&self, channel: Channel) -> Result<bool, StoreError> {
        let Some(topic) = self.topic(channel) else { return Ok(false) };
        self.client
            .get_topic_attributes()
            .topic_arn(topic.as_str())
            .send()
            .await
            .map_err(|e| classify("SNS", "GetTopicAttributes", e))?;
        Ok(true)
    }
}
