//! The [`Context`] a task function receives: run metadata, cancellation, and durable execution
//! (steps, sleeps, child runs).

use crate::backoff::retry_transient;
use crate::client::{sealed, RunHandle, ScheduleBuilder, Scheduler};
use crate::{Client, Task};
use chrono::{DateTime, Utc};
use owlclaw_core::wire::{Outcome, ReceivedEvent, StepCheckpoint, StepSnapshot, StepStatus};
use owlclaw_core::{Error, Orchestrator, Result, RunId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::{self, Display};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, OnceCell};
use tokio_util::sync::CancellationToken;

/// What a task knows about the run it executes, and how it talks back: cancellation, durable steps
/// and sleeps, and scheduling other runs (the typed handles accept a `&Context` and record the
/// parent).
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    run_id: RunId,
    task: String,
    attempt: u32,
    max_attempts: u32,
    parent_id: Option<RunId>,
    cancel: CancellationToken,
    durable: Option<Durable>,
}

/// What durable execution needs: present when the context comes from a worker. It talks to the
/// engine through the transport itself and sends a call again while the engine can't be reached
/// or is restarting: reads are safe to repeat, and a checkpoint is keyed by run, attempt and
/// position, so a repeated one overwrites the step's row with the same values (the engine may
/// log the step's event twice when the first answer was lost).
pub(crate) struct Durable {
    /// The engine.
    orch: Arc<dyn Orchestrator>,
    /// The worker's current id (it changes if the worker registers again).
    pub(crate) worker_id: Arc<Mutex<String>>,
    /// Sleeps longer than this suspend the run instead of holding the slot.
    pub(crate) suspend_threshold: Duration,
    /// Asks the worker to park the run: the outcome to report (a long sleep, an event wait).
    pub(crate) suspend: Mutex<Option<oneshot::Sender<Outcome>>>,
    /// The next step's position.
    next: AtomicU32,
    /// Steps recorded by earlier executions, and how many times the run was replayed from a
    /// step, loaded at the first step.
    earlier: OnceCell<(Vec<StepSnapshot>, u32)>,
    /// Set when the run took another path than before: its failure is not retried.
    fatal: AtomicBool,
    /// What `owlclaw::testing` watches and where it crashes the execution (tests only).
    #[cfg(feature = "testing")]
    pub(crate) probe: Option<Arc<crate::testing::Probe>>,
}

impl Durable {
    pub(crate) fn new(
        orch: Arc<dyn Orchestrator>,
        worker_id: Arc<Mutex<String>>,
        suspend_threshold: Duration,
        suspend: oneshot::Sender<Outcome>,
    ) -> Durable {
        Durable {
            orch,
            worker_id,
            suspend_threshold,
            suspend: Mutex::new(Some(suspend)),
            next: AtomicU32::new(0),
            earlier: OnceCell::new(),
            fatal: AtomicBool::new(false),
            #[cfg(feature = "testing")]
            probe: None,
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("run_id", &self.inner.run_id)
            .field("task", &self.inner.task)
            .field("attempt", &self.inner.attempt)
            .field("max_attempts", &self.inner.max_attempts)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: Client,
        run_id: RunId,
        task: String,
        attempt: u32,
        max_attempts: u32,
        parent_id: Option<RunId>,
        cancel: CancellationToken,
        durable: Option<Durable>,
    ) -> Context {
        Context {
            inner: Arc::new(Inner {
                client,
                run_id,
                task,
                attempt,
                max_attempts,
                parent_id,
                cancel,
                durable,
            }),
        }
    }

    /// The run being executed.
    pub fn run_id(&self) -> RunId {
        self.inner.run_id
    }

    /// The task's name.
    pub fn task_name(&self) -> &str {
        &self.inner.task
    }

    /// This attempt, 1-based.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// `retries + 1`.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether a failure now would be final.
    pub fn is_last_attempt(&self) -> bool {
        self.inner.attempt >= self.inner.max_attempts
    }

    /// The run that scheduled this one, if any.
    pub fn parent_id(&self) -> Option<RunId> {
        self.inner.parent_id
    }

    /// The output of `P`, a parent of this task in its workflow (`#[task(parents = [P])]`),
    /// typed: `ctx.parent_output::<validate>().await?`. A task that is not a parent, or a run
    /// that is not part of a workflow run, is refused with an error naming them.
    pub async fn parent_output<P: Task>(&self) -> Result<P::Output> {
        use crate::task::qualified_name;
        let namespace = self.inner.client.config().namespace.clone();
        let ns = namespace.as_deref();
        let me = crate::registry::registered()
            .find(|r| qualified_name(ns, r.spec.name) == self.inner.task)
            .map(|r| r.spec);
        let parents = me.map(|s| s.parents).unwrap_or_default();
        if !parents.contains(&P::SPEC.name) {
            return Err(Error::invalid_input(
                "parent_output",
                format!(
                    "task {:?} is not a parent of {:?} (its parents: {})",
                    P::SPEC.name,
                    self.inner.task,
                    if parents.is_empty() {
                        "none".to_string()
                    } else {
                        parents.join(", ")
                    }
                ),
            ));
        }
        let workflow = self.inner.parent_id.ok_or_else(|| {
            Error::invalid_input(
                "parent_output",
                format!("run {} is not a task of a workflow run", self.inner.run_id),
            )
        })?;
        let id = RunId::in_workflow(workflow, &qualified_name(ns, P::SPEC.name));
        let run = self.inner.client.status(id).await?;
        if run.status != owlclaw_core::RunStatus::Succeeded {
            return Err(Error::invalid_input(
                "parent_output",
                format!(
                    "the run {id} of parent {:?} is {}, not succeeded",
                    P::SPEC.name,
                    run.status
                ),
            ));
        }
        serde_json::from_value(run.output.unwrap_or(Value::Null)).map_err(|e| {
            Error::invalid_input(
                "parent_output",
                format!(
                    "the output of {:?} does not match its type: {e}",
                    P::SPEC.name
                ),
            )
        })
    }

    /// The client, to inspect other runs.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Resolves when the run is cancelled (or the worker shuts down past its grace period).
    /// The task's future is dropped after the cancellation grace period unless it returns first.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Whether the run has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Whether the run took another path than in an earlier execution (its failure is final).
    pub(crate) fn is_non_deterministic(&self) -> bool {
        self.inner
            .durable
            .as_ref()
            .is_some_and(|d| d.fatal.load(Ordering::SeqCst))
    }

    fn durable(&self) -> Result<&Durable> {
        self.inner.durable.as_ref().ok_or_else(|| {
            Error::Internal(
                "durable steps need the Context a worker gives to a running task".into(),
            )
        })
    }

    /// The steps earlier executions recorded and the run's replay count, read once.
    async fn earlier(&self) -> Result<&(Vec<StepSnapshot>, u32)> {
        let d = self.durable()?;
        let run_id = self.inner.run_id;
        d.earlier
            .get_or_try_init(|| async {
                let run = retry_transient("reading the run's steps", None, || {
                    d.orch.get_run(run_id, None)
                })
                .await?;
                Ok::<_, Error>((run.steps, run.replays))
            })
            .await
    }

    /// The steps and replay count read with the run's trace context when the attempt started
    /// (the `otel` feature): the first step uses them instead of reading them again.
    #[cfg(feature = "otel")]
    pub(crate) fn preload_steps(&self, steps: Vec<StepSnapshot>, replays: u32) {
        if let Some(d) = &self.inner.durable {
            let _ = d.earlier.set((steps, replays));
        }
    }

    /// Tells the test probe, if any, what happened at step `position` (tests only).
    #[allow(unused_variables)]
    fn trace(&self, position: u32, name: &str, what: &'static str) {
        #[cfg(feature = "testing")]
        if let Some(p) = self.inner.durable.as_ref().and_then(|d| d.probe.as_ref()) {
            p.record(position, name, what);
        }
    }

    /// Where the test probe, if any, crashes this execution: the future never ends and the test
    /// harness drops it, as a process that dies there would (tests only).
    #[allow(unused_variables)]
    async fn crash_point(&self, position: u32, committed: bool) {
        #[cfg(feature = "testing")]
        if let Some(p) = self.inner.durable.as_ref().and_then(|d| d.probe.as_ref()) {
            if p.crashes_at(position, committed) {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Takes the next step position and returns what an earlier execution recorded there.
    async fn begin(&self, name: &str) -> Result<(u32, Option<StepSnapshot>)> {
        let d = self.durable()?;
        let position = d.next.fetch_add(1, Ordering::SeqCst);
        let (earlier, _) = self.earlier().await?;
        let prior = earlier.iter().find(|s| s.position == position).cloned();
        if let Some(p) = &prior {
            if p.name != name {
                d.fatal.store(true, Ordering::SeqCst);
                return Err(Error::NonDeterministic(format!(
                    "step {position} was {:?} in an earlier execution of run {} but is {name:?} now; \
                     a run must take the same steps in the same order every time it executes",
                    p.name, self.inner.run_id
                )));
            }
        }
        Ok((position, prior))
    }

    async fn commit(
        &self,
        position: u32,
        name: &str,
        status: StepStatus,
        output: Option<Value>,
        error: Option<String>,
    ) -> Result<()> {
        let d = self.durable()?;
        let cp = StepCheckpoint {
            run_id: self.inner.run_id,
            attempt: self.inner.attempt,
            position,
            name: name.to_string(),
            status,
            // The engine's own rule, applied before sending so no checkpoint outgrows its limit.
            output: output.map(owlclaw_core::limits::bound_output),
            error: error.map(|e| owlclaw_core::limits::bound_error(&e)),
        };
        retry_transient("committing a step", None, || {
            // The worker's id changes if it registers again.
            let worker_id = d.worker_id.lock().unwrap().clone();
            let cp = cp.clone();
            async move { d.orch.checkpoint_step(&worker_id, cp).await }
        })
        .await
    }

    async fn finish<T: Serialize, E: Display>(
        &self,
        position: u32,
        name: &str,
        result: std::result::Result<T, E>,
    ) -> Result<T> {
        match result {
            Ok(v) => {
                let out = serde_json::to_value(&v).map_err(|e| Error::Step {
                    step: name.to_string(),
                    message: format!("its output can't be serialized to JSON: {e}"),
                })?;
                self.commit(position, name, StepStatus::Succeeded, Some(out), None)
                    .await?;
                Ok(v)
            }
            Err(e) => {
                let message = format!("{e:#}");
                self.commit(
                    position,
                    name,
                    StepStatus::Failed,
                    None,
                    Some(message.clone()),
                )
                .await?;
                Err(Error::Step {
                    step: name.to_string(),
                    message,
                })
            }
        }
    }

    /// Runs a step's body and commits its outcome.
    async fn run_body<T, E, F, Fut>(&self, position: u32, name: &str, body: F) -> Result<T>
    where
        T: Serialize,
        E: Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        self.trace(position, name, "body");
        let result = body().await;
        self.crash_point(position, false).await;
        self.finish_step(position, name, result).await
    }

    /// Commits a step's outcome ([`finish`](Self::finish)); a test's crash point comes right
    /// after the commit.
    async fn finish_step<T: Serialize, E: Display>(
        &self,
        position: u32,
        name: &str,
        result: std::result::Result<T, E>,
    ) -> Result<T> {
        let out = self.finish(position, name, result).await;
        self.crash_point(position, true).await;
        out
    }

    fn stored<T: DeserializeOwned>(name: &str, output: Option<Value>) -> Result<T> {
        serde_json::from_value(output.unwrap_or(Value::Null)).map_err(|e| Error::Step {
            step: name.to_string(),
            message: format!("its stored output does not match the step's type: {e}"),
        })
    }

    /// Runs a durable step: `body`'s output is committed before this returns, and when the run
    /// executes again (a retry, a crash, a resume after a sleep) the stored output is returned
    /// without running `body` again. Steps must come in the same order on every execution; a
    /// different step name at a position fails the run (`NonDeterministic`, not retried).
    ///
    /// `body` may run more than once if the process dies before the commit: make it idempotent,
    /// or use [`step_verified`](Self::step_verified).
    ///
    /// ```no_run
    /// # use owlclaw::{task, Context};
    /// #[task(retries = 3)]
    /// async fn publish(ctx: Context, sku: String) -> anyhow::Result<String> {
    ///     let listing: String = ctx.step("create_listing", || async { anyhow::Ok(format!("L-{sku}")) }).await?;
    ///     Ok(listing)
    /// }
    /// ```
    pub async fn step<T, E, F, Fut>(&self, name: &str, body: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let run = async {
            let (position, prior) = self.begin(name).await?;
            if let Some(p) = prior.filter(|p| p.status == StepStatus::Succeeded) {
                #[cfg(feature = "otel")]
                crate::otel::replayed();
                self.trace(position, name, "replayed");
                return Self::stored(name, p.output);
            }
            self.run_body(position, name, body).await
        };
        #[cfg(feature = "otel")]
        let run = crate::otel::step(self, name, run);
        run.await
    }

    /// A durable step whose effect must not happen twice (a payment, an upload). Its start is
    /// committed before `body` runs. If an earlier execution started it but did not commit a
    /// success (a crash, a timeout, or an error that may have come after the effect), `verify`
    /// runs first to ask whether the effect happened anyway: if it returns `Some(output)`, that
    /// output is committed as the step's and `body` is not run; if `None`, `body` runs.
    pub async fn step_verified<T, E, V, VFut, F, Fut>(
        &self,
        name: &str,
        verify: V,
        body: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Display,
        V: FnOnce() -> VFut,
        VFut: Future<Output = std::result::Result<Option<T>, E>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let run = async {
            let (position, prior) = self.begin(name).await?;
            match prior {
                Some(p) if p.status == StepStatus::Succeeded => {
                    #[cfg(feature = "otel")]
                    crate::otel::replayed();
                    self.trace(position, name, "replayed");
                    return Self::stored(name, p.output);
                }
                // Started before and never committed as succeeded (a crash, a timeout, or an
                // error that may have come after the effect): ask whether the effect happened.
                Some(_) => {
                    self.trace(position, name, "verify");
                    match verify().await {
                        Ok(Some(done)) => {
                            return self.finish_step::<T, E>(position, name, Ok(done)).await
                        }
                        Ok(None) => {}
                        Err(e) => return self.finish::<T, E>(position, name, Err(e)).await,
                    }
                }
                None => {}
            }
            self.commit(position, name, StepStatus::Running, None, None)
                .await?;
            self.run_body(position, name, body).await
        };
        #[cfg(feature = "otel")]
        let run = crate::otel::step(self, name, run);
        run.await
    }

    /// Sleeps durably for `duration`: the wake-up time is committed when the sleep first starts,
    /// so after a crash or restart the run sleeps only what is left. A sleep longer than the
    /// worker's suspend threshold (30 s by default) gives the worker slot back: the run is parked
    /// and re-dispatched at the wake-up time, and resumes after its completed steps.
    pub async fn sleep_for(&self, duration: Duration) -> Result<()> {
        let until = self.inner.client.now()
            + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        self.sleep_until(until).await
    }

    /// Sleeps durably until `until`; see [`sleep_for`](Self::sleep_for).
    pub async fn sleep_until(&self, until: DateTime<Utc>) -> Result<()> {
        let name = "sleep";
        let (position, prior) = self.begin(name).await?;
        let wake = match prior.filter(|p| p.status == StepStatus::Succeeded) {
            Some(p) => {
                let v: Value = Self::stored(name, p.output)?;
                serde_json::from_value(v["wake_at"].clone()).unwrap_or(until)
            }
            None => {
                self.commit(
                    position,
                    name,
                    StepStatus::Succeeded,
                    Some(json!({ "wake_at": until })),
                    None,
                )
                .await?;
                until
            }
        };
        let left = (wake - self.inner.client.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return Ok(());
        }
        let d = self.durable()?;
        // Under a test's clock every sleep is parked in the engine, whose time the test moves.
        if left > d.suspend_threshold || self.inner.client.clock_is_manual() {
            let suspend = d.suspend.lock().unwrap().take();
            if let Some(tx) = suspend {
                let _ = tx.send(Outcome::Suspended { until: wake });
                // The worker stops this future and parks the run until `wake`.
                std::future::pending::<()>().await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(left) => Ok(()),
            _ = self.cancelled() => Err(Error::Cancelled { run_id: self.inner.run_id }),
        }
    }

    /// Waits durably for an event of `key` whose payload matches `filter` (a JSON object naming
    /// payload fields and their values, as `json!({"order_id": 42})`; `Value::Null` or `{}` takes
    /// any event of the key), for at most `timeout`. Returns the event, or `None` when the
    /// timeout passed first.
    ///
    /// The wait frees the worker slot at once: the run is parked in the engine, which queues it
    /// again when a matching event is pushed (or at the timeout), and it resumes after its
    /// completed steps, the wait's step then returning the event. The wait survives worker and
    /// engine restarts. Its window opens when the run is created, not when the wait starts: an
    /// event pushed after the run was scheduled and before the wait began is taken too (the
    /// first such event in push order, and never one that an earlier wait of the same run took).
    ///
    /// ```no_run
    /// # use owlclaw::{task, Context};
    /// # use std::time::Duration;
    /// #[task(on_event = "order.created")]
    /// async fn ship(ctx: Context, order: serde_json::Value) -> anyhow::Result<String> {
    ///     let filter = serde_json::json!({ "order_id": order["order_id"] });
    ///     match ctx.wait_for_event("order.paid", filter, Duration::from_secs(24 * 3600)).await? {
    ///         Some(paid) => Ok(format!("shipped after payment {}", paid.id)),
    ///         None => Ok("abandoned: not paid within a day".into()),
    ///     }
    /// }
    /// ```
    pub async fn wait_for_event(
        &self,
        key: &str,
        filter: Value,
        timeout: Duration,
    ) -> Result<Option<ReceivedEvent>> {
        owlclaw_core::task::validate_event_key(key).map_err(|e| Error::invalid_input("key", e))?;
        owlclaw_core::event::validate_filter(&filter)
            .map_err(|e| Error::invalid_input("filter", e))?;
        let name = owlclaw_core::event::wait_step_name(key);
        let (position, prior) = self.begin(&name).await?;
        let until = match prior {
            Some(p) if p.status == StepStatus::Succeeded => {
                let out: Value = Self::stored(&name, p.output)?;
                return Self::stored(&name, Some(out["event"].clone()));
            }
            // Started by an earlier execution: the wait keeps its end.
            Some(StepSnapshot {
                output: Some(out), ..
            }) if out.get("until").is_some() => Self::stored(&name, Some(out["until"].clone()))?,
            _ => {
                let until = self.inner.client.now()
                    + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
                let started = json!({ "until": until, "filter": filter });
                self.commit(position, &name, StepStatus::Running, Some(started), None)
                    .await?;
                until
            }
        };
        if until <= self.inner.client.now() {
            let out = json!({ "event": null });
            self.commit(position, &name, StepStatus::Succeeded, Some(out), None)
                .await?;
            return Ok(None);
        }
        let d = self.durable()?;
        let park = d
            .suspend
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| Error::Internal("a run can park only once per execution".into()))?;
        let _ = park.send(Outcome::WaitingForEvent {
            until,
            position,
            key: key.to_string(),
            filter,
        });
        // The worker stops this future and parks the run in the engine.
        std::future::pending().await
    }

    /// Starts a child run of task `T` with `input`, recording this run as its parent. Durable: when
    /// this run executes again, the same child is found (keyed by this run and the step's
    /// position), not started twice. Await [`RunHandle::result`] for its output; start several
    /// children before awaiting any to fan out.
    pub async fn spawn<T: Task>(&self, input: T::Input) -> Result<RunHandle<T::Output>> {
        let name = format!("spawn:{}", T::SPEC.name);
        let (position, prior) = self.begin(&name).await?;
        // A committed spawn names its child: that child, whatever the replays since.
        let recorded = prior
            .as_ref()
            .filter(|p| p.status == StepStatus::Succeeded)
            .and_then(|p| {
                p.output
                    .as_ref()?
                    .get("run_id")?
                    .as_str()?
                    .parse::<RunId>()
                    .ok()
            });
        if let Some(id) = recorded {
            return Ok(RunHandle::new(self.inner.client.clone(), id, false));
        }
        // After a replay from this step or an earlier one, a new child: the key counts replays.
        let replays = self.earlier().await?.1;
        let key = if replays == 0 {
            format!("child:{}:{position}", self.inner.run_id)
        } else {
            format!("child:{}:{position}:replay-{replays}", self.inner.run_id)
        };
        // Keyed, so sending it again after a failure in transit finds the same child.
        let child = ScheduleBuilder::<T>::new(self, input)
            .idempotency_key(key)
            .send_resending()
            .await?;
        if prior.is_none_or(|p| p.status != StepStatus::Succeeded) {
            let out = json!({ "run_id": child.id() });
            self.commit(position, &name, StepStatus::Succeeded, Some(out), None)
                .await?;
        }
        Ok(child)
    }
}

impl sealed::Sealed for Context {}

impl Scheduler for Context {
    fn client(&self) -> &Client {
        Context::client(self)
    }
    fn parent_run(&self) -> Option<RunId> {
        Some(self.run_id())
    }
}
