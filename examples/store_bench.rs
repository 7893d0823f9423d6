//! Rough throughput of the SQLite store: concurrent workers running instances through
//! several episodes each (lock, then complete with new history and a message to itself; the
//! last episode completes the instance).
//!
//! `cargo run --release --example store_bench -- [instances] [episodes] [workers] [db path]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use taskhub::model::{EventKind, HistoryEvent, InstanceId, RuntimeStatus};
use taskhub::store::sqlite::SqliteDb;
use taskhub::store::{
    HistoryWrite, InstanceState, NewInstance, OrchestrationCommit, OrchestrationMessage,
    ReusePolicy, Store,
};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let instances = arg(1, 5_000);
    let episodes = arg(2, 5);
    let workers = arg(3, 64);
    let dir = tempfile_dir()?;
    let path = std::env::args()
        .nth(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("bench.db"));
    let db = SqliteDb::open(&path)?;
    let store = db.hub("bench");
    // Start dispatch (lease + load) before timing.
    store
        .lock_next_orchestration(Duration::from_secs(60), Duration::ZERO)
        .await?;

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let creators: Vec<_> = (0..workers)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= instances {
                        return anyhow::Ok(());
                    }
                    let new = NewInstance {
                        instance_id: InstanceId::parse(format!("bench-{i}"))?,
                        name: "Bench".into(),
                        version: String::new(),
                        execution_id: taskhub::model::new_guid_n(),
                        input: Some(format!("{{\"n\":{i}}}")),
                        created_time: Utc::now(),
                        scheduled_start_time: None,
                        parent: None,
                        tags: Default::default(),
                    };
                    store.create_instance(new, ReusePolicy::ReplaceAny).await?;
                }
            })
        })
        .collect();
    for c in creators {
        c.await??;
    }
    let create_secs = started.elapsed().as_secs_f64();
    println!(
        "created {instances} instances in {create_secs:.2}s: {:.0} creates/s",
        instances as f64 / create_secs
    );

    let total = instances * episodes;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let runners: Vec<_> = (0..workers)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                while done.load(Ordering::Relaxed) < total {
                    let Some(item) = store
                        .lock_next_orchestration(Duration::from_secs(60), Duration::from_millis(50))
                        .await?
                    else {
                        continue;
                    };
                    let row = item.instance.clone().expect("row");
                    // Each episode appends three events plus what it received.
                    let episode = item.history.len() as u64 / 4;
                    let last = episode + 1 >= episodes;
                    let mut history =
                        vec![HistoryEvent::unscheduled(EventKind::OrchestratorStarted)];
                    history.extend(item.messages.iter().map(|m| m.event.clone()));
                    history.push(HistoryEvent::new(
                        episode as i32,
                        Utc::now(),
                        EventKind::TaskScheduled {
                            name: "Work".into(),
                            input: Some("\"x\"".into()),
                        },
                    ));
                    history.push(HistoryEvent::unscheduled(EventKind::OrchestratorCompleted));
                    let status = if last {
                        RuntimeStatus::Completed
                    } else {
                        RuntimeStatus::Running
                    };
                    let messages = if last {
                        vec![]
                    } else {
                        vec![OrchestrationMessage {
                            instance_id: item.instance_id.clone(),
                            execution_id: Some(row.execution_id.clone()),
                            event: HistoryEvent::unscheduled(EventKind::TaskCompleted {
                                task_scheduled_id: episode as i32,
                                result: Some("\"ok\"".into()),
                            }),
                            visible_at: None,
                        }]
                    };
                    let commit = OrchestrationCommit {
                        history: HistoryWrite::Append(history),
                        state: Some(InstanceState {
                            name: row.name,
                            version: row.version,
                            execution_id: row.execution_id,
                            runtime_status: status,
                            input: row.input,
                            output: last.then(|| "\"done\"".into()),
                            custom_status: None,
                            created_time: row.created_time,
                            last_updated_time: Utc::now(),
                            completed_time: last.then(Utc::now),
                            parent_instance_id: None,
                            tags: row.tags,
                        }),
                        messages,
                        new_instances: vec![],
                        activities: vec![],
                    };
                    store.complete_orchestration(&item, commit).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for r in runners {
        r.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} work items locked and completed by {workers} workers in {secs:.2}s: \
         {:.0} commits/s",
        total as f64 / secs
    );
    let sample = store.get_history("bench-0").await?;
    println!("history of one instance: {} events", sample.len());
    drop(store);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("taskhub-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
