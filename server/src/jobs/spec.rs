//! What a job stores about its request, and how it becomes the engine's request again when the
//! job runs (also after a restart): the validated values as JSON, the edit's source and mask as
//! lossless PNGs already at the job's size, caller-given latents as raw floats. Decoding those
//! gives back exactly the inputs the request was validated with, so a job that runs again paints
//! the same pixels.

use image::{RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::imaging::diffusion::pipeline::EditInput;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::diffusion::prompt::PromptOptions;
use crate::imaging::diffusion::schedulers::{SamplerKind, Schedule};
use crate::imaging::request::GenerationRequest;
use crate::imaging::{edit, encode};
use crate::store::{ImageMeta, JobInputs};

/// The stored form of a validated request (`image_jobs.request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub model: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub n: u32,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    /// 0 for every job stored before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guidance_rescale: f32,
    /// How the prompts are read; jobs stored before it existed read them as diffusers does.
    #[serde(default = "plain_prompts")]
    pub prompt_options: PromptOptions,
    pub sampler: String,
    pub schedule: String,
    pub seed: u64,
    pub preview: String,
    /// Set for edits (img2img, inpainting).
    #[serde(default)]
    pub strength: Option<f32>,
    /// The request as its caller stated it (tool arguments, Studio form, API body), kept with
    /// each image.
    #[serde(default)]
    pub arguments: serde_json::Value,
    /// The image an edit started from, when it is one of the user's images.
    #[serde(default)]
    pub source_image_id: Option<String>,
    /// The prompt as the person wrote it (before the style template), for progress events.
    #[serde(default)]
    pub shown_prompt: String,
    /// Steps whose previews stay in the event log (see `JobOrder::milestones`); stored so a
    /// worker elsewhere keeps them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<u32>,
}

fn plain_prompts() -> PromptOptions {
    PromptOptions::PLAIN
}

/// An edit's inputs at the job's size, as the one preparation function leaves them.
#[derive(Debug, Clone)]
pub struct EditSource {
    pub image: RgbImage,
    /// The painted mask (transparent or white = change); `None` edits the whole picture.
    pub mask: Option<RgbaImage>,
    pub strength: f32,
}

#[derive(Debug, thiserror::Error)]
#[error("the job's stored request cannot be used: {0}")]
pub struct SpecError(String);

impl JobSpec {
    pub fn new(request: &GenerationRequest, caller: CallerInfo) -> JobSpec {
        JobSpec {
            model: request.model.clone(),
            prompt: request.prompt.clone(),
            negative_prompt: request.negative_prompt.clone(),
            n: request.n,
            width: request.width,
            height: request.height,
            steps: request.steps,
            guidance: request.guidance,
            guidance_rescale: request.guidance_rescale,
            prompt_options: request.prompt_options,
            sampler: request.sampler.name().into(),
            schedule: request.schedule.name().into(),
            seed: request.seed,
            preview: request.preview.name().into(),
            strength: request.strength,
            arguments: caller.arguments,
            source_image_id: caller.source_image_id,
            shown_prompt: caller.shown_prompt,
            milestones: Vec::new(),
        }
    }

    /// The engine request, with the edit's pixels decoded from the stored PNGs.
    pub fn to_request(&self, inputs: &JobInputs) -> Result<GenerationRequest, SpecError> {
        let bad = |what: &str| SpecError(what.to_string());
        let latents = match &inputs.latents {
            Some(bytes) if bytes.len() % 4 == 0 => Some(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Some(_) => return Err(bad("latents are not whole floats")),
            None => None,
        };
        let edit = match (self.strength, &inputs.source_png) {
            (Some(strength), Some(png)) => {
                let source = encode::decode(png).map_err(|e| SpecError(e.to_string()))?;
                if source.dimensions() != (self.width, self.height) {
                    return Err(bad("the stored source is not at the job's size"));
                }
                let mask = match &inputs.mask_png {
                    Some(png) => {
                        let rgba =
                            encode::decode_rgba(png).map_err(|e| SpecError(e.to_string()))?;
                        let values = edit::mask_values(&rgba);
                        // A mask that asks to change nothing means the whole picture may change.
                        values.iter().any(|v| *v > 0.01).then_some(values)
                    }
                    None => None,
                };
                Some(EditInput {
                    image: edit::source_pixels(&source),
                    mask,
                    strength,
                })
            }
            (Some(_), None) => return Err(bad("an edit without its source image")),
            (None, _) => None,
        };
        Ok(GenerationRequest {
            model: self.model.clone(),
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            n: self.n,
            width: self.width,
            height: self.height,
            steps: self.steps,
            guidance: self.guidance,
            guidance_rescale: self.guidance_rescale,
            prompt_options: self.prompt_options,
            sampler: SamplerKind::parse(&self.sampler).ok_or_else(|| bad("unknown sampler"))?,
            schedule: Schedule::parse(&self.schedule).ok_or_else(|| bad("unknown schedule"))?,
            seed: self.seed,
            latents,
            preview: PreviewRate::parse(&self.preview).unwrap_or_default(),
            strength: self.strength,
            edit,
        })
    }

    /// How the image with `seed` was made, as stored with it.
    pub fn metadata(&self, seed: u64) -> ImageMeta {
        ImageMeta {
            model: self.model.clone(),
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            seed,
            steps: self.steps,
            sampler: self.sampler.clone(),
            schedule: self.schedule.clone(),
            guidance: self.guidance,
            width: self.width,
            height: self.height,
            tool_arguments: self.arguments.clone(),
            source_image_id: self.source_image_id.clone(),
            strength: self.strength,
        }
    }

    /// Image `i` uses `seed + i`, so each image can be remade alone from its own seed.
    pub fn seed_of(&self, index: u32) -> u64 {
        self.seed.wrapping_add(u64::from(index))
    }
}

/// What a caller knows beyond the engine request, stored with each image.
#[derive(Debug, Clone, Default)]
pub struct CallerInfo {
    pub arguments: serde_json::Value,
    pub source_image_id: Option<String>,
    pub shown_prompt: String,
}

/// Latents as stored (little-endian f32).
pub fn latents_bytes(latents: &[f32]) -> Vec<u8> {
    latents.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The A1111-style parameters text of a stored image (for JPEGs made from its PNG).
pub fn parameters_of(meta: &ImageMeta) -> String {
    crate::imaging::parameters_line(
        &meta.prompt,
        &meta.negative_prompt,
        meta.steps,
        &meta.sampler,
        &meta.schedule,
        meta.guidance,
        meta.seed,
        meta.width,
        meta.height,
        &meta.model,
    )
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}
