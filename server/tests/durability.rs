//! The real `easel` binary, killed with SIGKILL and stopped with SIGTERM, on a real SQLite file:
//!
//! - every image a client was told about (`image.done`) survives a `kill -9`, a tool call that
//!   completed before the kill is still recorded, and the reply cut by the crash receives the
//!   images its job finishes after the restart, with the pixels it would have had;
//! - queued Studio jobs finish after a restart, and the one killed while running paints the
//!   same pixels;
//! - SIGTERM with a browser following a reply and with a hung LLM: the process exits within the
//!   deadline and the reply is saved as stopped.

mod common;

use std::time::Duration;

use common::process::{client, get, post, reference, slow_models, Easel};
use common::{read_events, read_events_until, Reply, ScriptedLlm};
use serde_json::{json, Value};

fn pieces(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_announced_image_and_the_cut_reply_still_gets_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let first = json!({"prompt": "a quick sketch", "size": "64x64", "seed": 5});
    let second = json!({"prompt": "a grand mural", "n": 4, "size": "256x256", "quality": "high", "seed": 77});
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![("image_generator", pieces(&first.to_string()))]),
        Reply::ToolCalls(vec![("image_generator", pieces(&second.to_string()))]),
        Reply::Text(vec!["Done."]),
    ])
    .await;
    let client = client();
    let easel = Easel::serve(&db.url, &models, Some(&llm.base_url), &[]).await;
    let conversation = easel.painting_conversation(&client).await;
    let started = easel
        .say(&client, &conversation, "a sketch, then a mural")
        .await;
    let run = started["run_id"].as_str().unwrap();
    let message = started["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Follow until the first image of the second call is announced, then kill at once.
    let events = read_events_until(
        &client,
        &easel.url(&format!("/api/runs/{run}/events")),
        |e| e.event == "image.done" && e.data["index"].as_u64().unwrap_or(0) >= 1,
    )
    .await;
    easel.kill9();
    let announced: Vec<String> = events
        .iter()
        .filter(|e| e.event == "image.done")
        .map(|e| e.data["image_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        announced.len() >= 2,
        "{:?}",
        events.iter().map(|e| &e.event).collect::<Vec<_>>()
    );

    let easel = Easel::serve(&db.url, &models, Some(&llm.base_url), &[]).await;
    for id in &announced {
        let r = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "announced image {id} survived the kill");
    }
    // The reply was cut: it says so, and keeps the completed tool call with its result.
    let detail = get(
        &client,
        easel.url(&format!("/api/conversations/{conversation}?images=url")),
    )
    .await;
    let reply = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message.as_str())
        .unwrap()
        .clone();
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "interrupted");
    let calls = reply["tool_calls"].as_array().unwrap();
    assert_eq!(
        calls.len(),
        1,
        "the first call completed and was stored: {calls:?}"
    );
    assert!(calls[0]["result"].as_str().unwrap().contains("\"ok\""));

    // The second call's job goes on after the restart and lands all its images on the reply.
    let mut images = Vec::new();
    for _ in 0..600 {
        let detail = get(
            &client,
            easel.url(&format!("/api/conversations/{conversation}?images=url")),
        )
        .await;
        images = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == message.as_str())
            .unwrap()["images"]
            .as_array()
            .unwrap()
            .clone();
        if images.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        images.len(),
        5,
        "1 image of the first call and 4 of the second"
    );
    // Same pixels as an uninterrupted run of the same request.
    let expected = reference(
        &easel,
        json!({"prompt": "a grand mural", "n": 4, "size": "256x256", "quality": "high", "seed": 77}),
    )
    .await;
    for (k, image) in images.iter().skip(1).enumerate() {
        let id = image["id"].as_str().unwrap();
        let png = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            decode(&png),
            decode(&expected[k]),
            "image {k} paints the same pixels"
        );
    }
}

fn decode(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_studio_jobs_finish_after_a_restart_with_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let client = client();
    let easel = Easel::serve(&db.url, &models, None, &[]).await;
    let request = |seed: u64| json!({"prompt": "a harbour at night", "n": 2, "size": "256x256", "steps": 60, "seed": seed, "preview": "none"});
    let mut jobs = Vec::new();
    for seed in [1, 2, 3] {
        let started = post(&client, easel.url("/api/studio/generations"), request(seed)).await;
        jobs.push(started["job_id"].as_str().unwrap().to_string());
    }
    // Kill while the first job is running (it has started its steps).
    let _ = read_events_until(
        &client,
        &easel.url(&format!("/api/studio/jobs/{}/events", jobs[0])),
        |e| e.event == "image.progress",
    )
    .await;
    easel.kill9();

    let easel = Easel::serve(&db.url, &models, None, &[]).await;
    for job in &jobs {
        let events = read_events(
            &client,
            &easel.url(&format!("/api/studio/jobs/{job}/events")),
            None,
        )
        .await;
        assert_eq!(
            events.last().map(|e| e.event.as_str()),
            Some("run.finished"),
            "job {job} finished after the restart"
        );
    }
    let gallery = get(&client, easel.url("/api/studio/images")).await;
    let gallery = gallery.as_array().unwrap();
    assert_eq!(gallery.len(), 6, "two images for each of three jobs");
    let killed: Vec<&Value> = gallery
        .iter()
        .filter(|i| {
            i["metadata"]["seed"].as_u64().is_some_and(|s| s <= 2)
                && i["metadata"]["tool_arguments"]["seed"] == 1
        })
        .collect();
    assert_eq!(killed.len(), 2);
    let expected = reference(
        &easel,
        json!({"prompt": "a harbour at night", "n": 2, "size": "256x256", "steps": 60, "seed": 1}),
    )
    .await;
    let mut ours: Vec<(u64, Vec<u8>)> = Vec::new();
    for image in killed {
        let id = image["id"].as_str().unwrap();
        let png = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        ours.push((image["metadata"]["seed"].as_u64().unwrap(), decode(&png)));
    }
    ours.sort();
    assert_eq!(ours[0].1, decode(&expected[0]));
    assert_eq!(ours[1].1, decode(&expected[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_replies_and_exits_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let llm = ScriptedLlm::start(vec![Reply::Silent, Reply::Slow(vec!["a", "b"], 200)]).await;
    let client = client();
    let easel = Easel::serve(&db.url, &models, Some(&llm.base_url), &[]).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let conversation = post(&client, easel.url("/api/conversations"), json!({})).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = easel.say(&client, &conversation, "talk to me").await;
        runs.push((
            conversation,
            started["run_id"].as_str().unwrap().to_string(),
        ));
    }
    // A browser follows the second reply while the first waits on an LLM that never answers.
    let follower = {
        let client = client.clone();
        let url = easel.url(&format!("/api/runs/{}/events", runs[1].1));
        tokio::spawn(async move { read_events(&client, &url, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = tokio::task::spawn_blocking(move || easel.terminate())
        .await
        .unwrap();
    assert!(took < Duration::from_secs(10), "exited in {took:?}");
    let followed = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the event stream ended with the server")
        .unwrap();
    assert!(!followed.is_empty());

    let easel = Easel::serve(&db.url, &models, Some(&llm.base_url), &[]).await;
    for (conversation, _) in &runs {
        let detail = get(
            &client,
            easel.url(&format!("/api/conversations/{conversation}")),
        )
        .await;
        let reply = detail["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(reply["status"], "cancelled", "saved as stopped: {reply}");
    }
}
