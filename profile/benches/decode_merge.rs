//! Decode + merge of the standard corpus (1,000 profiles of 1,000 samples
//! over 300 stacks of depth 20-40 from 2,000 functions, zstd-compressed
//! pprof as the agent ships them).
//!
//! Criterion reports each stage's throughput in profiles/s; the summary at
//! the end prints medians measured in this same process and the ratios
//! between stages, which is what to compare across machines.
//!
//! Target: merging 1,000 such profiles takes under 100 ms on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use firewatch_profile::corpus::Generator;
use firewatch_profile::{Limits, Profile, pprof, zstd};

const PROFILES: usize = 1000;

struct Corpus {
    compressed: Vec<Vec<u8>>,
    decoded: Vec<Profile>,
}

fn corpus() -> Corpus {
    let generator = Generator::standard(42);
    let decoded: Vec<Profile> = (0..PROFILES as u64).map(|i| generator.profile(i)).collect();
    let compressed = decoded
        .iter()
        .map(|p| zstd(&p.to_pprof_bytes(), 3).expect("zstd into memory"))
        .collect();
    Corpus {
        compressed,
        decoded,
    }
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

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
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
        group.bench_function("decode_convert_merge", |b| {
            b.iter(|| black_box(decode_and_merge(&c)))
        });
        group.bench_function("merge_decoded", |b| b.iter(|| black_box(merge_only(&c))));
        group.finish();
    }
    crit.final_summary();

    let runs = 9;
    let decode = median(
        || {
            black_box(decode_only(&c));
        },
        runs,
    );
    let full = median(|| drop(black_box(decode_and_merge(&c))), runs);
    let merge = median(|| drop(black_box(merge_only(&c))), runs);
    let merged = merge_only(&c);
    let per_sec = |d: Duration| PROFILES as f64 / d.as_secs_f64();
    println!("\nsummary (median of {runs} runs, {PROFILES} profiles, one core):");
    println!(
        "  merged result: {} distinct stacks, {} functions, {} samples",
        merged.stack_count(),
        merged.function_count(),
        merged.total(0)
    );
    println!(
        "  decode only (zstd + protobuf):     {decode:>10.2?}  {:>9.0} profiles/s",
        per_sec(decode)
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
