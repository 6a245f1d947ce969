//! The HTTP surface: one module per resource, merged into one router over one state.
//!
//! `/api/*` is Easel's own JSON API (DESIGN.md "HTTP API"), `/v1/*` the OpenAI-compatible
//! one, and everything else is the Leptos app (server-rendered, then hydrated) and its assets.
//! Every API route is declared through [`routes::Routes`], so [`route_table`] lists them all for
//! the tests that must cover every route. [`guard`] wraps everything: foreign hosts and
//! cross-site state changes are refused before any handler runs.
//!
//! Handlers extract, call the service that owns the work (`chat`, `jobs`, `store`), respond.

mod account;
mod admin;
mod agents;
mod conversations;
mod downloads;
pub mod error;
mod extract;
pub mod guard;
mod health;
mod images;
mod messages;
mod openai;
pub mod routes;
mod runs;
mod studio;
mod wire;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::use_context;
use leptos_axum::{generate_route_list, LeptosRoutes};

use crate::chat::run::RunRegistry;
use crate::chat::Providers;
use crate::config::Config;
use crate::jobs::JobService;
use crate::store::Store;
use error::ApiError;
use guard::Guard;
use routes::{Family, RouteInfo, Routes};

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub cluster: crate::cluster::Cluster,
    pub jobs: JobService,
    pub providers: Providers,
    pub runs: RunRegistry,
    pub auth: crate::auth::Auth,
    pub leptos: LeptosOptions,
    /// Cancelled when the server starts shutting down: open event streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Every API route: `/api` (Easel's) and `/v1` (OpenAI's shape).
fn api_routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .merge(health::routes())
        .merge(downloads::routes())
        .merge(account::routes())
        .merge(admin::routes())
        .merge(conversations::routes())
        .merge(messages::routes())
        .merge(runs::routes())
        .merge(images::routes())
        .merge(agents::routes())
        .merge(studio::routes())
}

/// The table of every declared route (method, full path, family, body limit).
pub fn route_table() -> Vec<RouteInfo> {
    let (_, mut table) = api_routes().into_parts();
    let (_, v1) = openai::routes().into_parts();
    table.extend(v1);
    table
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().into_parts();
    let api = api
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API route.")
        })
        .method_not_allowed_fallback(|request: axum::extract::Request| {
            routes::method_not_allowed(Family::Api, request)
        });
    let (v1, _) = openai::routes().into_parts();
    let v1 = v1.fallback(openai::not_found).method_not_allowed_fallback(
        |request: axum::extract::Request| routes::method_not_allowed(Family::OpenAi, request),
    );

    let guard = Arc::new(Guard::from_config(&state.config));
    let routes = generate_route_list(app::App);
    let leptos = state.leptos.clone();
    Router::new()
        .nest("/api", api)
        .nest("/v1", v1)
        .leptos_routes_with_context(&state, routes, page_headers, move || {
            app::shell(leptos.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .with_state(state)
        .layer(from_fn_with_state(guard, guard::protect))
        // A handler that panics answers 500 instead of dropping the connection; the bad-input
        // tests treat any 5xx as a failure, so this hides nothing.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Rendering a page: its Content-Security-Policy allows the inline hydration scripts Leptos
/// writes with this render's nonce, and nothing else inline.
fn page_headers() {
    let nonce = leptos::nonce::use_nonce();
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        let policy = guard::page_csp(nonce.as_deref());
        if let Ok(value) = axum::http::HeaderValue::from_str(&policy) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    tracing::error!("a request handler panicked; see the log above");
    ApiError::internal("The server hit an internal error; see the server log.").into_response()
}
