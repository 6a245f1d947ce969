//! Image jobs: the one way anything in Easel makes images (the chat tool, Image Studio, the
//! `/v1` API and the command line all submit jobs here).
//!
//! A job is a durable record (`store::jobs`): who asked, where from, the validated request,
//! where it stands, progress, timings, and the images it produced, each stored the moment it is
//! finished. This service owns the queue (fair between owners, see [`queue`]), each job's event
//! log (replayable, like a run's), cancellation, and the one edit preparation ([`prepare`]).
//! The engine below it (`imaging`) knows only requests, step progress and pixels; [`wire`]
//! turns job events into the events chat runs and the Studio stream.
//!
//! Jobs survive restarts: at start-up queued jobs stay queued, a job that was running goes back
//! to the queue and starts again from its seed (same pixels; images it already stored are not
//! stored twice), and `/v1` jobs are cancelled, since the client that waited is gone.
//!
//! Several processes (PostgreSQL, see `cluster`): any node queues, any worker whose models
//! include the job's claims it (in the fair order), and events go through the database
//! ([`mirror`]): the worker writes them, every node following the job mirrors them into its
//! live log. A worker that dies loses its lease and the job is painted again elsewhere.

mod catalog;
mod mirror;
pub mod prepare;
pub mod queue;
pub mod spec;
pub mod wire;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::RgbImage;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::cluster::{Cluster, Topic};
use crate::imaging::diffusion::pipeline::{FloatImage, Timings};
use crate::imaging::request::GenerationRequest;
use crate::imaging::ImageEngine;
use crate::replay::Log;
use crate::store::{
    self, ImageSource, JobRecord, JobState, NewJob, Queued, Store, StoreError, Unfinished,
};
pub use spec::{CallerInfo, EditSource, JobSpec};

/// How many jobs run at once and how many images may wait.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub concurrency: usize,
    /// The queue's capacity in images (queued and running), `EASEL_IMAGE_QUEUE_MAX`.
    pub queue_max_images: u32,
    /// Whether this process paints (a web node with `--image-workers 0` does not).
    pub run_jobs: bool,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            concurrency: 1,
            queue_max_images: 100,
            run_jobs: true,
        }
    }
}

/// Where a job comes from, and for a chat tool call, the message it paints for.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOrigin {
    Chat {
        conversation_id: String,
        message_id: String,
        tool_call_id: String,
        /// Message-level index of the job's first image.
        first_index: u32,
    },
    Studio,
    Api,
    Cli,
}

impl JobOrigin {
    fn source(&self) -> ImageSource {
        match self {
            JobOrigin::Chat { .. } => ImageSource::Chat,
            JobOrigin::Studio => ImageSource::Studio,
            JobOrigin::Api => ImageSource::Api,
            JobOrigin::Cli => ImageSource::Cli,
        }
    }
}

/// A request to make images, as a caller submits it.
#[derive(Debug, Clone)]
pub struct JobOrder {
    pub owner: String,
    pub origin: JobOrigin,
    /// Validated against its model (`imaging::request::resolve`).
    pub request: GenerationRequest,
    pub edit: Option<EditSource>,
    pub caller: CallerInfo,
    /// Keep each image's float pixels in its event (the command line's `--npy`); in-process only.
    pub keep_pixels: bool,
    /// Steps whose previews stay in the event log for a follower that reads later (`/v1`
    /// streams send previews at chosen steps); other steps' progress replaces the previous one.
    pub milestones: Vec<u32>,
}

/// What a job reports, in order.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// Waiting behind `position` other jobs (sent again whenever the position changes).
    Queued {
        position: usize,
    },
    Started,
    /// A step of images `first..first + previews.len()` (job-level indexes) finished.
    Progress {
        first: u32,
        step: u32,
        steps: u32,
        previews: Arc<Vec<Option<RgbImage>>>,
        /// Kept in the log (see [`JobOrder::milestones`]).
        milestone: bool,
    },
    /// An image is finished and already stored.
    Image(JobImage),
    /// The last event.
    Ended(JobEnd),
}

#[derive(Debug, Clone)]
pub struct JobImage {
    pub id: String,
    /// Index within the job (0..n).
    pub index: u32,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// Only for orders with `keep_pixels`.
    pub pixels: Option<Arc<FloatImage>>,
}

#[derive(Debug, Clone)]
pub struct JobEnd {
    pub state: JobState,
    /// `(code, message)` for failed and cancelled jobs.
    pub error: Option<(String, String)>,
    /// Where the engine's time went (absent when the job never ran).
    pub timings: Option<Timings>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the image queue is full ({waiting} images are waiting, at most {max}); try again in a minute")]
    QueueFull { waiting: u32, max: u32 },
    #[error("this needs {needed} credits, {balance} left")]
    ShortOfCredits { needed: i64, balance: i64 },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl SubmitError {
    /// Seconds a client should wait before trying again.
    pub fn retry_after(&self) -> u64 {
        30
    }
}

/// A job submitted: its id, where it stands in the queue, and the credits reserved for it.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: String,
    pub position: usize,
    pub cost: i64,
}

/// What a request would cost its owner, before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub cost: i64,
    pub balance: i64,
    /// Whether credits are on at all (off: everything is free).
    pub enabled: bool,
}

impl Quote {
    pub fn affordable(&self) -> bool {
        !self.enabled || self.balance >= self.cost
    }
}

/// What a job keeps only in this process's memory (see [`JobOrder`]).
#[derive(Debug, Clone, Default)]
struct InMemory {
    keep_pixels: bool,
}

/// A job this process knows: its event log and how to stop it.
pub struct LiveJob {
    pub id: String,
    pub owner: String,
    pub spec: JobSpec,
    pub origin: JobOrigin,
    pub log: Arc<Log<JobEvent>>,
    cancel: CancellationToken,
    /// Set when the job is stopped because this process is shutting down: it goes back to the
    /// queue instead of ending as cancelled.
    handing_back: AtomicBool,
    keep_pixels: bool,
    position: Mutex<Option<usize>>,
    /// Whether this process mirrors the job's events from the database (see [`mirror`]).
    mirrored: AtomicBool,
}

impl LiveJob {
    pub fn is_ended(&self) -> bool {
        self.log.is_ended()
    }
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct JobService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: ImageEngine,
    settings: JobSettings,
    /// Prices jobs when credits are on (none for the command line).
    pricing: Option<Auth>,
    /// Where events and cancels go when several processes share the database.
    cluster: Cluster,
    live: Mutex<HashMap<String, Arc<LiveJob>>>,
    running: AtomicUsize,
    wake: Notify,
    stopping: CancellationToken,
}

/// Why `/v1` jobs from before a restart end.
const CLIENT_GONE: (&str, &str) = (
    "client_gone",
    "The server restarted; the API client that asked for these images is gone.",
);

/// How long an ended job's events stay replayable from memory.
const KEEP_ENDED_JOB: Duration = Duration::from_secs(10 * 60);

impl JobService {
    /// Recovers the queue left by the last run (see the module docs) and starts dispatching.
    pub async fn start(
        store: Store,
        engine: ImageEngine,
        settings: JobSettings,
        pricing: Option<Auth>,
        cluster: Cluster,
    ) -> Result<JobService, StoreError> {
        let service = JobService {
            inner: Arc::new(Inner {
                store: store.clone(),
                engine,
                settings,
                pricing,
                cluster,
                live: Mutex::default(),
                running: AtomicUsize::new(0),
                wake: Notify::new(),
                stopping: CancellationToken::new(),
            }),
        };
        if service.inner.cluster.distributed() {
            // Other processes may be painting: leases, not start-up, decide what was cut off.
            catalog::advertise(&service).await;
            tokio::spawn(catalog::follow(service.clone()));
            if service.inner.settings.run_jobs {
                tokio::spawn(worker::dispatch(service.clone()));
            }
            return Ok(service);
        }
        // `/v1` jobs from before the restart: nobody waits for them any more. The rest of the
        // queue stays; running jobs start again from their seed.
        let gone = store.open_api_jobs().await?;
        for id in &gone {
            service
                .finish(
                    id,
                    JobState::Cancelled,
                    Some(CLIENT_GONE),
                    None,
                    Unfinished::Any,
                )
                .await?;
        }
        let requeued = store.requeue_running_jobs().await?;
        if requeued > 0 || !gone.is_empty() {
            tracing::warn!(
                "{requeued} image job(s) cut off by the last shutdown go back to the queue; {} API job(s) whose client is gone were cancelled",
                gone.len()
            );
        }
        if service.inner.settings.run_jobs {
            tokio::spawn(worker::dispatch(service.clone()));
        }
        Ok(service)
    }

    pub fn engine(&self) -> &ImageEngine {
        &self.inner.engine
    }

    /// Queues a job (refused when the queue is full) and returns its id and position.
    pub async fn submit(&self, order: JobOrder) -> Result<Submitted, SubmitError> {
        let mut spec = JobSpec::new(&order.request, order.caller.clone());
        spec.milestones = order.milestones.clone();
        let id = store::new_id();
        let (source_png, mask_png) = match &order.edit {
            Some(edit) => {
                let source = edit.image.clone();
                let mask = edit.mask.clone();
                tokio::task::spawn_blocking(move || {
                    let s = crate::imaging::encode::png(&source, None).ok();
                    let m = mask.and_then(|m| crate::imaging::encode::png_rgba(&m).ok());
                    (s, m)
                })
                .await
                .unwrap_or((None, None))
            }
            None => (None, None),
        };
        let (conversation_id, message_id, tool_call_id, first_index) = match &order.origin {
            JobOrigin::Chat {
                conversation_id,
                message_id,
                tool_call_id,
                first_index,
            } => (
                Some(conversation_id.clone()),
                Some(message_id.clone()),
                Some(tool_call_id.clone()),
                *first_index,
            ),
            _ => (None, None, None, 0),
        };
        let new = NewJob {
            id: id.clone(),
            user_id: order.owner.clone(),
            source: order.origin.source(),
            conversation_id,
            message_id,
            tool_call_id,
            first_index,
            model: spec.model.clone(),
            n: spec.n,
            request: serde_json::to_string(&spec).map_err(StoreError::from)?,
            source_png,
            mask_png,
            latents: order.request.latents.as_deref().map(spec::latents_bytes),
        };
        let max = self.inner.settings.queue_max_images;
        let quote = self.quote(&order.owner, &order.request).await?;
        let cost = if quote.enabled { quote.cost } else { 0 };
        match self.inner.store.insert_job(&new, max, cost).await? {
            Queued::Yes => {}
            Queued::QueueFull { waiting } => {
                return Err(SubmitError::QueueFull {
                    waiting: u32::try_from(waiting.max(0)).unwrap_or(u32::MAX),
                    max,
                })
            }
            Queued::ShortOfCredits { balance } => {
                return Err(SubmitError::ShortOfCredits {
                    needed: cost,
                    balance,
                })
            }
        }
        let live = self.adopt(
            id.clone(),
            order.owner,
            spec,
            order.origin,
            InMemory {
                keep_pixels: order.keep_pixels,
            },
        );
        self.mirror(&live);
        let position = worker::refresh_positions(&self.inner)
            .await
            .get(&id)
            .copied();
        let position = position.unwrap_or(0);
        if !self.inner.cluster.distributed() {
            live.note_position(position);
        }
        self.inner.wake.notify_one();
        self.inner.cluster.announce_work().await;
        Ok(Submitted { id, position, cost })
    }

    /// What `request` would cost `owner` now (the one cost function: chat, Studio and `/v1`
    /// all price through here), with the owner's balance after any allowance refill.
    pub async fn quote(
        &self,
        owner: &str,
        request: &GenerationRequest,
    ) -> Result<Quote, StoreError> {
        let Some(auth) = &self.inner.pricing else {
            return Ok(Quote {
                cost: 0,
                balance: 0,
                enabled: false,
            });
        };
        let settings = auth.credits().settings().await?;
        let balance = auth.credits().balance(owner).await?;
        let (default_size, default_steps) = match self.inner.engine.model(Some(&request.model)) {
            Ok(model) => (model.presets.default_size, model.presets.steps.auto),
            Err(_) => ((request.width, request.height), request.steps),
        };
        Ok(Quote {
            cost: crate::auth::credits::cost_of(
                settings.model_cost(&request.model),
                request.n,
                (request.width, request.height),
                default_size,
                request.steps,
                default_steps,
            ),
            balance: balance.balance,
            enabled: balance.enabled,
        })
    }

    /// The owner's credits left, when credits are on.
    pub async fn credits_left(&self, owner: &str) -> Option<i64> {
        let auth = self.inner.pricing.as_ref()?;
        let balance = auth.credits().balance(owner).await.ok()?;
        balance.enabled.then_some(balance.balance)
    }

    /// Ends a job in the database and settles its credits: a finished job pays what was
    /// reserved; a cancelled or failed one pays for its finished images only.
    pub(crate) async fn finish(
        &self,
        id: &str,
        state: JobState,
        error: Option<(&str, &str)>,
        engine_ms: Option<i64>,
        from: Unfinished,
    ) -> Result<bool, StoreError> {
        let finished = state == JobState::Done;
        self.inner
            .store
            .finish_job(
                id,
                state,
                error,
                &store::JobTimings {
                    engine_ms: engine_ms.unwrap_or(0),
                },
                from,
                &move |reserved, done, n| {
                    crate::auth::credits::charge_for(reserved, done, n, finished)
                },
            )
            .await
    }

    /// The live job of `id`: the one this process already follows, or a new one. A follower
    /// and the dispatcher may both reach for a job queued before a restart; they must share
    /// one event log.
    fn adopt(
        &self,
        id: String,
        owner: String,
        spec: JobSpec,
        origin: JobOrigin,
        memory: InMemory,
    ) -> Arc<LiveJob> {
        self.adopt_new(id, owner, spec, origin, memory).0
    }

    /// [`Self::adopt`], saying whether the job was new to this process.
    fn adopt_new(
        &self,
        id: String,
        owner: String,
        spec: JobSpec,
        origin: JobOrigin,
        memory: InMemory,
    ) -> (Arc<LiveJob>, bool) {
        let mut live = lock(&self.inner.live);
        if let Some(existing) = live.get(&id) {
            return (existing.clone(), false);
        }
        let job = Arc::new(LiveJob {
            id: id.clone(),
            owner,
            spec,
            origin,
            log: Arc::new(Log::default()),
            cancel: self.inner.stopping.child_token(),
            handing_back: AtomicBool::new(false),
            keep_pixels: memory.keep_pixels,
            position: Mutex::new(None),
            mirrored: AtomicBool::new(false),
        });
        live.insert(id, job.clone());
        (job, true)
    }

    /// A job known from its record (queued before a restart, or by another process); true
    /// when it was new to this process.
    fn adopt_record(&self, record: &JobRecord) -> Result<(Arc<LiveJob>, bool), StoreError> {
        let spec: JobSpec = serde_json::from_str(&record.request)?;
        let origin = match (&record.conversation_id, &record.message_id) {
            (Some(c), Some(m)) => JobOrigin::Chat {
                conversation_id: c.clone(),
                message_id: m.clone(),
                tool_call_id: record.tool_call_id.clone().unwrap_or_default(),
                first_index: record.first_index,
            },
            _ => match record.source {
                ImageSource::Api => JobOrigin::Api,
                ImageSource::Cli => JobOrigin::Cli,
                _ => JobOrigin::Studio,
            },
        };
        Ok(self.adopt_new(
            record.id.clone(),
            record.user_id.clone(),
            spec,
            origin,
            InMemory::default(),
        ))
    }

    /// A job of `owner`: live in this process, or rebuilt from the database (its stored
    /// images, and how it ended). Another owner's job is `None`, like a missing one.
    pub async fn job(&self, owner: &str, id: &str) -> Result<Option<Arc<LiveJob>>, StoreError> {
        let known = lock(&self.inner.live).get(id).cloned();
        if let Some(live) = known {
            if live.owner != owner {
                return Ok(None);
            }
            self.mirror(&live);
            return Ok(Some(live));
        }
        let Some(record) = self.inner.store.get_user_job(owner, id).await? else {
            return Ok(None);
        };
        Ok(Some(self.replayed(record).await?))
    }

    /// A job known only to the database: a log replaying what it stored, ending with how it
    /// ended; a job still queued (it will run here) becomes live.
    async fn replayed(&self, record: JobRecord) -> Result<Arc<LiveJob>, StoreError> {
        if self.inner.cluster.distributed()
            && (!record.state.is_final() || self.inner.store.has_job_events(&record.id).await?)
        {
            // Its events are in the database, whoever painted it.
            let (live, _) = self.adopt_record(&record)?;
            self.mirror(&live);
            return Ok(live);
        }
        let (live, new) = self.adopt_record(&record)?;
        if !new {
            // The dispatcher took it up meanwhile: its log is the live one.
            return Ok(live);
        }
        for image in self.inner.store.images_of_job(&record.id).await? {
            live.log.push(JobEvent::Image(JobImage {
                index: (image.position as u32).saturating_sub(record.first_index),
                seed: image.metadata.seed,
                width: image.width as u32,
                height: image.height as u32,
                id: image.id,
                pixels: None,
            }));
        }
        if record.state.is_final() {
            live.log.end(JobEvent::Ended(JobEnd {
                state: record.state,
                error: record.error_code.zip(record.error_message),
                timings: None,
            }));
            self.retire(&record.id);
        } else {
            let positions = worker::refresh_positions(&self.inner).await;
            live.note_position(positions.get(&record.id).copied().unwrap_or(0));
        }
        Ok(live)
    }

    /// Stops a job of `owner` within one denoising step (or before it starts), wherever it is
    /// painted. `Ok(false)`: no such job.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let Some(live) = self.job(owner, id).await? else {
            return Ok(false);
        };
        if live.is_ended() {
            return Ok(true);
        }
        // Still waiting: it ends here (a worker that claimed it a moment ago makes this fail,
        // and is stopped below instead).
        const BEFORE: &str = "The job was cancelled before it started.";
        if self
            .finish(
                id,
                JobState::Cancelled,
                Some(("cancelled", BEFORE)),
                None,
                Unfinished::Queued,
            )
            .await?
        {
            live.cancel.cancel();
            self.publish(
                id,
                JobEvent::Ended(JobEnd {
                    state: JobState::Cancelled,
                    error: Some(("cancelled".into(), BEFORE.into())),
                    timings: None,
                }),
            )
            .await;
            if !self.inner.cluster.distributed() {
                self.retire(id);
            }
            worker::refresh_positions(&self.inner).await;
            return Ok(true);
        }
        if self.inner.cluster.distributed() {
            self.inner
                .cluster
                .cancel(&Topic::Job(id.to_string()))
                .await?;
        } else {
            live.cancel.cancel();
        }
        Ok(true)
    }

    /// Sends a job's event to its followers: into the live log here, or (several processes)
    /// into the database, from where every node following the job mirrors it.
    pub(crate) async fn publish(&self, id: &str, event: JobEvent) {
        publish(&self.inner, id, event).await
    }

    /// Starts mirroring a job's events from the database into its live log (several
    /// processes only; once per job).
    fn mirror(&self, live: &Arc<LiveJob>) {
        if self.inner.cluster.distributed() && !live.mirrored.swap(true, Ordering::SeqCst) {
            tokio::spawn(mirror::tail(self.clone(), live.clone()));
        }
    }

    /// Cancels every unfinished job of a message (its reply was stopped or deleted).
    pub async fn cancel_for_message(
        &self,
        owner: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        for id in self.inner.store.open_jobs_of_message(message_id).await? {
            self.cancel(owner, &id).await?;
        }
        Ok(())
    }

    /// Follows a job to its end; returns how it ended.
    pub async fn wait(&self, live: &LiveJob) -> JobEnd {
        let mut cursor = 0;
        loop {
            let (events, ended) = live.log.next_after(cursor).await;
            for e in &events {
                if let JobEvent::Ended(end) = &e.event {
                    return end.clone();
                }
                cursor = e.id;
            }
            if ended && events.is_empty() {
                return JobEnd {
                    state: JobState::Cancelled,
                    error: Some(("stopped".into(), "The server is shutting down.".into())),
                    timings: None,
                };
            }
        }
    }

    /// Images waiting or being made, for `/api/health`.
    pub async fn queue_length(&self) -> usize {
        self.inner
            .store
            .queued_images()
            .await
            .map(|n| n.max(0) as usize)
            .unwrap_or(0)
    }

    /// Stops taking jobs; running ones are interrupted and handed back to the queue (they run
    /// again after the next start). Returns once they have recorded that, or at `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let live: Vec<Arc<LiveJob>> = lock(&self.inner.live).values().cloned().collect();
        for job in &live {
            job.handing_back.store(true, Ordering::SeqCst);
        }
        self.inner.stopping.cancel();
        let until = tokio::time::Instant::now() + deadline;
        while self.inner.running.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for job in live {
            job.log.close();
        }
    }

    fn retire(&self, id: &str) {
        let inner = self.inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_ENDED_JOB).await;
            lock(&inner.live).remove(&id);
        });
    }
}

/// See [`JobService::publish`].
async fn publish(inner: &Inner, id: &str, event: JobEvent) {
    if !inner.cluster.distributed() {
        let live = lock(&inner.live).get(id).cloned();
        if let Some(live) = live {
            match event {
                JobEvent::Ended(_) => {
                    live.log.end(event);
                }
                event => {
                    let probe = event.clone();
                    live.log
                        .push_replacing(event, |old| mirror::replaces(&probe, old));
                }
            }
        }
        return;
    }
    // Previews are encoded as PNG: off the async threads.
    let row = if matches!(event, JobEvent::Progress { .. }) {
        tokio::task::spawn_blocking(move || mirror::encode(&event))
            .await
            .ok()
            .flatten()
    } else {
        mirror::encode(&event)
    };
    let Some(row) = row else { return };
    match inner
        .store
        .append_job_event(id, row.kind, &row.data, row.replaceable)
        .await
    {
        Ok(_) => inner.cluster.announce(&Topic::Job(id.to_string())).await,
        Err(e) => tracing::warn!(job = %id, "cannot keep the job's event: {e}"),
    }
}

impl LiveJob {
    fn note_position(&self, position: usize) {
        let mut current = lock(&self.position);
        if *current != Some(position) && !self.log.is_ended() {
            *current = Some(position);
            self.log.push_replacing(JobEvent::Queued { position }, |e| {
                matches!(e, JobEvent::Queued { .. })
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
