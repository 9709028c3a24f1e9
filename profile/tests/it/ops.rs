use firewatch_profile::{Profile, SampleType, TopEntry};

use crate::support::{canonical, folded};

#[test]
fn merge_sums_per_stack_and_unions_sample_types() {
    let mut a = folded(&[("main;a", 3), ("main;b", 1)]);
    let b = folded(&[("main;a", 2), ("main;c", 5)]);
    a.merge(&b);
    assert_eq!(
        canonical(&a),
        canonical(&folded(&[("main;a", 5), ("main;b", 1), ("main;c", 5)]))
    );

    let mut cpu = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    cpu.add_named_sample(&["main", "a"], &[100]);
    let mut merged = folded(&[("main;a", 1)]);
    merged.merge(&cpu);
    assert_eq!(merged.sample_types().len(), 2);
    let stack = (0..merged.stack_count() as u32)
        .find(|&i| merged.stack_names(i).eq(["main", "a"]))
        .unwrap();
    assert_eq!(merged.values(stack), &[1, 100]);
}

#[test]
fn merge_widens_the_time_window() {
    let mut a = folded(&[("main", 1)]);
    a.time_nanos = 100;
    a.duration_nanos = 10;
    let mut b = folded(&[("main", 1)]);
    b.time_nanos = 200;
    b.duration_nanos = 10;
    a.merge(&b);
    assert_eq!((a.time_nanos, a.duration_nanos), (100, 110));
}

#[test]
fn scale_rounds_each_value() {
    let mut p = folded(&[("main;a", 3), ("main;b", 10)]);
    p.scale(0.5);
    assert_eq!(
        canonical(&p),
        canonical(&folded(&[("main;a", 2), ("main;b", 5)]))
    );
}

#[test]
fn filters_keep_the_right_stacks() {
    let p = folded(&[("main;a;x", 3), ("main;b;x", 1), ("other;a", 7)]);
    assert_eq!(
        canonical(&p.filter_prefix(&["main", "a"])),
        canonical(&folded(&[("main;a;x", 3)]))
    );
    assert_eq!(
        canonical(&p.focus("a")),
        canonical(&folded(&[("main;a;x", 3), ("other;a", 7)]))
    );
    assert_eq!(
        canonical(&p.callees("a")),
        canonical(&folded(&[("a;x", 3), ("a", 7)]))
    );
    assert_eq!(
        canonical(&p.callers("x")),
        canonical(&folded(&[("x;a;main", 3), ("x;b;main", 1)]))
    );
    assert!(p.focus("nowhere").is_empty());
}

#[test]
fn top_counts_recursion_once_per_stack() {
    let p = folded(&[("main;f;f;f", 4), ("main;g", 6), ("main", 2)]);
    let top = p.top_functions(0);
    let row = |n: &str| top.iter().find(|e| e.name == n).cloned().unwrap();
    assert_eq!(
        row("f"),
        TopEntry {
            name: "f".into(),
            self_value: 4,
            total: 4
        }
    );
    assert_eq!(
        row("main"),
        TopEntry {
            name: "main".into(),
            self_value: 2,
            total: 12
        }
    );
    assert_eq!(top[0].name, "g");
    assert_eq!(top.iter().map(|e| e.self_value).sum::<i64>(), p.total(0));
}

#[test]
fn top_on_the_real_fixture_accounts_for_everything() {
    let p = crate::support::cargo_build();
    let top = p.top_functions(0);
    assert_eq!(top.iter().map(|e| e.self_value).sum::<i64>(), p.total(0));
    assert!(top.windows(2).all(|w| w[0].self_value >= w[1].self_value));
    assert!(
        top.iter()
            .all(|e| e.total <= p.total(0) && e.self_value <= e.total)
    );
}

#[test]
fn select_and_retain() {
    let mut p = Profile::new(vec![
        SampleType::new("samples", "count"),
        SampleType::new("cpu", "nanoseconds"),
    ]);
    p.add_named_sample(&["main", "a"], &[1, 10]);
    p.add_named_sample(&["main", "b"], &[0, 5]);
    p.add_named_sample(&["main", "c"], &[0, 0]);
    let cpu = p.select_sample_types(&[1]);
    assert_eq!(cpu.sample_types(), &[SampleType::new("cpu", "nanoseconds")]);
    assert_eq!(cpu.total(0), 15);
    assert_eq!(cpu.stack_count(), 2);
    p.retain_nonzero();
    assert_eq!(p.stack_count(), 2);
    assert_eq!(p.total(1), 15);
}

/// Hiding a marker keeps every sample, on the stack without the marker;
/// a root added above every stack keeps the totals.
#[test]
fn frames_hidden_and_roots_added_keep_every_sample() {
    let p = folded(&[
        ("[truncated stack];work;leaf", 10),
        ("_start;main;work;leaf", 5),
        ("[truncated stack];leaf", 2),
    ]);
    let hidden = p.without_frames(firewatch_profile::TRUNCATED);
    assert_eq!(hidden.total(0), p.total(0));
    assert_eq!(
        canonical(&hidden),
        canonical(&folded(&[
            ("work;leaf", 10),
            ("_start;main;work;leaf", 5),
            ("leaf", 2)
        ]))
    );
    let rooted = p.under_root("svc");
    assert_eq!(rooted.total(0), p.total(0));
    assert!(
        rooted
            .samples()
            .all(|(stack, _)| rooted.function_name(stack[0]) == "svc")
    );
    assert_eq!(rooted.samples().len(), p.samples().len());
}
