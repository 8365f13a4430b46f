//! Cost per run (a diagnostic beside the drain, BENCH.md): the CPU time and the context switches
//! that each of our processes, and PostgreSQL's, spent over the measured drain, divided by the
//! runs drained.
//!
//! Where each figure comes from (Linux):
//!
//! - **this process** (the worker and the enqueuing client; in lite mode the engine too):
//!   `getrusage(RUSAGE_SELF)`, which sums every thread, *including threads that exited* during
//!   the interval, with CPU in µs. Through `nix`, since the workspace forbids `unsafe`.
//! - **an engine process** (server modes): CPU is `utime + stime` of `/proc/<pid>/stat` (the whole
//!   thread group, dead threads included; in clock ticks of 10 ms). Context switches are summed
//!   over `/proc/<pid>/task/*/status` (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`):
//!   `/proc/<pid>/status` alone gives only the main thread's. A thread that started during the
//!   interval counts from zero; one that *exited* during the interval is lost (the kernel keeps
//!   dead threads' switches only for `getrusage`, which no process can ask about another).
//! - **PostgreSQL's processes** (postgres modes, see `pg::PgProbe`): each is single-threaded, so
//!   `/proc/<pid>/stat` and `/proc/<pid>/status` are exact; a backend that ended during the
//!   interval is lost, one that started counts from zero.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Linux's `USER_HZ`: the unit of `utime` and `stime` in `/proc/<pid>/stat`.
const TICKS_PER_S: u64 = 100;

/// CPU time and context switches, summed over some processes or threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Usage {
    /// User + system CPU time, µs.
    pub(crate) cpu_us: u64,
    /// Voluntary context switches (the thread blocked: a futex, a socket, a disk wait).
    pub(crate) voluntary: u64,
    /// Involuntary ones (the thread was preempted).
    pub(crate) involuntary: u64,
}

impl Usage {
    /// What was spent from `before` to `self` (never negative).
    pub(crate) fn since(self, before: Usage) -> Usage {
        Usage {
            cpu_us: self.cpu_us.saturating_sub(before.cpu_us),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }

    fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu_us: self.cpu_us + other.cpu_us,
            voluntary: self.voluntary + other.voluntary,
            involuntary: self.involuntary + other.involuntary,
        }
    }

    /// The same, per run, for `runs` runs.
    pub(crate) fn per_run(self, runs: u64) -> PerRun {
        let n = runs.max(1) as f64;
        PerRun {
            cs: (self.voluntary + self.involuntary) as f64 / n,
            cs_voluntary: self.voluntary as f64 / n,
            cs_involuntary: self.involuntary as f64 / n,
            cpu_us: self.cpu_us as f64 / n,
        }
    }
}

/// Usage per id (a thread of one process, or a process), read at one moment.
pub(crate) type Sample = HashMap<u32, Usage>;

/// What the ids of `after` spent since `before`: an id absent from `before` (a thread or a
/// connection that started in between) counts from zero; an id absent from `after` (it ended in
/// between) is not counted.
pub(crate) fn spent(before: &Sample, after: &Sample) -> Usage {
    after
        .iter()
        .map(|(id, a)| a.since(before.get(id).copied().unwrap_or_default()))
        .fold(Usage::default(), Usage::plus)
}

/// This process, every thread including those that exited: `getrusage(RUSAGE_SELF)`.
pub(crate) fn this_process() -> Option<Usage> {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike as _;
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let cpu_us = u.user_time().num_microseconds() + u.system_time().num_microseconds();
    Some(Usage {
        cpu_us: u64::try_from(cpu_us).ok()?,
        voluntary: u64::try_from(u.voluntary_context_switches()).ok()?,
        involuntary: u64::try_from(u.involuntary_context_switches()).ok()?,
    })
}

/// Another process, read from `/proc`: its CPU time (every thread, dead ones included) and
/// each live thread's context switches.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcSample {
    cpu_us: u64,
    /// Context switches per thread id (`cpu_us` left at 0).
    threads: Sample,
}

impl ProcSample {
    /// Reads process `pid`; `None` if it is gone.
    pub(crate) fn read(pid: u32) -> Option<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let cpu_us = stat_cpu_ticks(&stat)? * (1_000_000 / TICKS_PER_S);
        let mut threads = Sample::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read: skip it.
            if let Ok(status) = std::fs::read_to_string(entry.path().join("status")) {
                if let Some((voluntary, involuntary)) = status_ctxt_switches(&status) {
                    threads.insert(
                        tid,
                        Usage {
                            cpu_us: 0,
                            voluntary,
                            involuntary,
                        },
                    );
                }
            }
        }
        Some(ProcSample { cpu_us, threads })
    }

    /// What the process spent from `before` to `self` (see [`spent`] for the threads).
    pub(crate) fn since(&self, before: &ProcSample) -> Usage {
        let switches = spent(&before.threads, &self.threads);
        Usage {
            cpu_us: self.cpu_us.saturating_sub(before.cpu_us),
            ..switches
        }
    }
}

/// A single-threaded process (a PostgreSQL backend): CPU and context switches from `/proc`.
pub(crate) fn single_threaded(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let (voluntary, involuntary) = status_ctxt_switches(&status)?;
    Some(Usage {
        cpu_us: stat_cpu_ticks(&stat)? * (1_000_000 / TICKS_PER_S),
        voluntary,
        involuntary,
    })
}

/// `utime + stime` (clock ticks) from the text of `/proc/<pid>/stat`.
pub(crate) fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // After the command name (in parentheses, possibly with spaces and parentheses of its own):
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(ticks(11)? + ticks(12)?)
}

/// (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`) from the text of
/// `/proc/<pid>/status` or `/proc/<pid>/task/<tid>/status`.
pub(crate) fn status_ctxt_switches(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some((
        field("voluntary_ctxt_switches")?,
        field("nonvoluntary_ctxt_switches")?,
    ))
}

/// Per-run figures of one process or group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PerRun {
    /// Context switches, voluntary + involuntary.
    pub(crate) cs: f64,
    pub(crate) cs_voluntary: f64,
    pub(crate) cs_involuntary: f64,
    /// CPU µs, user + system.
    pub(crate) cpu_us: f64,
}

/// What the drain cost: totals over the measured interval, for `runs` runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cost {
    pub(crate) runs: u64,
    /// This process (worker and client; in lite mode the engine too).
    pub(crate) worker: Option<Usage>,
    /// Each engine process (server modes; two in `postgres2`).
    pub(crate) engines: Vec<Usage>,
    /// PostgreSQL's processes of the database, with the WAL writer, checkpointer and background
    /// writer (postgres modes).
    pub(crate) postgres: Option<Usage>,
    /// `pg_stat_database.xact_commit` of the database over the drain (postgres modes).
    pub(crate) xact_commit: Option<u64>,
}

impl Cost {
    pub(crate) fn per_run(&self) -> CostPerRun {
        CostPerRun {
            worker: self.worker.map(|u| u.per_run(self.runs)),
            engines: self.engines.iter().map(|u| u.per_run(self.runs)).collect(),
            postgres: self.postgres.map(|u| u.per_run(self.runs)),
            xact: self.xact_commit.map(|x| x as f64 / self.runs.max(1) as f64),
        }
    }
}

/// [`Cost`] divided by the runs (or the medians of that over several runs).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CostPerRun {
    pub(crate) worker: Option<PerRun>,
    pub(crate) engines: Vec<PerRun>,
    pub(crate) postgres: Option<PerRun>,
    pub(crate) xact: Option<f64>,
}

impl CostPerRun {
    /// The median of each figure over `runs` (a figure missing from one run is left out).
    pub(crate) fn median(runs: &[CostPerRun], median: impl Fn(Vec<f64>) -> f64) -> CostPerRun {
        let per_run = |get: &dyn Fn(&CostPerRun) -> Option<PerRun>| -> Option<PerRun> {
            let all: Vec<PerRun> = runs.iter().map(get).collect::<Option<_>>()?;
            (!all.is_empty()).then(|| PerRun {
                cs: median(all.iter().map(|p| p.cs).collect()),
                cs_voluntary: median(all.iter().map(|p| p.cs_voluntary).collect()),
                cs_involuntary: median(all.iter().map(|p| p.cs_involuntary).collect()),
                cpu_us: median(all.iter().map(|p| p.cpu_us).collect()),
            })
        };
        let engines = runs.iter().map(|r| r.engines.len()).min().unwrap_or(0);
        CostPerRun {
            worker: per_run(&|r| r.worker),
            engines: (0..engines)
                .filter_map(|i| per_run(&|r| r.engines.get(i).copied()))
                .collect(),
            postgres: per_run(&|r| r.postgres),
            xact: runs
                .iter()
                .map(|r| r.xact)
                .collect::<Option<Vec<f64>>>()
                .filter(|v| !v.is_empty())
                .map(median),
        }
    }

    /// The engines together (server modes).
    pub(crate) fn engines_total(&self) -> Option<PerRun> {
        self.engines.iter().copied().reduce(|a, b| PerRun {
            cs: a.cs + b.cs,
            cs_voluntary: a.cs_voluntary + b.cs_voluntary,
            cs_involuntary: a.cs_involuntary + b.cs_involuntary,
            cpu_us: a.cpu_us + b.cpu_us,
        })
    }

    /// `worker: cs=.. (vol .. + invol ..) cpu_us=.. | engine: .. | pg: xact=.. cs=.. cpu_us=..`
    /// (`lite` is true when the worker's process is the engine's too).
    pub(crate) fn line(&self, lite: bool) -> String {
        let one = |p: Option<PerRun>| match p {
            Some(p) => format!(
                "cs={:.2} (vol {:.2} + invol {:.2}) cpu_us={:.1}",
                p.cs, p.cs_voluntary, p.cs_involuntary, p.cpu_us
            ),
            None => "n/a".to_string(),
        };
        let mut parts = vec![format!(
            "{}: {}",
            if lite { "worker+engine" } else { "worker" },
            one(self.worker)
        )];
        match self.engines.as_slice() {
            [] => {}
            [e] => parts.push(format!("engine: {}", one(Some(*e)))),
            engines => {
                for (i, e) in engines.iter().enumerate() {
                    parts.push(format!(
                        "engine {}: {}",
                        (b'A' + i as u8) as char,
                        one(Some(*e))
                    ));
                }
            }
        }
        if self.xact.is_some() || self.postgres.is_some() {
            let xact = self.xact.map_or("n/a".to_string(), |x| format!("{x:.3}"));
            parts.push(format!("pg: xact={xact} {}", one(self.postgres)));
        }
        format!("cost_per_run {}", parts.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_context_switches_from_a_status_file() {
        let status = "Name:\ttokio-runtime-w\nState:\tS (sleeping)\nTgid:\t4242\n\
                      voluntary_ctxt_switches:\t1503\nnonvoluntary_ctxt_switches:\t27\n";
        assert_eq!(status_ctxt_switches(status), Some((1503, 27)));
        // Both lines are needed, and `nonvoluntary_` is not mistaken for `voluntary_`.
        assert_eq!(
            status_ctxt_switches("nonvoluntary_ctxt_switches:\t3\n"),
            None
        );
        assert_eq!(status_ctxt_switches(""), None);
    }

    #[test]
    fn reads_cpu_ticks_after_a_command_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
        // stime ...
        let stat = "77 (postgres: a (b) c) S 1 77 77 0 -1 4194560 900 0 0 0 250 30 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), Some(280));
        assert_eq!(stat_cpu_ticks("77 (x) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn threads_that_start_count_from_zero_and_threads_that_exit_are_lost() {
        let u = |cpu_us, voluntary, involuntary| Usage {
            cpu_us,
            voluntary,
            involuntary,
        };
        let before: Sample = [(1, u(100, 10, 1)), (2, u(50, 5, 0))].into();
        let after: Sample = [(1, u(160, 14, 2)), (3, u(20, 3, 1))].into();
        assert_eq!(spent(&before, &after), u(80, 7, 2));
        let proc_before = ProcSample {
            cpu_us: 1_000,
            threads: before,
        };
        let proc_after = ProcSample {
            cpu_us: 1_500,
            threads: after,
        };
        // CPU from the process's own total (dead threads included), switches from the threads.
        assert_eq!(proc_after.since(&proc_before), u(500, 7, 2));
    }

    #[test]
    fn cost_per_run_line() {
        let u = |cpu_us, voluntary, involuntary| Usage {
            cpu_us,
            voluntary,
            involuntary,
        };
        let lite = Cost {
            runs: 1000,
            worker: Some(u(250_000, 8_000, 100)),
            ..Cost::default()
        };
        assert_eq!(
            lite.per_run().line(true),
            "cost_per_run worker+engine: cs=8.10 (vol 8.00 + invol 0.10) cpu_us=250.0"
        );
        let pg2 = Cost {
            runs: 1000,
            worker: Some(u(40_000, 3_000, 10)),
            engines: vec![u(30_000, 1_000, 0), u(20_000, 500, 0)],
            postgres: Some(u(150_000, 2_000, 50)),
            xact_commit: Some(190),
        };
        assert_eq!(
            pg2.per_run().line(false),
            "cost_per_run worker: cs=3.01 (vol 3.00 + invol 0.01) cpu_us=40.0 \
             | engine A: cs=1.00 (vol 1.00 + invol 0.00) cpu_us=30.0 \
             | engine B: cs=0.50 (vol 0.50 + invol 0.00) cpu_us=20.0 \
             | pg: xact=0.190 cs=2.05 (vol 2.00 + invol 0.05) cpu_us=150.0"
        );
        assert_eq!(pg2.per_run().engines_total().map(|e| e.cs), Some(1.5));
    }

    #[test]
    fn medians_of_cost_per_run() {
        let p = |cs: f64, cpu_us: f64| PerRun {
            cs,
            cs_voluntary: cs,
            cs_involuntary: 0.0,
            cpu_us,
        };
        let runs = [
            CostPerRun {
                worker: Some(p(1.0, 10.0)),
                engines: vec![p(2.0, 20.0)],
                postgres: None,
                xact: Some(0.2),
            },
            CostPerRun {
                worker: Some(p(3.0, 30.0)),
                engines: vec![p(4.0, 40.0)],
                postgres: None,
                xact: Some(0.4),
            },
            CostPerRun {
                worker: Some(p(2.0, 50.0)),
                engines: vec![p(6.0, 60.0)],
                postgres: None,
                xact: Some(0.3),
            },
        ];
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let m = CostPerRun::median(&runs, median);
        assert_eq!(m.worker, Some(p(2.0, 30.0)));
        assert_eq!(m.engines, vec![p(4.0, 40.0)]);
        assert_eq!(m.postgres, None);
        assert_eq!(m.xact, Some(0.3));
    }
}
