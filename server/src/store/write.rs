//! Ingest: profiles in, one transaction, dictionary entries resolved to ids.

use firewatch_profile::{FuncId, SampleType};
use rustc_hash::FxHashMap;

use super::backend::{BlockMeta, SeriesRow, Tx, Window};
use super::blob::{Block, encode_totals};
use super::dict::{State, sample_types_json};
use super::plan::{TIER_WIDTH_MS, window_start};
use super::{Inner, NewProfile, Result, StoreError};

/// Dictionary entries and series created by the running transaction; they
/// join the shared [`State`] only once it committed.
#[derive(Default)]
struct Overlay {
    tenants: FxHashMap<String, u32>,
    functions: FxHashMap<(u32, String, String, u32), u32>,
    nodes: FxHashMap<(u32, u32), u32>,
    series: FxHashMap<(u32, String), u32>,
    new_series: Vec<SeriesRow>,
    sample_types: FxHashMap<u32, Vec<SampleType>>,
    new_series_per_tenant: FxHashMap<u32, usize>,
    stacks: Vec<(Vec<u32>, u32)>,
    marked: Vec<(u32, i64, i64)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A caller's profiles waiting for the next group commit.
pub(super) struct Pending {
    profiles: Vec<NewProfile>,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Stores one caller's profiles. Concurrent callers share transactions
/// (group commit): the first to get the writer commits everything queued
/// so far in one transaction; if that fails, each caller's profiles are
/// retried in a transaction of their own, so one bad request never fails
/// another. The commit runs in its own task, so a caller that goes away
/// cannot interrupt a transaction holding other callers' profiles.
pub(super) async fn ingest(inner: &std::sync::Arc<Inner>, profiles: Vec<NewProfile>) -> Result<()> {
    let (done, result) = tokio::sync::oneshot::channel();
    inner
        .pending
        .lock()
        .map_err(|_| StoreError::Closed)?
        .push(Pending { profiles, done });
    let inner = inner.clone();
    tokio::spawn(async move {
        let _writer = inner.write_lock.lock().await;
        let batch = match inner.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        if batch.len() == 1 {
            for p in batch {
                let _ = p.done.send(commit(&inner, &p.profiles).await);
            }
            return;
        }
        let all: Vec<&NewProfile> = batch.iter().flat_map(|p| &p.profiles).collect();
        if commit_refs(&inner, &all).await.is_ok() {
            for p in batch {
                let _ = p.done.send(Ok(()));
            }
            return;
        }
        for p in batch {
            let _ = p.done.send(commit(&inner, &p.profiles).await);
        }
    });
    result.await.unwrap_or(Err(StoreError::Closed))
}

async fn commit(inner: &Inner, profiles: &[NewProfile]) -> Result<()> {
    commit_refs(inner, &profiles.iter().collect::<Vec<_>>()).await
}

/// One transaction; the caller holds the writer.
async fn commit_refs(inner: &Inner, profiles: &[&NewProfile]) -> Result<()> {
    let mut overlay = Overlay::default();
    {
        let state = inner.state.read().await;
        let mut tx = inner.backend.begin().await?;
        for p in profiles {
            if p.profile.is_empty() || p.profile.sample_types().is_empty() {
                continue;
            }
            write_one(inner, &state, &mut overlay, tx.as_mut(), p).await?;
        }
        tx.commit().await?;
    }
    let mut state = inner.state.write().await;
    for (name, id) in overlay.tenants {
        state.tenants.insert(name, id);
    }
    for ((tenant, name, file, line), id) in overlay.functions {
        state.add_function(id, tenant, &name, &file, line);
    }
    for ((parent, function), id) in overlay.nodes {
        state.add_node(id, parent, function);
    }
    for row in &overlay.new_series {
        state.add_series(row);
    }
    for (id, types) in overlay.sample_types {
        if let Some(s) = state.series.get_mut(&id) {
            s.sample_types = types;
        }
    }
    for (stack, leaf) in overlay.stacks {
        state.remember_stack(&stack, leaf);
    }
    state.note_marked(&overlay.marked, now_ms());
    Ok(())
}

async fn write_one(
    inner: &Inner,
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    p: &NewProfile,
) -> Result<()> {
    let tenant = match state
        .tenants
        .get(&p.tenant)
        .or(overlay.tenants.get(&p.tenant))
    {
        Some(&t) => t,
        None => {
            let t = tx.tenant(&p.tenant).await? as u32;
            overlay.tenants.insert(p.tenant.clone(), t);
            t
        }
    };

    // The series and the column of each of the profile's sample types.
    let labels_json = serde_json::to_string(&p.labels).unwrap_or_default();
    let key = (tenant, labels_json.clone());
    let series = match state
        .series_id(tenant, &labels_json)
        .or(overlay.series.get(&key).copied())
    {
        Some(id) => id,
        None => {
            let existing = state.series_count(tenant)
                + overlay
                    .new_series_per_tenant
                    .get(&tenant)
                    .copied()
                    .unwrap_or(0);
            if existing >= inner.options.max_series_per_tenant {
                return Err(StoreError::LimitExceeded {
                    what: "series per tenant",
                    limit: inner.options.max_series_per_tenant as u64,
                });
            }
            let types = sample_types_json(p.profile.sample_types());
            let period = p
                .profile
                .period_type
                .as_ref()
                .map(|t| format!("{}/{}", t.kind, t.unit))
                .unwrap_or_default();
            let id = tx
                .series(i64::from(tenant), &labels_json, &types, &period)
                .await? as u32;
            overlay.series.insert(key, id);
            *overlay.new_series_per_tenant.entry(tenant).or_default() += 1;
            overlay.new_series.push(SeriesRow {
                id: i64::from(id),
                tenant_id: i64::from(tenant),
                labels: labels_json.clone(),
                sample_types: types,
                period_type: period,
            });
            overlay
                .sample_types
                .insert(id, p.profile.sample_types().to_vec());
            id
        }
    };
    let mut series_types = match overlay.sample_types.get(&series) {
        Some(t) => t.clone(),
        None => state
            .series
            .get(&series)
            .map(|s| s.sample_types.clone())
            .unwrap_or_default(),
    };
    let before = series_types.len();
    let columns: Vec<u32> = p
        .profile
        .sample_types()
        .iter()
        .map(|t| {
            series_types.iter().position(|s| s == t).unwrap_or_else(|| {
                series_types.push(t.clone());
                series_types.len() - 1
            }) as u32
        })
        .collect();
    if series_types.len() != before {
        tx.set_sample_types(i64::from(series), &sample_types_json(&series_types))
            .await?;
        overlay.sample_types.insert(series, series_types);
    }

    // Functions of this profile -> dictionary ids.
    let mut remap: Vec<u32> = Vec::with_capacity(p.profile.function_count());
    for f in p.profile.functions() {
        let id = match state.function_id(tenant, f.name, f.file, f.line) {
            Some(id) => id,
            None => {
                let k = (tenant, f.name.to_owned(), f.file.to_owned(), f.line);
                match overlay.functions.get(&k) {
                    Some(&id) => id,
                    None => {
                        let id = tx
                            .function(i64::from(tenant), f.name, f.file, i64::from(f.line))
                            .await? as u32;
                        overlay.functions.insert(k, id);
                        id
                    }
                }
            }
        };
        remap.push(id);
    }

    // Stacks -> leaf nodes.
    let width = p.profile.sample_types().len();
    let mut rows: Vec<(u32, &[i64])> = Vec::with_capacity(p.profile.stack_count());
    let mut global: Vec<u32> = Vec::with_capacity(64);
    for (stack, values) in p.profile.samples() {
        global.clear();
        global.extend(stack.iter().map(|&f: &FuncId| remap[f as usize]));
        let leaf = match state.stack(&global) {
            Some(leaf) => leaf,
            None => {
                let mut node = 0u32;
                for &f in &global {
                    node = match state
                        .node(node, f)
                        .or(overlay.nodes.get(&(node, f)).copied())
                    {
                        Some(n) => n,
                        None => {
                            let n = tx.node(i64::from(node), i64::from(f)).await? as u32;
                            overlay.nodes.insert((node, f), n);
                            n
                        }
                    };
                }
                overlay.stacks.push((global.clone(), node));
                node
            }
        };
        rows.push((leaf, values));
    }
    rows.sort_unstable_by_key(|r| r.0);
    let mut block = Block {
        columns: columns.clone(),
        stacks: Vec::with_capacity(rows.len()),
        values: vec![Vec::with_capacity(rows.len()); width],
    };
    for (leaf, values) in rows {
        if block.stacks.last() == Some(&leaf) {
            for (c, v) in values.iter().enumerate() {
                if let Some(slot) = block.values[c].last_mut() {
                    *slot = slot.saturating_add(*v);
                }
            }
            continue;
        }
        block.stacks.push(leaf);
        for (c, v) in values.iter().enumerate() {
            block.values[c].push(*v);
        }
    }
    let totals: Vec<(u32, i64)> = columns
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, p.profile.total(i)))
        .collect();

    let start_ms = if p.profile.time_nanos > 0 {
        p.profile.time_nanos / 1_000_000
    } else {
        now_ms()
    };
    let end_ms = start_ms + (p.profile.duration_nanos / 1_000_000).max(1);
    let meta = BlockMeta {
        series_id: i64::from(series),
        tier: 0,
        start_ms,
        end_ms,
        id: 0,
        profiles: 1,
        totals: encode_totals(&totals),
    };
    tx.insert_block(&meta, &block.encode()).await?;
    // A window marked dirty stays marked until it is ready to build (no
    // compactor, here or on another server, touches it before), so while it
    // is still open, marking it again would only cost a statement.
    let window = window_start(1, start_ms);
    let ready_at = window + TIER_WIDTH_MS[1] + inner.options.rollup_delay_ms;
    let open = now_ms() + OPEN_MARGIN_MS < ready_at;
    if !(open && state.is_marked_open(series, window)) {
        tx.mark_dirty(Window {
            series_id: i64::from(series),
            tier: 1,
            start_ms: window,
            version: 0,
        })
        .await?;
        if open {
            overlay.marked.push((series, window, ready_at));
        }
    }
    Ok(())
}

/// How long before a window becomes ready to build its dirty mark is no
/// longer trusted to be in place (clock skew between servers, slow commits).
const OPEN_MARGIN_MS: i64 = 120_000;
