//! `runs`: how each assistant turn ended, for clients that come back after the live events
//! are gone (a restart, or a run finished long ago).

use sqlx::FromRow;

use super::{Result, Store};

#[derive(Debug, Clone, FromRow)]
pub struct RunRecord {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub user_message_id: String,
    pub assistant_message_id: String,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl Store {
    pub async fn get_run(&self, user_id: &str, id: &str) -> Result<Option<RunRecord>> {
        Ok(
            sqlx::query_as("SELECT * FROM runs WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The run that is still producing a message of this conversation, if any.
    pub async fn active_run(&self, conversation_id: &str) -> Result<Option<RunRecord>> {
        Ok(sqlx::query_as(
            "SELECT * FROM runs WHERE conversation_id = ? AND status = 'running' ORDER BY created_at DESC LIMIT 1",
        )
        .bind(conversation_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Run ids by the assistant message they produce, for one conversation.
    pub async fn runs_of_conversation(&self, conversation_id: &str) -> Result<Vec<RunRecord>> {
        Ok(
            sqlx::query_as("SELECT * FROM runs WHERE conversation_id = ? ORDER BY created_at")
                .bind(conversation_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
