//! Remote image backends: a second real Easel, started as a plain `/v1` server behind an API
//! key, is the remote model of the first (`[[images.remote]]` in its `easel.toml`), which has
//! no local models at all.
//!
//! - `/api/models` offers the remote models (and the OpenAI-kind one without samplers);
//! - chat, Studio and `/v1` paint through it; Studio shows the streamed partial images as
//!   previews; the pixels are the backend's own for the same request;
//! - a busy backend (429, its queue full) is retried after `Retry-After` and the job finishes;
//! - a backend slower than the entry's timeout fails clearly (`/v1`: 504, Studio: the message);
//! - a wrong key is a clear error (`/v1`: 502 naming the key).

mod common;

use common::process::{b64_images, bearer_client, client, get, pixels, post, slow_models, Easel};
use common::{read_events, Reply, ScriptedLlm, SseEvent};
use serde_json::{json, Value};

const KEY: &str = "backend-secret";

fn named<'a>(events: &'a [SseEvent], name: &str) -> Vec<&'a SseEvent> {
    events.iter().filter(|e| e.event == name).collect()
}

fn png(image: &image::RgbaImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `/v1` generation through `easel` that must fail: its status and error body.
async fn v1_failure(easel: &Easel, body: Value) -> (u16, Value) {
    let r = client()
        .post(easel.url("/v1/images/generations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_easel_paints_for_chat_studio_and_v1() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let back_db = common::TestDatabase::new(dir.path(), "backend");
    let front_db = common::TestDatabase::new(dir.path(), "front");
    // The backend: a plain /v1 server with a key and room for ten images at a time.
    let backend = Easel::serve(
        &back_db.url,
        &models,
        None,
        &[("EASEL_API_KEY", KEY), ("EASEL_IMAGE_QUEUE_MAX", "10")],
    )
    .await;
    let v1 = backend.url("/v1");
    let config = dir.path().join("easel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[images.remote]]
name = "far"
url = "{v1}"
api_key = "{KEY}"
model = "tiny-sd"
kind = "easel"
sizes = ["64x64", "256x256"]
timeout = 120
max_retry_wait = 1
retries = 10

[[images.remote]]
name = "impatient"
url = "{v1}"
api_key = "{KEY}"
model = "tiny-sd"
kind = "easel"
sizes = ["256x256"]
timeout = 1

[[images.remote]]
name = "plain"
url = "{v1}"
api_key = "{KEY}"
model = "tiny-sd"
kind = "openai"
sizes = ["64x64"]

[[images.remote]]
name = "wrong-key"
url = "{v1}"
api_key = "not-the-key"
model = "tiny-sd"
kind = "openai"
sizes = ["64x64"]
"#
        ),
    )
    .unwrap();
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![(
            "image_generator",
            vec![json!({"prompt": "a red fox — 雪 ❄️", "size": "64x64"}).to_string()],
        )]),
        Reply::Text(vec!["Painted far away."]),
    ])
    .await;
    let no_models = dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();
    let front = Easel::serve(
        &front_db.url,
        &no_models,
        Some(&llm.base_url),
        &[
            ("EASEL_CONFIG", config.to_str().unwrap()),
            ("EASEL_IMAGE_MODEL", "far"),
            ("EASEL_NODE_NAME", "front"),
        ],
    )
    .await;
    let client = client();
    let back = bearer_client(KEY);

    // Offered like local models; the OpenAI-kind one without samplers.
    let offered = get(&client, front.url("/api/models")).await;
    let images: Vec<&Value> = offered["image"]
        .as_array()
        .unwrap_or_else(|| panic!("{offered}"))
        .iter()
        .collect();
    let ids: Vec<&str> = images.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["far", "impatient", "plain", "wrong-key"], "{offered}");
    assert!(images[0]["samplers"].as_array().unwrap().len() > 3);
    assert_eq!(images[2]["samplers"], json!([]), "{offered}");
    assert_eq!(images[3]["samplers"], json!([]), "{offered}");
    assert_eq!(offered["default_image_model"], "far");

    // /v1 through the front gives the backend's own pixels for the same request.
    let request = json!({"model": "far", "prompt": "a lighthouse", "size": "64x64", "n": 2,
        "seed": 11, "steps": 3, "sampler": "euler", "schedule": "karras", "guidance": 6.5});
    let through = post(
        &client,
        front.url("/v1/images/generations"),
        request.clone(),
    )
    .await;
    let mut direct_request = request.clone();
    direct_request["model"] = json!("tiny-sd");
    let direct = post(&back, backend.url("/v1/images/generations"), direct_request).await;
    let (through, direct) = (b64_images(&through), b64_images(&direct));
    assert_eq!(through.len(), 2);
    for k in 0..2 {
        assert_eq!(pixels(&through[k]), pixels(&direct[k]), "image {k}");
    }

    // An edit through the front is the backend's own edit of the same source and mask.
    let edit = |model: &str| {
        let source = png(&image::RgbaImage::from_fn(64, 64, |x, y| {
            image::Rgba([(x * 4) as u8, (y * 4) as u8, 90, 255])
        }));
        let mask = png(&image::RgbaImage::from_fn(64, 64, |x, _| {
            image::Rgba([0, 0, 0, if x < 32 { 0 } else { 255 }])
        }));
        let part = |bytes: Vec<u8>, name: &str| {
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name.to_string())
                .mime_str("image/png")
                .unwrap()
        };
        let mut form = reqwest::multipart::Form::new()
            .part("image", part(source, "source.png"))
            .part("mask", part(mask, "mask.png"));
        for (k, v) in [
            ("model", model),
            ("prompt", "a blue door"),
            ("size", "64x64"),
            ("seed", "4"),
            ("strength", "0.8"),
            ("steps", "4"),
            ("sampler", "euler"),
            ("schedule", "karras"),
            ("guidance", "7"),
        ] {
            form = form.text(k.to_string(), v.to_string());
        }
        form
    };
    let through: Value = client
        .post(front.url("/v1/images/edits"))
        .multipart(edit("far"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let direct: Value = back
        .post(backend.url("/v1/images/edits"))
        .multipart(edit("tiny-sd"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        pixels(&b64_images(&through)[0]),
        pixels(&b64_images(&direct)[0]),
        "{through}"
    );

    // An OpenAI-kind entry (no seed or sampler sent, a plain JSON answer) paints too.
    let plain = post(
        &client,
        front.url("/v1/images/generations"),
        json!({"model": "plain", "prompt": "a kite", "size": "64x64"}),
    )
    .await;
    assert_eq!(b64_images(&plain).len(), 1);

    // Chat: the tool paints on the backend; the reply keeps the image.
    let conversation = front.painting_conversation(&client).await;
    let started = front.say(&client, &conversation, "paint a fox").await;
    let run = started["run_id"].as_str().unwrap();
    let events = read_events(
        &client,
        &front.url(&format!("/api/runs/{run}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.finished", "{events:?}");
    let done = named(&events, "image.done");
    assert_eq!(done.len(), 1, "{events:?}");
    let png = client
        .get(front.url(&format!(
            "/api/images/{}.png",
            done[0].data["image_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 64);

    // Studio while the backend is full: it answers 429, the front retries, the job finishes,
    // with the streamed partial images shown as previews on the way.
    // Ten images queued on the backend directly (through its Studio: queued before it answers).
    let blocker = post(
        &back,
        backend.url("/api/studio/generations"),
        json!({"prompt": "hold the queue", "n": 10, "size": "64x64", "steps": 150, "sampler": "heun", "seed": 1}),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let probe = back
        .post(backend.url("/v1/images/generations"))
        .json(&json!({"model": "tiny-sd", "prompt": "probe", "size": "64x64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 429, "the backend is full");
    let job = post(
        &client,
        front.url("/api/studio/generations"),
        json!({"model": "far", "prompt": "a harbour at night", "size": "64x64", "quality": "high", "seed": 5}),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = read_events(
        &client,
        &front.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.finished", "{events:?}");
    assert_eq!(named(&events, "image.done").len(), 1);
    assert!(
        named(&events, "image.progress")
            .iter()
            .any(|e| e.data["preview"]
                .as_str()
                .is_some_and(|p| p.starts_with("data:image/"))),
        "the backend's partial images are previews: {events:?}"
    );
    let blocked = read_events(
        &back,
        &backend.url(&format!("/api/studio/jobs/{blocker}/events")),
        None,
    )
    .await;
    assert_eq!(blocked.last().unwrap().event, "run.finished");

    // Slower than the entry's timeout: a clear failure, 504 on /v1.
    let (status, body) = v1_failure(&front, json!({"model": "impatient", "prompt": "too slow", "n": 10, "size": "256x256", "steps": 150, "sampler": "heun"})).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "remote_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 1 s"),
        "{body}"
    );
    let job = post(
        &client,
        front.url("/api/studio/generations"),
        json!({"model": "impatient", "prompt": "too slow", "n": 10, "size": "256x256", "steps": 150, "sampler": "heun"}),
    )
    .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = read_events(
        &client,
        &front.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "run.error", "{events:?}");
    assert!(
        last.data.to_string().contains("did not answer within 1 s"),
        "{last:?}"
    );

    // A wrong key: 502, saying so.
    let (status, body) = v1_failure(
        &front,
        json!({"model": "wrong-key", "prompt": "x", "size": "64x64"}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "remote_unauthorized", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key"),
        "{body}"
    );
}
