//! Reads on their own connections: WAL lets them run beside the writer without blocking it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};

use super::codec::{backend, decode_event, instance_columns, instance_from_row};
use super::dispatch::Cached;
use super::query::{select_page, Cursor};
use super::schema::open_reader;
use crate::model::HistoryEvent;
use crate::store::{InstanceQuery, InstanceRecord, Page, StoreResult};

/// Reads running at once. More threads than this only queue on the cores (and on SQLite's
/// locks), so reads beyond it wait for a permit; every connection opened is then kept, instead
/// of opening and closing connections under load.
fn max_readers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
}

pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            path,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max_readers()),
        })
    }

    /// Runs a point read (one indexed row, tens of microseconds) on the calling thread: handing
    /// it to a blocking thread would cost more than the read itself. WAL readers never wait for
    /// the writer, so this does not block the async runtime for long.
    pub fn run_point<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.idle.lock().unwrap().pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        self.idle.lock().unwrap().push(conn);
        result
    }

    /// Runs `f` on a pooled connection on tokio's blocking threads.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(backend)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.idle.lock().unwrap().pop();
            let conn = match conn {
                Some(c) => c,
                None => open_reader(&pool.path)?,
            };
            let result = f(&conn);
            pool.idle.lock().unwrap().push(conn);
            result
        })
        .await
        .map_err(backend)?
    }
}

pub(super) fn read_instance(
    conn: &Connection,
    hub: &str,
    id: &str,
) -> StoreResult<Option<InstanceRecord>> {
    let sql = format!(
        "SELECT {} FROM instances WHERE hub = ?1 AND instance_id = ?2",
        instance_columns(true)
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([hub, id], instance_from_row).optional())
        .map_err(backend)
}

/// SQLite's `quick_check`: every page and b-tree is read (not index contents); 0.27 s for a
/// 443 MB file with a warm page cache, measured here. What it finds names the file and says
/// what to do.
pub(super) fn quick_check(conn: &Connection, path: &std::path::Path) -> StoreResult<()> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| {
            backend(format!(
                "{} is damaged: it cannot be read ({e}); restore it from a backup or move it aside",
                path.display()
            ))
        })?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(backend(format!(
        "{} is damaged ({}); restore it from a backup or move it aside",
        path.display(),
        problems.join("; ")
    )))
}

/// A hub is a key value here: it exists while it holds an instance or a process holds its lease
/// (both lookups are on primary keys).
pub(super) fn hub_exists(conn: &Connection, hub: &str) -> StoreResult<bool> {
    conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM instances WHERE hub = ?1) \
             OR EXISTS(SELECT 1 FROM leases WHERE hub = ?1)",
    )
    .and_then(|mut s| s.query_row([hub], |r| r.get(0)))
    .map_err(backend)
}

pub(super) fn read_history(
    conn: &Connection,
    hub: &str,
    id: &str,
) -> StoreResult<Vec<HistoryEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT event FROM history WHERE hub = ?1 AND instance_id = ?2 ORDER BY seq",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([hub, id], |r| r.get::<_, String>(0))
        .map_err(backend)?;
    rows.map(|r| decode_event(&r.map_err(backend)?)).collect()
}

/// Row and history from one snapshot, so that they agree with each other.
pub(super) fn read_cached(conn: &Connection, hub: &str, id: &str) -> StoreResult<Cached> {
    let tx = conn.unchecked_transaction().map_err(backend)?;
    let record = read_instance(&tx, hub, id)?;
    let history = read_history(&tx, hub, id)?;
    tx.finish().map_err(backend)?;
    Ok(Cached {
        record,
        history: Arc::new(history),
    })
}

pub(super) fn query_page(
    conn: &Connection,
    hub: &str,
    query: &InstanceQuery,
) -> StoreResult<Page<InstanceRecord>> {
    let after = query
        .continuation
        .as_deref()
        .map(Cursor::decode)
        .transpose()?;
    let page_size = query.page_size.max(1);
    // One row beyond the page says whether another page exists.
    let (sql, params) = select_page(
        hub,
        &query.filter,
        after.as_ref(),
        &instance_columns(query.include_input),
        page_size.saturating_add(1),
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let mut items: Vec<InstanceRecord> = stmt
        .query_map(rusqlite::params_from_iter(params), instance_from_row)
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    let keep = crate::store::rows_within(&items[..items.len().min(page_size)], query.max_bytes);
    let continuation = if items.len() > keep {
        items.truncate(keep);
        items.last().map(|last| {
            Cursor {
                created_micros: super::codec::to_micros(last.created_time),
                instance_id: last.instance_id.clone(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Page {
        items,
        continuation,
    })
}

/// The query plan of a list query, for tests that check index use.
#[cfg(test)]
pub(super) fn explain_query(
    conn: &Connection,
    hub: &str,
    query: &InstanceQuery,
) -> StoreResult<Vec<String>> {
    let after = query
        .continuation
        .as_deref()
        .map(Cursor::decode)
        .transpose()?;
    let (sql, params) = select_page(
        hub,
        &query.filter,
        after.as_ref(),
        &instance_columns(query.include_input),
        query.page_size + 1,
    );
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    let mut stmt = conn.prepare(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
