//! [`Store`] on Azure Storage in the DTFx layout. Management calls touch only the rows and
//! queues they need; the execution half starts its partition manager on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::{broadcast, OnceCell};

use super::activities::Activities;
use super::connection::Account;
use super::entities::{self, get_i32, Entity};
use super::history::{self, Loaded};
use super::hub::Hub;
use super::keys::escape_partition_key;
use super::options::AzureOptions;
use super::query;
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
    /// Held while the hub is being created, so that concurrent first callers create it once.
    ensuring: tokio::sync::Mutex<()>,
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
            ensuring: tokio::sync::Mutex::new(()),
            locks: Mutex::new(HashMap::new()),
        }))
    }

    /// The hub's resources (layout tests read raw rows and messages through them).
    pub fn hub_resources(&self) -> &Hub {
        &self.hub
    }

    /// Creates what is missing of the hub (never partition rows or `taskhub.json`). One caller
    /// creates; the others wait for it (an executor's workers all arrive here at once).
    async fn ensure_hub(&self) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        if self.ensured.load(Ordering::Acquire) {
            return Ok(());
        }
        let _creating = self.ensuring.lock().await;
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
                Ok::<_, StoreError>(Worker::start(hub).await)
            })
            .await
            .cloned()
    }

    /// Start (client) or sub-orchestration create. DTFx clients ensure the hub before every
    /// call; this process does it once, so when a start fails because another process deleted
    /// the hub meanwhile, it creates the hub again and starts once more (with a new execution
    /// id, so a message the failed attempt may have left is dropped as obsolete).
    async fn start(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()> {
        self.ensure_hub().await?;
        match self.start_once(new.clone(), policy).await {
            Err(StoreError::Backend(e)) if !self.hub.instances.exists().await? => {
                tracing::info!(hub = %self.hub.name, error = %e, "the task hub was deleted; creating it again");
                self.create_hub().await?;
                let execution_id = crate::model::new_guid_n();
                self.start_once(
                    NewInstance {
                        execution_id,
                        ..new
                    },
                    policy,
                )
                .await
            }
            r => r,
        }
    }

    /// Enqueue first, then write the row (spec §4.4).
    async fn start_once(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()> {
        let id = new.instance_id.as_str().to_string();
        let existing = self.hub.read_row(&id).await?;
        if let Some(row) = &existing {
            let status = entities::record_from_row(row).runtime_status;
            if !policy.replaces(status) {
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

    /// [`purge_one`](Self::purge_one) of a terminal instance. Tables have no transactions across
    /// partitions, so the row's ETag stands in for one: the status is read with it, and the row
    /// is deleted only if it is still that row. A start (or rewind) that rewrote it meanwhile
    /// fails the delete, and the new instance stays.
    async fn purge_terminal(&self, id: &str) -> StoreResult<u64> {
        let Some(row) = self.hub.read_row(id).await? else {
            return Ok(0);
        };
        let status = entities::record_from_row(&row).runtime_status;
        if !status.is_terminal() {
            return Err(StoreError::NotTerminal {
                instance_id: id.to_string(),
                status,
            });
        }
        self.purge_one_if(id, row_etag(&row).as_deref()).await
    }

    async fn purge_one(&self, id: &str) -> StoreResult<u64> {
        if self.hub.read_row(id).await?.is_none() {
            return Ok(0);
        }
        self.purge_one_if(id, None).await
    }

    /// Deletes the history and blobs, then the row (only while its ETag is `etag`, if given):
    /// a crash in between leaves the row, so purging again finishes the job.
    async fn purge_one_if(&self, id: &str, etag: Option<&str>) -> StoreResult<u64> {
        history::delete_all(&self.hub, id).await?;
        // Message blobs live under the raw id, history blobs under the escaped one. DTFx lists
        // by the raw id without '/', which also deletes other instances' blobs; we do not.
        self.hub.large.delete_prefix(&format!("{id}/")).await?;
        let esc = escape_partition_key(id);
        if esc != id {
            self.hub.large.delete_prefix(&format!("{esc}/")).await?;
        }
        match self.hub.instances.delete(&esc, "", etag).await {
            Ok(deleted) => Ok(deleted as u64),
            // The row changed after it was read as terminal: a new execution started under the
            // id. What was purged (the old execution's history) is gone; the new one stays.
            Err(e) if e.is(412) => Ok(1),
            Err(e) => Err(e.into()),
        }
    }

    fn take_lock(&self, token: &str) -> StoreResult<OrchLock> {
        self.locks
            .lock()
            .unwrap()
            .remove(token)
            .ok_or(StoreError::LockLost)
    }

    /// One attempt: `Ok(None)` when nothing came within `wait` or the instance it got had
    /// nothing to run (stale or early messages, set aside).
    async fn lock_once(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<Option<OrchestrationWorkItem>>> {
        let worker = self.worker().await?;
        let Some((instance_id, token, mut messages)) =
            worker.sessions.lock_next(wait, lock_for).await
        else {
            return Ok(None);
        };
        // The queue's visibility timeout is the lock other processes see: match it to lock_for.
        // A message that is gone meanwhile (deleted with its hub or instance, or fetched by
        // another process after its visibility ran out) is not ours to process.
        let hidden = self.hide_for(&mut messages, lock_for).await;
        let messages: Vec<Held> = match hidden {
            Ok(gone) => messages
                .into_iter()
                .filter(|h| !gone.contains(&h.received.id))
                .collect(),
            Err(e) => {
                worker.sessions.put_back(&instance_id, &token, messages);
                return Err(e);
            }
        };
        if messages.is_empty() {
            worker.sessions.unlock(&instance_id, &token);
            return Ok(Some(None));
        }
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
                worker.sessions.put_back(&instance_id, &token, messages);
                return Err(e);
            }
        };
        let (messages, obsolete) = split_obsolete(row.as_ref(), messages);
        if !obsolete.is_empty() {
            let futs = obsolete.iter().map(|h| {
                let q = self.hub.control_queue(h.partition);
                async move {
                    q.delete_message(&h.received.id, &h.received.pop_receipt)
                        .await
                }
            });
            for r in futures::future::join_all(futs).await {
                r?;
            }
        }
        if messages.is_empty() {
            worker.sessions.unlock(&instance_id, &token);
            return Ok(Some(None));
        }
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
            worker.sessions.unlock(&instance_id, &token);
            return Ok(Some(None));
        }
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
                    visible_at: super::worker::due_time(&h.data.event.kind),
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
        Ok(Some(Some(item)))
    }

    /// Hides held messages for `lock_for` from now, all at once (skipped for those already
    /// hidden that long, give or take a second). Returns the ids of messages that are gone or
    /// no longer ours (their pop receipt went stale).
    async fn hide_for(&self, held: &mut [Held], lock_for: Duration) -> StoreResult<Vec<String>> {
        let target = std::time::Instant::now() + lock_for;
        let futs = held
            .iter_mut()
            .filter(|h| {
                h.hidden_until.max(target) - h.hidden_until.min(target) > Duration::from_secs(1)
            })
            .map(|h| {
                let q = self.hub.control_queue(h.partition);
                async move {
                    let r = &h.received;
                    match q
                        .set_visibility(&r.id, &r.pop_receipt, &r.text, lock_for)
                        .await?
                    {
                        Some(pop) => {
                            h.received.pop_receipt = pop;
                            h.hidden_until = target;
                            Ok(None)
                        }
                        None => Ok::<_, StoreError>(Some(h.received.id.clone())),
                    }
                }
            });
        let mut gone = Vec::new();
        for r in futures::future::join_all(futs).await {
            gone.extend(r?);
        }
        Ok(gone)
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

/// Splits off messages a DTFx worker drops before running anything: starts of an execution the
/// row has moved past (same or older generation), and everything for an instance with neither a
/// row nor a start (it was purged; queue messages cannot be deleted by instance).
fn split_obsolete(row: Option<&Entity>, messages: Vec<Held>) -> (Vec<Held>, Vec<Held>) {
    let is_start = |h: &Held| matches!(h.data.event.kind, EventKind::ExecutionStarted { .. });
    let Some(row) = row else {
        return if messages.iter().any(is_start) {
            (messages, Vec::new())
        } else {
            (Vec::new(), messages)
        };
    };
    let row_exec = entities::get_str(row, "ExecutionId").unwrap_or_default();
    let row_gen = get_i32(row, "Generation").unwrap_or(0);
    messages
        .into_iter()
        .partition(|h| match &h.data.event.kind {
            EventKind::ExecutionStarted {
                execution_id,
                generation,
                ..
            } => *execution_id == row_exec || *generation > row_gen,
            _ => true,
        })
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

    /// DTFx creates the Instances table first and deletes it first, so it stands for the hub.
    async fn hub_exists(&self) -> StoreResult<bool> {
        Ok(self.hub.instances.exists().await?)
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
        let after = q
            .continuation
            .as_deref()
            .map(query::decode_token)
            .transpose()?;
        let size = q.page_size.max(1);
        let rows = query::scan(&self.hub, &q.filter, after.as_ref()).await?;
        let mut items = Vec::with_capacity(size.min(rows.len()));
        for row in rows.iter().take(size) {
            items.push(self.hub.record(row, q.include_input).await?);
        }
        items.truncate(crate::store::rows_within(&items, q.max_bytes));
        let continuation = (rows.len() > items.len())
            .then(|| items.len().checked_sub(1).and_then(|last| rows.get(last)))
            .flatten()
            .map(query::encode_token);
        Ok(Page {
            items,
            continuation,
        })
    }

    async fn stop_execution(&self) -> StoreResult<()> {
        if let Some(worker) = self.worker.get() {
            worker.stop().await;
        }
        Ok(())
    }

    async fn send_message(&self, m: OrchestrationMessage) -> StoreResult<()> {
        if self.hub.read_row(&m.instance_id).await?.is_none() {
            return Err(StoreError::NotFound(m.instance_id));
        }
        self.hub.enqueue(&m, None, false).await.map(|_| ())
    }

    async fn rewind(&self, id: &str, reason: Option<String>) -> StoreResult<()> {
        rewind::rewind(&self.hub, id, reason).await
    }

    async fn purge_instance(&self, id: &str) -> StoreResult<u64> {
        self.purge_terminal(id).await
    }

    async fn purge_instances(&self, f: &InstanceFilter, limit: usize) -> StoreResult<PurgeResult> {
        let rows = query::scan(&self.hub, f, None).await?;
        let ids: Vec<String> = rows
            .iter()
            .take(limit.max(1))
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
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<OrchestrationWorkItem>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.lock_once(lock_for, left).await? {
                Some(Some(item)) => return Ok(Some(item)),
                Some(None) if !left.is_zero() => continue,
                _ => return Ok(None),
            }
        }
    }

    async fn complete_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        commit: OrchestrationCommit,
    ) -> StoreResult<()> {
        let lock = self.take_lock(&item.lock_token)?;
        let sessions = &self.worker().await?.sessions;
        if !sessions.holds(&lock.instance_id, &item.lock_token) {
            // The lock lapsed: another work item may have the messages by now.
            return Err(StoreError::LockLost);
        }
        let result = self.apply(&lock, commit).await;
        sessions.unlock(&lock.instance_id, &item.lock_token);
        match result {
            Ok(()) => {
                let futs = lock.messages.iter().map(|h| {
                    let q = self.hub.control_queue(h.partition);
                    async move {
                        q.delete_message(&h.received.id, &h.received.pop_receipt)
                            .await
                    }
                });
                let mut all = true;
                for r in futures::future::join_all(futs).await {
                    all &= r?;
                }
                // A message we could not delete was redelivered meanwhile (its lock lapsed).
                if all {
                    Ok(())
                } else {
                    Err(StoreError::LockLost)
                }
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
            w.sessions.unlock(&lock.instance_id, &item.lock_token);
        }
        Ok(())
    }

    async fn renew_orchestration_lock(
        &self,
        item: &OrchestrationWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()> {
        let mut held: Vec<Held> = {
            let locks = self.locks.lock().unwrap();
            locks
                .get(&item.lock_token)
                .ok_or(StoreError::LockLost)?
                .messages
                .clone()
        };
        let sessions = &self.worker().await?.sessions;
        if !sessions.renew(&item.instance_id, &item.lock_token, lock_for) {
            return Err(StoreError::LockLost);
        }
        // Renewing always re-hides (hide_for skips messages already hidden that long).
        for h in held.iter_mut() {
            h.hidden_until = std::time::Instant::now();
        }
        if !self.hide_for(&mut held, lock_for).await?.is_empty() {
            return Err(StoreError::LockLost);
        }
        if let Some(l) = self.locks.lock().unwrap().get_mut(&item.lock_token) {
            l.messages = held;
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
        // Children first: an event sent to a new child must queue behind its start.
        for n in commit.new_instances {
            self.start(n, ReusePolicy::ReplaceAny).await?;
        }
        for m in &commit.messages {
            hub.enqueue(m, None, false).await?;
        }
        let new_events = match &commit.history {
            HistoryWrite::Append(e) | HistoryWrite::Replace(e) => e,
        };
        for a in &commit.activities {
            // The message carries its TaskScheduled event's own timestamp: a redelivered
            // message is matched against the committed row by it (Activities::may_run_redelivered).
            let scheduled_at = new_events
                .iter()
                .find(|e| {
                    e.event_id == a.task_id && matches!(e.kind, EventKind::TaskScheduled { .. })
                })
                .map_or_else(crate::model::now, |e| e.timestamp);
            let m = OrchestrationMessage {
                instance_id: a.instance_id.clone(),
                execution_id: Some(a.execution_id.clone()),
                event: crate::model::HistoryEvent::new(
                    a.task_id,
                    scheduled_at,
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
