//! Workers: registration, the exchange round trip (reports, leases, claims by long poll), durable
//! step checkpoints, deregistration and the list of live workers.

use super::{Engine, MAX_SLOTS, MAX_WAIT};
use crate::limits;
use crate::store::{ClaimRequest, Limit, WorkerRecord};
use owlclaw_core::task::{self as taskdef};
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Result};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

impl Engine {
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
            if def.workflow.is_some() {
                return Err(Error::invalid_input(
                    "tasks",
                    format!(
                        "{:?} is a workflow: register it under `workflows`",
                        def.name
                    ),
                ));
            }
        }
        for def in &reg.workflows {
            def.validate()?;
            let Some(shape) = &def.workflow else {
                return Err(Error::invalid_input(
                    "workflows",
                    format!(
                        "{:?} has no `workflow` shape: register a task under `tasks`",
                        def.name
                    ),
                ));
            };
            let named = shape
                .tasks
                .iter()
                .map(|t| &t.name)
                .chain(shape.on_failure.as_ref());
            for task in named {
                if !reg.tasks.iter().any(|t| &t.name == task) {
                    return Err(Error::invalid_input(
                        "workflows",
                        format!(
                            "workflow {:?} runs task {task:?}, which this worker does not register: \
                             a worker defining a workflow serves its tasks",
                            def.name
                        ),
                    ));
                }
            }
        }
        let id = format!(
            "{}-{}",
            reg.name,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        // A worker claims only the tasks whose required labels it has; the others are still
        // defined (another worker may serve them).
        let (served, unserved): (Vec<_>, Vec<_>) = reg
            .tasks
            .iter()
            .partition(|t| t.unmet(&reg.labels).is_empty());
        for def in &unserved {
            tracing::info!(
                worker = %reg.name,
                task = %def.name,
                missing = %def.unmet(&reg.labels).join(", "),
                "the worker lacks labels the task requires: it will not claim its runs"
            );
        }
        let record = WorkerRecord {
            id: id.clone(),
            tenant: tenant.to_string(),
            name: reg.name.clone(),
            tasks: served.iter().map(|t| t.name.clone()).collect(),
            limits: served
                .iter()
                .filter_map(|t| Some((t.name.clone(), Limit::of(t)?)))
                .collect(),
            units_due: Default::default(),
        };
        // Workflows are stored as definitions like tasks (their crons and events fire runs of
        // them), but no worker serves them.
        let mut stored = reg.clone();
        stored.tasks.append(&mut stored.workflows);
        self.inner
            .store
            .register_worker(&record, &stored, self.now())
            .await?;
        {
            let mut tasks = self.inner.tasks.lock().unwrap();
            for def in &stored.tasks {
                tasks.insert((tenant.to_string(), def.name.clone()), def.clone());
            }
        }
        let spending: Vec<_> = served
            .iter()
            .filter_map(|t| Some((&t.name, &t.rate_limit.as_ref()?.name)))
            .collect();
        if !spending.is_empty() {
            let defined = self.inner.store.rate_limits(tenant).await?;
            for (task, limit) in spending {
                if !defined.iter().any(|d| &d.name == limit) {
                    tracing::warn!(
                        task = %task,
                        rate_limit = %limit,
                        "the task spends a rate limit that is not defined: its runs wait until it is (owlclaw ratelimit set, or WorkerBuilder::rate_limit)"
                    );
                }
            }
        }
        if stored.tasks.iter().any(|t| t.cron.is_some()) {
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
                let mut w =
                    self.inner
                        .store
                        .get_worker(id)
                        .await?
                        .ok_or_else(|| Error::NotFound {
                            what: "worker",
                            id: id.to_string(),
                        })?;
                // Registered through another replica: the limits come from the definitions.
                for task in &w.tasks {
                    if let Some(limit) = self
                        .task_def(&w.tenant, task)
                        .await?
                        .as_ref()
                        .and_then(Limit::of)
                    {
                        w.limits.push((task.clone(), limit));
                    }
                }
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
        if let Some(id) = &req.request_id {
            if id.is_empty() || id.chars().count() > 100 {
                return Err(Error::invalid_input(
                    "request_id",
                    format!("{id:?}: 1 to 100 characters"),
                ));
            }
            limits::check_text("request_id", id)?;
        }
        if req.resent && req.request_id.is_none() {
            return Err(Error::invalid_input(
                "resent",
                "true without a request_id: name the request that is sent again",
            ));
        }
        let store = &self.inner.store;
        let request_id = req.request_id.clone();
        let claim_request = request_id.as_deref().map(|id| ClaimRequest {
            id,
            resent: req.resent,
        });
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
                Outcome::WaitingForEvent {
                    key,
                    filter,
                    position,
                    ..
                } => {
                    if *position > owlclaw_core::event::MAX_POSITION {
                        return Err(Error::invalid_input(
                            "completions.position",
                            format!("{position}; at most {}", owlclaw_core::event::MAX_POSITION),
                        ));
                    }
                    taskdef::validate_event_key(key)
                        .map_err(|e| Error::invalid_input("completions.key", e))?;
                    owlclaw_core::event::validate_filter(filter)
                        .map_err(|e| Error::invalid_input("completions.filter", e))?;
                    limits::check_json("completions.filter", filter)?;
                }
                _ => {}
            }
        }
        if !req.completions.is_empty() {
            self.inner
                .metrics
                .reported(&worker.tenant, &req.completions);
            // The hot path: report and claim for the freed slots in one transaction.
            let changed = if req.want > 0 {
                let done = store
                    .complete_and_claim(
                        &worker,
                        &req.completions,
                        req.want,
                        self.now(),
                        lease,
                        claim_request,
                    )
                    .await?;
                assignments = done.claimed;
                claimed = true;
                done.changed
            } else {
                store
                    .complete(&worker, &req.completions, self.now())
                    .await?
            };
            if changed > 0 {
                self.inner.finished.notify_waiters();
                if !worker.limits.is_empty() {
                    // Finished runs of a limited task free room for their key: the long polls
                    // waiting for it claim again.
                    self.inner.work.notify_waiters();
                }
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
                .heartbeat(&worker, &req.held, self.now(), lease)
                .await?
        } else {
            Vec::new()
        };
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        if req.want > 0 && assignments.is_empty() && (!claimed || !wait.is_zero()) {
            let started = Instant::now();
            let deadline = started + wait;
            let mut tries = 0u32;
            loop {
                tries += 1;
                let notified = self.inner.work.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                assignments = store
                    .claim(&worker, req.want, self.now(), lease, claim_request)
                    .await?;
                let now = Instant::now();
                if !assignments.is_empty() || now >= deadline {
                    break;
                }
                let mut nap = (deadline - now).min(self.inner.cfg.poll_interval);
                // Runs left queued for want of rate-limit units: claim again when they have them.
                let due = worker.units_due.swap(0, Ordering::Relaxed);
                if due > 0 {
                    let wait = (due - crate::store::micros(self.now())).max(1000) as u64;
                    nap = nap.min(Duration::from_micros(wait));
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(nap) => {}
                    _ = self.inner.shutdown.cancelled() => break,
                }
            }
            tracing::debug!(
                worker = %worker.name,
                want = req.want,
                claimed = assignments.len(),
                tries,
                waited_ms = started.elapsed().as_secs_f64() * 1e3,
                "long poll answered"
            );
        }
        self.observe_claims(&worker.tenant, &assignments);
        Ok(ExchangeResponse {
            assignments,
            cancellations,
        })
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
            .checkpoint_step(&worker, &cp, self.now())
            .await
    }

    /// Deregisters a worker; what it still holds is re-queued at once.
    pub async fn deregister_worker(&self, tenant: &str, worker_id: &str) -> Result<()> {
        let worker = self.worker(tenant, worker_id).await?;
        let handed = self
            .inner
            .store
            .deregister_worker(&worker.id, self.now())
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
            self.now() - chrono::Duration::from_std(self.inner.cfg.lease).unwrap_or_default();
        self.inner.store.list_workers(tenant, since).await
    }
}
