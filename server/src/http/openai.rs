//! The OpenAI-compatible images API, so the official `openai` SDKs (Python, Node) and anything
//! built on them work against Easel unchanged: `GET /v1/models`, `POST /v1/images/generations`,
//! `POST /v1/images/edits` (multipart), with OpenAI's response and error shapes. Easel's own
//! parameters (`negative_prompt`, `seed`, `steps`, `guidance`, `sampler`, `schedule`, `style`,
//! `strength`) are accepted beside OpenAI's (the SDKs pass them through `extra_body`).
//!
//! Every request is an image job (`source = api`): a client that disconnects cancels it, and
//! after a restart its unfinished job is cancelled (nobody is waiting for it any more).
//!
//! `stream: true` answers with server-sent events as OpenAI's image streaming does:
//! `image_generation.partial_image` previews (`partial_images` of them per image), then one
//! `image_generation.completed` per image.

use std::convert::Infallible;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::routes::{Family, Routes};
use super::AppState;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::diffusion::prompt::LongPrompts;
use crate::imaging::encode;
use crate::imaging::request::{
    self, GenerationRequest, ImageParams, Quality, SizeChoice, SizePolicy,
};
use crate::imaging::EngineError;
use crate::jobs::prepare::{prepare_edit, EditUpload, PrepareError};
use crate::jobs::{CallerInfo, EditSource, JobEvent, JobOrder, JobOrigin, LiveJob, SubmitError};
use crate::replay;
use crate::store::{ImageBlob, JobState};
use crate::tools::styles;

pub fn routes() -> Routes {
    Routes::new(Family::OpenAi, "/v1")
        .get("/models", models)
        .get("/models/{id}", model)
        .post("/images/generations", generations)
        .post_large("/images/edits", edits, EDIT_MAX_BYTES)
}

pub async fn not_found() -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "Unknown API route.",
        None,
        Some("not_found"),
    )
}

/// Source image + mask uploads.
const EDIT_MAX_BYTES: usize = 50 * 1024 * 1024;

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct OpenAiError {
    status: StatusCode,
    message: String,
    param: Option<String>,
    code: Option<String>,
    retry_after: Option<u64>,
}

impl OpenAiError {
    fn new(
        status: StatusCode,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            param: param.map(str::to_string),
            code: code.map(str::to_string),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, param, None)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message, None, None)
    }
}

impl From<EngineError> for OpenAiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownModel(m) => OpenAiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "The model `{}` does not exist.",
                    m.chars().take(100).collect::<String>()
                ),
                Some("model"),
                Some("model_not_found"),
            ),
            EngineError::Request(r) => OpenAiError::invalid(r.message, Some(r.field)),
            EngineError::NoModel => OpenAiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                Some("model"),
                Some("no_image_model"),
            ),
            other => job_failure(other.code(), other.to_string()),
        }
    }
}

/// A job's failure as OpenAI reports its own: a remote backend that stayed busy is a 429 the
/// client may retry, one that timed out a 504, one that failed or refused Easel a 502.
fn job_failure(code: &str, message: String) -> OpenAiError {
    let status = match code {
        "remote_busy" => StatusCode::TOO_MANY_REQUESTS,
        "remote_timeout" => StatusCode::GATEWAY_TIMEOUT,
        "remote_rejected" => StatusCode::BAD_REQUEST,
        "remote_unauthorized" | "remote_failed" => StatusCode::BAD_GATEWAY,
        _ => return OpenAiError::internal(message),
    };
    let code = if code == "remote_busy" {
        "rate_limit_exceeded"
    } else {
        code
    };
    OpenAiError::new(status, message, None, Some(code))
}

impl From<PrepareError> for OpenAiError {
    fn from(e: PrepareError) -> Self {
        OpenAiError::invalid(format!("{}: {}", e.field, e.message), Some(e.field))
    }
}

impl From<SubmitError> for OpenAiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull { .. } => {
                let mut error = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    e.to_string(),
                    None,
                    Some("rate_limit_exceeded"),
                );
                error.retry_after = Some(e.retry_after());
                error
            }
            SubmitError::ShortOfCredits { .. } => OpenAiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("You exceeded your current quota: {e}."),
                None,
                Some("insufficient_quota"),
            ),
            SubmitError::Store(e) => e.into(),
        }
    }
}

impl From<crate::store::StoreError> for OpenAiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!("store: {e}");
        OpenAiError::internal("The database could not complete the request; see the server log.")
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

type ApiResult<T> = Result<T, OpenAiError>;

/// Who the request is for: the API key (or a browser session) when one is required.
async fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    match state.auth.identify(headers).await? {
        Some(identity) => Ok(identity.user_id),
        None => Err(OpenAiError::new(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            None,
            Some("invalid_api_key"),
        )),
    }
}

fn model_json(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "easel"})
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    authorize(&state, &headers).await?;
    let data: Vec<Value> = state
        .jobs
        .engine()
        .models()
        .into_iter()
        .filter(|m| m.error.is_none())
        .map(|m| model_json(&m.id))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers).await?;
    match state
        .jobs
        .engine()
        .models()
        .into_iter()
        .find(|m| m.id == id && m.error.is_none())
    {
        Some(m) => Ok(Json(model_json(&m.id))),
        None => Err(OpenAiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The model `{}` does not exist.",
                id.chars().take(100).collect::<String>()
            ),
            Some("model"),
            Some("model_not_found"),
        )),
    }
}

/// The parameters both endpoints share, OpenAI's and Easel's.
#[derive(Debug, Default, Deserialize)]
struct Common {
    prompt: Option<String>,
    model: Option<String>,
    n: Option<i64>,
    size: Option<String>,
    quality: Option<String>,
    response_format: Option<String>,
    output_format: Option<String>,
    style: Option<String>,
    negative_prompt: Option<String>,
    seed: Option<u64>,
    steps: Option<i64>,
    guidance: Option<f32>,
    guidance_rescale: Option<f32>,
    /// Easel extension: `chunk` or `truncate` for prompts over 75 tokens.
    long_prompts: Option<String>,
    /// Easel extension: read `(word:1.3)` as a weight. Off unless asked, so an OpenAI client's
    /// parentheses stay literal.
    prompt_weighting: Option<bool>,
    sampler: Option<String>,
    schedule: Option<String>,
    stream: Option<bool>,
    partial_images: Option<u32>,
    strength: Option<f32>,
    /// JPEG quality (0–100), as OpenAI's `output_compression`.
    output_compression: Option<i64>,
}

/// How to answer: inline base64 or a URL, PNG or JPEG.
struct Output {
    url: bool,
    jpeg: bool,
    jpeg_quality: u8,
    quality: String,
}

impl Common {
    fn output(&self) -> ApiResult<Output> {
        let url = match self.response_format.as_deref() {
            None | Some("b64_json") => false,
            Some("url") => true,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    format!("response_format must be b64_json or url, not `{other}`"),
                    Some("response_format"),
                ))
            }
        };
        let jpeg = match self.output_format.as_deref() {
            None | Some("png") => false,
            Some("jpeg" | "jpg") => true,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    format!("output_format must be png or jpeg, not `{other}`"),
                    Some("output_format"),
                ))
            }
        };
        let jpeg_quality = match self.output_compression {
            None => encode::JPEG_QUALITY,
            Some(q @ 0..=100) => q.max(1) as u8,
            Some(q) => {
                return Err(OpenAiError::invalid(
                    format!("output_compression must be 0 to 100, not {q}"),
                    Some("output_compression"),
                ))
            }
        };
        Ok(Output {
            url,
            jpeg,
            jpeg_quality,
            quality: self.quality.clone().unwrap_or_else(|| "auto".into()),
        })
    }

    /// OpenAI's parameter values mapped onto Easel's engine request.
    fn params(&self) -> ApiResult<ImageParams> {
        let prompt = self.prompt.clone().unwrap_or_default();
        let quality = match self.quality.as_deref() {
            None => Quality::Auto,
            // DALL·E 3 names.
            Some("standard") => Quality::Medium,
            Some("hd") => Quality::High,
            Some(q) => Quality::parse(q).ok_or_else(|| {
                OpenAiError::invalid(
                    format!("quality must be auto, low, medium, high, standard or hd, not `{q}`"),
                    Some("quality"),
                )
            })?,
        };
        let size = match self.size.as_deref() {
            None => SizeChoice::Auto,
            Some(s) => SizeChoice::parse(s).ok_or_else(|| {
                OpenAiError::invalid(
                    format!("size must be auto or WIDTHxHEIGHT, not `{s}`"),
                    Some("size"),
                )
            })?,
        };
        // DALL·E 3's `vivid`/`natural` have no equivalent here; other values are Easel styles.
        let style = self
            .style
            .as_deref()
            .filter(|s| !matches!(*s, "vivid" | "natural"));
        let (prompt, negative) = styles::apply(
            style,
            &prompt,
            self.negative_prompt.as_deref().unwrap_or(""),
        );
        Ok(ImageParams {
            prompt,
            negative_prompt: negative,
            n: self.n,
            size,
            quality,
            steps: self.steps,
            guidance: self.guidance,
            guidance_rescale: self.guidance_rescale,
            long_prompts: match self.long_prompts.as_deref() {
                None => None,
                Some(text) => Some(LongPrompts::parse(text).ok_or_else(|| {
                    OpenAiError::invalid(
                        format!("long_prompts must be chunk or truncate, not `{text}`"),
                        Some("long_prompts"),
                    )
                })?),
            },
            prompt_weighting: Some(self.prompt_weighting.unwrap_or(false)),
            sampler: self.sampler.clone(),
            schedule: self.schedule.clone(),
            seed: self.seed,
            ..ImageParams::default()
        })
    }
}

async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let owner = match authorize(&state, &headers).await {
        Ok(owner) => owner,
        Err(e) => return e.into_response(),
    };
    // Parse by hand so malformed JSON gets OpenAI's error shape too.
    let body: Common = match axum::Json::<Common>::from_request(request, &state).await {
        Ok(Json(b)) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return super::routes::too_large(Family::OpenAi, super::routes::JSON_LIMIT)
        }
        Err(e) => return OpenAiError::invalid(e.body_text(), None).into_response(),
    };
    match prepare(&state, &body, None).await {
        Ok((request, edit)) => {
            respond(
                state,
                owner,
                headers,
                body,
                request,
                edit,
                "image_generation",
            )
            .await
        }
        Err(e) => e.into_response(),
    }
}

async fn edits(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Response {
    let owner = match authorize(&state, &headers).await {
        Ok(owner) => owner,
        Err(e) => return e.into_response(),
    };
    let mut form = match Multipart::from_request(request, &state).await {
        Ok(form) => form,
        Err(e) => return OpenAiError::invalid(e.body_text(), None).into_response(),
    };
    let mut body = Common::default();
    let mut image: Option<Vec<u8>> = None;
    let mut mask: Option<Vec<u8>> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return multipart_error(&e, None),
        };
        let name = field
            .name()
            .unwrap_or("")
            .trim_end_matches("[]")
            .chars()
            .take(64)
            .collect::<String>();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return multipart_error(&e, Some(&name)),
        };
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        let number = |param: &str| -> ApiResult<f64> {
            text()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    OpenAiError::invalid(format!("{param} must be a number"), Some(param))
                })
        };
        // Whole numbers for counts: 2.5 images or 1e30 steps are refused, not rounded.
        let whole = |param: &str| -> ApiResult<i64> {
            let v = number(param)?;
            if v.fract() != 0.0 || v.abs() > 1e15 {
                return Err(OpenAiError::invalid(
                    format!("{param} must be a whole number"),
                    Some(param),
                ));
            }
            Ok(v as i64)
        };
        let result: ApiResult<()> = (|| {
            match name.as_str() {
                // The first image is edited; OpenAI allows several for reference, Easel uses one.
                "image" if image.is_none() => image = Some(bytes.to_vec()),
                "image" => {}
                "mask" => mask = Some(bytes.to_vec()),
                "prompt" => body.prompt = Some(text()),
                "model" => body.model = Some(text()),
                "n" => body.n = Some(whole("n")?),
                "size" => body.size = Some(text()),
                "quality" => body.quality = Some(text()),
                "response_format" => body.response_format = Some(text()),
                "output_format" => body.output_format = Some(text()),
                "style" => body.style = Some(text()),
                "negative_prompt" => body.negative_prompt = Some(text()),
                "seed" => {
                    let seed = whole("seed")?;
                    body.seed = Some(u64::try_from(seed).map_err(|_| {
                        OpenAiError::invalid(
                            "seed must be a whole number of at least 0",
                            Some("seed"),
                        )
                    })?)
                }
                "steps" => body.steps = Some(whole("steps")?),
                "guidance" => body.guidance = Some(number("guidance")? as f32),
                "guidance_rescale" => {
                    body.guidance_rescale = Some(number("guidance_rescale")? as f32)
                }
                "long_prompts" => body.long_prompts = Some(text()),
                "prompt_weighting" => body.prompt_weighting = Some(text() == "true"),
                "sampler" => body.sampler = Some(text()),
                "schedule" => body.schedule = Some(text()),
                "strength" => body.strength = Some(number("strength")? as f32),
                "stream" => body.stream = Some(text() == "true"),
                "partial_images" => {
                    body.partial_images = Some(whole("partial_images")?.clamp(0, 3) as u32)
                }
                "output_compression" => {
                    body.output_compression = Some(whole("output_compression")?)
                }
                _ => {} // user, background, input_fidelity…: accepted, not used
            }
            Ok(())
        })();
        if let Err(e) = result {
            return e.into_response();
        }
    }
    let Some(image) = image else {
        return OpenAiError::invalid("image is required (a PNG or JPEG file)", Some("image"))
            .into_response();
    };
    match prepare(&state, &body, Some((image, mask))).await {
        Ok((request, edit)) => {
            respond(state, owner, headers, body, request, edit, "image_edit").await
        }
        Err(e) => e.into_response(),
    }
}

/// A broken or oversized multipart body, in OpenAI's shape (413 when over the limit).
fn multipart_error(e: &axum::extract::multipart::MultipartError, field: Option<&str>) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return super::routes::too_large(Family::OpenAi, EDIT_MAX_BYTES);
    }
    let message = match field {
        Some(name) => format!("cannot read `{name}`: {}", e.body_text()),
        None => format!("the multipart body is malformed: {}", e.body_text()),
    };
    OpenAiError::invalid(message, field).into_response()
}

/// Validates the request against its model and prepares an edit's inputs (sizes checked first).
async fn prepare(
    state: &AppState,
    body: &Common,
    edit_input: Option<(Vec<u8>, Option<Vec<u8>>)>,
) -> ApiResult<(GenerationRequest, Option<EditSource>)> {
    body.output()?;
    let model = state.jobs.engine().model(body.model.as_deref())?;
    let mut params = body.params()?;
    params.long_prompts = params
        .long_prompts
        .or(Some(state.jobs.engine().prompt_options().long_prompts));
    // Previews cost time; only streaming requests show them.
    params.preview = if body.stream.unwrap_or(false) {
        PreviewRate::Faster
    } else {
        PreviewRate::None
    };
    // Explicit sizes must be the model's allowed ones; an edit's own (fitted) size may be any.
    let mut policy = SizePolicy::AllowedOnly;
    let mut edit = None;
    if let Some((image, mask)) = edit_input {
        let upload = EditUpload {
            source: image,
            mask,
            size: params.size,
            strength: body.strength,
        };
        let prepared = prepare_edit(upload, &model, policy).await?;
        if params.size == SizeChoice::Auto {
            policy = SizePolicy::AnyMultipleOf8;
        }
        params.size = SizeChoice::Exact(prepared.width, prepared.height);
        params.strength = Some(prepared.source.strength);
        edit = Some(prepared.source);
    }
    let request = request::resolve(params, &model, policy)
        .map_err(|e| OpenAiError::invalid(e.message, Some(e.field)))?;
    Ok((request, edit))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Cancels the job when the request is dropped before it finished (the client went away).
struct CancelOnDrop {
    state: AppState,
    owner: String,
    job: String,
    armed: bool,
}

impl CancelOnDrop {
    /// The job ended on its own: nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (jobs, owner, job) = (
                self.state.jobs.clone(),
                self.owner.clone(),
                self.job.clone(),
            );
            tokio::spawn(async move {
                let _ = jobs.cancel(&owner, &job).await;
            });
        }
    }
}

/// `kind` names the stream events: `image_generation` or `image_edit`, as OpenAI's do.
async fn respond(
    state: AppState,
    owner: String,
    headers: HeaderMap,
    body: Common,
    request: GenerationRequest,
    edit: Option<EditSource>,
    kind: &'static str,
) -> Response {
    let output = match body.output() {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let revised = request.prompt.clone();
    let size = format!("{}x{}", request.width, request.height);
    let steps = request.steps;
    let mut arguments = json!({"prompt": body.prompt, "n": body.n, "size": body.size, "quality": body.quality, "style": body.style, "seed": body.seed, "steps": body.steps});
    if let Some(obj) = arguments.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    let streaming = body.stream.unwrap_or(false);
    let partials = body.partial_images.unwrap_or(2).min(3);
    let wanted = partial_steps(steps, partials);
    let order = JobOrder {
        owner: owner.clone(),
        origin: JobOrigin::Api,
        request,
        edit,
        caller: CallerInfo {
            arguments,
            source_image_id: None,
            shown_prompt: body.prompt.clone().unwrap_or_default(),
        },
        keep_pixels: false,
        milestones: if streaming {
            wanted.clone()
        } else {
            Vec::new()
        },
    };
    let submitted = match state.jobs.submit(order).await {
        Ok(s) => s,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    let job = match state.jobs.job(&owner, &submitted.id).await {
        Ok(Some(job)) => job,
        Ok(None) => return OpenAiError::internal("the image job disappeared").into_response(),
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    let guard = CancelOnDrop {
        state: state.clone(),
        owner,
        job: job.id.clone(),
        armed: true,
    };
    let base = base_url(&state, &headers);
    let answer = Answer {
        state,
        output,
        base,
        revised,
        size,
        kind,
    };
    if streaming {
        return stream(answer, job, guard, wanted).into_response();
    }
    let mut guard = guard;
    let end = answer.state.jobs.wait(&job).await;
    guard.disarm();
    if end.state != JobState::Done {
        let (code, message) = end
            .error
            .unwrap_or_else(|| ("image_failed".into(), "image generation failed".into()));
        return job_failure(&code, message).into_response();
    }
    let images = match answer.state.store.images_of_job(&job.id).await {
        Ok(images) => images,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    let mut data = Vec::with_capacity(images.len());
    for image in &images {
        match answer
            .datum(&job.owner, &image.id, image.metadata.seed)
            .await
        {
            Ok(d) => data.push(d),
            Err(e) => return e.into_response(),
        }
    }
    answer
        .forget_inline(&job.owner, images.iter().map(|i| i.id.clone()))
        .await;
    Json(json!({
        "created": now_secs(),
        "data": data,
        "output_format": if answer.output.jpeg { "jpeg" } else { "png" },
        "quality": answer.output.quality,
        "size": answer.size,
        "background": "opaque",
    }))
    .into_response()
}

/// What every answer of one request shares.
struct Answer {
    state: AppState,
    output: Output,
    base: String,
    revised: String,
    size: String,
    kind: &'static str,
}

impl Answer {
    /// One `data` entry: the image inline (PNG or JPEG), or linked.
    async fn datum(&self, owner: &str, id: &str, seed: u64) -> ApiResult<Value> {
        if self.output.url {
            let ext = if self.output.jpeg { "jpg" } else { "png" };
            return Ok(
                json!({"url": format!("{}/api/images/{id}.{ext}", self.base), "revised_prompt": self.revised, "seed": seed}),
            );
        }
        let png = self
            .state
            .store
            .image_bytes(owner, id, ImageBlob::Png)
            .await?
            .ok_or_else(|| OpenAiError::internal("a finished image is missing"))?;
        let bytes = if self.output.jpeg {
            let quality = self.output.jpeg_quality;
            let record = self.state.store.get_image(owner, id).await?;
            let parameters = record
                .map(|r| crate::jobs::spec::parameters_of(&r.metadata))
                .unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let rgb = encode::decode(&png)?;
                encode::jpeg_with_parameters(&rgb, quality, &parameters)
            })
            .await
            .map_err(|e| OpenAiError::internal(e.to_string()))?
            .map_err(|e| OpenAiError::internal(e.to_string()))?
        } else {
            png
        };
        Ok(
            json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes), "revised_prompt": self.revised, "seed": seed}),
        )
    }

    /// Inline answers hand the bytes over; the stored copies are not kept (URL answers keep
    /// theirs, since the link must work).
    async fn forget_inline(&self, owner: &str, ids: impl Iterator<Item = String>) {
        if self.output.url {
            return;
        }
        for id in ids {
            let _ = self.state.store.delete_image(owner, &id).await;
        }
    }
}

/// `EASEL_PUBLIC_URL` when set; else, behind a trusted proxy, what it forwarded; else the
/// address Easel listens on. Request headers alone never decide where links point.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let plain = |v: &str| {
        !v.is_empty()
            && v.len() <= 255
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    if state.config.trust_proxy {
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|p| p == "http" || p == "https");
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
            .filter(|h| plain(h));
        if let (Some(proto), Some(host)) = (proto, host) {
            return format!("{proto}://{host}");
        }
    }
    let addr = state.config.addr;
    if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Previews at evenly spaced steps, `partials` per image.
fn partial_steps(steps: u32, partials: u32) -> Vec<u32> {
    let steps = steps.max(1);
    let mut wanted: Vec<u32> = (1..=partials)
        .map(|k| (k * steps / (partials + 1)).max(1))
        .collect();
    wanted.dedup();
    wanted
}

/// Streams previews and finished images as OpenAI's image streaming events.
fn stream(
    answer: Answer,
    job: std::sync::Arc<LiveJob>,
    guard: CancelOnDrop,
    wanted: Vec<u32>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let created = now_secs();
    let answer = std::sync::Arc::new(answer);
    let stopping = answer.state.shutdown.clone();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<u32, u32>::new(),
    ));
    let owner = job.owner.clone();
    let events = replay::follow(job.log.clone(), 0)
        .then(move |entry| {
            let answer = answer.clone();
            let sent = sent.clone();
            let wanted = wanted.clone();
            let owner = owner.clone();
            async move {
                let kind = answer.kind;
                let mut out = Vec::new();
                match entry.event {
                    JobEvent::Progress { first, step, previews, .. } if wanted.contains(&step) => {
                        for (k, preview) in previews.iter().enumerate() {
                            let Some(rgb) = preview else { continue };
                            let index = first + k as u32;
                            let count = {
                                let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
                                let count = sent.entry(index).or_default();
                                *count += 1;
                                *count - 1
                            };
                            if let Ok(png) = encode::png(rgb, None) {
                                let data = json!({
                                    "type": format!("{kind}.partial_image"),
                                    "b64_json": base64::engine::general_purpose::STANDARD.encode(png),
                                    "partial_image_index": count,
                                    "index": index,
                                    "created_at": created,
                                    "size": answer.size,
                                    "quality": answer.output.quality,
                                    "background": "opaque",
                                    "output_format": "png",
                                });
                                out.push(Event::default().event(format!("{kind}.partial_image")).data(data.to_string()));
                            }
                        }
                    }
                    JobEvent::Image(image) => match answer.datum(&owner, &image.id, image.seed).await {
                        Ok(d) => {
                            let mut data = json!({
                                "type": format!("{kind}.completed"),
                                "created_at": created,
                                "size": answer.size,
                                "quality": answer.output.quality,
                                "background": "opaque",
                                "output_format": if answer.output.jpeg { "jpeg" } else { "png" },
                                "index": image.index,
                                "seed": image.seed,
                                "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}},
                            });
                            for key in ["b64_json", "url"] {
                                if let Some(v) = d.get(key) {
                                    data[key] = v.clone();
                                }
                            }
                            answer.forget_inline(&owner, std::iter::once(image.id.clone())).await;
                            out.push(Event::default().event(format!("{kind}.completed")).data(data.to_string()));
                        }
                        Err(e) => out.push(error_event(&e.message)),
                    },
                    JobEvent::Ended(end) if end.state != JobState::Done => {
                        let message = end.error.map(|(_, m)| m).unwrap_or_else(|| "image generation failed".into());
                        out.push(error_event(&message));
                    }
                    _ => {}
                }
                futures_util::stream::iter(out.into_iter().map(Ok))
            }
        })
        .flatten();
    // The guard lives as long as the stream: a client that disconnects drops it, and the
    // job is cancelled.
    let events = futures_util::stream::unfold(
        (Box::pin(events), guard),
        |(mut events, mut guard)| async move {
            match events.next().await {
                Some(event) => Some((event, (events, guard))),
                None => {
                    guard.disarm();
                    None
                }
            }
        },
    )
    .take_until(async move { stopping.cancelled().await });
    Sse::new(events)
}

fn error_event(message: &str) -> Event {
    let data = json!({"type": "error", "error": {"message": message, "type": "server_error", "param": null, "code": null}});
    Event::default().event("error").data(data.to_string())
}
