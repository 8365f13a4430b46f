//! `owlclaw::testing::TestEngine`: time moves when the test says, and what is due on the way
//! happens at once and in order: delayed runs, retries after their backoff, durable sleeps,
//! expiries and interval schedules, hours of them in a test that waits for none.

use owlclaw::testing::{RunAssert, TestEngine};
use owlclaw::{task, Context, CronRequest, ListFilter, RunStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fails its first two attempts (per input), then succeeds.
#[task(
    name = "clock.flaky",
    retries = 2,
    backoff_initial = "10m",
    backoff_max = "1h"
)]
async fn flaky(ctx: Context, key: String) -> anyhow::Result<u32> {
    static SEEN: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    let n = {
        let mut seen = SEEN.lock().unwrap();
        let n = seen
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default();
        *n += 1;
        *n
    };
    anyhow::ensure!(n > 2, "attempt {} fails", ctx.attempt());
    Ok(n)
}

/// Two steps a day apart.
#[task(name = "clock.sleeper")]
async fn sleeper(ctx: Context, _n: u32) -> anyhow::Result<String> {
    let before: String = ctx
        .step("before", || async {
            anyhow::Ok(ctx.client().now().to_rfc3339())
        })
        .await?;
    ctx.sleep_for(Duration::from_secs(86_400)).await?;
    let after: String = ctx
        .step("after", || async {
            anyhow::Ok(ctx.client().now().to_rfc3339())
        })
        .await?;
    Ok(format!("{before} {after}"))
}

#[task(name = "clock.tick")]
async fn tick(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_of_backoff_sleeps_delays_and_ticks_pass_at_once_in_order() {
    let started = Instant::now();
    let t = TestEngine::start().await.unwrap();
    let client = t.client();
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let t0 = t.now();

    // A delayed run waits for its time, then runs.
    let delayed = flaky::enqueue(client, "delayed".into())
        .delay(Duration::from_secs(2 * 3600))
        .retries(0)
        .await
        .unwrap();
    // Retries after 10 min and 20 min of backoff (with jitter: at least 5 and 10 min).
    let retried = flaky::enqueue(client, "retried".into()).await.unwrap();
    // A durable sleep of a day.
    let slept = sleeper::enqueue(client, 1).await.unwrap();
    // An hourly interval.
    client
        .create_cron(CronRequest {
            task: "clock.tick".into(),
            expr: "@every 1h".into(),
            ..CronRequest::default()
        })
        .await
        .unwrap();

    t.advance(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(
        client.status(delayed.id()).await.unwrap().status,
        RunStatus::Scheduled,
        "due in two hours"
    );
    let r = RunAssert::of(client, retried.id()).await.unwrap();
    r.status(RunStatus::Succeeded).attempts(3);
    let events = client.events(retried.id()).await.unwrap();
    let starts: Vec<_> = events
        .iter()
        .filter(|e| e.to == RunStatus::Running)
        .map(|e| e.at)
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(
        starts[1] - starts[0] >= chrono::Duration::minutes(5),
        "{starts:?}"
    );
    assert!(
        starts[2] - starts[1] >= chrono::Duration::minutes(10),
        "{starts:?}"
    );
    assert_eq!(
        client.status(slept.id()).await.unwrap().status,
        RunStatus::Scheduled,
        "asleep for a day"
    );

    t.advance(Duration::from_secs(23 * 3600 + 60))
        .await
        .unwrap();
    // The delayed run ran at its time (one attempt: its third call overall would succeed; its
    // first fails, retries 0): it failed, at two hours.
    let d = client.status(delayed.id()).await.unwrap();
    assert_eq!(d.status, RunStatus::Failed);
    let ran_at = d.started_at.unwrap();
    assert!(
        ran_at >= t0 + chrono::Duration::hours(2) && ran_at < t0 + chrono::Duration::hours(3),
        "{ran_at} (start {t0})"
    );
    // The sleeper woke a day later.
    let s = RunAssert::of(client, slept.id()).await.unwrap();
    s.status(RunStatus::Succeeded)
        .steps_succeeded(&["before", "sleep", "after"]);
    let out: String = slept.result().await.unwrap();
    let (before, after) = out.split_once(' ').unwrap();
    let gap = chrono::DateTime::parse_from_rfc3339(after).unwrap()
        - chrono::DateTime::parse_from_rfc3339(before).unwrap();
    assert!(gap >= chrono::Duration::hours(24), "{out}");
    // The interval ticked once an hour, in order.
    let mut ticks = client
        .list(ListFilter {
            task: Some("clock.tick".into()),
            limit: Some(100),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .runs;
    ticks.sort_by_key(|r| r.run_at);
    assert_eq!(
        ticks.len(),
        24,
        "{:?}",
        ticks.iter().map(|r| r.run_at).collect::<Vec<_>>()
    );
    assert!(ticks.iter().all(|r| r.status == RunStatus::Succeeded));
    let mut at = Vec::new();
    for r in &ticks {
        // The tick a run was fired for, from its first event's reason.
        let reason = client.events(r.id).await.unwrap()[0].reason.clone();
        let tick = reason.rsplit(' ').next().unwrap();
        at.push(chrono::DateTime::parse_from_rfc3339(tick).unwrap());
    }
    for w in at.windows(2) {
        assert_eq!(w[1] - w[0], chrono::Duration::hours(1), "{at:?}");
    }
    worker.shutdown().await.unwrap();
    // A day of engine time, in far less wall time (no assertion on it: a loaded machine is slow).
    eprintln!("a day of engine time took {:?}", started.elapsed());
}
