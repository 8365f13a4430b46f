//! The types that cross the boundary between a client (or worker) and the engine, in lite mode as
//! Rust values and in server mode as JSON. Their JSON shape is a contract that scripts rely on.

use crate::retry::Backoff;
use crate::task::TaskDef;
use crate::{RunId, RunStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A request to schedule one run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The task's name.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub task: String,
    /// Its input (JSON, at most 1 MiB; no NUL in its strings).
    #[serde(default)]
    pub input: Value,
    /// Start after this delay (`"10s"`). Exclusive with `run_at`.
    #[serde(
        default,
        with = "crate::duration::serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "10s"))]
    pub delay: Option<Duration>,
    /// Start at this time. Exclusive with `delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// 1..=10; the task's default when absent. An integer (`7.0` is read as 7).
    #[serde(
        default,
        deserialize_with = "crate::int::de_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub priority: Option<i64>,
    /// Same key and input: the same run is returned; same key, other input: a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub idempotency_key: Option<String>,
    /// The user that owns the run. Acting as a user (`OwlClaw-User`), it must be that user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub owner: Option<String>,
    /// Free-form JSON kept with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The run that scheduled this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<RunId>,
    /// Overrides the task's retries: 0..=100.
    #[serde(
        default,
        deserialize_with = "crate::int::de_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub retries: Option<i64>,
    /// Overrides the task's timeout: more than zero, at most `7d`.
    #[serde(
        default,
        with = "crate::duration::serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "30s"))]
    pub timeout: Option<Duration>,
    /// Overrides the task's backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Overrides the task's concurrency limit; `null` runs it without one. Absent: the limit
    /// registered with the task.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::task::Concurrency>, nullable))]
    pub concurrency: Option<Option<crate::task::Concurrency>>,
    /// Overrides the task's rate limit; `null` runs it without one. Absent: the rate limit
    /// registered with the task.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::ratelimit::RateLimitUse>, nullable))]
    pub rate_limit: Option<Option<crate::ratelimit::RateLimitUse>>,
    /// When the run expires if it has not started: an RFC 3339 time, or a duration from now
    /// (`"1h"`). An expired run ends `cancelled` (error `expired`), decided by the engine even
    /// when no worker runs. Absent: the task's `expires`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "1h"))]
    pub expires: Option<String>,
    /// Celery's `link`: tasks to schedule once this run succeeds, each with the run's output as
    /// its input, as children of this run. At most [`MAX_LINKS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = linked_tasks_schema))]
    pub link: Vec<String>,
    /// Celery's `link_error`: tasks to schedule once this run fails (its retries spent), each
    /// with a [`FailedRun`] as its input, as children of this run. At most [`MAX_LINKS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(schema_with = linked_tasks_schema))]
    pub link_error: Vec<String>,
}

/// Most tasks in a request's `link`, and in its `link_error`.
pub const MAX_LINKS: usize = 8;

/// `link` and `link_error` in the API's document: task names, at most [`MAX_LINKS`].
#[cfg(feature = "openapi")]
fn linked_tasks_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[A-Za-z0-9_\-.:/]{1,128}$")),
        )
        .max_items(Some(MAX_LINKS))
        .build()
}

/// The input of a task run by `link_error`: the run that failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRun {
    /// The run that failed.
    pub run_id: RunId,
    /// Its task.
    pub task: String,
    /// Its last attempt's error.
    pub error: String,
    /// How many attempts it made.
    pub attempts: u32,
    /// Its input.
    pub input: Value,
}

/// An expiry as written in a request: an RFC 3339 time, or a duration from `now`; the error
/// names the field `expires`.
pub fn parse_expires(text: &str, now: DateTime<Utc>) -> crate::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = crate::duration::parse_duration(text).map_err(|e| {
        crate::Error::invalid_input(
            "expires",
            format!("{text:?} is neither an RFC 3339 time nor a duration: {e}"),
        )
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| crate::Error::invalid_input("expires", format!("{text:?} is too far")))
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl ScheduleRequest {
    /// Makes the request one made by `user` (when acting as a user): the run is that user's, and
    /// naming another owner is refused with [`Error::Forbidden`](crate::Error::Forbidden).
    pub fn act_as(&mut self, user: Option<&str>) -> crate::Result<()> {
        act_as(&mut self.owner, user, "schedule runs for")
    }
}

/// Fills `owner` with the acting user, refusing another owner.
fn act_as(owner: &mut Option<String>, user: Option<&str>, what: &str) -> crate::Result<()> {
    let Some(user) = user else { return Ok(()) };
    match owner.as_deref() {
        Some(o) if o != user => Err(crate::Error::Forbidden(format!(
            "acting as user {user:?}, you may not {what} another user ({o:?})"
        ))),
        _ => {
            *owner = Some(user.to_string());
            Ok(())
        }
    }
}

/// An event pushed to the engine: every task with `on_event` set to its key gets one run, whose
/// input is the payload.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushEvent {
    /// Its key, such as `order.paid`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub key: String,
    /// Its payload (JSON, at most 1 MiB; no NUL in its strings).
    #[serde(default)]
    pub payload: Value,
    /// Its id: a second push with the same id stores nothing and starts nothing (same key and
    /// payload), or is a conflict (another key or payload). A UUID is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub id: Option<String>,
    /// The user that owns the runs it starts. Acting as a user (`OwlClaw-User`), that user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub owner: Option<String>,
}

impl PushEvent {
    /// Makes the push one made by `user` (when acting as a user): the runs it starts are that
    /// user's, and naming another owner is refused.
    pub fn act_as(&mut self, user: Option<&str>) -> crate::Result<()> {
        act_as(&mut self.owner, user, "push events for")
    }
}

/// A stored event and the runs it started.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedEvent {
    /// Its id.
    pub id: String,
    /// Its key.
    pub key: String,
    /// Its payload.
    pub payload: Value,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// The runs it started, one per task subscribed to its key when it was first pushed.
    pub runs: Vec<RunId>,
    /// False when an event with this id was stored already (this push changed nothing).
    pub created: bool,
    /// The runs whose durable wait (`ctx.wait_for_event`) this push ended: they are queued to
    /// resume with the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<RunId>,
}

/// The event a durable wait received: the output of its `wait_for_event` step.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedEvent {
    /// Its id.
    pub id: String,
    /// Its key.
    pub key: String,
    /// Its payload.
    pub payload: Value,
    /// When it was pushed.
    pub pushed_at: DateTime<Utc>,
}

/// The answer to a schedule request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The run (new, or the existing one for a repeated idempotency key).
    pub run: RunSnapshot,
    /// False when an existing run was returned for a repeated idempotency key.
    pub created: bool,
}

/// Where a durable step is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Started and not committed yet (or its attempt died before committing it).
    Running,
    /// Committed with an output: never run again.
    Succeeded,
    /// Failed in its last execution; runs again when the run is re-executed.
    Failed,
}

/// A durable step of a run, as shown in its snapshot.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSnapshot {
    /// Its position in the run, 0-based: steps must come in the same order on every execution.
    pub position: u32,
    /// The step's name.
    pub name: String,
    /// `running`, `succeeded` or `failed`.
    pub status: StepStatus,
    /// Its stored output.
    #[serde(default)]
    pub output: Option<Value>,
    /// Its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The attempt of the run that last executed it.
    pub attempt: u32,
    /// When it last started.
    pub started_at: DateTime<Utc>,
    /// When it was committed or failed.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A step's state change, sent by the worker executing the run and committed before the task goes
/// on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCheckpoint {
    /// The run.
    pub run_id: RunId,
    /// The attempt executing it (a stale attempt's checkpoints are refused).
    #[serde(deserialize_with = "crate::int::de")]
    pub attempt: u32,
    /// The step's position.
    #[serde(deserialize_with = "crate::int::de")]
    pub position: u32,
    /// The step's name: 1 to 200 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// The new status.
    pub status: StepStatus,
    /// The output, when succeeded.
    #[serde(default)]
    pub output: Option<Value>,
    /// The error, when failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// The error of one failed attempt.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// The error message.
    pub error: String,
}

/// A point-in-time view of a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// The run's id.
    pub id: RunId,
    /// Its task.
    pub task: String,
    /// Where it is in its life cycle.
    pub status: RunStatus,
    /// The current (or last) attempt, 1-based; 0 before the first start.
    pub attempt: u32,
    /// `retries + 1`.
    pub max_attempts: u32,
    /// 1..=10.
    pub priority: u8,
    /// The input.
    pub input: Value,
    /// The output, once succeeded.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// The error of every failed attempt, oldest first.
    #[serde(default)]
    pub errors: Vec<AttemptError>,
    /// The owning user.
    pub owner: Option<String>,
    /// The idempotency key it was scheduled with.
    pub idempotency_key: Option<String>,
    /// The run that scheduled it.
    pub parent_id: Option<RunId>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// The worker running it, or that ran it last.
    #[serde(default)]
    pub worker: Option<String>,
    /// Timeout of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// When it is (or was) due.
    pub run_at: DateTime<Utc>,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// When its current or last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its durable steps.
    #[serde(default)]
    pub steps: Vec<StepSnapshot>,
    /// Why no worker takes it, for a queued run that no live worker can claim (none serves its
    /// task, or none has the labels the task requires) or that its task's limit holds back (its
    /// concurrency key at the limit, its rate limit out of units or not defined). Filled in by
    /// `get`, not by `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// When it expires if it has not started by then (see `ScheduleRequest::expires`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// How many times it was replayed from a step (`retry --from-step`); absent when never.
    #[serde(default, skip_serializing_if = "crate::wire::is_zero")]
    pub replays: u32,
    /// The key its task's concurrency or rate limit counts it under (read from its input when
    /// it was scheduled); absent for a run without a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<String>,
}

/// Whether a count is zero (fields left out of the JSON when they are).
pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A replay of a run from one of its durable steps.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The step's name (the first step of that name): it and every later step run again; the
    /// steps before it keep their outputs, and the children they spawned are kept.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub from_step: String,
}

/// One transition in a run's history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The run.
    pub run_id: RunId,
    /// When.
    pub at: DateTime<Utc>,
    /// The status before (`None` for the creation).
    pub from: Option<RunStatus>,
    /// The status after.
    pub to: RunStatus,
    /// The attempt number at that moment.
    pub attempt: u32,
    /// The worker involved, if any.
    pub worker: Option<String>,
    /// Why: `scheduled`, `due`, `claimed`, `succeeded`, the error message, `cancelled`, ...
    pub reason: String,
}

/// Filters for listing runs, newest first (and for bulk actions on the runs they match).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    /// Only runs in this status.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// Only runs of this task.
    #[serde(default)]
    pub task: Option<String>,
    /// Only runs owned by this user.
    #[serde(default)]
    pub owner: Option<String>,
    /// At most this many (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Only runs created at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs created before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Only the runs this run scheduled (its children; a workflow run's tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<RunId>,
}

/// What a bulk cancel or retry did to one page of the runs its filter matches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BulkOutcome {
    /// Runs of the page the filter matched.
    pub matched: u64,
    /// Runs of them the action changed (the others' status did not allow it).
    pub changed: u64,
    /// Pass it as `cursor` for the next page; absent after the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// How many runs a filter matches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCount {
    /// The count (at most `max` when the request gave one).
    pub count: u64,
    /// The count stopped at the request's `max`: there are at least that many.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
}

impl ListFilter {
    /// Restricts the listing to `user`'s runs (when acting as a user); naming another owner is
    /// refused with [`Error::Forbidden`](crate::Error::Forbidden).
    pub fn act_as(&mut self, user: Option<&str>) -> crate::Result<()> {
        act_as(&mut self.owner, user, "list the runs of")
    }

    /// Checks the page size (1 to [`MAX_LIST_LIMIT`]), the cursor (a positive integer, as `list`
    /// returns) and the text filters; the error names the field and quotes the value.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if let Some(l) = self.limit {
            if !(1..=MAX_LIST_LIMIT).contains(&l) {
                return Err(Error::invalid_input(
                    "limit",
                    format!("{l} is out of range; a page holds 1 to {MAX_LIST_LIMIT} runs"),
                ));
            }
        }
        if let Some(c) = &self.cursor {
            if !c.parse::<i64>().is_ok_and(|n| n > 0) {
                return Err(Error::invalid_input(
                    "cursor",
                    format!("{c:?} is not a cursor returned by list"),
                ));
            }
        }
        for (field, value) in [("task", &self.task), ("owner", &self.owner)] {
            if let Some(v) = value {
                crate::limits::check_text(field, v)?;
            }
        }
        if let Some(t) = &self.task {
            crate::task::validate_task_name(t).map_err(|e| Error::invalid_input("task", e))?;
        }
        if let Some(o) = &self.owner {
            if o.is_empty() || o.len() > 255 {
                return Err(Error::invalid_input(
                    "owner",
                    format!("{o:?} must be 1 to 255 characters long"),
                ));
            }
        }
        Ok(())
    }
}

/// Default page size.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A page of runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunSnapshot>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A worker announcing itself.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// Its name: 1 to 128 letters, digits and `_ - . : /`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub name: String,
    /// The tasks it serves (their crons are stored by the engine).
    pub tasks: Vec<TaskDef>,
    /// How many runs it executes at once: 1..=10000.
    #[serde(deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub slots: u32,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The workflows it defines (each a definition with a `workflow` shape). Their tasks are
    /// among `tasks`; no worker claims a workflow's own runs, the engine runs their tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub workflows: Vec<TaskDef>,
}

/// The engine's answer to a registration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSession {
    /// The id to use in exchanges.
    pub worker_id: String,
    /// How long a lease lasts without renewal.
    pub lease_ms: u64,
}

/// How an attempt ended, as the worker reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Returned `Ok`.
    Succeeded {
        /// The serialized output.
        output: Value,
    },
    /// Returned `Err` or panicked.
    Failed {
        /// The error message.
        error: String,
        /// False when retrying is pointless; the run fails at once.
        #[serde(default = "yes")]
        retryable: bool,
    },
    /// Ran past its timeout and was stopped.
    TimedOut,
    /// Stopped because the run was cancelled.
    Cancelled,
    /// Not finished at a graceful shutdown: re-queue at once, not counted as an attempt.
    HandedBack,
    /// Sleeping durably until `until`: the worker gave its slot back; the engine re-dispatches the
    /// run at that time (not counted as an attempt) and it resumes after its completed steps.
    Suspended {
        /// The wake-up time.
        until: DateTime<Utc>,
    },
    /// Waiting durably for an event (`ctx.wait_for_event`): the worker gave its slot back; the
    /// engine queues the run again when a matching event is pushed (or was pushed since the run
    /// was created), writing the event as the output of the step at `position`, or at `until`
    /// when none came. Not counted as an attempt.
    WaitingForEvent {
        /// The end of the wait: the run is re-dispatched then without an event.
        until: DateTime<Utc>,
        /// The position of the wait's step.
        #[serde(deserialize_with = "crate::int::de")]
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000))]
        position: u32,
        /// The event key waited for.
        #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
        key: String,
        /// Fields the payload must have, with these values (a JSON object; nested objects match
        /// the fields they name). Null or `{}` takes any event of the key.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        filter: Value,
    },
}

fn yes() -> bool {
    true
}

/// A finished attempt.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The run.
    pub run_id: RunId,
    /// The attempt that ended (stale attempts are ignored).
    #[serde(deserialize_with = "crate::int::de")]
    pub attempt: u32,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One round trip of the worker loop.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// Attempts finished since the last exchange.
    #[serde(default)]
    pub completions: Vec<Completion>,
    /// Runs the worker is executing: their leases are renewed, and any the worker should stop
    /// (cancelled, or lost to an expired lease) come back in `cancellations`.
    #[serde(default)]
    pub held: Vec<RunId>,
    /// How many new runs it can take: at most 10000.
    #[serde(default, deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 10000))]
    pub want: u32,
    /// How long to wait for new runs when none is ready (long poll), in milliseconds: at most
    /// 60000.
    #[serde(default, deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 60000))]
    pub wait_ms: u64,
    /// Renew every lease of this worker and record that it is alive.
    #[serde(default)]
    pub heartbeat: bool,
    /// The worker's id for this request, 1 to 100 characters, which tags what is claimed for it.
    /// A request sent again because its answer never arrived (a lost connection, a replica that
    /// died) carries the same id and `resent`: the runs claimed for it come back, rather than
    /// staying leased to a worker that never got them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub request_id: Option<String>,
    /// This request (same `request_id`) was sent before and its answer never arrived: the runs
    /// claimed for it come first in this answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resent: bool,
}

/// A run handed to a worker.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The run.
    pub run_id: RunId,
    /// Its task.
    pub task: String,
    /// Its input.
    pub input: Value,
    /// This attempt, 1-based.
    pub attempt: u32,
    /// `retries + 1`.
    pub max_attempts: u32,
    /// Timeout of this attempt.
    pub timeout_ms: u64,
    /// The run that scheduled it.
    pub parent_id: Option<RunId>,
    /// When it was due: its wait in the queue runs from here to its claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
}

/// The engine's half of an exchange.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeResponse {
    /// New runs to execute.
    pub assignments: Vec<Assignment>,
    /// Held runs to stop: cancelled, or no longer this worker's.
    pub cancellations: Vec<RunId>,
}

/// A worker as listed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its slots.
    pub slots: u32,
    /// The tasks it serves.
    pub tasks: Vec<String>,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its last exchange.
    pub last_heartbeat: DateTime<Utc>,
    /// The runs it holds now.
    pub held_runs: Vec<RunId>,
    /// Its labels (`WorkerBuilder::label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A cron schedule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronSchedule {
    /// `task:<name>` for crons declared with `#[task(cron)]`, a UUID for ones created by the API.
    pub id: String,
    /// The task it schedules.
    pub task: String,
    /// The expression.
    pub expr: String,
    /// Its time zone (IANA name).
    pub timezone: String,
    /// The input given to each run.
    pub input: Value,
    /// When a tick comes while the last tick's run is unfinished.
    #[serde(default)]
    pub overlap: crate::cron::Overlap,
    /// What it does with ticks missed while no engine ran.
    #[serde(default)]
    pub catch_up: crate::cron::CatchUp,
    /// The last tick that started a run (a tick its overlap or catch-up policy skipped moves
    /// `last_tick` only): the run its overlap policy looks at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<DateTime<Utc>>,
    /// The last tick that was fired (or, after a resume, the time of the resume).
    pub last_tick: Option<DateTime<Utc>>,
    /// The next tick (none while paused).
    pub next_tick: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Since when it is paused: it fires nothing until resumed. Absent when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Its next three ticks (none while paused); filled in when listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_ticks: Vec<DateTime<Utc>>,
    /// The run of its last fired tick, when it still exists; filled in when listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<CronRun>,
}

/// A cron schedule's last run: the run of its last fired tick.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronRun {
    /// The run.
    pub id: RunId,
    /// Its status.
    pub status: RunStatus,
}

/// The operator's overview of a tenant: what waits, by task and priority, and what finished in
/// each of the last 60 minutes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The document's version: 1.
    pub schema_version: u32,
    /// When it was computed.
    pub at: DateTime<Utc>,
    /// Runs ready to start, by task and priority.
    pub queued: Vec<QueuedCount>,
    /// Runs that finished in each of the last 60 minutes, oldest first (the last one is the
    /// minute under way).
    pub minutes: Vec<MinuteCount>,
}

/// Ready runs of one task and priority.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCount {
    /// The task.
    pub task: String,
    /// The priority.
    pub priority: u8,
    /// How many.
    pub count: u64,
}

/// Runs that finished in one minute, by how.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs that were cancelled.
    pub cancelled: u64,
}

/// A request to create a cron schedule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronRequest {
    /// The task to schedule: one a worker has registered.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub task: String,
    /// The expression: 5 fields, 6 with seconds first, or `@hourly`, `@daily`, ...; it must fire.
    pub expr: String,
    /// Its time zone (UTC when absent).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The input of each run.
    #[serde(default)]
    pub input: Value,
    /// When a tick comes while the last tick's run is unfinished: `allow` (the default), `skip`,
    /// `cancel_previous` or `buffer_one`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<crate::cron::Overlap>,
    /// Ticks missed while no engine ran: `latest` (the default: one run), `all` (at most 100) or
    /// `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<crate::cron::CatchUp>,
}

/// The JSON body of every error answer of the HTTP API: `{"error": {"code": ..., "message": ...}}`.
/// Built from an [`Error`](crate::Error) (`ErrorBody::from(&error)`) and turned back into the same
/// variant, with the same fields, by [`ErrorDetail::into_error`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message for people, and the fields of the error's variant
/// (absent when the variant has none), so that a client rebuilds the error without reading the
/// message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_json`, `invalid_input`, `unauthorized`, `forbidden`,
    /// `not_found`, `idempotency_conflict`, `invalid_transition`, `payload_too_large`, ...
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// What the error says beyond its code: the message without its prefix (`invalid_input`,
    /// `config`, `unauthorized`, `forbidden`, `timeout`, `task_failed`, `step_failed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The field at fault (`invalid_input`, `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was looked up (`not_found`): `run`, `cron`, `worker`, `task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// The id that was looked up (`not_found`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The run concerned (`idempotency_conflict`, `invalid_transition`, `task_failed`,
    /// `cancelled`, `output_truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The run's status (`invalid_transition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// The refused command (`invalid_transition`): `cancel`, `retry`, `checkpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The idempotency key (`idempotency_conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The run that holds the key (`idempotency_conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<RunId>,
    /// The refused command (`invalid_transition`) or the idempotency key (`idempotency_conflict`),
    /// as `action` and `key` say (kept for older clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The engine that could not be reached (`connection`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The step that failed (`step_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The size of the output that was too large (`output_truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl ErrorDetail {
    /// An error with a code and a message only.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: message.into(),
            ..ErrorDetail::default()
        }
    }
}
