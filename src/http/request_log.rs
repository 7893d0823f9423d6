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
const CUT: &str = "…(cut)";

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
        uri = %LoggableUri(req.uri()),
        version = ?req.version(),
    )
}

/// The URI as the log may show it. Written straight into the log line (no string is built per
/// request: this runs for every request the server answers).
pub struct LoggableUri<'a>(pub &'a Uri);

impl std::fmt::Display for LoggableUri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Capped {
            f,
            left: MAX_LOGGED_URI,
            cut: false,
        };
        out.put(self.0.path())?;
        if let Some(query) = self.0.query() {
            out.put("?")?;
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.put("&")?;
                }
                let key = pair.split('=').next().unwrap_or_default();
                if SECRET_QUERY_KEYS
                    .iter()
                    .any(|s| key.eq_ignore_ascii_case(s))
                {
                    out.put(key)?;
                    out.put("=")?;
                    out.put(REDACTED)?;
                } else {
                    out.put(pair)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes at most `left` characters, then (once) a mark that the rest was cut.
struct Capped<'a, 'b> {
    f: &'a mut std::fmt::Formatter<'b>,
    left: usize,
    cut: bool,
}

impl Capped<'_, '_> {
    fn put(&mut self, s: &str) -> std::fmt::Result {
        if self.cut || s.is_empty() {
            return Ok(());
        }
        match s.char_indices().nth(self.left) {
            None => {
                self.left -= s.chars().count();
                self.f.write_str(s)
            }
            Some((at, _)) => {
                self.cut = true;
                self.f.write_str(&s[..at])?;
                self.f.write_str(CUT)
            }
        }
    }
}

/// `uri` as the log shows it (tests, and anyone who wants it as a string).
pub fn loggable_uri(uri: &Uri) -> String {
    LoggableUri(uri).to_string()
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
    fn a_uri_of_exactly_the_limit_is_whole_and_one_more_is_cut() {
        let path = |n: usize| format!("/{}", "a".repeat(n - 1));
        let exact: Uri = path(MAX_LOGGED_URI).parse().unwrap();
        assert_eq!(loggable_uri(&exact), path(MAX_LOGGED_URI));
        let over: Uri = format!("{}?x=1", path(MAX_LOGGED_URI)).parse().unwrap();
        assert_eq!(
            loggable_uri(&over),
            format!("{}{CUT}", path(MAX_LOGGED_URI))
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
