//! What the orchestrator asks of an LLM, independent of the wire: a conversation, the tools on
//! offer, and a stream of text and tool-call pieces back. Two providers implement it: an
//! OpenAI-compatible server through async-openai, and `direct`, which needs no model at all.

use std::pin::Pin;

use futures_util::Stream;

use super::direct::DirectProvider;
use super::openai::OpenAiProvider;
use crate::tools::ToolSpec;

/// One message of the context sent to the LLM.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    Assistant {
        content: String,
        tool_calls: Vec<ToolCallRequest>,
    },
    Tool {
        call_id: String,
        content: String,
    },
}

/// A complete tool call, assembled from its streamed pieces.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRequest {
    pub id: String,
    pub name: String,
    /// The arguments exactly as the model produced them (may be invalid JSON).
    pub arguments: String,
}

#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// The model name as the provider knows it (without the `provider/` prefix).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// Empty means the request carries no `tools` field at all.
    pub tools: Vec<ToolSpec>,
}

/// A piece of the streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmDelta {
    Text(String),
    /// Part of tool call number `index`: the id and name arrive first, arguments in pieces.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: Option<String>,
    },
    /// The model said why it stopped (`stop`, `tool_calls`, `length`…).
    Finish(String),
}

/// Why talking to the LLM failed, in words a user can act on. `code` goes into `run.error`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub code: &'static str,
    pub message: String,
}

impl LlmError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmDelta, LlmError>> + Send>>;

/// The providers Easel can talk to. An enum rather than a trait object: there are two, both
/// known here, and `match` keeps the call sites plain async code.
#[derive(Clone)]
pub enum LlmProvider {
    OpenAi(Box<OpenAiProvider>),
    Direct(DirectProvider),
}

impl LlmProvider {
    pub async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        match self {
            LlmProvider::OpenAi(p) => p.stream(request).await,
            LlmProvider::Direct(p) => Ok(p.stream(request)),
        }
    }
}

/// Assembles tool calls from deltas: several calls per turn, each call's id and name first and
/// its arguments split across any number of chunks, keyed by the `index` the wire format gives.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: std::collections::BTreeMap<u32, ToolCallRequest>,
}

impl ToolCallAssembler {
    pub fn push(
        &mut self,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: Option<String>,
    ) {
        let call = self.calls.entry(index).or_insert_with(|| ToolCallRequest {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            call.id = id;
        }
        if let Some(name) = name {
            // Some servers repeat the name in every chunk; others send it in pieces.
            if !call.name.ends_with(&name) || call.name.is_empty() {
                call.name.push_str(&name);
            }
        }
        if let Some(arguments) = arguments {
            call.arguments.push_str(&arguments);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls in index order; a call without an id gets one, so results can refer to it.
    pub fn finish(self) -> Vec<ToolCallRequest> {
        self.calls
            .into_iter()
            .map(|(index, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{index}_{}", crate::store::new_id().replace('-', ""));
                }
                call
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_interleaved_calls_with_split_arguments() {
        let mut a = ToolCallAssembler::default();
        a.push(
            0,
            Some("call_a".into()),
            Some("image_generator".into()),
            Some("{\"pro".into()),
        );
        a.push(
            1,
            Some("call_b".into()),
            Some("image_generator".into()),
            None,
        );
        a.push(0, None, None, Some("mpt\":\"a cat\"}".into()));
        a.push(1, None, None, Some("{\"prompt\":\"a dog\",\"n\":2}".into()));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].arguments, "{\"prompt\":\"a cat\"}");
        assert_eq!(calls[1].name, "image_generator");
        assert_eq!(calls[1].arguments, "{\"prompt\":\"a dog\",\"n\":2}");
    }

    #[test]
    fn repeated_name_is_not_doubled_and_missing_id_is_filled() {
        let mut a = ToolCallAssembler::default();
        a.push(0, None, Some("image_generator".into()), None);
        a.push(0, None, Some("image_generator".into()), Some("{}".into()));
        let calls = a.finish();
        assert_eq!(calls[0].name, "image_generator");
        assert!(calls[0].id.starts_with("call_0_"));
    }
}
