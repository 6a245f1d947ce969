//! The attacks and accidents of the hardening review, each as a test: an edit size that would
//! allocate terabytes, imports with hostile ids, links built from request headers, and a huge
//! upload decoded while the server keeps answering.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::Setup;
use serde_json::{json, Value};

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_size_that_would_allocate_terabytes_is_refused_before_anything_is_resized() {
    let s = Setup::default().models().start().await;
    for size in [
        "64x4294967288",
        "4294967288x64",
        "99999999999999999999x64",
        "65536x65536",
        "0x0",
    ] {
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(png(16, 16)).file_name("s.png"),
            )
            .text("prompt", "x")
            .text("size", size);
        let r = s
            .client
            .post(s.url("/v1/images/edits"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "/v1 edit with size {size}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["param"], "size", "{body}");

        let (status, body) = s
            .send(
                "POST",
                "/api/studio/generations",
                json!({"prompt": "x", "size": size,
                       "source_image_b64": base64::engine::general_purpose::STANDARD.encode(png(16, 16))}),
            )
            .await;
        assert_eq!(status, 422, "Studio edit with size {size}: {body}");
    }
    let (health, _) = s.get("/api/health").await;
    assert_eq!(health, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_upload_is_decoded_off_the_async_threads() {
    let s = Setup::default().models().start().await;
    // 8000×8000: within the decoding limits, slow to decode and resize.
    let big = png(8000, 8000);
    let client = s.client.clone();
    let url = s.url("/v1/images/edits");
    let upload = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(big).file_name("big.png"),
            )
            .text("prompt", "smaller please");
        client
            .post(url)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the server answers at once (generous bound: this is liveness, not speed).
    for _ in 0..5 {
        let health = tokio::time::timeout(Duration::from_secs(3), s.get("/api/health"))
            .await
            .expect("/api/health answers while a large upload is decoded");
        assert_eq!(health.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        upload.await.unwrap(),
        200,
        "the upload was fitted and edited"
    );
}

fn export(messages: Value) -> Value {
    json!({
        "format": "easel.conversation", "version": 1,
        "conversation": {"title": "imported", "created_at": ""},
        "messages": messages
    })
}

fn image(id: &str) -> Value {
    json!({"id": id, "width": 8, "height": 8,
           "png": base64::engine::general_purpose::STANDARD.encode(png(8, 8)),
           "metadata": {"model": "m", "prompt": "p", "seed": 1, "steps": 1, "sampler": "euler", "schedule": "discrete", "guidance": 1.0, "width": 8, "height": 8}})
}

fn message(id: &str, content: &str, images: Vec<Value>, tool_calls: Value) -> Value {
    json!({"id": id, "role": "assistant", "content": content, "status": "complete",
           "created_at_ms": 1, "images": images, "tool_calls": tool_calls})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_check_every_id_and_leave_nothing_behind_on_error() {
    let s = Setup::default().start().await;
    let long_text = "x".repeat(3_000);
    let m1 = "0190a0a0-0000-7000-8000-000000000001";
    let m2 = "0190a0a0-0000-7000-8000-000000000002";
    let i1 = "0190a0a0-0000-7000-8000-000000000011";
    let bad = [
        // An empty image id once multiplied the text by 37 per image.
        export(json!([message(
            m1,
            &long_text,
            vec![image(""); 37],
            json!([])
        )])),
        export(json!([message(
            m1,
            "a",
            vec![image(i1), image(i1)],
            json!([])
        )])),
        export(json!([
            message(m1, "a", vec![], json!([])),
            message(m1, "b", vec![], json!([]))
        ])),
        export(json!([message("not-a-uuid", "a", vec![], json!([]))])),
        export(json!([message(m1, "a", vec![image(m1)], json!([]))])),
    ];
    for doc in bad {
        let (status, body) = s.send("POST", "/api/conversations/import", doc).await;
        assert_eq!(status, 422, "{body}");
    }
    // A valid document whose second message is broken: nothing of it is kept.
    let half = export(json!([
        message(m1, "fine", vec![image(i1)], json!([])),
        message(
            m2,
            "broken",
            vec![{
                let mut broken = image("0190a0a0-0000-7000-8000-000000000012");
                broken["png"] = json!("not base64!");
                broken
            }],
            json!([])
        )
    ]));
    let (status, _) = s.send("POST", "/api/conversations/import", half).await;
    assert_eq!(status, 422);
    let (_, list) = s.get("/api/conversations").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "no half-made conversation"
    );
    assert_eq!(s.state.store.count_images().await.unwrap(), 0);

    // Ids in tool calls are remapped by value: a text that merely contains an id is untouched.
    let doc = export(json!([message(
        m1,
        &format!("see {i1}"),
        vec![image(i1)],
        json!([{"id": "call_1", "name": "image_generator",
                "arguments": format!("{{\"source_image\":\"{i1}\",\"prompt\":\"around {i1}\"}}"),
                "result": format!("{{\"images\":[{{\"id\":\"{i1}\",\"seed\":1}}]}}")}])
    )]));
    let (status, created) = s.send("POST", "/api/conversations/import", doc).await;
    assert_eq!(status, 201, "{created}");
    let messages = s.messages(created["id"].as_str().unwrap()).await;
    let new_id = messages[0]["images"][0]["id"].as_str().unwrap();
    assert_ne!(new_id, i1);
    let call = &messages[0]["tool_calls"][0];
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["source_image"], new_id);
    assert_eq!(args["prompt"], format!("around {i1}"));
    let result: Value = serde_json::from_str(call["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["images"][0]["id"], new_id);
    assert_eq!(messages[0]["content"], format!("see {i1}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_come_from_the_configuration_not_from_request_headers() {
    let s = Setup::default().models().start().await;
    let r = s
        .client
        .post(s.url("/v1/images/generations"))
        .header("x-forwarded-proto", "javascript")
        .header("x-forwarded-host", "attacker.example")
        .json(&json!({"prompt": "a fox", "response_format": "url"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/api/images/", s.base)), "{url}");

    // With a public URL configured, links use it.
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::HashMap::new();
    env.insert("EASEL_AUTH".to_string(), "none".to_string());
    let database = common::TestDatabase::new(dir.path(), "p");
    env.insert("DATABASE_URL".to_string(), database.url.clone());
    env.insert(
        "EASEL_PUBLIC_URL".to_string(),
        "https://easel.example.com".to_string(),
    );
    env.insert(
        "EASEL_MODELS_DIR".to_string(),
        common::test_models_dir().display().to_string(),
    );
    let mut config = easel::config::Config::load(&env).unwrap();
    config.images = common::image_settings();
    config.site_root = dir.path().join("site");
    let p = common::start_on(config, dir, database).await;
    let (_, body) = p
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "a fox", "response_format": "url"}),
        )
        .await;
    let url = body["data"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://easel.example.com/api/images/"),
        "{url}"
    );
}
