use crate::limits;
use crate::store::{self, CronRecord, Inserted, NewRun, Store, WorkerRecord};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use owlclaw_core::cron::CronExpr;
use owlclaw_core::task::{self as taskdef, TaskDef};
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Orchestrator, Result, RunId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
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
    crons_changed: AtomicBool,
    workers: Mutex<HashMap<String, WorkerRecord>>,
    tasks: Mutex<HashMap<(String, String), TaskDef>>,
    shutdown: CancellationToken,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Counters,
}

/// Counters exported by `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    scheduled: AtomicU64,
    claimed: AtomicU64,
    succeeded: AtomicU64,
    failed_attempts: AtomicU64,
    timed_out_attempts: AtomicU64,
    handed_back: AtomicU64,
    suspended: AtomicU64,
    lease_expiries: AtomicU64,
    cron_ticks: AtomicU64,
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
            crons_changed: AtomicBool::new(true),
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            maintenance: Mutex::new(None),
            counters: Counters::default(),
        });
        let handle = tokio::spawn(maintenance_loop(inner.clone()));
        *inner.maintenance.lock().unwrap() = Some(handle);
        tokio::spawn(relay_wakes(inner.clone()));
        Engine { inner }
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// An [`Orchestrator`] for one tenant, over this engine.
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

    /// Creates an API token for `tenant`: returns the token (shown once); only its hash is stored.
    pub async fn create_token(&self, tenant: &str) -> Result<String> {
        taskdef::validate_task_name(tenant)
            .map_err(|e| Error::invalid_input("tenant", e.replace("task name", "tenant name")))?;
        let raw = format!(
            "owc_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.inner
            .store
            .create_token(&hash_token(&raw), tenant, Utc::now())
            .await?;
        Ok(raw)
    }

    /// The tenant an API token belongs to, if it is valid.
    pub async fn tenant_for_token(&self, token: &str) -> Result<Option<String>> {
        self.inner.store.token_tenant(&hash_token(token)).await
    }

    /// Prometheus text exposition of the engine's metrics: queue depth by tenant, task and
    /// priority, and counters of what this engine process did since it started.
    pub async fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP owlclaw_queue_depth Runs ready to start.\n# TYPE owlclaw_queue_depth gauge"
        );
        match self.inner.store.queue_depth().await {
            Ok(rows) => {
                for (tenant, task, priority, n) in rows {
                    let _ = writeln!(
                        out,
                        "owlclaw_queue_depth{{tenant=\"{}\",task=\"{}\",priority=\"{priority}\"}} {n}",
                        tenant.replace('"', "'"),
                        task.replace('"', "'")
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue depth for metrics"),
        }
        let c = &self.inner.counters;
        for (name, help, v) in [
            (
                "owlclaw_runs_scheduled_total",
                "Runs scheduled through this engine.",
                &c.scheduled,
            ),
            (
                "owlclaw_runs_claimed_total",
                "Runs handed to workers.",
                &c.claimed,
            ),
            (
                "owlclaw_runs_succeeded_total",
                "Attempts that succeeded.",
                &c.succeeded,
            ),
            (
                "owlclaw_attempts_failed_total",
                "Attempts that failed (retried or not).",
                &c.failed_attempts,
            ),
            (
                "owlclaw_attempts_timed_out_total",
                "Attempts stopped at their timeout.",
                &c.timed_out_attempts,
            ),
            (
                "owlclaw_runs_handed_back_total",
                "Runs handed back by workers shutting down.",
                &c.handed_back,
            ),
            (
                "owlclaw_lease_expiries_total",
                "Leases that expired (worker lost).",
                &c.lease_expiries,
            ),
            (
                "owlclaw_cron_ticks_total",
                "Cron ticks fired by this engine.",
                &c.cron_ticks,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<()> {
        self.inner.store.ping().await
    }

    /// Stops the background loop and closes the store.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let handle = self.inner.maintenance.lock().unwrap().take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.inner.store.close().await;
    }

    // -----------------------------------------------------------------------------------------
    // Runs

    async fn task_def(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        let key = (tenant.to_string(), name.to_string());
        if let Some(d) = self.inner.tasks.lock().unwrap().get(&key) {
            return Ok(Some(d.clone()));
        }
        let def = self.inner.store.get_task(tenant, name).await?;
        if let Some(d) = &def {
            self.inner.tasks.lock().unwrap().insert(key, d.clone());
        }
        Ok(def)
    }

    /// Validates a request and resolves it into a run to insert. Nothing is stored.
    async fn resolve(
        &self,
        tenant: &str,
        req: ScheduleRequest,
        now: DateTime<Utc>,
    ) -> Result<NewRun> {
        taskdef::validate_task_name(&req.task).map_err(|e| Error::invalid_input("task", e))?;
        limits::check_input(&req.input)?;
        limits::check_json("input", &req.input)?;
        if let Some(m) = &req.metadata {
            limits::check_json("metadata", m)?;
        }
        if req.delay.is_some() && req.run_at.is_some() {
            return Err(Error::invalid_input(
                "delay",
                "give either delay or run_at, not both",
            ));
        }
        if let Some(p) = req.priority {
            taskdef::validate_priority(i128::from(p))
                .map_err(|e| Error::invalid_input("priority", e))?;
        }
        if let Some(r) = req.retries {
            taskdef::validate_retries(i128::from(r))
                .map_err(|e| Error::invalid_input("retries", e))?;
        }
        if let Some(t) = req.timeout {
            taskdef::validate_timeout(t).map_err(|e| Error::invalid_input("timeout", e))?;
        }
        if let Some(b) = &req.backoff {
            b.validate()
                .map_err(|e| Error::invalid_input("backoff", e))?;
        }
        for (field, value) in [
            ("idempotency_key", &req.idempotency_key),
            ("owner", &req.owner),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > 255 {
                    return Err(Error::invalid_input(
                        field,
                        format!("{v:?} must be 1 to 255 characters long"),
                    ));
                }
                limits::check_text(field, v)?;
            }
        }
        if let Some(parent) = req.parent_id {
            self.check_parent(tenant, parent, req.owner.as_deref())
                .await?;
        }
        let complete = req.retries.is_some()
            && req.timeout.is_some()
            && req.priority.is_some()
            && req.backoff.is_some();
        let def = if complete {
            // Every policy field is given (typed handles do): nothing to look up.
            TaskDef::new(&req.task)
        } else if req.retries.is_some() && req.timeout.is_some() {
            self.task_def(tenant, &req.task)
                .await?
                .unwrap_or_else(|| TaskDef::new(&req.task))
        } else {
            self.task_def(tenant, &req.task).await?.ok_or_else(|| Error::NotFound {
                what: "task",
                id: format!(
                    "{} (no worker serving it has registered yet, so its retries and timeout are unknown)",
                    req.task
                ),
            })?
        };
        let run_at = match (req.run_at, req.delay) {
            (Some(at), _) => at.trunc_subsecs(6),
            (None, Some(d)) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| Error::invalid_input("delay", "delay is too large"))?,
            (None, None) => now,
        };
        let id = match &req.idempotency_key {
            Some(k) => RunId::for_idempotency_key(tenant, &req.task, k),
            None => RunId::new(),
        };
        Ok(NewRun {
            id,
            tenant: tenant.to_string(),
            task: req.task,
            input: req.input,
            priority: req.priority.map(|p| p as u8).unwrap_or(def.priority),
            retries: req.retries.map(|r| r as u32).unwrap_or(def.retries),
            timeout: req.timeout.unwrap_or(def.timeout),
            backoff: req.backoff.unwrap_or(def.backoff),
            run_at,
            idempotency_key: req.idempotency_key,
            owner: req.owner,
            metadata: req.metadata,
            parent_id: req.parent_id,
            reason: match req.parent_id {
                Some(p) => format!("scheduled by run {p}"),
                None => "scheduled".into(),
            },
        })
    }

    fn after_insert(&self, inserted: &[Inserted]) {
        let mut queued = false;
        let mut timed = false;
        for i in inserted {
            if let Inserted::Created(r) = i {
                match r.status {
                    owlclaw_core::RunStatus::Queued => queued = true,
                    _ => timed = true,
                }
            }
        }
        if queued {
            self.inner.work.notify_waiters();
        }
        if timed {
            self.inner.wake_maintenance.notify_one();
        }
    }

    /// Schedules one run for `tenant`.
    pub async fn schedule(&self, tenant: &str, req: ScheduleRequest) -> Result<Scheduled> {
        let mut all = self.schedule_many(tenant, vec![req], false).await?;
        Ok(all.remove(0))
    }

    /// Schedules runs in one transaction, all or none.
    pub async fn schedule_bulk(
        &self,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
    ) -> Result<Vec<Scheduled>> {
        self.schedule_many(tenant, reqs, true).await
    }

    /// Validates every request (an invalid field of a bulk request is named `runs[i].field`),
    /// then inserts them all in one transaction.
    async fn schedule_many(
        &self,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
        bulk: bool,
    ) -> Result<Vec<Scheduled>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        // Stored times have microsecond precision: answer with the same.
        let now = Utc::now().trunc_subsecs(6);
        let mut runs = Vec::with_capacity(reqs.len());
        for (i, req) in reqs.into_iter().enumerate() {
            let run = self.resolve(tenant, req, now).await.map_err(|e| match e {
                Error::InvalidInput { field, message } if bulk => Error::InvalidInput {
                    field: format!("runs[{i}].{field}"),
                    message,
                },
                e => e,
            })?;
            runs.push(run);
        }
        let inserted = self.insert_with_key_ttl(tenant, runs, now).await?;
        let created = inserted
            .iter()
            .filter(|i| matches!(i, Inserted::Created(_)))
            .count();
        self.inner
            .counters
            .scheduled
            .fetch_add(created as u64, Ordering::Relaxed);
        self.after_insert(&inserted);
        Ok(inserted
            .into_iter()
            .map(|i| match i {
                Inserted::Created(run) => Scheduled { run, created: true },
                Inserted::Existing(run) => Scheduled {
                    run,
                    created: false,
                },
            })
            .collect())
    }

    /// Inserts runs; a run holding one of their idempotency keys that finished more than the key
    /// TTL ago is deleted first, so the key (and the id derived from it) starts a new run.
    async fn insert_with_key_ttl(
        &self,
        tenant: &str,
        runs: Vec<NewRun>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        let ttl = chrono::Duration::from_std(self.inner.cfg.idempotency_ttl).unwrap_or_default();
        let expired = |r: &RunSnapshot| r.finished_at.is_some_and(|f| f + ttl <= now);
        for _ in 0..3 {
            let stale: Vec<RunId> = match self.inner.store.insert_runs(runs.clone(), now).await {
                Ok(inserted) => {
                    let stale: Vec<RunId> = inserted
                        .iter()
                        .filter_map(|i| match i {
                            Inserted::Existing(r) if expired(r) => Some(r.id),
                            _ => None,
                        })
                        .collect();
                    if stale.is_empty() {
                        return Ok(inserted);
                    }
                    stale
                }
                Err(Error::IdempotencyConflict { key, existing }) => {
                    match self.inner.store.get_run(tenant, existing).await? {
                        Some(r) if expired(&r) => vec![existing],
                        _ => return Err(Error::IdempotencyConflict { key, existing }),
                    }
                }
                Err(e) => return Err(e),
            };
            // Nothing was stored by that attempt: it was all or none. Free the expired keys.
            tracing::info!(
                runs = stale.len(),
                "idempotency keys expired; replacing their finished runs"
            );
            self.inner.store.delete_runs(tenant, &stale).await?;
        }
        Err(Error::Internal(
            "idempotency keys kept conflicting; try again".into(),
        ))
    }

    /// A parent must be a run of the same tenant and, when the new run has an owner, of that
    /// owner (or of none).
    async fn check_parent(&self, tenant: &str, parent: RunId, owner: Option<&str>) -> Result<()> {
        let run = self
            .inner
            .store
            .get_run(tenant, parent)
            .await?
            .ok_or_else(|| {
                Error::invalid_input("parent_id", format!("no run {parent} to be the parent"))
            })?;
        Self::check_owner(&run, owner)
    }

    fn check_owner(run: &RunSnapshot, user: Option<&str>) -> Result<()> {
        match (user, run.owner.as_deref()) {
            (Some(u), Some(owner)) if u != owner => Err(Error::Forbidden(format!(
                "run {} belongs to another user than {u:?}",
                run.id
            ))),
            _ => Ok(()),
        }
    }

    /// A run's snapshot, with its durable steps.
    pub async fn get_run(
        &self,
        tenant: &str,
        id: RunId,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        let mut run = self.run_owned(tenant, id, user).await?;
        run.steps = self.inner.store.run_steps(tenant, id).await?;
        Ok(run)
    }

    /// A run's snapshot without its steps, after the ownership check.
    async fn run_owned(&self, tenant: &str, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        let run = self
            .inner
            .store
            .get_run(tenant, id)
            .await?
            .ok_or_else(|| Error::run_not_found(id))?;
        Self::check_owner(&run, user)?;
        Ok(run)
    }

    /// Runs, newest first.
    pub async fn list_runs(&self, tenant: &str, filter: ListFilter) -> Result<RunPage> {
        filter.validate()?;
        self.inner.store.list_runs(tenant, &filter).await
    }

    /// A run's transition log.
    pub async fn run_events(
        &self,
        tenant: &str,
        id: RunId,
        user: Option<&str>,
    ) -> Result<Vec<RunEvent>> {
        self.run_owned(tenant, id, user).await?;
        self.inner.store.run_events(tenant, id).await
    }

    /// Cancels a run. A running run's worker learns it at its next heartbeat.
    pub async fn cancel_run(
        &self,
        tenant: &str,
        id: RunId,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        self.run_owned(tenant, id, user).await?;
        let run = self.inner.store.cancel_run(tenant, id, Utc::now()).await?;
        tracing::info!(run_id = %id, task = %run.task, "run cancelled");
        self.inner.finished.notify_waiters();
        Ok(run)
    }

    /// Re-queues a failed or cancelled run.
    pub async fn retry_run(
        &self,
        tenant: &str,
        id: RunId,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        self.run_owned(tenant, id, user).await?;
        let run = self.inner.store.retry_run(tenant, id, Utc::now()).await?;
        tracing::info!(run_id = %id, task = %run.task, "run retried by request");
        self.inner.work.notify_waiters();
        Ok(run)
    }

    /// Waits until the run is terminal or `timeout` passes; returns its latest snapshot.
    pub async fn wait_run(
        &self,
        tenant: &str,
        id: RunId,
        timeout: Duration,
    ) -> Result<RunSnapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut run = self.run_owned(tenant, id, None).await?;
            let now = Instant::now();
            if run.status.is_terminal() || now >= deadline {
                run.steps = self.inner.store.run_steps(tenant, id).await?;
                return Ok(run);
            }
            let nap = (deadline - now).min(self.inner.cfg.poll_interval);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
                _ = self.inner.shutdown.cancelled() => return Ok(run),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Crons

    fn with_next_tick(mut s: CronSchedule) -> CronSchedule {
        if let Ok(expr) = CronExpr::parse_in(&s.expr, Some(&s.timezone)) {
            s.next_tick = expr.next_after(s.last_tick.unwrap_or(s.created_at).max(Utc::now()));
        }
        s
    }

    /// Cron schedules of a tenant, with their next tick.
    pub async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        Ok(self
            .inner
            .store
            .list_crons(tenant)
            .await?
            .into_iter()
            .map(Self::with_next_tick)
            .collect())
    }

    /// Creates a cron schedule.
    pub async fn create_cron(&self, tenant: &str, req: CronRequest) -> Result<CronSchedule> {
        taskdef::validate_task_name(&req.task).map_err(|e| Error::invalid_input("task", e))?;
        limits::check_text("expr", &req.expr)?;
        limits::check_json("input", &req.input)?;
        limits::check_input(&req.input)?;
        let tz = req.timezone.unwrap_or_else(|| "UTC".into());
        limits::check_text("timezone", &tz)?;
        owlclaw_core::cron::parse_timezone(&tz).map_err(|e| Error::invalid_input("timezone", e))?;
        CronExpr::parse_in(&req.expr, Some(&tz)).map_err(|e| Error::invalid_input("expr", e))?;
        if self.task_def(tenant, &req.task).await?.is_none() {
            return Err(Error::NotFound {
                what: "task",
                id: format!(
                    "{} (no worker serving it has registered yet; a cron of it would fire runs no worker takes)",
                    req.task
                ),
            });
        }
        let rec = CronRecord {
            tenant: tenant.to_string(),
            schedule: CronSchedule {
                id: uuid::Uuid::new_v4().to_string(),
                task: req.task,
                expr: req.expr,
                timezone: tz,
                input: req.input,
                last_tick: None,
                next_tick: None,
                created_at: Utc::now(),
            },
        };
        self.inner.store.upsert_cron(&rec).await?;
        self.crons_changed();
        Ok(Self::with_next_tick(rec.schedule))
    }

    /// Deletes a cron schedule.
    pub async fn delete_cron(&self, tenant: &str, id: &str) -> Result<()> {
        if !self.inner.store.delete_cron(tenant, id).await? {
            return Err(Error::NotFound {
                what: "cron",
                id: id.to_string(),
            });
        }
        self.crons_changed();
        Ok(())
    }

    fn crons_changed(&self) {
        self.inner.crons_changed.store(true, Ordering::SeqCst);
        self.inner.wake_maintenance.notify_one();
    }

    // -----------------------------------------------------------------------------------------
    // Workers

    /// Registers a worker with the tasks it serves, storing their definitions and crons.
    pub async fn register_worker(
        &self,
        tenant: &str,
        reg: WorkerRegistration,
    ) -> Result<WorkerSession> {
        taskdef::validate_task_name(&reg.name)
            .map_err(|e| Error::invalid_input("name", e.replace("task name", "worker name")))?;
        if !(1..=MAX_SLOTS).contains(&reg.slots) {
            return Err(Error::invalid_input(
                "slots",
                format!("{}: a worker has 1 to {MAX_SLOTS} slots", reg.slots),
            ));
        }
        for (k, v) in &reg.labels {
            if k.is_empty() || k.len() > 128 || v.len() > 255 {
                return Err(Error::invalid_input(
                    "labels",
                    format!(
                        "{k:?}: a label's key has 1 to 128 characters and its value at most 255"
                    ),
                ));
            }
            limits::check_text("labels", k)?;
            limits::check_text("labels", v)?;
        }
        for def in &reg.tasks {
            def.validate()?;
        }
        let id = format!(
            "{}-{}",
            reg.name,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let record = WorkerRecord {
            id: id.clone(),
            tenant: tenant.to_string(),
            name: reg.name.clone(),
            tasks: reg.tasks.iter().map(|t| t.name.clone()).collect(),
        };
        self.inner
            .store
            .register_worker(&record, &reg, Utc::now())
            .await?;
        {
            let mut tasks = self.inner.tasks.lock().unwrap();
            for def in &reg.tasks {
                tasks.insert((tenant.to_string(), def.name.clone()), def.clone());
            }
        }
        if reg.tasks.iter().any(|t| t.cron.is_some()) {
            self.crons_changed();
        }
        self.inner
            .workers
            .lock()
            .unwrap()
            .insert(id.clone(), record);
        tracing::info!(worker = %reg.name, worker_id = %id, tasks = reg.tasks.len(), slots = reg.slots, "worker registered");
        Ok(WorkerSession {
            worker_id: id,
            lease_ms: self.inner.cfg.lease.as_millis() as u64,
        })
    }

    async fn worker(&self, tenant: &str, id: &str) -> Result<WorkerRecord> {
        let cached = self.inner.workers.lock().unwrap().get(id).cloned();
        let w = match cached {
            Some(w) => w,
            None => {
                let w = self
                    .inner
                    .store
                    .get_worker(id)
                    .await?
                    .ok_or_else(|| Error::NotFound {
                        what: "worker",
                        id: id.to_string(),
                    })?;
                self.inner
                    .workers
                    .lock()
                    .unwrap()
                    .insert(id.to_string(), w.clone());
                w
            }
        };
        if w.tenant != tenant {
            return Err(Error::NotFound {
                what: "worker",
                id: id.to_string(),
            });
        }
        Ok(w)
    }

    /// One round trip of a worker: applies its completions, renews its leases, and waits up to
    /// `wait_ms` for up to `want` new runs.
    pub async fn exchange(
        &self,
        tenant: &str,
        worker_id: &str,
        req: ExchangeRequest,
    ) -> Result<ExchangeResponse> {
        let worker = self.worker(tenant, worker_id).await?;
        if req.want > MAX_SLOTS {
            return Err(Error::invalid_input(
                "want",
                format!("{}: at most {MAX_SLOTS} runs per exchange", req.want),
            ));
        }
        if req.wait_ms > MAX_WAIT.as_millis() as u64 {
            return Err(Error::invalid_input(
                "wait_ms",
                format!("{}: at most {} ms", req.wait_ms, MAX_WAIT.as_millis()),
            ));
        }
        let store = &self.inner.store;
        let lease = self.inner.cfg.lease;
        let mut assignments = Vec::new();
        let mut claimed = false;
        let mut req = req;
        for c in &mut req.completions {
            match &mut c.outcome {
                Outcome::Succeeded { output } => {
                    *output = limits::bound_output(std::mem::take(output));
                }
                Outcome::Failed { error, .. } => *error = limits::bound_error(error),
                _ => {}
            }
        }
        if !req.completions.is_empty() {
            self.count_outcomes(&req.completions);
            // The hot path: report and claim for the freed slots in one transaction.
            let changed = if req.want > 0 {
                let (changed, got) = store
                    .complete_and_claim(
                        &worker,
                        &req.completions,
                        req.want,
                        Utc::now(),
                        lease,
                        None,
                    )
                    .await?;
                assignments = got;
                claimed = true;
                changed
            } else {
                store
                    .complete(&worker, &req.completions, Utc::now())
                    .await?
            };
            if changed > 0 {
                self.inner.finished.notify_waiters();
                let retried = req
                    .completions
                    .iter()
                    .any(|c| !matches!(c.outcome, Outcome::Succeeded { .. }));
                if retried {
                    // Retries go to timers (wake the loop) or back to the queue (wake workers).
                    self.inner.wake_maintenance.notify_one();
                    self.inner.work.notify_waiters();
                }
            }
        }
        let cancellations = if req.heartbeat || !req.held.is_empty() {
            store
                .heartbeat(&worker, &req.held, Utc::now(), lease)
                .await?
        } else {
            Vec::new()
        };
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        if req.want > 0 && assignments.is_empty() && (!claimed || !wait.is_zero()) {
            let deadline = Instant::now() + wait;
            loop {
                let notified = self.inner.work.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                assignments = store
                    .claim(&worker, req.want, Utc::now(), lease, None)
                    .await?;
                let now = Instant::now();
                if !assignments.is_empty() || now >= deadline {
                    break;
                }
                let nap = (deadline - now).min(self.inner.cfg.poll_interval);
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(nap) => {}
                    _ = self.inner.shutdown.cancelled() => break,
                }
            }
        }
        self.inner
            .counters
            .claimed
            .fetch_add(assignments.len() as u64, Ordering::Relaxed);
        Ok(ExchangeResponse {
            assignments,
            cancellations,
        })
    }

    fn count_outcomes(&self, completions: &[Completion]) {
        let c = &self.inner.counters;
        for done in completions {
            let counter = match done.outcome {
                Outcome::Succeeded { .. } => &c.succeeded,
                Outcome::Failed { .. } => &c.failed_attempts,
                Outcome::TimedOut => &c.timed_out_attempts,
                Outcome::HandedBack => &c.handed_back,
                Outcome::Suspended { .. } => &c.suspended,
                Outcome::Cancelled => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commits a durable step of a run that the worker holds.
    pub async fn checkpoint_step(
        &self,
        tenant: &str,
        worker_id: &str,
        mut cp: StepCheckpoint,
    ) -> Result<()> {
        let worker = self.worker(tenant, worker_id).await?;
        if cp.name.is_empty() || cp.name.len() > 200 {
            return Err(Error::invalid_input(
                "name",
                "a step name must be 1 to 200 characters long",
            ));
        }
        limits::check_text("name", &cp.name)?;
        cp.output = cp.output.map(limits::bound_output);
        cp.error = cp.error.map(|e| limits::bound_error(&e));
        self.inner
            .store
            .checkpoint_step(&worker, &cp, Utc::now())
            .await
    }

    /// Deletes finished runs older than `older_than` (with their events and steps); returns how
    /// many were deleted.
    pub async fn purge(&self, older_than: Duration) -> Result<usize> {
        let before = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let mut total = 0;
        loop {
            let n = self.inner.store.purge(before, 1000).await?;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }

    /// Deregisters a worker; what it still holds is re-queued at once.
    pub async fn deregister_worker(&self, tenant: &str, worker_id: &str) -> Result<()> {
        let worker = self.worker(tenant, worker_id).await?;
        let handed = self
            .inner
            .store
            .deregister_worker(&worker.id, Utc::now())
            .await?;
        self.inner.workers.lock().unwrap().remove(worker_id);
        if handed > 0 {
            self.inner.work.notify_waiters();
        }
        tracing::info!(worker = %worker.name, worker_id, handed_back = handed, "worker deregistered");
        Ok(())
    }

    /// Workers that exchanged within the last lease period.
    pub async fn list_workers(&self, tenant: &str) -> Result<Vec<WorkerInfo>> {
        let since =
            Utc::now() - chrono::Duration::from_std(self.inner.cfg.lease).unwrap_or_default();
        self.inner.store.list_workers(tenant, since).await
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

/// SHA-256 of a token, hex-encoded: what the store keeps.
fn hash_token(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn maintenance_loop(inner: Arc<Inner>) {
    let store = inner.store.clone();
    let mut crons: Vec<(CronRecord, CronExpr)> = Vec::new();
    let mut crons_loaded = Instant::now();
    let mut last_purge = Instant::now();
    loop {
        let now = Utc::now();
        let mut wake =
            now + chrono::Duration::from_std(inner.cfg.poll_interval).unwrap_or_default();
        match store.maintain(now, inner.cfg.maintenance_batch).await {
            Ok(m) => {
                if m.promoted > 0 || m.expired > 0 {
                    inner.work.notify_waiters();
                }
                if m.expired > 0 {
                    inner
                        .counters
                        .lease_expiries
                        .fetch_add(m.expired as u64, Ordering::Relaxed);
                    tracing::warn!(
                        count = m.expired,
                        "leases expired; runs re-queued or failed"
                    );
                    inner.finished.notify_waiters();
                }
                if let Some(due) = m.next_due {
                    // A due timer locked by another replica stays due until that replica is
                    // done: don't spin on it.
                    // A timer not due yet is slept to exactly.
                    let at = if due <= now {
                        now + chrono::Duration::milliseconds(10)
                    } else {
                        due
                    };
                    wake = wake.min(at);
                }
                if m.promoted as u32 >= inner.cfg.maintenance_batch {
                    wake = now; // more are due: go again at once
                }
            }
            Err(e) => tracing::warn!(error = %e, "maintenance pass failed; will retry"),
        }
        // Retention: purge finished runs once a minute.
        if last_purge.elapsed() > Duration::from_secs(60) {
            last_purge = Instant::now();
            let before =
                Utc::now() - chrono::Duration::from_std(inner.cfg.retention).unwrap_or_default();
            match store.purge(before, 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "purged finished runs past their retention"),
                Err(e) => tracing::warn!(error = %e, "purging finished runs failed"),
            }
        }
        // Crons: reload when changed (or every few seconds, for other engines' changes).
        if inner.crons_changed.swap(false, Ordering::SeqCst)
            || crons_loaded.elapsed() > Duration::from_secs(5)
        {
            match store.all_crons().await {
                Ok(list) => {
                    crons = list
                        .into_iter()
                        .filter_map(|c| {
                            match CronExpr::parse_in(&c.schedule.expr, Some(&c.schedule.timezone)) {
                                Ok(e) => Some((c, e)),
                                Err(err) => {
                                    tracing::warn!(cron = %c.schedule.id, error = %err, "skipping invalid cron");
                                    None
                                }
                            }
                        })
                        .collect();
                    crons_loaded = Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "loading crons failed"),
            }
        }
        let now = Utc::now();
        for (rec, expr) in crons.iter_mut() {
            let base = rec.schedule.last_tick.unwrap_or(rec.schedule.created_at);
            let Some(next) = expr.next_after(base) else {
                continue;
            };
            if next > now {
                wake = wake.min(next);
                continue;
            }
            // Due. After downtime, only the latest missed tick fires (no burst of catch-up runs).
            let tick = expr.last_at_or_before(now).unwrap_or(next).max(next);
            let key = format!("cron:{}:{}", rec.schedule.id, tick.timestamp_micros());
            let def = store
                .get_task(&rec.tenant, &rec.schedule.task)
                .await
                .ok()
                .flatten();
            let def = def.unwrap_or_else(|| TaskDef::new(&rec.schedule.task));
            let run = NewRun {
                id: RunId::for_idempotency_key(&rec.tenant, &rec.schedule.task, &key),
                tenant: rec.tenant.clone(),
                task: rec.schedule.task.clone(),
                input: rec.schedule.input.clone(),
                priority: def.priority,
                retries: def.retries,
                timeout: def.timeout,
                backoff: def.backoff,
                run_at: tick,
                idempotency_key: Some(key),
                owner: None,
                metadata: None,
                parent_id: None,
                reason: format!("cron {} tick {}", rec.schedule.expr, tick.to_rfc3339()),
            };
            match store.fire_cron(rec, tick, run).await {
                Ok(created) => {
                    rec.schedule.last_tick = Some(tick);
                    if created {
                        inner.counters.cron_ticks.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(task = %rec.schedule.task, tick = %tick, "cron tick fired");
                        inner.work.notify_waiters();
                    }
                }
                Err(e) => {
                    tracing::warn!(cron = %rec.schedule.id, error = %e, "firing cron tick failed")
                }
            }
            if let Some(n) = expr.next_after(tick) {
                wake = wake.min(n);
            }
        }
        let sleep_for = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = inner.wake_maintenance.notified() => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// The engine seen by one tenant, as an [`Orchestrator`]: what a lite-mode client talks to.
#[derive(Debug, Clone)]
pub struct Embedded {
    engine: Engine,
    tenant: String,
}

impl Embedded {
    /// The engine behind it.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[async_trait]
impl Orchestrator for Embedded {
    async fn schedule(&self, req: ScheduleRequest) -> Result<Scheduled> {
        self.engine.schedule(&self.tenant, req).await
    }
    async fn schedule_bulk(&self, reqs: Vec<ScheduleRequest>) -> Result<Vec<Scheduled>> {
        self.engine.schedule_bulk(&self.tenant, reqs).await
    }
    async fn get_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.engine.get_run(&self.tenant, id, user).await
    }
    async fn list_runs(&self, filter: ListFilter) -> Result<RunPage> {
        self.engine.list_runs(&self.tenant, filter).await
    }
    async fn run_events(&self, id: RunId, user: Option<&str>) -> Result<Vec<RunEvent>> {
        self.engine.run_events(&self.tenant, id, user).await
    }
    async fn cancel_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.engine.cancel_run(&self.tenant, id, user).await
    }
    async fn retry_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot> {
        self.engine.retry_run(&self.tenant, id, user).await
    }
    async fn wait_run(&self, id: RunId, timeout: Duration) -> Result<RunSnapshot> {
        self.engine.wait_run(&self.tenant, id, timeout).await
    }
    async fn list_crons(&self) -> Result<Vec<CronSchedule>> {
        self.engine.list_crons(&self.tenant).await
    }
    async fn create_cron(&self, req: CronRequest) -> Result<CronSchedule> {
        self.engine.create_cron(&self.tenant, req).await
    }
    async fn delete_cron(&self, id: &str) -> Result<()> {
        self.engine.delete_cron(&self.tenant, id).await
    }
    async fn register_worker(&self, reg: WorkerRegistration) -> Result<WorkerSession> {
        self.engine.register_worker(&self.tenant, reg).await
    }
    async fn exchange(&self, worker_id: &str, req: ExchangeRequest) -> Result<ExchangeResponse> {
        self.engine.exchange(&self.tenant, worker_id, req).await
    }
    async fn checkpoint_step(&self, worker_id: &str, checkpoint: StepCheckpoint) -> Result<()> {
        self.engine
            .checkpoint_step(&self.tenant, worker_id, checkpoint)
            .await
    }
    async fn deregister_worker(&self, worker_id: &str) -> Result<()> {
        self.engine.deregister_worker(&self.tenant, worker_id).await
    }
    async fn list_workers(&self) -> Result<Vec<WorkerInfo>> {
        self.engine.list_workers(&self.tenant).await
    }
    async fn close(&self) -> Result<()> {
        self.engine.shutdown().await;
        Ok(())
    }
}
