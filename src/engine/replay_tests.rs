//! Replay against readable canned histories.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::context::{Action, OrchestrationContext};
use super::registry::{OrchestrationError, OrchestratorFn, Registry};
use super::replay::{attempt_of, rewind_history, run_episode, EpisodeResult, Outcome};
use crate::model::{EventKind, EventType, HistoryEvent, RuntimeStatus};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn ev(id: i32, kind: EventKind) -> HistoryEvent {
    HistoryEvent::new(id, t(0), kind)
}

fn started(name: &str, input: Value) -> HistoryEvent {
    ev(
        -1,
        EventKind::ExecutionStarted {
            name: name.into(),
            version: String::new(),
            execution_id: "e1".into(),
            input: Some(input.to_string()),
            parent_instance: None,
            scheduled_start_time: None,
            generation: 0,
        },
    )
}

fn orch_started(secs: i64) -> HistoryEvent {
    HistoryEvent::new(-1, t(secs), EventKind::OrchestratorStarted)
}

fn orch_completed() -> HistoryEvent {
    ev(-1, EventKind::OrchestratorCompleted)
}

fn scheduled(id: i32, name: &str, input: Value) -> HistoryEvent {
    ev(
        id,
        EventKind::TaskScheduled {
            name: name.into(),
            input: Some(input.to_string()),
        },
    )
}

fn completed(id: i32, result: Value) -> HistoryEvent {
    ev(
        -1,
        EventKind::TaskCompleted {
            task_scheduled_id: id,
            result: Some(result.to_string()),
        },
    )
}

fn failed(id: i32, message: &str) -> HistoryEvent {
    ev(
        -1,
        EventKind::TaskFailed {
            task_scheduled_id: id,
            reason: Some(message.into()),
            details: None,
            failure_details: Some(crate::model::FailureDetails::new(
                "ActivityFailure",
                message,
            )),
        },
    )
}

fn raised(name: &str, input: Value) -> HistoryEvent {
    ev(
        -1,
        EventKind::EventRaised {
            name: name.into(),
            input: Some(input.to_string()),
        },
    )
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.orchestrator("Sequence", |ctx: OrchestrationContext| async move {
        let mut out = Vec::new();
        for city in ["Tokyo", "Seattle", "London"] {
            out.push(ctx.call_activity("SayHello", city).await?);
        }
        Ok(json!(out))
    });
    r.orchestrator("Approval", |ctx: OrchestrationContext| async move {
        ctx.set_custom_status("waiting");
        let first = ctx.call_activity("Prepare", ()).await?;
        let approval = ctx.wait_for_external_event("Approval").await;
        Ok(json!([first, approval]))
    });
    r.orchestrator("Timed", |ctx: OrchestrationContext| async move {
        match ctx
            .wait_for_external_event_with_timeout("Approval", Duration::from_secs(60))
            .await
        {
            Some(v) => Ok(v),
            None => Err(OrchestrationError::new("timed out")),
        }
    });
    r.orchestrator("Counter", |ctx: OrchestrationContext| async move {
        let n: i64 = ctx.input()?;
        if n < 5 {
            ctx.continue_as_new(n + 1);
        }
        Ok(json!(n))
    });
    r.orchestrator("FanOut", |ctx: OrchestrationContext| async move {
        let n: usize = ctx.input()?;
        let calls: Vec<_> = (0..n).map(|i| ctx.call_activity("Work", i)).collect();
        futures::future::join_all(calls).await;
        Ok(Value::Null)
    });
    r.orchestrator("Guids", |ctx: OrchestrationContext| async move {
        let a = ctx.new_guid();
        let replaying = ctx.is_replaying();
        ctx.create_timer(ctx.current_utc_datetime()).await;
        Ok(json!([a, ctx.new_guid(), replaying, ctx.is_replaying()]))
    });
    r
}

fn run(name: &str, history: &[HistoryEvent], new: &[HistoryEvent]) -> EpisodeResult {
    let reg = registry();
    let f: &OrchestratorFn = reg.get_orchestrator(name).unwrap();
    run_episode(Some(f), "inst", history, new, t(100))
}

fn types(events: &[HistoryEvent]) -> Vec<EventType> {
    events.iter().map(HistoryEvent::event_type).collect()
}

#[test]
fn first_episode_schedules_the_first_activity() {
    let r = run("Sequence", &[], &[started("Sequence", Value::Null)]);
    assert_eq!(r.outcome, Outcome::Running);
    assert_eq!(
        r.actions,
        vec![Action::ScheduleActivity {
            id: 0,
            name: "SayHello".into(),
            input: Some("\"Tokyo\"".into())
        }]
    );
    assert_eq!(
        types(&r.new_events),
        vec![
            EventType::OrchestratorStarted,
            EventType::ExecutionStarted,
            EventType::TaskScheduled,
            EventType::OrchestratorCompleted
        ]
    );
    assert_eq!(r.new_events[0].timestamp, t(100));
    assert_eq!(r.name, "Sequence");
}

#[test]
fn a_completion_resumes_the_code_and_schedules_the_next_activity() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
    ];
    let r = run("Sequence", &history, &[completed(0, json!("Hello Tokyo!"))]);
    assert_eq!(r.outcome, Outcome::Running);
    assert_eq!(r.actions.len(), 1);
    assert!(
        matches!(&r.actions[0], Action::ScheduleActivity { id: 1, input, .. } if input.as_deref() == Some("\"Seattle\""))
    );
}

#[test]
fn the_last_completion_completes_with_the_output() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
        orch_started(1),
        completed(0, json!("Hello Tokyo!")),
        scheduled(1, "SayHello", json!("Seattle")),
        orch_completed(),
        orch_started(2),
        completed(1, json!("Hello Seattle!")),
        scheduled(2, "SayHello", json!("London")),
        orch_completed(),
    ];
    let r = run(
        "Sequence",
        &history,
        &[completed(2, json!("Hello London!"))],
    );
    assert_eq!(
        r.outcome,
        Outcome::Completed {
            output: Some(json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"]).to_string())
        }
    );
    assert!(r.actions.is_empty());
    let last = &r.new_events[r.new_events.len() - 2];
    assert!(matches!(
        &last.kind,
        EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Completed,
            ..
        }
    ));
}

#[test]
fn history_that_disagrees_with_the_code_is_a_non_determinism_failure() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SomethingElse", json!("Tokyo")),
        orch_completed(),
    ];
    let r = run("Sequence", &history, &[completed(0, json!("x"))]);
    match r.outcome {
        Outcome::Failed { failure } => {
            assert_eq!(failure.error_type, "NonDeterministicOrchestration");
            assert!(failure.error_message.contains("SomethingElse"));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn an_activity_failure_fails_the_orchestration_with_its_message() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
    ];
    let r = run("Sequence", &history, &[failed(0, "boom")]);
    match &r.outcome {
        Outcome::Failed { failure } => assert_eq!(failure.error_message, "boom"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(r.outcome.runtime_status(false), RuntimeStatus::Failed);
}

#[test]
fn an_event_raised_before_the_wait_is_buffered() {
    // The event arrives while the orchestrator still waits on its activity.
    let history = [
        orch_started(0),
        started("Approval", Value::Null),
        scheduled(0, "Prepare", Value::Null),
        orch_completed(),
    ];
    let r = run("Approval", &history, &[raised("approval", json!("yes"))]);
    assert_eq!(r.outcome, Outcome::Running);
    assert_eq!(r.custom_status.as_deref(), Some("\"waiting\""));
    let mut history = history.to_vec();
    history.extend(r.new_events);
    let r = run("Approval", &history, &[completed(0, json!("ready"))]);
    assert_eq!(
        r.outcome,
        Outcome::Completed {
            output: Some(json!(["ready", "yes"]).to_string())
        }
    );
}

#[test]
fn a_wait_with_timeout_takes_the_event_or_the_timer() {
    let r = run("Timed", &[], &[started("Timed", Value::Null)]);
    assert!(matches!(&r.actions[0], Action::CreateTimer { id: 0, fire_at } if *fire_at == t(160)));
    let history = r.new_events.clone();

    let by_event = run("Timed", &history, &[raised("Approval", json!(42))]);
    assert_eq!(
        by_event.outcome,
        Outcome::Completed {
            output: Some("42".into())
        }
    );

    let fired = ev(
        -1,
        EventKind::TimerFired {
            timer_id: 0,
            fire_at: t(160),
        },
    );
    let by_timer = run("Timed", &history, std::slice::from_ref(&fired));
    assert!(matches!(by_timer.outcome, Outcome::Failed { .. }));

    // An event after the timeout won is not handed to the abandoned waiter.
    let late = run("Timed", &history, &[fired, raised("Approval", json!(1))]);
    assert!(matches!(late.outcome, Outcome::Failed { .. }));
}

#[test]
fn terminate_stops_the_instance_with_the_reason() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
    ];
    let term = ev(
        -1,
        EventKind::ExecutionTerminated {
            input: Some("\"enough\"".into()),
        },
    );
    let r = run("Sequence", &history, &[term, completed(0, json!("late"))]);
    assert_eq!(
        r.outcome,
        Outcome::Terminated {
            reason: Some("\"enough\"".into())
        }
    );
    assert!(r.actions.is_empty());
    assert_eq!(
        types(&r.new_events),
        vec![
            EventType::OrchestratorStarted,
            EventType::ExecutionTerminated,
            EventType::ExecutionCompleted,
            EventType::OrchestratorCompleted
        ]
    );
}

#[test]
fn a_suspended_instance_defers_events_until_resumed() {
    let history = [
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
    ];
    let suspend = ev(-1, EventKind::ExecutionSuspended { reason: None });
    let r = run(
        "Sequence",
        &history,
        &[suspend, completed(0, json!("Hello Tokyo!"))],
    );
    assert!(r.suspended);
    assert!(r.actions.is_empty());
    assert_eq!(
        r.outcome.runtime_status(r.suspended),
        RuntimeStatus::Suspended
    );

    let mut history = history.to_vec();
    history.extend(r.new_events);
    let resume = ev(-1, EventKind::ExecutionResumed { reason: None });
    let r = run("Sequence", &history, &[resume]);
    assert!(!r.suspended);
    assert!(matches!(
        &r.actions[0],
        Action::ScheduleActivity { id: 1, .. }
    ));
}

#[test]
fn continue_as_new_carries_the_new_input_and_unawaited_events() {
    let r = run(
        "Counter",
        &[],
        &[started("Counter", json!(2)), raised("extra", json!("e"))],
    );
    match r.outcome {
        Outcome::ContinuedAsNew { input, carryover } => {
            assert_eq!(input.as_deref(), Some("3"));
            assert_eq!(carryover.len(), 1);
        }
        other => panic!("expected continue-as-new, got {other:?}"),
    }
    let done = run("Counter", &[], &[started("Counter", json!(5))]);
    assert_eq!(
        done.outcome,
        Outcome::Completed {
            output: Some("5".into())
        }
    );
}

#[test]
fn guids_are_stable_across_replays_and_replaying_is_reported() {
    let first = run("Guids", &[], &[started("Guids", Value::Null)]);
    let history = first.new_events.clone();
    let fired = ev(
        -1,
        EventKind::TimerFired {
            timer_id: 0,
            fire_at: t(100),
        },
    );
    let second = run("Guids", &history, &[fired]);
    let Outcome::Completed { output: Some(out) } = second.outcome else {
        panic!("expected completion");
    };
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_ne!(out[0], out[1]);
    assert_eq!(out[2], json!(true), "the first line ran during replay");
    assert_eq!(out[3], json!(false), "after the timer the code runs live");
    let again = run(
        "Guids",
        &history,
        &[ev(
            -1,
            EventKind::TimerFired {
                timer_id: 0,
                fire_at: t(100),
            },
        )],
    );
    assert_eq!(
        again.outcome,
        Outcome::Completed {
            output: Some(out.to_string())
        }
    );
}

#[test]
fn an_unknown_orchestrator_fails_clearly() {
    let r = run_episode(None, "inst", &[], &[started("Nope", Value::Null)], t(1));
    match r.outcome {
        Outcome::Failed { failure } => assert!(failure.error_message.contains("'Nope'")),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn rewind_marks_the_failure_and_replay_schedules_the_task_again() {
    let mut history = vec![
        orch_started(0),
        started("Sequence", Value::Null),
        scheduled(0, "SayHello", json!("Tokyo")),
        orch_completed(),
    ];
    let r = run("Sequence", &history, &[failed(0, "boom")]);
    history.extend(r.new_events);

    let rewound = rewind_history(&history);
    let markers: Vec<_> = rewound
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GenericEvent { data } => data.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        markers,
        vec![
            "Rewound: TaskScheduled",
            "Rewound: TaskFailed",
            "Rewound: ExecutionCompleted"
        ]
    );
    assert_eq!(rewound.history.len(), history.len(), "nothing is deleted");
    assert_eq!(attempt_of(&rewound.history, 0), 2);
    assert_eq!(attempt_of(&history, 0), 1);

    let rewind_event = ev(-1, EventKind::ExecutionRewound { reason: None });
    let r = run("Sequence", &rewound.history, &[rewind_event]);
    assert_eq!(r.outcome, Outcome::Running);
    assert!(matches!(
        &r.actions[0],
        Action::ScheduleActivity { id: 0, .. }
    ));
}

#[test]
fn an_episode_may_schedule_up_to_the_action_limit() {
    let n = super::replay::MAX_NEW_ACTIONS;
    let r = run("FanOut", &[], &[started("FanOut", json!(n))]);
    assert_eq!(r.outcome, Outcome::Running);
    assert_eq!(r.actions.len(), n);
}

/// Events: ExecutionStarted (input one more than the limit). The fan-out's steps are never
/// written: the instance fails with the reason, and its history ends there.
#[test]
fn an_episode_that_schedules_more_than_the_limit_fails_with_the_reason() {
    let n = super::replay::MAX_NEW_ACTIONS + 1;
    let r = run("FanOut", &[], &[started("FanOut", json!(n))]);
    let Outcome::Failed { failure } = &r.outcome else {
        panic!("expected a failure, got {:?}", r.outcome)
    };
    assert_eq!(failure.error_type, "TooManyActions");
    assert!(failure
        .error_message
        .contains(&format!("scheduled {n} new steps")));
    assert!(r.actions.is_empty());
    assert_eq!(
        types(&r.new_events),
        vec![
            EventType::OrchestratorStarted,
            EventType::ExecutionStarted,
            EventType::ExecutionCompleted,
            EventType::OrchestratorCompleted
        ]
    );
}
