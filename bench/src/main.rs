//! HelloCities5 throughput: taskhub on a file-backed SQLite store with durable commits, then the
//! same workload on duroxide (its file SQLite provider) in the same run, and the ratio.
//!
//! A benchmark, not a test: it reports figures and fails loudly only when an instance does not
//! complete with the documented output.
//!
//! The duroxide side is the `duroxide-peer` program (`bench/duroxide-peer`, its own workspace,
//! because its sqlx and our rusqlite link different libsqlite3-sys versions); this program runs it
//! as a child process after the taskhub run and reads its JSON figures.
//!
//! `--connection UseDevelopmentStorage=true` runs the same taskhub workload on the Azure Storage
//! backend instead (Azurite, in a fresh task hub), for the record; duroxide has no such store.

mod report;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use serde_json::Value;
use taskhub::client::Client;
use taskhub::engine::executor::{self, ExecutorOptions};
use taskhub::model::new_guid_n;
use taskhub::model::{InstanceId, RuntimeStatus};
use taskhub::samples;
use taskhub::storage::Storage;
use taskhub::store::sqlite::SqliteDb;
use taskhub::store::{InstanceFilter, InstanceQuery, Store};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use report::Summary;

const DEFAULT_PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/duroxide-peer/target/release/duroxide-peer"
);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    Taskhub,
    Duroxide,
}

#[derive(Parser, Debug)]
#[command(about = "HelloCities5 throughput: taskhub vs duroxide, file SQLite, same run")]
struct Args {
    /// HelloCities5 instances to run on taskhub.
    #[arg(long, default_value_t = 5000)]
    instances: usize,
    /// taskhub orchestration workers.
    #[arg(long, default_value_t = ExecutorOptions::default().orchestration_workers)]
    orchestration_workers: usize,
    /// taskhub activity workers.
    #[arg(long, default_value_t = ExecutorOptions::default().activity_workers)]
    activity_workers: usize,
    /// HelloCities5 instances to run on duroxide (it is much slower; compare rates, not totals).
    #[arg(long, default_value_t = 1000)]
    duroxide_instances: usize,
    /// duroxide `orchestration_concurrency` (its default is 2).
    #[arg(long, default_value_t = 2)]
    duroxide_orchestration_workers: usize,
    /// duroxide `worker_concurrency` (its default is 2).
    #[arg(long, default_value_t = 2)]
    duroxide_activity_workers: usize,
    /// Concurrent tasks issuing start calls (both engines).
    #[arg(long, default_value_t = 64)]
    starters: usize,
    /// Run one engine only.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Directory for the database files (a fresh temporary directory inside it; default: the
    /// system temporary directory). Use a real disk: on tmpfs a "durable" commit costs nothing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The duroxide-peer program (build it with
    /// `cargo build --release --manifest-path bench/duroxide-peer/Cargo.toml`).
    #[arg(long, default_value = DEFAULT_PEER)]
    duroxide_bin: PathBuf,
    /// Give up (and fail) when one engine's run takes longer than this.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Also print the summaries as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Run taskhub on this storage connection string instead of a fresh SQLite file, in a fresh
    /// task hub: `UseDevelopmentStorage=true` (Azurite) or an Azure Storage account string.
    /// taskhub only (duroxide has no such store).
    #[arg(long)]
    connection: Option<String>,
    /// After the run, time this many sequential status reads (`Store::get_instance` of
    /// completed instances, what a status GET does) and report their latency.
    #[arg(long, default_value_t = 200)]
    status_reads: usize,
}

impl Args {
    /// What the taskhub run is stored on, for the report.
    fn storage_label(&self) -> &'static str {
        match self.connection {
            Some(_) => "Azure Storage",
            None => "file SQLite",
        }
    }
}

fn instance_id(i: usize) -> String {
    format!("bench-{i:06}")
}

fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix("bench-")?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    // The engine's warnings (failed Azure calls, lost locks) explain a slow run; RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.connection.is_some() {
        if args.only == Some(Only::Duroxide) {
            bail!("--connection selects taskhub's store; duroxide runs on SQLite only");
        }
        args.only = Some(Only::Taskhub);
    }
    let peer = match args.only {
        Some(Only::Taskhub) => None,
        _ if !args.duroxide_bin.exists() => bail!(
            "the duroxide peer is not built ({} is missing); build it with\n  \
             cargo build --release --manifest-path bench/duroxide-peer/Cargo.toml\n\
             or pass --only taskhub",
            args.duroxide_bin.display()
        ),
        _ => Some(args.duroxide_bin.clone()),
    };
    eprintln!(
        "HelloCities5 (5 sequential SayHello activities), {}, {} CPUs",
        args.storage_label(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let taskhub = match args.only {
        Some(Only::Duroxide) => None,
        _ => {
            let s = run_taskhub(&args).await?;
            eprintln!("{s}");
            Some(s)
        }
    };
    let duroxide = match peer {
        None => None,
        Some(bin) => {
            let s = run_duroxide(&args, &bin).await?;
            eprintln!("{s}");
            Some(s)
        }
    };

    println!("\nresults (HelloCities5, {}):", args.storage_label());
    for s in taskhub.iter().chain(duroxide.iter()) {
        println!("{s}");
    }
    if let (Some(t), Some(d)) = (&taskhub, &duroxide) {
        let ratio = t.orchestrations_per_s / d.orchestrations_per_s;
        println!(
            "ratio: taskhub {:.1} orch/s / duroxide {:.1} orch/s = {ratio:.1}x",
            t.orchestrations_per_s, d.orchestrations_per_s
        );
    }
    // The targets are about the embedded store; an emulator's figure is for the record only.
    if let Some(t) = taskhub.as_ref().filter(|_| args.connection.is_none()) {
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "target >= 1000 orch/s: {}",
            verdict(t.orchestrations_per_s >= 1000.0)
        );
        if let Some(d) = &duroxide {
            println!(
                "target >= 20x duroxide: {}",
                verdict(t.orchestrations_per_s >= 20.0 * d.orchestrations_per_s)
            );
        }
    }
    if args.json {
        for s in taskhub.iter().chain(duroxide.iter()) {
            println!("{}", serde_json::to_string(s)?);
        }
    }
    Ok(())
}

async fn run_taskhub(args: &Args) -> Result<Summary> {
    let n = args.instances;
    if n == 0 {
        bail!("--instances must be at least 1");
    }
    let dir = match &args.data_dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory for the database")?;
    let db_path = dir.path().join("taskhub.db");
    let store: Arc<dyn Store> = match &args.connection {
        None => {
            eprintln!("taskhub: {n} instances, database {}", db_path.display());
            let db = SqliteDb::open(&db_path).context("opening the taskhub SQLite store")?;
            db.hub("BenchHub")
        }
        Some(conn) => {
            // Through `Storage`, as the server selects a backend; a fresh hub so reruns on one
            // emulator do not see earlier instances.
            let hub = format!("Bench{}", &new_guid_n()[..12]);
            eprintln!("taskhub: {n} instances, Azure Storage task hub {hub}");
            let conn = conn.clone();
            let storage = Storage::with_env("AzureWebJobsStorage", &db_path, move |name| {
                (name == "AzureWebJobsStorage").then(|| conn.clone())
            });
            storage
                .open(None, &hub)
                .context("opening the Azure Storage task hub")?
        }
    };
    store.create_hub().await?;
    // Subscribe before anything starts, so no change is missed.
    let changes = store.subscribe();
    let registry = Arc::new(samples::registry());
    let workers = ExecutorOptions {
        orchestration_workers: args.orchestration_workers,
        activity_workers: args.activity_workers,
    };
    let exec = executor::spawn(store.clone(), registry.clone(), workers, None);
    let client = Client::new(store.clone(), Some(registry));
    // A running server: the executor has taken the hub's lease before the first start. On Azure
    // Storage that is the partition leases in a table, which take a few round trips.
    let settle = if args.connection.is_some() { 2000 } else { 200 };
    tokio::time::sleep(Duration::from_millis(settle)).await;

    let t0 = Instant::now();
    let started_ns: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let starting = {
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
                    let id = InstanceId::parse(instance_id(i))?;
                    started_ns[i].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    client
                        .start("HelloCities5", Some(id), Value::Null)
                        .await
                        .with_context(|| format!("starting {}", instance_id(i)))?;
                }
            });
        }
        tokio::spawn(async move {
            while let Some(r) = starters.join_next().await {
                r??;
            }
            Ok::<_, anyhow::Error>(t0.elapsed())
        })
    };

    let mut watch = Watch::new(n, t0);
    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    match changes {
        Some(mut rx) => {
            while watch.remaining > 0 {
                if Instant::now() > deadline {
                    bail!(
                        "timed out with {} of {n} instances unfinished",
                        watch.remaining
                    );
                }
                // Wake on a change; after a quiet second (or a lag), sweep by query instead.
                let mut changed = HashSet::new();
                let mut sweep = false;
                match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(Ok(id)) => {
                        changed.insert(id);
                    }
                    Ok(Err(RecvError::Lagged(_))) => sweep = true,
                    Ok(Err(RecvError::Closed)) => bail!("the store's change feed closed"),
                    Err(_) => sweep = true,
                }
                loop {
                    match rx.try_recv() {
                        Ok(id) => {
                            changed.insert(id);
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(_)) => sweep = true,
                        Err(TryRecvError::Closed) => bail!("the store's change feed closed"),
                    }
                }
                if sweep {
                    watch.sweep(&*store).await?;
                } else {
                    watch.check(&*store, changed).await?;
                }
            }
        }
        None => {
            // No change feed on this backend (Azure Storage): poll. Each sweep is a table
            // query on the same storage account the workload uses, so not in a tight loop.
            while watch.remaining > 0 {
                if Instant::now() > deadline {
                    bail!(
                        "timed out with {} of {n} instances unfinished",
                        watch.remaining
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                watch.sweep(&*store).await?;
            }
        }
    }
    let start_phase = starting.await??;
    let first_start = started_ns
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let last_done = watch.done_ns.iter().flatten().copied().max().unwrap_or(0);
    let latencies = (0..n)
        .map(|i| {
            let start = started_ns[i].load(Ordering::Relaxed);
            Duration::from_nanos(watch.done_ns[i].unwrap_or(0).saturating_sub(start))
        })
        .collect();
    let engine = match args.connection {
        Some(_) => "taskhub (Azure Storage)",
        None => "taskhub",
    };
    let summary = Summary::new(
        engine,
        (args.orchestration_workers, args.activity_workers),
        Duration::from_nanos(last_done - first_start),
        start_phase,
        latencies,
        0,
    );
    eprintln!(
        "taskhub: completions seen through {} change-notified reads and {} query sweeps",
        watch.reads, watch.sweeps
    );

    // Outside the timed window: every instance Completed with the documented output.
    let expected = report::expected_output();
    for i in 0..n {
        let id = instance_id(i);
        let rec = client.status(&id).await?;
        if rec.runtime_status != RuntimeStatus::Completed {
            bail!("{id} is {} ({:?})", rec.runtime_status, rec.output);
        }
        let output: Value = serde_json::from_str(rec.output.as_deref().unwrap_or("null"))
            .with_context(|| format!("{id}: output is not JSON: {:?}", rec.output))?;
        if output != expected {
            bail!("{id}: wrong output {output}");
        }
    }
    status_read_latency(&*store, n, args.status_reads).await?;
    exec.shutdown().await;
    Ok(summary)
}

/// `reads` sequential `get_instance` calls over the completed instances, one at a time so each
/// figure is one request's latency (with the executor idle, as a status GET after completion).
async fn status_read_latency(store: &dyn Store, n: usize, reads: usize) -> Result<()> {
    if reads == 0 {
        return Ok(());
    }
    let mut took = Vec::with_capacity(reads);
    for r in 0..reads {
        let id = instance_id(r % n);
        let t = Instant::now();
        store
            .get_instance(&id)
            .await?
            .with_context(|| format!("{id} is gone"))?;
        took.push(t.elapsed());
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = took.iter().sum::<Duration>() / reads as u32;
    eprintln!(
        "taskhub: status read (Store::get_instance, {reads} sequential): mean {:.2} ms, \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(mean),
        ms(report::percentile(&took, 0.50)),
        ms(report::percentile(&took, 0.99)),
        ms(*took.last().unwrap())
    );
    Ok(())
}

/// Which instances finished, and when the bench saw it.
struct Watch {
    t0: Instant,
    done_ns: Vec<Option<u64>>,
    remaining: usize,
    reads: u64,
    sweeps: u64,
}

impl Watch {
    fn new(n: usize, t0: Instant) -> Self {
        Watch {
            t0,
            done_ns: vec![None; n],
            remaining: n,
            reads: 0,
            sweeps: 0,
        }
    }

    fn pending(&self, id: &str) -> Option<usize> {
        index_of(id).filter(|&i| i < self.done_ns.len() && self.done_ns[i].is_none())
    }

    /// Records a terminal instance; anything but Completed fails the run.
    fn finish(&mut self, i: usize, status: RuntimeStatus, output: &Option<String>) -> Result<()> {
        match status {
            RuntimeStatus::Completed => {
                self.done_ns[i] = Some(self.t0.elapsed().as_nanos() as u64);
                self.remaining -= 1;
                Ok(())
            }
            s if s.is_terminal() => bail!("{} ended {s}: {output:?}", instance_id(i)),
            _ => Ok(()),
        }
    }

    /// Reads the changed instances that are still pending.
    async fn check(&mut self, store: &dyn Store, changed: HashSet<Arc<str>>) -> Result<()> {
        let ids: Vec<Arc<str>> = changed
            .into_iter()
            .filter(|id| self.pending(id).is_some())
            .collect();
        self.reads += ids.len() as u64;
        let mut reads = futures::stream::iter(ids)
            .map(|id| async move { (store.get_instance(&id).await, id) })
            .buffer_unordered(32);
        while let Some((rec, id)) = reads.next().await {
            let Some(rec) = rec? else {
                bail!("{id} changed but cannot be found");
            };
            if let Some(i) = self.pending(&id) {
                self.finish(i, rec.runtime_status, &rec.output)?;
            }
        }
        Ok(())
    }

    /// Lists every terminal bench instance by query (after a lagged or quiet change feed).
    async fn sweep(&mut self, store: &dyn Store) -> Result<()> {
        self.sweeps += 1;
        let mut query = InstanceQuery {
            filter: InstanceFilter {
                statuses: RuntimeStatus::ALL
                    .into_iter()
                    .filter(|s| s.is_terminal())
                    .collect(),
                instance_id_prefix: Some("bench-".into()),
                ..InstanceFilter::default()
            },
            page_size: 1000,
            continuation: None,
            include_input: false,
            max_bytes: None,
        };
        loop {
            let page = store.query_instances(&query).await?;
            for rec in &page.items {
                if let Some(i) = self.pending(&rec.instance_id) {
                    self.finish(i, rec.runtime_status, &rec.output)?;
                }
            }
            match page.continuation {
                Some(c) => query.continuation = Some(c),
                None => return Ok(()),
            }
        }
    }
}

async fn run_duroxide(args: &Args, bin: &PathBuf) -> Result<Summary> {
    eprintln!(
        "duroxide: {} instances (child process {})",
        args.duroxide_instances,
        bin.display()
    );
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--json")
        .args(["--instances", &args.duroxide_instances.to_string()])
        .args([
            "--orchestration-workers",
            &args.duroxide_orchestration_workers.to_string(),
        ])
        .args([
            "--activity-workers",
            &args.duroxide_activity_workers.to_string(),
        ])
        .args(["--starters", &args.starters.to_string()])
        .args(["--timeout-secs", &args.timeout_secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(d) = &args.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    // duroxide logs its retried SQLITE_BUSY errors at WARN; keep the console readable.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "error");
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("the duroxide peer failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the duroxide peer printed no JSON summary")?;
    serde_json::from_str(line).context("reading the duroxide peer's summary")
}
