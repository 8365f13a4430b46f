//! The API's error answer: the JSON body of core's wire types ([`ErrorBody`]), one status code
//! per error code, and the conversions from every rejection, so that handlers and extractors have
//! one error type, [`ApiError`].

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
pub use owlclaw_core::wire::{ErrorBody, ErrorDetail};
use owlclaw_core::Error;
use std::convert::Infallible;

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
            detail: Box::new(ErrorDetail::new(code, message)),
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
            // Never show a client what the database said, or where it is: log it under an id,
            // and answer the code and an opaque message only (no `reason`, no `url`).
            Error::Internal(_)
            | Error::Database {
                unavailable: false, ..
            } => {
                let id = incident_id();
                tracing::error!(incident = %id, error = %e, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error; the server's log has the details under incident {id}"),
                )
            }
            Error::Connection { .. }
            | Error::Database {
                unavailable: true, ..
            } => {
                let id = incident_id();
                tracing::error!(incident = %id, error = %e, "the database is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the engine's database is unavailable; try again (incident {id})"),
                )
            }
            _ => ApiError {
                status: status_of(e.code()),
                detail: Box::new(ErrorDetail::from(&e)),
            },
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonDataError(e) => {
                let mut api =
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.body_text());
                api.detail.field = field_of_data_error(&e);
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

/// The path of the field at fault in a JSON data error (`delay`, `runs[1].priority`), from the
/// error serde reported, when it names one made of plain field names and indexes.
fn field_of_data_error(e: &axum::extract::rejection::JsonDataError) -> Option<String> {
    use std::error::Error as _;
    // JsonDataError → axum's Error → the deserializer's error, with the path it failed at.
    let err = e
        .source()?
        .source()?
        .downcast_ref::<serde_path_to_error::Error<serde_json::Error>>()?;
    // An empty path: the body as a whole (a missing field, a wrong type of body).
    err.path().iter().next()?;
    let path = err.path().to_string();
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    plain.then_some(path)
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

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        let code = if r.status().is_client_error() {
            "invalid_input"
        } else {
            "internal"
        };
        ApiError::new(r.status(), code, r.body_text())
    }
}

impl From<Infallible> for ApiError {
    fn from(never: Infallible) -> ApiError {
        match never {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(e: Error) -> (StatusCode, serde_json::Value) {
        let api = ApiError::from(e);
        (api.status, serde_json::to_value(&*api.detail).unwrap())
    }

    #[test]
    fn internal_and_unavailable_answers_are_opaque() {
        let secret = "postgres://owl:hunter2@db.internal.example:5432/owlclaw";
        let (status, body) = body_of(Error::Internal(format!("query failed on {secret}")));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "internal");
        let (status2, body2) = body_of(Error::Connection {
            url: secret.into(),
            message: "password authentication failed for user \"owl\"".into(),
        });
        assert_eq!(status2, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body2["code"], "unavailable");
        let driver = std::io::Error::other(format!("connect to {secret} refused"));
        let (status3, body3) = body_of(Error::Database {
            unavailable: true,
            message: format!("postgres: {driver}"),
            source: Box::new(driver),
        });
        assert_eq!(status3, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body3["code"], "unavailable");
        let (status4, body4) = body_of(Error::Database {
            unavailable: false,
            message: format!("sqlite: disk I/O error at {secret}"),
            source: Box::new(std::io::Error::other("disk")),
        });
        assert_eq!(status4, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body4["code"], "internal");
        for body in [body, body2, body3, body4] {
            let keys: Vec<&str> = body
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert_eq!(keys, ["code", "message"], "{body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("incident "), "{message}");
            for leak in ["db.internal", "owl", "hunter2", "5432", "postgres"] {
                assert!(!message.contains(leak), "{leak} in {message}");
            }
        }
    }

    #[test]
    fn other_errors_answer_core_error_body_with_their_fields() {
        let (status, body) = body_of(Error::NotFound {
            what: "worker",
            id: "w-1".into(),
        });
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["what"], "worker");
        assert_eq!(body["id"], "w-1");
        assert_eq!(body["message"], "worker not found: w-1");
        let (status, body) = body_of(Error::invalid_input("priority", "\"11\": at most 10"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "priority");
        assert_eq!(body["reason"], "\"11\": at most 10");
    }
}
