//! The SQL shared by both dialects, expanded once per backend by
//! [`sql_backend!`]. The dialects differ only in how a list of ids is
//! passed (a JSON array, unpacked by each database's JSON functions), in
//! the structure lock (see `backend.rs`), in opening, migrations and size
//! accounting, which live in `sqlite.rs` and `postgres.rs`.

/// Ids as the JSON array the `$ids` fragment unpacks.
pub(crate) fn ids_param(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Implements `Backend` for `$backend` (which has a `pool` field and a
/// `stats_impl` method) and a `Tx` type `$tx` for database `$db`; `$ids`
/// is the SQL that turns bind parameter `$1`, a JSON array of integers, into
/// a set for `IN`; `$shared` and `$exclusive` are the statements taking the
/// structure lock at the start of a transaction (`None`: no statement).
macro_rules! sql_backend {
    ($backend:ident, $tx:ident, $db:ty, $ids:literal, $shared:expr, $exclusive:expr) => {
        #[async_trait::async_trait]
        impl Backend for $backend {
            async fn tenants(&self) -> Result<Vec<(i64, String)>> {
                Ok(sqlx::query_as("SELECT id, name FROM tenants")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn functions(&self, after: i64) -> Result<Vec<FunctionRow>> {
                Ok(sqlx::query_as("SELECT id, tenant_id, name, file, line, build_id, address FROM functions WHERE id > $1 ORDER BY id")
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn nodes(&self, after: i64) -> Result<Vec<(i64, i64, i64)>> {
                Ok(sqlx::query_as("SELECT id, parent, function_id FROM stack_nodes WHERE id > $1 ORDER BY id")
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn series_since(&self, after: i64) -> Result<Vec<SeriesRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, labels, sample_types, period_type, revision FROM series \
                     WHERE revision > $1 ORDER BY id",
                )
                .bind(after)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn epochs(&self) -> Result<Epochs> {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM epochs")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(Epochs::from_rows(rows))
            }

            async fn nodes_with_ancestors(&self, ids: &[i64]) -> Result<Vec<(i64, i64, i64)>> {
                Ok(sqlx::query_as(concat!(
                    "WITH RECURSIVE up (id, parent, function_id) AS (\
                     SELECT id, parent, function_id FROM stack_nodes WHERE id IN ", $ids, " \
                     UNION SELECT n.id, n.parent, n.function_id FROM stack_nodes n JOIN up ON n.id = up.parent) \
                     SELECT id, parent, function_id FROM up"
                ))
                .bind(ids_param(ids))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn functions_by_id(&self, ids: &[i64]) -> Result<Vec<FunctionRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT id, tenant_id, name, file, line, build_id, address FROM functions WHERE id IN ", $ids, ""
                ))
                .bind(ids_param(ids))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn blocks(&self, series: &[i64], tier: u8, from_ms: i64, until_ms: i64) -> Result<Vec<BlockMeta>> {
                Ok(sqlx::query_as(
                    concat!("SELECT series_id, tier, start_ms, end_ms, id, profiles, totals FROM blocks \
                     WHERE series_id IN ", $ids, " AND tier = $2 \
                     AND start_ms >= $3 AND start_ms < $4"),
                )
                .bind(ids_param(series))
                .bind(i64::from(tier))
                .bind(from_ms)
                .bind(until_ms)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn blobs(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
                Ok(
                    sqlx::query_as(concat!("SELECT id, data FROM blobs WHERE id IN ", $ids, ""))
                        .bind(ids_param(ids))
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn timeline_raw(&self, series: &[i64], from_ms: i64, until_ms: i64, step_ms: i64) -> Result<Vec<Bucket>> {
                let rows = sqlx::query(concat!(
                    "SELECT series_id, (start_ms - $2) / $3 AS bucket, \
                     CAST(SUM(t0) AS BIGINT) AS s0, CAST(SUM(t1) AS BIGINT) AS s1, \
                     CAST(SUM(t2) AS BIGINT) AS s2, CAST(SUM(t3) AS BIGINT) AS s3, \
                     CAST(SUM(CASE WHEN t0 IS NULL THEN 0 ELSE profiles END) AS BIGINT) AS p0, \
                     CAST(SUM(CASE WHEN t1 IS NULL THEN 0 ELSE profiles END) AS BIGINT) AS p1, \
                     CAST(SUM(CASE WHEN t2 IS NULL THEN 0 ELSE profiles END) AS BIGINT) AS p2, \
                     CAST(SUM(CASE WHEN t3 IS NULL THEN 0 ELSE profiles END) AS BIGINT) AS p3 \
                     FROM blocks WHERE series_id IN ",
                    $ids,
                    " AND tier = 0 AND start_ms >= $2 AND start_ms < $4 GROUP BY series_id, bucket"
                ))
                .bind(ids_param(series))
                .bind(from_ms)
                .bind(step_ms)
                .bind(until_ms)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Bucket {
                            series_id: r.try_get("series_id")?,
                            bucket: r.try_get("bucket")?,
                            sums: [r.try_get("s0")?, r.try_get("s1")?, r.try_get("s2")?, r.try_get("s3")?],
                            profiles: [r.try_get("p0")?, r.try_get("p1")?, r.try_get("p2")?, r.try_get("p3")?],
                        })
                    })
                    .collect()
            }

            async fn dirty_in(&self, series: &[i64], from_ms: i64, until_ms: i64) -> Result<Vec<Window>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT series_id, tier, start_ms, version FROM dirty WHERE series_id IN ",
                    $ids,
                    " AND start_ms >= $2 AND start_ms < $3"
                ))
                .bind(ids_param(series))
                .bind(from_ms)
                .bind(until_ms)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn dirty_ready(&self, ended_before_ms: i64, limit: i64) -> Result<Vec<Window>> {
                Ok(sqlx::query_as(
                    "SELECT series_id, tier, start_ms, version FROM dirty \
                     WHERE start_ms + CASE tier WHEN 1 THEN 600000 WHEN 2 THEN 3600000 ELSE 86400000 END <= $1 \
                     ORDER BY tier, start_ms LIMIT $2",
                )
                .bind(ended_before_ms)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn oldest_dirty_end(&self) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "SELECT MIN(start_ms + CASE tier WHEN 1 THEN 600000 WHEN 2 THEN 3600000 ELSE 86400000 END) \
                     FROM dirty",
                )
                .fetch_one(&self.pool)
                .await?)
            }

            async fn begin(&self) -> Result<Box<dyn Tx>> {
                let mut tx = self.pool.begin().await?;
                if let Some(lock) = $shared {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                Ok(Box::new($tx { tx }))
            }

            async fn begin_exclusive(&self) -> Result<Box<dyn Tx>> {
                let mut tx = self.pool.begin().await?;
                if let Some(lock) = $exclusive {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                Ok(Box::new($tx { tx }))
            }

            async fn delete_before(&self, cutoff_ms: i64) -> Result<RetentionReport> {
                let mut tx = self.pool.begin().await?;
                let blobs = sqlx::query(
                    "DELETE FROM blobs WHERE id IN (SELECT id FROM blocks WHERE end_ms <= $1)",
                )
                .bind(cutoff_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM blocks WHERE end_ms <= $1")
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM dirty WHERE start_ms + 86400000 <= $1")
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?;
                let annotations = sqlx::query("DELETE FROM annotations WHERE time_ms < $1")
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(RetentionReport {
                    blocks: blobs.rows_affected(),
                    series: 0,
                    dictionary_entries: 0,
                    annotations: annotations.rows_affected(),
                })
            }

            async fn insert_annotation(&self, tenant: &str, time_ms: i64, text: &str, labels: &str) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO annotations (tenant, time_ms, text, labels) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(tenant)
                .bind(time_ms)
                .bind(text)
                .bind(labels)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn annotations(
                &self,
                tenant: &str,
                from_ms: i64,
                until_ms: i64,
                after: (i64, i64),
                limit: i64,
            ) -> Result<Vec<AnnotationRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, time_ms, text, labels FROM annotations \
                     WHERE tenant = $1 AND time_ms >= $2 AND time_ms < $3 \
                     AND (time_ms > $4 OR (time_ms = $4 AND id > $5)) \
                     ORDER BY time_ms, id LIMIT $6",
                )
                .bind(tenant)
                .bind(from_ms)
                .bind(until_ms)
                .bind(after.0)
                .bind(after.1)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn stats(&self) -> Result<StoreStats> {
                self.stats_impl().await
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }
        }


        pub(crate) struct $tx {
            tx: sqlx::Transaction<'static, $db>,
        }

        #[async_trait::async_trait]
        impl Tx for $tx {
            async fn tenant(&mut self, name: &str) -> Result<i64> {
                sqlx::query("INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn function(&mut self, tenant_id: i64, f: &Function<'_>) -> Result<i64> {
                let (build_id, address) = f.address.map_or(("", 0), |a| (a.build_id, a.address as i64));
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO functions (tenant_id, name, file, line, build_id, address) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (tenant_id, name, file, line, build_id, address) DO NOTHING RETURNING id",
                )
                .bind(tenant_id)
                .bind(f.name)
                .bind(f.file)
                .bind(i64::from(f.line))
                .bind(build_id)
                .bind(address)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(id) = id {
                    return Ok(id);
                }
                Ok(sqlx::query_scalar(
                    "SELECT id FROM functions WHERE tenant_id = $1 AND name = $2 AND file = $3 AND line = $4 \
                     AND build_id = $5 AND address = $6",
                )
                .bind(tenant_id)
                .bind(f.name)
                .bind(f.file)
                .bind(i64::from(f.line))
                .bind(build_id)
                .bind(address)
                .fetch_one(&mut *self.tx)
                .await?)
            }

            async fn node(&mut self, parent: i64, function_id: i64) -> Result<i64> {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO stack_nodes (parent, function_id) VALUES ($1, $2) \
                     ON CONFLICT (parent, function_id) DO NOTHING RETURNING id",
                )
                .bind(parent)
                .bind(function_id)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(id) = id {
                    return Ok(id);
                }
                Ok(sqlx::query_scalar("SELECT id FROM stack_nodes WHERE parent = $1 AND function_id = $2")
                    .bind(parent)
                    .bind(function_id)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn epochs(&mut self) -> Result<Epochs> {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, value FROM epochs")
                    .fetch_all(&mut *self.tx)
                    .await?;
                Ok(Epochs::from_rows(rows))
            }

            async fn bump_epoch(&mut self, name: &str) -> Result<i64> {
                Ok(sqlx::query_scalar("UPDATE epochs SET value = value + 1 WHERE name = $1 RETURNING value")
                    .bind(name)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn series_row(&mut self, tenant_id: i64, labels: &str) -> Result<Option<SeriesRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, labels, sample_types, period_type, revision FROM series \
                     WHERE tenant_id = $1 AND labels = $2",
                )
                .bind(tenant_id)
                .bind(labels)
                .fetch_optional(&mut *self.tx)
                .await?)
            }

            async fn series_count(&mut self, tenant_id: i64) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT count(*) FROM series WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn insert_series(
                &mut self,
                tenant_id: i64,
                labels: &str,
                sample_types: &str,
                period_type: &str,
                revision: i64,
            ) -> Result<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO series (tenant_id, labels, sample_types, period_type, revision) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(tenant_id)
                .bind(labels)
                .bind(sample_types)
                .bind(period_type)
                .bind(revision)
                .fetch_one(&mut *self.tx)
                .await?)
            }

            async fn set_sample_types(&mut self, series_id: i64, sample_types: &str, revision: i64) -> Result<()> {
                sqlx::query("UPDATE series SET sample_types = $1, revision = $2 WHERE id = $3")
                    .bind(sample_types)
                    .bind(revision)
                    .bind(series_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn max_blob_id(&mut self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM blobs")
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn blobs_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, Vec<u8>)>> {
                Ok(sqlx::query_as("SELECT id, data FROM blobs WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *self.tx)
                    .await?)
            }

            async fn delete_empty_series(&mut self) -> Result<Vec<i64>> {
                // NOT EXISTS probes the blocks index once per series rather
                // than scanning every block.
                let gone: Vec<(i64,)> = sqlx::query_as(
                    "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocks.series_id = series.id) \
                     RETURNING id",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                let gone: Vec<i64> = gone.into_iter().map(|(id,)| id).collect();
                if !gone.is_empty() {
                    sqlx::query(concat!("DELETE FROM dirty WHERE series_id IN ", $ids, ""))
                        .bind(ids_param(&gone))
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(gone)
            }

            async fn delete_dictionary_except(&mut self, nodes: &[i64], functions: &[i64]) -> Result<u64> {
                let n = sqlx::query(concat!("DELETE FROM stack_nodes WHERE id NOT IN ", $ids, ""))
                    .bind(ids_param(nodes))
                    .execute(&mut *self.tx)
                    .await?
                    .rows_affected();
                let f = sqlx::query(concat!("DELETE FROM functions WHERE id NOT IN ", $ids, ""))
                    .bind(ids_param(functions))
                    .execute(&mut *self.tx)
                    .await?
                    .rows_affected();
                Ok(n + f)
            }

            async fn insert_block(&mut self, meta: &BlockMeta, data: &[u8]) -> Result<i64> {
                let id: i64 = sqlx::query_scalar("INSERT INTO blobs (data) VALUES ($1) RETURNING id")
                    .bind(data)
                    .fetch_one(&mut *self.tx)
                    .await?;
                let t = |c: u32| super::blob::total_of(&meta.totals, c);
                sqlx::query(
                    "INSERT INTO blocks (series_id, tier, start_ms, id, end_ms, profiles, totals, t0, t1, t2, t3) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(meta.series_id)
                .bind(i64::from(meta.tier))
                .bind(meta.start_ms)
                .bind(id)
                .bind(meta.end_ms)
                .bind(meta.profiles)
                .bind(&meta.totals)
                .bind(t(0))
                .bind(t(1))
                .bind(t(2))
                .bind(t(3))
                .execute(&mut *self.tx)
                .await?;
                Ok(id)
            }

            async fn delete_window(&mut self, series_id: i64, tier: u8, start_ms: i64, end_ms: i64) -> Result<()> {
                sqlx::query(
                    "DELETE FROM blobs WHERE id IN (SELECT id FROM blocks \
                     WHERE series_id = $1 AND tier = $2 AND start_ms >= $3 AND start_ms < $4)",
                )
                .bind(series_id)
                .bind(i64::from(tier))
                .bind(start_ms)
                .bind(end_ms)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query("DELETE FROM blocks WHERE series_id = $1 AND tier = $2 AND start_ms >= $3 AND start_ms < $4")
                    .bind(series_id)
                    .bind(i64::from(tier))
                    .bind(start_ms)
                    .bind(end_ms)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn mark_dirty(&mut self, w: Window) -> Result<()> {
                sqlx::query(
                    "INSERT INTO dirty (series_id, tier, start_ms, version) VALUES ($1, $2, $3, 1) \
                     ON CONFLICT (series_id, tier, start_ms) DO UPDATE SET version = dirty.version + 1",
                )
                    .bind(w.series_id)
                    .bind(i64::from(w.tier))
                    .bind(w.start_ms)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn clear_dirty(&mut self, w: Window) -> Result<bool> {
                let cleared = sqlx::query(
                    "DELETE FROM dirty WHERE series_id = $1 AND tier = $2 AND start_ms = $3 AND version = $4",
                )
                .bind(w.series_id)
                .bind(i64::from(w.tier))
                .bind(w.start_ms)
                .bind(w.version)
                .execute(&mut *self.tx)
                .await?;
                Ok(cleared.rows_affected() > 0)
            }

            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }

            async fn rollback(self: Box<Self>) -> Result<()> {
                self.tx.rollback().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_backend;
