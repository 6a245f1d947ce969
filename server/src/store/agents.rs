//! `agents` and `agent_versions`: every save is a new version; the agent points at the current one.

use app::api::{AgentInput, AgentMeta};
use sqlx::FromRow;

use super::{new_id, now_ms, Result, Store};

/// An agent with its current version's settings.
#[derive(Debug, Clone, FromRow)]
pub struct AgentRecord {
    pub id: String,
    pub user_id: String,
    pub version_id: String,
    pub version: i64,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub model: Option<String>,
    #[sqlx(json)]
    pub meta: AgentMeta,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct AgentVersionRecord {
    pub id: String,
    pub agent_id: String,
    pub version: i64,
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub model: Option<String>,
    #[sqlx(json)]
    pub meta: AgentMeta,
    pub created_at: i64,
}

const AGENT_SELECT: &str =
    "SELECT a.id, a.user_id, v.id AS version_id, v.version, v.name, v.description,
        v.instructions, v.model, v.meta, a.created_at, a.updated_at
     FROM agents a JOIN agent_versions v ON v.id = a.current_version_id";

impl Store {
    pub async fn create_agent(&self, user_id: &str, input: &AgentInput) -> Result<AgentRecord> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO agents (id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)")
            .bind(&id)
            .bind(user_id)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let version_id = insert_version(&mut tx, &id, 1, input, now).await?;
        sqlx::query("UPDATE agents SET current_version_id = ? WHERE id = ?")
            .bind(&version_id)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sqlx::query_as(&format!("{AGENT_SELECT} WHERE a.id = ?"))
            .bind(&id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Saves a new version and makes it current; `None` when the agent does not exist.
    pub async fn update_agent(
        &self,
        user_id: &str,
        id: &str,
        input: &AgentInput,
    ) -> Result<Option<AgentRecord>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let latest: Option<(i64,)> = sqlx::query_as(
            "SELECT COALESCE(MAX(v.version), 0) FROM agents a LEFT JOIN agent_versions v ON v.agent_id = a.id
             WHERE a.id = ? AND a.user_id = ? GROUP BY a.id",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((latest,)) = latest else {
            return Ok(None);
        };
        let version_id = insert_version(&mut tx, id, latest + 1, input, now).await?;
        sqlx::query("UPDATE agents SET current_version_id = ?, updated_at = ? WHERE id = ?")
            .bind(&version_id)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_agent(user_id, id).await
    }

    pub async fn get_agent(&self, user_id: &str, id: &str) -> Result<Option<AgentRecord>> {
        Ok(
            sqlx::query_as(&format!("{AGENT_SELECT} WHERE a.id = ? AND a.user_id = ?"))
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn list_agents(&self, user_id: &str) -> Result<Vec<AgentRecord>> {
        Ok(sqlx::query_as(&format!(
            "{AGENT_SELECT} WHERE a.user_id = ? ORDER BY a.updated_at DESC, a.id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_agent_version(&self, id: &str) -> Result<Option<AgentVersionRecord>> {
        Ok(sqlx::query_as("SELECT * FROM agent_versions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Newest first.
    pub async fn agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersionRecord>> {
        Ok(
            sqlx::query_as("SELECT * FROM agent_versions WHERE agent_id = ? ORDER BY version DESC")
                .bind(agent_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Deletes the agent and its versions; its conversations stay, detached from it.
    pub async fn delete_agent(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agents WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    agent_id: &str,
    version: i64,
    input: &AgentInput,
    now: i64,
) -> Result<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO agent_versions (id, agent_id, version, name, description, instructions, model, meta, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(agent_id)
    .bind(version)
    .bind(&input.name)
    .bind(&input.description)
    .bind(&input.instructions)
    .bind(&input.model)
    .bind(serde_json::to_string(&input.meta)?)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
