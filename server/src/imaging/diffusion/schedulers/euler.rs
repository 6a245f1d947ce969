//! "euler": diffusers `EulerDiscreteScheduler` (0.42, `scheduling_euler_discrete.py`) with its
//! defaults `s_churn = 0`, `interpolation_type = "linear"`, `final_sigmas_type = "zero"`; the
//! Karras schedule is its `use_karras_sigmas = True`. This is k-diffusion's `sample_euler`
//! (Karras et al. 2022, Algorithm 2 without churn) on diffusers' sigmas:
//!
//! `x0 = denoise(x, sigma_i)`, `d = (x - x0) / sigma_i`, `x <- x + d * (sigma_{i+1} - sigma_i)`.

use super::schedule::{at, scale_by_sigma, ve_add_noise, Family, Model};
use super::{NoiseSource, Scheduler, SchedulerConfig, SchedulerError};

pub(super) struct Euler {
    model: Model,
    timesteps: Vec<f64>,
    /// One sigma per step plus the final 0.
    sigmas: Vec<f64>,
    init_noise_sigma: f32,
    x0: Vec<f32>,
    has_x0: bool,
}

impl Euler {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Euler)?;
        let (timesteps, mut sigmas) = model.diffusers_k_tables(steps, karras, false);
        sigmas.push(0.0);
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        Ok(Euler {
            init_noise_sigma: model.diffusers_init_noise_sigma(max_sigma),
            model,
            timesteps,
            sigmas,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Scheduler for Euler {
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
        _noise: &mut dyn NoiseSource,
    ) {
        debug_assert!(
            index < self.timesteps.len(),
            "evaluation index out of range"
        );
        if index >= self.timesteps.len() {
            return;
        }
        let sigma = self.sigmas[index];
        let dt = self.sigmas[index + 1] - sigma;
        self.model
            .ve_denoised(sigma, sample, model_output, &mut self.x0);
        for (x, &x0) in sample.iter_mut().zip(&self.x0) {
            let derivative = (*x as f64 - x0 as f64) / sigma;
            *x = (*x as f64 + derivative * dt) as f32;
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
        let entries = table_entries("euler");
        assert!(entries.len() >= 30);
        for entry in entries {
            let s = Euler::new(&config(&entry.config), entry.karras, entry.steps).unwrap();
            assert_table(&entry, "timesteps", &s.timesteps);
            assert_table(&entry, "sigmas", &s.sigmas);
            assert_table(&entry, "init_noise_sigma", &[s.init_noise_sigma as f64]);
        }
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Euler);
    }
}
