//! In-memory sessions over the control queues this process owns: fetched messages are buffered
//! per instance, and an instance is handed to one worker at a time (DTFx's
//! `OrchestrationSessionManager`, simplified). Messages that arrive while an instance is locked
//! wait for the next work item.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::messages::MessageData;
use super::queues::Received;

/// A message fetched from control queue `partition`, hidden from others until `hidden_until`.
#[derive(Clone, Debug)]
pub struct Held {
    pub partition: u32,
    pub received: Received,
    pub data: MessageData,
    pub hidden_until: Instant,
}

/// A work item's hold on its instance: its token and when it lapses.
#[derive(Clone, Debug)]
struct Lock {
    token: String,
    until: Instant,
}

#[derive(Default)]
struct Session {
    pending: Vec<Held>,
    lock: Option<Lock>,
    queued: bool,
}

impl Session {
    /// A lock that ran out no longer counts: its worker hung or died, and its messages have
    /// become visible again too.
    fn locked(&self, now: Instant) -> bool {
        self.lock.as_ref().is_some_and(|l| l.until > now)
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    ready: VecDeque<String>,
}

#[derive(Default)]
pub struct Sessions {
    state: Mutex<State>,
    notify: Notify,
}

/// Messages held less than this before their visibility runs out are not handed out: another
/// worker may already see them.
const SAFETY: Duration = Duration::from_millis(500);

impl Sessions {
    /// Adds fetched messages; a message fetched again (its visibility ran out) replaces the old
    /// copy, whose pop receipt is no longer valid.
    pub fn add(&self, held: Vec<Held>) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let mut woke = false;
        for h in held {
            let id = h.data.instance_id.clone();
            let session = s.sessions.entry(id.clone()).or_default();
            session.pending.retain(|p| p.received.id != h.received.id);
            session.pending.push(h);
            if !session.locked(now) && !session.queued {
                session.queued = true;
                s.ready.push_back(id);
                woke = true;
            }
        }
        drop(s);
        if woke {
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// How many messages of `partition` are buffered (fetch back-pressure).
    pub fn buffered(&self, partition: u32) -> usize {
        let s = self.state.lock().unwrap();
        s.sessions
            .values()
            .flat_map(|x| &x.pending)
            .filter(|h| h.partition == partition)
            .count()
    }

    /// Forgets unlocked messages of a partition this process no longer owns; returns them so
    /// they can be made visible to the new owner at once.
    pub fn drop_partition(&self, partition: u32) -> Vec<Held> {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let mut dropped = Vec::new();
        for session in s.sessions.values_mut() {
            let (gone, keep) = std::mem::take(&mut session.pending)
                .into_iter()
                .partition(|h| h.partition == partition);
            session.pending = keep;
            dropped.extend::<Vec<Held>>(gone);
        }
        s.sessions
            .retain(|_, x| x.locked(now) || !x.pending.is_empty());
        dropped
    }

    /// Locks the next instance with messages for `lock_for`, waiting up to `wait`. Returns the
    /// instance, the lock token and the messages.
    pub async fn lock_next(
        &self,
        wait: Duration,
        lock_for: Duration,
    ) -> Option<(String, String, Vec<Held>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            if let Some(found) = self.try_lock_next(lock_for) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.try_lock_next(lock_for);
            }
        }
    }

    fn try_lock_next(&self, lock_for: Duration) -> Option<(String, String, Vec<Held>)> {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        while let Some(id) = s.ready.pop_front() {
            let Some(session) = s.sessions.get_mut(&id) else {
                continue;
            };
            session.queued = false;
            session.pending.retain(|h| h.hidden_until > now + SAFETY);
            if session.locked(now) || session.pending.is_empty() {
                continue;
            }
            let token = crate::model::new_guid_n();
            session.lock = Some(Lock {
                token: token.clone(),
                until: now + lock_for,
            });
            let mut messages = std::mem::take(&mut session.pending);
            // DTFx order: queue insertion time, then the sender's sequence number.
            messages.sort_by_key(|h| (h.received.inserted, h.data.sequence_number));
            return Some((id, token, messages));
        }
        None
    }

    /// Whether `token` still holds the instance (it did not lapse or get taken over).
    pub fn holds(&self, instance_id: &str, token: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.sessions
            .get(instance_id)
            .and_then(|x| x.lock.as_ref())
            .is_some_and(|l| l.token == token && l.until > Instant::now())
    }

    /// Extends a lock; false when it is no longer held.
    pub fn renew(&self, instance_id: &str, token: &str, lock_for: Duration) -> bool {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        match s
            .sessions
            .get_mut(instance_id)
            .and_then(|x| x.lock.as_mut())
        {
            Some(l) if l.token == token && l.until > now => {
                l.until = now + lock_for;
                true
            }
            _ => false,
        }
    }

    /// Returns messages of a work item that could not be built, and unlocks the instance.
    pub fn put_back(&self, instance_id: &str, token: &str, held: Vec<Held>) {
        {
            let mut s = self.state.lock().unwrap();
            if let Some(session) = s.sessions.get_mut(instance_id) {
                let known: Vec<String> = session
                    .pending
                    .iter()
                    .map(|h| h.received.id.clone())
                    .collect();
                session
                    .pending
                    .extend(held.into_iter().filter(|h| !known.contains(&h.received.id)));
            }
        }
        self.unlock(instance_id, token);
    }

    /// Ends a work item: the instance may be handed out again if messages arrived meanwhile.
    /// A token that no longer holds the instance changes nothing.
    pub fn unlock(&self, instance_id: &str, token: &str) {
        let mut s = self.state.lock().unwrap();
        let requeue = match s.sessions.get_mut(instance_id) {
            Some(session) if session.lock.as_ref().is_some_and(|l| l.token == token) => {
                session.lock = None;
                if session.pending.is_empty() {
                    s.sessions.remove(instance_id);
                    false
                } else if !session.queued {
                    session.queued = true;
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if requeue {
            s.ready.push_back(instance_id.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }
}
