//! Three real `taskhub serve` processes on one Azurite task hub, driven only over HTTP (issue
//! #5): a few hundred instances started through server A are all listed through server B; C is
//! killed with `kill -9` while they are being started and run, its partitions move to the
//! survivors and every instance still completes; and no activity ran twice concurrently for one
//! task, as the servers' own debug events ("activity started" / "activity finished") show.
//!
//! The servers' logs stay in `CARGO_TARGET_TMPDIR/<hub>/` for a post-mortem.

#![cfg(feature = "azure")]

mod azure;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use taskhub::store::azure::AzureStore;
use taskhub::store::Store;

const API: &str = "runtime/webhooks/durabletask";
const INSTANCES: usize = 300;
/// Milliseconds each of SlowSequence's three `Sleep` steps takes: two runs of one task in flight
/// at once show as overlapping spans, and the workload stays bound by storage, not sleeping.
const STEP_MS: u64 = 50;
/// The instances that complete before the kill.
const BEFORE_KILL: usize = INSTANCES / 5;
/// From the kill until every instance completed. A message the killed server held stays hidden
/// until its lock (60 s) runs out: on a fresh Azurite all complete ~61 s after the kill; on one
/// shared with other test runs for an hour it took up to ~165 s.
const AFTER_KILL: Duration = Duration::from_secs(300);
/// Until BEFORE_KILL instances completed.
const BEFORE_KILL_WITHIN: Duration = Duration::from_secs(240);
const LEASE_SECONDS: &str = "6";
/// Six partitions, so that three servers own two each. (With four, 2/2/0 is a split the
/// partition managers leave alone, and C might own none.)
const PARTITIONS: usize = 6;
/// Starts the instances.
const STARTER: &str = "server-a";
/// Lists and reads them.
const OBSERVER: &str = "server-b";
/// Is killed.
const VICTIM: &str = "server-c";

/// A `taskhub serve` process whose stderr goes to `log`.
struct Server {
    name: String,
    child: Child,
    base: String,
    log: PathBuf,
    /// When it stopped (killed or terminated): the end of any activity run it never finished.
    stopped_at: Option<DateTime<Utc>>,
}

/// Kills every server however the test ends.
struct Servers(Vec<Server>);

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.0 {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

impl Servers {
    fn get(&self, name: &str) -> &Server {
        self.0.iter().find(|s| s.name == name).unwrap()
    }

    /// Spawns `taskhub serve` as worker `name` on `hub` and waits for its address.
    fn spawn(&mut self, name: &str, hub: &str, dir: &Path) {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskhub"));
        // The log directory has no config/taskhub.toml, so only the environment configures it.
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen", "off"])
            .current_dir(dir);
        for (n, _) in std::env::vars() {
            if n.starts_with("TASKHUB_") || n == "AzureWebJobsStorage" || n == "RUST_LOG" {
                cmd.env_remove(n);
            }
        }
        cmd.env("AzureWebJobsStorage", azure::CONN)
            .env("TASKHUB_TASK_HUB", hub)
            .env("TASKHUB_AZURE_WORKER_ID", name)
            .env("TASKHUB_AZURE_LEASE_SECONDS", LEASE_SECONDS)
            .env("TASKHUB_AZURE_PARTITION_COUNT", PARTITIONS.to_string())
            .env("RUST_LOG", "info,taskhub::engine=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        self.0.push(Server {
            name: name.to_string(),
            child: cmd.spawn().expect("the taskhub binary runs"),
            base: String::new(),
            log,
            stopped_at: None,
        });
        let server = self.0.last_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(rest) = text.split("address=").nth(1) {
                let address = rest.split_whitespace().next().unwrap();
                server.base = format!("http://{address}/{API}");
                return;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited ({status}) before serving:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "{name} is not serving after 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    fn kill(&mut self, name: &str) {
        let s = self.0.iter_mut().find(|s| s.name == name).unwrap();
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        s.stopped_at = Some(Utc::now());
    }

    /// SIGTERM to every server still running (they finish in-flight work), SIGKILL after 10 s.
    fn stop_all(&mut self) {
        for s in self.0.iter().filter(|s| s.stopped_at.is_none()) {
            let _ = Command::new("kill")
                .args(["-TERM", &s.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for s in self.0.iter_mut().filter(|s| s.stopped_at.is_none()) {
            while Instant::now() < deadline && !matches!(s.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
            s.stopped_at = Some(Utc::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_a_hub_over_http_and_survive_kill_9() {
    azure::require_azurite();
    let began = Instant::now();
    let hub = azure::fresh_hub();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&hub);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("hub {hub}: server logs in {}", dir.display());
    let probe = AzuriteProbe::start();
    // Management only: reads the partition rows.
    let store = azure::store(&hub);

    let mut servers = Servers(Vec::new());
    for name in [STARTER, OBSERVER, VICTIM] {
        servers.spawn(name, &hub, &dir);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // Wait until every server owns partitions (they balance them as they come up).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let owners = partition_owners(&store).await;
        let owns = |name: &str| owners.values().any(|o| o.as_deref() == Some(name));
        if owners.len() == PARTITIONS && [STARTER, OBSERVER, VICTIM].into_iter().all(owns) {
            eprintln!("partitions spread after {:?}: {owners:?}", began.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not spread over the three servers: {owners:?}; {}",
            probe.report()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 1. Start through A (in the background, so the kill below lands while instances are still
    // being started and run).
    let a = servers.get(STARTER).base.clone();
    let starts = tokio::spawn({
        let http = http.clone();
        async move {
            futures::stream::iter(0..INSTANCES)
                .map(|_| {
                    let (http, url) = (http.clone(), format!("{a}/orchestrators/SlowSequence"));
                    async move {
                        let r = http.post(url).json(&json!(STEP_MS)).send().await.unwrap();
                        let code = r.status().as_u16();
                        let body: Value = r.json().await.unwrap();
                        assert_eq!(code, 202, "{body}");
                        body["id"]
                            .as_str()
                            .expect("the 202 names the id")
                            .to_string()
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<String>>()
                .await
        }
    });

    // 2. Once some have completed, kill -9 C, which owns partitions.
    let b = servers.get(OBSERVER).base.clone();
    let deadline = Instant::now() + BEFORE_KILL_WITHIN;
    loop {
        let done = completed(&http, &b).await;
        if done >= BEFORE_KILL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {done} completed after {BEFORE_KILL_WITHIN:?}; logs in {}; {}",
            dir.display(),
            probe.report()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // C must own partitions when it dies (after a slow spell of the emulator, leases lapse
    // and move; the managers rebalance within a few lease periods).
    let deadline = Instant::now() + Duration::from_secs(120);
    let owners = loop {
        let owners = partition_owners(&store).await;
        if owners.values().any(|o| o.as_deref() == Some(VICTIM)) {
            break owners;
        }
        assert!(
            Instant::now() < deadline,
            "{VICTIM} owns no partition: {owners:?}; {}",
            probe.report()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    servers.kill(VICTIM);
    let killed_at = Instant::now();
    eprintln!(
        "killed {VICTIM} at {:?} with {} completed (partitions {owners:?})",
        began.elapsed(),
        completed(&http, &b).await
    );

    // Every start was accepted; B lists them all, page by page.
    let ids = starts.await.unwrap();
    let started: HashSet<&String> = ids.iter().collect();
    assert_eq!(started.len(), INSTANCES, "instance ids are unique");
    eprintln!("{INSTANCES} started by {:?}", began.elapsed());
    let (listed, pages) = list(&http, &b, "top=100").await;
    let listed_ids: HashSet<&str> = listed
        .iter()
        .map(|s| s["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), INSTANCES, "each instance listed once");
    assert!(
        started.iter().all(|id| listed_ids.contains(id.as_str())),
        "an instance started through A is not listed through B"
    );
    assert!(pages >= INSTANCES / 100, "{pages} pages of at most 100");

    // 3. Every instance completes, with the expected output, read through B's status route.
    let mut last = (0, Instant::now());
    loop {
        let done = completed(&http, &b).await;
        if done == INSTANCES {
            break;
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        if Instant::now() > killed_at + AFTER_KILL {
            let (all, _) = list(&http, &b, "top=1000&showInput=false").await;
            let waiting: Vec<String> = all
                .iter()
                .filter(|s| s["runtimeStatus"] != "Completed")
                .map(|s| format!("{} {}", s["instanceId"], s["runtimeStatus"]))
                .collect();
            panic!(
                "{done}/{INSTANCES} completed {AFTER_KILL:?} after the kill (no progress for \
                 {:?}); logs in {}; {}; not completed: {waiting:?}",
                last.1.elapsed(),
                dir.display(),
                probe.report()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "all completed {:?} after the kill, {:?} in all",
        killed_at.elapsed(),
        began.elapsed()
    );
    futures::stream::iter(ids.iter())
        .for_each_concurrent(8, |id| {
            let (http, url) = (http.clone(), format!("{b}/instances/{id}"));
            async move {
                let r = http.get(url).send().await.unwrap();
                let code = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                assert_eq!(code, 200, "{id}: {body}");
                assert_eq!(body["runtimeStatus"], "Completed", "{id}: {body}");
                assert_eq!(
                    body["output"],
                    json!([STEP_MS, STEP_MS, STEP_MS]),
                    "{id}: {body}"
                );
            }
        })
        .await;

    // The killed server's partitions moved to the survivors.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners = partition_owners(&store).await;
        if owners
            .values()
            .all(|o| o.as_deref().is_some_and(|o| o != VICTIM))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{VICTIM}'s partitions were not taken over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 4. No activity ran twice concurrently for one task. The survivors stop first, so that
    // every run has ended when the logs are read.
    servers.stop_all();
    let mut runs: HashMap<(String, i64), Vec<Run>> = HashMap::new();
    for s in &servers.0 {
        let text = std::fs::read_to_string(&s.log).unwrap();
        let mine = activity_runs(&text, &s.name, s.stopped_at.unwrap());
        eprintln!("{}: {} activity runs", s.name, mine.len());
        for (key, run) in mine {
            runs.entry(key).or_default().push(run);
        }
    }
    let killed_runs = runs
        .values()
        .flatten()
        .filter(|r| r.server == VICTIM)
        .count();
    assert!(killed_runs > 0, "{VICTIM} ran no activity before the kill");
    let mut repeated = 0;
    for id in &ids {
        for task in 0..3 {
            let spans = runs.get_mut(&(id.clone(), task)).unwrap_or_else(|| {
                panic!(
                    "no run of task {task} of {id} in the logs in {}",
                    dir.display()
                )
            });
            assert!(
                spans.iter().any(|r| r.finished),
                "task {task} of {id} never finished: {spans:?}"
            );
            spans.sort_by_key(|r| r.start);
            repeated += spans.len() - 1;
            for w in spans.windows(2) {
                assert!(
                    w[0].end <= w[1].start,
                    "task {task} of {id} ran twice at once: {spans:?}; logs in {}",
                    dir.display()
                );
            }
        }
    }
    eprintln!(
        "{repeated} task run(s) repeated, never concurrently; {}; test took {:?}",
        probe.report(),
        began.elapsed()
    );
    // Passed: leave no queues behind in the emulator (every message it holds slows it down).
    // The logs stay.
    store.delete_hub().await.unwrap();
}

/// When a slow request was sent, and how long it took.
type SlowRequests = Arc<Mutex<Vec<(DateTime<Utc>, Duration)>>>;

/// Times a trivial Azurite request every half second, to tell a stalled emulator (it serves
/// every process) from a stalled server in a failure message.
struct AzuriteProbe {
    slow: SlowRequests,
    task: tokio::task::JoinHandle<()>,
}

impl AzuriteProbe {
    const SLOW: Duration = Duration::from_secs(3);

    fn start() -> Self {
        let slow: SlowRequests = Arc::default();
        let task = tokio::spawn({
            let slow = slow.clone();
            async move {
                let http = reqwest::Client::new();
                loop {
                    let (at, t) = (Utc::now(), Instant::now());
                    // Unauthenticated: a quick 403 from a live emulator.
                    let _ = http
                        .get("http://127.0.0.1:10001/devstoreaccount1?comp=list")
                        .send()
                        .await;
                    if t.elapsed() >= Self::SLOW {
                        slow.lock().unwrap().push((at, t.elapsed()));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Self { slow, task }
    }

    fn report(&self) -> String {
        let slow = self.slow.lock().unwrap();
        if slow.is_empty() {
            return format!("Azurite always answered within {:?}", Self::SLOW);
        }
        let list: Vec<String> = slow
            .iter()
            .map(|(at, d)| {
                format!(
                    "{} took {:.1} s",
                    at.format("%H:%M:%S%.3fZ"),
                    d.as_secs_f64()
                )
            })
            .collect();
        format!("Azurite answered slowly: {}", list.join(", "))
    }
}

impl Drop for AzuriteProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One run of an activity, from a server's debug events.
#[derive(Debug)]
struct Run {
    server: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Whether its "activity finished" event was logged (else it ended with its server).
    finished: bool,
}

/// The activity runs in one server's log, keyed by (instance, task id). The tracing fmt lines
/// look like `2025-01-02T03:04:05.123456Z DEBUG taskhub::engine::executor: activity started
/// instance=… activity=Sleep task=0 attempt=1`; a run never finished ends at `stopped`.
fn activity_runs(text: &str, server: &str, stopped: DateTime<Utc>) -> Vec<((String, i64), Run)> {
    let mut open: HashMap<(String, i64), VecDeque<DateTime<Utc>>> = HashMap::new();
    let mut runs = Vec::new();
    for line in text.lines() {
        let started = line.contains(" activity started ");
        if !started && !line.contains(" activity finished ") {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        let at = DateTime::parse_from_rfc3339(line.split_whitespace().next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {line}"))
            .with_timezone(&Utc);
        let key = (
            field("instance").to_string(),
            field("task").parse().unwrap(),
        );
        if started {
            open.entry(key).or_default().push_back(at);
        } else {
            let start = open
                .get_mut(&key)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| panic!("finished before it started: {line}"));
            let run = Run {
                server: server.to_string(),
                start,
                end: at,
                finished: true,
            };
            runs.push((key, run));
        }
    }
    for (key, starts) in open {
        for start in starts {
            let run = Run {
                server: server.to_string(),
                start,
                end: stopped,
                finished: false,
            };
            runs.push((key.clone(), run));
        }
    }
    runs
}

/// Every status of `GET {base}/instances?{query}`, following `x-ms-continuation-token` until
/// it is empty or absent; and the number of pages.
async fn list(http: &reqwest::Client, base: &str, query: &str) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = http.get(format!("{base}/instances?{query}"));
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET instances?{query}");
        token = r
            .headers()
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_string())
            .filter(|t| !t.is_empty());
        let page: Vec<Value> = r.json().await.unwrap();
        all.extend(page);
        pages += 1;
        if token.is_none() {
            return (all, pages);
        }
    }
}

async fn completed(http: &reqwest::Client, base: &str) -> usize {
    list(
        http,
        base,
        "runtimeStatus=Completed&top=1000&showInput=false",
    )
    .await
    .0
    .len()
}

/// Each partition's `CurrentOwner` (None when free), by partition number.
async fn partition_owners(store: &AzureStore) -> BTreeMap<u32, Option<String>> {
    let rows = store
        .hub_resources()
        .partitions
        .query(None, None)
        .await
        .unwrap_or_default();
    rows.iter()
        .filter_map(|r| {
            // RowKey: "{hub}-control-NN".
            let key = r.get("RowKey").and_then(Value::as_str)?;
            let n = key.rsplit('-').next()?.parse().ok()?;
            let owner = r.get("CurrentOwner").and_then(Value::as_str);
            Some((n, owner.map(str::to_string)))
        })
        .collect()
}
