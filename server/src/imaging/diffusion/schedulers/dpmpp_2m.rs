//! "dpm++2m": diffusers `DPMSolverMultistepScheduler` (0.42, `scheduling_dpmsolver_multistep.py`)
//! with `algorithm_type = "dpmsolver++"`, `solver_order = 2`, `solver_type = "midpoint"`,
//! `lower_order_final = True`, `final_sigmas_type = "zero"`; Karras is `use_karras_sigmas`.
//! DPM-Solver++(2M), Lu et al. (2022) "DPM-Solver++", Algorithm 2, in the variance-preserving
//! parametrisation `x = alpha_t x0 + sigma_t eps`, `lambda = ln(alpha_t / sigma_t)`:
//!
//! - first step and last step (to sigma 0) first order:
//!   `x <- (sigma_t / sigma_s) x - alpha_t (e^-h - 1) D0` with `h = lambda_t - lambda_s`;
//! - otherwise `D = D0 + (D0 - D_prev) / (2 r)`, `r = h_prev / h`, same update with `D`.
//!
//! The UNet input is not scaled and the initial noise has unit std.

use super::sampler::Sampler;
use super::schedule::{f32_round, karras_sigmas, Family, Model, VpSteps};
use super::{NoiseSource, SchedulerConfig, SchedulerError};

pub(super) struct Dpmpp2m {
    /// Integer timesteps (Karras: sigma -> t rounded), one per step.
    schedule: VpSteps,
    /// VE sigmas, one per step plus the final 0.
    sigmas: Vec<f64>,
    /// x0 of the previous step and the `lambda` it was taken at.
    previous: Option<(Vec<f32>, f64)>,
    x0: Vec<f32>,
    has_x0: bool,
}

/// `(alpha_t, sigma_t, lambda_t)` of a VE sigma (diffusers `_sigma_to_alpha_sigma_t`).
fn vp(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_vp = sigma * alpha;
    (alpha, sigma_vp, alpha.ln() - sigma_vp.ln())
}

impl Dpmpp2m {
    pub fn new(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::DpmSolver)?;
        let (timesteps, mut sigmas) = if karras {
            // diffusers passes the whole (flipped) training table: the Karras range is the
            // model's full sigma range, not the spaced one.
            let sigmas = karras_sigmas(model.sigma_min(), model.sigma_max(), steps);
            let cosine = config.beta_schedule.as_deref() == Some("squaredcos_cap_v2");
            let timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = model.sigma_to_t(s);
                    // Rounded, except for squaredcos_cap_v2 where the int64 cast truncates.
                    if cosine {
                        t.trunc()
                    } else {
                        t.round_ties_even()
                    }
                })
                .collect();
            (timesteps, sigmas)
        } else {
            let timesteps = model.dpm_timesteps(steps);
            let sigmas = model.sigmas_at(&timesteps);
            (timesteps, sigmas)
        };
        sigmas.iter_mut().for_each(|s| *s = f32_round(*s));
        sigmas.push(0.0);
        // add_noise: alpha_t^2 = 1 / (sigma^2 + 1) of the VE sigma.
        let alphas_cumprod = sigmas.iter().map(|&s| 1.0 / (s * s + 1.0)).collect();
        Ok(Dpmpp2m {
            schedule: VpSteps {
                model,
                timesteps,
                alphas_cumprod,
                alpha_past_end: 1.0,
            },
            sigmas,
            previous: None,
            x0: Vec::new(),
            has_x0: false,
        })
    }
}

impl Sampler for Dpmpp2m {
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
        let (alpha_s, sigma_s, lambda_s) = vp(self.sigmas[index]);
        self.schedule
            .model
            .vp_denoised(alpha_s, sigma_s, sample, model_output, &mut self.x0, None);
        let sigma_next = self.sigmas[index + 1];
        if sigma_next == 0.0 {
            // Final first-order step to sigma 0 (alpha_t = 1, e^-h = 0): x = x0.
            sample.iter_mut().zip(&self.x0).for_each(|(x, &x0)| *x = x0);
        } else {
            let (alpha_t, sigma_t, lambda_t) = vp(sigma_next);
            let h = lambda_t - lambda_s;
            let ratio = sigma_t / sigma_s;
            let coeff = alpha_t * ((-h).exp() - 1.0);
            // Second order needs the previous x0 and a usable step ratio r0 = h_prev / h (a
            // repeated noise level, possible at extreme step counts, has none).
            let second_order = self.previous.as_ref().and_then(|(prev_x0, lambda_prev)| {
                let r0 = (lambda_s - lambda_prev) / h;
                (prev_x0.len() == self.x0.len() && r0.is_finite() && r0 != 0.0)
                    .then_some((prev_x0, r0))
            });
            match second_order {
                // Midpoint: D = D0 + (D0 - D1) / (2 r0).
                Some((prev_x0, r0)) => {
                    for ((x, &d0), &d1) in sample.iter_mut().zip(&self.x0).zip(prev_x0) {
                        let (d0, d1) = (d0 as f64, d1 as f64);
                        let big_d1 = (d0 - d1) / r0;
                        *x = (ratio * *x as f64 - coeff * d0 - 0.5 * coeff * big_d1) as f32;
                    }
                }
                None => {
                    for (x, &d0) in sample.iter_mut().zip(&self.x0) {
                        *x = (ratio * *x as f64 - coeff * d0 as f64) as f32;
                    }
                }
            }
        }
        self.previous = Some((self.x0.clone(), lambda_s));
        self.has_x0 = true;
    }

    fn estimate(&self) -> Option<&[f32]> {
        self.has_x0.then_some(self.x0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_table, check_tables, check_trajectories};
    use super::super::SamplerKind;
    use super::*;

    #[test]
    fn tables_match_diffusers() {
        check_tables("dpm++2m", 30, Dpmpp2m::new, |entry, s| {
            assert_table(entry, "timesteps", &s.schedule.timesteps);
            assert_table(entry, "sigmas", &s.sigmas);
        });
    }

    #[test]
    fn trajectories_match_diffusers() {
        check_trajectories(SamplerKind::Dpmpp2m);
    }
}
