//! Vacuuming the queue's hot tables: every claim deletes a `queue` row, every completion a
//! `leases` row, and each delayed run passes through `timers`. The dead index entries they leave
//! sit where the next claim (and the next earliest lease or timer) starts its index scan: until
//! a vacuum removes them, every claim steps over all of them (a million dead `queue` rows cost
//! a claim ~6 ms even once marked dead, against 0.04 ms after a vacuum). PostgreSQL's
//! autovacuum comes by only after a fifth of a table has died, or never where it is turned off;
//! so the store vacuums these three tables itself after every [`VACUUM_EVERY`] runs it claimed.

use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs claimed by this store between two vacuums of the hot tables: with ~6 ns per dead
/// index entry stepped over and a vacuum costing tens of milliseconds on a large queue, about
/// where the two costs per run meet.
pub(super) const VACUUM_EVERY: u64 = 20_000;

/// After a failed vacuum (no privilege on the tables, a lost connection), the next try waits
/// this long.
const AFTER_FAILURE: Duration = Duration::from_secs(60);

/// `SKIP_LOCKED`: another replica's vacuum of a table (or autovacuum's) is not waited for.
/// `INDEX_CLEANUP ON`: PostgreSQL would skip the indexes when few pages hold dead rows, and the
/// indexes are the point.
const VACUUM: &str = "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) queue, leases, timers";

/// Counts the runs claimed and starts a vacuum, in a task of its own, once enough were.
#[derive(Debug)]
pub(super) struct Vacuum {
    every: u64,
    claimed: AtomicU64,
    /// A vacuum runs, or waits out [`AFTER_FAILURE`] after one failed: none starts meanwhile.
    running: AtomicBool,
    /// Vacuums completed (for tests).
    done: AtomicU64,
}

impl Vacuum {
    pub(super) fn new(every: u64) -> Arc<Vacuum> {
        Arc::new(Vacuum {
            every,
            claimed: AtomicU64::new(0),
            running: AtomicBool::new(false),
            done: AtomicU64::new(0),
        })
    }

    /// Counts `n` runs claimed; past the threshold, vacuums the hot tables in the background
    /// (one vacuum at a time per store).
    pub(super) fn claimed(self: &Arc<Self>, n: usize, pool: &PgPool) {
        if n == 0 || self.every == 0 {
            return;
        }
        let total = self.claimed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total < self.every || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.claimed.store(0, Ordering::Relaxed);
        let (this, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            match sqlx::raw_sql(VACUUM).execute(&pool).await {
                Ok(_) => {
                    this.done.fetch_add(1, Ordering::Relaxed);
                }
                // The store closed meanwhile: nothing to say.
                Err(_) if pool.is_closed() => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = AFTER_FAILURE.as_secs(),
                        "vacuuming the queue tables failed; their dead rows slow claims until \
                         PostgreSQL's autovacuum removes them");
                    tokio::time::sleep(AFTER_FAILURE).await;
                }
            }
            this.running.store(false, Ordering::Release);
        });
    }

    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}
