//! The promises every [`Store`] backend keeps, as one suite each backend runs.
//!
//! Each check takes a [`Factory`] that hands out a store for a hub name; every check asks for
//! fresh, unique hub names, so checks can share one storage account or file and run in
//! parallel. Run them all with [`run_all`], or one test per check with
//! [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! Timing-based checks (timers, lock expiry) use waits of about a second and only assert
//! "not before" and "eventually", never upper bounds on speed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{
    ActivityRequest, HistoryWrite, InstanceFilter, InstanceQuery, InstanceRecord, InstanceState,
    NewInstance, OrchestrationCommit, OrchestrationMessage, OrchestrationWorkItem, ReusePolicy,
    StatusSet, Store, StoreError,
};
use crate::model::{EventKind, EventType, HistoryEvent, InstanceId, RuntimeStatus};

/// Hands out the store of the named hub. Names are unique per call, alphanumeric, start with a
/// letter and are at most 30 characters long.
pub type Factory = Arc<dyn Fn(String) -> BoxFuture<'static, Arc<dyn Store>> + Send + Sync>;

/// Generous: only reached when something is broken.
const LONG_WAIT: Duration = Duration::from_secs(10);
const LOCK_FOR: Duration = Duration::from_secs(60);

async fn fresh(make: &Factory, tag: &str) -> Arc<dyn Store> {
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let name = format!("t{tag}{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let store = make(name).await;
    store.create_hub().await.expect("create_hub");
    store
}

fn base_time() -> DateTime<Utc> {
    "2024-01-01T00:00:00Z".parse().expect("valid time")
}

fn at(seconds: i64) -> DateTime<Utc> {
    base_time() + chrono::Duration::seconds(seconds)
}

fn new_instance(id: &str, name: &str, created: DateTime<Utc>) -> NewInstance {
    NewInstance {
        instance_id: InstanceId::parse(id).expect("valid id"),
        name: name.to_owned(),
        version: String::new(),
        execution_id: crate::model::new_guid_n(),
        input: Some(format!("\"input of {id}\"")),
        created_time: created,
        scheduled_start_time: None,
        parent: None,
        tags: Default::default(),
    }
}

/// Now, at the precision every backend keeps: the Durable Task Framework's 100 ns tick (the
/// Azure Storage layout stores times as .NET ticks, 7 fraction digits).
fn now() -> DateTime<Utc> {
    let t = Utc::now();
    let nanos = t.timestamp_subsec_nanos();
    t - chrono::Duration::nanoseconds(i64::from(nanos % 100))
}

fn event(kind: EventKind) -> HistoryEvent {
    HistoryEvent::new(-1, now(), kind)
}

/// The TaskScheduled event an episode appends with each activity it schedules.
fn scheduled(task_id: i32, name: &str) -> HistoryEvent {
    HistoryEvent::new(
        task_id,
        now(),
        EventKind::TaskScheduled {
            name: name.into(),
            input: None,
        },
    )
}

fn raised(name: &str) -> HistoryEvent {
    event(EventKind::EventRaised {
        name: name.to_owned(),
        input: None,
    })
}

fn message(instance_id: &str, event: HistoryEvent) -> OrchestrationMessage {
    OrchestrationMessage {
        instance_id: instance_id.to_owned(),
        execution_id: None,
        event,
        visible_at: None,
    }
}

/// The state an executor would write after an episode of `item`.
fn state_of(item: &OrchestrationWorkItem, status: RuntimeStatus) -> InstanceState {
    let row = item.instance.as_ref().expect("work item has a row");
    InstanceState {
        name: row.name.clone(),
        version: row.version.clone(),
        execution_id: row.execution_id.clone(),
        runtime_status: status,
        input: row.input.clone(),
        output: status.is_terminal().then(|| "\"done\"".to_owned()),
        custom_status: None,
        created_time: row.created_time,
        last_updated_time: now(),
        completed_time: status.is_terminal().then(now),
        parent_instance_id: row.parent_instance_id.clone(),
        tags: row.tags.clone(),
    }
}

/// An episode that appends `events` (plus the delivered messages, as an executor would).
fn episode(
    item: &OrchestrationWorkItem,
    status: RuntimeStatus,
    events: Vec<HistoryEvent>,
) -> OrchestrationCommit {
    let mut history = vec![event(EventKind::OrchestratorStarted)];
    history.extend(item.messages.iter().map(|m| m.event.clone()));
    history.extend(events);
    OrchestrationCommit {
        history: HistoryWrite::Append(history),
        state: Some(state_of(item, status)),
        messages: Vec::new(),
        new_instances: Vec::new(),
        activities: Vec::new(),
    }
}

async fn lock(store: &dyn Store) -> OrchestrationWorkItem {
    store
        .lock_next_orchestration(LOCK_FOR, LONG_WAIT)
        .await
        .expect("lock_next_orchestration")
        .expect("a work item within the wait")
}

async fn lock_none(store: &dyn Store, wait: Duration) {
    let item = store
        .lock_next_orchestration(LOCK_FOR, wait)
        .await
        .expect("lock_next_orchestration");
    assert!(item.is_none(), "expected no work, got {item:?}");
}

fn event_types(events: &[HistoryEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type()).collect()
}

/// Locks the instance's start and completes it with `status` (locking other instances'
/// start messages on the way is fine: they are completed as Running).
async fn run_to(store: &dyn Store, targets: &HashMap<String, RuntimeStatus>) {
    let mut left: HashSet<&String> = targets.keys().collect();
    while !left.is_empty() {
        let item = lock(store).await;
        let status = targets
            .get(&item.instance_id)
            .copied()
            .unwrap_or(RuntimeStatus::Running);
        left.remove(&item.instance_id);
        store
            .complete_orchestration(&item, episode(&item, status, vec![]))
            .await
            .expect("complete_orchestration");
    }
}

fn all_query(filter: InstanceFilter) -> InstanceQuery {
    InstanceQuery {
        filter,
        page_size: 1000,
        continuation: None,
        include_input: true,
        max_bytes: None,
    }
}

async fn ids(store: &dyn Store, filter: InstanceFilter) -> Vec<String> {
    let page = store
        .query_instances(&all_query(filter))
        .await
        .expect("query_instances");
    assert!(page.continuation.is_none());
    page.items.into_iter().map(|r| r.instance_id).collect()
}

// ---- management ----

pub async fn create_and_get(make: Factory) {
    let store = fresh(&make, "create").await;
    assert_eq!(store.get_instance("nope").await.unwrap(), None);
    assert!(store.get_history("nope").await.unwrap().is_empty());

    let mut new = new_instance("order-1", "Hello", at(5));
    new.parent = Some(crate::model::ParentInstance {
        name: "Parent".into(),
        instance_id: "p1".into(),
        execution_id: "e1".into(),
        task_scheduled_id: 3,
    });
    store
        .create_instance(new.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let row = store.get_instance("order-1").await.unwrap().expect("row");
    assert_eq!(row.instance_id, "order-1");
    assert_eq!(row.name, "Hello");
    assert_eq!(row.version, "");
    assert_eq!(row.execution_id, new.execution_id);
    assert_eq!(row.runtime_status, RuntimeStatus::Pending);
    assert_eq!(row.input, new.input);
    assert_eq!(row.output, None);
    assert_eq!(row.custom_status, None);
    assert_eq!(row.created_time, at(5));
    assert!(row.last_updated_time > at(5));
    assert_eq!(row.completed_time, None);
    assert_eq!(row.parent_instance_id.as_deref(), Some("p1"));
    assert!(store.get_history("order-1").await.unwrap().is_empty());
}

/// Tags are written with the start and read back by every read, untouched by checkpoints (the
/// episode's state carries no say over them) and replaced by a new start.
/// A name never used is no hub, and asking does not make it one; an instance makes it one, and
/// `delete_hub` ends it.
pub async fn hub_exists_only_once_used(make: Factory) {
    let name = format!(
        "tunused{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store = make(name.clone()).await;
    assert!(!store.hub_exists().await.unwrap());
    assert!(!store.hub_exists().await.unwrap(), "asking created it");
    assert!(store.get_instance("nobody").await.unwrap().is_none());
    assert!(!store.hub_exists().await.unwrap(), "a read created it");

    store
        .create_instance(
            new_instance("first", "Hello", at(1)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    assert!(store.hub_exists().await.unwrap());
    // Another handle on the same hub sees it too (a server opens hubs afresh).
    assert!(make(name).await.hub_exists().await.unwrap());

    store.delete_hub().await.unwrap();
    assert!(!store.hub_exists().await.unwrap());
}

pub async fn tags_stay_with_the_instance(make: Factory) {
    let store = fresh(&make, "tags").await;
    let mut new = new_instance("tagged", "Hello", at(1));
    new.tags = [("team", "payments"), ("tier", "gold")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    store
        .create_instance(new.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    store
        .create_instance(
            new_instance("plain", "Hello", at(2)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    let row = store.get_instance("tagged").await.unwrap().unwrap();
    assert_eq!(row.tags, new.tags);
    assert!(store
        .get_instance("plain")
        .await
        .unwrap()
        .unwrap()
        .tags
        .is_empty());

    // A checkpoint whose state says nothing of tags keeps them (both instances get one).
    for _ in 0..2 {
        let item = lock(&*store).await;
        let mut commit = episode(&item, RuntimeStatus::Running, vec![]);
        if let Some(state) = commit.state.as_mut() {
            state.tags = Default::default();
        }
        store.complete_orchestration(&item, commit).await.unwrap();
    }
    assert_eq!(
        store.get_instance("tagged").await.unwrap().unwrap().tags,
        new.tags
    );
    let page = store
        .query_instances(&InstanceQuery {
            filter: InstanceFilter::default(),
            page_size: 10,
            continuation: None,
            include_input: false,
            max_bytes: None,
        })
        .await
        .unwrap();
    let listed = page
        .items
        .iter()
        .find(|r| r.instance_id == "tagged")
        .unwrap();
    assert_eq!(listed.tags, new.tags);

    // A new start replaces them.
    let item_done = store.get_instance("tagged").await.unwrap().unwrap();
    assert_eq!(item_done.runtime_status, RuntimeStatus::Running);
    store
        .create_instance(
            new_instance("tagged", "Hello", at(3)),
            ReusePolicy::ReplaceAny,
        )
        .await
        .unwrap();
    assert!(store
        .get_instance("tagged")
        .await
        .unwrap()
        .unwrap()
        .tags
        .is_empty());
}

pub async fn reuse_policies(make: Factory) {
    let store = fresh(&make, "reuse").await;
    let first = new_instance("a", "Hello", at(1));
    store
        .create_instance(first.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let again = new_instance("a", "Hello", at(2));
    match store
        .create_instance(again.clone(), ReusePolicy::ReplaceTerminal)
        .await
    {
        Err(StoreError::AlreadyExists {
            instance_id,
            status,
        }) => {
            assert_eq!(instance_id, "a");
            assert_eq!(status, RuntimeStatus::Pending);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // Running is not terminal either.
    run_to(
        &*store,
        &HashMap::from([("a".into(), RuntimeStatus::Running)]),
    )
    .await;
    assert!(matches!(
        store
            .create_instance(again.clone(), ReusePolicy::ReplaceTerminal)
            .await,
        Err(StoreError::AlreadyExists {
            status: RuntimeStatus::Running,
            ..
        })
    ));
    let row = store.get_instance("a").await.unwrap().unwrap();
    assert_eq!(row.execution_id, first.execution_id);

    // Once terminal, the id can be reused; the old history goes.
    let item = lock_after_event(&*store, "a").await;
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Completed, vec![]))
        .await
        .unwrap();
    assert!(!store.get_history("a").await.unwrap().is_empty());
    store
        .create_instance(again.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let row = store.get_instance("a").await.unwrap().unwrap();
    assert_eq!(row.execution_id, again.execution_id);
    assert_eq!(row.runtime_status, RuntimeStatus::Pending);
    assert_eq!(row.created_time, at(2));
    assert_eq!(row.output, None);
    assert_eq!(row.completed_time, None);
    assert!(store.get_history("a").await.unwrap().is_empty());

    // The protocol's policy replaces only the statuses it names: none means never.
    let never = ReusePolicy::ReplaceIn(StatusSet::default());
    assert!(matches!(
        store
            .create_instance(new_instance("a", "Hello", at(2)), never)
            .await,
        Err(StoreError::AlreadyExists {
            status: RuntimeStatus::Pending,
            ..
        })
    ));
    let only_failed = ReusePolicy::ReplaceIn([RuntimeStatus::Failed].into_iter().collect());
    assert!(matches!(
        store
            .create_instance(new_instance("a", "Hello", at(2)), only_failed)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let pending_too = ReusePolicy::ReplaceIn([RuntimeStatus::Pending].into_iter().collect());
    let replacement = new_instance("a", "Replacement", at(2));
    store
        .create_instance(replacement.clone(), pending_too)
        .await
        .unwrap();
    let row = store.get_instance("a").await.unwrap().unwrap();
    assert_eq!(row.execution_id, replacement.execution_id);
    assert_eq!(row.name, "Replacement");

    // ReplaceAny replaces a live instance too.
    let third = new_instance("a", "Other", at(3));
    store
        .create_instance(third.clone(), ReusePolicy::ReplaceAny)
        .await
        .unwrap();
    let row = store.get_instance("a").await.unwrap().unwrap();
    assert_eq!(row.execution_id, third.execution_id);
    assert_eq!(row.name, "Other");
    // Only the newest execution's start is delivered.
    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "a");
    assert_eq!(item.messages.len(), 1);
    match &item.messages[0].event.kind {
        EventKind::ExecutionStarted { execution_id, .. } => {
            assert_eq!(execution_id, &third.execution_id)
        }
        other => panic!("expected ExecutionStarted, got {other:?}"),
    }
}

/// Raises an event on `id` and locks the work item that delivers it.
async fn lock_after_event(store: &dyn Store, id: &str) -> OrchestrationWorkItem {
    store
        .send_message(message(id, raised("poke")))
        .await
        .unwrap();
    let item = lock(store).await;
    assert_eq!(item.instance_id, id);
    item
}

pub async fn send_message_needs_an_instance(make: Factory) {
    let store = fresh(&make, "send").await;
    match store.send_message(message("ghost", raised("x"))).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, "ghost"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    store
        .create_instance(
            new_instance("real", "N", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    store
        .send_message(message("real", raised("x")))
        .await
        .unwrap();
}

// ---- rewind ----

/// Starts `id` and fails it the way an executor does: an episode that ends with a Failed
/// ExecutionCompleted event and a Failed row.
async fn fail_instance(store: &dyn Store, id: &str) {
    store
        .create_instance(new_instance(id, "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(store).await;
    assert_eq!(item.instance_id, id);
    let failed = event(EventKind::ExecutionCompleted {
        orchestration_status: RuntimeStatus::Failed,
        result: Some("\"boom\"".into()),
        failure_details: None,
    });
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Failed, vec![failed]))
        .await
        .unwrap();
}

fn assert_not_failed(result: Result<(), StoreError>, id: &str, status: RuntimeStatus) {
    match result {
        Err(StoreError::NotFailed {
            instance_id,
            status: actual,
        }) => {
            assert_eq!(instance_id, id);
            assert_eq!(actual, status);
        }
        other => panic!("expected NotFailed({status}) for {id}, got {other:?}"),
    }
}

pub async fn rewind_makes_a_failed_instance_pending_at_once(make: Factory) {
    let store = fresh(&make, "rewind").await;
    fail_instance(&*store, "f").await;
    let failed = store.get_instance("f").await.unwrap().unwrap();
    assert_eq!(failed.runtime_status, RuntimeStatus::Failed);
    let mut changes = store.subscribe();

    store.rewind("f", Some("fixed".into())).await.unwrap();
    // The very next read says Pending: a client polling after the rewind must not stop at
    // the Failed of before.
    let row = store.get_instance("f").await.unwrap().unwrap();
    assert_eq!(row.runtime_status, RuntimeStatus::Pending);
    assert_eq!(row.execution_id, failed.execution_id);
    assert!(row.last_updated_time >= failed.last_updated_time);
    if let Some(rx) = changes.as_mut() {
        wait_for_change(rx, "f").await;
    }
    // Accepted once: the instance is no longer Failed.
    assert_not_failed(store.rewind("f", None).await, "f", RuntimeStatus::Pending);

    // The executor gets one message that asks for the rewind, with its reason.
    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "f");
    assert_eq!(
        item.instance.as_ref().map(|r| r.runtime_status),
        Some(RuntimeStatus::Pending)
    );
    assert_eq!(item.messages.len(), 1, "{:?}", item.messages);
    match &item.messages[0].event.kind {
        EventKind::ExecutionRewound { reason } | EventKind::GenericEvent { data: reason } => {
            assert_eq!(reason.as_deref(), Some("fixed"))
        }
        other => panic!("expected a rewind message, got {other:?}"),
    }
    // Its episode runs the instance on to completion.
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Completed, vec![]))
        .await
        .unwrap();
    let row = store.get_instance("f").await.unwrap().unwrap();
    assert_eq!(row.runtime_status, RuntimeStatus::Completed);
    assert_not_failed(store.rewind("f", None).await, "f", RuntimeStatus::Completed);
    lock_none(&*store, Duration::from_millis(200)).await;
}

pub async fn rewind_refuses_what_is_not_failed(make: Factory) {
    let store = fresh(&make, "norewind").await;
    match store.rewind("ghost", None).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, "ghost"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get_instance("ghost").await.unwrap(), None);

    for id in ["running", "done"] {
        store
            .create_instance(new_instance(id, "N", at(0)), ReusePolicy::ReplaceTerminal)
            .await
            .unwrap();
    }
    run_to(
        &*store,
        &HashMap::from([
            ("running".into(), RuntimeStatus::Running),
            ("done".into(), RuntimeStatus::Completed),
        ]),
    )
    .await;
    store
        .create_instance(
            new_instance("pending", "N", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    for (id, status) in [
        ("pending", RuntimeStatus::Pending),
        ("running", RuntimeStatus::Running),
        ("done", RuntimeStatus::Completed),
    ] {
        let before = store.get_instance(id).await.unwrap().unwrap();
        assert_not_failed(store.rewind(id, None).await, id, status);
        assert_eq!(store.get_instance(id).await.unwrap().unwrap(), before);
    }
    // Nothing was queued: the only work is the Pending instance's own start.
    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "pending");
    assert_eq!(
        event_types(
            &item
                .messages
                .iter()
                .map(|m| m.event.clone())
                .collect::<Vec<_>>()
        ),
        [EventType::ExecutionStarted]
    );
    lock_none(&*store, Duration::from_millis(300)).await;
}

// ---- execution ----

pub async fn lock_delivers_start_and_history(make: Factory) {
    let store = fresh(&make, "lock").await;
    lock_none(&*store, Duration::from_millis(100)).await;
    let new = new_instance("i1", "Hello", at(0));
    store
        .create_instance(new.clone(), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "i1");
    assert!(!item.lock_token.is_empty());
    assert!(item.history.is_empty());
    assert_eq!(
        item.instance.as_ref().map(|r| r.execution_id.clone()),
        Some(new.execution_id.clone())
    );
    assert_eq!(item.messages.len(), 1);
    let start = &item.messages[0];
    assert_eq!(start.instance_id, "i1");
    assert_eq!(start.event, new.started_event());
    // Nothing else is ready.
    lock_none(&*store, Duration::from_millis(100)).await;
}

pub async fn complete_writes_history_and_row(make: Factory) {
    let store = fresh(&make, "complete").await;
    store
        .create_instance(
            new_instance("i1", "Hello", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    let mut changes = store.subscribe();

    let item = lock(&*store).await;
    let mut commit = episode(&item, RuntimeStatus::Running, vec![]);
    commit.state.as_mut().unwrap().custom_status = Some("\"step 1\"".into());
    let first_history = match &commit.history {
        HistoryWrite::Append(h) => h.clone(),
        HistoryWrite::Replace(_) => unreachable!(),
    };
    store
        .complete_orchestration(&item, commit.clone())
        .await
        .unwrap();
    assert_eq!(store.get_history("i1").await.unwrap(), first_history);
    let row = store.get_instance("i1").await.unwrap().unwrap();
    assert_eq!(row.runtime_status, RuntimeStatus::Running);
    assert_eq!(row.custom_status.as_deref(), Some("\"step 1\""));
    if let Some(rx) = changes.as_mut() {
        wait_for_change(rx, "i1").await;
    }
    // The lock is gone with the complete.
    assert!(matches!(
        store.complete_orchestration(&item, commit).await,
        Err(StoreError::LockLost)
    ));

    // A second episode sees the first one's history and appends to it.
    let item = lock_after_event(&*store, "i1").await;
    assert_eq!(*item.history, first_history);
    assert_eq!(item.messages.len(), 1);
    let commit = episode(
        &item,
        RuntimeStatus::Completed,
        vec![event(EventKind::ExecutionCompleted {
            orchestration_status: RuntimeStatus::Completed,
            result: Some("\"done\"".into()),
            failure_details: None,
        })],
    );
    let mut expected = first_history.clone();
    if let HistoryWrite::Append(h) = &commit.history {
        expected.extend(h.iter().cloned());
    }
    store.complete_orchestration(&item, commit).await.unwrap();
    assert_eq!(store.get_history("i1").await.unwrap(), expected);
    let row = store.get_instance("i1").await.unwrap().unwrap();
    assert_eq!(row.runtime_status, RuntimeStatus::Completed);
    assert_eq!(row.output.as_deref(), Some("\"done\""));
    assert!(row.completed_time.is_some());

    // A late message to a completed instance is still delivered, with its history.
    let item = lock_after_event(&*store, "i1").await;
    assert_eq!(*item.history, expected);
    assert_eq!(
        item.instance.as_ref().map(|r| r.runtime_status),
        Some(RuntimeStatus::Completed)
    );
}

pub async fn continue_as_new_replaces_history(make: Factory) {
    let store = fresh(&make, "replace").await;
    store
        .create_instance(
            new_instance("c", "Loop", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    let item = lock(&*store).await;
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();
    let item = lock_after_event(&*store, "c").await;
    let next_execution = crate::model::new_guid_n();
    let fresh_history = vec![
        event(EventKind::OrchestratorStarted),
        event(EventKind::ExecutionStarted {
            name: "Loop".into(),
            version: String::new(),
            execution_id: next_execution.clone(),
            input: Some("2".into()),
            parent_instance: None,
            scheduled_start_time: None,
            generation: 1,
        }),
    ];
    let mut state = state_of(&item, RuntimeStatus::Running);
    state.execution_id = next_execution.clone();
    state.input = Some("2".into());
    store
        .complete_orchestration(
            &item,
            OrchestrationCommit {
                history: HistoryWrite::Replace(fresh_history.clone()),
                state: Some(state),
                messages: vec![],
                new_instances: vec![],
                activities: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(store.get_history("c").await.unwrap(), fresh_history);
    let row = store.get_instance("c").await.unwrap().unwrap();
    assert_eq!(row.execution_id, next_execution);
    assert_eq!(row.input.as_deref(), Some("2"));

    // The next episode builds on the replaced history.
    let item = lock_after_event(&*store, "c").await;
    assert_eq!(*item.history, fresh_history);
    let commit = episode(&item, RuntimeStatus::Running, vec![]);
    let mut expected = fresh_history.clone();
    if let HistoryWrite::Append(h) = &commit.history {
        expected.extend(h.iter().cloned());
    }
    store.complete_orchestration(&item, commit).await.unwrap();
    assert_eq!(store.get_history("c").await.unwrap(), expected);
}

pub async fn complete_sends_messages_and_creates_instances(make: Factory) {
    let store = fresh(&make, "fanout").await;
    for id in ["parent", "other"] {
        store
            .create_instance(new_instance(id, "N", at(0)), ReusePolicy::ReplaceTerminal)
            .await
            .unwrap();
    }
    // Start both, so that only the parent's episode below produces work.
    run_to(
        &*store,
        &HashMap::from([
            ("parent".into(), RuntimeStatus::Running),
            ("other".into(), RuntimeStatus::Running),
        ]),
    )
    .await;
    let item = lock_after_event(&*store, "parent").await;
    let mut child = new_instance("child", "Child", at(1));
    child.parent = Some(crate::model::ParentInstance {
        name: "N".into(),
        instance_id: "parent".into(),
        execution_id: item.instance.as_ref().unwrap().execution_id.clone(),
        task_scheduled_id: 0,
    });
    let mut commit = episode(&item, RuntimeStatus::Running, vec![]);
    commit.new_instances.push(child.clone());
    commit.messages.push(message("other", raised("hi")));
    commit.messages.push(message("child", raised("early")));
    store.complete_orchestration(&item, commit).await.unwrap();

    let row = store
        .get_instance("child")
        .await
        .unwrap()
        .expect("child row");
    assert_eq!(row.runtime_status, RuntimeStatus::Pending);
    assert_eq!(row.parent_instance_id.as_deref(), Some("parent"));

    let mut seen: HashMap<String, Vec<EventType>> = HashMap::new();
    for _ in 0..2 {
        let item = lock(&*store).await;
        let types: Vec<EventType> = item.messages.iter().map(|m| m.event.event_type()).collect();
        seen.insert(item.instance_id.clone(), types);
        store
            .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
            .await
            .unwrap();
    }
    assert_eq!(seen["other"], vec![EventType::EventRaised]);
    // The start comes before anything the creator sent along with it.
    assert_eq!(
        seen["child"],
        vec![EventType::ExecutionStarted, EventType::EventRaised]
    );
    lock_none(&*store, Duration::from_millis(100)).await;
}

pub async fn messages_sent_while_locked_come_later(make: Factory) {
    let store = fresh(&make, "whilelocked").await;
    store
        .create_instance(new_instance("i", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*store).await;
    store
        .send_message(message("i", raised("one")))
        .await
        .unwrap();
    store
        .send_message(message("i", raised("two")))
        .await
        .unwrap();
    // Locked: nobody else gets the instance.
    lock_none(&*store, Duration::from_millis(200)).await;
    assert_eq!(item.messages.len(), 1);
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();
    let item = lock(&*store).await;
    let names: Vec<String> = item
        .messages
        .iter()
        .map(|m| match &m.event.kind {
            EventKind::EventRaised { name, .. } => name.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(names, ["one", "two"]);
}

pub async fn one_instance_is_never_locked_twice(make: Factory) {
    let store = fresh(&make, "exclusive").await;
    const INSTANCES: usize = 4;
    const EVENTS: usize = 40;
    for i in 0..INSTANCES {
        store
            .create_instance(
                new_instance(&format!("i{i}"), "N", at(0)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
    }
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let delivered = Arc::new(AtomicUsize::new(0));
    let expected = INSTANCES * (EVENTS + 1);
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (store, held, delivered) = (store.clone(), held.clone(), delivered.clone());
        workers.push(tokio::spawn(async move {
            while delivered.load(Ordering::SeqCst) < expected {
                let Some(item) = store
                    .lock_next_orchestration(LOCK_FOR, Duration::from_millis(200))
                    .await
                    .unwrap()
                else {
                    continue;
                };
                assert!(
                    held.lock().unwrap().insert(item.instance_id.clone()),
                    "{} locked twice",
                    item.instance_id
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
                delivered.fetch_add(item.messages.len(), Ordering::SeqCst);
                // Released before the complete: from then on another lock is legitimate.
                held.lock().unwrap().remove(&item.instance_id);
                store
                    .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
                    .await
                    .unwrap();
            }
        }));
    }
    for n in 0..EVENTS {
        for i in 0..INSTANCES {
            store
                .send_message(message(&format!("i{i}"), raised(&n.to_string())))
                .await
                .unwrap();
        }
    }
    let all = futures::future::join_all(workers);
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("all messages delivered")
        .into_iter()
        .for_each(|r| r.expect("worker"));
    assert_eq!(delivered.load(Ordering::SeqCst), expected);
    // Every event was delivered once, in order, per instance.
    for i in 0..INSTANCES {
        let history = store.get_history(&format!("i{i}")).await.unwrap();
        let raised: Vec<String> = history
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::EventRaised { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let want: Vec<String> = (0..EVENTS).map(|n| n.to_string()).collect();
        assert_eq!(raised, want, "i{i}");
    }
}

pub async fn timers_fire_on_time(make: Factory) {
    let store = fresh(&make, "timers").await;
    store
        .create_instance(new_instance("t", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*store).await;
    let fire_at = now() + chrono::Duration::milliseconds(1500);
    let fired = event(EventKind::TimerFired {
        timer_id: 0,
        fire_at,
    });
    let mut commit = episode(&item, RuntimeStatus::Running, vec![]);
    commit.messages.push(OrchestrationMessage {
        instance_id: "t".into(),
        execution_id: Some(item.instance.as_ref().unwrap().execution_id.clone()),
        event: fired.clone(),
        visible_at: Some(fire_at),
    });
    store.complete_orchestration(&item, commit).await.unwrap();
    lock_none(&*store, Duration::from_millis(300)).await;

    let item = lock(&*store).await;
    assert!(Utc::now() >= fire_at, "timer delivered early");
    assert_eq!(item.messages.len(), 1);
    assert_eq!(item.messages[0].event, fired);
    assert_eq!(item.messages[0].visible_at, Some(fire_at));

    // A scheduled start waits as well.
    let mut later = new_instance("s", "N", at(0));
    let start_at = now() + chrono::Duration::milliseconds(1000);
    later.scheduled_start_time = Some(start_at);
    store
        .create_instance(later, ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();
    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "s");
    assert!(Utc::now() >= start_at, "scheduled start delivered early");
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();

    // A worker already waiting when a timer is set is woken for it, not at the end of its wait.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lock_next_orchestration(LOCK_FOR, Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fire_at = now() + chrono::Duration::milliseconds(1000);
    store
        .send_message(OrchestrationMessage {
            visible_at: Some(fire_at),
            ..message("s", raised("wake"))
        })
        .await
        .unwrap();
    // Wide margins (loaded machines, emulators): the timer is due in a second, the waiter would
    // give up after twenty.
    let item = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("the waiting worker is woken for the timer")
        .expect("waiter")
        .unwrap()
        .expect("the waiting worker gets the timer within its wait");
    assert!(Utc::now() >= fire_at, "timer delivered early");
    assert_eq!(item.instance_id, "s");
}

pub async fn abandon_redelivers(make: Factory) {
    let store = fresh(&make, "abandon").await;
    store
        .create_instance(new_instance("a", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*store).await;
    store
        .abandon_orchestration(&item, Duration::ZERO)
        .await
        .unwrap();
    let again = lock(&*store).await;
    assert_eq!(again.instance_id, "a");
    assert_eq!(again.messages, item.messages);
    assert_ne!(again.lock_token, item.lock_token);

    // With a delay, not before it.
    let started = Instant::now();
    store
        .abandon_orchestration(&again, Duration::from_millis(800))
        .await
        .unwrap();
    let third = lock(&*store).await;
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(third.messages, item.messages);
    store
        .complete_orchestration(&third, episode(&third, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();
}

pub async fn expired_locks_redeliver(make: Factory) {
    let store = fresh(&make, "expiry").await;
    store
        .create_instance(new_instance("e", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = store
        .lock_next_orchestration(Duration::from_millis(1500), LONG_WAIT)
        .await
        .unwrap()
        .unwrap();
    // Renewing an unknown lock fails; renewing ours keeps it a while.
    let mut forged = item.clone();
    forged.lock_token = "not-a-token".into();
    assert!(matches!(
        store.renew_orchestration_lock(&forged, LOCK_FOR).await,
        Err(StoreError::LockLost)
    ));
    store
        .renew_orchestration_lock(&item, Duration::from_millis(2500))
        .await
        .unwrap();
    let renewed = Instant::now();
    lock_none(&*store, Duration::from_millis(1500)).await;

    // The worker hung: the work comes back once the lock expires.
    let again = lock(&*store).await;
    assert!(renewed.elapsed() >= Duration::from_millis(2400));
    assert_eq!(again.instance_id, "e");
    assert_eq!(again.messages, item.messages);
    assert!(matches!(
        store
            .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
            .await,
        Err(StoreError::LockLost)
    ));
    store
        .complete_orchestration(&again, episode(&again, RuntimeStatus::Running, vec![]))
        .await
        .unwrap();
    assert_eq!(store.get_history("e").await.unwrap().len(), 2);
}

pub async fn activities_deliver_results(make: Factory) {
    let store = fresh(&make, "activity").await;
    store
        .create_instance(new_instance("o", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    assert!(store
        .lock_next_activity(LOCK_FOR, Duration::from_millis(100))
        .await
        .unwrap()
        .is_none());
    let item = lock(&*store).await;
    let execution_id = item.instance.as_ref().unwrap().execution_id.clone();
    let request = ActivityRequest {
        instance_id: "o".into(),
        execution_id: execution_id.clone(),
        task_id: 0,
        name: "SayHello".into(),
        input: Some("\"Tokyo\"".into()),
        attempt: 1,
    };
    let mut commit = episode(
        &item,
        RuntimeStatus::Running,
        vec![HistoryEvent::new(
            0,
            now(),
            EventKind::TaskScheduled {
                name: "SayHello".into(),
                input: Some("\"Tokyo\"".into()),
            },
        )],
    );
    commit.activities.push(request.clone());
    store.complete_orchestration(&item, commit).await.unwrap();

    let work = store
        .lock_next_activity(LOCK_FOR, LONG_WAIT)
        .await
        .unwrap()
        .expect("activity");
    assert_eq!(work.request, request);
    store.renew_activity_lock(&work, LOCK_FOR).await.unwrap();
    assert!(store
        .lock_next_activity(LOCK_FOR, Duration::from_millis(100))
        .await
        .unwrap()
        .is_none());
    let result = HistoryEvent::new(
        -1,
        now(),
        EventKind::TaskCompleted {
            task_scheduled_id: 0,
            result: Some("\"Hello Tokyo!\"".into()),
        },
    );
    store
        .complete_activity(&work, result.clone())
        .await
        .unwrap();
    assert!(matches!(
        store.complete_activity(&work, result.clone()).await,
        Err(StoreError::LockLost)
    ));
    assert!(matches!(
        store.renew_activity_lock(&work, LOCK_FOR).await,
        Err(StoreError::LockLost)
    ));

    let item = lock(&*store).await;
    assert_eq!(item.instance_id, "o");
    assert_eq!(item.messages.len(), 1);
    assert_eq!(item.messages[0].event, result);
    assert_eq!(
        item.messages[0].execution_id.as_deref(),
        Some(&*execution_id)
    );
    assert_eq!(
        event_types(&item.history),
        [
            EventType::OrchestratorStarted,
            EventType::ExecutionStarted,
            EventType::TaskScheduled
        ]
    );
}

pub async fn activities_are_retried(make: Factory) {
    let store = fresh(&make, "actretry").await;
    store
        .create_instance(new_instance("o", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*store).await;
    let mut commit = episode(&item, RuntimeStatus::Running, vec![scheduled(0, "Flaky")]);
    commit.activities.push(ActivityRequest {
        instance_id: "o".into(),
        execution_id: item.instance.as_ref().unwrap().execution_id.clone(),
        task_id: 0,
        name: "Flaky".into(),
        input: None,
        attempt: 1,
    });
    store.complete_orchestration(&item, commit).await.unwrap();

    let first = store
        .lock_next_activity(LOCK_FOR, LONG_WAIT)
        .await
        .unwrap()
        .unwrap();
    store
        .abandon_activity(&first, Duration::ZERO)
        .await
        .unwrap();
    let started = Instant::now();
    let second = store
        .lock_next_activity(Duration::from_millis(600), LONG_WAIT)
        .await
        .unwrap()
        .expect("abandoned activity comes back");
    assert_eq!(second.request, first.request);
    // Its worker hangs; the lock expires and the activity comes back again.
    let third = store
        .lock_next_activity(LOCK_FOR, LONG_WAIT)
        .await
        .unwrap()
        .expect("expired activity comes back");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(third.request, first.request);
    let failed = event(EventKind::TaskFailed {
        task_scheduled_id: 0,
        reason: Some("boom".into()),
        details: None,
        failure_details: None,
    });
    assert!(matches!(
        store.complete_activity(&second, failed.clone()).await,
        Err(StoreError::LockLost)
    ));
    store
        .complete_activity(&third, failed.clone())
        .await
        .unwrap();
    let item = lock(&*store).await;
    assert_eq!(item.messages.len(), 1);
    assert_eq!(item.messages[0].event, failed);
}

// ---- queries ----

/// One row of [`query_fixture`]: id, name, seconds after the base time, status.
type FixtureRow = (String, &'static str, i64, RuntimeStatus);

/// Twelve instances: names A/B, ids `x-*`/`y-*`, created 0..12 s after the base time,
/// statuses by position.
async fn query_fixture(store: &dyn Store) -> Vec<FixtureRow> {
    let statuses = [
        RuntimeStatus::Running,
        RuntimeStatus::Completed,
        RuntimeStatus::Failed,
        RuntimeStatus::Pending,
    ];
    let mut rows = Vec::new();
    let mut targets = HashMap::new();
    for i in 0..12i64 {
        let id = format!("{}-{i:02}", if i % 3 == 0 { "y" } else { "x" });
        let name = if i % 2 == 0 { "A" } else { "B" };
        let status = statuses[i as usize % 4];
        store
            .create_instance(new_instance(&id, name, at(i)), ReusePolicy::ReplaceTerminal)
            .await
            .unwrap();
        if status != RuntimeStatus::Pending {
            targets.insert(id.clone(), status);
        }
        rows.push((id, name, i, status));
    }
    // Pending ones would be locked too: run everything, then re-create the Pending ones.
    let mut all: HashMap<String, RuntimeStatus> = targets.clone();
    for (id, _, _, status) in &rows {
        all.entry(id.clone()).or_insert(*status);
    }
    run_to(store, &all).await;
    for (id, name, i, status) in &rows {
        if *status == RuntimeStatus::Pending {
            store
                .create_instance(new_instance(id, name, at(*i)), ReusePolicy::ReplaceAny)
                .await
                .unwrap();
        }
    }
    rows
}

pub async fn query_filters(make: Factory) {
    let store = fresh(&make, "query").await;
    let rows = query_fixture(&*store).await;
    let expect = |pred: &dyn Fn(&FixtureRow) -> bool| {
        rows.iter()
            .filter(|r| pred(r))
            .map(|r| r.0.clone())
            .collect::<Vec<_>>()
    };
    // Everything, in creation order.
    assert_eq!(
        ids(&*store, InstanceFilter::default()).await,
        expect(&|_| true)
    );
    let f = InstanceFilter {
        created_from: Some(at(3)),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| r.2 >= 3));
    let f = InstanceFilter {
        created_to: Some(at(3)),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| r.2 <= 3));
    let f = InstanceFilter {
        created_from: Some(at(2)),
        created_to: Some(at(8)),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| (2..=8).contains(&r.2)));
    let f = InstanceFilter {
        statuses: vec![RuntimeStatus::Running],
        ..Default::default()
    };
    assert_eq!(
        ids(&*store, f).await,
        expect(&|r| r.3 == RuntimeStatus::Running)
    );
    let f = InstanceFilter {
        statuses: vec![RuntimeStatus::Failed, RuntimeStatus::Pending],
        ..Default::default()
    };
    assert_eq!(
        ids(&*store, f).await,
        expect(&|r| matches!(r.3, RuntimeStatus::Failed | RuntimeStatus::Pending))
    );
    let f = InstanceFilter {
        name: Some("A".into()),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| r.1 == "A"));
    let f = InstanceFilter {
        name: Some("a".into()),
        ..Default::default()
    };
    assert!(ids(&*store, f).await.is_empty(), "names are case-sensitive");
    let f = InstanceFilter {
        instance_id_prefix: Some("y-".into()),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| r.0.starts_with("y-")));
    let f = InstanceFilter {
        instance_id_prefix: Some("x-1".into()),
        ..Default::default()
    };
    assert_eq!(ids(&*store, f).await, expect(&|r| r.0.starts_with("x-1")));
    let f = InstanceFilter {
        instance_id_prefix: Some("X-".into()),
        ..Default::default()
    };
    assert!(
        ids(&*store, f).await.is_empty(),
        "prefixes are case-sensitive"
    );
    // Combined filters are AND-ed.
    let f = InstanceFilter {
        created_from: Some(at(1)),
        created_to: Some(at(10)),
        statuses: vec![RuntimeStatus::Running, RuntimeStatus::Completed],
        name: Some("B".into()),
        instance_id_prefix: Some("x".into()),
    };
    assert_eq!(
        ids(&*store, f).await,
        expect(&|r| (1..=10).contains(&r.2)
            && matches!(r.3, RuntimeStatus::Running | RuntimeStatus::Completed)
            && r.1 == "B"
            && r.0.starts_with('x'))
    );
    let f = InstanceFilter {
        statuses: vec![RuntimeStatus::Completed],
        name: Some("B".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&*store, f).await,
        expect(&|r| r.3 == RuntimeStatus::Completed && r.1 == "B")
    );

    // Inputs only when asked for.
    let mut q = all_query(InstanceFilter::default());
    q.include_input = false;
    let page = store.query_instances(&q).await.unwrap();
    assert!(page.items.iter().all(|r| r.input.is_none()));
    q.include_input = true;
    let page = store.query_instances(&q).await.unwrap();
    assert!(page.items.iter().all(|r| r.input.is_some()));
    let row = &page.items[0];
    assert_eq!(
        Some(row),
        store.get_instance(&row.instance_id).await.unwrap().as_ref()
    );
}

async fn page_through(
    store: &dyn Store,
    page_size: usize,
    mut between: impl FnMut(usize) -> BoxFuture<'static, ()>,
) -> Vec<InstanceRecord> {
    let mut seen = Vec::new();
    let mut continuation = None;
    let mut pages = 0;
    loop {
        let page = store
            .query_instances(&InstanceQuery {
                filter: InstanceFilter::default(),
                page_size,
                continuation: continuation.take(),
                include_input: false,
                max_bytes: None,
            })
            .await
            .unwrap();
        assert!(page.items.len() <= page_size);
        seen.extend(page.items);
        pages += 1;
        assert!(pages < 100, "paging does not end");
        match page.continuation {
            Some(token) => continuation = Some(token),
            None => return seen,
        }
        between(pages).await;
    }
}

pub async fn paging_is_exact(make: Factory) {
    let store = fresh(&make, "paging").await;
    for i in 0..250 {
        // Pairs share a creation time, so the id breaks ties.
        store
            .create_instance(
                new_instance(&format!("p{i:03}"), "N", at(i / 2)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
    }
    let seen = page_through(&*store, 100, |_| Box::pin(async {})).await;
    let ids: Vec<String> = seen.iter().map(|r| r.instance_id.clone()).collect();
    let want: Vec<String> = (0..250).map(|i| format!("p{i:03}")).collect();
    assert_eq!(ids, want);

    // Exactly one page: no continuation.
    let page = store
        .query_instances(&InstanceQuery {
            filter: InstanceFilter::default(),
            page_size: 250,
            continuation: None,
            include_input: false,
            max_bytes: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 250);
    assert_eq!(page.continuation, None);

    // Instances created between pages (before, inside and after the range) never make an
    // existing instance appear twice or go missing.
    let creator = store.clone();
    let seen = page_through(&*store, 100, move |page| {
        let store = creator.clone();
        Box::pin(async move {
            for (k, secs) in [(0, -5), (1, 60), (2, 500)] {
                store
                    .create_instance(
                        new_instance(&format!("n{page}{k}"), "N", at(secs)),
                        ReusePolicy::ReplaceTerminal,
                    )
                    .await
                    .unwrap();
            }
        })
    })
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &seen {
        *counts.entry(r.instance_id.clone()).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "an instance appeared twice"
    );
    for id in &want {
        assert!(counts.contains_key(id), "{id} went missing");
    }
}

/// A page ends early once its instances pass `max_bytes` (at least one per page), and paging on
/// from there yields every instance exactly once.
pub async fn pages_end_early_at_their_byte_budget(make: Factory) {
    let store = fresh(&make, "bytes").await;
    let big = format!("\"{}\"", "x".repeat(1000));
    for i in 0..5 {
        let mut new = new_instance(&format!("big{i}"), "N", at(i));
        new.input = Some(big.clone());
        store
            .create_instance(new, ReusePolicy::ReplaceTerminal)
            .await
            .unwrap();
    }
    let one = store.get_instance("big0").await.unwrap().unwrap();
    let per_row = one.approximate_bytes();
    let mut query = InstanceQuery {
        page_size: 100,
        include_input: true,
        max_bytes: Some(per_row * 2 + per_row / 2),
        ..InstanceQuery::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = store.query_instances(&query).await.unwrap();
        pages.push(
            page.items
                .iter()
                .map(|r| r.instance_id.clone())
                .collect::<Vec<_>>(),
        );
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![
            vec!["big0".to_string(), "big1".into()],
            vec!["big2".into(), "big3".into()],
            vec!["big4".into()]
        ]
    );
    // A budget smaller than one instance still returns one per page.
    let page = store
        .query_instances(&InstanceQuery {
            page_size: 100,
            include_input: true,
            max_bytes: Some(1),
            ..InstanceQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.continuation.is_some());
}

pub async fn invalid_continuation_token(make: Factory) {
    let store = fresh(&make, "token").await;
    for bad in ["garbage!", "zz", "%%%"] {
        let result = store
            .query_instances(&InstanceQuery {
                filter: InstanceFilter::default(),
                page_size: 10,
                continuation: Some(bad.into()),
                include_input: false,
                max_bytes: None,
            })
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidContinuationToken)),
            "{bad:?}: {result:?}"
        );
    }
}

// ---- purge and hubs ----

pub async fn purge_one(make: Factory) {
    let store = fresh(&make, "purge").await;
    // Dispatch is running, so that purged work must also leave the worker's view.
    lock_none(&*store, Duration::ZERO).await;
    store
        .create_instance(
            new_instance("gone", "N", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    store
        .create_instance(
            new_instance("kept", "N", at(1)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    run_to(
        &*store,
        &HashMap::from([
            ("gone".into(), RuntimeStatus::Completed),
            ("kept".into(), RuntimeStatus::Completed),
        ]),
    )
    .await;
    store
        .send_message(message("gone", raised("late")))
        .await
        .unwrap();
    assert_eq!(store.purge_instance("gone").await.unwrap(), 1);
    assert_eq!(store.purge_instance("gone").await.unwrap(), 0);
    assert_eq!(store.get_instance("gone").await.unwrap(), None);
    assert!(store.get_history("gone").await.unwrap().is_empty());
    // Its pending message went with it.
    lock_none(&*store, Duration::from_millis(200)).await;
    assert!(store.get_instance("kept").await.unwrap().is_some());
    assert!(!store.get_history("kept").await.unwrap().is_empty());
}

/// The status is checked where the delete happens: a running instance is refused and kept whole.
pub async fn purge_refuses_what_is_not_terminal(make: Factory) {
    let store = fresh(&make, "purgerun").await;
    store
        .create_instance(
            new_instance("running", "N", at(0)),
            ReusePolicy::ReplaceTerminal,
        )
        .await
        .unwrap();
    match store.purge_instance("running").await {
        Err(StoreError::NotTerminal {
            instance_id,
            status: RuntimeStatus::Pending,
        }) => assert_eq!(instance_id, "running"),
        other => panic!("expected NotTerminal(Pending), got {other:?}"),
    }
    assert!(store.get_instance("running").await.unwrap().is_some());
    // Its start message is still there to run it.
    assert_eq!(lock(&*store).await.instance_id, "running");
}

pub async fn purge_by_filter(make: Factory) {
    let store = fresh(&make, "purgemany").await;
    for i in 0..5 {
        store
            .create_instance(
                new_instance(&format!("p{i}"), "P", at(i)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
    }
    for i in 0..2 {
        store
            .create_instance(
                new_instance(&format!("q{i}"), "Q", at(i)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
    }
    let f = InstanceFilter {
        name: Some("P".into()),
        ..Default::default()
    };
    let first = store.purge_instances(&f, 3).await.unwrap();
    assert_eq!(first.instances_deleted, 3);
    assert!(!first.complete);
    // Oldest first.
    assert_eq!(ids(&*store, f.clone()).await, ["p3", "p4"]);
    let second = store.purge_instances(&f, 3).await.unwrap();
    assert_eq!(second.instances_deleted, 2);
    assert!(second.complete);
    let third = store.purge_instances(&f, 3).await.unwrap();
    assert_eq!(third.instances_deleted, 0);
    assert!(third.complete);
    assert_eq!(ids(&*store, InstanceFilter::default()).await, ["q0", "q1"]);
    // The survivors' start messages are still delivered, the purged ones' are not.
    let mut started = HashSet::new();
    while started.len() < 2 {
        let item = lock(&*store).await;
        started.insert(item.instance_id.clone());
        store
            .complete_orchestration(&item, episode(&item, RuntimeStatus::Running, vec![]))
            .await
            .unwrap();
    }
    assert_eq!(started, HashSet::from(["q0".to_owned(), "q1".to_owned()]));
    lock_none(&*store, Duration::from_millis(500)).await;
}

pub async fn delete_hub_leaves_other_hubs(make: Factory) {
    let doomed = fresh(&make, "doomed").await;
    let other = fresh(&make, "other").await;
    for store in [&doomed, &other] {
        store
            .create_instance(
                new_instance("same-id", "N", at(0)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
        store
            .create_instance(
                new_instance("second", "N", at(1)),
                ReusePolicy::ReplaceTerminal,
            )
            .await
            .unwrap();
    }
    // Some history in the doomed hub, and a pending activity.
    let item = lock(&*doomed).await;
    let mut commit = episode(&item, RuntimeStatus::Running, vec![scheduled(0, "A")]);
    commit.activities.push(ActivityRequest {
        instance_id: item.instance_id.clone(),
        execution_id: item.instance.as_ref().unwrap().execution_id.clone(),
        task_id: 0,
        name: "A".into(),
        input: None,
        attempt: 1,
    });
    doomed.complete_orchestration(&item, commit).await.unwrap();

    doomed.delete_hub().await.unwrap();
    assert!(ids(&*doomed, InstanceFilter::default()).await.is_empty());
    assert_eq!(doomed.get_instance("same-id").await.unwrap(), None);
    assert!(doomed
        .get_history(&item.instance_id)
        .await
        .unwrap()
        .is_empty());
    doomed.create_hub().await.unwrap();
    lock_none(&*doomed, Duration::from_millis(200)).await;
    assert!(doomed
        .lock_next_activity(LOCK_FOR, Duration::from_millis(200))
        .await
        .unwrap()
        .is_none());

    assert_eq!(
        ids(&*other, InstanceFilter::default()).await,
        ["same-id", "second"]
    );
    let mut started = HashSet::new();
    for _ in 0..2 {
        started.insert(lock(&*other).await.instance_id);
    }
    assert_eq!(started.len(), 2);
}

async fn wait_for_change(rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>, id: &str) {
    let deadline = tokio::time::Instant::now() + LONG_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(changed)) if &*changed == id => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("change channel closed: {e}"),
            Err(_) => panic!("no change notification for {id}"),
        }
    }
}

pub async fn subscribe_sees_changes(make: Factory) {
    let store = fresh(&make, "subscribe").await;
    // Backends that cannot push changes say so; callers then poll.
    let Some(mut rx) = store.subscribe() else {
        return;
    };
    store
        .create_instance(new_instance("w", "N", at(0)), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    wait_for_change(&mut rx, "w").await;
    let item = lock(&*store).await;
    store
        .complete_orchestration(&item, episode(&item, RuntimeStatus::Completed, vec![]))
        .await
        .unwrap();
    wait_for_change(&mut rx, "w").await;
    assert_eq!(store.purge_instance("w").await.unwrap(), 1);
    wait_for_change(&mut rx, "w").await;
}

/// Runs every check, each on fresh hubs from `make`.
pub async fn run_all(make: Factory) {
    create_and_get(make.clone()).await;
    reuse_policies(make.clone()).await;
    hub_exists_only_once_used(make.clone()).await;
    tags_stay_with_the_instance(make.clone()).await;
    send_message_needs_an_instance(make.clone()).await;
    rewind_makes_a_failed_instance_pending_at_once(make.clone()).await;
    rewind_refuses_what_is_not_failed(make.clone()).await;
    lock_delivers_start_and_history(make.clone()).await;
    complete_writes_history_and_row(make.clone()).await;
    continue_as_new_replaces_history(make.clone()).await;
    complete_sends_messages_and_creates_instances(make.clone()).await;
    messages_sent_while_locked_come_later(make.clone()).await;
    one_instance_is_never_locked_twice(make.clone()).await;
    timers_fire_on_time(make.clone()).await;
    abandon_redelivers(make.clone()).await;
    expired_locks_redeliver(make.clone()).await;
    activities_deliver_results(make.clone()).await;
    activities_are_retried(make.clone()).await;
    query_filters(make.clone()).await;
    paging_is_exact(make.clone()).await;
    pages_end_early_at_their_byte_budget(make.clone()).await;
    invalid_continuation_token(make.clone()).await;
    purge_one(make.clone()).await;
    purge_refuses_what_is_not_terminal(make.clone()).await;
    purge_by_filter(make.clone()).await;
    delete_hub_leaves_other_hubs(make.clone()).await;
    subscribe_sees_changes(make).await;
}

/// One `#[tokio::test]` per conformance check. `$factory` is an async fn (or path to one)
/// returning a [`Factory`]; it is called once per test.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path) => {
        $crate::store_conformance_tests!(
            $factory;
            create_and_get,
            reuse_policies,
            hub_exists_only_once_used,
            tags_stay_with_the_instance,
            send_message_needs_an_instance,
            rewind_makes_a_failed_instance_pending_at_once,
            rewind_refuses_what_is_not_failed,
            lock_delivers_start_and_history,
            complete_writes_history_and_row,
            continue_as_new_replaces_history,
            complete_sends_messages_and_creates_instances,
            messages_sent_while_locked_come_later,
            one_instance_is_never_locked_twice,
            timers_fire_on_time,
            abandon_redelivers,
            expired_locks_redeliver,
            activities_deliver_results,
            activities_are_retried,
            query_filters,
            paging_is_exact,
            pages_end_early_at_their_byte_budget,
            invalid_continuation_token,
            purge_one,
            purge_refuses_what_is_not_terminal,
            purge_by_filter,
            delete_hub_leaves_other_hubs,
            subscribe_sees_changes,
        );
    };
    ($factory:path; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::store::conformance::$check($factory().await).await;
            }
        )+
    };
}
