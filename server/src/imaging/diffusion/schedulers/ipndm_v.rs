//! "ipndm_v": stable-diffusion.cpp's `IPNDM_V` sampler (`denoiser.hpp`, `sample_k_diffusion`),
//! the variable-step iPNDM of https://github.com/zju-pi/diff-sampler (diff-solvers-main), in
//! sigma space on k-diffusion's discrete or Karras sigmas. With `d_i = (x - D_i) / sigma_i`,
//! `h_n = sigma_{i+1} - sigma_i` and `h_{n-1} = sigma_i - sigma_{i-1}`, by order
//! `min(i + 1, 4)`:
//!
//! - `x + h_n d_i`
//! - `x + h_n ((2 + h_n / h_{n-1}) d_i - (h_n / h_{n-1}) d_{i-1}) / 2` (variable step)
//! - orders 3 and 4 use the fixed-step Adams-Bashforth weights, exactly as stable-diffusion.cpp
//!   does (it computes `h_{n-2}`, `h_{n-3}` but does not use them; the diff-solvers original
//!   has variable-step weights there too).

use std::collections::VecDeque;

use super::ipndm::adams_bashforth;
use super::schedule::{at, scale_by_sigma, ve_add_noise, Family, Model};
use super::{NoiseSource, Scheduler, SchedulerConfig, SchedulerError};

const MAX_ORDER: usize = 4;

pub(super) struct IpndmV {
    model: Model,
    /// One sigma per step plus the final 0.
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    /// Previous derivatives, newest first (f64: with a large sigma_max, f32 derivatives lose
    /// the digits the first step's cancellation needs).
    history: VecDeque<Vec<f64>>,
    x0: Vec<f32>,
    has_x0: bool,
}

impl IpndmV {
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
        Ok(IpndmV {
            model,
            sigmas,
            timesteps,
            history: VecDeque::with_capacity(MAX_ORDER),
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Scheduler for IpndmV {
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
        let d_cur: Vec<f64> = sample
            .iter()
            .zip(&self.x0)
            .map(|(&x, &d)| (x as f64 - d as f64) / sigma)
            .collect();
        self.history.retain(|d| d.len() == d_cur.len());
        if index == 0 {
            self.history.clear();
        }
        let order = (self.history.len() + 1).min(MAX_ORDER);
        let h_n = sigma_next - sigma;
        let (weights, divisor): (Vec<f64>, f64) = if order == 2 {
            let h_n_1 = index
                .checked_sub(1)
                .map_or(h_n, |previous| sigma - self.sigmas[previous]);
            let ratio = h_n / h_n_1;
            (vec![2.0 + ratio, -ratio], 2.0)
        } else {
            let (weights, divisor) = adams_bashforth(order);
            (weights.to_vec(), divisor)
        };
        for (j, x) in sample.iter_mut().enumerate().take(d_cur.len()) {
            let mut combo = weights[0] * d_cur[j];
            for (w, d) in weights[1..].iter().zip(&self.history) {
                combo += w * d[j];
            }
            *x = (*x as f64 + h_n * combo / divisor) as f32;
        }
        self.history.push_front(d_cur);
        self.history.truncate(MAX_ORDER - 1);
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
    use super::super::testing::check_trajectories;
    use super::super::SamplerKind;

    /// Against the fixture script's transcription of stable-diffusion.cpp's loop.
    #[test]
    fn trajectories_match_reference() {
        check_trajectories(SamplerKind::IpndmV);
    }
}
