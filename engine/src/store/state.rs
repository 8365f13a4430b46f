//! A run's state as both stores read it under their lock, and the life-cycle changes they apply.
//!
//! The rules live in [`owlclaw_core::lifecycle`]; this module only carries its inputs and outputs
//! with the columns the stores need to place a run (its `seq`, tenant, task and priority).

use super::{from_micros, micros};
use chrono::{DateTime, Utc};
use owlclaw_core::lifecycle::{self, Change, Happening, RunState, Start};
use owlclaw_core::{Error, Result, RunStatus};
use std::str::FromStr;
use std::time::Duration;

/// The columns of `runs` that [`StateRow`] maps.
pub(super) const STATE_COLS: &str = "seq, id, tenant, task, status, attempt, max_attempts, \
     retries, priority, backoff, worker, worker_id, error, errors, timeout_ms, run_at, finished_at";

/// [`STATE_COLS`] of the table aliased `r`.
#[cfg(feature = "sqlite")]
pub(super) fn state_cols_of_r() -> String {
    STATE_COLS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row of [`STATE_COLS`]: the same column types in both schemas.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StateRow {
    seq: i64,
    id: String,
    tenant: String,
    task: String,
    status: String,
    attempt: i64,
    max_attempts: i64,
    retries: i64,
    priority: i64,
    backoff: String,
    worker: Option<String>,
    worker_id: Option<String>,
    error: Option<String>,
    errors: Option<String>,
    timeout_ms: i64,
    run_at: i64,
    finished_at: Option<i64>,
}

/// A run read under the store's lock: where it is stored, and its life-cycle state.
#[derive(Debug, Clone)]
pub(super) struct Locked {
    /// Its row.
    pub(super) seq: i64,
    /// Its tenant (a queue row's column).
    pub(super) tenant: String,
    /// Its task (a queue row's column).
    pub(super) task: String,
    /// Its priority (a queue row's column).
    pub(super) priority: i64,
    /// What the life cycle reads.
    pub(super) run: RunState,
}

impl TryFrom<StateRow> for Locked {
    type Error = Error;
    fn try_from(r: StateRow) -> Result<Locked> {
        let status = RunStatus::from_str(&r.status).map_err(|_| {
            Error::Internal(format!("run {} has an unknown status {:?}", r.id, r.status))
        })?;
        Ok(Locked {
            seq: r.seq,
            tenant: r.tenant,
            task: r.task,
            priority: r.priority,
            run: RunState {
                id: r.id.parse()?,
                status,
                attempt: r.attempt as u32,
                max_attempts: r.max_attempts as u32,
                retries: r.retries as u32,
                backoff: serde_json::from_str(&r.backoff).unwrap_or_default(),
                timeout: Duration::from_millis(r.timeout_ms.max(0) as u64),
                worker: r.worker,
                worker_id: r.worker_id,
                error: r.error,
                errors: r.errors,
                run_at: from_micros(r.run_at),
                finished_at: r.finished_at.map(from_micros),
            },
        })
    }
}

/// A change to apply to a stored run.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    /// Its row.
    pub(super) seq: i64,
    /// Its tenant.
    pub(super) tenant: String,
    /// Its task.
    pub(super) task: String,
    /// Its priority.
    pub(super) priority: i64,
    /// The change.
    pub(super) change: Change,
}

impl Planned {
    /// The new due time, in the stores' encoding.
    pub(super) fn run_at(&self) -> i64 {
        micros(self.change.run_at)
    }

    /// The finish time, in the stores' encoding.
    pub(super) fn finished_at(&self) -> Option<i64> {
        self.change.finished_at.map(micros)
    }

    /// Whether the run changes status (and so leaves one narrow table for another); a change
    /// that keeps it (a step checkpoint) only writes its event.
    pub(super) fn moves(&self) -> bool {
        self.change.from != self.change.status
    }

    /// What happens to `started_at` and `worker`, as the stores' update statements spell it.
    pub(super) fn start(&self) -> &'static str {
        match self.change.start {
            Start::Keep => "keep",
            Start::Now => "now",
            Start::Clear => "clear",
        }
    }
}

impl Locked {
    /// What `happened` does to this run ([`lifecycle::decide`]); the state follows the change, so
    /// that a second happening in the same batch sees it.
    pub(super) fn plan(
        &mut self,
        happened: Happening<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<Planned>> {
        let Some(change) = lifecycle::decide(&self.run, happened, now)? else {
            return Ok(None);
        };
        change.follow(&mut self.run);
        Ok(Some(Planned {
            seq: self.seq,
            tenant: self.tenant.clone(),
            task: self.task.clone(),
            priority: self.priority,
            change,
        }))
    }
}

/// A run whose lease expired, with the lease's deadline.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ExpiredRow {
    /// The run.
    #[sqlx(flatten)]
    pub(super) state: StateRow,
    /// When its attempt's timeout ends (µs).
    pub(super) deadline: i64,
}

/// How a batch of changes moves its runs between the narrow tables: the rows each leaves
/// (`leases` when leaving `running`, `queue` and `timers` when leaving `queued` and `scheduled`)
/// and the changes that enter the queue or a timer. Stores write these with their own SQL.
#[derive(Debug, Default)]
pub(super) struct Moves<'a> {
    /// Changes that rewrite the run's row (all but step checkpoints).
    pub(super) moved: Vec<&'a Planned>,
    /// Runs leaving `running`: their leases go.
    pub(super) left_leases: Vec<i64>,
    /// Runs leaving `queued`: their queue rows go.
    pub(super) left_queue: Vec<i64>,
    /// Runs leaving `scheduled`: their timers go.
    pub(super) left_timers: Vec<i64>,
    /// Changes entering `queued`: a queue row each, in this order.
    pub(super) queued: Vec<&'a Planned>,
    /// Changes entering `scheduled`: a timer each, due at the change's `run_at`.
    pub(super) timed: Vec<&'a Planned>,
    /// Runs leaving the final statuses (a retry, a replay): stores that list finished runs
    /// apart (PostgreSQL's `finished`) drop them there.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) left_finished: Vec<i64>,
    /// Changes entering a final status (from another one too: the store's row is replaced).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) finished: Vec<&'a Planned>,
}

impl<'a> Moves<'a> {
    /// The moves of `changes`.
    pub(super) fn of(changes: &'a [Planned]) -> Moves<'a> {
        let mut m = Moves::default();
        for p in changes.iter().filter(|p| p.moves()) {
            m.moved.push(p);
            match p.change.from {
                RunStatus::Running => m.left_leases.push(p.seq),
                RunStatus::Queued => m.left_queue.push(p.seq),
                RunStatus::Scheduled => m.left_timers.push(p.seq),
                _ => {}
            }
            match p.change.status {
                RunStatus::Queued => m.queued.push(p),
                RunStatus::Scheduled => m.timed.push(p),
                _ => {}
            }
            match (p.change.from.is_terminal(), p.change.status.is_terminal()) {
                (true, false) => m.left_finished.push(p.seq),
                (_, true) => m.finished.push(p),
                (false, false) => {}
            }
        }
        m
    }
}

#[cfg(feature = "sqlite")]
sqlite_rows! {
    StateRow {
        seq, id, tenant, task, status, attempt, max_attempts, retries, priority, backoff, worker,
        worker_id, error, errors, timeout_ms, run_at, finished_at,
    }
}

#[cfg(feature = "sqlite")]
impl ExpiredRow {
    /// The row, by column name.
    pub(super) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(ExpiredRow {
            state: StateRow::from_sqlite(row)?,
            deadline: row.get("deadline")?,
        })
    }
}
