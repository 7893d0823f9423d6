//! `POST {prefix}/instances/{instanceId}/{operation}` (spec §9): raise event, terminate,
//! suspend, resume, rewind, restart. Each answers 202 with no body once the request is queued.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Body, Ctx, PathParams};
use super::start::check_status_response;
use super::wait;
use crate::api::error::ErrorBody;
use crate::client::ClientError;

#[derive(Deserialize)]
pub struct EventPath {
    #[serde(rename = "instanceId")]
    instance_id: String,
    #[serde(rename = "eventName")]
    event_name: String,
}

pub async fn raise_event(
    ctx: Ctx,
    PathParams(path): PathParams<EventPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return Err(ApiError::BadRequest(ErrorBody::new(
            "Only application/json request content is supported",
            "Send the event data as JSON with 'Content-Type: application/json'.",
        )));
    }
    let data = body.json_or_null()?;
    ctx.client
        .raise_event(&path.instance_id, &path.event_name, data)
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn terminate(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    ctx.client.terminate(&id, reason(&ctx)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn suspend(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    ctx.client.suspend(&id, reason(&ctx)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn resume(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    ctx.client.resume(&id, reason(&ctx)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn rewind(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    ctx.client.rewind(&id, reason(&ctx)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `restartWithNewInstanceId` (default true) picks a new id; the wait variant applies as on
/// start. An unknown id is a 400 here, not a 404 (the real API's answer).
pub async fn restart(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    let new_id = ctx.query.bool_or("restartWithNewInstanceId", true);
    let wait = wait::builtin_wait(&ctx.query)?;
    let started = ctx.client.restart(&id, new_id).await.map_err(|e| match e {
        ClientError::NotFound(_) => ApiError::BadRequest(ErrorBody::new(
            "InstanceId does not match a valid orchestration instance.",
            format!("No instance with ID '{id}' was found."),
        )),
        other => other.into(),
    })?;
    match wait {
        Some(w) => wait::wait_and_respond(&ctx, started.as_str(), w).await,
        None => Ok(check_status_response(&ctx, started.as_str())),
    }
}

/// The optional `reason` query parameter.
fn reason(ctx: &Ctx) -> Option<String> {
    ctx.query.get("reason").filter(|r| !r.is_empty())
}
