//! The embedded default backend: one SQLite file, several task hubs.
//!
//! - Writes go through one writer thread per file that batches them into shared transactions
//!   (group commit: one fsync for many acknowledged writes), see `writer.rs`.
//! - Reads use a small pool of their own connections (WAL), see `reads.rs`.
//! - Work is dispatched from memory by the one process holding the hub's lease, see
//!   `dispatch.rs`; work written by other processes is picked up by `foreign.rs`.

mod checkpoint;
mod codec;
mod dispatch;
mod foreign;
mod lease;
mod query;
mod reads;
mod schema;
mod writer;
mod writes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::broadcast;
use tokio::time::Instant;

use self::codec::{backend, encode_event, now_micros};
use self::dispatch::{Cached, Effects, HubDispatch, LockedOrchestration, TryLock};
use self::foreign::{ForeignScan, Registry};
use self::lease::LeaseGate;
use self::reads::ReadPool;
use self::writer::Writer;
use self::writes::{PreparedMessage, PreparedStart};
use crate::model::{EventKind, HistoryEvent};
use crate::store::{
    ActivityWorkItem, HistoryWrite, InstanceFilter, InstanceQuery, InstanceRecord, NewInstance,
    OrchestrationCommit, OrchestrationMessage, OrchestrationWorkItem, Page, PurgeResult,
    ReusePolicy, Store, StoreError, StoreResult,
};

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A database file that only lives as long as its [`SqliteDb`] (`":memory:"`): a real file, so
/// that the writer and the readers share it.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What every hub of one file shares.
struct Shared {
    // Dropped first: the writer finishes its queue and gives up this process's leases.
    writer: Writer,
    _checkpointer: checkpoint::Checkpointer,
    readers: Arc<ReadPool>,
    /// This handle's identity in `leases`.
    owner: String,
    registry: Arc<Registry>,
    path: PathBuf,
    _temp: Option<TempFile>,
}

/// One open database file, shared by the hubs it holds.
pub struct SqliteDb {
    shared: Arc<Shared>,
    hubs: Mutex<HashMap<String, Arc<SqliteStore>>>,
}

/// The file holds every input and output of every instance: directories it creates are the
/// owner's alone (0700), like the file (0600; SQLite gives its -wal and -shm files the same).
fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file with owner-only permissions if it does not exist yet; an existing
/// file keeps the permissions its owner gave it.
fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl SqliteDb {
    /// Opens (creating parent directories and schema as needed) a database file. `":memory:"`
    /// gives a private temporary file that is deleted when the handle goes.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Arc<SqliteDb>> {
        let path = path.as_ref();
        let (path, temp) = if path == Path::new(":memory:") {
            let p =
                std::env::temp_dir().join(format!("taskhub-{}.db", uuid::Uuid::new_v4().simple()));
            (p.clone(), Some(TempFile(p)))
        } else {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                private_dirs(parent).map_err(|e| {
                    backend(format!("cannot create directory {}: {e}", parent.display()))
                })?;
            }
            (path.to_path_buf(), None)
        };
        private_file(&path)
            .map_err(|e| backend(format!("cannot create {}: {e}", path.display())))?;
        let conn = schema::open_writer(&path)?;
        let owner = lease::owner_id();
        let registry = Arc::new(Registry::default());
        let hooks = ForeignScan::new(&conn, registry.clone(), owner.clone())?;
        let wal = Arc::new(checkpoint::WalSize::default());
        let writer = Writer::spawn(conn, hooks, wal.clone())?;
        let checkpointer = checkpoint::Checkpointer::spawn(&path, wal)?;
        Ok(Arc::new(SqliteDb {
            shared: Arc::new(Shared {
                writer,
                _checkpointer: checkpointer,
                readers: ReadPool::new(path.clone()),
                owner,
                registry,
                path,
                _temp: temp,
            }),
            hubs: Mutex::new(HashMap::new()),
        }))
    }

    /// The store of one hub in this file; the same instance for the same name.
    pub fn hub(self: &Arc<Self>, name: &str) -> Arc<SqliteStore> {
        let mut hubs = self.hubs.lock().unwrap();
        hubs.entry(name.to_owned())
            .or_insert_with(|| SqliteStore::new(name, self.shared.clone()))
            .clone()
    }

    /// A store of one hub that this handle does not keep: for a hub this process only manages
    /// (it runs no executor there), so that dropping the store forgets the hub.
    pub fn detached_hub(self: &Arc<Self>, name: &str) -> Arc<SqliteStore> {
        SqliteStore::new(name, self.shared.clone())
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// One task hub in a [`SqliteDb`].
pub struct SqliteStore {
    hub: String,
    shared: Arc<Shared>,
    dispatch: Arc<HubDispatch>,
    /// Serialises lease acquisition among this process's workers.
    lease: tokio::sync::Mutex<LeaseGate>,
    /// Until when (unix micros) this process holds the lease, as of its last renewal.
    lease_until: AtomicI64,
    me: Weak<SqliteStore>,
}

impl SqliteStore {
    fn new(hub: &str, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new_cyclic(|me| SqliteStore {
            hub: hub.to_owned(),
            shared,
            dispatch: Arc::new(HubDispatch::new()),
            lease: tokio::sync::Mutex::new(LeaseGate::default()),
            lease_until: AtomicI64::new(0),
            me: me.clone(),
        })
    }

    /// Sleeps until notified, the deadline, or `due` (unix micros), whichever comes first.
    async fn wait_for_work(
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        deadline: Instant,
        due: Option<i64>,
    ) {
        let mut until = deadline;
        if let Some(due) = due {
            let in_micros = u64::try_from(due - now_micros()).unwrap_or(0);
            // A millisecond late rather than early: waking before `due` would just spin.
            until = until.min(Instant::now() + Duration::from_micros(in_micros + 1000));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }

    async fn build_item(&self, locked: LockedOrchestration) -> StoreResult<OrchestrationWorkItem> {
        let cached = match locked.cached {
            Some(cached) => cached,
            None => {
                let (hub, id) = (self.hub.clone(), locked.instance_id.clone());
                let read = self
                    .shared
                    .readers
                    .run(move |conn| reads::read_cached(conn, &hub, &id))
                    .await;
                match read {
                    Ok(cached) => {
                        let terminal = cached
                            .record
                            .as_ref()
                            .is_some_and(|r| r.runtime_status.is_terminal());
                        if !terminal {
                            self.dispatch.fill_cache(
                                locked.instance_id.clone(),
                                cached.clone(),
                                locked.epoch,
                            );
                        }
                        cached
                    }
                    Err(e) => {
                        let now = now_micros();
                        self.dispatch.abandon_orchestration(&locked.token, now, now);
                        return Err(e);
                    }
                }
            }
        };
        Ok(OrchestrationWorkItem {
            instance_id: locked.instance_id.to_string(),
            lock_token: locked.token,
            instance: cached.record,
            history: cached.history,
            messages: locked.messages,
        })
    }

    /// Runs a write job whose in-memory effects apply to this hub's dispatch.
    async fn write_effects<R, W>(&self, work: W) -> StoreResult<R>
    where
        R: Send + 'static,
        W: FnOnce(&rusqlite::Connection) -> StoreResult<(R, Effects)> + Send + 'static,
    {
        let dispatch = self.dispatch.clone();
        self.shared
            .writer
            .call(work, move |result| {
                let (r, effects) = result?;
                dispatch.apply(effects, now_micros());
                Ok(r)
            })
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn hub(&self) -> &str {
        &self.hub
    }

    async fn create_hub(&self) -> StoreResult<()> {
        // The schema is created when the file is opened; a hub is just a key value.
        Ok(())
    }

    async fn check_integrity(&self) -> StoreResult<()> {
        let path = self.shared.path.clone();
        self.shared
            .readers
            .run(move |conn| reads::quick_check(conn, &path))
            .await
    }

    async fn hub_exists(&self) -> StoreResult<bool> {
        self.shared
            .readers
            .run_point(|conn| reads::hub_exists(conn, &self.hub))
    }

    async fn delete_hub(&self) -> StoreResult<()> {
        let hub = self.hub.clone();
        let dispatch = self.dispatch.clone();
        self.shared
            .writer
            .call(
                move |conn| writes::delete_hub(conn, &hub),
                move |result| {
                    result?;
                    dispatch.reset();
                    Ok(())
                },
            )
            .await
    }

    async fn create_instance(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()> {
        let start = PreparedStart::new(&new, Utc::now())?;
        let hub = self.hub.clone();
        self.write_effects(move |conn| {
            let id = start.record.instance_id.as_str();
            if policy != ReusePolicy::ReplaceAny {
                match writes::instance_status(conn, &hub, id)? {
                    Some(status) if !policy.replaces(status) => {
                        return Err(StoreError::AlreadyExists {
                            instance_id: id.to_owned(),
                            status,
                        })
                    }
                    _ => {}
                }
            }
            let message_id = writes::start_instance(conn, &hub, &start)?;
            let id: Arc<str> = Arc::from(id);
            let effects = Effects {
                replaced: vec![id.clone()],
                cache_put: vec![(
                    id.clone(),
                    Cached {
                        record: Some(start.record),
                        history: Arc::default(),
                    },
                )],
                messages: vec![(message_id, start.start.message)],
                changed: vec![id],
                ..Effects::default()
            };
            Ok(((), effects))
        })
        .await
    }

    async fn get_instance(&self, id: &str) -> StoreResult<Option<InstanceRecord>> {
        self.shared
            .readers
            .run_point(|conn| reads::read_instance(conn, &self.hub, id))
    }

    async fn get_history(&self, id: &str) -> StoreResult<Vec<HistoryEvent>> {
        let (hub, id) = (self.hub.clone(), id.to_owned());
        self.shared
            .readers
            .run(move |conn| reads::read_history(conn, &hub, &id))
            .await
    }

    async fn query_instances(&self, query: &InstanceQuery) -> StoreResult<Page<InstanceRecord>> {
        let (hub, query) = (self.hub.clone(), query.clone());
        self.shared
            .readers
            .run(move |conn| reads::query_page(conn, &hub, &query))
            .await
    }

    async fn send_message(&self, message: OrchestrationMessage) -> StoreResult<()> {
        let prepared = PreparedMessage::new(message)?;
        let hub = self.hub.clone();
        self.write_effects(move |conn| {
            let id = prepared.message.instance_id.as_str();
            if writes::instance_status(conn, &hub, id)?.is_none() {
                return Err(StoreError::NotFound(id.to_owned()));
            }
            let message_id = writes::insert_message(conn, &hub, &prepared)?;
            let effects = Effects {
                messages: vec![(message_id, prepared.message)],
                ..Effects::default()
            };
            Ok(((), effects))
        })
        .await
    }

    async fn rewind(&self, id: &str, reason: Option<String>) -> StoreResult<()> {
        let prepared = PreparedMessage::new(OrchestrationMessage {
            instance_id: id.to_owned(),
            execution_id: None,
            event: HistoryEvent::unscheduled(EventKind::ExecutionRewound { reason }),
            visible_at: None,
        })?;
        let hub = self.hub.clone();
        // One job, so one transaction: the row turns Pending if and only if the message that
        // rewinds it is queued.
        self.write_effects(move |conn| {
            let id = prepared.message.instance_id.as_str();
            writes::pending_again_if_failed(conn, &hub, id, Utc::now())?;
            let message_id = writes::insert_message(conn, &hub, &prepared)?;
            let id: Arc<str> = Arc::from(id);
            let effects = Effects {
                // The next work item must read the Pending row, not a remembered one.
                cache_evict: vec![id.clone()],
                messages: vec![(message_id, prepared.message)],
                changed: vec![id],
                ..Effects::default()
            };
            Ok(((), effects))
        })
        .await
    }

    async fn purge_instance(&self, id: &str) -> StoreResult<u64> {
        let (hub, id) = (self.hub.clone(), id.to_owned());
        self.write_effects(move |conn| {
            if let Some(status) = writes::instance_status(conn, &hub, &id)? {
                if !status.is_terminal() {
                    return Err(StoreError::NotTerminal {
                        instance_id: id,
                        status,
                    });
                }
            }
            let deleted = writes::purge(conn, &hub, &id)?;
            let id: Arc<str> = Arc::from(id);
            let effects = Effects {
                purged: vec![id.clone()],
                changed: if deleted > 0 { vec![id] } else { Vec::new() },
                ..Effects::default()
            };
            Ok((deleted, effects))
        })
        .await
    }

    async fn purge_instances(
        &self,
        filter: &InstanceFilter,
        limit: usize,
    ) -> StoreResult<PurgeResult> {
        let (hub, filter) = (self.hub.clone(), filter.clone());
        self.write_effects(move |conn| {
            let mut ids = writes::matching_ids(conn, &hub, &filter, limit)?;
            let complete = ids.len() <= limit;
            ids.truncate(limit);
            let mut deleted = 0;
            for id in &ids {
                deleted += writes::purge(conn, &hub, id)?;
            }
            let ids: Vec<Arc<str>> = ids.into_iter().map(Arc::from).collect();
            let effects = Effects {
                purged: ids.clone(),
                changed: ids,
                ..Effects::default()
            };
            Ok((
                PurgeResult {
                    instances_deleted: deleted,
                    complete,
                },
                effects,
            ))
        })
        .await
    }

    async fn lock_next_orchestration(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<OrchestrationWorkItem>> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.wait_for_dispatch(deadline).await? {
                return Ok(None);
            }
            let notified = self.dispatch.orch_ready().notified();
            tokio::pin!(notified);
            // Registered before looking, so a notification between look and wait is not lost.
            notified.as_mut().enable();
            match self
                .dispatch
                .try_lock_orchestration(now_micros(), micros(lock_for))
            {
                TryLock::Got(locked) => return self.build_item(locked).await.map(Some),
                TryLock::Wait(due) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    Self::wait_for_work(notified, deadline, due).await;
                }
            }
        }
    }

    async fn complete_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        commit: OrchestrationCommit,
    ) -> StoreResult<()> {
        let OrchestrationCommit {
            history,
            state,
            messages,
            new_instances,
            activities,
        } = commit;
        // Everything that needs no connection is prepared here, off the writer thread.
        let (replace, events) = match history {
            HistoryWrite::Append(events) => (false, events),
            HistoryWrite::Replace(events) => (true, events),
        };
        let encoded: Vec<String> = events.iter().map(encode_event).collect::<Result<_, _>>()?;
        let new_history = if replace {
            Arc::new(events)
        } else {
            let mut all = Vec::with_capacity(item.history.len() + events.len());
            all.extend_from_slice(&item.history);
            all.extend(events);
            Arc::new(all)
        };
        let first_seq = if replace {
            0
        } else {
            item.history.len() as i64
        };
        let messages: Vec<PreparedMessage> = messages
            .into_iter()
            .map(PreparedMessage::new)
            .collect::<Result<_, _>>()?;
        let now = Utc::now();
        let starts: Vec<PreparedStart> = new_instances
            .iter()
            .map(|n| PreparedStart::new(n, now))
            .collect::<Result<_, _>>()?;
        let record = state
            .as_ref()
            .map(|state| writes::record_from_state(&item.instance_id, state));
        let before = item.instance.clone();
        let instance_id: Arc<str> = Arc::from(item.instance_id.as_str());
        let token = item.lock_token.clone();
        let hub = self.hub.clone();

        let dispatch = self.dispatch.clone();
        let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dispatch2, claimed2, token2) = (dispatch.clone(), claimed.clone(), token.clone());
        let work = move |conn: &rusqlite::Connection| -> StoreResult<Effects> {
            // Checked on the writer thread, in commit order: a lock that expired before this
            // point may already be someone else's.
            let claim = dispatch.claim_orchestration(&token, now_micros())?;
            claimed.store(true, Ordering::Relaxed);
            let id = &*claim.instance_id;
            // No state: the episode only discards messages and leaves the row (or its absence).
            if let Some(state) = &state {
                writes::write_state(conn, &hub, id, before.as_ref(), state)?;
            }
            writes::delete_messages(conn, &claim.message_ids)?;
            if replace {
                writes::clear_history(conn, &hub, id)?;
            }
            writes::append_history(conn, &hub, id, first_seq, &encoded)?;
            let mut effects = Effects {
                completed_orchestration: Some(token),
                changed: vec![instance_id.clone()],
                ..Effects::default()
            };
            match record {
                Some(record) if !record.runtime_status.is_terminal() => {
                    effects.cache_put.push((
                        instance_id.clone(),
                        Cached {
                            record: Some(record),
                            history: new_history,
                        },
                    ));
                }
                _ => effects.cache_evict.push(instance_id.clone()),
            }
            // Sub-orchestrations first: their start messages must precede any event this
            // episode sends them.
            for start in starts {
                let message_id = writes::start_instance(conn, &hub, &start)?;
                let sub: Arc<str> = Arc::from(start.record.instance_id.as_str());
                effects.replaced.push(sub.clone());
                effects.changed.push(sub.clone());
                effects.cache_put.push((
                    sub,
                    Cached {
                        record: Some(start.record),
                        history: Arc::default(),
                    },
                ));
                effects.messages.push((message_id, start.start.message));
            }
            for m in messages {
                let message_id = writes::insert_message(conn, &hub, &m)?;
                effects.messages.push((message_id, m.message));
            }
            for a in activities {
                let activity_id = writes::insert_activity(conn, &hub, &a)?;
                effects.activities.push((activity_id, a));
            }
            Ok(effects)
        };
        self.shared
            .writer
            .call(work, move |result| match result {
                Ok(effects) => {
                    dispatch2.apply(effects, now_micros());
                    Ok(())
                }
                Err(e) => {
                    if claimed2.load(Ordering::Relaxed) {
                        dispatch2.unclaim_orchestration(&token2);
                    }
                    Err(e)
                }
            })
            .await
    }

    async fn abandon_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()> {
        let now = now_micros();
        self.dispatch
            .abandon_orchestration(&item.lock_token, now, now + micros(retry_after));
        Ok(())
    }

    async fn renew_orchestration_lock(
        &self,
        item: &OrchestrationWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()> {
        self.dispatch
            .renew_orchestration(&item.lock_token, now_micros(), micros(lock_for))
    }

    async fn lock_next_activity(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<ActivityWorkItem>> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.wait_for_dispatch(deadline).await? {
                return Ok(None);
            }
            let notified = self.dispatch.act_ready().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self
                .dispatch
                .try_lock_activity(now_micros(), micros(lock_for))
            {
                TryLock::Got(item) => return Ok(Some(item)),
                TryLock::Wait(due) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    Self::wait_for_work(notified, deadline, due).await;
                }
            }
        }
    }

    async fn complete_activity(
        &self,
        item: &ActivityWorkItem,
        result: HistoryEvent,
    ) -> StoreResult<()> {
        let message = PreparedMessage::new(OrchestrationMessage {
            instance_id: item.request.instance_id.clone(),
            execution_id: Some(item.request.execution_id.clone()),
            event: result,
            visible_at: None,
        })?;
        let hub = self.hub.clone();
        let token = item.lock_token.clone();
        let dispatch = self.dispatch.clone();
        let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dispatch2, claimed2, token2) = (dispatch.clone(), claimed.clone(), token.clone());
        self.shared
            .writer
            .call(
                move |conn| {
                    let activity_id = dispatch.claim_activity(&token, now_micros())?;
                    claimed.store(true, Ordering::Relaxed);
                    if !writes::delete_activity(conn, activity_id)? {
                        // Purged meanwhile: its instance must not hear from it.
                        return Err(StoreError::LockLost);
                    }
                    let message_id = writes::insert_message(conn, &hub, &message)?;
                    Ok(Effects {
                        completed_activity: Some(token),
                        messages: vec![(message_id, message.message)],
                        ..Effects::default()
                    })
                },
                move |result| match result {
                    Ok(effects) => {
                        dispatch2.apply(effects, now_micros());
                        Ok(())
                    }
                    Err(e) => {
                        if claimed2.load(Ordering::Relaxed) {
                            dispatch2.unclaim_activity(&token2);
                        }
                        Err(e)
                    }
                },
            )
            .await
    }

    async fn abandon_activity(
        &self,
        item: &ActivityWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()> {
        let now = now_micros();
        self.dispatch
            .abandon_activity(&item.lock_token, now, now + micros(retry_after));
        Ok(())
    }

    async fn renew_activity_lock(
        &self,
        item: &ActivityWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()> {
        self.dispatch
            .renew_activity(&item.lock_token, now_micros(), micros(lock_for))
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.dispatch.subscribe())
    }
}

#[cfg(test)]
mod tests;
