//! `GET /api/health` (is the server, its database and its image engine working) and
//! `GET /api/models` (what the UI may offer: LLMs, image models, styles).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use app::api::{Health, ModelsResponse};

use super::extract::CurrentUser;
use super::routes::{Family, Routes};
use super::{wire, AppState};
use crate::tools::styles;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/health", health)
        .get("/models", models)
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = match state.store.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let healthy = database == "ok";
    let body = Health {
        workers: Vec::new(),
        status: if healthy { "ok" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database,
        image_engine: wire::engine_health(
            state.jobs.engine().health(),
            state.jobs.queue_length().await,
        ),
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

async fn models(State(state): State<AppState>, _user: CurrentUser) -> Json<ModelsResponse> {
    let engine = state.jobs.engine();
    Json(ModelsResponse {
        llm: state.providers.list(),
        image: engine.models().into_iter().map(wire::model_info).collect(),
        image_creation_available: engine.available(),
        default_image_model: engine.default_model(),
        styles: styles::list(),
    })
}
