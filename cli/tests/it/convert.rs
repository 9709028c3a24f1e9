use crate::fixtures::GO_CPU;
use crate::support::{data, data_arg, firewatch, folded_rows, tempdir};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).expect("output written")
}

#[test]
fn folded_to_pprof_and_back_keeps_stacks_and_totals() {
    let dir = tempdir();
    let input = data_arg("checkout.folded");
    for pprof in ["out.pb.gz", "out.pprof", "out.pb"] {
        firewatch(dir.path(), &["convert", &input, "-o", pprof]).ok();
        firewatch(dir.path(), &["convert", pprof, "-o", "back.folded"]).ok();
        let original = folded_rows(&read(&data("checkout.folded")));
        let back = folded_rows(&read(&dir.path().join("back.folded")));
        assert_eq!(back, original, "via {pprof}");
        assert_eq!(back.iter().map(|(_, n)| n).sum::<u64>(), 1000);
        // Duplicate input lines are one stack after the round trip.
        assert_eq!(back.len(), 8);
    }
}

#[test]
fn pprof_outputs_are_gzipped_or_raw_by_extension() {
    let dir = tempdir();
    let input = data_arg("checkout.folded");
    for (name, gzipped) in [
        ("a.pb.gz", true),
        ("b.pprof", true),
        ("c.pb", false),
        ("D.PB.GZ", true),
    ] {
        firewatch(dir.path(), &["convert", &input, "-o", name]).ok();
        let bytes = std::fs::read(dir.path().join(name)).expect("written");
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), gzipped, "{name}");
        let top = firewatch(dir.path(), &["top", name, "-n", "1"]).ok();
        assert!(
            top.starts_with("samples (count): total 1000;"),
            "{name}: {top}"
        );
    }
}

#[test]
fn go_profile_to_folded_uses_cpu_by_default() {
    let dir = tempdir();
    let input = data_arg(GO_CPU);
    firewatch(dir.path(), &["convert", &input, "-o", "cpu.folded"]).ok();
    let rows = folded_rows(&read(&dir.path().join("cpu.folded")));
    let want: Vec<(String, u64)> = [
        ("net/http.(*conn).serve;main.(*Handler).ServeHTTP;database/sql.(*DB).QueryContext;syscall.Syscall", 300_000_000),
        ("net/http.(*conn).serve;main.(*Handler).ServeHTTP;encoding/json.Marshal", 150_000_000),
        ("net/http.(*conn).serve;main.(*Handler).ServeHTTP;encoding/json.Marshal;runtime.mallocgc", 250_000_000),
        ("net/http.(*conn).serve;main.(*Handler).ServeHTTP;main.(*Cart).Total", 100_000_000),
        // The inlined call is a frame of its own, under its caller.
        ("net/http.(*conn).serve;main.(*Handler).ServeHTTP;main.(*Cart).Total;main.applyDiscounts", 400_000_000),
        ("runtime.gcBgMarkWorker;runtime.scanobject", 200_000_000),
        ("runtime.main;main.main;main.walk;main.walk;main.walk", 50_000_000),
        ("runtime.main;main.main;net/http.(*Server).Serve", 50_000_000),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_owned(), n))
    .collect();
    assert_eq!(rows, want);

    firewatch(
        dir.path(),
        &[
            "convert",
            &input,
            "-o",
            "n.folded",
            "--sample-type",
            "samples",
        ],
    )
    .ok();
    let total: u64 = folded_rows(&read(&dir.path().join("n.folded")))
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, 150);
}

#[test]
fn pprof_output_keeps_every_sample_type_unless_one_is_chosen() {
    let dir = tempdir();
    let input = data_arg(GO_CPU);
    firewatch(dir.path(), &["convert", &input, "-o", "all.pb.gz"]).ok();
    let samples = firewatch(
        dir.path(),
        &["top", "all.pb.gz", "--sample-type", "samples", "-n", "1"],
    )
    .ok();
    assert!(
        samples.starts_with("samples (count): total 150;"),
        "{samples}"
    );
    let cpu = firewatch(dir.path(), &["top", "all.pb.gz", "-n", "1"]).ok();
    assert!(cpu.starts_with("cpu (nanoseconds): total 1.50 s;"), "{cpu}");

    firewatch(
        dir.path(),
        &["convert", &input, "-o", "cpu.pb.gz", "--sample-type", "cpu"],
    )
    .ok();
    let err = firewatch(
        dir.path(),
        &["top", "cpu.pb.gz", "--sample-type", "samples"],
    )
    .fails();
    assert_eq!(
        err,
        "error: cpu.pb.gz: no sample type \"samples\" in this profile; it has: cpu (nanoseconds)"
    );
}

#[test]
fn svg_is_a_flamegraph_of_the_chosen_type() {
    let dir = tempdir();
    let input = data_arg(GO_CPU);
    firewatch(dir.path(), &["convert", &input, "-o", "cpu.svg"]).ok();
    let svg = read(&dir.path().join("cpu.svg"));
    assert!(svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains(">Flame Graph<"));
    assert!(svg.contains("cpu (nanoseconds), total 1.50 s"));
    assert!(svg.contains("<title>main.applyDiscounts (400,000,000 nanoseconds, 26.67%)</title>"));
    assert!(
        svg.contains("<title>net/http.(*conn).serve (1,200,000,000 nanoseconds, 80.00%)</title>")
    );

    firewatch(
        dir.path(),
        &[
            "convert",
            &input,
            "-o",
            "n.svg",
            "--sample-type",
            "samples",
            "--icicle",
            "--title",
            "checkout",
        ],
    )
    .ok();
    let icicle = read(&dir.path().join("n.svg"));
    assert!(icicle.contains(">checkout<"));
    assert!(icicle.contains("var inverted = true;"));
    assert!(svg.contains("var inverted = false;"));
    assert!(icicle.contains("<title>main.applyDiscounts (40 samples, 26.67%)</title>"));
}

#[test]
fn unknown_extension_lists_the_accepted_ones_and_writes_nothing() {
    let dir = tempdir();
    let input = data_arg("checkout.folded");
    for name in ["out.json", "out", ".svg", "out.gz"] {
        let err = firewatch(dir.path(), &["convert", &input, "-o", name]).fails();
        assert_eq!(
            err,
            format!(
                "error: {name}: cannot tell the output format from the name; \
                 use one of .folded, .pb.gz, .pprof, .pb, .svg"
            )
        );
        assert!(!dir.path().join(name).exists());
    }
}

#[test]
fn svg_options_are_refused_for_other_formats() {
    let dir = tempdir();
    let input = data_arg("checkout.folded");
    let err = firewatch(
        dir.path(),
        &["convert", &input, "-o", "x.folded", "--icicle"],
    )
    .fails();
    assert_eq!(err, "error: --icicle and --title apply to .svg output only");
    assert!(!dir.path().join("x.folded").exists());
}
