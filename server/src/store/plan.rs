//! Choosing which blocks answer a time range: the coarsest clean rollups
//! that fit inside it, finer tiers only for what is left at the edges.

use rustc_hash::{FxHashMap, FxHashSet};

use super::Result;
use super::backend::{Backend, BlockMeta};

/// Window width of each tier in milliseconds (tier 0 is as ingested).
pub(crate) const TIER_WIDTH_MS: [i64; 4] = [0, 600_000, 3_600_000, 86_400_000];
/// The coarsest tier.
pub(crate) const TOP_TIER: u8 = 3;

/// Start of the tier window holding `t`.
pub(crate) fn window_start(tier: u8, t: i64) -> i64 {
    let w = TIER_WIDTH_MS[tier as usize];
    t.div_euclid(w) * w
}

type Intervals = Vec<(i64, i64)>;

/// Blocks covering `[from, until)` for each series exactly once: a rollup
/// is used only when its whole window lies inside what is left to cover and
/// no window inside it, at its tier or below, was dirtied since it was
/// built (ingest marks only the 10-minute window; coarser rollups above a
/// dirty window are stale too); tier 0 fills the rest.
pub(crate) async fn cover(
    backend: &dyn Backend,
    series: &[i64],
    from_ms: i64,
    until_ms: i64,
    max_tier: u8,
) -> Result<Vec<BlockMeta>> {
    let mut chosen = Vec::new();
    if series.is_empty() || from_ms >= until_ms {
        return Ok(chosen);
    }
    let mut remaining: FxHashMap<i64, Intervals> = series
        .iter()
        .map(|&s| (s, vec![(from_ms, until_ms)]))
        .collect();
    // (series, tier) -> starts of dirty windows, sorted.
    let mut dirty: FxHashMap<(i64, u8), Vec<i64>> = FxHashMap::default();
    if max_tier > 0 {
        for d in backend.dirty_in(series, from_ms, until_ms).await? {
            dirty
                .entry((d.series_id, d.tier))
                .or_default()
                .push(d.start_ms);
        }
        for starts in dirty.values_mut() {
            starts.sort_unstable();
        }
    }
    let stale = |series: i64, tier: u8, start: i64, end: i64| {
        (1..=tier).any(|t| {
            dirty.get(&(series, t)).is_some_and(|starts| {
                let i = starts.partition_point(|&s| s < start);
                starts.get(i).is_some_and(|&s| s < end)
            })
        })
    };
    for tier in (1..=max_tier.min(TOP_TIER)).rev() {
        let w = TIER_WIDTH_MS[tier as usize];
        for ((lo, hi), group) in groups(&remaining) {
            let (a, b) = (ceil_to(lo, w), hi.div_euclid(w) * w);
            if a >= b {
                continue;
            }
            let mut used: FxHashSet<(i64, i64)> = FxHashSet::default();
            for block in backend.blocks(&group, tier, a, b).await? {
                let key = (block.series_id, block.start_ms);
                if stale(block.series_id, tier, block.start_ms, block.start_ms + w)
                    || !used.insert(key)
                {
                    continue;
                }
                if let Some(intervals) = remaining.get_mut(&block.series_id)
                    && subtract(intervals, block.start_ms, block.start_ms + w)
                {
                    chosen.push(block);
                }
            }
        }
    }
    for ((lo, hi), group) in groups(&remaining) {
        for block in backend.blocks(&group, 0, lo, hi).await? {
            let inside = remaining.get(&block.series_id).is_some_and(|iv| {
                iv.iter()
                    .any(|&(a, b)| a <= block.start_ms && block.start_ms < b)
            });
            if inside {
                chosen.push(block);
            }
        }
    }
    Ok(chosen)
}

fn ceil_to(t: i64, w: i64) -> i64 {
    let f = t.div_euclid(w) * w;
    if f == t { t } else { f + w }
}

/// Series grouped by each interval they still need, so one query serves
/// every series with the same gap (usually all of them).
fn groups(remaining: &FxHashMap<i64, Intervals>) -> Vec<((i64, i64), Vec<i64>)> {
    let mut by_interval: FxHashMap<(i64, i64), Vec<i64>> = FxHashMap::default();
    for (&series, intervals) in remaining {
        for &iv in intervals {
            by_interval.entry(iv).or_default().push(series);
        }
    }
    let mut out: Vec<_> = by_interval.into_iter().collect();
    out.sort();
    for (_, g) in &mut out {
        g.sort_unstable();
    }
    out
}

/// Removes `[a, b)` from the interval that wholly contains it; false if none does.
fn subtract(intervals: &mut Intervals, a: i64, b: i64) -> bool {
    let Some(i) = intervals.iter().position(|&(lo, hi)| lo <= a && b <= hi) else {
        return false;
    };
    let (lo, hi) = intervals.remove(i);
    if lo < a {
        intervals.push((lo, a));
    }
    if b < hi {
        intervals.push((b, hi));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_splits_intervals() {
        let mut iv = vec![(0, 100)];
        assert!(subtract(&mut iv, 20, 30));
        iv.sort();
        assert_eq!(iv, vec![(0, 20), (30, 100)]);
        assert!(!subtract(&mut iv, 15, 25));
        assert!(subtract(&mut iv, 0, 20));
        assert_eq!(iv, vec![(30, 100)]);
    }

    #[test]
    fn windows_align_before_the_epoch_too() {
        assert_eq!(window_start(1, 599_999), 0);
        assert_eq!(window_start(1, -1), -600_000);
        assert_eq!(ceil_to(1, 600_000), 600_000);
        assert_eq!(ceil_to(-600_000, 600_000), -600_000);
    }
}
