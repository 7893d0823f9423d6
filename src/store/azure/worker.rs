//! The execution half's background machinery, started by the first `lock_next_*` call (so a
//! management-only process never creates partition rows): the partition manager, and one
//! fetcher per owned control queue feeding [`Sessions`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;

use super::hub::Hub;
use super::leases::{PartitionListener, PartitionManager};
use super::sessions::{Held, Sessions};
use crate::model::EventKind;

/// Buffered messages per partition before its fetcher pauses.
const MAX_BUFFERED: usize = 1000;

pub struct Worker {
    pub sessions: Arc<Sessions>,
    stop: watch::Sender<bool>,
    /// The partition manager, which releases every lease it holds on its way out.
    manager: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Worker {
    /// Starts the partition manager and returns once its first pass is done, so that the first
    /// lock call already sees the messages of the partitions this process got.
    pub async fn start(hub: Arc<Hub>) -> Arc<Worker> {
        let sessions = Arc::new(Sessions::default());
        let (stop, stopped) = watch::channel(false);
        let (ready_tx, mut ready) = watch::channel(false);
        let listener = Arc::new(Listener {
            hub: hub.clone(),
            sessions: sessions.clone(),
            fetchers: Mutex::new(HashMap::new()),
        });
        let manager = PartitionManager::new(hub, listener);
        let manager = tokio::spawn(manager.run(stopped, ready_tx));
        let _ = tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r)).await;
        // Give the new fetchers their first read.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Arc::new(Worker {
            sessions,
            stop,
            manager: tokio::sync::Mutex::new(Some(manager)),
        })
    }

    /// Stops the partition manager and waits until it has released its leases. Dropping the
    /// worker only asks it to stop: a task spawned then may die with the runtime before the
    /// leases are released, which left a restarted server waiting for them to expire.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(manager) = self.manager.lock().await.take() {
            let _ = manager.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct Listener {
    hub: Arc<Hub>,
    sessions: Arc<Sessions>,
    fetchers: Mutex<HashMap<u32, watch::Sender<bool>>>,
}

impl PartitionListener for Listener {
    fn acquired(&self, partition: u32) {
        tracing::info!(hub = %self.hub.name, partition, worker = %self.hub.opts.worker_id, "partition acquired");
        let (tx, rx) = watch::channel(false);
        if let Some(old) = self.fetchers.lock().unwrap().insert(partition, tx) {
            let _ = old.send(true);
        }
        tokio::spawn(fetch(
            self.hub.clone(),
            self.sessions.clone(),
            partition,
            rx,
        ));
    }

    fn released(&self, partition: u32) {
        tracing::info!(hub = %self.hub.name, partition, worker = %self.hub.opts.worker_id, "partition released");
        if let Some(tx) = self.fetchers.lock().unwrap().remove(&partition) {
            let _ = tx.send(true);
        }
        let dropped = self.sessions.drop_partition(partition);
        let queue = self.hub.control_queue(partition);
        tokio::spawn(async move {
            for h in dropped {
                let r = &h.received;
                let _ = queue
                    .set_visibility(&r.id, &r.pop_receipt, &r.text, Duration::ZERO)
                    .await;
            }
        });
    }
}

/// Reads one control queue into the sessions until told to stop.
async fn fetch(
    hub: Arc<Hub>,
    sessions: Arc<Sessions>,
    partition: u32,
    mut stop: watch::Receiver<bool>,
) {
    let queue = hub.control_queue(partition);
    let _ = queue.create().await;
    let visibility = hub.opts.message_visibility;
    let mut idle = Duration::from_millis(50);
    while !*stop.borrow() {
        if sessions.buffered(partition) >= MAX_BUFFERED {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let fetched_at = Instant::now();
        let got = match queue.get(32, visibility).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "reading a control queue failed");
                Vec::new()
            }
        };
        let n = got.len();
        let mut held = Vec::with_capacity(n);
        for r in got {
            match hub.decode(&r).await {
                Ok(data) => {
                    // Timers beyond the 7-day visibility cap come back early: hide them again.
                    if let Some(at) = due_time(&data.event.kind) {
                        let wait = (at - Utc::now()).to_std().unwrap_or_default();
                        if !wait.is_zero() {
                            let _ = queue
                                .set_visibility(&r.id, &r.pop_receipt, &r.text, wait)
                                .await;
                            continue;
                        }
                    }
                    held.push(Held {
                        partition,
                        received: r,
                        data,
                        hidden_until: fetched_at + visibility,
                    });
                }
                Err(e) => {
                    // A message nobody can read would come back forever: DTFx abandons it with
                    // back-off, and so do we (its visibility timeout is the back-off).
                    tracing::error!(queue = queue.name(), message = %r.id, error = %e, "unreadable control-queue message");
                }
            }
        }
        sessions.add(held);
        if n == 0 {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
            idle = (idle * 2).min(Duration::from_millis(250));
        } else {
            idle = Duration::from_millis(50);
        }
    }
}

/// When a message may be delivered: timers at their time, scheduled starts at theirs.
pub fn due_time(kind: &EventKind) -> Option<chrono::DateTime<Utc>> {
    match kind {
        EventKind::TimerFired { fire_at, .. } => Some(*fire_at),
        EventKind::ExecutionStarted {
            scheduled_start_time,
            ..
        } => *scheduled_start_time,
        _ => None,
    }
}
