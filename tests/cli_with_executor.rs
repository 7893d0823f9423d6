//! The command line while an executor runs on the same SQLite file or Azurite task hub in another
//! process (this test process): what the CLI writes is picked up and run, and what the executor writes is what
//! the CLI shows.

mod cli_support;
mod common;

use cli_support::{backend_tests, write, Backend, Cli};
use serde_json::{json, Value};

/// An executor with the samples registered over `db`, on its own tokio runtime, so that the test
/// body can stay synchronous and run the binary.
struct Executor {
    tokio: tokio::runtime::Runtime,
    runtime: Option<taskhub::runtime::Runtime>,
}

impl Executor {
    /// On the CLI's storage and default hub.
    fn start(cli: &Cli) -> Self {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (runtime, _client) = {
            let _in_runtime = tokio.enter();
            match cli.backend {
                Backend::Sqlite => common::test_hub_at(&cli.db),
                #[cfg(feature = "azure")]
                // Short leases: a stopped executor's partitions are not released (its tokio
                // runtime goes with it), so the next one takes them over when they expire.
                Backend::Azure => cli_support::azure::runtime(
                    &cli.hub,
                    taskhub::samples::registry(),
                    true,
                    &[("TASKHUB_AZURE_LEASE_SECONDS", "3")],
                ),
            }
        };
        Self {
            tokio,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            self.tokio.block_on(r.shutdown());
        }
    }
}

const GREETINGS: [&str; 3] = ["Hello Tokyo!", "Hello Seattle!", "Hello London!"];

// Each runs on SQLite and on Azurite: the commands must not depend on the store.
backend_tests!(
    a_start_from_the_cli_is_run_and_its_status_and_history_are_shown,
    a_start_queued_with_no_server_runs_when_one_starts,
    raise_event_delivers_data_and_terminate_stops_a_waiting_instance,
    rewind_revives_a_failed_instance,
    purge_history_by_status_leaves_running_instances,
);

fn a_start_from_the_cli_is_run_and_its_status_and_history_are_shown(backend: Backend) {
    let cli = Cli::on(backend);
    let _executor = Executor::start(&cli);
    let id = cli.start("E1_HelloSequence", &[]);
    let s = cli.until_status(&id, 20, "Completed");
    assert_eq!(s["output"], json!(GREETINGS));
    assert_eq!(s["name"], "E1_HelloSequence");

    // JSON: every stored event, DTFx names, the episode markers included.
    let events = cli.json(&["get-history", "--id", &id]);
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["EventType"].as_str().unwrap())
        .filter(|t| !t.starts_with("Orchestrator"))
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskScheduled",
            "TaskCompleted",
            "TaskScheduled",
            "TaskCompleted",
            "TaskScheduled",
            "TaskCompleted",
            "ExecutionCompleted"
        ],
        "{events}"
    );
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["EventType"] == "OrchestratorStarted"));

    // Text: one line per event without the markers, with the facts that matter.
    let history = cli.ok(&["get-history", "--id", &id]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), types.len(), "{history}");
    assert!(lines[0].contains("ExecutionStarted") && lines[0].ends_with("E1_HelloSequence"));
    assert!(
        lines[1].contains("  #0  TaskScheduled") && lines[1].ends_with("SayHello input=\"Tokyo\"")
    );
    assert!(
        lines[6].ends_with("task #2 result=\"Hello London!\""),
        "{history}"
    );
    assert!(
        lines[7].contains("ExecutionCompleted")
            && lines[7].contains("Completed result=[\"Hello Tokyo!\"")
    );

    let table = cli.ok(&["get-instances", "--runtime-status", "completed"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("Completed")),
        "{table}"
    );
}

fn a_start_queued_with_no_server_runs_when_one_starts(backend: Backend) {
    let cli = Cli::on(backend);
    let id = cli.start("HelloSequence", &["--input", "null"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cli.status(&id)["runtimeStatus"], "Pending");
    let _executor = Executor::start(&cli);
    assert_eq!(
        cli.until_status(&id, 20, "Completed")["output"],
        json!(GREETINGS)
    );
}

fn raise_event_delivers_data_and_terminate_stops_a_waiting_instance(backend: Backend) {
    let cli = Cli::on(backend);
    let _executor = Executor::start(&cli);

    let approve = cli.start("WaitForApproval", &["--id", "approve-me"]);
    let s = cli.until(&approve, 20, |s| s["customStatus"] == "waiting");
    assert_eq!(s["runtimeStatus"], "Running");
    let data = write(
        &cli.path("eventdata.json"),
        r#"{"approved": true, "by": "ana"}"#,
    );
    cli.ok(&[
        "raise-event",
        "--id",
        &approve,
        "--event-name",
        "Approval",
        "--event-data",
        &format!("@{data}"),
    ]);
    let s = cli.until_status(&approve, 20, "Completed");
    assert_eq!(s["output"], json!({"approved": true, "by": "ana"}));
    assert_eq!(s["customStatus"], "approved");

    let stop = cli.start("WaitForApproval", &[]);
    cli.until(&stop, 20, |s| s["customStatus"] == "waiting");
    cli.ok(&[
        "terminate",
        "--id",
        &stop,
        "--reason",
        "It was time to be done.",
    ]);
    let s = cli.until_status(&stop, 20, "Terminated");
    assert_eq!(s["output"], "It was time to be done.");

    // Finished instances accept neither.
    let e = cli.fails(&["terminate", "--id", &stop], 4);
    assert!(e.contains("Terminated"), "{e}");
    let e = cli.fails(
        &["raise-event", "--id", &approve, "--event-name", "Approval"],
        4,
    );
    assert!(e.contains("Completed"), "{e}");
}

fn rewind_revives_a_failed_instance(backend: Backend) {
    let cli = Cli::on(backend);
    let executor = Executor::start(&cli);
    let id = cli.start("FailAtStep", &[]);
    let failed = cli.until_status(&id, 20, "Failed");
    assert!(failed["output"].is_string(), "{failed}");
    // Stopped, so that nothing but the rewind itself can change the status read after it.
    drop(executor);

    let out = cli.ok(&[
        "rewind",
        "--id",
        &id,
        "--reason",
        "Orchestrator failed and needs to be revived.",
    ]);
    assert_eq!(
        out.trim(),
        format!("Sent a rewind request to instance '{id}'.")
    );
    // A script that polls after the rewind must not read the Failed of before and stop.
    assert_eq!(cli.status(&id)["runtimeStatus"], "Pending");

    let _executor = Executor::start(&cli);
    let s = cli.until_status(&id, 20, "Completed");
    assert_eq!(s["output"], "ok");

    let e = cli.fails(&["rewind", "--id", &id], 4);
    assert!(e.contains("Completed"), "{e}");
}

fn purge_history_by_status_leaves_running_instances(backend: Backend) {
    let cli = Cli::on(backend);
    let _executor = Executor::start(&cli);
    let done: Vec<String> = (0..3).map(|_| cli.start("HelloSequence", &[])).collect();
    let waiting = cli.start("WaitForApproval", &[]);
    for id in &done {
        cli.until_status(id, 20, "Completed");
    }
    cli.until_status(&waiting, 20, "Running");

    let v = cli.json(&["purge-history", "--runtime-status", "completed"]);
    assert_eq!(v, json!({"instancesDeleted": 3}));
    let left: Vec<Value> = cli.json(&["get-instances"])["instances"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["instanceId"], waiting.as_str());
    cli.fails(&["get-history", "--id", &done[0]], 3);
}
