//! A scripted OpenAI-compatible chat server for tests. Each request to
//! `/v1/chat/completions` takes the next [`Reply`] from the script; the requests are recorded.
//! Streams use the real wire format: `data: {chunk}` lines, tool-call arguments split across
//! chunks, a final chunk with `finish_reason`, then `data: [DONE]`. [`Reply::Server`] streams
//! text exactly in the chunk shapes of llama.cpp's `llama-server`, Ollama, LM Studio and vLLM
//! (small local models write their tool calls into that text), and [`ScriptedLlm::reject`]
//! makes the server refuse a `tool_choice` the way those servers do.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Streams text in the given pieces, then `stop`.
    Text(Vec<&'static str>),
    /// Streams tool calls: `(name, argument pieces)`; several calls share the stream.
    ToolCalls(Vec<(&'static str, Vec<String>)>),
    /// An HTTP error with an OpenAI-style body.
    Status(u16, &'static str),
    /// Streams the text pieces, then breaks the connection (no finish, no [DONE]).
    Cut(Vec<&'static str>),
    /// Streams the pieces, then ends the body cleanly but without a finish reason.
    EndsEarly(Vec<&'static str>),
    /// Sends a chunk that is not JSON.
    Malformed,
    /// Streams text slowly (one piece every `delay_ms`) — for cancellation tests.
    Slow(Vec<&'static str>, u64),
    /// Answers 200 with a stream that never sends anything (a hung upstream).
    Silent,
    /// Streams the text pieces as content deltas in the chunk shapes of one local server.
    Server(LocalServer, Vec<&'static str>),
}

/// The local servers whose streams [`Reply::Server`] reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalServer {
    /// llama.cpp `llama-server --jinja`: a first chunk with `role` and `content: null`, then
    /// content only, an empty final delta with `finish_reason`, a usage chunk with timings.
    LlamaCpp,
    /// Ollama's `/v1`: `role` in every delta, a final delta with empty content, `fp_ollama`.
    Ollama,
    /// LM Studio: `role` in every delta, `logprobs: null`, an empty final delta.
    LmStudio,
    /// vLLM: a first chunk with `role` and empty content, `stop_reason` in the final one,
    /// then a usage chunk with no choices.
    Vllm,
}

/// The `tool_choice` values a scripted server may refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoiceKind {
    /// `{"type": "function", "function": {"name": …}}`
    Named,
    /// `"required"`
    Required,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// Set when a slow stream noticed its client went away.
    disconnected: Mutex<bool>,
    /// `tool_choice` values answered with 400 (the script is not advanced).
    rejected: Mutex<Vec<ToolChoiceKind>>,
}

#[derive(Clone)]
pub struct ScriptedLlm {
    shared: Arc<Shared>,
    pub base_url: String,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl ScriptedLlm {
    pub async fn start(script: Vec<Reply>) -> ScriptedLlm {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route(
                "/v1/models",
                get(|| async {
                    Json(json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}))
                }),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedLlm {
            shared,
            base_url: format!("http://{addr}/v1"),
            _task: Arc::new(task),
        }
    }

    pub fn push(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// The JSON bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// From now on, requests carrying this `tool_choice` are refused with 400, as a server that
    /// does not support it answers (llama.cpp's shape for a named choice, vLLM's for
    /// `required`). The refused requests are recorded too.
    pub fn reject(&self, kind: ToolChoiceKind) {
        self.shared.rejected.lock().unwrap().push(kind);
    }

    pub fn saw_disconnect(&self) -> bool {
        *self.shared.disconnected.lock().unwrap()
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u32,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {body}\n\n"))
}

fn sse(parts: Vec<Result<Bytes, std::io::Error>>) -> Response {
    let stream = futures_util::stream::iter(parts);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// One chunk of a local server's stream (`delta` and `finish` as that server sends them).
fn local_chunk(server: LocalServer, delta: Value, finish: Option<&str>) -> Bytes {
    let body = match server {
        LocalServer::LlamaCpp => json!({
            "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
            "created": 1_764_000_000u32,
            "id": "chatcmpl-Xh3kW9yDq0fKk2c1",
            "model": "qwen2.5-coder-0.5b-instruct-q8_0.gguf",
            "system_fingerprint": "b6123-4f8a3b2c",
            "object": "chat.completion.chunk"
        }),
        LocalServer::Ollama => json!({
            "id": "chatcmpl-417",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000u32,
            "model": "llama3.2:1b",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }),
        LocalServer::LmStudio => json!({
            "id": "chatcmpl-6q1v8t0x2nq5r3m7",
            "object": "chat.completion.chunk",
            "created": 1_764_000_000u32,
            "model": "mistral-7b-instruct-v0.3",
            "system_fingerprint": "mistral-7b-instruct-v0.3",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }),
        LocalServer::Vllm => {
            let mut choice =
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
            if finish.is_some() {
                choice["stop_reason"] = Value::Null;
            }
            json!({
                "id": "chatcmpl-b4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5",
                "object": "chat.completion.chunk",
                "created": 1_764_000_000u32,
                "model": "Qwen/Qwen2.5-1.5B-Instruct",
                "choices": [choice]
            })
        }
    };
    Bytes::from(format!("data: {body}\n\n"))
}

/// A whole stream of `pieces` as `server` sends it.
fn local_stream(server: LocalServer, pieces: &[&str]) -> Vec<Result<Bytes, std::io::Error>> {
    let mut parts = Vec::new();
    let content = |p: &str| match server {
        LocalServer::LlamaCpp | LocalServer::Vllm => json!({"content": p}),
        LocalServer::Ollama | LocalServer::LmStudio => json!({"role": "assistant", "content": p}),
    };
    match server {
        LocalServer::LlamaCpp => parts.push(local_chunk(
            server,
            json!({"role": "assistant", "content": null}),
            None,
        )),
        LocalServer::Vllm => parts.push(local_chunk(
            server,
            json!({"role": "assistant", "content": ""}),
            None,
        )),
        LocalServer::Ollama | LocalServer::LmStudio => {}
    }
    parts.extend(pieces.iter().map(|p| local_chunk(server, content(p), None)));
    let last = match server {
        LocalServer::LlamaCpp | LocalServer::LmStudio => json!({}),
        LocalServer::Ollama => json!({"role": "assistant", "content": ""}),
        LocalServer::Vllm => json!({"content": ""}),
    };
    parts.push(local_chunk(server, last, Some("stop")));
    match server {
        LocalServer::LlamaCpp => parts.push(Bytes::from(format!(
            "data: {}\n\n",
            json!({
                "choices": [], "created": 1_764_000_000u32, "id": "chatcmpl-Xh3kW9yDq0fKk2c1",
                "model": "qwen2.5-coder-0.5b-instruct-q8_0.gguf", "object": "chat.completion.chunk",
                "usage": {"completion_tokens": pieces.len(), "prompt_tokens": 412, "total_tokens": 412 + pieces.len()},
                "timings": {"prompt_n": 412, "prompt_ms": 80.1, "predicted_n": pieces.len(), "predicted_ms": 120.4}
            })
        ))),
        LocalServer::Vllm => parts.push(Bytes::from(format!(
            "data: {}\n\n",
            json!({
                "id": "chatcmpl-b4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5", "object": "chat.completion.chunk",
                "created": 1_764_000_000u32, "model": "Qwen/Qwen2.5-1.5B-Instruct", "choices": [],
                "usage": {"prompt_tokens": 412, "total_tokens": 412 + pieces.len(), "completion_tokens": pieces.len()}
            })
        ))),
        LocalServer::Ollama | LocalServer::LmStudio => {}
    }
    parts.push(Bytes::from_static(b"data: [DONE]\n\n"));
    parts.into_iter().map(Ok).collect()
}

/// The refusal of a server that does not take this `tool_choice`.
fn refuse(kind: ToolChoiceKind, body: &Value) -> Response {
    let text = match kind {
        // llama.cpp: an OpenAI-like body whose `code` is a number.
        ToolChoiceKind::Named => json!({"error": {
            "code": 400,
            "message": format!("Invalid tool_choice: {}", body["tool_choice"]),
            "type": "invalid_request_error"
        }}),
        // vLLM (older releases): a top-level error object.
        ToolChoiceKind::Required => json!({
            "object": "error",
            "message": "tool_choice = \"required\" is not supported!",
            "type": "BadRequestError",
            "param": null,
            "code": 400
        }),
    };
    (StatusCode::BAD_REQUEST, Json(text)).into_response()
}

async fn completions(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.requests.lock().unwrap().push(body.clone());
    let asked = match &body["tool_choice"] {
        Value::Object(_) => Some(ToolChoiceKind::Named),
        Value::String(s) if s == "required" => Some(ToolChoiceKind::Required),
        _ => None,
    };
    if let Some(kind) = asked.filter(|k| shared.rejected.lock().unwrap().contains(k)) {
        return refuse(kind, &body);
    }
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Text(vec!["(script exhausted)"]));
    let done = || Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    match reply {
        Reply::Text(pieces) => {
            let mut parts: Vec<Result<Bytes, std::io::Error>> = vec![Ok(chunk(json!({"role": "assistant", "content": ""}), None))];
            parts.extend(pieces.iter().map(|p| Ok(chunk(json!({"content": p}), None))));
            parts.push(Ok(chunk(json!({}), Some("stop"))));
            parts.push(done());
            sse(parts)
        }
        Reply::ToolCalls(calls) => {
            let mut parts: Vec<Result<Bytes, std::io::Error>> = vec![Ok(chunk(json!({"role": "assistant", "content": null}), None))];
            for (index, (name, pieces)) in calls.iter().enumerate() {
                parts.push(Ok(chunk(
                    json!({"tool_calls": [{"index": index, "id": format!("call_{index}"), "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                )));
                for piece in pieces {
                    parts.push(Ok(chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}), None)));
                }
            }
            parts.push(Ok(chunk(json!({}), Some("tool_calls"))));
            parts.push(done());
            sse(parts)
        }
        Reply::Status(code, message) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": message, "type": "test_error", "param": null, "code": null}})),
        )
            .into_response(),
        Reply::Cut(pieces) => {
            // Pieces are flushed one by one before the connection breaks, as a real cut would.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            tokio::spawn(async move {
                for p in pieces {
                    let _ = tx.send(Ok(chunk(json!({"content": p}), None))).await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                let _ = tx.send(Err(std::io::Error::other("connection cut by the test"))).await;
            });
            let mut rx = rx;
            let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
        Reply::EndsEarly(pieces) => sse(pieces.iter().map(|p| Ok(chunk(json!({"content": p}), None))).collect()),
        Reply::Malformed => sse(vec![Ok(chunk(json!({"content": "ok "}), None)), Ok(Bytes::from_static(b"data: {this is not json\n\n"))]),
        Reply::Server(server, pieces) => sse(local_stream(server, &pieces)),
        Reply::Silent => {
            let stream = futures_util::stream::pending::<Result<Bytes, Infallible>>();
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
        Reply::Slow(pieces, delay_ms) => {
            let shared = shared.clone();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
            tokio::spawn(async move {
                for p in pieces {
                    if tx.send(Ok(chunk(json!({"content": p}), None))).await.is_err() {
                        *shared.disconnected.lock().unwrap() = true;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                // Keep the stream open until the client leaves.
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                        *shared.disconnected.lock().unwrap() = true;
                        return;
                    }
                }
            });
            let stream = tokio_stream_from(rx);
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
        }
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
