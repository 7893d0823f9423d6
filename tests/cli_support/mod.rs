//! Runs the real `taskhub` binary against a fresh SQLite file in a temp directory, or
//! (`Cli::on(Backend::Azure)`) against Azurite in a fresh task hub.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[cfg(feature = "azure")]
#[path = "../azure/mod.rs"]
pub mod azure;

/// Where the binary under test keeps its task hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// Azurite (`UseDevelopmentStorage=true`), a fresh task hub per `Cli` so tests running in
    /// parallel on the one emulator never see each other's instances.
    #[cfg(feature = "azure")]
    Azure,
}

/// Runs each `fn NAME(backend: Backend)` of the test file on both backends, as the tests
/// `sqlite::NAME` and `azure::NAME`: the commands must behave the same on either store.
// Not every test file that includes this module runs tests on both backends.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::cli_support::Backend::Sqlite)
                }
            )*
        }
        #[cfg(feature = "azure")]
        mod azure {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::cli_support::Backend::Azure)
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;

pub struct Cli {
    pub dir: tempfile::TempDir,
    /// The SQLite file (unused on Azure).
    pub db: PathBuf,
    pub backend: Backend,
    /// The default task hub of every run.
    pub hub: String,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// A temp directory (the working directory of every run, so no `config/taskhub.toml` of the
    /// repository is read) with `AzureWebJobsStorage=sqlite:<dir>/taskhub.db`.
    pub fn new() -> Self {
        Self::on(Backend::Sqlite)
    }

    /// On Azure: `AzureWebJobsStorage=UseDevelopmentStorage=true` and `TASKHUB_TASK_HUB` set to
    /// a fresh hub (the environment, so `--task-hub-name` stays free for tests that name
    /// another hub). Fails at once when Azurite is not running.
    pub fn on(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("taskhub.db");
        let mut cli = Self {
            env: vec![(
                "AzureWebJobsStorage".to_string(),
                format!("sqlite:{}", db.display()),
            )],
            dir,
            db,
            backend,
            hub: "DurableFunctionsHub".to_string(),
        };
        #[cfg(feature = "azure")]
        if backend == Backend::Azure {
            azure::require_azurite();
            cli.hub = azure::fresh_hub();
            let hub = cli.hub.clone();
            cli.env("AzureWebJobsStorage", azure::CONN)
                .env("TASKHUB_TASK_HUB", &hub);
        }
        cli
    }

    /// Another task hub name on the same storage that no other test uses.
    pub fn other_hub(&self) -> String {
        match self.backend {
            Backend::Sqlite => "Other".to_string(),
            #[cfg(feature = "azure")]
            Backend::Azure => azure::fresh_hub(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sets an environment variable for every later run.
    pub fn env(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_taskhub"));
        cmd.args(args);
        finish(cmd.output().expect("the taskhub binary runs"))
    }

    /// Runs with stdin, stdout and stderr on a pseudo-terminal (through util-linux `script`),
    /// typing `input`. Both outputs arrive in `stdout`. `None` when `script` is not installed.
    pub fn run_in_terminal(&self, args: &str, input: &str) -> Option<Run> {
        let line = format!("{} {args}", env!("CARGO_BIN_EXE_taskhub"));
        let mut cmd = self.command("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().ok()?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Some(finish(child.wait_with_output().unwrap()))
    }

    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path());
        // The caller's environment must not choose the hub or storage for the test.
        for (name, _) in std::env::vars() {
            if name.starts_with("TASKHUB_") || name == "AzureWebJobsStorage" || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        for (n, v) in &self.env {
            cmd.env(n, v);
        }
        cmd
    }

    /// Runs, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "taskhub {args:?} failed\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// Runs with `--output json`, asserts exit 0, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Runs, asserts the exit code and a single `error:` line on stderr and nothing on stdout;
    /// returns that line.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "taskhub {args:?}: wrong exit code\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        assert!(r.stdout.is_empty(), "stdout not empty: {}", r.stdout);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {}", r.stderr);
        assert!(lines[0].starts_with("error: "), "{}", r.stderr);
        lines[0].to_string()
    }

    /// Starts an instance and returns its id.
    pub fn start(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["start-new", "--function-name", name];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        v["instanceId"].as_str().unwrap().to_string()
    }

    pub fn status(&self, id: &str) -> Value {
        self.json(&[
            "get-runtime-status",
            "--id",
            id,
            "--show-input",
            "--show-output",
        ])
    }

    /// The status of an instance in another task hub.
    pub fn status_in(&self, hub: &str, id: &str) -> Value {
        self.json(&["get-runtime-status", "--id", id, "--task-hub-name", hub])
    }

    /// Polls get-runtime-status until `check` holds, failing after `secs`.
    pub fn until(&self, id: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status(id);
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached for {id} in {secs}s: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the instance has the given runtime status.
    pub fn until_status(&self, id: &str, secs: u64, status: &str) -> Value {
        self.until(id, secs, |s| s["runtimeStatus"] == status)
    }
}

fn finish(output: Output) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    Run {
        code: status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

pub fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}
