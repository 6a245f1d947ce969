//! Test support: the diffusers fixture written by `tests/assets/make_scheduler_fixtures.py`
//! and the fake model the fixture's trajectories were computed with.

use std::sync::OnceLock;

use serde_json::Value;

use super::super::rng::TorchRng;
use super::schedule::SigmaSteps;
use super::{
    build, NoiseSource, SamplerKind, Schedule, Scheduler, SchedulerConfig, SchedulerError,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/assets/fixtures/schedulers.json"
);

pub(super) fn fixture() -> &'static Value {
    static FIXTURE_JSON: OnceLock<Value> = OnceLock::new();
    FIXTURE_JSON.get_or_init(|| {
        let text = std::fs::read_to_string(FIXTURE)
            .unwrap_or_else(|e| panic!("reading {FIXTURE}: {e} (run make_scheduler_fixtures.py)"));
        serde_json::from_str(&text).expect("fixture is JSON")
    })
}

/// The fixture's named scheduler config, parsed like a model's `scheduler_config.json`.
pub(super) fn config(name: &str) -> SchedulerConfig {
    let json = &fixture()["configs"][name];
    assert!(json.is_object(), "no config {name} in the fixture");
    SchedulerConfig::from_json(&json.to_string()).expect("fixture config parses")
}

/// One recorded `set_timesteps` result.
pub(super) struct TableEntry {
    pub config: String,
    pub karras: bool,
    pub steps: usize,
    data: Value,
}

impl TableEntry {
    fn describe(&self) -> String {
        format!(
            "{} {} {} steps={}",
            self.data["sampler"].as_str().unwrap_or("?"),
            self.config,
            if self.karras { "karras" } else { "discrete" },
            self.steps
        )
    }
}

/// The fixture's tables for `sampler` ("kdiffusion" for the k-diffusion sigma tables).
pub(super) fn table_entries(sampler: &str) -> Vec<TableEntry> {
    fixture()["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter(|e| e["sampler"] == sampler)
        .map(|e| TableEntry {
            config: e["config"].as_str().expect("config").to_owned(),
            karras: e["schedule"] == "karras",
            steps: e["steps"].as_u64().expect("steps") as usize,
            data: e.clone(),
        })
        .collect()
}

fn numbers(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().map(|v| v.as_f64().expect("number")).collect(),
        Value::Number(n) => vec![n.as_f64().expect("number")],
        other => panic!("expected numbers, got {other}"),
    }
}

/// Asserts `actual` equals the entry's `key` within 1e-4 relative (1e-4 absolute below 1).
pub(super) fn assert_table(entry: &TableEntry, key: &str, actual: &[f64]) {
    let expected = numbers(&entry.data[key]);
    assert_eq!(
        actual.len(),
        expected.len(),
        "{} {key}: length {} vs diffusers {}\n ours {actual:?}\n diffusers {expected:?}",
        entry.describe(),
        actual.len(),
        expected.len()
    );
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-4 * e.abs().max(1.0),
            "{} {key}[{i}]: {a} vs diffusers {e}\n ours {actual:?}\n diffusers {expected:?}",
            entry.describe()
        );
    }
}

/// Builds a sampler with `new` for every fixture table of `sampler` (at least `min_entries`
/// of them) and hands it to `check` with the entry.
pub(super) fn check_tables<S>(
    sampler: &str,
    min_entries: usize,
    new: impl Fn(&SchedulerConfig, bool, usize) -> Result<S, SchedulerError>,
    check: impl Fn(&TableEntry, &S),
) {
    let entries = table_entries(sampler);
    assert!(
        entries.len() >= min_entries,
        "{} {sampler} tables in the fixture, expected at least {min_entries}",
        entries.len()
    );
    for entry in entries {
        let built = new(&config(&entry.config), entry.karras, entry.steps)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.describe()));
        check(&entry, &built);
    }
}

/// Asserts a sigma-space sampler's timesteps, sigmas and `init_noise_sigma`: the fixture
/// records the last for the diffusers classes; for k-diffusion it is the first sigma.
pub(super) fn assert_sigma_steps(entry: &TableEntry, steps: &SigmaSteps) {
    assert_table(entry, "timesteps", &steps.timesteps);
    assert_table(entry, "sigmas", &steps.sigmas);
    if entry.data["init_noise_sigma"].is_null() {
        let first = steps.sigmas[0] as f32;
        assert_eq!(steps.init_noise_sigma, first, "{}", entry.describe());
    } else {
        assert_table(entry, "init_noise_sigma", &[steps.init_noise_sigma as f64]);
    }
}

/// The fixed 2x4x4x4 latent of the fixture's trajectories.
pub(super) fn fixture_latents() -> Vec<f32> {
    numbers(&fixture()["latent"])
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Runs a full schedule on the fake UNet `tanh(0.5 * scaled_latents + 0.01 * t)` (in f32, as
/// the fixture script computes it) starting from `unit_latents * init_noise_sigma`.
pub(super) fn run_fake_model(
    scheduler: &mut dyn Scheduler,
    unit_latents: &[f32],
    noise: &mut dyn NoiseSource,
) -> Vec<f32> {
    let init = scheduler.init_noise_sigma();
    let mut latents: Vec<f32> = unit_latents.iter().map(|v| v * init).collect();
    for i in 0..scheduler.timesteps().len() {
        let t = scheduler.timesteps()[i] as f32;
        let mut input = latents.clone();
        scheduler.scale_model_input(&mut input, i);
        let output: Vec<f32> = input
            .iter()
            .map(|&x| (0.5f32 * x + 0.01f32 * t).tanh())
            .collect();
        scheduler.step(&output, i, &mut latents, noise);
    }
    latents
}

/// Compares every fixture trajectory of `kind` (final latents within 1e-4 absolute).
pub(super) fn check_trajectories(kind: SamplerKind) {
    let entries: Vec<&Value> = fixture()["trajectories"]
        .as_array()
        .expect("trajectories")
        .iter()
        .filter(|e| e["sampler"] == kind.name())
        .collect();
    assert!(!entries.is_empty(), "no trajectories for {}", kind.name());
    let latents = fixture_latents();
    for entry in entries {
        let config_name = entry["config"].as_str().expect("config");
        let schedule =
            Schedule::parse(entry["schedule"].as_str().expect("schedule")).expect("schedule name");
        let steps = entry["steps"].as_u64().expect("steps") as usize;
        let what = format!(
            "{} {config_name} {} steps={steps}",
            kind.name(),
            schedule.name()
        );
        let mut scheduler = build(kind, schedule, &config(config_name), steps).unwrap();
        let seed = entry["noise_seed"].as_u64().unwrap_or(0);
        let mut noise = TorchRng::new(seed);
        let ours = run_fake_model(scheduler.as_mut(), &latents, &mut noise);
        let expected = numbers(&entry["final"]);
        assert_eq!(ours.len(), expected.len(), "{what}");
        let worst = ours
            .iter()
            .zip(&expected)
            .map(|(&a, &e)| (a as f64 - e).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-4,
            "{what}: max |diff| {worst}\n ours {:?}\n reference {:?}",
            &ours[..8],
            &expected[..8]
        );
    }
}

/// Deterministic pseudo-normal unit latents (fixture-independent), 2x4x4x4.
pub(super) fn unit_latents() -> Vec<f32> {
    let mut noise = FakeNoise::new(1);
    let mut out = vec![0.0; 128];
    noise.fill_standard_normal(&mut out);
    out
}

/// A small self-contained Gaussian source (xorshift64* + Box-Muller).
pub(super) struct FakeNoise(u64);

impl FakeNoise {
    pub fn new(seed: u64) -> Self {
        FakeNoise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }
}

impl NoiseSource for FakeNoise {
    fn fill_standard_normal(&mut self, out: &mut [f32]) {
        for v in out.iter_mut() {
            let (u1, u2) = (self.uniform(), self.uniform());
            *v = ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32;
        }
    }
}
