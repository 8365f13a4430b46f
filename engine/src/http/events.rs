//! `/v1/events`: events pushed to the engine, which start the runs of subscribed tasks.

use super::errors::{ApiResult, ErrorBody};
use super::extract::{ApiJson, Caller};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use owlclaw_core::wire::*;

/// Push an event: every task with `on_event` equal to its key gets one run, whose input is the
/// payload. A second push of the same `id` stores and starts nothing.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = PushEvent,
    responses(
        (status = 201, description = "Stored, with the runs it started", body = PushedEvent),
        (status = 200, description = "An event with this id was stored before: nothing new", body = PushedEvent),
        (status = 400, description = "Invalid event, or an id pushed before with another key or payload", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn push_event(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(mut event): ApiJson<PushEvent>,
) -> ApiResult<(StatusCode, Json<PushedEvent>)> {
    event.act_as(caller.user.as_deref())?;
    let pushed = s.engine.push_event(&caller.tenant, event).await?;
    let code = if pushed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(pushed)))
}
