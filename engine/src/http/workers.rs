//! `/v1/workers`: the worker protocol (register, exchange, steps, deregister) and the live list.

use super::errors::{ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use owlclaw_core::wire::*;

/// Register a worker and the tasks it serves.
#[utoipa::path(post, path = "/v1/workers", tag = "workers", request_body = WorkerRegistration,
    responses((status = 201, body = WorkerSession), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn register_worker(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(reg): ApiJson<WorkerRegistration>,
) -> ApiResult<(StatusCode, Json<WorkerSession>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.engine.register_worker(&caller.tenant, reg).await?),
    ))
}

/// Live workers.
#[utoipa::path(get, path = "/v1/workers", tag = "workers", responses((status = 200, body = Vec<WorkerInfo>)),
    security(("bearer" = [])))]
pub(super) async fn list_workers(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<WorkerInfo>>> {
    Ok(Json(s.engine.list_workers(&caller.tenant).await?))
}

/// One round trip of the worker loop: report finished runs, renew leases, and long-poll for new
/// runs and cancellations.
#[utoipa::path(post, path = "/v1/workers/{id}/exchange", tag = "workers", params(("id" = String, Path, description = "Worker id")),
    request_body = ExchangeRequest,
    responses((status = 200, body = ExchangeResponse), (status = 404, description = "Unknown worker: register again", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn exchange(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ExchangeRequest>,
) -> ApiResult<Json<ExchangeResponse>> {
    Ok(Json(s.engine.exchange(&caller.tenant, &id, req).await?))
}

/// Commit a durable step of a run the worker holds (before the task goes on).
#[utoipa::path(post, path = "/v1/workers/{id}/steps", tag = "workers", params(("id" = String, Path, description = "Worker id")),
    request_body = StepCheckpoint,
    responses((status = 204, description = "Committed"), (status = 404, body = ErrorBody), (status = 409, description = "This attempt no longer holds the run", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn checkpoint_step(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(cp): ApiJson<StepCheckpoint>,
) -> ApiResult<StatusCode> {
    s.engine.checkpoint_step(&caller.tenant, &id, cp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deregister a worker; the runs it holds are re-queued at once.
#[utoipa::path(delete, path = "/v1/workers/{id}", tag = "workers", params(("id" = String, Path, description = "Worker id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn deregister_worker(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.engine.deregister_worker(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
