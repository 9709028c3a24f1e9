//! Decode + merge of the standard corpus (1,000 profiles of 1,000 samples
//! over 300 stacks of depth 20-40 from 2,000 functions, zstd-compressed
//! pprof as the agent ships them).
//!
//! Criterion reports each stage's throughput in profiles/s; the summary at
//! the end prints medians measured in this same process and the ratios
//! between stages, which is what to compare across machines.
//!
//! Decoding is measured both ways: the ingest path (`from_pprof_bytes`:
//! zstd, then the wire reader straight into the model) and the prost path
//! (`pprof::decode` + `from_pprof`), with the wire reader alone and the
//! streaming zstd decoder alone to show where the time goes.
//!
//! Targets: merging 1,000 such profiles takes under 100 ms on one core;
//! the server ingests 1,000 profiles/s on one core, decoding included.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use firewatch_profile::corpus::Generator;
use firewatch_profile::{Limits, Profile, decompress, pprof, zstd};

const PROFILES: usize = 1000;

struct Corpus {
    raw: Vec<Vec<u8>>,
    compressed: Vec<Vec<u8>>,
    decoded: Vec<Profile>,
}

fn corpus() -> Corpus {
    let generator = Generator::standard(42);
    let decoded: Vec<Profile> = (0..PROFILES as u64).map(|i| generator.profile(i)).collect();
    let raw: Vec<Vec<u8>> = decoded.iter().map(Profile::to_pprof_bytes).collect();
    let compressed = raw
        .iter()
        .map(|b| zstd(b, 3).expect("zstd into memory"))
        .collect();
    Corpus {
        raw,
        compressed,
        decoded,
    }
}

/// The ingest path: zstd, then the wire reader straight into the model.
fn fast_decode(c: &Corpus) -> usize {
    let limits = Limits::default();
    c.compressed
        .iter()
        .map(|b| {
            Profile::from_pprof_bytes(b, &limits)
                .expect("corpus decodes")
                .stack_count()
        })
        .sum()
}

/// The baseline: zstd, prost's message, then conversion to the model.
fn prost_decode(c: &Corpus) -> usize {
    let limits = Limits::default();
    c.compressed
        .iter()
        .map(|b| {
            let message = pprof::decode(b, &limits).expect("corpus decodes");
            Profile::from_pprof(&message, &limits)
                .expect("corpus converts")
                .stack_count()
        })
        .sum()
}

/// The wire reader alone, on uncompressed bytes (no decompression runs).
fn wire_only(c: &Corpus) -> usize {
    let limits = Limits::default();
    c.raw
        .iter()
        .map(|b| {
            Profile::from_pprof_bytes(b, &limits)
                .expect("corpus decodes")
                .stack_count()
        })
        .sum()
}

/// zstd through the streaming decoder behind `decompress`.
fn zstd_streaming(c: &Corpus) -> usize {
    c.compressed
        .iter()
        .map(|b| decompress(b, 256 << 20).expect("corpus inflates").len())
        .sum()
}

fn decode_only(c: &Corpus) -> usize {
    let limits = Limits::default();
    c.compressed
        .iter()
        .map(|b| {
            pprof::decode(b, &limits)
                .expect("corpus decodes")
                .sample
                .len()
        })
        .sum()
}

fn decode_and_merge(c: &Corpus) -> Profile {
    let limits = Limits::default();
    let mut merged = Profile::default();
    for b in &c.compressed {
        merged.merge(&Profile::from_pprof_bytes(b, &limits).expect("corpus decodes"));
    }
    merged
}

fn merge_only(c: &Corpus) -> Profile {
    Profile::merge_all(&c.decoded)
}

/// The median time of each stage over `runs` rounds. Each round runs every
/// stage once, in turn, so load from elsewhere on the machine weighs on all
/// stages alike and the ratios between them hold up even when it does not.
fn medians(stages: &mut [&mut dyn FnMut()], runs: usize) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(runs); stages.len()];
    for _ in 0..runs {
        for (stage, times) in stages.iter_mut().zip(&mut times) {
            let t = Instant::now();
            stage();
            times.push(t.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[runs / 2]
        })
        .collect()
}

fn main() {
    let c = corpus();
    let mut crit = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    {
        let mut group = crit.benchmark_group("corpus_1000_profiles");
        group.throughput(Throughput::Elements(PROFILES as u64));
        group.bench_function("decode_pprof_zstd", |b| {
            b.iter(|| black_box(decode_only(&c)))
        });
        group.bench_function("prost_decode_convert", |b| {
            b.iter(|| black_box(prost_decode(&c)))
        });
        group.bench_function("fast_decode_convert", |b| {
            b.iter(|| black_box(fast_decode(&c)))
        });
        group.bench_function("decode_convert_merge", |b| {
            b.iter(|| black_box(decode_and_merge(&c)))
        });
        group.bench_function("merge_decoded", |b| b.iter(|| black_box(merge_only(&c))));
        group.finish();
    }
    crit.final_summary();

    let runs = 9;
    let times = medians(
        &mut [
            &mut || {
                black_box(decode_only(&c));
            },
            &mut || drop(black_box(decode_and_merge(&c))),
            &mut || {
                black_box(fast_decode(&c));
            },
            &mut || {
                black_box(prost_decode(&c));
            },
            &mut || {
                black_box(wire_only(&c));
            },
            &mut || {
                black_box(zstd_streaming(&c));
            },
            &mut || drop(black_box(merge_only(&c))),
        ],
        runs,
    );
    let [decode, full, fast, prost, wire, streaming, merge] = times[..] else {
        unreachable!("one median per stage")
    };
    let merged = merge_only(&c);
    let per_sec = |d: Duration| PROFILES as f64 / d.as_secs_f64();
    println!("\nsummary (median of {runs} interleaved runs, {PROFILES} profiles, one core):");
    println!(
        "  merged result: {} distinct stacks, {} functions, {} samples",
        merged.stack_count(),
        merged.function_count(),
        merged.total(0)
    );
    let raw_kb = c.raw.iter().map(Vec::len).sum::<usize>() as f64 / PROFILES as f64 / 1e3;
    let per_profile = |d: Duration| d.as_secs_f64() * 1e6 / PROFILES as f64;
    println!("  one profile: {raw_kb:.0} KB of pprof before zstd");
    println!(
        "  decode only (zstd + protobuf):     {decode:>10.2?}  {:>9.0} profiles/s",
        per_sec(decode)
    );
    println!(
        "  prost: decode + from_pprof:        {prost:>10.2?}  {:>9.0} profiles/s  {:>6.1} us/profile",
        per_sec(prost),
        per_profile(prost)
    );
    println!(
        "  fast: zstd + wire -> model:        {fast:>10.2?}  {:>9.0} profiles/s  {:>6.1} us/profile",
        per_sec(fast),
        per_profile(fast)
    );
    println!(
        "  fast, wire -> model alone:         {wire:>10.2?}  {:>9.0} profiles/s  {:>6.1} us/profile",
        per_sec(wire),
        per_profile(wire)
    );
    println!(
        "  zstd, streaming (`decompress`):    {streaming:>10.2?}  {:>9.0} profiles/s  {:>6.1} us/profile",
        per_sec(streaming),
        per_profile(streaming)
    );
    println!(
        "  zstd, one-shot (fast - wire):                              {:>6.1} us/profile",
        per_profile(fast.saturating_sub(wire))
    );
    println!(
        "  ratio fast / prost (profiles/s):   {:.2}",
        prost.as_secs_f64() / fast.as_secs_f64()
    );
    println!(
        "  decode + convert + merge:          {full:>10.2?}  {:>9.0} profiles/s",
        per_sec(full)
    );
    println!(
        "  merge of decoded profiles:         {merge:>10.2?}  {:>9.0} profiles/s",
        per_sec(merge)
    );
    println!(
        "  ratio decode+merge / decode alone: {:.2}",
        full.as_secs_f64() / decode.as_secs_f64()
    );
    println!(
        "  merge of {PROFILES} profiles: {:.1} ms (target < 100 ms): {}",
        merge.as_secs_f64() * 1e3,
        if merge < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
