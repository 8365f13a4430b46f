//! Bulk actions end to end, on the four backends: cancel and retry every run a filter matches,
//! 1,000 per transaction, over 10,000 runs; counts; the filter's time range; an empty filter
//! refused.

use owlclaw::{task, Context, Error, ListFilter, RunStatus, Utc};
use owlclaw_tests::{both_backends, TestEnv};

#[task(name = "bulk.a")]
async fn bulk_a(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

#[task(name = "bulk.b")]
async fn bulk_b(_ctx: Context, n: u32) -> anyhow::Result<u32> {
    Ok(n)
}

fn of(task: &str, status: RunStatus) -> ListFilter {
    ListFilter {
        status: Some(status),
        task: Some(task.into()),
        ..ListFilter::default()
    }
}

/// 10,000 queued runs of one task are cancelled in pages of 1,000, the runs of another task
/// are left alone, and retrying them by filter queues them all again.
async fn bulk_cancel_and_retry_act_on_every_run_a_filter_matches(env: TestEnv) {
    let client = env.client().await;
    let before = Utc::now();
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(1000) {
        client
            .enqueue_bulk::<bulk_a>(chunk.iter().copied())
            .await
            .unwrap();
    }
    client.enqueue_bulk::<bulk_b>(0..10).await.unwrap();
    let queued_a = of("bulk.a", RunStatus::Queued);
    assert_eq!(client.count(queued_a.clone()).await.unwrap(), 10_000);
    // A bounded count stops at its bound and says so.
    let bounded = client.count_at_most(queued_a.clone(), 1000).await.unwrap();
    assert_eq!((bounded.count, bounded.capped), (1000, true));
    let bounded = client
        .count_at_most(queued_a.clone(), 20_000)
        .await
        .unwrap();
    assert_eq!((bounded.count, bounded.capped), (10_000, false));
    assert_eq!(
        client
            .count(ListFilter {
                created_before: Some(before),
                ..queued_a.clone()
            })
            .await
            .unwrap(),
        0,
        "none was created before the first enqueue"
    );

    // An empty filter is refused: a bulk action never applies to every run by default.
    let err = client
        .cancel_where(ListFilter::default(), |_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "filter"),
        "{err:?}"
    );

    let mut pages = Vec::new();
    let cancelled = client
        .cancel_where(queued_a.clone(), |page, so_far| {
            pages.push((page.matched, page.changed, so_far))
        })
        .await
        .unwrap();
    assert_eq!(cancelled, 10_000);
    assert_eq!(pages.len(), 10, "{pages:?}");
    assert!(
        pages.iter().all(|(m, c, _)| *m == 1000 && *c == 1000),
        "{pages:?}"
    );
    assert_eq!(pages.last().unwrap().2, 10_000);
    assert_eq!(client.count(queued_a.clone()).await.unwrap(), 0);
    assert_eq!(
        client
            .count(of("bulk.a", RunStatus::Cancelled))
            .await
            .unwrap(),
        10_000
    );
    assert_eq!(
        client.count(of("bulk.b", RunStatus::Queued)).await.unwrap(),
        10,
        "another task's runs are untouched"
    );
    // The overview: what waits, by task and priority, and what ended in the last hour.
    let overview = client.overview().await.unwrap();
    assert_eq!(overview.schema_version, 1);
    assert_eq!(
        overview
            .queued
            .iter()
            .map(|q| (q.task.as_str(), q.priority, q.count))
            .collect::<Vec<_>>(),
        vec![("bulk.b", 5, 10)]
    );
    assert_eq!(overview.minutes.len(), 60);
    assert!(overview
        .minutes
        .windows(2)
        .all(|w| w[0].minute < w[1].minute));
    assert_eq!(
        overview.minutes.iter().map(|m| m.cancelled).sum::<u64>(),
        10_000
    );
    assert_eq!(overview.minutes.iter().map(|m| m.succeeded).sum::<u64>(), 0);
    let sample = client
        .list(ListFilter {
            limit: Some(1),
            ..of("bulk.a", RunStatus::Cancelled)
        })
        .await
        .unwrap();
    let events = client.events(sample.runs[0].id).await.unwrap();
    assert_eq!(
        events.last().unwrap().reason,
        owlclaw_core::lifecycle::reason::CANCELLED_QUEUED
    );

    // Cancelling again changes nothing: they are finished.
    let again = client
        .cancel_where(
            ListFilter {
                task: Some("bulk.a".into()),
                created_after: Some(before),
                ..ListFilter::default()
            },
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(again, 0);

    let retried = client
        .retry_where(of("bulk.a", RunStatus::Cancelled), |_, _| {})
        .await
        .unwrap();
    assert_eq!(retried, 10_000);
    assert_eq!(client.count(queued_a).await.unwrap(), 10_000);
    let overview = client.overview().await.unwrap();
    assert_eq!(
        overview.queued.first().map(|q| (q.task.as_str(), q.count)),
        Some(("bulk.a", 10_000))
    );
    assert_eq!(
        overview.minutes.iter().map(|m| m.cancelled).sum::<u64>(),
        0,
        "retried runs are no longer finished"
    );
}

both_backends!(bulk_cancel_and_retry_act_on_every_run_a_filter_matches);
