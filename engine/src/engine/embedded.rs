//! The engine seen by one tenant as an `Orchestrator`: what a lite-mode client talks to.

use super::Engine;
use async_trait::async_trait;
use owlclaw_core::ratelimit::RateLimit;
use owlclaw_core::wire::*;
use owlclaw_core::workflow::{WorkflowPlan, WorkflowRunTasks};
use owlclaw_core::{Orchestrator, Result, RunId};
use std::time::Duration;

/// The engine seen by one tenant, as an [`Orchestrator`]: what a lite-mode client talks to.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub(super) engine: Engine,
    pub(super) tenant: String,
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
    async fn replay_run(
        &self,
        id: RunId,
        from_step: &str,
        user: Option<&str>,
    ) -> Result<RunSnapshot> {
        self.engine
            .replay_run(&self.tenant, id, from_step, user)
            .await
    }
    async fn overview(&self) -> Result<Overview> {
        self.engine.overview(&self.tenant).await
    }
    async fn count_runs(&self, filter: ListFilter, max: Option<u64>) -> Result<RunCount> {
        self.engine.count_runs(&self.tenant, filter, max).await
    }
    async fn bulk_runs(&self, filter: ListFilter, retry: bool) -> Result<BulkOutcome> {
        self.engine.bulk_runs(&self.tenant, filter, retry).await
    }
    async fn workflow_tasks(&self, id: RunId, user: Option<&str>) -> Result<WorkflowRunTasks> {
        self.engine.workflow_tasks(&self.tenant, id, user).await
    }
    async fn workflow_plan(&self, name: &str) -> Result<WorkflowPlan> {
        self.engine.workflow_plan(&self.tenant, name).await
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
    async fn set_cron_paused(&self, id: &str, paused: bool) -> Result<CronSchedule> {
        self.engine.set_cron_paused(&self.tenant, id, paused).await
    }
    async fn trigger_cron(&self, id: &str) -> Result<RunSnapshot> {
        self.engine.trigger_cron(&self.tenant, id).await
    }
    async fn push_event(&self, event: PushEvent) -> Result<PushedEvent> {
        self.engine.push_event(&self.tenant, event).await
    }
    async fn set_rate_limit(&self, limit: RateLimit) -> Result<RateLimit> {
        self.engine.set_rate_limit(&self.tenant, limit).await
    }
    async fn rate_limits(&self) -> Result<Vec<RateLimit>> {
        self.engine.rate_limits(&self.tenant).await
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
