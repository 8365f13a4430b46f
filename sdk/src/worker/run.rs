//! One attempt of one run: the task's future raced against its timeout, its cancellation, the end
//! of the shutdown grace and a long durable sleep, and the outcome reported for it.

use crate::registry::InvokeFn;
use crate::Context;
use owlclaw_core::wire::{Assignment, Completion, Outcome};
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A finished attempt with the slot it occupied: the worker claims new work for that slot in the
/// same round trip that reports the result.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) completion: Completion,
    pub(super) slot: OwnedSemaphorePermit,
}

/// What an attempt races against, besides its own future.
pub(super) struct Limits {
    /// Cancelled when the engine cancels the run (or the worker hands it back).
    pub(super) cancel: CancellationToken,
    /// How long a cancelled task may go on before its future is dropped.
    pub(super) cancel_grace: Duration,
    /// Cancelled at the end of the shutdown grace: the run is handed back.
    pub(super) kill: CancellationToken,
    /// A long durable sleep or an event wait asks for the run to be parked: what to report.
    pub(super) suspend: oneshot::Receiver<Outcome>,
}

/// Runs one attempt, in the task that the worker's loop spawned for it. The task's own future
/// runs in a task of its own, so that a panic is caught as a failure and a timeout is noticed even
/// while the task blocks its thread.
pub(super) async fn attempt(
    invoke: InvokeFn,
    ctx: Context,
    a: Assignment,
    limits: Limits,
    slot: OwnedSemaphorePermit,
) -> Finished {
    tracing::info!(max_attempts = a.max_attempts, "run started");
    let started = Instant::now();
    let Limits {
        cancel,
        cancel_grace,
        kill,
        suspend,
    } = limits;
    let mut user = tokio::spawn(invoke(ctx.clone(), a.input).in_current_span());
    let abort = user.abort_handle();
    let cancelled_past_grace = async {
        cancel.cancelled().await;
        tokio::time::sleep(cancel_grace).await;
    };
    let outcome = tokio::select! {
        r = &mut user => match r {
            Ok(Ok(output)) => Outcome::Succeeded { output },
            Ok(Err(f)) => Outcome::Failed {
                error: f.message,
                // A run that took another path than before is not retried.
                retryable: f.retryable && !ctx.is_non_deterministic(),
            },
            Err(e) if e.is_panic() => Outcome::Failed {
                error: format!("the task panicked: {}", panic_message(e.into_panic())),
                retryable: true,
            },
            Err(_) => Outcome::Cancelled,
        },
        _ = tokio::time::sleep(Duration::from_millis(a.timeout_ms)) => {
            abort.abort();
            Outcome::TimedOut
        }
        _ = cancelled_past_grace => {
            abort.abort();
            Outcome::Cancelled
        }
        _ = kill.cancelled() => {
            cancel.cancel();
            abort.abort();
            Outcome::HandedBack
        }
        Ok(parked) = suspend => {
            // A long durable sleep or an event wait: give the slot back.
            abort.abort();
            parked
        }
    };
    let outcome = settle(outcome, cancel.is_cancelled());
    log_outcome(&outcome, a.attempt, a.max_attempts, started.elapsed());
    Finished {
        completion: Completion {
            run_id: a.run_id,
            attempt: a.attempt,
            outcome,
        },
        slot,
    }
}

/// The outcome as reported: a cancelled run's is `Cancelled`, and outputs and errors are bounded.
fn settle(outcome: Outcome, cancelled: bool) -> Outcome {
    match outcome {
        // Whatever a cancelled task returned, it stopped because it was cancelled.
        Outcome::Failed { .. } | Outcome::TimedOut if cancelled => Outcome::Cancelled,
        // The engine's own limits, applied before sending: an oversized output is stored
        // truncated, and never makes the report larger than the server takes.
        Outcome::Succeeded { output } => Outcome::Succeeded {
            output: owlclaw_core::limits::bound_output(output),
        },
        Outcome::Failed { error, retryable } => Outcome::Failed {
            error: owlclaw_core::limits::bound_error(&error),
            retryable,
        },
        o => o,
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

fn log_outcome(outcome: &Outcome, attempt: u32, max_attempts: u32, took: Duration) {
    let ms = took.as_millis() as u64;
    match outcome {
        Outcome::Succeeded { .. } => tracing::info!(duration_ms = ms, "run succeeded"),
        Outcome::Failed { error, retryable } if *retryable && attempt < max_attempts => {
            tracing::warn!(duration_ms = ms, %error, attempt, max_attempts, "run attempt failed; will retry")
        }
        Outcome::Failed { error, .. } => {
            tracing::error!(duration_ms = ms, %error, attempt, max_attempts, "run failed; no attempt left")
        }
        Outcome::TimedOut if attempt < max_attempts => {
            tracing::warn!(
                duration_ms = ms,
                attempt,
                max_attempts,
                "run attempt timed out; will retry"
            )
        }
        Outcome::TimedOut => tracing::error!(
            duration_ms = ms,
            attempt,
            max_attempts,
            "run timed out; no attempt left"
        ),
        Outcome::Cancelled => tracing::info!(duration_ms = ms, "run stopped after cancellation"),
        Outcome::HandedBack => tracing::info!(duration_ms = ms, "run handed back at shutdown"),
        Outcome::Suspended { until } => {
            tracing::info!(duration_ms = ms, until = %until, "run suspended by a durable sleep")
        }
        Outcome::WaitingForEvent { until, key, .. } => {
            tracing::info!(duration_ms = ms, until = %until, %key, "run parked: waiting for an event")
        }
    }
}
