//! Activity work items on `{hub}-workitems`: TaskScheduled messages, locked by their queue
//! visibility timeout (renewing a lock extends it; a crashed worker's message reappears).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::entities::get_time;
use super::hub::Hub;
use super::keys::{escape_partition_key, odata_str};
use super::queues::Received;
use crate::model::{EventKind, HistoryEvent};
use crate::store::{
    ActivityRequest, ActivityWorkItem, OrchestrationMessage, StoreError, StoreResult,
};

/// How long a redelivered message whose TaskScheduled is not committed yet waits before the
/// next look, and how many deliveries it gets before it runs anyway.
const ORPHAN_RECHECK: Duration = Duration::from_secs(3);
const ORPHAN_CHECKS: u64 = 6;

pub struct Activities {
    hub: Arc<Hub>,
    /// Messages fetched in a batch, waiting for a worker (already hidden for the lock time).
    buffer: Mutex<VecDeque<(Received, tokio::time::Instant)>>,
    fetching: tokio::sync::Mutex<()>,
    /// Locked work items: the message and when its lock lapses.
    locks: Mutex<HashMap<String, (Received, tokio::time::Instant)>>,
}

impl Activities {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            buffer: Mutex::new(VecDeque::new()),
            fetching: tokio::sync::Mutex::new(()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub async fn lock_next(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<ActivityWorkItem>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut idle = Duration::from_millis(20);
        loop {
            if let Some(r) = self.take_buffered(lock_for) {
                match self.hub.decode(&r).await {
                    Ok(data) => {
                        if r.dequeue_count > 1 && !self.may_run_redelivered(&r, &data).await? {
                            continue;
                        }
                        let EventKind::TaskScheduled { name, input } = data.event.kind else {
                            tracing::error!(message = %r.id, "work-item message is not TaskScheduled; dropping it");
                            let _ = self
                                .hub
                                .workitems
                                .delete_message(&r.id, &r.pop_receipt)
                                .await;
                            continue;
                        };
                        let token = crate::model::new_guid_n();
                        let request = ActivityRequest {
                            instance_id: data.instance_id,
                            execution_id: data.execution_id.unwrap_or_default(),
                            task_id: data.event.event_id,
                            name,
                            input,
                            attempt: data.attempt.unwrap_or(1),
                        };
                        let until = tokio::time::Instant::now() + lock_for;
                        self.locks.lock().unwrap().insert(token.clone(), (r, until));
                        return Ok(Some(ActivityWorkItem {
                            lock_token: token,
                            request,
                        }));
                    }
                    Err(e) => {
                        tracing::error!(message = %r.id, error = %e, "unreadable work-item message");
                        continue;
                    }
                }
            }
            // One fetch at a time; the others wait for its batch.
            if let Ok(_guard) = self.fetching.try_lock() {
                let got = self.hub.workitems.get(16, lock_for).await?;
                if !got.is_empty() {
                    let now = tokio::time::Instant::now();
                    self.buffer
                        .lock()
                        .unwrap()
                        .extend(got.into_iter().map(|r| (r, now)));
                    idle = Duration::from_millis(20);
                    continue;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(idle.min(deadline - now)).await;
            idle = (idle * 2).min(Duration::from_millis(250));
        }
    }

    /// Whether a redelivered work item may run; when not, it is deleted or put back for a
    /// later look. An episode sends its activity messages before it writes history; if its
    /// process died in between, the retried episode schedules the task again, and this older
    /// message (which reappears when the dead process's lock runs out, together with the
    /// orchestration's messages) would run at the same time as the new one. The committed
    /// TaskScheduled row tells them apart: its `_Timestamp` is the one of the message that
    /// belongs to the committed episode. Only redeliveries pay for this read.
    async fn may_run_redelivered(
        &self,
        r: &Received,
        data: &super::messages::MessageData,
    ) -> StoreResult<bool> {
        let filter = format!(
            "PartitionKey eq {} and ExecutionId eq {} and EventType eq 'TaskScheduled' and EventId eq {}",
            odata_str(&escape_partition_key(&data.instance_id)),
            odata_str(data.execution_id.as_deref().unwrap_or_default()),
            data.event.event_id
        );
        let rows = self.hub.history.query(Some(filter), None).await?;
        // Within a millisecond, in case a store keeps DateTime less precisely than 100 ns: the
        // retried episode's TaskScheduled is seconds younger than the orphan's.
        let same = |row: &super::entities::Entity| {
            get_time(row, "_Timestamp").is_some_and(|t| {
                (t - data.event.timestamp).abs() < chrono::Duration::milliseconds(1)
            })
        };
        let queue = &self.hub.workitems;
        if rows.iter().any(same) {
            Ok(true)
        } else if !rows.is_empty() {
            tracing::info!(instance = %data.instance_id, task = data.event.event_id, "dropping an activity message whose episode never committed (the retried episode scheduled the task again)");
            queue.delete_message(&r.id, &r.pop_receipt).await?;
            Ok(false)
        } else if r.dequeue_count < ORPHAN_CHECKS {
            // Not committed yet: the retried episode is still running, or this message's own
            // episode is slow. Look again shortly.
            queue
                .set_visibility(&r.id, &r.pop_receipt, &r.text, ORPHAN_RECHECK)
                .await?;
            Ok(false)
        } else {
            // Never committed: better a duplicate run (its result is ignored) than a lost one.
            Ok(true)
        }
    }

    /// A buffered message whose lock still has most of its time left.
    fn take_buffered(&self, lock_for: Duration) -> Option<Received> {
        let mut b = self.buffer.lock().unwrap();
        while let Some((r, at)) = b.pop_front() {
            if at.elapsed() < lock_for / 2 {
                return Some(r);
            }
        }
        None
    }

    /// The locked message, unless the lock lapsed (the activity may be running elsewhere now).
    fn get(&self, item: &ActivityWorkItem) -> StoreResult<Received> {
        let mut locks = self.locks.lock().unwrap();
        match locks.get(&item.lock_token) {
            Some((r, until)) if *until > tokio::time::Instant::now() => Ok(r.clone()),
            Some(_) => {
                locks.remove(&item.lock_token);
                Err(StoreError::LockLost)
            }
            None => Err(StoreError::LockLost),
        }
    }

    /// Sends the result to the orchestration, then deletes the work item (DTFx's order: a crash
    /// in between runs the activity again, and replay ignores the duplicate result).
    pub async fn complete(&self, item: &ActivityWorkItem, result: HistoryEvent) -> StoreResult<()> {
        let r = self.get(item)?;
        let req = &item.request;
        let m = OrchestrationMessage {
            instance_id: req.instance_id.clone(),
            execution_id: Some(req.execution_id.clone()).filter(|e| !e.is_empty()),
            event: result,
            visible_at: None,
        };
        self.hub.enqueue(&m, None, false).await?;
        self.locks.lock().unwrap().remove(&item.lock_token);
        if self
            .hub
            .workitems
            .delete_message(&r.id, &r.pop_receipt)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::LockLost)
        }
    }

    pub async fn abandon(&self, item: &ActivityWorkItem, retry_after: Duration) -> StoreResult<()> {
        let Some((r, _)) = self.locks.lock().unwrap().remove(&item.lock_token) else {
            return Ok(());
        };
        self.hub
            .workitems
            .set_visibility(&r.id, &r.pop_receipt, &r.text, retry_after)
            .await?;
        Ok(())
    }

    pub async fn renew(&self, item: &ActivityWorkItem, lock_for: Duration) -> StoreResult<()> {
        let r = self.get(item)?;
        match self
            .hub
            .workitems
            .set_visibility(&r.id, &r.pop_receipt, &r.text, lock_for)
            .await?
        {
            Some(pop) => {
                if let Some(l) = self.locks.lock().unwrap().get_mut(&item.lock_token) {
                    l.0.pop_receipt = pop;
                    l.1 = tokio::time::Instant::now() + lock_for;
                }
                Ok(())
            }
            None => {
                self.locks.lock().unwrap().remove(&item.lock_token);
                Err(StoreError::LockLost)
            }
        }
    }
}
