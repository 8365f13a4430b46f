//! Testing tools for task authors (the `testing` feature): crash a durable task right before or
//! right after one of its steps commits, as a process that dies there would, run it again, and
//! see which step bodies and `verify` closures ran, and the final output; or do it at every
//! step in turn and get the steps whose effect would happen twice.
//!
//! The task runs for real against the engine of a [`Client`] (an in-memory lite one is enough:
//! [`Client::lite_in_memory`]): its steps are committed, the crash drops the task's future at
//! the chosen point, the engine re-queues the run as for a worker that died, and a second
//! execution resumes it from its committed steps.
//!
//! ```ignore
//! // `examples/marketplace_publish.rs` runs this kind of test on its durable task.
//! # use owlclaw::{task, Context};
//! # #[task] async fn publish(ctx: Context, sku: String) -> anyhow::Result<String> { Ok(sku) }
//! # async fn demo() -> owlclaw::Result<()> {
//! use owlclaw::testing::{crash_each_step, run_with_crash, Crash};
//! let client = owlclaw::Client::lite_in_memory().await?;
//! // A crash right after step 1 committed: step 0 and 1 don't run again.
//! let run = run_with_crash::<publish>(&client, "sku-1".into(), Crash::AfterCommit(1)).await?;
//! assert_eq!(run.bodies("create_listing"), 1);
//! // Every step in turn, before and after its commit.
//! let report = crash_each_step::<publish>(&client, || "sku-2".into()).await?;
//! report.assert_no_step_ran_twice();
//! # Ok(()) }
//! ```

use crate::context::Durable;
use crate::registry::InvokeFn;
use crate::{Client, Context, Task};
use owlclaw_core::wire::{
    Completion, ExchangeRequest, Outcome, RunSnapshot, StepStatus, WorkerRegistration,
};
use owlclaw_core::{Error, Result, RunId};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Where an execution dies: just before step `N` (its position, from 0) commits (its body ran,
/// nothing of it is stored), or just after it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// After step N's body ran, before its outcome is committed.
    BeforeCommit(u32),
    /// After step N's outcome is committed.
    AfterCommit(u32),
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crash::BeforeCommit(n) => write!(f, "a crash before step {n} committed"),
            Crash::AfterCommit(n) => write!(f, "a crash after step {n} committed"),
        }
    }
}

/// What happened at a step in one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepTrace {
    /// Its body ran.
    Body {
        /// Its position.
        position: u32,
        /// Its name.
        step: String,
    },
    /// Its `verify` closure ran (a `step_verified` started before and not committed).
    Verify {
        /// Its position.
        position: u32,
        /// Its name.
        step: String,
    },
    /// Its committed output was returned without running it.
    Replayed {
        /// Its position.
        position: u32,
        /// Its name.
        step: String,
    },
}

/// What the test watches in an execution, and where it crashes it.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    crash: Option<Crash>,
    trace: Mutex<Vec<StepTrace>>,
    crashed: AtomicBool,
    crashed_now: Notify,
}

impl Probe {
    pub(crate) fn record(&self, position: u32, step: &str, what: &'static str) {
        let step = step.to_string();
        let t = match what {
            "body" => StepTrace::Body { position, step },
            "verify" => StepTrace::Verify { position, step },
            _ => StepTrace::Replayed { position, step },
        };
        self.trace.lock().unwrap().push(t);
    }

    /// Whether the execution dies here (before or after step `position`'s commit); tells the
    /// harness when it does.
    pub(crate) fn crashes_at(&self, position: u32, committed: bool) -> bool {
        let here = match self.crash {
            Some(Crash::BeforeCommit(n)) => !committed && n == position,
            Some(Crash::AfterCommit(n)) => committed && n == position,
            None => false,
        };
        if here {
            self.crashed.store(true, Ordering::SeqCst);
            self.crashed_now.notify_one();
        }
        here
    }
}

/// How one execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// It died at the crash point.
    Crashed,
    /// The task returned its output.
    Succeeded(serde_json::Value),
    /// The task returned an error.
    Failed(String),
}

/// One execution of a run: what happened at each step, and how it ended.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Step by step, in order.
    pub trace: Vec<StepTrace>,
    /// How it ended.
    pub ending: Ending,
}

impl Execution {
    /// How many times the body of `step` ran in this execution.
    pub fn bodies(&self, step: &str) -> usize {
        self.trace
            .iter()
            .filter(|t| matches!(t, StepTrace::Body { step: s, .. } if s == step))
            .count()
    }
}

/// A run executed until a crash, then again until it ended.
#[derive(Debug)]
pub struct CrashedRun<O> {
    /// Where the first execution died.
    pub crash: Crash,
    /// The first execution, until the crash (when the task reached it).
    pub first: Execution,
    /// The executions after it, until the run ended (after the crash, and retries of failed
    /// attempts as the task's `retries` allow, after their backoff).
    pub then: Vec<Execution>,
    /// The run as the engine has it at the end: its steps, events and attempts.
    pub run: RunSnapshot,
    /// The run's final output, or its error.
    pub output: Result<O>,
}

impl<O> CrashedRun<O> {
    fn executions(&self) -> impl Iterator<Item = &Execution> {
        std::iter::once(&self.first).chain(self.then.iter())
    }

    /// How many times the body of `step` ran, over both executions.
    pub fn bodies(&self, step: &str) -> usize {
        self.executions().map(|e| e.bodies(step)).sum()
    }

    /// Whether `verify` of `step` ran (a `step_verified` found started and not committed).
    pub fn verified(&self, step: &str) -> bool {
        self.executions().any(|e| {
            e.trace
                .iter()
                .any(|t| matches!(t, StepTrace::Verify { step: s, .. } if s == step))
        })
    }

    /// The steps whose body ran more than once.
    pub fn ran_twice(&self) -> Vec<String> {
        let mut steps: Vec<String> = Vec::new();
        for e in self.executions() {
            for t in &e.trace {
                if let StepTrace::Body { step, .. } = t {
                    if self.bodies(step) > 1 && !steps.contains(step) {
                        steps.push(step.clone());
                    }
                }
            }
        }
        steps
    }
}

/// A step whose body ran twice after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where the first execution died.
    pub crash: Crash,
    /// The step whose body ran twice.
    pub step: String,
    /// Whether its `verify` ran (and said the effect had not happened).
    pub verified: bool,
}

/// What [`crash_each_step`] found.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// The steps of a clean execution, in order.
    pub steps: Vec<String>,
    /// The crash points tried.
    pub crashes: Vec<Crash>,
    /// The steps whose body ran twice, by crash point.
    pub findings: Vec<Finding>,
    /// The crashed runs that ended otherwise than the clean one (failed where it succeeded, or
    /// the other way), with how they ended.
    pub different_endings: Vec<(Crash, String)>,
}

impl CrashReport {
    /// Panics, naming each step that ran twice and where the crash was, or each run that ended
    /// otherwise than the clean one.
    pub fn assert_no_step_ran_twice(&self) {
        let mut problems: Vec<String> = self
            .findings
            .iter()
            .map(|f| {
                format!(
                    "step {:?} ran twice after {}{}",
                    f.step,
                    f.crash,
                    if f.verified {
                        " (its verify said the effect had not happened)"
                    } else {
                        " (make it idempotent, or a step_verified)"
                    }
                )
            })
            .collect();
        problems.extend(
            self.different_endings
                .iter()
                .map(|(c, o)| format!("after {c} the run ended otherwise: {o}")),
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// The task's registration in this binary.
fn invoke_of<T: Task>() -> Result<InvokeFn> {
    crate::registry::registered()
        .find(|r| r.spec.name == T::SPEC.name)
        .map(|r| r.invoke)
        .ok_or_else(|| Error::NotFound {
            what: "task",
            id: format!("{} (not a #[task] of this binary)", T::SPEC.name),
        })
}

/// Claims run `id` in a worker session of its own and executes it once with `probe`; a crash
/// drops the task's future and deregisters the session, which re-queues the run at once, as for
/// a worker that died.
async fn execute(
    client: &Client,
    invoke: InvokeFn,
    def: owlclaw_core::task::TaskDef,
    id: RunId,
    probe: Arc<Probe>,
) -> Result<Execution> {
    let orch = client.orchestrator().clone();
    let session = orch
        .register_worker(WorkerRegistration {
            name: "owlclaw-testing".into(),
            tasks: vec![def],
            slots: 1,
            labels: Default::default(),
            workflows: Vec::new(),
        })
        .await?;
    let mut assignment = None;
    for _ in 0..600 {
        let got = orch
            .exchange(
                &session.worker_id,
                ExchangeRequest {
                    want: 1,
                    wait_ms: 100,
                    ..ExchangeRequest::default()
                },
            )
            .await?;
        if let Some(a) = got.assignments.into_iter().find(|a| a.run_id == id) {
            assignment = Some(a);
            break;
        }
    }
    let a = assignment.ok_or_else(|| {
        Error::Timeout(format!(
            "run {id} was not ready to run again within a minute"
        ))
    })?;
    let (suspend, _parked) = tokio::sync::oneshot::channel();
    let mut durable = Durable::new(
        orch.clone(),
        Arc::new(Mutex::new(session.worker_id.clone())),
        Duration::from_secs(30),
        suspend,
    );
    durable.probe = Some(probe.clone());
    let ctx = Context::new(
        client.clone(),
        a.run_id,
        a.task.clone(),
        a.attempt,
        a.max_attempts,
        a.parent_id,
        CancellationToken::new(),
        Some(durable),
    );
    let task = invoke(ctx.clone(), a.input);
    let mut retryable = true;
    let ending = tokio::select! {
        r = task => match r {
            Ok(v) => Ending::Succeeded(v),
            Err(f) => {
                retryable = f.retryable && !ctx.is_non_deterministic();
                Ending::Failed(f.message)
            }
        },
        _ = probe.crashed_now.notified() => Ending::Crashed,
    };
    let retryable = &retryable;
    let trace = probe.trace.lock().unwrap().clone();
    match &ending {
        Ending::Crashed => orch.deregister_worker(&session.worker_id).await?,
        done => {
            let outcome = match done {
                Ending::Succeeded(output) => Outcome::Succeeded {
                    output: output.clone(),
                },
                Ending::Failed(error) => Outcome::Failed {
                    error: error.clone(),
                    retryable: *retryable,
                },
                Ending::Crashed => unreachable!(),
            };
            orch.exchange(
                &session.worker_id,
                ExchangeRequest {
                    completions: vec![Completion {
                        run_id: a.run_id,
                        attempt: a.attempt,
                        outcome,
                    }],
                    ..ExchangeRequest::default()
                },
            )
            .await?;
            orch.deregister_worker(&session.worker_id).await?;
        }
    }
    Ok(Execution { trace, ending })
}

/// Schedules a run of `T` with `input` on `client`'s engine, executes it until `crash`, then
/// again until the run ends (retrying failed attempts as its `retries` allow), and returns the
/// executions, the run and its output. No worker of `T` may run on that engine meanwhile.
pub async fn run_with_crash<T: Task>(
    client: &Client,
    input: T::Input,
    crash: Crash,
) -> Result<CrashedRun<T::Output>>
where
    T::Output: DeserializeOwned,
{
    let invoke = invoke_of::<T>()?;
    let def = T::SPEC.to_def(None);
    let run = crate::ScheduleBuilder::<T>::new(client, input).await?;
    let id = run.id();
    let probe = Arc::new(Probe {
        crash: Some(crash),
        ..Probe::default()
    });
    let first = execute(client, invoke, def.clone(), id, probe).await?;
    let then = until_done(client, invoke, def, id).await?;
    let snapshot = client.status(id).await?;
    let output = run.result_timeout(Duration::from_secs(60)).await;
    Ok(CrashedRun {
        crash,
        first,
        then,
        run: snapshot,
        output,
    })
}

/// Executes run `id` again, as a worker would, until it ends.
async fn until_done(
    client: &Client,
    invoke: InvokeFn,
    def: owlclaw_core::task::TaskDef,
    id: RunId,
) -> Result<Vec<Execution>> {
    let mut then = Vec::new();
    while !client.status(id).await?.status.is_terminal() {
        then.push(execute(client, invoke, def.clone(), id, Arc::new(Probe::default())).await?);
    }
    Ok(then)
}

/// Runs `T` once without a crash (retries included) to learn its steps, then once per crash
/// point (before and after each step's commit), each on a new run with `input()`, and reports
/// the steps whose body ran twice and the runs that ended otherwise than the clean one.
pub async fn crash_each_step<T: Task>(
    client: &Client,
    input: impl Fn() -> T::Input,
) -> Result<CrashReport>
where
    T::Output: DeserializeOwned + serde::Serialize,
{
    let invoke = invoke_of::<T>()?;
    let def = T::SPEC.to_def(None);
    let clean = crate::ScheduleBuilder::<T>::new(client, input()).await?;
    let mut executions = vec![
        execute(
            client,
            invoke,
            def.clone(),
            clean.id(),
            Arc::new(Probe::default()),
        )
        .await?,
    ];
    executions.extend(until_done(client, invoke, def, clean.id()).await?);
    let mut steps: Vec<String> = Vec::new();
    for t in executions.iter().flat_map(|e| &e.trace) {
        match t {
            StepTrace::Body { step, .. } | StepTrace::Replayed { step, .. }
                if !steps.contains(step) =>
            {
                steps.push(step.clone())
            }
            _ => {}
        }
    }
    let expected = clean.result_timeout(Duration::from_secs(60)).await.is_ok();
    let mut report = CrashReport {
        steps: steps.clone(),
        crashes: Vec::new(),
        findings: Vec::new(),
        different_endings: Vec::new(),
    };
    for position in 0..steps.len() as u32 {
        for crash in [Crash::BeforeCommit(position), Crash::AfterCommit(position)] {
            let run = run_with_crash::<T>(client, input(), crash).await?;
            report.crashes.push(crash);
            for step in run.ran_twice() {
                report.findings.push(Finding {
                    crash,
                    verified: run.verified(&step),
                    step,
                });
            }
            if run.output.is_ok() != expected {
                report
                    .different_endings
                    .push((crash, describe(&run.output)));
            }
        }
    }
    Ok(report)
}

/// An output or an error as text, to compare runs.
fn describe<O: serde::Serialize>(r: &Result<O>) -> String {
    match r {
        Ok(o) => serde_json::to_string(o).unwrap_or_default(),
        Err(e) => format!("error: {e}"),
    }
}

/// Assertions on a run as the engine has it: its status, attempts, steps, events and children.
#[derive(Debug)]
pub struct RunAssert {
    run: RunSnapshot,
    events: Vec<owlclaw_core::wire::RunEvent>,
    children: Vec<RunSnapshot>,
}

impl RunAssert {
    /// Reads run `id` with its events and children.
    pub async fn of(client: &Client, id: RunId) -> Result<RunAssert> {
        let run = client.status(id).await?;
        let events = client.events(id).await?;
        let children = client
            .list(owlclaw_core::wire::ListFilter {
                parent_id: Some(id),
                limit: Some(1000),
                ..Default::default()
            })
            .await?
            .runs;
        Ok(RunAssert {
            run,
            events,
            children,
        })
    }

    /// The run.
    pub fn run(&self) -> &RunSnapshot {
        &self.run
    }

    /// Its status is `status`.
    #[track_caller]
    pub fn status(&self, status: owlclaw_core::RunStatus) -> &Self {
        assert_eq!(
            self.run.status, status,
            "run {}: {:?}",
            self.run.id, self.run
        );
        self
    }

    /// It made `n` attempts.
    #[track_caller]
    pub fn attempts(&self, n: u32) -> &Self {
        assert_eq!(self.run.attempt, n, "run {} attempts", self.run.id);
        self
    }

    /// Its committed steps are `names`, in order, each succeeded.
    #[track_caller]
    pub fn steps_succeeded(&self, names: &[&str]) -> &Self {
        let got: Vec<(&str, StepStatus)> = self
            .run
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.status))
            .collect();
        let want: Vec<(&str, StepStatus)> =
            names.iter().map(|n| (*n, StepStatus::Succeeded)).collect();
        assert_eq!(got, want, "run {} steps", self.run.id);
        self
    }

    /// Its status went through `path` (each event's new status, in order).
    #[track_caller]
    pub fn went_through(&self, path: &[owlclaw_core::RunStatus]) -> &Self {
        let got: Vec<owlclaw_core::RunStatus> = self.events.iter().map(|e| e.to).collect();
        assert_eq!(got, path, "run {} events: {:?}", self.run.id, self.events);
        self
    }

    /// It has `n` children (runs it scheduled).
    #[track_caller]
    pub fn children(&self, n: usize) -> &Self {
        assert_eq!(
            self.children.len(),
            n,
            "run {} children: {:?}",
            self.run.id,
            self.children
        );
        self
    }
}

/// An engine in memory whose clock the test moves: runs scheduled with a delay, retries after
/// their backoff, durable sleeps, expiries, crons and intervals happen when the test
/// [`advance`](TestEngine::advance)s time past them, at once and in order, without waiting.
///
/// Its clock runs with the system's, plus what the test added; the [`Client`] it gives (and
/// the workers started from it) go by the same clock, and park every durable sleep in the
/// engine whatever its length.
#[derive(Debug, Clone)]
pub struct TestEngine {
    client: Client,
    engine: owlclaw_engine::Engine,
    clock: owlclaw_core::clock::Clock,
}

/// How long [`TestEngine::advance`] waits for the runs that became ready to be done.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

impl TestEngine {
    /// Starts an engine on a database in memory, with a clock of the test's.
    pub async fn start() -> Result<TestEngine> {
        let clock = owlclaw_core::clock::Clock::manual();
        let config = crate::Config::lite_in_memory();
        let engine = owlclaw_engine::Engine::start(owlclaw_engine::EngineConfig {
            database_url: config.database_url.clone(),
            lease: config.worker.lease,
            clock: clock.clone(),
            ..owlclaw_engine::EngineConfig::default()
        })
        .await?;
        let client = Client::from_engine(engine.clone(), config);
        Ok(TestEngine {
            client,
            engine,
            clock,
        })
    }

    /// The client of this engine: schedule runs and start workers with it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The time now, by the test's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Moves time forward by `by`, stopping at each due time on the way (a timer, an expiry, a
    /// cron tick) and waiting there until the runs it made ready are done (finished, or parked
    /// until later), as they would be at that time; then moves to the end and waits the same
    /// way. Runs that no worker of this engine takes are left queued.
    pub async fn advance(&self, by: Duration) -> Result<()> {
        let target = self.clock.now() + chrono::Duration::from_std(by).unwrap_or_default();
        self.settle().await?;
        for _ in 0..100_000 {
            match self.engine.next_due().await? {
                Some(t) if t <= target => {
                    self.clock.advance_to(t);
                    self.engine.wake();
                    self.settle().await?;
                }
                _ => break,
            }
        }
        self.clock.advance_to(target);
        self.engine.wake();
        self.settle().await
    }

    /// Waits until the engine's loop has looked at the time, nothing else is due by the test's
    /// clock, no run is running, and the queued ones stay queued for a second (no worker takes
    /// them).
    pub async fn settle(&self) -> Result<()> {
        let count = |status| {
            self.client.count(owlclaw_core::wire::ListFilter {
                status: Some(status),
                ..Default::default()
            })
        };
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        let mut last = None;
        let mut quiet = 0;
        // A whole pass of the maintenance loop after now: it has seen the time.
        let passes = self.engine.maintenance_passes() + 1;
        self.engine.wake();
        loop {
            // Let the engine's loops and the workers see the time first.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "the engine did not settle within {SETTLE_TIMEOUT:?} (runs still running, or \
                     something due that does not happen)"
                )));
            }
            // A timer due now is promoted here; a cron tick due now is the engine loop's to fire.
            if self
                .engine
                .next_due()
                .await?
                .is_some_and(|t| t <= self.clock.now())
            {
                self.engine.wake();
                quiet = 0;
                continue;
            }
            let now = (
                count(owlclaw_core::RunStatus::Running).await?,
                count(owlclaw_core::RunStatus::Queued).await?,
            );
            quiet = if now.0 == 0 && last == Some(now) {
                quiet + 1
            } else {
                0
            };
            last = Some(now);
            // Nothing running, nothing due, nothing claimed: what was ready is done.
            if self.engine.maintenance_passes() > passes
                && quiet >= if now.1 == 0 { 3 } else { 200 }
            {
                return Ok(());
            }
        }
    }
}
