//! Extractors: who is asking, JSON bodies with errors in Easel's shape, and checked ids.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::auth::Identity;

/// The user a request acts for (see `auth`): every `/api` handler takes it (or [`Caller`]),
/// so a request that has not proved who it is never reaches one.
pub struct CurrentUser(pub String);

/// The user with how they signed in and their role.
pub struct Caller(pub Identity);

/// An admin. Anyone else gets 404, as if the route did not exist.
pub struct AdminUser(pub Identity);

fn auth_required() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "auth_required",
        "Sign in first (or send an API key as `Authorization: Bearer <key>`).",
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Extractors of one request share the answer.
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(Caller(identity.clone()));
        }
        match state.auth.identify(&parts.headers).await? {
            Some(identity) => {
                parts.extensions.insert(identity.clone());
                Ok(Caller(identity))
            }
            None => Err(auth_required()),
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(identity) = Caller::from_request_parts(parts, state).await?;
        Ok(CurrentUser(identity.user_id))
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(identity) = Caller::from_request_parts(parts, state).await?;
        if identity.is_admin() {
            Ok(AdminUser(identity))
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such API route.",
            ))
        }
    }
}

/// The client's address, for rate limits: the connection's peer, or behind a trusted proxy the
/// first `X-Forwarded-For` entry.
pub struct ClientAddress(pub String);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_proxy {
            if let Some(first) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 64)
            {
                return Ok(ClientAddress(first.to_string()));
            }
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(ClientAddress(peer))
    }
}

/// `axum::Json`, but every failure answers with the JSON error body and the right status:
/// 400 for malformed JSON, 422 for valid JSON of the wrong shape, 413 over the size limit,
/// 415 without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::unprocessable("invalid_request", body_text(&e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request("invalid_json", body_text(&e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with `Content-Type: application/json`.",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is larger than this route accepts.",
            )
        }
        other => ApiError::bad_request("invalid_request", other.body_text()),
    }
}

/// axum's messages start with a generic prefix; keep the useful part.
fn body_text(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| text.to_string())
}

/// An id from the path: a UUID (Easel's ids are UUIDv7), or a 400 that says so.
pub fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::try_parse(id).is_ok() {
        Ok(())
    } else {
        let shown: String = id.chars().take(60).collect();
        Err(ApiError::bad_request(
            "invalid_id",
            format!("`{shown}` is not a valid {kind} id"),
        ))
    }
}
