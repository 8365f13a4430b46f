//! The threads that own the SQLite connections.
//!
//! - **The writer**: one thread owns the only write connection. Callers send it closures through
//!   one channel; it takes every closure waiting (up to [`MAX_BATCH`]) and runs them in ONE
//!   transaction (group commit), each inside a savepoint so that one failing rolls back only its
//!   own writes, then answers each caller after the commit. A batch costs one wake-up of the
//!   writer and one of each caller, however many statements it runs: the hot path (a worker's
//!   report and claim) no longer hops between threads once per statement.
//! - **Readers** (files only): two threads with a read connection each take reads from a shared
//!   channel, so a long list does not hold up the writer. An in-memory database is one connection:
//!   its reads go to the writer.
//! - **The checkpointer** (files only): copies the WAL back into the database (`PASSIVE`, never
//!   blocking readers or the writer), off the commit path: every 100 ms while the writer commits,
//!   every second once it has not committed since the last pass. (It went by the WAL's length
//!   before: a pass that found the WAL just started over, empty, took the writer for idle and
//!   waited a second, in which a writer that never pauses wrote hundreds of megabytes.) It cannot
//!   bring the WAL back to its start by itself: SQLite writes from the start again only when a
//!   write transaction begins with the whole WAL copied, which under a steady load never happens
//!   while the writer keeps appending (in a drain of 100,000 runs the WAL grew to 450 MB, and to
//!   1.8 GB under a concurrency limit). So once the WAL holds [`RESTART_FRAMES`], the checkpointer
//!   asks the writer to copy what is left itself between two batches (a few frames, the
//!   checkpointer having just copied the rest); its next transaction then starts the WAL over,
//!   unless a reader still reads an older snapshot from it (tried again next time). A request the
//!   writer has not taken by the checkpointer's next pass found it idle: the checkpointer takes it
//!   back and copies the frames left itself.

use owlclaw_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Closures per transaction at most.
const MAX_BATCH: usize = 256;
/// Read threads of a file database.
const READERS: usize = 2;
/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The checkpointer's pause when the writer did not commit since its last pass.
const IDLE_CHECKPOINTS: Duration = Duration::from_secs(1);
/// Its pause while the writer commits.
const BUSY_CHECKPOINTS: Duration = Duration::from_millis(100);
/// Frames (pages) in the WAL beyond which the writer is asked to let it start over: 16 MiB, well
/// under `journal_size_limit`, so the file is written over in place, not cut and grown again.
const RESTART_FRAMES: i64 = 4096;
/// The checkpointer's request to the writer: none (the checkpointer may run) …
const IDLE: u8 = 0;
/// … asked (the checkpointer waits) …
const ASKED: u8 = 1;
/// … being done by the writer (the checkpointer waits).
const TAKEN: u8 = 2;

/// What the writer and the checkpointer share.
#[derive(Debug, Default)]
struct Wal {
    /// The checkpointer's request to the writer: [`IDLE`], [`ASKED`] or [`TAKEN`].
    restart: AtomicU8,
    /// The writer's commits so far, for the checkpointer to tell a busy writer from an idle one.
    commits: AtomicU64,
}

/// A closure run by the writer inside the batch's transaction: returns whether it succeeded (its
/// savepoint is released or rolled back) and how to answer its caller once the batch commits.
/// Given no connection (the transaction could not start), it runs nothing and only gives its
/// answer's channel.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> (bool, Deliver) + Send>;
/// Answers a caller with the commit's outcome.
type Deliver = Box<dyn FnOnce(std::result::Result<(), Arc<rusqlite::Error>>) + Send>;
/// A closure run on a read connection.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The store was closed: what calls made after [`Db::close`] fail with, as their error's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreClosed;

impl std::fmt::Display for StoreClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the SQLite store is closed")
    }
}

impl std::error::Error for StoreClosed {}

/// A driver error shared by every caller of a batch whose commit failed.
#[derive(Debug)]
struct Shared(Arc<rusqlite::Error>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Whether SQLite's error means the database could not be reached (locked by another process
/// beyond the busy timeout, unopenable, or gone) rather than a bad statement.
fn is_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | DiskFull | NotADatabase
        )
    )
}

/// A database error, with its cause kept.
pub(super) fn db(e: rusqlite::Error) -> Error {
    Error::Database {
        unavailable: is_unavailable(&e),
        message: format!("sqlite: {e}"),
        source: Box::new(e),
    }
}

fn shared(e: Arc<rusqlite::Error>) -> Error {
    Error::Database {
        unavailable: is_unavailable(&e),
        message: format!("sqlite: {e}"),
        source: Box::new(Shared(e)),
    }
}

fn closed() -> Error {
    Error::Database {
        unavailable: true,
        message: "sqlite: the store is closed".into(),
        source: Box::new(StoreClosed),
    }
}

/// `rusqlite` results into the engine's errors.
pub(super) trait OrDb<T> {
    fn db(self) -> Result<T>;
}

impl<T> OrDb<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(db)
    }
}

/// Where the database is.
#[derive(Debug, Clone)]
pub(super) enum Location {
    File(PathBuf),
    Memory,
}

/// What a connection is for: its open flags and the page cache it can make use of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The one connection that writes: its cache holds the pages every claim and completion
    /// touch (the queue, the tail of each index).
    Writer,
    /// A read connection. Its cache is dropped whenever another connection has written since
    /// its last read, which in a busy engine is every read: a large one only costs memory.
    Reader,
    /// The checkpointer: it copies the WAL into the database without going through the cache.
    Checkpointer,
}

impl Role {
    /// `PRAGMA cache_size`, in KiB when negative. The writer's hot pages (the queue, the tail of
    /// each index) fit in 4 MiB: it drained as fast as with 32 MiB, also with 200,000 finished
    /// runs in the store, and the lite benchmark's peak RSS fell from 39.6 to 28.5 MiB.
    fn cache_size(self) -> i64 {
        match self {
            Role::Writer => -4_000,
            Role::Reader | Role::Checkpointer => -2_000,
        }
    }
}

/// Opens a connection with the engine's settings.
pub(super) fn connect(at: &Location, role: Role) -> rusqlite::Result<Connection> {
    let read_only = role == Role::Reader;
    let conn = match at {
        Location::Memory => Connection::open_in_memory()?,
        Location::File(path) => {
            let flags = if read_only {
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
            } else {
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
            };
            Connection::open_with_flags(path, flags)?
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(128);
    if !read_only {
        if matches!(at, Location::File(_)) {
            conn.pragma_update(None, "journal_mode", "wal")?;
            // Checkpoints run in the checkpointer, not inside a commit: an automatic checkpoint
            // fsyncs and made one commit in a few hundred take several milliseconds.
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", 67_108_864)?;
        }
        // Survives a crash of the process (what lite mode promises); may lose the last
        // transactions on power loss.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.pragma_update(None, "cache_size", role.cache_size())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// The channels to the connections' threads.
#[derive(Debug)]
struct Channels {
    writer: Sender<WriteJob>,
    readers: Option<Sender<ReadJob>>,
    /// Dropped to stop the checkpointer.
    _checkpoints: Option<Sender<()>>,
}

/// The handle every clone of the store shares.
#[derive(Debug)]
pub(super) struct Db {
    channels: Mutex<Option<Channels>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// What the writer and the checkpointer share (tests set the request).
    #[cfg(test)]
    wal: Arc<Wal>,
}

impl Db {
    /// Starts the threads on `writer`, an open and migrated connection.
    pub(super) fn start(at: &Location, writer: Connection) -> Result<Db> {
        let mut threads = Vec::new();
        let (wtx, wrx) = mpsc::channel::<WriteJob>();
        // See the module's doc.
        let wal = Arc::new(Wal::default());
        let wants = wal.clone();
        #[cfg(test)]
        let asked = wal.clone();
        threads.push(spawn("owlclaw-sqlite-writer", move || {
            write_loop(writer, wrx, &wants)
        })?);
        let (readers, checkpoints) = match at {
            Location::Memory => (None, None),
            Location::File(_) => {
                let (rtx, rrx) = mpsc::channel::<ReadJob>();
                let rrx = Arc::new(Mutex::new(rrx));
                for i in 0..READERS {
                    let conn = connect(at, Role::Reader).map_err(db)?;
                    let rrx = rrx.clone();
                    threads.push(spawn(&format!("owlclaw-sqlite-read-{i}"), move || {
                        read_loop(conn, rrx)
                    })?);
                }
                let (ctx, crx) = mpsc::channel::<()>();
                let conn = connect(at, Role::Checkpointer).map_err(db)?;
                threads.push(spawn("owlclaw-sqlite-checkpoint", move || {
                    checkpoint_loop(conn, crx, &wal)
                })?);
                (Some(rtx), Some(ctx))
            }
        };
        Ok(Db {
            channels: Mutex::new(Some(Channels {
                writer: wtx,
                readers,
                _checkpoints: checkpoints,
            })),
            threads: Mutex::new(threads),
            #[cfg(test)]
            wal: asked,
        })
    }

    /// Runs `f` in the writer's transaction; answers once that transaction has committed. An
    /// error from `f` rolls back its own writes only.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                None => Err(closed()),
                Some(conn) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))) {
                    Ok(r) => r,
                    Err(_) => Err(Error::Internal(
                        "a SQLite store operation panicked; its writes were rolled back".into(),
                    )),
                },
            };
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(shared(e)),
                });
            });
            (ok, deliver)
        });
        {
            let channels = self.channels.lock().unwrap();
            let sender = channels.as_ref().ok_or_else(closed)?;
            sender.writer.send(job).map_err(|_| closed())?;
        }
        rx.await.map_err(|_| closed())?
    }

    /// Runs `f` on a read connection (the writer's, for an in-memory database).
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = {
            let channels = self.channels.lock().unwrap();
            let channels = channels.as_ref().ok_or_else(closed)?;
            channels.readers.clone()
        };
        let Some(readers) = readers else {
            return self.write(f).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: ReadJob = Box::new(move |conn| {
            let result = match std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))) {
                Ok(r) => r,
                Err(_) => Err(Error::Internal("a SQLite read panicked".into())),
            };
            let _ = tx.send(result);
        });
        readers.send(job).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Stops taking work, lets the threads finish what they hold, and waits for them.
    pub(super) async fn close(&self) {
        drop(self.channels.lock().unwrap().take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| Error::Internal(format!("cannot start the thread {name}: {e}")))
}

/// The writer: one transaction per batch of the closures waiting; between two batches, the
/// rest of a checkpoint when the checkpointer asks for it.
fn write_loop(conn: Connection, jobs: Receiver<WriteJob>, wal: &Wal) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut delivers: Vec<Deliver> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = tx_statement(&conn, "BEGIN IMMEDIATE") {
            let e = Arc::new(e);
            for job in batch.drain(..) {
                // Not run: answer with the error, through the job's own channel.
                let (_, deliver) = job(None);
                deliver(Err(e.clone()));
            }
            continue;
        }
        let alone = batch.len() == 1;
        let mut failed_alone = false;
        for job in batch.drain(..) {
            if alone {
                let (ok, deliver) = job(Some(&conn));
                failed_alone = !ok;
                delivers.push(deliver);
                continue;
            }
            if let Err(e) = tx_statement(&conn, "SAVEPOINT job") {
                let (_, deliver) = job(None);
                deliver(Err(Arc::new(e)));
                continue;
            }
            let (ok, deliver) = job(Some(&conn));
            let end = if ok {
                tx_statement(&conn, "RELEASE job")
            } else {
                tx_statement(&conn, "ROLLBACK TO job")
                    .and_then(|()| tx_statement(&conn, "RELEASE job"))
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "closing a savepoint failed");
            }
            delivers.push(deliver);
        }
        let end = if failed_alone {
            tx_statement(&conn, "ROLLBACK")
        } else {
            tx_statement(&conn, "COMMIT")
        };
        let committed = match end {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(Arc::new(e))
            }
        };
        for deliver in delivers.drain(..) {
            deliver(committed.clone());
        }
        wal.commits.fetch_add(1, Ordering::Relaxed);
        if wal
            .restart
            .compare_exchange(ASKED, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // No frame is added while it runs: it copies them all, unless a reader holds an
            // older snapshot, and the next batch writes the WAL from its start.
            if let Err(e) = checkpoint(&conn) {
                tracing::debug!(error = %e, "WAL checkpoint in the writer failed");
            }
            wal.restart.store(IDLE, Ordering::Release);
        }
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: the frames in the WAL after it.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// Runs one of the writer's transaction statements (`BEGIN`, `COMMIT`, savepoints), prepared
/// once: `execute_batch` would parse it again on every batch.
fn tx_statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn read_loop(conn: Connection, jobs: Arc<Mutex<Receiver<ReadJob>>>) {
    loop {
        let job = match jobs.lock().unwrap().recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job(&conn);
    }
}

/// The checkpointer: see the module's doc.
fn checkpoint_loop(conn: Connection, stop: Receiver<()>, wal: &Wal) {
    let (mut pause, mut commits) = (BUSY_CHECKPOINTS, 0);
    loop {
        match stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // Two checkpoints at once, one fails: while the writer does its part, this waits. A
        // request still not taken a whole pause later found the writer idle (it takes it after
        // its next batch, milliseconds away under load): taken back, so that the frames left
        // are copied now rather than whenever the writer next writes.
        if wal
            .restart
            .compare_exchange(ASKED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_err_and(|now| now == TAKEN)
        {
            continue;
        }
        let now = wal.commits.load(Ordering::Relaxed);
        pause = if now == commits {
            IDLE_CHECKPOINTS
        } else {
            BUSY_CHECKPOINTS
        };
        commits = now;
        // Twice: the second copies what the writer added during the first, fewer frames, and
        // leaves the writer fewer still.
        match checkpoint(&conn).and_then(|_| checkpoint(&conn)) {
            Ok(frames) => {
                if frames >= RESTART_FRAMES {
                    wal.restart.store(ASKED, Ordering::Release);
                }
            }
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: usize = 256 * 1024;

    /// A database file with a table of blobs, and its threads.
    fn blobs(dir: &tempfile::TempDir) -> (PathBuf, Db) {
        let path = dir.path().join("blobs.db");
        let at = Location::File(path.clone());
        let conn = connect(&at, Role::Writer).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        (path, Db::start(&at, conn).unwrap())
    }

    /// Writes the blob `id` (`BLOB` bytes) in a batch of its own.
    async fn write_blob(db: &Db, id: usize) {
        db.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO t (id, b) VALUES (?1, zeroblob(?2))",
                rusqlite::params![id, BLOB],
            )
            .db()
        })
        .await
        .unwrap();
    }

    /// A request to the writer that it does not take (it wrote its last batch just before the
    /// request) is taken back by the checkpointer, which copies the frames left into the
    /// database: an idle store does not keep part of its data in the WAL until its next write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_leaves_the_wal_to_the_checkpointer() {
        const WRITTEN: usize = 24 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = blobs(&dir);
        for i in 0..WRITTEN / BLOB {
            write_blob(&db, i).await;
        }
        // As the checkpointer asks when the WAL is long, here once the writer is idle: it looks
        // for a request right after delivering a batch's answers, so the last answer may come
        // back before it has looked (and it would do the checkpoint itself). Whichever does it,
        // the test passes; the pause only makes it test the idle writer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        db.wal.restart.store(ASKED, Ordering::Release);
        let copied = || std::fs::metadata(&path).unwrap().len() >= WRITTEN as u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !copied() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let size = std::fs::metadata(&path).unwrap().len();
        db.close().await;
        assert!(
            size >= WRITTEN as u64,
            "the database file holds {size} bytes of the {WRITTEN} written"
        );
    }

    /// Under writes that never pause, the WAL still starts over: without the writer's part of
    /// the checkpoint it only grew (to all that was written here; 1.8 GB in a drain of 100,000
    /// runs), since SQLite starts a WAL over only when a write transaction begins with all of
    /// it copied. The writes go on for at least 512 MiB and 3 seconds (many of the
    /// checkpointer's passes, however fast the disk).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        const WRITTEN: usize = 512 * 1024 * 1024;
        const LIMIT: u64 = 128 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = blobs(&dir);
        let started = std::time::Instant::now();
        let mut written = 0;
        while written < WRITTEN || started.elapsed() < Duration::from_secs(3) {
            write_blob(&db, written / BLOB % 16).await;
            written += BLOB;
        }
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .unwrap()
            .len();
        db.close().await;
        // Started over, it is cut to `journal_size_limit` (64 MiB), then grows by what is
        // written until the next start: far less than all that was written.
        assert!(
            wal < LIMIT,
            "the WAL holds {wal} bytes after {written} written"
        );
    }
}
