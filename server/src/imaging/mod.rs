//! The image engine: models on disk and the ONNX diffusion pipeline. It knows nothing about
//! chat, jobs or HTTP: callers (the `jobs` service) hand it a validated request and receive
//! step progress (with preview pixels) and finished pixels, in its own types.
//!
//! Architecture invariant: the pixels are a pure function of (model, prompt, negative prompt,
//! seed, size, sampler, schedule, steps, guidance). Tests rely on it.

pub mod catalog;
pub mod diffusion;
pub mod download;
pub mod edit;
pub mod encode;
pub mod graph_cache;
pub mod hub;
pub mod int8;
pub mod presets;
pub mod registry;
pub mod remote;
pub mod request;
pub mod runtime;
pub mod watch;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use image::RgbImage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use diffusion::pipeline::{self, FloatImage, PipelineEvent, PipelineInput, Timings};
pub use registry::ModelInfo;
use registry::{ModelEntry, Registry};
use request::GenerationRequest;
use runtime::{Runtime, RuntimeError};

use crate::config::ImageSettings;

/// What a request reports while it runs.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A step of the images `first..first + previews.len()` finished.
    Step {
        first: u32,
        step: u32,
        steps: u32,
        previews: Vec<Option<RgbImage>>,
    },
    /// Image `index` of the request is ready.
    ImageReady(Box<GeneratedImage>),
}

#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub index: u32,
    pub seed: u64,
    pub pixels: FloatImage,
}

impl GeneratedImage {
    pub fn rgb(&self) -> RgbImage {
        self.pixels.to_rgb8()
    }
}

/// How the engine stands, for `/api/health`.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStatus {
    /// `ready`, `no_models` or `unavailable` (ONNX Runtime could not be loaded).
    pub status: &'static str,
    pub execution_provider: &'static str,
    pub models: Vec<String>,
    pub models_loaded: Vec<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("Image generation internal tool requested but no image generation model configured")]
    NoModel,
    #[error("unknown image model `{0}`")]
    UnknownModel(String),
    #[error("image model `{model}` cannot be used: {reason}")]
    BrokenModel { model: String, reason: String },
    #[error("{0}")]
    Runtime(RuntimeError),
    #[error("{0}")]
    Request(#[from] request::RequestError),
    #[error("image generation failed: {0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Remote(remote::RemoteError),
}

impl EngineError {
    /// The code a failed job records (and APIs map to their answers).
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Remote(e) => e.code(),
            EngineError::Cancelled => "cancelled",
            _ => "image_failed",
        }
    }
}

/// One engine per process; cheap to clone.
#[derive(Clone)]
pub struct ImageEngine {
    inner: Arc<Inner>,
}

struct Inner {
    /// The model folders and the runtime; replaced whole when the folder is scanned again
    /// (a model downloaded from the UI is usable without a restart).
    local: RwLock<Local>,
    settings: ImageSettings,
    default_model: Option<String>,
    /// Models other processes paint (several processes on one database): requests for them
    /// are checked and queued here, painted there.
    elsewhere: RwLock<Vec<Arc<ModelEntry>>>,
    /// "Get a model": the one download this process may run, and its progress.
    downloads: download::Downloads,
    /// The models folder as the last scan saw it (see `watch`).
    stamp: Mutex<watch::FolderStamp>,
    /// Held through a scan: a download's scan and the watcher's never interleave, so an older
    /// view of the folder cannot replace a newer one.
    scanning: Mutex<()>,
    /// Counts the scans since start, so whoever describes this process's models to others
    /// can tell them again.
    scans: tokio::sync::watch::Sender<u64>,
}

struct Local {
    registry: Registry,
    runtime: Result<Arc<Runtime>, RuntimeError>,
}

impl Local {
    /// Local models need ONNX Runtime; remote ones only their API.
    fn can_paint(&self, entry: &ModelEntry) -> bool {
        entry.problem.is_none() && (entry.remote.is_some() || self.runtime.is_ok())
    }

    fn paints(&self, model: &str) -> bool {
        self.registry
            .find(model)
            .is_some_and(|m| self.can_paint(&m))
    }
}

impl ImageEngine {
    /// Scans the models folder and loads ONNX Runtime. Neither failing stops the server: the
    /// engine then reports why it cannot paint.
    pub fn start(
        models_dir: &Path,
        settings: &ImageSettings,
        default_model: Option<&str>,
    ) -> ImageEngine {
        // Stamped before the scan: a change during it shows at the next look.
        let stamp = watch::FolderStamp::of(models_dir);
        let engine = Self::with_registry(Registry::scan(models_dir), settings, default_model);
        *engine.stamp() = stamp;
        engine
    }

    /// An engine over given model folders (the command line names a folder directly).
    pub fn with_registry(
        registry: Registry,
        settings: &ImageSettings,
        default_model: Option<&str>,
    ) -> ImageEngine {
        let local = Self::open(registry, settings, None);
        let default_model = default_model
            .map(str::to_string)
            .or_else(|| local.registry.usable().next().map(|m| m.id.clone()));
        ImageEngine {
            inner: Arc::new(Inner {
                local: RwLock::new(local),
                settings: settings.clone(),
                default_model,
                elsewhere: RwLock::default(),
                downloads: download::Downloads::default(),
                stamp: Mutex::default(),
                scanning: Mutex::default(),
                scans: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    fn stamp(&self) -> std::sync::MutexGuard<'_, watch::FolderStamp> {
        self.inner.stamp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the models on offer in step with the models folder while the process runs
    /// (`serve` and `worker`; see `watch`).
    pub fn watch_folder(&self) {
        watch::spawn(self);
    }

    /// Changes with every scan of the models folder after start.
    pub fn scans(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.scans.subscribe()
    }

    /// The models folder as it looks now, when that differs from what the last scan saw.
    fn folder_stamp_if_changed(&self) -> Option<watch::FolderStamp> {
        let dir = self.read().registry.dir.clone();
        let now = watch::FolderStamp::of(&dir);
        (now != *self.stamp()).then_some(now)
    }

    /// Scans the models folder again: new folders become models, gone ones go, changed ones
    /// are opened again, unchanged ones keep their loaded sessions (a job painting with a
    /// replaced model finishes with the sessions it has); the runtime loads if it was not.
    pub fn rescan(&self) {
        let _scanning = self
            .inner
            .scanning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dir = self.read().registry.dir.clone();
        let stamp = watch::FolderStamp::of(&dir);
        let mut registry = Registry::scan(&dir);
        let previous = self.read();
        let runtime = previous.runtime.clone().ok();
        {
            let seen = self.stamp();
            for entry in &mut registry.models {
                if let Some(old) = previous.registry.find(&entry.id) {
                    if old.dir == entry.dir
                        && old.problem.is_none()
                        && entry.problem.is_none()
                        && seen.same_for(&stamp, &old, &dir)
                    {
                        *entry = old;
                    }
                }
            }
        }
        registry.share_parts();
        drop(previous);
        let local = Self::open(registry, &self.inner.settings, runtime);
        *self.inner.local.write().unwrap_or_else(|p| p.into_inner()) = local;
        *self.stamp() = stamp;
        self.inner.scans.send_modify(|n| *n += 1);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Local> {
        self.inner.local.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the remote models and loads the runtime (unless given) when a local model needs it.
    fn open(
        mut registry: Registry,
        settings: &ImageSettings,
        runtime: Option<Arc<Runtime>>,
    ) -> Local {
        let models_dir = registry.dir.clone();
        registry.add_remote(&settings.remote);
        let runtime = if let Some(runtime) = runtime {
            Ok(runtime)
        } else if registry.models.iter().all(|m| m.remote.is_some()) {
            // No models: don't pay for loading the runtime, but still say where it would come from.
            Err(RuntimeError::NotFound(
                "(not loaded: no image models)".into(),
            ))
        } else {
            Runtime::load(settings).map(Arc::new)
        };
        match &runtime {
            Ok(r) => tracing::info!(
                "ONNX Runtime {} with the {} execution provider; {} image model(s) in {}",
                r.library.display(),
                r.provider.name(),
                registry.models.len(),
                models_dir.display()
            ),
            Err(e) if registry.models.iter().any(|m| m.remote.is_none()) => {
                tracing::warn!("image generation unavailable: {e}")
            }
            Err(_) if !registry.models.is_empty() => tracing::info!(
                "{} remote image model(s); no local ones in {}",
                registry.models.len(),
                models_dir.display()
            ),
            Err(_) => tracing::info!(
                "no image models in {}; image creation is off",
                models_dir.display()
            ),
        }
        for m in &registry.models {
            if let Some(problem) = &m.problem {
                tracing::warn!(model = %m.id, "{problem}");
            }
        }
        Local { registry, runtime }
    }

    /// How prompts are read when a request does not say (`images.long_prompts`,
    /// `images.prompt_weighting`).
    pub fn prompt_options(&self) -> diffusion::prompt::PromptOptions {
        use diffusion::prompt::{LongPrompts, PromptOptions};
        PromptOptions {
            long_prompts: if self.inner.settings.chunk_long_prompts {
                LongPrompts::Chunk
            } else {
                LongPrompts::Truncate
            },
            weighting: self.inner.settings.prompt_weighting,
        }
    }

    /// The loaded ONNX Runtime, or why it is not available.
    pub fn runtime(&self) -> Result<Arc<Runtime>, RuntimeError> {
        self.read().runtime.clone()
    }

    /// True when at least one model can be used (here: the runtime loaded and a folder is
    /// valid; or painted by another process).
    pub fn available(&self) -> bool {
        self.paints_any() || !self.elsewhere().is_empty()
    }

    fn paints_any(&self) -> bool {
        let local = self.read();
        let any = local.registry.usable().any(|m| local.can_paint(m));
        any
    }

    /// Whether this process can paint `model` itself.
    pub fn paints(&self, model: &str) -> bool {
        self.read().paints(model)
    }

    /// The models this process paints, described for the others.
    pub fn describe_local(&self) -> Vec<catalog::ModelDescription> {
        let local = self.read();
        local
            .registry
            .usable()
            .filter(|m| local.can_paint(m))
            .map(|m| catalog::ModelDescription::of(m))
            .collect()
    }

    /// Replaces the models other processes paint (the ones this process paints are skipped).
    pub fn set_elsewhere(&self, models: Vec<catalog::ModelDescription>) {
        let mut entries: Vec<Arc<ModelEntry>> = Vec::new();
        for m in models {
            if self.paints(&m.id) || entries.iter().any(|e| e.id == m.id) {
                continue;
            }
            if let Some(entry) = m.entry() {
                entries.push(Arc::new(entry));
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        *self
            .inner
            .elsewhere
            .write()
            .unwrap_or_else(|p| p.into_inner()) = entries;
    }

    fn elsewhere(&self) -> Vec<Arc<ModelEntry>> {
        self.inner
            .elsewhere
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        let local = self.read();
        let mut infos: Vec<ModelInfo> = local
            .registry
            .models
            .iter()
            .map(|m| {
                let mut info = m.info();
                if let (None, Err(e), None) = (&info.error, &local.runtime, &m.remote) {
                    info.error = Some(e.to_string());
                }
                info
            })
            .collect();
        drop(local);
        for m in self.elsewhere() {
            // Painted elsewhere, so usable even where this process's copy is broken.
            infos.retain(|i| i.id != m.id);
            infos.push(m.info());
        }
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        infos
    }

    /// The model used when a request names none: the configured one when some process
    /// paints it, else the first this process paints, else the first painted elsewhere.
    pub fn default_model(&self) -> Option<String> {
        let elsewhere = self.elsewhere();
        let served = |id: &str| self.paints(id) || elsewhere.iter().any(|m| m.id == id);
        if let Some(id) = self.inner.default_model.as_deref().filter(|id| served(id)) {
            return Some(id.to_string());
        }
        {
            let local = self.read();
            // An int8 variant is an opt-in trade of pixels for speed: never the default
            // unless configured by name.
            let first = local
                .registry
                .usable()
                .filter(|m| local.can_paint(m))
                .min_by_key(|m| m.int8)
                .map(|m| m.id.clone());
            if first.is_some() {
                return first;
            }
        }
        // Descriptions from other processes carry ids only: an int8 variant is known by its
        // suffix there.
        elsewhere
            .iter()
            .min_by_key(|m| m.id.ends_with(int8::ID_SUFFIX))
            .map(|m| m.id.clone())
    }

    /// A usable model by id, or the default one.
    pub fn model(&self, id: Option<&str>) -> Result<Arc<ModelEntry>, EngineError> {
        let id = match id.filter(|s| !s.is_empty() && *s != "auto") {
            Some(id) => id.to_string(),
            None => self.default_model().ok_or(EngineError::NoModel)?,
        };
        if !self.paints(&id) {
            if let Some(m) = self.elsewhere().into_iter().find(|m| m.id == id) {
                return Ok(m);
            }
        }
        let local = self.read();
        let entry = local
            .registry
            .find(&id)
            .ok_or_else(|| EngineError::UnknownModel(id.clone()))?;
        if let Some(problem) = &entry.problem {
            return Err(EngineError::BrokenModel {
                model: id,
                reason: problem.clone(),
            });
        }
        if entry.remote.is_some() {
            return Ok(entry);
        }
        if let Err(e) = &local.runtime {
            return Err(EngineError::Runtime(e.clone()));
        }
        Ok(entry)
    }

    pub fn health(&self) -> EngineStatus {
        let elsewhere = self.elsewhere();
        let paints_any = self.paints_any();
        let models = self.models().into_iter().map(|m| m.id).collect();
        let local = self.read();
        let (status, message) = match (&local.runtime, local.registry.models.is_empty()) {
            _ if paints_any || !elsewhere.is_empty() => ("ready", None),
            (_, true) => (
                "no_models",
                Some(format!(
                    "no image models in {}",
                    local.registry.dir.display()
                )),
            ),
            (Err(e), false) => ("unavailable", Some(e.to_string())),
            (Ok(_), false) if local.registry.usable().next().is_none() => (
                "unavailable",
                Some("every model folder has a problem; see /api/models".to_string()),
            ),
            (Ok(_), false) => ("ready", None),
        };
        EngineStatus {
            status,
            execution_provider: local
                .runtime
                .as_ref()
                .map(|r| r.provider.name())
                .unwrap_or("none"),
            models,
            models_loaded: local
                .registry
                .models
                .iter()
                .filter(|m| m.is_loaded())
                .map(|m| m.id.clone())
                .collect(),
            message,
        }
    }

    /// Loads the default model's sessions in the background, so the first image is not also
    /// the one that waits for the model to load.
    pub fn preload_default(&self) {
        let Ok(entry) = self.model(None) else { return };
        if !self.paints(&entry.id) || entry.remote.is_some() {
            return;
        }
        let Ok(runtime) = self.runtime() else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let _ = entry.load(&runtime);
        });
    }

    /// Runs a request now, on the blocking pool. Events arrive on `events` in order (each
    /// finished image too); cancelling `cancel` stops the work within one model evaluation.
    /// Which request runs when is the caller's business (the jobs service's queue).
    pub async fn generate(
        &self,
        request: GenerationRequest,
        events: mpsc::UnboundedSender<EngineEvent>,
        cancel: CancellationToken,
    ) -> Result<Timings, EngineError> {
        if !self.paints(&request.model) {
            // Painted by another process, or gone: say why, as `model` does.
            self.model(Some(&request.model))?;
            return Err(EngineError::UnknownModel(request.model.clone()));
        }
        let entry = self.model(Some(&request.model))?;
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if let Some(config) = &entry.remote {
            return remote::paint(config, request, events, cancel).await;
        }
        let runtime = self.runtime().map_err(EngineError::Runtime)?;
        // ONNX Runtime calls block: run the job on the blocking pool, and let a watcher task
        // terminate an in-flight run the moment the job is cancelled.
        let run_options = Arc::new(
            ort::session::RunOptions::new().map_err(|e| EngineError::Failed(e.to_string()))?,
        );
        let watcher = {
            let cancel = cancel.clone();
            let options = run_options.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                let _ = options.terminate();
            })
        };
        let job_cancel = cancel.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut on_event = |event| {
                let _ = events.send(event);
            };
            run_job(
                &entry,
                &runtime,
                &request,
                &mut on_event,
                &|| job_cancel.is_cancelled(),
                Some(&run_options),
                false,
            )
        })
        .await
        .map_err(|e| EngineError::Failed(format!("the image job stopped unexpectedly: {e}")));
        watcher.abort();
        let (_, timings) = result??;
        Ok(timings)
    }
}

/// Largest UNet batch (counting both guidance halves) by pixel area: 4 megapixels, i.e. 16
/// rows at 512² or 4 at 1024². Bigger requests are split into chunks run one after another.
const MAX_BATCH_PIXELS: usize = 4 * 1024 * 1024;

/// How many images go through the UNet together: both guidance halves of each count, so a
/// batch stays under [`MAX_BATCH_PIXELS`].
fn chunk_size(width: u32, height: u32, n: u32) -> usize {
    let per_image = 2 * width as usize * height as usize;
    (MAX_BATCH_PIXELS / per_image.max(1)).clamp(1, n.max(1) as usize)
}

/// Runs a whole request on the calling thread (`generate` calls it on the blocking pool; engine
/// tests call it directly), in chunks of at most [`MAX_BATCH_PIXELS`]. Finished images go to
/// `on_event`; with `keep_images` they are also returned.
pub fn run_job(
    entry: &ModelEntry,
    runtime: &Runtime,
    request: &GenerationRequest,
    on_event: &mut dyn FnMut(EngineEvent),
    cancelled: &dyn Fn() -> bool,
    run_options: Option<&ort::session::RunOptions>,
    keep_images: bool,
) -> Result<(Vec<GeneratedImage>, Timings), EngineError> {
    let model = entry
        .load(runtime)
        .map_err(|reason| EngineError::BrokenModel {
            model: entry.id.clone(),
            reason,
        })?;
    let chunk = chunk_size(request.width, request.height, request.n);
    let seeds: Vec<u64> = (0..request.n).map(|i| request.seed_of(i)).collect();
    let latent_len = 4 * (request.width as usize / 8) * (request.height as usize / 8);
    let mut images = Vec::with_capacity(request.n as usize);
    let mut total = Timings::default();
    for (c, chunk_seeds) in seeds.chunks(chunk).enumerate() {
        let first = (c * chunk) as u32;
        let latents = request.latents.as_ref().map(|l| {
            &l[first as usize * latent_len..(first as usize + chunk_seeds.len()) * latent_len]
        });
        let input = PipelineInput {
            prompt: &request.prompt,
            negative_prompt: &request.negative_prompt,
            width: request.width,
            height: request.height,
            steps: request.steps,
            guidance: request.guidance,
            guidance_rescale: request.guidance_rescale,
            prompt_options: request.prompt_options,
            sampler: request.sampler,
            schedule: request.schedule,
            seeds: chunk_seeds,
            latents,
            edit: request.edit.as_ref(),
            preview: request.preview,
        };
        let mut relay = |event: PipelineEvent| match event {
            PipelineEvent::Step {
                step,
                steps,
                previews,
            } => on_event(EngineEvent::Step {
                first,
                step,
                steps,
                previews,
            }),
            PipelineEvent::Decoded { index, image } => {
                let index = first + index as u32;
                let generated = GeneratedImage {
                    index,
                    seed: request.seed_of(index),
                    pixels: image,
                };
                on_event(EngineEvent::ImageReady(Box::new(generated)));
            }
        };
        let (chunk_images, timings) =
            pipeline::generate(entry, &model, &input, &mut relay, cancelled, run_options).map_err(
                |e| match e {
                    pipeline::PipelineError::Cancelled => EngineError::Cancelled,
                    other => EngineError::Failed(other.to_string()),
                },
            )?;
        total.text_encoder_ms += timings.text_encoder_ms;
        total.denoise_ms += timings.denoise_ms;
        total.vae_ms += timings.vae_ms;
        total.onnx_ms += timings.onnx_ms;
        if keep_images {
            for (k, pixels) in chunk_images.into_iter().enumerate() {
                let index = first + k as u32;
                images.push(GeneratedImage {
                    index,
                    seed: request.seed_of(index),
                    pixels,
                });
            }
        }
    }
    Ok((images, total))
}

/// The text written into a PNG's `parameters` chunk (A1111's layout, which many tools read).
pub fn parameters_text(request: &GenerationRequest, seed: u64) -> String {
    parameters_line(
        &request.prompt,
        &request.negative_prompt,
        request.steps,
        request.sampler.name(),
        request.schedule.name(),
        request.guidance,
        seed,
        request.width,
        request.height,
        &request.model,
    )
}

/// A1111's parameters layout: the prompt, `Negative prompt: …`, then the settings line.
#[allow(clippy::too_many_arguments)]
pub fn parameters_line(
    prompt: &str,
    negative_prompt: &str,
    steps: u32,
    sampler: &str,
    schedule: &str,
    guidance: f32,
    seed: u64,
    width: u32,
    height: u32,
    model: &str,
) -> String {
    let mut text = prompt.to_string();
    if !negative_prompt.is_empty() {
        text.push_str(&format!("\nNegative prompt: {negative_prompt}"));
    }
    text.push_str(&format!(
        "\nSteps: {steps}, Sampler: {sampler}, Schedule type: {schedule}, CFG scale: {guidance}, Seed: {seed}, Size: {width}x{height}, Model: {model}, Generator: Easel"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn big_requests_are_split_so_a_unet_batch_stays_under_the_budget() {
        assert_eq!(chunk_size(512, 512, 10), 8);
        assert_eq!(chunk_size(1024, 1024, 10), 2);
        assert_eq!(chunk_size(2048, 2048, 3), 1);
        assert_eq!(chunk_size(64, 64, 10), 10);
    }
}
