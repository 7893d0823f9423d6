//! Extractors whose rejections are our JSON error bodies, and [`Ctx`]: what every management
//! handler needs from a request (its client, its query, its URL builder).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::urls::{origin, UrlBuilder};
use super::{AppState, Dialect, Shared};
use crate::api::error::ErrorBody;
use crate::api::query::QueryString;
use crate::client::Client;
use std::sync::Arc;

/// The parsed query string (case-insensitive names, spec §2.2). Never rejects.
pub struct Query(pub QueryString);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Self(QueryString::parse(parts.uri.query())))
    }
}

/// Path parameters, percent-decoded; a bad encoding is a 400 with our body.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| ApiError::bad_request(format!("The request path is not valid: {e}")))
    }
}

/// The raw request body, within the configured size limit (larger → 413).
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        let timeout = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(std::time::Duration::from_secs(60), |t| t.0);
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await;
        let Ok(read) = read else {
            tracing::info!(?timeout, "a request body did not arrive in time");
            return Err(ApiError::RequestTimeout(timeout));
        };
        read.map(Self).map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
            _ => ApiError::bad_request(format!("The request body cannot be read: {e}")),
        })
    }
}

impl Body {
    /// The body as JSON: empty (or whitespace) means `null`, as Durable Functions treats an
    /// absent body. Any content type is accepted (clients send none, or octet-stream).
    pub fn json_or_null(&self) -> Result<Value, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.0).map_err(|e| {
            ApiError::BadRequest(ErrorBody::new(
                "Invalid JSON content",
                format!("The request body is not valid JSON: {e}"),
            ))
        })
    }
}

/// The configured body limit, recorded on each request so that a 413 can say what it is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// How long a request body may take to arrive, recorded on each request.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub std::time::Duration);

/// A management request's context: the hub's client (selected by `taskHub` and `connection`),
/// the query, and where this request's generated URLs point.
pub struct Ctx {
    pub client: Client,
    pub query: QueryString,
    pub dialect: Dialect,
    pub urls: UrlBuilder,
    /// The URL exactly as requested (the `Location` of a 202 status answer).
    pub request_url: String,
    pub shared: Arc<Shared>,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let query = QueryString::parse(parts.uri.query());
        let hub = match query.first_non_blank("taskHub") {
            Some(h) => {
                validate_hub_name(h)?;
                h.to_string()
            }
            None => state.shared.runtime.default_hub().to_string(),
        };
        let connection = query.first_non_blank("connection").map(str::to_string);
        let client = state
            .shared
            .runtime
            .request_client(connection.as_deref(), Some(&hub))
            .await?;
        let origin = origin(&parts.headers, &parts.uri, state.shared.use_forwarded_host);
        let requested = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let request_url = format!(
            "{origin}{}",
            requested.path_and_query().map_or("/", |p| p.as_str())
        );
        let urls = UrlBuilder::new(
            &origin,
            state.dialect,
            &hub,
            connection
                .as_deref()
                .unwrap_or(&state.shared.default_connection),
            state.shared.keys.clone(),
        );
        Ok(Self {
            client,
            query,
            dialect: state.dialect,
            urls,
            request_url,
            shared: state.shared.clone(),
        })
    }
}

/// Durable Functions' task hub naming rule (it must be a valid Azure Storage table prefix):
/// 3–45 letters and digits, starting with a letter. Checked here so that a typo cannot quietly
/// create a new, empty hub with an executor of its own.
pub fn validate_hub_name(hub: &str) -> Result<(), ApiError> {
    let ok = (3..=45).contains(&hub.len())
        && hub.starts_with(|c: char| c.is_ascii_alphabetic())
        && hub.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "'{hub}' is not a valid task hub name: use 3 to 45 letters and digits, starting with a letter."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        assert!(validate_hub_name("DurableFunctionsHub").is_ok());
        assert!(validate_hub_name("TestHubName").is_ok());
        for bad in ["", "ab", "1abc", "my-hub", "my hub", &"a".repeat(46)] {
            assert!(validate_hub_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_body_is_null_and_bad_json_is_400() {
        assert_eq!(
            Body(Bytes::from_static(b"")).json_or_null().unwrap(),
            Value::Null
        );
        assert_eq!(
            Body(Bytes::from_static(b" \n")).json_or_null().unwrap(),
            Value::Null
        );
        assert_eq!(
            Body(Bytes::from_static(b"\"\"")).json_or_null().unwrap(),
            Value::String(String::new())
        );
        assert!(Body(Bytes::from_static(b"{nope")).json_or_null().is_err());
    }
}
