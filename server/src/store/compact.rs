//! Background work: building rollups of dirty windows, and retention.
//!
//! Both are safe with several servers on one database. A rollup is
//! committed only by the transaction that clears its window's dirty mark
//! at the version it read: a second server building the same window waits
//! on that row and then finds nothing to clear, so it rolls back rather
//! than add a duplicate. Retention deletes series and dictionary entries
//! holding the structure lock exclusively (see `backend.rs`), after
//! rereading every block written since it looked, so nothing a writer
//! references is deleted, and writers then reload what they cached.

use std::hash::BuildHasher;

use rustc_hash::{FxHashMap, FxHashSet};

use super::backend::{BlockMeta, DICTIONARY_EPOCH, SERIES_DELETED_EPOCH, Window};
use super::blob::{Block, encode_totals, total_of};
use super::plan::{TIER_WIDTH_MS, TOP_TIER, cover, window_start};
use super::{Inner, Result, RetentionReport, StoreError};

/// Dirty windows read per round.
const ROUND: i64 = 256;

pub(super) async fn compact(inner: &Inner, now_ms: i64) -> Result<usize> {
    let mut built = 0;
    // Bounded: a window dirtied again while being built comes back once more.
    for _ in 0..1024 {
        let ready_by = now_ms - inner.options.rollup_delay_ms;
        let mut windows = inner.backend.dirty_ready(ready_by, ROUND).await?;
        if windows.is_empty() {
            return Ok(built);
        }
        spread(&mut windows);
        for w in windows {
            if w.tier == 0 || w.tier > TOP_TIER {
                continue;
            }
            if build(inner, w).await? {
                built += 1;
            }
        }
    }
    Ok(built)
}

/// Rotates each tier's windows (finest tier still first) by a random
/// offset, so that servers compacting at once mostly take different
/// windows rather than all racing for the same ones in the same order.
fn spread(windows: &mut [Window]) {
    let seed = std::collections::hash_map::RandomState::new().hash_one(windows.len());
    let mut start = 0;
    while start < windows.len() {
        let tier = windows[start].tier;
        let len = windows[start..]
            .iter()
            .take_while(|w| w.tier == tier)
            .count();
        windows[start..start + len].rotate_left((seed % len as u64) as usize);
        start += len;
    }
}

/// Rebuilds one rollup from the finer blocks of its window; `false` when
/// another compactor built it first or a profile dirtied it meanwhile (it
/// stays dirty and comes back).
async fn build(inner: &Inner, w: Window) -> Result<bool> {
    let _writer = inner.write_lock.lock().await;
    let width = TIER_WIDTH_MS[w.tier as usize];
    let end = w.start_ms + width;
    let children = cover(
        inner.backend.as_ref(),
        &[w.series_id],
        w.start_ms,
        end,
        w.tier - 1,
    )
    .await?;
    let merged = merge(inner, &children).await?;
    let mut tx = inner.backend.begin().await?;
    // First, so that of two servers building this window only the first
    // to commit writes a rollup; the children read above are unchanged
    // while the mark keeps the version read (every new profile bumps it).
    if !tx.clear_dirty(w).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.delete_window(w.series_id, w.tier, w.start_ms, end)
        .await?;
    if let Some((block, profiles)) = merged {
        let totals: Vec<(u32, i64)> = block
            .columns
            .iter()
            .map(|&c| {
                (
                    c,
                    children.iter().filter_map(|b| total_of(&b.totals, c)).sum(),
                )
            })
            .collect();
        let meta = BlockMeta {
            series_id: w.series_id,
            tier: w.tier,
            start_ms: w.start_ms,
            end_ms: end,
            id: 0,
            profiles,
            totals: encode_totals(&totals),
        };
        tx.insert_block(&meta, &block.encode()).await?;
    }
    if w.tier < TOP_TIER {
        tx.mark_dirty(Window {
            series_id: w.series_id,
            tier: w.tier + 1,
            start_ms: window_start(w.tier + 1, w.start_ms),
            version: 0,
        })
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Sums blocks per (column, stack); `None` when there is nothing to sum.
async fn merge(inner: &Inner, blocks: &[BlockMeta]) -> Result<Option<(Block, i64)>> {
    if blocks.is_empty() {
        return Ok(None);
    }
    let profiles = blocks.iter().map(|b| b.profiles).sum();
    let ids: Vec<i64> = blocks.iter().map(|b| b.id).collect();
    let mut sums: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    let mut columns: Vec<u32> = Vec::new();
    for chunk in ids.chunks(512) {
        for (id, data) in inner.backend.blobs(chunk).await? {
            let block = Block::decode(&data).map_err(|e| StoreError::Corrupt {
                block: id,
                detail: e.to_string(),
            })?;
            for (ci, &c) in block.columns.iter().enumerate() {
                if !columns.contains(&c) {
                    columns.push(c);
                }
                for (&s, &v) in block.stacks.iter().zip(&block.values[ci]) {
                    let slot = sums.entry((c, s)).or_default();
                    *slot = slot.saturating_add(v);
                }
            }
        }
    }
    columns.sort_unstable();
    let mut stacks: Vec<u32> = sums
        .keys()
        .map(|&(_, s)| s)
        .collect::<FxHashSet<_>>()
        .into_iter()
        .collect();
    stacks.sort_unstable();
    let values = columns
        .iter()
        .map(|&c| {
            stacks
                .iter()
                .map(|&s| sums.get(&(c, s)).copied().unwrap_or(0))
                .collect()
        })
        .collect();
    Ok(Some((
        Block {
            columns,
            stacks,
            values,
        },
        profiles,
    )))
}

/// Blob payloads read per round trip while rereading recent blocks.
const RESCAN_PAGE: i64 = 256;

pub(super) async fn retention(inner: &Inner, cutoff_ms: i64) -> Result<RetentionReport> {
    let _writer = inner.write_lock.lock().await;
    let backend = inner.backend.as_ref();
    let mut report = backend.delete_before(cutoff_ms).await?;

    // Series left without blocks, under the exclusive lock: a writer about
    // to add a block to one of them either committed first (the series
    // keeps a block) or starts after, sees the epoch and recreates it.
    let mut tx = backend.begin_exclusive().await?;
    let gone = tx.delete_empty_series().await?;
    let series_bump = if gone.is_empty() {
        None
    } else {
        let before = tx.epochs().await?.series_deleted;
        Some((before, tx.bump_epoch(SERIES_DELETED_EPOCH).await?))
    };
    // Blocks above this id are written after this point; they are reread
    // below under the lock, whatever the scan in between sees.
    let watermark = tx.max_blob_id().await?;
    tx.commit().await?;
    report.series = gone.len() as u64;
    {
        let mut state = inner.state.write().await;
        for id in &gone {
            state.remove_series(*id as u32);
        }
        if let Some((before, now)) = series_bump {
            state.note_series_deleted_epoch(before, now);
        }
    }
    inner.state.write().await.sync(backend).await?;

    // What is still referenced: the leaves of the blocks that represent all
    // remaining data (day rollups where built, finer blocks elsewhere), and
    // every ancestor of those leaves. Read without the lock: this is the
    // long part.
    let series: Vec<i64> = inner
        .state
        .read()
        .await
        .series
        .keys()
        .map(|&s| i64::from(s))
        .collect();
    let blocks = cover(backend, &series, i64::MIN / 4, i64::MAX / 4, TOP_TIER).await?;
    let mut leaves: FxHashSet<u32> = FxHashSet::default();
    let ids: Vec<i64> = blocks.iter().map(|b| b.id).collect();
    for chunk in ids.chunks(512) {
        for (id, data) in backend.blobs(chunk).await? {
            leaves.extend(decode(id, &data)?.stacks);
        }
    }
    let mut keep = Referenced::default();
    keep.add_leaves(inner, leaves).await?;

    // Under the exclusive lock: the blocks written since the watermark,
    // then the deletion, then the epoch that tells every server to reload.
    let mut tx = backend.begin_exclusive().await?;
    let mut after = watermark;
    let mut recent: FxHashSet<u32> = FxHashSet::default();
    loop {
        let page = tx.blobs_after(after, RESCAN_PAGE).await?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        for (id, data) in &page {
            recent.extend(decode(*id, data)?.stacks);
        }
        after = last;
    }
    keep.add_leaves(inner, recent).await?;
    let (nodes, functions) = keep.sorted();
    let deleted = tx.delete_dictionary_except(&nodes, &functions).await?;
    let dictionary_bump = if deleted > 0 {
        let before = tx.epochs().await?.dictionary;
        Some((before, tx.bump_epoch(DICTIONARY_EPOCH).await?))
    } else {
        None
    };
    tx.commit().await?;
    report.dictionary_entries = deleted;
    if let Some((before, now)) = dictionary_bump {
        let mut state = inner.state.write().await;
        state.retain_dictionary(&nodes, &functions);
        state.note_dictionary_epoch(before, now);
    }
    Ok(report)
}

fn decode(id: i64, data: &[u8]) -> Result<Block> {
    Block::decode(data).map_err(|e| StoreError::Corrupt {
        block: id,
        detail: e.to_string(),
    })
}

/// Stack nodes and functions referenced by blocks.
#[derive(Default)]
struct Referenced {
    nodes: FxHashSet<u32>,
    functions: FxHashSet<u32>,
}

impl Referenced {
    /// Adds leaves and all their ancestors, fetching from the database the
    /// nodes this server has not seen (written by another server).
    async fn add_leaves(&mut self, inner: &Inner, leaves: FxHashSet<u32>) -> Result<()> {
        let mut unknown: Vec<i64> = Vec::new();
        {
            let state = inner.state.read().await;
            for leaf in leaves {
                let mut node = leaf;
                while node != 0 && !self.nodes.contains(&node) {
                    let Some((parent, f)) = state.node_info(node) else {
                        unknown.push(i64::from(node));
                        break;
                    };
                    self.nodes.insert(node);
                    self.functions.insert(f);
                    node = parent;
                }
            }
        }
        for chunk in unknown.chunks(512) {
            for (id, _, f) in inner.backend.nodes_with_ancestors(chunk).await? {
                self.nodes.insert(id as u32);
                self.functions.insert(f as u32);
            }
        }
        Ok(())
    }

    fn sorted(&self) -> (Vec<i64>, Vec<i64>) {
        let mut nodes: Vec<i64> = self.nodes.iter().map(|&n| i64::from(n)).collect();
        let mut functions: Vec<i64> = self.functions.iter().map(|&f| i64::from(f)).collect();
        nodes.sort_unstable();
        functions.sort_unstable();
        (nodes, functions)
    }
}
