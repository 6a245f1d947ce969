//! Paint: run a request through the engine's queue and encode each image (PNG with its
//! parameters, a thumbnail) the moment it is decoded. The chat tool, Image Studio and the
//! images API all use this one path, and differ only in where the events go.

use app::api::events::ImageProgress;
use image::RgbImage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::request::GenerationRequest;
use super::{encode, parameters_text, EngineError, EngineEvent, ImageEngine};

/// An encoded image of a request.
#[derive(Debug, Clone)]
pub struct Painted {
    /// Index within the request (0..n).
    pub index: u32,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
    pub thumbnail: Vec<u8>,
}

/// What a caller sees while a request is painted.
pub enum PaintEvent<'a> {
    Queued {
        position: usize,
    },
    /// A step of images `first..first + previews.len()`; previews as the rate asked.
    Step {
        first: u32,
        step: u32,
        steps: u32,
        previews: &'a [Option<RgbImage>],
    },
    Painted(&'a Painted),
}

/// The `image.progress` events of one step: one per image, numbered from `offset` (where the
/// request's images start in their message), each with its preview as a data URL when there
/// is one.
pub fn progress_events(
    offset: u32,
    first: u32,
    step: u32,
    steps: u32,
    previews: &[Option<RgbImage>],
) -> Vec<ImageProgress> {
    previews
        .iter()
        .enumerate()
        .map(|(k, preview)| ImageProgress {
            index: offset + first + k as u32,
            step,
            steps,
            preview: preview.as_ref().and_then(encode::preview_data_url),
        })
        .collect()
}

/// Runs `request` to the end (or until `cancel`), calling `on_event` in order.
/// Returns every painted image; on cancellation or failure, the error (images already
/// reported through `on_event` stay the caller's to keep).
pub async fn paint(
    engine: &ImageEngine,
    request: &GenerationRequest,
    cancel: CancellationToken,
    mut on_event: impl FnMut(PaintEvent<'_>),
) -> Result<Vec<Painted>, EngineError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let generation = engine.generate(request.clone(), tx, cancel);
    tokio::pin!(generation);
    let mut painted = Vec::new();
    let mut outcome = None;
    let mut events_open = true;
    while outcome.is_none() || events_open {
        tokio::select! {
            result = &mut generation, if outcome.is_none() => outcome = Some(result),
            event = rx.recv(), if events_open => match event {
                None => events_open = false,
                Some(EngineEvent::Queued { position }) => on_event(PaintEvent::Queued { position }),
                Some(EngineEvent::Started) => {}
                Some(EngineEvent::Step { first, step, steps, previews }) => {
                    on_event(PaintEvent::Step { first, step, steps, previews: &previews });
                }
                Some(EngineEvent::ImageReady(generated)) => {
                    let parameters = parameters_text(request, generated.seed);
                    let (index, seed) = (generated.index, generated.seed);
                    // Encoding takes milliseconds per image: off the async threads.
                    let encoded = tokio::task::spawn_blocking(move || {
                        let rgb = generated.rgb();
                        Ok::<_, encode::EncodeError>((rgb.width(), rgb.height(), encode::png(&rgb, Some(&parameters))?, encode::thumbnail(&rgb)?))
                    })
                    .await
                    .map_err(|e| EngineError::Failed(format!("encoding stopped: {e}")))?
                    .map_err(|e| EngineError::Failed(e.to_string()))?;
                    let (width, height, png, thumbnail) = encoded;
                    let image = Painted { index, seed, width, height, png, thumbnail };
                    on_event(PaintEvent::Painted(&image));
                    painted.push(image);
                }
            }
        }
    }
    match outcome {
        Some(Ok(_)) => Ok(painted),
        Some(Err(e)) => Err(e),
        None => Err(EngineError::Failed(
            "the image job ended without a result".into(),
        )),
    }
}
