//! Celery-style calls end to end on the four backends: `delay`, `apply_async` with `countdown`,
//! `eta`, `priority`, `retries` and `expires`, and `#[task(expires)]`: a run not started by its
//! expiry ends cancelled with error `expired`, decided by the engine with no worker running;
//! `link` and `link_error`: runs the engine schedules once a run succeeds or fails.

use owlclaw::{task, Context, Error, FailedRun, ListFilter, RunStatus, ScheduleRequest, Utc};
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

#[task(name = "celery.double")]
async fn double(_ctx: Context, n: i64) -> anyhow::Result<i64> {
    Ok(n * 2)
}

#[task(name = "celery.explode", retries = 1, backoff_initial = "50ms")]
async fn explode(_ctx: Context, n: i64) -> anyhow::Result<i64> {
    anyhow::bail!("boom {n}")
}

#[task(name = "celery.report")]
async fn report(_ctx: Context, failure: FailedRun) -> anyhow::Result<String> {
    Ok(format!("{} failed: {}", failure.task, failure.error))
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

/// The children of `id` once there are `n`, oldest first.
async fn children(
    client: &owlclaw::Client,
    id: owlclaw::RunId,
    n: usize,
) -> Vec<owlclaw::RunSnapshot> {
    eventually("the linked runs", Duration::from_secs(60), || async {
        let page = client
            .list(ListFilter {
                parent_id: Some(id),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        let mut runs = page.runs;
        runs.reverse();
        (runs.len() >= n && runs.iter().all(|r| r.status.is_terminal())).then_some(runs)
    })
    .await
}

async fn links(env: TestEnv) {
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<add>()
        .task::<double>()
        .task::<explode>()
        .task::<report>()
        .start()
        .await
        .unwrap();

    // Success: the `link` runs with the output, the `link_error` doesn't.
    let ok = add::apply_async(&client, (2, 3))
        .link::<double>()
        .link::<double>()
        .link_error::<report>()
        .await
        .unwrap();
    assert_eq!(ok.result_timeout(Duration::from_secs(60)).await.unwrap(), 5);
    let linked = children(&client, ok.id(), 2).await;
    assert_eq!(linked.len(), 2, "{linked:?}");
    for child in &linked {
        assert_eq!(child.task, "celery.double");
        assert_eq!(child.input, serde_json::json!(5));
        assert_eq!(child.output, Some(serde_json::json!(10)));
        assert_eq!(child.parent_id, Some(ok.id()));
        assert_eq!(
            child.metadata,
            Some(serde_json::json!({"link_of": ok.id(), "on": "success"}))
        );
    }

    // Failure, retries spent: the `link_error` runs with the failure, the `link` doesn't.
    let bad = explode::apply_async(&client, 7)
        .link::<double>()
        .link_error::<report>()
        .await
        .unwrap();
    bad.result_timeout(Duration::from_secs(60))
        .await
        .unwrap_err();
    let linked = children(&client, bad.id(), 1).await;
    assert_eq!(linked.len(), 1, "{linked:?}");
    assert_eq!(linked[0].task, "celery.report");
    let failure: FailedRun = serde_json::from_value(linked[0].input.clone()).unwrap();
    assert_eq!(
        (failure.run_id, failure.task.as_str(), failure.attempts),
        (bad.id(), "celery.explode", 2)
    );
    assert!(failure.error.contains("boom 7"), "{failure:?}");
    assert_eq!(failure.input, serde_json::json!(7));
    assert_eq!(
        linked[0].output,
        Some(serde_json::json!(format!(
            "celery.explode failed: {}",
            failure.error
        )))
    );

    // A manual retry that fails again is followed up again.
    client.retry(bad.id()).await.unwrap();
    let linked = children(&client, bad.id(), 2).await;
    assert_eq!(linked.len(), 2, "{linked:?}");
    assert!(linked.iter().all(|r| r.task == "celery.report"));

    // A cancelled run schedules neither.
    let cancelled = explode::apply_async(&client, 1)
        .delay(Duration::from_secs(3600))
        .link::<double>()
        .link_error::<report>()
        .await
        .unwrap();
    client.cancel(cancelled.id()).await.unwrap();

    // Through the API's fields: a linked task no worker serves yet is scheduled and waits.
    let raw = client
        .submit(ScheduleRequest {
            task: "celery.add".into(),
            input: serde_json::json!([20, 1]),
            link: vec!["celery.nobody".into()],
            ..ScheduleRequest::default()
        })
        .await
        .unwrap();
    let waiting = eventually(
        "the unserved linked run",
        Duration::from_secs(60),
        || async {
            let page = client
                .list(ListFilter {
                    parent_id: Some(raw.run.id),
                    ..ListFilter::default()
                })
                .await
                .unwrap();
            page.runs.into_iter().next()
        },
    )
    .await;
    assert_eq!(
        (waiting.task.as_str(), waiting.status, &waiting.input),
        ("celery.nobody", RunStatus::Queued, &serde_json::json!(21))
    );

    // Bad links are refused, naming the field; nothing is stored.
    let before = client.list(ListFilter::default()).await.unwrap().runs.len();
    for (req, field) in [
        (
            ScheduleRequest {
                task: "celery.add".into(),
                link: vec!["not a task!".into()],
                ..ScheduleRequest::default()
            },
            "link",
        ),
        (
            ScheduleRequest {
                task: "celery.add".into(),
                link_error: vec!["celery.report".into(); 9],
                ..ScheduleRequest::default()
            },
            "link_error",
        ),
    ] {
        let err = client.submit(req).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field: f, .. } if f == field),
            "{err:?}"
        );
    }
    assert_eq!(
        client.list(ListFilter::default()).await.unwrap().runs.len(),
        before
    );

    // The cancelled run's links never ran: checked last, after every other follow-up.
    let none = client
        .list(ListFilter {
            parent_id: Some(cancelled.id()),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert!(none.runs.is_empty(), "{:?}", none.runs);
    worker.shutdown().await.unwrap();
}

both_backends!(delay_apply_async_and_expires, links);
