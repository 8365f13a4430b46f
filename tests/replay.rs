//! Replay from a step, end to end on the four backends: the steps before it keep their outputs
//! and the child they spawned; the step and those after it run again, and a child spawned after
//! that point is started afresh (not found again).

use owlclaw::{task, Context, Error, ListFilter, RunStatus};
use owlclaw_tests::{both_backends, TestEnv};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

fn log() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static LOG: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

fn record(key: &str, what: &str) -> usize {
    let mut log = log().lock().unwrap();
    let list = log.entry(key.to_string()).or_default();
    list.push(what.to_string());
    list.iter().filter(|w| *w == what).count()
}

fn count(key: &str, what: &str) -> usize {
    log()
        .lock()
        .unwrap()
        .get(key)
        .map_or(0, |l| l.iter().filter(|w| *w == what).count())
}

#[task(name = "replay.early")]
async fn replay_early(_ctx: Context, key: String) -> anyhow::Result<u32> {
    record(&key, "early child");
    Ok(1)
}

#[task(name = "replay.late")]
async fn replay_late(_ctx: Context, key: String) -> anyhow::Result<u32> {
    record(&key, "late child");
    Ok(10)
}

/// Spawns a child, runs a step, spawns another child, then a step that fails the first time.
#[task(name = "replay.parent")]
async fn replay_parent(ctx: Context, key: String) -> anyhow::Result<u32> {
    let early = ctx.spawn::<replay_early>(key.clone()).await?;
    let a: u32 = ctx
        .step("a", || async {
            record(&key, "a");
            anyhow::Ok(100)
        })
        .await?;
    let late = ctx.spawn::<replay_late>(key.clone()).await?;
    let b: u32 = ctx
        .step("b", || async {
            if record(&key, "b") == 1 {
                anyhow::bail!("b broke");
            }
            anyhow::Ok(1000)
        })
        .await?;
    let wait = Duration::from_secs(60);
    Ok(early.result_timeout(wait).await? + late.result_timeout(wait).await? + a + b)
}

fn children_of(task: &str, parent: owlclaw::RunId) -> ListFilter {
    ListFilter {
        task: Some(task.into()),
        parent_id: Some(parent),
        ..ListFilter::default()
    }
}

async fn replay_from_a_step_keeps_earlier_steps_and_children_and_starts_later_ones_afresh(
    env: TestEnv,
) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let key = format!("replay-{}", owlclaw::RunId::new());
    let run = replay_parent::enqueue(&client, key.clone()).await.unwrap();
    let failed = client
        .wait(run.id(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed, "{:?}", failed.error);
    let names: Vec<&str> = failed.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["spawn:replay.early", "a", "spawn:replay.late", "b"]);
    let late_before = client
        .list(children_of("replay.late", run.id()))
        .await
        .unwrap()
        .runs;
    assert_eq!(late_before.len(), 1);

    // An unknown step is refused, naming the run's steps; nothing changes.
    let err = client.replay(run.id(), "nope").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "from_step"
            && message.contains("its steps: spawn:replay.early, a, spawn:replay.late, b")),
        "{err:?}"
    );

    let replayed = client.replay(run.id(), "spawn:replay.late").await.unwrap();
    assert_eq!(replayed.status, RunStatus::Queued);
    assert_eq!(replayed.replays, 1);
    let done = client
        .wait(run.id(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.error);
    assert_eq!(done.output, Some(serde_json::json!(1111)));
    assert_eq!(done.attempt, 2);
    assert_eq!(
        count(&key, "a"),
        1,
        "the step before the replayed one kept its output"
    );
    assert_eq!(count(&key, "b"), 2);
    let early = client
        .list(children_of("replay.early", run.id()))
        .await
        .unwrap()
        .runs;
    assert_eq!(
        early.len(),
        1,
        "the child spawned before is kept, not started again"
    );
    let late = client
        .list(children_of("replay.late", run.id()))
        .await
        .unwrap()
        .runs;
    assert_eq!(late.len(), 2, "the child spawned after is started afresh");
    assert!(late.iter().any(|r| r.id == late_before[0].id));
    assert_eq!(count(&key, "late child"), 2);
    assert_eq!(count(&key, "early child"), 1);
    let events = client.events(run.id()).await.unwrap();
    assert!(
        events.iter().any(|e| e
            .reason
            .starts_with("replay from step 2 \"spawn:replay.late\"")),
        "{events:?}"
    );
    // A succeeded run is not replayed: it has nothing to do again.
    let err = client.replay(run.id(), "b").await.unwrap_err();
    assert!(matches!(err, Error::InvalidTransition { .. }), "{err:?}");
    worker.shutdown().await.unwrap();
}

both_backends!(replay_from_a_step_keeps_earlier_steps_and_children_and_starts_later_ones_afresh);
