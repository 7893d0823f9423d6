//! Thin wrapper over `azure_storage_queues`: bodies are passed through as text (the crate does
//! not base64 them; [`super::messages::Encoding`] decides), and 404s on vanished messages are
//! reported as "gone" rather than as failures.

use std::time::Duration;

use azure_storage_queues::prelude::*;
use chrono::{DateTime, Utc};

use super::error::AzError;

/// Whole seconds, never early: rounded up, plus one because the service keeps
/// `TimeNextVisible` in whole seconds (Azurite truncates "now", so a 1 s timeout can end at
/// once). A timer or a delayed retry must never become visible before its time.
fn ceil_secs(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0) + 1)
}

/// Azure caps visibility timeouts at 7 days.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 3600 - 60);
/// DTFx enqueues with an infinite TTL (-1). The crate cannot express -1, so the largest positive
/// TTL is used instead (68 years).
const TTL: Duration = Duration::from_secs(i32::MAX as u64);

#[derive(Clone)]
pub struct Queue {
    client: QueueClient,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub pop_receipt: String,
    pub text: String,
    pub dequeue_count: u64,
    pub inserted: DateTime<Utc>,
}

impl Queue {
    pub fn new(service: &QueueServiceClient, name: &str) -> Self {
        Self {
            client: service.queue_client(name),
        }
    }

    pub fn name(&self) -> &str {
        self.client.queue_name()
    }

    pub async fn create(&self) -> Result<(), AzError> {
        match self.client.create().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(409),
        }
    }

    pub async fn delete(&self) -> Result<(), AzError> {
        match self.client.delete().await {
            Ok(_) => Ok(()),
            Err(e) => AzError::from(e).ok_if(404),
        }
    }

    pub async fn put(&self, text: String, delay: Duration) -> Result<(), AzError> {
        let mut p = self.client.put_message(text).ttl(TTL);
        if !delay.is_zero() {
            p = p.visibility_timeout(ceil_secs(delay).min(MAX_VISIBILITY));
        }
        p.await?;
        Ok(())
    }

    /// Up to `n` (≤ 32) visible messages, hidden for `lock` from now on.
    pub async fn get(&self, n: u8, lock: Duration) -> Result<Vec<Received>, AzError> {
        let r = self
            .client
            .get_messages()
            .number_of_messages(n.clamp(1, 32))
            .visibility_timeout(lock.max(Duration::from_secs(1)).min(MAX_VISIBILITY))
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let e = AzError::from(e);
                return if e.is(404) { Ok(Vec::new()) } else { Err(e) };
            }
        };
        Ok(r.messages
            .into_iter()
            .map(|m| Received {
                inserted: DateTime::from_timestamp(m.insertion_time.unix_timestamp(), 0)
                    .unwrap_or_else(Utc::now),
                id: m.message_id,
                pop_receipt: m.pop_receipt,
                text: m.message_text,
                dequeue_count: m.dequeue_count,
            })
            .collect())
    }

    /// Ok(false) when the message is gone or the pop receipt is stale (someone else owns it).
    pub async fn delete_message(&self, id: &str, pop_receipt: &str) -> Result<bool, AzError> {
        let c = self
            .client
            .pop_receipt_client(PopReceipt::new(id.to_string(), pop_receipt.to_string()));
        match c.delete().await {
            Ok(_) => Ok(true),
            Err(e) => AzError::from(e).ok_if(404).map(|_| false),
        }
    }

    /// Hides the message for `visibility` from now; returns the new pop receipt, or `None` when
    /// the message is gone or no longer ours.
    pub async fn set_visibility(
        &self,
        id: &str,
        pop_receipt: &str,
        text: &str,
        visibility: Duration,
    ) -> Result<Option<String>, AzError> {
        let c = self
            .client
            .pop_receipt_client(PopReceipt::new(id.to_string(), pop_receipt.to_string()));
        match c
            .update(text.to_string(), ceil_secs(visibility).min(MAX_VISIBILITY))
            .await
        {
            Ok(r) => Ok(Some(r.pop_receipt)),
            Err(e) => AzError::from(e).ok_if(404).map(|_| None),
        }
    }
}
