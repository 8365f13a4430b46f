//! Timer lateness (BENCH.md): runs that are due at a given time, and how late their code starts
//! (or resumes) past it. Four kinds of timers, at rest, and two of them while a drain runs:
//!
//! - **delayed** runs, scheduled with a `run_at`: lateness = body start − `run_at`;
//! - **sleep**: a durable `ctx.sleep_for(d)` below the worker's suspend threshold (it sleeps in
//!   place): lateness = the moment the code after the sleep runs − the sleep's committed
//!   `wake_at` (read from the run's steps afterwards);
//! - **suspended_sleep**: the same with a worker whose suspend threshold (100 ms) is below `d`:
//!   the run is parked and the engine re-dispatches it at `wake_at`;
//! - **cron**: a `* * * * * *` task: lateness = body start − its tick (from the run's
//!   idempotency key `cron:<schedule>:<tick µs>`).
//!
//! Each part uses a fresh store (and engine processes) of its own, like `enqueue_single`.

use crate::mode::{Mode, Target};
use crate::phases::{self, now_us, Rate};
use anyhow::{bail, Context as _, Result};
use owlclaw::{Client, Context, DateTime, RunId, RunStatus, ScheduleRequest, Task as _, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Delayed runs per measurement ...
pub(crate) const DELAYED_RUNS: u64 = 300;
/// ... due from this long after they are scheduled (at rest) ...
const DELAYED_FROM_MS: i64 = 200;
/// ... to this long, evenly spread.
const DELAYED_TO_MS: i64 = 2_000;
/// Under load, the delayed runs are due within the first second of the drain.
const LOAD_DELAYED_FROM_MS: i64 = 100;
const LOAD_DELAYED_TO_MS: i64 = 1_000;
/// Durable sleeps per measurement (in place, and suspended) ...
pub(crate) const SLEEP_RUNS: u64 = 100;
/// ... of 0.5 s to 2 s, evenly spread.
const SLEEP_FROM_MS: u64 = 500;
const SLEEP_TO_MS: u64 = 2_000;
/// The suspend threshold of the worker that measures suspended sleeps.
pub(crate) const SUSPEND_THRESHOLD: Duration = Duration::from_millis(100);
/// How long the cron ticks are measured at rest.
pub(crate) const CRON_WINDOW: Duration = Duration::from_secs(10);
/// The no-ops drained while the "under load" figures are taken.
pub(crate) const LOAD_JOBS: u64 = 20_000;
/// Slots of the worker that serves the timer runs (the protocol's concurrency).
const TIMER_SLOTS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Delayed,
    Sleep,
    Suspended,
    Cron,
}

/// One timer run's start (or resume after its sleep), and its due time when the body knows it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    kind: Kind,
    run: RunId,
    at_us: i64,
    due_us: Option<i64>,
}

static SAMPLES: Mutex<Vec<Sample>> = Mutex::new(Vec::new());

fn record(kind: Kind, run: RunId, due_us: Option<i64>) {
    let at_us = now_us() as i64;
    SAMPLES.lock().unwrap().push(Sample {
        kind,
        run,
        at_us,
        due_us,
    });
}

fn samples(kind: Kind) -> Vec<Sample> {
    SAMPLES
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.kind == kind)
        .copied()
        .collect()
}

/// The input of a delayed run: its due time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Due {
    i: u64,
    due_us: i64,
}

/// A delayed run: records its start.
#[owlclaw::task(name = "bench-timer-delayed")]
async fn delayed(ctx: Context, due: Due) -> anyhow::Result<()> {
    record(Kind::Delayed, ctx.run_id(), Some(due.due_us));
    Ok(())
}

/// A durable sleep of `ms`, then records the moment it resumed.
#[owlclaw::task(name = "bench-timer-sleep")]
async fn sleep_in_place(ctx: Context, ms: u64) -> anyhow::Result<()> {
    ctx.sleep_for(Duration::from_millis(ms)).await?;
    record(Kind::Sleep, ctx.run_id(), None);
    Ok(())
}

/// The same, served by a worker that suspends sleeps over [`SUSPEND_THRESHOLD`].
#[owlclaw::task(name = "bench-timer-sleep-suspended")]
async fn sleep_suspended(ctx: Context, ms: u64) -> anyhow::Result<()> {
    ctx.sleep_for(Duration::from_millis(ms)).await?;
    record(Kind::Suspended, ctx.run_id(), None);
    Ok(())
}

/// Fires every second (registered by the worker that serves it).
#[owlclaw::task(name = "bench-timer-cron", cron = "* * * * * *")]
async fn cron_tick(ctx: Context) -> anyhow::Result<()> {
    record(Kind::Cron, ctx.run_id(), None);
    Ok(())
}

/// Lateness percentiles of one kind of timer, in ms (negative: early).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Lateness {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    /// Timers due in the window whose run never started (cron ticks not fired or not run).
    #[serde(default)]
    pub(crate) missed: usize,
}

fn lateness(mut us: Vec<i64>, missed: usize) -> Option<Lateness> {
    if us.is_empty() {
        return None;
    }
    us.sort_unstable();
    let ms = |v: i64| v as f64 / 1000.0;
    Some(Lateness {
        n: us.len(),
        p50: ms(phases::quantile(&us, 0.50)),
        p99: ms(phases::quantile(&us, 0.99)),
        max: ms(*us.last().unwrap_or(&0)),
        missed,
    })
}

/// What the timer phase measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Timers {
    pub(crate) delayed: Option<Lateness>,
    pub(crate) sleep: Option<Lateness>,
    pub(crate) suspended_sleep: Option<Lateness>,
    pub(crate) cron: Option<Lateness>,
    /// While `LOAD_JOBS` no-ops drain.
    pub(crate) load_delayed: Option<Lateness>,
    pub(crate) load_cron: Option<Lateness>,
    /// The drain that was the load: `LOAD_JOBS` in this time (to the last body start).
    pub(crate) load_drain: Rate,
}

/// The timer phase of one run in `mode`: at rest, then under load, each in a fresh store.
pub(crate) async fn measure(mode: Mode, pg_url: &str, say: &dyn Fn(String)) -> Result<Timers> {
    let target = mode.open(None, "timers", pg_url).await?;
    let delayed = delayed_at_rest(&target).await?;
    let sleep = sleeps(&target, false).await?;
    let suspended_sleep = sleeps(&target, true).await?;
    let cron = cron_at_rest(&target).await?;
    target.close().await?;
    say(format!(
        "timer lateness at rest: {}",
        describe(&[
            ("delayed", delayed),
            ("sleep", sleep),
            ("suspended_sleep", suspended_sleep),
            ("cron", cron),
        ])
    ));

    let target = mode.open(None, "timers-load", pg_url).await?;
    let (load_delayed, load_cron, load_drain) = under_load(&target, say).await?;
    target.close().await?;
    say(format!(
        "timer lateness under load ({} no-ops drained in {:.3}s = {:.0}/s meanwhile, by a worker \
         of their own): {}",
        load_drain.count,
        load_drain.elapsed.as_secs_f64(),
        load_drain.per_s(),
        describe(&[("delayed", load_delayed), ("cron", load_cron)])
    ));
    Ok(Timers {
        delayed,
        sleep,
        suspended_sleep,
        cron,
        load_delayed,
        load_cron,
        load_drain,
    })
}

/// `kind n=.. p50=..ms p99=..ms max=..ms, ...` for a progress line.
fn describe(parts: &[(&str, Option<Lateness>)]) -> String {
    parts
        .iter()
        .map(|(name, l)| match l {
            Some(l) => format!(
                "{name} n={} p50={:.2}ms p99={:.2}ms max={:.2}ms{}",
                l.n,
                l.p50,
                l.p99,
                l.max,
                if l.missed > 0 {
                    format!(" missed={}", l.missed)
                } else {
                    String::new()
                }
            ),
            None => format!("{name} n=0"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until `count` samples of `kind` are recorded; fails after `patience`.
async fn wait_samples(kind: Kind, count: usize, patience: Duration) -> Result<()> {
    let since = Instant::now();
    loop {
        let have = samples(kind).len();
        if have >= count {
            return Ok(());
        }
        if since.elapsed() > patience {
            bail!(
                "timers: {have} of {count} {kind:?} runs started within {}s",
                patience.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn at(us: i64) -> Result<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(us).context("time out of range")
}

/// Schedules `DELAYED_RUNS` delayed runs (one bulk call), due from `from_ms` to `to_ms` after
/// now.
async fn schedule_delayed(client: &Client, from_ms: i64, to_ms: i64) -> Result<()> {
    let base = now_us() as i64;
    let step_us = (to_ms - from_ms) * 1000 / DELAYED_RUNS as i64;
    let reqs = (0..DELAYED_RUNS)
        .map(|i| {
            let due_us = base + from_ms * 1000 + i as i64 * step_us;
            Ok(ScheduleRequest {
                task: delayed::SPEC.name.to_string(),
                input: serde_json::to_value(Due { i, due_us })?,
                run_at: Some(at(due_us)?),
                ..ScheduleRequest::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let scheduled = client
        .submit_bulk(reqs)
        .await
        .context("scheduling delayed runs")?;
    if scheduled.len() as u64 != DELAYED_RUNS {
        bail!(
            "scheduling {DELAYED_RUNS} delayed runs returned {}",
            scheduled.len()
        );
    }
    Ok(())
}

/// Delayed runs with an idle worker.
async fn delayed_at_rest(target: &Target) -> Result<Option<Lateness>> {
    SAMPLES.lock().unwrap().clear();
    let worker = target
        .timer_worker_client()
        .worker("owlclaw-bench-timers")
        .slots(TIMER_SLOTS)
        .task::<delayed>()
        .start()
        .await
        .context("starting the timer worker")?;
    // Let it settle into its long poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    schedule_delayed(&target.client, DELAYED_FROM_MS, DELAYED_TO_MS).await?;
    let waited = wait_samples(
        Kind::Delayed,
        DELAYED_RUNS as usize,
        Duration::from_millis(DELAYED_TO_MS as u64) + phases::STALL,
    )
    .await;
    worker
        .shutdown()
        .await
        .context("stopping the timer worker")?;
    waited?;
    let late = samples(Kind::Delayed)
        .iter()
        .filter_map(|s| Some(s.at_us - s.due_us?))
        .collect();
    Ok(lateness(late, 0))
}

/// `SLEEP_RUNS` durable sleeps, in place (a worker with one slot per run and the default
/// suspend threshold) or suspended (a worker with `TIMER_SLOTS` slots and a threshold below the
/// shortest sleep). Lateness is measured from the `wake_at` the SDK committed.
async fn sleeps(target: &Target, suspended: bool) -> Result<Option<Lateness>> {
    SAMPLES.lock().unwrap().clear();
    let builder = target.timer_worker_client().worker("owlclaw-bench-sleeps");
    let worker = if suspended {
        builder
            .slots(TIMER_SLOTS)
            .suspend_threshold(SUSPEND_THRESHOLD)
            .task::<sleep_suspended>()
    } else {
        builder.slots(SLEEP_RUNS as u32).task::<sleep_in_place>()
    }
    .start()
    .await
    .context("starting the sleep worker")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ms =
        (0..SLEEP_RUNS).map(|i| SLEEP_FROM_MS + i * (SLEEP_TO_MS - SLEEP_FROM_MS) / SLEEP_RUNS);
    let client = &target.client;
    let scheduled = if suspended {
        client.enqueue_bulk::<sleep_suspended>(ms).await
    } else {
        client.enqueue_bulk::<sleep_in_place>(ms).await
    }
    .context("enqueueing sleeps")?;
    if scheduled.len() as u64 != SLEEP_RUNS {
        bail!(
            "enqueueing {SLEEP_RUNS} sleeps returned {}",
            scheduled.len()
        );
    }
    let kind = if suspended {
        Kind::Suspended
    } else {
        Kind::Sleep
    };
    let waited = wait_samples(
        kind,
        SLEEP_RUNS as usize,
        Duration::from_millis(SLEEP_TO_MS) + phases::STALL,
    )
    .await;
    worker
        .shutdown()
        .await
        .context("stopping the sleep worker")?;
    waited?;
    let mut late = Vec::new();
    for s in samples(kind) {
        let run = client
            .status(s.run)
            .await
            .context("reading a sleep's run")?;
        let wake = run
            .steps
            .iter()
            .find(|st| st.name == "sleep")
            .and_then(|st| st.output.as_ref())
            .and_then(|o| serde_json::from_value::<DateTime<Utc>>(o["wake_at"].clone()).ok())
            .with_context(|| format!("run {} has no sleep step with a wake_at", s.run))?;
        late.push(s.at_us - wake.timestamp_micros());
    }
    Ok(lateness(late, 0))
}

/// The tick of a cron run, from its idempotency key `cron:<schedule>:<tick µs>` (else its
/// `run_at`).
async fn cron_tick_us(client: &Client, run: RunId) -> Result<i64> {
    let snap = client.status(run).await.context("reading a cron run")?;
    Ok(snap
        .idempotency_key
        .as_deref()
        .and_then(|k| k.rsplit(':').next()?.parse::<i64>().ok())
        .unwrap_or_else(|| snap.run_at.timestamp_micros()))
}

/// Cron lateness of the ticks in `[from_us, to_us]`, and how many whole seconds in that window
/// have no run that started.
async fn cron_lateness(client: &Client, from_us: i64, to_us: i64) -> Result<Option<Lateness>> {
    let mut late = Vec::new();
    let mut ticks = Vec::new();
    for s in samples(Kind::Cron) {
        let tick = cron_tick_us(client, s.run).await?;
        if (from_us..=to_us).contains(&tick) {
            late.push(s.at_us - tick);
            ticks.push(tick);
        }
    }
    let expected = (from_us.div_euclid(1_000_000) + 1..=to_us.div_euclid(1_000_000))
        .filter(|sec| !ticks.contains(&(sec * 1_000_000)))
        .count();
    Ok(lateness(late, expected))
}

/// A `* * * * * *` cron for `CRON_WINDOW`, with an otherwise idle worker.
async fn cron_at_rest(target: &Target) -> Result<Option<Lateness>> {
    SAMPLES.lock().unwrap().clear();
    let worker = target
        .timer_worker_client()
        .worker("owlclaw-bench-cron")
        .slots(TIMER_SLOTS)
        .task::<cron_tick>()
        .start()
        .await
        .context("starting the cron worker")?;
    // Registered: ticks after now are due.
    let from_us = now_us() as i64;
    tokio::time::sleep(CRON_WINDOW).await;
    let to_us = now_us() as i64;
    // Late runs of the last ticks may still start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker
        .shutdown()
        .await
        .context("stopping the cron worker")?;
    cron_lateness(&target.client, from_us, to_us).await
}

/// Delayed runs and cron ticks while `LOAD_JOBS` no-ops drain: the no-ops are drained as in the
/// drain phase (one worker, the protocol's slots; one per replica in `postgres2`), the timer runs
/// by a worker of their own in the same process, so their lateness is the engine's and the
/// store's under load, not a wait behind 20,000 runs queued earlier at the same priority.
async fn under_load(
    target: &Target,
    say: &dyn Fn(String),
) -> Result<(Option<Lateness>, Option<Lateness>, Rate)> {
    SAMPLES.lock().unwrap().clear();
    let client = &target.client;
    phases::enqueue_bulk(client, LOAD_JOBS).await?;
    let timer_worker = target
        .timer_worker_client()
        .worker("owlclaw-bench-timers")
        .slots(TIMER_SLOTS)
        .task::<delayed>()
        .task::<cron_tick>()
        .start()
        .await
        .context("starting the timer worker")?;
    // The cron runs before the load starts.
    wait_samples(Kind::Cron, 1, phases::STALL).await?;
    let from_us = now_us() as i64;
    schedule_delayed(client, LOAD_DELAYED_FROM_MS, LOAD_DELAYED_TO_MS).await?;
    let base = phases::started();
    let t0 = Instant::now();
    let workers =
        phases::start_drain_workers(target, phases::DEFAULT_SLOTS, phases::Workload::Plain).await?;
    phases::wait_started(base + LOAD_JOBS as usize, "drain under load").await?;
    let load = Rate {
        count: LOAD_JOBS,
        elapsed: t0.elapsed(),
    };
    let to_us = now_us() as i64;
    let waited = wait_samples(
        Kind::Delayed,
        DELAYED_RUNS as usize,
        Duration::from_millis(LOAD_DELAYED_TO_MS as u64) + phases::STALL,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for w in workers {
        w.shutdown().await.context("stopping the worker")?;
    }
    timer_worker
        .shutdown()
        .await
        .context("stopping the timer worker")?;
    waited?;
    // Only the delayed runs due while the drain ran count as under load.
    let late = samples(Kind::Delayed)
        .iter()
        .filter_map(|s| {
            let due = s.due_us?;
            (from_us..=to_us).contains(&due).then_some(s.at_us - due)
        })
        .collect();
    let delayed = lateness(late, 0);
    say(stages(client, from_us, to_us).await?);
    let cron = cron_lateness(client, from_us, to_us).await?;
    Ok((delayed, cron, load))
}

/// Where the lateness of the delayed runs due from `from_us` to `to_us` went, from their events
/// (the engine's clock, which is this machine's): due → queued (the maintenance pass that
/// promoted the timer began), queued → running (the claim began), running → the body started
/// in the worker. A progress line, not a protocol figure.
async fn stages(client: &Client, from_us: i64, to_us: i64) -> Result<String> {
    let (mut promoted, mut claimed, mut started) = (vec![], vec![], vec![]);
    for s in samples(Kind::Delayed) {
        let Some(due) = s.due_us.filter(|d| (from_us..=to_us).contains(d)) else {
            continue;
        };
        let events = client
            .events(s.run)
            .await
            .context("reading a run's events")?;
        let at = |to: RunStatus| {
            events
                .iter()
                .find(|e| e.to == to)
                .map(|e| e.at.timestamp_micros())
        };
        if let (Some(queued), Some(running)) = (at(RunStatus::Queued), at(RunStatus::Running)) {
            promoted.push(queued - due);
            claimed.push(running - queued);
            started.push(s.at_us - running);
        }
    }
    let part = |name: &str, us: Vec<i64>| match lateness(us, 0) {
        Some(l) => format!("{name} p50={:.2}ms p99={:.2}ms", l.p50, l.p99),
        None => format!("{name} n=0"),
    };
    Ok(format!(
        "delayed runs under load by stage: {}, {}, {}",
        part("due→queued", promoted),
        part("queued→claimed", claimed),
        part("claimed→body", started)
    ))
}
