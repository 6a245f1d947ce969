//! "euler": diffusers `EulerDiscreteScheduler` (0.42, `scheduling_euler_discrete.py`) with its
//! defaults `s_churn = 0`, `interpolation_type = "linear"`, `final_sigmas_type = "zero"`; the
//! Karras schedule is its `use_karras_sigmas = True`. This is k-diffusion's `sample_euler`
//! (Karras et al. 2022, Algorithm 2 without churn) on diffusers' sigmas:
//!
//! `x0 = denoise(x, sigma_i)`, `d = (x - x0) / sigma_i`, `x <- x + d * (sigma_{i+1} - sigma_i)`.

use super::sampler::Sampler;
use super::schedule::{euler_step, SigmaSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Euler {
    /// One sigma per step plus the final 0.
    schedule: SigmaSteps,
    x0: Vec<f32>,
    has_x0: bool,
}

impl Euler {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        Ok(Euler {
            schedule: SigmaSteps::euler(config, karras, steps)?,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Euler {
    type Timeline = SigmaSteps;

    fn timeline(&self) -> &SigmaSteps {
        &self.schedule
    }

    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
    ) {
        let sigma = self.schedule.sigmas[index];
        let dt = self.schedule.sigmas[index + 1] - sigma;
        self.schedule
            .model
            .ve_denoised(sigma, sample, model_output, &mut self.x0);
        euler_step(sample, &self.x0, sigma, dt);
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
        check_tables("euler", 30, Euler::new, |entry, s| {
            assert_sigma_steps(entry, &s.schedule)
        });
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Euler);
    }
}
