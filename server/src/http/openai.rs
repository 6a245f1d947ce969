//! The OpenAI-compatible images API, so the official `openai` SDKs (Python, Node) and anything
//! built on them work against Easel unchanged: `GET /v1/models`, `POST /v1/images/generations`,
//! `POST /v1/images/edits` (multipart), with OpenAI's response and error shapes. Easel's own
//! parameters (`negative_prompt`, `seed`, `steps`, `guidance`, `sampler`, `schedule`, `style`,
//! `strength`) are accepted beside OpenAI's (the SDKs pass them through `extra_body`).
//!
//! `stream: true` answers with server-sent events as OpenAI's image streaming does:
//! `image_generation.partial_image` previews (`partial_images` of them per image), then one
//! `image_generation.completed` per image.

use std::convert::Infallible;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::edit;
use crate::imaging::paint::{paint, PaintEvent, Painted};
use crate::imaging::request::{
    self, GenerationRequest, ImageParams, Quality, SizeChoice, SizePolicy,
};
use crate::imaging::{encode, EngineError};
use crate::store::{new_id, NewImage, LOCAL_USER};
use crate::tools::styles;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(models))
        .route("/models/{id}", get(model))
        .route(
            "/images/generations",
            post(generations).layer(DefaultBodyLimit::max(app::api::limits::JSON_BODY_MAX_BYTES)),
        )
        .route(
            "/images/edits",
            post(edits).layer(DefaultBodyLimit::max(EDIT_MAX_BYTES)),
        )
        .fallback(|| async {
            OpenAiError::new(
                StatusCode::NOT_FOUND,
                "Unknown API route.",
                None,
                Some("not_found"),
            )
        })
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
        }
    }

    fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, param, None)
    }
}

impl From<EngineError> for OpenAiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownModel(m) => OpenAiError::new(
                StatusCode::NOT_FOUND,
                format!("The model `{m}` does not exist."),
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
            EngineError::Cancelled => OpenAiError::new(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "cancelled",
                None,
                None,
            ),
            other => OpenAiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                other.to_string(),
                None,
                None,
            ),
        }
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
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, OpenAiError>;

/// `EASEL_API_KEY`, when set, must come as a bearer token.
fn authorize(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(OpenAiError::new(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            None,
            Some("invalid_api_key"),
        ))
    }
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    authorize(&state, &headers)?;
    let data: Vec<Value> = state
        .engine
        .models()
        .into_iter()
        .filter(|m| m.error.is_none())
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": "easel"}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

async fn model(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers)?;
    match state
        .engine
        .models()
        .into_iter()
        .find(|m| m.id == id && m.error.is_none())
    {
        Some(m) => Ok(Json(
            json!({"id": m.id, "object": "model", "created": 0, "owned_by": "easel"}),
        )),
        None => Err(OpenAiError::new(
            StatusCode::NOT_FOUND,
            format!("The model `{id}` does not exist."),
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
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    // Parse by hand so malformed JSON gets OpenAI's error shape too.
    let body: Common = match axum::Json::<Common>::from_request(request, &state).await {
        Ok(Json(b)) => b,
        Err(e) => return OpenAiError::invalid(e.body_text(), None).into_response(),
    };
    match prepare(&state, &body, None).await {
        Ok(request) => respond(state, headers, body, request, "image_generation").await,
        Err(e) => e.into_response(),
    }
}

async fn edits(State(state): State<AppState>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let mut body = Common::default();
    let mut image: Option<Vec<u8>> = None;
    let mut mask: Option<Vec<u8>> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return OpenAiError::invalid(format!("the multipart body is malformed: {e}"), None)
                    .into_response()
            }
        };
        let name = field
            .name()
            .unwrap_or("")
            .trim_end_matches("[]")
            .to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return OpenAiError::invalid(format!("cannot read `{name}`: {e}"), Some(&name))
                    .into_response()
            }
        };
        let text = || String::from_utf8_lossy(&bytes).trim().to_string();
        let number = |param: &str| -> ApiResult<f64> {
            text()
                .parse::<f64>()
                .map_err(|_| OpenAiError::invalid(format!("{param} must be a number"), Some(param)))
        };
        let result: ApiResult<()> = (|| {
            match name.as_str() {
                // The first image is edited; OpenAI allows several for reference, Easel uses one.
                "image" if image.is_none() => image = Some(bytes.to_vec()),
                "image" => {}
                "mask" => mask = Some(bytes.to_vec()),
                "prompt" => body.prompt = Some(text()),
                "model" => body.model = Some(text()),
                "n" => body.n = Some(number("n")? as i64),
                "size" => body.size = Some(text()),
                "quality" => body.quality = Some(text()),
                "response_format" => body.response_format = Some(text()),
                "output_format" => body.output_format = Some(text()),
                "style" => body.style = Some(text()),
                "negative_prompt" => body.negative_prompt = Some(text()),
                "seed" => body.seed = Some(number("seed")? as u64),
                "steps" => body.steps = Some(number("steps")? as i64),
                "guidance" => body.guidance = Some(number("guidance")? as f32),
                "sampler" => body.sampler = Some(text()),
                "schedule" => body.schedule = Some(text()),
                "strength" => body.strength = Some(number("strength")? as f32),
                "stream" => body.stream = Some(text() == "true"),
                "partial_images" => body.partial_images = Some(number("partial_images")? as u32),
                "output_compression" => {
                    body.output_compression = Some(number("output_compression")? as i64)
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
        Ok(request) => respond(state, headers, body, request, "image_edit").await,
        Err(e) => e.into_response(),
    }
}

/// Validates the request against its model (and prepares an edit's inputs).
async fn prepare(
    state: &AppState,
    body: &Common,
    edit_input: Option<(Vec<u8>, Option<Vec<u8>>)>,
) -> ApiResult<GenerationRequest> {
    body.output()?;
    let model = state.engine.model(body.model.as_deref())?;
    let mut params = body.params()?;
    // Previews cost time; only streaming requests show them.
    params.preview = if body.stream.unwrap_or(false) {
        PreviewRate::Faster
    } else {
        PreviewRate::None
    };
    let mut policy = SizePolicy::AllowedOnly;
    if let Some((image, mask)) = edit_input {
        let source = encode::decode(&image)
            .map_err(|e| OpenAiError::invalid(format!("image: {e}"), Some("image")))?;
        let size = match params.size {
            SizeChoice::Exact(w, h) => (w, h),
            SizeChoice::Auto => {
                // The source's own size (fitted to the model): any multiple of 8 is fine then.
                policy = SizePolicy::AnyMultipleOf8;
                edit::fit_size(source.dimensions(), model.presets.max_size)
            }
        };
        params.size = SizeChoice::Exact(size.0, size.1);
        let strength = body
            .strength
            .unwrap_or(if mask.is_some() { 1.0 } else { 0.6 });
        params.edit = Some(
            edit::edit_input(&source, mask.as_deref(), strength, size)
                .map_err(|e| OpenAiError::invalid(format!("mask: {e}"), Some("mask")))?,
        );
    }
    request::resolve(params, &model, policy)
        .map_err(|e| OpenAiError::invalid(e.message, Some(e.field)))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `kind` names the stream events: `image_generation` or `image_edit`, as OpenAI's do.
async fn respond(
    state: AppState,
    headers: HeaderMap,
    body: Common,
    request: GenerationRequest,
    kind: &'static str,
) -> Response {
    let output = match body.output() {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let base = base_url(&headers);
    if body.stream.unwrap_or(false) {
        return stream(
            state,
            request,
            output,
            body.partial_images.unwrap_or(2).min(3),
            base,
            kind,
        )
        .into_response();
    }
    // Closing the connection cancels the job (the guard cancels when the handler is dropped).
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let painted = match paint(&state.engine, &request, cancel, |_| {}).await {
        Ok(p) => p,
        Err(e) => return OpenAiError::from(e).into_response(),
    };
    let mut data = Vec::with_capacity(painted.len());
    for p in &painted {
        match datum(&state, &request, p, &output, &base).await {
            Ok(d) => data.push(d),
            Err(e) => return e.into_response(),
        }
    }
    let size = format!("{}x{}", request.width, request.height);
    Json(json!({
        "created": now_secs(),
        "data": data,
        "output_format": if output.jpeg { "jpeg" } else { "png" },
        "quality": output.quality,
        "size": size,
        "background": "opaque",
    }))
    .into_response()
}

/// One `data` entry: the image inline, or stored and linked.
async fn datum(
    state: &AppState,
    request: &GenerationRequest,
    p: &Painted,
    output: &Output,
    base: &str,
) -> ApiResult<Value> {
    let bytes = if output.jpeg {
        to_jpeg(&p.png, output.jpeg_quality)?
    } else {
        p.png.clone()
    };
    let revised = request.prompt.clone();
    if output.url {
        let id = new_id();
        let image = NewImage {
            id: id.clone(),
            user_id: LOCAL_USER.into(),
            message_id: None,
            conversation_id: None,
            source: "api",
            position: p.index,
            width: p.width,
            height: p.height,
            png: p.png.clone(),
            thumbnail: p.thumbnail.clone(),
            metadata: request.metadata(p.seed),
        };
        state.store.insert_images(&[image]).await.map_err(|e| {
            OpenAiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, None)
        })?;
        let ext = if output.jpeg { "jpg" } else { "png" };
        Ok(
            json!({"url": format!("{base}/api/images/{id}.{ext}"), "revised_prompt": revised, "seed": p.seed}),
        )
    } else {
        Ok(
            json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes), "revised_prompt": revised, "seed": p.seed}),
        )
    }
}

fn to_jpeg(png: &[u8], quality: u8) -> ApiResult<Vec<u8>> {
    let rgb = encode::decode(png).map_err(|e| {
        OpenAiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, None)
    })?;
    encode::jpeg(&rgb, quality)
        .map_err(|e| OpenAiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, None))
}

/// `http://host:port` as the client reached us, for absolute image URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:3000");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Streams previews and finished images as OpenAI's image streaming events.
fn stream(
    state: AppState,
    request: GenerationRequest,
    output: Output,
    partials: u32,
    base: String,
    kind: &'static str,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let cancel = CancellationToken::new();
    let guard_cancel = cancel.clone();
    tokio::spawn(async move {
        let created = now_secs();
        let size = format!("{}x{}", request.width, request.height);
        let format = if output.jpeg { "jpeg" } else { "png" };
        // Previews at evenly spaced steps, `partials` per image.
        let steps = request.steps.max(1);
        let wanted: Vec<u32> = (1..=partials)
            .map(|k| (k * steps / (partials + 1)).max(1))
            .collect();
        let mut sent = std::collections::HashMap::<u32, u32>::new();
        let mut completed = Vec::new();
        let result = paint(
            &state.engine,
            &request,
            cancel.clone(),
            |event| match event {
                PaintEvent::Step {
                    first,
                    step,
                    previews,
                    ..
                } if wanted.contains(&step) => {
                    for (k, preview) in previews.iter().enumerate() {
                        let Some(rgb) = preview else { continue };
                        let index = first + k as u32;
                        let count = sent.entry(index).or_default();
                        if let Ok(png) = encode::png(rgb, None) {
                            let data = json!({
                                "type": format!("{kind}.partial_image"),
                                "b64_json": base64::engine::general_purpose::STANDARD.encode(png),
                                "partial_image_index": *count,
                                "index": index,
                                "created_at": created,
                                "size": size,
                                "quality": output.quality,
                                "background": "opaque",
                                "output_format": "png",
                            });
                            *count += 1;
                            let _ = tx.send(
                                Event::default()
                                    .event(format!("{kind}.partial_image"))
                                    .data(data.to_string()),
                            );
                        }
                    }
                }
                PaintEvent::Painted(p) => completed.push(p.clone()),
                _ => {}
            },
        )
        .await;
        match result {
            Ok(_) => {
                for p in &completed {
                    match datum(&state, &request, p, &output, &base).await {
                        Ok(d) => {
                            let mut data = json!({
                                "type": format!("{kind}.completed"),
                                "created_at": created,
                                "size": size,
                                "quality": output.quality,
                                "background": "opaque",
                                "output_format": format,
                                "index": p.index,
                                "seed": p.seed,
                                "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}},
                            });
                            for key in ["b64_json", "url"] {
                                if let Some(v) = d.get(key) {
                                    data[key] = v.clone();
                                }
                            }
                            let _ = tx.send(
                                Event::default()
                                    .event(format!("{kind}.completed"))
                                    .data(data.to_string()),
                            );
                        }
                        Err(e) => {
                            let _ = tx.send(error_event(&e.message));
                        }
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(error_event(&e.to_string()));
            }
        }
    });
    let stream = futures_util::stream::unfold(
        (rx, guard_cancel.drop_guard()),
        |(mut rx, guard)| async move { rx.recv().await.map(|event| (Ok(event), (rx, guard))) },
    );
    Sse::new(stream)
}

fn error_event(message: &str) -> Event {
    let data = json!({"type": "error", "error": {"message": message, "type": "server_error", "param": null, "code": null}});
    Event::default().event("error").data(data.to_string())
}
