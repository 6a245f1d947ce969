//! `images`: generated pictures, stored with the message that made them (or as Studio and API
//! results), each written the moment it is finished.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::kinds::{column, ImageSource};
use super::{now_ms, Result, Store};

/// How an image was made: enough to make it again. Stored as JSON in `images.metadata` (the
/// same shape the API shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
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
    /// The request as its caller stated it (the tool's arguments, the Studio form, …).
    #[serde(default)]
    pub tool_arguments: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f32>,
}

impl ImageMeta {
    /// The prompt the person wrote (before the style template), for names and titles.
    pub fn written_prompt(&self) -> &str {
        self.tool_arguments
            .get("prompt")
            .and_then(|p| p.as_str())
            .unwrap_or(&self.prompt)
    }
}

/// An image ready to be stored: the encoded bytes and how it was made.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub job_id: Option<String>,
    pub source: ImageSource,
    /// Place among its message's (or job's) images.
    pub position: u32,
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
    pub thumbnail: Vec<u8>,
    pub metadata: ImageMeta,
}

/// An image's row without its large blobs; bytes are fetched on demand.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub job_id: Option<String>,
    pub source: ImageSource,
    pub position: i64,
    pub width: i64,
    pub height: i64,
    pub metadata: ImageMeta,
    pub created_at: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    user_id: String,
    message_id: Option<String>,
    conversation_id: Option<String>,
    job_id: Option<String>,
    source: String,
    position: i64,
    width: i64,
    height: i64,
    metadata: String,
    created_at: i64,
}

impl TryFrom<Row> for ImageRecord {
    type Error = super::StoreError;

    fn try_from(r: Row) -> Result<Self> {
        Ok(ImageRecord {
            source: column(&r.source, ImageSource::parse)?,
            metadata: serde_json::from_str(&r.metadata)?,
            id: r.id,
            user_id: r.user_id,
            message_id: r.message_id,
            conversation_id: r.conversation_id,
            job_id: r.job_id,
            position: r.position,
            width: r.width,
            height: r.height,
            created_at: r.created_at,
        })
    }
}

const RECORD_COLUMNS: &str = "id, user_id, message_id, conversation_id, job_id, source, position, width, height, metadata, created_at";

pub(super) async fn insert_image<'c, E>(executor: E, image: &NewImage) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO images (id, user_id, message_id, conversation_id, job_id, source, position, width, height, png, thumbnail, metadata, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&image.id)
    .bind(&image.user_id)
    .bind(&image.message_id)
    .bind(&image.conversation_id)
    .bind(&image.job_id)
    .bind(image.source.as_str())
    .bind(i64::from(image.position))
    .bind(i64::from(image.width))
    .bind(i64::from(image.height))
    .bind(&image.png)
    .bind(&image.thumbnail)
    .bind(serde_json::to_string(&image.metadata)?)
    .bind(now_ms())
    .execute(executor)
    .await?;
    Ok(())
}

/// Which stored encoding of an image to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBlob {
    Png,
    Jpeg,
    Thumbnail,
}

impl ImageBlob {
    fn column(self) -> &'static str {
        match self {
            ImageBlob::Png => "png",
            ImageBlob::Jpeg => "jpeg",
            ImageBlob::Thumbnail => "thumbnail",
        }
    }
}

impl Store {
    /// Stores one image at once (a finished image of a job, an upload).
    pub async fn insert_image(&self, image: &NewImage) -> Result<()> {
        insert_image(&self.pool, image).await
    }

    pub async fn get_image(&self, user_id: &str, id: &str) -> Result<Option<ImageRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// One encoding's bytes; `None` when the image does not exist or (JPEG) was never made.
    pub async fn image_bytes(
        &self,
        user_id: &str,
        id: &str,
        blob: ImageBlob,
    ) -> Result<Option<Vec<u8>>> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(&format!(
            "SELECT {} FROM images WHERE id = $1 AND user_id = $2",
            blob.column()
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(bytes,)| bytes))
    }

    /// Keeps the JPEG made on first request, so the next one is a read.
    pub async fn store_jpeg(&self, id: &str, jpeg: &[u8]) -> Result<()> {
        sqlx::query("UPDATE images SET jpeg = $1 WHERE id = $2")
            .bind(jpeg)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The images of a whole conversation, in message order (one query).
    pub async fn images_of_conversation(&self, conversation_id: &str) -> Result<Vec<ImageRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE conversation_id = $1 ORDER BY message_id, position"
        ))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The images a job has stored so far, in order.
    pub async fn images_of_job(&self, job_id: &str) -> Result<Vec<ImageRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE job_id = $1 ORDER BY position"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn images_by_source(
        &self,
        user_id: &str,
        source: ImageSource,
        limit: i64,
    ) -> Result<Vec<ImageRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE user_id = $1 AND source = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(source.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn delete_image(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM images WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many image rows exist (tests use it to prove nothing is orphaned).
    pub async fn count_images(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM images")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
