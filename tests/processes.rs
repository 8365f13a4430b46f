//! Tests with workers in child processes sharing one SQLite file: a worker killed with SIGKILL
//! mid-run, and crons fired by several engines at once.

use owlclaw::{ListFilter, RunStatus, ScheduleRequest};
use owlclaw_tests::{both_backends, eventually, finished, TestEnv};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[allow(dead_code)]
#[path = "common/tasks.rs"]
mod tasks;

/// Starts `owlclaw-test-worker` against the environment and waits until it has registered.
async fn spawn_worker(env: &TestEnv, name: &str, tasks: &[&str], hang: bool) -> Child {
    let (target, token) = env.target().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_owlclaw-test-worker"));
    match token {
        Some(t) => cmd.env("OWLCLAW_TEST_TOKEN", t),
        None => cmd.env_remove("OWLCLAW_TEST_TOKEN"),
    };
    cmd.arg(target)
        .arg(name)
        .args(tasks)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if hang {
        cmd.env("OWLCLAW_TEST_HANG", "1");
    } else {
        cmd.env_remove("OWLCLAW_TEST_HANG");
    }
    let mut child = cmd.spawn().expect("spawn the test worker");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("worker ready in time")
        .expect("read stdout")
        .expect("worker printed a line");
    assert!(line.starts_with("ready"), "unexpected first line: {line}");
    child
}

async fn a_run_of_a_worker_killed_with_sigkill_is_finished_by_another_after_its_lease_expires(
    env: TestEnv,
) {
    let client = env.client().await;
    let mut doomed = spawn_worker(&env, "doomed", &["blocker"], true).await;
    let run = tasks::blocker::enqueue(&client, "crash".into())
        .await
        .unwrap();
    eventually(
        "the doomed worker to hold the run",
        Duration::from_secs(20),
        || async {
            let s = run.snapshot().await.unwrap();
            (s.status == RunStatus::Running && s.worker.as_deref() == Some("doomed")).then_some(())
        },
    )
    .await;
    doomed.start_kill().unwrap(); // SIGKILL: no graceful shutdown, no hand-back
    doomed.wait().await.unwrap();
    assert_eq!(
        run.status().await.unwrap(),
        RunStatus::Running,
        "still leased to the dead worker"
    );

    let rescuer = client
        .worker("rescuer")
        .task::<tasks::blocker>()
        .start()
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "crash done on attempt 2");
    let snap = run.snapshot().await.unwrap();
    assert_eq!((snap.attempt, snap.worker.as_deref()), (2, Some("rescuer")));
    assert_eq!(snap.errors.len(), 1);
    assert!(
        snap.errors[0]
            .error
            .contains("lease expired: worker doomed"),
        "{:?}",
        snap.errors
    );
    let events = run.events().await.unwrap();
    let path: Vec<_> = events.iter().map(|e| (e.to, e.worker.clone())).collect();
    assert_eq!(
        path,
        [
            (RunStatus::Queued, None),
            (RunStatus::Running, Some("doomed".to_string())),
            (RunStatus::Queued, Some("doomed".to_string())),
            (RunStatus::Running, Some("rescuer".to_string())),
            (RunStatus::Succeeded, Some("rescuer".to_string())),
        ]
    );
    rescuer.shutdown().await.unwrap();
}

async fn each_cron_tick_enqueues_exactly_one_run_with_two_worker_processes(env: TestEnv) {
    let client = env.client().await; // migrates the file before the children start
    let mut a = spawn_worker(&env, "cron-a", &["every_second"], false).await;
    let mut b = spawn_worker(&env, "cron-b", &["every_second"], false).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let crons = client.crons().await.unwrap();
    assert_eq!(
        crons.len(),
        1,
        "both workers registered the same schedule: {crons:?}"
    );
    assert_eq!(
        (crons[0].id.as_str(), crons[0].expr.as_str()),
        ("task:every_second", "* * * * * *")
    );
    for child in [&mut a, &mut b] {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let runs = client
        .list(ListFilter {
            task: Some("every_second".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .runs;
    let ticks: Vec<i64> = runs
        .iter()
        .map(|r| {
            let key = r
                .idempotency_key
                .as_deref()
                .expect("cron runs carry their tick key");
            key.rsplit(':').next().unwrap().parse::<i64>().unwrap()
        })
        .collect();
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(
        ticks.len() >= 3,
        "expected a run per second, got {}",
        ticks.len()
    );
    let sorted: Vec<i64> = distinct.into_iter().collect();
    assert!(
        sorted.windows(2).all(|w| w[1] - w[0] == 1_000_000),
        "ticks one second apart: {sorted:?}"
    );
    let done = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count();
    assert!(
        done >= ticks.len() - 2,
        "the runs were executed: {done} of {}",
        ticks.len()
    );
}

async fn runs_scheduled_by_one_process_are_executed_by_a_worker_in_another(env: TestEnv) {
    let client = env.client().await;
    let mut worker = spawn_worker(&env, "remote", &["blocker"], false).await;
    let scheduled = client
        .submit(ScheduleRequest {
            task: "blocker".into(),
            input: serde_json::json!("cross"),
            ..Default::default()
        })
        .await
        .unwrap();
    let snap = finished(&client, scheduled.run.id).await;
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(snap.worker.as_deref(), Some("remote"));
    assert_eq!(
        snap.output,
        Some(serde_json::json!("cross done on attempt 1"))
    );
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
}

async fn a_durable_sleep_survives_sigkill_and_ends_at_its_original_wake_time(env: TestEnv) {
    let client = env.client().await;
    let mut sleeper = spawn_worker(&env, "sleeper", &["durable_nap"], false).await;
    let run = tasks::durable_nap::enqueue(&client, 4000).await.unwrap();
    let wake = eventually(
        "the wake time to be committed",
        Duration::from_secs(20),
        || async {
            let s = run.snapshot().await.unwrap();
            s.steps.iter().find(|st| st.name == "sleep").and_then(|st| {
                serde_json::from_value::<owlclaw::DateTime<owlclaw::Utc>>(
                    st.output.clone()?["wake_at"].clone(),
                )
                .ok()
            })
        },
    )
    .await;
    sleeper.start_kill().unwrap(); // SIGKILL mid-sleep
    sleeper.wait().await.unwrap();
    let rescuer = client
        .worker("rescuer")
        .task::<tasks::durable_nap>()
        .start()
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "woke on attempt 2");
    let snap = run.snapshot().await.unwrap();
    let finished = snap.finished_at.unwrap();
    assert!(
        finished >= wake,
        "woke before its wake time: {finished} < {wake}"
    );
    // A whole new sleep would end about 4 s after the rescue; the lease (1 s) and the timer
    // precision are the only delay allowed past the original wake time.
    assert!(
        finished - wake < chrono::Duration::milliseconds(2000),
        "finished {} ms after the original wake time",
        (finished - wake).num_milliseconds()
    );
    assert_eq!(snap.steps.iter().filter(|s| s.name == "sleep").count(), 1);
    rescuer.shutdown().await.unwrap();
}

/// A run parked by an event wait needs no process: its worker (in lite mode, with its engine)
/// is killed with SIGKILL, the event is pushed while no worker runs, and another worker resumes
/// the run after its completed step, with the event.
async fn a_wait_for_an_event_survives_sigkill_of_its_worker(env: TestEnv) {
    let client = env.client().await;
    let mut waiter = spawn_worker(&env, "waiter", &["awaits_signal"], false).await;
    let pid = waiter.id().unwrap();
    let run = tasks::awaits_signal::enqueue(&client, 5).await.unwrap();
    eventually("the run to be parked", Duration::from_secs(30), || async {
        (run.status().await.unwrap() == RunStatus::Scheduled).then_some(())
    })
    .await;
    waiter.start_kill().unwrap(); // SIGKILL while the run waits
    waiter.wait().await.unwrap();
    let pushed = client
        .push_event_with_id("sig-1", "signal.sent", &serde_json::json!({"order": 5}))
        .await
        .unwrap();
    assert_eq!(pushed.resumed, vec![run.id()]);
    let rescuer = client
        .worker("rescuer")
        .task::<tasks::awaits_signal>()
        .start()
        .await
        .unwrap();
    assert_eq!(
        run.result_timeout(Duration::from_secs(30)).await.unwrap(),
        format!("pid {pid}; got sig-1"),
        "the first step ran once, in the killed process"
    );
    assert_eq!(run.snapshot().await.unwrap().attempt, 1);
    rescuer.shutdown().await.unwrap();
}

both_backends!(
    a_wait_for_an_event_survives_sigkill_of_its_worker,
    a_durable_sleep_survives_sigkill_and_ends_at_its_original_wake_time,
    a_run_of_a_worker_killed_with_sigkill_is_finished_by_another_after_its_lease_expires,
    each_cron_tick_enqueues_exactly_one_run_with_two_worker_processes,
    runs_scheduled_by_one_process_are_executed_by_a_worker_in_another,
);

/// `examples/producer.py` (Python, urllib only) schedules runs with one HTTP call and waits for
/// their results; a worker in another process runs them. Server mode only: the producer speaks
/// HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_producer_schedules_runs_over_http_and_waits_for_their_results() {
    let env = owlclaw_tests::TestEnv::new(owlclaw_tests::Backend::Server)
        .await
        .expect("server mode on SQLite needs no outside service");
    let mut worker = spawn_worker(&env, "py-worker", &["durable_nap"], false).await;
    let (url, token) = env.target().await;
    let producer = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/producer.py");
    let mut cmd = Command::new("python3");
    cmd.arg(producer)
        .args(["--server", &url, "--task", "durable_nap", "--input", "10"])
        .args(["--count", "3", "--priority", "7"]);
    match &token {
        Some(t) => cmd.env("OWLCLAW_API_TOKEN", t),
        None => cmd.env_remove("OWLCLAW_API_TOKEN"),
    };
    let out = cmd
        .output()
        .await
        .expect("python3 runs (CI has it: schemathesis needs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        assert!(
            line.ends_with(": succeeded: \"woke on attempt 1\""),
            "{line}"
        );
        let id: owlclaw::RunId = line
            .strip_prefix("run ")
            .and_then(|l| l.split(':').next())
            .unwrap()
            .parse()
            .unwrap();
        let client = env.client().await;
        let snap = client.status(id).await.unwrap();
        assert_eq!((snap.task.as_str(), snap.priority), ("durable_nap", 7));
    }
    // An error answer exits 1 and names the API's code.
    let mut bad = Command::new("python3");
    bad.arg(producer)
        .args(["--server", &url, "--task", "no-such-task"]);
    if let Some(t) = &token {
        bad.env("OWLCLAW_API_TOKEN", t);
    }
    let out = bad.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404 not_found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    worker.kill().await.ok();
}
