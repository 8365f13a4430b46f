//! Cron schedules under an operator's control, end to end on the four backends: pause (nothing
//! fires), resume (the ticks missed meanwhile are not fired), trigger (one run now).

use owlclaw::{task, Context, ListFilter, RunStatus, Utc};
use owlclaw_tests::{both_backends, eventually, TestEnv};
use std::time::Duration;

#[task(name = "sched.every_second", cron = "* * * * * *")]
async fn every_second(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

const ID: &str = "task:sched.every_second";

fn of_task() -> ListFilter {
    ListFilter {
        task: Some("sched.every_second".into()),
        ..ListFilter::default()
    }
}

async fn pausing_resuming_and_triggering_a_schedule(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    eventually("a first tick", Duration::from_secs(60), || async {
        (client.count(of_task()).await.unwrap() > 0).then_some(())
    })
    .await;

    let paused = client.pause_cron(ID).await.unwrap();
    assert!(paused.paused_at.is_some());
    assert_eq!(paused.next_tick, None, "a paused schedule has no next tick");
    assert!(paused.next_ticks.is_empty());
    let listed = client.crons().await.unwrap();
    assert!(listed.iter().any(|c| c.id == ID && c.paused_at.is_some()));
    // A tick being fired as the pause lands may still create its run: let it settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = client.count(of_task()).await.unwrap();
    // Several ticks pass while paused: none fires.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        client.count(of_task()).await.unwrap(),
        before,
        "a paused schedule fires nothing"
    );

    // Trigger: one run now, paused or not, marked as manual.
    let run = client.trigger_cron(ID).await.unwrap();
    let snap = client
        .wait(run.id(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(
        snap.metadata,
        Some(serde_json::json!({"cron": ID, "trigger": "manual"}))
    );
    assert_eq!(client.count(of_task()).await.unwrap(), before + 1);

    // Resume: ticks fire again, and none of those missed while paused.
    let resumed_at = Utc::now();
    let resumed = client.resume_cron(ID).await.unwrap();
    assert_eq!(resumed.paused_at, None);
    assert!(resumed.next_tick.is_some());
    assert_eq!(resumed.next_ticks.len(), 3, "the next three ticks");
    assert!(resumed.next_ticks.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(resumed.next_tick, resumed.next_ticks.first().copied());
    eventually(
        "a tick after the resume",
        Duration::from_secs(60),
        || async { (client.count(of_task()).await.unwrap() > before + 1).then_some(()) },
    )
    .await;
    let runs = client
        .list(ListFilter {
            created_after: Some(resumed_at),
            ..of_task()
        })
        .await
        .unwrap()
        .runs;
    assert!(!runs.is_empty());
    // The schedule's last run: the run of its last fired tick.
    let listed = eventually("the last run listed", Duration::from_secs(60), || async {
        let c = client
            .crons()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.id == ID)?;
        c.last_run.clone().map(|r| (c, r))
    })
    .await;
    let last = client.status(listed.1.id).await.unwrap();
    assert_eq!(last.task, "sched.every_second");
    assert!(last.created_at > resumed_at);
    for r in runs {
        let created = client.events(r.id).await.unwrap()[0].reason.clone();
        let tick = created
            .rsplit(' ')
            .next()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("a cron tick's reason names its tick: {created:?}"));
        assert!(
            tick > resumed_at,
            "a tick missed while paused fired after the resume: {created}"
        );
    }
    let err = client.pause_cron("task:nope").await.unwrap_err();
    assert!(matches!(err, owlclaw::Error::NotFound { .. }), "{err:?}");
    worker.shutdown().await.unwrap();
}

both_backends!(pausing_resuming_and_triggering_a_schedule);
