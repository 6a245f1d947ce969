//! Small local LLMs paint: tool calls written into the message text (Hermes/Qwen, Llama 3.x,
//! Mistral, a bare or fenced JSON object), streamed exactly as llama.cpp's `llama-server`,
//! Ollama, LM Studio and vLLM send them, run as real calls through the HTTP API and never
//! shown; and Paint mode (`paint: true`, `/image …`), which names the tool in `tool_choice`
//! and falls back to `required`, then to an instruction, when the server refuses.

mod common;

use common::{data_of, LocalServer, Reply, ScriptedLlm, Setup, TestServer, ToolChoiceKind};
use serde_json::{json, Value};

async fn painting_server(script: Vec<Reply>) -> (ScriptedLlm, TestServer) {
    let llm = ScriptedLlm::start(script).await;
    let server = Setup::with_llm(&llm.base_url).models().start().await;
    (llm, server)
}

/// The text the user was shown while the reply streamed.
fn shown_text(events: &[common::SseEvent]) -> String {
    data_of(events, "message.delta")
        .iter()
        .map(|d| d["text"].as_str().unwrap_or_default())
        .collect()
}

fn assert_no_raw_call(text: &str) {
    for raw in [
        "<tool_call",
        "tool_call>",
        "python_tag",
        "[TOOL_CALLS]",
        "\"name\"",
        "image_generator",
        "```",
    ] {
        assert!(!text.contains(raw), "the raw call leaked ({raw}): {text:?}");
    }
}

/// The tool message the LLM got back in its second request, and the call it answers.
fn tool_round_trip(request: &Value) -> (String, String) {
    let messages = request["messages"].as_array().unwrap();
    let assistant = messages
        .iter()
        .find(|m| m["role"] == "assistant" && m.get("tool_calls").is_some())
        .unwrap_or_else(|| panic!("no assistant tool call in {request}"));
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    (
        assistant["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        tool["tool_call_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hermes_call_written_as_text_paints_and_is_never_shown() {
    // Qwen2.5 through llama-server: the call arrives token by token inside the content.
    let (llm, s) = painting_server(vec![
        Reply::Server(
            LocalServer::LlamaCpp,
            vec![
                "I'll",
                " paint",
                " that",
                " for",
                " you",
                ".\n",
                "<",
                "tool",
                "_call",
                ">\n",
                "{\"",
                "name",
                "\":",
                " \"",
                "image",
                "_generator",
                "\",",
                " \"",
                "arguments",
                "\":",
                " {\"",
                "prompt",
                "\":",
                " \"",
                "a red fox in the snow",
                "\",",
                " \"size\": \"64x64\", \"seed\": 3}}",
                "\n",
                "</",
                "tool",
                "_call",
                ">",
            ],
        ),
        Reply::Server(LocalServer::LlamaCpp, vec!["Here", " is", " your", " fox."]),
    ])
    .await;
    let id = s.conversation(true).await;
    let events = s
        .turn(&id, "Draw a picture of a red fox in the snow.")
        .await;
    let call = data_of(&events, "tool.call");
    assert_eq!(call.len(), 1, "{events:?}");
    assert_eq!(call[0]["name"], "image_generator");
    let arguments: Value = serde_json::from_str(call[0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["prompt"], "a red fox in the snow");
    assert_eq!(data_of(&events, "image.done").len(), 1);
    assert_eq!(
        data_of(&events, "run.finished").len(),
        1,
        "{:?}",
        common::names(&events)
    );
    let shown = shown_text(&events);
    assert_no_raw_call(&shown);
    assert!(shown.starts_with("I'll paint that for you."), "{shown:?}");

    // The stored reply: the image, the text without the call, the call with its result.
    let messages = s.messages(&id).await;
    let reply = &messages[1];
    assert_eq!(reply["status"], "complete");
    assert_eq!(reply["images"].as_array().unwrap().len(), 1);
    let content = reply["content"].as_str().unwrap();
    assert_eq!(content, "I'll paint that for you.\n\nHere is your fox.");
    assert_no_raw_call(content);
    assert_eq!(reply["tool_calls"][0]["name"], "image_generator");

    // The LLM got the result under the id of the call it made.
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let (call_id, answered) = tool_round_trip(&requests[1]);
    assert_eq!(call_id, answered);
    assert_eq!(call_id, call[0]["id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_format_from_every_local_server_paints() {
    let cases: Vec<(&str, LocalServer, Vec<&'static str>)> = vec![
        (
            "Llama 3.2 bare JSON with parameters, through Ollama",
            LocalServer::Ollama,
            vec![
                "{\"name\": \"image", "_generator\", \"parameters\": {\"prompt\": \"a lighthouse",
                " at dusk\", \"size\": \"64x64\"}}",
            ],
        ),
        (
            "Llama 3.1 python tag, through vLLM",
            LocalServer::Vllm,
            vec![
                "<|python", "_tag|>", "{\"name\": \"image_generator\", ",
                "\"parameters\": {\"prompt\": \"a lighthouse at dusk\", \"size\": \"64x64\"}}",
                "<|eom_id|>",
            ],
        ),
        (
            "Mistral with arguments as a string, through LM Studio",
            LocalServer::LmStudio,
            vec![
                "[TOOL", "_CALLS]", "[{\"name\": \"image_generator\", \"arguments\": ",
                "\"{\\\"prompt\\\": \\\"a lighthouse at dusk\\\", \\\"size\\\": \\\"64x64\\\"}\"",
                "}]",
            ],
        ),
        (
            "a fenced JSON object after some words, through llama-server",
            LocalServer::LlamaCpp,
            vec![
                "Sure", "! ", "Calling the tool:\n\n", "```", "json\n", "{\n  \"name\": ",
                "\"image_generator\",\n  \"arguments\": {\n    \"prompt\": \"a lighthouse at dusk\",",
                "\n    \"size\": \"64x64\"\n  }\n}", "\n```",
            ],
        ),
        (
            "Hermes with string arguments and no closing tag, through Ollama",
            LocalServer::Ollama,
            vec![
                "<tool_call>\n{\"name\": \"image_generator\", \"arguments\": \"{\\\"prompt\\\": ",
                "\\\"a lighthouse at dusk\\\", \\\"size\\\": \\\"64x64\\\"}\"}",
            ],
        ),
    ];
    let mut script = Vec::new();
    for (_, server, pieces) in &cases {
        script.push(Reply::Server(*server, pieces.clone()));
        script.push(Reply::Server(*server, vec!["Done", "."]));
    }
    let (llm, s) = painting_server(script).await;
    for (k, (what, _, _)) in cases.iter().enumerate() {
        let id = s.conversation(true).await;
        let events = s.turn(&id, "Paint a lighthouse at dusk").await;
        let calls = data_of(&events, "tool.call");
        assert_eq!(calls.len(), 1, "{what}: {:?}", common::names(&events));
        let arguments: Value =
            serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments["prompt"], "a lighthouse at dusk", "{what}");
        assert_eq!(data_of(&events, "image.done").len(), 1, "{what}");
        let shown = shown_text(&events);
        assert_no_raw_call(&shown);
        let messages = s.messages(&id).await;
        let content = messages[1]["content"].as_str().unwrap();
        assert_no_raw_call(content);
        assert!(content.ends_with("Done."), "{what}: {content:?}");
        let (call_id, answered) = tool_round_trip(&llm.requests()[2 * k + 1]);
        assert_eq!(call_id, answered, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_no_valid_call_is_shown_unchanged() {
    let texts: Vec<Vec<&'static str>> = vec![
        // Braces, tags and fences in an ordinary answer.
        vec![
            "Use `{name}` as a <b>placeholder</b>; ", "a JSON example:\n```json\n{\"city\": ",
            "\"Paris\"}\n```\nand x[0] < 3.",
        ],
        // A call of a tool that is not offered.
        vec!["<tool_call>{\"name\": \"web_search\", \"arguments\": {\"q\": \"fox\"}}</tool_call>"],
        // Broken JSON.
        vec!["<tool_call>{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a fox\"</tool_call>"],
    ];
    let script = texts
        .iter()
        .map(|t| Reply::Server(LocalServer::LlamaCpp, t.clone()))
        .collect();
    let (_llm, s) = painting_server(script).await;
    for pieces in &texts {
        let expected: String = pieces.concat();
        let id = s.conversation(true).await;
        let events = s.turn(&id, "hello").await;
        assert!(data_of(&events, "tool.call").is_empty(), "{expected}");
        assert_eq!(shown_text(&events), expected);
        let messages = s.messages(&id).await;
        assert_eq!(messages[1]["content"], expected.as_str());
        assert_eq!(messages[1]["status"], "complete");
    }
}

fn tool_call_reply() -> Reply {
    Reply::ToolCalls(vec![(
        "image_generator",
        vec![json!({"prompt": "a red fox", "size": "64x64"}).to_string()],
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paint_mode_names_the_image_tool_for_the_first_answer_only() {
    let (llm, s) = painting_server(vec![
        tool_call_reply(),
        Reply::Text(vec!["A fox."]),
        tool_call_reply(),
        Reply::Text(vec!["Another fox."]),
        Reply::Text(vec!["Off: no tools."]),
    ])
    .await;
    let (status, models) = s.get("/api/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["llm"][0]["tool_choice"], "named", "{models}");

    let id = s.conversation(true).await;
    // `/image` is stripped and asks for the call.
    let events = s.turn(&id, "/image a red fox").await;
    assert_eq!(data_of(&events, "image.done").len(), 1);
    let requests = llm.requests();
    assert_eq!(
        requests[0]["tool_choice"],
        json!({"type": "function", "function": {"name": "image_generator"}})
    );
    assert!(requests[1].get("tool_choice").is_none(), "{}", requests[1]);
    let last_user = |r: &Value| {
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .unwrap()["content"]
            .clone()
    };
    assert_eq!(last_user(&requests[0]), "a red fox");
    assert_eq!(s.messages(&id).await[0]["content"], "a red fox");

    // The `paint` flag of the message body does the same.
    let (status, body) = s
        .send(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            json!({"content": "another fox", "paint": true}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.events(body["run_id"].as_str().unwrap()).await;
    assert!(llm.requests()[2]["tool_choice"].is_object());

    // Without Image creation, Paint mode does nothing: no tools, no tool_choice.
    let off = s.conversation(false).await;
    s.turn(&off, "/image a fox").await;
    let plain = &llm.requests()[4];
    assert!(
        plain.get("tools").is_none() && plain.get("tool_choice").is_none(),
        "{plain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_named_tool_choice_gets_required_then_an_instruction() {
    let (llm, s) = painting_server(vec![
        tool_call_reply(),
        Reply::Text(vec!["A fox."]),
        tool_call_reply(),
        Reply::Text(vec!["Another."]),
        // The model answers the instruction with a Hermes call in its text.
        Reply::Server(
            LocalServer::LlamaCpp,
            vec!["<tool_call>{\"name\": \"image_generator\", \"arguments\": {\"prompt\": \"a third fox\", \"size\": \"64x64\"}}</tool_call>"],
        ),
        Reply::Text(vec!["Third."]),
    ])
    .await;
    llm.reject(ToolChoiceKind::Named);
    let id = s.conversation(true).await;
    let events = s.turn(&id, "/image a red fox").await;
    assert_eq!(data_of(&events, "image.done").len(), 1, "{events:?}");
    let requests = llm.requests();
    assert!(requests[0]["tool_choice"].is_object(), "named first");
    assert_eq!(requests[1]["tool_choice"], "required", "then required");
    // The fallback is remembered: the next Paint-mode message goes straight to `required`.
    let (_, models) = s.get("/api/models").await;
    assert_eq!(models["llm"][0]["tool_choice"], "required");
    s.turn(&id, "/image another").await;
    assert_eq!(llm.requests()[3]["tool_choice"], "required");

    // Now `required` is refused too: no tool_choice, a clear instruction in the system prompt.
    llm.reject(ToolChoiceKind::Required);
    let events = s.turn(&id, "/image a third fox").await;
    assert_eq!(data_of(&events, "image.done").len(), 1, "{events:?}");
    let requests = llm.requests();
    assert_eq!(requests[5]["tool_choice"], "required");
    let instructed = &requests[6];
    assert!(instructed.get("tool_choice").is_none(), "{instructed}");
    let system = instructed["messages"][0]["content"].as_str().unwrap();
    assert_eq!(instructed["messages"][0]["role"], "system");
    assert!(
        system.contains("Paint mode") && system.contains("image_generator"),
        "{system}"
    );
    let (_, models) = s.get("/api/models").await;
    assert_eq!(models["llm"][0]["tool_choice"], "none");
    let messages = s.messages(&id).await;
    assert_eq!(messages.last().unwrap()["content"], "Third.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_set_to_none_is_asked_in_words_at_once() {
    let llm = ScriptedLlm::start(vec![tool_call_reply(), Reply::Text(vec!["A fox."])]).await;
    let s = Setup {
        tool_choice: Some("none"),
        ..Setup::with_llm(&llm.base_url).models()
    }
    .start()
    .await;
    let (_, models) = s.get("/api/models").await;
    assert_eq!(models["llm"][0]["tool_choice"], "none");
    let id = s.conversation(true).await;
    s.turn(&id, "/image a red fox").await;
    let first = &llm.requests()[0];
    assert!(first.get("tool_choice").is_none(), "{first}");
    assert!(first["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("Paint mode"));
}
