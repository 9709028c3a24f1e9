//! The pprof wire format (`perftools.profiles.Profile`) and its conversion to
//! and from the model.
//!
//! Two readers turn pprof bytes into a [`Profile`]:
//!
//! - [`Profile::from_pprof_bytes`] reads the wire bytes straight into the
//!   model (the `wire` module): no `proto::Profile` is built, strings stay
//!   slices of the decompressed buffer until the model interns them, and
//!   each section is parsed once. This is the ingest path.
//! - [`decode`] builds the prost message, for callers that want it, and
//!   [`Profile::from_pprof`] converts such a message.
//!
//! Both give the same model for the same bytes, and the same errors for
//! invalid references ([`Error::InvalidPprof`] with the same field names)
//! and for limits ([`Error::LimitExceeded`] with the same `what`). They
//! differ in how malformed protobuf is reported: [`decode`] returns
//! [`Error::Protobuf`] (prost's message), while [`Profile::from_pprof_bytes`]
//! returns [`Error::InvalidPprof`] whose field names the message being read
//! (`profile`, `sample`, `location.line`, ...) and whose detail says what
//! was wrong with the bytes. The fast reader also refuses protobuf groups
//! (wire types 3 and 4) everywhere, where prost skips a well-formed group
//! found as an unknown field inside a nested message: pprof has no groups,
//! so no producer writes one.

use std::fmt::Write as _;

use prost::Message;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{FuncId, Function, KERNEL_FILE, ObjectAddress, Profile, SampleType};

mod inflate;
mod wire;

pub use wire::for_each_field;

/// Types generated from `proto/profile.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
}

/// Decompresses (gzip, zstd or none) and decodes a pprof message within `limits`.
///
/// Counts are checked on the wire before decoding, so a message claiming a
/// million samples is refused before a million structs are allocated.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<proto::Profile> {
    let raw = inflate::decompress(bytes, limits.max_decompressed_bytes)?;
    precheck(&raw, limits)?;
    let profile = proto::Profile::decode(&*raw)?;
    for sample in &profile.sample {
        if sample.location_id.len() > limits.max_stack_depth {
            return Err(too_deep(limits));
        }
        if sample.label.len() > limits.max_labels_per_sample {
            return Err(too_many_labels(limits));
        }
    }
    Ok(profile)
}

/// Encodes a pprof message, uncompressed.
pub fn encode(profile: &proto::Profile) -> Vec<u8> {
    profile.encode_to_vec()
}

/// Walks the top level of an encoded `Profile`, counting samples and strings.
fn precheck(mut buf: &[u8], limits: &Limits) -> Result<()> {
    let (mut samples, mut strings) = (0usize, 0usize);
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                prost::encoding::decode_varint(&mut buf)?;
            }
            1 => buf = buf.get(8..).ok_or_else(truncated)?,
            2 => {
                let len = prost::encoding::decode_varint(&mut buf)?;
                let len = usize::try_from(len).map_err(|_| truncated())?;
                buf = buf.get(len..).ok_or_else(truncated)?;
            }
            5 => buf = buf.get(4..).ok_or_else(truncated)?,
            _ => return Err(invalid("profile", format!("invalid wire type {wire_type}"))),
        }
        match field {
            2 => samples += 1,
            6 => strings += 1,
            _ => {}
        }
    }
    check_counts(samples, strings, limits)
}

// The checks and messages below are shared by the prost path and the wire
// reader, so the two cannot drift apart in what they refuse or how they say it.

/// The top-level counts `decode` checks before building anything.
fn check_counts(samples: usize, strings: usize, limits: &Limits) -> Result<()> {
    if samples > limits.max_samples {
        return Err(Error::LimitExceeded {
            what: "samples",
            limit: limits.max_samples as u64,
        });
    }
    if strings > limits.max_strings {
        return Err(Error::LimitExceeded {
            what: "string table entries",
            limit: limits.max_strings as u64,
        });
    }
    Ok(())
}

fn too_deep(limits: &Limits) -> Error {
    Error::LimitExceeded {
        what: "stack depth (frames)",
        limit: limits.max_stack_depth as u64,
    }
}

fn too_many_labels(limits: &Limits) -> Error {
    Error::LimitExceeded {
        what: "labels per sample",
        limit: limits.max_labels_per_sample as u64,
    }
}

fn first_string_not_empty() -> Error {
    invalid("string_table", "entry 0 must be the empty string")
}

fn no_function(id: u64) -> Error {
    invalid(
        "location.line.function_id",
        format!("no function with id {id}"),
    )
}

fn no_location(id: u64) -> Error {
    invalid("sample.location_id", format!("no location with id {id}"))
}

fn wrong_value_count(values: usize, width: usize) -> Error {
    invalid(
        "sample.value",
        format!("{values} values for {width} sample types"),
    )
}

fn truncated() -> Error {
    invalid("profile", "message truncated")
}

fn invalid(field: &'static str, detail: impl Into<String>) -> Error {
    Error::InvalidPprof {
        field,
        detail: detail.into(),
    }
}

/// The string table, as owned strings (prost) or slices of the wire bytes.
struct Strings<'a, S>(&'a [S]);

impl<'a, S: AsRef<str>> Strings<'a, S> {
    fn get(&self, index: i64, field: &'static str) -> Result<&'a str> {
        if index == 0 && self.0.is_empty() {
            return Ok("");
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(AsRef::as_ref)
            .ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "string index {index} outside a table of {} entries",
                        self.0.len()
                    ),
                )
            })
    }
}

impl Profile {
    /// Decompresses, decodes and converts a pprof file's bytes within `limits`.
    ///
    /// The bytes are read straight into the model, without building the
    /// `proto::Profile` that [`decode`] returns; see the [module docs](self)
    /// for how its errors compare with [`decode`] + [`Profile::from_pprof`].
    pub fn from_pprof_bytes(bytes: &[u8], limits: &Limits) -> Result<Profile> {
        let raw = inflate::decompress(bytes, limits.max_decompressed_bytes)?;
        wire::profile(&raw, limits)
    }

    /// Converts a decoded pprof message.
    ///
    /// Inlined frames become frames of their own; a location without symbols
    /// becomes `module+0xoffset` (or `0xaddress` without a mapping), so no
    /// frame vanishes. Sample labels are not kept.
    pub fn from_pprof(p: &proto::Profile, limits: &Limits) -> Result<Profile> {
        let strings = Strings(&p.string_table);
        if let Some(first) = p.string_table.first()
            && !first.is_empty()
        {
            return Err(first_string_not_empty());
        }
        let mut sample_types = Vec::with_capacity(p.sample_type.len());
        for t in &p.sample_type {
            sample_types.push(SampleType::new(
                strings.get(t.r#type, "sample_type.type")?,
                strings.get(t.unit, "sample_type.unit")?,
            ));
        }
        let mut out = Profile::new(sample_types);
        out.time_nanos = p.time_nanos;
        out.duration_nanos = p.duration_nanos;
        out.period = p.period;
        if let Some(t) = &p.period_type {
            out.period_type = Some(SampleType::new(
                strings.get(t.r#type, "period_type.type")?,
                strings.get(t.unit, "period_type.unit")?,
            ));
        }

        let mut functions: FxHashMap<u64, FuncId> = FxHashMap::default();
        functions.reserve(p.function.len());
        for f in &p.function {
            let name = strings.get(f.name, "function.name")?;
            let name = if name.is_empty() {
                strings.get(f.system_name, "function.system_name")?
            } else {
                name
            };
            let file = strings.get(f.filename, "function.filename")?;
            let line = u32::try_from(f.start_line).unwrap_or(0);
            functions.insert(f.id, out.intern_function(name, file, line));
        }

        let mut mappings: FxHashMap<u64, MappingRef> = FxHashMap::default();
        for m in &p.mapping {
            mappings.insert(
                m.id,
                MappingRef {
                    memory_start: m.memory_start,
                    file_offset: m.file_offset,
                    filename: m.filename,
                    build_id: m.build_id,
                    kernel: is_kernel(m.filename, &strings),
                },
            );
        }

        // Each location's frames, outermost first, stored flat.
        let mut loc_frames: Vec<FuncId> = Vec::new();
        let mut kernel = KernelFunctions::default();
        let mut locations: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
        locations.reserve(p.location.len());
        let mut name = String::new();
        for loc in &p.location {
            let start = loc_frames.len() as u32;
            if loc.line.is_empty() {
                let mapping = mappings.get(&loc.mapping_id).copied();
                let address = unsymbolized_name(&mut name, loc.address, mapping, &strings)?;
                loc_frames.push(out.intern(Function {
                    address,
                    ..Function::named(&name, "", 0)
                }));
            } else {
                let in_kernel = mappings.get(&loc.mapping_id).is_some_and(|m| m.kernel);
                for line in loc.line.iter().rev() {
                    let &id = functions
                        .get(&line.function_id)
                        .ok_or_else(|| no_function(line.function_id))?;
                    loc_frames.push(if in_kernel {
                        kernel.mark(&mut out, id)
                    } else {
                        id
                    });
                }
            }
            locations.insert(loc.id, (start, loc_frames.len() as u32));
        }

        let width = out.sample_types().len();
        let mut stack: Vec<FuncId> = Vec::with_capacity(64);
        for sample in &p.sample {
            if sample.value.len() != width {
                return Err(wrong_value_count(sample.value.len(), width));
            }
            stack.clear();
            for id in sample.location_id.iter().rev() {
                let &(start, end) = locations.get(id).ok_or_else(|| no_location(*id))?;
                stack.extend_from_slice(&loc_frames[start as usize..end as usize]);
            }
            if stack.len() > limits.max_stack_depth {
                return Err(too_deep(limits));
            }
            out.add_sample(&stack, &sample.value);
        }
        Ok(out)
    }

    /// Converts to a pprof message: one function and one location per
    /// function of the model, so `go tool pprof` and other readers see the
    /// same stacks and totals.
    pub fn to_pprof(&self) -> proto::Profile {
        let mut table = StringTable::default();
        table.intern("");
        let sample_type = self
            .sample_types()
            .iter()
            .map(|t| proto::ValueType {
                r#type: table.intern(&t.kind),
                unit: table.intern(&t.unit),
            })
            .collect();
        let period_type = self.period_type.as_ref().map(|t| proto::ValueType {
            r#type: table.intern(&t.kind),
            unit: table.intern(&t.unit),
        });
        let mut function = Vec::with_capacity(self.function_count());
        let mut location = Vec::with_capacity(self.function_count());
        let mut mapping = vec![proto::Mapping {
            id: 1,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..proto::Mapping::default()
        }];
        // Unnamed frames' files, by (module, build id, address - offset).
        let mut objects: FxHashMap<(&str, &str, i128), usize> = FxHashMap::default();
        for (i, f) in self.functions().enumerate() {
            let id = i as u64 + 1;
            if let Some((a, (module, offset))) = f.address.zip(split_unsymbolized(f.name)) {
                // A location without lines in a mapping that gives back the
                // name's offset, as readers compute it from the address.
                let delta = i128::from(a.address) - i128::from(offset);
                let m = *objects
                    .entry((module, a.build_id, delta))
                    .or_insert_with(|| {
                        mapping.push(proto::Mapping {
                            id: mapping.len() as u64 + 1,
                            memory_start: u64::try_from(delta).unwrap_or(0),
                            file_offset: u64::try_from(-delta).unwrap_or(0),
                            filename: table.intern(module),
                            build_id: table.intern(a.build_id),
                            ..proto::Mapping::default()
                        });
                        mapping.len() - 1
                    });
                mapping[m].memory_limit = mapping[m].memory_limit.max(a.address.saturating_add(1));
                location.push(proto::Location {
                    id,
                    mapping_id: mapping[m].id,
                    address: a.address,
                    line: Vec::new(),
                    is_folded: false,
                });
                continue;
            }
            function.push(proto::Function {
                id,
                name: table.intern(f.name),
                system_name: 0,
                filename: table.intern(f.file),
                start_line: i64::from(f.line),
            });
            location.push(proto::Location {
                id,
                mapping_id: 1,
                address: 0,
                line: vec![proto::Line {
                    function_id: id,
                    line: i64::from(f.line),
                    column: 0,
                }],
                is_folded: false,
            });
        }
        let sample = self
            .samples()
            .map(|(stack, values)| proto::Sample {
                location_id: stack.iter().rev().map(|&f| u64::from(f) + 1).collect(),
                value: values.to_vec(),
                label: Vec::new(),
            })
            .collect();
        proto::Profile {
            sample_type,
            sample,
            mapping,
            location,
            function,
            string_table: table.strings,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type,
            period: self.period,
            ..proto::Profile::default()
        }
    }

    /// Encodes as an uncompressed pprof message.
    pub fn to_pprof_bytes(&self) -> Vec<u8> {
        encode(&self.to_pprof())
    }
}

/// Whether a mapping whose file name is string `filename` is the kernel's:
/// perf names it `[kernel.kallsyms]` (sometimes with a section suffix),
/// some tools `[vmlinux]` or `vmlinux`. A file name that is not in the
/// string table is no kernel (and no error: only locations without lines
/// need it).
fn is_kernel<S: AsRef<str>>(filename: i64, strings: &Strings<'_, S>) -> bool {
    strings.get(filename, "mapping.filename").is_ok_and(|path| {
        path.starts_with(KERNEL_FILE) || path.starts_with("[vmlinux") || path == "vmlinux"
    })
}

/// Functions met in kernel mappings, each marked as the kernel's once
/// however many locations name it.
#[derive(Default)]
struct KernelFunctions(FxHashMap<FuncId, FuncId>);

impl KernelFunctions {
    fn mark(&mut self, out: &mut Profile, id: FuncId) -> FuncId {
        *self.0.entry(id).or_insert_with(|| out.in_kernel(id))
    }
}

/// What naming an unsymbolized location needs of its mapping.
#[derive(Clone, Copy, Debug)]
struct MappingRef {
    memory_start: u64,
    file_offset: u64,
    /// String index of the mapped file's path, checked only when a location
    /// without lines uses this mapping.
    filename: i64,
    /// String index of the file's build id, likewise.
    build_id: i64,
    /// The mapping is the kernel's.
    kernel: bool,
}

/// Names a location without lines into `out` (cleared first):
/// `module+0xoffset` with the mapped file's base name and the offset in that
/// file, or `0xaddress` without a mapping or a file name. `out` is reused
/// so the wire reader formats without allocating per location.
///
/// Returns the location's object address when its mapping names the file
/// and carries a build id ([`ObjectAddress::is_build_id`]; any other is
/// ignored): the address is taken as one in the file's link-time address
/// space, which is what a mapping describing the file's own segment
/// (`memory_start` its virtual address, `file_offset` its offset) gives.
fn unsymbolized_name<'s, S: AsRef<str>>(
    out: &mut String,
    address: u64,
    mapping: Option<MappingRef>,
    strings: &Strings<'s, S>,
) -> Result<Option<ObjectAddress<'s>>> {
    out.clear();
    let mut object = None;
    let module = match mapping {
        Some(m) => {
            let path = strings.get(m.filename, "mapping.filename")?;
            let module = path.rsplit('/').next().unwrap_or(path);
            let offset = address
                .wrapping_sub(m.memory_start)
                .wrapping_add(m.file_offset);
            if !module.is_empty() {
                let build_id = strings.get(m.build_id, "mapping.build_id")?;
                if ObjectAddress::is_build_id(build_id) {
                    object = Some(ObjectAddress { build_id, address });
                }
            }
            (!module.is_empty()).then_some((module, offset))
        }
        None => None,
    };
    // Writing to a String cannot fail.
    let _ = match module {
        Some((module, offset)) => write!(out, "{module}+0x{offset:x}"),
        None => write!(out, "0x{address:x}"),
    };
    Ok(object)
}

/// Splits `module+0xoffset` into module and offset.
fn split_unsymbolized(name: &str) -> Option<(&str, u64)> {
    let (module, hex) = name.rsplit_once("+0x")?;
    Some((module, u64::from_str_radix(hex, 16).ok()?))
}

/// Builds a pprof string table, entry 0 being "".
#[derive(Default)]
struct StringTable {
    strings: Vec<String>,
    index: FxHashMap<String, i64>,
}

impl StringTable {
    fn intern(&mut self, s: &str) -> i64 {
        if self.strings.is_empty() {
            self.strings.push(String::new());
            self.index.insert(String::new(), 0);
        }
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}
