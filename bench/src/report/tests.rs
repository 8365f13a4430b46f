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
        cost: None,
        timers,
        durations: Value::Null,
        backlog: None,
        history: None,
        limited: None,
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

fn drain(count: u64, secs: f64) -> phases::Drain {
    phases::Drain {
        rate: phases::Rate {
            count,
            elapsed: Duration::from_secs_f64(secs),
        },
        bodies: Duration::from_secs_f64(secs),
        cpu_worker_s: None,
        cpu_engine_s: None,
        cpu_postgres_s: None,
        cost: None,
    }
}

fn figures(plain_s: f64, backlog_s: Option<f64>) -> Figures {
    let rate = phases::Rate {
        count: 20_000,
        elapsed: Duration::from_secs(1),
    };
    Figures {
        enqueue_bulk: rate,
        enqueue_single: rate,
        drain: drain(20_000, plain_s),
        latency: None,
        peak_rss_mb: None,
        engine_rss_mb: Vec::new(),
        timers: None,
        backlog: backlog_s.map(|s| crate::scale::Backlog {
            enqueue: rate,
            drain: drain(100_000, s),
        }),
        history: None,
        limited: None,
    }
}

fn args(flags: &[&str]) -> Args {
    crate::parse_args(flags.iter().map(|s| s.to_string()))
        .unwrap()
        .unwrap()
}

#[test]
fn backlog_is_reported_against_the_plain_drain_of_the_same_runs() {
    // Plain drains 10,000/s and 20,000/s (median 15,000); backlogs 5,000/s and 10,000/s.
    let runs = [figures(2.0, Some(20.0)), figures(1.0, Some(10.0))];
    let s = summarize(&runs);
    let b = s.backlog.clone().unwrap();
    assert_eq!((b.n, b.drain, b.ratio), (100_000, 7_500.0, 0.5));
    assert_eq!(b.ratio_per_run, [0.5, 0.5]);
    assert_eq!(s.history, None);
    let a = args(&["--backlog", "100000"]);
    assert_eq!(
        scale_lines(&a, Mode::Lite, &s),
        ["backlog: 100000 runs (enqueued in bulk at 20000/s) drained at 7500 tasks/s: 0.50 x the \
          plain 20000-run drain (ratio of the medians; per run: 0.50, 0.50)"]
    );
    let out = mode_json(&a, Mode::Lite, &runs);
    assert_eq!(out["backlog"]["ratio_to_drain"], json!(0.5));
    assert_eq!(out["per_run"][1]["backlog"]["drain"], json!(10_000));
}

#[test]
fn a_limited_drain_is_reported_against_the_plain_drain_of_the_same_runs() {
    // Plain drains 10,000/s and 20,000/s (median 15,000); limited 8,000/s and 16,000/s.
    let mut runs = [figures(2.0, None), figures(1.0, None)];
    for (r, s) in runs.iter_mut().zip([2.5, 1.25]) {
        r.limited = Some(crate::scale::Limited {
            keys: 100,
            enqueue: r.enqueue_bulk,
            drain: drain(20_000, s),
        });
    }
    let s = summarize(&runs);
    let l = s.limited.clone().unwrap();
    assert_eq!((l.n, l.drain, l.ratio), (100, 12_000.0, 0.8));
    assert_eq!(l.ratio_per_run, [0.8, 0.8]);
    let a = args(&["--limited", "100"]);
    assert_eq!(
        scale_lines(&a, Mode::Lite, &s),
        [
            "limited: drain of 20000 runs under a limit of 5 running per key over 100 keys: 12000 \
          tasks/s: 0.80 x the plain drain (ratio of the medians; per run: 0.80, 0.80)"
        ]
    );
    let out = mode_json(&a, Mode::Lite, &runs);
    assert_eq!(out["limited"]["ratio_to_drain"], json!(0.8));
    assert_eq!(out["per_run"][0]["limited"]["drain"], json!(8_000));
}

#[test]
fn without_scale_flags_the_output_has_no_scale_lines_or_keys() {
    let runs = [figures(2.0, None)];
    let a = args(&[]);
    let s = summarize(&runs);
    assert!(scale_lines(&a, Mode::Lite, &s).is_empty());
    let out = mode_json(&a, Mode::Lite, &runs);
    assert!(out.get("backlog").is_none() && out.get("history").is_none());
    assert!(out.get("limited").is_none());
    assert!(out["per_run"][0].get("backlog").is_none());
    assert_eq!(out["cost_per_run"], Value::Null);
}
