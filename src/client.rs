//! The management operations, written once for the HTTP API and the command line.
//!
//! Each operation checks the caller's input and the instance's state, then asks the store. Errors
//! say what was wrong in a sentence a person can act on; the HTTP layer maps them to status codes
//! in one place.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::engine::remote::RemoteWork;
use crate::engine::Registry;
use crate::model::{new_guid_n, EventKind, HistoryEvent, InstanceId, RuntimeStatus};
use crate::store::{
    InstanceFilter, InstanceQuery, InstanceRecord, NewInstance, OrchestrationMessage, Page,
    ReusePolicy, Store, StoreError, Tags,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The caller's input is malformed (400).
    #[error("{0}")]
    InvalidInput(String),
    #[error("The function '{0}' doesn't exist, is disabled, or is not an orchestrator function.")]
    UnknownOrchestrator(String),
    /// No such instance (404).
    #[error("No instance with ID '{0}' was found.")]
    NotFound(String),
    /// The instance already finished, so the operation can no longer apply (410).
    #[error("The instance '{instance_id}' is {status} and can no longer accept this operation.")]
    Gone {
        instance_id: String,
        status: RuntimeStatus,
    },
    /// An instance with that id is still running (409).
    #[error("An instance with ID '{instance_id}' already exists and is {status}.")]
    AlreadyExists {
        instance_id: String,
        status: RuntimeStatus,
    },
    /// The instance is not in a state that allows the operation (412).
    #[error("{0}")]
    PreconditionFailed(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ClientError::NotFound(id),
            StoreError::AlreadyExists {
                instance_id,
                status,
            } => ClientError::AlreadyExists {
                instance_id,
                status,
            },
            // Only a rewind asks for a Failed instance.
            StoreError::NotFailed {
                instance_id,
                status,
            } => ClientError::PreconditionFailed(format!(
                "The rewind operation is only supported on failed orchestration instances; '{instance_id}' is {status}."
            )),
            StoreError::NotTerminal {
                instance_id,
                status,
            } => ClientError::PreconditionFailed(format!(
                "Only orchestrations in a terminal state can be purged; '{instance_id}' is {status}."
            )),
            StoreError::InvalidContinuationToken => {
                ClientError::InvalidInput("The continuation token is not valid.".into())
            }
            other => ClientError::Store(other),
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

/// How many instances one bulk-purge step deletes before it yields to other writers.
const PURGE_BATCH: usize = 500;

/// "No deadline" for waits: far enough, and still a valid instant.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Page size used when counting instances.
const COUNT_PAGE: usize = 1000;

/// A start with everything the Durable Task protocol can say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    pub name: String,
    /// `None`: a new random id.
    pub instance_id: Option<InstanceId>,
    /// JSON text, or `None` for no input.
    pub input: Option<String>,
    pub version: String,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub policy: ReusePolicy,
    pub tags: Tags,
}

#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    /// The orchestrators this process knows. `None` in management-only mode, where the code runs
    /// elsewhere and any name is accepted.
    registry: Option<Arc<Registry>>,
    /// The workers connected over gRPC: the names they serve are known too.
    remote: Option<Arc<RemoteWork>>,
}

impl Client {
    pub fn new(store: Arc<dyn Store>, registry: Option<Arc<Registry>>) -> Self {
        Self {
            store,
            registry,
            remote: None,
        }
    }

    /// Accepts every orchestrator name, as the Durable Task protocol's start does: the worker
    /// that serves a name may connect later.
    pub fn accepting_any_name(mut self) -> Self {
        self.registry = None;
        self
    }

    /// Also accepts the orchestrator names that workers connected over gRPC serve.
    pub fn with_remote(mut self, remote: Option<Arc<RemoteWork>>) -> Self {
        self.remote = remote;
        self
    }

    /// Whether a start of `name` can ever run: a name registered here, or one a connected remote
    /// worker serves (a worker that sends no work item filters serves every name). Without a
    /// registry (management only) every name is accepted, since the code runs elsewhere.
    pub fn knows_orchestrator(&self, name: &str) -> bool {
        let Some(reg) = &self.registry else {
            return true;
        };
        reg.has_orchestrator(name)
            || self
                .remote
                .as_ref()
                .and_then(|r| r.serves_orchestration(name))
                .unwrap_or(false)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn hub(&self) -> &str {
        self.store.hub()
    }

    /// Starts an orchestration. A terminal instance with the same id is replaced (a restart);
    /// a non-terminal one is an [`ClientError::AlreadyExists`].
    pub async fn start(
        &self,
        name: &str,
        instance_id: Option<InstanceId>,
        input: Value,
    ) -> ClientResult<InstanceId> {
        self.start_at(name, instance_id, input, None).await
    }

    /// Like [`start`](Self::start), with the first episode delayed until `scheduled_start`.
    pub async fn start_at(
        &self,
        name: &str,
        instance_id: Option<InstanceId>,
        input: Value,
        scheduled_start: Option<DateTime<Utc>>,
    ) -> ClientResult<InstanceId> {
        if name.trim().is_empty() {
            return Err(ClientError::InvalidInput(
                "An orchestrator function name is required.".into(),
            ));
        }
        if !self.knows_orchestrator(name) {
            return Err(ClientError::UnknownOrchestrator(name.to_string()));
        }
        self.start_with(StartRequest {
            name: name.to_string(),
            instance_id,
            input: json_text(input),
            version: String::new(),
            scheduled_start,
            policy: ReusePolicy::ReplaceTerminal,
            tags: Tags::new(),
        })
        .await
    }

    /// Starts an orchestration of any name (the caller decides whether the name must be known),
    /// with its input as JSON text and an explicit reuse policy: the Durable Task protocol's start.
    pub async fn start_with(&self, request: StartRequest) -> ClientResult<InstanceId> {
        if request.name.trim().is_empty() {
            return Err(ClientError::InvalidInput(
                "An orchestrator name is required.".into(),
            ));
        }
        let id = request.instance_id.unwrap_or_else(InstanceId::new_random);
        let new = NewInstance {
            instance_id: id.clone(),
            name: request.name,
            version: request.version,
            execution_id: new_guid_n(),
            input: request.input,
            created_time: crate::model::now(),
            scheduled_start_time: request.scheduled_start,
            parent: None,
            tags: request.tags,
        };
        let name = new.name.clone();
        self.store.create_instance(new, request.policy).await?;
        crate::metrics::metrics().instance_started(&name);
        Ok(id)
    }

    pub async fn status(&self, id: &str) -> ClientResult<InstanceRecord> {
        self.store
            .get_instance(id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.to_string()))
    }

    /// The status, or `None` for an unknown instance.
    pub async fn try_status(&self, id: &str) -> ClientResult<Option<InstanceRecord>> {
        Ok(self.store.get_instance(id).await?)
    }

    pub async fn history(&self, id: &str) -> ClientResult<Vec<HistoryEvent>> {
        Ok(self.store.get_history(id).await?)
    }

    pub async fn query(&self, query: &InstanceQuery) -> ClientResult<Page<InstanceRecord>> {
        if query.page_size == 0 {
            return Err(ClientError::InvalidInput(
                "The page size must be at least 1.".into(),
            ));
        }
        Ok(self.store.query_instances(query).await?)
    }

    /// Delivers an event to a waiting (or not yet waiting) instance.
    pub async fn raise_event(&self, id: &str, event_name: &str, data: Value) -> ClientResult<()> {
        self.raise_event_json(id, event_name, json_text(data)).await
    }

    /// [`raise_event`](Self::raise_event) with the data already JSON text (or none).
    pub async fn raise_event_json(
        &self,
        id: &str,
        event_name: &str,
        data: Option<String>,
    ) -> ClientResult<()> {
        if event_name.trim().is_empty() {
            return Err(ClientError::InvalidInput(
                "An event name is required.".into(),
            ));
        }
        self.require_not_terminal(id).await?;
        self.send(
            id,
            EventKind::EventRaised {
                name: event_name.to_string(),
                input: data,
            },
        )
        .await
    }

    /// Terminates the instance; `reason` becomes its output (a JSON string).
    pub async fn terminate(&self, id: &str, reason: Option<String>) -> ClientResult<()> {
        self.terminate_json(id, reason.map(|r| Value::String(r).to_string()))
            .await
    }

    /// [`terminate`](Self::terminate) with the output already JSON text (or none).
    pub async fn terminate_json(&self, id: &str, output: Option<String>) -> ClientResult<()> {
        self.require_not_terminal(id).await?;
        self.send(id, EventKind::ExecutionTerminated { input: output })
            .await
    }

    /// Terminates the instance and, depth first, every sub-orchestration it started that has
    /// not finished. Children already finished (or gone) are passed over.
    pub async fn terminate_recursive(&self, id: &str, output: Option<String>) -> ClientResult<()> {
        let children = self.children(id).await?;
        self.terminate_json(id, output.clone()).await?;
        let mut stack = children;
        while let Some(child) = stack.pop() {
            stack.extend(self.children(&child).await?);
            match self.terminate_json(&child, output.clone()).await {
                Ok(()) | Err(ClientError::Gone { .. }) | Err(ClientError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The sub-orchestrations the instance's current execution started.
    pub async fn children(&self, id: &str) -> ClientResult<Vec<String>> {
        Ok(self
            .store
            .get_history(id)
            .await?
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::SubOrchestrationInstanceCreated { instance_id, .. } => Some(instance_id),
                _ => None,
            })
            .collect())
    }

    pub async fn suspend(&self, id: &str, reason: Option<String>) -> ClientResult<()> {
        let status = self.require_not_terminal(id).await?;
        if status == RuntimeStatus::Suspended {
            return Err(ClientError::PreconditionFailed(format!(
                "The instance '{id}' is already suspended."
            )));
        }
        self.send(id, EventKind::ExecutionSuspended { reason })
            .await
    }

    pub async fn resume(&self, id: &str, reason: Option<String>) -> ClientResult<()> {
        let status = self.require_not_terminal(id).await?;
        if status != RuntimeStatus::Suspended {
            return Err(ClientError::PreconditionFailed(format!(
                "The instance '{id}' is {status}, not Suspended, so it cannot be resumed."
            )));
        }
        self.send(id, EventKind::ExecutionResumed { reason }).await
    }

    /// Re-runs the failed parts of a Failed instance. Once this returns, the instance reads
    /// Pending; the store checks the status in the same step (see [`Store::rewind`]).
    pub async fn rewind(&self, id: &str, reason: Option<String>) -> ClientResult<()> {
        Ok(self.store.rewind(id, reason).await?)
    }

    /// Starts the instance again with its original name and input, under a new id or the same.
    pub async fn restart(&self, id: &str, new_instance_id: bool) -> ClientResult<InstanceId> {
        let old = self.status(id).await?;
        let input = match self.store.get_history(id).await?.first().map(|e| &e.kind) {
            Some(EventKind::ExecutionStarted { input, .. }) => input.clone(),
            _ => old.input.clone(),
        };
        let input = input
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
            .unwrap_or(Value::Null);
        let target = if new_instance_id {
            None
        } else {
            Some(InstanceId::parse(old.instance_id.clone()).map_err(|e| {
                ClientError::InvalidInput(format!("The instance id cannot be reused: {e}"))
            })?)
        };
        // Restart goes through the registry check too: the code may have been removed.
        self.start(&old.name, target, input).await
    }

    /// Deletes a terminal instance and its history. Returns 1.
    pub async fn purge(&self, id: &str) -> ClientResult<u64> {
        // The store checks the status in the write that deletes: a check here first would let
        // a start that lands in between be deleted with the old instance.
        let deleted = self.store.purge_instance(id).await?;
        if deleted == 0 {
            return Err(ClientError::NotFound(id.to_string()));
        }
        Ok(deleted)
    }

    /// Deletes every instance that matches, in batches. Returns how many were deleted.
    pub async fn purge_by_filter(&self, filter: &InstanceFilter) -> ClientResult<u64> {
        let (deleted, _complete) = self.purge_by_filter_until(filter, None).await?;
        Ok(deleted)
    }

    /// How many instances match. Pages through the query, so it costs a scan; the command line
    /// uses it to say what `delete-task-hub` removed.
    pub async fn count_instances(&self, filter: &InstanceFilter) -> ClientResult<u64> {
        let mut query = InstanceQuery {
            filter: filter.clone(),
            page_size: COUNT_PAGE,
            continuation: None,
            include_input: false,
            max_bytes: None,
        };
        let mut total = 0;
        loop {
            let page = self.store.query_instances(&query).await?;
            total += page.items.len() as u64;
            match page.continuation {
                Some(token) => query.continuation = Some(token),
                None => return Ok(total),
            }
        }
    }

    /// Deletes one terminal instance and, with `recursive`, the sub-orchestrations it started.
    /// Returns how many instances were deleted (0 for an unknown id).
    pub async fn purge_tree(&self, id: &str, recursive: bool) -> ClientResult<u64> {
        let children = if recursive {
            self.children(id).await?
        } else {
            Vec::new()
        };
        let mut deleted = match self.purge(id).await {
            Ok(n) => n,
            Err(ClientError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e),
        };
        for child in children {
            deleted += Box::pin(self.purge_tree(&child, true))
                .await
                .or_else(|e| match e {
                    // A child still running stays; its parent is gone already.
                    ClientError::PreconditionFailed(_) => Ok(0),
                    e => Err(e),
                })?;
        }
        Ok(deleted)
    }

    /// [`purge_by_filter`](Self::purge_by_filter) that stops between batches once `deadline`
    /// has passed. Returns the count and whether every match is gone.
    pub async fn purge_by_filter_until(
        &self,
        filter: &InstanceFilter,
        deadline: Option<tokio::time::Instant>,
    ) -> ClientResult<(u64, bool)> {
        let mut total = 0;
        loop {
            let step = self.store.purge_instances(filter, PURGE_BATCH).await?;
            total += step.instances_deleted;
            if step.complete {
                return Ok((total, true));
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Ok((total, false));
            }
        }
    }

    /// Creates the hub's storage; with `recreate`, deletes everything in it first.
    pub async fn create_hub(&self, recreate: bool) -> ClientResult<()> {
        if recreate {
            self.store.delete_hub().await?;
        }
        Ok(self.store.create_hub().await?)
    }

    pub async fn delete_hub(&self) -> ClientResult<()> {
        Ok(self.store.delete_hub().await?)
    }

    /// Waits until the instance is terminal or `timeout` passes, and returns its last status
    /// (`None` if it does not exist). Wakes on the store's change notification when it has one,
    /// so a completion answers at once; otherwise polls every `poll_interval`.
    pub async fn wait_for_completion(
        &self,
        id: &str,
        timeout: Duration,
        poll_interval: Duration,
    ) -> ClientResult<Option<InstanceRecord>> {
        self.wait_until(id, timeout, poll_interval, |s| {
            s.runtime_status.is_terminal()
        })
        .await
    }

    /// Waits until the instance has left Pending (it runs, or already finished), as
    /// [`wait_for_completion`](Self::wait_for_completion) does.
    pub async fn wait_for_start(
        &self,
        id: &str,
        timeout: Duration,
        poll_interval: Duration,
    ) -> ClientResult<Option<InstanceRecord>> {
        self.wait_until(id, timeout, poll_interval, |s| {
            s.runtime_status != RuntimeStatus::Pending
        })
        .await
    }

    async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        poll_interval: Duration,
        reached: impl Fn(&InstanceRecord) -> bool,
    ) -> ClientResult<Option<InstanceRecord>> {
        // A deadline past the clock's range waits for good rather than panicking.
        let deadline = tokio::time::Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| tokio::time::Instant::now() + FOREVER);
        // Subscribe before reading, so a change between the read and the wait is not missed.
        let mut changes = self.store.subscribe();
        loop {
            let status = self.store.get_instance(id).await?;
            let done = status.as_ref().is_some_and(&reached);
            let now = tokio::time::Instant::now();
            if done || now >= deadline {
                return Ok(status);
            }
            let remaining = deadline - now;
            match changes.as_mut() {
                Some(rx) => {
                    let _ = tokio::time::timeout(remaining, async {
                        loop {
                            match rx.recv().await {
                                Ok(changed) if &*changed == id => return,
                                Ok(_) => {}
                                Err(RecvError::Lagged(_)) => return,
                                Err(RecvError::Closed) => {
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                    })
                    .await;
                }
                None => tokio::time::sleep(poll_interval.min(remaining)).await,
            }
        }
    }

    async fn require_not_terminal(&self, id: &str) -> ClientResult<RuntimeStatus> {
        let status = self.status(id).await?.runtime_status;
        if status.is_terminal() {
            return Err(ClientError::Gone {
                instance_id: id.to_string(),
                status,
            });
        }
        Ok(status)
    }

    async fn send(&self, id: &str, kind: EventKind) -> ClientResult<()> {
        let message = OrchestrationMessage {
            instance_id: id.to_string(),
            execution_id: None,
            event: HistoryEvent::unscheduled(kind),
            visible_at: None,
        };
        Ok(self.store.send_message(message).await?)
    }
}

/// JSON `null` is "no input", stored as absent, as Durable Functions does.
fn json_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(other.to_string()),
    }
}
