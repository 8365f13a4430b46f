//! The background loop: due timers, expired leases, cron ticks and retention purges.

use super::{Engine, Inner};
use crate::store::{CronRecord, NewRun};
use chrono::{DateTime, Utc};
use owlclaw_core::cron::{CronExpr, Overlap};
use owlclaw_core::task::TaskDef;
use owlclaw_core::{Result, RunId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Engine {
    /// The earliest time at which something is due (a timer: a delayed run, a retry's backoff,
    /// a durable sleep; an expiry; a cron tick), by the engine's clock; timers already due are
    /// promoted on the way. For tests that move a manual clock (`owlclaw::testing`).
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let now = self.now();
        let m = self
            .inner
            .store
            .maintain(now, self.inner.cfg.maintenance_batch)
            .await?;
        if m.promoted > 0 || m.expired > 0 {
            self.inner.work.notify_waiters();
        }
        let mut next = [m.next_due, m.next_run_expiry].into_iter().flatten().min();
        for c in self.inner.store.all_crons().await? {
            if c.schedule.paused_at.is_some() {
                continue;
            }
            let Ok(expr) = CronExpr::parse_in(&c.schedule.expr, Some(&c.schedule.timezone)) else {
                continue;
            };
            // A tick due already is the maintenance loop's (it may wait for the last run:
            // `buffer_one`); the next one to come counts.
            let base = c
                .schedule
                .last_tick
                .unwrap_or(c.schedule.created_at)
                .max(now);
            if let Some(t) = expr.next_after(base) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        Ok(next)
    }

    /// How many passes the maintenance loop has made (a test clock waits for one after it
    /// moved, so that what became due was looked at).
    pub fn maintenance_passes(&self) -> u64 {
        self.inner.maintenance_passes.load(Ordering::SeqCst)
    }

    /// Wakes the engine's loops and the workers' long polls: they look at the time again.
    pub fn wake(&self) {
        self.inner.wake_maintenance.notify_one();
        self.inner.work.notify_waiters();
        self.inner.wake_workflows.notify_one();
    }

    /// Deletes finished runs older than `older_than` (with their events and steps); returns how
    /// many were deleted.
    pub async fn purge(&self, older_than: Duration) -> Result<usize> {
        let before = self.now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let mut total = 0;
        loop {
            let n = self.inner.store.purge(before, 1000).await?;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }
}

pub(super) async fn maintenance_loop(inner: Arc<Inner>) {
    let engine = Engine {
        inner: inner.clone(),
    };
    let store = inner.store.clone();
    let mut crons: Vec<(CronRecord, CronExpr)> = Vec::new();
    let mut crons_loaded = Instant::now();
    let mut last_purge = Instant::now();
    loop {
        let now = inner.cfg.clock.now();
        let mut wake =
            now + chrono::Duration::from_std(inner.cfg.poll_interval).unwrap_or_default();
        match store.maintain(now, inner.cfg.maintenance_batch).await {
            Ok(m) => {
                if m.promoted > 0 || m.expired > 0 {
                    inner.work.notify_waiters();
                }
                if m.expired > 0 {
                    inner.metrics.lease_expiries.inc_by(m.expired as u64);
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
                // Runs past their expiry that have not started end cancelled; the next expiry
                // (read with the timers, no statement of its own) is a wake-up like a timer's.
                let mut next_expiry = m.next_run_expiry;
                if next_expiry.is_some_and(|at| at <= now) {
                    match store.expire_due(now, inner.cfg.maintenance_batch).await {
                        Ok((expired, next)) => {
                            if expired > 0 {
                                tracing::info!(count = expired, "runs expired before they started");
                                inner.finished.notify_waiters();
                            }
                            next_expiry = next;
                        }
                        Err(e) => tracing::warn!(error = %e, "expiring runs failed; will retry"),
                    }
                }
                if let Some(at) = next_expiry {
                    wake = wake.min(at.max(now + chrono::Duration::milliseconds(10)));
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
            inner.metrics.forget_lost_claims();
            let before = inner.cfg.clock.now()
                - chrono::Duration::from_std(inner.cfg.retention).unwrap_or_default();
            match store.purge(before, 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "purged finished runs past their retention"),
                Err(e) => tracing::warn!(error = %e, "purging finished runs failed"),
            }
            if let Err(e) = store.forget_full_buckets(inner.cfg.clock.now()).await {
                tracing::warn!(error = %e, "deleting full rate-limit buckets failed");
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
        let now = inner.cfg.clock.now();
        // A `buffer_one` tick waiting for the last run: look again as soon as runs finish.
        let mut buffering = false;
        for (rec, expr) in crons.iter_mut() {
            if rec.schedule.paused_at.is_some() {
                continue;
            }
            let base = rec.schedule.last_tick.unwrap_or(rec.schedule.created_at);
            let Some(next) = expr.next_after(base) else {
                continue;
            };
            if next > now {
                wake = wake.min(next);
                continue;
            }
            // Due: the catch-up policy chooses the ticks, the overlap policy whether each fires.
            let (at, waits) = engine.fire_due_ticks(rec, expr, next, now).await;
            if let Some(at) = at {
                wake = wake.min(at);
            }
            buffering |= waits;
        }
        inner.maintenance_passes.fetch_add(1, Ordering::SeqCst);
        let sleep_for = (wake - inner.cfg.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = inner.wake_maintenance.notified() => {}
            _ = inner.finished.notified(), if buffering => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// What the overlap policy makes of a tick.
enum Decision {
    Fire,
    /// Passed without a run.
    Skip,
    /// Left due until the last run finishes.
    Wait,
}

impl Engine {
    /// Fires the due ticks of a schedule as its policies say; returns when to look again, and
    /// whether a tick waits for the last run to finish (`buffer_one`).
    async fn fire_due_ticks(
        &self,
        rec: &mut CronRecord,
        expr: &CronExpr,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, bool) {
        let again = |at: DateTime<Utc>| (Some(at), false);
        let store = &self.inner.store;
        let ticks = rec.schedule.catch_up.ticks(expr, next, now);
        if ticks.is_empty() {
            // Missed while no engine ran, and the policy is `none`: go on from the next tick.
            let latest = expr.last_at_or_before(now).unwrap_or(next).max(next);
            match store.skip_cron_tick(rec, latest).await {
                Ok(_) => {
                    tracing::info!(cron = %rec.schedule.id, until = %latest, "missed cron ticks not caught up (catch_up: none)");
                    rec.schedule.last_tick = Some(latest);
                }
                Err(e) => {
                    tracing::warn!(cron = %rec.schedule.id, error = %e, "passing missed cron ticks failed")
                }
            }
            return (expr.next_after(latest), false);
        }
        let mut last = next;
        for tick in ticks {
            last = tick;
            let decision = match self.overlap(rec).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(cron = %rec.schedule.id, error = %e, "reading the schedule's last run failed");
                    return again(now + chrono::Duration::seconds(1));
                }
            };
            match decision {
                Decision::Wait => {
                    // `buffer_one`: the tick stays due; look again when runs finish (or at the
                    // next poll, for runs finished by other engines).
                    let poll = chrono::Duration::from_std(self.inner.cfg.poll_interval)
                        .unwrap_or_default();
                    return (Some(now + poll), true);
                }
                Decision::Skip => match store.skip_cron_tick(rec, tick).await {
                    Ok(_) => {
                        tracing::info!(cron = %rec.schedule.id, tick = %tick, "cron tick skipped: the last run is unfinished (overlap: skip)");
                        rec.schedule.last_tick = Some(tick);
                    }
                    Err(e) => {
                        tracing::warn!(cron = %rec.schedule.id, error = %e, "skipping a cron tick failed");
                        return again(now + chrono::Duration::seconds(1));
                    }
                },
                Decision::Fire => match store
                    .fire_cron(rec, tick, self.cron_run(rec, tick).await, self.now())
                    .await
                {
                    Ok(created) => {
                        rec.schedule.last_tick = Some(tick);
                        rec.schedule.last_fired = Some(tick);
                        if created {
                            self.inner.metrics.cron_ticks.inc();
                            tracing::info!(task = %rec.schedule.task, tick = %tick, "cron tick fired");
                            self.inner.work.notify_waiters();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cron = %rec.schedule.id, error = %e, "firing cron tick failed");
                        return again(now + chrono::Duration::seconds(1));
                    }
                },
            }
        }
        (expr.next_after(last), false)
    }

    /// Whether the tick due now fires, as the schedule's overlap policy says about the run of
    /// its last fired tick (cancelling that run for `cancel_previous`).
    async fn overlap(&self, rec: &CronRecord) -> Result<Decision> {
        if rec.schedule.overlap == Overlap::Allow {
            return Ok(Decision::Fire);
        }
        let last = self.last_run(&rec.tenant, &rec.schedule).await?;
        let Some(last) = last.filter(|r| !r.status.is_terminal()) else {
            return Ok(Decision::Fire);
        };
        Ok(match rec.schedule.overlap {
            Overlap::Allow => Decision::Fire,
            Overlap::Skip => Decision::Skip,
            Overlap::BufferOne => Decision::Wait,
            Overlap::CancelPrevious => {
                match self.cancel_run(&rec.tenant, last.id, None).await {
                    Ok(_) | Err(owlclaw_core::Error::InvalidTransition { .. }) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(cron = %rec.schedule.id, run_id = %last.id, "the schedule's last run cancelled for the new tick (overlap: cancel_previous)");
                Decision::Fire
            }
        })
    }

    /// The run of a schedule's tick, with its task's policies.
    async fn cron_run(&self, rec: &CronRecord, tick: DateTime<Utc>) -> NewRun {
        let key = CronRecord::tick_key(&rec.schedule.id, tick);
        let def = self
            .inner
            .store
            .get_task(&rec.tenant, &rec.schedule.task)
            .await
            .ok()
            .flatten();
        let def = def.unwrap_or_else(|| TaskDef::new(&rec.schedule.task));
        let input = &rec.schedule.input;
        let concurrency = def.concurrency.clone().map(|c| {
            let key = c.key_of(input);
            (c, key)
        });
        let rate_limit = def.rate_limit.clone().map(|r| {
            let key = r.key_of(input);
            (r, key)
        });
        NewRun {
            links: Default::default(),
            concurrency,
            rate_limit,
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
            workflow: def.workflow.is_some(),
            expires_at: def
                .expires
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| tick + d),
        }
    }
}
