//! Runs: validate and schedule them (one or in bulk, with idempotency keys), read, wait for,
//! cancel and retry them, with the ownership checks of acting users.

use super::Engine;
use crate::limits;
use crate::store::{Inserted, NewRun, RunLinks};
use chrono::{DateTime, SubsecRound, Utc};
use owlclaw_core::task::{self as taskdef, ConcurrencyStrategy, TaskDef};
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Result, RunId, RunStatus};
use std::time::Duration;
use tokio::time::Instant;

impl Engine {
    pub(super) async fn task_def(&self, tenant: &str, name: &str) -> Result<Option<TaskDef>> {
        if let Some(d) = self.known_task(tenant, name, TaskDef::clone) {
            return Ok(Some(d));
        }
        let def = self.inner.store.get_task(tenant, name).await?;
        if let Some(d) = &def {
            let key = (tenant.to_string(), name.to_string());
            self.inner.tasks.lock().unwrap().insert(key, d.clone());
        }
        Ok(def)
    }

    /// `f` of the definition of `name` as this engine last saw it registered or looked it up;
    /// no store access.
    fn known_task<R>(&self, tenant: &str, name: &str, f: impl FnOnce(&TaskDef) -> R) -> Option<R> {
        let key = (tenant.to_string(), name.to_string());
        self.inner.tasks.lock().unwrap().get(&key).map(f)
    }

    /// Validates a request and resolves it into a run to insert. Nothing is stored.
    pub(super) async fn resolve(
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
        check_short_text("idempotency_key", req.idempotency_key.as_deref())?;
        check_short_text("owner", req.owner.as_deref())?;
        if let Some(parent) = req.parent_id {
            self.check_parent(tenant, parent, req.owner.as_deref())
                .await?;
        }
        if let Some(Some(c)) = &req.concurrency {
            c.validate()
                .map_err(|e| Error::invalid_input("concurrency", e))?;
        }
        if let Some(Some(r)) = &req.rate_limit {
            r.validate()
                .map_err(|e| Error::invalid_input("rate_limit", e))?;
            if let Some(Some(c)) = &req.concurrency {
                owlclaw_core::task::check_both_limits(c, r)
                    .map_err(|e| Error::invalid_input("rate_limit", e))?;
            }
        }
        for (field, tasks) in [("link", &req.link), ("link_error", &req.link_error)] {
            if tasks.len() > MAX_LINKS {
                return Err(Error::invalid_input(
                    field,
                    format!("{} tasks, at most {MAX_LINKS}", tasks.len()),
                ));
            }
            for t in tasks {
                taskdef::validate_task_name(t).map_err(|e| Error::invalid_input(field, e))?;
            }
        }
        let complete = req.retries.is_some()
            && req.timeout.is_some()
            && req.priority.is_some()
            && req.backoff.is_some()
            && req.concurrency.is_some()
            && req.rate_limit.is_some();
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
        let (mut concurrency, mut rate_limit) = (
            req.concurrency.unwrap_or(def.concurrency),
            req.rate_limit.unwrap_or(def.rate_limit),
        );
        if concurrency.is_none() && rate_limit.is_none() {
            // Claims enforce the limit the task's workers registered: a run scheduled without
            // one (a producer unaware of it, or `null` through the API) would have no key and
            // never be claimed. What this engine knows of the registration wins (no lookup).
            let limits = |d: &TaskDef| (d.concurrency.clone(), d.rate_limit.clone());
            if let Some(registered) = self.known_task(tenant, &req.task, limits) {
                (concurrency, rate_limit) = registered;
            }
        }
        let concurrency = concurrency.map(|c| {
            let key = c.key_of(&req.input);
            (c, key)
        });
        let rate_limit = rate_limit.map(|r| {
            let key = r.key_of(&req.input);
            (r, key)
        });
        // Both limits (the request's or the task's): the rate limit is keyed by the run's one key.
        if let (Some((c, _)), Some((r, _))) = (&concurrency, &rate_limit) {
            owlclaw_core::task::check_both_limits(c, r)
                .map_err(|e| Error::invalid_input("rate_limit", e))?;
        }
        let expires_at = match (&req.expires, def.expires) {
            (Some(text), _) => Some(parse_expires(text, now)?.trunc_subsecs(6)),
            (None, Some(d)) => chrono::Duration::from_std(d).ok().map(|d| run_at + d),
            (None, None) => None,
        };
        if let Some(at) = expires_at {
            if at <= run_at {
                return Err(Error::invalid_input(
                    "expires",
                    format!(
                        "{} is not after the run's due time ({}): it would expire before it could start",
                        at.to_rfc3339(),
                        run_at.to_rfc3339()
                    ),
                ));
            }
        }
        Ok(NewRun {
            expires_at,
            links: RunLinks {
                on_success: req.link,
                on_error: req.link_error,
            },
            concurrency,
            rate_limit,
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
                None => owlclaw_core::lifecycle::reason::SCHEDULED.into(),
            },
            workflow: def.workflow.is_some(),
        })
    }

    pub(super) fn after_insert(&self, inserted: &[Inserted]) {
        let mut queued = false;
        let mut timed = false;
        for i in inserted {
            if let Inserted::Created(r) = i {
                match r.status {
                    owlclaw_core::RunStatus::Queued => queued = true,
                    _ => timed = true,
                }
                // Its expiry is a due time of the maintenance loop.
                timed |= r.expires_at.is_some();
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
    pub(super) async fn schedule_many(
        &self,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
        bulk: bool,
    ) -> Result<Vec<Scheduled>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        // Stored times have microsecond precision: answer with the same.
        let now = self.now().trunc_subsecs(6);
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
        // The store applies the cancel strategies in the insert's transaction.
        let displacing = runs.iter().any(|r| {
            r.concurrency
                .as_ref()
                .is_some_and(|(c, _)| c.strategy != ConcurrencyStrategy::Queue)
        });
        let inserted = self.insert_with_key_ttl(tenant, runs, now).await?;
        if displacing {
            // Runs it cancelled: wake those waiting for them.
            self.inner.finished.notify_waiters();
        }
        let created = inserted
            .iter()
            .filter(|i| matches!(i, Inserted::Created(_)))
            .count();
        self.inner.metrics.scheduled.inc_by(created as u64);
        self.after_insert(&inserted);
        Ok(scheduled(inserted))
    }

    /// Inserts runs; a run holding one of their idempotency keys that finished more than the key
    /// TTL ago is deleted first, so the key (and the id derived from it) starts a new run.
    async fn insert_with_key_ttl(
        &self,
        tenant: &str,
        runs: Vec<NewRun>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Inserted>> {
        if runs.iter().any(|r| r.workflow || !r.links.is_empty()) {
            // Workflow runs are advanced, and runs with links followed up, by the workflow loop.
            self.workflows_changed();
        }
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
        if run.status == RunStatus::Queued {
            run.waiting = match self.why_waiting(tenant, &run.task).await? {
                Some(why) => Some(why),
                None => self.held_by_limit(tenant, &run).await?,
            };
        }
        Ok(run)
    }

    /// Why no live worker can claim a queued run of `task`, or `None` when one can.
    async fn why_waiting(&self, tenant: &str, task: &str) -> Result<Option<String>> {
        let workers = self.list_workers(tenant).await?;
        if workers.iter().any(|w| w.tasks.iter().any(|t| t == task)) {
            return Ok(None);
        }
        let requires = match self.task_def(tenant, task).await? {
            Some(def) if !def.requires.is_empty() => def,
            _ => return Ok(Some(format!("no live worker serves task `{task}`"))),
        };
        let lacking: Vec<String> = workers
            .iter()
            .map(|w| match requires.unmet(&w.labels).as_slice() {
                [] => format!("{} does not serve it", w.name),
                unmet => format!("{} lacks {}", w.name, unmet.join(", ")),
            })
            .collect();
        Ok(Some(if lacking.is_empty() {
            format!(
                "no live worker serves task `{task}`, which requires the labels {}",
                requires.requires.join(", ")
            )
        } else {
            format!(
                "no live worker has the labels task `{task}` requires ({}): {}",
                requires.requires.join(", "),
                lacking.join("; ")
            )
        }))
    }

    /// Why the limit of a queued run's task holds it back now, or `None` when it does not: the
    /// limit its workers registered (the one claims enforce), for the key the run was stored
    /// under (a run scheduled with another key path through the API is judged by its own).
    async fn held_by_limit(&self, tenant: &str, run: &RunSnapshot) -> Result<Option<String>> {
        let Some(key) = &run.limit_key else {
            return Ok(None);
        };
        let Some(def) = self.task_def(tenant, &run.task).await? else {
            return Ok(None);
        };
        let key_text = |key: &str| match key {
            "" => String::new(),
            k => format!(" (key {k:?})"),
        };
        if let Some(c) = &def.concurrency {
            let running = self
                .inner
                .store
                .running_of_key(tenant, &run.task, key)
                .await?;
            if running >= u64::from(c.max) {
                return Ok(Some(format!(
                    "at its concurrency limit{}: {running} runs running, at most {}; it starts when one finishes",
                    key_text(key),
                    c.max
                )));
            }
        }
        if let Some(r) = &def.rate_limit {
            let limits = self.inner.store.rate_limits(tenant).await?;
            let Some(limit) = limits.into_iter().find(|l| l.name == r.name) else {
                return Ok(Some(format!(
                    "its task spends rate limit `{0}`, which is not defined: it waits until it is \
                     (owlclaw ratelimit set {0} --limit N --per DURATION)",
                    r.name
                )));
            };
            let key = r.bucket(key);
            let now = crate::store::micros(self.now());
            let tokens = match self.inner.store.rate_bucket(tenant, &r.name, key).await? {
                Some((tokens, at)) => limit.refill(tokens, at, now),
                None => f64::from(limit.limit),
            };
            let units = limit.units_needed(r.units);
            if tokens < f64::from(units) {
                return Ok(Some(format!(
                    "waiting for units of rate limit `{}`{} ({} per {}): enough for it in {}",
                    r.name,
                    key_text(key),
                    limit.limit,
                    owlclaw_core::duration::format_duration(limit.per),
                    owlclaw_core::duration::format_duration(limit.time_to(tokens, units))
                )));
            }
        }
        Ok(None)
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

    /// Replays a failed or cancelled run from its first durable step named `from_step`: that
    /// step and every later one run again, the earlier ones keep their outputs (and the
    /// children they spawned); children spawned from that step on are started afresh.
    pub async fn replay_run(
        &self,
        tenant: &str,
        id: RunId,
        from_step: &str,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        self.run_owned(tenant, id, user).await?;
        let steps = self.inner.store.run_steps(tenant, id).await?;
        let Some(step) = steps.iter().find(|s| s.name == from_step) else {
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid_input(
                "from_step",
                format!(
                    "run {id} has no step {from_step:?}; its steps: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        let run = self
            .inner
            .store
            .replay_run(tenant, id, step.position, &step.name, self.now())
            .await?;
        tracing::info!(run_id = %id, step = %step.name, position = step.position, "run replayed from a step");
        self.inner.work.notify_waiters();
        Ok(run)
    }

    /// How many runs `filter` matches (its page and cursor ignored).
    pub async fn count_runs(
        &self,
        tenant: &str,
        filter: ListFilter,
        max: Option<u64>,
    ) -> Result<RunCount> {
        filter.validate()?;
        if max == Some(0) {
            return Err(Error::invalid_input("max", "0: count at least 1"));
        }
        let count = self.inner.store.count_runs(tenant, &filter, max).await?;
        Ok(RunCount {
            count,
            capped: max.is_some_and(|m| count >= m),
        })
    }

    /// Cancels (`retry: false`) or retries one page of the runs `filter` matches (1,000 unless
    /// its `limit` says fewer), newest first, in one transaction: a caller walks every match by
    /// passing back `next_cursor`, so a million matches never hold one long transaction. Runs
    /// whose status does not allow the action are counted as matched, not changed.
    pub async fn bulk_runs(
        &self,
        tenant: &str,
        mut filter: ListFilter,
        retry: bool,
    ) -> Result<BulkOutcome> {
        filter
            .limit
            .get_or_insert(owlclaw_core::wire::MAX_LIST_LIMIT);
        filter.validate()?;
        let ListFilter {
            status,
            task,
            owner,
            created_after,
            created_before,
            parent_id,
            ..
        } = &filter;
        if status.is_none()
            && task.is_none()
            && owner.is_none()
            && created_after.is_none()
            && created_before.is_none()
            && parent_id.is_none()
        {
            return Err(Error::invalid_input(
                "filter",
                "a bulk action needs at least one of status, task, owner, created_after, \
                 created_before or parent_id: it never applies to every run by default",
            ));
        }
        let page = self.inner.store.list_runs(tenant, &filter).await?;
        let ids: Vec<RunId> = page
            .runs
            .iter()
            .filter(|r| {
                if retry {
                    r.status.can_retry()
                } else {
                    !r.status.is_terminal()
                }
            })
            .map(|r| r.id)
            .collect();
        let changed = if ids.is_empty() {
            0
        } else {
            self.inner
                .store
                .act_on_runs(tenant, &ids, retry, self.now())
                .await?
        };
        if changed > 0 {
            if retry {
                self.inner.work.notify_waiters();
                self.workflows_changed();
            } else {
                self.inner.finished.notify_waiters();
            }
            tracing::info!(
                changed,
                action = if retry { "retry" } else { "cancel" },
                "bulk action on runs"
            );
        }
        Ok(BulkOutcome {
            matched: page.runs.len() as u64,
            changed,
            next_cursor: page.next_cursor,
        })
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
        let run = self.inner.store.cancel_run(tenant, id, self.now()).await?;
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
        let run = self.inner.store.retry_run(tenant, id, self.now()).await?;
        tracing::info!(run_id = %id, task = %run.task, "run retried by request");
        self.inner.work.notify_waiters();
        // A workflow run retried is advanced again.
        self.workflows_changed();
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
}

/// An optional text field of 1 to 255 characters without NUL (keys, ids, owners).
pub(super) fn check_short_text(field: &str, value: Option<&str>) -> Result<()> {
    let Some(v) = value else { return Ok(()) };
    if v.is_empty() || v.len() > 255 {
        return Err(Error::invalid_input(
            field,
            format!("{v:?} must be 1 to 255 characters long"),
        ));
    }
    limits::check_text(field, v)
}

/// The answer for inserted runs: each new one, or the existing one of a repeated key.
pub(super) fn scheduled(inserted: Vec<Inserted>) -> Vec<Scheduled> {
    inserted
        .into_iter()
        .map(|i| match i {
            Inserted::Created(run) => Scheduled { run, created: true },
            Inserted::Existing(run) => Scheduled {
                run,
                created: false,
            },
        })
        .collect()
}
