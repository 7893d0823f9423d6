//! WAL checkpoints on their own thread and connection, so that copying pages back into the
//! database file and syncing it mostly happens beside the writer's commits.
//!
//! A checkpoint running beside a busy writer never catches up with the end of the WAL, and the
//! WAL only starts over once a checkpoint did. So when the WAL has grown past
//! [`RESTART_FRAMES`], the writer runs one last checkpoint itself between two batches (see
//! [`WalSize::restart`]): with nothing being appended it finishes, copying only what the
//! background checkpoints had not copied yet, and the next write starts the WAL over.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::codec::backend;
use super::schema::open_checkpointer;
use crate::store::StoreResult;

const INTERVAL: Duration = Duration::from_millis(500);

/// WAL length (in pages) beyond which the writer checkpoints itself.
const RESTART_FRAMES: i64 = 4096;

/// How long the WAL is, as the last checkpoint saw it.
#[derive(Default)]
pub(super) struct WalSize(AtomicI64);

impl WalSize {
    pub fn needs_restart(&self) -> bool {
        self.0.load(Ordering::Relaxed) > RESTART_FRAMES
    }

    /// Background checkpoint. Even when it copied everything, the WAL keeps its length: the
    /// writer was most likely inside a transaction meanwhile, and the WAL only starts over when
    /// a write transaction begins on a fully checkpointed WAL.
    fn background(&self, conn: &Connection) {
        match passive_checkpoint(conn) {
            Ok((log, _)) => self.0.store(log, Ordering::Relaxed),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    }

    /// Checkpoint by the writer, on its own connection, between transactions: when it copies
    /// everything, the writer's next transaction starts the WAL over.
    pub fn restart(&self, conn: &Connection) {
        match passive_checkpoint(conn) {
            Ok((log, done)) => self
                .0
                .store(if log == done { 0 } else { log }, Ordering::Relaxed),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
    }
}

/// `(pages in the WAL, pages copied)`; PASSIVE never waits for readers or the writer.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn spawn(path: &Path, wal: Arc<WalSize>) -> StoreResult<Self> {
        let conn = open_checkpointer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, stopped, &wal))
            .map_err(backend)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, stopped: mpsc::Receiver<()>, wal: &WalSize) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        wal.background(&conn);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
