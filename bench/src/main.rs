//! `owlclaw-bench`: the benchmark harness of OwlClaw Tasks, following the shared benchmark
//! protocol (BENCH.md): enqueue (bulk and single), drain, queue-to-start latency, peak RSS and
//! timer lateness.
//!
//! ```text
//! cargo run --release -p owlclaw-bench -- [--mode lite|server|postgres|postgres2|both|all]
//!     [--tasks N] [--runs K] [--json] [--database URL] [--pg-url URL] [--skip-latency]
//!     [--skip-timers] [--slots S] [--backlog N] [--history N] [--limited K]
//! ```
//!
//! See `bench/README.md` for what each figure means.

mod cost;
mod mode;
mod pg;
mod phases;
mod report;
mod scale;
mod server;
mod timers;

use anyhow::{bail, Context as _, Result};
use mode::{Mode, Modes};
use phases::{Drain, Latency, Rate, Workload};
use std::io::Write;
use timers::Timers;

const USAGE: &str = "\
usage: owlclaw-bench [--mode M] [--tasks N] [--runs K] [--json] [--database URL] [--pg-url URL]
                     [--skip-latency] [--skip-timers] [--slots S] [--backlog N] [--history N]
                     [--limited K]

  --mode M         where the engine runs: `lite` (embedded, SQLite; the default), `server` (an engine server
                   in its own process on loopback, SQLite; worker and client in this process), `postgres`
                   (the same on PostgreSQL), `postgres2` (two engine servers, replicas, on one PostgreSQL
                   database), `both` (lite and server), `all` (the four), or a comma-separated list; with
                   several modes each run measures them in turn, side by side, with ratios to the first
  --tasks N        jobs enqueued in bulk and then drained (default 20000)
  --runs K         repeat the whole benchmark K times and report the median of each figure (default 1)
  --json           print one JSON object on stdout, progress on stderr
  --database URL   store of the bulk/drain/latency phases (default: a fresh database, deleted afterwards):
                   sqlite:// for lite and server, postgres:// for the postgres modes; enqueue_single and
                   the timer phase always use fresh databases of their own
  --pg-url URL     the PostgreSQL server on which the postgres modes create (and drop) a fresh database per
                   phase (default: $OWLCLAW_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --skip-latency   skip the 10-second latency phase
  --skip-timers    skip the timer-lateness phase (about 25 s per run and mode)
  --slots S        slots of the draining worker (default 10, the protocol's concurrency; any other value
                   is a tuned configuration and is labelled as such)
  --backlog N      also drain a backlog of N runs (e.g. 1000000), enqueued in bulk before the worker
                   starts, in a fresh store; reported beside the plain drain, with the ratio
  --history N      also drain the --tasks runs in a fresh store already holding N finished runs
                   (put there by a bulk enqueue and a worker of 100 slots, not measured); reported
                   against the plain drain (empty store), with the ratio
  --limited K      also drain the --tasks runs of the no-op under a concurrency limit of 5 running per key,
                   over K keys (run i has key i % K), in a fresh store; reported against the plain drain
";

/// Command-line options.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) modes: Modes,
    pub(crate) tasks: u64,
    pub(crate) runs: u32,
    pub(crate) json: bool,
    pub(crate) database: Option<String>,
    pub(crate) pg_url: String,
    pub(crate) skip_latency: bool,
    pub(crate) skip_timers: bool,
    pub(crate) slots: u32,
    /// `--backlog N`: also drain a backlog of N runs (`scale.rs`).
    pub(crate) backlog: Option<u64>,
    /// `--history N`: also drain `tasks` runs with N finished runs in the store (`scale.rs`).
    pub(crate) history: Option<u64>,
    /// `--limited K`: also drain `tasks` runs under a concurrency limit over K keys (`scale.rs`).
    pub(crate) limited: Option<u64>,
    /// Hidden `--child-run K`: this process is one run (run K of `runs`) of one mode for a parent
    /// measuring several modes; it reports its figures on stdout after [`FIGURES`].
    pub(crate) child_run: Option<u32>,
}

impl Args {
    /// `default`, or what was tuned (BENCH.md: tuned figures are a separate, labelled row).
    pub(crate) fn configuration(&self) -> String {
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

/// A count of runs: digits, optionally grouped with `_` or `,` (`1_000_000`); at least 1.
fn count(flag: &str, v: &str) -> Result<u64> {
    let n: u64 = v
        .replace(['_', ','], "")
        .parse()
        .with_context(|| format!("{flag} {v:?}"))?;
    if n == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(n)
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        modes: Modes(vec![Mode::Lite]),
        tasks: 20_000,
        runs: 1,
        json: false,
        database: None,
        pg_url: pg::default_pg_url(),
        skip_latency: false,
        skip_timers: false,
        slots: phases::DEFAULT_SLOTS,
        backlog: None,
        history: None,
        limited: None,
        child_run: None,
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
            "--skip-timers" => args.skip_timers = true,
            "--pg-url" => args.pg_url = value("--pg-url")?,
            "--mode" => args.modes = value("--mode")?.parse()?,
            "--database" => args.database = Some(value("--database")?),
            "--tasks" => args.tasks = count("--tasks", &value("--tasks")?)?,
            "--backlog" => args.backlog = Some(count("--backlog", &value("--backlog")?)?),
            "--history" => args.history = Some(count("--history", &value("--history")?)?),
            "--limited" => args.limited = Some(count("--limited", &value("--limited")?)?),
            "--slots" => {
                let v = value("--slots")?;
                args.slots = v.parse().with_context(|| format!("--slots {v:?}"))?;
                if args.slots == 0 {
                    bail!("--slots must be at least 1");
                }
            }
            "--child-run" => {
                let v = value("--child-run")?;
                args.child_run = Some(v.parse().with_context(|| format!("--child-run {v:?}"))?);
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
    if let Some(db) = &args.database {
        for mode in &args.modes.0 {
            mode.check_database(db)?;
        }
    }
    Ok(Some(args))
}

/// The figures of one run in one mode.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Figures {
    pub(crate) enqueue_bulk: Rate,
    pub(crate) enqueue_single: Rate,
    pub(crate) drain: Drain,
    pub(crate) latency: Option<Latency>,
    /// (worker, engine), MiB; the engine figure is the largest of the engine processes'.
    pub(crate) peak_rss_mb: Option<(f64, f64)>,
    /// Each engine process of the drain phase (server modes; two in `postgres2`), MiB.
    #[serde(default)]
    pub(crate) engine_rss_mb: Vec<f64>,
    #[serde(default)]
    pub(crate) timers: Option<Timers>,
    /// `--backlog N`.
    #[serde(default)]
    pub(crate) backlog: Option<scale::Backlog>,
    /// `--history N`.
    #[serde(default)]
    pub(crate) history: Option<scale::History>,
    /// `--limited K`.
    #[serde(default)]
    pub(crate) limited: Option<scale::Limited>,
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

async fn one_run(args: &Args, mode: Mode, run: u32) -> Result<Figures> {
    let tag = if args.modes.0.len() > 1 || args.child_run.is_some() {
        format!("[run {run}/{}] [{mode}]", args.runs)
    } else {
        format!("[run {run}/{}]", args.runs)
    };
    let say = |line: String| progress(args.json, &format!("{tag} {line}"));
    let rss_reset = mode::reset_peak_rss();
    let pg_url = args.pg_url.as_str();

    // enqueue_single, in a database of its own so that it does not disturb the drain (in the
    // server modes, engine processes of its own too).
    let single = mode.open(None, "single", pg_url).await?;
    let enqueue_single = phases::enqueue_single(&single.client, phases::SINGLE_JOBS).await?;
    let engine_rss_single = single.close().await?;
    say(format!(
        "enqueue_single: {} jobs in {:.3}s = {:.0}/s",
        enqueue_single.count,
        enqueue_single.elapsed.as_secs_f64(),
        enqueue_single.per_s()
    ));

    // enqueue_bulk, then drain those runs, then latency with the same (warm) worker.
    let target = mode.open(args.database.as_deref(), "drain", pg_url).await?;
    let client = &target.client;
    phases::ensure_idle(client, &pg::redact(&target.url)).await?;
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
    let (drain, workers) = phases::drain(
        &target,
        args.tasks,
        args.slots,
        before + args.tasks,
        Workload::Plain,
    )
    .await?;
    let cpu =
        match (drain.cpu_worker_s, drain.cpu_engine_s, drain.cpu_postgres_s) {
            (Some(w), None, _) => format!("; CPU {w:.2}s"),
            (Some(w), Some(e), None) => format!(
                "; CPU {:.2}s = worker process {w:.2}s + engine process{} {e:.2}s",
                w + e,
                if mode.engine_processes() > 1 {
                    "es"
                } else {
                    ""
                }
            ),
            (Some(w), Some(e), Some(p)) => format!(
            "; CPU {:.2}s = worker process {w:.2}s + engine process{} {e:.2}s + PostgreSQL {p:.2}s",
            w + e + p,
            if mode.engine_processes() > 1 { "es" } else { "" }
        ),
            _ => String::new(),
        };
    say(format!(
        "drain: {} jobs in {:.3}s = {:.0}/s (last body started at {:.3}s; {} succeeded runs verified in the store{cpu})",
        drain.rate.count,
        drain.rate.elapsed.as_secs_f64(),
        drain.rate.per_s(),
        drain.bodies.as_secs_f64(),
        before + args.tasks
    ));
    if let Some(cost) = &drain.cost {
        say(cost.per_run().line(mode == Mode::Lite));
    }
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
    for worker in workers {
        worker.shutdown().await.context("stopping the worker")?;
    }
    let engine_rss_mb = target.close().await?;

    // Peak RSS of the protocol's phases, before the timer phase adds its own workers.
    let worker_rss = mode::peak_rss_mb();
    let engine_max = engine_rss_single
        .iter()
        .chain(&engine_rss_mb)
        .copied()
        .reduce(f64::max);
    let peak_rss_mb = match mode {
        Mode::Lite => worker_rss.map(|m| (m, m)),
        _ => worker_rss.zip(engine_max),
    };
    if let Some((w, e)) = peak_rss_mb {
        let scope = if rss_reset {
            "this run"
        } else {
            "since the process started"
        };
        let note = match mode {
            Mode::Lite => "one process in lite mode".to_string(),
            Mode::Postgres2 => format!(
                "worker: this process, {scope}; engine: the largest of this run's four engine \
                 processes (two replicas for enqueue_single; two for bulk, drain and latency: {})",
                engine_rss_mb
                    .iter()
                    .map(|m| format!("{m:.1}MiB"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            _ => format!(
                "worker: this process, {scope}; engine: the larger of this run's two engine \
                 processes (enqueue_single; bulk, drain and latency)"
            ),
        };
        say(format!(
            "peak rss ({scope}): worker={w:.1}MiB engine={e:.1}MiB ({note})"
        ));
    }

    let lite = mode == Mode::Lite;
    let plain = drain.rate.per_s();
    let backlog = match args.backlog {
        None => None,
        Some(n) => {
            let b = scale::backlog(mode, pg_url, n, args.slots).await?;
            say(format!(
                "backlog: {n} jobs enqueued in bulk in {:.1}s ({:.0}/s), then drained in {:.3}s = \
                 {:.0}/s ({:.2} x the plain drain; {n} succeeded runs verified in the store)",
                b.enqueue.elapsed.as_secs_f64(),
                b.enqueue.per_s(),
                b.drain.rate.elapsed.as_secs_f64(),
                b.drain.rate.per_s(),
                b.drain.rate.per_s() / plain,
            ));
            if let Some(cost) = &b.drain.cost {
                say(format!("backlog {}", cost.per_run().line(lite)));
            }
            Some(b)
        }
    };
    let history = match args.history {
        None => None,
        Some(n) => {
            let h = scale::history(mode, pg_url, n, args.tasks, args.slots).await?;
            say(format!(
                "history: {n} finished runs put in a fresh store in {:.1}s (not measured; its \
                 vacuums ended {:.1}s after it); then enqueue_bulk {} jobs at {:.0}/s; drain: {} \
                 jobs in {:.3}s = {:.0}/s ({:.2} x the plain drain on an empty store; {} succeeded \
                 runs verified in the store)",
                h.fill.as_secs_f64(),
                h.settle.as_secs_f64(),
                h.enqueue_bulk.count,
                h.enqueue_bulk.per_s(),
                h.drain.rate.count,
                h.drain.rate.elapsed.as_secs_f64(),
                h.drain.rate.per_s(),
                h.drain.rate.per_s() / plain,
                n + args.tasks,
            ));
            if let Some(cost) = &h.drain.cost {
                say(format!("history {}", cost.per_run().line(lite)));
            }
            let pages: Vec<String> = h
                .pages
                .iter()
                .map(|(page, ms)| format!("{page} {ms:.1} ms"))
                .collect();
            say(format!(
                "history: dashboard reads with {} runs in the store (median of 5): {}",
                n + args.tasks,
                pages.join("; ")
            ));
            Some(h)
        }
    };
    let limited = match args.limited {
        None => None,
        Some(keys) => {
            let l = scale::limited(mode, pg_url, args.tasks, keys, args.slots).await?;
            say(format!(
                "limited: {} jobs over {keys} keys, at most {} running per key, enqueued in bulk \
                 at {:.0}/s, drained in {:.3}s = {:.0}/s ({:.2} x the plain drain; {} succeeded \
                 runs verified in the store)",
                args.tasks,
                phases::LIMIT_PER_KEY,
                l.enqueue.per_s(),
                l.drain.rate.elapsed.as_secs_f64(),
                l.drain.rate.per_s(),
                l.drain.rate.per_s() / plain,
                args.tasks,
            ));
            if let Some(cost) = &l.drain.cost {
                say(format!("limited {}", cost.per_run().line(lite)));
            }
            Some(l)
        }
    };

    let timers = if args.skip_timers {
        None
    } else {
        Some(timers::measure(mode, pg_url, &say).await?)
    };
    Ok(Figures {
        enqueue_bulk,
        enqueue_single,
        drain,
        latency,
        peak_rss_mb,
        engine_rss_mb,
        timers,
        backlog,
        history,
        limited,
    })
}

/// Marks the line on which a `--child-run` process reports its figures (JSON).
const FIGURES: &str = "__figures";

/// One run of `mode` in a fresh process of this executable (`--child-run`), so that each mode's
/// worker-process peak RSS is its own and not memory the allocator kept from the other mode.
/// Its progress lines are passed on; its figures come back on the line after [`FIGURES`].
async fn run_in_child(args: &Args, mode: Mode, run: u32) -> Result<Figures> {
    use tokio::io::AsyncBufReadExt as _;
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("--mode")
        .arg(mode.to_string())
        .arg("--tasks")
        .arg(args.tasks.to_string())
        .arg("--runs")
        .arg(args.runs.to_string())
        .arg("--slots")
        .arg(args.slots.to_string())
        .arg("--child-run")
        .arg(run.to_string());
    cmd.arg("--pg-url").arg(&args.pg_url);
    if args.skip_latency {
        cmd.arg("--skip-latency");
    }
    if args.skip_timers {
        cmd.arg("--skip-timers");
    }
    if let Some(db) = &args.database {
        cmd.arg("--database").arg(db);
    }
    if let Some(n) = args.backlog {
        cmd.arg("--backlog").arg(n.to_string());
    }
    if let Some(n) = args.history {
        cmd.arg("--history").arg(n.to_string());
    }
    if let Some(n) = args.limited {
        cmd.arg("--limited").arg(n.to_string());
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut figures = None;
    while let Some(line) = lines.next_line().await? {
        match line.strip_prefix(FIGURES) {
            Some(f) => figures = Some(serde_json::from_str::<Figures>(f.trim())?),
            None => progress(args.json, &line),
        }
    }
    let status = child.wait().await?;
    match figures {
        Some(f) if status.success() => Ok(f),
        _ => bail!("the run's process exited with {status}"),
    }
}

#[tokio::main]
async fn main() {
    // The worker's and the engine processes' warnings on stderr (none in a run that goes well:
    // a failed exchange, a slow connection from the pool), or what `OWLCLAW_BENCH_LOG` asks
    // for (a `tracing` filter; `off` for none).
    let filter = std::env::var("OWLCLAW_BENCH_LOG").unwrap_or_else(|_| "warn".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some(server::SUBCOMMAND) {
        argv.next();
        if let Err(e) = server::engine_main(argv).await {
            eprintln!("owlclaw-bench {}: {e:#}", server::SUBCOMMAND);
            std::process::exit(1);
        }
        return;
    }
    let args = match parse_args(argv) {
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
    if let Some(run) = args.child_run {
        let figures = match args.modes.0.as_slice() {
            [mode] => one_run(&args, *mode, run).await,
            _ => Err(anyhow::anyhow!("--child-run takes one mode")),
        };
        match figures.and_then(|f| Ok(serde_json::to_string(&f)?)) {
            Ok(f) => println!("{FIGURES} {f}"),
            Err(e) => {
                eprintln!("owlclaw-bench: run {run} failed: {e:#}");
                std::process::exit(1);
            }
        }
        return;
    }
    let described: Vec<String> = args
        .modes
        .0
        .iter()
        .map(|m| format!("{m} ({})", m.describe()))
        .collect();
    progress(
        args.json,
        &format!(
            "owlclaw-bench: mode {}: {}, {} tasks, {} run(s), configuration {}{}{}",
            args.modes,
            described.join("; "),
            args.tasks,
            args.runs,
            args.configuration(),
            args.database
                .as_deref()
                .map(|d| format!(", database {}", pg::redact(d)))
                .unwrap_or_default(),
            if args.modes.0.iter().any(|m| m.is_postgres()) && args.database.is_none() {
                format!(
                    ", PostgreSQL server {} (a fresh database per phase)",
                    pg::redact(&args.pg_url)
                )
            } else {
                String::new()
            }
        ),
    );
    let mut results: Vec<(Mode, Vec<Figures>)> =
        args.modes.0.iter().map(|m| (*m, Vec::new())).collect();
    let isolate = results.len() > 1;
    for run in 1..=args.runs {
        for (mode, runs) in &mut results {
            let figures = if isolate {
                run_in_child(&args, *mode, run).await
            } else {
                one_run(&args, *mode, run).await
            };
            match figures {
                Ok(f) => runs.push(f),
                Err(e) => {
                    eprintln!("owlclaw-bench: run {run} ({mode} mode) failed: {e:#}");
                    std::process::exit(1);
                }
            }
        }
    }
    report::report(&args, &results);
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
        assert_eq!(a.modes, Modes(vec![Mode::Lite]));
        assert!(parse(&["--help"]).unwrap().is_none());
        let both = parse(&["--mode", "both"]).unwrap().unwrap();
        assert_eq!(both.modes, Modes(vec![Mode::Lite, Mode::Server]));
        assert_eq!(both.modes.to_string(), "both");
        let server = parse(&["--mode=server"]).unwrap().unwrap();
        assert_eq!(server.modes, Modes(vec![Mode::Server]));
        let pg = parse(&["--mode", "server-postgres", "--pg-url", "postgres://u@h/db"])
            .unwrap()
            .unwrap();
        assert_eq!(pg.modes, Modes(vec![Mode::Postgres]));
        assert_eq!(pg.pg_url, "postgres://u@h/db");
        let all = parse(&["--mode", "all", "--skip-timers"]).unwrap().unwrap();
        assert_eq!(all.modes, Modes(Mode::ALL.to_vec()));
        assert_eq!(all.modes.to_string(), "all");
        assert!(all.skip_timers);
        let two = parse(&["--mode", "postgres2,postgres"]).unwrap().unwrap();
        assert_eq!(two.modes, Modes(vec![Mode::Postgres, Mode::Postgres2]));
        assert_eq!(two.modes.to_string(), "postgres,postgres2");
        assert!(parse(&["--mode", "postgres", "--database", "sqlite://x.db"]).is_err());
        assert!(parse(&["--mode", "all", "--database", "sqlite://x.db"]).is_err());
        assert!(parse(&["--mode", "server", "--database", "sqlite://x.db"]).is_ok());
        assert!(parse(&["--mode", "bogus"]).is_err());
        let scale = parse(&["--backlog", "1,000,000", "--history=1_000_000"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (scale.backlog, scale.history),
            (Some(1_000_000), Some(1_000_000))
        );
        assert_eq!((a.backlog, a.history), (None, None));
        assert!(parse(&["--backlog", "0"]).is_err());
        assert!(parse(&["--history", "many"]).is_err());
        assert!(parse(&["--tasks"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
