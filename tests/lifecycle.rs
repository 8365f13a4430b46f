//! The run life cycle in lite mode, end to end: a real SQLite file, a real embedded engine and
//! real workers.

use owlclaw::{task, Context, DateTime, Error, ListFilter, RunHandle, RunStatus, Utc};
use owlclaw_tests::{both_backends, eventually, finished, TestEnv, HEARTBEAT};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "common/tasks.rs"]
mod tasks;

/// Per-test shared state, keyed by a string each test puts in its inputs.
fn log() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static LOG: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

fn record(key: &str, what: impl Into<String>) {
    log()
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_default()
        .push(what.into());
}

fn recorded(key: &str) -> Vec<String> {
    log().lock().unwrap().get(key).cloned().unwrap_or_default()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Job {
    key: String,
    label: String,
}

#[task(retries = 1)]
async fn echo(_ctx: Context, job: Job) -> anyhow::Result<String> {
    record(&job.key, job.label.clone());
    Ok(format!("echo {}", job.label))
}

#[task(
    retries = 3,
    backoff_initial = "100ms",
    backoff_factor = 2.0,
    backoff_max = "10s"
)]
async fn always_fails(ctx: Context, key: String) -> anyhow::Result<()> {
    record(&key, format!("attempt {}", ctx.attempt()));
    anyhow::bail!("boom on attempt {}", ctx.attempt())
}

#[task(retries = 1, timeout = "200ms")]
async fn too_slow(ctx: Context, key: String) -> anyhow::Result<()> {
    record(&key, format!("attempt {}", ctx.attempt()));
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

/// Waits for cancellation and reports that it saw it.
#[task(timeout = "1m")]
async fn cancellable(ctx: Context, key: String) -> anyhow::Result<()> {
    record(&key, "started");
    ctx.cancelled().await;
    record(&key, "saw cancellation");
    Ok(())
}

/// Drop guard that records when the task's future is dropped.
struct OnDrop(String);
impl Drop for OnDrop {
    fn drop(&mut self) {
        record(&self.0, "dropped");
    }
}

/// Ignores cancellation: its future must be dropped after the grace period.
#[task(timeout = "1m")]
async fn stubborn(_ctx: Context, key: String) -> anyhow::Result<()> {
    let _guard = OnDrop(key.clone());
    record(&key, "started");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// Slow the first time it runs, fast afterwards.
#[task(timeout = "1m")]
async fn slow_first(_ctx: Context, key: String) -> anyhow::Result<u32> {
    let n = recorded(&key).len() as u32;
    record(&key, "started");
    if n == 0 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(n)
}

#[task(timeout = "1m")]
async fn sleeps(_ctx: Context, ms: u64) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[task]
async fn spawner(ctx: Context, key: String) -> anyhow::Result<String> {
    let child = echo::schedule(
        &ctx,
        Job {
            key: key.clone(),
            label: "child".into(),
        },
        Duration::from_millis(50),
    )
    .await?;
    Ok(child.id().to_string())
}

async fn a_run_goes_queued_running_succeeded_with_one_event_per_transition(env: TestEnv) {
    let client = env.client().await;
    let run = echo::enqueue(
        &client,
        Job {
            key: "lc".into(),
            label: "hello".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run.status().await.unwrap(),
        RunStatus::Queued,
        "no worker yet"
    );
    let worker = client.worker("w").task::<echo>().start().await.unwrap();
    assert_eq!(run.result().await.unwrap(), "echo hello");
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(snap.attempt, 1);
    assert_eq!(snap.max_attempts, 2);
    assert_eq!(snap.output, Some(serde_json::json!("echo hello")));
    assert_eq!(snap.worker.as_deref(), Some("w"));
    assert!(snap.started_at.is_some() && snap.finished_at.is_some());
    let events = run.events().await.unwrap();
    let path: Vec<(Option<RunStatus>, RunStatus)> = events.iter().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        path,
        vec![
            (None, RunStatus::Queued),
            (Some(RunStatus::Queued), RunStatus::Running),
            (Some(RunStatus::Running), RunStatus::Succeeded),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(events[1].worker.as_deref(), Some("w"));
    worker.shutdown().await.unwrap();
}

async fn illegal_transitions_are_refused_and_change_nothing(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").task::<echo>().start().await.unwrap();
    let run = echo::enqueue(
        &client,
        Job {
            key: "ill".into(),
            label: "x".into(),
        },
    )
    .await
    .unwrap();
    run.result().await.unwrap();
    let before = run.events().await.unwrap().len();
    match client.cancel(run.id()).await {
        Err(Error::InvalidTransition {
            status: RunStatus::Succeeded,
            action: "cancel",
            ..
        }) => {}
        other => panic!("cancel of a finished run: {other:?}"),
    }
    match client.retry(run.id()).await {
        Err(Error::InvalidTransition {
            status: RunStatus::Succeeded,
            action: "retry",
            ..
        }) => {}
        other => panic!("retry of a succeeded run: {other:?}"),
    }
    assert_eq!(run.status().await.unwrap(), RunStatus::Succeeded);
    assert_eq!(run.events().await.unwrap().len(), before);
    let missing = owlclaw::RunId::new();
    assert!(matches!(
        client.status(missing).await,
        Err(Error::NotFound { what: "run", .. })
    ));
    worker.shutdown().await.unwrap();
}

async fn higher_priority_runs_first_and_fifo_within_a_priority(env: TestEnv) {
    let client = env.client().await;
    let key = format!("{:?}-prio", env.backend());
    let plan = [
        (5, "a5"),
        (1, "b1"),
        (9, "c9"),
        (5, "d5"),
        (9, "e9"),
        (1, "f1"),
        (10, "g10"),
    ];
    let mut ids = Vec::new();
    for (p, label) in plan {
        let h = echo::enqueue(
            &client,
            Job {
                key: key.clone(),
                label: label.into(),
            },
        )
        .priority(p)
        .await
        .unwrap();
        ids.push(h.id());
    }
    let worker = client
        .worker("w")
        .task::<echo>()
        .slots(1)
        .start()
        .await
        .unwrap();
    for id in ids {
        finished(&client, id).await;
    }
    assert_eq!(recorded(&key), ["g10", "c9", "e9", "a5", "d5", "b1", "f1"]);
    let bad = echo::enqueue(
        &client,
        Job {
            key: key.clone(),
            label: "bad".into(),
        },
    )
    .priority(11)
    .await;
    assert!(
        matches!(bad, Err(Error::InvalidInput { ref field, .. }) if field == "priority"),
        "{bad:?}"
    );
    worker.shutdown().await.unwrap();
}

async fn retries_count_attempts_keep_each_error_and_back_off_exponentially(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<always_fails>()
        .start()
        .await
        .unwrap();
    let run = always_fails::enqueue(&client, key("retry")).await.unwrap();
    let snap = finished(&client, run.id()).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!((snap.attempt, snap.max_attempts), (4, 4));
    assert_eq!(
        recorded(&key("retry")),
        ["attempt 1", "attempt 2", "attempt 3", "attempt 4"]
    );
    let errors: Vec<(u32, &str)> = snap
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (1, "boom on attempt 1"),
            (2, "boom on attempt 2"),
            (3, "boom on attempt 3"),
            (4, "boom on attempt 4")
        ]
    );
    assert_eq!(snap.error.as_deref(), Some("boom on attempt 4"));
    match run.result().await {
        Err(Error::Task { message, .. }) => assert_eq!(message, "boom on attempt 4"),
        other => panic!("{other:?}"),
    }
    // The backoff before attempt n+1 is drawn in [d/2, d] with d = 100ms * 2^(n-1): the scheduled
    // due time (run_at) of each retry, relative to the failure, grows with the attempt.
    let events = run.events().await.unwrap();
    let retries: Vec<_> = events
        .iter()
        .filter(|e| e.to == RunStatus::Scheduled)
        .collect();
    assert_eq!(retries.len(), 3, "{events:#?}");
    let claims: Vec<_> = events
        .iter()
        .filter(|e| e.to == RunStatus::Running)
        .collect();
    assert_eq!(claims.len(), 4);
    for (i, failure) in retries.iter().enumerate() {
        let base = 100.0 * 2f64.powi(i as i32);
        let waited = (claims[i + 1].at - failure.at).num_microseconds().unwrap() as f64 / 1000.0;
        assert!(
            waited >= base / 2.0 - 1.0,
            "retry {i}: waited {waited} ms, backoff base {base} ms"
        );
        assert!(failure.reason.contains("retrying in"), "{}", failure.reason);
    }
    worker.shutdown().await.unwrap();
}

async fn a_task_past_its_timeout_is_stopped_and_the_attempt_fails_with_timeout(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client.worker("w").task::<too_slow>().start().await.unwrap();
    let run = too_slow::enqueue(&client, key("timeout")).await.unwrap();
    let snap = finished(&client, run.id()).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(snap.attempt, 2, "retried once after the first timeout");
    assert_eq!(recorded(&key("timeout")), ["attempt 1", "attempt 2"]);
    assert!(
        snap.errors
            .iter()
            .all(|e| e.error == "timed out after 200ms"),
        "{:?}",
        snap.errors
    );
    worker.shutdown().await.unwrap();
}

async fn queued_and_scheduled_runs_are_cancelled_at_once_and_never_run(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let queued = echo::enqueue(
        &client,
        Job {
            key: key("cq"),
            label: "queued".into(),
        },
    )
    .await
    .unwrap();
    let scheduled = echo::schedule(
        &client,
        Job {
            key: key("cq"),
            label: "scheduled".into(),
        },
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(scheduled.status().await.unwrap(), RunStatus::Scheduled);
    assert_eq!(queued.cancel().await.unwrap().status, RunStatus::Cancelled);
    assert_eq!(
        scheduled.cancel().await.unwrap().status,
        RunStatus::Cancelled
    );
    let worker = client.worker("w").task::<echo>().start().await.unwrap();
    let marker = echo::schedule(
        &client,
        Job {
            key: key("cq"),
            label: "marker".into(),
        },
        Duration::from_millis(400),
    )
    .await
    .unwrap();
    marker.result().await.unwrap();
    assert_eq!(
        recorded(&key("cq")),
        ["marker"],
        "cancelled runs must never start"
    );
    assert!(matches!(
        queued.result().await,
        Err(Error::Cancelled { .. })
    ));
    let events = scheduled.events().await.unwrap();
    assert_eq!(
        events.last().map(|e| (e.from, e.to)),
        Some((Some(RunStatus::Scheduled), RunStatus::Cancelled))
    );
    worker.shutdown().await.unwrap();
}

async fn cancelling_a_running_run_reaches_its_task_through_ctx_cancelled(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<cancellable>()
        .start()
        .await
        .unwrap();
    let run = cancellable::enqueue(&client, key("cr")).await.unwrap();
    eventually("the task to start", Duration::from_secs(10), || async {
        recorded(&key("cr"))
            .contains(&"started".to_string())
            .then_some(())
    })
    .await;
    let snap = run.cancel().await.unwrap();
    assert_eq!(snap.status, RunStatus::Cancelled);
    let t0 = Instant::now();
    eventually(
        "the task to see ctx.cancelled()",
        Duration::from_secs(10),
        || async {
            recorded(&key("cr"))
                .contains(&"saw cancellation".to_string())
                .then_some(())
        },
    )
    .await;
    // Reached within a few heartbeats (the exact latency is a benchmark figure, not a test).
    assert!(t0.elapsed() < HEARTBEAT * 20, "took {:?}", t0.elapsed());
    assert_eq!(run.status().await.unwrap(), RunStatus::Cancelled);
    worker.shutdown().await.unwrap();
}

async fn a_task_ignoring_cancellation_is_dropped_after_the_grace_period_and_frees_its_slot(
    env: TestEnv,
) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<stubborn>()
        .task::<echo>()
        .slots(1)
        .cancel_grace(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let run = stubborn::enqueue(&client, key("grace")).await.unwrap();
    eventually("start", Duration::from_secs(10), || async {
        (!recorded(&key("grace")).is_empty()).then_some(())
    })
    .await;
    let next = echo::enqueue(
        &client,
        Job {
            key: key("grace"),
            label: "after".into(),
        },
    )
    .await
    .unwrap();
    run.cancel().await.unwrap();
    next.result().await.unwrap();
    assert_eq!(recorded(&key("grace")), ["started", "dropped", "after"]);
    worker.shutdown().await.unwrap();
}

async fn graceful_shutdown_finishes_short_runs_and_hands_back_the_rest_without_counting_an_attempt(
    env: TestEnv,
) {
    let client = env.client().await;
    let worker = client
        .worker("first")
        .task::<slow_first>()
        .task::<sleeps>()
        .slots(4)
        .shutdown_grace(Duration::from_millis(700))
        .start()
        .await
        .unwrap();
    let short = sleeps::enqueue(&client, 300).await.unwrap();
    let long = slow_first::enqueue(&client, format!("{:?}-handback", env.backend()))
        .await
        .unwrap();
    eventually("both running", Duration::from_secs(10), || async {
        let a = short.status().await.unwrap() == RunStatus::Running;
        let b = long.status().await.unwrap() == RunStatus::Running;
        (a && b).then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!(
        short.status().await.unwrap(),
        RunStatus::Succeeded,
        "finished within the grace period"
    );
    let snap = long.snapshot().await.unwrap();
    assert_eq!(
        snap.status,
        RunStatus::Queued,
        "handed back, re-queued at once"
    );
    assert_eq!(snap.attempt, 0, "a hand-back is not an attempt");
    assert_eq!(
        snap.worker, None,
        "no worker holds a handed-back run: {snap:?}"
    );
    assert_eq!(snap.started_at, None, "no attempt is under way: {snap:?}");
    let last = long.events().await.unwrap().pop().unwrap();
    assert_eq!(
        (last.from, last.to),
        (Some(RunStatus::Running), RunStatus::Queued)
    );
    assert!(last.reason.contains("handed back"), "{}", last.reason);
    // Another worker picks it up and finishes it as attempt 1.
    let worker = client
        .worker("second")
        .task::<slow_first>()
        .start()
        .await
        .unwrap();
    assert_eq!(long.result().await.unwrap(), 1);
    let snap = long.snapshot().await.unwrap();
    assert_eq!((snap.attempt, snap.worker.as_deref()), (1, Some("second")));
    worker.shutdown().await.unwrap();
}

/// How many runs of `task` the store shows as running (claimed by a worker, started or not).
async fn running(client: &owlclaw::Client, task: &str) -> usize {
    let page = client
        .list(ListFilter {
            status: Some(RunStatus::Running),
            task: Some(task.into()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    page.runs.len()
}

async fn short_runs_are_claimed_ahead_and_handed_back_at_shutdown_without_an_attempt(env: TestEnv) {
    let client = env.client().await;
    let runs = client
        .enqueue_bulk::<sleeps>(std::iter::repeat_n(2, 400))
        .await
        .unwrap();
    let worker = client
        .worker("ahead")
        .task::<sleeps>()
        .slots(2)
        .prefetch(30)
        .start()
        .await
        .unwrap();
    // Runs of 2 ms: the worker holds more runs than it has slots.
    eventually(
        "runs claimed ahead of the slots",
        Duration::from_secs(20),
        || async { (running(&client, "sleeps").await > 2).then_some(()) },
    )
    .await;
    worker.shutdown().await.unwrap();
    // What it claimed ahead went back to the queue with the rest of its unfinished runs.
    assert_eq!(running(&client, "sleeps").await, 0, "nothing left running");
    let worker = client
        .worker("after")
        .task::<sleeps>()
        .start()
        .await
        .unwrap();
    for run in &runs {
        let snap = finished(&client, run.id()).await;
        assert_eq!(
            (snap.status, snap.attempt),
            (RunStatus::Succeeded, 1),
            "a run claimed ahead and handed back ran once, as attempt 1: {snap:?}"
        );
    }
    worker.shutdown().await.unwrap();
}

async fn long_runs_are_not_claimed_ahead(env: TestEnv) {
    let client = env.client().await;
    let runs = client
        .enqueue_bulk::<sleeps>(std::iter::repeat_n(300, 4))
        .await
        .unwrap();
    let worker = client
        .worker("one-at-a-time")
        .task::<sleeps>()
        .slots(1)
        .start()
        .await
        .unwrap();
    // A run of 300 ms is past what one slot starts within the claim-ahead horizon (20 ms): the
    // worker never holds more runs than its one slot, so the others stay queued for any worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held = running(&client, "sleeps").await;
        assert!(held <= 1, "{held} runs held by a worker with one slot");
        let mut done = 0;
        for run in &runs {
            if run.status().await.unwrap() == RunStatus::Succeeded {
                done += 1;
            }
        }
        if done == runs.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of 4 runs done after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
}

async fn a_run_longer_than_its_lease_keeps_it_through_heartbeats(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").task::<sleeps>().start().await.unwrap();
    // Lease is 1 s in tests; the run takes 2.5 s.
    let run = sleeps::enqueue(&client, 2500).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 2500);
    let snap = run.snapshot().await.unwrap();
    assert_eq!(
        snap.attempt,
        1,
        "never re-queued: {:?}",
        run.events().await.unwrap()
    );
    worker.shutdown().await.unwrap();
}

async fn a_delayed_run_is_woken_by_its_due_time_not_by_polling(env: TestEnv) {
    // A poll interval far longer than the test: only the due-time wake-up can start the run.
    env.set_engine(|e| e.poll_interval = Duration::from_secs(3600));
    let client = env.client().await;
    let worker = client.worker("w").task::<echo>().start().await.unwrap();
    let run = echo::schedule(
        &client,
        Job {
            key: "delay".into(),
            label: "late".into(),
        },
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Scheduled);
    assert_eq!(
        run.result_timeout(Duration::from_secs(20)).await.unwrap(),
        "echo late"
    );
    let snap = run.snapshot().await.unwrap();
    assert!(
        snap.started_at.unwrap() >= snap.run_at,
        "started before it was due"
    );
    let at = owlclaw::Utc::now() + chrono::Duration::milliseconds(200);
    let at_run = echo::schedule_at(
        &client,
        Job {
            key: "delay".into(),
            label: "at".into(),
        },
        at,
    )
    .await
    .unwrap();
    at_run
        .result_timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(at_run.snapshot().await.unwrap().started_at.unwrap() >= at);
    worker.shutdown().await.unwrap();
}

async fn a_task_can_schedule_another_run_which_records_its_parent(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<spawner>()
        .task::<echo>()
        .start()
        .await
        .unwrap();
    let parent = spawner::enqueue(&client, key("parent")).await.unwrap();
    let child_id: owlclaw::RunId = parent.result().await.unwrap().parse().unwrap();
    let child = finished(&client, child_id).await;
    assert_eq!(child.parent_id, Some(parent.id()));
    assert_eq!(child.status, RunStatus::Succeeded);
    assert_eq!(recorded(&key("parent")), ["child"]);
    worker.shutdown().await.unwrap();
}

async fn manual_retry_requeues_a_failed_run_as_a_new_attempt(env: TestEnv) {
    let key = |k: &str| format!("{:?}-{k}", env.backend());
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<always_fails>()
        .start()
        .await
        .unwrap();
    let run = always_fails::enqueue(&client, key("manual"))
        .retries(0)
        .await
        .unwrap();
    assert_eq!(finished(&client, run.id()).await.status, RunStatus::Failed);
    let again = client.retry(run.id()).await.unwrap();
    assert_eq!(again.status, RunStatus::Queued);
    let snap = finished(&client, run.id()).await;
    assert_eq!(
        (snap.status, snap.attempt, snap.errors.len()),
        (RunStatus::Failed, 2, 2)
    );
    assert_eq!(recorded(&key("manual")), ["attempt 1", "attempt 2"]);
    worker.shutdown().await.unwrap();
}

async fn list_filters_by_status_and_task_newest_first_with_a_cursor(env: TestEnv) {
    let client = env.client().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            echo::enqueue(
                &client,
                Job {
                    key: "list".into(),
                    label: format!("{i}"),
                },
            )
            .await
            .unwrap()
            .id(),
        );
    }
    let other = sleeps::enqueue(&client, 1).await.unwrap();
    client.cancel(ids[0]).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .list(ListFilter {
                task: Some("echo".into()),
                limit: Some(3),
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.runs.len() <= 3);
        seen.extend(page.runs.iter().map(|r| r.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(seen, newest_first);
    assert!(!seen.contains(&other.id()));
    let cancelled = client
        .list(ListFilter {
            status: Some(RunStatus::Cancelled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cancelled.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let bad = client
        .list(ListFilter {
            cursor: Some("nope".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(bad, Err(Error::InvalidInput { ref field, .. }) if field == "cursor"));
}

async fn an_idempotency_key_returns_the_same_run_and_refuses_another_input(env: TestEnv) {
    let client = env.client().await;
    let job = Job {
        key: "idem".into(),
        label: "once".into(),
    };
    let a = echo::enqueue(&client, job.clone())
        .idempotency_key("order-42")
        .await
        .unwrap();
    let b = echo::enqueue(&client, job.clone())
        .idempotency_key("order-42")
        .await
        .unwrap();
    assert!(a.was_created() && !b.was_created());
    assert_eq!(a.id(), b.id());
    assert_eq!(
        a.id(),
        owlclaw::RunId::for_idempotency_key("default", "echo", "order-42")
    );
    let other = Job {
        label: "different".into(),
        ..job
    };
    match echo::enqueue(&client, other)
        .idempotency_key("order-42")
        .await
    {
        Err(Error::IdempotencyConflict { existing, key }) => {
            assert_eq!((existing, key.as_str()), (a.id(), "order-42"))
        }
        r => panic!("{r:?}"),
    }
    let page = client.list(ListFilter::default()).await.unwrap();
    assert_eq!(page.runs.len(), 1, "nothing stored for the refused request");
}

async fn commands_naming_another_user_than_the_owner_are_forbidden(env: TestEnv) {
    let client = env.client().await;
    let alice = client.for_user("alice");
    let run = echo::enqueue(
        &alice,
        Job {
            key: "own".into(),
            label: "mine".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        alice.status(run.id()).await.unwrap().owner.as_deref(),
        Some("alice")
    );
    let bob = client.for_user("bob");
    assert!(matches!(
        bob.status(run.id()).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        bob.cancel(run.id()).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(
        alice.cancel(run.id()).await.unwrap().status,
        RunStatus::Cancelled
    );
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Order {
    key: String,
    amount: u32,
}

/// Subscribed to `order.paid`.
#[task(on_event = "order.paid")]
async fn invoice(_ctx: Context, order: Order) -> anyhow::Result<u32> {
    record(&order.key, "invoice");
    Ok(order.amount)
}

/// Also subscribed to `order.paid`.
#[task(on_event = "order.paid")]
async fn ship(_ctx: Context, order: Order) -> anyhow::Result<String> {
    record(&order.key, "ship");
    Ok(order.key)
}

/// A pushed event starts one run of each subscribed task, with the payload as input; pushing
/// its id again starts nothing, and with another payload is refused.
async fn an_event_starts_one_run_of_each_subscribed_task_once(env: TestEnv) {
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<invoice>()
        .task::<ship>()
        .task::<echo>()
        .start()
        .await
        .unwrap();
    // The log of bodies is shared by the tests of every backend in this process.
    let key = format!("ev-order-{:?}", env.backend());
    let order = Order {
        key: key.clone(),
        amount: 42,
    };
    let pushed = client
        .push_event_with_id("ev-1", "order.paid", &order)
        .await
        .unwrap();
    assert!(pushed.created);
    assert_eq!(
        (pushed.id.as_str(), pushed.key.as_str()),
        ("ev-1", "order.paid")
    );
    assert_eq!(
        pushed.payload,
        serde_json::json!({"key": key, "amount": 42})
    );
    assert_eq!(pushed.runs.len(), 2, "{pushed:?}");
    let mut tasks = Vec::new();
    for id in &pushed.runs {
        let snap = finished(&client, *id).await;
        assert_eq!(snap.status, RunStatus::Succeeded, "{snap:?}");
        assert_eq!(snap.input, pushed.payload);
        let expected = if snap.task == invoice::NAME {
            serde_json::json!(42)
        } else {
            serde_json::json!(key)
        };
        assert_eq!(snap.output, Some(expected));
        let events = client.events(*id).await.unwrap();
        assert_eq!(events[0].reason, "event order.paid (ev-1)");
        tasks.push(snap.task);
    }
    tasks.sort();
    assert_eq!(
        tasks,
        vec![invoice::NAME.to_string(), ship::NAME.to_string()]
    );

    let again = client
        .push_event_with_id("ev-1", "order.paid", &order)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.runs, pushed.runs);
    let other = Order {
        amount: 43,
        ..order.clone()
    };
    match client
        .push_event_with_id("ev-1", "order.paid", &other)
        .await
    {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "id");
            assert!(message.contains("ev-1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut ran = recorded(&key);
    ran.sort();
    assert_eq!(ran, vec!["invoice", "ship"]);

    let lonely = client
        .push_event("nobody.listens", serde_json::json!({"x": 1}))
        .await
        .unwrap();
    assert!(lonely.created && lonely.runs.is_empty(), "{lonely:?}");
    match client.push_event("order paid", ()).await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "key");
            assert!(message.contains("order paid"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    worker.shutdown().await.unwrap();
}

/// The same events pushed at once through two clients (in lite mode, two engines on one
/// database) start each subscriber's run once.
async fn the_same_event_pushed_twice_at_once_starts_its_runs_once(env: TestEnv) {
    let a = env.client().await;
    let b = env.client().await;
    // Registers the subscribers without running anything.
    let worker = a
        .worker("registrar")
        .task::<invoice>()
        .task::<ship>()
        .slots(1)
        .start()
        .await
        .unwrap();
    worker.shutdown().await.unwrap();
    let order = Order {
        key: format!("race-{:?}", env.backend()),
        amount: 1,
    };
    let mut created = 0;
    for i in 0..10 {
        let id = format!("race-{i}");
        let (x, y) = tokio::join!(
            a.push_event_with_id(&id, "order.paid", &order),
            b.push_event_with_id(&id, "order.paid", &order)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.runs, y.runs);
        assert_eq!(x.runs.len(), 2);
        created += usize::from(x.created) + usize::from(y.created);
    }
    assert_eq!(
        created, 10,
        "each id is stored by exactly one of the two pushes"
    );
    for task in [invoice::NAME, ship::NAME] {
        let page = a
            .list(ListFilter {
                task: Some(task.to_string()),
                limit: Some(100),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.runs.len(), 10, "{task}: {:?}", page.runs);
    }
}

/// Needs a worker labelled `gpu` (any value).
#[task(requires = "gpu")]
async fn render(_ctx: Context, key: String) -> anyhow::Result<String> {
    record(&key, "render");
    Ok(key)
}

/// Needs a worker labelled `region=eu`.
#[task(requires = "region = eu")]
async fn eu_only(_ctx: Context, key: String) -> anyhow::Result<String> {
    record(&key, "eu_only");
    Ok(key)
}

/// Runs of a task that requires labels go only to workers that have them; until one is live, the
/// run's snapshot says which labels each live worker lacks.
async fn only_workers_with_the_required_labels_claim_a_task(env: TestEnv) {
    let client = env.client().await;
    let eu = client
        .worker("eu-cpu")
        .task::<render>()
        .task::<eu_only>()
        .label("region", "eu")
        .start()
        .await
        .unwrap();
    let mut renders = Vec::new();
    let mut eus = Vec::new();
    for i in 0..5 {
        renders.push(render::enqueue(&client, format!("r{i}")).await.unwrap());
        eus.push(eu_only::enqueue(&client, format!("e{i}")).await.unwrap());
    }
    for run in &eus {
        run.result().await.unwrap();
    }
    // The EU worker serves eu_only only, and says why render waits.
    let waiting = eventually(
        "the reason render runs wait",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let id = renders[0].id();
            async move { client.status(id).await.unwrap().waiting }
        },
    )
    .await;
    assert!(waiting.contains("`render`"), "{waiting}");
    assert!(waiting.contains("eu-cpu lacks gpu"), "{waiting}");
    for run in &renders {
        assert_eq!(run.status().await.unwrap(), RunStatus::Queued);
    }
    let workers = client.workers().await.unwrap();
    let listed = workers.iter().find(|w| w.name == "eu-cpu").unwrap();
    assert_eq!(listed.tasks, vec![eu_only::NAME.to_string()]);
    assert_eq!(listed.labels.get("region").map(String::as_str), Some("eu"));

    let gpu = client
        .worker("us-gpu")
        .task::<render>()
        .task::<eu_only>()
        .label("gpu", "a100")
        .label("region", "us")
        .start()
        .await
        .unwrap();
    for run in &renders {
        run.result().await.unwrap();
        let snap = client.status(run.id()).await.unwrap();
        assert_eq!(snap.worker.as_deref(), Some("us-gpu"));
        assert_eq!(snap.waiting, None);
    }
    for run in &eus {
        let snap = client.status(run.id()).await.unwrap();
        assert_eq!(snap.worker.as_deref(), Some("eu-cpu"));
    }
    // A task no live worker serves at all says so.
    let nobody = sleeps::enqueue(&client, 1).await.unwrap();
    let waiting = client.status(nobody.id()).await.unwrap().waiting.unwrap();
    assert!(waiting.contains("no live worker serves task"), "{waiting}");
    client.cancel(nobody.id()).await.unwrap();
    gpu.shutdown().await.unwrap();
    eu.shutdown().await.unwrap();
}

async fn a_worker_serves_only_its_chosen_tasks_and_refuses_unknown_ones(env: TestEnv) {
    let client = env.client().await;
    let worker = client
        .worker("only-echo")
        .task::<echo>()
        .start()
        .await
        .unwrap();
    let other = sleeps::enqueue(&client, 1).await.unwrap();
    let mine = echo::enqueue(
        &client,
        Job {
            key: "subset".into(),
            label: "x".into(),
        },
    )
    .await
    .unwrap();
    mine.result().await.unwrap();
    assert_eq!(other.status().await.unwrap(), RunStatus::Queued);
    let bad = client.worker("x").task_named("no-such-task").start().await;
    assert!(
        matches!(bad, Err(Error::Config { ref field, .. }) if field == "tasks"),
        "{bad:?}"
    );
    let zero = client.worker("x").slots(0).start().await;
    assert!(
        matches!(zero, Err(Error::Config { ref field, .. }) if field == "worker.slots"),
        "{zero:?}"
    );
    // Slots and runs claimed ahead go in one exchange: at most 10,000 together.
    let ahead = client.worker("x").slots(10).prefetch(9_991).start().await;
    match ahead {
        Err(Error::Config { field, message }) => {
            assert_eq!(field, "prefetch");
            assert!(message.contains("9991"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    worker.shutdown().await.unwrap();
}

async fn a_panicking_task_fails_its_attempt_without_killing_the_worker(env: TestEnv) {
    #[task]
    async fn panics(_ctx: Context, flag: bool) -> anyhow::Result<()> {
        if flag {
            panic!("kaboom");
        }
        Ok(())
    }
    let client = env.client().await;
    let worker = client.worker("w").task::<panics>().start().await.unwrap();
    let bad = panics::enqueue(&client, true).await.unwrap();
    let snap = finished(&client, bad.id()).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(snap.error.as_deref(), Some("the task panicked: kaboom"));
    let good = panics::enqueue(&client, false).await.unwrap();
    good.result().await.unwrap();
    worker.shutdown().await.unwrap();
}

async fn runs_survive_a_restart_of_the_embedded_engine(env: TestEnv) {
    let client = env.client().await;
    let run = echo::enqueue(
        &client,
        Job {
            key: "restart".into(),
            label: "durable".into(),
        },
    )
    .await
    .unwrap();
    let id = run.id();
    client.disconnect().await.unwrap();
    env.restart().await;
    let client = env.client().await;
    assert_eq!(client.status(id).await.unwrap().status, RunStatus::Queued);
    let worker = client.worker("w").task::<echo>().start().await.unwrap();
    assert_eq!(finished(&client, id).await.status, RunStatus::Succeeded);
    worker.shutdown().await.unwrap();
}

async fn a_namespace_prefixes_the_task_names_of_a_client_and_its_workers(env: TestEnv) {
    let billing = env
        .client_with(|c| c.namespace = Some("billing".into()))
        .await;
    let plain = env.client().await;
    let worker = billing.worker("w").task::<echo>().start().await.unwrap();
    let run = echo::enqueue(
        &billing,
        Job {
            key: "ns".into(),
            label: "x".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(run.result().await.unwrap(), "echo x");
    let snap = plain.status(run.id()).await.unwrap();
    assert_eq!(snap.task, "billing.echo");
    let workers = plain.workers().await.unwrap();
    assert!(
        workers.iter().any(|w| w.tasks == ["billing.echo"]),
        "{workers:?}"
    );
    // Without the namespace, `echo` is another task, which no worker serves.
    let other = echo::enqueue(
        &plain,
        Job {
            key: "ns".into(),
            label: "y".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(plain.status(other.id()).await.unwrap().task, "echo");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.status().await.unwrap(), RunStatus::Queued);
    worker.shutdown().await.unwrap();
}

async fn a_non_retryable_error_fails_the_run_at_once_and_its_event_says_so(env: TestEnv) {
    #[derive(Debug)]
    struct CardDeclined;
    impl std::fmt::Display for CardDeclined {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("card declined")
        }
    }
    impl std::error::Error for CardDeclined {}

    #[task(retries = 3, backoff_initial = "10ms")]
    async fn charge(_ctx: Context, how: String) -> anyhow::Result<()> {
        use anyhow::Context as _;
        match how.as_str() {
            "fatal" => Err(owlclaw::fatal("no card number").into()),
            "context" => Err(owlclaw::NonRetryable::from_error(CardDeclined)).context("charging"),
            _ => anyhow::bail!("gateway busy"),
        }
    }
    #[task(retries = 2)]
    async fn typed(_ctx: Context) -> Result<(), owlclaw::NonRetryable> {
        Err(owlclaw::NonRetryable::new("bad input"))
    }
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<charge>()
        .task::<typed>()
        .start()
        .await
        .unwrap();
    for (how, error) in [
        ("fatal", "no card number"),
        ("context", "charging: card declined"),
    ] {
        let run = charge::enqueue(&client, how.to_string()).await.unwrap();
        let snap = finished(&client, run.id()).await;
        assert_eq!(snap.status, RunStatus::Failed, "{how}");
        assert_eq!(
            (snap.attempt, snap.max_attempts),
            (1, 4),
            "{how}: one attempt only"
        );
        assert_eq!(snap.error.as_deref(), Some(error));
        let events = run.events().await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            last.reason,
            format!("attempt 1 failed and is not retryable: {error}")
        );
    }
    let run = typed::enqueue(&client).await.unwrap();
    let snap = finished(&client, run.id()).await;
    assert_eq!((snap.status, snap.attempt), (RunStatus::Failed, 1));
    // Any other error is retried as before.
    let run = charge::enqueue(&client, "busy".to_string()).await.unwrap();
    let snap = finished(&client, run.id()).await;
    assert_eq!((snap.status, snap.attempt), (RunStatus::Failed, 4));
    worker.shutdown().await.unwrap();
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CustomerJob {
    key: String,
    customer: String,
}

/// How many runs of each (test, customer) run at once now, and the most ever seen.
fn in_flight() -> &'static Mutex<HashMap<String, (u32, u32)>> {
    static M: OnceLock<Mutex<HashMap<String, (u32, u32)>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// At most 2 runs per customer at once; records its start order and how many run with it.
#[task(concurrency = 2, concurrency_key = "customer")]
async fn per_customer(_ctx: Context, job: CustomerJob) -> anyhow::Result<()> {
    record(&job.key, job.customer.clone());
    in_flight_for(&job, Duration::from_millis(2)).await;
    Ok(())
}

/// Counts the job's customer as running while `hold` passes (see [`in_flight`]).
async fn in_flight_for(job: &CustomerJob, hold: Duration) {
    let slot = format!("{}/{}", job.key, job.customer);
    {
        let mut m = in_flight().lock().unwrap();
        let (now, most) = m.entry(slot.clone()).or_default();
        *now += 1;
        *most = (*most).max(*now);
    }
    tokio::time::sleep(hold).await;
    in_flight().lock().unwrap().get_mut(&slot).unwrap().0 -= 1;
}

/// With a concurrency key, 1,000 queued runs of one customer do not hold back the one run of
/// another (keys take turns), and no customer ever has more than its limit running.
async fn a_concurrency_key_limits_each_key_and_keys_take_turns(env: TestEnv) {
    let client = env.client().await;
    let key = format!("fair-{:?}", env.backend());
    let job = |customer: &str| CustomerJob {
        key: key.clone(),
        customer: customer.into(),
    };
    let mut runs = client
        .enqueue_bulk::<per_customer>((0..1000).map(|_| job("a")))
        .await
        .unwrap();
    runs.extend(
        client
            .enqueue_bulk::<per_customer>([job("b")])
            .await
            .unwrap(),
    );
    let snap = runs[0].snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Queued);
    let worker = client
        .worker("w")
        .task::<per_customer>()
        .slots(8)
        .start()
        .await
        .unwrap();
    // The last run of a waits for its key's limit, and its snapshot says so.
    let why = eventually(
        "a run held by its key's limit",
        Duration::from_secs(60),
        || async {
            let snap = runs[999].snapshot().await.unwrap();
            assert_eq!(
                snap.status,
                RunStatus::Queued,
                "it finished before it was seen waiting"
            );
            // Before the worker registers, no live worker serves the task: that is said first.
            snap.waiting
                .filter(|w| w.starts_with("at its concurrency limit"))
        },
    )
    .await;
    assert!(
        why.starts_with("at its concurrency limit (key \"a\"): 2 runs running, at most 2"),
        "{why}"
    );
    for run in &runs {
        run.result_timeout(Duration::from_secs(120)).await.unwrap();
    }
    let order = recorded(&key);
    assert_eq!(order.len(), 1001);
    let b = order.iter().position(|c| c == "b").unwrap();
    assert!(b < 4, "b started as run {b}: {:?}", &order[..8]);
    let seen: Vec<(u32, u32)> = {
        let m = in_flight().lock().unwrap();
        ["a", "b"].map(|c| m[&format!("{key}/{c}")]).to_vec()
    };
    for (customer, (now, most)) in ["a", "b"].iter().zip(&seen) {
        assert_eq!(*now, 0);
        assert!(*most <= 2, "{customer}: {most} at once, limit 2");
    }
    assert_eq!(seen[0].1, 2, "a used its 2 places");
    worker.shutdown().await.unwrap();
}

/// Claims enforce the limit the task's workers registered. A run scheduled without it (a
/// producer that did not know it, or `"concurrency": null` through the API) before a worker
/// registered the limit is put under the empty key at registration, not left queued forever;
/// one scheduled so after the engine knows the limit gets it. Each run's snapshot names the
/// key it counts under.
async fn runs_scheduled_without_their_tasks_limit_are_claimed_under_it(env: TestEnv) {
    let client = env.client().await;
    let key = format!("unkeyed-{:?}", env.backend());
    let unlimited = |customer: &str| owlclaw::ScheduleRequest {
        task: "per_customer".into(),
        input: serde_json::json!({"key": key, "customer": customer}),
        concurrency: Some(None),
        retries: Some(0),
        timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    // No worker has registered the task: the engine takes the request as it is.
    let early = client.submit(unlimited("early")).await.unwrap().run;
    assert_eq!(early.limit_key, None, "scheduled without a limit");
    let worker = client
        .worker("w")
        .task::<per_customer>()
        .start()
        .await
        .unwrap();
    let done = finished(&client, early.id).await;
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.limit_key.as_deref(), Some(""), "under the empty key");
    // The engine knows the registered limit now: `null` does not remove it.
    let late = client.submit(unlimited("late")).await.unwrap().run;
    assert_eq!(late.limit_key.as_deref(), Some("late"));
    assert_eq!(
        finished(&client, late.id).await.status,
        RunStatus::Succeeded
    );
    let typed = per_customer::enqueue(
        &client,
        CustomerJob {
            key: key.clone(),
            customer: "typed".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(typed.result().await.unwrap(), ());
    assert_eq!(
        typed.snapshot().await.unwrap().limit_key.as_deref(),
        Some("typed")
    );
    worker.shutdown().await.unwrap();
}

/// Keeps one run of its key at a time: a new run over the limit is cancelled.
#[task(
    concurrency = 1,
    concurrency_key = "customer",
    concurrency_strategy = "cancel_newest"
)]
async fn newest_cancelled(_ctx: Context, job: CustomerJob) -> anyhow::Result<String> {
    Ok(job.customer)
}

/// Keeps one run of its key at a time: a new run cancels the one before.
#[task(
    concurrency = 1,
    concurrency_key = "customer",
    concurrency_strategy = "cancel_in_progress"
)]
async fn latest_wins(_ctx: Context, job: CustomerJob) -> anyhow::Result<String> {
    Ok(job.customer)
}

/// `cancel_newest` cancels a new run whose key is at its limit; `cancel_in_progress` cancels the
/// oldest run of the key instead. Other keys are not affected.
async fn cancel_strategies_cancel_the_newest_or_the_oldest_run_of_a_full_key(env: TestEnv) {
    let client = env.client().await;
    let job = |customer: &str| CustomerJob {
        key: "strategies".into(),
        customer: customer.into(),
    };
    let first = newest_cancelled::enqueue(&client, job("x")).await.unwrap();
    let second = newest_cancelled::enqueue(&client, job("x")).await.unwrap();
    let other = newest_cancelled::enqueue(&client, job("y")).await.unwrap();
    assert_eq!(first.status().await.unwrap(), RunStatus::Queued);
    assert_eq!(second.status().await.unwrap(), RunStatus::Cancelled);
    assert_eq!(other.status().await.unwrap(), RunStatus::Queued);

    let old = latest_wins::enqueue(&client, job("x")).await.unwrap();
    let new = latest_wins::enqueue(&client, job("x")).await.unwrap();
    assert_eq!(old.status().await.unwrap(), RunStatus::Cancelled);
    assert_eq!(new.status().await.unwrap(), RunStatus::Queued);

    let worker = client
        .worker("w")
        .task::<newest_cancelled>()
        .task::<latest_wins>()
        .start()
        .await
        .unwrap();
    assert_eq!(first.result().await.unwrap(), "x");
    assert_eq!(other.result().await.unwrap(), "y");
    assert_eq!(new.result().await.unwrap(), "x");
    for cancelled in [&second, &old] {
        assert_eq!(cancelled.status().await.unwrap(), RunStatus::Cancelled);
    }
    worker.shutdown().await.unwrap();
}

/// Spends one unit of `test.api` per attempt.
#[task(rate_limit = "test.api")]
async fn calls_api(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

/// Spends two units of `test.per_customer` per attempt, from its customer's bucket.
#[task(
    rate_limit = "test.per_customer",
    rate_limit_units = 2,
    rate_limit_key = "customer"
)]
async fn calls_api_per_customer(_ctx: Context, job: CustomerJob) -> anyhow::Result<String> {
    Ok(job.customer)
}

/// When each run started, sorted; every run succeeded at its first attempt.
async fn starts<O: serde::de::DeserializeOwned>(
    client: &owlclaw::Client,
    runs: &[RunHandle<O>],
) -> Vec<DateTime<Utc>> {
    let mut starts = Vec::with_capacity(runs.len());
    for run in runs {
        let snap = client
            .wait(run.id(), Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(
            (snap.status, snap.attempt),
            (RunStatus::Succeeded, 1),
            "a run over the limit waits: it does not fail or spend an attempt"
        );
        starts.push(snap.started_at.unwrap());
    }
    starts.sort();
    starts
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap() as f64 / 1e6
}

/// A rate limit of 50 per second over 500 runs, claimed by two workers (through two engines in
/// lite mode): a burst of 50, then 50 a second, so the last run starts about 9 s after the
/// first, and no second ever holds more than the burst and a second's worth. None fails, none
/// spends an attempt waiting.
async fn a_rate_limit_of_50_per_second_spreads_500_runs_over_about_10_seconds(env: TestEnv) {
    let client = env.client().await;
    let limit = client
        .set_rate_limit("test.api", 50, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!((limit.limit, limit.per), (50, Duration::from_secs(1)));
    assert_eq!(client.rate_limits().await.unwrap(), vec![limit]);
    let runs = client.enqueue_bulk::<calls_api>(0..500).await.unwrap();
    // Two workers, each through its own client: in lite mode each embeds its own engine on the
    // database, so the limit holds across engine replicas.
    let other = env.client().await;
    let mut workers = Vec::new();
    for (name, c) in [("w1", &client), ("w2", &other)] {
        let w = c.worker(name).task::<calls_api>().slots(5).start();
        workers.push(w.await.unwrap());
    }
    let starts = starts(&client, &runs).await;
    let span = seconds(starts[0], starts[499]);
    assert!(span >= 8.5, "500 runs at 50/s started within {span:.2} s");
    assert!(span < 60.0, "500 runs at 50/s took {span:.2} s");
    // Any one second: at most the burst (50) and what a second gives back (50).
    for (i, first) in starts.iter().enumerate() {
        let within = starts[i..]
            .iter()
            .take_while(|t| seconds(*first, **t) < 1.0)
            .count();
        assert!(within <= 101, "{within} runs started within 1 s of {first}");
    }
    let mut by: HashMap<String, usize> = HashMap::new();
    for run in &runs {
        let worker = run.snapshot().await.unwrap().worker.unwrap();
        *by.entry(worker).or_default() += 1;
    }
    assert_eq!(by.len(), 2, "both workers took runs: {by:?}");
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

/// A run over a rate limit with no units left stays queued, spends no attempt, and says why:
/// under one unit an hour, of two runs one starts and the other waits for the bucket. (The
/// drain above cannot pin this: between two claims its bucket refills, so a loaded machine may
/// never look while a run waits.)
async fn a_run_over_an_exhausted_rate_limit_waits_and_says_why(env: TestEnv) {
    let client = env.client().await;
    client
        .set_rate_limit("test.api", 1, Duration::from_secs(3600))
        .await
        .unwrap();
    let runs = client.enqueue_bulk::<calls_api>(0..2).await.unwrap();
    let worker = client
        .worker("w")
        .task::<calls_api>()
        .slots(2)
        .start()
        .await
        .unwrap();
    let (done, waiting) = eventually(
        "one run done, one waiting",
        Duration::from_secs(60),
        || async {
            let a = runs[0].snapshot().await.unwrap();
            let b = runs[1].snapshot().await.unwrap();
            match (a.status, b.status) {
                (RunStatus::Succeeded, RunStatus::Queued) => Some((a, b)),
                (RunStatus::Queued, RunStatus::Succeeded) => Some((b, a)),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(done.attempt, 1);
    assert_eq!(waiting.attempt, 0, "a run over the limit spends no attempt");
    let why = waiting
        .waiting
        .expect("a queued run held by its rate limit says why");
    assert!(
        why.starts_with("waiting for units of rate limit `test.api` (1 per 1h): enough for it in"),
        "{why}"
    );
    worker.shutdown().await.unwrap();
}

/// A rate limit with a key keeps one bucket per key, and a task spends its units per attempt:
/// 10 units a second at 2 a run is 5 runs a second for each customer, both at once. Runs of a
/// rate limit not defined yet wait for it; defining it starts them.
async fn a_rate_limit_key_gives_each_key_its_own_bucket(env: TestEnv) {
    let client = env.client().await;
    let job = |customer: &str| CustomerJob {
        key: "rated".into(),
        customer: customer.into(),
    };
    let runs = client
        .enqueue_bulk::<calls_api_per_customer>(
            (0..50).map(|i| job(if i % 2 == 0 { "a" } else { "b" })),
        )
        .await
        .unwrap();
    let worker = client
        .worker("w")
        .task::<calls_api_per_customer>()
        .slots(10)
        .start()
        .await
        .unwrap();
    // No limit of that name yet: the worker claims nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snap = runs[0].snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Queued);
    assert_eq!(
        snap.waiting.as_deref(),
        Some(
            "its task spends rate limit `test.per_customer`, which is not defined: it waits \
             until it is (owlclaw ratelimit set test.per_customer --limit N --per DURATION)"
        )
    );
    client
        .set_rate_limit("test.per_customer", 10, Duration::from_secs(1))
        .await
        .unwrap();
    let (a, b): (Vec<_>, Vec<_>) = runs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip =
        |v: Vec<(usize, RunHandle<String>)>| v.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
    let (a, b) = (
        starts(&client, &strip(a)).await,
        starts(&client, &strip(b)).await,
    );
    for (customer, starts) in [("a", &a), ("b", &b)] {
        // 25 runs: a burst of 5, then 5 a second: the last starts 4 s after the first.
        let span = seconds(starts[0], starts[24]);
        assert!(span >= 3.6, "{customer}: 25 runs at 5/s within {span:.2} s");
    }
    // One bucket for both would take (50 - 5) / 2.5 = 18 s.
    let all = seconds(a[0].min(b[0]), a[24].max(b[24]));
    assert!(all < 11.0, "both customers at once took {all:.2} s");
    worker.shutdown().await.unwrap();
}

/// One run per customer at once, and 4 starts a second for the whole task: a concurrency
/// limit and a rate limit on one task (Hatchet's per-key concurrency beside a global rate).
#[task(
    concurrency = 1,
    concurrency_key = "customer",
    rate_limit = "test.both"
)]
async fn under_both(_ctx: Context, job: CustomerJob) -> anyhow::Result<()> {
    in_flight_for(&job, Duration::from_millis(20)).await;
    Ok(())
}

/// Under both limits each key keeps to its concurrency limit and all keys together to the rate:
/// 12 runs over 3 customers at 4 a second (a burst of 4, then 4 a second) start over about 2 s, and
/// never two of one customer at once.
async fn a_task_under_both_limits_keeps_each_key_to_one_and_all_to_the_rate(env: TestEnv) {
    let client = env.client().await;
    client
        .set_rate_limit("test.both", 4, Duration::from_secs(1))
        .await
        .unwrap();
    let key = format!("both-{:?}", env.backend());
    let customers = ["a", "b", "c"];
    let runs = client
        .enqueue_bulk::<under_both>((0..12).map(|i| CustomerJob {
            key: key.clone(),
            customer: customers[i % 3].into(),
        }))
        .await
        .unwrap();
    assert_eq!(
        runs[0].snapshot().await.unwrap().limit_key.as_deref(),
        Some("a")
    );
    let worker = client
        .worker("w")
        .task::<under_both>()
        .slots(8)
        .start()
        .await
        .unwrap();
    let starts = starts(&client, &runs).await;
    let span = seconds(starts[0], starts[11]);
    assert!(
        span >= 1.8,
        "12 runs at 4/s after a burst of 4 within {span:.2} s"
    );
    for c in customers {
        let (now, most) = in_flight().lock().unwrap()[&format!("{key}/{c}")];
        assert_eq!((now, most), (0, 1), "{c}: {most} at once, limit 1");
    }
    // A rate limit keyed apart from the concurrency key is refused, naming the field; nothing
    // is stored.
    let err = client
        .submit(owlclaw::ScheduleRequest {
            task: "under_both".into(),
            input: serde_json::json!({"key": key, "customer": "d"}),
            concurrency: Some(Some(owlclaw_core::task::Concurrency {
                max: 1,
                key: Some("customer".into()),
                strategy: Default::default(),
            })),
            rate_limit: Some(Some(owlclaw_core::ratelimit::RateLimitUse {
                name: "test.both".into(),
                units: 1,
                key: Some("key".into()),
            })),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "rate_limit"
            && message.contains("\"key\" with concurrency key \"customer\"")),
        "{err:?}"
    );
    let all = ListFilter {
        task: Some("under_both".into()),
        ..ListFilter::default()
    };
    assert_eq!(client.count(all).await.unwrap(), 12);
    worker.shutdown().await.unwrap();
}

both_backends!(
    a_task_under_both_limits_keeps_each_key_to_one_and_all_to_the_rate,
    runs_scheduled_without_their_tasks_limit_are_claimed_under_it,
    a_rate_limit_of_50_per_second_spreads_500_runs_over_about_10_seconds,
    a_run_over_an_exhausted_rate_limit_waits_and_says_why,
    a_rate_limit_key_gives_each_key_its_own_bucket,
    a_concurrency_key_limits_each_key_and_keys_take_turns,
    cancel_strategies_cancel_the_newest_or_the_oldest_run_of_a_full_key,
    a_non_retryable_error_fails_the_run_at_once_and_its_event_says_so,
    a_namespace_prefixes_the_task_names_of_a_client_and_its_workers,
    a_run_goes_queued_running_succeeded_with_one_event_per_transition,
    illegal_transitions_are_refused_and_change_nothing,
    higher_priority_runs_first_and_fifo_within_a_priority,
    retries_count_attempts_keep_each_error_and_back_off_exponentially,
    a_task_past_its_timeout_is_stopped_and_the_attempt_fails_with_timeout,
    queued_and_scheduled_runs_are_cancelled_at_once_and_never_run,
    cancelling_a_running_run_reaches_its_task_through_ctx_cancelled,
    a_task_ignoring_cancellation_is_dropped_after_the_grace_period_and_frees_its_slot,
    graceful_shutdown_finishes_short_runs_and_hands_back_the_rest_without_counting_an_attempt,
    short_runs_are_claimed_ahead_and_handed_back_at_shutdown_without_an_attempt,
    long_runs_are_not_claimed_ahead,
    a_run_longer_than_its_lease_keeps_it_through_heartbeats,
    a_delayed_run_is_woken_by_its_due_time_not_by_polling,
    a_task_can_schedule_another_run_which_records_its_parent,
    manual_retry_requeues_a_failed_run_as_a_new_attempt,
    list_filters_by_status_and_task_newest_first_with_a_cursor,
    an_idempotency_key_returns_the_same_run_and_refuses_another_input,
    commands_naming_another_user_than_the_owner_are_forbidden,
    a_worker_serves_only_its_chosen_tasks_and_refuses_unknown_ones,
    only_workers_with_the_required_labels_claim_a_task,
    an_event_starts_one_run_of_each_subscribed_task_once,
    the_same_event_pushed_twice_at_once_starts_its_runs_once,
    a_panicking_task_fails_its_attempt_without_killing_the_worker,
    runs_survive_a_restart_of_the_embedded_engine,
);
