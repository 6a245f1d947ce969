//! `/api/conversations`: list, create (optionally from an agent), read with the history,
//! rename / switch model / toggle internal tools, delete, clear, export and import.

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use app::api::{
    limits, Conversation, ConversationDetail, CreateConversation, ErrorDetail, Image,
    InternalTools, Message, UpdateConversation,
};

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::AppState;
use crate::store::{
    new_id, rfc3339, ConversationRecord, ImageBlob, ImageRecord, MessageRecord, NewConversation,
    NewImage, Store,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list).post(create))
        .route(
            "/conversations/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/conversations/{id}/messages", axum::routing::delete(clear))
        .route("/conversations/{id}/export", get(export))
}

/// Import takes a whole exported conversation, images included, so it has its own limit.
pub fn import_router() -> Router<AppState> {
    Router::new()
        .route("/conversations/import", post(import))
        .layer(DefaultBodyLimit::max(IMPORT_MAX_BYTES))
}

const IMPORT_MAX_BYTES: usize = 512 * 1024 * 1024;

pub fn to_api(c: &ConversationRecord, active_run_id: Option<String>) -> Conversation {
    Conversation {
        id: c.id.clone(),
        title: c.title.clone(),
        agent_id: c.agent_id.clone(),
        model: c.model.clone(),
        internal_tools: c.internal_tools,
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        active_run_id,
    }
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
    Ok(Json(list.iter().map(|c| to_api(c, None)).collect()))
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
    let (agent, version, mut model, mut tools) = match &body.agent_id {
        Some(agent_id) => {
            check_id("agent", agent_id)?;
            let agent = state
                .store
                .get_agent(&user, agent_id)
                .await?
                .ok_or_else(|| ApiError::not_found("agent"))?;
            (
                Some(agent.id.clone()),
                Some(agent.version_id.clone()),
                agent.model.clone(),
                agent.meta.internal_tools,
            )
        }
        None => (None, None, None, InternalTools::default()),
    };
    if body.model.is_some() {
        model = body.model.clone();
    }
    if let Some(t) = body.internal_tools {
        tools = t;
    }
    let record = state
        .store
        .create_conversation(NewConversation {
            user_id: &user,
            title,
            agent_id: agent.as_deref(),
            agent_version_id: version.as_deref(),
            model: model.as_deref(),
            internal_tools: tools,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(to_api(&record, None))))
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
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("images must be `url` or `b64`, not `{other}`"),
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
    let run_of: HashMap<&str, &str> = runs
        .iter()
        .map(|r| (r.assistant_message_id.as_str(), r.id.as_str()))
        .collect();
    let active = runs
        .iter()
        .rev()
        .find(|r| r.status == "running")
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
            message_to_api(m, images, run_id)
        })
        .collect();
    Ok(ConversationDetail {
        conversation: to_api(record, active),
        messages,
    })
}

pub fn message_to_api(m: MessageRecord, images: Vec<Image>, run_id: Option<String>) -> Message {
    Message {
        error: m.error_code.map(|code| ErrorDetail {
            code,
            message: m.error_message.unwrap_or_default(),
        }),
        id: m.id,
        role: m.role,
        content: m.content,
        status: m.status,
        model: m.model,
        run_id,
        images,
        tool_calls: m.tool_calls,
        created_at: rfc3339(m.created_at),
    }
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
    Ok(Image {
        url: (!inline).then(|| app::api::image_url(&image.id, "png")),
        thumbnail_url: app::api::thumbnail_url(&image.id),
        b64,
        mime: "image/png".into(),
        width: image.width as u32,
        height: image.height as u32,
        metadata: image.metadata,
        id: image.id,
    })
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
        state.store.set_internal_tools(&record.id, tools).await?;
    }
    let record = owned(&state.store, &user, &id).await?;
    Ok(Json(to_api(&record, None)))
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
        if let Some(handle) = state.runs.get(&run.id) {
            handle.cancel();
        }
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
    state
        .providers
        .resolve(Some(model))
        .map(|_| ())
        .map_err(|e| ApiError::unprocessable("unknown_model", e.message))
}

// ----- export / import -----

/// The export document: the conversation, every message, images inline as base64 PNG.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub version: u32,
    pub conversation: ExportConversation,
    pub messages: Vec<ExportMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportConversation {
    pub title: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub internal_tools: InternalTools,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportMessage {
    pub id: String,
    pub role: String,
    pub content: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<app::api::ToolCallRecord>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub images: Vec<ExportImage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportImage {
    pub id: String,
    pub width: u32,
    pub height: u32,
    /// Base64 PNG.
    pub png: String,
    pub metadata: app::api::ImageMetadata,
}

const EXPORT_FORMAT: &str = "easel.conversation";

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
                metadata: image.metadata,
            });
    }
    let document = ExportDocument {
        format: EXPORT_FORMAT.into(),
        version: 1,
        conversation: ExportConversation {
            title: record.title.clone(),
            model: record.model.clone(),
            internal_tools: record.internal_tools,
            created_at: rfc3339(record.created_at),
        },
        messages: messages
            .into_iter()
            .filter(|m| m.status != "running")
            .map(|m| ExportMessage {
                images: by_message.remove(&m.id).unwrap_or_default(),
                error: m.error_code.map(|code| ErrorDetail {
                    code,
                    message: m.error_message.unwrap_or_default(),
                }),
                id: m.id,
                role: m.role,
                content: m.content,
                status: m.status,
                model: m.model,
                tool_calls: m.tool_calls,
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
    if doc.format != EXPORT_FORMAT || doc.version != 1 {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "not an Easel export (format `{}`, version {})",
                doc.format, doc.version
            ),
        ));
    }
    check_title(&doc.conversation.title)?;
    // Fresh ids for everything; references to old image ids in tool results are rewritten, so
    // the LLM can still refine an imported picture by id.
    let mut id_map: Vec<(String, String)> = Vec::new();
    let mut decoded: Vec<Vec<(ExportImage, Vec<u8>)>> = Vec::new();
    for m in &doc.messages {
        if !["user", "assistant"].contains(&m.role.as_str())
            || !["complete", "cancelled", "failed"].contains(&m.status.as_str())
        {
            return Err(ApiError::unprocessable(
                "invalid_request",
                format!("message {} has an unknown role or status", m.id),
            ));
        }
        let mut images = Vec::new();
        for image in &m.images {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&image.png)
                .map_err(|_| {
                    ApiError::unprocessable(
                        "invalid_request",
                        format!("image {} is not valid base64", image.id),
                    )
                })?;
            crate::imaging::encode::decode(&bytes).map_err(|e| {
                ApiError::unprocessable("invalid_request", format!("image {}: {e}", image.id))
            })?;
            id_map.push((image.id.clone(), new_id()));
            images.push((
                ExportImage {
                    id: image.id.clone(),
                    width: image.width,
                    height: image.height,
                    png: String::new(),
                    metadata: image.metadata.clone(),
                },
                bytes,
            ));
        }
        decoded.push(images);
    }
    let record = state
        .store
        .create_conversation(NewConversation {
            user_id: &user,
            title: Some(&doc.conversation.title),
            agent_id: None,
            agent_version_id: None,
            model: doc
                .conversation
                .model
                .as_deref()
                .filter(|m| state.providers.resolve(Some(m)).is_ok()),
            internal_tools: doc.conversation.internal_tools,
        })
        .await?;
    let remap = |text: &str| {
        id_map
            .iter()
            .fold(text.to_string(), |t, (old, new)| t.replace(old, new))
    };
    for (m, images) in doc.messages.iter().zip(decoded) {
        let record_message = MessageRecord {
            id: String::new(),
            conversation_id: record.id.clone(),
            user_id: user.clone(),
            role: m.role.clone(),
            content: m.content.clone(),
            status: m.status.clone(),
            error_code: m.error.as_ref().map(|e| e.code.clone()),
            error_message: m.error.as_ref().map(|e| e.message.clone()),
            model: m.model.clone(),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| app::api::ToolCallRecord {
                    arguments: remap(&c.arguments),
                    result: remap(&c.result),
                    ..c.clone()
                })
                .collect(),
            created_at: m.created_at_ms,
            updated_at: m.created_at_ms,
        };
        let mut new_images = Vec::new();
        for (position, (image, bytes)) in images.into_iter().enumerate() {
            let rgb = crate::imaging::encode::decode(&bytes)
                .map_err(|e| ApiError::unprocessable("invalid_request", e.to_string()))?;
            let thumbnail = crate::imaging::encode::thumbnail(&rgb)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let id = id_map
                .iter()
                .find(|(old, _)| *old == image.id)
                .map(|(_, new)| new.clone())
                .unwrap_or_else(new_id);
            new_images.push(NewImage {
                id,
                user_id: user.clone(),
                message_id: None,
                conversation_id: Some(record.id.clone()),
                source: "chat",
                position: position as u32,
                width: rgb.width(),
                height: rgb.height(),
                png: bytes,
                thumbnail,
                metadata: image.metadata,
            });
        }
        state
            .store
            .import_message(&record.id, &record_message, &new_images)
            .await?;
    }
    Ok((StatusCode::CREATED, Json(to_api(&record, None))))
}
