//! The images of a job on screen, shared by the chat and Studio pages: one [`ImageSlot`] per
//! requested image (a placeholder with progress and previews until the image arrives) and the
//! one reducer that applies the image events of a run or Studio job to them. Each page keeps
//! its own events (message text, status line) and maps the returned [`ImageUpdate`] to its own
//! words; the slots themselves change the same way everywhere.

use leptos::prelude::*;

use crate::api::events as ev;
use crate::api::{Image, ImageMetadata};

/// One requested image: a placeholder with progress until the image arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSlot {
    /// Position of the image within its message (chat) or job (Studio).
    pub index: u32,
    /// The prompt as the person wrote it (placeholder labels, provisional alt text).
    pub prompt: String,
    /// Size of the image being made, so a placeholder can have its shape.
    pub width: u32,
    pub height: u32,
    pub step: u32,
    pub steps: u32,
    /// The latest live preview (`data:` URL).
    pub preview: Option<String>,
    pub image: Option<Image>,
}

impl ImageSlot {
    /// A slot for an image that already exists (a stored message's or a reloaded job's).
    pub fn finished(index: u32, image: Image) -> ImageSlot {
        ImageSlot {
            index,
            prompt: crate::components::viewer::user_prompt(&image),
            width: image.width,
            height: image.height,
            step: 0,
            steps: 0,
            preview: None,
            image: Some(image),
        }
    }
}

/// An event that concerns the image slots, parsed from a run's or job's event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageEvent {
    Queued(ev::ImageQueued),
    Position(ev::ImagePosition),
    Progress(ev::ImageProgress),
    Done(ev::ImageDone),
    /// The run failed or was cancelled: images not finished by now never will be.
    Ended,
}

impl ImageEvent {
    /// The image event named `name`, if it is one (and its data is well formed).
    pub fn parse(name: &str, data: &serde_json::Value) -> Option<ImageEvent> {
        fn parse<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Option<T> {
            serde_json::from_value(data.clone()).ok()
        }
        match name {
            ev::IMAGE_QUEUED => parse(data).map(ImageEvent::Queued),
            ev::IMAGE_POSITION => parse(data).map(ImageEvent::Position),
            ev::IMAGE_PROGRESS => parse(data).map(ImageEvent::Progress),
            ev::IMAGE_DONE => parse(data).map(ImageEvent::Done),
            ev::RUN_ERROR | ev::RUN_CANCELLED => Some(ImageEvent::Ended),
            _ => None,
        }
    }

    /// Whether applying it can change the slots (a queue position alone does not).
    fn touches_slots(&self) -> bool {
        !matches!(self, ImageEvent::Position(_))
    }
}

/// What an image event means for the page around the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUpdate {
    /// Waiting for the engine with `ahead` jobs in front (0: painting starts now).
    Waiting { ahead: usize },
    /// Painting: step `step` of `steps` of one image.
    Painting { step: u32, steps: u32 },
    /// One image is finished.
    Finished,
    /// The run ended early; unfinished slots are gone.
    Ended,
}

/// Applies one image event to the slots and says what it means for the page.
pub fn apply(slots: &mut Vec<ImageSlot>, event: ImageEvent) -> ImageUpdate {
    match event {
        ImageEvent::Queued(q) => {
            for index in q.first_index..q.first_index + q.count {
                // A replay after a reconnect announces the same images again.
                if !slots.iter().any(|s| s.index == index) {
                    slots.push(ImageSlot {
                        index,
                        prompt: q.prompt.clone(),
                        width: q.width,
                        height: q.height,
                        step: 0,
                        steps: 0,
                        preview: None,
                        image: None,
                    });
                }
            }
            ImageUpdate::Waiting {
                ahead: q.queue_position,
            }
        }
        ImageEvent::Position(p) => ImageUpdate::Waiting {
            ahead: p.queue_position,
        },
        ImageEvent::Progress(p) => {
            if let Some(slot) = slots.iter_mut().find(|s| s.index == p.index) {
                slot.step = p.step;
                slot.steps = p.steps;
                if p.preview.is_some() {
                    slot.preview = p.preview;
                }
            }
            ImageUpdate::Painting {
                step: p.step,
                steps: p.steps,
            }
        }
        ImageEvent::Done(d) => {
            if let Some(slot) = slots.iter_mut().find(|s| s.index == d.index) {
                slot.image = Some(Image {
                    id: d.image_id,
                    mime: "image/png".into(),
                    width: d.width,
                    height: d.height,
                    b64: None,
                    url: Some(d.url),
                    thumbnail_url: d.thumbnail_url,
                    // Provisional, until the page reloads the stored record.
                    metadata: ImageMetadata {
                        seed: d.seed,
                        width: d.width,
                        height: d.height,
                        tool_arguments: serde_json::json!({ "prompt": slot.prompt }),
                        ..Default::default()
                    },
                });
            }
            ImageUpdate::Finished
        }
        ImageEvent::Ended => {
            slots.retain(|s| s.image.is_some());
            ImageUpdate::Ended
        }
    }
}

/// Applies one image event to a page's slots signal, notifying only when the slots can change.
pub fn apply_to(slots: RwSignal<Vec<ImageSlot>>, event: ImageEvent) -> ImageUpdate {
    if event.touches_slots() {
        slots
            .try_update(|s| apply(s, event))
            .unwrap_or(ImageUpdate::Ended)
    } else {
        apply(&mut Vec::new(), event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(first_index: u32, count: u32, ahead: usize) -> ImageEvent {
        ImageEvent::Queued(ev::ImageQueued {
            tool_call_id: "call".into(),
            count,
            first_index,
            width: 768,
            height: 512,
            prompt: "a fox".into(),
            queue_position: ahead,
        })
    }

    fn progress(index: u32, step: u32, preview: Option<&str>) -> ImageEvent {
        ImageEvent::Progress(ev::ImageProgress {
            index,
            step,
            steps: 4,
            preview: preview.map(str::to_string),
        })
    }

    fn done(index: u32) -> ImageEvent {
        ImageEvent::Done(ev::ImageDone {
            index,
            image_id: format!("img{index}"),
            url: format!("/api/images/img{index}.png"),
            thumbnail_url: format!("/api/images/img{index}/thumbnail"),
            width: 768,
            height: 512,
            seed: 7,
        })
    }

    #[test]
    fn queued_adds_one_placeholder_per_image_with_its_shape_and_prompt() {
        let mut slots = Vec::new();
        assert_eq!(
            apply(&mut slots, queued(2, 3, 1)),
            ImageUpdate::Waiting { ahead: 1 }
        );
        assert_eq!(slots.iter().map(|s| s.index).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(slots.iter().all(|s| s.width == 768
            && s.height == 512
            && s.prompt == "a fox"
            && s.image.is_none()));
    }

    #[test]
    fn a_replayed_queued_event_does_not_duplicate_slots() {
        let mut slots = Vec::new();
        apply(&mut slots, queued(0, 2, 0));
        apply(&mut slots, progress(0, 2, Some("data:p")));
        apply(&mut slots, queued(0, 2, 0));
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].step, 2, "the replay keeps the progress");
    }

    #[test]
    fn progress_moves_the_step_and_keeps_the_last_preview() {
        let mut slots = Vec::new();
        apply(&mut slots, queued(0, 2, 0));
        assert_eq!(
            apply(&mut slots, progress(1, 1, Some("data:one"))),
            ImageUpdate::Painting { step: 1, steps: 4 }
        );
        apply(&mut slots, progress(1, 2, None));
        assert_eq!((slots[1].step, slots[1].steps), (2, 4));
        assert_eq!(slots[1].preview.as_deref(), Some("data:one"));
        assert_eq!(slots[0].step, 0, "other images are untouched");
    }

    #[test]
    fn done_fills_the_slot_with_a_provisional_record() {
        let mut slots = Vec::new();
        apply(&mut slots, queued(0, 2, 0));
        assert_eq!(apply(&mut slots, done(1)), ImageUpdate::Finished);
        let image = slots[1].image.as_ref().expect("image");
        assert_eq!(image.id, "img1");
        assert_eq!(image.url.as_deref(), Some("/api/images/img1.png"));
        assert_eq!(image.metadata.seed, 7);
        assert_eq!(image.metadata.tool_arguments["prompt"], "a fox");
        assert!(slots[0].image.is_none());
    }

    #[test]
    fn a_failed_or_cancelled_run_drops_only_unfinished_slots() {
        let mut slots = Vec::new();
        apply(&mut slots, queued(0, 3, 0));
        apply(&mut slots, done(1));
        assert_eq!(apply(&mut slots, ImageEvent::Ended), ImageUpdate::Ended);
        assert_eq!(slots.iter().map(|s| s.index).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_position_change_leaves_the_slots_alone() {
        let mut slots = Vec::new();
        apply(&mut slots, queued(0, 1, 3));
        let before = slots.clone();
        let event = ImageEvent::Position(ev::ImagePosition {
            tool_call_id: "call".into(),
            queue_position: 2,
        });
        assert_eq!(apply(&mut slots, event), ImageUpdate::Waiting { ahead: 2 });
        assert_eq!(slots, before);
    }

    #[test]
    fn parse_knows_image_and_run_end_events_only() {
        let data = serde_json::json!({ "index": 0, "step": 1, "steps": 4 });
        assert!(matches!(
            ImageEvent::parse(ev::IMAGE_PROGRESS, &data),
            Some(ImageEvent::Progress(_))
        ));
        assert_eq!(
            ImageEvent::parse(ev::RUN_CANCELLED, &serde_json::Value::Null),
            Some(ImageEvent::Ended)
        );
        assert_eq!(
            ImageEvent::parse(ev::MESSAGE_DELTA, &serde_json::json!({"text": "hi"})),
            None
        );
        assert_eq!(
            ImageEvent::parse(ev::IMAGE_DONE, &serde_json::json!({})),
            None
        );
        assert_eq!(ImageEvent::parse(ev::RUN_FINISHED, &data), None);
    }
}
