//! One process's view of its task hubs: opens stores on demand, hands out management clients,
//! and runs an executor for every hub it touches (unless the executor is disabled). With the gRPC
//! endpoint on, each executor has a [`RemoteWork`] queue beside it that hands the orchestrations
//! and activities this process has not registered to the connected SDK workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::client::Client;
use crate::config::Config;
use crate::engine::executor::{self, ExecutorHandle, ExecutorOptions};
use crate::engine::remote::RemoteWork;
use crate::engine::Registry;
use crate::storage::{Storage, StorageError};

pub struct Runtime {
    storage: Storage,
    registry: Arc<Registry>,
    default_hub: String,
    executor: Option<ExecutorOptions>,
    /// The connection settings a request may name: the default and `connections`.
    offered: Vec<String>,
    /// Whether names this process has not registered go to remote (gRPC) workers.
    remote_workers: bool,
    /// Running executors, keyed by the address of the store they drive.
    executors: Mutex<HashMap<usize, HubWork>>,
}

/// What runs for one hub.
struct HubWork {
    store: Arc<dyn crate::store::Store>,
    executor: ExecutorHandle,
    remote: Option<Arc<RemoteWork>>,
}

impl Runtime {
    pub fn new(config: &Config, registry: Registry) -> Self {
        Self::with_storage(
            config,
            registry,
            Storage::new(&config.connection_setting, &config.sqlite_path),
        )
    }

    pub fn with_storage(config: &Config, registry: Registry, storage: Storage) -> Self {
        let executor = config.executor.enabled.then_some(ExecutorOptions {
            orchestration_workers: config.executor.orchestration_workers,
            activity_workers: config.executor.activity_workers,
        });
        Self {
            storage,
            registry: Arc::new(registry),
            default_hub: config.task_hub.clone(),
            executor,
            offered: std::iter::once(config.connection_setting.clone())
                .chain(config.connections.iter().cloned())
                .collect(),
            remote_workers: config.grpc_listen.is_some(),
            executors: Mutex::new(HashMap::new()),
        }
    }

    pub fn default_hub(&self) -> &str {
        &self.default_hub
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A client for `hub` on `connection` (defaults when `None`), with an executor running there.
    pub fn client(
        &self,
        connection: Option<&str>,
        hub: Option<&str>,
    ) -> Result<Client, StorageError> {
        let (client, _) = self.hub(connection, hub)?;
        Ok(client)
    }

    /// A client for `hub` and the queue its remote workers take work from (`None` when this
    /// process runs no executor or has no gRPC endpoint).
    pub fn hub(
        &self,
        connection: Option<&str>,
        hub: Option<&str>,
    ) -> Result<(Client, Option<Arc<RemoteWork>>), StorageError> {
        if let Some(name) = connection {
            self.check_offered(name)?;
        }
        let hub = hub.unwrap_or(&self.default_hub);
        let store = self.storage.open(connection, hub)?;
        let mut remote = None;
        if let Some(options) = &self.executor {
            // `Storage` keeps one store per (backend, hub) open for good, so the store's address
            // identifies the hub without resolving the connection a second time per request.
            let key = Arc::as_ptr(&store) as *const () as usize;
            let mut executors = self.executors.lock().unwrap();
            let work = executors.entry(key).or_insert_with(|| {
                let remote = self.remote_workers.then(|| {
                    let (orchestration_lock, activity_lock) = executor::LOCKS;
                    RemoteWork::start(store.clone(), orchestration_lock, activity_lock)
                });
                HubWork {
                    store: store.clone(),
                    executor: executor::spawn(
                        store.clone(),
                        self.registry.clone(),
                        options.clone(),
                        remote.clone(),
                    ),
                    remote,
                }
            });
            remote = work.remote.clone();
        }
        let client = Client::new(store, Some(self.registry.clone())).with_remote(remote.clone());
        Ok((client, remote))
    }

    /// A request may name only the connection settings this server offers. `Storage` is
    /// Durable Functions' alias of `AzureWebJobsStorage`.
    fn check_offered(&self, name: &str) -> Result<(), StorageError> {
        let canonical = if name.eq_ignore_ascii_case("Storage") {
            crate::config::DEFAULT_CONNECTION_SETTING
        } else {
            name
        };
        if self.offered.iter().any(|o| o == canonical) {
            Ok(())
        } else {
            Err(StorageError::NotOffered(name.to_string()))
        }
    }

    /// Stops every executor, letting in-flight work items finish.
    pub async fn shutdown(&self) {
        let hubs: Vec<HubWork> = self
            .executors
            .lock()
            .unwrap()
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in hubs {
            h.executor.shutdown().await;
            // After the executor: nothing new arrives, and what waited goes back to the store.
            if let Some(remote) = h.remote {
                remote.shutdown().await;
            }
            // Last: another process may take the hub's work over at once.
            if let Err(e) = h.store.stop_execution().await {
                tracing::warn!(hub = h.store.hub(), error = %e, "giving up the hub's execution failed; another process takes over when its leases expire");
            }
        }
    }
}
