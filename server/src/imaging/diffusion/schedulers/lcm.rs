//! "lcm": diffusers `LCMScheduler` (0.42, `scheduling_lcm.py`), the multistep consistency
//! sampling of Luo et al. (2023) "Latent Consistency Models", Algorithm 3:
//!
//! - timesteps: `steps` of the `original_inference_steps` distillation timesteps
//!   `k - 1, 2k - 1, ..., num_train_timesteps - 1` (`k = num_train_timesteps / original`),
//!   picked evenly by index from the top;
//! - each step: x0 from the model output (clamped with `clip_sample`), then the consistency
//!   boundary condition `denoised = c_out x0 + c_skip x` with `c_skip = 0.25 / (s^2 + 0.25)`,
//!   `c_out = s / sqrt(s^2 + 0.25)`, `s = t * timestep_scaling`;
//! - between steps fresh noise: `x = sqrt(a_next) denoised + sqrt(1 - a_next) noise`; the last
//!   step returns `denoised`.
//!
//! The guidance embedding (`timestep_cond`) of LCM-distilled UNets is the pipeline's business.
//! diffusers' LCM has no Karras option; here it picks the timesteps
//! `round(sigma_to_t(karras_sigma))`, the Karras sigmas spanning the sigmas of the highest and
//! lowest distillation timesteps, and steps through them exactly as above.

use super::sampler::Sampler;
use super::schedule::{vp_add_noise, Family, Model, VpSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Lcm {
    /// Integer timesteps, one per step, and the `alphas_cumprod` of each.
    schedule: VpSteps,
    x0: Vec<f32>,
    denoised: Vec<f32>,
    has_denoised: bool,
    noise: Vec<f32>,
}

impl Lcm {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Lcm)?;
        let max = model.original_inference_steps;
        if steps > max {
            return Err(SchedulerError::TooManyLcmSteps { steps, max });
        }
        let mut timesteps = model.lcm_timesteps(steps);
        if karras {
            let k = model.num_train_timesteps / max;
            let sigma_max = model.interp_sigma(timesteps[0]);
            let sigma_min = model.interp_sigma((k - 1) as f64);
            timesteps = model.rounded_karras_timesteps(sigma_min, sigma_max, steps);
        }
        let alphas_cumprod = timesteps
            .iter()
            .map(|&t| model.alpha_cumprod_at(t as i64))
            .collect();
        Ok(Lcm {
            schedule: VpSteps {
                alpha_past_end: model.alpha_cumprod_at(0),
                model,
                timesteps,
                alphas_cumprod,
            },
            x0: Vec::new(),
            denoised: Vec::new(),
            has_denoised: false,
            noise: Vec::new(),
        })
    }

    /// `(c_skip, c_out)` of the consistency boundary condition at timestep `t`
    /// (`get_scalings_for_boundary_condition_discrete`, sigma_data = 0.5).
    fn boundary_scalings(&self, t: f64) -> (f64, f64) {
        const SIGMA_DATA: f64 = 0.5;
        let scaled = t * self.schedule.model.timestep_scaling;
        let c_skip = SIGMA_DATA * SIGMA_DATA / (scaled * scaled + SIGMA_DATA * SIGMA_DATA);
        let c_out = scaled / (scaled * scaled + SIGMA_DATA * SIGMA_DATA).sqrt();
        (c_skip, c_out)
    }
}

impl Sampler for Lcm {
    type Timeline = VpSteps;

    fn timeline(&self) -> &VpSteps {
        &self.schedule
    }

    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) {
        let (t, a) = (
            self.schedule.timesteps[index],
            self.schedule.alphas_cumprod[index],
        );
        let model = &self.schedule.model;
        model.vp_denoised(
            a.sqrt(),
            (1.0 - a).sqrt(),
            sample,
            model_output,
            &mut self.x0,
            None,
        );
        model.clip(&mut self.x0);
        let (c_skip, c_out) = self.boundary_scalings(t);
        self.denoised.clear();
        self.denoised.extend(
            self.x0
                .iter()
                .zip(sample.iter())
                .map(|(&x0, &x)| (c_out * x0 as f64 + c_skip * x as f64) as f32),
        );
        self.has_denoised = true;
        match self.schedule.alphas_cumprod.get(index + 1) {
            Some(&a_next) => {
                self.noise.resize(self.denoised.len(), 0.0);
                noise.fill_standard_normal(&mut self.noise);
                let noisy = vp_add_noise(&self.denoised, &self.noise, a_next);
                sample.iter_mut().zip(noisy).for_each(|(x, v)| *x = v);
            }
            None => sample
                .iter_mut()
                .zip(&self.denoised)
                .for_each(|(x, &d)| *x = d),
        }
    }

    fn estimate(&self) -> Option<&[f32]> {
        self.has_denoised.then_some(self.denoised.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_table, check_tables, check_trajectories, config};
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn tables_match_diffusers() {
        check_tables("lcm", 15, Lcm::new, |entry, s| {
            assert_table(entry, "timesteps", &s.schedule.timesteps)
        });
    }

    /// Seeded: the noise between steps comes from `TorchRng` / `torch.Generator`.
    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Lcm);
    }

    #[test]
    fn karras_stays_within_the_distillation_range() {
        let s = Lcm::new(&config("lcm"), true, 4).unwrap();
        let timesteps = &s.schedule.timesteps;
        assert_eq!(timesteps[0], 999.0);
        assert_eq!(timesteps[3], 19.0);
        assert!(timesteps.windows(2).all(|w| w[0] > w[1]));
    }
}
