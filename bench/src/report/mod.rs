//! The summary of the runs: medians per mode, the side-by-side table and the ratios to the first
//! mode when several modes were measured, the aims, the protocol's last lines (BENCH.md), and the
//! `--json` object.

use crate::cost::CostPerRun;
use crate::mode::Mode;
use crate::timers::{self, Lateness, Timers};
use crate::{phases, Args, Figures};
use serde_json::{json, Value};
use std::time::Duration;

mod aims;
mod json;
mod summary;

use aims::*;
use json::*;
use summary::*;

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

/// The scale lines of one mode (none without `--backlog` and `--history`).
fn scale_lines(args: &Args, mode: Mode, s: &Summary) -> Vec<String> {
    let per_run = |r: &[f64]| {
        r.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    if let Some(b) = &s.backlog {
        lines.push(format!(
            "backlog: {} runs (enqueued in bulk at {:.0}/s) drained at {:.0} tasks/s: {:.2} x the \
             plain {}-run drain (ratio of the medians; per run: {})",
            b.n,
            b.enqueue_bulk,
            b.drain,
            b.ratio,
            args.tasks,
            per_run(&b.ratio_per_run)
        ));
        if let Some(c) = &b.cost {
            lines.push(format!("backlog {}", c.line(mode == Mode::Lite)));
        }
    }
    if let Some(h) = &s.history {
        lines.push(format!(
            "history: drain of {} runs with {} finished runs in the store: {:.0} tasks/s: {:.2} x \
             the plain drain on an empty store (ratio of the medians; per run: {})",
            args.tasks,
            h.n,
            h.drain,
            h.ratio,
            per_run(&h.ratio_per_run)
        ));
        if let Some(c) = &h.cost {
            lines.push(format!("history {}", c.line(mode == Mode::Lite)));
        }
    }
    if let Some(l) = &s.limited {
        lines.push(format!(
            "limited: drain of {} runs under a limit of {} running per key over {} keys: {:.0} \
             tasks/s: {:.2} x the plain drain (ratio of the medians; per run: {})",
            args.tasks,
            crate::phases::LIMIT_PER_KEY,
            l.n,
            l.drain,
            l.ratio,
            per_run(&l.ratio_per_run)
        ));
        if let Some(c) = &l.cost {
            lines.push(format!("limited {}", c.line(mode == Mode::Lite)));
        }
    }
    lines
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
    if let Some(cost) = &s.cost {
        println!("{}", cost.line(mode == Mode::Lite));
    }
    for line in scale_lines(args, mode, s) {
        println!("{line}");
    }
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

/// A cost-per-run cell: 3 decimals below 1 (transactions), else 2 (switches) or 1 (µs).
fn cost_cell(s: &Summary, f: impl Fn(&CostPerRun) -> Option<f64>) -> String {
    match s.cost.as_ref().and_then(f) {
        Some(v) if v < 1.0 => format!("{v:.3}"),
        Some(v) if v < 100.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
        None => "n/a".to_string(),
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
            "cost/run: worker cs",
            &cells(&|s| cost_cell(s, |c| c.worker.map(|p| p.cs))),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: worker cpu µs",
            &cells(&|s| cost_cell(s, |c| c.worker.map(|p| p.cpu_us))),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: engine(s) cs",
            &cells(&|s| cost_cell(s, |c| c.engines_total().map(|p| p.cs))),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: engine(s) cpu µs",
            &cells(&|s| cost_cell(s, |c| c.engines_total().map(|p| p.cpu_us))),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: pg xact",
            &cells(&|s| cost_cell(s, |c| c.xact)),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: pg cs",
            &cells(&|s| cost_cell(s, |c| c.postgres.map(|p| p.cs))),
            None,
            ratio_cols,
        ),
        row(
            "cost/run: pg cpu µs",
            &cells(&|s| cost_cell(s, |c| c.postgres.map(|p| p.cpu_us))),
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
    // The rows of a scale figure (`--backlog`, `--history`): its drain rate, and its ratio to the
    // plain drain.
    let scale_rows = |get: fn(&Summary) -> Option<&ScaleSummary>,
                      rate: &dyn Fn(u64) -> String,
                      ratio: &str|
     -> Vec<String> {
        let Some(n) = summaries.iter().find_map(|(_, s)| get(s).map(|x| x.n)) else {
            return Vec::new();
        };
        vec![
            row(
                &rate(n),
                &cells(&|s| get(s).map_or(na(), |x| format!("{:.0}", x.drain))),
                ratio_of(&|s| get(s).map(|x| x.drain)),
                ratio_cols,
            ),
            row(
                ratio,
                &cells(&|s| get(s).map_or(na(), |x| format!("{:.2}", x.ratio))),
                None,
                ratio_cols,
            ),
        ]
    };
    lines.extend(scale_rows(
        |s| s.backlog.as_ref(),
        &|n| format!("backlog {n} (jobs/s)"),
        "  backlog / plain drain",
    ));
    lines.extend(scale_rows(
        |s| s.history.as_ref(),
        &|n| format!("drain, {n} done (jobs/s)"),
        "  with history / plain",
    ));
    lines.extend(scale_rows(
        |s| s.limited.as_ref(),
        &|n| format!("limited, {n} keys (jobs/s)"),
        "  limited / plain drain",
    ));
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
    for (mode, s) in &summaries {
        if let Some(cost) = &s.cost {
            println!("[{mode}] {}", cost.line(*mode == Mode::Lite));
        }
        for line in scale_lines(args, *mode, s) {
            println!("[{mode}] {line}");
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
mod tests;
