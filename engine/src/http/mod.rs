//! The HTTP/JSON API of `owlclaw serve`: runs, crons and the worker protocol under `/v1`,
//! health and metrics beside it, and the OpenAPI document at `/v1/openapi.json`, generated from the
//! handlers themselves so it can't drift from what the server does.
//!
//! Every `/v1` request needs `Authorization: Bearer <token>`; each token belongs to a tenant, and a
//! tenant never sees another's runs (they answer 404, as if absent). An optional `OwlClaw-User`
//! header names the acting user for ownership checks. Every failure answers
//! `{"error": {"code": "...", "message": "..."}}` with one status code per code.

mod listen;

use crate::Engine;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use owlclaw_core::wire::*;
use owlclaw_core::{Error, RunId, RunStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Default largest request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Longest wait of `GET /v1/runs/{id}/result`.
const MAX_RESULT_WAIT: Duration = Duration::from_secs(300);
/// The header naming the acting user.
pub const USER_HEADER: &str = "owlclaw-user";

/// How the server authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Bearer tokens created with `owlclaw token create`.
    Tokens,
    /// No authentication: every caller is the `default` tenant. Development only.
    InsecureDev,
}

/// Default time a client has to send a whole request (headers, then body): 30 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a keep-alive connection may stay open with no request: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How callers authenticate.
    pub auth: AuthMode,
    /// Largest accepted request body, in bytes. The worker routes (exchange, steps) accept at least
    /// one stored output's worth ([`MIN_WORKER_BODY_LIMIT`]).
    pub body_limit: usize,
    /// Time a client has to send a request's headers, and then its body: past it the connection is
    /// closed (headers) or the request is answered `408` (body).
    pub read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// The PEM files of an HTTPS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: AuthMode::Tokens,
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
        }
    }
}

/// The smallest body limit of the worker routes: a report carrying one output of the largest
/// stored size, with room for its envelope and error.
pub const MIN_WORKER_BODY_LIMIT: usize =
    owlclaw_core::limits::MAX_OUTPUT_BYTES + owlclaw_core::limits::MAX_ERROR_BYTES + 64 * 1024;

#[derive(Clone)]
struct AppState {
    engine: Engine,
    auth: AuthMode,
    /// Token hash lookups already answered by the store.
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_json`, `invalid_input`, `unauthorized`, `forbidden`,
    /// `not_found`, `idempotency_conflict`, `invalid_transition`, `payload_too_large`, ...
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The field at fault (`invalid_input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The run concerned (`idempotency_conflict`, `invalid_transition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    /// The run's status (`invalid_transition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// The refused command (`invalid_transition`) or the idempotency key (`idempotency_conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: Box<ErrorDetail>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: Box::new(ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
                run_id: None,
                status: None,
                detail: None,
            }),
        }
    }
}

/// The status code of each error code.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_json" | "invalid_input" | "config" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "idempotency_conflict" | "invalid_transition" => StatusCode::CONFLICT,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "request_timeout" => StatusCode::REQUEST_TIMEOUT,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "connection" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match &e {
            // Never show a client what the database said, or where it is: log it under an id.
            Error::Internal(_)
            | Error::Database {
                unavailable: false, ..
            } => {
                let id = incident_id();
                tracing::error!(incident = %id, error = %e, "request failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error; the server's log has the details under incident {id}"),
                );
            }
            Error::Connection { .. }
            | Error::Database {
                unavailable: true, ..
            } => {
                let id = incident_id();
                tracing::error!(incident = %id, error = %e, "the database is unavailable");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the engine's database is unavailable; try again (incident {id})"),
                );
            }
            _ => {}
        }
        let mut api = ApiError::new(status_of(e.code()), e.code(), e.to_string());
        match &e {
            Error::InvalidInput { field, .. } | Error::Config { field, .. } => {
                api.detail.field = Some(field.clone())
            }
            Error::IdempotencyConflict { key, existing } => {
                api.detail.run_id = Some(*existing);
                api.detail.detail = Some(key.clone());
            }
            Error::InvalidTransition {
                run_id,
                status,
                action,
            } => {
                api.detail.run_id = Some(*run_id);
                api.detail.status = Some(*status);
                api.detail.detail = Some((*action).to_string());
            }
            _ => {}
        }
        api
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonDataError(e) => {
                let text = e.body_text();
                let mut api = ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", &text);
                api.detail.field = field_of_data_error(&text);
                api
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(e) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server's limit",
            ),
            other => ApiError::new(other.status(), "invalid_json", other.body_text()),
        }
    }
}

/// The field path that axum puts first in a JSON data error ("...target type: delay: invalid
/// duration ..."), when there is one.
fn field_of_data_error(text: &str) -> Option<String> {
    let rest = text.split_once("target type: ")?.1;
    let (path, _) = rest.split_once(": ")?;
    let plausible = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    plausible.then(|| path.to_string())
}

/// A short id that ties an error answered to a client to its line in the server's log.
fn incident_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: *self.detail,
            }),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// `Json<T>` whose rejections answer in the API's error shape.
struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// `Query<T>` whose rejections answer in the API's error shape.
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// The authenticated caller: its tenant and the acting user, if named.
struct Caller {
    tenant: String,
    user: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = match parts.headers.get(USER_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|u| {
                        !u.is_empty() && u.len() <= 255 && u.bytes().all(|b| b.is_ascii_graphic())
                    })
                    .ok_or_else(|| {
                        ApiError::from(Error::invalid_input(
                            USER_HEADER,
                            "must be 1 to 255 visible ASCII characters, without spaces",
                        ))
                    })?
                    .to_string(),
            ),
        };
        if state.auth == AuthMode::InsecureDev {
            return Ok(Caller {
                tenant: crate::LITE_TENANT.to_string(),
                user,
            });
        }
        let unauthorized = |m: &str| ApiError::from(Error::Unauthorized(m.to_string()));
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        if let Some(t) = state.tokens.lock().unwrap().get(token) {
            return Ok(Caller {
                tenant: t.clone(),
                user,
            });
        }
        match state.engine.tenant_for_token(token).await? {
            Some(tenant) => {
                state
                    .tokens
                    .lock()
                    .unwrap()
                    .insert(token.to_string(), tenant.clone());
                Ok(Caller { tenant, user })
            }
            None => Err(unauthorized("invalid API token")),
        }
    }
}

impl Caller {
    /// Crons belong to the tenant, not to a user: acting as a user, changing them is refused.
    fn tenant_wide(&self, what: &str) -> ApiResult<()> {
        match &self.user {
            Some(u) => Err(Error::Forbidden(format!(
                "acting as user {u:?}, you may not {what}: crons belong to the tenant (send no {USER_HEADER} header)"
            ))
            .into()),
            None => Ok(()),
        }
    }
}

fn run_id(raw: &str) -> ApiResult<RunId> {
    Ok(raw.parse::<RunId>()?)
}

// ---------------------------------------------------------------------------------------------
// Runs

/// A page of runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
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
struct WaitParams {
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
async fn schedule_run(
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
async fn schedule_bulk(
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
async fn list_runs(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<RunPage>> {
    let status = q
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()?;
    let mut filter = ListFilter {
        status,
        task: q.task,
        owner: q.owner,
        limit: q.limit,
        cursor: q.cursor,
    };
    filter.act_as(caller.user.as_deref())?;
    Ok(Json(s.engine.list_runs(&caller.tenant, filter).await?))
}

/// A run's snapshot.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = RunSnapshot), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .get_run(&caller.tenant, run_id(&id)?, caller.user.as_deref())
            .await?,
    ))
}

/// A run's transition log, oldest first.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = Vec<RunEvent>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn run_events(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RunEvent>>> {
    Ok(Json(
        s.engine
            .run_events(&caller.tenant, run_id(&id)?, caller.user.as_deref())
            .await?,
    ))
}

/// Wait until the run is terminal (long poll); answers its snapshot, terminal or not.
#[utoipa::path(get, path = "/v1/runs/{id}/result", tag = "runs",
    params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)"), WaitParams),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn run_result(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitParams>,
) -> ApiResult<Json<RunSnapshot>> {
    let id = run_id(&id)?;
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
async fn cancel_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .cancel_run(&caller.tenant, run_id(&id)?, caller.user.as_deref())
            .await?,
    ))
}

/// Re-queue a failed or cancelled run as a new attempt.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs", params(("id" = String, Path, format = Uuid, description = "Run id (a UUID)")),
    responses((status = 200, body = RunSnapshot), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or cancelled", body = ErrorBody)),
    security(("bearer" = [])))]
async fn retry_run(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunSnapshot>> {
    Ok(Json(
        s.engine
            .retry_run(&caller.tenant, run_id(&id)?, caller.user.as_deref())
            .await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Crons

/// Cron schedules.
#[utoipa::path(get, path = "/v1/crons", tag = "crons", responses((status = 200, body = Vec<CronSchedule>)),
    security(("bearer" = [])))]
async fn list_crons(
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
async fn create_cron(
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
async fn delete_cron(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.tenant_wide("delete crons")?;
    s.engine.delete_cron(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Workers

/// Register a worker and the tasks it serves.
#[utoipa::path(post, path = "/v1/workers", tag = "workers", request_body = WorkerRegistration,
    responses((status = 201, body = WorkerSession), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
async fn register_worker(
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
async fn list_workers(
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
async fn exchange(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ExchangeRequest>,
) -> ApiResult<Json<ExchangeResponse>> {
    Ok(Json(s.engine.exchange(&caller.tenant, &id, req).await?))
}

/// Commit a durable step of a run the worker holds (before the task goes on).
#[utoipa::path(post, path = "/v1/workers/{id}/steps", tag = "workers", params(("id" = String, Path, description = "Worker id")),
    request_body = StepCheckpoint,
    responses((status = 204, description = "Committed"), (status = 404, body = ErrorBody), (status = 409, description = "This attempt no longer holds the run", body = ErrorBody)),
    security(("bearer" = [])))]
async fn checkpoint_step(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(cp): ApiJson<StepCheckpoint>,
) -> ApiResult<StatusCode> {
    s.engine.checkpoint_step(&caller.tenant, &id, cp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deregister a worker; the runs it holds are re-queued at once.
#[utoipa::path(delete, path = "/v1/workers/{id}", tag = "workers", params(("id" = String, Path, description = "Worker id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn deregister_worker(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.engine.deregister_worker(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Health, metrics, the document

/// The server's status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    // Answer quickly even when the database hangs (a pool waiting for a connection).
    let ping = tokio::time::timeout(Duration::from_secs(2), s.engine.ping())
        .await
        .unwrap_or_else(|_| Err(Error::Timeout("no answer within 2s".into())));
    match ping {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: format!("database unavailable: {e}"),
            }),
        ),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.engine.metrics_text().await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI document")))]
async fn openapi_json(State(doc): State<Arc<String>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.as_str().to_owned(),
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "OwlClaw Tasks engine API", description = "Durable task orchestration: runs, crons and the worker protocol. Integers may be written as floats with no fractional part (`5.0`); `5.5` is refused. Durations are strings with a unit (`\"10s\"`); numbers are refused."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

/// Adds to every operation the answers that any of them can give, so the document lists every
/// status code the server sends: `400` (a bad `OwlClaw-User` header, path id or query), `401`
/// (secured operations), `405` (another method on the path), `408`/`413`/`415` (operations with a
/// body), `500` and `503`. Also documents the `OwlClaw-User` header.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{
            ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type,
        };
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let user_header = ParameterBuilder::new()
            .name("OwlClaw-User")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some("The acting user, for ownership checks: runs it schedules are its own, and it sees and acts on its own runs only."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/v1/") && path != "/v1/openapi.json";
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |code: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                };
                add("405", "This path does not accept that method.");
                if !api {
                    continue;
                }
                if path.starts_with("/v1/runs") || path.starts_with("/v1/crons") {
                    add("403", "Acting as a user (OwlClaw-User): another user's run, another owner named, or a change to the tenant's crons.");
                }
                add("400", "Invalid request: a bad OwlClaw-User header, path id, query parameter or body field (the error names it). Nothing was stored.");
                add("401", "Missing or invalid API token.");
                add("500", "Internal error: the answer carries an incident id to find in the server's log.");
                add("503", "The engine's database is unavailable; try again.");
                if op.request_body.is_some() {
                    add(
                        "408",
                        "The request body did not arrive within the server's read timeout.",
                    );
                    add("413", "The request body is larger than the server's limit.");
                    add("415", "The body is not `Content-Type: application/json`.");
                }
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(user_header.clone());
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(schedule_run, list_runs))
        .routes(routes!(schedule_bulk))
        .routes(routes!(get_run))
        .routes(routes!(run_events))
        .routes(routes!(run_result))
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(list_crons, create_cron))
        .routes(routes!(delete_cron))
        .routes(routes!(register_worker, list_workers))
        .routes(routes!(exchange))
        .routes(routes!(checkpoint_step))
        .routes(routes!(deregister_worker))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The OpenAPI document of the API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes().split_for_parts();
    let (_, extra) = OpenApiRouter::<Arc<String>>::new()
        .routes(routes!(openapi_json))
        .split_for_parts();
    doc.merge(extra);
    CommonResponses.modify(&mut doc);
    doc
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

/// Checks that the certificate and key of `files` load, as [`serve`] will load them.
pub fn check_tls_files(files: &TlsFiles) -> owlclaw_core::Result<()> {
    listen::tls_acceptor(&files.cert, &files.key).map(|_| ())
}

/// Serves the API on `listener` until `shutdown` resolves, then shuts down gracefully: long polls
/// end at once, in-flight requests finish, and the engine stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> owlclaw_core::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let tls = match &cfg.tls {
        Some(files) => Some(listen::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let app = router(engine.clone(), &cfg);
    let token = engine.shutdown_token();
    tracing::info!(addr = ?addr, auth = ?cfg.auth, https = tls.is_some(), "engine server listening");
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel(); // long polls end at once
        stopper.cancel();
    });
    listen::accept_loop(listener, app, &cfg, tls, stop).await;
    engine.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
