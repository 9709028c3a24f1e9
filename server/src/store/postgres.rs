//! The PostgreSQL backend, for when one machine is not enough: any number
//! of servers share one database. Ids come from the database (sequences
//! and `ON CONFLICT`), never from a server's memory, so two servers
//! interning the same function or stack agree on its id.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::backend::{
    AnnotationRow, Backend, BlockMeta, Bucket, Epochs, FunctionRow, SeriesRow, Tx, Window,
};
use firewatch_profile::Function;

use super::sql::{ids_param, sql_backend};
use super::{Result, RetentionReport, StoreStats};

pub(crate) struct PostgresBackend {
    pool: PgPool,
}

impl PostgresBackend {
    pub(crate) async fn open(url: &str, max_connections: u32) -> Result<PostgresBackend> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PostgresBackend { pool })
    }

    async fn stats_impl(&self) -> Result<StoreStats> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r' \
             AND c.relname IN ('tenants', 'functions', 'stack_nodes', 'series', 'blocks', 'blobs', 'dirty', \
             'annotations', 'epochs')",
        )
        .fetch_one(&self.pool)
        .await?;
        let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM blocks")
            .fetch_one(&self.pool)
            .await?;
        let series: i64 = sqlx::query_scalar("SELECT count(*) FROM series")
            .fetch_one(&self.pool)
            .await?;
        Ok(StoreStats {
            bytes: bytes as u64,
            blocks: blocks as u64,
            series: series as u64,
        })
    }
}

/// The key of the structure lock (see `backend.rs`): "FIREWATC" as an
/// integer, unlikely to collide with another application's advisory locks
/// on a shared database.
macro_rules! structure_lock_key {
    () => {
        "5064669713724953667"
    };
}

sql_backend!(
    PostgresBackend,
    PostgresTx,
    sqlx::Postgres,
    "(SELECT value::bigint FROM json_array_elements_text($1::json))",
    Some(concat!(
        "SELECT pg_advisory_xact_lock_shared(",
        structure_lock_key!(),
        ")"
    )),
    Some(concat!(
        "SELECT pg_advisory_xact_lock(",
        structure_lock_key!(),
        ")"
    ))
);
