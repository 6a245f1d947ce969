//! `messages`: the history. Assistant messages are written twice: a `running` row when their
//! run starts (so the history has a place for the reply and a crash leaves a trace), and the
//! final state, with its images, in one transaction when the run ends.

use app::api::ToolCallRecord;
use sqlx::FromRow;

use super::images::{insert_image, NewImage};
use super::{new_id, now_ms, Result, Store};

#[derive(Debug, Clone, FromRow)]
pub struct MessageRecord {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub role: String,
    pub content: String,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub model: Option<String>,
    #[sqlx(json)]
    pub tool_calls: Vec<ToolCallRecord>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a run leaves behind when it ends.
#[derive(Debug, Clone)]
pub struct MessageFinal {
    pub content: String,
    /// `complete`, `cancelled` or `failed`.
    pub status: &'static str,
    pub error: Option<(String, String)>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub images: Vec<NewImage>,
}

impl Store {
    /// Commits the user's message and the assistant's `running` placeholder together, before any
    /// model is called: nothing the user wrote can be lost to a failure further on.
    pub async fn begin_turn(
        &self,
        user_id: &str,
        conversation_id: &str,
        content: &str,
        model: &str,
    ) -> Result<(MessageRecord, MessageRecord, String)> {
        let now = now_ms();
        let user_message = MessageRecord {
            id: new_id(),
            conversation_id: conversation_id.to_string(),
            user_id: user_id.to_string(),
            role: "user".into(),
            content: content.to_string(),
            status: "complete".into(),
            error_code: None,
            error_message: None,
            model: None,
            tool_calls: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let assistant = MessageRecord {
            id: new_id(),
            role: "assistant".into(),
            content: String::new(),
            status: "running".into(),
            model: Some(model.to_string()),
            // One millisecond later keeps the order stable even for equal clocks.
            created_at: now + 1,
            updated_at: now + 1,
            ..user_message.clone()
        };
        let run_id = new_id();
        let mut tx = self.pool.begin().await?;
        for m in [&user_message, &assistant] {
            sqlx::query(
                "INSERT INTO messages (id, conversation_id, user_id, role, content, status, model, tool_calls, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, '[]', ?, ?)",
            )
            .bind(&m.id)
            .bind(&m.conversation_id)
            .bind(&m.user_id)
            .bind(&m.role)
            .bind(&m.content)
            .bind(&m.status)
            .bind(&m.model)
            .bind(m.created_at)
            .bind(m.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO runs (id, conversation_id, user_id, user_message_id, assistant_message_id, status, created_at)
             VALUES (?, ?, ?, ?, ?, 'running', ?)",
        )
        .bind(&run_id)
        .bind(conversation_id)
        .bind(user_id)
        .bind(&user_message.id)
        .bind(&assistant.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((user_message, assistant, run_id))
    }

    /// Saves the partial text of a running reply, so a crash keeps what was already written.
    pub async fn checkpoint_message(&self, id: &str, content: &str) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'running'",
        )
        .bind(content)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The run's end: message text, status, tool calls, images and the run row, atomically.
    /// Returns false when the message was deleted meanwhile (the images are then not stored).
    pub async fn finish_turn(
        &self,
        run_id: &str,
        message_id: &str,
        fin: MessageFinal,
    ) -> Result<bool> {
        let now = now_ms();
        let (code, text) = fin.error.clone().unzip();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE messages SET content = ?, status = ?, error_code = ?, error_message = ?, tool_calls = ?, updated_at = ?
             WHERE id = ?",
        )
        .bind(&fin.content)
        .bind(fin.status)
        .bind(&code)
        .bind(&text)
        .bind(serde_json::to_string(&fin.tool_calls)?)
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let run_status = match fin.status {
            "complete" => "finished",
            other => other,
        };
        sqlx::query(
            "UPDATE runs SET status = ?, error_code = ?, error_message = ?, finished_at = ? WHERE id = ?",
        )
        .bind(run_status)
        .bind(&code)
        .bind(&text)
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        if updated == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        for image in &fin.images {
            insert_image(&mut tx, image).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn list_messages(&self, conversation_id: &str) -> Result<Vec<MessageRecord>> {
        Ok(sqlx::query_as(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_message(&self, user_id: &str, id: &str) -> Result<Option<MessageRecord>> {
        Ok(
            sqlx::query_as("SELECT * FROM messages WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Deletes one message and (by cascade) its images and the runs that produced or answered it.
    pub async fn delete_message(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM messages WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Clears a conversation's history; its images go with the messages.
    pub async fn clear_messages(&self, conversation_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM messages WHERE conversation_id = ?")
            .bind(conversation_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Inserts a message as it was exported (import); keeps ids fresh to avoid collisions.
    pub async fn import_message(
        &self,
        conversation_id: &str,
        m: &MessageRecord,
        images: &[NewImage],
    ) -> Result<String> {
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, user_id, role, content, status, error_code, error_message, model, tool_calls, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(conversation_id)
        .bind(&m.user_id)
        .bind(&m.role)
        .bind(&m.content)
        .bind(&m.status)
        .bind(&m.error_code)
        .bind(&m.error_message)
        .bind(&m.model)
        .bind(serde_json::to_string(&m.tool_calls)?)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
        for image in images {
            let image = NewImage {
                message_id: Some(id.clone()),
                conversation_id: Some(conversation_id.to_string()),
                ..image.clone()
            };
            insert_image(&mut tx, &image).await?;
        }
        tx.commit().await?;
        Ok(id)
    }
}
