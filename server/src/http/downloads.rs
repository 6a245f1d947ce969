//! `GET /api/models/download` (progress of the server's model download, for everyone signed
//! in) and `POST /api/models/download` (admins start one: "Get a model"). The work itself is
//! `imaging::download`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use app::api::{ModelDownload, ModelDownloadRequest};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminUser, ApiJson, Caller};
use super::routes::{Family, Routes};
use super::AppState;
use crate::imaging::download::{DownloadError, DownloadStatus};
use crate::imaging::hub::Hub;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/models/download", status)
        .post("/models/download", start)
}

fn view(status: DownloadStatus, recommended: &str, can_start: bool) -> ModelDownload {
    ModelDownload {
        phase: serde_json::to_value(status.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        repo: status.repo,
        recommended: recommended.to_string(),
        done: status.done,
        total: status.total,
        file: status.file,
        model: status.model,
        error: status.error,
        can_start,
    }
}

async fn status(State(state): State<AppState>, Caller(who): Caller) -> Json<ModelDownload> {
    let engine = state.jobs.engine();
    Json(view(
        engine.download_status(),
        engine.recommended_model(),
        who.is_admin(),
    ))
}

async fn start(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<ModelDownloadRequest>,
) -> ApiResult<(StatusCode, Json<ModelDownload>)> {
    let engine = state.jobs.engine();
    let hub = Hub::from_env().map_err(|e| ApiError::internal(e.to_string()))?;
    let status = engine
        .start_download(body.repo.as_deref(), hub)
        .map_err(|e| match e {
            DownloadError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
            DownloadError::Invalid(message) => {
                ApiError::unprocessable("invalid_request", format!("repo: {message}"))
            }
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(view(status, engine.recommended_model(), true)),
    ))
}
