//! What the orchestrator asks of an LLM, independent of the wire: a conversation, the tools on
//! offer, and a stream of text and tool-call pieces back. Two providers implement it: an
//! OpenAI-compatible server through async-openai, and `direct`, which needs no model at all.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use super::direct::DirectProvider;
use super::openai::OpenAiProvider;
use super::text_calls::{Piece, TextCalls};
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
    /// Whether the model may answer in words or must call a tool.
    pub tool_choice: ToolChoice,
}

/// Whether the model must call a tool this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must call this tool (Paint mode: `image_generator`).
    Force(&'static str),
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

/// Index of the first tool call recognised in the text; real `tool_calls` deltas number theirs
/// from 0, so the two never share an index.
pub const TEXT_CALL_INDEX: u32 = 1_000_000;

/// Turns tool calls the model wrote into its text (see [`TextCalls`]) into the same tool-call
/// deltas a proper `tool_calls` answer gives, with generated ids, and passes the rest of the text
/// on. The text held back while it may be a call is released before an error, the finish
/// reason and the end of the stream. Without tools on offer the stream is passed on untouched.
pub fn with_text_calls(stream: LlmStream, tools: &[ToolSpec]) -> LlmStream {
    if tools.is_empty() {
        return stream;
    }
    struct State {
        recogniser: TextCalls,
        next: u32,
    }
    impl State {
        fn release(&mut self, pieces: Vec<Piece>, out: &mut Vec<Result<LlmDelta, LlmError>>) {
            for piece in pieces {
                out.push(Ok(match piece {
                    Piece::Text(text) => LlmDelta::Text(text),
                    Piece::Call(call) => {
                        let index = TEXT_CALL_INDEX + self.next;
                        self.next += 1;
                        LlmDelta::ToolCall {
                            index,
                            id: Some(format!(
                                "call_text_{}",
                                crate::store::new_id().replace('-', "")
                            )),
                            name: Some(call.name),
                            arguments: Some(call.arguments),
                        }
                    }
                }));
            }
        }

        fn feed(
            &mut self,
            item: Option<Result<LlmDelta, LlmError>>,
        ) -> Vec<Result<LlmDelta, LlmError>> {
            let mut out = Vec::new();
            match item {
                Some(Ok(LlmDelta::Text(text))) => {
                    let pieces = self.recogniser.push(&text);
                    self.release(pieces, &mut out);
                }
                Some(Ok(other @ LlmDelta::ToolCall { .. })) => out.push(Ok(other)),
                Some(other) => {
                    let pieces = self.recogniser.finish();
                    self.release(pieces, &mut out);
                    out.push(other);
                }
                None => {
                    let pieces = self.recogniser.finish();
                    self.release(pieces, &mut out);
                }
            }
            out
        }
    }
    let state = State {
        recogniser: TextCalls::new(tools.iter().map(|t| t.name)),
        next: 0,
    };
    let deltas = stream
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
        .scan(state, |state, item| {
            futures_util::future::ready(Some(futures_util::stream::iter(state.feed(item))))
        })
        .flatten();
    Box::pin(deltas)
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

    fn spec() -> ToolSpec {
        ToolSpec {
            name: "image_generator",
            description: String::new(),
            parameters: serde_json::json!({}),
        }
    }

    async fn collect(deltas: Vec<Result<LlmDelta, LlmError>>, tools: &[ToolSpec]) -> Vec<LlmDelta> {
        let stream: LlmStream = Box::pin(futures_util::stream::iter(deltas));
        with_text_calls(stream, tools)
            .map(|d| d.expect("no error"))
            .collect::<Vec<_>>()
            .await
    }

    #[tokio::test]
    async fn text_calls_become_tool_call_deltas_with_ids() {
        let deltas = [
            "Sure.\n<tool",
            "_call>{\"name\": \"image_generator\", ",
            "\"arguments\": {\"prompt\": \"a fox\"}}</tool_call>",
        ]
        .into_iter()
        .map(|t| Ok(LlmDelta::Text(t.into())))
        .chain([Ok(LlmDelta::Finish("stop".into()))])
        .collect();
        let out = collect(deltas, &[spec()]).await;
        assert_eq!(out[0], LlmDelta::Text("Sure.".into()));
        let LlmDelta::ToolCall {
            index,
            id,
            name,
            arguments,
        } = &out[1]
        else {
            panic!("{out:?}")
        };
        assert_eq!(*index, TEXT_CALL_INDEX);
        assert!(id.as_deref().unwrap().starts_with("call_text_"));
        assert_eq!(name.as_deref(), Some("image_generator"));
        assert_eq!(arguments.as_deref(), Some("{\"prompt\":\"a fox\"}"));
        assert_eq!(out[2], LlmDelta::Finish("stop".into()));
        assert_eq!(out.len(), 3);
        let mut a = ToolCallAssembler::default();
        for d in out {
            if let LlmDelta::ToolCall {
                index,
                id,
                name,
                arguments,
            } = d
            {
                a.push(index, id, name, arguments);
            }
        }
        assert_eq!(a.finish()[0].arguments, "{\"prompt\":\"a fox\"}");
    }

    #[tokio::test]
    async fn held_text_is_released_at_the_end_and_without_tools_nothing_changes() {
        let deltas = || {
            vec![
                Ok(LlmDelta::Text("a <".into())),
                Ok(LlmDelta::Text("tool".into())),
            ]
        };
        let out = collect(deltas(), &[spec()]).await;
        assert_eq!(
            out,
            vec![LlmDelta::Text("a".into()), LlmDelta::Text(" <tool".into())]
        );
        let out = collect(deltas(), &[]).await;
        assert_eq!(
            out,
            vec![LlmDelta::Text("a <".into()), LlmDelta::Text("tool".into())]
        );
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
