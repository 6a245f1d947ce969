//! The HTTP API's request and response bodies, shared by the server (which serialises them) and
//! the browser (which deserialises them), so the two cannot drift apart. DESIGN.md's
//! "Contracts" section is the human-readable twin of this file.

use serde::{Deserialize, Serialize};

/// Where an image's files are served: `image_url(id, "png" | "jpg")`, and its thumbnail. The
/// server links these in events and histories; the browser builds download links with them.
pub fn image_url(id: &str, ext: &str) -> String {
    format!("/api/images/{id}.{ext}")
}

pub fn thumbnail_url(id: &str) -> String {
    format!("/api/images/{id}/thumbnail")
}

/// Limits checked at the edge; the UI shows them too.
pub mod limits {
    pub const MESSAGE_MAX_CHARS: usize = 32_000;
    pub const TITLE_MAX_CHARS: usize = 200;
    pub const PROMPT_MAX_CHARS: usize = 2_000;
    pub const MAX_IMAGES_PER_CALL: u32 = 10;
    pub const JSON_BODY_MAX_BYTES: usize = 1024 * 1024;
    pub const AGENT_NAME_MAX_CHARS: usize = 100;
    pub const AGENT_TEXT_MAX_CHARS: usize = 20_000;
}

/// `{"error": {"code": "...", "message": "..."}}`, the body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The per-conversation (and per-agent) switches for Easel's built-in tools.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InternalTools {
    #[serde(default)]
    pub image_creation: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub agent_id: Option<String>,
    pub model: Option<String>,
    pub internal_tools: InternalTools,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub updated_at: String,
    /// A run still producing the last assistant message, so a returning client can re-attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_run_id: Option<String>,
}

/// `GET /api/conversations/{id}`: the conversation with its messages in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// `running`, `complete`, `cancelled` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallRecord>,
    pub created_at: String,
    /// Credits the reply's images cost (0 with credits off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub credits: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A tool call the assistant made, with the short text result the LLM saw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    /// The arguments as the LLM sent them (JSON text, possibly invalid).
    pub arguments: String,
    pub result: String,
    #[serde(default)]
    pub is_error: bool,
}

/// An image of the history. Either `b64` (inline, the default) or `url` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    pub id: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub thumbnail_url: String,
    pub metadata: ImageMetadata,
}

/// How an image was made: enough to make it again.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageMetadata {
    pub model: String,
    /// The prompt as sent to the engine (with the style's template applied).
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    pub seed: u64,
    pub steps: u32,
    pub sampler: String,
    pub schedule: String,
    pub guidance: f32,
    pub width: u32,
    pub height: u32,
    /// The tool's arguments as validated (the user's prompt before the style template, n, …).
    #[serde(default)]
    pub tool_arguments: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateConversation {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub internal_tools: Option<InternalTools>,
}

/// `PATCH /api/conversations/{id}`: every field optional; `model: null` resets to the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub model: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_tools: Option<InternalTools>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostMessage {
    pub content: String,
    /// Paint mode: the reply must call the image tool (when Image creation is on). A message
    /// starting with `/image ` asks for the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paint: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostMessageResponse {
    pub message_id: String,
    pub assistant_message_id: String,
    pub run_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlmModel {
    /// `provider/model`, or `direct`.
    pub id: String,
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub default: bool,
    /// Whether the model is offered tools (all OpenAI-compatible ones are; `direct` paints itself).
    pub tools: bool,
    /// How Paint mode makes the image call certain with this model's server: `named` (a named
    /// `tool_choice`), `required`, or `none` (an instruction); absent for `direct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageModelInfo {
    pub id: String,
    pub name: String,
    pub family: String,
    pub default_size: String,
    pub allowed_sizes: Vec<String>,
    pub max_size: u32,
    pub samplers: Vec<String>,
    pub default_sampler: String,
    pub default_guidance: f32,
    pub steps: QualitySteps,
    /// Whether the model can edit images (has a VAE encoder).
    pub edit: bool,
    /// Set when the folder could not be loaded; the model is listed but unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct QualitySteps {
    pub auto: u32,
    pub low: u32,
    pub medium: u32,
    pub high: u32,
}

/// `GET /api/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelsResponse {
    pub llm: Vec<LlmModel>,
    pub image: Vec<ImageModelInfo>,
    /// True when at least one image model is usable, so the UI may offer "Image creation".
    pub image_creation_available: bool,
    /// The image model requests use when they name none.
    #[serde(default)]
    pub default_image_model: Option<String>,
    #[serde(default)]
    pub styles: Vec<StyleInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StyleInfo {
    pub id: String,
    pub name: String,
}

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub database: String,
    pub image_engine: EngineHealth,
    /// The Easel processes sharing this database (one on a single machine).
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
}

/// One Easel process of a deployment: a web node (`easel serve`, which may paint too) or an
/// image worker (`easel worker`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    pub id: String,
    pub name: String,
    /// `web` or `worker`.
    pub kind: String,
    /// Whether it paints image jobs.
    pub paints: bool,
    pub execution_provider: String,
    /// The image models it paints.
    pub models: Vec<String>,
    /// The job it is painting (admins only; absent in `/api/health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_job: Option<String>,
    pub busy: bool,
    /// Jobs it finished per minute, over the last five minutes.
    pub jobs_per_minute: f64,
    pub started_at: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineHealth {
    /// `ready`, `no_models` or `unavailable` (ONNX Runtime could not be loaded).
    pub status: String,
    pub execution_provider: String,
    pub models: Vec<String>,
    pub models_loaded: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub queue_length: usize,
}

// ----- agents -----

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentMeta {
    #[serde(default)]
    pub internal_tools: InternalTools,
}

/// `POST /api/agents` and `PUT /api/agents/{id}` (PUT saves a new version).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub instructions: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub meta: AgentMeta,
    /// Share with everyone (others may use it, not edit it); unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Agent {
    pub id: String,
    /// Shared with everyone (others may use it, not edit it).
    #[serde(default)]
    pub shared: bool,
    /// Whether the one asking owns it (may edit it and see its versions).
    #[serde(default = "yes")]
    pub owned: bool,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub model: Option<String>,
    pub meta: AgentMeta,
    pub version: u32,
    pub version_id: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentVersion {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub model: Option<String>,
    pub meta: AgentMeta,
    pub created_at: String,
    pub current: bool,
}

// ----- run events (SSE `event:` names; `data:` is one of these) -----

pub mod events {
    //! Names and payloads of the run events (DESIGN.md "Run events").
    use serde::{Deserialize, Serialize};

    pub const RUN_STARTED: &str = "run.started";
    pub const MESSAGE_DELTA: &str = "message.delta";
    pub const TOOL_CALL: &str = "tool.call";
    pub const IMAGE_QUEUED: &str = "image.queued";
    /// The queue moved: a job's new position (jobs ahead of it).
    pub const IMAGE_POSITION: &str = "image.position";
    pub const IMAGE_PROGRESS: &str = "image.progress";
    pub const IMAGE_DONE: &str = "image.done";
    pub const TOOL_RESULT: &str = "tool.result";
    pub const MESSAGE_DONE: &str = "message.done";
    pub const RUN_ERROR: &str = "run.error";
    pub const RUN_CANCELLED: &str = "run.cancelled";
    pub const RUN_FINISHED: &str = "run.finished";
    pub const ALL: [&str; 12] = [
        RUN_STARTED,
        MESSAGE_DELTA,
        TOOL_CALL,
        IMAGE_QUEUED,
        IMAGE_POSITION,
        IMAGE_PROGRESS,
        IMAGE_DONE,
        TOOL_RESULT,
        MESSAGE_DONE,
        RUN_ERROR,
        RUN_CANCELLED,
        RUN_FINISHED,
    ];

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct RunStarted {
        pub run_id: String,
        pub conversation_id: String,
        pub message_id: String,
        pub model: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct MessageDelta {
        pub text: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ToolCall {
        pub id: String,
        pub name: String,
        pub arguments: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ImageQueued {
        pub tool_call_id: String,
        pub count: u32,
        /// Index of the first image of this call within the message.
        pub first_index: u32,
        pub width: u32,
        pub height: u32,
        pub prompt: String,
        /// Jobs ahead of this one in the engine's queue.
        pub queue_position: usize,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ImagePosition {
        pub tool_call_id: String,
        pub queue_position: usize,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ImageProgress {
        pub index: u32,
        pub step: u32,
        pub steps: u32,
        /// A small `data:image/jpeg;base64,…` approximation of the image so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub preview: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ImageDone {
        pub index: u32,
        pub image_id: String,
        pub url: String,
        pub thumbnail_url: String,
        pub width: u32,
        pub height: u32,
        pub seed: u64,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct ToolResult {
        pub id: String,
        pub name: String,
        pub result: String,
        pub is_error: bool,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct MessageDone {
        pub message_id: String,
        pub content: String,
        pub status: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct RunError {
        pub code: String,
        pub message: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    pub struct RunEnded {
        pub run_id: String,
        /// `finished`, `cancelled` or `failed`.
        pub status: String,
    }
}

/// Serde helper that tells "absent" (`None`) from "null" (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Option<String>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_absent_model_from_null_model() {
        let absent: UpdateConversation = serde_json::from_str(r#"{"title":"x"}"#).unwrap();
        assert_eq!(absent.model, None);
        let null: UpdateConversation = serde_json::from_str(r#"{"model":null}"#).unwrap();
        assert_eq!(null.model, Some(None));
        let set: UpdateConversation = serde_json::from_str(r#"{"model":"a/b"}"#).unwrap();
        assert_eq!(set.model, Some(Some("a/b".into())));
    }
}

// ----- Image Studio -----

/// `POST /api/studio/generations`: one Studio request (text-to-image, or an edit when a source
/// image is given). Sizes are any multiple of 8 up to the model's maximum.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StudioRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    #[serde(default = "one")]
    pub n: u32,
    /// `auto` or `WIDTHxHEIGHT`.
    #[serde(default = "auto")]
    pub size: String,
    #[serde(default)]
    pub quality: Option<String>,
    #[serde(default)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub guidance: Option<f32>,
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub style: Option<String>,
    /// `faster`, `normal` or `none`.
    #[serde(default = "normal")]
    pub preview: String,
    /// Edit an image of the gallery or the history…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    /// …or an uploaded one (base64 PNG/JPEG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_b64: Option<String>,
    /// The painted mask (base64 PNG; transparent or white = change). None: the whole image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_b64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
    /// `chunk` or `truncate`: prompts over 75 tokens (the server's setting when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_prompts: Option<String>,
    /// Whether `(word:1.3)` is a weight (the server's setting when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_weighting: Option<bool>,
}

fn one() -> u32 {
    1
}

fn auto() -> String {
    "auto".into()
}

fn normal() -> String {
    "normal".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StudioJob {
    pub job_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnhanceRequest {
    pub prompt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnhanceResponse {
    pub prompt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentToChat {
    pub conversation_id: String,
}

// ----- accounts -----

/// `GET /api/auth/status`: what the page must show before anything else.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuthStatus {
    /// `accounts` or `none`.
    pub mode: String,
    /// Accounts mode before the admin account exists: only "Create the admin account".
    #[serde(default)]
    pub setup_needed: bool,
    /// Without accounts: the server's API key is required.
    #[serde(default)]
    pub key_required: bool,
    pub signed_in: bool,
    /// `closed`, `open` or `approval` (whether the sign-in page offers sign-up).
    #[serde(default)]
    pub registration: String,
}

/// `POST /api/auth/setup` and `/signup`, and an admin's `POST /api/admin/users` (with `role`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountForm {
    #[serde(default)]
    pub name: String,
    pub email: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `POST /api/auth/login`: an email and a password, or (without accounts) the server's key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoginForm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreditsInfo {
    pub balance: i64,
    pub enabled: bool,
    #[serde(default)]
    pub allowance: i64,
    /// RFC 3339: when the allowance refills next (credits on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refills_at: Option<String>,
}

/// `GET /api/me`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Me {
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
    pub credits: CreditsInfo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// `GET /api/keys`: a key as lists show it (never the key itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NewApiKey {
    pub name: String,
    /// RFC 3339 (or a date, `2027-01-31`), optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /api/keys` → 201: the only time `key` is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub key: String,
}

/// An account as admins see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdminUser {
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub pending: bool,
    pub credits: i64,
    /// The user's own allowance (`None`: the default).
    pub allowance: Option<i64>,
    pub created_at: String,
}

/// `POST /api/studio/quote`: what a Studio request would cost, before it is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreditQuote {
    pub cost: i64,
    pub balance: i64,
    pub enabled: bool,
    /// Whether the balance covers the cost (always with credits off).
    pub enough: bool,
}

/// `GET /api/models/download`: the server's model download ("Get a model") and its progress.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelDownload {
    /// `idle`, `downloading`, `checking` (downloaded; loading it once), `ready` or `failed`.
    pub phase: String,
    /// The repository being (or last) downloaded.
    pub repo: String,
    /// The hub repository "Get a model" downloads when none is named.
    pub recommended: String,
    pub done: u64,
    pub total: u64,
    pub file: String,
    /// The new model's id once ready.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// Whether the caller may start one (admins).
    pub can_start: bool,
}

/// `POST /api/models/download` (admins): a hub repository, or the recommended one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelDownloadRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// `POST /api/studio/prompt`: how the engine will read a prompt, before painting.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PromptCheckRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_prompts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_weighting: Option<bool>,
}

/// The answer: token counts against what the encoder sees.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PromptCheck {
    /// The prompt's tokens (without the start and end markers).
    pub tokens: u32,
    pub negative_tokens: u32,
    /// The most tokens the encoder sees (75 truncating, 225 in chunks).
    pub limit: u32,
    /// Tokens cut off the prompt and the negative prompt (0 when they fit).
    pub dropped: u32,
    pub negative_dropped: u32,
    /// `chunk` or `truncate`, as the request will use.
    pub long_prompts: String,
    /// Whether the prompt carries weights other than 1.
    pub weighted: bool,
}

/// `PATCH /api/admin/users/{id}`: every field optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UserPatch {
    /// `admin` or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `false` also approves a pending sign-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password (the user's sessions end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsPatch>,
    /// `Some(None)` (JSON `null`) goes back to the default allowance; absent leaves it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option_i64"
    )]
    pub allowance: Option<Option<i64>>,
}

/// One of the two: a new balance, or credits to add (negative takes some away).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreditsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_balance: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<i64>,
}

/// `GET/PUT /api/admin/settings` (PUT takes any part; a model cost of `null` removes it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdminSettings {
    /// `closed`, `open` or `approval`.
    pub registration: String,
    pub credits: CreditSettings,
    /// Base cost of one image at the model's default size and steps; 1 when not set.
    #[serde(default)]
    pub model_costs: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CreditSettings {
    pub enabled: bool,
    pub default_allowance: i64,
    /// `day`, `week` or `month`: how often allowances refill.
    pub period: String,
}

/// `PUT /api/admin/settings` as the admin page sends it: everything at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdminSettingsUpdate {
    pub registration: String,
    pub credits: CreditSettings,
    pub model_costs: std::collections::BTreeMap<String, Option<i64>>,
}

/// `GET /api/admin/usage?days=N`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    /// Per user and model.
    pub rows: Vec<UsageRow>,
    /// Per day (UTC), days without use left out.
    pub days: Vec<UsageDay>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageRow {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub model: String,
    pub jobs: i64,
    pub images: i64,
    pub credits: i64,
    pub engine_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub images: i64,
    pub credits: i64,
}

/// `double_option` for numbers.
mod double_option_i64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Option<i64>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Option::<i64>::deserialize(d).map(Some)
    }
}
