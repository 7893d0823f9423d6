//! `TaskHubSidecarService`: each RPC checks its request, calls the management [`Client`] or the
//! hub's [`RemoteWork`] queue, and answers in the protocol's terms ([`convert`]). No store is
//! named here: both backends are reached through the same client and queue.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use super::proto as pb;
use super::proto::task_hub_sidecar_service_server::TaskHubSidecarService;
use super::status::{from_client, from_remote, from_storage};
use crate::client::{Client, ClientError, StartRequest};
use crate::engine::remote::{Assignment, RemoteWork, WorkerSpec};
use crate::model::{EventKind, FailureDetails, InstanceId, RuntimeStatus};
use crate::runtime::Runtime;
use crate::store::{InstanceFilter, InstanceQuery, ReusePolicy, StatusSet};

/// A waiting RPC (WaitForInstance*) gives up after this long; the SDKs set their own, shorter
/// deadlines, and a closed connection ends the wait at once.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Backends without a change feed are polled this often while a client waits.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// A worker stream with nothing to send gets a health ping this often.
const HEALTH_PING: Duration = Duration::from_secs(15);
/// History is streamed in chunks of this many events.
const HISTORY_CHUNK: usize = 200;
/// `QueryInstances` pages hold this many instances when the request names no maximum, and at
/// most `MAX_PAGE` (the Python SDK asks for 2^31 - 1 and follows the continuation token).
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// The most a worker can have of one kind at once, whatever it asks for.
const MAX_CONCURRENCY: usize = 10_000;

pub(crate) struct Sidecar {
    runtime: Arc<Runtime>,
    /// Flips to true when the server is stopping: waits and worker streams end.
    stopping: watch::Receiver<bool>,
    /// The configured hub's client and work queue, resolved by the first call rather than by
    /// every call (the endpoint serves one hub, and the runtime keeps it open for good).
    hub: OnceLock<(Client, Option<Arc<RemoteWork>>)>,
}

impl Sidecar {
    pub(crate) fn new(runtime: Arc<Runtime>, stopping: watch::Receiver<bool>) -> Self {
        Self {
            runtime,
            stopping,
            hub: OnceLock::new(),
        }
    }

    fn hub(&self) -> Result<&(Client, Option<Arc<RemoteWork>>), Status> {
        if let Some(hub) = self.hub.get() {
            return Ok(hub);
        }
        let (client, remote) = self.runtime.hub(None, None).map_err(from_storage)?;
        // Any orchestrator name is accepted here: the worker that serves it may connect later,
        // as with every Durable Task backend.
        Ok(self
            .hub
            .get_or_init(|| (client.accepting_any_name(), remote)))
    }

    /// The configured hub's client.
    fn client(&self) -> Result<Client, Status> {
        Ok(self.hub()?.0.clone())
    }

    fn remote(&self) -> Result<Arc<RemoteWork>, Status> {
        self.hub()?.1.clone().ok_or_else(|| {
            Status::failed_precondition(
                "this taskhub server runs no executor (executor.enabled = false), so it hands out no work items",
            )
        })
    }

    async fn state(
        &self,
        client: &Client,
        record: Option<crate::store::InstanceRecord>,
        with_io: bool,
    ) -> Result<pb::GetInstanceResponse, Status> {
        let Some(record) = record else {
            return Ok(pb::GetInstanceResponse::default());
        };
        let failure = if record.runtime_status == RuntimeStatus::Failed {
            failure_of(client, &record.instance_id).await?
        } else {
            None
        };
        Ok(pb::GetInstanceResponse {
            exists: true,
            orchestration_state: Some(convert::state(&record, with_io, failure.as_ref())),
        })
    }

    async fn wait(
        &self,
        request: pb::GetInstanceRequest,
        until_done: bool,
    ) -> Result<Response<pb::GetInstanceResponse>, Status> {
        let client = self.client()?;
        let id = request.instance_id;
        // An instance that does not exist will not appear by waiting (a start is durable before
        // StartInstance answers): say so at once, as GetInstance does.
        if client.try_status(&id).await.map_err(from_client)?.is_none() {
            return Ok(Response::new(pb::GetInstanceResponse::default()));
        }
        let wait = async {
            if until_done {
                client
                    .wait_for_completion(&id, LONGEST_WAIT, WAIT_POLL)
                    .await
            } else {
                client.wait_for_start(&id, LONGEST_WAIT, WAIT_POLL).await
            }
        };
        let mut stopping = self.stopping.clone();
        let record = tokio::select! {
            r = wait => r.map_err(from_client)?,
            _ = stopping.wait_for(|s| *s) => {
                return Err(Status::unavailable("the server is shutting down; wait again on another server or after it restarts"))
            }
        };
        Ok(Response::new(
            self.state(&client, record, request.get_inputs_and_outputs)
                .await?,
        ))
    }
}

/// The failure details a Failed instance's history records.
async fn failure_of(client: &Client, id: &str) -> Result<Option<FailureDetails>, Status> {
    let history = client.history(id).await.map_err(from_client)?;
    Ok(history.iter().rev().find_map(|e| match &e.kind {
        EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Failed,
            failure_details,
            result,
        } => Some(failure_details.clone().unwrap_or_else(|| {
            FailureDetails::new("OrchestrationFailed", result.clone().unwrap_or_default())
        })),
        _ => None,
    }))
}

fn instance_id(raw: &str) -> Result<InstanceId, Status> {
    InstanceId::parse(raw).map_err(|e| Status::invalid_argument(format!("instanceId: {e}")))
}

fn time(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    t.as_ref()
        .map(|t| {
            convert::from_timestamp(t)
                .ok_or_else(|| Status::invalid_argument(format!("{field} is not a valid time")))
        })
        .transpose()
}

fn statuses(field: &str, raw: &[i32]) -> Result<Vec<RuntimeStatus>, Status> {
    raw.iter()
        .map(|n| {
            convert::status_from(*n).ok_or_else(|| {
                Status::invalid_argument(format!("{field}: {n} is not an orchestration status"))
            })
        })
        .collect()
}

fn spec(request: &pb::GetWorkItemsRequest) -> WorkerSpec {
    // Zero means the worker did not say: the SDKs' own default is 100 per processor.
    let limit = |n: i32| match usize::try_from(n) {
        Ok(0) | Err(_) => 100,
        Ok(n) => n.min(MAX_CONCURRENCY),
    };
    let filters = request.work_item_filters.as_ref();
    WorkerSpec {
        max_orchestrations: limit(request.max_concurrent_orchestration_work_items),
        max_activities: limit(request.max_concurrent_activity_work_items),
        orchestrations: filters.map(|f| {
            let mut names = std::collections::HashMap::<String, Vec<String>>::new();
            for o in &f.orchestrations {
                names
                    .entry(o.name.clone())
                    .or_default()
                    .extend(o.versions.iter().cloned());
            }
            names
        }),
        activities: filters.map(|f| f.activities.iter().map(|a| a.name.clone()).collect()),
    }
}

fn work_item(a: Assignment) -> pb::WorkItem {
    let (request, token) = match a {
        Assignment::Orchestration {
            token,
            instance_id,
            execution_id,
            past_events,
            new_events,
        } => (
            pb::work_item::Request::OrchestratorRequest(pb::OrchestratorRequest {
                past_events: past_events
                    .iter()
                    .map(|e| convert::event(&instance_id, e))
                    .collect(),
                new_events: new_events
                    .iter()
                    .map(|e| convert::event(&instance_id, e))
                    .collect(),
                instance_id,
                execution_id: Some(execution_id),
                requires_history_streaming: false,
            }),
            token,
        ),
        Assignment::Activity {
            token,
            instance_id,
            execution_id,
            task_id,
            name,
            input,
        } => (
            pb::work_item::Request::ActivityRequest(pb::ActivityRequest {
                name,
                version: None,
                input,
                orchestration_instance: Some(pb::OrchestrationInstance {
                    instance_id,
                    execution_id: Some(execution_id),
                }),
                task_id,
                tags: Default::default(),
            }),
            token,
        ),
    };
    pb::WorkItem {
        request: Some(request),
        completion_token: token,
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl TaskHubSidecarService for Sidecar {
    async fn hello(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn start_instance(
        &self,
        request: Request<pb::CreateInstanceRequest>,
    ) -> Result<Response<pb::CreateInstanceResponse>, Status> {
        let r = request.into_inner();
        if r.name.trim().is_empty() {
            return Err(Status::invalid_argument(
                "name: an orchestrator name is required",
            ));
        }
        let id = match r.instance_id.as_str() {
            "" => None,
            raw => Some(instance_id(raw)?),
        };
        // No policy is the SDKs' default: an existing id is never replaced.
        let replaceable = match &r.orchestration_id_reuse_policy {
            Some(p) => statuses("orchestrationIdReusePolicy", &p.replaceable_status)?,
            None => Vec::new(),
        };
        let id = self
            .client()?
            .start_with(StartRequest {
                name: r.name,
                instance_id: id,
                input: r.input,
                version: r.version.unwrap_or_default(),
                scheduled_start: time("scheduledStartTimestamp", &r.scheduled_start_timestamp)?,
                policy: ReusePolicy::ReplaceIn(replaceable.into_iter().collect::<StatusSet>()),
                tags: r.tags.into_iter().collect(),
            })
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::CreateInstanceResponse {
            instance_id: id.to_string(),
        }))
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::GetInstanceResponse>, Status> {
        let r = request.into_inner();
        let client = self.client()?;
        let record = client
            .try_status(&r.instance_id)
            .await
            .map_err(from_client)?;
        Ok(Response::new(
            self.state(&client, record, r.get_inputs_and_outputs)
                .await?,
        ))
    }

    async fn wait_for_instance_start(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::GetInstanceResponse>, Status> {
        self.wait(request.into_inner(), false).await
    }

    async fn wait_for_instance_completion(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::GetInstanceResponse>, Status> {
        self.wait(request.into_inner(), true).await
    }

    async fn raise_event(
        &self,
        request: Request<pb::RaiseEventRequest>,
    ) -> Result<Response<pb::RaiseEventResponse>, Status> {
        let r = request.into_inner();
        self.client()?
            .raise_event_json(&r.instance_id, &r.name, r.input)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::RaiseEventResponse {}))
    }

    async fn terminate_instance(
        &self,
        request: Request<pb::TerminateRequest>,
    ) -> Result<Response<pb::TerminateResponse>, Status> {
        let r = request.into_inner();
        let client = self.client()?;
        let done = if r.recursive {
            client.terminate_recursive(&r.instance_id, r.output).await
        } else {
            client.terminate_json(&r.instance_id, r.output).await
        };
        done.map_err(from_client)?;
        Ok(Response::new(pb::TerminateResponse {}))
    }

    async fn suspend_instance(
        &self,
        request: Request<pb::SuspendRequest>,
    ) -> Result<Response<pb::SuspendResponse>, Status> {
        let r = request.into_inner();
        self.client()?
            .suspend(&r.instance_id, r.reason)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::SuspendResponse {}))
    }

    async fn resume_instance(
        &self,
        request: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ResumeResponse>, Status> {
        let r = request.into_inner();
        self.client()?
            .resume(&r.instance_id, r.reason)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::ResumeResponse {}))
    }

    async fn rewind_instance(
        &self,
        request: Request<pb::RewindInstanceRequest>,
    ) -> Result<Response<pb::RewindInstanceResponse>, Status> {
        let r = request.into_inner();
        self.client()?
            .rewind(&r.instance_id, r.reason)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::RewindInstanceResponse {}))
    }

    async fn restart_instance(
        &self,
        request: Request<pb::RestartInstanceRequest>,
    ) -> Result<Response<pb::RestartInstanceResponse>, Status> {
        let r = request.into_inner();
        let client = self.client()?;
        let status = client.status(&r.instance_id).await.map_err(from_client)?;
        if !status.runtime_status.is_terminal() {
            return Err(from_client(ClientError::PreconditionFailed(format!(
                "Only an instance that has finished can be restarted; '{}' is {}.",
                r.instance_id, status.runtime_status
            ))));
        }
        let id = client
            .restart(&r.instance_id, r.restart_with_new_instance_id)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::RestartInstanceResponse {
            instance_id: id.to_string(),
        }))
    }

    async fn query_instances(
        &self,
        request: Request<pb::QueryInstancesRequest>,
    ) -> Result<Response<pb::QueryInstancesResponse>, Status> {
        let q = request.into_inner().query.unwrap_or_default();
        let page_size = match usize::try_from(q.max_instance_count) {
            Ok(0) | Err(_) => DEFAULT_PAGE,
            Ok(n) => n.min(MAX_PAGE),
        };
        let query = InstanceQuery {
            filter: InstanceFilter {
                created_from: time("createdTimeFrom", &q.created_time_from)?,
                created_to: time("createdTimeTo", &q.created_time_to)?,
                statuses: statuses("runtimeStatus", &q.runtime_status)?,
                instance_id_prefix: q.instance_id_prefix.filter(|p| !p.is_empty()),
                name: None,
            },
            page_size,
            continuation: q.continuation_token.filter(|t| !t.is_empty()),
            include_input: q.fetch_inputs_and_outputs,
            // The same page budget as the HTTP list, well inside the message size limit.
            max_bytes: Some(crate::http::instances::MAX_PAGE_BYTES),
        };
        let client = self.client()?;
        let page = client.query(&query).await.map_err(from_client)?;
        let mut states = Vec::with_capacity(page.items.len());
        for record in &page.items {
            let failure = if record.runtime_status == RuntimeStatus::Failed {
                failure_of(&client, &record.instance_id).await?
            } else {
                None
            };
            states.push(convert::state(
                record,
                q.fetch_inputs_and_outputs,
                failure.as_ref(),
            ));
        }
        Ok(Response::new(pb::QueryInstancesResponse {
            orchestration_state: states,
            continuation_token: page.continuation,
        }))
    }

    async fn list_instance_ids(
        &self,
        request: Request<pb::ListInstanceIdsRequest>,
    ) -> Result<Response<pb::ListInstanceIdsResponse>, Status> {
        let r = request.into_inner();
        // Completed-time filters are answered over the terminal instances (only they have a
        // completed time); the token is the store's own continuation.
        let mut wanted = statuses("runtimeStatus", &r.runtime_status)?;
        if wanted.is_empty() {
            wanted = RuntimeStatus::ALL
                .into_iter()
                .filter(|s| s.is_terminal())
                .collect();
        }
        let from = time("completedTimeFrom", &r.completed_time_from)?;
        let to = time("completedTimeTo", &r.completed_time_to)?;
        let page_size = match usize::try_from(r.page_size) {
            Ok(0) | Err(_) => DEFAULT_PAGE,
            Ok(n) => n.min(MAX_PAGE),
        };
        let query = InstanceQuery {
            filter: InstanceFilter {
                statuses: wanted,
                ..InstanceFilter::default()
            },
            page_size,
            continuation: r.last_instance_key.filter(|t| !t.is_empty()),
            include_input: false,
            max_bytes: None,
        };
        let page = self.client()?.query(&query).await.map_err(from_client)?;
        let instance_ids = page
            .items
            .into_iter()
            .filter(|i| {
                let done = i.completed_time;
                from.is_none_or(|f| done.is_some_and(|d| d >= f))
                    && to.is_none_or(|t| done.is_some_and(|d| d < t))
            })
            .map(|i| i.instance_id)
            .collect();
        Ok(Response::new(pb::ListInstanceIdsResponse {
            instance_ids,
            last_instance_key: page.continuation,
        }))
    }

    async fn purge_instances(
        &self,
        request: Request<pb::PurgeInstancesRequest>,
    ) -> Result<Response<pb::PurgeInstancesResponse>, Status> {
        use pb::purge_instances_request::Request as R;
        let r = request.into_inner();
        let client = self.client()?;
        let (deleted, complete) = match r.request {
            None => {
                return Err(Status::invalid_argument(
                    "name an instanceId, a purgeInstanceFilter or an instanceBatch to purge",
                ))
            }
            Some(R::InstanceId(id)) => (
                client
                    .purge_tree(&id, r.recursive)
                    .await
                    .map_err(from_client)?,
                true,
            ),
            Some(R::InstanceBatch(batch)) => {
                if batch.instance_ids.len() > 500 {
                    return Err(Status::invalid_argument(
                        "instanceBatch: at most 500 instance ids per request",
                    ));
                }
                let mut deleted = 0;
                for id in &batch.instance_ids {
                    deleted += match client.purge_tree(id, r.recursive).await {
                        Ok(n) => n,
                        // A batch purges what can be purged; one still running stays.
                        Err(ClientError::PreconditionFailed(_)) => 0,
                        Err(e) => return Err(from_client(e)),
                    };
                }
                (deleted, true)
            }
            Some(R::PurgeInstanceFilter(f)) => {
                let filter = InstanceFilter {
                    created_from: time("createdTimeFrom", &f.created_time_from)?,
                    created_to: time("createdTimeTo", &f.created_time_to)?,
                    statuses: statuses("runtimeStatus", &f.runtime_status)?,
                    ..InstanceFilter::default()
                };
                let deadline = f
                    .timeout
                    .and_then(|d| Duration::try_from(d).ok())
                    .map(|d| tokio::time::Instant::now() + d.min(LONGEST_WAIT));
                client
                    .purge_by_filter_until(&filter, deadline)
                    .await
                    .map_err(from_client)?
            }
        };
        Ok(Response::new(pb::PurgeInstancesResponse {
            deleted_instance_count: i32::try_from(deleted).unwrap_or(i32::MAX),
            is_complete: Some(complete),
        }))
    }

    type StreamInstanceHistoryStream = Streamed<pb::HistoryChunk>;

    async fn stream_instance_history(
        &self,
        request: Request<pb::StreamInstanceHistoryRequest>,
    ) -> Result<Response<Self::StreamInstanceHistoryStream>, Status> {
        let r = request.into_inner();
        let client = self.client()?;
        let record = client.status(&r.instance_id).await.map_err(from_client)?;
        if let Some(exec) = r.execution_id.filter(|e| !e.is_empty()) {
            if exec != record.execution_id {
                return Err(Status::not_found(format!(
                    "instance '{}' has no execution '{exec}' (its current execution is '{}'; earlier ones are not kept)",
                    r.instance_id, record.execution_id
                )));
            }
        }
        let history = client.history(&r.instance_id).await.map_err(from_client)?;
        let chunks: Vec<Result<pb::HistoryChunk, Status>> = history
            .chunks(HISTORY_CHUNK)
            .map(|c| {
                Ok(pb::HistoryChunk {
                    events: c
                        .iter()
                        .map(|e| convert::event(&r.instance_id, e))
                        .collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn create_task_hub(
        &self,
        request: Request<pb::CreateTaskHubRequest>,
    ) -> Result<Response<pb::CreateTaskHubResponse>, Status> {
        self.client()?
            .create_hub(request.into_inner().recreate_if_exists)
            .await
            .map_err(from_client)?;
        Ok(Response::new(pb::CreateTaskHubResponse {}))
    }

    async fn delete_task_hub(
        &self,
        _: Request<pb::DeleteTaskHubRequest>,
    ) -> Result<Response<pb::DeleteTaskHubResponse>, Status> {
        self.client()?.delete_hub().await.map_err(from_client)?;
        Ok(Response::new(pb::DeleteTaskHubResponse {}))
    }

    type GetWorkItemsStream = Streamed<pb::WorkItem>;

    async fn get_work_items(
        &self,
        request: Request<pb::GetWorkItemsRequest>,
    ) -> Result<Response<Self::GetWorkItemsStream>, Status> {
        let remote = self.remote()?;
        let spec = spec(request.get_ref());
        let worker = remote.connect(spec);
        tracing::info!(
            workers = remote.worker_count(),
            "a Durable Task worker connected"
        );
        let (tx, rx) = mpsc::channel(16);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(HEALTH_PING);
            ping.tick().await;
            loop {
                let item = tokio::select! {
                    _ = tx.closed() => break,
                    _ = stopping.wait_for(|s| *s) => break,
                    _ = ping.tick() => pb::WorkItem {
                        request: Some(pb::work_item::Request::HealthPing(pb::HealthPing {})),
                        completion_token: String::new(),
                    },
                    next = remote.next(worker) => match next {
                        Some(a) => work_item(a),
                        None => break,
                    },
                };
                if tx.send(Ok(item)).await.is_err() {
                    break;
                }
                ping.reset();
            }
            // Whatever the worker still held goes back to the store, to be handed out again.
            remote.disconnect(worker).await;
            tracing::info!(
                workers = remote.worker_count(),
                "a Durable Task worker disconnected"
            );
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn complete_orchestrator_task(
        &self,
        request: Request<pb::OrchestratorResponse>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let r = request.into_inner();
        if r.is_partial {
            return Err(Status::invalid_argument(
                "isPartial: chunked orchestrator responses are not supported; send the whole response at once",
            ));
        }
        let decision = convert::decision(&r);
        self.remote()?
            .complete_orchestration(&r.completion_token, &r.instance_id, decision)
            .await
            .map_err(from_remote)?;
        Ok(Response::new(pb::CompleteTaskResponse {}))
    }

    async fn complete_activity_task(
        &self,
        request: Request<pb::ActivityResponse>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let r = request.into_inner();
        let outcome = match &r.failure_details {
            Some(f) => Err(convert::failure_from(f)),
            None => Ok(r.result),
        };
        self.remote()?
            .complete_activity(&r.completion_token, &r.instance_id, r.task_id, outcome)
            .await
            .map_err(from_remote)?;
        Ok(Response::new(pb::CompleteTaskResponse {}))
    }

    async fn abandon_task_orchestrator_work_item(
        &self,
        request: Request<pb::AbandonOrchestrationTaskRequest>,
    ) -> Result<Response<pb::AbandonOrchestrationTaskResponse>, Status> {
        self.remote()?
            .abandon_orchestration(&request.into_inner().completion_token)
            .await
            .map_err(from_remote)?;
        Ok(Response::new(pb::AbandonOrchestrationTaskResponse {}))
    }

    async fn abandon_task_activity_work_item(
        &self,
        request: Request<pb::AbandonActivityTaskRequest>,
    ) -> Result<Response<pb::AbandonActivityTaskResponse>, Status> {
        self.remote()?
            .abandon_activity(&request.into_inner().completion_token)
            .await
            .map_err(from_remote)?;
        Ok(Response::new(pb::AbandonActivityTaskResponse {}))
    }
}
