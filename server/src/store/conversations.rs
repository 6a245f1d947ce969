//! `conversations`: titles, the model, the agent it came from, internal-tool toggles.

use sqlx::FromRow;

use super::{new_id, now_ms, Result, Store};

#[derive(Debug, Clone)]
pub struct ConversationRecord {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub title_is_custom: bool,
    pub agent_id: Option<String>,
    pub agent_version_id: Option<String>,
    pub model: Option<String>,
    /// The "Image creation" internal tool.
    pub image_creation: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    user_id: String,
    title: String,
    title_is_custom: i64,
    agent_id: Option<String>,
    agent_version_id: Option<String>,
    model: Option<String>,
    internal_tools: String,
    created_at: i64,
    updated_at: i64,
}

/// The JSON of `conversations.internal_tools` (and of agents' `meta.internal_tools`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct InternalToolsJson {
    #[serde(default)]
    pub image_creation: bool,
}

impl InternalToolsJson {
    pub fn text(image_creation: bool) -> String {
        serde_json::json!({ "image_creation": image_creation }).to_string()
    }
}

impl From<Row> for ConversationRecord {
    fn from(r: Row) -> Self {
        // A toggle that cannot be read is off: the safe reading of a damaged row.
        let tools: InternalToolsJson = serde_json::from_str(&r.internal_tools).unwrap_or_default();
        ConversationRecord {
            id: r.id,
            user_id: r.user_id,
            title: r.title,
            title_is_custom: r.title_is_custom != 0,
            agent_id: r.agent_id,
            agent_version_id: r.agent_version_id,
            model: r.model,
            image_creation: tools.image_creation,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Title of a conversation nobody has named yet.
pub const UNTITLED: &str = "New conversation";

pub struct NewConversation<'a> {
    pub user_id: &'a str,
    pub title: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub agent_version_id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub image_creation: bool,
}

const COLUMNS: &str = "id, user_id, title, title_is_custom, agent_id, agent_version_id, model, internal_tools, created_at, updated_at";

impl Store {
    pub async fn create_conversation(
        &self,
        new: NewConversation<'_>,
    ) -> Result<ConversationRecord> {
        let mut tx = self.write().await?;
        let record = insert_conversation(&mut tx, new).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Newest activity first.
    pub async fn list_conversations(&self, user_id: &str) -> Result<Vec<ConversationRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE user_id = $1 ORDER BY updated_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn get_conversation(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<ConversationRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM conversations WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    pub async fn rename_conversation(&self, id: &str, title: &str) -> Result<()> {
        sqlx::query(
            "UPDATE conversations SET title = $1, title_is_custom = 1, updated_at = $2 WHERE id = $3",
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
            "UPDATE conversations SET title = $1 WHERE id = $2 AND title_is_custom = 0 AND title = $3",
        )
        .bind(title)
        .bind(id)
        .bind(UNTITLED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_conversation_model(&self, id: &str, model: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE conversations SET model = $1, updated_at = $2 WHERE id = $3")
            .bind(model)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_image_creation(&self, id: &str, on: bool) -> Result<()> {
        sqlx::query("UPDATE conversations SET internal_tools = $1, updated_at = $2 WHERE id = $3")
            .bind(InternalToolsJson::text(on))
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the conversation; messages, runs, jobs and image bytes go with it (ON DELETE
    /// CASCADE).
    pub async fn delete_conversation(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

pub(super) async fn insert_conversation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
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
        image_creation: new.image_creation,
        created_at: now,
        updated_at: now,
    };
    sqlx::query(&format!(
        "INSERT INTO conversations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&record.id)
    .bind(&record.user_id)
    .bind(&record.title)
    .bind(i64::from(record.title_is_custom))
    .bind(&record.agent_id)
    .bind(&record.agent_version_id)
    .bind(&record.model)
    .bind(InternalToolsJson::text(record.image_creation))
    .bind(record.created_at)
    .bind(record.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(record)
}
