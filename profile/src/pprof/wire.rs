//! A zero-copy reader from `perftools.profiles.Profile` wire bytes straight
//! to the model, without building the prost message.
//!
//! The string table usually comes last, and everything else refers to it,
//! so reading takes two steps:
//!
//! 1. [`scan`] walks the top level once: it keeps each section's messages
//!    as slices of the buffer, the string table as `&str` slices (checked
//!    to be UTF-8), and the scalars; it counts samples and strings exactly
//!    as [`super::precheck`] does, storing nothing past a limit.
//! 2. [`convert`] then reads each section once, in the order
//!    [`Profile::from_pprof`] converts them (sample types, period type,
//!    functions, mappings, locations, samples), resolving references as it
//!    goes. Names are interned into the model's arena straight from the
//!    slices; per-sample scratch (location ids, values, the stack) lives in
//!    a few vectors reused from sample to sample.
//!
//! Every byte is checked as prost would: keys (no field 0, no key beyond
//! 32 bits, no wire type 6 or 7), varints (at most 10 bytes, the tenth at
//! most 1), lengths within the enclosing message, the wire type of every
//! known field (repeated scalars packed or not, as both are legal), UTF-8
//! in the string table, and unknown fields skipped by wire type. Groups
//! (wire types 3 and 4) are refused: pprof has none. So the reader accepts
//! exactly what `decode` accepts, groups aside.
//!
//! Errors: the prost path finds problems in a fixed order: framing of the
//! top level, the sample and string counts, any malformed byte anywhere,
//! the per-sample location and label counts, then conversion in section
//! order. Reading sections one at a time finds them in another order, so
//! when conversion fails, [`prost_order`] looks for what the prost path
//! would have reported first (a malformed byte, then a per-sample count)
//! and reports that instead. This costs nothing on success, and makes both
//! paths report the same reference and limit errors for the same bytes.

use rustc_hash::FxHashMap;

use super::{
    KernelFunctions, MappingRef, Strings, check_counts, first_string_not_empty, is_kernel,
    no_function, no_location, too_deep, too_many_labels, unsymbolized_name, wrong_value_count,
};
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::model::{FuncId, Function, Profile, SampleType};

/// Reads an uncompressed `perftools.profiles.Profile` into the model.
pub(super) fn profile(buf: &[u8], limits: &Limits) -> Result<Profile> {
    let sections = scan(buf, limits)?;
    convert(&sections, limits).map_err(|e| prost_order(buf, &sections, limits, e))
}

/// Calls `f(field number, payload of a length-delimited field)` for every
/// field of a protobuf message, in order, without decoding it: how a
/// message is counted before it is decoded. Stops at `f`'s first error, or
/// at a malformed field, which `wire` turns into the caller's error from a
/// description of what was wrong.
pub fn for_each_field<'a, E>(
    buf: &'a [u8],
    wire: impl Fn(String) -> E,
    mut f: impl FnMut(u64, Option<&'a [u8]>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut r = Reader::new(buf, "message");
    while !r.at_end() {
        let (key, value) = r.raw_field().map_err(|e| {
            wire(match e {
                Error::InvalidPprof { detail, .. } => detail,
                other => other.to_string(),
            })
        })?;
        let payload = match value {
            Value::Bytes(b) => Some(b),
            _ => None,
        };
        f(key >> 3, payload)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Wire primitives.

/// One field's payload. Fixed-width payloads are never used by pprof's
/// known fields, so only their presence is kept.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl Value<'_> {
    fn wire_type(self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64 => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32 => 5,
        }
    }
}

/// A malformed message: `message` names where in the profile it is.
#[cold]
fn malformed(message: &'static str, detail: impl Into<String>) -> Error {
    Error::InvalidPprof {
        field: message,
        detail: detail.into(),
    }
}

/// A position in one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The message being read, for errors ("sample", "location.line", ...).
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    // The primitives below are inlined into every message loop so that
    // their results stay in registers: as calls, each returned a
    // `Result<_, Error>` through memory, which cost more than the parsing.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64> {
        let (buf, pos) = (self.buf, self.pos);
        // Keys, lengths of small messages and most ids and string indices
        // of a profile take one or two bytes.
        if let Some(&b0) = buf.get(pos) {
            if b0 < 0x80 {
                self.pos = pos + 1;
                return Ok(u64::from(b0));
            }
            if let Some(&b1) = buf.get(pos + 1)
                && b1 < 0x80
            {
                self.pos = pos + 2;
                return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
            }
        }
        let (value, len) = varint_slow(buf.get(pos..).unwrap_or_default(), self.message)?;
        self.pos = pos + len;
        Ok(value)
    }

    /// Moves past `len` bytes, returning them.
    #[inline(always)]
    fn take(&mut self, len: u64, field: u64) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        match usize::try_from(len).ok().and_then(|n| rest.get(..n)) {
            Some(bytes) => {
                self.pos += bytes.len();
                Ok(bytes)
            }
            None => Err(past_end(self.message, field, len, rest.len())),
        }
    }

    /// The key and payload of one field whatever the key holds: a key with
    /// field number 0 or beyond 32 bits is returned as is (see [`scan`] for
    /// why), and only the wire type must be one that can be skipped.
    #[inline(always)]
    fn raw_field(&mut self) -> Result<(u64, Value<'a>)> {
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8, field)?;
                Value::Fixed64
            }
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len, field)?)
            }
            5 => {
                self.take(4, field)?;
                Value::Fixed32
            }
            other => return Err(bad_wire_type(self.message, field, other)),
        };
        Ok((key, value))
    }

    /// The next field, `None` at the end of the message.
    #[inline(always)]
    fn field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.at_end() {
            return Ok(None);
        }
        let (key, value) = self.raw_field()?;
        Ok(Some((check_key(key, self.message)?, value)))
    }
}

/// A varint at the start of `bytes` and its length in bytes, as prost reads
/// them: at most 10 bytes, the tenth holding bit 63 only. A free function
/// taking a slice so that the caller's `Reader` need not live in memory.
#[inline(never)]
fn varint_slow(bytes: &[u8], message: &'static str) -> Result<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(malformed(message, "varint overflows 64 bits"));
            }
            return Ok((value, i + 1));
        }
    }
    if bytes.len() < 10 {
        Err(malformed(message, "varint runs past the end"))
    } else {
        Err(malformed(message, "varint longer than 10 bytes"))
    }
}

/// The field number of a key, refusing what prost refuses.
#[inline(always)]
fn check_key(key: u64, message: &'static str) -> Result<u32> {
    match u32::try_from(key >> 3) {
        Ok(field) if field != 0 && key <= u64::from(u32::MAX) => Ok(field),
        _ => Err(bad_key(message, key)),
    }
}

// Errors are built out of line: the hot loops only test and branch.

#[cold]
#[inline(never)]
fn past_end(message: &'static str, field: u64, len: u64, left: usize) -> Error {
    malformed(
        message,
        format!("field {field} is {len} bytes long, beyond the {left} left in the message"),
    )
}

#[cold]
#[inline(never)]
fn bad_wire_type(message: &'static str, field: u64, wire_type: u64) -> Error {
    let detail = if matches!(wire_type, 3 | 4) {
        format!("field {field} is a group (wire type {wire_type}), which pprof never uses")
    } else {
        format!("field {field} has invalid wire type {wire_type}")
    };
    malformed(message, detail)
}

#[cold]
#[inline(never)]
fn bad_key(message: &'static str, key: u64) -> Error {
    if key >> 3 == 0 {
        malformed(message, "field number 0")
    } else {
        malformed(message, format!("key {key} beyond 32 bits"))
    }
}

/// Calls `f` with each varint of a packed repeated field.
#[inline]
fn for_each_packed(bytes: &[u8], message: &'static str, mut f: impl FnMut(u64)) -> Result<()> {
    let mut r = Reader::new(bytes, message);
    while !r.at_end() {
        f(r.varint()?);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The schema: what prost expects of each known field.

/// The messages of `profile.proto`, named by where they sit in a profile
/// (`ValueType` appears twice, as sample types and as the period type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Profile,
    SampleType,
    PeriodType,
    Sample,
    Label,
    Mapping,
    Location,
    Line,
    Function,
}

/// What a known field holds on the wire.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A single varint scalar (int64, uint64, bool).
    Scalar,
    /// A repeated varint scalar: one varint per field, or packed.
    Repeated,
    /// An embedded message.
    Message(Msg),
    /// A string (UTF-8 required).
    Text,
}

impl Msg {
    fn name(self) -> &'static str {
        match self {
            Msg::Profile => "profile",
            Msg::SampleType => "sample_type",
            Msg::PeriodType => "period_type",
            Msg::Sample => "sample",
            Msg::Label => "sample.label",
            Msg::Mapping => "mapping",
            Msg::Location => "location",
            Msg::Line => "location.line",
            Msg::Function => "function",
        }
    }

    /// The kind of a known field, `None` for a field the schema lacks
    /// (skipped, as protobuf requires of unknown fields).
    fn kind(self, field: u32) -> Option<Kind> {
        use Kind::{Message, Repeated, Scalar, Text};
        let kind = match (self, field) {
            (Msg::Profile, 1) => Message(Msg::SampleType),
            (Msg::Profile, 2) => Message(Msg::Sample),
            (Msg::Profile, 3) => Message(Msg::Mapping),
            (Msg::Profile, 4) => Message(Msg::Location),
            (Msg::Profile, 5) => Message(Msg::Function),
            (Msg::Profile, 6) => Text,
            (Msg::Profile, 7..=10 | 12 | 14) => Scalar,
            (Msg::Profile, 11) => Message(Msg::PeriodType),
            (Msg::Profile, 13) => Repeated,
            (Msg::SampleType | Msg::PeriodType, 1 | 2) => Scalar,
            (Msg::Sample, 1 | 2) => Repeated,
            (Msg::Sample, 3) => Message(Msg::Label),
            (Msg::Label, 1..=4) => Scalar,
            (Msg::Mapping, 1..=10) => Scalar,
            (Msg::Location, 1..=3 | 5) => Scalar,
            (Msg::Location, 4) => Message(Msg::Line),
            (Msg::Line, 1..=3) => Scalar,
            (Msg::Function, 1..=5) => Scalar,
            _ => return None,
        };
        Some(kind)
    }
}

/// Checks a field the caller does not read (or read with another wire type
/// than expected): a known field must have its wire type and well-formed
/// content, an unknown one is skipped.
fn check_field(msg: Msg, field: u32, value: Value<'_>) -> Result<()> {
    match (msg.kind(field), value) {
        (None, _) | (Some(Kind::Scalar | Kind::Repeated), Value::Varint(_)) => Ok(()),
        (Some(Kind::Repeated), Value::Bytes(packed)) => for_each_packed(packed, msg.name(), drop),
        (Some(Kind::Message(inner)), Value::Bytes(bytes)) => validate(inner, bytes),
        (Some(Kind::Text), Value::Bytes(bytes)) => std::str::from_utf8(bytes)
            .map(drop)
            .map_err(|_| malformed("string_table", "an entry is not UTF-8")),
        (Some(kind), _) => {
            let expected = match kind {
                Kind::Scalar => "0 (varint)",
                Kind::Repeated => "0 (varint) or 2 (packed)",
                Kind::Message(_) | Kind::Text => "2 (length-delimited)",
            };
            Err(malformed(
                msg.name(),
                format!(
                    "field {field} has wire type {}, expected {expected}",
                    value.wire_type()
                ),
            ))
        }
    }
}

/// Checks a whole message against the schema without converting anything.
fn validate(msg: Msg, bytes: &[u8]) -> Result<()> {
    let mut r = Reader::new(bytes, msg.name());
    while let Some((field, value)) = r.field()? {
        check_field(msg, field, value)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Step 1: the top level.

/// The top level of a profile: sections as slices of the buffer, the string
/// table as slices, scalars decoded.
///
/// Samples and strings stop being kept at their limits. Sample types,
/// mappings, locations and functions have no count in [`Limits`]: each
/// kept slice (16 bytes) stands for a message of at least 2 bytes, so these
/// vectors, like the id maps built from them, stay within a small multiple
/// of `max_decompressed_bytes`, far below what the prost message of the
/// same bytes takes.
#[derive(Default)]
struct Sections<'a> {
    strings: Vec<&'a str>,
    sample_types: Vec<&'a [u8]>,
    samples: Vec<&'a [u8]>,
    mappings: Vec<&'a [u8]>,
    locations: Vec<&'a [u8]>,
    functions: Vec<&'a [u8]>,
    /// Every occurrence of field 11: protobuf merges them, later fields
    /// overriding earlier ones.
    period_types: Vec<&'a [u8]>,
    time_nanos: i64,
    duration_nanos: i64,
    period: i64,
}

/// Walks the top level the way `decode` sees it: a framing error (bad
/// varint, length past the end, a wire type that cannot be skipped) is
/// reported at once, as `precheck` does; then the sample and string counts
/// (any field 2 or 6 counts, whatever its wire type, as in `precheck`);
/// only then the first error prost would find in the top level's content
/// (a bad key, a known field with the wrong wire type, a string that is not
/// UTF-8), which is why those are kept aside rather than returned.
fn scan<'a>(buf: &'a [u8], limits: &Limits) -> Result<Sections<'a>> {
    let mut s = Sections::default();
    let (mut samples, mut strings) = (0usize, 0usize);
    let mut deferred: Option<Error> = None;
    let mut r = Reader::new(buf, Msg::Profile.name());
    while !r.at_end() {
        let (key, value) = r.raw_field()?;
        match key >> 3 {
            2 => samples += 1,
            6 => strings += 1,
            _ => {}
        }
        if deferred.is_some() {
            continue;
        }
        let field = match check_key(key, r.message) {
            Ok(field) => field,
            Err(e) => {
                deferred = Some(e);
                continue;
            }
        };
        match (field, value) {
            (1, Value::Bytes(b)) => s.sample_types.push(b),
            // Past a limit, count but keep nothing: the count is refused below.
            (2, Value::Bytes(b)) => {
                if samples <= limits.max_samples {
                    s.samples.push(b);
                }
            }
            (3, Value::Bytes(b)) => s.mappings.push(b),
            (4, Value::Bytes(b)) => s.locations.push(b),
            (5, Value::Bytes(b)) => s.functions.push(b),
            (6, Value::Bytes(b)) => {
                if strings <= limits.max_strings {
                    match std::str::from_utf8(b) {
                        Ok(text) => s.strings.push(text),
                        Err(_) => {
                            deferred = Some(malformed(
                                "string_table",
                                format!("entry {} is not UTF-8", strings - 1),
                            ));
                        }
                    }
                }
            }
            (9, Value::Varint(v)) => s.time_nanos = v as i64,
            (10, Value::Varint(v)) => s.duration_nanos = v as i64,
            (11, Value::Bytes(b)) => s.period_types.push(b),
            (12, Value::Varint(v)) => s.period = v as i64,
            _ => {
                if let Err(e) = check_field(Msg::Profile, field, value) {
                    deferred = Some(e);
                }
            }
        }
    }
    check_counts(samples, strings, limits)?;
    match deferred {
        Some(e) => Err(e),
        None => Ok(s),
    }
}

// ---------------------------------------------------------------------------
// Step 2: the sections.

/// Ids to values: ids are usually dense from 1 (Go and Firewatch number
/// them so), so ids up to the number of entries index a vector, and any
/// other id goes to a hash map. Inserting an id again replaces its value,
/// as the prost path's `HashMap::insert` does.
struct IdMap<V> {
    dense: Vec<Option<V>>,
    sparse: FxHashMap<u64, V>,
}

impl<V: Copy> IdMap<V> {
    /// A map sized for `entries` values; the dense part is bounded by the
    /// number of messages, so by the input size.
    fn new(entries: usize) -> Self {
        IdMap {
            dense: vec![None; entries.saturating_add(1)],
            sparse: FxHashMap::default(),
        }
    }

    #[inline]
    fn insert(&mut self, id: u64, value: V) {
        match usize::try_from(id).ok().and_then(|i| self.dense.get_mut(i)) {
            Some(slot) => *slot = Some(value),
            None => {
                self.sparse.insert(id, value);
            }
        }
    }

    #[inline]
    fn get(&self, id: u64) -> Option<V> {
        match usize::try_from(id).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => *slot,
            None => self.sparse.get(&id).copied(),
        }
    }
}

/// Merges one `ValueType` occurrence into `(type, unit)`.
fn value_type(bytes: &[u8], msg: Msg, out: &mut (i64, i64)) -> Result<()> {
    let mut r = Reader::new(bytes, msg.name());
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => out.0 = v as i64,
            (2, Value::Varint(v)) => out.1 = v as i64,
            _ => check_field(msg, field, value)?,
        }
    }
    Ok(())
}

/// Converts the sections, in the order and with the checks of
/// [`Profile::from_pprof`].
fn convert(s: &Sections<'_>, limits: &Limits) -> Result<Profile> {
    let strings = Strings(&s.strings);
    if let Some(first) = s.strings.first()
        && !first.is_empty()
    {
        return Err(first_string_not_empty());
    }

    let mut sample_types = Vec::with_capacity(s.sample_types.len());
    for bytes in &s.sample_types {
        let mut t = (0, 0);
        value_type(bytes, Msg::SampleType, &mut t)?;
        sample_types.push(SampleType::new(
            strings.get(t.0, "sample_type.type")?,
            strings.get(t.1, "sample_type.unit")?,
        ));
    }
    let mut out = Profile::new(sample_types);
    out.time_nanos = s.time_nanos;
    out.duration_nanos = s.duration_nanos;
    out.period = s.period;
    if !s.period_types.is_empty() {
        let mut t = (0, 0);
        for bytes in &s.period_types {
            value_type(bytes, Msg::PeriodType, &mut t)?;
        }
        out.period_type = Some(SampleType::new(
            strings.get(t.0, "period_type.type")?,
            strings.get(t.1, "period_type.unit")?,
        ));
    }

    let mut functions: IdMap<FuncId> = IdMap::new(s.functions.len());
    for bytes in &s.functions {
        function(bytes, &strings, &mut out, &mut functions)?;
    }

    let mut mappings: IdMap<MappingRef> = IdMap::new(s.mappings.len());
    for bytes in &s.mappings {
        let (id, mut m) = mapping(bytes)?;
        m.kernel = is_kernel(m.filename, &strings);
        mappings.insert(id, m);
    }

    let mut locations = Locations {
        frames: Vec::with_capacity(s.locations.len()),
        ranges: IdMap::new(s.locations.len()),
        name: String::new(),
        kernel: KernelFunctions::default(),
    };
    for bytes in &s.locations {
        locations.read(bytes, &strings, &functions, &mappings, &mut out)?;
    }

    let mut scratch = SampleScratch::default();
    for bytes in &s.samples {
        scratch.read(bytes, limits, out.sample_types().len())?;
        scratch.add_to(&mut out, &locations, limits)?;
    }
    Ok(out)
}

/// Reads one `Function` and interns it; later ids replace earlier ones.
fn function(
    bytes: &[u8],
    strings: &Strings<'_, &str>,
    out: &mut Profile,
    functions: &mut IdMap<FuncId>,
) -> Result<()> {
    let (mut id, mut name, mut system_name, mut filename, mut start_line) = (0u64, 0, 0, 0, 0);
    let mut r = Reader::new(bytes, Msg::Function.name());
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => id = v,
            (2, Value::Varint(v)) => name = v as i64,
            (3, Value::Varint(v)) => system_name = v as i64,
            (4, Value::Varint(v)) => filename = v as i64,
            (5, Value::Varint(v)) => start_line = v as i64,
            _ => check_field(Msg::Function, field, value)?,
        }
    }
    let name = match strings.get(name, "function.name")? {
        "" => strings.get(system_name, "function.system_name")?,
        name => name,
    };
    let file = strings.get(filename, "function.filename")?;
    // A negative or huge start line means "unknown", as in the prost path.
    let line = u32::try_from(start_line).unwrap_or(0);
    functions.insert(id, out.intern_function(name, file, line));
    Ok(())
}

/// Reads one `Mapping`: its id and what naming unsymbolized frames needs.
fn mapping(bytes: &[u8]) -> Result<(u64, MappingRef)> {
    let mut id = 0;
    let mut m = MappingRef {
        memory_start: 0,
        file_offset: 0,
        filename: 0,
        build_id: 0,
        kernel: false,
    };
    let mut r = Reader::new(bytes, Msg::Mapping.name());
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => id = v,
            (2, Value::Varint(v)) => m.memory_start = v,
            (4, Value::Varint(v)) => m.file_offset = v,
            (5, Value::Varint(v)) => m.filename = v as i64,
            (6, Value::Varint(v)) => m.build_id = v as i64,
            _ => check_field(Msg::Mapping, field, value)?,
        }
    }
    Ok((id, m))
}

/// Every location's frames, outermost first, stored flat.
struct Locations {
    frames: Vec<FuncId>,
    /// Location id to its `frames[start..end]`.
    ranges: IdMap<(u32, u32)>,
    /// Reused to format unsymbolized names.
    name: String,
    kernel: KernelFunctions,
}

impl Locations {
    /// Reads one `Location`: its lines become frames (line[0] is the
    /// innermost inlined call, so they are reversed), or, without lines,
    /// one frame named after its mapping and address.
    fn read(
        &mut self,
        bytes: &[u8],
        strings: &Strings<'_, &str>,
        functions: &IdMap<FuncId>,
        mappings: &IdMap<MappingRef>,
        out: &mut Profile,
    ) -> Result<()> {
        let start = self.frames.len();
        let (mut id, mut mapping_id, mut address) = (0, 0, 0);
        let mut lines = 0usize;
        // The prost path looks lines up last to first and stops at the
        // first missing function, so the one to report is the last missing.
        let mut missing = None;
        let mut r = Reader::new(bytes, Msg::Location.name());
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (1, Value::Varint(v)) => id = v,
                (2, Value::Varint(v)) => mapping_id = v,
                (3, Value::Varint(v)) => address = v,
                (4, Value::Bytes(line)) => {
                    lines += 1;
                    let function_id = line_function(line)?;
                    match functions.get(function_id) {
                        Some(f) => self.frames.push(f),
                        None => missing = Some(function_id),
                    }
                }
                _ => check_field(Msg::Location, field, value)?,
            }
        }
        if let Some(function_id) = missing {
            return Err(no_function(function_id));
        }
        if lines == 0 {
            let object =
                unsymbolized_name(&mut self.name, address, mappings.get(mapping_id), strings)?;
            self.frames.push(out.intern(Function {
                address: object,
                ..Function::named(&self.name, "", 0)
            }));
        } else {
            self.frames[start..].reverse();
            if mappings.get(mapping_id).is_some_and(|m| m.kernel) {
                for f in &mut self.frames[start..] {
                    *f = self.kernel.mark(out, *f);
                }
            }
        }
        // Each frame took at least two bytes of a buffer the model indexes
        // with u32 too; refuse rather than wrap if a caller's limit allows more.
        let range = u32::try_from(start)
            .ok()
            .zip(u32::try_from(self.frames.len()).ok())
            .ok_or_else(|| malformed(Msg::Location.name(), "more than 2^32 frames in all"))?;
        self.ranges.insert(id, range);
        Ok(())
    }

    fn get(&self, id: u64) -> Option<&[FuncId]> {
        let (start, end) = self.ranges.get(id)?;
        self.frames.get(start as usize..end as usize)
    }
}

/// The function id of one `Line`.
fn line_function(bytes: &[u8]) -> Result<u64> {
    let mut function_id = 0;
    let mut r = Reader::new(bytes, Msg::Line.name());
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => function_id = v,
            _ => check_field(Msg::Line, field, value)?,
        }
    }
    Ok(function_id)
}

/// One sample as read, in buffers reused from sample to sample.
#[derive(Default)]
struct SampleScratch {
    /// Location ids as on the wire (leaf first), at most the depth limit.
    ids: Vec<u64>,
    /// Values, at most one more than the sample types (enough to tell a
    /// wrong count; the count itself is kept in `value_count`).
    values: Vec<i64>,
    value_count: usize,
    /// The stack being built, root first.
    stack: Vec<FuncId>,
}

impl SampleScratch {
    /// Reads one `Sample`, applying `decode`'s per-sample limits (raw
    /// location count, then labels) and the value count check. Labels are
    /// checked for well-formedness and counted, not kept.
    fn read(&mut self, bytes: &[u8], limits: &Limits, width: usize) -> Result<()> {
        self.ids.clear();
        self.values.clear();
        let (mut id_count, mut value_count, mut labels) = (0usize, 0usize, 0usize);
        let (ids, values) = (&mut self.ids, &mut self.values);
        let max_ids = limits.max_stack_depth;
        let mut push_id = |v: u64| {
            id_count += 1;
            if id_count <= max_ids {
                ids.push(v);
            }
        };
        let mut push_value = |v: u64| {
            value_count += 1;
            if value_count <= width {
                values.push(v as i64);
            }
        };
        let mut r = Reader::new(bytes, Msg::Sample.name());
        while let Some((field, value)) = r.field()? {
            match (field, value) {
                (1, Value::Varint(v)) => push_id(v),
                (1, Value::Bytes(packed)) => for_each_packed(packed, r.message, &mut push_id)?,
                (2, Value::Varint(v)) => push_value(v),
                (2, Value::Bytes(packed)) => for_each_packed(packed, r.message, &mut push_value)?,
                (3, Value::Bytes(label)) => {
                    labels += 1;
                    validate(Msg::Label, label)?;
                }
                _ => check_field(Msg::Sample, field, value)?,
            }
        }
        if id_count > limits.max_stack_depth {
            return Err(too_deep(limits));
        }
        if labels > limits.max_labels_per_sample {
            return Err(too_many_labels(limits));
        }
        self.value_count = value_count;
        Ok(())
    }

    /// Adds the sample just read to `out`.
    fn add_to(&mut self, out: &mut Profile, locations: &Locations, limits: &Limits) -> Result<()> {
        let width = out.sample_types().len();
        if self.value_count != width {
            return Err(wrong_value_count(self.value_count, width));
        }
        self.stack.clear();
        // Root first: the wire lists the leaf first. Past the depth limit
        // stop copying frames, but go on looking ids up: the prost path
        // reports a missing location before an over-deep stack.
        let mut too_deep_stack = false;
        for &id in self.ids.iter().rev() {
            let frames = locations.get(id).ok_or_else(|| no_location(id))?;
            if too_deep_stack || self.stack.len() + frames.len() > limits.max_stack_depth {
                too_deep_stack = true;
            } else if let [frame] = frames {
                // Most locations are one frame: a push, not a memmove call.
                self.stack.push(*frame);
            } else {
                self.stack.extend_from_slice(frames);
            }
        }
        if too_deep_stack {
            return Err(too_deep(limits));
        }
        out.add_sample(&self.stack, &self.values);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Errors in the prost path's order.

/// The error the prost path would report for a profile on which conversion
/// failed with `e`: a malformed byte anywhere first (prost decodes the whole
/// message before anything is converted), then a sample over the location
/// or label limit (`decode` checks every sample before conversion starts),
/// and only then `e`. Runs on failure only.
fn prost_order(buf: &[u8], sections: &Sections<'_>, limits: &Limits, e: Error) -> Error {
    if let Err(wire) = validate(Msg::Profile, buf) {
        return wire;
    }
    for bytes in &sections.samples {
        if let Err(limit) = sample_counts(bytes, limits) {
            return limit;
        }
    }
    e
}

/// `decode`'s per-sample limits, on a sample known to be well-formed.
fn sample_counts(bytes: &[u8], limits: &Limits) -> Result<()> {
    let (mut ids, mut labels) = (0usize, 0usize);
    let mut r = Reader::new(bytes, Msg::Sample.name());
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(_)) => ids += 1,
            (1, Value::Bytes(packed)) => for_each_packed(packed, r.message, |_| ids += 1)?,
            (3, _) => labels += 1,
            _ => {}
        }
    }
    if ids > limits.max_stack_depth {
        return Err(too_deep(limits));
    }
    if labels > limits.max_labels_per_sample {
        return Err(too_many_labels(limits));
    }
    Ok(())
}
