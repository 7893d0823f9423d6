//! From a locked work item to the commit that applies it: which messages count, what replay
//! decided, and which rows, messages and activities follow. Pure, so it is tested without a
//! store.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::context::Action;
use super::registry::Registry;
use super::replay::{attempt_of, ended_as, rewind_history, run_episode, EpisodeResult, Outcome};
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

pub fn plan(registry: &Registry, item: &OrchestrationWorkItem, now: DateTime<Utc>) -> Plan {
    let history: &[HistoryEvent] = &item.history;
    let Some(row) = &item.instance else {
        // Messages for an instance that does not exist (purged, or never created): drop them.
        return discard();
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
                if !started && *execution_id == row.execution_id {
                    new_events.push(m.event.clone());
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
            return plan_rewind(registry, item, row, rewind_event, new_events, now);
        }
    }
    // Only the row decides that an execution is over. A history that ended under a row that
    // did not (a crash between the two writes of a checkpoint) is replayed, which writes the
    // row it should have had.
    if row.runtime_status.is_terminal() && started {
        return discard();
    }
    let starting = new_events
        .iter()
        .any(|e| matches!(e.kind, EventKind::ExecutionStarted { .. }));
    if !started && !starting {
        return plan_before_start(row, &new_events, now);
    }
    let orchestrator = registry.get_orchestrator(&started_name(history, &new_events));
    let result = run_episode(orchestrator, &item.instance_id, history, &new_events, now);
    Plan::Commit(Box::new(commit_for(
        row,
        result,
        HistoryWrite::Append,
        history,
        now,
    )))
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

fn plan_rewind(
    registry: &Registry,
    item: &OrchestrationWorkItem,
    row: &InstanceRecord,
    rewind_event: HistoryEvent,
    mut new_events: Vec<HistoryEvent>,
    now: DateTime<Utc>,
) -> Plan {
    let rewound = rewind_history(&item.history);
    new_events.insert(0, rewind_event.clone());
    let orchestrator = registry.get_orchestrator(&started_name(&rewound.history, &[]));
    let result = run_episode(
        orchestrator,
        &item.instance_id,
        &rewound.history,
        &new_events,
        now,
    );
    let mut commit = commit_for(
        row,
        result,
        |events| {
            let mut all = rewound.history.clone();
            all.extend(events);
            HistoryWrite::Replace(all)
        },
        &rewound.history,
        now,
    );
    for child in rewound.failed_children {
        commit.messages.push(OrchestrationMessage {
            instance_id: child,
            execution_id: None,
            event: HistoryEvent::new(-1, now, rewind_event.kind.clone()),
            visible_at: None,
        });
    }
    Plan::Commit(Box::new(commit))
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
        _ if row.runtime_status == RuntimeStatus::Pending => Plan::Retry(Duration::from_secs(1)),
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
