//! The measured phases of one benchmark run (BENCH.md), over any [`Client`].

use crate::cost;
use crate::mode::Target;
use crate::pg;
use anyhow::{bail, Context as _, Result};
use owlclaw::{Client, Context, ListFilter, RunStatus};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Jobs of the `enqueue_single` figure.
pub(crate) const SINGLE_JOBS: u64 = 2_000;
/// Jobs per `enqueue_bulk` call.
pub(crate) const BULK_CHUNK: u64 = 1_000;
/// Slots of the one worker that drains (the protocol's concurrency; `--slots` overrides it for
/// a labelled, tuned row).
pub(crate) const DEFAULT_SLOTS: u32 = 10;
/// Latency phase: one job every `LATENCY_EVERY` ...
pub(crate) const LATENCY_EVERY: Duration = Duration::from_millis(10);
/// ... `LATENCY_JOBS` times (10 s).
pub(crate) const LATENCY_JOBS: u64 = 1_000;
/// A phase that makes no progress for this long has failed.
pub(crate) const STALL: Duration = Duration::from_secs(60);

/// The job of the protocol: `{ "i": n, "t": enqueue wall-clock in microseconds }`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Job {
    i: u64,
    t: u64,
}

impl Job {
    pub(crate) fn new(i: u64) -> Job {
        Job { i, t: now_us() }
    }
}

/// Task bodies started so far (every phase).
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// Whether bodies record their queue-to-start latency (only during the latency phase, so the
/// drain pays no lock).
static RECORDING: AtomicBool = AtomicBool::new(false);
/// Queue-to-start latencies in µs, recorded while `RECORDING`.
static LATENCIES_US: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Task bodies of the no-op started so far, in this process.
pub(crate) fn started() -> usize {
    STARTED.load(Ordering::Relaxed)
}

/// Wall-clock time in µs since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The benchmark's job: records when its body starts, and returns at once.
#[owlclaw::task(name = "bench-noop")]
async fn noop(_ctx: Context, job: Job) -> anyhow::Result<()> {
    if RECORDING.load(Ordering::Relaxed) {
        let started = now_us();
        LATENCIES_US
            .lock()
            .unwrap()
            .push(started.saturating_sub(job.t));
    }
    STARTED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs of one key of [`limited`] that may run at once.
pub(crate) const LIMIT_PER_KEY: u32 = 5;

/// [`Job`] with a concurrency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyedJob {
    i: u64,
    t: u64,
    k: String,
}

/// The no-op under a concurrency limit: at most [`LIMIT_PER_KEY`] runs per key `k` at once.
#[owlclaw::task(name = "bench-limited", concurrency = 5, concurrency_key = "k")]
async fn limited(_ctx: Context, _job: KeyedJob) -> anyhow::Result<()> {
    STARTED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Which task a drain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// The protocol's no-op.
    Plain,
    /// The no-op under a concurrency limit of [`LIMIT_PER_KEY`] per key.
    Limited,
}

/// `jobs` runs of [`limited`] over `keys` keys (run `i` has key `i % keys`), enqueued in bulk
/// as [`enqueue_bulk`] does.
pub(crate) async fn enqueue_bulk_limited(client: &Client, jobs: u64, keys: u64) -> Result<Rate> {
    let t0 = Instant::now();
    let mut next = 0;
    while next < jobs {
        let end = (next + BULK_CHUNK).min(jobs);
        let batch = (next..end).map(|i| KeyedJob {
            i,
            t: now_us(),
            k: format!("key-{}", i % keys),
        });
        let handles = client
            .enqueue_bulk::<limited>(batch)
            .await
            .context("enqueue_bulk (limited)")?;
        if handles.len() as u64 != end - next {
            bail!(
                "enqueue_bulk of {} jobs returned {} runs",
                end - next,
                handles.len()
            );
        }
        next = end;
    }
    Ok(Rate {
        count: jobs,
        elapsed: t0.elapsed(),
    })
}

/// `count` jobs in `elapsed`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Rate {
    pub(crate) count: u64,
    pub(crate) elapsed: Duration,
}

impl Rate {
    pub(crate) fn per_s(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// `enqueue_single`: `jobs` jobs, one `noop::enqueue(..).await` each, one after the other.
pub(crate) async fn enqueue_single(client: &Client, jobs: u64) -> Result<Rate> {
    let t0 = Instant::now();
    for i in 0..jobs {
        noop::enqueue(client, Job::new(i))
            .await
            .context("enqueue (single)")?;
    }
    Ok(Rate {
        count: jobs,
        elapsed: t0.elapsed(),
    })
}

/// `enqueue_bulk`: `jobs` jobs through `Client::enqueue_bulk`, `BULK_CHUNK` per call (one
/// transaction per call).
pub(crate) async fn enqueue_bulk(client: &Client, jobs: u64) -> Result<Rate> {
    let t0 = Instant::now();
    let mut next = 0;
    while next < jobs {
        let end = (next + BULK_CHUNK).min(jobs);
        let handles = client
            .enqueue_bulk::<noop>((next..end).map(Job::new))
            .await
            .context("enqueue_bulk")?;
        if handles.len() as u64 != end - next {
            bail!(
                "enqueue_bulk of {} jobs returned {} runs",
                end - next,
                handles.len()
            );
        }
        next = end;
    }
    Ok(Rate {
        count: jobs,
        elapsed: t0.elapsed(),
    })
}

/// Runs in `status`, counted a page of 1,000 at a time.
pub(crate) async fn count_runs(client: &Client, status: RunStatus) -> Result<u64> {
    let mut count = 0;
    let mut cursor = None;
    loop {
        let page = client
            .list(ListFilter {
                status: Some(status),
                limit: Some(1000),
                cursor,
                ..ListFilter::default()
            })
            .await
            .context("listing runs")?;
        count += page.runs.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(count),
        }
    }
}

/// Whether some run is `status` (one cheap indexed query).
async fn any_run(client: &Client, status: RunStatus) -> Result<bool> {
    let page = client
        .list(ListFilter {
            status: Some(status),
            limit: Some(1),
            ..ListFilter::default()
        })
        .await
        .context("listing runs")?;
    Ok(!page.runs.is_empty())
}

/// Whether every run in the store is terminal.
async fn all_terminal(client: &Client) -> Result<bool> {
    // Nothing is enqueued meanwhile and the no-op never fails, so runs only move
    // queued → running → succeeded: "none queued", then "none running" means all are done.
    for status in [RunStatus::Queued, RunStatus::Running, RunStatus::Scheduled] {
        if any_run(client, status).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Polls the store every 2 ms until it shows no unfinished run (once every task body started);
/// fails after [`STALL`].
pub(crate) async fn wait_terminal(client: &Client, what: &str) -> Result<()> {
    let poll_since = Instant::now();
    while !all_terminal(client).await? {
        if poll_since.elapsed() > STALL {
            bail!(
                "{what}: every task body ran, but the store still shows unfinished runs after {}s",
                STALL.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Fails unless the store holds no queued, running or scheduled run (a `--database` left with
/// pending work would distort the drain).
pub(crate) async fn ensure_idle(client: &Client, url: &str) -> Result<()> {
    if !all_terminal(client).await? {
        bail!("{url} holds queued, running or scheduled runs: drain or purge it first, or omit --database");
    }
    Ok(())
}

/// What the drain measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Drain {
    /// N / (worker start → the store shows every run terminal).
    pub(crate) rate: Rate,
    /// Worker start → the N-th task body started (in-process counter).
    pub(crate) bodies: Duration,
    /// CPU time (user + system, s) used during the measured drain by this process (the worker;
    /// in lite mode the engine too) and by the engine process (server mode). A diagnostic; the
    /// same as `cost`, in seconds.
    pub(crate) cpu_worker_s: Option<f64>,
    /// The engine processes' together (server modes).
    pub(crate) cpu_engine_s: Option<f64>,
    /// The PostgreSQL server's processes working for the database (postgres modes; see
    /// [`pg::PgProbe`]).
    #[serde(default)]
    pub(crate) cpu_postgres_s: Option<f64>,
    /// CPU and context switches per process, and PostgreSQL's transactions, over the same
    /// interval (`cost.rs`).
    #[serde(default)]
    pub(crate) cost: Option<cost::Cost>,
}

/// A pause in the bodies' starts this long is reported as it ends (a drain starts thousands a
/// second): when, and after how many starts, so that it can be matched with the processes' logs.
const PAUSE_REPORTED: Duration = Duration::from_secs(1);

/// Waits until `STARTED` reaches `target`; fails when it stops moving for `STALL`.
pub(crate) async fn wait_started(target: usize, what: &str) -> Result<()> {
    let base = STARTED.load(Ordering::Relaxed);
    let mut last = base;
    let mut last_move = Instant::now();
    loop {
        let now = STARTED.load(Ordering::Relaxed);
        if now != last {
            let paused = last_move.elapsed();
            if paused >= PAUSE_REPORTED {
                eprintln!(
                    "owlclaw-bench: {what}: no task body started for {:.2}s, after {} of {} \
                     (resumed at {} UTC)",
                    paused.as_secs_f64(),
                    last - base,
                    target - base,
                    owlclaw::Utc::now().format("%H:%M:%S%.3f")
                );
            }
            last = now;
            last_move = Instant::now();
        }
        if now >= target {
            return Ok(());
        }
        if last_move.elapsed() > STALL {
            bail!(
                "{what}: stuck at {now} of {target} task bodies started for {}s",
                STALL.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How `slots` are shared by `workers` workers: as evenly as possible, the first ones getting
/// the remainder; workers that would get none are not started.
pub(crate) fn split_slots(slots: u32, workers: usize) -> Vec<u32> {
    let n = (workers.max(1) as u32).min(slots.max(1));
    (0..n)
        .map(|i| slots / n + u32::from(i < slots % n))
        .collect()
}

/// Starts the draining worker(s) of `target`, serving the no-op: one worker with `slots` slots,
/// or in `postgres2` one per replica sharing the `slots` (all in this one process).
pub(crate) async fn start_drain_workers(
    target: &Target,
    slots: u32,
    workload: Workload,
) -> Result<Vec<owlclaw::Worker>> {
    let clients = &target.worker_clients;
    let shares = split_slots(slots, clients.len());
    let mut workers = Vec::new();
    for (i, (client, share)) in clients.iter().zip(shares).enumerate() {
        let name = if clients.len() > 1 {
            format!("owlclaw-bench-{}", (b'a' + i as u8) as char)
        } else {
            "owlclaw-bench".to_string()
        };
        let worker = client.worker(name).slots(share);
        let worker = match workload {
            Workload::Plain => worker.task::<noop>(),
            Workload::Limited => worker.task::<limited>(),
        };
        workers.push(worker.start().await.context("starting the worker")?);
    }
    Ok(workers)
}

/// What this process, the engine processes and PostgreSQL's processes had spent at one moment.
struct Mark {
    worker: Option<cost::Usage>,
    engines: Vec<Option<cost::ProcSample>>,
    postgres: Option<cost::Sample>,
}

/// Reads a [`Mark`]. This process is read nearest to the clock: last when `before` the drain,
/// first after it (reading PostgreSQL opens a TLS connection, which costs this process CPU).
async fn mark(target: &Target, before: bool) -> Mark {
    let worker = (!before).then(cost::this_process).flatten();
    let engines = target
        .engine_pids()
        .into_iter()
        .map(cost::ProcSample::read)
        .collect();
    let postgres = match &target.probe {
        Some(p) => p.processes().await,
        None => None,
    };
    Mark {
        worker: if before { cost::this_process() } else { worker },
        engines,
        postgres,
    }
}

/// The database's `xact_commit` once PostgreSQL has published every transaction that ended
/// before `since` (postgres modes; `None` otherwise): it waits until
/// [`pg::STATS_PUBLISHED_WITHIN`] has passed since `since`, then reads.
async fn published_xact_commit(target: &Target, since: Instant) -> Option<u64> {
    let probe = target.probe.as_ref()?;
    tokio::time::sleep(pg::STATS_PUBLISHED_WITHIN.saturating_sub(since.elapsed())).await;
    probe.xact_commit().await
}

/// `drain`: with `jobs` runs queued, starts the worker(s) with `slots` slots in all and measures
/// until the store shows every run terminal; then checks that `expect_succeeded` runs are
/// `succeeded`. Returns the running worker(s) (warm, for the latency phase). What this process,
/// the engine processes (server modes) and PostgreSQL (postgres modes) spent over the measured
/// interval is also taken (see `cost.rs`); in the postgres modes the database's transactions
/// are read before the clock starts and [`pg::STATS_PUBLISHED_WITHIN`] after the verification.
pub(crate) async fn drain(
    target: &Target,
    jobs: u64,
    slots: u32,
    expect_succeeded: u64,
    workload: Workload,
) -> Result<(Drain, Vec<owlclaw::Worker>)> {
    let client = &target.client;
    let base = STARTED.load(Ordering::Relaxed);
    let xact_before = match &target.probe {
        Some(p) => p.xact_commit().await,
        None => None,
    };
    let before = mark(target, true).await;
    let t0 = Instant::now();
    let workers = start_drain_workers(target, slots, workload).await?;
    wait_started(base + jobs as usize, "drain").await?;
    let bodies = t0.elapsed();
    // The N-th body start is not the N-th completion: the last completions are still being
    // reported. Poll the store until it shows every run finished.
    wait_terminal(client, "drain").await?;
    let elapsed = t0.elapsed();
    let after = mark(target, false).await;
    let succeeded = count_runs(client, RunStatus::Succeeded).await?;
    if succeeded != expect_succeeded {
        let failed = count_runs(client, RunStatus::Failed).await?;
        let cancelled = count_runs(client, RunStatus::Cancelled).await?;
        bail!(
            "drain: the store shows {succeeded} succeeded runs, expected {expect_succeeded} \
             ({failed} failed, {cancelled} cancelled)"
        );
    }
    // After the verification: its listings are the last transactions of some connections.
    let xact_after = published_xact_commit(target, Instant::now()).await;
    let worker = before.worker.zip(after.worker).map(|(b, a)| a.since(b));
    let engines: Vec<cost::Usage> = before
        .engines
        .iter()
        .zip(&after.engines)
        .filter_map(|(b, a)| Some(a.as_ref()?.since(b.as_ref()?)))
        .collect();
    let postgres = match (&before.postgres, &after.postgres) {
        (Some(b), Some(a)) => Some(cost::spent(b, a)),
        _ => None,
    };
    let seconds = |u: cost::Usage| u.cpu_us as f64 / 1e6;
    Ok((
        Drain {
            rate: Rate {
                count: jobs,
                elapsed,
            },
            bodies,
            cpu_worker_s: worker.map(seconds),
            cpu_engine_s: (!engines.is_empty() && engines.len() == before.engines.len())
                .then(|| engines.iter().copied().map(seconds).sum()),
            cpu_postgres_s: postgres.map(seconds),
            cost: Some(cost::Cost {
                runs: jobs,
                worker,
                engines,
                postgres,
                xact_commit: xact_before
                    .zip(xact_after)
                    .map(|(b, a)| a.saturating_sub(b)),
            }),
        },
        workers,
    ))
}

/// Queue-to-start latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) jobs: u64,
    /// First enqueue → last enqueue.
    pub(crate) span: Duration,
    /// How long one `enqueue` call took (a diagnostic, not a protocol figure), p50 and p99 in ms.
    pub(crate) enqueue_call_p50: f64,
    pub(crate) enqueue_call_p99: f64,
}

/// The `q`-quantile of sorted values (nearest rank).
pub(crate) fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `latency`: with the worker warm and idle, one job every `LATENCY_EVERY`, `LATENCY_JOBS`
/// times; queue-to-start = body start − `t`.
pub(crate) async fn latency(client: &Client) -> Result<Latency> {
    // Let the worker go idle: last completions reported, poller back in its long poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    LATENCIES_US.lock().unwrap().clear();
    let base = STARTED.load(Ordering::Relaxed);
    RECORDING.store(true, Ordering::SeqCst);
    let mut tick = tokio::time::interval(LATENCY_EVERY);
    // A slow enqueue delays the next ones instead of causing a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let t0 = Instant::now();
    let mut span = Duration::ZERO;
    let mut calls_us = Vec::with_capacity(LATENCY_JOBS as usize);
    for i in 0..LATENCY_JOBS {
        tick.tick().await;
        span = t0.elapsed();
        let call = Instant::now();
        noop::enqueue(client, Job::new(i))
            .await
            .context("enqueue (latency)")?;
        calls_us.push(call.elapsed().as_micros() as u64);
    }
    calls_us.sort_unstable();
    let waited = wait_started(base + LATENCY_JOBS as usize, "latency").await;
    RECORDING.store(false, Ordering::SeqCst);
    waited?;
    let mut us = std::mem::take(&mut *LATENCIES_US.lock().unwrap());
    if us.len() as u64 != LATENCY_JOBS {
        bail!(
            "latency: recorded {} starts for {LATENCY_JOBS} jobs",
            us.len()
        );
    }
    us.sort_unstable();
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(Latency {
        p50: ms(quantile(&us, 0.50)),
        p95: ms(quantile(&us, 0.95)),
        p99: ms(quantile(&us, 0.99)),
        max: ms(*us.last().unwrap_or(&0)),
        jobs: LATENCY_JOBS,
        span,
        enqueue_call_p50: ms(quantile(&calls_us, 0.50)),
        enqueue_call_p99: ms(quantile(&calls_us, 0.99)),
    })
}

#[cfg(test)]
mod tests {
    use super::{quantile, split_slots};

    #[test]
    fn slots_are_shared() {
        assert_eq!(split_slots(10, 1), [10]);
        assert_eq!(split_slots(10, 2), [5, 5]);
        assert_eq!(split_slots(11, 2), [6, 5]);
        assert_eq!(split_slots(1, 2), [1]);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.50), 50);
        assert_eq!(quantile(&v, 0.95), 95);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
    }
}
