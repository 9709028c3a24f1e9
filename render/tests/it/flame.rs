use firewatch_profile::{Profile, SampleType};
use firewatch_render::{RenderError, SvgOptions, flamegraph_svg};

use crate::support::{frames, profile, rect_of, titles};

fn render(p: &Profile, opts: &SvgOptions) -> String {
    let mut out = Vec::new();
    flamegraph_svg(p, 0, opts, &mut out).expect("renders");
    String::from_utf8(out).expect("UTF-8 SVG")
}

fn cpu_profile() -> Profile {
    profile(
        "samples",
        "count",
        &[
            ("main;work;compute", 60),
            ("main;io", 30),
            ("main;work;compute", 10),
        ],
    )
}

#[test]
fn names_every_function_with_its_value_and_share() {
    let svg = render(&cpu_profile(), &SvgOptions::default());
    let titles = titles(&svg);
    assert_eq!(frames(&titles, "all"), ["all (100 samples, 100%)"]);
    assert_eq!(frames(&titles, "main"), ["main (100 samples, 100.00%)"]);
    assert_eq!(frames(&titles, "work"), ["work (70 samples, 70.00%)"]);
    assert_eq!(frames(&titles, "compute"), ["compute (70 samples, 70.00%)"]);
    assert_eq!(frames(&titles, "io"), ["io (30 samples, 30.00%)"]);
    assert!(svg.contains(">Flame Graph<"), "default title");
    assert!(
        svg.contains("samples (count), total 100"),
        "subtitle states the type and total"
    );
}

#[test]
fn icicle_puts_the_root_on_top() {
    let p = cpu_profile();
    let flame = render(&p, &SvgOptions::default());
    let icicle = render(
        &p,
        &SvgOptions {
            icicle: true,
            ..SvgOptions::default()
        },
    );
    assert_ne!(flame, icicle);
    assert!(icicle.contains(">Icicle Graph<"));
    let (main_flame, _) = rect_of(&flame, "main (100 samples, 100.00%)");
    let (leaf_flame, _) = rect_of(&flame, "compute (70 samples, 70.00%)");
    let (main_icicle, _) = rect_of(&icicle, "main (100 samples, 100.00%)");
    let (leaf_icicle, _) = rect_of(&icicle, "compute (70 samples, 70.00%)");
    assert!(main_flame > leaf_flame, "flame: callers below callees");
    assert!(main_icicle < leaf_icicle, "icicle: callers above callees");
}

#[test]
fn options_set_title_unit_and_min_width() {
    let p = profile(
        "cpu",
        "nanoseconds",
        &[("main;hot", 999_000), ("main;cold", 1_000)],
    );
    let svg = render(&p, &SvgOptions::default());
    assert!(frames(&titles(&svg), "hot")[0].starts_with("hot (999,000 nanoseconds, 99.90%"));
    assert!(svg.contains("cpu (nanoseconds), total 1.00 ms"));

    let opts = SvgOptions {
        title: Some("checkout CPU".into()),
        count_name: Some("ns".into()),
        icicle: false,
        min_width: 1.0,
    };
    let svg = render(&p, &opts);
    let titles = titles(&svg);
    assert!(svg.contains(">checkout CPU<"));
    assert_eq!(frames(&titles, "hot"), ["hot (999,000 ns, 99.90%)"]);
    assert!(
        frames(&titles, "cold").is_empty(),
        "0.1% is under min_width 1%"
    );
}

#[test]
fn output_is_deterministic() {
    let p = cpu_profile();
    assert_eq!(
        render(&p, &SvgOptions::default()),
        render(&p, &SvgOptions::default())
    );
}

#[test]
fn one_rectangle_per_call_path() {
    // As whole strings "a;f1" sorts between "a;f" and "a;f;g", which would
    // split `f` in two if lines were sorted as text.
    let p = profile("samples", "count", &[("a;f", 1), ("a;f1", 1), ("a;f;g", 1)]);
    let titles = titles(&render(&p, &SvgOptions::default()));
    assert_eq!(frames(&titles, "f"), ["f (2 samples, 66.67%)"]);
    assert_eq!(frames(&titles, "f1"), ["f1 (1 samples, 33.33%)"]);
}

#[test]
fn same_name_in_different_files_is_one_frame() {
    let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
    let main = p.intern_function("main", "main.rs", 1);
    let a = p.intern_function("parse", "a.rs", 10);
    let b = p.intern_function("parse", "b.rs", 20);
    p.add_sample(&[main, a], &[3]);
    p.add_sample(&[main, b], &[4]);
    let titles = titles(&render(&p, &SvgOptions::default()));
    assert_eq!(frames(&titles, "parse"), ["parse (7 samples, 100.00%)"]);
}

#[test]
fn spaces_and_semicolons_in_names_stay_inside_one_frame() {
    let p = profile("samples", "count", &[("main", 0)]);
    let mut p = p;
    p.add_named_sample(&["main", "retry 12"], &[5]);
    p.add_named_sample(&["main", "<[u8; 8]>::len"], &[5]);
    let svg = render(&p, &SvgOptions::default());
    let titles = titles(&svg);
    // Not read as a diff line ("... 12 5"), nor split at the semicolon.
    assert_eq!(
        frames(&titles, "retry\u{a0}12"),
        ["retry\u{a0}12 (5 samples, 50.00%)"]
    );
    assert_eq!(
        frames(&titles, "<[u8\u{37e}\u{a0}8]>::len"),
        ["<[u8\u{37e}\u{a0}8]>::len (5 samples, 50.00%)"]
    );
    assert_eq!(frames(&titles, "main"), ["main (10 samples, 100.00%)"]);
}

#[test]
fn control_characters_cannot_break_the_xml() {
    let p = profile("samples\u{1b}", "count\u{0}", &[("main;bell\u{7}", 1)]);
    let opts = SvgOptions {
        title: Some("title\u{8}".into()),
        ..SvgOptions::default()
    };
    let svg = render(&p, &opts);
    assert!(!svg.chars().any(|c| c.is_control() && c != '\n'), "{svg}");
    assert!(!svg.contains('\u{7}'));
    assert_eq!(
        frames(&titles(&svg), "bell\u{fffd}"),
        ["bell\u{fffd} (1 count\u{fffd}, 100.00%)"]
    );
}

#[test]
fn samples_without_frames_still_count() {
    let mut p = profile("samples", "count", &[("main", 3)]);
    p.add_sample(&[], &[1]);
    let titles = titles(&render(&p, &SvgOptions::default()));
    assert_eq!(frames(&titles, "all"), ["all (4 samples, 100%)"]);
    assert_eq!(frames(&titles, "[root]"), ["[root] (1 samples, 25.00%)"]);
}

#[test]
fn picks_the_requested_column() {
    let mut p = Profile::new(vec![
        SampleType::new("samples", "count"),
        SampleType::new("alloc_space", "bytes"),
    ]);
    p.add_named_sample(&["main", "alloc"], &[1, 3 << 20]);
    let mut out = Vec::new();
    flamegraph_svg(&p, 1, &SvgOptions::default(), &mut out).expect("renders");
    let svg = String::from_utf8(out).expect("UTF-8");
    assert!(svg.contains("alloc_space (bytes), total 3.00 MiB"));
    assert_eq!(
        frames(&titles(&svg), "alloc"),
        ["alloc (3,145,728 bytes, 100.00%)"]
    );
}

#[test]
fn empty_or_negative_profiles_are_an_error() {
    let mut out = Vec::new();
    let empty = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    let err = flamegraph_svg(&empty, 0, &SvgOptions::default(), &mut out).unwrap_err();
    assert!(matches!(err, RenderError::Empty { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the profile (cpu) has no samples to draw");

    let negative = profile("cpu", "nanoseconds", &[("main", -5), ("other", 0)]);
    let err = flamegraph_svg(&negative, 0, &SvgOptions::default(), &mut out).unwrap_err();
    assert!(matches!(err, RenderError::Empty { .. }), "{err:?}");
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn unknown_sample_type_is_an_error() {
    let mut out = Vec::new();
    let err = flamegraph_svg(&cpu_profile(), 3, &SvgOptions::default(), &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::NoSuchSampleType {
                index: 3,
                available: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn write_failures_are_reported() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let err = flamegraph_svg(&cpu_profile(), 0, &SvgOptions::default(), &mut Full).unwrap_err();
    assert!(matches!(err, RenderError::Io(_)), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn huge_values_render_with_exact_shares() {
    // Their sum overflows u64, which inferno adds up unchecked.
    let big = i64::MAX;
    let p = profile(
        "cpu",
        "nanoseconds",
        &[("main;a", big), ("main;b", big), ("main;c", big / 2)],
    );
    let titles = titles(&render(&p, &SvgOptions::default()));
    let a = frames(&titles, "a");
    assert_eq!(a.len(), 1);
    assert!(a[0].ends_with("nanoseconds, 40.00%)"), "{}", a[0]);
    assert!(
        a[0].starts_with("a (9,223,372,0"),
        "close to the real value: {}",
        a[0]
    );
    let all = frames(&titles, "all");
    assert!(all[0].ends_with(" nanoseconds, 100%)"), "{}", all[0]);
}
