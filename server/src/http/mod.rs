//! The HTTP surface: one module per resource, merged into one router over one state.
//!
//! `/api/*` is Easel's own JSON API (DESIGN.md "HTTP API"), `/v1/*` the OpenAI-compatible
//! one, and everything else is the Leptos app (server-rendered, then hydrated) and its assets.

mod agents;
mod conversations;
pub mod error;
mod extract;
mod health;
mod images;
mod messages;
mod openai;
mod runs;
mod studio;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::chat::run::RunRegistry;
use crate::chat::Providers;
use crate::config::Config;
use crate::imaging::ImageEngine;
use crate::store::Store;
use error::ApiError;

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub engine: ImageEngine,
    pub providers: Providers,
    pub runs: RunRegistry,
    /// Image Studio jobs (same event machinery as chat runs, no conversation).
    pub studio: RunRegistry,
    pub leptos: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(health::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(runs::router())
        .merge(images::router())
        .merge(agents::router())
        .merge(studio::router())
        .layer(DefaultBodyLimit::max(app::api::limits::JSON_BODY_MAX_BYTES))
        // Import carries a whole conversation with its images inline.
        .merge(conversations::import_router())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API route.")
        });

    let routes = generate_route_list(app::App);
    let leptos = state.leptos.clone();
    Router::new()
        .nest("/api", api)
        .nest("/v1", openai::router())
        .leptos_routes(&state, routes, move || app::shell(leptos.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .with_state(state)
}
