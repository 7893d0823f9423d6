//! In-memory work dispatch for one hub.
//!
//! Locking work through SQL would cost a write per lock, so the process holding the hub lease
//! keeps every pending message and activity of the hub in memory and hands them out from here.
//! The database stays the source of truth: this state is rebuilt from it when dispatch starts,
//! and it only changes after the writes that justify it have committed.
//!
//! All times are unix microseconds, the unit `visible_at` is stored in.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, Notify};

use super::codec::to_micros;
use crate::model::HistoryEvent;
use crate::store::{
    ActivityRequest, ActivityWorkItem, InstanceRecord, OrchestrationMessage, StoreError,
    StoreResult,
};

/// Beyond this many cached histories, unlocked ones are dropped (they are re-read on demand).
const CACHE_CAP: usize = 10_000;

/// An instance's row and current history as last committed.
#[derive(Clone, Debug)]
pub(super) struct Cached {
    pub record: Option<InstanceRecord>,
    pub history: Arc<Vec<HistoryEvent>>,
}

pub(super) struct LockedOrchestration {
    pub instance_id: Arc<str>,
    pub token: String,
    pub messages: Vec<OrchestrationMessage>,
    /// `None` on a cache miss: the caller reads the row and history, then offers them back
    /// with [`HubDispatch::fill_cache`] and this `epoch`.
    pub cached: Option<Cached>,
    pub epoch: u64,
}

/// What a completing orchestration lock consumes.
pub(super) struct Claim {
    pub instance_id: Arc<str>,
    pub message_ids: Vec<i64>,
}

pub(super) enum TryLock<T> {
    Got(T),
    /// Nothing ready; something may become ready at this time (a timer or a lock expiry).
    Wait(Option<i64>),
}

/// The in-memory consequences of one committed write job.
#[derive(Default)]
pub(super) struct Effects {
    /// The orchestration lock this commit completed: its messages are consumed, it is released.
    pub completed_orchestration: Option<String>,
    /// The activity lock this commit completed: the activity is gone.
    pub completed_activity: Option<String>,
    /// Instances that got a new execution: their old pending messages and any lock are void.
    pub replaced: Vec<Arc<str>>,
    /// Instances purged: messages, activities, locks and cache entries are void.
    pub purged: Vec<Arc<str>>,
    pub cache_evict: Vec<Arc<str>>,
    pub cache_put: Vec<(Arc<str>, Cached)>,
    pub messages: Vec<(i64, OrchestrationMessage)>,
    pub activities: Vec<(i64, ActivityRequest)>,
    /// Instances whose status row changed, for subscribers.
    pub changed: Vec<Arc<str>>,
}

/// What a scan found other connections did to one hub.
#[derive(Default)]
pub(super) struct ForeignRows {
    /// Rows written since the last scan.
    pub messages: Vec<(i64, OrchestrationMessage)>,
    pub activities: Vec<(i64, ActivityRequest)>,
    /// Every pending id in the database: anything else held in memory was deleted.
    pub present_messages: HashSet<i64>,
    pub present_activities: HashSet<i64>,
}

struct Pending {
    visible_at: i64,
    message: OrchestrationMessage,
}

#[derive(Default)]
struct InstanceQueue {
    messages: BTreeMap<i64, Pending>,
    lock: Option<String>,
    /// In the ready FIFO (at most once).
    queued: bool,
    /// Set by abandon: nothing is delivered before this.
    hold_until: i64,
}

struct OrchLock {
    instance_id: Arc<str>,
    message_ids: Vec<i64>,
    expires_at: i64,
    /// A complete is being written: the lock cannot expire under it.
    completing: bool,
}

struct ActivityEntry {
    request: ActivityRequest,
    lock: Option<String>,
    queued: bool,
    hold_until: i64,
}

struct ActLock {
    id: i64,
    expires_at: i64,
    completing: bool,
}

#[derive(Default)]
struct State {
    /// This process holds the lease and the state below mirrors the database.
    active: bool,
    instances: HashMap<Arc<str>, InstanceQueue>,
    ready: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    /// Ids of every message in `instances`, to ignore a message seen twice.
    known: HashSet<i64>,
    orch_locks: HashMap<String, OrchLock>,
    orch_expiry: BTreeSet<(i64, String)>,
    activities: HashMap<i64, ActivityEntry>,
    act_ready: VecDeque<i64>,
    act_timers: BinaryHeap<Reverse<(i64, i64)>>,
    act_locks: HashMap<String, ActLock>,
    act_expiry: BTreeSet<(i64, String)>,
    cache: HashMap<Arc<str>, Cached>,
    /// Bumped whenever cached data may have gone stale, so that a slow cache fill started
    /// before cannot overwrite newer data.
    epoch: u64,
    next_token: u64,
    /// Set when a timer earlier than all others was added; taken by [`State::woken`].
    timers_moved: bool,
}

/// Whom to wake after a change.
#[derive(Default)]
struct Woken {
    orchestrations: usize,
    activities: usize,
    /// The earliest timer moved earlier: every waiter must recompute how long it sleeps.
    timers_moved: bool,
}

pub(super) struct HubDispatch {
    state: Mutex<State>,
    orch_ready: Notify,
    act_ready: Notify,
    changes: broadcast::Sender<Arc<str>>,
    token_prefix: String,
}

impl HubDispatch {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(1024);
        Self {
            state: Mutex::new(State::default()),
            orch_ready: Notify::new(),
            act_ready: Notify::new(),
            changes,
            token_prefix: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    pub fn orch_ready(&self) -> &Notify {
        &self.orch_ready
    }

    pub fn act_ready(&self) -> &Notify {
        &self.act_ready
    }

    pub fn is_active(&self) -> bool {
        self.state().active
    }

    fn wake(&self, woken: Woken) {
        if woken.timers_moved {
            self.orch_ready.notify_waiters();
            self.act_ready.notify_waiters();
        }
        for _ in 0..woken.orchestrations {
            self.orch_ready.notify_one();
        }
        for _ in 0..woken.activities {
            self.act_ready.notify_one();
        }
    }

    /// Starts dispatching from the hub's pending rows, as just read from the database.
    pub fn activate(
        &self,
        messages: Vec<(i64, OrchestrationMessage)>,
        activities: Vec<(i64, ActivityRequest)>,
        now: i64,
    ) {
        let woken = {
            let mut s = self.state();
            s.clear();
            s.active = true;
            let woken = s.register(messages, activities, now);
            s.woken(woken)
        };
        self.wake(woken);
    }

    /// Stops dispatching (the lease is lost): every lock becomes unknown.
    pub fn deactivate(&self) {
        let mut s = self.state();
        s.clear();
        s.active = false;
    }

    /// Drops everything (the hub was deleted) but keeps dispatching.
    pub fn reset(&self) {
        self.state().clear();
    }

    /// Applies what other connections changed. Their writes may have replaced or purged
    /// instances this process has cached, so the whole cache goes.
    pub fn foreign_rows(&self, rows: ForeignRows, now: i64) {
        let woken = {
            let mut s = self.state();
            if !s.active {
                return;
            }
            s.cache.clear();
            s.epoch += 1;
            let mut woken = s.forget_deleted(&rows.present_messages, &rows.present_activities, now);
            let more = s.register(rows.messages, rows.activities, now);
            woken.orchestrations += more.orchestrations;
            woken.activities += more.activities;
            s.woken(woken)
        };
        self.wake(woken);
    }

    pub fn try_lock_orchestration(&self, now: i64, lock_for: i64) -> TryLock<LockedOrchestration> {
        self.try_lock(now, |s, prefix| {
            let locked = s.lock_next_instance(now, lock_for, prefix);
            let more = Woken {
                orchestrations: usize::from(locked.is_some() && !s.ready.is_empty()),
                ..Woken::default()
            };
            (locked, more)
        })
    }

    pub fn try_lock_activity(&self, now: i64, lock_for: i64) -> TryLock<ActivityWorkItem> {
        self.try_lock(now, |s, prefix| {
            let locked = s.lock_next_activity(now, lock_for, prefix);
            let more = Woken {
                activities: usize::from(locked.is_some() && !s.act_ready.is_empty()),
                ..Woken::default()
            };
            (locked, more)
        })
    }

    /// Expires locks, fires due timers, then runs `lock`, which returns what it locked and
    /// whom to wake next. Passing the baton: one notify wakes one waiter, who wakes the next
    /// if work remains.
    fn try_lock<T>(
        &self,
        now: i64,
        lock: impl FnOnce(&mut State, &str) -> (Option<T>, Woken),
    ) -> TryLock<T> {
        let (result, woken) = {
            let mut s = self.state();
            if !s.active {
                return TryLock::Wait(None);
            }
            s.expire_locks(now);
            s.fire_timers(now);
            let (locked, more) = lock(&mut s, &self.token_prefix);
            let result = match locked {
                Some(l) => TryLock::Got(l),
                None => TryLock::Wait(s.next_due()),
            };
            (result, s.woken(more))
        };
        self.wake(woken);
        result
    }

    /// Caches what a lock's cache miss read, unless something newer was cached meanwhile.
    pub fn fill_cache(&self, instance_id: Arc<str>, cached: Cached, epoch: u64) {
        let mut s = self.state();
        if s.active && s.epoch == epoch {
            s.cache_put(instance_id, cached);
        }
    }

    /// Marks the lock as being completed so that it cannot expire while the commit is written.
    pub fn claim_orchestration(&self, token: &str, now: i64) -> StoreResult<Claim> {
        let mut s = self.state();
        s.expire_locks(now);
        let lock = match s.orch_locks.get_mut(token) {
            Some(lock) if !lock.completing => lock,
            _ => return Err(StoreError::LockLost),
        };
        lock.completing = true;
        let claim = Claim {
            instance_id: lock.instance_id.clone(),
            message_ids: lock.message_ids.clone(),
        };
        let expiry = (lock.expires_at, token.to_owned());
        s.orch_expiry.remove(&expiry);
        Ok(claim)
    }

    /// The complete failed: the lock is the worker's again, with its old expiry.
    pub fn unclaim_orchestration(&self, token: &str) {
        let mut s = self.state();
        if let Some(lock) = s.orch_locks.get_mut(token) {
            lock.completing = false;
            let expiry = (lock.expires_at, token.to_owned());
            s.orch_expiry.insert(expiry);
        }
    }

    pub fn claim_activity(&self, token: &str, now: i64) -> StoreResult<i64> {
        let mut s = self.state();
        s.expire_locks(now);
        let lock = match s.act_locks.get_mut(token) {
            Some(lock) if !lock.completing => lock,
            _ => return Err(StoreError::LockLost),
        };
        lock.completing = true;
        let (id, expiry) = (lock.id, (lock.expires_at, token.to_owned()));
        s.act_expiry.remove(&expiry);
        Ok(id)
    }

    pub fn unclaim_activity(&self, token: &str) {
        let mut s = self.state();
        if let Some(lock) = s.act_locks.get_mut(token) {
            lock.completing = false;
            let expiry = (lock.expires_at, token.to_owned());
            s.act_expiry.insert(expiry);
        }
    }

    pub fn renew_orchestration(&self, token: &str, now: i64, lock_for: i64) -> StoreResult<()> {
        let mut s = self.state();
        s.expire_locks(now);
        let lock = s.orch_locks.get_mut(token).ok_or(StoreError::LockLost)?;
        if lock.completing {
            return Ok(());
        }
        let old = (lock.expires_at, token.to_owned());
        lock.expires_at = now + lock_for;
        let new = (lock.expires_at, token.to_owned());
        s.orch_expiry.remove(&old);
        s.orch_expiry.insert(new);
        Ok(())
    }

    pub fn renew_activity(&self, token: &str, now: i64, lock_for: i64) -> StoreResult<()> {
        let mut s = self.state();
        s.expire_locks(now);
        let lock = s.act_locks.get_mut(token).ok_or(StoreError::LockLost)?;
        if lock.completing {
            return Ok(());
        }
        let old = (lock.expires_at, token.to_owned());
        lock.expires_at = now + lock_for;
        let new = (lock.expires_at, token.to_owned());
        s.act_expiry.remove(&old);
        s.act_expiry.insert(new);
        Ok(())
    }

    /// Releases the lock; its messages are delivered again from `retry_at` on. An unknown
    /// token has nothing left to release.
    pub fn abandon_orchestration(&self, token: &str, now: i64, retry_at: i64) {
        let woken = {
            let mut s = self.state();
            let Some(lock) = s.orch_locks.get(token) else {
                return;
            };
            if lock.completing {
                return;
            }
            let id = lock.instance_id.clone();
            s.release_orch_lock(token);
            if let Some(q) = s.instances.get_mut(&id) {
                q.hold_until = q.hold_until.max(retry_at);
            }
            let mut woken = Woken::default();
            if s.reconsider_instance(&id, now) {
                woken.orchestrations += 1;
            }
            s.woken(woken)
        };
        self.wake(woken);
    }

    pub fn abandon_activity(&self, token: &str, now: i64, retry_at: i64) {
        let woken = {
            let mut s = self.state();
            match s.act_locks.get(token) {
                Some(lock) if !lock.completing => {}
                _ => return,
            }
            let Some(id) = s.release_act_lock(token) else {
                return;
            };
            if let Some(entry) = s.activities.get_mut(&id) {
                entry.hold_until = entry.hold_until.max(retry_at);
            }
            let mut woken = Woken::default();
            if s.reconsider_activity(id, now) {
                woken.activities += 1;
            }
            s.woken(woken)
        };
        self.wake(woken);
    }

    /// Applies a committed job's effects. Runs on the writer thread right after COMMIT.
    pub fn apply(&self, effects: Effects, now: i64) {
        let Effects {
            completed_orchestration,
            completed_activity,
            replaced,
            purged,
            cache_evict,
            cache_put,
            messages,
            activities,
            changed,
        } = effects;
        let woken = {
            let mut s = self.state();
            if s.active {
                let mut touched: Vec<Arc<str>> = Vec::new();
                if let Some(token) = completed_orchestration {
                    if let Some(lock) = s.orch_locks.get(&token) {
                        let (id, consumed) = (lock.instance_id.clone(), lock.message_ids.clone());
                        s.release_orch_lock(&token);
                        s.drop_messages(&id, Some(&consumed));
                        touched.push(id);
                    }
                }
                if let Some(token) = completed_activity {
                    if let Some(id) = s.release_act_lock(&token) {
                        s.activities.remove(&id);
                    }
                }
                for id in &replaced {
                    s.void_instance(id);
                }
                if !purged.is_empty() {
                    for id in &purged {
                        s.void_instance(id);
                        s.cache.remove(id);
                    }
                    s.void_activities_of(&purged);
                }
                if !cache_evict.is_empty() || !cache_put.is_empty() || !replaced.is_empty() {
                    s.epoch += 1;
                }
                for id in &cache_evict {
                    s.cache.remove(id);
                }
                for (id, cached) in cache_put {
                    s.cache_put(id, cached);
                }
                let mut woken = s.register(messages, activities, now);
                for id in touched {
                    if s.reconsider_instance(&id, now) {
                        woken.orchestrations += 1;
                    }
                }
                s.woken(woken)
            } else {
                Woken::default()
            }
        };
        self.wake(woken);
        for id in changed {
            // No subscriber is not an error.
            let _ = self.changes.send(id);
        }
    }
}

impl State {
    /// `w`, plus whether waiters must recompute their sleep.
    fn woken(&mut self, mut w: Woken) -> Woken {
        w.timers_moved |= std::mem::take(&mut self.timers_moved);
        w
    }

    fn clear(&mut self) {
        let (active, next_token, epoch) = (self.active, self.next_token, self.epoch);
        *self = State {
            active,
            next_token,
            // Fills that started before the clear must not land after it.
            epoch: epoch + 1,
            ..State::default()
        };
    }

    fn new_token(&mut self, prefix: &str) -> String {
        self.next_token += 1;
        format!("{prefix}-{}", self.next_token)
    }

    fn register(
        &mut self,
        messages: Vec<(i64, OrchestrationMessage)>,
        activities: Vec<(i64, ActivityRequest)>,
        now: i64,
    ) -> Woken {
        let mut woken = Woken::default();
        let mut touched: Vec<Arc<str>> = Vec::new();
        for (id, message) in messages {
            if !self.known.insert(id) {
                continue;
            }
            let visible_at = message.visible_at.map(to_micros).unwrap_or(0);
            let instance_id: Arc<str> =
                match self.instances.get_key_value(message.instance_id.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(message.instance_id.as_str()),
                };
            self.instances
                .entry(instance_id.clone())
                .or_default()
                .messages
                .insert(
                    id,
                    Pending {
                        visible_at,
                        message,
                    },
                );
            touched.push(instance_id);
        }
        for id in touched {
            if self.reconsider_instance(&id, now) {
                woken.orchestrations += 1;
            }
        }
        for (id, request) in activities {
            if self.activities.contains_key(&id) {
                continue;
            }
            self.activities.insert(
                id,
                ActivityEntry {
                    request,
                    lock: None,
                    queued: false,
                    hold_until: 0,
                },
            );
            if self.reconsider_activity(id, now) {
                woken.activities += 1;
            }
        }
        woken
    }

    /// Drops messages and activities that are no longer in the database, voiding any lock that
    /// holds them: the instance they were for was purged or replaced.
    fn forget_deleted(
        &mut self,
        messages: &HashSet<i64>,
        activities: &HashSet<i64>,
        now: i64,
    ) -> Woken {
        let gone: Vec<(Arc<str>, i64)> = self
            .instances
            .iter()
            .flat_map(|(id, q)| {
                q.messages
                    .keys()
                    .filter(|m| !messages.contains(m))
                    .map(move |m| (id.clone(), *m))
            })
            .collect();
        let mut touched: Vec<Arc<str>> = Vec::new();
        for (id, message_id) in gone {
            let token = self.instances.get(&id).and_then(|q| q.lock.clone());
            if let Some(token) = token {
                let holds = self
                    .orch_locks
                    .get(&token)
                    .is_some_and(|l| !l.completing && l.message_ids.contains(&message_id));
                if holds {
                    self.release_orch_lock(&token);
                }
            }
            self.drop_messages(&id, Some(&[message_id]));
            touched.push(id);
        }
        let doomed: Vec<i64> = self
            .activities
            .keys()
            .filter(|a| !activities.contains(a))
            .copied()
            .collect();
        for id in doomed {
            let token = self.activities.get(&id).and_then(|e| e.lock.clone());
            if let Some(token) = token {
                if self.act_locks.get(&token).is_some_and(|l| !l.completing) {
                    self.release_act_lock(&token);
                } else {
                    // Being completed right now; its own commit will find the row gone.
                    continue;
                }
            }
            self.activities.remove(&id);
        }
        let mut woken = Woken::default();
        for id in touched {
            if self.reconsider_instance(&id, now) {
                woken.orchestrations += 1;
            }
        }
        woken
    }

    /// Queues the instance if it can be locked now, or sets a timer for when it can.
    /// Returns whether it was queued.
    fn reconsider_instance(&mut self, id: &Arc<str>, now: i64) -> bool {
        let Some(q) = self.instances.get_mut(id) else {
            return false;
        };
        if q.lock.is_some() || q.queued {
            return false;
        }
        let Some(earliest) = q.messages.values().map(|p| p.visible_at).min() else {
            self.instances.remove(id);
            return false;
        };
        let at = earliest.max(q.hold_until);
        if at <= now {
            q.queued = true;
            self.ready.push_back(id.clone());
            true
        } else {
            if self
                .timers
                .peek()
                .is_none_or(|Reverse((first, _))| at < *first)
            {
                self.timers_moved = true;
            }
            self.timers.push(Reverse((at, id.clone())));
            false
        }
    }

    fn reconsider_activity(&mut self, id: i64, now: i64) -> bool {
        let Some(entry) = self.activities.get_mut(&id) else {
            return false;
        };
        if entry.lock.is_some() || entry.queued {
            return false;
        }
        if entry.hold_until <= now {
            entry.queued = true;
            self.act_ready.push_back(id);
            true
        } else {
            let at = entry.hold_until;
            if self
                .act_timers
                .peek()
                .is_none_or(|Reverse((first, _))| at < *first)
            {
                self.timers_moved = true;
            }
            self.act_timers.push(Reverse((at, id)));
            false
        }
    }

    /// Expired locks give their work back: that is how a crashed or hung worker's work is
    /// retried.
    fn expire_locks(&mut self, now: i64) {
        while let Some((at, token)) = self.orch_expiry.first().cloned() {
            if at > now {
                break;
            }
            if let Some(id) = self.orch_locks.get(&token).map(|l| l.instance_id.clone()) {
                self.release_orch_lock(&token);
                self.reconsider_instance(&id, now);
            } else {
                self.orch_expiry.remove(&(at, token));
            }
        }
        while let Some((at, token)) = self.act_expiry.first().cloned() {
            if at > now {
                break;
            }
            match self.release_act_lock(&token) {
                Some(id) => {
                    self.reconsider_activity(id, now);
                }
                None => {
                    self.act_expiry.remove(&(at, token));
                }
            }
        }
    }

    fn fire_timers(&mut self, now: i64) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.timers.pop() {
                self.reconsider_instance(&id, now);
            }
        }
        while let Some(Reverse((at, _))) = self.act_timers.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.act_timers.pop() {
                self.reconsider_activity(id, now);
            }
        }
    }

    /// The earliest time something may become ready without a notification.
    fn next_due(&self) -> Option<i64> {
        [
            self.timers.peek().map(|Reverse((at, _))| *at),
            self.act_timers.peek().map(|Reverse((at, _))| *at),
            self.orch_expiry.first().map(|(at, _)| *at),
            self.act_expiry.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn lock_next_instance(
        &mut self,
        now: i64,
        lock_for: i64,
        prefix: &str,
    ) -> Option<LockedOrchestration> {
        while let Some(id) = self.ready.pop_front() {
            let Some(q) = self.instances.get_mut(&id) else {
                continue;
            };
            q.queued = false;
            if q.lock.is_some() {
                continue;
            }
            let (ids, messages): (Vec<i64>, Vec<OrchestrationMessage>) = if q.hold_until <= now {
                q.messages
                    .iter()
                    .filter(|(_, p)| p.visible_at <= now)
                    .map(|(id, p)| (*id, p.message.clone()))
                    .unzip()
            } else {
                Default::default()
            };
            if ids.is_empty() {
                self.reconsider_instance(&id, now);
                continue;
            }
            let token = self.new_token(prefix);
            let expires_at = now.saturating_add(lock_for);
            if let Some(q) = self.instances.get_mut(&id) {
                q.lock = Some(token.clone());
            }
            self.orch_locks.insert(
                token.clone(),
                OrchLock {
                    instance_id: id.clone(),
                    message_ids: ids,
                    expires_at,
                    completing: false,
                },
            );
            self.orch_expiry.insert((expires_at, token.clone()));
            return Some(LockedOrchestration {
                cached: self.cache.get(&id).cloned(),
                instance_id: id,
                token,
                messages,
                epoch: self.epoch,
            });
        }
        None
    }

    fn lock_next_activity(
        &mut self,
        now: i64,
        lock_for: i64,
        prefix: &str,
    ) -> Option<ActivityWorkItem> {
        while let Some(id) = self.act_ready.pop_front() {
            let Some(entry) = self.activities.get_mut(&id) else {
                continue;
            };
            entry.queued = false;
            if entry.lock.is_some() {
                continue;
            }
            if entry.hold_until > now {
                self.reconsider_activity(id, now);
                continue;
            }
            let request = entry.request.clone();
            let token = self.new_token(prefix);
            let expires_at = now.saturating_add(lock_for);
            if let Some(entry) = self.activities.get_mut(&id) {
                entry.lock = Some(token.clone());
            }
            self.act_locks.insert(
                token.clone(),
                ActLock {
                    id,
                    expires_at,
                    completing: false,
                },
            );
            self.act_expiry.insert((expires_at, token.clone()));
            return Some(ActivityWorkItem {
                lock_token: token,
                request,
            });
        }
        None
    }

    fn release_orch_lock(&mut self, token: &str) {
        if let Some(lock) = self.orch_locks.remove(token) {
            self.orch_expiry
                .remove(&(lock.expires_at, token.to_owned()));
            if let Some(q) = self.instances.get_mut(&lock.instance_id) {
                if q.lock.as_deref() == Some(token) {
                    q.lock = None;
                }
            }
        }
    }

    /// Returns the activity id the lock was on.
    fn release_act_lock(&mut self, token: &str) -> Option<i64> {
        let lock = self.act_locks.remove(token)?;
        self.act_expiry.remove(&(lock.expires_at, token.to_owned()));
        if let Some(entry) = self.activities.get_mut(&lock.id) {
            if entry.lock.as_deref() == Some(token) {
                entry.lock = None;
            }
        }
        Some(lock.id)
    }

    /// Drops the given pending messages of an instance, or all of them.
    fn drop_messages(&mut self, id: &Arc<str>, only: Option<&[i64]>) {
        let Some(q) = self.instances.get_mut(id) else {
            return;
        };
        match only {
            Some(ids) => {
                for mid in ids {
                    q.messages.remove(mid);
                    self.known.remove(mid);
                }
            }
            None => {
                for mid in std::mem::take(&mut q.messages).into_keys() {
                    self.known.remove(&mid);
                }
            }
        }
    }

    /// The instance's pending messages were deleted and whoever holds its lock worked on a
    /// state that no longer exists: the lock is voided so that its complete fails.
    fn void_instance(&mut self, id: &Arc<str>) {
        let token = self.instances.get(id).and_then(|q| q.lock.clone());
        if let Some(token) = token {
            self.release_orch_lock(&token);
        }
        self.drop_messages(id, None);
        if let Some(q) = self.instances.get_mut(id) {
            q.hold_until = 0;
        }
    }

    fn void_activities_of(&mut self, instances: &[Arc<str>]) {
        let gone: HashSet<&str> = instances.iter().map(|s| &**s).collect();
        let doomed: Vec<i64> = self
            .activities
            .iter()
            .filter(|(_, e)| gone.contains(e.request.instance_id.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            if let Some(token) = self.activities.get(&id).and_then(|e| e.lock.clone()) {
                self.release_act_lock(&token);
            }
            self.activities.remove(&id);
        }
    }

    fn cache_put(&mut self, id: Arc<str>, cached: Cached) {
        if self.cache.len() >= CACHE_CAP && !self.cache.contains_key(&id) {
            let locked: HashSet<&Arc<str>> =
                self.orch_locks.values().map(|l| &l.instance_id).collect();
            let victims: Vec<Arc<str>> = self
                .cache
                .keys()
                .filter(|k| !locked.contains(k))
                .take(CACHE_CAP / 10)
                .cloned()
                .collect();
            for k in victims {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(id, cached);
    }
}
