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
use super::state::{ExpiredRow, Locked, Planned, StateRow, STATE_COLS};
use super::{
    from_micros, list_query, micros, page_of, CronRecord, Inserted, Maintenance, NewRun, Store,
    Wake, WorkerRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use owlclaw_core::lifecycle::{Happening, Start};
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::{
    Assignment, Completion, CronSchedule, ListFilter, Outcome, RunEvent, RunPage, RunSnapshot,
    StepCheckpoint, StepSnapshot, StepStatus, WorkerInfo, WorkerRegistration,
};
use owlclaw_core::{Error, Result, RunId, RunStatus};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

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
            .application_name("owlclaw");
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
        })
    }

    /// Runs one transaction (built by `f`) until it commits, retrying it on a deadlock or a
    /// serialization failure.
    async fn retry<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = R<T>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(Fail::Owl(e)) => return Err(e),
                Err(Fail::Db(e)) if is_retryable(&e) && attempt < TX_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "transaction rolled back; retrying");
                    let ms = 5 * u64::from(attempt) + jitter_ms();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    attempt += 1;
                }
                Err(Fail::Db(e)) => return Err(self.place.db(e)),
            }
        }
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

/// 0 to 9 ms, so that two transactions that deadlocked do not retry in lock-step.
fn jitter_ms() -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
            % 10,
    )
}

// ---------------------------------------------------------------------------------------------
// Wake-ups

/// Which wake-ups a transaction sends at commit.
#[derive(Debug, Default, Clone, Copy)]
struct Wakes {
    work: bool,
    timers: bool,
    crons: bool,
    finished: bool,
}

impl Wakes {
    /// What a run reaching `status` means to other engines.
    fn reached(&mut self, status: RunStatus) {
        match status {
            RunStatus::Queued => self.work = true,
            RunStatus::Scheduled => self.timers = true,
            s if s.is_terminal() => self.finished = true,
            _ => {}
        }
    }

    fn payloads(self) -> Vec<String> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.work, "work"),
            (self.timers, "timers"),
            (self.crons, "crons"),
            (self.finished, "finished"),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
        out
    }
}

fn wake_of(payload: &str) -> Option<Wake> {
    match payload {
        "work" => Some(Wake::Work),
        "timers" => Some(Wake::Timers),
        "crons" => Some(Wake::Crons),
        "finished" => Some(Wake::Finished),
        _ => None,
    }
}

/// Queues the wake-ups, delivered when the transaction commits.
async fn notify(conn: &mut PgConnection, wakes: Wakes) -> R<()> {
    let payloads = wakes.payloads();
    if !payloads.is_empty() {
        sqlx::query("SELECT pg_notify('owlclaw', w) FROM UNNEST($1::text[]) AS w")
            .bind(payloads)
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn listen(pool: &PgPool) -> std::result::Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications to the engine until the engine drops its receiver or the store
/// closes. Survives PostgreSQL restarts: a lost connection is re-established (with a growing
/// pause while the server is away), and since notifications sent meanwhile are lost, every kind
/// of wake-up is sent once it is back, so the engine re-checks everything.
async fn forward_wakes(
    listener: PgListener,
    pool: PgPool,
    tx: mpsc::UnboundedSender<Wake>,
    place: Place,
) {
    const ALL: [Wake; 4] = [Wake::Work, Wake::Timers, Wake::Crons, Wake::Finished];
    let mut listener = Some(listener);
    let mut pause = Duration::from_millis(100);
    loop {
        if pool.is_closed() {
            return;
        }
        let Some(l) = listener.as_mut() else {
            let got = tokio::select! {
                r = listen(&pool) => r,
                _ = tx.closed() => return,
            };
            match got {
                Ok(l) => {
                    tracing::info!(url = %place.shown, "PostgreSQL wake-up channel re-established");
                    listener = Some(l);
                    pause = Duration::from_millis(100);
                    if ALL.into_iter().any(|w| tx.send(w).is_err()) {
                        return;
                    }
                }
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(url = %place.shown, error = %place.scrub(e.to_string()),
                        retry_in_ms = pause.as_millis() as u64,
                        "PostgreSQL wake-up channel: cannot reconnect; polling meanwhile");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = tx.closed() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };
        let got = tokio::select! {
            r = l.try_recv() => r,
            _ = tx.closed() => return,
        };
        match got {
            Ok(Some(n)) => {
                if let Some(w) = wake_of(n.payload()) {
                    if tx.send(w).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                // The connection was lost and has been re-established (PgListener reconnects
                // eagerly); whatever was sent in between is lost.
                tracing::warn!(url = %place.shown, "PostgreSQL wake-up channel reconnected");
                if ALL.into_iter().any(|w| tx.send(w).is_err()) {
                    return;
                }
            }
            Err(e) => {
                if pool.is_closed() || matches!(e, sqlx::Error::PoolClosed) {
                    return;
                }
                tracing::warn!(url = %place.shown, error = %place.scrub(e.to_string()),
                    "PostgreSQL wake-up channel failed; reconnecting");
                listener = None; // drops the connection
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row mapping

async fn load(conn: &mut PgConnection, tenant: &str, id: RunId) -> R<Option<RunSnapshot>> {
    let row: Option<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE id = $1 AND tenant = $2")
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(RunRow::snapshot).transpose()?)
}

/// Locks one run (by public id, in a tenant) and reads its state.
async fn lock_run(conn: &mut PgConnection, tenant: &str, id: RunId) -> R<Option<Locked>> {
    let sql = format!("SELECT {STATE_COLS} FROM runs WHERE id = $1 AND tenant = $2 FOR UPDATE");
    let row: Option<StateRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(Locked::try_from).transpose()?)
}

/// Deletes locked runs with everything that refers to them, in one statement.
async fn delete_seqs(conn: &mut PgConnection, seqs: &[i64]) -> R<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let n: i64 = sqlx::query_scalar(
        "WITH e AS (DELETE FROM events WHERE run_seq = ANY($1)), \
         s AS (DELETE FROM steps WHERE run_seq = ANY($1)), \
         q AS (DELETE FROM queue WHERE run_seq = ANY($1)), \
         t AS (DELETE FROM timers WHERE run_seq = ANY($1)), \
         l AS (DELETE FROM leases WHERE run_seq = ANY($1)), \
         r AS (DELETE FROM runs WHERE seq = ANY($1) RETURNING 1) \
         SELECT count(*) FROM r",
    )
    .bind(seqs)
    .fetch_one(conn)
    .await?;
    Ok(n as usize)
}

/// Applies the changes of locked runs: their rows, the narrow tables they leave and enter
/// (`leases` when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`), and their events, in three statements whatever their number.
async fn apply(
    conn: &mut PgConnection,
    changes: &[Planned],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let n = changes.len();
    let mut seq = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut attempt = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut error = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut worker_id = Vec::with_capacity(n);
    let mut worker = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    let mut finished_at = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut clear_output = Vec::with_capacity(n);
    let (mut from_running, mut from_queued, mut from_scheduled) = (vec![], vec![], vec![]);
    let (mut q_seq, mut q_tenant, mut q_task, mut q_prio) = (vec![], vec![], vec![], vec![]);
    let (mut t_seq, mut t_due) = (vec![], vec![]);
    let (mut e_seq, mut e_from, mut e_to, mut e_attempt, mut e_worker, mut e_reason) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for p in changes {
        let c = &p.change;
        e_seq.push(p.seq);
        e_from.push(c.event.from.map(|s| s.as_str()));
        e_to.push(c.event.to.as_str());
        e_attempt.push(i64::from(c.event.attempt));
        e_worker.push(c.event.worker.as_deref().map(clean));
        e_reason.push(clean(&c.event.reason));
        if !p.moves() {
            continue;
        }
        seq.push(p.seq);
        status.push(c.status.as_str());
        attempt.push(i64::from(c.attempt));
        max_attempts.push(i64::from(c.max_attempts));
        error.push(c.error.clone());
        errors.push(c.errors.clone());
        worker_id.push(c.worker_id.clone());
        worker.push(c.worker.as_deref().map(clean));
        run_at.push(p.run_at());
        finished_at.push(p.finished_at());
        start.push(match c.start {
            Start::Keep => "keep",
            Start::Now => "now",
            Start::Clear => "clear",
        });
        clear_output.push(c.clear_output);
        match c.from {
            RunStatus::Running => from_running.push(p.seq),
            RunStatus::Queued => from_queued.push(p.seq),
            RunStatus::Scheduled => from_scheduled.push(p.seq),
            _ => {}
        }
        match c.status {
            RunStatus::Queued => {
                q_seq.push(p.seq);
                q_tenant.push(p.tenant.clone());
                q_task.push(p.task.clone());
                q_prio.push(p.priority);
            }
            RunStatus::Scheduled => {
                t_seq.push(p.seq);
                t_due.push(p.run_at());
            }
            _ => {}
        }
        wakes.reached(c.status);
    }
    if !seq.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = c.status, attempt = c.attempt, max_attempts = c.max_attempts, \
             error = c.error, errors = c.errors, worker_id = c.worker_id, run_at = c.run_at, \
             finished_at = c.finished_at, \
             worker = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN c.worker ELSE runs.worker END, \
             started_at = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN $13 ELSE runs.started_at END, \
             output = CASE WHEN c.clear_output THEN NULL ELSE runs.output END \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::bool[]) \
             AS c(seq, status, attempt, max_attempts, error, errors, worker_id, worker, run_at, \
             finished_at, start, clear_output) \
             WHERE runs.seq = c.seq",
        )
        .bind(&seq)
        .bind(&status)
        .bind(&attempt)
        .bind(&max_attempts)
        .bind(&error)
        .bind(&errors)
        .bind(&worker_id)
        .bind(&worker)
        .bind(&run_at)
        .bind(&finished_at)
        .bind(&start)
        .bind(&clear_output)
        .bind(micros(now))
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "WITH l AS (DELETE FROM leases WHERE run_seq = ANY($1)), \
             q AS (DELETE FROM queue WHERE run_seq = ANY($2)) \
             DELETE FROM timers WHERE run_seq = ANY($3)",
        )
        .bind(&from_running)
        .bind(&from_queued)
        .bind(&from_scheduled)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "WITH q AS (INSERT INTO queue (run_seq, tenant, task, priority) \
           SELECT s, te, ta, p FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
           WITH ORDINALITY AS u(s, te, ta, p, o) ORDER BY o), \
         t AS (INSERT INTO timers (run_seq, due_at) SELECT * FROM UNNEST($5::bigint[], $6::bigint[]) \
           ON CONFLICT (run_seq) DO UPDATE SET due_at = excluded.due_at) \
         INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT s, $7, f, t, a, w, r FROM UNNEST($8::bigint[], $9::text[], $10::text[], $11::bigint[], \
           $12::text[], $13::text[]) WITH ORDINALITY AS u(s, f, t, a, w, r, o) ORDER BY o",
    )
    .bind(&q_seq)
    .bind(&q_tenant)
    .bind(&q_task)
    .bind(&q_prio)
    .bind(&t_seq)
    .bind(&t_due)
    .bind(micros(now))
    .bind(&e_seq)
    .bind(&e_from)
    .bind(&e_to)
    .bind(&e_attempt)
    .bind(&e_worker)
    .bind(&e_reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The hot path: report successes and claim, in one statement

/// Applies the successful completions (`$8` ids, `$9` attempts, `$10` outputs) of worker `$6`
/// (named `$5`), then claims up to `$3` queued runs of tenant `$1` and tasks `$2` for it with a
/// lease of `$7` µs, at `$4`. Either half may be empty. One row per claimed run (in claim
/// order), or a single row with NULL run columns when none was; `changed` counts the successes
/// applied.
///
/// Claims skip queue rows, and runs, locked by others (another replica's claim, a cancel in
/// progress): they never wait, and never hand out a run twice.
const REPORT_AND_CLAIM: &str = "\
WITH c AS (
    SELECT * FROM UNNEST($8::text[], $9::bigint[], $10::text[]) AS c(id, attempt, output)
), done AS (
    UPDATE runs r SET status = 'succeeded', output = c.output, error = NULL, finished_at = $4
    FROM c WHERE r.id = c.id AND r.status = 'running' AND r.attempt = c.attempt AND r.worker_id = $6
    RETURNING r.seq, r.attempt
), released AS (
    DELETE FROM leases WHERE run_seq = ANY(ARRAY(SELECT seq FROM done))
), finished AS (
    INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason)
    SELECT seq, $4, 'running', 'succeeded', attempt, $5, 'succeeded' FROM done ORDER BY seq
), note AS (
    SELECT pg_notify('owlclaw', 'finished') FROM (SELECT 1 FROM done LIMIT 1) AS any_done
), picked AS (
    SELECT qid, run_seq FROM queue WHERE tenant = $1 AND task = ANY($2)
    ORDER BY priority DESC, qid LIMIT $3 FOR UPDATE SKIP LOCKED
), locked AS (
    SELECT seq FROM runs WHERE seq = ANY(ARRAY(SELECT run_seq FROM picked)) FOR UPDATE SKIP LOCKED
), taken AS (
    DELETE FROM queue WHERE qid = ANY(ARRAY(
        SELECT p.qid FROM picked p JOIN locked l ON l.seq = p.run_seq))
    RETURNING qid, run_seq
), started AS (
    UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = GREATEST($4, run_at), worker = $5, worker_id = $6
    WHERE seq = ANY(ARRAY(SELECT run_seq FROM taken)) AND status = 'queued'
    RETURNING seq, id, task, input, attempt, max_attempts, timeout_ms, parent_id, priority
), claimed AS (
    SELECT s.*, t.qid FROM started s JOIN taken t ON t.run_seq = s.seq
), leased AS (
    INSERT INTO leases (run_seq, worker_id, expires_at, deadline)
    SELECT seq, $6, LEAST($4 + $7, $4 + timeout_ms * 1000 + $7), $4 + timeout_ms * 1000 + $7 FROM claimed
    ON CONFLICT (run_seq) DO UPDATE SET worker_id = excluded.worker_id,
        expires_at = excluded.expires_at, deadline = excluded.deadline
), logged AS (
    INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason)
    SELECT seq, $4, 'queued', 'running', attempt, $5, 'claimed' FROM claimed ORDER BY priority DESC, qid
)
SELECT (SELECT count(*) FROM done) AS changed, (SELECT count(*) FROM note) AS noted,
       k.id, k.task, k.input, k.attempt, k.max_attempts, k.timeout_ms, k.parent_id
FROM (SELECT 1) AS one LEFT JOIN claimed k ON true
ORDER BY k.priority DESC, k.qid";

/// Runs [`REPORT_AND_CLAIM`] for the successes among `completions` and up to `n` claims.
async fn report_and_claim(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    completions: &[Completion],
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> R<(usize, Vec<Assignment>)> {
    let (mut ids, mut attempts, mut outputs) = (vec![], vec![], vec![]);
    for c in completions {
        if let Outcome::Succeeded { output } = &c.outcome {
            ids.push(c.run_id.to_string());
            attempts.push(i64::from(c.attempt));
            outputs.push(output.to_string());
        }
    }
    let n = if worker.tasks.is_empty() { 0 } else { n };
    if ids.is_empty() && n == 0 {
        return Ok((0, Vec::new()));
    }
    let rows = sqlx::query(REPORT_AND_CLAIM)
        .bind(&worker.tenant)
        .bind(&worker.tasks)
        .bind(i64::from(n))
        .bind(micros(now))
        .bind(clean(&worker.name))
        .bind(&worker.id)
        .bind(lease.as_micros() as i64)
        .bind(&ids)
        .bind(&attempts)
        .bind(&outputs)
        .fetch_all(conn)
        .await?;
    let mut changed = 0;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        changed = row.try_get::<i64, _>("changed")? as usize;
        let Some(id) = row.try_get::<Option<String>, _>("id")? else {
            continue;
        };
        out.push(Assignment {
            run_id: id.parse()?,
            task: row
                .try_get::<Option<String>, _>("task")?
                .unwrap_or_default(),
            input: row
                .try_get::<Option<String>, _>("input")?
                .map(json_text)
                .unwrap_or(Value::Null),
            attempt: row.try_get::<Option<i64>, _>("attempt")?.unwrap_or(0) as u32,
            max_attempts: row.try_get::<Option<i64>, _>("max_attempts")?.unwrap_or(0) as u32,
            timeout_ms: row.try_get::<Option<i64>, _>("timeout_ms")?.unwrap_or(0) as u64,
            parent_id: row
                .try_get::<Option<String>, _>("parent_id")?
                .and_then(|p| p.parse().ok()),
        });
    }
    Ok((changed, out))
}

/// Applies the completions that are not successes (failures, time-outs, stops, hand-backs) of
/// locked runs.
async fn complete_others(
    conn: &mut PgConnection,
    worker: &WorkerRecord,
    completions: &[Completion],
    now: DateTime<Utc>,
    wakes: &mut Wakes,
) -> R<usize> {
    let others: Vec<&Completion> = completions
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Succeeded { .. }))
        .collect();
    if others.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = others.iter().map(|c| c.run_id.to_string()).collect();
    let sql = format!(
        "SELECT {STATE_COLS} FROM runs WHERE id = ANY($1) AND tenant = $2 ORDER BY seq FOR UPDATE"
    );
    let rows: Vec<StateRow> = sqlx::query_as(&sql)
        .bind(&ids)
        .bind(&worker.tenant)
        .fetch_all(&mut *conn)
        .await?;
    let mut states: HashMap<RunId, Locked> = HashMap::with_capacity(rows.len());
    for row in rows {
        let st = Locked::try_from(row)?;
        states.insert(st.run.id, st);
    }
    let mut changes = Vec::with_capacity(others.len());
    for c in others {
        let Some(st) = states.get_mut(&c.run_id) else {
            continue;
        };
        let happened = Happening::Reported {
            worker_id: &worker.id,
            attempt: c.attempt,
            outcome: &c.outcome,
        };
        // `None`: stale (cancelled, re-queued after a lost lease, or another attempt).
        changes.extend(st.plan(happened, now)?);
    }
    apply(conn, &changes, now, wakes).await?;
    Ok(changes.len())
}

// ---------------------------------------------------------------------------------------------
// Inserts

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks).
async fn insert_runs_tx(
    conn: &mut PgConnection,
    runs: &[NewRun],
    now: DateTime<Utc>,
    ignore_conflicts: bool,
    wakes: &mut Wakes,
) -> R<Vec<Inserted>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    for r in runs {
        no_nul("idempotency_key", r.idempotency_key.as_deref())?;
        no_nul("owner", r.owner.as_deref())?;
    }
    let n = runs.len();
    let mut id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut task = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut max_attempts = Vec::with_capacity(n);
    let mut retries = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut input = Vec::with_capacity(n);
    let mut owner = Vec::with_capacity(n);
    let mut key = Vec::with_capacity(n);
    let mut parent = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut timeout_ms = Vec::with_capacity(n);
    let mut backoff = Vec::with_capacity(n);
    let mut run_at = Vec::with_capacity(n);
    for r in runs {
        id.push(r.id.to_string());
        tenant.push(r.tenant.as_str());
        task.push(r.task.as_str());
        status.push(if r.run_at > now {
            "scheduled"
        } else {
            "queued"
        });
        max_attempts.push(i64::from(r.retries) + 1);
        retries.push(i64::from(r.retries));
        priority.push(i64::from(r.priority));
        input.push(r.input.to_string());
        owner.push(r.owner.as_deref());
        key.push(r.idempotency_key.as_deref());
        parent.push(r.parent_id.map(|p| p.to_string()));
        metadata.push(r.metadata.as_ref().map(|m| m.to_string()));
        timeout_ms.push(r.timeout.as_millis() as i64);
        backoff.push(serde_json::to_string(&r.backoff).unwrap_or_default());
        run_at.push(micros(r.run_at.max(now)));
    }
    let inserted: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO runs (id, tenant, task, status, attempt, max_attempts, retries, priority, input, \
         owner, idempotency_key, parent_id, metadata, timeout_ms, backoff, run_at, created_at) \
         SELECT id, te, ta, st, 0, ma, re, pr, inp, ow, ik, pa, me, tm, bo, ra, $16 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], \
           $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], \
           $14::text[], $15::bigint[]) \
           WITH ORDINALITY AS u(id, te, ta, st, ma, re, pr, inp, ow, ik, pa, me, tm, bo, ra, o) \
         ORDER BY o \
         ON CONFLICT (id) DO NOTHING RETURNING seq, id",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(&task)
    .bind(&status)
    .bind(&max_attempts)
    .bind(&retries)
    .bind(&priority)
    .bind(&input)
    .bind(&owner)
    .bind(&key)
    .bind(&parent)
    .bind(&metadata)
    .bind(&timeout_ms)
    .bind(&backoff)
    .bind(&run_at)
    .bind(micros(now))
    .fetch_all(&mut *conn)
    .await?;
    let mut seqs: HashMap<String, i64> = inserted.into_iter().map(|(s, id)| (id, s)).collect();
    let mut out = Vec::with_capacity(n);
    let (mut q_seq, mut q_tenant, mut q_task, mut q_prio) = (vec![], vec![], vec![], vec![]);
    let (mut t_seq, mut t_due) = (vec![], vec![]);
    let (mut e_seq, mut e_status, mut e_reason) = (vec![], vec![], vec![]);
    for r in runs {
        // `remove`: the same id twice in one batch is created once, then found existing.
        match seqs.remove(&r.id.to_string()) {
            Some(seq) => {
                let status = if r.run_at > now {
                    t_seq.push(seq);
                    t_due.push(micros(r.run_at));
                    RunStatus::Scheduled
                } else {
                    q_seq.push(seq);
                    q_tenant.push(r.tenant.as_str());
                    q_task.push(r.task.as_str());
                    q_prio.push(i64::from(r.priority));
                    RunStatus::Queued
                };
                wakes.reached(status);
                e_seq.push(seq);
                e_status.push(status.as_str());
                e_reason.push(clean(&r.reason));
                out.push(Inserted::Created(r.snapshot(status, now)));
            }
            None if ignore_conflicts => {}
            None => {
                let conflict = || Error::IdempotencyConflict {
                    key: r.idempotency_key.clone().unwrap_or_default(),
                    existing: r.id,
                };
                let existing = load(&mut *conn, &r.tenant, r.id)
                    .await?
                    .ok_or_else(conflict)?;
                if existing.input != r.input || existing.task != r.task {
                    return Err(conflict().into());
                }
                out.push(Inserted::Existing(existing));
            }
        }
    }
    if !e_seq.is_empty() {
        sqlx::query(
            "WITH q AS (INSERT INTO queue (run_seq, tenant, task, priority) \
               SELECT s, te, ta, p FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
               WITH ORDINALITY AS u(s, te, ta, p, o) ORDER BY o), \
             t AS (INSERT INTO timers (run_seq, due_at) SELECT * FROM UNNEST($5::bigint[], $6::bigint[]) \
               ON CONFLICT (run_seq) DO UPDATE SET due_at = excluded.due_at) \
             INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
             SELECT s, $7, NULL, st, 0, NULL, r FROM UNNEST($8::bigint[], $9::text[], $10::text[]) \
               WITH ORDINALITY AS u(s, st, r, o) ORDER BY o",
        )
        .bind(&q_seq)
        .bind(&q_tenant)
        .bind(&q_task)
        .bind(&q_prio)
        .bind(&t_seq)
        .bind(&t_due)
        .bind(micros(now))
        .bind(&e_seq)
        .bind(&e_status)
        .bind(&e_reason)
        .execute(&mut *conn)
        .await?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Transactions behind the trait's methods

impl PostgresStore {
    async fn insert_tx(&self, runs: &[NewRun], now: DateTime<Utc>) -> R<Vec<Inserted>> {
        let mut tx = self.pool.begin().await?;
        let mut wakes = Wakes::default();
        let out = insert_runs_tx(&mut tx, runs, now, false, &mut wakes).await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn cancel_tx(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> R<RunSnapshot> {
        let mut tx = self.pool.begin().await?;
        let st = lock_run(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let mut st = st;
        let change = match st.plan(Happening::Cancel, now) {
            Ok(change) => change,
            Err(e) => {
                // Roll back now: a dropped transaction is rolled back only when its connection
                // is next used, and until then its lock makes claims skip this run.
                tx.rollback().await?;
                return Err(e.into());
            }
        };
        let mut wakes = Wakes::default();
        apply(&mut tx, change.as_slice(), now, &mut wakes).await?;
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(snap)
    }

    async fn retry_tx(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> R<RunSnapshot> {
        let mut tx = self.pool.begin().await?;
        let st = lock_run(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let mut st = st;
        let change = match st.plan(Happening::Retry, now) {
            Ok(change) => change,
            Err(e) => {
                // Roll back now, or the lock stays until the connection is next used (see cancel).
                tx.rollback().await?;
                return Err(e.into());
            }
        };
        let mut wakes = Wakes::default();
        apply(&mut tx, change.as_slice(), now, &mut wakes).await?;
        notify(&mut tx, wakes).await?;
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        tx.commit().await?;
        Ok(snap)
    }

    async fn complete_tx(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> R<(usize, Vec<Assignment>)> {
        let all_ok = completions
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Succeeded { .. }));
        if all_ok {
            // The hot path: one statement, committed on its own.
            let mut conn = self.pool.acquire().await?;
            return report_and_claim(&mut conn, worker, completions, n, now, lease).await;
        }
        let mut tx = self.pool.begin().await?;
        let mut wakes = Wakes::default();
        let (mut changed, _) =
            report_and_claim(&mut tx, worker, completions, 0, now, lease).await?;
        changed += complete_others(&mut tx, worker, completions, now, &mut wakes).await?;
        let (_, claimed) = report_and_claim(&mut tx, worker, &[], n, now, lease).await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok((changed, claimed))
    }

    async fn heartbeat_tx(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> R<Vec<RunId>> {
        // Leases locked by someone else (a completion, an expiry in progress) are skipped: they
        // are about to go, and a heartbeat never waits.
        let held: Vec<String> = held.iter().map(|h| h.to_string()).collect();
        let lost: Vec<String> = sqlx::query_scalar(
            "WITH mine AS (SELECT run_seq FROM leases WHERE worker_id = $2 ORDER BY run_seq \
               FOR UPDATE SKIP LOCKED), \
             renewed AS (UPDATE leases SET expires_at = LEAST($1, deadline) \
               WHERE run_seq = ANY(ARRAY(SELECT run_seq FROM mine)) \
               AND run_seq IN (SELECT seq FROM runs WHERE id = ANY($4::text[]))), \
             seen AS (UPDATE workers SET last_heartbeat = $3 WHERE id = $2) \
             SELECT h FROM UNNEST($4::text[]) AS h WHERE NOT EXISTS (SELECT 1 FROM runs r \
               JOIN leases l ON l.run_seq = r.seq WHERE r.id = h AND l.worker_id = $2)",
        )
        .bind(micros(now) + lease.as_micros() as i64)
        .bind(&worker.id)
        .bind(micros(now))
        .bind(&held)
        .fetch_all(&self.pool)
        .await?;
        Ok(lost
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<RunId>>>()?)
    }

    async fn maintain_tx(&self, now: DateTime<Utc>, limit: u32) -> R<Maintenance> {
        let now_us = micros(now);
        let (next_due, next_expiry): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MIN(due_at) FROM timers), (SELECT MIN(expires_at) FROM leases)",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut m = Maintenance {
            next_due: next_due.map(from_micros),
            ..Maintenance::default()
        };
        let due = next_due.is_some_and(|t| t <= now_us);
        let expired = next_expiry.is_some_and(|t| t <= now_us);
        if !due && !expired {
            return Ok(m);
        }
        let mut tx = self.pool.begin().await?;
        let mut wakes = Wakes::default();
        if due {
            // Due timers whose run another transaction holds (a cancel) wait for the next pass.
            let promoted: i64 = sqlx::query_scalar(
                "WITH picked AS (SELECT run_seq, due_at FROM timers WHERE due_at <= $1 \
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 locked AS (SELECT seq FROM runs WHERE seq = ANY(ARRAY(SELECT run_seq FROM picked)) \
                   FOR UPDATE SKIP LOCKED), \
                 fired AS (DELETE FROM timers WHERE run_seq = ANY(ARRAY(SELECT seq FROM locked)) \
                   RETURNING run_seq, due_at), \
                 ready AS (UPDATE runs SET status = 'queued' \
                   WHERE seq = ANY(ARRAY(SELECT run_seq FROM fired)) AND status = 'scheduled' \
                   RETURNING seq, tenant, task, priority, attempt), \
                 ordered AS (SELECT r.*, f.due_at FROM ready r JOIN fired f ON f.run_seq = r.seq), \
                 q AS (INSERT INTO queue (run_seq, tenant, task, priority) \
                   SELECT seq, tenant, task, priority FROM ordered ORDER BY due_at, seq), \
                 e AS (INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                   SELECT seq, $1, 'scheduled', 'queued', attempt, NULL, 'due' FROM ordered \
                   ORDER BY due_at, seq) \
                 SELECT count(*) FROM ordered",
            )
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_one(&mut *tx)
            .await?;
            m.promoted = promoted as usize;
            if promoted > 0 {
                wakes.work = true;
            }
        }
        if expired {
            // Two replicas never expire the same lease: each skips what the other holds.
            let sql = format!(
                "WITH picked AS (SELECT run_seq, deadline FROM leases WHERE expires_at <= $1 \
                   ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 SELECT {STATE_COLS}, p.deadline FROM runs JOIN picked p ON p.run_seq = runs.seq \
                 WHERE runs.seq = ANY(ARRAY(SELECT run_seq FROM picked)) \
                 ORDER BY runs.seq FOR UPDATE OF runs SKIP LOCKED"
            );
            let rows: Vec<ExpiredRow> = sqlx::query_as(&sql)
                .bind(now_us)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut orphans = Vec::new();
            for row in rows {
                let deadline_passed = row.deadline <= now_us;
                let mut st = Locked::try_from(row.state)?;
                match st.plan(Happening::LeaseExpired { deadline_passed }, now)? {
                    Some(change) => changes.push(change),
                    None => orphans.push(st.seq),
                }
            }
            if !orphans.is_empty() {
                sqlx::query("DELETE FROM leases WHERE run_seq = ANY($1)")
                    .bind(&orphans)
                    .execute(&mut *tx)
                    .await?;
            }
            apply(&mut tx, &changes, now, &mut wakes).await?;
            m.expired = changes.len();
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
            .fetch_one(&mut *tx)
            .await?;
        m.next_due = next.map(from_micros);
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(m)
    }

    async fn register_tx(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> R<()> {
        no_nul("worker", Some(&worker.id))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workers (id, tenant, name, slots, tasks, labels, started_at, last_heartbeat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (id) DO UPDATE SET \
             tenant = excluded.tenant, name = excluded.name, slots = excluded.slots, tasks = excluded.tasks, \
             labels = excluded.labels, started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat",
        )
        .bind(&worker.id)
        .bind(&worker.tenant)
        .bind(clean(&worker.name))
        .bind(i64::from(reg.slots))
        .bind(serde_json::to_string(&worker.tasks).unwrap_or_default())
        .bind(serde_json::to_string(&reg.labels).unwrap_or_default())
        .bind(micros(now))
        .execute(&mut *tx)
        .await?;
        // In name order, so that two workers registering the same tasks lock them alike.
        let mut defs: Vec<&TaskDef> = reg.tasks.iter().collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut crons = false;
        for def in defs {
            sqlx::query(
                "INSERT INTO tasks (tenant, name, def, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, name) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at",
            )
            .bind(&worker.tenant)
            .bind(&def.name)
            .bind(serde_json::to_string(def).unwrap_or_default())
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            if let Some(expr) = &def.cron {
                crons = true;
                sqlx::query(
                    "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'null', NULL, $6) ON CONFLICT (tenant, id) DO UPDATE SET \
                     expr = excluded.expr, timezone = excluded.timezone",
                )
                .bind(&worker.tenant)
                .bind(format!("task:{}", def.name))
                .bind(&def.name)
                .bind(expr)
                .bind(def.timezone.as_deref().unwrap_or("UTC"))
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
            }
        }
        let wakes = Wakes {
            crons,
            ..Wakes::default()
        };
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deregister_tx(&self, id: &str, now: DateTime<Utc>) -> R<usize> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {STATE_COLS} FROM runs WHERE seq = ANY(ARRAY( \
               SELECT run_seq FROM leases WHERE worker_id = $1)) ORDER BY seq FOR UPDATE"
        );
        let rows: Vec<StateRow> = sqlx::query_as(&sql).bind(id).fetch_all(&mut *tx).await?;
        let mut changes = Vec::new();
        for row in rows {
            let mut st = Locked::try_from(row)?;
            if st.run.worker_id.as_deref() == Some(id) {
                changes.extend(st.plan(Happening::WorkerStopped, now)?);
            }
        }
        let mut wakes = Wakes::default();
        apply(&mut tx, &changes, now, &mut wakes).await?;
        sqlx::query(
            "WITH l AS (DELETE FROM leases WHERE worker_id = $1) DELETE FROM workers WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(changes.len())
    }

    async fn fire_cron_tx(&self, cron: &CronRecord, tick: DateTime<Utc>, run: &NewRun) -> R<bool> {
        let mut tx = self.pool.begin().await?;
        // The row lock serialises engines firing the same tick; the loser sees `last_tick`
        // already there once the winner commits, and changes nothing.
        let advanced = sqlx::query(
            "UPDATE crons SET last_tick = $1 WHERE tenant = $2 AND id = $3 \
             AND (last_tick IS NULL OR last_tick < $1)",
        )
        .bind(micros(tick))
        .bind(&cron.tenant)
        .bind(&cron.schedule.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut wakes = Wakes::default();
        let created = if advanced > 0 {
            !insert_runs_tx(
                &mut tx,
                std::slice::from_ref(run),
                Utc::now(),
                true,
                &mut wakes,
            )
            .await?
            .is_empty()
        } else {
            false
        };
        notify(&mut tx, wakes).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn checkpoint_tx(
        &self,
        worker: &WorkerRecord,
        cp: &StepCheckpoint,
        now: DateTime<Utc>,
    ) -> R<()> {
        let mut tx = self.pool.begin().await?;
        let st = lock_run(&mut tx, &worker.tenant, cp.run_id)
            .await?
            .ok_or_else(|| Error::run_not_found(cp.run_id))?;
        let mut st = st;
        let happened = Happening::Checkpoint {
            worker_id: &worker.id,
            worker: &worker.name,
            step: cp,
        };
        let Some(planned) = st.plan(happened, now)? else {
            return Ok(());
        };
        let event = &planned.change.event;
        let (status, finished) = match cp.status {
            StepStatus::Running => ("running", None),
            StepStatus::Succeeded => ("succeeded", Some(micros(now))),
            StepStatus::Failed => ("failed", Some(micros(now))),
        };
        sqlx::query(
            "WITH s AS (INSERT INTO steps (run_seq, position, name, status, output, error, attempt, \
               started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
               ON CONFLICT (run_seq, position) DO UPDATE SET name = excluded.name, \
               status = excluded.status, output = excluded.output, error = excluded.error, \
               attempt = excluded.attempt, finished_at = excluded.finished_at, \
               started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at \
                 ELSE steps.started_at END) \
             INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
             VALUES ($1, $8, 'running', 'running', $7, $10, $11)",
        )
        .bind(st.seq)
        .bind(i64::from(cp.position))
        .bind(clean(&cp.name))
        .bind(status)
        .bind(cp.output.as_ref().map(|o| o.to_string()))
        .bind(cp.error.as_deref().map(clean))
        .bind(i64::from(event.attempt))
        .bind(micros(now))
        .bind(finished)
        .bind(event.worker.as_deref().map(clean))
        .bind(clean(&event.reason))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn steps_tx(&self, tenant: &str, id: RunId) -> R<Vec<StepSnapshot>> {
        let rows: Vec<StepRow> = sqlx::query_as(&format!(
            "SELECT {STEP_COLS} FROM steps s JOIN runs r ON r.seq = s.run_seq \
             WHERE r.id = $1 AND r.tenant = $2 ORDER BY s.position"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StepSnapshot::from).collect())
    }

    async fn delete_tx(&self, tenant: &str, ids: &[RunId]) -> R<usize> {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let mut tx = self.pool.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE tenant = $1 AND id = ANY($2) ORDER BY seq FOR UPDATE",
        )
        .bind(tenant)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn purge_tx(&self, before: DateTime<Utc>, limit: u32) -> R<usize> {
        let mut tx = self.pool.begin().await?;
        // Runs being retried right now are left for the next purge.
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn list_tx(&self, tenant: &str, filter: &ListFilter) -> R<RunPage> {
        let (mut q, limit) = list_query(tenant, filter)?;
        let rows: Vec<RunRow> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(page_of(rows, limit)?)
    }

    async fn events_tx(&self, tenant: &str, id: RunId) -> R<Vec<RunEvent>> {
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM runs WHERE id = $1 AND tenant = $2")
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE run_seq = $1 ORDER BY id"
        ))
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.event(id))
            .collect::<Result<Vec<_>>>()?)
    }

    async fn list_workers_tx(&self, tenant: &str, since: DateTime<Utc>) -> R<Vec<WorkerInfo>> {
        #[derive(sqlx::FromRow)]
        struct Held {
            #[sqlx(flatten)]
            worker: WorkerRow,
            held: Vec<String>,
        }
        let rows: Vec<Held> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS}, \
               COALESCE((SELECT array_agg(r.id ORDER BY r.seq) FROM leases l \
                 JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = w.id), '{{}}') AS held \
             FROM workers w WHERE w.tenant = $1 AND w.last_heartbeat >= $2 ORDER BY w.started_at"
        ))
        .bind(tenant)
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.worker.info(&r.held)).collect())
    }

    async fn all_crons_tx(&self, tenant: Option<&str>) -> R<Vec<CronRecord>> {
        let rows: Vec<CronRow> = sqlx::query_as(&format!(
            "SELECT {CRON_COLS} FROM crons WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(CronRecord::from).collect())
    }
}

#[async_trait]
impl Store for PostgresStore {
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

    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
        let runs = &runs;
        self.retry(|| self.insert_tx(runs, now)).await
    }

    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
        self.retry(|| async move {
            let mut conn = self.pool.acquire().await?;
            load(&mut conn, tenant, id).await
        })
        .await
    }

    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage> {
        self.retry(|| self.list_tx(tenant, filter)).await
    }

    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>> {
        self.retry(|| self.events_tx(tenant, id)).await
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        self.retry(|| self.cancel_tx(tenant, id, now)).await
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        self.retry(|| self.retry_tx(tenant, id, now)).await
    }

    async fn claim(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<Assignment>> {
        if n == 0 || worker.tasks.is_empty() {
            return Ok(Vec::new());
        }
        let (_, claimed) = self
            .retry(|| self.complete_tx(worker, &[], n, now, lease))
            .await?;
        Ok(claimed)
    }

    async fn complete(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if completions.is_empty() {
            return Ok(0);
        }
        let (changed, _) = self
            .retry(|| self.complete_tx(worker, completions, 0, now, Duration::ZERO))
            .await?;
        Ok(changed)
    }

    async fn complete_and_claim(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<(usize, Vec<Assignment>)> {
        self.retry(|| self.complete_tx(worker, completions, n, now, lease))
            .await
    }

    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        self.retry(|| self.heartbeat_tx(worker, held, now, lease))
            .await
    }

    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance> {
        self.retry(|| self.maintain_tx(now, limit)).await
    }

    async fn register_worker(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.retry(|| self.register_tx(worker, reg, now)).await
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let row: Option<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(row.map(WorkerRow::record))
    }

    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize> {
        self.retry(|| self.deregister_tx(id, now)).await
    }

    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        self.retry(|| self.list_workers_tx(tenant, since)).await
    }

    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let def: Option<String> =
            sqlx::query_scalar("SELECT def FROM tasks WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.place.db(e))?;
        Ok(def.and_then(|d| serde_json::from_str(&d).ok()))
    }

    async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        let all = self.retry(|| self.all_crons_tx(Some(tenant))).await?;
        Ok(all.into_iter().map(|c| c.schedule).collect())
    }

    async fn all_crons(&self) -> Result<Vec<CronRecord>> {
        self.retry(|| self.all_crons_tx(None)).await
    }

    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()> {
        let s = &cron.schedule;
        sqlx::query(
            "WITH up AS (INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) ON CONFLICT (tenant, id) DO UPDATE SET \
             task = excluded.task, expr = excluded.expr, timezone = excluded.timezone, input = excluded.input \
             RETURNING 1) \
             SELECT pg_notify('owlclaw', 'crons') FROM up",
        )
        .bind(&cron.tenant)
        .bind(&s.id)
        .bind(&s.task)
        .bind(&s.expr)
        .bind(&s.timezone)
        .bind(s.input.to_string())
        .bind(micros(s.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(())
    }

    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool> {
        let deleted: i64 = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM crons WHERE tenant = $1 AND id = $2 RETURNING 1), \
             note AS (SELECT pg_notify('owlclaw', 'crons') FROM (SELECT 1 FROM gone LIMIT 1) AS g) \
             SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM note)",
        )
        .bind(tenant)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(deleted > 0)
    }

    async fn fire_cron(&self, cron: &CronRecord, tick: DateTime<Utc>, run: NewRun) -> Result<bool> {
        let run = &run;
        self.retry(|| self.fire_cron_tx(cron, tick, run)).await
    }

    async fn checkpoint_step(
        &self,
        worker: &WorkerRecord,
        checkpoint: &StepCheckpoint,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.retry(|| self.checkpoint_tx(worker, checkpoint, now))
            .await
    }

    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>> {
        self.retry(|| self.steps_tx(tenant, id)).await
    }

    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize> {
        self.retry(|| self.delete_tx(tenant, ids)).await
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.retry(|| self.purge_tx(before, limit)).await
    }

    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (hash, tenant, created_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(tenant)
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .map_err(|e| self.place.db(e))?;
        Ok(())
    }

    async fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT tenant FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.place.db(e))
    }

    async fn queue_depth(&self) -> Result<Vec<(String, String, u8, u64)>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT tenant, task, priority, COUNT(*) FROM queue GROUP BY tenant, task, priority \
             ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.place.db(e))?;
        Ok(rows
            .into_iter()
            .map(|(t, k, p, n)| (t, k, p as u8, n as u64))
            .collect())
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
