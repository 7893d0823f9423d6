//! The store conformance suite on the SQLite backend, plus what only SQLite promises: a file
//! that survives reopening, several handles on one file, and the hub lease.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskhub::model::{EventKind, HistoryEvent, InstanceId, RuntimeStatus};
use taskhub::store::conformance::Factory;
use taskhub::store::sqlite::SqliteDb;
use taskhub::store::{
    ActivityRequest, HistoryWrite, InstanceState, NewInstance, OrchestrationCommit,
    OrchestrationMessage, OrchestrationWorkItem, ReusePolicy, Store, StoreError,
};

async fn sqlite_factory() -> Factory {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let db = SqliteDb::open(dir.path().join("conformance.db")).expect("open");
    Arc::new(move |hub: String| {
        let (db, dir) = (db.clone(), dir.clone());
        Box::pin(async move {
            // The directory lives as long as any store handed out.
            let _ = &dir;
            db.hub(&hub) as Arc<dyn Store>
        })
    })
}

taskhub::store_conformance_tests!(sqlite_factory);

#[tokio::test]
async fn run_all_on_memory_db() {
    let db = SqliteDb::open(":memory:").expect("open");
    let path = db.path().to_path_buf();
    assert!(path.exists());
    let factory: Factory = {
        let db = db.clone();
        Arc::new(move |hub: String| {
            let db = db.clone();
            Box::pin(async move { db.hub(&hub) as Arc<dyn Store> })
        })
    };
    taskhub::store::conformance::run_all(factory).await;
    drop(db);
    assert!(
        !path.exists(),
        "the temporary file is removed with the last handle"
    );
}

const LOCK_FOR: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(5);

fn new_instance(id: &str) -> NewInstance {
    NewInstance {
        instance_id: InstanceId::parse(id).unwrap(),
        name: "N".into(),
        version: String::new(),
        execution_id: taskhub::model::new_guid_n(),
        input: None,
        created_time: Utc::now(),
        scheduled_start_time: None,
        parent: None,
        tags: Default::default(),
    }
}

fn running(item: &OrchestrationWorkItem) -> InstanceState {
    let row = item.instance.as_ref().unwrap();
    InstanceState {
        name: row.name.clone(),
        version: row.version.clone(),
        execution_id: row.execution_id.clone(),
        runtime_status: RuntimeStatus::Running,
        input: row.input.clone(),
        output: None,
        custom_status: None,
        created_time: row.created_time,
        last_updated_time: Utc::now(),
        completed_time: None,
        parent_instance_id: None,
        tags: Default::default(),
    }
}

fn commit(item: &OrchestrationWorkItem) -> OrchestrationCommit {
    OrchestrationCommit {
        history: HistoryWrite::Append(item.messages.iter().map(|m| m.event.clone()).collect()),
        state: Some(running(item)),
        messages: vec![],
        new_instances: vec![],
        activities: vec![],
    }
}

fn raised(instance_id: &str, name: &str) -> OrchestrationMessage {
    OrchestrationMessage {
        instance_id: instance_id.into(),
        execution_id: None,
        event: HistoryEvent::unscheduled(EventKind::EventRaised {
            name: name.into(),
            input: None,
        }),
        visible_at: None,
    }
}

async fn lock(store: &dyn Store) -> OrchestrationWorkItem {
    store
        .lock_next_orchestration(LOCK_FOR, WAIT)
        .await
        .unwrap()
        .expect("work item")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/taskhub.db");
    let history;
    {
        let db = SqliteDb::open(&path).unwrap();
        let store = db.hub("hub");
        for id in ["a", "b"] {
            store
                .create_instance(new_instance(id), ReusePolicy::ReplaceTerminal)
                .await
                .unwrap();
        }
        let item = lock(&*store).await;
        assert_eq!(item.instance_id, "a");
        let mut c = commit(&item);
        c.activities.push(ActivityRequest {
            instance_id: "a".into(),
            execution_id: item.instance.as_ref().unwrap().execution_id.clone(),
            task_id: 0,
            name: "Act".into(),
            input: Some("1".into()),
            attempt: 1,
        });
        c.messages.push(raised("a", "later"));
        store.complete_orchestration(&item, c).await.unwrap();
        history = store.get_history("a").await.unwrap();
        assert_eq!(history.len(), 1);
        // "b" stays locked when the process goes: its lock must not survive.
        let _locked_b = lock(&*store).await;
    }
    let db = SqliteDb::open(&path).unwrap();
    let store = db.hub("hub");
    assert_eq!(store.get_history("a").await.unwrap(), history);
    assert_eq!(
        store
            .get_instance("a")
            .await
            .unwrap()
            .unwrap()
            .runtime_status,
        RuntimeStatus::Running
    );
    // Pending messages and activities are dispatched again, histories read from disk.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let item = lock(&*store).await;
        if item.instance_id == "a" {
            assert_eq!(*item.history, history);
        }
        seen.push((item.instance_id.clone(), item.messages.len()));
        store
            .complete_orchestration(&item, commit(&item))
            .await
            .unwrap();
    }
    seen.sort();
    assert_eq!(seen, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    let activity = store
        .lock_next_activity(LOCK_FOR, WAIT)
        .await
        .unwrap()
        .expect("activity after reopen");
    assert_eq!(activity.request.name, "Act");
    // Appending after a cache miss continues the sequence.
    assert_eq!(store.get_history("a").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_written_by_another_handle_is_dispatched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let server = SqliteDb::open(&path).unwrap().hub("hub");
    let cli = SqliteDb::open(&path).unwrap().hub("hub");
    // The server dispatches the hub before the "CLI" writes anything.
    assert!(server
        .lock_next_orchestration(LOCK_FOR, Duration::ZERO)
        .await
        .unwrap()
        .is_none());

    let started = std::time::Instant::now();
    cli.create_instance(new_instance("from-cli"), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*server).await;
    assert_eq!(item.instance_id, "from-cli");
    assert!(started.elapsed() < Duration::from_secs(3));
    server
        .complete_orchestration(&item, commit(&item))
        .await
        .unwrap();

    cli.send_message(raised("from-cli", "go")).await.unwrap();
    let item = lock(&*server).await;
    assert_eq!(item.messages.len(), 1);
    assert_eq!(item.history.len(), 1);
    server
        .complete_orchestration(&item, commit(&item))
        .await
        .unwrap();

    // The CLI replacing the instance invalidates what the server cached.
    let replacement = new_instance("from-cli");
    cli.create_instance(replacement.clone(), ReusePolicy::ReplaceAny)
        .await
        .unwrap();
    let item = lock(&*server).await;
    assert!(item.history.is_empty());
    assert_eq!(
        item.instance.as_ref().unwrap().execution_id,
        replacement.execution_id
    );
    // And the CLI sees what the server wrote.
    server
        .complete_orchestration(&item, commit(&item))
        .await
        .unwrap();
    assert_eq!(cli.get_history("from-cli").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_deleted_by_another_handle_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let server = SqliteDb::open(&path).unwrap().hub("hub");
    let cli = SqliteDb::open(&path).unwrap().hub("hub");
    for id in ["idle", "busy", "kept"] {
        server
            .create_instance(new_instance(id), ReusePolicy::ReplaceTerminal)
            .await
            .unwrap();
    }
    // Finished (only a terminal instance can be purged), then a late event for each.
    for _ in 0..3 {
        let item = lock(&*server).await;
        let mut done = commit(&item);
        if let Some(state) = done.state.as_mut() {
            state.runtime_status = RuntimeStatus::Completed;
        }
        server.complete_orchestration(&item, done).await.unwrap();
    }
    for id in ["idle", "busy", "kept"] {
        server.send_message(raised(id, "pending")).await.unwrap();
    }
    // "busy" is being worked on when the CLI purges it; "idle" only has a message waiting.
    let busy = loop {
        let item = lock(&*server).await;
        if item.instance_id == "busy" {
            break item;
        }
        server
            .abandon_orchestration(&item, Duration::from_secs(3))
            .await
            .unwrap();
    };
    assert_eq!(cli.purge_instance("idle").await.unwrap(), 1);
    assert_eq!(cli.purge_instance("busy").await.unwrap(), 1);
    // Give the server's writer a few polls to notice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        server.complete_orchestration(&busy, commit(&busy)).await,
        Err(StoreError::LockLost)
    ));
    assert_eq!(
        server.get_instance("busy").await.unwrap(),
        None,
        "not resurrected"
    );
    let mut delivered = Vec::new();
    while let Some(item) = server
        .lock_next_orchestration(LOCK_FOR, Duration::from_secs(4))
        .await
        .unwrap()
    {
        delivered.push(item.instance_id.clone());
        server
            .complete_orchestration(&item, commit(&item))
            .await
            .unwrap();
    }
    assert_eq!(delivered, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_dispatches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lease.db");
    let first_db = SqliteDb::open(&path).unwrap();
    let first = first_db.hub("hub");
    let second_db = SqliteDb::open(&path).unwrap();
    let second = second_db.hub("hub");
    first
        .create_instance(new_instance("x"), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let item = lock(&*first).await;
    second.send_message(raised("x", "e")).await.unwrap();
    // The second handle may write, but not dispatch.
    assert!(second
        .lock_next_orchestration(LOCK_FOR, Duration::from_millis(500))
        .await
        .unwrap()
        .is_none());
    // Another hub in the same file is free.
    let other = second_db.hub("other");
    other
        .create_instance(new_instance("y"), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    assert_eq!(lock(&*other).await.instance_id, "y");

    first
        .complete_orchestration(&item, commit(&item))
        .await
        .unwrap();
    // Closing the holder releases the lease; the other handle takes over with all the work.
    drop((first, first_db));
    let item = second
        .lock_next_orchestration(LOCK_FOR, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(item.instance_id, "x");
    assert_eq!(item.messages.len(), 1);
    assert_eq!(item.history.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_locked_instance_voids_its_lock() {
    let db = SqliteDb::open(":memory:").unwrap();
    let store = db.hub("hub");
    store
        .create_instance(new_instance("r"), ReusePolicy::ReplaceTerminal)
        .await
        .unwrap();
    let stale = lock(&*store).await;
    let replacement = new_instance("r");
    store
        .create_instance(replacement.clone(), ReusePolicy::ReplaceAny)
        .await
        .unwrap();
    assert!(matches!(
        store.complete_orchestration(&stale, commit(&stale)).await,
        Err(StoreError::LockLost)
    ));
    let row = store.get_instance("r").await.unwrap().unwrap();
    assert_eq!(row.execution_id, replacement.execution_id);
    assert_eq!(row.runtime_status, RuntimeStatus::Pending);
    let item = lock(&*store).await;
    assert_eq!(
        item.instance.as_ref().unwrap().execution_id,
        replacement.execution_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_fail_its_batch() {
    let db = SqliteDb::open(":memory:").unwrap();
    let store = db.hub("hub");
    // Many concurrent writes land in shared transactions; the conflicting ones fail alone.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("i{}", i % 100);
            store
                .create_instance(new_instance(&id), ReusePolicy::ReplaceTerminal)
                .await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyExists { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, conflicts), (100, 100));
    let page = store
        .query_instances(&taskhub::store::InstanceQuery {
            filter: Default::default(),
            page_size: 1000,
            continuation: None,
            include_input: false,
            max_bytes: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 100);
}

/// The file holds every input and output: a new database and the folders made for it are the
/// owner's alone (they were 0644 in 0755 folders).
#[cfg(unix)]
#[test]
fn a_new_database_and_its_folders_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("nested").join("taskhub.db");
    let db = SqliteDb::open(&path).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data").join("nested")), 0o700);
    let wal = path.with_extension("db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
    drop(db);
}
