//! Durable execution, on both backends: steps committed one by one and skipped on re-execution,
//! verified non-idempotent steps, non-determinism, durable sleeps (in place and suspended), child
//! runs, and idempotency keys that expire.

use owlclaw::{task, Context, Error, RunStatus, StepStatus};
use owlclaw_tests::{both_backends, eventually, finished, server_backends, TestEnv, Time};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

fn counts() -> &'static Mutex<HashMap<String, u32>> {
    static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Counts one execution of `what` for test `key`; returns the new count.
fn bump(key: &str, what: &str) -> u32 {
    let mut c = counts().lock().unwrap();
    let n = c.entry(format!("{key}/{what}")).or_default();
    *n += 1;
    *n
}

fn count(key: &str, what: &str) -> u32 {
    counts()
        .lock()
        .unwrap()
        .get(&format!("{key}/{what}"))
        .copied()
        .unwrap_or(0)
}

/// Three steps; the second fails on the first attempt.
#[task(retries = 2, backoff_initial = "50ms")]
async fn three_steps(ctx: Context, key: String) -> anyhow::Result<String> {
    let a: u32 = ctx
        .step("first", || async { anyhow::Ok(bump(&key, "first") * 10) })
        .await?;
    let b: String = ctx
        .step("second", || async {
            if bump(&key, "second") == 1 {
                anyhow::bail!("flaky dependency")
            }
            Ok(format!("b{a}"))
        })
        .await?;
    let c: String = ctx
        .step("third", || async {
            anyhow::Ok(format!("{b}-c{}", bump(&key, "third")))
        })
        .await?;
    Ok(c)
}

/// A non-idempotent step whose first execution times out after its effect happened.
#[task(retries = 1, timeout = "400ms", backoff_initial = "50ms")]
async fn upload(ctx: Context, key: String) -> anyhow::Result<String> {
    let url: String = ctx
        .step_verified(
            "upload",
            || async {
                bump(&key, "verify");
                // The earlier attempt did upload: report its result instead of uploading again.
                anyhow::Ok((count(&key, "effect") > 0).then(|| format!("https://cdn/{key}.png")))
            },
            || async {
                bump(&key, "effect");
                if bump(&key, "body") == 1 {
                    // The effect happened, then the worker hung past the timeout.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                anyhow::Ok(format!("https://cdn/{key}.png"))
            },
        )
        .await?;
    Ok(url)
}

/// Takes a different path on its second attempt.
#[task(retries = 3, backoff_initial = "50ms")]
async fn wanders(ctx: Context, key: String) -> anyhow::Result<()> {
    let step = if ctx.attempt() == 1 { "left" } else { "right" };
    ctx.step(step, || async { anyhow::Ok(bump(&key, step)) })
        .await?;
    anyhow::bail!("fail after the step, attempt {}", ctx.attempt())
}

/// A step, a durable sleep of `ms`, another step.
#[task(timeout = "1m")]
async fn naps(ctx: Context, job: (String, u64)) -> anyhow::Result<u32> {
    let (key, ms) = job;
    ctx.step("before", || async { anyhow::Ok(bump(&key, "before")) })
        .await?;
    ctx.sleep_for(Duration::from_millis(ms)).await?;
    let after = ctx
        .step("after", || async { anyhow::Ok(bump(&key, "after")) })
        .await?;
    Ok(after)
}

#[task]
async fn child(_ctx: Context, job: (String, u32)) -> anyhow::Result<u32> {
    bump(&job.0, "child");
    Ok(job.1 * 2)
}

/// Fans out three children, fails once after spawning them, then sums their outputs.
#[task(retries = 1, backoff_initial = "50ms")]
async fn fan_out(ctx: Context, key: String) -> anyhow::Result<u32> {
    let mut handles = Vec::new();
    for i in 1..=3 {
        handles.push(ctx.spawn::<child>((key.clone(), i)).await?);
    }
    if ctx.attempt() == 1 {
        anyhow::bail!("crash after spawning");
    }
    let mut sum = 0;
    for h in handles {
        sum += h.result().await?;
    }
    Ok(sum)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Awaiting {
    key: String,
    order: u64,
    timeout_ms: u64,
}

/// A first step, then a durable wait for the payment of its order: the event's id and amount,
/// or `None` when none came in time.
#[task(timeout = "1m")]
async fn awaits_payment(ctx: Context, a: Awaiting) -> anyhow::Result<Option<(String, u64)>> {
    ctx.step("prepare", || async { anyhow::Ok(bump(&a.key, "prepare")) })
        .await?;
    let filter = serde_json::json!({ "order": a.order });
    let timeout = Duration::from_millis(a.timeout_ms);
    let paid = ctx.wait_for_event("payment.done", filter, timeout).await?;
    bump(&a.key, "after");
    Ok(paid.map(|e| (e.id, e.payload["amount"].as_u64().unwrap_or(0))))
}

fn key(env: &TestEnv, k: &str) -> String {
    format!("{:?}-{k}", env.backend())
}

async fn completed_steps_are_not_run_again_when_the_run_is_retried(env: TestEnv) {
    let k = key(&env, "steps");
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<three_steps>()
        .start()
        .await
        .unwrap();
    let run = three_steps::enqueue(&client, k.clone()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "b10-c1");
    assert_eq!(
        (count(&k, "first"), count(&k, "second"), count(&k, "third")),
        (1, 2, 1)
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 2);
    let steps: Vec<_> = snap
        .steps
        .iter()
        .map(|s| (s.position, s.name.as_str(), s.status, s.attempt))
        .collect();
    assert_eq!(
        steps,
        [
            (0, "first", StepStatus::Succeeded, 1),
            (1, "second", StepStatus::Succeeded, 2),
            (2, "third", StepStatus::Succeeded, 2),
        ]
    );
    assert_eq!(snap.steps[0].output, Some(serde_json::json!(10)));
    assert!(snap.steps.iter().all(|s| s.finished_at.is_some()));
    let events = run.events().await.unwrap();
    let step_events: Vec<&str> = events
        .iter()
        .filter(|e| e.reason.starts_with("step "))
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(
        step_events,
        [
            "step 0 \"first\" succeeded",
            "step 1 \"second\" failed: flaky dependency",
            "step 1 \"second\" succeeded",
            "step 2 \"third\" succeeded",
        ]
    );
    worker.shutdown().await.unwrap();
}

async fn a_verified_step_started_but_not_committed_is_verified_instead_of_run_again(env: TestEnv) {
    let k = key(&env, "upload");
    let client = env.client().await;
    let worker = client.worker("w").task::<upload>().start().await.unwrap();
    let run = upload::enqueue(&client, k.clone()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), format!("https://cdn/{k}.png"));
    assert_eq!(count(&k, "effect"), 1, "the upload happened once");
    assert_eq!(count(&k, "verify"), 1, "verified on the second attempt");
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 2);
    assert_eq!(snap.steps[0].status, StepStatus::Succeeded);
    worker.shutdown().await.unwrap();
}

async fn a_run_taking_another_path_fails_as_non_deterministic_without_more_retries(env: TestEnv) {
    let k = key(&env, "wander");
    let client = env.client().await;
    let worker = client.worker("w").task::<wanders>().start().await.unwrap();
    let run = wanders::enqueue(&client, k.clone()).await.unwrap();
    let snap = finished(&client, run.id()).await;
    assert_eq!(snap.status, RunStatus::Failed);
    assert_eq!(
        snap.attempt, 2,
        "not retried after the non-determinism error"
    );
    let error = snap.error.unwrap();
    assert!(
        error.contains("non-deterministic")
            && error.contains("\"left\"")
            && error.contains("\"right\""),
        "{error}"
    );
    assert_eq!((count(&k, "left"), count(&k, "right")), (1, 0));
    worker.shutdown().await.unwrap();
}

async fn a_short_durable_sleep_keeps_the_slot_and_records_its_wake_time(env: TestEnv) {
    let k = key(&env, "nap");
    let client = env.client().await;
    let worker = client.worker("w").task::<naps>().start().await.unwrap();
    let run = naps::enqueue(&client, (k.clone(), 300)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 1);
    let snap = run.snapshot().await.unwrap();
    assert_eq!(
        snap.steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["before", "sleep", "after"]
    );
    let wake: owlclaw::DateTime<owlclaw::Utc> =
        serde_json::from_value(snap.steps[1].output.clone().unwrap()["wake_at"].clone()).unwrap();
    assert!(snap.finished_at.unwrap() >= wake);
    assert!(!run
        .events()
        .await
        .unwrap()
        .iter()
        .any(|e| e.reason.starts_with("suspended")));
    worker.shutdown().await.unwrap();
}

async fn a_long_durable_sleep_gives_the_slot_back_and_resumes_after_completed_steps(env: TestEnv) {
    let k = key(&env, "suspend");
    let client = env.client().await;
    long_sleep(&client, k, Time::Real).await;
}

/// The same on the lite engine, by a clock the test moves: the sleep parks at once and ends
/// when the test moves the clock past its wake time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_durable_sleep_gives_the_slot_back_and_resumes_after_completed_steps_by_the_test_clock(
) {
    let t = owlclaw::testing::TestEngine::start().await.unwrap();
    long_sleep(t.client(), "suspend-test-clock".into(), Time::Test(&t)).await;
}

async fn long_sleep(client: &owlclaw::Client, k: String, time: Time<'_>) {
    let worker = client
        .worker("w")
        .task::<naps>()
        .slots(1)
        .suspend_threshold(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    // Asleep long enough that the other run below finishes meanwhile, even on a loaded machine
    // (1.5 s was not: the whole suite in parallel made it fail 2 times in 9).
    let run = naps::enqueue(client, (k.clone(), 4000)).await.unwrap();
    eventually("the run to be parked", Duration::from_secs(10), || async {
        (run.status().await.unwrap() == RunStatus::Scheduled).then_some(())
    })
    .await;
    // Its only slot is free meanwhile.
    let other = naps::enqueue(client, (format!("{k}-other"), 0))
        .await
        .unwrap();
    assert_eq!(
        other.result_timeout(Duration::from_secs(10)).await.unwrap(),
        1
    );
    assert_eq!(
        run.status().await.unwrap(),
        RunStatus::Scheduled,
        "still sleeping"
    );
    time.bring(Duration::from_secs(5)).await;
    assert_eq!(run.result().await.unwrap(), 1);
    assert_eq!(
        (count(&k, "before"), count(&k, "after")),
        (1, 1),
        "resumed after its completed steps"
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 1, "a suspension is not an attempt");
    let wake: owlclaw::DateTime<owlclaw::Utc> =
        serde_json::from_value(snap.steps[1].output.clone().unwrap()["wake_at"].clone()).unwrap();
    assert!(
        snap.started_at.unwrap() >= wake,
        "re-dispatched at its wake time"
    );
    assert!(run
        .events()
        .await
        .unwrap()
        .iter()
        .any(|e| e.reason.starts_with("suspended: sleeping until")));
    worker.shutdown().await.unwrap();
}

async fn spawned_children_are_found_again_not_spawned_twice(env: TestEnv) {
    let k = key(&env, "fan");
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<fan_out>()
        .task::<child>()
        .slots(4)
        .start()
        .await
        .unwrap();
    let run = fan_out::enqueue(&client, k.clone()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 2 + 4 + 6);
    assert_eq!(count(&k, "child"), 3, "three children, each run once");
    let children = client
        .list(owlclaw::ListFilter {
            task: Some("child".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .runs
        .into_iter()
        .filter(|r| r.parent_id == Some(run.id()))
        .count();
    assert_eq!(children, 3);
    worker.shutdown().await.unwrap();
}

async fn an_idempotency_key_is_freed_after_its_ttl(env: TestEnv) {
    env.set_engine(|e| e.idempotency_ttl = Duration::ZERO);
    let k = key(&env, "ttl");
    let client = env.client().await;
    let worker = client.worker("w").task::<child>().start().await.unwrap();
    let first = child::enqueue(&client, (k.clone(), 1))
        .idempotency_key("nightly")
        .await
        .unwrap();
    first.result().await.unwrap();
    // Finished and past the (zero) TTL: the key starts a new run, with the same derived id.
    let second = child::enqueue(&client, (k.clone(), 2))
        .idempotency_key("nightly")
        .await
        .unwrap();
    assert!(second.was_created());
    assert_eq!(second.id(), first.id());
    assert_eq!(second.result().await.unwrap(), 4);
    assert_eq!(count(&k, "child"), 2);
    // While a run holding the key is not finished, the key still binds.
    let third = child::schedule(&client, (k.clone(), 3), Duration::from_secs(60))
        .idempotency_key("weekly")
        .await
        .unwrap();
    let again = child::schedule(&client, (k.clone(), 3), Duration::from_secs(60))
        .idempotency_key("weekly")
        .await
        .unwrap();
    assert!(!again.was_created());
    assert_eq!(again.id(), third.id());
    let conflict = child::enqueue(&client, (k.clone(), 4))
        .idempotency_key("weekly")
        .await;
    assert!(
        matches!(conflict, Err(Error::IdempotencyConflict { .. })),
        "{conflict:?}"
    );
    worker.shutdown().await.unwrap();
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Product {
    key: String,
    images: Vec<String>,
}

/// The marketplace scenario of `examples/marketplace_publish.rs`: the second image's upload
/// fails on the first attempt after its effect happened.
#[task(retries = 3, backoff_initial = "50ms")]
async fn publish(ctx: Context, p: Product) -> anyhow::Result<String> {
    let k = p.key.clone();
    ctx.step("validate", || async { anyhow::Ok(bump(&k, "validate")) })
        .await?;
    ctx.step("map_data", || async { anyhow::Ok(bump(&k, "map_data")) })
        .await?;
    let mut urls = Vec::new();
    for (i, image) in p.images.iter().enumerate() {
        let step = format!("upload_image_{}", i + 1);
        let url = format!("cdn/{k}/{image}");
        let uploaded = ctx
            .step_verified(
                &step,
                || async {
                    bump(&k, &format!("{step}/verify"));
                    anyhow::Ok((count(&k, &step) > 0).then(|| url.clone()))
                },
                || async {
                    if bump(&k, &step) == 1 && i == 1 {
                        anyhow::bail!("CDN answered 503 after storing the file");
                    }
                    anyhow::Ok(url.clone())
                },
            )
            .await?;
        urls.push(uploaded);
    }
    let listing: String = ctx
        .step("create_listing", || async {
            bump(&k, "create_listing");
            anyhow::Ok(format!("L-{}", urls.len()))
        })
        .await?;
    ctx.step("save", || async { anyhow::Ok(bump(&k, "save")) })
        .await?;
    Ok(listing)
}

async fn publishing_a_product_retries_only_what_did_not_complete(env: TestEnv) {
    let k = key(&env, "market");
    let client = env.client().await;
    let worker = client.worker("w").task::<publish>().start().await.unwrap();
    let images = vec![
        "front.jpg".to_string(),
        "side.jpg".to_string(),
        "box.jpg".to_string(),
    ];
    let run = publish::enqueue(
        &client,
        Product {
            key: k.clone(),
            images,
        },
    )
    .await
    .unwrap();
    assert_eq!(run.result().await.unwrap(), "L-3");
    let ran = |what: &str| count(&k, what);
    assert_eq!(
        [
            ran("validate"),
            ran("map_data"),
            ran("upload_image_1"),
            ran("upload_image_2"),
            ran("upload_image_3")
        ],
        [1, 1, 1, 1, 1],
        "each body ran once"
    );
    assert_eq!([ran("create_listing"), ran("save")], [1, 1]);
    assert_eq!(
        [
            ran("upload_image_1/verify"),
            ran("upload_image_2/verify"),
            ran("upload_image_3/verify")
        ],
        [0, 1, 0],
        "only the failed upload was verified"
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 2);
    let names: Vec<_> = snap.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "validate",
            "map_data",
            "upload_image_1",
            "upload_image_2",
            "upload_image_3",
            "create_listing",
            "save"
        ]
    );
    assert!(snap.steps.iter().all(|s| s.status == StepStatus::Succeeded));
    worker.shutdown().await.unwrap();
}

/// A step, then a failure with no retry left until the input says otherwise (a flag file).
#[task]
async fn fails_after_a_step(ctx: Context, key: String) -> anyhow::Result<u32> {
    let n: u32 = ctx
        .step("charge", || async { anyhow::Ok(bump(&key, "charge")) })
        .await?;
    if bump(&key, "tail") == 1 {
        anyhow::bail!("the shipping service is down");
    }
    Ok(n)
}

async fn a_manual_retry_keeps_the_completed_steps(env: TestEnv) {
    let k = key(&env, "manual");
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<fails_after_a_step>()
        .start()
        .await
        .unwrap();
    let run = fails_after_a_step::enqueue(&client, k.clone())
        .await
        .unwrap();
    assert_eq!(finished(&client, run.id()).await.status, RunStatus::Failed);
    assert_eq!(
        client.retry(run.id()).await.unwrap().status,
        RunStatus::Queued
    );
    assert_eq!(
        run.result().await.unwrap(),
        1,
        "the stored output of the charge"
    );
    assert_eq!(count(&k, "charge"), 1, "the charge was not made twice");
    assert_eq!(run.snapshot().await.unwrap().attempt, 2);
    worker.shutdown().await.unwrap();
}

/// A run waiting for an event gives its slot back; an event of another order ends nothing; the
/// matching one queues the run again, which resumes after its completed steps with the event.
async fn a_wait_for_an_event_frees_the_slot_and_resumes_with_the_matching_event(env: TestEnv) {
    let k = key(&env, "wait");
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<awaits_payment>()
        .task::<naps>()
        .slots(1)
        .start()
        .await
        .unwrap();
    let wait = Awaiting {
        key: k.clone(),
        order: 7,
        timeout_ms: 600_000,
    };
    let run = awaits_payment::enqueue(&client, wait).await.unwrap();
    eventually("the run to be parked", Duration::from_secs(20), || async {
        (run.status().await.unwrap() == RunStatus::Scheduled).then_some(())
    })
    .await;
    let events = run.events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.starts_with("waiting for event payment.done until")),
        "{events:?}"
    );
    // Its only slot is free meanwhile.
    let other = naps::enqueue(&client, (format!("{k}-other"), 0))
        .await
        .unwrap();
    assert_eq!(
        other.result_timeout(Duration::from_secs(20)).await.unwrap(),
        1
    );
    let payment = |order: u64, amount: u64| serde_json::json!({"order": order, "amount": amount});
    let pushed = client
        .push_event_with_id("pay-8", "payment.done", &payment(8, 5))
        .await
        .unwrap();
    assert!(pushed.resumed.is_empty(), "another order: {pushed:?}");
    assert_eq!(run.status().await.unwrap(), RunStatus::Scheduled);
    let pushed = client
        .push_event_with_id("pay-7", "payment.done", &payment(7, 30))
        .await
        .unwrap();
    assert_eq!(pushed.resumed, vec![run.id()]);
    assert_eq!(
        run.result_timeout(Duration::from_secs(20)).await.unwrap(),
        Some(("pay-7".to_string(), 30))
    );
    assert_eq!(
        (count(&k, "prepare"), count(&k, "after")),
        (1, 1),
        "resumed after its completed step"
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.attempt, 1, "a wait is not an attempt");
    let step = &snap.steps[1];
    assert_eq!(
        (step.name.as_str(), step.status),
        ("wait_for_event:payment.done", StepStatus::Succeeded)
    );
    let got = &step.output.as_ref().unwrap()["event"];
    assert_eq!(
        (&got["id"], &got["key"], &got["payload"]),
        (
            &serde_json::json!("pay-7"),
            &serde_json::json!("payment.done"),
            &payment(7, 30)
        )
    );
    let events = run.events().await.unwrap();
    let arrived = events
        .iter()
        .find(|e| e.reason == "event payment.done (pay-7) arrived: its wait is over")
        .unwrap_or_else(|| panic!("no arrival event in {events:?}"));
    assert_eq!(
        (arrived.from, arrived.to),
        (Some(RunStatus::Scheduled), RunStatus::Queued)
    );
    // The same event again ends nothing more.
    let again = client
        .push_event_with_id("pay-7", "payment.done", &payment(7, 30))
        .await
        .unwrap();
    assert!(!again.created && again.resumed.is_empty(), "{again:?}");
    worker.shutdown().await.unwrap();
}

/// The window of a wait opens when its run is created: an event pushed before that is not
/// taken, the first one pushed after it is, even though no worker had started the run yet.
async fn an_event_pushed_after_the_run_was_created_and_before_its_wait_is_taken(env: TestEnv) {
    let k = key(&env, "window");
    let client = env.client().await;
    let payment = |order: u64, amount: u64| serde_json::json!({"order": order, "amount": amount});
    client
        .push_event_with_id("before-run", "payment.done", &payment(1, 1))
        .await
        .unwrap();
    let wait = Awaiting {
        key: k.clone(),
        order: 1,
        timeout_ms: 600_000,
    };
    let run = awaits_payment::enqueue(&client, wait).await.unwrap();
    for (id, amount) in [("in-window", 2), ("later", 3)] {
        let pushed = client
            .push_event_with_id(id, "payment.done", &payment(1, amount))
            .await
            .unwrap();
        assert!(pushed.resumed.is_empty(), "the run is not waiting yet");
    }
    let worker = client
        .worker("w")
        .task::<awaits_payment>()
        .start()
        .await
        .unwrap();
    assert_eq!(
        run.result_timeout(Duration::from_secs(20)).await.unwrap(),
        Some(("in-window".to_string(), 2))
    );
    let reasons: Vec<String> = run
        .events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"event payment.done (in-window) arrived: its wait is over".to_string()),
        "{reasons:?}"
    );
    assert_eq!(count(&k, "prepare"), 1);
    worker.shutdown().await.unwrap();
}

/// A wait that no event ends returns `None` at its timeout; a matching event pushed after that
/// changes nothing.
async fn a_wait_without_an_event_ends_at_its_timeout_with_none(env: TestEnv) {
    let k = key(&env, "timeout");
    let client = env.client().await;
    let worker = client
        .worker("w")
        .task::<awaits_payment>()
        .start()
        .await
        .unwrap();
    let wait = Awaiting {
        key: k.clone(),
        order: 9,
        timeout_ms: 300,
    };
    let run = awaits_payment::enqueue(&client, wait).await.unwrap();
    assert_eq!(
        run.result_timeout(Duration::from_secs(20)).await.unwrap(),
        None
    );
    let snap = run.snapshot().await.unwrap();
    assert_eq!(
        snap.steps[1].output,
        Some(serde_json::json!({"event": null}))
    );
    let pushed = client
        .push_event(
            "payment.done",
            &serde_json::json!({"order": 9, "amount": 1}),
        )
        .await
        .unwrap();
    assert!(pushed.resumed.is_empty(), "{pushed:?}");
    assert_eq!((count(&k, "prepare"), count(&k, "after")), (1, 1));
    worker.shutdown().await.unwrap();
}

/// Events pushed through another client (another engine in lite mode) while their runs start
/// and park are never missed: each run gets its own event, none waits for its timeout.
async fn events_pushed_while_their_runs_park_are_never_missed(env: TestEnv) {
    let k = key(&env, "race");
    let a = env.client().await;
    let b = env.client().await;
    let worker = a
        .worker("w")
        .task::<awaits_payment>()
        .slots(10)
        .start()
        .await
        .unwrap();
    let mut runs = Vec::new();
    for order in 100..120u64 {
        let wait = Awaiting {
            key: k.clone(),
            order,
            timeout_ms: 600_000,
        };
        runs.push((order, awaits_payment::enqueue(&a, wait).await.unwrap()));
    }
    for order in 100..120u64 {
        let payment = serde_json::json!({"order": order, "amount": order});
        b.push_event_with_id(&format!("race-{order}"), "payment.done", &payment)
            .await
            .unwrap();
    }
    for (order, run) in runs {
        assert_eq!(
            run.result_timeout(Duration::from_secs(60)).await.unwrap(),
            Some((format!("race-{order}"), order))
        );
    }
    worker.shutdown().await.unwrap();
}

both_backends!(
    events_pushed_while_their_runs_park_are_never_missed,
    a_wait_for_an_event_frees_the_slot_and_resumes_with_the_matching_event,
    an_event_pushed_after_the_run_was_created_and_before_its_wait_is_taken,
    a_wait_without_an_event_ends_at_its_timeout_with_none,
    a_manual_retry_keeps_the_completed_steps,
    publishing_a_product_retries_only_what_did_not_complete,
    completed_steps_are_not_run_again_when_the_run_is_retried,
    a_verified_step_started_but_not_committed_is_verified_instead_of_run_again,
    a_run_taking_another_path_fails_as_non_deterministic_without_more_retries,
    a_short_durable_sleep_keeps_the_slot_and_records_its_wake_time,
    spawned_children_are_found_again_not_spawned_twice,
    an_idempotency_key_is_freed_after_its_ttl,
);

// The long sleep in real time through a server (SQLite and PostgreSQL); the lite engine's, the
// same code, by the test clock above.
server_backends!(
    server_real_time,
    server_postgres_real_time;
    a_long_durable_sleep_gives_the_slot_back_and_resumes_after_completed_steps,
);
