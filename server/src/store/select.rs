//! Reads: matching series, covering the range with blocks, merging them
//! into one profile, and the timeline.

use firewatch_profile::{Profile, SampleType};
use rustc_hash::FxHashMap;

use super::backend::{BlockMeta, Bucket, SUMMED_COLUMNS};
use super::blob::{Block, total_of};
use super::plan::{TIER_WIDTH_MS, TOP_TIER, cover};
use super::{Inner, Merged, Result, Selection, StoreError, Timeline, is_gauge};
use crate::selector::{PROFILE_NAME, SERVICE_NAME, matches_all};

/// Most points a timeline has; a smaller requested step is widened.
const MAX_POINTS: i64 = 10_000;
/// Blob ids fetched per query.
const FETCH_CHUNK: usize = 512;

/// A matching series and the column holding the selected sample type.
struct Target {
    series: i64,
    column: u32,
}

pub(super) async fn select(inner: &Inner, sel: &Selection, step_ms: Option<i64>) -> Result<Merged> {
    super::sync_if_changed(inner).await?;
    let (targets, sample_type) = targets(inner, sel).await;
    let step = choose_step(sel.from_ms, sel.until_ms, step_ms);
    let points = ((sel.until_ms - sel.from_ms).max(0) + step - 1) / step;
    let mut timeline = Timeline {
        start_time: sel.from_ms.div_euclid(1000),
        duration_delta: step / 1000,
        samples: vec![0; points as usize],
    };
    let Some(sample_type) = sample_type else {
        return Ok(Merged {
            profile: Profile::new(vec![SampleType::new(
                sel.profile_type.kind.clone(),
                sel.profile_type.unit.clone().unwrap_or_default(),
            )]),
            timeline,
            series: 0,
        });
    };
    let gauge = is_gauge(&sample_type.kind);
    let column_of: FxHashMap<i64, u32> = targets.iter().map(|t| (t.series, t.column)).collect();
    let ids: Vec<i64> = targets.iter().map(|t| t.series).collect();

    let blocks = cover(
        inner.backend.as_ref(),
        &ids,
        sel.from_ms,
        sel.until_ms,
        TOP_TIER,
    )
    .await?;
    let sums = merge_blocks(inner, &blocks, &column_of, gauge).await?;

    let tier = timeline_tier(step);
    if tier == 0 && targets.iter().all(|t| t.column < SUMMED_COLUMNS) {
        // Fine steps read raw blocks only: let the database sum them.
        let buckets = inner
            .backend
            .timeline_raw(&ids, sel.from_ms, sel.until_ms, step)
            .await?;
        fill_timeline_sums(&mut timeline, &buckets, &column_of, gauge);
    } else {
        let timeline_blocks = if tier == TOP_TIER {
            blocks
        } else {
            cover(
                inner.backend.as_ref(),
                &ids,
                sel.from_ms,
                sel.until_ms,
                tier,
            )
            .await?
        };
        fill_timeline(
            &mut timeline,
            &timeline_blocks,
            &column_of,
            sel.from_ms,
            step,
            gauge,
        );
    }

    let profile = to_profile(inner, sums, sample_type).await?;
    Ok(Merged {
        profile,
        timeline,
        series: targets.len(),
    })
}

/// Each service's timeline of the selected type, from block totals alone
/// (no profile is merged), busiest first: what the services overview and
/// the picker's order read. `None` when no series has the type.
pub(super) async fn activity(
    inner: &Inner,
    sel: &Selection,
    step_ms: Option<i64>,
) -> Result<Option<(SampleType, Vec<(String, Timeline)>)>> {
    super::sync_if_changed(inner).await?;
    let (targets, sample_type) = targets(inner, sel).await;
    let Some(sample_type) = sample_type else {
        return Ok(None);
    };
    let gauge = is_gauge(&sample_type.kind);
    let step = choose_step(sel.from_ms, sel.until_ms, step_ms);
    let points = ((sel.until_ms - sel.from_ms).max(0) + step - 1) / step;
    let service_of: FxHashMap<i64, String> = {
        let state = inner.state.read().await;
        targets
            .iter()
            .map(|t| {
                let name = state
                    .series
                    .get(&(t.series as u32))
                    .and_then(|s| s.labels.get(SERVICE_NAME).cloned())
                    .unwrap_or_default();
                (t.series, name)
            })
            .collect()
    };
    let ids: Vec<i64> = targets.iter().map(|t| t.series).collect();
    let blocks = cover(
        inner.backend.as_ref(),
        &ids,
        sel.from_ms,
        sel.until_ms,
        timeline_tier(step),
    )
    .await?;
    let mut columns: FxHashMap<&str, FxHashMap<i64, u32>> = FxHashMap::default();
    for t in &targets {
        let service = service_of.get(&t.series).map_or("", String::as_str);
        columns
            .entry(service)
            .or_default()
            .insert(t.series, t.column);
    }
    let mut out: Vec<(String, Timeline)> = columns
        .into_iter()
        .map(|(service, column_of)| {
            let mut timeline = Timeline {
                start_time: sel.from_ms.div_euclid(1000),
                duration_delta: step / 1000,
                samples: vec![0; points as usize],
            };
            fill_timeline(&mut timeline, &blocks, &column_of, sel.from_ms, step, gauge);
            (service.to_owned(), timeline)
        })
        .collect();
    let total = |t: &Timeline| t.samples.iter().fold(0i64, |a, v| a.saturating_add(*v));
    out.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
    Ok(Some((sample_type, out)))
}

async fn targets(inner: &Inner, sel: &Selection) -> (Vec<Target>, Option<SampleType>) {
    let state = inner.state.read().await;
    let mut out = Vec::new();
    let mut sample_type = None;
    let Some(&tenant) = state.tenants.get(&sel.tenant) else {
        return (out, None);
    };
    let pt = &sel.profile_type;
    for (&id, s) in &state.series {
        if s.tenant != tenant || !matches_all(&sel.matchers, &s.labels) {
            continue;
        }
        if let Some(name) = &pt.name
            && s.labels.get(PROFILE_NAME).is_some_and(|n| n != name)
        {
            continue;
        }
        let column = s
            .sample_types
            .iter()
            .position(|t| t.kind == pt.kind && pt.unit.as_ref().is_none_or(|u| *u == t.unit));
        if let Some(c) = column {
            sample_type.get_or_insert_with(|| s.sample_types[c].clone());
            out.push(Target {
                series: i64::from(id),
                column: c as u32,
            });
        }
    }
    out.sort_by_key(|t| t.series);
    (out, sample_type)
}

/// Step in ms: the request's (at least 10 s, at most `MAX_POINTS` points)
/// or about 1,000 points, rounded up to whole 10 s.
pub(super) fn choose_step(from_ms: i64, until_ms: i64, step_ms: Option<i64>) -> i64 {
    let range = (until_ms - from_ms).max(1);
    let wanted = step_ms
        .unwrap_or(range / 1000)
        .max(range / MAX_POINTS)
        .max(10_000);
    (wanted + 9_999) / 10_000 * 10_000
}

/// The coarsest tier whose windows are no wider than the step.
fn timeline_tier(step: i64) -> u8 {
    (1..=TOP_TIER)
        .rev()
        .find(|&t| TIER_WIDTH_MS[t as usize] <= step)
        .unwrap_or(0)
}

fn fill_timeline_sums(
    timeline: &mut Timeline,
    buckets: &[Bucket],
    column_of: &FxHashMap<i64, u32>,
    gauge: bool,
) {
    for b in buckets {
        let (Some(&c), Ok(i)) = (column_of.get(&b.series_id), usize::try_from(b.bucket)) else {
            continue;
        };
        let (Some(Some(sum)), Some(slot)) = (b.sums.get(c as usize), timeline.samples.get_mut(i))
        else {
            continue;
        };
        let value = if gauge {
            sum / b
                .profiles
                .get(c as usize)
                .copied()
                .flatten()
                .unwrap_or(1)
                .max(1)
        } else {
            *sum
        };
        *slot = slot.saturating_add(value);
    }
}

fn fill_timeline(
    timeline: &mut Timeline,
    blocks: &[BlockMeta],
    column_of: &FxHashMap<i64, u32>,
    from_ms: i64,
    step: i64,
    gauge: bool,
) {
    let n = timeline.samples.len();
    if n == 0 {
        return;
    }
    // Gauges: average per series and step, then summed over series.
    let mut per: FxHashMap<(i64, usize), (i64, i64)> = FxHashMap::default();
    for b in blocks {
        let Some(&c) = column_of.get(&b.series_id) else {
            continue;
        };
        let bucket = ((b.start_ms - from_ms).max(0) / step) as usize;
        if bucket >= n {
            continue;
        }
        let Some(v) = total_of(&b.totals, c) else {
            continue;
        };
        if gauge {
            let e = per.entry((b.series_id, bucket)).or_default();
            e.0 = e.0.saturating_add(v);
            e.1 += b.profiles.max(1);
        } else {
            timeline.samples[bucket] = timeline.samples[bucket].saturating_add(v);
        }
    }
    for ((_, bucket), (sum, count)) in per {
        timeline.samples[bucket] = timeline.samples[bucket].saturating_add(sum / count.max(1));
    }
}

/// Sums (or, for gauges, averages per series then sums) the selected column per leaf.
async fn merge_blocks(
    inner: &Inner,
    blocks: &[BlockMeta],
    column_of: &FxHashMap<i64, u32>,
    gauge: bool,
) -> Result<FxHashMap<u32, i64>> {
    let series_of: FxHashMap<i64, i64> = blocks.iter().map(|b| (b.id, b.series_id)).collect();
    let mut sums: FxHashMap<u32, i64> = FxHashMap::default();
    let mut per_series: FxHashMap<i64, (FxHashMap<u32, i64>, i64)> = FxHashMap::default();
    if gauge {
        // Only profiles that carry the column count towards its average.
        for b in blocks {
            if column_of
                .get(&b.series_id)
                .is_some_and(|&c| total_of(&b.totals, c).is_some())
            {
                per_series.entry(b.series_id).or_default().1 += b.profiles.max(1);
            }
        }
    }
    let ids: Vec<i64> = blocks.iter().map(|b| b.id).collect();
    for chunk in ids.chunks(FETCH_CHUNK) {
        for (id, data) in inner.backend.blobs(chunk).await? {
            let block = Block::decode(&data).map_err(|e| StoreError::Corrupt {
                block: id,
                detail: e.to_string(),
            })?;
            let Some(series) = series_of.get(&id) else {
                continue;
            };
            let Some(&want) = column_of.get(series) else {
                continue;
            };
            let Some(col) = block.columns.iter().position(|&c| c == want) else {
                continue;
            };
            let target = if gauge {
                &mut per_series.entry(*series).or_default().0
            } else {
                &mut sums
            };
            for (&leaf, &v) in block.stacks.iter().zip(&block.values[col]) {
                let slot = target.entry(leaf).or_default();
                *slot = slot.saturating_add(v);
            }
        }
    }
    for (_, (values, profiles)) in per_series {
        for (leaf, v) in values {
            let slot = sums.entry(leaf).or_default();
            *slot = slot.saturating_add(v / profiles.max(1));
        }
    }
    Ok(sums)
}

/// Turns leaf sums into a profile, refreshing the dictionary once if a
/// leaf is unknown (written by another server, or just committed).
async fn to_profile(
    inner: &Inner,
    sums: FxHashMap<u32, i64>,
    sample_type: SampleType,
) -> Result<Profile> {
    let mut leaves: Vec<(u32, i64)> = sums.into_iter().filter(|(_, v)| *v != 0).collect();
    leaves.sort_unstable();
    for attempt in 0..2 {
        let state = inner.state.read().await;
        let mut profile = Profile::new(vec![sample_type.clone()]);
        let mut path = Vec::with_capacity(64);
        let mut frames = Vec::with_capacity(64);
        // Dictionary id -> profile id: each name is hashed once, not once per frame.
        let mut ids: FxHashMap<u32, firewatch_profile::FuncId> = FxHashMap::default();
        let mut complete = true;
        for &(leaf, v) in &leaves {
            if state.path(leaf, &mut path).is_none() {
                complete = false;
                break;
            }
            frames.clear();
            for &f in &path {
                let id = match ids.get(&f) {
                    Some(&id) => id,
                    None => {
                        let Some(info) = state.function(f) else {
                            complete = false;
                            break;
                        };
                        let id = profile.intern(info);
                        ids.insert(f, id);
                        id
                    }
                };
                frames.push(id);
            }
            if !complete {
                break;
            }
            profile.add_sample(&frames, &[v]);
        }
        if complete {
            return Ok(profile);
        }
        if attempt == 0 {
            // Leaves (or their functions) this server has not seen: written
            // by another server, possibly with ids below the watermarks
            // `refresh` reads from, so they are also fetched by id.
            let missing: Vec<i64> = leaves
                .iter()
                .filter(|&&(leaf, _)| {
                    state.path(leaf, &mut path).is_none()
                        || path.iter().any(|&f| state.function(f).is_none())
                })
                .map(|&(leaf, _)| i64::from(leaf))
                .collect();
            drop(state);
            let mut state = inner.state.write().await;
            state.refresh(inner.backend.as_ref()).await?;
            for chunk in missing.chunks(FETCH_CHUNK) {
                state.load(inner.backend.as_ref(), chunk).await?;
            }
        }
    }
    Err(StoreError::Corrupt {
        block: 0,
        detail: "a stored stack refers to a dictionary entry that does not exist".into(),
    })
}
