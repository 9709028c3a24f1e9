//! Call trees (the shape of a flamegraph), truncation with an explicit
//! "other" node, and the flamebearer JSON the UI draws.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::model::{KERNEL_FILE, Profile};

/// Index of a node in its [`FlameTree`]; the root is 0.
pub type NodeId = u32;

/// Name of the node that stands for children dropped by [`FlameTree::truncate`].
pub const OTHER: &str = "other";

/// Name of the root node.
pub const ROOT: &str = "total";

/// A call tree with one or more value columns (one for a profile, two for a
/// diff: before and after). Children are ordered by name, so equal profiles
/// give equal trees.
#[derive(Clone, Debug)]
pub struct FlameTree {
    columns: usize,
    names: Vec<String>,
    // Per name: whether a kernel function bears it.
    kernel: Vec<bool>,
    nodes: Vec<Node>,
    // `columns` values per node, flat.
    totals: Vec<i64>,
    selfs: Vec<i64>,
}

#[derive(Clone, Debug)]
struct Node {
    name: u32,
    children: Vec<NodeId>,
    // For an "other" node: how many children of its parent it stands for.
    folded: u32,
}

impl FlameTree {
    /// The call tree of one sample type of a profile.
    pub fn from_profile(profile: &Profile, type_index: usize) -> FlameTree {
        let mut builder = Builder::new(1);
        builder.add(profile, type_index, 0);
        builder.finish()
    }

    /// A two-column tree: column 0 from `before`, column 1 from `after`.
    pub fn diff(
        before: &Profile,
        before_type: usize,
        after: &Profile,
        after_type: usize,
    ) -> FlameTree {
        let mut builder = Builder::new(2);
        builder.add(before, before_type, 0);
        builder.add(after, after_type, 1);
        builder.finish()
    }

    /// Number of value columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the tree is only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// A node's name.
    pub fn name(&self, node: NodeId) -> &str {
        &self.names[self.nodes[node as usize].name as usize]
    }

    /// A node's children, ordered by name.
    pub fn children(&self, node: NodeId) -> &[NodeId] {
        &self.nodes[node as usize].children
    }

    /// A node's total (itself and everything below) in one column.
    pub fn total(&self, node: NodeId, column: usize) -> i64 {
        self.totals[node as usize * self.columns + column]
    }

    /// A node's self value (samples ending at it) in one column.
    pub fn self_value(&self, node: NodeId, column: usize) -> i64 {
        self.selfs[node as usize * self.columns + column]
    }

    /// Keeps at most `max_nodes` nodes (root and "other" nodes included;
    /// never fewer than 2, the root and one "other"): the largest by total first (for two columns, by
    /// the larger share of its column's grand total). The children a node
    /// loses are summed into one "other" child, so every total stays exact.
    pub fn truncate(&self, max_nodes: usize) -> FlameTree {
        let max_nodes = max_nodes.max(2);
        if self.nodes.len() <= max_nodes {
            return self.clone();
        }
        let grand: Vec<f64> = (0..self.columns)
            .map(|c| self.total(0, c).max(1) as f64)
            .collect();
        let score = |n: NodeId| -> f64 {
            (0..self.columns)
                .map(|c| self.total(n, c).unsigned_abs() as f64 / grand[c])
                .fold(0.0, f64::max)
        };
        // Best-first expansion from the root, counting the "other" nodes it will need.
        let mut kept = vec![false; self.nodes.len()];
        let mut missing = vec![0u32; self.nodes.len()];
        kept[0] = true;
        missing[0] = self.nodes[0].children.len() as u32;
        let mut others = usize::from(missing[0] > 0);
        let mut count = 1usize;
        let mut heap = std::collections::BinaryHeap::new();
        let push = |heap: &mut std::collections::BinaryHeap<(
            OrdF64,
            std::cmp::Reverse<NodeId>,
            NodeId,
        )>,
                    parent: NodeId| {
            for &c in &self.nodes[parent as usize].children {
                heap.push((OrdF64(score(c)), std::cmp::Reverse(c), parent));
            }
        };
        push(&mut heap, 0);
        while let Some((_, std::cmp::Reverse(node), parent)) = heap.pop() {
            let children = self.nodes[node as usize].children.len() as u32;
            let parent_done = missing[parent as usize] == 1;
            let next_others = others - usize::from(parent_done) + usize::from(children > 0);
            if count + 1 + next_others > max_nodes {
                break;
            }
            kept[node as usize] = true;
            missing[parent as usize] -= 1;
            missing[node as usize] = children;
            others = next_others;
            count += 1;
            push(&mut heap, node);
        }
        self.rebuild(&kept)
    }

    fn rebuild(&self, kept: &[bool]) -> FlameTree {
        let mut out = Builder::new(self.columns);
        let mut stack = vec![(0 as NodeId, 0 as NodeId)];
        let other_name = out.name_id(OTHER);
        while let Some((src, dst)) = stack.pop() {
            for c in 0..self.columns {
                out.set(dst, c, self.total(src, c), self.self_value(src, c));
            }
            let mut dropped = vec![0i64; self.columns];
            let mut folded = 0u32;
            for &child in &self.nodes[src as usize].children {
                if kept[child as usize] {
                    let name = out.name_id(self.name(child));
                    out.kernel[name as usize] |=
                        self.kernel[self.nodes[child as usize].name as usize];
                    let d = out.child(dst, name);
                    stack.push((child, d));
                } else {
                    folded += 1;
                    for (c, slot) in dropped.iter_mut().enumerate() {
                        *slot = slot.saturating_add(self.total(child, c));
                    }
                }
            }
            if folded > 0 {
                let o = out.child(dst, other_name);
                out.nodes[o as usize].folded += folded;
                for (c, &v) in dropped.iter().enumerate() {
                    let (t, s) = (out.get_total(o, c), out.get_self(o, c));
                    out.set(o, c, t.saturating_add(v), s.saturating_add(v));
                }
            }
        }
        out.finish()
    }

    /// The tree as a profile: one stack per node with a self value (root
    /// first, the root itself left out), one column per tree column.
    pub fn to_profile(&self, sample_types: Vec<crate::SampleType>) -> Profile {
        let mut out = Profile::new(sample_types);
        let mut path: Vec<u32> = Vec::new();
        let mut stack: Vec<(NodeId, usize)> = vec![(0, 0)];
        let mut values = vec![0i64; self.columns];
        while let Some((node, depth)) = stack.pop() {
            path.truncate(depth);
            if node != 0 {
                let raw = self.nodes[node as usize].name as usize;
                let file = if self.kernel[raw] { KERNEL_FILE } else { "" };
                path.push(out.intern_function(&self.names[raw], file, 0));
            }
            for (c, v) in values.iter_mut().enumerate() {
                *v = self.self_value(node, c);
            }
            if values.iter().any(|v| *v != 0) && !path.is_empty() {
                out.add_sample(&path, &values);
            }
            let next = path.len();
            for &child in self.children(node).iter().rev() {
                stack.push((child, next));
            }
        }
        out
    }

    /// Nodes in depth-first order (children by name) with their depth.
    pub fn walk(&self) -> Vec<(NodeId, usize)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![(0 as NodeId, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            out.push((node, depth));
            for &child in self.children(node).iter().rev() {
                stack.push((child, depth + 1));
            }
        }
        out
    }

    /// The flamebearer layout: interned `names` and one flat array per level,
    /// 4 numbers per node for one column (`[x offset, total, self, name]`)
    /// and 7 for two (`[left offset, left total, left self, right offset,
    /// right total, right self, name]`). Offsets are relative to the end of
    /// the previous node on the same level; a node's children start where it
    /// starts. See `docs/flamegraph-json.md`.
    pub fn to_flamebearer(&self) -> Flamebearer {
        let mut levels: Vec<Vec<i64>> = Vec::new();
        // Per level and column: where the previous node ended.
        let mut level_end: Vec<Vec<i64>> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut kernel: Vec<i64> = Vec::new();
        let mut folded: Vec<[i64; 3]> = Vec::new();
        let mut name_index: FxHashMap<u32, i64> = FxHashMap::default();
        let mut max_self = 0i64;
        // (node, depth, x per column)
        let mut stack: Vec<(NodeId, usize, [i64; 2])> = vec![(0, 0, [0, 0])];
        while let Some((node, depth, x)) = stack.pop() {
            if levels.len() <= depth {
                levels.push(Vec::new());
                level_end.push(vec![0; self.columns]);
            }
            let raw_name = self.nodes[node as usize].name;
            let name = *name_index.entry(raw_name).or_insert_with(|| {
                names.push(self.names[raw_name as usize].clone());
                let index = names.len() as i64 - 1;
                if self.kernel[raw_name as usize] {
                    kernel.push(index);
                }
                index
            });
            let level = &mut levels[depth];
            let n = self.nodes[node as usize].folded;
            if n > 0 {
                let per_node = 3 * self.columns as i64 + 1;
                folded.push([depth as i64, level.len() as i64 / per_node, i64::from(n)]);
            }
            for c in 0..self.columns {
                let total = self.total(node, c);
                let self_value = self.self_value(node, c);
                level.push(x[c] - level_end[depth][c]);
                level.push(total);
                level.push(self_value);
                level_end[depth][c] = x[c] + total;
                max_self = max_self.max(self_value);
            }
            level.push(name);
            let mut child_x = x;
            let mut pending = Vec::with_capacity(self.children(node).len());
            for &child in self.children(node) {
                pending.push((child, depth + 1, child_x));
                for (c, cx) in child_x.iter_mut().enumerate().take(self.columns) {
                    *cx += self.total(child, c);
                }
            }
            stack.extend(pending.into_iter().rev());
        }
        Flamebearer {
            names,
            kernel,
            folded,
            levels,
            num_ticks: self.total(0, 0),
            max_self,
            left_ticks: (self.columns == 2).then(|| self.total(0, 0)),
            right_ticks: (self.columns == 2).then(|| self.total(0, 1)),
            format: if self.columns == 2 {
                "double"
            } else {
                "single"
            },
        }
    }
}

/// The compact flamegraph JSON the UI draws; see [`FlameTree::to_flamebearer`].
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Flamebearer {
    /// Interned frame names; level entries refer to them by index.
    pub names: Vec<String>,
    /// Indexes into `names` of kernel functions (left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel: Vec<i64>,
    /// For each "other" node, `[level, position in the level, calls]`:
    /// how many calls (children of its parent) it stands for (left out
    /// when the tree was not truncated).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<[i64; 3]>,
    /// One flat array per depth (level 0 is the root, "total").
    pub levels: Vec<Vec<i64>>,
    /// The root's total (left total for a diff).
    pub num_ticks: i64,
    /// The largest self value of any node.
    pub max_self: i64,
    /// Diff only: the before profile's total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_ticks: Option<i64>,
    /// Diff only: the after profile's total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right_ticks: Option<i64>,
    /// "single" (4 numbers per node) or "double" (7, a diff).
    pub format: &'static str,
}

struct OrdF64(f64);
impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Builds a tree by inserting stacks; sorts children by name at the end.
struct Builder {
    columns: usize,
    names: Vec<String>,
    kernel: Vec<bool>,
    name_ids: FxHashMap<String, u32>,
    nodes: Vec<Node>,
    totals: Vec<i64>,
    selfs: Vec<i64>,
    edges: FxHashMap<(NodeId, u32), NodeId>,
}

impl Builder {
    fn new(columns: usize) -> Builder {
        let mut b = Builder {
            columns,
            names: Vec::new(),
            kernel: Vec::new(),
            name_ids: FxHashMap::default(),
            nodes: Vec::new(),
            totals: Vec::new(),
            selfs: Vec::new(),
            edges: FxHashMap::default(),
        };
        let root = b.name_id(ROOT);
        b.push_node(root);
        b
    }

    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.kernel.push(false);
        self.name_ids.insert(name.to_owned(), id);
        id
    }

    fn push_node(&mut self, name: u32) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            name,
            children: Vec::new(),
            folded: 0,
        });
        self.totals.extend(std::iter::repeat_n(0, self.columns));
        self.selfs.extend(std::iter::repeat_n(0, self.columns));
        id
    }

    fn child(&mut self, parent: NodeId, name: u32) -> NodeId {
        if let Some(&id) = self.edges.get(&(parent, name)) {
            return id;
        }
        let id = self.push_node(name);
        self.nodes[parent as usize].children.push(id);
        self.edges.insert((parent, name), id);
        id
    }

    fn get_total(&self, node: NodeId, c: usize) -> i64 {
        self.totals[node as usize * self.columns + c]
    }

    fn get_self(&self, node: NodeId, c: usize) -> i64 {
        self.selfs[node as usize * self.columns + c]
    }

    fn set(&mut self, node: NodeId, c: usize, total: i64, self_value: i64) {
        self.totals[node as usize * self.columns + c] = total;
        self.selfs[node as usize * self.columns + c] = self_value;
    }

    fn add(&mut self, profile: &Profile, type_index: usize, column: usize) {
        if type_index >= profile.sample_types().len() {
            return;
        }
        // Map each function to a tree name once, not once per frame.
        let names: Vec<u32> = profile
            .functions()
            .map(|f| {
                let id = self.name_id(f.name);
                self.kernel[id as usize] |= f.is_kernel();
                id
            })
            .collect();
        let w = self.columns;
        for (stack, values) in profile.samples() {
            let v = values[type_index];
            if v == 0 {
                continue;
            }
            let mut node: NodeId = 0;
            self.totals[column] = self.totals[column].saturating_add(v);
            for &f in stack {
                node = self.child(node, names[f as usize]);
                let t = &mut self.totals[node as usize * w + column];
                *t = t.saturating_add(v);
            }
            let s = &mut self.selfs[node as usize * w + column];
            *s = s.saturating_add(v);
        }
    }

    fn finish(mut self) -> FlameTree {
        let names = &self.names;
        let name_of: Vec<u32> = self.nodes.iter().map(|n| n.name).collect();
        for node in &mut self.nodes {
            node.children.sort_by(|a, b| {
                names[name_of[*a as usize] as usize].cmp(&names[name_of[*b as usize] as usize])
            });
        }
        FlameTree {
            columns: self.columns,
            names: self.names,
            kernel: self.kernel,
            nodes: self.nodes,
            totals: self.totals,
            selfs: self.selfs,
        }
    }
}
