//! Several Easel processes on one database. PostgreSQL is the only shared engine: state in its
//! tables, the job queue in `image_jobs` (claimed with `FOR UPDATE SKIP LOCKED`), and
//! `LISTEN/NOTIFY` to announce new events and cancels. There is no other cluster protocol.
//!
//! Each process is a node with an id and a heartbeat (`nodes`). The runs it drives and the jobs
//! it paints carry a lease it renews; when a node dies, whichever node notices (the reaper, in
//! every node) closes its runs as interrupted and puts its jobs back in the queue. On SQLite
//! there is one process: nothing is leased, and start-up recovery takes over what the last run
//! left (see `lib.rs`).
//!
//! This module knows nothing of chat or jobs: callers name what they publish, follow or cancel
//! by a [`Topic`], and register the cancellation tokens of the work they do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{new_id, now_ms, NodeRecord, Store, StoreError};

/// Notifications of new events: payload `r:<run id>` or `j:<job id>`.
const EVENTS: &str = "easel_events";
/// Requests to cancel: payload `r:<run id>` or `j:<job id>`.
const CANCELS: &str = "easel_cancel";
/// New work in the image queue (a job queued or handed back): idle workers look at once.
const WORK: &str = "easel_work";

/// How long events of ended runs and jobs stay in the database (as long as ended ones stay in
/// memory), and how often older ones are deleted.
const KEEP_EVENTS: Duration = Duration::from_secs(10 * 60);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What a notification or a cancel is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Run(String),
    Job(String),
}

impl Topic {
    fn key(&self) -> String {
        match self {
            Topic::Run(id) => format!("r:{id}"),
            Topic::Job(id) => format!("j:{id}"),
        }
    }
}

/// A node's role, as the admin's view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `easel serve`: answers HTTP (and paints too unless `--image-workers 0`).
    Web,
    /// `easel worker`: paints only.
    Worker,
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    node: String,
    kind: NodeKind,
    name: String,
    distributed: bool,
    lease: Duration,
    /// Wake-ups for followers of topics (bumped on every notification).
    wakes: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The work of this node that a cancel from elsewhere must reach.
    cancels: Mutex<HashMap<String, CancellationToken>>,
    /// Bumped when another node queues image work.
    work: watch::Sender<u64>,
    status: Mutex<NodeStatus>,
    stopping: CancellationToken,
    /// When this node started (ms).
    started_at: i64,
}

/// What this node tells the others about itself.
#[derive(Debug, Clone, Default)]
struct NodeStatus {
    paints: bool,
    provider: String,
    models: String,
    current_job: Option<String>,
    jobs_done: i64,
}

impl Cluster {
    /// Joins the cluster: registers this node and, on PostgreSQL, starts listening for
    /// notifications, beating and reaping. `name` is shown to admins.
    pub async fn start(
        store: Store,
        database_url: &str,
        kind: NodeKind,
        name: &str,
        lease: Duration,
    ) -> Result<Cluster, StoreError> {
        let distributed = store.backend() == crate::store::Backend::Postgres;
        let cluster = Cluster {
            inner: Arc::new(Inner {
                store,
                node: new_id(),
                kind,
                name: name.to_string(),
                distributed,
                lease,
                wakes: Mutex::default(),
                cancels: Mutex::default(),
                work: watch::Sender::new(0),
                status: Mutex::default(),
                stopping: CancellationToken::new(),
                started_at: now_ms(),
            }),
        };
        if distributed {
            cluster.register().await?;
            // A restart under the same name: what the last incarnation left is taken over now
            // (names must be unique per process; see EASEL_NODE_NAME).
            if cluster
                .inner
                .store
                .take_over(name, &cluster.inner.node)
                .await?
                > 0
            {
                reap(&cluster).await;
            }
            tokio::spawn(listen(cluster.clone(), database_url.to_string()));
            tokio::spawn(beat(cluster.clone()));
        }
        Ok(cluster)
    }

    /// A cluster of one, for the command line (nothing is registered).
    pub fn local(store: Store) -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                store,
                node: new_id(),
                kind: NodeKind::Web,
                name: "cli".into(),
                distributed: false,
                lease: Duration::from_secs(30),
                wakes: Mutex::default(),
                cancels: Mutex::default(),
                work: watch::Sender::new(0),
                status: Mutex::default(),
                stopping: CancellationToken::new(),
                started_at: now_ms(),
            }),
        }
    }

    async fn register(&self) -> Result<(), StoreError> {
        self.inner.store.register_node(&self.record()).await
    }

    /// This node as the others see it.
    fn record(&self) -> NodeRecord {
        let status = self.status();
        let now = now_ms();
        NodeRecord {
            id: self.inner.node.clone(),
            kind: match self.inner.kind {
                NodeKind::Web => "web",
                NodeKind::Worker => "worker",
            }
            .into(),
            name: self.inner.name.clone(),
            paints: i64::from(status.paints),
            provider: status.provider,
            models: if status.models.is_empty() {
                "[]".into()
            } else {
                status.models
            },
            current_job: status.current_job,
            jobs_done: status.jobs_done,
            started_at: self.inner.started_at,
            heartbeat_at: now,
        }
    }

    /// The processes sharing the database (alone: this one), with the jobs each finished per
    /// minute over the last five minutes.
    pub async fn nodes(&self) -> Result<(Vec<NodeRecord>, HashMap<String, f64>), StoreError> {
        let nodes = if self.inner.distributed {
            self.live_nodes().await?
        } else {
            vec![self.record()]
        };
        const WINDOW_MINUTES: i64 = 5;
        let finished = self
            .inner
            .store
            .jobs_finished_since(now_ms() - WINDOW_MINUTES * 60_000)
            .await?;
        let rates = finished
            .into_iter()
            .map(|(node, n)| (node, n as f64 / WINDOW_MINUTES as f64))
            .collect();
        Ok((nodes, rates))
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Whether several processes may share the database (PostgreSQL): events and cancels then
    /// go through it.
    pub fn distributed(&self) -> bool {
        self.inner.distributed
    }

    /// When a lease taken now runs out (ms).
    pub fn lease_until(&self) -> i64 {
        now_ms() + self.inner.lease.as_millis() as i64
    }

    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// What this node paints (descriptions as JSON) on which execution provider.
    pub async fn advertise(&self, paints: bool, provider: &str, models_json: String) {
        {
            let mut status = lock(&self.inner.status);
            status.paints = paints;
            status.provider = provider.to_string();
            status.models = models_json;
        }
        if let Err(e) = self.register().await {
            tracing::warn!("cannot advertise this node's models: {e}");
        }
    }

    pub fn set_current_job(&self, job: Option<&str>) {
        let mut status = lock(&self.inner.status);
        if job.is_none() && status.current_job.is_some() {
            status.jobs_done += 1;
        }
        status.current_job = job.map(str::to_string);
    }

    fn status(&self) -> NodeStatus {
        lock(&self.inner.status).clone()
    }

    /// Nodes alive now (beat within one lease).
    pub async fn live_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let since = now_ms() - self.inner.lease.as_millis() as i64;
        self.inner.store.live_nodes(since).await
    }

    /// Announces new events of `topic` to followers on every node.
    pub async fn announce(&self, topic: &Topic) {
        if self.inner.distributed {
            if let Err(e) = self.inner.store.notify(EVENTS, &topic.key()).await {
                tracing::warn!("cannot announce events: {e}");
            }
        } else {
            self.wake(&topic.key());
        }
    }

    /// Tells idle workers on every node that the image queue has new work.
    pub async fn announce_work(&self) {
        if self.inner.distributed {
            if let Err(e) = self.inner.store.notify(WORK, "").await {
                tracing::warn!("cannot announce queued work: {e}");
            }
        }
    }

    /// Changes when another node announces work (see [`Cluster::announce_work`]).
    pub fn work_signal(&self) -> watch::Receiver<u64> {
        self.inner.work.subscribe()
    }

    /// A receiver that changes whenever `topic` has new events anywhere.
    pub fn follow(&self, topic: &Topic) -> watch::Receiver<u64> {
        let mut wakes = lock(&self.inner.wakes);
        wakes
            .entry(topic.key())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Forgets a topic nobody follows any more.
    pub fn unfollow(&self, topic: &Topic) {
        let mut wakes = lock(&self.inner.wakes);
        if wakes
            .get(&topic.key())
            .is_some_and(|w| w.receiver_count() == 0)
        {
            wakes.remove(&topic.key());
        }
    }

    fn wake(&self, key: &str) {
        if let Some(w) = lock(&self.inner.wakes).get(key) {
            w.send_modify(|n| *n += 1);
        }
    }

    /// Work of this node a cancel from anywhere must reach.
    pub fn on_cancel(&self, topic: &Topic, token: CancellationToken) {
        lock(&self.inner.cancels).insert(topic.key(), token);
    }

    pub fn done_with(&self, topic: &Topic) {
        lock(&self.inner.cancels).remove(&topic.key());
    }

    /// Cancels work wherever it runs: here at once, elsewhere through the database.
    pub async fn cancel(&self, topic: &Topic) -> Result<bool, StoreError> {
        if let Some(token) = lock(&self.inner.cancels).get(&topic.key()) {
            token.cancel();
            return Ok(true);
        }
        if !self.inner.distributed {
            return Ok(false);
        }
        let marked = match topic {
            Topic::Run(id) => self.inner.store.request_run_cancel(id).await?,
            Topic::Job(id) => self.inner.store.request_job_cancel(id).await?,
        };
        if marked {
            self.inner.store.notify(CANCELS, &topic.key()).await?;
        }
        Ok(marked)
    }

    fn cancel_here(&self, key: &str) {
        if let Some(token) = lock(&self.inner.cancels).get(key) {
            token.cancel();
        }
    }

    /// Leaves the cluster (a clean stop).
    pub async fn leave(&self) {
        self.inner.stopping.cancel();
        let _ = self.inner.store.remove_node(&self.inner.node).await;
    }
}

/// Listens for notifications; a dropped connection is re-made (followers also poll, so a
/// notification lost meanwhile only delays them).
async fn listen(cluster: Cluster, url: String) {
    use sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot listen for notifications: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen_all([EVENTS, CANCELS, WORK]).await {
            tracing::warn!("cannot listen for notifications: {e}; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        loop {
            let next = tokio::select! {
                n = listener.recv() => n,
                _ = cluster.inner.stopping.cancelled() => return,
            };
            match next {
                Ok(n) if n.channel() == EVENTS => cluster.wake(n.payload()),
                Ok(n) if n.channel() == CANCELS => cluster.cancel_here(n.payload()),
                Ok(n) if n.channel() == WORK => cluster.inner.work.send_modify(|n| *n += 1),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("notifications: {e}; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Beats (renewing leases), looks for cancels asked of this node, and reaps dead nodes' work.
async fn beat(cluster: Cluster) {
    let inner = &cluster.inner;
    let every = (inner.lease / 6).max(Duration::from_millis(200));
    let mut last_prune = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = inner.stopping.cancelled() => return,
        }
        let status = cluster.status();
        let now = now_ms();
        if let Err(e) = inner
            .store
            .heartbeat(
                &inner.node,
                now,
                cluster.lease_until(),
                status.current_job.as_deref(),
                status.jobs_done,
            )
            .await
        {
            tracing::warn!("heartbeat: {e}");
            continue;
        }
        if let Ok((runs, jobs)) = inner.store.cancels_for(&inner.node).await {
            for id in runs {
                cluster.cancel_here(&Topic::Run(id).key());
            }
            for id in jobs {
                cluster.cancel_here(&Topic::Job(id).key());
            }
        }
        reap(&cluster).await;
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            let before = now - KEEP_EVENTS.as_millis() as i64;
            if let Err(e) = inner.store.prune_events(before).await {
                tracing::warn!("cannot forget old events: {e}");
            }
        }
    }
}

/// Closes the runs and requeues the jobs of nodes whose leases ran out, and forgets nodes
/// long silent.
async fn reap(cluster: &Cluster) {
    let inner = &cluster.inner;
    let now = now_ms();
    let lease = inner.lease.as_millis() as i64;
    match inner.store.reap(now, now - 20 * lease).await {
        Ok(reaped) => {
            for run in &reaped.runs {
                close_stream(cluster, run).await;
            }
            if !reaped.runs.is_empty() || reaped.jobs > 0 {
                tracing::warn!(
                    "a node stopped: {} reply(ies) closed as interrupted, {} image job(s) back in the queue",
                    reaped.runs.len(),
                    reaped.jobs
                );
                cluster.announce_work().await;
            }
        }
        Err(e) => tracing::warn!("reaper: {e}"),
    }
}

/// Ends the event stream of a run whose node died, so followers elsewhere learn how it ended.
async fn close_stream(cluster: &Cluster, run: &str) {
    let store = &cluster.inner.store;
    let last = store.last_run_event(run).await.unwrap_or(0);
    let data = serde_json::json!({
        "code": "interrupted",
        "message": "The server running this reply stopped; what it made so far is kept.",
    })
    .to_string();
    if store
        .insert_run_event(run, last + 1, "run.error", &data, None)
        .await
        .is_ok()
    {
        cluster.announce(&Topic::Run(run.to_string())).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
