//! The one error type of the HTTP layer and its mapping to status codes. A caller's mistake is a
//! 4xx with a JSON body that says what was wrong; a 500 means the server itself failed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::error::ErrorBody;
use crate::api::query::QueryError;
use crate::client::ClientError;
use crate::storage::StorageError;

/// Durable Functions' general sentence for an `ArgumentException`; `ExceptionMessage` then says
/// which argument and why.
pub const BAD_ARGUMENTS: &str = "One or more of the arguments submitted is incorrect";

#[derive(Debug)]
pub enum ApiError {
    /// 404 with no body (unknown instance, or an unknown route in the v2 dialect).
    NotFound,
    /// 404 with a body that says what is missing (a task hub, rather than an instance).
    NotFoundBecause(ErrorBody),
    /// 410 with no body: the instance is terminal and cannot take the operation.
    Gone,
    BadRequest(ErrorBody),
    /// 400 with a bare JSON string body (the real API's shape for bulk purge).
    BadRequestString(String),
    /// The v1 dialect's answer to an unknown route.
    NoSuchApi,
    Unauthorized,
    /// 403: a request a browser was made to send ([`super::site`]); says why.
    Forbidden(String),
    Conflict(ErrorBody),
    PreconditionFailed(ErrorBody),
    PayloadTooLarge {
        limit: usize,
    },
    /// 408: the request body did not arrive within the body timeout.
    RequestTimeout(std::time::Duration),
    /// A failure of the server or its storage, never of the caller.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(exception_message: impl Into<String>) -> Self {
        Self::BadRequest(ErrorBody::new(BAD_ARGUMENTS, exception_message))
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        let text = e.to_string();
        match e {
            ClientError::InvalidInput(_) | ClientError::UnknownOrchestrator(_) => {
                Self::bad_request(text)
            }
            ClientError::NotFound(_) => Self::NotFound,
            ClientError::Gone { .. } => Self::Gone,
            ClientError::AlreadyExists { .. } => Self::Conflict(ErrorBody::new(
                "An orchestration with the specified instance ID already exists and is not in a terminal state.",
                text,
            )),
            ClientError::PreconditionFailed(_) => Self::PreconditionFailed(ErrorBody::new(
                "The instance is not in a state that allows this operation.",
                text,
            )),
            ClientError::Store(_) => Self::Internal(text),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            // The caller picked the connection (query `connection=`), so a bad pick is theirs.
            StorageError::UnknownConnection(_)
            | StorageError::NotOffered(_)
            | StorageError::InvalidConnectionString { .. }
            | StorageError::AzureNotSupported => Self::BadRequest(ErrorBody::new(
                "The connection named in the request cannot be used.",
                e.to_string(),
            )),
            StorageError::NoSuchHub(_) => Self::NotFoundBecause(ErrorBody::new(
                "The task hub named in the request does not exist.",
                e.to_string(),
            )),
            // The server's own settings or storage: never the caller's mistake.
            StorageError::Config(_) | StorageError::Open(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        Self::bad_request(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND.into_response(),
            Self::NotFoundBecause(body) => json(StatusCode::NOT_FOUND, &body),
            Self::Gone => StatusCode::GONE.into_response(),
            Self::BadRequest(body) => json(StatusCode::BAD_REQUEST, &body),
            Self::BadRequestString(s) => json(StatusCode::BAD_REQUEST, &s),
            Self::NoSuchApi => json(StatusCode::BAD_REQUEST, &ErrorBody::message("No such API")),
            Self::Unauthorized => json(
                StatusCode::UNAUTHORIZED,
                &ErrorBody::new(
                    "Unauthorized",
                    "This server requires an access key: pass it as the 'code' query parameter or the 'x-functions-key' header.",
                ),
            ),
            Self::Forbidden(why) => json(
                StatusCode::FORBIDDEN,
                &ErrorBody::new("Forbidden", why),
            ),
            Self::Conflict(body) => json(StatusCode::CONFLICT, &body),
            Self::RequestTimeout(after) => json(
                StatusCode::REQUEST_TIMEOUT,
                &ErrorBody::new(
                    "Request Timeout",
                    format!(
                        "The request body did not arrive within {} seconds.",
                        after.as_secs()
                    ),
                ),
            ),
            Self::PreconditionFailed(body) => json(StatusCode::PRECONDITION_FAILED, &body),
            Self::PayloadTooLarge { limit } => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &ErrorBody::new(
                    "The request body is too large.",
                    format!("Request bodies may be at most {limit} bytes."),
                ),
            ),
            Self::Internal(detail) => {
                // The detail (file paths, storage error text) is for the operator's log only;
                // the caller gets an id to quote.
                let request_id = crate::model::new_guid_n();
                tracing::error!(%request_id, %detail, "request failed");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &ErrorBody::new(
                        "Something went wrong while processing your request",
                        format!("The server failed; its log has the details under request id {request_id}."),
                    ),
                )
            }
        }
    }
}

/// A compact JSON response with the real API's content type.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("cannot serialize the response: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RuntimeStatus;

    #[test]
    fn client_errors_map_to_codes() {
        let code = |e: ClientError| ApiError::from(e).into_response().status();
        assert_eq!(code(ClientError::InvalidInput("x".into())), 400);
        assert_eq!(code(ClientError::UnknownOrchestrator("x".into())), 400);
        assert_eq!(code(ClientError::NotFound("x".into())), 404);
        let gone = ClientError::Gone {
            instance_id: "x".into(),
            status: RuntimeStatus::Completed,
        };
        assert_eq!(code(gone), 410);
        let exists = ClientError::AlreadyExists {
            instance_id: "x".into(),
            status: RuntimeStatus::Running,
        };
        assert_eq!(code(exists), 409);
        assert_eq!(code(ClientError::PreconditionFailed("x".into())), 412);
    }

    #[tokio::test]
    async fn a_server_failure_answers_without_its_detail() {
        let r = ApiError::Internal("disk I/O error at /var/lib/secret/taskhub.db".into())
            .into_response();
        assert_eq!(r.status(), 500);
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("/var/lib"), "{text}");
        assert!(text.contains("request id"), "{text}");
    }

    #[test]
    fn unknown_connection_is_the_callers_mistake() {
        let r = ApiError::from(StorageError::UnknownConnection("Nope".into())).into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }
}
