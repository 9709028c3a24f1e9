//! What a database must provide: a few reads and one write transaction.
//! SQLite and PostgreSQL implement it with their own SQL; all logic above
//! (dictionary, planning, merging, rollups) is shared.

use async_trait::async_trait;

use super::{Result, RetentionReport, StoreStats};

/// A function row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct FunctionRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub file: String,
    pub line: i64,
}

/// A series row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct SeriesRow {
    pub id: i64,
    pub tenant_id: i64,
    pub labels: String,
    pub sample_types: String,
    pub period_type: String,
}

/// An annotation row; `labels` is a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AnnotationRow {
    pub id: i64,
    pub time_ms: i64,
    pub text: String,
    pub labels: String,
}

/// A block's metadata (its payload is read separately).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct BlockMeta {
    pub series_id: i64,
    #[sqlx(try_from = "i64")]
    pub tier: u8,
    pub start_ms: i64,
    pub end_ms: i64,
    pub id: i64,
    pub profiles: i64,
    pub totals: Vec<u8>,
}

/// Sums over the raw blocks of one series in one timeline step, for series
/// columns 0-3 (`None` where no block had the column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bucket {
    pub series_id: i64,
    pub bucket: i64,
    pub sums: [Option<i64>; 4],
    pub profiles: [Option<i64>; 4],
}

/// Series columns whose totals the database can sum ([`Bucket`]).
pub(crate) const SUMMED_COLUMNS: u32 = 4;

/// A rollup window waiting to be (re)built. `version` counts the profiles
/// that dirtied it, so a compactor only clears the mark it read: a profile
/// landing while the rollup is built leaves it dirty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::FromRow)]
pub(crate) struct Window {
    pub series_id: i64,
    #[sqlx(try_from = "i64")]
    pub tier: u8,
    pub start_ms: i64,
    pub version: i64,
}

#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Every tenant as (id, name).
    async fn tenants(&self) -> Result<Vec<(i64, String)>>;
    /// Functions with id > `after`.
    async fn functions(&self, after: i64) -> Result<Vec<FunctionRow>>;
    /// Stack nodes (id, parent, function) with id > `after`.
    async fn nodes(&self, after: i64) -> Result<Vec<(i64, i64, i64)>>;
    /// Series with id > `after`.
    async fn series(&self, after: i64) -> Result<Vec<SeriesRow>>;
    /// Blocks of these series at `tier` starting in `[from, until)`.
    async fn blocks(
        &self,
        series: &[i64],
        tier: u8,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<BlockMeta>>;
    /// Raw-block totals of these series summed per series and step.
    async fn timeline_raw(
        &self,
        series: &[i64],
        from_ms: i64,
        until_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<Bucket>>;
    /// Payloads by block id.
    async fn blobs(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>>;
    /// Dirty windows of these series (any tier) starting in `[from, until)`.
    async fn dirty_in(&self, series: &[i64], from_ms: i64, until_ms: i64) -> Result<Vec<Window>>;
    /// Dirty windows of any series whose window ended by `ended_before_ms`,
    /// finest tier first, at most `limit`.
    async fn dirty_ready(&self, ended_before_ms: i64, limit: i64) -> Result<Vec<Window>>;
    /// Starts the one write transaction.
    async fn begin(&self) -> Result<Box<dyn Tx>>;
    /// Deletes blocks ending before `cutoff_ms`, series left without blocks
    /// and annotations before `cutoff_ms`; returns their counts and the ids
    /// of the deleted series.
    async fn delete_before(&self, cutoff_ms: i64) -> Result<(RetentionReport, Vec<i64>)>;
    /// Deletes stack nodes and functions not in these sets (sorted).
    async fn delete_dictionary_except(&self, nodes: &[i64], functions: &[i64]) -> Result<u64>;
    /// Stores an annotation (`labels` a JSON object); returns its id.
    async fn insert_annotation(
        &self,
        tenant: &str,
        time_ms: i64,
        text: &str,
        labels: &str,
    ) -> Result<i64>;
    /// A tenant's annotations in `[from, until)` that come after `after`
    /// in (time, id) order, in that order, at most `limit`: pages are
    /// read by passing the last row's (time, id), starting from
    /// `(from_ms, 0)` (ids start at 1).
    async fn annotations(
        &self,
        tenant: &str,
        from_ms: i64,
        until_ms: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<AnnotationRow>>;
    /// Size at rest and counts.
    async fn stats(&self) -> Result<StoreStats>;
    /// A trivial round trip.
    async fn ping(&self) -> Result<()>;
    /// Closes the pool.
    async fn close(&self);
}

/// One write transaction. Dropped without `commit`, it rolls back.
#[async_trait]
pub(crate) trait Tx: Send {
    /// The id of a tenant, created if new.
    async fn tenant(&mut self, name: &str) -> Result<i64>;
    /// The id of a function, created if new.
    async fn function(&mut self, tenant_id: i64, name: &str, file: &str, line: i64) -> Result<i64>;
    /// The id of a stack node, created if new.
    async fn node(&mut self, parent: i64, function_id: i64) -> Result<i64>;
    /// The id of a series, created if new (and its sample types/period).
    async fn series(
        &mut self,
        tenant_id: i64,
        labels: &str,
        sample_types: &str,
        period_type: &str,
    ) -> Result<i64>;
    /// Rewrites a series' sample types (columns are only ever appended).
    async fn set_sample_types(&mut self, series_id: i64, sample_types: &str) -> Result<()>;
    /// Stores a block and its payload; returns the block id.
    async fn insert_block(&mut self, meta: &BlockMeta, data: &[u8]) -> Result<i64>;
    /// Deletes the blocks of one window at one tier (a rollup being rebuilt).
    async fn delete_window(
        &mut self,
        series_id: i64,
        tier: u8,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<()>;
    /// Marks a rollup window for (re)building (its `version` is ignored: bumped).
    async fn mark_dirty(&mut self, w: Window) -> Result<()>;
    /// Clears a dirty mark if nothing dirtied it again since it was read.
    async fn clear_dirty(&mut self, w: Window) -> Result<()>;
    /// Makes everything durable.
    async fn commit(self: Box<Self>) -> Result<()>;
}
