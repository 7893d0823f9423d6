//! Several taskhub processes share one task hub on Azurite through partition leases: instances
//! started through a management-only client all complete, no activity runs twice concurrently
//! for one task, and after `kill -9` of one process its partitions move and every instance still
//! completes. The test re-runs its own binary as the worker processes.

#![cfg(feature = "azure")]

mod azure;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use taskhub::engine::{ActivityContext, OrchestrationContext};
use taskhub::model::RuntimeStatus;
use taskhub::samples;
use taskhub::store::{InstanceFilter, InstanceQuery};

const ROLE: &str = "TASKHUB_MP_CHILD_HUB";
const LOG: &str = "TASKHUB_MP_ACTIVITY_LOG";
const INSTANCES: usize = 200;

/// Kills the worker processes however the test ends.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

fn spawn_worker(hub: &str, log: &std::path::Path, name: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_process_entry",
            "--include-ignored",
            "--nocapture",
        ])
        .env(ROLE, hub)
        .env(LOG, log)
        .env("TASKHUB_AZURE_WORKER_ID", name)
        .env("TASKHUB_AZURE_LEASE_SECONDS", "6")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(format!("{}.{name}.log", log.display())).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in out.by_ref() {
        if line.unwrap().trim() == "READY" {
            // Keep draining: the child's test harness writes later ("running for over 60
            // seconds"), and a closed pipe would make it exit.
            std::thread::spawn(move || for _ in out {});
            return child;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("worker {name} exited before it was ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_a_hub_and_survive_kill_9() {
    azure::require_azurite();
    let hub = azure::fresh_hub();
    // Logs (activity log, each worker's stderr) stay in target/ for a post-mortem.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&hub);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("activities.log");
    eprintln!("hub {hub}, logs in {}", dir.display());
    let mut workers = Workers(vec![
        spawn_worker(&hub, &log, "worker-a"),
        spawn_worker(&hub, &log, "worker-b"),
        spawn_worker(&hub, &log, "worker-c"),
    ]);

    // Start through one management-only client, query through another.
    let reg = || tracked_registry(String::new(), String::new());
    let (rt1, starter) = azure::runtime(&hub, reg(), false, &[]);
    let (rt2, observer) = azure::runtime(&hub, reg(), false, &[]);
    let mut ids = Vec::new();
    for i in 0..INSTANCES {
        let id = starter.start("Tracked", None, json!(i)).await.unwrap();
        ids.push(id.as_str().to_string());
    }
    let mut listed = 0;
    let mut continuation = None;
    loop {
        let page = observer
            .query(&InstanceQuery {
                filter: InstanceFilter::default(),
                page_size: 50,
                continuation,
                include_input: false,
            })
            .await
            .unwrap();
        listed += page.items.len();
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(listed, INSTANCES);

    // Let work spread over the processes, then kill one mid-flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done = completed(&observer, &ids).await;
        if done >= INSTANCES / 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress: {done} completed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let victim = &mut workers.0[1];
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let killed_at = now_micros();

    for id in &ids {
        let s = azure::finish(&observer, id, 240).await;
        assert_eq!(s.runtime_status, RuntimeStatus::Completed, "{id}: {s:?}");
        let out: Value = serde_json::from_str(s.output.as_deref().unwrap()).unwrap();
        assert_eq!(out.as_array().unwrap().len(), 3, "{id}: {out}");
    }

    // No two runs of one task overlapped in time (a killed run ends at the kill).
    let text = std::fs::read_to_string(&log).unwrap();
    let mut runs: HashMap<(String, String), Vec<(u128, u128)>> = HashMap::new();
    let mut open: HashMap<(String, String, String), u128> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (kind, worker, inst, task, t) = (f[0], f[1], f[2], f[3], f[4].parse::<u128>().unwrap());
        let key = (inst.to_string(), task.to_string(), worker.to_string());
        match kind {
            "START" => {
                open.insert(key, t);
            }
            _ => {
                let start = open.remove(&key).expect("END after START");
                runs.entry((key.0, key.1)).or_default().push((start, t));
            }
        }
    }
    for ((inst, task, _), start) in open {
        runs.entry((inst, task))
            .or_default()
            .push((start, killed_at));
    }
    for (task, mut spans) in runs {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "task {task:?} ran concurrently: {spans:?}"
            );
        }
    }

    // The killed worker's partitions moved to the survivors (once its lease ran out).
    let s = azure::store(&hub);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = s
            .hub_resources()
            .partitions
            .query(None, None)
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        let owners: Vec<&str> = rows
            .iter()
            .map(|r| r.get("CurrentOwner").and_then(Value::as_str).unwrap_or(""))
            .collect();
        if owners.iter().all(|o| *o == "worker-a" || *o == "worker-c") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions not taken over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rt1.shutdown().await;
    rt2.shutdown().await;
}

async fn completed(client: &taskhub::client::Client, ids: &[String]) -> usize {
    let page = client
        .query(&InstanceQuery {
            filter: InstanceFilter {
                statuses: vec![RuntimeStatus::Completed],
                ..Default::default()
            },
            page_size: ids.len(),
            continuation: None,
            include_input: false,
        })
        .await
        .unwrap();
    page.items.len()
}

/// A worker process of the test above; does nothing unless started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the worker processes started by three_processes_share_a_hub…"]
async fn worker_process_entry() {
    let Ok(hub) = std::env::var(ROLE) else {
        return;
    };
    let log = std::env::var(LOG).unwrap();
    let worker = std::env::var("TASKHUB_AZURE_WORKER_ID").unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("taskhub=info")
        .with_writer(std::io::stderr)
        .try_init();
    let reg = tracked_registry(log, worker);
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TASKHUB_AZURE_"))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (_rt, client) = azure::runtime(&hub, reg, true, &env);
    // The executor starts with the first client; its partition manager with the first lock call.
    let _ = client.hub();
    println!("READY");
    std::future::pending::<()>().await;
}

/// The samples plus `Tracked`: three activity calls that log their start and end.
fn tracked_registry(log: String, worker: String) -> taskhub::engine::Registry {
    let mut reg = samples::registry();
    reg.orchestrator("Tracked", |ctx: OrchestrationContext| async move {
        let mut out = Vec::new();
        for step in 0..3 {
            out.push(ctx.call_activity("TrackedStep", step).await?);
        }
        Ok(Value::Array(out))
    })
    .activity("TrackedStep", move |ctx: ActivityContext| {
        let (log, worker) = (log.clone(), worker.clone());
        async move {
            let task = format!("{}", ctx.input::<Value>()?);
            let write = |kind: &str| {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&log)
                    .unwrap();
                // One write per line: O_APPEND keeps lines whole across processes.
                f.write_all(
                    format!(
                        "{kind} {worker} {} {task} {}\n",
                        ctx.instance_id,
                        now_micros()
                    )
                    .as_bytes(),
                )
                .unwrap();
            };
            write("START");
            tokio::time::sleep(Duration::from_millis(20)).await;
            write("END");
            Ok(json!(task))
        }
    });
    reg
}
