//! `image_jobs`: every image request, whoever made it, as a durable record: who asked, where
//! from, the validated request (JSON plus the edit's source and mask as PNG), where it stands,
//! progress and timings. Its finished images are rows of `images` with its `job_id`, written
//! one by one as they finish.

use sqlx::FromRow;

use super::kinds::{column, ImageSource, JobState};
use super::{now_ms, Result, Store};

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub user_id: String,
    pub source: ImageSource,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub tool_call_id: Option<String>,
    /// Message-level index of the job's first image (earlier calls' images come first).
    pub first_index: u32,
    pub model: String,
    pub n: u32,
    /// The validated request as JSON (the jobs service owns its shape).
    pub request: String,
    pub source_png: Option<Vec<u8>>,
    pub mask_png: Option<Vec<u8>>,
    pub latents: Option<Vec<u8>>,
}

/// A job as stored, without its large inputs.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub user_id: String,
    pub source: ImageSource,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub tool_call_id: Option<String>,
    pub first_index: u32,
    pub model: String,
    pub n: u32,
    pub request: String,
    pub state: JobState,
    pub step: u32,
    pub steps: u32,
    pub images_done: u32,
    pub attempts: u32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub engine_ms: i64,
}

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: String,
    pub user_id: String,
    pub model: String,
    pub n: u32,
    /// When the owner last had a job start (ms), if ever.
    pub owner_last_started: Option<i64>,
}

/// Which jobs [`Store::finish_job`] may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// Queued or running (the worker painting it records its end).
    Any,
    /// Only one still waiting (a cancel must not end a job a worker just claimed: the worker
    /// stops it and records that).
    Queued,
}

/// How a job ended, with where its time went.
#[derive(Debug, Clone, Default)]
pub struct JobTimings {
    pub engine_ms: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    user_id: String,
    source: String,
    conversation_id: Option<String>,
    message_id: Option<String>,
    tool_call_id: Option<String>,
    first_index: i64,
    model: String,
    n: i64,
    request: String,
    state: String,
    step: i64,
    steps: i64,
    images_done: i64,
    attempts: i64,
    error_code: Option<String>,
    error_message: Option<String>,
    queued_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    engine_ms: i64,
}

impl TryFrom<Row> for JobRecord {
    type Error = super::StoreError;

    fn try_from(r: Row) -> Result<Self> {
        let small = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        Ok(JobRecord {
            source: column(&r.source, ImageSource::parse)?,
            state: column(&r.state, JobState::parse)?,
            first_index: small(r.first_index),
            n: small(r.n),
            step: small(r.step),
            steps: small(r.steps),
            images_done: small(r.images_done),
            attempts: small(r.attempts),
            id: r.id,
            user_id: r.user_id,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            tool_call_id: r.tool_call_id,
            model: r.model,
            request: r.request,
            error_code: r.error_code,
            error_message: r.error_message,
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            engine_ms: r.engine_ms,
        })
    }
}

const COLUMNS: &str = "id, user_id, source, conversation_id, message_id, tool_call_id, first_index, model, n, request, state, step, steps, images_done, attempts, error_code, error_message, queued_at, started_at, finished_at, engine_ms";

/// The large inputs of a job, read when it runs.
#[derive(Debug, Clone, Default, FromRow)]
pub struct JobInputs {
    pub source_png: Option<Vec<u8>>,
    pub mask_png: Option<Vec<u8>>,
    pub latents: Option<Vec<u8>>,
}

/// What became of a job offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The queue holds `waiting` images; this job would pass the limit.
    QueueFull {
        waiting: i64,
    },
    /// The owner has `balance` credits, fewer than the job costs.
    ShortOfCredits {
        balance: i64,
    },
}

impl Store {
    /// Queues a job unless the queue already holds `max_images` images or more (counting
    /// queued and running jobs), reserving `cost` credits of its owner in the same transaction
    /// (a balance never goes negative: the reservation is one conditional update).
    pub async fn insert_job(&self, job: &NewJob, max_images: u32, cost: i64) -> Result<Queued> {
        let mut tx = self.write().await?;
        self.lock_for(&mut tx, super::Advisory::ImageQueue).await?;
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM image_jobs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&mut *tx)
        .await?;
        if waiting + i64::from(job.n) > i64::from(max_images) {
            return Ok(Queued::QueueFull { waiting });
        }
        if cost > 0 {
            let reserved = sqlx::query(
                "UPDATE users SET credits = credits - $1 WHERE id = $2 AND credits >= $1",
            )
            .bind(cost)
            .bind(&job.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if reserved == 0 {
                let (balance,): (i64,) = sqlx::query_as("SELECT credits FROM users WHERE id = $1")
                    .bind(&job.user_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or((0,));
                return Ok(Queued::ShortOfCredits { balance });
            }
        }
        sqlx::query(
            "INSERT INTO image_jobs (id, user_id, source, conversation_id, message_id, tool_call_id, first_index,
                                     model, n, request, source_png, mask_png, latents, state, queued_at, credits_reserved)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'queued', $14, $15)",
        )
        .bind(&job.id)
        .bind(&job.user_id)
        .bind(job.source.as_str())
        .bind(&job.conversation_id)
        .bind(&job.message_id)
        .bind(&job.tool_call_id)
        .bind(i64::from(job.first_index))
        .bind(&job.model)
        .bind(i64::from(job.n))
        .bind(&job.request)
        .bind(&job.source_png)
        .bind(&job.mask_png)
        .bind(&job.latents)
        .bind(now_ms())
        .bind(cost)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Queued::Yes)
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM image_jobs WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// A job of `user_id` (another user's job is as absent as a missing one).
    pub async fn get_user_job(&self, user_id: &str, id: &str) -> Result<Option<JobRecord>> {
        Ok(self.get_job(id).await?.filter(|j| j.user_id == user_id))
    }

    pub async fn job_inputs(&self, id: &str) -> Result<JobInputs> {
        let row: Option<JobInputs> =
            sqlx::query_as("SELECT source_png, mask_png, latents FROM image_jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.unwrap_or_default())
    }

    /// The queue in arrival order, with when each owner was last served.
    pub async fn queued_jobs(&self) -> Result<Vec<QueuedJob>> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT j.id, j.user_id, j.model, j.n,
                    (SELECT MAX(s.started_at) FROM image_jobs s WHERE s.user_id = j.user_id)
             FROM image_jobs j WHERE j.state = 'queued' ORDER BY j.queued_at, j.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, user_id, model, n, owner_last_started)| QueuedJob {
                id,
                user_id,
                model,
                n: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
                owner_last_started,
            })
            .collect())
    }

    /// Moves a queued job to running for `worker` (a node id), leased until `lease_until`;
    /// false when someone else took it first (or it was cancelled meanwhile). On PostgreSQL a
    /// row another worker is claiming right now is skipped, not waited for.
    pub async fn claim_job(&self, id: &str, worker: &str, lease_until: i64) -> Result<bool> {
        let skip_locked = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let done = sqlx::query(&format!(
            "UPDATE image_jobs SET state = 'running', worker = $1, lease_until = $2, started_at = $3,
                    attempts = attempts + 1, step = 0, error_code = NULL, error_message = NULL,
                    cancel_requested = 0, position = NULL
             WHERE id = (SELECT id FROM image_jobs WHERE id = $4 AND state = 'queued'{skip_locked})"
        ))
        .bind(worker)
        .bind(lease_until)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Jobs being painted now, by any process.
    pub async fn running_jobs(&self) -> Result<usize> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM image_jobs WHERE state = 'running'")
                .fetch_one(&self.pool)
                .await?;
        Ok(n.max(0) as usize)
    }

    /// Where a running job stands (written at most about once a second).
    pub async fn job_progress(&self, id: &str, step: u32, steps: u32) -> Result<()> {
        sqlx::query(
            "UPDATE image_jobs SET step = $1, steps = $2 WHERE id = $3 AND state = 'running'",
        )
        .bind(i64::from(step))
        .bind(i64::from(steps))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a finished image of a job and counts it, atomically. `Ok(false)`: the image was
    /// already stored by an earlier attempt of the job (a restart), or the job's message was
    /// deleted meanwhile; nothing was written.
    pub async fn insert_job_image(&self, image: &super::NewImage) -> Result<bool> {
        let mut tx = self.write().await?;
        match super::images::insert_image(&mut *tx, image).await {
            Ok(()) => {}
            Err(e) if e.is_unique_violation() || e.is_foreign_key_violation() => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(job) = &image.job_id {
            sqlx::query("UPDATE image_jobs SET images_done = images_done + 1 WHERE id = $1")
                .bind(job)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a job (from any state but a final one) and settles its credits, in one
    /// transaction: the owner pays `charge(reserved, images done, n)` of what was reserved,
    /// gets the rest back, and a usage record keeps images, credits and engine time. False
    /// when the job had already ended.
    pub async fn finish_job(
        &self,
        id: &str,
        state: JobState,
        error: Option<(&str, &str)>,
        timings: &JobTimings,
        from: Unfinished,
        charge: &(dyn Fn(i64, u32, u32) -> i64 + Send + Sync),
    ) -> Result<bool> {
        let (code, message) = error.unzip();
        let now = now_ms();
        let mut tx = self.write().await?;
        let states = match from {
            Unfinished::Any => "'queued', 'running'",
            Unfinished::Queued => "'queued'",
        };
        let done = sqlx::query(&format!(
            "UPDATE image_jobs SET state = $1, error_code = $2, error_message = $3, finished_at = $4,
                    engine_ms = engine_ms + $5, painted_by = COALESCE(worker, painted_by),
                    worker = NULL, lease_until = NULL
             WHERE id = $6 AND state IN ({states})"
        ))
        .bind(state.as_str())
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(timings.engine_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let (user_id, model, n, images_done, reserved, engine_ms): (String, String, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT user_id, model, n, images_done, credits_reserved, engine_ms FROM image_jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let small = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        let charged = charge(reserved, small(images_done), small(n)).clamp(0, reserved);
        if reserved > charged {
            sqlx::query("UPDATE users SET credits = credits + $1 WHERE id = $2")
                .bind(reserved - charged)
                .bind(&user_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE image_jobs SET credits_settled = $1 WHERE id = $2")
            .bind(charged)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO usage (id, user_id, job_id, model, images, credits, engine_ms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(super::new_id())
        .bind(&user_id)
        .bind(id)
        .bind(&model)
        .bind(images_done)
        .bind(charged)
        .bind(engine_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Credits each message of a conversation spent on its images.
    pub async fn credits_by_message(
        &self,
        conversation_id: &str,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT message_id, CAST(SUM(credits_settled) AS BIGINT) FROM image_jobs
             WHERE conversation_id = $1 AND message_id IS NOT NULL GROUP BY message_id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Puts a running job back in the queue (its process is stopping; it starts again from its
    /// seed later, keeping the images already stored).
    pub async fn requeue_job(&self, id: &str, engine_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE image_jobs SET state = 'queued', worker = NULL, lease_until = NULL, step = 0,
                    engine_ms = engine_ms + $1
             WHERE id = $2 AND state = 'running'",
        )
        .bind(engine_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs not yet ended that belong to a message (to cancel them with its reply).
    pub async fn open_jobs_of_message(&self, message_id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM image_jobs WHERE message_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Jobs of a whole conversation not yet ended (to show a returning client that images are
    /// still coming).
    pub async fn open_jobs_of_conversation(&self, conversation_id: &str) -> Result<Vec<JobRecord>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM image_jobs WHERE conversation_id = $1 AND state IN ('queued', 'running') ORDER BY queued_at, id"
        ))
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// `/v1` jobs not yet ended: at start-up their client is gone (see `jobs`).
    pub async fn open_api_jobs(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM image_jobs WHERE source = 'api' AND state IN ('queued', 'running')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// At start-up: jobs left `running` by a stop or crash go back to the queue (they start
    /// again from their seed). Returns how many.
    pub async fn requeue_running_jobs(&self) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE image_jobs SET state = 'queued', worker = NULL, lease_until = NULL, step = 0
             WHERE state = 'running'",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// How many jobs each node finished since `since` (ms), for the workers' view.
    pub async fn jobs_finished_since(&self, since: i64) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT painted_by, COUNT(*) FROM image_jobs
             WHERE finished_at >= $1 AND painted_by IS NOT NULL GROUP BY painted_by",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Images waiting or being made (queued and running jobs), for `/api/health`.
    pub async fn queued_images(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM image_jobs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
