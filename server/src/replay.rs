//! An append-only event log that late subscribers replay: every event gets the next id (1, 2,
//! 3…), a subscriber asks for the events after the id it last saw, then waits for more. Chat
//! runs and image jobs both keep one, so a client can leave and come back (`Last-Event-ID`)
//! without losing anything.
//!
//! A log may replace events that only matter while they are the newest (progress with a
//! preview picture): [`Log::push_replacing`] drops the older one, so a long job's log stays
//! small while ids stay in order.

use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt as _;
use tokio::sync::watch;

/// One event with its id.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub id: u64,
    pub event: T,
}

struct State<T> {
    entries: Vec<Entry<T>>,
    next_id: u64,
    ended: bool,
}

pub struct Log<T> {
    state: Mutex<State<T>>,
    /// The id of the newest event; subscribers wake when it changes.
    newest: watch::Sender<u64>,
}

impl<T: Clone> Default for Log<T> {
    fn default() -> Self {
        Log {
            state: Mutex::new(State {
                entries: Vec::new(),
                next_id: 1,
                ended: false,
            }),
            newest: watch::Sender::new(0),
        }
    }
}

impl<T: Clone> Log<T> {
    /// Appends an event; ignored once the log has ended. Returns its id.
    pub fn push(&self, event: T) -> Option<u64> {
        self.append(event, false, |_| false)
    }

    /// Appends the last event and closes the log in one step, so nothing can follow it.
    pub fn end(&self, event: T) -> Option<u64> {
        self.append(event, true, |_| false)
    }

    /// Appends an event and drops every earlier one for which `stale` holds.
    pub fn push_replacing(&self, event: T, stale: impl Fn(&T) -> bool) -> Option<u64> {
        self.append(event, false, stale)
    }

    /// Appends an event under a given id (a log mirrored from elsewhere keeps the source's
    /// ids, so `Last-Event-ID` means the same everywhere); ignored unless `id` comes after
    /// every id so far. With `last`, the log ends with it.
    pub fn push_at(
        &self,
        id: u64,
        event: T,
        last: bool,
        stale: impl Fn(&T) -> bool,
    ) -> Option<u64> {
        {
            let mut state = lock(&self.state);
            if state.ended || id < state.next_id {
                return None;
            }
            state.next_id = id;
        }
        self.append(event, last, stale)
    }

    fn append(&self, event: T, last: bool, stale: impl Fn(&T) -> bool) -> Option<u64> {
        let id = {
            let mut state = lock(&self.state);
            if state.ended {
                return None;
            }
            state.entries.retain(|e| !stale(&e.event));
            let id = state.next_id;
            state.next_id += 1;
            state.entries.push(Entry { id, event });
            state.ended = last;
            id
        };
        self.newest.send_replace(id);
        Some(id)
    }

    /// Closes the log without a final event (its owner is going away).
    pub fn close(&self) {
        lock(&self.state).ended = true;
        self.newest.send_modify(|_| {});
    }

    pub fn is_ended(&self) -> bool {
        lock(&self.state).ended
    }

    /// Events with an id greater than `after`, and whether the log has ended.
    pub fn after(&self, after: u64) -> (Vec<Entry<T>>, bool) {
        let state = lock(&self.state);
        let start = state.entries.partition_point(|e| e.id <= after);
        (state.entries[start..].to_vec(), state.ended)
    }

    /// Every event so far (in order).
    pub fn all(&self) -> Vec<Entry<T>> {
        self.after(0).0
    }

    /// Waits for events after `after`; returns them (empty only when the log ended).
    pub async fn next_after(&self, after: u64) -> (Vec<Entry<T>>, bool) {
        let mut receiver = self.newest.subscribe();
        loop {
            let (events, ended) = self.after(after);
            if !events.is_empty() || ended {
                return (events, ended);
            }
            if receiver.changed().await.is_err() {
                return (Vec::new(), true);
            }
        }
    }
}

/// A subscription that walks a shared log from a point, as a stream of entries.
pub fn follow<T: Clone + Send + Sync + 'static>(
    log: Arc<Log<T>>,
    after: u64,
) -> impl futures_util::Stream<Item = Entry<T>> + Send {
    futures_util::stream::unfold((log, after), |(log, cursor)| async move {
        // Empty only once the log has ended and everything was read.
        let (events, _) = log.next_after(cursor).await;
        let next = events.last()?.id;
        Some((futures_util::stream::iter(events), (log, next)))
    })
    .flatten()
}

/// A poisoned lock only means another thread panicked while holding it; an event log is still
/// consistent, so keep serving rather than cascading the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_readers_replay_and_resume_after_an_id() {
        let log = Log::default();
        for t in ["a", "b", "c"] {
            log.push(t);
        }
        let ids: Vec<u64> = log.all().iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let (rest, ended) = log.after(2);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event, "c");
        assert!(!ended);
        log.end("z");
        assert_eq!(log.push("ignored"), None);
        let (all, ended) = log.after(0);
        assert_eq!(all.len(), 4);
        assert!(ended);
    }

    #[test]
    fn replacing_drops_stale_events_and_keeps_ids_in_order() {
        let log = Log::default();
        log.push("start");
        for p in ["p1", "p2", "p3"] {
            log.push_replacing(p, |e: &&str| e.starts_with('p'));
        }
        let all = log.all();
        assert_eq!(
            all.iter().map(|e| e.event).collect::<Vec<_>>(),
            ["start", "p3"]
        );
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(
            log.after(2).0.len(),
            1,
            "a reader at a dropped id still resumes"
        );
    }

    #[test]
    fn a_mirrored_log_keeps_the_source_ids() {
        let log = Log::default();
        assert_eq!(log.push_at(3, "a", false, |_| false), Some(3));
        assert_eq!(log.push_at(3, "again", false, |_| false), None);
        assert_eq!(log.push_at(7, "b", true, |_| false), Some(7));
        assert_eq!(log.push_at(9, "after the end", false, |_| false), None);
        let (all, ended) = log.after(3);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [7]);
        assert!(ended);
    }

    #[tokio::test]
    async fn followers_get_live_events_until_the_end() {
        let log = Arc::new(Log::default());
        log.push(1);
        let reader = tokio::spawn(follow(log.clone(), 0).map(|e| e.event).collect::<Vec<_>>());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        log.push(2);
        log.end(3);
        assert_eq!(reader.await.unwrap(), [1, 2, 3]);
    }
}
