//! The `--json` object.

use super::*;

pub(super) fn round3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

pub(super) fn round2(v: f64) -> Value {
    json!((v * 100.0).round() / 100.0)
}

pub(super) fn lateness_json(l: Option<Lateness>) -> Value {
    l.map_or(Value::Null, |l| {
        json!({
            "n": l.n, "p50": round2(l.p50), "p99": round2(l.p99), "max": round2(l.max),
            "missed": l.missed,
        })
    })
}

pub(super) fn timers_run_json(t: &Timers) -> Value {
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

pub(super) fn late_json(l: Option<Late>) -> Value {
    l.map_or(Value::Null, |l| {
        json!({
            "p50": round2(l.p50), "p99": round2(l.p99), "n": l.n, "runs": l.runs,
            "missed": l.missed,
        })
    })
}

fn per_run_json(p: Option<crate::cost::PerRun>) -> Value {
    p.map_or(Value::Null, |p| {
        json!({
            "cs": round3(Some(p.cs)),
            "cs_voluntary": round3(Some(p.cs_voluntary)),
            "cs_involuntary": round3(Some(p.cs_involuntary)),
            "cpu_us": round2(p.cpu_us),
        })
    })
}

/// Cost per run: `worker`, `engines` (one per engine process), `postgres` (`{cs, cs_voluntary,
/// cs_involuntary, cpu_us}` each) and `postgres_xact`.
pub(super) fn cost_json(c: Option<&CostPerRun>) -> Value {
    c.map_or(Value::Null, |c| {
        json!({
            "worker": per_run_json(c.worker),
            "engines": c.engines.iter().map(|&e| per_run_json(Some(e))).collect::<Vec<_>>(),
            "postgres": per_run_json(c.postgres),
            "postgres_xact": c.xact.map_or(Value::Null, |x| round3(Some(x))),
        })
    })
}

/// A scale phase in the summary: `{n, drain, enqueue_bulk, ratio_to_drain,
/// ratio_to_drain_per_run, cost_per_run}`.
fn scale_json(s: &ScaleSummary) -> Value {
    json!({
        "n": s.n,
        "drain": s.drain.round() as u64,
        "enqueue_bulk": s.enqueue_bulk.round() as u64,
        "ratio_to_drain": round3(Some(s.ratio)),
        "ratio_to_drain_per_run": s.ratio_per_run.iter().map(|&x| round3(Some(x))).collect::<Vec<_>>(),
        "cost_per_run": cost_json(s.cost.as_ref()),
    })
}

/// A scale phase of one run.
fn scale_run_json(n: u64, enqueue: &crate::phases::Rate, drain: &crate::phases::Drain) -> Value {
    json!({
        "n": n,
        "enqueue_bulk": enqueue.per_s().round() as u64,
        "drain": drain.rate.per_s().round() as u64,
        "drain_s": round3(Some(drain.rate.elapsed.as_secs_f64())),
        "cost_per_run": cost_json(drain.cost.as_ref().map(|c| c.per_run()).as_ref()),
    })
}

/// Adds `backlog`, `history` and `limited` to `out` when they were measured (the keys are
/// absent otherwise, so the default output is unchanged).
fn add_scale(out: &mut Value, scale: [(&str, Option<Value>); 3]) {
    for (key, value) in scale {
        if let Some(v) = value {
            out[key] = v;
        }
    }
}

pub(super) fn run_json(r: &Figures) -> Value {
    let mut out = json!({
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
        "cost_per_run": cost_json(r.drain.cost.as_ref().map(|c| c.per_run()).as_ref()),
        "timer_lateness_ms": r.timers.as_ref().map_or(Value::Null, timers_run_json),
        "durations_s": {
            "enqueue_bulk": round3(Some(r.enqueue_bulk.elapsed.as_secs_f64())),
            "enqueue_single": round3(Some(r.enqueue_single.elapsed.as_secs_f64())),
            "drain": round3(Some(r.drain.rate.elapsed.as_secs_f64())),
            "drain_last_body_start": round3(Some(r.drain.bodies.as_secs_f64())),
            "latency_phase": round3(r.latency.map(|l| l.span.as_secs_f64())),
        },
    });
    add_scale(
        &mut out,
        [
            (
                "backlog",
                r.backlog
                    .as_ref()
                    .map(|b| scale_run_json(b.drain.rate.count, &b.enqueue, &b.drain)),
            ),
            (
                "history",
                r.history.as_ref().map(|h| {
                    let mut v = scale_run_json(h.finished, &h.enqueue_bulk, &h.drain);
                    v["fill_s"] = round3(Some(h.fill.as_secs_f64()));
                    v
                }),
            ),
            (
                "limited",
                r.limited
                    .as_ref()
                    .map(|l| scale_run_json(l.keys, &l.enqueue, &l.drain)),
            ),
        ],
    );
    out
}

/// The JSON object of one mode (with a single `--mode`, the whole output but for `aims`).
pub(super) fn mode_json(args: &Args, mode: Mode, runs: &[Figures]) -> Value {
    let s = summarize(runs);
    let mut out = json!({
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
        "cost_per_run": cost_json(s.cost.as_ref()),
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
    });
    add_scale(
        &mut out,
        [
            ("backlog", s.backlog.as_ref().map(scale_json)),
            ("history", s.history.as_ref().map(scale_json)),
            ("limited", s.limited.as_ref().map(scale_json)),
        ],
    );
    out
}
