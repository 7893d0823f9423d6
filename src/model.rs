//! The vocabulary every layer shares: instance ids, runtime statuses, history events.
//!
//! Names and numbers follow the Durable Task Framework (`spec/azure-storage-taskhub.md` §7) so that
//! every backend stores the same facts and the HTTP layer renders them the way Durable Functions does.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// An instance id that has been checked once, at the edge, and cannot hold an invalid value.
///
/// Rules are Durable Functions': non-empty, at most 256 characters, no `/ \ # ?`, no control
/// characters, and not starting with `@` (that prefix is reserved for entities); and not `.` or
/// `..`, which no URL can address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidInstanceId> {
        let raw = raw.into();
        if raw.trim().is_empty() {
            return Err(InvalidInstanceId("instance id must not be empty".into()));
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(InvalidInstanceId(format!(
                "instance id must be at most {} characters long",
                Self::MAX_LEN
            )));
        }
        if raw == "." || raw == ".." {
            // Every HTTP client rewrites `/instances/..` to its parent path, so such an
            // instance could never be addressed again.
            return Err(InvalidInstanceId(
                "instance id must not be '.' or '..' (URLs cannot address them)".into(),
            ));
        }
        if raw.starts_with('@') {
            return Err(InvalidInstanceId(
                "instance id must not start with '@' (reserved for entities)".into(),
            ));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control())
        {
            return Err(InvalidInstanceId(format!(
                "instance id must not contain {bad:?}: '/', '\\', '#', '?' and control characters are not allowed"
            )));
        }
        Ok(Self(raw))
    }

    /// A fresh id in Durable Functions' format: 32 lowercase hex digits.
    pub fn new_random() -> Self {
        Self(new_guid_n())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for InstanceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InvalidInstanceId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInstanceId(pub String);

/// A guid in .NET's `N` format (32 lowercase hex digits), as Durable Functions generates ids.
pub fn new_guid_n() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `OrchestrationRuntimeStatus`: names are the JSON strings, numbers are DTFx's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    Running,
    Completed,
    ContinuedAsNew,
    Failed,
    Canceled,
    Terminated,
    Pending,
    Suspended,
}

impl RuntimeStatus {
    pub const ALL: [RuntimeStatus; 8] = [
        Self::Running,
        Self::Completed,
        Self::ContinuedAsNew,
        Self::Failed,
        Self::Canceled,
        Self::Terminated,
        Self::Pending,
        Self::Suspended,
    ];

    pub fn as_i32(self) -> i32 {
        match self {
            Self::Running => 0,
            Self::Completed => 1,
            Self::ContinuedAsNew => 2,
            Self::Failed => 3,
            Self::Canceled => 4,
            Self::Terminated => 5,
            Self::Pending => 6,
            Self::Suspended => 7,
        }
    }

    pub fn from_i32(n: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_i32() == n)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::ContinuedAsNew => "ContinuedAsNew",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
            Self::Terminated => "Terminated",
            Self::Pending => "Pending",
            Self::Suspended => "Suspended",
        }
    }

    /// Exact, case-sensitive name match (the HTTP API's rule).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Case-insensitive name match (the command line's rule).
    pub fn from_name_ignore_case(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Completed, Failed, Canceled or Terminated: nothing more will happen to the instance.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Terminated
        )
    }
}

impl fmt::Display for RuntimeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// DTFx `FailureDetails`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailureDetails {
    pub error_type: String,
    pub error_message: String,
    #[serde(default)]
    pub stack_trace: Option<String>,
    #[serde(default)]
    pub inner_failure: Option<Box<FailureDetails>>,
    #[serde(default)]
    pub is_non_retriable: bool,
}

impl FailureDetails {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: message.into(),
            stack_trace: None,
            inner_failure: None,
            is_non_retriable: false,
        }
    }
}

impl fmt::Display for FailureDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// Where a sub-orchestration reports back to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParentInstance {
    pub name: String,
    pub instance_id: String,
    pub execution_id: String,
    pub task_scheduled_id: i32,
}

/// One durable fact in an execution's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryEvent {
    /// The sequence number of the action that scheduled this (TaskScheduled, TimerCreated, …);
    /// -1 for events that were not scheduled by the orchestrator.
    pub event_id: i32,
    #[serde(with = "full_precision")]
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl HistoryEvent {
    pub fn new(event_id: i32, timestamp: DateTime<Utc>, kind: EventKind) -> Self {
        Self {
            event_id,
            timestamp,
            kind,
        }
    }

    /// An event that is not the result of an orchestrator action (event id -1), stamped now.
    pub fn unscheduled(kind: EventKind) -> Self {
        Self::new(-1, now(), kind)
    }

    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }
}

/// The payload of each history event type. Field names are DTFx's; JSON text payloads
/// (inputs, results) are kept as text, exactly as DTFx stores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "EventType")]
pub enum EventKind {
    #[serde(rename_all = "PascalCase")]
    ExecutionStarted {
        name: String,
        #[serde(default)]
        version: String,
        execution_id: String,
        #[serde(default)]
        input: Option<String>,
        #[serde(default)]
        parent_instance: Option<ParentInstance>,
        #[serde(default)]
        scheduled_start_time: Option<DateTime<Utc>>,
        #[serde(default)]
        generation: i32,
    },
    #[serde(rename_all = "PascalCase")]
    ExecutionCompleted {
        orchestration_status: RuntimeStatus,
        #[serde(default)]
        result: Option<String>,
        #[serde(default)]
        failure_details: Option<FailureDetails>,
    },
    #[serde(rename_all = "PascalCase")]
    ExecutionTerminated {
        #[serde(default)]
        input: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    TaskScheduled {
        name: String,
        #[serde(default)]
        input: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    TaskCompleted {
        task_scheduled_id: i32,
        #[serde(default)]
        result: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    TaskFailed {
        task_scheduled_id: i32,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        failure_details: Option<FailureDetails>,
    },
    #[serde(rename_all = "PascalCase")]
    SubOrchestrationInstanceCreated {
        name: String,
        instance_id: String,
        #[serde(default)]
        input: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    SubOrchestrationInstanceCompleted {
        task_scheduled_id: i32,
        #[serde(default)]
        result: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    SubOrchestrationInstanceFailed {
        task_scheduled_id: i32,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        failure_details: Option<FailureDetails>,
    },
    #[serde(rename_all = "PascalCase")]
    TimerCreated {
        fire_at: DateTime<Utc>,
    },
    #[serde(rename_all = "PascalCase")]
    TimerFired {
        timer_id: i32,
        fire_at: DateTime<Utc>,
    },
    OrchestratorStarted,
    OrchestratorCompleted,
    #[serde(rename_all = "PascalCase")]
    EventSent {
        instance_id: String,
        name: String,
        #[serde(default)]
        input: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    EventRaised {
        name: String,
        #[serde(default)]
        input: Option<String>,
    },
    /// Ends an execution that continues as new; `result` is the next execution's input.
    #[serde(rename_all = "PascalCase")]
    ContinueAsNew {
        #[serde(default)]
        result: Option<String>,
    },
    /// Also what a rewound event becomes: `data` = `"Rewound: <old event type>"`, event id kept.
    #[serde(rename_all = "PascalCase")]
    GenericEvent {
        #[serde(default)]
        data: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    ExecutionSuspended {
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    ExecutionResumed {
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(rename_all = "PascalCase")]
    ExecutionRewound {
        #[serde(default)]
        reason: Option<String>,
    },
}

/// DTFx `EventType`, with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    ExecutionStarted = 0,
    ExecutionCompleted = 1,
    ExecutionTerminated = 3,
    TaskScheduled = 4,
    TaskCompleted = 5,
    TaskFailed = 6,
    SubOrchestrationInstanceCreated = 7,
    SubOrchestrationInstanceCompleted = 8,
    SubOrchestrationInstanceFailed = 9,
    TimerCreated = 10,
    TimerFired = 11,
    OrchestratorStarted = 12,
    OrchestratorCompleted = 13,
    EventSent = 14,
    EventRaised = 15,
    ContinueAsNew = 16,
    GenericEvent = 17,
    ExecutionSuspended = 19,
    ExecutionResumed = 20,
    ExecutionRewound = 21,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecutionStarted => "ExecutionStarted",
            Self::ExecutionCompleted => "ExecutionCompleted",
            Self::ExecutionTerminated => "ExecutionTerminated",
            Self::TaskScheduled => "TaskScheduled",
            Self::TaskCompleted => "TaskCompleted",
            Self::TaskFailed => "TaskFailed",
            Self::SubOrchestrationInstanceCreated => "SubOrchestrationInstanceCreated",
            Self::SubOrchestrationInstanceCompleted => "SubOrchestrationInstanceCompleted",
            Self::SubOrchestrationInstanceFailed => "SubOrchestrationInstanceFailed",
            Self::TimerCreated => "TimerCreated",
            Self::TimerFired => "TimerFired",
            Self::OrchestratorStarted => "OrchestratorStarted",
            Self::OrchestratorCompleted => "OrchestratorCompleted",
            Self::EventSent => "EventSent",
            Self::EventRaised => "EventRaised",
            Self::ContinueAsNew => "ContinueAsNew",
            Self::GenericEvent => "GenericEvent",
            Self::ExecutionSuspended => "ExecutionSuspended",
            Self::ExecutionResumed => "ExecutionResumed",
            Self::ExecutionRewound => "ExecutionRewound",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventKind {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::ExecutionStarted { .. } => EventType::ExecutionStarted,
            Self::ExecutionCompleted { .. } => EventType::ExecutionCompleted,
            Self::ExecutionTerminated { .. } => EventType::ExecutionTerminated,
            Self::TaskScheduled { .. } => EventType::TaskScheduled,
            Self::TaskCompleted { .. } => EventType::TaskCompleted,
            Self::TaskFailed { .. } => EventType::TaskFailed,
            Self::SubOrchestrationInstanceCreated { .. } => {
                EventType::SubOrchestrationInstanceCreated
            }
            Self::SubOrchestrationInstanceCompleted { .. } => {
                EventType::SubOrchestrationInstanceCompleted
            }
            Self::SubOrchestrationInstanceFailed { .. } => {
                EventType::SubOrchestrationInstanceFailed
            }
            Self::TimerCreated { .. } => EventType::TimerCreated,
            Self::TimerFired { .. } => EventType::TimerFired,
            Self::OrchestratorStarted => EventType::OrchestratorStarted,
            Self::OrchestratorCompleted => EventType::OrchestratorCompleted,
            Self::EventSent { .. } => EventType::EventSent,
            Self::EventRaised { .. } => EventType::EventRaised,
            Self::ContinueAsNew { .. } => EventType::ContinueAsNew,
            Self::GenericEvent { .. } => EventType::GenericEvent,
            Self::ExecutionSuspended { .. } => EventType::ExecutionSuspended,
            Self::ExecutionResumed { .. } => EventType::ExecutionResumed,
            Self::ExecutionRewound { .. } => EventType::ExecutionRewound,
        }
    }
}

/// The current time at .NET tick precision (100 ns), the precision DTFx stores and every client
/// parses: all event times come from here, so none carries more than 7 fraction digits.
pub fn now() -> DateTime<Utc> {
    use chrono::DurationRound;
    let t = Utc::now();
    t.duration_trunc(chrono::Duration::nanoseconds(100))
        .unwrap_or(t)
}

/// The prefix a rewound event's `GenericEvent.Data` starts with.
pub const REWOUND_PREFIX: &str = "Rewound: ";

/// `2018-02-28T05:18:49Z`: the status object's timestamp format (whole seconds).
pub fn format_status_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Full precision with trailing zeros trimmed: `2018-02-28T05:18:53.891081Z`.
pub fn format_history_time(t: DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match s.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('Z').trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => s,
    }
}

mod full_precision {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_history_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_rules() {
        assert!(InstanceId::parse("abc def").is_ok());
        for bad in [
            "", "  ", "a/b", "a\\b", "a#b", "a?b", "@x@y", "a\u{1}b", ".", "..",
        ] {
            assert!(
                InstanceId::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(InstanceId::parse("x".repeat(256)).is_ok());
        assert!(InstanceId::parse("x".repeat(257)).is_err());
        assert_eq!(InstanceId::new_random().as_str().len(), 32);
    }

    #[test]
    fn status_names_and_numbers() {
        for s in RuntimeStatus::ALL {
            assert_eq!(RuntimeStatus::from_i32(s.as_i32()), Some(s));
            assert_eq!(RuntimeStatus::from_name(s.as_str()), Some(s));
        }
        assert_eq!(RuntimeStatus::from_name("running"), None);
        assert_eq!(
            RuntimeStatus::from_name_ignore_case("running"),
            Some(RuntimeStatus::Running)
        );
    }

    #[test]
    fn history_event_round_trips_with_dtfx_names() {
        let e = HistoryEvent::new(
            3,
            "2018-02-28T05:18:53.891081Z".parse().unwrap(),
            EventKind::TaskCompleted {
                task_scheduled_id: 3,
                result: Some("\"Hello Tokyo!\"".into()),
            },
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["EventType"], "TaskCompleted");
        assert_eq!(json["TaskScheduledId"], 3);
        assert_eq!(json["Timestamp"], "2018-02-28T05:18:53.891081Z");
        let back: HistoryEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn event_times_have_tick_precision() {
        let t = format_history_time(now());
        let digits = t
            .split_once('.')
            .map_or(0, |(_, f)| f.trim_end_matches('Z').len());
        assert!(digits <= 7, "{t}");
    }

    #[test]
    fn timestamp_formats() {
        let t: DateTime<Utc> = "2018-02-28T05:18:49.500Z".parse().unwrap();
        assert_eq!(format_status_time(t), "2018-02-28T05:18:49Z");
        assert_eq!(format_history_time(t), "2018-02-28T05:18:49.5Z");
        let whole: DateTime<Utc> = "2018-02-28T05:18:49Z".parse().unwrap();
        assert_eq!(format_history_time(whole), "2018-02-28T05:18:49Z");
    }
}
