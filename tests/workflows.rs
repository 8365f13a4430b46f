//! Workflows end to end, on the four backends: a DAG of tasks run in dependency order with
//! parallel branches, typed parent outputs, failure (dependants skipped, running tasks
//! cancelled, the on-failure task run), manual retry keeping succeeded tasks, cancellation, the
//! plan, event triggers, the shape's checks at registration, and a run behind many waiting.

use owlclaw::{task, workflow, Context, Error, RunStatus, ScheduleRequest, Utc, WorkflowFailure};
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::WorkerRegistration;
use owlclaw_core::workflow::{WorkflowShape, WorkflowTask};
use owlclaw_tests::{both_backends, eventually, TestEnv};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What each test's tasks did and when, keyed by the test's key.
type Log = Mutex<HashMap<String, Vec<(String, Instant)>>>;

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(Default::default)
}

fn record(key: &str, what: impl Into<String>) {
    log()
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_default()
        .push((what.into(), Instant::now()));
}

fn recorded(key: &str) -> Vec<String> {
    let log = log().lock().unwrap();
    log.get(key)
        .map(|l| l.iter().map(|(w, _)| w.clone()).collect())
        .unwrap_or_default()
}

fn at(key: &str, what: &str) -> Instant {
    let log = log().lock().unwrap();
    log[key].iter().find(|(w, _)| w == what).expect(what).1
}

fn count(key: &str, what: &str) -> usize {
    recorded(key).iter().filter(|w| *w == what).count()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Job {
    key: String,
    n: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Branch {
    side: String,
    n: u32,
}

#[task(name = "wf.start")]
async fn wf_start(_ctx: Context, job: Job) -> anyhow::Result<u32> {
    record(&job.key, "start");
    Ok(job.n + 1)
}

/// A branch: takes its parent's output (typed), and runs long enough that the two branches
/// overlap when they run in parallel.
async fn branch(ctx: &Context, job: &Job, side: &str) -> anyhow::Result<Branch> {
    let n = ctx.parent_output::<wf_start>().await?;
    record(&job.key, format!("{side} begins"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    record(&job.key, format!("{side} ends"));
    Ok(Branch {
        side: side.into(),
        n: n * 10,
    })
}

#[task(name = "wf.left", parents = [wf_start])]
async fn wf_left(ctx: Context, job: Job) -> anyhow::Result<Branch> {
    branch(&ctx, &job, "left").await
}

#[task(name = "wf.right", parents = [wf_start])]
async fn wf_right(ctx: Context, job: Job) -> anyhow::Result<Branch> {
    branch(&ctx, &job, "right").await
}

#[task(name = "wf.join", parents = [wf_left, wf_right])]
async fn wf_join(ctx: Context, job: Job) -> anyhow::Result<String> {
    let left: Branch = ctx.parent_output::<wf_left>().await?;
    let right = ctx.parent_output::<wf_right>().await?;
    // Not a parent: refused, naming it.
    let err = ctx.parent_output::<wf_notify>().await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "parent_output"
            && message.contains("\"wf.notify\" is not a parent of")),
        "{err}"
    );
    record(&job.key, "join");
    Ok(format!(
        "{}:{} {}:{}",
        left.side, left.n, right.side, right.n
    ))
}

#[workflow(name = "wf.diamond", tasks = [wf_start, wf_left, wf_right, wf_join], on_event = "wf.diamond.requested")]
struct diamond;

/// Fails the first time for a job whose `n` is 1, then succeeds.
#[task(name = "wf.flaky", parents = [wf_start])]
async fn wf_flaky(_ctx: Context, job: Job) -> anyhow::Result<u32> {
    record(&job.key, "flaky");
    if job.n == 1 && count(&job.key, "flaky") == 1 {
        anyhow::bail!("the flaky task broke");
    }
    Ok(7)
}

/// Runs until cancelled the first time; returns at once after.
#[task(name = "wf.slow", parents = [wf_start])]
async fn wf_slow(ctx: Context, job: Job) -> anyhow::Result<u32> {
    record(&job.key, "slow");
    if count(&job.key, "slow") == 1 {
        tokio::select! {
            _ = ctx.cancelled() => record(&job.key, "slow saw its cancellation"),
            _ = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
        anyhow::bail!("stopped");
    }
    Ok(8)
}

#[task(name = "wf.last", parents = [wf_flaky, wf_slow])]
async fn wf_last(ctx: Context, job: Job) -> anyhow::Result<u32> {
    record(&job.key, "last");
    Ok(ctx.parent_output::<wf_flaky>().await? + ctx.parent_output::<wf_slow>().await?)
}

#[task(name = "wf.notify")]
async fn wf_notify(_ctx: Context, failure: WorkflowFailure) -> anyhow::Result<()> {
    let job: Job = serde_json::from_value(failure.input.clone())?;
    record(
        &job.key,
        format!(
            "notified: {} {} {}",
            failure.workflow, failure.task, failure.error
        ),
    );
    Ok(())
}

#[workflow(name = "wf.fragile", tasks = [wf_start, wf_flaky, wf_slow, wf_last], on_failure = wf_notify)]
struct fragile;

#[task(name = "wf.one")]
async fn wf_one(_ctx: Context, job: Job) -> anyhow::Result<u32> {
    Ok(job.n)
}

#[workflow(name = "wf.single", tasks = [wf_one])]
struct single;

fn job(key: &str, n: u32) -> Job {
    Job {
        key: format!("{key}-{}", owlclaw::RunId::new()),
        n,
    }
}

async fn statuses(client: &owlclaw::Client, id: owlclaw::RunId) -> Vec<(String, String)> {
    client
        .workflow_tasks(id)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| (t.task, t.status))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A diamond: the root, two branches that overlap in time, and a join that reads both
/// branches' outputs typed; the workflow's output is the join's. Its task runs are children of
/// the workflow run, and the plan shows the stages and, once it ran, each task's duration.
async fn a_diamond_runs_its_branches_in_parallel_and_returns_its_output_task_output(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let plan = client.workflow_plan("wf.diamond").await.unwrap();
    assert_eq!(
        plan.stages,
        vec![
            vec!["wf.start".to_string()],
            vec!["wf.left".to_string(), "wf.right".to_string()],
            vec!["wf.join".to_string()]
        ]
    );
    assert!(
        plan.tasks.iter().all(|t| t.expected_ms.is_none()),
        "no history yet: {plan:?}"
    );
    let j = job("diamond", 4);
    let run = diamond::enqueue(&client, j.clone()).await.unwrap();
    let out = run.result_timeout(Duration::from_secs(60)).await.unwrap();
    assert_eq!(out, "left:50 right:50");
    // The two branches overlapped.
    let (lb, le) = (at(&j.key, "left begins"), at(&j.key, "left ends"));
    let (rb, re) = (at(&j.key, "right begins"), at(&j.key, "right ends"));
    assert!(lb < re && rb < le, "the branches ran one after the other");
    assert!(at(&j.key, "start") < lb.min(rb));
    assert!(at(&j.key, "join") > le.max(re));
    let snap = run.snapshot().await.unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(snap.task, "wf.diamond");
    let view = client.workflow_tasks(run.id()).await.unwrap();
    assert_eq!(
        statuses(&client, run.id()).await,
        pairs(&[
            ("wf.start", "succeeded"),
            ("wf.left", "succeeded"),
            ("wf.right", "succeeded"),
            ("wf.join", "succeeded")
        ])
    );
    for t in &view.tasks {
        let child = client.status(t.run_id.unwrap()).await.unwrap();
        assert_eq!(child.parent_id, Some(run.id()), "{}", t.task);
        assert_eq!(child.input, serde_json::to_value(&j).unwrap());
    }
    let events: Vec<_> = run
        .events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        events,
        vec![RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded]
    );
    let plan = client.workflow_plan("wf.diamond").await.unwrap();
    assert_eq!(
        plan.critical_path.first().map(String::as_str),
        Some("wf.start")
    );
    assert_eq!(
        plan.critical_path.last().map(String::as_str),
        Some("wf.join")
    );
    assert_eq!(plan.critical_path.len(), 3);
    let left = plan.tasks.iter().find(|t| t.name == "wf.left").unwrap();
    assert!(left.expected_ms.unwrap() >= 600, "{plan:?}");
    assert!(plan.critical_path_ms >= 600);
    worker.shutdown().await.unwrap();
}

/// A task that fails after its retries fails the workflow: the task still running is cancelled,
/// the one depending on it is skipped with a reason, the on-failure task runs with the failure.
/// A manual retry of the workflow run runs the failed and cancelled tasks again and what depends
/// on them, and keeps the succeeded root.
async fn a_failed_task_fails_the_workflow_and_a_retry_keeps_what_succeeded(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let j = job("fragile", 1);
    let run = fragile::enqueue(&client, j.clone()).await.unwrap();
    let snap = client
        .wait(run.id(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(snap.status, RunStatus::Failed);
    let error = snap.error.unwrap();
    assert!(
        error.starts_with("task \"wf.flaky\" failed:") && error.contains("the flaky task broke"),
        "{error}"
    );
    let view = eventually(
        "the slow task cancelled",
        Duration::from_secs(60),
        || async {
            let v = client.workflow_tasks(run.id()).await.unwrap();
            (v.tasks[2].status == "cancelled").then_some(v)
        },
    )
    .await;
    assert_eq!(
        view.tasks
            .iter()
            .map(|t| (t.task.as_str(), t.status.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("wf.start", "succeeded"),
            ("wf.flaky", "failed"),
            ("wf.slow", "cancelled"),
            ("wf.last", "skipped")
        ]
    );
    assert_eq!(
        view.tasks[3].reason.as_deref(),
        Some("task \"wf.flaky\" of the workflow failed")
    );
    assert_eq!(view.tasks[3].run_id, None);
    let notify = view.on_failure.expect("the on-failure task ran");
    let notified = client
        .wait(notify.run_id.unwrap(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(notified.status, RunStatus::Succeeded);
    assert!(
        recorded(&j.key)
            .iter()
            .any(|w| w.starts_with("notified: wf.fragile wf.flaky the flaky task broke")),
        "{:?}",
        recorded(&j.key)
    );
    eventually(
        "the slow task saw its cancellation",
        Duration::from_secs(60),
        || async {
            recorded(&j.key)
                .contains(&"slow saw its cancellation".to_string())
                .then_some(())
        },
    )
    .await;

    // Retry: the failed and the cancelled task run again, the last one starts, the root is kept.
    client.retry(run.id()).await.unwrap();
    let snap = client
        .wait(run.id(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(snap.status, RunStatus::Succeeded, "{:?}", snap.error);
    assert_eq!(snap.output, Some(serde_json::json!(15)));
    assert_eq!(snap.attempt, 2);
    assert_eq!(count(&j.key, "start"), 1, "the succeeded root ran once");
    assert_eq!(count(&j.key, "flaky"), 2);
    assert_eq!(count(&j.key, "slow"), 2);
    assert_eq!(count(&j.key, "last"), 1);
    assert_eq!(
        statuses(&client, run.id()).await,
        pairs(&[
            ("wf.start", "succeeded"),
            ("wf.flaky", "succeeded"),
            ("wf.slow", "succeeded"),
            ("wf.last", "succeeded")
        ])
    );
    worker.shutdown().await.unwrap();
}

/// Cancelling a workflow run cancels its running task and skips the rest.
async fn cancelling_a_workflow_run_cancels_its_tasks(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let j = job("cancel", 2);
    let run = fragile::enqueue(&client, j.clone()).await.unwrap();
    eventually("the slow task running", Duration::from_secs(60), || async {
        recorded(&j.key).contains(&"slow".to_string()).then_some(())
    })
    .await;
    let snap = client.cancel(run.id()).await.unwrap();
    assert_eq!(snap.status, RunStatus::Cancelled);
    let view = eventually("its tasks cancelled", Duration::from_secs(60), || async {
        let v = client.workflow_tasks(run.id()).await.unwrap();
        (v.tasks[2].status == "cancelled").then_some(v)
    })
    .await;
    assert_eq!(view.tasks[3].status, "skipped");
    assert_eq!(
        view.tasks[3].reason.as_deref(),
        Some("the workflow was cancelled")
    );
    eventually(
        "the slow task saw its cancellation",
        Duration::from_secs(60),
        || async {
            recorded(&j.key)
                .contains(&"slow saw its cancellation".to_string())
                .then_some(())
        },
    )
    .await;
    assert_eq!(count(&j.key, "last"), 0);
    assert!(
        view.on_failure.is_none(),
        "a cancelled workflow is not a failed one"
    );
    worker.shutdown().await.unwrap();
}

/// A workflow with `on_event` gets one run per pushed event.
async fn an_event_starts_a_workflow_run(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let j = job("event", 0);
    let pushed = client.push_event("wf.diamond.requested", &j).await.unwrap();
    assert_eq!(pushed.runs.len(), 1);
    let snap = client
        .wait(pushed.runs[0], Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(snap.task, "wf.diamond");
    assert_eq!(snap.status, RunStatus::Succeeded);
    assert_eq!(snap.output, Some(serde_json::json!("left:10 right:10")));
    worker.shutdown().await.unwrap();
}

/// The engine refuses a workflow whose shape is wrong when the worker registers, naming the
/// problem: a cycle, a parent outside the workflow, a task the worker does not serve.
async fn a_wrong_shape_is_refused_at_registration_naming_it(env: TestEnv) {
    let client = env.client().await;
    let shape = |edges: &[(&str, &[&str])]| {
        let mut def = TaskDef::new("wf.bad");
        def.workflow = Some(WorkflowShape {
            tasks: edges
                .iter()
                .map(|(n, ps)| WorkflowTask {
                    name: n.to_string(),
                    parents: ps.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
            output: edges[0].0.to_string(),
            on_failure: None,
        });
        def
    };
    let register = |def: TaskDef| {
        let client = client.clone();
        async move {
            client
                .orchestrator()
                .register_worker(WorkerRegistration {
                    name: "w".into(),
                    tasks: vec![TaskDef::new("a"), TaskDef::new("b"), TaskDef::new("c")],
                    slots: 1,
                    labels: Default::default(),
                    workflows: vec![def],
                })
                .await
                .unwrap_err()
        }
    };
    let err = register(shape(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])])).await;
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "workflow"
            && message == "workflow \"wf.bad\" has a cycle: a -> b -> c -> a"),
        "{err:?}"
    );
    let err = register(shape(&[("a", &["x"])])).await;
    assert!(
        matches!(&err, Error::InvalidInput { message, .. } if message.contains("the parent \"x\", which is not a task of the workflow")),
        "{err:?}"
    );
    let err = register(shape(&[("a", &[]), ("z", &["a"])])).await;
    assert!(
        matches!(&err, Error::InvalidInput { field, message } if field == "workflows"
            && message.contains("runs task \"z\", which this worker does not register")),
        "{err:?}"
    );
    // Nothing was stored: the workflow is unknown.
    let err = client.workflow_plan("wf.bad").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

/// A workflow run advances however many older ones are active: here behind more than one
/// pass's worth of runs (the loop reads 500 at a time) due in an hour.
async fn a_workflow_run_behind_many_waiting_ones_runs(env: TestEnv) {
    let client = env.client().await;
    let worker = client.worker("w").slots(4).start().await.unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    let waiting = (0..600)
        .map(|i| ScheduleRequest {
            task: "wf.single".to_string(),
            input: serde_json::to_value(job("waiting", i)).unwrap(),
            run_at: Some(later),
            ..ScheduleRequest::default()
        })
        .collect();
    assert_eq!(client.submit_bulk(waiting).await.unwrap().len(), 600);
    let run = single::enqueue(&client, job("behind", 7)).await.unwrap();
    assert_eq!(
        run.result_timeout(Duration::from_secs(60)).await.unwrap(),
        7
    );
    worker.shutdown().await.unwrap();
}

both_backends!(
    a_diamond_runs_its_branches_in_parallel_and_returns_its_output_task_output,
    a_workflow_run_behind_many_waiting_ones_runs,
    a_failed_task_fails_the_workflow_and_a_retry_keeps_what_succeeded,
    cancelling_a_workflow_run_cancels_its_tasks,
    an_event_starts_a_workflow_run,
    a_wrong_shape_is_refused_at_registration_naming_it,
);
