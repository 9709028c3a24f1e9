//! Background work: building rollups of dirty windows, and retention.

use rustc_hash::{FxHashMap, FxHashSet};

use super::backend::{BlockMeta, Window};
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
        let windows = inner.backend.dirty_ready(ready_by, ROUND).await?;
        if windows.is_empty() {
            return Ok(built);
        }
        for w in windows {
            if w.tier == 0 || w.tier > TOP_TIER {
                continue;
            }
            build(inner, w).await?;
            built += 1;
        }
    }
    Ok(built)
}

/// Rebuilds one rollup from the finer blocks of its window.
async fn build(inner: &Inner, w: Window) -> Result<()> {
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
    tx.clear_dirty(w).await?;
    if w.tier < TOP_TIER {
        tx.mark_dirty(Window {
            series_id: w.series_id,
            tier: w.tier + 1,
            start_ms: window_start(w.tier + 1, w.start_ms),
            version: 0,
        })
        .await?;
    }
    tx.commit().await
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

pub(super) async fn retention(inner: &Inner, cutoff_ms: i64) -> Result<RetentionReport> {
    let _writer = inner.write_lock.lock().await;
    let (mut report, gone) = inner.backend.delete_before(cutoff_ms).await?;
    let mut state = inner.state.write().await;
    for id in gone {
        state.remove_series(id as u32);
    }
    state.refresh(inner.backend.as_ref()).await?;
    // What is still referenced: the leaves of the blocks that represent all
    // remaining data (day rollups where built, finer blocks elsewhere), and
    // every ancestor of those leaves.
    let series: Vec<i64> = state.series.keys().map(|&s| i64::from(s)).collect();
    let blocks = cover(
        inner.backend.as_ref(),
        &series,
        i64::MIN / 4,
        i64::MAX / 4,
        TOP_TIER,
    )
    .await?;
    let mut leaves: FxHashSet<u32> = FxHashSet::default();
    let ids: Vec<i64> = blocks.iter().map(|b| b.id).collect();
    for chunk in ids.chunks(512) {
        for (id, data) in inner.backend.blobs(chunk).await? {
            let block = Block::decode(&data).map_err(|e| StoreError::Corrupt {
                block: id,
                detail: e.to_string(),
            })?;
            leaves.extend(block.stacks);
        }
    }
    let mut nodes: FxHashSet<u32> = FxHashSet::default();
    let mut functions: FxHashSet<u32> = FxHashSet::default();
    for leaf in leaves {
        let mut node = leaf;
        while node != 0 && nodes.insert(node) {
            let Some((parent, f)) = state.node_info(node) else {
                // Unknown to this server: keep everything rather than guess.
                return Ok(report);
            };
            functions.insert(f);
            node = parent;
        }
    }
    let mut nodes: Vec<i64> = nodes.into_iter().map(i64::from).collect();
    let mut functions: Vec<i64> = functions.into_iter().map(i64::from).collect();
    nodes.sort_unstable();
    functions.sort_unstable();
    report.dictionary_entries = inner
        .backend
        .delete_dictionary_except(&nodes, &functions)
        .await?;
    state.retain_dictionary(&nodes, &functions);
    Ok(report)
}
