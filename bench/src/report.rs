//! The summary of the runs: medians per mode, the side-by-side table and the ratios to the first
//! mode when several modes were measured, the aims, the protocol's last lines (BENCH.md), and the
//! `--json` object.

use crate::mode::Mode;
use crate::timers::{self, Lateness, Timers};
use crate::{phases, Args, Figures};
use serde_json::{json, Value};
use std::time::Duration;

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
fn med(runs: &[Figures], f: impl Fn(&Figures) -> Option<f64>) -> Option<f64> {
    runs.iter().map(f).collect::<Option<Vec<f64>>>().map(median)
}

/// Medians of one kind of timer over the runs that measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Late {
    p50: f64,
    p99: f64,
    /// Samples, over all runs.
    n: usize,
    /// Runs it is the median of.
    runs: usize,
    /// Timers missed, over all runs.
    missed: usize,
}

fn late(runs: &[Figures], f: impl Fn(&Timers) -> Option<Lateness>) -> Option<Late> {
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
struct TimerSummary {
    delayed: Option<Late>,
    sleep: Option<Late>,
    suspended_sleep: Option<Late>,
    cron: Option<Late>,
    load_delayed: Option<Late>,
    load_cron: Option<Late>,
    /// Median drain rate of the load (jobs/s).
    load_drain: f64,
}

impl TimerSummary {
    fn worst_p99_at_rest(&self) -> Option<f64> {
        [self.delayed, self.sleep, self.suspended_sleep, self.cron]
            .iter()
            .flatten()
            .map(|l| l.p99)
            .reduce(f64::max)
    }
}

/// Medians over the runs of one mode.
#[derive(Debug)]
struct Summary {
    enqueue_bulk: f64,
    enqueue_single: f64,
    drain: f64,
    latency: Option<(f64, f64, f64)>,
    rss: Option<(f64, f64)>,
    /// CPU seconds of every process of the mode during the drain (a diagnostic).
    drain_cpu: Option<f64>,
    /// Of which PostgreSQL's (postgres modes).
    drain_cpu_postgres: Option<f64>,
    timers: Option<TimerSummary>,
    durations: Value,
}

/// CPU seconds of the worker process plus the engine processes (if separate) plus PostgreSQL
/// during the drain.
fn drain_cpu(r: &Figures) -> Option<f64> {
    Some(
        r.drain.cpu_worker_s?
            + r.drain.cpu_engine_s.unwrap_or(0.0)
            + r.drain.cpu_postgres_s.unwrap_or(0.0),
    )
}

fn summarize(runs: &[Figures]) -> Summary {
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
    Summary {
        enqueue_bulk: med(runs, |r| Some(r.enqueue_bulk.per_s())).unwrap_or(f64::NAN),
        enqueue_single: med(runs, |r| Some(r.enqueue_single.per_s())).unwrap_or(f64::NAN),
        drain: med(runs, |r| Some(r.drain.rate.per_s())).unwrap_or(f64::NAN),
        latency,
        rss,
        drain_cpu: med(runs, drain_cpu),
        drain_cpu_postgres: med(runs, |r| r.drain.cpu_postgres_s),
        timers,
        durations: json!({
            "enqueue_bulk": round3(secs(&|r| Some(r.enqueue_bulk.elapsed))),
            "enqueue_single": round3(secs(&|r| Some(r.enqueue_single.elapsed))),
            "drain": round3(secs(&|r| Some(r.drain.rate.elapsed))),
            "drain_last_body_start": round3(secs(&|r| Some(r.drain.bodies))),
            "latency_phase": round3(secs(&|r| r.latency.map(|l| l.span))),
        }),
    }
}

fn round3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

fn round2(v: f64) -> Value {
    json!((v * 100.0).round() / 100.0)
}

fn lateness_json(l: Option<Lateness>) -> Value {
    l.map_or(Value::Null, |l| {
        json!({
            "n": l.n, "p50": round2(l.p50), "p99": round2(l.p99), "max": round2(l.max),
            "missed": l.missed,
        })
    })
}

fn timers_run_json(t: &Timers) -> Value {
    json!({
        "at_rest": {
            "delayed": lateness_json(t.delayed),
            "sleep": lateness_json(t.sleep),
            "suspended_sleep": lateness_json(t.suspended_sleep),
            "cron": lateness_json(t.cron),
        },
        "under_load": {
            "delayed": lateness_json(t.load_delayed),
            "cron": lateness_json(t.load_cron),
            "load_jobs": t.load_drain.count,
            "load_drain": t.load_drain.per_s().round() as u64,
        },
    })
}

fn late_json(l: Option<Late>) -> Value {
    l.map_or(Value::Null, |l| {
        json!({
            "p50": round2(l.p50), "p99": round2(l.p99), "n": l.n, "runs": l.runs,
            "missed": l.missed,
        })
    })
}

fn run_json(r: &Figures) -> Value {
    json!({
        "enqueue_bulk": r.enqueue_bulk.per_s().round() as u64,
        "enqueue_single": r.enqueue_single.per_s().round() as u64,
        "drain": r.drain.rate.per_s().round() as u64,
        "latency_ms": r.latency.map(|l| json!({
            "p50": round2(l.p50), "p95": round2(l.p95), "p99": round2(l.p99), "max": round2(l.max),
            "enqueue_call_p50": round2(l.enqueue_call_p50), "enqueue_call_p99": round2(l.enqueue_call_p99),
        })),
        "peak_rss_mb": r.peak_rss_mb.map(|(w, e)| json!({
            "worker": round2(w),
            "engine": round2(e),
            "engines_drain_phase": r.engine_rss_mb.iter().map(|&m| round2(m)).collect::<Vec<_>>(),
        })),
        "drain_cpu_s": {
            "worker": r.drain.cpu_worker_s.map_or(Value::Null, round2),
            "engine": r.drain.cpu_engine_s.map_or(Value::Null, round2),
            "postgres": r.drain.cpu_postgres_s.map_or(Value::Null, round2),
        },
        "timer_lateness_ms": r.timers.as_ref().map_or(Value::Null, timers_run_json),
        "durations_s": {
            "enqueue_bulk": round3(Some(r.enqueue_bulk.elapsed.as_secs_f64())),
            "enqueue_single": round3(Some(r.enqueue_single.elapsed.as_secs_f64())),
            "drain": round3(Some(r.drain.rate.elapsed.as_secs_f64())),
            "drain_last_body_start": round3(Some(r.drain.bodies.as_secs_f64())),
            "latency_phase": round3(r.latency.map(|l| l.span.as_secs_f64())),
        },
    })
}

/// The JSON object of one mode (with a single `--mode`, the whole output but for `aims`).
fn mode_json(args: &Args, mode: Mode, runs: &[Figures]) -> Value {
    let s = summarize(runs);
    json!({
        "mode": mode.to_string(),
        "mode_description": mode.describe(),
        "tasks": args.tasks,
        "enqueue_single_jobs": phases::SINGLE_JOBS,
        "enqueue_bulk_chunk": phases::BULK_CHUNK,
        "worker_slots": args.slots,
        "configuration": args.configuration(),
        "latency_jobs": if args.skip_latency { 0 } else { phases::LATENCY_JOBS },
        "runs": runs.len(),
        "statistic": "median",
        "enqueue_bulk": s.enqueue_bulk.round() as u64,
        "enqueue_single": s.enqueue_single.round() as u64,
        "drain": s.drain.round() as u64,
        "latency_ms": s.latency.map(|(p50, p95, p99)| json!({
            "p50": round2(p50), "p95": round2(p95), "p99": round2(p99),
        })),
        "peak_rss_mb": s.rss.map(|(w, e)| json!({
            "worker": round2(w),
            "engine": round2(e),
            "same_process": mode == Mode::Lite,
            "engine_processes": mode.engine_processes(),
        })),
        "drain_cpu_s": s.drain_cpu.map_or(Value::Null, round2),
        "drain_cpu_postgres_s": s.drain_cpu_postgres.map_or(Value::Null, round2),
        "timer_lateness_ms": s.timers.map_or(Value::Null, |t| json!({
            "delayed": late_json(t.delayed),
            "sleep": late_json(t.sleep),
            "suspended_sleep": late_json(t.suspended_sleep),
            "cron": late_json(t.cron),
        })),
        "timer_lateness_under_load_ms": s.timers.map_or(Value::Null, |t| json!({
            "delayed": late_json(t.load_delayed),
            "cron": late_json(t.load_cron),
            "load_jobs": timers::LOAD_JOBS,
            "load_drain": t.load_drain.round() as u64,
        })),
        "durations_s": s.durations,
        "per_run": runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

fn pair(l: Option<Late>) -> String {
    match l {
        Some(l) => format!("p50={:.2} p99={:.2}", l.p50, l.p99),
        None => "p50=n/a p99=n/a".to_string(),
    }
}

/// The protocol's last lines (BENCH.md), each after `prefix`; then the timer lines, when the
/// timers were measured.
fn protocol_lines(s: &Summary, prefix: &str) -> Vec<String> {
    let mut lines = vec![
        format!("{prefix}enqueue_bulk: {:.0}/s", s.enqueue_bulk),
        format!("{prefix}enqueue_single: {:.0}/s", s.enqueue_single),
        format!("{prefix}drain: {:.0}/s", s.drain),
        match s.latency {
            Some((p50, p95, p99)) => {
                format!("{prefix}latency_ms p50={p50:.2} p95={p95:.2} p99={p99:.2}")
            }
            None => format!("{prefix}latency_ms p50=n/a p95=n/a p99=n/a"),
        },
        match s.rss {
            Some((w, e)) => format!("{prefix}peak_rss_mb worker={w:.1} engine={e:.1}"),
            None => format!("{prefix}peak_rss_mb worker=n/a engine=n/a"),
        },
    ];
    if let Some(t) = &s.timers {
        lines.push(format!(
            "{prefix}timer_lateness_ms delayed {} | sleep {} | suspended_sleep {} | cron {}",
            pair(t.delayed),
            pair(t.sleep),
            pair(t.suspended_sleep),
            pair(t.cron)
        ));
        lines.push(format!(
            "{prefix}timer_lateness_under_load_ms delayed {} | cron {}",
            pair(t.load_delayed),
            pair(t.load_cron)
        ));
    }
    lines
}

fn statistic(runs: usize) -> String {
    if runs > 1 {
        format!("median of {runs} runs")
    } else {
        "1 run".to_string()
    }
}

fn late_line(name: &str, l: Option<Late>) -> String {
    match l {
        Some(l) => format!(
            "{name} {:.2} / {:.2}{}",
            l.p50,
            l.p99,
            if l.missed > 0 {
                format!(" ({} missed)", l.missed)
            } else {
                String::new()
            }
        ),
        None => format!("{name} n/a"),
    }
}

/// The human-readable block of one mode.
fn human_block(args: &Args, mode: Mode, runs: &[Figures], s: &Summary) {
    println!(
        "owlclaw-bench, mode {mode} ({}), {} tasks, {}, configuration {}",
        mode.describe(),
        args.tasks,
        statistic(runs.len()),
        args.configuration()
    );
    println!(
        "enqueue: {:.0} tasks/s (bulk, {} per call), {:.0} tasks/s (single, one call each)",
        s.enqueue_bulk,
        phases::BULK_CHUNK,
        s.enqueue_single
    );
    println!(
        "drain: {:.0} tasks/s (one worker process, {} slots)",
        s.drain, args.slots
    );
    match s.latency {
        Some((p50, p95, p99)) => println!(
            "latency p50/p95/p99: {p50:.2} / {p95:.2} / {p99:.2} ms (queue-to-start, one job every {} ms)",
            phases::LATENCY_EVERY.as_millis()
        ),
        None => println!("latency p50/p95/p99: skipped"),
    }
    match s.rss {
        Some((w, _)) if mode == Mode::Lite => {
            println!("peak rss: {w:.1} MiB (worker and engine are one process in lite mode)")
        }
        Some((w, e)) => println!(
            "peak rss: worker {w:.1} MiB (this process), engine {e:.1} MiB (the engine server process{})",
            if mode.engine_processes() > 1 { "es, the largest" } else { "" }
        ),
        None => println!("peak rss: unknown (no /proc/self/status)"),
    }
    match &s.timers {
        Some(t) => {
            println!(
                "timer lateness p50 / p99 at rest: {}; {}; {}; {} ms",
                late_line("delayed", t.delayed),
                late_line("sleep", t.sleep),
                late_line("suspended sleep", t.suspended_sleep),
                late_line("cron", t.cron)
            );
            println!(
                "timer lateness p50 / p99 under load ({} no-ops draining at {:.0}/s): {}; {} ms",
                timers::LOAD_JOBS,
                t.load_drain,
                late_line("delayed", t.load_delayed),
                late_line("cron", t.load_cron)
            );
        }
        None => println!("timer lateness: skipped"),
    }
}

/// One aim of the issues, checked against the medians.
#[derive(Debug, Clone, PartialEq)]
struct Aim {
    mode: Mode,
    aim: String,
    value: String,
    met: bool,
}

fn aims(summaries: &[(Mode, Summary)]) -> Vec<Aim> {
    let lite = summaries.iter().find(|(m, _)| *m == Mode::Lite);
    let mut out = Vec::new();
    for (mode, s) in summaries {
        let mut aim = |aim: &str, value: String, met: bool| {
            out.push(Aim {
                mode: *mode,
                aim: aim.to_string(),
                value,
                met,
            })
        };
        match mode {
            Mode::Lite => {
                aim(
                    "drain >= 20,000/s",
                    format!("{:.0}/s", s.drain),
                    s.drain >= 20_000.0,
                );
                if let Some((p50, _, p99)) = s.latency {
                    aim(
                        "latency p50 <= 2 ms and p99 <= 10 ms",
                        format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
                        p50 <= 2.0 && p99 <= 10.0,
                    );
                }
            }
            Mode::Server => {
                if let Some((_, l)) = lite {
                    let r = s.drain / l.drain;
                    aim(
                        "drain within 2x of lite (server/lite >= 0.50)",
                        format!("{r:.2}"),
                        r >= 0.5,
                    );
                }
            }
            Mode::Postgres | Mode::Postgres2 => {
                aim(
                    "drain >= 5,000/s",
                    format!("{:.0}/s", s.drain),
                    s.drain >= 5_000.0,
                );
                if let Some((p50, p95, p99)) = s.latency {
                    aim(
                        "latency p99 <= 25 ms",
                        format!("p50 {p50:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms"),
                        p99 <= 25.0,
                    );
                }
            }
        }
        if let Some(worst) = s.timers.and_then(|t| t.worst_p99_at_rest()) {
            aim(
                "timer lateness p99 <= 20 ms at rest (worst of delayed, sleep, suspended_sleep, cron)",
                format!("{worst:.2} ms"),
                worst <= 20.0,
            );
        }
    }
    out
}

fn aims_json(aims: &[Aim]) -> Value {
    aims.iter()
        .map(
            |a| json!({ "mode": a.mode.to_string(), "aim": a.aim, "value": a.value, "met": a.met }),
        )
        .collect::<Vec<_>>()
        .into()
}

fn print_aims(aims: &[Aim]) {
    if aims.is_empty() {
        return;
    }
    println!("aims (medians, this 2-core machine):");
    for a in aims {
        println!(
            "  [{}] {}: {} — {}",
            a.mode,
            a.aim,
            a.value,
            if a.met { "met" } else { "MISSED" }
        );
    }
}

/// Ratios of one mode to the reference mode (the first): of the medians, and each run's (the runs
/// of all modes are interleaved, so run k of one mode is compared with run k of the other).
#[derive(Debug)]
struct Ratios {
    enqueue_bulk: f64,
    enqueue_single: f64,
    drain: f64,
    drain_per_run: Vec<f64>,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
}

fn ratios(reference: &[Figures], other: &[Figures]) -> Ratios {
    let (l, s) = (summarize(reference), summarize(other));
    Ratios {
        enqueue_bulk: s.enqueue_bulk / l.enqueue_bulk,
        enqueue_single: s.enqueue_single / l.enqueue_single,
        drain: s.drain / l.drain,
        drain_per_run: reference
            .iter()
            .zip(other)
            .map(|(l, s)| s.drain.rate.per_s() / l.drain.rate.per_s())
            .collect(),
        latency_p50: l.latency.zip(s.latency).map(|(l, s)| s.0 / l.0),
        latency_p99: l.latency.zip(s.latency).map(|(l, s)| s.2 / l.2),
    }
}

const NAME_W: usize = 27;
const CELL_W: usize = 13;
const RATIO_W: usize = 14;

/// One row of the side-by-side table: the figure, one cell per mode, and the ratios to the first
/// mode (one cell per other mode, empty when `ratios` is `None`).
fn row(name: &str, cells: &[String], ratios: Option<Vec<f64>>, ratio_cols: usize) -> String {
    let mut line = format!("| {name:<NAME_W$} |");
    for c in cells {
        line.push_str(&format!(" {c:>CELL_W$} |"));
    }
    match ratios {
        Some(rs) => {
            for r in rs {
                line.push_str(&format!(" {:>RATIO_W$} |", format!("{r:.2}")));
            }
        }
        None => {
            for _ in 0..ratio_cols {
                line.push_str(&format!(" {:>RATIO_W$} |", ""));
            }
        }
    }
    line
}

pub(crate) fn report(args: &Args, results: &[(Mode, Vec<Figures>)]) {
    let summaries: Vec<(Mode, Summary)> = results
        .iter()
        .map(|(m, runs)| (*m, summarize(runs)))
        .collect();
    let aims = aims(&summaries);
    // Ratios of every other mode to the first (lite, when it was measured).
    let reference = results.first();
    let others: Vec<(Mode, Ratios)> = match reference {
        Some((_, ref_runs)) => results[1..]
            .iter()
            .map(|(m, runs)| (*m, ratios(ref_runs, runs)))
            .collect(),
        None => Vec::new(),
    };
    let ref_mode = reference.map(|(m, _)| *m).unwrap_or(Mode::Lite);
    if args.json {
        let out = match results {
            [(mode, runs)] => {
                let mut out = mode_json(args, *mode, runs);
                out["aims"] = aims_json(&aims);
                out
            }
            _ => {
                let mut out = json!({
                    "modes": results.iter().map(|(m, _)| m.to_string()).collect::<Vec<_>>(),
                    "tasks": args.tasks,
                    "worker_slots": args.slots,
                    "configuration": args.configuration(),
                    "runs": args.runs,
                    "statistic": "median",
                });
                for (mode, runs) in results {
                    out[mode.to_string()] = mode_json(args, *mode, runs);
                }
                for (mode, r) in &others {
                    out[format!("ratio_{mode}_over_{ref_mode}")] = json!({
                        "of": "medians",
                        "enqueue_bulk": round3(Some(r.enqueue_bulk)),
                        "enqueue_single": round3(Some(r.enqueue_single)),
                        "drain": round3(Some(r.drain)),
                        "drain_per_run": r.drain_per_run.iter().map(|&x| round3(Some(x))).collect::<Vec<_>>(),
                        "drain_median_of_per_run": round3(Some(median(r.drain_per_run.clone()))),
                        "latency_p50": round3(r.latency_p50),
                        "latency_p99": round3(r.latency_p99),
                    });
                }
                out["aims"] = aims_json(&aims);
                out
            }
        };
        println!("{out}");
        return;
    }
    println!();
    if let [(mode, s)] = summaries.as_slice() {
        human_block(args, *mode, &results[0].1, s);
        println!();
        print_aims(&aims);
        println!();
        for line in protocol_lines(s, "") {
            println!("{line}");
        }
        return;
    }

    let names: Vec<String> = summaries.iter().map(|(m, _)| m.to_string()).collect();
    println!(
        "owlclaw-bench, modes {} (runs interleaved), {} tasks, {}, configuration {}",
        names.join(", "),
        args.tasks,
        statistic(args.runs as usize),
        args.configuration()
    );
    for (mode, _) in &summaries {
        println!("  {mode}: {}", mode.describe());
    }
    println!();
    let ratio_cols = others.len();
    println!("{}", {
        let mut head = format!("| {:<NAME_W$} |", "figure (median)");
        for n in &names {
            head.push_str(&format!(" {n:>CELL_W$} |"));
        }
        for (m, _) in &others {
            head.push_str(&format!(" {:>RATIO_W$} |", format!("{m}/{ref_mode}")));
        }
        head
    });
    println!(
        "|{}|{}{}",
        "-".repeat(NAME_W + 2),
        format!("{}:|", "-".repeat(CELL_W + 1)).repeat(names.len()),
        format!("{}:|", "-".repeat(RATIO_W + 1)).repeat(ratio_cols),
    );
    let cells = |f: &dyn Fn(&Summary) -> String| -> Vec<String> {
        summaries.iter().map(|(_, s)| f(s)).collect()
    };
    let na = || "n/a".to_string();
    let lat = |i: usize| {
        move |s: &Summary| {
            s.latency
                .map_or(na(), |l| format!("{:.2}", [l.0, l.1, l.2][i]))
        }
    };
    let rss = |i: usize| move |s: &Summary| s.rss.map_or(na(), |r| format!("{:.1}", [r.0, r.1][i]));
    let reference = &summaries[0].1;
    // The ratio of each other mode's figure to the reference's, if all are known.
    let ratio_of = |f: &dyn Fn(&Summary) -> Option<f64>| -> Option<Vec<f64>> {
        let r = f(reference)?;
        summaries[1..]
            .iter()
            .map(|(_, s)| Some(f(s)? / r))
            .collect()
    };
    let timer = |f: fn(&TimerSummary) -> Option<Late>| {
        move |s: &Summary| {
            s.timers
                .and_then(|t| f(&t))
                .map_or(na(), |l| format!("{:.2} / {:.2}", l.p50, l.p99))
        }
    };
    let mut lines = vec![
        row(
            "enqueue_bulk (jobs/s)",
            &cells(&|s| format!("{:.0}", s.enqueue_bulk)),
            ratio_of(&|s| Some(s.enqueue_bulk)),
            ratio_cols,
        ),
        row(
            "enqueue_single (jobs/s)",
            &cells(&|s| format!("{:.0}", s.enqueue_single)),
            ratio_of(&|s| Some(s.enqueue_single)),
            ratio_cols,
        ),
        row(
            "drain (jobs/s)",
            &cells(&|s| format!("{:.0}", s.drain)),
            ratio_of(&|s| Some(s.drain)),
            ratio_cols,
        ),
        row(
            "latency p50 (ms)",
            &cells(&lat(0)),
            ratio_of(&|s| s.latency.map(|l| l.0)),
            ratio_cols,
        ),
        row(
            "latency p95 (ms)",
            &cells(&lat(1)),
            ratio_of(&|s| s.latency.map(|l| l.1)),
            ratio_cols,
        ),
        row(
            "latency p99 (ms)",
            &cells(&lat(2)),
            ratio_of(&|s| s.latency.map(|l| l.2)),
            ratio_cols,
        ),
        row(
            "drain cpu, all procs (s)",
            &cells(&|s| s.drain_cpu.map_or(na(), |c| format!("{c:.2}"))),
            ratio_of(&|s| s.drain_cpu),
            ratio_cols,
        ),
        row(
            "  of which PostgreSQL (s)",
            &cells(&|s| s.drain_cpu_postgres.map_or(na(), |c| format!("{c:.2}"))),
            None,
            ratio_cols,
        ),
        row(
            "peak rss worker (MiB)",
            &cells(&rss(0)),
            ratio_of(&|s| s.rss.map(|r| r.0)),
            ratio_cols,
        ),
        row(
            "peak rss engine (MiB)",
            &cells(&rss(1)),
            ratio_of(&|s| s.rss.map(|r| r.1)),
            ratio_cols,
        ),
    ];
    if summaries.iter().any(|(_, s)| s.timers.is_some()) {
        lines.extend([
            row(
                "timer delayed p50/p99 ms",
                &cells(&timer(|t| t.delayed)),
                None,
                ratio_cols,
            ),
            row(
                "timer sleep p50/p99 ms",
                &cells(&timer(|t| t.sleep)),
                None,
                ratio_cols,
            ),
            row(
                "timer susp. sleep p50/p99",
                &cells(&timer(|t| t.suspended_sleep)),
                None,
                ratio_cols,
            ),
            row(
                "timer cron p50/p99 ms",
                &cells(&timer(|t| t.cron)),
                None,
                ratio_cols,
            ),
            row(
                "loaded delayed p50/p99 ms",
                &cells(&timer(|t| t.load_delayed)),
                None,
                ratio_cols,
            ),
            row(
                "loaded cron p50/p99 ms",
                &cells(&timer(|t| t.load_cron)),
                None,
                ratio_cols,
            ),
        ]);
    }
    for line in lines {
        println!("{line}");
    }
    println!();
    for (mode, r) in &others {
        let per_run: Vec<String> = r.drain_per_run.iter().map(|x| format!("{x:.2}")).collect();
        let aim = if *mode == Mode::Server && ref_mode == Mode::Lite {
            "; the aim, server within 2x of lite, is a ratio >= 0.50"
        } else {
            ""
        };
        println!(
            "drain {mode}/{ref_mode}: {:.2} (ratio of the medians; per run: {}; median of those: {:.2}){aim}",
            r.drain,
            per_run.join(", "),
            median(r.drain_per_run.clone())
        );
    }
    if let (Some(p1), Some(p2)) = (
        results.iter().find(|(m, _)| *m == Mode::Postgres),
        results.iter().find(|(m, _)| *m == Mode::Postgres2),
    ) {
        if ref_mode != Mode::Postgres {
            let r = ratios(&p1.1, &p2.1);
            let per_run: Vec<String> = r.drain_per_run.iter().map(|x| format!("{x:.2}")).collect();
            println!(
                "drain postgres2/postgres: {:.2} (two replicas over one; per run: {})",
                r.drain,
                per_run.join(", ")
            );
        }
    }
    println!();
    print_aims(&aims);
    println!();
    for (mode, s) in &summaries {
        for line in protocol_lines(s, &format!("[{mode}] ")) {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    fn summary(drain: f64, timers: Option<TimerSummary>) -> Summary {
        Summary {
            enqueue_bulk: 30000.4,
            enqueue_single: 7000.0,
            drain,
            latency: Some((0.5, 1.0, 4.0)),
            rss: Some((49.44, 30.0)),
            drain_cpu: None,
            drain_cpu_postgres: None,
            timers,
            durations: Value::Null,
        }
    }

    fn late(p50: f64, p99: f64) -> Option<Late> {
        Some(Late {
            p50,
            p99,
            n: 10,
            runs: 1,
            missed: 0,
        })
    }

    #[test]
    fn protocol_lines_are_prefixed_per_mode() {
        let s = summary(12000.0, None);
        assert_eq!(
            protocol_lines(&s, "[server] "),
            [
                "[server] enqueue_bulk: 30000/s",
                "[server] enqueue_single: 7000/s",
                "[server] drain: 12000/s",
                "[server] latency_ms p50=0.50 p95=1.00 p99=4.00",
                "[server] peak_rss_mb worker=49.4 engine=30.0",
            ]
        );
        assert_eq!(protocol_lines(&s, "")[2], "drain: 12000/s");
    }

    #[test]
    fn timer_lines_follow_the_protocol_lines() {
        let t = TimerSummary {
            delayed: late(1.0, 2.5),
            sleep: late(1.1, 1.9),
            suspended_sleep: late(3.0, 7.0),
            cron: late(2.0, 4.0),
            load_delayed: late(5.0, 30.0),
            load_cron: None,
            load_drain: 9000.0,
        };
        let lines = protocol_lines(&summary(12000.0, Some(t)), "[postgres] ");
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[5],
            "[postgres] timer_lateness_ms delayed p50=1.00 p99=2.50 | sleep p50=1.10 p99=1.90 \
             | suspended_sleep p50=3.00 p99=7.00 | cron p50=2.00 p99=4.00"
        );
        assert_eq!(
            lines[6],
            "[postgres] timer_lateness_under_load_ms delayed p50=5.00 p99=30.00 | cron p50=n/a p99=n/a"
        );
        assert_eq!(t.worst_p99_at_rest(), Some(7.0));
    }

    #[test]
    fn aims_are_checked() {
        let a = aims(&[
            (Mode::Lite, summary(21000.0, None)),
            (Mode::Server, summary(9000.0, None)),
            (Mode::Postgres, summary(4000.0, None)),
        ]);
        let met: Vec<(Mode, bool)> = a.iter().map(|a| (a.mode, a.met)).collect();
        assert_eq!(
            met,
            [
                (Mode::Lite, true),
                (Mode::Lite, true),
                (Mode::Server, false),
                (Mode::Postgres, false),
                (Mode::Postgres, true),
            ]
        );
    }
}
