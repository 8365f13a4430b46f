//! The scale phases (BENCH.md "scale"), each in a fresh store of its own, after the protocol's
//! phases and before the timers:
//!
//! - `--backlog N`: N runs enqueued in bulk (`BULK_CHUNK` per call) before the worker starts,
//!   then drained exactly as the protocol's drain is (one worker, `--slots` slots);
//! - `--history N`: N *finished* runs put in the store first — enqueued in bulk and drained by a
//!   worker of [`FILL_SLOTS`] slots, not measured: every run is a real one that went through
//!   the engine (events, leases, indexes) — then the protocol's drain of `--tasks` runs.
//!
//! - `--limited K`: the `--tasks` runs of the no-op under a concurrency limit of
//!   [`phases::LIMIT_PER_KEY`] per key, over K keys, enqueued in bulk and drained as the
//!   protocol's drain is: what the limited claim path costs.
//!
//! Each is reported against the plain drain of the same run (a fresh, empty store).

use crate::mode::Mode;
use crate::phases::{self, Drain, Rate, Workload};
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Slots of the worker that finishes the history runs (not measured: as fast as this machine
/// goes, ~3× the protocol's 10 slots in lite mode).
pub(crate) const FILL_SLOTS: u32 = 100;

/// The longest wait for the history fill's vacuums to end.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// `--backlog N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Backlog {
    /// The bulk enqueue of the N runs.
    pub(crate) enqueue: Rate,
    /// Their drain (`drain.rate.count` = N).
    pub(crate) drain: Drain,
}

/// `--history N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct History {
    /// Finished (succeeded) runs in the store before the drain.
    pub(crate) finished: u64,
    /// How long putting them there took (bulk enqueue and drain; not a figure).
    pub(crate) fill: Duration,
    /// How long the fill's last vacuums went on after it (postgres modes; not a figure).
    #[serde(default)]
    pub(crate) settle: Duration,
    /// The bulk enqueue of the `--tasks` runs, on top of the history.
    pub(crate) enqueue_bulk: Rate,
    /// Their drain.
    pub(crate) drain: Drain,
    /// The dashboard's reads with the history in the store, through the client (HTTP in server
    /// mode): the median of a few calls of each, in milliseconds.
    #[serde(default)]
    pub(crate) pages: Vec<(String, f64)>,
}

/// Times each read the dashboard's pages make, `REPEATS` times, and keeps the median (ms).
async fn page_times(client: &owlclaw::Client) -> Result<Vec<(String, f64)>> {
    use owlclaw::{ListFilter, RunStatus};
    const REPEATS: usize = 5;
    let newest = ListFilter {
        limit: Some(50),
        ..ListFilter::default()
    };
    let page = client.list(newest.clone()).await?;
    let second = ListFilter {
        cursor: page.next_cursor.clone(),
        ..newest.clone()
    };
    let by = |status: RunStatus| ListFilter {
        status: Some(status),
        limit: Some(50),
        ..ListFilter::default()
    };
    let task = page.runs.first().map(|r| r.task.clone());
    let mut out = Vec::new();
    macro_rules! time {
        ($name:expr, $call:expr) => {{
            let mut ms = Vec::with_capacity(REPEATS);
            for _ in 0..REPEATS {
                let t = Instant::now();
                $call;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            out.push(($name.to_string(), ms[REPEATS / 2]));
        }};
    }
    time!("runs page (newest 50)", client.list(newest.clone()).await?);
    time!("runs page 2 (cursor)", client.list(second.clone()).await?);
    time!(
        "runs by status succeeded",
        client.list(by(RunStatus::Succeeded)).await?
    );
    time!(
        "runs by status failed (none)",
        client.list(by(RunStatus::Failed)).await?
    );
    time!(
        "runs by task and status",
        client
            .list(ListFilter {
                task: task.clone(),
                ..by(RunStatus::Succeeded)
            })
            .await?
    );
    if let Some(r) = page.runs.first() {
        time!("run detail", client.status(r.id).await?);
        time!("run events", client.events(r.id).await?);
    }
    time!(
        "count, no filter",
        client.count(ListFilter::default()).await?
    );
    time!("count queued", client.count(by(RunStatus::Queued)).await?);
    time!(
        "count succeeded",
        client.count(by(RunStatus::Succeeded)).await?
    );
    // What the dashboard's runs page asks: counts that stop at 10,000.
    time!(
        "count, no filter, at most 10,000",
        client.count_at_most(ListFilter::default(), 10_000).await?
    );
    time!(
        "count succeeded, at most 10,000",
        client
            .count_at_most(by(RunStatus::Succeeded), 10_000)
            .await?
    );
    time!("workers", client.workers().await?);
    Ok(out)
}

/// `--limited K`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Limited {
    /// Concurrency keys.
    pub(crate) keys: u64,
    /// The bulk enqueue of the runs.
    pub(crate) enqueue: Rate,
    /// Their drain.
    pub(crate) drain: Drain,
}

/// `--limited keys`: a fresh store, `tasks` runs of the limited no-op over `keys` keys enqueued
/// in bulk, then drained by one worker of `slots` slots.
pub(crate) async fn limited(
    mode: Mode,
    pg_url: &str,
    tasks: u64,
    keys: u64,
    slots: u32,
) -> Result<Limited> {
    let target = mode.open(None, "limited", pg_url).await?;
    let enqueue = phases::enqueue_bulk_limited(&target.client, tasks, keys)
        .await
        .context("limited")?;
    let (drain, workers) = phases::drain(&target, tasks, slots, tasks, Workload::Limited)
        .await
        .context("limited")?;
    for worker in workers {
        worker.shutdown().await.context("stopping the worker")?;
    }
    target.close().await?;
    Ok(Limited {
        keys,
        enqueue,
        drain,
    })
}

/// `--backlog runs`: a fresh store, `runs` enqueued in bulk, then drained by one worker of
/// `slots` slots (as the protocol's drain, verification included).
pub(crate) async fn backlog(mode: Mode, pg_url: &str, runs: u64, slots: u32) -> Result<Backlog> {
    let target = mode.open(None, "backlog", pg_url).await?;
    let enqueue = phases::enqueue_bulk(&target.client, runs)
        .await
        .context("backlog")?;
    let (drain, workers) = phases::drain(&target, runs, slots, runs, Workload::Plain)
        .await
        .context("backlog")?;
    for worker in workers {
        worker.shutdown().await.context("stopping the worker")?;
    }
    target.close().await?;
    Ok(Backlog { enqueue, drain })
}

/// `--history finished`: a fresh store holding `finished` succeeded runs, then the protocol's
/// bulk enqueue and drain of `tasks` runs by one worker of `slots` slots.
pub(crate) async fn history(
    mode: Mode,
    pg_url: &str,
    finished: u64,
    tasks: u64,
    slots: u32,
) -> Result<History> {
    let target = mode.open(None, "history", pg_url).await?;
    let t0 = Instant::now();
    phases::enqueue_bulk(&target.client, finished)
        .await
        .context("history")?;
    let base = phases::started();
    let workers = phases::start_drain_workers(&target, FILL_SLOTS, Workload::Plain).await?;
    phases::wait_started(base + finished as usize, "history").await?;
    phases::wait_terminal(&target.client, "history").await?;
    for worker in workers {
        worker.shutdown().await.context("stopping the worker")?;
    }
    let fill = t0.elapsed();
    // The store holds a history "already": a vacuum the fill's claims started (the engine
    // vacuums `runs` after every 100,000 claims) finishes before the measured drain, as it
    // would have long before in a store that grew over days. The drain's own count on.
    //
    // And it starts, as the plain drain does, right after a checkpoint. The fill writes
    // gigabytes of WAL within minutes, which starts a checkpoint every few seconds, the last of
    // them still writing out the fill's pages (paced over minutes) while the drain runs: the
    // checkpointer's CPU counts in PostgreSQL's, and every page the drain touches first since
    // that checkpoint began is logged whole. The plain drain's store is created right after
    // the previous phase's was dropped, which checkpoints; a `CHECKPOINT` here ends the fill's.
    let settle = match &target.probe {
        Some(probe) => {
            let waited = probe.wait_vacuums(SETTLE_LIMIT).await.context("history")?;
            probe.checkpoint().await.context("history")?;
            waited
        }
        None => Duration::ZERO,
    };
    let enqueue_bulk = phases::enqueue_bulk(&target.client, tasks)
        .await
        .context("history")?;
    let (drain, workers) = phases::drain(&target, tasks, slots, finished + tasks, Workload::Plain)
        .await
        .context("history")?;
    for worker in workers {
        worker.shutdown().await.context("stopping the worker")?;
    }
    let pages = page_times(&target.client).await.context("history pages")?;
    target.close().await?;
    Ok(History {
        finished,
        fill,
        settle,
        enqueue_bulk,
        drain,
        pages,
    })
}
