//! The PostgreSQL store: the scale-out store, shared by any number of engine replicas.
//!
//! Same tables and semantics as the SQLite store (see `migrations/postgres`). What differs is
//! how concurrent engines are kept apart:
//!
//! - **Claims, promotions and lease expiry never wait.** They pick rows of the narrow `queue`,
//!   `timers` and `leases` tables with `FOR UPDATE SKIP LOCKED`, then lock the runs behind them
//!   the same way, and work on whole batches in one statement (arrays, `UNNEST`, data-modifying
//!   CTEs). Two replicas therefore never hand out the same run or expire the same lease twice,
//!   and neither blocks the other.
//! - **Every other change locks the run row first** (`SELECT ... FOR UPDATE`, in `seq` order
//!   when there are several), re-reads its state and only then touches `queue`, `timers` and
//!   `leases`. As the skipping side never waits, the two orders cannot deadlock; the rare
//!   deadlock or serialization failure left (e.g. a worker deregistering while its completions
//!   are applied) is retried as a whole transaction.
//! - **Wake-ups** travel by `LISTEN/NOTIFY` on the [`CHANNEL`] channel: a transaction that makes
//!   runs ready notifies `work`, one that creates or changes timers and crons `timers`, one that
//!   finishes or cancels runs `finished` ([`Store::subscribe`] maps them to [`Wake`]s). NOTIFY is
//!   transactional: sent at commit, identical payloads of one transaction merged, and folded
//!   into a statement the transaction runs anyway where possible. Polling stays the fallback.
//!
//! Hot path: a claim is one statement; a batch of successful completions plus the claim for the
//! freed slots is one statement too (`complete_and_claim`).

use super::rows::{
    json_text, CronRow, EventRow, RunRow, StepRow, WorkerRow, CRON_COLS, EVENT_COLS, STEP_COLS,
    WORKER_COLS,
};
use super::sql;
use super::state::{ExpiredRow, Locked, Moves, Planned, StateRow, STATE_COLS};
use super::{
    count_query, cursor_seq, filter_where, from_micros, list_query, micros, page_limit, page_of,
    CronRecord, Crons, Inserted, Maintenance, NewRun, Queue, Runs, Steps, Store, Tokens, Wake,
    WorkerRecord, Workers,
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
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Row};
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

mod changes;
mod concurrency;
mod crons;
mod events;
mod queue;
mod ratelimits;
mod runs;
mod steps;
mod tokens;
mod vacuum;
mod waits;
mod wakes;
mod workers;
mod workflows;

use changes::*;
use runs::*;
use wakes::*;

/// The `LISTEN/NOTIFY` channel of wake-ups. Payloads: `work`, `timers`, `finished`.
pub const CHANNEL: &str = "owlclaw";

/// Connections per store (per engine process).
const POOL_SIZE: u32 = 10;

/// How often a transaction is tried when PostgreSQL reports a deadlock or a serialization
/// failure.
const TX_ATTEMPTS: u32 = 5;

// ---------------------------------------------------------------------------------------------
// Errors

/// What stopped one attempt of a transaction: a database error (maybe worth a retry) or one of
/// ours (a refusal, a conflict).
enum Fail {
    Db(sqlx::Error),
    Owl(Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Owl(e)
    }
}

type R<T> = std::result::Result<T, Fail>;

/// Where the store connects, for error messages: the URL with its passwords hidden, and the
/// passwords themselves so that they can be scrubbed from any message that might quote them.
#[derive(Clone)]
struct Place {
    shown: String,
    secrets: Vec<String>,
}

impl Place {
    fn new(url: &str) -> Place {
        let (shown, found) = redact(url);
        let mut secrets = Vec::new();
        for s in found {
            let decoded = percent_decode(&s);
            // Very short ones would garble every message; they are not in the shown URL anyway.
            for v in [s, decoded] {
                if v.len() >= 4 && !secrets.contains(&v) {
                    secrets.push(v);
                }
            }
        }
        Place { shown, secrets }
    }

    fn scrub(&self, message: String) -> String {
        self.secrets
            .iter()
            .fold(message, |m, s| m.replace(s.as_str(), "***"))
    }

    /// The one mapping of database errors: `Error::Database` with the driver's error as its
    /// source, unavailable when it is a connection failure.
    fn db(&self, e: sqlx::Error) -> Error {
        Error::Database {
            unavailable: is_connection_error(&e),
            message: self.scrub(format!("postgres: {e}")),
            source: Box::new(e),
        }
    }
}

/// `url` with the password of its user info and of a `password=` parameter replaced by `***`
/// (as `crate::redact_url` does for the first), and the passwords found.
fn redact(url: &str) -> (String, Vec<String>) {
    let mut found = Vec::new();
    let Some((scheme, rest)) = url.split_once("://") else {
        return (crate::redact_url(url), found);
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let main = match main.rfind('@') {
        Some(at) => {
            let (creds, host) = (&main[..at], &main[at + 1..]);
            match creds.split_once(':') {
                Some((user, pw)) => {
                    if !pw.is_empty() {
                        found.push(pw.to_string());
                    }
                    format!("{user}:***@{host}")
                }
                None => main.to_string(),
            }
        }
        None => main.to_string(),
    };
    let mut shown = format!("{scheme}://{main}");
    if let Some(q) = query {
        let (q, fragment) = match q.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (q, None),
        };
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("password") => {
                    if !v.is_empty() {
                        found.push(v.to_string());
                    }
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
        if let Some(f) = fragment {
            shown.push('#');
            shown.push_str(f);
        }
    }
    (shown, found)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // connection_exception, admin/crash shutdown, cannot_connect_now,
            // too_many_connections, authentication failures, no such database
            c.starts_with("08")
                || matches!(
                    c.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "28000" | "28P01" | "3D000"
                )
        }),
        _ => false,
    }
}

/// A deadlock or a serialization failure: the transaction was rolled back and may be retried.
fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c == "40P01" || c == "40001"))
}

/// PostgreSQL text cannot hold NUL characters: free text (error messages, worker names) is
/// stored with them replaced.
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// Identifiers that cannot be altered are refused when they hold a NUL character.
fn no_nul(field: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(v) if v.contains('\0') => Err(Error::invalid_input(
            field,
            format!("{v:?} must not contain a NUL character"),
        )),
        _ => Ok(()),
    }
}

/// The parameters of a shared statement ([`sql::Stmt`]), bound in order.
fn args(params: &[sql::Param]) -> sqlx::Result<sqlx::postgres::PgArguments> {
    use sqlx::Arguments;
    let mut args = sqlx::postgres::PgArguments::default();
    for p in params {
        match p {
            sql::Param::Text(t) => args.add(t.as_str()),
            sql::Param::Int(i) => args.add(*i),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// A shared statement as a query with its parameters bound.
fn stmt(
    q: &sql::Stmt,
) -> sqlx::Result<sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>> {
    Ok(sqlx::query_with(&q.sql, args(&q.params)?))
}

// ---------------------------------------------------------------------------------------------
// The store

/// A PostgreSQL database holding every table of the engine, shared by any number of engines.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    opts: PgConnectOptions,
    place: Place,
    /// The single-connection pools of the wake-up listeners, closed with the store.
    listeners: std::sync::Arc<Mutex<Vec<PgPool>>>,
    vacuum: std::sync::Arc<vacuum::Vacuum>,
    vacuum_runs: std::sync::Arc<vacuum::Vacuum>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connect options: they hold the password.
        f.debug_struct("PostgresStore")
            .field("url", &self.place.shown)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?...`), migrates the
    /// database and opens a pool of connections.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let place = Place::new(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| {
                Error::config(
                    "database_url",
                    format!("{:?}: {}", place.shown, place.scrub(e.to_string())),
                )
            })?
            .application_name("owlclaw")
            // The engine's statements are prepared once per connection and run with keys that
            // don't change their best plan; planning the hot path's statement (one CTE of a
            // dozen parts) again for each execution, as PostgreSQL does for the first five
            // and whenever a custom plan looks cheaper, cost about a quarter of the database's
            // CPU per drained run in the benchmark.
            .options([("plan_cache_mode", "force_generic_plan")]);
        // Migrations run on a connection of their own, closed afterwards. sqlx's PostgreSQL
        // migrator takes a session-level `pg_advisory_lock` (keyed on the database name) before
        // it even creates `_sqlx_migrations` (sqlx-postgres 0.8.6, `migrate.rs`, `lock()`), so
        // replicas starting at once apply each migration exactly once, one after the other.
        // Closing the connection also releases that lock should a migration fail half-way
        // (sqlx only unlocks on success).
        let mut conn = PgConnection::connect_with(&opts)
            .await
            .map_err(|e| connection_error(&place, e))?;
        let migrated = sqlx::migrate!("./migrations/postgres").run(&mut conn).await;
        let _ = conn.close().await;
        migrated.map_err(|e| {
            Error::Internal(place.scrub(format!(
                "migrating the PostgreSQL database {} failed: {e}",
                place.shown
            )))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Some(Duration::from_secs(600)))
            .connect_with(opts.clone())
            .await
            .map_err(|e| connection_error(&place, e))?;
        Ok(PostgresStore {
            pool,
            opts,
            place,
            listeners: Default::default(),
            vacuum: vacuum::Vacuum::new(vacuum::Tables::Queue, vacuum::VACUUM_EVERY),
            vacuum_runs: vacuum::Vacuum::new(vacuum::Tables::Runs, vacuum::VACUUM_RUNS_EVERY),
        })
    }

    /// Vacuums the queue's hot tables after every `n` runs claimed (0: never) instead of the
    /// default 20,000; for tests.
    #[doc(hidden)]
    pub fn vacuum_every(mut self, n: u64) -> PostgresStore {
        self.vacuum = vacuum::Vacuum::new(vacuum::Tables::Queue, n);
        self
    }

    /// Vacuums `runs` after every `n` runs claimed at least (0: never) instead of the default
    /// 100,000; for tests.
    #[doc(hidden)]
    pub fn vacuum_runs_every(mut self, n: u64) -> PostgresStore {
        self.vacuum_runs = vacuum::Vacuum::new(vacuum::Tables::Runs, n);
        self
    }

    /// How many vacuums of the hot tables this store completed; for tests.
    #[doc(hidden)]
    pub fn vacuums(&self) -> u64 {
        self.vacuum.done()
    }

    /// How many vacuums of `runs` this store completed; for tests.
    #[doc(hidden)]
    pub fn runs_vacuums(&self) -> u64 {
        self.vacuum_runs.done()
    }

    /// Runs one transaction (built by `f`) until it commits, retrying it on a deadlock or a
    /// serialization failure.
    async fn retry<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = R<T>>,
    {
        use backon::Retryable;
        let policy = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(100))
            .with_max_times(TX_ATTEMPTS as usize - 1)
            .with_jitter();
        f.retry(policy)
            .when(|e| matches!(e, Fail::Db(e) if is_retryable(e)))
            .notify(|e, after| {
                if let Fail::Db(e) = e {
                    tracing::debug!(error = %e, retry_in_ms = after.as_millis() as u64,
                        "transaction rolled back; retrying");
                }
            })
            .await
            .map_err(|e| match e {
                Fail::Owl(e) => e,
                Fail::Db(e) => self.place.db(e),
            })
    }
}

/// Any connection failure while opening is a connection error (pool time-outs included: the
/// pool retries refused connections until then).
fn connection_error(place: &Place, e: sqlx::Error) -> Error {
    Error::Connection {
        url: place.shown.clone(),
        message: place.scrub(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Wake-ups

// ---------------------------------------------------------------------------------------------
// Row mapping

// ---------------------------------------------------------------------------------------------
// The hot path: report successes and claim, in one statement

// ---------------------------------------------------------------------------------------------
// Inserts

// ---------------------------------------------------------------------------------------------
// Transactions behind the trait's methods

#[async_trait]
impl Store for PostgresStore {
    async fn insert_in_postgres(
        &self,
        conn: &mut sqlx::PgConnection,
        runs: Vec<NewRun>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        // The same database: the same name and oid on the same server (the server's start time
        // tells servers apart, whichever address each connection took).
        let place = "SELECT current_database()::text, \
                     (SELECT oid::bigint FROM pg_database WHERE datname = current_database()), \
                     pg_postmaster_start_time()::text";
        let theirs: (String, i64, String) = sqlx::query_as(place)
            .fetch_one(&mut *conn)
            .await
            .map_err(crate::store::app_connection_error)?;
        let ours: (String, i64, String) = self
            .retry(|| async move { Ok(sqlx::query_as(place).fetch_one(&self.pool).await?) })
            .await?;
        if theirs != ours {
            return Err(Error::invalid_input(
                "transaction",
                format!(
                    "the transaction is on database {:?}, not on the engine's database {:?}: runs \
                     can only be enqueued in a transaction on the engine's own database",
                    theirs.0, ours.0
                ),
            ));
        }
        let mut wakes = Wakes::default();
        let result = async {
            let mut out = runs::insert_runs_tx(&mut *conn, &runs, now, false, &mut wakes).await?;
            runs::make_room(&mut *conn, &runs, &mut out, now, &mut wakes).await?;
            // Sent in the application's transaction: delivered when it commits.
            notify(&mut *conn, wakes).await?;
            Ok(out)
        }
        .await;
        result.map_err(|e: Fail| match e {
            Fail::Owl(e) => e,
            Fail::Db(e) => self.place.db(e),
        })
    }

    async fn subscribe(&self) -> Result<Option<mpsc::UnboundedReceiver<Wake>>> {
        // A pool of one connection of its own, so that listening never takes one of the
        // store's, and so that the listener can reconnect through it.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(self.opts.clone());
        let listener = listen(&pool)
            .await
            .map_err(|e| connection_error(&self.place, e))?;
        self.listeners.lock().unwrap().push(pool.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_wakes(listener, pool, tx, self.place.clone()));
        Ok(Some(rx))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(())
    }

    async fn close(&self) {
        let listeners: Vec<PgPool> = std::mem::take(&mut *self.listeners.lock().unwrap());
        for l in listeners {
            l.close().await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_and_scrubs_passwords() {
        let p = Place::new("postgres://u:s%40cret@h:5432/db?sslmode=disable");
        assert_eq!(p.shown, "postgres://u:***@h:5432/db?sslmode=disable");
        assert_eq!(p.scrub("bad s@cret and s%40cret".into()), "bad *** and ***");
        let p = Place::new("postgresql://h/db?user=u&Password=hunter2&sslmode=require#x");
        assert_eq!(
            p.shown,
            "postgresql://h/db?user=u&Password=***&sslmode=require#x"
        );
        assert_eq!(p.scrub("hunter2!".into()), "***!");
        let p = Place::new("postgres://u@h/db");
        assert_eq!(
            (p.shown.as_str(), p.secrets.len()),
            ("postgres://u@h/db", 0)
        );
        assert_eq!(
            Place::new("postgres://u:pw@h/db").shown,
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn wake_payloads_round_trip() {
        let w = Wakes {
            work: true,
            timers: true,
            crons: true,
            finished: true,
        };
        let got: Vec<Wake> = w.payloads().iter().filter_map(|p| wake_of(p)).collect();
        assert_eq!(
            got,
            vec![Wake::Work, Wake::Timers, Wake::Crons, Wake::Finished]
        );
    }
}
