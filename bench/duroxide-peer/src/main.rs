//! HelloCities5 on duroxide with its file-backed SQLite provider (default settings), measured the
//! same way `taskhub-bench` measures taskhub. Prints a human line on stderr and, with `--json`,
//! one JSON [`report::Summary`] on stdout.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{Runtime, RuntimeOptions};
use duroxide::OrchestrationStatus;
use duroxide::{ActivityContext, Client, OrchestrationContext, OrchestrationRegistry};

#[path = "../../src/report.rs"]
mod report;

use report::{Summary, CITIES};

#[derive(Parser, Debug)]
#[command(about = "HelloCities5 throughput on duroxide (file SQLite)")]
struct Args {
    /// How many HelloCities5 instances to run.
    #[arg(long, default_value_t = 500)]
    instances: usize,
    /// duroxide `orchestration_concurrency`.
    #[arg(long, default_value_t = 2)]
    orchestration_workers: usize,
    /// duroxide `worker_concurrency` (activity workers).
    #[arg(long, default_value_t = 2)]
    activity_workers: usize,
    /// Concurrent tasks issuing start calls.
    #[arg(long, default_value_t = 64)]
    starters: usize,
    /// How often the completion watcher lists Completed / Failed instances.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Directory for the database file (a fresh temporary directory inside it).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Print the summary as one JSON line on stdout.
    #[arg(long)]
    json: bool,
}

fn instance_id(i: usize) -> String {
    format!("bench-{i:06}")
}

/// An instance's status; retries the provider's transient errors (SQLITE_BUSY) a few times.
async fn status_of(client: &Client, id: &str) -> Result<OrchestrationStatus> {
    let mut attempt = 0;
    loop {
        match client.get_orchestration_status(id).await {
            Ok(s) => return Ok(s),
            Err(e) if attempt < 10 => {
                eprintln!("duroxide: reading {id} failed ({e:?}); retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => bail!("reading {id}: {e:?}"),
        }
    }
}

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix("bench-")?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let dir = match &args.data_dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory for the database")?;
    let db_path = dir.path().join("duroxide.db");
    std::fs::File::create(&db_path)?;
    let url = format!("sqlite:{}", db_path.display());
    // Default provider settings: WAL, its own pragmas, a pool of 5 connections.
    let store = Arc::new(
        SqliteProvider::new(&url, None)
            .await
            .context("opening the duroxide SQLite provider")?,
    );

    let activities = ActivityRegistry::builder()
        .register(
            "SayHello",
            |_ctx: ActivityContext, city: String| async move { Ok(format!("Hello {city}!")) },
        )
        .build();
    let orchestrations = OrchestrationRegistry::builder()
        .register(
            "HelloCities5",
            |ctx: OrchestrationContext, _input: String| async move {
                let mut out = Vec::with_capacity(CITIES.len());
                for city in CITIES {
                    out.push(ctx.schedule_activity("SayHello", city).await?);
                }
                serde_json::to_string(&out).map_err(|e| e.to_string())
            },
        )
        .build();
    let options = RuntimeOptions {
        orchestration_concurrency: args.orchestration_workers,
        worker_concurrency: args.activity_workers,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start_with_options(store.clone(), activities, orchestrations, options).await;
    let client = Client::new(store.clone());

    let n = args.instances;
    let t0 = Instant::now();
    let started_ns: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut starters = tokio::task::JoinSet::new();
    for _ in 0..args.starters.clamp(1, n) {
        let (client, next, started_ns) = (client.clone(), next.clone(), started_ns.clone());
        starters.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                started_ns[i].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                client
                    .start_orchestration(instance_id(i), "HelloCities5", "")
                    .await
                    .with_context(|| format!("starting {}", instance_id(i)))?;
            }
        });
    }
    let starting = tokio::spawn(async move {
        while let Some(r) = starters.join_next().await {
            r??;
        }
        Ok::<_, anyhow::Error>(t0.elapsed())
    });

    // One watcher lists finished instances every `poll_ms` (a per-instance wait would add a
    // status read per instance per poll and load the store far more).
    let mut done_ns: Vec<Option<u64>> = vec![None; n];
    let mut failed = vec![false; n];
    let mut remaining = n;
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    while remaining > 0 {
        for status in ["Completed", "Failed"] {
            let ids = client
                .list_instances_by_status(status)
                .await
                .map_err(|e| anyhow::anyhow!("listing {status} instances: {e:?}"))?;
            let now = t0.elapsed().as_nanos() as u64;
            for id in ids {
                if let Some(i) = index_of(&id).filter(|&i| i < n) {
                    if done_ns[i].is_none() {
                        done_ns[i] = Some(now);
                        failed[i] = status == "Failed";
                        remaining -= 1;
                    }
                }
            }
        }
        if remaining > 0 {
            if Instant::now() > deadline {
                bail!("timed out with {remaining} of {n} duroxide instances unfinished");
            }
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
        }
    }
    let start_phase = starting.await??;
    let first_start = started_ns
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let last_done = done_ns.iter().flatten().copied().max().unwrap_or(0);
    let latencies: Vec<Duration> = (0..n)
        .filter(|&i| !failed[i])
        .map(|i| {
            let start = started_ns[i].load(Ordering::Relaxed);
            Duration::from_nanos(done_ns[i].unwrap_or(0).saturating_sub(start))
        })
        .collect();
    let failures = failed.iter().filter(|&&f| f).count();
    let summary = Summary::new(
        "duroxide",
        (args.orchestration_workers, args.activity_workers),
        Duration::from_nanos(last_done - first_start),
        start_phase,
        latencies,
        failures,
    );

    // Outside the timed window, with the runtime stopped: every instance completed with the
    // right output, or failed (the peer's own failures are reported, not hidden).
    rt.shutdown(None).await;
    let expected = report::expected_output();
    let mut first_failure = None;
    for (i, &was_failed) in failed.iter().enumerate() {
        let id = instance_id(i);
        match status_of(&client, &id).await? {
            OrchestrationStatus::Completed { output, .. } => {
                let got: serde_json::Value = serde_json::from_str(&output)
                    .with_context(|| format!("{id}: output is not JSON: {output}"))?;
                if got != expected {
                    bail!("{id}: wrong output {output}");
                }
            }
            OrchestrationStatus::Failed { details, .. } if was_failed => {
                first_failure.get_or_insert_with(|| format!("{id}: {}", details.display_message()));
            }
            other => bail!("{id}: unexpected status {other:?}"),
        }
    }
    if let Some(f) = first_failure {
        eprintln!("duroxide: {failures} of {n} instances failed; first: {f}");
    }

    eprintln!("{summary}");
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}
