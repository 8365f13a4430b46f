//! Runs scheduled inside the application's own transaction (`enqueue_in`): an application whose
//! data lives in the engine's database (SQLite or PostgreSQL, lite mode) writes the runs' rows on
//! its own connection, in its own transaction, so that they exist if and only if it commits.
//!
//! Workers are woken after the commit: on PostgreSQL by the `NOTIFY` sent in the transaction
//! (delivered at commit, as every other wake-up); on SQLite by a commit hook set on the
//! application's connection, after which the engine waits for the rows to be visible to its own
//! connections and wakes the workers. A rollback leaves nothing and wakes no one.
//!
//! Runs whose concurrency strategy cancels other runs (`cancel_in_progress`, `cancel_newest`)
//! are refused: cancelling runs is the engine's own transaction's work.

use super::Engine;
use crate::store::{Inserted, NewRun};
use chrono::SubsecRound;
use owlclaw_core::task::ConcurrencyStrategy;
use owlclaw_core::wire::{ScheduleRequest, Scheduled};
#[cfg(feature = "sqlx-sqlite")]
use owlclaw_core::RunId;
use owlclaw_core::{Error, Result};
#[cfg(feature = "sqlx-sqlite")]
use std::time::Duration;

impl Engine {
    /// Validates requests into runs for an application's transaction.
    async fn resolve_for_tx(
        &self,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
    ) -> Result<Vec<NewRun>> {
        let now = self.now().trunc_subsecs(6);
        let mut runs = Vec::with_capacity(reqs.len());
        for req in reqs {
            let run = self.resolve(tenant, req, now).await?;
            if let Some((c, _)) = &run.concurrency {
                if c.strategy != ConcurrencyStrategy::Queue {
                    return Err(Error::invalid_input(
                        "concurrency",
                        format!(
                            "task {:?} cancels runs of its key ({:?}); such runs can't be enqueued in \
                             the application's transaction: enqueue them through the client",
                            run.task, c.strategy
                        ),
                    ));
                }
            }
            runs.push(run);
        }
        Ok(runs)
    }

    /// Schedules runs for `tenant` inside the application's transaction on `conn`, a connection
    /// to this engine's SQLite database: they exist if and only if that transaction commits,
    /// and workers are woken once it has. Refused when `conn` is on another database.
    #[cfg(feature = "sqlx-sqlite")]
    pub async fn schedule_in_sqlite(
        &self,
        conn: &mut sqlx::SqliteConnection,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
    ) -> Result<Vec<Scheduled>> {
        let runs = self.resolve_for_tx(tenant, reqs).await?;
        let now = self.now().trunc_subsecs(6);
        let inserted = self.inner.store.insert_in_sqlite(conn, runs, now).await?;
        let created: Vec<RunId> = inserted
            .iter()
            .filter_map(|i| match i {
                Inserted::Created(r) => Some(r.id),
                Inserted::Existing(_) => None,
            })
            .collect();
        if let Some(&last) = created.last() {
            // Woken once the transaction commits; nothing when it rolls back.
            let pending = std::sync::Arc::new(std::sync::Mutex::new(Some((
                self.clone(),
                tokio::runtime::Handle::current(),
                tenant.to_string(),
                last,
            ))));
            let on_rollback = pending.clone();
            let mut handle = conn
                .lock_handle()
                .await
                .map_err(crate::store::app_connection_error)?;
            handle.set_commit_hook(move || {
                if let Some((engine, rt, tenant, id)) = pending.lock().unwrap().take() {
                    rt.spawn(async move { engine.wake_when_visible(&tenant, id).await });
                }
                true // the commit goes on
            });
            handle.set_rollback_hook(move || {
                on_rollback.lock().unwrap().take();
            });
        }
        self.inner.metrics.scheduled.inc_by(created.len() as u64);
        Ok(super::runs::scheduled(inserted))
    }

    /// Schedules runs for `tenant` inside the application's transaction on `conn`, a connection
    /// to this engine's PostgreSQL database: they exist if and only if that transaction commits,
    /// and the `NOTIFY` sent in it wakes workers at the commit. Refused when `conn` is on another
    /// database.
    #[cfg(feature = "postgres")]
    pub async fn schedule_in_postgres(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: &str,
        reqs: Vec<ScheduleRequest>,
    ) -> Result<Vec<Scheduled>> {
        let runs = self.resolve_for_tx(tenant, reqs).await?;
        let now = self.now().trunc_subsecs(6);
        let inserted = self.inner.store.insert_in_postgres(conn, runs, now).await?;
        let created = inserted
            .iter()
            .filter(|i| matches!(i, Inserted::Created(_)))
            .count();
        self.inner.metrics.scheduled.inc_by(created as u64);
        Ok(super::runs::scheduled(inserted))
    }

    /// Wakes the workers once run `id` (inserted by another connection, whose commit is under
    /// way) can be read; gives up after a few seconds (a commit that failed after all), leaving
    /// the run to the next poll if it appears later.
    #[cfg(feature = "sqlx-sqlite")]
    async fn wake_when_visible(&self, tenant: &str, id: RunId) {
        let mut pause = Duration::from_millis(1);
        for _ in 0..14 {
            if let Ok(Some(_)) = self.inner.store.get_run(tenant, id).await {
                self.inner.work.notify_waiters();
                self.inner.wake_maintenance.notify_one();
                self.workflows_changed();
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}
