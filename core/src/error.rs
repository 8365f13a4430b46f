use crate::wire::{ErrorBody, ErrorDetail};
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

/// What [`Error::NotFound`] may name, as the `what` of an error body says it.
const LOOKED_UP: [&str; 4] = ["run", "cron", "worker", "task"];
/// The commands [`Error::InvalidTransition`] may refuse, as the `action` of an error body says it.
const ACTIONS: [&str; 3] = ["cancel", "retry", "checkpoint"];

/// The `&'static` spelling of `name` among `known`, or `other`.
fn known(name: Option<&str>, known: &[&'static str], other: &'static str) -> &'static str {
    name.and_then(|n| known.iter().find(|k| **k == n).copied())
        .unwrap_or(other)
}

impl From<&Error> for ErrorDetail {
    /// The error as the HTTP API answers it: its code, its message, and its variant's fields.
    /// (The engine's server answers `internal` and `connection` errors with an opaque message
    /// instead, so that no database detail reaches a client.)
    fn from(e: &Error) -> ErrorDetail {
        let mut d = ErrorDetail::new(e.code(), e.to_string());
        match e {
            Error::Config { field, message } | Error::InvalidInput { field, message } => {
                d.field = Some(field.clone());
                d.reason = Some(message.clone());
            }
            Error::Connection { url, message } => {
                d.url = Some(url.clone());
                d.reason = Some(message.clone());
            }
            Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::Timeout(m)
            | Error::NonDeterministic(m)
            | Error::Internal(m) => d.reason = Some(m.clone()),
            // Its source stays on the server; a client learns the code (`unavailable` or
            // `internal`) and the message.
            Error::Database { message, .. } => d.reason = Some(message.clone()),
            Error::NotFound { what, id } => {
                d.what = Some((*what).to_string());
                d.id = Some(id.clone());
            }
            Error::IdempotencyConflict { key, existing } => {
                d.run_id = Some(*existing);
                d.existing = Some(*existing);
                d.key = Some(key.clone());
                d.detail = Some(key.clone());
            }
            Error::InvalidTransition {
                run_id,
                status,
                action,
            } => {
                d.run_id = Some(*run_id);
                d.status = Some(*status);
                d.action = Some((*action).to_string());
                d.detail = Some((*action).to_string());
            }
            Error::Task { run_id, message } => {
                d.run_id = Some(*run_id);
                d.reason = Some(message.clone());
            }
            Error::Cancelled { run_id } => d.run_id = Some(*run_id),
            Error::OutputTruncated { run_id, bytes } => {
                d.run_id = Some(*run_id);
                d.bytes = Some(*bytes);
            }
            Error::Step { step, message } => {
                d.step = Some(step.clone());
                d.reason = Some(message.clone());
            }
        }
        d
    }
}

impl From<&Error> for ErrorBody {
    fn from(e: &Error) -> ErrorBody {
        ErrorBody { error: e.into() }
    }
}

impl ErrorDetail {
    /// The [`Error`] this body describes: the variant of its code, with the fields of the body
    /// (never read from the message). Codes of the HTTP layer map to the nearest variant:
    /// `invalid_json`, `payload_too_large` and `unsupported_media_type` to
    /// [`Error::InvalidInput`] (field `body` unless named), `request_timeout` to
    /// [`Error::Timeout`], `unavailable` to [`Error::Connection`] (with an empty `url` unless
    /// given: the caller knows where it sent the request). A body that lacks a field its code
    /// needs (a run id, a status), and any other code, is [`Error::Internal`] with the message.
    pub fn into_error(self) -> Error {
        let ErrorDetail {
            code,
            message,
            reason,
            field,
            what,
            id,
            run_id,
            status,
            action,
            key,
            existing,
            detail,
            url,
            step,
            bytes,
        } = self;
        let text = reason.unwrap_or_else(|| message.clone());
        match code.as_str() {
            "config" => Error::Config {
                field: field.unwrap_or_else(|| "configuration".into()),
                message: text,
            },
            "invalid_input" | "invalid_json" | "payload_too_large" | "unsupported_media_type" => {
                Error::InvalidInput {
                    field: field.unwrap_or_else(|| "body".into()),
                    message: text,
                }
            }
            "connection" | "unavailable" => Error::Connection {
                url: url.unwrap_or_default(),
                message: text,
            },
            "unauthorized" => Error::Unauthorized(text),
            "forbidden" => Error::Forbidden(text),
            "not_found" => Error::NotFound {
                what: known(what.as_deref(), &LOOKED_UP, "resource"),
                id: id.unwrap_or(text),
            },
            "idempotency_conflict" => match existing.or(run_id) {
                Some(existing) => Error::IdempotencyConflict {
                    key: key.or(detail).unwrap_or_default(),
                    existing,
                },
                None => Error::Internal(message),
            },
            "invalid_transition" => match (run_id, status) {
                (Some(run_id), Some(status)) => Error::InvalidTransition {
                    run_id,
                    status,
                    action: known(action.or(detail).as_deref(), &ACTIONS, "change"),
                },
                _ => Error::Internal(message),
            },
            "timeout" | "request_timeout" => Error::Timeout(text),
            "task_failed" => match run_id {
                Some(run_id) => Error::Task {
                    run_id,
                    message: text,
                },
                None => Error::Internal(message),
            },
            "cancelled" => match run_id {
                Some(run_id) => Error::Cancelled { run_id },
                None => Error::Internal(message),
            },
            "output_truncated" => match (run_id, bytes) {
                (Some(run_id), Some(bytes)) => Error::OutputTruncated { run_id, bytes },
                _ => Error::Internal(message),
            },
            "step_failed" => Error::Step {
                step: step.unwrap_or_default(),
                message: text,
            },
            "non_deterministic" => Error::NonDeterministic(text),
            _ => Error::Internal(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant (the match makes a new variant fail to compile here until it
    /// is added).
    fn every_variant() -> Vec<Error> {
        let run = RunId::new();
        let all = vec![
            Error::config("worker.slots", "\"0\": at least 1"),
            Error::Connection {
                url: "http://127.0.0.1:7070".into(),
                message: "connection refused".into(),
            },
            Error::Unauthorized("invalid API token".into()),
            Error::Forbidden("run belongs to another user than \"bob\"".into()),
            Error::NotFound {
                what: "run",
                id: run.to_string(),
            },
            Error::NotFound {
                what: "cron",
                id: "c-1".into(),
            },
            Error::NotFound {
                what: "worker",
                id: "w-1".into(),
            },
            Error::NotFound {
                what: "task",
                id: "send-email (no worker serving it has registered yet)".into(),
            },
            Error::invalid_input("runs[1].priority", "11: at most 10"),
            Error::IdempotencyConflict {
                key: "order-7".into(),
                existing: run,
            },
            Error::InvalidTransition {
                run_id: run,
                status: RunStatus::Succeeded,
                action: "cancel",
            },
            Error::InvalidTransition {
                run_id: run,
                status: RunStatus::Queued,
                action: "retry",
            },
            Error::InvalidTransition {
                run_id: run,
                status: RunStatus::Cancelled,
                action: "checkpoint",
            },
            Error::Timeout("no answer within 2s".into()),
            Error::Task {
                run_id: run,
                message: "boom: invalid priority: 3".into(),
            },
            Error::Cancelled { run_id: run },
            Error::OutputTruncated {
                run_id: run,
                bytes: 2_000_000,
            },
            Error::Step {
                step: "charge".into(),
                message: "card declined".into(),
            },
            Error::NonDeterministic("step \"a\" where \"b\" ran before".into()),
            Error::Internal("disk full".into()),
        ];
        for e in &all {
            match e {
                Error::Config { .. }
                | Error::Connection { .. }
                | Error::Unauthorized(_)
                | Error::Forbidden(_)
                | Error::NotFound { .. }
                | Error::InvalidInput { .. }
                | Error::IdempotencyConflict { .. }
                | Error::InvalidTransition { .. }
                | Error::Timeout(_)
                | Error::Task { .. }
                | Error::Cancelled { .. }
                | Error::OutputTruncated { .. }
                | Error::Step { .. }
                | Error::NonDeterministic(_)
                | Error::Internal(_) => {}
                // Never sent as itself: the server answers `internal` or `unavailable`, and
                // `the_server_hides_database_errors` in the engine checks it.
                Error::Database { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_variant_round_trips_through_the_json_error_body() {
        for e in every_variant() {
            let body = ErrorBody::from(&e);
            assert_eq!(body.error.code, e.code());
            assert_eq!(body.error.message, e.to_string());
            let json = serde_json::to_string(&body).unwrap();
            let back: ErrorBody = serde_json::from_str(&json).unwrap();
            assert_eq!(back, body, "{json}");
            let again = back.error.into_error();
            // Error has no PartialEq: its code, text and debug form name every field.
            assert_eq!(format!("{again:?}"), format!("{e:?}"), "{json}");
        }
    }

    #[test]
    fn the_body_keeps_its_shape_and_names_each_variants_fields() {
        let run = RunId::new();
        let e = Error::invalid_input("priority", "\"11\" is more than 10");
        let v = serde_json::to_value(ErrorBody::from(&e)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "code": "invalid_input",
                "message": "invalid priority: \"11\" is more than 10",
                "reason": "\"11\" is more than 10",
                "field": "priority",
            }})
        );
        let e = Error::InvalidTransition {
            run_id: run,
            status: RunStatus::Succeeded,
            action: "cancel",
        };
        let v = serde_json::to_value(ErrorBody::from(&e)).unwrap();
        assert_eq!(v["error"]["run_id"], run.to_string());
        assert_eq!(v["error"]["status"], "succeeded");
        assert_eq!(v["error"]["action"], "cancel");
        assert_eq!(v["error"]["detail"], "cancel");
        let e = Error::IdempotencyConflict {
            key: "k".into(),
            existing: run,
        };
        let v = serde_json::to_value(ErrorBody::from(&e)).unwrap();
        assert_eq!(v["error"]["key"], "k");
        assert_eq!(v["error"]["existing"], run.to_string());
        assert_eq!(v["error"]["run_id"], run.to_string());
        let e = Error::NotFound {
            what: "worker",
            id: "w-1".into(),
        };
        let v = serde_json::to_value(ErrorBody::from(&e)).unwrap();
        assert_eq!(
            (&v["error"]["what"], &v["error"]["id"]),
            (&"worker".into(), &"w-1".into())
        );
    }

    #[test]
    fn bodies_of_the_http_layer_map_to_the_nearest_variant() {
        let e = ErrorDetail::new("invalid_json", "expected value at line 1 column 2").into_error();
        assert!(
            matches!(&e, Error::InvalidInput { field, message } if field == "body" && message == "expected value at line 1 column 2"),
            "{e:?}"
        );
        let e = ErrorDetail::new("unavailable", "try again (incident 1)").into_error();
        assert!(
            matches!(&e, Error::Connection { url, .. } if url.is_empty()),
            "{e:?}"
        );
        let e = ErrorDetail::new("request_timeout", "too slow").into_error();
        assert!(matches!(&e, Error::Timeout(m) if m == "too slow"), "{e:?}");
        let e = ErrorDetail::new("not_found", "no such endpoint").into_error();
        assert!(
            matches!(&e, Error::NotFound { what: "resource", id } if id == "no such endpoint"),
            "{e:?}"
        );
        // A code that needs a run id, without one: the message, as an internal error.
        let e = ErrorDetail::new("invalid_transition", "cannot cancel").into_error();
        assert!(
            matches!(&e, Error::Internal(m) if m == "cannot cancel"),
            "{e:?}"
        );
        let e = ErrorDetail::new("method_not_allowed", "no").into_error();
        assert!(matches!(&e, Error::Internal(m) if m == "no"), "{e:?}");
    }
}
