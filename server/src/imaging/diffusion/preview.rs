//! Cheap previews: a latent pixel is (almost) a linear function of the RGB it decodes to, so
//! a 4×3 matrix turns latents into a small picture without running the VAE. The factors are
//! the ones ComfyUI and A1111 ("Approx cheap") fitted for the SD 1.x/2.x and SDXL VAEs
//! (ComfyUI `latent_formats.py`, `latent_rgb_factors`).

use image::RgbImage;

const SD_FACTORS: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];
const SDXL_FACTORS: [[f32; 3]; 4] = [
    [0.3920, 0.4054, 0.4549],
    [-0.2634, -0.0196, 0.0653],
    [0.0568, 0.1687, -0.0755],
    [-0.3112, -0.2359, -0.2076],
];
const SDXL_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// One image's latents `[4, h, w]` (as the model sees them, before the VAE scaling) → RGB at
/// latent resolution.
pub fn latents_to_rgb(latents: &[f32], h: usize, w: usize, sdxl: bool) -> RgbImage {
    let (factors, bias) = if sdxl {
        (SDXL_FACTORS, SDXL_BIAS)
    } else {
        (SD_FACTORS, [0.0; 3])
    };
    let plane = h * w;
    let mut out = RgbImage::new(w as u32, h as u32);
    for (i, pixel) in out.pixels_mut().enumerate() {
        let mut rgb = bias;
        for (c, row) in factors.iter().enumerate() {
            let v = latents.get(c * plane + i).copied().unwrap_or(0.0);
            for k in 0..3 {
                rgb[k] += v * row[k];
            }
        }
        // The factors map to [-1, 1]; shift to [0, 255].
        pixel.0 = rgb.map(|v| (((v + 1.0) * 127.5).clamp(0.0, 255.0)) as u8);
    }
    out
}

/// Longest side of a preview decoded by TAESD: enough for the page, small on the wire.
pub const DECODED_PREVIEW_MAX: u32 = 256;

/// A preview decoder's output `[3, h, w]` in [-1, 1] (diffusers' `AutoencoderTiny.decode`
/// convention) → RGB, scaled down to at most [`DECODED_PREVIEW_MAX`] on the longest side.
pub fn decoded_preview(data: &[f32], h: usize, w: usize) -> RgbImage {
    let plane = h * w;
    let mut out = RgbImage::new(w as u32, h as u32);
    for (i, pixel) in out.pixels_mut().enumerate() {
        for c in 0..3 {
            let v = data.get(c * plane + i).copied().unwrap_or(0.0);
            pixel.0[c] = ((v / 2.0 + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    if out.width().max(out.height()) > DECODED_PREVIEW_MAX {
        let scale = DECODED_PREVIEW_MAX as f32 / out.width().max(out.height()) as f32;
        let (tw, th) = (
            ((out.width() as f32 * scale).round() as u32).max(1),
            ((out.height() as f32 * scale).round() as u32).max(1),
        );
        out = image::imageops::thumbnail(&out, tw, th);
    }
    out
}

/// How often previews are made: every step, every other step, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviewRate {
    Faster,
    #[default]
    Normal,
    None,
}

impl PreviewRate {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "faster" | "fast" => Some(PreviewRate::Faster),
            "normal" => Some(PreviewRate::Normal),
            "none" | "off" => Some(PreviewRate::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PreviewRate::Faster => "faster",
            PreviewRate::Normal => "normal",
            PreviewRate::None => "none",
        }
    }

    /// Whether step `step` (1-based) of `steps` gets a preview. The last step never does: the
    /// finished image follows immediately.
    pub fn wants(self, step: u32, steps: u32) -> bool {
        if step >= steps {
            return false;
        }
        match self {
            PreviewRate::Faster => true,
            PreviewRate::Normal => step % 2 == 1,
            PreviewRate::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_latents_are_mid_grey_and_rates_thin_out() {
        let img = latents_to_rgb(&[0.0; 4 * 4], 2, 2, false);
        assert_eq!(img.get_pixel(1, 1).0, [127, 127, 127]);
        assert!(PreviewRate::Faster.wants(2, 4));
        assert!(!PreviewRate::Normal.wants(2, 4));
        assert!(PreviewRate::Normal.wants(3, 4));
        assert!(!PreviewRate::Faster.wants(4, 4));
        assert!(!PreviewRate::None.wants(1, 4));
    }
}

#[cfg(test)]
mod decoded_tests {
    use super::*;

    #[test]
    fn decoded_previews_map_the_range_and_are_scaled_down_for_the_wire() {
        // [-1, 1] → [0, 255], out-of-range values clamped (TAESD overshoots on odd latents).
        let data = [-1.0, 0.0, 1.0, 2.0, -3.0, 0.5];
        let one_by_two: Vec<f32> = data.iter().copied().cycle().take(6).collect();
        let p = decoded_preview(&one_by_two, 1, 2);
        assert_eq!(p.get_pixel(0, 0).0, [0, 255, 0]);
        assert_eq!(p.get_pixel(1, 0).0, [128, 255, 191]);
        let big = vec![0.0f32; 3 * 384 * 512];
        assert_eq!(decoded_preview(&big, 384, 512).dimensions(), (256, 192));
        assert_eq!(
            decoded_preview(&vec![0.0f32; 3 * 64 * 64], 64, 64).dimensions(),
            (64, 64)
        );
    }
}
