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

use super::sampler::Sampler;
use super::schedule::SigmaSteps;
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Dpmpp2mV2 {
    /// One sigma per step plus the final 0.
    schedule: SigmaSteps,
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
        Ok(Dpmpp2mV2 {
            schedule: SigmaSteps::kdiffusion(config, karras, steps)?,
            previous: None,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Dpmpp2mV2 {
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
        let sigmas = &self.schedule.sigmas;
        let (sigma, sigma_next) = (sigmas[index], sigmas[index + 1]);
        self.schedule
            .model
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
    fn sigmas_match_kdiffusion() {
        check_tables("kdiffusion", 30, Dpmpp2mV2::new, |entry, s| {
            assert_sigma_steps(entry, &s.schedule)
        });
    }

    /// Against the fixture script's transcription of stable-diffusion.cpp's loop.
    #[test]
    fn trajectories_match_reference() {
        check_trajectories(SamplerKind::Dpmpp2mV2);
    }
}
