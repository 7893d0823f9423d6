//! The History table (spec §3): loading the current execution, and checkpointing new events in
//! entity-group transactions fenced by the sentinel row's ETag.

use chrono::Utc;
use serde_json::json;

use super::entities::{self, get_str, set_str, set_time, Entity};
use super::error::AzError;
use super::hub::Hub;
use super::keys::{escape_partition_key, history_row_key, odata_str, SENTINEL_ROW_KEY};
use super::tables::{row_etag, BatchOp};
use crate::model::HistoryEvent;
use crate::store::{HistoryWrite, StoreError, StoreResult};

/// What a checkpoint needs to know about the history it extends.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub events: Vec<HistoryEvent>,
    /// The sentinel's ExecutionId (else the first row's).
    pub execution_id: Option<String>,
    /// `None` when the instance never checkpointed (the sentinel is inserted, not merged).
    pub sentinel_etag: Option<String>,
}

/// Entity-group transactions hold 100 operations: 99 rows + the sentinel.
const ROWS_PER_BATCH: usize = 99;
/// Transactions are limited to 4 MiB; DTFx splits at an estimated 3 MB.
const BATCH_BYTES: usize = 3 * 1024 * 1024;

pub async fn load(hub: &Hub, instance_id: &str) -> StoreResult<Loaded> {
    let pk = escape_partition_key(instance_id);
    let rows = hub
        .history
        .query(Some(format!("PartitionKey eq {}", odata_str(&pk))), None)
        .await?;
    let sentinel = rows
        .iter()
        .find(|r| get_str(r, "RowKey").as_deref() == Some(SENTINEL_ROW_KEY));
    let execution_id = sentinel
        .and_then(|s| get_str(s, "ExecutionId"))
        .or_else(|| rows.first().and_then(|r| get_str(r, "ExecutionId")));
    let mut events = Vec::new();
    for row in rows
        .iter()
        .filter(|r| get_str(r, "RowKey").as_deref() != Some(SENTINEL_ROW_KEY))
    {
        // Rows are in RowKey order; a new execution reuses keys from 0, so the first row of
        // another execution marks the end of this one.
        if get_str(row, "ExecutionId") != execution_id {
            break;
        }
        let mut row = row.clone();
        hub.resolve_history_columns(&mut row).await?;
        events.push(hub.event_from_row(&row)?);
    }
    Ok(Loaded {
        events,
        execution_id,
        sentinel_etag: sentinel.and_then(row_etag),
    })
}

/// Writes `write` for `execution_id` after `loaded`; returns the sentinel's new ETag.
/// A 409/412 on the sentinel means another worker checkpointed this instance: `LockLost`.
pub async fn checkpoint(
    hub: &Hub,
    instance_id: &str,
    loaded: &Loaded,
    write: &HistoryWrite,
    execution_id: &str,
) -> StoreResult<Option<String>> {
    let same_execution = loaded.execution_id.as_deref() == Some(execution_id);
    let (start, events, stale): (usize, &[HistoryEvent], usize) = match write {
        HistoryWrite::Append(ev) if same_execution => (loaded.events.len(), ev, 0),
        HistoryWrite::Append(ev) => (0, ev, 0),
        // Rows past the new end that still carry this execution id would be read back.
        HistoryWrite::Replace(ev) if same_execution => {
            (0, ev, loaded.events.len().saturating_sub(ev.len()))
        }
        HistoryWrite::Replace(ev) => (0, ev, 0),
    };
    if events.is_empty() && stale == 0 && same_execution {
        return Ok(loaded.sentinel_etag.clone());
    }
    let pk = escape_partition_key(instance_id);
    let mut ops: Vec<(BatchOp, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut row = entities::history_row(instance_id, execution_id, e);
        set_str(&mut row, "PartitionKey", &pk);
        set_str(&mut row, "RowKey", history_row_key((start + i) as u64));
        hub.offload_history_columns(&mut row).await?;
        let size = serde_json::to_string(&row).map(|s| s.len()).unwrap_or(0);
        ops.push((BatchOp::Upsert(row), size));
    }
    for seq in events.len()..events.len() + stale {
        ops.push((BatchOp::Delete(history_row_key(seq as u64), None), 100));
    }
    let mut etag = loaded.sentinel_etag.clone();
    let mut batches: Vec<Vec<BatchOp>> = vec![Vec::new()];
    let mut bytes = 0;
    for (op, size) in ops {
        let current = batches.last_mut().expect("one batch at least");
        if !current.is_empty() && (current.len() == ROWS_PER_BATCH || bytes + size > BATCH_BYTES) {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("just pushed").push(op);
    }
    let last = batches.len() - 1;
    for (n, mut batch) in batches.into_iter().enumerate() {
        let mut sentinel = Entity::new();
        set_str(&mut sentinel, "PartitionKey", &pk);
        set_str(&mut sentinel, "RowKey", SENTINEL_ROW_KEY);
        set_str(&mut sentinel, "ExecutionId", execution_id);
        sentinel.insert("IsCheckpointComplete".into(), json!(n == last));
        if n == last {
            set_time(&mut sentinel, "CheckpointCompletedTimestamp", Utc::now());
        }
        batch.push(match &etag {
            None => BatchOp::Insert(sentinel),
            Some(tag) => BatchOp::Merge(sentinel, Some(tag.clone())),
        });
        let etags = hub.history.batch(&pk, batch).await.map_err(conflict)?;
        etag = etags.last().cloned().flatten().or(etag);
    }
    Ok(etag)
}

fn conflict(e: AzError) -> StoreError {
    if e.is(409) || e.is(412) {
        StoreError::LockLost
    } else {
        e.into()
    }
}

/// Deletes every History row of an instance (sentinel included), 100 per transaction.
pub async fn delete_all(hub: &Hub, instance_id: &str) -> StoreResult<u64> {
    let pk = escape_partition_key(instance_id);
    let rows = hub
        .history
        .query(Some(format!("PartitionKey eq {}", odata_str(&pk))), None)
        .await?;
    let keys: Vec<String> = rows.iter().filter_map(|r| get_str(r, "RowKey")).collect();
    for chunk in keys.chunks(100) {
        let ops = chunk
            .iter()
            .map(|rk| BatchOp::Delete(rk.clone(), None))
            .collect();
        if let Err(e) = hub.history.batch(&pk, ops).await {
            // A row deleted concurrently fails the batch: fall back to one by one.
            if !e.is(404) {
                return Err(e.into());
            }
            for rk in chunk {
                hub.history.delete(&pk, rk, None).await?;
            }
        }
    }
    Ok(keys.len() as u64)
}
