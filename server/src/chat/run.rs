//! A run is one assistant turn, living on the server rather than in an HTTP request: the browser
//! starts it, goes away, and comes back. Every event the run emits is kept in order with an id,
//! so a subscriber that arrives late replays from the start and `Last-Event-ID` resumes exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One server-sent event of a run. `data` is JSON text, serialised once.
#[derive(Debug, Clone)]
pub struct RunEvent {
    /// 1, 2, 3… within the run; the SSE `id:`.
    pub id: u64,
    pub name: &'static str,
    pub data: Arc<str>,
}

/// An image finished during the run but not yet committed with its message: the images
/// endpoints serve it from here until the run's final transaction stores it.
#[derive(Debug, Clone)]
pub struct PendingImage {
    pub png: Arc<Vec<u8>>,
    pub thumbnail: Arc<Vec<u8>>,
}

#[derive(Default)]
struct RunLog {
    events: Vec<RunEvent>,
    ended: bool,
    /// Position in `events` of the latest `image.progress` per image, whose preview is the only
    /// one worth replaying; older previews are dropped to keep memory flat on long runs.
    last_progress: HashMap<u32, usize>,
}

pub struct RunHandle {
    pub id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub assistant_message_id: String,
    log: Mutex<RunLog>,
    /// Number of events so far; subscribers wake on change.
    counter: watch::Sender<u64>,
    cancel: CancellationToken,
    pending_images: Mutex<HashMap<String, PendingImage>>,
}

impl RunHandle {
    pub fn new(
        id: String,
        user_id: String,
        conversation_id: String,
        assistant_message_id: String,
    ) -> Self {
        Self {
            id,
            user_id,
            conversation_id,
            assistant_message_id,
            log: Mutex::default(),
            counter: watch::Sender::new(0),
            cancel: CancellationToken::new(),
            pending_images: Mutex::default(),
        }
    }

    /// Appends an event; ignored once the run has ended.
    pub fn emit<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        self.push(name, payload, false);
    }

    /// Emits the final event and closes the log in one step, so nothing can follow it.
    pub fn end<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        self.push(name, payload, true);
    }

    fn push<T: serde::Serialize>(&self, name: &'static str, payload: &T, last: bool) {
        let data: Arc<str> = match serde_json::to_string(payload) {
            Ok(text) => text.into(),
            Err(e) => {
                tracing::error!(run = %self.id, "cannot serialise {name}: {e}");
                return;
            }
        };
        let count = {
            let mut log = lock(&self.log);
            if log.ended {
                return;
            }
            let id = log.events.len() as u64 + 1;
            log.events.push(RunEvent { id, name, data });
            log.ended = last;
            log.events.len() as u64
        };
        self.counter.send_replace(count);
    }

    /// Appends an `image.progress` event; when it carries a preview, the preview of that image's
    /// previous event is dropped (a replay only needs the newest picture).
    pub fn emit_progress(&self, payload: &app::api::events::ImageProgress) {
        let Ok(text) = serde_json::to_string(payload) else {
            return;
        };
        let count = {
            let mut log = lock(&self.log);
            if log.ended {
                return;
            }
            let previous = if payload.preview.is_some() {
                log.last_progress.get(&payload.index).copied()
            } else {
                None
            };
            if let Some(previous) = previous {
                if let Some(old) = log.events.get_mut(previous) {
                    if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&old.data) {
                        if value.get("preview").is_some() {
                            if let Some(obj) = value.as_object_mut() {
                                obj.remove("preview");
                            }
                            old.data = value.to_string().into();
                        }
                    }
                }
            }
            let id = log.events.len() as u64 + 1;
            log.events.push(RunEvent {
                id,
                name: app::api::events::IMAGE_PROGRESS,
                data: text.into(),
            });
            if payload.preview.is_some() {
                let position = log.events.len() - 1;
                log.last_progress.insert(payload.index, position);
            }
            log.events.len() as u64
        };
        self.counter.send_replace(count);
    }

    pub fn is_ended(&self) -> bool {
        lock(&self.log).ended
    }

    /// Events with an id greater than `after`, and whether the run has ended.
    pub fn events_after(&self, after: u64) -> (Vec<RunEvent>, bool) {
        let log = lock(&self.log);
        let start = (after as usize).min(log.events.len());
        (log.events[start..].to_vec(), log.ended)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.counter.subscribe()
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn add_pending_image(&self, id: &str, image: PendingImage) {
        lock(&self.pending_images).insert(id.to_string(), image);
    }

    pub fn pending_image(&self, id: &str) -> Option<PendingImage> {
        lock(&self.pending_images).get(id).cloned()
    }

    pub fn remove_pending_image(&self, id: &str) -> bool {
        lock(&self.pending_images).remove(id).is_some()
    }

    pub fn clear_pending_images(&self) {
        lock(&self.pending_images).clear();
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (an event
/// log) is still consistent, so keep serving rather than cascading the panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The live runs, by id. Ended runs stay for a while so late subscribers still get the events.
#[derive(Clone, Default)]
pub struct RunRegistry {
    runs: Arc<Mutex<HashMap<String, Arc<RunHandle>>>>,
}

/// How long an ended run's events stay replayable from memory.
const KEEP_ENDED_RUN: Duration = Duration::from_secs(10 * 60);

impl RunRegistry {
    pub fn insert(&self, run: Arc<RunHandle>) {
        lock(&self.runs).insert(run.id.clone(), run);
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunHandle>> {
        lock(&self.runs).get(id).cloned()
    }

    /// Forgets an ended run after [`KEEP_ENDED_RUN`].
    pub fn retire(&self, id: &str) {
        let runs = self.runs.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_ENDED_RUN).await;
            lock(&runs).remove(&id);
        });
    }

    /// Runs still producing, so shutdown can cancel them and let them record their state.
    pub fn live(&self) -> Vec<Arc<RunHandle>> {
        lock(&self.runs)
            .values()
            .filter(|r| !r.is_ended())
            .cloned()
            .collect()
    }

    /// The run (live or recently ended) holding an image not yet committed.
    pub fn pending_image(&self, user_id: &str, image_id: &str) -> Option<PendingImage> {
        lock(&self.runs)
            .values()
            .filter(|r| r.user_id == user_id)
            .find_map(|r| r.pending_image(image_id))
    }

    /// Drops an uncommitted image (the user deleted it mid-run); true if one was found.
    pub fn remove_pending_image(&self, user_id: &str, image_id: &str) -> bool {
        lock(&self.runs)
            .values()
            .filter(|r| r.user_id == user_id)
            .any(|r| r.remove_pending_image(image_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::events::{ImageProgress, MessageDelta};

    fn run() -> RunHandle {
        RunHandle::new("r".into(), "u".into(), "c".into(), "m".into())
    }

    #[test]
    fn late_subscriber_replays_from_start_and_resumes_after_an_id() {
        let r = run();
        for t in ["a", "b", "c"] {
            r.emit("message.delta", &MessageDelta { text: t.into() });
        }
        let (all, ended) = r.events_after(0);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(!ended);
        let (rest, _) = r.events_after(2);
        assert_eq!(rest.len(), 1);
        assert!(rest[0].data.contains("\"c\""));
        r.end("run.finished", &serde_json::json!({"status": "finished"}));
        r.emit(
            "message.delta",
            &MessageDelta {
                text: "ignored".into(),
            },
        );
        let (all, ended) = r.events_after(0);
        assert_eq!(all.len(), 4);
        assert!(ended);
    }

    #[test]
    fn only_the_latest_preview_of_an_image_is_kept() {
        let r = run();
        for step in 1..=3 {
            r.emit_progress(&ImageProgress {
                index: 0,
                step,
                steps: 3,
                preview: Some(format!("p{step}")),
            });
        }
        let (all, _) = r.events_after(0);
        assert!(!all[0].data.contains("preview"));
        assert!(!all[1].data.contains("preview"));
        assert!(all[2].data.contains("p3"));
    }
}
