//! `GET/DELETE {prefix}/instances[/{instanceId}]`: status (spec §6), list (§10), purge (§11).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;

use super::error::{json, ApiError};
use super::extract::{Ctx, PathParams};
use super::Dialect;
use crate::api::history::{render_history, HistoryOptions};
use crate::api::payload::PurgeHistoryResult;
use crate::api::query::QueryString;
use crate::api::status::StatusResponse;
use crate::model::RuntimeStatus;
use crate::store::{InstanceFilter, InstanceQuery, InstanceRecord};

const CONTINUATION_HEADER: &str = "x-ms-continuation-token";
const DEFAULT_PAGE: usize = 100;
/// Larger `top` values are served in pages of this size; a page may be shorter than `top`.
const MAX_PAGE: usize = 1000;
/// The end-of-list token an old Azure Storage bug handed out (base64 of `null`, spec §10).
const NULL_TOKEN: &str = "bnVsbA==";

/// A list page ends early (with a continuation token) once its instances pass about this many
/// bytes: a page of 100 large inputs would otherwise be tens of MB in one answer.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// `GET /instances/{instanceId}`.
pub async fn status(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    match ctx.client.try_status(&id).await? {
        Some(record) => status_response(&ctx, record).await,
        None => Err(ApiError::NotFound),
    }
}

/// The status object with the request's flags: 202 (with `Location` = the request URL and
/// `Retry-After: 5`) while the instance runs, 200 once terminal, 500 for Failed in the v1
/// dialect or with `returnInternalServerErrorOnFailure=true`.
pub async fn status_response(ctx: &Ctx, record: InstanceRecord) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let show_input = q.bool_or("showInput", true);
    let mut body = StatusResponse::from_record(&record, show_input);
    if q.bool_or("showHistory", false) && record.runtime_status != RuntimeStatus::Pending {
        let events = ctx.client.history(&record.instance_id).await?;
        if !events.is_empty() {
            let opts = HistoryOptions {
                show_input,
                show_history_output: q.bool_or("showHistoryOutput", false),
            };
            body = body.with_history(render_history(&events, opts));
        }
    }
    let fail_with_500 =
        ctx.dialect == Dialect::V1 || q.bool_or("returnInternalServerErrorOnFailure", false);
    let response = match record.runtime_status {
        RuntimeStatus::Running
        | RuntimeStatus::Pending
        | RuntimeStatus::ContinuedAsNew
        | RuntimeStatus::Suspended => {
            let mut r = json(StatusCode::ACCEPTED, &body);
            if let Ok(location) = HeaderValue::from_str(&ctx.request_url) {
                r.headers_mut().insert(header::LOCATION, location);
            }
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        RuntimeStatus::Failed if fail_with_500 => json(StatusCode::INTERNAL_SERVER_ERROR, &body),
        _ => json(StatusCode::OK, &body),
    };
    Ok(response)
}

/// `GET /instances`: one page, with `x-ms-continuation-token` always present (empty at the end).
pub async fn list(ctx: Ctx, headers: HeaderMap) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let show_input = q.bool_or("showInput", true);
    let filter = filter(q, q.time("createdTimeFrom")?, q.statuses("runtimeStatus")?)?;
    // Unparseable or non-positive `top` counts as absent, like the real API's lenient parse.
    let page_size = match q.int("top") {
        Some(n) if n > 0 => (n as usize).min(MAX_PAGE),
        _ => DEFAULT_PAGE,
    };
    let token = match headers.get(CONTINUATION_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("The continuation token is not valid."))?
                .trim()
                .to_string(),
        ),
    }
    .filter(|t| !t.is_empty());
    if token.as_deref() == Some(NULL_TOKEN) {
        return Ok(page_response(Vec::new(), None));
    }
    let page = ctx
        .client
        .query(&InstanceQuery {
            filter,
            page_size,
            continuation: token,
            include_input: show_input,
            max_bytes: Some(MAX_PAGE_BYTES),
        })
        .await?;
    let items = page
        .items
        .iter()
        .map(|r| StatusResponse::from_record(r, show_input))
        .collect();
    Ok(page_response(items, page.continuation))
}

fn page_response(items: Vec<StatusResponse>, continuation: Option<String>) -> Response {
    let mut r = json(StatusCode::OK, &items);
    let token = continuation
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""));
    r.headers_mut().insert(CONTINUATION_HEADER, token);
    r
}

/// The filters list and bulk purge share; `name` is ours (the real API lacks it, spec §14.5).
fn filter(
    q: &QueryString,
    created_from: Option<chrono::DateTime<Utc>>,
    statuses: Vec<RuntimeStatus>,
) -> Result<InstanceFilter, ApiError> {
    let non_blank = |name: &str| q.get(name).filter(|v| !v.is_empty());
    Ok(InstanceFilter {
        created_from,
        created_to: q.time("createdTimeTo")?,
        statuses,
        instance_id_prefix: non_blank("instanceIdPrefix"),
        name: non_blank("name"),
    })
}

/// `DELETE /instances/{instanceId}`: 200 `{"instancesDeleted":1}`, 404, or 412 while running.
pub async fn purge(ctx: Ctx, PathParams(id): PathParams<String>) -> Result<Response, ApiError> {
    let deleted = ctx.client.purge(&id).await?;
    Ok(json(
        StatusCode::OK,
        &PurgeHistoryResult {
            instances_deleted: deleted,
        },
    ))
}

/// `DELETE /instances?createdTimeFrom=…`: `createdTimeFrom` is required, `createdTimeTo`
/// defaults to now. Only terminal instances are purged (as with Azure Storage, other statuses
/// in `runtimeStatus` are dropped), so a bulk purge never pulls an instance from under its
/// executor. Nothing deleted → 404.
pub async fn purge_by_filter(ctx: Ctx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let Ok(Some(from)) = q.time("createdTimeFrom") else {
        return Err(ApiError::BadRequestString(
            "Please provide value for 'createdTimeFrom' parameter.".into(),
        ));
    };
    let asked = q.statuses("runtimeStatus")?;
    let statuses: Vec<RuntimeStatus> = if asked.is_empty() {
        RuntimeStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect()
    } else {
        asked.into_iter().filter(|s| s.is_terminal()).collect()
    };
    if statuses.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut filter = filter(q, Some(from), statuses)?;
    filter.created_to.get_or_insert_with(Utc::now);
    match ctx.client.purge_by_filter(&filter).await? {
        0 => Err(ApiError::NotFound),
        n => Ok(json(
            StatusCode::OK,
            &PurgeHistoryResult {
                instances_deleted: n,
            },
        )),
    }
}
