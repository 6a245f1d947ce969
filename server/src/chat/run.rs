//! A run is one assistant turn, living on the server rather than in an HTTP request: the browser
//! starts it, goes away, and comes back. Every event the run emits is kept in order with an id
//! (a [`replay::Log`]), so a subscriber that arrives late replays from the start and
//! `Last-Event-ID` resumes exactly.
//!
//! Several processes on one database (see `cluster`): one node drives the run (it holds the
//! run's lease); its events are also written to `run_events` with the same ids and announced,
//! so a browser connected to any node follows the run ([`RunRegistry::follow_stored`]) and
//! resumes anywhere, and a cancel asked anywhere reaches the driving node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::api::events::{self as ev, ImageProgress};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Topic};
use crate::replay::Log;
use crate::store::{RunRecord, RunStatus, Store, StoreError, StoredEvent};

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
    /// Where events also go to be written to the database (several processes).
    mirror: Option<mpsc::UnboundedSender<Mirrored>>,
}

/// An event on its way to `run_events`.
struct Mirrored {
    id: u64,
    name: &'static str,
    data: Arc<str>,
    progress_of: Option<u32>,
    last: bool,
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
            mirror: None,
        }
    }

    /// Appends an event; ignored once the run has ended.
    pub fn emit<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        if let Some(event) = self.event(name, payload, None) {
            let id = self.log.push(event.clone());
            self.mirror(id, event, false);
        }
    }

    /// Emits the final event and closes the log in one step, so nothing can follow it.
    pub fn end<T: serde::Serialize>(&self, name: &'static str, payload: &T) {
        if let Some(event) = self.event(name, payload, None) {
            let id = self.log.end(event.clone());
            self.mirror(id, event, true);
        }
    }

    fn mirror(&self, id: Option<u64>, event: RunEvent, last: bool) {
        if let (Some(id), Some(mirror)) = (id, &self.mirror) {
            let _ = mirror.send(Mirrored {
                id,
                name: event.name,
                data: event.data,
                progress_of: event.progress_of,
                last,
            });
        }
    }

    /// Appends an `image.progress` event; earlier progress of the same image is dropped from
    /// the log (a replay only needs the newest step and picture), so long runs stay small.
    pub fn emit_progress(&self, payload: &ImageProgress) {
        let index = payload.index;
        if let Some(event) = self.event(ev::IMAGE_PROGRESS, payload, Some(index)) {
            let id = self
                .log
                .push_replacing(event.clone(), |e| e.progress_of == Some(index));
            self.mirror(id, event, false);
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
#[derive(Clone)]
pub struct RunRegistry {
    runs: Arc<Mutex<HashMap<String, Arc<RunHandle>>>>,
    store: Store,
    cluster: Cluster,
}

/// How long an ended run's events stay replayable from memory.
const KEEP_ENDED_RUN: Duration = Duration::from_secs(10 * 60);
/// A follower on another node also looks on this tick, in case a notification was lost.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a follower waits for the closing event of a run the database says has ended (the
/// driving node writes it just after), before it says how the run ended itself.
const CLOSING_GRACE: Duration = Duration::from_secs(3);

impl RunRegistry {
    pub fn new(store: Store, cluster: Cluster) -> RunRegistry {
        RunRegistry {
            runs: Arc::default(),
            store,
            cluster,
        }
    }

    /// Starts driving a run in this process: its events are kept (and, with several
    /// processes, written to the database) and a cancel asked on any node reaches it.
    pub fn start(
        &self,
        id: String,
        user_id: String,
        conversation_id: String,
        assistant_message_id: String,
    ) -> Arc<RunHandle> {
        let mut handle = RunHandle::new(id, user_id, conversation_id, assistant_message_id);
        if self.cluster.distributed() {
            let (tx, rx) = mpsc::unbounded_channel();
            handle.mirror = Some(tx);
            tokio::spawn(write_events(
                self.store.clone(),
                self.cluster.clone(),
                handle.id.clone(),
                rx,
            ));
        }
        let run = Arc::new(handle);
        self.cluster
            .on_cancel(&Topic::Run(run.id.clone()), run.cancel_token());
        lock(&self.runs).insert(run.id.clone(), run.clone());
        run
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunHandle>> {
        lock(&self.runs).get(id).cloned()
    }

    /// Forgets an ended run after [`KEEP_ENDED_RUN`].
    pub fn retire(&self, id: &str) {
        self.cluster.done_with(&Topic::Run(id.to_string()));
        let runs = self.runs.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_ENDED_RUN).await;
            lock(&runs).remove(&id);
        });
    }

    /// Stops a run wherever it is driven. False when it is not running (anywhere).
    pub async fn cancel(&self, id: &str) -> Result<bool, StoreError> {
        if let Some(run) = self.get(id).filter(|r| !r.is_ended()) {
            run.cancel();
            return Ok(true);
        }
        self.cluster.cancel(&Topic::Run(id.to_string())).await
    }

    /// Whether runs driven by other processes can be followed from the database.
    pub fn shared(&self) -> bool {
        self.cluster.distributed()
    }

    /// Runs still producing, so shutdown can cancel them and let them record their state.
    pub fn live(&self) -> Vec<Arc<RunHandle>> {
        lock(&self.runs)
            .values()
            .filter(|r| !r.is_ended())
            .cloned()
            .collect()
    }

    /// Follows a run this process does not drive, from its stored events (after `after`),
    /// until its closing event. A run whose events are gone (ended long ago) gets one closing
    /// event saying how it ended.
    pub fn follow_stored(
        &self,
        run: RunRecord,
        after: u64,
    ) -> impl Stream<Item = StoredEvent> + Send + 'static {
        struct Follow {
            store: Store,
            cluster: Cluster,
            run: RunRecord,
            cursor: i64,
            wake: tokio::sync::watch::Receiver<u64>,
            ended_seen: Option<Instant>,
            done: bool,
        }
        let topic = Topic::Run(run.id.clone());
        let state = Follow {
            wake: self.cluster.follow(&topic),
            store: self.store.clone(),
            cluster: self.cluster.clone(),
            cursor: i64::try_from(after).unwrap_or(i64::MAX),
            run,
            ended_seen: None,
            done: false,
        };
        futures_util::stream::unfold(state, |mut f| async move {
            if f.done {
                f.cluster.unfollow(&Topic::Run(f.run.id.clone()));
                return None;
            }
            loop {
                let rows = f
                    .store
                    .run_events_after(&f.run.id, f.cursor)
                    .await
                    .unwrap_or_default();
                if !rows.is_empty() {
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        f.cursor = row.id;
                        let closing = is_closing(&row.name);
                        out.push(row);
                        if closing {
                            f.done = true;
                            break;
                        }
                    }
                    return Some((futures_util::stream::iter(out), f));
                }
                let status = f
                    .store
                    .get_run(&f.run.user_id, &f.run.id)
                    .await
                    .ok()
                    .flatten();
                match status {
                    Some(record) if record.status != RunStatus::Running => {
                        let since = *f.ended_seen.get_or_insert_with(Instant::now);
                        if since.elapsed() >= CLOSING_GRACE {
                            f.done = true;
                            let (name, data) = closing_event(&record);
                            let event = StoredEvent {
                                id: f.cursor + 1,
                                name: name.to_string(),
                                data,
                            };
                            return Some((futures_util::stream::iter(vec![event]), f));
                        }
                    }
                    Some(_) => {}
                    None => return None,
                }
                let wait = if f.ended_seen.is_some() {
                    Duration::from_millis(250)
                } else {
                    POLL_EVERY
                };
                tokio::select! {
                    _ = f.wake.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
        .flatten()
    }
}

/// Whether an event is a run's last.
fn is_closing(name: &str) -> bool {
    matches!(name, ev::RUN_FINISHED | ev::RUN_CANCELLED | ev::RUN_ERROR)
}

/// The closing event of a run that has ended, from its record.
pub fn closing_event(record: &RunRecord) -> (&'static str, String) {
    let (name, data) = match record.status {
        RunStatus::Finished => (
            ev::RUN_FINISHED,
            serde_json::json!({"run_id": record.id, "status": "finished"}),
        ),
        RunStatus::Cancelled => (
            ev::RUN_CANCELLED,
            serde_json::json!({"run_id": record.id, "status": "cancelled"}),
        ),
        _ => (
            ev::RUN_ERROR,
            serde_json::json!({
                "code": record.error_code.clone().unwrap_or_else(|| "interrupted".into()),
                "message": record.error_message.clone().unwrap_or_else(|| "The run ended without a result.".into())
            }),
        ),
    };
    (name, data.to_string())
}

/// Writes a run's events to the database in order and announces them; a burst is written
/// together, keeping only the newest progress of each image.
async fn write_events(
    store: Store,
    cluster: Cluster,
    run: String,
    mut events: mpsc::UnboundedReceiver<Mirrored>,
) {
    let topic = Topic::Run(run.clone());
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        let last = batch.iter().any(|e| e.last);
        let newest_progress: HashMap<u32, u64> = batch
            .iter()
            .filter_map(|e| e.progress_of.map(|i| (i, e.id)))
            .collect();
        for e in &batch {
            if e.progress_of
                .is_some_and(|i| newest_progress.get(&i) != Some(&e.id))
            {
                continue;
            }
            if let Err(err) = store
                .insert_run_event(
                    &run,
                    e.id as i64,
                    e.name,
                    &e.data,
                    e.progress_of.map(i64::from),
                )
                .await
            {
                tracing::warn!(run = %run, "cannot keep the run's event: {err}");
            }
        }
        cluster.announce(&topic).await;
        if last {
            return;
        }
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
