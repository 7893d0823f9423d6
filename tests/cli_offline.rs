//! Every durable command against a SQLite file (and, for those in `backend_tests!`, an Azurite
//! task hub) with no server running: starts are queued (instances stay Pending), everything else
//! acts on what is stored.

mod cli_support;

use cli_support::{backend_tests, write, Backend, Cli};
use serde_json::{json, Value};

// Each runs on SQLite and on Azurite: the commands must not depend on the store.
backend_tests!(
    start_new_queues_an_instance_with_its_input,
    unknown_instances_are_exit_3,
    get_history_of_a_queued_instance,
    get_instances_pages_with_the_continuation_token,
    a_script_written_for_core_tools_pages_through_every_instance,
    get_instances_filters,
    terminate_raise_event_and_rewind_are_sent_or_refused_by_state,
    purge_history_says_how_many_it_removed,
    delete_task_hub_removes_only_that_hub_and_counts_its_instances,
    delete_task_hub_asks_first_on_a_terminal,
);

// ---- start-new ----

fn start_new_queues_an_instance_with_its_input(backend: Backend) {
    let cli = Cli::on(backend);
    let out = cli.ok(&[
        "start-new",
        "--function-name",
        "HelloSequence",
        "--input",
        r#"{"city":"Tokyo"}"#,
    ]);
    // Started 'HelloSequence'. Instance ID: '<32 hex digits>'.
    let id = out
        .trim()
        .strip_prefix("Started 'HelloSequence'. Instance ID: '")
        .and_then(|s| s.strip_suffix("'."))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    let s = cli.status(id);
    assert_eq!(s["name"], "HelloSequence");
    assert_eq!(s["instanceId"], id);
    assert_eq!(s["runtimeStatus"], "Pending");
    assert_eq!(s["input"], json!({"city": "Tokyo"}));
    assert_eq!(s["output"], Value::Null);
}

#[test]
fn start_new_with_id_input_file_and_the_durable_prefix() {
    let cli = Cli::new();
    let file = write(&cli.path("counter-data.json"), "{\"start\": 3}\n");
    let out = cli.ok(&[
        "durable",
        "start-new",
        "--function-name",
        "Counter",
        "--id",
        "my id 1",
        "--input",
        &format!("@{file}"),
    ]);
    assert_eq!(out.trim(), "Started 'Counter'. Instance ID: 'my id 1'.");
    assert_eq!(cli.status("my id 1")["input"], json!({"start": 3}));

    let v = cli.json(&[
        "start-new",
        "--function-name",
        "E1_HelloSequence",
        "--id",
        "x2",
    ]);
    assert_eq!(v, json!({"name": "E1_HelloSequence", "instanceId": "x2"}));
}

#[test]
fn start_new_errors() {
    let cli = Cli::new();
    let e = cli.fails(&["start-new", "--function-name", "NoSuchOrchestrator"], 2);
    assert!(e.contains("'NoSuchOrchestrator'"), "{e}");

    let e = cli.fails(
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--input",
            "{oops",
        ],
        2,
    );
    assert!(e.contains("--input is not valid JSON"), "{e}");

    let e = cli.fails(
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--input",
            "@missing.json",
        ],
        2,
    );
    assert!(
        e.contains("cannot read the --input file 'missing.json'"),
        "{e}"
    );

    let bad = write(&cli.path("bad.json"), "{\"a\":");
    let e = cli.fails(
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--input",
            &format!("@{bad}"),
        ],
        2,
    );
    assert!(e.contains("does not contain valid JSON"), "{e}");

    // A second start with the id of a Pending instance is refused.
    cli.start("HelloSequence", &["--id", "dup"]);
    let e = cli.fails(
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--id",
            "dup",
        ],
        4,
    );
    assert!(e.contains("'dup'") && e.contains("Pending"), "{e}");
    // Nothing was started by the failed commands.
    assert_eq!(
        cli.json(&["get-instances"])["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ---- get-runtime-status / get-history ----

#[test]
fn get_runtime_status_shows_input_and_output_only_when_asked() {
    let cli = Cli::new();
    let id = cli.start("HelloSequence", &["--input", "\"x\""]);
    let plain = cli.json(&["get-runtime-status", "--id", &id]);
    let keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "instanceId",
            "runtimeStatus",
            "customStatus",
            "createdTime",
            "lastUpdatedTime"
        ]
    );
    let both = cli.json(&[
        "get-runtime-status",
        "--id",
        &id,
        "--show-input",
        "true",
        "--show-output",
        "true",
    ]);
    assert_eq!(both["input"], "x");
    assert!(both.as_object().unwrap().contains_key("output"));
    let only_input = cli.json(&["get-runtime-status", "--id", &id, "--show-input"]);
    assert!(!only_input.as_object().unwrap().contains_key("output"));

    // Text is the same object, pretty-printed.
    let text = cli.ok(&["get-runtime-status", "--id", &id]);
    assert!(
        text.contains("\n  \"runtimeStatus\": \"Pending\""),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), plain);
}

fn unknown_instances_are_exit_3(backend: Backend) {
    let cli = Cli::on(backend);
    for cmd in [
        "get-runtime-status",
        "get-history",
        "terminate",
        "rewind",
        "raise-event",
    ] {
        let e = cli.fails(&[cmd, "--id", "nobody"], 3);
        assert!(e.contains("'nobody'"), "{cmd}: {e}");
    }
}

fn get_history_of_a_queued_instance(backend: Backend) {
    let cli = Cli::on(backend);
    let id = cli.start("HelloSequence", &[]);
    // Nothing has run yet: the start is still a queued message.
    let text = cli.ok(&["get-history", "--id", &id]);
    assert_eq!(text.trim(), "No history.");
    assert_eq!(cli.json(&["get-history", "--id", &id]), json!([]));
}

// ---- get-instances ----

fn get_instances_pages_with_the_continuation_token(backend: Backend) {
    let cli = Cli::on(backend);
    for i in 0..3 {
        cli.start("HelloSequence", &["--id", &format!("page-{i}")]);
    }
    let first = cli.ok(&["get-instances", "--top", "2"]);
    let lines: Vec<&str> = first.lines().collect();
    assert!(lines[0].starts_with("INSTANCE ID"), "{first}");
    assert!(lines[0].contains("NAME") && lines[0].contains("LAST UPDATED"));
    assert_eq!(lines.iter().filter(|l| l.starts_with("page-")).count(), 2);
    let token = continuation_token(&first);
    assert!(!token.is_empty(), "{first}");

    let second = cli.ok(&[
        "get-instances",
        "--top",
        "2",
        "--continuation-token",
        &token,
    ]);
    assert_eq!(
        second.lines().filter(|l| l.starts_with("page-")).count(),
        1,
        "{second}"
    );
    // The last page says so the way Core Tools does: an empty token.
    assert_eq!(
        second.lines().last(),
        Some("Continuation token for next set of results: ''")
    );

    // JSON: the same pages, the token as a field.
    let p1 = cli.json(&["get-instances", "--top", "2"]);
    let token = p1["continuationToken"].as_str().unwrap();
    let p2 = cli.json(&["get-instances", "--top", "2", "--continuation-token", token]);
    let mut ids: Vec<String> = [&p1, &p2]
        .iter()
        .flat_map(|p| p["instances"].as_array().unwrap().clone())
        .map(|s| s["instanceId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["page-0", "page-1", "page-2"]);
    assert_eq!(p2["continuationToken"], Value::Null);

    // Default page size is 10.
    for i in 3..12 {
        cli.start("HelloSequence", &["--id", &format!("page-{i}")]);
    }
    let d = cli.json(&["get-instances"]);
    assert_eq!(d["instances"].as_array().unwrap().len(), 10);
    assert!(d["continuationToken"].is_string());
}

/// What a script written for Core Tools does: find the line `Continuation token for next set
/// of results: '<token>'` and take what is between the quotes.
fn continuation_token(output: &str) -> String {
    const LINE: &str = "Continuation token for next set of results: '";
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(LINE))
        .unwrap_or_else(|| panic!("no Core Tools continuation line in:\n{output}"));
    line.strip_suffix('\'')
        .unwrap_or_else(|| panic!("the token is not quoted: {line}"))
        .to_string()
}

fn a_script_written_for_core_tools_pages_through_every_instance(backend: Backend) {
    let cli = Cli::on(backend);
    let mut want: Vec<String> = (0..7).map(|i| format!("script-{i}")).collect();
    for id in &want {
        cli.start("HelloSequence", &["--id", id]);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let mut args = vec!["get-instances", "--top", "3"];
        if !token.is_empty() {
            args.extend(["--continuation-token", &token]);
        }
        let out = cli.ok(&args);
        seen.extend(
            out.lines()
                .filter(|l| l.starts_with("script-"))
                .map(|l| l.split_whitespace().next().unwrap().to_string()),
        );
        token = continuation_token(&out);
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "paging did not end");
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
}

fn get_instances_filters(backend: Backend) {
    let cli = Cli::on(backend);
    cli.start("HelloSequence", &["--id", "a"]);
    let count = |args: &[&str]| {
        let mut all = vec!["get-instances"];
        all.extend_from_slice(args);
        cli.json(&all)["instances"].as_array().unwrap().len()
    };
    assert_eq!(count(&["--runtime-status", "pending"]), 1);
    assert_eq!(count(&["--runtime-status", "running", "PENDING"]), 1);
    assert_eq!(count(&["--runtime-status", "running completed"]), 0);
    assert_eq!(count(&["--created-after", "2000-01-01T00:00:00Z"]), 1);
    assert_eq!(count(&["--created-after", "2999-01-01"]), 0);
    assert_eq!(count(&["--created-before", "2000-01-01T00:00Z"]), 0);
    assert_eq!(
        count(&[
            "--created-after",
            "2000-01-01",
            "--created-before",
            "2999-01-01T00:00:00Z"
        ]),
        1
    );
    let none = cli.ok(&["get-instances", "--runtime-status", "failed"]);
    assert_eq!(
        none.trim(),
        "No instances found.\n\nContinuation token for next set of results: ''"
    );

    let e = cli.fails(
        &[
            "get-instances",
            "--created-after",
            "2020-01-02",
            "--created-before",
            "2020-01-01",
        ],
        2,
    );
    assert!(e.contains("--created-after"), "{e}");
    let e = cli.fails(&["get-instances", "--continuation-token", "not-a-token"], 2);
    assert!(e.contains("continuation token"), "{e}");
}

// ---- terminate / raise-event / rewind ----

fn terminate_raise_event_and_rewind_are_sent_or_refused_by_state(backend: Backend) {
    let cli = Cli::on(backend);
    let id = cli.start("WaitForApproval", &[]);

    let out = cli.ok(&[
        "terminate",
        "--id",
        &id,
        "--reason",
        "It was time to be done.",
    ]);
    assert_eq!(
        out.trim(),
        format!("Sent a terminate request to instance '{id}'.")
    );
    let v = cli.json(&["terminate", "--id", &id]);
    assert_eq!(
        v,
        json!({"instanceId": id, "operation": "terminate", "sent": true})
    );

    let out = cli.ok(&[
        "raise-event",
        "--id",
        &id,
        "--event-name",
        "MyOtherEvent",
        "--event-data",
        "3",
    ]);
    assert_eq!(
        out.trim(),
        format!("Raised event 'MyOtherEvent' to instance '{id}'.")
    );
    let data = write(&cli.path("eventdata.json"), "{\"approved\": true}");
    let v = cli.json(&[
        "raise-event",
        "--id",
        &id,
        "--event-data",
        &format!("@{data}"),
    ]);
    let name = v["eventName"].as_str().unwrap();
    let guid = name
        .strip_prefix("Event_")
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(guid.len(), 32, "{name}");

    let e = cli.fails(&["raise-event", "--id", &id, "--event-data", "not json"], 2);
    assert!(e.contains("--event-data is not valid JSON"), "{e}");
    let e = cli.fails(
        &["raise-event", "--id", &id, "--event-data", "@nope.json"],
        2,
    );
    assert!(e.contains("nope.json"), "{e}");

    // Only failed instances can be rewound.
    let e = cli.fails(&["rewind", "--id", &id, "--reason", "revive"], 4);
    assert!(e.contains("only supported on failed"), "{e}");
}

// ---- purge-history / delete-task-hub ----

fn purge_history_says_how_many_it_removed(backend: Backend) {
    let cli = Cli::on(backend);
    for i in 0..3 {
        cli.start("HelloSequence", &["--id", &format!("p{i}")]);
    }
    let none = cli.ok(&["purge-history", "--runtime-status", "completed", "failed"]);
    assert_eq!(
        none.trim(),
        "Purged the history of 0 instances created at any time, with status Completed or Failed."
    );
    let v = cli.json(&["purge-history", "--created-before", "2000-01-01"]);
    assert_eq!(v, json!({"instancesDeleted": 0}));

    let out = cli.ok(&["purge-history", "--created-after", "2000-01-01T00:00:00Z"]);
    assert_eq!(
        out.trim(),
        "Purged the history of 3 instances created after 2000-01-01T00:00:00Z, in any status."
    );
    assert_eq!(cli.json(&["get-instances"])["instances"], json!([]));
    cli.fails(&["get-runtime-status", "--id", "p0"], 3);
}

fn delete_task_hub_removes_only_that_hub_and_counts_its_instances(backend: Backend) {
    let cli = Cli::on(backend);
    let other = cli.other_hub();
    cli.start(
        "HelloSequence",
        &["--id", "keep", "--task-hub-name", &other],
    );
    for i in 0..2 {
        cli.start("HelloSequence", &["--id", &format!("d{i}")]);
    }
    // stdin is not a terminal here, so there is no prompt (as in Core Tools).
    let out = cli.ok(&["delete-task-hub"]);
    assert_eq!(
        out.trim(),
        format!(
            "Task hub '{}' deleted: 2 instances with their history removed.",
            cli.hub
        )
    );
    assert_eq!(cli.json(&["get-instances"])["instances"], json!([]));
    assert_eq!(cli.status_in(&other, "keep")["runtimeStatus"], "Pending");
    let v = cli.json(&[
        "durable",
        "delete-task-hub",
        "--task-hub-name",
        &other,
        "--yes",
    ]);
    assert_eq!(v, json!({"taskHub": other, "instancesDeleted": 1}));
}

fn delete_task_hub_asks_first_on_a_terminal(backend: Backend) {
    let cli = Cli::on(backend);
    cli.start("HelloSequence", &["--id", "precious"]);
    let no = cli
        .run_in_terminal("delete-task-hub", "n\n")
        .expect("this test needs util-linux `script` (Debian package bsdutils)");
    assert!(
        no.stdout.contains(&format!(
            "Delete task hub '{}' with its 1 instance and their history? [y/N]",
            cli.hub
        )),
        "{}",
        no.stdout
    );
    assert!(no.stdout.contains("was not deleted"), "{}", no.stdout);
    assert_eq!(no.code, 1);
    assert_eq!(cli.status("precious")["runtimeStatus"], "Pending");

    let yes = cli.run_in_terminal("delete-task-hub", "y\n").unwrap();
    assert_eq!(yes.code, 0, "{}", yes.stdout);
    assert!(
        yes.stdout.contains("deleted: 1 instance with"),
        "{}",
        yes.stdout
    );
    cli.fails(&["get-runtime-status", "--id", "precious"], 3);

    // --yes skips the question even on a terminal.
    let skip = cli.run_in_terminal("delete-task-hub --yes", "").unwrap();
    assert_eq!(skip.code, 0, "{}", skip.stdout);
    assert!(!skip.stdout.contains("[y/N]"), "{}", skip.stdout);
}

// ---- where the hub and storage come from ----

#[test]
fn task_hubs_are_separate_and_the_name_comes_from_flag_config_or_env() {
    let mut cli = Cli::new();
    cli.start(
        "HelloSequence",
        &["--id", "in-a", "--task-hub-name", "HubA"],
    );
    cli.fails(&["get-runtime-status", "--id", "in-a"], 3);
    assert_eq!(cli.status_in("HubA", "in-a")["instanceId"], "in-a");

    // config/taskhub.toml in the working directory names the default hub...
    std::fs::create_dir(cli.path("config")).unwrap();
    write(&cli.path("config/taskhub.toml"), "task_hub = \"HubA\"\n");
    assert_eq!(
        cli.json(&["get-runtime-status", "--id", "in-a"])["instanceId"],
        "in-a"
    );
    // ...and so does --config FILE, and the environment, which wins over the file.
    let other = write(&cli.path("other.toml"), "task_hub = \"HubB\"\n");
    cli.fails(
        &["get-runtime-status", "--id", "in-a", "--config", &other],
        3,
    );
    cli.env("TASKHUB_TASK_HUB", "HubB");
    cli.fails(&["get-runtime-status", "--id", "in-a"], 3);
    // The flag wins over everything.
    assert_eq!(cli.status_in("HubA", "in-a")["instanceId"], "in-a");

    let e = cli.fails(&["get-instances", "--config", "missing.toml"], 1);
    assert!(e.contains("missing.toml"), "{e}");
}

#[test]
fn connection_string_settings() {
    let mut cli = Cli::new();
    let other_db = cli.path("other.db");
    cli.env("MyStorage", &format!("sqlite:{}", other_db.display()));
    cli.start(
        "HelloSequence",
        &[
            "--id",
            "elsewhere",
            "--connection-string-setting",
            "MyStorage",
        ],
    );
    assert!(other_db.exists());
    cli.fails(&["get-runtime-status", "--id", "elsewhere"], 3);
    let s = cli.json(&[
        "get-runtime-status",
        "--id",
        "elsewhere",
        "--connection-string-setting",
        "MyStorage",
    ]);
    assert_eq!(s["runtimeStatus"], "Pending");

    let e = cli.fails(
        &[
            "get-instances",
            "--connection-string-setting",
            "NoSuchSetting",
        ],
        2,
    );
    assert!(
        e.contains("'NoSuchSetting'") && e.contains("not defined"),
        "{e}"
    );

    cli.env("Garbage", "this is not a connection string");
    let e = cli.fails(
        &["get-instances", "--connection-string-setting", "Garbage"],
        2,
    );
    assert!(e.contains("'Garbage'"), "{e}");
}

#[test]
fn unreachable_storage_is_exit_1() {
    let mut cli = Cli::new();
    // A directory cannot be made under a regular file, so the database cannot be opened.
    let file = write(&cli.path("plain-file"), "");
    cli.env(
        "AzureWebJobsStorage",
        &format!("sqlite:{file}/sub/taskhub.db"),
    );
    let e = cli.fails(&["get-instances"], 1);
    assert!(e.contains("storage"), "{e}");
    let e = cli.fails(&["start-new", "--function-name", "HelloSequence"], 1);
    assert!(e.contains("storage"), "{e}");
}

#[test]
fn the_default_storage_is_the_embedded_file_in_the_working_directory() {
    let mut cli = Cli::new();
    cli.env("AzureWebJobsStorage", "");
    cli.start("HelloSequence", &["--id", "local"]);
    assert!(cli.path("taskhub-data/taskhub.db").exists());
}
