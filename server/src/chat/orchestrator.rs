//! The assistant's turn: stream the LLM's answer, run the tools it calls, give it their
//! results, and repeat until it answers in words (at most [`MAX_ROUNDS`] rounds). Then store
//! the message, its tool calls and its images in one transaction, and end the run.
//!
//! Invariant: the user's message is committed before this starts (see `Store::begin_turn`),
//! and whatever happens here (upstream errors, cancellation, a tool failing) ends with the
//! assistant message in a final state that says what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::api::events::{self as ev, ImageDone, ImageProgress, ImageQueued};
use app::api::{InternalTools, ToolCallRecord};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::llm::{ChatMessage, LlmDelta, LlmError, LlmRequest, ToolCallAssembler, ToolCallRequest};
use super::run::{PendingImage, RunHandle, RunRegistry};
use super::ResolvedModel;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::{EngineError, ImageEngine};
use crate::store::{ImageBlob, MessageFinal, MessageRecord, NewImage, Store};
use crate::tools::{self, ToolContext, ToolImage, ToolSink};

/// Tool rounds per turn; the last round offers no tools, so the model must answer in words.
pub const MAX_ROUNDS: usize = 5;
/// How often the partial answer is saved while it streams (crash safety vs. write load).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Rough character budget of the history sent as context (~30k tokens).
const HISTORY_CHAR_BUDGET: usize = 120_000;

/// Everything a turn needs, gathered by the HTTP layer when the message arrives.
pub struct Turn {
    pub store: Store,
    pub engine: ImageEngine,
    pub runs: RunRegistry,
    pub run: Arc<RunHandle>,
    /// Who answers; an error (unknown provider, no model) fails the run with its reason.
    pub model: Result<ResolvedModel, LlmError>,
    pub tools: InternalTools,
    /// The agent's instructions, if the conversation has an agent.
    pub instructions: Option<String>,
    /// The conversation's messages before this turn, in order.
    pub history: Vec<MessageRecord>,
    pub user_text: String,
}

/// How the turn ended, before it is stored.
enum Ending {
    Finished,
    Cancelled,
    Failed { code: String, message: String },
}

/// What the turn produced so far.
#[derive(Default)]
struct Produced {
    content: String,
    tool_calls: Vec<ToolCallRecord>,
    images: Vec<ToolImage>,
}

/// Drives the turn to its end. Never panics on upstream or tool failures: they become the
/// message's final state and a `run.error` event.
pub async fn drive(turn: Turn) {
    let run = turn.run.clone();
    run.emit(
        ev::RUN_STARTED,
        &ev::RunStarted {
            run_id: run.id.clone(),
            conversation_id: run.conversation_id.clone(),
            message_id: run.assistant_message_id.clone(),
            model: turn
                .model
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_default(),
        },
    );
    let mut produced = Produced::default();
    let ending = converse(&turn, &mut produced).await;
    finish(&turn, produced, ending).await;
}

async fn converse(turn: &Turn, produced: &mut Produced) -> Ending {
    let run = &turn.run;
    let cancel = run.cancel_token();
    let model = match &turn.model {
        Ok(m) => m,
        Err(e) => return failed(e.clone()),
    };
    if turn.tools.image_creation && !turn.engine.available() {
        return Ending::Failed {
            code: "no_image_model".into(),
            message: EngineError::NoModel.to_string(),
        };
    }
    let offered = tools::offered(turn.tools, &turn.engine);
    let mut messages = context(turn, !offered.is_empty());
    let sink = RunSink { run: run.clone() };
    let find_image = image_finder(turn);
    let mut last_checkpoint = Instant::now();

    for round in 0..MAX_ROUNDS {
        let last_round = round + 1 == MAX_ROUNDS;
        let request = LlmRequest {
            model: model.upstream.clone(),
            messages: messages.clone(),
            tools: if last_round {
                Vec::new()
            } else {
                offered.clone()
            },
        };
        let stream = tokio::select! {
            s = model.provider.stream(request) => s,
            _ = cancel.cancelled() => return Ending::Cancelled,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let mut calls = ToolCallAssembler::default();
        let mut round_text = String::new();
        let mut finished = false;
        loop {
            // Dropping the stream on cancel closes the upstream connection at once.
            let next = tokio::select! {
                next = stream.next() => next,
                _ = cancel.cancelled() => return Ending::Cancelled,
            };
            match next {
                None => break,
                Some(Err(e)) => return failed(e),
                Some(Ok(LlmDelta::Text(text))) => {
                    if !produced.content.is_empty() && round_text.is_empty() && round > 0 {
                        produced.content.push_str("\n\n");
                        run.emit(
                            ev::MESSAGE_DELTA,
                            &ev::MessageDelta {
                                text: "\n\n".into(),
                            },
                        );
                    }
                    round_text.push_str(&text);
                    produced.content.push_str(&text);
                    run.emit(ev::MESSAGE_DELTA, &ev::MessageDelta { text });
                    if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                        last_checkpoint = Instant::now();
                        if let Err(e) = turn
                            .store
                            .checkpoint_message(&run.assistant_message_id, &produced.content)
                            .await
                        {
                            tracing::warn!(run = %run.id, "checkpoint failed: {e}");
                        }
                    }
                }
                Some(Ok(LlmDelta::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                })) => calls.push(index, id, name, arguments),
                Some(Ok(LlmDelta::Finish(_))) => finished = true,
            }
        }
        if !finished {
            return failed(LlmError::new(
                "llm_stream_error",
                "The LLM's stream ended before the answer was complete (the connection closed without a finish reason).",
            ));
        }
        let calls = calls.finish();
        if calls.is_empty() {
            return Ending::Finished;
        }
        messages.push(ChatMessage::Assistant {
            content: round_text,
            tool_calls: calls.clone(),
        });
        for call in calls {
            let outcome = run_tool(
                turn,
                &call,
                &offered,
                &sink,
                &find_image,
                produced.images.len() as u32,
                cancel.clone(),
            )
            .await;
            run.emit(
                ev::TOOL_RESULT,
                &ev::ToolResult {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    result: outcome.reason(),
                    is_error: outcome.is_error,
                },
            );
            produced.tool_calls.push(ToolCallRecord {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                result: outcome.result.clone(),
                is_error: outcome.is_error,
            });
            produced.images.extend(outcome.images);
            messages.push(ChatMessage::Tool {
                call_id: call.id,
                content: outcome.result,
            });
            if outcome.cancelled || cancel.is_cancelled() {
                return Ending::Cancelled;
            }
        }
    }
    Ending::Finished
}

fn failed(e: LlmError) -> Ending {
    Ending::Failed {
        code: e.code.to_string(),
        message: e.message,
    }
}

async fn run_tool(
    turn: &Turn,
    call: &ToolCallRequest,
    offered: &[super::llm::ToolSpec],
    sink: &RunSink,
    find_image: &(dyn Fn(&str) -> BoxFuture<'static, Option<Vec<u8>>> + Send + Sync),
    first_index: u32,
    cancel: CancellationToken,
) -> tools::ToolOutcome {
    turn.run.emit(
        ev::TOOL_CALL,
        &ev::ToolCall {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        },
    );
    if !offered.iter().any(|t| t.name == call.name) {
        return tools::ToolOutcome::error(format!(
            "the tool `{}` is not enabled in this conversation (Image creation is off)",
            call.name
        ));
    }
    let ctx = ToolContext {
        engine: &turn.engine,
        cancel,
        sink,
        call_id: &call.id,
        first_index,
        preview: PreviewRate::Faster,
        find_image,
    };
    tools::call(&call.name, &call.arguments, &ctx).await
}

/// System prompt, history (with earlier tool calls and their results) and the new message.
fn context(turn: &Turn, images_on: bool) -> Vec<ChatMessage> {
    let mut system = turn.instructions.clone().unwrap_or_default();
    if images_on {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(
            "You can create images with the image_generator tool. Use it when the user asks for a picture. \
Write a rich, specific prompt. The user sees the images as they are made, so don't describe them at length \
or paste links; say briefly what you made. To refine an earlier image, pass its id as source_image, or reuse its seed.",
        );
    }
    let mut out = Vec::new();
    if !system.is_empty() {
        out.push(ChatMessage::System(system));
    }
    // Newest messages first until the budget is spent, then restore order.
    let mut kept: Vec<&MessageRecord> = Vec::new();
    let mut used = turn.user_text.len();
    for m in turn.history.iter().rev() {
        let size = m.content.len()
            + m.tool_calls
                .iter()
                .map(|c| c.arguments.len() + c.result.len())
                .sum::<usize>();
        if used + size > HISTORY_CHAR_BUDGET {
            break;
        }
        used += size;
        kept.push(m);
    }
    for m in kept.into_iter().rev() {
        match m.role.as_str() {
            "user" => out.push(ChatMessage::User(m.content.clone())),
            _ if m.status == "running" => {}
            _ => {
                if !m.tool_calls.is_empty() {
                    let calls = m
                        .tool_calls
                        .iter()
                        .map(|c| ToolCallRequest {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            arguments: c.arguments.clone(),
                        })
                        .collect();
                    out.push(ChatMessage::Assistant {
                        content: String::new(),
                        tool_calls: calls,
                    });
                    for c in &m.tool_calls {
                        out.push(ChatMessage::Tool {
                            call_id: c.id.clone(),
                            content: c.result.clone(),
                        });
                    }
                }
                let mut text = m.content.clone();
                if m.status == "failed" {
                    continue;
                }
                if m.status == "cancelled" {
                    text.push_str("\n\n[The user stopped this reply.]");
                }
                if !text.trim().is_empty() {
                    out.push(ChatMessage::Assistant {
                        content: text,
                        tool_calls: Vec::new(),
                    });
                }
            }
        }
    }
    out.push(ChatMessage::User(turn.user_text.clone()));
    out
}

/// Finds an image of this conversation (committed, or made earlier in this run) by id.
fn image_finder(turn: &Turn) -> impl Fn(&str) -> BoxFuture<'static, Option<Vec<u8>>> + Send + Sync {
    let store = turn.store.clone();
    let runs = turn.runs.clone();
    let user = turn.run.user_id.clone();
    let conversation = turn.run.conversation_id.clone();
    move |id: &str| {
        let (store, runs) = (store.clone(), runs.clone());
        let (user, id, conversation) = (user.clone(), id.to_string(), conversation.clone());
        Box::pin(async move {
            if let Some(p) = runs.pending_image(&user, &id) {
                return Some(p.png.as_ref().clone());
            }
            let record = store.get_image(&user, &id).await.ok()??;
            if record.conversation_id.as_deref() != Some(conversation.as_str()) {
                return None;
            }
            store.image_bytes(&user, &id, ImageBlob::Png).await.ok()?
        })
    }
}

/// Stores the final state and ends the run with the fitting event.
async fn finish(turn: &Turn, produced: Produced, ending: Ending) {
    let run = &turn.run;
    let (status, error, content) = match &ending {
        Ending::Finished => ("complete", None, produced.content.clone()),
        Ending::Cancelled => ("cancelled", None, produced.content.clone()),
        Ending::Failed { code, message } => (
            "failed",
            Some((code.clone(), message.clone())),
            produced.content.clone(),
        ),
    };
    // Images the user deleted while the run was going are gone from the pending set.
    let images: Vec<NewImage> = produced
        .images
        .iter()
        .filter(|i| run.pending_image(&i.id).is_some())
        .enumerate()
        .map(|(position, i)| NewImage {
            id: i.id.clone(),
            user_id: run.user_id.clone(),
            message_id: Some(run.assistant_message_id.clone()),
            conversation_id: Some(run.conversation_id.clone()),
            source: "chat",
            position: position as u32,
            width: i.width,
            height: i.height,
            png: i.png.clone(),
            thumbnail: i.thumbnail.clone(),
            metadata: i.metadata.clone(),
        })
        .collect();
    let fin = MessageFinal {
        content: content.clone(),
        status,
        error: error.clone(),
        tool_calls: produced.tool_calls,
        images,
    };
    let saved = turn
        .store
        .finish_turn(&run.id, &run.assistant_message_id, fin)
        .await;
    run.clear_pending_images();
    let ended = |status: &str| ev::RunEnded {
        run_id: run.id.clone(),
        status: status.into(),
    };
    match saved {
        Err(e) => {
            tracing::error!(run = %run.id, "could not store the reply: {e}");
            run.end(
                ev::RUN_ERROR,
                &ev::RunError {
                    code: "storage_error".into(),
                    message: format!("The reply could not be saved: {e}"),
                },
            );
        }
        Ok(_) => {
            run.emit(
                ev::MESSAGE_DONE,
                &ev::MessageDone {
                    message_id: run.assistant_message_id.clone(),
                    content,
                    status: status.into(),
                },
            );
            match ending {
                Ending::Finished => run.end(ev::RUN_FINISHED, &ended("finished")),
                Ending::Cancelled => run.end(ev::RUN_CANCELLED, &ended("cancelled")),
                Ending::Failed { code, message } => {
                    run.end(ev::RUN_ERROR, &ev::RunError { code, message })
                }
            }
        }
    }
    turn.runs.retire(&run.id);
}

/// Relays tool progress into the run's event log.
struct RunSink {
    run: Arc<RunHandle>,
}

impl ToolSink for RunSink {
    fn image_queued(&self, event: ImageQueued) {
        self.run.emit(ev::IMAGE_QUEUED, &event);
    }

    fn image_progress(&self, event: ImageProgress) {
        self.run.emit_progress(&event);
    }

    fn image_ready(&self, image: &ToolImage) {
        self.run.add_pending_image(
            &image.id,
            PendingImage {
                png: Arc::new(image.png.clone()),
                thumbnail: Arc::new(image.thumbnail.clone()),
            },
        );
        self.run.emit(
            ev::IMAGE_DONE,
            &ImageDone {
                index: image.index,
                image_id: image.id.clone(),
                url: app::api::image_url(&image.id, "png"),
                thumbnail_url: app::api::thumbnail_url(&image.id),
                width: image.width,
                height: image.height,
                seed: image.seed,
            },
        );
    }
}
