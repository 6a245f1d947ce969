//! `cargo xtask bench --peers`: Easel against the engines people use, on a random-weight
//! pipeline with Stable Diffusion 1.5's real architecture and sizes (UNet 860M parameters,
//! 512x512): diffusers' PyTorch pipeline, ONNX Runtime under other settings, int8 UNets, and
//! stable-diffusion.cpp when `stable-diffusion-cpp-python` is installed; then Easel itself, fp32
//! and with the int8 UNet `easel models quantize` makes. Same weights, same
//! latents, same threads (2 unless `EASEL_ORT_THREADS` says otherwise), in one run.
//!
//! A benchmark, not a test: it needs a Python with torch, diffusers, transformers, onnx and
//! onnxruntime (`EASEL_BENCH_PYTHON`, default `python3`), about 8 GB of disk for the model
//! (`target/bench/sd15-random`, made once by `server/tests/assets/make_real_size_sd15.py`) and
//! 10 GB of memory, and takes tens of minutes on a small machine.

use std::path::Path;
use std::process::Command;

use crate::{cargo, exec, setup, Result};

const PROMPT: &str = "a photograph of an astronaut riding a horse";

pub fn run(root: &Path) -> Result {
    let python = std::env::var("EASEL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let threads = std::env::var("EASEL_ORT_THREADS").unwrap_or_else(|_| "2".into());
    let ort = setup::onnxruntime(root)?;
    let bench = root.join("target/bench");
    let model = bench.join("sd15-random");
    let work = bench.join("sd15-work");
    if !model.join("model_index.json").is_file() {
        exec(
            Command::new(&python)
                .current_dir(root)
                .arg("server/tests/assets/make_real_size_sd15.py")
                .arg(&model),
        )?;
    }
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "server"]),
    )?;
    // The peers first: they also write the shared starting latents (WORK/latents-1.npy).
    let peers_json = bench.join("peers.json");
    exec(
        Command::new(&python)
            .current_dir(root)
            .arg("server/tests/assets/bench_peers.py")
            .arg(&model)
            .arg("--work")
            .arg(&work)
            .args(["--cases", "cache,ort,int8,diffusers,sdcpp", "--threads"])
            .arg(&threads)
            .arg("--json")
            .arg(&peers_json),
    )?;
    let easel = root
        .join("target/release")
        .join(format!("easel{}", std::env::consts::EXE_SUFFIX));
    let run_easel = |args: &[&std::ffi::OsStr]| -> Result<serde_json::Value> {
        crate::bench::json_line(
            Command::new(&easel)
                .current_dir(root)
                .args(args)
                .env("ORT_DYLIB_PATH", &ort)
                .env("EASEL_ORT_THREADS", &threads)
                .env("EASEL_MODELS_DIR", &bench)
                .env("EASEL_GRAPH_CACHE", bench.join("graph-cache")),
        )
    };
    let generate = |model: &Path, out: &str| {
        let latents = work.join("latents-1.npy");
        let out = bench.join(out);
        let mut args: Vec<&std::ffi::OsStr> = ["generate", "--model"].map(AsRef::as_ref).to_vec();
        args.push(model.as_os_str());
        args.extend(
            [
                "--prompt",
                PROMPT,
                "--negative",
                "",
                "--size",
                "512x512",
                "--steps",
                "4",
                "--sampler",
                "euler",
                "--schedule",
                "discrete",
                "--guidance",
                "7.5",
                "-n",
                "1",
                "--latents",
            ]
            .map(AsRef::<std::ffi::OsStr>::as_ref),
        );
        args.push(latents.as_os_str());
        args.extend(["--repeat", "3", "--json", "--out"].map(AsRef::<std::ffi::OsStr>::as_ref));
        args.push(out.as_os_str());
        run_easel(&args)
    };
    let easel_fp32 = generate(&model, "peers-out")?;
    // The opt-in int8 UNet: quantised by Easel itself, which also paints one picture with each
    // UNet from the same seed and reports the PSNR between them.
    let quantized = run_easel(&["models", "quantize", "sd15-random", "--json"].map(AsRef::as_ref))?;
    let easel_int8 = generate(&bench.join("sd15-random-int8"), "peers-out-int8")?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&peers_json)
            .map_err(|e| format!("{}: {e}", peers_json.display()))?,
    )
    .map_err(|e| format!("{}: {e}", peers_json.display()))?;

    let step =
        |run: &serde_json::Value| run["mean"]["denoise_ms"].as_f64().unwrap_or(f64::NAN) / 4.0;
    let total = |run: &serde_json::Value| run["mean"]["total_ms"].as_f64().unwrap_or(f64::NAN);
    let diffusers = rows.iter().find(|r| {
        r["case"]
            .as_str()
            .is_some_and(|c| c.starts_with("diffusers"))
    });
    let reference_step = diffusers
        .and_then(|r| r["step_ms"].as_f64())
        .unwrap_or(f64::NAN);
    let reference_total = diffusers
        .and_then(|r| r["e2e_ms"].as_f64())
        .unwrap_or(f64::NAN);
    println!("\nSD 1.5 architecture, random weights, 512x512, 4 euler steps, CFG 7.5, 1 image, {threads} threads");
    println!("| case | ms per UNet step | step / diffusers | end to end ms | e2e / diffusers |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |case: &str, step: f64, total: f64| {
        let fmt = |v: f64| {
            if v.is_finite() {
                format!("{v:.0}")
            } else {
                "-".into()
            }
        };
        let ratio = |a: f64, b: f64| {
            if (a / b).is_finite() {
                format!("{:.2}", a / b)
            } else {
                "-".into()
            }
        };
        println!(
            "| {case} | {} | {} | {} | {} |",
            fmt(step),
            ratio(step, reference_step),
            fmt(total),
            ratio(total, reference_total)
        );
    };
    row(
        "**Easel** (`easel generate`)",
        step(&easel_fp32),
        total(&easel_fp32),
    );
    let psnr = quantized["comparison"]["psnr_db"]
        .as_f64()
        .map_or("-".into(), |db| format!("{db:.1} dB"));
    row(
        &format!("**Easel int8** (`easel models quantize`; picture PSNR vs fp32 {psnr})"),
        step(&easel_int8),
        total(&easel_int8),
    );
    for r in &rows {
        row(
            r["case"].as_str().unwrap_or("?"),
            r["step_ms"].as_f64().unwrap_or(f64::NAN),
            r["e2e_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
