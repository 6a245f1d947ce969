//! Runs against a scripted OpenAI-compatible LLM speaking the real streaming format: the
//! answer streams as events, late subscribers replay, `Last-Event-ID` resumes, cancel stops
//! the upstream request, and every upstream failure ends the run with a clear `run.error`
//! while the history stays whole.

mod common;

use std::time::Duration;

use common::{data_of, names, read_events, Reply, ScriptedLlm, Setup};
use serde_json::json;

#[tokio::test]
async fn a_reply_streams_as_events_and_is_stored() {
    let llm = ScriptedLlm::start(vec![Reply::Text(vec!["Hel", "lo ", "there"])]).await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let id = s.conversation(false).await;
    let events = s.turn(&id, "Say hello to the team").await;
    assert_eq!(
        names(&events),
        vec![
            "run.started",
            "message.delta",
            "message.delta",
            "message.delta",
            "message.done",
            "run.finished"
        ]
    );
    let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (1..=6).collect::<Vec<_>>());
    let text: String = data_of(&events, "message.delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello there");

    let messages = s.messages(&id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], "Say hello to the team");
    assert_eq!(messages[1]["content"], "Hello there");
    assert_eq!(messages[1]["status"], "complete");
    assert_eq!(messages[1]["model"], "127.0.0.1/scripted");
    let (_, conversation) = s.get(&format!("/api/conversations/{id}")).await;
    assert_eq!(conversation["title"], "Say hello to the team");

    // The request was streaming, carried the user's text, and offered no tools.
    let request = &llm.requests()[0];
    assert_eq!(request["stream"], true);
    assert_eq!(request["model"], "scripted");
    assert!(
        request.get("tools").is_none(),
        "no tools when image creation is off: {request}"
    );
}

#[tokio::test]
async fn late_subscribers_replay_and_last_event_id_resumes() {
    let llm = ScriptedLlm::start(vec![Reply::Text(vec!["a", "b", "c"])]).await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let id = s.conversation(false).await;
    let started = s.say(&id, "go").await;
    let run = started["run_id"].as_str().unwrap();
    let first = s.events(run).await;
    // Arriving after the end still gets everything, in order, with the same ids.
    let again = s.events(run).await;
    assert_eq!(names(&first), names(&again));
    let resumed = read_events(
        &s.client,
        &s.url(&format!("/api/runs/{run}/events")),
        Some(3),
    )
    .await;
    assert_eq!(resumed.first().unwrap().id, Some(4));
    assert_eq!(resumed.len(), first.len() - 3);
}

#[tokio::test]
async fn history_is_sent_as_context_on_the_next_turn() {
    let llm = ScriptedLlm::start(vec![
        Reply::Text(vec!["Paris."]),
        Reply::Text(vec!["About 2 million."]),
    ])
    .await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let id = s.conversation(false).await;
    s.turn(&id, "Capital of France?").await;
    s.turn(&id, "Population?").await;
    let second = &llm.requests()[1];
    let roles: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["user", "assistant", "user"]);
    assert_eq!(second["messages"][1]["content"], "Paris.");
}

#[tokio::test]
async fn cancel_stops_the_upstream_request_and_keeps_the_partial_text() {
    let llm = ScriptedLlm::start(vec![Reply::Slow(
        vec!["one ", "two ", "three ", "four "],
        150,
    )])
    .await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let id = s.conversation(false).await;
    let started = s.say(&id, "count slowly").await;
    let run = started["run_id"].as_str().unwrap().to_string();
    // A second message while the first is running is refused, and nothing is stored for it.
    let (status, body) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"content": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, _) = s
        .send("POST", &format!("/api/runs/{run}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    let events = s.events(&run).await;
    assert_eq!(names(&events).last().unwrap(), "run.cancelled");
    let messages = s.messages(&id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["status"], "cancelled");
    let partial = messages[1]["content"].as_str().unwrap();
    assert!(partial.starts_with("one "), "{partial}");
    assert!(!partial.contains("four"), "{partial}");
    for _ in 0..50 {
        if llm.saw_disconnect() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(llm.saw_disconnect(), "the upstream stream was closed");
    // Cancelling again is harmless and reports the outcome.
    let (status, body) = s
        .send("POST", &format!("/api/runs/{run}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "cancelled");
}

/// Runs one turn against a failing upstream; returns (error code, message, stored messages).
/// Transient HTTP errors (429, 5xx) are retried 3 times with backoff before the run fails, so
/// those replies are scripted four times.
async fn failing_turn(reply: Reply) -> (String, String, Vec<serde_json::Value>) {
    let copies = if matches!(reply, Reply::Status(429 | 500..=599, _)) {
        4
    } else {
        1
    };
    let llm = ScriptedLlm::start(vec![reply; copies]).await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let id = s.conversation(false).await;
    let events = s.turn(&id, "please answer").await;
    assert_eq!(names(&events).last().unwrap(), "run.error", "{events:?}");
    let error = data_of(&events, "run.error")[0].clone();
    let messages = s.messages(&id).await;
    // The server is still fine and the user's message was kept.
    assert_eq!(s.get("/api/health").await.0, 200);
    assert_eq!(messages[0]["content"], "please answer");
    assert_eq!(messages[1]["status"], "failed");
    assert_eq!(messages[1]["error"]["code"], error["code"]);
    (
        error["code"].as_str().unwrap().into(),
        error["message"].as_str().unwrap().into(),
        messages,
    )
}

#[tokio::test]
async fn upstream_401_says_the_key_was_rejected() {
    let (code, message, _) = failing_turn(Reply::Status(401, "Incorrect API key provided")).await;
    assert_eq!(code, "llm_unauthorized");
    assert!(
        message.contains("401") && message.contains("Incorrect API key"),
        "{message}"
    );
}

#[tokio::test]
async fn upstream_429_says_rate_limited() {
    let (code, message, _) = failing_turn(Reply::Status(429, "Rate limit reached")).await;
    assert_eq!(code, "llm_rate_limited");
    assert!(message.contains("429"), "{message}");
}

#[tokio::test]
async fn upstream_500_says_the_provider_failed() {
    let (code, message, _) = failing_turn(Reply::Status(500, "boom")).await;
    assert_eq!(code, "llm_unavailable");
    assert!(message.contains("500"), "{message}");
}

#[tokio::test]
async fn a_stream_cut_in_the_middle_fails_the_run_and_keeps_the_partial_text() {
    let (code, _, messages) = failing_turn(Reply::Cut(vec!["Once upon ", "a time"])).await;
    assert_eq!(code, "llm_stream_error");
    assert_eq!(messages[1]["content"], "Once upon a time");
}

#[tokio::test]
async fn a_stream_that_ends_without_finishing_is_an_error() {
    let (code, message, _) = failing_turn(Reply::EndsEarly(vec!["half an ans"])).await;
    assert_eq!(code, "llm_stream_error");
    assert!(message.contains("ended before"), "{message}");
}

#[tokio::test]
async fn malformed_chunks_are_reported() {
    let (code, message, _) = failing_turn(Reply::Malformed).await;
    assert_eq!(code, "llm_bad_response");
    assert!(message.contains("not a chat completion chunk"), "{message}");
}

#[tokio::test]
async fn a_refused_connection_says_the_provider_is_unreachable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Setup::with_llm(&format!("http://127.0.0.1:{port}/v1"))
        .start()
        .await;
    let id = s.conversation(false).await;
    let events = s.turn(&id, "hello?").await;
    let error = data_of(&events, "run.error")[0];
    assert_eq!(error["code"], "llm_unreachable");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Cannot connect"),
        "{error}"
    );
}

#[tokio::test]
async fn without_an_llm_the_direct_provider_explains_how_to_connect_one() {
    let s = Setup::default().start().await;
    let id = s.conversation(false).await;
    let events = s.turn(&id, "hi").await;
    assert_eq!(names(&events).last().unwrap(), "run.finished");
    let messages = s.messages(&id).await;
    let reply = messages[1]["content"].as_str().unwrap();
    assert!(
        reply.contains("OPENAI_BASE_URL") && reply.contains("Image creation"),
        "{reply}"
    );
    assert_eq!(messages[1]["model"], "direct");
}

#[tokio::test]
async fn a_run_cut_off_by_a_restart_is_closed_as_failed_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("easel.db");
    let llm = ScriptedLlm::start(vec![Reply::Slow(vec!["partial "], 5_000)]).await;
    let (conversation, message) = {
        let s = Setup {
            database: Some(database.clone()),
            ..Setup::with_llm(&llm.base_url)
        }
        .start()
        .await;
        let id = s.conversation(false).await;
        let started = s.say(&id, "long answer please").await;
        // Let the checkpoint store the partial text, then "crash": drop the server mid-run.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        (
            id,
            started["assistant_message_id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let s = Setup {
        database: Some(database),
        ..Setup::default()
    }
    .start()
    .await;
    let messages = s.messages(&conversation).await;
    assert_eq!(messages[0]["content"], "long answer please");
    let reply = messages
        .iter()
        .find(|m| m["id"] == message.as_str())
        .unwrap();
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "interrupted");
    let (_, detail) = s.get(&format!("/api/conversations/{conversation}")).await;
    assert!(detail.get("active_run_id").is_none(), "{detail}");
}
