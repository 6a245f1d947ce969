//! `messages`: the history. An assistant message is created `running` with its run (so the
//! history has a place for the reply and a crash leaves a trace); while it runs, its text is
//! checkpointed, each tool call is written as it completes and each image as it finishes (by
//! the image job); the end only flips status and text.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::conversations::{insert_conversation, ConversationRecord, NewConversation};
use super::images::{insert_image, NewImage};
use super::kinds::{column, MessageStatus, Role};
use super::{new_id, now_ms, Result, Store};

#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub model: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A tool call the assistant made, with the short text result the LLM saw (stored as JSON in
/// `messages.tool_calls`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the LLM sent them (JSON text, possibly invalid).
    pub arguments: String,
    pub result: String,
    #[serde(default)]
    pub is_error: bool,
}

#[derive(FromRow)]
struct Row {
    id: String,
    conversation_id: String,
    user_id: String,
    role: String,
    content: String,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    model: Option<String>,
    tool_calls: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for MessageRecord {
    type Error = super::StoreError;

    fn try_from(r: Row) -> Result<Self> {
        Ok(MessageRecord {
            role: column(&r.role, Role::parse)?,
            status: column(&r.status, MessageStatus::parse)?,
            tool_calls: serde_json::from_str(&r.tool_calls)?,
            id: r.id,
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            content: r.content,
            error_code: r.error_code,
            error_message: r.error_message,
            model: r.model,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const COLUMNS: &str = "id, conversation_id, user_id, role, content, status, error_code, error_message, model, tool_calls, created_at, updated_at";

/// What `begin_turn` committed.
#[derive(Debug, Clone)]
pub struct TurnStart {
    pub user_message: MessageRecord,
    pub assistant: MessageRecord,
    pub run_id: String,
}

/// How a reply ends: its final text and status (images and tool calls are already stored).
#[derive(Debug, Clone)]
pub struct MessageEnd {
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<(String, String)>,
}

/// A message of an imported (or assembled) conversation, with its images.
#[derive(Debug, Clone)]
pub struct ImportedMessage {
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<(String, String)>,
    pub model: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub created_at: i64,
    /// `message_id` and `conversation_id` are filled in by the import.
    pub images: Vec<NewImage>,
}

impl Store {
    /// Commits the user's message, the assistant's `running` placeholder and the run together,
    /// before any model is called: nothing the user wrote can be lost to a failure further on.
    ///
    /// At most one reply runs per conversation: the check and the insert share one write
    /// transaction, and a partial unique index on `runs` backs it. `Ok(Err(run_id))` names the
    /// reply that is still running.
    pub async fn begin_turn(
        &self,
        user_id: &str,
        conversation_id: &str,
        content: &str,
        model: &str,
        (node, lease_until): (&str, i64),
    ) -> Result<std::result::Result<TurnStart, String>> {
        let now = now_ms();
        let user_message = MessageRecord {
            id: new_id(),
            conversation_id: conversation_id.to_string(),
            user_id: user_id.to_string(),
            role: Role::User,
            content: content.to_string(),
            status: MessageStatus::Complete,
            error_code: None,
            error_message: None,
            model: None,
            tool_calls: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let assistant = MessageRecord {
            id: new_id(),
            role: Role::Assistant,
            content: String::new(),
            status: MessageStatus::Running,
            model: Some(model.to_string()),
            // One millisecond later keeps the order stable even for equal clocks.
            created_at: now + 1,
            updated_at: now + 1,
            ..user_message.clone()
        };
        let run_id = new_id();
        let mut tx = self.write().await?;
        let active: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE conversation_id = $1 AND status = 'running' LIMIT 1",
        )
        .bind(conversation_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((active,)) = active {
            return Ok(Err(active));
        }
        for m in [&user_message, &assistant] {
            insert_message(&mut tx, m).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO runs (id, conversation_id, user_id, user_message_id, assistant_message_id, status, created_at, node, lease_until)
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8)",
        )
        .bind(&run_id)
        .bind(conversation_id)
        .bind(user_id)
        .bind(&user_message.id)
        .bind(&assistant.id)
        .bind(now)
        .bind(node)
        .bind(lease_until)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            let e = super::StoreError::from(e);
            if e.is_unique_violation() {
                // Another node or request won the race between our check and insert.
                return Ok(Err(String::new()));
            }
            return Err(e);
        }
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(TurnStart {
            user_message,
            assistant,
            run_id,
        }))
    }

    /// Saves the partial text of a running reply, so a crash keeps what was already written.
    pub async fn checkpoint_message(&self, id: &str, content: &str) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET content = $1, updated_at = $2 WHERE id = $3 AND status = 'running'",
        )
        .bind(content)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the reply's tool calls so far (each completed call is written at once).
    pub async fn set_tool_calls(&self, message_id: &str, calls: &[ToolCall]) -> Result<()> {
        sqlx::query("UPDATE messages SET tool_calls = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(calls)?)
            .bind(now_ms())
            .bind(message_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The run's end: the message's final text and status and the run row, atomically.
    /// Returns false when the message was deleted meanwhile.
    pub async fn finish_turn(
        &self,
        run_id: &str,
        message_id: &str,
        end: MessageEnd,
    ) -> Result<bool> {
        let now = now_ms();
        let (code, text) = end.error.clone().unzip();
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE messages SET content = $1, status = $2, error_code = $3, error_message = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(&end.content)
        .bind(end.status.as_str())
        .bind(&code)
        .bind(&text)
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE runs SET status = $1, error_code = $2, error_message = $3, finished_at = $4 WHERE id = $5",
        )
        .bind(end.status.run_status().as_str())
        .bind(&code)
        .bind(&text)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(updated > 0)
    }

    pub async fn list_messages(&self, conversation_id: &str) -> Result<Vec<MessageRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY created_at, id"
        ))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn get_message(&self, user_id: &str, id: &str) -> Result<Option<MessageRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM messages WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Deletes one message and (by cascade) its images, jobs and the runs that produced or
    /// answered it; a reply still running is not deleted (`false`).
    pub async fn delete_message(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM messages WHERE id = $1 AND user_id = $2 AND status <> 'running'",
        )
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Clears a conversation's history; its images go with the messages.
    pub async fn clear_messages(&self, conversation_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM messages WHERE conversation_id = $1")
            .bind(conversation_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Creates a conversation with its messages and images in one transaction (import, "send
    /// to chat"): any error leaves nothing behind.
    pub async fn insert_conversation_with_history(
        &self,
        conversation: NewConversation<'_>,
        messages: Vec<ImportedMessage>,
    ) -> Result<ConversationRecord> {
        let mut tx = self.write().await?;
        let record = insert_conversation(&mut tx, conversation).await?;
        for m in messages {
            let (error_code, error_message) = m.error.unzip();
            let message = MessageRecord {
                id: new_id(),
                conversation_id: record.id.clone(),
                user_id: record.user_id.clone(),
                role: m.role,
                content: m.content,
                status: m.status,
                error_code,
                error_message,
                model: m.model,
                tool_calls: m.tool_calls,
                created_at: m.created_at,
                updated_at: m.created_at,
            };
            insert_message(&mut tx, &message).await?;
            for image in m.images {
                let image = NewImage {
                    message_id: Some(message.id.clone()),
                    conversation_id: Some(record.id.clone()),
                    ..image
                };
                insert_image(&mut *tx, &image).await?;
            }
        }
        tx.commit().await?;
        Ok(record)
    }
}

async fn insert_message(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    m: &MessageRecord,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&m.id)
    .bind(&m.conversation_id)
    .bind(&m.user_id)
    .bind(m.role.as_str())
    .bind(&m.content)
    .bind(m.status.as_str())
    .bind(&m.error_code)
    .bind(&m.error_message)
    .bind(&m.model)
    .bind(serde_json::to_string(&m.tool_calls)?)
    .bind(m.created_at)
    .bind(m.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
