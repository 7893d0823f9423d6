//! Requests from web pages. A browser sends whatever a page asks it to: a form on any site can
//! POST to `http://127.0.0.1:7071/…`, and a site whose DNS name is re-pointed at 127.0.0.1 (DNS
//! rebinding) can even read the answers. Neither sends the access key, so a server with a key is
//! safe from both; a keyless one on loopback relies on these two checks:
//! - a state-changing request (POST, PUT, PATCH, DELETE) whose `Origin` is another site is
//!   refused (any server: a non-browser client sends no `Origin`, a same-site page sends its own);
//! - a keyless server on a loopback address answers only to loopback host names (`localhost`,
//!   `127.0.0.1`, `[::1]`), unless it sits behind a proxy (`use_forwarded_host`).

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

pub async fn same_site_only(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A request without a Host header (HTTP/1.0, or built in process) was not sent by a
    // browser, which always names the host it thinks it is talking to.
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("?"));
    if state.shared.loopback_names_only && host.is_some_and(|h| !is_loopback_name(h)) {
        let host = host.unwrap_or_default();
        return ApiError::Forbidden(format!(
            "This server answers only to loopback host names (localhost, 127.0.0.1, [::1]), not '{host}': it has no access key. Set one to serve other names."
        ))
        .into_response();
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            let host = host.unwrap_or_default();
            if !same_site(origin, host) {
                return ApiError::Forbidden(format!(
                    "A request from the web page at '{origin}' may not change instances on '{host}'."
                ))
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// `Origin` is `scheme://host[:port]` (or `null`); `Host` is `host[:port]`.
fn same_site(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

fn is_loopback_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for ok in [
            "localhost",
            "localhost:7071",
            "127.0.0.1:7071",
            "127.1.2.3",
            "[::1]:7071",
            "LOCALHOST",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:7071",
            "10.0.0.1:7071",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_same_site_counts() {
        assert!(same_site("http://127.0.0.1:7071", "127.0.0.1:7071"));
        assert!(same_site("http://LOCALHOST:7071", "localhost:7071"));
        assert!(!same_site("https://evil.example", "127.0.0.1:7071"));
        assert!(!same_site("null", "127.0.0.1:7071"));
        assert!(!same_site("http://127.0.0.1:7072", "127.0.0.1:7071"));
    }
}
