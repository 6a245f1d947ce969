//! The image engine on real ONNX Runtime with the committed tiny models: pixels equal to the
//! reference pipeline (diffusers' schedulers around onnxruntime, fixtures made by
//! `tests/assets/make_reference_images.py`), reproducibility, batching, every model layout,
//! every sampler, edits, cancellation, and clear errors for broken folders. (The queue is the
//! jobs service's: `tests/jobs.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use easel::imaging::diffusion::npy;
use easel::imaging::diffusion::pipeline::EditInput;
use easel::imaging::diffusion::schedulers::{SamplerKind, Schedule};
use easel::imaging::presets::Family;
use easel::imaging::registry::ModelEntry;
use easel::imaging::request::{self, GenerationRequest, ImageParams, SizeChoice, SizePolicy};
use easel::imaging::runtime::Runtime;
use easel::imaging::{run_job, EngineError, EngineEvent, GeneratedImage, ImageEngine};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn runtime() -> Runtime {
    Runtime::load(&common::image_settings()).expect("ONNX Runtime loads")
}

fn model(name: &str) -> ModelEntry {
    let entry = ModelEntry::open(&common::test_models_dir().join(name));
    assert!(entry.problem.is_none(), "{name}: {:?}", entry.problem);
    entry
}

fn params(
    prompt: &str,
    size: (u32, u32),
    steps: i64,
    sampler: &str,
    schedule: &str,
) -> ImageParams {
    ImageParams {
        prompt: prompt.into(),
        size: SizeChoice::Exact(size.0, size.1),
        steps: Some(steps),
        sampler: Some(sampler.into()),
        schedule: Some(schedule.into()),
        seed: Some(1234),
        ..ImageParams::default()
    }
}

fn generate(
    entry: &ModelEntry,
    runtime: &Runtime,
    request: &GenerationRequest,
) -> Vec<GeneratedImage> {
    run_job(entry, runtime, request, &mut |_| {}, &|| false, None, true)
        .expect("generation")
        .0
}

/// An edit's engine input the way a job builds it: the source and the mask resized to the
/// edit's size, a mask that changes nothing meaning the whole picture.
fn edit_input(
    source: &image::RgbImage,
    mask: Option<&[u8]>,
    strength: f32,
    (w, h): (u32, u32),
) -> EditInput {
    use easel::imaging::{edit, encode};
    let mask = mask.and_then(|bytes| {
        let rgba = edit::resize_rgba(&encode::decode_rgba(bytes).unwrap(), w, h);
        let values = edit::mask_values(&rgba);
        values.iter().any(|v| *v > 0.01).then_some(values)
    });
    EditInput {
        image: edit::source_pixels(&edit::resize_rgb(source, w, h)),
        mask,
        strength,
    }
}

#[test]
fn deterministic_samplers_match_the_reference_pipeline_within_1e_3() {
    let root = common::manifest_dir().join("tests/assets/fixtures/reference");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    let runtime = runtime();
    let mut report = Vec::new();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "the fixture covers the samplers");
    for case in cases {
        let entry = model(case["model"].as_str().unwrap());
        let latents = npy::read(&root.join(case["latents"].as_str().unwrap())).unwrap();
        let expected = npy::read(&root.join(case["expected"].as_str().unwrap())).unwrap();
        let n = case["n"].as_i64().unwrap();
        let mut p = params(
            case["prompt"].as_str().unwrap(),
            (
                case["width"].as_u64().unwrap() as u32,
                case["height"].as_u64().unwrap() as u32,
            ),
            case["steps"].as_i64().unwrap(),
            case["sampler"].as_str().unwrap(),
            case["schedule"].as_str().unwrap(),
        );
        p.negative_prompt = case["negative"].as_str().unwrap().into();
        p.guidance = Some(case["guidance"].as_f64().unwrap() as f32);
        p.n = Some(n);
        p.latents = Some(latents.data);
        let mut edit = None;
        // Edit cases (img2img, inpainting) name a source image, a mask and a strength.
        if let Some(source) = case.get("image").and_then(Value::as_str) {
            let source = image::open(root.join(source)).unwrap().to_rgb8();
            let mask = case
                .get("mask")
                .and_then(Value::as_str)
                .map(|m| std::fs::read(root.join(m)).unwrap());
            let size = (
                case["width"].as_u64().unwrap() as u32,
                case["height"].as_u64().unwrap() as u32,
            );
            let strength = case["strength"].as_f64().unwrap() as f32;
            p.strength = Some(strength);
            edit = Some(edit_input(&source, mask.as_deref(), strength, size));
        }
        let mut request = request::resolve(p, &entry, SizePolicy::AnyMultipleOf8).unwrap();
        request.edit = edit;
        let images = generate(&entry, &runtime, &request);
        let ours: Vec<f32> = images
            .iter()
            .flat_map(|i| i.pixels.data.iter().copied())
            .collect();
        let diff = common::max_abs_diff(&ours, &expected.data);
        report.push(format!("{}: {diff:.2e}", case["name"].as_str().unwrap()));
        assert!(
            diff <= 1e-3,
            "{} differs by {diff} from the reference",
            case["name"]
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn same_request_and_seed_give_identical_bytes() {
    let runtime = runtime();
    let entry = model("tiny-sd");
    let request = request::resolve(
        params("a lighthouse", (64, 64), 4, "euler_a", "karras"),
        &entry,
        SizePolicy::AllowedOnly,
    )
    .unwrap();
    let png = |images: Vec<GeneratedImage>| {
        images
            .iter()
            .map(|i| easel::imaging::encode::png(&i.rgb(), None).unwrap())
            .collect::<Vec<_>>()
    };
    let first = png(generate(&entry, &runtime, &request));
    let second = png(generate(&entry, &runtime, &request));
    assert_eq!(first, second);
    let other = GenerationRequest {
        seed: 99,
        ..request
    };
    assert_ne!(first, png(generate(&entry, &runtime, &other)));
}

#[test]
fn a_batch_equals_its_images_made_one_by_one() {
    let runtime = runtime();
    let entry = model("tiny-sd");
    let mut p = params("three cats", (64, 64), 4, "dpm++2m", "karras");
    p.n = Some(3);
    let batch = request::resolve(p, &entry, SizePolicy::AllowedOnly).unwrap();
    let together = generate(&entry, &runtime, &batch);
    assert_eq!(together.len(), 3);
    for (i, image) in together.iter().enumerate() {
        assert_eq!(image.seed, 1234 + i as u64);
        let alone = GenerationRequest {
            n: 1,
            seed: image.seed,
            ..batch.clone()
        };
        let single = generate(&entry, &runtime, &alone);
        let diff = common::max_abs_diff(&single[0].pixels.data, &image.pixels.data);
        assert!(diff < 1e-5, "image {i} differs by {diff} when made alone");
    }
}

#[test]
fn every_model_layout_generates_finite_images() {
    // tiny-sd2-v: int64 ids and timestep [batch], v-prediction; tiny-lcm: timestep_cond, no
    // CFG; tiny-sdxl: two text encoders, text_embeds/time_ids, fp16 UNet and VAE.
    let runtime = runtime();
    for (name, sampler) in [
        ("tiny-sd", "euler"),
        ("tiny-sd2-v", "dpm++2m"),
        ("tiny-lcm", "lcm"),
        ("tiny-sdxl", "euler"),
    ] {
        let entry = model(name);
        for size in [(64, 64), (128, 64)] {
            let mut p = params("a house by a lake", size, 3, sampler, "discrete");
            p.n = Some(2);
            let request = request::resolve(p, &entry, SizePolicy::AnyMultipleOf8).unwrap();
            let images = generate(&entry, &runtime, &request);
            assert_eq!(images.len(), 2, "{name}");
            for image in &images {
                assert_eq!((image.pixels.width, image.pixels.height), size);
                assert!(
                    image
                        .pixels
                        .data
                        .iter()
                        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                    "{name}"
                );
                let spread = image
                    .pixels
                    .data
                    .iter()
                    .fold((1.0f32, 0.0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
                assert!(
                    spread.1 - spread.0 > 0.05,
                    "{name} {size:?}: the image has content"
                );
            }
            assert_ne!(
                images[0].pixels.data, images[1].pixels.data,
                "{name}: per-image seeds differ"
            );
        }
    }
}

/// SDXL's `force_zeros_for_empty_prompt` (model_index.json): on (diffusers' default), an
/// empty negative prompt is zeros, and blank is the same as empty; off, "" is encoded like
/// any prompt, which paints differently.
#[test]
fn sdxl_reads_force_zeros_for_empty_prompt() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let off = copy_model("tiny-sdxl", dir.path());
    let index = off.join("model_index.json");
    let text = std::fs::read_to_string(&index).unwrap().replace(
        "\"force_zeros_for_empty_prompt\": true",
        "\"force_zeros_for_empty_prompt\": false",
    );
    std::fs::write(&index, text).unwrap();
    let (on, off) = (model("tiny-sdxl"), ModelEntry::open(&off));
    assert!(on.zero_empty_negative && !off.zero_empty_negative);
    let paint = |entry: &ModelEntry, negative: &str| {
        let mut p = params("a house by a lake", (64, 64), 3, "euler", "discrete");
        p.negative_prompt = negative.into();
        let request = request::resolve(p, entry, SizePolicy::AnyMultipleOf8).unwrap();
        generate(entry, &runtime, &request).remove(0).pixels.data
    };
    let zeroed = paint(&on, "");
    assert_eq!(zeroed, paint(&on, "   "));
    assert!(common::max_abs_diff(&zeroed, &paint(&off, "")) > 1e-4);
    // A negative prompt that says something is encoded either way.
    assert_eq!(paint(&on, "blurry"), paint(&off, "blurry"));
}

/// An fp16 VAE that overflows (forced here with a tiny scaling factor, so the latents it gets
/// exceed fp16's range): without an fp32 decoder the error says what to get; with one in
/// `vae_decoder_fp32/`, the image is decoded again in fp32 and comes out finite.
#[test]
fn an_overflowing_fp16_vae_is_decoded_again_in_fp32() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let folder = copy_model("tiny-sdxl", dir.path());
    let config = folder.join("vae_decoder/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["scaling_factor"] = serde_json::json!(1e-9);
    std::fs::write(&config, json.to_string()).unwrap();
    let paint = |entry: &ModelEntry| {
        let p = params("a house by a lake", (64, 64), 2, "euler", "discrete");
        let request = request::resolve(p, entry, SizePolicy::AnyMultipleOf8).unwrap();
        run_job(
            entry,
            &runtime,
            &request,
            &mut |_| {},
            &|| false,
            None,
            true,
        )
    };
    let err = paint(&ModelEntry::open(&folder)).expect_err("fp16 overflows");
    let message = err.to_string();
    assert!(message.contains("vae_decoder_fp32"), "{message}");
    // An fp32 decoder (the tiny SD 1.5 one has the same latent and image shapes).
    copy_dir(
        &common::test_models_dir().join("tiny-sd/vae_decoder"),
        &folder.join("vae_decoder_fp32"),
    );
    let images = paint(&ModelEntry::open(&folder))
        .expect("decoded again in fp32")
        .0;
    assert!(images[0].pixels.data.iter().all(|v| v.is_finite()));
}

/// Families come from the configs, not only the name: a `trailing` epsilon schedule is Turbo;
/// an LCM scheduler over a UNet without a guidance embedding (an LCM-LoRA merge) is LCM with
/// guidance off by default; a true LCM keeps its guidance embedding's default.
#[test]
fn families_are_detected_from_the_configs() {
    let dir = tempfile::tempdir().unwrap();
    let edit_scheduler = |folder: &Path, change: &dyn Fn(&mut serde_json::Value)| {
        let path = folder.join("scheduler/scheduler_config.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut json);
        std::fs::write(&path, json.to_string()).unwrap();
        // The family's own defaults, not the test model's presets.
        std::fs::remove_file(folder.join("easel.toml")).unwrap();
    };
    let turbo = copy_model("tiny-sd", &dir.path().join("a"));
    edit_scheduler(&turbo, &|j| {
        j["timestep_spacing"] = serde_json::json!("trailing")
    });
    let entry = ModelEntry::open(&turbo);
    assert_eq!(entry.family.name(), Family::Turbo.name());
    assert_eq!(entry.presets.default_guidance, 0.0);

    let lora = copy_model("tiny-sd", &dir.path().join("b"));
    edit_scheduler(&lora, &|j| {
        j["_class_name"] = serde_json::json!("LCMScheduler")
    });
    let entry = ModelEntry::open(&lora);
    assert_eq!(entry.family.name(), Family::Lcm.name());
    assert_eq!(
        entry.presets.default_guidance, 1.0,
        "LCM-LoRA: no CFG by default"
    );

    let lcm = model("tiny-lcm");
    assert_eq!(lcm.family.name(), Family::Lcm.name());
    assert!(
        lcm.presets.default_guidance > 1.0,
        "a true LCM keeps its guidance"
    );
}

/// `guidance_rescale`: zero-SNR v-prediction models default to 0.7, others to 0; a rescale
/// changes the picture; out-of-range values name the field.
#[test]
fn guidance_rescale_defaults_to_zero_snr_models_and_changes_the_picture() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let plain = model("tiny-sd2-v");
    let zero_snr = copy_model("tiny-sd2-v", dir.path());
    let path = zero_snr.join("scheduler/scheduler_config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["rescale_betas_zero_snr"] = serde_json::json!(true);
    json["timestep_spacing"] = serde_json::json!("trailing");
    std::fs::write(&path, json.to_string()).unwrap();
    let zero_snr = ModelEntry::open(&zero_snr);
    let resolve = |entry: &ModelEntry, rescale: Option<f32>| {
        let mut p = params("a house by a lake", (64, 64), 3, "euler", "discrete");
        p.guidance_rescale = rescale;
        request::resolve(p, entry, SizePolicy::AnyMultipleOf8)
    };
    assert_eq!(resolve(&plain, None).unwrap().guidance_rescale, 0.0);
    assert_eq!(resolve(&zero_snr, None).unwrap().guidance_rescale, 0.7);
    let err = resolve(&plain, Some(1.5)).unwrap_err();
    assert_eq!(err.field, "guidance_rescale");
    let none = generate(&plain, &runtime, &resolve(&plain, Some(0.0)).unwrap());
    let rescaled = generate(&plain, &runtime, &resolve(&plain, Some(0.7)).unwrap());
    assert!(common::max_abs_diff(&none[0].pixels.data, &rescaled[0].pixels.data) > 1e-4);
}

#[test]
fn every_sampler_and_schedule_runs() {
    let runtime = runtime();
    let entry = model("tiny-sd");
    for sampler in SamplerKind::ALL {
        for schedule in [Schedule::Discrete, Schedule::Karras] {
            for steps in [1, 5] {
                let request = request::resolve(
                    params(
                        "a bowl of fruit",
                        (64, 64),
                        steps,
                        sampler.name(),
                        schedule.name(),
                    ),
                    &entry,
                    SizePolicy::AllowedOnly,
                )
                .unwrap();
                let images = generate(&entry, &runtime, &request);
                assert!(
                    images[0].pixels.data.iter().all(|v| v.is_finite()),
                    "{} {} {steps}",
                    sampler.name(),
                    schedule.name()
                );
            }
        }
    }
}

#[test]
fn img2img_and_masked_inpainting_keep_what_they_should() {
    let runtime = runtime();
    let entry = model("tiny-sd");
    let source: Vec<f32> = (0..3 * 64 * 64)
        .map(|i| ((i % 64) as f32 / 32.0) - 1.0)
        .collect();
    let edit = |mask: Option<Vec<f32>>, strength: f32| {
        let mut p = params("the same, brighter", (64, 64), 6, "euler", "discrete");
        p.strength = Some(strength);
        let mut request = request::resolve(p, &entry, SizePolicy::AnyMultipleOf8).unwrap();
        request.edit = Some(EditInput {
            image: source.clone(),
            mask,
            strength,
        });
        generate(&entry, &runtime, &request).remove(0).pixels.data
    };
    // Nothing masked: the result is the source through the VAE, whatever the prompt.
    let kept = edit(Some(vec![0.0; 64 * 64]), 0.8);
    // The left half masked: the right half (away from the seam) is kept exactly.
    let left: Vec<f32> = (0..64 * 64)
        .map(|i| if i % 64 < 32 { 1.0 } else { 0.0 })
        .collect();
    let half = edit(Some(left), 0.8);
    let right_cols = |img: &[f32]| -> Vec<f32> {
        (0..3 * 64 * 64)
            .filter(|i| i % 64 >= 40)
            .map(|i| img[i])
            .collect()
    };
    assert!(common::max_abs_diff(&right_cols(&kept), &right_cols(&half)) < 1e-5);
    let left_cols = |img: &[f32]| -> Vec<f32> {
        (0..3 * 64 * 64)
            .filter(|i| i % 64 < 24)
            .map(|i| img[i])
            .collect()
    };
    assert!(
        common::max_abs_diff(&left_cols(&kept), &left_cols(&half)) > 1e-3,
        "the masked half changed"
    );
    // img2img: low strength stays closer to the source than high strength.
    let low = edit(None, 0.2);
    let high = edit(None, 1.0);
    let distance = |img: &[f32]| {
        img.iter()
            .zip(&kept)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
    };
    assert!(
        distance(&low) < distance(&high),
        "strength decides how much changes"
    );
}

#[test]
fn requests_are_checked_with_errors_naming_the_field() {
    let entry = model("tiny-sd");
    let check = |p: ImageParams, policy| request::resolve(p, &entry, policy).unwrap_err();
    let base = || params("x", (64, 64), 4, "euler", "discrete");
    assert_eq!(
        check(
            ImageParams {
                n: Some(11),
                ..base()
            },
            SizePolicy::AllowedOnly
        )
        .field,
        "n"
    );
    assert_eq!(
        check(
            ImageParams {
                prompt: String::new(),
                ..base()
            },
            SizePolicy::AllowedOnly
        )
        .field,
        "prompt"
    );
    let e = check(
        ImageParams {
            size: SizeChoice::Exact(256, 256),
            ..base()
        },
        SizePolicy::AllowedOnly,
    );
    assert!(
        e.message.contains("not allowed") && e.message.contains("64x64"),
        "{e}"
    );
    // The command line may ask any multiple of 8 up to the maximum, but not beyond.
    assert!(request::resolve(
        ImageParams {
            size: SizeChoice::Exact(200, 96),
            ..base()
        },
        &entry,
        SizePolicy::AnyMultipleOf8
    )
    .is_ok());
    assert_eq!(
        check(
            ImageParams {
                size: SizeChoice::Exact(100, 64),
                ..base()
            },
            SizePolicy::AnyMultipleOf8
        )
        .field,
        "size"
    );
    assert_eq!(
        check(
            ImageParams {
                size: SizeChoice::Exact(512, 512),
                ..base()
            },
            SizePolicy::AnyMultipleOf8
        )
        .field,
        "size"
    );
    assert_eq!(
        check(
            ImageParams {
                steps: Some(0),
                ..base()
            },
            SizePolicy::AllowedOnly
        )
        .field,
        "steps"
    );
    assert_eq!(
        check(
            ImageParams {
                sampler: Some("plms".into()),
                ..base()
            },
            SizePolicy::AllowedOnly
        )
        .field,
        "sampler"
    );
    // The sampler's own limits are checked up front too (LCM takes at most 50 steps here).
    let e = check(
        ImageParams {
            sampler: Some("lcm".into()),
            steps: Some(60),
            ..base()
        },
        SizePolicy::AllowedOnly,
    );
    assert_eq!(e.field, "steps");
    assert!(e.message.contains("lcm"), "{e}");
    assert_eq!(
        check(
            ImageParams {
                latents: Some(vec![0.0; 10]),
                ..base()
            },
            SizePolicy::AllowedOnly
        )
        .field,
        "latents"
    );
}

/// Copies a model folder so a test can break it.
fn copy_model(name: &str, to: &Path) -> PathBuf {
    let from = common::test_models_dir().join(name);
    let dest = to.join(format!("{name}-copy"));
    copy_dir(&from, &dest);
    dest
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn broken_model_folders_name_the_missing_file_or_input_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let missing = copy_model("tiny-sd", dir.path());
    std::fs::remove_file(missing.join("unet/model.onnx")).unwrap();
    let entry = ModelEntry::open(&missing);
    assert!(
        entry
            .problem
            .as_deref()
            .unwrap()
            .contains("unet/model.onnx"),
        "{:?}",
        entry.problem
    );

    // A text encoder that is really a VAE decoder: loading names the file and the input.
    let wrong = copy_model("tiny-sd2-v", dir.path());
    std::fs::copy(
        wrong.join("vae_decoder/model.onnx"),
        wrong.join("text_encoder/model.onnx"),
    )
    .unwrap();
    let entry = ModelEntry::open(&wrong);
    assert!(entry.problem.is_none());
    let error = entry.load(&runtime()).err().unwrap();
    assert!(
        error.contains("text_encoder") && error.contains("input_ids"),
        "{error}"
    );

    // The engine lists every folder, flags the broken ones, and still paints with the others.
    copy_dir(
        &common::test_models_dir().join("tiny-sd"),
        &dir.path().join("tiny-sd"),
    );
    let engine = ImageEngine::start(dir.path(), &common::image_settings(), Some("tiny-sd"));
    let models = engine.models();
    assert_eq!(models.len(), 3);
    assert!(models
        .iter()
        .any(|m| m.id == "tiny-sd-copy" && m.error.is_some()));
    assert!(engine.available());
    assert_eq!(engine.health().status, "ready");
}

fn engine() -> ImageEngine {
    ImageEngine::start(
        &common::test_models_dir(),
        &common::image_settings(),
        Some("tiny-sd"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_job_within_a_step() {
    let engine = engine();
    let entry = engine.model(Some("tiny-sd")).unwrap();
    let mut p = params("a long job", (256, 256), 150, "heun", "discrete");
    p.n = Some(4);
    let request = request::resolve(p, &entry, SizePolicy::AnyMultipleOf8).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let job = tokio::spawn({
        let engine = engine.clone();
        let cancel = cancel.clone();
        async move { engine.generate(request, tx, cancel).await }
    });
    let mut cancelled_at = None;
    // Events the engine had already sent when the cancel came (a busy machine reads them
    // late), and steps that arrived after it.
    let (mut queued_at_cancel, mut after) = (0, 0);
    while let Some(event) = rx.recv().await {
        if let EngineEvent::Step { step, .. } = event {
            if cancelled_at.is_some() {
                after += 1;
            } else if step == 3 {
                cancel.cancel();
                cancelled_at = Some(Instant::now());
                queued_at_cancel = rx.len();
            }
        }
    }
    let result = job.await.unwrap();
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert!(
        after <= queued_at_cancel + 1,
        "stopped within one step of the cancel ({after} steps after it, {queued_at_cancel} already sent)"
    );
    assert!(cancelled_at.unwrap().elapsed() < Duration::from_secs(5));
}
