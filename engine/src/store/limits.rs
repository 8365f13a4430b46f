//! Limited claims, the part both stores share: how many runs each key may still start under a
//! concurrency limit (runs leased per key) or a rate limit (units left in the key's bucket).
//! Each store walks its queue key by key with its own SQL (see `migrations/*/0007_concurrency.sql`
//! and `0008_rate_limits.sql`).

use super::{Inserted, NewRun};
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::task::{Concurrency, ConcurrencyStrategy};
use owlclaw_core::wire::RunSnapshot;
use owlclaw_core::{RunId, RunStatus};
use std::collections::{BTreeSet, HashMap};

/// The room left under a task's limit while one claim walks its keys.
#[derive(Debug)]
pub(super) struct Rooms {
    left: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Running {
        max: i64,
        running: HashMap<String, i64>,
    },
    Rate {
        limit: RateLimit,
        /// Units one run spends.
        units: f64,
        now_us: i64,
        /// Units in the buckets read (refilled up to now) or spent from; a key absent has a full
        /// bucket.
        tokens: HashMap<String, f64>,
        spent: BTreeSet<String>,
        /// The earliest time a key found without room has its units.
        due_us: Option<i64>,
    },
}

impl Rooms {
    /// A claim of up to `left` runs under a concurrency limit of `max`, with `running` runs of
    /// each key leased already.
    pub(super) fn running(max: u32, running: Vec<(String, i64)>, left: usize) -> Rooms {
        Rooms {
            left,
            kind: Kind::Running {
                max: i64::from(max),
                running: running.into_iter().collect(),
            },
        }
    }

    /// A claim of up to `left` runs that spend `units` each of `limit`, at `now_us`. Load the
    /// buckets stored for the keys before asking for their room.
    pub(super) fn rate(limit: RateLimit, units: u32, now_us: i64, left: usize) -> Rooms {
        Rooms {
            left,
            kind: Kind::Rate {
                units: f64::from(limit.units_needed(units)),
                limit,
                now_us,
                tokens: HashMap::new(),
                spent: BTreeSet::new(),
                due_us: None,
            },
        }
    }

    /// The bucket of `key` as stored: `tokens` units at `at_us`.
    pub(super) fn load(&mut self, key: String, tokens: f64, at_us: i64) {
        if let Kind::Rate {
            limit,
            now_us,
            tokens: all,
            ..
        } = &mut self.kind
        {
            all.insert(key, limit.refill(tokens, at_us, *now_us));
        }
    }

    /// How many queued runs of `key` the claim may take: `None` when the key has no room (or
    /// the claim is full). A rate-limited key without room notes when it will have some.
    pub(super) fn room(&mut self, key: &str) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let free = match &mut self.kind {
            Kind::Running { max, running } => *max - running.get(key).copied().unwrap_or(0),
            Kind::Rate {
                limit,
                units,
                now_us,
                tokens,
                due_us,
                ..
            } => {
                let have = tokens.get(key).copied().unwrap_or(f64::from(limit.limit));
                let free = (have / *units).floor() as i64;
                if free <= 0 {
                    note_due(due_us, limit, *now_us, have, *units);
                }
                free
            }
        };
        (free > 0).then(|| (free as usize).min(self.left))
    }

    /// The claim took `n` runs of `key`. A rate-limited key left without the units of another
    /// run notes when it will have them.
    pub(super) fn took(&mut self, key: &str, n: usize) {
        self.left = self.left.saturating_sub(n);
        match &mut self.kind {
            Kind::Running { running, .. } => {
                *running.entry(key.to_string()).or_default() += n as i64
            }
            Kind::Rate {
                limit,
                units,
                now_us,
                tokens,
                spent,
                due_us,
            } if n > 0 => {
                let have = tokens
                    .entry(key.to_string())
                    .or_insert(f64::from(limit.limit));
                *have -= *units * n as f64;
                spent.insert(key.to_string());
                if *have < *units {
                    // The key may have more runs queued: note when it can pay for the next.
                    note_due(due_us, limit, *now_us, *have, *units);
                }
            }
            Kind::Rate { .. } => {}
        }
    }

    /// How many runs the claim still wants.
    #[cfg(feature = "postgres")]
    pub(super) fn left(&self) -> usize {
        self.left
    }

    /// Whether the claim has all it wants.
    pub(super) fn full(&self) -> bool {
        self.left == 0
    }

    /// The buckets to store: each key spent from, with the units it has left (at the claim's
    /// time).
    pub(super) fn spent(&self) -> Vec<(String, f64)> {
        match &self.kind {
            Kind::Rate { tokens, spent, .. } => {
                spent.iter().map(|k| (k.clone(), tokens[k])).collect()
            }
            Kind::Running { .. } => Vec::new(),
        }
    }

    /// When a rate-limited key left with queued runs will have its units (µs since the epoch).
    pub(super) fn due_us(&self) -> Option<i64> {
        match &self.kind {
            Kind::Rate { due_us, .. } => *due_us,
            Kind::Running { .. } => None,
        }
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

    #[test]
    fn a_key_has_the_room_its_limit_leaves_within_what_the_claim_wants() {
        let mut rooms = Rooms::running(2, vec![("a".into(), 2), ("b".into(), 1)], 3);
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
        let mut rooms = Rooms::rate(limit, 2, 1_000_000, 100);
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
        let mut rooms = Rooms::rate(limit, 5, 0, 10);
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
