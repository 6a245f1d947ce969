//! `conversations`: titles, the model, the agent it came from, internal-tool toggles.

use app::api::InternalTools;
use sqlx::FromRow;

use super::{new_id, now_ms, Result, Store};

#[derive(Debug, Clone, FromRow)]
pub struct ConversationRecord {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub title_is_custom: bool,
    pub agent_id: Option<String>,
    pub agent_version_id: Option<String>,
    pub model: Option<String>,
    #[sqlx(json)]
    pub internal_tools: InternalTools,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Title of a conversation nobody has named yet.
pub const UNTITLED: &str = "New conversation";

pub struct NewConversation<'a> {
    pub user_id: &'a str,
    pub title: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub agent_version_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub internal_tools: InternalTools,
}

impl Store {
    pub async fn create_conversation(
        &self,
        new: NewConversation<'_>,
    ) -> Result<ConversationRecord> {
        let now = now_ms();
        let record = ConversationRecord {
            id: new_id(),
            user_id: new.user_id.to_string(),
            title: new.title.unwrap_or(UNTITLED).to_string(),
            title_is_custom: new.title.is_some(),
            agent_id: new.agent_id.map(str::to_string),
            agent_version_id: new.agent_version_id.map(str::to_string),
            model: new.model.map(str::to_string),
            internal_tools: new.internal_tools,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO conversations
               (id, user_id, title, title_is_custom, agent_id, agent_version_id, model, internal_tools, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.id)
        .bind(&record.user_id)
        .bind(&record.title)
        .bind(record.title_is_custom)
        .bind(&record.agent_id)
        .bind(&record.agent_version_id)
        .bind(&record.model)
        .bind(serde_json::to_string(&record.internal_tools)?)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(record)
    }

    /// Newest activity first.
    pub async fn list_conversations(&self, user_id: &str) -> Result<Vec<ConversationRecord>> {
        Ok(sqlx::query_as(
            "SELECT * FROM conversations WHERE user_id = ? ORDER BY updated_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_conversation(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<ConversationRecord>> {
        Ok(
            sqlx::query_as("SELECT * FROM conversations WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn rename_conversation(&self, id: &str, title: &str) -> Result<()> {
        sqlx::query(
            "UPDATE conversations SET title = ?, title_is_custom = 1, updated_at = ? WHERE id = ?",
        )
        .bind(title)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Names the conversation after its first message, unless the user already named it.
    pub async fn set_automatic_title(&self, id: &str, title: &str) -> Result<()> {
        sqlx::query(
            "UPDATE conversations SET title = ? WHERE id = ? AND title_is_custom = 0 AND title = ?",
        )
        .bind(title)
        .bind(id)
        .bind(UNTITLED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_conversation_model(&self, id: &str, model: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE conversations SET model = ?, updated_at = ? WHERE id = ?")
            .bind(model)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_internal_tools(&self, id: &str, tools: InternalTools) -> Result<()> {
        sqlx::query("UPDATE conversations SET internal_tools = ?, updated_at = ? WHERE id = ?")
            .bind(serde_json::to_string(&tools)?)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the conversation; messages, runs and image bytes go with it (ON DELETE CASCADE).
    pub async fn delete_conversation(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM conversations WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
