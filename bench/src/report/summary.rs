//! Medians over the runs of one mode.

use super::*;
use crate::phases::Rate;

/// The median (mean of the two middle values for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of one figure over every run (`None` when a run lacks it).
pub(super) fn med(runs: &[Figures], f: impl Fn(&Figures) -> Option<f64>) -> Option<f64> {
    runs.iter().map(f).collect::<Option<Vec<f64>>>().map(median)
}

/// Medians of one kind of timer over the runs that measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Late {
    pub(super) p50: f64,
    pub(super) p99: f64,
    /// Samples, over all runs.
    pub(super) n: usize,
    /// Runs it is the median of.
    pub(super) runs: usize,
    /// Timers missed, over all runs.
    pub(super) missed: usize,
}

pub(super) fn late(runs: &[Figures], f: impl Fn(&Timers) -> Option<Lateness>) -> Option<Late> {
    let all: Vec<Lateness> = runs.iter().filter_map(|r| f(r.timers.as_ref()?)).collect();
    if all.is_empty() {
        return None;
    }
    Some(Late {
        p50: median(all.iter().map(|l| l.p50).collect()),
        p99: median(all.iter().map(|l| l.p99).collect()),
        n: all.iter().map(|l| l.n).sum(),
        runs: all.len(),
        missed: all.iter().map(|l| l.missed).sum(),
    })
}

/// The timer figures of one mode (medians over the runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TimerSummary {
    pub(super) delayed: Option<Late>,
    pub(super) sleep: Option<Late>,
    pub(super) suspended_sleep: Option<Late>,
    pub(super) cron: Option<Late>,
    pub(super) load_delayed: Option<Late>,
    pub(super) load_cron: Option<Late>,
    /// Median drain rate of the load (jobs/s).
    pub(super) load_drain: f64,
}

impl TimerSummary {
    pub(super) fn worst_p99_at_rest(&self) -> Option<f64> {
        [self.delayed, self.sleep, self.suspended_sleep, self.cron]
            .iter()
            .flatten()
            .map(|l| l.p99)
            .reduce(f64::max)
    }
}

/// Medians over the runs of one mode.
#[derive(Debug)]
pub(super) struct Summary {
    pub(super) enqueue_bulk: f64,
    pub(super) enqueue_single: f64,
    pub(super) drain: f64,
    pub(super) latency: Option<(f64, f64, f64)>,
    pub(super) rss: Option<(f64, f64)>,
    /// CPU seconds of every process of the mode during the drain (a diagnostic).
    pub(super) drain_cpu: Option<f64>,
    /// Of which PostgreSQL's (postgres modes).
    pub(super) drain_cpu_postgres: Option<f64>,
    /// Cost per run of the drain, each figure the median over the runs (`cost.rs`).
    pub(super) cost: Option<CostPerRun>,
    pub(super) timers: Option<TimerSummary>,
    pub(super) durations: Value,
    /// `--backlog N` (`n` = N).
    pub(super) backlog: Option<ScaleSummary>,
    /// `--history N` (`n` = N finished runs; the drain is of `--tasks` runs).
    pub(super) history: Option<ScaleSummary>,
    /// `--limited K` (`n` = K keys; the drain is of `--tasks` runs).
    pub(super) limited: Option<ScaleSummary>,
}

/// One scale phase of one mode, against the plain drain of the same runs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScaleSummary {
    pub(super) n: u64,
    /// Median drain rate, jobs/s.
    pub(super) drain: f64,
    /// Median bulk-enqueue rate, jobs/s.
    pub(super) enqueue_bulk: f64,
    /// `drain` over the median plain drain.
    pub(super) ratio: f64,
    /// Each run's scale drain over the same run's plain drain.
    pub(super) ratio_per_run: Vec<f64>,
    pub(super) cost: Option<CostPerRun>,
}

/// The scale phase that `get` picks from each run: (N, its bulk enqueue, its drain).
fn scale(
    runs: &[Figures],
    plain: f64,
    get: impl Fn(&Figures) -> Option<(u64, Rate, &phases::Drain)>,
) -> Option<ScaleSummary> {
    let all: Vec<(u64, Rate, &phases::Drain, &Figures)> = runs
        .iter()
        .filter_map(|r| get(r).map(|(n, e, d)| (n, e, d, r)))
        .collect();
    let (n, _, _, _) = all.first()?;
    let drain = median(all.iter().map(|a| a.2.rate.per_s()).collect());
    let costs: Vec<CostPerRun> = all
        .iter()
        .filter_map(|a| Some(a.2.cost.as_ref()?.per_run()))
        .collect();
    Some(ScaleSummary {
        n: *n,
        drain,
        enqueue_bulk: median(all.iter().map(|a| a.1.per_s()).collect()),
        ratio: drain / plain,
        ratio_per_run: all
            .iter()
            .map(|a| a.2.rate.per_s() / a.3.drain.rate.per_s())
            .collect(),
        cost: (!costs.is_empty()).then(|| CostPerRun::median(&costs, median)),
    })
}

/// CPU seconds of the worker process plus the engine processes (if separate) plus PostgreSQL
/// during the drain.
pub(super) fn drain_cpu(r: &Figures) -> Option<f64> {
    Some(
        r.drain.cpu_worker_s?
            + r.drain.cpu_engine_s.unwrap_or(0.0)
            + r.drain.cpu_postgres_s.unwrap_or(0.0),
    )
}

/// The medians of the cost per run of one drain of each run (`None` when no run measured it).
pub(super) fn cost_medians(
    runs: &[Figures],
    drain: impl Fn(&Figures) -> Option<&phases::Drain>,
) -> Option<CostPerRun> {
    let all: Vec<CostPerRun> = runs
        .iter()
        .filter_map(|r| Some(drain(r)?.cost.as_ref()?.per_run()))
        .collect();
    (!all.is_empty()).then(|| CostPerRun::median(&all, median))
}

pub(super) fn summarize(runs: &[Figures]) -> Summary {
    let secs =
        |f: &dyn Fn(&Figures) -> Option<Duration>| med(runs, |r| f(r).map(|d| d.as_secs_f64()));
    let latency = match (
        med(runs, |r| r.latency.map(|l| l.p50)),
        med(runs, |r| r.latency.map(|l| l.p95)),
        med(runs, |r| r.latency.map(|l| l.p99)),
    ) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => None,
    };
    let rss = match (
        med(runs, |r| r.peak_rss_mb.map(|m| m.0)),
        med(runs, |r| r.peak_rss_mb.map(|m| m.1)),
    ) {
        (Some(w), Some(e)) => Some((w, e)),
        _ => None,
    };
    let timers =
        med(runs, |r| r.timers.map(|t| t.load_drain.per_s())).map(|load_drain| TimerSummary {
            delayed: late(runs, |t| t.delayed),
            sleep: late(runs, |t| t.sleep),
            suspended_sleep: late(runs, |t| t.suspended_sleep),
            cron: late(runs, |t| t.cron),
            load_delayed: late(runs, |t| t.load_delayed),
            load_cron: late(runs, |t| t.load_cron),
            load_drain,
        });
    let drain = med(runs, |r| Some(r.drain.rate.per_s())).unwrap_or(f64::NAN);
    Summary {
        enqueue_bulk: med(runs, |r| Some(r.enqueue_bulk.per_s())).unwrap_or(f64::NAN),
        enqueue_single: med(runs, |r| Some(r.enqueue_single.per_s())).unwrap_or(f64::NAN),
        drain,
        latency,
        rss,
        drain_cpu: med(runs, drain_cpu),
        drain_cpu_postgres: med(runs, |r| r.drain.cpu_postgres_s),
        cost: cost_medians(runs, |r| Some(&r.drain)),
        timers,
        durations: json!({
            "enqueue_bulk": round3(secs(&|r| Some(r.enqueue_bulk.elapsed))),
            "enqueue_single": round3(secs(&|r| Some(r.enqueue_single.elapsed))),
            "drain": round3(secs(&|r| Some(r.drain.rate.elapsed))),
            "drain_last_body_start": round3(secs(&|r| Some(r.drain.bodies))),
            "latency_phase": round3(secs(&|r| r.latency.map(|l| l.span))),
        }),
        backlog: scale(runs, drain, |r| {
            let b = r.backlog.as_ref()?;
            Some((b.drain.rate.count, b.enqueue, &b.drain))
        }),
        history: scale(runs, drain, |r| {
            let h = r.history.as_ref()?;
            Some((h.finished, h.enqueue_bulk, &h.drain))
        }),
        limited: scale(runs, drain, |r| {
            let l = r.limited.as_ref()?;
            Some((l.keys, l.enqueue, &l.drain))
        }),
    }
}
