//! Behaviours only server mode has: an engine server that restarts under a running worker.

use owlclaw::{task, Context, RunStatus};
use owlclaw_tests::{eventually, Backend, TestEnv};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

fn calls() -> &'static Mutex<HashMap<String, u32>> {
    static CALLS: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    CALLS.get_or_init(Default::default)
}

/// Counts its executions per key, then takes `ms` milliseconds.
#[task(timeout = "1m")]
async fn counted(_ctx: Context, job: (String, u64)) -> anyhow::Result<u64> {
    *calls().lock().unwrap().entry(job.0.clone()).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(job.1)).await;
    Ok(job.1)
}

fn count(key: &str) -> u32 {
    calls().lock().unwrap().get(key).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_running_through_a_server_restart_without_losing_or_duplicating_results() {
    let env = TestEnv::new(Backend::Server)
        .await
        .expect("a SQLite environment");
    let client = env.client().await;
    let worker = client
        .worker("steady")
        .task::<counted>()
        .start()
        .await
        .unwrap();
    let run = counted::enqueue(&client, ("restart".into(), 600))
        .await
        .unwrap();
    eventually("the run to start", Duration::from_secs(10), || async {
        (run.status().await.unwrap() == RunStatus::Running).then_some(())
    })
    .await;
    // The server is down while the task finishes: the worker must keep its result and report it
    // once the server is back (the lease, 1 s, outlives the outage).
    env.restart_after(Duration::from_millis(300)).await;
    assert_eq!(
        run.result_timeout(Duration::from_secs(20)).await.unwrap(),
        600
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 1);
    assert_eq!(count("restart"), 1, "executed once");
    let succeeded = run
        .events()
        .await
        .unwrap()
        .iter()
        .filter(|e| e.to == RunStatus::Succeeded)
        .count();
    assert_eq!(succeeded, 1);
    // And it goes on claiming new work after the restart.
    let next = counted::enqueue(&client, ("after".into(), 1))
        .await
        .unwrap();
    assert_eq!(
        next.result_timeout(Duration::from_secs(20)).await.unwrap(),
        1
    );
    assert_eq!(count("after"), 1);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_runs() {
    let env = TestEnv::new(Backend::Server)
        .await
        .expect("a SQLite environment");
    let client = env.client().await;
    let run = counted::enqueue(&client, ("tenant".into(), 1))
        .await
        .unwrap();
    // A second tenant with its own token on the same server.
    let (url, _) = env.target().await;
    let engine = owlclaw_engine::Engine::start(owlclaw_engine::EngineConfig {
        database_url: env.database_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let other_token = engine.create_token("other").await.unwrap();
    engine.shutdown().await;
    let other = owlclaw::Client::connect(owlclaw_tests::config_for(&url, Some(&other_token)))
        .await
        .unwrap();
    assert!(matches!(
        other.status(run.id()).await,
        Err(owlclaw::Error::NotFound { .. })
    ));
    assert!(matches!(
        other.cancel(run.id()).await,
        Err(owlclaw::Error::NotFound { .. })
    ));
    assert!(other
        .list(Default::default())
        .await
        .unwrap()
        .runs
        .is_empty());
    assert_eq!(client.list(Default::default()).await.unwrap().runs.len(), 1);
    let bad =
        owlclaw::Client::connect(owlclaw_tests::config_for(&url, Some("owc_not-a-token"))).await;
    assert!(
        matches!(bad, Err(owlclaw::Error::Unauthorized(_))),
        "{bad:?}"
    );
}
