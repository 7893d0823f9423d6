//! Every built-in sample, and every instance operation, end to end on a real SQLite file.

mod common;

use common::{finish, test_hub, test_hub_with, until};
use serde_json::{json, Value};
use taskhub::client::ClientError;
use taskhub::model::{EventKind, InstanceId, RuntimeStatus};

fn output(s: &taskhub::store::InstanceRecord) -> Value {
    serde_json::from_str(s.output.as_deref().unwrap_or("null")).unwrap()
}

fn id(s: &str) -> Option<InstanceId> {
    Some(InstanceId::parse(s).unwrap())
}

#[tokio::test]
async fn hello_sequence_and_its_alias_complete_with_three_greetings() {
    let h = test_hub();
    for name in ["HelloSequence", "E1_HelloSequence"] {
        let i = h.client.start(name, None, Value::Null).await.unwrap();
        let s = finish(&h.client, i.as_str(), 20).await;
        assert_eq!(s.runtime_status, RuntimeStatus::Completed);
        assert_eq!(
            output(&s),
            json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
        );
        assert_eq!(s.name, name);
    }
}

#[tokio::test]
async fn hello_cities5_calls_five_activities() {
    let h = test_hub();
    let i = h
        .client
        .start("HelloCities5", None, Value::Null)
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 20).await;
    assert_eq!(output(&s).as_array().unwrap().len(), 5);
    let history = h.client.history(i.as_str()).await.unwrap();
    let completed = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TaskCompleted { .. }))
        .count();
    assert_eq!(completed, 5);
}

#[tokio::test]
async fn slow_sequence_sleeps_three_times_in_sequence() {
    let h = test_hub();
    let started = std::time::Instant::now();
    let i = h
        .client
        .start("SlowSequence", None, json!("200"))
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 20).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&s), json!([200, 200, 200]));
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    // One after the other: each Sleep is scheduled only once the previous one completed.
    let history = h.client.history(i.as_str()).await.unwrap();
    let steps: Vec<&str> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskScheduled { name, .. } => Some(name.as_str()),
            EventKind::TaskCompleted { .. } => Some("done"),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        ["Sleep", "done", "Sleep", "done", "Sleep", "done"],
        "{history:?}"
    );

    // Zero does not sleep at all (the clamp to a minute is a unit test); a non-number fails.
    let j = h
        .client
        .start("SlowSequence", None, json!(0))
        .await
        .unwrap();
    assert_eq!(
        output(&finish(&h.client, j.as_str(), 20).await),
        json!([0, 0, 0])
    );
    let k = h
        .client
        .start("SlowSequence", None, json!("soon"))
        .await
        .unwrap();
    let s = finish(&h.client, k.as_str(), 20).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Failed);
    assert!(s.output.unwrap().contains("non-negative number"));
}

#[tokio::test]
async fn fan_out_fan_in_sums_parallel_results_and_accepts_numbers_as_strings() {
    let h = test_hub();
    let a = h
        .client
        .start("FanOutFanIn", None, json!(10))
        .await
        .unwrap();
    let b = h
        .client
        .start("FanOutFanIn", None, json!("30"))
        .await
        .unwrap();
    let c = h
        .client
        .start("FanOutFanIn", None, Value::Null)
        .await
        .unwrap();
    assert_eq!(output(&finish(&h.client, a.as_str(), 20).await), json!(55));
    assert_eq!(output(&finish(&h.client, b.as_str(), 20).await), json!(465));
    assert_eq!(output(&finish(&h.client, c.as_str(), 20).await), json!(55));
}

#[tokio::test]
async fn wait_for_approval_waits_then_takes_the_event() {
    let h = test_hub();
    let i = h
        .client
        .start("WaitForApproval", id("approval-1"), Value::Null)
        .await
        .unwrap();
    let s = until(&h.client, i.as_str(), 10, |s| {
        s.custom_status.as_deref() == Some("\"waiting\"")
    })
    .await;
    assert_eq!(s.runtime_status, RuntimeStatus::Running);
    h.client
        .raise_event(i.as_str(), "Approval", json!({"by": "ana"}))
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&s), json!({"by": "ana"}));
}

#[tokio::test]
async fn an_event_raised_before_the_orchestrator_waits_is_not_lost() {
    let h = test_hub();
    let i = h
        .client
        .start("WaitForApproval", None, Value::Null)
        .await
        .unwrap();
    // Raised while the instance is still Pending: the start and the event travel together.
    h.client
        .raise_event(i.as_str(), "approval", json!(1))
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&s), json!(1));
}

#[tokio::test]
async fn wait_for_approval_fails_when_its_timer_fires_first() {
    let h = test_hub();
    let i = h
        .client
        .start("WaitForApproval", None, json!(1))
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Failed);
    assert!(s.output.unwrap().contains("no Approval event arrived"));
}

#[tokio::test]
async fn long_timer_completes_after_its_durable_timer() {
    let h = test_hub();
    let started = std::time::Instant::now();
    let i = h.client.start("LongTimer", None, json!("1")).await.unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let history = h.client.history(i.as_str()).await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::TimerFired { .. })));
}

#[tokio::test]
async fn counter_continues_as_new_until_five() {
    let h = test_hub();
    let i = h.client.start("Counter", None, json!(0)).await.unwrap();
    let s = finish(&h.client, i.as_str(), 20).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&s), json!(5));
    // Only the last execution's history is kept, and it starts with the last input.
    let history = h.client.history(i.as_str()).await.unwrap();
    let input = history.iter().find_map(|e| match &e.kind {
        EventKind::ExecutionStarted { input, .. } => input.clone(),
        _ => None,
    });
    assert_eq!(input.as_deref(), Some("5"));
}

#[tokio::test]
async fn parent_child_runs_a_sub_orchestration() {
    let h = test_hub();
    let i = h
        .client
        .start("ParentChild", id("parent-1"), Value::Null)
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 20).await;
    assert_eq!(
        output(&s),
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    let child = h.client.status("parent-1:0000").await.unwrap();
    assert_eq!(child.runtime_status, RuntimeStatus::Completed);
    assert_eq!(child.parent_instance_id.as_deref(), Some("parent-1"));
}

#[tokio::test]
async fn rewinding_a_parent_rewinds_its_failed_sub_orchestration() {
    let mut reg = taskhub::samples::registry();
    reg.orchestrator(
        "ParentOfFlaky",
        |ctx: taskhub::engine::OrchestrationContext| async move {
            let child = format!("{}-child", ctx.instance_id());
            Ok(ctx
                .call_sub_orchestrator("FailAtStep", Some(&child), Value::Null)
                .await?)
        },
    );
    let h = test_hub_with(reg);
    let i = h
        .client
        .start("ParentOfFlaky", id("parent-2"), Value::Null)
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Failed, "{s:?}");
    let child = h.client.status("parent-2-child").await.unwrap();
    assert_eq!(child.runtime_status, RuntimeStatus::Failed);

    h.client.rewind(i.as_str(), None).await.unwrap();
    let s = until(&h.client, i.as_str(), 10, |s| {
        s.runtime_status == RuntimeStatus::Completed
    })
    .await;
    assert_eq!(output(&s), json!("ok"));
    let child = h.client.status("parent-2-child").await.unwrap();
    assert_eq!(child.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&child), json!("ok"));
}

#[tokio::test]
async fn fail_at_step_fails_then_completes_after_rewind() {
    let h = test_hub();
    let i = h
        .client
        .start("FailAtStep", None, Value::Null)
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Failed);
    assert!(s.output.unwrap().contains("first attempt"));

    h.client
        .rewind(i.as_str(), Some("try again".into()))
        .await
        .unwrap();
    let s = until(&h.client, i.as_str(), 10, |s| {
        s.runtime_status == RuntimeStatus::Completed
    })
    .await;
    assert_eq!(output(&s), json!("ok"));
    // The failure is kept for audit, marked as rewound.
    let history = h.client.history(i.as_str()).await.unwrap();
    let rewound: Vec<_> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::GenericEvent { data: Some(d) } => Some(d.as_str()),
            _ => None,
        })
        .collect();
    assert!(rewound.contains(&"Rewound: TaskFailed"), "{rewound:?}");
    assert!(history
        .iter()
        .any(|e| matches!(e.kind, EventKind::ExecutionRewound { .. })));
}

/// A WaitForApproval instance that is Running (waiting for its event).
async fn start_waiting(h: &common::TestHub) -> InstanceId {
    let i = h
        .client
        .start("WaitForApproval", None, Value::Null)
        .await
        .unwrap();
    until(&h.client, i.as_str(), 10, |s| {
        s.runtime_status == RuntimeStatus::Running
    })
    .await;
    i
}

#[tokio::test]
async fn terminate_ends_a_waiting_instance_with_the_reason() {
    let h = test_hub();
    let i = start_waiting(&h).await;
    h.client
        .terminate(i.as_str(), Some("no longer needed".into()))
        .await
        .unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(output(&s), json!("no longer needed"));
    // A finished instance refuses further operations.
    assert!(matches!(
        h.client.terminate(i.as_str(), None).await,
        Err(ClientError::Gone { .. })
    ));
    assert!(matches!(
        h.client.raise_event(i.as_str(), "Approval", json!(1)).await,
        Err(ClientError::Gone { .. })
    ));
}

#[tokio::test]
async fn suspend_holds_events_until_resume() {
    let h = test_hub();
    let i = start_waiting(&h).await;
    h.client.suspend(i.as_str(), None).await.unwrap();
    until(&h.client, i.as_str(), 10, |s| {
        s.runtime_status == RuntimeStatus::Suspended
    })
    .await;
    assert!(matches!(
        h.client.suspend(i.as_str(), None).await,
        Err(ClientError::PreconditionFailed(_))
    ));
    h.client
        .raise_event(i.as_str(), "Approval", json!("yes"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        h.client.status(i.as_str()).await.unwrap().runtime_status,
        RuntimeStatus::Suspended
    );
    h.client.resume(i.as_str(), None).await.unwrap();
    let s = finish(&h.client, i.as_str(), 10).await;
    assert_eq!(s.runtime_status, RuntimeStatus::Completed);
    assert_eq!(output(&s), json!("yes"));
}

#[tokio::test]
async fn restart_runs_the_same_orchestration_again() {
    let h = test_hub();
    let i = h
        .client
        .start("FanOutFanIn", id("restart-me"), json!(3))
        .await
        .unwrap();
    finish(&h.client, i.as_str(), 10).await;
    let fresh = h.client.restart(i.as_str(), true).await.unwrap();
    assert_ne!(fresh, i);
    assert_eq!(
        output(&finish(&h.client, fresh.as_str(), 10).await),
        json!(6)
    );
    let same = h.client.restart(i.as_str(), false).await.unwrap();
    assert_eq!(same, i);
    assert_eq!(
        output(&finish(&h.client, same.as_str(), 10).await),
        json!(6)
    );
}

#[tokio::test]
async fn bad_requests_are_typed_errors_and_change_nothing() {
    let h = test_hub();
    assert!(matches!(
        h.client
            .start("NoSuchOrchestrator", id("x1"), Value::Null)
            .await,
        Err(ClientError::UnknownOrchestrator(_))
    ));
    assert!(h.client.try_status("x1").await.unwrap().is_none());
    assert!(matches!(
        h.client.status("missing").await,
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        h.client.raise_event("missing", "e", Value::Null).await,
        Err(ClientError::NotFound(_))
    ));

    let i = h
        .client
        .start("WaitForApproval", id("busy"), Value::Null)
        .await
        .unwrap();
    assert!(matches!(
        h.client
            .start("WaitForApproval", id("busy"), Value::Null)
            .await,
        Err(ClientError::AlreadyExists { .. })
    ));
    assert!(matches!(
        h.client.rewind(i.as_str(), None).await,
        Err(ClientError::PreconditionFailed(_))
    ));
    assert!(matches!(
        h.client.purge(i.as_str()).await,
        Err(ClientError::PreconditionFailed(_))
    ));
    assert!(matches!(
        h.client.resume(i.as_str(), None).await,
        Err(ClientError::PreconditionFailed(_))
    ));
    assert!(h.client.try_status("busy").await.unwrap().is_some());
}

#[tokio::test]
async fn purge_removes_finished_instances_one_or_by_filter() {
    let h = test_hub();
    let a = h
        .client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    let b = h
        .client
        .start("HelloSequence", None, Value::Null)
        .await
        .unwrap();
    finish(&h.client, a.as_str(), 10).await;
    finish(&h.client, b.as_str(), 10).await;
    assert_eq!(h.client.purge(a.as_str()).await.unwrap(), 1);
    assert!(h.client.try_status(a.as_str()).await.unwrap().is_none());
    assert!(h.client.history(a.as_str()).await.unwrap().is_empty());
    let filter = taskhub::store::InstanceFilter {
        statuses: vec![RuntimeStatus::Completed],
        ..Default::default()
    };
    assert_eq!(h.client.purge_by_filter(&filter).await.unwrap(), 1);
    assert!(h.client.try_status(b.as_str()).await.unwrap().is_none());
}

#[tokio::test]
async fn until_fails_at_its_deadline_when_the_instance_never_appears() {
    let h = test_hub();
    let client = h.client.clone();
    let waiting = tokio::spawn(async move { until(&client, "nobody", 1, |_| true).await });
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("until gives up at its deadline instead of waiting forever");
    let panic = ended.expect_err("until cannot succeed").into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, "nobody never appeared in 1s");
}
