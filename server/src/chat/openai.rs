//! An OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp, GPUStack, LM Studio…)
//! through async-openai's streaming chat completions.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionNamedToolChoice,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequest, FinishReason, FunctionCall, FunctionName,
    FunctionObject, ToolChoiceOptions,
};
use async_openai::Client;
use futures_util::StreamExt;

use super::llm::{
    with_text_calls, ChatMessage, LlmDelta, LlmError, LlmRequest, LlmStream, ToolChoice,
};
use crate::config::{ProviderConfig, ToolChoiceSupport};

#[derive(Clone)]
pub struct OpenAiProvider {
    name: String,
    base_url: String,
    client: Client<OpenAIConfig>,
    /// The strongest `tool_choice` this server accepts: the configured one, lowered for the
    /// rest of the process when the server rejects it (shared by every clone).
    tool_choice: Arc<AtomicU8>,
}

/// What Paint mode adds to the system prompt when the server cannot be told to call the tool.
pub const PAINT_INSTRUCTION: &str = "Paint mode: the user wants a picture now. Answer this message by calling the \
image_generator tool with a rich, specific prompt made from their words; do not answer in words first, \
do not ask questions and do not explain how the tool works.";

fn support_code(support: ToolChoiceSupport) -> u8 {
    match support {
        ToolChoiceSupport::Instruction => 0,
        ToolChoiceSupport::Required => 1,
        ToolChoiceSupport::Named => 2,
    }
}

fn support_of(code: u8) -> ToolChoiceSupport {
    match code {
        0 => ToolChoiceSupport::Instruction,
        1 => ToolChoiceSupport::Required,
        _ => ToolChoiceSupport::Named,
    }
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
            tool_choice: Arc::new(AtomicU8::new(support_code(config.tool_choice))),
        }
    }

    /// The `tool_choice` Paint mode uses with this server now.
    pub fn tool_choice(&self) -> ToolChoiceSupport {
        support_of(self.tool_choice.load(Ordering::Relaxed))
    }

    /// Remembers, for the rest of the process, that the server rejected `rejected`.
    fn step_down(&self, rejected: ToolChoiceSupport) -> Option<ToolChoiceSupport> {
        let lower = rejected.fallback()?;
        self.tool_choice
            .fetch_min(support_code(lower), Ordering::Relaxed);
        tracing::warn!(
            provider = %self.name,
            "the server rejected tool_choice `{}`; Paint mode uses `{}` with it from now on (set tool_choice = \"{}\" for this provider to skip the attempt)",
            rejected.as_str(),
            lower.as_str(),
            lower.as_str(),
        );
        Some(lower)
    }

    pub async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        let tools = request.tools.clone();
        let forced = match request.tool_choice {
            ToolChoice::Force(name) if tools.iter().any(|t| t.name == name) => Some(name),
            _ => None,
        };
        let mut support = self.tool_choice();
        let upstream = loop {
            let body = to_wire(request.clone(), forced.map(|name| (name, support)));
            match self.client.chat().create_stream(body).await {
                Ok(upstream) => break upstream,
                // A server that does not take this `tool_choice`: try the next weaker way.
                Err(e) if forced.is_some() && rejects_tool_choice(&e) => {
                    match self.step_down(support) {
                        Some(lower) => support = lower,
                        None => return Err(self.describe(e)),
                    }
                }
                Err(e) => return Err(self.describe(e)),
            }
        };
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
        // Small local models often write their calls into the text instead.
        Ok(with_text_calls(Box::pin(deltas), &tools))
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

/// Whether a failed request was refused because of its `tool_choice` (HTTP 400, or a 422/500
/// from servers that answer so, whose message names it).
fn rejects_tool_choice(error: &OpenAIError) -> bool {
    let text = match error {
        OpenAIError::ApiError(api) if !api.status_code.is_success() => format!(
            "{} {} {}",
            api.api_error.message,
            api.api_error.param.as_deref().unwrap_or_default(),
            api.api_error.code.as_deref().unwrap_or_default()
        ),
        // An error body in another shape (llama.cpp's numeric `code`).
        OpenAIError::JSONDeserialize(_, content) => content.clone(),
        _ => return false,
    };
    let text = text.to_ascii_lowercase();
    text.contains("tool_choice") || text.contains("tool choice")
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

/// The wire request; `forced` names the tool Paint mode requires and how the server is told.
fn to_wire(
    request: LlmRequest,
    forced: Option<(&'static str, ToolChoiceSupport)>,
) -> CreateChatCompletionRequest {
    let mut chat = request.messages;
    let tool_choice = match forced {
        None => None,
        Some((name, ToolChoiceSupport::Named)) => Some(ChatCompletionToolChoiceOption::Function(
            ChatCompletionNamedToolChoice {
                function: FunctionName {
                    name: name.to_string(),
                },
            },
        )),
        Some((_, ToolChoiceSupport::Required)) => Some(ChatCompletionToolChoiceOption::Mode(
            ToolChoiceOptions::Required,
        )),
        Some((_, ToolChoiceSupport::Instruction)) => {
            // Templates want one system message, first: the instruction joins it.
            match chat.iter_mut().find_map(|m| match m {
                ChatMessage::System(text) => Some(text),
                _ => None,
            }) {
                Some(text) => {
                    text.push_str("\n\n");
                    text.push_str(PAINT_INSTRUCTION);
                }
                None => chat.insert(0, ChatMessage::System(PAINT_INSTRUCTION.into())),
            }
            None
        }
    };
    let messages = chat.into_iter().map(message_to_wire).collect();
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
        tool_choice,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolSpec;

    fn request(tool_choice: ToolChoice) -> LlmRequest {
        LlmRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage::System("Be kind.".into()),
                ChatMessage::User("a fox".into()),
            ],
            tools: vec![ToolSpec {
                name: "image_generator",
                description: "paints".into(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            tool_choice,
        }
    }

    #[test]
    fn paint_mode_names_the_tool_or_requires_one_or_asks_in_words() {
        let json =
            |forced| serde_json::to_value(to_wire(request(ToolChoice::Auto), forced)).unwrap();
        let auto = json(None);
        assert!(auto.get("tool_choice").is_none(), "{auto}");
        let named = json(Some(("image_generator", ToolChoiceSupport::Named)));
        assert_eq!(
            named["tool_choice"],
            serde_json::json!({"type": "function", "function": {"name": "image_generator"}})
        );
        let required = json(Some(("image_generator", ToolChoiceSupport::Required)));
        assert_eq!(required["tool_choice"], "required");
        let words = json(Some(("image_generator", ToolChoiceSupport::Instruction)));
        assert!(words.get("tool_choice").is_none(), "{words}");
        let system = words["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("Be kind.") && system.contains(PAINT_INSTRUCTION));
        assert_eq!(
            words["messages"].as_array().unwrap().len(),
            2,
            "one system message"
        );
    }

    #[test]
    fn a_rejection_of_tool_choice_is_told_from_other_errors() {
        let api = |status: u16, message: &str| {
            OpenAIError::ApiError(async_openai::error::ApiErrorResponse {
                status_code: reqwest::StatusCode::from_u16(status).unwrap(),
                api_error: async_openai::error::ApiError {
                    message: message.into(),
                    r#type: None,
                    param: None,
                    code: None,
                    misalignment: None,
                },
            })
        };
        assert!(rejects_tool_choice(&api(
            400,
            "Invalid tool_choice: {\"type\":\"function\"}"
        )));
        assert!(rejects_tool_choice(&api(
            500,
            "tool choice is not supported"
        )));
        assert!(!rejects_tool_choice(&api(400, "context length exceeded")));
        let body = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(rejects_tool_choice(&OpenAIError::JSONDeserialize(
            body,
            r#"{"error":{"code":400,"message":"Unsupported tool_choice","type":"invalid_request_error"}}"#.into()
        )));
    }

    #[test]
    fn fallbacks_are_remembered_by_every_clone() {
        let config = ProviderConfig {
            name: "local".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: String::new(),
            models: vec![],
            tool_choice: ToolChoiceSupport::Named,
        };
        let provider = OpenAiProvider::new(&config);
        let clone = provider.clone();
        assert_eq!(
            clone.step_down(ToolChoiceSupport::Named),
            Some(ToolChoiceSupport::Required)
        );
        assert_eq!(provider.tool_choice(), ToolChoiceSupport::Required);
        // A late rejection of the stronger way never raises it again.
        provider.step_down(ToolChoiceSupport::Required);
        clone.step_down(ToolChoiceSupport::Named);
        assert_eq!(provider.tool_choice(), ToolChoiceSupport::Instruction);
        assert_eq!(provider.step_down(ToolChoiceSupport::Instruction), None);
    }
}
