//! The optional access key. When one is configured, every request must carry it, as the `code`
//! query parameter (how the generated URLs carry it) or the `x-functions-key` header (how the
//! Functions host accepts it).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::api::query::QueryString;

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.shared.access_key.as_deref() else {
        return next.run(req).await;
    };
    let query = QueryString::parse(req.uri().query());
    let from_header = req
        .headers()
        .get("x-functions-key")
        .map(|v| v.as_bytes().to_vec());
    let presented = from_header.into_iter().chain(
        query
            .values("code")
            .map(|v| v.as_bytes().to_vec())
            .collect::<Vec<_>>(),
    );
    let mut ok = false;
    for candidate in presented {
        ok |= constant_time_eq(candidate.as_slice(), key.as_bytes());
    }
    if ok {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was
/// right. (The length is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
