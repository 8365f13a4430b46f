//! `owlclaw-bench`: the benchmark harness of OwlClaw Tasks, following the shared benchmark
//! protocol (BENCH.md): enqueue (bulk and single), drain, queue-to-start latency and peak RSS.
//!
//! ```text
//! cargo run --release -p owlclaw-bench -- [--mode lite] [--tasks N] [--runs K] [--json]
//!                                         [--database URL] [--skip-latency] [--slots S]
//! ```
//!
//! See `bench/README.md` for what each figure means.

mod mode;
mod phases;

use anyhow::{bail, Context as _, Result};
use mode::Mode;
use phases::{Drain, Latency, Rate};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

const USAGE: &str = "\
usage: owlclaw-bench [--mode lite] [--tasks N] [--runs K] [--json] [--database URL] [--skip-latency] [--slots S]

  --mode MODE      where the engine runs: `lite` (embedded, SQLite; the default and, for now, the only mode)
  --tasks N        jobs enqueued in bulk and then drained (default 20000)
  --runs K         repeat the whole benchmark K times and report the median of each figure (default 1)
  --json           print one JSON object on stdout, progress on stderr
  --database URL   store of the bulk/drain/latency phases (default: a fresh SQLite file, deleted afterwards);
                   enqueue_single always uses its own fresh database
  --skip-latency   skip the 10-second latency phase
  --slots S        slots of the draining worker (default 10, the protocol's concurrency; any other value
                   is a tuned configuration and is labelled as such)
";

/// Command-line options.
#[derive(Debug, Clone)]
struct Args {
    mode: Mode,
    tasks: u64,
    runs: u32,
    json: bool,
    database: Option<String>,
    skip_latency: bool,
    slots: u32,
}

impl Args {
    /// `default`, or what was tuned (BENCH.md: tuned figures are a separate, labelled row).
    fn configuration(&self) -> String {
        if self.slots == phases::DEFAULT_SLOTS {
            "default".to_string()
        } else {
            format!(
                "tuned: worker slots {} instead of {}",
                self.slots,
                phases::DEFAULT_SLOTS
            )
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        mode: Mode::Lite,
        tasks: 20_000,
        runs: 1,
        json: false,
        database: None,
        skip_latency: false,
        slots: phases::DEFAULT_SLOTS,
    };
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| argv.next()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value"),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => args.json = true,
            "--skip-latency" => args.skip_latency = true,
            "--mode" => args.mode = value("--mode")?.parse()?,
            "--database" => args.database = Some(value("--database")?),
            "--tasks" => {
                let v = value("--tasks")?;
                args.tasks = v
                    .replace(['_', ','], "")
                    .parse()
                    .with_context(|| format!("--tasks {v:?}"))?;
                if args.tasks == 0 {
                    bail!("--tasks must be at least 1");
                }
            }
            "--slots" => {
                let v = value("--slots")?;
                args.slots = v.parse().with_context(|| format!("--slots {v:?}"))?;
                if args.slots == 0 {
                    bail!("--slots must be at least 1");
                }
            }
            "--runs" => {
                let v = value("--runs")?;
                args.runs = v.parse().with_context(|| format!("--runs {v:?}"))?;
                if args.runs == 0 {
                    bail!("--runs must be at least 1");
                }
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(Some(args))
}

/// The figures of one run.
#[derive(Debug, Clone, Copy)]
struct Figures {
    enqueue_bulk: Rate,
    enqueue_single: Rate,
    drain: Drain,
    latency: Option<Latency>,
    /// (worker, engine), MiB.
    peak_rss_mb: Option<(f64, f64)>,
}

/// Where progress goes: stdout, or stderr under `--json` (stdout then holds the JSON only).
fn progress(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

async fn one_run(args: &Args, run: u32) -> Result<Figures> {
    let say = |line: String| progress(args.json, &format!("[run {run}/{}] {line}", args.runs));
    let rss_reset = mode::reset_peak_rss();

    // enqueue_single, in a database of its own so that it does not disturb the drain.
    let single = args.mode.open(None, "single").await?;
    let enqueue_single = phases::enqueue_single(&single.client, phases::SINGLE_JOBS).await?;
    single.close().await?;
    say(format!(
        "enqueue_single: {} jobs in {:.3}s = {:.0}/s",
        enqueue_single.count,
        enqueue_single.elapsed.as_secs_f64(),
        enqueue_single.per_s()
    ));

    // enqueue_bulk, then drain those runs, then latency with the same (warm) worker.
    let target = args.mode.open(args.database.as_deref(), "drain").await?;
    let client = &target.client;
    phases::ensure_idle(client, &target.url).await?;
    let before = if args.database.is_some() {
        phases::count_runs(client, owlclaw::RunStatus::Succeeded).await?
    } else {
        0
    };
    let enqueue_bulk = phases::enqueue_bulk(client, args.tasks).await?;
    say(format!(
        "enqueue_bulk: {} jobs in {:.3}s = {:.0}/s",
        enqueue_bulk.count,
        enqueue_bulk.elapsed.as_secs_f64(),
        enqueue_bulk.per_s()
    ));
    let (drain, worker) =
        phases::drain(client, args.tasks, args.slots, before + args.tasks).await?;
    say(format!(
        "drain: {} jobs in {:.3}s = {:.0}/s (last body started at {:.3}s; {} succeeded runs verified in the store)",
        drain.rate.count,
        drain.rate.elapsed.as_secs_f64(),
        drain.rate.per_s(),
        drain.bodies.as_secs_f64(),
        before + args.tasks
    ));
    let latency = if args.skip_latency {
        None
    } else {
        let l = phases::latency(client).await?;
        say(format!(
            "latency: {} jobs over {:.2}s, queue-to-start p50={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms \
             (the enqueue call itself: p50={:.2}ms p99={:.2}ms)",
            l.jobs,
            l.span.as_secs_f64(),
            l.p50,
            l.p95,
            l.p99,
            l.max,
            l.enqueue_call_p50,
            l.enqueue_call_p99
        ));
        Some(l)
    };
    worker.shutdown().await.context("stopping the worker")?;
    target.close().await?;

    let peak_rss_mb = args.mode.peak_rss_mb();
    if let Some((w, e)) = peak_rss_mb {
        let scope = if rss_reset {
            "this run"
        } else {
            "since the process started"
        };
        say(format!(
            "peak rss ({scope}): worker={w:.1}MiB engine={e:.1}MiB (one process in {} mode)",
            args.mode
        ));
    }
    Ok(Figures {
        enqueue_bulk,
        enqueue_single,
        drain,
        latency,
        peak_rss_mb,
    })
}

/// The median (mean of the two middle values for an even count).
fn median(mut v: Vec<f64>) -> f64 {
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

/// Medians over the runs.
#[derive(Debug)]
struct Summary {
    enqueue_bulk: f64,
    enqueue_single: f64,
    drain: f64,
    latency: Option<(f64, f64, f64)>,
    rss: Option<(f64, f64)>,
    durations: Value,
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
        "durations_s": {
            "enqueue_bulk": round3(Some(r.enqueue_bulk.elapsed.as_secs_f64())),
            "enqueue_single": round3(Some(r.enqueue_single.elapsed.as_secs_f64())),
            "drain": round3(Some(r.drain.rate.elapsed.as_secs_f64())),
            "drain_last_body_start": round3(Some(r.drain.bodies.as_secs_f64())),
            "latency_phase": round3(r.latency.map(|l| l.span.as_secs_f64())),
        },
    })
}

fn report(args: &Args, runs: &[Figures]) {
    let s = summarize(runs);
    if args.json {
        let out = json!({
            "mode": args.mode.to_string(),
            "mode_description": args.mode.describe(),
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
                "same_process": args.mode == Mode::Lite,
            })),
            "durations_s": s.durations,
            "per_run": runs.iter().map(run_json).collect::<Vec<_>>(),
        });
        println!("{out}");
        return;
    }
    let stat = if runs.len() > 1 {
        format!("median of {} runs", runs.len())
    } else {
        "1 run".to_string()
    };
    println!();
    println!(
        "owlclaw-bench, mode {} ({}), {} tasks, {stat}, configuration {}",
        args.mode,
        args.mode.describe(),
        args.tasks,
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
        Some((w, e)) if args.mode == Mode::Lite => {
            debug_assert_eq!(w.to_bits(), e.to_bits());
            println!("peak rss: {w:.1} MiB (worker and engine are one process in lite mode)")
        }
        Some((w, e)) => println!("peak rss: worker {w:.1} MiB, engine {e:.1} MiB"),
        None => println!("peak rss: unknown (no /proc/self/status)"),
    }
    println!();
    println!("enqueue_bulk: {:.0}/s", s.enqueue_bulk);
    println!("enqueue_single: {:.0}/s", s.enqueue_single);
    println!("drain: {:.0}/s", s.drain);
    match s.latency {
        Some((p50, p95, p99)) => println!("latency_ms p50={p50:.2} p95={p95:.2} p99={p99:.2}"),
        None => println!("latency_ms p50=n/a p95=n/a p99=n/a"),
    }
    match s.rss {
        Some((w, e)) => println!("peak_rss_mb worker={w:.1} engine={e:.1}"),
        None => println!("peak_rss_mb worker=n/a engine=n/a"),
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("owlclaw-bench: {e:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    progress(
        args.json,
        &format!(
            "owlclaw-bench: mode {} ({}), {} tasks, {} run(s), configuration {}{}",
            args.mode,
            args.mode.describe(),
            args.tasks,
            args.runs,
            args.configuration(),
            args.database
                .as_deref()
                .map(|d| format!(", database {d}"))
                .unwrap_or_default()
        ),
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        match one_run(&args, run).await {
            Ok(f) => runs.push(f),
            Err(e) => {
                eprintln!("owlclaw-bench: run {run} failed: {e:#}");
                std::process::exit(1);
            }
        }
    }
    report(&args, &runs);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags() {
        let a = parse(&["--tasks", "100_000", "--json", "--runs=3", "--skip-latency"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.tasks, a.runs, a.json, a.skip_latency),
            (100_000, 3, true, true)
        );
        assert_eq!(a.mode, Mode::Lite);
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--mode", "server"])
            .unwrap_err()
            .to_string()
            .contains("not implemented yet"));
        assert!(parse(&["--tasks"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
