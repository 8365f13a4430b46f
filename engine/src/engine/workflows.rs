//! Workflow runs: the loop that advances them as their task runs finish, their task view and
//! their plan.
//!
//! A workflow run is a run of its workflow's name; its tasks are runs whose parent it is, with
//! ids derived from its own ([`RunId::in_workflow`]), so that every replica advancing one creates
//! each task run once. The loop walks the workflow runs not done (a narrow table), reads each
//! one's task runs, and asks [`WorkflowShape::next`] what to do: start the tasks whose parents
//! succeeded, finish the workflow with the output task's output, or fail it, cancelling what
//! still runs and starting the on-failure task.

use super::{Engine, Inner};
use crate::store::{ActiveWorkflow, Inserted, WorkflowStep};
use owlclaw_core::wire::{RunSnapshot, ScheduleRequest};
use owlclaw_core::workflow::{
    task_runs, Next, TaskRun, WorkflowFailure, WorkflowPlan, WorkflowRunTasks, WorkflowShape,
};
use owlclaw_core::{Error, Result, RunId, RunStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the loop passes while workflow runs are active and nothing woke it (when none are,
/// it looks at the engine's poll interval).
const WORKFLOW_POLL: Duration = Duration::from_millis(200);
/// Workflow runs advanced per pass.
const WORKFLOW_BATCH: u32 = 500;
/// How often the loop advances every active workflow run, changed or not (what its state does
/// not show: a definition registered since, a step that failed half-way).
const WORKFLOW_FULL_PASS: Duration = Duration::from_secs(30);
/// Past runs of a task whose median duration is its expected one in a plan.
const PLAN_HISTORY: u32 = 50;

/// The name of the on-failure task's run in a workflow run's attempt: one per attempt, so that a
/// workflow retried and failing again runs it again.
fn on_failure_key(task: &str, attempt: u32) -> String {
    format!("{task}#on-failure-{attempt}")
}

impl Engine {
    /// The workflow shape of `name`, or `NotFound`.
    async fn workflow_shape(&self, tenant: &str, name: &str) -> Result<WorkflowShape> {
        self.task_def(tenant, name)
            .await?
            .and_then(|d| d.workflow)
            .ok_or_else(|| Error::NotFound {
                what: "workflow",
                id: name.to_string(),
            })
    }

    /// The task runs of a workflow run, with the tasks not started yet (pending or skipped).
    pub async fn workflow_tasks(
        &self,
        tenant: &str,
        id: RunId,
        user: Option<&str>,
    ) -> Result<WorkflowRunTasks> {
        let run = self.get_run(tenant, id, user).await?;
        let shape = self
            .workflow_shape(tenant, &run.task)
            .await
            .map_err(|_| Error::NotFound {
                what: "workflow run",
                id: format!("{id} (a run of {:?}, which is not a workflow)", run.task),
            })?;
        let children = self.inner.store.children(tenant, id).await?;
        let mut runs = BTreeMap::new();
        let failure = shape.on_failure.as_ref().map(|f| {
            let key = on_failure_key(f, run.attempt);
            (RunId::in_workflow(id, &key), f.clone())
        });
        for c in &children {
            let name = match &failure {
                Some((fid, f)) if *fid == c.id => f.clone(),
                _ if RunId::in_workflow(id, &c.task) == c.id => c.task.clone(),
                _ => continue,
            };
            runs.insert(name, (c.id, c.status, c.started_at, c.finished_at));
        }
        let (tasks, on_failure) = task_runs(&shape, run.status, &runs);
        Ok(WorkflowRunTasks {
            run_id: id,
            workflow: run.task,
            tasks,
            on_failure,
        })
    }

    /// A workflow's plan: its stages and its critical path by the median duration of each
    /// task's last succeeded runs.
    pub async fn workflow_plan(&self, tenant: &str, name: &str) -> Result<WorkflowPlan> {
        let shape = self.workflow_shape(tenant, name).await?;
        let mut expected = HashMap::new();
        for t in &shape.tasks {
            let page = self
                .inner
                .store
                .list_runs(
                    tenant,
                    &owlclaw_core::wire::ListFilter {
                        status: Some(RunStatus::Succeeded),
                        task: Some(t.name.clone()),
                        limit: Some(PLAN_HISTORY),
                        ..Default::default()
                    },
                )
                .await?;
            let mut took: Vec<Duration> = page
                .runs
                .iter()
                .filter_map(|r| (r.finished_at? - r.started_at?).to_std().ok())
                .collect();
            if !took.is_empty() {
                took.sort();
                expected.insert(t.name.clone(), took[took.len() / 2]);
            }
        }
        Ok(shape.plan(name, &expected))
    }

    /// Advances one workflow run as far as its task runs allow.
    async fn advance_workflow(&self, tenant: &str, id: RunId) -> Result<()> {
        let store = &self.inner.store;
        let Some(run) = store.get_run(tenant, id).await? else {
            return Ok(());
        };
        let shape = match self.workflow_shape(tenant, &run.task).await {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => {
                // Its definition is gone (never registered on this database): nothing can run.
                tracing::warn!(run_id = %id, workflow = %run.task, "a workflow run whose workflow is unknown: failing it");
                if run.status == RunStatus::Queued {
                    self.step(tenant, id, WorkflowStep::Start).await?;
                }
                let error = format!("workflow {:?} is not defined", run.task);
                self.step(tenant, id, finish_failed(error)).await?;
                return store.workflow_done(tenant, id).await;
            }
            Err(e) => return Err(e),
        };
        let children = store.children(tenant, id).await?;
        let tasks: HashMap<&str, &RunSnapshot> = children
            .iter()
            .filter(|c| RunId::in_workflow(id, &c.task) == c.id && shape.task(&c.task).is_some())
            .map(|c| (c.task.as_str(), c))
            .collect();
        match run.status {
            RunStatus::Scheduled => Ok(()),
            RunStatus::Queued => {
                // A new run, or a retried one: its failed and cancelled tasks run again, the
                // succeeded ones are kept, the skipped ones start when their parents succeed.
                for c in tasks.values() {
                    if c.status.can_retry() {
                        ignore_refusal(store.retry_run(tenant, c.id, self.now()).await)?;
                    }
                }
                self.step(tenant, id, WorkflowStep::Start).await?;
                tracing::info!(run_id = %id, workflow = %run.task, "workflow run started");
                let run = store
                    .get_run(tenant, id)
                    .await?
                    .ok_or_else(|| Error::run_not_found(id))?;
                let children = store.children(tenant, id).await?;
                let tasks = children
                    .iter()
                    .filter(|c| RunId::in_workflow(id, &c.task) == c.id)
                    .map(|c| (c.task.as_str(), c))
                    .collect();
                self.advance_running(tenant, &run, &shape, &tasks).await
            }
            RunStatus::Running => self.advance_running(tenant, &run, &shape, &tasks).await,
            _ => {
                // Finished (or cancelled by someone): what still runs of its tasks is cancelled;
                // it is done once every task run is finished.
                let mut all_done = true;
                for c in tasks.values().filter(|c| !c.status.is_terminal()) {
                    all_done = false;
                    ignore_refusal(store.cancel_run(tenant, c.id, self.now()).await)?;
                }
                if all_done {
                    store.workflow_done(tenant, id).await?;
                } else {
                    self.inner.finished.notify_waiters();
                }
                Ok(())
            }
        }
    }

    /// Advances a running workflow run: starts tasks, or finishes it.
    async fn advance_running(
        &self,
        tenant: &str,
        run: &RunSnapshot,
        shape: &WorkflowShape,
        tasks: &HashMap<&str, &RunSnapshot>,
    ) -> Result<()> {
        let store = &self.inner.store;
        let state: HashMap<String, TaskRun> = tasks
            .iter()
            .map(|(name, c)| {
                (
                    name.to_string(),
                    TaskRun {
                        status: c.status,
                        output: c.output.clone(),
                        error: c.error.clone(),
                    },
                )
            })
            .collect();
        match shape.next(&state) {
            Next::Start(names) if names.is_empty() => Ok(()),
            Next::Start(names) => {
                let now = self.now();
                let mut runs = Vec::with_capacity(names.len());
                for name in &names {
                    let mut new = self
                        .resolve(tenant, self.task_request(run, name, run.input.clone()), now)
                        .await?;
                    new.id = RunId::in_workflow(run.id, name);
                    new.reason = match &shape.task(name).map(|t| &t.parents[..]) {
                        Some([]) | None => format!("started by workflow run {}", run.id),
                        Some(parents) => format!(
                            "started by workflow run {}: {} succeeded",
                            run.id,
                            parents.join(", ")
                        ),
                    };
                    runs.push(new);
                }
                let inserted = store.insert_runs(runs, now).await?;
                self.after_insert(&inserted);
                let created = inserted
                    .iter()
                    .filter(|i| matches!(i, Inserted::Created(_)))
                    .count();
                tracing::debug!(run_id = %run.id, tasks = %names.join(", "), created, "workflow tasks started");
                Ok(())
            }
            Next::Succeed { output } => {
                self.step(
                    tenant,
                    run.id,
                    WorkflowStep::Finish {
                        output: Some(output),
                        error: None,
                    },
                )
                .await?;
                tracing::info!(run_id = %run.id, workflow = %run.task, "workflow run succeeded");
                Ok(())
            }
            Next::Fail { task, error } => {
                for c in tasks.values().filter(|c| !c.status.is_terminal()) {
                    ignore_refusal(store.cancel_run(tenant, c.id, self.now()).await)?;
                }
                if let Some(f) = &shape.on_failure {
                    let failure = WorkflowFailure {
                        run_id: run.id,
                        workflow: run.task.clone(),
                        task: task.clone(),
                        error: error.clone(),
                        input: run.input.clone(),
                    };
                    let input = serde_json::to_value(&failure).unwrap_or_default();
                    let now = self.now();
                    let mut new = self
                        .resolve(tenant, self.task_request(run, f, input), now)
                        .await?;
                    new.id = RunId::in_workflow(run.id, &on_failure_key(f, run.attempt));
                    new.reason = format!("on-failure task of workflow run {}", run.id);
                    let inserted = store.insert_runs(vec![new], now).await?;
                    self.after_insert(&inserted);
                }
                let why = format!("task {task:?} failed: {error}");
                self.step(tenant, run.id, finish_failed(why)).await?;
                tracing::info!(run_id = %run.id, workflow = %run.task, task = %task, "workflow run failed");
                Ok(())
            }
        }
    }

    /// The request of a task run of a workflow run.
    fn task_request(
        &self,
        run: &RunSnapshot,
        task: &str,
        input: serde_json::Value,
    ) -> ScheduleRequest {
        ScheduleRequest {
            task: task.to_string(),
            input,
            owner: run.owner.clone(),
            parent_id: Some(run.id),
            priority: Some(run.priority.into()),
            ..ScheduleRequest::default()
        }
    }

    /// Applies a workflow run's own step and wakes those waiting for it.
    async fn step(&self, tenant: &str, id: RunId, step: WorkflowStep) -> Result<RunSnapshot> {
        let run = self
            .inner
            .store
            .workflow_step(tenant, id, &step, self.now())
            .await?;
        self.inner.finished.notify_waiters();
        Ok(run)
    }

    /// Marks that workflow runs may need advancing (one was created or retried here).
    pub(super) fn workflows_changed(&self) {
        self.inner.workflows_active.store(true, Ordering::SeqCst);
        self.inner.wake_workflows.notify_one();
    }
}

/// A failed finish.
fn finish_failed(error: String) -> WorkflowStep {
    WorkflowStep::Finish {
        output: None,
        error: Some(error),
    }
}

/// A cancel or retry refused because the run moved on meanwhile (another replica, a worker)
/// is no error for the loop.
fn ignore_refusal(r: Result<RunSnapshot>) -> Result<()> {
    match r {
        Ok(_) | Err(Error::InvalidTransition { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The loop: advances the workflow runs not done, and schedules the links of runs that
/// finished. While some are active it passes again as runs finish, and at least every
/// [`WORKFLOW_POLL`]; otherwise it looks at the engine's poll interval (runs created by other
/// replicas) or when this engine creates one.
///
/// Each pass reads the next [`WORKFLOW_BATCH`] active workflow runs after the last one read
/// (from the first again once it read them all), so that none waits behind older ones, and
/// advances only those whose state (their own status, their task runs') changed since it last
/// advanced them: a pass over runs waiting for long tasks costs one read. Every
/// [`WORKFLOW_FULL_PASS`] it advances them all whatever their state.
pub(super) async fn workflow_loop(inner: Arc<Inner>) {
    let engine = Engine { inner };
    let inner = &engine.inner;
    let mut after = 0;
    let mut more = false;
    let mut seen = Advanced::default();
    let mut full_since = Instant::now();
    loop {
        let active = inner.workflows_active.load(Ordering::SeqCst);
        if !more {
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = inner.wake_workflows.notified() => {}
                _ = inner.finished.notified(), if active => {}
                _ = tokio::time::sleep(if active { WORKFLOW_POLL } else { inner.cfg.poll_interval }) => {}
            }
        } else if inner.shutdown.is_cancelled() {
            // Mid-walk: the engine's shutdown waits for this loop before it closes the store.
            return;
        }
        if after == 0 && full_since.elapsed() >= WORKFLOW_FULL_PASS {
            seen.forget_states();
            full_since = Instant::now();
        }
        // Cleared before reading, so that a run created meanwhile sets it again.
        inner.workflows_active.store(false, Ordering::SeqCst);
        let mut active = false;
        match inner.store.active_workflows(after, WORKFLOW_BATCH).await {
            Ok(runs) => {
                active |= !runs.is_empty() || after > 0;
                more = runs.len() == WORKFLOW_BATCH as usize;
                after = if more {
                    runs.last().map_or(0, |w| w.seq)
                } else {
                    0
                };
                for w in runs {
                    if inner.shutdown.is_cancelled() {
                        return;
                    }
                    if !seen.changed(&w) {
                        continue;
                    }
                    match engine.advance_workflow(&w.tenant, w.id).await {
                        Ok(()) => seen.advanced(w),
                        Err(e) => {
                            tracing::warn!(run_id = %w.id, error = %e, "advancing a workflow run failed; trying again");
                        }
                    }
                }
                if after == 0 {
                    seen.end_of_walk();
                }
            }
            Err(e) => {
                active = true;
                more = false;
                tracing::warn!(error = %e, "reading the active workflow runs failed");
            }
        }
        // Runs with links (Celery's link / link_error) are followed up by the same loop.
        match engine.follow_links().await {
            Ok(open) => active |= open,
            Err(e) => {
                active = true;
                tracing::warn!(error = %e, "reading the runs with links failed");
            }
        }
        if active {
            inner.workflows_active.store(true, Ordering::SeqCst);
        }
    }
}

/// The state in which the loop last advanced each active workflow run.
#[derive(Debug, Default)]
struct Advanced {
    states: HashMap<RunId, String>,
    /// The runs read since the walk last started from the first: the others are done.
    walked: HashSet<RunId>,
}

impl Advanced {
    /// Whether `w` changed since the loop last advanced it (or was never advanced).
    fn changed(&mut self, w: &ActiveWorkflow) -> bool {
        self.walked.insert(w.id);
        self.states.get(&w.id) != Some(&w.state)
    }

    fn advanced(&mut self, w: ActiveWorkflow) {
        self.states.insert(w.id, w.state);
    }

    /// A walk over every active run ended: forgets the runs it did not meet (done).
    fn end_of_walk(&mut self) {
        let walked = std::mem::take(&mut self.walked);
        self.states.retain(|id, _| walked.contains(id));
    }

    /// The next walk advances every run.
    fn forget_states(&mut self) {
        self.states.clear();
    }
}
