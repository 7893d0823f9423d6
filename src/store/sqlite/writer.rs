//! Group commit: one thread owns the write connection and runs every waiting job in one
//! transaction, so a batch of writes costs one fsync.
//!
//! Each job runs inside its own savepoint: a job that fails is rolled back alone and gets its
//! error, the others commit. A job's caller hears back only after COMMIT returned, and the job's
//! in-memory effects are applied on this thread in commit order, right after the commit, so that
//! memory never runs ahead of the disk nor lags behind the next batch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpoint::WalSize;
use super::codec::backend;
use crate::store::{StoreError, StoreResult};

/// Upper bound on jobs per transaction: keeps one batch's latency and WAL growth bounded.
const MAX_BATCH: usize = 512;

/// How often an idle writer looks for commits made by other connections (another process or
/// handle on the same file).
const POLL: Duration = Duration::from_millis(75);

pub(super) trait Job: Send {
    /// The SQL part, inside the batch transaction and the job's savepoint.
    fn run(&mut self, conn: &Connection) -> StoreResult<()>;
    /// Called after COMMIT with `Ok`, or with the error that rolled the job back.
    fn finish(self: Box<Self>, outcome: StoreResult<()>);
}

/// Hooks the writer thread calls between batches.
pub(super) trait Hooks: Send + 'static {
    /// Another connection committed since the last call.
    fn foreign_change(&mut self, conn: &Connection);
    /// The writer is shutting down; last chance to write (e.g. give up leases).
    fn shutdown(&mut self, conn: &Connection);
}

/// A job from two closures: `work` does the SQL, `done` turns its result into the reply and
/// applies in-memory effects (or undoes in-memory claims when the job failed).
struct Call<T, R, W, D> {
    work: Option<W>,
    done: Option<D>,
    out: Option<T>,
    reply: Option<oneshot::Sender<StoreResult<R>>>,
}

impl<T, R, W, D> Job for Call<T, R, W, D>
where
    T: Send,
    R: Send,
    W: FnOnce(&Connection) -> StoreResult<T> + Send,
    D: FnOnce(StoreResult<T>) -> StoreResult<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> StoreResult<()> {
        let work = self
            .work
            .take()
            .ok_or_else(|| backend("write job ran twice"))?;
        self.out = Some(work(conn)?);
        Ok(())
    }

    fn finish(mut self: Box<Self>, outcome: StoreResult<()>) {
        let result = outcome.and_then(|()| {
            self.out
                .take()
                .ok_or_else(|| backend("write job has no result"))
        });
        if let Some(done) = self.done.take() {
            let reply = catch_unwind(AssertUnwindSafe(|| done(result)))
                .unwrap_or_else(|_| Err(backend("write job panicked after commit")));
            if let Some(tx) = self.reply.take() {
                // The caller may have given up waiting; the write stands regardless.
                let _ = tx.send(reply);
            }
        }
    }
}

pub(super) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(conn: Connection, hooks: impl Hooks, wal: Arc<WalSize>) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, hooks, &wal))
            .map_err(backend)?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch and `done` after it committed (or failed), both on the
    /// writer thread; resolves to `done`'s result once the batch is durable.
    pub async fn call<T, R, W, D>(&self, work: W, done: D) -> StoreResult<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        W: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
        D: FnOnce(StoreResult<T>) -> StoreResult<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Call {
            work: Some(work),
            done: Some(done),
            out: None,
            reply: Some(reply),
        });
        let stopped = || backend("the SQLite writer thread has stopped");
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel tells the thread to finish its queue and stop.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn data_version(conn: &Connection) -> Option<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
        .ok()
}

/// Notices commits by other connections: `PRAGMA data_version` changes only for those.
struct ForeignWatch {
    seen: Option<i64>,
    last_check: Instant,
}

impl ForeignWatch {
    fn check(&mut self, conn: &Connection, hooks: &mut impl Hooks) {
        self.last_check = Instant::now();
        let version = data_version(conn);
        if version != self.seen {
            self.seen = version;
            hooks.foreign_change(conn);
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, mut hooks: impl Hooks, wal: &WalSize) {
    let mut watch = ForeignWatch {
        seen: data_version(&conn),
        last_check: Instant::now(),
    };
    loop {
        let first = match rx.recv_timeout(POLL) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                watch.check(&conn, &mut hooks);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch);
        if wal.needs_restart() {
            wal.restart(&conn);
        }
        // Under steady load the channel never idles, so also look between batches.
        if watch.last_check.elapsed() >= POLL {
            watch.check(&conn, &mut hooks);
        }
    }
    hooks.shutdown(&conn);
}

fn exec(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(backend)
}

fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) {
    let fail_all = |batch: Vec<Box<dyn Job>>, err: StoreError| {
        for job in batch {
            job.finish(Err(err.clone()));
        }
    };
    let began = std::time::Instant::now();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return fail_all(batch, e);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        match run_in_savepoint(conn, job.as_mut()) {
            Ok(outcome) => outcomes.push(outcome),
            Err(fatal) => {
                let _ = conn.execute_batch("ROLLBACK");
                return fail_all(batch, fatal);
            }
        }
    }
    if let Err(e) = exec(conn, "COMMIT") {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return fail_all(batch, e);
    }
    let m = crate::metrics::metrics();
    m.commit_duration.observe(began.elapsed().as_secs_f64());
    m.commit_batch.observe(batch.len() as f64);
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        job.finish(outcome);
    }
}

/// The outer `Err` means the transaction itself is broken and the whole batch must go.
fn run_in_savepoint(conn: &Connection, job: &mut dyn Job) -> StoreResult<StoreResult<()>> {
    exec(conn, "SAVEPOINT job")?;
    let outcome = catch_unwind(AssertUnwindSafe(|| job.run(conn)))
        .unwrap_or_else(|_| Err(backend("write job panicked")));
    if outcome.is_err() {
        exec(conn, "ROLLBACK TO job")?;
    }
    exec(conn, "RELEASE job")?;
    Ok(outcome)
}
