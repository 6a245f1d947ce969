//! "dpm2": diffusers `KDPM2DiscreteScheduler` (0.42, `scheduling_k_dpm_2_discrete.py`), i.e.
//! k-diffusion's `sample_dpm_2` (DPM-Solver-2 in Karras et al.'s sigma formulation) split
//! into one call per model evaluation. Each step but the last takes two evaluations:
//!
//! - at `sigma_i`: `d = (x - x0) / sigma_i`, `x' = x + d * (sigma_mid - sigma_i)` with the
//!   log-midpoint `sigma_mid = sqrt(sigma_i * sigma_{i+1})`;
//! - at `sigma_mid`: `d' = (x' - x0') / sigma_mid`, `x <- x + d' * (sigma_{i+1} - sigma_i)`.
//!
//! The last step (to sigma 0, whose midpoint is 0) is a single Euler evaluation. As in
//! diffusers, Karras timesteps are rounded, midpoint timesteps are not, and the "sample"
//! prediction type (unsupported by diffusers' KDPM2) uses the model output as x0.

use super::sampler::Sampler;
use super::schedule::{
    at, euler_step, f32_round, repeat_interleave_tail, scale_by_sigma, Family, Model, SigmaSteps,
};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Dpm2 {
    /// Timesteps `[t0, t_mid1, t1, t_mid2, t2, ..., t_mid(n-1), t_(n-1)]` (2n - 1 evaluations)
    /// and diffusers' `sigmas`: `[s0, s1, s1, ..., s_(n-1), s_(n-1), 0, 0, 0]` (2n + 2).
    schedule: SigmaSteps,
    /// diffusers' `sigmas_interpol`, the same layout with the midpoints
    /// `m_k = sqrt(s_k * s_(k-1))`, `m_n = 0` (the unused first entry is 0 here; NaN in torch).
    sigmas_interpol: Vec<f64>,
    /// The sample at the start of the step, between its two evaluations.
    start: Option<Vec<f32>>,
    x0: Vec<f32>,
    has_x0: bool,
}

impl Dpm2 {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Heun)?;
        let (step_timesteps, mut step_sigmas) = model.diffusers_k_tables(steps, karras, true);
        step_sigmas.push(0.0);
        let mids: Vec<f64> = (0..step_sigmas.len())
            .map(|k| match k {
                0 => 0.0,
                _ => f32_round((step_sigmas[k] * step_sigmas[k - 1]).sqrt()),
            })
            .collect();
        // torch.cat([v[:1], v[1:].repeat_interleave(2), v[-1:]]).
        let interleave = |values: &[f64]| {
            let mut out = repeat_interleave_tail(values);
            out.push(values[values.len() - 1]);
            out
        };
        let sigmas = interleave(&step_sigmas);
        let sigmas_interpol = interleave(&mids);
        let mut timesteps = vec![step_timesteps[0]];
        for (k, &t) in step_timesteps.iter().enumerate().skip(1) {
            timesteps.extend([f32_round(model.sigma_to_t(mids[k])), t]);
        }
        Ok(Dpm2 {
            schedule: SigmaSteps::diffusers(model, steps, timesteps, sigmas),
            sigmas_interpol,
            start: None,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Dpm2 {
    type Timeline = SigmaSteps;

    fn timeline(&self) -> &SigmaSteps {
        &self.schedule
    }

    /// The midpoint evaluations (odd indices) see the sample at `sigma_mid`.
    fn scale_input(&self, sample: &mut [f32], index: usize) {
        let sigma = if index % 2 == 1 {
            at(&self.sigmas_interpol, index)
        } else {
            self.schedule.sigma(index)
        };
        scale_by_sigma(sample, sigma);
    }

    fn update(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
    ) {
        let (model, sigmas) = (&self.schedule.model, &self.schedule.sigmas);
        let second = if index % 2 == 1 {
            self.start.take()
        } else {
            None
        };
        match second {
            None => {
                let sigma = sigmas[index];
                let sigma_mid = self.sigmas_interpol[index + 1];
                model.ve_denoised(sigma, sample, model_output, &mut self.x0);
                self.start = Some(sample.to_vec());
                euler_step(sample, &self.x0, sigma, sigma_mid - sigma);
            }
            Some(start) => {
                let sigma = sigmas[index - 1];
                let sigma_mid = self.sigmas_interpol[index];
                let sigma_next = sigmas[index];
                model.ve_denoised(sigma_mid, sample, model_output, &mut self.x0);
                let dt = sigma_next - sigma;
                for ((x, &x0), &s) in sample.iter_mut().zip(&self.x0).zip(&start) {
                    let derivative = (*x as f64 - x0 as f64) / sigma_mid;
                    *x = (s as f64 + derivative * dt) as f32;
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
    use super::super::testing::{
        assert_sigma_steps, assert_table, check_tables, check_trajectories,
    };
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn tables_match_diffusers() {
        check_tables("dpm2", 30, Dpm2::new, |entry, s| {
            assert_sigma_steps(entry, &s.schedule);
            // The fixture leaves out torch's NaN first entry.
            assert_table(entry, "sigmas_interpol", &s.sigmas_interpol[1..]);
        });
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Dpm2);
    }
}
