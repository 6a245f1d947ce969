//! Image Studio's API: direct control of the engine without a chat.
//!
//! - `POST /api/studio/generations` starts a job (202 `{job_id}`); its events (`image.queued`,
//!   `image.progress` with previews, `image.done`, then `run.finished` / `run.cancelled` /
//!   `run.error`) stream from `GET /api/studio/jobs/{id}/events`, and
//!   `POST /api/studio/jobs/{id}/cancel` stops it. Results are kept in a per-user gallery.
//! - `GET /api/studio/images` lists the gallery; `DELETE /api/images/{id}` removes one.
//! - `POST /api/studio/images/{id}/chat` starts a conversation holding the image.
//! - `POST /api/studio/enhance` has the configured LLM rewrite a prompt.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use app::api::events::{self as ev, ImageDone, ImageQueued};
use app::api::{
    EnhanceRequest, EnhanceResponse, Image, InternalTools, SentToChat, StudioJob, StudioRequest,
    ToolCallRecord,
};

use super::conversations::image_to_api;
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::AppState;
use crate::chat::llm::{ChatMessage, LlmDelta, LlmProvider, LlmRequest};
use crate::chat::run::RunHandle;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::paint::{paint, progress_events, PaintEvent};
use crate::imaging::request::{
    self, GenerationRequest, ImageParams, Quality, SizeChoice, SizePolicy,
};
use crate::imaging::{edit, encode, EngineError};
use crate::store::{new_id, now_ms, ImageBlob, MessageRecord, NewConversation, NewImage};
use crate::tools::styles;

/// Uploaded source images and masks travel as base64 in the JSON body.
const STUDIO_MAX_BYTES: usize = 40 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/studio/generations",
            post(start).layer(DefaultBodyLimit::max(STUDIO_MAX_BYTES)),
        )
        .route("/studio/jobs/{id}/events", get(events))
        .route("/studio/jobs/{id}/cancel", post(cancel))
        .route("/studio/images", get(gallery))
        .route("/studio/images/{id}/chat", post(send_to_chat))
        .route("/studio/enhance", post(enhance))
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_request", format!("{field}: {}", message.into()))
}

async fn start(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<StudioRequest>,
) -> ApiResult<(StatusCode, Json<StudioJob>)> {
    let model = state
        .engine
        .model(body.model.as_deref())
        .map_err(|e| match e {
            EngineError::UnknownModel(_) => bad("model", e.to_string()),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_image_model",
                other.to_string(),
            ),
        })?;
    let (prompt, negative) =
        styles::apply(body.style.as_deref(), &body.prompt, &body.negative_prompt);
    let mut params = ImageParams {
        prompt,
        negative_prompt: negative,
        n: Some(i64::from(body.n)),
        size: SizeChoice::parse(&body.size)
            .ok_or_else(|| bad("size", "must be auto or WIDTHxHEIGHT"))?,
        quality: match &body.quality {
            Some(q) => Quality::parse(q)
                .ok_or_else(|| bad("quality", "must be auto, low, medium or high"))?,
            None => Quality::Auto,
        },
        steps: body.steps.map(i64::from),
        guidance: body.guidance,
        sampler: body.sampler.clone(),
        schedule: body.schedule.clone(),
        seed: body.seed,
        preview: PreviewRate::parse(&body.preview)
            .ok_or_else(|| bad("preview", "must be faster, normal or none"))?,
        ..ImageParams::default()
    };

    // An edit: the source comes from the gallery/history or an upload; the mask is optional.
    let source = match (&body.source_image_id, &body.source_image_b64) {
        (Some(id), _) => {
            check_id("image", id)?;
            Some(
                state
                    .store
                    .image_bytes(&user, id, ImageBlob::Png)
                    .await?
                    .ok_or_else(|| ApiError::not_found("source image"))?,
            )
        }
        (None, Some(b64)) => Some(decode_b64("source_image_b64", b64)?),
        (None, None) => None,
    };
    if let Some(bytes) = source {
        let rgb = encode::decode(&bytes).map_err(|e| bad("source image", e.to_string()))?;
        let size = match params.size {
            SizeChoice::Exact(w, h) => (w, h),
            SizeChoice::Auto => edit::fit_size(rgb.dimensions(), model.presets.max_size),
        };
        params.size = SizeChoice::Exact(size.0, size.1);
        let mask = body
            .mask_b64
            .as_deref()
            .map(|m| decode_b64("mask_b64", m))
            .transpose()?;
        let strength = body
            .strength
            .unwrap_or(if mask.is_some() { 1.0 } else { 0.6 });
        params.edit = Some(
            edit::edit_input(&rgb, mask.as_deref(), strength, size)
                .map_err(|e| bad("mask", e.to_string()))?,
        );
    }
    let request = request::resolve(params, &model, SizePolicy::AnyMultipleOf8)
        .map_err(|e| bad(e.field, e.message))?;

    let job_id = new_id();
    let job = Arc::new(RunHandle::new(
        job_id.clone(),
        user.clone(),
        String::new(),
        String::new(),
    ));
    state.studio.insert(job.clone());
    // What is stored with each image: the request as sent, without the large uploads.
    let mut arguments = serde_json::to_value(&body).unwrap_or_default();
    if let Some(obj) = arguments.as_object_mut() {
        obj.remove("source_image_b64");
        obj.remove("mask_b64");
    }
    let source_id = body.source_image_id.clone();
    tokio::spawn(run_job(state.clone(), job, request, arguments, source_id));
    Ok((StatusCode::ACCEPTED, Json(StudioJob { job_id })))
}

fn decode_b64(field: &str, text: &str) -> ApiResult<Vec<u8>> {
    // Accept `data:image/png;base64,…` as the browser produces it.
    let data = text.split_once("base64,").map(|(_, d)| d).unwrap_or(text);
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| bad(field, "is not valid base64"))
}

async fn run_job(
    state: AppState,
    job: Arc<RunHandle>,
    request: GenerationRequest,
    arguments: serde_json::Value,
    source_id: Option<String>,
) {
    let store = state.store.clone();
    let user = job.user_id.clone();
    let mut stored: Vec<NewImage> = Vec::new();
    let result = paint(
        &state.engine,
        &request,
        job.cancel_token(),
        |event| match event {
            PaintEvent::Queued { position } => job.emit(
                ev::IMAGE_QUEUED,
                &ImageQueued {
                    tool_call_id: job.id.clone(),
                    count: request.n,
                    first_index: 0,
                    width: request.width,
                    height: request.height,
                    prompt: request.prompt.clone(),
                    queue_position: position,
                },
            ),
            PaintEvent::Step {
                first,
                step,
                steps,
                previews,
            } => {
                for event in progress_events(0, first, step, steps, previews) {
                    job.emit_progress(&event);
                }
            }
            PaintEvent::Painted(p) => {
                let mut meta = request.metadata(p.seed);
                meta.tool_arguments = arguments.clone();
                meta.source_image_id = source_id.clone();
                stored.push(NewImage {
                    id: new_id(),
                    user_id: user.clone(),
                    message_id: None,
                    conversation_id: None,
                    source: "studio",
                    position: p.index,
                    width: p.width,
                    height: p.height,
                    png: p.png.clone(),
                    thumbnail: p.thumbnail.clone(),
                    metadata: meta,
                });
            }
        },
    )
    .await;
    // Whatever finished is kept in the gallery, also when the job was cancelled or failed later.
    if let Err(e) = store.insert_images(&stored).await {
        tracing::error!("cannot store studio images: {e}");
        job.end(
            ev::RUN_ERROR,
            &ev::RunError {
                code: "storage_error".into(),
                message: e.to_string(),
            },
        );
        state.studio.retire(&job.id);
        return;
    }
    for image in &stored {
        job.emit(
            ev::IMAGE_DONE,
            &ImageDone {
                index: image.position,
                image_id: image.id.clone(),
                url: app::api::image_url(&image.id, "png"),
                thumbnail_url: app::api::thumbnail_url(&image.id),
                width: image.width,
                height: image.height,
                seed: image.metadata.seed,
            },
        );
    }
    let ended = |status: &str| ev::RunEnded {
        run_id: job.id.clone(),
        status: status.into(),
    };
    match result {
        Ok(_) => job.end(ev::RUN_FINISHED, &ended("finished")),
        Err(EngineError::Cancelled) => job.end(ev::RUN_CANCELLED, &ended("cancelled")),
        Err(e) => job.end(
            ev::RUN_ERROR,
            &ev::RunError {
                code: "image_failed".into(),
                message: e.to_string(),
            },
        ),
    }
    state.studio.retire(&job.id);
}

async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<super::runs::EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    check_id("job", &id)?;
    let job = state
        .studio
        .get(&id)
        .filter(|j| j.user_id == user)
        .ok_or_else(|| ApiError::not_found("studio job"))?;
    let after = super::runs::resume_point(&headers, query.after);
    Ok(Sse::new(super::runs::live(job, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("job", &id)?;
    let job = state
        .studio
        .get(&id)
        .filter(|j| j.user_id == user)
        .ok_or_else(|| ApiError::not_found("studio job"))?;
    job.cancel();
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Default, Deserialize)]
struct GalleryQuery {
    limit: Option<i64>,
}

async fn gallery(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(q): Query<GalleryQuery>,
) -> ApiResult<Json<Vec<Image>>> {
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let records = state.store.images_by_source(&user, "studio", limit).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        out.push(image_to_api(&state.store, &user, r, false).await?);
    }
    Ok(Json(out))
}

/// Starts a conversation that holds the image: the prompt as the user's message, the image
/// in the assistant's reply, and the image's id in the tool result so the LLM can refine it.
async fn send_to_chat(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<SentToChat>)> {
    check_id("image", &id)?;
    let record = state
        .store
        .get_image(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let png = state
        .store
        .image_bytes(&user, &id, ImageBlob::Png)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let thumbnail = state
        .store
        .image_bytes(&user, &id, ImageBlob::Thumbnail)
        .await?
        .unwrap_or_default();
    let prompt = record
        .metadata
        .tool_arguments
        .get("prompt")
        .and_then(|p| p.as_str())
        .unwrap_or(&record.metadata.prompt)
        .to_string();
    let title: String = prompt.chars().take(60).collect();
    let conversation = state
        .store
        .create_conversation(NewConversation {
            user_id: &user,
            title: Some(&title),
            agent_id: None,
            agent_version_id: None,
            model: None,
            internal_tools: InternalTools {
                image_creation: true,
            },
        })
        .await?;
    let now = now_ms();
    let message =
        |role: &str, content: String, tool_calls: Vec<ToolCallRecord>, at: i64| MessageRecord {
            id: String::new(),
            conversation_id: conversation.id.clone(),
            user_id: user.clone(),
            role: role.into(),
            content,
            status: "complete".into(),
            error_code: None,
            error_message: None,
            model: None,
            tool_calls,
            created_at: at,
            updated_at: at,
        };
    state
        .store
        .import_message(
            &conversation.id,
            &message("user", prompt.clone(), Vec::new(), now),
            &[],
        )
        .await?;
    let image_id = new_id();
    let call = ToolCallRecord {
        id: format!("call_studio_{}", image_id.replace('-', "")),
        name: crate::tools::image_generator::NAME.into(),
        arguments: json!({"prompt": prompt}).to_string(),
        result: json!({"status": "ok", "model": record.metadata.model, "size": format!("{}x{}", record.width, record.height), "images": [{"id": image_id, "seed": record.metadata.seed}]}).to_string(),
        is_error: false,
    };
    let copy = NewImage {
        id: image_id,
        user_id: user.clone(),
        message_id: None,
        conversation_id: Some(conversation.id.clone()),
        source: "chat",
        position: 0,
        width: record.width as u32,
        height: record.height as u32,
        png,
        thumbnail,
        metadata: record.metadata.clone(),
    };
    let text = format!(
        "Made in Image Studio: “{prompt}” ({}×{}, seed {}).",
        record.width, record.height, record.metadata.seed
    );
    state
        .store
        .import_message(
            &conversation.id,
            &message("assistant", text, vec![call], now + 1),
            &[copy],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SentToChat {
            conversation_id: conversation.id,
        }),
    ))
}

const ENHANCE_INSTRUCTIONS: &str = "You rewrite prompts for an image generator (Stable Diffusion). \
Keep the user's subject and intent; add concrete details of composition, lighting, style, colors and mood. \
Answer with the improved prompt only: one paragraph, under 400 characters, no quotes, no preamble.";

async fn enhance(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EnhanceRequest>,
) -> ApiResult<Json<EnhanceResponse>> {
    let prompt = body.prompt.trim().to_string();
    if prompt.is_empty() || prompt.chars().count() > app::api::limits::PROMPT_MAX_CHARS {
        return Err(bad("prompt", "must be 1 to 2000 characters"));
    }
    let model = state
        .providers
        .resolve(None)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.code, e.message))?;
    if matches!(model.provider, LlmProvider::Direct(_)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_llm",
            "Prompt enhancement needs an LLM: set OPENAI_BASE_URL or OPENAI_API_KEY (see README).",
        ));
    }
    let request = LlmRequest {
        model: model.upstream.clone(),
        messages: vec![
            ChatMessage::System(ENHANCE_INSTRUCTIONS.into()),
            ChatMessage::User(prompt),
        ],
        tools: Vec::new(),
    };
    let collect = async {
        let mut stream = model.provider.stream(request).await?;
        let mut text = String::new();
        while let Some(delta) = stream.next().await {
            if let LlmDelta::Text(t) = delta? {
                text.push_str(&t);
            }
        }
        Ok::<_, crate::chat::llm::LlmError>(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "llm_timeout",
                "The LLM took too long to answer.",
            )
        })?
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.code, e.message))?;
    let cleaned: String = text
        .trim()
        .trim_matches('"')
        .chars()
        .take(app::api::limits::PROMPT_MAX_CHARS)
        .collect();
    if cleaned.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "llm_empty",
            "The LLM answered with nothing.",
        ));
    }
    Ok(Json(EnhanceResponse { prompt: cleaned }))
}
