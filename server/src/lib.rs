//! Easel's server: the HTTP API and web app, chat runs, internal tools, image jobs and the ONNX
//! image engine. `main.rs` only parses the command line; everything lives here so integration
//! tests can start the real server in-process on 127.0.0.1.
//!
//! Dependency direction (ARCHITECTURE.md, checked by `tests/architecture.rs`):
//! `http` → `chat` → `tools` → `jobs` → `imaging`; all may use `store`, `auth`, `config` and
//! the leaves (`net`, `replay`); `imaging` and `store` know nothing of chat, jobs or wire types.

#![recursion_limit = "256"]

pub mod auth;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod imaging;
pub mod jobs;
pub mod net;
pub mod replay;
pub mod store;
pub mod tools;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leptos::config::LeptosOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use auth::{Auth, AuthMode};
use chat::run::RunRegistry;
use chat::Providers;
use cluster::{Cluster, NodeKind};
use config::Config;
use http::AppState;
use imaging::ImageEngine;
use jobs::{JobService, JobSettings};
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}. Fix: free the port or set EASEL_ADDR to another address")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("cannot create the admin account: {0}")]
    Admin(String),
    #[error("an image worker shares its database with the web nodes, and only PostgreSQL can be shared (DATABASE_URL is SQLite). Fix: set DATABASE_URL=postgres://… to the web nodes' database")]
    WorkerNeedsPostgres,
}

/// How long shutdown may take before the process exits regardless of clients.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Opens the database, starts the engine, the jobs service and the providers: everything a
/// router needs.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    net::install_tls_provider();
    let store = Store::connect(&config.database_url).await?;
    // One process on SQLite: whatever the last one left running was cut off. With PostgreSQL,
    // other nodes may be working: leases decide (see `cluster`).
    if store.backend() == store::Backend::Sqlite {
        let closed = store.close_interrupted_runs().await?;
        if closed > 0 {
            tracing::warn!(
                "{closed} reply(ies) were cut off by the last shutdown; they are marked as failed (their images still arrive)"
            );
        }
    }
    let cluster = Cluster::start(
        store.clone(),
        &config.database_url,
        NodeKind::Web,
        &config.node_name,
        config.lease_timeout,
    )
    .await?;
    let engine = start_engine(&config);
    let auth = Auth::new(
        store.clone(),
        match config.auth {
            config::AuthSetting::Accounts => AuthMode::Accounts,
            config::AuthSetting::None => AuthMode::None,
        },
        config.api_key.clone(),
        config.public_url.as_deref(),
    );
    if let Some((email, password)) = &config.admin {
        auth.ensure_admin(email, password)
            .await
            .map_err(StartError::Admin)?;
    }
    let jobs = JobService::start(
        store.clone(),
        engine,
        JobSettings {
            concurrency: config.images.concurrency,
            queue_max_images: config.images.queue_max,
            run_jobs: config.images.workers > 0,
        },
        Some(auth.clone()),
        cluster.clone(),
    )
    .await?;
    let providers = Providers::from_config(&config);
    if providers.is_direct_only() {
        tracing::info!(
            "no LLM configured: using the built-in `direct` provider (see README to connect one)"
        );
    }
    let leptos = LeptosOptions::builder()
        .output_name("easel")
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.addr)
        .build();
    let runs = RunRegistry::new(store.clone(), cluster.clone());
    Ok(AppState {
        config: Arc::new(config),
        store,
        cluster,
        jobs,
        providers,
        runs,
        auth,
        leptos,
        shutdown: CancellationToken::new(),
    })
}

/// Starts the background work that should not delay start-up.
pub fn warm_up(state: &AppState) {
    state.jobs.engine().preload_default();
    state.jobs.engine().watch_folder();
    state.providers.discover_models();
}

/// Binds the listening socket; with port 0 the configuration learns the port it got, so the
/// host checks and links use the real address.
pub async fn bind(config: &mut Config) -> Result<TcpListener, StartError> {
    let addr = config.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    if let Ok(local) = listener.local_addr() {
        config.addr = local;
    }
    Ok(listener)
}

/// Serves until Ctrl-C / SIGTERM, then shuts down in order (see [`shutdown`]).
pub async fn serve(mut config: Config) -> Result<(), StartError> {
    let listener = bind(&mut config).await?;
    let addr: SocketAddr = config.addr;
    if !config.site_root.join("pkg").is_dir() {
        tracing::warn!(
            "web assets not found in {} (run `cargo xtask build`); the API works, the UI will not hydrate",
            config.site_root.display()
        );
    }
    let state = build_state(config).await?;
    warm_up(&state);
    tracing::info!("Easel is listening on http://{addr}");
    let stopping = state.shutdown.clone();
    // The peer's address is kept for rate limits (see `http::extract::ClientAddress`).
    let service = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(async move { stopping.cancelled().await });
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Whatever clients or the LLM do, the process ends within the deadline.
        tokio::spawn(async {
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
            tracing::warn!("shutdown took longer than {SHUTDOWN_DEADLINE:?}; exiting now");
            std::process::exit(0);
        });
        shutdown(&signal_state).await;
    });
    server.await.map_err(StartError::Serve)?;
    Ok(())
}

/// The image engine over the models folder. A node that paints nothing (`--image-workers 0`)
/// still checks requests against the models in its own folder (usually none: it then offers
/// what live workers advertise), and leaves remote models to the processes that paint.
fn start_engine(config: &Config) -> ImageEngine {
    let mut settings = config.images.clone();
    if settings.workers == 0 {
        settings.remote.clear();
    }
    ImageEngine::start(&config.models_dir, &settings, config.image_model.as_deref())
}

/// `easel worker`: paints jobs from the shared queue (PostgreSQL) with the models found in the
/// models folder, until SIGTERM or Ctrl-C; then running jobs are handed back to the queue.
pub async fn work(config: Config) -> Result<(), StartError> {
    net::install_tls_provider();
    let store = Store::connect(&config.database_url).await?;
    if store.backend() != store::Backend::Postgres {
        return Err(StartError::WorkerNeedsPostgres);
    }
    let cluster = Cluster::start(
        store.clone(),
        &config.database_url,
        NodeKind::Worker,
        &config.node_name,
        config.lease_timeout,
    )
    .await?;
    let engine = ImageEngine::start(
        &config.models_dir,
        &config.images,
        config.image_model.as_deref(),
    );
    let painted = engine.describe_local();
    if painted.is_empty() {
        tracing::warn!(
            "this worker paints nothing: {}",
            engine
                .health()
                .message
                .unwrap_or_else(|| "no usable models".into())
        );
    }
    let jobs = JobService::start(
        store,
        engine.clone(),
        JobSettings {
            concurrency: config.images.concurrency,
            queue_max_images: config.images.queue_max,
            run_jobs: true,
        },
        None,
        cluster.clone(),
    )
    .await?;
    tracing::info!(
        "image worker {} ready: {} on {}",
        config.node_name,
        if painted.is_empty() {
            "no models".to_string()
        } else {
            painted
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
        engine.health().execution_provider
    );
    engine.preload_default();
    engine.watch_folder();
    shutdown_signal().await;
    // A job handed back starts again elsewhere from its seed: same pixels.
    jobs.shutdown(SHUTDOWN_DEADLINE).await;
    cluster.leave().await;
    Ok(())
}

/// Stops in order: replies are cancelled (and saved as stopped), running image jobs are handed
/// back to the queue (they run again at the next start), then open event streams end and the
/// server stops accepting requests.
pub async fn shutdown(state: &AppState) {
    let live = state.runs.live();
    if !live.is_empty() {
        tracing::info!("stopping {} reply(ies)", live.len());
    }
    for run in &live {
        run.cancel();
    }
    let budget = SHUTDOWN_DEADLINE / 2;
    let deadline = tokio::time::Instant::now() + budget;
    while live.iter().any(|r| !r.is_ended()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state.jobs.shutdown(budget / 2).await;
    state.cluster.leave().await;
    state.shutdown.cancel();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
