//! Retry backoff: exponential with equal jitter.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long to wait before attempt `n + 1` after attempt `n` failed:
/// `d = min(max, initial * factor^(n-1))`, then a random delay in `[d/2, d]` ("equal jitter"), so
/// that many runs failing together do not retry in lock-step, while the delay still grows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay after the first failed attempt (before jitter).
    #[serde(with = "crate::duration::serde_human")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "30s"))]
    pub initial: Duration,
    /// Growth factor per attempt, 1 to 100.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub factor: f64,
    /// Upper bound of the delay.
    #[serde(with = "crate::duration::serde_human")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "30s"))]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before the next attempt, after `failed_attempt` (1-based) failed, without jitter.
    pub fn base_delay(&self, failed_attempt: u32) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        let capped = secs.min(self.max.as_secs_f64());
        Duration::from_secs_f64(capped.max(0.0))
    }

    /// The delay with equal jitter: uniformly in `[base/2, base]`.
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let base = self.base_delay(failed_attempt);
        base / 2 + base.mul_f64(fastrand::f64() / 2.0)
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.factor.is_finite() && self.factor >= 1.0 && self.factor <= 100.0) {
            return Err(format!(
                "backoff factor must be between 1 and 100, got {}",
                self.factor
            ));
        }
        if self.max < self.initial {
            return Err(format!(
                "backoff maximum ({}) is smaller than the initial delay ({})",
                crate::duration::format_duration(self.max),
                crate::duration::format_duration(self.initial)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jittered_within_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(1),
        };
        assert_eq!(b.base_delay(1), Duration::from_millis(100));
        assert_eq!(b.base_delay(2), Duration::from_millis(200));
        assert_eq!(b.base_delay(3), Duration::from_millis(400));
        assert_eq!(b.base_delay(5), Duration::from_secs(1));
        assert_eq!(b.base_delay(60), Duration::from_secs(1));
        for attempt in 1..8 {
            let base = b.base_delay(attempt);
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(
                    d >= base / 2 && d <= base,
                    "attempt {attempt}: {d:?} vs {base:?}"
                );
            }
        }
        assert!(Backoff { factor: 0.5, ..b }.validate().is_err());
        assert!(Backoff {
            max: Duration::from_millis(1),
            ..b
        }
        .validate()
        .is_err());
    }
}
