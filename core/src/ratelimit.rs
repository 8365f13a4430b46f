//! Rate limits: a named budget of units per period (`stripe`: 100 per second), shared by every
//! task that uses it, kept as a token bucket per key in the store and spent in claim transactions.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most units a rate limit grants per period.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
/// Shortest period of a rate limit.
pub const MIN_RATE_PERIOD: Duration = Duration::from_millis(1);
/// Longest period of a rate limit: one day.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(86_400);

/// A named rate limit: at most `limit` units per `per`, per key. A key whose bucket is full holds
/// `limit` units and gains `limit` every `per`, continuously (a token bucket: a burst of `limit`,
/// then the steady rate).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Its name (`stripe`): 1 to 128 letters, digits and `_ - . : /`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub name: String,
    /// Units granted per period: 1 to 1000000.
    #[serde(deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub limit: u32,
    /// The period: 1 ms to 1 day.
    #[serde(with = "crate::duration::serde_human")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = r"^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", example = "1s"))]
    pub per: Duration,
}

impl RateLimit {
    /// Checks the name, the limit and the period; the error names the field.
    pub fn validate(&self) -> crate::Result<()> {
        validate_rate_limit_name(&self.name).map_err(|e| crate::Error::invalid_input("name", e))?;
        if !(1..=MAX_RATE_LIMIT).contains(&self.limit) {
            return Err(crate::Error::invalid_input(
                "limit",
                format!(
                    "{}: a rate limit grants 1 to {MAX_RATE_LIMIT} units per period",
                    self.limit
                ),
            ));
        }
        if !(MIN_RATE_PERIOD..=MAX_RATE_PERIOD).contains(&self.per) {
            return Err(crate::Error::invalid_input(
                "per",
                format!(
                    "{}: a rate limit's period is 1ms to 1d",
                    crate::duration::format_duration(self.per)
                ),
            ));
        }
        Ok(())
    }

    /// The units a bucket that held `tokens` at `at_us` holds at `now_us` (microseconds): what
    /// the time between gave back, up to the limit.
    pub fn refill(&self, tokens: f64, at_us: i64, now_us: i64) -> f64 {
        let elapsed = now_us.saturating_sub(at_us).max(0) as f64;
        let per_us = self.per.as_micros().max(1) as f64;
        (tokens + elapsed * f64::from(self.limit) / per_us).min(f64::from(self.limit))
    }

    /// The units a run that names `units` needs in the bucket before it starts, and spends: at
    /// most the limit, so that a run asking for more starts from a full bucket rather than never.
    pub fn units_needed(&self, units: u32) -> u32 {
        units.min(self.limit)
    }

    /// How long until a bucket holding `tokens` holds `units`.
    pub fn time_to(&self, tokens: f64, units: u32) -> Duration {
        let missing = (f64::from(units) - tokens).max(0.0);
        let per_us = self.per.as_micros() as f64;
        Duration::from_micros((missing * per_us / f64::from(self.limit)).ceil() as u64)
    }
}

/// Rate limit names: the characters of task names.
pub fn validate_rate_limit_name(name: &str) -> Result<(), String> {
    crate::task::validate_identifier("rate limit name", name)
}

/// Most units one run may spend.
pub const MAX_UNITS: u32 = 1_000_000;

/// How a task spends a rate limit: `units` of the limit `name` per attempt, from the bucket of
/// the key read from its input (one bucket for the task's runs without a key).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitUse {
    /// The rate limit's name.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub name: String,
    /// Units each attempt spends: 1 to 1000000 (1 when absent).
    #[serde(default = "one", deserialize_with = "crate::int::de")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub units: u32,
    /// Where the key is in the input (a field path or a JSON pointer): each key has its own
    /// bucket of the limit. Absent: one bucket for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")
    )]
    pub key: Option<String>,
}

fn one() -> u32 {
    1
}

impl RateLimitUse {
    /// Checks the name, the units and the key's path; errors name the value.
    pub fn validate(&self) -> Result<(), String> {
        validate_rate_limit_name(&self.name)?;
        if !(1..=MAX_UNITS).contains(&self.units) {
            return Err(format!(
                "units {}: a run spends 1 to {MAX_UNITS} units",
                self.units
            ));
        }
        if let Some(k) = &self.key {
            crate::task::validate_key_path(k)?;
        }
        Ok(())
    }

    /// The bucket's key of a run with this input (see [`crate::task::key_at`]).
    pub fn key_of(&self, input: &serde_json::Value) -> String {
        crate::task::key_at(self.key.as_deref(), input)
    }

    /// The bucket a run claimed under `limit_key` spends from: that key when the rate limit
    /// has a key path (its own, or beside a concurrency limit the same one), otherwise the one
    /// bucket of the empty key.
    pub fn bucket<'a>(&self, limit_key: &'a str) -> &'a str {
        if self.key.is_some() {
            limit_key
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifty_per_second() -> RateLimit {
        RateLimit {
            name: "stripe".into(),
            limit: 50,
            per: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_bucket_refills_at_the_steady_rate_up_to_the_limit() {
        let l = fifty_per_second();
        assert_eq!(
            l.refill(0.0, 0, 100_000),
            5.0,
            "a tenth of a second: 5 units"
        );
        assert_eq!(
            l.refill(10.0, 0, 10_000_000),
            50.0,
            "never more than the limit"
        );
        assert_eq!(
            l.refill(3.0, 500, 100),
            3.0,
            "a clock that went back gives nothing"
        );
        assert_eq!(l.time_to(0.0, 1), Duration::from_millis(20));
        assert_eq!(l.time_to(4.5, 5), Duration::from_millis(10));
        assert_eq!(l.time_to(7.0, 5), Duration::ZERO);
        assert_eq!((l.units_needed(2), l.units_needed(80)), (2, 50));
    }

    #[test]
    fn bad_limits_and_uses_name_the_field_and_the_value() {
        let mut l = fifty_per_second();
        l.limit = 0;
        let e = l.validate().unwrap_err().to_string();
        assert!(
            e.contains("limit") && e.contains("0: a rate limit grants"),
            "{e}"
        );
        let mut l = fifty_per_second();
        l.per = Duration::from_secs(2 * 86_400);
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains("per") && e.contains("2d"), "{e}");
        let mut l = fifty_per_second();
        l.name = "a b".into();
        let e = l.validate().unwrap_err().to_string();
        assert!(e.contains("rate limit name \"a b\" contains ' '"), "{e}");
        let u = RateLimitUse {
            name: "stripe".into(),
            units: 0,
            key: None,
        };
        assert!(u.validate().unwrap_err().contains("units 0"));
        let u = RateLimitUse {
            name: "stripe".into(),
            units: 2,
            key: Some("customer.id".into()),
        };
        assert_eq!(u.validate(), Ok(()));
        assert_eq!(u.key_of(&serde_json::json!({"customer": {"id": 7}})), "7");
        assert_eq!(
            serde_json::from_str::<RateLimitUse>(r#"{"name":"stripe"}"#)
                .unwrap()
                .units,
            1
        );
    }
}
