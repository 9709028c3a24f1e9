//! The in-memory profile: interned functions, interned stacks, dense values.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// Index of a [`Function`] in its [`Profile`].
pub type FuncId = u32;
/// Index of a distinct stack in its [`Profile`].
pub type StackId = u32;

/// What one column of sample values measures, e.g. `cpu`/`nanoseconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleType {
    /// The quantity: `cpu`, `samples`, `alloc_space`, ...
    pub kind: String,
    /// Its unit: `nanoseconds`, `count`, `bytes`, ...
    pub unit: String,
}

impl SampleType {
    /// A sample type from its kind and unit.
    pub fn new(kind: impl Into<String>, unit: impl Into<String>) -> Self {
        SampleType {
            kind: kind.into(),
            unit: unit.into(),
        }
    }
}

/// A function as frames name it. Two frames are the same function when name,
/// file, start line and object address all match; empty file and zero line
/// mean "unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Function<'a> {
    /// Demangled name, or `module+0xoffset` for frames no symbol names.
    pub name: &'a str,
    /// Source file, empty when unknown.
    pub file: &'a str,
    /// First line of the function in `file`, 0 when unknown.
    pub line: u32,
    /// For a frame no symbol named: where it sits in its object file, so a
    /// debug file found later can name it. `None` for named frames.
    pub address: Option<ObjectAddress<'a>>,
}

/// An instruction's place in an object file identified by its build id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectAddress<'a> {
    /// The file's GNU build id, lowercase hex.
    pub build_id: &'a str,
    /// The address in the file's own link-time address space: what its
    /// symbol table and debug information (and `addr2line -e FILE`) use.
    pub address: u64,
}

impl ObjectAddress<'_> {
    /// Whether `s` is a build id as [`ObjectAddress::build_id`] holds it:
    /// 2 to 128 lowercase hex digits, an even number (so it can name a file).
    pub fn is_build_id(s: &str) -> bool {
        (2..=128).contains(&s.len())
            && s.len().is_multiple_of(2)
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// The object file of kernel functions, as perf and the agent name it: a
/// function whose `file` is this ran in the kernel.
pub const KERNEL_FILE: &str = "[kernel.kallsyms]";

/// A series' labels, by name (`service_name`, `host`, ...), in name order:
/// what the agent sends and the server stores for every profile.
pub type Labels = std::collections::BTreeMap<String, String>;

/// The label naming the service a profile belongs to.
pub const SERVICE_NAME: &str = "service_name";

/// The root frame of a stack whose unwind stopped before the thread's first
/// function: the frames under it are the outermost ones that were read.
pub const TRUNCATED: &str = "[truncated stack]";

impl<'a> Function<'a> {
    /// Whether the function is the kernel's (its file is [`KERNEL_FILE`]).
    pub fn is_kernel(&self) -> bool {
        self.file == KERNEL_FILE
    }

    /// A function known by name, file and line only.
    pub fn named(name: &'a str, file: &'a str, line: u32) -> Function<'a> {
        Function {
            name,
            file,
            line,
            address: None,
        }
    }
}

/// A function as stored: spans into the profile's text arena, and its hash.
/// Names live in one buffer rather than one allocation each so that merging
/// many profiles reads memory sequentially instead of chasing pointers.
#[derive(Clone, Copy, Debug)]
struct FunctionEntry {
    name: (u32, u32),
    file: (u32, u32),
    line: u32,
    /// Build id span and address; `build_id == NO_ADDRESS` means none.
    build_id: (u32, u32),
    address: u64,
    hash: u64,
}

/// Marks a [`FunctionEntry`] without an object address.
const NO_ADDRESS: (u32, u32) = (0, u32::MAX);

/// A profile built for merging and querying.
///
/// Stacks are stored root first (`main` before the leaf), as folded text
/// writes them, each interned once; values are dense, one column per
/// [`SampleType`]. Adding the same stack twice sums its values.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    sample_types: Vec<SampleType>,
    text: String,
    functions: Vec<FunctionEntry>,
    function_index: HashTable<FuncId>,
    frames: Vec<FuncId>,
    // Stack `i` is `frames[stack_ends[i-1]..stack_ends[i]]` (0 for i == 0).
    stack_ends: Vec<u32>,
    stack_index: HashTable<StackId>,
    values: Vec<i64>,
    /// Start of the profiled window, nanoseconds since the Unix epoch (0 if unknown).
    pub time_nanos: i64,
    /// Length of the profiled window in nanoseconds (0 if unknown).
    pub duration_nanos: i64,
    /// What one sampling period measures (e.g. `cpu`/`nanoseconds`), if known.
    pub period_type: Option<SampleType>,
    /// The sampling period in `period_type` units (0 if unknown).
    pub period: i64,
}

// A fixed seed keeps hashes stable between tables, so a hash computed for
// one profile can be looked up in another. foldhash mixes the high bits
// well, which the tables' 7-bit tags depend on.
const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x51f1_5eed);

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    HASHER.hash_one(value)
}

fn function_hash(f: &Function<'_>) -> u64 {
    match f.address {
        None => hash_of(&(f.name, f.file, f.line)),
        Some(a) => hash_of(&(f.name, f.file, f.line, a.build_id, a.address)),
    }
}

impl Profile {
    /// An empty profile whose samples carry one value per sample type.
    pub fn new(sample_types: Vec<SampleType>) -> Self {
        Profile {
            sample_types,
            ..Profile::default()
        }
    }

    /// The value columns, in order.
    pub fn sample_types(&self) -> &[SampleType] {
        &self.sample_types
    }

    /// The column of the sample type with this kind (`cpu`, `samples`, ...).
    pub fn sample_type_index(&self, kind: &str) -> Option<usize> {
        self.sample_types.iter().position(|t| t.kind == kind)
    }

    /// Number of interned functions; ids run from 0 to this, exclusive.
    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// Every interned function, in [`FuncId`] order.
    pub fn functions(&self) -> impl ExactSizeIterator<Item = Function<'_>> + '_ {
        self.functions.iter().map(|e| self.resolve(e))
    }

    /// The function behind an id.
    ///
    /// # Panics
    /// If `id` did not come from this profile.
    pub fn function(&self, id: FuncId) -> Function<'_> {
        self.resolve(&self.functions[id as usize])
    }

    /// The name of a function.
    ///
    /// # Panics
    /// If `id` did not come from this profile.
    pub fn function_name(&self, id: FuncId) -> &str {
        self.span(self.functions[id as usize].name)
    }

    fn span(&self, (start, end): (u32, u32)) -> &str {
        &self.text[start as usize..end as usize]
    }

    fn resolve(&self, e: &FunctionEntry) -> Function<'_> {
        Function {
            name: self.span(e.name),
            file: self.span(e.file),
            line: e.line,
            address: (e.build_id != NO_ADDRESS).then(|| ObjectAddress {
                build_id: self.span(e.build_id),
                address: e.address,
            }),
        }
    }

    /// The id of a function known by name, file and line, interning it on
    /// first sight.
    pub fn intern_function(&mut self, name: &str, file: &str, line: u32) -> FuncId {
        self.intern(Function::named(name, file, line))
    }

    /// The same function marked as the kernel's when it names no file
    /// (a kernel symbol has none), else `id` unchanged.
    pub fn in_kernel(&mut self, id: FuncId) -> FuncId {
        let f = self.function(id);
        if !f.file.is_empty() {
            return id;
        }
        let (name, line) = (f.name.to_owned(), f.line);
        self.intern_function(&name, KERNEL_FILE, line)
    }

    /// The id of a function, interning it on first sight.
    pub fn intern(&mut self, f: Function<'_>) -> FuncId {
        self.intern_function_hashed(function_hash(&f), f)
    }

    fn intern_function_hashed(&mut self, hash: u64, f: Function<'_>) -> FuncId {
        let (functions, text) = (&self.functions, &self.text);
        let span = |(start, end): (u32, u32)| &text[start as usize..end as usize];
        if let Some(&id) = self.function_index.find(hash, |&id| {
            let e = &functions[id as usize];
            e.hash == hash
                && e.line == f.line
                && span(e.name) == f.name
                && span(e.file) == f.file
                && match f.address {
                    None => e.build_id == NO_ADDRESS,
                    Some(a) => {
                        e.build_id != NO_ADDRESS
                            && e.address == a.address
                            && span(e.build_id) == a.build_id
                    }
                }
        }) {
            return id;
        }
        let id = self.functions.len() as FuncId;
        let mut push = |s: &str| {
            let start = self.text.len() as u32;
            self.text.push_str(s);
            (start, self.text.len() as u32)
        };
        let name = push(f.name);
        let file = push(f.file);
        let (build_id, address) = match f.address {
            Some(a) => (push(a.build_id), a.address),
            None => (NO_ADDRESS, 0),
        };
        let entry = FunctionEntry {
            name,
            file,
            line: f.line,
            build_id,
            address,
            hash,
        };
        self.functions.push(entry);
        let functions = &self.functions;
        self.function_index
            .insert_unique(hash, id, |&id| functions[id as usize].hash);
        id
    }

    /// The id in `self` of function `id` of `other`, interning it on first sight.
    pub(crate) fn import_function(&mut self, other: &Profile, id: FuncId) -> FuncId {
        let e = &other.functions[id as usize];
        self.intern_function_hashed(e.hash, other.resolve(e))
    }

    /// Number of distinct stacks.
    pub fn stack_count(&self) -> usize {
        self.stack_ends.len()
    }

    /// True when the profile holds no stack.
    pub fn is_empty(&self) -> bool {
        self.stack_ends.is_empty()
    }

    /// The frames of a stack, root first.
    ///
    /// # Panics
    /// If `id` did not come from this profile.
    pub fn stack(&self, id: StackId) -> &[FuncId] {
        let i = id as usize;
        let start = if i == 0 {
            0
        } else {
            self.stack_ends[i - 1] as usize
        };
        &self.frames[start..self.stack_ends[i] as usize]
    }

    /// The values of a stack, one per sample type.
    pub fn values(&self, id: StackId) -> &[i64] {
        let n = self.sample_types.len();
        &self.values[id as usize * n..(id as usize + 1) * n]
    }

    /// Every stack with its values, in insertion order.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = (&[FuncId], &[i64])> + '_ {
        (0..self.stack_ends.len() as StackId).map(|id| (self.stack(id), self.values(id)))
    }

    /// The id of a stack (root first), interning it on first sight with zero values.
    pub fn intern_stack(&mut self, stack: &[FuncId]) -> StackId {
        let hash = hash_of(stack);
        let (frames, ends) = (&self.frames, &self.stack_ends);
        let slice_of = |id: StackId| {
            let i = id as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &frames[start..ends[i] as usize]
        };
        if let Some(&id) = self.stack_index.find(hash, |&id| slice_of(id) == stack) {
            return id;
        }
        let id = self.stack_ends.len() as StackId;
        self.frames.extend_from_slice(stack);
        self.stack_ends.push(self.frames.len() as u32);
        self.values
            .extend(std::iter::repeat_n(0, self.sample_types.len()));
        let (frames, ends) = (&self.frames, &self.stack_ends);
        self.stack_index.insert_unique(hash, id, |&id| {
            let i = id as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            hash_of(&frames[start..ends[i] as usize])
        });
        id
    }

    /// Adds `values` (one per sample type, missing ones count as 0, extra
    /// ones are ignored) to a stack given root first.
    pub fn add_sample(&mut self, stack: &[FuncId], values: &[i64]) -> StackId {
        let id = self.intern_stack(stack);
        let n = self.sample_types.len();
        let row = &mut self.values[id as usize * n..(id as usize + 1) * n];
        for (slot, v) in row.iter_mut().zip(values) {
            *slot = slot.saturating_add(*v);
        }
        id
    }

    /// Adds values to a stack given as function names, root first.
    pub fn add_named_sample<S: AsRef<str>>(&mut self, names: &[S], values: &[i64]) -> StackId {
        let stack: Vec<FuncId> = names
            .iter()
            .map(|n| self.intern_function(n.as_ref(), "", 0))
            .collect();
        self.add_sample(&stack, values)
    }

    /// Sum of one column over every stack.
    pub fn total(&self, type_index: usize) -> i64 {
        let n = self.sample_types.len();
        if type_index >= n {
            return 0;
        }
        self.values
            .iter()
            .skip(type_index)
            .step_by(n)
            .fold(0i64, |acc, v| acc.saturating_add(*v))
    }

    /// The column for `kind`, appending a zero column if the profile lacks it.
    pub fn ensure_sample_type(&mut self, sample_type: &SampleType) -> usize {
        if let Some(i) = self.sample_types.iter().position(|t| t == sample_type) {
            return i;
        }
        let old = self.sample_types.len();
        let rows = self.stack_ends.len();
        let mut values = Vec::with_capacity(rows * (old + 1));
        for row in 0..rows {
            values.extend_from_slice(&self.values[row * old..(row + 1) * old]);
            values.push(0);
        }
        self.values = values;
        self.sample_types.push(sample_type.clone());
        old
    }

    /// A copy holding only the chosen columns, in the given order.
    pub fn select_sample_types(&self, columns: &[usize]) -> Profile {
        let types = columns
            .iter()
            .filter_map(|&c| self.sample_types.get(c).cloned())
            .collect();
        let mut out = self.empty_like(types);
        let mut row = Vec::with_capacity(columns.len());
        for (stack, values) in self.samples() {
            row.clear();
            row.extend(columns.iter().map(|&c| values.get(c).copied().unwrap_or(0)));
            if row.iter().any(|v| *v != 0) {
                out.add_sample_with_functions(self, stack, &row);
            }
        }
        out
    }

    /// Drops stacks whose values are all zero.
    pub fn retain_nonzero(&mut self) {
        let keep: Vec<StackId> = (0..self.stack_count() as StackId)
            .filter(|&id| self.values(id).iter().any(|v| *v != 0))
            .collect();
        if keep.len() == self.stack_count() {
            return;
        }
        let mut out = self.empty_like(self.sample_types.clone());
        out.text = self.text.clone();
        out.functions = self.functions.clone();
        out.function_index = self.function_index.clone();
        for id in keep {
            out.add_sample(self.stack(id), self.values(id));
        }
        *self = out;
    }

    /// An empty profile with the same metadata and the given sample types.
    pub(crate) fn empty_like(&self, sample_types: Vec<SampleType>) -> Profile {
        Profile {
            sample_types,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: self.period_type.clone(),
            period: self.period,
            ..Profile::default()
        }
    }

    /// Adds a stack of `source`'s function ids to `self`, re-interning functions by value.
    pub(crate) fn add_sample_with_functions(
        &mut self,
        source: &Profile,
        stack: &[FuncId],
        values: &[i64],
    ) -> StackId {
        let mapped: Vec<FuncId> = stack
            .iter()
            .map(|&f| self.import_function(source, f))
            .collect();
        self.add_sample(&mapped, values)
    }

    /// Multiplies every value by `factor`, rounding to the nearest integer.
    pub fn scale(&mut self, factor: f64) {
        for v in &mut self.values {
            *v = (*v as f64 * factor).round() as i64;
        }
    }

    /// The stack as function names, root first.
    pub fn stack_names(&self, id: StackId) -> impl Iterator<Item = &str> + '_ {
        self.stack(id).iter().map(|&f| self.function_name(f))
    }
}
