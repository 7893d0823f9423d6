//! [`Store`] on Azure Storage in the DTFx layout. Management calls touch only the rows and
//! queues they need; the execution half starts its partition manager on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{broadcast, OnceCell};

use super::activities::Activities;
use super::connection::Account;
use super::entities::{self, get_i32, Entity};
use super::history::{self, Loaded};
use super::hub::Hub;
use super::keys::{self, escape_partition_key, odata_str};
use super::options::AzureOptions;
use super::rewind;
use super::sessions::Held;
use super::tables::row_etag;
use super::worker::Worker;
use crate::model::{EventKind, RuntimeStatus};
use crate::store::{
    ActivityWorkItem, HistoryWrite, InstanceFilter, InstanceQuery, InstanceRecord, NewInstance,
    OrchestrationCommit, OrchestrationMessage, OrchestrationWorkItem, Page, PurgeResult,
    ReusePolicy, Store, StoreError, StoreResult,
};

pub struct AzureStore {
    hub: Arc<Hub>,
    worker: OnceCell<Arc<Worker>>,
    /// Set once the hub's tables, queues and container are known to exist (DTFx clients run
    /// `EnsureTaskHubAsync` before every call; once per process is enough).
    ensured: std::sync::atomic::AtomicBool,
    locks: Mutex<HashMap<String, OrchLock>>,
    activities: Activities,
}

/// What a locked orchestration work item holds besides what the executor sees.
struct OrchLock {
    instance_id: String,
    messages: Vec<Held>,
    loaded: Loaded,
    row: Option<Entity>,
}

impl AzureStore {
    pub fn open(connection: &str, hub: &str, opts: AzureOptions) -> StoreResult<Arc<AzureStore>> {
        let account = Account::parse(connection).map_err(StoreError::Backend)?;
        let hub = Arc::new(Hub::new(&account, hub, opts));
        Ok(Arc::new(AzureStore {
            activities: Activities::new(hub.clone()),
            hub,
            worker: OnceCell::new(),
            ensured: std::sync::atomic::AtomicBool::new(false),
            locks: Mutex::new(HashMap::new()),
        }))
    }

    /// The hub's resources (layout tests read raw rows and messages through them).
    pub fn hub_resources(&self) -> &Hub {
        &self.hub
    }

    /// Creates what is missing of the hub (never partition rows or `taskhub.json`).
    async fn ensure_hub(&self) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        if !self.ensured.load(Ordering::Acquire) {
            self.create_hub().await?;
            self.ensured.store(true, Ordering::Release);
        }
        Ok(())
    }

    async fn worker(&self) -> StoreResult<Arc<Worker>> {
        self.ensure_hub().await?;
        let hub = self.hub.clone();
        self.worker
            .get_or_try_init(|| async move {
                hub.partition_count().await?;
                Ok::<_, StoreError>(Worker::start(hub))
            })
            .await
            .cloned()
    }

    /// Start (client) or sub-orchestration create: enqueue first, then write the row (spec §4.4).
    async fn start(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()> {
        self.ensure_hub().await?;
        let id = new.instance_id.as_str().to_string();
        let existing = self.hub.read_row(&id).await?;
        if let Some(row) = &existing {
            let status = entities::record_from_row(row).runtime_status;
            if policy == ReusePolicy::ReplaceTerminal && !status.is_terminal() {
                return Err(StoreError::AlreadyExists {
                    instance_id: id,
                    status,
                });
            }
        }
        let generation = existing
            .as_ref()
            .and_then(|r| get_i32(r, "Generation"))
            .map_or(0, |g| g + 1);
        let mut event = new.started_event();
        if let EventKind::ExecutionStarted { generation: g, .. } = &mut event.kind {
            *g = generation;
        }
        let message = OrchestrationMessage {
            instance_id: id.clone(),
            execution_id: Some(new.execution_id.clone()),
            event,
            visible_at: new.scheduled_start_time,
        };
        let blob = self.hub.enqueue(&message, None, false).await?;
        let mut row = entities::pending_row(&self.hub.name, &new, generation, Utc::now());
        match blob {
            Some(name) => entities::set_str(&mut row, "Input", self.hub.large.url_of(&name)),
            None => self.hub.offload_instance_columns(&mut row).await?,
        }
        let written = match &existing {
            None => self.hub.instances.insert(&row).await,
            Some(old) => {
                self.hub
                    .instances
                    .update(&row, row_etag(old).as_deref(), false)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(()),
            // Someone else created or replaced it between our read and write.
            Err(e) if e.is(409) || e.is(412) => {
                let status = match self.hub.read_row(&id).await? {
                    Some(r) => entities::record_from_row(&r).runtime_status,
                    None => RuntimeStatus::Pending,
                };
                Err(StoreError::AlreadyExists {
                    instance_id: id,
                    status,
                })
            }
            Err(e) if e.is(404) => Err(StoreError::Backend(format!(
                "the task hub '{}' does not exist in this storage account (create it first)",
                self.hub.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn purge_one(&self, id: &str) -> StoreResult<u64> {
        if self.hub.read_row(id).await?.is_none() {
            return Ok(0);
        }
        history::delete_all(&self.hub, id).await?;
        // Message blobs live under the raw id, history blobs under the escaped one. DTFx lists
        // by the raw id without '/', which also deletes other instances' blobs; we do not.
        self.hub.large.delete_prefix(&format!("{id}/")).await?;
        let esc = escape_partition_key(id);
        if esc != id {
            self.hub.large.delete_prefix(&format!("{esc}/")).await?;
        }
        let deleted = self.hub.instances.delete(&esc, "", None).await?;
        Ok(deleted as u64)
    }

    fn filter_expr(&self, f: &InstanceFilter, after: Option<&str>) -> String {
        let mut parts = vec!["RowKey eq ''".to_string()];
        if let Some(t) = f.created_from {
            parts.push(format!(
                "CreatedTime ge datetime'{}'",
                super::dtfx::format_time(t)
            ));
        }
        if let Some(t) = f.created_to {
            parts.push(format!(
                "CreatedTime le datetime'{}'",
                super::dtfx::format_time(t)
            ));
        }
        if !f.statuses.is_empty() {
            let or: Vec<String> = f
                .statuses
                .iter()
                .map(|s| format!("RuntimeStatus eq '{s}'"))
                .collect();
            parts.push(format!("({})", or.join(" or ")));
        }
        if let Some(p) = f.instance_id_prefix.as_deref().filter(|p| !p.is_empty()) {
            let esc = escape_partition_key(p);
            parts.push(format!("PartitionKey ge {}", odata_str(&esc)));
            if let Some(hi) = keys::prefix_upper_bound(&esc) {
                parts.push(format!("PartitionKey lt {}", odata_str(&hi)));
            }
        }
        if let Some(n) = &f.name {
            parts.push(format!("Name eq {}", odata_str(n)));
        }
        if let Some(a) = after {
            parts.push(format!("PartitionKey gt {}", odata_str(a)));
        }
        // Durable entities (`@name@key`) are not orchestrations.
        parts.push("(PartitionKey lt '@' or PartitionKey ge 'A')".into());
        parts
            .into_iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn take_lock(&self, token: &str) -> StoreResult<OrchLock> {
        self.locks
            .lock()
            .unwrap()
            .remove(token)
            .ok_or(StoreError::LockLost)
    }

    async fn release_messages(&self, lock: &OrchLock, visibility: Duration) {
        let futs = lock.messages.iter().map(|h| {
            let q = self.hub.control_queue(h.partition);
            let r = h.received.clone();
            async move {
                let _ = q
                    .set_visibility(&r.id, &r.pop_receipt, &r.text, visibility)
                    .await;
            }
        });
        futures::future::join_all(futs).await;
    }
}

/// A start whose Instances row is not written yet: no row, or the row of an older generation.
/// Given up after 10 deliveries (DTFx: then the start is dropped).
fn start_not_visible_yet(row: Option<&Entity>, messages: &[Held]) -> bool {
    let row_exec = row.and_then(|r| entities::get_str(r, "ExecutionId"));
    let row_gen = row.and_then(|r| get_i32(r, "Generation")).unwrap_or(0);
    messages.iter().any(|h| match &h.data.event.kind {
        EventKind::ExecutionStarted {
            execution_id,
            generation,
            ..
        } if h.received.dequeue_count < 10 => match &row_exec {
            None => true,
            Some(e) => e != execution_id && *generation > row_gen,
        },
        _ => false,
    })
}

/// After a client re-creates an instance, the Instances row names the new execution while the
/// History partition still holds the old one until the first checkpoint: that history is not
/// this execution's.
fn current_execution_only(loaded: &mut Loaded, row: Option<&Entity>) {
    let row_exec = row.and_then(|r| entities::get_str(r, "ExecutionId"));
    if row_exec.is_some() && row_exec != loaded.execution_id {
        loaded.events.clear();
    }
}

fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("pk:{key}"))
}

fn decode_token(token: &str) -> StoreResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("pk:").map(str::to_string))
        .ok_or(StoreError::InvalidContinuationToken)
}

#[async_trait]
impl Store for AzureStore {
    fn hub(&self) -> &str {
        &self.hub.name
    }

    async fn create_hub(&self) -> StoreResult<()> {
        let h = &self.hub;
        h.instances.create().await?;
        h.history.create().await?;
        h.workitems.create().await?;
        h.large.create().await?;
        for p in 0..h.partition_count().await? {
            h.control_queue(p).create().await?;
        }
        Ok(())
    }

    async fn delete_hub(&self) -> StoreResult<()> {
        let h = &self.hub;
        // A later start in this process creates the hub again.
        self.ensured
            .store(false, std::sync::atomic::Ordering::Release);
        h.instances.delete_table().await?;
        h.history.delete_table().await?;
        h.partitions.delete_table().await?;
        h.workitems.delete().await?;
        for p in 0..16 {
            h.control_queue(p).delete().await?;
        }
        h.large.delete_container().await?;
        h.leases_container.delete_container().await?;
        h.applease_container.delete_container().await?;
        Ok(())
    }

    async fn create_instance(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()> {
        self.start(new, policy).await
    }

    async fn get_instance(&self, id: &str) -> StoreResult<Option<InstanceRecord>> {
        match self.hub.read_row(id).await? {
            Some(row) => Ok(Some(self.hub.record(&row, true).await?)),
            None => Ok(None),
        }
    }

    async fn get_history(&self, id: &str) -> StoreResult<Vec<crate::model::HistoryEvent>> {
        let row = self.hub.read_row(id).await?;
        let mut loaded = history::load(&self.hub, id).await?;
        current_execution_only(&mut loaded, row.as_ref());
        Ok(loaded.events)
    }

    async fn query_instances(&self, q: &InstanceQuery) -> StoreResult<Page<InstanceRecord>> {
        let after = q.continuation.as_deref().map(decode_token).transpose()?;
        let size = q.page_size.max(1);
        // One row more than the page tells whether another page exists.
        let rows = self
            .hub
            .instances
            .query(
                Some(self.filter_expr(&q.filter, after.as_deref())),
                Some(size + 1),
            )
            .await?;
        let more = rows.len() > size;
        let mut items = Vec::with_capacity(size.min(rows.len()));
        for row in rows.iter().take(size) {
            items.push(self.hub.record(row, q.include_input).await?);
        }
        let continuation = more
            .then(|| {
                rows.get(size - 1)
                    .and_then(|r| entities::get_str(r, "PartitionKey"))
            })
            .flatten()
            .map(|k| encode_token(&k));
        Ok(Page {
            items,
            continuation,
        })
    }

    async fn send_message(&self, m: OrchestrationMessage) -> StoreResult<()> {
        if self.hub.read_row(&m.instance_id).await?.is_none() {
            return Err(StoreError::NotFound(m.instance_id));
        }
        if let EventKind::ExecutionRewound { reason } = &m.event.kind {
            return rewind::rewind(&self.hub, &m.instance_id, reason.clone()).await;
        }
        self.hub.enqueue(&m, None, false).await.map(|_| ())
    }

    async fn purge_instance(&self, id: &str) -> StoreResult<u64> {
        self.purge_one(id).await
    }

    async fn purge_instances(&self, f: &InstanceFilter, limit: usize) -> StoreResult<PurgeResult> {
        let rows = self
            .hub
            .instances
            .query(Some(self.filter_expr(f, None)), Some(limit.max(1)))
            .await?;
        let ids: Vec<String> = rows
            .iter()
            .map(|r| entities::record_from_row(r).instance_id)
            .collect();
        let results: Vec<StoreResult<u64>> = futures::stream::iter(ids.clone())
            .map(|id| async move { self.purge_one(&id).await })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut deleted = 0;
        for r in results {
            deleted += r?;
        }
        Ok(PurgeResult {
            instances_deleted: deleted,
            complete: ids.len() < limit.max(1),
        })
    }

    async fn lock_next_orchestration(
        &self,
        _lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<OrchestrationWorkItem>> {
        let worker = self.worker().await?;
        let Some((instance_id, messages)) = worker.sessions.lock_next(wait).await else {
            return Ok(None);
        };
        let loaded = async {
            let row = self.hub.read_row(&instance_id).await?;
            let mut loaded = history::load(&self.hub, &instance_id).await?;
            current_execution_only(&mut loaded, row.as_ref());
            let record = match &row {
                Some(r) => Some(self.hub.record(r, true).await?),
                None => None,
            };
            Ok::<_, StoreError>((row, loaded, record))
        }
        .await;
        let (row, loaded, record) = match loaded {
            Ok(x) => x,
            Err(e) => {
                worker.sessions.put_back(&instance_id, messages);
                return Err(e);
            }
        };
        if start_not_visible_yet(row.as_ref(), &messages) {
            // The client enqueues before it writes the row (DTFx's order): retry shortly, as
            // DTFx does, instead of letting the executor discard the start.
            let lock = OrchLock {
                instance_id: instance_id.clone(),
                messages,
                loaded,
                row,
            };
            self.release_messages(&lock, Duration::from_secs(1)).await;
            worker.sessions.unlock(&instance_id);
            return Ok(None);
        }
        let token = crate::model::new_guid_n();
        let item = OrchestrationWorkItem {
            instance_id: instance_id.clone(),
            lock_token: token.clone(),
            instance: record,
            history: Arc::new(loaded.events.clone()),
            messages: messages
                .iter()
                .map(|h| OrchestrationMessage {
                    instance_id: h.data.instance_id.clone(),
                    execution_id: h.data.execution_id.clone(),
                    event: h.data.event.clone(),
                    visible_at: None,
                })
                .collect(),
        };
        self.locks.lock().unwrap().insert(
            token,
            OrchLock {
                instance_id,
                messages,
                loaded,
                row,
            },
        );
        Ok(Some(item))
    }

    async fn complete_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        commit: OrchestrationCommit,
    ) -> StoreResult<()> {
        let lock = self.take_lock(&item.lock_token)?;
        let result = self.apply(&lock, commit).await;
        if let Some(w) = self.worker.get() {
            w.sessions.unlock(&lock.instance_id);
        }
        match result {
            Ok(()) => {
                let futs = lock.messages.iter().map(|h| {
                    let q = self.hub.control_queue(h.partition);
                    async move {
                        q.delete_message(&h.received.id, &h.received.pop_receipt)
                            .await
                    }
                });
                for r in futures::future::join_all(futs).await {
                    r?;
                }
                Ok(())
            }
            Err(e) => {
                if !matches!(e, StoreError::LockLost) {
                    self.release_messages(&lock, Duration::from_secs(1)).await;
                }
                Err(e)
            }
        }
    }

    async fn abandon_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()> {
        let Ok(lock) = self.take_lock(&item.lock_token) else {
            return Ok(()); // already released (e.g. a failed commit released it)
        };
        self.release_messages(&lock, retry_after).await;
        if let Some(w) = self.worker.get() {
            w.sessions.unlock(&lock.instance_id);
        }
        Ok(())
    }

    async fn renew_orchestration_lock(
        &self,
        item: &OrchestrationWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()> {
        let held: Vec<Held> = {
            let locks = self.locks.lock().unwrap();
            locks
                .get(&item.lock_token)
                .ok_or(StoreError::LockLost)?
                .messages
                .clone()
        };
        let mut renewed = Vec::with_capacity(held.len());
        for mut h in held {
            let q = self.hub.control_queue(h.partition);
            let r = &h.received;
            match q
                .set_visibility(&r.id, &r.pop_receipt, &r.text, lock_for)
                .await?
            {
                Some(pop) => h.received.pop_receipt = pop,
                None => return Err(StoreError::LockLost),
            }
            renewed.push(h);
        }
        if let Some(l) = self.locks.lock().unwrap().get_mut(&item.lock_token) {
            l.messages = renewed;
        }
        Ok(())
    }

    async fn lock_next_activity(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<ActivityWorkItem>> {
        self.worker().await?;
        self.activities.lock_next(lock_for, wait).await
    }

    async fn complete_activity(
        &self,
        item: &ActivityWorkItem,
        result: crate::model::HistoryEvent,
    ) -> StoreResult<()> {
        self.activities.complete(item, result).await
    }

    async fn abandon_activity(
        &self,
        item: &ActivityWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()> {
        self.activities.abandon(item, retry_after).await
    }

    async fn renew_activity_lock(
        &self,
        item: &ActivityWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()> {
        self.activities.renew(item, lock_for).await
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        // Other processes change instances too; only polling sees those.
        None
    }
}

impl AzureStore {
    /// The commit in DTFx's order: outgoing messages first (at-least-once), then history fenced
    /// by the sentinel ETag, then the Instances row.
    async fn apply(&self, lock: &OrchLock, commit: OrchestrationCommit) -> StoreResult<()> {
        let hub = &self.hub;
        let id = &lock.instance_id;
        for m in &commit.messages {
            hub.enqueue(m, None, false).await?;
        }
        for n in commit.new_instances {
            self.start(n, ReusePolicy::ReplaceAny).await?;
        }
        for a in &commit.activities {
            let m = OrchestrationMessage {
                instance_id: a.instance_id.clone(),
                execution_id: Some(a.execution_id.clone()),
                event: crate::model::HistoryEvent::new(
                    a.task_id,
                    Utc::now(),
                    EventKind::TaskScheduled {
                        name: a.name.clone(),
                        input: a.input.clone(),
                    },
                ),
                visible_at: None,
            };
            hub.enqueue(&m, Some(a.attempt), true).await?;
        }
        let execution_id = commit
            .state
            .as_ref()
            .map(|s| s.execution_id.clone())
            .or_else(|| lock.loaded.execution_id.clone())
            .or_else(|| {
                lock.row
                    .as_ref()
                    .and_then(|r| entities::get_str(r, "ExecutionId"))
            });
        let has_history = match &commit.history {
            HistoryWrite::Append(e) => !e.is_empty(),
            HistoryWrite::Replace(_) => true,
        };
        if let Some(exec) = execution_id.filter(|_| has_history || commit.state.is_some()) {
            history::checkpoint(hub, id, &lock.loaded, &commit.history, &exec).await?;
        }
        if let Some(state) = &commit.state {
            let mut row = entities::checkpoint_row(&hub.name, id, lock.row.as_ref(), state);
            hub.offload_instance_columns(&mut row).await?;
            hub.instances.upsert(&row, false).await?;
        }
        Ok(())
    }
}
