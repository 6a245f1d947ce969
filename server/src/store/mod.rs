//! All SQL lives here, one file per table family; callers get the store's own records, never
//! rows and never wire types.
//!
//! One code path for both databases, through sqlx's `Any` driver: SQLite (the embedded
//! default: one file in WAL mode, readers never block the writer) and PostgreSQL (to scale
//! out). Every statement is written in the SQL both understand, with `$1`-style parameters;
//! the few places that differ ask [`Backend`].
//!
//! Transactions that read and then write start with [`Store::write`]: on SQLite that is
//! `BEGIN IMMEDIATE`, which takes the write lock first, so two such transactions queue behind
//! the busy timeout instead of one failing with "database is locked" when it upgrades.

mod agents;
mod cluster;
mod conversations;
pub mod copy;
mod images;
mod jobs;
mod kinds;
mod limits;
mod messages;
mod runs;
mod sessions;
mod users;

pub use agents::{AgentRecord, AgentSettings, AgentVersionRecord};
pub use cluster::{NodeRecord, Reaped, StoredEvent};
pub use conversations::{ConversationRecord, NewConversation, UNTITLED};
pub use images::{ImageBlob, ImageMeta, ImageRecord, NewImage};
pub use jobs::{JobInputs, JobRecord, JobTimings, NewJob, Queued, QueuedJob, Unfinished};
pub use kinds::{ImageSource, JobState, MessageStatus, Role, RunStatus};
pub use limits::LimitRecord;
pub use messages::{ImportedMessage, MessageEnd, MessageRecord, ToolCall, TurnStart};
pub use runs::RunRecord;
pub use sessions::SessionRecord;
pub use users::{ApiKeyRecord, NewUser, UsageDay, UsageRow, UserRecord, UserRole};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// The single local user every row belongs to when accounts are off.
pub const LOCAL_USER: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a stored row is invalid: {0}")]
    Corrupt(String),
    #[error("`{0}` is not a database URL Easel can use (sqlite://PATH or postgres://…)")]
    Url(String),
}

impl StoreError {
    /// A unique or primary-key constraint refused the write (the caller lost a race or sent a
    /// duplicate): a conflict, not a failure.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => {
                e.is_unique_violation()
                    || e.message().contains("UNIQUE constraint failed")
                    || e.code().as_deref() == Some("23505")
            }
            _ => false,
        }
    }

    /// A foreign key refused the write: what it pointed at was deleted meanwhile.
    pub fn is_foreign_key_violation(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => {
                e.is_foreign_key_violation()
                    || e.message().contains("FOREIGN KEY constraint failed")
                    || e.code().as_deref() == Some("23503")
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// What an advisory lock guards.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Advisory {
    ImageQueue,
}

impl Advisory {
    /// The lock's key (`easel` in ASCII, then a number per lock).
    fn key(self) -> i64 {
        match self {
            Advisory::ImageQueue => 0x6561_7365_6c01,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the database and applies the embedded migrations.
    pub async fn connect(database_url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of(database_url).ok_or_else(|| StoreError::Url(database_url.into()))?;
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let url = match backend {
            Backend::Sqlite => {
                ensure_parent_folder(database_url)?;
                let memory = database_url.contains(":memory:");
                // Every connection of an in-memory pool would be a database of its own.
                pool = pool.max_connections(if memory { 1 } else { 8 });
                pool = pool.after_connect(|conn, _| {
                    Box::pin(async move {
                        // NORMAL is durable in WAL mode except for the last commits on power
                        // loss; FULL would fsync every checkpoint for no gain a history needs.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000;",
                        )
                        .await?;
                        Ok(())
                    })
                });
                with_create_mode(database_url)
            }
            Backend::Postgres => {
                pool = pool.max_connections(16);
                database_url.to_string()
            }
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = pool.connect_with(options).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("../migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that holds the write lock from its first statement (see the module docs).
    pub async fn write(&self) -> Result<Transaction<'static, Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(self.pool.begin_with(begin).await?)
    }

    /// ` FOR UPDATE` on PostgreSQL (row locks inside a read-then-write transaction); nothing
    /// on SQLite, where [`Store::write`] already holds the database's write lock.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Serialises transactions that decide from an aggregate (the queue's size): an advisory
    /// lock on PostgreSQL, the write lock already held on SQLite.
    pub(crate) async fn lock_for(
        &self,
        tx: &mut Transaction<'static, Any>,
        what: Advisory,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(what.key())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A cheap round trip for `/api/health`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Replies left `running` by a crash or kill: close them (and their runs) as failed, so the
    /// history says what happened instead of showing a reply that never comes. Their images
    /// and tool calls were committed as they finished and stay; their image jobs go on.
    pub async fn close_interrupted_runs(&self) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.write().await?;
        let closed = sqlx::query(
            "UPDATE messages SET status = 'failed', error_code = 'interrupted',
                    error_message = 'The server stopped while this reply was being written.', updated_at = $1
             WHERE status = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE runs SET status = 'failed', error_code = 'interrupted',
                    error_message = 'The server stopped during this run.', finished_at = $1
             WHERE status = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(closed)
    }
}

/// `sqlite://data/easel.db` → `sqlite://data/easel.db?mode=rwc`, so a fresh clone starts
/// without setup (the file is created).
fn with_create_mode(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// `sqlite://data/easel.db` → make sure `data/` exists.
fn ensure_parent_folder(database_url: &str) -> Result<()> {
    let path = database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// A new time-ordered id (UUIDv7): ordering by id is ordering by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-23T09:00:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm): exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_424_400_000), "2026-11-23T09:00:00.000Z");
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b);
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            with_create_mode("sqlite://data/easel.db"),
            "sqlite://data/easel.db?mode=rwc"
        );
        assert_eq!(with_create_mode("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(Backend::of("postgres://x/y"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://x"), None);
    }
}
