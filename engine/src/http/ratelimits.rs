//! `/v1/rate-limits`: the tenant's named rate limits.

use super::errors::{ApiResult, ErrorBody};
use super::extract::{ApiJson, Caller};
use super::AppState;
use axum::extract::State;
use axum::Json;
use owlclaw_core::ratelimit::RateLimit;

/// Rate limits, by name.
#[utoipa::path(get, path = "/v1/rate-limits", tag = "rate-limits", responses((status = 200, body = Vec<RateLimit>)),
    security(("bearer" = [])))]
pub(super) async fn list_rate_limits(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<RateLimit>>> {
    Ok(Json(s.engine.rate_limits(&caller.tenant).await?))
}

/// Create a rate limit, or change the one of that name (runs waiting for its units see the
/// change at their next claim).
#[utoipa::path(post, path = "/v1/rate-limits", tag = "rate-limits", request_body = RateLimit,
    responses((status = 200, body = RateLimit), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn set_rate_limit(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(limit): ApiJson<RateLimit>,
) -> ApiResult<Json<RateLimit>> {
    caller.tenant_wide("set rate limits")?;
    Ok(Json(s.engine.set_rate_limit(&caller.tenant, limit).await?))
}
