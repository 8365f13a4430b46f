//! The router: every route, the fallbacks, and the body rules applied before any handler.

use super::errors::ApiError;
use super::openapi::{openapi, openapi_json, ApiDoc};
use super::{crons, events, health, ratelimits, runs, workers};
use super::{AppState, ServerConfig, MIN_WORKER_BODY_LIMIT};
use crate::Engine;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::schedule_run, runs::list_runs))
        .routes(routes!(runs::schedule_bulk))
        .routes(routes!(runs::count_runs))
        .routes(routes!(runs::cancel_runs))
        .routes(routes!(runs::retry_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::run_events))
        .routes(routes!(runs::run_result))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::retry_run))
        .routes(routes!(runs::replay_run))
        .routes(routes!(runs::workflow_tasks))
        .routes(routes!(runs::workflow_plan))
        .routes(routes!(crons::list_crons, crons::create_cron))
        .routes(routes!(crons::delete_cron))
        .routes(routes!(crons::pause_cron))
        .routes(routes!(crons::resume_cron))
        .routes(routes!(crons::trigger_cron))
        .routes(routes!(events::push_event))
        .routes(routes!(
            ratelimits::list_rate_limits,
            ratelimits::set_rate_limit
        ))
        .routes(routes!(workers::register_worker, workers::list_workers))
        .routes(routes!(workers::exchange))
        .routes(routes!(workers::checkpoint_step))
        .routes(routes!(workers::deregister_worker))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(runs::overview))
}

/// The body limits and read timeout applied before any handler runs.
#[derive(Debug, Clone, Copy)]
struct BodyRules {
    limit: usize,
    worker_limit: usize,
    read_timeout: Duration,
}

/// The worker protocol's report routes, whose bodies may carry a stored output's worth.
fn is_worker_report(path: &str) -> bool {
    path.starts_with("/v1/workers/") && (path.ends_with("/exchange") || path.ends_with("/steps"))
}

/// Reads the whole request body within the read timeout and under its route's limit, before any
/// handler runs: a client that sends half a body is answered `408`, one that sends too much `413`.
async fn read_body_in_time(
    State(rules): State<BodyRules>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let limit = if is_worker_report(req.uri().path()) {
        rules.worker_limit
    } else {
        rules.limit
    };
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(rules.read_timeout, read).await {
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {}",
                owlclaw_core::duration::format_duration(rules.read_timeout)
            ),
        )
        .into_response(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the server's limit ({limit} bytes)"),
        )
        .into_response(),
        Ok(Err(e)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the request body could not be read: {e}"),
        )
        .into_response(),
        Ok(Ok(body)) => {
            next.run(Request::from_parts(
                parts,
                axum::body::Body::from(body.to_bytes()),
            ))
            .await
        }
    }
}

/// The whole API as a router: what `owlclaw serve` serves, and what tests call in-process.
pub fn router(engine: Engine, cfg: &ServerConfig) -> Router {
    let doc = openapi().to_pretty_json().unwrap_or_else(|_| "{}".into());
    let state = AppState {
        engine,
        auth: cfg.auth,
        tokens: Arc::new(Mutex::new(HashMap::new())),
    };
    let rules = BodyRules {
        limit: cfg.body_limit,
        worker_limit: cfg.body_limit.max(MIN_WORKER_BODY_LIMIT),
        read_timeout: cfg.read_timeout,
    };
    let (api, _) = api_routes().split_for_parts();
    let doc_router = Router::new()
        .route("/v1/openapi.json", axum::routing::get(openapi_json))
        .with_state(Arc::new(doc));
    api.with_state(state)
        .merge(doc_router)
        .merge(super::dashboard::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            rules,
            read_body_in_time,
        ))
        .layer(DefaultBodyLimit::max(rules.limit.max(rules.worker_limit)))
}
