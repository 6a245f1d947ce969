//! `nodes`, `run_events`, `job_events` and the leases on `runs` and `image_jobs`: what lets
//! several processes share one database (see `cluster`). Notifications (`NOTIFY`) are sent
//! here too, in the same connection pool, so a reader that wakes finds the rows committed.

use sqlx::FromRow;

use super::{Backend, Result, Store};

/// A running Easel process as the others see it.
#[derive(Debug, Clone, FromRow)]
pub struct NodeRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub paints: i64,
    pub provider: String,
    /// JSON: the models it serves.
    pub models: String,
    pub current_job: Option<String>,
    pub jobs_done: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// A stored event of a run or a job.
#[derive(Debug, Clone, FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub name: String,
    pub data: String,
}

/// What the reaper closed.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    /// Runs whose node stopped renewing their lease: closed as interrupted.
    pub runs: Vec<String>,
    /// Jobs whose worker stopped renewing their lease: back in the queue.
    pub jobs: u64,
}

const NODE_COLUMNS: &str =
    "id, kind, name, paints, provider, models, current_job, jobs_done, started_at, heartbeat_at";

impl Store {
    pub async fn register_node(&self, node: &NodeRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET models = excluded.models, provider = excluded.provider,
                 paints = excluded.paints, heartbeat_at = excluded.heartbeat_at"
        ))
        .bind(&node.id)
        .bind(&node.kind)
        .bind(&node.name)
        .bind(node.paints)
        .bind(&node.provider)
        .bind(&node.models)
        .bind(&node.current_job)
        .bind(node.jobs_done)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The node is alive: its row and the leases of its runs and jobs are renewed.
    pub async fn heartbeat(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        current_job: Option<&str>,
        jobs_done: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE nodes SET heartbeat_at = $1, current_job = $2, jobs_done = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(current_job)
        .bind(jobs_done)
        .bind(node)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE runs SET lease_until = $1 WHERE node = $2 AND status = 'running'")
            .bind(lease_until)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE image_jobs SET lease_until = $1 WHERE worker = $2 AND state = 'running'",
        )
        .bind(lease_until)
        .bind(node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A node starting under the name of earlier ones (a restart of the same process): their
    /// runs' and jobs' leases end now, so the next [`Store::reap`] closes and requeues them at
    /// once instead of after a lease. Returns how many earlier nodes there were.
    pub async fn take_over(&self, name: &str, node: &str) -> Result<usize> {
        let mut tx = self.write().await?;
        let earlier: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM nodes WHERE name = $1 AND id <> $2")
                .bind(name)
                .bind(node)
                .fetch_all(&mut *tx)
                .await?;
        for (id,) in &earlier {
            sqlx::query("UPDATE runs SET lease_until = 0 WHERE node = $1 AND status = 'running'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE image_jobs SET lease_until = 0 WHERE worker = $1 AND state = 'running'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(earlier.len())
    }

    pub async fn remove_node(&self, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Nodes that beat since `since`.
    /// Nodes that beat since `since`. Each one's current job is read from the queue itself
    /// (the job it claimed and is running), not from its last heartbeat, so it shows the moment
    /// a job is claimed and goes the moment it ends.
    pub async fn live_nodes(&self, since: i64) -> Result<Vec<NodeRecord>> {
        Ok(sqlx::query_as(
            "SELECT n.id, n.kind, n.name, n.paints, n.provider, n.models,
                    (SELECT j.id FROM image_jobs j WHERE j.worker = n.id AND j.state = 'running'
                     ORDER BY j.started_at DESC LIMIT 1) AS current_job,
                    n.jobs_done, n.started_at, n.heartbeat_at
             FROM nodes n WHERE n.heartbeat_at >= $1 ORDER BY n.started_at, n.id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Closes runs and requeues jobs whose lease ran out (their node stopped), and forgets
    /// nodes silent since `forget_before`.
    pub async fn reap(&self, now: i64, forget_before: i64) -> Result<Reaped> {
        let mut tx = self.write().await?;
        let expired: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, assistant_message_id FROM runs
             WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut closed = Vec::new();
        for (run, message) in &expired {
            // Several nodes reap at once: only the one whose update lands reports the run.
            let landed = sqlx::query(
                "UPDATE runs SET status = 'failed', error_code = 'interrupted',
                        error_message = 'The server running this reply stopped.', finished_at = $1
                 WHERE id = $2 AND status = 'running'",
            )
            .bind(now)
            .bind(run)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if landed == 0 {
                continue;
            }
            closed.push(run.clone());
            sqlx::query(
                "UPDATE messages SET status = 'failed', error_code = 'interrupted',
                        error_message = 'The server stopped while this reply was being written.', updated_at = $1
                 WHERE id = $2 AND status = 'running'",
            )
            .bind(now)
            .bind(message)
            .execute(&mut *tx)
            .await?;
        }
        let jobs = sqlx::query(
            "UPDATE image_jobs SET state = 'queued', worker = NULL, lease_until = NULL, step = 0
             WHERE state = 'running' AND (lease_until IS NULL OR lease_until < $1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;

        Ok(Reaped { runs: closed, jobs })
    }

    /// Forgets events of runs and jobs that ended before `before`: followers have had them (a
    /// late one gets the closing event from the record instead).
    pub async fn prune_events(&self, before: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM run_events WHERE run_id IN
                (SELECT id FROM runs WHERE status <> 'running' AND finished_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "DELETE FROM job_events WHERE job_id IN
                (SELECT id FROM image_jobs WHERE state IN ('done', 'failed', 'cancelled') AND finished_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Asks the node driving a run to stop it; false when the run is not running.
    pub async fn request_run_cancel(&self, run: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'",
        )
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Asks the worker painting a job to stop it; false when the job is not running.
    pub async fn request_job_cancel(&self, job: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE image_jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'",
        )
        .bind(job)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether someone asked to stop this running job. Its worker reads it once it listens for
    /// cancels: one asked between the claim and then found no one to tell.
    pub async fn job_cancel_requested(&self, job: &str) -> Result<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT cancel_requested FROM image_jobs WHERE id = $1 AND state = 'running'",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|(flag,)| flag != 0))
    }

    /// Runs and jobs of `node` someone asked to cancel (a safety net under notifications).
    pub async fn cancels_for(&self, node: &str) -> Result<(Vec<String>, Vec<String>)> {
        let runs: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE node = $1 AND status = 'running' AND cancel_requested = 1",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        let jobs: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM image_jobs WHERE worker = $1 AND state = 'running' AND cancel_requested = 1",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            runs.into_iter().map(|(id,)| id).collect(),
            jobs.into_iter().map(|(id,)| id).collect(),
        ))
    }

    /// Keeps a run's event; a progress event replaces the previous one of its image.
    pub async fn insert_run_event(
        &self,
        run: &str,
        id: i64,
        name: &str,
        data: &str,
        progress_of: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(index) = progress_of {
            sqlx::query("DELETE FROM run_events WHERE run_id = $1 AND progress_of = $2")
                .bind(run)
                .bind(index)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO run_events (run_id, id, name, data, progress_of) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (run_id, id) DO NOTHING",
        )
        .bind(run)
        .bind(id)
        .bind(name)
        .bind(data)
        .bind(progress_of)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A run's last event id (the reaper adds the closing event after it).
    pub async fn last_run_event(&self, run: &str) -> Result<i64> {
        let (id,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(id) FROM run_events WHERE run_id = $1")
                .bind(run)
                .fetch_one(&self.pool)
                .await?;
        Ok(id.unwrap_or(0))
    }

    pub async fn run_events_after(&self, run: &str, after: i64) -> Result<Vec<StoredEvent>> {
        Ok(sqlx::query_as(
            "SELECT id, name, data FROM run_events WHERE run_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(run)
        .bind(after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends a job's event with the next id and returns it; a replaceable one removes the
    /// older replaceable rows of its kind (after the insert, so the newest id never goes away
    /// and ids never repeat). Two writers racing for an id: the loser takes the next one.
    pub async fn append_job_event(
        &self,
        job: &str,
        kind: &str,
        data: &str,
        replaceable: bool,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.pool.begin().await?;
            let inserted: std::result::Result<(i64,), sqlx::Error> = sqlx::query_as(
                "INSERT INTO job_events (job_id, id, kind, data, replaceable)
                 SELECT $1, COALESCE(MAX(id), 0) + 1, $2, $3, $4 FROM job_events WHERE job_id = $1
                 RETURNING id",
            )
            .bind(job)
            .bind(kind)
            .bind(data)
            .bind(i64::from(replaceable))
            .fetch_one(&mut *tx)
            .await;
            let (id,) = match inserted {
                Ok(row) => row,
                Err(e) => {
                    let e = super::StoreError::from(e);
                    if e.is_unique_violation() && attempt < 8 {
                        continue;
                    }
                    return Err(e);
                }
            };
            if replaceable {
                sqlx::query(
                    "DELETE FROM job_events WHERE job_id = $1 AND kind = $2 AND replaceable = 1 AND id < $3",
                )
                .bind(job)
                .bind(kind)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(id);
        }
    }

    /// Records a queued job's new position; false when it is unchanged or the job no longer
    /// waits (several nodes compute the same positions: one writes each change).
    pub async fn set_job_position(&self, job: &str, position: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE image_jobs SET position = $1
             WHERE id = $2 AND state = 'queued' AND (position IS NULL OR position <> $1)",
        )
        .bind(position)
        .bind(job)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a job has events in `job_events` (jobs from before they were kept have none).
    pub async fn has_job_events(&self, job: &str) -> Result<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM job_events WHERE job_id = $1 LIMIT 1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    pub async fn job_events_after(&self, job: &str, after: i64) -> Result<Vec<StoredEvent>> {
        Ok(sqlx::query_as(
            "SELECT id, kind AS name, data FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(job)
        .bind(after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Tells listening nodes something happened (`NOTIFY`); nothing on SQLite (one process).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
