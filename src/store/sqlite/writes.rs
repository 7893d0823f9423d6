//! The SQL each write job runs, on the writer connection inside the batch transaction.
//!
//! Anything expensive that needs no connection (JSON encoding, building rows) is prepared by
//! the caller before the job is queued, so the single writer thread only does SQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::codec::{
    backend, decode_event, encode_event, encode_tags, from_micros, to_micros, truncate_micros,
};
use super::query::select_page;
use crate::model::RuntimeStatus;
use crate::store::{
    ActivityRequest, InstanceFilter, InstanceRecord, InstanceState, NewInstance,
    OrchestrationMessage, StoreError, StoreResult,
};

/// A message with its event already encoded.
pub(super) struct PreparedMessage {
    pub message: OrchestrationMessage,
    event: String,
}

impl PreparedMessage {
    pub fn new(message: OrchestrationMessage) -> StoreResult<Self> {
        let event = encode_event(&message.event)?;
        Ok(Self { message, event })
    }
}

/// A new execution: its row as it will read back, and its start message.
pub(super) struct PreparedStart {
    pub record: InstanceRecord,
    pub start: PreparedMessage,
}

impl PreparedStart {
    pub fn new(new: &NewInstance, now: DateTime<Utc>) -> StoreResult<Self> {
        let record = InstanceRecord {
            instance_id: new.instance_id.as_str().to_owned(),
            name: new.name.clone(),
            version: new.version.clone(),
            execution_id: new.execution_id.clone(),
            runtime_status: RuntimeStatus::Pending,
            input: new.input.clone(),
            output: None,
            custom_status: None,
            created_time: truncate_micros(new.created_time),
            last_updated_time: truncate_micros(now),
            completed_time: None,
            parent_instance_id: new.parent.as_ref().map(|p| p.instance_id.clone()),
            tags: new.tags.clone(),
        };
        let start = PreparedMessage::new(OrchestrationMessage {
            instance_id: record.instance_id.clone(),
            execution_id: Some(new.execution_id.clone()),
            event: new.started_event(),
            visible_at: new.scheduled_start_time,
        })?;
        Ok(Self { record, start })
    }
}

/// The row an episode's state describes, as it will read back.
pub(super) fn record_from_state(instance_id: &str, state: &InstanceState) -> InstanceRecord {
    InstanceRecord {
        instance_id: instance_id.to_owned(),
        name: state.name.clone(),
        version: state.version.clone(),
        execution_id: state.execution_id.clone(),
        runtime_status: state.runtime_status,
        input: state.input.clone(),
        output: state.output.clone(),
        custom_status: state.custom_status.clone(),
        created_time: truncate_micros(state.created_time),
        last_updated_time: truncate_micros(state.last_updated_time),
        completed_time: state.completed_time.map(truncate_micros),
        parent_instance_id: state.parent_instance_id.clone(),
        tags: state.tags.clone(),
    }
}

pub(super) fn insert_message(
    conn: &Connection,
    hub: &str,
    m: &PreparedMessage,
) -> StoreResult<i64> {
    conn.prepare_cached(
        "INSERT INTO messages(hub, instance_id, execution_id, visible_at, event) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.insert(params![
            hub,
            m.message.instance_id,
            m.message.execution_id,
            m.message.visible_at.map(to_micros),
            m.event
        ])
    })
    .map_err(backend)
}

pub(super) fn delete_messages(conn: &Connection, ids: &[i64]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM messages WHERE id = ?1")
        .map_err(backend)?;
    for id in ids {
        stmt.execute([id]).map_err(backend)?;
    }
    Ok(())
}

pub(super) fn instance_status(
    conn: &Connection,
    hub: &str,
    id: &str,
) -> StoreResult<Option<RuntimeStatus>> {
    let status: Option<i32> = conn
        .prepare_cached("SELECT status FROM instances WHERE hub = ?1 AND instance_id = ?2")
        .and_then(|mut s| s.query_row([hub, id], |r| r.get(0)).optional())
        .map_err(backend)?;
    status
        .map(|n| RuntimeStatus::from_i32(n).ok_or_else(|| backend(format!("bad status {n}"))))
        .transpose()
}

/// A rewind's row change: a Failed instance becomes Pending (its output and completion time
/// stay, as DTFx's merge leaves them). The status test is part of the UPDATE, inside the
/// writer's transaction, so no other write (a purge, a restart) can come between the two.
pub(super) fn pending_again_if_failed(
    conn: &Connection,
    hub: &str,
    id: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE instances SET status = ?1, last_updated_time = ?2 \
             WHERE hub = ?3 AND instance_id = ?4 AND status = ?5",
        )
        .and_then(|mut s| {
            s.execute(params![
                RuntimeStatus::Pending.as_i32(),
                to_micros(now),
                hub,
                id,
                RuntimeStatus::Failed.as_i32()
            ])
        })
        .map_err(backend)?;
    if changed == 1 {
        return Ok(());
    }
    Err(match instance_status(conn, hub, id)? {
        None => StoreError::NotFound(id.to_owned()),
        Some(status) => StoreError::NotFailed {
            instance_id: id.to_owned(),
            status,
        },
    })
}

/// Replaces whatever the instance was with a new Pending execution; returns the start
/// message's id.
pub(super) fn start_instance(conn: &Connection, hub: &str, p: &PreparedStart) -> StoreResult<i64> {
    let r = &p.record;
    clear_history(conn, hub, &r.instance_id)?;
    conn.prepare_cached("DELETE FROM messages WHERE hub = ?1 AND instance_id = ?2")
        .and_then(|mut s| s.execute([hub, r.instance_id.as_str()]))
        .map_err(backend)?;
    conn.prepare_cached(
        "INSERT INTO instances(hub, instance_id, execution_id, name, version, status, input, \
             output, custom_status, created_time, last_updated_time, completed_time, \
             parent_instance_id, tags) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, ?8, ?9, NULL, ?10, ?11) \
         ON CONFLICT(hub, instance_id) DO UPDATE SET execution_id = excluded.execution_id, \
             name = excluded.name, version = excluded.version, status = excluded.status, \
             input = excluded.input, output = NULL, custom_status = NULL, \
             created_time = excluded.created_time, \
             last_updated_time = excluded.last_updated_time, completed_time = NULL, \
             parent_instance_id = excluded.parent_instance_id, tags = excluded.tags",
    )
    .and_then(|mut s| {
        s.execute(params![
            hub,
            r.instance_id,
            r.execution_id,
            r.name,
            r.version,
            r.runtime_status.as_i32(),
            r.input,
            to_micros(r.created_time),
            to_micros(r.last_updated_time),
            r.parent_instance_id,
            encode_tags(&r.tags),
        ])
    })
    .map_err(backend)?;
    insert_message(conn, hub, &p.start)
}

/// Writes an episode's state over `before`, the row the episode started from (`None`: there
/// was no row). If the row has meanwhile been replaced or purged (or created), the episode
/// worked on something that no longer exists: `LockLost`.
pub(super) fn write_state(
    conn: &Connection,
    hub: &str,
    instance_id: &str,
    before: Option<&InstanceRecord>,
    s: &InstanceState,
) -> StoreResult<()> {
    let changed = match before {
        Some(before) => update_state(conn, hub, instance_id, before, s)?,
        None => conn
            .prepare_cached(
                "INSERT INTO instances(hub, instance_id, execution_id, name, version, status, \
                     input, output, custom_status, created_time, last_updated_time, \
                     completed_time, parent_instance_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT(hub, instance_id) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    hub,
                    instance_id,
                    s.execution_id,
                    s.name,
                    s.version,
                    s.runtime_status.as_i32(),
                    s.input,
                    s.output,
                    s.custom_status,
                    to_micros(s.created_time),
                    to_micros(s.last_updated_time),
                    s.completed_time.map(to_micros),
                    s.parent_instance_id,
                ])
            })
            .map_err(backend)?,
    };
    if changed == 0 {
        return Err(StoreError::LockLost);
    }
    Ok(())
}

/// Sets only the columns the episode changed: an unchanged indexed column then costs no index
/// update, and an unchanged (possibly large) input is not rewritten.
fn update_state(
    conn: &Connection,
    hub: &str,
    instance_id: &str,
    before: &InstanceRecord,
    s: &InstanceState,
) -> StoreResult<usize> {
    use rusqlite::types::Value;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    let time = |v: Option<DateTime<Utc>>| v.map_or(Value::Null, |t| Value::Integer(to_micros(t)));
    let mut sets: Vec<&str> = vec!["last_updated_time"];
    let mut values: Vec<Value> = vec![Value::Integer(to_micros(s.last_updated_time))];
    let mut set = |col, differs: bool, value: &dyn Fn() -> Value| {
        if differs {
            sets.push(col);
            values.push(value());
        }
    };
    set(
        "execution_id",
        s.execution_id != before.execution_id,
        &|| Value::Text(s.execution_id.clone()),
    );
    set("name", s.name != before.name, &|| {
        Value::Text(s.name.clone())
    });
    set("version", s.version != before.version, &|| {
        Value::Text(s.version.clone())
    });
    set("status", s.runtime_status != before.runtime_status, &|| {
        Value::Integer(s.runtime_status.as_i32().into())
    });
    set("input", s.input != before.input, &|| text(&s.input));
    set("output", s.output != before.output, &|| text(&s.output));
    set(
        "custom_status",
        s.custom_status != before.custom_status,
        &|| text(&s.custom_status),
    );
    set(
        "created_time",
        to_micros(s.created_time) != to_micros(before.created_time),
        &|| Value::Integer(to_micros(s.created_time)),
    );
    set(
        "completed_time",
        s.completed_time.map(to_micros) != before.completed_time.map(to_micros),
        &|| time(s.completed_time),
    );
    set(
        "parent_instance_id",
        s.parent_instance_id != before.parent_instance_id,
        &|| text(&s.parent_instance_id),
    );
    let assignments: Vec<String> = sets.iter().map(|c| format!("{c} = ?")).collect();
    let sql = format!(
        "UPDATE instances SET {} WHERE hub = ? AND instance_id = ? AND execution_id = ?",
        assignments.join(", ")
    );
    values.extend([
        Value::Text(hub.to_owned()),
        Value::Text(instance_id.to_owned()),
        Value::Text(before.execution_id.clone()),
    ]);
    conn.prepare_cached(&sql)
        .and_then(|mut st| st.execute(rusqlite::params_from_iter(values)))
        .map_err(backend)
}

pub(super) fn clear_history(conn: &Connection, hub: &str, id: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM history WHERE hub = ?1 AND instance_id = ?2")
        .and_then(|mut s| s.execute([hub, id]))
        .map(|_| ())
        .map_err(backend)
}

/// `events` are encoded JSON; they get sequence numbers from `first_seq` on.
pub(super) fn append_history(
    conn: &Connection,
    hub: &str,
    id: &str,
    first_seq: i64,
    events: &[String],
) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO history(hub, instance_id, seq, event) VALUES (?1, ?2, ?3, ?4)")
        .map_err(backend)?;
    for (i, event) in events.iter().enumerate() {
        stmt.execute(params![hub, id, first_seq + i as i64, event])
            .map_err(backend)?;
    }
    Ok(())
}

pub(super) fn insert_activity(
    conn: &Connection,
    hub: &str,
    a: &ActivityRequest,
) -> StoreResult<i64> {
    conn.prepare_cached(
        "INSERT INTO activities(hub, instance_id, execution_id, task_id, name, input, attempt) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.insert(params![
            hub,
            a.instance_id,
            a.execution_id,
            a.task_id,
            a.name,
            a.input,
            a.attempt
        ])
    })
    .map_err(backend)
}

/// Returns whether the row still existed.
pub(super) fn delete_activity(conn: &Connection, id: i64) -> StoreResult<bool> {
    conn.prepare_cached("DELETE FROM activities WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map(|n| n > 0)
        .map_err(backend)
}

/// Deletes one instance and everything that belongs to it; returns 1 if it existed.
pub(super) fn purge(conn: &Connection, hub: &str, id: &str) -> StoreResult<u64> {
    let mut deleted = 0;
    for sql in [
        "DELETE FROM history WHERE hub = ?1 AND instance_id = ?2",
        "DELETE FROM messages WHERE hub = ?1 AND instance_id = ?2",
        "DELETE FROM activities WHERE hub = ?1 AND instance_id = ?2",
        "DELETE FROM instances WHERE hub = ?1 AND instance_id = ?2",
    ] {
        deleted = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([hub, id]))
            .map_err(backend)?;
    }
    Ok(deleted as u64)
}

/// Up to `limit + 1` ids matching the filter, oldest first: one more than a batch tells
/// whether the batch is the last.
pub(super) fn matching_ids(
    conn: &Connection,
    hub: &str,
    filter: &InstanceFilter,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let (sql, params) = select_page(
        hub,
        filter,
        None,
        "instance_id, created_time",
        limit.saturating_add(1),
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(super) fn delete_hub(conn: &Connection, hub: &str) -> StoreResult<()> {
    for table in ["history", "messages", "activities", "instances", "leases"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE hub = ?1"))
            .and_then(|mut s| s.execute([hub]))
            .map_err(backend)?;
    }
    Ok(())
}

pub(super) type MessageRow = (i64, OrchestrationMessage);
pub(super) type ActivityRow = (i64, ActivityRequest);

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, String, OrchestrationMessage)> {
    let text: String = row.get(5)?;
    let event = decode_event(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
    })?;
    Ok((
        row.get(0)?,
        row.get(1)?,
        OrchestrationMessage {
            instance_id: row.get(2)?,
            execution_id: row.get(3)?,
            visible_at: row.get::<_, Option<i64>>(4)?.map(from_micros),
            event,
        },
    ))
}

fn activity_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, String, ActivityRequest)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        ActivityRequest {
            instance_id: row.get(2)?,
            execution_id: row.get(3)?,
            task_id: row.get(4)?,
            name: row.get(5)?,
            input: row.get(6)?,
            attempt: row.get(7)?,
        },
    ))
}

const MESSAGE_COLS: &str = "id, hub, instance_id, execution_id, visible_at, event";
const ACTIVITY_COLS: &str = "id, hub, instance_id, execution_id, task_id, name, input, attempt";

/// Rows `(id, hub, value)`. A row that cannot be decoded is skipped with a warning: one bad
/// row must not stop the whole hub.
fn collect_rows<T>(
    conn: &Connection,
    sql: &str,
    arg: &dyn rusqlite::ToSql,
    map: fn(&Row<'_>) -> rusqlite::Result<(i64, String, T)>,
) -> StoreResult<Vec<(i64, String, T)>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let rows = stmt.query_map([arg], map).map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        match row {
            Ok(r) => out.push(r),
            Err(e @ rusqlite::Error::FromSqlConversionFailure(..)) => {
                tracing::warn!("skipping an undecodable queued row: {e}");
            }
            Err(e) => return Err(backend(e)),
        }
    }
    Ok(out)
}

/// Every pending message and activity of a hub, to start dispatching it.
pub(super) fn load_pending(
    conn: &Connection,
    hub: &str,
) -> StoreResult<(Vec<MessageRow>, Vec<ActivityRow>)> {
    let messages = collect_rows(
        conn,
        &format!("SELECT {MESSAGE_COLS} FROM messages WHERE hub = ?1 ORDER BY id"),
        &hub,
        message_from_row,
    )?;
    let activities = collect_rows(
        conn,
        &format!("SELECT {ACTIVITY_COLS} FROM activities WHERE hub = ?1 ORDER BY id"),
        &hub,
        activity_from_row,
    )?;
    Ok((
        messages.into_iter().map(|(id, _, m)| (id, m)).collect(),
        activities.into_iter().map(|(id, _, a)| (id, a)).collect(),
    ))
}

/// Pending rows of every hub with ids above the given ones (written since they were seen).
pub(super) type HubRows<T> = Vec<(i64, String, T)>;

pub(super) fn rows_after(
    conn: &Connection,
    message_id: i64,
    activity_id: i64,
) -> StoreResult<(HubRows<OrchestrationMessage>, HubRows<ActivityRequest>)> {
    let messages = collect_rows(
        conn,
        &format!("SELECT {MESSAGE_COLS} FROM messages WHERE id > ?1 ORDER BY id"),
        &message_id,
        message_from_row,
    )?;
    let activities = collect_rows(
        conn,
        &format!("SELECT {ACTIVITY_COLS} FROM activities WHERE id > ?1 ORDER BY id"),
        &activity_id,
        activity_from_row,
    )?;
    Ok((messages, activities))
}

/// Ids of every pending message and activity of a hub: what other connections deleted is
/// missing here.
pub(super) fn pending_ids(
    conn: &Connection,
    hub: &str,
) -> StoreResult<(HashSet<i64>, HashSet<i64>)> {
    let ids = |sql: &str| -> StoreResult<HashSet<i64>> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let rows = stmt.query_map([hub], |r| r.get(0)).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    };
    Ok((
        ids("SELECT id FROM messages WHERE hub = ?1")?,
        ids("SELECT id FROM activities WHERE hub = ?1")?,
    ))
}

/// The highest message and activity ids ever handed out (AUTOINCREMENT never reuses them).
pub(super) fn id_watermarks(conn: &Connection) -> StoreResult<(i64, i64)> {
    let seq = |table: &str| -> StoreResult<i64> {
        conn.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0)",
            [table],
            |r| r.get(0),
        )
        .map_err(backend)
    };
    Ok((seq("messages")?, seq("activities")?))
}

// ---- hub lease ----

pub(super) enum LeaseOutcome {
    /// Ours, and it was ours without a gap: in-memory state is still valid.
    Kept,
    /// Ours now, but it was free or someone else's meanwhile: state must be reloaded.
    Taken,
    /// Another live process holds it.
    HeldByOther,
}

/// Takes or extends the hub lease if it is free, expired or already ours.
pub(super) fn acquire_lease(
    conn: &Connection,
    hub: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> StoreResult<LeaseOutcome> {
    let current: Option<(String, i64)> = conn
        .prepare_cached("SELECT owner, expires_at FROM leases WHERE hub = ?1")
        .and_then(|mut s| {
            s.query_row([hub], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(backend)?;
    let outcome = match &current {
        Some((o, exp)) if *exp > now && o != owner && !super::lease::holder_is_dead(o) => {
            return Ok(LeaseOutcome::HeldByOther)
        }
        Some((o, exp)) if *exp > now && o == owner => LeaseOutcome::Kept,
        _ => LeaseOutcome::Taken,
    };
    conn.prepare_cached(
        "INSERT INTO leases(hub, owner, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(hub) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
    )
    .and_then(|mut s| s.execute(params![hub, owner, until]))
    .map_err(backend)?;
    Ok(outcome)
}

/// Gives up every lease of this owner so that a successor does not wait for expiry.
pub(super) fn release_leases(conn: &Connection, owner: &str) -> StoreResult<()> {
    conn.execute("UPDATE leases SET expires_at = 0 WHERE owner = ?1", [owner])
        .map(|_| ())
        .map_err(backend)
}
