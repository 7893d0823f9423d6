//! HTTP API benchmarks (issue 3, "Speed"), in one run:
//!
//! 1. status GET at N concurrent keep-alive connections against the real taskhub server, and the
//!    same load against a bare axum handler returning the same bytes (the baseline);
//! 2. start-to-200 through `POST /api/orchestrators/HelloSequence/wait`, sequential and
//!    concurrent;
//! 3. list a page of 100 with status + time filters over many instances (populated through the
//!    store API), and following continuation tokens.
//!
//! Both servers run in this process on 127.0.0.1:0 and share its cores with the load generator.

#[allow(dead_code)]
#[path = "../report.rs"]
mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use serde_json::{json, Value};
use taskhub::config::{Config, ExecutorConfig};
use taskhub::http::{serve, AppState, V2_PREFIX};
use taskhub::model::{EventKind, FailureDetails, HistoryEvent, InstanceId, RuntimeStatus};
use taskhub::runtime::Runtime;
use taskhub::samples;
use taskhub::storage::Storage;
use taskhub::store::{
    HistoryWrite, InstanceFilter, InstanceState, NewInstance, OrchestrationCommit, ReusePolicy,
    Store,
};
use tokio::sync::oneshot;

use report::percentile;

#[derive(Parser, Debug)]
#[command(about = "taskhub HTTP API benchmarks: status GET vs bare axum, list, wait route")]
struct Args {
    /// Concurrent keep-alive connections for the status GET load.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of status GET load per server (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Sequential requests to the wait route.
    #[arg(long, default_value_t = 200)]
    wait_requests: usize,
    /// Requests to the wait route in the concurrent round.
    #[arg(long, default_value_t = 400)]
    wait_concurrent_requests: usize,
    /// Concurrency of the concurrent wait round.
    #[arg(long, default_value_t = 16)]
    wait_concurrency: usize,
    /// Instances to populate for the list benchmark (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    list_instances: usize,
    /// Fraction of the populated instances taken out of Pending (Completed / Failed / Terminated
    /// in turn) through the store's execution half.
    #[arg(long, default_value_t = 0.1)]
    list_finished_fraction: f64,
    /// Filtered list requests (each a different time window).
    #[arg(long, default_value_t = 200)]
    list_requests: usize,
    /// Pages followed through continuation tokens, per chain.
    #[arg(long, default_value_t = 200)]
    list_pages: usize,
    /// Concurrent `create_instance` calls while populating.
    #[arg(long, default_value_t = 256)]
    populate_concurrency: usize,
}

/// One taskhub server in this process over a fresh SQLite file.
struct Server {
    origin: String,
    runtime: Arc<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn spawn_taskhub(executor: bool) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let defaults = Config::default().executor;
    let config = Config {
        sqlite_path: dir.path().join("taskhub.db"),
        executor: ExecutorConfig {
            enabled: executor,
            ..defaults
        },
        ..Config::default()
    };
    let storage = Storage::with_env(&config.connection_setting, &config.sqlite_path, |_| None);
    let runtime = Arc::new(Runtime::with_storage(&config, samples::registry(), storage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let state = AppState::new(runtime.clone(), &config);
    let limits = taskhub::http::listener::Limits::from_config(&config);
    let task = tokio::spawn(serve(listener, state, limits, async move {
        let _ = rx.await;
    }));
    Ok(Server {
        origin,
        runtime,
        shutdown: Some(tx),
        task,
        _dir: dir,
    })
}

impl Server {
    async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await??;
        self.runtime.shutdown().await;
        Ok(())
    }
}

/// The baseline: a bare axum router whose one handler returns `body` as JSON.
async fn spawn_bare_axum(body: bytes_body::Body) -> Result<(String, oneshot::Sender<()>)> {
    let app = axum::Router::new().route(
        "/runtime/webhooks/durabletask/instances/{id}",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )],
                    body.0,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok((origin, tx))
}

mod bytes_body {
    /// A cheaply cloned fixed response body.
    #[derive(Clone)]
    pub struct Body(pub axum::body::Bytes);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 / p99 / max of unsorted latencies, as text.
fn latency_line(mut v: Vec<Duration>) -> String {
    v.sort_unstable();
    format!(
        "p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={})",
        ms(percentile(&v, 0.50)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or_default()),
        v.len()
    )
}

struct LoadResult {
    requests: usize,
    rps: f64,
    latencies: Vec<Duration>,
}

/// `connections` tasks, each with its own client (so its own keep-alive connection), GET `url`
/// in a loop for `duration` after a 1 s warm-up; every response must be 200 with `body_len` bytes.
async fn drive_get(
    url: &str,
    connections: usize,
    duration: Duration,
    body_len: usize,
) -> Result<LoadResult> {
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let url = url.to_string();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(64 * 1024);
            loop {
                let t = Instant::now();
                if t >= end {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let r = http.get(&url).send().await?;
                ensure!(r.status() == 200, "status GET answered {}", r.status());
                let b = r.bytes().await?;
                ensure!(b.len() == body_len, "unexpected body length {}", b.len());
                if t >= warm_until {
                    lat.push(t.elapsed());
                }
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r??);
    }
    let requests = latencies.len();
    Ok(LoadResult {
        requests,
        rps: requests as f64 / duration.as_secs_f64(),
        latencies,
    })
}

fn hello_sequence_output() -> Value {
    json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
}

async fn status_bench(args: &Args, app: &Server) -> Result<()> {
    let http = reqwest::Client::new();
    // One instance, run to completion, so the body is a Completed status with output.
    let r = http
        .post(format!(
            "{}/api/orchestrators/HelloSequence/wait?timeout=30&retryInterval=1",
            app.origin
        ))
        .send()
        .await?;
    ensure!(r.status() == 200, "the setup start answered {}", r.status());
    let r = http
        .get(format!("{}{V2_PREFIX}/instances?top=1", app.origin))
        .send()
        .await?;
    let list: Value = r.json().await?;
    let id = list[0]["instanceId"]
        .as_str()
        .context("no instance listed")?
        .to_string();
    let url = format!("{}{V2_PREFIX}/instances/{id}", app.origin);
    let body = http.get(&url).send().await?.bytes().await?;
    let status: Value = serde_json::from_slice(&body)?;
    ensure!(status["runtimeStatus"] == "Completed", "status: {status}");
    eprintln!(
        "status GET: instance {id}, body {} bytes; the baseline returns the same bytes",
        body.len()
    );

    let (bare_origin, bare_stop) = spawn_bare_axum(bytes_body::Body(body.clone())).await?;
    let bare_url = format!("{bare_origin}{V2_PREFIX}/instances/{id}");
    let duration = Duration::from_secs(args.duration);
    let n = body.len();

    // Baseline, taskhub, then each again: the ratio uses the sums, which evens out drift on a
    // noisy machine.
    let mut bare = Vec::new();
    let mut hub = Vec::new();
    for round in 1..=2 {
        let b = drive_get(&bare_url, args.connections, duration, n).await?;
        eprintln!(
            "  round {round} bare axum : {:>9.0} req/s  {}",
            b.rps,
            latency_line(b.latencies.clone())
        );
        let t = drive_get(&url, args.connections, duration, n).await?;
        eprintln!(
            "  round {round} taskhub   : {:>9.0} req/s  {}",
            t.rps,
            latency_line(t.latencies.clone())
        );
        bare.push(b);
        hub.push(t);
    }
    let _ = bare_stop.send(());
    let total = |v: &[LoadResult]| -> (f64, Vec<Duration>) {
        let reqs: usize = v.iter().map(|r| r.requests).sum();
        let lat = v.iter().flat_map(|r| r.latencies.clone()).collect();
        (reqs as f64 / (v.len() as f64 * duration.as_secs_f64()), lat)
    };
    let (bare_rps, bare_lat) = total(&bare);
    let (hub_rps, hub_lat) = total(&hub);
    let mut sorted = hub_lat.clone();
    sorted.sort_unstable();
    let p99 = ms(percentile(&sorted, 0.99));
    println!(
        "STATUS GET ({} connections, 2 x {} s each):",
        args.connections, args.duration
    );
    println!(
        "  bare axum : {bare_rps:>9.0} req/s  {}",
        latency_line(bare_lat)
    );
    println!(
        "  taskhub   : {hub_rps:>9.0} req/s  {}",
        latency_line(hub_lat)
    );
    let ratio = hub_rps / bare_rps;
    println!(
        "  ratio taskhub/bare = {:.1} %  (target >= 50 %: {})   p99 {p99:.3} ms (target < 5 ms: {})",
        ratio * 100.0,
        met(ratio >= 0.5),
        met(p99 < 5.0)
    );
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

async fn wait_bench(args: &Args, app: &Server) -> Result<()> {
    let url = format!(
        "{}/api/orchestrators/HelloSequence/wait?timeout=10&retryInterval=1",
        app.origin
    );
    let expected = hello_sequence_output();
    let one = |http: reqwest::Client, url: String, expected: Value| async move {
        let t = Instant::now();
        let r = http.post(&url).send().await?;
        let code = r.status();
        let body: Value = r.json().await?;
        let d = t.elapsed();
        ensure!(code == 200, "wait route answered {code}: {body}");
        ensure!(body == expected, "wait route output {body}");
        Ok::<_, anyhow::Error>(d)
    };
    let http = reqwest::Client::new();
    let mut seq = Vec::with_capacity(args.wait_requests);
    let t0 = Instant::now();
    for _ in 0..args.wait_requests {
        seq.push(one(http.clone(), url.clone(), expected.clone()).await?);
    }
    let seq_wall = t0.elapsed();

    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for _ in 0..args.wait_concurrency {
        let (http, url, expected, next) = (
            reqwest::Client::new(),
            url.clone(),
            expected.clone(),
            next.clone(),
        );
        let total = args.wait_concurrent_requests;
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                lat.push(one(http.clone(), url.clone(), expected.clone()).await?);
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut conc = Vec::new();
    while let Some(r) = tasks.join_next().await {
        conc.extend(r??);
    }
    let conc_wall = t0.elapsed();
    println!("WAIT ROUTE (POST /api/orchestrators/HelloSequence/wait?timeout=10&retryInterval=1, all 200 with the expected output):");
    println!(
        "  sequential     : {}  {:.1} req/s",
        latency_line(seq),
        args.wait_requests as f64 / seq_wall.as_secs_f64()
    );
    println!(
        "  concurrency {:<2} : {}  {:.1} req/s",
        args.wait_concurrency,
        latency_line(conc),
        args.wait_concurrent_requests as f64 / conc_wall.as_secs_f64()
    );
    Ok(())
}

/// A bijection of 0..n that scatters consecutive creations over the created-time range.
fn scatter(i: usize, n: usize, mult: usize) -> usize {
    ((i as u128 * mult as u128) % n as u128) as usize
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

const FINISHED: [RuntimeStatus; 3] = [
    RuntimeStatus::Completed,
    RuntimeStatus::Failed,
    RuntimeStatus::Terminated,
];

fn finish_commit(
    item: &taskhub::store::OrchestrationWorkItem,
    status: RuntimeStatus,
) -> Result<OrchestrationCommit> {
    let rec = item
        .instance
        .as_ref()
        .context("a locked instance has no row")?;
    let now = Utc::now();
    let (output, failure) = match status {
        RuntimeStatus::Completed => (Some("\"done\"".to_string()), None),
        RuntimeStatus::Failed => (
            Some("boom".to_string()),
            Some(FailureDetails::new("BenchError", "boom")),
        ),
        _ => (Some("\"stopped by the bench\"".to_string()), None),
    };
    let mut history: Vec<HistoryEvent> = item.messages.iter().map(|m| m.event.clone()).collect();
    history.push(HistoryEvent::new(
        -1,
        now,
        EventKind::ExecutionCompleted {
            orchestration_status: status,
            result: output.clone(),
            failure_details: failure,
        },
    ));
    Ok(OrchestrationCommit {
        history: HistoryWrite::Append(history),
        state: Some(InstanceState {
            name: rec.name.clone(),
            version: rec.version.clone(),
            execution_id: rec.execution_id.clone(),
            runtime_status: status,
            input: rec.input.clone(),
            output,
            custom_status: None,
            created_time: rec.created_time,
            last_updated_time: now,
            completed_time: Some(now),
            parent_instance_id: None,
            tags: Default::default(),
        }),
        messages: vec![],
        new_instances: vec![],
        activities: vec![],
    })
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn list_bench(args: &Args) -> Result<()> {
    let n = args.list_instances;
    // Management only: nothing runs the populated instances.
    let app = spawn_taskhub(false).await?;
    let store: Arc<dyn Store> = app.runtime.client(None, None)?.store().clone();
    store.create_hub().await?;

    // created_time: one instance every 2.592 s over 30 days (for 1,000,000), scattered so that
    // creation order is not time order.
    let base: DateTime<Utc> = "2026-01-01T00:00:00Z".parse()?;
    let span = chrono::Duration::days(30);
    let step_us = (span.num_microseconds().unwrap() / n as i64).max(1);
    let mut mult = 999_983usize;
    while gcd(mult, n) != 1 {
        mult += 2;
    }
    eprintln!("list: populating {n} instances through Store::create_instance ...");
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.populate_concurrency.clamp(1, n.max(1)) {
        let (store, next) = (store.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let slot = scatter(i, n, mult);
                let created = base + chrono::Duration::microseconds(step_us * slot as i64);
                store
                    .create_instance(
                        NewInstance {
                            instance_id: InstanceId::parse(format!("list-{slot:07}"))?,
                            name: "HelloSequence".into(),
                            version: String::new(),
                            execution_id: taskhub::model::new_guid_n(),
                            input: Some(format!("{{\"n\":{slot}}}")),
                            created_time: created,
                            scheduled_start_time: None,
                            parent: None,
                            tags: Default::default(),
                        },
                        ReusePolicy::ReplaceTerminal,
                    )
                    .await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let populate = t0.elapsed();
    println!(
        "LIST: populated {n} instances in {:.1} s = {:.0} create_instance/s ({} concurrent)",
        populate.as_secs_f64(),
        n as f64 / populate.as_secs_f64(),
        args.populate_concurrency
    );

    // Take a fraction out of Pending through the execution half (lock + complete).
    let finish = ((n as f64) * args.list_finished_fraction).round() as usize;
    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, done) = (store.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let k = done.fetch_add(1, Ordering::Relaxed);
                if k >= finish {
                    return Ok::<_, anyhow::Error>(());
                }
                let item = store
                    .lock_next_orchestration(Duration::from_secs(300), Duration::from_secs(10))
                    .await?
                    .context("no orchestration to lock")?;
                let commit = finish_commit(&item, FINISHED[k % 3])?;
                store.complete_orchestration(&item, commit).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let client = app.runtime.client(None, None)?;
    let mut counts = Vec::new();
    for s in [
        RuntimeStatus::Pending,
        RuntimeStatus::Completed,
        RuntimeStatus::Failed,
        RuntimeStatus::Terminated,
    ] {
        let c = client
            .count_instances(&InstanceFilter {
                statuses: vec![s],
                ..Default::default()
            })
            .await?;
        counts.push(format!("{s:?} {c}"));
    }
    println!(
        "  finished {finish} through lock+complete in {:.1} s; statuses: {}",
        t0.elapsed().as_secs_f64(),
        counts.join(", ")
    );

    let http = reqwest::Client::new();
    let list_url = format!("{}{V2_PREFIX}/instances", app.origin);
    // Filtered first pages: a 1-day window at a different place each request.
    let cases: [(&str, &str); 3] = [
        ("Completed", "Completed (~3 % of rows)"),
        ("Pending", "Pending (~90 % of rows)"),
        ("Failed,Terminated", "Failed,Terminated (~7 % of rows)"),
    ];
    let window = chrono::Duration::days(1);
    let room = (span - window).num_seconds();
    for (statuses, label) in cases {
        let mut lat = Vec::new();
        let mut items = 0usize;
        for r in 0..args.list_requests {
            let from = base
                + chrono::Duration::seconds(scatter(r, room as usize, 7_919) as i64 % room.max(1));
            let to = from + window;
            let url = format!(
                "{list_url}?runtimeStatus={statuses}&createdTimeFrom={}&createdTimeTo={}&top=100",
                iso(from),
                iso(to)
            );
            let t = Instant::now();
            let resp = http.get(&url).send().await?;
            ensure!(resp.status() == 200, "list answered {}", resp.status());
            let page: Value = resp.json().await?;
            lat.push(t.elapsed());
            let page = page.as_array().context("list body is not an array")?;
            items += page.len();
        }
        println!(
            "  first page top=100, {label}, 1-day window: {}  avg {:.1} items/page",
            latency_line(lat),
            items as f64 / args.list_requests as f64
        );
    }
    // Continuation: follow tokens through a whole month of Pending + Completed.
    for statuses in ["Pending", "Completed"] {
        let mut lat = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = 0usize;
        let mut last_created = String::new();
        for _ in 0..args.list_pages {
            let url = format!(
                "{list_url}?runtimeStatus={statuses}&createdTimeFrom={}&createdTimeTo={}&top=100",
                iso(base),
                iso(base + span)
            );
            let mut req = http.get(&url);
            if let Some(t) = &token {
                req = req.header("x-ms-continuation-token", t);
            }
            let t = Instant::now();
            let resp = req.send().await?;
            ensure!(resp.status() == 200, "list answered {}", resp.status());
            let next = resp
                .headers()
                .get("x-ms-continuation-token")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .filter(|v| !v.is_empty());
            let page: Value = resp.json().await?;
            lat.push(t.elapsed());
            for item in page.as_array().context("list body is not an array")? {
                ensure!(item["runtimeStatus"] == statuses, "wrong status {item}");
                let c = item["createdTime"].as_str().unwrap_or_default().to_string();
                ensure!(c >= last_created, "pages out of order");
                last_created = c;
                seen += 1;
            }
            token = next;
            if token.is_none() {
                break;
            }
        }
        println!(
            "  continuation pages top=100, {statuses}, 30-day window: {}  ({seen} instances, ascending)",
            latency_line(lat)
        );
    }
    app.stop().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.duration == 0 {
        bail!("--connections and --duration must be positive");
    }
    println!(
        "taskhub HTTP bench, {} CPUs, file SQLite in a temp dir, servers and load generator in one process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let app = spawn_taskhub(true).await?;
    status_bench(&args, &app).await?;
    wait_bench(&args, &app).await?;
    app.stop().await?;
    if args.list_instances > 0 {
        list_bench(&args).await?;
    }
    Ok(())
}
