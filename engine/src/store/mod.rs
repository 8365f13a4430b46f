//! The one seam between orchestration logic and a database.
//!
//! Every method is one transaction. The engine above decides *when* to call them (timers, leases,
//! crons, long polls); a store decides *how* to make each step atomic and cheap. Claims, completions
//! and promotions work on batches so that the hot path costs a handful of statements per batch,
//! not a round trip per state change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};
use owlclaw_core::retry::Backoff;
use owlclaw_core::task::{Concurrency, TaskDef};
use owlclaw_core::wire::{
    Assignment, Completion, CronSchedule, ListFilter, PushedEvent, RunEvent, RunPage, RunSnapshot,
    StepCheckpoint, StepSnapshot, WorkerInfo, WorkerRegistration,
};
use owlclaw_core::{Result, RunId};
use serde_json::Value;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

/// `from_sqlite` for row types: each field read from the column of its name, as
/// `#[derive(sqlx::FromRow)]` does for PostgreSQL. The statement's columns are walked once, each
/// name matched against the fields: `Row::get` by name compares the name with every column in
/// turn, for every field of every row (a listed run cost 45,000 instructions that way).
#[cfg(feature = "sqlite")]
macro_rules! sqlite_rows {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl $t {
            /// The row, by column name (the first column of each name).
            pub(super) fn from_sqlite(sqlite_row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                let statement: &rusqlite::Statement<'_> = sqlite_row.as_ref();
                $(let mut $f = None;)*
                for column in 0..statement.column_count() {
                    match statement.column_name(column)? {
                        $(stringify!($f) if $f.is_none() => $f = Some(sqlite_row.get(column)?),)*
                        _ => {}
                    }
                }
                let missing = |name: &str| rusqlite::Error::InvalidColumnName(name.to_string());
                Ok($t { $($f: $f.ok_or_else(|| missing(stringify!($f)))?),* })
            }
        }
    )*};
}

mod limits;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod state;
mod waits;

/// A run to insert, fully resolved (policy, status, due time).
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id (deterministic when an idempotency key is given).
    pub id: RunId,
    /// Its tenant.
    pub tenant: String,
    /// Its task.
    pub task: String,
    /// Its input.
    pub input: Value,
    /// 1..=10.
    pub priority: u8,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// When it is due (queued at once when not in the future).
    pub run_at: DateTime<Utc>,
    /// The idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The owning user.
    pub owner: Option<String>,
    /// Free-form metadata.
    pub metadata: Option<Value>,
    /// The run that scheduled it.
    pub parent_id: Option<RunId>,
    /// Why, for the first event (`scheduled`, `cron tick ...`).
    pub reason: String,
    /// Its concurrency limit, if its task has one, and its key under that limit.
    pub concurrency: Option<(Concurrency, String)>,
    /// The rate limit it spends, if its task has one, and its bucket's key.
    pub rate_limit: Option<(RateLimitUse, String)>,
    /// A run of a workflow: the engine advances it (a `workflow_runs` row is inserted with it).
    pub workflow: bool,
    /// When it expires if not started (an `expiries` row is inserted with it).
    pub expires_at: Option<DateTime<Utc>>,
    /// Tasks to schedule once it finishes (a `links` row is inserted with it when any).
    pub links: RunLinks,
}

/// Celery's `link` and `link_error` of a run: task names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunLinks {
    /// Scheduled with the run's output once it succeeds.
    pub on_success: Vec<String>,
    /// Scheduled with a [`FailedRun`](owlclaw_core::wire::FailedRun) once it fails.
    pub on_error: Vec<String>,
}

impl RunLinks {
    /// No task to schedule.
    pub fn is_empty(&self) -> bool {
        self.on_success.is_empty() && self.on_error.is_empty()
    }
}

/// The finished runs with links a store read, from their rows: `(tenant, id, on_success,
/// on_error)`, the task lists as JSON text.
pub(crate) fn finished_links_of(
    rows: Vec<(String, String, String, String)>,
) -> Result<Vec<FinishedLinks>> {
    rows.into_iter()
        .map(|(tenant, id, ok, err)| {
            Ok(FinishedLinks {
                tenant,
                id: id.parse()?,
                links: RunLinks {
                    on_success: serde_json::from_str(&ok).unwrap_or_default(),
                    on_error: serde_json::from_str(&err).unwrap_or_default(),
                },
            })
        })
        .collect()
}

/// A workflow run not done yet, as the engine's workflow loop reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveWorkflow {
    /// Its position in the walk (the run's sequence number).
    pub seq: i64,
    /// The run's tenant.
    pub tenant: String,
    /// The run.
    pub id: RunId,
    /// What the loop decides by: the run's status and attempt and each of its task runs' status
    /// and attempt, in one text. Unchanged since the loop last advanced the run: nothing to do.
    pub state: String,
}

impl ActiveWorkflow {
    /// From a row of `(seq, tenant, id, state)`.
    pub(crate) fn from_row(
        (seq, tenant, id, state): (i64, String, String, String),
    ) -> Result<Self> {
        Ok(ActiveWorkflow {
            seq,
            tenant,
            id: id.parse()?,
            state,
        })
    }
}

/// A finished run whose links are not scheduled yet.
#[derive(Debug, Clone)]
pub struct FinishedLinks {
    /// The run's tenant.
    pub tenant: String,
    /// The run.
    pub id: RunId,
    /// Its links.
    pub links: RunLinks,
}

impl NewRun {
    /// The key its runs are claimed by, if its task is limited: its concurrency key or its
    /// rate limit bucket's (beside a concurrency limit, a rate limit is keyed by it or not at all).
    /// Stored as `concurrency_key`.
    pub fn concurrency_key(&self) -> Option<&str> {
        let rate = self.rate_limit.as_ref().map(|(_, k)| k.as_str());
        self.concurrency.as_ref().map(|(_, k)| k.as_str()).or(rate)
    }

    /// The snapshot of the run this inserts, as it is right after the insert.
    pub fn snapshot(&self, status: owlclaw_core::RunStatus, now: DateTime<Utc>) -> RunSnapshot {
        RunSnapshot {
            id: self.id,
            task: self.task.clone(),
            status,
            attempt: 0,
            max_attempts: self.retries + 1,
            priority: self.priority,
            input: self.input.clone(),
            output: None,
            error: None,
            errors: Vec::new(),
            owner: self.owner.clone(),
            idempotency_key: self.idempotency_key.clone(),
            parent_id: self.parent_id,
            metadata: self.metadata.clone(),
            worker: None,
            timeout_ms: self.timeout.as_millis() as u64,
            run_at: self.run_at,
            created_at: now,
            started_at: None,
            finished_at: None,
            steps: Vec::new(),
            waiting: None,
            replays: 0,
            expires_at: self.expires_at,
            limit_key: self.concurrency_key().map(str::to_string),
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// A new run.
    Created(RunSnapshot),
    /// A run with the same id (same idempotency key) already existed, with the same input.
    Existing(RunSnapshot),
}

/// A worker as the engine keeps it.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// The tasks it serves.
    pub tasks: Vec<String>,
    /// The limits of the tasks it serves that have one: their runs are claimed in turns of keys.
    /// Known to the engine, not stored.
    pub limits: Vec<(String, Limit)>,
    /// Set by a claim that left runs queued for want of rate-limit units: when (µs since the
    /// epoch) the first of them will have its units, so that a long poll naps until then. Shared
    /// by the record's clones; 0 when unset.
    pub units_due: Arc<AtomicI64>,
}

/// How a limited task's runs are claimed, in turns of keys (see [`NewRun::concurrency_key`]):
/// under a concurrency limit, a rate limit, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// At most this many running per key.
    pub concurrency: Option<u32>,
    /// Each attempt spends units of a rate limit, from the bucket
    /// [`RateLimitUse::bucket`](owlclaw_core::ratelimit::RateLimitUse::bucket) names.
    pub rate: Option<owlclaw_core::ratelimit::RateLimitUse>,
}

impl Limit {
    /// The limit of a task's runs, if it has one.
    pub fn of(def: &TaskDef) -> Option<Limit> {
        let limit = Limit {
            concurrency: def.concurrency.as_ref().map(|c| c.max),
            rate: def.rate_limit.clone(),
        };
        (limit.concurrency.is_some() || limit.rate.is_some()).then_some(limit)
    }

    /// What claims of `task` under this limit lock on PostgreSQL, sorted: the task for a
    /// concurrency limit, the rate limit (which tasks may share) for a rate limit.
    pub fn lock_keys(&self, tenant: &str, task: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .concurrency
            .map(|_| Limit::concurrency_lock(tenant, task))
            .into_iter()
            .chain(
                self.rate
                    .as_ref()
                    .map(|r| format!("rate/{tenant}/{}", r.name)),
            )
            .collect();
        keys.sort();
        keys
    }

    /// The lock of a task's concurrency limit (see [`Limit::lock_keys`]).
    pub fn concurrency_lock(tenant: &str, task: &str) -> String {
        format!("concurrency/{tenant}/{task}")
    }
}

impl WorkerRecord {
    /// The tasks it serves without a limit: those claimed in queue order.
    pub fn unlimited_tasks(&self) -> std::borrow::Cow<'_, [String]> {
        if self.limits.is_empty() {
            return std::borrow::Cow::Borrowed(&self.tasks);
        }
        self.tasks
            .iter()
            .filter(|t| !self.limits.iter().any(|(l, _)| l == *t))
            .cloned()
            .collect()
    }
}

/// A cron schedule with its tenant, as the firing loop needs it.
#[derive(Debug, Clone)]
pub struct CronRecord {
    /// Its tenant.
    pub tenant: String,
    /// The public view.
    pub schedule: CronSchedule,
}

impl CronRecord {
    /// The idempotency key of the run of schedule `id`'s tick `tick`: what makes a tick fire
    /// once, and how its run is found again.
    pub fn tick_key(id: &str, tick: DateTime<Utc>) -> String {
        format!("cron:{id}:{}", tick.timestamp_micros())
    }
}

/// Runs ready to start, of one task and priority in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueDepth {
    /// The tenant.
    pub tenant: String,
    /// The task.
    pub task: String,
    /// The priority, 1..=10.
    pub priority: u8,
    /// How many runs are queued.
    pub ready: u64,
}

/// The worker's exchange request a claim is made for: its claims are tagged with its id, and a
/// request sent again after its answer was lost (`resent`) first gets back what was claimed
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRequest<'a> {
    /// The worker's id for the request.
    pub id: &'a str,
    /// The request was sent before and its answer never arrived.
    pub resent: bool,
}

/// What reporting finished attempts and claiming new runs did, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Exchanged {
    /// How many runs changed state through the reports (stale reports are not counted).
    pub changed: usize,
    /// The runs claimed.
    pub claimed: Vec<Assignment>,
}

/// An error on the application's own connection (`enqueue_in`), with its cause.
#[cfg(any(feature = "sqlx-sqlite", feature = "postgres"))]
pub(crate) fn app_connection_error(e: sqlx::Error) -> owlclaw_core::Error {
    owlclaw_core::Error::Database {
        unavailable: false,
        message: format!("the application's transaction: {e}"),
        source: Box::new(e),
    }
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Default)]
pub struct Maintenance {
    /// Runs moved from their timer to the queue.
    pub promoted: usize,
    /// Runs whose lease expired.
    pub expired: usize,
    /// The earliest timer still pending.
    pub next_due: Option<DateTime<Utc>>,
    /// The earliest expiry of a run not started (`expires`), read in the same statement as
    /// `next_due` so that a pass with nothing to expire costs no statement of its own.
    pub next_run_expiry: Option<DateTime<Utc>>,
}

/// A change made by another engine sharing the database, pushed by stores that can (PostgreSQL's
/// `LISTEN/NOTIFY`), so that this engine reacts at once instead of at its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Runs became ready: wake long-polling workers.
    Work,
    /// A timer changed: recompute the maintenance loop's wake-up.
    Timers,
    /// A cron schedule changed: reload the schedules.
    Crons,
    /// Runs changed state (finished, cancelled): wake `wait_run` callers and heartbeats.
    Finished,
}

/// A database behind the engine: one trait per concern, each method one transaction. Its
/// methods are storage primitives; the rules of a run's life come from
/// [`owlclaw_core::lifecycle`], which the stores call under their lock.
#[async_trait]
pub trait Store:
    Runs
    + Queue
    + Workers
    + Crons
    + Steps
    + Tokens
    + Events
    + RateLimits
    + Workflows
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Wake-ups caused by other engines on the same database; called once when the engine
    /// starts. `None` where the store has no such channel: other processes are then noticed by
    /// polling.
    async fn subscribe(&self) -> Result<Option<tokio::sync::mpsc::UnboundedReceiver<Wake>>>;
    /// Inserts runs inside the application's transaction on `conn`, a connection to this
    /// store's SQLite database (`enqueue_in`); refused when `conn` is on another database or
    /// the store is not SQLite.
    #[cfg(feature = "sqlx-sqlite")]
    async fn insert_in_sqlite(
        &self,
        _conn: &mut sqlx::SqliteConnection,
        _runs: Vec<NewRun>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        Err(owlclaw_core::Error::invalid_input(
            "transaction",
            "a SQLite transaction, but the engine's database is not SQLite",
        ))
    }
    /// Inserts runs inside the application's transaction on `conn`, a connection to this
    /// store's PostgreSQL database (`enqueue_in`), with the wake-ups sent at its commit;
    /// refused when `conn` is on another database or the store is not PostgreSQL.
    #[cfg(feature = "postgres")]
    async fn insert_in_postgres(
        &self,
        _conn: &mut sqlx::PgConnection,
        _runs: Vec<NewRun>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        Err(owlclaw_core::Error::invalid_input(
            "transaction",
            "a PostgreSQL transaction, but the engine's database is not PostgreSQL",
        ))
    }
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Closes the connections.
    async fn close(&self);
}

/// An event to store, with the runs it starts.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Its tenant.
    pub tenant: String,
    /// Its id (given by the pusher, or a new UUID).
    pub id: String,
    /// Its key.
    pub key: String,
    /// Its payload.
    pub payload: Value,
    /// The runs it starts: one per subscribed task, each with an id derived from the event's.
    pub runs: Vec<NewRun>,
}

/// Rate limits' definitions (their buckets are the claims' business).
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Creates or replaces the tenant's rate limit of that name.
    async fn set_rate_limit(&self, tenant: &str, limit: &RateLimit) -> Result<()>;
    /// The tenant's rate limits, by name.
    async fn rate_limits(&self, tenant: &str) -> Result<Vec<RateLimit>>;
    /// The bucket of `key` under the rate limit `name` as last spent: its units and when (µs
    /// since the epoch); `None` for a full bucket.
    async fn rate_bucket(&self, tenant: &str, name: &str, key: &str) -> Result<Option<(f64, i64)>>;
    /// Deletes the buckets last spent at least one period of their limit before `now`: full
    /// again, they are what no row means. Returns how many went.
    async fn forget_full_buckets(&self, now: DateTime<Utc>) -> Result<usize>;
}

/// What the engine does to a workflow run itself (its tasks are ordinary runs).
#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowStep {
    /// Start it: `queued` to `running`, without a lease.
    Start,
    /// Finish it: succeeded with `output`, or failed with `error`.
    Finish {
        /// The output task's output, when every task succeeded.
        output: Option<Value>,
        /// Why it failed.
        error: Option<String>,
    },
}

impl WorkflowStep {
    /// The life-cycle happening.
    pub fn happening(&self) -> owlclaw_core::lifecycle::Happening<'_> {
        use owlclaw_core::lifecycle::Happening;
        match self {
            WorkflowStep::Start => Happening::WorkflowStarted,
            WorkflowStep::Finish { error, .. } => Happening::WorkflowFinished {
                error: error.as_deref(),
            },
        }
    }
}

/// Workflow runs, which the engine advances as their task runs finish.
#[async_trait]
pub trait Workflows: Send + Sync {
    /// Up to `limit` workflow runs not done yet, after the one numbered `after` (0: from the
    /// first), oldest first.
    async fn active_workflows(&self, after: i64, limit: u32) -> Result<Vec<ActiveWorkflow>>;
    /// The runs whose parent is `id`, oldest first.
    async fn children(&self, tenant: &str, id: RunId) -> Result<Vec<RunSnapshot>>;
    /// Applies `step` to a workflow run under the store's lock (the life cycle decides: a step
    /// that does not apply any more changes nothing); returns the run as it is after.
    async fn workflow_step(
        &self,
        tenant: &str,
        id: RunId,
        step: &WorkflowStep,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot>;
    /// Marks a workflow run done: finished, and every task run it started finished too.
    async fn workflow_done(&self, tenant: &str, id: RunId) -> Result<()>;
    /// Finished runs whose links are not scheduled yet, oldest first, and whether any run with
    /// links is still open (finished or not): the engine watches runs finish while there are.
    async fn finished_links(&self, limit: u32) -> Result<(Vec<FinishedLinks>, bool)>;
    /// Marks a run's links scheduled.
    async fn links_done(&self, tenant: &str, id: RunId) -> Result<()>;
}

/// Pushed events.
#[async_trait]
pub trait Events: Send + Sync {
    /// Stores `event` and inserts its runs in one transaction. When the tenant has an event of
    /// that id already, stores and starts nothing and returns that one (`created: false`), or
    /// refuses the push (field `id`) when its key or payload differ.
    async fn push_event(&self, event: NewEvent, now: DateTime<Utc>) -> Result<PushedEvent>;
    /// The definitions of the tenant's tasks whose `on_event` is `key`.
    async fn subscribers(&self, tenant: &str, key: &str) -> Result<Vec<TaskDef>>;
}

/// The answer to a push of `event` that found `existing` stored under its id.
fn pushed_again(event: &NewEvent, existing: PushedEvent) -> Result<PushedEvent> {
    if existing.key != event.key || existing.payload != event.payload {
        return Err(owlclaw_core::Error::invalid_input(
            "id",
            format!(
                "event {:?} was pushed before with another key or payload (key {:?})",
                event.id, existing.key
            ),
        ));
    }
    Ok(PushedEvent {
        created: false,
        ..existing
    })
}

/// The definitions among `defs` (as stored: JSON) whose `on_event` is `key`.
fn subscribed(defs: Vec<String>, key: &str) -> Vec<TaskDef> {
    defs.iter()
        .filter_map(|d| serde_json::from_str::<TaskDef>(d).ok())
        .filter(|d| d.on_event.as_deref() == Some(key))
        .collect()
}

/// Runs: insert, read, list, cancel, retry, delete.
#[async_trait]
pub trait Runs: Send + Sync {
    /// Inserts runs in one transaction, all or none. A run whose id exists already is returned as
    /// [`Inserted::Existing`] when its input is the same, and refused with
    /// `IdempotencyConflict` when not.
    async fn insert_runs(&self, runs: Vec<NewRun>, now: DateTime<Utc>) -> Result<Vec<Inserted>>;
    /// One run.
    async fn get_run(&self, tenant: &str, id: RunId) -> Result<Option<RunSnapshot>>;
    /// How many runs of a concurrency key of a task are running (claimed and not finished).
    async fn running_of_key(&self, tenant: &str, task: &str, key: &str) -> Result<u64>;
    /// Runs, newest first.
    async fn list_runs(&self, tenant: &str, filter: &ListFilter) -> Result<RunPage>;
    /// A run's transitions, oldest first.
    async fn run_events(&self, tenant: &str, id: RunId) -> Result<Vec<RunEvent>>;
    /// Cancels a run that is not terminal (`InvalidTransition` otherwise).
    async fn cancel_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot>;
    /// Re-queues a failed or cancelled run (`InvalidTransition` otherwise).
    async fn retry_run(&self, tenant: &str, id: RunId, now: DateTime<Utc>) -> Result<RunSnapshot>;
    /// Cancels (`retry: false`) or retries the runs `ids` in one transaction; runs whose status
    /// does not allow it, or that are gone, are left as they are. Returns how many changed.
    async fn act_on_runs(
        &self,
        tenant: &str,
        ids: &[RunId],
        retry: bool,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Replays a failed or cancelled run from its step at `position` (named `step`): a manual
    /// retry that also forgets the steps from that position on and counts the replay, in one
    /// transaction (`InvalidTransition` when the run is not failed or cancelled).
    async fn replay_run(
        &self,
        tenant: &str,
        id: RunId,
        position: u32,
        step: &str,
        now: DateTime<Utc>,
    ) -> Result<RunSnapshot>;
    /// How many runs `filter` matches.
    async fn count_runs(&self, tenant: &str, filter: &ListFilter, max: Option<u64>) -> Result<u64>;
    /// Cancels (error `expired`) up to `limit` runs whose expiry is at or before `now` and that
    /// have not started, and forgets the expiries of those that did. Returns how many expired and
    /// the next expiry left.
    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<(usize, Option<DateTime<Utc>>)>;
    /// Runs of the tenant that finished in `[since, until)`, counted per minute (the minute's
    /// number since the epoch) and final status.
    async fn ended_per_minute(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(i64, String, u64)>>;
    /// Deletes runs with their events and steps; returns how many were deleted.
    async fn delete_runs(&self, tenant: &str, ids: &[RunId]) -> Result<usize>;
    /// Deletes up to `limit` runs that finished before `before`, with their events and steps.
    async fn purge(&self, before: DateTime<Utc>, limit: u32) -> Result<usize>;
}

/// The queue and its claims: the worker's hot path, heartbeats, and maintenance (timers coming due, expired leases).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Claims up to `n` queued runs of the given tasks, highest priority first, FIFO within one
    /// priority, and gives the worker a lease on each. `request` names the worker's exchange
    /// request: a resent request (same id, same worker) first gets back the runs still leased for
    /// it, then new ones up to `n`; those beyond `n` are handed back.
    async fn claim(
        &self,
        worker: &WorkerRecord,
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Vec<Assignment>>;
    /// Applies finished attempts. Stale ones (another attempt, another worker, no longer running)
    /// are ignored. Returns how many runs changed state.
    async fn complete(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        now: DateTime<Utc>,
    ) -> Result<usize>;
    /// [`complete`](Store::complete) then [`claim`](Store::claim), in one transaction where the
    /// store can: the worker's hot path (report finished runs, take new ones for the freed slots).
    async fn complete_and_claim(
        &self,
        worker: &WorkerRecord,
        completions: &[Completion],
        n: u32,
        now: DateTime<Utc>,
        lease: Duration,
        request: Option<ClaimRequest<'_>>,
    ) -> Result<Exchanged>;
    /// Renews the worker's leases and returns the held runs it must stop (cancelled, or no longer
    /// its own).
    async fn heartbeat(
        &self,
        worker: &WorkerRecord,
        held: &[RunId],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<RunId>>;
    /// Moves due timers to the queue and handles expired leases (re-queue, or fail when no
    /// attempt is left).
    async fn maintain(&self, now: DateTime<Utc>, limit: u32) -> Result<Maintenance>;
    /// Ready runs per (tenant, task, priority).
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>>;
}

/// Workers and the task definitions they register.
#[async_trait]
pub trait Workers: Send + Sync {
    /// Stores a worker, its task definitions and their crons.
    async fn register_worker(
        &self,
        worker: &WorkerRecord,
        reg: &WorkerRegistration,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A worker by id (after an engine restart, or on another replica).
    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>>;
    /// Removes a worker and re-queues at once, without counting an attempt, what it still holds.
    async fn deregister_worker(&self, id: &str, now: DateTime<Utc>) -> Result<usize>;
    /// Workers seen since `since`.
    async fn list_workers(&self, tenant: &str, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>>;
    /// A task definition registered by a worker.
    async fn get_task(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>>;
}

/// Cron schedules and their ticks.
#[async_trait]
pub trait Crons: Send + Sync {
    /// Cron schedules of a tenant.
    async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>>;
    /// Cron schedules of every tenant, for the firing loop.
    async fn all_crons(&self) -> Result<Vec<CronRecord>>;
    /// Creates or replaces a cron schedule (its `last_tick` is kept when it exists).
    async fn upsert_cron(&self, cron: &CronRecord) -> Result<()>;
    /// Deletes a cron schedule; false when there was none.
    async fn delete_cron(&self, tenant: &str, id: &str) -> Result<bool>;
    /// Pauses (`paused`) or resumes a cron schedule; resuming sets its `last_tick` to `now` so
    /// that the ticks missed while paused are not fired. False when there is no such schedule.
    async fn set_cron_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Fires one tick at `now`: inserts its run unless the tick was fired already (by this or
    /// another engine) and advances `last_tick` and `last_fired`. Returns whether a run was
    /// created.
    async fn fire_cron(
        &self,
        cron: &CronRecord,
        tick: DateTime<Utc>,
        run: NewRun,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Passes a tick without a run (a policy skipped it): advances `last_tick` only. Returns
    /// false when the tick was passed already (by this or another engine).
    async fn skip_cron_tick(&self, cron: &CronRecord, tick: DateTime<Utc>) -> Result<bool>;
}

/// Durable steps.
#[async_trait]
pub trait Steps: Send + Sync {
    /// Commits durable steps' state changes in one transaction, each for a run the worker holds in
    /// the checkpoint's attempt, with an event; a checkpoint that repeats what is recorded (a
    /// resend) writes nothing. One result per checkpoint, in order: `InvalidTransition` when that
    /// attempt no longer holds the run (the others are committed all the same).
    async fn checkpoint_steps(
        &self,
        worker: &WorkerRecord,
        checkpoints: &[StepCheckpoint],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>>;
    /// The durable steps of a run, by position.
    async fn run_steps(&self, tenant: &str, id: RunId) -> Result<Vec<StepSnapshot>>;
}

/// API tokens.
#[async_trait]
pub trait Tokens: Send + Sync {
    /// Stores an API token's hash for a tenant.
    async fn create_token(&self, hash: &str, tenant: &str, now: DateTime<Utc>) -> Result<()>;
    /// The tenant of an API token's hash.
    async fn token_tenant(&self, hash: &str) -> Result<Option<String>>;
}

impl dyn Store {
    /// One checkpoint: [`Steps::checkpoint_steps`] with a batch of one.
    pub async fn checkpoint_step(
        &self,
        worker: &WorkerRecord,
        checkpoint: &StepCheckpoint,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut results = self
            .checkpoint_steps(worker, std::slice::from_ref(checkpoint), now)
            .await?;
        results.pop().unwrap_or(Ok(()))
    }
}

/// Opens the store named by `url` (`sqlite://path`, `sqlite::memory:`,
/// `postgres://user:password@host/database`) and migrates it.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?));
        #[cfg(not(feature = "sqlite"))]
        return Err(not_built(url, "sqlite"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(not_built(url, "postgres"));
    }
    Err(owlclaw_core::Error::config(
        "database_url",
        format!(
            "unsupported database URL {:?}: use sqlite://path, sqlite::memory: or \
             postgres://user:password@host/database",
            crate::redact_url(url)
        ),
    ))
}

/// The error for a database this build left out.
#[allow(dead_code)] // used by builds without one of the backends
fn not_built(url: &str, feature: &str) -> owlclaw_core::Error {
    owlclaw_core::Error::config(
        "database_url",
        format!(
            "{:?} needs the {feature} store, which this build does not include: enable the \
             `{feature}` feature of owlclaw (lite mode) or owlclaw-engine",
            crate::redact_url(url)
        ),
    )
}

/// The query of one page of `filter`: `SELECT * FROM runs` for the tenant, newest first, with one
/// row more than the page so the caller knows whether another page follows. Returns the query
/// and the page size. Shared by every store; `seq` is the cursor.
fn list_query(tenant: &str, filter: &owlclaw_core::wire::ListFilter) -> Result<(sql::Stmt, usize)> {
    let limit = page_limit(filter);
    let mut q = sql::Stmt::new("SELECT * FROM runs WHERE tenant = ");
    q.bind(tenant);
    filter_where(&mut q, filter)?;
    q.push(" ORDER BY seq DESC LIMIT ")
        .bind(i64::from(limit) + 1);
    Ok((q, limit as usize))
}

/// The page size `filter` asks for, within the API's bounds.
fn page_limit(filter: &owlclaw_core::wire::ListFilter) -> u32 {
    use owlclaw_core::wire::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
    filter
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT)
}

/// `SELECT count(*)` of the runs `filter` matches (its page and cursor ignored).
fn count_query(
    tenant: &str,
    filter: &owlclaw_core::wire::ListFilter,
    max: Option<u64>,
) -> Result<sql::Stmt> {
    // With a bound, the scan stops after `max` rows.
    let mut q = sql::Stmt::new(if max.is_some() {
        "SELECT count(*) FROM (SELECT 1 FROM runs WHERE tenant = "
    } else {
        "SELECT count(*) FROM runs WHERE tenant = "
    });
    q.bind(tenant);
    let filter = owlclaw_core::wire::ListFilter {
        cursor: None,
        ..filter.clone()
    };
    filter_where(&mut q, &filter)?;
    if let Some(m) = max {
        q.push(" LIMIT ").bind(i64::try_from(m).unwrap_or(i64::MAX));
        q.push(") AS bounded");
    }
    Ok(q)
}

/// The conditions of `filter` after `WHERE tenant = ...`.
fn filter_where(q: &mut sql::Stmt, filter: &owlclaw_core::wire::ListFilter) -> Result<()> {
    if let Some(s) = filter.status {
        q.push(" AND status = ").bind(s.as_str());
    }
    if let Some(t) = &filter.task {
        q.push(" AND task = ").bind(t.as_str());
    }
    if let Some(o) = &filter.owner {
        q.push(" AND owner = ").bind(o.as_str());
    }
    if let Some(seq) = cursor_seq(filter)? {
        q.push(" AND seq < ").bind(seq);
    }
    if let Some(t) = filter.created_after {
        q.push(" AND created_at >= ").bind(micros(t));
    }
    if let Some(t) = filter.created_before {
        q.push(" AND created_at < ").bind(micros(t));
    }
    if let Some(p) = filter.parent_id {
        q.push(" AND parent_id = ").bind(p.to_string());
    }
    Ok(())
}

/// The `seq` a page's cursor stands for (the last run of the page before).
fn cursor_seq(filter: &owlclaw_core::wire::ListFilter) -> Result<Option<i64>> {
    let Some(c) = &filter.cursor else {
        return Ok(None);
    };
    c.parse().map(Some).map_err(|_| {
        owlclaw_core::Error::invalid_input(
            "cursor",
            format!("{c:?} is not a cursor returned by list"),
        )
    })
}

/// A page from the rows of [`list_query`]: at most `limit` runs, and the cursor of the next page
/// when there was one row more.
fn page_of(rows: Vec<rows::RunRow>, limit: usize) -> Result<RunPage> {
    let more = rows.len() > limit;
    let mut runs = Vec::with_capacity(rows.len().min(limit));
    let mut last_seq = None;
    for row in rows.into_iter().take(limit) {
        last_seq = Some(row.seq);
        runs.push(row.snapshot()?);
    }
    let next_cursor = if more {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    Ok(RunPage { runs, next_cursor })
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}
