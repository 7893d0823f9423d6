//! Table rows (spec §2, §3): history events and instance status as entities with DTFx's column
//! names and Edm types. Azure Tables infers String/Boolean/Int32/Double from JSON; DateTime and
//! Int64 need an explicit `Prop@odata.type` annotation, which the crates do not add for us.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::dtfx;
use super::keys::{escape_partition_key, unescape_partition_key};
use super::messages::event_from_json;
use crate::model::{EventKind, HistoryEvent, RuntimeStatus};
use crate::store::{InstanceRecord, InstanceState, NewInstance};

pub type Entity = Map<String, Value>;

/// Columns DTFx moves to blobs when larger than [`MAX_COLUMN_UTF16`] (spec §3.3).
pub const LARGE_CANDIDATES: [&str; 9] = [
    "Name",
    "Input",
    "Result",
    "Output",
    "Reason",
    "Details",
    "Correlation",
    "FailureDetails",
    "Tags",
];
/// 60 KiB of UTF-16.
pub const MAX_COLUMN_UTF16: usize = 30_720;

pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

pub fn set_str(e: &mut Entity, k: &str, v: impl Into<String>) {
    e.insert(k.into(), Value::String(v.into()));
}

/// Null is "column absent" in Azure Tables.
pub fn set_opt_str(e: &mut Entity, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        set_str(e, k, v);
    }
}

pub fn set_time(e: &mut Entity, k: &str, t: DateTime<Utc>) {
    e.insert(format!("{k}@odata.type"), json!("Edm.DateTime"));
    e.insert(k.into(), json!(dtfx::format_time(t)));
}

pub fn set_i64(e: &mut Entity, k: &str, v: i64) {
    e.insert(format!("{k}@odata.type"), json!("Edm.Int64"));
    e.insert(k.into(), json!(v.to_string()));
}

pub fn get_str(e: &Entity, k: &str) -> Option<String> {
    e.get(k).and_then(Value::as_str).map(str::to_string)
}

pub fn get_time(e: &Entity, k: &str) -> Option<DateTime<Utc>> {
    e.get(k).and_then(Value::as_str).and_then(dtfx::parse_time)
}

pub fn get_i32(e: &Entity, k: &str) -> Option<i32> {
    match e.get(k)? {
        Value::Number(n) => n.as_i64().map(|n| n as i32),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Only the columns a row's owner wrote: drops OData metadata and system properties.
pub fn strip_metadata(e: &mut Entity) {
    e.retain(|k, _| !k.starts_with("odata.") && k != "Timestamp" && !k.starts_with("Timestamp@"));
}

pub fn etag(e: &Entity) -> Option<String> {
    get_str(e, "odata.etag")
}

// ---- history ----

/// One History row (without keys) for `event`, the `seq`-th event of `execution_id`.
pub fn history_row(instance_id: &str, execution_id: &str, e: &HistoryEvent) -> Entity {
    let mut r = Entity::new();
    set_str(&mut r, "EventType", e.event_type().as_str());
    r.insert("EventId".into(), json!(e.event_id));
    r.insert("IsPlayed".into(), json!(false));
    set_time(&mut r, "_Timestamp", e.timestamp);
    set_str(&mut r, "ExecutionId", execution_id);
    // Nested objects are JSON strings without `$type`; a null object is the literal "null" (v2).
    let obj = |v: Value| Value::String(v.to_string());
    match &e.kind {
        EventKind::ExecutionStarted {
            name,
            version,
            execution_id,
            input,
            parent_instance,
            scheduled_start_time,
            generation,
        } => {
            r.insert(
                "OrchestrationInstance".into(),
                obj(dtfx::orchestration_instance(
                    instance_id,
                    Some(execution_id),
                    false,
                )),
            );
            r.insert(
                "ParentInstance".into(),
                obj(parent_instance
                    .as_ref()
                    .map(|p| dtfx::parent_instance(p, false))
                    .unwrap_or(Value::Null)),
            );
            set_str(&mut r, "Name", name);
            set_str(&mut r, "Version", version);
            set_opt_str(&mut r, "Input", input.as_deref());
            set_str(&mut r, "Tags", "null");
            set_str(&mut r, "ParentTraceContext", "null");
            if let Some(t) = scheduled_start_time {
                set_time(&mut r, "ScheduledStartTime", *t);
            }
            r.insert("Generation".into(), json!(generation));
            r.insert("GenerateNewTrace".into(), json!(false));
        }
        EventKind::ExecutionCompleted {
            orchestration_status,
            result,
            failure_details,
        } => {
            set_str(&mut r, "OrchestrationStatus", orchestration_status.as_str());
            set_opt_str(&mut r, "Result", result.as_deref());
            r.insert(
                "FailureDetails".into(),
                obj(failure_details
                    .as_ref()
                    .map(|f| dtfx::failure_details(f, false))
                    .unwrap_or(Value::Null)),
            );
        }
        EventKind::ContinueAsNew { result } => {
            set_str(&mut r, "OrchestrationStatus", "ContinuedAsNew");
            set_opt_str(&mut r, "Result", result.as_deref());
            set_str(&mut r, "FailureDetails", "null");
        }
        EventKind::ExecutionTerminated { input } => set_opt_str(&mut r, "Input", input.as_deref()),
        EventKind::TaskScheduled { name, input } => {
            set_str(&mut r, "Name", name);
            set_str(&mut r, "Version", "");
            set_opt_str(&mut r, "Input", input.as_deref());
        }
        EventKind::TaskCompleted {
            task_scheduled_id,
            result,
        }
        | EventKind::SubOrchestrationInstanceCompleted {
            task_scheduled_id,
            result,
        } => {
            r.insert("TaskScheduledId".into(), json!(task_scheduled_id));
            set_opt_str(&mut r, "Result", result.as_deref());
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
            r.insert("TaskScheduledId".into(), json!(task_scheduled_id));
            set_opt_str(&mut r, "Reason", reason.as_deref());
            set_opt_str(&mut r, "Details", details.as_deref());
            r.insert(
                "FailureDetails".into(),
                obj(failure_details
                    .as_ref()
                    .map(|f| dtfx::failure_details(f, false))
                    .unwrap_or(Value::Null)),
            );
        }
        EventKind::SubOrchestrationInstanceCreated {
            name,
            instance_id,
            input,
        } => {
            set_str(&mut r, "Name", name);
            set_str(&mut r, "Version", "");
            set_str(&mut r, "InstanceId", instance_id);
            set_opt_str(&mut r, "Input", input.as_deref());
        }
        EventKind::TimerCreated { fire_at } => set_time(&mut r, "FireAt", *fire_at),
        EventKind::TimerFired { timer_id, fire_at } => {
            r.insert("TimerId".into(), json!(timer_id));
            set_time(&mut r, "FireAt", *fire_at);
        }
        EventKind::OrchestratorStarted | EventKind::OrchestratorCompleted => {}
        EventKind::EventSent {
            instance_id,
            name,
            input,
        } => {
            set_str(&mut r, "InstanceId", instance_id);
            set_str(&mut r, "Name", name);
            set_opt_str(&mut r, "Input", input.as_deref());
        }
        EventKind::EventRaised { name, input } => {
            set_str(&mut r, "Name", name);
            set_opt_str(&mut r, "Input", input.as_deref());
        }
        EventKind::GenericEvent { data } => set_opt_str(&mut r, "Data", data.as_deref()),
        EventKind::ExecutionSuspended { reason }
        | EventKind::ExecutionResumed { reason }
        | EventKind::ExecutionRewound { reason } => {
            set_opt_str(&mut r, "Reason", reason.as_deref())
        }
    }
    r
}

/// Reads a History row (large columns already resolved). Nested-object columns are JSON strings,
/// "null", or absent (v1).
pub fn event_from_row(row: &Entity) -> Result<HistoryEvent, String> {
    let mut v = Map::new();
    for (k, val) in row {
        if k.contains('@') || k.starts_with("odata.") {
            continue;
        }
        let key = match k.as_str() {
            "_Timestamp" => "Timestamp".to_string(),
            "Timestamp" => continue,
            other => other.to_string(),
        };
        let val = match (key.as_str(), val) {
            ("OrchestrationInstance" | "ParentInstance" | "FailureDetails", Value::String(s)) => {
                serde_json::from_str(s).unwrap_or(Value::Null)
            }
            _ => val.clone(),
        };
        v.insert(key, val);
    }
    let exec = get_str(row, "ExecutionId");
    event_from_json(&Value::Object(v), exec.as_deref()).map(|(e, _)| e)
}

// ---- instances ----

/// The Pending row a client start writes (spec §2.2), without Input when it went to a blob.
pub fn pending_row(hub: &str, new: &NewInstance, generation: i32, now: DateTime<Utc>) -> Entity {
    let mut r = Entity::new();
    set_str(
        &mut r,
        "PartitionKey",
        escape_partition_key(new.instance_id.as_str()),
    );
    set_str(&mut r, "RowKey", "");
    set_opt_str(&mut r, "Input", new.input.as_deref());
    set_time(&mut r, "CreatedTime", new.created_time);
    set_str(&mut r, "Name", &new.name);
    set_str(&mut r, "Version", &new.version);
    set_str(&mut r, "RuntimeStatus", RuntimeStatus::Pending.as_str());
    set_time(&mut r, "LastUpdatedTime", now);
    set_str(&mut r, "TaskHubName", hub);
    if let Some(t) = new.scheduled_start_time {
        set_time(&mut r, "ScheduledStartTime", t);
    }
    set_str(&mut r, "ExecutionId", &new.execution_id);
    r.insert("Generation".into(), json!(generation));
    // DTFx keeps an instance's tags as one JSON object in this column ("null" for none).
    let tags = if new.tags.is_empty() {
        "null".to_string()
    } else {
        serde_json::to_string(&new.tags).unwrap_or_else(|_| "null".into())
    };
    set_str(&mut r, "Tags", &tags);
    if let Some(p) = &new.parent {
        // taskhub's own column (DTFx keeps the parent only in history); readers ignore it.
        set_str(&mut r, "ParentInstanceId", &p.instance_id);
    }
    r
}

/// The row after a worker checkpoint: the columns a worker owns are replaced, the others
/// (Generation, Tags, ScheduledStartTime, …) kept from `previous`.
pub fn checkpoint_row(
    hub: &str,
    instance_id: &str,
    previous: Option<&Entity>,
    s: &InstanceState,
) -> Entity {
    let mut r = previous.cloned().unwrap_or_default();
    strip_metadata(&mut r);
    for k in [
        "Input",
        "Output",
        "CompletedTime",
        "CompletedTime@odata.type",
        "ParentInstanceId",
    ] {
        r.remove(k);
    }
    set_str(&mut r, "PartitionKey", escape_partition_key(instance_id));
    set_str(&mut r, "RowKey", "");
    set_str(&mut r, "Name", &s.name);
    set_str(&mut r, "Version", &s.version);
    set_str(&mut r, "ExecutionId", &s.execution_id);
    set_str(&mut r, "RuntimeStatus", s.runtime_status.as_str());
    set_opt_str(&mut r, "Input", s.input.as_deref());
    set_opt_str(&mut r, "Output", s.output.as_deref());
    set_str(
        &mut r,
        "CustomStatus",
        s.custom_status.as_deref().unwrap_or("null"),
    );
    set_time(&mut r, "CreatedTime", s.created_time);
    set_time(&mut r, "LastUpdatedTime", s.last_updated_time);
    if let Some(t) = s.completed_time {
        set_time(&mut r, "CompletedTime", t);
    }
    set_str(&mut r, "TaskHubName", hub);
    if !r.contains_key("Generation") {
        r.insert("Generation".into(), json!(0));
    }
    if !r.contains_key("Tags") {
        set_str(&mut r, "Tags", "null");
    }
    set_opt_str(&mut r, "ParentInstanceId", s.parent_instance_id.as_deref());
    r
}

/// Reads an Instances row (blob references in Input/Output already resolved by the caller).
pub fn record_from_row(row: &Entity) -> InstanceRecord {
    let now = Utc::now();
    let created = get_time(row, "CreatedTime").unwrap_or(now);
    InstanceRecord {
        instance_id: unescape_partition_key(&get_str(row, "PartitionKey").unwrap_or_default()),
        name: get_str(row, "Name").unwrap_or_default(),
        version: get_str(row, "Version").unwrap_or_default(),
        execution_id: get_str(row, "ExecutionId").unwrap_or_default(),
        // An unparsable status is DF's Unknown; Pending is the closest status we can show.
        runtime_status: get_str(row, "RuntimeStatus")
            .and_then(|s| RuntimeStatus::from_name(&s))
            .unwrap_or(RuntimeStatus::Pending),
        input: get_str(row, "Input"),
        output: get_str(row, "Output"),
        custom_status: get_str(row, "CustomStatus").filter(|c| c != "null"),
        created_time: created,
        last_updated_time: get_time(row, "LastUpdatedTime").unwrap_or(created),
        completed_time: get_time(row, "CompletedTime"),
        parent_instance_id: get_str(row, "ParentInstanceId"),
        tags: get_str(row, "Tags")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureDetails, ParentInstance};

    fn t(s: &str) -> DateTime<Utc> {
        dtfx::parse_time(s).unwrap()
    }

    #[test]
    fn history_rows_use_dtfx_columns_and_types() {
        let e = HistoryEvent::new(
            -1,
            t("2025-01-02T03:04:05.1234567Z"),
            EventKind::ExecutionStarted {
                name: "P".into(),
                version: String::new(),
                execution_id: "e1".into(),
                input: Some("1".into()),
                parent_instance: Some(ParentInstance {
                    name: "Parent".into(),
                    instance_id: "p".into(),
                    execution_id: "pe".into(),
                    task_scheduled_id: 4,
                }),
                scheduled_start_time: None,
                generation: 2,
            },
        );
        let r = history_row("i", "e1", &e);
        assert_eq!(r["EventType"], "ExecutionStarted");
        assert_eq!(r["EventId"], -1);
        assert_eq!(r["IsPlayed"], false);
        assert_eq!(r["_Timestamp@odata.type"], "Edm.DateTime");
        assert_eq!(r["_Timestamp"], "2025-01-02T03:04:05.1234567Z");
        assert_eq!(
            r["OrchestrationInstance"],
            "{\"InstanceId\":\"i\",\"ExecutionId\":\"e1\"}"
        );
        assert_eq!(r["Generation"], 2);
        assert!(!r.contains_key("ScheduledStartTime"));
        assert_eq!(event_from_row(&r).unwrap(), e);

        let f = HistoryEvent::new(
            5,
            t("2025-01-02T03:04:05Z"),
            EventKind::TaskFailed {
                task_scheduled_id: 5,
                reason: Some("boom".into()),
                details: None,
                failure_details: Some(FailureDetails::new("E", "boom")),
            },
        );
        let r = history_row("i", "e1", &f);
        assert!(r["FailureDetails"]
            .as_str()
            .unwrap()
            .starts_with("{\"ErrorType\":\"E\""));
        assert!(!r.contains_key("Details"));
        assert_eq!(event_from_row(&r).unwrap(), f);
    }

    #[test]
    fn v1_rows_without_null_object_columns_read() {
        let mut r = Entity::new();
        set_str(&mut r, "EventType", "ExecutionCompleted");
        r.insert("EventId".into(), json!(9));
        set_str(&mut r, "OrchestrationStatus", "Completed");
        set_str(&mut r, "Result", "\"done\"");
        set_time(&mut r, "_Timestamp", t("2025-01-02T03:04:05Z"));
        let e = event_from_row(&r).unwrap();
        assert_eq!(
            e.kind,
            EventKind::ExecutionCompleted {
                orchestration_status: RuntimeStatus::Completed,
                result: Some("\"done\"".into()),
                failure_details: None
            }
        );
    }
}
