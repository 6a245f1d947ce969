//! The real `easel` binary as a child process (`easel serve` or `easel worker`), over a
//! database and a models folder that outlive it, for tests that kill it (`kill -9`), stop it
//! (SIGTERM), or run several of them on one PostgreSQL database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A models folder with the tiny model set up to paint slowly enough to be interrupted
/// (`quality: high` is 150 Heun steps; 64×64 stays quick).
pub fn slow_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    let model = models.join("tiny-sd");
    copy_dir(&super::test_models_dir().join("tiny-sd"), &model);
    std::fs::write(
        model.join("easel.toml"),
        "default_size = \"64x64\"\nallowed_sizes = [\"64x64\", \"256x256\"]\nmax_size = 256\ndefault_sampler = \"heun\"\n[steps]\nauto = 2\nhigh = 150\n",
    )
    .unwrap();
    models
}

/// The `easel` binary for a command-line run on `models`, with a clean environment (CPU,
/// the test ONNX Runtime, a database under `data`); callers add what they test.
pub fn cli(models: &Path, data: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_easel"));
    command
        .env_clear()
        .env("EASEL_MODELS_DIR", models)
        .env("EASEL_EXECUTION_PROVIDER", "cpu")
        .env("ORT_DYLIB_PATH", super::ort_library())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", data.join("e.db").display()),
        );
    command
}

pub fn copy_dir(from: &Path, to: &Path) {
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

pub fn client() -> reqwest::Client {
    easel::net::install_tls_provider();
    // A stuck stream fails the test instead of hanging it.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A client that sends `Authorization: Bearer key` with every request.
pub fn bearer_client(key: &str) -> reqwest::Client {
    easel::net::install_tls_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ids of the image models in an `/api/models` answer.
pub fn image_models(models: &Value) -> Vec<&str> {
    models["image"]
        .as_array()
        .map(|list| list.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default()
}

/// One `easel` process; killed when dropped.
pub struct Easel {
    child: Child,
    /// `http://127.0.0.1:PORT` (a worker serves no HTTP; its address is unused).
    pub base: String,
}

impl Easel {
    /// `easel serve` on a free port, ready when `/api/health` answers. The process is named
    /// after its role in the test (`EASEL_NODE_NAME`), so a restart takes over its work.
    pub async fn serve(
        database_url: &str,
        models: &Path,
        llm: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Easel {
        Self::serve_with_args(database_url, models, llm, extra, &[]).await
    }

    pub async fn serve_with_args(
        database_url: &str,
        models: &Path,
        llm: Option<&str>,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> Easel {
        let port = free_port();
        let mut command = Self::command("serve", database_url, models, extra);
        command
            .args(args)
            .env("EASEL_ADDR", format!("127.0.0.1:{port}"));
        if !extra.iter().any(|(k, _)| *k == "EASEL_NODE_NAME") {
            command.env("EASEL_NODE_NAME", "web");
        }
        if let Some(llm) = llm {
            command
                .env("OPENAI_BASE_URL", llm)
                .env("OPENAI_API_KEY", "test-key")
                .env("EASEL_LLM_MODEL", "scripted");
        }
        let child = command.spawn().expect("the easel binary starts");
        let easel = Easel {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let mut easel = easel;
        let client = client();
        for _ in 0..600 {
            if let Ok(Some(status)) = easel.child.try_wait() {
                panic!("easel exited before it answered: {status}");
            }
            if let Ok(r) = client.get(easel.url("/api/health")).send().await {
                if r.status().is_success() {
                    return easel;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("easel did not start");
    }

    /// `easel worker` (no HTTP: tests see it through a web node's `/api/health`).
    pub fn worker(database_url: &str, models: &Path, name: &str, extra: &[(&str, &str)]) -> Easel {
        let mut command = Self::command("worker", database_url, models, extra);
        command.env("EASEL_NODE_NAME", name);
        Easel {
            child: command.spawn().expect("the easel binary starts"),
            base: String::new(),
        }
    }

    fn command(
        subcommand: &str,
        database_url: &str,
        models: &Path,
        extra: &[(&str, &str)],
    ) -> Command {
        let dir = models.parent().unwrap();
        easel::net::install_tls_provider();
        let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("EASEL_MODELS_DIR", models)
            .env("EASEL_EXECUTION_PROVIDER", "cpu")
            .env("EASEL_ORT_THREADS", "1")
            .env("EASEL_AUTH", "none")
            .env("ORT_DYLIB_PATH", super::ort_library())
            .env("LEPTOS_SITE_ROOT", dir.join("site"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            command.env(k, v);
        }
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until this node offers image models (workers announce theirs when they start);
    /// returns `/api/models`.
    pub async fn wait_for_models(&self) -> Value {
        self.wait_for_models_where(Duration::from_secs(30), "image models", |models| {
            models["image_creation_available"] == true
        })
        .await
    }

    /// Waits until this node offers exactly the image models `ids` (sorted), as a models folder
    /// change reaches it (a server looks at its folder every two seconds; other nodes learn of
    /// a worker's change when it advertises again); returns the default image model.
    pub async fn wait_for_image_models(&self, ids: &[&str]) -> String {
        let what = format!("exactly the image models {ids:?}");
        let models = self
            .wait_for_models_where(Duration::from_secs(60), &what, |models| {
                image_models(models) == ids
            })
            .await;
        models["default_image_model"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `/api/models` until `done` holds; returns it. Fails the test after `timeout`,
    /// saying `what` it waited for and what was offered last.
    pub async fn wait_for_models_where(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let client = client();
        let started = Instant::now();
        loop {
            let models = get(&client, self.url("/api/models")).await;
            if done(&models) {
                return models;
            }
            assert!(
                started.elapsed() < timeout,
                "{} did not offer {what}: {models}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new conversation with Image creation on; its id.
    pub async fn painting_conversation(&self, client: &reqwest::Client) -> String {
        let created = post(
            client,
            self.url("/api/conversations"),
            serde_json::json!({"internal_tools": {"image_creation": true}}),
        )
        .await;
        created["id"].as_str().unwrap().to_string()
    }

    /// Posts `content` to `conversation`; the answer (`run_id`, `assistant_message_id`, …).
    pub async fn say(&self, client: &reqwest::Client, conversation: &str, content: &str) -> Value {
        post(
            client,
            self.url(&format!("/api/conversations/{conversation}/messages")),
            serde_json::json!({ "content": content }),
        )
        .await
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns how long the process took to exit.
    pub fn terminate(mut self) -> Duration {
        let started = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("easel did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Easel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let r = client.post(url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

pub async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The images of a `/v1` answer (`data[].b64_json`), decoded.
pub fn b64_images(answer: &Value) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {answer}"))
        .iter()
        .map(|d| {
            base64::engine::general_purpose::STANDARD
                .decode(d["b64_json"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// The PNGs `/v1` on `easel` makes for `body` (the reference for the same request elsewhere).
pub async fn reference(easel: &Easel, body: Value) -> Vec<Vec<u8>> {
    b64_images(&post(&client(), easel.url("/v1/images/generations"), body).await)
}

/// An image's pixels (RGB), whatever its encoding.
pub fn pixels(encoded: &[u8]) -> Vec<u8> {
    image::load_from_memory(encoded)
        .unwrap()
        .to_rgb8()
        .into_raw()
}
