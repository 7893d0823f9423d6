//! For whoever runs the server: `GET /healthz` (the process answers), `GET /readyz` (every
//! configured task hub's store answers a read, and its executor runs or was turned off), and
//! `GET /metrics` (Prometheus).
//!
//! The probes are served without the access key: a probe (a kubelet, a load balancer) carries none,
//! and they reveal nothing but hub names the operator configured. A hub that is not ready is
//! named with a short reason; the cause (paths, storage errors) goes to the log only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::json as json_response;
use super::AppState;

/// The paths, served beside the API (not under its prefixes).
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if *state.shared.shutting_down.borrow() {
        return not_ready(json!({ "status": "shutting down" }));
    }
    let mut hubs = Map::new();
    let mut ready = true;
    for (hub, outcome) in state.shared.runtime.readiness().await {
        let said = match outcome {
            Ok(()) => "ok".to_string(),
            Err(why) => {
                ready = false;
                why
            }
        };
        hubs.insert(hub, Value::String(said));
    }
    let body = json!({ "status": if ready { "ready" } else { "not ready" }, "hubs": hubs });
    if ready {
        json_response(StatusCode::OK, &body)
    } else {
        not_ready(body)
    }
}

/// `GET /metrics`: the Prometheus text exposition ([`crate::metrics`]). It follows the access
/// key like the API (a read-only key will do): the names of orchestrations are the operator's.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = crate::metrics::metrics();
    let (workers, orchestrations, activities) = state.shared.runtime.remote_totals();
    m.set_workers(workers);
    m.set_waiting(orchestrations, activities);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

fn not_ready(body: Value) -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
}
