//! "heun": diffusers `HeunDiscreteScheduler` (0.42, `scheduling_heun_discrete.py`), i.e.
//! Karras et al. (2022) Algorithm 1 / k-diffusion `sample_heun` without churn, split into one
//! call per model evaluation. Each step but the last takes two evaluations:
//!
//! - at `sigma_i`: `d = (x - x0) / sigma_i`, `x' = x + d * (sigma_{i+1} - sigma_i)`;
//! - at `sigma_{i+1}`: `d' = (x' - x0') / sigma_{i+1}`,
//!   `x <- x + (d + d') / 2 * (sigma_{i+1} - sigma_i)`.
//!
//! The last step (to sigma 0) is a single Euler evaluation. Timesteps and sigmas are listed per
//! evaluation, as diffusers interleaves them: `[t0, t1, t1, t2, t2, ...]`.
//! `clip_sample` clamps x0 as in diffusers' Heun.

use super::sampler::Sampler;
use super::schedule::{repeat_interleave_tail, Family, Model, SigmaSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Heun {
    /// Timesteps `[t0, t1, t1, ..., t_{n-1}, t_{n-1}]` (2n - 1 evaluations) and sigmas
    /// `[s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0]`: `sigmas[i]` is the noise level of the sample
    /// given to evaluation `i`.
    schedule: SigmaSteps,
    /// Between the two evaluations of a step: the first derivative, dt and the step's start.
    first: Option<FirstStage>,
    x0: Vec<f32>,
    has_x0: bool,
}

struct FirstStage {
    derivative: Vec<f32>,
    dt: f64,
    sample: Vec<f32>,
}

impl Heun {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Heun)?;
        let (step_timesteps, step_sigmas) = model.diffusers_k_tables(steps, karras, false);
        let timesteps = repeat_interleave_tail(&step_timesteps);
        let mut sigmas = repeat_interleave_tail(&step_sigmas);
        sigmas.push(0.0);
        Ok(Heun {
            schedule: SigmaSteps::diffusers(model, steps, timesteps, sigmas),
            first: None,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Heun {
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
        let model = &self.schedule.model;
        // Odd evaluations complete the step begun by the previous one.
        let second = if index % 2 == 1 {
            self.first.take()
        } else {
            None
        };
        match second {
            None => {
                let sigma = self.schedule.sigmas[index];
                let sigma_next = self.schedule.sigmas[index + 1];
                model.ve_denoised(sigma, sample, model_output, &mut self.x0);
                model.clip(&mut self.x0);
                let dt = sigma_next - sigma;
                let derivative: Vec<f32> = sample
                    .iter()
                    .zip(&self.x0)
                    .map(|(&x, &x0)| ((x as f64 - x0 as f64) / sigma) as f32)
                    .collect();
                let start = sample.to_vec();
                for (x, &d) in sample.iter_mut().zip(&derivative) {
                    *x = (*x as f64 + d as f64 * dt) as f32;
                }
                self.first = Some(FirstStage {
                    derivative,
                    dt,
                    sample: start,
                });
            }
            Some(first) => {
                let sigma_next = self.schedule.sigmas[index];
                model.ve_denoised(sigma_next, sample, model_output, &mut self.x0);
                model.clip(&mut self.x0);
                for (((x, &x0), &d1), &start) in sample
                    .iter_mut()
                    .zip(&self.x0)
                    .zip(&first.derivative)
                    .zip(&first.sample)
                {
                    let d2 = (*x as f64 - x0 as f64) / sigma_next;
                    let d = (d1 as f64 + d2) / 2.0;
                    *x = (start as f64 + d * first.dt) as f32;
                }
            }
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
        check_tables("heun", 30, Heun::new, |entry, s| {
            assert_sigma_steps(entry, &s.schedule)
        });
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Heun);
    }
}
