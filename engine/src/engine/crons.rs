//! Cron schedules: list, create and delete them (the maintenance loop fires them).

use super::Engine;
use crate::limits;
use crate::store::CronRecord;
use owlclaw_core::cron::CronExpr;
use owlclaw_core::task::{self as taskdef};
use owlclaw_core::wire::*;
use owlclaw_core::{Error, Result};
use std::sync::atomic::Ordering;

impl Engine {
    fn with_next_tick(&self, mut s: CronSchedule) -> CronSchedule {
        if s.paused_at.is_some() {
            return s;
        }
        if let Ok(expr) = CronExpr::parse_in(&s.expr, Some(&s.timezone)) {
            let mut at = s.last_tick.unwrap_or(s.created_at).max(self.now());
            while s.next_ticks.len() < 3 {
                let Some(next) = expr.next_after(at) else {
                    break;
                };
                s.next_ticks.push(next);
                at = next;
            }
            s.next_tick = s.next_ticks.first().copied();
        }
        s
    }

    /// The run of a schedule's last tick that started one (its id derives from the tick's key),
    /// if it still exists.
    pub(super) async fn last_run(&self, tenant: &str, s: &CronSchedule) -> Result<Option<CronRun>> {
        let Some(tick) = s.last_fired.or(s.last_tick) else {
            return Ok(None);
        };
        let key = CronRecord::tick_key(&s.id, tick);
        let id = owlclaw_core::RunId::for_idempotency_key(tenant, &s.task, &key);
        Ok(self
            .inner
            .store
            .get_run(tenant, id)
            .await?
            .map(|r| CronRun {
                id,
                status: r.status,
            }))
    }

    /// A schedule as listed: with its next ticks and its last run.
    async fn view(&self, tenant: &str, s: CronSchedule) -> Result<CronSchedule> {
        let mut s = self.with_next_tick(s);
        s.last_run = self.last_run(tenant, &s).await?;
        Ok(s)
    }

    /// Cron schedules of a tenant, with their next tick.
    pub async fn list_crons(&self, tenant: &str) -> Result<Vec<CronSchedule>> {
        let mut out = Vec::new();
        for s in self.inner.store.list_crons(tenant).await? {
            out.push(self.view(tenant, s).await?);
        }
        Ok(out)
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
                created_at: self.now(),
                paused_at: None,
                next_ticks: Vec::new(),
                last_run: None,
                last_fired: None,
                overlap: req.overlap.unwrap_or_default(),
                catch_up: req.catch_up.unwrap_or_default(),
            },
        };
        self.inner.store.upsert_cron(&rec).await?;
        self.crons_changed();
        Ok(self.with_next_tick(rec.schedule))
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

    /// Pauses (`paused`) or resumes a cron schedule. A paused schedule fires nothing; a resumed
    /// one does not fire the ticks missed while paused. Returns the schedule as it is after.
    pub async fn set_cron_paused(
        &self,
        tenant: &str,
        id: &str,
        paused: bool,
    ) -> Result<CronSchedule> {
        if !self
            .inner
            .store
            .set_cron_paused(tenant, id, paused, self.now())
            .await?
        {
            return Err(Error::NotFound {
                what: "cron",
                id: id.to_string(),
            });
        }
        self.crons_changed();
        tracing::info!(cron = %id, paused, "cron schedule {}", if paused { "paused" } else { "resumed" });
        self.cron(tenant, id).await
    }

    /// Fires a cron schedule once now (paused or not), without touching its ticks: a run of its
    /// task with its input, its metadata `{"cron": id, "trigger": "manual"}`.
    pub async fn trigger_cron(&self, tenant: &str, id: &str) -> Result<RunSnapshot> {
        let cron = self.cron(tenant, id).await?;
        let done = self
            .schedule(
                tenant,
                ScheduleRequest {
                    task: cron.task,
                    input: cron.input,
                    metadata: Some(serde_json::json!({"cron": id, "trigger": "manual"})),
                    ..ScheduleRequest::default()
                },
            )
            .await?;
        Ok(done.run)
    }

    /// One cron schedule with its next ticks and last run, or `NotFound` (the next ticks and
    /// the last run are worked out for that one only).
    async fn cron(&self, tenant: &str, id: &str) -> Result<CronSchedule> {
        let s = self
            .inner
            .store
            .list_crons(tenant)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::NotFound {
                what: "cron",
                id: id.to_string(),
            })?;
        self.view(tenant, s).await
    }

    pub(super) fn crons_changed(&self) {
        self.inner.crons_changed.store(true, Ordering::SeqCst);
        self.inner.wake_maintenance.notify_one();
    }
}
