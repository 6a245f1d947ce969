//! Denoising schedules ("samplers") for the ONNX diffusion pipeline.
//!
//! Every sampler sits behind the [`Scheduler`] trait and is driven one model evaluation at a
//! time, the way diffusers drives its schedulers:
//!
//! ```text
//! latents = unit_noise * scheduler.init_noise_sigma()
//! for i in 0..scheduler.timesteps().len():
//!     scaled = latents.clone(); scheduler.scale_model_input(&mut scaled, i)
//!     model_output = unet(scaled, scheduler.timesteps()[i])      // then classifier-free guidance
//!     scheduler.step(&model_output, i, &mut latents, &mut noise)
//! ```
//!
//! The diffusers-derived samplers (euler, euler_a, heun, dpm2, dpm++2m, ddim, lcm) reproduce the
//! timesteps, sigmas and update rules of the corresponding diffusers 0.42 classes; the
//! k-diffusion / stable-diffusion.cpp samplers (dpm++2s_a, dpm++2mv2, ipndm, ipndm_v) work in
//! sigma space on k-diffusion's discrete or Karras sigmas. Each file cites its reference.
//!
//! `tests/assets/make_scheduler_fixtures.py` records diffusers' tables and short trajectories on
//! a fake model; the unit tests in this module tree compare against them.

mod sampler;
mod schedule;

mod ddim;
mod dpm2;
mod dpmpp_2m;
mod dpmpp_2m_v2;
mod dpmpp_2s_a;
mod euler;
mod euler_a;
mod heun;
mod ipndm;
mod ipndm_v;
mod lcm;

#[cfg(test)]
mod testing;

/// Parsed `scheduler/scheduler_config.json`, with diffusers' defaults for missing keys.
///
/// Unknown keys are ignored. The keys whose diffusers default differs from one scheduler class
/// to another (`beta_start`, `beta_end`, `beta_schedule`, `timestep_spacing`, `clip_sample`,
/// `set_alpha_to_one`) are kept as `Option`: `None` means the key was absent, and the sampler
/// then uses the default of the diffusers class it reproduces (as
/// `SomeScheduler.from_config(config)` does in diffusers). For example an SD 1.5 config without
/// `timestep_spacing` gives "linspace" to euler and "leading" to ddim.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// `_class_name`: the diffusers class the model was published with (informational).
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    /// "linear" | "scaled_linear" | "squaredcos_cap_v2".
    pub beta_schedule: Option<String>,
    /// Explicit betas; when present they replace `beta_start`/`beta_end`/`beta_schedule`.
    pub trained_betas: Option<Vec<f64>>,
    /// "epsilon" | "v_prediction" | "sample".
    pub prediction_type: String,
    /// "linspace" | "leading" | "trailing".
    pub timestep_spacing: Option<String>,
    pub steps_offset: usize,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    pub rescale_betas_zero_snr: bool,
    /// LCM: the length of the distillation schedule its timesteps are picked from.
    pub original_inference_steps: usize,
    /// LCM: scale of the timestep in the consistency boundary condition.
    pub timestep_scaling: f64,
    /// Dynamic thresholding (pixel-space models only); not supported, rejected by [`build`].
    pub thresholding: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: None,
            beta_end: None,
            beta_schedule: None,
            trained_betas: None,
            prediction_type: "epsilon".to_owned(),
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: None,
            clip_sample: None,
            clip_sample_range: 1.0,
            rescale_betas_zero_snr: false,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
            thresholding: false,
        }
    }
}

impl SchedulerConfig {
    /// Parses and validates a diffusers `scheduler_config.json`.
    pub fn from_json(text: &str) -> Result<Self, SchedulerError> {
        let config: SchedulerConfig = serde_json::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every key the samplers read; [`build`] calls it too, for hand-made configs.
    fn validate(&self) -> Result<(), SchedulerError> {
        schedule::validate(self)
    }
}

/// The sampling algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    Euler,
    EulerA,
    Heun,
    Dpm2,
    Dpmpp2sA,
    Dpmpp2m,
    Dpmpp2mV2,
    Ipndm,
    IpndmV,
    Lcm,
    Ddim,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 11] = [
        SamplerKind::Euler,
        SamplerKind::EulerA,
        SamplerKind::Heun,
        SamplerKind::Dpm2,
        SamplerKind::Dpmpp2sA,
        SamplerKind::Dpmpp2m,
        SamplerKind::Dpmpp2mV2,
        SamplerKind::Ipndm,
        SamplerKind::IpndmV,
        SamplerKind::Lcm,
        SamplerKind::Ddim,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Euler => "euler",
            SamplerKind::EulerA => "euler_a",
            SamplerKind::Heun => "heun",
            SamplerKind::Dpm2 => "dpm2",
            SamplerKind::Dpmpp2sA => "dpm++2s_a",
            SamplerKind::Dpmpp2m => "dpm++2m",
            SamplerKind::Dpmpp2mV2 => "dpm++2mv2",
            SamplerKind::Ipndm => "ipndm",
            SamplerKind::IpndmV => "ipndm_v",
            SamplerKind::Lcm => "lcm",
            SamplerKind::Ddim => "ddim",
        }
    }

    /// Inverse of [`SamplerKind::name`] (ASCII case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(s))
    }

    /// Whether the sampler draws fresh noise during sampling (so the result depends on the
    /// [`NoiseSource`], not only on the initial latents).
    pub fn is_ancestral(self) -> bool {
        matches!(
            self,
            SamplerKind::EulerA | SamplerKind::Dpmpp2sA | SamplerKind::Lcm
        )
    }
}

/// How the noise levels of the `steps` evaluations are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The model's own spacing: the config's `timestep_spacing` for the diffusers samplers,
    /// k-diffusion's evenly spaced discrete timesteps for the k-diffusion samplers.
    Discrete,
    /// Karras et al. (2022) sigmas, rho = 7.
    Karras,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Discrete => "discrete",
            Schedule::Karras => "karras",
        }
    }

    /// Inverse of [`Schedule::name`] (ASCII case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [Schedule::Discrete, Schedule::Karras]
            .into_iter()
            .find(|schedule| schedule.name().eq_ignore_ascii_case(s))
    }
}

/// Fresh Gaussian noise for ancestral / stochastic samplers; the pipeline's implementation gives
/// each image of a batch its own seeded generator.
pub trait NoiseSource {
    fn fill_standard_normal(&mut self, out: &mut [f32]);
}

/// One denoising schedule, used like a diffusers scheduler: for each model evaluation `i` in
/// `0..timesteps().len()`: `scale_model_input(latents, i)`;
/// `model_output = unet(latents_scaled, timesteps()[i])`; `step(model_output, i, latents, noise)`.
/// Second-order samplers (heun, dpm2, dpm++2s_a) list a timestep per model evaluation, as
/// diffusers' Heun/KDPM2 do.
pub trait Scheduler: Send {
    /// Value fed to the UNet for each evaluation (the pipeline casts to the model's dtype).
    fn timesteps(&self) -> &[f64];
    /// User-facing inference steps.
    fn steps(&self) -> usize;
    /// Initial latents = unit noise * this.
    fn init_noise_sigma(&self) -> f32;
    fn scale_model_input(&self, sample: &mut [f32], index: usize);
    /// `model_output` is the raw (already classifier-free-guided) UNet output, interpreted by
    /// config.prediction_type.
    fn step(
        &mut self,
        model_output: &[f32],
        index: usize,
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
    );
    /// img2img: noise `original` to the level of evaluation `index` (diffusers' add_noise /
    /// scale_noise). Start from an index that begins a step (even for heun/dpm2/dpm++2s_a).
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;
    /// The model's current estimate of the clean latents (x0) after the last `step`, when the
    /// sampler has one; used for previews.
    fn denoised(&self) -> Option<&[f32]> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid scheduler config JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "unknown beta_schedule \"{0}\" (expected \"linear\", \"scaled_linear\" or \"squaredcos_cap_v2\")"
    )]
    UnknownBetaSchedule(String),
    #[error(
        "unsupported prediction_type \"{0}\" (expected \"epsilon\", \"v_prediction\" or \"sample\")"
    )]
    UnsupportedPredictionType(String),
    #[error(
        "unknown timestep_spacing \"{0}\" (expected \"linspace\", \"leading\" or \"trailing\")"
    )]
    UnknownTimestepSpacing(String),
    #[error("steps must be 1..={max}, got {steps}")]
    InvalidSteps { steps: usize, max: usize },
    #[error("lcm takes at most original_inference_steps ({max}) steps, got {steps}")]
    TooManyLcmSteps { steps: usize, max: usize },
    #[error("unsupported scheduler config: {0}")]
    Unsupported(String),
    #[error("invalid scheduler config: {0}")]
    InvalidConfig(String),
}

/// Builds the scheduler for `kind` with `steps` user-facing inference steps.
pub fn build(
    kind: SamplerKind,
    schedule: Schedule,
    config: &SchedulerConfig,
    steps: usize,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    config.validate()?;
    let max = config.num_train_timesteps;
    if steps == 0 || steps > max {
        return Err(SchedulerError::InvalidSteps { steps, max });
    }
    let karras = schedule == Schedule::Karras;
    Ok(match kind {
        SamplerKind::Euler => Box::new(euler::Euler::new(config, karras, steps)?),
        SamplerKind::EulerA => Box::new(euler_a::EulerAncestral::new(config, karras, steps)?),
        SamplerKind::Heun => Box::new(heun::Heun::new(config, karras, steps)?),
        SamplerKind::Dpm2 => Box::new(dpm2::Dpm2::new(config, karras, steps)?),
        SamplerKind::Dpmpp2sA => {
            Box::new(dpmpp_2s_a::Dpmpp2sAncestral::new(config, karras, steps)?)
        }
        SamplerKind::Dpmpp2m => Box::new(dpmpp_2m::Dpmpp2m::new(config, karras, steps)?),
        SamplerKind::Dpmpp2mV2 => Box::new(dpmpp_2m_v2::Dpmpp2mV2::new(config, karras, steps)?),
        SamplerKind::Ipndm => Box::new(ipndm::Ipndm::new(config, karras, steps)?),
        SamplerKind::IpndmV => Box::new(ipndm_v::IpndmV::new(config, karras, steps)?),
        SamplerKind::Lcm => Box::new(lcm::Lcm::new(config, karras, steps)?),
        SamplerKind::Ddim => Box::new(ddim::Ddim::new(config, karras, steps)?),
    })
}

#[cfg(test)]
mod tests {
    use super::testing::{run_fake_model, FakeNoise};
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in SamplerKind::ALL {
            assert_eq!(SamplerKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(SamplerKind::parse(" Euler_A "), Some(SamplerKind::EulerA));
        assert_eq!(SamplerKind::parse("euler_ancestral"), None);
        for schedule in [Schedule::Discrete, Schedule::Karras] {
            assert_eq!(Schedule::parse(schedule.name()), Some(schedule));
        }
        assert_eq!(Schedule::parse("exponential"), None);
        let ancestral: Vec<_> = SamplerKind::ALL
            .into_iter()
            .filter(|k| k.is_ancestral())
            .map(|k| k.name())
            .collect();
        assert_eq!(ancestral, ["euler_a", "dpm++2s_a", "lcm"]);
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config = SchedulerConfig::from_json(
            r#"{"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0",
                "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
                "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#,
        )
        .unwrap();
        assert_eq!(config.class_name.as_deref(), Some("PNDMScheduler"));
        assert_eq!(config.prediction_type, "epsilon");
        assert_eq!(config.timestep_spacing, None);
        assert_eq!(config.steps_offset, 1);
        assert_eq!(config.set_alpha_to_one, Some(false));
        assert_eq!(config.original_inference_steps, 50);
        assert!(config.trained_betas.is_none());
        let empty = SchedulerConfig::from_json("{}").unwrap();
        assert_eq!(empty.num_train_timesteps, 1000);
        assert_eq!(empty.clip_sample_range, 1.0);
    }

    #[test]
    fn config_errors_are_clear() {
        let err = SchedulerConfig::from_json(r#"{"beta_schedule": "x"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown beta_schedule \"x\" (expected \"linear\", \"scaled_linear\" or \"squaredcos_cap_v2\")"
        );
        let err =
            SchedulerConfig::from_json(r#"{"prediction_type": "flow_prediction"}"#).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unsupported prediction_type \"flow_prediction\""));
        let err = SchedulerConfig::from_json(r#"{"timestep_spacing": "even"}"#).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown timestep_spacing \"even\""));
        let err = SchedulerConfig::from_json("{").unwrap_err();
        assert!(err.to_string().starts_with("invalid scheduler config JSON"));
        let err = SchedulerConfig::from_json(r#"{"trained_betas": [0.1, 0.2]}"#).unwrap_err();
        assert!(err.to_string().contains("trained_betas"), "{err}");
        let err = SchedulerConfig::from_json(r#"{"thresholding": true}"#).unwrap_err();
        assert!(err.to_string().contains("thresholding"), "{err}");

        let config = SchedulerConfig::default();
        for steps in [0, 1001] {
            let err = build(SamplerKind::Euler, Schedule::Discrete, &config, steps)
                .err()
                .unwrap();
            assert_eq!(
                err.to_string(),
                format!("steps must be 1..=1000, got {steps}")
            );
        }
        let err = build(SamplerKind::Lcm, Schedule::Discrete, &config, 51)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "lcm takes at most original_inference_steps (50) steps, got 51"
        );
        let bad = SchedulerConfig {
            beta_schedule: Some("cosine".into()),
            ..SchedulerConfig::default()
        };
        assert!(matches!(
            build(SamplerKind::Ddim, Schedule::Discrete, &bad, 4),
            Err(SchedulerError::UnknownBetaSchedule(_))
        ));
    }

    /// Every sampler and schedule runs on the fake model for 1..=8 steps without NaN, for each
    /// prediction type, and the result is finite and bounded.
    #[test]
    fn all_samplers_run_without_nan() {
        for prediction in ["epsilon", "v_prediction", "sample"] {
            for spacing in ["leading", "linspace", "trailing"] {
                let config = SchedulerConfig::from_json(&format!(
                    r#"{{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                        "steps_offset": 1, "prediction_type": "{prediction}",
                        "timestep_spacing": "{spacing}", "clip_sample": false,
                        "set_alpha_to_one": false}}"#
                ))
                .unwrap();
                for kind in SamplerKind::ALL {
                    for schedule in [Schedule::Discrete, Schedule::Karras] {
                        for steps in 1..=8 {
                            let mut scheduler = build(kind, schedule, &config, steps).unwrap();
                            assert_eq!(scheduler.steps(), steps);
                            let evals = scheduler.timesteps().len();
                            assert!(evals >= steps && evals <= 2 * steps, "{}", kind.name());
                            let latents = run_fake_model(
                                scheduler.as_mut(),
                                &testing::unit_latents(),
                                &mut FakeNoise::new(7),
                            );
                            let what = format!(
                                "{} {} {prediction} {spacing} steps={steps}",
                                kind.name(),
                                schedule.name()
                            );
                            assert!(latents.iter().all(|v| v.is_finite()), "NaN/inf: {what}");
                            assert!(latents.iter().all(|v| v.abs() < 100.0), "diverged: {what}");
                            assert!(
                                scheduler.timesteps().iter().all(|t| t.is_finite()),
                                "timesteps: {what}"
                            );
                            let denoised = scheduler.denoised().expect("every sampler has x0");
                            assert!(denoised.iter().all(|v| v.is_finite()), "x0: {what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ancestral_samplers_are_reproducible() {
        let config = SchedulerConfig::from_json(
            r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "steps_offset": 1, "timestep_spacing": "leading"}"#,
        )
        .unwrap();
        for kind in SamplerKind::ALL {
            for schedule in [Schedule::Discrete, Schedule::Karras] {
                let run = |seed: u64| {
                    let mut scheduler = build(kind, schedule, &config, 6).unwrap();
                    let mut noise = super::super::rng::TorchRng::new(seed);
                    run_fake_model(scheduler.as_mut(), &testing::unit_latents(), &mut noise)
                };
                let a = run(42);
                assert_eq!(a, run(42), "{} not reproducible", kind.name());
                let differs = a != run(43);
                assert_eq!(
                    differs,
                    kind.is_ancestral(),
                    "{} {}: noise dependence does not match is_ancestral",
                    kind.name(),
                    schedule.name()
                );
            }
        }
    }

    #[test]
    fn add_noise_matches_the_first_noise_level() {
        // Noising a zero image at index 0 gives noise * (the std of the initial latents,
        // relative to the sampler's own scaling): for sigma-space samplers sigma_0, for VP
        // samplers sqrt(1 - alpha_bar).
        let config = SchedulerConfig::from_json(
            r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "timestep_spacing": "trailing"}"#,
        )
        .unwrap();
        let original = vec![0.0f32; 8];
        let noise = vec![1.0f32; 8];
        for kind in SamplerKind::ALL {
            let scheduler = build(kind, Schedule::Discrete, &config, 10).unwrap();
            let noisy = scheduler.add_noise(&original, &noise, 0);
            assert_eq!(noisy.len(), 8);
            let level = noisy[0];
            match kind {
                SamplerKind::Lcm | SamplerKind::Ddim | SamplerKind::Dpmpp2m => {
                    assert!(level > 0.99 && level <= 1.0, "{}: {level}", kind.name())
                }
                _ => assert!(
                    (level - scheduler.init_noise_sigma()).abs() < 1e-3 * level,
                    "{}: {level} vs {}",
                    kind.name(),
                    scheduler.init_noise_sigma()
                ),
            }
        }
    }
}
