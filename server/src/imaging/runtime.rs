//! ONNX Runtime, loaded at run time (`ort` with `load-dynamic`) so one Easel binary works with
//! the CPU library, the CUDA one or DirectML, and a machine without it still chats.
//!
//! Where the library comes from, in order: `ORT_DYLIB_PATH`; the project-local copy that
//! `cargo xtask` installs (`.easel/onnxruntime/`); the same folder beside the executable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use super::graph_cache::{GraphCache, Plan};
use crate::config::ImageSettings;

/// The library file name the `onnxruntime` wheel ships on this platform.
#[cfg(target_os = "windows")]
pub const LIBRARY_NAME: &str = "onnxruntime.dll";
#[cfg(target_os = "macos")]
pub const LIBRARY_NAME: &str = "libonnxruntime.dylib";
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
pub const LIBRARY_NAME: &str = "libonnxruntime.so";

/// The project-local folder `cargo xtask` installs ONNX Runtime into.
pub const LOCAL_DIR: &str = ".easel/onnxruntime";

/// Which execution provider sessions use; reported by `/api/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    DirectMl,
}

impl ExecutionProvider {
    pub fn name(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::DirectMl => "directml",
        }
    }
}

/// A loaded ONNX Runtime and the session settings every model uses.
pub struct Runtime {
    env: Environment,
    pub library: PathBuf,
    pub provider: ExecutionProvider,
    threads: usize,
    /// Optimised graphs saved on first load (`None`: every load optimises again).
    pub graph_cache: Option<GraphCache>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime was not found (looked in {0}). Run `cargo xtask run` once to install it, or set ORT_DYLIB_PATH to libonnxruntime (pip install onnxruntime==1.31.1 puts it under site-packages/onnxruntime/capi/)"
    )]
    NotFound(String),
    #[error("ONNX Runtime at {path} could not be loaded: {message}")]
    Load { path: String, message: String },
    #[error("ONNX Runtime could not create a session for {file}: {message}")]
    Session { file: String, message: String },
}

/// `ort` allows one dynamic library per process; the first load wins and later calls reuse it.
static LOADED: OnceLock<Result<(PathBuf, Environment), RuntimeError>> = OnceLock::new();

impl Runtime {
    /// Finds, loads and initialises ONNX Runtime, then settles the execution provider.
    pub fn load(settings: &ImageSettings) -> Result<Runtime, RuntimeError> {
        let (library, env) = LOADED
            .get_or_init(|| {
                let path = find_library(settings.ort_dylib_path.as_deref())?;
                let builder = ort::init_from(&path).map_err(|e| RuntimeError::Load {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let env = builder
                    .with_name("easel")
                    .build()
                    .map_err(|e| RuntimeError::Load {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                Ok((path, env))
            })
            .clone()?;
        let provider = choose_provider(&settings.execution_provider);
        Ok(Runtime {
            env,
            library,
            provider,
            threads: settings.threads,
            graph_cache: settings.graph_cache.clone().map(|dir| GraphCache {
                dir,
                min_bytes: settings.graph_cache_min_bytes,
            }),
        })
    }

    /// What the optimised graphs depend on besides the model and the CPU: the library and the
    /// execution provider.
    fn id(&self) -> String {
        let size = std::fs::metadata(&self.library).map_or(0, |m| m.len());
        format!("{}:{size}:{}", self.library.display(), self.provider.name())
    }

    /// Opens one model file with the chosen provider; falls back to CPU (with one warning) when
    /// the provider cannot be registered for this session.
    /// With a graph cache, a saved optimised graph is used when there is one, and a first load
    /// saves one; any trouble with the cache falls back to the original file.
    pub fn session(&self, file: &Path) -> Result<Session, RuntimeError> {
        let plan = match &self.graph_cache {
            Some(cache) => cache.plan(file, &self.id()),
            None => Plan::Skip,
        };
        match plan {
            Plan::Reuse(graph) => match self.open(&graph, Graph::Optimised) {
                Ok(session) => return Ok(session),
                Err(e) => {
                    // A damaged entry goes, so the next load saves a good one.
                    tracing::warn!("{e}; loading the original graph");
                    if let Some(entry) = graph.parent() {
                        let _ = std::fs::remove_dir_all(entry);
                    }
                }
            },
            Plan::Save {
                staging,
                entry,
                graph,
            } => match std::fs::create_dir_all(&staging)
                .map_err(|e| RuntimeError::Session {
                    file: staging.display().to_string(),
                    message: e.to_string(),
                })
                .and_then(|()| self.open(file, Graph::SaveTo(&graph)))
            {
                Ok(session) => {
                    GraphCache::commit(&staging, &entry);
                    return Ok(session);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    tracing::warn!("the optimised graph could not be saved: {e}");
                }
            },
            Plan::Skip => {}
        }
        self.open(file, Graph::Original)
    }

    fn open(&self, file: &Path, graph: Graph<'_>) -> Result<Session, RuntimeError> {
        let fail = |message: String| RuntimeError::Session {
            file: file.display().to_string(),
            message,
        };
        let mut builder = Session::builder(&self.env).map_err(|e| fail(e.to_string()))?;
        if self.threads > 0 {
            builder = builder
                .with_intra_threads(self.threads)
                .map_err(|e| fail(e.to_string()))?;
        }
        // Memory patterns pre-plan buffers per input shape; measured on a real-size SD 1.5 UNet
        // (512x512, batch 2, 2 threads) turning them off took peak memory from 8.3 to 6.1 GiB
        // and the step no longer (12.3 s against 12.8 s).
        builder = builder
            .with_memory_pattern(false)
            .map_err(|e| fail(e.to_string()))?;
        builder = match graph {
            Graph::Original => builder,
            // Already rewritten for this machine: rewriting again would only cost time.
            Graph::Optimised => builder
                .with_optimization_level(GraphOptimizationLevel::Disable)
                .map_err(|e| fail(e.to_string()))?,
            // Weights go to one external file (graphs over 2 GB cannot hold them inline).
            Graph::SaveTo(path) => builder
                .with_optimized_model_path(path)
                .map_err(|e| fail(e.to_string()))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_file_name",
                    GraphCache::weights_file_name(),
                )
                .map_err(|e| fail(e.to_string()))?
                .with_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes",
                    "1024",
                )
                .map_err(|e| fail(e.to_string()))?,
        };
        builder = self.with_provider(builder).map_err(fail)?;
        builder
            .commit_from_file(file)
            .map_err(|e| fail(e.to_string()))
    }

    #[allow(unused_mut)]
    fn with_provider(&self, mut builder: SessionBuilder) -> Result<SessionBuilder, String> {
        match self.provider {
            ExecutionProvider::Cpu => Ok(builder),
            #[cfg(feature = "cuda")]
            ExecutionProvider::Cuda => builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| e.to_string()),
            #[cfg(feature = "directml")]
            ExecutionProvider::DirectMl => {
                // DirectML needs memory patterns off and sequential execution (ort's docs).
                builder = builder
                    .with_memory_pattern(false)
                    .map_err(|e| e.to_string())?;
                builder = builder
                    .with_parallel_execution(false)
                    .map_err(|e| e.to_string())?;
                builder
                    .with_execution_providers([ort::ep::DirectML::default()
                        .build()
                        .error_on_failure()])
                    .map_err(|e| e.to_string())
            }
            #[allow(unreachable_patterns)]
            _ => Ok(builder),
        }
    }
}

/// Which graph a session opens.
enum Graph<'a> {
    Original,
    /// A saved optimised graph.
    Optimised,
    /// The original, saving its optimised graph here.
    SaveTo(&'a Path),
}

/// Picks the execution provider: the requested one when this build and library have it,
/// else CPU with a warning that says why.
fn choose_provider(requested: &str) -> ExecutionProvider {
    let available = available_providers();
    let has = |name: &str| available.iter().any(|p| p == name);
    let cuda_built = cfg!(feature = "cuda");
    let directml_built = cfg!(feature = "directml");
    match requested {
        "cpu" => ExecutionProvider::Cpu,
        "cuda" | "auto" if cuda_built && has("CUDAExecutionProvider") => ExecutionProvider::Cuda,
        "directml" | "auto" if directml_built && has("DmlExecutionProvider") => {
            ExecutionProvider::DirectMl
        }
        "auto" => ExecutionProvider::Cpu,
        other => {
            let why = match (other, cuda_built, directml_built) {
                ("cuda", false, _) => "this Easel was built without the `cuda` feature (cargo xtask build --release --features cuda)",
                ("directml", _, false) => "this Easel was built without the `directml` feature",
                ("cuda", true, _) => "the ONNX Runtime library has no CUDA provider (install onnxruntime-gpu and point ORT_DYLIB_PATH at it)",
                _ => "the ONNX Runtime library does not offer it",
            };
            tracing::warn!("execution provider `{other}` is not available: {why}; using CPU");
            ExecutionProvider::Cpu
        }
    }
}

fn available_providers() -> Vec<String> {
    // `ort` exposes availability per provider type; ask for the ones Easel can use.
    #[allow(unused_mut)]
    let mut out = vec!["CPUExecutionProvider".to_string()];
    #[cfg(feature = "cuda")]
    if <ort::ep::CUDA as ort::ep::ExecutionProvider>::is_available().unwrap_or(false) {
        out.push("CUDAExecutionProvider".into());
    }
    #[cfg(feature = "directml")]
    if <ort::ep::DirectML as ort::ep::ExecutionProvider>::is_available().unwrap_or(false) {
        out.push("DmlExecutionProvider".into());
    }
    out
}

/// Looks for the library where the README says it will be.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let mut tried = Vec::new();
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        tried.push(format!("ORT_DYLIB_PATH={}", path.display()));
        return Err(RuntimeError::NotFound(tried.join(", ")));
    }
    let mut folders = vec![PathBuf::from(LOCAL_DIR)];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/easel → the repository's .easel/, and a folder beside the binary.
        if let Some(dir) = exe.parent() {
            folders.push(dir.join("onnxruntime"));
            if let Some(repo) = dir.parent().and_then(Path::parent) {
                folders.push(repo.join(LOCAL_DIR));
            }
        }
    }
    for folder in folders {
        if let Some(found) = library_in(&folder) {
            return Ok(found);
        }
        tried.push(folder.display().to_string());
    }
    Err(RuntimeError::NotFound(tried.join(", ")))
}

/// `libonnxruntime.so`, or a versioned `libonnxruntime.so.1.31.1`, in `folder`.
fn library_in(folder: &Path) -> Option<PathBuf> {
    let plain = folder.join(LIBRARY_NAME);
    if plain.is_file() {
        return Some(plain);
    }
    let entries = std::fs::read_dir(folder).ok()?;
    let mut versioned: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{LIBRARY_NAME}.")))
        })
        .collect();
    versioned.sort();
    versioned.pop()
}
