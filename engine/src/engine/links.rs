//! Celery's `link` and `link_error`: tasks the engine schedules once a run finishes, with the
//! run's output (`link`, on success) or a [`FailedRun`] (`link_error`, on failure; a cancelled
//! run schedules neither).
//!
//! A run with links has a row in a narrow table, inserted with it. The workflow loop reads the
//! rows whose run has finished, schedules their tasks as children of the run with idempotency
//! keys derived from the run and its finish, and marks the row done: a replica that stops half
//! way, or two replicas passing at once, schedule each linked run once. A manual retry opens the
//! row again, so the retried run's finish is followed up too.

use super::Engine;
use crate::store::FinishedLinks;
use owlclaw_core::task::TaskDef;
use owlclaw_core::wire::{FailedRun, ScheduleRequest};
use owlclaw_core::{Result, RunStatus};
use serde_json::{json, Value};

/// Finished runs followed up per pass.
const LINKS_BATCH: u32 = 500;

impl Engine {
    /// Schedules the links of runs that finished; returns whether runs with links are still
    /// open (the loop then watches runs finish).
    pub(super) async fn follow_links(&self) -> Result<bool> {
        let (finished, open) = self.inner.store.finished_links(LINKS_BATCH).await?;
        for f in &finished {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = self.follow_run_links(f).await {
                tracing::warn!(run_id = %f.id, error = %e, "scheduling a run's links failed; trying again");
            }
        }
        Ok(open)
    }

    async fn follow_run_links(&self, f: &FinishedLinks) -> Result<()> {
        let Some(run) = self.inner.store.get_run(&f.tenant, f.id).await? else {
            return Ok(()); // deleted meanwhile: its row went with it
        };
        let (tasks, input, on) = match run.status {
            RunStatus::Succeeded => (
                &f.links.on_success,
                run.output.clone().unwrap_or(Value::Null),
                "success",
            ),
            RunStatus::Failed => {
                let failure = FailedRun {
                    run_id: run.id,
                    task: run.task.clone(),
                    error: run.error.clone().unwrap_or_default(),
                    attempts: run.attempt,
                    input: run.input.clone(),
                };
                (
                    &f.links.on_error,
                    serde_json::to_value(failure).unwrap_or(Value::Null),
                    "error",
                )
            }
            _ => (&Vec::new(), Value::Null, "cancel"),
        };
        // One finish, one set of linked runs, whoever schedules them (and however often).
        let finish = run.finished_at.map(|t| t.timestamp_micros()).unwrap_or(0);
        let mut reqs = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            let mut req = ScheduleRequest {
                task: task.clone(),
                input: input.clone(),
                parent_id: Some(run.id),
                owner: run.owner.clone(),
                idempotency_key: Some(format!("link:{}:{finish}:{i}", run.id)),
                metadata: Some(json!({ "link_of": run.id, "on": on })),
                ..ScheduleRequest::default()
            };
            if self.task_def(&f.tenant, task).await?.is_none() {
                // Not registered yet: the defaults, so that the run waits for its worker.
                let def = TaskDef::new(task);
                req.retries = Some(i64::from(def.retries));
                req.timeout = Some(def.timeout);
            }
            reqs.push(req);
        }
        if !reqs.is_empty() {
            self.schedule_many(&f.tenant, reqs, false).await?;
            tracing::info!(run_id = %run.id, tasks = ?tasks, on, "scheduled the run's links");
        }
        self.inner.store.links_done(&f.tenant, f.id).await
    }
}
