//! The HTTP management API (`spec/http-api.md`): a thin layer over [`Client`](crate::client::Client).
//! It builds the router and serves a listener it is given; starting a server (runtime,
//! listeners, shutdown) is [`crate::server`]'s.
//!
//! Requests are first normalised ([`normalize`]: case-insensitive literal segments, trimmed
//! slashes), then checked for the access key ([`auth`]), then routed. The management routes are
//! served under both prefixes; the prefix picks the [`Dialect`]. Each resource has its own file
//! ([`start`], [`instances`], [`operations`], [`wait`]); errors map to status codes in one place
//! ([`error`]).

pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod instances;
pub mod keys;
pub mod listener;
pub mod normalize;
pub mod operations;
pub mod request_log;
pub mod site;
pub mod start;
pub mod urls;
pub mod wait;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, OriginalUri, Request};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Layer as _;

use crate::config::{Config, DEFAULT_CONNECTION_SETTING};
use crate::runtime::Runtime;
use error::ApiError;
use extract::{BodyLimit, BodyTimeout};
pub use normalize::{V1_PREFIX, V2_PREFIX};

/// Which API generation a request speaks; picked by the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `/admin/extensions/DurableTaskExtension`: Failed → 500, unknown route → 400
    /// `{"Message":"No such API"}`, 202 bodies include `rewindPostUri`.
    V1,
    /// `/runtime/webhooks/durabletask` (and the user-level routes): 2.x semantics with the
    /// latest extension's codes for a caller's mistakes (spec §17).
    V2,
}

impl Dialect {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V1 => V1_PREFIX,
            Self::V2 => V2_PREFIX,
        }
    }
}

/// Shared by every request.
pub struct Shared {
    pub runtime: Arc<Runtime>,
    /// `None` when the server has no access key.
    pub keys: Option<Arc<keys::Keys>>,
    pub use_forwarded_host: bool,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// A keyless server on loopback answers only to loopback host names ([`site`]).
    pub loopback_names_only: bool,
    /// The `connection=` value generated URLs carry when the request named none.
    pub default_connection: String,
    /// Flips to true when the server starts shutting down, so that long waits answer at once.
    pub shutting_down: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub dialect: Dialect,
}

impl AppState {
    pub fn new(runtime: Arc<Runtime>, config: &Config) -> Self {
        // Durable Functions writes `connection=Storage` for the default connection; `Storage`
        // is its alias of `AzureWebJobsStorage`, so it only names our default when that is it.
        let default_connection = if config.connection_setting == DEFAULT_CONNECTION_SETTING {
            "Storage".to_string()
        } else {
            config.connection_setting.clone()
        };
        Self {
            shared: Arc::new(Shared {
                runtime,
                keys: keys::Keys::from_config(config).map(Arc::new),
                loopback_names_only: config.access_key.as_deref().is_none_or(str::is_empty)
                    && config.listen.ip().is_loopback()
                    && !config.use_forwarded_host,
                use_forwarded_host: config.use_forwarded_host,
                max_body_bytes: config.max_body_bytes,
                body_timeout: std::time::Duration::from_secs(config.body_timeout_secs.max(1)),
                default_connection,
                shutting_down: watch::channel(false).0,
            }),
            dialect: Dialect::V2,
        }
    }

    fn with_dialect(&self, dialect: Dialect) -> Self {
        Self {
            shared: self.shared.clone(),
            dialect,
        }
    }
}

type RouteTable = Vec<(&'static str, Method, MethodRouter<AppState>)>;

/// The management routes, relative to a prefix. The router is built from this table and
/// [`documented_routes`] lists it, so the two cannot drift apart.
fn management_routes() -> RouteTable {
    use Method as M;
    vec![
        (
            "/orchestrators/{functionName}",
            M::POST,
            on(MethodFilter::POST, start::start),
        ),
        (
            "/orchestrators/{functionName}/{instanceId}",
            M::POST,
            on(MethodFilter::POST, start::start),
        ),
        ("/instances", M::GET, on(MethodFilter::GET, instances::list)),
        (
            "/instances",
            M::DELETE,
            on(MethodFilter::DELETE, instances::purge_by_filter),
        ),
        (
            "/instances/{instanceId}",
            M::GET,
            on(MethodFilter::GET, instances::status),
        ),
        (
            "/instances/{instanceId}",
            M::DELETE,
            on(MethodFilter::DELETE, instances::purge),
        ),
        (
            "/instances/{instanceId}/raiseEvent/{eventName}",
            M::POST,
            on(MethodFilter::POST, operations::raise_event),
        ),
        (
            "/instances/{instanceId}/terminate",
            M::POST,
            on(MethodFilter::POST, operations::terminate),
        ),
        (
            "/instances/{instanceId}/suspend",
            M::POST,
            on(MethodFilter::POST, operations::suspend),
        ),
        (
            "/instances/{instanceId}/resume",
            M::POST,
            on(MethodFilter::POST, operations::resume),
        ),
        (
            "/instances/{instanceId}/rewind",
            M::POST,
            on(MethodFilter::POST, operations::rewind),
        ),
        (
            "/instances/{instanceId}/restart",
            M::POST,
            on(MethodFilter::POST, operations::restart),
        ),
    ]
}

/// The user-level routes of the Durable Functions samples, served with and without `/api`.
fn user_routes() -> RouteTable {
    use Method as M;
    vec![
        (
            "/orchestrators/{functionName}",
            M::POST,
            on(MethodFilter::POST, wait::user_start),
        ),
        (
            "/orchestrators/{functionName}/{instanceId}",
            M::POST,
            on(MethodFilter::POST, wait::user_start),
        ),
        (
            "/orchestrators/{functionName}/wait",
            M::POST,
            on(MethodFilter::POST, wait::user_start_and_wait),
        ),
    ]
}

/// For operators, at the root ([`health`]): the probes (without the access key) and metrics.
fn probe_routes() -> RouteTable {
    use Method as M;
    vec![
        (
            health::HEALTHZ,
            M::GET,
            on(MethodFilter::GET, health::healthz),
        ),
        (
            health::READYZ,
            M::GET,
            on(MethodFilter::GET, health::readyz),
        ),
        (
            health::METRICS,
            M::GET,
            on(MethodFilter::GET, health::metrics),
        ),
    ]
}

/// The probe routes; any other path is the user routes' unknown route.
fn probes(state: AppState) -> Router {
    probe_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, _, handler)| {
            r.route(path, handler)
        })
        .layer(axum::middleware::from_fn(count_request))
        .with_state(state)
}

/// Every (method, path) the router serves, in OpenAPI path syntax.
pub fn documented_routes() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = probe_routes()
        .into_iter()
        .map(|(path, method, _)| (method.to_string(), path.to_string()))
        .collect();
    for prefix in [V2_PREFIX, V1_PREFIX] {
        for (path, method, _) in management_routes() {
            out.push((method.to_string(), format!("{prefix}{path}")));
        }
    }
    for prefix in ["/api", ""] {
        for (path, method, _) in user_routes() {
            out.push((method.to_string(), format!("{prefix}{path}")));
        }
    }
    out
}

/// Builds a router from a table, merging the methods of each path; a method the path does not
/// serve gets the dialect's unknown-route answer (the real API says 404, not 405).
fn build(table: RouteTable, dialect: Dialect) -> Router<AppState> {
    let mut merged: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for (path, _, handler) in table {
        match merged.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => {
                *existing = std::mem::replace(existing, MethodRouter::new()).merge(handler)
            }
            None => merged.push((path, handler)),
        }
    }
    let fallback = move || async move { unknown_route(dialect) };
    let mut router = Router::new();
    for (path, handler) in merged {
        router = router.route(path, handler.fallback(fallback));
    }
    router
        .fallback(fallback)
        .layer(axum::middleware::from_fn(count_request))
}

/// Counts a request under its route template ([`crate::metrics`]); after routing, so the
/// template (not the raw path, which would make the label unbounded) is known.
async fn count_request(req: Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| route_label(p.as_str()));
    let method = method_label(req.method());
    let began = std::time::Instant::now();
    let response = next.run(req).await;
    crate::metrics::metrics().request(route, method, response.status().as_u16(), began.elapsed());
    response
}

/// The route template as a `'static` label: one of the documented routes (a fixed set, made
/// once), so a request's metrics need no allocation.
fn route_label(matched: &str) -> &'static str {
    static ROUTES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut paths: Vec<&'static str> = documented_routes()
            .into_iter()
            .map(|(_, path)| &*Box::leak(path.into_boxed_str()))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    });
    ROUTES
        .binary_search(&matched)
        .map_or("other", |i| ROUTES[i])
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        _ => "other",
    }
}

fn unknown_route(dialect: Dialect) -> Response {
    match dialect {
        Dialect::V1 => ApiError::NoSuchApi.into_response(),
        Dialect::V2 => ApiError::NotFound.into_response(),
    }
}

/// The whole API as one router: normalisation, access key, body limit and request logs included.
pub fn router(state: AppState) -> Router {
    let limit = state.shared.max_body_bytes;
    let body_timeout = state.shared.body_timeout;
    let user = build(user_routes(), Dialect::V2).with_state(state.with_dialect(Dialect::V2));
    let routed = Router::new()
        .nest(
            V2_PREFIX,
            build(management_routes(), Dialect::V2).with_state(state.with_dialect(Dialect::V2)),
        )
        .nest(
            V1_PREFIX,
            build(management_routes(), Dialect::V1).with_state(state.with_dialect(Dialect::V1)),
        )
        .nest("/api", user.clone())
        .merge(user)
        .merge(probes(state.clone()))
        .layer(DefaultBodyLimit::max(limit));
    // Normalise the path before the inner router sees it: axum matches routes exactly, and a
    // layer added with `Router::layer` would run only after routing.
    let normalised =
        axum::middleware::map_request(move |req: Request| normalise(req, limit, body_timeout))
            .layer(routed);
    Router::new()
        .fallback_service(normalised)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            site::same_site_only,
        ))
        .layer(request_log::layer())
}

async fn normalise(mut req: Request, limit: usize, timeout: std::time::Duration) -> Request {
    req.extensions_mut().insert(BodyLimit(limit));
    req.extensions_mut().insert(BodyTimeout(timeout));
    if req.extensions().get::<OriginalUri>().is_none() {
        let original = req.uri().clone();
        req.extensions_mut().insert(OriginalUri(original));
    }
    if let Some(path) = normalize::canonical_path(req.uri().path()) {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then drains in-flight
/// requests (long waits answer at once with a 202, so draining is quick) within the
/// configured deadline ([`listener`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: listener::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = state.shared.clone();
    let app = router(state);
    listener::serve(listener, app, limits, shutdown, move || {
        shared.shutting_down.send_replace(true);
    })
    .await
}

#[cfg(test)]
mod router_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_routes_cover_both_prefixes_and_user_routes() {
        let routes = documented_routes();
        assert_eq!(routes.len(), 3 + 12 * 2 + 3 * 2);
        assert!(routes.contains(&("GET".into(), "/readyz".into())));
        assert!(routes.contains(&(
            "POST".into(),
            "/admin/extensions/DurableTaskExtension/instances/{instanceId}/rewind".into()
        )));
        assert!(routes.contains(&("POST".into(), "/orchestrators/{functionName}/wait".into())));
    }
}
