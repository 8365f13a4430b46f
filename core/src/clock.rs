//! The time the engine goes by: the system's, or a test's (`owlclaw::testing`), which is the
//! system's plus an offset that the test moves forward.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A clock: the system's (the default), or one a test moves forward ([`Clock::manual`]).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Microseconds added to the system's time; `None` for the system's clock.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that runs with the system's and that [`advance`](Clock::advance) moves forward.
    pub fn manual() -> Clock {
        Clock {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Whether a test moves this clock.
    pub fn is_manual(&self) -> bool {
        self.offset.is_some()
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.offset {
            Some(o) => now + chrono::Duration::microseconds(o.load(Ordering::SeqCst)),
            None => now,
        }
    }

    /// Moves a manual clock forward by `by` (a system clock does not move).
    pub fn advance(&self, by: chrono::Duration) {
        if let Some(o) = &self.offset {
            o.fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }

    /// Moves a manual clock forward to `at`, if `at` is later than now.
    pub fn advance_to(&self, at: DateTime<Utc>) {
        let by = at - self.now();
        if by > chrono::Duration::zero() {
            self.advance(by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_forward_only_when_told() {
        let system = Clock::system();
        system.advance(chrono::Duration::hours(1));
        assert!((system.now() - Utc::now()).num_seconds().abs() < 5);
        let c = Clock::manual();
        let shared = c.clone();
        c.advance(chrono::Duration::hours(2));
        let ahead = shared.now() - Utc::now();
        assert!(ahead > chrono::Duration::minutes(119) && ahead < chrono::Duration::minutes(121));
        let target = shared.now() + chrono::Duration::days(1);
        shared.advance_to(target);
        assert!((c.now() - target).num_seconds().abs() < 5);
        c.advance_to(target - chrono::Duration::days(3));
        assert!(
            (c.now() - target).num_seconds().abs() < 5,
            "never backwards"
        );
    }
}
