//! Inputs of edits (img2img and inpainting): resizing a source picture and a mask to the size
//! an edit is made at, and turning them into what the pipeline wants. Which size that is, and
//! the checks before anything is decoded, are the jobs service's (`jobs::prepare`).

use image::imageops::{self, FilterType};
use image::{RgbImage, RgbaImage};

/// A source picture at `w`×`h` (Lanczos, the filter people expect for photos).
pub fn resize_rgb(rgb: &RgbImage, w: u32, h: u32) -> RgbImage {
    if rgb.dimensions() == (w, h) {
        rgb.clone()
    } else {
        imageops::resize(rgb, w, h, FilterType::Lanczos3)
    }
}

/// A mask at `w`×`h` (smoothly, so its edge blends).
pub fn resize_rgba(rgba: &RgbaImage, w: u32, h: u32) -> RgbaImage {
    if rgba.dimensions() == (w, h) {
        rgba.clone()
    } else {
        imageops::resize(rgba, w, h, FilterType::Triangle)
    }
}

/// A source picture as `[3, h, w]` in [-1, 1].
pub fn source_pixels(rgb: &RgbImage) -> Vec<f32> {
    let plane = rgb.width() as usize * rgb.height() as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p.0[c]) / 127.5 - 1.0;
        }
    }
    out
}

/// A mask → `[h, w]` with 1 where the picture should change.
///
/// Two conventions are accepted, as the tools people use produce both: OpenAI's images API
/// (a PNG whose *transparent* pixels mark the area to edit) and the usual painted mask (white
/// = change, black = keep) when the image has no transparency at all.
pub fn mask_values(rgba: &RgbaImage) -> Vec<f32> {
    let uses_alpha = rgba.pixels().any(|p| p.0[3] < 255);
    rgba.pixels()
        .map(|p| {
            if uses_alpha {
                1.0 - f32::from(p.0[3]) / 255.0
            } else {
                (0.299 * f32::from(p.0[0]) + 0.587 * f32::from(p.0[1]) + 0.114 * f32::from(p.0[2]))
                    / 255.0
            }
        })
        .collect()
}

/// The size to edit a `(w, h)` picture at: its own, rounded down to multiples of 8 and scaled
/// down (keeping the aspect ratio) to fit `max_side`, and at least 64 on each side.
pub fn fit_size((w, h): (u32, u32), max_side: u32) -> (u32, u32) {
    let longest = w.max(h).max(1);
    let scale = (f64::from(max_side) / f64::from(longest)).min(1.0);
    let round = |v: u32| (((f64::from(v) * scale) as u32) / 8 * 8).clamp(64, max_side.max(64));
    (round(w), round(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    #[test]
    fn transparent_pixels_mark_the_area_to_edit_as_openai_defines() {
        let mut img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 255]));
        img.put_pixel(1, 1, Rgba([0, 0, 0, 0]));
        let m = mask_values(&img);
        assert_eq!(m[9], 1.0);
        assert_eq!(m[0], 0.0);
    }

    #[test]
    fn opaque_masks_use_white_for_change() {
        let mut img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 255]));
        img.put_pixel(2, 0, Rgba([255, 255, 255, 255]));
        let m = mask_values(&img);
        assert!((m[2] - 1.0).abs() < 1e-6);
        assert_eq!(m[3], 0.0);
    }

    #[test]
    fn edit_sizes_keep_aspect_and_fit() {
        assert_eq!(fit_size((1000, 500), 512), (512, 256));
        assert_eq!(fit_size((300, 301), 1024), (296, 296));
        assert_eq!(fit_size((8000, 10), 1024), (1024, 64));
        assert_eq!(fit_size((1, 1), 512), (64, 64));
    }
}
