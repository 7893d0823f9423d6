//! Each branch of an episode, from a canned work item to its plan. The histories are written out
//! in each test's comment; no store and no orchestrator code are involved beyond a tiny registry.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::context::Action;
use super::episode::{
    commit, plan, prepare, remote_result, replay_locally, Plan, RemoteDecision, Step,
};
use super::registry::Registry;
use super::replay::Outcome;
use crate::model::{EventKind, EventType, FailureDetails, HistoryEvent, RuntimeStatus};
use crate::store::{
    HistoryWrite, InstanceRecord, OrchestrationCommit, OrchestrationMessage, OrchestrationWorkItem,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn ev(id: i32, kind: EventKind) -> HistoryEvent {
    HistoryEvent::new(id, t(0), kind)
}

fn started(execution_id: &str) -> HistoryEvent {
    ev(
        -1,
        EventKind::ExecutionStarted {
            name: "Orch".into(),
            version: String::new(),
            execution_id: execution_id.into(),
            input: Some("1".into()),
            parent_instance: None,
            scheduled_start_time: None,
            generation: 0,
        },
    )
}

fn raised(name: &str) -> HistoryEvent {
    ev(
        -1,
        EventKind::EventRaised {
            name: name.into(),
            input: None,
        },
    )
}

fn scheduled(id: i32) -> HistoryEvent {
    ev(
        id,
        EventKind::TaskScheduled {
            name: "Act".into(),
            input: None,
        },
    )
}

fn failed(id: i32) -> HistoryEvent {
    ev(
        -1,
        EventKind::TaskFailed {
            task_scheduled_id: id,
            reason: Some("boom".into()),
            details: None,
            failure_details: Some(FailureDetails::new("Err", "boom")),
        },
    )
}

fn row(status: RuntimeStatus) -> InstanceRecord {
    InstanceRecord {
        instance_id: "i".into(),
        name: "Orch".into(),
        version: String::new(),
        execution_id: "e1".into(),
        runtime_status: status,
        input: Some("1".into()),
        output: None,
        custom_status: None,
        created_time: t(0),
        last_updated_time: t(0),
        completed_time: None,
        parent_instance_id: None,
        tags: Default::default(),
    }
}

fn message(event: HistoryEvent, execution_id: Option<&str>) -> OrchestrationMessage {
    OrchestrationMessage {
        instance_id: "i".into(),
        execution_id: execution_id.map(str::to_string),
        event,
        visible_at: None,
    }
}

fn item(
    row: Option<InstanceRecord>,
    history: Vec<HistoryEvent>,
    messages: Vec<OrchestrationMessage>,
) -> OrchestrationWorkItem {
    OrchestrationWorkItem {
        instance_id: "i".into(),
        lock_token: "lock".into(),
        instance: row,
        history: Arc::new(history),
        messages,
    }
}

fn committed(plan: Plan) -> OrchestrationCommit {
    match plan {
        Plan::Commit(c) => *c,
        Plan::Retry(after) => panic!("expected a commit, got a retry after {after:?}"),
    }
}

fn decided(step: Step) -> super::episode::Episode {
    match step {
        Step::Decide(e) => *e,
        Step::Done(p) => panic!("expected an episode to decide, got {p:?}"),
    }
}

fn is_discard(c: &OrchestrationCommit) -> bool {
    c.state.is_none()
        && c.history == HistoryWrite::Append(Vec::new())
        && c.messages.is_empty()
        && c.activities.is_empty()
}

fn types(events: &[HistoryEvent]) -> Vec<EventType> {
    events.iter().map(HistoryEvent::event_type).collect()
}

/// No row: `EventRaised` for a purged instance. The message is consumed, nothing is written.
#[test]
fn messages_for_an_instance_without_a_row_are_discarded() {
    let step = prepare(&item(None, vec![], vec![message(raised("E"), None)]), t(1));
    match step {
        Step::Done(p) => assert!(is_discard(&committed(p))),
        Step::Decide(_) => panic!("nothing to decide"),
    }
}

/// Row Completed; history `ExecutionStarted`, …; new `EventRaised`. Too late: discarded.
#[test]
fn messages_for_a_finished_instance_are_discarded() {
    let w = item(
        Some(row(RuntimeStatus::Completed)),
        vec![started("e1")],
        vec![message(raised("E"), None)],
    );
    match prepare(&w, t(1)) {
        Step::Done(p) => assert!(is_discard(&committed(p))),
        Step::Decide(_) => panic!("a finished instance runs nothing"),
    }
}

/// Row Terminated before it ever started; the scheduled start arrives later: it never runs.
#[test]
fn a_start_that_arrives_after_a_terminate_is_discarded() {
    let w = item(
        Some(row(RuntimeStatus::Terminated)),
        vec![],
        vec![message(started("e1"), Some("e1"))],
    );
    match prepare(&w, t(1)) {
        Step::Done(p) => assert!(is_discard(&committed(p))),
        Step::Decide(_) => panic!("a terminated instance must not start"),
    }
}

/// Row Pending, no history; new `EventRaised` only (the start is scheduled for later): wait.
/// The same for a row that continued as new while its next start is still in a queue.
#[test]
fn events_before_the_start_wait_for_it() {
    for status in [RuntimeStatus::Pending, RuntimeStatus::ContinuedAsNew] {
        let w = item(Some(row(status)), vec![], vec![message(raised("E"), None)]);
        match prepare(&w, t(1)) {
            Step::Done(Plan::Retry(_)) => {}
            other => panic!("{status}: expected a retry, got {other:?}"),
        }
    }
}

/// Row Pending, no history; new `ExecutionTerminated`: terminated without running.
#[test]
fn a_terminate_before_the_start_ends_the_instance_without_running_it() {
    let terminate = ev(
        -1,
        EventKind::ExecutionTerminated {
            input: Some("\"stop\"".into()),
        },
    );
    let w = item(
        Some(row(RuntimeStatus::Pending)),
        vec![],
        vec![message(terminate, None)],
    );
    let Step::Done(p) = prepare(&w, t(1)) else {
        panic!("nothing to run")
    };
    let state = committed(p).state.expect("the row changes");
    assert_eq!(state.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(state.output.as_deref(), Some("\"stop\""));
}

/// Row Running (execution e1); new: `TimerFired` for execution e0 (gone), `EventRaised`.
/// Only the event for the current execution is applied.
#[test]
fn results_for_an_execution_that_is_gone_are_dropped() {
    let timer = ev(
        -1,
        EventKind::TimerFired {
            timer_id: 0,
            fire_at: t(0),
        },
    );
    let w = item(
        Some(row(RuntimeStatus::Running)),
        vec![started("e1")],
        vec![message(timer, Some("e0")), message(raised("E"), None)],
    );
    let episode = decided(prepare(&w, t(1)));
    assert_eq!(types(&episode.new_events), vec![EventType::EventRaised]);
}

/// Row Pending, no history; queued: `EventRaised` (sent while the last execution continued as
/// new), then `ExecutionStarted` e1. The start leads, so the orchestrator exists to receive it.
#[test]
fn an_executions_start_leads_the_events_of_its_first_episode() {
    let w = item(
        Some(row(RuntimeStatus::Pending)),
        vec![],
        vec![
            message(raised("E"), None),
            message(started("e1"), Some("e1")),
        ],
    );
    let episode = decided(prepare(&w, t(1)));
    assert_eq!(
        types(&episode.new_events),
        vec![EventType::ExecutionStarted, EventType::EventRaised]
    );
    assert_eq!(episode.name, "Orch");
}

/// Row Failed; history `ExecutionStarted`, `TaskScheduled#0`, `TaskFailed(0)`,
/// `ExecutionCompleted(Failed)`; new `ExecutionRewound`. The episode replays the rewound history
/// (failed steps marked `Rewound: …`) with the rewind first, and the commit replaces the history.
#[test]
fn a_rewind_replays_the_rewound_history_and_replaces_it() {
    let completed = ev(
        -1,
        EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Failed,
            result: Some("boom".into()),
            failure_details: Some(FailureDetails::new("Err", "boom")),
        },
    );
    let rewind = ev(-1, EventKind::ExecutionRewound { reason: None });
    let w = item(
        Some(row(RuntimeStatus::Failed)),
        vec![started("e1"), scheduled(0), failed(0), completed],
        vec![message(rewind, None)],
    );
    let episode = decided(prepare(&w, t(1)));
    assert_eq!(
        types(&episode.new_events),
        vec![EventType::ExecutionRewound]
    );
    assert_eq!(
        types(&episode.history),
        vec![
            EventType::ExecutionStarted,
            EventType::GenericEvent,
            EventType::GenericEvent,
            EventType::GenericEvent
        ]
    );
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        RemoteDecision {
            actions: vec![Action::ScheduleActivity {
                id: 0,
                name: "Act".into(),
                input: None,
            }],
            ..RemoteDecision::default()
        },
        t(2),
    );
    let c = committed(commit(&episode, result, t(2)));
    match &c.history {
        HistoryWrite::Replace(all) => assert_eq!(
            types(&all[4..]),
            vec![
                EventType::OrchestratorStarted,
                EventType::ExecutionRewound,
                EventType::TaskScheduled,
                EventType::OrchestratorCompleted
            ]
        ),
        other => panic!("a rewind replaces the history, got {other:?}"),
    }
    assert_eq!(c.activities.len(), 1);
    assert_eq!(c.activities[0].attempt, 2, "the rewound schedule counts");
}

fn running_episode(history: Vec<HistoryEvent>) -> super::episode::Episode {
    decided(prepare(
        &item(
            Some(row(RuntimeStatus::Running)),
            history,
            vec![message(raised("Go"), None)],
        ),
        t(1),
    ))
}

/// History `ExecutionStarted`; new `EventRaised`; the worker schedules activity 0 and a timer 1.
/// The new events are OrchestratorStarted, the event, the two scheduled events and
/// OrchestratorCompleted; the commit carries the activity and the timer message.
#[test]
fn a_workers_actions_become_history_activities_and_timers() {
    let episode = running_episode(vec![started("e1")]);
    let decision = RemoteDecision {
        actions: vec![
            Action::CreateTimer {
                id: 1,
                fire_at: t(60),
            },
            Action::ScheduleActivity {
                id: 0,
                name: "Act".into(),
                input: Some("2".into()),
            },
        ],
        custom_status: Some("\"busy\"".into()),
        ..RemoteDecision::default()
    };
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        decision,
        t(2),
    );
    assert_eq!(
        types(&result.new_events),
        vec![
            EventType::OrchestratorStarted,
            EventType::EventRaised,
            EventType::TaskScheduled,
            EventType::TimerCreated,
            EventType::OrchestratorCompleted
        ]
    );
    let c = committed(commit(&episode, result, t(2)));
    let state = c.state.expect("row");
    assert_eq!(state.runtime_status, RuntimeStatus::Running);
    assert_eq!(state.custom_status.as_deref(), Some("\"busy\""));
    assert_eq!(c.activities[0].task_id, 0);
    assert_eq!(c.messages[0].visible_at, Some(t(60)));
}

/// History `ExecutionStarted`, `TaskScheduled#0` (no result yet); the worker schedules id 0
/// again: a contradiction, so the instance fails with the reason.
#[test]
fn an_answer_reusing_an_outstanding_id_fails_the_instance() {
    let episode = running_episode(vec![started("e1"), scheduled(0)]);
    let decision = RemoteDecision {
        actions: vec![Action::ScheduleActivity {
            id: 0,
            name: "Act".into(),
            input: None,
        }],
        ..RemoteDecision::default()
    };
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        decision,
        t(2),
    );
    match &result.outcome {
        Outcome::Failed { failure } => {
            assert_eq!(failure.error_type, "NonDeterministicOrchestration");
            assert!(failure.error_message.contains("action id 0"));
        }
        other => panic!("{other:?}"),
    }
    assert!(result.actions.is_empty());
}

/// History `ExecutionStarted`, `TaskScheduled#0`, `TaskFailed(0)`; the worker schedules id 0
/// again: that is a retry, and it is applied.
#[test]
fn an_answer_may_retry_a_task_that_has_its_result() {
    let episode = running_episode(vec![started("e1"), scheduled(0), failed(0)]);
    let decision = RemoteDecision {
        actions: vec![Action::ScheduleActivity {
            id: 0,
            name: "Act".into(),
            input: None,
        }],
        ..RemoteDecision::default()
    };
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        decision,
        t(2),
    );
    assert_eq!(result.outcome, Outcome::Running);
    assert_eq!(result.actions.len(), 1);
}

/// History `ExecutionStarted`, `ExecutionSuspended`; new `EventRaised`: still suspended.
#[test]
fn a_suspended_instance_stays_suspended_through_a_remote_episode() {
    let suspended = ev(-1, EventKind::ExecutionSuspended { reason: None });
    let episode = running_episode(vec![started("e1"), suspended]);
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        RemoteDecision::default(),
        t(2),
    );
    assert!(result.suspended);
    let state = committed(commit(&episode, result, t(2)))
        .state
        .expect("row");
    assert_eq!(state.runtime_status, RuntimeStatus::Suspended);
}

/// The worker completes with continue-as-new and one carried-over event: the history is replaced
/// by nothing, and the next execution starts from a message to itself followed by the event.
#[test]
fn continue_as_new_starts_the_next_execution_with_the_carried_events() {
    let episode = running_episode(vec![started("e1")]);
    let decision = RemoteDecision {
        completion: Some(Outcome::ContinuedAsNew {
            input: Some("2".into()),
            carryover: vec![raised("Kept")],
        }),
        ..RemoteDecision::default()
    };
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        decision,
        t(2),
    );
    let c = committed(commit(&episode, result, t(2)));
    assert_eq!(c.history, HistoryWrite::Replace(Vec::new()));
    let state = c.state.expect("row");
    assert_eq!(state.runtime_status, RuntimeStatus::ContinuedAsNew);
    assert_ne!(state.execution_id, "e1");
    assert_eq!(
        types(
            &c.messages
                .iter()
                .map(|m| m.event.clone())
                .collect::<Vec<_>>()
        ),
        vec![EventType::ExecutionStarted, EventType::EventRaised]
    );
    assert!(c
        .messages
        .iter()
        .all(|m| m.execution_id.as_deref() == Some(state.execution_id.as_str())));
}

/// The same work item decided in process: a registered orchestrator runs through replay.
#[test]
fn a_registered_orchestrator_is_decided_in_process() {
    let mut registry = Registry::new();
    registry.orchestrator("Orch", |_ctx| async { Ok(Value::from(7)) });
    let w = item(
        Some(row(RuntimeStatus::Pending)),
        vec![],
        vec![message(started("e1"), Some("e1"))],
    );
    let episode = decided(prepare(&w, t(1)));
    assert_eq!(
        replay_locally(&registry, &episode, t(1)).outcome,
        Outcome::Completed {
            output: Some("7".into())
        }
    );
    let state = committed(plan(&registry, &w, t(1))).state.expect("row");
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert_eq!(state.output.as_deref(), Some("7"));
}

/// History `ExecutionStarted`; new `EventRaised`; the worker answers with one more new step than
/// an episode may have. Nothing of the answer is written: the instance fails with the reason.
#[test]
fn a_worker_answer_with_more_steps_than_allowed_fails_the_instance() {
    let episode = running_episode(vec![started("e1")]);
    let actions = (0..=super::replay::MAX_NEW_ACTIONS as i32)
        .map(|id| Action::ScheduleActivity {
            id,
            name: "Act".into(),
            input: None,
        })
        .collect();
    let result = remote_result(
        &episode,
        ev(-1, EventKind::OrchestratorStarted),
        RemoteDecision {
            actions,
            ..RemoteDecision::default()
        },
        t(2),
    );
    let c = committed(commit(&episode, result, t(2)));
    assert!(c.activities.is_empty());
    let state = c.state.expect("the row is updated");
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    let output = state.output.unwrap();
    assert!(output.contains("at most 50000 are allowed"), "{output}");
}
