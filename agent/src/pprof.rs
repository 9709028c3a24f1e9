//! Builds one pprof message per series and sample kind from a symbolized
//! window, with the per-sample labels `pid` and `thread_name` that the
//! shared model does not carry.
//!
//! CPU profiles have sample types `samples/count` and `cpu/nanoseconds`;
//! the period type is `cpu/nanoseconds` with period 1e9 / frequency.
//! Allocation profiles have `alloc_objects/count` and `alloc_space/bytes`,
//! estimates (each sample stands for `period` calls), and the period type
//! `calls/count`. Locations keep their module (a pprof mapping with path
//! and build ID) and offset; functions are interned by name and file. A
//! frame no symbol named, in a file with a build id, is a location without
//! lines whose address is the file's own virtual address, in a mapping that
//! is the file's segment: the server names it once it has a debug file.

use std::fmt::Write as _;
use std::sync::Arc;

use firewatch_profile::pprof::proto;
use hashbrown::HashMap;

use crate::aggregate::{ANON, Counts, Frame, KERNEL, MARKER, SampleKind};
use crate::labels::Labels;
use crate::python::PYTHON;
use crate::sample::Window;
use crate::symbolize::WindowNames;

/// One series' profile of one kind for one window.
pub struct SeriesProfile {
    /// The series labels (`service_name`, `host`, ...).
    pub labels: Arc<Labels>,
    /// CPU or allocations.
    pub kind: SampleKind,
    /// The pprof message.
    pub profile: proto::Profile,
    /// Number of samples in it.
    pub samples: u64,
}

/// Builds the window's profiles, one per series and kind, in series-id
/// order (a series' CPU profile before its allocation profile).
pub fn build(w: &Window, names: &WindowNames, sample_labels: bool) -> Vec<SeriesProfile> {
    let mut builders: HashMap<(u32, SampleKind), Builder> = HashMap::new();
    for (key, counts) in w.agg.iter() {
        let b = builders
            .entry((key.series, key.kind))
            .or_insert_with(|| Builder::new(w, key.kind));
        let stack = w.agg.stack(key.stack);
        // With sample labels off, samples of one stack merge across threads
        // and processes, unless they hold JIT frames named per process.
        let has_anon = stack.iter().any(|f| f.module == ANON);
        let (pid, thread) = if sample_labels {
            (key.pid, key.thread)
        } else if has_anon {
            (key.pid, u32::MAX)
        } else {
            (0, u32::MAX)
        };
        let slot = match b.samples.get(&(key.stack, pid, thread)) {
            Some(&i) => i,
            None => {
                let location_id = stack
                    .iter()
                    .map(|&f| b.location(w, names, key.pid, f))
                    .collect();
                let label = if sample_labels {
                    let thread_name = w.threads.get(&key.thread).map(|s| &**s).unwrap_or("");
                    vec![
                        proto::Label {
                            key: b.strings.intern("pid"),
                            num: i64::from(key.pid),
                            ..proto::Label::default()
                        },
                        proto::Label {
                            key: b.strings.intern("thread_name"),
                            str: b.strings.intern(thread_name),
                            ..proto::Label::default()
                        },
                    ]
                } else {
                    Vec::new()
                };
                b.profile.sample.push(proto::Sample {
                    location_id,
                    value: vec![0, 0],
                    label,
                });
                let i = b.profile.sample.len() - 1;
                b.samples.insert((key.stack, pid, thread), i);
                i
            }
        };
        let values = values(key.kind, counts, w.alloc_period);
        if let Some(sample) = b.profile.sample.get_mut(slot) {
            for (v, add) in sample.value.iter_mut().zip(values) {
                *v = v.saturating_add(add);
            }
        }
        b.total = b.total.saturating_add(counts.samples);
    }
    let mut out: Vec<((u32, SampleKind), SeriesProfile)> = builders
        .into_iter()
        .filter_map(|((series, kind), b)| {
            let labels = Arc::clone(w.series.get(&series)?);
            Some(((series, kind), b.finish(labels, kind)))
        })
        .collect();
    out.sort_by_key(|(key, _)| *key);
    out.into_iter().map(|(_, p)| p).collect()
}

/// A key's values in the order of its profile's sample types.
fn values(kind: SampleKind, counts: &Counts, alloc_period: i64) -> [i64; 2] {
    let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    match kind {
        SampleKind::Cpu => [v(counts.samples), v(counts.value)],
        // Each sampled call stands for `alloc_period` calls.
        SampleKind::Alloc => [
            v(counts.samples).saturating_mul(alloc_period),
            v(counts.value).saturating_mul(alloc_period),
        ],
    }
}

struct Builder {
    profile: proto::Profile,
    strings: StringTable,
    functions: HashMap<(Arc<str>, Arc<str>), u64>,
    locations: HashMap<(u32, Frame), u64>,
    mappings: HashMap<u32, usize>,
    // (module, segment offset) -> mapping id, for frames no symbol named.
    segment_mappings: HashMap<(u32, u64), u64>,
    samples: HashMap<(u32, u32, u32), usize>,
    total: u64,
}

impl Builder {
    fn new(w: &Window, kind: SampleKind) -> Builder {
        let mut strings = StringTable::default();
        let (types, period_type, period, default) = match kind {
            SampleKind::Cpu => (
                [("samples", "count"), ("cpu", "nanoseconds")],
                ("cpu", "nanoseconds"),
                w.period_ns,
                "cpu",
            ),
            SampleKind::Alloc => (
                [("alloc_objects", "count"), ("alloc_space", "bytes")],
                ("calls", "count"),
                w.alloc_period,
                "alloc_space",
            ),
        };
        let mut value_type = |(t, unit): (&str, &str)| proto::ValueType {
            r#type: strings.intern(t),
            unit: strings.intern(unit),
        };
        let sample_type = types.into_iter().map(&mut value_type).collect();
        let period_type = Some(value_type(period_type));
        let profile = proto::Profile {
            sample_type,
            time_nanos: w.start_ns,
            duration_nanos: w.duration_ns,
            period_type,
            period,
            default_sample_type: strings.intern(default),
            ..proto::Profile::default()
        };
        Builder {
            profile,
            strings,
            functions: HashMap::new(),
            locations: HashMap::new(),
            mappings: HashMap::new(),
            segment_mappings: HashMap::new(),
            samples: HashMap::new(),
            total: 0,
        }
    }

    fn location(&mut self, w: &Window, names: &WindowNames, pid: u32, frame: Frame) -> u64 {
        let key = (if frame.module == ANON { pid } else { 0 }, frame);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let resolved = Arc::clone(names.get(pid, frame));
        if !resolved.named
            && let Some(id) = self.unnamed_location(w, frame)
        {
            self.locations.insert(key, id);
            return id;
        }
        let mapping_id = self.mapping(w, frame);
        let line = resolved
            .lines
            .iter()
            .map(|l| proto::Line {
                function_id: self.function(&l.name, &l.file),
                line: i64::from(l.line),
                column: 0,
            })
            .collect();
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address: if frame.module == MARKER || frame.module == PYTHON {
                0
            } else {
                frame.addr
            },
            line,
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    /// A frame no symbol named, in a file with a build id: a location
    /// without lines whose address is the file's own virtual address, in a
    /// mapping that is the file's segment, so the server can name it from a
    /// debug file and every reader still computes the same file offset.
    fn unnamed_location(&mut self, w: &Window, frame: Frame) -> Option<u64> {
        let info = w.modules.get(&frame.module)?;
        let build_id = info.build_id.get().filter(|b| !b.is_empty())?;
        let seg = info.segment_of(frame.addr)?;
        let key = (frame.module, seg.offset);
        let mapping_id = match self.segment_mappings.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.profile.mapping.len() as u64 + 1;
                self.profile.mapping.push(proto::Mapping {
                    id,
                    memory_start: seg.vaddr,
                    memory_limit: seg.vaddr.saturating_add(seg.filesz),
                    file_offset: seg.offset,
                    filename: self.strings.intern(&info.path),
                    build_id: self.strings.intern(&hex(Some(build_id))),
                    ..proto::Mapping::default()
                });
                self.segment_mappings.insert(key, id);
                id
            }
        };
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address: seg.vaddr.wrapping_add(frame.addr - seg.offset),
            line: Vec::new(),
            is_folded: false,
        });
        Some(id)
    }

    fn function(&mut self, name: &Arc<str>, file: &Arc<str>) -> u64 {
        if let Some(&id) = self.functions.get(&(Arc::clone(name), Arc::clone(file))) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let name_index = self.strings.intern(name);
        self.profile.function.push(proto::Function {
            id,
            name: name_index,
            system_name: name_index,
            filename: self.strings.intern(file),
            start_line: 0,
        });
        self.functions
            .insert((Arc::clone(name), Arc::clone(file)), id);
        id
    }

    fn mapping(&mut self, w: &Window, frame: Frame) -> u64 {
        if frame.module == MARKER || frame.module == PYTHON {
            return 0;
        }
        if let Some(&i) = self.mappings.get(&frame.module) {
            let m = &mut self.profile.mapping[i];
            m.memory_limit = m.memory_limit.max(frame.addr.saturating_add(1));
            return m.id;
        }
        let (filename, build_id) = match frame.module {
            KERNEL => ("[kernel.kallsyms]".to_owned(), String::new()),
            ANON => ("[anon]".to_owned(), String::new()),
            module => match w.modules.get(&module) {
                Some(info) => (
                    info.path.clone(),
                    hex(info.build_id.get().map(Vec::as_slice)),
                ),
                None => ("[unknown]".to_owned(), String::new()),
            },
        };
        let id = self.profile.mapping.len() as u64 + 1;
        self.profile.mapping.push(proto::Mapping {
            id,
            memory_start: 0,
            memory_limit: frame.addr.saturating_add(1),
            file_offset: 0,
            filename: self.strings.intern(&filename),
            build_id: self.strings.intern(&build_id),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
        self.mappings
            .insert(frame.module, self.profile.mapping.len() - 1);
        id
    }

    fn finish(mut self, labels: Arc<Labels>, kind: SampleKind) -> SeriesProfile {
        self.profile.string_table = self.strings.strings;
        SeriesProfile {
            labels,
            kind,
            profile: self.profile,
            samples: self.total,
        }
    }
}

/// Bytes as lowercase hex.
pub(crate) fn hex(bytes: Option<&[u8]>) -> String {
    let mut s = String::new();
    for b in bytes.unwrap_or(&[]) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A pprof string table; entry 0 is "".
struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for StringTable {
    fn default() -> Self {
        let mut index = HashMap::new();
        index.insert(String::new(), 0);
        StringTable {
            strings: vec![String::new()],
            index,
        }
    }
}

impl StringTable {
    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}
