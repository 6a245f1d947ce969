//! The HTTP contract of conversations, messages and errors, against the real server on
//! 127.0.0.1 with a temporary SQLite file.

mod common;

use common::{Setup, TestServer};
use serde_json::json;

async fn server() -> TestServer {
    Setup::default().start().await
}

#[tokio::test]
async fn health_and_models_work_without_any_configuration() {
    let s = server().await;
    let (status, health) = s.get("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["image_engine"]["status"], "no_models");

    let (status, models) = s.get("/api/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["llm"][0]["id"], "direct");
    assert_eq!(models["image_creation_available"], false);
    assert!(models["styles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == "anime"));
}

#[tokio::test]
async fn conversations_are_created_listed_newest_first_renamed_and_deleted() {
    let s = server().await;
    let a = s.conversation(false).await;
    let b = s.conversation(true).await;
    let (status, list) = s.get("/api/conversations").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str(), a.as_str()]);

    let (status, one) = s.get(&format!("/api/conversations/{b}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["internal_tools"]["image_creation"], true);
    assert_eq!(one["title"], "New conversation");
    assert_eq!(one["messages"], json!([]));

    let (status, renamed) = s
        .send(
            "PATCH",
            &format!("/api/conversations/{a}"),
            json!({"title": "Trip ideas"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(renamed["title"], "Trip ideas");
    let (status, toggled) = s
        .send(
            "PATCH",
            &format!("/api/conversations/{a}"),
            json!({"internal_tools": {"image_creation": true}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(toggled["internal_tools"]["image_creation"], true);
    assert_eq!(toggled["title"], "Trip ideas");

    assert_eq!(s.delete(&format!("/api/conversations/{a}")).await, 204);
    assert_eq!(s.get(&format!("/api/conversations/{a}")).await.0, 404);
    assert_eq!(s.delete(&format!("/api/conversations/{a}")).await, 404);
}

#[tokio::test]
async fn bad_input_gets_the_error_body_and_the_right_status() {
    let s = server().await;
    let id = s.conversation(false).await;

    let (status, body) = s.get("/api/conversations/not-an-id").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_id");

    let (status, body) = s
        .get("/api/conversations/01a207b7-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    let raw = s
        .client
        .post(s.url(&format!("/api/conversations/{id}/messages")))
        .header("content-type", "application/json")
        .body("{\"content\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let (status, body) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"text": "wrong field"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content"),
        "{body}"
    );

    let raw = s
        .client
        .post(s.url(&format!("/api/conversations/{id}/messages")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 415);

    let huge = "x".repeat(1_100_000);
    let (status, body) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"content": huge}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, body) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"content": "   "}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "invalid_content");
    let (status, _) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"content": "y".repeat(32_001)}),
        )
        .await;
    assert_eq!(status, 422);

    let (status, body) = s
        .send(
            "PATCH",
            &format!("/api/conversations/{id}"),
            json!({"model": "nowhere/nothing"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "unknown_model");

    let (status, body) = s.get("/api/no-such-route").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    // Nothing was stored by the refused requests.
    assert!(s.messages(&id).await.is_empty());
}

#[tokio::test]
async fn clearing_history_keeps_the_conversation() {
    let s = server().await;
    let id = s.conversation(false).await;
    s.turn(&id, "hello").await;
    assert_eq!(s.messages(&id).await.len(), 2);
    assert_eq!(
        s.delete(&format!("/api/conversations/{id}/messages")).await,
        204
    );
    assert!(s.messages(&id).await.is_empty());
    assert_eq!(s.get(&format!("/api/conversations/{id}")).await.0, 200);
}

#[tokio::test]
async fn the_web_app_is_served_and_unknown_api_paths_are_json() {
    let s = server().await;
    let page = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>Easel</title>"), "{html}");
    assert!(html.contains("/pkg/easel.js"), "hydration script is linked");
}
