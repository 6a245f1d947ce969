//! `GET /api/health` (is the server, its database and its image engine working) and
//! `GET /api/models` (what the UI may offer: LLMs, image models, styles).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use app::api::{Health, ModelsResponse};

use super::AppState;
use crate::tools::styles;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/models", get(models))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = match state.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let healthy = database == "ok";
    let body = Health {
        status: if healthy { "ok" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database,
        image_engine: state.engine.health(),
    };
    (
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

async fn models(State(state): State<AppState>) -> Json<ModelsResponse> {
    Json(ModelsResponse {
        llm: state.providers.list(),
        image: state.engine.models(),
        image_creation_available: state.engine.available(),
        default_image_model: state.engine.default_model(),
        styles: styles::list(),
    })
}
