//! `POST /api/auth/login` (a browser enters the API key once and gets a session cookie),
//! `POST /api/auth/logout`, and `GET /api/auth/status` (whether the page must ask for a key).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::routes::{Family, Routes};
use super::AppState;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .post("/auth/login", login)
        .post("/auth/logout", logout)
        .get("/auth/status", status)
}

#[derive(Debug, Deserialize)]
struct Login {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Response> {
    if body.key.len() > 4096 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "key is too long",
        ));
    }
    match state.auth.login_with_key(&body.key).await? {
        Some(cookie) => Ok((
            StatusCode::NO_CONTENT,
            [(header::SET_COOKIE, cookie.set_cookie)],
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_key",
            "That is not the server's API key.",
        )),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let cookie = state.auth.logout(&headers).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let signed_in = state.auth.identify(&headers).await?.is_some();
    Ok(Json(serde_json::json!({
        "key_required": state.auth.required(),
        "signed_in": signed_in,
    })))
}
