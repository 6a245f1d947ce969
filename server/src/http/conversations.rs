//! `/api/conversations`: list, create (optionally from an agent), read with the history,
//! rename / switch model / toggle internal tools, delete, clear, export and import.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;

use app::api::{
    limits, Conversation, ConversationDetail, CreateConversation, ErrorDetail, Image,
    UpdateConversation,
};

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::routes::{Family, Routes};
use super::{wire, AppState};
use crate::chat::export::{self, ExportConversation, ExportDocument, ExportImage, ExportMessage};
use crate::store::{
    rfc3339, ConversationRecord, ImageBlob, ImageRecord, MessageStatus, NewConversation, RunStatus,
    Store,
};

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/conversations", list)
        .post("/conversations", create)
        .get("/conversations/{id}", read)
        .patch("/conversations/{id}", update)
        .delete("/conversations/{id}", remove)
        .delete("/conversations/{id}/messages", clear)
        .get("/conversations/{id}/export", export)
        .post_large("/conversations/import", import, export::IMPORT_MAX_BYTES)
}

/// Loads a conversation of the current user or answers 400/404.
pub async fn owned(store: &Store, user: &str, id: &str) -> ApiResult<ConversationRecord> {
    check_id("conversation", id)?;
    store
        .get_conversation(user, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Vec<Conversation>>> {
    let list = state.store.list_conversations(&user).await?;
    Ok(Json(
        list.iter().map(|c| wire::conversation(c, None)).collect(),
    ))
}

async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let title = body
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(t) = title {
        check_title(t)?;
    }
    if let Some(m) = &body.model {
        check_model(&state, m)?;
    }
    // With an agent: its current version's model and toggles are copied now; later edits of
    // the agent reach new conversations only.
    let (agent, version, mut model, mut image_creation) = match &body.agent_id {
        Some(agent_id) => {
            check_id("agent", agent_id)?;
            let agent = state
                .store
                .get_usable_agent(&user, agent_id)
                .await?
                .ok_or_else(|| ApiError::not_found("agent"))?;
            (
                Some(agent.id.clone()),
                Some(agent.version_id.clone()),
                agent.settings.model.clone(),
                agent.settings.image_creation,
            )
        }
        None => (None, None, None, false),
    };
    if body.model.is_some() {
        model = body.model.clone();
    }
    if let Some(t) = body.internal_tools {
        image_creation = t.image_creation;
    }
    let record = state
        .store
        .create_conversation(NewConversation {
            user_id: &user,
            title,
            agent_id: agent.as_deref(),
            agent_version_id: version.as_deref(),
            model: model.as_deref(),
            image_creation,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(wire::conversation(&record, None))))
}

#[derive(Debug, Default, Deserialize)]
struct ReadQuery {
    /// `url` to get image URLs instead of inline base64.
    images: Option<String>,
}

async fn read(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> ApiResult<Json<ConversationDetail>> {
    let record = owned(&state.store, &user, &id).await?;
    let inline = match query.images.as_deref() {
        None | Some("b64") | Some("inline") => true,
        Some("url") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "images must be `url` or `b64`",
            ))
        }
    };
    Ok(Json(detail(&state, &user, &record, inline).await?))
}

/// The conversation with its messages, images (inline or by URL) and the run still going.
pub async fn detail(
    state: &AppState,
    user: &str,
    record: &ConversationRecord,
    inline: bool,
) -> ApiResult<ConversationDetail> {
    let messages = state.store.list_messages(&record.id).await?;
    let images = state.store.images_of_conversation(&record.id).await?;
    let runs = state.store.runs_of_conversation(&record.id).await?;
    let credits = state.store.credits_by_message(&record.id).await?;
    let run_of: HashMap<&str, &str> = runs
        .iter()
        .map(|r| (r.assistant_message_id.as_str(), r.id.as_str()))
        .collect();
    let active = runs
        .iter()
        .rev()
        .find(|r| r.status == RunStatus::Running)
        .map(|r| r.id.clone());
    let mut by_message: HashMap<String, Vec<Image>> = HashMap::new();
    for image in images {
        let message_id = image.message_id.clone().unwrap_or_default();
        let api = image_to_api(&state.store, user, image, inline).await?;
        by_message.entry(message_id).or_default().push(api);
    }
    let messages = messages
        .into_iter()
        .map(|m| {
            let images = by_message.remove(&m.id).unwrap_or_default();
            let run_id = run_of.get(m.id.as_str()).map(|s| s.to_string());
            let spent = credits.get(&m.id).copied().unwrap_or(0);
            wire::message(m, images, run_id, spent)
        })
        .collect();
    Ok(ConversationDetail {
        conversation: wire::conversation(record, active),
        messages,
    })
}

pub async fn image_to_api(
    store: &Store,
    user: &str,
    image: ImageRecord,
    inline: bool,
) -> ApiResult<Image> {
    let b64 = if inline {
        let bytes = store
            .image_bytes(user, &image.id, ImageBlob::Png)
            .await?
            .unwrap_or_default();
        Some(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        None
    };
    Ok(wire::image(image, b64))
}

async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConversation>,
) -> ApiResult<Json<Conversation>> {
    let record = owned(&state.store, &user, &id).await?;
    if let Some(title) = &body.title {
        let title = title.trim();
        check_title(title)?;
        if title.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_request",
                "title must not be empty",
            ));
        }
        state.store.rename_conversation(&record.id, title).await?;
    }
    if let Some(model) = &body.model {
        if let Some(m) = model {
            check_model(&state, m)?;
        }
        state
            .store
            .set_conversation_model(&record.id, model.as_deref())
            .await?;
    }
    if let Some(tools) = body.internal_tools {
        state
            .store
            .set_image_creation(&record.id, tools.image_creation)
            .await?;
    }
    let record = owned(&state.store, &user, &id).await?;
    Ok(Json(wire::conversation(&record, None)))
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let record = owned(&state.store, &user, &id).await?;
    cancel_active_run(&state, &record.id).await?;
    state.store.delete_conversation(&user, &record.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let record = owned(&state.store, &user, &id).await?;
    cancel_active_run(&state, &record.id).await?;
    state.store.clear_messages(&record.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A deleted conversation's run would otherwise keep painting into nothing.
async fn cancel_active_run(state: &AppState, conversation_id: &str) -> ApiResult<()> {
    if let Some(run) = state.store.active_run(conversation_id).await? {
        state.runs.cancel(&run.id).await?;
    }
    Ok(())
}

fn check_title(title: &str) -> ApiResult<()> {
    let n = title.chars().count();
    if n > limits::TITLE_MAX_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "title must be at most {} characters (got {n})",
                limits::TITLE_MAX_CHARS
            ),
        ));
    }
    Ok(())
}

pub fn check_model(state: &AppState, model: &str) -> ApiResult<()> {
    if model.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "unknown_model",
            "model is too long",
        ));
    }
    state
        .providers
        .resolve(Some(model))
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable("unknown_model", e.message))
}

// ----- export / import -----

async fn export(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let record = owned(&state.store, &user, &id).await?;
    let messages = state.store.list_messages(&record.id).await?;
    let images = state.store.images_of_conversation(&record.id).await?;
    let mut by_message: HashMap<String, Vec<ExportImage>> = HashMap::new();
    for image in images {
        let png = state
            .store
            .image_bytes(&user, &image.id, ImageBlob::Png)
            .await?
            .unwrap_or_default();
        by_message
            .entry(image.message_id.clone().unwrap_or_default())
            .or_default()
            .push(ExportImage {
                id: image.id,
                width: image.width as u32,
                height: image.height as u32,
                png: base64::engine::general_purpose::STANDARD.encode(png),
                metadata: wire::metadata(image.metadata),
            });
    }
    let document = ExportDocument {
        format: export::EXPORT_FORMAT.into(),
        version: 1,
        conversation: ExportConversation {
            title: record.title.clone(),
            model: record.model.clone(),
            internal_tools: app::api::InternalTools {
                image_creation: record.image_creation,
            },
            created_at: rfc3339(record.created_at),
        },
        messages: messages
            .into_iter()
            .filter(|m| m.status != MessageStatus::Running)
            .map(|m| ExportMessage {
                images: by_message.remove(&m.id).unwrap_or_default(),
                error: m.error_code.map(|code| ErrorDetail {
                    code,
                    message: m.error_message.unwrap_or_default(),
                }),
                id: m.id,
                role: m.role.as_str().into(),
                content: m.content,
                status: m.status.as_str().into(),
                model: m.model,
                tool_calls: m.tool_calls.into_iter().map(wire::tool_call).collect(),
                created_at_ms: m.created_at,
            })
            .collect(),
    };
    let name = crate::http::images::file_name(&record.title, "json");
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )],
        Json(document),
    ))
}

async fn import(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(doc): ApiJson<ExportDocument>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    // Decoding every image takes a while: off the async threads.
    let owner = user.clone();
    let plan = tokio::task::spawn_blocking(move || export::plan_import(doc, &owner))
        .await
        .map_err(|e| ApiError::internal(format!("the import stopped: {e}")))?
        .map_err(|reason| ApiError::unprocessable("invalid_request", reason))?;
    let model = plan
        .model
        .as_deref()
        .filter(|m| state.providers.resolve(Some(m)).is_ok());
    let record = state
        .store
        .insert_conversation_with_history(
            NewConversation {
                user_id: &user,
                title: Some(if plan.title.is_empty() {
                    crate::store::UNTITLED
                } else {
                    &plan.title
                }),
                agent_id: None,
                agent_version_id: None,
                model,
                image_creation: plan.image_creation,
            },
            plan.messages,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(wire::conversation(&record, None))))
}
