//! The [`Client`]: one API over the embedded engine (lite mode) or an engine server.

use crate::backoff::{retry_transient, Backoff};
use crate::config::{Config, Mode};
use crate::task::{qualified_name, Task};
use chrono::{DateTime, Utc};
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Orchestrator, Result, RunId, RunStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A connection to an OwlClaw engine: embedded in this process (lite mode, the default) or an
/// `owlclaw serve` server. Cheap to clone; clones share the connection.
///
/// ```no_run
/// # async fn demo() -> owlclaw::Result<()> {
/// let client = owlclaw::Client::lite().await?;                 // .owlclaw/owlclaw.db
/// let page = client.list(Default::default()).await?;
/// println!("{} runs", page.runs.len());
/// client.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    user: Option<Arc<str>>,
}

struct Inner {
    orch: Arc<dyn Orchestrator>,
    config: Config,
    /// The embedded engine, in lite mode (`enqueue_in` writes runs in the application's
    /// transaction for it).
    engine: Option<crate::tx::TxEngine>,
    /// The engine's clock in lite mode (a test's with `owlclaw::testing`), the system's
    /// otherwise.
    clock: owlclaw_core::clock::Clock,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("user", &self.user)
            .finish()
    }
}

impl Client {
    /// Connects as `config` says: starts the embedded engine in lite mode.
    pub async fn connect(config: Config) -> Result<Client> {
        config.validate()?;
        let (orch, engine) = match config.mode {
            Mode::Lite => lite_engine(&config).await?,
            Mode::Server => (server_connection(&config).await?, None),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                orch,
                config,
                clock: engine_clock(engine.as_ref()),
                engine,
            }),
            user: None,
        })
    }

    /// The time now, by the engine's clock (a test's, with `owlclaw::testing`).
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn clock_is_manual(&self) -> bool {
        self.inner.clock.is_manual()
    }

    /// Lite mode with every default: an embedded engine on `.owlclaw/owlclaw.db` in the working
    /// directory.
    pub async fn lite() -> Result<Client> {
        Client::connect(Config::lite()).await
    }

    /// Lite mode on a throw-away in-memory database (tests, demos).
    pub async fn lite_in_memory() -> Result<Client> {
        Client::connect(Config::lite_in_memory()).await
    }

    /// Reads `owlclaw.yaml` (with `${VAR}` substitution and `OWLCLAW_*` overrides) and connects.
    pub async fn from_config_file(path: impl AsRef<Path>) -> Result<Client> {
        Client::connect(Config::from_file(path)?).await
    }

    /// Builds the configuration from `OWLCLAW_*` environment variables and connects.
    pub async fn from_env() -> Result<Client> {
        Client::connect(Config::from_env()?).await
    }

    /// A lite-mode client over an engine started with a configuration of your own
    /// (`owlclaw_engine::Engine::start`), acting for the lite-mode tenant.
    #[cfg(feature = "lite")]
    pub fn from_engine(engine: owlclaw_engine::Engine, config: Config) -> Client {
        let orch = Arc::new(engine.embedded(owlclaw_engine::LITE_TENANT));
        Client {
            inner: Arc::new(Inner {
                orch,
                config,
                clock: engine.config().clock.clone(),
                engine: Some(engine),
            }),
            user: None,
        }
    }

    /// A client over any [`Orchestrator`] (for custom transports and tests).
    pub fn from_orchestrator(orch: Arc<dyn Orchestrator>, config: Config) -> Client {
        Client {
            inner: Arc::new(Inner {
                orch,
                config,
                engine: None,
                clock: owlclaw_core::clock::Clock::system(),
            }),
            user: None,
        }
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<()> {
        self.inner.orch.list_workers().await.map(|_| ())
    }

    /// Closes the connection; in lite mode, stops the embedded engine. Stop workers first.
    pub async fn disconnect(&self) -> Result<()> {
        self.inner.orch.close().await
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The orchestrator behind it.
    pub fn orchestrator(&self) -> &Arc<dyn Orchestrator> {
        &self.inner.orch
    }

    /// The same connection acting as `user`: runs it schedules are owned by `user`, and
    /// `status`, `cancel` and `retry` of runs owned by someone else are refused (`Forbidden`).
    pub fn for_user(&self, user: impl Into<String>) -> Client {
        Client {
            inner: self.inner.clone(),
            user: Some(Arc::from(user.into())),
        }
    }

    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Schedules a run by task name with a JSON input (untyped; prefer the typed handles that
    /// `#[task]` generates). `req.task` is the full name, namespace included.
    pub async fn submit(&self, mut req: ScheduleRequest) -> Result<Scheduled> {
        req.act_as(self.user())?;
        #[cfg(feature = "otel")]
        let span = crate::otel::enqueue_span(std::slice::from_mut(&mut req));
        let sent = self.inner.orch.schedule(req);
        #[cfg(feature = "otel")]
        let sent = crate::otel::enqueue(span, sent);
        sent.await
    }

    /// Schedules many runs in one transaction.
    pub async fn submit_bulk(&self, mut reqs: Vec<ScheduleRequest>) -> Result<Vec<Scheduled>> {
        for r in &mut reqs {
            r.act_as(self.user())?;
        }
        #[cfg(feature = "otel")]
        let span = crate::otel::enqueue_span(&mut reqs);
        let sent = self.inner.orch.schedule_bulk(reqs);
        #[cfg(feature = "otel")]
        let sent = crate::otel::enqueue(span, sent);
        sent.await
    }

    /// Enqueues many runs of a typed task in one transaction.
    pub async fn enqueue_bulk<T: Task>(
        &self,
        inputs: impl IntoIterator<Item = T::Input>,
    ) -> Result<Vec<RunHandle<T::Output>>> {
        let reqs = inputs
            .into_iter()
            .map(|input| typed_request::<T>(self, None, &input))
            .collect::<Result<Vec<_>>>()?;
        let done = self.submit_bulk(reqs).await?;
        Ok(done
            .into_iter()
            .map(|s| RunHandle::new(self.clone(), s.run.id, s.created))
            .collect())
    }

    /// A run's snapshot.
    pub async fn status(&self, id: RunId) -> Result<RunSnapshot> {
        self.inner.orch.get_run(id, self.user()).await
    }

    /// Runs, newest first, filtered by status, task and owner, a page at a time. Acting as a
    /// user, only that user's runs.
    pub async fn list(&self, mut filter: ListFilter) -> Result<RunPage> {
        filter.act_as(self.user())?;
        self.inner.orch.list_runs(filter).await
    }

    /// A run's transition log, oldest first.
    pub async fn events(&self, id: RunId) -> Result<Vec<RunEvent>> {
        self.inner.orch.run_events(id, self.user()).await
    }

    /// Cancels a run (`InvalidTransition` if it has finished).
    pub async fn cancel(&self, id: RunId) -> Result<RunSnapshot> {
        self.inner.orch.cancel_run(id, self.user()).await
    }

    /// Re-queues a failed or cancelled run as a new attempt. Retrying a failed workflow run
    /// runs its failed task again and what depends on it; its succeeded tasks are kept.
    pub async fn retry(&self, id: RunId) -> Result<RunSnapshot> {
        self.inner.orch.retry_run(id, self.user()).await
    }

    /// Replays a failed or cancelled run from its first durable step named `from_step`: that
    /// step and every later one run again as a new attempt; the earlier steps keep their outputs
    /// and the children they spawned; children spawned from that step on are started afresh.
    pub async fn replay(&self, id: RunId, from_step: &str) -> Result<RunSnapshot> {
        self.inner.orch.replay_run(id, from_step, self.user()).await
    }

    /// The tenant's overview: queue depth by task and priority, runs finished in each of the
    /// last 60 minutes.
    pub async fn overview(&self) -> Result<Overview> {
        self.inner.orch.overview().await
    }

    /// How many runs `filter` matches (acting as a user, among that user's).
    pub async fn count(&self, mut filter: ListFilter) -> Result<u64> {
        filter.act_as(self.user())?;
        Ok(self.inner.orch.count_runs(filter, None).await?.count)
    }

    /// How many runs `filter` matches, counting at most `max` (the answer says `capped` when
    /// there are at least that many): a bounded cost on a large store.
    pub async fn count_at_most(&self, mut filter: ListFilter, max: u64) -> Result<RunCount> {
        filter.act_as(self.user())?;
        self.inner.orch.count_runs(filter, Some(max)).await
    }

    /// Cancels every run `filter` matches that has not finished, a page (1,000 runs, or the
    /// filter's `limit`) per transaction; `progress` hears after each page how many changed so
    /// far. Returns how many were cancelled. The filter needs at least one condition.
    pub async fn cancel_where(
        &self,
        filter: ListFilter,
        progress: impl FnMut(&BulkOutcome, u64),
    ) -> Result<u64> {
        self.bulk(filter, false, progress).await
    }

    /// Retries every failed or cancelled run `filter` matches, a page per transaction (see
    /// [`cancel_where`](Client::cancel_where)). Returns how many were retried.
    pub async fn retry_where(
        &self,
        filter: ListFilter,
        progress: impl FnMut(&BulkOutcome, u64),
    ) -> Result<u64> {
        self.bulk(filter, true, progress).await
    }

    async fn bulk(
        &self,
        mut filter: ListFilter,
        retry: bool,
        mut progress: impl FnMut(&BulkOutcome, u64),
    ) -> Result<u64> {
        filter.act_as(self.user())?;
        let mut changed = 0;
        loop {
            let page = self.inner.orch.bulk_runs(filter.clone(), retry).await?;
            changed += page.changed;
            progress(&page, changed);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(changed),
            }
        }
    }

    /// The task runs of a workflow run, with its tasks not started yet (pending, or skipped
    /// after a failure).
    pub async fn workflow_tasks(
        &self,
        id: RunId,
    ) -> Result<owlclaw_core::workflow::WorkflowRunTasks> {
        self.inner.orch.workflow_tasks(id, self.user()).await
    }

    /// A workflow's plan: its stages and its critical path (the name as written in
    /// `#[workflow]`, without the namespace).
    pub async fn workflow_plan(&self, name: &str) -> Result<owlclaw_core::workflow::WorkflowPlan> {
        let name = qualified_name(self.config().namespace.as_deref(), name);
        self.inner.orch.workflow_plan(&name).await
    }

    /// Waits until the run is terminal (or `timeout` passes) and returns its snapshot. Transient
    /// connection errors (a restarting server) are retried until the timeout.
    pub async fn wait(&self, id: RunId, timeout: Duration) -> Result<RunSnapshot> {
        if self.user.is_some() {
            self.status(id).await?; // the ownership check
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new(crate::backoff::MAX);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .inner
                .orch
                .wait_run(id, left.min(Duration::from_secs(30)))
                .await
            {
                Ok(run) if run.status.is_terminal() || left.is_zero() => return Ok(run),
                Ok(_) => backoff.reset(),
                // A long wait rides out a restarting server.
                Err(e) if e.is_transient() && !left.is_zero() => {
                    tracing::debug!(error = %e, "waiting for a run: engine unreachable, retrying");
                    tokio::time::sleep(backoff.next_delay().min(left)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Cron schedules.
    pub async fn crons(&self) -> Result<Vec<CronSchedule>> {
        self.inner.orch.list_crons().await
    }

    /// Creates a cron schedule at run time.
    pub async fn create_cron(&self, req: CronRequest) -> Result<CronSchedule> {
        self.inner.orch.create_cron(req).await
    }

    /// Pauses a cron schedule (`task:<name>` for a `#[task(cron)]`, or the id `create_cron`
    /// gave): it fires nothing until resumed, also after a restart.
    pub async fn pause_cron(&self, id: &str) -> Result<CronSchedule> {
        self.inner.orch.set_cron_paused(id, true).await
    }

    /// Resumes a paused cron schedule; the ticks missed while it was paused are not fired.
    pub async fn resume_cron(&self, id: &str) -> Result<CronSchedule> {
        self.inner.orch.set_cron_paused(id, false).await
    }

    /// Fires a cron schedule once now (paused or not): a run of its task with its input, whose
    /// metadata says `{"cron": id, "trigger": "manual"}`.
    pub async fn trigger_cron(&self, id: &str) -> Result<RunHandle<serde_json::Value>> {
        let run = self.inner.orch.trigger_cron(id).await?;
        Ok(RunHandle::new(self.clone(), run.id, true))
    }

    /// Deletes a cron schedule.
    pub async fn delete_cron(&self, id: &str) -> Result<()> {
        self.inner.orch.delete_cron(id).await
    }

    /// Pushes an event: every task with `on_event = key` gets one run, whose input is `payload`.
    /// The event gets a new id, so a retry inside the client never pushes it twice; to make a
    /// push of yours idempotent, give the id with [`Client::push_event_with_id`].
    pub async fn push_event(&self, key: &str, payload: impl Serialize) -> Result<PushedEvent> {
        self.push_event_with_id(&uuid::Uuid::new_v4().to_string(), key, payload)
            .await
    }

    /// [`Client::push_event`] with the event's id: a second push of the same id (same key and
    /// payload) stores and starts nothing, and answers with the stored event (`created: false`).
    pub async fn push_event_with_id(
        &self,
        id: &str,
        key: &str,
        payload: impl Serialize,
    ) -> Result<PushedEvent> {
        let payload = serde_json::to_value(payload).map_err(|e| {
            Error::invalid_input("payload", format!("not serializable to JSON: {e}"))
        })?;
        let mut event = PushEvent {
            key: key.to_string(),
            payload,
            id: Some(id.to_string()),
            owner: None,
        };
        event.act_as(self.user())?;
        self.inner.orch.push_event(event).await
    }

    /// Live workers.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.inner.orch.list_workers().await
    }

    /// Creates or changes the rate limit `name`: `limit` units per `per`, per key, for the tasks
    /// that spend it (`#[task(rate_limit = "...")]`). Runs waiting for its units see the change
    /// at their next claim.
    pub async fn set_rate_limit(&self, name: &str, limit: u32, per: Duration) -> Result<RateLimit> {
        let limit = RateLimit {
            name: name.to_string(),
            limit,
            per,
        };
        limit.validate()?;
        self.inner.orch.set_rate_limit(limit).await
    }

    /// The rate limits, by name.
    pub async fn rate_limits(&self) -> Result<Vec<RateLimit>> {
        self.inner.orch.rate_limits().await
    }
}

/// An orchestrator and, in lite mode, its engine.
type Connected = (Arc<dyn Orchestrator>, Option<crate::tx::TxEngine>);

/// The clock of a lite-mode engine, or the system's.
#[allow(unused_variables)]
fn engine_clock(engine: Option<&crate::tx::TxEngine>) -> owlclaw_core::clock::Clock {
    #[cfg(feature = "lite")]
    if let Some(e) = engine {
        return e.config().clock.clone();
    }
    owlclaw_core::clock::Clock::system()
}

#[cfg(feature = "lite")]
async fn lite_engine(config: &Config) -> Result<Connected> {
    let cfg = owlclaw_engine::EngineConfig {
        database_url: config.database_url.clone(),
        lease: config.worker.lease,
        retention: config.retention,
        ..owlclaw_engine::EngineConfig::default()
    };
    let engine = owlclaw_engine::Engine::start(cfg).await?;
    let orch = Arc::new(engine.embedded(owlclaw_engine::LITE_TENANT));
    Ok((orch, Some(engine)))
}

#[cfg(feature = "server")]
async fn server_connection(config: &Config) -> Result<Arc<dyn Orchestrator>> {
    let url = config
        .server_url
        .as_deref()
        .ok_or_else(|| Error::config("server_url", "server mode needs a server_url"))?;
    let orch = crate::http::HttpOrchestrator::new(
        url,
        config.api_token.clone(),
        config.tls_ca_file.as_deref(),
    )?;
    // Check that the server answers and that the token is valid.
    orch.list_workers().await?;
    Ok(Arc::new(orch))
}

#[cfg(not(feature = "server"))]
async fn server_connection(_config: &Config) -> Result<Arc<dyn Orchestrator>> {
    Err(Error::config(
        "mode",
        "server mode needs the `server` feature of the owlclaw crate (on by default)",
    ))
}

#[cfg(not(feature = "lite"))]
async fn lite_engine(_config: &Config) -> Result<Connected> {
    Err(Error::config(
        "mode",
        "lite mode needs the `lite` feature of the owlclaw crate (on by default)",
    ))
}

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Client {}
}

/// What can schedule runs: a [`Client`], or a task's [`Context`] (the new run then records the
/// current run as its parent).
pub trait Scheduler: sealed::Sealed {
    /// The connection.
    fn client(&self) -> &Client;
    /// The run scheduling, if any.
    fn parent_run(&self) -> Option<RunId>;
}

impl Scheduler for Client {
    fn client(&self) -> &Client {
        self
    }
    fn parent_run(&self) -> Option<RunId> {
        None
    }
}

fn typed_request<T: Task>(
    client: &Client,
    parent: Option<RunId>,
    input: &T::Input,
) -> Result<ScheduleRequest> {
    let spec = T::SPEC;
    let input = serde_json::to_value(input)
        .map_err(|e| Error::invalid_input("input", format!("can't be serialized to JSON: {e}")))?;
    if spec.workflow {
        // A workflow's policies are its tasks'; the engine finds it by name (and refuses one no
        // worker has defined yet).
        return Ok(ScheduleRequest {
            task: qualified_name(client.config().namespace.as_deref(), spec.name),
            input,
            priority: Some(i64::from(spec.priority)),
            parent_id: parent,
            owner: client.user.as_deref().map(str::to_owned),
            ..ScheduleRequest::default()
        });
    }
    Ok(ScheduleRequest {
        task: qualified_name(client.config().namespace.as_deref(), spec.name),
        input,
        priority: Some(i64::from(spec.priority)),
        retries: Some(i64::from(spec.retries)),
        timeout: Some(Duration::from_millis(spec.timeout_ms)),
        backoff: Some(spec.backoff()),
        concurrency: Some(spec.concurrency()),
        rate_limit: Some(spec.rate_limit()),
        parent_id: parent,
        owner: client.user.as_deref().map(str::to_owned),
        ..ScheduleRequest::default()
    })
}

/// When a run expires if it has not started: after a duration from now, or at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// This long from now.
    After(Duration),
    /// At this time.
    At(DateTime<Utc>),
}

impl From<Duration> for Expiry {
    fn from(d: Duration) -> Expiry {
        Expiry::After(d)
    }
}

impl From<DateTime<Utc>> for Expiry {
    fn from(t: DateTime<Utc>) -> Expiry {
        Expiry::At(t)
    }
}

/// The task's `#[task(expires)]`, counted from the run's due time, unless the request has its own.
fn task_expiry<T: Task>(req: &mut ScheduleRequest, now: DateTime<Utc>) {
    if req.expires.is_some() || T::SPEC.expires_ms == 0 {
        return;
    }
    let due = match (req.run_at, req.delay) {
        (Some(at), _) => at,
        (None, Some(d)) => now + chrono::Duration::from_std(d).unwrap_or_default(),
        (None, None) => now,
    };
    let expires = chrono::Duration::milliseconds(T::SPEC.expires_ms as i64);
    req.expires = Some((due.max(now) + expires).to_rfc3339());
}

/// A run about to be scheduled through a typed handle. Set options, then `.await` it for a
/// [`RunHandle`], or call [`wait`](ScheduleBuilder::wait) for the typed output.
///
/// ```no_run
/// # use owlclaw::{task, Context};
/// # #[task] async fn resize(_ctx: Context, width: u32) -> anyhow::Result<u32> { Ok(width) }
/// # async fn demo(client: &owlclaw::Client) -> owlclaw::Result<()> {
/// let run = resize::enqueue(client, 640)
///     .priority(9)
///     .idempotency_key("resize-640")
///     .delay(std::time::Duration::from_secs(10))
///     .await?;
/// let width: u32 = run.result().await?;
/// # Ok(()) }
/// ```
#[must_use = "a ScheduleBuilder does nothing until it is awaited"]
pub struct ScheduleBuilder<T: Task> {
    client: Client,
    req: Result<ScheduleRequest>,
    _task: PhantomData<fn() -> T>,
}

impl<T: Task> fmt::Debug for ScheduleBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleBuilder")
            .field("task", &T::SPEC.name)
            .field("request", &self.req)
            .finish()
    }
}

impl<T: Task> ScheduleBuilder<T> {
    /// A run of `T` with `input`, due now, with the task's default priority.
    pub fn new(scheduler: &impl Scheduler, input: T::Input) -> ScheduleBuilder<T> {
        let client = scheduler.client().clone();
        let req = typed_request::<T>(&client, scheduler.parent_run(), &input);
        ScheduleBuilder {
            client,
            req,
            _task: PhantomData,
        }
    }

    fn with(mut self, f: impl FnOnce(&mut ScheduleRequest)) -> Self {
        if let Ok(r) = &mut self.req {
            f(r);
        }
        self
    }

    /// Celery's `countdown`: start after `delay` (as [`delay`](Self::delay)).
    pub fn countdown(self, delay: Duration) -> Self {
        self.delay(delay)
    }

    /// Celery's `eta`: start at `at` (as [`at`](Self::at)).
    pub fn eta(self, at: DateTime<Utc>) -> Self {
        self.at(at)
    }

    /// Celery's `expires`: if the run has not started by then (a time, or a duration from now),
    /// it ends `cancelled` with error `expired`, decided by the engine even when no worker runs.
    /// Replaces the task's `#[task(expires = ...)]` for this run.
    pub fn expires(self, expires: impl Into<Expiry>) -> Self {
        let text = match expires.into() {
            Expiry::After(d) => owlclaw_core::duration::format_duration(d),
            Expiry::At(t) => t.to_rfc3339(),
        };
        self.with(|r| r.expires = Some(text))
    }

    /// Celery's `link`: once this run succeeds, the engine schedules a run of `U` with its output
    /// as input (a child of this run). `U`'s input must be this task's output: a compile error
    /// otherwise. At most 8 links; a retried run that succeeds schedules them again.
    ///
    /// ```no_run
    /// # use owlclaw::{task, Context};
    /// # #[task] async fn resize(_ctx: Context, width: u32) -> anyhow::Result<u32> { Ok(width) }
    /// # #[task] async fn publish(_ctx: Context, width: u32) -> anyhow::Result<()> { Ok(()) }
    /// # async fn demo(client: &owlclaw::Client) -> owlclaw::Result<()> {
    /// resize::apply_async(client, 640).link::<publish>().await?;
    /// # Ok(()) }
    /// ```
    pub fn link<U: Task<Input = T::Output>>(self) -> Self {
        self.with(|r| r.link.push(U::SPEC.name.to_string()))
    }

    /// Celery's `link_error`: once this run fails (its retries spent), the engine schedules a run
    /// of `U` with a [`FailedRun`](crate::FailedRun) (the run's id, task, error, attempts and
    /// input) as input. A cancelled or expired run schedules neither links nor error links.
    pub fn link_error<U: Task<Input = owlclaw_core::wire::FailedRun>>(self) -> Self {
        self.with(|r| r.link_error.push(U::SPEC.name.to_string()))
    }

    /// Start after `delay` (replaces [`at`](Self::at)).
    pub fn delay(self, delay: Duration) -> Self {
        self.with(|r| {
            r.delay = Some(delay);
            r.run_at = None;
        })
    }

    /// Start at `at` (replaces [`delay`](Self::delay)).
    pub fn at(self, at: DateTime<Utc>) -> Self {
        self.with(|r| {
            r.run_at = Some(at);
            r.delay = None;
        })
    }

    /// 1 (lowest) to 10 (highest); checked when the run is scheduled.
    pub fn priority(self, priority: u8) -> Self {
        self.with(|r| r.priority = Some(i64::from(priority)))
    }

    /// The same key and input give back the same run; the same key with another input is an
    /// `IdempotencyConflict`.
    pub fn idempotency_key(self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.with(|r| r.idempotency_key = Some(key))
    }

    /// The user that owns the run.
    pub fn owner(self, user: impl Into<String>) -> Self {
        let user = user.into();
        self.with(|r| r.owner = Some(user))
    }

    /// Free-form JSON kept with the run.
    pub fn metadata(self, metadata: serde_json::Value) -> Self {
        self.with(|r| r.metadata = Some(metadata))
    }

    /// Overrides the task's retries for this run.
    pub fn retries(self, retries: u32) -> Self {
        self.with(|r| r.retries = Some(i64::from(retries)))
    }

    /// Overrides the task's timeout for this run.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|r| r.timeout = Some(timeout))
    }

    /// Schedules the run inside the application's own sqlx transaction `tx`, on the lite-mode
    /// engine's database: the run exists if and only if `tx` commits, and workers are woken once
    /// it has (see [`AppTransaction`](crate::AppTransaction)). Refused for a client in server
    /// mode, a transaction on another database, and a task whose concurrency strategy cancels
    /// runs.
    pub async fn in_transaction(
        self,
        tx: &mut impl crate::AppTransaction,
    ) -> Result<RunHandle<T::Output>> {
        let mut req = self.req?;
        task_expiry::<T>(&mut req, self.client.now());
        req.act_as(self.client.user())?;
        let engine = self.client.inner.engine.as_ref().ok_or_else(|| {
            Error::invalid_input(
                "transaction",
                "runs are enqueued in the application's transaction by a lite-mode client (the \
                 engine embedded in this process); this client is in server mode",
            )
        })?;
        #[cfg(feature = "lite")]
        let tenant = owlclaw_engine::LITE_TENANT;
        #[cfg(not(feature = "lite"))]
        let tenant = "";
        let mut done = tx.schedule_in(engine, tenant, vec![req]).await?;
        let s = done.remove(0);
        Ok(RunHandle::new(self.client, s.run.id, s.created))
    }

    /// Schedules the run and waits for its typed output.
    pub async fn wait(self) -> Result<T::Output> {
        self.await?.result().await
    }

    async fn send(self) -> Result<RunHandle<T::Output>> {
        let mut req = self.req?;
        task_expiry::<T>(&mut req, self.client.now());
        req.act_as(self.client.user())?;
        #[cfg(feature = "otel")]
        let span = crate::otel::enqueue_span(std::slice::from_mut(&mut req));
        let sent = self.client.inner.orch.schedule(req);
        #[cfg(feature = "otel")]
        let sent = crate::otel::enqueue(span, sent);
        let s = sent.await?;
        Ok(RunHandle::new(self.client, s.run.id, s.created))
    }

    /// Like awaiting it, but sent again while the engine can't be reached (or is restarting):
    /// only for requests with an idempotency key, which the engine schedules once.
    pub(crate) async fn send_resending(self) -> Result<RunHandle<T::Output>> {
        let mut req = self.req?;
        debug_assert!(req.idempotency_key.is_some());
        task_expiry::<T>(&mut req, self.client.now());
        req.act_as(self.client.user())?;
        #[cfg(feature = "otel")]
        let span = crate::otel::enqueue_span(std::slice::from_mut(&mut req));
        let orch = &self.client.inner.orch;
        let sent = retry_transient("scheduling a run", None, || orch.schedule(req.clone()));
        #[cfg(feature = "otel")]
        let sent = crate::otel::enqueue(span, sent);
        let s = sent.await?;
        Ok(RunHandle::new(self.client, s.run.id, s.created))
    }
}

impl<T: Task> IntoFuture for ScheduleBuilder<T> {
    type Output = Result<RunHandle<T::Output>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A scheduled run, with the output type of its task.
pub struct RunHandle<O> {
    client: Client,
    id: RunId,
    created: bool,
    _output: PhantomData<fn() -> O>,
}

impl<O> Clone for RunHandle<O> {
    fn clone(&self) -> Self {
        RunHandle {
            client: self.client.clone(),
            id: self.id,
            created: self.created,
            _output: PhantomData,
        }
    }
}

impl<O> fmt::Debug for RunHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish()
    }
}

impl<O: DeserializeOwned> RunHandle<O> {
    /// A handle on run `id` of a task with output `O`.
    pub fn new(client: Client, id: RunId, created: bool) -> RunHandle<O> {
        RunHandle {
            client,
            id,
            created,
            _output: PhantomData,
        }
    }

    /// The run's id.
    pub fn id(&self) -> RunId {
        self.id
    }

    /// False when scheduling returned an existing run (same idempotency key).
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Its current status.
    pub async fn status(&self) -> Result<RunStatus> {
        Ok(self.snapshot().await?.status)
    }

    /// Its snapshot.
    pub async fn snapshot(&self) -> Result<RunSnapshot> {
        self.client.status(self.id).await
    }

    /// Its transition log.
    pub async fn events(&self) -> Result<Vec<RunEvent>> {
        self.client.events(self.id).await
    }

    /// Cancels it.
    pub async fn cancel(&self) -> Result<RunSnapshot> {
        self.client.cancel(self.id).await
    }

    /// Waits until it is terminal and returns its typed output: `Error::Task` with the last
    /// error if it failed, `Error::Cancelled` if it was cancelled.
    pub async fn result(&self) -> Result<O> {
        loop {
            let run = self.client.wait(self.id, Duration::from_secs(3600)).await?;
            if run.status.is_terminal() {
                return output_of(run);
            }
        }
    }

    /// Like [`result`](Self::result), but gives up with `Error::Timeout` after `timeout`.
    pub async fn result_timeout(&self, timeout: Duration) -> Result<O> {
        let run = self.client.wait(self.id, timeout).await?;
        if !run.status.is_terminal() {
            return Err(Error::Timeout(format!(
                "run {} is still {} after {}",
                self.id,
                run.status,
                owlclaw_core::duration::format_duration(timeout)
            )));
        }
        output_of(run)
    }
}

fn output_of<O: DeserializeOwned>(run: RunSnapshot) -> Result<O> {
    match run.status {
        RunStatus::Succeeded => {
            let output = run.output.unwrap_or(serde_json::Value::Null);
            if let Some(bytes) = owlclaw_core::limits::truncated_bytes(&output) {
                return Err(Error::OutputTruncated {
                    run_id: run.id,
                    bytes,
                });
            }
            serde_json::from_value(output).map_err(|e| {
                Error::Internal(format!(
                    "the output of run {} does not match the task's output type: {e}",
                    run.id
                ))
            })
        }
        RunStatus::Cancelled => Err(Error::Cancelled { run_id: run.id }),
        _ => Err(Error::Task {
            run_id: run.id,
            message: run.error.unwrap_or_else(|| "failed".into()),
        }),
    }
}
