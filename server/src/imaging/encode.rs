//! Image files: PNG (lossless, with the generation parameters in an `iTXt` chunk under the
//! `parameters` key, as A1111 writes them, so a downloaded file still says how it was made, in
//! any script), JPEG (the same text as EXIF `UserComment` and a comment), small JPEG thumbnails
//! for lists, and previews as data URLs for run events.
//!
//! Decoding is for files people upload: it has limits (size per side and memory), and callers
//! run it on blocking threads.

use std::io::Cursor;

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::{imageops::FilterType, DynamicImage, ImageFormat, RgbImage, RgbaImage};

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

/// Largest side of an image Easel decodes (uploads, stored images).
pub const MAX_DECODE_SIDE: u32 = 8192;
/// Largest allocation one decode may make (an 8192² RGBA picture fits).
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024 + 1024 * 1024;
/// The key A1111, ComfyUI and the tools that read their files use for generation settings.
pub const PARAMETERS_KEY: &str = "parameters";

/// PNG with the generation parameters (when given) in an `iTXt` chunk: UTF-8, so every prompt
/// fits (`tEXt` is Latin-1 only).
pub fn png(image: &RgbImage, parameters: Option<&str>) -> Result<Vec<u8>, EncodeError> {
    encode_png(
        image.width(),
        image.height(),
        png::ColorType::Rgb,
        image.as_raw(),
        parameters,
    )
}

/// An RGBA PNG (masks, which keep their transparency).
pub fn png_rgba(image: &RgbaImage) -> Result<Vec<u8>, EncodeError> {
    encode_png(
        image.width(),
        image.height(),
        png::ColorType::Rgba,
        image.as_raw(),
        None,
    )
}

fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    data: &[u8],
    parameters: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        // Fast deflate: files ~10% larger than the default level, written several times faster.
        encoder.set_compression(png::Compression::Fast);
        if let Some(text) = parameters {
            encoder
                .add_itxt_chunk(PARAMETERS_KEY.into(), text.replace('\0', ""))
                .map_err(|e| EncodeError(e.to_string()))?;
        }
        let mut writer = encoder
            .write_header()
            .map_err(|e| EncodeError(e.to_string()))?;
        writer
            .write_image_data(data)
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

/// A JPEG that keeps the generation parameters: as EXIF `UserComment` (UTF-16, where A1111
/// writes them) and as a JPEG comment (UTF-8, for simple tools).
pub fn jpeg_with_parameters(
    image: &RgbImage,
    quality: u8,
    parameters: &str,
) -> Result<Vec<u8>, EncodeError> {
    let plain = jpeg(image, quality)?;
    Ok(insert_metadata(&plain, parameters))
}

/// Inserts an EXIF APP1 segment and a COM segment after the JFIF header of a JPEG.
fn insert_metadata(jpeg: &[u8], text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| *c != '\0').collect();
    // Segments hold at most 65533 bytes of payload; prompts are capped far below that, but
    // cut at a character boundary to be safe.
    let mut utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    utf16.truncate(60_000 & !1);
    let mut exif = Vec::with_capacity(64 + utf16.len());
    exif.extend_from_slice(b"Exif\0\0");
    // TIFF header, big-endian, IFD0 at offset 8.
    exif.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    // IFD0: one entry, the pointer to the Exif IFD (at 26).
    exif.extend_from_slice(&1u16.to_be_bytes());
    exif.extend_from_slice(&0x8769u16.to_be_bytes());
    exif.extend_from_slice(&4u16.to_be_bytes());
    exif.extend_from_slice(&1u32.to_be_bytes());
    exif.extend_from_slice(&26u32.to_be_bytes());
    exif.extend_from_slice(&0u32.to_be_bytes());
    // Exif IFD: UserComment (UNDEFINED), data at 44.
    let comment_len = 8 + utf16.len() as u32;
    exif.extend_from_slice(&1u16.to_be_bytes());
    exif.extend_from_slice(&0x9286u16.to_be_bytes());
    exif.extend_from_slice(&7u16.to_be_bytes());
    exif.extend_from_slice(&comment_len.to_be_bytes());
    exif.extend_from_slice(&44u32.to_be_bytes());
    exif.extend_from_slice(&0u32.to_be_bytes());
    exif.extend_from_slice(b"UNICODE\0");
    exif.extend_from_slice(&utf16);

    let mut comment = text.into_bytes();
    comment.truncate(60_000);
    while std::str::from_utf8(&comment).is_err() {
        comment.pop();
    }

    // After SOI and, when present, the JFIF APP0 segment.
    let mut at = 2;
    if jpeg.len() > 4 && jpeg[2] == 0xFF && jpeg[3] == 0xE0 {
        at = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    let at = at.min(jpeg.len());
    let mut out = Vec::with_capacity(jpeg.len() + exif.len() + comment.len() + 8);
    out.extend_from_slice(&jpeg[..at]);
    for (marker, payload) in [(0xE1u8, &exif), (0xFEu8, &comment)] {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&jpeg[at..]);
    out
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

/// Decodes a PNG or JPEG (an upload, a stored image) to RGB, within the decoding limits.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, EncodeError> {
    Ok(decode_limited(bytes)?.to_rgb8())
}

/// Decodes a PNG or JPEG keeping its transparency (masks), within the decoding limits.
pub fn decode_rgba(bytes: &[u8]) -> Result<image::RgbaImage, EncodeError> {
    Ok(decode_limited(bytes)?.to_rgba8())
}

fn decode_limited(bytes: &[u8]) -> Result<DynamicImage, EncodeError> {
    let format =
        image::guess_format(bytes).map_err(|_| EncodeError("not a PNG or JPEG image".into()))?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(EncodeError(format!(
            "{format:?} images are not supported; use PNG or JPEG"
        )));
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => EncodeError(format!(
            "the image is too large (at most {MAX_DECODE_SIDE}×{MAX_DECODE_SIDE} pixels)"
        )),
        other => EncodeError(format!("the image cannot be read: {other}")),
    })
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
    fn every_unicode_prompt_is_kept_in_png_and_jpeg() {
        let img = RgbImage::new(8, 8);
        let text = "A lighthouse — “at dusk”, 夕暮れの灯台 👩‍👩‍👧 \u{7}\u{1b}[0m tab\tend\u{0}";
        let png_bytes = png(&img, Some(text)).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let reader = decoder.read_info().unwrap();
        let chunk = &reader.info().utf8_text[0];
        assert_eq!(chunk.keyword, "parameters");
        assert_eq!(chunk.get_text().unwrap(), text.replace('\0', ""));

        let jpg = jpeg_with_parameters(&img, 90, text).unwrap();
        assert_eq!(decode(&jpg).unwrap().dimensions(), (8, 8));
        let utf16: Vec<u8> = text
            .replace('\0', "")
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert!(jpg.windows(utf16.len()).any(|w| w == utf16.as_slice()));
        let utf8 = text.replace('\0', "");
        assert!(jpg.windows(utf8.len()).any(|w| w == utf8.as_bytes()));
    }

    #[test]
    fn decoding_refuses_what_is_not_an_image_or_too_large() {
        assert!(decode(b"not an image").is_err());
        assert!(decode(&[0x89, b'P', b'N', b'G', 0, 0]).is_err());
        // A valid header that claims 100000×100000 pixels is refused before any allocation.
        let mut huge = png(&RgbImage::new(1, 1), None).unwrap();
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(decode(&huge).is_err());
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
