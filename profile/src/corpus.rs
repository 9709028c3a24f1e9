//! A deterministic generator of realistic profiles, for benchmarks and tests.
//!
//! The standard corpus models one service: 2,000 functions with long,
//! crate-qualified names; a universe of 3,000 stacks of depth 20-40 that
//! share prefixes (as real call trees do), functions drawn Zipf-like so a few
//! are everywhere; each profile holds 1,000 samples spread over 300 of
//! those stacks, with `samples/count` and `cpu/nanoseconds` at 99 Hz.

use crate::model::{FuncId, Profile, SampleType};

/// Shape of a generated corpus.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Distinct functions.
    pub functions: usize,
    /// Distinct stacks across the corpus.
    pub universe_stacks: usize,
    /// Distinct stacks in one profile.
    pub stacks_per_profile: usize,
    /// Samples in one profile.
    pub samples_per_profile: usize,
    /// Minimum stack depth.
    pub min_depth: usize,
    /// Maximum stack depth.
    pub max_depth: usize,
}

impl Shape {
    /// 2,000 functions, 3,000 stacks in all, 1,000 samples over 300 stacks of depth 20-40 per profile.
    pub const STANDARD: Shape = Shape {
        functions: 2000,
        universe_stacks: 3000,
        stacks_per_profile: 300,
        samples_per_profile: 1000,
        min_depth: 20,
        max_depth: 40,
    };
}

/// Nanoseconds of CPU one sample stands for at 99 Hz.
pub const NANOS_PER_SAMPLE_99HZ: i64 = 1_000_000_000 / 99;

/// Generates profiles of one simulated service; the same seed gives the same corpus.
#[derive(Clone, Debug)]
pub struct Generator {
    shape: Shape,
    seed: u64,
    names: Vec<String>,
    stacks: Vec<Vec<u32>>,
    zipf_stacks: Zipf,
}

impl Generator {
    /// The standard corpus (see the module docs) for `seed`.
    pub fn standard(seed: u64) -> Generator {
        Generator::new(Shape::STANDARD, seed)
    }

    /// A corpus of the given shape.
    pub fn new(shape: Shape, seed: u64) -> Generator {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        let names = (0..shape.functions)
            .map(|i| {
                let krate = [
                    "tokio",
                    "hyper",
                    "serde_json",
                    "checkout",
                    "sqlx",
                    "core",
                    "alloc",
                    "std",
                ][i % 8];
                format!("{krate}::module_{}::Type{}::function_{i}", i % 37, i % 101)
            })
            .collect();
        let zipf_functions = Zipf::new(shape.functions);
        let mut stacks: Vec<Vec<u32>> = Vec::with_capacity(shape.universe_stacks);
        for s in 0..shape.universe_stacks {
            let span = shape.max_depth.saturating_sub(shape.min_depth) + 1;
            let depth = shape.min_depth + rng.below(span as u64) as usize;
            let mut stack = Vec::with_capacity(depth);
            if s > 0 && rng.below(4) != 0 {
                // Share a prefix with an earlier stack.
                let parent = &stacks[rng.below(s as u64) as usize];
                let keep = rng.below((parent.len().min(depth) / 2 + 1) as u64) as usize;
                stack.extend_from_slice(&parent[..keep]);
            }
            while stack.len() < depth {
                stack.push(zipf_functions.sample(&mut rng) as u32);
            }
            stacks.push(stack);
        }
        Generator {
            zipf_stacks: Zipf::new(shape.universe_stacks),
            shape,
            seed,
            names,
            stacks,
        }
    }

    /// The shape this generator was built with.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Profile number `index` of the corpus: deterministic in (seed, index).
    pub fn profile(&self, index: u64) -> Profile {
        let mut rng = Rng(self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ index.wrapping_add(1));
        let mut profile = Profile::new(vec![
            SampleType::new("samples", "count"),
            SampleType::new("cpu", "nanoseconds"),
        ]);
        profile.period_type = Some(SampleType::new("cpu", "nanoseconds"));
        profile.period = NANOS_PER_SAMPLE_99HZ;
        profile.time_nanos = 1_700_000_000_000_000_000 + index as i64 * 10_000_000_000;
        profile.duration_nanos = 10_000_000_000;
        let mut chosen: Vec<usize> = Vec::with_capacity(self.shape.stacks_per_profile);
        let mut taken = vec![false; self.stacks.len()];
        let mut guard = 0;
        while chosen.len() < self.shape.stacks_per_profile.min(self.stacks.len())
            && guard < 1_000_000
        {
            guard += 1;
            let s = self.zipf_stacks.sample(&mut rng);
            if !taken[s] {
                taken[s] = true;
                chosen.push(s);
            }
        }
        // Interned on first use, so a profile holds only the functions its stacks name.
        let mut ids: Vec<Option<FuncId>> = vec![None; self.names.len()];
        let mut counts = vec![1i64; chosen.len()];
        let extra = self.shape.samples_per_profile.saturating_sub(chosen.len());
        let zipf_local = Zipf::new(chosen.len().max(1));
        for _ in 0..extra {
            counts[zipf_local.sample(&mut rng)] += 1;
        }
        let mut frames = Vec::with_capacity(self.shape.max_depth);
        for (&s, &n) in chosen.iter().zip(&counts) {
            frames.clear();
            for &f in &self.stacks[s] {
                let id = *ids[f as usize]
                    .get_or_insert_with(|| profile.intern_function(&self.names[f as usize], "", 0));
                frames.push(id);
            }
            profile.add_sample(&frames, &[n, n * NANOS_PER_SAMPLE_99HZ]);
        }
        profile
    }
}

/// Zipf-like (s = 1) sampler over `0..n` by inverse CDF.
#[derive(Clone, Debug)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// splitmix64: small, fast, deterministic across platforms.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
