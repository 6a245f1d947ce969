//! Easel's server: the HTTP API and web app, chat runs, internal tools and the ONNX image
//! engine. `main.rs` only parses the command line; everything lives here so integration
//! tests can start the real server in-process on 127.0.0.1.
//!
//! Dependency direction (ARCHITECTURE.md): `http` → `chat` → `tools` → `imaging`; all may use
//! `store` and `config`; `imaging` knows nothing about chat.

#![recursion_limit = "256"]

pub mod chat;
pub mod cli;
pub mod config;
pub mod http;
pub mod imaging;
pub mod store;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use leptos::config::LeptosOptions;
use tokio::net::TcpListener;

use chat::run::RunRegistry;
use chat::Providers;
use config::Config;
use http::AppState;
use imaging::ImageEngine;
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
}

/// TLS for outgoing HTTPS (LLM providers, the model hub) through rustls with `ring`. Every
/// place that builds an HTTP client calls this first: reqwest panics without a provider.
pub fn install_tls_provider() {
    // Fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens the database, starts the engine and the providers: everything a router needs.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    install_tls_provider();
    let store = Store::connect(&config.database_url).await?;
    let closed = store.close_interrupted_runs().await?;
    if closed > 0 {
        tracing::warn!(
            "{closed} reply(ies) were cut off by the last shutdown; they are marked as failed"
        );
    }
    let engine = ImageEngine::start(
        &config.models_dir,
        &config.images,
        config.image_model.as_deref(),
    );
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
    Ok(AppState {
        config: Arc::new(config),
        store,
        engine,
        providers,
        runs: RunRegistry::default(),
        studio: RunRegistry::default(),
        leptos,
    })
}

/// Starts the background work that should not delay start-up.
pub fn warm_up(state: &AppState) {
    state.engine.preload_default();
    state.providers.discover_models();
}

/// Serves until Ctrl-C / SIGTERM, then lets live runs record that they were stopped.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let addr = config.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    if !config.site_root.join("pkg").is_dir() {
        tracing::warn!(
            "web assets not found in {} (run `cargo xtask build`); the API works, the UI will not hydrate",
            config.site_root.display()
        );
    }
    let state = build_state(config).await?;
    warm_up(&state);
    let runs = state.runs.clone();
    tracing::info!("Easel is listening on http://{addr}");
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(StartError::Serve)?;
    stop_runs(&runs).await;
    Ok(())
}

/// Cancels live runs and waits (briefly) for them to store their final state.
pub async fn stop_runs(runs: &RunRegistry) {
    let live = runs.live();
    if live.is_empty() {
        return;
    }
    tracing::info!("stopping {} run(s)", live.len());
    for run in &live {
        run.cancel();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while live.iter().any(|r| !r.is_ended()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
