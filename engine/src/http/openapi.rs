//! The OpenAPI document, generated from the handlers, with the answers every operation can give.

use super::errors::{ErrorBody, ErrorDetail};
use super::router::api_routes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI document")))]
pub(super) async fn openapi_json(State(doc): State<Arc<String>>) -> Response {
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
pub(super) struct ApiDoc;

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
                if path.starts_with("/v1/runs")
                    || path.starts_with("/v1/crons")
                    || path.starts_with("/v1/events")
                    || path.starts_with("/v1/rate-limits")
                {
                    add("403", "Acting as a user (OwlClaw-User): another user's run, another owner named (of a run or of the runs an event starts), or a change to the tenant's crons or rate limits.");
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
