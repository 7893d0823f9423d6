//! From a locked work item to the commit that applies it, in three named steps:
//!
//! 1. [`prepare`]: which messages count, and whether the episode needs the orchestrator at all
//!    (messages for a missing or finished instance are discarded, a terminate before a scheduled
//!    start ends it, a rewind rewrites the history replay starts from);
//! 2. a decision: [`replay_locally`] runs a registered orchestrator through pure replay, or
//!    [`remote_result`] turns what an out-of-process worker (a Durable Task SDK over gRPC)
//!    answered into the same [`EpisodeResult`];
//! 3. [`commit`]: which rows, messages and activities follow from that decision.
//!
//! All three are pure, so they are tested without a store (`episode_tests.rs`).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::context::Action;
use super::registry::Registry;
use super::replay::{
    action_event, attempt_of, completion_event, ended_as, rewind_history, run_episode,
    EpisodeResult, Outcome,
};
use crate::model::{
    new_guid_n, EventKind, FailureDetails, HistoryEvent, InstanceId, ParentInstance, RuntimeStatus,
};
use crate::store::{
    ActivityRequest, HistoryWrite, InstanceRecord, InstanceState, NewInstance, OrchestrationCommit,
    OrchestrationMessage, OrchestrationWorkItem,
};

/// What the worker should do with the work item.
#[derive(Debug)]
pub enum Plan {
    Commit(Box<OrchestrationCommit>),
    /// Leave the messages for later (they arrived before their instance's start is visible).
    Retry(Duration),
}

/// The outcome of [`prepare`]: settled without the orchestrator, or an episode to decide.
#[derive(Debug)]
pub enum Step {
    Done(Plan),
    Decide(Box<Episode>),
}

/// An episode that needs the orchestrator's decision: the history it replays and the events it
/// applies now.
#[derive(Clone, Debug)]
pub struct Episode {
    /// The orchestrator's name, as the ExecutionStarted event records it.
    pub name: String,
    pub instance_id: String,
    pub execution_id: String,
    /// The committed history replay starts from (for a rewind, the rewound history).
    pub history: Vec<HistoryEvent>,
    /// The events this episode applies, in order.
    pub new_events: Vec<HistoryEvent>,
    row: InstanceRecord,
    /// Set when the episode rewinds a failed instance: the failed sub-orchestrations to rewind
    /// with it, and the rewind event to send them.
    rewind: Option<(Vec<String>, HistoryEvent)>,
}

/// Runs every step in this process: the executor's path for a registered orchestrator.
pub fn plan(registry: &Registry, item: &OrchestrationWorkItem, now: DateTime<Utc>) -> Plan {
    match prepare(item, now) {
        Step::Done(plan) => plan,
        Step::Decide(episode) => {
            let result = replay_locally(registry, &episode, now);
            commit(&episode, result, now)
        }
    }
}

/// Step 1: sorts the work item's messages and settles what needs no orchestrator.
pub fn prepare(item: &OrchestrationWorkItem, now: DateTime<Utc>) -> Step {
    let history: &[HistoryEvent] = &item.history;
    let Some(row) = &item.instance else {
        // Messages for an instance that does not exist (purged, or never created): drop them.
        return Step::Done(discard());
    };
    let started = history
        .iter()
        .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }));

    let mut new_events = Vec::new();
    let mut rewind = None;
    for m in &item.messages {
        if m.execution_id
            .as_ref()
            .is_some_and(|e| *e != row.execution_id)
        {
            continue; // a response or timer for an execution that is gone
        }
        match &m.event.kind {
            EventKind::ExecutionStarted { execution_id, .. } => {
                // An execution's start comes before anything delivered to it, even an event
                // that was queued first (raised while the previous execution continued as new):
                // the SDKs start the orchestrator only at ExecutionStarted.
                if !started && *execution_id == row.execution_id {
                    new_events.insert(0, m.event.clone());
                }
            }
            EventKind::ExecutionRewound { .. } => rewind = Some(m.event.clone()),
            _ => new_events.push(m.event.clone()),
        }
    }

    // The history, not the row, says whether there is a failure to take back: the store turns
    // the row Pending when it accepts a rewind (`Store::rewind`), before this message arrives.
    // A rewind of an execution that no longer ends Failed (rewound already) is dropped.
    if let Some(rewind_event) = rewind {
        if ended_as(history) == Some(RuntimeStatus::Failed) {
            let rewound = rewind_history(history);
            new_events.insert(0, rewind_event.clone());
            return Step::Decide(Box::new(Episode {
                name: started_name(&rewound.history, &[]),
                instance_id: item.instance_id.clone(),
                execution_id: row.execution_id.clone(),
                history: rewound.history,
                new_events,
                row: row.clone(),
                rewind: Some((rewound.failed_children, rewind_event)),
            }));
        }
    }
    // Only the row decides that an execution is over (finished, or terminated before it
    // started). A history that ended under a row that did not (a crash between the two writes
    // of a checkpoint) is replayed, which writes the row it should have had.
    if row.runtime_status.is_terminal() {
        return Step::Done(discard());
    }
    let starting = new_events
        .iter()
        .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }));
    if !started && !starting {
        return Step::Done(plan_before_start(row, &new_events, now));
    }
    Step::Decide(Box::new(Episode {
        name: started_name(history, &new_events),
        instance_id: item.instance_id.clone(),
        execution_id: row.execution_id.clone(),
        history: history.to_vec(),
        new_events,
        row: row.clone(),
        rewind: None,
    }))
}

/// Step 2, in process: replays the registered orchestrator.
pub fn replay_locally(registry: &Registry, episode: &Episode, now: DateTime<Utc>) -> EpisodeResult {
    run_episode(
        registry.get_orchestrator(&episode.name),
        &episode.instance_id,
        &episode.history,
        &episode.new_events,
        now,
    )
}

/// What an out-of-process worker decided for an episode, already in the engine's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteDecision {
    /// New actions, each with the id its history event will carry.
    pub actions: Vec<Action>,
    /// How the orchestrator ended, if it did (`None`: still running).
    pub completion: Option<Outcome>,
    pub custom_status: Option<String>,
    /// Set when the worker's answer cannot be applied (unsupported or contradictory actions):
    /// the instance fails with this, instead of the work item being retried forever.
    pub rejected: Option<FailureDetails>,
}

/// Step 2, out of process: the worker was sent `episode.history` as its past events and
/// `orchestrator_started` followed by `episode.new_events` as its new events; this is its
/// answer as an [`EpisodeResult`]. Action ids that history has already used make the answer
/// contradictory: the instance fails with a clear reason rather than corrupting its history.
pub fn remote_result(
    episode: &Episode,
    orchestrator_started: HistoryEvent,
    decision: RemoteDecision,
    now: DateTime<Utc>,
) -> EpisodeResult {
    let RemoteDecision {
        mut actions,
        completion,
        custom_status,
        rejected,
    } = decision;
    let rejected = rejected
        .or_else(|| super::replay::too_many_actions(actions.len()))
        .or_else(|| contradiction(&episode.history, &actions));
    let outcome = match rejected {
        Some(failure) => {
            actions.clear();
            Outcome::Failed { failure }
        }
        None => completion.unwrap_or(Outcome::Running),
    };
    if outcome.is_terminal() {
        // As in replay: a finished orchestrator's unfinished work is dropped, its events sent.
        actions.retain(|a| matches!(a, Action::SendEvent { .. }));
    }
    actions.sort_by_key(Action::id);

    let mut new_events = vec![orchestrator_started];
    new_events.extend(episode.new_events.iter().cloned());
    new_events.extend(actions.iter().map(|a| action_event(a, now)));
    if let Some(kind) = completion_event(&outcome) {
        new_events.push(HistoryEvent::new(-1, now, kind));
    }
    new_events.push(HistoryEvent::new(-1, now, EventKind::OrchestratorCompleted));

    let all = || episode.history.iter().chain(&episode.new_events);
    let (name, input) = all()
        .find_map(|e| match &e.kind {
            EventKind::ExecutionStarted { name, input, .. } => Some((name.clone(), input.clone())),
            _ => None,
        })
        .unwrap_or_else(|| (episode.name.clone(), None));
    let suspended = all().fold(false, |suspended, e| match e.kind {
        EventKind::ExecutionSuspended { .. } => true,
        EventKind::ExecutionResumed { .. } => false,
        _ => suspended,
    });
    EpisodeResult {
        new_events,
        actions,
        custom_status,
        outcome,
        suspended,
        name,
        input,
    }
}

/// Why a worker's new actions cannot follow this history, if they cannot: an id whose scheduled
/// event is still waiting for its result, or one id used twice in one answer. An id whose task
/// already has its result may be scheduled again: that is how the SDKs retry a failed activity.
fn contradiction(history: &[HistoryEvent], actions: &[Action]) -> Option<FailureDetails> {
    let mut outstanding: HashSet<i32> = HashSet::new();
    for e in history {
        match &e.kind {
            EventKind::TaskScheduled { .. }
            | EventKind::TimerCreated { .. }
            | EventKind::SubOrchestrationInstanceCreated { .. }
            | EventKind::EventSent { .. } => {
                outstanding.insert(e.event_id);
            }
            EventKind::TaskCompleted {
                task_scheduled_id: id,
                ..
            }
            | EventKind::TaskFailed {
                task_scheduled_id: id,
                ..
            }
            | EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id: id,
                ..
            }
            | EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id: id,
                ..
            }
            | EventKind::TimerFired { timer_id: id, .. } => {
                outstanding.remove(id);
            }
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    actions.iter().map(Action::id).find_map(|id| {
        let why = if outstanding.contains(&id) {
            "which the history already gave to a step that is still outstanding"
        } else if !seen.insert(id) {
            "more than once in one answer"
        } else {
            return None;
        };
        Some(FailureDetails::new(
            "NonDeterministicOrchestration",
            format!("The worker's answer cannot follow the instance's history: it used action id {id}, {why}."),
        ))
    })
}

/// Step 3: the commit that applies the decided episode.
pub fn commit(episode: &Episode, result: EpisodeResult, now: DateTime<Utc>) -> Plan {
    let Some((failed_children, rewind_event)) = &episode.rewind else {
        return Plan::Commit(Box::new(commit_for(
            &episode.row,
            result,
            HistoryWrite::Append,
            &episode.history,
            now,
        )));
    };
    let mut commit = commit_for(
        &episode.row,
        result,
        |events| {
            let mut all = episode.history.clone();
            all.extend(events);
            HistoryWrite::Replace(all)
        },
        &episode.history,
        now,
    );
    for child in failed_children {
        commit.messages.push(OrchestrationMessage {
            instance_id: child.clone(),
            execution_id: None,
            event: HistoryEvent::new(-1, now, rewind_event.kind.clone()),
            visible_at: None,
        });
    }
    Plan::Commit(Box::new(commit))
}

fn started_name(history: &[HistoryEvent], new_events: &[HistoryEvent]) -> String {
    history
        .iter()
        .chain(new_events)
        .find_map(|e| match &e.kind {
            EventKind::ExecutionStarted { name, .. } => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Messages for an instance whose start is not visible yet (a scheduled start). A terminate
/// ends it without running it; anything else waits for the start.
fn plan_before_start(
    row: &InstanceRecord,
    new_events: &[HistoryEvent],
    now: DateTime<Utc>,
) -> Plan {
    let terminate = new_events.iter().find_map(|e| match &e.kind {
        EventKind::ExecutionTerminated { input } => Some(input.clone()),
        _ => None,
    });
    match terminate {
        Some(reason) if row.runtime_status == RuntimeStatus::Pending => {
            let mut state = state_of(row, now);
            state.runtime_status = RuntimeStatus::Terminated;
            state.output = reason;
            state.completed_time = Some(now);
            Plan::Commit(Box::new(OrchestrationCommit {
                history: HistoryWrite::Append(Vec::new()),
                state: Some(state),
                messages: Vec::new(),
                new_instances: Vec::new(),
                activities: Vec::new(),
            }))
        }
        // The start is still on its way: a scheduled start, or the next execution of an
        // instance that continued as new (a queue may deliver its carried-over events first).
        _ if matches!(
            row.runtime_status,
            RuntimeStatus::Pending | RuntimeStatus::ContinuedAsNew
        ) =>
        {
            Plan::Retry(Duration::from_secs(1))
        }
        _ => discard(),
    }
}

/// Consumes the messages and changes nothing else.
fn discard() -> Plan {
    Plan::Commit(Box::new(OrchestrationCommit {
        history: HistoryWrite::Append(Vec::new()),
        state: None,
        messages: Vec::new(),
        new_instances: Vec::new(),
        activities: Vec::new(),
    }))
}

fn state_of(row: &InstanceRecord, now: DateTime<Utc>) -> InstanceState {
    InstanceState {
        name: row.name.clone(),
        version: row.version.clone(),
        execution_id: row.execution_id.clone(),
        runtime_status: row.runtime_status,
        input: row.input.clone(),
        output: row.output.clone(),
        custom_status: row.custom_status.clone(),
        created_time: row.created_time,
        last_updated_time: now,
        completed_time: row.completed_time,
        parent_instance_id: row.parent_instance_id.clone(),
        tags: row.tags.clone(),
    }
}

fn commit_for(
    row: &InstanceRecord,
    result: EpisodeResult,
    write: impl FnOnce(Vec<HistoryEvent>) -> HistoryWrite,
    history: &[HistoryEvent],
    now: DateTime<Utc>,
) -> OrchestrationCommit {
    let parent = history
        .iter()
        .chain(&result.new_events)
        .find_map(|e| match &e.kind {
            EventKind::ExecutionStarted {
                parent_instance, ..
            } => parent_instance.clone(),
            _ => None,
        });
    let exec = row.execution_id.clone();
    let mut state = state_of(row, now);
    state.name = result.name.clone();
    state.input = result.input.clone();
    state.custom_status = result.custom_status.clone();
    state.runtime_status = result.outcome.runtime_status(result.suspended);
    state.parent_instance_id = parent.as_ref().map(|p| p.instance_id.clone());
    state.completed_time = result.outcome.is_terminal().then_some(now);

    let mut messages = Vec::new();
    let mut new_instances = Vec::new();
    let mut activities = Vec::new();
    for action in &result.actions {
        match action.clone() {
            Action::ScheduleActivity { id, name, input } => activities.push(ActivityRequest {
                instance_id: row.instance_id.clone(),
                execution_id: exec.clone(),
                task_id: id,
                name,
                input,
                attempt: attempt_of(history, id),
            }),
            Action::CreateTimer { id, fire_at } => messages.push(OrchestrationMessage {
                instance_id: row.instance_id.clone(),
                execution_id: Some(exec.clone()),
                event: HistoryEvent::new(
                    -1,
                    now,
                    EventKind::TimerFired {
                        timer_id: id,
                        fire_at,
                    },
                ),
                visible_at: Some(fire_at),
            }),
            Action::StartSubOrchestration {
                id,
                name,
                instance_id,
                input,
            } => match InstanceId::parse(instance_id) {
                Ok(child) => new_instances.push(NewInstance {
                    instance_id: child,
                    name,
                    version: String::new(),
                    execution_id: new_guid_n(),
                    input,
                    created_time: now,
                    scheduled_start_time: None,
                    parent: Some(ParentInstance {
                        name: result.name.clone(),
                        instance_id: row.instance_id.clone(),
                        execution_id: exec.clone(),
                        task_scheduled_id: id,
                    }),
                    tags: Default::default(),
                }),
                Err(e) => messages.push(OrchestrationMessage {
                    instance_id: row.instance_id.clone(),
                    execution_id: Some(exec.clone()),
                    event: failure_event(id, FailureDetails::new("InvalidInstanceId", e.0), now),
                    visible_at: None,
                }),
            },
            Action::SendEvent {
                instance_id,
                name,
                input,
                ..
            } => messages.push(OrchestrationMessage {
                instance_id,
                execution_id: None,
                event: HistoryEvent::new(-1, now, EventKind::EventRaised { name, input }),
                visible_at: None,
            }),
        }
    }

    match &result.outcome {
        Outcome::Running => {}
        Outcome::Completed { output } => state.output = output.clone(),
        Outcome::Failed { failure } => {
            state.output = Some(
                serde_json::Value::String(format!(
                    "Orchestrator function '{}' failed: {}",
                    result.name, failure.error_message
                ))
                .to_string(),
            )
        }
        Outcome::Terminated { reason } => state.output = reason.clone(),
        Outcome::ContinuedAsNew { input, carryover } => {
            // The next execution starts from a message to itself, as DTFx does; the old
            // execution's history is replaced by the new one's.
            let next = new_guid_n();
            state.output = input.clone();
            state.execution_id = next.clone();
            messages.push(OrchestrationMessage {
                instance_id: row.instance_id.clone(),
                execution_id: Some(next.clone()),
                event: HistoryEvent::new(
                    -1,
                    now,
                    EventKind::ExecutionStarted {
                        name: result.name.clone(),
                        version: row.version.clone(),
                        execution_id: next.clone(),
                        input: input.clone(),
                        parent_instance: parent.clone(),
                        scheduled_start_time: None,
                        generation: 0,
                    },
                ),
                visible_at: None,
            });
            for e in carryover {
                messages.push(OrchestrationMessage {
                    instance_id: row.instance_id.clone(),
                    execution_id: Some(next.clone()),
                    event: e.clone(),
                    visible_at: None,
                });
            }
            return OrchestrationCommit {
                history: HistoryWrite::Replace(Vec::new()),
                state: Some(state),
                messages,
                new_instances,
                activities: Vec::new(),
            };
        }
    }

    if result.outcome.is_terminal() {
        if let Some(p) = &parent {
            messages.push(OrchestrationMessage {
                instance_id: p.instance_id.clone(),
                execution_id: Some(p.execution_id.clone()),
                event: match &result.outcome {
                    Outcome::Completed { output } => HistoryEvent::new(
                        -1,
                        now,
                        EventKind::SubOrchestrationInstanceCompleted {
                            task_scheduled_id: p.task_scheduled_id,
                            result: output.clone(),
                        },
                    ),
                    Outcome::Failed { failure } => {
                        failure_event(p.task_scheduled_id, failure.clone(), now)
                    }
                    _ => failure_event(
                        p.task_scheduled_id,
                        FailureDetails::new(
                            "SubOrchestrationTerminated",
                            format!("The sub-orchestration '{}' was terminated", row.instance_id),
                        ),
                        now,
                    ),
                },
                visible_at: None,
            });
        }
    }

    OrchestrationCommit {
        history: write(result.new_events),
        state: Some(state),
        messages,
        new_instances,
        activities,
    }
}

fn failure_event(task_id: i32, failure: FailureDetails, now: DateTime<Utc>) -> HistoryEvent {
    HistoryEvent::new(
        -1,
        now,
        EventKind::SubOrchestrationInstanceFailed {
            task_scheduled_id: task_id,
            reason: Some(failure.error_message.clone()),
            details: None,
            failure_details: Some(failure),
        },
    )
}
