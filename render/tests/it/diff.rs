use firewatch_profile::{Profile, SampleType};
use firewatch_render::{RenderError, SvgOptions, diff_svg};

use crate::support::{frames, profile, rect_of, titles};

fn render(before: &Profile, after: &Profile) -> String {
    let mut out = Vec::new();
    diff_svg(before, 0, after, 0, &SvgOptions::default(), &mut out).expect("renders");
    String::from_utf8(out).expect("UTF-8 SVG")
}

/// Red channel 255 with equal green and blue: inferno's "grew" hue.
fn is_red(fill: &str) -> bool {
    let rgb: Vec<u32> = fill
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|c| c.parse().expect("channel"))
        .collect();
    rgb[0] == 255 && rgb[1] == rgb[2] && rgb[1] < 250
}

fn is_blue(fill: &str) -> bool {
    let rgb: Vec<u32> = fill
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .map(|c| c.parse().expect("channel"))
        .collect();
    rgb[2] == 255 && rgb[0] == rgb[1] && rgb[0] < 250
}

#[test]
fn growth_is_red_and_shrinkage_blue_by_share() {
    // `after` is twice as long. Scaled to 200, before has a = b = 100; after
    // has a = 150 (+25% of the width) and b = 50 (-25%).
    let before = profile("cpu", "nanoseconds", &[("main;a", 50), ("main;b", 50)]);
    let after = profile("cpu", "nanoseconds", &[("main;a", 150), ("main;b", 50)]);
    let svg = render(&before, &after);
    let titles = titles(&svg);
    assert_eq!(
        frames(&titles, "a"),
        ["a (150 nanoseconds, 75.00%; +25.00%)"]
    );
    assert_eq!(
        frames(&titles, "b"),
        ["b (50 nanoseconds, 25.00%; -25.00%)"]
    );
    let (_, a_fill) = rect_of(&svg, "a (150 nanoseconds, 75.00%; +25.00%)");
    let (_, b_fill) = rect_of(&svg, "b (50 nanoseconds, 25.00%; -25.00%)");
    assert!(is_red(&a_fill), "a grew: {a_fill}");
    assert!(is_blue(&b_fill), "b shrank: {b_fill}");
    assert!(svg.contains(">Differential Flame Graph<"));
    assert!(
        svg.contains("cpu: before 100 ns, after 200 ns"),
        "subtitle states both totals"
    );
}

#[test]
fn a_busier_window_with_the_same_shape_shows_no_change() {
    let before = profile("samples", "count", &[("main;a", 30), ("main;b", 10)]);
    let after = profile("samples", "count", &[("main;a", 300), ("main;b", 100)]);
    let svg = render(&before, &after);
    let titles = titles(&svg);
    assert_eq!(frames(&titles, "a"), ["a (300 samples, 75.00%; 0.00%)"]);
    assert_eq!(frames(&titles, "b"), ["b (100 samples, 25.00%; 0.00%)"]);
    let (_, fill) = rect_of(&svg, "a (300 samples, 75.00%; 0.00%)");
    assert_eq!(fill, "rgb(250,250,250)");
}

#[test]
fn new_stacks_are_red_and_vanished_ones_are_not_drawn() {
    let before = profile("samples", "count", &[("main;old", 10), ("main;kept", 10)]);
    let after = profile("samples", "count", &[("main;new", 10), ("main;kept", 10)]);
    let svg = render(&before, &after);
    let titles = titles(&svg);
    assert_eq!(
        frames(&titles, "new"),
        ["new (10 samples, 50.00%; +50.00%)"]
    );
    assert_eq!(
        frames(&titles, "kept"),
        ["kept (10 samples, 50.00%; 0.00%)"]
    );
    assert!(frames(&titles, "old").is_empty());
}

#[test]
fn compares_columns_chosen_per_side() {
    let mut before = Profile::new(vec![
        SampleType::new("samples", "count"),
        SampleType::new("cpu", "nanoseconds"),
    ]);
    before.add_named_sample(&["main", "a"], &[1, 100]);
    let after = profile("cpu", "nanoseconds", &[("main;a", 100)]);
    let mut out = Vec::new();
    diff_svg(&before, 1, &after, 0, &SvgOptions::default(), &mut out).expect("renders");
    let titles = titles(&String::from_utf8(out).expect("UTF-8"));
    assert_eq!(
        frames(&titles, "a"),
        ["a (100 nanoseconds, 100.00%; 0.00%)"]
    );
}

#[test]
fn an_empty_side_is_an_error_naming_it() {
    let full = profile("cpu", "nanoseconds", &[("main", 5)]);
    let empty = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    let mut out = Vec::new();
    let err = diff_svg(&empty, 0, &full, 0, &SvgOptions::default(), &mut out).unwrap_err();
    assert!(matches!(err, RenderError::Empty { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the before profile (cpu) has no samples to draw"
    );
    let err = diff_svg(&full, 0, &empty, 0, &SvgOptions::default(), &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the after profile (cpu) has no samples to draw"
    );
    let err = diff_svg(&full, 2, &full, 0, &SvgOptions::default(), &mut out).unwrap_err();
    assert!(
        matches!(err, RenderError::NoSuchSampleType { index: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn huge_values_keep_exact_change_percentages() {
    let big = i64::MAX / 4;
    let before = profile("cpu", "nanoseconds", &[("main;a", big), ("main;b", big)]);
    let after = profile(
        "cpu",
        "nanoseconds",
        &[("main;a", big), ("main;b", big), ("main;c", big)],
    );
    let titles = titles(&render(&before, &after));
    let a = frames(&titles, "a");
    let c = frames(&titles, "c");
    assert!(
        a[0].ends_with("×10000 nanoseconds, 33.33%; -16.67%)"),
        "{}",
        a[0]
    );
    assert!(
        c[0].ends_with("×10000 nanoseconds, 33.33%; +33.33%)"),
        "{}",
        c[0]
    );
}
