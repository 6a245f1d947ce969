//! `/api/agents`: saved assistant configurations with versions. `PUT` saves a new version and
//! makes it current; `GET /api/agents/{id}/versions` lists them, newest first.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use app::api::{limits, Agent, AgentInput, AgentVersion};

use super::conversations::check_model;
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::AppState;
use crate::store::{rfc3339, AgentRecord};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents", get(list).post(create))
        .route("/agents/{id}", get(read).put(save).delete(remove))
        .route("/agents/{id}/versions", get(versions))
}

fn to_api(a: AgentRecord) -> Agent {
    Agent {
        id: a.id,
        name: a.name,
        description: a.description,
        instructions: a.instructions,
        model: a.model,
        meta: a.meta,
        version: a.version as u32,
        version_id: a.version_id,
        created_at: rfc3339(a.created_at),
        updated_at: rfc3339(a.updated_at),
    }
}

fn validate(state: &AppState, input: &mut AgentInput) -> ApiResult<()> {
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
    Ok(())
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
            .map(to_api)
            .collect(),
    ))
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(mut input): ApiJson<AgentInput>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    validate(&state, &mut input)?;
    Ok((
        StatusCode::CREATED,
        Json(to_api(state.store.create_agent(&user, &input).await?)),
    ))
}

async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    check_id("agent", &id)?;
    let agent = state
        .store
        .get_agent(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(to_api(agent)))
}

async fn save(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<AgentInput>,
) -> ApiResult<Json<Agent>> {
    check_id("agent", &id)?;
    validate(&state, &mut input)?;
    let agent = state
        .store
        .update_agent(&user, &id, &input)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(to_api(agent)))
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
                id: v.id,
                version: v.version as u32,
                name: v.name,
                description: v.description,
                instructions: v.instructions,
                model: v.model,
                meta: v.meta,
                created_at: rfc3339(v.created_at),
            })
            .collect(),
    ))
}
