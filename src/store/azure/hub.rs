//! One task hub's resources (tables, queues, blob container) and the operations every part of
//! the store shares: enqueueing and decoding messages, reading rows, resolving large values.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use azure_data_tables::prelude::TableServiceClient;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobServiceClient, ClientBuilder};
use azure_storage_queues::{QueueServiceClient, QueueServiceClientBuilder};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::blobs::{self, Blobs};
use super::connection::Account;
use super::entities::{self, get_str, Entity, LARGE_CANDIDATES, MAX_COLUMN_UTF16};
use super::error::AzError;
use super::keys;
use super::messages::{self, MessageData, Parsed};
use super::options::AzureOptions;
use super::queues::{Queue, Received};
use super::tables::Table;
use crate::model::{EventKind, HistoryEvent};
use crate::store::{InstanceRecord, OrchestrationMessage, StoreError, StoreResult};

pub struct Hub {
    pub name: String,
    pub opts: AzureOptions,
    pub instances: Table,
    pub history: Table,
    pub partitions: Table,
    pub queues: QueueServiceClient,
    pub workitems: Queue,
    pub large: Blobs,
    pub leases_container: Blobs,
    pub applease_container: Blobs,
    partition_count: OnceCell<u32>,
    seq: AtomicI64,
}

/// One HTTP client (connection pool) per hub, shared by its three services.
///
/// The crates' default client sets `pool_max_idle_per_host(0)`: a new TCP connection for every
/// request. Under load that fills the port range with TIME_WAIT sockets and adds a connect to
/// every call. Pooled connections instead, dropped after 4 s idle: before Node's 5 s keep-alive
/// closes them under us (Azurite), so a reused connection is not one the server is closing.
/// Not one pool per process: a pooled connection is served by a task on the runtime that opened
/// it, and a store belongs to one runtime (tests run many, one after another).
/// Timeouts turn a hung request into an I/O error, which the retry policy retries.
fn transport() -> azure_core::TransportOptions {
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building an HTTP client with static settings");
    azure_core::TransportOptions::new(std::sync::Arc::new(client))
}

fn retry() -> azure_core::RetryOptions {
    // Short, bounded retries: an unreachable emulator must fail a call in seconds, not minutes.
    azure_core::RetryOptions::fixed(
        azure_core::FixedRetryOptions::default()
            .max_retries(3u32)
            .delay(Duration::from_millis(200))
            .max_total_elapsed(Duration::from_secs(10)),
    )
}

impl Hub {
    pub fn new(account: &Account, hub: &str, opts: AzureOptions) -> Self {
        let creds = StorageCredentials::access_key(account.name.clone(), account.key.clone());
        let transport = transport();
        let loc = |uri: &str| CloudLocation::Custom {
            account: account.name.clone(),
            uri: uri.to_string(),
        };
        let tables = azure_data_tables::clients::TableServiceClientBuilder::with_location(
            loc(&account.table_endpoint),
            creds.clone(),
        )
        .retry(retry())
        .transport(transport.clone())
        .build();
        let queues =
            QueueServiceClientBuilder::with_location(loc(&account.queue_endpoint), creds.clone())
                .retry(retry())
                .transport(transport.clone())
                .build();
        let blobs: BlobServiceClient =
            ClientBuilder::with_location(loc(&account.blob_endpoint), creds)
                .retry(retry())
                .transport(transport.clone())
                .blob_service_client();
        let lower = hub.to_ascii_lowercase();
        Self::from_clients(hub, opts, &tables, queues, &blobs, &lower)
    }

    fn from_clients(
        hub: &str,
        opts: AzureOptions,
        tables: &TableServiceClient,
        queues: QueueServiceClient,
        blob_service: &BlobServiceClient,
        lower: &str,
    ) -> Self {
        Self {
            name: hub.to_string(),
            instances: Table::new(tables, &format!("{hub}Instances")),
            history: Table::new(tables, &format!("{hub}History")),
            partitions: Table::new(tables, &format!("{hub}Partitions")),
            workitems: Queue::new(&queues, &keys::workitem_queue_name(hub)),
            large: Blobs::new(blob_service, &keys::large_messages_container(hub)),
            leases_container: Blobs::new(blob_service, &format!("{lower}-leases")),
            applease_container: Blobs::new(blob_service, &format!("{lower}-applease")),
            queues,
            opts,
            partition_count: OnceCell::new(),
            seq: AtomicI64::new(1),
        }
    }

    /// The hub's partition count: rows in `{Hub}Partitions`, else `taskhub.json`, else the
    /// configured default (spec §6). Read once.
    pub async fn partition_count(&self) -> StoreResult<u32> {
        self.partition_count
            .get_or_try_init(|| async {
                let rows = self
                    .partitions
                    .query(Some("PartitionKey eq ''".into()), None)
                    .await?;
                if !rows.is_empty() {
                    return Ok::<u32, StoreError>(rows.len().min(16) as u32);
                }
                if let Ok(Some(text)) = self.leases_container.read_plain("taskhub.json").await {
                    if let Some(n) = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.get("PartitionCount").and_then(Value::as_u64))
                    {
                        return Ok(n.clamp(1, 16) as u32);
                    }
                }
                Ok(self.opts.partition_count)
            })
            .await
            .copied()
    }

    pub fn control_queue(&self, partition: u32) -> Queue {
        Queue::new(
            &self.queues,
            &keys::control_queue_name(&self.name, partition),
        )
    }

    pub async fn control_queue_for(&self, instance_id: &str) -> StoreResult<Queue> {
        let n = self.partition_count().await?;
        Ok(self.control_queue(keys::partition_index(instance_id, n)))
    }

    fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Enqueues a message to its instance's control queue (or the work-item queue for
    /// activities). Large messages go to a blob first. Returns the blob name if one was used.
    pub async fn enqueue(
        &self,
        m: &OrchestrationMessage,
        attempt: Option<u32>,
        to_workitems: bool,
    ) -> StoreResult<Option<String>> {
        let mut data = MessageData::new(
            &m.instance_id,
            m.execution_id.as_deref(),
            m.event.clone(),
            self.next_seq(),
        );
        data.attempt = attempt;
        let json = data.to_json();
        let (body, blob) = if json.len() > blobs::MAX_MESSAGE_BYTES {
            let name = blobs::message_blob_name(
                &m.instance_id,
                &data.activity_id,
                m.event.event_type().as_str(),
            );
            self.large.upload_gz(&name, &json).await?;
            (MessageData::blob_wrapper_json(&name), Some(name))
        } else {
            (json, None)
        };
        let delay = m
            .visible_at
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or_default();
        let queue = if to_workitems {
            self.workitems.clone()
        } else {
            self.control_queue_for(&m.instance_id).await?
        };
        queue.put(self.opts.encoding.encode(&body), delay).await?;
        Ok(blob)
    }

    /// Decodes a received message, fetching it from its blob when it is large.
    pub async fn decode(&self, r: &Received) -> Result<MessageData, AzError> {
        let text = messages::decode_body(&r.text).map_err(AzError::other)?;
        match messages::parse(&text).map_err(AzError::other)? {
            Parsed::Message(m) => Ok(*m),
            Parsed::Blob(name) => {
                let full = self.large.download_gz(&name).await?;
                match messages::parse(&full).map_err(AzError::other)? {
                    Parsed::Message(m) => Ok(*m),
                    Parsed::Blob(_) => Err(AzError::other(format!(
                        "blob '{name}' holds another blob reference"
                    ))),
                }
            }
        }
    }

    pub async fn read_row(&self, instance_id: &str) -> StoreResult<Option<Entity>> {
        Ok(self
            .instances
            .get(&keys::escape_partition_key(instance_id), "")
            .await?)
    }

    /// An Instances row as a record, with blob references in Input/Output resolved.
    pub async fn record(&self, row: &Entity, include_input: bool) -> StoreResult<InstanceRecord> {
        let mut r = entities::record_from_row(row);
        r.input = match r.input.take() {
            Some(v) if include_input => Some(self.resolve_instance_value(v).await?),
            _ => None,
        };
        if let Some(v) = r.output.take() {
            r.output = Some(self.resolve_instance_value(v).await?);
        }
        Ok(r)
    }

    /// An Instances Input/Output that is an absolute URL into `{hub}-largemessages` is a blob
    /// reference (spec §3.3); a start message blob holds the whole message.
    async fn resolve_instance_value(&self, v: String) -> StoreResult<String> {
        let Some(name) = self.large.name_from_url(&v) else {
            return Ok(v);
        };
        let Some(text) = self.large.read_blob_text(&name).await? else {
            return Ok(v);
        };
        if name.ends_with("ExecutionStarted.json.gz") {
            if let Ok(Parsed::Message(m)) = messages::parse(&text) {
                if let EventKind::ExecutionStarted { input, .. } = m.event.kind {
                    return Ok(input.unwrap_or_default());
                }
            }
        }
        Ok(text)
    }

    /// Moves large Input/Output values of an Instances row to blobs, storing their URLs.
    pub async fn offload_instance_columns(&self, row: &mut Entity) -> StoreResult<()> {
        let pk = get_str(row, "PartitionKey").unwrap_or_default();
        for col in ["Input", "Output"] {
            let Some(v) = get_str(row, col) else { continue };
            if entities::utf16_len(&v) > MAX_COLUMN_UTF16 {
                let name = blobs::history_blob_name(&pk, "", col, col);
                self.large.upload_gz(&name, &v).await?;
                entities::set_str(row, col, self.large.url_of(&name));
            }
        }
        Ok(())
    }

    /// Moves large columns of a History row to blobs: column `""` plus `{Column}BlobName`.
    pub async fn offload_history_columns(&self, row: &mut Entity) -> StoreResult<()> {
        let pk = get_str(row, "PartitionKey").unwrap_or_default();
        let rk = get_str(row, "RowKey").unwrap_or_default();
        let et = get_str(row, "EventType").unwrap_or_default();
        for col in LARGE_CANDIDATES {
            let Some(v) = get_str(row, col) else { continue };
            if entities::utf16_len(&v) > MAX_COLUMN_UTF16 {
                let name = blobs::history_blob_name(&pk, &rk, &et, col);
                self.large.upload_gz(&name, &v).await?;
                entities::set_str(row, col, "");
                entities::set_str(row, &format!("{col}BlobName"), name);
            }
        }
        Ok(())
    }

    /// Replaces `{Column}BlobName` references of a History row with the blob text.
    pub async fn resolve_history_columns(&self, row: &mut Entity) -> StoreResult<()> {
        for col in LARGE_CANDIDATES {
            if let Some(name) = get_str(row, &format!("{col}BlobName")).filter(|n| !n.is_empty()) {
                let text = self.large.download_gz(&name).await?;
                entities::set_str(row, col, text);
            }
        }
        Ok(())
    }

    pub fn event_from_row(&self, row: &Entity) -> StoreResult<HistoryEvent> {
        entities::event_from_row(row).map_err(StoreError::Backend)
    }
}

impl Blobs {
    /// A plain (not gzip) blob's text, `None` when absent (`taskhub.json`).
    pub async fn read_plain(&self, name: &str) -> Result<Option<String>, AzError> {
        match self.raw(name).await {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Err(e) if e.is(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
