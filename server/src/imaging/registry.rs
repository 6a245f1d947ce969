//! The image models on disk: one folder each under `EASEL_MODELS_DIR`, in the diffusers /
//! optimum ONNX layout. Folders are checked when scanned (cheap: files and JSON) and their ONNX
//! sessions are loaded once, on first use, then shared by every job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::diffusion::onnx::{ModelError, OnnxModel};
use super::diffusion::schedulers::{SamplerKind, SchedulerConfig};
use super::diffusion::tokenizer::ClipTokenizer;
use super::presets::{self, Family, Presets};
use super::runtime::Runtime;
use crate::config::{RemoteKind, RemoteModel};

/// A model folder, checked, with its sessions loaded on demand.
pub struct ModelEntry {
    pub id: String,
    pub dir: PathBuf,
    pub family: Family,
    pub presets: Presets,
    pub scheduler: SchedulerConfig,
    pub vae_scaling_factor: f32,
    pub has_vae_encoder: bool,
    pub is_sdxl: bool,
    /// SDXL's `force_zeros_for_empty_prompt` (`model_index.json`, true by default as in
    /// diffusers): an empty negative prompt is zeros rather than the encoding of "".
    pub zero_empty_negative: bool,
    /// Set when the folder is unusable; the model is still listed, with this reason.
    pub problem: Option<String>,
    /// Set when the model is painted by a remote images API (`[[images.remote]]`), here.
    pub remote: Option<RemoteModel>,
    /// Whether sampler, steps, guidance and seed mean anything to whoever paints the model
    /// (false for OpenAI-kind remote models, so they are not offered).
    pub tunable: bool,
    /// Whether this entry paints with the folder's int8 UNet (`unet_int8/`, see `int8`): the
    /// same folder offered a second time under `<id>-int8`.
    pub int8: bool,
    loaded: Mutex<Option<Result<Arc<LoadedModel>, String>>>,
    /// The folder's encoders and decoders while some entry has them loaded: the fp32 and int8
    /// entries of one folder share this cell, so the second to load reuses the first's.
    parts: Arc<Mutex<Weak<ModelParts>>>,
    /// The tokenizer alone, for reading prompts before any session loads (token counts).
    prompt_tokenizer: OnceLock<Option<Arc<ClipTokenizer>>>,
}

/// The sessions and tokenizers of one model: its UNet, and the encoders and decoders it may
/// share with the other entry of its folder (`parts`, reached through `Deref`).
pub struct LoadedModel {
    parts: Arc<ModelParts>,
    pub unet: OnnxModel,
}

impl std::ops::Deref for LoadedModel {
    type Target = ModelParts;

    fn deref(&self) -> &ModelParts {
        &self.parts
    }
}

impl LoadedModel {
    /// Whether both paint with the same loaded encoders and decoders.
    pub fn shares_parts_with(&self, other: &LoadedModel) -> bool {
        Arc::ptr_eq(&self.parts, &other.parts)
    }
}

/// Everything of a model but its UNet: what a folder's fp32 and int8 entries have in common
/// (about 0.7 GB for SD 1.5, loaded once for both).
pub struct ModelParts {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: OnnxModel,
    /// SDXL's second tokenizer and encoder (OpenCLIP bigG).
    pub second: Option<(ClipTokenizer, OnnxModel)>,
    pub vae_decoder: OnnxModel,
    /// An fp32 decoder (`vae_decoder_fp32/`) to decode again when an fp16 one overflows.
    pub vae_decoder_fp32: Option<OnnxModel>,
    /// TAESD's decoder for live previews, when the model has one.
    pub preview_decoder: Option<OnnxModel>,
    pub vae_encoder: Option<OnnxModel>,
}

impl ModelEntry {
    /// Reads a folder's configuration files; problems are recorded, not raised, so one broken
    /// folder never hides the others.
    pub fn open(dir: &Path) -> ModelEntry {
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model")
            .to_string();
        match Self::check(dir, &id) {
            Ok(entry) => entry,
            Err(problem) => {
                let presets = presets::family_defaults(Family::Sd1, &id);
                ModelEntry {
                    id,
                    dir: dir.to_path_buf(),
                    family: Family::Sd1,
                    presets,
                    scheduler: SchedulerConfig::default(),
                    vae_scaling_factor: 0.18215,
                    has_vae_encoder: false,
                    is_sdxl: false,
                    zero_empty_negative: false,
                    problem: Some(problem),
                    remote: None,
                    tunable: true,
                    int8: false,
                    loaded: Mutex::new(None),
                    parts: Arc::default(),
                    prompt_tokenizer: OnceLock::new(),
                }
            }
        }
    }

    /// The int8 variant of a model folder that has `unet_int8/` (`easel models quantize`);
    /// `None` without one, or when the folder is unusable (its fp32 entry says why).
    pub fn open_int8(dir: &Path) -> Option<ModelEntry> {
        super::int8::unet_of(dir)?;
        let mut entry = Self::open(dir);
        if entry.problem.is_some() {
            return None;
        }
        entry.id.push_str(super::int8::ID_SUFFIX);
        entry.presets.display_name = format!("{} (int8)", entry.presets.display_name);
        entry.int8 = true;
        Some(entry)
    }

    /// The folder of the UNet this entry paints with.
    fn unet_folder(&self) -> &'static str {
        if self.int8 {
            super::int8::FOLDER
        } else {
            "unet"
        }
    }

    fn check(dir: &Path, id: &str) -> Result<ModelEntry, String> {
        let need = |rel: &str| -> Result<PathBuf, String> {
            let path = dir.join(rel);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!("{} is missing {rel}", dir.display()))
            }
        };
        let index_text =
            std::fs::read_to_string(need("model_index.json")?).map_err(|e| e.to_string())?;
        let index: serde_json::Value = serde_json::from_str(&index_text)
            .map_err(|e| format!("{}: model_index.json is not valid JSON: {e}", dir.display()))?;
        let class = index
            .get("_class_name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        for rel in [
            "text_encoder/model.onnx",
            "unet/model.onnx",
            "vae_decoder/model.onnx",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
        ] {
            need(rel)?;
        }
        let is_sdxl = class.contains("XL") || dir.join("text_encoder_2").is_dir();
        if is_sdxl {
            for rel in [
                "text_encoder_2/model.onnx",
                "tokenizer_2/vocab.json",
                "tokenizer_2/merges.txt",
            ] {
                need(rel)?;
            }
        }
        let scheduler_text = std::fs::read_to_string(need("scheduler/scheduler_config.json")?)
            .map_err(|e| e.to_string())?;
        let scheduler = SchedulerConfig::from_json(&scheduler_text)
            .map_err(|e| format!("{}: scheduler/scheduler_config.json: {e}", dir.display()))?;

        let vae_scaling_factor = ["vae_decoder/config.json", "vae/config.json"]
            .iter()
            .filter_map(|rel| std::fs::read_to_string(dir.join(rel)).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .find_map(|v| v.get("scaling_factor").and_then(|f| f.as_f64()))
            .map(|f| f as f32)
            .unwrap_or(if is_sdxl { 0.13025 } else { 0.18215 });

        let unet_config: serde_json::Value = std::fs::read_to_string(dir.join("unet/config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let lcm = class.contains("LatentConsistency")
            || unet_config
                .get("time_cond_proj_dim")
                .is_some_and(|v| !v.is_null())
            || scheduler.class_name.as_deref() == Some("LCMScheduler");
        let name_hint = format!(
            "{id} {}",
            index
                .get("_name_or_path")
                .and_then(|v| v.as_str())
                .unwrap_or("")
        )
        .to_lowercase();
        // Turbo (adversarially distilled, 1–4 steps, no CFG) ships a `trailing` epsilon
        // schedule; zero-SNR v-prediction models are trailing too, so they are excluded.
        let turbo_schedule = scheduler.timestep_spacing.as_deref() == Some("trailing")
            && !scheduler.rescale_betas_zero_snr
            && scheduler.prediction_type == "epsilon"
            && !lcm;
        let detected = if name_hint.contains("turbo") || turbo_schedule {
            Family::Turbo
        } else if lcm {
            Family::Lcm
        } else if is_sdxl {
            Family::Sdxl
        } else if scheduler.prediction_type == "v_prediction" {
            Family::Sd2V
        } else {
            Family::Sd1
        };
        let traits = presets::Traits {
            sdxl: is_sdxl,
            guidance_embedding: unet_config
                .get("time_cond_proj_dim")
                .is_some_and(|v| !v.is_null()),
        };
        let (family, presets) = presets::load(dir, detected, traits, id)?;
        Ok(ModelEntry {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            family,
            presets,
            scheduler,
            vae_scaling_factor,
            has_vae_encoder: dir.join("vae_encoder/model.onnx").is_file(),
            is_sdxl,
            zero_empty_negative: is_sdxl
                && index
                    .get("force_zeros_for_empty_prompt")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true),
            problem: None,
            remote: None,
            tunable: true,
            int8: false,
            loaded: Mutex::new(None),
            parts: Arc::default(),
            prompt_tokenizer: OnceLock::new(),
        })
    }

    /// The loaded sessions, loading them on first use. A failure is remembered (with the file
    /// and reason) so a broken model fails fast instead of reloading on every request.
    pub fn load(&self, runtime: &Runtime) -> Result<Arc<LoadedModel>, String> {
        if let Some(problem) = &self.problem {
            return Err(problem.clone());
        }
        let mut slot = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(result) = slot.as_ref() {
            return result.clone();
        }
        let started = std::time::Instant::now();
        let result = self
            .load_sessions(runtime)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        match &result {
            Ok(_) => {
                tracing::info!(model = %self.id, "loaded in {:.1}s", started.elapsed().as_secs_f32())
            }
            Err(e) => tracing::error!(model = %self.id, "cannot load: {e}"),
        }
        *slot = Some(result.clone());
        result
    }

    /// The (first) tokenizer, read from the folder once; `None` for remote models and folders
    /// without a readable one.
    pub fn tokenizer(&self) -> Option<Arc<ClipTokenizer>> {
        self.prompt_tokenizer
            .get_or_init(|| {
                if self.remote.is_some() || self.problem.is_some() {
                    return None;
                }
                ClipTokenizer::from_dir(&self.dir.join("tokenizer"))
                    .ok()
                    .map(Arc::new)
            })
            .clone()
    }

    pub fn is_loaded(&self) -> bool {
        matches!(
            self.loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref(),
            Some(Ok(_))
        )
    }

    fn load_sessions(&self, runtime: &Runtime) -> Result<LoadedModel, ModelError> {
        let parts = {
            // Held while loading: the other entry of the folder waits and then reuses them.
            let mut shared = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            match shared.upgrade() {
                Some(parts) => parts,
                None => {
                    let parts = Arc::new(self.load_parts(runtime)?);
                    *shared = Arc::downgrade(&parts);
                    parts
                }
            }
        };
        let unet = OnnxModel::load(
            runtime,
            &self.dir.join(self.unet_folder()).join("model.onnx"),
        )?;
        for input in ["sample", "timestep", "encoder_hidden_states"] {
            unet.require_input(input)?;
        }
        if self.is_sdxl {
            unet.require_input("text_embeds")?;
            unet.require_input("time_ids")?;
        }
        Ok(LoadedModel { parts, unet })
    }

    fn load_parts(&self, runtime: &Runtime) -> Result<ModelParts, ModelError> {
        let tokenizer = |rel: &str| {
            ClipTokenizer::from_dir(&self.dir.join(rel)).map_err(|e| ModelError::Run {
                file: self.dir.join(rel).display().to_string(),
                message: e.to_string(),
            })
        };
        let onnx = |rel: &str| OnnxModel::load(runtime, &self.dir.join(rel).join("model.onnx"));
        let text_encoder = onnx("text_encoder")?;
        text_encoder.require_input("input_ids")?;
        let second = if self.is_sdxl {
            let encoder = onnx("text_encoder_2")?;
            encoder.require_input("input_ids")?;
            Some((tokenizer("tokenizer_2")?, encoder))
        } else {
            None
        };
        if let Some((_, encoder_2)) = &second {
            // SDXL conditions on the penultimate layer: an export without hidden states
            // would paint with the wrong one, so it is refused with the way out.
            for encoder in [&text_encoder, encoder_2] {
                let names = encoder.outputs.iter().map(|p| p.name.as_str());
                if super::diffusion::text::penultimate_output(names).is_none() {
                    return Err(ModelError::MissingOutput {
                        file: encoder.file(),
                        output: "hidden_states.N (SDXL needs the penultimate layer; export the text encoders with their hidden states, as optimum-cli does)".into(),
                        available: encoder
                            .outputs
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        let vae_decoder = onnx("vae_decoder")?;
        vae_decoder.require_input("latent_sample")?;
        let vae_decoder_fp32 = if self.dir.join("vae_decoder_fp32/model.onnx").is_file() {
            let d = onnx("vae_decoder_fp32")?;
            d.require_input("latent_sample")?;
            Some(d)
        } else {
            None
        };
        let vae_encoder = if self.has_vae_encoder {
            let e = onnx("vae_encoder")?;
            e.require_input("sample")?;
            Some(e)
        } else {
            None
        };
        let preview_decoder = match &self.presets.preview_decoder {
            Some(path) => {
                let decoder = OnnxModel::load(runtime, path)?;
                decoder.require_input("latent_sample")?;
                Some(decoder)
            }
            None => None,
        };
        Ok(ModelParts {
            preview_decoder,
            tokenizer: tokenizer("tokenizer")?,
            text_encoder,
            second,
            vae_decoder,
            vae_decoder_fp32,
            vae_encoder,
        })
    }

    /// An entry described by another process (see `catalog`): usable to check requests,
    /// never loaded here. `family` and `presets` are the description's, already parsed.
    pub(super) fn elsewhere(
        described: &super::catalog::ModelDescription,
        family: Family,
        presets: Presets,
    ) -> ModelEntry {
        ModelEntry {
            id: described.id.clone(),
            dir: PathBuf::new(),
            family,
            presets,
            scheduler: described.scheduler.clone(),
            vae_scaling_factor: described.vae_scaling_factor,
            has_vae_encoder: described.has_vae_encoder,
            is_sdxl: described.is_sdxl,
            zero_empty_negative: described.zero_empty_negative,
            problem: None,
            remote: None,
            tunable: described.tunable,
            int8: false,
            loaded: Mutex::new(Some(Err(
                "this model is painted by another Easel process".into()
            ))),
            parts: Arc::default(),
            prompt_tokenizer: OnceLock::from(None),
        }
    }

    /// An entry painted by a remote images API. Its presets are the SD 1.5 defaults with the
    /// configured sizes, which Easel-kind servers resolve the same way; OpenAI-kind servers only
    /// read prompt, count and size.
    pub fn remote(config: &RemoteModel) -> ModelEntry {
        let mut presets = presets::family_defaults(Family::Sd1, &config.name);
        presets.display_name = config.name.clone();
        presets.default_size = config.sizes[0];
        presets.allowed_sizes = config.sizes.clone();
        presets.max_size = config
            .sizes
            .iter()
            .map(|&(w, h)| w.max(h))
            .max()
            .unwrap_or(1024);
        ModelEntry {
            id: config.name.clone(),
            dir: PathBuf::new(),
            family: Family::Sd1,
            presets,
            scheduler: SchedulerConfig::default(),
            vae_scaling_factor: 0.18215,
            has_vae_encoder: config.edits,
            is_sdxl: false,
            zero_empty_negative: false,
            problem: None,
            tunable: config.kind == RemoteKind::Easel,
            remote: Some(config.clone()),
            int8: false,
            loaded: Mutex::new(Some(Err(
                "this model is painted by a remote images API".into()
            ))),
            parts: Arc::default(),
            prompt_tokenizer: OnceLock::from(None),
        }
    }

    pub fn info(&self) -> ModelInfo {
        let p = &self.presets;
        ModelInfo {
            id: self.id.clone(),
            name: p.display_name.clone(),
            family: self.family.name().into(),
            default_size: presets::size_text(p.default_size),
            allowed_sizes: p
                .allowed_sizes
                .iter()
                .map(|&s| presets::size_text(s))
                .collect(),
            max_size: p.max_size,
            // Only what whoever paints the model reads is offered.
            samplers: if self.tunable {
                SamplerKind::ALL
                    .iter()
                    .map(|s| s.name().to_string())
                    .collect()
            } else {
                Vec::new()
            },
            default_sampler: p.default_sampler.name().into(),
            default_guidance: p.default_guidance,
            steps: p.steps,
            edit: self.has_vae_encoder,
            error: self.problem.clone(),
        }
    }
}

/// What a model offers, as callers describe it to people (the API, the tool's schema).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub family: String,
    pub default_size: String,
    pub allowed_sizes: Vec<String>,
    pub max_size: u32,
    pub samplers: Vec<String>,
    pub default_sampler: String,
    pub default_guidance: f32,
    pub steps: presets::QualitySteps,
    /// Whether the model can edit images (has a VAE encoder).
    pub edit: bool,
    /// Set when the folder could not be loaded; the model is listed but unusable.
    pub error: Option<String>,
}

/// A folder's entry, and its int8 variant when it has one.
fn with_int8(dir: &Path) -> Vec<Arc<ModelEntry>> {
    std::iter::once(ModelEntry::open(dir))
        .chain(ModelEntry::open_int8(dir))
        .map(Arc::new)
        .collect()
}

/// All model folders, sorted by id.
pub struct Registry {
    pub dir: PathBuf,
    pub models: Vec<Arc<ModelEntry>>,
}

impl Registry {
    /// A registry of exactly these folders (the command line names a folder directly).
    pub fn of_folders(dir: &Path, folders: &[PathBuf]) -> Registry {
        let mut registry = Registry {
            dir: dir.to_path_buf(),
            models: folders.iter().flat_map(|d| with_int8(d)).collect(),
        };
        registry.share_parts();
        registry
    }

    pub fn scan(dir: &Path) -> Registry {
        let mut models = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for d in dirs {
                let looks_like_model =
                    d.join("model_index.json").is_file() || d.join("unet").is_dir();
                if looks_like_model {
                    models.extend(with_int8(&d));
                } else {
                    tracing::debug!("skipping {} (no model_index.json)", d.display());
                }
            }
        }
        let mut registry = Registry {
            dir: dir.to_path_buf(),
            models,
        };
        registry.share_parts();
        registry
    }

    /// Points each int8 entry not yet shared (new) at its fp32 sibling's parts, so the two load
    /// the encoders and decoders once: on every scan, and again after a rescan that kept the
    /// fp32 entry (unchanged, sessions loaded) and added the int8 one.
    pub fn share_parts(&mut self) {
        let cells: Vec<(PathBuf, Arc<Mutex<Weak<ModelParts>>>)> = self
            .models
            .iter()
            .filter(|m| !m.int8 && m.remote.is_none())
            .map(|m| (m.dir.clone(), m.parts.clone()))
            .collect();
        for entry in self.models.iter_mut().filter(|m| m.int8) {
            let cell = cells.iter().find(|(dir, _)| *dir == entry.dir);
            if let (Some((_, cell)), Some(entry)) = (cell, Arc::get_mut(entry)) {
                entry.parts = cell.clone();
            }
        }
    }

    /// By id (folder name). The command line also accepts a folder path; it opens that itself.
    pub fn find(&self, name: &str) -> Option<Arc<ModelEntry>> {
        self.models.iter().find(|m| m.id == name).cloned()
    }

    /// Adds the remote models (a folder of the same name is replaced: the configuration says
    /// where the model is painted).
    pub fn add_remote(&mut self, remote: &[RemoteModel]) {
        for r in remote {
            self.models.retain(|m| m.id != r.name);
            self.models.push(Arc::new(ModelEntry::remote(r)));
        }
        self.models.sort_by(|a, b| a.id.cmp(&b.id));
    }

    pub fn usable(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models.iter().filter(|m| m.problem.is_none())
    }
}
