//! Noise-schedule arithmetic shared by every sampler, so that no formula is written twice:
//! betas and `alphas_cumprod`, the training sigma table, the timestep spacings, Karras sigmas,
//! sigma <-> t interpolation and the conversion of a raw model output to an x0 estimate.
//!
//! References (formulas re-derived, not copied):
//! - diffusers 0.42 `schedulers/scheduling_euler_discrete.py` (`betas_for_alpha_bar`,
//!   `rescale_zero_terminal_snr`, `set_timesteps`, `_sigma_to_t`, `_convert_to_karras`) and the
//!   `set_timesteps` of `scheduling_dpmsolver_multistep.py`, `scheduling_ddim.py` and
//!   `scheduling_lcm.py`, whose timestep spacings differ in small ways reproduced below.
//! - k-diffusion `k_diffusion/external.py` (`DiscreteSchedule.t_to_sigma`, `get_sigmas`) and
//!   `k_diffusion/sampling.py` (`get_sigmas_karras`, `get_ancestral_step`).
//!
//! diffusers computes the tables in float32 (torch) and numpy float64 in places; the values
//! here follow the same precision where it is observable (betas, `alphas_cumprod` and the sigma
//! table are rounded to f32 like torch's tensors) and use f64 elsewhere.

use super::sampler::Timeline;
use super::{SchedulerConfig, SchedulerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredCosCapV2,
}

impl BetaSchedule {
    fn parse(s: &str) -> Result<Self, SchedulerError> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "squaredcos_cap_v2" => Ok(BetaSchedule::SquaredCosCapV2),
            other => Err(SchedulerError::UnknownBetaSchedule(other.to_owned())),
        }
    }
}

/// What the UNet predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prediction {
    Epsilon,
    /// "v_prediction".
    Velocity,
    Sample,
}

impl Prediction {
    fn parse(s: &str) -> Result<Self, SchedulerError> {
        match s {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::Velocity),
            "sample" => Ok(Prediction::Sample),
            other => Err(SchedulerError::UnsupportedPredictionType(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

impl Spacing {
    fn parse(s: &str) -> Result<Self, SchedulerError> {
        match s {
            "linspace" => Ok(Spacing::Linspace),
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            other => Err(SchedulerError::UnknownTimestepSpacing(other.to_owned())),
        }
    }
}

/// The diffusers class whose constructor defaults fill the keys missing from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// EulerDiscreteScheduler / EulerAncestralDiscreteScheduler; also used for the k-diffusion
    /// samplers, which have no diffusers class.
    Euler,
    /// HeunDiscreteScheduler / KDPM2DiscreteScheduler.
    Heun,
    /// DPMSolverMultistepScheduler.
    DpmSolver,
    /// DDIMScheduler.
    Ddim,
    /// LCMScheduler.
    Lcm,
}

struct ClassDefaults {
    beta_start: f64,
    beta_end: f64,
    beta_schedule: BetaSchedule,
    spacing: Spacing,
    clip_sample: bool,
    set_alpha_to_one: bool,
}

impl Family {
    fn defaults(self) -> ClassDefaults {
        let (beta_start, beta_end, beta_schedule, spacing, clip_sample) = match self {
            Family::Euler | Family::DpmSolver => {
                (0.0001, 0.02, BetaSchedule::Linear, Spacing::Linspace, false)
            }
            Family::Heun => (
                0.00085,
                0.012,
                BetaSchedule::Linear,
                Spacing::Linspace,
                false,
            ),
            Family::Ddim => (0.0001, 0.02, BetaSchedule::Linear, Spacing::Leading, true),
            Family::Lcm => (
                0.00085,
                0.012,
                BetaSchedule::ScaledLinear,
                Spacing::Leading,
                false,
            ),
        };
        ClassDefaults {
            beta_start,
            beta_end,
            beta_schedule,
            spacing,
            clip_sample,
            set_alpha_to_one: true,
        }
    }
}

/// Validation shared by `SchedulerConfig::from_json` and `build`.
pub(super) fn validate(config: &SchedulerConfig) -> Result<(), SchedulerError> {
    if let Some(schedule) = &config.beta_schedule {
        BetaSchedule::parse(schedule)?;
    }
    Prediction::parse(&config.prediction_type)?;
    if let Some(spacing) = &config.timestep_spacing {
        Spacing::parse(spacing)?;
    }
    let n = config.num_train_timesteps;
    if n < 2 {
        return Err(SchedulerError::InvalidConfig(format!(
            "num_train_timesteps must be at least 2, got {n}"
        )));
    }
    if let Some(betas) = &config.trained_betas {
        if betas.len() != n {
            return Err(SchedulerError::InvalidConfig(format!(
                "trained_betas has {} values but num_train_timesteps is {n}",
                betas.len()
            )));
        }
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(SchedulerError::InvalidConfig(
                "trained_betas must lie in [0, 1)".to_owned(),
            ));
        }
    }
    for (key, value) in [
        ("beta_start", config.beta_start),
        ("beta_end", config.beta_end),
    ] {
        if let Some(v) = value {
            if !(0.0..1.0).contains(&v) {
                return Err(SchedulerError::InvalidConfig(format!(
                    "{key} must lie in [0, 1), got {v}"
                )));
            }
        }
    }
    if config.original_inference_steps == 0 || config.original_inference_steps > n {
        return Err(SchedulerError::InvalidConfig(format!(
            "original_inference_steps must be 1..={n}, got {}",
            config.original_inference_steps
        )));
    }
    if config.clip_sample_range.is_nan()
        || config.clip_sample_range <= 0.0
        || !config.timestep_scaling.is_finite()
    {
        return Err(SchedulerError::InvalidConfig(
            "clip_sample_range must be positive and timestep_scaling finite".to_owned(),
        ));
    }
    if config.thresholding {
        return Err(SchedulerError::Unsupported(
            "thresholding (dynamic thresholding for pixel-space models) is not supported"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A config resolved against one diffusers class, with its training noise schedule.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub num_train_timesteps: usize,
    pub prediction: Prediction,
    pub spacing: Spacing,
    pub steps_offset: usize,
    /// `Some(range)` when x0 estimates are clamped to `[-range, range]` (`clip_sample`).
    pub clip_sample: Option<f64>,
    /// DDIM/LCM `final_alpha_cumprod`: 1 with `set_alpha_to_one`, else `alphas_cumprod[0]`.
    pub final_alpha_cumprod: f64,
    pub original_inference_steps: usize,
    pub timestep_scaling: f64,
    /// Cumulative product of `1 - beta`, indexed by training timestep (values are f32's).
    pub alphas_cumprod: Vec<f64>,
    /// `sqrt((1 - alphas_cumprod) / alphas_cumprod)`, ascending with t (values are f32's).
    pub sigmas: Vec<f64>,
    /// `ln(sigmas)`, in f32 like diffusers' and k-diffusion's.
    pub log_sigmas: Vec<f64>,
}

impl Model {
    /// Resolves `config` with the defaults of `family`.
    ///
    /// With `rescale_betas_zero_snr`, the last `alphas_cumprod` is 0; sigma-space samplers need
    /// a finite last sigma, so for every family but DDIM and LCM it is set to 2^-24 as diffusers'
    /// Euler/DPM-Solver do (diffusers' Heun/KDPM2 ignore `rescale_betas_zero_snr` altogether;
    /// here they honour it like Euler).
    pub fn new(config: &SchedulerConfig, family: Family) -> Result<Self, SchedulerError> {
        validate(config)?;
        let defaults = family.defaults();
        let n = config.num_train_timesteps;
        let schedule = match &config.beta_schedule {
            Some(s) => BetaSchedule::parse(s)?,
            None => defaults.beta_schedule,
        };
        let spacing = match &config.timestep_spacing {
            Some(s) => Spacing::parse(s)?,
            None => defaults.spacing,
        };
        let mut betas: Vec<f32> = match &config.trained_betas {
            Some(trained) => trained.iter().map(|&b| b as f32).collect(),
            None => {
                let start = config.beta_start.unwrap_or(defaults.beta_start);
                let end = config.beta_end.unwrap_or(defaults.beta_end);
                match schedule {
                    BetaSchedule::Linear => torch_linspace_f32(start, end, n),
                    BetaSchedule::ScaledLinear => torch_linspace_f32(start.sqrt(), end.sqrt(), n)
                        .into_iter()
                        .map(|b| b * b)
                        .collect(),
                    BetaSchedule::SquaredCosCapV2 => betas_for_alpha_bar_cosine(n),
                }
            }
        };
        if config.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let mut alphas_cumprod = cumprod_alphas(&betas);
        if config.rescale_betas_zero_snr && !matches!(family, Family::Ddim | Family::Lcm) {
            if let Some(last) = alphas_cumprod.last_mut() {
                *last = 2f32.powi(-24);
            }
        }
        let sigmas: Vec<f64> = alphas_cumprod
            .iter()
            .map(|&a| (((1.0 - a) / a).sqrt()) as f64)
            .collect();
        // np.log / torch.log of the float32 table: float32 logs (observable where diffusers
        // truncates sigma_to_t of the table's own end points).
        let log_sigmas = sigmas.iter().map(|&s| (s as f32).ln() as f64).collect();
        let alphas_cumprod: Vec<f64> = alphas_cumprod.into_iter().map(f64::from).collect();
        let set_alpha_to_one = config.set_alpha_to_one.unwrap_or(defaults.set_alpha_to_one);
        let final_alpha_cumprod = if set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let clip = config.clip_sample.unwrap_or(defaults.clip_sample);
        Ok(Model {
            num_train_timesteps: n,
            prediction: Prediction::parse(&config.prediction_type)?,
            spacing,
            steps_offset: config.steps_offset,
            clip_sample: clip.then_some(config.clip_sample_range),
            final_alpha_cumprod,
            original_inference_steps: config.original_inference_steps,
            timestep_scaling: config.timestep_scaling,
            alphas_cumprod,
            sigmas,
            log_sigmas,
        })
    }

    /// `alphas_cumprod[t]`, with t clamped to the table (leading spacing plus `steps_offset`
    /// can name t = num_train_timesteps) and negative t meaning `final_alpha_cumprod`.
    pub fn alpha_cumprod_at(&self, t: i64) -> f64 {
        if t < 0 {
            self.final_alpha_cumprod
        } else {
            let i = (t as usize).min(self.alphas_cumprod.len() - 1);
            self.alphas_cumprod[i]
        }
    }

    /// Sigma at (possibly fractional) timestep `t` by linear interpolation of the sigma table,
    /// as diffusers' `np.interp(timesteps, arange(len(sigmas)), sigmas)` (clamped at the ends).
    pub fn interp_sigma(&self, t: f64) -> f64 {
        let last = self.sigmas.len() - 1;
        if t <= 0.0 {
            return self.sigmas[0];
        }
        if t >= last as f64 {
            return self.sigmas[last];
        }
        let j = t.floor() as usize;
        let frac = t - j as f64;
        if frac == 0.0 {
            return self.sigmas[j];
        }
        let slope = self.sigmas[j + 1] - self.sigmas[j];
        slope * frac + self.sigmas[j]
    }

    /// Fractional timestep of `sigma` (diffusers `_sigma_to_t`, k-diffusion `sigma_to_t`):
    /// linear interpolation in log-sigma between the two neighbouring table entries.
    pub fn sigma_to_t(&self, sigma: f64) -> f64 {
        let log_sigma = sigma.max(1e-10).ln();
        let len = self.log_sigmas.len();
        // Index of the last table entry with log_sigma >= it (0 when there is none), at most
        // len - 2 so that `high` exists.
        let count = self
            .log_sigmas
            .iter()
            .filter(|&&l| log_sigma - l >= 0.0)
            .count();
        let low_idx = count.saturating_sub(1).min(len - 2);
        let high_idx = low_idx + 1;
        let low = self.log_sigmas[low_idx];
        let high = self.log_sigmas[high_idx];
        let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
        (1.0 - w) * low_idx as f64 + w * high_idx as f64
    }

    /// `sigma_to_t` of each sigma: the fractional timesteps k-diffusion's `CompVisDenoiser`
    /// feeds the UNet.
    pub fn timesteps_of(&self, sigmas: &[f64]) -> Vec<f64> {
        sigmas.iter().map(|&s| self.sigma_to_t(s)).collect()
    }

    /// The integer timesteps nearest (`round(sigma_to_t)`) to `steps` Karras sigmas from
    /// `sigma_max` down to `sigma_min`: how the VP samplers that have no Karras option in
    /// diffusers (DDIM, LCM) take a Karras schedule.
    pub fn rounded_karras_timesteps(
        &self,
        sigma_min: f64,
        sigma_max: f64,
        steps: usize,
    ) -> Vec<f64> {
        karras_sigmas(sigma_min, sigma_max, steps)
            .into_iter()
            .map(|s| self.sigma_to_t(s).round_ties_even())
            .collect()
    }

    /// Sigma at fractional timestep `t` by interpolating log-sigma (k-diffusion `t_to_sigma`).
    pub fn t_to_sigma(&self, t: f64) -> f64 {
        let last = (self.log_sigmas.len() - 1) as f64;
        let t = t.clamp(0.0, last);
        let low = t.floor();
        let high = t.ceil();
        let w = t - low;
        let log_sigma =
            (1.0 - w) * self.log_sigmas[low as usize] + w * self.log_sigmas[high as usize];
        log_sigma.exp()
    }

    pub fn sigma_min(&self) -> f64 {
        self.sigmas[0]
    }

    pub fn sigma_max(&self) -> f64 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// Timesteps of the Euler/EulerAncestral/Heun/KDPM2 `set_timesteps` (float32 values,
    /// descending): "linspace" is not rounded; "leading" adds `steps_offset`; "trailing" counts
    /// down from `num_train_timesteps` and subtracts 1. DDIM is the same with "linspace"
    /// rounded (`round_linspace`).
    pub fn spaced_timesteps(&self, steps: usize, round_linspace: bool) -> Vec<f64> {
        let n_train = self.num_train_timesteps;
        match self.spacing {
            Spacing::Linspace => {
                let mut ts = np_linspace(0.0, (n_train - 1) as f64, steps);
                if round_linspace {
                    ts.iter_mut().for_each(|t| *t = t.round_ties_even());
                }
                ts.reverse();
                ts.into_iter().map(f32_round).collect()
            }
            Spacing::Leading => {
                let ratio = n_train / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => trailing(n_train, n_train as f64 / steps as f64, steps),
        }
    }

    /// Integer timesteps of DPMSolverMultistepScheduler.set_timesteps: `steps + 1` points with
    /// the last dropped for "linspace" and "leading" (`lambda_min_clipped` = -inf).
    pub fn dpm_timesteps(&self, steps: usize) -> Vec<f64> {
        let n_train = self.num_train_timesteps;
        match self.spacing {
            Spacing::Linspace => {
                let mut ts: Vec<f64> = np_linspace(0.0, (n_train - 1) as f64, steps + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .collect();
                ts.reverse();
                ts.truncate(steps);
                ts
            }
            Spacing::Leading => {
                let ratio = n_train / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => trailing(n_train, n_train as f64 / steps as f64, steps),
        }
    }

    /// LCMScheduler.set_timesteps (strength 1): `steps` timesteps evenly picked (by index) from
    /// the `original_inference_steps` distillation schedule `k, 2k, ..., n_train` minus 1.
    /// The caller checks `steps <= original_inference_steps`.
    pub fn lcm_timesteps(&self, steps: usize) -> Vec<f64> {
        let original = self.original_inference_steps;
        let k = self.num_train_timesteps / original;
        // Descending: origin[j] = (original - j) * k - 1.
        let step = original as f64 / steps as f64;
        (0..steps)
            .map(|i| {
                let j = (i as f64 * step).floor() as usize;
                ((original - j) * k) as f64 - 1.0
            })
            .collect()
    }

    /// Timesteps and sigmas (without the final zero) of diffusers' Euler, EulerAncestral, Heun
    /// and KDPM2 `set_timesteps`: the spaced timesteps and their interpolated sigmas, or with
    /// `karras` (`use_karras_sigmas`) Karras sigmas spanning those sigmas' range and their
    /// fractional timesteps, rounded when `round_karras_t` (KDPM2 rounds, the others do not).
    /// Both are float32 values, as diffusers stores them.
    pub fn diffusers_k_tables(
        &self,
        steps: usize,
        karras: bool,
        round_karras_t: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let timesteps = self.spaced_timesteps(steps, false);
        let sigmas = self.sigmas_at(&timesteps);
        if !karras {
            return (timesteps, sigmas.into_iter().map(f32_round).collect());
        }
        let sigma_max = sigmas[0];
        let sigma_min = sigmas[sigmas.len() - 1];
        let sigmas: Vec<f64> = karras_sigmas(sigma_min, sigma_max, steps);
        let timesteps = sigmas
            .iter()
            .map(|&s| {
                let t = self.sigma_to_t(s);
                f32_round(if round_karras_t {
                    t.round_ties_even()
                } else {
                    t
                })
            })
            .collect();
        (timesteps, sigmas.into_iter().map(f32_round).collect())
    }

    /// `init_noise_sigma` of diffusers' sigma-space schedulers: the largest sigma, or
    /// `sqrt(max^2 + 1)` with "leading" spacing.
    pub fn diffusers_init_noise_sigma(&self, max_sigma: f64) -> f32 {
        match self.spacing {
            Spacing::Linspace | Spacing::Trailing => max_sigma as f32,
            Spacing::Leading => (max_sigma * max_sigma + 1.0).sqrt() as f32,
        }
    }

    /// Sigmas of the given (fractional) timesteps, `np.interp` on the table.
    pub fn sigmas_at(&self, timesteps: &[f64]) -> Vec<f64> {
        timesteps.iter().map(|&t| self.interp_sigma(t)).collect()
    }

    /// The sigmas of the k-diffusion / stable-diffusion.cpp samplers, with the final 0:
    /// discrete is k-diffusion's `DiscreteSchedule.get_sigmas(n)` (`n` timesteps evenly spaced
    /// from the last training timestep down to 0, converted with `t_to_sigma`; the config's
    /// `timestep_spacing` does not apply), Karras is `get_sigmas_karras(n, sigma_min,
    /// sigma_max)` over the model's whole sigma range. Values rounded to f32 like torch's.
    pub fn kdiffusion_sigmas(&self, steps: usize, karras: bool) -> Vec<f64> {
        let mut sigmas = if karras {
            karras_sigmas(self.sigma_min(), self.sigma_max(), steps)
        } else {
            let t_max = (self.num_train_timesteps - 1) as f64;
            np_linspace(t_max, 0.0, steps)
                .into_iter()
                .map(|t| self.t_to_sigma(t))
                .collect()
        };
        sigmas.iter_mut().for_each(|s| *s = f32_round(*s));
        sigmas.push(0.0);
        sigmas
    }

    /// x0 estimate for a sample `x = x0 + sigma * noise` (k-diffusion / diffusers Euler
    /// convention, the UNet input being `x / sqrt(sigma^2 + 1)`), written into `out`.
    /// Formulas of EulerDiscreteScheduler.step / k-diffusion's CompVis(V)Denoiser.
    pub fn ve_denoised(
        &self,
        sigma: f64,
        sample: &[f32],
        model_output: &[f32],
        out: &mut Vec<f32>,
    ) {
        out.clear();
        let pairs = sample.iter().zip(model_output);
        match self.prediction {
            Prediction::Epsilon => {
                out.extend(pairs.map(|(&x, &m)| (x as f64 - sigma * m as f64) as f32))
            }
            Prediction::Velocity => {
                let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
                let c_skip = 1.0 / (sigma * sigma + 1.0);
                out.extend(pairs.map(|(&x, &m)| (m as f64 * c_out + x as f64 * c_skip) as f32))
            }
            Prediction::Sample => out.extend(pairs.map(|(_, &m)| m)),
        }
    }

    /// x0 and epsilon estimates for a variance-preserving sample
    /// `x = alpha_t * x0 + sigma_t * eps` (DDIM/LCM with `alpha_t = sqrt(alphas_cumprod[t])`,
    /// DPM-Solver with `alpha_t = 1 / sqrt(sigma^2 + 1)`). The epsilon is computed before the
    /// `clip_sample` clamp of x0 (applied by the caller with [`Model::clip`]), as in
    /// DDIMScheduler.step. `eps` may be `None` when unused.
    pub fn vp_denoised(
        &self,
        alpha_t: f64,
        sigma_t: f64,
        sample: &[f32],
        model_output: &[f32],
        x0: &mut Vec<f32>,
        mut eps: Option<&mut Vec<f32>>,
    ) {
        x0.clear();
        if let Some(eps) = eps.as_deref_mut() {
            eps.clear();
        }
        for (&x, &m) in sample.iter().zip(model_output) {
            let (x, m) = (x as f64, m as f64);
            let (x0_v, eps_v) = match self.prediction {
                Prediction::Epsilon => ((x - sigma_t * m) / alpha_t, m),
                Prediction::Velocity => (alpha_t * x - sigma_t * m, alpha_t * m + sigma_t * x),
                Prediction::Sample => (m, (x - alpha_t * m) / sigma_t),
            };
            x0.push(x0_v as f32);
            if let Some(eps) = eps.as_deref_mut() {
                eps.push(eps_v as f32);
            }
        }
    }

    /// The `clip_sample` clamp of an x0 estimate (diffusers' Heun, DDIM and LCM apply it; the
    /// other samplers never clip).
    pub fn clip(&self, x0: &mut [f32]) {
        if let Some(range) = self.clip_sample {
            let range = range as f32;
            x0.iter_mut().for_each(|v| *v = v.clamp(-range, range));
        }
    }
}

/// The evaluations of a sigma-space sampler (`x = x0 + sigma * noise`): the UNet is given
/// `x / sqrt(sigma^2 + 1)` and `timesteps[i]`, img2img noises to `original + sigma * noise`.
#[derive(Debug, Clone)]
pub(super) struct SigmaSteps {
    pub model: Model,
    /// User-facing inference steps (second-order samplers list more evaluations).
    pub steps: usize,
    /// The UNet timestep of each evaluation.
    pub timesteps: Vec<f64>,
    /// The noise level of the sample given to each evaluation, followed by the final 0 where
    /// the sampler lists it; 0 past the end.
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f32,
}

impl SigmaSteps {
    /// The k-diffusion / stable-diffusion.cpp samplers with one evaluation per step: the
    /// sigmas of [`Model::kdiffusion_sigmas`] (with the final 0), the timesteps
    /// `sigma_to_t(sigma)`, the initial noise scaled by the first sigma.
    pub fn kdiffusion(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Euler)?;
        let sigmas = model.kdiffusion_sigmas(steps, karras);
        Ok(SigmaSteps {
            timesteps: model.timesteps_of(&sigmas[..steps]),
            init_noise_sigma: sigmas[0] as f32,
            model,
            steps,
            sigmas,
        })
    }

    /// diffusers' EulerDiscreteScheduler / EulerAncestralDiscreteScheduler `set_timesteps`:
    /// one evaluation per step on [`Model::diffusers_k_tables`], then sigma 0.
    pub fn euler(
        config: &SchedulerConfig,
        karras: bool,
        steps: usize,
    ) -> Result<Self, SchedulerError> {
        let model = Model::new(config, Family::Euler)?;
        let (timesteps, mut sigmas) = model.diffusers_k_tables(steps, karras, false);
        sigmas.push(0.0);
        Ok(Self::diffusers(model, steps, timesteps, sigmas))
    }

    /// A diffusers sigma-space scheduler's tables, with its `init_noise_sigma` (from the
    /// largest sigma, see [`Model::diffusers_init_noise_sigma`]).
    pub fn diffusers(model: Model, steps: usize, timesteps: Vec<f64>, sigmas: Vec<f64>) -> Self {
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        SigmaSteps {
            init_noise_sigma: model.diffusers_init_noise_sigma(max_sigma),
            model,
            steps,
            timesteps,
            sigmas,
        }
    }

    /// `sigmas[index]`, 0 past the end (see [`at`]).
    pub fn sigma(&self, index: usize) -> f64 {
        at(&self.sigmas, index)
    }
}

impl Timeline for SigmaSteps {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        scale_by_sigma(sample, self.sigma(index));
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        ve_add_noise(original, noise, self.sigma(index))
    }
}

/// The evaluations of a variance-preserving sampler (`x = sqrt(a) x0 + sqrt(1 - a) noise`,
/// DDIM / LCM / DPM-Solver++): one per step, the UNet input unscaled, the initial latents unit
/// noise, img2img noised with the `alphas_cumprod` of the evaluation (diffusers' `add_noise`).
#[derive(Debug, Clone)]
pub(super) struct VpSteps {
    pub model: Model,
    /// The UNet timestep of each step.
    pub timesteps: Vec<f64>,
    /// `a` of the sample given to each step (possibly followed by the final level).
    pub alphas_cumprod: Vec<f64>,
    /// The level `add_noise` uses past the end (an out-of-range index is a caller bug; each
    /// sampler keeps the value its port always had there).
    pub alpha_past_end: f64,
}

impl Timeline for VpSteps {
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

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let a = self
            .alphas_cumprod
            .get(index)
            .copied()
            .unwrap_or(self.alpha_past_end);
        vp_add_noise(original, noise, a)
    }
}

/// `[v0, v1, v1, v2, v2, ...]`: torch's `cat([v[:1], v[1:].repeat_interleave(2)])`, how
/// diffusers' Heun and KDPM2 list the two evaluations of each step after the first.
pub(super) fn repeat_interleave_tail(values: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * values.len());
    out.extend(values.first());
    for &v in values.iter().skip(1) {
        out.extend([v, v]);
    }
    out
}

/// The Euler update `x <- x + d * dt` with the derivative `d = (x - x0) / sigma` (Karras et
/// al. 2022, Algorithm 1 / k-diffusion `to_d`), in place.
pub(super) fn euler_step(sample: &mut [f32], x0: &[f32], sigma: f64, dt: f64) {
    for (x, &x0) in sample.iter_mut().zip(x0) {
        let derivative = (*x as f64 - x0 as f64) / sigma;
        *x = (*x as f64 + derivative * dt) as f32;
    }
}

/// Karras et al. (2022) eq. 5 with rho = 7: `steps` sigmas from `sigma_max` down to
/// `sigma_min` (diffusers `_convert_to_karras`, k-diffusion `get_sigmas_karras` without the
/// appended zero). One step gives `[sigma_max]`.
pub(super) fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let min_inv_rho = sigma_min.powf(1.0 / RHO);
    let max_inv_rho = sigma_max.powf(1.0 / RHO);
    np_linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(RHO))
        .collect()
}

/// k-diffusion `get_ancestral_step` with eta = 1: the deterministic target `sigma_down` and the
/// std `sigma_up` of the fresh noise for a step from `sigma_from` to `sigma_to`
/// (`sigma_down^2 + sigma_up^2 = sigma_to^2`). diffusers' EulerAncestral uses the same formula.
pub(super) fn ancestral_step(sigma_from: f64, sigma_to: f64) -> (f64, f64) {
    let up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
        / (sigma_from * sigma_from))
        .max(0.0)
        .sqrt()
        .min(sigma_to);
    let down = (sigma_to * sigma_to - up * up).max(0.0).sqrt();
    (down, up)
}

/// Rounds through f32, as values stored in float32 tensors / arrays are.
pub(super) fn f32_round(v: f64) -> f64 {
    v as f32 as f64
}

/// `sample / sqrt(sigma^2 + 1)` in place: the UNet input scaling of sigma-space samplers.
pub(super) fn scale_by_sigma(sample: &mut [f32], sigma: f64) {
    let scale = 1.0 / (sigma * sigma + 1.0).sqrt();
    sample
        .iter_mut()
        .for_each(|v| *v = (*v as f64 * scale) as f32);
}

/// `original + noise * sigma` (sigma-space add_noise).
pub(super) fn ve_add_noise(original: &[f32], noise: &[f32], sigma: f64) -> Vec<f32> {
    original
        .iter()
        .zip(noise)
        .map(|(&x, &n)| (x as f64 + n as f64 * sigma) as f32)
        .collect()
}

/// `sqrt(alpha_cumprod) * original + sqrt(1 - alpha_cumprod) * noise` (VP add_noise).
pub(super) fn vp_add_noise(original: &[f32], noise: &[f32], alpha_cumprod: f64) -> Vec<f32> {
    let a = alpha_cumprod.sqrt();
    let s = (1.0 - alpha_cumprod).sqrt();
    original
        .iter()
        .zip(noise)
        .map(|(&x, &n)| (a * x as f64 + s * n as f64) as f32)
        .collect()
}

/// Returns `sigmas[index]`, or 0 past the end (an out-of-range evaluation index is a caller
/// bug; the samplers then leave the sample unchanged rather than panic).
pub(super) fn at(values: &[f64], index: usize) -> f64 {
    values.get(index).copied().unwrap_or(0.0)
}

/// numpy `linspace(start, stop, num)` (endpoint included, last value exactly `stop`,
/// `[start]` for one point).
fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = out.last_mut() {
        *last = stop;
    }
    out
}

/// "trailing": numpy `arange(n_train, 0, -ratio).round() - 1`, numpy's arange computing
/// element i as `start + i * ((start - ratio) - start)`. (For a few step counts, e.g. 61 of
/// 1000, numpy's arange yields one extra element ending at timestep -1; here the schedule always
/// has exactly `steps` timesteps.)
fn trailing(n_train: usize, ratio: f64, steps: usize) -> Vec<f64> {
    let start = n_train as f64;
    let delta = (start - ratio) - start;
    (0..steps)
        .map(|i| (start + i as f64 * delta).round_ties_even() - 1.0)
        .collect()
}

/// torch.linspace(start, end, n, dtype=float32), CPU scalar formula: the first half counts up
/// from `start`, the second half down from `end`.
fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .collect()
}

/// diffusers `betas_for_alpha_bar` with the cosine `alpha_bar` (Nichol & Dhariwal 2021),
/// capped at 0.999.
fn betas_for_alpha_bar_cosine(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// Lin et al. (2023) "Common Diffusion Noise Schedules and Sample Steps are Flawed",
/// Algorithm 1: shift and scale sqrt(alphas_cumprod) so the last one is exactly 0.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas_cumprod = cumprod_alphas(betas);
    let mut sqrt_ab: Vec<f64> = alphas_cumprod.iter().map(|&a| (a as f64).sqrt()).collect();
    let first = sqrt_ab[0];
    let last = sqrt_ab[sqrt_ab.len() - 1];
    sqrt_ab
        .iter_mut()
        .for_each(|v| *v = (*v - last) * first / (first - last));
    let alphas_bar: Vec<f64> = sqrt_ab.iter().map(|v| v * v).collect();
    let mut out = Vec::with_capacity(betas.len());
    out.push((1.0 - alphas_bar[0]) as f32);
    for w in alphas_bar.windows(2) {
        out.push((1.0 - w[1] / w[0]) as f32);
    }
    out
}

/// torch.cumprod(1 - betas) on CPU: float32 alphas, the running product kept in double and
/// each output rounded to float32.
fn cumprod_alphas(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b) as f64;
            acc as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd15() -> Model {
        let config = SchedulerConfig {
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some("scaled_linear".into()),
            ..SchedulerConfig::default()
        };
        Model::new(&config, Family::Euler).unwrap()
    }

    #[test]
    fn sd15_sigma_table() {
        let model = sd15();
        // Well-known SD 1.x sigma range.
        assert!(
            (model.sigma_min() - 0.029167).abs() < 1e-5,
            "{}",
            model.sigma_min()
        );
        assert!(
            (model.sigma_max() - 14.614642).abs() < 1e-4,
            "{}",
            model.sigma_max()
        );
    }

    #[test]
    fn sigma_t_round_trip() {
        let model = sd15();
        for t in [0.0, 1.0, 10.5, 500.25, 998.0, 999.0] {
            let back = model.sigma_to_t(model.t_to_sigma(t));
            assert!((back - t).abs() < 1e-6, "{t} -> {back}");
        }
        assert_eq!(model.sigma_to_t(0.0), 0.0);
        assert_eq!(model.sigma_to_t(1e6), 999.0);
    }

    #[test]
    fn trailing_and_linspace_shapes() {
        let model = sd15();
        let mut m = model.clone();
        m.spacing = Spacing::Trailing;
        assert_eq!(
            m.spaced_timesteps(6, false),
            [999.0, 832.0, 666.0, 499.0, 332.0, 166.0]
        );
        assert_eq!(m.spaced_timesteps(61, false).len(), 61);
        assert_eq!(m.spaced_timesteps(61, false)[60], 15.0);
        m.spacing = Spacing::Linspace;
        assert_eq!(m.spaced_timesteps(1, false), [0.0]);
        assert_eq!(m.spaced_timesteps(2, false), [999.0, 0.0]);
        m.spacing = Spacing::Leading;
        m.steps_offset = 1;
        assert_eq!(m.spaced_timesteps(4, false), [751.0, 501.0, 251.0, 1.0]);
        assert_eq!(m.dpm_timesteps(4), [801.0, 601.0, 401.0, 201.0]);
        let one = karras_sigmas(0.1, 10.0, 1);
        assert!(one.len() == 1 && (one[0] - 10.0).abs() < 1e-12);
        let k = karras_sigmas(0.1, 10.0, 5);
        assert!((k[0] - 10.0).abs() < 1e-12 && (k[4] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn zero_snr_rescale_reaches_zero() {
        let config = SchedulerConfig {
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some("scaled_linear".into()),
            rescale_betas_zero_snr: true,
            ..SchedulerConfig::default()
        };
        let ddim = Model::new(&config, Family::Ddim).unwrap();
        assert_eq!(*ddim.alphas_cumprod.last().unwrap(), 0.0);
        let euler = Model::new(&config, Family::Euler).unwrap();
        assert_eq!(*euler.alphas_cumprod.last().unwrap(), 2f64.powi(-24));
        assert!((euler.sigma_max() - 4096.0).abs() < 1.0);
    }
}
