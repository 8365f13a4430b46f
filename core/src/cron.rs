//! Cron expressions and time zones.
//!
//! Accepted forms: 5-field crontab (`*/5 * * * *`), 6-field with seconds first
//! (`*/10 * * * * *`), and the shorthands `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight` and `@hourly`. Evaluation is done by the `croner` crate in a `chrono-tz` time zone:
//! a tick that falls in a spring-forward gap fires at the first instant after the gap, and a tick in
//! a fall-back overlap fires once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use std::str::FromStr;

/// A parsed cron expression with its time zone.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    tz: Tz,
    cron: croner::Cron,
}

impl CronExpr {
    /// Parses `expr`, evaluated in UTC.
    pub fn parse(expr: &str) -> Result<CronExpr, String> {
        Self::parse_in(expr, None)
    }

    /// Parses `expr`, evaluated in the IANA time zone `tz` (UTC when `None`).
    pub fn parse_in(expr: &str, tz: Option<&str>) -> Result<CronExpr, String> {
        let text = expr.trim();
        if text.is_empty() {
            return Err("empty cron expression".into());
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "invalid cron expression {text:?}: expected 5 fields (minute hour day month weekday) \
                 or 6 with seconds first, found {fields}"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
        let tz = match tz {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        let expr = CronExpr {
            text: text.to_string(),
            tz,
            cron,
        };
        // An expression of a date that does not exist (`0 0 30 2 *`) parses but never fires.
        if expr.next_after(chrono::Utc::now()).is_none() {
            return Err(format!(
                "cron expression {text:?} never fires (no date matches it)"
            ));
        }
        Ok(expr)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The time zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last tick at or before `at`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Parses an IANA time zone name such as `Europe/Paris` or `UTC`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("unknown time zone {name:?}: use an IANA name such as \"Europe/Paris\" or \"UTC\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn accepts_five_six_fields_and_shorthands() {
        let five = CronExpr::parse("*/5 * * * *").unwrap();
        assert_eq!(
            five.next_after(utc(2026, 1, 1, 0, 1, 0)),
            Some(utc(2026, 1, 1, 0, 5, 0))
        );
        let six = CronExpr::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            six.next_after(utc(2026, 1, 1, 0, 0, 1)),
            Some(utc(2026, 1, 1, 0, 0, 10))
        );
        let hourly = CronExpr::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next_after(utc(2026, 1, 1, 0, 1, 0)),
            Some(utc(2026, 1, 1, 1, 0, 0))
        );
        assert!(CronExpr::parse("@daily").is_ok());
    }

    #[test]
    fn refuses_bad_expressions_and_zones() {
        assert!(CronExpr::parse("not a cron").is_err());
        let never = CronExpr::parse("0 0 30 2 *").unwrap_err();
        assert!(
            never.contains("never fires") && never.contains("0 0 30 2 *"),
            "{never}"
        );
        assert!(CronExpr::parse("61 * * * *").is_err());
        assert!(CronExpr::parse("* * *").is_err());
        assert!(CronExpr::parse_in("* * * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .contains("unknown time zone"));
    }

    #[test]
    fn honours_time_zone_and_dst() {
        // 02:30 every day in Paris. On 2026-03-29 clocks jump 02:00 -> 03:00 (CET -> CEST).
        let c = CronExpr::parse_in("30 2 * * *", Some("Europe/Paris")).unwrap();
        // Winter: 02:30 CET = 01:30 UTC.
        assert_eq!(
            c.next_after(utc(2026, 3, 27, 12, 0, 0)),
            Some(utc(2026, 3, 28, 1, 30, 0))
        );
        // The gap day fires once, at the first instant after the gap (03:00 CEST = 01:00 UTC).
        let gap = c.next_after(utc(2026, 3, 28, 12, 0, 0)).unwrap();
        assert_eq!(gap, utc(2026, 3, 29, 1, 0, 0));
        // Summer: 02:30 CEST = 00:30 UTC.
        assert_eq!(c.next_after(gap), Some(utc(2026, 3, 30, 0, 30, 0)));
        // Fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 02:30 happens twice, fires once.
        let first = c.next_after(utc(2026, 10, 24, 12, 0, 0)).unwrap();
        let second = c.next_after(first).unwrap();
        assert!(
            second - first >= chrono::Duration::hours(23),
            "{first} then {second}"
        );
    }
}
