//! Work for workers outside this process: the Durable Task SDK workers connected over gRPC.
//!
//! The executor locks every work item of its hub from the store, whatever its name. A name the
//! process has registered runs here; any other name is handed to this queue, which keeps the item
//! locked until a connected worker that serves the name has room for it. So a store needs no
//! notion of remote workers, both stores work the same way, and an instance whose worker has not
//! connected yet simply waits (its lock renewed) instead of failing.
//!
//! Locks, and what they promise:
//! - an item waiting here, and an activity a worker is running, has its lock renewed: the work is
//!   alive (a long activity must not be handed to a second worker while the first still runs it);
//! - an orchestration handed to a worker is not renewed: a worker that holds one without answering
//!   loses it when the lock runs out, and the store hands it out again;
//! - a worker whose stream ends (disconnect, crash) gives back everything it held at once.
//!
//! Completion tokens name one hand-out; a late answer to an item that was taken back gets
//! [`RemoteError::UnknownToken`], and the store's lock check stops any answer that raced a retry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::episode::{self, Episode, Plan, RemoteDecision};
use super::executor::activity_result_event;
use crate::model::{new_guid_n, EventKind, FailureDetails, HistoryEvent};
use crate::store::{ActivityWorkItem, OrchestrationWorkItem, Store, StoreError};

/// At most this many orchestration (and, separately, activity) work items wait here for a
/// worker; beyond it the executor hands items back to the store for a while. A waiting
/// orchestration holds its history in memory (a few KB for a typical one), so this bounds memory;
/// it is large because an item handed back sits out [`FULL_RETRY`] while later ones flow past
/// it: at 1,000, a burst of 2,000 Python-SDK instances finished with a 4 s tail (p99 26 s against
/// p50 22 s) and the executor prepared each handed-back episode twice (BENCHMARKS.md).
pub(crate) const MAX_WAITING: usize = 10_000;
/// How long a work item handed back because the queue was full stays with the store.
pub(crate) const FULL_RETRY: Duration = Duration::from_secs(1);

/// What a connected worker takes: how many items at once, and which names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSpec {
    pub max_orchestrations: usize,
    pub max_activities: usize,
    /// `None` takes every orchestration name; otherwise name → versions (empty: any version).
    pub orchestrations: Option<HashMap<String, Vec<String>>>,
    /// `None` takes every activity name.
    pub activities: Option<HashSet<String>>,
}

impl WorkerSpec {
    fn takes_orchestration(&self, name: &str, version: &str) -> bool {
        match &self.orchestrations {
            None => true,
            Some(names) => names.get(name).is_some_and(|versions| {
                versions.is_empty() || versions.iter().any(|v| v == version)
            }),
        }
    }

    fn takes_activity(&self, name: &str) -> bool {
        self.activities
            .as_ref()
            .is_none_or(|names| names.contains(name))
    }
}

/// One connected worker's handle. Dropping it does not disconnect: call
/// [`RemoteWork::disconnect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkerId(u64);

/// A work item handed to a worker.
#[derive(Debug)]
pub enum Assignment {
    Orchestration {
        token: String,
        instance_id: String,
        execution_id: String,
        /// The committed history the worker replays.
        past_events: Vec<HistoryEvent>,
        /// OrchestratorStarted, then the events this episode applies.
        new_events: Vec<HistoryEvent>,
    },
    Activity {
        token: String,
        instance_id: String,
        execution_id: String,
        task_id: i32,
        name: String,
        input: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("no work item is held under this completion token (it was completed, abandoned, or its lock expired and it was handed out again)")]
    UnknownToken,
    #[error("{0}")]
    Mismatch(String),
    #[error("the lock on this work item was lost; it will be handed out again")]
    LockLost,
    #[error("storage error: {0}")]
    Store(String),
}

impl From<StoreError> for RemoteError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LockLost => Self::LockLost,
            other => Self::Store(other.to_string()),
        }
    }
}

struct WaitingOrchestration {
    item: OrchestrationWorkItem,
    episode: Box<Episode>,
}

struct HeldOrchestration {
    worker: WorkerId,
    item: OrchestrationWorkItem,
    episode: Box<Episode>,
    started: HistoryEvent,
    expires: Instant,
}

struct HeldActivity {
    worker: WorkerId,
    item: ActivityWorkItem,
}

struct Worker {
    spec: WorkerSpec,
    orchestrations: usize,
    activities: usize,
}

#[derive(Default)]
struct State {
    /// Tokens are this process's prefix and a counter: unique within the process, and a token
    /// handed out by an earlier process (a worker answering across a restart) never matches.
    token_prefix: String,
    next_token: u64,
    next_worker: u64,
    workers: HashMap<WorkerId, Worker>,
    waiting_orchestrations: VecDeque<WaitingOrchestration>,
    waiting_activities: VecDeque<ActivityWorkItem>,
    held_orchestrations: HashMap<String, HeldOrchestration>,
    held_activities: HashMap<String, HeldActivity>,
    stopped: bool,
}

/// The queue between one hub's executor and the workers connected for that hub.
pub struct RemoteWork {
    store: Arc<dyn Store>,
    orchestration_lock: Duration,
    activity_lock: Duration,
    state: Mutex<State>,
    /// Woken whenever work arrives or a worker gains room.
    changed: Notify,
}

impl std::fmt::Debug for RemoteWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWork")
            .field("hub", &self.store.hub())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Short, because every work item and every answer carries one.
    fn new_token(&mut self) -> String {
        if self.token_prefix.is_empty() {
            self.token_prefix = new_guid_n()[..8].to_string();
        }
        self.next_token += 1;
        format!("{}-{:x}", self.token_prefix, self.next_token)
    }
}

impl RemoteWork {
    /// A queue for `store`'s hub, with a background task that renews the locks it holds.
    pub fn start(
        store: Arc<dyn Store>,
        orchestration_lock: Duration,
        activity_lock: Duration,
    ) -> Arc<Self> {
        let remote = Arc::new(Self {
            store,
            orchestration_lock,
            activity_lock,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        tokio::spawn(maintain(Arc::downgrade(&remote)));
        remote
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many workers are connected now.
    pub fn worker_count(&self) -> usize {
        self.state().workers.len()
    }

    /// How many orchestrations and activities wait for a worker now.
    pub fn waiting_counts(&self) -> (usize, usize) {
        let state = self.state();
        (
            state.waiting_orchestrations.len(),
            state.waiting_activities.len(),
        )
    }

    /// Whether some connected worker serves this orchestration name (`None` when no worker is
    /// connected at all).
    pub fn serves_orchestration(&self, name: &str) -> Option<bool> {
        let state = self.state();
        if state.workers.is_empty() {
            return None;
        }
        Some(
            state
                .workers
                .values()
                .any(|w| match &w.spec.orchestrations {
                    None => true,
                    Some(names) => names.contains_key(name),
                }),
        )
    }

    /// Queues an orchestration episode for a worker; gives the item back when the queue is full.
    pub(crate) fn submit_orchestration(
        &self,
        item: OrchestrationWorkItem,
        episode: Box<Episode>,
    ) -> Result<(), Box<OrchestrationWorkItem>> {
        let mut state = self.state();
        if state.stopped || state.waiting_orchestrations.len() >= MAX_WAITING {
            return Err(Box::new(item));
        }
        state
            .waiting_orchestrations
            .push_back(WaitingOrchestration { item, episode });
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Queues an activity for a worker; gives the item back when the queue is full.
    pub(crate) fn submit_activity(
        &self,
        item: ActivityWorkItem,
    ) -> Result<(), Box<ActivityWorkItem>> {
        let mut state = self.state();
        if state.stopped || state.waiting_activities.len() >= MAX_WAITING {
            return Err(Box::new(item));
        }
        state.waiting_activities.push_back(item);
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn connect(&self, spec: WorkerSpec) -> WorkerId {
        let mut state = self.state();
        state.next_worker += 1;
        let id = WorkerId(state.next_worker);
        state.workers.insert(
            id,
            Worker {
                spec,
                orchestrations: 0,
                activities: 0,
            },
        );
        id
    }

    /// Removes the worker and hands everything it held back to the store at once.
    pub async fn disconnect(&self, worker: WorkerId) {
        let (orchestrations, activities) = {
            let mut state = self.state();
            state.workers.remove(&worker);
            let orchestrations: Vec<_> =
                take_where(&mut state.held_orchestrations, |h| h.worker == worker);
            let activities: Vec<_> = take_where(&mut state.held_activities, |h| h.worker == worker);
            (orchestrations, activities)
        };
        for held in orchestrations {
            self.give_back_orchestration(&held.item, Duration::ZERO)
                .await;
        }
        for held in activities {
            self.give_back_activity(&held.item, Duration::ZERO).await;
        }
        self.changed.notify_waiters();
    }

    /// Waits for the next work item this worker serves and has room for. Cancel-safe: an item is
    /// recorded as held by the worker before anything is awaited, so a cancelled call leaves it
    /// to [`disconnect`](Self::disconnect).
    pub async fn next(&self, worker: WorkerId) -> Option<Assignment> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_assign(worker) {
                Assigned::Orchestration(token) => {
                    if let Some(a) = self.renew_handed_out(&token).await {
                        return Some(a);
                    }
                }
                Assigned::Activity(a) => return Some(a),
                Assigned::Nothing => changed.await,
                Assigned::Gone => return None,
            }
        }
    }

    fn try_assign(&self, worker: WorkerId) -> Assigned {
        let mut guard = self.state();
        let state = &mut *guard;
        if state.stopped {
            return Assigned::Gone;
        }
        let Some(w) = state.workers.get_mut(&worker) else {
            return Assigned::Gone;
        };
        if w.orchestrations < w.spec.max_orchestrations {
            let found = state.waiting_orchestrations.iter().position(|o| {
                let version = o.item.instance.as_ref().map_or("", |r| r.version.as_str());
                w.spec.takes_orchestration(&o.episode.name, version)
            });
            if let Some(WaitingOrchestration { item, episode }) =
                found.and_then(|i| state.waiting_orchestrations.remove(i))
            {
                w.orchestrations += 1;
                let token = state.new_token();
                state.held_orchestrations.insert(
                    token.clone(),
                    HeldOrchestration {
                        worker,
                        item,
                        episode,
                        started: HistoryEvent::unscheduled(EventKind::OrchestratorStarted),
                        expires: Instant::now() + self.orchestration_lock,
                    },
                );
                return Assigned::Orchestration(token);
            }
        }
        if w.activities < w.spec.max_activities {
            let found = state
                .waiting_activities
                .iter()
                .position(|a| w.spec.takes_activity(&a.request.name));
            if let Some(item) = found.and_then(|i| state.waiting_activities.remove(i)) {
                w.activities += 1;
                let token = state.new_token();
                let r = &item.request;
                let assignment = Assignment::Activity {
                    token: token.clone(),
                    instance_id: r.instance_id.clone(),
                    execution_id: r.execution_id.clone(),
                    task_id: r.task_id,
                    name: r.name.clone(),
                    input: r.input.clone(),
                };
                state
                    .held_activities
                    .insert(token, HeldActivity { worker, item });
                return Assigned::Activity(assignment);
            }
        }
        Assigned::Nothing
    }

    /// The orchestration may have waited here a while: its lock starts afresh when a worker gets
    /// it, so the worker has the whole lock time to answer.
    async fn renew_handed_out(&self, token: &str) -> Option<Assignment> {
        let item = self.state().held_orchestrations.get(token)?.item.clone();
        match self
            .store
            .renew_orchestration_lock(&item, self.orchestration_lock)
            .await
        {
            Ok(()) => {}
            Err(StoreError::LockLost) => {
                self.release_orchestration(token);
                return None;
            }
            Err(e) => {
                tracing::warn!(instance = %item.instance_id, error = %e, "renewing a lock before handing out an orchestration failed");
            }
        }
        let mut state = self.state();
        let held = state.held_orchestrations.get_mut(token)?;
        held.expires = Instant::now() + self.orchestration_lock;
        let mut new_events = vec![held.started.clone()];
        new_events.extend(held.episode.new_events.iter().cloned());
        Some(Assignment::Orchestration {
            token: token.to_string(),
            instance_id: held.episode.instance_id.clone(),
            execution_id: held.episode.execution_id.clone(),
            past_events: held.episode.history.clone(),
            new_events,
        })
    }

    /// Applies a worker's decision for the orchestration handed out under `token`.
    pub async fn complete_orchestration(
        &self,
        token: &str,
        instance_id: &str,
        decision: RemoteDecision,
    ) -> Result<(), RemoteError> {
        {
            let state = self.state();
            let held = state
                .held_orchestrations
                .get(token)
                .ok_or(RemoteError::UnknownToken)?;
            if held.item.instance_id != instance_id {
                return Err(RemoteError::Mismatch(format!(
                    "the completion token belongs to instance '{}', not '{instance_id}'",
                    held.item.instance_id
                )));
            }
        }
        let held = self
            .release_orchestration(token)
            .ok_or(RemoteError::UnknownToken)?;
        let now = crate::model::now();
        let result = episode::remote_result(&held.episode, held.started, decision, now);
        let Plan::Commit(commit) = episode::commit(&held.episode, result, now) else {
            unreachable!("commit always commits");
        };
        match super::executor::commit_counted(&*self.store, &held.item, *commit).await {
            Ok(()) => Ok(()),
            Err(StoreError::LockLost) => Err(RemoteError::LockLost),
            Err(e) => {
                self.give_back_orchestration(&held.item, super::executor::RETRY_AFTER_ERROR)
                    .await;
                Err(e.into())
            }
        }
    }

    /// Records an activity's outcome for the activity handed out under `token`.
    pub async fn complete_activity(
        &self,
        token: &str,
        instance_id: &str,
        task_id: i32,
        outcome: Result<Option<String>, FailureDetails>,
    ) -> Result<(), RemoteError> {
        {
            let state = self.state();
            let held = state
                .held_activities
                .get(token)
                .ok_or(RemoteError::UnknownToken)?;
            let r = &held.item.request;
            if r.instance_id != instance_id || r.task_id != task_id {
                return Err(RemoteError::Mismatch(format!(
                    "the completion token belongs to task {} of instance '{}', not task {task_id} of '{instance_id}'",
                    r.task_id, r.instance_id
                )));
            }
        }
        let held = self
            .release_activity(token)
            .ok_or(RemoteError::UnknownToken)?;
        let event = activity_result_event(held.item.request.task_id, outcome);
        match self.store.complete_activity(&held.item, event).await {
            Ok(()) => Ok(()),
            Err(StoreError::LockLost) => Err(RemoteError::LockLost),
            Err(e) => {
                self.give_back_activity(&held.item, super::executor::RETRY_AFTER_ERROR)
                    .await;
                Err(e.into())
            }
        }
    }

    /// A worker handed an orchestration back: the store offers it again after a short pause, so a
    /// worker that keeps refusing does not spin.
    pub async fn abandon_orchestration(&self, token: &str) -> Result<(), RemoteError> {
        let held = self
            .release_orchestration(token)
            .ok_or(RemoteError::UnknownToken)?;
        self.give_back_orchestration(&held.item, ABANDON_RETRY)
            .await;
        Ok(())
    }

    pub async fn abandon_activity(&self, token: &str) -> Result<(), RemoteError> {
        let held = self
            .release_activity(token)
            .ok_or(RemoteError::UnknownToken)?;
        self.give_back_activity(&held.item, ABANDON_RETRY).await;
        Ok(())
    }

    /// Hands everything back to the store and refuses new work: the process is stopping.
    pub async fn shutdown(&self) {
        let (waiting_o, waiting_a, held_o, held_a) = {
            let mut state = self.state();
            state.stopped = true;
            (
                std::mem::take(&mut state.waiting_orchestrations),
                std::mem::take(&mut state.waiting_activities),
                std::mem::take(&mut state.held_orchestrations),
                std::mem::take(&mut state.held_activities),
            )
        };
        self.changed.notify_waiters();
        for o in waiting_o
            .into_iter()
            .map(|w| w.item)
            .chain(held_o.into_values().map(|h| h.item))
        {
            self.give_back_orchestration(&o, Duration::ZERO).await;
        }
        for a in waiting_a
            .into_iter()
            .chain(held_a.into_values().map(|h| h.item))
        {
            self.give_back_activity(&a, Duration::ZERO).await;
        }
    }

    fn release_orchestration(&self, token: &str) -> Option<HeldOrchestration> {
        let mut state = self.state();
        let held = state.held_orchestrations.remove(token)?;
        if let Some(w) = state.workers.get_mut(&held.worker) {
            w.orchestrations = w.orchestrations.saturating_sub(1);
        }
        drop(state);
        self.changed.notify_waiters();
        Some(held)
    }

    fn release_activity(&self, token: &str) -> Option<HeldActivity> {
        let mut state = self.state();
        let held = state.held_activities.remove(token)?;
        if let Some(w) = state.workers.get_mut(&held.worker) {
            w.activities = w.activities.saturating_sub(1);
        }
        drop(state);
        self.changed.notify_waiters();
        Some(held)
    }

    async fn give_back_orchestration(&self, item: &OrchestrationWorkItem, after: Duration) {
        if let Err(e) = self.store.abandon_orchestration(item, after).await {
            tracing::debug!(instance = %item.instance_id, error = %e, "handing an orchestration back to the store failed; its lock will expire");
        }
    }

    async fn give_back_activity(&self, item: &ActivityWorkItem, after: Duration) {
        if let Err(e) = self.store.abandon_activity(item, after).await {
            tracing::debug!(activity = %item.request.name, error = %e, "handing an activity back to the store failed; its lock will expire");
        }
    }

    /// One pass of lock upkeep: renews what waits here and what workers are running, and takes
    /// back orchestrations whose worker let the lock run out.
    async fn upkeep(&self) {
        let (orchestrations, activities) = {
            let mut state = self.state();
            let now = Instant::now();
            let expired: Vec<_> = take_where(&mut state.held_orchestrations, |h| h.expires <= now);
            for h in &expired {
                if let Some(w) = state.workers.get_mut(&h.worker) {
                    w.orchestrations = w.orchestrations.saturating_sub(1);
                }
                tracing::warn!(instance = %h.item.instance_id, "a worker held an orchestration past its lock without answering; it will be handed out again");
            }
            let orchestrations: Vec<_> = state
                .waiting_orchestrations
                .iter()
                .map(|w| w.item.clone())
                .collect();
            let activities: Vec<_> = state
                .waiting_activities
                .iter()
                .cloned()
                .chain(state.held_activities.values().map(|h| h.item.clone()))
                .collect();
            (orchestrations, activities)
        };
        self.changed.notify_waiters();
        for item in orchestrations {
            if let Err(StoreError::LockLost) = self
                .store
                .renew_orchestration_lock(&item, self.orchestration_lock)
                .await
            {
                self.state()
                    .waiting_orchestrations
                    .retain(|w| w.item.lock_token != item.lock_token);
            }
        }
        for item in activities {
            if let Err(StoreError::LockLost) = self
                .store
                .renew_activity_lock(&item, self.activity_lock)
                .await
            {
                let mut state = self.state();
                state
                    .waiting_activities
                    .retain(|a| a.lock_token != item.lock_token);
                let lost: Vec<_> = take_where(&mut state.held_activities, |h| {
                    h.item.lock_token == item.lock_token
                });
                for h in lost {
                    if let Some(w) = state.workers.get_mut(&h.worker) {
                        w.activities = w.activities.saturating_sub(1);
                    }
                }
            }
        }
    }
}

/// How long an item a worker abandoned stays with the store before it is offered again.
const ABANDON_RETRY: Duration = Duration::from_secs(1);

enum Assigned {
    Orchestration(String),
    Activity(Assignment),
    Nothing,
    Gone,
}

fn take_where<T>(map: &mut HashMap<String, T>, pick: impl Fn(&T) -> bool) -> Vec<T> {
    let keys: Vec<String> = map
        .iter()
        .filter(|(_, v)| pick(v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.into_iter().filter_map(|k| map.remove(&k)).collect()
}

/// Runs [`RemoteWork::upkeep`] every third of the shorter lock until the queue is dropped or
/// stopped.
async fn maintain(remote: Weak<RemoteWork>) {
    let every = match remote.upgrade() {
        Some(r) => r.orchestration_lock.min(r.activity_lock) / 3,
        None => return,
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(r) = remote.upgrade() else { return };
        if r.state().stopped {
            return;
        }
        r.upkeep().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::episode::{prepare, Step};
    use crate::model::{InstanceId, RuntimeStatus};
    use crate::store::sqlite::SqliteDb;
    use crate::store::{NewInstance, ReusePolicy};

    const LOCK: Duration = Duration::from_secs(60);

    async fn store_with(names: &[&str]) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = SqliteDb::open(":memory:").unwrap().hub("RemoteTests");
        store.create_hub().await.unwrap();
        for (i, name) in names.iter().enumerate() {
            let new = NewInstance {
                instance_id: InstanceId::parse(format!("i{i}")).unwrap(),
                name: name.to_string(),
                version: String::new(),
                execution_id: new_guid_n(),
                input: None,
                created_time: crate::model::now(),
                scheduled_start_time: None,
                parent: None,
                tags: Default::default(),
            };
            store
                .create_instance(new, ReusePolicy::ReplaceTerminal)
                .await
                .unwrap();
        }
        store
    }

    /// Locks every ready orchestration and queues it, as the executor does for unknown names.
    async fn submit_all(store: &Arc<dyn Store>, remote: &RemoteWork) {
        while let Some(item) = store
            .lock_next_orchestration(LOCK, Duration::from_millis(50))
            .await
            .unwrap()
        {
            match prepare(&item, crate::model::now()) {
                Step::Decide(episode) => remote.submit_orchestration(item, episode).unwrap(),
                Step::Done(p) => panic!("expected an episode, got {p:?}"),
            }
        }
    }

    fn any_worker(max: usize) -> WorkerSpec {
        WorkerSpec {
            max_orchestrations: max,
            max_activities: max,
            orchestrations: None,
            activities: None,
        }
    }

    async fn next_now(remote: &RemoteWork, worker: WorkerId) -> Option<Assignment> {
        tokio::time::timeout(Duration::from_millis(200), remote.next(worker))
            .await
            .ok()
            .flatten()
    }

    fn token(a: &Assignment) -> &str {
        match a {
            Assignment::Orchestration { token, .. } | Assignment::Activity { token, .. } => token,
        }
    }

    #[tokio::test]
    async fn a_worker_gets_no_more_than_it_has_room_for() {
        let store = store_with(&["A", "A", "A"]).await;
        let remote = RemoteWork::start(store.clone(), LOCK, LOCK);
        submit_all(&store, &remote).await;
        let w = remote.connect(any_worker(2));
        let first = next_now(&remote, w).await.expect("one");
        assert!(next_now(&remote, w).await.is_some());
        assert!(
            next_now(&remote, w).await.is_none(),
            "the third waits for room"
        );
        remote.abandon_orchestration(token(&first)).await.unwrap();
        // Room again; the third is handed out (the abandoned one returns to the store).
        assert!(next_now(&remote, w).await.is_some());
    }

    #[tokio::test]
    async fn filters_decide_which_worker_gets_which_name() {
        let store = store_with(&["A", "B"]).await;
        let remote = RemoteWork::start(store.clone(), LOCK, LOCK);
        submit_all(&store, &remote).await;
        let only_b = remote.connect(WorkerSpec {
            orchestrations: Some([("B".to_string(), vec![])].into()),
            ..any_worker(10)
        });
        match next_now(&remote, only_b).await {
            Some(Assignment::Orchestration { new_events, .. }) => {
                assert!(new_events.iter().any(|e| matches!(
                    &e.kind, EventKind::ExecutionStarted { name, .. } if name == "B"
                )));
            }
            other => panic!("{other:?}"),
        }
        assert!(next_now(&remote, only_b).await.is_none());
        assert_eq!(remote.serves_orchestration("A"), Some(false));
        assert_eq!(remote.serves_orchestration("B"), Some(true));
    }

    #[tokio::test]
    async fn a_disconnected_worker_gives_its_work_back_at_once() {
        let store = store_with(&["A"]).await;
        let remote = RemoteWork::start(store.clone(), LOCK, LOCK);
        submit_all(&store, &remote).await;
        let w = remote.connect(any_worker(1));
        let held = next_now(&remote, w).await.expect("handed out");
        remote.disconnect(w).await;
        // Back in the store: lockable again now, long before its 60 s lock would expire.
        let again = store
            .lock_next_orchestration(LOCK, Duration::from_secs(2))
            .await
            .unwrap()
            .expect("redelivered");
        assert_eq!(again.instance_id, "i0");
        let late = remote
            .complete_orchestration(token(&held), "i0", RemoteDecision::default())
            .await;
        assert_eq!(late, Err(RemoteError::UnknownToken));
    }

    #[tokio::test]
    async fn a_worker_that_holds_an_orchestration_past_its_lock_loses_it() {
        let short = Duration::from_millis(300);
        let store = store_with(&["A"]).await;
        let remote = RemoteWork::start(store.clone(), short, short);
        let item = store
            .lock_next_orchestration(short, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let Step::Decide(episode) = prepare(&item, crate::model::now()) else {
            panic!("an episode")
        };
        remote.submit_orchestration(item, episode).unwrap();
        let w = remote.connect(any_worker(1));
        let held = next_now(&remote, w).await.expect("handed out");
        // The worker never answers: the store hands the instance out again once the lock ends.
        let again = store
            .lock_next_orchestration(LOCK, Duration::from_secs(5))
            .await
            .unwrap()
            .expect("redelivered after the lock ran out");
        assert_eq!(again.instance_id, "i0");
        tokio::time::sleep(short).await;
        let late = remote
            .complete_orchestration(token(&held), "i0", RemoteDecision::default())
            .await;
        assert_eq!(late, Err(RemoteError::UnknownToken));
    }

    #[tokio::test]
    async fn an_answer_is_committed_and_checked_against_its_token() {
        let store = store_with(&["A"]).await;
        let remote = RemoteWork::start(store.clone(), LOCK, LOCK);
        submit_all(&store, &remote).await;
        let w = remote.connect(any_worker(1));
        let a = next_now(&remote, w).await.expect("handed out");
        let wrong = remote
            .complete_orchestration(token(&a), "someone-else", RemoteDecision::default())
            .await;
        assert!(matches!(wrong, Err(RemoteError::Mismatch(_))), "{wrong:?}");
        let done = RemoteDecision {
            completion: Some(crate::engine::replay::Outcome::Completed {
                output: Some("42".into()),
            }),
            ..RemoteDecision::default()
        };
        remote
            .complete_orchestration(token(&a), "i0", done)
            .await
            .unwrap();
        let row = store.get_instance("i0").await.unwrap().unwrap();
        assert_eq!(row.runtime_status, RuntimeStatus::Completed);
        assert_eq!(row.output.as_deref(), Some("42"));
    }

    #[tokio::test]
    async fn a_stopped_queue_takes_no_work_and_hands_out_none() {
        let store = store_with(&["A"]).await;
        let remote = RemoteWork::start(store.clone(), LOCK, LOCK);
        let item = store
            .lock_next_orchestration(LOCK, Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        let Step::Decide(episode) = prepare(&item, crate::model::now()) else {
            panic!("an episode")
        };
        remote.shutdown().await;
        assert!(remote.submit_orchestration(item, episode).is_err());
        let w = remote.connect(any_worker(1));
        assert!(next_now(&remote, w).await.is_none());
    }
}
