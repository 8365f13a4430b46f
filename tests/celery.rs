//! Celery-style calls end to end on the four backends: `delay`, `apply_async` with `countdown`,
//! `eta`, `priority`, `retries` and `expires`, and `#[task(expires)]`: a run not started by its
//! expiry ends cancelled with error `expired`, decided by the engine with no worker running.

use owlclaw::{task, Context, Error, RunStatus, ScheduleRequest, Utc};
use owlclaw_tests::{both_backends, eventually, TestEnv};
use std::time::Duration;

#[task(name = "celery.add")]
async fn add(_ctx: Context, pair: (i64, i64)) -> anyhow::Result<i64> {
    Ok(pair.0 + pair.1)
}

/// Served by no worker of these tests: its runs can only expire.
#[task(name = "celery.unserved")]
async fn unserved(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

/// Also unserved, with an expiry of its own.
#[task(name = "celery.short_lived", expires = "1s")]
async fn short_lived(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

async fn expired(client: &owlclaw::Client, id: owlclaw::RunId) -> owlclaw::RunSnapshot {
    let snap = eventually("the run expired", Duration::from_secs(60), || async {
        let s = client.status(id).await.unwrap();
        s.status.is_terminal().then_some(s)
    })
    .await;
    assert_eq!(snap.status, RunStatus::Cancelled);
    assert_eq!(snap.error.as_deref(), Some("expired"));
    assert_eq!(snap.attempt, 0, "it never started");
    let events = client.events(id).await.unwrap();
    assert!(
        events
            .last()
            .unwrap()
            .reason
            .starts_with("expired: not started by "),
        "{events:?}"
    );
    snap
}

async fn delay_apply_async_and_expires(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").task::<add>().start().await.unwrap();

    let run = add::delay(&client, (2, 3)).await.unwrap();
    assert_eq!(
        run.result_timeout(Duration::from_secs(60)).await.unwrap(),
        5
    );

    let before = Utc::now();
    let run = add::apply_async(&client, (1, 1))
        .countdown(Duration::from_secs(1))
        .priority(9)
        .retries(2)
        .expires(Duration::from_secs(600))
        .await
        .unwrap();
    let snap = run.snapshot().await.unwrap();
    assert!(snap.run_at >= before + chrono::Duration::milliseconds(900));
    assert_eq!((snap.priority, snap.max_attempts), (9, 3));
    assert!(snap.expires_at.unwrap() > before + chrono::Duration::seconds(590));
    assert_eq!(
        run.result_timeout(Duration::from_secs(60)).await.unwrap(),
        2
    );

    // An expiry before the run could start is refused, naming the field; nothing is stored.
    let eta = Utc::now() + chrono::Duration::seconds(30);
    let err = add::apply_async(&client, (0, 0))
        .eta(eta)
        .expires(eta - chrono::Duration::seconds(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "expires"),
        "{err:?}"
    );

    // Unstarted runs past their expiry end cancelled, with no worker for their task: through
    // the builder, through #[task(expires)], and through the API's field.
    let a = unserved::apply_async(&client, 1)
        .expires(Duration::from_secs(1))
        .await
        .unwrap();
    let b = short_lived::delay(&client, 2).await.unwrap();
    let snap_b = b.snapshot().await.unwrap();
    let lived = snap_b.expires_at.unwrap() - snap_b.run_at;
    assert!(
        (900..=1100).contains(&lived.num_milliseconds()),
        "#[task(expires = \"1s\")] counts from the due time: {lived}"
    );
    let c = client
        .submit(ScheduleRequest {
            task: "celery.unserved".into(),
            input: serde_json::json!(3),
            retries: Some(0),
            timeout: Some(Duration::from_secs(30)),
            expires: Some("1s".into()),
            ..ScheduleRequest::default()
        })
        .await
        .unwrap();
    let err = client
        .submit(ScheduleRequest {
            task: "celery.unserved".into(),
            retries: Some(0),
            timeout: Some(Duration::from_secs(30)),
            expires: Some("soon".into()),
            ..ScheduleRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "expires" && message.contains("\"soon\"")),
        "{err:?}"
    );
    worker.shutdown().await.unwrap();
    for id in [a.id(), b.id(), c.run.id] {
        expired(&client, id).await;
    }
}

both_backends!(delay_apply_async_and_expires);
