//! `agents` and `agent_versions`: every save is a new version; the agent points at the current one.

use sqlx::FromRow;

use super::conversations::InternalToolsJson;
use super::{new_id, now_ms, Result, Store};

/// What one version of an agent says (what a save writes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSettings {
    pub name: String,
    pub description: String,
    pub instructions: String,
    pub model: Option<String>,
    pub image_creation: bool,
}

/// An agent with its current version's settings.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub id: String,
    pub user_id: String,
    /// Shared with everyone: others may use it, only its owner edits it.
    pub shared: bool,
    pub version_id: String,
    pub version: i64,
    pub settings: AgentSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct AgentVersionRecord {
    pub id: String,
    pub agent_id: String,
    pub version: i64,
    pub settings: AgentSettings,
    pub created_at: i64,
}

/// `agent_versions.meta`: `{"internal_tools": {"image_creation": true}}`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Meta {
    #[serde(default)]
    internal_tools: InternalToolsJson,
}

fn settings(
    name: String,
    description: String,
    instructions: String,
    model: Option<String>,
    meta: &str,
) -> AgentSettings {
    // Toggles that cannot be read are off: the safe reading of a damaged row.
    let meta: Meta = serde_json::from_str(meta).unwrap_or_default();
    AgentSettings {
        name,
        description,
        instructions,
        model,
        image_creation: meta.internal_tools.image_creation,
    }
}

#[derive(FromRow)]
struct AgentRow {
    id: String,
    user_id: String,
    shared: i64,
    version_id: String,
    version: i64,
    name: String,
    description: String,
    instructions: String,
    model: Option<String>,
    meta: String,
    created_at: i64,
    updated_at: i64,
}

impl From<AgentRow> for AgentRecord {
    fn from(r: AgentRow) -> Self {
        AgentRecord {
            settings: settings(r.name, r.description, r.instructions, r.model, &r.meta),
            id: r.id,
            user_id: r.user_id,
            shared: r.shared != 0,
            version_id: r.version_id,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(FromRow)]
struct VersionRow {
    id: String,
    agent_id: String,
    version: i64,
    name: String,
    description: String,
    instructions: String,
    model: Option<String>,
    meta: String,
    created_at: i64,
}

impl From<VersionRow> for AgentVersionRecord {
    fn from(r: VersionRow) -> Self {
        AgentVersionRecord {
            settings: settings(r.name, r.description, r.instructions, r.model, &r.meta),
            id: r.id,
            agent_id: r.agent_id,
            version: r.version,
            created_at: r.created_at,
        }
    }
}

const AGENT_SELECT: &str =
    "SELECT a.id, a.user_id, a.shared, v.id AS version_id, v.version, v.name, v.description,
        v.instructions, v.model, v.meta, a.created_at, a.updated_at
     FROM agents a JOIN agent_versions v ON v.id = a.current_version_id";

const VERSION_COLUMNS: &str =
    "id, agent_id, version, name, description, instructions, model, meta, created_at";

impl Store {
    pub async fn create_agent(
        &self,
        user_id: &str,
        input: &AgentSettings,
        shared: bool,
    ) -> Result<AgentRecord> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO agents (id, user_id, shared, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(i64::from(shared))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let version_id = insert_version(&mut tx, &id, 1, input, now).await?;
        sqlx::query("UPDATE agents SET current_version_id = $1 WHERE id = $2")
            .bind(&version_id)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let row: AgentRow = sqlx::query_as(&format!("{AGENT_SELECT} WHERE a.id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Saves a new version and makes it current; `None` when the agent does not exist. The
    /// version number is read and written under the write lock, so concurrent saves queue up
    /// and each gets the next number.
    pub async fn update_agent(
        &self,
        user_id: &str,
        id: &str,
        input: &AgentSettings,
        shared: Option<bool>,
    ) -> Result<Option<AgentRecord>> {
        let now = now_ms();
        let mut tx = self.write().await?;
        // The agent's row is locked first, so concurrent saves number their versions in turn.
        let owned: Option<(String,)> = sqlx::query_as(&format!(
            "SELECT id FROM agents WHERE id = $1 AND user_id = $2{}",
            self.for_update()
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let latest: Option<(i64,)> = sqlx::query_as(
            "SELECT COALESCE(MAX(v.version), 0) FROM agents a LEFT JOIN agent_versions v ON v.agent_id = a.id
             WHERE a.id = $1 AND a.user_id = $2 GROUP BY a.id",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((latest,)) = latest else {
            return Ok(None);
        };
        let version_id = insert_version(&mut tx, id, latest + 1, input, now).await?;
        sqlx::query("UPDATE agents SET current_version_id = $1, updated_at = $2 WHERE id = $3")
            .bind(&version_id)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some(shared) = shared {
            sqlx::query("UPDATE agents SET shared = $1 WHERE id = $2")
                .bind(i64::from(shared))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let row: AgentRow = sqlx::query_as(&format!("{AGENT_SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(row.into()))
    }

    pub async fn get_agent(&self, user_id: &str, id: &str) -> Result<Option<AgentRecord>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "{AGENT_SELECT} WHERE a.id = $1 AND a.user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// An agent the user may use: their own, or one shared with everyone.
    pub async fn get_usable_agent(&self, user_id: &str, id: &str) -> Result<Option<AgentRecord>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "{AGENT_SELECT} WHERE a.id = $1 AND (a.user_id = $2 OR a.shared = 1)"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// The user's agents and those shared with everyone.
    pub async fn list_agents(&self, user_id: &str) -> Result<Vec<AgentRecord>> {
        let rows: Vec<AgentRow> = sqlx::query_as(&format!(
            "{AGENT_SELECT} WHERE a.user_id = $1 OR a.shared = 1 ORDER BY a.updated_at DESC, a.id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn get_agent_version(&self, id: &str) -> Result<Option<AgentVersionRecord>> {
        let row: Option<VersionRow> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM agent_versions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Newest first.
    pub async fn agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM agent_versions WHERE agent_id = $1 ORDER BY version DESC"
        ))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Deletes the agent and its versions; its conversations stay, detached from it.
    pub async fn delete_agent(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agents WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    agent_id: &str,
    version: i64,
    input: &AgentSettings,
    now: i64,
) -> Result<String> {
    let id = new_id();
    let meta = serde_json::to_string(&Meta {
        internal_tools: InternalToolsJson {
            image_creation: input.image_creation,
        },
    })?;
    sqlx::query(&format!(
        "INSERT INTO agent_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&id)
    .bind(agent_id)
    .bind(version)
    .bind(&input.name)
    .bind(&input.description)
    .bind(&input.instructions)
    .bind(&input.model)
    .bind(meta)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
