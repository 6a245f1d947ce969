//! Running jobs: the dispatcher that starts the next job (fairly) whenever a slot is free, and
//! the execution of one job: engine on a blocking thread, each finished image encoded and
//! stored before anyone is told about it, progress relayed, the end recorded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::queue::{self, LastServed, Waiting};
use super::{lock, publish, Inner, JobEnd, JobEvent, JobImage, JobService, LiveJob};
use crate::cluster::Topic;
use crate::imaging::diffusion::pipeline::Timings;
use crate::imaging::{encode, parameters_text, EngineError, EngineEvent};
use crate::store::{JobState, NewImage, Unfinished};

/// How often a running job's progress is written to the database (live followers get every
/// step from memory).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The dispatcher also looks at the queue on this tick, for jobs queued by other processes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Starts queued jobs while slots are free, until the service stops.
pub(super) async fn dispatch(service: JobService) {
    let inner = service.inner.clone();
    let mut work = inner.cluster.work_signal();
    loop {
        if inner.stopping.is_cancelled() {
            return;
        }
        let started = if inner.running.load(Ordering::SeqCst) < inner.settings.concurrency {
            match start_next(&service).await {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!("image queue: {e}");
                    false
                }
            }
        } else {
            false
        };
        if started {
            continue;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = work.changed() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = inner.stopping.cancelled() => return,
        }
    }
}

/// The queue's fair order from the database; positions of queued jobs are announced (to
/// this process's live jobs, or with several processes through the database, once per change
/// whichever node computes it).
pub(super) async fn refresh_positions(inner: &Inner) -> HashMap<String, usize> {
    let Ok(queued) = inner.store.queued_jobs().await else {
        return HashMap::new();
    };
    let distributed = inner.cluster.distributed();
    let running = if distributed {
        inner.store.running_jobs().await.unwrap_or(0)
    } else {
        inner.running.load(Ordering::SeqCst)
    };
    let (waiting, served) = snapshot(&queued);
    let positions = queue::positions(&waiting, &served, running);
    if distributed {
        for (id, p) in &positions {
            if let Ok(true) = inner.store.set_job_position(id, *p as i64).await {
                publish(inner, id, JobEvent::Queued { position: *p }).await;
            }
        }
        return positions;
    }
    let live: Vec<Arc<LiveJob>> = lock(&inner.live).values().cloned().collect();
    for job in live {
        if let Some(p) = positions.get(&job.id) {
            job.note_position(*p);
        }
    }
    positions
}

fn snapshot(queued: &[crate::store::QueuedJob]) -> (Vec<Waiting>, LastServed) {
    let waiting = queued
        .iter()
        .enumerate()
        .map(|(k, j)| Waiting {
            id: j.id.clone(),
            owner: j.user_id.clone(),
            seq: k as i64,
        })
        .collect();
    let served = queued
        .iter()
        .filter_map(|j| j.owner_last_started.map(|t| (j.user_id.clone(), t)))
        .collect();
    (waiting, served)
}

/// Claims the job whose turn it is and runs it; false when the queue is empty.
async fn start_next(service: &JobService) -> Result<bool, crate::store::StoreError> {
    let inner = &service.inner;
    let queued = inner.store.queued_jobs().await?;
    let (waiting, served) = snapshot(&queued);
    // The fair order is the whole queue's; with several workers each takes the first job it
    // can paint (alone, this process paints everything, and reports what it cannot).
    let models: HashMap<&str, &str> = queued
        .iter()
        .map(|j| (j.id.as_str(), j.model.as_str()))
        .collect();
    let distributed = inner.cluster.distributed();
    for candidate in queue::order(&waiting, &served) {
        if distributed
            && !models
                .get(candidate.id.as_str())
                .is_some_and(|m| inner.engine.paints(m))
        {
            continue;
        }
        let lease = inner.cluster.lease_until();
        if !inner
            .store
            .claim_job(&candidate.id, inner.cluster.node_id(), lease)
            .await?
        {
            continue; // cancelled meanwhile, or another process took it
        }
        let existing = lock(&inner.live).get(&candidate.id).cloned();
        let live = match existing {
            Some(live) => live,
            // Queued before a restart: it becomes live now.
            None => match inner.store.get_job(&candidate.id).await? {
                Some(record) => service.adopt_record(&record)?.0,
                None => continue,
            },
        };
        inner.running.fetch_add(1, Ordering::SeqCst);
        refresh_positions(inner).await;
        let service = service.clone();
        tokio::spawn(async move {
            run(&service, &live).await;
            service.inner.running.fetch_sub(1, Ordering::SeqCst);
            refresh_positions(&service.inner).await;
            service.inner.wake.notify_one();
        });
        return Ok(true);
    }
    Ok(false)
}

/// Runs one claimed job to its end (or hands it back when the process stops).
async fn run(service: &JobService, live: &Arc<LiveJob>) {
    let inner = &service.inner;
    let started = Instant::now();
    let topic = Topic::Job(live.id.clone());
    // A cancel asked on any node reaches this token from now on; one asked since the claim,
    // when no token was listening, is in the database. A canceller marks the row before it
    // notifies, so each cancel is either read here or delivered to the token.
    inner.cluster.on_cancel(&topic, live.cancel.clone());
    if inner
        .store
        .job_cancel_requested(&live.id)
        .await
        .unwrap_or(false)
    {
        live.cancel.cancel();
    }
    inner.cluster.set_current_job(Some(&live.id));
    publish(inner, &live.id, JobEvent::Started).await;
    let outcome = paint(service, live).await;
    inner.cluster.done_with(&topic);
    inner.cluster.set_current_job(None);
    let engine_ms = started.elapsed().as_millis() as i64;
    let handing_back = live.handing_back.load(Ordering::SeqCst);
    let (state, error, timings) = match outcome {
        Ok(timings) => (JobState::Done, None, Some(timings)),
        Err(EngineError::Cancelled) if handing_back => {
            if let Err(e) = inner.store.requeue_job(&live.id, engine_ms).await {
                tracing::error!(job = %live.id, "cannot hand the job back: {e}");
            }
            live.log.close();
            inner.cluster.announce_work().await;
            return;
        }
        Err(EngineError::Cancelled) => (
            JobState::Cancelled,
            Some((
                "cancelled".to_string(),
                "The job was cancelled.".to_string(),
            )),
            None,
        ),
        Err(e) => (
            JobState::Failed,
            Some((e.code().to_string(), e.to_string())),
            None,
        ),
    };
    let error_ref = error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
    match service
        .finish(&live.id, state, error_ref, Some(engine_ms), Unfinished::Any)
        .await
    {
        Ok(true) => {}
        // Ended elsewhere meanwhile (its lease ran out and another worker took it over).
        Ok(false) => {
            tracing::warn!(job = %live.id, "the job had already ended elsewhere");
            return;
        }
        Err(e) => tracing::error!(job = %live.id, "cannot record the job's end: {e}"),
    }
    publish(
        inner,
        &live.id,
        JobEvent::Ended(JobEnd {
            state,
            error,
            timings,
        }),
    )
    .await;
    service.retire(&live.id);
}

/// The engine run with its events: previews relayed, each image encoded and stored as it is
/// decoded.
async fn paint(service: &JobService, live: &Arc<LiveJob>) -> Result<Timings, EngineError> {
    let inner = &service.inner;
    let fail = |e: String| EngineError::Failed(e);
    let inputs = inner
        .store
        .job_inputs(&live.id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let spec = live.spec.clone();
    let request = tokio::task::spawn_blocking(move || spec.to_request(&inputs))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    let first_index = match &live.origin {
        super::JobOrigin::Chat { first_index, .. } => *first_index,
        _ => 0,
    };
    // Images an earlier attempt already stored (before a restart) are not stored again.
    let stored: HashSet<u32> = inner
        .store
        .images_of_job(&live.id)
        .await
        .map_err(|e| fail(e.to_string()))?
        .iter()
        .map(|i| (i.position as u32).saturating_sub(first_index))
        .collect();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let generation = inner
        .engine
        .generate(request.clone(), tx, live.cancel.clone());
    tokio::pin!(generation);
    let mut outcome = None;
    let mut events_open = true;
    let mut last_progress = Instant::now() - PROGRESS_EVERY;
    while outcome.is_none() || events_open {
        tokio::select! {
            result = &mut generation, if outcome.is_none() => outcome = Some(result),
            event = rx.recv(), if events_open => match event {
                None => events_open = false,
                Some(EngineEvent::Step { first, step, steps, previews }) => {
                    let milestone = live.spec.milestones.contains(&step);
                    let event = JobEvent::Progress { first, step, steps, previews: Arc::new(previews), milestone };
                    // Only the newest progress is worth replaying, but milestones stay.
                    publish(inner, &live.id, event).await;
                    if last_progress.elapsed() >= PROGRESS_EVERY || step == steps {
                        last_progress = Instant::now();
                        let _ = inner.store.job_progress(&live.id, step, steps).await;
                    }
                }
                Some(EngineEvent::ImageReady(generated)) => {
                    if stored.contains(&generated.index) {
                        continue;
                    }
                    let image = store_image(service, live, &request, generated, first_index).await?;
                    publish(inner, &live.id, JobEvent::Image(image)).await;
                }
            }
        }
    }
    outcome.unwrap_or_else(|| Err(fail("the engine ended without a result".into())))
}

/// Encodes (PNG with the parameters, a thumbnail) off the async threads and stores the image;
/// only then may anyone hear of it.
async fn store_image(
    service: &JobService,
    live: &Arc<LiveJob>,
    request: &crate::imaging::request::GenerationRequest,
    generated: Box<crate::imaging::GeneratedImage>,
    first_index: u32,
) -> Result<JobImage, EngineError> {
    let parameters = parameters_text(request, generated.seed);
    let keep = live.keep_pixels;
    let (index, seed) = (generated.index, generated.seed);
    let (width, height, png, thumbnail, pixels) = tokio::task::spawn_blocking(move || {
        let rgb = generated.rgb();
        let png = encode::png(&rgb, Some(&parameters))?;
        let thumbnail = encode::thumbnail(&rgb)?;
        let pixels = keep.then(|| Arc::new(generated.pixels));
        Ok::<_, encode::EncodeError>((rgb.width(), rgb.height(), png, thumbnail, pixels))
    })
    .await
    .map_err(|e| EngineError::Failed(format!("encoding stopped: {e}")))?
    .map_err(|e| EngineError::Failed(e.to_string()))?;
    let (conversation_id, message_id) = match &live.origin {
        super::JobOrigin::Chat {
            conversation_id,
            message_id,
            ..
        } => (Some(conversation_id.clone()), Some(message_id.clone())),
        _ => (None, None),
    };
    let image = NewImage {
        id: crate::store::new_id(),
        user_id: live.owner.clone(),
        message_id,
        conversation_id,
        job_id: Some(live.id.clone()),
        source: live.origin.source(),
        position: first_index + index,
        width,
        height,
        png,
        thumbnail,
        metadata: live.spec.metadata(seed),
    };
    match service.inner.store.insert_job_image(&image).await {
        Ok(true) => Ok(JobImage {
            id: image.id,
            index,
            seed,
            width,
            height,
            pixels,
        }),
        // Its message or conversation was deleted meanwhile: nobody can see more images.
        Ok(false) => {
            live.cancel.cancel();
            Err(EngineError::Cancelled)
        }
        Err(e) => Err(EngineError::Failed(format!(
            "the image could not be stored: {e}"
        ))),
    }
}
