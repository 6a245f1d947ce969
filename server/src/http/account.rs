//! Signing in and one's own account:
//!
//! - `GET /api/auth/status` (what the page must show first), `POST /api/auth/setup` (the first
//!   admin, once), `POST /api/auth/signup` (when registration allows it), `POST /api/auth/login`
//!   (email and password, or the server's key without accounts), `POST /api/auth/logout`;
//! - `GET /api/me`, `POST /api/me/password`;
//! - `GET/POST /api/keys`, `DELETE /api/keys/{id}`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use app::api::{
    AccountForm, ApiKey, AuthStatus, CreatedApiKey, CreditsInfo, LoginForm, Me, NewApiKey,
    PasswordChange,
};

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, Caller, ClientAddress, CurrentUser};
use super::routes::{Family, Routes};
use super::AppState;
use crate::auth::{self, AuthError, AuthMode, Registration};
use crate::store::{rfc3339, UserRecord, UserRole};

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/auth/status", status)
        .post("/auth/setup", setup)
        .post("/auth/signup", signup)
        .post("/auth/login", login)
        .post("/auth/logout", logout)
        .get("/me", me)
        .post("/me/password", change_password)
        .get("/keys", list_keys)
        .post("/keys", create_key)
        .delete("/keys/{id}", delete_key)
}

/// An account refusal in Easel's error shape, with the status that fits it.
pub fn auth_error(e: AuthError) -> ApiError {
    let (status, code) = match &e {
        AuthError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        AuthError::WrongCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        AuthError::Locked(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        AuthError::Disabled => (StatusCode::FORBIDDEN, "account_disabled"),
        AuthError::Pending => (StatusCode::FORBIDDEN, "account_pending"),
        AuthError::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
        AuthError::AlreadySetUp => (StatusCode::CONFLICT, "already_set_up"),
        AuthError::RegistrationClosed => (StatusCode::FORBIDDEN, "registration_closed"),
    };
    let retry = match &e {
        AuthError::Locked(wait) => Some(wait.as_secs().max(1)),
        _ => None,
    };
    let error = ApiError::new(status, code, e.to_string());
    match retry {
        Some(seconds) => error.retry_after(seconds),
        None => error,
    }
}

fn form(body: AccountForm) -> auth::AccountForm {
    auth::AccountForm {
        name: body.name,
        email: body.email,
        password: body.password,
    }
}

/// The account as its owner sees it.
pub async fn me_of(state: &AppState, user: &UserRecord) -> ApiResult<Me> {
    let balance = state.auth.credits().balance(&user.id).await?;
    Ok(Me {
        id: user.id.clone(),
        email: user.email.clone(),
        name: user.name.clone(),
        role: user.role.as_str().into(),
        credits: CreditsInfo {
            balance: balance.balance,
            enabled: balance.enabled,
            allowance: balance.allowance,
            refills_at: balance.refills_at.map(rfc3339),
        },
    })
}

fn with_cookie(status: StatusCode, cookie: String, body: impl IntoResponse) -> Response {
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<AuthStatus>> {
    let settings = state.auth.credits().settings().await?;
    Ok(Json(AuthStatus {
        mode: match state.auth.mode() {
            AuthMode::Accounts => "accounts",
            AuthMode::None => "none",
        }
        .into(),
        setup_needed: state.auth.setup_needed().await?,
        key_required: state.auth.mode() == AuthMode::None && state.auth.required(),
        signed_in: state.auth.identify(&headers).await?.is_some(),
        registration: match settings.registration {
            Registration::Closed => "closed",
            Registration::Open => "open",
            Registration::Approval => "approval",
        }
        .into(),
    }))
}

async fn setup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AccountForm>,
) -> ApiResult<Response> {
    if state.auth.mode() != AuthMode::Accounts {
        return Err(ApiError::conflict("Accounts are off (EASEL_AUTH=none)."));
    }
    let user = state.auth.setup(form(body)).await?.map_err(auth_error)?;
    // The new admin is signed in at once.
    let cookie = state.auth.open_session(&user.id).await?;
    let me = me_of(&state, &user).await?;
    Ok(with_cookie(
        StatusCode::CREATED,
        cookie.set_cookie,
        Json(me),
    ))
}

async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AccountForm>,
) -> ApiResult<Response> {
    if state.auth.mode() != AuthMode::Accounts {
        return Err(auth_error(AuthError::RegistrationClosed));
    }
    let user = state.auth.signup(form(body)).await?.map_err(auth_error)?;
    if user.pending {
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"status": "pending", "message": "Your account waits for an administrator's approval."})),
        )
            .into_response());
    }
    let cookie = state.auth.open_session(&user.id).await?;
    let me = me_of(&state, &user).await?;
    Ok(with_cookie(
        StatusCode::CREATED,
        cookie.set_cookie,
        Json(me),
    ))
}

async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<LoginForm>,
) -> ApiResult<Response> {
    if let Some(key) = body
        .key
        .as_deref()
        .filter(|_| state.auth.mode() == AuthMode::None)
    {
        return match state.auth.login_with_key(key).await? {
            Some(cookie) => Ok(with_cookie(StatusCode::NO_CONTENT, cookie.set_cookie, ())),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_key",
                "That is not the server's API key.",
            )),
        };
    }
    if state.auth.mode() != AuthMode::Accounts {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "Send the server's API key as `key`.",
        ));
    }
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "Send `email` and `password`.",
        ));
    };
    let (user, cookie) = state
        .auth
        .login(&email, &password, &client)
        .await?
        .map_err(auth_error)?;
    let me = me_of(&state, &user).await?;
    Ok(with_cookie(StatusCode::OK, cookie.set_cookie, Json(me)))
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let cookie = state.auth.logout(&headers).await?;
    Ok(with_cookie(StatusCode::NO_CONTENT, cookie, ()))
}

async fn me(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<Me>> {
    let record = state
        .store
        .get_user(&user)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(me_of(&state, &record).await?))
}

async fn change_password(
    State(state): State<AppState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    if state.auth.mode() != AuthMode::Accounts {
        return Err(ApiError::conflict("Accounts are off (EASEL_AUTH=none)."));
    }
    state
        .auth
        .change_password(&who, &body.current, &body.new)
        .await?
        .map_err(auth_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn key_to_api(k: crate::store::ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        created_at: rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(rfc3339),
        expires_at: k.expires_at.map(rfc3339),
    }
}

async fn list_keys(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<ApiKey>>> {
    let keys = state.store.list_api_keys(&user).await?;
    Ok(Json(keys.into_iter().map(key_to_api).collect()))
}

async fn create_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    if state.auth.mode() != AuthMode::Accounts {
        return Err(ApiError::conflict(
            "API keys belong to accounts (EASEL_AUTH=none uses EASEL_API_KEY).",
        ));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_request",
            "name must be 1 to 100 characters",
        ));
    }
    let expires_at = match body
        .expires_at
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(text) => Some(parse_time(text).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_request",
                "expires_at must be a date (2027-01-31) or an RFC 3339 time",
            )
        })?),
    };
    let key = state.auth.create_key(&user, name, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            id: key.record.id,
            name: key.record.name,
            prefix: key.record.prefix,
            key: key.key,
        }),
    ))
}

async fn delete_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("key", &id)?;
    if state.store.delete_api_key(&user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("key"))
    }
}

/// `2027-01-31` or `2027-01-31T12:00:00Z` (UTC) → ms.
pub fn parse_time(text: &str) -> Option<i64> {
    let date = text.get(0..10)?;
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let mut ms = crate::auth::credits::days_from_civil(y, m, d) * 86_400_000;
    if text.len() > 10 {
        let time = text.get(11..19)?;
        let mut t = time.split(':');
        let h: i64 = t.next()?.parse().ok()?;
        let min: i64 = t.next()?.parse().ok()?;
        let s: i64 = t.next()?.parse().ok()?;
        if h > 23 || min > 59 || s > 60 {
            return None;
        }
        ms += ((h * 60 + min) * 60 + s) * 1000;
    }
    Some(ms)
}

/// The role a form names.
pub fn role(text: Option<&str>) -> ApiResult<UserRole> {
    match text.unwrap_or("user") {
        "user" => Ok(UserRole::User),
        "admin" => Ok(UserRole::Admin),
        other => Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "role must be user or admin, not `{}`",
                other.chars().take(20).collect::<String>()
            ),
        )),
    }
}
