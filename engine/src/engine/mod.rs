//! The engine: one [`Engine`] per process, split by concern into runs, crons, workers, tokens,
//! metrics, the maintenance loop and the lite-mode [`Embedded`] orchestrator.

mod crons;
mod embedded;
mod events;
mod links;
mod maintenance;
mod metrics;
mod overview;
mod ratelimits;
mod runs;
mod tokens;
#[cfg(any(feature = "sqlx-sqlite", feature = "postgres"))]
mod tx;
mod workers;
mod workflows;

pub use embedded::Embedded;

use crate::store::{self, Store, WorkerRecord};
use owlclaw_core::task::TaskDef;
use owlclaw_core::Result;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The tenant of lite mode (one process, no API tokens).
pub const LITE_TENANT: &str = "default";

/// The longest long poll an exchange may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most slots a worker may register with (and most runs one exchange may ask for).
pub const MAX_SLOTS: u32 = 10_000;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `sqlite://path`, `sqlite::memory:`.
    pub database_url: String,
    /// How long a claimed run stays leased to its worker without a heartbeat.
    pub lease: Duration,
    /// Fallback polling interval: how soon work scheduled by *another* process sharing the
    /// database is noticed (work scheduled through this engine wakes waiters at once).
    pub poll_interval: Duration,
    /// Most timers or expired leases handled per maintenance transaction.
    pub maintenance_batch: u32,
    /// How long finished runs (with their events and steps) are kept before the engine purges
    /// them.
    pub retention: Duration,
    /// How long an idempotency key stays bound to its run after the run finished; a later
    /// schedule with the same key then replaces that run.
    pub idempotency_ttl: Duration,
    /// The time the engine goes by: the system's, or a test's (`owlclaw::testing`).
    pub clock: owlclaw_core::clock::Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            database_url: "sqlite://.owlclaw/owlclaw.db".into(),
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_millis(500),
            maintenance_batch: 1000,
            retention: Duration::from_secs(7 * 86_400),
            idempotency_ttl: Duration::from_secs(86_400),
            clock: owlclaw_core::clock::Clock::system(),
        }
    }
}

/// The orchestrator: schedules runs, hands them to workers, applies their results, fires timers,
/// expired leases and crons. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    cfg: EngineConfig,
    /// New queued work: wakes long-polling workers.
    work: Notify,
    /// Some runs changed state: wakes `wait_run`.
    finished: Notify,
    /// A timer or cron may now be earlier than the maintenance loop's wake-up.
    wake_maintenance: Notify,
    /// Passes of the maintenance loop so far (a test clock waits for one after moving).
    maintenance_passes: std::sync::atomic::AtomicU64,
    crons_changed: AtomicBool,
    /// Workflow runs may need advancing: the workflow loop also wakes as runs finish.
    workflows_active: AtomicBool,
    /// A workflow run was created or retried here: wakes the workflow loop.
    wake_workflows: Notify,
    workers: Mutex<HashMap<String, WorkerRecord>>,
    tasks: Mutex<HashMap<(String, String), TaskDef>>,
    /// Valid API tokens' hashes, with their tenant and when they were read from the store.
    tokens: Mutex<HashMap<String, (String, std::time::Instant)>>,
    shutdown: CancellationToken,
    /// The loops that use the store (maintenance, workflows): shutdown waits for them to end
    /// before it closes the store.
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    metrics: metrics::Metrics,
    /// Runs finished per settled minute, per tenant (the overview's history).
    minutes: overview::MinuteCache,
}

impl Engine {
    /// Opens the store named by `cfg.database_url`, migrates it and starts the background loop
    /// (timers, leases, crons).
    pub async fn start(cfg: EngineConfig) -> Result<Engine> {
        let store = store::open(&cfg.database_url).await?;
        Ok(Engine::with_store(store, cfg))
    }

    /// Starts an engine over an already opened store.
    pub fn with_store(store: Arc<dyn Store>, cfg: EngineConfig) -> Engine {
        let inner = Arc::new(Inner {
            store,
            cfg,
            work: Notify::new(),
            finished: Notify::new(),
            wake_maintenance: Notify::new(),
            maintenance_passes: std::sync::atomic::AtomicU64::new(0),
            crons_changed: AtomicBool::new(true),
            workflows_active: AtomicBool::new(true),
            wake_workflows: Notify::new(),
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            loops: Mutex::new(Vec::new()),
            metrics: metrics::Metrics::default(),
            minutes: Default::default(),
        });
        *inner.loops.lock().unwrap() = vec![
            tokio::spawn(maintenance::maintenance_loop(inner.clone())),
            tokio::spawn(workflows::workflow_loop(inner.clone())),
        ];
        tokio::spawn(relay_wakes(inner.clone()));
        Engine { inner }
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The time now, by the engine's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.cfg.clock.now()
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// An [`Orchestrator`](owlclaw_core::Orchestrator) for one tenant, over this engine.
    pub fn embedded(&self, tenant: &str) -> Embedded {
        Embedded {
            engine: self.clone(),
            tenant: tenant.to_string(),
        }
    }

    /// A token that, once cancelled, ends every long poll at once (first step of a shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<()> {
        self.inner.store.ping().await
    }

    /// Stops the background loops and closes the store once they have ended.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let loops = std::mem::take(&mut *self.inner.loops.lock().unwrap());
        for h in loops {
            let _ = h.await;
        }
        self.inner.store.close().await;
    }
}

/// Turns the store's wake-ups (changes made by other engines) into this engine's notifications.
async fn relay_wakes(inner: Arc<Inner>) {
    let mut rx = match inner.store.subscribe().await {
        Ok(Some(rx)) => rx,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "no wake-ups from the store; relying on polling");
            return;
        }
    };
    loop {
        let wake = tokio::select! {
            w = rx.recv() => match w { Some(w) => w, None => return },
            _ = inner.shutdown.cancelled() => return,
        };
        match wake {
            crate::store::Wake::Work => inner.work.notify_waiters(),
            crate::store::Wake::Timers => inner.wake_maintenance.notify_one(),
            crate::store::Wake::Crons => {
                inner.crons_changed.store(true, Ordering::SeqCst);
                inner.wake_maintenance.notify_one()
            }
            crate::store::Wake::Finished => inner.finished.notify_waiters(),
        }
    }
}
