//! The opt-in int8 UNet: `easel models quantize` writes `unet_int8/`, where every fp32 weight
//! of a MatMul or Conv became uint8 behind integer kernels; the model is offered beside the
//! fp32 one as `<id>-int8` (never the default), paints pictures close to fp32's but not equal,
//! and the command reports step times and PSNR side by side. The rewrite keeps every other
//! field of the file, reads weights inline or external, and refuses what it cannot quantise.
//! A running server offers the int8 model (and any model copied in) without a restart,
//! withdraws a removed one, and applies presets edited by hand.

mod common;

use std::collections::HashMap;
use std::path::Path;

use easel::imaging::int8::{self, wire::Message};
use easel::imaging::registry::ModelEntry;
use easel::imaging::request::{self, ImageParams, SizeChoice, SizePolicy};
use easel::imaging::runtime::Runtime;
use easel::imaging::{run_job, ImageEngine};
use serde_json::Value;

/// The op types of a graph's nodes, and how many MatMul/Conv nodes read a weight initializer.
fn ops(file: &Path) -> (HashMap<String, usize>, usize) {
    let bytes = std::fs::read(file).unwrap();
    let model = Message::parse(&bytes).unwrap();
    let graph = Message::parse(model.bytes(7).last().unwrap()).unwrap();
    let initializers: Vec<String> = graph
        .bytes(5)
        .map(|t| Message::parse(t).unwrap().str(8).to_string())
        .collect();
    let mut counts = HashMap::new();
    let mut weighted = 0;
    for node in graph.bytes(1) {
        let node = Message::parse(node).unwrap();
        let op = node.str(4).to_string();
        let inputs = node.strings(1);
        if matches!(op.as_str(), "MatMul" | "Conv")
            && inputs
                .get(1)
                .is_some_and(|w| initializers.iter().any(|i| i == w))
        {
            weighted += 1;
        }
        *counts.entry(op).or_insert(0) += 1;
    }
    (counts, weighted)
}

fn paint(entry: &ModelEntry, runtime: &Runtime) -> Vec<f32> {
    let params = ImageParams {
        prompt: "a red fox in the snow".into(),
        size: SizeChoice::Exact(64, 64),
        steps: Some(4),
        guidance: Some(6.0),
        seed: Some(5),
        ..ImageParams::default()
    };
    let request = request::resolve(params, entry, SizePolicy::AnyMultipleOf8).unwrap();
    let (images, _) = run_job(entry, runtime, &request, &mut |_| {}, &|| false, None, true)
        .unwrap_or_else(|e| panic!("{}: {e}", entry.id));
    images[0].pixels.data.clone()
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

#[test]
fn models_quantize_offers_an_int8_model_that_paints_close_to_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    for name in ["tiny-sd", "tiny-sd2-v"] {
        common::process::copy_dir(&common::test_models_dir().join(name), &models.join(name));
    }
    let unet = models.join("tiny-sd/unet/model.onnx");
    let original = std::fs::read(&unet).unwrap();
    let run = |args: &[&str]| {
        common::process::cli(&models, dir.path())
            .args(args)
            .env("EASEL_GRAPH_CACHE", "off")
            .output()
            .expect("easel runs")
    };
    let out = run(&["models", "quantize", "tiny-sd", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(text.trim()).expect(&text);
    assert_eq!(report["model"], "tiny-sd-int8");

    // Every fp32 MatMul/Conv weight went; integer kernels came.
    let (before, weighted) = ops(&unet);
    let (after, left) = ops(&models.join("tiny-sd/unet_int8/model.onnx"));
    assert_eq!(left, 0, "no fp32 weight is left: {after:?}");
    let matmuls = report["matmuls"].as_u64().unwrap() as usize;
    let convs = report["convs"].as_u64().unwrap() as usize;
    assert!(matmuls >= 1 && convs >= 1, "{report}");
    assert_eq!(matmuls + convs, weighted, "{before:?}");
    assert_eq!(after.get("MatMulInteger").copied().unwrap_or(0), matmuls);
    assert_eq!(after.get("ConvInteger").copied().unwrap_or(0), convs);
    assert!(after.contains_key("DynamicQuantizeLinear"));
    assert_eq!(
        std::fs::read(&unet).unwrap(),
        original,
        "the fp32 UNet is untouched"
    );
    let bytes = (
        report["float_bytes"].as_u64().unwrap(),
        report["int8_bytes"].as_u64().unwrap(),
    );
    assert_eq!(bytes.0, bytes.1 * 4, "one byte per fp32 weight: {bytes:?}");

    // The comparison painted with both: close, not equal, and timed.
    let c = &report["comparison"];
    let db = c["psnr_db"].as_f64().expect("int8 differs from fp32");
    assert!(db > 25.0, "PSNR {db} dB: {c}");
    assert!(c["max_diff_255"].as_u64().unwrap() >= 1, "{c}");
    for side in ["fp32", "int8"] {
        assert!(c[side]["step_ms"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(c["step_ratio"].as_f64().unwrap() > 0.0);

    // The human form says the same in a table.
    let out = run(&["models", "quantize", "tiny-sd", "--steps", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "offered as model `tiny-sd-int8`",
        "ms per step",
        "int8 ",
        "PSNR",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(
        !models.join("tiny-sd").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no staging folder is left"
    );

    let listed = run(&["models", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("tiny-sd-int8"), "{listed}");
    assert!(
        !listed.contains("tiny-sd2-v-int8"),
        "only quantised models get one"
    );

    // The engine offers it beside the fp32 model, never as the default, and it paints.
    let settings = common::image_settings();
    let engine = ImageEngine::start(&models, &settings, None);
    let infos = engine.models();
    let info = infos
        .iter()
        .find(|m| m.id == "tiny-sd-int8")
        .expect("offered");
    assert!(info.name.ends_with("(int8)"), "{}", info.name);
    assert_eq!(engine.default_model().as_deref(), Some("tiny-sd"));
    let runtime = Runtime::load(&settings).unwrap();
    let fp32 = paint(&ModelEntry::open(&models.join("tiny-sd")), &runtime);
    let quantised = paint(
        &ModelEntry::open_int8(&models.join("tiny-sd")).unwrap(),
        &runtime,
    );
    assert_ne!(fp32, quantised, "the int8 entry paints with the int8 UNet");
    assert!(psnr(&fp32, &quantised) > 25.0);

    // The two entries load the folder's encoders and decoders once, also when the int8 one
    // appears while the fp32 one is loaded (a scan after `models quantize`).
    let runtime = engine.runtime().unwrap();
    let loaded =
        |engine: &ImageEngine, id: &str| engine.model(Some(id)).unwrap().load(&runtime).unwrap();
    let (a, b) = (loaded(&engine, "tiny-sd"), loaded(&engine, "tiny-sd-int8"));
    assert!(a.shares_parts_with(&b));
    let later = dir.path().join("later");
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-sd"),
        &later.join("tiny-sd"),
    );
    let engine = ImageEngine::start(&later, &settings, None);
    let a = loaded(&engine, "tiny-sd");
    common::process::copy_dir(
        &models.join("tiny-sd/unet_int8"),
        &later.join("tiny-sd/unet_int8"),
    );
    engine.rescan();
    let kept = loaded(&engine, "tiny-sd");
    assert!(
        std::sync::Arc::ptr_eq(&a, &kept),
        "the fp32 entry kept its sessions"
    );
    assert!(a.shares_parts_with(&loaded(&engine, "tiny-sd-int8")));

    // Unusable inputs are refused with a reason, and nothing is half written.
    let out = run(&["models", "quantize", "nowhere"]);
    assert!(!out.status.success());
    let out = run(&["models", "quantize", "../tiny-sd"]);
    assert!(!out.status.success());
    let out = run(&["models", "quantize", "tiny-sd", "--steps", "0"]);
    assert!(!out.status.success());
    std::fs::write(models.join("tiny-sd2-v/unet/model.onnx"), b"\x0a\xff").unwrap();
    let out = run(&["models", "quantize", "tiny-sd2-v"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("could not be quantised"), "{err}");
    assert!(!models.join("tiny-sd2-v/unet_int8").exists());
}

#[test]
fn the_rewrite_keeps_the_rest_of_the_file_and_reads_every_export() {
    let dir = tempfile::tempdir().unwrap();
    let settings = common::image_settings();
    let runtime = Runtime::load(&settings).unwrap();
    // tiny-sd keeps its weights in external data, the others inline; tiny-lcm has a static
    // token count and a guidance embedding (two MatMul weights).
    for name in ["tiny-sd", "tiny-sd2-v", "tiny-lcm"] {
        let model = dir.path().join(name);
        common::process::copy_dir(&common::test_models_dir().join(name), &model);
        let summary = int8::quantize_model(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(summary.matmuls + summary.convs > 0, "{name}");

        // Every field of the model but the graph is kept, plus one note; the graph's inputs,
        // outputs and value infos too.
        let read = |p: &Path| std::fs::read(p).unwrap();
        let (a, b) = (
            read(&model.join("unet/model.onnx")),
            read(&model.join("unet_int8/model.onnx")),
        );
        let (a, b) = (Message::parse(&a).unwrap(), Message::parse(&b).unwrap());
        fn rest(m: &Message<'_>) -> Vec<Vec<u8>> {
            m.fields
                .iter()
                .filter(|f| f.number != 7)
                .map(|f| {
                    Message {
                        fields: vec![f.clone()],
                    }
                    .to_bytes()
                })
                .collect()
        }
        let (ra, rb) = (rest(&a), rest(&b));
        assert_eq!(&rb[..ra.len()], &ra[..], "{name}");
        assert_eq!(rb.len(), ra.len() + 1, "{name}: one metadata entry added");
        let graph = |m: &Message<'_>| {
            Message::parse(m.bytes(7).last().unwrap())
                .unwrap()
                .to_bytes()
        };
        let (ga, gb) = (graph(&a), graph(&b));
        let (ga, gb) = (Message::parse(&ga).unwrap(), Message::parse(&gb).unwrap());
        for field in [11, 12, 13] {
            assert_eq!(
                ga.bytes(field).collect::<Vec<_>>(),
                gb.bytes(field).collect::<Vec<_>>(),
                "{name}: graph field {field}"
            );
        }

        // It paints, close to fp32 but not equal.
        let fp32 = paint(&ModelEntry::open(&model), &runtime);
        let quantised = paint(&ModelEntry::open_int8(&model).unwrap(), &runtime);
        assert_ne!(fp32, quantised, "{name}");
        let db = psnr(&fp32, &quantised);
        assert!(db > 25.0, "{name}: PSNR {db} dB");
    }

    // The wire format reads and writes every tiny model's files back byte for byte.
    for name in ["tiny-sd", "tiny-sdxl", "tiny-lcm", "tiny-sd2-v"] {
        for part in ["unet", "text_encoder", "vae_decoder"] {
            let file = common::test_models_dir()
                .join(name)
                .join(part)
                .join("model.onnx");
            let bytes = std::fs::read(&file).unwrap();
            let back = Message::parse(&bytes).unwrap().to_bytes();
            assert!(back == bytes, "{}", file.display());
        }
    }

    // An export without fp32 weights (tiny-sdxl's UNet is fp16) is refused with the reason,
    // and leaves no folder behind.
    let sdxl = dir.path().join("tiny-sdxl");
    common::process::copy_dir(&common::test_models_dir().join("tiny-sdxl"), &sdxl);
    let err = int8::quantize_model(&sdxl).expect_err("fp16 weights are not quantised");
    assert!(err.to_string().contains("fp32"), "{err}");
    assert!(!sdxl.join("unet_int8").exists());
    assert!(ModelEntry::open_int8(&sdxl).is_none());
    let fp16 = dir.path().join("fp16");
    std::fs::create_dir_all(&fp16).unwrap();
    // A damaged file is an error, not a panic.
    let broken = dir.path().join("broken.onnx");
    for bytes in [
        &b""[..],
        b"\x0a\x05ab",
        b"\x3a\x02\x0a\xff",
        b"garbage that is not protobuf",
    ] {
        std::fs::write(&broken, bytes).unwrap();
        assert!(int8::quantize_file(&broken, &fp16).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_offers_models_as_the_folder_changes() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-sd"),
        &models.join("tiny-sd"),
    );
    let database = common::TestDatabase::new(dir.path(), "easel");
    let easel = common::process::Easel::serve(&database.url, &models, None, &[]).await;
    assert_eq!(easel.wait_for_image_models(&["tiny-sd"]).await, "tiny-sd");

    // Quantised beside the running server: offered, not the default.
    let out = common::process::cli(&models, dir.path())
        .args(["models", "quantize", "tiny-sd", "--no-compare"])
        .env("EASEL_GRAPH_CACHE", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let default = easel
        .wait_for_image_models(&["tiny-sd", "tiny-sd-int8"])
        .await;
    assert_eq!(default, "tiny-sd");
    let http = common::process::client();
    let painted = common::process::post(
        &http,
        easel.url("/v1/images/generations"),
        serde_json::json!({"prompt": "a lighthouse", "model": "tiny-sd-int8", "size": "64x64"}),
    )
    .await;
    assert_eq!(common::process::b64_images(&painted).len(), 1, "{painted}");

    // A model copied in (the way people add one by hand) is offered; removed, it goes.
    common::process::copy_dir(
        &common::test_models_dir().join("tiny-lcm"),
        &models.join("tiny-lcm"),
    );
    easel
        .wait_for_image_models(&["tiny-lcm", "tiny-sd", "tiny-sd-int8"])
        .await;
    std::fs::remove_dir_all(models.join("tiny-lcm")).unwrap();
    easel
        .wait_for_image_models(&["tiny-sd", "tiny-sd-int8"])
        .await;

    // A model's presets edited by hand apply without a restart, to both of its entries.
    std::fs::write(
        models.join("tiny-sd/easel.toml"),
        "default_size = \"128x128\"\nallowed_sizes = [\"64x64\", \"128x128\"]\n",
    )
    .unwrap();
    easel
        .wait_for_models_where(
            std::time::Duration::from_secs(60),
            "the edited default size on both entries",
            |listed| {
                let sizes: Vec<&str> = listed["image"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["default_size"].as_str().unwrap())
                    .collect();
                sizes == ["128x128", "128x128"]
            },
        )
        .await;
}
