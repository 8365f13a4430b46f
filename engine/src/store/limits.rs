//! Limited claims, the part both stores share: how many runs each key may still start under a
//! concurrency limit (runs leased per key) or a rate limit (units left in the key's bucket).
//! Each store walks its queue in turns with its own SQL (`migrations/sqlite/0017_turns.sql`,
//! `migrations/postgres/0017_turns.sql`); rate limits in `0008_rate_limits.sql`.

use super::{Inserted, NewRun};
use owlclaw_core::ratelimit::{RateLimit, RateLimitUse};
use owlclaw_core::task::{Concurrency, ConcurrencyStrategy};
use owlclaw_core::wire::RunSnapshot;
use owlclaw_core::{RunId, RunStatus};
use std::collections::{BTreeSet, HashMap};

/// The room left under a task's limits while one claim walks its keys: runs leased per key
/// under a concurrency limit, units in the buckets under a rate limit; a key has the room both
/// leave when a task has both.
#[derive(Debug)]
pub(super) struct Rooms {
    left: usize,
    running: Option<Running>,
    rate: Option<Rate>,
}

#[derive(Debug)]
struct Running {
    max: i64,
    running: HashMap<String, i64>,
}

#[derive(Debug)]
struct Rate {
    limit: RateLimit,
    /// Units one run spends.
    units: f64,
    /// The task's use of it: which bucket a key spends from.
    rate: RateLimitUse,
    now_us: i64,
    /// Units in the buckets read (refilled up to now) or spent from; a bucket absent is full.
    tokens: HashMap<String, f64>,
    spent: BTreeSet<String>,
    /// The earliest time a bucket found without room has its units.
    due_us: Option<i64>,
}

impl Rooms {
    /// A claim of up to `left` runs, without a limit yet.
    pub(super) fn new(left: usize) -> Rooms {
        Rooms {
            left,
            running: None,
            rate: None,
        }
    }

    /// Under a concurrency limit of `max`, with `running` runs of each key leased already.
    pub(super) fn running(mut self, max: u32, running: Vec<(String, i64)>) -> Rooms {
        self.running = Some(Running {
            max: i64::from(max),
            running: running.into_iter().collect(),
        });
        self
    }

    /// Spending the units `rate` names of `limit` per run at `now_us`, from the bucket it names
    /// for each key. Load the buckets stored before asking for room.
    pub(super) fn rate(mut self, limit: RateLimit, rate: &RateLimitUse, now_us: i64) -> Rooms {
        self.rate = Some(Rate {
            units: f64::from(limit.units_needed(rate.units)),
            limit,
            rate: rate.clone(),
            now_us,
            tokens: HashMap::new(),
            spent: BTreeSet::new(),
            due_us: None,
        });
        self
    }

    /// The bucket a run of `key` spends from, under a rate limit.
    pub(super) fn bucket<'a>(&self, key: &'a str) -> Option<&'a str> {
        self.rate.as_ref().map(|r| r.rate.bucket(key))
    }

    /// The bucket `bucket` as stored: `tokens` units at `at_us`. A bucket this claim loaded
    /// already (keys may share one) keeps what the claim spent from it.
    pub(super) fn load(&mut self, bucket: String, tokens: f64, at_us: i64) {
        if let Some(r) = &mut self.rate {
            let refilled = r.limit.refill(tokens, at_us, r.now_us);
            r.tokens.entry(bucket).or_insert(refilled);
        }
    }

    /// The keys at their concurrency limit when the claim starts.
    pub(super) fn full_keys(&self) -> Vec<&str> {
        match &self.running {
            Some(r) => r
                .running
                .iter()
                .filter(|(_, n)| **n >= r.max)
                .map(|(k, _)| k.as_str())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether the claim has read (or spent from) the bucket `bucket`.
    pub(super) fn loaded(&self, bucket: &str) -> bool {
        self.rate
            .as_ref()
            .is_some_and(|r| r.tokens.contains_key(bucket))
    }

    /// How many queued runs of `key` the claim may take: `None` when the key has no room (or
    /// the claim is full). A rate-limited key without units notes when it will have some.
    pub(super) fn room(&mut self, key: &str) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let mut free = self.left as i64;
        if let Some(r) = &self.running {
            free = free.min(r.max - r.running.get(key).copied().unwrap_or(0));
        }
        if free > 0 {
            if let Some(r) = &mut self.rate {
                let have = r
                    .tokens
                    .get(r.rate.bucket(key))
                    .copied()
                    .unwrap_or(f64::from(r.limit.limit));
                let units = (have / r.units).floor() as i64;
                if units <= 0 {
                    note_due(&mut r.due_us, &r.limit, r.now_us, have, r.units);
                }
                free = free.min(units);
            }
        }
        (free > 0).then_some(free as usize)
    }

    /// The claim took `n` runs of `key`. A bucket left without the units of another run notes
    /// when it will have them.
    pub(super) fn took(&mut self, key: &str, n: usize) {
        self.left = self.left.saturating_sub(n);
        if n == 0 {
            return;
        }
        if let Some(r) = &mut self.running {
            *r.running.entry(key.to_string()).or_default() += n as i64;
        }
        if let Some(r) = &mut self.rate {
            let bucket = r.rate.bucket(key).to_string();
            let have = r
                .tokens
                .entry(bucket.clone())
                .or_insert(f64::from(r.limit.limit));
            *have -= r.units * n as f64;
            let have = *have;
            r.spent.insert(bucket);
            if have < r.units {
                // The key may have more runs queued: note when it can pay for the next.
                note_due(&mut r.due_us, &r.limit, r.now_us, have, r.units);
            }
        }
    }

    /// Whether the claim has all it wants.
    pub(super) fn full(&self) -> bool {
        self.left == 0
    }

    /// The buckets to store: each spent from, with the units it has left (at the claim's time).
    pub(super) fn spent(&self) -> Vec<(String, f64)> {
        match &self.rate {
            Some(r) => r.spent.iter().map(|k| (k.clone(), r.tokens[k])).collect(),
            None => Vec::new(),
        }
    }

    /// When a rate-limited key left with queued runs will have its units (µs since the epoch).
    pub(super) fn due_us(&self) -> Option<i64> {
        self.rate.as_ref().and_then(|r| r.due_us)
    }
}

/// The runs that a new queued run `id` cancels under its concurrency limit, given the other
/// queued and running runs of its key, oldest first: none under `queue` or while the key has
/// room; the new run itself under `cancel_newest`; the oldest others under `cancel_in_progress`
/// (a debounce: the newest work wins).
pub(super) fn displaced(limit: &Concurrency, id: RunId, others: &[RunId]) -> Vec<RunId> {
    let others: Vec<RunId> = others.iter().copied().filter(|o| *o != id).collect();
    let over = (others.len() + 1).saturating_sub(limit.max as usize);
    match limit.strategy {
        _ if over == 0 => Vec::new(),
        ConcurrencyStrategy::Queue => Vec::new(),
        ConcurrencyStrategy::CancelNewest => vec![id],
        ConcurrencyStrategy::CancelInProgress => others[..over].to_vec(),
    }
}

/// The runs just inserted whose concurrency strategy may cancel runs (created queued under
/// `cancel_newest` or `cancel_in_progress`), with their limit, key and snapshot.
pub(super) fn displacing<'a>(
    runs: &'a [NewRun],
    inserted: &'a mut [Inserted],
) -> impl Iterator<Item = (&'a NewRun, &'a Concurrency, &'a str, &'a mut RunSnapshot)> {
    runs.iter()
        .zip(inserted.iter_mut())
        .filter_map(|(run, done)| {
            let (Some((limit, key)), Inserted::Created(snap)) = (&run.concurrency, done) else {
                return None;
            };
            (limit.strategy != ConcurrencyStrategy::Queue && snap.status == RunStatus::Queued)
                .then_some((run, limit, key.as_str(), snap))
        })
}

/// Keeps in `due_us` the earlier of it and the time a bucket of `limit` holding `have` units at
/// `now_us` holds `units`.
fn note_due(due_us: &mut Option<i64>, limit: &RateLimit, now_us: i64, have: f64, units: f64) {
    let due = now_us + limit.time_to(have, units as u32).as_micros() as i64;
    *due_us = Some(due_us.map_or(due, |d| d.min(due)));
}

/// Notes that runs of `worker` wait for units until `due_us`, the earliest such time kept.
pub(super) fn note_units_due(worker: &super::WorkerRecord, due_us: Option<i64>) {
    use std::sync::atomic::Ordering;
    if let Some(due) = due_us {
        let _ = worker
            .units_due
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(if d == 0 { due } else { d.min(due) })
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The use of rate limit `name`, `units` a run, from each key's bucket (`keyed`) or one.
    fn spends(name: &str, units: u32, keyed: bool) -> RateLimitUse {
        RateLimitUse {
            name: name.into(),
            units,
            key: keyed.then(|| "customer".into()),
        }
    }

    #[test]
    fn a_key_has_the_room_its_limit_leaves_within_what_the_claim_wants() {
        let mut rooms = Rooms::new(3).running(2, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(rooms.room("a"), None, "at its limit");
        assert_eq!(rooms.room("b"), Some(1));
        assert_eq!(rooms.room("c"), Some(2));
        rooms.took("c", 2);
        assert_eq!(rooms.room("c"), None, "c is at its limit now");
        assert_eq!(rooms.room("d"), Some(1), "the claim wants one more");
        rooms.took("d", 1);
        assert!(rooms.full());
        assert_eq!(rooms.room("e"), None);
        assert!(rooms.spent().is_empty());
    }

    #[test]
    fn a_rate_limited_key_has_the_runs_its_bucket_pays_for() {
        let limit = RateLimit {
            name: "stripe".into(),
            limit: 10,
            per: Duration::from_secs(1),
        };
        // 2 units a run, at t = 1 s.
        let mut rooms = Rooms::new(100).rate(limit, &spends("stripe", 2, true), 1_000_000);
        rooms.load("a".into(), 1.0, 900_000); // 1 + 0.1 s × 10/s = 2 units
        rooms.load("b".into(), 0.0, 1_000_000);
        assert_eq!(rooms.room("a"), Some(1));
        assert_eq!(rooms.room("c"), Some(5), "no bucket stored: a full one");
        assert_eq!(rooms.room("b"), None);
        assert_eq!(rooms.due_us(), Some(1_200_000), "b has 2 units 0.2 s later");
        rooms.took("a", 1);
        rooms.took("c", 3);
        assert_eq!(rooms.room("c"), Some(2));
        let mut spent = rooms.spent();
        spent.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(spent, vec![("a".into(), 0.0), ("c".into(), 4.0)]);
    }

    #[test]
    fn under_both_limits_a_key_has_the_room_both_leave_and_keys_share_one_bucket() {
        let limit = RateLimit {
            name: "api".into(),
            limit: 5,
            per: Duration::from_secs(1),
        };
        // At most 2 running per key, 5 units a second for the whole task, 1 unit a run.
        let mut rooms = Rooms::new(10).running(2, vec![("a".into(), 1)]).rate(
            limit,
            &spends("api", 1, false),
            0,
        );
        assert_eq!(rooms.bucket("a"), Some(""), "one bucket for every key");
        rooms.load("".into(), 4.0, 0);
        assert_eq!(rooms.room("a"), Some(1), "a runs one of its 2");
        rooms.took("a", 1);
        assert_eq!(rooms.room("a"), None);
        assert_eq!(
            rooms.room("b"),
            Some(2),
            "b's limit, within the 3 units left"
        );
        rooms.took("b", 2);
        // Read again for another key, the shared bucket keeps what this claim spent.
        rooms.load("".into(), 4.0, 0);
        assert_eq!(rooms.room("c"), Some(1), "c gets the last unit");
        rooms.took("c", 1);
        assert_eq!(rooms.room("d"), None, "the bucket is empty");
        assert_eq!(rooms.due_us(), Some(200_000), "one unit 0.2 s later");
        assert_eq!(rooms.spent(), vec![("".into(), 0.0)]);
        assert!(!rooms.full());
    }

    #[test]
    fn a_new_run_over_its_keys_limit_displaces_itself_or_the_oldest() {
        let limit = |strategy| Concurrency {
            max: 2,
            key: None,
            strategy,
        };
        let (a, b, c) = (RunId::new(), RunId::new(), RunId::new());
        let new = RunId::new();
        let full = [a, b, new];
        assert!(displaced(&limit(ConcurrencyStrategy::CancelNewest), new, &[a, new]).is_empty());
        assert!(displaced(&limit(ConcurrencyStrategy::Queue), new, &full).is_empty());
        assert_eq!(
            displaced(&limit(ConcurrencyStrategy::CancelNewest), new, &full),
            vec![new]
        );
        assert_eq!(
            displaced(
                &limit(ConcurrencyStrategy::CancelInProgress),
                new,
                &[a, b, c]
            ),
            vec![a, b]
        );
    }

    #[test]
    fn a_run_that_spends_more_than_the_limit_starts_from_a_full_bucket() {
        let limit = RateLimit {
            name: "big".into(),
            limit: 3,
            per: Duration::from_secs(1),
        };
        let mut rooms = Rooms::new(10).rate(limit, &spends("big", 5, true), 0);
        assert_eq!(rooms.room("k"), Some(1));
        rooms.took("k", 1);
        assert_eq!(rooms.room("k"), None);
        assert_eq!(rooms.spent(), vec![("k".into(), 0.0)]);
        assert_eq!(
            rooms.due_us(),
            Some(1_000_000),
            "full again (3 units) after 1 s"
        );
    }
}
