//! The store's and the engine's records in the API's shapes (`app::api`). Only the HTTP layer
//! speaks the wire; everything below it has its own types.

use app::api;

use crate::imaging::{EngineStatus, ModelInfo};
use crate::store::{rfc3339, ConversationRecord, ImageMeta, ImageRecord, MessageRecord, ToolCall};

pub fn conversation(c: &ConversationRecord, active_run_id: Option<String>) -> api::Conversation {
    api::Conversation {
        id: c.id.clone(),
        title: c.title.clone(),
        agent_id: c.agent_id.clone(),
        model: c.model.clone(),
        internal_tools: api::InternalTools {
            image_creation: c.image_creation,
        },
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        active_run_id,
    }
}

pub fn message(
    m: MessageRecord,
    images: Vec<api::Image>,
    run_id: Option<String>,
    credits: i64,
) -> api::Message {
    api::Message {
        credits,
        error: m.error_code.map(|code| api::ErrorDetail {
            code,
            message: m.error_message.unwrap_or_default(),
        }),
        id: m.id,
        role: m.role.as_str().into(),
        content: m.content,
        status: m.status.as_str().into(),
        model: m.model,
        run_id,
        images,
        tool_calls: m.tool_calls.into_iter().map(tool_call).collect(),
        created_at: rfc3339(m.created_at),
    }
}

pub fn tool_call(c: ToolCall) -> api::ToolCallRecord {
    api::ToolCallRecord {
        id: c.id,
        name: c.name,
        arguments: c.arguments,
        result: c.result,
        is_error: c.is_error,
    }
}

pub fn metadata(m: ImageMeta) -> api::ImageMetadata {
    api::ImageMetadata {
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

/// An image of the history: by URL, or with its PNG inline (`b64`).
pub fn image(record: ImageRecord, b64: Option<String>) -> api::Image {
    api::Image {
        url: b64.is_none().then(|| api::image_url(&record.id, "png")),
        thumbnail_url: api::thumbnail_url(&record.id),
        b64,
        mime: "image/png".into(),
        width: record.width as u32,
        height: record.height as u32,
        metadata: metadata(record.metadata),
        id: record.id,
    }
}

pub fn model_info(m: ModelInfo) -> api::ImageModelInfo {
    api::ImageModelInfo {
        id: m.id,
        name: m.name,
        family: m.family,
        default_size: m.default_size,
        allowed_sizes: m.allowed_sizes,
        max_size: m.max_size,
        samplers: m.samplers,
        default_sampler: m.default_sampler,
        default_guidance: m.default_guidance,
        steps: api::QualitySteps {
            auto: m.steps.auto,
            low: m.steps.low,
            medium: m.steps.medium,
            high: m.steps.high,
        },
        edit: m.edit,
        error: m.error,
    }
}

/// The processes of a deployment, with how many jobs each finished per minute lately;
/// `with_jobs` names the job each is painting (admins only).
pub fn workers(
    nodes: Vec<crate::store::NodeRecord>,
    per_minute: &std::collections::HashMap<String, f64>,
    with_jobs: bool,
) -> Vec<api::WorkerInfo> {
    nodes
        .into_iter()
        .map(|n| api::WorkerInfo {
            jobs_per_minute: per_minute.get(&n.id).copied().unwrap_or(0.0),
            models: serde_json::from_str::<Vec<serde_json::Value>>(&n.models)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.get("id").and_then(|id| id.as_str()).map(str::to_string))
                .collect(),
            busy: n.current_job.is_some(),
            current_job: n.current_job.filter(|_| with_jobs),
            id: n.id,
            name: n.name,
            kind: n.kind,
            paints: n.paints != 0,
            execution_provider: n.provider,
            started_at: rfc3339(n.started_at),
            last_seen: rfc3339(n.heartbeat_at),
        })
        .collect()
}

pub fn engine_health(s: EngineStatus, queue_length: usize) -> api::EngineHealth {
    api::EngineHealth {
        status: s.status.into(),
        execution_provider: s.execution_provider.into(),
        models: s.models,
        models_loaded: s.models_loaded,
        message: s.message,
        queue_length,
    }
}
