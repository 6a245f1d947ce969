//! `cargo xtask bench [--quick]`: Easel's engine against the reference Python pipeline
//! (diffusers' schedulers around onnxruntime sessions, `server/benches/reference_pipeline.py`)
//! on the same models, sampler, steps, size, count and thread count, in one run. Prints the
//! time ratios and the share of Easel's time spent outside ONNX Runtime.
//!
//! Needs Python with numpy, onnxruntime, torch and diffusers (the reference's own needs).

use std::path::Path;
use std::process::Command;

use crate::{cargo, exec, setup, Result};

struct Case {
    label: &'static str,
    model: String,
    size: &'static str,
    n: u32,
    steps: u32,
}

pub fn run(root: &Path, args: &[String]) -> Result {
    if args.iter().any(|a| a == "--scale") {
        return scale(root);
    }
    if args.iter().any(|a| a == "--peers") {
        return crate::peers::run(root);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let repeat = if quick { "2" } else { "5" };
    let threads = std::env::var("EASEL_ORT_THREADS").unwrap_or_else(|_| "2".into());
    let ort = setup::onnxruntime(root)?;
    exec(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "server"]),
    )?;
    let easel = root
        .join("target/release")
        .join(format!("easel{}", std::env::consts::EXE_SUFFIX));

    let medium = medium_model(root)?;
    let tiny = root.join("server/tests/assets/models/tiny-sd");
    let cases = [
        Case {
            label: "tiny (overhead-bound)",
            model: tiny.display().to_string(),
            size: "64x64",
            n: 1,
            steps: 20,
        },
        Case {
            label: "tiny, n=4",
            model: tiny.display().to_string(),
            size: "64x64",
            n: 4,
            steps: 20,
        },
        Case {
            label: "medium (compute-bound)",
            model: medium.display().to_string(),
            size: "512x512",
            n: 1,
            steps: 10,
        },
    ];
    let out = root.join("target/bench/out");
    let mut rows = Vec::new();
    for case in &cases {
        let common = [
            "--prompt".to_string(),
            "a lighthouse on a cliff at dusk".into(),
            "-n".into(),
            case.n.to_string(),
            "--size".into(),
            case.size.into(),
            "--steps".into(),
            case.steps.to_string(),
            "--guidance".into(),
            "7.5".into(),
            "--sampler".into(),
            "euler".into(),
            "--schedule".into(),
            "discrete".into(),
            "--seed".into(),
            "1".into(),
            "--repeat".into(),
            repeat.into(),
            "--json".into(),
        ];
        let engine = json_line(
            Command::new(&easel)
                .current_dir(root)
                .arg("generate")
                .arg("--model")
                .arg(&case.model)
                .args(&common)
                .arg("--out")
                .arg(&out)
                .env("ORT_DYLIB_PATH", &ort)
                .env("EASEL_ORT_THREADS", &threads),
        )?;
        let reference = json_line(
            Command::new("python3")
                .current_dir(root)
                .arg("server/benches/reference_pipeline.py")
                .arg("--model")
                .arg(&case.model)
                .args(&common)
                .arg("--threads")
                .arg(&threads)
                .arg("--out")
                .arg(&out),
        )?;
        let e_total = mean(&engine, "total_ms");
        let e_onnx = mean(&engine, "onnx_ms");
        let r_total = mean(&reference, "total_ms");
        let r_onnx = mean(&reference, "onnx_ms");
        rows.push(format!(
            "{:<24} {:>10.1} {:>10.1} {:>8.3} {:>10.1}% {:>10.1}%",
            case.label,
            e_total,
            r_total,
            e_total / r_total,
            100.0 * (e_total - e_onnx) / e_total,
            100.0 * (r_total - r_onnx) / r_total,
        ));
    }
    println!("\nEngine vs reference ({threads} ORT threads, {repeat} timed runs each, mean ms per request)");
    println!(
        "{:<24} {:>10} {:>10} {:>8} {:>11} {:>11}",
        "case", "easel", "reference", "ratio", "easel out", "ref out"
    );
    for row in rows {
        println!("{row}");
    }
    println!("(\"out\" = share of the request's time spent outside ONNX Runtime runs)");
    Ok(())
}

pub(crate) fn json_line(command: &mut Command) -> Result<serde_json::Value> {
    let output = command
        .output()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("no JSON line in the output")?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON from {command:?}: {e}"))
}

fn mean(v: &serde_json::Value, key: &str) -> f64 {
    v["mean"][key].as_f64().unwrap_or(f64::NAN)
}

/// The medium random-weight model (made once, in `target/bench/medium-sd`).
fn medium_model(root: &Path) -> Result<std::path::PathBuf> {
    let medium = root.join("target/bench/medium-sd");
    if !medium.join("model_index.json").is_file() {
        // The tokenizer is built from the CLIP merges that ship in open_clip's wheel.
        let wheel = root.join("target/bench/open_clip_torch-3.3.0-py3-none-any.whl");
        if !wheel.is_file() {
            exec(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "open_clip_torch==3.3.0",
                        "-d",
                    ])
                    .arg(root.join("target/bench")),
            )?;
        }
        exec(
            Command::new("python3")
                .current_dir(root)
                .arg("server/tests/assets/make_test_models.py")
                .arg("--clip-bpe")
                .arg(&wheel)
                .arg("--medium")
                .arg(&medium),
        )?;
    }
    Ok(medium)
}

/// `cargo xtask bench --scale`: throughput with one and two `easel worker` processes and the
/// overhead a worker adds against in-process painting, on PostgreSQL, with the medium model
/// (`server/tests/scale_bench.rs`).
fn scale(root: &Path) -> Result {
    let ort = setup::onnxruntime(root)?;
    let medium = medium_model(root)?;
    let postgres = std::env::var("EASEL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    exec(
        cargo()
            .current_dir(root)
            .args([
                "test",
                "--release",
                "-p",
                "server",
                "--test",
                "scale_bench",
                "--",
                "--ignored",
                "--nocapture",
            ])
            .env("ORT_DYLIB_PATH", &ort)
            .env("EASEL_TEST_BACKEND", "postgres")
            .env("EASEL_TEST_POSTGRES_URL", postgres)
            .env("EASEL_BENCH_MODELS", medium.parent().unwrap_or(root)),
    )
}
