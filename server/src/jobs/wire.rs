//! The one adapter from job events to the wire events chat runs and the Studio stream send
//! (`image.queued`, `image.position`, `image.progress`, `image.done`). A chat job's indexes are
//! message-level (its first image comes after earlier calls' images); a Studio job's start at 0.

use app::api::events::{ImageDone, ImagePosition, ImageProgress, ImageQueued};

use super::{JobEvent, JobImage, LiveJob};
use crate::imaging::encode;

/// One wire event.
#[derive(Debug, Clone)]
pub enum WireEvent {
    Queued(ImageQueued),
    Position(ImagePosition),
    Progress(ImageProgress),
    Done(ImageDone),
}

/// Turns one job's events into wire events for one follower (it remembers whether the job was
/// announced yet: the first `Queued` is `image.queued`, later ones `image.position`).
pub struct Translator {
    /// The id events name the job by (the tool call's id in chat, the job id in Studio).
    call_id: String,
    offset: u32,
    announced: bool,
}

impl Translator {
    pub fn new(job: &LiveJob) -> Translator {
        let (call_id, offset) = match &job.origin {
            super::JobOrigin::Chat {
                tool_call_id,
                first_index,
                ..
            } => (tool_call_id.clone(), *first_index),
            _ => (job.id.clone(), 0),
        };
        Translator {
            call_id,
            offset,
            announced: false,
        }
    }

    pub fn translate(&mut self, job: &LiveJob, event: &JobEvent) -> Vec<WireEvent> {
        match event {
            JobEvent::Queued { position } if !self.announced => {
                self.announced = true;
                vec![WireEvent::Queued(self.queued(job, *position))]
            }
            JobEvent::Queued { position } => vec![WireEvent::Position(ImagePosition {
                tool_call_id: self.call_id.clone(),
                queue_position: *position,
            })],
            JobEvent::Started | JobEvent::Ended(_) => {
                // A job replayed from the database after its queue time still announces itself.
                self.announce(job)
            }
            JobEvent::Progress {
                first,
                step,
                steps,
                previews,
                ..
            } => {
                let mut out = self.announce(job);
                out.extend(previews.iter().enumerate().map(|(k, preview)| {
                    WireEvent::Progress(ImageProgress {
                        index: self.offset + first + k as u32,
                        step: *step,
                        steps: *steps,
                        preview: preview.as_ref().and_then(encode::preview_data_url),
                    })
                }));
                out
            }
            JobEvent::Image(image) => {
                let mut out = self.announce(job);
                out.push(WireEvent::Done(self.done(image)));
                out
            }
        }
    }

    fn announce(&mut self, job: &LiveJob) -> Vec<WireEvent> {
        if self.announced {
            return Vec::new();
        }
        self.announced = true;
        vec![WireEvent::Queued(self.queued(job, 0))]
    }

    fn queued(&self, job: &LiveJob, position: usize) -> ImageQueued {
        ImageQueued {
            tool_call_id: self.call_id.clone(),
            count: job.spec.n,
            first_index: self.offset,
            width: job.spec.width,
            height: job.spec.height,
            prompt: if job.spec.shown_prompt.is_empty() {
                job.spec.prompt.clone()
            } else {
                job.spec.shown_prompt.clone()
            },
            queue_position: position,
        }
    }

    fn done(&self, image: &JobImage) -> ImageDone {
        ImageDone {
            index: self.offset + image.index,
            image_id: image.id.clone(),
            url: app::api::image_url(&image.id, "png"),
            thumbnail_url: app::api::thumbnail_url(&image.id),
            width: image.width,
            height: image.height,
            seed: image.seed,
        }
    }
}
