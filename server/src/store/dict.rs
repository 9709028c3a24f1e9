//! The in-memory mirror of the dictionary (functions, stack trie) and the
//! series index. The database is the source of truth: entries enter this
//! mirror only after their transaction committed, and a reader that meets
//! an unknown id refreshes from the database (another server may have
//! written it).
//!
//! With several servers on one database, [`State::sync`] follows the
//! `epochs` counters: series created or changed elsewhere are read by
//! revision; after retention elsewhere deleted series or dictionary
//! entries, the affected part is reloaded whole, since entries cached here
//! may be gone.

use std::hash::{BuildHasher, Hash};

use firewatch_profile::{Function, ObjectAddress, SampleType};
use hashbrown::HashTable;
use rustc_hash::FxHashMap;

use super::backend::{Backend, Epochs, SeriesRow};
use super::{Labels, Result, StoreError};

const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0xd1c7);

fn hash_of<T: Hash + ?Sized>(v: &T) -> u64 {
    HASHER.hash_one(v)
}

/// A function as stored in memory: spans into one text arena, so that
/// interning a profile's functions compares against contiguous memory
/// rather than chasing a heap allocation per name.
#[derive(Clone, Copy, Debug)]
struct FunctionEntry {
    tenant: u32,
    name: (u32, u32),
    file: (u32, u32),
    line: u32,
    /// Span of the build id ("" for named functions) and the address.
    build_id: (u32, u32),
    address: u64,
    hash: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct SeriesInfo {
    pub tenant: u32,
    pub labels: Labels,
    pub labels_json: String,
    pub sample_types: Vec<SampleType>,
    pub period_type: Option<SampleType>,
}

#[derive(Default)]
pub(crate) struct State {
    pub tenants: FxHashMap<String, u32>,
    text: String,
    functions: Vec<Option<FunctionEntry>>,
    function_index: HashTable<u32>,
    // nodes[id] = (parent, function); (0, 0) marks an unused id. Node 0 is the root.
    nodes: Vec<(u32, u32)>,
    node_index: FxHashMap<(u32, u32), u32>,
    // Hash of a whole stack (function ids, root first) -> leaf node, checked on use.
    stack_cache: FxHashMap<u64, u32>,
    pub series: FxHashMap<u32, SeriesInfo>,
    series_index: FxHashMap<(u32, String), u32>,
    max_function: i64,
    max_node: i64,
    /// Series rows with a revision up to this one are loaded.
    series_revision: i64,
    /// The `series_deleted` and `dictionary` epochs the mirror reflects.
    series_deleted_epoch: i64,
    dictionary_epoch: i64,
    // (series, 10-minute window) -> when it becomes ready to build: windows
    // whose dirty mark this process wrote and which are still open.
    marked_open: FxHashMap<(u32, i64), i64>,
}

fn function_key_hash(tenant: u32, f: &Function<'_>) -> u64 {
    hash_of(&(tenant, f))
}

/// Parses series `series`' stored sample types, `[["cpu","nanoseconds"],
/// ...]`: anything else is corruption, never an empty list (which would
/// make the next write renumber the stored columns).
pub(crate) fn parse_sample_types(json: &str, series: i64) -> Result<Vec<SampleType>> {
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json).map_err(|e| StoreError::CorruptRow {
            table: "series",
            id: series,
            detail: format!("sample_types {json:?} is not a list of [kind, unit] pairs: {e}"),
        })?;
    Ok(pairs
        .into_iter()
        .map(|(k, u)| SampleType::new(k, u))
        .collect())
}

/// A database id as the dictionary addresses it (32 bits); an id outside
/// that is corruption.
pub(crate) fn id32(id: i64, table: &'static str) -> Result<u32> {
    u32::try_from(id).map_err(|_| StoreError::CorruptRow {
        table,
        id,
        detail: "the id is outside 0..2^32".into(),
    })
}

/// The stored form of a series' sample types.
pub(crate) fn sample_types_json(types: &[SampleType]) -> String {
    let pairs: Vec<(&str, &str)> = types
        .iter()
        .map(|t| (t.kind.as_str(), t.unit.as_str()))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_period(text: &str) -> Option<SampleType> {
    text.split_once('/').map(|(k, u)| SampleType::new(k, u))
}

impl State {
    /// An empty mirror that [`State::sync`] fills completely.
    pub fn new() -> State {
        State {
            series_revision: -1,
            ..State::default()
        }
    }

    /// Brings the mirror up to date with the database: what other servers
    /// added, and a reload of what retention may have deleted.
    pub async fn sync(&mut self, backend: &dyn Backend) -> Result<()> {
        // Read before the rows, so a change made meanwhile shows as a
        // newer epoch next time rather than being missed.
        let epochs = backend.epochs().await?;
        if epochs.dictionary != self.dictionary_epoch {
            self.clear_dictionary();
        }
        if epochs.series_deleted != self.series_deleted_epoch {
            self.series.clear();
            self.series_index.clear();
            self.series_revision = -1;
        }
        self.refresh(backend).await?;
        self.series_revision = self.series_revision.max(epochs.series);
        self.dictionary_epoch = epochs.dictionary;
        self.series_deleted_epoch = epochs.series_deleted;
        Ok(())
    }

    /// Whether the database changed since the last [`State::sync`] in a
    /// way the mirror does not reflect.
    pub fn needs_sync(&self, epochs: &Epochs) -> bool {
        epochs.series > self.series_revision || self.stale_for_writes(epochs)
    }

    /// Whether something this mirror holds may have been deleted: a writer
    /// must not reference cached ids then.
    pub fn stale_for_writes(&self, epochs: &Epochs) -> bool {
        epochs.dictionary != self.dictionary_epoch
            || epochs.series_deleted != self.series_deleted_epoch
    }

    /// Records the `dictionary` epoch a retention pass of this server set,
    /// having applied its deletions here; `previous` is the value it
    /// replaced, so a sweep by another server not yet seen still shows.
    pub fn note_dictionary_epoch(&mut self, previous: i64, now: i64) {
        if self.dictionary_epoch == previous {
            self.dictionary_epoch = now;
        }
    }

    /// Likewise for the `series_deleted` epoch.
    pub fn note_series_deleted_epoch(&mut self, previous: i64, now: i64) {
        if self.series_deleted_epoch == previous {
            self.series_deleted_epoch = now;
        }
    }

    fn clear_dictionary(&mut self) {
        self.text.clear();
        self.functions.clear();
        self.function_index.clear();
        self.nodes.clear();
        self.node_index.clear();
        self.stack_cache.clear();
        self.max_function = 0;
        self.max_node = 0;
    }

    /// Loads what the database has beyond what is already here: new
    /// tenants, functions and nodes by id, series by revision. (Ids of
    /// transactions that commit out of order may be skipped by the id
    /// watermarks; readers fetch such entries by id, see [`State::load`].)
    pub async fn refresh(&mut self, backend: &dyn Backend) -> Result<()> {
        for (id, name) in backend.tenants().await? {
            self.tenants.insert(name, id32(id, "tenants")?);
        }
        for f in backend.functions(self.max_function).await? {
            let (id, tenant) = (id32(f.id, "functions")?, id32(f.tenant_id, "tenants")?);
            self.add_function(id, tenant, &f.function());
        }
        for (id, parent, function) in backend.nodes(self.max_node).await? {
            self.add_stored_node(id, parent, function)?;
        }
        for s in backend.series_since(self.series_revision).await? {
            self.series_revision = self.series_revision.max(s.revision);
            self.add_series(&s)?;
        }
        Ok(())
    }

    /// Loads these stack nodes with their ancestors and functions, by id:
    /// what a reader met that the watermarks of [`State::refresh`] missed.
    pub async fn load(&mut self, backend: &dyn Backend, leaves: &[i64]) -> Result<()> {
        let nodes = backend.nodes_with_ancestors(leaves).await?;
        let mut functions: Vec<i64> = Vec::new();
        for &(id, parent, function) in &nodes {
            self.add_stored_node(id, parent, function)?;
            if self.function(id32(function, "functions")?).is_none() {
                functions.push(function);
            }
        }
        functions.sort_unstable();
        functions.dedup();
        for f in backend.functions_by_id(&functions).await? {
            let (id, tenant) = (id32(f.id, "functions")?, id32(f.tenant_id, "tenants")?);
            self.add_function(id, tenant, &f.function());
        }
        Ok(())
    }

    pub fn add_function(&mut self, id: u32, tenant: u32, f: &Function<'_>) {
        let slot = id as usize;
        if self.functions.len() <= slot {
            self.functions.resize(slot + 1, None);
        }
        if self.functions[slot].is_some() {
            return;
        }
        let hash = function_key_hash(tenant, f);
        let mut push = |s: &str| {
            let start = self.text.len() as u32;
            self.text.push_str(s);
            (start, self.text.len() as u32)
        };
        let entry = FunctionEntry {
            tenant,
            name: push(f.name),
            file: push(f.file),
            line: f.line,
            build_id: push(f.address.map_or("", |a| a.build_id)),
            address: f.address.map_or(0, |a| a.address),
            hash,
        };
        self.functions[slot] = Some(entry);
        let functions = &self.functions;
        self.function_index.insert_unique(hash, id, |&i| {
            functions[i as usize].map(|f| f.hash).unwrap_or(0)
        });
        self.max_function = self.max_function.max(i64::from(id));
    }

    fn span(&self, (start, end): (u32, u32)) -> &str {
        &self.text[start as usize..end as usize]
    }

    pub fn function_id(&self, tenant: u32, f: &Function<'_>) -> Option<u32> {
        let hash = function_key_hash(tenant, f);
        self.function_index
            .find(hash, |&i| {
                self.functions[i as usize]
                    .is_some_and(|e| e.hash == hash && e.tenant == tenant && self.entry(&e) == *f)
            })
            .copied()
    }

    pub fn function(&self, id: u32) -> Option<Function<'_>> {
        let e = self.functions.get(id as usize).copied().flatten()?;
        Some(self.entry(&e))
    }

    fn entry(&self, e: &FunctionEntry) -> Function<'_> {
        let build_id = self.span(e.build_id);
        Function {
            name: self.span(e.name),
            file: self.span(e.file),
            line: e.line,
            address: (!build_id.is_empty()).then_some(ObjectAddress {
                build_id,
                address: e.address,
            }),
        }
    }

    pub fn add_node(&mut self, id: u32, parent: u32, function: u32) {
        let slot = id as usize;
        if self.nodes.len() <= slot {
            self.nodes.resize(slot + 1, (0, 0));
        }
        self.nodes[slot] = (parent, function);
        self.node_index.insert((parent, function), id);
        self.max_node = self.max_node.max(i64::from(id));
    }

    pub fn node(&self, parent: u32, function: u32) -> Option<u32> {
        self.node_index.get(&(parent, function)).copied()
    }

    /// (parent, function) of a node, if known.
    pub fn node_info(&self, id: u32) -> Option<(u32, u32)> {
        self.nodes
            .get(id as usize)
            .copied()
            .filter(|&(_, f)| f != 0)
    }

    /// The leaf node of a stack of function ids (root first), if every node is known.
    pub fn stack(&self, functions: &[u32]) -> Option<u32> {
        let hash = hash_of(functions);
        if let Some(&leaf) = self.stack_cache.get(&hash)
            && self.path_is(leaf, functions)
        {
            return Some(leaf);
        }
        let mut node = 0u32;
        for &f in functions {
            node = self.node(node, f)?;
        }
        Some(node)
    }

    pub fn remember_stack(&mut self, functions: &[u32], leaf: u32) {
        self.stack_cache.insert(hash_of(functions), leaf);
    }

    fn path_is(&self, mut node: u32, functions: &[u32]) -> bool {
        for &f in functions.iter().rev() {
            match self.node_info(node) {
                Some((parent, func)) if func == f => node = parent,
                _ => return false,
            }
        }
        node == 0
    }

    /// Function ids from the root to `leaf`, or `None` if a node is unknown.
    pub fn path(&self, mut leaf: u32, out: &mut Vec<u32>) -> Option<()> {
        out.clear();
        let mut guard = 0;
        while leaf != 0 {
            let (parent, f) = self.node_info(leaf)?;
            out.push(f);
            leaf = parent;
            guard += 1;
            if guard > 65_536 {
                return None;
            }
        }
        out.reverse();
        Some(())
    }

    /// Whether this process marked the window dirty and it is still open.
    pub fn is_marked_open(&self, series: u32, window: i64) -> bool {
        self.marked_open.contains_key(&(series, window))
    }

    /// Records windows just marked dirty, and forgets those now ready.
    pub fn note_marked(&mut self, marked: &[(u32, i64, i64)], now_ms: i64) {
        for &(series, window, ready_at) in marked {
            self.marked_open.insert((series, window), ready_at);
        }
        if self.marked_open.len() > 4096 || !marked.is_empty() {
            self.marked_open.retain(|_, ready_at| *ready_at > now_ms);
        }
    }

    /// A stack node row as the dictionary keeps it.
    fn add_stored_node(&mut self, id: i64, parent: i64, function: i64) -> Result<()> {
        let parent = u32::try_from(parent).map_err(|_| StoreError::CorruptRow {
            table: "stack_nodes",
            id,
            detail: format!("parent {parent} is outside 0..2^32"),
        })?;
        self.add_node(
            id32(id, "stack_nodes")?,
            parent,
            id32(function, "functions")?,
        );
        Ok(())
    }

    /// Adds a series, or replaces what was known of it.
    pub fn add_series(&mut self, row: &SeriesRow) -> Result<()> {
        let labels: Labels =
            serde_json::from_str(&row.labels).map_err(|e| StoreError::CorruptRow {
                table: "series",
                id: row.id,
                detail: format!(
                    "labels {:?} are not a JSON object of strings: {e}",
                    row.labels
                ),
            })?;
        let id = id32(row.id, "series")?;
        let tenant = id32(row.tenant_id, "tenants")?;
        let sample_types = parse_sample_types(&row.sample_types, row.id)?;
        self.series_index.insert((tenant, row.labels.clone()), id);
        self.series.insert(
            id,
            SeriesInfo {
                tenant,
                labels,
                labels_json: row.labels.clone(),
                sample_types,
                period_type: parse_period(&row.period_type),
            },
        );
        Ok(())
    }

    pub fn series_id(&self, tenant: u32, labels_json: &str) -> Option<u32> {
        self.series_index
            .get(&(tenant, labels_json.to_owned()))
            .copied()
    }

    pub fn remove_series(&mut self, id: u32) {
        if let Some(s) = self.series.remove(&id) {
            self.series_index.remove(&(s.tenant, s.labels_json));
        }
    }

    /// Forgets dictionary entries not kept by a retention pass.
    pub fn retain_dictionary(&mut self, nodes: &[i64], functions: &[i64]) {
        // Ids the dictionary cannot address were never in it.
        let keep_nodes: rustc_hash::FxHashSet<u32> = nodes
            .iter()
            .filter_map(|&n| u32::try_from(n).ok())
            .collect();
        let keep_functions: rustc_hash::FxHashSet<u32> = functions
            .iter()
            .filter_map(|&f| u32::try_from(f).ok())
            .collect();
        for (id, slot) in self.nodes.iter_mut().enumerate() {
            if slot.1 != 0 && !keep_nodes.contains(&(id as u32)) {
                self.node_index.remove(slot);
                *slot = (0, 0);
            }
        }
        // Rebuild the arena without the dropped names.
        let old = std::mem::take(&mut self.functions);
        let old_text = std::mem::take(&mut self.text);
        self.function_index.clear();
        self.max_function = 0;
        for (id, entry) in old.into_iter().enumerate() {
            if let Some(f) = entry
                && keep_functions.contains(&(id as u32))
            {
                let text = |(a, b): (u32, u32)| &old_text[a as usize..b as usize];
                let build_id = text(f.build_id);
                let function = Function {
                    name: text(f.name),
                    file: text(f.file),
                    line: f.line,
                    address: (!build_id.is_empty()).then_some(ObjectAddress {
                        build_id,
                        address: f.address,
                    }),
                };
                self.add_function(id as u32, f.tenant, &function);
            }
        }
        self.stack_cache.clear();
    }
}
