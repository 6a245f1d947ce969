//! A run is one assistant turn, living on the server rather than in an HTTP request: the browser
//! starts it, goes away, and comes back. Every event the run emits is kept in order with an id
//! (a [`replay::Log`]), so a subscriber that arrives late replays from the start and
//! `Last-Event-ID` resumes exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::api::events::{self as ev, ImageProgress};
use tokio_util::sync::CancellationToken;

use crate::replay::Log;

/// One server-sent event of a run. `data` is JSON text, serialised once.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub name: &'static str,
    pub data: Arc<str>,
    /// For `image.progress`: the image it is about (a newer one replaces it in the log).
    progress_of: Option<u32>,
}

pub struct RunHandle {
    pub id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub assistant_message_id: String,
    pub log: Arc<Log<RunEvent>>,
    cancel: CancellationToken,
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
            log: Arc::new(Log::default()),
            cancel: CancellationToken::new(),
        }
    }

    /// Appends an event; ignored once the run has ended.
    pub fn emit<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        if let Some(event) = self.event(name, payload, None) {
            self.log.push(event);
        }
    }

    /// Emits the final event and closes the log in one step, so nothing can follow it.
    pub fn end<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        if let Some(event) = self.event(name, payload, None) {
            self.log.end(event);
        }
    }

    /// Appends an `image.progress` event; earlier progress of the same image is dropped from
    /// the log (a replay only needs the newest step and picture), so long runs stay small.
    pub fn emit_progress(&self, payload: &ImageProgress) {
        let index = payload.index;
        if let Some(event) = self.event(ev::IMAGE_PROGRESS, payload, Some(index)) {
            self.log
                .push_replacing(event, |e| e.progress_of == Some(index));
        }
    }

    fn event<T: serde::Serialize>(
        &self,
        name: &'static str,
        payload: &T,
        progress_of: Option<u32>,
    ) -> Option<RunEvent> {
        match serde_json::to_string(payload) {
            Ok(text) => Some(RunEvent {
                name,
                data: text.into(),
                progress_of,
            }),
            Err(e) => {
                tracing::error!(run = %self.id, "cannot serialise {name}: {e}");
                None
            }
        }
    }

    pub fn is_ended(&self) -> bool {
        self.log.is_ended()
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::api::events::MessageDelta;

    fn run() -> RunHandle {
        RunHandle::new("r".into(), "u".into(), "c".into(), "m".into())
    }

    #[test]
    fn late_subscriber_replays_from_start_and_resumes_after_an_id() {
        let r = run();
        for t in ["a", "b", "c"] {
            r.emit("message.delta", &MessageDelta { text: t.into() });
        }
        let (all, ended) = r.log.after(0);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(!ended);
        let (rest, _) = r.log.after(2);
        assert_eq!(rest.len(), 1);
        assert!(rest[0].event.data.contains("\"c\""));
        r.end("run.finished", &serde_json::json!({"status": "finished"}));
        r.emit(
            "message.delta",
            &MessageDelta {
                text: "ignored".into(),
            },
        );
        let (all, ended) = r.log.after(0);
        assert_eq!(all.len(), 4);
        assert!(ended);
    }

    #[test]
    fn only_the_latest_progress_of_an_image_is_replayed() {
        let r = run();
        for step in 1..=3 {
            for index in 0..2 {
                r.emit_progress(&ImageProgress {
                    index,
                    step,
                    steps: 3,
                    preview: Some(format!("p{index}-{step}")),
                });
            }
        }
        let all = r.log.all();
        assert_eq!(all.len(), 2);
        assert!(all[0].event.data.contains("p0-3"));
        assert!(all[1].event.data.contains("p1-3"));
    }
}
