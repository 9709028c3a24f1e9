//! Properties over arbitrary profiles.

use firewatch_profile::diff::function_changes;
use firewatch_profile::{FlameTree, Limits, Profile, SampleType, folded};
use proptest::prelude::*;

use crate::support::canonical;

/// Profiles of 1-2 sample types over stacks of small alphabets (so stacks
/// repeat and share prefixes), with names that include spaces and unicode.
pub(crate) fn arb_profile() -> impl Strategy<Value = Profile> {
    let name = prop::sample::select(vec![
        "main", "a", "b b", "c::d<'_>", "é", "[k]", "x_[k]", "0x1f",
    ]);
    let stack = prop::collection::vec(name, 1..12);
    (
        1usize..=2,
        prop::collection::vec((stack, 0i64..1_000_000, 0i64..1_000), 0..40),
    )
        .prop_map(|(types, samples)| {
            let all = [
                SampleType::new("cpu", "nanoseconds"),
                SampleType::new("samples", "count"),
            ];
            let mut p = Profile::new(all[..types].to_vec());
            for (stack, v, w) in samples {
                p.add_named_sample(&stack, &[v, w]);
            }
            p
        })
}

fn merged(ps: &[&Profile]) -> Profile {
    Profile::merge_all(ps.iter().copied())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn pprof_round_trip_preserves_stacks_and_totals(p in arb_profile()) {
        let back = Profile::from_pprof_bytes(&p.to_pprof_bytes(), &Limits::default()).unwrap();
        prop_assert_eq!(canonical(&back), canonical(&p));
        for t in 0..p.sample_types().len() {
            prop_assert_eq!(back.total(t), p.total(t));
        }
    }

    #[test]
    fn folded_round_trip_preserves_stacks_and_totals(p in arb_profile()) {
        let text = folded::to_string(&p, 0);
        let back = folded::parse(text.as_bytes(), p.sample_types()[0].clone(), &Limits::default()).unwrap();
        prop_assert_eq!(back.total(0), p.total(0));
        prop_assert_eq!(canonical(&back), canonical(&p.select_sample_types(&[0])));
    }

    #[test]
    fn merge_is_commutative(a in arb_profile(), b in arb_profile()) {
        prop_assert_eq!(canonical(&merged(&[&a, &b])), canonical(&merged(&[&b, &a])));
    }

    #[test]
    fn merge_is_associative(a in arb_profile(), b in arb_profile(), c in arb_profile()) {
        let left = merged(&[&merged(&[&a, &b]), &c]);
        let right = merged(&[&a, &merged(&[&b, &c])]);
        prop_assert_eq!(canonical(&left), canonical(&right));
    }

    #[test]
    fn diff_with_itself_is_all_zeros(p in arb_profile()) {
        for row in function_changes(&p, 0, &p, 0) {
            prop_assert_eq!(row.delta_self, 0.0);
            prop_assert_eq!(row.before_total, row.after_total);
        }
        let tree = FlameTree::diff(&p, 0, &p, 0);
        for (node, _) in tree.walk() {
            prop_assert_eq!(tree.total(node, 0), tree.total(node, 1));
            prop_assert_eq!(tree.self_value(node, 0), tree.self_value(node, 1));
        }
    }

    #[test]
    fn truncation_keeps_the_grand_total(p in arb_profile(), max in 1usize..30) {
        let tree = FlameTree::from_profile(&p, 0);
        let small = tree.truncate(max);
        prop_assert!(small.len() <= max.max(2));
        prop_assert_eq!(small.total(0, 0), p.total(0));
        prop_assert_eq!(small.to_profile(p.sample_types()[..1].to_vec()).total(0), p.total(0));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Profile::from_pprof_bytes(&bytes, &Limits::default());
        let _ = firewatch_profile::parse_any(&bytes, &Limits::default());
    }
}
