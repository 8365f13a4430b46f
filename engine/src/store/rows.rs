//! Rows of the tables both stores share, mapped once: `#[derive(sqlx::FromRow)]` for PostgreSQL,
//! `sqlite_rows!` for SQLite; the two schemas give every column the same type (times in µs as
//! 64-bit integers, JSON as text).

use super::{from_micros, CronRecord, QueueDepth, WorkerRecord};
use owlclaw_core::cron::{CatchUp, Overlap};
use owlclaw_core::wire::{
    Assignment, CronSchedule, PushedEvent, RunEvent, RunSnapshot, StepSnapshot, StepStatus,
    WorkerInfo,
};
use owlclaw_core::{Error, Result, RunId, RunStatus};
use serde_json::Value;
use std::str::FromStr;

/// JSON stored as text; text that is not JSON (never written by the engine) comes back as a
/// string rather than failing the read.
pub(super) fn json_text(t: String) -> Value {
    serde_json::from_str(&t).unwrap_or(Value::String(t))
}

fn status(s: &str) -> Result<RunStatus> {
    RunStatus::from_str(s).map_err(|_| Error::Internal(format!("unknown status {s:?} stored")))
}

/// `SELECT * FROM runs`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunRow {
    pub(super) seq: i64,
    id: String,
    task: String,
    status: String,
    attempt: i64,
    max_attempts: i64,
    priority: i64,
    input: String,
    output: Option<String>,
    error: Option<String>,
    errors: Option<String>,
    owner: Option<String>,
    idempotency_key: Option<String>,
    parent_id: Option<String>,
    metadata: Option<String>,
    worker: Option<String>,
    timeout_ms: i64,
    run_at: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    replays: i64,
    expires_at: Option<i64>,
    concurrency_key: Option<String>,
}

impl RunRow {
    /// The public view (without its steps).
    pub(super) fn snapshot(self) -> Result<RunSnapshot> {
        Ok(RunSnapshot {
            id: self.id.parse()?,
            task: self.task,
            status: status(&self.status)?,
            attempt: self.attempt as u32,
            max_attempts: self.max_attempts as u32,
            priority: self.priority as u8,
            input: json_text(self.input),
            output: self.output.map(json_text),
            error: self.error,
            errors: self
                .errors
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            owner: self.owner,
            idempotency_key: self.idempotency_key,
            parent_id: self.parent_id.and_then(|p| p.parse().ok()),
            metadata: self.metadata.map(json_text),
            worker: self.worker,
            timeout_ms: self.timeout_ms as u64,
            run_at: from_micros(self.run_at),
            created_at: from_micros(self.created_at),
            started_at: self.started_at.map(from_micros),
            finished_at: self.finished_at.map(from_micros),
            steps: Vec::new(),
            waiting: None,
            replays: self.replays as u32,
            expires_at: self.expires_at.map(from_micros),
            limit_key: self.concurrency_key,
        })
    }
}

/// The columns of [`EventRow`], in the order of the table.
pub(super) const EVENT_COLS: &str = "at, from_status, to_status, attempt, worker, reason";

/// A row of `events`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    at: i64,
    from_status: Option<String>,
    to_status: String,
    attempt: i64,
    worker: Option<String>,
    reason: String,
}

impl EventRow {
    /// The public view of an event of `run_id`.
    pub(super) fn event(self, run_id: RunId) -> Result<RunEvent> {
        Ok(RunEvent {
            run_id,
            at: from_micros(self.at),
            from: self.from_status.as_deref().map(status).transpose()?,
            to: status(&self.to_status)?,
            attempt: self.attempt as u32,
            worker: self.worker,
            reason: self.reason,
        })
    }
}

/// The columns of [`StepRow`] of the table aliased `s`.
pub(super) const STEP_COLS: &str =
    "s.position, s.name, s.status, s.output, s.error, s.attempt, s.started_at, s.finished_at";

/// A row of `steps`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StepRow {
    position: i64,
    name: String,
    status: String,
    output: Option<String>,
    error: Option<String>,
    attempt: i64,
    started_at: i64,
    finished_at: Option<i64>,
}

/// A step status as stored.
pub(super) fn step_status(s: &str) -> StepStatus {
    match s {
        "succeeded" => StepStatus::Succeeded,
        "failed" => StepStatus::Failed,
        _ => StepStatus::Running,
    }
}

/// What a store records of one step: its status and the attempt that wrote it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RecordedStep {
    status: String,
    attempt: i64,
}

impl RecordedStep {
    /// As [`owlclaw_core::lifecycle::Happening::Checkpoint`] takes it.
    pub(super) fn pair(&self) -> (StepStatus, u32) {
        (step_status(&self.status), self.attempt as u32)
    }
}

impl From<StepRow> for StepSnapshot {
    fn from(r: StepRow) -> StepSnapshot {
        StepSnapshot {
            position: r.position as u32,
            name: r.name,
            status: step_status(&r.status),
            output: r.output.map(json_text),
            error: r.error,
            attempt: r.attempt as u32,
            started_at: from_micros(r.started_at),
            finished_at: r.finished_at.map(from_micros),
        }
    }
}

/// The columns of [`WorkerRow`] of the table aliased `w`.
pub(super) const WORKER_COLS: &str =
    "w.id, w.tenant, w.name, w.slots, w.tasks, w.labels, w.started_at, w.last_heartbeat";

/// A row of `workers`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct WorkerRow {
    pub(super) id: String,
    tenant: String,
    name: String,
    slots: i64,
    tasks: String,
    labels: String,
    started_at: i64,
    last_heartbeat: i64,
}

impl WorkerRow {
    /// The engine's record.
    pub(super) fn record(self) -> WorkerRecord {
        WorkerRecord {
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            tasks: serde_json::from_str(&self.tasks).unwrap_or_default(),
            limits: Vec::new(),
            units_due: Default::default(),
        }
    }

    /// The public view, with the runs it holds.
    pub(super) fn info(self, held: &[String]) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            name: self.name,
            slots: self.slots as u32,
            tasks: serde_json::from_str(&self.tasks).unwrap_or_default(),
            started_at: from_micros(self.started_at),
            last_heartbeat: from_micros(self.last_heartbeat),
            held_runs: held.iter().filter_map(|h| h.parse().ok()).collect(),
            labels: serde_json::from_str(&self.labels).unwrap_or_default(),
        }
    }
}

/// The columns of [`CronRow`].
pub(super) const CRON_COLS: &str =
    "tenant, id, task, expr, timezone, input, last_tick, created_at, paused_at, overlap, catch_up, \
     last_fired";

/// A row of `crons`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct CronRow {
    tenant: String,
    id: String,
    task: String,
    expr: String,
    timezone: String,
    input: String,
    last_tick: Option<i64>,
    created_at: i64,
    paused_at: Option<i64>,
    overlap: String,
    catch_up: String,
    last_fired: Option<i64>,
}

impl From<CronRow> for CronRecord {
    fn from(r: CronRow) -> CronRecord {
        CronRecord {
            tenant: r.tenant,
            schedule: CronSchedule {
                id: r.id,
                task: r.task,
                expr: r.expr,
                timezone: r.timezone,
                input: serde_json::from_str(&r.input).unwrap_or(Value::Null),
                last_tick: r.last_tick.map(from_micros),
                next_tick: None,
                created_at: from_micros(r.created_at),
                paused_at: r.paused_at.map(from_micros),
                next_ticks: Vec::new(),
                last_run: None,
                overlap: Overlap::parse(&r.overlap).unwrap_or_default(),
                catch_up: CatchUp::parse(&r.catch_up).unwrap_or_default(),
                last_fired: r.last_fired.map(from_micros),
            },
        }
    }
}

/// The columns of [`AssignmentRow`] of the table aliased `r`.
pub(super) const ASSIGNMENT_COLS: &str =
    "r.seq, r.id, r.task, r.input, r.attempt, r.max_attempts, \
     r.timeout_ms, r.parent_id, r.run_at";

/// A running run as its worker receives it; [`AssignmentRow::from_sqlite_at`] reads these
/// columns by position, in this order.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AssignmentRow {
    pub(super) seq: i64,
    id: String,
    task: String,
    input: String,
    attempt: i64,
    max_attempts: i64,
    timeout_ms: i64,
    parent_id: Option<String>,
    run_at: i64,
}

impl AssignmentRow {
    /// What the worker receives.
    pub(super) fn assignment(self) -> Result<Assignment> {
        Ok(Assignment {
            run_id: self.id.parse()?,
            task: self.task,
            input: json_text(self.input),
            attempt: self.attempt as u32,
            max_attempts: self.max_attempts as u32,
            timeout_ms: self.timeout_ms as u64,
            parent_id: self.parent_id.and_then(|p| p.parse().ok()),
            due_at: Some(from_micros(self.run_at)),
        })
    }
}

/// The queue's depth by tenant, task and priority.
pub(super) const QUEUE_DEPTH_SQL: &str =
    "SELECT tenant, task, priority, COUNT(*) AS ready FROM queue \
     GROUP BY tenant, task, priority ORDER BY 1, 2, 3";

/// A row of [`QUEUE_DEPTH_SQL`].
#[derive(Debug, sqlx::FromRow)]
pub(super) struct QueueDepthRow {
    tenant: String,
    task: String,
    priority: i64,
    ready: i64,
}

impl From<QueueDepthRow> for QueueDepth {
    fn from(r: QueueDepthRow) -> QueueDepth {
        QueueDepth {
            tenant: r.tenant,
            task: r.task,
            priority: r.priority as u8,
            ready: r.ready as u64,
        }
    }
}

/// The columns of [`PushedEventRow`].
pub(super) const PUSHED_EVENT_COLS: &str = "id, key, payload, runs, created_at";

/// A row of `pushed_events`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct PushedEventRow {
    id: String,
    key: String,
    payload: String,
    runs: String,
    created_at: i64,
}

impl PushedEventRow {
    /// The public view, as stored (`created: false`).
    pub(super) fn event(self) -> Result<PushedEvent> {
        Ok(PushedEvent {
            id: self.id,
            key: self.key,
            payload: json_text(self.payload),
            created_at: from_micros(self.created_at),
            runs: serde_json::from_str(&self.runs).map_err(|e| {
                Error::Internal(format!("the runs of a stored event are not JSON: {e}"))
            })?,
            created: false,
            resumed: Vec::new(),
        })
    }
}

#[cfg(feature = "sqlite")]
sqlite_rows! {
    RunRow {
        seq, id, task, status, attempt, max_attempts, priority, input, output, error, errors,
        owner, idempotency_key, parent_id, metadata, worker, timeout_ms, run_at, created_at,
        started_at, finished_at, replays, expires_at, concurrency_key,
    }
    EventRow { at, from_status, to_status, attempt, worker, reason }
    StepRow { position, name, status, output, error, attempt, started_at, finished_at }
    RecordedStep { status, attempt }
    WorkerRow { id, tenant, name, slots, tasks, labels, started_at, last_heartbeat }
    CronRow {
        tenant, id, task, expr, timezone, input, last_tick, created_at, paused_at, overlap,
        catch_up, last_fired,
    }
    QueueDepthRow { tenant, task, priority, ready }
    PushedEventRow { id, key, payload, runs, created_at }
}

#[cfg(feature = "sqlite")]
impl AssignmentRow {
    /// The row from columns 0 to 8 in the order of [`ASSIGNMENT_COLS`] (read on the hot path:
    /// no lookup of columns by name).
    pub(super) fn from_sqlite_at(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(AssignmentRow {
            seq: row.get(0)?,
            id: row.get(1)?,
            task: row.get(2)?,
            input: row.get(3)?,
            attempt: row.get(4)?,
            max_attempts: row.get(5)?,
            timeout_ms: row.get(6)?,
            parent_id: row.get(7)?,
            run_at: row.get(8)?,
        })
    }
}
