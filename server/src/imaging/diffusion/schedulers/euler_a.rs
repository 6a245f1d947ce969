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

use super::sampler::Sampler;
use super::schedule::{ancestral_step, SigmaSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct EulerAncestral {
    /// One sigma per step plus the final 0.
    schedule: SigmaSteps,
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
        let schedule = if karras {
            SigmaSteps::kdiffusion(config, true, steps)?
        } else {
            SigmaSteps::euler(config, false, steps)?
        };
        Ok(EulerAncestral {
            schedule,
            x0: Vec::new(),
            has_x0: false,
            noise: Vec::new(),
        })
    }
}

impl Sampler for EulerAncestral {
    type Timeline = SigmaSteps;

    fn timeline(&self) -> &SigmaSteps {
        &self.schedule
    }

    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) {
        let sigma = self.schedule.sigmas[index];
        let (sigma_down, sigma_up) = ancestral_step(sigma, self.schedule.sigmas[index + 1]);
        self.schedule
            .model
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

    fn estimate(&self) -> Option<&[f32]> {
        self.has_x0.then_some(self.x0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_sigma_steps, check_tables, check_trajectories};
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn tables_match_diffusers() {
        check_tables("euler_a", 30, EulerAncestral::new, |entry, s| {
            assert_sigma_steps(entry, &s.schedule)
        });
    }

    /// Seeded trajectories: the noise comes from `TorchRng`, the fixture's from
    /// `torch.Generator().manual_seed(seed)`.
    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::EulerA);
    }
}
