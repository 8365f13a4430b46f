//! The summary of the runs: medians per mode, the side-by-side table and server/lite ratios when
//! several modes were measured, the protocol's last lines (BENCH.md), and the `--json` object.

use crate::mode::Mode;
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
    durations: Value,
}

/// CPU seconds of the worker process plus the engine process (if separate) during the drain.
fn drain_cpu(r: &Figures) -> Option<f64> {
    Some(r.drain.cpu_worker_s? + r.drain.cpu_engine_s.unwrap_or(0.0))
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
    Summary {
        enqueue_bulk: med(runs, |r| Some(r.enqueue_bulk.per_s())).unwrap_or(f64::NAN),
        enqueue_single: med(runs, |r| Some(r.enqueue_single.per_s())).unwrap_or(f64::NAN),
        drain: med(runs, |r| Some(r.drain.rate.per_s())).unwrap_or(f64::NAN),
        latency,
        rss,
        drain_cpu: med(runs, drain_cpu),
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

fn run_json(r: &Figures) -> Value {
    json!({
        "enqueue_bulk": r.enqueue_bulk.per_s().round() as u64,
        "enqueue_single": r.enqueue_single.per_s().round() as u64,
        "drain": r.drain.rate.per_s().round() as u64,
        "latency_ms": r.latency.map(|l| json!({
            "p50": round2(l.p50), "p95": round2(l.p95), "p99": round2(l.p99), "max": round2(l.max),
            "enqueue_call_p50": round2(l.enqueue_call_p50), "enqueue_call_p99": round2(l.enqueue_call_p99),
        })),
        "peak_rss_mb": r.peak_rss_mb.map(|(w, e)| json!({ "worker": round2(w), "engine": round2(e) })),
        "drain_cpu_s": {
            "worker": r.drain.cpu_worker_s.map_or(Value::Null, round2),
            "engine": r.drain.cpu_engine_s.map_or(Value::Null, round2),
        },
        "durations_s": {
            "enqueue_bulk": round3(Some(r.enqueue_bulk.elapsed.as_secs_f64())),
            "enqueue_single": round3(Some(r.enqueue_single.elapsed.as_secs_f64())),
            "drain": round3(Some(r.drain.rate.elapsed.as_secs_f64())),
            "drain_last_body_start": round3(Some(r.drain.bodies.as_secs_f64())),
            "latency_phase": round3(r.latency.map(|l| l.span.as_secs_f64())),
        },
    })
}

/// The JSON object of one mode (with `--mode lite` or `--mode server`, the whole output).
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
        })),
        "drain_cpu_s": s.drain_cpu.map_or(Value::Null, round2),
        "durations_s": s.durations,
        "per_run": runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

/// The protocol's last lines (BENCH.md), each after `prefix`.
fn protocol_lines(s: &Summary, prefix: &str) -> Vec<String> {
    vec![
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
    ]
}

fn statistic(runs: usize) -> String {
    if runs > 1 {
        format!("median of {runs} runs")
    } else {
        "1 run".to_string()
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
        "drain: {:.0} tasks/s (one worker, {} slots)",
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
            "peak rss: worker {w:.1} MiB (this process), engine {e:.1} MiB (the engine server process)"
        ),
        None => println!("peak rss: unknown (no /proc/self/status)"),
    }
}

/// server/lite ratios: of the medians, and each run's (runs of both modes are interleaved, so
/// run k of one mode is compared with run k of the other).
#[derive(Debug)]
struct Ratios {
    enqueue_bulk: f64,
    enqueue_single: f64,
    drain: f64,
    drain_per_run: Vec<f64>,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
}

fn ratios(lite: &[Figures], server: &[Figures]) -> Ratios {
    let (l, s) = (summarize(lite), summarize(server));
    Ratios {
        enqueue_bulk: s.enqueue_bulk / l.enqueue_bulk,
        enqueue_single: s.enqueue_single / l.enqueue_single,
        drain: s.drain / l.drain,
        drain_per_run: lite
            .iter()
            .zip(server)
            .map(|(l, s)| s.drain.rate.per_s() / l.drain.rate.per_s())
            .collect(),
        latency_p50: l.latency.zip(s.latency).map(|(l, s)| s.0 / l.0),
        latency_p99: l.latency.zip(s.latency).map(|(l, s)| s.2 / l.2),
    }
}

/// One row of the side-by-side table: the figure, one cell per mode, and the server/lite ratio.
fn row(name: &str, cells: &[String], ratio: Option<f64>) -> String {
    let mut line = format!("| {name:<24} |");
    for c in cells {
        line.push_str(&format!(" {c:>9} |"));
    }
    match ratio {
        Some(r) => line.push_str(&format!(" {r:>11.2} |")),
        None => line.push_str(&format!(" {:>11} |", "")),
    }
    line
}

pub(crate) fn report(args: &Args, results: &[(Mode, Vec<Figures>)]) {
    let pair = match results {
        [(Mode::Lite, lite), (Mode::Server, server)] => Some(ratios(lite, server)),
        _ => None,
    };
    if args.json {
        let out = match results {
            [(mode, runs)] => mode_json(args, *mode, runs),
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
                if let Some(r) = &pair {
                    out["ratio_server_over_lite"] = json!({
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
                out
            }
        };
        println!("{out}");
        return;
    }
    println!();
    let summaries: Vec<(Mode, Summary)> = results
        .iter()
        .map(|(m, runs)| (*m, summarize(runs)))
        .collect();
    if let [(mode, s)] = summaries.as_slice() {
        human_block(args, *mode, &results[0].1, s);
        println!();
        for line in protocol_lines(s, "") {
            println!("{line}");
        }
        return;
    }

    let names: Vec<String> = summaries.iter().map(|(m, _)| m.to_string()).collect();
    println!(
        "owlclaw-bench, modes {} (runs interleaved), {} tasks, {}, configuration {}",
        names.join(" and "),
        args.tasks,
        statistic(args.runs as usize),
        args.configuration()
    );
    for (mode, _) in &summaries {
        println!("  {mode}: {}", mode.describe());
    }
    println!();
    let ratio_head = if pair.is_some() { "server/lite" } else { "" };
    println!("{}", {
        let mut head = format!("| {:<24} |", "figure (median)");
        for n in &names {
            head.push_str(&format!(" {n:>9} |"));
        }
        head.push_str(&format!(" {ratio_head:>11} |"));
        head
    });
    println!(
        "|{}|{}{:-<12}:|",
        "-".repeat(26),
        "----------:|".repeat(names.len()),
        ""
    );
    let cells = |f: &dyn Fn(&Summary) -> String| -> Vec<String> {
        summaries.iter().map(|(_, s)| f(s)).collect()
    };
    let lat = |i: usize| {
        move |s: &Summary| {
            s.latency
                .map_or("n/a".to_string(), |l| format!("{:.2}", [l.0, l.1, l.2][i]))
        }
    };
    let rss = |i: usize| {
        move |s: &Summary| {
            s.rss
                .map_or("n/a".to_string(), |r| format!("{:.1}", [r.0, r.1][i]))
        }
    };
    let r = pair.as_ref();
    let lat_ratio = |i: usize| {
        let (l, s) = (&summaries[0].1, summaries.get(1).map(|x| &x.1));
        r.and(l.latency)
            .zip(s.and_then(|s| s.latency))
            .map(|(l, s)| [s.0, s.1, s.2][i] / [l.0, l.1, l.2][i])
    };
    let rss_ratio = |i: usize| {
        let (l, s) = (&summaries[0].1, summaries.get(1).map(|x| &x.1));
        r.and(l.rss)
            .zip(s.and_then(|s| s.rss))
            .map(|(l, s)| [s.0, s.1][i] / [l.0, l.1][i])
    };
    for line in [
        row(
            "enqueue_bulk (jobs/s)",
            &cells(&|s| format!("{:.0}", s.enqueue_bulk)),
            r.map(|r| r.enqueue_bulk),
        ),
        row(
            "enqueue_single (jobs/s)",
            &cells(&|s| format!("{:.0}", s.enqueue_single)),
            r.map(|r| r.enqueue_single),
        ),
        row(
            "drain (jobs/s)",
            &cells(&|s| format!("{:.0}", s.drain)),
            r.map(|r| r.drain),
        ),
        row("latency p50 (ms)", &cells(&lat(0)), lat_ratio(0)),
        row("latency p95 (ms)", &cells(&lat(1)), lat_ratio(1)),
        row("latency p99 (ms)", &cells(&lat(2)), lat_ratio(2)),
        row(
            "drain cpu, all procs (s)",
            &cells(&|s| s.drain_cpu.map_or("n/a".to_string(), |c| format!("{c:.2}"))),
            r.and(summaries[0].1.drain_cpu)
                .zip(summaries.get(1).and_then(|x| x.1.drain_cpu))
                .map(|(l, s)| s / l),
        ),
        row("peak rss worker (MiB)", &cells(&rss(0)), rss_ratio(0)),
        row("peak rss engine (MiB)", &cells(&rss(1)), rss_ratio(1)),
    ] {
        println!("{line}");
    }
    if let Some(r) = &pair {
        let per_run: Vec<String> = r.drain_per_run.iter().map(|x| format!("{x:.2}")).collect();
        println!();
        println!(
            "drain server/lite: {:.2} (ratio of the medians; per run: {}; median of those: {:.2}); \
             the aim, server within 2x of lite, is a ratio >= 0.50",
            r.drain,
            per_run.join(", "),
            median(r.drain_per_run.clone())
        );
    }
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

    #[test]
    fn protocol_lines_are_prefixed_per_mode() {
        let s = Summary {
            enqueue_bulk: 30000.4,
            enqueue_single: 7000.0,
            drain: 12000.0,
            latency: Some((0.5, 1.0, 4.0)),
            rss: Some((49.44, 30.0)),
            drain_cpu: None,
            durations: Value::Null,
        };
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
}
