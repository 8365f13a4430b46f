//! Cron schedules under an operator's control, end to end on the four backends: pause (nothing
//! fires), resume (the ticks missed meanwhile are not fired), trigger (one run now); interval
//! schedules, overlap policies and catch-up policies.

use owlclaw::{task, Context, ListFilter, RunStatus, Utc};
use owlclaw_core::cron::{CatchUp, Overlap};
use owlclaw_tests::{eventually, server_backends, TestEnv, Time};
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
    pause_resume_trigger(&client, Time::Real).await;
}

/// The same on the lite engine, by a clock the test moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_resuming_and_triggering_a_schedule_by_the_test_clock() {
    let t = owlclaw::testing::TestEngine::start().await.unwrap();
    pause_resume_trigger(t.client(), Time::Test(&t)).await;
}

async fn pause_resume_trigger(client: &owlclaw::Client, time: Time<'_>) {
    let worker = client.worker("w").slots(4).start().await.unwrap();
    time.let_ticks_come().await;
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
    time.pass(Duration::from_millis(1500)).await;
    let before = client.count(of_task()).await.unwrap();
    // Several ticks pass while paused: none fires.
    time.pass(Duration::from_secs(3)).await;
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
    let resumed_at = client.now();
    let resumed = client.resume_cron(ID).await.unwrap();
    assert_eq!(resumed.paused_at, None);
    assert!(resumed.next_tick.is_some());
    assert_eq!(resumed.next_ticks.len(), 3, "the next three ticks");
    assert!(resumed.next_ticks.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(resumed.next_tick, resumed.next_ticks.first().copied());
    time.let_ticks_come().await;
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

/// Interval schedules: `#[task(every)]`, and one created at run time (`@every`), tick on the
/// multiples of their interval since the epoch.
#[task(name = "sched.interval", every = "1s")]
async fn interval(_ctx: Context) -> anyhow::Result<()> {
    Ok(())
}

/// The tick a cron run was fired for, read from its first event's reason.
async fn tick_of(client: &owlclaw::Client, id: owlclaw::RunId) -> chrono::DateTime<Utc> {
    let created = client.events(id).await.unwrap()[0].reason.clone();
    created
        .rsplit(' ')
        .next()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("a cron tick's reason names its tick: {created:?}"))
        .with_timezone(&Utc)
}

/// The runs of `task` whose input is `input`, oldest first, once there are at least `n`.
async fn runs_of(
    client: &owlclaw::Client,
    task: &str,
    input: &serde_json::Value,
    n: usize,
) -> Vec<owlclaw::RunSnapshot> {
    eventually("the schedule's runs", Duration::from_secs(90), || async {
        let mut runs: Vec<_> = client
            .list(ListFilter {
                task: Some(task.into()),
                limit: Some(200),
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .runs
            .into_iter()
            .filter(|r| &r.input == input)
            .collect();
        runs.reverse();
        (runs.len() >= n).then_some(runs)
    })
    .await
}

async fn interval_schedules(env: TestEnv) {
    let client = env.client().await;
    intervals(&client, Time::Real).await;
}

/// The same on the lite engine, by a clock the test moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_schedules_by_the_test_clock() {
    let t = owlclaw::testing::TestEngine::start().await.unwrap();
    intervals(t.client(), Time::Test(&t)).await;
}

async fn intervals(client: &owlclaw::Client, time: Time<'_>) {
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let crons = client.crons().await.unwrap();
    let declared = crons
        .iter()
        .find(|c| c.id == "task:sched.interval")
        .expect("the #[task(every)] schedule");
    assert_eq!(declared.expr, "@every 1s");
    let created = client
        .create_cron(owlclaw::CronRequest {
            task: "sched.interval".into(),
            expr: "@every 2s".into(),
            timezone: None,
            input: serde_json::json!({"every": 2}),
            overlap: None,
            catch_up: None,
        })
        .await
        .unwrap();
    assert_eq!(created.next_ticks.len(), 3);
    for t in &created.next_ticks {
        assert_eq!(t.timestamp() % 2, 0, "{t}: on a multiple of 2 s");
        assert_eq!(t.timestamp_subsec_micros(), 0);
    }
    // Two ticks of the 2 s schedule, three of the 1 s one.
    time.bring(Duration::from_secs(5)).await;
    let every_second = runs_of(client, "sched.interval", &serde_json::Value::Null, 3).await;
    let every_two = runs_of(
        client,
        "sched.interval",
        &serde_json::json!({"every": 2}),
        2,
    )
    .await;
    for (runs, secs) in [(&every_second, 1), (&every_two, 2)] {
        let mut ticks = Vec::new();
        for r in runs.iter() {
            let t = tick_of(client, r.id).await;
            assert_eq!(t.timestamp() % secs, 0, "{t}: on a multiple of {secs} s");
            assert_eq!(t.timestamp_subsec_micros(), 0, "{t}");
            ticks.push(t);
        }
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    }
    // Bad intervals are refused, naming the field.
    let err = client
        .create_cron(owlclaw::CronRequest {
            task: "sched.interval".into(),
            expr: "@every 0s".into(),
            timezone: None,
            input: serde_json::Value::Null,
            overlap: None,
            catch_up: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, owlclaw::Error::InvalidInput { field, .. } if field == "expr"),
        "{err:?}"
    );
    client.delete_cron(&created.id).await.unwrap();
    worker.shutdown().await.unwrap();
}

/// Holds its slot for `hold_ms`, or sleeps durably for `nap_s` (by the engine's clock).
#[task(name = "sched.hold", timeout = "1m")]
async fn hold(ctx: Context, input: serde_json::Value) -> anyhow::Result<()> {
    if let Some(s) = input["nap_s"].as_u64() {
        ctx.sleep_for(Duration::from_secs(s)).await?;
    }
    let ms = input["hold_ms"].as_u64().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

async fn overlap_policies(env: TestEnv) {
    let client = env.client().await;
    let policies = [
        (Overlap::Skip, "1s", serde_json::json!({"hold_ms": 2500})),
        (
            Overlap::CancelPrevious,
            "1s",
            serde_json::json!({"hold_ms": 30_000}),
        ),
        // Ticks every 2 s, runs of 2.5 s: the tick 2 s into a run waits for it.
        (
            Overlap::BufferOne,
            "2s",
            serde_json::json!({"hold_ms": 2500}),
        ),
    ];
    overlap(&client, Time::Real, policies).await;
}

/// The same policies by a clock the test moves (`owlclaw::testing::TestEngine`): runs that
/// sleep durably two and a half minutes, ticks every minute, twelve minutes passed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_policies_by_the_test_clock() {
    let t = owlclaw::testing::TestEngine::start().await.unwrap();
    let policies = [
        (Overlap::Skip, "1m", serde_json::json!({"nap_s": 150})),
        (
            Overlap::CancelPrevious,
            "1m",
            serde_json::json!({"nap_s": 3600}),
        ),
        (Overlap::BufferOne, "1m", serde_json::json!({"nap_s": 150})),
    ];
    overlap(t.client(), Time::Test(&t), policies).await;
}

/// A worker serving `sched.hold`, a schedule per policy, then what each policy let run once
/// twelve minutes have been brought (a real clock brings them while the check waits).
async fn overlap(
    client: &owlclaw::Client,
    time: Time<'_>,
    policies: [(Overlap, &str, serde_json::Value); 3],
) {
    let worker = client
        .worker("w")
        .slots(8)
        .task::<hold>()
        .start()
        .await
        .unwrap();
    let schedules = create_overlapping(client, policies).await;
    time.bring(Duration::from_secs(12 * 60)).await;
    check_overlap(client, &schedules).await;
    worker.shutdown().await.unwrap();
}

/// Creates a schedule of `sched.hold` per policy, with its interval and input (which tells the
/// schedules apart); returns each policy with its input and schedule id.
async fn create_overlapping(
    client: &owlclaw::Client,
    policies: [(Overlap, &str, serde_json::Value); 3],
) -> Vec<(Overlap, serde_json::Value, String)> {
    let mut out = Vec::new();
    for (policy, every, mut input) in policies {
        input["policy"] = serde_json::json!(policy.as_str());
        let cron = client
            .create_cron(owlclaw::CronRequest {
                task: "sched.hold".into(),
                expr: format!("@every {every}"),
                input: input.clone(),
                overlap: Some(policy),
                ..owlclaw::CronRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(cron.overlap, policy);
        out.push((policy, input, cron.id));
    }
    out
}

/// What each overlap policy promises, read from the runs of its schedule.
async fn check_overlap(
    client: &owlclaw::Client,
    schedules: &[(Overlap, serde_json::Value, String)],
) {
    let client = client.clone();
    for (policy, input, id) in schedules {
        match policy {
            // A tick while the last run holds is skipped: runs never overlap, and go on.
            Overlap::Skip => {
                let runs = runs_of(&client, "sched.hold", input, 3).await;
                let runs = finished_first(&client, runs).await;
                for w in runs.windows(2) {
                    let prev_end = w[0].finished_at.expect("finished");
                    assert!(
                        w[1].created_at >= prev_end,
                        "skip: a run created at {} while the last ran until {prev_end}",
                        w[1].created_at
                    );
                }
            }
            // Each tick cancels the run before it.
            Overlap::CancelPrevious => {
                let runs = runs_of(&client, "sched.hold", input, 4).await;
                let runs = finished_first(&client, runs).await;
                for r in &runs {
                    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
                }
            }
            // A tick while the last run holds waits for it: runs never overlap, and a tick that
            // came while one held ran after it.
            Overlap::BufferOne => {
                let runs = runs_of(&client, "sched.hold", input, 3).await;
                let runs = finished_first(&client, runs).await;
                let mut buffered = false;
                let mut seen = Vec::new();
                for w in runs.windows(2) {
                    let prev_end = w[0].finished_at.expect("finished");
                    assert!(
                        w[1].created_at >= prev_end,
                        "buffer_one: a run created at {} while the last ran until {prev_end}",
                        w[1].created_at
                    );
                    let tick = tick_of(&client, w[1].id).await;
                    seen.push((tick, w[1].created_at, prev_end));
                    buffered |= tick < prev_end;
                }
                assert!(
                    buffered,
                    "a tick that came while a run held ran after it: (tick, created, last ended) {seen:?}"
                );
            }
            Overlap::Allow => unreachable!(),
        }
        client.delete_cron(id).await.unwrap();
    }
    // The runs still holding their slot are not needed any more.
    for r in client
        .list(ListFilter {
            task: Some("sched.hold".into()),
            limit: Some(200),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .runs
    {
        if !r.status.is_terminal() {
            let _ = client.cancel(r.id).await;
        }
    }
}

/// The runs but the newest, once each has finished (the newest may still run).
async fn finished_first(
    client: &owlclaw::Client,
    runs: Vec<owlclaw::RunSnapshot>,
) -> Vec<owlclaw::RunSnapshot> {
    let mut done = Vec::new();
    for r in &runs[..runs.len() - 1] {
        done.push(
            eventually("the run finished", Duration::from_secs(90), || async {
                let s = client.status(r.id).await.unwrap();
                s.status.is_terminal().then_some(s)
            })
            .await,
        );
    }
    done
}

// Pause/resume/trigger, intervals and the overlap policies in real time through a server
// (SQLite and PostgreSQL); the lite engine's, the same code, by the test clock above.
server_backends!(
    server_real_time,
    server_postgres_real_time;
    pausing_resuming_and_triggering_a_schedule,
    interval_schedules,
    overlap_policies,
);

/// Ticks missed while no engine ran, as each catch-up policy says: a yearly schedule created
/// three years ago that never ran (every missed tick is older than the grace) is found by an
/// engine starting now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_policies_after_downtime() {
    const YEARLY: &str = "0 0 1 1 *";
    for backend in [
        owlclaw_tests::Backend::Lite,
        owlclaw_tests::Backend::LitePostgres,
    ] {
        let Some(env) = TestEnv::new(backend).await else {
            continue; // no PostgreSQL configured
        };
        let store = owlclaw_engine::store::open(&env.database_url())
            .await
            .unwrap();
        let created_at = Utc::now() - chrono::Duration::days(3 * 365);
        for policy in [CatchUp::Latest, CatchUp::All, CatchUp::None] {
            store
                .upsert_cron(&owlclaw_engine::store::CronRecord {
                    tenant: owlclaw_engine::LITE_TENANT.into(),
                    schedule: owlclaw::CronSchedule {
                        id: format!("missed-{}", policy.as_str()),
                        task: "sched.hold".into(),
                        expr: YEARLY.into(),
                        timezone: "UTC".into(),
                        input: serde_json::json!({"catch_up": policy.as_str()}),
                        overlap: Overlap::Allow,
                        catch_up: policy,
                        last_tick: None,
                        last_fired: None,
                        next_tick: None,
                        created_at,
                        paused_at: None,
                        next_ticks: Vec::new(),
                        last_run: None,
                    },
                })
                .await
                .unwrap();
        }
        store.close().await;
        // The ticks missed: every New Year since, three of them.
        let expr = owlclaw_core::cron::CronExpr::parse(YEARLY).unwrap();
        let mut missed = Vec::new();
        let mut t = created_at;
        while let Some(next) = expr.next_after(t).filter(|n| *n <= Utc::now()) {
            missed.push(next);
            t = next;
        }
        assert_eq!(missed.len(), 3, "{missed:?}");
        let client = env.client().await;
        let runs = |policy: CatchUp| {
            let client = client.clone();
            async move {
                let mut ticks = Vec::new();
                for r in client
                    .list(ListFilter {
                        task: Some("sched.hold".into()),
                        ..ListFilter::default()
                    })
                    .await
                    .unwrap()
                    .runs
                    .into_iter()
                    .filter(|r| r.input == serde_json::json!({"catch_up": policy.as_str()}))
                {
                    ticks.push(tick_of(&client, r.id).await);
                }
                ticks.sort();
                ticks
            }
        };
        // `all`: a run per missed tick; `latest`: one, for the latest.
        let all = eventually("the caught-up runs", Duration::from_secs(60), || async {
            let ticks = runs(CatchUp::All).await;
            (ticks.len() >= 3).then_some(ticks)
        })
        .await;
        assert_eq!(all, missed, "{backend:?}");
        let latest = eventually("the latest caught up", Duration::from_secs(60), || async {
            let ticks = runs(CatchUp::Latest).await;
            (!ticks.is_empty()).then_some(ticks)
        })
        .await;
        assert_eq!(latest, vec![missed[2]], "{backend:?}");
        // `none`: no run, and its last tick moved on to the latest missed one.
        let none = eventually(
            "the missed ticks passed",
            Duration::from_secs(60),
            || async {
                client
                    .crons()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|c| c.id == "missed-none" && c.last_tick.is_some())
            },
        )
        .await;
        assert_eq!(none.last_tick, Some(missed[2]), "{backend:?}");
        assert_eq!(none.last_fired, None, "no tick of it started a run");
        assert!(runs(CatchUp::None).await.is_empty(), "{backend:?}");
    }
}
