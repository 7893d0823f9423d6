//! `spawn_app()`: the real server (`taskhub serve`'s start-up) on 127.0.0.1:0 over a fresh SQLite
//! file, spoken to over HTTP.
//! `spawn_on(Backend::Azure, ..)`: the same server on Azurite, in a task hub of its own.
//! Nothing reads or writes the process environment, so tests run in parallel.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use taskhub::config::{Config, ExecutorConfig};
use taskhub::http::{V1_PREFIX, V2_PREFIX};
use taskhub::runtime::Runtime;
use taskhub::samples;
use taskhub::server::{Listeners, Server};
use taskhub::storage::Storage;
use tokio::sync::oneshot;

#[cfg(feature = "azure")]
#[path = "../azure/mod.rs"]
pub mod azure;

/// Where the server under test keeps its task hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in a temp directory.
    Sqlite,
    /// Azurite (`UseDevelopmentStorage=true`), a fresh task hub per server so tests running in
    /// parallel on the one emulator never see each other's instances.
    #[cfg(feature = "azure")]
    Azure,
}

/// Runs each `async fn NAME(backend: Backend)` of the test file on both backends, as the tests
/// `sqlite::NAME` and `azure::NAME`: the HTTP API must behave the same on either store.
// Not every test file that includes this module runs tests on both backends.
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::http_support::Backend::Sqlite).await
                }
            )*
        }
        #[cfg(feature = "azure")]
        mod azure {
            $(
                // Multi-threaded like the Azure store's own tests: its HTTP calls and partition
                // manager run beside the server.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::http_support::Backend::Azure).await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub http: reqwest::Client,
    pub runtime: Arc<Runtime>,
    /// The default task hub (fresh per server on Azure).
    pub hub: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    config: Config,
    /// Opens the server's storage again, as another process on the same store would.
    storage: Arc<dyn Fn() -> Storage + Send + Sync>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_on(backend, |_| {}).await
}

/// With config changes. The connection setting `Other` names a second SQLite file.
pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_on(Backend::Sqlite, configure).await
}

/// On the given backend, with config changes. On Azure the default connection setting holds
/// `UseDevelopmentStorage=true` and the task hub is fresh; `Other` is still a SQLite file.
pub async fn spawn_on(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        sqlite_path: dir.path().join("taskhub.db"),
        executor: ExecutorConfig {
            enabled: true,
            orchestration_workers: 4,
            activity_workers: 4,
        },
        ..Config::default()
    };
    let default_conn = match backend {
        Backend::Sqlite => None,
        #[cfg(feature = "azure")]
        Backend::Azure => {
            azure::require_azurite();
            config.task_hub = azure::fresh_hub();
            Some(azure::CONN.to_string())
        }
    };
    configure(&mut config);
    let other = format!("sqlite:{}", dir.path().join("other.db").display());
    let storage: Arc<dyn Fn() -> Storage + Send + Sync> = {
        let (setting, sqlite) = (
            config.connection_setting.clone(),
            config.sqlite_path.clone(),
        );
        Arc::new(move || {
            let (other, setting2, default_conn) =
                (other.clone(), setting.clone(), default_conn.clone());
            Storage::with_env(&setting, &sqlite, move |name| match name {
                "Other" => Some(other.clone()),
                n if n == setting2 => default_conn.clone(),
                _ => None,
            })
        })
    };
    // The start-up `taskhub serve` runs, on a free port.
    let server = Server::with_storage(config.clone(), samples::registry(), storage()).unwrap();
    let runtime = server.runtime().clone();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", http.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server.run(Listeners { http, grpc: None }, async move {
        let _ = rx.await;
    }));
    TestApp {
        origin,
        http: reqwest::Client::new(),
        runtime,
        hub: config.task_hub.clone(),
        shutdown: Some(tx),
        server: Some(server),
        config,
        storage,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// A management URL in the v2 dialect.
    pub fn v2(&self, path: &str) -> String {
        format!("{}{V2_PREFIX}{path}", self.origin)
    }

    /// A management URL in the v1 dialect.
    pub fn v1(&self, path: &str) -> String {
        format!("{}{V1_PREFIX}{path}", self.origin)
    }

    pub async fn get(&self, url: &str) -> Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn post(&self, url: &str) -> Response {
        self.http.post(url).send().await.unwrap()
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> Response {
        self.http.post(url).json(body).send().await.unwrap()
    }

    pub async fn delete(&self, url: &str) -> Response {
        self.http.delete(url).send().await.unwrap()
    }

    /// Starts `name` through the v2 API and returns its id.
    pub async fn start(&self, name: &str, input: &Value) -> String {
        let r = self
            .post_json(&self.v2(&format!("/orchestrators/{name}")), input)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls the status until `check` holds; panics after `secs`, also when the instance never
    /// appears.
    pub async fn until(&self, id: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.get(&self.v2(&format!("/instances/{id}"))).await;
            let status = match r.status() {
                StatusCode::NOT_FOUND => None,
                _ => Some(r.json::<Value>().await.unwrap()),
            };
            match status {
                Some(v) if check(&v) => return v,
                _ if tokio::time::Instant::now() < deadline => {}
                Some(v) => panic!("condition not reached for {id} in {secs}s: {v}"),
                None => panic!("{id} never appeared in {secs}s"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn until_status(&self, id: &str, status: &str) -> Value {
        self.until(id, 20, |v| v["runtimeStatus"] == status).await
    }

    /// An executor with the samples on the server's store, as another process would run it:
    /// for a server started with its executor off, so that a test decides when instances run.
    /// Stop it with [`Runtime::shutdown`], then drop it.
    pub fn executor(&self) -> Runtime {
        let mut config = self.config.clone();
        config.executor.enabled = true;
        let runtime = Runtime::with_storage(&config, samples::registry(), (self.storage)());
        runtime.client(None, None).unwrap();
        runtime
    }

    /// `hub`'s store, opened as another process on the server's storage would open it.
    pub fn store_elsewhere(&self, hub: &str) -> Arc<dyn taskhub::store::Store> {
        (self.storage)().open_detached(None, hub).unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The JSON body, asserting the content type the real API sends.
pub async fn json_body(r: Response) -> Value {
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some("application/json; charset=utf-8"));
    r.json().await.unwrap()
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
