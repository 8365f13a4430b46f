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
use super::state::{state_cols_of_r, ExpiredRow, Locked, Planned, StateRow, STATE_COLS};
use super::{
    from_micros, list_query, micros, page_of, CronRecord, Inserted, Maintenance, NewRun, Store,
    WorkerRecord,
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
use serde_json::{json, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

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
        // Two processes opening a new file at once may race on the first migration; the loser
        // sees the tables already there on its next try.
        let mut last = None;
        for _ in 0..10 {
            match sqlx::migrate!("./migrations/sqlite").run(&self.write).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(Error::Internal(format!(
            "migrating the SQLite database failed: {}",
            last.unwrap()
        )))
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

async fn load(conn: &mut SqliteConnection, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
    let row: Option<RunRow> = sqlx::query_as("SELECT * FROM runs WHERE id = ? AND tenant = ?")
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.map(RunRow::snapshot).transpose()
}

/// Reads one run's state (in a tenant, when given) inside a write transaction.
async fn state_by_id(
    conn: &mut SqliteConnection,
    tenant: Option<&str>,
    id: RunId,
) -> Result<Option<Locked>> {
    let sql =
        format!("SELECT {STATE_COLS} FROM runs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)");
    let row: Option<StateRow> = sqlx::query_as(&sql)
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.map(Locked::try_from).transpose()
}

/// Applies life-cycle changes: the runs' rows, the narrow tables they leave and enter (`leases`
/// when leaving `running`, `queue` and `timers` when leaving or entering `queued` and
/// `scheduled`), and their events, a few statements per batch whatever its size.
async fn apply(conn: &mut SqliteConnection, changes: &[Planned], now: DateTime<Utc>) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::new();
    let (mut from_running, mut from_queued, mut from_scheduled) = (vec![], vec![], vec![]);
    let (mut queue, mut timers, mut events) = (vec![], vec![], vec![]);
    for p in changes {
        let c = &p.change;
        events.push(json!([
            p.seq,
            c.event.from.map(|s| s.as_str()),
            c.event.to.as_str(),
            c.event.attempt,
            c.event.worker,
            c.event.reason,
        ]));
        if !p.moves() {
            continue;
        }
        let start = match c.start {
            Start::Keep => "keep",
            Start::Now => "now",
            Start::Clear => "clear",
        };
        rows.push(json!([
            p.seq,
            c.status.as_str(),
            c.attempt,
            c.max_attempts,
            c.error,
            c.errors,
            c.worker_id,
            c.worker,
            p.run_at(),
            p.finished_at(),
            start,
            c.clear_output,
        ]));
        match c.from {
            RunStatus::Running => from_running.push(p.seq),
            RunStatus::Queued => from_queued.push(p.seq),
            RunStatus::Scheduled => from_scheduled.push(p.seq),
            _ => {}
        }
        match c.status {
            RunStatus::Queued => queue.push(json!([p.seq, p.tenant, p.task, p.priority])),
            RunStatus::Scheduled => timers.push(json!([p.seq, p.run_at()])),
            _ => {}
        }
    }
    if !rows.is_empty() {
        sqlx::query(
            "UPDATE runs SET status = c.status, attempt = c.attempt, max_attempts = c.max_attempts, \
             error = c.error, errors = c.errors, worker_id = c.worker_id, run_at = c.run_at, \
             finished_at = c.finished_at, \
             worker = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN c.worker ELSE runs.worker END, \
             started_at = CASE c.start WHEN 'clear' THEN NULL WHEN 'now' THEN ?2 ELSE runs.started_at END, \
             output = CASE WHEN c.clear_output THEN NULL ELSE runs.output END \
             FROM (SELECT value->>0 AS seq, value->>1 AS status, value->>2 AS attempt, \
               value->>3 AS max_attempts, value->>4 AS error, value->>5 AS errors, \
               value->>6 AS worker_id, value->>7 AS worker, value->>8 AS run_at, \
               value->>9 AS finished_at, value->>10 AS start, value->>11 AS clear_output \
               FROM json_each(?1)) AS c \
             WHERE runs.seq = c.seq",
        )
        .bind(Value::Array(rows).to_string())
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        for (table, seqs) in [
            ("leases", &from_running),
            ("queue", &from_queued),
            ("timers", &from_scheduled),
        ] {
            if !seqs.is_empty() {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE run_seq IN (SELECT value FROM json_each(?))"
                ))
                .bind(seqs_json(seqs))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            }
        }
        if !queue.is_empty() {
            sqlx::query(
                "INSERT INTO queue (run_seq, tenant, task, priority) \
                 SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
            )
            .bind(Value::Array(queue).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        if !timers.is_empty() {
            sqlx::query(
                "INSERT OR REPLACE INTO timers (run_seq, due_at) \
                 SELECT value->>0, value->>1 FROM json_each(?)",
            )
            .bind(Value::Array(timers).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    sqlx::query(
        "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT value->>0, ?2, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(?1)",
    )
    .bind(Value::Array(events).to_string())
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts runs; see [`Store::insert_runs`]. With `ignore_conflicts`, an existing id is skipped
/// silently (cron ticks).
async fn insert_runs_tx(
    conn: &mut SqliteConnection,
    runs: &[NewRun],
    now: DateTime<Utc>,
    ignore_conflicts: bool,
) -> Result<Vec<Inserted>> {
    let mut out = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(CHUNK) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|r| {
                let status = if r.run_at > now {
                    "scheduled"
                } else {
                    "queued"
                };
                json!([
                    r.id.to_string(),
                    r.tenant,
                    r.task,
                    status,
                    r.retries + 1,
                    r.retries,
                    r.priority,
                    r.input.to_string(),
                    r.owner,
                    r.idempotency_key,
                    r.parent_id.map(|p| p.to_string()),
                    r.metadata.as_ref().map(|m| m.to_string()),
                    r.timeout.as_millis() as u64,
                    serde_json::to_string(&r.backoff).unwrap_or_default(),
                    micros(r.run_at.max(now)),
                ])
            })
            .collect();
        let inserted: Vec<(i64, String)> = sqlx::query_as(
            "INSERT INTO runs (id, tenant, task, status, attempt, max_attempts, retries, priority, input, owner, \
             idempotency_key, parent_id, metadata, timeout_ms, backoff, run_at, created_at) \
             SELECT value->>0, value->>1, value->>2, value->>3, 0, value->>4, value->>5, value->>6, value->>7, \
             value->>8, value->>9, value->>10, value->>11, value->>12, value->>13, value->>14, ?2 \
             FROM json_each(?1) WHERE true ON CONFLICT(id) DO NOTHING RETURNING seq, id",
        )
        .bind(Value::Array(rows).to_string())
        .bind(micros(now))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut seqs: HashMap<String, i64> = inserted.into_iter().map(|(s, id)| (id, s)).collect();
        let mut queue = Vec::new();
        let mut timers = Vec::new();
        let mut events = Vec::new();
        for r in chunk {
            let id = r.id.to_string();
            // `remove`: a second request with the same id in one batch finds the first one.
            match seqs.remove(&id) {
                Some(seq) => {
                    let status = if r.run_at > now {
                        timers.push(json!([seq, micros(r.run_at)]));
                        RunStatus::Scheduled
                    } else {
                        queue.push(json!([seq, r.tenant, r.task, r.priority]));
                        RunStatus::Queued
                    };
                    events.push(json!([seq, status.as_str(), r.reason]));
                    out.push(Inserted::Created(r.snapshot(status, now)));
                }
                None if ignore_conflicts => {}
                None => {
                    let existing = load(&mut *conn, &r.tenant, r.id).await?.ok_or_else(|| {
                        Error::IdempotencyConflict {
                            key: r.idempotency_key.clone().unwrap_or_default(),
                            existing: r.id,
                        }
                    })?;
                    if existing.input != r.input || existing.task != r.task {
                        return Err(Error::IdempotencyConflict {
                            key: r.idempotency_key.clone().unwrap_or_default(),
                            existing: r.id,
                        });
                    }
                    out.push(Inserted::Existing(existing));
                }
            }
        }
        if !queue.is_empty() {
            sqlx::query(
                "INSERT INTO queue (run_seq, tenant, task, priority) \
                 SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
            )
            .bind(Value::Array(queue).to_string())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        if !timers.is_empty() {
            sqlx::query("INSERT INTO timers (run_seq, due_at) SELECT value->>0, value->>1 FROM json_each(?)")
                .bind(Value::Array(timers).to_string())
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        if !events.is_empty() {
            sqlx::query(
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, NULL, value->>1, 0, NULL, value->>2 FROM json_each(?1)",
            )
            .bind(Value::Array(events).to_string())
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    Ok(out)
}

/// Claims up to `n` queued runs of the worker's tasks inside the caller's transaction.
async fn claim_tx(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    tasks: &str,
    n: u32,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Vec<Assignment>> {
    let seqs: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM queue WHERE qid IN (SELECT qid FROM queue WHERE tenant = ?1 AND task IN \
         (SELECT value FROM json_each(?2)) ORDER BY priority DESC, qid LIMIT ?3) RETURNING run_seq",
    )
    .bind(&worker.tenant)
    .bind(tasks)
    .bind(i64::from(n))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = MAX(?1, run_at), worker = ?2, worker_id = ?3 \
         WHERE seq IN (SELECT value FROM json_each(?4)) AND status = 'queued' \
         RETURNING seq, id, task, input, attempt, max_attempts, timeout_ms, parent_id, priority",
    )
    .bind(micros(now))
    .bind(&worker.name)
    .bind(&worker.id)
    .bind(seqs_json(&seqs))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let lease_us = lease.as_micros() as i64;
    let now_us = micros(now);
    let mut leases = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq").map_err(db)?;
        let attempt = row.try_get::<i64, _>("attempt").map_err(db)?;
        let timeout_ms = row.try_get::<i64, _>("timeout_ms").map_err(db)?;
        // The engine's own deadline: the task's timeout plus one lease for the worker to report.
        let deadline = now_us + timeout_ms * 1000 + lease_us;
        leases.push(json!([seq, (now_us + lease_us).min(deadline), deadline]));
        events.push(json!([seq, attempt]));
        let input: String = row.try_get("input").map_err(db)?;
        let id: String = row.try_get("id").map_err(db)?;
        out.push((
            row.try_get::<i64, _>("priority").map_err(db)?,
            seq,
            Assignment {
                run_id: id.parse()?,
                task: row.try_get("task").map_err(db)?,
                input: serde_json::from_str(&input).unwrap_or(Value::Null),
                attempt: attempt as u32,
                max_attempts: row.try_get::<i64, _>("max_attempts").map_err(db)? as u32,
                timeout_ms: timeout_ms as u64,
                parent_id: row
                    .try_get::<Option<String>, _>("parent_id")
                    .map_err(db)?
                    .and_then(|p| p.parse().ok()),
            },
        ));
    }
    sqlx::query(
        "INSERT OR REPLACE INTO leases (run_seq, worker_id, expires_at, deadline) \
         SELECT value->>0, ?2, value->>1, value->>2 FROM json_each(?1)",
    )
    .bind(Value::Array(leases).to_string())
    .bind(&worker.id)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
         SELECT value->>0, ?2, 'queued', 'running', value->>1, ?3, 'claimed' FROM json_each(?1)",
    )
    .bind(Value::Array(events).to_string())
    .bind(now_us)
    .bind(&worker.name)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    out.sort_by_key(|(p, seq, _)| (-p, *seq));
    Ok(out.into_iter().map(|(_, _, a)| a).collect())
}

/// Applies finished attempts inside the caller's transaction; see [`Store::complete`].
async fn complete_tx(
    conn: &mut SqliteConnection,
    worker: &WorkerRecord,
    completions: &[Completion],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut changed = 0;
    let ok: Vec<Value> = completions
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Succeeded { output } => {
                Some(json!({"id": c.run_id.to_string(), "a": c.attempt, "o": output}))
            }
            _ => None,
        })
        .collect();
    if !ok.is_empty() {
        let done: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE runs SET status = 'succeeded', output = c.o, error = NULL, finished_at = ?1 \
             FROM (SELECT value->>'id' AS id, value->>'a' AS a, value->'o' AS o FROM json_each(?2)) AS c \
             WHERE runs.id = c.id AND runs.status = 'running' AND runs.attempt = c.a AND runs.worker_id = ?3 \
             RETURNING runs.seq, runs.attempt",
        )
        .bind(micros(now))
        .bind(Value::Array(ok).to_string())
        .bind(&worker.id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        if !done.is_empty() {
            changed += done.len();
            let seqs: Vec<i64> = done.iter().map(|d| d.0).collect();
            sqlx::query("DELETE FROM leases WHERE run_seq IN (SELECT value FROM json_each(?))")
                .bind(seqs_json(&seqs))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let events: Vec<Value> = done.iter().map(|(s, a)| json!([s, a])).collect();
            sqlx::query(
                "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                 SELECT value->>0, ?2, 'running', 'succeeded', value->>1, ?3, 'succeeded' FROM json_each(?1)",
            )
            .bind(Value::Array(events).to_string())
            .bind(micros(now))
            .bind(&worker.name)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
    }
    let mut states: HashMap<RunId, Locked> = HashMap::new();
    let mut changes = Vec::new();
    for c in completions {
        if matches!(c.outcome, Outcome::Succeeded { .. }) {
            continue;
        }
        let st = match states.entry(c.run_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match state_by_id(&mut *conn, Some(&worker.tenant), c.run_id).await? {
                    Some(st) => e.insert(st),
                    None => continue,
                }
            }
        };
        let happened = Happening::Reported {
            worker_id: &worker.id,
            attempt: c.attempt,
            outcome: &c.outcome,
        };
        // `None`: stale (cancelled, re-queued after a lost lease, or another attempt).
        changes.extend(st.plan(happened, now)?);
    }
    apply(&mut *conn, &changes, now).await?;
    changed += changes.len();
    Ok(changed)
}

/// Deletes runs by seq with everything that refers to them.
async fn delete_seqs(conn: &mut SqliteConnection, seqs: &[i64]) -> Result<usize> {
    if seqs.is_empty() {
        return Ok(0);
    }
    let list = seqs_json(seqs);
    for table in ["events", "steps", "queue", "timers", "leases"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE run_seq IN (SELECT value FROM json_each(?))"
        ))
        .bind(&list)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    let r = sqlx::query("DELETE FROM runs WHERE seq IN (SELECT value FROM json_each(?))")
        .bind(&list)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(r.rows_affected() as usize)
}

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

    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>> {
        let mut tx = self.begin().await?;
        let out = insert_runs_tx(&mut tx, &runs, now, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        load(&mut conn, tenant, id).await
    }

    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage> {
        let (mut q, limit) = list_query(tenant, filter)?;
        let rows: Vec<RunRow> = q.build_query_as().fetch_all(&self.read).await.map_err(db)?;
        page_of(rows, limit)
    }

    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>> {
        let mut conn = self.read.acquire().await.map_err(db)?;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM runs WHERE id = ? AND tenant = ?")
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::run_not_found(id))?;
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE run_seq = ? ORDER BY id"
        ))
        .bind(seq)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        rows.into_iter().map(|r| r.event(id)).collect()
    }

    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        let mut tx = self.begin().await?;
        let st = state_by_id(&mut tx, Some(tenant), id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let mut st = st;
        let change = st.plan(Happening::Cancel, now)?;
        apply(&mut tx, change.as_slice(), now).await?;
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        tx.commit().await.map_err(db)?;
        Ok(snap)
    }

    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot> {
        let mut tx = self.begin().await?;
        let st = state_by_id(&mut tx, Some(tenant), id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        let mut st = st;
        let change = st.plan(Happening::Retry, now)?;
        apply(&mut tx, change.as_slice(), now).await?;
        let snap = load(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        tx.commit().await.map_err(db)?;
        Ok(snap)
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
        let tasks = ids_json(&worker.tasks);
        // Cheap read first, so an idle poll does not take the write lock.
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT qid FROM queue WHERE tenant = ?1 AND task IN (SELECT value FROM json_each(?2)) LIMIT 1",
        )
        .bind(&worker.tenant)
        .bind(&tasks)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let out = claim_tx(&mut tx, worker, &tasks, n, now, lease).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
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
        let mut tx = self.begin().await?;
        let changed = complete_tx(&mut tx, worker, completions, now).await?;
        tx.commit().await.map_err(db)?;
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
        let mut tx = self.begin().await?;
        let changed = complete_tx(&mut tx, worker, completions, now).await?;
        let claimed = if n > 0 && !worker.tasks.is_empty() {
            claim_tx(&mut tx, worker, &ids_json(&worker.tasks), n, now, lease).await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(db)?;
        Ok((changed, claimed))
    }

    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>> {
        let mut tx = self.begin().await?;
        let expires = micros(now) + lease.as_micros() as i64;
        // Only the runs the worker says it holds: a claim whose answer never reached it (a lost
        // response) must expire, not be renewed forever.
        sqlx::query(
            "UPDATE leases SET expires_at = MIN(?1, deadline) WHERE worker_id = ?2 \
             AND run_seq IN (SELECT r.seq FROM runs r JOIN json_each(?3) h ON r.id = h.value)",
        )
        .bind(expires)
        .bind(&worker.id)
        .bind(ids_json(held))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE workers SET last_heartbeat = ? WHERE id = ?")
            .bind(micros(now))
            .bind(&worker.id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let lost: Vec<String> = sqlx::query_scalar(
            "SELECT h.value FROM json_each(?1) AS h WHERE NOT EXISTS (SELECT 1 FROM runs r JOIN leases l \
             ON l.run_seq = r.seq WHERE r.id = h.value AND l.worker_id = ?2)",
        )
        .bind(ids_json(held))
        .bind(&worker.id)
        .fetch_all(&self.write)
        .await
        .map_err(db)?;
        lost.iter().map(|s| s.parse()).collect()
    }

    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance> {
        let now_us = micros(now);
        let (next_due, next_expiry): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MIN(due_at) FROM timers), (SELECT MIN(expires_at) FROM leases)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        let mut m = Maintenance {
            next_due: next_due.map(from_micros),
            ..Maintenance::default()
        };
        let due = next_due.is_some_and(|t| t <= now_us);
        let expired = next_expiry.is_some_and(|t| t <= now_us);
        if !due && !expired {
            return Ok(m);
        }
        let mut tx = self.begin().await?;
        if due {
            let mut due_rows: Vec<(i64, i64)> = sqlx::query_as(
                "DELETE FROM timers WHERE run_seq IN (SELECT run_seq FROM timers WHERE due_at <= ?1 \
                 ORDER BY due_at LIMIT ?2) RETURNING run_seq, due_at",
            )
            .bind(now_us)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            // RETURNING gives no order: sort by due time (then seq) for FIFO by due time.
            due_rows.sort_by_key(|&(seq, due)| (due, seq));
            let seqs: Vec<i64> = due_rows.iter().map(|&(seq, _)| seq).collect();
            let mut rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
                "UPDATE runs SET status = 'queued' WHERE seq IN (SELECT value FROM json_each(?1)) \
                 AND status = 'scheduled' RETURNING seq, tenant, task, priority, attempt",
            )
            .bind(seqs_json(&seqs))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if !rows.is_empty() {
                // Ready in due order, so FIFO within a priority follows the due times.
                let order: HashMap<i64, usize> =
                    seqs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
                rows.sort_by_key(|r| order.get(&r.0).copied().unwrap_or(usize::MAX));
                let queue: Vec<Value> = rows.iter().map(|r| json!([r.0, r.1, r.2, r.3])).collect();
                let events: Vec<Value> = rows.iter().map(|r| json!([r.0, r.4])).collect();
                sqlx::query(
                    "INSERT INTO queue (run_seq, tenant, task, priority) \
                     SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
                )
                .bind(Value::Array(queue).to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO events (run_seq, at, from_status, to_status, attempt, worker, reason) \
                     SELECT value->>0, ?2, 'scheduled', 'queued', value->>1, NULL, 'due' FROM json_each(?1)",
                )
                .bind(Value::Array(events).to_string())
                .bind(now_us)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            m.promoted = rows.len();
        }
        if expired {
            let sql = format!(
                "SELECT {}, l.deadline FROM leases l JOIN runs r ON r.seq = l.run_seq \
                 WHERE l.expires_at <= ?1 LIMIT ?2",
                state_cols_of_r()
            );
            let rows: Vec<ExpiredRow> = sqlx::query_as(&sql)
                .bind(now_us)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let mut seqs = Vec::with_capacity(rows.len());
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let deadline_passed = row.deadline <= now_us;
                let mut st = Locked::try_from(row.state)?;
                seqs.push(st.seq);
                changes.extend(st.plan(Happening::LeaseExpired { deadline_passed }, now)?);
            }
            // Leases of runs no longer running go too.
            sqlx::query("DELETE FROM leases WHERE run_seq IN (SELECT value FROM json_each(?))")
                .bind(seqs_json(&seqs))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            apply(&mut tx, &changes, now).await?;
            m.expired = changes.len();
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(due_at) FROM timers")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        m.next_due = next.map(from_micros);
        tx.commit().await.map_err(db)?;
        Ok(m)
    }

    async fn register_worker(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO workers (id, tenant, name, slots, tasks, labels, started_at, last_heartbeat) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&worker.id)
        .bind(&worker.tenant)
        .bind(&worker.name)
        .bind(i64::from(reg.slots))
        .bind(ids_json(&worker.tasks))
        .bind(serde_json::to_string(&reg.labels).unwrap_or_default())
        .bind(micros(now))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for def in &reg.tasks {
            sqlx::query(
                "INSERT INTO tasks (tenant, name, def, updated_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT(tenant, name) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at",
            )
            .bind(&worker.tenant)
            .bind(&def.name)
            .bind(serde_json::to_string(def).unwrap_or_default())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(expr) = &def.cron {
                sqlx::query(
                    "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) \
                     VALUES (?, ?, ?, ?, ?, 'null', NULL, ?) ON CONFLICT(tenant, id) DO UPDATE SET \
                     expr = excluded.expr, timezone = excluded.timezone",
                )
                .bind(&worker.tenant)
                .bind(format!("task:{}", def.name))
                .bind(&def.name)
                .bind(expr)
                .bind(def.timezone.as_deref().unwrap_or("UTC"))
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let row: Option<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        Ok(row.map(WorkerRow::record))
    }

    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {} FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ?",
            state_cols_of_r()
        );
        let rows: Vec<StateRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut changes = Vec::new();
        for row in rows {
            let mut st = Locked::try_from(row)?;
            if st.run.worker_id.as_deref() == Some(id) {
                changes.extend(st.plan(Happening::WorkerStopped, now)?);
            }
        }
        apply(&mut tx, &changes, now).await?;
        let handed = changes.len();
        sqlx::query("DELETE FROM leases WHERE worker_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(handed)
    }

    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        let rows: Vec<WorkerRow> = sqlx::query_as(&format!(
            "SELECT {WORKER_COLS} FROM workers w WHERE w.tenant = ? AND w.last_heartbeat >= ? \
             ORDER BY w.started_at"
        ))
        .bind(tenant)
        .bind(micros(since))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let held: Vec<String> = sqlx::query_scalar(
                "SELECT r.id FROM leases l JOIN runs r ON r.seq = l.run_seq WHERE l.worker_id = ? ORDER BY r.seq",
            )
            .bind(&row.id)
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
            out.push(row.info(&held));
        }
        Ok(out)
    }

    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let def: Option<String> =
            sqlx::query_scalar("SELECT def FROM tasks WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
        Ok(def.and_then(|d| serde_json::from_str(&d).ok()))
    }

    async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        Ok(self
            .all_crons()
            .await?
            .into_iter()
            .filter(|c| c.tenant == tenant)
            .map(|c| c.schedule)
            .collect())
    }

    async fn all_crons(&self) -> Result<Vec<CronRecord>> {
        let rows: Vec<CronRow> = sqlx::query_as(&format!(
            "SELECT {CRON_COLS} FROM crons ORDER BY tenant, id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(CronRecord::from).collect())
    }

    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()> {
        let s = &cron.schedule;
        sqlx::query(
            "INSERT INTO crons (tenant, id, task, expr, timezone, input, last_tick, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT(tenant, id) DO UPDATE SET task = excluded.task, \
             expr = excluded.expr, timezone = excluded.timezone, input = excluded.input",
        )
        .bind(&cron.tenant)
        .bind(&s.id)
        .bind(&s.task)
        .bind(&s.expr)
        .bind(&s.timezone)
        .bind(s.input.to_string())
        .bind(micros(s.created_at))
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM crons WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn fire_cron(&self, cron: &CronRecord, tick: DateTime<Utc>, run: NewRun) -> Result<bool> {
        let mut tx = self.begin().await?;
        let advanced = sqlx::query(
            "UPDATE crons SET last_tick = ?1 WHERE tenant = ?2 AND id = ?3 AND (last_tick IS NULL OR last_tick < ?1)",
        )
        .bind(micros(tick))
        .bind(&cron.tenant)
        .bind(&cron.schedule.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        let created = if advanced > 0 {
            !insert_runs_tx(&mut tx, std::slice::from_ref(&run), Utc::now(), true)
                .await?
                .is_empty()
        } else {
            false
        };
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    async fn checkpoint_step(
        &self,
        worker: &WorkerRecord,
        cp: &StepCheckpoint,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let st = state_by_id(&mut tx, Some(&worker.tenant), cp.run_id)
            .await?
            .ok_or_else(|| Error::run_not_found(cp.run_id))?;
        let mut st = st;
        let happened = Happening::Checkpoint {
            worker_id: &worker.id,
            worker: &worker.name,
            step: cp,
        };
        let planned = st.plan(happened, now)?;
        let (status, finished) = match cp.status {
            StepStatus::Running => ("running", None),
            StepStatus::Succeeded => ("succeeded", Some(micros(now))),
            StepStatus::Failed => ("failed", Some(micros(now))),
        };
        sqlx::query(
            "INSERT INTO steps (run_seq, position, name, status, output, error, attempt, started_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(run_seq, position) DO UPDATE SET \
             name = excluded.name, status = excluded.status, output = excluded.output, error = excluded.error, \
             attempt = excluded.attempt, finished_at = excluded.finished_at, \
             started_at = CASE WHEN excluded.status = 'running' THEN excluded.started_at ELSE steps.started_at END",
        )
        .bind(st.seq)
        .bind(i64::from(cp.position))
        .bind(&cp.name)
        .bind(status)
        .bind(cp.output.as_ref().map(|o| o.to_string()))
        .bind(&cp.error)
        .bind(i64::from(cp.attempt))
        .bind(micros(now))
        .bind(finished)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        apply(&mut tx, planned.as_slice(), now).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>> {
        let rows: Vec<StepRow> = sqlx::query_as(&format!(
            "SELECT {STEP_COLS} FROM steps s JOIN runs r ON r.seq = s.run_seq \
             WHERE r.id = ? AND r.tenant = ? ORDER BY s.position"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(StepSnapshot::from).collect())
    }

    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE tenant = ?1 AND id IN (SELECT value FROM json_each(?2))",
        )
        .bind(tenant)
        .bind(ids_json(ids))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        let mut tx = self.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM runs WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let n = delete_seqs(&mut tx, &seqs).await?;
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO api_tokens (hash, tenant, created_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(tenant)
            .bind(micros(now))
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT tenant FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.read)
            .await
            .map_err(db)
    }

    async fn queue_depth(&self) -> Result<Vec<(String, String, u8, u64)>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT tenant, task, priority, COUNT(*) FROM queue GROUP BY tenant, task, priority ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(t, k, p, n)| (t, k, p as u8, n as u64))
            .collect())
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
