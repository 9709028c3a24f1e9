use firewatch_profile::{FlameTree, OTHER, ROOT};

use crate::support::{canonical, folded};

fn child(t: &FlameTree, node: u32, name: &str) -> Option<u32> {
    t.children(node)
        .iter()
        .copied()
        .find(|&c| t.name(c) == name)
}

#[test]
fn tree_totals_and_selfs() {
    let p = folded(&[("main;a;x", 3), ("main;a", 2), ("main;b", 5)]);
    let t = FlameTree::from_profile(&p, 0);
    assert_eq!(t.name(0), ROOT);
    assert_eq!(t.total(0, 0), 10);
    let main = child(&t, 0, "main").unwrap();
    let a = child(&t, main, "a").unwrap();
    assert_eq!((t.total(a, 0), t.self_value(a, 0)), (5, 2));
    assert_eq!(t.len(), 5);
    let names: Vec<&str> = t.children(main).iter().map(|&c| t.name(c)).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn flamebearer_layout_matches_the_documented_example() {
    // The example of docs/flamegraph-json.md.
    let p = folded(&[("main;a;x", 3), ("main;a", 2), ("main;b", 5)]);
    let fb = FlameTree::from_profile(&p, 0).to_flamebearer();
    assert_eq!(fb.names, ["total", "main", "a", "x", "b"]);
    assert_eq!(
        fb.levels,
        vec![
            vec![0, 10, 0, 0],
            vec![0, 10, 0, 1],
            vec![0, 5, 2, 2, 0, 5, 5, 4],
            vec![0, 3, 3, 3]
        ]
    );
    assert_eq!((fb.num_ticks, fb.max_self, fb.format), (10, 5, "single"));
    let json = serde_json::to_value(&fb).unwrap();
    assert_eq!(json["numTicks"], 10);
    assert!(json.get("leftTicks").is_none());
}

#[test]
fn diff_flamebearer_has_seven_numbers_per_node() {
    let before = folded(&[("main;a", 3), ("main;b", 1)]);
    let after = folded(&[("main;a", 1), ("main;b", 3), ("main;c", 4)]);
    let fb = FlameTree::diff(&before, 0, &after, 0).to_flamebearer();
    assert_eq!(fb.format, "double");
    assert_eq!((fb.left_ticks, fb.right_ticks), (Some(4), Some(8)));
    assert!(fb.levels.iter().all(|l| l.len() % 7 == 0));
    // Level 2: a, b, c in name order.
    assert_eq!(
        fb.levels[2],
        vec![
            0, 3, 3, 0, 1, 1, 2, 0, 1, 1, 0, 3, 3, 3, 0, 0, 0, 0, 4, 4, 4
        ]
    );
}

#[test]
fn truncation_keeps_totals_exact_with_other_nodes() {
    let p = folded(&[
        ("main;a;x", 50),
        ("main;a;y", 1),
        ("main;b", 30),
        ("main;c", 2),
        ("main;d", 1),
    ]);
    let t = FlameTree::from_profile(&p, 0);
    for max in 1..=t.len() + 1 {
        let small = t.truncate(max);
        assert!(
            small.len() <= max.max(2),
            "max {max} gave {} nodes",
            small.len()
        );
        assert_eq!(small.total(0, 0), 84);
        // Every node's total is its self plus its children's totals.
        for (node, _) in small.walk() {
            let kids: i64 = small
                .children(node)
                .iter()
                .map(|&c| small.total(c, 0))
                .sum();
            assert_eq!(
                small.total(node, 0),
                small.self_value(node, 0) + kids,
                "node {}",
                small.name(node)
            );
        }
    }
    let t6 = t.truncate(7);
    let main = child(&t6, 0, "main").unwrap();
    let names: Vec<&str> = t6.children(main).iter().map(|&c| t6.name(c)).collect();
    assert_eq!(names, ["a", "b", OTHER]);
    let other = child(&t6, main, OTHER).unwrap();
    assert_eq!(t6.total(other, 0), 3);
    // The flamebearer says how many calls each "other" stands for, by level
    // and position: main's children are a, b, other (c and d folded).
    let fb = t6.to_flamebearer();
    let folded: Vec<(i64, i64, i64)> = fb.folded.iter().map(|f| (f[0], f[1], f[2])).collect();
    assert!(folded.contains(&(2, 2, 2)), "{folded:?}");
    let level = &fb.levels[2];
    assert_eq!(fb.names[level[2 * 4 + 3] as usize], OTHER);
    assert!(
        t.to_flamebearer().folded.is_empty(),
        "nothing folded without truncation"
    );
}

#[test]
fn truncated_tree_converts_back_to_a_profile_with_the_same_total() {
    let p = crate::support::cargo_build();
    let t = FlameTree::from_profile(&p, 0);
    assert!(t.len() > 8192);
    let small = t.truncate(8192);
    assert!(small.len() <= 8192);
    let back = small.to_profile(p.sample_types().to_vec());
    assert_eq!(back.total(0), p.total(0));
    // Untruncated, the tree converts back to the very same stacks.
    assert_eq!(
        canonical(&t.to_profile(p.sample_types().to_vec())),
        canonical(&p)
    );
}
