//! The conversation export format (`easel.conversation`, version 1): a whole conversation with
//! its images inline as base64 PNG, and its import.
//!
//! Import trusts nothing in the document: every id must be a UUID and unique, counts and sizes
//! are capped, images are decoded with limits (the caller runs [`plan_import`] on a blocking
//! thread), and image ids referenced in tool calls are remapped by parsing the JSON and
//! replacing exact string values, never by substring replacement. The plan is written in one
//! transaction by the store, so a failure leaves nothing behind.

use std::collections::{HashMap, HashSet};

use app::api::{ErrorDetail, ImageMetadata, InternalTools, ToolCallRecord};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::imaging::encode;
use crate::store::{
    new_id, ImageMeta, ImageSource, ImportedMessage, MessageStatus, NewImage, Role, ToolCall,
};

pub const EXPORT_FORMAT: &str = "easel.conversation";
/// Largest import body (images travel inline).
pub const IMPORT_MAX_BYTES: usize = 512 * 1024 * 1024;
pub const MAX_MESSAGES: usize = 10_000;
pub const MAX_IMAGES: usize = 1_000;
const MAX_TEXT_CHARS: usize = 1_000_000;
const MAX_TOOL_CALLS_PER_MESSAGE: usize = 100;

/// The export document.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub version: u32,
    pub conversation: ExportConversation,
    pub messages: Vec<ExportMessage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportConversation {
    pub title: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub internal_tools: InternalTools,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportMessage {
    pub id: String,
    pub role: String,
    pub content: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRecord>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub images: Vec<ExportImage>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportImage {
    pub id: String,
    pub width: u32,
    pub height: u32,
    /// Base64 PNG.
    pub png: String,
    pub metadata: ImageMetadata,
}

/// What an import will write.
#[derive(Debug)]
pub struct ImportPlan {
    pub title: String,
    pub model: Option<String>,
    pub image_creation: bool,
    pub messages: Vec<ImportedMessage>,
}

/// Checks the document and decodes its images; `Err` says what is wrong, in words.
pub fn plan_import(doc: ExportDocument, user_id: &str) -> Result<ImportPlan, String> {
    if doc.format != EXPORT_FORMAT || doc.version != 1 {
        return Err(format!(
            "not an Easel export (format `{}`, version {})",
            short(&doc.format),
            doc.version
        ));
    }
    let title = doc.conversation.title.trim().to_string();
    if title.chars().count() > app::api::limits::TITLE_MAX_CHARS {
        return Err(format!(
            "the title must be at most {} characters",
            app::api::limits::TITLE_MAX_CHARS
        ));
    }
    if doc.messages.len() > MAX_MESSAGES {
        return Err(format!("at most {MAX_MESSAGES} messages can be imported"));
    }
    let image_count: usize = doc.messages.iter().map(|m| m.images.len()).sum();
    if image_count > MAX_IMAGES {
        return Err(format!("at most {MAX_IMAGES} images can be imported"));
    }
    // Every id is a UUID, and no id appears twice.
    let mut seen = HashSet::new();
    let mut image_ids: HashMap<String, String> = HashMap::new();
    for m in &doc.messages {
        check_uuid("message", &m.id, &mut seen)?;
        for image in &m.images {
            check_uuid("image", &image.id, &mut seen)?;
            image_ids.insert(image.id.to_ascii_lowercase(), new_id());
        }
    }
    let remap = |text: &str| remap_ids(text, &image_ids);

    let mut messages = Vec::with_capacity(doc.messages.len());
    for m in doc.messages {
        let role = Role::parse(&m.role)
            .ok_or_else(|| format!("message {} has an unknown role `{}`", m.id, short(&m.role)))?;
        let status = MessageStatus::parse(&m.status)
            .filter(|s| *s != MessageStatus::Running)
            .ok_or_else(|| {
                format!(
                    "message {} has an unknown status `{}`",
                    m.id,
                    short(&m.status)
                )
            })?;
        if m.content.chars().count() > MAX_TEXT_CHARS {
            return Err(format!("message {} is too long", m.id));
        }
        if m.tool_calls.len() > MAX_TOOL_CALLS_PER_MESSAGE {
            return Err(format!("message {} has too many tool calls", m.id));
        }
        let mut tool_calls = Vec::with_capacity(m.tool_calls.len());
        for c in m.tool_calls {
            if c.arguments.len() > MAX_TEXT_CHARS || c.result.len() > MAX_TEXT_CHARS {
                return Err(format!("a tool call of message {} is too long", m.id));
            }
            tool_calls.push(ToolCall {
                arguments: remap(&c.arguments),
                result: remap(&c.result),
                id: short(&c.id),
                name: short(&c.name),
                is_error: c.is_error,
            });
        }
        let mut images = Vec::with_capacity(m.images.len());
        for (position, image) in m.images.into_iter().enumerate() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(image.png.trim())
                .map_err(|_| format!("image {} is not valid base64", image.id))?;
            let rgb = encode::decode(&bytes).map_err(|e| format!("image {}: {e}", image.id))?;
            let thumbnail =
                encode::thumbnail(&rgb).map_err(|e| format!("image {}: {e}", image.id))?;
            let mut metadata = crate_meta(image.metadata);
            metadata.source_image_id = metadata.source_image_id.map(|id| {
                image_ids
                    .get(&id.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or(id)
            });
            metadata.tool_arguments = remap_value(metadata.tool_arguments, &image_ids);
            images.push(NewImage {
                id: image_ids
                    .get(&image.id.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(new_id),
                user_id: user_id.to_string(),
                message_id: None,
                conversation_id: None,
                job_id: None,
                source: ImageSource::Chat,
                position: position as u32,
                width: rgb.width(),
                height: rgb.height(),
                png: bytes,
                thumbnail,
                metadata,
            });
        }
        messages.push(ImportedMessage {
            role,
            content: m.content,
            status,
            error: m
                .error
                .map(|e| (short(&e.code), e.message.chars().take(2000).collect())),
            model: m.model.map(|x| short(&x)),
            tool_calls,
            created_at: m.created_at_ms,
            images,
        });
    }
    Ok(ImportPlan {
        title,
        model: doc.conversation.model,
        image_creation: doc.conversation.internal_tools.image_creation,
        messages,
    })
}

fn check_uuid(kind: &str, id: &str, seen: &mut HashSet<String>) -> Result<(), String> {
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(format!("`{}` is not a valid {kind} id (a UUID)", short(id)));
    }
    if !seen.insert(id.to_ascii_lowercase()) {
        return Err(format!("the id {id} appears more than once"));
    }
    Ok(())
}

/// Text cut to a length safe to echo in a message or store as a name.
fn short(text: &str) -> String {
    text.chars().take(100).collect()
}

fn crate_meta(m: ImageMetadata) -> ImageMeta {
    ImageMeta {
        model: m.model,
        prompt: m.prompt,
        negative_prompt: m.negative_prompt,
        seed: m.seed,
        steps: m.steps,
        sampler: m.sampler,
        schedule: m.schedule,
        guidance: m.guidance,
        width: m.width,
        height: m.height,
        tool_arguments: m.tool_arguments,
        source_image_id: m.source_image_id,
        strength: m.strength,
    }
}

/// Replaces old image ids by new ones in a tool call's JSON text: string values equal to an
/// old id, anywhere in the document. Text that is not JSON is kept as it is.
fn remap_ids(text: &str, ids: &HashMap<String, String>) -> String {
    if ids.is_empty() {
        return text.to_string();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => remap_value(value, ids).to_string(),
        Err(_) => text.to_string(),
    }
}

fn remap_value(value: Value, ids: &HashMap<String, String>) -> Value {
    match value {
        Value::String(s) => match ids.get(&s.to_ascii_lowercase()) {
            Some(new) => Value::String(new.clone()),
            None => Value::String(s),
        },
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| remap_value(v, ids)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, remap_value(v, ids)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remapped_by_value_not_by_substring() {
        let old = "0190a0a0-0000-7000-8000-000000000001";
        let ids = HashMap::from([(old.to_string(), "NEW".to_string())]);
        let text = format!(r#"{{"images":[{{"id":"{old}","seed":1}}],"note":"see {old} here"}}"#);
        let out: Value = serde_json::from_str(&remap_ids(&text, &ids)).unwrap();
        assert_eq!(out["images"][0]["id"], "NEW");
        assert_eq!(out["note"], format!("see {old} here"));
        assert_eq!(remap_ids("not json", &ids), "not json");
    }

    fn doc(messages: Vec<ExportMessage>) -> ExportDocument {
        ExportDocument {
            format: EXPORT_FORMAT.into(),
            version: 1,
            conversation: ExportConversation {
                title: "t".into(),
                model: None,
                internal_tools: InternalTools::default(),
                created_at: String::new(),
            },
            messages,
        }
    }

    fn message(id: &str, images: Vec<&str>) -> ExportMessage {
        ExportMessage {
            id: id.into(),
            role: "assistant".into(),
            content: "hi".into(),
            status: "complete".into(),
            error: None,
            model: None,
            tool_calls: Vec::new(),
            created_at_ms: 0,
            images: images
                .into_iter()
                .map(|id| ExportImage {
                    id: id.into(),
                    width: 1,
                    height: 1,
                    png: String::new(),
                    metadata: ImageMetadata::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn empty_duplicate_and_malformed_ids_are_refused() {
        let m = "0190a0a0-0000-7000-8000-000000000001";
        let i = "0190a0a0-0000-7000-8000-000000000002";
        assert!(plan_import(doc(vec![message(m, vec![""])]), "u")
            .unwrap_err()
            .contains("not a valid image id"));
        assert!(plan_import(doc(vec![message(m, vec![i, i])]), "u")
            .unwrap_err()
            .contains("more than once"));
        assert!(
            plan_import(doc(vec![message(m, vec![]), message(m, vec![])]), "u")
                .unwrap_err()
                .contains("more than once")
        );
        assert!(plan_import(doc(vec![message("x", vec![])]), "u")
            .unwrap_err()
            .contains("not a valid message id"));
    }
}
