//! Running a Studio job: the request the form describes, prompt enhancement first when it is
//! on, starting the job, following its events into the results and the status line, and stop.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::StudioState;
use crate::api::events as ev;
use crate::api::{EnhanceRequest, EnhanceResponse, Image, StudioJob, StudioRequest};
use crate::browser;
use crate::client::{self, RunEvents};
use crate::images::{self, ImageEvent, ImageSlot, ImageUpdate};

impl StudioState {
    /// The request the form describes now.
    pub(super) fn request(self) -> StudioRequest {
        let src = self.source.get_untracked();
        StudioRequest {
            model: self.current_model.get_untracked().map(|m| m.id),
            prompt: self.prompt.get_untracked(),
            negative_prompt: self.negative.get_untracked(),
            n: self.count.get_untracked(),
            size: if src.is_some() && self.exact_size.get_untracked().is_empty() {
                "auto".into()
            } else {
                self.size.get_untracked()
            },
            quality: None,
            steps: self.steps.get_untracked().trim().parse().ok(),
            guidance: self.guidance.get_untracked().trim().parse().ok(),
            sampler: Some(self.sampler.get_untracked()).filter(|s| !s.is_empty()),
            schedule: Some(self.schedule.get_untracked()).filter(|s| !s.is_empty()),
            seed: self.seed.get_untracked().trim().parse().ok(),
            style: Some(self.style.get_untracked()).filter(|s| s != "auto"),
            preview: self.preview.get_untracked(),
            source_image_id: src.as_ref().and_then(|s| s.image_id.clone()),
            source_image_b64: src.as_ref().and_then(|s| s.b64.clone()),
            mask_b64: src.as_ref().and_then(|_| browser::mask_png("mask-canvas")),
            strength: src.as_ref().map(|_| self.strength.get_untracked()),
            long_prompts: Some(self.long_prompts.get_untracked()).filter(|s| !s.is_empty()),
            prompt_weighting: Some(self.weighting.get_untracked()),
        }
    }

    /// Generate: with prompt enhancement on, the rewritten prompt is shown first.
    pub(super) fn generate(self) {
        if self.job.get_untracked().is_some() || self.credits.short().is_some() {
            return;
        }
        let body = self.request();
        if self.enhance.get_untracked() && self.enhanced.get_untracked().is_none() {
            if body.prompt.trim().is_empty() {
                self.toasts.error("Write a prompt first.");
                return;
            }
            self.status.set(Some("Enhancing the prompt…".into()));
            spawn_local(async move {
                match client::send::<_, EnhanceResponse>(
                    "POST",
                    "/api/studio/enhance",
                    &EnhanceRequest {
                        prompt: body.prompt.clone(),
                    },
                )
                .await
                {
                    Ok(r) => {
                        self.status.set(None);
                        self.enhanced.set(Some(r.prompt));
                    }
                    Err(e) => {
                        self.status.set(None);
                        self.toasts.error(e.message);
                    }
                }
            });
            return;
        }
        self.run(body);
    }

    /// Takes the enhanced prompt into the box and generates with it.
    pub(super) fn use_enhanced(self) {
        if let Some(text) = self.enhanced.get_untracked() {
            self.prompt.set(text.clone());
            self.enhanced.set(None);
            let mut body = self.request();
            body.prompt = text;
            self.run(body);
        }
    }

    pub(super) fn stop(self) {
        if let Some(id) = self.job.get_untracked() {
            spawn_local(async move {
                let _ = client::call("POST", &format!("/api/studio/jobs/{id}/cancel")).await;
            });
        }
    }

    /// Starts a job and follows it.
    pub(super) fn run(self, body: StudioRequest) {
        if body.prompt.trim().is_empty() {
            self.toasts.error("Write a prompt first.");
            return;
        }
        self.subscription.set_value(None);
        self.slots.set(Vec::new());
        self.selected.set(0);
        self.status.set(Some("Starting…".into()));
        spawn_local(async move {
            match client::send::<_, StudioJob>("POST", "/api/studio/generations", &body).await {
                Ok(started) => {
                    // Left the Studio while the job was being queued: it runs on, and shows
                    // in the gallery; there is no page to follow it.
                    if self.job.try_set(Some(started.job_id.clone())).is_some() {
                        return;
                    }
                    let handle = RunEvents::open_url(
                        &format!("/api/studio/jobs/{}/events", started.job_id),
                        move |name, data| self.apply_event(name, data),
                    );
                    // Handed back (and so closed) if the page went meanwhile.
                    self.subscription.try_set_value(handle);
                }
                Err(e) => {
                    self.status.try_set(None);
                    self.toasts.error(e.message);
                }
            }
        });
    }

    /// Applies one event of the running job: images through the shared reducer, the rest here.
    fn apply_event(self, name: &str, data: &str) {
        let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
        if let Some(event) = ImageEvent::parse(name, &value) {
            match images::apply_to(self.slots, event) {
                ImageUpdate::Waiting { ahead } => self.status.set(Some(if ahead > 0 {
                    format!("Waiting ({ahead} ahead)…")
                } else {
                    "Painting…".into()
                })),
                ImageUpdate::Painting { step, steps } => {
                    self.status.set(Some(format!("Step {step} of {steps}")))
                }
                ImageUpdate::Finished | ImageUpdate::Ended => {}
            }
        }
        match name {
            ev::RUN_FINISHED => {
                self.status.set(None);
                self.job.set(None);
                self.gallery_version.update(|v| *v += 1);
                complete_results(self.slots);
            }
            ev::RUN_CANCELLED => {
                self.status.set(Some("Stopped.".into()));
                self.job.set(None);
                self.gallery_version.update(|v| *v += 1);
                complete_results(self.slots);
            }
            ev::RUN_ERROR => {
                if let Ok(e) = serde_json::from_value::<ev::RunError>(value) {
                    self.toasts.error(e.message.clone());
                    self.status.set(Some(e.message));
                }
                self.job.set(None);
            }
            _ => {}
        }
    }
}

/// Replaces the results' provisional records (from `image.done`) with the stored ones, which
/// carry the full generation metadata the viewer and "Edit" show.
fn complete_results(slots: RwSignal<Vec<ImageSlot>>) {
    spawn_local(async move {
        let Ok(stored) = client::get::<Vec<Image>>("/api/studio/images?limit=50").await else {
            return;
        };
        slots.update(|list| {
            for slot in list.iter_mut() {
                if let Some(image) = &slot.image {
                    if let Some(full) = stored.iter().find(|g| g.id == image.id) {
                        slot.image = Some(full.clone());
                    }
                }
            }
        });
    });
}
