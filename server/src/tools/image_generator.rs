//! The `image_generator` tool: its JSON schema (what the LLM sees), argument validation that
//! answers mistakes with a reason the LLM can act on, and the call into the image engine.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{styles, ToolContext, ToolOutcome, ToolSpec};
use crate::imaging::diffusion::prompt;
use crate::imaging::request::{self, ImageParams, Quality, SizeChoice, SizePolicy};
use crate::jobs::prepare::{prepare_edit, EditUpload};
use crate::jobs::wire::Translator;
use crate::jobs::{CallerInfo, JobEnd, JobEvent, JobOrder, JobOrigin, SubmitError};
use crate::store::JobState;

pub const NAME: &str = "image_generator";

/// The tool's definition for the model, with the sizes of the model that will paint.
pub fn spec(allowed_sizes: &[String], can_edit: bool) -> ToolSpec {
    let mut sizes = vec!["auto".to_string()];
    sizes.extend(allowed_sizes.iter().cloned());
    let style_names: Vec<&str> = styles::PRESETS.iter().map(|p| p.id).collect();
    let mut properties = json!({
        "prompt": {
            "type": "string",
            "description": "Detailed description of the image: subject, setting, composition, lighting, colors. English works best.",
            "minLength": 1,
            "maxLength": request::MAX_PROMPT_CHARS
        },
        "n": {"type": "integer", "minimum": 1, "maximum": request::MAX_IMAGES, "default": 1, "description": "How many images to make."},
        "quality": {"type": "string", "enum": ["auto", "low", "medium", "high"], "default": "auto", "description": "More steps for higher quality; low is fastest."},
        "size": {"type": "string", "enum": sizes, "default": "auto", "description": "WIDTHxHEIGHT in pixels, or auto for the model's default."},
        "style": {"type": "string", "description": format!("A style preset ({}) or a short free-text style such as \"ukiyo-e\".", style_names.join(", "))},
        "negative_prompt": {"type": "string", "description": "What the image must not show."},
        "seed": {"type": "integer", "minimum": 0, "description": "Reuse a seed from an earlier result to keep the composition when changing details."}
    });
    if can_edit {
        properties["source_image"] = json!({"type": "string", "description": "Id of an earlier image of this conversation to refine instead of starting over (e.g. \"make it brighter\")."});
        properties["strength"] = json!({"type": "number", "minimum": 0.05, "maximum": 1, "default": 0.6, "description": "With source_image: how much may change (0.3 subtle, 0.6 clear changes, 1 almost new)."});
    }
    ToolSpec {
        name: NAME,
        description: "Creates images from a text description with Easel's local diffusion model. The images are shown to the user directly; the result lists their ids and seeds. Call it when the user asks for a picture, drawing, photo or illustration.".into(),
        parameters: json!({"type": "object", "properties": properties, "required": ["prompt"], "additionalProperties": false}),
    }
}

/// The arguments as the LLM may send them; types are checked by hand for clearer messages.
#[derive(Debug, Default, Deserialize)]
struct RawArgs {
    prompt: Option<Value>,
    n: Option<Value>,
    quality: Option<Value>,
    size: Option<Value>,
    style: Option<Value>,
    negative_prompt: Option<Value>,
    seed: Option<Value>,
    source_image: Option<Value>,
    strength: Option<Value>,
}

/// Validated arguments: the tool's own rules (DESIGN.md), before the model's.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageToolArgs {
    pub prompt: String,
    pub n: i64,
    pub quality: Quality,
    pub size: SizeChoice,
    pub style: Option<String>,
    pub negative_prompt: String,
    pub seed: Option<u64>,
    pub source_image: Option<String>,
    pub strength: Option<f32>,
}

pub fn parse_arguments(arguments: &str) -> Result<ImageToolArgs, String> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    let raw: RawArgs = serde_json::from_str(text)
        .map_err(|e| format!("the arguments are not a valid JSON object: {e}"))?;
    let string = |field: &str, v: &Option<Value>| -> Result<Option<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{field} must be a string (got {other})")),
        }
    };
    let prompt = string("prompt", &raw.prompt)?.unwrap_or_default();
    let chars = prompt.trim().chars().count();
    if chars == 0 || chars > request::MAX_PROMPT_CHARS {
        return Err(format!(
            "prompt is required and must be 1 to {} characters (got {chars})",
            request::MAX_PROMPT_CHARS
        ));
    }
    let n = match &raw.n {
        None | Some(Value::Null) => 1,
        Some(Value::Number(num)) => match num.as_i64() {
            Some(v) => v,
            None => {
                return Err(format!(
                    "n must be a whole number from 1 to {} (got {num})",
                    request::MAX_IMAGES
                ))
            }
        },
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("n must be a whole number (got \"{s}\")"))?,
        Some(other) => return Err(format!("n must be a whole number (got {other})")),
    };
    if !(1..=i64::from(request::MAX_IMAGES)).contains(&n) {
        return Err(format!(
            "n must be from 1 to {} (got {n})",
            request::MAX_IMAGES
        ));
    }
    let quality = match string("quality", &raw.quality)? {
        None => Quality::Auto,
        Some(q) => Quality::parse(&q)
            .ok_or_else(|| format!("quality must be auto, low, medium or high (got \"{q}\")"))?,
    };
    let size = match string("size", &raw.size)? {
        None => SizeChoice::Auto,
        Some(s) => SizeChoice::parse(&s)
            .ok_or_else(|| format!("size must be auto or WIDTHxHEIGHT (got \"{s}\")"))?,
    };
    let seed = match &raw.seed {
        None | Some(Value::Null) => None,
        Some(Value::Number(num)) => Some(
            num.as_u64()
                .ok_or_else(|| format!("seed must be a whole number ≥ 0 (got {num})"))?,
        ),
        Some(other) => return Err(format!("seed must be a whole number (got {other})")),
    };
    let strength = match &raw.strength {
        None | Some(Value::Null) => None,
        Some(Value::Number(num)) => {
            let s = num.as_f64().unwrap_or(-1.0) as f32;
            if !(s > 0.0 && s <= 1.0) {
                return Err(format!(
                    "strength must be above 0 and at most 1 (got {num})"
                ));
            }
            Some(s)
        }
        Some(other) => return Err(format!("strength must be a number (got {other})")),
    };
    Ok(ImageToolArgs {
        prompt: prompt.trim().to_string(),
        n,
        quality,
        size,
        style: string("style", &raw.style)?.filter(|s| !s.trim().is_empty()),
        negative_prompt: string("negative_prompt", &raw.negative_prompt)?.unwrap_or_default(),
        seed,
        source_image: string("source_image", &raw.source_image)?.filter(|s| !s.trim().is_empty()),
        strength,
    })
}

/// Runs one call: validate, submit an image job for the reply's message, relay its events,
/// and answer the LLM with what was made. The job stores each image on the message as it
/// finishes; if the run is stopped, the job is cancelled with it.
pub async fn call(ctx: &ToolContext<'_>, arguments: &str) -> ToolOutcome {
    let args = match parse_arguments(arguments) {
        Ok(a) => a,
        Err(reason) => return ToolOutcome::error(reason),
    };
    let model = match ctx.jobs.engine().model(None) {
        Ok(m) => m,
        Err(e) => return ToolOutcome::error(e.to_string()),
    };
    let (engine_prompt, negative) =
        styles::apply(args.style.as_deref(), &args.prompt, &args.negative_prompt);
    let prompts = ctx.jobs.engine().prompt_options();
    let mut params = ImageParams {
        prompt: engine_prompt,
        negative_prompt: negative,
        n: Some(args.n),
        size: args.size,
        quality: args.quality,
        seed: args.seed,
        preview: ctx.preview,
        long_prompts: Some(prompts.long_prompts),
        prompt_weighting: Some(prompts.weighting),
        ..ImageParams::default()
    };

    // Refining an earlier picture: its bytes come from this conversation's history, prepared
    // the same way as every other edit (size fitted to the model).
    let mut edit = None;
    let mut policy = SizePolicy::AllowedOnly;
    if let Some(id) = &args.source_image {
        let Some(bytes) = (ctx.find_image)(id).await else {
            return ToolOutcome::error(format!(
                "source_image `{id}` is not an image of this conversation; use an id from an earlier image_generator result"
            ));
        };
        let upload = EditUpload {
            source: bytes,
            mask: None,
            size: args.size,
            strength: args.strength,
        };
        policy = SizePolicy::AnyMultipleOf8;
        match prepare_edit(upload, &model, policy).await {
            Ok(prepared) => {
                params.size = SizeChoice::Exact(prepared.width, prepared.height);
                params.strength = Some(prepared.source.strength);
                edit = Some(prepared.source);
            }
            Err(e) => return ToolOutcome::error(e.to_string()),
        }
    }
    let request = match request::resolve(params, &model, policy) {
        Ok(r) => r,
        Err(e) => return ToolOutcome::error(e.to_string()),
    };
    let (width, height, steps, model_id) = (
        request.width,
        request.height,
        request.steps,
        request.model.clone(),
    );
    // A prompt longer than the encoder reads is painted anyway; the person and the LLM are told.
    let warning = model.tokenizer().and_then(|tokenizer| {
        let report = prompt::report(&tokenizer, &request.prompt, request.prompt_options);
        (report.dropped > 0).then(|| {
            format!(
                "the prompt is {} tokens; the model read the first {} and cut the last {}",
                report.tokens, report.limit, report.dropped
            )
        })
    });

    let order = JobOrder {
        owner: ctx.owner.to_string(),
        origin: JobOrigin::Chat {
            conversation_id: ctx.conversation_id.to_string(),
            message_id: ctx.message_id.to_string(),
            tool_call_id: ctx.call_id.to_string(),
            first_index: ctx.first_index,
        },
        request,
        edit,
        caller: CallerInfo {
            arguments: serde_json::from_str::<Value>(arguments).unwrap_or(Value::Null),
            source_image_id: args.source_image.clone(),
            shown_prompt: args.prompt.clone(),
        },
        keep_pixels: false,
        milestones: Vec::new(),
    };
    let submitted = match ctx.jobs.submit(order).await {
        Ok(s) => s,
        Err(e @ (SubmitError::QueueFull { .. } | SubmitError::ShortOfCredits { .. })) => {
            return ToolOutcome::error(e.to_string())
        }
        Err(e) => return ToolOutcome::error(format!("the image job could not be queued: {e}")),
    };
    let job = match ctx.jobs.job(ctx.owner, &submitted.id).await {
        Ok(Some(job)) => job,
        _ => return ToolOutcome::error("the image job disappeared before it started"),
    };

    // Relay the job's events until it ends; a stopped run cancels the job (and keeps relaying
    // until the job says how it ended, so images finished meanwhile are still announced).
    let mut translator = Translator::new(&job);
    let mut images: Vec<Value> = Vec::new();
    let mut cursor = 0;
    let mut cancel_sent = false;
    let end = loop {
        let next = tokio::select! {
            next = job.log.next_after(cursor) => Some(next),
            _ = ctx.cancel.cancelled(), if !cancel_sent => None,
        };
        let Some((events, ended)) = next else {
            cancel_sent = true;
            let _ = ctx.jobs.cancel(ctx.owner, &job.id).await;
            continue;
        };
        let mut end = None;
        for entry in events {
            cursor = entry.id;
            if let JobEvent::Image(image) = &entry.event {
                images.push(json!({"id": image.id, "seed": image.seed}));
            }
            for wire in translator.translate(&job, &entry.event) {
                ctx.sink.image_event(wire);
            }
            if let JobEvent::Ended(e) = entry.event {
                end = Some(e);
            }
        }
        if let Some(end) = end {
            break end;
        }
        if ended {
            break JobEnd {
                state: JobState::Cancelled,
                error: Some(("stopped".into(), "The server is shutting down.".into())),
                timings: None,
            };
        }
    };
    let count = images.len() as u32;
    // With credits on, the LLM learns what the images cost and what is left.
    let credits = match ctx.jobs.credits_left(ctx.owner).await {
        Some(left) => json!({"spent": submitted.cost, "left": left}),
        None => Value::Null,
    };
    match end.state {
        JobState::Done => {
            let mut result = json!({
                "status": "ok",
                "model": model_id,
                "prompt": args.prompt,
                "size": format!("{width}x{height}"),
                "steps": steps,
                "style": args.style,
                "images": images,
                "note": "The images are already shown to the user. Do not repeat ids or links. To change one, call image_generator again with source_image set to its id (or reuse its seed)."
            });
            if !credits.is_null() {
                result["credits"] = credits;
            }
            if let Some(w) = warning {
                result["warning"] = json!(w);
            }
            ToolOutcome {
                result: result.to_string(),
                is_error: false,
                images: count,
                cancelled: false,
            }
        }
        JobState::Cancelled => ToolOutcome {
            result: json!({"status": "cancelled", "images": images}).to_string(),
            is_error: true,
            images: count,
            cancelled: true,
        },
        _ => ToolOutcome {
            images: count,
            ..ToolOutcome::error(
                end.error
                    .map(|(_, message)| message)
                    .unwrap_or_else(|| "image generation failed".into()),
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_arguments_parse_with_defaults() {
        let a = parse_arguments(
            r#"{"prompt":" a fox ","size":"512x512","quality":"high","seed":42,"style":"anime"}"#,
        )
        .unwrap();
        assert_eq!(a.prompt, "a fox");
        assert_eq!(a.n, 1);
        assert_eq!(a.size, SizeChoice::Exact(512, 512));
        assert_eq!(a.quality, Quality::High);
        assert_eq!(a.seed, Some(42));
        assert_eq!(a.style.as_deref(), Some("anime"));
    }

    #[test]
    fn mistakes_come_back_as_reasons() {
        assert!(parse_arguments(r#"{"prompt":"x","n":11}"#)
            .unwrap_err()
            .contains("n must be from 1 to 10 (got 11)"));
        assert!(parse_arguments(r#"{"prompt":""}"#)
            .unwrap_err()
            .contains("prompt is required"));
        assert!(parse_arguments(r#"{"n":2}"#)
            .unwrap_err()
            .contains("prompt is required"));
        assert!(parse_arguments(r#"{"prompt":"x","quality":"ultra"}"#)
            .unwrap_err()
            .contains("quality must be"));
        assert!(parse_arguments(r#"{"prompt":"x","size":"big"}"#)
            .unwrap_err()
            .contains("size must be"));
        assert!(parse_arguments(r#"{"prompt": "x""#)
            .unwrap_err()
            .contains("not a valid JSON"));
        assert!(parse_arguments(r#"{"prompt":"x","n":2.5}"#)
            .unwrap_err()
            .contains("whole number"));
        let long = "a".repeat(2001);
        assert!(parse_arguments(&json!({"prompt": long}).to_string())
            .unwrap_err()
            .contains("2000"));
    }

    #[test]
    fn schema_lists_sizes_and_requires_prompt() {
        let s = spec(&["512x512".into()], true);
        assert_eq!(s.parameters["required"], json!(["prompt"]));
        assert_eq!(
            s.parameters["properties"]["size"]["enum"],
            json!(["auto", "512x512"])
        );
        assert_eq!(s.parameters["properties"]["n"]["maximum"], 10);
        assert!(s.parameters["properties"].get("source_image").is_some());
    }
}
