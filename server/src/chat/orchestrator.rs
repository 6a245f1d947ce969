//! The assistant's turn: stream the LLM's answer, run the tools it calls, give it their
//! results, and repeat until it answers in words (at most [`MAX_ROUNDS`] rounds). Then store
//! the message's final text and status, and end the run.
//!
//! Invariants: the user's message is committed before this starts (see `Store::begin_turn`);
//! while it runs, the partial text is checkpointed, each tool call is stored with its result as
//! it completes, and each image is stored by its job as it finishes, so a crash at any moment
//! loses nothing a client was told about. Whatever happens here (upstream errors, a silent
//! upstream, cancellation, a tool failing) ends with the assistant message in a final state that
//! says what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::api::events as ev;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::direct::DirectProvider;
use super::llm::{
    ChatMessage, LlmDelta, LlmError, LlmProvider, LlmRequest, ToolCallAssembler, ToolCallRequest,
    ToolChoice,
};
use super::run::{RunHandle, RunRegistry};
use super::ResolvedModel;
use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::EngineError;
use crate::jobs::wire::WireEvent;
use crate::jobs::JobService;
use crate::store::{ImageBlob, MessageEnd, MessageRecord, MessageStatus, Role, Store, ToolCall};
use crate::tools::{self, image_generator, ToolContext, ToolSink, ToolSpec};

/// Tool rounds per turn; the last round offers no tools, so the model must answer in words.
pub const MAX_ROUNDS: usize = 5;
/// How often the partial answer is saved while it streams (crash safety vs. write load).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Rough character budget of the history sent as context (~30k tokens).
const HISTORY_CHAR_BUDGET: usize = 120_000;

/// Limits of a turn (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct TurnLimits {
    /// Longest silence of the LLM's stream before the run fails (`EASEL_LLM_IDLE_TIMEOUT`).
    pub llm_idle: Duration,
    /// Tool calls run per LLM round; the rest are answered with an error the LLM can read.
    pub tool_calls_per_round: usize,
}

impl Default for TurnLimits {
    fn default() -> Self {
        TurnLimits {
            llm_idle: Duration::from_secs(120),
            tool_calls_per_round: 4,
        }
    }
}

/// Everything a turn needs, gathered by the HTTP layer when the message arrives.
pub struct Turn {
    pub store: Store,
    pub jobs: JobService,
    pub runs: RunRegistry,
    pub run: Arc<RunHandle>,
    /// Who answers; an error (unknown provider, no model) fails the run with its reason.
    pub model: Result<ResolvedModel, LlmError>,
    pub image_creation: bool,
    /// Paint mode: the first answer must call `image_generator` (only with Image creation on).
    pub paint: bool,
    pub limits: TurnLimits,
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
    tool_calls: Vec<ToolCall>,
    /// Images stored on the message so far (the next call's images are numbered after them).
    images: u32,
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
    if turn.image_creation && !turn.jobs.engine().available() {
        return Ending::Failed {
            code: "no_image_model".into(),
            message: EngineError::NoModel.to_string(),
        };
    }
    // Easel's own answer without an LLM knows whether an image model is installed.
    let direct;
    let provider = match &model.provider {
        LlmProvider::Direct(_) => {
            direct = LlmProvider::Direct(DirectProvider {
                no_image_model: !turn.jobs.engine().available(),
            });
            &direct
        }
        other => other,
    };
    let offered = tools::offered(turn.image_creation, turn.jobs.engine());
    // Paint mode forces the call in the first round only: after it, the model answers freely.
    let paint = turn.paint && offered.iter().any(|t| t.name == image_generator::NAME);
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
            tool_choice: if paint && round == 0 {
                ToolChoice::Force(image_generator::NAME)
            } else {
                ToolChoice::Auto
            },
        };
        let stream = tokio::select! {
            s = provider.stream(request) => s,
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
            // Dropping the stream on cancel closes the upstream connection at once; a stream
            // that goes silent for longer than the idle limit fails the run instead of hanging.
            let next = tokio::select! {
                next = tokio::time::timeout(turn.limits.llm_idle, stream.next()) => match next {
                    Ok(next) => next,
                    Err(_) => return failed(LlmError::new(
                        "llm_timeout",
                        format!(
                            "The LLM sent nothing for {} seconds; the reply was stopped. Try again, or raise EASEL_LLM_IDLE_TIMEOUT for slow models.",
                            turn.limits.llm_idle.as_secs()
                        ),
                    )),
                },
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
        for (k, call) in calls.into_iter().enumerate() {
            let outcome = if k < turn.limits.tool_calls_per_round {
                run_tool(
                    turn,
                    &call,
                    &offered,
                    &sink,
                    &find_image,
                    produced.images,
                    cancel.clone(),
                )
                .await
            } else {
                run.emit(
                    ev::TOOL_CALL,
                    &ev::ToolCall {
                        id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    },
                );
                tools::ToolOutcome::error(format!(
                    "at most {} tool calls run per answer; this one was skipped. Call it again in your next answer if it is still needed",
                    turn.limits.tool_calls_per_round
                ))
            };
            run.emit(
                ev::TOOL_RESULT,
                &ev::ToolResult {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    result: outcome.reason(),
                    is_error: outcome.is_error,
                },
            );
            produced.tool_calls.push(ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
                result: outcome.result.clone(),
                is_error: outcome.is_error,
            });
            produced.images += outcome.images;
            // Each completed call is stored at once: a crash keeps what the LLM was told.
            if let Err(e) = turn
                .store
                .set_tool_calls(&run.assistant_message_id, &produced.tool_calls)
                .await
            {
                tracing::warn!(run = %run.id, "cannot store the tool call: {e}");
            }
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
    offered: &[ToolSpec],
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
        jobs: &turn.jobs,
        owner: &turn.run.user_id,
        conversation_id: &turn.run.conversation_id,
        message_id: &turn.run.assistant_message_id,
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
        match m.role {
            Role::User => out.push(ChatMessage::User(m.content.clone())),
            _ if m.status == MessageStatus::Running => {}
            Role::Assistant => {
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
                if m.status == MessageStatus::Failed {
                    continue;
                }
                if m.status == MessageStatus::Cancelled {
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

/// Finds an image of this conversation (stored earlier, or earlier in this run) by id.
fn image_finder(turn: &Turn) -> impl Fn(&str) -> BoxFuture<'static, Option<Vec<u8>>> + Send + Sync {
    let store = turn.store.clone();
    let user = turn.run.user_id.clone();
    let conversation = turn.run.conversation_id.clone();
    move |id: &str| {
        let store = store.clone();
        let (user, id, conversation) = (user.clone(), id.to_string(), conversation.clone());
        Box::pin(async move {
            uuid::Uuid::try_parse(&id).ok()?;
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
    let (status, error) = match &ending {
        Ending::Finished => (MessageStatus::Complete, None),
        Ending::Cancelled => (MessageStatus::Cancelled, None),
        Ending::Failed { code, message } => {
            (MessageStatus::Failed, Some((code.clone(), message.clone())))
        }
    };
    // A stopped or failed reply takes its unfinished image jobs with it.
    if !matches!(ending, Ending::Finished) {
        if let Err(e) = turn
            .jobs
            .cancel_for_message(&run.user_id, &run.assistant_message_id)
            .await
        {
            tracing::warn!(run = %run.id, "cannot cancel the reply's image jobs: {e}");
        }
    }
    let end = MessageEnd {
        content: produced.content.clone(),
        status,
        error,
    };
    let saved = turn
        .store
        .finish_turn(&run.id, &run.assistant_message_id, end)
        .await;
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
                    content: produced.content,
                    status: status.as_str().into(),
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
    fn image_event(&self, event: WireEvent) {
        match event {
            WireEvent::Queued(e) => self.run.emit(ev::IMAGE_QUEUED, &e),
            WireEvent::Position(e) => self.run.emit(ev::IMAGE_POSITION, &e),
            WireEvent::Progress(e) => self.run.emit_progress(&e),
            WireEvent::Done(e) => self.run.emit(ev::IMAGE_DONE, &e),
        }
    }
}
