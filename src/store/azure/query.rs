//! Listing instances. Azure Tables return rows in PartitionKey order only, but the store
//! contract lists oldest first (created time, then id), with keyset continuation tokens. So a
//! query scans every row matching the filter (the filter itself runs server-side) and sorts;
//! a page costs a scan of the matching rows, like Durable Functions' own list API on this
//! provider.

use base64::Engine;
use chrono::{DateTime, Utc};

use super::dtfx;
use super::entities::{get_str, get_time, Entity};
use super::hub::Hub;
use super::keys::{self, escape_partition_key, odata_str};
use crate::store::{InstanceFilter, StoreError, StoreResult};

/// Where the previous page ended: (created time, PartitionKey).
pub type Position = (DateTime<Utc>, String);

fn position(row: &Entity) -> Position {
    (
        get_time(row, "CreatedTime").unwrap_or(DateTime::<Utc>::MIN_UTC),
        get_str(row, "PartitionKey").unwrap_or_default(),
    )
}

pub fn encode_token(row: &Entity) -> String {
    let (t, pk) = position(row);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("v1\n{}\n{pk}", dtfx::format_time(t)))
}

pub fn decode_token(token: &str) -> StoreResult<Position> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(StoreError::InvalidContinuationToken)?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(t), Some(pk)) => dtfx::parse_time(t)
            .map(|t| (t, pk.to_string()))
            .ok_or(StoreError::InvalidContinuationToken),
        _ => Err(StoreError::InvalidContinuationToken),
    }
}

/// The OData filter for an instance filter (spec §2.4's conditions, each parenthesised).
pub fn filter_expr(f: &InstanceFilter) -> String {
    let mut parts = vec!["RowKey eq ''".to_string()];
    if let Some(t) = f.created_from {
        parts.push(format!("CreatedTime ge datetime'{}'", dtfx::format_time(t)));
    }
    if let Some(t) = f.created_to {
        parts.push(format!("CreatedTime le datetime'{}'", dtfx::format_time(t)));
    }
    if !f.statuses.is_empty() {
        let or: Vec<String> = f
            .statuses
            .iter()
            .map(|s| format!("RuntimeStatus eq '{s}'"))
            .collect();
        parts.push(or.join(" or "));
    }
    if let Some(p) = f.instance_id_prefix.as_deref().filter(|p| !p.is_empty()) {
        let esc = escape_partition_key(p);
        parts.push(format!("PartitionKey ge {}", odata_str(&esc)));
        if let Some(hi) = keys::prefix_upper_bound(&esc) {
            parts.push(format!("PartitionKey lt {}", odata_str(&hi)));
        }
    }
    if let Some(n) = &f.name {
        parts.push(format!("Name eq {}", odata_str(n)));
    }
    // Durable entities (`@name@key`) are not orchestrations.
    parts.push("PartitionKey lt '@' or PartitionKey ge 'A'".into());
    parts
        .into_iter()
        .map(|p| format!("({p})"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Every matching row after `after`, oldest first.
pub async fn scan(
    hub: &Hub,
    f: &InstanceFilter,
    after: Option<&Position>,
) -> StoreResult<Vec<Entity>> {
    let mut rows = hub.instances.query(Some(filter_expr(f)), None).await?;
    let mut keyed: Vec<(Position, Entity)> = rows.drain(..).map(|r| (position(&r), r)).collect();
    if let Some(a) = after {
        keyed.retain(|(p, _)| p > a);
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}
