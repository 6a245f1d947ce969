//! Several real `easel` processes on one PostgreSQL database (this file runs in the PostgreSQL
//! pass of `cargo xtask test`): two web nodes that paint nothing themselves
//! (`--image-workers 0`) and image workers (`easel worker`), with the scripted LLM.
//!
//! - the models workers advertise are the ones the web nodes offer;
//! - a reply started on node A streams on node B, and `Last-Event-ID` resumes on either;
//! - a Studio job queued on B is painted by a worker and followed on A, resumable on B;
//! - kill -9 the worker painting a job: after its lease the job finishes on the other worker,
//!   with the pixels it would have had;
//! - a cancel asked on B stops a job painted elsewhere and followed on A;
//! - kill -9 the node driving a reply: B's stream ends with `interrupted` and the reply keeps
//!   the images its job goes on to make;
//! - SIGTERM a worker mid-job: it hands the job back and another finishes it;
//! - a model copied into (or removed from) the workers' folder is offered (or withdrawn) by
//!   the web nodes without a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{client, get, pixels, post, reference, slow_models, Easel};
use common::{read_events, read_events_until, Reply, ScriptedLlm, SseEvent};
use serde_json::{json, Value};

/// Leases short enough that a killed process is noticed within seconds.
const LEASE: (&str, &str) = ("EASEL_LEASE_TIMEOUT", "3");

fn pieces(value: &Value) -> Vec<String> {
    value
        .to_string()
        .as_bytes()
        .chunks(9)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn ids(events: &[SseEvent]) -> Vec<u64> {
    events.iter().filter_map(|e| e.id).collect()
}

fn named<'a>(events: &'a [SseEvent], name: &str) -> Vec<&'a SseEvent> {
    events.iter().filter(|e| e.event == name).collect()
}

/// A web node that leaves painting to workers.
async fn web_node(db: &str, dir: &Path, name: &str, llm: Option<&str>) -> Easel {
    let no_models = dir.join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    Easel::serve_with_args(
        db,
        &no_models,
        llm,
        &[("EASEL_NODE_NAME", name), LEASE],
        &["--image-workers", "0"],
    )
    .await
}

/// Waits until `node` lists `workers` live image workers that paint tiny-sd.
async fn wait_for_workers(node: &Easel, workers: usize) -> Value {
    let client = client();
    let started = Instant::now();
    loop {
        let health = get(&client, node.url("/api/health")).await;
        let painting = health["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == "worker" && w["models"] == json!(["tiny-sd"]))
            .count();
        if painting == workers {
            return health;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "expected {workers} workers: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker painting `job` now, by name (from the admin's view).
async fn painter_of(node: &Easel, job: &str) -> String {
    let client = client();
    let started = Instant::now();
    loop {
        let workers = get(&client, node.url("/api/admin/workers")).await;
        if let Some(w) = workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["current_job"] == job)
        {
            return w["name"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no worker is painting {job}: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn studio(node: &Easel, body: Value) -> String {
    post(&client(), node.url("/api/studio/generations"), body).await["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn image_png(node: &Easel, id: &str) -> Vec<u8> {
    client()
        .get(node.url(&format!("/api/images/{id}.png")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// A reply's stored message, read through `node`.
async fn reply_of(node: &Easel, conversation: &str, message: &str) -> Value {
    let detail = get(
        &client(),
        node.url(&format!("/api/conversations/{conversation}?images=url")),
    )
    .await;
    detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_nodes_and_workers_share_replies_jobs_and_failures() {
    if common::postgres_server().is_none() {
        eprintln!("skipped here: several processes need PostgreSQL (this test runs in the PostgreSQL pass)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "cluster");
    let small = json!({"prompt": "a lighthouse at dusk — 灯台 🌅", "size": "64x64", "seed": 3});
    let big = json!({"prompt": "a grand mural", "size": "256x256", "quality": "high", "seed": 21});
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![("image_generator", pieces(&small))]),
        Reply::Text(vec!["Here it ", "is."]),
        Reply::ToolCalls(vec![("image_generator", pieces(&big))]),
        Reply::Text(vec!["Never sent: node A is gone by now."]),
    ])
    .await;
    let client = client();
    let a = web_node(&db.url, dir.path(), "web-a", Some(&llm.base_url)).await;
    let b = web_node(&db.url, dir.path(), "web-b", Some(&llm.base_url)).await;
    let w1 = Easel::worker(&db.url, &models, "worker-1", &[LEASE]);
    let w2 = Easel::worker(&db.url, &models, "worker-2", &[LEASE]);

    // What the workers advertise is what the web nodes offer.
    let health = wait_for_workers(&b, 2).await;
    let web: Vec<&Value> = health["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "web")
        .collect();
    assert_eq!(web.len(), 2, "{health}");
    assert!(web.iter().all(|w| w["paints"] == false), "{health}");
    // A node learns the workers' models when they announce themselves (a notification),
    // not at once: wait for it.
    let offered = a.wait_for_models().await;
    assert_eq!(offered["image_creation_available"], true, "{offered}");
    assert_eq!(offered["default_image_model"], "tiny-sd", "{offered}");

    // A reply started on A streams on B, with A's event ids.
    let conversation = a.painting_conversation(&client).await;
    let started = a.say(&client, &conversation, "paint me a lighthouse").await;
    let run = started["run_id"].as_str().unwrap().to_string();
    let on_b = read_events(&client, &b.url(&format!("/api/runs/{run}/events")), None).await;
    let names: Vec<&str> = on_b.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.last(), Some(&"run.finished"), "{names:?}");
    assert_eq!(named(&on_b, "image.done").len(), 1, "{names:?}");
    assert!(ids(&on_b).windows(2).all(|w| w[0] < w[1]), "{names:?}");
    let done = named(&on_b, "image.done")[0];
    // Resuming on A after B's image.done gives exactly what B sent after it.
    let rest_on_a = read_events(&client, &a.url(&format!("/api/runs/{run}/events")), done.id).await;
    let after: Vec<(Option<u64>, &str)> = on_b
        .iter()
        .filter(|e| e.id > done.id)
        .map(|e| (e.id, e.event.as_str()))
        .collect();
    assert_eq!(
        rest_on_a
            .iter()
            .map(|e| (e.id, e.event.as_str()))
            .collect::<Vec<_>>(),
        after
    );
    let reply = reply_of(
        &b,
        &conversation,
        started["assistant_message_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(reply["status"], "complete", "{reply}");
    assert_eq!(reply["content"], "Here it is.");
    assert_eq!(reply["images"].as_array().unwrap().len(), 1, "{reply}");

    // A Studio job queued on B, painted by a worker, followed on A, resumed on B.
    let job = studio(
        &b,
        json!({"prompt": "two boats", "size": "64x64", "n": 2, "seed": 9}),
    )
    .await;
    let on_a = read_events(
        &client,
        &a.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    let done = named(&on_a, "image.done");
    assert_eq!(
        done.len(),
        2,
        "{:?}",
        on_a.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    assert_eq!(on_a.last().unwrap().event, "run.finished");
    let resumed = read_events(
        &client,
        &b.url(&format!("/api/studio/jobs/{job}/events")),
        done[0].id,
    )
    .await;
    assert!(resumed.iter().all(|e| e.id > done[0].id), "{resumed:?}");
    assert_eq!(
        named(&resumed, "image.done")
            .iter()
            .map(|e| e.data["image_id"].clone())
            .collect::<Vec<_>>(),
        vec![done[1].data["image_id"].clone()]
    );
    let expected = reference(
        &b,
        json!({"prompt": "two boats", "size": "64x64", "n": 2, "seed": 9}),
    )
    .await;
    for (k, e) in done.iter().enumerate() {
        let png = image_png(&a, e.data["image_id"].as_str().unwrap()).await;
        assert_eq!(
            pixels(&png),
            pixels(&expected[k]),
            "image {k}: same pixels on any worker"
        );
    }

    // kill -9 the worker painting a job: it finishes on the other one, same pixels.
    let job = studio(&a, big.clone()).await;
    read_events_until(
        &client,
        &a.url(&format!("/api/studio/jobs/{job}/events")),
        |e| e.event == "image.progress",
    )
    .await;
    let painter = painter_of(&a, &job).await;
    let (killed, mut survivor) = if painter == "worker-1" {
        (w1, w2)
    } else {
        (w2, w1)
    };
    let killed_at = Instant::now();
    killed.kill9();
    let events = read_events(
        &client,
        &b.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.finished", "{events:?}");
    let done = named(&events, "image.done");
    assert_eq!(done.len(), 1);
    eprintln!(
        "a job whose worker was killed finished {:.1} s later on the other worker",
        killed_at.elapsed().as_secs_f64()
    );
    let png = image_png(&b, done[0].data["image_id"].as_str().unwrap()).await;
    let expected = reference(&a, big.clone()).await;
    assert_eq!(
        pixels(&png),
        pixels(&expected[0]),
        "the job painted the same pixels"
    );

    // A cancel asked on B reaches the worker painting a job followed on A.
    let job = studio(
        &a,
        json!({"prompt": "to be cancelled", "size": "256x256", "quality": "high", "seed": 4}),
    )
    .await;
    read_events_until(
        &client,
        &a.url(&format!("/api/studio/jobs/{job}/events")),
        |e| e.event == "image.progress",
    )
    .await;
    let asked = Instant::now();
    let r = client
        .post(b.url(&format!("/api/studio/jobs/{job}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let events = read_events(
        &client,
        &a.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.cancelled", "{events:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // kill -9 the node driving a reply: B says it was interrupted; its image still comes.
    let started = a.say(&client, &conversation, "now a mural").await;
    let run = started["run_id"].as_str().unwrap().to_string();
    let message = started["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = read_events_until(&client, &b.url(&format!("/api/runs/{run}/events")), |e| {
        e.event == "image.progress"
    })
    .await;
    a.kill9();
    let rest = read_events(
        &client,
        &b.url(&format!("/api/runs/{run}/events")),
        seen.last().and_then(|e| e.id),
    )
    .await;
    let last = rest.last().unwrap();
    assert_eq!(last.event, "run.error", "{rest:?}");
    assert_eq!(last.data["code"], "interrupted");
    let started_wait = Instant::now();
    loop {
        let reply = reply_of(&b, &conversation, &message).await;
        if reply["images"].as_array().is_some_and(|i| i.len() == 1) {
            assert_eq!(reply["status"], "failed", "{reply}");
            assert_eq!(reply["error"]["code"], "interrupted", "{reply}");
            break;
        }
        assert!(
            started_wait.elapsed() < Duration::from_secs(120),
            "the reply's image never came: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM the worker painting a job: it hands the job back; another finishes it.
    let w3 = Easel::worker(&db.url, &models, "worker-3", &[LEASE]);
    wait_for_workers(&b, 2).await;
    let job = studio(
        &b,
        json!({"prompt": "handed back", "size": "256x256", "quality": "high", "seed": 8}),
    )
    .await;
    read_events_until(
        &client,
        &b.url(&format!("/api/studio/jobs/{job}/events")),
        |e| e.event == "image.progress",
    )
    .await;
    let painter = painter_of(&b, &job).await;
    let (stopping, other) = if painter == "worker-3" {
        (w3, survivor)
    } else {
        (survivor, w3)
    };
    survivor = other;
    let took = stopping.terminate();
    assert!(
        took < Duration::from_secs(11),
        "the worker took {took:?} to stop"
    );
    let events = read_events(
        &client,
        &b.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.finished", "{events:?}");

    // A model copied into the workers' folder reaches the web nodes within seconds (each
    // worker scans its folder again and advertises anew); removed, it goes.
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-lcm"),
        &models.join("tiny-lcm"),
    );
    b.wait_for_image_models(&["tiny-lcm", "tiny-sd"]).await;
    std::fs::remove_dir_all(models.join("tiny-lcm")).unwrap();
    b.wait_for_image_models(&["tiny-sd"]).await;
    drop(survivor);
}
