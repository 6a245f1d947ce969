//! `users`, `api_keys`, `settings` and `usage`: accounts, their keys, server-wide settings an
//! admin changes at run time, and what each image job cost.
//!
//! Credits never go negative: every spend is one conditional `UPDATE … WHERE credits >= cost`,
//! so two requests racing for the last credits cannot both win.

use sqlx::FromRow;

use super::kinds::column;
use super::{new_id, now_ms, Result, Store, LOCAL_USER};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserRole {
    Admin,
    User,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<UserRole> {
        match text {
            "admin" => Some(UserRole::Admin),
            "user" => Some(UserRole::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub role: UserRole,
    pub disabled: bool,
    pub pending: bool,
    pub credits: i64,
    /// Per-user allowance per period; `None` uses the default.
    pub allowance: Option<i64>,
    /// Start (ms) of the last period whose allowance was applied.
    pub allowance_period: i64,
    pub created_at: i64,
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    name: String,
    email: Option<String>,
    password_hash: Option<String>,
    role: String,
    disabled: i64,
    pending: i64,
    credits: i64,
    allowance: Option<i64>,
    allowance_period: i64,
    created_at: i64,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = super::StoreError;

    fn try_from(r: UserRow) -> Result<Self> {
        Ok(UserRecord {
            role: column(&r.role, UserRole::parse)?,
            disabled: r.disabled != 0,
            pending: r.pending != 0,
            id: r.id,
            name: r.name,
            email: r.email,
            password_hash: r.password_hash,
            credits: r.credits,
            allowance: r.allowance,
            allowance_period: r.allowance_period,
            created_at: r.created_at,
        })
    }
}

const USER_COLUMNS: &str = "id, name, email, password_hash, role, disabled, pending, credits, allowance, allowance_period, created_at";

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub role: UserRole,
    pub pending: bool,
    pub credits: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// One row of the usage report: a user and a model over a period.
#[derive(Debug, Clone, FromRow)]
pub struct UsageRow {
    pub user_id: String,
    pub model: String,
    pub images: i64,
    pub credits: i64,
    pub engine_ms: i64,
    pub jobs: i64,
}

/// Images and credits of one user per day, for the admin's chart.
#[derive(Debug, Clone, FromRow)]
pub struct UsageDay {
    pub day: i64,
    pub images: i64,
    pub credits: i64,
}

impl Store {
    /// Whether any account with a password exists (the first visit sets one up otherwise).
    pub async fn has_accounts(&self) -> Result<bool> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }

    /// Makes the local user (the owner of everything made before accounts) the first admin.
    /// `Ok(None)` when an account already exists: setup happens once.
    pub async fn create_first_admin(
        &self,
        name: &str,
        email: &str,
        password_hash: &str,
    ) -> Result<Option<UserRecord>> {
        let mut tx = self.write().await?;
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL")
                .fetch_one(&mut *tx)
                .await?;
        if n > 0 {
            return Ok(None);
        }
        // Conditional: of two setups at once, only the first finds the local user without a
        // password.
        let done = sqlx::query(
            "UPDATE users SET name = $1, email = $2, password_hash = $3, role = 'admin', disabled = 0, pending = 0,
             created_at = $5
             WHERE id = $4 AND password_hash IS NULL",
        )
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(LOCAL_USER)
        // The account is made now (the seeded local user it becomes dates from 0).
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        tx.commit().await?;
        self.get_user(LOCAL_USER).await
    }

    /// A new account; `Ok(None)` when the email is taken.
    pub async fn create_user(&self, new: &NewUser) -> Result<Option<UserRecord>> {
        let id = new_id();
        let done = sqlx::query(&format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, NULL, 0, $8)"
        ))
        .bind(&id)
        .bind(&new.name)
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(new.role.as_str())
        .bind(i64::from(new.pending))
        .bind(new.credits)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => self.get_user(&id).await,
            Err(e) => {
                let e = super::StoreError::from(e);
                if e.is_unique_violation() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Every account (not the local user before setup), oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email IS NOT NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The first admin (who `EASEL_API_KEY` acts for).
    pub async fn first_admin(&self) -> Result<Option<UserRecord>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY created_at, id LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    pub async fn count_admins(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND password_hash IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    pub async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_role(&self, user_id: &str, role: UserRole) -> Result<()> {
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Disabling ends the user's sessions and keys at once.
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE users SET disabled = $1, pending = 0 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_allowance(&self, user_id: &str, allowance: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE users SET allowance = $1 WHERE id = $2")
            .bind(allowance)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_credits(&self, user_id: &str, balance: i64) -> Result<()> {
        sqlx::query("UPDATE users SET credits = $1 WHERE id = $2")
            .bind(balance.max(0))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn grant_credits(&self, user_id: &str, amount: i64) -> Result<()> {
        sqlx::query(
            "UPDATE users SET credits = CASE WHEN credits + $1 < 0 THEN 0 ELSE credits + $1 END WHERE id = $2",
        )
        .bind(amount)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tops the balance up to `allowance` when a new period (starting at `period_start`) began
    /// since the last top-up. Idempotent within a period.
    pub async fn refill_allowance(
        &self,
        user_id: &str,
        allowance: i64,
        period_start: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE users SET credits = CASE WHEN credits < $1 THEN $1 ELSE credits END, allowance_period = $2
             WHERE id = $3 AND allowance_period < $2",
        )
        .bind(allowance)
        .bind(period_start)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every session of a user but one (`keep`: the session changing the password).
    pub async fn end_sessions_of(&self, user_id: &str, keep: Option<&str>) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- API keys -----

    pub async fn insert_api_key(
        &self,
        user_id: &str,
        name: &str,
        prefix: &str,
        key_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<ApiKeyRecord> {
        let record = ApiKeyRecord {
            id: new_id(),
            user_id: user_id.into(),
            name: name.into(),
            prefix: prefix.into(),
            created_at: now_ms(),
            last_used_at: None,
            expires_at,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(user_id)
        .bind(name)
        .bind(prefix)
        .bind(key_hash)
        .bind(record.created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(record)
    }

    /// The key with this hash, if it exists (expiry and the user's state are the caller's).
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        #[derive(FromRow)]
        struct Row {
            id: String,
            user_id: String,
            name: String,
            prefix: String,
            created_at: i64,
            last_used_at: Option<i64>,
            expires_at: Option<i64>,
            key_hash: String,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, user_id, name, prefix, created_at, last_used_at, expires_at, key_hash FROM api_keys WHERE key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            (
                ApiKeyRecord {
                    id: r.id,
                    user_id: r.user_id,
                    name: r.name,
                    prefix: r.prefix,
                    created_at: r.created_at,
                    last_used_at: r.last_used_at,
                    expires_at: r.expires_at,
                },
                r.key_hash,
            )
        }))
    }

    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, prefix, created_at, last_used_at, expires_at FROM api_keys WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_api_key(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ----- settings -----

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ----- usage -----

    /// Usage per user and model over `[from, to)`.
    pub async fn usage(&self, from: i64, to: i64) -> Result<Vec<UsageRow>> {
        Ok(sqlx::query_as(
            "SELECT user_id, model, CAST(SUM(images) AS BIGINT) AS images, CAST(SUM(credits) AS BIGINT) AS credits,
                    CAST(SUM(engine_ms) AS BIGINT) AS engine_ms, CAST(COUNT(*) AS BIGINT) AS jobs
             FROM usage WHERE created_at >= $1 AND created_at < $2
             GROUP BY user_id, model ORDER BY user_id, model",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Images and credits per UTC day over `[from, to)`.
    pub async fn usage_by_day(&self, from: i64, to: i64) -> Result<Vec<UsageDay>> {
        Ok(sqlx::query_as(
            "SELECT CAST((created_at / 86400000) * 86400000 AS BIGINT) AS day, CAST(SUM(images) AS BIGINT) AS images,
                    CAST(SUM(credits) AS BIGINT) AS credits
             FROM usage WHERE created_at >= $1 AND created_at < $2
             GROUP BY day ORDER BY day",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }
}
