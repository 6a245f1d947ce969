//! Every Unicode prompt paints, through chat, the Studio and `/v1`, and the files keep the full
//! prompt: the PNG's `iTXt` `parameters` chunk and the JPEG's EXIF comment read back exactly.

mod common;

use base64::Engine as _;
use common::{data_of, Reply, ScriptedLlm, Setup};
use serde_json::json;

/// Prompts as people and LLMs write them: dashes and curly quotes, other scripts, emoji with
/// joiners and flags, combining marks, right-to-left text, control characters (but NUL).
const PROMPTS: &[&str] = &[
    "A lighthouse — at dusk… “quoted” and ‘single’",
    "夕暮れの灯台、波と月",
    "A family 👩‍👩‍👧‍👦 under a flag 🇯🇵 and a 🦊🔥",
    "Cafe\u{301} au lait, naïve façade, Ångström",
    "مرحبا بالعالم and שלום עולם in one line",
    "bell\u{7} escape\u{1b}[31m tab\tnew\nline \u{200B}zero\u{FEFF}width \u{202E}rtl",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝓂𝒶𝓉𝒽 ∑∫√∞ ≠ ≤ ℝ",
];

/// The `parameters` text of a PNG.
fn png_parameters(bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    info.utf8_text
        .iter()
        .find(|c| c.keyword == "parameters")
        .map(|c| c.get_text().unwrap())
        .or_else(|| {
            info.uncompressed_latin1_text
                .iter()
                .find(|c| c.keyword == "parameters")
                .map(|c| c.text.clone())
        })
        .expect("a parameters chunk")
}

async fn bytes(s: &common::TestServer, path: &str) -> Vec<u8> {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prompt_paints_everywhere_and_the_files_keep_it() {
    let llm = ScriptedLlm::start(Vec::new()).await;
    let s = Setup::with_llm(&llm.base_url).models().start().await;
    let conversation = s.conversation(true).await;
    for prompt in PROMPTS {
        // Chat, as an LLM's tool call.
        let call = json!({"prompt": prompt, "seed": 3}).to_string();
        let split: Vec<String> = call
            .chars()
            .collect::<Vec<_>>()
            .chunks(5)
            .map(|c| c.iter().collect())
            .collect();
        llm.push(Reply::ToolCalls(vec![("image_generator", split)]));
        llm.push(Reply::Text(vec!["Done — here it is."]));
        let events = s.turn(&conversation, prompt).await;
        let done = data_of(&events, "image.done");
        assert_eq!(
            done.len(),
            1,
            "{prompt:?} painted in chat: {:?}",
            common::names(&events)
        );
        let id = done[0]["image_id"].as_str().unwrap();
        let png = bytes(&s, &format!("/api/images/{id}.png")).await;
        let parameters = png_parameters(&png);
        assert!(parameters.starts_with(prompt), "{parameters:?}");
        assert!(parameters.contains("Seed: 3"));
        let jpg = bytes(&s, &format!("/api/images/{id}.jpg")).await;
        let utf16: Vec<u8> = prompt
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert!(
            jpg.windows(utf16.len()).any(|w| w == utf16.as_slice()),
            "the JPEG keeps {prompt:?}"
        );
        let download = s
            .client
            .get(s.url(&format!("/api/images/{id}.png?download=1")))
            .send()
            .await
            .unwrap();
        let disposition = download.headers()["content-disposition"].to_str().unwrap();
        assert!(
            disposition.is_ascii() && disposition.ends_with(".png\""),
            "{disposition}"
        );

        // The Studio.
        let (status, job) = s
            .send(
                "POST",
                "/api/studio/generations",
                json!({"prompt": prompt, "seed": 3}),
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
        assert_eq!(
            common::names(&events).last().map(String::as_str),
            Some("run.finished"),
            "{prompt:?} in the Studio"
        );

        // `/v1`, PNG and JPEG.
        for format in ["png", "jpeg"] {
            let (status, body) = s
                .send(
                    "POST",
                    "/v1/images/generations",
                    // Chat reads A1111 weights in prompts; /v1 only when asked.
                    json!({"prompt": prompt, "seed": 3, "output_format": format, "prompt_weighting": true}),
                )
                .await;
            assert_eq!(status, 200, "{prompt:?} through /v1: {body}");
            let file = base64::engine::general_purpose::STANDARD
                .decode(body["data"][0]["b64_json"].as_str().unwrap())
                .unwrap();
            if format == "png" {
                assert!(png_parameters(&file).starts_with(prompt));
                // The same request paints the same pixels whichever way it came in.
                assert_eq!(file, png, "chat and /v1 agree for {prompt:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_prompt_is_refused_with_a_reason_not_a_crash() {
    let s = Setup::default().models().start().await;
    let (status, body) = s
        .send(
            "POST",
            "/v1/images/generations",
            json!({"prompt": "a\u{0}b"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "prompt");
    let (status, _) = s
        .send(
            "POST",
            "/api/studio/generations",
            json!({"prompt": "a\u{0}b"}),
        )
        .await;
    assert_eq!(status, 422);
}
