//! The command line while `taskhub serve` (the real binary, another process) has the same
//! SQLite file or Azurite task hub open: instances started from the CLI are run by the server and visible over HTTP
//! at once, and the CLI manages instances started over HTTP.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::{backend_tests, write, Backend, Cli};
use serde_json::{json, Value};

const API: &str = "runtime/webhooks/durabletask";

/// `taskhub serve --listen 127.0.0.1:0` on the test's database; the port is read from its log.
struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
    tokio: tokio::runtime::Runtime,
}

impl Server {
    fn start(cli: &Cli) -> Self {
        let mut cmd = cli.command(env!("CARGO_BIN_EXE_taskhub"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--grpc-listen", "off"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = log
                .next()
                .expect("the server logs its address before anything else ends its log")
                .unwrap();
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining the log so that the server never blocks on a full pipe.
        std::thread::spawn(move || log.for_each(drop));
        Self {
            child,
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            tokio: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// GET a management path; (status code, JSON body or null).
    fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}/{path}", self.base);
        self.tokio.block_on(async {
            let r = self.http.get(url).send().await.unwrap();
            let code = r.status().as_u16();
            let text = r.text().await.unwrap();
            (code, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}/{path}", self.base);
        self.tokio.block_on(async {
            let r = self.http.post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        })
    }

    fn status(&self, id: &str) -> (u16, Value) {
        self.get(&format!("{API}/instances/{id}"))
    }

    /// Polls the HTTP status until `check` holds, failing after `secs`.
    fn until(&self, id: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, body) = self.status(id);
            if check(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{id} over HTTP: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM for a graceful stop; SIGKILL if it has not exited within a few seconds.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const GREETINGS: [&str; 3] = ["Hello Tokyo!", "Hello Seattle!", "Hello London!"];

// Each runs on SQLite and on Azurite: `taskhub serve` and the CLI share either store.
backend_tests!(
    an_instance_started_from_the_cli_is_visible_over_http_at_once_and_runs,
    the_cli_manages_instances_started_over_http,
    rewind_from_the_cli_revives_a_failed_instance_the_server_runs,
    a_start_queued_before_the_server_starts_runs_when_it_does,
);

fn an_instance_started_from_the_cli_is_visible_over_http_at_once_and_runs(backend: Backend) {
    let cli = Cli::on(backend);
    let server = Server::start(&cli);
    let id = cli.start("HelloSequence", &["--input", "{\"from\":\"cli\"}"]);
    let (code, body) = server.status(&id);
    assert!(code == 200 || code == 202, "{code}: {body}");
    assert_eq!(body["instanceId"], id.as_str());
    assert_eq!(body["input"], json!({"from": "cli"}));

    let done = server.until(&id, 20, |b| b["runtimeStatus"] == "Completed");
    assert_eq!(done["output"], json!(GREETINGS));
    // And the CLI reads what the server wrote.
    assert_eq!(cli.status(&id)["output"], json!(GREETINGS));
}

fn the_cli_manages_instances_started_over_http(backend: Backend) {
    let cli = Cli::on(backend);
    let server = Server::start(&cli);

    let (code, body) = server.post("api/orchestrators/WaitForApproval/approval-http", json!(60));
    assert_eq!(code, 202, "{body}");
    let s = cli.until("approval-http", 20, |s| s["customStatus"] == "waiting");
    assert_eq!(s["runtimeStatus"], "Running");
    let listed = cli.json(&["get-instances", "--runtime-status", "running"]);
    assert_eq!(listed["instances"][0]["instanceId"], "approval-http");

    let data = write(&cli.path("approval.json"), r#"{"approved": true}"#);
    cli.ok(&[
        "raise-event",
        "--id",
        "approval-http",
        "--event-name",
        "Approval",
        "--event-data",
        &format!("@{data}"),
    ]);
    let done = server.until("approval-http", 20, |b| b["runtimeStatus"] == "Completed");
    assert_eq!(done["output"], json!({"approved": true}));

    let (_, body) = server.post("api/orchestrators/WaitForApproval/stop-me", json!(60));
    assert_eq!(body["id"], "stop-me");
    cli.until("stop-me", 20, |s| s["customStatus"] == "waiting");
    cli.ok(&["terminate", "--id", "stop-me", "--reason", "from the cli"]);
    let t = server.until("stop-me", 20, |b| b["runtimeStatus"] == "Terminated");
    assert_eq!(t["output"], "from the cli");

    // Purged from the CLI: gone over HTTP too.
    let v = cli.json(&["purge-history", "--runtime-status", "terminated"]);
    assert_eq!(v, json!({"instancesDeleted": 1}));
    assert_eq!(server.status("stop-me").0, 404);
}

fn rewind_from_the_cli_revives_a_failed_instance_the_server_runs(backend: Backend) {
    let cli = Cli::on(backend);
    let server = Server::start(&cli);
    let id = cli.start("FailAtStep", &[]);
    server.until(&id, 20, |b| b["runtimeStatus"] == "Failed");
    cli.ok(&["rewind", "--id", &id, "--reason", "try again"]);
    let done = server.until(&id, 20, |b| b["runtimeStatus"] == "Completed");
    assert_eq!(done["output"], "ok");
}

fn a_start_queued_before_the_server_starts_runs_when_it_does(backend: Backend) {
    let cli = Cli::on(backend);
    let id = cli.start("HelloSequence", &[]);
    assert_eq!(cli.status(&id)["runtimeStatus"], "Pending");
    let server = Server::start(&cli);
    let done = server.until(&id, 20, |b| b["runtimeStatus"] == "Completed");
    assert_eq!(done["output"], json!(GREETINGS));
}
