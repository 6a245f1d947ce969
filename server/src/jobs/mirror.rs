//! A job's events in the database, for when several processes share it (PostgreSQL): the
//! worker painting a job writes each event to `job_events` and announces it; every node that
//! follows the job mirrors those rows into its live job's log, under the same ids, so a Studio
//! stream resumes on any node with the same `Last-Event-ID`.
//!
//! Previews travel as PNG (lossless: a mirrored preview is the worker's picture), finished
//! images as their stored ids. Progress and queue positions replace the previous row of their
//! kind, as they do in memory, so a long job keeps few rows.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{JobEnd, JobEvent, JobImage, JobService, LiveJob};
use crate::cluster::Topic;
use crate::imaging::diffusion::pipeline::Timings;
use crate::imaging::encode;
use crate::store::{JobState, StoredEvent};

/// Followers also look on this tick, in case a notification was lost (a reconnect).
const POLL_EVERY: Duration = Duration::from_secs(1);

/// One event as a row: its kind, its JSON, whether the next of its kind replaces it.
pub(super) struct Row {
    pub kind: &'static str,
    pub data: String,
    pub replaceable: bool,
}

#[derive(Serialize, Deserialize)]
struct Progress {
    first: u32,
    step: u32,
    steps: u32,
    /// Base64 PNG per image (absent where the engine made none).
    previews: Vec<Option<String>>,
    milestone: bool,
}

#[derive(Serialize, Deserialize)]
struct Image {
    id: String,
    index: u32,
    seed: u64,
    width: u32,
    height: u32,
}

#[derive(Serialize, Deserialize)]
struct Ended {
    state: String,
    error: Option<(String, String)>,
    timings: Option<Timings>,
}

/// The row for an event (`None` for nothing worth keeping). Encoding previews is CPU work:
/// call it off the async threads when there are any.
pub(super) fn encode(event: &JobEvent) -> Option<Row> {
    let json = |v: serde_json::Result<String>| v.ok();
    Some(match event {
        JobEvent::Queued { position } => Row {
            kind: "queued",
            data: serde_json::json!({ "position": position }).to_string(),
            replaceable: true,
        },
        JobEvent::Started => Row {
            kind: "started",
            data: "{}".into(),
            replaceable: false,
        },
        JobEvent::Progress {
            first,
            step,
            steps,
            previews,
            milestone,
        } => Row {
            kind: "progress",
            data: json(serde_json::to_string(&Progress {
                first: *first,
                step: *step,
                steps: *steps,
                previews: previews
                    .iter()
                    .map(|p| {
                        let png = encode::png(p.as_ref()?, None).ok()?;
                        Some(base64::engine::general_purpose::STANDARD.encode(png))
                    })
                    .collect(),
                milestone: *milestone,
            }))?,
            replaceable: !milestone,
        },
        JobEvent::Image(image) => Row {
            kind: "image",
            data: json(serde_json::to_string(&Image {
                id: image.id.clone(),
                index: image.index,
                seed: image.seed,
                width: image.width,
                height: image.height,
            }))?,
            replaceable: false,
        },
        JobEvent::Ended(end) => Row {
            kind: "ended",
            data: json(serde_json::to_string(&Ended {
                state: end.state.as_str().into(),
                error: end.error.clone(),
                timings: end.timings,
            }))?,
            replaceable: false,
        },
    })
}

/// The event a row holds; `None` for a row this version cannot read (skipped, not fatal).
pub(super) fn decode(kind: &str, data: &str) -> Option<JobEvent> {
    Some(match kind {
        "queued" => {
            let v: serde_json::Value = serde_json::from_str(data).ok()?;
            JobEvent::Queued {
                position: v.get("position")?.as_u64()? as usize,
            }
        }
        "started" => JobEvent::Started,
        "progress" => {
            let p: Progress = serde_json::from_str(data).ok()?;
            JobEvent::Progress {
                first: p.first,
                step: p.step,
                steps: p.steps,
                previews: Arc::new(p.previews.iter().map(|b| preview(b.as_deref()?)).collect()),
                milestone: p.milestone,
            }
        }
        "image" => {
            let i: Image = serde_json::from_str(data).ok()?;
            JobEvent::Image(JobImage {
                id: i.id,
                index: i.index,
                seed: i.seed,
                width: i.width,
                height: i.height,
                pixels: None,
            })
        }
        "ended" => {
            let e: Ended = serde_json::from_str(data).ok()?;
            JobEvent::Ended(JobEnd {
                state: JobState::parse(&e.state)?,
                error: e.error,
                timings: e.timings,
            })
        }
        _ => return None,
    })
}

fn preview(b64: &str) -> Option<RgbImage> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(image::load_from_memory(&bytes).ok()?.to_rgb8())
}

/// Whether an older event in a log is made stale by `new` (the in-memory rule, also used for
/// mirrored logs).
pub(super) fn replaces(new: &JobEvent, old: &JobEvent) -> bool {
    match new {
        JobEvent::Queued { .. } => matches!(old, JobEvent::Queued { .. }),
        JobEvent::Progress { .. } => matches!(
            old,
            JobEvent::Progress {
                milestone: false,
                ..
            }
        ),
        _ => false,
    }
}

/// Mirrors a job's rows into its live log until the job ends (or this process stops).
pub(super) async fn tail(service: JobService, live: Arc<LiveJob>) {
    let inner = &service.inner;
    let topic = Topic::Job(live.id.clone());
    let mut wake = inner.cluster.follow(&topic);
    let mut cursor = 0i64;
    loop {
        let rows = match inner.store.job_events_after(&live.id, cursor).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(job = %live.id, "cannot read the job's events: {e}");
                Vec::new()
            }
        };
        let decoded = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|StoredEvent { id, name, data }| (id, decode(&name, &data)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (id, event) in decoded {
            cursor = id;
            let Some(event) = event else { continue };
            let last = matches!(event, JobEvent::Ended(_));
            let probe = event.clone();
            live.log
                .push_at(id.max(0) as u64, event, last, |old| replaces(&probe, old));
            if last {
                inner.cluster.unfollow(&topic);
                service.retire(&live.id);
                return;
            }
        }
        if live.log.is_ended() {
            return;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = inner.stopping.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_survives_the_database() {
        let preview = RgbImage::from_fn(8, 4, |x, y| image::Rgb([x as u8 * 30, y as u8 * 60, 7]));
        let events = [
            JobEvent::Queued { position: 3 },
            JobEvent::Started,
            JobEvent::Progress {
                first: 2,
                step: 5,
                steps: 9,
                previews: Arc::new(vec![Some(preview.clone()), None]),
                milestone: true,
            },
            JobEvent::Image(JobImage {
                id: "img".into(),
                index: 1,
                seed: u64::MAX,
                width: 64,
                height: 32,
                pixels: None,
            }),
            JobEvent::Ended(JobEnd {
                state: JobState::Failed,
                error: Some(("image_failed".into(), "Ω — 🎨".into())),
                timings: None,
            }),
        ];
        for event in events {
            let row = encode(&event).expect("encodes");
            let back = decode(row.kind, &row.data).expect("decodes");
            assert_eq!(format!("{event:?}"), format!("{back:?}"));
        }
        assert!(decode("from_a_newer_version", "{}").is_none());
        assert!(decode("progress", "not json").is_none());
    }
}
