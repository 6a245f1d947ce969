//! The image-job service: the one way chat, Studio, `/v1` and the command line make images.
//!
//! - The same request through all four gives byte-identical PNGs, edits with a source larger
//!   than the model's maximum included (each is fitted the same way).
//! - The queue is fair: with one owner holding five jobs, another owner's job starts second.
//! - The queue is bounded: a full queue answers 429 with `Retry-After` (OpenAI's shape on
//!   `/v1`) and a clear tool error in chat; tool calls per LLM round are capped.
//! - A cancel recorded the moment a worker claims a job still stops it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::{data_of, Reply, ScriptedLlm, Setup};
use easel::imaging::request::{self, ImageParams, SizeChoice, SizePolicy};
use easel::jobs::{CallerInfo, JobEvent, JobOrder, JobOrigin};
use easel::store::JobState;
use serde_json::{json, Value};

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn pieces(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(9)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// A 512×384 picture: larger than the tiny model's 256 maximum, so every caller must fit it.
fn large_source() -> Vec<u8> {
    png(&image::RgbImage::from_fn(512, 384, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
    }))
}

/// The same edit through the chat tool, the Studio, `/v1` and the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_gives_the_same_bytes_through_chat_studio_v1_and_the_cli() {
    let source = large_source();
    let prompt = "a red lighthouse — “at dusk” 灯台";
    let seed = 4242u64;
    let llm = ScriptedLlm::start(Vec::new()).await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;

    // Chat: the source is an image of the conversation (imported), refined by the tool.
    let import = json!({
        "format": "easel.conversation",
        "version": 1,
        "conversation": {"title": "import", "internal_tools": {"image_creation": true}, "created_at": ""},
        "messages": [{
            "id": "0190a0a0-0000-7000-8000-0000000000bb",
            "role": "assistant", "content": "here", "status": "complete", "created_at_ms": 1,
            "images": [{"id": "0190a0a0-0000-7000-8000-0000000000aa", "width": 512, "height": 384,
                        "png": base64::engine::general_purpose::STANDARD.encode(&source),
                        "metadata": {"model": "x", "prompt": "x", "seed": 1, "steps": 1, "sampler": "euler", "schedule": "discrete", "guidance": 1.0, "width": 512, "height": 384}}]
        }]
    });
    let (status, conversation) = s.send("POST", "/api/conversations/import", import).await;
    assert_eq!(status, 201, "{conversation}");
    let conversation = conversation["id"].as_str().unwrap().to_string();
    let source_id = s.messages(&conversation).await[0]["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let edit_call =
        json!({"prompt": prompt, "seed": seed, "source_image": source_id, "strength": 0.6});
    llm.push(Reply::ToolCalls(vec![(
        "image_generator",
        pieces(&edit_call.to_string()),
    )]));
    llm.push(Reply::Text(vec!["Here it is."]));
    llm.push(Reply::ToolCalls(vec![(
        "image_generator",
        pieces(&json!({"prompt": prompt, "seed": seed}).to_string()),
    )]));
    llm.push(Reply::Text(vec!["And a new one."]));
    let events = s.turn(&conversation, "refine it").await;
    let done = data_of(&events, "image.done");
    assert_eq!(done.len(), 1, "{:?}", common::names(&events));
    let chat_edit = fetch(&s, done[0]["image_id"].as_str().unwrap()).await;
    let events = s.turn(&conversation, "now a new one").await;
    let chat_new = fetch(
        &s,
        data_of(&events, "image.done")[0]["image_id"]
            .as_str()
            .unwrap(),
    )
    .await;

    // Studio.
    let (status, job) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": prompt, "seed": seed, "strength": 0.6,
                   "source_image_b64": base64::engine::general_purpose::STANDARD.encode(&source)}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let events = common::read_events(
        &s.client,
        &s.url(&format!(
            "/api/studio/jobs/{}/events",
            job["job_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    let studio_edit = fetch(
        &s,
        data_of(&events, "image.done")[0]["image_id"]
            .as_str()
            .unwrap(),
    )
    .await;

    // `/v1`.
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(source.clone()).file_name("s.png"),
        )
        .text("prompt", prompt.to_string())
        .text("seed", seed.to_string())
        .text("strength", "0.6");
    let r = s
        .client
        .post(s.url("/v1/images/edits"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let v1_edit = b64(body["data"][0]["b64_json"].as_str().unwrap());
    let (_, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": prompt, "seed": seed}),
        )
        .await;
    let v1_new = b64(body["data"][0]["b64_json"].as_str().unwrap());

    // The command line.
    let out = s.dir.path().join("cli");
    let source_file = s.dir.path().join("source.png");
    std::fs::write(&source_file, &source).unwrap();
    let cli = |extra: &[&str], folder: &str| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
            .args([
                "generate",
                "--model",
                "tiny-sd",
                "--prompt",
                prompt,
                "--seed",
                &seed.to_string(),
                "--out",
            ])
            .arg(out.join(folder))
            .args(extra)
            .env("EASEL_MODELS_DIR", common::test_models_dir())
            .env("ORT_DYLIB_PATH", common::ort_library())
            .env("EASEL_ORT_THREADS", "1")
            .env("EASEL_EXECUTION_PROVIDER", "cpu")
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(out.join(folder).join(format!("easel-{seed}-0.png"))).unwrap()
    };
    let cli_edit = cli(
        &[
            "--image",
            source_file.to_str().unwrap(),
            "--strength",
            "0.6",
        ],
        "edit",
    );
    let cli_new = cli(&[], "new");

    let size = image::load_from_memory(&chat_edit).unwrap();
    assert_eq!(
        (size.width(), size.height()),
        (256, 192),
        "the large source was fitted"
    );
    assert_eq!(chat_edit, studio_edit, "chat and Studio");
    assert_eq!(chat_edit, v1_edit, "chat and /v1");
    assert_eq!(chat_edit, cli_edit, "chat and the command line");
    assert_eq!(chat_new, v1_new, "text to image: chat and /v1");
    assert_eq!(
        chat_new, cli_new,
        "text to image: chat and the command line"
    );
}

async fn fetch(s: &common::TestServer, id: &str) -> Vec<u8> {
    s.client
        .get(s.url(&format!("/api/images/{id}.png")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

fn order(s: &common::TestServer, owner: &str, seed: u64, steps: i64) -> JobOrder {
    let engine = s.state.jobs.engine();
    let model = engine.model(None).unwrap();
    let params = ImageParams {
        prompt: format!("a job of {owner}"),
        size: SizeChoice::Exact(128, 128),
        steps: Some(steps),
        seed: Some(seed),
        sampler: Some("heun".into()),
        ..ImageParams::default()
    };
    JobOrder {
        owner: owner.into(),
        origin: JobOrigin::Studio,
        request: request::resolve(params, &model, SizePolicy::AnyMultipleOf8).unwrap(),
        edit: None,
        caller: CallerInfo::default(),
        keep_pixels: false,
        milestones: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `submit` hands back the follower's join handle on purpose.
#[allow(clippy::async_yields_async)]
async fn another_owners_job_starts_after_at_most_the_one_running() {
    let s = Setup::default().models().start().await;
    sqlx::query("INSERT INTO users (id, name, created_at) VALUES ('bob', 'Bob', 0)")
        .execute(s.state.store.pool())
        .await
        .unwrap();
    let started = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut followers = Vec::new();
    let submit = |owner: &'static str, seed: u64| {
        let jobs = s.state.jobs.clone();
        let order = order(&s, owner, seed, 150);
        let started = started.clone();
        async move {
            let submitted = jobs.submit(order).await.unwrap();
            let job = jobs.job(owner, &submitted.id).await.unwrap().unwrap();
            let name = format!("{owner}{seed}");
            tokio::spawn(async move {
                let mut cursor = 0;
                loop {
                    let (events, ended) = job.log.next_after(cursor).await;
                    for e in &events {
                        cursor = e.id;
                        if matches!(e.event, JobEvent::Started) {
                            started.lock().unwrap().push(name.clone());
                        }
                    }
                    if ended || events.iter().any(|e| matches!(e.event, JobEvent::Ended(_))) {
                        return submitted.position;
                    }
                }
            })
        }
    };
    // Alice queues five large jobs; the first starts at once.
    for seed in 1..=5 {
        followers.push(submit("local", seed).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bob comes last.
    followers.push(submit("bob", 1).await);
    let mut positions = Vec::new();
    for f in followers {
        positions.push(f.await.unwrap());
    }
    let order = started.lock().unwrap().clone();
    assert_eq!(order[0], "local1");
    assert_eq!(order[1], "bob1", "bob's job started second: {order:?}");
    assert_eq!(&order[2..], ["local2", "local3", "local4", "local5"]);
    // Bob was told he had one job ahead of him (the running one), not five.
    assert_eq!(positions[5], 1, "positions {positions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_the_tool_says_so() {
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls(vec![(
            "image_generator",
            pieces(&json!({"prompt": "one more", "n": 10}).to_string()),
        )]),
        Reply::Text(vec!["The queue is full."]),
    ])
    .await;
    // A server whose queue is served by no one (a web node without a local worker), so the
    // queue fills and stays full.
    let s = Setup {
        queue_max: Some(12),
        paints: false,
        ..Setup::with_llm(&llm.base_url).models()
    }
    .start()
    .await;
    let mut big = order(&s, "local", 1, 4);
    big.request.n = 10;
    s.state.jobs.submit(big).await.unwrap();
    let (status, _) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": "x", "n": 2}),
        )
        .await;
    assert_eq!(status, 202, "12 images fit");
    let r = s
        .client
        .post(s.url("/v1/images/generations"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let (status, body) = s
        .send("POST", "/api/studio/generations", json!({"prompt": "x"}))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "queue_full");
    // In chat, the tool answers the LLM with the reason.
    let id = s.conversation(true).await;
    let events = s.turn(&id, "paint ten more").await;
    let result = data_of(&events, "tool.result")[0];
    assert_eq!(result["is_error"], true);
    assert!(
        result["result"].as_str().unwrap().contains("queue is full"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_beyond_the_per_round_limit_are_answered_with_an_error() {
    let call = |k: u32| {
        (
            "image_generator",
            pieces(&json!({"prompt": format!("picture {k}"), "size": "64x64"}).to_string()),
        )
    };
    let llm = ScriptedLlm::start(vec![
        Reply::ToolCalls((0..6).map(call).collect()),
        Reply::Text(vec!["Made four."]),
    ])
    .await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;
    let id = s.conversation(true).await;
    let events = s.turn(&id, "six pictures please").await;
    let results = data_of(&events, "tool.result");
    assert_eq!(results.len(), 6);
    let errors: Vec<&Value> = results
        .iter()
        .filter(|r| r["is_error"] == true)
        .copied()
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors[0]["result"]
        .as_str()
        .unwrap()
        .contains("at most 4 tool calls"));
    assert_eq!(data_of(&events, "image.done").len(), 4);
    // The LLM saw every call answered.
    let second = &llm.requests()[1];
    let tool_messages = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .count();
    assert_eq!(tool_messages, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_recorded_as_a_worker_claims_the_job_stops_it() {
    // On PostgreSQL a cancel for a job another node paints is a mark on its row plus a
    // notification. One that lands between the claim and the moment the job listens finds
    // no one to notify; the worker must read the mark. A trigger makes that moment certain:
    // the claim itself marks the row, and nothing notifies. A long lease keeps the heartbeat
    // (the slow safety net, every sixth of it) out of the picture.
    let s = Setup {
        lease_timeout: Some(600),
        ..Setup::default().models()
    }
    .start()
    .await;
    let trigger = if common::postgres_server().is_some() {
        "CREATE FUNCTION cancel_at_claim() RETURNS trigger AS $$
         BEGIN NEW.cancel_requested := 1; RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER cancel_at_claim BEFORE UPDATE ON image_jobs FOR EACH ROW
         WHEN (OLD.state = 'queued' AND NEW.state = 'running') EXECUTE FUNCTION cancel_at_claim();"
    } else {
        "CREATE TRIGGER cancel_at_claim AFTER UPDATE OF state ON image_jobs
         WHEN OLD.state = 'queued' AND NEW.state = 'running'
         BEGIN UPDATE image_jobs SET cancel_requested = 1 WHERE id = NEW.id; END;"
    };
    sqlx::raw_sql(trigger)
        .execute(s.state.store.pool())
        .await
        .unwrap();
    // Four images of 150 steps: it finishes unless something stops it.
    let mut job = order(&s, "local", 1, 150);
    job.request.n = 4;
    let submitted = s.state.jobs.submit(job).await.unwrap();
    let live = s
        .state
        .jobs
        .job("local", &submitted.id)
        .await
        .unwrap()
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(120), s.state.jobs.wait(&live))
        .await
        .expect("the job ends");
    assert_eq!(end.state, JobState::Cancelled, "{end:?}");
    let (images,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM images WHERE job_id = $1")
        .bind(&submitted.id)
        .fetch_one(s.state.store.pool())
        .await
        .unwrap();
    assert_eq!(images, 0, "stopped before its first image");
}
