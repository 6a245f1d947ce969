//! Image requests as callers state them (tool call, Studio form, images API, command line) and
//! their resolution against one model into a [`GenerationRequest`] that cannot hold an invalid
//! value: counts, sizes, steps and lengths are checked here, once, with errors naming the field.

use super::diffusion::pipeline::EditInput;
use super::diffusion::preview::PreviewRate;
use super::diffusion::prompt::{LongPrompts, PromptOptions};
use super::diffusion::schedulers::{SamplerKind, Schedule};
use super::presets::size_text;
use super::registry::ModelEntry;

pub const MAX_IMAGES: u32 = 10;
pub const MAX_PROMPT_CHARS: usize = 2000;
pub const MAX_STEPS: u32 = 150;
pub const MAX_GUIDANCE: f32 = 30.0;
pub const MIN_SIDE: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    #[default]
    Auto,
    Low,
    Medium,
    High,
}

impl Quality {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Quality::Auto),
            "low" | "draft" => Some(Quality::Low),
            "medium" | "standard" => Some(Quality::Medium),
            "high" | "hd" => Some(Quality::High),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeChoice {
    #[default]
    Auto,
    Exact(u32, u32),
}

impl SizeChoice {
    /// `auto` or `WIDTHxHEIGHT`; `None` when the text is neither.
    pub fn parse(text: &str) -> Option<Self> {
        if text.trim().eq_ignore_ascii_case("auto") || text.trim().is_empty() {
            return Some(SizeChoice::Auto);
        }
        let (w, h) = text.trim().split_once(['x', 'X', '×'])?;
        Some(SizeChoice::Exact(
            w.trim().parse().ok()?,
            h.trim().parse().ok()?,
        ))
    }
}

/// Whether a size must be one of the model's allowed sizes (tool, API) or any multiple of 8 up
/// to the model's maximum (command line, Studio's advanced settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizePolicy {
    AllowedOnly,
    AnyMultipleOf8,
}

/// An image request before it meets a model.
#[derive(Debug, Clone, Default)]
pub struct ImageParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub n: Option<i64>,
    pub size: SizeChoice,
    pub quality: Quality,
    pub steps: Option<i64>,
    pub guidance: Option<f32>,
    /// diffusers' `guidance_rescale` (0–1): pulls the guided prediction's spread back to the
    /// conditional one's, against over-exposure with zero-SNR v-prediction models.
    pub guidance_rescale: Option<f32>,
    /// Prompts over 75 tokens: chunked (default) or truncated.
    pub long_prompts: Option<LongPrompts>,
    /// Whether `(word:1.3)` is a weight (default) or literal text.
    pub prompt_weighting: Option<bool>,
    pub sampler: Option<String>,
    pub schedule: Option<String>,
    pub seed: Option<u64>,
    /// Unit-variance initial latents `[n, 4, h/8, w/8]`.
    pub latents: Option<Vec<f32>>,
    pub preview: PreviewRate,
    /// Set for edits: how much of the source may change. The source itself is prepared (and
    /// its size fixed) before resolving, by `jobs::prepare`.
    pub strength: Option<f32>,
}

/// A request resolved against one model: every value present and in range.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub model: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub n: u32,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub guidance_rescale: f32,
    pub prompt_options: PromptOptions,
    pub sampler: SamplerKind,
    pub schedule: Schedule,
    /// Image `i` uses `seed + i`, so each image can be remade alone from its own seed.
    pub seed: u64,
    pub latents: Option<Vec<f32>>,
    pub preview: PreviewRate,
    /// Set for edits (validated: above 0, at most 1).
    pub strength: Option<f32>,
    /// The edit's pixels, attached when the job runs (see `jobs::spec`).
    pub edit: Option<EditInput>,
}

impl GenerationRequest {
    pub fn seed_of(&self, index: u32) -> u64 {
        self.seed.wrapping_add(u64::from(index))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RequestError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> RequestError {
    RequestError {
        field,
        message: message.into(),
    }
}

/// Whether `w`×`h` may be made with `model`: multiples of 8 from [`MIN_SIDE`] to the model's
/// maximum, and under [`SizePolicy::AllowedOnly`] one of its allowed sizes. Callers check this
/// before they allocate anything for the size (an edit's resized source).
pub fn check_size(
    w: u32,
    h: u32,
    model: &ModelEntry,
    policy: SizePolicy,
) -> Result<(), RequestError> {
    let p = &model.presets;
    if policy == SizePolicy::AllowedOnly && !p.allowed_sizes.contains(&(w, h)) {
        let allowed: Vec<String> = p.allowed_sizes.iter().map(|&s| size_text(s)).collect();
        return Err(bad(
            "size",
            format!(
                "{w}x{h} is not allowed for model {}; use auto or one of {}",
                model.id,
                allowed.join(", ")
            ),
        ));
    }
    if !w.is_multiple_of(8)
        || !h.is_multiple_of(8)
        || w < MIN_SIDE
        || h < MIN_SIDE
        || w > p.max_size
        || h > p.max_size
    {
        return Err(bad(
            "size",
            format!(
                "{w}x{h} must be multiples of 8 from {MIN_SIDE} to {} on each side",
                p.max_size
            ),
        ));
    }
    Ok(())
}

/// Text fields may hold any Unicode but NUL (which no file format or tokenizer keeps).
fn check_text(field: &'static str, text: &str) -> Result<(), RequestError> {
    if text.contains('\0') {
        return Err(bad(field, "must not contain NUL characters"));
    }
    Ok(())
}

pub fn resolve(
    params: ImageParams,
    model: &ModelEntry,
    policy: SizePolicy,
) -> Result<GenerationRequest, RequestError> {
    let p = &model.presets;
    let prompt = params.prompt.trim().to_string();
    let chars = prompt.chars().count();
    if chars == 0 || chars > MAX_PROMPT_CHARS {
        return Err(bad(
            "prompt",
            format!("must be 1 to {MAX_PROMPT_CHARS} characters (got {chars})"),
        ));
    }
    check_text("prompt", &prompt)?;
    check_text("negative_prompt", &params.negative_prompt)?;
    let negative_chars = params.negative_prompt.chars().count();
    if negative_chars > MAX_PROMPT_CHARS {
        return Err(bad(
            "negative_prompt",
            format!("must be at most {MAX_PROMPT_CHARS} characters (got {negative_chars})"),
        ));
    }
    let n = params.n.unwrap_or(1);
    if !(1..=i64::from(MAX_IMAGES)).contains(&n) {
        return Err(bad(
            "n",
            format!("must be an integer from 1 to {MAX_IMAGES} (got {n})"),
        ));
    }
    let (width, height) = match params.size {
        SizeChoice::Auto => p.default_size,
        SizeChoice::Exact(w, h) => {
            check_size(w, h, model, policy)?;
            (w, h)
        }
    };
    let steps = match params.steps {
        Some(s) => s,
        None => i64::from(match params.quality {
            Quality::Auto => p.steps.auto,
            Quality::Low => p.steps.low,
            Quality::Medium => p.steps.medium,
            Quality::High => p.steps.high,
        }),
    };
    if !(1..=i64::from(MAX_STEPS)).contains(&steps) {
        return Err(bad(
            "steps",
            format!("must be from 1 to {MAX_STEPS} (got {steps})"),
        ));
    }
    let guidance = params.guidance.unwrap_or(p.default_guidance);
    if !guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&guidance) {
        return Err(bad(
            "guidance",
            format!("must be from 0 to {MAX_GUIDANCE} (got {guidance})"),
        ));
    }
    // Zero-SNR v-prediction models are trained to be guided with a rescale (0.7 in "Common
    // Diffusion Noise Schedules and Sample Steps are Flawed"); others default to none.
    let guidance_rescale = params.guidance_rescale.unwrap_or(
        if model.scheduler.rescale_betas_zero_snr
            && model.scheduler.prediction_type == "v_prediction"
        {
            0.7
        } else {
            0.0
        },
    );
    if !guidance_rescale.is_finite() || !(0.0..=1.0).contains(&guidance_rescale) {
        return Err(bad(
            "guidance_rescale",
            format!("must be from 0 to 1 (got {guidance_rescale})"),
        ));
    }
    let sampler = match params
        .sampler
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "auto")
    {
        Some(s) => SamplerKind::parse(s).ok_or_else(|| {
            let names: Vec<&str> = SamplerKind::ALL.iter().map(|k| k.name()).collect();
            bad(
                "sampler",
                format!("`{s}` is not one of {}", names.join(", ")),
            )
        })?,
        None => p.default_sampler,
    };
    let schedule = match params
        .schedule
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "auto")
    {
        Some(s) => Schedule::parse(s)
            .ok_or_else(|| bad("schedule", format!("`{s}` is not discrete or karras")))?,
        None => p.default_schedule,
    };
    // The sampler itself may refuse a combination (LCM takes at most its distillation's
    // step count): ask it now, so the caller gets the reason before the job is queued.
    if let Err(e) =
        super::diffusion::schedulers::build(sampler, schedule, &model.scheduler, steps as usize)
    {
        return Err(bad(
            "steps",
            format!("{} with {steps} steps: {e}", sampler.name()),
        ));
    }
    if let Some(latents) = &params.latents {
        let expected = n as usize * 4 * (height as usize / 8) * (width as usize / 8);
        if latents.len() != expected {
            return Err(bad(
                "latents",
                format!("have {} values; {n} image(s) of {width}x{height} need {expected} ([{n}, 4, {}, {}])", latents.len(), height / 8, width / 8),
            ));
        }
    }
    if let Some(strength) = params.strength {
        if !model.has_vae_encoder {
            return Err(bad(
                "image",
                format!(
                    "model {} has no vae_encoder, so it cannot edit images",
                    model.id
                ),
            ));
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(bad(
                "strength",
                format!("must be above 0 and at most 1 (got {strength})"),
            ));
        }
    }
    Ok(GenerationRequest {
        model: model.id.clone(),
        prompt,
        negative_prompt: params.negative_prompt.trim().to_string(),
        n: n as u32,
        width,
        height,
        steps: steps as u32,
        guidance,
        guidance_rescale,
        prompt_options: PromptOptions {
            long_prompts: params.long_prompts.unwrap_or_default(),
            weighting: params.prompt_weighting.unwrap_or(true),
        },
        sampler,
        schedule,
        seed: params.seed.unwrap_or_else(random_seed),
        latents: params.latents,
        preview: params.preview,
        strength: params.strength,
        edit: None,
    })
}

/// A fresh seed below 2^32 (easy to read and type back), from the clock and a counter.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish() & 0xFFFF_FFFF
}
