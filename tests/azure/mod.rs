//! Helpers for tests against Azurite: reachability check, fresh hub names, stores and runtimes.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use taskhub::client::Client;
use taskhub::config::{Config, ExecutorConfig};
use taskhub::engine::Registry;
use taskhub::runtime::Runtime;
use taskhub::storage::Storage;
use taskhub::store::azure::{AzureOptions, AzureStore};
use taskhub::store::InstanceRecord;

pub const CONN: &str = "UseDevelopmentStorage=true";

/// Fails the test (never skips it) when Azurite is not listening.
pub fn require_azurite() {
    for port in [10000u16, 10001, 10002] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            panic!(
                "Azurite is not reachable on 127.0.0.1:{port} ({e}). These tests need the storage \
                 emulator: run ./scripts/test.sh (starts and stops it), or ./scripts/azurite.sh start \
                 before cargo test"
            );
        }
    }
}

/// A hub name no other test uses: letters and digits, starting with a letter.
pub fn fresh_hub() -> String {
    format!("t{}", &taskhub::model::new_guid_n()[..15])
}

pub fn store_with(hub: &str, opts: AzureOptions) -> Arc<AzureStore> {
    require_azurite();
    AzureStore::open(CONN, hub, opts).unwrap()
}

pub fn store(hub: &str) -> Arc<AzureStore> {
    store_with(hub, AzureOptions::default())
}

/// A runtime on Azurite for `hub`; `executor` off is management-only mode. `env` adds
/// `TASKHUB_AZURE_*` settings.
pub fn runtime(
    hub: &str,
    registry: Registry,
    executor: bool,
    env: &[(&str, &str)],
) -> (Runtime, Client) {
    require_azurite();
    let config = Config {
        task_hub: hub.to_string(),
        executor: ExecutorConfig {
            enabled: executor,
            orchestration_workers: 4,
            activity_workers: 4,
        },
        ..Config::default()
    };
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let setting = config.connection_setting.clone();
    let storage = Storage::with_env(&config.connection_setting, &config.sqlite_path, move |n| {
        if n == setting {
            return Some(CONN.to_string());
        }
        env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
    });
    let runtime = Runtime::with_storage(&config, registry, storage);
    let client = runtime.client(None, None).unwrap();
    (runtime, client)
}

/// Waits for a terminal status, failing the test after `secs`.
pub async fn finish(client: &Client, id: &str, secs: u64) -> InstanceRecord {
    let status = client
        .wait_for_completion(id, Duration::from_secs(secs), Duration::from_millis(100))
        .await
        .unwrap()
        .expect("the instance exists");
    assert!(
        status.runtime_status.is_terminal(),
        "{id} did not finish in {secs}s: {status:?}"
    );
    status
}
