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
