//! `/api/agents`: saved assistant configurations with versions. `PUT` saves a new version and
//! makes it current; `GET /api/agents/{id}/versions` lists them, newest first.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use app::api::{limits, Agent, AgentInput, AgentMeta, AgentVersion, InternalTools};

use super::conversations::check_model;
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::routes::{Family, Routes};
use super::AppState;
use crate::store::{rfc3339, AgentRecord, AgentSettings};

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/agents", list)
        .post("/agents", create)
        .get("/agents/{id}", read)
        .put("/agents/{id}", save)
        .delete("/agents/{id}", remove)
        .get("/agents/{id}/versions", versions)
}

fn meta(settings: &AgentSettings) -> AgentMeta {
    AgentMeta {
        internal_tools: InternalTools {
            image_creation: settings.image_creation,
        },
    }
}

fn to_api(a: AgentRecord, user: &str) -> Agent {
    Agent {
        meta: meta(&a.settings),
        shared: a.shared,
        owned: a.user_id == user,
        id: a.id,
        name: a.settings.name,
        description: a.settings.description,
        instructions: a.settings.instructions,
        model: a.settings.model,
        version: a.version as u32,
        version_id: a.version_id,
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

/// Checks an agent's settings as sent and returns them as the store keeps them.
fn validate(state: &AppState, mut input: AgentInput) -> ApiResult<(AgentSettings, Option<bool>)> {
    input.name = input.name.trim().to_string();
    let name = input.name.chars().count();
    if name == 0 || name > limits::AGENT_NAME_MAX_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "name must be 1 to {} characters",
                limits::AGENT_NAME_MAX_CHARS
            ),
        ));
    }
    for (field, text) in [
        ("description", &input.description),
        ("instructions", &input.instructions),
    ] {
        if text.chars().count() > limits::AGENT_TEXT_MAX_CHARS {
            return Err(ApiError::unprocessable(
                "invalid_request",
                format!(
                    "{field} must be at most {} characters",
                    limits::AGENT_TEXT_MAX_CHARS
                ),
            ));
        }
    }
    input.model = input.model.take().filter(|m| !m.trim().is_empty());
    if let Some(m) = &input.model {
        check_model(state, m)?;
    }
    Ok((
        AgentSettings {
            name: input.name,
            description: input.description,
            instructions: input.instructions,
            model: input.model,
            image_creation: input.meta.internal_tools.image_creation,
        },
        input.shared,
    ))
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<Agent>>> {
    Ok(Json(
        state
            .store
            .list_agents(&user)
            .await?
            .into_iter()
            .map(|a| to_api(a, &user))
            .collect(),
    ))
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<AgentInput>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let (settings, shared) = validate(&state, input)?;
    let agent = state
        .store
        .create_agent(&user, &settings, shared.unwrap_or(false))
        .await?;
    Ok((StatusCode::CREATED, Json(to_api(agent, &user))))
}

async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    check_id("agent", &id)?;
    // Shared agents can be read (and used) by everyone; only the owner edits them.
    let agent = state
        .store
        .get_usable_agent(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(to_api(agent, &user)))
}

async fn save(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<AgentInput>,
) -> ApiResult<Json<Agent>> {
    check_id("agent", &id)?;
    let (settings, shared) = validate(&state, input)?;
    let agent = state
        .store
        .update_agent(&user, &id, &settings, shared)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(to_api(agent, &user)))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("agent", &id)?;
    if state.store.delete_agent(&user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("agent"))
    }
}

async fn versions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<AgentVersion>>> {
    check_id("agent", &id)?;
    let agent = state
        .store
        .get_agent(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let list = state.store.agent_versions(&id).await?;
    Ok(Json(
        list.into_iter()
            .map(|v| AgentVersion {
                current: v.id == agent.version_id,
                meta: meta(&v.settings),
                id: v.id,
                version: v.version as u32,
                name: v.settings.name,
                description: v.settings.description,
                instructions: v.settings.instructions,
                model: v.settings.model,
                created_at: rfc3339(v.created_at),
            })
            .collect(),
    ))
}
