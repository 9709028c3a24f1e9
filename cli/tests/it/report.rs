//! `firewatch report`: HTML as one self-contained file, markdown with the
//! flamegraph beside it, both from a real server.

use crate::live::shop;
use crate::support::{error_line, firewatch, tempdir};

/// Markup that would load something from outside the file.
const EXTERNAL: &[&str] = &[
    "<link", "<img", "<iframe", "src=", "url(http", "url(//", "@import",
];

#[test]
fn html_is_one_self_contained_file() {
    let server = shop();
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &[
            "report",
            "shop.cpu",
            "--server",
            &server.base,
            "--from",
            "now-30m",
            "--until",
            "now",
            "-o",
            "report.html",
        ],
    );
    assert!(
        run.stderr.contains("fetching the previous window"),
        "{}",
        run.stderr
    );
    run.ok();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("listed").collect();
    assert_eq!(entries.len(), 1, "one file: {entries:?}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("written");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    assert!(html.contains("<h1>Firewatch report: <code>shop.cpu</code></h1>"));
    // The trend chart and the flamegraph, both inline.
    assert!(html.contains("<svg class=\"fw-trend\""));
    assert!(html.contains("<svg id=\"fw-flamegraph\""));
    assert!(!html.contains("<?xml"), "no XML prolog inside HTML");
    for name in ["parse", "render", "idle", "handle"] {
        assert!(
            html.contains(&format!("<code>{name}</code>")),
            "{name} in the tables"
        );
    }
    // Hotspots: parse first at 60%; changes against the previous 30 minutes.
    let hotspots = &html[html.find("Top hotspots").expect("hotspots")..];
    assert!(hotspots.find("<code>parse</code>") < hotspots.find("<code>render</code>"));
    assert!(html.contains("60.00%"));
    let changes = &html[html
        .find("Changes against the previous window")
        .expect("changes")..];
    assert!(
        changes.contains("+30.00 pp</td><td class=\"fw-name\"><code>parse</code>"),
        "{changes}"
    );
    assert!(
        changes.contains("-20.00 pp</td><td class=\"fw-name\"><code>render</code>"),
        "{changes}"
    );
    for bad in EXTERNAL {
        assert!(!html.contains(bad), "{bad} in the report");
    }
}

#[test]
fn markdown_links_the_flamegraph_written_beside_it() {
    let server = shop();
    let dir = tempdir();
    firewatch(
        dir.path(),
        &[
            "report",
            "shop.cpu",
            "--server",
            &server.base,
            "--from",
            "now-30m",
            "-o",
            "weekly.md",
        ],
    )
    .ok();
    let md = std::fs::read_to_string(dir.path().join("weekly.md")).expect("written");
    let svg = std::fs::read_to_string(dir.path().join("weekly.svg")).expect("flamegraph written");
    assert!(svg.contains("<svg") && svg.contains("parse"));
    assert!(md.starts_with("# Firewatch report: `shop.cpu`\n"), "{md}");
    assert!(md.contains("![Flamegraph](weekly.svg)"), "{md}");
    assert!(
        md.contains("| 600.00 ms | 60.00% | 600.00 ms | 60.00% | `parse` |"),
        "{md}"
    );
    assert!(
        md.contains("| `parse` | 30.00% | 60.00% | +30.00 pp |"),
        "{md}"
    );
    // The trend: a line of block characters in a code block.
    let trend = md.split("## Trend\n\n```\n").nth(1).expect("trend block");
    let line = trend.lines().next().expect("a line");
    assert!(line.contains('█'), "{line:?}");
}

#[test]
fn an_empty_previous_window_is_said_so() {
    let server = crate::live::Server::start();
    server.ingest("fresh.cpu", "now-5m", "now-4m", "main;work 10\n");
    let dir = tempdir();
    firewatch(
        dir.path(),
        &[
            "report",
            "fresh.cpu",
            "--server",
            &server.base,
            "--from",
            "now-10m",
            "-o",
            "r.md",
        ],
    )
    .ok();
    let md = std::fs::read_to_string(dir.path().join("r.md")).expect("written");
    assert!(
        md.contains("No samples in the previous window: nothing to compare."),
        "{md}"
    );
}

#[test]
fn unknown_format_and_empty_query() {
    let server = shop();
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &[
            "report",
            "shop.cpu",
            "--server",
            &server.base,
            "-o",
            "r.pdf",
        ],
    );
    let err = error_line(&run, 2);
    assert_eq!(
        err,
        "error: r.pdf: cannot tell the report format from the name; use .html or .md"
    );
    let run = firewatch(
        dir.path(),
        &[
            "report",
            "nobody.cpu",
            "--server",
            &server.base,
            "-o",
            "r.html",
        ],
    );
    let err = error_line(&run, 1);
    assert!(
        err.starts_with("error: nobody.cpu (now-1h to now): no samples"),
        "{err}"
    );
    assert!(!dir.path().join("r.html").exists());
}
