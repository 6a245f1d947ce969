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

use super::sampler::Sampler;
use super::schedule::{Family, Model, VpSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Ddim {
    /// Integer timesteps, one per step, and the `alphas_cumprod` of each.
    schedule: VpSteps,
    /// `alphas_cumprod` of the timestep each step goes to.
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
            let timesteps =
                model.rounded_karras_timesteps(sigmas[sigmas.len() - 1], sigmas[0], steps);
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
        let alphas_cumprod = timesteps
            .iter()
            .map(|&t| model.alpha_cumprod_at(t as i64))
            .collect();
        Ok(Ddim {
            schedule: VpSteps {
                model,
                timesteps,
                alphas_cumprod,
                alpha_past_end: 1.0,
            },
            alpha_prev,
            x0: Vec::new(),
            eps: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Ddim {
    type Timeline = VpSteps;

    fn timeline(&self) -> &VpSteps {
        &self.schedule
    }

    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
    ) {
        let (a, a_prev) = (self.schedule.alphas_cumprod[index], self.alpha_prev[index]);
        let model = &self.schedule.model;
        model.vp_denoised(
            a.sqrt(),
            (1.0 - a).sqrt(),
            sample,
            model_output,
            &mut self.x0,
            Some(&mut self.eps),
        );
        model.clip(&mut self.x0);
        let (c_x0, c_eps) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        for ((x, &x0), &eps) in sample.iter_mut().zip(&self.x0).zip(&self.eps) {
            *x = (c_x0 * x0 as f64 + c_eps * eps as f64) as f32;
        }
        self.has_x0 = true;
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
    fn tables_match_diffusers() {
        check_tables("ddim", 15, Ddim::new, |entry, s| {
            assert_table(entry, "timesteps", &s.schedule.timesteps)
        });
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Ddim);
    }

    #[test]
    fn karras_steps_to_the_next_listed_timestep() {
        let config = config("sd15");
        let s = Ddim::new(&config, true, 6).unwrap();
        let (model, timesteps) = (&s.schedule.model, &s.schedule.timesteps);
        assert!(timesteps.windows(2).all(|w| w[0] > w[1]));
        for i in 0..5 {
            assert_eq!(
                s.alpha_prev[i],
                model.alpha_cumprod_at(timesteps[i + 1] as i64)
            );
        }
        assert_eq!(s.alpha_prev[5], model.final_alpha_cumprod);
    }
}
