use firewatch_profile::{
    Format, Limits, Profile, SampleType, folded, gzip, parse_any, pprof, zstd,
};

use crate::support::{canonical, cargo_build, folded as fold};

#[test]
fn real_folded_fixture_parses_with_its_documented_shape() {
    let p = cargo_build();
    assert_eq!(p.stack_count(), 3911);
    let distinct: std::collections::HashSet<&str> = p.functions().map(|f| f.name).collect();
    assert_eq!(distinct.len(), 3530);
    let depth = (0..p.stack_count() as u32).map(|i| p.stack(i).len()).max();
    assert_eq!(depth, Some(59));
}

#[test]
fn pprof_round_trip_keeps_every_stack_of_the_real_fixture() {
    let p = cargo_build();
    let bytes = p.to_pprof_bytes();
    let back = Profile::from_pprof_bytes(&bytes, &Limits::default()).unwrap();
    assert_eq!(canonical(&p), canonical(&back));
    let gz = Profile::from_pprof_bytes(&gzip(&bytes), &Limits::default()).unwrap();
    assert_eq!(canonical(&p), canonical(&gz));
    let zs = Profile::from_pprof_bytes(&zstd(&bytes, 3).unwrap(), &Limits::default()).unwrap();
    assert_eq!(canonical(&p), canonical(&zs));
}

#[test]
fn folded_writes_what_it_reads() {
    let text = "main;work;hot 30\nmain;work 10\nmain;idle 5\n";
    let p = folded::parse(
        text.as_bytes(),
        SampleType::new("samples", "count"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(folded::to_string(&p, 0), text);
}

#[test]
fn folded_repeated_stacks_add_up_and_comments_are_skipped() {
    let text = "# comment\nmain;a 1\n\nmain;a 2\r\nmain;b\t4\n";
    let p = folded::parse(
        text.as_bytes(),
        SampleType::new("samples", "count"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        canonical(&p),
        canonical(&fold(&[("main;a", 3), ("main;b", 4)]))
    );
}

#[test]
fn folded_errors_name_the_line() {
    let limits = Limits::default();
    let t = SampleType::new("samples", "count");
    let err = folded::parse(b"main;a 1\nmain;b x\n", t.clone(), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed folded profile at line 2: count \"x\" is not a non-negative integer"
    );
    let err = folded::parse(b"main;a 1\nnocount\n", t.clone(), &limits).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = folded::parse(b"a -3\n", t.clone(), &limits).unwrap_err();
    assert!(err.to_string().contains("non-negative"), "{err}");
    let err = folded::parse(&[0xff, 0xfe, b' ', b'1'], t, &limits).unwrap_err();
    assert_eq!(err.to_string(), "folded profile is not UTF-8 text");
}

#[test]
fn pprof_inlined_and_unsymbolized_frames_are_kept() {
    use pprof::proto;
    let strings = [
        "",
        "samples",
        "count",
        "outer",
        "inlined",
        "leaf",
        "/usr/lib/libfoo.so",
    ];
    let p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        function: vec![
            proto::Function {
                id: 1,
                name: 3,
                ..Default::default()
            },
            proto::Function {
                id: 2,
                name: 4,
                ..Default::default()
            },
            proto::Function {
                id: 3,
                name: 5,
                ..Default::default()
            },
        ],
        mapping: vec![proto::Mapping {
            id: 9,
            memory_start: 0x1000,
            memory_limit: 0x9000,
            file_offset: 0x200,
            filename: 6,
            ..Default::default()
        }],
        location: vec![
            // line[0] is the inlined callee, the last line its caller.
            proto::Location {
                id: 10,
                line: vec![
                    proto::Line {
                        function_id: 2,
                        ..Default::default()
                    },
                    proto::Line {
                        function_id: 1,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            proto::Location {
                id: 11,
                mapping_id: 9,
                address: 0x1a2b,
                ..Default::default()
            },
            proto::Location {
                id: 12,
                line: vec![proto::Line {
                    function_id: 3,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        sample: vec![proto::Sample {
            location_id: vec![12, 11, 10],
            value: vec![7],
            label: vec![],
        }],
        ..Default::default()
    };
    let model = Profile::from_pprof(&p, &Limits::default()).unwrap();
    let names: Vec<&str> = model.stack_names(0).collect();
    assert_eq!(names, ["outer", "inlined", "libfoo.so+0xc2b", "leaf"]);
    assert_eq!(model.total(0), 7);
}

/// A frame no symbol named keeps its file's build id and link-time address
/// through both decoders and back out to pprof, and only a well-formed
/// build id is taken.
#[test]
fn unnamed_frames_keep_their_object_address() {
    use firewatch_profile::{Function, ObjectAddress};
    use pprof::proto;
    let strings = [
        "",
        "samples",
        "count",
        "/opt/app/server",
        "8425d14e9a",
        "NOT-HEX",
    ];
    let mapping = |id, build_id| proto::Mapping {
        id,
        // The file's text segment: link-time address 0x401000 at offset 0x1000.
        memory_start: 0x401000,
        memory_limit: 0x402000,
        file_offset: 0x1000,
        filename: 3,
        build_id,
        ..Default::default()
    };
    let location = |id, mapping_id, address| proto::Location {
        id,
        mapping_id,
        address,
        ..Default::default()
    };
    let p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        mapping: vec![mapping(1, 4), mapping(2, 5)],
        location: vec![location(1, 1, 0x401139), location(2, 2, 0x401170)],
        sample: vec![proto::Sample {
            location_id: vec![1, 2],
            value: vec![3],
            label: vec![],
        }],
        ..Default::default()
    };
    let bytes = pprof::encode(&p);
    let limits = Limits::default();
    for model in [
        Profile::from_pprof(&p, &limits).unwrap(),
        Profile::from_pprof_bytes(&bytes, &limits).unwrap(),
    ] {
        let frames: Vec<Function<'_>> = model.stack(0).iter().map(|&f| model.function(f)).collect();
        assert_eq!(frames[0].name, "server+0x1170");
        assert_eq!(
            frames[0].address, None,
            "a build id that is not hex is ignored"
        );
        assert_eq!(frames[1].name, "server+0x1139");
        assert_eq!(
            frames[1].address,
            Some(ObjectAddress {
                build_id: "8425d14e9a",
                address: 0x401139
            })
        );
        // Out to pprof and back: the same frames, the same addresses.
        let again = Profile::from_pprof(&model.to_pprof(), &limits).unwrap();
        let back: Vec<Function<'_>> = again.stack(0).iter().map(|&f| again.function(f)).collect();
        assert_eq!(back, frames);
    }
    assert!(ObjectAddress::is_build_id("8425d14e9a"));
    for bad in ["", "8", "ABCD", "8425d14e9g", "../etc", &"a".repeat(130)] {
        assert!(!ObjectAddress::is_build_id(bad), "{bad:?}");
    }
}

/// Naming frames after the fact: an unnamed frame becomes its functions
/// (inlined calls after their caller) in every stack, and stacks that
/// become equal merge.
#[test]
fn replaced_functions_take_the_frames_place() {
    use firewatch_profile::{Function, ObjectAddress};
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    let main = p.intern_function("main", "", 0);
    let at = |address| Function {
        address: Some(ObjectAddress {
            build_id: "abcd",
            address,
        }),
        ..Function::named("app+0x10", "", 0)
    };
    let a = p.intern(at(0x10));
    let b = p.intern(Function {
        name: "app+0x20",
        ..at(0x20)
    });
    assert_ne!(a, b);
    p.add_sample(&[main, a], &[2]);
    p.add_sample(&[main, b], &[3]);
    let mut with = vec![None; p.function_count()];
    with[a as usize] = Some(vec![Function::named("run", "run.c", 0)]);
    with[b as usize] = Some(vec![
        Function::named("run", "run.c", 0),
        Function::named("step", "step.h", 0),
    ]);
    let named = p.replace_functions(&with);
    let stacks: Vec<(Vec<&str>, i64)> = (0..named.stack_count() as u32)
        .map(|s| (named.stack_names(s).collect(), named.values(s)[0]))
        .collect();
    assert_eq!(
        stacks,
        [(vec!["main", "run"], 2), (vec!["main", "run", "step"], 3)]
    );
    assert_eq!(named.total(0), 5);
}

#[test]
fn malformed_pprof_references_are_named() {
    use pprof::proto;
    let base = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: vec!["".into(), "samples".into(), "count".into()],
        sample: vec![proto::Sample {
            location_id: vec![7],
            value: vec![1],
            label: vec![],
        }],
        ..Default::default()
    };
    let err = Profile::from_pprof(&base, &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed pprof: sample.location_id: no location with id 7"
    );

    let mut p = base.clone();
    p.sample[0].location_id.clear();
    p.sample[0].value = vec![1, 2];
    let err = Profile::from_pprof(&p, &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed pprof: sample.value: 2 values for 1 sample types"
    );

    let mut p = base.clone();
    p.sample_type[0].unit = 99;
    let err = Profile::from_pprof(&p, &Limits::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("sample_type.unit: string index 99"),
        "{err}"
    );

    let mut p = base;
    p.string_table[0] = "x".into();
    let err = Profile::from_pprof(&p, &Limits::default()).unwrap_err();
    assert!(
        err.to_string().contains("entry 0 must be the empty string"),
        "{err}"
    );
}

#[test]
fn garbage_is_a_protobuf_error_not_a_panic() {
    for bytes in [
        &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
        &[0x12, 0x05, 0x01],
        &[0x0f, 0x00],
    ] {
        let err = Profile::from_pprof_bytes(bytes, &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed pprof"), "{err}");
    }
    let err =
        Profile::from_pprof_bytes(&[0x1f, 0x8b, 0x08, 0x00, 0x01], &Limits::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot decompress gzip data"),
        "{err}"
    );
}

#[test]
fn parse_any_tells_pprof_from_folded() {
    let p = fold(&[("main;a", 3), ("main;b", 4)]);
    let (f, back) = parse_any(&gzip(&p.to_pprof_bytes()), &Limits::default()).unwrap();
    assert_eq!(f, Format::Pprof);
    assert_eq!(canonical(&back), canonical(&p));
    let (f, back) = parse_any(folded::to_string(&p, 0).as_bytes(), &Limits::default()).unwrap();
    assert_eq!(f, Format::Folded);
    assert_eq!(canonical(&back), canonical(&p));
    // Folded text with a leading blank line starts with 0x0a, like a pprof.
    let (f, _) = parse_any(b"\nmain;a 1\n", &Limits::default()).unwrap();
    assert_eq!(f, Format::Folded);
    assert!(parse_any(b"", &Limits::default()).is_err());
}

#[test]
fn pprof_metadata_survives_the_round_trip() {
    let mut p = fold(&[("main;a", 3)]);
    p.time_nanos = 1_700_000_000_000_000_000;
    p.duration_nanos = 10_000_000_000;
    p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
    p.period = 10_101_010;
    let back = Profile::from_pprof_bytes(&p.to_pprof_bytes(), &Limits::default()).unwrap();
    assert_eq!(back.time_nanos, p.time_nanos);
    assert_eq!(back.duration_nanos, p.duration_nanos);
    assert_eq!(back.period_type, p.period_type);
    assert_eq!(back.period, p.period);
    assert_eq!(back.sample_types(), p.sample_types());
}

/// Kernel functions are known by where they ran: a location in perf's
/// `[kernel.kallsyms]` mapping, or a folded frame FlameGraph marked `_[k]`;
/// the mark survives pprof out and back, and reaches the flamebearer.
#[test]
fn kernel_functions_are_marked_from_their_mapping_or_folded_suffix() {
    use firewatch_profile::{FlameTree, KERNEL_FILE};
    use pprof::proto;
    let strings = [
        "",
        "samples",
        "count",
        "[kernel.kallsyms]",
        "/usr/bin/app",
        "do_syscall_64",
        "main",
    ];
    let mapping = |id, filename| proto::Mapping {
        id,
        memory_limit: u64::MAX,
        filename,
        has_functions: true,
        ..Default::default()
    };
    let function = |id, name| proto::Function {
        id,
        name,
        ..Default::default()
    };
    let location = |id, mapping_id, function_id| proto::Location {
        id,
        mapping_id,
        line: vec![proto::Line {
            function_id,
            ..Default::default()
        }],
        ..Default::default()
    };
    let p = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        mapping: vec![mapping(1, 3), mapping(2, 4)],
        function: vec![function(1, 5), function(2, 6)],
        location: vec![location(1, 1, 1), location(2, 2, 2)],
        sample: vec![proto::Sample {
            location_id: vec![1, 2],
            value: vec![7],
            label: vec![],
        }],
        ..Default::default()
    };
    let limits = Limits::default();
    for model in [
        Profile::from_pprof(&p, &limits).unwrap(),
        Profile::from_pprof_bytes(&pprof::encode(&p), &limits).unwrap(),
    ] {
        let frames: Vec<_> = model.stack(0).iter().map(|&f| model.function(f)).collect();
        assert_eq!((frames[0].name, frames[0].is_kernel()), ("main", false));
        assert_eq!(
            (frames[1].name, frames[1].file),
            ("do_syscall_64", KERNEL_FILE)
        );
        let again = Profile::from_pprof_bytes(&model.to_pprof_bytes(), &limits).unwrap();
        assert!(
            again.function(again.stack(0)[1]).is_kernel(),
            "kept through pprof"
        );
    }

    let text = "app;main;entry_SYSCALL_64_[k];do_syscall_64_[k] 3\napp;main 1\n";
    let folded = folded::parse(
        text.as_bytes(),
        SampleType::new("samples", "count"),
        &limits,
    )
    .unwrap();
    let kernel: Vec<&str> = folded
        .functions()
        .filter(|f| f.is_kernel())
        .map(|f| f.name)
        .collect();
    assert_eq!(
        kernel,
        ["entry_SYSCALL_64_[k]", "do_syscall_64_[k]"],
        "names keep the mark"
    );

    for tree in [
        FlameTree::from_profile(&folded, 0),
        FlameTree::from_profile(&folded, 0).truncate(3),
    ] {
        let fb = tree.to_flamebearer();
        let marked: Vec<&str> = fb
            .kernel
            .iter()
            .map(|&i| fb.names[i as usize].as_str())
            .collect();
        let expected: &[&str] = if tree.len() > 3 {
            &["entry_SYSCALL_64_[k]", "do_syscall_64_[k]"]
        } else {
            &[]
        };
        assert_eq!(marked, expected);
    }
}

/// Pyroscope's `lines` text: one stack per line, each counting 1, read by
/// the same reader as folded text (limits, kernel marks, errors).
#[test]
fn lines_count_one_each() {
    let limits = Limits::default();
    let p = folded::parse_lines(
        b"a;b\na;b\na;c_[k]\n\n",
        SampleType::new("samples", "count"),
        &limits,
    )
    .unwrap();
    assert_eq!(p.total(0), 3);
    assert_eq!(fold(&[("a;b", 2), ("a;c_[k]", 1)]).total(0), 3);
    assert!(p.functions().any(|f| f.name == "c_[k]" && f.is_kernel()));
    let tight = Limits {
        max_samples: 1,
        ..Limits::default()
    };
    let e =
        folded::parse_lines(b"a\nb\n", SampleType::new("samples", "count"), &tight).unwrap_err();
    assert!(e.to_string().contains("lines (samples)"), "{e}");
}
