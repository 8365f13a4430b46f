//! Extractors: the authenticated caller, JSON bodies, queries and path ids, whose rejections all
//! answer in the API's error shape.

use super::errors::{ApiError, ApiResult};
use super::{AppState, AuthMode, USER_HEADER};
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::header;
use axum::http::request::Parts;
use axum::Json;
use owlclaw_core::Error;
#[cfg(doc)]
use owlclaw_core::RunId;
use std::str::FromStr;

/// A JSON request body, whose rejections (syntax, a bad field, no JSON content type, too large)
/// answer in the API's error shape, naming the field at fault.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub(super) struct ApiJson<T>(pub(super) T);

/// A body that must be a JSON object of `T`'s fields: serde would also read a struct written as
/// an array of its fields (`[null, null]`), which for a struct of optional fields (a run filter)
/// would pass as an empty one.
pub(super) struct Object<T>(pub(super) T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
            .map(Object)
    }
}

/// A query string, whose rejections answer in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub(super) struct ApiQuery<T>(pub(super) T);

/// A path id, parsed once before the handler runs: `ApiPath<RunId>` hands the handler a
/// [`RunId`], and a malformed one is answered `400 invalid_input` quoting the value.
pub(super) struct ApiPath<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: FromStr,
    ApiError: From<T::Err>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(ApiPath(raw.parse()?))
    }
}

/// The authenticated caller: its tenant and the acting user, if named.
pub(super) struct Caller {
    pub(super) tenant: String,
    pub(super) user: Option<String>,
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
    /// Crons and rate limits belong to the tenant, not to a user: acting as a user, changing
    /// them is refused.
    pub(super) fn tenant_wide(&self, what: &str) -> ApiResult<()> {
        match &self.user {
            Some(u) => Err(Error::Forbidden(format!(
                "acting as user {u:?}, you may not {what}: they belong to the tenant (send no {USER_HEADER} header)"
            ))
            .into()),
            None => Ok(()),
        }
    }
}
