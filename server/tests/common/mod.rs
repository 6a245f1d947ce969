//! Test support: the real Easel server on 127.0.0.1 with a temporary SQLite file, a scripted
//! OpenAI-compatible LLM that speaks the real streaming wire format, an SSE reader, and the
//! paths of the committed tiny models and ONNX Runtime.

#![allow(dead_code)]

pub mod llm;
pub mod process;
pub mod sse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use easel::config::{Config, ImageSettings};
use serde_json::Value;

#[allow(unused_imports)]
pub use llm::{LocalServer, Reply, ScriptedLlm, ToolChoiceKind};
#[allow(unused_imports)]
pub use sse::{read_events, read_events_until, SseEvent};

/// A running Easel with its own database and temp folder.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub state: easel::http::AppState,
    task: tokio::task::JoinHandle<()>,
    database: Option<TestDatabase>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        self.database.take();
    }
}

/// The PostgreSQL server of the PostgreSQL pass (`EASEL_TEST_BACKEND=postgres`, set by
/// `cargo xtask test`), or `None` for the SQLite pass.
pub fn postgres_server() -> Option<String> {
    (std::env::var("EASEL_TEST_BACKEND").ok().as_deref() == Some("postgres")).then(|| {
        std::env::var("EASEL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    })
}

/// A database of its own for one test: a SQLite file in `dir`, or a fresh PostgreSQL database
/// that is dropped with this value.
pub struct TestDatabase {
    pub url: String,
    admin: Option<(String, String)>,
}

impl TestDatabase {
    pub fn new(dir: &std::path::Path, name: &str) -> TestDatabase {
        match postgres_server() {
            None => TestDatabase {
                url: format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
                admin: None,
            },
            Some(server) => {
                let database = format!("easel_test_{}", uuid_like());
                let admin = server.clone();
                let db = database.clone();
                run_sql(&admin, &format!("CREATE DATABASE {db}"));
                let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
                TestDatabase {
                    url: format!("{base}/{database}"),
                    admin: Some((server, database)),
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, database)) = self.admin.take() {
            run_sql(
                &server,
                &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            );
        }
    }
}

fn uuid_like() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// One statement on the PostgreSQL server, from any context (a thread of its own).
fn run_sql(server: &str, sql: &str) {
    let (server, sql) = (server.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::postgres::PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
            sqlx::Executor::execute(&mut conn, sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    })
    .join()
    .expect("the statement ran");
}

/// The repository's `server/` folder.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn test_models_dir() -> PathBuf {
    manifest_dir().join("tests/assets/models")
}

/// ONNX Runtime for the engine tests: `ORT_DYLIB_PATH` (set by `cargo xtask test`) or the
/// project-local copy `cargo xtask setup` installs. Tests that need it fail loudly without it.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return p;
    }
    let local = manifest_dir().join("../.easel/onnxruntime");
    std::fs::read_dir(&local)
        .ok()
        .and_then(|entries| {
            entries.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(easel::imaging::runtime::LIBRARY_NAME))
            })
        })
        .unwrap_or_else(|| {
            panic!("ONNX Runtime not found: run `cargo xtask setup` or set ORT_DYLIB_PATH")
        })
}

pub fn image_settings() -> ImageSettings {
    ImageSettings {
        concurrency: 1,
        ort_dylib_path: Some(ort_library()),
        execution_provider: "cpu".into(),
        threads: 1,
        queue_max: easel::config::DEFAULT_IMAGE_QUEUE_MAX,
        workers: 1,
        remote: Vec::new(),
        chunk_long_prompts: true,
        prompt_weighting: true,
        recommended_model: easel::config::DEFAULT_RECOMMENDED_MODEL.into(),
        graph_cache: None,
        graph_cache_min_bytes: easel::config::GRAPH_CACHE_MIN_BYTES,
    }
}

/// Builder for a test server's configuration.
pub struct Setup {
    pub llm: Option<String>,
    pub models: Option<PathBuf>,
    pub image_model: Option<String>,
    pub database: Option<PathBuf>,
    /// The image queue's capacity in images (default 100).
    pub queue_max: Option<u32>,
    /// Whether this server paints (false: its jobs wait in the queue).
    pub paints: bool,
    /// `none` (one local user, the default here) or `accounts`.
    pub auth: &'static str,
    /// The LLM provider's `tool_choice` setting (`EASEL_LLM_TOOL_CHOICE`), when not the default.
    pub tool_choice: Option<&'static str>,
    /// `EASEL_LEASE_TIMEOUT` in seconds, when not the default (PostgreSQL: the heartbeat, the
    /// safety net under cancel notifications, beats every sixth of it).
    pub lease_timeout: Option<u32>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            llm: None,
            models: None,
            image_model: Some("tiny-sd".into()),
            database: None,
            queue_max: None,
            paints: true,
            auth: "none",
            tool_choice: None,
            lease_timeout: None,
        }
    }
}

impl Setup {
    /// Talks to the scripted LLM at `base_url` (…/v1).
    pub fn with_llm(base_url: &str) -> Setup {
        Setup {
            llm: Some(base_url.to_string()),
            ..Setup::default()
        }
    }

    pub fn models(mut self) -> Setup {
        self.models = Some(test_models_dir());
        self
    }

    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = match &self.database {
            Some(path) => TestDatabase {
                url: format!("sqlite://{}", path.display()),
                admin: None,
            },
            None => TestDatabase::new(dir.path(), "easel"),
        };
        let mut env = std::collections::HashMap::new();
        env.insert("DATABASE_URL".to_string(), database.url.clone());
        env.insert("EASEL_ADDR".to_string(), "127.0.0.1:0".to_string());
        // Most tests act as the one local user; the accounts tests sign in.
        env.insert("EASEL_AUTH".to_string(), self.auth.to_string());
        let empty_models = dir.path().join("no-models");
        std::fs::create_dir_all(&empty_models).expect("models dir");
        env.insert(
            "EASEL_MODELS_DIR".into(),
            self.models
                .clone()
                .unwrap_or(empty_models)
                .display()
                .to_string(),
        );
        if let Some(llm) = &self.llm {
            env.insert("OPENAI_BASE_URL".into(), llm.clone());
            env.insert("OPENAI_API_KEY".into(), "test-key".into());
            env.insert("EASEL_LLM_MODEL".into(), "scripted".into());
        }
        if let Some(tool_choice) = self.tool_choice {
            env.insert("EASEL_LLM_TOOL_CHOICE".into(), tool_choice.into());
        }
        if let Some(seconds) = self.lease_timeout {
            env.insert("EASEL_LEASE_TIMEOUT".into(), seconds.to_string());
        }
        let mut config = Config::load(&env).expect("valid test config");
        if self.models.is_some() {
            config.images = image_settings();
        }
        config.image_model = self.image_model.clone();
        if let Some(max) = self.queue_max {
            config.images.queue_max = max;
        }
        if !self.paints {
            config.images.workers = 0;
        }
        config.site_root = dir.path().join("site");
        let mut server = start_with(config, dir).await;
        server.database = Some(database);
        server
    }
}

/// Starts a server on a configuration whose `DATABASE_URL` is `database`'s (kept alive, and
/// dropped, with the server).
pub async fn start_on(
    mut config: Config,
    dir: tempfile::TempDir,
    database: TestDatabase,
) -> TestServer {
    config.database_url = database.url.clone();
    let mut server = start_with(config, dir).await;
    server.database = Some(database);
    server
}

pub async fn start_with(mut config: Config, dir: tempfile::TempDir) -> TestServer {
    config.addr = "127.0.0.1:0".parse().expect("addr");
    let listener = easel::bind(&mut config).await.expect("bind");
    let addr = config.addr;
    let state = easel::build_state(config).await.expect("server state");
    let router = easel::http::router(state.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    TestServer {
        addr,
        base: format!("http://{addr}"),
        dir,
        client,
        state,
        task,
        database: None,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .client
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Creates a conversation (optionally with image creation on) and returns its id.
    pub async fn conversation(&self, image_creation: bool) -> String {
        let (status, body) = self
            .send(
                "POST",
                "/api/conversations",
                serde_json::json!({"internal_tools": {"image_creation": image_creation}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Posts a message; returns the response body (message_id, assistant_message_id, run_id).
    pub async fn say(&self, conversation: &str, text: &str) -> Value {
        let (status, body) = self
            .send(
                "POST",
                &format!("/api/conversations/{conversation}/messages"),
                serde_json::json!({"content": text}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body
    }

    /// All events of a run until its end (the stream closes after the last one).
    pub async fn events(&self, run_id: &str) -> Vec<SseEvent> {
        read_events(
            &self.client,
            &self.url(&format!("/api/runs/{run_id}/events")),
            None,
        )
        .await
    }

    /// Says something and waits for the run to end; returns its events.
    pub async fn turn(&self, conversation: &str, text: &str) -> Vec<SseEvent> {
        let started = self.say(conversation, text).await;
        self.events(started["run_id"].as_str().expect("run id"))
            .await
    }

    pub async fn messages(&self, conversation: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/conversations/{conversation}?images=url"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }
}

/// The names of a run's events, in order.
pub fn names(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}

pub fn data_of<'a>(events: &'a [SseEvent], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.event == name)
        .map(|e| &e.data)
        .collect()
}

/// The largest absolute difference between two equally long float slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
