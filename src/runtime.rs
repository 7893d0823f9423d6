//! One process's view of its task hubs: opens stores on demand and hands out management clients.
//!
//! Two kinds of hub, so that what a request names cannot grow the server:
//! - the configured hubs (`task_hub` and `task_hubs`) run here: each gets an executor (unless
//!   executors are off), a lease and its storage on first use, for the life of the process. With
//!   the gRPC endpoint on, each executor has a [`RemoteWork`] queue beside it that hands the
//!   orchestrations and activities this process has not registered to the connected SDK workers;
//! - any other hub a request names is *visited*: served management-only if it already exists in
//!   storage (another process runs it), a 404 otherwise. Asking creates nothing; at most
//!   [`MAX_VISITED_HUBS`] stay open, and one unused for [`VISITED_HUB_IDLE`] is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::Config;
use crate::engine::executor::{self, ExecutorHandle, ExecutorOptions};
use crate::engine::remote::RemoteWork;
use crate::engine::Registry;
use crate::storage::{Storage, StorageError};

/// At most this many visited hubs are open at once; the least recently used goes first.
pub const MAX_VISITED_HUBS: usize = 32;
/// A visited hub unused this long is closed (its next request looks it up again).
pub(crate) const VISITED_HUB_IDLE: Duration = Duration::from_secs(300);

pub struct Runtime {
    storage: Storage,
    registry: Arc<Registry>,
    default_hub: String,
    /// The hubs this process runs: the default and `task_hubs`.
    configured_hubs: Vec<String>,
    /// Open visited hubs by (connection setting as named, hub).
    visited: Mutex<HashMap<(Option<String>, String), Visited>>,
    executor: Option<ExecutorOptions>,
    /// The connection settings a request may name: the default and `connections`.
    offered: Vec<String>,
    /// Whether names this process has not registered go to remote (gRPC) workers.
    remote_workers: bool,
    /// Running executors, keyed by the address of the store they drive.
    executors: Mutex<HashMap<usize, HubWork>>,
}

/// A hub this process manages without running it.
struct Visited {
    client: Client,
    last_used: Instant,
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
            configured_hubs: std::iter::once(&config.task_hub)
                .chain(&config.task_hubs)
                .cloned()
                .collect(),
            visited: Mutex::new(HashMap::new()),
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

    /// A client for the hub a request names (`None`: the defaults). A configured hub is opened
    /// with its executor; any other hub only if it exists in storage
    /// ([`StorageError::NoSuchHub`] otherwise), management-only.
    pub async fn request_client(
        &self,
        connection: Option<&str>,
        hub: Option<&str>,
    ) -> Result<Client, StorageError> {
        let hub = hub.unwrap_or(&self.default_hub);
        if self.configured_hubs.iter().any(|h| h == hub) {
            return self.client(connection, Some(hub));
        }
        if let Some(name) = connection {
            self.check_offered(name)?;
        }
        let key = (connection.map(str::to_string), hub.to_string());
        if let Some(client) = self.visit(&key) {
            return Ok(client);
        }
        let store = self.storage.open_detached(connection, hub)?;
        if !store.hub_exists().await.map_err(StorageError::Open)? {
            return Err(StorageError::NoSuchHub(hub.to_string()));
        }
        // Management only: no registry check on starts (the code runs in whichever process
        // runs the hub), and no remote queue.
        let client = Client::new(store, None);
        self.remember_visited(key, client.clone());
        Ok(client)
    }

    /// The open visited hub under `key`, if any; closes the ones idle too long on the way.
    fn visit(&self, key: &(Option<String>, String)) -> Option<Client> {
        let mut visited = self.visited.lock().unwrap();
        let now = Instant::now();
        visited.retain(|_, v| now.duration_since(v.last_used) < VISITED_HUB_IDLE);
        let v = visited.get_mut(key)?;
        v.last_used = now;
        Some(v.client.clone())
    }

    fn remember_visited(&self, key: (Option<String>, String), client: Client) {
        let mut visited = self.visited.lock().unwrap();
        if visited.len() >= MAX_VISITED_HUBS && !visited.contains_key(&key) {
            let oldest = visited
                .iter()
                .min_by_key(|(_, v)| v.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                visited.remove(&oldest);
            }
        }
        visited.insert(
            key,
            Visited {
                client,
                last_used: Instant::now(),
            },
        );
    }

    /// How many visited hubs are open now.
    pub fn visited_hubs(&self) -> usize {
        self.visited.lock().unwrap().len()
    }

    /// A client for `hub` on `connection` (defaults when `None`), with an executor running there.
    /// For the hubs this process runs (start-up, the gRPC endpoint); requests go through
    /// [`request_client`](Self::request_client).
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

    /// For each hub this process runs: whether its store answers a read, and its executor runs
    /// (or executors are off). A reason is short; the cause is logged.
    pub async fn readiness(&self) -> Vec<(String, Result<(), String>)> {
        let mut out = Vec::new();
        for hub in &self.configured_hubs {
            let outcome = match self.client(None, Some(hub)) {
                Err(e) => {
                    tracing::warn!(%hub, error = %e, "not ready: the hub's storage cannot be opened");
                    Err("storage cannot be opened".to_string())
                }
                Ok(client) => match client.store().hub_exists().await {
                    Err(e) => {
                        tracing::warn!(%hub, error = %e, "not ready: the hub's storage does not answer");
                        Err("storage does not answer".to_string())
                    }
                    Ok(_) if self.executor.is_some() && !self.runs_executor(client.store()) => {
                        Err("no executor runs".to_string())
                    }
                    Ok(_) => Ok(()),
                },
            };
            out.push((hub.clone(), outcome));
        }
        out
    }

    /// Over the hubs this process runs: connected SDK workers, and orchestrations and
    /// activities waiting for one.
    pub fn remote_totals(&self) -> (usize, usize, usize) {
        let executors = self.executors.lock().unwrap();
        executors
            .values()
            .filter_map(|h| h.remote.as_ref())
            .fold((0, 0, 0), |(w, o, a), r| {
                let (ro, ra) = r.waiting_counts();
                (w + r.worker_count(), o + ro, a + ra)
            })
    }

    fn runs_executor(&self, store: &Arc<dyn crate::store::Store>) -> bool {
        let key = Arc::as_ptr(store) as *const () as usize;
        self.executors.lock().unwrap().contains_key(&key)
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
