//! The web side: the wasm front end (cargo + wasm-bindgen + wasm-opt), the static assets, and
//! the browser tests that run against the built site.

use std::path::Path;
use std::process::Command;

use crate::{cargo, exec, setup, Result};

/// Builds `target/site`: `pkg/easel.js` + `pkg/easel_bg.wasm` and the files of `public/`.
/// The names follow `[[workspace.metadata.leptos]]` in Cargo.toml, so cargo-leptos and this
/// driver produce the same layout.
pub fn build(root: &Path, release: bool) -> Result {
    let profile = if release { "wasm-release" } else { "dev" };
    exec(cargo().current_dir(root).args([
        "build",
        "-p",
        "frontend",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        profile,
    ]))?;
    let folder = if release { "wasm-release" } else { "debug" };
    let wasm = root
        .join("target/wasm32-unknown-unknown")
        .join(folder)
        .join("frontend.wasm");
    let site = root.join("target/site");
    let pkg = site.join("pkg");
    std::fs::create_dir_all(&pkg).map_err(|e| format!("{}: {e}", pkg.display()))?;

    eprintln!(
        "$ wasm-bindgen {} --target web --out-name easel --out-dir {}",
        wasm.display(),
        pkg.display()
    );
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen
        .input_path(&wasm)
        .out_name("easel")
        .web(true)
        .map_err(|e| e.to_string())?
        .typescript(false)
        .debug(!release)
        .keep_debug(!release)
        .generate(&pkg)
        .map_err(|e| format!("wasm-bindgen: {e}"))?;

    if release {
        optimize(root, &pkg.join("easel_bg.wasm"))?;
    }
    copy_dir(&root.join("public"), &site)
}

/// Shrinks the release wasm with wasm-opt from npm's `binaryen` (Debian's older binaryen
/// breaks hydration; see ../shared/SETUP.md).
fn optimize(root: &Path, wasm: &Path) -> Result {
    let tools = root.join("xtask");
    setup::npm_install(&tools)?;
    let wasm_opt = tools.join("node_modules/binaryen/bin/wasm-opt");
    let before = wasm.metadata().map(|m| m.len()).unwrap_or(0);
    exec(
        Command::new("node")
            .arg(&wasm_opt)
            .arg(wasm)
            .args([
                "-Oz",
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "-o",
            ])
            .arg(wasm),
    )?;
    let after = wasm.metadata().map(|m| m.len()).unwrap_or(0);
    eprintln!("wasm-opt: {} KB -> {} KB", before / 1024, after / 1024);
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)
                .map_err(|e| format!("{} -> {}: {e}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

/// Runs the Playwright tests in `end2end/` against the built server (they start it themselves,
/// with a scripted LLM, a temporary database and the tiny test models).
pub fn end2end(root: &Path, binary: &Path, ort: &Path) -> Result {
    let chromium = setup::chromium()?;
    exec(
        Command::new("node")
            .current_dir(root)
            .arg("end2end/run.mjs")
            .env("EASEL_BIN", binary)
            .env("ORT_DYLIB_PATH", ort)
            .env("CHROMIUM_PATH", chromium),
    )
}
