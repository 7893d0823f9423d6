//! Waiting for completion (spec §8): the built-in start's `timeout`/`pollingInterval` variant,
//! and the samples' user-level routes `POST [/api]/orchestrators/{name}[/{instanceId}]` and
//! `POST [/api]/orchestrators/{name}/wait?timeout=&retryInterval=`.
//!
//! Waiting is event-driven ([`Client::wait_for_completion`](crate::client::Client) wakes on the
//! store's change notification), so a completion answers at once; the interval only matters for
//! backends that cannot push changes.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use super::error::{json, ApiError};
use super::extract::{Body, Ctx, PathParams};
use super::instances::status_response;
use super::start::{check_status_response, start_instance, StartPath};
use crate::api::parse_stored_json;
use crate::api::query::QueryString;
use crate::model::RuntimeStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitParams {
    pub timeout: Duration,
    pub interval: Duration,
}

impl WaitParams {
    /// The interval may equal the timeout but not exceed it (the C# API's rule).
    fn new(timeout: Duration, interval: Duration) -> Result<Self, ApiError> {
        if interval > timeout {
            return Err(ApiError::bad_request(format!(
                "Total timeout {} should be bigger than retry timeout {}",
                timeout.as_secs_f64(),
                interval.as_secs_f64()
            )));
        }
        Ok(Self { timeout, interval })
    }
}

/// The built-in API waits when `timeout` is given. Durable Functions also requires
/// `pollingInterval`, except with providers that wait without polling, as ours do.
pub fn builtin_wait(q: &QueryString) -> Result<Option<WaitParams>, ApiError> {
    let interval = q.seconds("pollingInterval")?;
    let Some(timeout) = q.seconds("timeout")? else {
        return Ok(None);
    };
    let interval = interval.unwrap_or(timeout.min(Duration::from_secs(1)));
    WaitParams::new(timeout, interval).map(Some)
}

/// Waits, then answers: Completed → 200 with the raw output; Failed, Terminated or Canceled →
/// the status response; anything else (still running, or the server is shutting down) → 202
/// with the check-status payload.
pub async fn wait_and_respond(ctx: &Ctx, id: &str, wait: WaitParams) -> Result<Response, ApiError> {
    let mut shutting_down = ctx.shared.shutting_down.subscribe();
    let last = tokio::select! {
        r = ctx.client.wait_for_completion(id, wait.timeout, wait.interval) => r?,
        _ = async {
            if shutting_down.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => None,
    };
    match last {
        Some(r) if r.runtime_status == RuntimeStatus::Completed => Ok(json(
            StatusCode::OK,
            &parse_stored_json(r.output.as_deref()),
        )),
        Some(r) if r.runtime_status.is_terminal() => status_response(ctx, r).await,
        _ => Ok(check_status_response(ctx, id)),
    }
}

/// `POST [/api]/orchestrators/{functionName}[/{instanceId}]`: start, answer 202.
pub async fn user_start(
    ctx: Ctx,
    PathParams(path): PathParams<StartPath>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = start_instance(&ctx, path, &body).await?;
    Ok(check_status_response(&ctx, id.as_str()))
}

/// `POST [/api]/orchestrators/{functionName}/wait?timeout=S&retryInterval=S`: the sample's
/// defaults are a 30 s timeout and a 1 s retry interval.
pub async fn user_start_and_wait(
    ctx: Ctx,
    PathParams(path): PathParams<StartPath>,
    body: Body,
) -> Result<Response, ApiError> {
    let timeout = ctx
        .query
        .seconds("timeout")?
        .unwrap_or(Duration::from_secs(30));
    let interval = ctx
        .query
        .seconds("retryInterval")?
        .unwrap_or(Duration::from_secs(1).min(timeout));
    let wait = WaitParams::new(timeout, interval)?;
    let id = start_instance(&ctx, path, &body).await?;
    wait_and_respond(&ctx, id.as_str(), wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> QueryString {
        QueryString::parse(Some(s))
    }

    #[test]
    fn builtin_wait_needs_a_timeout_and_a_sane_interval() {
        assert_eq!(builtin_wait(&q("")).unwrap(), None);
        assert_eq!(builtin_wait(&q("pollingInterval=1")).unwrap(), None);
        assert_eq!(
            builtin_wait(&q("timeout=2&pollingInterval=0.5")).unwrap(),
            Some(WaitParams {
                timeout: Duration::from_secs(2),
                interval: Duration::from_millis(500)
            })
        );
        assert_eq!(
            builtin_wait(&q("timeout=0.2")).unwrap().unwrap().interval,
            Duration::from_millis(200)
        );
        assert!(builtin_wait(&q("timeout=1&pollingInterval=2")).is_err());
        assert!(builtin_wait(&q("timeout=1&pollingInterval=1")).is_ok());
        assert!(builtin_wait(&q("timeout=abc")).is_err());
    }
}
