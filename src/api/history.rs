//! Durable Functions' rendering of raw history for `showHistory=true` (spec §6.1).
//!
//! Raw DTFx events are post-processed the way the extension does it: orchestrator episode
//! markers disappear, a scheduled task (or sub-orchestration) is folded into its completion, and
//! outputs and inputs appear only when asked for. Inputs stay raw JSON text (a string holding
//! JSON); results, when shown, are parsed into JSON.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::parse_stored_json;
use crate::model::{format_history_time, EventKind, FailureDetails, HistoryEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryOptions {
    /// `showInput` (default true): when false, `Input` is removed from every event.
    pub show_input: bool,
    /// `showHistoryOutput` (default false): keep `Result` on completions.
    pub show_history_output: bool,
}

/// What a completion borrows from the event that scheduled it.
struct Scheduled<'a> {
    name: &'a str,
    input: Option<&'a str>,
    event: &'a HistoryEvent,
}

pub fn render_history(events: &[HistoryEvent], opts: HistoryOptions) -> Vec<Value> {
    // Tasks and sub-orchestrations share one sequence of event ids, but keep them apart anyway:
    // a completion only ever refers to its own kind of scheduling event.
    let mut tasks: HashMap<i32, Scheduled> = HashMap::new();
    let mut subs: HashMap<i32, Scheduled> = HashMap::new();
    let mut done_tasks = HashSet::new();
    let mut done_subs = HashSet::new();
    for e in events {
        match &e.kind {
            EventKind::TaskScheduled { name, input } => {
                tasks.insert(e.event_id, scheduled(name, input, e));
            }
            EventKind::SubOrchestrationInstanceCreated { name, input, .. } => {
                subs.insert(e.event_id, scheduled(name, input, e));
            }
            EventKind::TaskCompleted {
                task_scheduled_id, ..
            }
            | EventKind::TaskFailed {
                task_scheduled_id, ..
            } => {
                done_tasks.insert(*task_scheduled_id);
            }
            EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id, ..
            }
            | EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id, ..
            } => {
                done_subs.insert(*task_scheduled_id);
            }
            _ => {}
        }
    }

    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let mut m = Event::new(e, opts);
        match &e.kind {
            EventKind::OrchestratorStarted | EventKind::OrchestratorCompleted => continue,
            EventKind::TaskScheduled { .. } if done_tasks.contains(&e.event_id) => continue,
            EventKind::SubOrchestrationInstanceCreated { .. }
                if done_subs.contains(&e.event_id) =>
            {
                continue
            }
            EventKind::ExecutionStarted {
                name,
                input,
                scheduled_start_time,
                ..
            } => {
                m.str("FunctionName", name);
                m.input(input.as_deref());
                if let Some(t) = scheduled_start_time {
                    m.str("ScheduledStartTime", &format_history_time(*t));
                }
            }
            EventKind::ExecutionCompleted {
                orchestration_status,
                result,
                failure_details,
            } => {
                m.str("OrchestrationStatus", orchestration_status.as_str());
                m.result(result.as_deref());
                m.failure(failure_details.as_ref());
            }
            EventKind::ExecutionTerminated { input } => m.input(input.as_deref()),
            EventKind::TaskScheduled { name, input } => {
                m.str("Name", name);
                m.input(input.as_deref());
            }
            EventKind::TaskCompleted {
                task_scheduled_id,
                result,
            } => {
                m.merge(tasks.get(task_scheduled_id));
                m.result(result.as_deref());
                m.scheduled_time(tasks.get(task_scheduled_id));
            }
            EventKind::TaskFailed {
                task_scheduled_id,
                reason,
                details,
                failure_details,
            }
            | EventKind::SubOrchestrationInstanceFailed {
                task_scheduled_id,
                reason,
                details,
                failure_details,
            } => {
                let origin = if matches!(e.kind, EventKind::TaskFailed { .. }) {
                    tasks.get(task_scheduled_id)
                } else {
                    subs.get(task_scheduled_id)
                };
                m.merge(origin);
                m.opt_str("Reason", reason.as_deref());
                m.opt_str("Details", details.as_deref());
                m.failure(failure_details.as_ref());
                m.scheduled_time(origin);
            }
            EventKind::SubOrchestrationInstanceCreated {
                name,
                instance_id,
                input,
            } => {
                m.str("Name", name);
                m.str("InstanceId", instance_id);
                m.input(input.as_deref());
            }
            EventKind::SubOrchestrationInstanceCompleted {
                task_scheduled_id,
                result,
            } => {
                m.merge(subs.get(task_scheduled_id));
                m.result(result.as_deref());
                m.scheduled_time(subs.get(task_scheduled_id));
            }
            EventKind::TimerCreated { fire_at } | EventKind::TimerFired { fire_at, .. } => {
                m.str("FireAt", &format_history_time(*fire_at));
            }
            EventKind::EventSent {
                instance_id,
                name,
                input,
            } => {
                m.str("InstanceId", instance_id);
                m.str("Name", name);
                m.input(input.as_deref());
            }
            EventKind::EventRaised { name, input } => {
                m.str("Name", name);
                m.input(input.as_deref());
            }
            EventKind::ContinueAsNew { result } => m.result(result.as_deref()),
            EventKind::GenericEvent { data } => m.opt_str("Data", data.as_deref()),
            EventKind::ExecutionSuspended { reason }
            | EventKind::ExecutionResumed { reason }
            | EventKind::ExecutionRewound { reason } => m.opt_str("Reason", reason.as_deref()),
        }
        out.push(m.finish());
    }
    out
}

fn scheduled<'a>(name: &'a str, input: &'a Option<String>, e: &'a HistoryEvent) -> Scheduled<'a> {
    Scheduled {
        name,
        input: input.as_deref(),
        event: e,
    }
}

/// One rendered event: `EventType` first, `Timestamp` last, the event's own fields between.
struct Event<'a> {
    map: Map<String, Value>,
    event: &'a HistoryEvent,
    opts: HistoryOptions,
}

impl<'a> Event<'a> {
    fn new(event: &'a HistoryEvent, opts: HistoryOptions) -> Self {
        let mut map = Map::new();
        map.insert("EventType".into(), event.event_type().as_str().into());
        Self { map, event, opts }
    }

    fn str(&mut self, key: &str, value: &str) {
        self.map.insert(key.into(), Value::String(value.into()));
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        self.map
            .insert(key.into(), value.map_or(Value::Null, |v| v.into()));
    }

    /// Inputs stay the raw serialized text, as DTFx stores them.
    fn input(&mut self, input: Option<&str>) {
        if self.opts.show_input {
            self.opt_str("Input", input);
        }
    }

    /// Results are parsed into JSON, and only shown with `showHistoryOutput`.
    fn result(&mut self, result: Option<&str>) {
        if self.opts.show_history_output {
            self.map.insert("Result".into(), parse_stored_json(result));
        }
    }

    fn failure(&mut self, details: Option<&FailureDetails>) {
        if let Some(d) = details {
            let v = serde_json::to_value(d).unwrap_or(Value::Null);
            self.map.insert("FailureDetails".into(), v);
        }
    }

    /// A completion takes the scheduled event's name (as `FunctionName`) and input.
    fn merge(&mut self, origin: Option<&Scheduled>) {
        if let Some(s) = origin {
            self.str("FunctionName", s.name);
            self.input(s.input);
        }
    }

    fn scheduled_time(&mut self, origin: Option<&Scheduled>) {
        if let Some(s) = origin {
            self.str("ScheduledTime", &format_history_time(s.event.timestamp));
        }
    }

    fn finish(mut self) -> Value {
        self.map.insert(
            "Timestamp".into(),
            format_history_time(self.event.timestamp).into(),
        );
        Value::Object(self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RuntimeStatus;
    use serde_json::json;

    fn ev(id: i32, ts: &str, kind: EventKind) -> HistoryEvent {
        HistoryEvent::new(id, ts.parse().unwrap(), kind)
    }

    /// The completed one-city sequence of the docs example (spec §6.1).
    fn docs_history() -> Vec<HistoryEvent> {
        vec![
            ev(
                -1,
                "2018-02-28T05:18:49.3452372Z",
                EventKind::ExecutionStarted {
                    name: "E1_HelloSequence".into(),
                    version: String::new(),
                    execution_id: "x".into(),
                    input: None,
                    parent_instance: None,
                    scheduled_start_time: None,
                    generation: 0,
                },
            ),
            ev(-1, "2018-02-28T05:18:51.3Z", EventKind::OrchestratorStarted),
            ev(
                0,
                "2018-02-28T05:18:51.3939873Z",
                EventKind::TaskScheduled {
                    name: "E1_SayHello".into(),
                    input: Some("\"Tokyo\"".into()),
                },
            ),
            ev(
                -1,
                "2018-02-28T05:18:51.4Z",
                EventKind::OrchestratorCompleted,
            ),
            ev(-1, "2018-02-28T05:18:52.2Z", EventKind::OrchestratorStarted),
            ev(
                -1,
                "2018-02-28T05:18:52.2895622Z",
                EventKind::TaskCompleted {
                    task_scheduled_id: 0,
                    result: Some("\"Hello Tokyo!\"".into()),
                },
            ),
            ev(
                -1,
                "2018-02-28T05:18:54.3660895Z",
                EventKind::ExecutionCompleted {
                    orchestration_status: RuntimeStatus::Completed,
                    result: Some("[\"Hello Tokyo!\"]".into()),
                    failure_details: None,
                },
            ),
            ev(
                -1,
                "2018-02-28T05:18:54.4Z",
                EventKind::OrchestratorCompleted,
            ),
        ]
    }

    #[test]
    fn docs_example_with_history_output_and_no_input() {
        let out = render_history(
            &docs_history(),
            HistoryOptions {
                show_input: false,
                show_history_output: true,
            },
        );
        let expected = r#"[{"EventType":"ExecutionStarted","FunctionName":"E1_HelloSequence","Timestamp":"2018-02-28T05:18:49.3452372Z"},{"EventType":"TaskCompleted","FunctionName":"E1_SayHello","Result":"Hello Tokyo!","ScheduledTime":"2018-02-28T05:18:51.3939873Z","Timestamp":"2018-02-28T05:18:52.2895622Z"},{"EventType":"ExecutionCompleted","OrchestrationStatus":"Completed","Result":["Hello Tokyo!"],"Timestamp":"2018-02-28T05:18:54.3660895Z"}]"#;
        assert_eq!(serde_json::to_string(&out).unwrap(), expected);
    }

    #[test]
    fn defaults_keep_raw_inputs_and_drop_results() {
        let out = render_history(
            &docs_history(),
            HistoryOptions {
                show_input: true,
                show_history_output: false,
            },
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["Input"], Value::Null);
        assert_eq!(out[1]["Input"], json!("\"Tokyo\""));
        assert!(out[1].get("Result").is_none());
        assert!(out[2].get("Result").is_none());
        assert!(out[1].get("TaskScheduledId").is_none());
        assert!(out[1].get("EventId").is_none());
    }

    #[test]
    fn pending_task_stays_with_its_name_and_failures_keep_details() {
        let mut h = docs_history();
        h.truncate(4); // started, scheduled, no completion yet
        h.push(ev(
            1,
            "2018-02-28T05:18:53Z",
            EventKind::TaskScheduled {
                name: "Other".into(),
                input: None,
            },
        ));
        h.push(ev(
            -1,
            "2018-02-28T05:18:53.5Z",
            EventKind::TaskFailed {
                task_scheduled_id: 1,
                reason: Some("boom".into()),
                details: None,
                failure_details: Some(FailureDetails::new("ActivityFailure", "boom")),
            },
        ));
        let out = render_history(
            &h,
            HistoryOptions {
                show_input: true,
                show_history_output: false,
            },
        );
        let types: Vec<_> = out.iter().map(|e| e["EventType"].clone()).collect();
        assert_eq!(
            types,
            vec![
                json!("ExecutionStarted"),
                json!("TaskScheduled"),
                json!("TaskFailed")
            ]
        );
        assert_eq!(out[1]["Name"], "E1_SayHello");
        assert_eq!(out[2]["FunctionName"], "Other");
        assert_eq!(out[2]["Reason"], "boom");
        assert_eq!(out[2]["FailureDetails"]["ErrorMessage"], "boom");
        assert_eq!(out[2]["ScheduledTime"], "2018-02-28T05:18:53Z");
    }

    #[test]
    fn show_input_false_removes_every_input() {
        let h = vec![ev(
            -1,
            "2018-02-28T05:18:53Z",
            EventKind::EventRaised {
                name: "Approval".into(),
                input: Some("true".into()),
            },
        )];
        let hidden = render_history(
            &h,
            HistoryOptions {
                show_input: false,
                show_history_output: true,
            },
        );
        assert_eq!(
            hidden[0],
            json!({"EventType":"EventRaised","Name":"Approval","Timestamp":"2018-02-28T05:18:53Z"})
        );
    }
}
