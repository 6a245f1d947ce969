//! Easel's build driver, run as `cargo xtask <command>` (the alias is in `.cargo/config.toml`).
//!
//! It does what cargo-leptos would (build the wasm front end, bind it with wasm-bindgen, shrink
//! it with wasm-opt in release, copy the assets, build the server) without a 22-minute tool
//! install, and it sets up what a fresh machine lacks: the wasm32 target, ONNX Runtime (from
//! the `onnxruntime` Python wheel, into `.easel/onnxruntime/`), npm packages and Chromium.
//!
//! Commands: `setup`, `build [--release]`, `run [--release] [-- ARGS]`, `test`, `bench`.

mod bench;
mod disk;
mod peers;
mod setup;
mod site;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::all(&root()),
        Some("build") => build(&Options::parse(&args[1..])).map(|_| ()),
        Some("run") => run(&Options::parse(&args[1..])),
        Some("test") => test(),
        Some("bench") => bench::run(&root(), &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  setup              install what a fresh machine lacks\n  build [--release]  build the web assets and the server\n  run [--release] [-- ARGS]\n                     set up, build and start `easel serve` (or `easel ARGS`)\n  test               formatting, lints, unit/integration tests and browser tests\n  bench [--quick]    engine vs. the Python reference pipeline\n  bench --scale      workers on PostgreSQL: throughput, queue wait, worker overhead\n  bench --peers      real-size SD 1.5 (random weights): Easel vs diffusers, ORT settings, int8, stable-diffusion.cpp"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nxtask: {message}");
            disk::report(&root());
            ExitCode::FAILURE
        }
    }
}

/// Options shared by `build` and `run`.
pub struct Options {
    pub release: bool,
    pub features: Vec<String>,
    /// Arguments for the `easel` binary (after `--`).
    pub passthrough: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let mut options = Options {
            release: false,
            features: Vec::new(),
            passthrough: Vec::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--release" | "-r" => options.release = true,
                "--features" => options.features.extend(iter.next().cloned()),
                "--" => {
                    options.passthrough = iter.cloned().collect();
                    break;
                }
                other => options.passthrough.push(other.to_string()),
            }
        }
        options
    }
}

/// The repository root (the parent of this crate's folder).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command, echoing it; fails with the command line when it fails.
pub fn exec(command: &mut Command) -> Result {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Builds the site and the server; returns the server binary.
fn build(options: &Options) -> Result<PathBuf> {
    let root = root();
    setup::wasm_target()?;
    site::build(&root, options.release)?;
    let mut command = cargo();
    command.current_dir(&root).args(["build", "-p", "server"]);
    if options.release {
        command.arg("--release");
    }
    if !options.features.is_empty() {
        command.args(["--features", &options.features.join(",")]);
    }
    exec(&mut command)?;
    let profile = if options.release { "release" } else { "debug" };
    Ok(root
        .join("target")
        .join(profile)
        .join(format!("easel{}", std::env::consts::EXE_SUFFIX)))
}

fn run(options: &Options) -> Result {
    let root = root();
    setup::onnxruntime(&root)?;
    let binary = build(options)?;
    let mut command = Command::new(&binary);
    command.current_dir(&root);
    if options.passthrough.is_empty() {
        command.arg("serve");
    } else {
        command.args(&options.passthrough);
    }
    exec(&mut command)
}

/// The PostgreSQL server for the second pass of the tests: `EASEL_TEST_POSTGRES_URL`, or
/// the usual local one when something answers on 127.0.0.1:5432.
fn postgres_for_tests() -> Option<String> {
    if let Ok(url) = std::env::var("EASEL_TEST_POSTGRES_URL") {
        if !url.trim().is_empty() {
            return Some(url);
        }
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
        .ok()
        .map(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn test() -> Result {
    let root = root();
    disk::warn_if_short(&root);
    setup::all(&root)?;
    let ort = setup::onnxruntime(&root)?;
    exec(
        cargo()
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    exec(cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The browser half of `app` only compiles for wasm; lint it there too.
    exec(cargo().current_dir(&root).args([
        "clippy",
        "-p",
        "app",
        "-p",
        "frontend",
        "--features",
        "app/hydrate",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(
        cargo()
            .current_dir(&root)
            // `frontend` turns on `app/hydrate`; tested together with the server, cargo would
            // unify features and the server would run browser-only code. It has no tests.
            .args(["test", "--workspace", "--exclude", "frontend"])
            .env("ORT_DYLIB_PATH", &ort),
    )?;
    // The integration suite again on PostgreSQL (each test makes and drops its own database).
    match postgres_for_tests() {
        Some(url) => exec(
            cargo()
                .current_dir(&root)
                .args(["test", "--workspace", "--exclude", "frontend", "--test", "*"])
                .env("ORT_DYLIB_PATH", &ort)
                .env("EASEL_TEST_BACKEND", "postgres")
                .env("EASEL_TEST_POSTGRES_URL", url),
        )?,
        None => eprintln!(
            "\nskipped: no PostgreSQL (set EASEL_TEST_POSTGRES_URL, or run one on 127.0.0.1:5432, to test that backend too)\n"
        ),
    }
    // The browser tests need the site and the server binary. `cargo test` above already built
    // the binary (integration tests run it), with the same features as every dependency it
    // compiled; `cargo build -p server` would unify features differently and compile many
    // dependencies a second time.
    site::build(&root, false)?;
    let binary = root
        .join("target/debug")
        .join(format!("easel{}", std::env::consts::EXE_SUFFIX));
    site::end2end(&root, &binary, &ort)
}
