//! Many writers at once on a real SQLite file: one running reply per conversation holds under
//! a burst of posts, concurrent agent saves all land (no "database is locked"), and fifty
//! conversations painting at once answer no 5xx. The memory of the process before and after is
//! printed for the record.

mod common;

use std::collections::HashSet;

use common::{Reply, ScriptedLlm, Setup};
use futures_util::future::join_all;
use serde_json::json;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_posts_start_exactly_one_reply() {
    let llm = ScriptedLlm::start(vec![Reply::Slow(vec!["a", "b", "c", "d"], 300)]).await;
    let s = Setup::with_llm(&llm.base_url).start().await;
    let s = &s;
    let id = s.conversation(false).await;
    let posts = (0..10).map(|k| {
        let path = format!("/api/conversations/{id}/messages");
        let body = json!({"content": format!("message {k}")});
        async move { s.send("POST", &path, body).await }
    });
    let results = join_all(posts).await;
    let statuses: Vec<u16> = results.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    // Only the accepted message was stored.
    let run = results
        .iter()
        .find(|(status, _)| *status == 202)
        .map(|(_, body)| body["run_id"].as_str().unwrap().to_string())
        .unwrap();
    // The scripted reply never ends by itself: stop it.
    let (status, _) = s
        .send("POST", &format!("/api/runs/{run}/cancel"), json!({}))
        .await;
    assert_eq!(status, 202);
    s.events(&run).await;
    let messages = s.messages(&id).await;
    assert_eq!(messages.len(), 2, "one user message and its reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_agent_saves_all_land_with_their_own_versions() {
    let s = Setup::default().start().await;
    let s = &s;
    let (_, agent) = s
        .send("POST", "/api/agents", json!({"name": "Painter"}))
        .await;
    let id = agent["id"].as_str().unwrap().to_string();
    let saves = (0..20).map(|k| {
        let path = format!("/api/agents/{id}");
        let body = json!({"name": format!("Painter {k}"), "instructions": "paint"});
        async move { s.send("PUT", &path, body).await }
    });
    let results = join_all(saves).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let versions: HashSet<u64> = results
        .iter()
        .map(|(_, b)| b["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions.len(), 20, "each save got its own version number");
    let (_, list) = s.get(&format!("/api/agents/{id}/versions")).await;
    assert_eq!(list.as_array().unwrap().len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_conversations_paint_at_once_without_a_server_error() {
    // No LLM: the built-in `direct` provider turns each message into one image.
    let s = Setup::default().models().start().await;
    let s = &s;
    let before = rss_mib();
    let conversations = join_all((0..50).map(|_| s.conversation(true))).await;
    let posts = conversations.iter().map(|id| {
        let path = format!("/api/conversations/{id}/messages");
        let body = json!({"content": "a red fox, 64x64"});
        async move { s.send("POST", &path, body).await }
    });
    // Other writers at the same time: renames, agents, more posts to the same conversations.
    let renames = conversations.iter().take(20).map(|id| {
        let path = format!("/api/conversations/{id}");
        let body = json!({"title": "renamed"});
        async move { s.send("PATCH", &path, body).await }
    });
    let agents =
        (0..20).map(|k| s.send("POST", "/api/agents", json!({"name": format!("agent {k}")})));
    let second_posts = conversations.iter().take(20).map(|id| {
        let path = format!("/api/conversations/{id}/messages");
        let body = json!({"content": "another"});
        async move { s.send("POST", &path, body).await }
    });
    let (posts, renames, agents, second) = tokio::join!(
        join_all(posts),
        join_all(renames),
        join_all(agents),
        join_all(second_posts)
    );
    for (status, body) in posts.iter().chain(&renames).chain(&agents).chain(&second) {
        assert!(*status < 500, "{status}: {body}");
    }
    for (status, _) in &second {
        assert!(
            [202, 409].contains(status),
            "one running reply per conversation"
        );
    }
    let runs: Vec<String> = posts
        .iter()
        .chain(&second)
        .filter(|(status, _)| *status == 202)
        .map(|(_, b)| b["run_id"].as_str().unwrap().to_string())
        .collect();
    for run in &runs {
        let events = s.events(run).await;
        let last = events.last().unwrap();
        assert_eq!(last.event, "run.finished", "{:?}", last.data);
    }
    let images = s.state.store.count_images().await.unwrap();
    assert!(images >= 50, "every conversation got its image ({images})");
    let after = rss_mib();
    eprintln!("memory: {before:.0} MiB before, {after:.0} MiB after 50 painting conversations and 60 other writers");
}
