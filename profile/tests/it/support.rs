//! Builders shared by the test modules.

use std::collections::BTreeMap;

use firewatch_profile::{Profile, SampleType};

/// A one-column profile from `(stack "a;b;c", value)` pairs.
pub fn folded(lines: &[(&str, i64)]) -> Profile {
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    for (stack, v) in lines {
        let names: Vec<&str> = stack.split(';').collect();
        p.add_named_sample(&names, &[*v]);
    }
    p
}

/// The profile as a canonical map: (sample type, stack names) -> value, zeros dropped.
pub fn canonical(p: &Profile) -> BTreeMap<(String, Vec<String>), i64> {
    let mut out = BTreeMap::new();
    for id in 0..p.stack_count() as u32 {
        let names: Vec<String> = p.stack_names(id).map(str::to_owned).collect();
        for (t, v) in p.sample_types().iter().zip(p.values(id)) {
            if *v != 0 {
                *out.entry((format!("{}/{}", t.kind, t.unit), names.clone()))
                    .or_insert(0) += *v;
            }
        }
    }
    out.retain(|_, v| *v != 0);
    out
}

/// The real corpus: `cargo build` sampled by perf, folded.
pub fn cargo_build() -> Profile {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cargo-build.folded.gz"
    ))
    .expect("fixture present");
    firewatch_profile::folded::parse(
        &bytes,
        SampleType::new("cpu", "nanoseconds"),
        &Default::default(),
    )
    .expect("fixture parses")
}
