//! What a database must provide: a few reads and one write transaction.
//! SQLite and PostgreSQL implement it with their own SQL; all logic above
//! (dictionary, planning, merging, rollups) is shared.
//!
//! # Several servers over one database
//! Write transactions ([`Backend::begin`]) hold a shared lock on the store's
//! structure until they end, and the retention steps that delete series or
//! dictionary entries ([`Backend::begin_exclusive`]) hold it exclusively:
//! a writer that starts after such a step reads the bumped [`Epochs`] and
//! reloads what it had cached, and no deletion runs while a writer may be
//! about to reference what it deletes. On PostgreSQL these are
//! transaction-level advisory locks; SQLite is one server's file, whose
//! writes the store already serializes.

use async_trait::async_trait;
use firewatch_profile::{Function, ObjectAddress};

use super::{Result, RetentionReport, StoreStats};

/// A function row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct FunctionRow {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub file: String,
    pub line: i64,
    /// Build id of an unnamed frame's file, "" for named frames.
    pub build_id: String,
    /// The frame's address in that file (a u64 stored as i64).
    pub address: i64,
}

impl FunctionRow {
    /// The row as the model's function.
    pub fn function(&self) -> Function<'_> {
        Function {
            name: &self.name,
            file: &self.file,
            line: self.line as u32,
            address: (!self.build_id.is_empty()).then_some(ObjectAddress {
                build_id: &self.build_id,
                address: self.address as u64,
            }),
        }
    }
}

/// A series row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct SeriesRow {
    pub id: i64,
    pub tenant_id: i64,
    pub labels: String,
    pub sample_types: String,
    pub period_type: String,
    /// The `series` epoch of the last change to this row.
    pub revision: i64,
}

/// The change counters of the `epochs` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Epochs {
    /// Bumped by every transaction creating a series or changing its sample types.
    pub series: i64,
    /// Bumped when retention deletes series.
    pub series_deleted: i64,
    /// Bumped when retention deletes dictionary entries.
    pub dictionary: i64,
}

impl Epochs {
    /// Reads `(name, value)` rows; unknown names are ignored.
    pub fn from_rows(rows: Vec<(String, i64)>) -> Epochs {
        let mut e = Epochs::default();
        for (name, value) in rows {
            match name.as_str() {
                SERIES_EPOCH => e.series = value,
                SERIES_DELETED_EPOCH => e.series_deleted = value,
                DICTIONARY_EPOCH => e.dictionary = value,
                _ => {}
            }
        }
        e
    }
}

/// Names of the rows of `epochs`.
pub(crate) const SERIES_EPOCH: &str = "series";
pub(crate) const SERIES_DELETED_EPOCH: &str = "series_deleted";
pub(crate) const DICTIONARY_EPOCH: &str = "dictionary";

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
    /// Series whose revision is above `after` (every series for -1).
    async fn series_since(&self, after: i64) -> Result<Vec<SeriesRow>>;
    /// The change counters.
    async fn epochs(&self) -> Result<Epochs>;
    /// These stack nodes and all their ancestors, as (id, parent, function).
    async fn nodes_with_ancestors(&self, ids: &[i64]) -> Result<Vec<(i64, i64, i64)>>;
    /// Functions by id.
    async fn functions_by_id(&self, ids: &[i64]) -> Result<Vec<FunctionRow>>;
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
    /// End of the oldest dirty window, if any.
    async fn oldest_dirty_end(&self) -> Result<Option<i64>>;
    /// Starts a write transaction, holding the structure lock shared.
    async fn begin(&self) -> Result<Box<dyn Tx>>;
    /// Starts a transaction holding the structure lock exclusively: no
    /// write transaction runs until it ends.
    async fn begin_exclusive(&self) -> Result<Box<dyn Tx>>;
    /// Deletes blocks ending before `cutoff_ms`, their dirty windows and
    /// annotations before `cutoff_ms`; returns their counts.
    async fn delete_before(&self, cutoff_ms: i64) -> Result<RetentionReport>;
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
    async fn function(&mut self, tenant_id: i64, f: &Function<'_>) -> Result<i64>;
    /// The id of a stack node, created if new.
    async fn node(&mut self, parent: i64, function_id: i64) -> Result<i64>;
    /// The change counters, as this transaction sees them.
    async fn epochs(&mut self) -> Result<Epochs>;
    /// Adds one to a counter of `epochs` and returns the new value. The
    /// row stays locked until this transaction ends, so transactions that
    /// bump the same counter run one after the other.
    async fn bump_epoch(&mut self, name: &str) -> Result<i64>;
    /// The series of a tenant with these labels, if it exists.
    async fn series_row(&mut self, tenant_id: i64, labels: &str) -> Result<Option<SeriesRow>>;
    /// How many series a tenant has.
    async fn series_count(&mut self, tenant_id: i64) -> Result<i64>;
    /// Creates a series (its sample types, period and revision); returns its id.
    async fn insert_series(
        &mut self,
        tenant_id: i64,
        labels: &str,
        sample_types: &str,
        period_type: &str,
        revision: i64,
    ) -> Result<i64>;
    /// Rewrites a series' sample types (columns are only ever appended).
    async fn set_sample_types(
        &mut self,
        series_id: i64,
        sample_types: &str,
        revision: i64,
    ) -> Result<()>;
    /// Largest blob id (0 without blobs).
    async fn max_blob_id(&mut self) -> Result<i64>;
    /// Payloads with id above `after`, in id order, at most `limit`.
    async fn blobs_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, Vec<u8>)>>;
    /// Deletes series without blocks and their dirty windows; returns their ids.
    async fn delete_empty_series(&mut self) -> Result<Vec<i64>>;
    /// Deletes stack nodes and functions not in these sets (sorted).
    async fn delete_dictionary_except(&mut self, nodes: &[i64], functions: &[i64]) -> Result<u64>;
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
    /// Clears a dirty mark if nothing dirtied it again since it was read;
    /// `false` when it was not there at that version (another compactor
    /// built it, or a profile dirtied it again). On PostgreSQL the row
    /// lock makes a second compactor of the same window wait for the
    /// first and then find nothing to clear.
    async fn clear_dirty(&mut self, w: Window) -> Result<bool>;
    /// Makes everything durable.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Undoes everything and releases the transaction's locks now.
    async fn rollback(self: Box<Self>) -> Result<()>;
}
