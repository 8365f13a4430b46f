//! Cron expressions and time zones.
//!
//! Accepted forms: 5-field crontab (`*/5 * * * *`), 6-field with seconds first
//! (`*/10 * * * * *`), and the shorthands `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight` and `@hourly`.
//!
//! An expression names wall-clock times in a `chrono-tz` time zone, and each one it names fires
//! once, whatever the pattern:
//! - a time the clock shows once fires then;
//! - a time a fall-back shows twice fires on the first pass only (`30 1 * * *` in New York on
//!   2026-11-01 fires at 01:30 EDT = 05:30 UTC, not again at 01:30 EST = 06:30 UTC; `0 * * * *`
//!   fires 01:00 EDT and then 02:00 EST, with no tick at 01:00 EST);
//! - a time a spring-forward skips fires at the first instant after the gap (`30 2 * * *` in Paris
//!   on 2026-03-29 fires at 03:00 CEST = 01:00 UTC). Several skipped times fire there as one tick,
//!   together with a tick due at that instant (`*/30 * * * *`: 01:30 CET, then 03:00 CEST, once).
//!
//! The `croner` crate only matches the pattern, against a wall clock without time zone; this
//! module maps each matching wall-clock time to its instant. croner's own time-zone search is not
//! used because it applies those rules only to "fixed-time" patterns (a single second, minute and
//! hour). For any other pattern it fires both passes of a repeated hour (`0 * * * *` at 01:00 EDT
//! and again at 01:00 EST), and drops a skipped time unless it falls on the end of the gap
//! (`15 * * * *` would never fire 02:15 on a spring-forward day).

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use std::str::FromStr;

/// A parsed cron expression with its time zone.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    tz: Tz,
    kind: Kind,
}

/// A calendar expression, or a fixed interval (`@every 30s`).
#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<croner::Cron>),
    /// Ticks at every multiple of the interval since the Unix epoch, in seconds.
    Every(i64),
}

/// The shortest interval of `@every`.
const MIN_EVERY_SECS: i64 = 1;
/// The longest interval of `@every`: a year.
const MAX_EVERY_SECS: i64 = 366 * 86_400;

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
        if let Some(interval) = text.strip_prefix("@every") {
            return Self::every(text, interval, tz);
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
            kind: Kind::Cron(Box::new(cron)),
        };
        // An expression of a date that does not exist (`0 0 30 2 *`) parses but never fires.
        if expr.next_after(chrono::Utc::now()).is_none() {
            return Err(format!(
                "cron expression {text:?} never fires (no date matches it)"
            ));
        }
        Ok(expr)
    }

    /// `@every 30s`: a tick at every multiple of the interval since the Unix epoch (so `@every
    /// 1h` ticks on the hour, `@every 30s` at :00 and :30, on every replica alike), whatever the
    /// time zone; whole seconds from 1 s to 366 days.
    fn every(text: &str, interval: &str, tz: Option<&str>) -> Result<CronExpr, String> {
        let interval = interval.trim();
        let d = crate::duration::parse_duration(interval)
            .map_err(|e| format!("invalid interval {text:?}: {e}"))?;
        let secs = d.as_secs() as i64;
        if d.subsec_nanos() != 0 || !(MIN_EVERY_SECS..=MAX_EVERY_SECS).contains(&secs) {
            return Err(format!(
                "invalid interval {text:?}: whole seconds from 1s to 366d"
            ));
        }
        let tz = match tz {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        Ok(CronExpr {
            text: format!("@every {interval}"),
            tz,
            kind: Kind::Every(secs),
        })
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
        let cron = match &self.kind {
            Kind::Cron(c) => c,
            Kind::Every(secs) => {
                let t = after.timestamp().div_euclid(*secs) * secs + secs;
                return DateTime::from_timestamp(t, 0);
            }
        };
        // Every wall-clock time up to `after`'s own fires at or before `after`. Past it, the only
        // ones that do are the rest of a repeated hour when `after` is on its second pass: they
        // fired on the first pass, and are skipped here.
        let mut wall = after.with_timezone(&self.tz).naive_local();
        loop {
            wall = cron.find_next_occurrence(&wall, false).ok()?;
            let at = self.fires_at(wall)?;
            if at > after {
                return Some(at);
            }
        }
    }

    /// The last tick at or before `at`.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = match &self.kind {
            Kind::Cron(c) => c,
            Kind::Every(secs) => {
                return DateTime::from_timestamp(at.timestamp().div_euclid(*secs) * secs, 0);
            }
        };
        let mut wall = at.with_timezone(&self.tz).naive_local();
        // On the second pass of a repeated hour, the rest of the hour's wall-clock times fired on
        // the first pass, before `at`: start the search as far past `at`'s wall clock as the clock
        // went back, and skip what fires after `at`.
        if let LocalResult::Ambiguous(first, _) = self.tz.from_local_datetime(&wall) {
            wall += at - first.with_timezone(&Utc);
        }
        let mut inclusive = true;
        loop {
            wall = cron.find_previous_occurrence(&wall, inclusive).ok()?;
            inclusive = false;
            let fires = self.fires_at(wall)?;
            if fires <= at {
                return Some(fires);
            }
        }
    }

    /// The instant at which the wall-clock time `wall` fires: when the clock shows it, on the first
    /// pass if it shows it twice, or at the end of the gap if a spring-forward skips it.
    fn fires_at(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
            LocalResult::None => {
                // The first instant whose wall clock is past `wall`. UTC offsets are under a day,
                // so it lies within a day of `wall` read as UTC, and the clock only passes `wall`
                // by jumping over it at the gap: a bisection on whole seconds finds that jump.
                let wall_at = |secs: i64| {
                    DateTime::from_timestamp(secs, 0)
                        .map(|t| t.with_timezone(&self.tz).naive_local())
                };
                let read_as_utc = wall.and_utc().timestamp();
                let (mut before, mut after) = (read_as_utc - 86_400, read_as_utc + 86_400);
                while after - before > 1 {
                    let mid = before + (after - before) / 2;
                    if wall_at(mid)? < wall {
                        before = mid;
                    } else {
                        after = mid;
                    }
                }
                DateTime::from_timestamp(after, 0)
            }
        }
    }
}

/// Parses an IANA time zone name such as `Europe/Paris` or `UTC`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("unknown time zone {name:?}: use an IANA name such as \"Europe/Paris\" or \"UTC\"")
    })
}

/// What a schedule does when a tick comes while the run of its last tick is not finished.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick's run starts anyway: runs of the schedule may overlap.
    #[default]
    Allow,
    /// The tick is skipped: no new run while the last one is unfinished.
    Skip,
    /// The unfinished run is cancelled, and the tick's run starts.
    CancelPrevious,
    /// The tick waits until the unfinished run finishes, then its run starts; ticks that come
    /// meanwhile are folded into that one (at most one run buffered).
    BufferOne,
}

/// What a schedule does with ticks missed while no engine ran (more than [`CATCH_UP_GRACE`]
/// late).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run, for the latest missed tick.
    #[default]
    Latest,
    /// A run for each missed tick, oldest first, at most [`CATCH_UP_MAX`] (the latest ones).
    All,
    /// None: the schedule goes on from its next tick.
    None,
}

/// A tick fired later than this after its time was missed (no engine ran): the catch-up policy
/// decides what to do with it. A tick fired sooner is simply on time.
pub const CATCH_UP_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Most missed ticks fired at once with [`CatchUp::All`].
pub const CATCH_UP_MAX: usize = 100;

impl Overlap {
    /// Parses `allow`, `skip`, `cancel_previous` or `buffer_one`.
    pub fn parse(name: &str) -> Result<Overlap, String> {
        match name.trim() {
            "allow" => Ok(Overlap::Allow),
            "skip" => Ok(Overlap::Skip),
            "cancel_previous" => Ok(Overlap::CancelPrevious),
            "buffer_one" => Ok(Overlap::BufferOne),
            other => Err(format!(
                "unknown overlap policy {other:?}: use allow, skip, cancel_previous or buffer_one"
            )),
        }
    }

    /// Its name, as parsed.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::CancelPrevious => "cancel_previous",
            Overlap::BufferOne => "buffer_one",
        }
    }
}

impl CatchUp {
    /// Parses `latest`, `all` or `none`.
    pub fn parse(name: &str) -> Result<CatchUp, String> {
        match name.trim() {
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All),
            "none" => Ok(CatchUp::None),
            other => Err(format!(
                "unknown catch-up policy {other:?}: use latest, all or none"
            )),
        }
    }

    /// Its name, as parsed.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }

    /// The ticks to fire, oldest first, for a schedule whose next tick after its last one is
    /// `next`, at `now` (`next <= now`): on time, the latest due tick; missed (older than the
    /// grace), as the policy says. Empty: skip to after `now`.
    pub fn ticks(
        self,
        expr: &CronExpr,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let latest = expr.last_at_or_before(now).unwrap_or(next).max(next);
        let grace = chrono::Duration::from_std(CATCH_UP_GRACE).unwrap_or_default();
        if latest + grace >= now && next == latest {
            return vec![latest]; // on time
        }
        match self {
            CatchUp::Latest => vec![latest],
            CatchUp::None if latest + grace >= now => vec![latest],
            CatchUp::None => Vec::new(),
            CatchUp::All => {
                // Back from the latest, down to the first missed one or the bound.
                let mut ticks = vec![latest];
                while ticks.len() < CATCH_UP_MAX {
                    let before = *ticks.last().unwrap() - chrono::Duration::microseconds(1);
                    match expr.last_at_or_before(before) {
                        Some(t) if t >= next => ticks.push(t),
                        _ => break,
                    }
                }
                ticks.reverse();
                ticks
            }
        }
    }
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

    // DST changes in 2026 pinned below (UTC offsets: CET +1, CEST +2, EST -5, EDT -4):
    // - Europe/Paris spring, 2026-03-29 01:00 UTC: 02:00 CET -> 03:00 CEST, 02:00-02:59 skipped.
    // - Europe/Paris autumn, 2026-10-25 01:00 UTC: 03:00 CEST -> 02:00 CET, 02:00-02:59 shown
    //   twice: first pass 00:00-00:59 UTC (CEST), second pass 01:00-01:59 UTC (CET).
    // - America/New_York spring, 2026-03-08 07:00 UTC: 02:00 EST -> 03:00 EDT, 02:00-02:59 skipped.
    // - America/New_York autumn, 2026-11-01 06:00 UTC: 02:00 EDT -> 01:00 EST, 01:00-01:59 shown
    //   twice: first pass 05:00-05:59 UTC (EDT), second pass 06:00-06:59 UTC (EST).
    // Each walk covers (day before 00:00 UTC, day after 18:00 UTC].
    const PARIS: &str = "Europe/Paris";
    const NEW_YORK: &str = "America/New_York";

    fn paris_spring() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc(2026, 3, 28, 0, 0, 0), utc(2026, 3, 30, 18, 0, 0))
    }
    fn paris_autumn() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc(2026, 10, 24, 0, 0, 0), utc(2026, 10, 26, 18, 0, 0))
    }
    fn new_york_spring() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc(2026, 3, 7, 0, 0, 0), utc(2026, 3, 9, 18, 0, 0))
    }
    fn new_york_autumn() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc(2026, 10, 31, 0, 0, 0), utc(2026, 11, 2, 18, 0, 0))
    }

    /// One pass of the engine's cron loop (engine/src/engine/maintenance.rs): with `last` the last
    /// tick (or the creation time), the tick fired at `now`, if any.
    fn poll(c: &CronExpr, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = c.next_after(last)?;
        (next <= now).then(|| c.last_at_or_before(now).unwrap_or(next).max(next))
    }

    /// The ticks the engine fires for `c` created at `from`, up to `until`. With `every` zero the
    /// loop wakes exactly at each tick (it sleeps until the next one); otherwise it wakes on a grid
    /// of `every` from `from`, mostly after the tick.
    fn scheduler_walk(
        c: &CronExpr,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        every: chrono::Duration,
    ) -> Vec<DateTime<Utc>> {
        let mut fired = Vec::new();
        let (mut last, mut now) = (from, from);
        while let Some(next) = c.next_after(last) {
            if next > until {
                break;
            }
            if every.is_zero() {
                now = next;
            }
            while now < next {
                now += every;
            }
            let tick = poll(c, last, now).expect("a due tick fires");
            fired.push(tick);
            last = tick;
        }
        fired
    }

    /// Every `step` from `first` to `last` inclusive, leaving out `except`.
    fn every(
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        step: chrono::Duration,
        except: &[DateTime<Utc>],
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = first;
        while t <= last {
            if !except.contains(&t) {
                out.push(t);
            }
            t += step;
        }
        out
    }

    /// Walks `expr` in `tz` over `(from, until]` as the scheduler does, waking at each tick and on
    /// a 7-minute grid, checks both fire exactly `expected`, and checks the DST properties:
    /// (c) the ticks strictly increase;
    /// (a) no local wall-clock time fires twice, and every wall-clock minute the expression names
    ///     that exists fires, at the first instant the clock shows it;
    /// (b) a named minute the clock skips fires at the first instant after the gap.
    fn check_walk(
        tz: &str,
        expr: &str,
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        expected: &[DateTime<Utc>],
    ) {
        let c = CronExpr::parse_in(expr, Some(tz)).unwrap();
        for every in [chrono::Duration::zero(), chrono::Duration::minutes(7)] {
            let fired = scheduler_walk(&c, from, until, every);
            assert_eq!(fired, expected, "{expr} in {tz}, waking every {every}");
        }
        // (c)
        assert!(
            expected.windows(2).all(|w| w[0] < w[1]),
            "{expr} in {tz}: {expected:?}"
        );
        // (a), no repeat.
        let tz = c.timezone();
        let wall = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
        let mut seen = std::collections::HashSet::new();
        for &t in expected {
            assert!(seen.insert(wall(t)), "{expr}: {} fired twice", wall(t));
            assert_eq!(c.last_at_or_before(t), Some(t), "{expr}: {t}");
        }
        // (a) and (b): each named minute, matched by croner on a wall clock without time zone.
        let mut minute = wall(from) - chrono::Duration::hours(2);
        while minute <= wall(until) + chrono::Duration::hours(2) {
            minute += chrono::Duration::minutes(1);
            let Kind::Cron(cron) = &c.kind else {
                unreachable!("walks are of calendar expressions")
            };
            if !cron.is_time_matching(&minute).unwrap() {
                continue;
            }
            let fires = match tz.from_local_datetime(&minute) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                LocalResult::None => {
                    // The first instant, on the minute, whose wall clock is past `minute`.
                    let mut t = from;
                    while wall(t) < minute {
                        t += chrono::Duration::minutes(1);
                    }
                    t
                }
            };
            if fires > from && fires <= until {
                assert!(
                    expected.contains(&fires),
                    "{expr} in {tz}: {minute} should fire at {fires}"
                );
            }
        }
    }

    #[test]
    fn daily_tick_in_the_paris_gap_and_overlap_fires_once() {
        // Spring: 02:30 CET = 01:30 UTC; 02:30 does not exist on 03-29 and fires at the end of
        // the gap, 03:00 CEST = 01:00 UTC; then 02:30 CEST = 00:30 UTC.
        check_walk(
            PARIS,
            "30 2 * * *",
            paris_spring(),
            &[
                utc(2026, 3, 28, 1, 30, 0),
                utc(2026, 3, 29, 1, 0, 0),
                utc(2026, 3, 30, 0, 30, 0),
            ],
        );
        // Autumn: 02:30 CEST = 00:30 UTC; on 10-25 only the first 02:30 (CEST, 00:30 UTC)
        // fires, not the second (CET, 01:30 UTC); then 02:30 CET = 01:30 UTC.
        check_walk(
            PARIS,
            "30 2 * * *",
            paris_autumn(),
            &[
                utc(2026, 10, 24, 0, 30, 0),
                utc(2026, 10, 25, 0, 30, 0),
                utc(2026, 10, 26, 1, 30, 0),
            ],
        );
    }

    #[test]
    fn daily_ticks_in_the_new_york_gap_and_overlap_fire_once() {
        // Spring, 01:30 (before the gap): 01:30 EST = 06:30 UTC twice, then 01:30 EDT = 05:30.
        check_walk(
            NEW_YORK,
            "30 1 * * *",
            new_york_spring(),
            &[
                utc(2026, 3, 7, 6, 30, 0),
                utc(2026, 3, 8, 6, 30, 0),
                utc(2026, 3, 9, 5, 30, 0),
            ],
        );
        // Spring, 02:30 (in the gap): 02:30 EST = 07:30 UTC; on 03-08 the end of the gap,
        // 03:00 EDT = 07:00 UTC; then 02:30 EDT = 06:30 UTC.
        check_walk(
            NEW_YORK,
            "30 2 * * *",
            new_york_spring(),
            &[
                utc(2026, 3, 7, 7, 30, 0),
                utc(2026, 3, 8, 7, 0, 0),
                utc(2026, 3, 9, 6, 30, 0),
            ],
        );
        // Autumn, 01:30 (in the overlap): 01:30 EDT = 05:30 UTC; on 11-01 the first pass only,
        // 01:30 EDT = 05:30 UTC (not 01:30 EST = 06:30 UTC); then 01:30 EST = 06:30 UTC.
        check_walk(
            NEW_YORK,
            "30 1 * * *",
            new_york_autumn(),
            &[
                utc(2026, 10, 31, 5, 30, 0),
                utc(2026, 11, 1, 5, 30, 0),
                utc(2026, 11, 2, 6, 30, 0),
            ],
        );
        // Autumn, 02:30 (after the overlap, shown once): 02:30 EDT = 06:30 UTC, then
        // 02:30 EST = 07:30 UTC twice; 25 hours between the first two.
        check_walk(
            NEW_YORK,
            "30 2 * * *",
            new_york_autumn(),
            &[
                utc(2026, 10, 31, 6, 30, 0),
                utc(2026, 11, 1, 7, 30, 0),
                utc(2026, 11, 2, 7, 30, 0),
            ],
        );
    }

    #[test]
    fn hourly_ticks_fire_once_across_dst_changes() {
        let hour = chrono::Duration::hours(1);
        // Both zones are whole hours from UTC, so the hourly ticks are on the UTC hour.
        // Paris spring: 00:00 UTC = 01:00 CET, 01:00 UTC = 03:00 CEST (02:00 CET is skipped and
        // its end of gap is the 03:00 tick itself), 02:00 UTC = 04:00 CEST: no UTC hour missing.
        check_walk(
            PARIS,
            "0 * * * *",
            paris_spring(),
            &every(
                utc(2026, 3, 28, 1, 0, 0),
                utc(2026, 3, 30, 18, 0, 0),
                hour,
                &[],
            ),
        );
        // Paris autumn: 00:00 UTC = 02:00 CEST, [01:00 UTC = 02:00 CET, a repeat: no tick],
        // 02:00 UTC = 03:00 CET.
        check_walk(
            PARIS,
            "0 * * * *",
            paris_autumn(),
            &every(
                utc(2026, 10, 24, 1, 0, 0),
                utc(2026, 10, 26, 18, 0, 0),
                hour,
                &[utc(2026, 10, 25, 1, 0, 0)],
            ),
        );
        // New York spring: 06:00 UTC = 01:00 EST, 07:00 UTC = 03:00 EDT (02:00 skipped).
        check_walk(
            NEW_YORK,
            "0 * * * *",
            new_york_spring(),
            &every(
                utc(2026, 3, 7, 1, 0, 0),
                utc(2026, 3, 9, 18, 0, 0),
                hour,
                &[],
            ),
        );
        // New York autumn: 05:00 UTC = 01:00 EDT, [06:00 UTC = 01:00 EST: no tick],
        // 07:00 UTC = 02:00 EST.
        check_walk(
            NEW_YORK,
            "0 * * * *",
            new_york_autumn(),
            &every(
                utc(2026, 10, 31, 1, 0, 0),
                utc(2026, 11, 2, 18, 0, 0),
                hour,
                &[utc(2026, 11, 1, 6, 0, 0)],
            ),
        );
        // The same, spelled out around each change.
        let c = CronExpr::parse_in("0 * * * *", Some(NEW_YORK)).unwrap();
        let (from, until) = new_york_autumn();
        let fired = scheduler_walk(&c, from, until, chrono::Duration::zero());
        let near: Vec<_> = fired
            .into_iter()
            .filter(|t| (utc(2026, 11, 1, 4, 0, 0)..=utc(2026, 11, 1, 8, 0, 0)).contains(t))
            .collect();
        assert_eq!(
            near,
            [
                utc(2026, 11, 1, 4, 0, 0), // 00:00 EDT
                utc(2026, 11, 1, 5, 0, 0), // 01:00 EDT
                utc(2026, 11, 1, 7, 0, 0), // 02:00 EST
                utc(2026, 11, 1, 8, 0, 0), // 03:00 EST
            ]
        );
        let c = CronExpr::parse_in("0 * * * *", Some(PARIS)).unwrap();
        let (from, until) = paris_spring();
        let fired = scheduler_walk(&c, from, until, chrono::Duration::zero());
        let near: Vec<_> = fired
            .into_iter()
            .filter(|t| (utc(2026, 3, 28, 23, 0, 0)..=utc(2026, 3, 29, 2, 0, 0)).contains(t))
            .collect();
        assert_eq!(
            near,
            [
                utc(2026, 3, 28, 23, 0, 0), // 00:00 CET
                utc(2026, 3, 29, 0, 0, 0),  // 01:00 CET
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST
                utc(2026, 3, 29, 2, 0, 0),  // 04:00 CEST
            ]
        );
    }

    #[test]
    fn half_hourly_ticks_fire_once_across_dst_changes() {
        let half = chrono::Duration::minutes(30);
        // Paris spring: 00:30 UTC = 01:30 CET, 01:00 UTC = 03:00 CEST (02:00 and 02:30 CET are
        // skipped and fire there, as one tick with 03:00), 01:30 UTC = 03:30 CEST.
        check_walk(
            PARIS,
            "*/30 * * * *",
            paris_spring(),
            &every(
                utc(2026, 3, 28, 0, 30, 0),
                utc(2026, 3, 30, 18, 0, 0),
                half,
                &[],
            ),
        );
        // Paris autumn: 00:00 and 00:30 UTC = 02:00 and 02:30 CEST; 01:00 and 01:30 UTC
        // (02:00 and 02:30 CET) are repeats and do not fire; 02:00 UTC = 03:00 CET.
        check_walk(
            PARIS,
            "*/30 * * * *",
            paris_autumn(),
            &every(
                utc(2026, 10, 24, 0, 30, 0),
                utc(2026, 10, 26, 18, 0, 0),
                half,
                &[utc(2026, 10, 25, 1, 0, 0), utc(2026, 10, 25, 1, 30, 0)],
            ),
        );
        // New York spring: 06:30 UTC = 01:30 EST, 07:00 UTC = 03:00 EDT.
        check_walk(
            NEW_YORK,
            "*/30 * * * *",
            new_york_spring(),
            &every(
                utc(2026, 3, 7, 0, 30, 0),
                utc(2026, 3, 9, 18, 0, 0),
                half,
                &[],
            ),
        );
        // New York autumn: 05:00 and 05:30 UTC = 01:00 and 01:30 EDT; 06:00 and 06:30 UTC
        // (01:00 and 01:30 EST) do not fire: 01:30 fires once; 07:00 UTC = 02:00 EST.
        check_walk(
            NEW_YORK,
            "*/30 * * * *",
            new_york_autumn(),
            &every(
                utc(2026, 10, 31, 0, 30, 0),
                utc(2026, 11, 2, 18, 0, 0),
                half,
                &[utc(2026, 11, 1, 6, 0, 0), utc(2026, 11, 1, 6, 30, 0)],
            ),
        );
    }

    #[test]
    fn daily_tick_outside_the_change_shifts_by_an_hour_in_utc() {
        // 09:00 CET = 08:00 UTC, 09:00 CEST = 07:00 UTC.
        check_walk(
            PARIS,
            "0 9 * * *",
            paris_spring(),
            &[
                utc(2026, 3, 28, 8, 0, 0),
                utc(2026, 3, 29, 7, 0, 0),
                utc(2026, 3, 30, 7, 0, 0),
            ],
        );
        check_walk(
            PARIS,
            "0 9 * * *",
            paris_autumn(),
            &[
                utc(2026, 10, 24, 7, 0, 0),
                utc(2026, 10, 25, 8, 0, 0),
                utc(2026, 10, 26, 8, 0, 0),
            ],
        );
        // 09:00 EST = 14:00 UTC, 09:00 EDT = 13:00 UTC.
        check_walk(
            NEW_YORK,
            "0 9 * * *",
            new_york_spring(),
            &[
                utc(2026, 3, 7, 14, 0, 0),
                utc(2026, 3, 8, 13, 0, 0),
                utc(2026, 3, 9, 13, 0, 0),
            ],
        );
        check_walk(
            NEW_YORK,
            "0 9 * * *",
            new_york_autumn(),
            &[
                utc(2026, 10, 31, 13, 0, 0),
                utc(2026, 11, 1, 14, 0, 0),
                utc(2026, 11, 2, 14, 0, 0),
            ],
        );
    }

    #[test]
    fn every_pattern_fires_skipped_times_at_the_end_of_the_gap() {
        // 02:15 CET does not exist on 03-29: it fires at 03:00 CEST = 01:00 UTC, then 03:15 CEST
        // = 01:15 UTC. (croner alone would skip it, as `15 * * * *` is not "fixed-time".)
        let hour = chrono::Duration::hours(1);
        let mut expected = every(
            utc(2026, 3, 28, 0, 15, 0),
            utc(2026, 3, 30, 17, 15, 0),
            hour,
            &[],
        );
        expected.push(utc(2026, 3, 29, 1, 0, 0));
        expected.sort();
        check_walk(PARIS, "15 * * * *", paris_spring(), &expected);
        // 02:00 and 02:30 EST do not exist on 03-08: one tick at 03:00 EDT = 07:00 UTC.
        check_walk(
            NEW_YORK,
            "0,30 2 * * *",
            new_york_spring(),
            &[
                utc(2026, 3, 7, 7, 0, 0),
                utc(2026, 3, 7, 7, 30, 0),
                utc(2026, 3, 8, 7, 0, 0),
                utc(2026, 3, 9, 6, 0, 0),
                utc(2026, 3, 9, 6, 30, 0),
            ],
        );
        // With seconds: 01:59:50 CET = 00:59:50 UTC, then 03:00:00 CEST = 01:00:00 UTC.
        let c = CronExpr::parse_in("*/10 * * * * *", Some(PARIS)).unwrap();
        assert_eq!(
            c.next_after(utc(2026, 3, 29, 0, 59, 45)),
            Some(utc(2026, 3, 29, 0, 59, 50))
        );
        assert_eq!(
            c.next_after(utc(2026, 3, 29, 0, 59, 50)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        assert_eq!(
            c.last_at_or_before(utc(2026, 3, 29, 1, 0, 5)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
    }

    #[test]
    fn every_pattern_fires_a_repeated_time_on_the_first_pass_only() {
        // A list in the hour field: 01:00 and 01:30 EDT (05:00, 05:30 UTC) on 11-01, not 01:00
        // and 01:30 EST (06:00, 06:30 UTC). (croner alone fires both, as it is not "fixed-time".)
        check_walk(
            NEW_YORK,
            "0,30 1 * * *",
            new_york_autumn(),
            &[
                utc(2026, 10, 31, 5, 0, 0),
                utc(2026, 10, 31, 5, 30, 0),
                utc(2026, 11, 1, 5, 0, 0),
                utc(2026, 11, 1, 5, 30, 0),
                utc(2026, 11, 2, 6, 0, 0),
                utc(2026, 11, 2, 6, 30, 0),
            ],
        );
        // Every second: after 01:59:59 EDT (05:59:59 UTC) comes 02:00:00 EST (07:00:00 UTC).
        let c = CronExpr::parse_in("* * * * * *", Some(NEW_YORK)).unwrap();
        assert_eq!(
            c.next_after(utc(2026, 11, 1, 5, 59, 59)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        assert_eq!(
            c.next_after(utc(2026, 11, 1, 6, 30, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        assert_eq!(
            c.last_at_or_before(utc(2026, 11, 1, 6, 30, 0)),
            Some(utc(2026, 11, 1, 5, 59, 59))
        );
        assert_eq!(
            c.last_at_or_before(utc(2026, 11, 1, 7, 0, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
    }

    #[test]
    fn cron_created_on_the_second_pass_waits_for_the_next_wall_clock_tick() {
        // Created at 01:10 EST (06:10 UTC) on 11-01: 01:30 already went by on the first pass
        // (05:30 UTC), so the first tick is 11-02 01:30 EST = 06:30 UTC, not 06:30 UTC today.
        let c = CronExpr::parse_in("30 1 * * *", Some(NEW_YORK)).unwrap();
        let created = utc(2026, 11, 1, 6, 10, 0);
        assert_eq!(
            scheduler_walk(
                &c,
                created,
                utc(2026, 11, 2, 18, 0, 0),
                chrono::Duration::zero()
            ),
            [utc(2026, 11, 2, 6, 30, 0)]
        );
        // `*/30`: next is 02:00 EST = 07:00 UTC.
        let c = CronExpr::parse_in("*/30 * * * *", Some(NEW_YORK)).unwrap();
        assert_eq!(c.next_after(created), Some(utc(2026, 11, 1, 7, 0, 0)));
    }

    #[test]
    fn catch_up_across_dst_changes_fires_the_latest_tick_once() {
        // `*/30` in New York, last tick 00:30 EDT (04:30 UTC) on 11-01, down until 01:45 EST
        // (06:45 UTC, second pass). Due ticks: 01:00 and 01:30 EDT (05:00, 05:30 UTC); 06:00 and
        // 06:30 UTC are repeats, not ticks. One fires, the latest: 05:30 UTC.
        let c = CronExpr::parse_in("*/30 * * * *", Some(NEW_YORK)).unwrap();
        let last = utc(2026, 11, 1, 4, 30, 0);
        let now = utc(2026, 11, 1, 6, 45, 0);
        let tick = poll(&c, last, now);
        assert_eq!(tick, Some(utc(2026, 11, 1, 5, 30, 0)));
        // Nothing more until 02:00 EST = 07:00 UTC.
        assert_eq!(poll(&c, tick.unwrap(), now), None);
        assert_eq!(
            poll(&c, tick.unwrap(), utc(2026, 11, 1, 7, 0, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        // Down until 01:45 EDT (05:45 UTC, first pass): the same tick.
        assert_eq!(
            poll(&c, last, utc(2026, 11, 1, 5, 45, 0)),
            Some(utc(2026, 11, 1, 5, 30, 0))
        );
        // Down over the whole overlap, until 02:10 EST (07:10 UTC): only 02:00 EST fires.
        assert_eq!(
            poll(&c, last, utc(2026, 11, 1, 7, 10, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );

        // `30 1` in New York, last tick 10-31 01:30 EDT (05:30 UTC), down until 11-01 01:45 EST
        // (06:45 UTC): 11-01 01:30 EDT (05:30 UTC) fires once, not 01:30 EST (06:30 UTC).
        let c = CronExpr::parse_in("30 1 * * *", Some(NEW_YORK)).unwrap();
        let tick = poll(&c, utc(2026, 10, 31, 5, 30, 0), utc(2026, 11, 1, 6, 45, 0));
        assert_eq!(tick, Some(utc(2026, 11, 1, 5, 30, 0)));
        assert_eq!(
            c.next_after(tick.unwrap()),
            Some(utc(2026, 11, 2, 6, 30, 0))
        );

        // Hourly in Paris, last tick 10-25 00:00 CEST (10-24 22:00 UTC), down until 02:30 CET
        // (01:30 UTC, second pass): 02:00 CEST (00:00 UTC) fires, then 03:00 CET (02:00 UTC).
        let c = CronExpr::parse_in("0 * * * *", Some(PARIS)).unwrap();
        let now = utc(2026, 10, 25, 1, 30, 0);
        let tick = poll(&c, utc(2026, 10, 24, 22, 0, 0), now);
        assert_eq!(tick, Some(utc(2026, 10, 25, 0, 0, 0)));
        assert_eq!(poll(&c, tick.unwrap(), now), None);
        assert_eq!(
            c.next_after(tick.unwrap()),
            Some(utc(2026, 10, 25, 2, 0, 0))
        );

        // Across the gap: `30 2` in Paris, last tick 03-28 (01:30 UTC), down until 03-29 07:00
        // CEST (05:00 UTC): the gap's tick, 03:00 CEST = 01:00 UTC, fires once.
        let c = CronExpr::parse_in("30 2 * * *", Some(PARIS)).unwrap();
        let now = utc(2026, 3, 29, 5, 0, 0);
        let tick = poll(&c, utc(2026, 3, 28, 1, 30, 0), now);
        assert_eq!(tick, Some(utc(2026, 3, 29, 1, 0, 0)));
        assert_eq!(poll(&c, tick.unwrap(), now), None);
    }

    #[test]
    fn next_after_and_last_at_or_before_agree_across_dst_changes() {
        let windows = [
            (PARIS, paris_spring()),
            (PARIS, paris_autumn()),
            (NEW_YORK, new_york_spring()),
            (NEW_YORK, new_york_autumn()),
        ];
        let exprs = [
            "30 2 * * *",
            "30 1 * * *",
            "0 * * * *",
            "*/30 * * * *",
            "15 * * * *",
            "0,30 1 * * *",
        ];
        for (tz, (from, until)) in windows {
            for expr in exprs {
                let c = CronExpr::parse_in(expr, Some(tz)).unwrap();
                // Every 150 s: on each half hour and between.
                let mut t = from;
                while t <= until {
                    let prev = c.last_at_or_before(t).unwrap();
                    let next = c.next_after(t).unwrap();
                    assert!(prev <= t && t < next, "{expr} in {tz} at {t}");
                    // No tick between them.
                    assert_eq!(c.next_after(prev), Some(next), "{expr} in {tz} at {t}");
                    assert_eq!(
                        c.last_at_or_before(next - chrono::Duration::seconds(1)),
                        Some(prev),
                        "{expr} in {tz} at {t}"
                    );
                    t += chrono::Duration::seconds(150);
                }
            }
        }
    }

    #[test]
    fn every_ticks_on_multiples_of_the_interval_since_the_epoch() {
        let e = CronExpr::parse("@every 30s").unwrap();
        assert_eq!(e.as_str(), "@every 30s");
        assert_eq!(
            e.next_after(utc(2026, 1, 1, 0, 0, 10)),
            Some(utc(2026, 1, 1, 0, 0, 30))
        );
        assert_eq!(
            e.next_after(utc(2026, 1, 1, 0, 0, 30)),
            Some(utc(2026, 1, 1, 0, 1, 0))
        );
        assert_eq!(
            e.last_at_or_before(utc(2026, 1, 1, 0, 0, 59)),
            Some(utc(2026, 1, 1, 0, 0, 30))
        );
        // The time zone does not move an interval, nor does a DST change.
        let h = CronExpr::parse_in("@every 1h", Some("America/New_York")).unwrap();
        assert_eq!(
            h.next_after(utc(2026, 11, 1, 5, 30, 0)),
            Some(utc(2026, 11, 1, 6, 0, 0))
        );
        assert_eq!(
            h.next_after(utc(2026, 11, 1, 6, 0, 0)),
            Some(utc(2026, 11, 1, 7, 0, 0))
        );
        for bad in [
            "@every",
            "@every 0s",
            "@every 500ms",
            "@every 1500ms",
            "@every soon",
            "@every 400d",
        ] {
            let err = CronExpr::parse(bad).unwrap_err();
            assert!(err.contains("interval"), "{bad}: {err}");
        }
    }

    #[test]
    fn catch_up_policies_choose_the_missed_ticks() {
        let e = CronExpr::parse("@every 1m").unwrap();
        let next = utc(2026, 1, 1, 0, 1, 0);
        // On time (within the grace): the due tick, whatever the policy.
        let now = utc(2026, 1, 1, 0, 1, 2);
        for p in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
            assert_eq!(p.ticks(&e, next, now), vec![next], "{p:?}");
        }
        // Ten minutes without an engine: ticks 00:01 to 00:10 missed.
        let now = utc(2026, 1, 1, 0, 10, 30);
        assert_eq!(
            CatchUp::Latest.ticks(&e, next, now),
            vec![utc(2026, 1, 1, 0, 10, 0)]
        );
        let all = CatchUp::All.ticks(&e, next, now);
        assert_eq!(all.len(), 10);
        assert_eq!((all[0], all[9]), (next, utc(2026, 1, 1, 0, 10, 0)));
        // The latest tick is within the grace: it fires, the older ones don't.
        assert_eq!(
            CatchUp::None.ticks(&e, next, now),
            vec![utc(2026, 1, 1, 0, 10, 0)]
        );
        // Every missed tick older than the grace: none fires (ticks 00:05 and 00:10, now 00:12).
        let five = CronExpr::parse("@every 5m").unwrap();
        let now = utc(2026, 1, 1, 0, 12, 0);
        assert!(CatchUp::None
            .ticks(&five, utc(2026, 1, 1, 0, 5, 0), now)
            .is_empty());
        assert_eq!(
            CatchUp::Latest.ticks(&five, utc(2026, 1, 1, 0, 5, 0), now),
            vec![utc(2026, 1, 1, 0, 10, 0)]
        );
        // A day of a per-second schedule: the latest CATCH_UP_MAX.
        let s = CronExpr::parse("@every 1s").unwrap();
        let now = utc(2026, 1, 2, 0, 0, 0);
        let all = CatchUp::All.ticks(&s, utc(2026, 1, 1, 0, 0, 1), now);
        assert_eq!(all.len(), CATCH_UP_MAX);
        assert_eq!(*all.last().unwrap(), now);
        assert_eq!(
            all[0],
            now - chrono::Duration::seconds(CATCH_UP_MAX as i64 - 1)
        );
    }

    #[test]
    fn policies_parse_their_names() {
        for p in [
            Overlap::Allow,
            Overlap::Skip,
            Overlap::CancelPrevious,
            Overlap::BufferOne,
        ] {
            assert_eq!(Overlap::parse(p.as_str()), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for p in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
            assert_eq!(CatchUp::parse(p.as_str()), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert!(Overlap::parse("queue").unwrap_err().contains("buffer_one"));
        assert!(CatchUp::parse("some").unwrap_err().contains("latest"));
    }
}
