//! The `direct` provider: Easel's answer when no LLM is configured. It is not a language model;
//! it turns the user's message itself into an `image_generator` call (the text is the prompt,
//! with count, size, quality, style and seed read from it where it says so), and afterwards
//! says what was made. With image creation off it explains how to connect an LLM.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Map, Value};

use super::llm::{ChatMessage, LlmDelta, LlmRequest, LlmStream};
use crate::tools::{image_generator, styles};

pub const DIRECT_MODEL_ID: &str = "direct";

#[derive(Clone, Default)]
pub struct DirectProvider {
    /// Set when no image model is installed: the note then says how to get one first.
    pub no_image_model: bool,
}

impl DirectProvider {
    pub fn stream(&self, request: LlmRequest) -> LlmStream {
        let offers_images = request
            .tools
            .iter()
            .any(|t| t.name == image_generator::NAME);
        let deltas = match request.messages.last() {
            Some(ChatMessage::User(text)) if offers_images => vec![
                LlmDelta::ToolCall {
                    index: 0,
                    id: Some(format!(
                        "call_direct_{}",
                        crate::store::new_id().replace('-', "")
                    )),
                    name: Some(image_generator::NAME.into()),
                    arguments: Some(arguments_from_text(text).to_string()),
                },
                LlmDelta::Finish("tool_calls".into()),
            ],
            Some(ChatMessage::Tool { .. }) => {
                let results: Vec<&str> = request
                    .messages
                    .iter()
                    .rev()
                    .take_while(|m| matches!(m, ChatMessage::Tool { .. }))
                    .filter_map(|m| match m {
                        ChatMessage::Tool { content, .. } => Some(content.as_str()),
                        _ => None,
                    })
                    .collect();
                vec![
                    LlmDelta::Text(describe_results(&results)),
                    LlmDelta::Finish("stop".into()),
                ]
            }
            _ if self.no_image_model => vec![
                LlmDelta::Text(format!("{NO_LLM_NOTE}\n\n{NO_IMAGE_MODEL_NOTE}")),
                LlmDelta::Finish("stop".into()),
            ],
            _ => vec![
                LlmDelta::Text(NO_LLM_NOTE.into()),
                LlmDelta::Finish("stop".into()),
            ],
        };
        Box::pin(futures_util::stream::iter(deltas.into_iter().map(Ok)))
    }
}

pub const NO_LLM_NOTE: &str = "Easel is running without a language model, so it cannot chat yet. \
To chat, connect an OpenAI-compatible LLM: set `OPENAI_API_KEY` (OpenAI), or `OPENAI_BASE_URL` and \
`EASEL_LLM_MODEL` for a local server such as Ollama (`http://localhost:11434/v1`), then restart Easel. \
Without one, Easel can still paint: turn on **Image creation** in the Internal tools menu (the gear \
below the message box) and describe the picture you want.";

/// Added when no image model is installed, so following the note above leads to a picture.
pub const NO_IMAGE_MODEL_NOTE: &str =
    "**No image model is installed yet**, so Image creation cannot \
paint. An admin can download the recommended one with **Get a model** in the Internal tools menu \
or the Studio (it is usable as soon as it lands), or run `easel models pull` (see README).";

static COUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|a couple of|a few)\s+(?:different\s+|more\s+)?(images?|pictures?|pics?|photos?|variations?|versions?|drawings?|paintings?|renders?)\b(\s+of\b)?",
    )
    .expect("valid regex")
});
static SIZE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(\d{2,4})\s*[x×]\s*(\d{2,4})\b(\s*(?:px|pixels))?").expect("valid regex")
});
static SEED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bseed\s*[:=#]?\s*(\d{1,19})\b").expect("valid regex"));
static QUALITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(high|best|highest|low|lowest|medium|draft|quick)[\s-]+(quality|detail)\b|\b(hq|draft)\b")
        .expect("valid regex")
});
static LEADING_ASK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:please\s+)?(?:can you\s+|could you\s+)?(?:draw|paint|generate|create|make|render|show|give|sketch|design|imagine)(?:\s+me)?(?:\s+(?:an?|the)?\s*(?:image|picture|photo|painting|drawing|illustration)s?\s+of)?\s+",
    )
    .expect("valid regex")
});
static LEADING_OF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:an?\s+)?(?:images?|pictures?|photos?|paintings?|drawings?)\s+of\s+")
        .expect("valid regex")
});

/// Reads `image_generator` arguments out of plain text. Values the text states are passed as
/// stated, even out of range: the tool's validation then says what is allowed ("n must be 1–10").
pub fn arguments_from_text(text: &str) -> Value {
    let mut args = Map::new();
    let mut prompt = text.to_string();

    if let Some(c) = COUNT.captures(text) {
        let word = c[1].to_lowercase();
        let n: u64 = match word.as_str() {
            "one" => 1,
            "two" | "a couple of" => 2,
            "three" | "a few" => 3,
            "four" => 4,
            "five" => 5,
            "six" => 6,
            "seven" => 7,
            "eight" => 8,
            "nine" => 9,
            "ten" => 10,
            digits => digits.parse().unwrap_or(1),
        };
        args.insert("n".into(), json!(n));
        prompt = prompt.replacen(&c[0], "", 1);
    }
    if let Some(c) = SIZE.captures(&prompt.clone()) {
        args.insert("size".into(), json!(format!("{}x{}", &c[1], &c[2])));
        prompt = prompt.replacen(&c[0], "", 1);
    }
    if let Some(c) = SEED.captures(&prompt.clone()) {
        if let Ok(seed) = c[1].parse::<u64>() {
            args.insert("seed".into(), json!(seed));
        }
        prompt = prompt.replacen(&c[0], "", 1);
    }
    if let Some(c) = QUALITY.captures(&prompt.clone()) {
        let word = c
            .get(1)
            .or(c.get(3))
            .map(|m| m.as_str().to_lowercase())
            .unwrap_or_default();
        let quality = match word.as_str() {
            "high" | "best" | "highest" | "hq" => "high",
            "medium" => "medium",
            _ => "low",
        };
        args.insert("quality".into(), json!(quality));
        prompt = prompt.replacen(&c[0], "", 1);
    }
    if let Some(style) = styles::detect(&prompt) {
        args.insert("style".into(), json!(style.id));
    }

    let mut cleaned = LEADING_ASK.replace(&prompt, "").to_string();
    cleaned = LEADING_OF.replace(&cleaned, "").to_string();
    let cleaned = tidy(&cleaned);
    let prompt = if cleaned.is_empty() {
        tidy(text)
    } else {
        cleaned
    };
    args.insert("prompt".into(), json!(prompt));
    Value::Object(args)
}

/// Collapses the commas and spaces left where phrases were cut out.
fn tidy(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut joined = words.join(" ");
    while joined.contains(" ,") || joined.contains(",,") {
        joined = joined.replace(" ,", ",").replace(",,", ",");
    }
    joined
        .trim_matches(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .trim_end_matches(['.', '!', '?'])
        .to_string()
}

/// The direct provider's reply after the tool ran: what was made, or why not.
fn describe_results(results: &[&str]) -> String {
    let mut parts = Vec::new();
    for raw in results.iter().rev() {
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        if value.get("status").and_then(Value::as_str) == Some("ok") {
            let images = value
                .get("images")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            let prompt = value
                .get("prompt")
                .and_then(Value::as_str)
                .unwrap_or("your prompt");
            let size = value.get("size").and_then(Value::as_str).unwrap_or("");
            let model = value.get("model").and_then(Value::as_str).unwrap_or("");
            let seeds: Vec<String> = value
                .get("images")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.get("seed").and_then(Value::as_u64))
                        .map(|s| s.to_string())
                        .collect()
                })
                .unwrap_or_default();
            let noun = if images == 1 { "image" } else { "images" };
            let seed_text = match seeds.as_slice() {
                [] => String::new(),
                [one] => format!(", seed {one}"),
                [first, .., last] => format!(", seeds {first}–{last}"),
            };
            parts.push(format!(
                "Here {} {images} {noun} of “{prompt}” ({size}, {model}{seed_text}).",
                if images == 1 { "is" } else { "are" }
            ));
        } else {
            let reason = value.get("error").and_then(Value::as_str).unwrap_or(raw);
            parts.push(format!("I could not make that image: {reason}"));
        }
    }
    parts.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_count_size_quality_style_and_seed_from_text() {
        let args = arguments_from_text(
            "Draw 3 images of a red fox in the snow, 1024x1024, high quality, watercolor, seed 42",
        );
        assert_eq!(args["n"], 3);
        assert_eq!(args["size"], "1024x1024");
        assert_eq!(args["quality"], "high");
        assert_eq!(args["style"], "watercolor");
        assert_eq!(args["seed"], 42);
        assert_eq!(args["prompt"], "a red fox in the snow, watercolor");
    }

    #[test]
    fn plain_text_is_the_prompt() {
        let args = arguments_from_text("a lighthouse at dusk");
        assert_eq!(args, json!({"prompt": "a lighthouse at dusk"}));
        let args = arguments_from_text("two pictures of a cat");
        assert_eq!(args["n"], 2);
        assert_eq!(args["prompt"], "a cat");
    }

    #[test]
    fn out_of_range_counts_are_passed_on_for_validation_to_refuse() {
        assert_eq!(arguments_from_text("20 images of a dog")["n"], 20);
    }

    #[test]
    fn describes_success_and_failure() {
        let ok = r#"{"status":"ok","prompt":"a fox","size":"512x512","model":"sd","images":[{"id":"a","seed":7},{"id":"b","seed":8}]}"#;
        assert_eq!(
            describe_results(&[ok]),
            "Here are 2 images of “a fox” (512x512, sd, seeds 7–8)."
        );
        let err = r#"{"status":"error","error":"n must be from 1 to 10 (got 20)"}"#;
        assert!(describe_results(&[err]).contains("n must be from 1 to 10"));
    }
}
