//! The `sign_in_limits` table: failed sign-ins per key (an account or a client address). The
//! policy (how many, how long) is `auth::limiter`'s; this only keeps the counts.

use super::{Result, Store};

/// One key's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRecord {
    pub failures: i64,
    pub last_ms: i64,
    pub locked_until: Option<i64>,
}

impl Store {
    /// When `key` is locked out until (ms), if it is.
    pub async fn sign_in_locked_until(&self, key: &str) -> Result<Option<i64>> {
        let until: Option<Option<i64>> =
            sqlx::query_scalar("SELECT locked_until FROM sign_in_limits WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?;
        Ok(until.flatten())
    }

    /// Records a failure: `next` turns the key's record (if any) into the new one, inside one
    /// transaction so concurrent failures on several nodes all count.
    pub async fn sign_in_failed(
        &self,
        key: &str,
        next: impl FnOnce(Option<LimitRecord>) -> LimitRecord,
    ) -> Result<LimitRecord> {
        let mut tx = self.write().await?;
        let sql = format!(
            "SELECT failures, last_ms, locked_until FROM sign_in_limits WHERE key = $1{}",
            self.for_update()
        );
        let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(&sql)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let record = next(row.map(|(failures, last_ms, locked_until)| LimitRecord {
            failures,
            last_ms,
            locked_until,
        }));
        sqlx::query(
            "INSERT INTO sign_in_limits (key, failures, last_ms, locked_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET failures = $2, last_ms = $3, locked_until = $4",
        )
        .bind(key)
        .bind(record.failures)
        .bind(record.last_ms)
        .bind(record.locked_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Forgets `key`'s failures (a successful sign-in).
    pub async fn sign_in_cleared(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM sign_in_limits WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets keys whose last failure is older than `before` (ms) and that are not locked.
    pub async fn prune_sign_in_limits(&self, before: i64, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM sign_in_limits WHERE last_ms < $1 AND (locked_until IS NULL OR locked_until < $2)",
        )
        .bind(before)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
