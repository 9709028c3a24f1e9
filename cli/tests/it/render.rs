//! `firewatch render`: a query's flamegraph or profile from a real server.

use crate::live::shop;
use crate::support::{firewatch, folded_rows, tempdir};

#[test]
fn every_format_by_extension() {
    let server = shop();
    let dir = tempdir();
    let render = |out: &str, extra: &[&str]| {
        let mut args = vec!["render", "shop.cpu", "-o", out, "--server", &server.base];
        args.extend_from_slice(&["--from", "now-15m"]);
        args.extend_from_slice(extra);
        let run = firewatch(dir.path(), &args);
        assert!(
            run.stderr.contains(&format!("wrote {out}: ")),
            "{}",
            run.stderr
        );
        run.ok();
        std::fs::read(dir.path().join(out)).expect("written")
    };

    let svg =
        String::from_utf8(render("shop.svg", &["--icicle", "--title", "Shop CPU"])).expect("UTF-8");
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains(">Shop CPU<"));
    assert!(svg.contains("var inverted = true;"));
    assert!(svg.contains("parse"));

    let folded = String::from_utf8(render("shop.folded", &[])).expect("UTF-8");
    let want: Vec<(String, u64)> = [
        ("main;handle;parse", 600_000_000),
        ("main;handle;render", 300_000_000),
        ("main;idle", 100_000_000),
    ]
    .into_iter()
    .map(|(s, n)| (s.to_owned(), n))
    .collect();
    assert_eq!(folded_rows(&folded), want);

    let gz = render("shop.pb.gz", &[]);
    assert!(gz.starts_with(&[0x1f, 0x8b]), "gzipped pprof");
    let raw = render("shop.pb", &[]);
    assert!(!raw.starts_with(&[0x1f, 0x8b]), "raw pprof");
    for file in ["shop.pb.gz", "shop.pb"] {
        let top = firewatch(dir.path(), &["top", file, "-n", "1"]).ok();
        assert!(
            top.starts_with("cpu (nanoseconds): total 1.00 s;"),
            "{file}: {top}"
        );
        assert!(top.ends_with("  parse\n"), "{file}: {top}");
    }

    let json: serde_json::Value = serde_json::from_slice(&render("shop.json", &[])).expect("JSON");
    assert_eq!(json["flamebearer"]["numTicks"], 1_000_000_000_i64);
}

#[test]
fn bad_names_and_options_fail_before_asking_the_server() {
    let dir = tempdir();
    // No server at all: these must fail on the flags alone.
    let server = "http://127.0.0.1:9";
    let run = firewatch(
        dir.path(),
        &["render", "shop.cpu", "-o", "shop.png", "--server", server],
    );
    let err = crate::support::error_line(&run, 2);
    assert_eq!(
        err,
        "error: shop.png: cannot tell the output format from the name; \
         use one of .svg, .pb.gz, .pprof, .pb, .folded, .json"
    );
    let run = firewatch(
        dir.path(),
        &[
            "render",
            "shop.cpu",
            "-o",
            "shop.folded",
            "--icicle",
            "--server",
            server,
        ],
    );
    let err = crate::support::error_line(&run, 2);
    assert_eq!(err, "error: --icicle and --title apply to .svg output only");
    assert!(!dir.path().join("shop.folded").exists());
}
