//! `GET /api/runs/{id}/events` (server-sent events, resumable with `Last-Event-ID`) and
//! `POST /api/runs/{id}/cancel`.
//!
//! A subscriber gets every event from the start (or after the id it names), then the live ones,
//! and the stream closes after the run's last event. A run no longer in memory (finished long
//! ago, or before a restart) answers with one event saying how it ended.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;

use app::api::events as ev;

use super::error::{ApiError, ApiResult};
use super::extract::{check_id, CurrentUser};
use super::AppState;
use crate::chat::run::{RunEvent, RunHandle};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/events", get(events))
        .route("/runs/{id}/cancel", post(cancel))
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

async fn events(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<impl axum::response::IntoResponse> {
    check_id("run", &id)?;
    let after = resume_point(&headers, query.after);
    let stream: EventStream = match state.runs.get(&id).filter(|r| r.user_id == user) {
        Some(run) => live(run, after),
        None => {
            let record = state
                .store
                .get_run(&user, &id)
                .await?
                .ok_or_else(|| ApiError::not_found("run"))?;
            let (name, data) = match record.status.as_str() {
                "finished" => (
                    ev::RUN_FINISHED,
                    serde_json::json!({"run_id": record.id, "status": "finished"}),
                ),
                "cancelled" => (
                    ev::RUN_CANCELLED,
                    serde_json::json!({"run_id": record.id, "status": "cancelled"}),
                ),
                _ => (
                    ev::RUN_ERROR,
                    serde_json::json!({
                        "code": record.error_code.unwrap_or_else(|| "interrupted".into()),
                        "message": record.error_message.unwrap_or_else(|| "The run ended without a result.".into())
                    }),
                ),
            };
            let event = Event::default().id("1").event(name).data(data.to_string());
            Box::pin(stream::once(async move { Ok(event) }))
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Replays events after `after`, then follows the run until its last event.
pub(super) fn live(run: Arc<RunHandle>, after: u64) -> EventStream {
    let receiver = run.subscribe();
    Box::pin(
        stream::unfold(
            (run, receiver, after),
            |(run, mut receiver, cursor)| async move {
                loop {
                    let (events, ended) = run.events_after(cursor);
                    if let Some(last) = events.last() {
                        let next = last.id;
                        let batch: Vec<Result<Event, Infallible>> =
                            events.iter().map(to_sse).map(Ok).collect();
                        return Some((stream::iter(batch), (run, receiver, next)));
                    }
                    if ended {
                        return None;
                    }
                    // Wakes on the next event; an error means the run was dropped: stop.
                    if receiver.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
        .flatten(),
    )
}

fn to_sse(e: &RunEvent) -> Event {
    Event::default()
        .id(e.id.to_string())
        .event(e.name)
        .data(e.data.as_ref())
}

async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    check_id("run", &id)?;
    match state.runs.get(&id).filter(|r| r.user_id == user) {
        Some(run) if !run.is_ended() => {
            run.cancel();
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"run_id": id, "status": "cancelling"})),
            ))
        }
        _ => {
            let record = state
                .store
                .get_run(&user, &id)
                .await?
                .ok_or_else(|| ApiError::not_found("run"))?;
            // Cancelling a run that already ended is not an error: the outcome is what was asked.
            Ok((
                StatusCode::OK,
                Json(serde_json::json!({"run_id": id, "status": record.status})),
            ))
        }
    }
}
