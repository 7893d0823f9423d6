//! One process's view of its task hubs: opens stores on demand, hands out management clients,
//! and runs an executor for every hub it touches (unless the executor is disabled).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::client::Client;
use crate::config::Config;
use crate::engine::executor::{self, ExecutorHandle, ExecutorOptions};
use crate::engine::Registry;
use crate::storage::{Storage, StorageError};

pub struct Runtime {
    storage: Storage,
    registry: Arc<Registry>,
    default_hub: String,
    executor: Option<ExecutorOptions>,
    /// Running executors, keyed by the address of the store they drive.
    executors: Mutex<HashMap<usize, ExecutorHandle>>,
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
        let hub = hub.unwrap_or(&self.default_hub);
        let store = self.storage.open(connection, hub)?;
        if let Some(options) = &self.executor {
            // `Storage` keeps one store per (backend, hub) open for good, so the store's address
            // identifies the hub without resolving the connection a second time per request.
            let key = Arc::as_ptr(&store) as *const () as usize;
            let mut executors = self.executors.lock().unwrap();
            executors.entry(key).or_insert_with(|| {
                executor::spawn(store.clone(), self.registry.clone(), options.clone())
            });
        }
        Ok(Client::new(store, Some(self.registry.clone())))
    }

    /// Stops every executor, letting in-flight work items finish.
    pub async fn shutdown(&self) {
        let handles: Vec<ExecutorHandle> = self
            .executors
            .lock()
            .unwrap()
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            h.shutdown().await;
        }
    }
}
