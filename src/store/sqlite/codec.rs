//! How values cross between Rust and SQLite columns: times, rows, events, errors.

use chrono::{DateTime, Utc};
use rusqlite::Row;

use crate::model::{HistoryEvent, RuntimeStatus};
use crate::store::{InstanceRecord, StoreError, Tags};

/// Times are stored as unix microseconds: integers keep index order and compare cheaply.
pub(super) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The value a time has after a round trip through the database, so that cached rows equal
/// rows read back.
pub(super) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(to_micros(t))
}

pub(super) fn now_micros() -> i64 {
    to_micros(Utc::now())
}

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(super) fn encode_event(event: &HistoryEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(backend)
}

pub(super) fn decode_event(text: &str) -> Result<HistoryEvent, StoreError> {
    serde_json::from_str(text).map_err(|e| backend(format!("corrupt history event: {e}")))
}

/// Column list matching [`instance_from_row`]; `input_col` is `input` or `NULL` so that queries
/// which do not want inputs never read them from disk.
pub(super) fn instance_columns(include_input: bool) -> String {
    format!(
        "instance_id, name, version, execution_id, status, {}, output, custom_status, \
         created_time, last_updated_time, completed_time, parent_instance_id, tags",
        if include_input { "input" } else { "NULL" }
    )
}

pub(super) fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let status: i32 = row.get(4)?;
    let runtime_status = RuntimeStatus::from_i32(status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            4,
            rusqlite::types::Type::Integer,
            format!("unknown runtime status {status}").into(),
        )
    })?;
    Ok(InstanceRecord {
        instance_id: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        execution_id: row.get(3)?,
        runtime_status,
        input: row.get(5)?,
        output: row.get(6)?,
        custom_status: row.get(7)?,
        created_time: from_micros(row.get(8)?),
        last_updated_time: from_micros(row.get(9)?),
        completed_time: row.get::<_, Option<i64>>(10)?.map(from_micros),
        parent_instance_id: row.get(11)?,
        tags: decode_tags(row.get::<_, Option<String>>(12)?.as_deref()),
    })
}

/// Tags as one JSON object, `NULL` when there are none (most instances).
pub(super) fn encode_tags(tags: &Tags) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

/// A column that is not a JSON object of strings reads as no tags rather than failing the read.
pub(super) fn decode_tags(text: Option<&str>) -> Tags {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_truncates_nanos() {
        let t: DateTime<Utc> = "2024-05-06T07:08:09.123456789Z".parse().unwrap();
        let back = from_micros(to_micros(t));
        assert_eq!(back, truncate_micros(t));
        assert_eq!(to_micros(back), to_micros(t));
        assert_eq!(
            back,
            "2024-05-06T07:08:09.123456Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
    }
}
