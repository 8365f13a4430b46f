use crate::{RunId, RunStatus};

/// Everything that can go wrong, as users see it. The HTTP API maps each variant to one status
/// code and the JSON body `{"error": {"code": ..., "message": ...}}` ([`Error::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad configuration: names the field and the value.
    #[error("invalid configuration: {field}: {message}")]
    Config {
        /// The field, e.g. `worker.slots` or `OWLCLAW_MODE`.
        field: String,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// The engine can't be reached.
    #[error("cannot reach the OwlClaw engine at {url}: {message}")]
    Connection {
        /// Where we tried (passwords redacted).
        url: String,
        /// The cause.
        message: String,
    },
    /// Missing or wrong API token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The run exists but belongs to another user.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such run, cron, worker or task (or it belongs to another tenant).
    #[error("{what} not found: {id}")]
    NotFound {
        /// `run`, `cron`, `worker`, `task`.
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A request field is invalid. Nothing was stored.
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// The field, e.g. `priority`.
        field: String,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// The idempotency key was used before with a different input.
    #[error("idempotency key {key:?} was already used for run {existing} with a different input")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The run that holds it.
        existing: RunId,
    },
    /// The run's state forbids the command (e.g. cancel a finished run).
    #[error("cannot {action} run {run_id}: it is {status}")]
    InvalidTransition {
        /// The run.
        run_id: RunId,
        /// Its current status.
        status: RunStatus,
        /// The refused command: `cancel`, `retry`.
        action: &'static str,
    },
    /// Waiting took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The run failed: the task's own error.
    #[error("run {run_id} failed: {message}")]
    Task {
        /// The run.
        run_id: RunId,
        /// The last attempt's error.
        message: String,
    },
    /// The run was cancelled before it produced an output.
    #[error("run {run_id} was cancelled")]
    Cancelled {
        /// The run.
        run_id: RunId,
    },
    /// The run succeeded, but its output was larger than what is stored
    /// ([`MAX_OUTPUT_BYTES`](crate::limits::MAX_OUTPUT_BYTES)): only a truncated preview was kept,
    /// so the typed output can't be returned.
    #[error("the output of run {run_id} was {bytes} bytes of JSON, more than the {} bytes stored; only a truncated preview was kept (see the run's snapshot)", crate::limits::MAX_OUTPUT_BYTES)]
    OutputTruncated {
        /// The run.
        run_id: RunId,
        /// The size of the output the task returned.
        bytes: u64,
    },
    /// A durable step failed: its body's own error.
    #[error("step {step:?} failed: {message}")]
    Step {
        /// The step's name.
        step: String,
        /// The body's error.
        message: String,
    },
    /// A run took a different path on re-execution than before (a step out of order): it fails
    /// rather than mixing results of two paths.
    #[error("non-deterministic run: {0}")]
    NonDeterministic(String),
    /// The engine's database failed; [`source`](std::error::Error::source) is the driver's own
    /// error, kept with its type.
    #[error("database error: {message}")]
    Database {
        /// True when the database could not be reached (connection lost, pool closed or timed
        /// out): worth trying again later; the HTTP API answers 503 `unavailable`.
        unavailable: bool,
        /// What the driver said, with passwords scrubbed.
        message: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a missing run.
    pub fn run_not_found(id: RunId) -> Error {
        Error::NotFound {
            what: "run",
            id: id.to_string(),
        }
    }

    /// The stable machine-readable code used in JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config { .. } => "config",
            Error::Connection { .. } => "connection",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::InvalidInput { .. } => "invalid_input",
            Error::IdempotencyConflict { .. } => "idempotency_conflict",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::Timeout(_) => "timeout",
            Error::Task { .. } => "task_failed",
            Error::Cancelled { .. } => "cancelled",
            Error::OutputTruncated { .. } => "output_truncated",
            Error::Step { .. } => "step_failed",
            Error::NonDeterministic(_) => "non_deterministic",
            Error::Database {
                unavailable: true, ..
            } => "unavailable",
            Error::Database { .. } | Error::Internal(_) => "internal",
        }
    }

    /// Whether trying the same call again later may succeed (connection trouble, time-outs).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connection { .. }
                | Error::Timeout(_)
                | Error::Database {
                    unavailable: true,
                    ..
                }
        )
    }
}
