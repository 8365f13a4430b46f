//! A run's state as both stores read it under their lock, and the life-cycle changes they apply.
//!
//! The rules live in [`owlclaw_core::lifecycle`]; this module only carries its inputs and outputs
//! with the columns the stores need to place a run (its `seq`, tenant, task and priority).

use super::{from_micros, micros};
use chrono::{DateTime, Utc};
use owlclaw_core::lifecycle::{self, Change, Happening, RunState};
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
