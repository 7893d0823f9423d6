//! DTFx value conventions shared by queue messages and table rows: type names, enum numbers,
//! timestamps, and the nested objects (`OrchestrationInstance`, `ParentInstance`,
//! `FailureDetails`) in both their message form (with `$type`) and table form (plain JSON).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use crate::model::{EventType, FailureDetails, ParentInstance, RuntimeStatus};

pub const CORE: &str = "DurableTask.Core";

/// `DurableTask.Core.History.TaskScheduledEvent` for `TaskScheduled`.
pub fn event_class(t: EventType) -> String {
    format!("{CORE}.History.{}Event", t.as_str())
}

pub fn event_type_from_i64(n: i64) -> Option<EventType> {
    ALL_EVENT_TYPES.iter().copied().find(|t| *t as i64 == n)
}

pub fn event_type_from_name(name: &str) -> Option<EventType> {
    ALL_EVENT_TYPES.iter().copied().find(|t| t.as_str() == name)
}

const ALL_EVENT_TYPES: [EventType; 20] = [
    EventType::ExecutionStarted,
    EventType::ExecutionCompleted,
    EventType::ExecutionTerminated,
    EventType::TaskScheduled,
    EventType::TaskCompleted,
    EventType::TaskFailed,
    EventType::SubOrchestrationInstanceCreated,
    EventType::SubOrchestrationInstanceCompleted,
    EventType::SubOrchestrationInstanceFailed,
    EventType::TimerCreated,
    EventType::TimerFired,
    EventType::OrchestratorStarted,
    EventType::OrchestratorCompleted,
    EventType::EventSent,
    EventType::EventRaised,
    EventType::ContinueAsNew,
    EventType::GenericEvent,
    EventType::ExecutionSuspended,
    EventType::ExecutionResumed,
    EventType::ExecutionRewound,
];

/// An `OrchestrationStatus` given as a number (messages) or a name (tables).
pub fn status_from_value(v: &Value) -> Option<RuntimeStatus> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|n| RuntimeStatus::from_i32(n as i32)),
        Value::String(s) => RuntimeStatus::from_name(s),
        _ => None,
    }
}

/// .NET round-trip format in UTC: `2025-01-02T03:04:05.1234567Z` (7 fraction digits).
pub fn format_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Accepts RFC 3339 and the zone-less form .NET writes for unspecified-kind dates (taken as UTC).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Strips `, Assembly` from a `$type` (pre-2018 writers added it).
pub fn type_name(v: &Value) -> Option<&str> {
    v.get("$type")
        .and_then(Value::as_str)
        .map(|t| t.split(',').next().unwrap_or(t).trim())
}

/// A new object whose first property is `$type` (Newtonsoft's metadata order).
pub fn typed(class: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("$type".into(), Value::String(class.into()));
    m
}

pub fn orchestration_instance(
    instance_id: &str,
    execution_id: Option<&str>,
    with_type: bool,
) -> Value {
    let mut m = if with_type {
        typed(&format!("{CORE}.OrchestrationInstance"))
    } else {
        Map::new()
    };
    m.insert("InstanceId".into(), json!(instance_id));
    m.insert("ExecutionId".into(), json!(execution_id));
    Value::Object(m)
}

pub fn parent_instance(p: &ParentInstance, with_type: bool) -> Value {
    let mut m = if with_type {
        typed(&format!("{CORE}.ParentInstance"))
    } else {
        Map::new()
    };
    m.insert("Name".into(), json!(p.name));
    m.insert("Version".into(), json!(""));
    m.insert(
        "OrchestrationInstance".into(),
        orchestration_instance(&p.instance_id, Some(&p.execution_id), with_type),
    );
    m.insert("TaskScheduleId".into(), json!(p.task_scheduled_id));
    Value::Object(m)
}

pub fn read_parent_instance(v: &Value) -> Option<ParentInstance> {
    let oi = v.get("OrchestrationInstance")?;
    Some(ParentInstance {
        name: str_of(v, "Name").unwrap_or_default(),
        instance_id: str_of(oi, "InstanceId")?,
        execution_id: str_of(oi, "ExecutionId").unwrap_or_default(),
        task_scheduled_id: v
            .get("TaskScheduleId")
            .and_then(Value::as_i64)
            .unwrap_or(-1) as i32,
    })
}

pub fn failure_details(f: &FailureDetails, with_type: bool) -> Value {
    let mut m = if with_type {
        typed(&format!("{CORE}.FailureDetails"))
    } else {
        Map::new()
    };
    m.insert("ErrorType".into(), json!(f.error_type));
    m.insert("ErrorMessage".into(), json!(f.error_message));
    m.insert("StackTrace".into(), json!(f.stack_trace));
    m.insert(
        "InnerFailure".into(),
        f.inner_failure
            .as_ref()
            .map(|i| failure_details(i, with_type))
            .unwrap_or(Value::Null),
    );
    m.insert("IsNonRetriable".into(), json!(f.is_non_retriable));
    m.insert("Properties".into(), Value::Null);
    Value::Object(m)
}

pub fn read_failure_details(v: &Value) -> Option<FailureDetails> {
    if !v.is_object() {
        return None;
    }
    Some(FailureDetails {
        error_type: str_of(v, "ErrorType").unwrap_or_default(),
        error_message: str_of(v, "ErrorMessage").unwrap_or_default(),
        stack_trace: str_of(v, "StackTrace"),
        inner_failure: v
            .get("InnerFailure")
            .and_then(read_failure_details)
            .map(Box::new),
        is_non_retriable: v
            .get("IsNonRetriable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// A string member; JSON null and absence are both `None`.
pub fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_use_seven_fraction_digits_and_parse_back() {
        let t = parse_time("2025-01-02T03:04:05.1234567Z").unwrap();
        assert_eq!(format_time(t), "2025-01-02T03:04:05.1234567Z");
        assert_eq!(parse_time("2025-01-02T03:04:05.1234567"), Some(t));
        assert_eq!(
            format_time(parse_time("2025-01-02T03:04:05Z").unwrap()),
            "2025-01-02T03:04:05.0000000Z"
        );
    }

    #[test]
    fn type_names_with_and_without_assembly() {
        let v = json!({"$type": "DurableTask.Core.TaskMessage, DurableTask.Core"});
        assert_eq!(type_name(&v), Some("DurableTask.Core.TaskMessage"));
        let v = json!({"$type": "DurableTask.Core.TaskMessage"});
        assert_eq!(type_name(&v), Some("DurableTask.Core.TaskMessage"));
        assert_eq!(
            event_class(EventType::TaskScheduled),
            "DurableTask.Core.History.TaskScheduledEvent"
        );
    }
}
