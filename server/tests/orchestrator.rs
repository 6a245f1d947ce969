//! The whole loop: a scripted LLM calls `image_generator` (arguments streamed in pieces), the
//! engine paints with the tiny test model, images are stored with the message and served, and
//! the results go back to the LLM as short text. Also agents, deletes, export/import and the
//! `direct` provider painting without any LLM.

mod common;

use std::time::Duration;

use common::{data_of, names, Reply, ScriptedLlm, Setup, TestServer};
use serde_json::{json, Value};

fn pieces(arguments: &str) -> Vec<String> {
    // Split the JSON in three uneven parts, as streaming servers do.
    let chars: Vec<char> = arguments.chars().collect();
    let (a, b) = (chars.len() / 3, 2 * chars.len() / 3);
    vec![
        chars[..a].iter().collect(),
        chars[a..b].iter().collect(),
        chars[b..].iter().collect(),
    ]
}

fn image_call(arguments: Value) -> Reply {
    Reply::ToolCalls(vec![("image_generator", pieces(&arguments.to_string()))])
}

async fn painting_server(script: Vec<Reply>) -> (ScriptedLlm, TestServer) {
    let llm = ScriptedLlm::start(script).await;
    let server = Setup::with_llm(&llm.base_url).models().start().await;
    (llm, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_images_are_made_stored_and_returned_inline() {
    let (llm, s) = painting_server(vec![
        image_call(json!({"prompt": "a red fox in the snow", "n": 3, "size": "64x64", "seed": 7, "style": "watercolor"})),
        Reply::Text(vec!["Here are ", "three foxes."]),
    ])
    .await;
    let id = s.conversation(true).await;
    let events = s.turn(&id, "Paint three foxes").await;
    let order = names(&events);
    assert_eq!(order.first().unwrap(), "run.started");
    assert_eq!(order.last().unwrap(), "run.finished");
    for name in [
        "tool.call",
        "image.queued",
        "image.progress",
        "image.done",
        "tool.result",
        "message.done",
    ] {
        assert!(
            order.contains(&name.to_string()),
            "{name} missing from {order:?}"
        );
    }
    let call = data_of(&events, "tool.call")[0];
    assert_eq!(call["name"], "image_generator");
    assert!(
        call["arguments"].as_str().unwrap().contains("\"n\":3"),
        "arguments were assembled from pieces: {call}"
    );
    assert_eq!(data_of(&events, "image.queued")[0]["count"], 3);
    let done = data_of(&events, "image.done");
    assert_eq!(done.len(), 3);
    assert_eq!(
        done.iter()
            .map(|d| d["seed"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert!(data_of(&events, "image.progress")
        .iter()
        .any(|p| p["steps"] == 4));

    // The tool offered to the LLM, and the result it got back: short, with ids, no pixels.
    let requests = llm.requests();
    assert_eq!(
        requests[0]["tools"][0]["function"]["name"],
        "image_generator"
    );
    let tool_message = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    let result = tool_message["content"].as_str().unwrap();
    assert!(result.len() < 1000, "a short text result: {result}");
    for d in &done {
        assert!(result.contains(d["image_id"].as_str().unwrap()));
    }
    assert!(!result.contains("base64") && !result.contains("iVBOR"));

    // The history carries the images inline, with their metadata.
    let (status, detail) = s.get(&format!("/api/conversations/{id}")).await;
    assert_eq!(status, 200);
    let reply = &detail["messages"][1];
    assert_eq!(reply["content"], "Here are three foxes.");
    assert_eq!(reply["status"], "complete");
    let images = reply["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    let png = base64_decode(images[0]["b64"].as_str().unwrap());
    assert_eq!(&png[1..4], b"PNG");
    let meta = &images[0]["metadata"];
    assert_eq!(meta["seed"], 7);
    assert_eq!(meta["model"], "tiny-sd");
    assert_eq!(meta["width"], 64);
    assert!(
        meta["prompt"]
            .as_str()
            .unwrap()
            .starts_with("watercolor painting of a red fox"),
        "{meta}"
    );
    assert_eq!(meta["tool_arguments"]["n"], 3);
    assert_eq!(reply["tool_calls"][0]["name"], "image_generator");
    // ?images=url gives links instead.
    let light = s.messages(&id).await;
    assert!(light[1]["images"][0].get("b64").is_none());
    assert!(light[1]["images"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with(".png"));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_offered_only_when_image_creation_is_on() {
    let (llm, s) = painting_server(vec![Reply::Text(vec!["ok"]), Reply::Text(vec!["ok"])]).await;
    let off = s.conversation(false).await;
    s.turn(&off, "hello").await;
    let on = s.conversation(true).await;
    s.turn(&on, "hello").await;
    let requests = llm.requests();
    assert!(requests[0].get("tools").is_none(), "{}", requests[0]);
    assert_eq!(requests[1]["tools"].as_array().unwrap().len(), 1);
    let schema = &requests[1]["tools"][0]["function"]["parameters"];
    assert_eq!(schema["properties"]["n"]["maximum"], 10);
    assert_eq!(schema["required"], json!(["prompt"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_go_back_to_the_llm_which_corrects_them() {
    let (llm, s) = painting_server(vec![
        image_call(json!({"prompt": "dogs", "n": 11})),
        image_call(json!({"prompt": "dogs", "n": 2, "size": "300x300"})),
        Reply::ToolCalls(vec![(
            "image_generator",
            vec!["{\"prompt\": \"dogs\"".into()],
        )]),
        image_call(json!({"prompt": "dogs", "n": 2})),
        Reply::Text(vec!["Two dogs."]),
    ])
    .await;
    let id = s.conversation(true).await;
    let events = s.turn(&id, "draw dogs").await;
    let results = data_of(&events, "tool.result");
    assert_eq!(results.len(), 4);
    assert!(results[0]["is_error"].as_bool().unwrap());
    assert!(
        results[0]["result"]
            .as_str()
            .unwrap()
            .contains("n must be from 1 to 10 (got 11)"),
        "{}",
        results[0]
    );
    assert!(
        results[1]["result"]
            .as_str()
            .unwrap()
            .contains("300x300 is not allowed"),
        "{}",
        results[1]
    );
    assert!(
        results[2]["result"]
            .as_str()
            .unwrap()
            .contains("not a valid JSON"),
        "{}",
        results[2]
    );
    assert!(!results[3]["is_error"].as_bool().unwrap());
    assert_eq!(data_of(&events, "image.done").len(), 2);
    let second = &llm.requests()[1];
    let tool = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert!(tool["content"].as_str().unwrap().contains("got 11"));
    let messages = s.messages(&id).await;
    assert_eq!(messages[1]["images"].as_array().unwrap().len(), 2);
    assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn image_creation_without_a_model_fails_with_the_exact_message() {
    let llm = ScriptedLlm::start(vec![Reply::Text(vec!["never sent"])]).await;
    let s = Setup::with_llm(&llm.base_url).start().await; // no models folder
    let id = s.conversation(true).await;
    let events = s.turn(&id, "paint a cat").await;
    let error = data_of(&events, "run.error")[0];
    assert_eq!(
        error["message"],
        "Image generation internal tool requested but no image generation model configured"
    );
    assert!(
        llm.requests().is_empty(),
        "no LLM call for a run that cannot work"
    );
    let messages = s.messages(&id).await;
    assert_eq!(messages[0]["content"], "paint a cat");
    assert_eq!(messages[1]["status"], "failed");
    assert_eq!(
        messages[1]["error"]["message"],
        "Image generation internal tool requested but no image generation model configured"
    );
}

/// A copy of tiny-sd whose "high" quality is slow (150 heun steps at 256²), to cancel mid-way.
fn slow_models(dir: &std::path::Path) -> std::path::PathBuf {
    let models = dir.join("models");
    let model = models.join("tiny-sd");
    copy_dir(&common::test_models_dir().join("tiny-sd"), &model);
    std::fs::write(
        model.join("easel.toml"),
        "default_size = \"64x64\"\nallowed_sizes = [\"64x64\", \"256x256\"]\ndefault_sampler = \"heun\"\n[steps]\nauto = 2\nhigh = 150\n",
    )
    .unwrap();
    models
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_generation_keeps_finished_images_and_says_so() {
    let llm = ScriptedLlm::start(vec![Reply::ToolCalls(vec![
        (
            "image_generator",
            pieces(&json!({"prompt": "quick sketch", "size": "64x64"}).to_string()),
        ),
        (
            "image_generator",
            pieces(
                &json!({"prompt": "a huge mural", "n": 4, "size": "256x256", "quality": "high"})
                    .to_string(),
            ),
        ),
    ])])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let s = Setup {
        models: Some(slow_models(dir.path())),
        ..Setup::with_llm(&llm.base_url)
    }
    .start()
    .await;
    let id = s.conversation(true).await;
    let started = s.say(&id, "a sketch, then a mural").await;
    let run = started["run_id"].as_str().unwrap().to_string();
    let mut cancelled = false;
    for _ in 0..400 {
        let events = s.state.runs.get(&run).unwrap().log.all();
        let done = events
            .iter()
            .filter(|e| e.event.name == "image.done")
            .count();
        let second_started = events
            .iter()
            .filter(|e| e.event.name == "image.queued")
            .count()
            == 2;
        if done == 1 && second_started {
            let (status, _) = s
                .send("POST", &format!("/api/runs/{run}/cancel"), json!({}))
                .await;
            assert_eq!(status, 202);
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cancelled, "the second call started after the first image");
    let events = s.events(&run).await;
    assert_eq!(names(&events).last().unwrap(), "run.cancelled");
    let messages = s.messages(&id).await;
    assert_eq!(messages[1]["status"], "cancelled");
    let images = messages[1]["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "the finished sketch is kept");
    assert_eq!(images[0]["metadata"]["prompt"], "quick sketch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_images_messages_history_or_conversations_leaves_no_bytes() {
    let (_, s) = painting_server(vec![
        image_call(json!({"prompt": "one", "n": 2})),
        Reply::Text(vec!["done"]),
        image_call(json!({"prompt": "two", "n": 3})),
        Reply::Text(vec!["done"]),
        image_call(json!({"prompt": "three", "n": 1})),
        Reply::Text(vec!["done"]),
    ])
    .await;
    let store = s.state.store.clone();
    let a = s.conversation(true).await;
    s.turn(&a, "first").await;
    s.turn(&a, "second").await;
    let b = s.conversation(true).await;
    s.turn(&b, "third").await;
    assert_eq!(store.count_images().await.unwrap(), 6);

    let messages = s.messages(&a).await;
    let image = messages[1]["images"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/api/images/{image}")).await, 204);
    assert_eq!(
        s.client
            .get(s.url(&format!("/api/images/{image}.png")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(store.count_images().await.unwrap(), 5);

    let second_reply = messages[3]["id"].as_str().unwrap();
    assert_eq!(
        s.delete(&format!("/api/messages/{second_reply}")).await,
        204
    );
    assert_eq!(store.count_images().await.unwrap(), 2);

    assert_eq!(
        s.delete(&format!("/api/conversations/{a}/messages")).await,
        204
    );
    assert_eq!(store.count_images().await.unwrap(), 1);

    assert_eq!(s.delete(&format!("/api/conversations/{b}")).await, 204);
    assert_eq!(store.count_images().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_served_as_png_jpg_and_thumbnails_with_caching() {
    let (_, s) = painting_server(vec![
        image_call(json!({"prompt": "A red fox, at dusk!", "size": "128x128"})),
        Reply::Text(vec!["ok"]),
    ])
    .await;
    let id = s.conversation(true).await;
    s.turn(&id, "fox").await;
    let image = s.messages(&id).await[1]["images"][0].clone();
    let image_id = image["id"].as_str().unwrap();

    let png = s
        .client
        .get(s.url(&format!("/api/images/{image_id}.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    let etag = png.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(&png.bytes().await.unwrap()[1..4], b"PNG");

    let jpg = s
        .client
        .get(s.url(&format!("/api/images/{image_id}.jpg?download=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(jpg.headers()["content-type"], "image/jpeg");
    assert_eq!(
        jpg.headers()["content-disposition"],
        "attachment; filename=\"a-red-fox-at-dusk.jpg\""
    );
    assert_eq!(&jpg.bytes().await.unwrap()[..3], &[0xFF, 0xD8, 0xFF]);

    let again = s
        .client
        .get(s.url(&format!("/api/images/{image_id}.png")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let thumb = s
        .client
        .get(s.url(&format!("/api/images/{image_id}/thumbnail")))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(&thumb.bytes().await.unwrap()[..3], &[0xFF, 0xD8, 0xFF]);

    let bad = s
        .client
        .get(s.url(&format!("/api/images/{image_id}.gif")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_round_trip_with_images() {
    let (_, s) = painting_server(vec![
        image_call(json!({"prompt": "a boat", "n": 2, "seed": 3})),
        Reply::Text(vec!["Two boats."]),
    ])
    .await;
    let id = s.conversation(true).await;
    s.turn(&id, "boats please").await;
    let exported: Value = s
        .client
        .get(s.url(&format!("/api/conversations/{id}/export")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exported["format"], "easel.conversation");
    let (status, imported) = s
        .send("POST", "/api/conversations/import", exported.clone())
        .await;
    assert_eq!(status, 201, "{imported}");
    let new_id = imported["id"].as_str().unwrap();
    assert_ne!(new_id, id);
    let (_, original) = s.get(&format!("/api/conversations/{id}")).await;
    let (_, copy) = s.get(&format!("/api/conversations/{new_id}")).await;
    assert_eq!(copy["title"], original["title"]);
    let (a, b) = (&original["messages"], &copy["messages"]);
    assert_eq!(a.as_array().unwrap().len(), b.as_array().unwrap().len());
    for (m, n) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
        assert_eq!(m["content"], n["content"]);
        assert_eq!(m["role"], n["role"]);
        let (mi, ni) = (
            m["images"].as_array().unwrap(),
            n["images"].as_array().unwrap(),
        );
        assert_eq!(mi.len(), ni.len());
        for (x, y) in mi.iter().zip(ni) {
            assert_eq!(x["b64"], y["b64"], "same bytes");
            assert_ne!(x["id"], y["id"], "fresh ids");
            // The tool result the LLM will see refers to the new ids.
            assert!(n["tool_calls"][0]["result"]
                .as_str()
                .unwrap()
                .contains(y["id"].as_str().unwrap()));
        }
    }
    assert_eq!(s.state.store.count_images().await.unwrap(), 4);
    let (status, body) = s.send("POST", "/api/conversations/import", json!({"format": "other", "version": 1, "conversation": {"title": "x", "created_at": ""}, "messages": []})).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_refines_an_earlier_image_by_id() {
    let llm = ScriptedLlm::start(vec![
        image_call(json!({"prompt": "a cabin", "size": "64x64"})),
        Reply::Text(vec!["A cabin."]),
    ])
    .await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;
    let id = s.conversation(true).await;
    s.turn(&id, "a cabin").await;
    let first = s.messages(&id).await[1]["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    llm.push(image_call(
        json!({"prompt": "a cabin, brighter", "source_image": first, "strength": 0.5}),
    ));
    llm.push(Reply::Text(vec!["Brighter."]));
    let events = s.turn(&id, "make it brighter").await;
    assert!(
        !data_of(&events, "tool.result")[0]["is_error"]
            .as_bool()
            .unwrap(),
        "{events:?}"
    );
    let refined = &s.messages(&id).await[3]["images"][0];
    assert_eq!(refined["metadata"]["source_image_id"], first.as_str());
    assert_eq!(refined["metadata"]["strength"], 0.5);
    // The LLM saw the earlier call and its result in the history.
    let third = &llm.requests()[2];
    let roles: Vec<&str> = third["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.windows(2).any(|w| w == ["assistant", "tool"]),
        "{roles:?}"
    );
    // An id from elsewhere is refused with a reason.
    llm.push(image_call(
        json!({"prompt": "x", "source_image": "01a20000-0000-7000-8000-000000000000"}),
    ));
    llm.push(Reply::Text(vec!["Sorry."]));
    let events = s.turn(&id, "use some other picture").await;
    assert!(data_of(&events, "tool.result")[0]["result"]
        .as_str()
        .unwrap()
        .contains("not an image of this conversation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_versioned_and_new_conversations_inherit_their_toggles() {
    let llm = ScriptedLlm::start(vec![Reply::Text(vec!["Ahoy."])]).await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;
    let (status, agent) = s
        .send(
            "POST",
            "/api/agents",
            json!({"name": "Painter", "description": "Paints things", "instructions": "Talk like a pirate.", "meta": {"internal_tools": {"image_creation": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(agent["version"], 1);
    let agent_id = agent["id"].as_str().unwrap();

    let (status, with_agent) = s
        .send("POST", "/api/conversations", json!({"agent_id": agent_id}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(with_agent["internal_tools"]["image_creation"], true);
    assert_eq!(with_agent["agent_id"], agent_id);
    let first = with_agent["id"].as_str().unwrap().to_string();
    s.turn(&first, "hello").await;
    let request = &llm.requests()[0];
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(request["messages"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("Talk like a pirate."));
    assert!(
        request["tools"].is_array(),
        "the agent's toggle reached the conversation"
    );

    let (status, v2) = s
        .send("PUT", &format!("/api/agents/{agent_id}"), json!({"name": "Painter", "instructions": "Be brief.", "meta": {"internal_tools": {"image_creation": false}}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v2["version"], 2);
    let (_, versions) = s.get(&format!("/api/agents/{agent_id}/versions")).await;
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["current"], true);
    assert_eq!(versions[1]["current"], false);
    assert_eq!(
        versions[1]["meta"]["internal_tools"]["image_creation"],
        true
    );

    // The old conversation keeps its own toggle; a new one gets the agent's current one.
    let (_, old) = s.get(&format!("/api/conversations/{first}")).await;
    assert_eq!(old["internal_tools"]["image_creation"], true);
    let (_, newer) = s
        .send("POST", "/api/conversations", json!({"agent_id": agent_id}))
        .await;
    assert_eq!(newer["internal_tools"]["image_creation"], false);

    let (status, body) = s.send("POST", "/api/agents", json!({"name": ""})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(s.delete(&format!("/api/agents/{agent_id}")).await, 204);
    assert_eq!(s.get(&format!("/api/agents/{agent_id}")).await.0, 404);
    let (_, detached) = s.get(&format!("/api/conversations/{first}")).await;
    assert!(
        detached["agent_id"].is_null(),
        "conversations outlive their agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_provider_paints_without_any_llm() {
    let s = Setup::default().models().start().await;
    let id = s.conversation(true).await;
    let events = s.turn(&id, "2 images of a cat on a sofa, seed 5").await;
    assert_eq!(names(&events).last().unwrap(), "run.finished");
    let done = data_of(&events, "image.done");
    assert_eq!(
        done.iter()
            .map(|d| d["seed"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
    let messages = s.messages(&id).await;
    assert_eq!(messages[1]["images"].as_array().unwrap().len(), 2);
    assert_eq!(
        messages[1]["images"][0]["metadata"]["tool_arguments"]["prompt"],
        "a cat on a sofa"
    );
    let reply = messages[1]["content"].as_str().unwrap();
    assert!(
        reply.contains("2 images") && reply.contains("seeds 5–6"),
        "{reply}"
    );

    // Out-of-range requests come back as a clear reply, not a crash.
    let events = s.turn(&id, "20 images of a dog").await;
    assert_eq!(names(&events).last().unwrap(), "run.finished");
    let reply = s.messages(&id).await[3]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reply.contains("n must be from 1 to 10"), "{reply}");
}
