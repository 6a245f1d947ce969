//! The denoising pipeline, written to read like the algorithm (diffusers'
//! `OnnxStableDiffusionPipeline`, step by step, plus the SDXL, LCM, img2img and inpainting
//! variations):
//!
//! 1. encode the prompt and the negative prompt with the text encoder(s);
//! 2. start from seeded noise (or given latents, or a noised source image for edits);
//! 3. for every model evaluation the scheduler lists: scale the latents, run the UNet on the
//!    unconditional and conditional halves in one batch, mix them by the guidance scale, and
//!    let the scheduler step;
//! 4. decode each image's latents with the VAE, one image at a time.
//!
//! Everything here is synchronous and runs on a blocking thread; cancellation is polled every
//! evaluation and ONNX Runtime runs can be terminated from outside through `RunOptions`.

use std::time::{Duration, Instant};

use image::RgbImage;
use ort::session::RunOptions;

use super::onnx::{Feed, ModelError, OnnxModel, Output};
use super::preview::{decoded_preview, latents_to_rgb, PreviewRate};
use super::prompt::PromptOptions;
use super::rng::TorchRng;
use super::schedulers::{self, NoiseSource, SamplerKind, Schedule};
use super::text::{self, TextEmbedding};
use crate::imaging::registry::{LoadedModel, ModelEntry};

/// Latent channels of every Stable Diffusion VAE.
const LATENT_CHANNELS: usize = 4;

/// What one pipeline call makes: `seeds.len()` images of one prompt and size.
pub struct PipelineInput<'a> {
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    /// diffusers' `guidance_rescale`; 0 leaves classifier-free guidance as it is.
    pub guidance_rescale: f32,
    /// How long prompts and `(word:1.3)` weights are read.
    pub prompt_options: PromptOptions,
    pub sampler: SamplerKind,
    pub schedule: Schedule,
    /// One per image: image `i` starts from `TorchRng::new(seeds[i])` noise.
    pub seeds: &'a [u64],
    /// Unit-variance initial latents `[n, 4, h/8, w/8]` to use instead of seeded noise.
    pub latents: Option<&'a [f32]>,
    pub edit: Option<&'a EditInput>,
    pub preview: PreviewRate,
}

/// img2img and inpainting: the source picture, an optional mask and how much to change.
#[derive(Debug, Clone)]
pub struct EditInput {
    /// `[3, height, width]` in [-1, 1], already at the output size.
    pub image: Vec<f32>,
    /// `[height, width]`, 1 where the picture should change, 0 where it must stay.
    pub mask: Option<Vec<f32>>,
    /// 0–1: the share of the schedule that runs (1 ignores the source except under the mask).
    pub strength: f32,
}

/// A finished image, `[3, height, width]` in [0, 1] (before quantisation, so tests can compare
/// against reference pipelines without rounding noise).
#[derive(Debug, Clone)]
pub struct FloatImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl FloatImage {
    /// Quantises as diffusers' `numpy_to_pil` does: `round(x * 255)`.
    pub fn to_rgb8(&self) -> RgbImage {
        let (w, h) = (self.width as usize, self.height as usize);
        let plane = w * h;
        let mut out = RgbImage::new(self.width, self.height);
        for (i, pixel) in out.pixels_mut().enumerate() {
            for c in 0..3 {
                pixel.0[c] = (self.data[c * plane + i] * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }
}

pub enum PipelineEvent {
    /// A user-facing step finished; `previews[i]` for image `i` when the rate asks for one.
    Step {
        step: u32,
        steps: u32,
        previews: Vec<Option<RgbImage>>,
    },
    /// Image `index` (within this call) is decoded.
    Decoded { index: usize, image: FloatImage },
}

/// Where the time went; `onnx` is the time spent inside ONNX Runtime runs, so the rest is ours.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    pub text_encoder_ms: f64,
    pub denoise_ms: f64,
    pub vae_ms: f64,
    pub onnx_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(ModelError),
    #[error(transparent)]
    Scheduler(#[from] schedulers::SchedulerError),
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<ModelError> for PipelineError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Cancelled => PipelineError::Cancelled,
            other => PipelineError::Model(other),
        }
    }
}

/// Runs one chunk of a job. `cancelled` is polled between model evaluations.
pub fn generate(
    entry: &ModelEntry,
    model: &LoadedModel,
    input: &PipelineInput<'_>,
    on_event: &mut dyn FnMut(PipelineEvent),
    cancelled: &dyn Fn() -> bool,
    run_options: Option<&RunOptions>,
) -> Result<(Vec<FloatImage>, Timings), PipelineError> {
    let mut clock = Clock::default();
    let n = input.seeds.len();
    let (h, w) = (input.height as usize / 8, input.width as usize / 8);
    let latent_len = LATENT_CHANNELS * h * w;
    if n == 0 || !input.width.is_multiple_of(8) || !input.height.is_multiple_of(8) {
        return Err(PipelineError::Invalid(
            "width and height must be multiples of 8 and n at least 1".into(),
        ));
    }

    // 1. Text. LCM models with a guidance embedding and guidance ≤ 1 need no unconditional pass.
    let started = Instant::now();
    let unet = &model.unet;
    let guidance_embedding = unet
        .input("timestep_cond")
        .map(|p| embedding_width(p, entry));
    let classifier_free = input.guidance > 1.0 && guidance_embedding.is_none();
    let negative = classifier_free.then_some(text::Negative {
        text: input.negative_prompt,
        zero_if_empty: entry.zero_empty_negative,
    });
    // A static-shape UNet takes exactly one 77-token window: long prompts are cut for it.
    let mut prompt_options = input.prompt_options;
    if unet
        .input("encoder_hidden_states")
        .and_then(|p| p.shape.get(1))
        .is_some_and(|&tokens| tokens > 0)
    {
        prompt_options.long_prompts = super::prompt::LongPrompts::Truncate;
    }
    let (cond, uncond) = text::encode(
        model,
        input.prompt,
        negative,
        prompt_options,
        &mut |m, feeds, wanted| clock.run(m, feeds, wanted, None),
    )
    .map_err(|e| match e {
        text::TextError::Model(e) => PipelineError::from(e),
        text::TextError::Invalid(message) => PipelineError::Invalid(message),
    })?;
    clock.text_encoder += started.elapsed();

    // The UNet batch: [uncond × n, cond × n] as diffusers concatenates it.
    let halves: Vec<&TextEmbedding> = uncond.iter().chain(std::iter::once(&cond)).collect();
    let batch = n * halves.len();
    let hidden: Vec<f32> = halves
        .iter()
        .flat_map(|e| e.hidden.iter().copied().cycle().take(e.hidden.len() * n))
        .collect();
    let hidden_shape = [batch, cond.tokens, cond.width];
    let pooled: Vec<f32> = halves
        .iter()
        .flat_map(|e| e.pooled.iter().copied().cycle().take(e.pooled.len() * n))
        .collect();
    let pooled_shape = [batch, cond.pooled.len()];
    // SDXL micro-conditioning: original size, crop (0, 0), target size.
    let (fh, fw) = (input.height as f32, input.width as f32);
    let time_ids: Vec<f32> = (0..batch)
        .flat_map(|_| [fh, fw, 0.0, 0.0, fh, fw])
        .collect();
    let time_ids_shape = [batch, 6];
    let lcm_cond: Option<(Vec<f32>, usize)> = guidance_embedding.map(|dim| {
        let row = guidance_scale_embedding(input.guidance - 1.0, dim);
        (row.iter().copied().cycle().take(dim * batch).collect(), dim)
    });

    // 2. Initial latents.
    let denoise_started = Instant::now();
    let mut scheduler = schedulers::build(
        input.sampler,
        input.schedule,
        &entry.scheduler,
        input.steps as usize,
    )?;
    let evaluations = scheduler.timesteps().len();
    let mut noise = BatchNoise {
        rngs: input.seeds.iter().map(|&s| TorchRng::new(s)).collect(),
    };
    let mut unit_noise = vec![0.0f32; n * latent_len];
    match input.latents {
        Some(given) if given.len() == unit_noise.len() => unit_noise.copy_from_slice(given),
        Some(given) => {
            return Err(PipelineError::Invalid(format!(
            "initial latents have {} values; {n} image(s) of {}x{} need {} ([{n}, 4, {h}, {w}])",
            given.len(),
            input.width,
            input.height,
            unit_noise.len()
        )))
        }
        None => noise.fill_standard_normal(&mut unit_noise),
    }

    let edit = match input.edit {
        Some(e) => Some(prepare_edit(entry, model, e, n, input, &mut clock)?),
        None => None,
    };
    let first = match &edit {
        // img2img runs the last `strength` share of the schedule (diffusers `get_timesteps`).
        Some(e) => e.first_evaluation(input.steps as usize, evaluations),
        None => 0,
    };
    let mut latents: Vec<f32> = match &edit {
        // img2img always starts from the noised source (diffusers' img2img pipeline, even at
        // strength 1); inpainting does below full strength, and from pure noise at 1.
        Some(e) if e.strength < 1.0 || (e.mask.is_none() && e.nine_channel.is_none()) => {
            scheduler.add_noise(&e.image_latents, &unit_noise, first)
        }
        _ => unit_noise
            .iter()
            .map(|v| v * scheduler.init_noise_sigma())
            .collect(),
    };

    // 3. Denoise.
    let timestep_port = unet.require_input("timestep")?.clone();
    let sample_channels = unet
        .input("sample")
        .and_then(|p| p.shape.get(1).copied())
        .unwrap_or(4);
    let out_index = 0;
    let mut model_input = vec![0.0f32; batch * latent_len];
    let mut last_step = 0;
    for i in first..evaluations {
        if cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let t = scheduler.timesteps()[i];
        let mut scaled = latents.clone();
        scheduler.scale_model_input(&mut scaled, i);
        for half in 0..halves.len() {
            model_input[half * n * latent_len..(half + 1) * n * latent_len]
                .copy_from_slice(&scaled);
        }
        let sample_in: std::borrow::Cow<'_, [f32]> = match edit
            .as_ref()
            .and_then(|e| e.nine_channel.as_ref())
        {
            Some(extra) => {
                std::borrow::Cow::Owned(with_inpaint_channels(&model_input, extra, batch, h * w))
            }
            None => std::borrow::Cow::Borrowed(&model_input),
        };
        let channels = if sample_channels == 9 {
            9
        } else {
            LATENT_CHANNELS
        };
        let sample_shape = [batch, channels, h, w];
        let timestep_len = timestep_len(&timestep_port.shape, batch);
        let timestep_data = vec![t as f32; timestep_len.max(1)];
        let timestep_shape: Vec<usize> = if timestep_port.shape.is_empty() {
            vec![]
        } else {
            vec![timestep_len]
        };
        let mut feeds: Vec<(&str, Feed<'_>)> = vec![
            ("sample", Feed::F32(&sample_shape, &sample_in)),
            ("timestep", Feed::F32(&timestep_shape, &timestep_data)),
            ("encoder_hidden_states", Feed::F32(&hidden_shape, &hidden)),
        ];
        if entry.is_sdxl {
            feeds.push(("text_embeds", Feed::F32(&pooled_shape, &pooled)));
            feeds.push(("time_ids", Feed::F32(&time_ids_shape, &time_ids)));
        }
        let cond_shape;
        if let Some((values, dim)) = &lcm_cond {
            cond_shape = [batch, *dim];
            feeds.push(("timestep_cond", Feed::F32(&cond_shape, values)));
        }
        let out = clock
            .run(unet, &feeds, &[out_index], run_options)?
            .remove(0);
        let mut guided = guide(&out, n * latent_len, classifier_free, input.guidance)?;
        if classifier_free && input.guidance_rescale > 0.0 {
            let cond = &out.data[n * latent_len..];
            for (g, c) in guided.chunks_mut(latent_len).zip(cond.chunks(latent_len)) {
                rescale_guidance(g, c, input.guidance_rescale);
            }
        }
        scheduler.step(&guided, i, &mut latents, &mut noise);
        if let Some(e) = &edit {
            e.blend(
                &mut latents,
                scheduler.as_ref(),
                &unit_noise,
                i + 1,
                evaluations,
            );
        }

        let step = user_step(i - first, evaluations - first, input.steps);
        if step != last_step {
            last_step = step;
            let previews = if input.preview.wants(step, input.steps) {
                let source = scheduler.denoised().unwrap_or(&latents);
                (0..n)
                    .map(|k| {
                        let one = &source[k * latent_len..(k + 1) * latent_len];
                        let approximate = || latents_to_rgb(one, h, w, entry.is_sdxl);
                        let Some(decoder) = &model.preview_decoder else {
                            return Some(approximate());
                        };
                        // TAESD decodes the UNet's latents directly (its scaling factor is 1).
                        let feeds = [("latent_sample", Feed::F32(&[1, LATENT_CHANNELS, h, w], one))];
                        match clock.run(decoder, &feeds, &[0], run_options) {
                            Ok(mut out) if out[0].data.len() == 3 * 64 * h * w => {
                                Some(decoded_preview(&out.remove(0).data, 8 * h, 8 * w))
                            }
                            Ok(out) => {
                                tracing::warn!(model = %entry.id, "the preview decoder returned {:?}; using the approximation", out[0].shape);
                                Some(approximate())
                            }
                            Err(e) => {
                                tracing::warn!(model = %entry.id, "preview decoder: {e}; using the approximation");
                                Some(approximate())
                            }
                        }
                    })
                    .collect()
            } else {
                vec![None; n]
            };
            on_event(PipelineEvent::Step {
                step,
                steps: input.steps,
                previews,
            });
        }
    }
    clock.denoise += denoise_started.elapsed();

    // 4. Decode one image at a time: the VAE is the memory peak, and images can be shown as
    // soon as each is ready.
    let vae_started = Instant::now();
    let mut images = Vec::with_capacity(n);
    for k in 0..n {
        if cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let scaled: Vec<f32> = latents[k * latent_len..(k + 1) * latent_len]
            .iter()
            .map(|v| v / entry.vae_scaling_factor)
            .collect();
        let decode = |decoder: &OnnxModel, clock: &mut Clock| -> Result<Output, PipelineError> {
            let out = clock
                .run(
                    decoder,
                    &[(
                        "latent_sample",
                        Feed::F32(&[1, LATENT_CHANNELS, h, w], &scaled),
                    )],
                    &[0],
                    run_options,
                )?
                .remove(0);
            if out.data.len() != 3 * input.width as usize * input.height as usize {
                return Err(PipelineError::Invalid(format!(
                    "{}: the VAE decoder returned shape {:?}, expected [1, 3, {}, {}]",
                    decoder.file(),
                    out.shape,
                    input.height,
                    input.width
                )));
            }
            Ok(out)
        };
        let mut out = decode(&model.vae_decoder, &mut clock)?;
        if out.data.iter().any(|v| !v.is_finite()) {
            // An fp16 VAE overflowing (SDXL's own VAE does at some sizes): decode again in
            // fp32 when the folder has that decoder, else say what to get.
            let Some(fp32) = &model.vae_decoder_fp32 else {
                return Err(PipelineError::Invalid(format!(
                    "{}: the VAE decoder produced NaN or infinity (an fp16 VAE overflowing). Put an fp32 VAE decoder in {}/vae_decoder_fp32/ (Easel then decodes again with it), or use an fp32 export, or for SDXL the fp16-fixed VAE (madebyollin/sdxl-vae-fp16-fix)",
                    model.vae_decoder.file(),
                    entry.dir.display()
                )));
            };
            tracing::warn!(model = %entry.id, "the fp16 VAE overflowed; decoding again in fp32");
            out = decode(fp32, &mut clock)?;
            if out.data.iter().any(|v| !v.is_finite()) {
                return Err(PipelineError::Invalid(format!(
                    "{}: the fp32 VAE decoder produced NaN or infinity too; the latents are broken",
                    fp32.file()
                )));
            }
        }
        let image = FloatImage {
            width: input.width,
            height: input.height,
            data: out
                .data
                .iter()
                .map(|v| (v / 2.0 + 0.5).clamp(0.0, 1.0))
                .collect(),
        };
        on_event(PipelineEvent::Decoded {
            index: k,
            image: image.clone(),
        });
        images.push(image);
    }
    clock.vae += vae_started.elapsed();
    Ok((images, clock.timings()))
}

/// Per-image seeded noise for ancestral samplers: each image draws from its own generator, so an
/// image depends on its seed alone, not on the batch it was made in.
struct BatchNoise {
    rngs: Vec<TorchRng>,
}

impl NoiseSource for BatchNoise {
    fn fill_standard_normal(&mut self, out: &mut [f32]) {
        let per = out.len() / self.rngs.len().max(1);
        for (chunk, rng) in out.chunks_mut(per.max(1)).zip(self.rngs.iter_mut()) {
            let values = rng.randn(chunk.len());
            chunk.copy_from_slice(&values);
        }
    }
}

/// `uncond + g·(cond − uncond)` over the two halves of the UNet output (or the output as is).
fn guide(
    out: &Output,
    half: usize,
    classifier_free: bool,
    guidance: f32,
) -> Result<Vec<f32>, PipelineError> {
    let expected = if classifier_free { 2 * half } else { half };
    if out.data.len() != expected {
        return Err(PipelineError::Invalid(format!(
            "the UNet returned {} values ({:?}); expected {expected}",
            out.data.len(),
            out.shape
        )));
    }
    if !classifier_free {
        return Ok(out.data.clone());
    }
    let (uncond, cond) = out.data.split_at(half);
    Ok(uncond
        .iter()
        .zip(cond)
        .map(|(u, c)| u + guidance * (c - u))
        .collect())
}

/// diffusers' `rescale_noise_cfg` for one image: the guided prediction scaled to the
/// conditional prediction's standard deviation, mixed back by `rescale`.
pub fn rescale_guidance(guided: &mut [f32], cond: &[f32], rescale: f32) {
    // torch's `std` (unbiased), in f64 so large latents do not lose precision.
    let std = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        (v.iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0))
        .sqrt()
    };
    let (std_cond, std_guided) = (std(cond), std(guided));
    if std_guided == 0.0 {
        return;
    }
    let factor = std_cond / std_guided;
    let rescale = f64::from(rescale);
    for g in guided.iter_mut() {
        let x = f64::from(*g);
        *g = (rescale * x * factor + (1.0 - rescale) * x) as f32;
    }
}

/// Elements of the timestep input: a declared `[1]` gets one value, `[batch]` (or symbolic)
/// one per batch row; diffusers' ONNX pipeline feeds `[1]`, optimum exports want `[batch]`.
fn timestep_len(shape: &[i64], batch: usize) -> usize {
    match shape {
        [] => 1,
        [1] => 1,
        _ => batch,
    }
}

/// Evaluation `i` of `evaluations` (second-order samplers evaluate twice per step) → the
/// user-facing step 1..=steps.
fn user_step(i: usize, evaluations: usize, steps: u32) -> u32 {
    let steps = steps as usize;
    (((i + 1) * steps).div_ceil(evaluations.max(1))).min(steps) as u32
}

/// The width of LCM's guidance embedding, from the input's shape or `unet/config.json`.
fn embedding_width(port: &super::onnx::Port, entry: &ModelEntry) -> usize {
    if let Some(&d) = port.shape.get(1).filter(|d| **d > 0) {
        return d as usize;
    }
    std::fs::read_to_string(entry.dir.join("unet/config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("time_cond_proj_dim").and_then(|d| d.as_u64()))
        .unwrap_or(256) as usize
}

/// LCM's sinusoidal guidance-scale embedding (diffusers `get_guidance_scale_embedding`):
/// `w·1000` times geometric frequencies, sines then cosines.
pub fn guidance_scale_embedding(w: f32, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let w = w * 1000.0;
    let step = (10000.0f32).ln() / (half as f32 - 1.0).max(1.0);
    let args: Vec<f32> = (0..half).map(|k| w * (-(k as f32) * step).exp()).collect();
    let mut out: Vec<f32> = args
        .iter()
        .map(|a| a.sin())
        .chain(args.iter().map(|a| a.cos()))
        .collect();
    out.resize(dim, 0.0);
    out
}

/// Prepared edit state: the source latents and, for inpainting, the latent-resolution mask.
struct EditState {
    image_latents: Vec<f32>,
    strength: f32,
    /// Standard UNets: mask `[h·w]`, 1 = repaint; the unmasked region is restored each step.
    mask: Option<Vec<f32>>,
    /// 9-channel inpainting UNets: the extra channels `[mask, masked image latents]` per image.
    nine_channel: Option<Vec<f32>>,
}

impl EditState {
    fn first_evaluation(&self, steps: usize, evaluations: usize) -> usize {
        // diffusers computes `int(steps * strength)` in f64 from the strength as written
        // (0.58, not 0.5799999833…); the shortest decimal of the f32 recovers that value.
        let strength: f64 = self
            .strength
            .to_string()
            .parse()
            .unwrap_or(f64::from(self.strength));
        let init = ((steps as f64 * strength) as usize).clamp(1, steps);
        let start_step = steps - init;
        // Evaluations per step (1, or 2 for second-order samplers), as diffusers' `order`.
        let per_step = ((evaluations + steps / 2) / steps.max(1)).max(1);
        (start_step * per_step).min(evaluations.saturating_sub(1))
    }

    /// After evaluation `next - 1`: keep the source outside the mask, noised to the level of
    /// the next evaluation (diffusers' inpaint pipeline for 4-channel UNets).
    fn blend(
        &self,
        latents: &mut [f32],
        scheduler: &dyn schedulers::Scheduler,
        noise: &[f32],
        next: usize,
        evaluations: usize,
    ) {
        let (Some(mask), None) = (&self.mask, &self.nine_channel) else {
            return;
        };
        let source = if next < evaluations {
            scheduler.add_noise(&self.image_latents, noise, next)
        } else {
            self.image_latents.clone()
        };
        let plane = mask.len();
        for (i, v) in latents.iter_mut().enumerate() {
            let m = mask[i % plane];
            *v = (1.0 - m) * source[i] + m * *v;
        }
    }
}

fn prepare_edit(
    entry: &ModelEntry,
    model: &LoadedModel,
    edit: &EditInput,
    n: usize,
    input: &PipelineInput<'_>,
    clock: &mut Clock,
) -> Result<EditState, PipelineError> {
    let encoder = model.vae_encoder.as_ref().ok_or_else(|| {
        PipelineError::Invalid(format!(
            "model `{}` has no vae_encoder, so it cannot edit images",
            entry.id
        ))
    })?;
    let (hh, ww) = (input.height as usize, input.width as usize);
    if edit.image.len() != 3 * hh * ww {
        return Err(PipelineError::Invalid(
            "the source image must match the output size".into(),
        ));
    }
    let (h, w) = (hh / 8, ww / 8);
    let latent_len = LATENT_CHANNELS * h * w;
    let encode = |pixels: &[f32], clock: &mut Clock| -> Result<Vec<f32>, PipelineError> {
        let out = clock
            .run(
                encoder,
                &[("sample", Feed::F32(&[1, 3, hh, ww], pixels))],
                &[0],
                None,
            )?
            .remove(0);
        // Newer optimum exports return the distribution's parameters (mean, then log-variance):
        // take the mean, as `latent_dist.mode()` would.
        let channels = out.shape.get(1).copied().unwrap_or(LATENT_CHANNELS);
        if out.data.len() < latent_len
            || (channels != LATENT_CHANNELS && channels != 2 * LATENT_CHANNELS)
        {
            return Err(PipelineError::Invalid(format!(
                "{}: unexpected output shape {:?}",
                encoder.file(),
                out.shape
            )));
        }
        Ok(out.data[..latent_len]
            .iter()
            .map(|v| v * entry.vae_scaling_factor)
            .collect())
    };
    let one = encode(&edit.image, clock)?;
    let image_latents: Vec<f32> = one.iter().copied().cycle().take(latent_len * n).collect();
    // Mask at latent resolution: the mean over each 8×8 block, so soft edges stay soft.
    let mask = edit.mask.as_ref().map(|m| {
        let mut out = vec![0.0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for dy in 0..8 {
                    for dx in 0..8 {
                        sum += m[(y * 8 + dy) * ww + x * 8 + dx];
                    }
                }
                out[y * w + x] = (sum / 64.0).clamp(0.0, 1.0);
            }
        }
        out
    });
    let sample_channels = model
        .unet
        .input("sample")
        .and_then(|p| p.shape.get(1).copied())
        .unwrap_or(4);
    let nine_channel = if sample_channels == 9 {
        let mask = mask.clone().unwrap_or_else(|| vec![1.0; h * w]);
        let full_mask = edit.mask.clone().unwrap_or_else(|| vec![1.0; hh * ww]);
        let masked: Vec<f32> = edit
            .image
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if full_mask[i % (hh * ww)] < 0.5 {
                    *v
                } else {
                    0.0
                }
            })
            .collect();
        let masked_latents = encode(&masked, clock)?;
        let mut extra = Vec::with_capacity((1 + LATENT_CHANNELS) * h * w);
        extra.extend_from_slice(&mask);
        extra.extend_from_slice(&masked_latents);
        Some(extra)
    } else {
        None
    };
    Ok(EditState {
        image_latents,
        strength: edit.strength.clamp(0.0, 1.0),
        mask,
        nine_channel,
    })
}

/// `[batch, 4, h, w]` latents + per-image `[1 + 4, h, w]` extras → `[batch, 9, h, w]`.
fn with_inpaint_channels(latents: &[f32], extra: &[f32], batch: usize, plane: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(batch * 9 * plane);
    for b in 0..batch {
        out.extend_from_slice(
            &latents[b * LATENT_CHANNELS * plane..(b + 1) * LATENT_CHANNELS * plane],
        );
        out.extend_from_slice(extra);
    }
    out
}

/// Accumulates where time goes, and in particular the time inside ONNX Runtime.
#[derive(Default)]
struct Clock {
    text_encoder: Duration,
    denoise: Duration,
    vae: Duration,
    onnx: Duration,
}

impl Clock {
    fn run(
        &mut self,
        model: &OnnxModel,
        feeds: &[(&str, Feed<'_>)],
        wanted: &[usize],
        options: Option<&RunOptions>,
    ) -> Result<Vec<Output>, ModelError> {
        let started = Instant::now();
        let result = model.run(feeds, wanted, options);
        self.onnx += started.elapsed();
        result
    }

    fn timings(&self) -> Timings {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Timings {
            text_encoder_ms: ms(self.text_encoder),
            denoise_ms: ms(self.denoise),
            vae_ms: ms(self.vae),
            onnx_ms: ms(self.onnx),
        }
    }
}

#[cfg(test)]
mod rescale_tests {
    #[test]
    fn guidance_rescale_matches_diffusers_rescale_noise_cfg() {
        // numpy: r*g*(c.std(ddof=1)/g.std(ddof=1)) + (1-r)*g, r = 0.7
        let mut g = [0.5f32, -1.0, 2.0, 0.25];
        super::rescale_guidance(&mut g, &[0.1, -0.2, 0.3, 0.0], 0.7);
        let want = [0.209_181_12f32, -0.418_362_25, 0.836_724_5, 0.104_590_56];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{g:?}");
        }
        let mut unchanged = [1.0f32, 2.0];
        super::rescale_guidance(&mut unchanged, &[3.0, 1.0], 0.0);
        assert_eq!(unchanged, [1.0, 2.0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_steps_rise_to_the_total_for_second_order_samplers() {
        let steps: Vec<u32> = (0..7).map(|i| user_step(i, 7, 4)).collect();
        assert_eq!(*steps.last().unwrap(), 4);
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            (0..4).map(|i| user_step(i, 4, 4)).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    #[test]
    fn guidance_embedding_matches_diffusers_shape_and_values() {
        let e = guidance_scale_embedding(0.0, 8);
        assert_eq!(e, vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let e = guidance_scale_embedding(7.5, 256);
        assert_eq!(e.len(), 256);
        assert!((e[0] - (7500.0f32).sin()).abs() < 1e-3);
    }

    #[test]
    fn classifier_free_guidance_mixes_halves() {
        let out = Output {
            shape: vec![2, 1],
            data: vec![1.0, 3.0],
        };
        assert_eq!(guide(&out, 1, true, 2.0).unwrap(), vec![5.0]);
        assert!(guide(&out, 2, true, 2.0).is_err());
    }
}
