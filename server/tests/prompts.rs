//! Prompts as people write them, on real ONNX Runtime with the tiny models: long prompts in
//! 75-token chunks (or truncated, when asked), A1111 weights, both matching diffusers'
//! long-prompt-weighting pipelines (fixtures made by `tests/assets/make_prompt_fixtures.py`),
//! the images API reading brackets literally unless asked, the Studio's token check, and TAESD
//! live previews.

mod common;

use std::path::{Path, PathBuf};

use common::Setup;
use easel::imaging::diffusion::npy;
use easel::imaging::diffusion::prompt::{LongPrompts, PromptOptions};
use easel::imaging::diffusion::text;
use easel::imaging::registry::ModelEntry;
use easel::imaging::request::{self, ImageParams, SizeChoice, SizePolicy};
use easel::imaging::runtime::Runtime;
use easel::imaging::{run_job, EngineEvent};
use serde_json::{json, Value};

fn runtime() -> Runtime {
    Runtime::load(&common::image_settings()).expect("ONNX Runtime loads")
}

fn model(name: &str) -> ModelEntry {
    let entry = ModelEntry::open(&common::test_models_dir().join(name));
    assert!(entry.problem.is_none(), "{name}: {:?}", entry.problem);
    entry
}

/// The tiny model's pixels for a prompt read with `options`.
fn paint(entry: &ModelEntry, runtime: &Runtime, prompt: &str, options: PromptOptions) -> Vec<u8> {
    let params = ImageParams {
        prompt: prompt.into(),
        negative_prompt: "blurry".into(),
        size: SizeChoice::Exact(64, 64),
        steps: Some(3),
        guidance: Some(5.0),
        seed: Some(77),
        long_prompts: Some(options.long_prompts),
        prompt_weighting: Some(options.weighting),
        ..ImageParams::default()
    };
    let request = request::resolve(params, entry, SizePolicy::AnyMultipleOf8).unwrap();
    let (images, _) =
        run_job(entry, runtime, &request, &mut |_| {}, &|| false, None, true).expect("generation");
    images[0].pixels.to_rgb8().into_raw()
}

const CHUNK: PromptOptions = PromptOptions {
    long_prompts: LongPrompts::Chunk,
    weighting: true,
};
const TRUNCATE: PromptOptions = PromptOptions {
    long_prompts: LongPrompts::Truncate,
    weighting: true,
};
const LITERAL: PromptOptions = PromptOptions {
    long_prompts: LongPrompts::Chunk,
    weighting: false,
};

#[test]
fn words_after_75_tokens_count_only_when_chunked() {
    let runtime = runtime();
    for name in ["tiny-sd", "tiny-sd2-v", "tiny-sdxl"] {
        let entry = model(name);
        // 76 identical tokens, then different endings: only a chunked encoder sees them.
        let head = "cat ".repeat(76);
        let (a, b) = (format!("{head}red fox"), format!("{head}blue whale"));
        assert_eq!(
            paint(&entry, &runtime, &a, TRUNCATE),
            paint(&entry, &runtime, &b, TRUNCATE),
            "{name}: truncating keeps only the first 75 tokens"
        );
        assert_ne!(
            paint(&entry, &runtime, &a, CHUNK),
            paint(&entry, &runtime, &b, CHUNK),
            "{name}: the second chunk reaches the picture"
        );
        // A prompt that fits one window is painted exactly as the plain pipeline paints it.
        assert_eq!(
            paint(&entry, &runtime, "a red fox in the snow", CHUNK),
            paint(
                &entry,
                &runtime,
                "a red fox in the snow",
                PromptOptions::PLAIN
            ),
            "{name}: short prompts take diffusers' own path"
        );
    }
}

#[test]
fn a_unet_that_takes_exactly_77_tokens_gets_long_prompts_truncated() {
    // tiny-lcm's UNet declares encoder_hidden_states [batch, 77, width], as static exports do.
    let runtime = runtime();
    let entry = model("tiny-lcm");
    let head = "cat ".repeat(76);
    let (a, b) = (format!("{head}red fox"), format!("{head}blue whale"));
    assert_eq!(
        paint(&entry, &runtime, &a, CHUNK),
        paint(&entry, &runtime, &b, CHUNK)
    );
    assert_eq!(
        paint(&entry, &runtime, &a, CHUNK),
        paint(&entry, &runtime, &a, TRUNCATE)
    );
}

#[test]
fn weights_are_read_with_weighting_on_and_literal_with_it_off() {
    let runtime = runtime();
    for name in ["tiny-sd", "tiny-sd2-v", "tiny-sdxl"] {
        let entry = model(name);
        let plain = paint(&entry, &runtime, "a red fox", CHUNK);
        // A weight of 1 is no weight: the same tokens, the same picture.
        assert_eq!(
            paint(&entry, &runtime, "a (red:1.0) fox", CHUNK),
            plain,
            "{name}"
        );
        assert_ne!(
            paint(&entry, &runtime, "a (red:1.5) fox", CHUNK),
            plain,
            "{name}: a weight changes the picture"
        );
        assert_ne!(
            paint(&entry, &runtime, "a (red:1.5) fox", CHUNK),
            paint(&entry, &runtime, "a [red] fox", CHUNK),
            "{name}: stressing and softening differ"
        );
        // Off: the brackets are text, so "(red:1.0)" is not "red".
        assert_ne!(
            paint(&entry, &runtime, "a (red:1.0) fox", LITERAL),
            plain,
            "{name}: brackets are literal with weighting off"
        );
        // Escaped brackets are literal text with weighting on, as A1111 reads them.
        assert_eq!(
            paint(&entry, &runtime, "a \\(red\\) fox", CHUNK),
            paint(&entry, &runtime, "a (red) fox", LITERAL),
            "{name}: escaped brackets"
        );
    }
}

fn fixtures_dir() -> PathBuf {
    common::manifest_dir().join("tests/assets/fixtures/prompts")
}

/// Every case of `cases.json` (made by diffusers' lpw code): Easel's text conditioning equals
/// the reference's, row for row. Where Easel deliberately differs, the test says how:
/// - a prompt that fits one window without weights takes diffusers' plain path (SD 2 then keeps
///   its padding after EOS, lpw moves it before): the BOS and prompt rows are compared, which
///   CLIP's causal attention makes independent of the padding;
/// - SDXL: lpw feeds the last window unpadded; Easel pads it to 77, so lpw's rows of each
///   window are compared with the first rows of Easel's;
/// - SDXL prompts over 225 tokens: lpw's SDXL code has no limit, Easel keeps 3 windows as
///   lpw's SD pipelines do: the first 3 windows are compared;
/// - SDXL `BREAK`: lpw's SDXL parser turns it into the token "break" weighted −1 (its SD parser
///   and Easel read it as text), and its empty prompt raises: both skipped.
#[test]
fn long_and_weighted_prompts_match_the_long_prompt_weighting_pipelines() {
    let runtime = runtime();
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join("cases.json")).unwrap())
            .unwrap();
    let window = 77;
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let name = case["model"].as_str().unwrap();
        let id = format!("{name}/{}", case["name"].as_str().unwrap());
        let sdxl = name == "tiny-sdxl";
        if case.get("error").is_some() || (sdxl && case["name"] == "break") {
            continue;
        }
        let entry = model(name);
        let loaded = entry.load(&runtime).unwrap();
        let options = PromptOptions {
            long_prompts: LongPrompts::Chunk,
            weighting: case["options"]["weighting"].as_bool().unwrap(),
        };
        let prompt = case["prompt"].as_str().unwrap();
        let negative = case["negative"].as_str();
        let (cond, uncond) = text::encode(
            &loaded,
            prompt,
            negative.map(|text| text::Negative {
                text,
                zero_if_empty: false,
            }),
            options,
            &mut |m, feeds, wanted| m.run(feeds, wanted, None),
        )
        .unwrap();
        let mut pairs = vec![(&cond, "embedding", "pooled", "chunks")];
        if let Some(u) = &uncond {
            pairs.push((
                u,
                "negative_embedding",
                "negative_pooled",
                "negative_chunks",
            ));
        }
        for (ours, key, pooled_key, chunks_key) in pairs {
            let expected = read_npy(&fixtures_dir().join(case[key]["file"].as_str().unwrap()));
            let shape: Vec<usize> = case[key]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let (rows, width) = (shape[1], shape[2]);
            assert_eq!(ours.width, width, "{id}");
            let lpw_windows = case[chunks_key].as_array().unwrap();
            let plain = ours.tokens == window
                && rows == window
                && lpw_windows.len() == 1
                && lpw_windows[0]["weights"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w.as_f64() == Some(1.0));
            // Row ranges to compare: (ours, lpw's).
            let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
            if sdxl {
                let mut lpw_row = 0;
                for (w, lpw) in lpw_windows.iter().enumerate() {
                    let len = lpw["input_ids"].as_array().unwrap().len();
                    if (w + 1) * window > ours.tokens {
                        assert!(w >= 3, "{id}: only {} rows", ours.tokens);
                        break;
                    }
                    ranges.push((w * window, lpw_row, len));
                    lpw_row += len;
                }
            } else if plain {
                let content = case["tokens"].as_array().unwrap().len();
                ranges.push((0, 0, content + 1));
            } else {
                assert_eq!(ours.tokens, rows, "{id}: rows");
                ranges.push((0, 0, rows));
            }
            for (at, lpw_at, len) in ranges {
                let a = &ours.hidden[at * width..(at + len) * width];
                let b = &expected[lpw_at * width..(lpw_at + len) * width];
                let diff = common::max_abs_diff(a, b);
                assert!(
                    diff < 1e-4,
                    "{id} {key} rows {at}..{}: max |Δ| = {diff}",
                    at + len
                );
            }
            let capped = sdxl && lpw_windows.len() > 3;
            if let (Some(file), false) = (case[pooled_key]["file"].as_str(), capped) {
                let expected = read_npy(&fixtures_dir().join(file));
                let diff = common::max_abs_diff(&ours.pooled, &expected);
                assert!(diff < 1e-4, "{id} {pooled_key}: max |Δ| = {diff}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 55, "only {checked} fixture cases");
}

fn read_npy(path: &Path) -> Vec<f32> {
    npy::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .data
}

/// The first image's pixels (the PNG's text chunk holds the prompt, which differs by design).
fn pixels(answer: &Value) -> Vec<u8> {
    common::process::pixels(&common::process::b64_images(answer)[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_api_reads_brackets_literally_unless_asked() {
    let s = Setup::default().models().start().await;
    let paint = |extra: Value| {
        let mut body = json!({"model": "tiny-sd", "prompt": "a (red:1.0) fox", "size": "64x64", "seed": 5, "steps": 2});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let s = &s;
        async move {
            let (status, answer) = s.send("POST", "/v1/images/generations", body).await;
            assert_eq!(status, 200, "{answer}");
            pixels(&answer)
        }
    };
    let plain = {
        let (status, answer) = s
            .send(
                "POST",
                "/v1/images/generations",
                json!({"model": "tiny-sd", "prompt": "a red fox", "size": "64x64", "seed": 5, "steps": 2}),
            )
            .await;
        assert_eq!(status, 200);
        pixels(&answer)
    };
    // By default the parentheses are part of the prompt (an OpenAI client means them so)…
    assert_ne!(paint(json!({})).await, plain);
    // …and with `prompt_weighting` they are A1111 weights: (red:1.0) is "red".
    assert_eq!(paint(json!({"prompt_weighting": true})).await, plain);
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"model": "tiny-sd", "prompt": "a fox", "long_prompts": "sideways"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "long_prompts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_studio_says_how_many_tokens_are_read_and_cut() {
    let s = Setup::default().models().start().await;
    let long = "cat ".repeat(100);
    let (status, check) = s
        .send(
            "POST",
            "/api/studio/prompt",
            json!({"model": "tiny-sd", "prompt": long, "long_prompts": "truncate"}),
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["tokens"], 100);
    assert_eq!(check["limit"], 75);
    assert_eq!(check["dropped"], 25);
    let (_, check) = s
        .send(
            "POST",
            "/api/studio/prompt",
            json!({"model": "tiny-sd", "prompt": long, "negative_prompt": "cat ".repeat(400)}),
        )
        .await;
    assert_eq!(check["long_prompts"], "chunk");
    assert_eq!(
        (check["dropped"].as_u64(), check["limit"].as_u64()),
        (Some(0), Some(225))
    );
    assert_eq!(check["negative_dropped"], 175);
    let (_, check) = s
        .send(
            "POST",
            "/api/studio/prompt",
            json!({"model": "tiny-sd", "prompt": "a (red:1.3) fox"}),
        )
        .await;
    assert_eq!(check["weighted"], true);
    // Studio jobs take the same options.
    let (status, job) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"model": "tiny-sd", "prompt": "a fox", "size": "64x64", "steps": 1, "long_prompts": "truncate", "prompt_weighting": false}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let (status, body) = s
        .send(
            "POST",
            "/api/studio/prompt",
            json!({"model": "tiny-sd", "prompt": "a fox", "long_prompts": "all of it"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

/// A copy of tiny-sd with the tiny TAESD decoder as `taesd_decoder/`.
fn with_taesd(dir: &Path) -> PathBuf {
    let model = dir.join("tiny-sd");
    common::process::copy_dir(&common::test_models_dir().join("tiny-sd"), &model);
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-taesd/taesd_decoder"),
        &model.join("taesd_decoder"),
    );
    model
}

fn previews(entry: &ModelEntry, runtime: &Runtime, size: u32) -> Vec<image::RgbImage> {
    let params = ImageParams {
        prompt: "a lighthouse at dusk".into(),
        size: SizeChoice::Exact(size, size),
        steps: Some(3),
        seed: Some(3),
        preview: easel::imaging::diffusion::preview::PreviewRate::Faster,
        ..ImageParams::default()
    };
    let request = request::resolve(params, entry, SizePolicy::AnyMultipleOf8).unwrap();
    let mut out = Vec::new();
    run_job(
        entry,
        runtime,
        &request,
        &mut |e| {
            if let EngineEvent::Step { previews, .. } = e {
                out.extend(previews.into_iter().flatten());
            }
        },
        &|| false,
        None,
        false,
    )
    .unwrap();
    out
}

#[test]
fn previews_use_a_taesd_decoder_when_the_model_has_one() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let approximate = previews(&model("tiny-sd"), &runtime, 64);
    assert!(approximate.len() >= 2, "{}", approximate.len());
    // The approximation is at latent resolution (64 / 8).
    assert!(approximate.iter().all(|p| p.dimensions() == (8, 8)));

    let entry = ModelEntry::open(&with_taesd(dir.path()));
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
    let decoded = previews(&entry, &runtime, 64);
    assert_eq!(decoded.len(), approximate.len());
    // TAESD decodes to full resolution, and its pictures are not flat.
    for p in &decoded {
        assert_eq!(p.dimensions(), (64, 64));
        let values: std::collections::HashSet<u8> = p.as_raw().iter().copied().collect();
        assert!(values.len() > 8, "a flat preview");
    }

    // A configured path in easel.toml works the same, and a wrong one is a clear problem.
    let other = dir.path().join("configured");
    common::process::copy_dir(&common::test_models_dir().join("tiny-sd"), &other);
    std::fs::write(
        other.join("easel.toml"),
        format!(
            "preview_decoder = \"{}\"\n",
            common::test_models_dir()
                .join("tiny-taesd/taesd_decoder")
                .display()
                .to_string()
                .replace('\\', "/")
        ),
    )
    .unwrap();
    let entry = ModelEntry::open(&other);
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
    assert!(previews(&entry, &runtime, 64)
        .iter()
        .all(|p| p.dimensions() == (64, 64)));
    std::fs::write(other.join("easel.toml"), "preview_decoder = \"nowhere\"\n").unwrap();
    let broken = ModelEntry::open(&other);
    assert!(
        broken
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("preview_decoder")),
        "{:?}",
        broken.problem
    );
}
