//! "dpm++2s_a": k-diffusion `sample_dpmpp_2s_ancestral` (eta = 1, s_noise = 1), DPM-Solver++(2S)
//! of Lu et al. (2022) with ancestral noise, on k-diffusion's discrete or Karras sigmas.
//! Per step, with `t = -ln sigma`:
//!
//! - `(sigma_down, sigma_up) = get_ancestral_step(sigma_i, sigma_{i+1})`;
//! - evaluation at `sigma_i` gives `D`; `h = t(sigma_down) - t(sigma_i)`,
//!   `sigma_s = e^-(t_i + h/2)`, `x2 = (sigma_s / sigma_i) x - expm1(-h/2) D`;
//! - evaluation at `sigma_s` gives `D2`; `x <- (sigma_down / sigma_i) x - expm1(-h) D2`;
//! - `x <- x + sigma_up * noise` when `sigma_{i+1} > 0`.
//!
//! When `sigma_down = 0` (the last step) the step is a single evaluation ending at `D`.
//! In this per-evaluation interface the two evaluations of a step are consecutive indices, with
//! the timestep `sigma_to_t(sigma_s)` for the second. (stable-diffusion.cpp evaluates the second
//! point at `sigma_{i+1}` instead of `sigma_s`; this follows k-diffusion.)

use super::sampler::Sampler;
use super::schedule::{ancestral_step, SigmaSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

/// What one model evaluation is for.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// The evaluation at `sigma_i` of a two-evaluation step.
    Start { step: usize },
    /// The evaluation at the midpoint `sigma_s` completing step `step`.
    Mid { step: usize },
    /// The single evaluation of a step with `sigma_down = 0`.
    Single { step: usize },
}

pub(super) struct Dpmpp2sAncestral {
    /// Per evaluation: its noise level and timestep.
    schedule: SigmaSteps,
    /// One sigma per step plus the final 0.
    sigmas: Vec<f64>,
    /// Per evaluation: its role.
    stages: Vec<Stage>,
    /// The sample at the start of the current step, between its two evaluations.
    start: Option<Vec<f32>>,
    x0: Vec<f32>,
    has_x0: bool,
    noise: Vec<f32>,
}

/// `-ln sigma`, k-diffusion's `t_fn`.
fn t_of(sigma: f64) -> f64 {
    -sigma.ln()
}

impl Dpmpp2sAncestral {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        // k-diffusion's one evaluation per step, then the midpoint evaluations inserted.
        let mut schedule = SigmaSteps::kdiffusion(config, karras, steps)?;
        let sigmas = std::mem::take(&mut schedule.sigmas);
        let mut eval_sigmas = Vec::with_capacity(2 * steps);
        let mut stages = Vec::with_capacity(2 * steps);
        for step in 0..steps {
            let (sigma, sigma_next) = (sigmas[step], sigmas[step + 1]);
            let (sigma_down, _) = ancestral_step(sigma, sigma_next);
            eval_sigmas.push(sigma);
            if sigma_down == 0.0 {
                stages.push(Stage::Single { step });
            } else {
                let h = t_of(sigma_down) - t_of(sigma);
                stages.extend([Stage::Start { step }, Stage::Mid { step }]);
                eval_sigmas.push((-(t_of(sigma) + 0.5 * h)).exp());
            }
        }
        schedule.timesteps = schedule.model.timesteps_of(&eval_sigmas);
        schedule.sigmas = eval_sigmas;
        Ok(Dpmpp2sAncestral {
            schedule,
            sigmas,
            stages,
            start: None,
            x0: Vec::new(),
            has_x0: false,
            noise: Vec::new(),
        })
    }

    fn add_ancestral_noise(
        &mut self,
        step: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) {
        let (sigma, sigma_next) = (self.sigmas[step], self.sigmas[step + 1]);
        if sigma_next > 0.0 {
            let (_, sigma_up) = ancestral_step(sigma, sigma_next);
            self.noise.resize(sample.len(), 0.0);
            noise.fill_standard_normal(&mut self.noise);
            for (x, &n) in sample.iter_mut().zip(&self.noise) {
                *x = (*x as f64 + n as f64 * sigma_up) as f32;
            }
        }
    }
}

impl Sampler for Dpmpp2sAncestral {
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
        let Some(&stage) = self.stages.get(index) else {
            return;
        };
        let eval_sigma = self.schedule.sigmas[index];
        self.schedule
            .model
            .ve_denoised(eval_sigma, sample, model_output, &mut self.x0);
        self.has_x0 = true;
        match stage {
            Stage::Single { step } => {
                // Euler step to sigma_down = 0 lands on the x0 estimate.
                sample.iter_mut().zip(&self.x0).for_each(|(x, &d)| *x = d);
                self.add_ancestral_noise(step, sample, noise);
            }
            Stage::Start { step } => {
                let sigma = self.sigmas[step];
                let (sigma_down, _) = ancestral_step(sigma, self.sigmas[step + 1]);
                let h = t_of(sigma_down) - t_of(sigma);
                let sigma_s = self.schedule.sigmas[index + 1];
                let (a, b) = (sigma_s / sigma, (-0.5 * h).exp_m1());
                self.start = Some(sample.to_vec());
                for (x, &d) in sample.iter_mut().zip(&self.x0) {
                    *x = (a * *x as f64 - b * d as f64) as f32;
                }
            }
            Stage::Mid { step } => {
                let sigma = self.sigmas[step];
                let (sigma_down, _) = ancestral_step(sigma, self.sigmas[step + 1]);
                let h = t_of(sigma_down) - t_of(sigma);
                let (a, b) = (sigma_down / sigma, (-h).exp_m1());
                let start = self.start.take().unwrap_or_else(|| sample.to_vec());
                for ((x, &d), &x_start) in sample.iter_mut().zip(&self.x0).zip(&start) {
                    *x = (a * x_start as f64 - b * d as f64) as f32;
                }
                self.add_ancestral_noise(step, sample, noise);
            }
        }
    }

    fn estimate(&self) -> Option<&[f32]> {
        self.has_x0.then_some(self.x0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_table, check_tables, check_trajectories, config};
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn sigmas_match_kdiffusion() {
        check_tables("kdiffusion", 30, Dpmpp2sAncestral::new, |entry, s| {
            assert_table(entry, "sigmas", &s.sigmas)
        });
    }

    #[test]
    fn two_evaluations_per_step_but_the_last() {
        let s = Dpmpp2sAncestral::new(&config("sd15"), false, 5).unwrap();
        let eval_sigmas = &s.schedule.sigmas;
        assert_eq!(s.schedule.timesteps.len(), 9);
        assert_eq!(eval_sigmas[0], s.sigmas[0]);
        // The midpoint lies between sigma_i and sigma_down.
        let (down, _) = ancestral_step(s.sigmas[0], s.sigmas[1]);
        assert!(eval_sigmas[1] < s.sigmas[0] && eval_sigmas[1] > down);
        assert_eq!(eval_sigmas[8], s.sigmas[4]);
    }

    /// Seeded trajectories against the fixture script's transcription of k-diffusion's loop.
    #[test]
    fn trajectories_match_kdiffusion() {
        check_trajectories(SamplerKind::Dpmpp2sA);
    }
}
