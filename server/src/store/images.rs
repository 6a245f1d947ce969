//! `images`: generated pictures, stored with the message that made them (or as studio results).

use app::api::ImageMetadata;
use sqlx::{FromRow, Sqlite, Transaction};

use super::{now_ms, Result, Store};

/// An image ready to be stored: the encoded bytes and how it was made.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// `chat`, `studio` or `api`.
    pub source: &'static str,
    pub position: u32,
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
    pub thumbnail: Vec<u8>,
    pub metadata: ImageMetadata,
}

/// An image's row without its large blobs; bytes are fetched on demand.
#[derive(Debug, Clone, FromRow)]
pub struct ImageRecord {
    pub id: String,
    pub user_id: String,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub source: String,
    pub position: i64,
    pub width: i64,
    pub height: i64,
    #[sqlx(json)]
    pub metadata: ImageMetadata,
    pub created_at: i64,
}

const RECORD_COLUMNS: &str =
    "id, user_id, message_id, conversation_id, source, position, width, height, metadata, created_at";

pub(super) async fn insert_image(tx: &mut Transaction<'_, Sqlite>, image: &NewImage) -> Result<()> {
    sqlx::query(
        "INSERT INTO images (id, user_id, message_id, conversation_id, source, position, width, height, png, thumbnail, metadata, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&image.id)
    .bind(&image.user_id)
    .bind(&image.message_id)
    .bind(&image.conversation_id)
    .bind(image.source)
    .bind(image.position)
    .bind(image.width)
    .bind(image.height)
    .bind(&image.png)
    .bind(&image.thumbnail)
    .bind(serde_json::to_string(&image.metadata)?)
    .bind(now_ms())
    .execute(&mut **tx)
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
    /// Stores images that belong to no message (Image Studio, images API).
    pub async fn insert_images(&self, images: &[NewImage]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for image in images {
            insert_image(&mut tx, image).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_image(&self, user_id: &str, id: &str) -> Result<Option<ImageRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE id = ? AND user_id = ?"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One encoding's bytes; `None` when the image does not exist or (JPEG) was never made.
    pub async fn image_bytes(
        &self,
        user_id: &str,
        id: &str,
        blob: ImageBlob,
    ) -> Result<Option<Vec<u8>>> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(&format!(
            "SELECT {} FROM images WHERE id = ? AND user_id = ?",
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
        sqlx::query("UPDATE images SET jpeg = ? WHERE id = ?")
            .bind(jpeg)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The images of several messages at once (one query for a whole conversation).
    pub async fn images_of_conversation(&self, conversation_id: &str) -> Result<Vec<ImageRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE conversation_id = ? ORDER BY message_id, position"
        ))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn images_by_source(
        &self,
        user_id: &str,
        source: &str,
        limit: i64,
    ) -> Result<Vec<ImageRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RECORD_COLUMNS} FROM images WHERE user_id = ? AND source = ? ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(user_id)
        .bind(source)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_image(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM images WHERE id = ? AND user_id = ?")
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
