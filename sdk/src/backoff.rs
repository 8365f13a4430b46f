//! One retry policy for every place where the SDK calls the engine again after a failure: the
//! worker's exchange loop, its durable steps and snapshot reads, a client waiting for a run, and
//! registration and deregistration. Built on `backon`'s exponential backoff with jitter.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use owlclaw_core::{Error, Result};
use std::future::Future;
use std::time::Duration;

/// The first delay after a failure.
const FIRST: Duration = Duration::from_millis(100);
/// The usual upper bound of a delay (jitter may add as much again).
pub(crate) const MAX: Duration = Duration::from_millis(2_500);

/// Delays that start at 100 ms (or `max` if smaller) and double up to `max`, each lengthened by a
/// random jitter of up to as much again (so processes that failed together don't retry in step);
/// `tries` bounds the number of retries (`None`: no bound).
fn policy(max: Duration, tries: Option<usize>) -> ExponentialBuilder {
    let builder = ExponentialBuilder::new()
        .with_min_delay(FIRST.min(max))
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter();
    match tries {
        Some(n) => builder.with_max_times(n),
        None => builder.without_max_times(),
    }
}

/// The delays of a loop that keeps going after failures; a success starts them over.
#[derive(Debug)]
pub(crate) struct Backoff {
    max: Duration,
    delays: ExponentialBackoff,
}

impl Backoff {
    /// Delays up to `max` (plus jitter), without end.
    pub(crate) fn new(max: Duration) -> Backoff {
        Backoff {
            max,
            delays: policy(max, None).build(),
        }
    }

    /// How long to wait after one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// After a success: the next failure waits the first delay again.
    pub(crate) fn reset(&mut self) {
        self.delays = policy(self.max, None).build();
    }
}

/// Calls `call` until it succeeds or fails with an error that is not transient
/// ([`Error::is_transient`]: the engine could not be reached, was restarting, or its database
/// was), waiting the policy's delays in between; at most `tries` retries (`None`: until then).
/// Only for calls that are safe to send twice.
pub(crate) async fn retry_transient<T, F, Fut>(
    what: &str,
    tries: Option<usize>,
    call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    call.retry(policy(MAX, tries))
        .when(Error::is_transient)
        .notify(|e: &Error, after: Duration| {
            tracing::warn!(error = %e, retry_in_ms = after.as_millis() as u64, "{what} failed; retrying")
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unreachable() -> Error {
        Error::Connection {
            url: "http://engine".into(),
            message: "connection reset".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_until_the_call_succeeds() {
        let calls = AtomicU32::new(0);
        let out = retry_transient("a test call", None, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=3 => Err(unreachable()),
                n => Ok(n),
            }
        })
        .await
        .unwrap();
        assert_eq!(out, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_error_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let err = retry_transient("a test call", None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::invalid_input("name", "\"\" is empty"))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_their_bound() {
        let calls = AtomicU32::new(0);
        let err = retry_transient("a test call", Some(2), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(unreachable())
        })
        .await
        .unwrap_err();
        assert!(err.is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the call and two retries");
    }

    #[test]
    fn delays_grow_to_their_bound_and_start_over_after_a_success() {
        let max = Duration::from_secs(1);
        let mut b = Backoff::new(max);
        let first = b.next_delay();
        assert!(first >= FIRST && first <= 2 * FIRST, "{first:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= 2 * max, "{d:?}");
        }
        assert!(b.next_delay() >= max);
        b.reset();
        assert!(b.next_delay() <= 2 * FIRST);
    }
}
