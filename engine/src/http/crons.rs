//! `/v1/crons`: the tenant's cron schedules.

use super::errors::{ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use owlclaw_core::wire::*;

/// Cron schedules.
#[utoipa::path(get, path = "/v1/crons", tag = "crons", responses((status = 200, body = Vec<CronSchedule>)),
    security(("bearer" = [])))]
pub(super) async fn list_crons(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<CronSchedule>>> {
    Ok(Json(s.engine.list_crons(&caller.tenant).await?))
}

/// Create a cron schedule.
#[utoipa::path(post, path = "/v1/crons", tag = "crons", request_body = CronRequest,
    responses((status = 201, body = CronSchedule), (status = 400, body = ErrorBody),
        (status = 404, description = "No worker has registered the task", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create_cron(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CronRequest>,
) -> ApiResult<(StatusCode, Json<CronSchedule>)> {
    caller.tenant_wide("create crons")?;
    Ok((
        StatusCode::CREATED,
        Json(s.engine.create_cron(&caller.tenant, req).await?),
    ))
}

/// Pause a cron schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/v1/crons/{id}/pause", tag = "crons", params(("id" = String, Path, description = "Cron id")),
    responses((status = 200, body = CronSchedule), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn pause_cron(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CronSchedule>> {
    caller.tenant_wide("pause crons")?;
    Ok(Json(
        s.engine.set_cron_paused(&caller.tenant, &id, true).await?,
    ))
}

/// Resume a paused cron schedule; the ticks missed while paused are not fired.
#[utoipa::path(post, path = "/v1/crons/{id}/resume", tag = "crons", params(("id" = String, Path, description = "Cron id")),
    responses((status = 200, body = CronSchedule), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn resume_cron(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CronSchedule>> {
    caller.tenant_wide("resume crons")?;
    Ok(Json(
        s.engine.set_cron_paused(&caller.tenant, &id, false).await?,
    ))
}

/// Fire a cron schedule once now (paused or not): a run of its task with its input, whose
/// metadata says `{"cron": id, "trigger": "manual"}`.
#[utoipa::path(post, path = "/v1/crons/{id}/trigger", tag = "crons", params(("id" = String, Path, description = "Cron id")),
    responses((status = 201, body = RunSnapshot), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn trigger_cron(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<RunSnapshot>)> {
    caller.tenant_wide("trigger crons")?;
    Ok((
        StatusCode::CREATED,
        Json(s.engine.trigger_cron(&caller.tenant, &id).await?),
    ))
}

/// Delete a cron schedule.
#[utoipa::path(delete, path = "/v1/crons/{id}", tag = "crons", params(("id" = String, Path, description = "Cron id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete_cron(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    caller.tenant_wide("delete crons")?;
    s.engine.delete_cron(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
