//! Tables, indexes and connection settings. Several hubs share one file, so `hub` leads every key.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::codec::backend;
use crate::store::StoreResult;

/// Bumped when the layout changes; stored in `PRAGMA user_version`. 2: `instances.tags`.
pub(super) const SCHEMA_VERSION: i64 = 2;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// Messages and activities use AUTOINCREMENT: ids must never be reused, because dispatch finds
// rows written by other processes as "ids above the last one seen".
const DDL: &str = "
CREATE TABLE IF NOT EXISTS instances(
    hub TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status INTEGER NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time INTEGER NOT NULL,
    last_updated_time INTEGER NOT NULL,
    completed_time INTEGER,
    parent_instance_id TEXT,
    tags TEXT,
    PRIMARY KEY(hub, instance_id)
);
CREATE INDEX IF NOT EXISTS instances_by_created
    ON instances(hub, created_time, instance_id);
CREATE INDEX IF NOT EXISTS instances_by_status
    ON instances(hub, status, created_time, instance_id);
CREATE INDEX IF NOT EXISTS instances_by_name
    ON instances(hub, name, created_time, instance_id);

CREATE TABLE IF NOT EXISTS history(
    hub TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY(hub, instance_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hub TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    visible_at INTEGER,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages(hub, instance_id);

CREATE TABLE IF NOT EXISTS activities(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hub TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    attempt INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_by_instance ON activities(hub, instance_id);

CREATE TABLE IF NOT EXISTS leases(
    hub TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
";

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // An acknowledged write must survive power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Every write job runs in a savepoint; its statement journal belongs in memory, not in a
    // temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The one read-write connection; creates the file and the schema if needed.
pub(super) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    // Before anything writes: switching to WAL alone would change another program's file.
    ensure_ours(&conn, path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(backend(format!(
            "could not switch {} to WAL (journal mode is {mode})",
            path.display()
        )));
    }
    configure(&conn).map_err(backend)?;
    // The writer touches every hot instance, history tail and queue page: keep them cached.
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(backend)?;
    // Checkpoints run on their own connection (see `checkpoint`), not inside the writer's
    // commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(backend)?;
    // A WAL that grew under a burst is cut back once it starts over.
    conn.pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)
        .map_err(backend)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Refuses a file that is neither empty nor a taskhub database: a mistyped path or connection
/// setting must not turn another application's database into ours (WAL, tables, a lease row).
/// Reading the schema also stops a file that is not SQLite at all, or whose first pages are
/// damaged, here, with its name, instead of at the first write.
fn ensure_ours(conn: &Connection, path: &Path) -> StoreResult<()> {
    let unreadable = |e: rusqlite::Error| {
        backend(format!(
            "{} cannot be read as a SQLite database ({e}); if it is a damaged taskhub database, restore it from a backup or move it aside",
            path.display()
        ))
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unreadable)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(unreadable)?;
    let ours = version >= 1 && tables.iter().any(|t| t == "instances");
    if tables.is_empty() || ours {
        return Ok(());
    }
    let mut listed = tables
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 5 {
        listed.push_str(", …");
    }
    Err(backend(format!(
        "{} is not a taskhub database (it holds other tables: {listed}); refusing to change it",
        path.display()
    )))
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(backend(format!(
            "database schema version {version} is newer than this taskhub understands \
             ({SCHEMA_VERSION})"
        )));
    }
    // Version 1 files have every table but `instances.tags`; CREATE ... IF NOT EXISTS leaves
    // their tables as they are, so the column is added here.
    let upgrade = if version == 1 {
        "ALTER TABLE instances ADD COLUMN tags TEXT;"
    } else {
        ""
    };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {DDL} {upgrade} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        backend(e)
    })
}

/// A connection for reads beside the writer (WAL gives it a stable snapshot per statement).
pub(super) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    configure(&conn).map_err(backend)?;
    // Read-write flags so that WAL shared memory can be set up, but no writes slip past the
    // single writer.
    conn.pragma_update(None, "query_only", "ON")
        .map_err(backend)?;
    Ok(conn)
}

/// A connection that only runs checkpoints.
pub(super) fn open_checkpointer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    configure(&conn).map_err(backend)?;
    Ok(conn)
}
