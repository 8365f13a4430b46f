//! The [`Context`] a task function receives.

use crate::Client;
use owlclaw_core::RunId;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a task knows about the run it executes, and how it talks back: cancellation, scheduling
/// other runs (through the typed handles, which accept a `&Context` and record the parent).
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    run_id: RunId,
    task: String,
    attempt: u32,
    max_attempts: u32,
    parent_id: Option<RunId>,
    cancel: CancellationToken,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.inner.run_id)
            .field("task", &self.inner.task)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_attempts)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        client: Client,
        run_id: RunId,
        task: String,
        attempt: u32,
        max_attempts: u32,
        parent_id: Option<RunId>,
        cancel: CancellationToken,
    ) -> Context {
        Context {
            inner: Arc::new(Inner {
                client,
                run_id,
                task,
                attempt,
                max_attempts,
                parent_id,
                cancel,
            }),
        }
    }

    /// The run being executed.
    pub fn run_id(&self) -> RunId {
        self.inner.run_id
    }

    /// The task's name.
    pub fn task_name(&self) -> &str {
        &self.inner.task
    }

    /// This attempt, 1-based.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// `retries + 1`.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether a failure now would be final.
    pub fn is_last_attempt(&self) -> bool {
        self.inner.attempt >= self.inner.max_attempts
    }

    /// The run that scheduled this one, if any.
    pub fn parent_id(&self) -> Option<RunId> {
        self.inner.parent_id
    }

    /// The client, to inspect other runs.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Resolves when the run is cancelled (or the worker shuts down past its grace period).
    /// The task's future is dropped after the cancellation grace period unless it returns first.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Whether the run has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }
}
