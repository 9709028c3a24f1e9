use std::io::Write;

use firewatch_profile::{Error, Limits, Profile, SampleType, decompress, folded, gzip, zstd};

use crate::support::folded as fold;

fn small() -> Limits {
    Limits {
        max_decompressed_bytes: 1 << 20,
        max_samples: 100,
        max_stack_depth: 16,
        max_strings: 50,
        max_labels_per_sample: 4,
    }
}

fn limit_of(err: Error) -> (&'static str, u64) {
    match err {
        Error::LimitExceeded { what, limit } => (what, limit),
        other => panic!("expected a limit error, got {other}"),
    }
}

#[test]
fn gzip_bomb_is_refused_at_the_limit() {
    // 64 MiB of zeros compress to about 64 KiB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let err = Profile::from_pprof_bytes(&bomb, &small()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "decompressed size (bytes) exceeds the limit of 1048576"
    );
}

#[test]
fn zstd_bomb_is_refused_whatever_the_frame_claims() {
    let zeros = vec![0u8; 32 << 20];
    let bomb = zstd(&zeros, 19).unwrap();
    let err = decompress(&bomb, 1 << 20).unwrap_err();
    assert_eq!(limit_of(err), ("decompressed size (bytes)", 1 << 20));
    assert_eq!(decompress(&bomb, 32 << 20).unwrap().len(), 32 << 20);
}

#[test]
fn uncompressed_input_over_the_limit_is_refused() {
    let err = decompress(&vec![b'a'; 2 << 20], 1 << 20).unwrap_err();
    assert_eq!(limit_of(err), ("decompressed size (bytes)", 1 << 20));
}

#[test]
fn too_many_samples_is_refused_before_decoding() {
    let lines: Vec<(String, i64)> = (0..101).map(|i| (format!("main;f{}", i % 3), 1)).collect();
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    for (s, v) in &lines {
        let names: Vec<&str> = s.split(';').collect();
        p.add_named_sample(&names, &[*v]);
    }
    // Interning merges equal stacks, so build the pprof by hand with 101 samples.
    let mut proto = p.to_pprof();
    let sample = proto.sample[0].clone();
    proto.sample = vec![sample; 101];
    let bytes = firewatch_profile::pprof::encode(&proto);
    let err = Profile::from_pprof_bytes(&bytes, &small()).unwrap_err();
    assert_eq!(limit_of(err), ("samples", 100));
}

#[test]
fn deep_stacks_are_refused_in_both_formats() {
    let deep: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
    let line = format!("{} 1\n", deep.join(";"));
    let err = folded::parse(
        line.as_bytes(),
        SampleType::new("samples", "count"),
        &small(),
    )
    .unwrap_err();
    assert_eq!(limit_of(err), ("stack depth (frames)", 16));
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    p.add_named_sample(&deep, &[1]);
    let err = Profile::from_pprof_bytes(&p.to_pprof_bytes(), &small()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "stack depth (frames)",
                limit: 16
            }
        ),
        "{err}"
    );
}

#[test]
fn string_table_and_labels_are_bounded() {
    let names: Vec<String> = (0..60).map(|i| format!("f{i}")).collect();
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    for n in &names {
        p.add_named_sample(&[n.as_str()], &[1]);
    }
    let err = Profile::from_pprof_bytes(&p.to_pprof_bytes(), &small()).unwrap_err();
    assert_eq!(limit_of(err), ("string table entries", 50));

    let mut proto = fold(&[("main;a", 1)]).to_pprof();
    let label = firewatch_profile::pprof::proto::Label {
        key: 1,
        str: 1,
        ..Default::default()
    };
    proto.sample[0].label = vec![label; 5];
    let err =
        Profile::from_pprof_bytes(&firewatch_profile::pprof::encode(&proto), &small()).unwrap_err();
    assert_eq!(limit_of(err), ("labels per sample", 4));
}

#[test]
fn folded_line_count_is_bounded() {
    let text: String = (0..101).map(|i| format!("main;f{i} 1\n")).collect();
    let err = folded::parse(
        text.as_bytes(),
        SampleType::new("samples", "count"),
        &small(),
    )
    .unwrap_err();
    assert_eq!(limit_of(err), ("folded lines (samples)", 100));
    let gz = gzip(text.as_bytes());
    assert!(folded::parse(&gz, SampleType::new("samples", "count"), &small()).is_err());
}
