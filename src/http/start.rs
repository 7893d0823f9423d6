//! `POST {prefix}/orchestrators/{functionName}[/{instanceId}]` (spec §5): start an
//! orchestration, and with `timeout` wait for it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::error::{json, ApiError};
use super::extract::{Body, Ctx, PathParams};
use super::wait;
use crate::model::InstanceId;

#[derive(Deserialize)]
pub struct StartPath {
    #[serde(rename = "functionName")]
    pub function_name: String,
    #[serde(rename = "instanceId")]
    pub instance_id: Option<String>,
}

pub async fn start(
    ctx: Ctx,
    PathParams(path): PathParams<StartPath>,
    body: Body,
) -> Result<Response, ApiError> {
    // Everything the caller sent is checked before anything is started.
    let wait = wait::builtin_wait(&ctx.query)?;
    let id = start_instance(&ctx, path, &body).await?;
    match wait {
        Some(w) => wait::wait_and_respond(&ctx, id.as_str(), w).await,
        None => Ok(check_status_response(&ctx, id.as_str())),
    }
}

/// Parses the input and the id, then starts. Shared with the user-level routes.
pub async fn start_instance(
    ctx: &Ctx,
    path: StartPath,
    body: &Body,
) -> Result<InstanceId, ApiError> {
    let input = body.json_or_null()?;
    let id = path
        .instance_id
        .map(InstanceId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("The instance ID is not valid: {e}.")))?;
    Ok(ctx.client.start(&path.function_name, id, input).await?)
}

/// 202 with the check-status payload, `Location` = its status URL, `Retry-After: 10`.
pub fn check_status_response(ctx: &Ctx, instance_id: &str) -> Response {
    let body = ctx.urls.check_status_body(instance_id);
    let mut response = json(StatusCode::ACCEPTED, &body);
    let headers = response.headers_mut();
    if let Some(location) = body["statusQueryGetUri"]
        .as_str()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}
