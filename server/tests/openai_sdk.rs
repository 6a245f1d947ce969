//! The official `openai` Python package works against Easel's `/v1` unchanged: models,
//! generations (base64 and URL), edits with a mask, typed errors, streaming.

mod common;

use serde_json::Value;

fn png(img: &image::RgbaImage, path: &std::path::Path) {
    img.save(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_unchanged() {
    let s = common::Setup::default().models().start().await;
    let source = s.dir.path().join("source.png");
    let mask = s.dir.path().join("mask.png");
    png(
        &image::RgbaImage::from_fn(64, 64, |x, y| {
            image::Rgba([(x * 4) as u8, (y * 4) as u8, 60, 255])
        }),
        &source,
    );
    png(
        &image::RgbaImage::from_fn(64, 64, |x, _| {
            image::Rgba([0, 0, 0, if x < 32 { 0 } else { 255 }])
        }),
        &mask,
    );
    let script = common::manifest_dir().join("tests/assets/openai_sdk_check.py");
    let base = s.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .arg(&base)
            .arg(&source)
            .arg(&mask)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (install Python 3)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed (is the `openai` package installed? `cargo xtask setup` installs it):\n{stderr}"
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let seen: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        seen["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "tiny-sd"),
        "{seen}"
    );
    assert_eq!(seen["generate_count"], 2);
    assert_eq!(seen["generate_png"], true);
    assert_eq!(seen["url_png"], true);
    assert_eq!(seen["edit_png"], true);
    assert_eq!(seen["edit_size"], "64x64");
    assert_eq!(seen["n11"]["status"], 400, "{seen}");
    assert_eq!(seen["n11"]["param"], "n", "{seen}");
    assert_eq!(seen["unknown_model"]["status"], 404, "{seen}");
    assert_eq!(seen["unknown_model"]["code"], "model_not_found");
    let events: Vec<&str> = seen["stream_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec![
            "image_generation.partial_image",
            "image_generation.partial_image",
            "image_generation.completed"
        ],
        "{seen}"
    );
}
