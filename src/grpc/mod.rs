//! The Durable Task gRPC endpoint: applications written with Microsoft's Durable Task SDKs
//! (Python `durabletask`, JS `@microsoft/durabletask-js`, .NET, Java, Go) connect here as workers
//! and clients, over plain HTTP/2 (h2c) like the SDKs' sidecar.
//!
//! - [`proto`]: types and service generated from `proto/durabletask_sidecar.proto`.
//! - `convert`: taskhub's history, statuses and failures ↔ the protocol's, and a worker's actions
//!   → the engine's decision (round-trip tested).
//! - `service`: one method per RPC, over [`Client`](crate::client::Client) for management and
//!   [`RemoteWork`](crate::engine::remote::RemoteWork) for work items.
//! - `status`: every failure as a `tonic::Status`, in one place.
//!
//! It serves the configured task hub through the runtime, so both stores work alike and the HTTP
//! API and CLI see the very same instances. Durable entities are not supported: their RPCs answer
//! UNIMPLEMENTED with a message that says so. When the server has an access key, every call must
//! carry it as `x-functions-key` metadata (or `authorization: Bearer KEY`), as HTTP requests
//! carry it in a header: the SDKs' workers and clients take such metadata as an option.

mod convert;
mod service;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::http::keys::Keys;
use crate::runtime::Runtime;
use proto::task_hub_sidecar_service_server::TaskHubSidecarServiceServer;

/// Types and service generated from `proto/durabletask_sidecar.proto` (empty proto package).
#[allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    missing_debug_implementations
)]
pub mod proto {
    tonic::include_proto!("_");
}

/// What RPCs the service does not declare answer: the entity RPCs, and any RPC a newer SDK adds.
const UNSUPPORTED: &str = "taskhub does not implement this Durable Task RPC: durable entities \
    (SignalEntity, GetEntity, QueryEntities, CleanEntityStorage, entity work items) are not \
    supported; orchestrations and activities are";

/// Serves the Durable Task protocol on `listener` for `runtime`'s configured hub until
/// `shutdown` completes. Open worker streams and waits end at once when it does.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    keys: Option<Arc<Keys>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stopping_tx, stopping) = watch::channel(false);
    let sidecar = service::Sidecar::new(runtime, stopping);
    let service = TaskHubSidecarServiceServer::new(sidecar)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let routes = Routes::new(tonic::service::interceptor::InterceptedService::new(
        service,
        move |request: tonic::Request<()>| check_key(keys.as_deref(), request),
    ))
    .into_axum_router()
    .fallback(|| async {
        tonic::Status::unimplemented(UNSUPPORTED).into_http::<axum::body::Body>()
    });
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(explain_unimplemented))
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            stopping_tx.send_replace(true);
        })
        .await
}

/// Lets a call through when the server has no key, or when the call carries a full key (a
/// worker changes state; read-only keys and instance links are for HTTP).
fn check_key(
    keys: Option<&Keys>,
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let Some(keys) = keys else {
        return Ok(request);
    };
    let metadata = request.metadata();
    let given = metadata
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            metadata
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match given {
        Some(given) if keys.is_full_key(given) => Ok(request),
        _ => Err(tonic::Status::unauthenticated(
            "this server requires its access key: send it as x-functions-key metadata \
             (or authorization: Bearer KEY)",
        )),
    }
}

/// Work items are small messages on a long-lived stream: without `TCP_NODELAY`, Nagle's
/// algorithm holds each one back until the previous one is acknowledged (up to the peer's 40 ms
/// delayed ACK), which cut SDK throughput by a factor of five. Keep-alive notices a worker whose
/// machine vanished without closing its connection.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(30)))
}

/// The generated service answers an RPC it does not declare with a bare UNIMPLEMENTED; say why.
fn explain_unimplemented<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let unimplemented = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"12");
    if unimplemented && !headers.contains_key("grpc-message") {
        headers.insert(
            "grpc-message",
            axum::http::HeaderValue::from_static(UNSUPPORTED_ENCODED),
        );
    }
    response
}

/// [`UNSUPPORTED`] as a `grpc-message` header: gRPC percent-encodes only `%` and bytes outside
/// printable ASCII, and it has none.
const UNSUPPORTED_ENCODED: &str = UNSUPPORTED;

/// Histories and payloads can be large; the SDKs themselves accept up to this much.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::check_key;

    fn call(metadata: &[(&'static str, &str)]) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        for (k, v) in metadata {
            r.metadata_mut().insert(*k, v.parse().unwrap());
        }
        r
    }

    #[test]
    fn a_keyed_server_lets_through_only_calls_that_carry_a_full_key() {
        let config = crate::config::Config {
            access_key: Some("0123456789abcdef".into()),
            access_keys: vec!["rotated-key-0123456".into()],
            read_only_keys: vec!["read-only-key-01234".into()],
            ..crate::config::Config::default()
        };
        let keys = crate::http::keys::Keys::from_config(&config).unwrap();
        let key = Some(&keys);
        assert!(check_key(key, call(&[("x-functions-key", "rotated-key-0123456")])).is_ok());
        assert!(check_key(None, call(&[])).is_ok());
        assert!(check_key(key, call(&[("x-functions-key", "0123456789abcdef")])).is_ok());
        assert!(check_key(key, call(&[("authorization", "Bearer 0123456789abcdef")])).is_ok());
        for wrong in [
            call(&[]),
            call(&[("x-functions-key", "0123456789abcdeF")]),
            call(&[("authorization", "0123456789abcdef")]),
            call(&[("x-functions-key", "read-only-key-01234")]),
        ] {
            let refused = check_key(key, wrong).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            assert!(!refused.message().contains("0123456789abcdef"));
        }
    }
}
