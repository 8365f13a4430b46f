//! The SQLite store: WAL journal, one writer connection per process (writers from other processes
//! wait on SQLite's lock), a small pool of readers, and batched statements on the hot path.
//!
//! Write transactions start with `BEGIN IMMEDIATE`, so two processes sharing a file never
//! deadlock on a lock upgrade. Durability: `synchronous = NORMAL` in WAL mode, which survives a
//! crash of the process (what lite mode promises) but may lose the last transactions on power
//! loss.

use super::rows::{
    CronRow, EventRow, RunRow, StepRow, WorkerRow, CRON_COLS, EVENT_COLS, STEP_COLS, WORKER_COLS,
};
use super::sql;
use super::state::{state_cols_of_r, ExpiredRow, Locked, Moves, Planned, StateRow, STATE_COLS};
use super::{
    from_micros, list_query, micros, page_of, CronRecord, Crons, Inserted, Maintenance, NewRun,
    Queue, Runs, Steps, Store, Tokens, WorkerRecord, Workers,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use owlclaw_core::lifecycle::Happening;
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::{
    Assignment, Completion, CronSchedule, ListFilter, Outcome, RunEvent, RunPage, RunSnapshot,
    StepCheckpoint, StepSnapshot, StepStatus, WorkerInfo, WorkerRegistration,
};
use owlclaw_core::{Error, Result, RunId, RunStatus};
use serde_json::{json, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

mod changes;
mod crons;
mod queue;
mod runs;
mod steps;
mod tokens;
mod workers;

use changes::*;
use runs::*;

type Tx = sqlx::Transaction<'static, Sqlite>;

/// Rows per multi-row statement.
const CHUNK: usize = 500;

/// A database error, with its cause kept.
fn db(e: sqlx::Error) -> Error {
    Error::Database {
        unavailable: matches!(
            e,
            sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed
        ),
        message: format!("sqlite: {e}"),
        source: Box::new(e),
    }
}

/// A SQLite database holding every table of the engine.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database at `url`: `sqlite://path/to/file.db`,
    /// `sqlite:relative.db` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::config("database_url", format!("{url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000")
            // Checkpoints run in the background (below), not inside a commit: an automatic
            // checkpoint fsyncs and made one commit in a few hundred take several milliseconds.
            .pragma("wal_autocheckpoint", if memory { "1000" } else { "0" })
            .pragma("journal_size_limit", "67108864");
        if !memory {
            let path = opts.get_filename().to_path_buf();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(
                        "database_url",
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
        }
        let connect = |max: u32| {
            SqlitePoolOptions::new()
                // A connection to a local file does not go stale: checking it with a query on
                // every acquire cost a round trip to the connection's thread per transaction.
                .test_before_acquire(false)
                .max_connections(max)
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(if memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(None)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
        };
        let write = connect(1).await.map_err(|e| Error::Connection {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let read = if memory {
            write.clone()
        } else {
            connect(4).await.map_err(db)?
        };
        let store = SqliteStore { write, read };
        store.migrate().await?;
        if !memory {
            tokio::spawn(checkpoint_loop(store.read.clone()));
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        use backon::Retryable;
        // Two processes opening a new file at once may race on the first migration; the loser
        // sees the tables already there on its next try.
        let policy = backon::ConstantBuilder::default()
            .with_delay(Duration::from_millis(50))
            .with_max_times(9);
        (|| sqlx::migrate!("./migrations/sqlite").run(&self.write))
            .retry(policy)
            .await
            .map_err(|e| Error::Internal(format!("migrating the SQLite database failed: {e}")))
    }

    async fn begin(&self) -> Result<Tx> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

/// Copies the WAL back into the database every second, off the commit path, until the store
/// closes. PASSIVE never blocks readers or the writer.
async fn checkpoint_loop(pool: SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row mapping

fn ids_json<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    Value::Array(
        items
            .into_iter()
            .map(|i| Value::String(i.to_string()))
            .collect(),
    )
    .to_string()
}

fn seqs_json(items: &[i64]) -> String {
    Value::Array(items.iter().map(|&i| json!(i)).collect()).to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn subscribe(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<super::Wake>>> {
        // One process per file in practice; other writers are noticed by polling.
        Ok(None)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}
