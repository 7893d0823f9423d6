//! `examples/embed.rs`, the application that embeds taskhub, as a user runs it: its binary
//! serves its own orchestrators next to the built-in samples, and its command line knows their
//! names while the plain `taskhub` binary does not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The example's executable, built for this test run. `cargo test --all-targets` has built it
/// already, so this only confirms it is fresh; `cargo test --test embed_example` builds it here.
fn example_binary() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--example", "embed", "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    // What cargo set for this test process describes this package, not the build: build scripts
    // that watch such variables (ring's watches CARGO_PKG_NAME) would otherwise see them change
    // and rebuild half the dependency tree.
    for (name, _) in std::env::vars() {
        let set_by_cargo = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name.as_str(),
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_by_cargo {
            cargo.env_remove(name);
        }
    }
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    if !cfg!(feature = "azure") {
        cargo.arg("--no-default-features");
    }
    let out = cargo.output().expect("cargo runs");
    assert!(out.status.success(), "cargo build --example embed failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "embed")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the example's executable")
}

/// Runs `program args` in `dir` with the task hub in `dir/taskhub.db`, nothing else from the
/// caller's environment choosing storage or hub.
fn command(program: &Path, dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("TASKHUB_") || name == "AzureWebJobsStorage" || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    let db = dir.join("taskhub.db");
    cmd.env("AzureWebJobsStorage", format!("sqlite:{}", db.display()));
    cmd
}

#[tokio::test]
async fn the_embedding_binary_serves_its_own_orchestrators_and_the_samples() {
    let embed = example_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut server = command(
        &embed,
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
    )
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = log
                .next_line()
                .await
                .unwrap()
                .expect("the server logs its address before its log ends");
            if let Some(rest) = line.split("address=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
        }
    })
    .await
    .expect("the server starts within 20 s");
    // Keep draining the log so that the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    let http = reqwest::Client::new();
    let post = |path: String| http.post(format!("http://{address}{path}")).send();

    let r = post("/api/orchestrators/GreetAll/wait?timeout=5".into())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!(["Hi Ada", "Hi Grace"])
    );

    let r = post("/api/orchestrators/HelloSequence/wait?timeout=5".into())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    // The example's command line knows GreetAll; what it starts, its server runs.
    let out = command(
        &embed,
        dir.path(),
        &[
            "start-new",
            "--function-name",
            "GreetAll",
            "--id",
            "from-cli",
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = loop {
        let r = http
            .get(format!(
                "http://{address}/runtime/webhooks/durabletask/instances/from-cli"
            ))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        if v["runtimeStatus"] == "Completed" {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["output"], json!(["Hi Ada", "Hi Grace"]));

    // The plain taskhub binary was built without it, so it refuses the name.
    let out = command(
        Path::new(env!("CARGO_BIN_EXE_taskhub")),
        dir.path(),
        &["start-new", "--function-name", "GreetAll"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("GreetAll"));

    // SIGTERM: a graceful stop.
    let pid = server.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server stops within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
