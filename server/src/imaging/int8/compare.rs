//! fp32 and int8 side by side: both UNets of a model paint the same request (same seed, same
//! settings), so a user sees what int8 buys (step time) and costs (the pictures' difference,
//! as PSNR) on their own machine before choosing it.

use std::path::Path;
use std::time::Instant;

use super::super::diffusion::pipeline::FloatImage;
use super::super::registry::ModelEntry;
use super::super::request::{self, ImageParams, SizeChoice, SizePolicy};
use super::super::run_job;
use super::super::runtime::Runtime;

/// The prompt both paint: a busy scene, so the difference is not measured on flat colour.
const PROMPT: &str = "a photograph of an astronaut riding a horse on the moon, detailed";

/// One UNet's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub load_ms: f64,
    pub step_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub fp32: Side,
    pub int8: Side,
    /// int8 step time over fp32's.
    pub step_ratio: f64,
    /// PSNR of the int8 picture against the fp32 one (peak 1.0); `None` when identical.
    pub psnr_db: Option<f64>,
    /// The largest difference of one 8-bit channel value.
    pub max_diff_255: u8,
}

/// Paints one picture with each UNet of the folder at the model's default size.
pub fn compare(dir: &Path, runtime: &Runtime, steps: i64) -> Result<Comparison, String> {
    let fp32 = ModelEntry::open(dir);
    if let Some(problem) = &fp32.problem {
        return Err(problem.clone());
    }
    let params = ImageParams {
        prompt: PROMPT.into(),
        n: Some(1),
        size: SizeChoice::Auto,
        steps: Some(steps),
        seed: Some(0),
        ..Default::default()
    };
    let warm_up = ImageParams {
        size: SizeChoice::Exact(64, 64),
        steps: Some(1),
        ..params.clone()
    };
    let request =
        request::resolve(params, &fp32, SizePolicy::AnyMultipleOf8).map_err(|e| e.to_string())?;
    let warm_up = request::resolve(warm_up, &fp32, SizePolicy::AnyMultipleOf8).ok();
    let run = |entry: ModelEntry| -> Result<(Side, FloatImage), String> {
        let started = Instant::now();
        entry.load(runtime)?;
        let load_ms = ms(started);
        // A small one-step picture first, so neither side's time holds a first run's set-up.
        if let Some(warm_up) = &warm_up {
            run_job(
                &entry,
                runtime,
                warm_up,
                &mut |_| {},
                &|| false,
                None,
                false,
            )
            .map_err(|e| e.to_string())?;
        }
        let started = Instant::now();
        let (mut images, timings) = run_job(
            &entry,
            runtime,
            &request,
            &mut |_| {},
            &|| false,
            None,
            true,
        )
        .map_err(|e| e.to_string())?;
        let side = Side {
            load_ms,
            step_ms: timings.denoise_ms / f64::from(request.steps.max(1)),
            total_ms: ms(started),
        };
        let image = images.pop().ok_or("no picture came back")?;
        Ok((side, image.pixels))
    };
    // One after the other, each dropped before the next loads: two real-size UNets with their
    // arenas would not fit a small machine together.
    let (fp32_side, want) = run(fp32)?;
    let int8 = ModelEntry::open_int8(dir).ok_or("the model has no int8 UNet")?;
    let (int8_side, got) = run(int8)?;
    let (psnr_db, max_diff_255) = difference(&got, &want);
    Ok(Comparison {
        width: request.width,
        height: request.height,
        steps: request.steps,
        step_ratio: int8_side.step_ms / fp32_side.step_ms.max(1e-9),
        fp32: fp32_side,
        int8: int8_side,
        psnr_db,
        max_diff_255,
    })
}

/// PSNR over float pixels in [0, 1], and the largest 8-bit difference.
fn difference(got: &FloatImage, want: &FloatImage) -> (Option<f64>, u8) {
    let n = got.data.len().min(want.data.len()).max(1);
    let mse = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / n as f64;
    let max = got
        .to_rgb8()
        .as_raw()
        .iter()
        .zip(want.to_rgb8().as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let psnr = (mse > 0.0).then(|| 10.0 * (1.0 / mse).log10());
    (psnr, max)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_difference() {
        let want = FloatImage {
            width: 1,
            height: 1,
            data: vec![0.5, 0.5, 0.5],
        };
        let got = FloatImage {
            data: vec![0.6, 0.5, 0.4],
            ..want.clone()
        };
        let (psnr, max) = difference(&got, &want);
        // MSE = (0.01 + 0 + 0.01) / 3.
        let expect = 10.0 * (3.0f64 / 0.02).log10();
        assert!((psnr.unwrap() - expect).abs() < 1e-4, "{psnr:?}");
        // round(0.5 × 255) = 128 against round(0.4 × 255) = 102.
        assert_eq!(max, 26);
        assert_eq!(difference(&want, &want), (None, 0));
    }
}
