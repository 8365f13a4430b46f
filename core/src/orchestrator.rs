use crate::ratelimit::RateLimit;
use crate::wire::*;
use crate::{Result, RunId};
use std::time::Duration;

/// What a client and a worker can ask of an engine. The embedded engine (lite mode) and the HTTP
/// connection (server mode) both implement it, so the SDK above it behaves the same on both.
///
/// `user`, where present, is the acting user: commands on a run owned by someone else are refused
/// with [`crate::Error::Forbidden`].
#[async_trait::async_trait]
pub trait Orchestrator: Send + Sync + std::fmt::Debug + 'static {
    /// Schedules one run.
    async fn schedule(&self, req: ScheduleRequest) -> Result<Scheduled>;
    /// Schedules many runs in one transaction: all or none.
    async fn schedule_bulk(&self, reqs: Vec<ScheduleRequest>) -> Result<Vec<Scheduled>>;
    /// A run's snapshot.
    async fn get_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: ListFilter) -> Result<RunPage>;
    /// A run's transitions, oldest first.
    async fn run_events(&self, id: RunId, user: Option<&str>) -> Result<Vec<RunEvent>>;
    /// Cancels a scheduled, queued or running run.
    async fn cancel_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot>;
    /// Re-queues a failed or cancelled run as a new attempt.
    async fn retry_run(&self, id: RunId, user: Option<&str>) -> Result<RunSnapshot>;
    /// Replays a failed or cancelled run from its first durable step named `from_step`.
    async fn replay_run(
        &self,
        id: RunId,
        from_step: &str,
        user: Option<&str>,
    ) -> Result<RunSnapshot>;
    /// The tenant's overview: queue depth by task and priority, runs finished per minute.
    async fn overview(&self) -> Result<Overview>;
    /// How many runs `filter` matches, counting at most `max` when given (cheaper on a large
    /// store; the answer says `capped`).
    async fn count_runs(&self, filter: ListFilter, max: Option<u64>) -> Result<RunCount>;
    /// Cancels (`retry: false`) or retries one page of the runs `filter` matches.
    async fn bulk_runs(&self, filter: ListFilter, retry: bool) -> Result<BulkOutcome>;
    /// The task runs of a workflow run (with its tasks not started: pending or skipped).
    async fn workflow_tasks(
        &self,
        id: RunId,
        user: Option<&str>,
    ) -> Result<crate::workflow::WorkflowRunTasks>;
    /// A workflow's plan: stages and critical path.
    async fn workflow_plan(&self, name: &str) -> Result<crate::workflow::WorkflowPlan>;
    /// Waits until the run is terminal or `timeout` passes; returns its latest snapshot either way.
    async fn wait_run(&self, id: RunId, timeout: Duration) -> Result<RunSnapshot>;
    /// Cron schedules.
    async fn list_crons(&self) -> Result<Vec<CronSchedule>>;
    /// Creates a cron schedule.
    async fn create_cron(&self, req: CronRequest) -> Result<CronSchedule>;
    /// Deletes a cron schedule.
    async fn delete_cron(&self, id: &str) -> Result<()>;
    /// Pauses (`paused`) or resumes a cron schedule.
    async fn set_cron_paused(&self, id: &str, paused: bool) -> Result<CronSchedule>;
    /// Fires a cron schedule once now; returns the run.
    async fn trigger_cron(&self, id: &str) -> Result<RunSnapshot>;
    /// Stores an event and starts one run of each task subscribed to its key.
    async fn push_event(&self, event: PushEvent) -> Result<PushedEvent>;
    /// Creates or changes a rate limit; runs waiting for its units see the change at their next
    /// claim.
    async fn set_rate_limit(&self, limit: RateLimit) -> Result<RateLimit>;
    /// The tenant's rate limits, by name.
    async fn rate_limits(&self) -> Result<Vec<RateLimit>>;
    /// Registers a worker and the tasks it serves.
    async fn register_worker(&self, reg: WorkerRegistration) -> Result<WorkerSession>;
    /// One round trip of the worker loop.
    async fn exchange(&self, worker_id: &str, req: ExchangeRequest) -> Result<ExchangeResponse>;
    /// Commits a durable step's state change for a run the worker holds. Refused (`NotFound`) when
    /// the attempt is stale: the run was cancelled, re-queued after a lost lease, or finished.
    async fn checkpoint_step(&self, worker_id: &str, checkpoint: StepCheckpoint) -> Result<()>;
    /// Deregisters a worker; runs it still holds are re-queued at once.
    async fn deregister_worker(&self, worker_id: &str) -> Result<()>;
    /// Live workers.
    async fn list_workers(&self) -> Result<Vec<WorkerInfo>>;
    /// Releases the connection (stops an embedded engine).
    async fn close(&self) -> Result<()>;
}
