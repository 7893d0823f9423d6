//! Rendering results for people (text) and for scripts (JSON).
//!
//! Renderers return the whole text to print, so they can be tested without a terminal.

use serde_json::{json, Value};

use super::args::OutputFormat;
use crate::api::status::StatusResponse;
use crate::model::{format_history_time, format_status_time, EventKind, HistoryEvent};
use crate::store::{InstanceRecord, Page};

/// Longest payload shown in a text history line; `--output json` shows all of it.
const TEXT_PAYLOAD_MAX: usize = 80;

/// The Durable Functions status object ([`StatusResponse`], its keys in its order), with
/// `input` and `output` present only when asked for (Core Tools' `--show-input` /
/// `--show-output`).
pub fn status_object(rec: &InstanceRecord, show_input: bool, show_output: bool) -> Value {
    let mut v = serde_json::to_value(StatusResponse::from_record(rec, show_input))
        .expect("a status object always serializes");
    let o = v.as_object_mut().expect("a status object is a JSON object");
    // shift_remove keeps the order of the other keys.
    if !show_input {
        o.shift_remove("input");
    }
    if !show_output {
        o.shift_remove("output");
    }
    v
}

/// Text: the status object pretty-printed (what Core Tools prints). JSON: the same, on one line.
pub fn render_status(
    rec: &InstanceRecord,
    show_input: bool,
    show_output: bool,
    format: OutputFormat,
) -> String {
    render_json(&status_object(rec, show_input, show_output), format)
}

pub fn render_json(value: &Value, format: OutputFormat) -> String {
    let text = match format {
        OutputFormat::Text => serde_json::to_string_pretty(value),
        OutputFormat::Json => serde_json::to_string(value),
    };
    text.expect("a serde_json::Value always serializes")
}

/// Core Tools' line, which scripts that page through `func durable get-instances` look for.
/// Like Core Tools, it is printed on the last page too, with an empty token: that is how such
/// scripts know they are done.
pub const CONTINUATION_LINE: &str = "Continuation token for next set of results:";

/// Text: a table, then Core Tools' continuation line ([`CONTINUATION_LINE`] `'<token>'`). JSON:
/// `{"instances":[status objects],"continuationToken":…}`.
pub fn render_instances(page: &Page<InstanceRecord>, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|r| status_object(r, false, false))
                .collect();
            render_json(
                &json!({"instances": items, "continuationToken": page.continuation}),
                format,
            )
        }
        OutputFormat::Text => {
            let mut out = if page.items.is_empty() {
                "No instances found.".to_string()
            } else {
                instances_table(&page.items)
            };
            let token = page.continuation.as_deref().unwrap_or_default();
            out.push_str(&format!("\n\n{CONTINUATION_LINE} '{token}'"));
            out
        }
    }
}

fn instances_table(items: &[InstanceRecord]) -> String {
    let header = ["INSTANCE ID", "NAME", "STATUS", "CREATED", "LAST UPDATED"].map(String::from);
    let rows: Vec<[String; 5]> = items
        .iter()
        .map(|r| {
            [
                r.instance_id.clone(),
                r.name.clone(),
                r.runtime_status.to_string(),
                format_status_time(r.created_time),
                format_status_time(r.last_updated_time),
            ]
        })
        .collect();
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text: one line per event (time, event id, type, the facts that matter), in stored order,
/// without the OrchestratorStarted/OrchestratorCompleted markers that frame every episode (the
/// Durable Functions status API drops them too). JSON: every event with DTFx's field names, as
/// Core Tools prints them.
pub fn render_history(events: &[HistoryEvent], format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => render_json(&json!(events), format),
        OutputFormat::Text => {
            let lines: Vec<String> = events
                .iter()
                .filter(|e| !is_episode_marker(&e.kind))
                .map(history_line)
                .collect();
            if lines.is_empty() {
                "No history.".to_string()
            } else {
                lines.join("\n")
            }
        }
    }
}

fn is_episode_marker(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::OrchestratorStarted | EventKind::OrchestratorCompleted
    )
}

fn history_line(e: &HistoryEvent) -> String {
    let id = if e.event_id >= 0 {
        format!("#{}", e.event_id)
    } else {
        String::new()
    };
    let line = format!(
        "{:<30} {:>4}  {:<34} {}",
        format_history_time(e.timestamp),
        id,
        e.event_type().as_str(),
        event_details(&e.kind)
    );
    line.trim_end().to_string()
}

/// The facts of an event worth a glance; payloads shortened.
fn event_details(kind: &EventKind) -> String {
    use EventKind::*;
    let p = |label: &str, v: &Option<String>| match v {
        Some(text) => format!(" {label}={}", shorten(text)),
        None => String::new(),
    };
    match kind {
        ExecutionStarted { name, input, .. } => format!("{name}{}", p("input", input)),
        ExecutionCompleted {
            orchestration_status,
            result,
            failure_details,
        } => {
            let failure = failure_details
                .as_ref()
                .map(|f| format!(" failure={}", shorten(&f.to_string())))
                .unwrap_or_default();
            format!("{orchestration_status}{}{failure}", p("result", result))
        }
        ExecutionTerminated { input } => p("reason", input).trim_start().to_string(),
        TaskScheduled { name, input } => format!("{name}{}", p("input", input)),
        TaskCompleted {
            task_scheduled_id,
            result,
        } => format!("task #{task_scheduled_id}{}", p("result", result)),
        TaskFailed {
            task_scheduled_id,
            reason,
            ..
        } => format!("task #{task_scheduled_id}{}", p("reason", reason)),
        SubOrchestrationInstanceCreated {
            name,
            instance_id,
            input,
        } => format!("{name} instance={instance_id}{}", p("input", input)),
        SubOrchestrationInstanceCompleted {
            task_scheduled_id,
            result,
        } => format!("task #{task_scheduled_id}{}", p("result", result)),
        SubOrchestrationInstanceFailed {
            task_scheduled_id,
            reason,
            ..
        } => format!("task #{task_scheduled_id}{}", p("reason", reason)),
        TimerCreated { fire_at } => format!("fires at {}", format_history_time(*fire_at)),
        TimerFired { timer_id, fire_at } => {
            format!("timer #{timer_id} at {}", format_history_time(*fire_at))
        }
        OrchestratorStarted | OrchestratorCompleted => String::new(), // not shown in text
        EventSent {
            instance_id,
            name,
            input,
        } => format!("{name} to {instance_id}{}", p("data", input)),
        EventRaised { name, input } => format!("{name}{}", p("data", input)),
        ContinueAsNew { result } => p("input", result).trim_start().to_string(),
        GenericEvent { data } => data.as_deref().map(shorten).unwrap_or_default(),
        ExecutionSuspended { reason }
        | ExecutionResumed { reason }
        | ExecutionRewound { reason } => p("reason", reason).trim_start().to_string(),
    }
}

fn shorten(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= TEXT_PAYLOAD_MAX {
        return one_line;
    }
    let cut: String = one_line.chars().take(TEXT_PAYLOAD_MAX - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureDetails, RuntimeStatus};
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn record(id: &str, status: RuntimeStatus) -> InstanceRecord {
        InstanceRecord {
            instance_id: id.into(),
            name: "HelloSequence".into(),
            version: String::new(),
            execution_id: "e1".into(),
            runtime_status: status,
            input: Some("{\"n\":1}".into()),
            output: Some("[\"Hello Tokyo!\"]".into()),
            custom_status: None,
            created_time: t("2018-02-28T05:18:49.345Z"),
            last_updated_time: t("2018-02-28T05:18:54Z"),
            completed_time: None,
            parent_instance_id: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn status_object_keys_in_order_and_input_output_only_when_asked() {
        let r = record("abc", RuntimeStatus::Completed);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&status_object(&r, false, false)),
            [
                "name",
                "instanceId",
                "runtimeStatus",
                "customStatus",
                "createdTime",
                "lastUpdatedTime"
            ]
        );
        let full = status_object(&r, true, true);
        assert_eq!(
            keys(&full),
            [
                "name",
                "instanceId",
                "runtimeStatus",
                "input",
                "customStatus",
                "output",
                "createdTime",
                "lastUpdatedTime"
            ]
        );
        assert_eq!(full["input"], json!({"n": 1}));
        assert_eq!(full["output"], json!(["Hello Tokyo!"]));
        assert_eq!(full["createdTime"], "2018-02-28T05:18:49Z");
    }

    #[test]
    fn status_text_is_pretty_and_json_is_one_line() {
        let r = record("abc", RuntimeStatus::Running);
        let text = render_status(&r, false, false, OutputFormat::Text);
        assert!(
            text.contains("\n  \"runtimeStatus\": \"Running\""),
            "{text}"
        );
        let json = render_status(&r, false, false, OutputFormat::Json);
        assert!(!json.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap()["instanceId"],
            "abc"
        );
    }

    #[test]
    fn instances_table_aligns_columns_and_prints_the_token() {
        let page = Page {
            items: vec![
                record("a", RuntimeStatus::Running),
                record("a-much-longer-id", RuntimeStatus::Completed),
            ],
            continuation: Some("tok123".into()),
        };
        let text = render_instances(&page, OutputFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("INSTANCE ID       NAME"), "{text}");
        assert!(lines[1].starts_with("a                 HelloSequence  Running"));
        assert!(lines[2].starts_with("a-much-longer-id  HelloSequence  Completed"));
        assert!(lines[1].ends_with("2018-02-28T05:18:49Z  2018-02-28T05:18:54Z"));
        assert!(
            text.ends_with("\n\nContinuation token for next set of results: 'tok123'"),
            "{text}"
        );
    }

    #[test]
    fn instances_text_when_empty_and_without_more_pages() {
        let page = Page {
            items: vec![],
            continuation: None,
        };
        assert_eq!(
            render_instances(&page, OutputFormat::Text),
            "No instances found.\n\nContinuation token for next set of results: ''"
        );
    }

    #[test]
    fn instances_json_has_status_objects_and_the_token() {
        let page = Page {
            items: vec![record("a", RuntimeStatus::Running)],
            continuation: None,
        };
        let v: Value = serde_json::from_str(&render_instances(&page, OutputFormat::Json)).unwrap();
        assert_eq!(v["instances"][0]["instanceId"], "a");
        assert!(v["instances"][0].get("input").is_none());
        assert_eq!(v["continuationToken"], Value::Null);
    }

    #[test]
    fn history_text_lists_events_with_their_facts() {
        let events = vec![
            HistoryEvent::new(
                -1,
                t("2018-02-28T05:18:49Z"),
                EventKind::OrchestratorStarted,
            ),
            HistoryEvent::new(
                -1,
                t("2018-02-28T05:18:49.3452372Z"),
                EventKind::ExecutionStarted {
                    name: "HelloSequence".into(),
                    version: String::new(),
                    execution_id: "e".into(),
                    input: None,
                    parent_instance: None,
                    scheduled_start_time: None,
                    generation: 0,
                },
            ),
            HistoryEvent::new(
                0,
                t("2018-02-28T05:18:51Z"),
                EventKind::TaskScheduled {
                    name: "SayHello".into(),
                    input: Some("\"Tokyo\"".into()),
                },
            ),
            HistoryEvent::new(
                -1,
                t("2018-02-28T05:18:52Z"),
                EventKind::ExecutionCompleted {
                    orchestration_status: RuntimeStatus::Failed,
                    result: None,
                    failure_details: Some(FailureDetails::new("Boom", "x".repeat(200))),
                },
            ),
        ];
        let text = render_history(&events, OutputFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("2018-02-28T05:18:49.3452372Z"));
        assert!(lines[0].ends_with("ExecutionStarted                   HelloSequence"));
        assert!(lines[1].contains("  #0  TaskScheduled"), "{text}");
        assert!(lines[1].ends_with("SayHello input=\"Tokyo\""));
        assert!(lines[2].contains("Failed failure=Boom: xxx"));
        assert!(lines[2].ends_with('…'));
        assert_eq!(render_history(&[], OutputFormat::Text), "No history.");

        let v: Value = serde_json::from_str(&render_history(&events, OutputFormat::Json)).unwrap();
        assert_eq!(v[0]["EventType"], "OrchestratorStarted");
        assert_eq!(v[2]["EventType"], "TaskScheduled");
        assert_eq!(v[2]["Name"], "SayHello");
    }
}
