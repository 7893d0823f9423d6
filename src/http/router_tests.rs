//! Router-level tests that need no store: routing, dialects, normalisation, access key, limits.
//! (Behaviour against a real store is tested in `tests/http_*.rs`.)

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::{router, AppState};
use crate::config::Config;
use crate::engine::Registry;
use crate::runtime::Runtime;
use crate::storage::Storage;

fn app(config: Config) -> axum::Router {
    let storage = Storage::with_env("AzureWebJobsStorage", Path::new(":memory:"), |_| None);
    let runtime = Arc::new(Runtime::with_storage(&config, Registry::new(), storage));
    router(AppState::new(runtime, &config))
}

async fn send(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, String) {
    send_req(
        app,
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn send_req(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A request that reaches a handler fails on the hub name before it touches storage.
const BAD_HUB: &str = "taskHub=no-dashes";

#[tokio::test]
async fn unknown_routes_per_dialect() {
    let app = app(Config::default());
    assert_eq!(
        send(&app, "GET", "/runtime/webhooks/durabletask/nope").await,
        (StatusCode::NOT_FOUND, String::new())
    );
    assert_eq!(
        send(&app, "GET", "/admin/extensions/DurableTaskExtension/nope").await,
        (
            StatusCode::BAD_REQUEST,
            r#"{"Message":"No such API"}"#.into()
        )
    );
    assert_eq!(
        send(&app, "GET", "/elsewhere").await.0,
        StatusCode::NOT_FOUND
    );
    // A known path with a method it does not serve is an unknown route too, not a 405.
    assert_eq!(
        send(&app, "PUT", "/runtime/webhooks/durabletask/instances").await,
        (StatusCode::NOT_FOUND, String::new())
    );
    assert_eq!(
        send(
            &app,
            "GET",
            "/admin/extensions/DurableTaskExtension/instances/x/terminate"
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(
            &app,
            "POST",
            "/runtime/webhooks/durabletask/instances/x/explode"
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn literal_segments_match_case_insensitively() {
    let app = app(Config::default());
    for uri in [
        "/Runtime/Webhooks/DurableTask/Instances/?",
        "/runtime/webhooks/durabletask/instances/abc?",
        "/ADMIN/extensions/durabletaskextension/instances/abc/TERMINATE?",
        "/runtime/webhooks/durabletask/Instances/abc/RaiseEvent/Go?",
        "/API/Orchestrators/Hello?",
        "/orchestrators/Hello/Wait?",
    ] {
        let method = if uri.contains("nstances/?") || uri.ends_with("abc?") {
            "GET"
        } else {
            "POST"
        };
        let (status, body) = send(&app, method, &format!("{uri}{BAD_HUB}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body.contains("not a valid task hub name"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn access_key_in_query_or_header() {
    let app = app(Config {
        access_key: Some("s3cret".into()),
        ..Config::default()
    });
    let uri = format!("/runtime/webhooks/durabletask/instances?{BAD_HUB}");
    let (status, body) = send(&app, "GET", &uri).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"Message\":\"Unauthorized\""));
    assert_eq!(send(&app, "GET", &format!("{uri}&code=wrong")).await.0, 401);
    assert_eq!(
        send(&app, "GET", &format!("{uri}&CODE=s3cret")).await.0,
        400
    );
    let req = Request::get(&uri)
        .header("x-functions-key", "s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send_req(&app, req).await.0, 400);
}
