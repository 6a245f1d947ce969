//! `runs`: how each assistant turn ended, for clients that come back after the live events
//! are gone (a restart, or a run finished long ago).

use sqlx::FromRow;

use super::kinds::{column, RunStatus};
use super::{Result, Store};

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub user_message_id: String,
    pub assistant_message_id: String,
    pub status: RunStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(FromRow)]
struct Row {
    id: String,
    conversation_id: String,
    user_id: String,
    user_message_id: String,
    assistant_message_id: String,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<Row> for RunRecord {
    type Error = super::StoreError;

    fn try_from(r: Row) -> Result<Self> {
        Ok(RunRecord {
            status: column(&r.status, RunStatus::parse)?,
            id: r.id,
            conversation_id: r.conversation_id,
            user_id: r.user_id,
            user_message_id: r.user_message_id,
            assistant_message_id: r.assistant_message_id,
            error_code: r.error_code,
            error_message: r.error_message,
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
    }
}

const COLUMNS: &str = "id, conversation_id, user_id, user_message_id, assistant_message_id, status, error_code, error_message, created_at, finished_at";

impl Store {
    pub async fn get_run(&self, user_id: &str, id: &str) -> Result<Option<RunRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM runs WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The run that is still producing a message of this conversation, if any.
    pub async fn active_run(&self, conversation_id: &str) -> Result<Option<RunRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM runs WHERE conversation_id = $1 AND status = 'running' ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(conversation_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Every run of one conversation, oldest first.
    pub async fn runs_of_conversation(&self, conversation_id: &str) -> Result<Vec<RunRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM runs WHERE conversation_id = $1 ORDER BY created_at"
        ))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
