//! "ipndm": stable-diffusion.cpp's `IPNDM` sampler (`denoiser.hpp`, `sample_k_diffusion`), the
//! improved pseudo linear multistep method of Zhang & Chen (2022) "Fast Sampling of Diffusion
//! Models with Exponential Integrator" as in https://github.com/zju-pi/diff-sampler
//! (diff-solvers-main), in sigma space on k-diffusion's discrete or Karras sigmas.
//!
//! With `d_i = (x - D_i) / sigma_i` and `dt = sigma_{i+1} - sigma_i`, the step uses the
//! Adams-Bashforth coefficients of order `min(i + 1, 4)` (fixed-step coefficients whatever the
//! spacing of the sigmas):
//!
//! - `x + dt d_i`
//! - `x + dt (3 d_i - d_{i-1}) / 2`
//! - `x + dt (23 d_i - 16 d_{i-1} + 5 d_{i-2}) / 12`
//! - `x + dt (55 d_i - 59 d_{i-1} + 37 d_{i-2} - 9 d_{i-3}) / 24`

use std::collections::VecDeque;
use std::marker::PhantomData;

use super::sampler::Sampler;
use super::schedule::SigmaSteps;
use super::{NoiseSource, SchedulerConfig, SchedulerError};

/// The highest order; the history keeps `MAX_ORDER - 1` derivatives.
const MAX_ORDER: usize = 4;

/// Adams-Bashforth weights (newest derivative first) and their common divisor, by order.
fn adams_bashforth(order: usize) -> (&'static [f64], f64) {
    match order {
        1 => (&[1.0], 1.0),
        2 => (&[3.0, -1.0], 2.0),
        3 => (&[23.0, -16.0, 5.0], 12.0),
        _ => (&[55.0, -59.0, 37.0, -9.0], 24.0),
    }
}

/// How an iPNDM variant weighs the derivatives: the only difference between ipndm and
/// ipndm_v.
pub(super) trait Coefficients: Send + 'static {
    /// The weights of the `order` newest derivatives (newest first) and their common divisor,
    /// for the step from `sigmas[index]` to `sigmas[index + 1]`.
    fn weights(order: usize, sigmas: &[f64], index: usize) -> (Vec<f64>, f64);
}

/// iPNDM's rule: the fixed-step Adams-Bashforth weights listed above.
pub(super) enum FixedStep {}

impl Coefficients for FixedStep {
    fn weights(order: usize, _sigmas: &[f64], _index: usize) -> (Vec<f64>, f64) {
        let (weights, divisor) = adams_bashforth(order);
        (weights.to_vec(), divisor)
    }
}

/// "ipndm": the loop below with the fixed-step weights.
pub(super) type Ipndm = Multistep<FixedStep>;

/// The pseudo linear multistep loop of stable-diffusion.cpp's IPNDM and IPNDM_V, with the
/// weights of `C`: `x <- x + dt * sum_k w_k d_{i-k} / divisor`, `dt = sigma_{i+1} - sigma_i`.
pub(super) struct Multistep<C> {
    /// One sigma per step plus the final 0.
    schedule: SigmaSteps,
    /// Previous derivatives, newest first (f64: with a large sigma_max, f32 derivatives lose
    /// the digits the first step's cancellation needs).
    history: VecDeque<Vec<f64>>,
    x0: Vec<f32>,
    has_x0: bool,
    coefficients: PhantomData<C>,
}

impl<C: Coefficients> Multistep<C> {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        Ok(Multistep {
            schedule: SigmaSteps::kdiffusion(config, karras, steps)?,
            history: VecDeque::with_capacity(MAX_ORDER),
            x0: Vec::new(),
            has_x0: false,
            coefficients: PhantomData,
        })
    }
}

impl<C: Coefficients> Sampler for Multistep<C> {
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
        let (weights, divisor) = C::weights(order, sigmas, index);
        let dt = sigma_next - sigma;
        for (j, x) in sample.iter_mut().enumerate().take(d_cur.len()) {
            let mut combo = weights[0] * d_cur[j];
            for (w, d) in weights[1..].iter().zip(&self.history) {
                combo += w * d[j];
            }
            *x = (*x as f64 + dt * combo / divisor) as f32;
        }
        self.history.push_front(d_cur);
        self.history.truncate(MAX_ORDER - 1);
        self.has_x0 = true;
    }

    fn estimate(&self) -> Option<&[f32]> {
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
        check_trajectories(SamplerKind::Ipndm);
    }
}
