//! Server start-up, kept out of the protocol layers: configuration and the application's
//! [`Registry`] go in, one [`Runtime`] (stores and executors) is built from them, every listener
//! is served from that runtime until one shutdown signal, then the executors are stopped.
//!
//! `taskhub serve` ([`serve`]), an embedding application (through [`crate::cli::run`]) and the
//! tests all start a server through [`Server::run`], so they run the same start-up and the
//! orchestrators they registered. [`crate::http`] only builds the router and serves the listener
//! it is given. Each listener is one task over the same `Arc<Runtime>` that ends on the same
//! stop signal, so another endpoint on another port is one more field of [`Listeners`] and one
//! more task in [`Server::run`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use crate::config::Config;
use crate::engine::Registry;
use crate::http::{self, AppState};
use crate::runtime::Runtime;
use crate::storage::Storage;

/// The sockets one server answers on, bound before it starts (by [`serve`] from the
/// configuration, or by a test on a free port).
pub struct Listeners {
    /// The Durable Functions HTTP management API.
    pub http: TcpListener,
    /// The Durable Task gRPC endpoint for the SDKs' workers and clients, if it is on.
    pub grpc: Option<TcpListener>,
}

/// A configured server whose runtime is open, not yet serving.
pub struct Server {
    config: Config,
    runtime: Arc<Runtime>,
}

impl Server {
    /// Opens the storage the configuration names, running `registry`'s orchestrators and
    /// activities.
    pub fn new(config: Config, registry: Registry) -> anyhow::Result<Self> {
        let storage = Storage::new(&config.connection_setting, &config.sqlite_path);
        Self::with_storage(config, registry, storage)
    }

    /// With storage the caller opened (tests resolve connection settings without touching the
    /// process environment). Opens the default task hub now, so that unusable storage fails the
    /// start instead of the first request.
    pub fn with_storage(
        config: Config,
        mut registry: Registry,
        storage: Storage,
    ) -> anyhow::Result<Self> {
        if !config.samples {
            crate::samples::unregister(&mut registry);
        }
        let runtime = Arc::new(Runtime::with_storage(&config, registry, storage));
        runtime
            .client(None, None)
            .context("cannot open the default task hub")?;
        Ok(Self { config, runtime })
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Serves every listener until `shutdown` completes or a listener fails, then lets in-flight
    /// requests finish (long waits answer at once) and stops the executors.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Before anything is served: a damaged file would otherwise start, then fail writes.
        let began = std::time::Instant::now();
        let store = self.runtime.client(None, None)?.store().clone();
        if let Err(e) = store.check_integrity().await {
            self.runtime.shutdown().await;
            return Err(anyhow::Error::from(e).context("the default task hub's storage is damaged"));
        }
        tracing::debug!(took = ?began.elapsed(), "storage checked");
        let (stop, stopped) = watch::channel(false);
        let mut serving: JoinSet<anyhow::Result<()>> = JoinSet::new();

        let address = listeners.http.local_addr()?;
        tracing::info!(%address, hub = self.runtime.default_hub(), "serving the management API");
        let state = AppState::new(self.runtime.clone(), &self.config);
        let http_stopped = stop_requested(stopped.clone());
        let limits = http::listener::Limits::from_config(&self.config);
        serving.spawn(async move {
            http::serve(listeners.http, state, limits, http_stopped)
                .await
                .with_context(|| format!("the HTTP listener on {address} failed"))
        });

        if let Some(grpc) = listeners.grpc {
            let address = grpc.local_addr()?;
            tracing::info!(%address, hub = self.runtime.default_hub(), "serving the Durable Task gRPC endpoint");
            let stopped = stop_requested(stopped.clone());
            let runtime = self.runtime.clone();
            let key = crate::http::keys::Keys::from_config(&self.config).map(Arc::new);
            serving.spawn(async move {
                crate::grpc::serve(grpc, runtime, key, stopped)
                    .await
                    .with_context(|| format!("the gRPC listener on {address} failed"))
            });
        }

        let ended_early = tokio::select! {
            () = shutdown => None,
            ended = serving.join_next() => ended,
        };
        stop.send_replace(true);
        let mut result = Ok(());
        if let Some(ended) = ended_early {
            keep_first_error(&mut result, ended);
        }
        while let Some(ended) = serving.join_next().await {
            keep_first_error(&mut result, ended);
        }
        tracing::info!("shutting down: stopping executors");
        self.runtime.shutdown().await;
        tracing::info!("shutdown complete");
        result
    }
}

/// `taskhub serve`: binds the configured address and serves until SIGTERM or ctrl-c.
pub async fn serve(config: Config, registry: Registry) -> anyhow::Result<()> {
    check_exposure(&config)?;
    let listen = config.listen;
    let server = Server::new(config, registry)?;
    let http = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let grpc = match server.config.grpc_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for gRPC on {addr} (set grpc_listen, or --grpc-listen off)")
        })?),
        None => None,
    };
    server
        .run(Listeners { http, grpc }, shutdown_signal())
        .await
}

async fn stop_requested(mut stopped: watch::Receiver<bool>) {
    // A dropped sender means the server is gone: stop as well.
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn keep_first_error(result: &mut anyhow::Result<()>, ended: Result<anyhow::Result<()>, JoinError>) {
    let outcome = ended.map_err(anyhow::Error::from).and_then(|r| r);
    if result.is_ok() {
        *result = outcome;
    }
}

/// The shortest access key a server accepts: a key is the only thing between the network and
/// every instance, so it must not be guessable.
const MIN_KEY_CHARS: usize = 16;

/// Anyone who can reach a public address could manage every instance, so listening there
/// needs a key or an explicit opt-out. A key that is set must be a real one: an empty
/// `access_key = ""` once counted as "a key" here and then as none when requests were checked.
fn check_exposure(config: &Config) -> anyhow::Result<()> {
    let named = |setting: &'static str, keys: &[String]| {
        keys.iter()
            .map(move |k| (setting, k.clone()))
            .collect::<Vec<_>>()
    };
    let all_keys = config
        .access_key
        .iter()
        .map(|k| ("access_key", k.clone()))
        .chain(named("access_keys", &config.access_keys))
        .chain(named("read_only_keys", &config.read_only_keys));
    for (setting, key) in all_keys {
        let chars = key.trim().chars().count();
        if chars < MIN_KEY_CHARS {
            anyhow::bail!(
                "a key in {setting} is {chars} characters long; use at least {MIN_KEY_CHARS} \
                 (a random string), or remove the setting to run without a key"
            );
        }
    }
    if config.access_key.is_none()
        && !(config.access_keys.is_empty() && config.read_only_keys.is_empty())
    {
        anyhow::bail!(
            "access_keys and read_only_keys need access_key (TASKHUB_ACCESS_KEY): it is the \
             primary key, and it signs the instance links in generated URLs"
        );
    }
    let public = !is_loopback(&config.listen);
    if public && config.access_key.is_none() && !config.allow_unauthenticated_public {
        anyhow::bail!(
            "refusing to listen on {} without an access key: set access_key (TASKHUB_ACCESS_KEY), \
             listen on a loopback address, or set allow_unauthenticated_public = true",
            config.listen
        );
    }
    // The same rule for the gRPC endpoint, which checks the same key.
    if let Some(grpc) = config.grpc_listen {
        if !is_loopback(&grpc)
            && config.access_key.is_none()
            && !config.allow_unauthenticated_public
        {
            anyhow::bail!(
                "refusing to serve gRPC on {grpc} without an access key: set access_key \
                 (TASKHUB_ACCESS_KEY), listen on a loopback address, set \
                 allow_unauthenticated_public = true, or turn it off (--grpc-listen off)"
            );
        }
    }
    Ok(())
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_listen_needs_a_key() {
        let mut c = Config {
            listen: "0.0.0.0:7071".parse().unwrap(),
            ..Config::default()
        };
        assert!(check_exposure(&c).is_err());
        c.access_key = Some("a-long-enough-random-key".into());
        assert!(check_exposure(&c).is_ok());
        c.access_key = None;
        c.allow_unauthenticated_public = true;
        assert!(check_exposure(&c).is_ok());
        assert!(check_exposure(&Config::default()).is_ok());
    }

    #[test]
    fn an_empty_or_short_key_is_refused_wherever_it_listens() {
        for key in ["", "   ", "short-key"] {
            for listen in ["127.0.0.1:7071", "0.0.0.0:7071"] {
                let c = Config {
                    listen: listen.parse().unwrap(),
                    access_key: Some(key.into()),
                    ..Config::default()
                };
                let refused = check_exposure(&c).unwrap_err().to_string();
                assert!(
                    refused.contains("at least 16"),
                    "{key:?} on {listen}: {refused}"
                );
                assert!(
                    key.is_empty() || !refused.contains(key),
                    "the key is never echoed"
                );
            }
        }
    }

    #[test]
    fn rotation_and_read_only_keys_are_checked_like_the_key_and_need_it() {
        let ok = Config {
            access_key: Some("a-long-enough-random-key".into()),
            access_keys: vec!["the-next-random-key-0".into()],
            read_only_keys: vec!["a-read-only-random-key".into()],
            ..Config::default()
        };
        assert!(check_exposure(&ok).is_ok());
        let short = Config {
            read_only_keys: vec!["short".into()],
            ..ok.clone()
        };
        let refused = check_exposure(&short).unwrap_err().to_string();
        assert!(
            refused.contains("a key in read_only_keys is 5 characters"),
            "{refused}"
        );
        let without_primary = Config {
            access_key: None,
            ..ok
        };
        let refused = check_exposure(&without_primary).unwrap_err().to_string();
        assert!(refused.contains("need access_key"), "{refused}");
    }

    #[test]
    fn a_public_grpc_address_needs_a_key_or_an_explicit_opt_out() {
        let mut c = Config {
            grpc_listen: Some("0.0.0.0:4001".parse().unwrap()),
            ..Config::default()
        };
        let refused = check_exposure(&c).unwrap_err().to_string();
        assert!(refused.contains("refusing to serve gRPC"), "{refused}");
        c.access_key = Some("a-long-enough-random-key".into());
        assert!(check_exposure(&c).is_ok());
        c.access_key = None;
        c.allow_unauthenticated_public = true;
        assert!(check_exposure(&c).is_ok());
    }
}
