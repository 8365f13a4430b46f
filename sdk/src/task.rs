//! The [`Task`] trait that `#[task]` implements, the static [`TaskSpec`], and the registry of
//! every `#[task]` linked into the binary.

use owlclaw_core::cron::{CatchUp, Overlap};
use owlclaw_core::ratelimit::RateLimitUse;
use owlclaw_core::retry::Backoff;
use owlclaw_core::task::{Concurrency, ConcurrencyStrategy, TaskDef};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The policies of a task as written in `#[task(...)]`, known at compile time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSpec {
    /// The task's name (the function's name unless `name = "..."` is given).
    pub name: &'static str,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Timeout of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// 1 (lowest) to 10 (highest).
    pub priority: u8,
    /// Backoff before the first retry, in milliseconds.
    pub backoff_initial_ms: u64,
    /// Growth factor of the backoff.
    pub backoff_factor: f64,
    /// Upper bound of the backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Cron expression, for scheduled tasks.
    pub cron: Option<&'static str>,
    /// Time zone of the cron expression.
    pub timezone: Option<&'static str>,
    /// Its cron's overlap policy (`"allow"`, `"skip"`, `"cancel_previous"`, `"buffer_one"`).
    pub overlap: Option<&'static str>,
    /// Its cron's catch-up policy (`"latest"`, `"all"`, `"none"`).
    pub catch_up: Option<&'static str>,
    /// Worker labels needed to run it (`"gpu"`, `"region=eu"`): see [`TaskDef::requires`].
    pub requires: &'static [&'static str],
    /// The event key that starts a run of it: see [`TaskDef::on_event`].
    pub on_event: Option<&'static str>,
    /// Runs of one key that may run at once; 0: no limit. See [`TaskDef::concurrency`].
    pub concurrency: u32,
    /// Where the concurrency key is in the input (a field path or a JSON pointer).
    pub concurrency_key: Option<&'static str>,
    /// What a run over the limit does: `"queue"`, `"cancel_in_progress"` or `"cancel_newest"`.
    pub concurrency_strategy: &'static str,
    /// The rate limit each attempt spends units of. See [`TaskDef::rate_limit`].
    pub rate_limit: Option<&'static str>,
    /// Units of the rate limit each attempt spends.
    pub rate_limit_units: u32,
    /// Where the rate limit's key is in the input (a field path or a JSON pointer).
    pub rate_limit_key: Option<&'static str>,
    /// How long after it is due a run may wait to start, in milliseconds; 0: no expiry. See
    /// [`TaskDef::expires`].
    pub expires_ms: u64,
    /// The tasks of its workflow that must succeed before it starts (`parents = [a, b]`).
    pub parents: &'static [&'static str],
    /// Set on the handle of a `#[workflow]`: its runs are advanced by the engine, not claimed.
    pub workflow: bool,
}

impl TaskSpec {
    /// Every default: 0 retries, 60 s timeout, priority 5, backoff 1 s × 2 up to 5 min.
    pub const DEFAULT: TaskSpec = TaskSpec {
        name: "",
        retries: owlclaw_core::task::DEFAULT_RETRIES,
        timeout_ms: owlclaw_core::task::DEFAULT_TIMEOUT.as_millis() as u64,
        priority: owlclaw_core::task::DEFAULT_PRIORITY,
        backoff_initial_ms: 1_000,
        backoff_factor: 2.0,
        backoff_max_ms: 300_000,
        cron: None,
        timezone: None,
        overlap: None,
        catch_up: None,
        requires: &[],
        on_event: None,
        concurrency: 0,
        concurrency_key: None,
        concurrency_strategy: "queue",
        rate_limit: None,
        rate_limit_units: 1,
        rate_limit_key: None,
        expires_ms: 0,
        parents: &[],
        workflow: false,
    };

    /// The backoff policy.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(self.backoff_initial_ms),
            factor: self.backoff_factor,
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    /// The definition the engine stores, with the client's namespace prefixed to the name.
    pub fn to_def(&self, namespace: Option<&str>) -> TaskDef {
        TaskDef {
            name: qualified_name(namespace, self.name),
            retries: self.retries,
            timeout: Duration::from_millis(self.timeout_ms),
            priority: self.priority,
            backoff: self.backoff(),
            cron: self.cron.map(str::to_owned),
            timezone: self.timezone.map(str::to_owned),
            // The macro has checked the names.
            overlap: self.overlap.and_then(|o| Overlap::parse(o).ok()),
            catch_up: self.catch_up.and_then(|c| CatchUp::parse(c).ok()),
            requires: self.requires.iter().map(|r| r.to_string()).collect(),
            on_event: self.on_event.map(str::to_owned),
            concurrency: self.concurrency(),
            rate_limit: self.rate_limit(),
            expires: (self.expires_ms > 0).then(|| Duration::from_millis(self.expires_ms)),
            workflow: None,
        }
    }

    /// The rate limit it spends, if any.
    pub fn rate_limit(&self) -> Option<RateLimitUse> {
        self.rate_limit.map(|name| RateLimitUse {
            name: name.to_string(),
            units: self.rate_limit_units,
            key: self.rate_limit_key.map(str::to_owned),
        })
    }

    /// The concurrency limit, if any (the macro has checked the strategy's name).
    pub fn concurrency(&self) -> Option<Concurrency> {
        (self.concurrency > 0).then(|| Concurrency {
            max: self.concurrency,
            key: self.concurrency_key.map(str::to_owned),
            strategy: ConcurrencyStrategy::parse(self.concurrency_strategy).unwrap_or_default(),
        })
    }
}

/// `namespace.name`, or `name` without a namespace.
pub(crate) fn qualified_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// A task: implemented by the typed handle that `#[task]` generates, so that scheduling checks
/// the input and output types at compile time.
pub trait Task: Send + Sync + 'static {
    /// The input (the function's second parameter, `()` when it has none).
    type Input: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The output (the `O` of its `Result<O, E>`).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Its name and policies.
    const SPEC: TaskSpec;
}

/// How an attempt of a task failed, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The error's message (`{:#}`, so an `anyhow` chain is kept).
    pub message: String,
    /// False when retrying is pointless (e.g. the input can't be decoded).
    pub retryable: bool,
}

impl TaskFailure {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure not worth retrying.
    pub fn fatal(message: impl Into<String>) -> TaskFailure {
        TaskFailure {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Helpers that code generated by `#[task]` calls (with the registry of `crate::registry`). Not a
/// public API.
#[doc(hidden)]
pub(crate) mod __private {
    pub use super::{TaskFailure, TaskSpec};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    pub use serde_json::Value;
    use std::fmt::Display;

    /// Names the `O` and `E` of a task function's `Result<O, E>` return type, whatever alias the
    /// user wrote it with (`anyhow::Result<O>`, `Result<O, MyError>`, ...).
    #[diagnostic::on_unimplemented(
        message = "a #[task] function must return `Result<O, E>`, not `{Self}`",
        label = "not a `Result`"
    )]
    pub trait TaskReturn {
        /// `O`.
        type Output;
        /// `E`.
        type Error;
        /// Back to a plain `Result`.
        fn into_result(self) -> Result<Self::Output, Self::Error>;
    }

    impl<O, E> TaskReturn for Result<O, E> {
        type Output = O;
        type Error = E;
        fn into_result(self) -> Result<O, E> {
            self
        }
    }

    /// Decodes a run's JSON input into the task's input type; a mismatch is a fatal failure.
    pub fn decode_input<I: DeserializeOwned>(task: &str, input: Value) -> Result<I, TaskFailure> {
        serde_json::from_value(input).map_err(|e| {
            TaskFailure::fatal(format!(
                "the input of task {task:?} does not match its type: {e}"
            ))
        })
    }

    /// Encodes what the task function returned. An error is retried unless it says it is not
    /// worth it ([`NonRetryable`](crate::NonRetryable), also inside an `anyhow::Error` or a
    /// `Box<dyn Error>`).
    pub fn encode_result<R>(result: R) -> Result<Value, TaskFailure>
    where
        R: TaskReturn,
        R::Output: Serialize,
        R::Error: Display + 'static,
    {
        match result.into_result() {
            Ok(out) => serde_json::to_value(out).map_err(|e| {
                TaskFailure::fatal(format!(
                    "the task's output can't be serialized to JSON: {e}"
                ))
            }),
            Err(e) if super::is_retryable(&e) => Err(TaskFailure::retryable(format!("{e:#}"))),
            Err(e) => Err(TaskFailure::fatal(format!("{e:#}"))),
        }
    }
}

/// An error not worth retrying: a task that returns it (directly, as the source of an
/// `anyhow::Error`, with or without `.context(..)`, or in a `Box<dyn Error>`) fails at once, whatever
/// retries are left, and the run's event says that the error is not retryable.
///
/// ```
/// # use owlclaw::{task, Context, NonRetryable};
/// #[task(retries = 5)]
/// async fn charge(_ctx: Context, card: String) -> anyhow::Result<()> {
///     if card.is_empty() {
///         // Retrying can't make an empty card number valid.
///         return Err(owlclaw::fatal("no card number").into());
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct NonRetryable {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl NonRetryable {
    /// Marks an error as not worth retrying; its message is kept (use
    /// [`NonRetryable::from_error`] to keep an error's `source()` chain).
    pub fn new(message: impl std::fmt::Display) -> NonRetryable {
        NonRetryable {
            message: message.to_string(),
            source: None,
        }
    }

    /// Marks an error as not worth retrying, transparently: its message is the error's, and its
    /// `source()` is the error's own source, so a chain printed with `{:#}` says each cause once.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> NonRetryable {
        NonRetryable {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

impl std::fmt::Display for NonRetryable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NonRetryable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().and_then(|e| e.source())
    }
}

/// Shorthand for [`NonRetryable::new`]: `return Err(owlclaw::fatal("card declined").into())`.
pub fn fatal(message: impl std::fmt::Display) -> NonRetryable {
    NonRetryable::new(message)
}

/// Whether a task's error is worth another attempt: false for a [`NonRetryable`], found by type
/// (never by message), directly or in the chain of an `anyhow::Error` or a boxed error.
fn is_retryable<E: 'static>(error: &E) -> bool {
    use std::any::Any;
    fn in_chain(mut e: Option<&(dyn std::error::Error + 'static)>) -> bool {
        while let Some(err) = e {
            if err.is::<NonRetryable>() {
                return true;
            }
            e = err.source();
        }
        false
    }
    let any = error as &dyn Any;
    if any.is::<NonRetryable>() {
        return false;
    }
    if let Some(b) = any.downcast_ref::<Box<dyn std::error::Error + Send + Sync + 'static>>() {
        return !in_chain(Some(b.as_ref()));
    }
    if let Some(b) = any.downcast_ref::<Box<dyn std::error::Error + 'static>>() {
        return !in_chain(Some(b.as_ref()));
    }
    #[cfg(feature = "anyhow")]
    if let Some(a) = any.downcast_ref::<anyhow::Error>() {
        return !a.chain().any(|e| e.is::<NonRetryable>());
    }
    true
}
