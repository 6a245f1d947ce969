//! Inputs of edits (img2img and inpainting): the source picture as the pipeline wants it, masks
//! as people and OpenAI's API give them, and the size an edit is made at.

use image::{DynamicImage, GenericImageView, RgbImage};

use super::diffusion::pipeline::EditInput;
use super::encode::EncodeError;

/// A source picture resized to `w`×`h`, as `[3, h, w]` in [-1, 1].
pub fn source_pixels(rgb: &RgbImage, w: u32, h: u32) -> Vec<f32> {
    let resized = if rgb.dimensions() == (w, h) {
        rgb.clone()
    } else {
        image::imageops::resize(rgb, w, h, image::imageops::FilterType::Lanczos3)
    };
    let plane = (w * h) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, p) in resized.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(p.0[c]) / 127.5 - 1.0;
        }
    }
    out
}

/// A mask image → `[h, w]` with 1 where the picture should change.
///
/// Two conventions are accepted, as the tools people use produce both: OpenAI's images API
/// (a PNG whose *transparent* pixels mark the area to edit) and the usual painted mask (white
/// = change, black = keep) when the image has no transparency at all.
pub fn mask_from_image(bytes: &[u8], w: u32, h: u32) -> Result<Vec<f32>, EncodeError> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| EncodeError::new(format!("the mask is not a readable image: {e}")))?;
    let image = if image.dimensions() == (w, h) {
        image
    } else {
        DynamicImage::ImageRgba8(image::imageops::resize(
            &image.to_rgba8(),
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    };
    let rgba = image.to_rgba8();
    let uses_alpha = rgba.pixels().any(|p| p.0[3] < 255);
    Ok(rgba
        .pixels()
        .map(|p| {
            if uses_alpha {
                1.0 - f32::from(p.0[3]) / 255.0
            } else {
                (0.299 * f32::from(p.0[0]) + 0.587 * f32::from(p.0[1]) + 0.114 * f32::from(p.0[2]))
                    / 255.0
            }
        })
        .collect())
}

/// The size to edit a `(w, h)` picture at: its own, rounded down to multiples of 8 and scaled
/// down (keeping the aspect ratio) to fit `max_side`.
pub fn fit_size((w, h): (u32, u32), max_side: u32) -> (u32, u32) {
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let round = |v: u32| ((v as f32 * scale) as u32 / 8 * 8).max(64);
    (round(w), round(h))
}

/// Builds the engine's edit input; a mask that asks to change nothing means plain img2img.
pub fn edit_input(
    source: &RgbImage,
    mask: Option<&[u8]>,
    strength: f32,
    (w, h): (u32, u32),
) -> Result<EditInput, EncodeError> {
    let mask = match mask {
        Some(bytes) => {
            let m = mask_from_image(bytes, w, h)?;
            // An empty mask (nothing painted) means the whole image may change.
            m.iter().any(|v| *v > 0.01).then_some(m)
        }
        None => None,
    };
    Ok(EditInput {
        image: source_pixels(source, w, h),
        mask,
        strength,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    fn png(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn transparent_pixels_mark_the_area_to_edit_as_openai_defines() {
        let mut img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 255]));
        img.put_pixel(1, 1, Rgba([0, 0, 0, 0]));
        let m = mask_from_image(&png(&img), 8, 8).unwrap();
        assert_eq!(m[9], 1.0);
        assert_eq!(m[0], 0.0);
    }

    #[test]
    fn opaque_masks_use_white_for_change() {
        let mut img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 255]));
        img.put_pixel(2, 0, Rgba([255, 255, 255, 255]));
        let m = mask_from_image(&png(&img), 8, 8).unwrap();
        assert!((m[2] - 1.0).abs() < 1e-6);
        assert_eq!(m[3], 0.0);
    }

    #[test]
    fn edit_sizes_keep_aspect_and_fit() {
        assert_eq!(fit_size((1000, 500), 512), (512, 256));
        assert_eq!(fit_size((300, 301), 1024), (296, 296));
    }

    #[test]
    fn an_empty_mask_means_img2img() {
        let src = RgbImage::new(64, 64);
        let empty = png(&RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 255])));
        assert!(edit_input(&src, Some(&empty), 0.5, (64, 64))
            .unwrap()
            .mask
            .is_none());
    }
}
