//! Shared test helpers: a runtime over a fresh SQLite file with the samples registered.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use taskhub::client::Client;
use taskhub::config::{Config, ExecutorConfig};
use taskhub::runtime::Runtime;
use taskhub::samples;
use taskhub::storage::Storage;
use taskhub::store::InstanceRecord;

pub struct TestHub {
    pub runtime: Runtime,
    pub client: Client,
    _dir: tempfile::TempDir,
}

/// A runtime with executors on a fresh SQLite file; no environment variables are read.
pub fn test_hub() -> TestHub {
    test_hub_with(samples::registry())
}

/// [`test_hub`] with the test's own orchestrations and activities.
pub fn test_hub_with(registry: taskhub::engine::Registry) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let hub = test_hub_at_with(&dir.path().join("taskhub.db"), registry);
    TestHub {
        runtime: hub.0,
        client: hub.1,
        _dir: dir,
    }
}

pub fn test_hub_at(db: &Path) -> (Runtime, Client) {
    test_hub_at_with(db, samples::registry())
}

fn test_hub_at_with(db: &Path, registry: taskhub::engine::Registry) -> (Runtime, Client) {
    let config = Config {
        sqlite_path: db.to_path_buf(),
        executor: ExecutorConfig {
            enabled: true,
            orchestration_workers: 4,
            activity_workers: 4,
        },
        ..Config::default()
    };
    let storage = Storage::with_env(&config.connection_setting, &config.sqlite_path, |_| None);
    let runtime = Runtime::with_storage(&config, registry, storage);
    let client = runtime.client(None, None).unwrap();
    (runtime, client)
}

/// Waits for a terminal status, failing the test after `secs`.
pub async fn finish(client: &Client, id: &str, secs: u64) -> InstanceRecord {
    let status = client
        .wait_for_completion(id, Duration::from_secs(secs), Duration::from_millis(50))
        .await
        .unwrap()
        .expect("the instance exists");
    assert!(
        status.runtime_status.is_terminal(),
        "{id} did not finish in {secs}s: {status:?}"
    );
    status
}

/// Polls until `check` holds for the status, failing the test after `secs`, also when the
/// instance never appears.
pub async fn until(
    client: &Client,
    id: &str,
    secs: u64,
    check: impl Fn(&InstanceRecord) -> bool,
) -> InstanceRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let status = client.try_status(id).await.unwrap();
        match status {
            Some(s) if check(&s) => return s,
            _ if tokio::time::Instant::now() < deadline => {}
            Some(s) => panic!("condition not reached for {id} in {secs}s: {s:?}"),
            None => panic!("{id} never appeared in {secs}s"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
