//! What a client can hold of the server: each limit of `http::listener`, against the real
//! server on a loopback port, with raw sockets where a well-behaved client would not do it.
//! Bounds are generous (a loaded machine is slow); what they catch is a limit that never acts.

mod http_support;

use std::time::{Duration, Instant};

use http_support::spawn_with;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: a limit of 1 s must act well before this.
const ACTS_WITHIN: Duration = Duration::from_secs(15);

fn addr(origin: &str) -> String {
    origin.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection; what it sent on the way.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(ACTS_WITHIN, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {ACTS_WITHIN:?}; it sent: {}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let app = spawn_with(|c| c.header_read_timeout_secs = 1).await;
    let mut half = TcpStream::connect(addr(&app.origin)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    read_until_closed(&mut half).await;

    let mut idle = TcpStream::connect(addr(&app.origin)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408() {
    let app = spawn_with(|c| c.body_timeout_secs = 1).await;
    let mut slow = TcpStream::connect(addr(&app.origin)).await.unwrap();
    slow.write_all(
        b"POST /runtime/webhooks/durabletask/orchestrators/HelloSequence HTTP/1.1\r\n\
          Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n\"ab",
    )
    .await
    .unwrap();
    let answered = read_until_closed(&mut slow).await;
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(
        answered.contains("did not arrive within 1 seconds"),
        "{answered}"
    );
    // Nothing was started.
    let r = app.get(&app.v2("/instances")).await;
    assert_eq!(r.text().await.unwrap(), "[]");
}

#[tokio::test]
async fn beyond_the_connection_cap_clients_wait_until_one_closes() {
    let app = spawn_with(|c| {
        c.max_connections = 2;
        c.header_read_timeout_secs = 120;
    })
    .await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&app.origin)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(s);
    }
    let healthz = app.url("/healthz");
    let http = app.http.clone();
    let waiting = tokio::spawn(async move { http.get(healthz).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two held the cap of 2"
    );
    drop(holders);
    let status = tokio::time::timeout(ACTS_WITHIN, waiting)
        .await
        .expect("served once a holder closed")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_ends_within_its_deadline_with_a_half_sent_request_open() {
    let app = spawn_with(|c| {
        c.shutdown_deadline_secs = 1;
        c.header_read_timeout_secs = 120;
    })
    .await;
    let mut half = TcpStream::connect(addr(&app.origin)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // Make sure the connection was accepted before the stop signal.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    tokio::time::timeout(ACTS_WITHIN, app.stop())
        .await
        .expect("the server stopped within its deadline");
    assert!(began.elapsed() < ACTS_WITHIN);
}
