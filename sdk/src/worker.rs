//! The worker: claims runs of the tasks it serves, executes them with a bounded number of slots,
//! reports results in batches, renews leases, and shuts down gracefully.
//!
//! Two loops share the slots (a semaphore):
//! - the *poller* holds the free slots in a long poll, so an idle worker starts new work as soon as
//!   it is scheduled (no poll interval);
//! - the *reporter* sends finished runs as soon as they finish, batched, and in the same round trip
//!   claims work for the slots they freed; every heartbeat it also renews the leases of the runs in
//!   flight and learns which of them to stop (cancelled, or lost).

use crate::context::Durable;
use crate::task::__private::{registered, InvokeFn};
use crate::{Client, Context};
use owlclaw_core::wire::{
    Assignment, Completion, ExchangeRequest, ExchangeResponse, Outcome, WorkerRegistration,
};
use owlclaw_core::{Error, Orchestrator, Result, RunId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long the poller's long poll lasts before it is renewed.
const POLL_WAIT: Duration = Duration::from_secs(10);

/// Builds a [`Worker`]; from [`Client::worker`].
#[must_use = "call .start().await to start the worker"]
#[derive(Debug)]
pub struct WorkerBuilder {
    client: Client,
    name: Option<String>,
    slots: Option<u32>,
    heartbeat: Option<Duration>,
    shutdown_grace: Option<Duration>,
    cancel_grace: Duration,
    suspend_threshold: Option<Duration>,
    only: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
}

impl WorkerBuilder {
    pub(crate) fn new(client: Client, name: Option<String>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            name,
            slots: None,
            heartbeat: None,
            shutdown_grace: None,
            cancel_grace: Duration::from_secs(5),
            suspend_threshold: None,
            only: None,
            labels: BTreeMap::new(),
        }
    }

    /// How many runs it executes at once (default: `worker.slots` of the config, 10).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = Some(slots);
        self
    }

    /// How often it renews its leases and checks for cancellations (default: `worker.heartbeat`,
    /// 1 s). Must be under half the engine's lease.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// How long a graceful shutdown lets in-flight runs finish before handing them back (default:
    /// `worker.shutdown_grace`, 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// How long a cancelled run's task may keep running after `ctx.cancelled()` fires before its
    /// future is dropped (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Durable sleeps longer than this suspend their run and give the slot back (the engine
    /// re-dispatches the run at its wake-up time); shorter ones sleep in place. Default:
    /// `worker.suspend_threshold` of the config, 30 s.
    pub fn suspend_threshold(mut self, threshold: Duration) -> Self {
        self.suspend_threshold = Some(threshold);
        self
    }

    /// Serve only this task (call again to add more); by default a worker serves every `#[task]`
    /// in the binary.
    pub fn task<T: crate::Task>(self) -> Self {
        self.task_named(T::SPEC.name)
    }

    /// Serve only the task with this name (as written in `#[task]`, without namespace).
    pub fn task_named(mut self, name: impl Into<String>) -> Self {
        self.only.get_or_insert_with(Vec::new).push(name.into());
        self
    }

    /// A free-form label, shown when listing workers.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Registers the worker and starts executing runs.
    pub async fn start(self) -> Result<Worker> {
        let cfg = self.client.config().worker.clone();
        let slots = self.slots.unwrap_or(cfg.slots);
        if slots == 0 {
            return Err(Error::config(
                "worker.slots",
                "0: a worker needs at least one slot",
            ));
        }
        let heartbeat = self.heartbeat.unwrap_or(cfg.heartbeat);
        if heartbeat.is_zero() {
            return Err(Error::config(
                "worker.heartbeat",
                "0s: must be greater than zero",
            ));
        }
        let namespace = self.client.config().namespace.clone();
        let mut registry: HashMap<String, InvokeFn> = HashMap::new();
        let mut defs = Vec::new();
        for reg in registered() {
            if self
                .only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|n| n == reg.spec.name))
            {
                continue;
            }
            let def = reg.spec.to_def(namespace.as_deref());
            if registry.insert(def.name.clone(), reg.invoke).is_some() {
                return Err(Error::config(
                    "tasks",
                    format!(
                        "two #[task] functions are named {:?}; task names must be unique",
                        def.name
                    ),
                ));
            }
            defs.push(def);
        }
        if let Some(only) = &self.only {
            if let Some(missing) = only
                .iter()
                .find(|n| !registered().any(|r| r.spec.name == n.as_str()))
            {
                return Err(Error::config(
                    "tasks",
                    format!("{missing:?} is not a #[task] in this binary"),
                ));
            }
        }
        if defs.is_empty() {
            return Err(Error::config(
                "tasks",
                "no #[task] functions to serve in this binary",
            ));
        }
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(generated_name);
        let orch = self.client.orchestrator().clone();
        let task_names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        let registration = WorkerRegistration {
            name: name.clone(),
            tasks: defs,
            slots,
            labels: self.labels,
        };
        let session = orch.register_worker(registration.clone()).await?;
        if heartbeat.as_millis() as u64 * 2 >= session.lease_ms {
            let _ = orch.deregister_worker(&session.worker_id).await;
            return Err(Error::config(
                "worker.heartbeat",
                format!(
                    "{}: must be under half the engine's lease ({} ms) so a live worker never loses its runs",
                    owlclaw_core::duration::format_duration(heartbeat),
                    session.lease_ms
                ),
            ));
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            orch,
            worker_id: Arc::new(Mutex::new(session.worker_id.clone())),
            suspend_threshold: self.suspend_threshold.unwrap_or(cfg.suspend_threshold),
            registration,
            reregister: tokio::sync::Mutex::new(()),
            name: name.clone(),
            registry,
            sem: Arc::new(Semaphore::new(slots as usize)),
            running: Mutex::new(HashMap::new()),
            done_tx,
            idle: Notify::new(),
            cancel_grace: self.cancel_grace,
            kill: CancellationToken::new(),
        });
        let stop = CancellationToken::new();
        let finish = CancellationToken::new();
        let poller = tokio::spawn(poller(shared.clone(), stop.clone()));
        let reporter = tokio::spawn(reporter(
            shared.clone(),
            done_rx,
            heartbeat,
            stop.clone(),
            finish.clone(),
        ));
        let grace = self.shutdown_grace.unwrap_or(cfg.shutdown_grace);
        let supervisor = tokio::spawn(supervise(
            shared,
            stop.clone(),
            finish,
            poller,
            reporter,
            grace,
        ));
        tracing::info!(worker = %name, worker_id = %session.worker_id, slots, tasks = ?task_names, "worker started");
        Ok(Worker {
            id: session.worker_id,
            name,
            stop,
            supervisor,
        })
    }
}

fn generated_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand_u16())
}

fn fastrand_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
}

/// A running worker. Dropping the handle leaves it running; call [`shutdown`](Worker::shutdown)
/// or [`shutdown_on_signal`](Worker::shutdown_on_signal) to stop it gracefully.
pub struct Worker {
    id: String,
    name: String,
    stop: CancellationToken,
    supervisor: JoinHandle<Result<()>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Worker {
    /// The id the engine gave it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A token that starts the graceful shutdown when cancelled (e.g. from your own signal
    /// handling).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Graceful shutdown: stop claiming, let in-flight runs finish within the grace period,
    /// cancel and hand back the rest (re-queued at once, not counted as an attempt), deregister.
    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        self.supervisor
            .await
            .map_err(|e| Error::Internal(format!("worker supervisor: {e}")))?
    }

    /// Waits for SIGINT (Ctrl-C) or SIGTERM, or for [`shutdown_token`](Worker::shutdown_token)
    /// to be cancelled, then shuts down gracefully.
    pub async fn shutdown_on_signal(self) -> Result<()> {
        tokio::select! {
            _ = shutdown_signal() => tracing::info!(worker = %self.name, "signal received; shutting down"),
            _ = self.stop.cancelled() => {}
        }
        self.shutdown().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A finished attempt on its way to the reporter, with the slot it occupied: the reporter claims
/// new work for that slot in the same round trip that reports the result.
struct Done {
    completion: Completion,
    slot: Option<OwnedSemaphorePermit>,
}

fn merge_slots(
    a: Option<OwnedSemaphorePermit>,
    b: Option<OwnedSemaphorePermit>,
) -> Option<OwnedSemaphorePermit> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.merge(b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

struct RunEntry {
    cancel: CancellationToken,
}

struct Shared {
    client: Client,
    orch: Arc<dyn Orchestrator>,
    worker_id: Arc<Mutex<String>>,
    suspend_threshold: Duration,
    registration: WorkerRegistration,
    reregister: tokio::sync::Mutex<()>,
    name: String,
    registry: HashMap<String, InvokeFn>,
    sem: Arc<Semaphore>,
    running: Mutex<HashMap<RunId, RunEntry>>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// A run finished.
    idle: Notify,
    cancel_grace: Duration,
    /// End of the shutdown grace: stop what still runs and hand it back.
    kill: CancellationToken,
}

impl Shared {
    fn worker_id(&self) -> String {
        self.worker_id.lock().unwrap().clone()
    }

    /// One exchange; when the engine no longer knows this worker (its state was reset), registers
    /// again and reports the error so the caller retries.
    async fn exchange(&self, req: ExchangeRequest) -> Result<ExchangeResponse> {
        let id = self.worker_id();
        let result = self.orch.exchange(&id, req).await;
        if let Err(Error::NotFound { what: "worker", .. }) = &result {
            let _guard = self.reregister.lock().await;
            if self.worker_id() == id {
                tracing::warn!(worker = %self.name, "the engine does not know this worker any more; registering again");
                let session = self.orch.register_worker(self.registration.clone()).await?;
                *self.worker_id.lock().unwrap() = session.worker_id;
            }
        }
        result
    }

    /// Reports completions one per exchange. A completion the engine refuses on its own is
    /// reported instead as a failure that says so (not retried: its result can't be stored);
    /// if even that is refused, it is dropped (its lease expires). Returns the completions to
    /// report again later (the engine could not be reached).
    async fn report_singly(&self, completions: Vec<Completion>) -> Vec<Completion> {
        let mut again = Vec::new();
        for c in completions {
            let one = |c: Completion| ExchangeRequest {
                completions: vec![c],
                ..ExchangeRequest::default()
            };
            match self.exchange(one(c.clone())).await {
                Ok(_) => {}
                Err(refused @ Error::InvalidInput { .. }) => {
                    tracing::error!(run_id = %c.run_id, error = %refused, "the engine refused this run's report; reporting it as failed");
                    let failed = Completion {
                        outcome: Outcome::Failed {
                            error: format!(
                                "the engine refused the report of this attempt, so its result could not be stored: {refused}"
                            ),
                            retryable: false,
                        },
                        ..c
                    };
                    let run_id = failed.run_id;
                    match self.exchange(one(failed.clone())).await {
                        Ok(_) => {}
                        Err(e @ Error::InvalidInput { .. }) => {
                            tracing::error!(%run_id, error = %e, "the engine refused the failure report too; the run's lease will expire")
                        }
                        Err(_) => again.push(failed),
                    }
                }
                Err(_) => again.push(c),
            }
        }
        again
    }

    fn take_free_slots(&self) -> Option<OwnedSemaphorePermit> {
        let n = self.sem.available_permits();
        if n == 0 {
            return None;
        }
        self.sem.clone().try_acquire_many_owned(n as u32).ok()
    }

    fn handle(self: &Arc<Self>, resp: ExchangeResponse, mut permits: Option<OwnedSemaphorePermit>) {
        for id in resp.cancellations {
            if let Some(entry) = self.running.lock().unwrap().get(&id) {
                tracing::info!(run_id = %id, "run cancelled by the engine; stopping it");
                entry.cancel.cancel();
            }
        }
        for a in resp.assignments {
            let permit = permits.as_mut().and_then(|p| {
                if p.num_permits() > 1 {
                    p.split(1)
                } else {
                    None
                }
            });
            let permit = permit.or_else(|| permits.take());
            match permit {
                Some(p) => self.spawn_run(a, p),
                None => {
                    // More runs than slots asked for: never expected; give it back.
                    let completion = Completion {
                        run_id: a.run_id,
                        attempt: a.attempt,
                        outcome: Outcome::HandedBack,
                    };
                    let _ = self.done_tx.send(Done {
                        completion,
                        slot: None,
                    });
                }
            }
        }
    }

    fn spawn_run(self: &Arc<Self>, a: Assignment, permit: OwnedSemaphorePermit) {
        let shared = self.clone();
        let Some(invoke) = self.registry.get(&a.task).copied() else {
            let completion = Completion {
                run_id: a.run_id,
                attempt: a.attempt,
                outcome: Outcome::Failed {
                    error: format!("worker {} does not serve task {:?}", self.name, a.task),
                    retryable: true,
                },
            };
            let _ = self.done_tx.send(Done {
                completion,
                slot: Some(permit),
            });
            return;
        };
        let cancel = CancellationToken::new();
        self.running.lock().unwrap().insert(
            a.run_id,
            RunEntry {
                cancel: cancel.clone(),
            },
        );
        let (suspend_tx, suspend_rx) = tokio::sync::oneshot::channel();
        let ctx = Context::new(
            self.client.clone(),
            a.run_id,
            a.task.clone(),
            a.attempt,
            a.max_attempts,
            a.parent_id,
            cancel.clone(),
            Some(Durable::new(
                self.worker_id.clone(),
                self.suspend_threshold,
                suspend_tx,
            )),
        );
        let watch = ctx.clone();
        let span =
            tracing::info_span!("run", task = %a.task, run_id = %a.run_id, attempt = a.attempt);
        tokio::spawn(
            async move {
                tracing::info!(max_attempts = a.max_attempts, "run started");
                let started = Instant::now();
                let mut user = tokio::spawn(invoke(ctx, a.input).in_current_span());
                let abort = user.abort_handle();
                let cancelled_past_grace = async {
                    cancel.cancelled().await;
                    tokio::time::sleep(shared.cancel_grace).await;
                };
                let outcome = tokio::select! {
                    r = &mut user => match r {
                        Ok(Ok(output)) => Outcome::Succeeded { output },
                        Ok(Err(f)) => Outcome::Failed {
                            error: f.message,
                            // A run that took another path than before is not retried.
                            retryable: f.retryable && !watch.is_non_deterministic(),
                        },
                        Err(e) if e.is_panic() => Outcome::Failed {
                            error: format!("the task panicked: {}", panic_message(e.into_panic())),
                            retryable: true,
                        },
                        Err(_) => Outcome::Cancelled,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(a.timeout_ms)) => {
                        abort.abort();
                        Outcome::TimedOut
                    }
                    _ = cancelled_past_grace => {
                        abort.abort();
                        Outcome::Cancelled
                    }
                    _ = shared.kill.cancelled() => {
                        cancel.cancel();
                        abort.abort();
                        Outcome::HandedBack
                    }
                    Ok(until) = suspend_rx => {
                        // A long durable sleep: give the slot back until `until`.
                        abort.abort();
                        Outcome::Suspended { until }
                    }
                };
                let outcome = match outcome {
                    // Whatever a cancelled task returned, it stopped because it was cancelled.
                    Outcome::Failed { .. } | Outcome::TimedOut if cancel.is_cancelled() => {
                        Outcome::Cancelled
                    }
                    // The engine's own limits, applied before sending: an oversized output is
                    // stored truncated, and never makes the report larger than the server takes.
                    Outcome::Succeeded { output } => Outcome::Succeeded {
                        output: owlclaw_core::limits::bound_output(output),
                    },
                    Outcome::Failed { error, retryable } => Outcome::Failed {
                        error: owlclaw_core::limits::bound_error(&error),
                        retryable,
                    },
                    o => o,
                };
                log_outcome(&outcome, a.attempt, a.max_attempts, started.elapsed());
                shared.running.lock().unwrap().remove(&a.run_id);
                let completion = Completion {
                    run_id: a.run_id,
                    attempt: a.attempt,
                    outcome,
                };
                let _ = shared.done_tx.send(Done {
                    completion,
                    slot: Some(permit),
                });
                shared.idle.notify_waiters();
            }
            .instrument(span),
        );
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

fn log_outcome(outcome: &Outcome, attempt: u32, max_attempts: u32, took: Duration) {
    let ms = took.as_millis() as u64;
    match outcome {
        Outcome::Succeeded { .. } => tracing::info!(duration_ms = ms, "run succeeded"),
        Outcome::Failed { error, retryable } if *retryable && attempt < max_attempts => {
            tracing::warn!(duration_ms = ms, %error, attempt, max_attempts, "run attempt failed; will retry")
        }
        Outcome::Failed { error, .. } => {
            tracing::error!(duration_ms = ms, %error, attempt, max_attempts, "run failed; no attempt left")
        }
        Outcome::TimedOut if attempt < max_attempts => {
            tracing::warn!(
                duration_ms = ms,
                attempt,
                max_attempts,
                "run attempt timed out; will retry"
            )
        }
        Outcome::TimedOut => tracing::error!(
            duration_ms = ms,
            attempt,
            max_attempts,
            "run timed out; no attempt left"
        ),
        Outcome::Cancelled => tracing::info!(duration_ms = ms, "run stopped after cancellation"),
        Outcome::HandedBack => tracing::info!(duration_ms = ms, "run handed back at shutdown"),
        Outcome::Suspended { until } => {
            tracing::info!(duration_ms = ms, until = %until, "run suspended by a durable sleep")
        }
    }
}

/// Holds the free slots in a long poll, so new work starts as soon as it is ready.
async fn poller(shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let first = tokio::select! {
            p = shared.sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let mut permits = first;
        if let Some(more) = shared.take_free_slots() {
            permits.merge(more);
        }
        let req = ExchangeRequest {
            want: permits.num_permits() as u32,
            wait_ms: POLL_WAIT.as_millis() as u64,
            ..ExchangeRequest::default()
        };
        let resp = tokio::select! {
            r = shared.exchange(req) => r,
            _ = stop.cancelled() => return,
        };
        match resp {
            Ok(resp) => {
                backoff = Duration::from_millis(100);
                shared.handle(resp, Some(permits));
            }
            Err(e) => {
                drop(permits);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "polling the engine failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Reports finished runs in batches, claims for the slots they freed in the same round trip, and
/// heartbeats.
async fn reporter(
    shared: Arc<Shared>,
    mut done: mpsc::UnboundedReceiver<Done>,
    heartbeat: Duration,
    stop_claiming: CancellationToken,
    finish: CancellationToken,
) {
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Completion> = Vec::new();
    // Slots freed by the pending completions: new work for them is claimed in the same round trip.
    let mut freed: Option<OwnedSemaphorePermit> = None;
    let mut failures = 0u32;
    loop {
        let mut beat = false;
        let finishing = tokio::select! {
            d = done.recv() => {
                if let Some(d) = d {
                    pending.push(d.completion);
                    freed = merge_slots(freed.take(), d.slot);
                }
                false
            }
            _ = tick.tick() => { beat = true; false }
            _ = finish.cancelled() => true,
        };
        while let Ok(d) = done.try_recv() {
            pending.push(d.completion);
            freed = merge_slots(freed.take(), d.slot);
        }
        if finishing {
            drop(freed.take());
            // Final flush, a few tries.
            for attempt in 0..5 {
                if pending.is_empty() {
                    break;
                }
                let req = ExchangeRequest {
                    completions: pending.clone(),
                    ..ExchangeRequest::default()
                };
                match shared.exchange(req).await {
                    Ok(_) => pending.clear(),
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "reporting final results failed");
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                }
            }
            return;
        }
        let permits = if stop_claiming.is_cancelled() {
            drop(freed.take());
            None
        } else {
            merge_slots(freed.take(), shared.take_free_slots())
        };
        let held: Vec<RunId> = if beat {
            shared.running.lock().unwrap().keys().copied().collect()
        } else {
            Vec::new()
        };
        let req = ExchangeRequest {
            completions: std::mem::take(&mut pending),
            held,
            want: permits.as_ref().map_or(0, |p| p.num_permits() as u32),
            wait_ms: 0,
            heartbeat: beat,
            request_id: None,
        };
        let sent = req.completions.clone();
        match shared.exchange(req).await {
            Ok(resp) => {
                failures = 0;
                shared.handle(resp, permits);
            }
            Err(e @ Error::InvalidInput { .. }) if !sent.is_empty() => {
                // The engine refused the report itself: sending it again would be refused again
                // and hold back every result behind it. Report them one by one instead.
                drop(permits);
                tracing::warn!(error = %e, runs = sent.len(), "the engine refused a report; reporting its runs one by one");
                pending = shared.report_singly(sent).await;
            }
            Err(e) => {
                drop(permits);
                pending = sent; // report them again: stale completions are ignored by the engine
                failures += 1;
                tracing::warn!(error = %e, failures, "reporting to the engine failed; will retry");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(50)))).await;
            }
        }
    }
}

async fn supervise(
    shared: Arc<Shared>,
    stop: CancellationToken,
    finish: CancellationToken,
    poller: JoinHandle<()>,
    reporter: JoinHandle<()>,
    grace: Duration,
) -> Result<()> {
    stop.cancelled().await;
    tracing::info!(worker = %shared.name, "shutting down: no new runs will be claimed");
    let _ = poller.await;
    let deadline = Instant::now() + grace;
    loop {
        let notified = shared.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.running.lock().unwrap().is_empty() {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let left = shared.running.lock().unwrap().len();
    if left > 0 {
        tracing::warn!(worker = %shared.name, runs = left, "grace period over; handing back unfinished runs");
        shared.kill.cancel();
        let until = Instant::now() + Duration::from_secs(5);
        while !shared.running.lock().unwrap().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    finish.cancel();
    let _ = reporter.await;
    shared.orch.deregister_worker(&shared.worker_id()).await?;
    tracing::info!(worker = %shared.name, "worker stopped");
    Ok(())
}
