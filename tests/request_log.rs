//! What the request log records, read from the log itself. A test binary of its own: the log
//! subscriber is process-wide, and tests of other binaries running beside it in one process
//! would make what it sees depend on them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use taskhub::config::Config;
use taskhub::engine::Registry;
use taskhub::http::{router, AppState};
use taskhub::runtime::Runtime;
use taskhub::storage::Storage;
use tower::ServiceExt;

/// A buffer the request log writes into.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Request logs recorded `?code=KEY`, and clients that follow generated URLs put the key there.
#[tokio::test]
async fn the_request_log_never_holds_the_key_and_cuts_long_uris() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let key = "the-access-key-0123456789";
    let config = Config {
        access_key: Some(key.into()),
        ..Config::default()
    };
    let storage = Storage::with_env("AzureWebJobsStorage", Path::new(":memory:"), |_| None);
    let runtime = Arc::new(Runtime::with_storage(&config, Registry::new(), storage));
    let app = router(AppState::new(runtime, &config));
    let send = |uri: String| {
        let app = app.clone();
        async move {
            let req = Request::get(uri).body(Body::empty()).unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    // A hub name that is refused before storage is touched.
    let status = send(format!(
        "/runtime/webhooks/durabletask/instances?taskHub=no-dashes&code={key}"
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    send(format!(
        "/api/orchestrators/{}?code={key}",
        "a".repeat(5000)
    ))
    .await;

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!log.contains(key), "the key reached the log:\n{log}");
    assert!(log.contains("code=REDACTED"), "{log}");
    assert!(log.contains("…(cut)"), "{log}");
    assert!(
        !log.contains(&"a".repeat(600)),
        "a long URI was logged whole"
    );
    assert!(log.contains("status=400"), "one line per response:\n{log}");
}
