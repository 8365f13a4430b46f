//! The aims of the issues, checked against the medians, and the ratios between modes.

use super::*;

/// One aim of the issues, checked against the medians.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Aim {
    pub(super) mode: Mode,
    pub(super) aim: String,
    pub(super) value: String,
    pub(super) met: bool,
}

pub(super) fn aims(summaries: &[(Mode, Summary)]) -> Vec<Aim> {
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

pub(super) fn aims_json(aims: &[Aim]) -> Value {
    aims.iter()
        .map(
            |a| json!({ "mode": a.mode.to_string(), "aim": a.aim, "value": a.value, "met": a.met }),
        )
        .collect::<Vec<_>>()
        .into()
}

pub(super) fn print_aims(aims: &[Aim]) {
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
pub(super) struct Ratios {
    pub(super) enqueue_bulk: f64,
    pub(super) enqueue_single: f64,
    pub(super) drain: f64,
    pub(super) drain_per_run: Vec<f64>,
    pub(super) latency_p50: Option<f64>,
    pub(super) latency_p99: Option<f64>,
}

pub(super) fn ratios(reference: &[Figures], other: &[Figures]) -> Ratios {
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
