//! Models described for other processes. A worker advertises the models it paints (in the
//! `nodes` table, as JSON); a web node that paints none of them itself still checks requests
//! against them, offers them in `/api/models` and the tool's schema, and queues jobs for them.

use serde::{Deserialize, Serialize};

use super::diffusion::schedulers::{SamplerKind, Schedule, SchedulerConfig};
use super::presets::{Family, Presets, QualitySteps};
use super::registry::ModelEntry;

/// Everything a request is checked against, as another process describes its model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelDescription {
    pub id: String,
    pub family: String,
    pub display_name: String,
    pub default_size: (u32, u32),
    pub allowed_sizes: Vec<(u32, u32)>,
    pub max_size: u32,
    pub default_sampler: String,
    pub default_schedule: String,
    pub default_guidance: f32,
    pub steps: QualitySteps,
    pub scheduler: SchedulerConfig,
    pub vae_scaling_factor: f32,
    pub has_vae_encoder: bool,
    pub is_sdxl: bool,
    /// SDXL's `force_zeros_for_empty_prompt`.
    #[serde(default)]
    pub zero_empty_negative: bool,
    /// Whether sampler, steps, guidance and seed are read (false for OpenAI-kind remote models).
    #[serde(default = "tunable_default")]
    pub tunable: bool,
}

fn tunable_default() -> bool {
    true
}

impl ModelDescription {
    pub fn of(entry: &ModelEntry) -> ModelDescription {
        let p = &entry.presets;
        ModelDescription {
            id: entry.id.clone(),
            family: entry.family.name().into(),
            display_name: p.display_name.clone(),
            default_size: p.default_size,
            allowed_sizes: p.allowed_sizes.clone(),
            max_size: p.max_size,
            default_sampler: p.default_sampler.name().into(),
            default_schedule: p.default_schedule.name().into(),
            default_guidance: p.default_guidance,
            steps: p.steps,
            scheduler: entry.scheduler.clone(),
            vae_scaling_factor: entry.vae_scaling_factor,
            has_vae_encoder: entry.has_vae_encoder,
            is_sdxl: entry.is_sdxl,
            zero_empty_negative: entry.zero_empty_negative,
            tunable: entry.tunable,
        }
    }

    /// The entry this description stands for; `None` when it names a family, sampler or
    /// schedule this version does not know (a newer worker's model is then not offered).
    pub fn entry(&self) -> Option<ModelEntry> {
        let presets = Presets {
            display_name: self.display_name.clone(),
            default_size: self.default_size,
            allowed_sizes: self.allowed_sizes.clone(),
            max_size: self.max_size,
            default_sampler: SamplerKind::parse(&self.default_sampler)?,
            default_schedule: Schedule::parse(&self.default_schedule)?,
            default_guidance: self.default_guidance,
            steps: self.steps,
            preview_decoder: None,
        };
        Some(ModelEntry::elsewhere(
            self,
            Family::parse(&self.family)?,
            presets,
        ))
    }
}
