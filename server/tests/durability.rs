//! The real `easel` binary, killed with SIGKILL and stopped with SIGTERM, on a real SQLite file:
//!
//! - every image a client was told about (`image.done`) survives a `kill -9`, a tool call that
//!   completed before the kill is still recorded, and the reply cut by the crash receives the
//!   images its job finishes after the restart, with the pixels it would have had;
//! - queued Studio jobs finish after a restart, and the one killed while running paints the
//!   same pixels;
//! - SIGTERM with a browser following a reply and with a hung LLM: the process exits within the
//!   deadline and the reply is saved as stopped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{read_events, read_events_until, Reply, ScriptedLlm};
use serde_json::{json, Value};

/// A folder with the tiny model set up to paint slowly enough to be interrupted.
fn slow_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    let model = models.join("tiny-sd");
    copy_dir(&common::test_models_dir().join("tiny-sd"), &model);
    std::fs::write(
        model.join("easel.toml"),
        "default_size = \"64x64\"\nallowed_sizes = [\"64x64\", \"256x256\"]\nmax_size = 256\ndefault_sampler = \"heun\"\n[steps]\nauto = 2\nhigh = 150\n",
    )
    .unwrap();
    models
}

fn copy_dir(from: &Path, to: &Path) {
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

fn client() -> reqwest::Client {
    easel::net::install_tls_provider();
    // A stuck stream fails the test instead of hanging it.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `easel serve` process over a database and models folder that outlive it.
struct Easel {
    child: Child,
    base: String,
}

impl Easel {
    async fn start(
        db: &common::TestDatabase,
        models: &Path,
        llm: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Easel {
        let dir = models.parent().unwrap();
        easel::net::install_tls_provider();
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("EASEL_ADDR", format!("127.0.0.1:{port}"))
            .env("EASEL_MODELS_DIR", models)
            .env("EASEL_EXECUTION_PROVIDER", "cpu")
            .env("EASEL_ORT_THREADS", "1")
            .env("EASEL_AUTH", "none")
            .env("ORT_DYLIB_PATH", common::ort_library())
            .env("LEPTOS_SITE_ROOT", dir.join("site"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(llm) = llm {
            command
                .env("OPENAI_BASE_URL", llm)
                .env("OPENAI_API_KEY", "test-key")
                .env("EASEL_LLM_MODEL", "scripted");
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().expect("the easel binary starts");
        let easel = Easel {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = client();
        for _ in 0..300 {
            if let Ok(r) = client.get(easel.url("/api/health")).send().await {
                if r.status().is_success() {
                    return easel;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("easel did not start");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns how long the process took to exit.
    fn terminate(mut self) -> Duration {
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

async fn post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let r = client.post(url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn pieces(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The PNG the same request makes on a server that runs it through without interruption.
async fn reference_png(easel: &Easel, body: Value) -> Vec<Vec<u8>> {
    let client = client();
    let answer = post(&client, easel.url("/v1/images/generations"), body).await;
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            base64::engine::general_purpose::STANDARD
                .decode(d["b64_json"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_announced_image_and_the_cut_reply_still_gets_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let first = json!({"prompt": "a quick sketch", "size": "64x64", "seed": 5});
    let second = json!({"prompt": "a grand mural", "n": 4, "size": "256x256", "quality": "high", "seed": 77});
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![("image_generator", pieces(&first.to_string()))]),
        Reply::ToolCalls(vec![("image_generator", pieces(&second.to_string()))]),
        Reply::Text(vec!["Done."]),
    ])
    .await;
    let client = client();
    let easel = Easel::start(&db, &models, Some(&llm.base_url), &[]).await;
    let conversation = post(
        &client,
        easel.url("/api/conversations"),
        json!({"internal_tools": {"image_creation": true}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = post(
        &client,
        easel.url(&format!("/api/conversations/{conversation}/messages")),
        json!({"content": "a sketch, then a mural"}),
    )
    .await;
    let run = started["run_id"].as_str().unwrap();
    let message = started["assistant_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Follow until the first image of the second call is announced, then kill at once.
    let events = read_events_until(
        &client,
        &easel.url(&format!("/api/runs/{run}/events")),
        |e| e.event == "image.done" && e.data["index"].as_u64().unwrap_or(0) >= 1,
    )
    .await;
    easel.kill9();
    let announced: Vec<String> = events
        .iter()
        .filter(|e| e.event == "image.done")
        .map(|e| e.data["image_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        announced.len() >= 2,
        "{:?}",
        events.iter().map(|e| &e.event).collect::<Vec<_>>()
    );

    let easel = Easel::start(&db, &models, Some(&llm.base_url), &[]).await;
    for id in &announced {
        let r = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "announced image {id} survived the kill");
    }
    // The reply was cut: it says so, and keeps the completed tool call with its result.
    let detail = get(
        &client,
        easel.url(&format!("/api/conversations/{conversation}?images=url")),
    )
    .await;
    let reply = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message.as_str())
        .unwrap()
        .clone();
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["error"]["code"], "interrupted");
    let calls = reply["tool_calls"].as_array().unwrap();
    assert_eq!(
        calls.len(),
        1,
        "the first call completed and was stored: {calls:?}"
    );
    assert!(calls[0]["result"].as_str().unwrap().contains("\"ok\""));

    // The second call's job goes on after the restart and lands all its images on the reply.
    let mut images = Vec::new();
    for _ in 0..600 {
        let detail = get(
            &client,
            easel.url(&format!("/api/conversations/{conversation}?images=url")),
        )
        .await;
        images = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == message.as_str())
            .unwrap()["images"]
            .as_array()
            .unwrap()
            .clone();
        if images.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        images.len(),
        5,
        "1 image of the first call and 4 of the second"
    );
    // Same pixels as an uninterrupted run of the same request.
    let expected = reference_png(
        &easel,
        json!({"prompt": "a grand mural", "n": 4, "size": "256x256", "quality": "high", "seed": 77}),
    )
    .await;
    for (k, image) in images.iter().skip(1).enumerate() {
        let id = image["id"].as_str().unwrap();
        let png = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            decode(&png),
            decode(&expected[k]),
            "image {k} paints the same pixels"
        );
    }
}

fn decode(png: &[u8]) -> Vec<u8> {
    image::load_from_memory(png).unwrap().to_rgb8().into_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_studio_jobs_finish_after_a_restart_with_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let client = client();
    let easel = Easel::start(&db, &models, None, &[]).await;
    let request = |seed: u64| json!({"prompt": "a harbour at night", "n": 2, "size": "256x256", "steps": 60, "seed": seed, "preview": "none"});
    let mut jobs = Vec::new();
    for seed in [1, 2, 3] {
        let started = post(&client, easel.url("/api/studio/generations"), request(seed)).await;
        jobs.push(started["job_id"].as_str().unwrap().to_string());
    }
    // Kill while the first job is running (it has started its steps).
    let _ = read_events_until(
        &client,
        &easel.url(&format!("/api/studio/jobs/{}/events", jobs[0])),
        |e| e.event == "image.progress",
    )
    .await;
    easel.kill9();

    let easel = Easel::start(&db, &models, None, &[]).await;
    for job in &jobs {
        let events = read_events(
            &client,
            &easel.url(&format!("/api/studio/jobs/{job}/events")),
            None,
        )
        .await;
        assert_eq!(
            events.last().map(|e| e.event.as_str()),
            Some("run.finished"),
            "job {job} finished after the restart"
        );
    }
    let gallery = get(&client, easel.url("/api/studio/images")).await;
    let gallery = gallery.as_array().unwrap();
    assert_eq!(gallery.len(), 6, "two images for each of three jobs");
    let killed: Vec<&Value> = gallery
        .iter()
        .filter(|i| {
            i["metadata"]["seed"].as_u64().is_some_and(|s| s <= 2)
                && i["metadata"]["tool_arguments"]["seed"] == 1
        })
        .collect();
    assert_eq!(killed.len(), 2);
    let expected = reference_png(
        &easel,
        json!({"prompt": "a harbour at night", "n": 2, "size": "256x256", "steps": 60, "seed": 1}),
    )
    .await;
    let mut ours: Vec<(u64, Vec<u8>)> = Vec::new();
    for image in killed {
        let id = image["id"].as_str().unwrap();
        let png = client
            .get(easel.url(&format!("/api/images/{id}.png")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        ours.push((image["metadata"]["seed"].as_u64().unwrap(), decode(&png)));
    }
    ours.sort();
    assert_eq!(ours[0].1, decode(&expected[0]));
    assert_eq!(ours[1].1, decode(&expected[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_replies_and_exits_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let db = common::TestDatabase::new(dir.path(), "easel");
    let llm = ScriptedLlm::start(vec![Reply::Silent, Reply::Slow(vec!["a", "b"], 200)]).await;
    let client = client();
    let easel = Easel::start(&db, &models, Some(&llm.base_url), &[]).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let conversation = post(&client, easel.url("/api/conversations"), json!({})).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = post(
            &client,
            easel.url(&format!("/api/conversations/{conversation}/messages")),
            json!({"content": "talk to me"}),
        )
        .await;
        runs.push((
            conversation,
            started["run_id"].as_str().unwrap().to_string(),
        ));
    }
    // A browser follows the second reply while the first waits on an LLM that never answers.
    let follower = {
        let client = client.clone();
        let url = easel.url(&format!("/api/runs/{}/events", runs[1].1));
        tokio::spawn(async move { read_events(&client, &url, None).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = tokio::task::spawn_blocking(move || easel.terminate())
        .await
        .unwrap();
    assert!(took < Duration::from_secs(10), "exited in {took:?}");
    let followed = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the event stream ended with the server")
        .unwrap();
    assert!(!followed.is_empty());

    let easel = Easel::start(&db, &models, Some(&llm.base_url), &[]).await;
    for (conversation, _) in &runs {
        let detail = get(
            &client,
            easel.url(&format!("/api/conversations/{conversation}")),
        )
        .await;
        let reply = detail["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(reply["status"], "cancelled", "saved as stopped: {reply}");
    }
}
