//! `POST /api/conversations/{id}/messages` starts an assistant turn and answers at once with
//! the run's id (202): the browser never waits on an open request for a run. `DELETE
//! /api/messages/{id}` removes a message and its images.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use app::api::{limits, PostMessage, PostMessageResponse};

use super::conversations::owned;
use super::error::{ApiError, ApiResult};
use super::extract::{check_id, ApiJson, CurrentUser};
use super::routes::{Family, Routes};
use super::AppState;
use crate::chat::orchestrator::{self, Turn, TurnLimits};
use crate::store::MessageStatus;

pub fn routes() -> Routes {
    Routes::new(Family::Api, "/api")
        .post("/conversations/{id}/messages", send)
        .delete("/messages/{id}", remove)
}

/// Longest automatic title, cut at a word boundary.
const AUTO_TITLE_CHARS: usize = 60;

async fn send(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PostMessage>,
) -> ApiResult<(StatusCode, Json<PostMessageResponse>)> {
    let conversation = owned(&state.store, &user, &id).await?;
    let (content, paint) = paint_request(&body.content, body.paint);
    let body = PostMessage { content, paint };
    let chars = body.content.chars().count();
    if body.content.trim().is_empty() || chars > limits::MESSAGE_MAX_CHARS {
        return Err(ApiError::unprocessable(
            "invalid_content",
            format!(
                "content must be 1 to {} characters and not only spaces (got {chars})",
                limits::MESSAGE_MAX_CHARS
            ),
        ));
    }
    if body.content.contains('\0') {
        return Err(ApiError::unprocessable(
            "invalid_content",
            "content must not contain NUL characters",
        ));
    }
    let model = state.providers.resolve(conversation.model.as_deref());
    let model_id = match &model {
        Ok(m) => m.id.clone(),
        Err(_) => conversation.model.clone().unwrap_or_default(),
    };
    let history = state.store.list_messages(&conversation.id).await?;
    // Committed before any model is called: nothing the user wrote can be lost. At most one
    // reply runs per conversation (the database enforces it).
    let started = match state
        .store
        .begin_turn(
            &user,
            &conversation.id,
            &body.content,
            &model_id,
            (state.cluster.node_id(), state.cluster.lease_until()),
        )
        .await?
    {
        Ok(started) => started,
        Err(active) => {
            return Err(ApiError::conflict(if active.is_empty() {
                "A reply is still being written in this conversation; wait for it or stop it first."
                    .to_string()
            } else {
                format!("A reply is still being written in this conversation (run {active}); wait for it or stop it first.")
            }))
        }
    };
    let (user_message, assistant, run_id) =
        (started.user_message, started.assistant, started.run_id);
    state
        .store
        .set_automatic_title(&conversation.id, &automatic_title(&body.content))
        .await?;

    let instructions = match &conversation.agent_version_id {
        Some(version) => state
            .store
            .get_agent_version(version)
            .await?
            .map(|v| v.settings.instructions)
            .filter(|i| !i.trim().is_empty()),
        None => None,
    };
    let run = state.runs.start(
        run_id.clone(),
        user.clone(),
        conversation.id.clone(),
        assistant.id.clone(),
    );
    let turn = Turn {
        store: state.store.clone(),
        jobs: state.jobs.clone(),
        runs: state.runs.clone(),
        run,
        model,
        image_creation: conversation.image_creation,
        paint: body.paint,
        limits: TurnLimits {
            llm_idle: state.config.llm_idle_timeout,
            tool_calls_per_round: state.config.max_tool_calls,
        },
        instructions,
        history,
        user_text: body.content,
    };
    tokio::spawn(orchestrator::drive(turn));
    Ok((
        StatusCode::ACCEPTED,
        Json(PostMessageResponse {
            message_id: user_message.id,
            assistant_message_id: assistant.id,
            run_id,
        }),
    ))
}

/// The command that turns Paint mode on for one message.
const PAINT_COMMAND: &str = "/image";

/// A message starting with `/image ` is a Paint-mode request for the rest of it.
fn paint_request(content: &str, paint: bool) -> (String, bool) {
    let start = content.trim_start();
    match start.strip_prefix(PAINT_COMMAND) {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
            (rest.trim_start().to_string(), true)
        }
        _ => (content.to_string(), paint),
    }
}

/// The first line of the message, shortened at a word boundary.
fn automatic_title(content: &str) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New conversation");
    if line.chars().count() <= AUTO_TITLE_CHARS {
        return line.to_string();
    }
    let cut: String = line.chars().take(AUTO_TITLE_CHARS).collect();
    let at = cut
        .rfind(' ')
        .filter(|&i| i > AUTO_TITLE_CHARS / 2)
        .unwrap_or(cut.len());
    format!("{}…", cut[..at].trim_end())
}

async fn remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    check_id("message", &id)?;
    let message = state
        .store
        .get_message(&user, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    if message.status == MessageStatus::Running || !state.store.delete_message(&user, &id).await? {
        return Err(ApiError::conflict(
            "This reply is still being written; stop the run before deleting it.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::{automatic_title, paint_request};

    #[test]
    fn the_image_command_is_paint_mode_and_is_stripped() {
        assert_eq!(
            paint_request("/image a red fox", false),
            ("a red fox".to_string(), true)
        );
        assert_eq!(
            paint_request("  /image\n a fox ", false),
            ("a fox ".to_string(), true)
        );
        assert_eq!(paint_request("/image", false), (String::new(), true));
        assert_eq!(
            paint_request("/images of foxes", false),
            ("/images of foxes".to_string(), false)
        );
        assert_eq!(paint_request("a fox", true), ("a fox".to_string(), true));
    }

    #[test]
    fn titles_are_the_first_line_shortened_at_a_word() {
        assert_eq!(automatic_title("\n  Hello there \nmore"), "Hello there");
        let long = "Paint a lighthouse on a rocky cliff at dusk with waves crashing below and gulls overhead";
        let t = automatic_title(long);
        assert!(t.ends_with('…') && t.chars().count() <= 61, "{t}");
        assert!(long.starts_with(t.trim_end_matches('…')));
    }
}
