//! Image Studio's API: direct control of the engine without a chat.
//!
//! - `POST /api/studio/generations` starts a job (202 `{job_id}`); its events (`image.queued`,
//!   `image.progress` with previews, `image.done`, then `run.finished` / `run.cancelled` /
//!   `run.error`) stream from `GET /api/studio/jobs/{id}/events`, and
//!   `POST /api/studio/jobs/{id}/cancel` stops it. Results are kept in a per-user gallery.
//! - `GET /api/studio/images` lists the gallery; `DELETE /api/images/{id}` removes one.
//! - `POST /api/studio/images/{id}/chat` starts a conversation holding the image.
//! - `POST /api/studio/enhance` has the configured LLM rewrite a prompt.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use app::api::events as ev;
use app::api::{
    CreditQuote, EnhanceRequest, EnhanceResponse, Image, PromptCheck, PromptCheckRequest,
    SentToChat, StudioJob, StudioRequest,
};

use super::conversations::image_to_api;
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::routes::{Family, Routes};
use super::runs::sse;
use super::AppState;
use crate::chat::llm::{ChatMessage, LlmDelta, LlmProvider, LlmRequest, ToolChoice};
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::diffusion::prompt::{self, LongPrompts, PromptOptions};
use crate::imaging::request::{self, ImageParams, Quality, SizeChoice, SizePolicy};
use crate::imaging::EngineError;
use crate::jobs::prepare::{prepare_edit, EditUpload};
use crate::jobs::wire::{Translator, WireEvent};
use crate::jobs::{CallerInfo, JobEvent, JobOrder, JobOrigin, SubmitError};
use crate::replay;
use crate::store::{
    new_id, now_ms, ImageBlob, ImageSource, ImportedMessage, JobState, MessageStatus,
    NewConversation, NewImage, Role, ToolCall,
};
use crate::tools::styles;

/// Uploaded source images and masks travel as base64 in the JSON body.
const STUDIO_MAX_BYTES: usize = 40 * 1024 * 1024;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .post_large("/studio/generations", start, STUDIO_MAX_BYTES)
        .get("/studio/jobs/{id}/events", events)
        .post("/studio/jobs/{id}/cancel", cancel)
        .get("/studio/images", gallery)
        .post("/studio/images/{id}/chat", send_to_chat)
        .post("/studio/enhance", enhance)
        .post("/studio/quote", quote)
        .post("/studio/prompt", check_prompt)
}

/// How the engine will read a prompt (token counts, what is cut), so the page can warn before
/// anything is painted.
async fn check_prompt(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiJson(body): ApiJson<PromptCheckRequest>,
) -> ApiResult<Json<PromptCheck>> {
    let limit = app::api::limits::PROMPT_MAX_CHARS;
    if body.prompt.chars().count() > limit || body.negative_prompt.chars().count() > limit {
        return Err(bad("prompt", "must be at most 2000 characters"));
    }
    let engine = state.jobs.engine();
    let defaults = engine.prompt_options();
    let options = PromptOptions {
        long_prompts: match body.long_prompts.as_deref() {
            Some(text) => LongPrompts::parse(text)
                .ok_or_else(|| bad("long_prompts", "must be chunk or truncate"))?,
            None => defaults.long_prompts,
        },
        weighting: body.prompt_weighting.unwrap_or(defaults.weighting),
    };
    let model = studio_model(&state, body.model.as_deref())?;
    let Some(tokenizer) = model.tokenizer() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_tokenizer",
            format!(
                "model {} is painted elsewhere; its prompts cannot be read here",
                model.id
            ),
        ));
    };
    // Tokenising a 2000-character prompt is CPU work: off the async threads.
    let (prompt, negative) = (body.prompt.clone(), body.negative_prompt.clone());
    let (p, n) = tokio::task::spawn_blocking(move || {
        (
            prompt::report(&tokenizer, &prompt, options),
            prompt::report(&tokenizer, &negative, options),
        )
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(PromptCheck {
        tokens: p.tokens as u32,
        negative_tokens: n.tokens as u32,
        limit: p.limit as u32,
        dropped: p.dropped as u32,
        negative_dropped: n.dropped as u32,
        long_prompts: options.long_prompts.name().into(),
        weighted: p.weighted,
    }))
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_request", format!("{field}: {}", message.into()))
}

/// 429 with `Retry-After` when the image queue is full, 402 when credits are short; other
/// submit failures are 500s.
pub fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string())
                .retry_after(e.retry_after())
        }
        SubmitError::ShortOfCredits { .. } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_credits",
            format!("Not enough credits: {e}."),
        ),
        SubmitError::Store(e) => e.into(),
    }
}

/// What a Studio request would cost before it is made (the Generate button shows it).
async fn quote(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<StudioRequest>,
) -> ApiResult<Json<CreditQuote>> {
    let (model, mut params) = studio_params(&state, &body)?;
    if let SizeChoice::Auto = params.size {
        params.size = SizeChoice::Exact(model.presets.default_size.0, model.presets.default_size.1);
    }
    if body.source_image_id.is_some() || body.source_image_b64.is_some() {
        params.strength = Some(body.strength.unwrap_or(0.6).clamp(0.05, 1.0));
    }
    let request = request::resolve(params, &model, SizePolicy::AnyMultipleOf8)
        .map_err(|e| bad(e.field, e.message))?;
    let quote = state.jobs.quote(&user, &request).await?;
    Ok(Json(CreditQuote {
        cost: quote.cost,
        balance: quote.balance,
        enabled: quote.enabled,
        enough: quote.affordable(),
    }))
}

/// The model a Studio request names (or the default): 422 for an unknown one, 503 when none
/// can paint.
fn studio_model(
    state: &AppState,
    model: Option<&str>,
) -> ApiResult<std::sync::Arc<crate::imaging::registry::ModelEntry>> {
    state.jobs.engine().model(model).map_err(|e| match e {
        EngineError::UnknownModel(_) => bad("model", e.to_string()),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_image_model",
            other.to_string(),
        ),
    })
}

/// The model and the engine parameters a Studio request names (without its edit's upload).
fn studio_params(
    state: &AppState,
    body: &StudioRequest,
) -> ApiResult<(
    std::sync::Arc<crate::imaging::registry::ModelEntry>,
    ImageParams,
)> {
    let defaults = state.jobs.engine().prompt_options();
    let model = studio_model(state, body.model.as_deref())?;
    let (prompt, negative) =
        styles::apply(body.style.as_deref(), &body.prompt, &body.negative_prompt);
    let params = ImageParams {
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
        long_prompts: Some(match body.long_prompts.as_deref() {
            Some(text) => LongPrompts::parse(text)
                .ok_or_else(|| bad("long_prompts", "must be chunk or truncate"))?,
            None => defaults.long_prompts,
        }),
        prompt_weighting: Some(body.prompt_weighting.unwrap_or(defaults.weighting)),
        ..ImageParams::default()
    };
    Ok((model, params))
}

async fn start(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<StudioRequest>,
) -> ApiResult<(StatusCode, Json<StudioJob>)> {
    let (model, mut params) = studio_params(&state, &body)?;

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
        (None, Some(b64)) => Some(decode_b64("source_image_b64", b64.clone()).await?),
        (None, None) => None,
    };
    let mut edit = None;
    if let Some(bytes) = source {
        let mask = match body.mask_b64.clone() {
            Some(m) => Some(decode_b64("mask_b64", m).await?),
            None => None,
        };
        let upload = EditUpload {
            source: bytes,
            mask,
            size: params.size,
            strength: body.strength,
        };
        let prepared = prepare_edit(upload, &model, SizePolicy::AnyMultipleOf8)
            .await
            .map_err(|e| bad(e.field, e.message))?;
        params.size = SizeChoice::Exact(prepared.width, prepared.height);
        params.strength = Some(prepared.source.strength);
        edit = Some(prepared.source);
    }
    let request = request::resolve(params, &model, SizePolicy::AnyMultipleOf8)
        .map_err(|e| bad(e.field, e.message))?;

    // What is stored with each image: the request as sent, without the large uploads.
    let mut arguments = serde_json::to_value(&body).unwrap_or_default();
    if let Some(obj) = arguments.as_object_mut() {
        obj.remove("source_image_b64");
        obj.remove("mask_b64");
    }
    let order = JobOrder {
        owner: user,
        origin: JobOrigin::Studio,
        request,
        edit,
        caller: CallerInfo {
            arguments,
            source_image_id: body.source_image_id.clone(),
            shown_prompt: body.prompt.trim().to_string(),
        },
        keep_pixels: false,
        milestones: Vec::new(),
    };
    let submitted = state.jobs.submit(order).await.map_err(submit_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StudioJob {
            job_id: submitted.id,
        }),
    ))
}

/// Base64 (or a `data:` URL, as the browser produces it) off the async threads: uploads are
/// tens of megabytes.
pub async fn decode_b64(field: &'static str, text: String) -> ApiResult<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let data = text.split_once("base64,").map(|(_, d)| d).unwrap_or(&text);
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| bad(field, "is not valid base64"))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<super::runs::EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<axum::response::Response> {
    check_id("job", &id)?;
    let job = state
        .jobs
        .job(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("studio job"))?;
    let after = super::runs::resume_point(&headers, query.after);
    let mut translator = Translator::new(&job);
    let job_id = job.id.clone();
    let stream = replay::follow(job.log.clone(), after).flat_map(move |entry| {
        let id = entry.id.to_string();
        let mut out: Vec<Event> = translator
            .translate(&job, &entry.event)
            .into_iter()
            .map(|wire| wire_event(&id, wire))
            .collect();
        if let JobEvent::Ended(end) = &entry.event {
            let ended = |status: &str| json!({"run_id": job_id, "status": status}).to_string();
            out.push(match end.state {
                JobState::Done => Event::default()
                    .id(&id)
                    .event(ev::RUN_FINISHED)
                    .data(ended("finished")),
                JobState::Cancelled => Event::default()
                    .id(&id)
                    .event(ev::RUN_CANCELLED)
                    .data(ended("cancelled")),
                _ => {
                    let (code, message) = end.error.clone().unwrap_or_else(|| {
                        ("image_failed".into(), "Image generation failed.".into())
                    });
                    Event::default()
                        .id(&id)
                        .event(ev::RUN_ERROR)
                        .data(json!({"code": code, "message": message}).to_string())
                }
            });
        }
        futures_util::stream::iter(out.into_iter().map(Ok))
    });
    Ok(sse(&state, Box::pin(stream)))
}

fn wire_event(id: &str, wire: WireEvent) -> Event {
    let (name, data) = match wire {
        WireEvent::Queued(e) => (ev::IMAGE_QUEUED, serde_json::to_string(&e)),
        WireEvent::Position(e) => (ev::IMAGE_POSITION, serde_json::to_string(&e)),
        WireEvent::Progress(e) => (ev::IMAGE_PROGRESS, serde_json::to_string(&e)),
        WireEvent::Done(e) => (ev::IMAGE_DONE, serde_json::to_string(&e)),
    };
    Event::default()
        .id(id)
        .event(name)
        .data(data.unwrap_or_default())
}

async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("job", &id)?;
    if state.jobs.cancel(&user, &id).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("studio job"))
    }
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
    let records = state
        .store
        .images_by_source(&user, ImageSource::Studio, limit)
        .await?;
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
    let prompt = record.metadata.written_prompt().to_string();
    let title: String = prompt.chars().take(60).collect();
    let now = now_ms();
    let image_id = new_id();
    let call = ToolCall {
        id: format!("call_studio_{}", image_id.replace('-', "")),
        name: crate::tools::image_generator::NAME.into(),
        arguments: json!({"prompt": prompt}).to_string(),
        result: json!({"status": "ok", "model": record.metadata.model, "size": format!("{}x{}", record.width, record.height), "images": [{"id": image_id, "seed": record.metadata.seed}]}).to_string(),
        is_error: false,
    };
    let text = format!(
        "Made in Image Studio: “{prompt}” ({}×{}, seed {}).",
        record.width, record.height, record.metadata.seed
    );
    let copy = NewImage {
        id: image_id,
        user_id: user.clone(),
        message_id: None,
        conversation_id: None,
        job_id: None,
        source: ImageSource::Chat,
        position: 0,
        width: record.width as u32,
        height: record.height as u32,
        png,
        thumbnail,
        metadata: record.metadata.clone(),
    };
    let message =
        |role: Role, content: String, tool_calls: Vec<ToolCall>, images: Vec<NewImage>, at: i64| {
            ImportedMessage {
                role,
                content,
                status: MessageStatus::Complete,
                error: None,
                model: None,
                tool_calls,
                created_at: at,
                images,
            }
        };
    let conversation = state
        .store
        .insert_conversation_with_history(
            NewConversation {
                user_id: &user,
                title: Some(&title),
                agent_id: None,
                agent_version_id: None,
                model: None,
                image_creation: true,
            },
            vec![
                message(Role::User, prompt.clone(), Vec::new(), Vec::new(), now),
                message(Role::Assistant, text, vec![call], vec![copy], now + 1),
            ],
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
    _user: CurrentUser,
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
        tool_choice: ToolChoice::Auto,
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
