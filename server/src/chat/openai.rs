//! An OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp, GPUStack, LM Studio…)
//! through async-openai's streaming chat completions.

use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FinishReason, FunctionCall, FunctionObject,
};
use async_openai::Client;
use futures_util::StreamExt;

use super::llm::{ChatMessage, LlmDelta, LlmError, LlmRequest, LlmStream};
use crate::config::ProviderConfig;

#[derive(Clone)]
pub struct OpenAiProvider {
    name: String,
    base_url: String,
    client: Client<OpenAIConfig>,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Self {
        let http = crate::net::http_client()
            // Only the connection has a deadline: a long answer may stream for minutes (the
            // orchestrator's idle limit catches a stream that goes silent).
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let client = Client::with_config(
            OpenAIConfig::new()
                .with_api_base(config.base_url.trim_end_matches('/'))
                .with_api_key(&config.api_key),
        )
        .with_http_client(http);
        Self {
            name: config.name.clone(),
            base_url: config.base_url.clone(),
            client,
        }
    }

    pub async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        let body = to_wire(request);
        let upstream = self
            .client
            .chat()
            .create_stream(body)
            .await
            .map_err(|e| self.describe(e))?;
        let provider = self.clone();
        let deltas = upstream.flat_map(move |item| {
            let out: Vec<Result<LlmDelta, LlmError>> = match item {
                Ok(chunk) => {
                    let mut out = Vec::new();
                    for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
                        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                            out.push(Ok(LlmDelta::Text(text)));
                        }
                        for call in choice.delta.tool_calls.unwrap_or_default() {
                            let (name, arguments) = match call.function {
                                Some(f) => (f.name, f.arguments),
                                None => (None, None),
                            };
                            out.push(Ok(LlmDelta::ToolCall {
                                index: call.index,
                                id: call.id,
                                name,
                                arguments,
                            }));
                        }
                        if let Some(reason) = choice.finish_reason {
                            out.push(Ok(LlmDelta::Finish(finish_reason_name(reason).into())));
                        }
                    }
                    out
                }
                Err(e) => vec![Err(provider.describe(e))],
            };
            futures_util::stream::iter(out)
        });
        Ok(Box::pin(deltas))
    }

    /// Turns a client error into something a user can act on (which server, what went wrong).
    fn describe(&self, error: OpenAIError) -> LlmError {
        let who = format!("the LLM provider `{}` ({})", self.name, self.base_url);
        match error {
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                let detail = api
                    .api_error
                    .message
                    .trim()
                    .chars()
                    .take(500)
                    .collect::<String>();
                match status {
                    401 | 403 => LlmError::new(
                        "llm_unauthorized",
                        format!("{who} rejected the API key ({status}): {detail}. Check OPENAI_API_KEY."),
                    ),
                    404 => LlmError::new("llm_not_found", format!("{who} answered 404 (unknown model or path): {detail}")),
                    429 => LlmError::new(
                        "llm_rate_limited",
                        format!("{who} is rate limiting requests (429): {detail}. Wait a moment and try again."),
                    ),
                    500..=599 => LlmError::new("llm_unavailable", format!("{who} failed with {status}: {detail}")),
                    _ => LlmError::new("llm_error", format!("{who} answered {status}: {detail}")),
                }
            }
            OpenAIError::Reqwest(e) if e.is_connect() => LlmError::new(
                "llm_unreachable",
                format!("Cannot connect to {who}: is it running? ({e})"),
            ),
            OpenAIError::Reqwest(e) if e.is_timeout() => {
                LlmError::new("llm_timeout", format!("{who} did not answer in time ({e})"))
            }
            OpenAIError::Reqwest(e) => LlmError::new(
                "llm_stream_error",
                format!("The connection to {who} broke off: {}", error_chain(&e)),
            ),
            OpenAIError::StreamError(e) => LlmError::new(
                "llm_stream_error",
                format!("The stream from {who} broke off: {e}"),
            ),
            OpenAIError::JSONDeserialize(e, content) => LlmError::new(
                "llm_bad_response",
                format!(
                    "{who} sent data that is not a chat completion chunk ({e}): {}",
                    content.chars().take(200).collect::<String>()
                ),
            ),
            other => LlmError::new("llm_error", format!("{who}: {other}")),
        }
    }
}

/// reqwest hides the interesting part ("connection closed before message completed") in sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}

fn to_wire(request: LlmRequest) -> CreateChatCompletionRequest {
    let messages = request.messages.into_iter().map(message_to_wire).collect();
    let tools = if request.tools.is_empty() {
        None
    } else {
        Some(
            request
                .tools
                .into_iter()
                .map(|t| {
                    ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObject {
                            name: t.name.to_string(),
                            description: Some(t.description),
                            parameters: Some(t.parameters),
                            strict: None,
                        },
                    })
                })
                .collect(),
        )
    };
    CreateChatCompletionRequest {
        model: request.model,
        messages,
        tools,
        stream: Some(true),
        ..Default::default()
    }
}

fn message_to_wire(message: ChatMessage) -> ChatCompletionRequestMessage {
    match message {
        ChatMessage::System(text) => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(text),
                name: None,
            })
        }
        ChatMessage::User(text) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(text),
                name: None,
            })
        }
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            #[allow(deprecated)] // `function_call` is deprecated but part of the struct literal.
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: (!content.is_empty() || tool_calls.is_empty())
                    .then_some(ChatCompletionRequestAssistantMessageContent::Text(content)),
                tool_calls: (!tool_calls.is_empty()).then(|| {
                    tool_calls
                        .into_iter()
                        .map(|c| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: c.id,
                                    function: FunctionCall {
                                        name: c.name,
                                        arguments: c.arguments,
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                refusal: None,
                name: None,
                audio: None,
                function_call: None,
            })
        }
        ChatMessage::Tool { call_id, content } => {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content),
                tool_call_id: call_id,
            })
        }
    }
}

/// The model ids a provider offers (`GET {base}/models`); used when the config lists none.
pub async fn list_models(config: &ProviderConfig) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Models {
        data: Vec<Model>,
    }
    #[derive(serde::Deserialize)]
    struct Model {
        id: String,
    }
    let url = format!("{}/models", config.base_url.trim_end_matches('/'));
    let client = crate::net::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(&url);
    if !config.api_key.is_empty() {
        request = request.bearer_auth(&config.api_key);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let models: Models = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}
