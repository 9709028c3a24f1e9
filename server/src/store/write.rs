//! Ingest: profiles in, one transaction, dictionary entries resolved to ids.

use firewatch_profile::{FuncId, Function, ObjectAddress, Profile, SampleType};
use firewatch_syntax::now_ms;
use rustc_hash::FxHashMap;

use super::backend::{BlockMeta, SERIES_EPOCH, SeriesRow, Tx, Window};
use super::blob::{Block, encode_totals};
use super::dict::{State, id32, parse_sample_types, sample_types_json};
use super::plan::{TIER_WIDTH_MS, window_start};
use super::{Inner, NewProfile, Result, StoreError};

/// A function held past the profile it came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OwnedFunction {
    name: String,
    file: String,
    line: u32,
    address: Option<(String, u64)>,
}

impl From<Function<'_>> for OwnedFunction {
    fn from(f: Function<'_>) -> OwnedFunction {
        OwnedFunction {
            name: f.name.to_owned(),
            file: f.file.to_owned(),
            line: f.line,
            address: f.address.map(|a| (a.build_id.to_owned(), a.address)),
        }
    }
}

impl OwnedFunction {
    fn function(&self) -> Function<'_> {
        Function {
            name: &self.name,
            file: &self.file,
            line: self.line,
            address: self.address.as_ref().map(|(b, a)| ObjectAddress {
                build_id: b,
                address: *a,
            }),
        }
    }
}

/// Dictionary entries and series created or changed by the running
/// transaction; they join the shared [`State`] only once it committed.
#[derive(Default)]
struct Overlay {
    tenants: FxHashMap<String, u32>,
    functions: FxHashMap<(u32, OwnedFunction), u32>,
    nodes: FxHashMap<(u32, u32), u32>,
    series: FxHashMap<(u32, String), u32>,
    /// Series rows as this transaction left them (created, or with
    /// sample types appended), read under the `series` epoch lock.
    series_rows: FxHashMap<u32, SeriesRow>,
    /// The `series` epoch this transaction bumped, once it needed to.
    revision: Option<i64>,
    /// Series per tenant as counted by the database in this transaction.
    series_counts: FxHashMap<u32, usize>,
    stacks: Vec<(Vec<u32>, u32)>,
    marked: Vec<(u32, i64, i64)>,
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

/// Attempts at a write transaction: a deadlock between servers inserting
/// the same new dictionary entries in different orders aborts one of
/// them, which then simply runs again; so does a writer that finds the
/// store's structure changed (retention on another server) and reloads.
const WRITE_ATTEMPTS: usize = 5;

/// One transaction; the caller holds the writer.
async fn commit_refs(inner: &Inner, profiles: &[&NewProfile]) -> Result<()> {
    let mut attempt = 0;
    let overlay = loop {
        attempt += 1;
        match try_commit(inner, profiles).await {
            Ok(Some(overlay)) => break overlay,
            Ok(None) if attempt < WRITE_ATTEMPTS => {
                // Retention deleted series or dictionary entries since this
                // server last looked: what it cached may be gone.
                inner
                    .state
                    .write()
                    .await
                    .sync(inner.backend.as_ref())
                    .await?;
            }
            Ok(None) => return Err(StoreError::Contended),
            Err(e) if attempt < WRITE_ATTEMPTS && e.is_transient() => {
                tracing::debug!(error = %e, attempt, "write transaction aborted; retrying");
            }
            Err(e) => return Err(e),
        }
    };
    let mut state = inner.state.write().await;
    for (name, id) in overlay.tenants {
        state.tenants.insert(name, id);
    }
    for ((tenant, f), id) in overlay.functions {
        state.add_function(id, tenant, &f.function());
    }
    for ((parent, function), id) in overlay.nodes {
        state.add_node(id, parent, function);
    }
    for row in overlay.series_rows.values() {
        // Committed already: a row that does not read back is a bug to
        // report, not a failed write (the next write reads it from the
        // database and says what is wrong with it).
        if let Err(e) = state.add_series(row) {
            tracing::error!(error = %e, "a series just written does not read back");
        }
    }
    for (stack, leaf) in overlay.stacks {
        state.remember_stack(&stack, leaf);
    }
    state.note_marked(&overlay.marked, now_ms());
    Ok(())
}

/// Writes and commits the profiles; `None` (nothing written) when the
/// in-memory state must be reloaded first.
async fn try_commit(inner: &Inner, profiles: &[&NewProfile]) -> Result<Option<Overlay>> {
    let state = inner.state.read().await;
    let mut tx = inner.backend.begin().await?;
    let result = async {
        // Read under the structure lock: retention cannot delete anything
        // this transaction is about to reference until it ends.
        let epochs = tx.epochs().await?;
        if state.stale_for_writes(&epochs) {
            return Ok(None);
        }
        let mut overlay = Overlay::default();
        for p in profiles {
            if p.profile.is_empty() || p.profile.sample_types().is_empty() {
                continue;
            }
            write_one(inner, &state, &mut overlay, tx.as_mut(), p).await?;
        }
        Ok(Some(overlay))
    }
    .await;
    match result {
        Ok(Some(overlay)) => {
            tx.commit().await?;
            Ok(Some(overlay))
        }
        other => {
            // Explicitly, so the structure lock is released now rather than
            // when the connection is next used.
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %e, "rollback failed");
            }
            other
        }
    }
}

/// Writes one profile in the transaction: its tenant, series and columns,
/// functions and stack nodes (creating what the dictionary lacks), then
/// the block, and marks its rollup window dirty.
async fn write_one(
    inner: &Inner,
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    p: &NewProfile,
) -> Result<()> {
    let tenant = tenant_id(state, overlay, tx, &p.tenant).await?;
    let (series, columns) = series_and_columns(inner, state, overlay, tx, tenant, p).await?;
    let functions = function_ids(state, overlay, tx, tenant, &p.profile).await?;
    let block = block_of(state, overlay, tx, &functions, &p.profile, columns.clone()).await?;
    let meta = block_meta(series, &columns, &p.profile);
    store_block(inner, state, overlay, tx, series, meta, &block).await
}

async fn tenant_id(
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    name: &str,
) -> Result<u32> {
    if let Some(&t) = state.tenants.get(name).or(overlay.tenants.get(name)) {
        return Ok(t);
    }
    let t = id32(tx.tenant(name).await?, "tenants")?;
    overlay.tenants.insert(name.to_owned(), t);
    Ok(t)
}

/// The series of a profile and the column of each of its sample types.
async fn series_and_columns(
    inner: &Inner,
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    tenant: u32,
    p: &NewProfile,
) -> Result<(u32, Vec<u32>)> {
    let labels_json = serde_json::to_string(&p.labels).unwrap_or_default();
    let wanted = p.profile.sample_types();
    let id = overlay
        .series
        .get(&(tenant, labels_json.clone()))
        .copied()
        .or_else(|| state.series_id(tenant, &labels_json));
    let types = match id {
        Some(id) => match overlay.series_rows.get(&id) {
            Some(row) => Some(parse_sample_types(&row.sample_types, row.id)?),
            None => state.series.get(&id).map(|s| s.sample_types.clone()),
        },
        None => None,
    };
    let known = id
        .zip(types)
        .and_then(|(id, types)| columns_of(wanted, &types).map(|c| (id, c)));
    // Columns are only ever appended, so a known series' known columns stay
    // right whatever other servers appended since; anything else is read
    // and changed under the `series` epoch lock.
    match known {
        Some(found) => Ok(found),
        None => resolve_series(inner, overlay, tx, tenant, &labels_json, p).await,
    }
}

/// The dictionary id of each of the profile's functions, by `FuncId`.
async fn function_ids(
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    tenant: u32,
    profile: &Profile,
) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = Vec::with_capacity(profile.function_count());
    for f in profile.functions() {
        let id = match state.function_id(tenant, &f) {
            Some(id) => id,
            None => {
                let k = (tenant, OwnedFunction::from(f));
                match overlay.functions.get(&k) {
                    Some(&id) => id,
                    None => {
                        let id = id32(tx.function(i64::from(tenant), &f).await?, "functions")?;
                        overlay.functions.insert(k, id);
                        id
                    }
                }
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// The profile as a block: each stack's leaf node (creating the nodes the
/// dictionary lacks), sorted, values summed per leaf.
async fn block_of(
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    functions: &[u32],
    profile: &Profile,
    columns: Vec<u32>,
) -> Result<Block> {
    let width = profile.sample_types().len();
    let mut rows: Vec<(u32, &[i64])> = Vec::with_capacity(profile.stack_count());
    let mut global: Vec<u32> = Vec::with_capacity(64);
    for (stack, values) in profile.samples() {
        global.clear();
        global.extend(stack.iter().map(|&f: &FuncId| functions[f as usize]));
        let leaf = match state.stack(&global) {
            Some(leaf) => leaf,
            None => leaf_node(state, overlay, tx, &global).await?,
        };
        rows.push((leaf, values));
    }
    rows.sort_unstable_by_key(|r| r.0);
    let mut block = Block {
        columns,
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
    Ok(block)
}

/// The leaf node of a stack the in-memory cache does not know, walking
/// (and creating) its nodes from the root.
async fn leaf_node(
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    stack: &[u32],
) -> Result<u32> {
    let mut node = 0u32;
    for &f in stack {
        node = match state
            .node(node, f)
            .or(overlay.nodes.get(&(node, f)).copied())
        {
            Some(n) => n,
            None => {
                let n = id32(tx.node(i64::from(node), i64::from(f)).await?, "stack_nodes")?;
                overlay.nodes.insert((node, f), n);
                n
            }
        };
    }
    overlay.stacks.push((stack.to_vec(), node));
    Ok(node)
}

/// How a profile's block is filed: its series, window and column totals.
fn block_meta(series: u32, columns: &[u32], profile: &Profile) -> BlockMeta {
    let totals: Vec<(u32, i64)> = columns
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, profile.total(i)))
        .collect();
    let start_ms = if profile.time_nanos > 0 {
        profile.time_nanos / 1_000_000
    } else {
        now_ms()
    };
    BlockMeta {
        series_id: i64::from(series),
        tier: 0,
        start_ms,
        end_ms: start_ms + (profile.duration_nanos / 1_000_000).max(1),
        id: 0,
        profiles: 1,
        totals: encode_totals(&totals),
    }
}

/// Inserts the block and marks its rollup window dirty.
async fn store_block(
    inner: &Inner,
    state: &State,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    series: u32,
    meta: BlockMeta,
    block: &Block,
) -> Result<()> {
    let start_ms = meta.start_ms;
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

/// The column of each wanted sample type among a series' types, if all are there.
fn columns_of(wanted: &[SampleType], types: &[SampleType]) -> Option<Vec<u32>> {
    wanted
        .iter()
        .map(|t| types.iter().position(|s| s == t).map(|c| c as u32))
        .collect()
}

/// Finds or creates the series of a profile and appends the sample types
/// it lacks, holding the `series` epoch lock so that servers changing
/// series do so one after the other and each sees the others' columns.
async fn resolve_series(
    inner: &Inner,
    overlay: &mut Overlay,
    tx: &mut dyn Tx,
    tenant: u32,
    labels_json: &str,
    p: &NewProfile,
) -> Result<(u32, Vec<u32>)> {
    // A series another server created with every column this profile
    // needs is used as it is: columns only ever get appended.
    if let Some(row) = tx.series_row(i64::from(tenant), labels_json).await?
        && let Some(columns) = columns_of(
            p.profile.sample_types(),
            &parse_sample_types(&row.sample_types, row.id)?,
        )
    {
        let id = id32(row.id, "series")?;
        overlay.series.insert((tenant, labels_json.to_owned()), id);
        overlay.series_rows.insert(id, row);
        return Ok((id, columns));
    }
    let revision = match overlay.revision {
        Some(r) => r,
        None => {
            let r = tx.bump_epoch(SERIES_EPOCH).await?;
            overlay.revision = Some(r);
            r
        }
    };
    let mut row = match tx.series_row(i64::from(tenant), labels_json).await? {
        Some(row) => row,
        None => {
            let count = match overlay.series_counts.get(&tenant) {
                Some(&n) => n,
                None => usize::try_from(tx.series_count(i64::from(tenant)).await?).unwrap_or(0),
            };
            if count >= inner.options.max_series_per_tenant {
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
                .insert_series(i64::from(tenant), labels_json, &types, &period, revision)
                .await?;
            overlay.series_counts.insert(tenant, count + 1);
            SeriesRow {
                id,
                tenant_id: i64::from(tenant),
                labels: labels_json.to_owned(),
                sample_types: types,
                period_type: period,
                revision,
            }
        }
    };
    let id = id32(row.id, "series")?;
    let mut types = parse_sample_types(&row.sample_types, row.id)?;
    let before = types.len();
    for t in p.profile.sample_types() {
        if !types.contains(t) {
            types.push(t.clone());
        }
    }
    if types.len() != before {
        row.sample_types = sample_types_json(&types);
        row.revision = revision;
        tx.set_sample_types(row.id, &row.sample_types, revision)
            .await?;
    }
    let columns = columns_of(p.profile.sample_types(), &types).unwrap_or_default();
    overlay.series.insert((tenant, labels_json.to_owned()), id);
    overlay.series_rows.insert(id, row);
    Ok((id, columns))
}

/// How long before a window becomes ready to build its dirty mark is no
/// longer trusted to be in place (clock skew between servers, slow commits).
const OPEN_MARGIN_MS: i64 = 120_000;
