//! Vacuuming what the hot path leaves dead, without waiting for autovacuum:
//!
//! - **The queue's hot tables**: every claim deletes a `queue` row, every completion a `leases`
//!   row, and each delayed run passes through `timers`. The dead index entries they leave sit
//!   where the next claim (and the next earliest lease or timer) starts its index scan: until a
//!   vacuum removes them, every claim steps over all of them (a million dead `queue` rows cost a
//!   claim ~6 ms even once marked dead, against 0.04 ms after a vacuum). Vacuumed after every
//!   [`VACUUM_EVERY`] runs claimed.
//! - **`runs`**: a claim and a completion each update a run's row, leaving two dead versions.
//!   Since `0019_finished.sql` most of these updates are made in place (HOT: no index covers a
//!   column they change) and their dead versions are pruned within the page; an update that
//!   finds no room in its page still writes an entry in every index. Measured before that
//!   migration, when every update did: beside a million finished runs never vacuumed,
//!   PostgreSQL spent 108 µs of CPU per drained run against 78.5 right after a vacuum of
//!   `runs`, and between two vacuums the dead versions of the runs claimed since cost ~25 %
//!   more PostgreSQL CPU per run with 100,000 runs' worth. Vacuumed after every
//!   [`VACUUM_RUNS_EVERY`] runs claimed, or a tenth of the table's rows once that is more: a
//!   vacuum reads each of its indexes whole, so its cost grows with the table, and so does the
//!   spacing.
//!
//! PostgreSQL's autovacuum comes by only after a fifth of a table has died, or never where it is
//! turned off. Each store counts the runs it claimed and vacuums in the background, one vacuum of
//! each kind at a time.

use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs claimed by this store between two vacuums of the hot tables: with ~6 ns per dead
/// index entry stepped over and a vacuum costing tens of milliseconds on a large queue, about
/// where the two costs per run meet.
pub(super) const VACUUM_EVERY: u64 = 20_000;

/// Runs claimed by this store between two vacuums of `runs`, at least (a vacuum of a million
/// runs holding two million dead versions took 2.7 s here; one every 100,000 runs finds a tenth
/// of that to remove).
pub(super) const VACUUM_RUNS_EVERY: u64 = 100_000;

/// What a [`Vacuum`] vacuums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tables {
    /// `queue`, `leases`, `timers`.
    Queue,
    /// `runs`.
    Runs,
}

impl Tables {
    /// `SKIP_LOCKED`: another replica's vacuum of a table (or autovacuum's) is not waited for.
    /// `INDEX_CLEANUP ON`: PostgreSQL would skip the indexes when few pages hold dead rows, and
    /// the indexes are the point. `TRUNCATE OFF`: giving the empty pages at a table's end back
    /// to the file system takes an exclusive lock on the table, which claims would wait for;
    /// the next inserts reuse those pages anyway.
    fn statement(self) -> &'static str {
        match self {
            Tables::Queue => {
                "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF) queue, leases, timers"
            }
            Tables::Runs => "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF) runs",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tables::Queue => "the queue tables",
            Tables::Runs => "the runs table",
        }
    }
}

/// After a failed vacuum (no privilege on the tables, a lost connection), the next try waits
/// this long.
const AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Counts the runs claimed and starts a vacuum, in a task of its own, once enough were.
#[derive(Debug)]
pub(super) struct Vacuum {
    tables: Tables,
    /// The fewest runs claimed between two vacuums (0: never).
    every: u64,
    /// Runs claimed between two vacuums now: `every`, or for `runs` a tenth of its rows once
    /// that is more.
    spacing: AtomicU64,
    claimed: AtomicU64,
    /// A vacuum runs, or waits out [`AFTER_FAILURE`] after one failed: none starts meanwhile.
    running: AtomicBool,
    /// Vacuums completed (for tests).
    done: AtomicU64,
}

impl Vacuum {
    pub(super) fn new(tables: Tables, every: u64) -> Arc<Vacuum> {
        Arc::new(Vacuum {
            tables,
            every,
            spacing: AtomicU64::new(every),
            claimed: AtomicU64::new(0),
            running: AtomicBool::new(false),
            done: AtomicU64::new(0),
        })
    }

    /// Counts `n` runs claimed; past the spacing, vacuums the tables in the background (one
    /// vacuum of them at a time per store).
    pub(super) fn claimed(self: &Arc<Self>, n: usize, pool: &PgPool) {
        if n == 0 || self.every == 0 {
            return;
        }
        let total = self.claimed.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total < self.spacing.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.claimed.store(0, Ordering::Relaxed);
        let (this, pool) = (self.clone(), pool.clone());
        tokio::spawn(async move {
            match sqlx::raw_sql(this.tables.statement()).execute(&pool).await {
                Ok(_) => {
                    this.done.fetch_add(1, Ordering::Relaxed);
                    if this.tables == Tables::Runs {
                        this.respace(&pool).await;
                    }
                }
                // The store closed meanwhile: nothing to say.
                Err(_) if pool.is_closed() => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = AFTER_FAILURE.as_secs(),
                        tables = this.tables.name(),
                        "a vacuum failed; the dead rows it would have removed slow claims until \
                         PostgreSQL's autovacuum removes them");
                    tokio::time::sleep(AFTER_FAILURE).await;
                }
            }
            this.running.store(false, Ordering::Release);
        });
    }

    /// Spaces the next vacuums of `runs` by a tenth of its rows (the estimate the vacuum just
    /// left in `pg_class`), or `every` while that is more.
    async fn respace(&self, pool: &PgPool) {
        let rows: Result<f32, _> =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'runs'::regclass")
                .fetch_one(pool)
                .await;
        if let Ok(rows) = rows {
            let tenth = (rows.max(0.0) / 10.0) as u64;
            self.spacing.store(tenth.max(self.every), Ordering::Relaxed);
        }
    }

    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}
