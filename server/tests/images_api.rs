//! The OpenAI-compatible images API (`/v1`) and Image Studio's API against the real server and
//! the tiny test model: response and error shapes, URLs, edits, streaming, the gallery.

mod common;

use base64::Engine as _;
use common::{names, read_events, Reply, ScriptedLlm, Setup, TestServer};
use serde_json::{json, Value};

async fn server() -> TestServer {
    Setup::default().models().start().await
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn png_bytes(img: &image::RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_answer_in_openai_shape_inline_or_by_url() {
    let s = server().await;
    let (status, models) = s.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "tiny-sd" && m["object"] == "model"));

    let (status, body) = s
        .send("POST", "/v1/images/generations", json!({"model": "tiny-sd", "prompt": "a red fox", "n": 2, "size": "64x64", "seed": 11, "steps": 3}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(&b64(data[0]["b64_json"].as_str().unwrap())[1..4], b"PNG");
    assert_eq!(data[1]["seed"], 12);

    let (status, body) = s
        .send("POST", "/v1/images/generations", json!({"prompt": "a red fox", "response_format": "url", "output_format": "jpeg", "quality": "hd"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&s.base) && url.ends_with(".jpg"), "{url}");
    let jpeg = s
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
    assert_eq!(body["output_format"], "jpeg");

    // output_compression is the JPEG quality.
    let jpeg_of = |quality: i64| json!({"prompt": "a red fox", "size": "128x128", "seed": 3, "output_format": "jpeg", "output_compression": quality});
    let (_, small) = s.send("POST", "/v1/images/generations", jpeg_of(10)).await;
    let (_, large) = s.send("POST", "/v1/images/generations", jpeg_of(95)).await;
    let size = |b: &Value| b64(b["data"][0]["b64_json"].as_str().unwrap()).len();
    assert!(size(&small) < size(&large), "quality 10 is smaller than 95");
    let (status, body) = s.send("POST", "/v1/images/generations", jpeg_of(101)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "output_compression");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_use_openai_error_bodies_with_the_parameter() {
    let s = server().await;
    let check = |status: u16, body: &Value, param: &str| {
        assert_eq!(body["error"]["param"], param, "{body}");
        assert!(body["error"]["message"].as_str().is_some());
        assert_eq!(
            body["error"]["type"],
            if status >= 500 {
                "server_error"
            } else {
                "invalid_request_error"
            }
        );
    };
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "x", "n": 11}),
        )
        .await;
    assert_eq!(status, 400);
    check(status, &body, "n");
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "x", "size": "1024x1024"}),
        )
        .await;
    assert_eq!(status, 400);
    check(status, &body, "size");
    let (status, body) = s
        .send("POST", "/v1/images/generations", json!({"prompt": ""}))
        .await;
    assert_eq!(status, 400);
    check(status, &body, "prompt");
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "x", "model": "dall-e-9"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "x", "response_format": "gif"}),
        )
        .await;
    assert_eq!(status, 400);
    check(status, &body, "response_format");
    let raw = s
        .client
        .post(s.url("/v1/images/generations"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_protects_v1_and_api_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::HashMap::new();
    env.insert("EASEL_AUTH".to_string(), "none".to_string());
    let database = common::TestDatabase::new(dir.path(), "e");
    env.insert("DATABASE_URL".to_string(), database.url.clone());
    env.insert("EASEL_API_KEY".to_string(), "secret".to_string());
    env.insert(
        "EASEL_MODELS_DIR".to_string(),
        common::test_models_dir().display().to_string(),
    );
    let mut config = easel::config::Config::load(&env).unwrap();
    config.images = common::image_settings();
    let s = common::start_on(config, dir, database).await;
    let addr = s.addr;
    let client = reqwest::Client::new();
    let denied = client
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let allowed = client
        .get(format!("http://{addr}/v1/models"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let wrong = client
        .get(format!("http://{addr}/v1/models"))
        .bearer_auth("secreT")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // `/api` is protected too, with Easel's error shape.
    let denied = client
        .get(format!("http://{addr}/api/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "auth_required");
    let allowed = client
        .get(format!("http://{addr}/api/conversations"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    // A browser enters the key once and gets a session cookie; the key itself is not kept.
    let status: Value = client
        .get(format!("http://{addr}/api/auth/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["key_required"], true);
    assert_eq!(status["signed_in"], false);
    let bad = client
        .post(format!("http://{addr}/api/auth/login"))
        .json(&json!({"key": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let login = client
        .post(format!("http://{addr}/api/auth/login"))
        .json(&json!({"key": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("secret"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = client
        .get(format!("http://{addr}/api/conversations"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let v1_with_cookie = client
        .get(format!("http://{addr}/v1/models"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(v1_with_cookie.status(), 200);
    let out = client
        .post(format!("http://{addr}/api/auth/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = client
        .get(format!("http://{addr}/api/conversations"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "the session ended on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_take_a_multipart_image_and_an_alpha_mask() {
    let s = server().await;
    let source = png_bytes(&image::RgbaImage::from_fn(64, 64, |x, y| {
        image::Rgba([(x * 4) as u8, (y * 4) as u8, 90, 255])
    }));
    // OpenAI's convention: transparent pixels are the area to edit (the left half here).
    let mask = png_bytes(&image::RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([0, 0, 0, if x < 32 { 0 } else { 255 }])
    }));
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(source.clone())
                .file_name("source.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "mask",
            reqwest::multipart::Part::bytes(mask)
                .file_name("mask.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("prompt", "a blue door")
        .text("n", "1")
        .text("seed", "4")
        .text("strength", "0.8");
    let r = s
        .client
        .post(s.url("/v1/images/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let out = image::load_from_memory(&b64(body["data"][0]["b64_json"].as_str().unwrap()))
        .unwrap()
        .to_rgb8();
    assert_eq!(out.dimensions(), (64, 64), "edits keep the source's size");
    assert_eq!(body["size"], "64x64");

    let no_image = reqwest::multipart::Form::new().text("prompt", "x");
    let r = s
        .client
        .post(s.url("/v1/images/edits"))
        .multipart(no_image)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "image");
    let junk = reqwest::multipart::Form::new().text("prompt", "x").part(
        "image",
        reqwest::multipart::Part::bytes(b"not an image".to_vec()).file_name("x.png"),
    );
    let r = s
        .client
        .post(s.url("/v1/images/edits"))
        .multipart(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_partial_images_then_the_completed_ones() {
    let s = server().await;
    let r = s
        .client
        .post(s.url("/v1/images/generations"))
        .json(&json!({"prompt": "a tower", "n": 2, "stream": true, "partial_images": 2, "steps": 6, "seed": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let partials = text
        .matches("event: image_generation.partial_image")
        .count();
    let completed = text.matches("event: image_generation.completed").count();
    assert_eq!(completed, 2, "{text}");
    assert_eq!(partials, 4, "two previews for each of two images");
    let last = text.lines().rfind(|l| l.starts_with("data:")).unwrap();
    let data: Value = serde_json::from_str(last.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(data["type"], "image_generation.completed");
    assert_eq!(&b64(data["b64_json"].as_str().unwrap())[1..4], b"PNG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_jobs_stream_progress_fill_the_gallery_and_go_to_chat() {
    let s = server().await;
    // Enough steps that the subscriber, connecting right after the 202, sees them happen even
    // on a busy machine: a late one replays only the newest progress, and the last step's
    // carries no preview (the finished image follows).
    let (status, job) = s
        .send("POST", "/api/studio/generations", json!({"prompt": "a lighthouse", "n": 2, "size": "96x64", "steps": 24, "seed": 21, "style": "anime", "preview": "faster"}))
        .await;
    assert_eq!(status, 202, "{job}");
    let events = read_events(
        &s.client,
        &s.url(&format!(
            "/api/studio/jobs/{}/events",
            job["job_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    let order = names(&events);
    assert_eq!(order.first().unwrap(), "image.queued");
    assert_eq!(order.last().unwrap(), "run.finished");
    assert!(
        events
            .iter()
            .any(|e| e.event == "image.progress" && e.data.get("preview").is_some()),
        "live previews"
    );
    assert_eq!(order.iter().filter(|n| *n == "image.done").count(), 2);

    let (_, gallery) = s.get("/api/studio/images").await;
    let gallery = gallery.as_array().unwrap().clone();
    assert_eq!(gallery.len(), 2);
    assert_eq!(gallery[0]["width"], 96, "any multiple of 8 in the studio");
    assert!(gallery[0]["metadata"]["prompt"]
        .as_str()
        .unwrap()
        .starts_with("anime artwork of a lighthouse"));
    assert_eq!(
        gallery[0]["metadata"]["tool_arguments"]["prompt"],
        "a lighthouse"
    );

    // Edit one of them with a painted mask (white = change, no alpha).
    let source_id = gallery[0]["id"].clone();
    let mask = png_bytes(&image::RgbaImage::from_fn(96, 64, |x, _| {
        image::Rgba([
            if x < 48 { 255 } else { 0 },
            if x < 48 { 255 } else { 0 },
            if x < 48 { 255 } else { 0 },
            255,
        ])
    }));
    let (status, job) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": "a lighthouse at night", "source_image_id": gallery[0]["id"], "mask_b64": base64::engine::general_purpose::STANDARD.encode(mask), "steps": 4}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let events = read_events(
        &s.client,
        &s.url(&format!(
            "/api/studio/jobs/{}/events",
            job["job_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert_eq!(names(&events).last().unwrap(), "run.finished");
    let (_, gallery) = s.get("/api/studio/images").await;
    assert_eq!(gallery.as_array().unwrap().len(), 3);
    assert_eq!(gallery[0]["metadata"]["source_image_id"], source_id);

    // Send to chat: a conversation whose history holds the image and its id for the LLM.
    let image_id = gallery[0]["id"].as_str().unwrap();
    let (status, sent) = s
        .send(
            "POST",
            &format!("/api/studio/images/{image_id}/chat"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let messages = s.messages(sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["images"].as_array().unwrap().len(), 1);
    let copied = messages[1]["images"][0]["id"].as_str().unwrap();
    assert!(messages[1]["tool_calls"][0]["result"]
        .as_str()
        .unwrap()
        .contains(copied));

    // Deleting from the gallery removes the bytes; the chat copy stays.
    let before = s.state.store.count_images().await.unwrap();
    assert_eq!(s.delete(&format!("/api/images/{image_id}")).await, 204);
    assert_eq!(s.state.store.count_images().await.unwrap(), before - 1);
    let (status, body) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": "x", "size": "100x64"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_jobs_can_be_cancelled() {
    let s = server().await;
    let (_, job) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": "slow", "n": 4, "size": "256x256", "steps": 150, "sampler": "heun"}),
        )
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        s.send("POST", &format!("/api/studio/jobs/{id}/cancel"), json!({}))
            .await
            .0,
        202
    );
    let events = read_events(
        &s.client,
        &s.url(&format!("/api/studio/jobs/{id}/events")),
        None,
    )
    .await;
    assert_eq!(names(&events).last().unwrap(), "run.cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_enhancement_uses_the_llm_or_says_it_needs_one() {
    let s = server().await;
    let (status, body) = s
        .send("POST", "/api/studio/enhance", json!({"prompt": "a cat"}))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "no_llm");

    let llm = ScriptedLlm::start(vec![Reply::Text(vec![
        "\"A fluffy ginger cat",
        " on a sunlit windowsill, soft light\"",
    ])])
    .await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;
    let (status, body) = s
        .send("POST", "/api/studio/enhance", json!({"prompt": "a cat"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["prompt"],
        "A fluffy ginger cat on a sunlit windowsill, soft light"
    );
    assert!(llm.requests()[0].get("tools").is_none());
    assert_eq!(llm.requests()[0]["messages"][1]["content"], "a cat");
}
