//! Installs what a fresh machine lacks, each step only when missing, and says what to do when
//! it cannot (no Python, not root for apt, …).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{exec, Result};

/// The ONNX Runtime release Easel is built and tested against (`ort` 2.0.0-rc.15, API 31).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// Everything the commands need, each piece installed only when missing.
pub fn all(root: &Path) -> Result {
    wasm_target()?;
    onnxruntime(root)?;
    npm_install(&root.join("end2end"))?;
    chromium()?;
    python_packages()?;
    Ok(())
}

/// The `openai` Python package: a test drives Easel's images API with it, unchanged.
pub fn python_packages() -> Result {
    let python = python()?;
    let present = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    exec(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "openai"]))
        .map_err(|e| format!("{e}\nThe API test needs the `openai` Python package: pip install openai (in a virtualenv if your Python is managed by the system)."))
}

pub fn wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    exec(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"])).map_err(|e| {
        format!("{e}\nInstall the target by hand: rustup target add wasm32-unknown-unknown")
    })
}

/// The library file name inside the wheel's `onnxruntime/capi/`.
fn library_prefix() -> &'static str {
    if cfg!(windows) {
        "onnxruntime.dll"
    } else if cfg!(target_os = "macos") {
        "libonnxruntime."
    } else {
        "libonnxruntime.so"
    }
}

/// Ensures `.easel/onnxruntime/` holds the ONNX Runtime library; returns its path.
/// `ORT_DYLIB_PATH`, when set, wins and nothing is installed.
pub fn onnxruntime(root: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Ok(path);
    }
    let dir = root.join(".easel").join("onnxruntime");
    if let Some(found) = find_library(&dir) {
        return Ok(found);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let wheels = root.join(".easel").join("wheels");
    let python = python()?;
    eprintln!(
        "Installing ONNX Runtime {ONNXRUNTIME_VERSION} (CPU) into {}",
        dir.display()
    );
    exec(Command::new(&python).args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        &format!("onnxruntime=={ONNXRUNTIME_VERSION}"),
        "-d",
    ]).arg(&wheels))
    .map_err(|e| format!("{e}\nOr install it yourself (pip install onnxruntime=={ONNXRUNTIME_VERSION}) and set ORT_DYLIB_PATH to its capi/ library."))?;
    // Unpack only the runtime libraries from the wheel (a zip) with Python's zipfile.
    let script = root.join(".easel").join("extract_onnxruntime.py");
    std::fs::write(
        &script,
        format!(
            r#"# Written by `cargo xtask setup`: copies ONNX Runtime's libraries out of the wheel.
import glob, os, sys, zipfile
wheel = sorted(glob.glob(os.path.join(sys.argv[1], "onnxruntime-{ONNXRUNTIME_VERSION}-*.whl")))[-1]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        library = base.startswith("libonnxruntime") or base.startswith("onnxruntime.dll") or (base.startswith("onnxruntime_providers") and base.endswith(".dll"))
        if name.startswith("onnxruntime/capi/") and library:
            with open(os.path.join(sys.argv[2], base), "wb") as out:
                out.write(z.read(name))
"#
        ),
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    exec(Command::new(&python).arg(&script).arg(&wheels).arg(&dir))?;
    find_library(&dir).ok_or_else(|| {
        format!(
            "the onnxruntime wheel held no {} for this platform",
            library_prefix()
        )
    })
}

fn find_library(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(library_prefix()) && !name.contains("providers")
        })
        .collect();
    found.sort();
    found.pop()
}

fn python() -> Result<String> {
    for candidate in ["python3", "python", "py"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate.to_string());
        }
    }
    Err("Python 3 is needed to fetch ONNX Runtime (pip download onnxruntime). Install Python, or set ORT_DYLIB_PATH to an onnxruntime library.".into())
}

fn npm() -> &'static str {
    if cfg!(windows) {
        "npm.cmd"
    } else {
        "npm"
    }
}

/// `npm ci` (or `npm install` without a lock file) when `node_modules` is missing or stale.
pub fn npm_install(dir: &Path) -> Result {
    let lock = dir.join("package-lock.json");
    let marker = dir.join("node_modules").join(".package-lock.json");
    let fresh = match (lock.metadata(), marker.metadata()) {
        (Ok(l), Ok(m)) => m.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    let verb = if lock.is_file() { "ci" } else { "install" };
    exec(
        Command::new(npm())
            .current_dir(dir)
            .args([verb, "--no-audit", "--no-fund"]),
    )
    .map_err(|e| {
        format!("{e}\nnpm (Node.js) is needed for the browser tests and the release build.")
    })
}

/// The Chromium the browser tests drive: `CHROMIUM_PATH`, the system one, or (Debian, as root)
/// `apt-get install chromium`. Never a browser download by a test tool.
pub fn chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Ok(path);
    }
    let candidates: &[&str] = if cfg!(windows) {
        &[
            r"C:\Program Files\Google\Chrome\Application\chrome.exe",
            r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
            r"C:\Program Files\Chromium\Application\chrome.exe",
        ]
    } else if cfg!(target_os = "macos") {
        &[
            "/Applications/Chromium.app/Contents/MacOS/Chromium",
            "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
        ]
    } else {
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ]
    };
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Ok(found);
    }
    let apt = Path::new("/usr/bin/apt-get").is_file();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if apt && is_root {
        exec(Command::new("apt-get").arg("update").arg("-qq"))?;
        exec(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if Path::new("/usr/bin/chromium").is_file() {
            return Ok(PathBuf::from("/usr/bin/chromium"));
        }
    }
    Err("Chromium is needed for the browser tests. Install it (Debian: sudo apt-get install chromium) or set CHROMIUM_PATH to a Chrome/Chromium/Edge executable.".into())
}
