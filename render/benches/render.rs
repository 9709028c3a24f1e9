//! Render targets: an SVG flamegraph of a 50,000-node tree in under 300 ms,
//! and the flamegraph JSON of 8,192 nodes in under 50 ms. Each is printed
//! with a baseline measured in the same process: for SVG, writing the same
//! stacks as folded text (what inferno parses); for JSON, building the call
//! tree it is cut from.
//!
//! `cargo bench -p firewatch-render`

use std::hint::black_box;
use std::time::{Duration, Instant};

use firewatch_profile::corpus::{Generator, Shape};
use firewatch_profile::{FlameTree, Profile, folded};
use firewatch_render::{SvgOptions, flamegraph_svg};

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
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

/// A merged profile whose call tree has at least `nodes` nodes.
fn profile_with_nodes(nodes: usize) -> Profile {
    let shape = Shape {
        functions: 20_000,
        universe_stacks: 6_000,
        stacks_per_profile: 1_500,
        samples_per_profile: 5_000,
        min_depth: 20,
        max_depth: 40,
    };
    let g = Generator::new(shape, 3);
    let mut merged = Profile::default();
    for i in 0.. {
        merged.merge(&g.profile(i));
        if FlameTree::from_profile(&merged, 0).len() >= nodes {
            break;
        }
    }
    merged
}

fn main() {
    let profile = profile_with_nodes(50_000);
    let tree = FlameTree::from_profile(&profile, 0);
    let runs = 7;

    let svg = median(runs, || {
        let mut out = Vec::with_capacity(16 << 20);
        flamegraph_svg(&profile, 0, &SvgOptions::default(), &mut out).expect("svg");
        black_box(out);
    });
    let folded_text = median(runs, || {
        black_box(folded::to_string(&profile, 0));
    });
    let build = median(runs, || {
        black_box(FlameTree::from_profile(&profile, 0));
    });
    let json = median(runs, || {
        let small = tree.truncate(8192);
        black_box(serde_json::to_string(&small.to_flamebearer()).expect("json"));
    });

    println!(
        "tree: {} nodes, {} stacks",
        tree.len(),
        profile.stack_count()
    );
    println!(
        "svg of the {}-node tree: {svg:.2?} (target < 300 ms: {}); folded text of the same stacks: {folded_text:.2?}; ratio {:.1}",
        tree.len(),
        if svg < Duration::from_millis(300) {
            "met"
        } else {
            "NOT met"
        },
        svg.as_secs_f64() / folded_text.as_secs_f64()
    );
    println!(
        "json of 8,192 nodes (truncate + flamebearer + serialize): {json:.2?} (target < 50 ms: {}); building the full tree: {build:.2?}; ratio {:.2}",
        if json < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        json.as_secs_f64() / build.as_secs_f64()
    );
}
