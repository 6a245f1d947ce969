//! Per-model presets: the optional `easel.toml` in a model folder, over family defaults.
//!
//! Families differ in what they were trained for: SD 1.x at 512², SD 2.x (v) at 768², SDXL at
//! 1024², the distilled Turbo models in 1–4 steps without guidance, LCM in 2–8 steps with a
//! guidance embedding. A folder without `easel.toml` gets its family's defaults.

use std::path::Path;

use serde::Deserialize;

use super::diffusion::schedulers::{SamplerKind, Schedule};

/// Steps for each quality level of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct QualitySteps {
    pub auto: u32,
    pub low: u32,
    pub medium: u32,
    pub high: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Stable Diffusion 1.x (and 2.x base, epsilon).
    Sd1,
    /// Stable Diffusion 2.x with v-prediction (768 px).
    Sd2V,
    Sdxl,
    /// SD-Turbo / SDXL-Turbo: adversarially distilled, 1–4 steps, guidance off.
    Turbo,
    /// Latent consistency models (`timestep_cond`), 2–8 steps.
    Lcm,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Sd1 => "sd1",
            Family::Sd2V => "sd2-v",
            Family::Sdxl => "sdxl",
            Family::Turbo => "turbo",
            Family::Lcm => "lcm",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "sd1" | "sd15" | "sd1.5" | "sd2" => Some(Family::Sd1),
            "sd2-v" | "sd2v" => Some(Family::Sd2V),
            "sdxl" => Some(Family::Sdxl),
            "turbo" | "sd-turbo" | "sdxl-turbo" => Some(Family::Turbo),
            "lcm" => Some(Family::Lcm),
            _ => None,
        }
    }
}

/// The resolved presets a model runs with.
#[derive(Debug, Clone)]
pub struct Presets {
    pub display_name: String,
    pub default_size: (u32, u32),
    pub allowed_sizes: Vec<(u32, u32)>,
    pub max_size: u32,
    pub default_sampler: SamplerKind,
    pub default_schedule: Schedule,
    pub default_guidance: f32,
    pub steps: QualitySteps,
    /// A TAESD decoder for live previews (`preview_decoder` in `easel.toml`: its folder or
    /// `.onnx` file, relative to the model folder); else `taesd_decoder/` when present.
    pub preview_decoder: Option<std::path::PathBuf>,
}

/// `easel.toml` as written by people; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    display_name: Option<String>,
    family: Option<String>,
    default_size: Option<String>,
    allowed_sizes: Option<Vec<String>>,
    max_size: Option<u32>,
    default_sampler: Option<String>,
    default_schedule: Option<String>,
    default_guidance: Option<f32>,
    steps: Option<StepsFile>,
    preview_decoder: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepsFile {
    auto: Option<u32>,
    low: Option<u32>,
    medium: Option<u32>,
    high: Option<u32>,
}

pub fn family_defaults(family: Family, name: &str) -> Presets {
    let sizes = |list: &[&str]| {
        list.iter()
            .filter_map(|s| parse_size(s))
            .collect::<Vec<_>>()
    };
    let steps = |auto, low, medium, high| QualitySteps {
        auto,
        low,
        medium,
        high,
    };
    let (default_size, allowed, max_size, sampler, schedule, guidance, steps) = match family {
        Family::Sd1 => (
            (512, 512),
            sizes(&[
                "256x256",
                "512x512",
                "768x768",
                "512x768",
                "768x512",
                "1024x1024",
            ]),
            1024,
            SamplerKind::Dpmpp2m,
            Schedule::Karras,
            7.5,
            steps(25, 15, 25, 40),
        ),
        Family::Sd2V => (
            (768, 768),
            sizes(&["512x512", "768x768", "1024x1024", "768x1024", "1024x768"]),
            1024,
            SamplerKind::Dpmpp2m,
            Schedule::Karras,
            7.5,
            steps(25, 15, 25, 40),
        ),
        Family::Sdxl => (
            (1024, 1024),
            sizes(&[
                "768x768",
                "1024x1024",
                "1152x896",
                "896x1152",
                "1216x832",
                "832x1216",
                "1344x768",
                "768x1344",
                "1024x1792",
                "1792x1024",
            ]),
            2048,
            SamplerKind::Dpmpp2m,
            Schedule::Karras,
            7.0,
            steps(30, 20, 30, 50),
        ),
        Family::Turbo => (
            (512, 512),
            sizes(&["512x512", "512x768", "768x512", "768x768"]),
            1024,
            SamplerKind::EulerA,
            Schedule::Discrete,
            0.0,
            steps(1, 1, 2, 4),
        ),
        Family::Lcm => (
            (512, 512),
            sizes(&["256x256", "512x512", "768x768", "512x768", "768x512"]),
            1024,
            SamplerKind::Lcm,
            Schedule::Discrete,
            8.5,
            steps(4, 2, 4, 8),
        ),
    };
    Presets {
        display_name: name.to_string(),
        default_size,
        allowed_sizes: allowed,
        max_size,
        default_sampler: sampler,
        default_schedule: schedule,
        default_guidance: guidance,
        steps,
        preview_decoder: None,
    }
}

/// What else about a model decides its defaults, beyond its family.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traits {
    pub sdxl: bool,
    /// The UNet takes a guidance embedding (`timestep_cond`): true LCM distillations do,
    /// LCM-LoRA-style UNets do not.
    pub guidance_embedding: bool,
}

/// The family's defaults adjusted to the model: SDXL-based LCMs keep SDXL's sizes; LCM UNets
/// without a guidance embedding (LCM-LoRA merges) paint with little or no classifier-free
/// guidance (1.0 turns it off; their authors recommend 1 to 2).
pub fn defaults_for(family: Family, traits: Traits, name: &str) -> Presets {
    let mut presets = family_defaults(family, name);
    if family == Family::Lcm {
        if traits.sdxl {
            let sdxl = family_defaults(Family::Sdxl, name);
            presets.default_size = sdxl.default_size;
            presets.allowed_sizes = sdxl.allowed_sizes;
            presets.max_size = sdxl.max_size;
        }
        if !traits.guidance_embedding {
            presets.default_guidance = 1.0;
        }
    }
    presets
}

/// Reads `easel.toml` (when present) over the family defaults. Returns the family too, since the
/// file may name it explicitly.
pub fn load(
    dir: &Path,
    detected: Family,
    traits: Traits,
    name: &str,
) -> Result<(Family, Presets), String> {
    let path = dir.join("easel.toml");
    let file: PresetFile = if path.is_file() {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim()))?
    } else {
        PresetFile::default()
    };
    let family = match &file.family {
        Some(f) => Family::parse(f).ok_or_else(|| {
            format!(
                "{}: unknown family `{f}` (sd1, sd2-v, sdxl, turbo, lcm)",
                path.display()
            )
        })?,
        None => detected,
    };
    let mut presets = defaults_for(family, traits, name);
    let bad = |key: &str, value: &str| {
        format!(
            "{}: {key} `{value}` is not WIDTHxHEIGHT in multiples of 8",
            path.display()
        )
    };
    if let Some(n) = file.display_name {
        presets.display_name = n;
    }
    if let Some(m) = file.max_size {
        presets.max_size = m;
    }
    if let Some(list) = file.allowed_sizes {
        presets.allowed_sizes = list
            .iter()
            .map(|s| parse_size(s).ok_or_else(|| bad("allowed_sizes", s)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(s) = file.default_size {
        presets.default_size = parse_size(&s).ok_or_else(|| bad("default_size", &s))?;
    }
    if !presets.allowed_sizes.contains(&presets.default_size) {
        presets.allowed_sizes.insert(0, presets.default_size);
    }
    if let Some(s) = file.default_sampler {
        presets.default_sampler = SamplerKind::parse(&s)
            .ok_or_else(|| format!("{}: unknown default_sampler `{s}`", path.display()))?;
    }
    if let Some(s) = file.default_schedule {
        presets.default_schedule = Schedule::parse(&s).ok_or_else(|| {
            format!(
                "{}: unknown default_schedule `{s}` (discrete, karras)",
                path.display()
            )
        })?;
    }
    if let Some(g) = file.default_guidance {
        presets.default_guidance = g;
    }
    if let Some(p) = file.preview_decoder {
        let p = dir.join(p);
        let p = if p.is_dir() { p.join("model.onnx") } else { p };
        if !p.is_file() {
            return Err(format!(
                "{}: preview_decoder {} is not an ONNX file or a folder with model.onnx",
                path.display(),
                p.display()
            ));
        }
        presets.preview_decoder = Some(p);
    } else if dir.join("taesd_decoder/model.onnx").is_file() {
        presets.preview_decoder = Some(dir.join("taesd_decoder/model.onnx"));
    }
    if let Some(s) = file.steps {
        let d = presets.steps;
        presets.steps = QualitySteps {
            auto: s.auto.unwrap_or(d.auto),
            low: s.low.unwrap_or(d.low),
            medium: s.medium.unwrap_or(d.medium),
            high: s.high.unwrap_or(d.high),
        };
    }
    Ok((family, presets))
}

/// `512x768` → (512, 768); both sides multiples of 8 and at least 8.
pub fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.trim().split_once(['x', 'X', '×'])?;
    let (w, h) = (w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?);
    (w >= 8 && h >= 8 && w.is_multiple_of(8) && h.is_multiple_of(8)).then_some((w, h))
}

pub fn size_text((w, h): (u32, u32)) -> String {
    format!("{w}x{h}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sdxl_lcm_keeps_sdxl_sizes_and_lcm_lora_turns_guidance_off() {
        let sdxl_lcm = super::defaults_for(
            Family::Lcm,
            super::Traits {
                sdxl: true,
                guidance_embedding: true,
            },
            "x",
        );
        let sdxl = family_defaults(Family::Sdxl, "x");
        assert_eq!(sdxl_lcm.allowed_sizes, sdxl.allowed_sizes);
        assert_eq!(sdxl_lcm.default_size, (1024, 1024));
        assert_eq!(sdxl_lcm.default_guidance, 8.5);
        let lora = super::defaults_for(Family::Lcm, super::Traits::default(), "x");
        assert_eq!(lora.default_guidance, 1.0);
        assert_eq!(lora.default_size, (512, 512));
    }

    use super::*;

    #[test]
    fn sizes_parse_only_multiples_of_eight() {
        assert_eq!(parse_size("512x768"), Some((512, 768)));
        assert_eq!(parse_size(" 64 X 64 "), Some((64, 64)));
        assert_eq!(parse_size("500x500"), None);
        assert_eq!(parse_size("512"), None);
    }

    #[test]
    fn easel_toml_overrides_family_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("easel.toml"),
            "display_name = \"Mine\"\ndefault_size = \"64x64\"\nallowed_sizes = [\"128x128\"]\n[steps]\nhigh = 9\n",
        )
        .unwrap();
        let (family, p) = load(dir.path(), Family::Sd1, Traits::default(), "x").unwrap();
        assert_eq!(family, Family::Sd1);
        assert_eq!(p.display_name, "Mine");
        assert_eq!(p.allowed_sizes, vec![(64, 64), (128, 128)]);
        assert_eq!(p.steps.high, 9);
        assert_eq!(p.steps.low, 15);
    }

    #[test]
    fn bad_preset_file_names_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("easel.toml"), "default_size = \"huge\"").unwrap();
        let err = load(dir.path(), Family::Sd1, Traits::default(), "x").unwrap_err();
        assert!(
            err.contains("easel.toml") && err.contains("default_size"),
            "{err}"
        );
    }
}
