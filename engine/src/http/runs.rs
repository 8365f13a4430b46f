//! `/v1/runs`: schedule, list, inspect, wait for, cancel and retry runs.

use super::errors::{ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, Object};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use owlclaw_core::wire::*;
use owlclaw_core::{Error, RunId, RunStatus};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// Longest wait of `GET /v1/runs/{id}/result`.
const MAX_RESULT_WAIT: Duration = Duration::from_secs(300);

/// A page of runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only runs in this status.
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Only runs of this task.
    #[param(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$")]
    task: Option<String>,
    /// Only runs owned by this user (acting as a user: that user).
    #[param(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")]
    owner: Option<String>,
    /// Page size (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
    /// Only runs created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<String>,
    /// Only runs created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<String>,
    /// Only the runs this run scheduled (a workflow run's tasks).
    #[param(value_type = Option<String>, format = Uuid)]
    parent_id: Option<String>,
    /// `GET /v1/runs/count` only: count at most this many (the answer says `capped`); cheaper
    /// on a large store. Ignored by the list.
    #[param(minimum = 1, maximum = 9223372036854775807_u64)]
    max: Option<u64>,
}

impl ListParams {
    /// The filter, acting as `user`; each bad value is refused naming its parameter.
    fn filter(self, user: Option<&str>) -> Result<ListFilter, Error> {
        if let Some(m) = self.max {
            if m == 0 || i64::try_from(m).is_err() {
                return Err(Error::invalid_input(
                    "max",
                    format!("{m} is out of range: 1 to {}", i64::MAX),
                ));
            }
        }
        let status = self
            .status
            .as_deref()
            .map(str::parse::<RunStatus>)
            .transpose()?;
        let time = |field: &'static str, v: Option<String>| {
            v.map(|t| {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|e| {
                        Error::invalid_input(field, format!("{t:?} is not an RFC 3339 time: {e}"))
                    })
            })
            .transpose()
        };
        let parent_id = self
            .parent_id
            .map(|p| {
                p.parse::<RunId>().map_err(|_| {
                    Error::invalid_input("parent_id", format!("{p:?} is not a run id"))
                })
            })
            .transpose()?;
        let mut filter = ListFilter {
            status,
            task: self.task,
            owner: self.owner,
            limit: self.limit,
            cursor: self.cursor,
            created_after: time("created_after", self.created_after)?,
            created_before: time("created_before", self.created_before)?,
            parent_id,
        };
        filter.act_as(user)?;
        Ok(filter)
    }
}

/// Many runs to schedule.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The runs, scheduled in one transaction: all or none.
    pub runs: Vec<ScheduleRequest>,
}

/// Runs scheduled in bulk.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BulkResponse {
    /// Their snapshots, in the order of the request.
    pub runs: Vec<RunSnapshot>,
}

/// How long to wait.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitParams {
    /// How long to wait for the run to finish (default 30s, at most 5m), e.g. `30s`.
    #[param(pattern = "^([0-9]{1,5}ms|[0-9]{1,2}s|[0-4]m|5m)$")]
    timeout: Option<String>,
}

/// Schedule one run.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Scheduled", body = RunSnapshot),
        (status = 200, description = "The existing run of a repeated idempotency key", body = RunSnapshot),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "Unknown task", body = ErrorBody),
        (status = 409, description = "Idempotency key used with another input", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn schedule_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(mut req): ApiJson<ScheduleRequest>,
) -> ApiResult<(StatusCode, Json<RunSnapshot>)> {
    req.act_as(caller.user.as_deref())?;
    let done = s.engine.schedule(&caller.tenant, req).await?;
    let code = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(done.run)))
}

/// Schedule many runs in one transaction.
#[utoipa::path(post, path = "/v1/runs/bulk", tag = "runs", request_body = BulkRequest,
    responses((status = 201, body = BulkResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn schedule_bulk(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(mut req): ApiJson<BulkRequest>,
) -> ApiResult<(StatusCode, Json<BulkResponse>)> {
    for (i, r) in req.runs.iter_mut().enumerate() {
        r.act_as(caller.user.as_deref()).map_err(|e| match e {
            Error::Forbidden(m) => Error::Forbidden(format!("runs[{i}]: {m}")),
            e => e,
        })?;
    }
    let done = s.engine.schedule_bulk(&caller.tenant, req.runs).await?;
    Ok((
        StatusCode::CREATED,
        Json(BulkResponse {
            runs: done.into_iter().map(|d| d.run).collect(),
        }),
    ))
}

/// List runs, newest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListParams),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<RunPage>> {
    let filter = q.filter(caller.user.as_deref())?;
    Ok(Json(s.engine.list_runs(&caller.tenant, filter).await?))
}

/// How many runs a filter matches (`limit` and `cursor` are ignored).
#[utoipa::path(get, path = "/v1/runs/count", tag = "runs", params(ListParams),
    responses((status = 200, body = RunCount), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn count_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<RunCount>> {
    let max = q.max;
    let filter = q.filter(caller.user.as_deref())?;
    Ok(Json(
        s.engine.count_runs(&caller.tenant, filter, max).await?,
    ))
}

/// The body of a bulk action: a run filter, as the list's query parameters.
async fn bulk(
    s: &AppState,
    caller: &Caller,
    mut filter: ListFilter,
    retry: bool,
) -> ApiResult<Json<BulkOutcome>> {
    filter.act_as(caller.user.as_deref())?;
    Ok(Json(
        s.engine.bulk_runs(&caller.tenant, filter, retry).await?,
    ))
}

/// Cancel one page (at most `limit`, default 1000) of the runs a filter matches, newest first;
/// pass `next_cursor` back as `cursor` for the next page. Finished runs are left as they are.
#[utoipa::path(post, path = "/v1/runs/cancel", tag = "runs", request_body = ListFilter,
    responses((status = 200, body = BulkOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn cancel_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(Object(filter)): ApiJson<Object<ListFilter>>,
) -> ApiResult<Json<BulkOutcome>> {
    bulk(&s, &caller, filter, false).await
}

/// Retry one page (at most `limit`, default 1000) of the runs a filter matches, newest first;
/// pass `next_cursor` back as `cursor` for the next page. Only failed and cancelled runs change.
#[utoipa::path(post, path = "/v1/runs/retry", tag = "runs", request_body = ListFilter,
    responses((status = 200, body = BulkOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn retry_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(Object(filter)): ApiJson<Object<ListFilter>>,
) -> ApiResult<Json<BulkOutcome>> {
    bulk(&s, &caller, filter, true).await
}

/// A run's snapshot.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = RunSnapshot), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .get_run(&caller.tenant, id, caller.user.as_deref())
            .await?,
    ))
}

/// A run's transition log, oldest first.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = Vec<RunEvent>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn run_events(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
) -> ApiResult<Json<Vec<RunEvent>>> {
    Ok(Json(
        s.engine
            .run_events(&caller.tenant, id, caller.user.as_deref())
            .await?,
    ))
}

/// Wait until the run is terminal (long poll); answers its snapshot, terminal or not.
#[utoipa::path(get, path = "/v1/runs/{id}/result", tag = "runs",
    params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)"), WaitParams),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn run_result(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
    ApiQuery(q): ApiQuery<WaitParams>,
) -> ApiResult<Json<RunSnapshot>> {
    let timeout = match q.timeout.as_deref() {
        None => Duration::from_secs(30),
        Some(t) => owlclaw_core::duration::parse_duration(t)
            .map_err(|e| Error::invalid_input("timeout", e))?,
    };
    if timeout > MAX_RESULT_WAIT {
        return Err(Error::invalid_input("timeout", "at most 5m").into());
    }
    s.engine
        .get_run(&caller.tenant, id, caller.user.as_deref())
        .await?;
    Ok(Json(s.engine.wait_run(&caller.tenant, id, timeout).await?))
}

/// Cancel a run.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn cancel_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .cancel_run(&caller.tenant, id, caller.user.as_deref())
            .await?,
    ))
}

/// Re-queue a failed or cancelled run as a new attempt.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or cancelled", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn retry_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .retry_run(&caller.tenant, id, caller.user.as_deref())
            .await?,
    ))
}

/// The task runs of a workflow run, with its tasks not started yet (pending or skipped).
#[utoipa::path(get, path = "/v1/runs/{id}/tasks", tag = "workflows", params(("id" = String, Path, format = Uuid, description = "Workflow run id (a UUID)")),
    responses((status = 200, body = owlclaw_core::workflow::WorkflowRunTasks), (status = 403, body = ErrorBody), (status = 404, description = "No such run, or not a workflow run", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn workflow_tasks(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
) -> ApiResult<Json<owlclaw_core::workflow::WorkflowRunTasks>> {
    Ok(Json(
        s.engine
            .workflow_tasks(&caller.tenant, id, caller.user.as_deref())
            .await?,
    ))
}

/// A workflow's plan: its stages (what runs in parallel) and its critical path, each task's
/// expected duration the median of its last succeeded runs.
#[utoipa::path(get, path = "/v1/workflows/{name}/plan", tag = "workflows",
    params(("name" = String, Path, pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$", description = "Workflow name")),
    responses((status = 200, body = owlclaw_core::workflow::WorkflowPlan), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn workflow_plan(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<owlclaw_core::workflow::WorkflowPlan>> {
    Ok(Json(s.engine.workflow_plan(&caller.tenant, &name).await?))
}

/// Replay a failed or cancelled run from one of its durable steps: that step and every later one
/// run again as a new attempt; the earlier steps keep their outputs and the children they
/// spawned, children spawned from that step on are started afresh.
#[utoipa::path(post, path = "/v1/runs/{id}/replay", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    request_body = ReplayRequest,
    responses((status = 200, body = RunSnapshot), (status = 400, description = "No such step", body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or cancelled", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn replay_run(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<RunId>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .replay_run(&caller.tenant, id, &req.from_step, caller.user.as_deref())
            .await?,
    ))
}

/// The tenant's overview: runs ready to start by task and priority, and runs finished in each of
/// the last 60 minutes.
#[utoipa::path(get, path = "/v1/overview", tag = "runs",
    responses((status = 200, body = owlclaw_core::wire::Overview), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn overview(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<owlclaw_core::wire::Overview>> {
    caller.tenant_wide("read the overview")?;
    Ok(Json(s.engine.overview(&caller.tenant).await?))
}
