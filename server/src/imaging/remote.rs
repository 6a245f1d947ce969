//! Image models painted by another server's OpenAI-compatible images API (`[[images.remote]]`):
//! another Easel's `/v1`, GPUStack, OpenAI, or anything that speaks `/images/generations` and
//! `/images/edits`. To the rest of Easel such a model is one more engine model: requests are
//! checked against its entry, and [`paint`] turns the API's answers into the same
//! [`EngineEvent`]s a local run sends (partial images as previews, each finished image as it
//! arrives), so jobs, chat, Studio and `/v1` need nothing of their own.
//!
//! Only what the server understands is sent: OpenAI-kind servers get prompt, count, size and
//! quality; Easel-kind servers also get the seed, steps, guidance, sampler and negative prompt,
//! so the pixels are the ones the request names. Failures become [`RemoteError`]s whose kind
//! callers map to their own answers (a busy backend is a 429 to `/v1` clients, a timeout a 504).

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::StreamExt;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::diffusion::pipeline::{FloatImage, Timings};
use super::encode;
use super::request::GenerationRequest;
use super::{EngineError, EngineEvent, GeneratedImage};
use crate::config::{RemoteKind, RemoteModel};

/// Why a remote backend did not paint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteFailure {
    /// 401/403: the key in the configuration is wrong or missing.
    Unauthorized,
    /// 429 or 503 after every retry.
    Busy,
    /// 400/404/413/422: the server refused this request.
    Rejected,
    /// 5xx, a broken answer or a connection that failed.
    Failed,
    /// No answer within the entry's timeout.
    Timeout,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub failure: RemoteFailure,
    pub message: String,
}

impl RemoteError {
    fn new(failure: RemoteFailure, message: impl Into<String>) -> Self {
        RemoteError {
            failure,
            message: message.into(),
        }
    }

    /// The error code jobs record and APIs report.
    pub fn code(&self) -> &'static str {
        match self.failure {
            RemoteFailure::Unauthorized => "remote_unauthorized",
            RemoteFailure::Busy => "remote_busy",
            RemoteFailure::Rejected => "remote_rejected",
            RemoteFailure::Failed => "remote_failed",
            RemoteFailure::Timeout => "remote_timeout",
        }
    }
}

/// Partial images asked of a streaming server per image (OpenAI allows 0–3).
const PARTIAL_IMAGES: u32 = 2;
/// The largest answer read from a server: a few full-size PNGs in base64.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Paints `request` on the remote backend: retries a busy server as it asks, gives up at the
/// entry's timeout, and stops (dropping the connection) the moment `cancel` fires.
pub async fn paint(
    remote: &RemoteModel,
    request: GenerationRequest,
    events: mpsc::UnboundedSender<EngineEvent>,
    cancel: CancellationToken,
) -> Result<Timings, EngineError> {
    let started = Instant::now();
    let work = attempts(remote, &request, &events);
    let outcome = tokio::select! {
        _ = cancel.cancelled() => return Err(EngineError::Cancelled),
        outcome = tokio::time::timeout(remote.timeout, work) => outcome,
    };
    match outcome {
        Ok(Ok(())) => Ok(Timings {
            denoise_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..Timings::default()
        }),
        Ok(Err(e)) => Err(EngineError::Remote(e)),
        Err(_) => Err(EngineError::Remote(RemoteError::new(
            RemoteFailure::Timeout,
            format!(
                "the image backend `{}` did not answer within {} s",
                remote.name,
                remote.timeout.as_secs()
            ),
        ))),
    }
}

async fn attempts(
    remote: &RemoteModel,
    request: &GenerationRequest,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> Result<(), RemoteError> {
    let client = client()?;
    let mut attempt = 0;
    loop {
        let response = send(client, remote, request).await?;
        let status = response.status().as_u16();
        if matches!(status, 429 | 503) && attempt < remote.retries {
            attempt += 1;
            let wait = retry_after(&response).unwrap_or(Duration::from_secs(1 << attempt.min(4)));
            tracing::info!(model = %remote.name, status, ?wait, attempt, "image backend busy; retrying");
            tokio::time::sleep(wait.min(remote.max_retry_wait)).await;
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(refusal(remote, status, response).await);
        }
        let streaming = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        return if streaming {
            read_stream(remote, request, response, events).await
        } else {
            read_json(remote, request, response, events).await
        };
    }
}

/// One HTTP client for every remote request, so connections to a backend are reused.
fn client() -> Result<&'static reqwest::Client, RemoteError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let built = crate::net::http_client()
        .connect_timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| RemoteError::new(RemoteFailure::Failed, e.to_string()))?;
    Ok(CLIENT.get_or_init(|| built))
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: f64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// The server's refusal, with its own message when it sent one in OpenAI's error shape.
async fn refusal(remote: &RemoteModel, status: u16, response: reqwest::Response) -> RemoteError {
    let body = response.bytes().await.unwrap_or_default();
    let said = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let said: String = said.chars().take(300).collect();
    let name = &remote.name;
    let (failure, message) = match status {
        401 | 403 => (
            RemoteFailure::Unauthorized,
            format!("the image backend `{name}` refused Easel's API key ({status}); check its api_key in easel.toml"),
        ),
        429 | 503 => (
            RemoteFailure::Busy,
            format!("the image backend `{name}` is busy ({status}) and stayed busy after {} retries: {said}", remote.retries),
        ),
        400..=499 => (
            RemoteFailure::Rejected,
            format!("the image backend `{name}` refused the request ({status}): {said}"),
        ),
        _ => (
            RemoteFailure::Failed,
            format!("the image backend `{name}` failed ({status}): {said}"),
        ),
    };
    RemoteError::new(failure, message)
}

fn size_text(request: &GenerationRequest) -> String {
    format!("{}x{}", request.width, request.height)
}

/// One request to the backend: JSON for new images, multipart for edits.
async fn send(
    client: &reqwest::Client,
    remote: &RemoteModel,
    request: &GenerationRequest,
) -> Result<reqwest::Response, RemoteError> {
    use serde_json::json;
    let mut fields: Vec<(&str, serde_json::Value)> = vec![
        ("model", json!(remote.model)),
        ("prompt", json!(request.prompt)),
        ("n", json!(request.n)),
        ("size", json!(size_text(request))),
    ];
    if remote.kind == RemoteKind::Easel {
        fields.push(("seed", json!(request.seed)));
        fields.push(("steps", json!(request.steps)));
        fields.push(("guidance", json!(request.guidance)));
        fields.push(("guidance_rescale", json!(request.guidance_rescale)));
        fields.push(("sampler", json!(request.sampler.name())));
        fields.push(("schedule", json!(request.schedule.name())));
        fields.push((
            "long_prompts",
            json!(request.prompt_options.long_prompts.name()),
        ));
        fields.push(("prompt_weighting", json!(request.prompt_options.weighting)));
        if !request.negative_prompt.is_empty() {
            fields.push(("negative_prompt", json!(request.negative_prompt)));
        }
        fields.push(("response_format", json!("b64_json")));
    }
    if remote.stream {
        fields.push(("stream", json!(true)));
        fields.push(("partial_images", json!(PARTIAL_IMAGES)));
    }
    let endpoint = |path: &str| format!("{}/images/{path}", remote.url);
    let builder = match &request.edit {
        None => {
            let body: serde_json::Map<String, serde_json::Value> = fields
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect();
            client.post(endpoint("generations")).json(&body)
        }
        Some(edit) => {
            let (width, height) = (request.width, request.height);
            let source = source_png(&edit.image, width, height)?;
            let mut form = Multipart::new();
            for (key, value) in &fields {
                // Form fields are text: strings as they are, numbers and booleans as written.
                match value.as_str() {
                    Some(text) => form.text(key, text),
                    None => form.text(key, &value.to_string()),
                }
            }
            if remote.kind == RemoteKind::Easel {
                form.text("strength", &edit.strength.to_string());
            }
            form.file("image", "image.png", &source);
            if let Some(mask) = &edit.mask {
                form.file("mask", "mask.png", &mask_png(mask, width, height)?);
            }
            let (content_type, body) = form.finish();
            client
                .post(endpoint("edits"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
        }
    };
    let builder = match &remote.api_key {
        Some(key) => builder.bearer_auth(key),
        None => builder,
    };
    builder.send().await.map_err(|e| {
        RemoteError::new(
            RemoteFailure::Failed,
            format!("the image backend `{}` cannot be reached: {e}", remote.name),
        )
    })
}

/// The edit's source (`[3, h, w]` in [-1, 1]) as the PNG it came from.
fn source_png(image: &[f32], width: u32, height: u32) -> Result<Vec<u8>, RemoteError> {
    let plane = (width * height) as usize;
    if image.len() != 3 * plane {
        return Err(RemoteError::new(
            RemoteFailure::Failed,
            "the edit's source has the wrong size",
        ));
    }
    let rgb = RgbImage::from_fn(width, height, |x, y| {
        let i = (y * width + x) as usize;
        let channel = |c: usize| {
            ((image[c * plane + i] + 1.0) * 127.5)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        Rgb([channel(0), channel(1), channel(2)])
    });
    encode::png(&rgb, None).map_err(|e| RemoteError::new(RemoteFailure::Failed, e.to_string()))
}

/// The edit's mask as OpenAI reads one: transparent where the picture should change.
fn mask_png(mask: &[f32], width: u32, height: u32) -> Result<Vec<u8>, RemoteError> {
    let rgba = RgbaImage::from_fn(width, height, |x, y| {
        let m = mask.get((y * width + x) as usize).copied().unwrap_or(1.0);
        Rgba([0, 0, 0, ((1.0 - m) * 255.0).round().clamp(0.0, 255.0) as u8])
    });
    encode::png_rgba(&rgba).map_err(|e| RemoteError::new(RemoteFailure::Failed, e.to_string()))
}

/// A finished image from its base64 PNG or JPEG, checked against the size asked for.
fn finished(
    remote: &RemoteModel,
    request: &GenerationRequest,
    index: u32,
    seed: Option<u64>,
    b64: &str,
) -> Result<EngineEvent, RemoteError> {
    let broken = |why: String| {
        RemoteError::new(
            RemoteFailure::Failed,
            format!(
                "the image backend `{}` sent a broken image: {why}",
                remote.name
            ),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| broken(e.to_string()))?;
    let rgb = encode::decode(&bytes).map_err(|e| broken(e.to_string()))?;
    let (width, height) = rgb.dimensions();
    let plane = (width * height) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = f32::from(pixel.0[c]) / 255.0;
        }
    }
    Ok(EngineEvent::ImageReady(Box::new(GeneratedImage {
        index,
        seed: seed.unwrap_or_else(|| request.seed_of(index)),
        pixels: FloatImage {
            width,
            height,
            data,
        },
    })))
}

async fn read_body(
    remote: &RemoteModel,
    response: reqwest::Response,
) -> Result<Vec<u8>, RemoteError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            RemoteError::new(
                RemoteFailure::Failed,
                format!("the image backend `{}` stopped answering: {e}", remote.name),
            )
        })?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(RemoteError::new(
                RemoteFailure::Failed,
                format!(
                    "the image backend `{}` answered more than {} MB",
                    remote.name,
                    MAX_ANSWER_BYTES >> 20
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A plain JSON answer: `{"data": [{"b64_json": …}, …]}`.
async fn read_json(
    remote: &RemoteModel,
    request: &GenerationRequest,
    response: reqwest::Response,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> Result<(), RemoteError> {
    let body = read_body(remote, response).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        RemoteError::new(
            RemoteFailure::Failed,
            format!(
                "the image backend `{}` sent an answer that is not JSON: {e}",
                remote.name
            ),
        )
    })?;
    let data = answer["data"].as_array().cloned().unwrap_or_default();
    if data.is_empty() {
        return Err(RemoteError::new(
            RemoteFailure::Failed,
            format!("the image backend `{}` sent no images", remote.name),
        ));
    }
    for (index, datum) in data.iter().take(request.n as usize).enumerate() {
        let Some(b64) = datum["b64_json"].as_str() else {
            return Err(RemoteError::new(
                RemoteFailure::Failed,
                format!(
                    "the image backend `{}` answered without b64_json",
                    remote.name
                ),
            ));
        };
        let event = finished(remote, request, index as u32, datum["seed"].as_u64(), b64)?;
        let _ = events.send(event);
    }
    Ok(())
}

/// A streamed answer: `*.partial_image` events become previews, `*.completed` finished images,
/// an `error` event the failure.
async fn read_stream(
    remote: &RemoteModel,
    request: &GenerationRequest,
    response: reqwest::Response,
    events: &mpsc::UnboundedSender<EngineEvent>,
) -> Result<(), RemoteError> {
    let mut chunks = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut completed = 0u32;
    let mut next_index = 0u32;
    loop {
        while let Some(end) = find_event_end(&buffer) {
            let raw: Vec<u8> = buffer.drain(..end.0 + end.1).collect();
            let text = String::from_utf8_lossy(&raw[..end.0]).into_owned();
            let data: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect::<Vec<_>>()
                .join("\n");
            if data.is_empty() {
                continue;
            }
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&data) else {
                continue;
            };
            let kind = event["type"].as_str().unwrap_or_default();
            if kind.ends_with(".partial_image") {
                let index = event["index"]
                    .as_u64()
                    .map(|i| i as u32)
                    .unwrap_or(next_index);
                let count = event["partial_image_index"].as_u64().unwrap_or(0) as u32;
                let preview = event["b64_json"]
                    .as_str()
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|bytes| encode::decode(&bytes).ok());
                if let Some(rgb) = preview {
                    let _ = events.send(EngineEvent::Step {
                        first: index,
                        step: count + 1,
                        steps: PARTIAL_IMAGES + 1,
                        previews: vec![Some(rgb)],
                    });
                }
            } else if kind.ends_with(".completed") {
                let index = event["index"]
                    .as_u64()
                    .map(|i| i as u32)
                    .unwrap_or(next_index);
                next_index = index + 1;
                let b64 = event["b64_json"].as_str().ok_or_else(|| {
                    RemoteError::new(
                        RemoteFailure::Failed,
                        format!(
                            "the image backend `{}` streamed an image without b64_json",
                            remote.name
                        ),
                    )
                })?;
                let finished = finished(remote, request, index, event["seed"].as_u64(), b64)?;
                let _ = events.send(finished);
                completed += 1;
            } else if kind == "error" || event.get("error").is_some() {
                let message = event["error"]["message"]
                    .as_str()
                    .unwrap_or("unknown error");
                return Err(RemoteError::new(
                    RemoteFailure::Failed,
                    format!(
                        "the image backend `{}` failed: {}",
                        remote.name,
                        message.chars().take(300).collect::<String>()
                    ),
                ));
            }
        }
        match chunks.next().await {
            Some(Ok(chunk)) => {
                if buffer.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(RemoteError::new(
                        RemoteFailure::Failed,
                        format!(
                            "the image backend `{}` sent an event over {} MB",
                            remote.name,
                            MAX_ANSWER_BYTES >> 20
                        ),
                    ));
                }
                buffer.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                return Err(RemoteError::new(
                    RemoteFailure::Failed,
                    format!("the image backend `{}` stopped answering: {e}", remote.name),
                ))
            }
            None => break,
        }
    }
    if completed == 0 {
        return Err(RemoteError::new(
            RemoteFailure::Failed,
            format!(
                "the image backend `{}` ended its stream without an image",
                remote.name
            ),
        ));
    }
    Ok(())
}

/// Where the first server-sent event in `buffer` ends: (its length, the separator's length).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A `multipart/form-data` body, written by hand: the few fields an edit needs do not justify
/// another HTTP client feature.
struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    fn new() -> Multipart {
        Multipart {
            boundary: format!("easel-{}", uuid::Uuid::now_v7().simple()),
            body: Vec::new(),
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
    }

    fn file(&mut self, name: &str, filename: &str, bytes: &[u8]) {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
    }

    fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_split_on_either_line_ending() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some((7, 2)));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some((7, 4)));
        assert_eq!(find_event_end(b"data: 1\n"), None);
    }

    #[test]
    fn an_edit_source_goes_back_to_its_pixels() {
        // 8-bit pixels → [-1, 1] (as edits are prepared) → PNG → the same pixels.
        let (w, h) = (3u32, 2u32);
        let original: Vec<u8> = (0..(3 * w * h) as usize)
            .map(|i| (i * 37 % 256) as u8)
            .collect();
        let floats: Vec<f32> = original
            .iter()
            .map(|&v| f32::from(v) / 127.5 - 1.0)
            .collect();
        let png = source_png(&floats, w, h).unwrap();
        let rgb = encode::decode(&png).unwrap();
        let plane = (w * h) as usize;
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                assert_eq!(p.0[c], original[c * plane + i]);
            }
        }
    }
}
