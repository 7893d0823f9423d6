//! Workers that drive instances through a store: orchestration episodes and activity calls.
//!
//! An orchestration worker locks an instance, turns its new messages into an episode
//! ([`episode::prepare`], pure), and commits the result atomically. An activity worker runs one
//! activity and commits its result as a message to the instance. Locks expire, so work held by a
//! crashed worker is retried.
//!
//! A name this process has registered runs here. With a [`RemoteWork`] queue (the gRPC endpoint
//! is on), every other name is handed to the workers connected over gRPC; without one, it fails
//! as not registered.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::context::ActivityContext;
use super::episode::{self, Step};
use super::remote::{self, RemoteWork};
use super::Registry;
use crate::model::{EventKind, FailureDetails, HistoryEvent};
use crate::store::{ActivityWorkItem, OrchestrationWorkItem, Store, StoreError};

#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub orchestration_workers: usize,
    pub activity_workers: usize,
}

/// Workers are cheap tasks, and each one holds at most one write in flight: more of them means
/// more work per group commit (one fsync). 128/128 ran HelloCities5 ~35 % faster than 32/32 on
/// 2 cores (BENCHMARKS.md).
impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            orchestration_workers: 128,
            activity_workers: 128,
        }
    }
}

const ORCHESTRATION_LOCK: Duration = Duration::from_secs(60);
const ACTIVITY_LOCK: Duration = Duration::from_secs(60);
/// How long one lock call waits for work before the worker checks for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(500);
pub(crate) const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Running workers for one hub; [`shutdown`](ExecutorHandle::shutdown) stops them gracefully.
pub struct ExecutorHandle {
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl ExecutorHandle {
    /// Lets in-flight work items finish, then stops every worker.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.workers.join_next().await.is_some() {}
    }
}

/// The lock times the executor takes work items for; a [`RemoteWork`] queue for the same hub
/// renews with the same.
pub const LOCKS: (Duration, Duration) = (ORCHESTRATION_LOCK, ACTIVITY_LOCK);

pub fn spawn(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    options: ExecutorOptions,
    remote: Option<Arc<RemoteWork>>,
) -> ExecutorHandle {
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    for _ in 0..options.orchestration_workers.max(1) {
        let (store, registry, stopped) = (store.clone(), registry.clone(), stopped.clone());
        let remote = remote.clone();
        workers.spawn(async move {
            while !*stopped.borrow() {
                match store
                    .lock_next_orchestration(ORCHESTRATION_LOCK, IDLE_WAIT)
                    .await
                {
                    Ok(Some(item)) => {
                        dispatch_orchestration(&*store, &registry, remote.as_deref(), item).await
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "locking an orchestration work item failed");
                        tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    }
                }
            }
        });
    }
    for _ in 0..options.activity_workers.max(1) {
        let (store, registry, stopped) = (store.clone(), registry.clone(), stopped.clone());
        let remote = remote.clone();
        workers.spawn(async move {
            while !*stopped.borrow() {
                match store.lock_next_activity(ACTIVITY_LOCK, IDLE_WAIT).await {
                    Ok(Some(item)) => match remote.as_deref() {
                        Some(r) if registry.get_activity(&item.request.name).is_none() => {
                            if let Err(item) = r.submit_activity(item) {
                                abandon_activity(&*store, &item, remote::FULL_RETRY).await;
                            }
                        }
                        _ => process_activity(&*store, &registry, item).await,
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "locking an activity work item failed");
                        tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    }
                }
            }
        });
    }
    ExecutorHandle { stop, workers }
}

/// Settles a work item here when it needs no orchestrator or its orchestrator is registered, and
/// hands it to the remote workers otherwise.
async fn dispatch_orchestration(
    store: &dyn Store,
    registry: &Registry,
    remote: Option<&RemoteWork>,
    item: OrchestrationWorkItem,
) {
    let began = std::time::Instant::now();
    let now = crate::model::now();
    let plan = match (episode::prepare(&item, now), remote) {
        (Step::Done(plan), _) => plan,
        (Step::Decide(ep), Some(remote)) if !registry.has_orchestrator(&ep.name) => {
            if let Err(item) = remote.submit_orchestration(item, ep) {
                abandon_orchestration(store, &item, remote::FULL_RETRY).await;
            }
            return;
        }
        (Step::Decide(ep), _) => {
            let result = episode::replay_locally(registry, &ep, now);
            episode::commit(&ep, result, now)
        }
    };
    apply(store, item, plan).await;
    crate::metrics::metrics()
        .episode_duration
        .observe(began.elapsed().as_secs_f64());
}

/// Runs one orchestration work item to its commit in this process. Public so tests can step an
/// instance without background workers.
pub async fn process_orchestration(
    store: &dyn Store,
    registry: &Registry,
    item: OrchestrationWorkItem,
) {
    let plan = episode::plan(registry, &item, crate::model::now());
    apply(store, item, plan).await
}

async fn apply(store: &dyn Store, item: OrchestrationWorkItem, plan: episode::Plan) {
    match plan {
        episode::Plan::Commit(commit) => match commit_counted(store, &item, *commit).await {
            Ok(()) => {}
            Err(StoreError::LockLost) => {
                tracing::warn!(instance = %item.instance_id, "lock lost before commit; the work item will be retried");
            }
            Err(e) => {
                tracing::error!(instance = %item.instance_id, error = %e, "committing an episode failed");
                let _ = store.abandon_orchestration(&item, RETRY_AFTER_ERROR).await;
            }
        },
        episode::Plan::Retry(after) => abandon_orchestration(store, &item, after).await,
    }
}

/// Commits an episode and counts what it did: the instances it created, and the instance's end
/// if it ended (for in-process and SDK-worker episodes alike).
pub(crate) async fn commit_counted(
    store: &dyn Store,
    item: &OrchestrationWorkItem,
    commit: crate::store::OrchestrationCommit,
) -> Result<(), StoreError> {
    let created: Vec<String> = commit
        .new_instances
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let ended = commit
        .state
        .as_ref()
        .filter(|s| s.runtime_status.is_terminal())
        .map(|s| (s.name.clone(), s.runtime_status.to_string()));
    store.complete_orchestration(item, commit).await?;
    let m = crate::metrics::metrics();
    for name in &created {
        m.instance_started(name);
    }
    if let Some((name, status)) = ended {
        m.instance_finished(&name, &status);
    }
    Ok(())
}

async fn abandon_orchestration(store: &dyn Store, item: &OrchestrationWorkItem, after: Duration) {
    if let Err(e) = store.abandon_orchestration(item, after).await {
        tracing::warn!(instance = %item.instance_id, error = %e, "abandoning a work item failed");
    }
}

async fn abandon_activity(store: &dyn Store, item: &ActivityWorkItem, after: Duration) {
    if let Err(e) = store.abandon_activity(item, after).await {
        tracing::warn!(activity = %item.request.name, error = %e, "abandoning an activity failed");
    }
}

/// Runs one activity and commits its result. Public so tests can step activities by hand.
///
/// Each run is bracketed by `debug` events of target `taskhub::engine::executor`, "activity
/// started" and "activity finished" (with its `outcome`), that name the instance, the activity,
/// its task id and attempt: enough to see when one task ran twice, and where.
pub async fn process_activity(store: &dyn Store, registry: &Registry, item: ActivityWorkItem) {
    let request = &item.request;
    tracing::debug!(
        instance = %request.instance_id,
        activity = %request.name,
        task = request.task_id,
        attempt = request.attempt,
        "activity started"
    );
    let finished = |outcome: &str| {
        tracing::debug!(
            instance = %request.instance_id,
            activity = %request.name,
            task = request.task_id,
            attempt = request.attempt,
            outcome,
            "activity finished"
        );
    };
    let outcome = match registry.get_activity(&request.name) {
        None => Err(FailureDetails::new(
            "ActivityNotFound",
            format!("The activity function '{}' is not registered", request.name),
        )),
        Some(f) => {
            let ctx = ActivityContext {
                instance_id: request.instance_id.clone(),
                name: request.name.clone(),
                input: request.input.clone(),
                attempt: request.attempt,
            };
            let run = std::panic::AssertUnwindSafe(f(ctx)).catch_unwind();
            let renew = renew_while_running(store, &item);
            tokio::pin!(run);
            let result = tokio::select! {
                r = &mut run => r,
                _ = renew => {
                    // The lock is gone: another worker owns this task now. Dropping `run`
                    // stops the activity.
                    finished("lock lost");
                    return;
                }
            };
            match result {
                Ok(Ok(v)) => Ok(Some(v.to_string()).filter(|t| t != "null")),
                Ok(Err(e)) => Err(FailureDetails::new(e.error_type, e.message)),
                Err(_) => Err(FailureDetails::new(
                    "ActivityPanic",
                    format!("The activity function '{}' panicked", request.name),
                )),
            }
        }
    };
    finished(if outcome.is_ok() {
        "completed"
    } else {
        "failed"
    });
    match store
        .complete_activity(&item, activity_result_event(request.task_id, outcome))
        .await
    {
        Ok(()) | Err(StoreError::LockLost) => {}
        Err(e) => {
            tracing::error!(activity = %request.name, error = %e, "committing an activity result failed");
            let _ = store.abandon_activity(&item, RETRY_AFTER_ERROR).await;
        }
    }
}

/// The TaskCompleted or TaskFailed message an activity's outcome becomes.
pub(crate) fn activity_result_event(
    task_id: i32,
    outcome: Result<Option<String>, FailureDetails>,
) -> HistoryEvent {
    HistoryEvent::unscheduled(match outcome {
        Ok(result) => EventKind::TaskCompleted {
            task_scheduled_id: task_id,
            result,
        },
        Err(failure) => EventKind::TaskFailed {
            task_scheduled_id: task_id,
            reason: Some(failure.error_message.clone()),
            details: None,
            failure_details: Some(failure),
        },
    })
}

/// Renews the activity's lock until the lock is lost (then returns) or forever.
async fn renew_while_running(store: &dyn Store, item: &ActivityWorkItem) {
    let mut tick = tokio::time::interval(ACTIVITY_LOCK / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.renew_activity_lock(item, ACTIVITY_LOCK).await {
            Ok(()) => {}
            Err(StoreError::LockLost) => return,
            Err(e) => tracing::warn!(error = %e, "renewing an activity lock failed"),
        }
    }
}
