//! The wire reader behind `Profile::from_pprof_bytes` against the prost path
//! (`pprof::decode` + `Profile::from_pprof`): the same model, the same
//! reference and limit errors, and both refusing malformed bytes.

use firewatch_profile::pprof::{self, proto};
use firewatch_profile::{Error, Limits, Profile, SampleType, decompress, gzip, zstd};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::properties::arb_profile;
use crate::support::canonical;

fn prost_path(bytes: &[u8], limits: &Limits) -> Result<Profile, Error> {
    Profile::from_pprof(&pprof::decode(bytes, limits)?, limits)
}

fn small() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_samples: 6,
        max_stack_depth: 10,
        max_strings: 10,
        max_labels_per_sample: 3,
    }
}

/// Function (name, file, line).
type Func = (String, String, u32);
/// Stack (function ids, root first) and its values.
type Row = (Vec<u32>, Vec<i64>);
/// time, duration, period type, period.
type Meta = (i64, i64, Option<SampleType>, i64);

/// Everything observable of a profile, in insertion order: both readers
/// intern in the same order, so this is stricter than `canonical`.
fn shape(p: &Profile) -> (Vec<SampleType>, Vec<Func>, Vec<Row>, Meta) {
    let functions = p
        .functions()
        .map(|f| (f.name.to_owned(), f.file.to_owned(), f.line))
        .collect();
    let rows = p.samples().map(|(s, v)| (s.to_vec(), v.to_vec())).collect();
    let meta = (
        p.time_nanos,
        p.duration_nanos,
        p.period_type.clone(),
        p.period,
    );
    (p.sample_types().to_vec(), functions, rows, meta)
}

/// The prost path's error is about malformed bytes: prost's own, or the
/// framing `decode` checks before prost runs (reported for "profile").
fn malformed_bytes(e: &Error) -> bool {
    matches!(
        e,
        Error::Protobuf(_)
            | Error::InvalidPprof {
                field: "profile",
                ..
            }
    )
}

fn is_group(e: &Error) -> bool {
    matches!(e, Error::InvalidPprof { detail, .. } if detail.contains("group"))
}

/// How the two readers differ on `bytes`, if they do.
fn disagreement(bytes: &[u8], limits: &Limits) -> Option<String> {
    let fast = Profile::from_pprof_bytes(bytes, limits);
    let slow = prost_path(bytes, limits);
    match (&fast, &slow) {
        (Ok(a), Ok(b)) => (shape(a) != shape(b)).then(|| {
            format!(
                "models differ:\n fast  {:?}\n prost {:?}",
                shape(a),
                shape(b)
            )
        }),
        // Documented: the wire reader refuses groups, which prost skips
        // when they sit in a nested message as unknown fields.
        (Err(f), _) if is_group(f) => None,
        // Malformed bytes: the wire reader names the message instead of
        // repeating prost's wording.
        (Err(Error::InvalidPprof { .. }), Err(s)) if malformed_bytes(s) => None,
        (Err(f), Err(s)) => (f.to_string() != s.to_string())
            .then(|| format!("errors differ: fast {f:?}, prost {s:?}")),
        _ => Some(format!(
            "fast {:?}, prost {:?}",
            fast.as_ref().map(shape),
            slow.as_ref().map(shape)
        )),
    }
}

fn assert_agree(bytes: &[u8], limits: &Limits) {
    if let Some(why) = disagreement(bytes, limits) {
        panic!("{why}");
    }
}

fn prop_agree(bytes: &[u8], limits: &Limits) -> Result<(), TestCaseError> {
    match disagreement(bytes, limits) {
        Some(why) => Err(TestCaseError::fail(why)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Hand-built pprof messages.

const NAMES: &[&str] = &[
    "main",
    "run",
    "é",
    "a b",
    "/usr/lib/libc.so.6",
    "libfoo.so",
    "",
    "x::y<'_>",
    "/",
    "cpu",
    "nanoseconds",
];

/// A string reference: mostly in the table, rarely past its end.
type StrRef = (Index, bool);
/// A reference to an id defined elsewhere: mostly one that exists.
type IdRef = (Index, bool);

#[derive(Clone, Debug)]
struct Spec {
    first_not_empty: bool,
    strings: Vec<&'static str>,
    sample_types: Vec<(StrRef, StrRef)>,
    period_type: Option<(StrRef, StrRef)>,
    /// id, name, system name, file, start line
    functions: Vec<(u64, StrRef, StrRef, StrRef, i64)>,
    /// id, memory start, file offset, file name
    mappings: Vec<(u64, u64, u64, StrRef)>,
    /// id, mapping, address, functions of its lines (line[0] innermost)
    locations: Vec<(u64, IdRef, u64, Vec<IdRef>)>,
    /// locations (leaf first), value count off by, labels
    samples: Vec<(Vec<IdRef>, i8, usize)>,
    scalars: (i64, i64, i64),
}

fn str_ref() -> impl Strategy<Value = StrRef> {
    (any::<Index>(), prop::bool::weighted(0.01))
}

fn id_ref() -> impl Strategy<Value = IdRef> {
    (any::<Index>(), prop::bool::weighted(0.02))
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let head = (
        prop::bool::weighted(0.03),
        prop::collection::vec(prop::sample::select(NAMES), 0..12),
        prop::collection::vec((str_ref(), str_ref()), 0..3),
        prop::option::of((str_ref(), str_ref())),
        (
            any::<i64>(),
            0i64..1_000_000,
            prop_oneof![Just(0i64), any::<i64>()],
        ),
    );
    let body = (
        prop::collection::vec((0u64..7, str_ref(), str_ref(), str_ref(), -2i64..300), 0..8),
        prop::collection::vec((0u64..4, any::<u64>(), any::<u64>(), str_ref()), 0..3),
        prop::collection::vec(
            (
                1u64..12,
                id_ref(),
                any::<u64>(),
                prop::collection::vec(id_ref(), 0..4),
            ),
            0..10,
        ),
        prop::collection::vec(
            (
                prop::collection::vec(id_ref(), 0..6),
                prop_oneof![40 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
                prop_oneof![6 => Just(0usize), 3 => 1usize..3, 1 => 3usize..6],
            ),
            0..9,
        ),
    );
    (head, body).prop_map(
        |((first_not_empty, strings, sample_types, period_type, scalars), body)| {
            let (functions, mappings, locations, samples) = body;
            Spec {
                first_not_empty,
                strings,
                sample_types,
                period_type,
                functions,
                mappings,
                locations,
                samples,
                scalars,
            }
        },
    )
}

/// Builds the message a spec describes, references resolved.
fn build(spec: &Spec) -> proto::Profile {
    let mut string_table = vec![if spec.first_not_empty { "x" } else { "" }.to_owned()];
    string_table.extend(spec.strings.iter().map(|s| s.to_string()));
    let n = string_table.len();
    let s = |&(i, bad): &StrRef| -> i64 {
        if bad {
            (n + i.index(3)) as i64
        } else {
            i.index(n) as i64
        }
    };
    let pick = |ids: &[u64], &(i, bad): &IdRef| -> u64 {
        if bad || ids.is_empty() {
            // Missing, and not always the same id, so which of several
            // missing ids gets reported is checked too.
            99 + i.index(3) as u64
        } else {
            ids[i.index(ids.len())]
        }
    };
    let value_type = |(t, u): &(StrRef, StrRef)| proto::ValueType {
        r#type: s(t),
        unit: s(u),
    };
    let function: Vec<proto::Function> = spec
        .functions
        .iter()
        .map(
            |(id, name, system_name, filename, start_line)| proto::Function {
                id: *id,
                name: s(name),
                system_name: s(system_name),
                filename: s(filename),
                start_line: *start_line,
            },
        )
        .collect();
    let mapping: Vec<proto::Mapping> = spec
        .mappings
        .iter()
        .map(|(id, memory_start, file_offset, filename)| proto::Mapping {
            id: *id,
            memory_start: *memory_start,
            memory_limit: memory_start.wrapping_add(0x1000),
            file_offset: *file_offset,
            filename: s(filename),
            build_id: 0,
            has_functions: true,
            ..Default::default()
        })
        .collect();
    let function_ids: Vec<u64> = function.iter().map(|f| f.id).collect();
    let mapping_ids: Vec<u64> = mapping.iter().map(|m| m.id).collect();
    let location: Vec<proto::Location> = spec
        .locations
        .iter()
        .map(|(id, m, address, lines)| proto::Location {
            id: *id,
            mapping_id: pick(&mapping_ids, m),
            address: *address,
            line: lines
                .iter()
                .enumerate()
                .map(|(i, f)| proto::Line {
                    function_id: pick(&function_ids, f),
                    line: i as i64 + 1,
                    column: 0,
                })
                .collect(),
            is_folded: lines.len() > 1,
        })
        .collect();
    let location_ids: Vec<u64> = location.iter().map(|l| l.id).collect();
    let width = spec.sample_types.len();
    let sample = spec
        .samples
        .iter()
        .enumerate()
        .map(|(i, (locs, off, labels))| proto::Sample {
            location_id: locs.iter().map(|l| pick(&location_ids, l)).collect(),
            value: (0..(width as i64 + i64::from(*off)).max(0))
                .map(|v| v * 1000 + i as i64 - 3)
                .collect(),
            label: (0..*labels)
                .map(|k| proto::Label {
                    key: 1,
                    str: if k % 2 == 0 { 2 } else { 0 },
                    num: k as i64,
                    num_unit: 0,
                })
                .collect(),
        })
        .collect();
    proto::Profile {
        sample_type: spec.sample_types.iter().map(value_type).collect(),
        sample,
        mapping,
        location,
        function,
        string_table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: spec.scalars.0,
        duration_nanos: spec.scalars.1,
        period_type: spec.period_type.as_ref().map(value_type),
        period: spec.scalars.2,
        comment: vec![1, 2],
        default_sample_type: 0,
    }
}

/// A small deterministic generator for layout choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn varint_field(tag: u32, v: u64) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(tag, WireType::Varint, &mut b);
    encode_varint(v, &mut b);
    b
}

fn bytes_field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut b);
    encode_varint(payload.len() as u64, &mut b);
    b.extend_from_slice(payload);
    b
}

/// An unknown field of a random wire type, or nothing.
fn noise(rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::new();
    match rng.next() % 8 {
        0 => b = varint_field(100, rng.next()),
        1 => {
            encode_key(101, WireType::SixtyFourBit, &mut b);
            b.extend_from_slice(&rng.next().to_le_bytes());
        }
        2 => {
            encode_key(102, WireType::ThirtyTwoBit, &mut b);
            b.extend_from_slice(&[1, 2, 3, 4]);
        }
        3 => b = bytes_field(103, b"not a pprof field"),
        _ => {}
    }
    b
}

/// The chunks of one field, in order.
struct Group(Vec<Vec<u8>>);

/// A scalar: sometimes omitted when zero (as prost does), sometimes
/// preceded by a decoy occurrence that the real one must override.
fn scalar(rng: &mut Rng, tag: u32, v: u64) -> Group {
    let mut chunks = Vec::new();
    if rng.one_in(4) {
        chunks.push(varint_field(tag, rng.next() >> 40));
    }
    if v != 0 || !chunks.is_empty() || rng.one_in(2) {
        chunks.push(varint_field(tag, v));
    }
    Group(chunks)
}

/// A repeated varint field in runs, each packed or one field per value,
/// with the odd empty packed run (legal, and adds nothing).
fn repeated(rng: &mut Rng, tag: u32, values: &[u64]) -> Group {
    let mut chunks = Vec::new();
    let mut rest = values;
    while !rest.is_empty() || rng.one_in(6) {
        let take = if rest.is_empty() {
            0
        } else {
            1 + (rng.next() % rest.len() as u64) as usize
        };
        let (run, tail) = rest.split_at(take);
        rest = tail;
        if rng.one_in(2) {
            chunks.extend(run.iter().map(|&v| varint_field(tag, v)));
        } else {
            let mut packed = Vec::new();
            for &v in run {
                encode_varint(v, &mut packed);
            }
            chunks.push(bytes_field(tag, &packed));
        }
        if take == 0 {
            break;
        }
    }
    Group(chunks)
}

fn messages(tag: u32, payloads: Vec<Vec<u8>>) -> Group {
    Group(payloads.iter().map(|p| bytes_field(tag, p)).collect())
}

/// Lays out a message: groups interleaved at random (each field's own
/// chunks keep their order, which is what protobuf preserves) or each group
/// whole in a random order, with unknown fields between.
fn lay_out(rng: &mut Rng, mut groups: Vec<Group>) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.one_in(3) {
        // Whole groups, shuffled.
        for i in (1..groups.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            groups.swap(i, j);
        }
        for g in groups {
            for chunk in g.0 {
                out.extend(noise(rng));
                out.extend(chunk);
            }
        }
    } else {
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> =
            groups.into_iter().map(|g| g.0.into()).collect();
        queues.retain(|q| !q.is_empty());
        while !queues.is_empty() {
            let i = (rng.next() % queues.len() as u64) as usize;
            if let Some(chunk) = queues[i].pop_front() {
                out.extend(noise(rng));
                out.extend(chunk);
            }
            if queues[i].is_empty() {
                queues.swap_remove(i);
            }
        }
    }
    out.extend(noise(rng));
    out
}

fn encode_value_type(rng: &mut Rng, t: &proto::ValueType) -> Vec<u8> {
    let groups = vec![
        scalar(rng, 1, t.r#type as u64),
        scalar(rng, 2, t.unit as u64),
    ];
    lay_out(rng, groups)
}

/// Encodes `p` by hand, the way no single encoder would but every decoder
/// must accept: fields in any order, repeated scalars packed and not,
/// unknown fields, scalars given twice, the period type split in two.
fn encode_by_hand(p: &proto::Profile, seed: u64) -> Vec<u8> {
    let rng = &mut Rng(seed);
    let mut groups = Vec::new();
    let sample_types = p
        .sample_type
        .iter()
        .map(|t| encode_value_type(rng, t))
        .collect();
    groups.push(messages(1, sample_types));
    let mut samples = Vec::new();
    for s in &p.sample {
        let values: Vec<u64> = s.value.iter().map(|&v| v as u64).collect();
        let labels = s
            .label
            .iter()
            .map(|l| {
                let g = vec![
                    scalar(rng, 1, l.key as u64),
                    scalar(rng, 2, l.str as u64),
                    scalar(rng, 3, l.num as u64),
                    scalar(rng, 4, l.num_unit as u64),
                ];
                lay_out(rng, g)
            })
            .collect();
        let g = vec![
            repeated(rng, 1, &s.location_id),
            repeated(rng, 2, &values),
            messages(3, labels),
        ];
        samples.push(lay_out(rng, g));
    }
    groups.push(messages(2, samples));
    let mut mappings = Vec::new();
    for m in &p.mapping {
        let g = vec![
            scalar(rng, 1, m.id),
            scalar(rng, 2, m.memory_start),
            scalar(rng, 3, m.memory_limit),
            scalar(rng, 4, m.file_offset),
            scalar(rng, 5, m.filename as u64),
            scalar(rng, 6, m.build_id as u64),
            scalar(rng, 7, u64::from(m.has_functions)),
            scalar(rng, 8, u64::from(m.has_filenames)),
            scalar(rng, 9, u64::from(m.has_line_numbers)),
            scalar(rng, 10, u64::from(m.has_inline_frames)),
        ];
        mappings.push(lay_out(rng, g));
    }
    groups.push(messages(3, mappings));
    let mut locations = Vec::new();
    for l in &p.location {
        let lines = l
            .line
            .iter()
            .map(|line| {
                let g = vec![
                    scalar(rng, 1, line.function_id),
                    scalar(rng, 2, line.line as u64),
                    scalar(rng, 3, line.column as u64),
                ];
                lay_out(rng, g)
            })
            .collect();
        let g = vec![
            scalar(rng, 1, l.id),
            scalar(rng, 2, l.mapping_id),
            scalar(rng, 3, l.address),
            messages(4, lines),
            scalar(rng, 5, u64::from(l.is_folded)),
        ];
        locations.push(lay_out(rng, g));
    }
    groups.push(messages(4, locations));
    let mut functions = Vec::new();
    for f in &p.function {
        let g = vec![
            scalar(rng, 1, f.id),
            scalar(rng, 2, f.name as u64),
            scalar(rng, 3, f.system_name as u64),
            scalar(rng, 4, f.filename as u64),
            scalar(rng, 5, f.start_line as u64),
        ];
        functions.push(lay_out(rng, g));
    }
    groups.push(messages(5, functions));
    groups.push(Group(
        p.string_table
            .iter()
            .map(|s| bytes_field(6, s.as_bytes()))
            .collect(),
    ));
    groups.push(scalar(rng, 7, p.drop_frames as u64));
    groups.push(scalar(rng, 8, p.keep_frames as u64));
    groups.push(scalar(rng, 9, p.time_nanos as u64));
    groups.push(scalar(rng, 10, p.duration_nanos as u64));
    if let Some(t) = &p.period_type {
        // Split in two messages: protobuf merges them, field by field.
        let split = rng.one_in(2);
        let mut chunks = Vec::new();
        if split {
            let mut first = varint_field(1, t.r#type as u64);
            first.extend(varint_field(2, rng.next() >> 40));
            chunks.push(bytes_field(11, &first));
            chunks.push(bytes_field(11, &varint_field(2, t.unit as u64)));
        } else {
            chunks.push(bytes_field(11, &encode_value_type(rng, t)));
        }
        groups.push(Group(chunks));
    }
    groups.push(scalar(rng, 12, p.period as u64));
    let comments: Vec<u64> = p.comment.iter().map(|&c| c as u64).collect();
    groups.push(repeated(rng, 13, &comments));
    groups.push(scalar(rng, 14, p.default_sample_type as u64));
    lay_out(rng, groups)
}

/// Byte edits: (where, byte, what: set, insert, remove or truncate).
fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    for &(at, byte, what) in edits {
        if bytes.is_empty() {
            bytes.push(byte);
            continue;
        }
        let i = at.index(bytes.len());
        match what % 4 {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn model_profiles_read_the_same_both_ways(p in arb_profile()) {
        let bytes = p.to_pprof_bytes();
        prop_agree(&bytes, &Limits::default())?;
        let back = Profile::from_pprof_bytes(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(canonical(&back), canonical(&p));
        prop_assert_eq!(back.sample_types(), p.sample_types());
    }

    #[test]
    fn hand_built_profiles_read_the_same_both_ways(
        spec in arb_spec(),
        seed in any::<u64>(),
        tight in any::<bool>(),
    ) {
        let p = build(&spec);
        let limits = if tight { small() } else { Limits::default() };
        prop_agree(&pprof::encode(&p), &limits)?;
        let hand = encode_by_hand(&p, seed);
        // The layout differs, the content must not: prost reads it back.
        prop_assert_eq!(&proto::Profile::decode(&*hand).unwrap(), &p);
        prop_agree(&hand, &limits)?;
        prop_agree(&zstd(&hand, 1).unwrap(), &limits)?;
        prop_agree(&gzip(&hand), &limits)?;
    }

    #[test]
    fn mutated_profiles_are_refused_or_read_alike(
        spec in arb_spec(),
        seed in any::<u64>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let hand = encode_by_hand(&build(&spec), seed);
        prop_agree(&mutate(hand, &edits), &small())?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_both_ways_agree(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_agree(&bytes, &Limits::default())?;
        prop_agree(&bytes, &small())?;
    }

    #[test]
    fn one_shot_zstd_matches_the_streaming_decoder(
        spec in arb_spec(),
        seed in any::<u64>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), any::<u8>()), 0..3),
        checksum in any::<bool>(),
    ) {
        let raw = encode_by_hand(&build(&spec), seed);
        let mut encoder = ::zstd::bulk::Compressor::new(3).unwrap();
        encoder.include_checksum(checksum).unwrap();
        let framed = mutate(encoder.compress(&raw).unwrap(), &edits);
        let limits = Limits::default();
        // `decompress` is the streaming decoder alone.
        let streamed = decompress(&framed, limits.max_decompressed_bytes)
            .and_then(|raw| Profile::from_pprof_bytes(&raw, &limits));
        match (Profile::from_pprof_bytes(&framed, &limits), streamed) {
            (Ok(a), Ok(b)) => prop_assert_eq!(shape(&a), shape(&b)),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "one-shot {:?}, streaming {:?}", a.map(|p| shape(&p)), b.map(|p| shape(&p))),
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed cases.

fn base() -> proto::Profile {
    crate::support::folded(&[("main;work;hot", 3), ("main;idle", 2)]).to_pprof()
}

fn key(tag: u32, wire_type: WireType) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(tag, wire_type, &mut b);
    b
}

fn fast_err(bytes: &[u8]) -> Error {
    match Profile::from_pprof_bytes(bytes, &Limits::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn go_shaped_fixture_reads_the_same_both_ways() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cli/tests/data/checkout-go.cpu.pb.gz"
    ))
    .expect("fixture present");
    assert_agree(&bytes, &Limits::default());
    let p = Profile::from_pprof_bytes(&bytes, &Limits::default()).unwrap();
    assert!(p.stack_count() > 0);
    assert_eq!(p.sample_types().len(), 2);
    assert_eq!(p.period, 10_000_000);
}

#[test]
fn string_table_last_and_unpacked_ids_read_alike() {
    let p = base();
    let mut bytes = Vec::new();
    for t in &p.sample_type {
        prost::encoding::message::encode(1, t, &mut bytes);
    }
    for s in &p.sample {
        let mut m = Vec::new();
        prost::encoding::uint64::encode_repeated(1, &s.location_id, &mut m);
        prost::encoding::int64::encode_repeated(2, &s.value, &mut m);
        bytes.extend(bytes_field(2, &m));
    }
    for m in &p.mapping {
        prost::encoding::message::encode(3, m, &mut bytes);
    }
    for l in &p.location {
        prost::encoding::message::encode(4, l, &mut bytes);
    }
    for f in &p.function {
        prost::encoding::message::encode(5, f, &mut bytes);
    }
    prost::encoding::string::encode_repeated(6, &p.string_table, &mut bytes);
    // Strings first, then the rest reversed.
    let mut reversed = Vec::new();
    prost::encoding::string::encode_repeated(6, &p.string_table, &mut reversed);
    for f in p.function.iter().rev() {
        prost::encoding::message::encode(5, f, &mut reversed);
    }
    for l in &p.location {
        prost::encoding::message::encode(4, l, &mut reversed);
    }
    for s in &p.sample {
        prost::encoding::message::encode(2, s, &mut reversed);
    }
    for t in &p.sample_type {
        prost::encoding::message::encode(1, t, &mut reversed);
    }
    let want = canonical(&Profile::from_pprof(&p, &Limits::default()).unwrap());
    for bytes in [bytes, reversed] {
        assert_agree(&bytes, &Limits::default());
        let got = Profile::from_pprof_bytes(&bytes, &Limits::default()).unwrap();
        assert_eq!(canonical(&got), want);
    }
}

#[test]
fn malformed_wire_is_an_error_naming_the_message() {
    let good = pprof::encode(&base());
    // An 11-byte varint, and a 10-byte one overflowing 64 bits, as a sample's value.
    let mut long = key(9, WireType::Varint);
    long.extend([0xff; 10]);
    long.push(0x01);
    let mut overflow = key(9, WireType::Varint);
    overflow.extend([0xff; 9]);
    overflow.push(0x02);
    // A length past the end of the buffer.
    let mut past_end = key(2, WireType::LengthDelimited);
    past_end.push(0x7f);
    past_end.extend([0; 3]);
    // A sample whose location_id is a fixed64.
    let mut wrong_type = key(1, WireType::SixtyFourBit);
    wrong_type.extend([0; 8]);
    let wrong_type = bytes_field(2, &wrong_type);
    // A string that is not UTF-8.
    let not_utf8 = bytes_field(6, &[0xff, 0xfe]);
    // A group as an unknown field of a location, which prost skips.
    let mut group = key(50, WireType::StartGroup);
    group.extend(varint_field(1, 7));
    group.extend(key(50, WireType::EndGroup));
    let group = bytes_field(4, &group);
    // Field number 0.
    let field_zero = vec![0x00, 0x01];

    let cases: [(&str, Vec<u8>, &str, &str); 7] = [
        (
            "long varint",
            long,
            "profile",
            "varint longer than 10 bytes",
        ),
        ("overflow", overflow, "profile", "varint overflows 64 bits"),
        ("past end", past_end, "profile", "beyond the 3 left"),
        (
            "wrong type",
            wrong_type,
            "sample",
            "field 1 has wire type 1",
        ),
        ("not utf-8", not_utf8, "string_table", "not UTF-8"),
        ("group", group, "location", "group"),
        ("field 0", field_zero, "profile", "field number 0"),
    ];
    for (name, extra, want_field, want_detail) in cases {
        let mut bytes = good.clone();
        bytes.extend(&extra);
        match fast_err(&bytes) {
            Error::InvalidPprof { field, detail } => {
                assert_eq!(field, want_field, "{name}: {detail}");
                assert!(detail.contains(want_detail), "{name}: {detail}");
            }
            other => panic!("{name}: {other}"),
        }
        let prost = prost_path(&bytes, &Limits::default());
        if name == "group" {
            // The one documented difference: prost skips the group.
            assert!(prost.is_ok());
        } else {
            assert!(prost.is_err(), "{name}");
        }
    }
}

/// A profile whose last `section` element (or a new period type) carries
/// `extra` fields after its own, in a message nested `depth` deep: with no
/// extra fields it reads fine, so any error is the extra fields' doing.
fn with_extra(section: &str, extra: &[u8]) -> Vec<u8> {
    let mut p = base();
    let message = |m: &dyn Fn(&mut Vec<u8>), extra: &[u8]| {
        let mut b = Vec::new();
        m(&mut b);
        b.extend_from_slice(extra);
        b
    };
    let (tag, payload) = match section {
        "profile" => {
            let mut bytes = pprof::encode(&p);
            bytes.extend_from_slice(extra);
            return bytes;
        }
        "sample_type" => {
            let t = p.sample_type.remove(0);
            (1, message(&|b| t.encode_raw(b), extra))
        }
        "period_type" => {
            let t = proto::ValueType { r#type: 1, unit: 2 };
            (11, message(&|b| t.encode_raw(b), extra))
        }
        "sample" => {
            let s = p.sample.pop().unwrap();
            (2, message(&|b| s.encode_raw(b), extra))
        }
        "sample.label" => {
            let s = p.sample.pop().unwrap();
            let label = message(&|b| proto::Label::default().encode_raw(b), extra);
            (2, message(&|b| s.encode_raw(b), &bytes_field(3, &label)))
        }
        "mapping" => {
            let m = p.mapping.pop().unwrap();
            (3, message(&|b| m.encode_raw(b), extra))
        }
        "location" => {
            let l = p.location.pop().unwrap();
            (4, message(&|b| l.encode_raw(b), extra))
        }
        "location.line" => {
            let mut l = p.location.pop().unwrap();
            let line = l.line.pop().unwrap();
            let line = message(&|b| line.encode_raw(b), extra);
            (4, message(&|b| l.encode_raw(b), &bytes_field(4, &line)))
        }
        "function" => {
            let f = p.function.pop().unwrap();
            (5, message(&|b| f.encode_raw(b), extra))
        }
        other => panic!("no section {other}"),
    };
    let mut bytes = pprof::encode(&p);
    bytes.extend(bytes_field(tag, &payload));
    bytes
}

#[test]
fn every_known_field_with_the_wrong_wire_type_is_refused() {
    // Each message's known fields by what they hold: 's' a scalar, 'r' a
    // repeated scalar, 'm' a message or a string.
    let messages = [
        ("profile", "mmmmmmssssmsrs"),
        ("sample_type", "ss"),
        ("period_type", "ss"),
        ("sample", "rrm"),
        ("sample.label", "ssss"),
        ("mapping", "ssssssssss"),
        ("location", "sssms"),
        ("location.line", "sss"),
        ("function", "sssss"),
    ];
    for (message, kinds) in messages {
        let fine = with_extra(message, &[]);
        assert!(
            Profile::from_pprof_bytes(&fine, &Limits::default()).is_ok(),
            "{message}"
        );
        assert_agree(&fine, &Limits::default());
        for (i, kind) in kinds.chars().enumerate() {
            let tag = i as u32 + 1;
            let mut fixed32 = key(tag, WireType::ThirtyTwoBit);
            fixed32.extend([0; 4]);
            let mut fixed64 = key(tag, WireType::SixtyFourBit);
            fixed64.extend([0; 8]);
            let mut wrong = vec![fixed32, fixed64];
            match kind {
                's' => wrong.push(bytes_field(tag, &[0x01])),
                'm' => wrong.push(varint_field(tag, 1)),
                _ => {
                    // Packed, with a varint cut short.
                    let bytes = with_extra(message, &bytes_field(tag, &[0x05, 0x80]));
                    assert!(
                        matches!(fast_err(&bytes), Error::InvalidPprof { field, .. } if field == message),
                        "{message} field {tag}"
                    );
                    assert!(prost_path(&bytes, &Limits::default()).is_err());
                }
            }
            for extra in wrong {
                let bytes = with_extra(message, &extra);
                let what = format!("{message} field {tag}");
                match fast_err(&bytes) {
                    Error::InvalidPprof { field, detail } => {
                        assert_eq!(field, message, "{what}: {detail}");
                        assert!(detail.contains("wire type"), "{what}: {detail}");
                    }
                    other => panic!("{what}: {other}"),
                }
                assert!(prost_path(&bytes, &Limits::default()).is_err(), "{what}");
            }
        }
        // Malformed content of an otherwise valid message: a truncated
        // varint, and a length past the end.
        for extra in [&[0x08][..], &[0x0a, 0x05, 0x00]] {
            let bytes = with_extra(message, extra);
            assert!(
                matches!(fast_err(&bytes), Error::InvalidPprof { field, .. } if field == message),
                "{message}: {}",
                fast_err(&bytes)
            );
            assert!(prost_path(&bytes, &Limits::default()).is_err(), "{message}");
        }
    }
}

#[test]
fn duplicate_ids_last_wins_as_in_the_prost_path() {
    let mut p = base();
    // A second function 1, and a second location 1 pointing at it.
    let name = p.string_table.len() as i64;
    p.string_table.push("replacement".into());
    p.function.push(proto::Function {
        id: 1,
        name,
        ..Default::default()
    });
    let mut again = p.location[0].clone();
    again.line[0].function_id = 1;
    p.location.push(again);
    let bytes = pprof::encode(&p);
    assert_agree(&bytes, &Limits::default());
    let got = Profile::from_pprof_bytes(&bytes, &Limits::default()).unwrap();
    assert!(got.functions().any(|f| f.name == "replacement"));
}

#[test]
fn reference_and_limit_errors_match_the_prost_path_word_for_word() {
    type Edit = fn(&mut proto::Profile);
    let edits: [(Edit, &str); 11] = [
        (
            |p| p.sample[0].location_id.push(77),
            "malformed pprof: sample.location_id: no location with id 77",
        ),
        (
            |p| p.sample[0].value.push(1),
            "malformed pprof: sample.value: 2 values for 1 sample types",
        ),
        (
            |p| p.sample_type[0].unit = 99,
            "malformed pprof: sample_type.unit: string index 99 outside a table of",
        ),
        (
            |p| p.string_table[0] = "x".into(),
            "malformed pprof: string_table: entry 0 must be the empty string",
        ),
        (
            |p| p.location[0].line[0].function_id = 55,
            "malformed pprof: location.line.function_id: no function with id 55",
        ),
        (
            // The prost path looks lines up last to first.
            |p| {
                p.location[0].line[0].function_id = 55;
                p.location[0].line.push(proto::Line {
                    function_id: 56,
                    ..Default::default()
                });
            },
            "malformed pprof: location.line.function_id: no function with id 56",
        ),
        (
            |p| p.function[0].filename = -1,
            "malformed pprof: function.filename: string index -1",
        ),
        (
            |p| {
                p.mapping[0].filename = 1000;
                p.location[0].line.clear();
            },
            "malformed pprof: mapping.filename: string index 1000",
        ),
        (
            |p| {
                let s = p.sample[0].clone();
                p.sample = vec![s; 7];
            },
            "samples exceeds the limit of 6",
        ),
        (
            |p| p.sample[0].label = vec![proto::Label::default(); 4],
            "labels per sample exceeds the limit of 3",
        ),
        (
            // Depth after inline expansion: 4 locations of 3 frames each.
            |p| {
                let lines = vec![p.location[0].line[0]; 3];
                p.location[0].line = lines;
                p.sample[0].location_id = vec![1; 4];
            },
            "stack depth (frames) exceeds the limit of 10",
        ),
    ];
    for (edit, want) in edits {
        let mut p = base();
        edit(&mut p);
        let bytes = pprof::encode(&p);
        let fast = match Profile::from_pprof_bytes(&bytes, &small()) {
            Ok(_) => panic!("expected {want}"),
            Err(e) => e.to_string(),
        };
        assert!(fast.starts_with(want), "{fast}");
        let fast_small = Profile::from_pprof_bytes(&bytes, &small());
        let prost_small = prost_path(&bytes, &small());
        assert_eq!(
            fast_small.map(|p| shape(&p)).map_err(|e| e.to_string()),
            prost_small.map(|p| shape(&p)).map_err(|e| e.to_string()),
        );
    }
}

#[test]
fn errors_come_in_the_prost_paths_order() {
    // A missing location in the first sample, too many labels in the last:
    // `decode` checks labels before anything is converted.
    let mut p = base();
    p.sample[0].location_id.push(77);
    p.sample[1].label = vec![proto::Label::default(); 4];
    let bytes = pprof::encode(&p);
    let fast = Profile::from_pprof_bytes(&bytes, &small()).unwrap_err();
    assert_eq!(fast.to_string(), "labels per sample exceeds the limit of 3");
    // A bad string index in a function, and a malformed sample after it:
    // prost reads every byte before converting anything.
    let mut p = base();
    p.function[0].name = 1000;
    let mut bytes = pprof::encode(&p);
    bytes.extend(bytes_field(2, &[0x08]));
    assert!(matches!(
        Profile::from_pprof_bytes(&bytes, &small()).unwrap_err(),
        Error::InvalidPprof {
            field: "sample",
            ..
        }
    ));
    assert_agree(&bytes, &small());
}

#[test]
fn zstd_bomb_and_odd_framings_through_the_fast_reader() {
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    // Declares 32 MiB: refused at the limit, nothing that large allocated.
    let bomb = zstd(&vec![0u8; 32 << 20], 19).unwrap();
    let err = Profile::from_pprof_bytes(&bomb, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "decompressed size (bytes) exceeds the limit of 1048576"
    );
    let raw = pprof::encode(&base());
    let want = shape(&Profile::from_pprof_bytes(&raw, &limits).unwrap());
    // No declared size (streaming encoder), two frames, trailing garbage.
    let streamed = ::zstd::stream::encode_all(&raw[..], 3).unwrap();
    let (a, b) = raw.split_at(raw.len() / 2);
    let mut two = zstd(a, 3).unwrap();
    two.extend(zstd(b, 3).unwrap());
    for framed in [streamed, two] {
        let got = Profile::from_pprof_bytes(&framed, &limits).unwrap();
        assert_eq!(shape(&got), want);
    }
    let mut trailing = zstd(&raw, 3).unwrap();
    trailing.extend([1, 2, 3]);
    let fast = Profile::from_pprof_bytes(&trailing, &limits).map(|p| shape(&p));
    let stream = decompress(&trailing, 1 << 20).map(|raw| raw.len());
    assert_eq!(fast.is_err(), stream.is_err());
}
