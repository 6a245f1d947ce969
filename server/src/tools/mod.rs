//! Easel's internal tools: what the LLM may call, each switched on per conversation (and per
//! agent) through `internal_tools`. The first and, for now, only one is `image_generator`.
//!
//! A tool answers the LLM with short text (JSON) and never with pixels. `image_generator`
//! submits an image job; the job stores each image on the reply's message as it finishes, and
//! the tool relays the job's events into the run.
//!
//! The tools know nothing of chat: the orchestrator (`chat`) imports [`ToolSpec`] and calls
//! [`call`] with a [`ToolContext`] describing the run.

pub mod image_generator;
pub mod styles;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::imaging::diffusion::preview::PreviewRate;
use crate::imaging::ImageEngine;
use crate::jobs::wire::WireEvent;
use crate::jobs::JobService;

/// A function the model may call: name, description and JSON-Schema parameters.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Where a running tool reports image progress (the run's event log, in practice).
pub trait ToolSink: Send + Sync {
    fn image_event(&self, event: WireEvent);
}

/// What a tool call needs from the run that makes it.
pub struct ToolContext<'a> {
    pub jobs: &'a JobService,
    /// Who the images are for, and the reply (message) they belong to.
    pub owner: &'a str,
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    pub cancel: CancellationToken,
    pub sink: &'a dyn ToolSink,
    pub call_id: &'a str,
    /// Message-level index of this call's first image (earlier calls' images come first).
    pub first_index: u32,
    pub preview: PreviewRate,
    /// Looks up an image of this conversation by id (PNG bytes), for `source_image`.
    pub find_image: &'a (dyn Fn(&str) -> BoxFuture<'static, Option<Vec<u8>>> + Send + Sync),
}

/// A tool's answer: `result` is the text the LLM sees.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub result: String,
    pub is_error: bool,
    /// Images the call stored on the message (they count for the next call's indexes).
    pub images: u32,
    pub cancelled: bool,
}

impl ToolOutcome {
    /// A failure the LLM can correct: the reason and a nudge to retry.
    pub fn error(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let result = serde_json::json!({
            "status": "error",
            "error": reason,
            "hint": "Correct the arguments and call the tool again, or tell the user why it cannot be done."
        });
        ToolOutcome {
            result: result.to_string(),
            is_error: true,
            images: 0,
            cancelled: false,
        }
    }

    /// The plain reason, for the user-facing event.
    pub fn reason(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.result)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| self.result.clone())
    }
}

/// The tools offered to the LLM for a conversation's toggles; empty means "send no tools".
pub fn offered(image_creation: bool, engine: &ImageEngine) -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    if image_creation {
        if let Ok(model) = engine.model(None) {
            let info = model.info();
            tools.push(image_generator::spec(&info.allowed_sizes, info.edit));
        }
    }
    tools
}

/// Dispatches a call by name; unknown names are answered, not crashed on.
pub async fn call(name: &str, arguments: &str, ctx: &ToolContext<'_>) -> ToolOutcome {
    match name {
        image_generator::NAME => image_generator::call(ctx, arguments).await,
        other => ToolOutcome::error(format!(
            "there is no tool named `{other}`; the available tool is image_generator"
        )),
    }
}
