//! The HTML report: one self-contained file (inline CSS and SVG, no
//! external resource), readable offline and attachable to a ticket.

use std::fmt::Write;

use firewatch_profile::diff::FunctionChange;
use firewatch_render::format_value;

use crate::chart;
use crate::compare::{points, share};
use crate::report::ReportData;
use crate::top::percent;
use crate::window::utc;

/// `text` safe in HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The id the inlined flamegraph's root element gets.
const FLAMEGRAPH_ID: &str = "fw-flamegraph";

/// A standalone SVG document (as the renderer writes it) made fit to inline
/// into HTML: the XML declaration and doctype go, and the flamegraph's
/// script, which takes "the first `<svg>` of the document" for its own, is
/// pointed at its root by id, since the trend chart comes first here.
pub(crate) fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..]
        .replacen("<svg", &format!("<svg id=\"{FLAMEGRAPH_ID}\""), 1)
        .replace(
            "document.getElementsByTagName(\"svg\")[0]",
            &format!("document.getElementById(\"{FLAMEGRAPH_ID}\")"),
        )
}

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #6e6e73; --line: #d2d2d7;
  --bar: #e8590c; --grew: #c92a2a; --shrank: #2b8a3e; --bg: #fff; }
@media (prefers-color-scheme: dark) { :root { --fg: #f5f5f7; --muted: #a1a1a6;
  --line: #424245; --bar: #ff922b; --grew: #ff6b6b; --shrank: #69db7c; --bg: #1c1c1e; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg);
  max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; }
code { font: 12.5px ui-monospace, monospace; } h1 code { font-size: inherit; }
.fw-meta { color: var(--muted); margin: 0.2em 0; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td.fw-num, th.fw-num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.fw-name { word-break: break-all; }
.fw-grew { color: var(--grew); } .fw-shrank { color: var(--shrank); }
.fw-trend .fw-bar { fill: var(--bar); } .fw-trend .fw-axis { stroke: var(--line); }
.fw-trend .fw-label { fill: var(--muted); font: 9px system-ui, sans-serif; }
.fw-trend .fw-end { text-anchor: end; }
.fw-flame { overflow-x: auto; border: 1px solid var(--line); background: #fff; }
.fw-flame svg { display: block; width: 100%; }
";

/// The whole report as one HTML document.
pub(crate) fn document(d: &ReportData) -> String {
    let t = &d.sample_type;
    let mut h = String::new();
    let title = format!("Firewatch report: {}", d.query.query);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = write!(
        h,
        "<h1>Firewatch report: <code>{}</code></h1>\n\
         <p class=\"fw-meta\">{} ({}), {}: total {} in {} functions</p>\n\
         <p class=\"fw-meta\">Server {}; generated {}.</p>\n",
        escape(&d.query.query),
        escape(&d.query.window.describe_utc()),
        escape(d.query.window.describe()),
        escape(&format!("{} ({})", t.kind, t.unit)),
        escape(&format_value(d.total, &t.unit)),
        d.function_count,
        escape(&d.server),
        escape(&utc(d.generated_ms)),
    );

    h.push_str("<h2>Trend</h2>\n");
    match chart::stats(&d.timeline) {
        Some(s) => {
            h.push_str(&chart::bar_chart_svg(&d.timeline, &t.unit));
            let _ = write!(
                h,
                "\n<p class=\"fw-meta\">Total per {} s: peak {} at {}, mean {}, lowest {}.</p>\n",
                d.timeline.duration_delta,
                escape(&format_value(s.max, &t.unit)),
                escape(&utc(s.max_at * 1000)),
                escape(&format_value(s.mean.round() as i64, &t.unit)),
                escape(&format_value(s.min, &t.unit)),
            );
        }
        None => h.push_str("<p>No timeline for this window.</p>\n"),
    }

    h.push_str("<h2>Top hotspots</h2>\n<p class=\"fw-meta\">By self value: time spent in the function itself.</p>\n<table>\n<tr><th class=\"fw-num\">self</th><th class=\"fw-num\">self %</th><th class=\"fw-num\">total</th><th class=\"fw-num\">total %</th><th>function</th></tr>\n");
    for r in &d.hotspots {
        let _ = writeln!(
            h,
            "<tr><td class=\"fw-num\">{}</td><td class=\"fw-num\">{:.2}%</td><td class=\"fw-num\">{}</td><td class=\"fw-num\">{:.2}%</td><td class=\"fw-name\"><code>{}</code></td></tr>",
            escape(&format_value(r.self_value, &t.unit)),
            percent(r.self_value, d.total),
            escape(&format_value(r.total, &t.unit)),
            percent(r.total, d.total),
            escape(&r.name),
        );
    }
    h.push_str("</table>\n");

    let _ = write!(
        h,
        "<h2>Changes against the previous window</h2>\n<p class=\"fw-meta\">{} compared with {}, by self share (percent of each window's total); changes in percentage points.</p>\n",
        escape(&d.query.window.describe_utc()),
        escape(d.previous.describe()),
    );
    match &d.changes {
        None => h.push_str("<p>No samples in the previous window: nothing to compare.</p>\n"),
        Some(c) => {
            changes_table(&mut h, "Grew most", &c.regressions, "fw-grew", d.limit);
            changes_table(&mut h, "Shrank most", &c.improvements, "fw-shrank", d.limit);
        }
    }

    h.push_str("<h2>Flamegraph</h2>\n<p class=\"fw-meta\">Click a frame to zoom, Ctrl-F to search.</p>\n<div class=\"fw-flame\">\n");
    h.push_str(&inline_svg(&d.flamegraph_svg));
    h.push_str("\n</div>\n</body>\n</html>\n");
    h
}

fn changes_table(h: &mut String, title: &str, rows: &[FunctionChange], class: &str, limit: usize) {
    let _ = writeln!(h, "<h3>{title}</h3>");
    if rows.is_empty() {
        h.push_str("<p>None.</p>\n");
        return;
    }
    h.push_str("<table>\n<tr><th class=\"fw-num\">before</th><th class=\"fw-num\">after</th><th class=\"fw-num\">change</th><th>function</th></tr>\n");
    for r in crate::diff::head(rows, limit) {
        let _ = writeln!(
            h,
            "<tr><td class=\"fw-num\">{}</td><td class=\"fw-num\">{}</td><td class=\"fw-num {class}\">{}</td><td class=\"fw-name\"><code>{}</code></td></tr>",
            share(r.before_self),
            share(r.after_self),
            points(r.delta_self),
            escape(&r.name),
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use firewatch_profile::{Profile, SampleType};
    use firewatch_render::{SvgOptions, flamegraph_svg};

    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{1b}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{fffd}"
        );
    }

    #[test]
    fn the_flamegraph_script_finds_its_own_svg_once_inlined() {
        let mut p = Profile::new(vec![SampleType::new("samples", "count")]);
        p.add_named_sample(&["main", "work"], &[3]);
        let mut svg = Vec::new();
        flamegraph_svg(&p, 0, &SvgOptions::default(), &mut svg).expect("drawn");
        let svg = String::from_utf8(svg).expect("UTF-8");
        let inline = inline_svg(&svg);
        assert!(
            inline.starts_with("<svg id=\"fw-flamegraph\""),
            "{}",
            &inline[..80]
        );
        assert!(!inline.contains("<?xml") && !inline.contains("<!DOCTYPE"));
        assert!(!inline.contains("getElementsByTagName(\"svg\")"));
        assert!(inline.contains("document.getElementById(\"fw-flamegraph\")"));
    }
}
