//! `cargo xtask bench --peers`: Easel against the engines people use, on a random-weight
//! pipeline with Stable Diffusion 1.5's real architecture and sizes (UNet 860M parameters,
//! 512x512): diffusers' PyTorch pipeline, ONNX Runtime under other settings, int8 UNets, and
//! stable-diffusion.cpp when `stable-diffusion-cpp-python` is installed. Same weights, same
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
    let output = Command::new(&easel)
        .current_dir(root)
        .args(["generate", "--model"])
        .arg(&model)
        .args([
            "--prompt",
            PROMPT,
            "--negative",
            "",
            "--size",
            "512x512",
            "--steps",
            "4",
        ])
        .args([
            "--sampler",
            "euler",
            "--schedule",
            "discrete",
            "--guidance",
            "7.5",
            "-n",
            "1",
        ])
        .arg("--latents")
        .arg(work.join("latents-1.npy"))
        .args(["--repeat", "3", "--json", "--out"])
        .arg(bench.join("peers-out"))
        .env("ORT_DYLIB_PATH", &ort)
        .env("EASEL_ORT_THREADS", &threads)
        .env("EASEL_GRAPH_CACHE", bench.join("graph-cache"))
        .output()
        .map_err(|e| format!("cannot start {}: {e}", easel.display()))?;
    if !output.status.success() {
        return Err(format!(
            "easel generate failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("no JSON line from easel generate")?;
    let easel: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad JSON from easel: {e}"))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&peers_json)
            .map_err(|e| format!("{}: {e}", peers_json.display()))?,
    )
    .map_err(|e| format!("{}: {e}", peers_json.display()))?;

    let easel_step = easel["mean"]["denoise_ms"].as_f64().unwrap_or(f64::NAN) / 4.0;
    let easel_total = easel["mean"]["total_ms"].as_f64().unwrap_or(f64::NAN);
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
    row("**Easel** (`easel generate`)", easel_step, easel_total);
    for r in &rows {
        row(
            r["case"].as_str().unwrap_or("?"),
            r["step_ms"].as_f64().unwrap_or(f64::NAN),
            r["e2e_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
