//! Whole-profile operations: merge, filter, focus, top functions.

use rustc_hash::FxHashMap;

use crate::model::{FuncId, Function, Profile};

impl Profile {
    /// A copy in which each function that `with` (indexed by [`FuncId`])
    /// gives frames for is replaced by them, outermost first, in every
    /// stack: how frames named after the fact (an unnamed address whose
    /// debug file arrived, with its inlined calls) take their place.
    /// Stacks that become equal merge.
    pub fn replace_functions(&self, with: &[Option<Vec<Function<'_>>>]) -> Profile {
        let mut out = self.empty_like(self.sample_types().to_vec());
        let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(self.function_count());
        let mut ids: Vec<FuncId> = Vec::with_capacity(self.function_count());
        for (i, f) in self.functions().enumerate() {
            let start = ids.len() as u32;
            match with.get(i).and_then(Option::as_ref) {
                Some(frames) if !frames.is_empty() => {
                    ids.extend(frames.iter().map(|&g| out.intern(g)));
                }
                _ => ids.push(out.intern(f)),
            }
            ranges.push((start, ids.len() as u32));
        }
        let mut stack = Vec::with_capacity(64);
        for (frames, values) in self.samples() {
            stack.clear();
            for &f in frames {
                let (a, b) = ranges[f as usize];
                stack.extend_from_slice(&ids[a as usize..b as usize]);
            }
            out.add_sample(&stack, values);
        }
        out
    }

    /// A copy without the frames named `name` (a marker a reader chose to
    /// hide): every sample stays, on its stack minus those frames. Stacks
    /// that become equal merge.
    pub fn without_frames(&self, name: &str) -> Profile {
        let hidden: Vec<bool> = self.functions().map(|f| f.name == name).collect();
        self.restack(None, |f| !hidden[f as usize])
    }

    /// A copy whose every stack starts at one more frame, `root`: how
    /// profiles of several services share a flamegraph, one root each.
    pub fn under_root(&self, root: &str) -> Profile {
        self.restack(Some(root), |_| true)
    }

    /// A copy whose stacks start at `root` (if any) and keep the frames
    /// `keep` accepts.
    fn restack(&self, root: Option<&str>, keep: impl Fn(FuncId) -> bool) -> Profile {
        let mut out = self.empty_like(self.sample_types().to_vec());
        let ids: Vec<FuncId> = self.functions().map(|f| out.intern(f)).collect();
        let root = root.map(|r| out.intern_function(r, "", 0));
        let mut stack = Vec::with_capacity(64);
        for (source, values) in self.samples() {
            stack.clear();
            stack.extend(root);
            stack.extend(
                source
                    .iter()
                    .filter(|&&f| keep(f))
                    .map(|&f| ids[f as usize]),
            );
            out.add_sample(&stack, values);
        }
        out
    }

    /// Adds every sample of `other` to `self`, summing per stack.
    ///
    /// Sample types are matched by kind and unit; a type only `other` has
    /// becomes a new column (zero for what `self` held before). The time
    /// window grows to cover both.
    pub fn merge(&mut self, other: &Profile) {
        let columns: Vec<usize> = other
            .sample_types()
            .iter()
            .map(|t| self.ensure_sample_type(t))
            .collect();
        let remap: Vec<FuncId> = (0..other.function_count() as FuncId)
            .map(|f| self.import_function(other, f))
            .collect();
        let width = self.sample_types().len();
        let identity = columns.iter().enumerate().all(|(i, &c)| i == c) && columns.len() == width;
        let mut stack = Vec::with_capacity(64);
        let mut row = vec![0i64; width];
        for (frames, values) in other.samples() {
            stack.clear();
            stack.extend(frames.iter().map(|&f| remap[f as usize]));
            if identity {
                self.add_sample(&stack, values);
            } else {
                row.iter_mut().for_each(|v| *v = 0);
                for (&c, &v) in columns.iter().zip(values) {
                    row[c] = v;
                }
                self.add_sample(&stack, &row);
            }
        }
        self.merge_window(other);
        if self.period_type.is_none() {
            self.period_type = other.period_type.clone();
            self.period = other.period;
        }
    }

    fn merge_window(&mut self, other: &Profile) {
        if other.time_nanos == 0 && other.duration_nanos == 0 {
            return;
        }
        if self.time_nanos == 0 && self.duration_nanos == 0 {
            self.time_nanos = other.time_nanos;
            self.duration_nanos = other.duration_nanos;
            return;
        }
        let start = self.time_nanos.min(other.time_nanos);
        let end = (self.time_nanos.saturating_add(self.duration_nanos))
            .max(other.time_nanos.saturating_add(other.duration_nanos));
        self.time_nanos = start;
        self.duration_nanos = end.saturating_sub(start);
    }

    /// Merges many profiles into one (sum per stack). Order does not change the result's values.
    pub fn merge_all<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Profile {
        let mut iter = profiles.into_iter();
        let Some(first) = iter.next() else {
            return Profile::default();
        };
        let mut out = first.clone();
        for p in iter {
            out.merge(p);
        }
        out
    }

    /// Keeps the stacks for which `keep(names root first)` holds.
    pub fn filter_stacks(&self, mut keep: impl FnMut(&[&str]) -> bool) -> Profile {
        let mut out = self.empty_like(self.sample_types().to_vec());
        let mut names = Vec::with_capacity(64);
        for id in 0..self.stack_count() as u32 {
            names.clear();
            names.extend(self.stack_names(id));
            if keep(&names) {
                out.add_sample_with_functions(self, self.stack(id), self.values(id));
            }
        }
        out
    }

    /// Keeps the stacks that start (at the root) with `prefix`.
    pub fn filter_prefix<S: AsRef<str>>(&self, prefix: &[S]) -> Profile {
        self.filter_stacks(|names| {
            names.len() >= prefix.len() && names.iter().zip(prefix).all(|(a, b)| *a == b.as_ref())
        })
    }

    /// Keeps the stacks that pass through the function named `name` anywhere.
    pub fn focus(&self, name: &str) -> Profile {
        self.filter_stacks(|names| names.contains(&name))
    }

    /// The callees of `name`: every stack through it, cut so that its
    /// outermost occurrence becomes the root (the lower half of a sandwich view).
    pub fn callees(&self, name: &str) -> Profile {
        self.reshape(name, |stack, first, _| stack[first..].to_vec())
    }

    /// The callers of `name`: every stack through it, cut below its innermost
    /// occurrence and reversed, so `name` is the root and its callers hang
    /// below it (the upper half of a sandwich view, drawn inverted).
    pub fn callers(&self, name: &str) -> Profile {
        self.reshape(name, |stack, _, last| {
            stack[..=last].iter().rev().copied().collect()
        })
    }

    fn reshape(&self, name: &str, cut: impl Fn(&[FuncId], usize, usize) -> Vec<FuncId>) -> Profile {
        let mut out = self.empty_like(self.sample_types().to_vec());
        for id in 0..self.stack_count() as u32 {
            let stack = self.stack(id);
            let named = |f: &FuncId| self.function_name(*f) == name;
            let (Some(first), Some(last)) =
                (stack.iter().position(named), stack.iter().rposition(named))
            else {
                continue;
            };
            let shaped = cut(stack, first, last);
            out.add_sample_with_functions(self, &shaped, self.values(id));
        }
        out
    }

    /// Self and total value per function name for one sample type, sorted by
    /// self descending (then total, then name). A recursive function counts
    /// once per stack in its total.
    pub fn top_functions(&self, type_index: usize) -> Vec<TopEntry> {
        let width = self.sample_types().len();
        if type_index >= width {
            return Vec::new();
        }
        // Aggregate by name: functions that differ only in file/line are one row to a reader.
        let mut by_name: FxHashMap<&str, usize> = FxHashMap::default();
        let mut rows: Vec<TopEntry> = Vec::new();
        let mut seen: Vec<u32> = Vec::new();
        let name_row: Vec<usize> = self
            .functions()
            .map(|f| {
                *by_name.entry(f.name).or_insert_with(|| {
                    rows.push(TopEntry {
                        name: f.name.to_owned(),
                        self_value: 0,
                        total: 0,
                    });
                    rows.len() - 1
                })
            })
            .collect();
        seen.resize(rows.len(), u32::MAX);
        for (i, (stack, values)) in self.samples().enumerate() {
            let v = values[type_index];
            if v == 0 {
                continue;
            }
            if let Some(&leaf) = stack.last() {
                let r = name_row[leaf as usize];
                rows[r].self_value = rows[r].self_value.saturating_add(v);
            }
            for &f in stack {
                let r = name_row[f as usize];
                if seen[r] != i as u32 {
                    seen[r] = i as u32;
                    rows[r].total = rows[r].total.saturating_add(v);
                }
            }
        }
        rows.retain(|r| r.total != 0 || r.self_value != 0);
        rows.sort_by(|a, b| {
            b.self_value
                .cmp(&a.self_value)
                .then(b.total.cmp(&a.total))
                .then_with(|| a.name.cmp(&b.name))
        });
        rows
    }
}

/// One row of a top-functions table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopEntry {
    /// Function name.
    pub name: String,
    /// Value of samples whose leaf is this function.
    #[serde(rename = "self")]
    pub self_value: i64,
    /// Value of samples with this function anywhere on the stack.
    pub total: i64,
}
