//! "dpm++2mv2": stable-diffusion.cpp's `DPMPP2Mv2` sampler (`denoiser.hpp`,
//! `sample_k_diffusion`), the modified DPM++(2M) of
//! https://github.com/AUTOMATIC1111/stable-diffusion-webui/discussions/8457, in sigma space on
//! k-diffusion's discrete or Karras sigmas. With `t = -ln sigma`, `h = t_{i+1} - t_i` and the
//! model's x0 estimate `D_i`:
//!
//! - first step and the step to sigma 0: `x <- (sigma_{i+1} / sigma_i) x - (e^-h - 1) D_i`;
//! - otherwise, with `h_last = t_i - t_{i-1}`, `r = max(h, h_last) / min(h, h_last)` and
//!   `h_d = (h + h_last) / 2`:
//!   `x <- (sigma_{i+1} / sigma_i) x - (e^-h_d - 1) ((1 + 1/(2r)) D_i - 1/(2r) D_{i-1})`.

use super::schedule::{at, scale_by_sigma, ve_add_noise, Family, Model};
use super::{NoiseSource, Scheduler, SchedulerConfig, SchedulerError};

pub(super) struct Dpmpp2mV2 {
    model: Model,
    /// One sigma per step plus the final 0.
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    /// The previous step's x0 estimate and sigma.
    previous: Option<(Vec<f32>, f64)>,
    x0: Vec<f32>,
    has_x0: bool,
}

impl Dpmpp2mV2 {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Euler)?;
        let sigmas = model.kdiffusion_sigmas(steps, karras);
        let timesteps = sigmas[..steps]
            .iter()
            .map(|&s| model.sigma_to_t(s))
            .collect();
        Ok(Dpmpp2mV2 {
            model,
            sigmas,
            timesteps,
            previous: None,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Scheduler for Dpmpp2mV2 {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn steps(&self) -> usize {
        self.timesteps.len()
    }

    fn init_noise_sigma(&self) -> f32 {
        self.sigmas[0] as f32
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
        let (sigma, sigma_next) = (self.sigmas[index], self.sigmas[index + 1]);
        self.model
            .ve_denoised(sigma, sample, model_output, &mut self.x0);
        let previous = self.previous.take();
        match previous {
            _ if sigma_next == 0.0 => {
                // a = 0, e^-h - 1 = -1: the step lands on the x0 estimate.
                sample.iter_mut().zip(&self.x0).for_each(|(x, &d)| *x = d);
            }
            Some((old, sigma_prev)) if old.len() == self.x0.len() => {
                let (t, t_next) = (-sigma.ln(), -sigma_next.ln());
                let h = t_next - t;
                let h_last = t + sigma_prev.ln();
                let (h_min, h_max) = (h.min(h_last), h.max(h_last));
                let r = h_max / h_min;
                let h_d = (h_max + h_min) / 2.0;
                let a = sigma_next / sigma;
                let b = (-h_d).exp() - 1.0;
                let c = 1.0 / (2.0 * r);
                for ((x, &d), &d_old) in sample.iter_mut().zip(&self.x0).zip(&old) {
                    let d = (1.0 + c) * d as f64 - c * d_old as f64;
                    *x = (a * *x as f64 - b * d) as f32;
                }
            }
            _ => {
                let h = sigma.ln() - sigma_next.ln();
                let a = sigma_next / sigma;
                let b = (-h).exp() - 1.0;
                for (x, &d) in sample.iter_mut().zip(&self.x0) {
                    *x = (a * *x as f64 - b * d as f64) as f32;
                }
            }
        }
        self.previous = Some((self.x0.clone(), sigma));
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
    fn sigmas_match_kdiffusion() {
        for entry in table_entries("kdiffusion") {
            let s = Dpmpp2mV2::new(&config(&entry.config), entry.karras, entry.steps).unwrap();
            assert_table(&entry, "sigmas", &s.sigmas);
            assert_table(&entry, "timesteps", &s.timesteps);
        }
    }

    /// Against the fixture script's transcription of stable-diffusion.cpp's loop.
    #[test]
    fn trajectories_match_reference() {
        check_trajectories(SamplerKind::Dpmpp2mV2);
    }
}
