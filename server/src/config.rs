//! Settings: environment variables over an optional `easel.toml`, validated once at start-up.
//!
//! Every problem is reported as a [`ConfigError`] that names the setting and says how to fix it,
//! because a server that starts with a half-valid configuration fails later, far from the cause.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The validated configuration the rest of the server reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub models_dir: PathBuf,
    /// OpenAI-compatible chat providers; empty means the built-in `direct` provider.
    pub providers: Vec<ProviderConfig>,
    /// `provider/model` used when a conversation names none.
    pub default_llm: Option<String>,
    pub images: ImageSettings,
    /// The image model used when a request names none (`EASEL_IMAGE_MODEL`); else the first.
    pub image_model: Option<String>,
    /// Where the web assets (`pkg/easel.js`, …) live.
    pub site_root: PathBuf,
    /// When set, `/api` and `/v1` requests must carry `Authorization: Bearer <key>` (or the
    /// session cookie the page gets for it).
    pub api_key: Option<String>,
    /// The address people use to reach Easel (`EASEL_PUBLIC_URL`), for links in API answers
    /// and as an allowed host.
    pub public_url: Option<String>,
    /// Further `host[:port]` names Easel answers to (`EASEL_ALLOWED_HOSTS`, comma-separated).
    pub allowed_hosts: Vec<String>,
    /// Whether `X-Forwarded-*` headers come from a trusted proxy (`EASEL_TRUST_PROXY`).
    pub trust_proxy: bool,
    /// Origins allowed cross-origin requests (`EASEL_CORS_ORIGINS`); empty keeps CORS closed.
    pub cors_origins: Vec<String>,
    /// How long the LLM's stream may stay silent before the reply fails (`EASEL_LLM_IDLE_TIMEOUT`).
    pub llm_idle_timeout: Duration,
    /// Tool calls run per LLM round (`EASEL_MAX_TOOL_CALLS`); the rest get an error.
    pub max_tool_calls: usize,
    /// `accounts` (sign-in, the default) or `none` (one local user, loopback only): `EASEL_AUTH`.
    pub auth: AuthSetting,
    /// The admin account to create at start-up when none exists (`EASEL_ADMIN_EMAIL`,
    /// `EASEL_ADMIN_PASSWORD`), for headless installs.
    pub admin: Option<(String, String)>,
    /// This process's name among the nodes sharing the database (`EASEL_NODE_NAME`; the host
    /// name and port by default).
    pub node_name: String,
    /// How long a node's runs and jobs stay its own without a heartbeat
    /// (`EASEL_LEASE_TIMEOUT`, seconds, default 30).
    pub lease_timeout: Duration,
}

/// How people prove who they are (see `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSetting {
    Accounts,
    None,
}

/// One OpenAI-compatible endpoint: OpenAI itself, Ollama, vLLM, llama.cpp, GPUStack, LM Studio…
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Short name used in model ids (`ollama/llama3.2`); no `/`.
    pub name: String,
    pub base_url: String,
    pub api_key: String,
    /// Models offered in the UI; when empty the provider's `/models` list is asked at start-up.
    pub models: Vec<String>,
    /// How Paint mode makes the image tool certain with this server (`tool_choice`).
    pub tool_choice: ToolChoiceSupport,
}

/// Which `tool_choice` an LLM server accepts, strongest first: Paint mode sends the strongest
/// one the provider supports and steps down when the server rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ToolChoiceSupport {
    /// No `tool_choice` at all: a system instruction asks for the call (`none`).
    Instruction,
    /// `"required"`: some tool must be called (`required`).
    Required,
    /// `{"type": "function", "function": {"name": …}}` (`named`, the default).
    Named,
}

impl ToolChoiceSupport {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolChoiceSupport::Named => "named",
            ToolChoiceSupport::Required => "required",
            ToolChoiceSupport::Instruction => "none",
        }
    }

    pub fn parse(text: &str) -> Option<ToolChoiceSupport> {
        match text.trim().to_ascii_lowercase().as_str() {
            "named" => Some(ToolChoiceSupport::Named),
            "required" => Some(ToolChoiceSupport::Required),
            "none" => Some(ToolChoiceSupport::Instruction),
            _ => None,
        }
    }

    /// The next weaker way, if any.
    pub fn fallback(self) -> Option<ToolChoiceSupport> {
        match self {
            ToolChoiceSupport::Named => Some(ToolChoiceSupport::Required),
            ToolChoiceSupport::Required => Some(ToolChoiceSupport::Instruction),
            ToolChoiceSupport::Instruction => None,
        }
    }
}

fn parse_tool_choice(setting: &str, value: Option<&str>) -> Result<ToolChoiceSupport, ConfigError> {
    match value {
        None => Ok(ToolChoiceSupport::Named),
        Some(v) => ToolChoiceSupport::parse(v).ok_or_else(|| {
            ConfigError::new(
                setting,
                format!("`{v}` is not named, required or none"),
                "use named (the server accepts a named tool_choice), required, or none (it accepts neither: Paint mode asks in words)",
            )
        }),
    }
}

#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// Image jobs that run at once on the device (`EASEL_IMAGE_CONCURRENCY`).
    pub concurrency: usize,
    /// Explicit ONNX Runtime library (`ORT_DYLIB_PATH`); otherwise the project-local copy.
    pub ort_dylib_path: Option<PathBuf>,
    /// Preferred execution provider: `auto`, `cpu`, `cuda`, `directml` (`EASEL_EXECUTION_PROVIDER`).
    pub execution_provider: String,
    /// Threads ONNX Runtime may use per session; 0 lets it decide (`EASEL_ORT_THREADS`).
    pub threads: usize,
    /// The image queue's capacity in images, queued and running (`EASEL_IMAGE_QUEUE_MAX`).
    pub queue_max: u32,
    /// Whether this process paints (`EASEL_IMAGE_WORKERS`, 1 by default; 0 makes a web node
    /// that leaves the queue to image workers elsewhere).
    pub workers: usize,
    /// Image models painted by another server's OpenAI-compatible images API
    /// (`[[images.remote]]` in `easel.toml`).
    pub remote: Vec<RemoteModel>,
    /// Prompts over 75 tokens are encoded in 75-token chunks (`images.long_prompts = "chunk"`,
    /// the default) rather than truncated (`"truncate"`); `EASEL_LONG_PROMPTS`.
    pub chunk_long_prompts: bool,
    /// `(word:1.3)` weights in prompts (`images.prompt_weighting`, `EASEL_PROMPT_WEIGHTING`,
    /// on by default; the images API reads them only when a request asks).
    pub prompt_weighting: bool,
    /// The hub repository "Get a model" downloads (`images.recommended_model`,
    /// `EASEL_RECOMMENDED_MODEL`): an fp32 LCM export that paints in 4 steps on a CPU.
    pub recommended_model: String,
    /// Where optimised graphs are saved on first load (`images.graph_cache`,
    /// `EASEL_GRAPH_CACHE`, default `data/graph-cache`; `off` disables it).
    pub graph_cache: Option<PathBuf>,
    /// Model components smaller than this are not cached (they load fast anyway).
    pub graph_cache_min_bytes: u64,
}

/// Components under 64 MiB optimise in well under a second: caching them buys nothing.
pub const GRAPH_CACHE_MIN_BYTES: u64 = 64 << 20;

/// An fp32 ONNX export of LCM Dreamshaper v7 in the diffusers layout: 4 steps, no fp16 kernels
/// needed, so it paints on any CPU (the fp16 `onnxruntime/sd-turbo` export is made for CUDA).
pub const DEFAULT_RECOMMENDED_MODEL: &str = "TheyCallMeHex/LCM-Dreamshaper-V7-ONNX";

/// What kind of server a remote image model lives on: it decides which parameters are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// OpenAI's images API (`gpt-image-1`, `dall-e-3`) or a server that copies it: prompt, n,
    /// size and quality only.
    OpenAi,
    /// Another Easel's `/v1` (or a server with its extensions): also seed, steps, guidance,
    /// sampler and negative prompt, so the pixels are reproducible.
    Easel,
}

/// One `[[images.remote]]` entry: a model entry that points at an API instead of a folder.
#[derive(Debug, Clone)]
pub struct RemoteModel {
    /// The model's id here (`/api/models`, the tool's `model`).
    pub name: String,
    /// The API's base URL, up to and including `/v1`.
    pub url: String,
    pub api_key: Option<String>,
    /// The model's name on the remote server.
    pub model: String,
    pub kind: RemoteKind,
    /// The longest a whole request may take, retries included.
    pub timeout: Duration,
    /// Sizes offered (`WIDTHxHEIGHT`); the first is the default.
    pub sizes: Vec<(u32, u32)>,
    /// Whether the server streams partial images (`stream: true`), for live previews.
    pub stream: bool,
    /// Whether `/images/edits` is offered.
    pub edits: bool,
    /// How often a 429 or 503 is retried (after `Retry-After`) before giving up.
    pub retries: u32,
    /// The longest wait between retries, whatever `Retry-After` says.
    pub max_retry_wait: Duration,
}

pub const DEFAULT_IMAGE_QUEUE_MAX: u32 = 100;
pub const DEFAULT_LLM_IDLE_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_MAX_TOOL_CALLS: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("configuration error in {setting}: {problem}. Fix: {fix}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// The shape of `easel.toml`; every key is optional and the environment wins over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<String>,
    database_url: Option<String>,
    models_dir: Option<PathBuf>,
    default_llm: Option<String>,
    site_root: Option<PathBuf>,
    api_key: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    trust_proxy: Option<bool>,
    #[serde(default)]
    cors_origins: Vec<String>,
    llm_idle_timeout: Option<u64>,
    max_tool_calls: Option<usize>,
    auth: Option<String>,
    #[serde(default)]
    providers: Vec<FileProvider>,
    #[serde(default)]
    images: FileImages,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    name: String,
    base_url: String,
    api_key: Option<String>,
    /// Name of an environment variable holding the key, so the file can be committed.
    api_key_env: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    /// `named` (default), `required` or `none`: the `tool_choice` the server accepts.
    tool_choice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImages {
    concurrency: Option<usize>,
    ort_dylib_path: Option<PathBuf>,
    execution_provider: Option<String>,
    threads: Option<usize>,
    default_model: Option<String>,
    queue_max: Option<u32>,
    workers: Option<usize>,
    long_prompts: Option<String>,
    prompt_weighting: Option<bool>,
    recommended_model: Option<String>,
    graph_cache: Option<String>,
    #[serde(default)]
    remote: Vec<FileRemote>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRemote {
    name: String,
    url: String,
    api_key: Option<String>,
    api_key_env: Option<String>,
    model: Option<String>,
    kind: Option<String>,
    /// Seconds.
    timeout: Option<u64>,
    #[serde(default)]
    sizes: Vec<String>,
    stream: Option<bool>,
    edits: Option<bool>,
    retries: Option<u32>,
    /// Seconds.
    max_retry_wait: Option<u64>,
}

/// A source of variables; the process environment in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.trim().is_empty())
    }
}

pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/easel.db";
const OPENAI_URL: &str = "https://api.openai.com/v1";
const OPENAI_DEFAULT_MODEL: &str = "gpt-4o-mini";

impl Config {
    /// Reads the process environment (and `EASEL_CONFIG` if set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&ProcessEnv)
    }

    pub fn load(env: &dyn Env) -> Result<Self, ConfigError> {
        let file = match env.var("EASEL_CONFIG") {
            Some(path) => read_file_config(Path::new(&path))?,
            None => FileConfig::default(),
        };

        let addr_text = env
            .var("EASEL_ADDR")
            .or(file.addr)
            .unwrap_or_else(|| DEFAULT_ADDR.into());
        let addr = addr_text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "EASEL_ADDR",
                format!("`{addr_text}` is not an address with a port"),
                "use HOST:PORT, for example 127.0.0.1:3000 or 0.0.0.0:8080",
            )
        })?;

        let database_url = env
            .var("DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let known = database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://");
        if !known {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("`{database_url}` is neither a SQLite nor a PostgreSQL URL"),
                "use sqlite://PATH (for example sqlite://data/easel.db) or postgres://USER@HOST/DB",
            ));
        }

        let models_dir = env
            .var("EASEL_MODELS_DIR")
            .map(PathBuf::from)
            .or(file.models_dir)
            .unwrap_or_else(|| PathBuf::from("models"));
        if models_dir.exists() && !models_dir.is_dir() {
            return Err(ConfigError::new(
                "EASEL_MODELS_DIR",
                format!("{} exists but is not a folder", models_dir.display()),
                "point it at a folder holding one sub-folder per image model",
            ));
        }

        let mut providers = Vec::new();
        for p in file.providers {
            let api_key = match (p.api_key, p.api_key_env) {
                (Some(key), _) => key,
                (None, Some(var)) => env.var(&var).ok_or_else(|| {
                    ConfigError::new(
                        format!("providers.{}.api_key_env", p.name),
                        format!("the environment variable {var} is not set"),
                        format!(
                            "export {var}=<key>, or remove api_key_env for servers without keys"
                        ),
                    )
                })?,
                (None, None) => String::new(),
            };
            let tool_choice = parse_tool_choice(
                &format!("providers.{}.tool_choice", p.name),
                p.tool_choice.as_deref(),
            )?;
            providers.push(ProviderConfig {
                name: p.name,
                base_url: p.base_url,
                api_key,
                models: p.models,
                tool_choice,
            });
        }

        // The environment's provider (OPENAI_*) comes first, so it is the default.
        let env_base = env.var("OPENAI_BASE_URL");
        let env_key = env.var("OPENAI_API_KEY");
        let env_model = env.var("EASEL_LLM_MODEL");
        if env_base.is_some() || env_key.is_some() {
            let base_url = env_base.clone().unwrap_or_else(|| OPENAI_URL.into());
            let mut models = Vec::new();
            if let Some(model) = &env_model {
                if !model.contains('/') || providers.is_empty() {
                    models.push(model.clone());
                }
            } else if env_base.is_none() {
                models.push(OPENAI_DEFAULT_MODEL.to_string());
            }
            let name = if env_base.is_none() {
                "openai".to_string()
            } else {
                provider_name_from_url(&base_url)
            };
            let provider = ProviderConfig {
                name,
                base_url,
                api_key: env_key.unwrap_or_default(),
                models,
                tool_choice: parse_tool_choice(
                    "EASEL_LLM_TOOL_CHOICE",
                    env.var("EASEL_LLM_TOOL_CHOICE").as_deref(),
                )?,
            };
            validate_provider(&provider, "OPENAI_BASE_URL")?;
            providers.insert(0, provider);
        }

        let mut seen = std::collections::HashSet::new();
        for p in &providers {
            validate_provider(p, &format!("providers.{}.base_url", p.name))?;
            if !seen.insert(p.name.clone()) {
                return Err(ConfigError::new(
                    format!("providers.{}", p.name),
                    "two providers share this name",
                    "give each provider a unique name",
                ));
            }
        }

        // `EASEL_LLM_MODEL` may be a bare model (of the first provider) or `provider/model`.
        let default_llm = match env_model.or(file.default_llm) {
            Some(m) if m.contains('/') && providers.iter().any(|p| m.starts_with(&format!("{}/", p.name))) => {
                Some(m)
            }
            Some(m) => match providers.first() {
                Some(p) => Some(format!("{}/{}", p.name, m)),
                None => {
                    return Err(ConfigError::new(
                        "EASEL_LLM_MODEL",
                        format!("`{m}` is set but no LLM provider is configured"),
                        "set OPENAI_BASE_URL (and OPENAI_API_KEY if the server needs one), or unset EASEL_LLM_MODEL to use the built-in direct provider",
                    ))
                }
            },
            None => providers.first().and_then(|p| p.models.first().map(|m| format!("{}/{}", p.name, m))),
        };

        let concurrency = match env.var("EASEL_IMAGE_CONCURRENCY") {
            Some(v) => parse_positive("EASEL_IMAGE_CONCURRENCY", &v, 64)?,
            None => file.images.concurrency.unwrap_or(1),
        };
        if !(1..=64).contains(&concurrency) {
            return Err(ConfigError::new(
                "images.concurrency",
                "must be 1 to 64",
                "use a small number such as 1",
            ));
        }
        let threads = match env.var("EASEL_ORT_THREADS") {
            Some(v) => v.parse::<usize>().map_err(|_| {
                ConfigError::new(
                    "EASEL_ORT_THREADS",
                    format!("`{v}` is not a number"),
                    "use 0 (automatic) or a thread count",
                )
            })?,
            None => file.images.threads.unwrap_or(0),
        };
        let execution_provider = env
            .var("EASEL_EXECUTION_PROVIDER")
            .or(file.images.execution_provider)
            .unwrap_or_else(|| "auto".into())
            .to_ascii_lowercase();
        if !["auto", "cpu", "cuda", "directml"].contains(&execution_provider.as_str()) {
            return Err(ConfigError::new(
                "EASEL_EXECUTION_PROVIDER",
                format!("`{execution_provider}` is not a known execution provider"),
                "use auto, cpu, cuda or directml",
            ));
        }
        let ort_dylib_path = env
            .var("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .or(file.images.ort_dylib_path);

        let queue_max = match env.var("EASEL_IMAGE_QUEUE_MAX") {
            Some(v) => parse_positive("EASEL_IMAGE_QUEUE_MAX", &v, 100_000)? as u32,
            None => file.images.queue_max.unwrap_or(DEFAULT_IMAGE_QUEUE_MAX),
        };
        if queue_max < request_max_images() {
            return Err(ConfigError::new(
                "EASEL_IMAGE_QUEUE_MAX",
                format!(
                    "{queue_max} is smaller than one request may ask for ({})",
                    request_max_images()
                ),
                "use at least 10 (the default is 100)",
            ));
        }
        let workers = match env.var("EASEL_IMAGE_WORKERS") {
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= 1 => n,
                _ => {
                    return Err(ConfigError::new(
                        "EASEL_IMAGE_WORKERS",
                        format!("`{v}` is not 0 or 1"),
                        "use 1 (this process paints) or 0 (a web node only; set EASEL_IMAGE_CONCURRENCY for more jobs at once)",
                    ))
                }
            },
            None => file.images.workers.unwrap_or(1).min(1),
        };
        let chunk_long_prompts = match env
            .var("EASEL_LONG_PROMPTS")
            .map(|v| ("EASEL_LONG_PROMPTS", v))
            .or(file.images.long_prompts.map(|v| ("images.long_prompts", v)))
        {
            None => true,
            Some((setting, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "chunk" => true,
                "truncate" => false,
                other => return Err(ConfigError::new(
                    setting,
                    format!("`{other}` is not chunk or truncate"),
                    "use chunk (75-token chunks, the default) or truncate (the first 75 tokens)",
                )),
            },
        };
        let prompt_weighting = match env.var("EASEL_PROMPT_WEIGHTING") {
            Some(v) => parse_bool("EASEL_PROMPT_WEIGHTING", &v)?,
            None => file.images.prompt_weighting.unwrap_or(true),
        };
        let llm_idle_timeout = match env.var("EASEL_LLM_IDLE_TIMEOUT") {
            Some(v) => parse_positive("EASEL_LLM_IDLE_TIMEOUT", &v, 86_400)? as u64,
            None => file
                .llm_idle_timeout
                .unwrap_or(DEFAULT_LLM_IDLE_TIMEOUT_SECS),
        };
        let max_tool_calls = match env.var("EASEL_MAX_TOOL_CALLS") {
            Some(v) => parse_positive("EASEL_MAX_TOOL_CALLS", &v, 64)?,
            None => file.max_tool_calls.unwrap_or(DEFAULT_MAX_TOOL_CALLS),
        };
        let public_url = env
            .var("EASEL_PUBLIC_URL")
            .or(file.public_url)
            .map(|u| u.trim().trim_end_matches('/').to_string());
        if let Some(url) = &public_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
            if !ok {
                return Err(ConfigError::new(
                    "EASEL_PUBLIC_URL",
                    format!("`{url}` is not an http(s) URL"),
                    "use the address people type, for example https://easel.example.com",
                ));
            }
        }
        let list = |v: Option<String>, from_file: Vec<String>| -> Vec<String> {
            match v {
                Some(text) => text
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                None => from_file,
            }
        };
        let allowed_hosts = list(env.var("EASEL_ALLOWED_HOSTS"), file.allowed_hosts);
        let cors_origins = list(env.var("EASEL_CORS_ORIGINS"), file.cors_origins);
        let trust_proxy = match env.var("EASEL_TRUST_PROXY") {
            Some(v) => parse_bool("EASEL_TRUST_PROXY", &v)?,
            None => file.trust_proxy.unwrap_or(false),
        };

        let auth = match env
            .var("EASEL_AUTH")
            .or(file.auth)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("accounts") => AuthSetting::Accounts,
            Some("none") => AuthSetting::None,
            Some(other) => {
                return Err(ConfigError::new(
                    "EASEL_AUTH",
                    format!("`{other}` is not accounts or none"),
                    "use accounts (sign-in) or none (one local user, loopback only)",
                ))
            }
        };
        if auth == AuthSetting::None && !addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "EASEL_AUTH",
                format!("`none` lets anyone who reaches {addr} act as the local user without signing in"),
                "listen on a loopback address only (EASEL_ADDR=127.0.0.1:PORT), or use EASEL_AUTH=accounts",
            ));
        }
        let admin = match (
            env.var("EASEL_ADMIN_EMAIL"),
            env.var("EASEL_ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some((email, password)),
            (None, None) => None,
            _ => return Err(ConfigError::new(
                "EASEL_ADMIN_EMAIL",
                "EASEL_ADMIN_EMAIL and EASEL_ADMIN_PASSWORD go together",
                "set both (the admin account is created at start-up when none exists), or neither",
            )),
        };

        let lease_timeout = match env.var("EASEL_LEASE_TIMEOUT") {
            Some(v) => parse_positive("EASEL_LEASE_TIMEOUT", &v, 3600)? as u64,
            None => 30,
        };
        let node_name = env.var("EASEL_NODE_NAME").unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "easel".into());
            format!("{host}:{}", addr.port())
        });

        let site_root = env
            .var("LEPTOS_SITE_ROOT")
            .map(PathBuf::from)
            .or(file.site_root)
            .unwrap_or_else(default_site_root);

        let remote = file
            .images
            .remote
            .iter()
            .map(|r| remote_model(r, env))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, r) in remote.iter().enumerate() {
            if remote[..i].iter().any(|o| o.name == r.name) {
                return Err(ConfigError::new(
                    "images.remote",
                    format!("two remote models are named `{}`", r.name),
                    "give each [[images.remote]] entry its own name",
                ));
            }
        }

        Ok(Config {
            addr,
            database_url,
            models_dir,
            providers,
            default_llm,
            images: ImageSettings {
                concurrency,
                ort_dylib_path,
                execution_provider,
                threads,
                queue_max,
                workers,
                remote,
                chunk_long_prompts,
                prompt_weighting,
                recommended_model: env
                    .var("EASEL_RECOMMENDED_MODEL")
                    .or(file.images.recommended_model)
                    .unwrap_or_else(|| DEFAULT_RECOMMENDED_MODEL.into()),
                graph_cache: match env
                    .var("EASEL_GRAPH_CACHE")
                    .or(file.images.graph_cache)
                    .as_deref()
                    .map(str::trim)
                {
                    Some("off" | "none" | "") => None,
                    Some(path) => Some(PathBuf::from(path)),
                    None => Some(PathBuf::from("data/graph-cache")),
                },
                graph_cache_min_bytes: GRAPH_CACHE_MIN_BYTES,
            },
            image_model: env.var("EASEL_IMAGE_MODEL").or(file.images.default_model),
            site_root,
            api_key: env.var("EASEL_API_KEY").or(file.api_key),
            public_url,
            allowed_hosts,
            trust_proxy,
            cors_origins,
            llm_idle_timeout: Duration::from_secs(llm_idle_timeout),
            max_tool_calls,
            auth,
            admin,
            node_name,
            lease_timeout: Duration::from_secs(lease_timeout),
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "EASEL_CONFIG",
            format!("cannot read {}: {e}", path.display()),
            "point EASEL_CONFIG at an existing easel.toml or unset it",
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            format!("EASEL_CONFIG ({})", path.display()),
            e.to_string().trim().replace('\n', " "),
            "correct the file; README.md lists every key",
        )
    })
}

fn remote_model(r: &FileRemote, env: &dyn Env) -> Result<RemoteModel, ConfigError> {
    let setting = format!("images.remote ({})", r.name);
    let bad = |problem: String, fix: &str| ConfigError::new(setting.clone(), problem, fix);
    let name_ok = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(bad(
            format!("`{}` is not a usable model name", r.name),
            "use 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let url = r.url.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(
            format!("url `{}` is not http(s)", r.url),
            "give the API's base URL, e.g. https://api.openai.com/v1",
        ));
    }
    let kind = match r.kind.as_deref().unwrap_or("openai") {
        "openai" => RemoteKind::OpenAi,
        "easel" => RemoteKind::Easel,
        other => {
            return Err(bad(
                format!("kind `{other}` is not known"),
                "use kind = \"openai\" or kind = \"easel\"",
            ))
        }
    };
    let mut sizes = Vec::new();
    for s in &r.sizes {
        let parsed = s.split_once('x').and_then(|(w, h)| {
            let (w, h) = (w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?);
            ((64..=4096).contains(&w) && (64..=4096).contains(&h)).then_some((w, h))
        });
        sizes.push(parsed.ok_or_else(|| {
            bad(
                format!("size `{s}` is not WIDTHxHEIGHT between 64 and 4096"),
                "write sizes as \"1024x1024\"",
            )
        })?);
    }
    if sizes.is_empty() {
        sizes = match kind {
            RemoteKind::OpenAi => vec![(1024, 1024), (1536, 1024), (1024, 1536)],
            RemoteKind::Easel => vec![(512, 512)],
        };
    }
    let api_key = match (&r.api_key, &r.api_key_env) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(var)) => Some(env.var(var).ok_or_else(|| {
            bad(
                format!("api_key_env names `{var}`, which is not set"),
                "set that variable or remove api_key_env",
            )
        })?),
        (None, None) => None,
    };
    Ok(RemoteModel {
        name: r.name.clone(),
        url,
        api_key,
        model: r.model.clone().unwrap_or_else(|| r.name.clone()),
        kind,
        timeout: Duration::from_secs(r.timeout.unwrap_or(300).clamp(1, 3600)),
        sizes,
        stream: r.stream.unwrap_or(kind == RemoteKind::Easel),
        edits: r.edits.unwrap_or(true),
        retries: r.retries.unwrap_or(3).min(10),
        max_retry_wait: Duration::from_secs(r.max_retry_wait.unwrap_or(30).clamp(1, 600)),
    })
}

fn validate_provider(p: &ProviderConfig, url_setting: &str) -> Result<(), ConfigError> {
    if p.name.is_empty() || p.name.contains('/') {
        return Err(ConfigError::new(
            format!("providers.{}", p.name),
            "the name is empty or contains `/`",
            "use a short name like `ollama`",
        ));
    }
    if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
        return Err(ConfigError::new(
            url_setting,
            format!("`{}` is not an http(s) URL", p.base_url),
            "use the server's OpenAI-compatible base, for example http://localhost:11434/v1",
        ));
    }
    Ok(())
}

/// The most images one request may ask for (the tool's and the API's `n`): the queue must
/// hold at least one such request.
fn request_max_images() -> u32 {
    10
}

fn parse_bool(setting: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(ConfigError::new(
            setting,
            format!("`{other}` is not true or false"),
            "use true or false",
        )),
    }
}

fn parse_positive(setting: &str, value: &str, max: usize) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            setting,
            format!("`{value}` is not a number from 1 to {max}"),
            "use 1 unless you have several GPUs' worth of memory",
        )),
    }
}

/// `http://localhost:11434/v1` → `localhost`; keeps model ids readable (`localhost/llama3.2`).
fn provider_name_from_url(url: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("llm");
    match host {
        "api.openai.com" => "openai".into(),
        "" => "llm".into(),
        h => h.replace('/', "_"),
    }
}

/// `target/site` under the working directory when it exists (running from the repository root),
/// else the `site` folder beside the binary's profile folder (`target/<profile>/easel` → `target/site`).
fn default_site_root() -> PathBuf {
    let local = PathBuf::from("target/site");
    if local.join("pkg").is_dir() {
        return local;
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(target) = exe.parent().and_then(Path::parent) {
            let beside = target.join("site");
            if beside.join("pkg").is_dir() {
                return beside;
            }
        }
    }
    local
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_environment_gives_embedded_defaults_and_direct_provider() {
        let c = Config::load(&env(&[])).expect("defaults are valid");
        assert_eq!(c.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.providers.is_empty());
        assert_eq!(c.default_llm, None);
        assert_eq!(c.images.concurrency, 1);
        assert_eq!(c.images.queue_max, DEFAULT_IMAGE_QUEUE_MAX);
        assert_eq!(c.llm_idle_timeout, Duration::from_secs(120));
        assert_eq!(c.max_tool_calls, 4);
        assert!(!c.trust_proxy);
        assert!(c.cors_origins.is_empty());
        assert_eq!(c.auth, AuthSetting::Accounts, "accounts are the default");
    }

    #[test]
    fn no_sign_in_is_refused_unless_easel_listens_on_loopback_only() {
        let c = Config::load(&env(&[("EASEL_AUTH", "none")])).unwrap();
        assert_eq!(c.auth, AuthSetting::None);
        let err = Config::load(&env(&[
            ("EASEL_AUTH", "none"),
            ("EASEL_ADDR", "0.0.0.0:3000"),
        ]))
        .unwrap_err();
        assert_eq!(err.setting, "EASEL_AUTH");
        assert!(err.fix.contains("127.0.0.1"), "{err}");
        let err = Config::load(&env(&[("EASEL_ADMIN_EMAIL", "a@b.c")])).unwrap_err();
        assert_eq!(err.setting, "EASEL_ADMIN_EMAIL");
    }

    #[test]
    fn security_and_limit_settings_are_read_and_checked() {
        let c = Config::load(&env(&[
            ("EASEL_PUBLIC_URL", "https://easel.example.com/"),
            ("EASEL_ALLOWED_HOSTS", "a.lan:3000, b.lan"),
            ("EASEL_TRUST_PROXY", "yes"),
            ("EASEL_IMAGE_QUEUE_MAX", "40"),
            ("EASEL_LLM_IDLE_TIMEOUT", "5"),
            ("DATABASE_URL", "postgres://easel@localhost/easel"),
        ]))
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://easel.example.com"));
        assert_eq!(c.allowed_hosts, ["a.lan:3000", "b.lan"]);
        assert!(c.trust_proxy);
        assert_eq!(c.images.queue_max, 40);
        assert_eq!(c.llm_idle_timeout, Duration::from_secs(5));
        for (key, value) in [
            ("EASEL_PUBLIC_URL", "easel.example.com"),
            ("EASEL_TRUST_PROXY", "maybe"),
            ("EASEL_IMAGE_QUEUE_MAX", "3"),
            ("EASEL_LLM_IDLE_TIMEOUT", "0"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let err = Config::load(&env(&[(key, value)])).unwrap_err();
            assert_eq!(err.setting, key, "{err}");
        }
    }

    #[test]
    fn openai_key_alone_means_openai_with_a_default_model() {
        let c = Config::load(&env(&[("OPENAI_API_KEY", "sk-test")])).unwrap();
        assert_eq!(c.providers[0].name, "openai");
        assert_eq!(c.providers[0].base_url, OPENAI_URL);
        assert_eq!(c.default_llm.as_deref(), Some("openai/gpt-4o-mini"));
    }

    #[test]
    fn local_server_url_and_model_make_a_named_provider() {
        let c = Config::load(&env(&[
            ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
            ("EASEL_LLM_MODEL", "llama3.2"),
        ]))
        .unwrap();
        assert_eq!(c.providers[0].name, "localhost");
        assert_eq!(c.default_llm.as_deref(), Some("localhost/llama3.2"));
        assert_eq!(c.providers[0].tool_choice, ToolChoiceSupport::Named);
    }

    #[test]
    fn tool_choice_support_is_read_per_provider() {
        let c = Config::load(&env(&[
            ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
            ("EASEL_LLM_TOOL_CHOICE", "none"),
        ]))
        .unwrap();
        assert_eq!(c.providers[0].tool_choice, ToolChoiceSupport::Instruction);
        let err = Config::load(&env(&[
            ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
            ("EASEL_LLM_TOOL_CHOICE", "always"),
        ]))
        .unwrap_err();
        assert_eq!(err.setting, "EASEL_LLM_TOOL_CHOICE");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("easel.toml");
        std::fs::write(
            &path,
            "[[providers]]\nname = \"lms\"\nbase_url = \"http://localhost:1234/v1\"\ntool_choice = \"required\"\n",
        )
        .unwrap();
        let c = Config::load(&env(&[("EASEL_CONFIG", path.to_str().unwrap())])).unwrap();
        assert_eq!(c.providers[0].tool_choice, ToolChoiceSupport::Required);
        assert_eq!(
            ToolChoiceSupport::Named.fallback(),
            Some(ToolChoiceSupport::Required)
        );
        assert_eq!(ToolChoiceSupport::Instruction.fallback(), None);
    }

    #[test]
    fn bad_address_names_the_setting() {
        let err = Config::load(&env(&[("EASEL_ADDR", "nonsense")])).unwrap_err();
        assert_eq!(err.setting, "EASEL_ADDR");
        assert!(err.to_string().contains("HOST:PORT"));
    }

    #[test]
    fn model_without_provider_is_rejected() {
        let err = Config::load(&env(&[("EASEL_LLM_MODEL", "gpt-4o")])).unwrap_err();
        assert_eq!(err.setting, "EASEL_LLM_MODEL");
    }

    #[test]
    fn bad_base_url_and_unknown_provider_setting_are_rejected() {
        let err = Config::load(&env(&[("OPENAI_BASE_URL", "localhost:11434")])).unwrap_err();
        assert_eq!(err.setting, "OPENAI_BASE_URL");
        let err = Config::load(&env(&[("EASEL_EXECUTION_PROVIDER", "tpu")])).unwrap_err();
        assert_eq!(err.setting, "EASEL_EXECUTION_PROVIDER");
        let err = Config::load(&env(&[("EASEL_IMAGE_CONCURRENCY", "0")])).unwrap_err();
        assert_eq!(err.setting, "EASEL_IMAGE_CONCURRENCY");
    }

    #[test]
    fn config_file_lists_several_providers_and_env_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("easel.toml");
        std::fs::write(
            &path,
            r#"
addr = "127.0.0.1:4000"
default_llm = "vllm/qwen"
[[providers]]
name = "ollama"
base_url = "http://localhost:11434/v1"
models = ["llama3.2"]
[[providers]]
name = "vllm"
base_url = "http://gpu:8000/v1"
api_key_env = "VLLM_KEY"
models = ["qwen"]
[images]
concurrency = 2
"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = Config::load(&env(&[
            ("EASEL_CONFIG", p),
            ("VLLM_KEY", "k"),
            ("EASEL_ADDR", "127.0.0.1:5000"),
        ]))
        .unwrap();
        assert_eq!(c.addr.port(), 5000);
        assert_eq!(c.providers.len(), 2);
        assert_eq!(c.providers[1].api_key, "k");
        assert_eq!(c.default_llm.as_deref(), Some("vllm/qwen"));
        assert_eq!(c.images.concurrency, 2);

        let err = Config::load(&env(&[("EASEL_CONFIG", p)])).unwrap_err();
        assert!(err.setting.contains("api_key_env"), "{err}");

        std::fs::write(&path, "adress = 1").unwrap();
        let err = Config::load(&env(&[("EASEL_CONFIG", p)])).unwrap_err();
        assert!(err.problem.contains("adress"), "{err}");
    }
}
