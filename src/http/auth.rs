//! The access check. When the server has an access key, every request must carry a credential,
//! as the `code` query parameter (how the generated URLs carry it) or the `x-functions-key`
//! header (how the Functions host accepts it), and may do only what that credential allows
//! ([`keys`](super::keys)): a full key everything, a read-only key `GET`s, an instance link that
//! instance's routes. No credential (or a wrong one) is a 401; a credential that does not reach
//! this far is a 403 saying why.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::keys::{Grant, Keys};
use super::normalize::{canonical_path, V1_PREFIX, V2_PREFIX};
use super::AppState;
use crate::api::query::QueryString;

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(keys) = state.shared.keys.as_deref() else {
        return next.run(req).await;
    };
    // Probes carry no key, and answer nothing a key protects.
    if is_probe(req.uri().path()) {
        return next.run(req).await;
    }
    match check(keys, &state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(keys: &Keys, state: &AppState, req: &Request) -> Result<(), ApiError> {
    let query = QueryString::parse(req.uri().query());
    let presented: Vec<&str> = req
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .chain(query.values("code"))
        .collect();
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut refusal = None;
    for credential in &presented {
        match keys.grant(credential) {
            Some(Grant::Everything) => return Ok(()),
            Some(Grant::ReadOnly) if reads => return Ok(()),
            Some(Grant::ReadOnly) => {
                refusal = Some("This key may only read (GET); this request changes state.")
            }
            None => {
                let target = instance_of(req.uri().path());
                let allowed = target.as_deref().is_some_and(|id| {
                    let hub = query
                        .first_non_blank("taskHub")
                        .unwrap_or(state.shared.runtime.default_hub());
                    let connection = query
                        .first_non_blank("connection")
                        .unwrap_or(&state.shared.default_connection);
                    keys.link_allows(credential, hub, connection, id)
                });
                if allowed {
                    return Ok(());
                }
                if credential.starts_with("l1.") && refusal.is_none() {
                    refusal = Some(
                        "This link's code opens only the management routes of the instance it was made for (in its task hub and connection), until it expires.",
                    );
                }
            }
        }
    }
    Err(match refusal {
        Some(why) => ApiError::Forbidden(why.to_string()),
        None => ApiError::Unauthorized,
    })
}

fn is_probe(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == super::health::HEALTHZ || path == super::health::READYZ
}

/// The instance id a management route is about (`{prefix}/instances/{id}[/…]`), decoded.
fn instance_of(path: &str) -> Option<String> {
    let canonical = canonical_path(path).unwrap_or_else(|| path.to_string());
    let rest = [V2_PREFIX, V1_PREFIX]
        .iter()
        .find_map(|p| canonical.strip_prefix(p))?;
    let id = rest.strip_prefix("/instances/")?.split('/').next()?;
    let id = percent_decode_str(id).decode_utf8().ok()?;
    (!id.is_empty()).then(|| id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_routes_name_their_instance() {
        assert_eq!(
            instance_of("/runtime/webhooks/durabletask/instances/a%20b/terminate").as_deref(),
            Some("a b")
        );
        assert_eq!(
            instance_of("/Admin/Extensions/DurableTaskExtension/Instances/x/").as_deref(),
            Some("x")
        );
        assert_eq!(instance_of("/runtime/webhooks/durabletask/instances"), None);
        assert_eq!(
            instance_of("/runtime/webhooks/durabletask/orchestrators/x"),
            None
        );
        assert_eq!(instance_of("/api/orchestrators/x"), None);
    }
}
