//! `easel db copy`: a SQLite installation populated through the real server (accounts, an API
//! key, an agent with versions, a chat reply with its image, a Studio job) is copied by the
//! real binary into an empty database (PostgreSQL in the PostgreSQL pass, a new SQLite file
//! otherwise); the server started on the copy signs the same people in, with the same key, and
//! shows the same conversation and the same image bytes. A second copy into the now non-empty
//! target is refused. The tool's table list is the schema's.

mod common;

use std::process::Command;

use common::process::{bearer_client, client, slow_models, Easel};
use common::{read_events, Reply, ScriptedLlm};
use serde_json::{json, Value};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

fn accounts() -> Vec<(&'static str, &'static str)> {
    vec![
        ("EASEL_AUTH", "accounts"),
        ("EASEL_ADMIN_EMAIL", EMAIL),
        ("EASEL_ADMIN_PASSWORD", PASSWORD),
    ]
}

/// Signs in with the password; returns the session cookie.
async fn sign_in(easel: &Easel) -> String {
    let r = client()
        .post(easel.url("/api/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    cookie
}

struct Caller {
    client: reqwest::Client,
    key: String,
}

impl Caller {
    async fn send(&self, request: reqwest::RequestBuilder) -> Value {
        let r = request.bearer_auth(&self.key).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, url: String) -> Value {
        self.send(self.client.get(url)).await
    }

    async fn post(&self, url: String, body: Value) -> Value {
        self.send(self.client.post(url).json(&body)).await
    }

    async fn bytes(&self, url: String) -> Vec<u8> {
        let r = self
            .client
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }
}

fn copy(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["db", "copy", "--from", from, "--to", to])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_moves_to_an_empty_database_whole() {
    let dir = tempfile::tempdir().unwrap();
    let models = slow_models(dir.path());
    let source = format!("sqlite://{}", dir.path().join("source.db").display());
    let target = common::TestDatabase::new(dir.path(), "target");
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![(
            "image_generator",
            vec![json!({"prompt": "a café at dawn — 朝 ☕", "size": "64x64"}).to_string()],
        )]),
        Reply::Text(vec!["Here it is."]),
    ])
    .await;

    // Populate the SQLite installation through the real server.
    let easel = Easel::serve(&source, &models, Some(&llm.base_url), &accounts()).await;
    let cookie = sign_in(&easel).await;
    let created: Value = client()
        .post(easel.url("/api/keys"))
        .header("cookie", &cookie)
        .json(&json!({"name": "moving day"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caller = Caller {
        client: client(),
        key: created["key"].as_str().unwrap().to_string(),
    };
    let agent = caller
        .post(
            easel.url("/api/agents"),
            json!({"name": "Painter", "instructions": "Paint."}),
        )
        .await;
    let agent_id = agent["id"].as_str().unwrap().to_string();
    caller
        .send(
            caller
                .client
                .put(easel.url(&format!("/api/agents/{agent_id}")))
                .json(&json!({"name": "Painter", "instructions": "Paint boldly."})),
        )
        .await;
    let conversation = caller
        .post(
            easel.url("/api/conversations"),
            json!({"internal_tools": {"image_creation": true}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = caller
        .post(
            easel.url(&format!("/api/conversations/{conversation}/messages")),
            json!({"content": "paint a café"}),
        )
        .await;
    let run = started["run_id"].as_str().unwrap();
    let events = read_events_as(&caller, &easel.url(&format!("/api/runs/{run}/events"))).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("run.finished"),
        "{events:?}"
    );
    let job = caller
        .post(
            easel.url("/api/studio/generations"),
            json!({"prompt": "two boats", "size": "64x64", "n": 2, "seed": 4}),
        )
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = read_events_as(
        &caller,
        &easel.url(&format!("/api/studio/jobs/{job}/events")),
    )
    .await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("run.finished"),
        "{events:?}"
    );
    let before = caller
        .get(easel.url(&format!("/api/conversations/{conversation}")))
        .await;
    let image_id = before["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|m| m["images"].as_array().and_then(|i| i.first()).cloned())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let png = caller
        .bytes(easel.url(&format!("/api/images/{image_id}.png")))
        .await;
    let versions = caller
        .get(easel.url(&format!("/api/agents/{agent_id}/versions")))
        .await;
    let gallery = caller.get(easel.url("/api/studio/images")).await;
    easel.terminate();

    // Copy with the real binary.
    let out = copy(&source, &target.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("counts and hashes match"), "{stdout}");
    let images_line = stdout
        .lines()
        .find(|l| l.starts_with("images "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        images_line.split_whitespace().nth(1) == Some("3"),
        "{stdout}"
    );

    // The copy is the installation: same people, key, agent history, conversation, bytes.
    let moved = Easel::serve(&target.url, &models, Some(&llm.base_url), &accounts()).await;
    sign_in(&moved).await;
    let after = caller
        .get(moved.url(&format!("/api/conversations/{conversation}")))
        .await;
    assert_eq!(after, before);
    assert_eq!(
        caller
            .bytes(moved.url(&format!("/api/images/{image_id}.png")))
            .await,
        png
    );
    assert_eq!(
        caller
            .get(moved.url(&format!("/api/agents/{agent_id}/versions")))
            .await,
        versions
    );
    assert_eq!(caller.get(moved.url("/api/studio/images")).await, gallery);

    // The target is no longer empty: a second copy is refused, and changes nothing.
    let again = copy(&source, &target.url);
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr).to_string()
        + &String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("not empty"), "{said}");

    // The tool's table list is the schema's, on this backend.
    let store = easel::store::Store::connect(&target.url).await.unwrap();
    let mut listed: Vec<String> = easel::store::copy::TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    listed.sort();
    assert_eq!(
        easel::store::copy::schema_tables(&store).await.unwrap(),
        listed
    );
    store.pool().close().await;
    drop(moved);
}

/// Event names of a stream read with the caller's key.
async fn read_events_as(caller: &Caller, url: &str) -> Vec<String> {
    read_events(&bearer_client(&caller.key), url, None)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect()
}
