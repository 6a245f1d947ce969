//! The plumbing every sampler shares, written once: a sampler supplies its update rule
//! ([`Sampler`]) and the list of its evaluations ([`Timeline`]: a [`SigmaSteps`] for the
//! sigma-space samplers, a [`VpSteps`] for the variance-preserving ones), and the blanket
//! implementation below turns that into a [`Scheduler`].
//!
//! [`SigmaSteps`]: super::schedule::SigmaSteps
//! [`VpSteps`]: super::schedule::VpSteps

use super::{NoiseSource, Scheduler};

/// The evaluations of one run: what the UNet is given, and how img2img noises a sample.
/// The methods mean the same as the [`Scheduler`] methods of the same name.
pub(super) trait Timeline {
    fn timesteps(&self) -> &[f64];
    fn steps(&self) -> usize;
    fn init_noise_sigma(&self) -> f32;
    fn scale_model_input(&self, sample: &mut [f32], index: usize);
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;
}

/// What distinguishes one sampler from another.
pub(super) trait Sampler: Send {
    type Timeline: Timeline;

    fn timeline(&self) -> &Self::Timeline;

    /// [`Scheduler::step`] for an evaluation index already checked to be in range.
    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    );

    /// [`Scheduler::denoised`]: the estimate of the clean latents after the last update.
    fn estimate(&self) -> Option<&[f32]>;

    /// [`Scheduler::scale_model_input`]; only KDPM2, whose midpoint evaluations see another
    /// noise level than the one img2img starts from, departs from its timeline's.
    fn scale_input(&self, sample: &mut [f32], index: usize) {
        self.timeline().scale_model_input(sample, index);
    }
}

impl<S: Sampler> Scheduler for S {
    fn timesteps(&self) -> &[f64] {
        self.timeline().timesteps()
    }

    fn steps(&self) -> usize {
        self.timeline().steps()
    }

    fn init_noise_sigma(&self) -> f32 {
        self.timeline().init_noise_sigma()
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        self.scale_input(sample, index);
    }

    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    ) {
        let evaluations = self.timeline().timesteps().len();
        debug_assert!(index < evaluations, "evaluation index out of range");
        // An out-of-range index is a caller bug; release builds leave the sample unchanged
        // rather than panic.
        if index < evaluations {
            self.update(model_output, index, sample, noise);
        }
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        self.timeline().add_noise(original, noise, index)
    }

    fn denoised(&self) -> Option<&[f32]> {
        self.estimate()
    }
}
