//! `easel db copy --from URL --to URL`: moves a whole installation between databases (SQLite
//! to PostgreSQL when a team outgrows one machine, or back), every table, checked afterwards
//! by row counts and content hashes on both sides.
//!
//! Both databases are migrated to this version first, so their tables and columns match. The
//! target must be empty (apart from the rows migrations seed); rows are copied table by table
//! in foreign-key order, one transaction per table, streamed so images never sit in memory
//! all at once. The hash of a table does not depend on row order or backend: each row's
//! values are hashed in a backend-neutral form, and the sorted row hashes are hashed again.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{Backend, Store, StoreError, LOCAL_USER};

/// Every table of the schema, parents before children (the foreign keys allow no other order).
/// A test checks this list against the schema itself, so a new table cannot be left behind.
pub const TABLES: &[&str] = &[
    "users",
    "agents",
    "agent_versions",
    "conversations",
    "messages",
    "runs",
    "image_jobs",
    "images",
    "sessions",
    "api_keys",
    "settings",
    "usage",
    "nodes",
    "run_events",
    "job_events",
    "sign_in_limits",
];

/// Rows per transaction while copying (images are large; a table need not be one transaction).
const BATCH: usize = 200;

/// One table's check: rows and content hash on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct TableCheck {
    pub table: &'static str,
    pub rows: u64,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the target database is not empty ({table} has {rows} row(s)); copy into a new, empty database")]
    TargetNotEmpty { table: &'static str, rows: i64 },
    #[error("the source and the target are the same database")]
    SameDatabase,
    #[error("{table}: the copy differs from the source ({source_rows} rows, hash {source_hash} vs {target_rows} rows, hash {target_hash})")]
    Mismatch {
        table: &'static str,
        source_rows: u64,
        source_hash: String,
        target_rows: u64,
        target_hash: String,
    },
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> Self {
        CopyError::Store(StoreError::Sqlx(e))
    }
}

/// Copies every table from `from` into the empty `to`, then checks both sides agree; returns
/// the per-table checks (which both sides share).
pub async fn copy(from: &str, to: &str) -> Result<Vec<TableCheck>, CopyError> {
    if from == to {
        return Err(CopyError::SameDatabase);
    }
    let source = Store::connect(from).await?;
    let target = Store::connect(to).await?;
    ensure_empty(&target).await?;
    // The migrations' own local user is replaced by the source's.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(LOCAL_USER)
        .execute(target.pool())
        .await?;
    for table in TABLES {
        copy_table(&source, &target, table).await?;
    }
    let mut checks = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let (mine, theirs) = (check(&source, table).await?, check(&target, table).await?);
        if mine != theirs {
            return Err(CopyError::Mismatch {
                table,
                source_rows: mine.rows,
                source_hash: mine.hash,
                target_rows: theirs.rows,
                target_hash: theirs.hash,
            });
        }
        checks.push(mine);
    }
    Ok(checks)
}

async fn ensure_empty(target: &Store) -> Result<(), CopyError> {
    for &table in TABLES {
        let rows: i64 = if table == "users" {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id <> $1")
                .bind(LOCAL_USER)
                .fetch_one(target.pool())
                .await?
        } else {
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(target.pool())
                .await?
        };
        if rows > 0 {
            return Err(CopyError::TargetNotEmpty { table, rows });
        }
    }
    Ok(())
}

/// What a column holds, as far as binding a value (or a NULL) needs to know.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColumnType {
    Integer,
    Real,
    Text,
    Bytes,
}

/// The target's columns of `table` and their types.
async fn columns(store: &Store, table: &str) -> Result<Vec<(String, ColumnType)>, CopyError> {
    let rows: Vec<(String, String)> = match store.backend() {
        Backend::Sqlite => sqlx::query(&format!(
            "SELECT name, type FROM pragma_table_info('{table}')"
        ))
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?,
        Backend::Postgres => sqlx::query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?,
    };
    Ok(rows
        .into_iter()
        .map(|(name, kind)| {
            let kind = kind.to_ascii_lowercase();
            let kind = if kind.contains("int") || kind.contains("bool") {
                ColumnType::Integer
            } else if kind.contains("real")
                || kind.contains("double")
                || kind.contains("float")
                || kind.contains("numeric")
            {
                ColumnType::Real
            } else if kind.contains("blob") || kind.contains("bytea") {
                ColumnType::Bytes
            } else {
                ColumnType::Text
            };
            (name, kind)
        })
        .collect())
}

async fn columns_of(
    store: &Store,
    table: &str,
) -> Result<std::collections::HashMap<String, ColumnType>, CopyError> {
    Ok(columns(store, table).await?.into_iter().collect())
}

async fn copy_table(source: &Store, target: &Store, table: &'static str) -> Result<(), CopyError> {
    let columns = columns(target, table).await?;
    let source_columns = columns_of(source, table).await?;
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let read_as: Vec<ColumnType> = names
        .iter()
        .map(|n| source_columns.get(*n).copied().unwrap_or(ColumnType::Text))
        .collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        (1..=names.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows = sqlx::query(&select).fetch(source.pool());
    let mut tx = target.pool().begin().await?;
    let mut in_batch = 0;
    while let Some(row) = rows.try_next().await? {
        let mut query = sqlx::query::<Any>(&insert);
        for (i, (_, kind)) in columns.iter().enumerate() {
            query = bind(query, normal(value_of(&row, i, read_as[i])?, *kind), *kind);
        }
        query.execute(&mut *tx).await?;
        in_batch += 1;
        if in_batch == BATCH {
            tx.commit().await?;
            tx = target.pool().begin().await?;
            in_batch = 0;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// A value in the form both backends share: integers (booleans are 0/1 integers in Easel's
/// schema), reals, text, bytes or NULL.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Column `i` of `row`, read as its (source) column type says.
fn value_of(row: &AnyRow, i: usize, column: ColumnType) -> Result<Value, sqlx::Error> {
    Ok(match column {
        ColumnType::Integer => row.try_get::<Option<i64>, _>(i)?.map(Value::Integer),
        ColumnType::Real => row.try_get::<Option<f64>, _>(i)?.map(Value::Real),
        ColumnType::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
        ColumnType::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
    }
    .unwrap_or(Value::Null))
}

/// The value as its column's type holds it (SQLite lets a column hold any type; PostgreSQL
/// does not).
fn normal(value: Value, column: ColumnType) -> Value {
    match (value, column) {
        (Value::Integer(v), ColumnType::Text) => Value::Text(v.to_string()),
        (Value::Real(v), ColumnType::Text) => Value::Text(v.to_string()),
        (Value::Integer(v), ColumnType::Real) => Value::Real(v as f64),
        (Value::Text(t), ColumnType::Bytes) => Value::Bytes(t.into_bytes()),
        (value, _) => value,
    }
}

type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

/// Binds `value` as the target column's type wants it (a NULL still needs the column's type
/// on PostgreSQL).
fn bind<'q>(query: Query<'q>, value: Value, column: ColumnType) -> Query<'q> {
    match (value, column) {
        (Value::Null, ColumnType::Integer) => query.bind(None::<i64>),
        (Value::Null, ColumnType::Real) => query.bind(None::<f64>),
        (Value::Null, ColumnType::Text) => query.bind(None::<String>),
        (Value::Null, ColumnType::Bytes) => query.bind(None::<Vec<u8>>),
        (Value::Integer(v), _) => query.bind(v),
        (Value::Real(v), _) => query.bind(v),
        (Value::Text(t), _) => query.bind(t),
        (Value::Bytes(b), ColumnType::Text) => query.bind(String::from_utf8_lossy(&b).into_owned()),
        (Value::Bytes(b), _) => query.bind(b),
    }
}

/// A table's row count and content hash (independent of row order and backend).
pub async fn check(store: &Store, table: &'static str) -> Result<TableCheck, CopyError> {
    let columns = columns(store, table).await?;
    let mut names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    // By name, so both sides hash columns in the same order whatever order migrations left.
    names.sort_unstable();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let mut rows = sqlx::query(&select).fetch(store.pool());
    let mut row_hashes: Vec<[u8; 32]> = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let mut hasher = Sha256::new();
        for (i, name) in names.iter().enumerate() {
            let kind = columns
                .iter()
                .find(|(n, _)| n == name)
                .map_or(ColumnType::Text, |(_, k)| *k);
            match normal(value_of(&row, i, kind)?, kind) {
                Value::Null => hasher.update(b"n"),
                Value::Integer(v) => {
                    hasher.update(b"i");
                    hasher.update(v.to_le_bytes());
                }
                Value::Real(v) => {
                    hasher.update(b"f");
                    hasher.update(v.to_bits().to_le_bytes());
                }
                Value::Text(t) => {
                    hasher.update(b"t");
                    hasher.update((t.len() as u64).to_le_bytes());
                    hasher.update(t.as_bytes());
                }
                Value::Bytes(b) => {
                    hasher.update(b"b");
                    hasher.update((b.len() as u64).to_le_bytes());
                    hasher.update(&b);
                }
            }
        }
        row_hashes.push(hasher.finalize().into());
    }
    row_hashes.sort_unstable();
    let mut table_hash = Sha256::new();
    for h in &row_hashes {
        table_hash.update(h);
    }
    let hash: String = table_hash
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(TableCheck {
        table,
        rows: row_hashes.len() as u64,
        hash,
    })
}

/// The tables the schema has (to check [`TABLES`] is complete).
pub async fn schema_tables(store: &Store) -> Result<Vec<String>, CopyError> {
    let sql = match store.backend() {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
        Backend::Postgres => "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() AND tablename NOT LIKE '_sqlx%'",
    };
    let mut names: Vec<String> = sqlx::query_scalar(sql).fetch_all(store.pool()).await?;
    names.sort();
    Ok(names)
}
