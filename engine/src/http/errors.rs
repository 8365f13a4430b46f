//! The API's error answer: one JSON shape, one status code per error code.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use owlclaw_core::{Error, RunId, RunStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
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
            Error::Internal(_) => {
                let id = incident_id();
                tracing::error!(incident = %id, error = %e, "request failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error; the server's log has the details under incident {id}"),
                );
            }
            Error::Connection { .. } => {
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

pub(super) type ApiResult<T> = Result<T, ApiError>;
