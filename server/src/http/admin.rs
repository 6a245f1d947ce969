//! The admin's routes (`role = admin` only; anyone else gets 404, as if they did not exist):
//! `GET/POST /api/admin/users`, `PATCH /api/admin/users/{id}`, `GET/PUT /api/admin/settings`,
//! `GET /api/admin/usage`, `GET /api/admin/workers`.
//!
//! Admins manage accounts and settings; they do not read other people's conversations (no route
//! here returns them, and the normal routes only ever show one's own).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use app::api::{AccountForm, AdminUser as AdminUserView};

use super::account::{auth_error, role};
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, AdminUser, ApiJson};
use super::routes::{Family, Routes};
use super::AppState;
use crate::auth::credits::{CreditSettings, Period};
use crate::auth::{self, Registration, ServerSettings};
use crate::store::{now_ms, rfc3339, UserRecord, UserRole};

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/admin/users", users)
        .post("/admin/users", create_user)
        .patch("/admin/users/{id}", update_user)
        .get("/admin/settings", settings)
        .put("/admin/settings", put_settings)
        .get("/admin/usage", usage)
        .get("/admin/workers", workers)
}

/// The processes sharing the database: web nodes and image workers, their models, provider,
/// current job and recent throughput.
async fn workers(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> ApiResult<Json<Vec<app::api::WorkerInfo>>> {
    let (nodes, rates) = state.cluster.nodes().await?;
    Ok(Json(super::wire::workers(nodes, &rates, true)))
}

fn view(u: UserRecord) -> AdminUserView {
    AdminUserView {
        id: u.id,
        email: u.email,
        name: u.name,
        role: u.role.as_str().into(),
        disabled: u.disabled,
        pending: u.pending,
        credits: u.credits,
        allowance: u.allowance,
        created_at: rfc3339(u.created_at),
    }
}

async fn users(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> ApiResult<Json<Vec<AdminUserView>>> {
    let users = state.store.list_users().await?;
    Ok(Json(users.into_iter().map(view).collect()))
}

async fn create_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<AccountForm>,
) -> ApiResult<(StatusCode, Json<AdminUserView>)> {
    let role = role(body.role.as_deref())?;
    let user = state
        .auth
        .create(
            auth::AccountForm {
                name: body.name,
                email: body.email,
                password: body.password,
            },
            role,
            false,
        )
        .await?
        .map_err(auth_error)?;
    Ok((StatusCode::CREATED, Json(view(user))))
}

/// `PATCH /api/admin/users/{id}`: any of role, disabled, password, credits, allowance.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    role: Option<String>,
    disabled: Option<bool>,
    password: Option<String>,
    credits: Option<CreditsPatch>,
    /// `null` resets to the default allowance; absent leaves it.
    #[serde(default, with = "double_option")]
    allowance: Option<Option<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditsPatch {
    set_balance: Option<i64>,
    grant: Option<i64>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}

const MAX_CREDITS: i64 = 1_000_000_000;

async fn update_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<AdminUserView>> {
    if id != crate::store::LOCAL_USER {
        check_id("user", &id)?;
    }
    let user = state
        .store
        .get_user(&id)
        .await?
        .filter(|u| u.email.is_some())
        .ok_or_else(|| ApiError::not_found("user"))?;
    // An admin cannot take away the last admin (nobody could undo it).
    let demotes = patch.role.as_deref() == Some("user") || patch.disabled == Some(true);
    if demotes && user.role == UserRole::Admin && state.store.count_admins().await? <= 1 {
        return Err(ApiError::conflict(
            "This is the only admin; make someone else admin first.",
        ));
    }
    if let Some(r) = &patch.role {
        state.store.set_role(&user.id, role(Some(r))?).await?;
    }
    if let Some(password) = &patch.password {
        state
            .auth
            .reset_password(&user.id, password)
            .await?
            .map_err(auth_error)?;
    }
    if let Some(credits) = &patch.credits {
        let check = |v: i64, what: &str| {
            if v.abs() > MAX_CREDITS {
                Err(ApiError::unprocessable(
                    "invalid_request",
                    format!("{what} must be at most {MAX_CREDITS}"),
                ))
            } else {
                Ok(v)
            }
        };
        match (credits.set_balance, credits.grant) {
            (Some(balance), None) => {
                state
                    .store
                    .set_credits(&user.id, check(balance, "set_balance")?.max(0))
                    .await?
            }
            (None, Some(grant)) => {
                state
                    .store
                    .grant_credits(&user.id, check(grant, "grant")?)
                    .await?
            }
            _ => {
                return Err(ApiError::unprocessable(
                    "invalid_request",
                    "credits takes one of set_balance or grant",
                ))
            }
        }
    }
    if let Some(allowance) = patch.allowance {
        if allowance.is_some_and(|a| !(0..=MAX_CREDITS).contains(&a)) {
            return Err(ApiError::unprocessable(
                "invalid_request",
                format!("allowance must be 0 to {MAX_CREDITS} or null"),
            ));
        }
        state.store.set_allowance(&user.id, allowance).await?;
    }
    if let Some(disabled) = patch.disabled {
        if disabled && user.id == admin.user_id {
            return Err(ApiError::conflict("You cannot disable yourself."));
        }
        state.store.set_disabled(&user.id, disabled).await?;
    }
    let user = state
        .store
        .get_user(&user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(view(user)))
}

fn settings_json(s: &ServerSettings) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

async fn settings(State(state): State<AppState>, _admin: AdminUser) -> ApiResult<Json<Value>> {
    Ok(Json(settings_json(&state.auth.credits().settings().await?)))
}

/// `PUT /api/admin/settings`: any of `registration`, `credits` (any of `enabled`,
/// `default_allowance`, `period`), `model_costs` (merged; a cost of `null` removes one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    registration: Option<Registration>,
    credits: Option<CreditsSettingsPatch>,
    model_costs: Option<HashMap<String, Option<i64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditsSettingsPatch {
    enabled: Option<bool>,
    default_allowance: Option<i64>,
    period: Option<Period>,
}

async fn put_settings(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> ApiResult<Json<Value>> {
    let mut settings = state.auth.credits().settings().await?;
    if let Some(r) = patch.registration {
        settings.registration = r;
    }
    if let Some(c) = patch.credits {
        let CreditSettings {
            enabled,
            default_allowance,
            period,
        } = settings.credits.clone();
        let allowance = c.default_allowance.unwrap_or(default_allowance);
        if !(0..=MAX_CREDITS).contains(&allowance) {
            return Err(ApiError::unprocessable(
                "invalid_request",
                format!("default_allowance must be 0 to {MAX_CREDITS}"),
            ));
        }
        settings.credits = CreditSettings {
            enabled: c.enabled.unwrap_or(enabled),
            default_allowance: allowance,
            period: c.period.unwrap_or(period),
        };
    }
    if let Some(costs) = patch.model_costs {
        if costs.len() > 1000 {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "too many models",
            ));
        }
        for (model, cost) in costs {
            if model.is_empty() || model.chars().count() > 200 {
                return Err(ApiError::unprocessable(
                    "invalid_request",
                    "model ids must be 1 to 200 characters",
                ));
            }
            match cost {
                Some(c) if (0..=1_000_000).contains(&c) => {
                    settings.model_costs.insert(model, c);
                }
                Some(_) => {
                    return Err(ApiError::unprocessable(
                        "invalid_request",
                        "a model cost must be 0 to 1000000",
                    ))
                }
                None => {
                    settings.model_costs.remove(&model);
                }
            }
        }
    }
    state.auth.credits().put_settings(&settings).await?;
    Ok(Json(settings_json(&settings)))
}

#[derive(Debug, Default, Deserialize)]
struct UsageQuery {
    /// The period's length in days, ending now (default 30).
    days: Option<i64>,
}

async fn usage(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    let to = now_ms();
    let from = to - days * 86_400_000;
    let rows = state.store.usage(from, to).await?;
    let per_day = state.store.usage_by_day(from, to).await?;
    let users: HashMap<String, UserRecord> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id.clone(), u))
        .collect();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let user = users.get(&r.user_id);
            json!({
                "user_id": r.user_id,
                "email": user.and_then(|u| u.email.clone()),
                "name": user.map(|u| u.name.clone()),
                "model": r.model,
                "jobs": r.jobs,
                "images": r.images,
                "credits": r.credits,
                "engine_seconds": r.engine_ms as f64 / 1000.0,
            })
        })
        .collect();
    let per_day: Vec<Value> = per_day
        .into_iter()
        .map(|d| json!({"day": rfc3339(d.day)[..10].to_string(), "images": d.images, "credits": d.credits}))
        .collect();
    Ok(Json(json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "rows": rows,
        "days": per_day,
    })))
}
