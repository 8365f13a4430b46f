//! The worker: claims runs of the tasks it serves, executes them with a bounded number of slots,
//! reports results in batches, renews leases, and shuts down gracefully.
//!
//! - `mod.rs`: the [`WorkerBuilder`] and the [`Worker`] handle;
//! - `runtime.rs`: the worker's one loop, which owns the runs in flight and talks to the engine;
//! - `link.rs`: the worker's identity at the engine and its exchange;
//! - `run.rs`: one attempt of one run, from its assignment to its outcome.

mod link;
mod run;
mod runtime;

use crate::backoff::retry_transient;
use crate::config::MAX_SLOTS;
use crate::registry::registered;
use crate::Client;
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::wire::WorkerRegistration;
use owlclaw_core::{Error, Result};
use runtime::{Runtime, Settings};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

impl Client {
    /// Starts building a worker that serves every `#[task]` in this binary (or a chosen subset).
    pub fn worker(&self, name: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder::new(self.clone(), Some(name.into()))
    }

    /// A worker with a generated name (`host-pid-xxxx`).
    pub fn default_worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone(), None)
    }
}

/// Runs claimed ahead per slot, at most, by default.
const DEFAULT_PREFETCH_PER_SLOT: u32 = 8;

/// Retries of a registration that could not reach the engine.
const REGISTER_RETRIES: usize = 5;

/// Builds a [`Worker`]; from [`Client::worker`].
#[must_use = "call .start().await to start the worker"]
#[derive(Debug)]
pub struct WorkerBuilder {
    client: Client,
    name: Option<String>,
    slots: Option<u32>,
    prefetch: Option<u32>,
    heartbeat: Option<Duration>,
    shutdown_grace: Option<Duration>,
    cancel_grace: Duration,
    suspend_threshold: Option<Duration>,
    only: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
    rate_limits: Vec<RateLimit>,
    /// Workflows named with [`WorkerBuilder::workflow`].
    workflows: Vec<String>,
}

impl WorkerBuilder {
    fn new(client: Client, name: Option<String>) -> WorkerBuilder {
        WorkerBuilder {
            client,
            name,
            slots: None,
            prefetch: None,
            heartbeat: None,
            shutdown_grace: None,
            cancel_grace: Duration::from_secs(5),
            suspend_threshold: None,
            only: None,
            labels: BTreeMap::new(),
            rate_limits: Vec::new(),
            workflows: Vec::new(),
        }
    }

    /// How many runs it executes at once (default: `worker.slots` of the config, 10).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = Some(slots);
        self
    }

    /// The most runs it may claim ahead of its free slots, so that the next run starts the moment
    /// a slot frees instead of after a round trip to the engine. It claims ahead only what its
    /// slots will start within 20 ms at the average duration of its recent runs: many runs of a
    /// millisecond, none of a second or more. Default: 8 per slot; 0 turns claiming ahead off.
    /// Runs claimed ahead are leased to the worker, renewed with its heartbeats, handed back at
    /// shutdown, and their timeout's deadline at the engine counts from their claim. See the
    /// README's "Choices".
    pub fn prefetch(mut self, runs: u32) -> Self {
        self.prefetch = Some(runs);
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

    /// Define this `#[workflow]` and serve its tasks. By default a worker defines every
    /// `#[workflow]` of the binary; once `task` or `workflow` narrowed what it serves, only
    /// those given.
    pub fn workflow<W: crate::Task>(mut self) -> Self {
        self.workflows.push(W::SPEC.name.to_string());
        if let Some(reg) =
            crate::registry::registered_workflows().find(|w| w.spec.name == W::SPEC.name)
        {
            for t in reg.tasks.iter().chain(reg.on_failure.iter()) {
                self = self.task_named(*t);
            }
        } else {
            // Reported at start: not a #[workflow] of the binary.
            self.only.get_or_insert_with(Vec::new);
        }
        self
    }

    /// A free-form label, shown when listing workers.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Declares a rate limit in code: `limit` units per `per` (see `#[task(rate_limit = ...)]`).
    /// It is set when the worker starts, replacing what `owlclaw ratelimit set` set before, so
    /// the code stays the source of truth; a limit changed by hand holds until the next start.
    pub fn rate_limit(mut self, name: impl Into<String>, limit: u32, per: Duration) -> Self {
        self.rate_limits.push(RateLimit {
            name: name.into(),
            limit,
            per,
        });
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
        // The engine takes at most MAX_SLOTS runs per exchange.
        let prefetch = match self.prefetch {
            Some(n) if slots.saturating_add(n) > MAX_SLOTS => {
                return Err(Error::config(
                    "prefetch",
                    format!(
                        "{n}: slots ({slots}) and runs claimed ahead are at most {MAX_SLOTS} together"
                    ),
                ));
            }
            Some(n) => n,
            None => slots
                .saturating_mul(DEFAULT_PREFETCH_PER_SLOT)
                .min(MAX_SLOTS.saturating_sub(slots)),
        };
        let heartbeat = self.heartbeat.unwrap_or(cfg.heartbeat);
        if heartbeat.is_zero() {
            return Err(Error::config(
                "worker.heartbeat",
                "0s: must be greater than zero",
            ));
        }
        let namespace = self.client.config().namespace.clone();
        let mut registry = HashMap::new();
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
        for limit in &self.rate_limits {
            limit.validate().map_err(|e| match e {
                Error::InvalidInput { field, message } => {
                    Error::config(format!("rate_limit.{field}"), message)
                }
                other => other,
            })?;
        }
        for limit in self.rate_limits {
            retry_transient("setting a rate limit", Some(REGISTER_RETRIES), || {
                orch.set_rate_limit(limit.clone())
            })
            .await?;
        }
        let mut workflows = Vec::new();
        for w in &self.workflows {
            if !crate::registry::registered_workflows().any(|r| r.spec.name == w.as_str()) {
                return Err(Error::config(
                    "workflows",
                    format!("{w:?} is not a #[workflow] in this binary"),
                ));
            }
        }
        for w in crate::registry::registered_workflows() {
            let chosen = self.workflows.iter().any(|n| n == w.spec.name);
            if self.only.is_some() && !chosen {
                continue;
            }
            workflows.push(w.to_def(namespace.as_deref())?);
        }
        let task_names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        let registration = WorkerRegistration {
            name: name.clone(),
            tasks: defs,
            slots,
            labels: self.labels,
            workflows,
        };
        // Sent again only when it did not arrive; a registration that arrived but whose answer
        // was lost leaves a worker that never heartbeats, which the engine drops after a lease.
        let session = retry_transient("registering the worker", Some(REGISTER_RETRIES), || {
            orch.register_worker(registration.clone())
        })
        .await?;
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
        let stop = CancellationToken::new();
        let runtime = Runtime::new(Settings {
            client: self.client.clone(),
            worker_id: session.worker_id.clone(),
            registration,
            registry,
            slots,
            prefetch,
            heartbeat,
            shutdown_grace: self.shutdown_grace.unwrap_or(cfg.shutdown_grace),
            cancel_grace: self.cancel_grace,
            suspend_threshold: self.suspend_threshold.unwrap_or(cfg.suspend_threshold),
            stop: stop.clone(),
        });
        let handle = tokio::spawn(runtime.run());
        tracing::info!(worker = %name, worker_id = %session.worker_id, slots, tasks = ?task_names, "worker started");
        Ok(Worker {
            id: session.worker_id,
            name,
            stop,
            handle,
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
    /// The worker's loop; it ends once the worker has shut down.
    handle: JoinHandle<Result<()>>,
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
        self.handle
            .await
            .map_err(|e| Error::Internal(format!("worker loop: {e}")))?
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
