//! `GET /api/runs/{id}/events` (server-sent events, resumable with `Last-Event-ID`) and
//! `POST /api/runs/{id}/cancel`.
//!
//! A subscriber gets every event from the start (or after the id it names), then the live ones,
//! and the stream closes after the run's last event (or when the server shuts down). A run
//! driven by another node is followed from the database, with the same ids. A run whose events
//! are gone (finished long ago, or before a restart) answers with one event saying how it
//! ended.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;

use crate::chat::run::closing_event;

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, CurrentUser};
use super::routes::{Family, Routes};
use super::AppState;
use crate::replay;
use crate::store::RunStatus;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .get("/runs/{id}/events", events)
        .post("/runs/{id}/cancel", cancel)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EventsQuery {
    /// Same as `Last-Event-ID`, for clients that cannot set headers on the first request.
    pub(super) after: Option<u64>,
}

/// Where a subscriber resumes: `Last-Event-ID` (what browsers send on reconnect), else
/// `?after=N` (for a first request that cannot set headers), else the start.
pub(super) fn resume_point(headers: &HeaderMap, after: Option<u64>) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(after)
        .unwrap_or(0)
}

pub(super) type EventStream = BoxStream<'static, Result<Event, Infallible>>;

/// An SSE response that also ends when the server shuts down.
pub(super) fn sse(state: &AppState, stream: EventStream) -> Response {
    let stopping = state.shutdown.clone();
    let stream: EventStream =
        Box::pin(stream.take_until(async move { stopping.cancelled().await }));
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_id("run", &id)?;
    let after = resume_point(&headers, query.after);
    let stream: EventStream = match state.runs.get(&id).filter(|r| r.user_id == user) {
        Some(run) => Box::pin(replay::follow(run.log.clone(), after).map(|e| {
            Ok(Event::default()
                .id(e.id.to_string())
                .event(e.event.name)
                .data(e.event.data.as_ref()))
        })),
        None => {
            let record = state
                .store
                .get_run(&user, &id)
                .await?
                .ok_or_else(|| ApiError::not_found("run"))?;
            if state.runs.shared() {
                Box::pin(state.runs.follow_stored(record, after).map(|e| {
                    Ok(Event::default()
                        .id(e.id.to_string())
                        .event(e.name)
                        .data(e.data))
                }))
            } else {
                let (name, data) = closing_event(&record);
                let event = Event::default().id("1").event(name).data(data);
                Box::pin(stream::once(async move { Ok(event) }))
            }
        }
    };
    Ok(sse(&state, stream))
}

async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    check_id("run", &id)?;
    let record = state
        .store
        .get_run(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    if record.status == RunStatus::Running && state.runs.cancel(&id).await? {
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"run_id": id, "status": "cancelling"})),
        ));
    }
    // Cancelling a run that already ended is not an error: the outcome is what was asked.
    let status = state
        .store
        .get_run(&user, &id)
        .await?
        .map(|r| r.status)
        .unwrap_or(record.status);
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({"run_id": id, "status": status.as_str()})),
    ))
}
