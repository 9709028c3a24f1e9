//! The embedded backend: one SQLite file in WAL mode.
//!
//! `synchronous=NORMAL` in WAL mode makes a commit durable against a crash
//! of the process (the WAL is written before commit returns); only a crash of
//! the machine may lose the last commits, which is the trade every embedded
//! store makes for not calling fsync per request.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::backend::{
    AnnotationRow, Backend, BlockMeta, Bucket, Epochs, FunctionRow, SeriesRow, Tx, Window,
};
use firewatch_profile::Function;

use super::sql::{ids_param, sql_backend};
use super::{Result, RetentionReport, StoreError, StoreStats};

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
}

impl SqliteBackend {
    pub(crate) async fn open(url: &str, max_connections: u32) -> Result<SqliteBackend> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
        if let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteBackend { pool })
    }

    async fn stats_impl(&self) -> Result<StoreStats> {
        let pages: i64 = sqlx::query_scalar("SELECT page_count FROM pragma_page_count()")
            .fetch_one(&self.pool)
            .await?;
        let free: i64 = sqlx::query_scalar("SELECT freelist_count FROM pragma_freelist_count()")
            .fetch_one(&self.pool)
            .await?;
        let size: i64 = sqlx::query_scalar("SELECT page_size FROM pragma_page_size()")
            .fetch_one(&self.pool)
            .await?;
        let (blocks, series) = counts(&self.pool).await?;
        Ok(StoreStats {
            bytes: ((pages - free).max(0) * size) as u64,
            blocks,
            series,
        })
    }
}

async fn counts(pool: &SqlitePool) -> Result<(u64, u64)> {
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM blocks")
        .fetch_one(pool)
        .await?;
    let series: i64 = sqlx::query_scalar("SELECT count(*) FROM series")
        .fetch_one(pool)
        .await?;
    Ok((blocks as u64, series as u64))
}

sql_backend!(
    SqliteBackend,
    SqliteTx,
    sqlx::Sqlite,
    "(SELECT value FROM json_each($1))",
    // One server per file: the store's own write lock orders its writers.
    None::<&'static str>,
    None::<&'static str>
);
