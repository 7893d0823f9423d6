//! Serving one listener, with the limits a server on a network needs. `axum::serve` has none
//! that can be set: half-sent headers, a silent keep-alive connection and a trickled body each
//! held a connection (and its file descriptor) for minutes, sixty idle sockets at a file limit of
//! 64 stopped `accept` for everyone before any key was checked, and one half-sent request held
//! SIGTERM for two minutes. So connections are served here with hyper's own builder:
//!
//! - **Header-read timeout** (`header_read_timeout_secs`): hyper arms it whenever it waits for a
//!   request head, so it closes both a connection that sends half its headers and one that sits
//!   idle after a response.
//! - **Body timeout** (`body_timeout_secs`): the body extractor ([`super::extract::Body`]) gives
//!   up with a 408 (a handler waiting on its body is not idle to hyper).
//! - **Connection cap** (`max_connections`): a connection is accepted only with a permit; beyond
//!   the cap, new ones wait in the kernel's backlog (no file descriptor, no task) until one
//!   closes. Waiting rather than refusing: a burst of honest clients is slowed, not failed.
//! - **Shutdown deadline** (`shutdown_deadline_secs`): on the stop signal the listener stops
//!   accepting, long waits answer at once (`Shared::shutting_down`), open connections are asked
//!   to finish, and whatever is still open at the deadline is dropped.
//!
//! Each limit is logged when it acts.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;

/// The limits of one listener, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_deadline: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
            max_connections: config.max_connections.max(1),
            shutdown_deadline: Duration::from_secs(config.shutdown_deadline_secs),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; `stopping` runs once it has (so that
/// long waits can answer) before the open connections are drained.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stopping: impl FnOnce(),
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let at_cap_logged = Arc::new(AtomicBool::new(false));
    tokio::pin!(shutdown);

    loop {
        let permit = if let Ok(permit) = permits.clone().try_acquire_owned() {
            permit
        } else {
            if !at_cap_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection cap reached: new connections wait until one closes"
                );
            }
            tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most often: wait for some to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let timeout = limits.header_read_timeout;
        let at_cap_logged = at_cap_logged.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if is_header_timeout(&*e) {
                    tracing::info!(%peer, ?timeout, "closed a connection that sent no complete request head in time");
                } else {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            drop(permit);
            at_cap_logged.store(false, Ordering::Relaxed);
        });
    }

    drop(listener);
    stopping();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("HTTP connections drained"),
        () = tokio::time::sleep(limits.shutdown_deadline) => tracing::warn!(
            deadline = ?limits.shutdown_deadline,
            "shutdown deadline passed: dropping the HTTP connections still open"
        ),
    }
    Ok(())
}

fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}
