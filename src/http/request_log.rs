//! The request log: one span per request and one line per response, at INFO, so `taskhub serve`
//! logs requests by default.
//!
//! What a URI may carry must not reach the log: the access key (`code=KEY`, and the clients
//! that follow generated URLs put there whatever those carried) and instance links are
//! credentials. The logged URI has the value of every [`SECRET_QUERY_KEYS`] parameter replaced,
//! and is cut at [`MAX_LOGGED_URI`] characters so that a client cannot write megabytes into the
//! log with one request line. A server error is logged once, where it is made
//! ([`super::error`], with its request id), not again here: a deliberate 500 (a Failed instance
//! in the v1 dialect) is an answer, not a failure.

use axum::http::{Request, Uri};
use tower_http::trace::{DefaultOnResponse, HttpMakeClassifier, TraceLayer};
use tracing::{Level, Span};

/// Query parameters whose values are credentials (compared case-insensitively).
pub const SECRET_QUERY_KEYS: &[&str] = &["code"];
/// The longest URI the log records, in characters.
pub const MAX_LOGGED_URI: usize = 512;
const REDACTED: &str = "REDACTED";

type MakeSpan = fn(&Request<axum::body::Body>) -> Span;

/// The layer `http::router` puts around everything.
pub fn layer() -> TraceLayer<HttpMakeClassifier, MakeSpan, (), DefaultOnResponse, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(request_span as MakeSpan)
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn request_span(req: &Request<axum::body::Body>) -> Span {
    tracing::info_span!(
        "request",
        method = %req.method(),
        uri = %loggable_uri(req.uri()),
        version = ?req.version(),
    )
}

/// The URI as the log may show it.
pub fn loggable_uri(uri: &Uri) -> String {
    let mut out = uri.path().to_string();
    if let Some(query) = uri.query() {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                let secret = SECRET_QUERY_KEYS
                    .iter()
                    .any(|s| key.eq_ignore_ascii_case(s));
                if secret {
                    format!("{key}={REDACTED}")
                } else {
                    pair.to_string()
                }
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if out.chars().count() > MAX_LOGGED_URI {
        let cut: String = out.chars().take(MAX_LOGGED_URI).collect();
        return format!("{cut}…(cut)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_redacted() {
        let uri: Uri =
            "/runtime/webhooks/durabletask/instances/x?taskHub=H&CODE=s3cret&code=l1.0.abc&x=code"
                .parse()
                .unwrap();
        let logged = loggable_uri(&uri);
        assert_eq!(
            logged,
            "/runtime/webhooks/durabletask/instances/x?taskHub=H&CODE=REDACTED&code=REDACTED&x=code"
        );
    }

    #[test]
    fn long_uris_are_cut() {
        let uri: Uri = format!("/api/orchestrators/{}", "a".repeat(10_000))
            .parse()
            .unwrap();
        let logged = loggable_uri(&uri);
        assert_eq!(
            logged.chars().count(),
            MAX_LOGGED_URI + "…(cut)".chars().count()
        );
        assert!(logged.ends_with("…(cut)"));
    }
}
