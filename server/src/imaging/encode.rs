//! Image files: PNG (lossless, with the generation parameters in a text chunk, as A1111 and
//! ComfyUI write them, so a downloaded file still says how it was made), JPEG on request, small
//! JPEG thumbnails for lists, and previews as data URLs for run events.

use std::io::Cursor;

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::{imageops::FilterType, DynamicImage, ImageFormat, RgbImage};

/// Longest side of a thumbnail.
pub const THUMBNAIL_SIZE: u32 = 256;
pub const JPEG_QUALITY: u8 = 90;
const THUMBNAIL_QUALITY: u8 = 80;
const PREVIEW_QUALITY: u8 = 70;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub fn new(message: impl Into<String>) -> Self {
        EncodeError(message.into())
    }
}

/// PNG with a `parameters` tEXt chunk (when given).
pub fn png(image: &RgbImage, parameters: Option<&str>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Fast deflate: files ~10% larger than the default level, written several times faster.
        encoder.set_compression(png::Compression::Fast);
        if let Some(text) = parameters {
            encoder
                .add_text_chunk("parameters".into(), text.into())
                .map_err(|e| EncodeError(e.to_string()))?;
        }
        let mut writer = encoder
            .write_header()
            .map_err(|e| EncodeError(e.to_string()))?;
        writer
            .write_image_data(image.as_raw())
            .map_err(|e| EncodeError(e.to_string()))?;
    }
    Ok(out)
}

pub fn jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(image)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(out)
}

/// A JPEG no larger than [`THUMBNAIL_SIZE`] on its longest side.
pub fn thumbnail(image: &RgbImage) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = image.dimensions();
    if w <= THUMBNAIL_SIZE && h <= THUMBNAIL_SIZE {
        return jpeg(image, THUMBNAIL_QUALITY);
    }
    let small = DynamicImage::ImageRgb8(image.clone()).resize(
        THUMBNAIL_SIZE,
        THUMBNAIL_SIZE,
        FilterType::Triangle,
    );
    jpeg(&small.to_rgb8(), THUMBNAIL_QUALITY)
}

/// A small preview as a `data:` URL the browser can show directly.
pub fn preview_data_url(image: &RgbImage) -> Option<String> {
    // Latent-resolution previews are tiny (64×64 for 512²); double them so they are not mush.
    let scaled = if image.width() < 128 {
        DynamicImage::ImageRgb8(image.clone())
            .resize(image.width() * 2, image.height() * 2, FilterType::Triangle)
            .to_rgb8()
    } else {
        image.clone()
    };
    let bytes = jpeg(&scaled, PREVIEW_QUALITY).ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Decodes a stored PNG (for JPEG conversion and edits).
pub fn decode(bytes: &[u8]) -> Result<RgbImage, EncodeError> {
    let format = image::guess_format(bytes).map_err(|e| EncodeError(e.to_string()))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(EncodeError(format!(
            "{format:?} images are not supported; use PNG or JPEG"
        )));
    }
    image::load(Cursor::new(bytes), format)
        .map(|i| i.to_rgb8())
        .map_err(|e| EncodeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_carries_parameters_and_round_trips() {
        let img = RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let bytes = png(&img, Some("a fox\nSteps: 4, Seed: 1")).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.windows(10).any(|w| w == b"parameters"));
        assert_eq!(decode(&bytes).unwrap(), img);
    }

    #[test]
    fn thumbnails_fit_and_jpegs_have_their_signature() {
        let img = RgbImage::new(1024, 512);
        let t = decode(&thumbnail(&img).unwrap()).unwrap();
        assert_eq!(t.dimensions(), (256, 128));
        assert_eq!(&jpeg(&img, 90).unwrap()[..3], &[0xFF, 0xD8, 0xFF]);
        assert!(preview_data_url(&RgbImage::new(8, 8))
            .unwrap()
            .starts_with("data:image/jpeg;base64,"));
    }
}
