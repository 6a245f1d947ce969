//! "euler_a": diffusers `EulerAncestralDiscreteScheduler` (0.42,
//! `scheduling_euler_ancestral_discrete.py`), i.e. k-diffusion's `sample_euler_ancestral` with
//! eta = 1 on diffusers' sigmas:
//!
//! `x0 = denoise(x, sigma_i)`, `(sigma_down, sigma_up) = get_ancestral_step(sigma_i, sigma_{i+1})`,
//! `x <- x + (x - x0) / sigma_i * (sigma_down - sigma_i) + sigma_up * noise`.
//!
//! diffusers' EulerAncestral has no Karras option; the Karras schedule is k-diffusion style
//! (what A1111/ComfyUI call "Euler a Karras"): the same step on k-diffusion's
//! `get_sigmas_karras(n, sigma_min, sigma_max)` over the model's whole sigma range, timesteps
//! `sigma_to_t(sigma)`, initial noise scaled by the first sigma.
//! Like diffusers (and unlike k-diffusion) the noise is drawn at every step, also the last one
//! where `sigma_up = 0`, so a seeded generator advances exactly as in diffusers (the output is
//! the same either way).

use super::schedule::{ancestral_step, at, scale_by_sigma, ve_add_noise, Family, Model};
use super::{NoiseSource, Scheduler, SchedulerConfig, SchedulerError};

pub(super) struct EulerAncestral {
    model: Model,
    timesteps: Vec<f64>,
    /// One sigma per step plus the final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f32,
    x0: Vec<f32>,
    has_x0: bool,
    noise: Vec<f32>,
}

impl EulerAncestral {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Euler)?;
        let (timesteps, sigmas, init_noise_sigma) = if karras {
            let sigmas = model.kdiffusion_sigmas(steps, true);
            let timesteps = sigmas[..steps]
                .iter()
                .map(|&s| model.sigma_to_t(s))
                .collect();
            let init = sigmas[0] as f32;
            (timesteps, sigmas, init)
        } else {
            let (timesteps, mut sigmas) = model.diffusers_k_tables(steps, false, false);
            sigmas.push(0.0);
            let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
            let init = model.diffusers_init_noise_sigma(max_sigma);
            (timesteps, sigmas, init)
        };
        Ok(EulerAncestral {
            init_noise_sigma,
            model,
            timesteps,
            sigmas,
            x0: Vec::new(),
            has_x0: false,
            noise: Vec::new(),
        })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn steps(&self) -> usize {
        self.timesteps.len()
    }

    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, at(&self.sigmas, index));
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) {
        debug_assert!(
            index < self.timesteps.len(),
            "evaluation index out of range"
        );
        if index >= self.timesteps.len() {
            return;
        }
        let sigma = self.sigmas[index];
        let (sigma_down, sigma_up) = ancestral_step(sigma, self.sigmas[index + 1]);
        self.model
            .ve_denoised(sigma, sample, model_output, &mut self.x0);
        self.noise.resize(sample.len(), 0.0);
        noise.fill_standard_normal(&mut self.noise);
        let dt = sigma_down - sigma;
        for ((x, &x0), &n) in sample.iter_mut().zip(&self.x0).zip(&self.noise) {
            let derivative = (*x as f64 - x0 as f64) / sigma;
            *x = (*x as f64 + derivative * dt + n as f64 * sigma_up) as f32;
        }
        self.has_x0 = true;
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        ve_add_noise(original, noise, at(&self.sigmas, index))
    }

    fn denoised(&self) -> Option<&[f32]> {
        self.has_x0.then_some(self.x0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_table, check_trajectories, config, table_entries};
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn tables_match_diffusers() {
        let entries = table_entries("euler_a");
        assert!(entries.len() >= 30);
        for entry in entries {
            let s = EulerAncestral::new(&config(&entry.config), entry.karras, entry.steps).unwrap();
            assert_table(&entry, "timesteps", &s.timesteps);
            assert_table(&entry, "sigmas", &s.sigmas);
            assert_table(&entry, "init_noise_sigma", &[s.init_noise_sigma as f64]);
        }
    }

    /// Seeded trajectories: the noise comes from `TorchRng`, the fixture's from
    /// `torch.Generator().manual_seed(seed)`.
    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::EulerA);
    }
}
