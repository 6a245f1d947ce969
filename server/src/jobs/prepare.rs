//! The one edit preparation every caller uses (chat tool, Studio, `/v1`, command line): check
//! the requested size before anything is allocated for it, decode the source and the mask with
//! limits on a blocking thread, fit the size to the model, resize both, and pick the default
//! strength. The result is what the job stores and what it paints from.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use super::spec::EditSource;
use crate::imaging::edit;
use crate::imaging::encode;
use crate::imaging::registry::ModelEntry;
use crate::imaging::request::{self, SizeChoice, SizePolicy};

/// Strength when the caller gives none: a painted mask repaints its area fully, a whole-picture
/// edit keeps the composition.
pub const DEFAULT_STRENGTH: f32 = 0.6;
pub const DEFAULT_MASKED_STRENGTH: f32 = 1.0;

/// Decoding a large upload takes memory and a core for a while; at most this many run at once,
/// so a burst of uploads cannot exhaust either.
static DECODERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PrepareError {
    /// The request field at fault (`image`, `mask`, `size`, `strength`).
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> PrepareError {
    PrepareError {
        field,
        message: message.into(),
    }
}

/// An edit as a caller received it: encoded bytes, and what was asked.
#[derive(Debug, Clone)]
pub struct EditUpload {
    pub source: Vec<u8>,
    pub mask: Option<Vec<u8>>,
    pub size: SizeChoice,
    pub strength: Option<f32>,
}

/// The prepared edit and the exact size it is made at.
#[derive(Debug, Clone)]
pub struct PreparedEdit {
    pub source: EditSource,
    pub width: u32,
    pub height: u32,
}

pub async fn prepare_edit(
    upload: EditUpload,
    model: &ModelEntry,
    policy: SizePolicy,
) -> Result<PreparedEdit, PrepareError> {
    // Sizes first: nothing below may allocate for a size that is not allowed.
    if let SizeChoice::Exact(w, h) = upload.size {
        request::check_size(w, h, model, policy).map_err(|e| bad("size", e.message))?;
    }
    if let Some(s) = upload.strength {
        if !(s > 0.0 && s <= 1.0) {
            return Err(bad(
                "strength",
                format!("must be above 0 and at most 1 (got {s})"),
            ));
        }
    }
    let max_side = model.presets.max_size;
    let _permit = DECODERS
        .acquire()
        .await
        .map_err(|_| bad("image", "the server is shutting down"))?;
    tokio::task::spawn_blocking(move || prepare_blocking(upload, max_side))
        .await
        .map_err(|e| bad("image", format!("preparing the image stopped: {e}")))?
}

fn prepare_blocking(upload: EditUpload, max_side: u32) -> Result<PreparedEdit, PrepareError> {
    let source = encode::decode(&upload.source).map_err(|e| bad("image", e.to_string()))?;
    let (width, height) = match upload.size {
        SizeChoice::Exact(w, h) => (w, h),
        SizeChoice::Auto => edit::fit_size(source.dimensions(), max_side),
    };
    let image = edit::resize_rgb(&source, width, height);
    drop(source);
    let mask = match &upload.mask {
        Some(bytes) => {
            let rgba = encode::decode_rgba(bytes).map_err(|e| bad("mask", e.to_string()))?;
            Some(edit::resize_rgba(&rgba, width, height))
        }
        None => None,
    };
    let strength = upload.strength.unwrap_or(if mask.is_some() {
        DEFAULT_MASKED_STRENGTH
    } else {
        DEFAULT_STRENGTH
    });
    Ok(PreparedEdit {
        source: EditSource {
            image,
            mask,
            strength,
        },
        width,
        height,
    })
}
