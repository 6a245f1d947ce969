//! A scripted OpenAI-compatible chat server for tests. Each request to
//! `/v1/chat/completions` takes the next [`Reply`] from the script; the requests are recorded.
//! Streams use the real wire format: `data: {chunk}` lines, tool-call arguments split across
//! chunks, a final chunk with `finish_reason`, then `data: [DONE]`.

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
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// Set when a slow stream noticed its client went away.
    disconnected: Mutex<bool>,
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

async fn completions(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.requests.lock().unwrap().push(body);
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
