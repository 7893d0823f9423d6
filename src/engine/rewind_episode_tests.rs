//! Planning against the row and the history: the store has already turned the row Pending when
//! a rewind message arrives, so a rewind goes by the history's outcome; anything else by the row.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::episode::{plan, Plan};
use super::registry::Registry;
use super::OrchestrationContext;
use crate::model::{EventKind, HistoryEvent, RuntimeStatus};
use crate::store::{
    HistoryWrite, InstanceRecord, OrchestrationCommit, OrchestrationMessage, OrchestrationWorkItem,
};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.orchestrator("CallA", |ctx: OrchestrationContext| async move {
        Ok(ctx.call_activity("A", json!(null)).await?)
    });
    r
}

/// An instance as the store holds it, with the events applied so far.
struct Instance {
    row: InstanceRecord,
    history: Vec<HistoryEvent>,
}

impl Instance {
    fn new() -> Self {
        Self {
            row: InstanceRecord {
                instance_id: "i".into(),
                name: "CallA".into(),
                version: String::new(),
                execution_id: "e1".into(),
                runtime_status: RuntimeStatus::Pending,
                input: None,
                output: None,
                custom_status: None,
                created_time: t(0),
                last_updated_time: t(0),
                completed_time: None,
                parent_instance_id: None,
                tags: Default::default(),
            },
            history: Vec::new(),
        }
    }

    /// Plans one episode that delivers `events` and applies its commit.
    fn deliver(&mut self, events: Vec<EventKind>, at: i64) -> OrchestrationCommit {
        let item = OrchestrationWorkItem {
            instance_id: "i".into(),
            lock_token: "lock".into(),
            instance: Some(self.row.clone()),
            history: Arc::new(self.history.clone()),
            messages: events
                .into_iter()
                .map(|kind| OrchestrationMessage {
                    instance_id: "i".into(),
                    execution_id: None,
                    event: HistoryEvent::new(-1, t(at), kind),
                    visible_at: None,
                })
                .collect(),
        };
        let Plan::Commit(commit) = plan(&registry(), &item, t(at)) else {
            panic!("expected a commit");
        };
        match &commit.history {
            HistoryWrite::Append(events) => self.history.extend(events.iter().cloned()),
            HistoryWrite::Replace(events) => self.history = events.clone(),
        }
        if let Some(state) = &commit.state {
            self.row.runtime_status = state.runtime_status;
        }
        *commit
    }

    /// Started, then failed by its one activity.
    fn failed() -> Self {
        let mut i = Self::new();
        i.deliver(
            vec![EventKind::ExecutionStarted {
                name: "CallA".into(),
                version: String::new(),
                execution_id: "e1".into(),
                input: None,
                parent_instance: None,
                scheduled_start_time: None,
                generation: 0,
            }],
            1,
        );
        i.deliver(
            vec![EventKind::TaskFailed {
                task_scheduled_id: 0,
                reason: Some("boom".into()),
                details: None,
                failure_details: None,
            }],
            2,
        );
        assert_eq!(i.row.runtime_status, RuntimeStatus::Failed);
        i
    }
}

fn rewound() -> EventKind {
    EventKind::ExecutionRewound {
        reason: Some("fixed".into()),
    }
}

#[test]
fn a_rewind_message_on_the_pending_row_of_a_failed_execution_runs_the_task_again() {
    let mut i = Instance::failed();
    // What `Store::rewind` leaves: a Pending row over the unchanged, failed history.
    i.row.runtime_status = RuntimeStatus::Pending;
    let commit = i.deliver(vec![rewound()], 3);
    assert!(matches!(commit.history, HistoryWrite::Replace(_)));
    assert_eq!(i.row.runtime_status, RuntimeStatus::Running);
    assert_eq!(commit.activities.len(), 1);
    assert_eq!(commit.activities[0].name, "A");
    assert_eq!(commit.activities[0].attempt, 2);
}

#[test]
fn a_second_rewind_message_after_the_rewind_rewinds_nothing() {
    let mut i = Instance::failed();
    i.row.runtime_status = RuntimeStatus::Pending;
    i.deliver(vec![rewound()], 3);
    let commit = i.deliver(vec![rewound()], 4);
    assert!(
        matches!(commit.history, HistoryWrite::Append(_)),
        "{commit:?}"
    );
    assert!(
        commit.activities.is_empty(),
        "the task was not scheduled again"
    );
    assert_eq!(i.row.runtime_status, RuntimeStatus::Running);
}

#[test]
fn a_history_that_ended_under_a_row_that_did_not_is_finished_by_the_next_message() {
    // A checkpoint wrote the failed history, then its process died before the row: the row
    // still says Running when the message that was being handled comes back.
    let mut i = Instance::failed();
    i.row.runtime_status = RuntimeStatus::Running;
    let commit = i.deliver(
        vec![EventKind::TaskFailed {
            task_scheduled_id: 0,
            reason: Some("boom".into()),
            details: None,
            failure_details: None,
        }],
        3,
    );
    assert_eq!(
        commit.state.map(|s| s.runtime_status),
        Some(RuntimeStatus::Failed)
    );
}
