//! "ddim": diffusers `DDIMScheduler` (0.42, `scheduling_ddim.py`) with eta = 0, i.e. Song et
//! al. (2020) "Denoising Diffusion Implicit Models", eq. 12 without noise:
//!
//! `x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps`, with `a = alphas_cumprod[t]`,
//! `a_prev = alphas_cumprod[t - num_train_timesteps / steps]` (or `final_alpha_cumprod` below
//! t = 0), x0 clamped when `clip_sample` (the DDIM class default is on when the key is absent).
//!
//! diffusers' DDIM has no Karras option. Here the Karras schedule picks the timesteps
//! `round(sigma_to_t(karras_sigma))`, the Karras sigmas spanning the sigmas of DDIM's own
//! spaced timesteps (as diffusers' Euler does), and each step goes to the next listed timestep
//! (the last to `final_alpha_cumprod`) using the trained `alphas_cumprod` of those integer
//! timesteps, so the UNet sees exactly the timestep whose noise level is assumed.

use super::schedule::{karras_sigmas, vp_add_noise, Family, Model};
use super::{NoiseSource, Scheduler, SchedulerConfig, SchedulerError};

pub(super) struct Ddim {
    model: Model,
    /// Integer timesteps, one per step.
    timesteps: Vec<f64>,
    /// `alphas_cumprod` of each step's timestep and of the one it steps to.
    alpha: Vec<f64>,
    alpha_prev: Vec<f64>,
    x0: Vec<f32>,
    eps: Vec<f32>,
    has_x0: bool,
}

impl Ddim {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Ddim)?;
        let spaced = model.spaced_timesteps(steps, true);
        let (timesteps, alpha_prev) = if karras {
            let sigmas = model.sigmas_at(&spaced);
            let timesteps: Vec<f64> = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps)
                .into_iter()
                .map(|s| model.sigma_to_t(s).round_ties_even())
                .collect();
            let alpha_prev = (0..steps)
                .map(|i| match timesteps.get(i + 1) {
                    Some(&t) => model.alpha_cumprod_at(t as i64),
                    None => model.final_alpha_cumprod,
                })
                .collect();
            (timesteps, alpha_prev)
        } else {
            let ratio = (model.num_train_timesteps / steps) as i64;
            let alpha_prev = spaced
                .iter()
                .map(|&t| model.alpha_cumprod_at(t as i64 - ratio))
                .collect();
            (spaced, alpha_prev)
        };
        let alpha = timesteps
            .iter()
            .map(|&t| model.alpha_cumprod_at(t as i64))
            .collect();
        Ok(Ddim {
            model,
            timesteps,
            alpha,
            alpha_prev,
            x0: Vec::new(),
            eps: Vec::new(),
            has_x0: false,
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn steps(&self) -> usize {
        self.timesteps.len()
    }

    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}

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
        let (Some(&a), Some(&a_prev)) = (self.alpha.get(index), self.alpha_prev.get(index)) else {
            return;
        };
        self.model.vp_denoised(
            a.sqrt(),
            (1.0 - a).sqrt(),
            sample,
            model_output,
            &mut self.x0,
            Some(&mut self.eps),
        );
        self.model.clip(&mut self.x0);
        let (c_x0, c_eps) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        for ((x, &x0), &eps) in sample.iter_mut().zip(&self.x0).zip(&self.eps) {
            *x = (c_x0 * x0 as f64 + c_eps * eps as f64) as f32;
        }
        self.has_x0 = true;
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let a = self.alpha.get(index).copied().unwrap_or(1.0);
        vp_add_noise(original, noise, a)
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
        let entries = table_entries("ddim");
        assert!(entries.len() >= 15);
        for entry in entries {
            let s = Ddim::new(&config(&entry.config), entry.karras, entry.steps).unwrap();
            assert_table(&entry, "timesteps", &s.timesteps);
        }
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Ddim);
    }

    #[test]
    fn karras_steps_to_the_next_listed_timestep() {
        let config = config("sd15");
        let s = Ddim::new(&config, true, 6).unwrap();
        assert!(s.timesteps.windows(2).all(|w| w[0] > w[1]));
        let model = &s.model;
        for i in 0..5 {
            assert_eq!(
                s.alpha_prev[i],
                model.alpha_cumprod_at(s.timesteps[i + 1] as i64)
            );
        }
        assert_eq!(s.alpha_prev[5], model.final_alpha_cumprod);
    }
}
