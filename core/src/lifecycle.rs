//! The life cycle of a run, in one place and free of I/O.
//!
//! A store reads a run's [`RunState`] under its lock, asks [`decide`] what a [`Happening`] does
//! to it, and writes the [`Change`] it gets back: the run's new columns, which narrow table it
//! leaves and enters (its status says it: `queued` → the queue, `scheduled` → a timer, `running`
//! → a lease), and one event row with its reason. Stores decide nothing themselves, so every
//! backend follows the same rules, written once here.
//!
//! Every change [`decide`] returns is a legal transition ([`RunStatus::can_transition_to`]), or
//! an explicit manual retry of a `failed` or `cancelled` run, or a step checkpoint (no change of
//! status); anything else is refused with [`Error::InvalidTransition`]. Terminal runs stay
//! terminal except through a retry.
//!
//! Two changes are also written by stores in bulk SQL for speed, and the conformance suite
//! checks that the rows they write are those of this module: a claim ([`Happening::Claimed`],
//! reason [`reason::CLAIMED`]) and a success ([`Outcome::Succeeded`], reason
//! [`reason::SUCCEEDED`]); likewise timers coming due ([`Happening::Due`], reason
//! [`reason::DUE`]).

use crate::duration::format_duration;
use crate::retry::Backoff;
use crate::wire::{AttemptError, Outcome, StepCheckpoint, StepStatus};
use crate::{Error, Result, RunId, RunStatus};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The reasons written on events whose text does not depend on the run.
pub mod reason {
    /// A worker claimed the run.
    pub const CLAIMED: &str = "claimed";
    /// The attempt returned `Ok`.
    pub const SUCCEEDED: &str = "succeeded";
    /// The run's due time came (a delay, a retry backoff, a durable sleep).
    pub const DUE: &str = "due";
    /// The run was created for later.
    pub const SCHEDULED: &str = "scheduled";
    /// The worker stopped the attempt because the run was cancelled.
    pub const STOPPED: &str = "stopped by its worker";
    /// A graceful shutdown handed the run back.
    pub const HANDED_BACK: &str =
        "handed back by its worker at shutdown; not counted as an attempt";
    /// The worker deregistered while holding the run.
    pub const WORKER_STOPPED: &str = "handed back: its worker stopped; not counted as an attempt";
    /// Cancelled before its due time.
    pub const CANCELLED_SCHEDULED: &str = "cancelled before it was due";
    /// Cancelled in the queue.
    pub const CANCELLED_QUEUED: &str = "cancelled while queued";
    /// Cancelled while a worker ran it.
    pub const CANCELLED_RUNNING: &str = "cancelled while running; the worker is told to stop";
    /// The error of a run that expired before it started.
    pub const EXPIRED: &str = "expired";
    /// A workflow run started.
    pub const WORKFLOW_STARTED: &str = "workflow started: its first tasks are queued";
    /// Every task of a workflow run succeeded.
    pub const WORKFLOW_SUCCEEDED: &str = "every task of the workflow succeeded";
    /// A lease whose attempt ran past the task's timeout.
    pub const DEADLINE: &str = "timed out: the worker did not report within the task's timeout";
}

/// What a store knows of a run when something happens to it: the columns the life cycle reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run.
    pub id: RunId,
    /// Its status.
    pub status: RunStatus,
    /// Attempts started so far (the current one included while `running`).
    pub attempt: u32,
    /// The attempt after which no retry is left.
    pub max_attempts: u32,
    /// Retries granted by the policy (a manual retry grants as many again).
    pub retries: u32,
    /// The delay policy between attempts.
    pub backoff: Backoff,
    /// The time one attempt may take.
    pub timeout: Duration,
    /// The name of the worker of the current (or last) attempt.
    pub worker: Option<String>,
    /// The id of the worker holding the lease, while `running`.
    pub worker_id: Option<String>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// Every attempt's error, as the JSON list stored with the run.
    pub errors: Option<String>,
    /// When it is (or was) due.
    pub run_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What happened to a run.
#[derive(Debug, Clone, Copy)]
pub enum Happening<'a> {
    /// A worker claimed it from the queue.
    Claimed {
        /// The worker's id.
        worker_id: &'a str,
        /// The worker's name.
        worker: &'a str,
    },
    /// Its worker reported how an attempt ended.
    Reported {
        /// The reporting worker's id.
        worker_id: &'a str,
        /// The attempt the report is about.
        attempt: u32,
        /// How it ended.
        outcome: &'a Outcome,
    },
    /// Its worker committed a durable step.
    Checkpoint {
        /// The reporting worker's id.
        worker_id: &'a str,
        /// The reporting worker's name.
        worker: &'a str,
        /// The step.
        step: &'a StepCheckpoint,
        /// What the store already records for this step (its status and attempt), if anything:
        /// a checkpoint that repeats it (a resend after a lost answer) writes no event.
        recorded: Option<(StepStatus, u32)>,
    },
    /// Its lease ran out: the worker stopped heartbeating, or the attempt passed its deadline.
    LeaseExpired {
        /// The attempt ran past the task's timeout (else: heartbeats stopped).
        deadline_passed: bool,
    },
    /// The worker holding it deregistered.
    WorkerStopped,
    /// The answer that gave it to its worker was lost, and the retried request has no slot left
    /// for it.
    AnswerLost,
    /// Its due time came.
    Due,
    /// An event its durable wait takes was pushed (or had been): the wait is over.
    EventArrived {
        /// The event's key.
        key: &'a str,
        /// The event's id.
        id: &'a str,
    },
    /// Someone asked to cancel it.
    Cancel,
    /// Someone asked to retry it.
    Retry,
    /// Its expiry passed before it started.
    Expired {
        /// The expiry.
        at: DateTime<Utc>,
    },
    /// Someone asked to replay it from a durable step: a retry whose steps from `position` on
    /// run again.
    Replay {
        /// The step's position.
        position: u32,
        /// The step's name.
        step: &'a str,
    },
    /// The engine started a workflow run: its first tasks are created with it. A workflow run
    /// holds no lease; the engine advances it as its tasks finish.
    WorkflowStarted,
    /// The engine finished a workflow run: every task succeeded (`error` is `None`), or one
    /// failed after its own retries (the workflow run is not retried itself).
    WorkflowFinished {
        /// Why it failed.
        error: Option<&'a str>,
    },
}

/// What to do with `started_at` and the attempt's worker name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Leave them.
    Keep,
    /// An attempt starts now: set them.
    Now,
    /// No attempt is under way any more (a hand-back): clear them.
    Clear,
}

/// One event row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The status before (`None` on creation).
    pub from: Option<RunStatus>,
    /// The status after.
    pub to: RunStatus,
    /// The attempt it is about.
    pub attempt: u32,
    /// The worker involved.
    pub worker: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// The change of one run: the new values of the columns the life cycle owns, and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The run.
    pub id: RunId,
    /// The status it leaves (and so the narrow table it leaves).
    pub from: RunStatus,
    /// The status it enters (and so the narrow table it enters).
    pub status: RunStatus,
    /// Attempts counted.
    pub attempt: u32,
    /// The attempt after which no retry is left.
    pub max_attempts: u32,
    /// The last error.
    pub error: Option<String>,
    /// Every attempt's error (JSON list).
    pub errors: Option<String>,
    /// The lease holder.
    pub worker_id: Option<String>,
    /// The attempt's worker name, written when `start` is [`Start::Now`].
    pub worker: Option<String>,
    /// When it is due: the queue's order and the timer's due time.
    pub run_at: DateTime<Utc>,
    /// What happens to `started_at` and `worker`.
    pub start: Start,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Forget the output (a manual retry).
    pub clear_output: bool,
    /// The event row.
    pub event: EventRow,
}

impl Change {
    /// The change that keeps every column but the status.
    fn to(st: &RunState, status: RunStatus, reason: String) -> Change {
        Change {
            id: st.id,
            from: st.status,
            status,
            attempt: st.attempt,
            max_attempts: st.max_attempts,
            error: st.error.clone(),
            errors: st.errors.clone(),
            worker_id: st.worker_id.clone(),
            worker: st.worker.clone(),
            run_at: st.run_at,
            start: Start::Keep,
            finished_at: st.finished_at,
            clear_output: false,
            event: EventRow {
                from: Some(st.status),
                to: status,
                attempt: st.attempt,
                worker: st.worker.clone(),
                reason,
            },
        }
    }

    /// Makes `st` what it is after this change, so that a second happening in the same batch
    /// (two reports of one run) sees the new state.
    pub fn follow(&self, st: &mut RunState) {
        st.status = self.status;
        st.attempt = self.attempt;
        st.max_attempts = self.max_attempts;
        st.error = self.error.clone();
        st.errors = self.errors.clone();
        st.worker_id = self.worker_id.clone();
        match self.start {
            Start::Keep => {}
            Start::Now => st.worker = self.worker.clone(),
            Start::Clear => st.worker = None,
        }
        st.run_at = self.run_at;
        st.finished_at = self.finished_at;
    }

    /// Whether the change is allowed: a legal transition, a manual retry of a failed or
    /// cancelled run, or a step checkpoint of a running run (no status change).
    pub fn is_legal(&self) -> bool {
        self.from.can_transition_to(self.status)
            || (self.from.can_retry() && self.status == RunStatus::Queued)
            || (self.from == RunStatus::Running && self.status == RunStatus::Running)
    }
}

/// What `happened` does to the run in state `st` at `now`:
/// - `Ok(Some(change))`: write it;
/// - `Ok(None)`: nothing to do — a stale report (another attempt, another worker, a run no
///   longer running), a timer or lease of a run that moved on;
/// - `Err(InvalidTransition)`: the command is refused (cancel a finished run, retry a running
///   one, a checkpoint of an attempt that no longer holds the run).
pub fn decide(
    st: &RunState,
    happened: Happening<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Change>> {
    let refuse = |action: &'static str| Error::InvalidTransition {
        run_id: st.id,
        status: st.status,
        action,
    };
    let holds = |worker_id: &str, attempt: u32| {
        st.status == RunStatus::Running
            && st.attempt == attempt
            && st.worker_id.as_deref() == Some(worker_id)
    };
    let change = match happened {
        Happening::Claimed { worker_id, worker } => {
            if st.status != RunStatus::Queued {
                return Ok(None);
            }
            let mut c = Change::to(st, RunStatus::Running, reason::CLAIMED.into());
            c.attempt = st.attempt + 1;
            c.worker_id = Some(worker_id.to_string());
            c.worker = Some(worker.to_string());
            c.start = Start::Now;
            c.event.attempt = c.attempt;
            c.event.worker = Some(worker.to_string());
            c
        }
        Happening::Reported {
            worker_id,
            attempt,
            outcome,
        } => {
            if !holds(worker_id, attempt) {
                return Ok(None);
            }
            reported(st, outcome, now)
        }
        Happening::Checkpoint {
            worker_id,
            worker,
            step,
            recorded,
        } => {
            if !holds(worker_id, step.attempt) {
                return Err(refuse("checkpoint"));
            }
            if recorded == Some((step.status, step.attempt)) {
                return Ok(None);
            }
            let mut c = Change::to(st, RunStatus::Running, checkpoint_reason(step));
            c.event.worker = Some(worker.to_string());
            c
        }
        Happening::LeaseExpired { deadline_passed } => {
            if st.status != RunStatus::Running {
                return Ok(None);
            }
            let why = if deadline_passed {
                reason::DEADLINE.to_string()
            } else {
                format!(
                    "lease expired: worker {} stopped heartbeating",
                    st.worker.as_deref().unwrap_or("?")
                )
            };
            fail_attempt(st, &why, true, true, now)
        }
        Happening::WorkerStopped => {
            if st.status != RunStatus::Running {
                return Ok(None);
            }
            hand_back(st, reason::WORKER_STOPPED, now)
        }
        Happening::AnswerLost => {
            if st.status != RunStatus::Running {
                return Ok(None);
            }
            let why = format!(
                "handed back: the answer to its claim never reached worker {}; not counted as an attempt",
                st.worker.as_deref().unwrap_or("?")
            );
            hand_back(st, &why, now)
        }
        Happening::Due => {
            if st.status != RunStatus::Scheduled {
                return Ok(None);
            }
            let mut c = Change::to(st, RunStatus::Queued, reason::DUE.into());
            c.event.worker = None;
            c
        }
        Happening::EventArrived { key, id } => {
            if st.status != RunStatus::Scheduled {
                return Ok(None);
            }
            let mut c = Change::to(
                st,
                RunStatus::Queued,
                format!("event {key} ({id}) arrived: its wait is over"),
            );
            c.event.worker = None;
            c.run_at = now;
            c
        }
        Happening::Cancel => {
            let why = match st.status {
                RunStatus::Scheduled => reason::CANCELLED_SCHEDULED,
                RunStatus::Queued => reason::CANCELLED_QUEUED,
                RunStatus::Running => reason::CANCELLED_RUNNING,
                _ => return Err(refuse("cancel")),
            };
            let mut c = Change::to(st, RunStatus::Cancelled, why.into());
            c.finished_at = Some(now);
            c
        }
        Happening::Retry | Happening::Replay { .. } => {
            if !st.status.can_retry() {
                return Err(refuse("retry"));
            }
            let why = match happened {
                Happening::Replay { position, step } => format!(
                    "replay from step {position} {step:?}: it and the steps after it run again; \
                     {} more attempt(s)",
                    st.retries + 1
                ),
                _ => format!("manual retry: {} more attempt(s)", st.retries + 1),
            };
            let mut c = Change::to(st, RunStatus::Queued, why);
            c.max_attempts = st.attempt + st.retries + 1;
            c.finished_at = None;
            c.clear_output = true;
            c.error = None;
            c.worker_id = None;
            c.run_at = now;
            c.event.worker = None;
            c
        }
        Happening::Expired { at } => {
            if !matches!(st.status, RunStatus::Queued | RunStatus::Scheduled) {
                return Ok(None);
            }
            let mut c = Change::to(
                st,
                RunStatus::Cancelled,
                format!("expired: not started by {}", at.to_rfc3339()),
            );
            c.error = Some(reason::EXPIRED.into());
            c.finished_at = Some(now);
            c
        }
        Happening::WorkflowStarted => {
            if st.status != RunStatus::Queued {
                return Ok(None);
            }
            let mut c = Change::to(st, RunStatus::Running, reason::WORKFLOW_STARTED.into());
            c.attempt = st.attempt + 1;
            c.worker_id = None;
            c.worker = None;
            c.start = Start::Now;
            c.event.attempt = c.attempt;
            c.event.worker = None;
            c
        }
        Happening::WorkflowFinished { error } => {
            if st.status != RunStatus::Running || st.worker_id.is_some() {
                return Ok(None);
            }
            match error {
                None => {
                    let mut c =
                        Change::to(st, RunStatus::Succeeded, reason::WORKFLOW_SUCCEEDED.into());
                    c.error = None;
                    c.finished_at = Some(now);
                    c
                }
                Some(e) => {
                    let e = e.replace('\0', "\u{FFFD}");
                    let mut c = Change::to(st, RunStatus::Failed, e.clone());
                    c.errors = Some(push_error(st.errors.as_deref(), st.attempt, now, &e));
                    c.error = Some(e);
                    c.finished_at = Some(now);
                    c
                }
            }
        }
    };
    if !change.is_legal() {
        return Err(refuse("change"));
    }
    Ok(Some(change))
}

/// The event reason of a step checkpoint.
fn checkpoint_reason(step: &StepCheckpoint) -> String {
    let status = match step.status {
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
    };
    match (&step.status, &step.error) {
        (StepStatus::Failed, Some(e)) => {
            format!("step {} {:?} failed: {e}", step.position, step.name)
        }
        _ => format!("step {} {:?} {status}", step.position, step.name),
    }
}

/// How an attempt its worker reported on ends.
fn reported(st: &RunState, outcome: &Outcome, now: DateTime<Utc>) -> Change {
    match outcome {
        Outcome::Succeeded { .. } => {
            let mut c = Change::to(st, RunStatus::Succeeded, reason::SUCCEEDED.into());
            c.error = None;
            c.finished_at = Some(now);
            c
        }
        Outcome::Failed { error, retryable } => fail_attempt(st, error, *retryable, false, now),
        Outcome::TimedOut => {
            let msg = format!(
                "timed out after {}",
                format_duration(Duration::from_millis(st.timeout.as_millis() as u64))
            );
            fail_attempt(st, &msg, true, false, now)
        }
        Outcome::Cancelled => {
            let mut c = Change::to(st, RunStatus::Cancelled, reason::STOPPED.into());
            c.finished_at = Some(now);
            c
        }
        Outcome::HandedBack => hand_back(st, reason::HANDED_BACK, now),
        Outcome::Suspended { until } => suspend(st, (*until).max(now), |due| {
            format!("suspended: sleeping until {due}; its worker slot is free")
        }),
        Outcome::WaitingForEvent { until, key, .. } => suspend(st, (*until).max(now), |due| {
            format!("waiting for event {key} until {due}; its worker slot is free")
        }),
    }
}

/// Parks a running run until `due` without counting its attempt (a durable sleep or wait).
fn suspend(st: &RunState, due: DateTime<Utc>, why: impl FnOnce(String) -> String) -> Change {
    let mut c = Change::to(st, RunStatus::Scheduled, why(due.to_rfc3339()));
    c.attempt = st.attempt.saturating_sub(1);
    c.event.attempt = c.attempt;
    c.worker_id = None;
    c.run_at = due;
    c
}

/// Ends the current attempt with an error: back to `scheduled` after the backoff when attempts
/// are left (or to `queued` at once when `requeue_now`), else `failed`.
fn fail_attempt(
    st: &RunState,
    error: &str,
    retryable: bool,
    requeue_now: bool,
    now: DateTime<Utc>,
) -> Change {
    // PostgreSQL text can't hold NUL: both stores keep U+FFFD instead.
    let error = error.replace('\0', "\u{FFFD}");
    let mut c = Change::to(st, RunStatus::Failed, String::new());
    c.errors = Some(push_error(st.errors.as_deref(), st.attempt, now, &error));
    c.worker_id = None;
    if retryable && st.attempt < st.max_attempts {
        if requeue_now {
            c.status = RunStatus::Queued;
            c.run_at = now;
            c.event.reason = format!(
                "attempt {} of {}: {error}; re-queued",
                st.attempt, st.max_attempts
            );
        } else {
            let delay = st.backoff.delay(st.attempt);
            c.status = RunStatus::Scheduled;
            c.run_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            c.event.reason = format!(
                "attempt {} of {} failed: {error}; retrying in {}",
                st.attempt,
                st.max_attempts,
                format_duration(Duration::from_millis(delay.as_millis() as u64))
            );
        }
    } else {
        c.finished_at = Some(now);
        c.event.reason = if retryable {
            format!(
                "attempt {} of {} failed: {error}; no attempt left",
                st.attempt, st.max_attempts
            )
        } else {
            format!(
                "attempt {} failed and is not retryable: {error}",
                st.attempt
            )
        };
    }
    c.event.to = c.status;
    c.error = Some(error);
    c
}

/// Puts a running run back in the queue without counting its attempt.
fn hand_back(st: &RunState, why: &str, now: DateTime<Utc>) -> Change {
    let mut c = Change::to(st, RunStatus::Queued, why.to_string());
    c.attempt = st.attempt.saturating_sub(1);
    c.event.attempt = c.attempt;
    c.worker_id = None;
    c.run_at = now;
    c.start = Start::Clear;
    c
}

/// Appends an attempt's error to the JSON list stored with a run.
fn push_error(errors: Option<&str>, attempt: u32, at: DateTime<Utc>, error: &str) -> String {
    let mut list: Vec<AttemptError> = errors
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    list.push(AttemptError {
        attempt,
        at,
        error: error.to_string(),
    });
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests;
