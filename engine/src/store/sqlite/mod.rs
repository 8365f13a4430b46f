//! The SQLite store: WAL journal, one writer thread per process that owns the write connection
//! and commits the operations waiting for it in one transaction (group commit; see [`db`]), two
//! reader threads, and batched statements on the hot path.
//!
//! Write transactions start with `BEGIN IMMEDIATE`, so two processes sharing a file never
//! deadlock on a lock upgrade. Durability: `synchronous = NORMAL` in WAL mode, which survives a
//! crash of the process (what lite mode promises) but may lose the last transactions on power
//! loss. An operation's caller is answered only after the transaction holding it has committed.

use super::rows::{
    CronRow, EventRow, RunRow, StepRow, WorkerRow, CRON_COLS, EVENT_COLS, STEP_COLS, WORKER_COLS,
};
use super::sql;
use super::state::{state_cols_of_r, ExpiredRow, Locked, Moves, Planned, StateRow, STATE_COLS};
use super::{
    count_query, from_micros, list_query, micros, page_of, CronRecord, Crons, Inserted,
    Maintenance, NewRun, Queue, Runs, Steps, Store, Tokens, WorkerRecord, Workers,
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
use rusqlite::{params, Connection, OptionalExtension, Params, Row};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod changes;
mod concurrency;
mod crons;
mod db;
mod events;
mod queue;
mod ratelimits;
mod runs;
mod steps;
mod tokens;
mod turns;
#[cfg(feature = "sqlx-sqlite")]
mod tx;
mod waits;
mod workers;
mod workflows;

use changes::*;
pub use db::StoreClosed;
use db::{Db, Location, OrDb};
use runs::*;

/// The migrations, in order: `PRAGMA user_version` is the last one applied.
const MIGRATIONS: [&str; 17] = [
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_api_tokens.sql"),
    include_str!("../../../migrations/sqlite/0003_steps.sql"),
    include_str!("../../../migrations/sqlite/0004_claim_requests.sql"),
    include_str!("../../../migrations/sqlite/0005_pushed_events.sql"),
    include_str!("../../../migrations/sqlite/0006_event_waits.sql"),
    include_str!("../../../migrations/sqlite/0007_concurrency.sql"),
    include_str!("../../../migrations/sqlite/0008_rate_limits.sql"),
    include_str!("../../../migrations/sqlite/0009_workflows.sql"),
    include_str!("../../../migrations/sqlite/0010_replays.sql"),
    include_str!("../../../migrations/sqlite/0011_cron_pause.sql"),
    include_str!("../../../migrations/sqlite/0012_expiries.sql"),
    include_str!("../../../migrations/sqlite/0013_links.sql"),
    include_str!("../../../migrations/sqlite/0014_cron_policies.sql"),
    include_str!("../../../migrations/sqlite/0015_queue_by_task.sql"),
    include_str!("../../../migrations/sqlite/0016_keys_in_leases.sql"),
    include_str!("../../../migrations/sqlite/0017_turns.sql"),
];

/// A SQLite database holding every table of the engine.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
}

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the database at `url`: `sqlite://path/to/file.db`,
    /// `sqlite:relative.db` or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let at = location(url)?;
        if let Location::File(path) = &at {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::config(
                        "database_url",
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
        }
        let opened = at.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let conn = db::connect(&opened, db::Role::Writer).map_err(|e| Error::Connection {
                url: url_of(&opened),
                message: e.to_string(),
            })?;
            migrate(&conn)?;
            Ok::<_, Error>(conn)
        })
        .await
        .map_err(|e| Error::Internal(format!("opening the SQLite database failed: {e}")))??;
        Ok(SqliteStore {
            db: Arc::new(Db::start(&at, writer)?),
        })
    }

    /// Runs `f` in the writer's transaction (see [`Db::write`]).
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.write(f).await
    }

    /// Runs `f` on a read connection.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.db.read(f).await
    }
}

/// The database a `sqlite:` URL names.
fn location(url: &str) -> Result<Location> {
    let bad = |why: &str| Error::config("database_url", format!("{url:?}: {why}"));
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| bad("a SQLite URL starts with sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let mut memory = path == ":memory:";
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("mode", "memory")) => memory = true,
            Some(("mode", "rwc" | "rw")) | Some(("cache", _)) => {}
            _ => return Err(bad(&format!("unsupported option {pair:?}"))),
        }
    }
    if memory {
        return Ok(Location::Memory);
    }
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err(bad("no file named"));
    }
    Ok(Location::File(path.into()))
}

fn url_of(at: &Location) -> String {
    match at {
        Location::Memory => "sqlite::memory:".into(),
        Location::File(p) => format!("sqlite://{}", p.display()),
    }
}

/// Applies the migrations not applied yet, each in its own transaction. A database created by
/// an earlier version (migrated by sqlx, which records them in `_sqlx_migrations`) continues
/// from the last one it recorded.
fn migrate(conn: &Connection) -> Result<()> {
    let mut version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .db()?;
    if version == 0 {
        let sqlx_table: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
                [],
                |r| r.get(0),
            )
            .db()?;
        if sqlx_table {
            version = conn
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
                    [],
                    |r| r.get(0),
                )
                .db()?;
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i64 + 1;
        if v <= version {
            continue;
        }
        // Another process may be migrating the same new file: the lock serializes the two, and
        // the version read under it tells the second that there is nothing left to do.
        conn.execute_batch("BEGIN IMMEDIATE").db()?;
        let done = (|| {
            let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if now < v {
                conn.execute_batch(sql)?;
                conn.pragma_update(None, "user_version", v)?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = done {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::Internal(format!(
                "migrating the SQLite database to version {v} failed: {e}"
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statements

/// Runs a (cached) statement; returns the rows it changed.
fn exec(conn: &Connection, sql: &str, p: impl Params) -> Result<usize> {
    conn.prepare_cached(sql).db()?.execute(p).db()
}

/// Every row of a (cached) query.
fn all<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let rows = stmt.query_map(p, f).db()?;
    rows.collect::<rusqlite::Result<Vec<T>>>().db()
}

/// The first row of a (cached) query, if any.
fn one<T>(
    conn: &Connection,
    sql: &str,
    p: impl Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    conn.prepare_cached(sql)
        .db()?
        .query_row(p, f)
        .optional()
        .db()
}

impl rusqlite::ToSql for sql::Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            sql::Param::Text(t) => t.as_str().into(),
            sql::Param::Int(i) => (*i).into(),
        })
    }
}

/// A shared statement ([`sql::Stmt`]) run on SQLite: its `$n` placeholders are bound in order.
fn exec_stmt(conn: &Connection, stmt: &sql::Stmt) -> Result<usize> {
    exec(conn, &stmt.sql, rusqlite::params_from_iter(&stmt.params))
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

    #[cfg(feature = "sqlx-sqlite")]
    async fn insert_in_sqlite(
        &self,
        conn: &mut sqlx::SqliteConnection,
        runs: Vec<NewRun>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        self.insert_in_app_tx(conn, runs, now).await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).db())
            .await
    }

    async fn close(&self) {
        self.db.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database created and migrated by an earlier version (sqlx, which records what it applied
    /// in `_sqlx_migrations`) opens without applying a migration twice, and works.
    #[tokio::test]
    async fn a_database_migrated_by_sqlx_continues_from_what_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in MIGRATIONS {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
                 checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
            )
            .unwrap();
            for v in 1..=MIGRATIONS.len() as i64 {
                conn.execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES (?1, 'm', 1, x'00', 0)",
                    params![v],
                )
                .unwrap();
            }
        }
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url)
            .await
            .expect("an sqlx-migrated database opens");
        store
            .create_token("hash", "t", Utc::now())
            .await
            .expect("and takes writes");
        assert_eq!(
            store.token_tenant("hash").await.unwrap().as_deref(),
            Some("t")
        );
        store.close().await;
    }

    #[test]
    fn urls_name_a_file_or_memory_and_refuse_unknown_options() {
        assert!(matches!(location("sqlite::memory:"), Ok(Location::Memory)));
        assert!(matches!(
            location("sqlite://a/b.db?mode=rwc"),
            Ok(Location::File(p)) if p == std::path::Path::new("a/b.db")
        ));
        assert!(matches!(
            location("sqlite:///abs/c.db"),
            Ok(Location::File(p)) if p == std::path::Path::new("/abs/c.db")
        ));
        let err = location("sqlite://x.db?journal=off").unwrap_err();
        assert!(err.to_string().contains("database_url"), "{err}");
        assert!(err.to_string().contains("journal=off"), "{err}");
    }
}
