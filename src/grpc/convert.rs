//! Between taskhub's vocabulary and the protocol's: history events, statuses, failures, instance
//! states, and a worker's orchestrator actions.
//!
//! One module, so the mapping is read and tested in one place: the SDKs replay the history they
//! receive and detect non-determinism by event id, so every event a worker sees must carry
//! exactly what was committed (ids, timestamps, TaskScheduled/TaskCompleted pairing, timer ids,
//! sub-orchestration ids). The round-trip tests below pin that.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::proto as pb;
use super::proto::history_event::EventType as Pe;
use super::proto::orchestrator_action::OrchestratorActionType as Pa;
use crate::engine::context::Action;
use crate::engine::episode::RemoteDecision;
use crate::engine::replay::Outcome;
use crate::model::{
    new_guid_n, EventKind, FailureDetails, HistoryEvent, ParentInstance, RuntimeStatus,
};
use crate::store::InstanceRecord;

pub(crate) fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for a timestamp outside chrono's range (a malformed request).
pub(crate) fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

pub(crate) fn status(s: RuntimeStatus) -> pb::OrchestrationStatus {
    use pb::OrchestrationStatus as P;
    match s {
        RuntimeStatus::Running => P::Running,
        RuntimeStatus::Completed => P::Completed,
        RuntimeStatus::ContinuedAsNew => P::ContinuedAsNew,
        RuntimeStatus::Failed => P::Failed,
        RuntimeStatus::Canceled => P::Canceled,
        RuntimeStatus::Terminated => P::Terminated,
        RuntimeStatus::Pending => P::Pending,
        RuntimeStatus::Suspended => P::Suspended,
    }
}

/// The protocol's numbers are DTFx's, which [`RuntimeStatus`] keeps.
pub(crate) fn status_from(n: i32) -> Option<RuntimeStatus> {
    RuntimeStatus::from_i32(n)
}

pub(crate) fn failure(f: &FailureDetails) -> pb::TaskFailureDetails {
    pb::TaskFailureDetails {
        error_type: f.error_type.clone(),
        error_message: f.error_message.clone(),
        stack_trace: f.stack_trace.clone(),
        inner_failure: f.inner_failure.as_deref().map(|i| Box::new(failure(i))),
        is_non_retriable: f.is_non_retriable,
    }
}

pub(crate) fn failure_from(f: &pb::TaskFailureDetails) -> FailureDetails {
    FailureDetails {
        error_type: f.error_type.clone(),
        error_message: f.error_message.clone(),
        stack_trace: f.stack_trace.clone(),
        inner_failure: f
            .inner_failure
            .as_deref()
            .map(|i| Box::new(failure_from(i))),
        is_non_retriable: f.is_non_retriable,
    }
}

/// A failed task's details as the protocol carries them: DTFx's structured details when the
/// event has them, else its reason.
fn task_failure(
    reason: &Option<String>,
    details: &Option<FailureDetails>,
) -> pb::TaskFailureDetails {
    match details {
        Some(f) => failure(f),
        None => pb::TaskFailureDetails {
            error_type: "TaskFailedException".into(),
            error_message: reason.clone().unwrap_or_default(),
            ..Default::default()
        },
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// One committed (or about to be applied) event, as a worker receives it. `instance_id` is the
/// instance the history belongs to: DTFx's ExecutionStarted does not repeat it, the protocol's does.
pub(crate) fn event(instance_id: &str, e: &HistoryEvent) -> pb::HistoryEvent {
    let event_type = match &e.kind {
        EventKind::ExecutionStarted {
            name,
            version,
            execution_id,
            input,
            parent_instance,
            scheduled_start_time,
            generation: _,
        } => Pe::ExecutionStarted(pb::ExecutionStartedEvent {
            name: name.clone(),
            version: non_empty(version),
            input: input.clone(),
            orchestration_instance: Some(pb::OrchestrationInstance {
                instance_id: instance_id.to_string(),
                execution_id: Some(execution_id.clone()),
            }),
            parent_instance: parent_instance.as_ref().map(|p| pb::ParentInstanceInfo {
                task_scheduled_id: p.task_scheduled_id,
                name: Some(p.name.clone()),
                version: None,
                orchestration_instance: Some(pb::OrchestrationInstance {
                    instance_id: p.instance_id.clone(),
                    execution_id: Some(p.execution_id.clone()),
                }),
            }),
            scheduled_start_timestamp: scheduled_start_time.map(timestamp),
            tags: Default::default(),
        }),
        EventKind::ExecutionCompleted {
            orchestration_status,
            result,
            failure_details,
        } => Pe::ExecutionCompleted(pb::ExecutionCompletedEvent {
            orchestration_status: status(*orchestration_status) as i32,
            result: result.clone(),
            failure_details: failure_details.as_ref().map(failure),
        }),
        EventKind::ExecutionTerminated { input } => {
            Pe::ExecutionTerminated(pb::ExecutionTerminatedEvent {
                input: input.clone(),
                recurse: false,
            })
        }
        EventKind::TaskScheduled { name, input } => Pe::TaskScheduled(pb::TaskScheduledEvent {
            name: name.clone(),
            version: None,
            input: input.clone(),
            tags: Default::default(),
        }),
        EventKind::TaskCompleted {
            task_scheduled_id,
            result,
        } => Pe::TaskCompleted(pb::TaskCompletedEvent {
            task_scheduled_id: *task_scheduled_id,
            result: result.clone(),
        }),
        EventKind::TaskFailed {
            task_scheduled_id,
            reason,
            failure_details,
            ..
        } => Pe::TaskFailed(pb::TaskFailedEvent {
            task_scheduled_id: *task_scheduled_id,
            failure_details: Some(task_failure(reason, failure_details)),
        }),
        EventKind::SubOrchestrationInstanceCreated {
            name,
            instance_id,
            input,
        } => Pe::SubOrchestrationInstanceCreated(pb::SubOrchestrationInstanceCreatedEvent {
            instance_id: instance_id.clone(),
            name: name.clone(),
            version: None,
            input: input.clone(),
            tags: Default::default(),
        }),
        EventKind::SubOrchestrationInstanceCompleted {
            task_scheduled_id,
            result,
        } => Pe::SubOrchestrationInstanceCompleted(pb::SubOrchestrationInstanceCompletedEvent {
            task_scheduled_id: *task_scheduled_id,
            result: result.clone(),
        }),
        EventKind::SubOrchestrationInstanceFailed {
            task_scheduled_id,
            reason,
            failure_details,
            ..
        } => Pe::SubOrchestrationInstanceFailed(pb::SubOrchestrationInstanceFailedEvent {
            task_scheduled_id: *task_scheduled_id,
            failure_details: Some(task_failure(reason, failure_details)),
        }),
        EventKind::TimerCreated { fire_at } => Pe::TimerCreated(pb::TimerCreatedEvent {
            fire_at: Some(timestamp(*fire_at)),
        }),
        EventKind::TimerFired { timer_id, fire_at } => Pe::TimerFired(pb::TimerFiredEvent {
            fire_at: Some(timestamp(*fire_at)),
            timer_id: *timer_id,
        }),
        EventKind::OrchestratorStarted => Pe::OrchestratorStarted(pb::OrchestratorStartedEvent {}),
        EventKind::OrchestratorCompleted => {
            Pe::OrchestratorCompleted(pb::OrchestratorCompletedEvent {})
        }
        EventKind::EventSent {
            instance_id,
            name,
            input,
        } => Pe::EventSent(pb::EventSentEvent {
            instance_id: instance_id.clone(),
            name: name.clone(),
            input: input.clone(),
        }),
        EventKind::EventRaised { name, input } => Pe::EventRaised(pb::EventRaisedEvent {
            name: name.clone(),
            input: input.clone(),
        }),
        EventKind::ContinueAsNew { result } => Pe::ContinueAsNew(pb::ContinueAsNewEvent {
            input: result.clone(),
        }),
        EventKind::GenericEvent { data } => {
            Pe::GenericEvent(pb::GenericEvent { data: data.clone() })
        }
        EventKind::ExecutionSuspended { reason } => {
            Pe::ExecutionSuspended(pb::ExecutionSuspendedEvent {
                input: reason.clone(),
            })
        }
        EventKind::ExecutionResumed { reason } => Pe::ExecutionResumed(pb::ExecutionResumedEvent {
            input: reason.clone(),
        }),
        EventKind::ExecutionRewound { reason } => Pe::ExecutionRewound(pb::ExecutionRewoundEvent {
            reason: reason.clone(),
        }),
    };
    pb::HistoryEvent {
        event_id: e.event_id,
        timestamp: Some(timestamp(e.timestamp)),
        event_type: Some(event_type),
    }
}

/// An event a worker sent (continue-as-new carries unprocessed events over), or why it cannot be
/// taken.
pub(crate) fn event_from(e: &pb::HistoryEvent) -> Result<HistoryEvent, String> {
    let timestamp = e
        .timestamp
        .as_ref()
        .and_then(from_timestamp)
        .unwrap_or_else(crate::model::now);
    let fire_at = |t: &Option<Timestamp>| {
        t.as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| "a timer event without a valid fireAt".to_string())
    };
    let kind = match e
        .event_type
        .as_ref()
        .ok_or("a history event without a type")?
    {
        Pe::ExecutionStarted(s) => {
            let instance = s.orchestration_instance.clone().unwrap_or_default();
            EventKind::ExecutionStarted {
                name: s.name.clone(),
                version: s.version.clone().unwrap_or_default(),
                execution_id: instance.execution_id.unwrap_or_default(),
                input: s.input.clone(),
                parent_instance: s.parent_instance.as_ref().map(|p| {
                    let pi = p.orchestration_instance.clone().unwrap_or_default();
                    ParentInstance {
                        name: p.name.clone().unwrap_or_default(),
                        instance_id: pi.instance_id,
                        execution_id: pi.execution_id.unwrap_or_default(),
                        task_scheduled_id: p.task_scheduled_id,
                    }
                }),
                scheduled_start_time: s
                    .scheduled_start_timestamp
                    .as_ref()
                    .and_then(from_timestamp),
                generation: 0,
            }
        }
        Pe::ExecutionCompleted(c) => EventKind::ExecutionCompleted {
            orchestration_status: status_from(c.orchestration_status)
                .ok_or("an unknown orchestration status")?,
            result: c.result.clone(),
            failure_details: c.failure_details.as_ref().map(failure_from),
        },
        Pe::ExecutionTerminated(t) => EventKind::ExecutionTerminated {
            input: t.input.clone(),
        },
        Pe::TaskScheduled(t) => EventKind::TaskScheduled {
            name: t.name.clone(),
            input: t.input.clone(),
        },
        Pe::TaskCompleted(t) => EventKind::TaskCompleted {
            task_scheduled_id: t.task_scheduled_id,
            result: t.result.clone(),
        },
        Pe::TaskFailed(t) => {
            let f = t.failure_details.as_ref().map(failure_from);
            EventKind::TaskFailed {
                task_scheduled_id: t.task_scheduled_id,
                reason: f.as_ref().map(|f| f.error_message.clone()),
                details: None,
                failure_details: f,
            }
        }
        Pe::SubOrchestrationInstanceCreated(s) => EventKind::SubOrchestrationInstanceCreated {
            name: s.name.clone(),
            instance_id: s.instance_id.clone(),
            input: s.input.clone(),
        },
        Pe::SubOrchestrationInstanceCompleted(s) => EventKind::SubOrchestrationInstanceCompleted {
            task_scheduled_id: s.task_scheduled_id,
            result: s.result.clone(),
        },
        Pe::SubOrchestrationInstanceFailed(s) => {
            let f = s.failure_details.as_ref().map(failure_from);
            EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id: s.task_scheduled_id,
                reason: f.as_ref().map(|f| f.error_message.clone()),
                details: None,
                failure_details: f,
            }
        }
        Pe::TimerCreated(t) => EventKind::TimerCreated {
            fire_at: fire_at(&t.fire_at)?,
        },
        Pe::TimerFired(t) => EventKind::TimerFired {
            timer_id: t.timer_id,
            fire_at: fire_at(&t.fire_at)?,
        },
        Pe::OrchestratorStarted(_) => EventKind::OrchestratorStarted,
        Pe::OrchestratorCompleted(_) => EventKind::OrchestratorCompleted,
        Pe::EventSent(s) => EventKind::EventSent {
            instance_id: s.instance_id.clone(),
            name: s.name.clone(),
            input: s.input.clone(),
        },
        Pe::EventRaised(r) => EventKind::EventRaised {
            name: r.name.clone(),
            input: r.input.clone(),
        },
        Pe::GenericEvent(g) => EventKind::GenericEvent {
            data: g.data.clone(),
        },
        Pe::ContinueAsNew(c) => EventKind::ContinueAsNew {
            result: c.input.clone(),
        },
        Pe::ExecutionSuspended(s) => EventKind::ExecutionSuspended {
            reason: s.input.clone(),
        },
        Pe::ExecutionResumed(r) => EventKind::ExecutionResumed {
            reason: r.input.clone(),
        },
        Pe::ExecutionRewound(r) => EventKind::ExecutionRewound {
            reason: r.reason.clone(),
        },
    };
    Ok(HistoryEvent::new(e.event_id, timestamp, kind))
}

/// A worker's answer in the engine's terms. What taskhub cannot apply (entity messages,
/// terminating another instance, a worker-side rewind, a malformed action) becomes
/// [`RemoteDecision::rejected`]: the instance fails with that reason instead of being retried
/// forever.
pub(crate) fn decision(response: &pb::OrchestratorResponse) -> RemoteDecision {
    let mut decision = RemoteDecision {
        custom_status: response.custom_status.clone(),
        ..RemoteDecision::default()
    };
    for action in &response.actions {
        match action_from(action) {
            Ok(Decided::Action(a)) => decision.actions.push(a),
            Ok(Decided::Completion(outcome)) => decision.completion = Some(outcome),
            Err(why) => {
                decision.rejected = Some(FailureDetails::new(
                    "UnsupportedOrchestratorAction",
                    format!("action {} cannot be applied: {why}", action.id),
                ));
                break;
            }
        }
    }
    decision
}

enum Decided {
    Action(Action),
    Completion(Outcome),
}

fn action_from(action: &pb::OrchestratorAction) -> Result<Decided, String> {
    let id = action.id;
    let kind = action
        .orchestrator_action_type
        .as_ref()
        .ok_or("the action has no type")?;
    Ok(Decided::Action(match kind {
        Pa::ScheduleTask(t) => {
            if t.name.is_empty() {
                return Err("a scheduleTask action needs an activity name".into());
            }
            Action::ScheduleActivity {
                id,
                name: t.name.clone(),
                input: t.input.clone(),
            }
        }
        Pa::CreateSubOrchestration(s) => {
            if s.name.is_empty() {
                return Err("a createSubOrchestration action needs an orchestrator name".into());
            }
            Action::StartSubOrchestration {
                id,
                name: s.name.clone(),
                instance_id: non_empty(&s.instance_id).unwrap_or_else(new_guid_n),
                input: s.input.clone(),
            }
        }
        Pa::CreateTimer(t) => Action::CreateTimer {
            id,
            fire_at: t
                .fire_at
                .as_ref()
                .and_then(from_timestamp)
                .ok_or("a createTimer action needs a valid fireAt")?,
        },
        Pa::SendEvent(e) => Action::SendEvent {
            id,
            instance_id: e
                .instance
                .as_ref()
                .map(|i| i.instance_id.clone())
                .filter(|i| !i.is_empty())
                .ok_or("a sendEvent action needs a target instance")?,
            name: e.name.clone(),
            input: e.data.clone(),
        },
        Pa::CompleteOrchestration(c) => return completion(c).map(Decided::Completion),
        Pa::TerminateOrchestration(_) => {
            return Err("terminating another instance from an orchestrator is not supported by taskhub; use the client's terminate".into())
        }
        Pa::SendEntityMessage(_) => {
            return Err("durable entities are not supported by taskhub".into())
        }
        Pa::RewindOrchestration(_) => {
            return Err("taskhub rewinds an instance's history itself; a worker-side rewind is not expected".into())
        }
    }))
}

fn completion(c: &pb::CompleteOrchestrationAction) -> Result<Outcome, String> {
    let status = status_from(c.orchestration_status).ok_or("an unknown orchestration status")?;
    Ok(match status {
        RuntimeStatus::Completed => Outcome::Completed {
            output: c.result.clone(),
        },
        RuntimeStatus::Failed => Outcome::Failed {
            failure: c
                .failure_details
                .as_ref()
                .map(failure_from)
                .unwrap_or_else(|| {
                    FailureDetails::new(
                        "OrchestrationFailed",
                        c.details
                            .clone()
                            .or_else(|| c.result.clone())
                            .unwrap_or_default(),
                    )
                }),
        },
        RuntimeStatus::ContinuedAsNew => Outcome::ContinuedAsNew {
            input: c.result.clone(),
            carryover: c
                .carryover_events
                .iter()
                .map(event_from)
                .collect::<Result<_, _>>()?,
        },
        RuntimeStatus::Terminated | RuntimeStatus::Canceled => Outcome::Terminated {
            reason: c.result.clone(),
        },
        other => return Err(format!("an orchestrator cannot complete as {other}")),
    })
}

/// An instance's status as the protocol reports it. `failure` is the Failed instance's details
/// (read from its history by the caller); inputs and outputs only when asked for.
pub(crate) fn state(
    r: &InstanceRecord,
    with_io: bool,
    failure_details: Option<&FailureDetails>,
) -> pb::OrchestrationState {
    let failed = r.runtime_status == RuntimeStatus::Failed;
    pb::OrchestrationState {
        instance_id: r.instance_id.clone(),
        name: r.name.clone(),
        version: non_empty(&r.version),
        orchestration_status: status(r.runtime_status) as i32,
        scheduled_start_timestamp: None,
        created_timestamp: Some(timestamp(r.created_time)),
        last_updated_timestamp: Some(timestamp(r.last_updated_time)),
        input: r.input.clone().filter(|_| with_io),
        // A Failed instance's output is the failure text; the protocol carries it as details.
        output: r.output.clone().filter(|_| with_io && !failed),
        custom_status: r.custom_status.clone().filter(|_| with_io),
        failure_details: failure_details.map(failure),
        execution_id: Some(r.execution_id.clone()),
        completed_timestamp: r.completed_time.map(timestamp),
        parent_instance_id: r.parent_instance_id.clone(),
        tags: r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// One event of every kind, in the canonical form the engine writes.
    fn every_kind() -> Vec<HistoryEvent> {
        let t = at("2026-12-03T10:00:00.1234567Z");
        let fail = FailureDetails {
            error_type: "ValueError".into(),
            error_message: "bad".into(),
            stack_trace: Some("at x".into()),
            inner_failure: Some(Box::new(FailureDetails::new("Inner", "cause"))),
            is_non_retriable: true,
        };
        let kinds = vec![
            EventKind::ExecutionStarted {
                name: "Orch".into(),
                version: "1.0".into(),
                execution_id: "e1".into(),
                input: Some("[1,2]".into()),
                parent_instance: Some(ParentInstance {
                    name: "Parent".into(),
                    instance_id: "p".into(),
                    execution_id: "pe".into(),
                    task_scheduled_id: 3,
                }),
                scheduled_start_time: Some(at("2026-12-03T11:00:00Z")),
                generation: 0,
            },
            EventKind::ExecutionCompleted {
                orchestration_status: RuntimeStatus::Failed,
                result: Some("bad".into()),
                failure_details: Some(fail.clone()),
            },
            EventKind::ExecutionTerminated {
                input: Some("\"stop\"".into()),
            },
            EventKind::TaskScheduled {
                name: "Act".into(),
                input: Some("\"x\"".into()),
            },
            EventKind::TaskCompleted {
                task_scheduled_id: 0,
                result: Some("1".into()),
            },
            EventKind::TaskFailed {
                task_scheduled_id: 1,
                reason: Some("bad".into()),
                details: None,
                failure_details: Some(fail.clone()),
            },
            EventKind::SubOrchestrationInstanceCreated {
                name: "Child".into(),
                instance_id: "c".into(),
                input: None,
            },
            EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id: 2,
                result: None,
            },
            EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id: 2,
                reason: Some("bad".into()),
                details: None,
                failure_details: Some(fail),
            },
            EventKind::TimerCreated {
                fire_at: at("2026-12-03T10:00:05Z"),
            },
            EventKind::TimerFired {
                timer_id: 4,
                fire_at: at("2026-12-03T10:00:05Z"),
            },
            EventKind::OrchestratorStarted,
            EventKind::OrchestratorCompleted,
            EventKind::EventSent {
                instance_id: "other".into(),
                name: "Ping".into(),
                input: Some("{}".into()),
            },
            EventKind::EventRaised {
                name: "Approval".into(),
                input: Some("true".into()),
            },
            EventKind::ContinueAsNew {
                result: Some("5".into()),
            },
            EventKind::GenericEvent {
                data: Some("Rewound: TaskFailed".into()),
            },
            EventKind::ExecutionSuspended {
                reason: Some("maintenance".into()),
            },
            EventKind::ExecutionResumed { reason: None },
            EventKind::ExecutionRewound {
                reason: Some("fixed".into()),
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, k)| HistoryEvent::new(i as i32 - 1, t, k))
            .collect()
    }

    #[test]
    fn every_history_event_survives_the_round_trip_to_the_protocol() {
        for e in every_kind() {
            let wire = event("inst", &e);
            assert_eq!(event_from(&wire).as_ref(), Ok(&e), "{:?}", e.event_type());
        }
    }

    #[test]
    fn event_ids_timestamps_and_pairings_reach_the_worker_unchanged() {
        let e = HistoryEvent::new(
            7,
            at("2026-12-03T10:00:00.0000001Z"),
            EventKind::TimerFired {
                timer_id: 7,
                fire_at: at("2026-12-03T10:00:01Z"),
            },
        );
        let wire = event("inst", &e);
        assert_eq!(wire.event_id, 7);
        assert_eq!(wire.timestamp.unwrap().nanos, 100);
        match wire.event_type {
            Some(Pe::TimerFired(f)) => assert_eq!(f.timer_id, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn execution_started_names_the_instance_it_belongs_to() {
        let started = &every_kind()[0];
        match event("inst-1", started).event_type {
            Some(Pe::ExecutionStarted(s)) => {
                let i = s.orchestration_instance.unwrap();
                assert_eq!(i.instance_id, "inst-1");
                assert_eq!(i.execution_id.as_deref(), Some("e1"));
                assert_eq!(s.version.as_deref(), Some("1.0"));
                let p = s.parent_instance.unwrap();
                assert_eq!(p.orchestration_instance.unwrap().instance_id, "p");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_task_failure_without_structured_details_still_reaches_the_worker_as_details() {
        let e = HistoryEvent::new(
            -1,
            at("2026-12-03T10:00:00Z"),
            EventKind::TaskFailed {
                task_scheduled_id: 0,
                reason: Some("it broke".into()),
                details: None,
                failure_details: None,
            },
        );
        match event("i", &e).event_type {
            Some(Pe::TaskFailed(f)) => {
                assert_eq!(f.failure_details.unwrap().error_message, "it broke")
            }
            other => panic!("{other:?}"),
        }
    }

    fn respond(actions: Vec<pb::OrchestratorAction>) -> RemoteDecision {
        decision(&pb::OrchestratorResponse {
            actions,
            custom_status: Some("\"busy\"".into()),
            ..Default::default()
        })
    }

    fn action(id: i32, kind: Pa) -> pb::OrchestratorAction {
        pb::OrchestratorAction {
            id,
            orchestrator_action_type: Some(kind),
        }
    }

    #[test]
    fn a_workers_actions_become_engine_actions_with_their_ids() {
        let d = respond(vec![
            action(
                0,
                Pa::ScheduleTask(pb::ScheduleTaskAction {
                    name: "SayHello".into(),
                    input: Some("\"Tokyo\"".into()),
                    ..Default::default()
                }),
            ),
            action(
                1,
                Pa::CreateTimer(pb::CreateTimerAction {
                    fire_at: Some(timestamp(at("2026-12-03T10:00:05Z"))),
                }),
            ),
            action(
                2,
                Pa::CreateSubOrchestration(pb::CreateSubOrchestrationAction {
                    instance_id: "child".into(),
                    name: "Child".into(),
                    ..Default::default()
                }),
            ),
        ]);
        assert_eq!(d.rejected, None);
        assert_eq!(d.custom_status.as_deref(), Some("\"busy\""));
        assert_eq!(d.completion, None);
        assert_eq!(
            d.actions,
            vec![
                Action::ScheduleActivity {
                    id: 0,
                    name: "SayHello".into(),
                    input: Some("\"Tokyo\"".into())
                },
                Action::CreateTimer {
                    id: 1,
                    fire_at: at("2026-12-03T10:00:05Z")
                },
                Action::StartSubOrchestration {
                    id: 2,
                    name: "Child".into(),
                    instance_id: "child".into(),
                    input: None
                },
            ]
        );
    }

    #[test]
    fn continue_as_new_carries_the_workers_saved_events_over() {
        let raised = HistoryEvent::new(
            -1,
            at("2026-12-03T10:00:00Z"),
            EventKind::EventRaised {
                name: "Next".into(),
                input: Some("1".into()),
            },
        );
        let d = respond(vec![action(
            -1,
            Pa::CompleteOrchestration(pb::CompleteOrchestrationAction {
                orchestration_status: pb::OrchestrationStatus::ContinuedAsNew as i32,
                result: Some("6".into()),
                carryover_events: vec![event("i", &raised)],
                ..Default::default()
            }),
        )]);
        assert_eq!(
            d.completion,
            Some(Outcome::ContinuedAsNew {
                input: Some("6".into()),
                carryover: vec![raised]
            })
        );
    }

    #[test]
    fn a_failed_completion_keeps_the_workers_failure_details() {
        let d = respond(vec![action(
            -1,
            Pa::CompleteOrchestration(pb::CompleteOrchestrationAction {
                orchestration_status: pb::OrchestrationStatus::Failed as i32,
                failure_details: Some(pb::TaskFailureDetails {
                    error_type: "ValueError".into(),
                    error_message: "boom".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )]);
        match d.completion {
            Some(Outcome::Failed { failure }) => {
                assert_eq!(failure.error_type, "ValueError");
                assert_eq!(failure.error_message, "boom");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn actions_taskhub_cannot_apply_are_rejected_with_a_reason() {
        for (kind, says) in [
            (
                Pa::SendEntityMessage(pb::SendEntityMessageAction {}),
                "entities are not supported",
            ),
            (
                Pa::TerminateOrchestration(pb::TerminateOrchestrationAction::default()),
                "not supported",
            ),
            (
                Pa::CreateTimer(pb::CreateTimerAction { fire_at: None }),
                "needs a valid fireAt",
            ),
            (
                Pa::ScheduleTask(pb::ScheduleTaskAction::default()),
                "needs an activity name",
            ),
        ] {
            let d = respond(vec![action(5, kind)]);
            let why = d.rejected.expect("rejected").error_message;
            assert!(why.contains(says), "{why}");
            assert!(why.contains("action 5"), "{why}");
        }
        let d = respond(vec![pb::OrchestratorAction {
            id: 1,
            orchestrator_action_type: None,
        }]);
        assert!(d.rejected.is_some());
    }
}
