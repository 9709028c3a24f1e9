//! The SQL shared by both dialects, expanded once per backend by
//! [`sql_backend!`]. The dialects differ only in how a list of ids is
//! passed (a JSON array, unpacked by each database's JSON functions), in
//! opening, migrations and size accounting, which live in `sqlite.rs` and
//! `postgres.rs`.

/// Ids as the JSON array the `$ids` fragment unpacks.
pub(crate) fn ids_param(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Implements `Backend` for `$backend` (which has a `pool` field and a
/// `stats_impl` method) and a `Tx` type `$tx` for database `$db`; `$ids`
/// is the SQL that turns bind parameter `$1`, a JSON array of integers, into
/// a set for `IN`.
macro_rules! sql_backend {
    ($backend:ident, $tx:ident, $db:ty, $ids:literal) => {
        #[async_trait::async_trait]
        impl Backend for $backend {
            async fn tenants(&self) -> Result<Vec<(i64, String)>> {
                Ok(sqlx::query_as("SELECT id, name FROM tenants")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn functions(&self, after: i64) -> Result<Vec<FunctionRow>> {
                Ok(sqlx::query_as("SELECT id, tenant_id, name, file, line FROM functions WHERE id > $1 ORDER BY id")
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

            async fn series(&self, after: i64) -> Result<Vec<SeriesRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, tenant_id, labels, sample_types, period_type FROM series WHERE id > $1 ORDER BY id",
                )
                .bind(after)
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

            async fn begin(&self) -> Result<Box<dyn Tx>> {
                Ok(Box::new($tx {
                    tx: self.pool.begin().await?,
                }))
            }

            async fn delete_before(&self, cutoff_ms: i64) -> Result<(RetentionReport, Vec<i64>)> {
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
                let gone: Vec<(i64,)> = sqlx::query_as(
                    "DELETE FROM series WHERE id NOT IN (SELECT DISTINCT series_id FROM blocks) RETURNING id",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                let report = RetentionReport {
                    blocks: blobs.rows_affected(),
                    series: gone.len() as u64,
                    dictionary_entries: 0,
                    annotations: annotations.rows_affected(),
                };
                Ok((report, gone.into_iter().map(|(id,)| id).collect()))
            }

            async fn delete_dictionary_except(&self, nodes: &[i64], functions: &[i64]) -> Result<u64> {
                let mut tx = self.pool.begin().await?;
                let n = sqlx::query(concat!("DELETE FROM stack_nodes WHERE id NOT IN ", $ids, ""))
                    .bind(ids_param(nodes))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let f = sqlx::query(concat!("DELETE FROM functions WHERE id NOT IN ", $ids, ""))
                    .bind(ids_param(functions))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n + f)
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

            async fn function(&mut self, tenant_id: i64, name: &str, file: &str, line: i64) -> Result<i64> {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO functions (tenant_id, name, file, line) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, name, file, line) DO NOTHING RETURNING id",
                )
                .bind(tenant_id)
                .bind(name)
                .bind(file)
                .bind(line)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(id) = id {
                    return Ok(id);
                }
                Ok(sqlx::query_scalar(
                    "SELECT id FROM functions WHERE tenant_id = $1 AND name = $2 AND file = $3 AND line = $4",
                )
                .bind(tenant_id)
                .bind(name)
                .bind(file)
                .bind(line)
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

            async fn series(&mut self, tenant_id: i64, labels: &str, sample_types: &str, period_type: &str) -> Result<i64> {
                sqlx::query(
                    "INSERT INTO series (tenant_id, labels, sample_types, period_type) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, labels) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(labels)
                .bind(sample_types)
                .bind(period_type)
                .execute(&mut *self.tx)
                .await?;
                Ok(sqlx::query_scalar("SELECT id FROM series WHERE tenant_id = $1 AND labels = $2")
                    .bind(tenant_id)
                    .bind(labels)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn set_sample_types(&mut self, series_id: i64, sample_types: &str) -> Result<()> {
                sqlx::query("UPDATE series SET sample_types = $1 WHERE id = $2")
                    .bind(sample_types)
                    .bind(series_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
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

            async fn clear_dirty(&mut self, w: Window) -> Result<()> {
                sqlx::query("DELETE FROM dirty WHERE series_id = $1 AND tier = $2 AND start_ms = $3 AND version = $4")
                    .bind(w.series_id)
                    .bind(i64::from(w.tier))
                    .bind(w.start_ms)
                    .bind(w.version)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_backend;
