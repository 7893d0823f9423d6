//! The one seam between taskhub and its storage.
//!
//! A [`Store`] is one task hub in one storage account or file. It has two halves, like the Durable
//! Task Framework's `IOrchestrationServiceClient` / `IOrchestrationService`:
//! - management: create, status, history, query, send message, rewind, purge, delete hub;
//! - execution: lock / complete / abandon orchestration work items and activity work items.
//!
//! plus change notification so that waiters wake when an instance changes.
//! Nothing backend-specific crosses this seam; [`conformance`] checks that every backend keeps
//! the same promises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::model::{HistoryEvent, InstanceId, ParentInstance, RuntimeStatus};

#[cfg(feature = "azure")]
pub mod azure;
pub mod conformance;
pub mod sqlite;

/// Semantic errors: what went wrong, never which backend said so.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no instance with id '{0}' exists in this task hub")]
    NotFound(String),
    #[error("an instance with id '{instance_id}' already exists and is {status}")]
    AlreadyExists {
        instance_id: String,
        status: RuntimeStatus,
    },
    /// Only a Failed instance can be rewound.
    #[error("the instance '{instance_id}' is {status}, not Failed")]
    NotFailed {
        instance_id: String,
        status: RuntimeStatus,
    },
    /// Only a terminal instance can be purged.
    #[error("the instance '{instance_id}' is {status}; only a completed, failed or terminated instance can be purged")]
    NotTerminal {
        instance_id: String,
        status: RuntimeStatus,
    },
    #[error("the lock on this work item was lost (it expired or another worker took it)")]
    LockLost,
    #[error("invalid continuation token")]
    InvalidContinuationToken,
    #[error("storage error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What to do when `create_instance` meets an existing instance with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReusePolicy {
    /// Durable Functions' default (`NonRunningStates`): a terminal instance is replaced, a
    /// non-terminal one is an [`StoreError::AlreadyExists`].
    ReplaceTerminal,
    /// Replace whatever is there (1.x `AnyState`; also how sub-orchestrations are created).
    ReplaceAny,
    /// Replace an instance only in one of these statuses; any other is an
    /// [`StoreError::AlreadyExists`]. The Durable Task protocol's `OrchestrationIdReusePolicy`
    /// (no statuses: never replace, the SDKs' default).
    ReplaceIn(StatusSet),
}

impl ReusePolicy {
    /// Whether an existing instance in `status` may be replaced.
    pub fn replaces(self, status: RuntimeStatus) -> bool {
        match self {
            Self::ReplaceTerminal => status.is_terminal(),
            Self::ReplaceAny => true,
            Self::ReplaceIn(set) => set.contains(status),
        }
    }
}

/// A set of runtime statuses, small enough to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusSet(u16);

impl StatusSet {
    pub fn contains(self, status: RuntimeStatus) -> bool {
        self.0 & Self::bit(status) != 0
    }

    pub fn with(self, status: RuntimeStatus) -> Self {
        Self(self.0 | Self::bit(status))
    }

    fn bit(status: RuntimeStatus) -> u16 {
        1 << status.as_i32()
    }
}

impl FromIterator<RuntimeStatus> for StatusSet {
    fn from_iter<I: IntoIterator<Item = RuntimeStatus>>(iter: I) -> Self {
        iter.into_iter().fold(Self::default(), Self::with)
    }
}

/// Labels a client attached to an instance when it started it (the Durable Task protocol's
/// `tags`); kept with the row, never changed by the instance itself.
pub type Tags = BTreeMap<String, String>;

/// A new execution of an instance: a Pending row plus its ExecutionStarted message.
#[derive(Clone, Debug, PartialEq)]
pub struct NewInstance {
    pub instance_id: InstanceId,
    pub name: String,
    pub version: String,
    pub execution_id: String,
    /// JSON text, or `None` for no input.
    pub input: Option<String>,
    /// Equals the ExecutionStarted event's timestamp.
    pub created_time: DateTime<Utc>,
    /// When set, the start message becomes visible only at this time.
    pub scheduled_start_time: Option<DateTime<Utc>>,
    pub parent: Option<ParentInstance>,
    pub tags: Tags,
}

impl NewInstance {
    /// The ExecutionStarted event this start is carried by.
    pub fn started_event(&self) -> HistoryEvent {
        HistoryEvent::new(
            -1,
            self.created_time,
            crate::model::EventKind::ExecutionStarted {
                name: self.name.clone(),
                version: self.version.clone(),
                execution_id: self.execution_id.clone(),
                input: self.input.clone(),
                parent_instance: self.parent.clone(),
                scheduled_start_time: self.scheduled_start_time,
                generation: 0,
            },
        )
    }
}

/// One instance's status row.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub name: String,
    pub version: String,
    pub execution_id: String,
    pub runtime_status: RuntimeStatus,
    /// JSON text (or `None`). Left `None` by queries that asked not to include inputs.
    pub input: Option<String>,
    /// JSON text for Completed / ContinuedAsNew; the failure text for Failed; the reason for
    /// Terminated.
    pub output: Option<String>,
    pub custom_status: Option<String>,
    pub created_time: DateTime<Utc>,
    pub last_updated_time: DateTime<Utc>,
    pub completed_time: Option<DateTime<Utc>>,
    pub parent_instance_id: Option<String>,
    pub tags: Tags,
}

impl InstanceRecord {
    /// About what the instance takes in a listing: its texts, plus the fixed fields.
    pub fn approximate_bytes(&self) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        256 + self.instance_id.len()
            + self.name.len()
            + text(&self.input)
            + text(&self.output)
            + text(&self.custom_status)
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// The status the executor writes after an episode (the row minus its keys and created fields
/// that only the start writes).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceState {
    pub name: String,
    pub version: String,
    pub execution_id: String,
    pub runtime_status: RuntimeStatus,
    pub input: Option<String>,
    pub output: Option<String>,
    pub custom_status: Option<String>,
    pub created_time: DateTime<Utc>,
    pub last_updated_time: DateTime<Utc>,
    pub completed_time: Option<DateTime<Utc>>,
    pub parent_instance_id: Option<String>,
    /// As the start wrote them: stores keep the row's tags whatever this says.
    pub tags: Tags,
}

/// Filters for listing instances. Empty `statuses` means every status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceFilter {
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub statuses: Vec<RuntimeStatus>,
    /// Case-sensitive id prefix.
    pub instance_id_prefix: Option<String>,
    /// Exact orchestration name.
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceQuery {
    pub filter: InstanceFilter,
    pub page_size: usize,
    /// Opaque token from a previous page's [`Page::continuation`].
    pub continuation: Option<String>,
    pub include_input: bool,
    /// The page ends early, with a continuation, once its instances' sizes
    /// ([`InstanceRecord::approximate_bytes`]) pass this; it always holds at least one.
    pub max_bytes: Option<usize>,
}

/// How many of `rows` (the first ones) a page keeps under `max_bytes`: at least one.
pub(crate) fn rows_within(rows: &[InstanceRecord], max_bytes: Option<usize>) -> usize {
    let Some(max) = max_bytes else {
        return rows.len();
    };
    let mut total = 0usize;
    for (i, row) in rows.iter().enumerate() {
        total = total.saturating_add(row.approximate_bytes());
        if total > max && i > 0 {
            return i;
        }
    }
    rows.len()
}

/// One page of a query. `continuation` is `None` on the last page. Pages are keyset-ordered, so
/// paging never skips or repeats an instance, even while instances are being created.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub continuation: Option<String>,
}

/// Bulk purge progress. `complete` is false when the batch limit was hit and more may match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeResult {
    pub instances_deleted: u64,
    pub complete: bool,
}

/// A history event addressed to an instance but not yet applied.
#[derive(Clone, Debug, PartialEq)]
pub struct OrchestrationMessage {
    pub instance_id: String,
    /// Set when the message belongs to one execution (responses, timers); stale ones are dropped.
    pub execution_id: Option<String>,
    pub event: HistoryEvent,
    /// Not delivered before this time (durable timers, delayed retries).
    pub visible_at: Option<DateTime<Utc>>,
}

/// What an orchestration worker locked: one instance, its history, and its new messages.
#[derive(Clone, Debug)]
pub struct OrchestrationWorkItem {
    pub instance_id: String,
    pub lock_token: String,
    /// The row as it is now; `None` for an instance that has no row (a message arrived for an
    /// instance that does not exist: the executor discards such messages).
    pub instance: Option<InstanceRecord>,
    /// The current execution's history, oldest first.
    pub history: Arc<Vec<HistoryEvent>>,
    /// New messages in arrival order. Completing the work item consumes exactly these.
    pub messages: Vec<OrchestrationMessage>,
}

/// How the history of the current execution changes in a commit.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryWrite {
    Append(Vec<HistoryEvent>),
    /// The whole history is replaced: continue-as-new (a new execution) or rewind (events marked
    /// rewound in place).
    Replace(Vec<HistoryEvent>),
}

/// An activity the orchestration scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRequest {
    pub instance_id: String,
    pub execution_id: String,
    /// The TaskScheduled event id; the result message carries it as `TaskScheduledId`.
    pub task_id: i32,
    pub name: String,
    pub input: Option<String>,
    /// 1 for the first run; higher after the task was rewound.
    pub attempt: u32,
}

#[derive(Clone, Debug)]
pub struct ActivityWorkItem {
    pub lock_token: String,
    pub request: ActivityRequest,
}

/// Everything one orchestration episode changes, written atomically.
#[derive(Clone, Debug)]
pub struct OrchestrationCommit {
    pub history: HistoryWrite,
    /// The row after the episode; `None` leaves the row as it is (and creates none), for work
    /// items whose messages are only discarded.
    pub state: Option<InstanceState>,
    /// Messages to this or other instances (timers to self, events, results to a parent).
    pub messages: Vec<OrchestrationMessage>,
    /// Sub-orchestrations to create (row + start message, [`ReusePolicy::ReplaceAny`]).
    pub new_instances: Vec<NewInstance>,
    pub activities: Vec<ActivityRequest>,
}

/// One task hub. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The task hub this store serves.
    fn hub(&self) -> &str;

    // ---- management ----

    /// Creates the hub's storage if it does not exist yet. Idempotent.
    async fn create_hub(&self) -> StoreResult<()>;

    /// Deletes every instance, history event, message and activity of the hub.
    async fn delete_hub(&self) -> StoreResult<()>;

    /// Whether the hub is there in storage: created, holding an instance, or run by some
    /// process. Asking creates nothing, so a server can refuse a hub name nobody uses without
    /// leaving a trace of it.
    async fn hub_exists(&self) -> StoreResult<bool>;

    /// Writes a Pending row and enqueues the start message, atomically.
    async fn create_instance(&self, new: NewInstance, policy: ReusePolicy) -> StoreResult<()>;

    async fn get_instance(&self, id: &str) -> StoreResult<Option<InstanceRecord>>;

    /// The current execution's history, oldest first; empty for an unknown instance.
    async fn get_history(&self, id: &str) -> StoreResult<Vec<HistoryEvent>>;

    async fn query_instances(&self, query: &InstanceQuery) -> StoreResult<Page<InstanceRecord>>;

    /// Enqueues a message for an existing instance; [`StoreError::NotFound`] otherwise.
    /// Rewinds do not come this way: they change the row too, see [`rewind`](Self::rewind).
    async fn send_message(&self, message: OrchestrationMessage) -> StoreResult<()>;

    /// Accepts a rewind of a Failed instance, as DurableTask.AzureStorage's
    /// `RewindHistoryAsync` does: the row becomes Pending and the instance is sent the message
    /// that makes its executor run the failed work again, so a status read right after this
    /// returns Pending, never the Failed of before. `reason` travels with the message.
    ///
    /// The status check and the write are one step: nothing (a purge, a restart, a second
    /// rewind) can come between them, so a rewind never revives an instance it did not see
    /// Failed. [`StoreError::NotFound`] for an unknown instance, [`StoreError::NotFailed`] for
    /// one in any other status; in both cases nothing is written.
    ///
    /// What the message is differs by layout, and the engine handles both: `ExecutionRewound`
    /// with the history left as it is (the engine edits it when the message arrives), or, in
    /// the Azure Storage layout, DTFx's in-place history edit followed by a `GenericEvent`.
    async fn rewind(&self, id: &str, reason: Option<String>) -> StoreResult<()>;

    /// Deletes one terminal instance with its history and pending messages. Returns how many
    /// instances were deleted (0 or 1). The status is checked in the same write as the delete
    /// (a non-terminal instance is [`StoreError::NotTerminal`] and stays), so a start or a
    /// rewind that races the purge is never deleted with it.
    async fn purge_instance(&self, id: &str) -> StoreResult<u64>;

    /// Deletes up to `limit` instances that match, with their history and messages.
    async fn purge_instances(
        &self,
        filter: &InstanceFilter,
        limit: usize,
    ) -> StoreResult<PurgeResult>;

    // ---- execution ----

    /// Locks the next instance that has visible messages, waiting up to `wait` for one.
    async fn lock_next_orchestration(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<OrchestrationWorkItem>>;

    /// Applies an episode atomically and releases the lock.
    async fn complete_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        commit: OrchestrationCommit,
    ) -> StoreResult<()>;

    /// Releases the lock without consuming the messages; they are retried after `retry_after`.
    async fn abandon_orchestration(
        &self,
        item: &OrchestrationWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()>;

    async fn renew_orchestration_lock(
        &self,
        item: &OrchestrationWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()>;

    async fn lock_next_activity(
        &self,
        lock_for: Duration,
        wait: Duration,
    ) -> StoreResult<Option<ActivityWorkItem>>;

    /// Removes the activity and delivers `result` (TaskCompleted / TaskFailed) to its instance,
    /// atomically.
    async fn complete_activity(
        &self,
        item: &ActivityWorkItem,
        result: HistoryEvent,
    ) -> StoreResult<()>;

    async fn abandon_activity(
        &self,
        item: &ActivityWorkItem,
        retry_after: Duration,
    ) -> StoreResult<()>;

    async fn renew_activity_lock(
        &self,
        item: &ActivityWorkItem,
        lock_for: Duration,
    ) -> StoreResult<()>;

    /// Gives up this process's part in running the hub, and returns once it is given up, so that
    /// another process takes the work over at once instead of waiting for a lease to expire.
    /// Called when a server stops, after its executor has finished its work items. The Azure
    /// store releases its partition leases and stops reading control queues (its lock calls then
    /// find no work); management calls keep working. The default has nothing to release: the
    /// SQLite store's hub lease is taken over at once from a process that has exited.
    async fn stop_execution(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Reads the store's whole structure and reports damage, so that a server refuses to start
    /// on a damaged store rather than failing writes later. The default has nothing to check
    /// (Azure Storage keeps its own integrity).
    async fn check_integrity(&self) -> StoreResult<()> {
        Ok(())
    }

    // ---- change notification ----

    /// Instance ids whose status changed, as they change. `None` when the backend cannot push
    /// changes; callers then poll at their own interval.
    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<str>>>;
}
