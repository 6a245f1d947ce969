//! Optimised graphs saved on first load and reused: the pixels are the ones the original graphs
//! paint (so every reference-parity test holds on the cached path too), the second load reads
//! the saved graphs, a broken cache entry falls back to the original, and `easel models
//! optimize` fills the cache ahead of time.

mod common;

use std::path::{Path, PathBuf};

use easel::config::ImageSettings;
use easel::imaging::registry::ModelEntry;
use easel::imaging::request::{self, ImageParams, SizeChoice, SizePolicy};
use easel::imaging::run_job;
use easel::imaging::runtime::Runtime;

fn settings(cache: Option<&Path>) -> ImageSettings {
    ImageSettings {
        graph_cache: cache.map(Path::to_path_buf),
        // The tiny models are far below the real threshold: cache everything here.
        graph_cache_min_bytes: 0,
        ..common::image_settings()
    }
}

fn paint(model: &Path, runtime: &Runtime) -> Vec<f32> {
    let entry = ModelEntry::open(model);
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
    let params = ImageParams {
        prompt: "a lighthouse at dusk".into(),
        size: SizeChoice::Exact(64, 64),
        steps: Some(4),
        guidance: Some(6.0),
        seed: Some(21),
        ..ImageParams::default()
    };
    let request = request::resolve(params, &entry, SizePolicy::AnyMultipleOf8).unwrap();
    let (images, _) = run_job(
        &entry,
        runtime,
        &request,
        &mut |_| {},
        &|| false,
        None,
        true,
    )
    .expect("generation");
    images[0].pixels.data.clone()
}

/// The cache's entries (one folder per cached graph).
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn saved_graphs_paint_the_same_pixels_and_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for name in ["tiny-sd", "tiny-sdxl"] {
        let model = common::test_models_dir().join(name);
        let original = paint(&model, &Runtime::load(&settings(None)).unwrap());

        let cached = Runtime::load(&settings(Some(&cache))).unwrap();
        let first = paint(&model, &cached);
        let saved = entries(&cache);
        assert!(
            saved.iter().all(|e| e.join("model.onnx").is_file()),
            "{saved:?}"
        );
        // Weights go to the external file (the UNet's are above the inline limit of 1 KB).
        assert!(
            saved.iter().any(|e| e.join("model.onnx.data").is_file()),
            "{saved:?}"
        );
        assert!(
            !saved
                .iter()
                .any(|e| e.file_name().unwrap().to_string_lossy().starts_with('.')),
            "no staging folder is left"
        );
        // A second load reads the saved graphs (nothing new is written) and paints the same.
        let again = paint(&model, &Runtime::load(&settings(Some(&cache))).unwrap());
        assert_eq!(
            entries(&cache),
            saved,
            "{name}: the saved graphs are reused"
        );
        for (label, pixels) in [("first load", &first), ("saved graphs", &again)] {
            let diff = common::max_abs_diff(&original, pixels);
            assert!(diff <= 1e-6, "{name} {label}: max |Δ| = {diff}");
        }
    }
    // tiny-sd: text encoder, UNet, VAE decoder and encoder; tiny-sdxl adds its second encoder.
    assert!(entries(&cache).len() >= 8, "{:?}", entries(&cache));

    // A damaged entry is not trusted blindly: the original graph loads instead.
    for entry in entries(&cache) {
        std::fs::write(entry.join("model.onnx"), b"not a graph").unwrap();
    }
    let model = common::test_models_dir().join("tiny-sd");
    let original = paint(&model, &Runtime::load(&settings(None)).unwrap());
    let fallback = paint(&model, &Runtime::load(&settings(Some(&cache))).unwrap());
    assert!(common::max_abs_diff(&original, &fallback) <= 1e-6);
    // …and the damaged entries were dropped, so the load after that saves good ones again.
    paint(&model, &Runtime::load(&settings(Some(&cache))).unwrap());
    let graphs = entries(&cache)
        .iter()
        .filter(|e| std::fs::read(e.join("model.onnx")).is_ok_and(|b| b != b"not a graph"))
        .count();
    assert!(graphs >= 4, "{:?}", entries(&cache));
}

#[test]
fn models_optimize_saves_the_graphs_ahead_of_time() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-sd"),
        &models.join("tiny-sd"),
    );
    let cache = dir.path().join("cache");
    let run = |args: &[&str], cache: &str| {
        common::process::cli(&models, dir.path())
            .args(args)
            .env("EASEL_GRAPH_CACHE", cache)
            .output()
            .expect("easel runs")
    };
    let out = run(
        &["models", "optimize", "tiny-sd"],
        &cache.display().to_string(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("from the saved graphs"), "{text}");
    assert!(entries(&cache).len() >= 4, "{:?}", entries(&cache));
    let out = run(
        &["models", "optimize", "nowhere"],
        &cache.display().to_string(),
    );
    assert!(!out.status.success());
    let out = run(&["models", "optimize", "tiny-sd"], "off");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("graph cache is off"));
}
