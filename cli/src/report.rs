//! `firewatch report`: a document about one query over one window: top
//! hotspots, the trend of its total, the biggest changes against the
//! previous window of the same length, and the flamegraph. HTML is one
//! self-contained file; markdown links the flamegraph, written beside it.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use firewatch_profile::{SampleType, TopEntry};
use firewatch_render::{SvgOptions, flamegraph_svg, format_value};

use crate::chart;
use crate::client::{Client, Query, Timeline};
use crate::compare::{Comparison, Side, change_table};
use crate::error::{Error, Result};
use crate::markdown;
use crate::top::{percent, require_samples};
use crate::window::{Window, utc};
use crate::{html, printable, progress};

/// What a report shows, gathered before anything is written.
pub(crate) struct ReportData {
    /// The query and its window.
    pub query: Query,
    /// The server asked.
    pub server: String,
    /// When the report was made, Unix milliseconds.
    pub generated_ms: i64,
    /// The sample type of the merged profile.
    pub sample_type: SampleType,
    /// Its total over the window.
    pub total: i64,
    /// Functions with a value.
    pub function_count: usize,
    /// The top functions by self value.
    pub hotspots: Vec<TopEntry>,
    /// Totals over the window.
    pub timeline: Timeline,
    /// The window before, of the same length.
    pub previous: Window,
    /// Against the previous window; `None` when it holds no samples.
    pub changes: Option<Comparison>,
    /// Rows per table.
    pub limit: usize,
    /// The flamegraph, a standalone SVG document.
    pub flamegraph_svg: String,
}

/// The document kinds, by the output file's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Html,
    Markdown,
}

impl Kind {
    fn of(path: &Path) -> Option<Kind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, ext) = name.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        match ext {
            "html" | "htm" => Some(Kind::Html),
            "md" | "markdown" => Some(Kind::Markdown),
            _ => None,
        }
    }
}

/// Timeline points aimed for: enough to see a shape, few enough for one
/// line of text.
const TREND_POINTS: i64 = 60;

/// Gathers the report for `query` and writes it to `output`.
pub(crate) fn run(client: &Client, query: Query, output: &Path, limit: usize) -> Result<()> {
    let kind = Kind::of(output).ok_or_else(|| {
        Error::Usage(format!(
            "{}: cannot tell the report format from the name; use .html or .md",
            output.display()
        ))
    })?;
    let data = gather(client, query, limit)?;
    match kind {
        Kind::Html => {
            let doc = html::document(&data);
            std::fs::write(output, &doc).map_err(|e| Error::file(output, "cannot write", e))?;
            progress(&format!(
                "wrote {}: one self-contained HTML file, {} bytes",
                output.display(),
                doc.len()
            ));
        }
        Kind::Markdown => {
            let svg_path = svg_beside(output);
            std::fs::write(&svg_path, &data.flamegraph_svg)
                .map_err(|e| Error::file(&svg_path, "cannot write", e))?;
            let file_name = svg_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let doc = markdown_document(&data, &file_name);
            std::fs::write(output, &doc).map_err(|e| Error::file(output, "cannot write", e))?;
            progress(&format!(
                "wrote {} and its flamegraph {}",
                output.display(),
                svg_path.display()
            ));
        }
    }
    Ok(())
}

/// `dir/report.md` -> `dir/report.svg`.
fn svg_beside(output: &Path) -> PathBuf {
    output.with_extension("svg")
}

/// Fetches the window's profile and timeline and the previous window's
/// profile, and draws the flamegraph.
fn gather(client: &Client, query: Query, limit: usize) -> Result<ReportData> {
    progress(&format!(
        "fetching {} from {}",
        query.describe(),
        client.base()
    ));
    let profile = client.profile(&query)?;
    require_samples(&profile, &query)?;
    let step_seconds = (query.window.length_ms() / 1000 / TREND_POINTS).max(10);
    progress(&format!("fetching the trend per {step_seconds} s"));
    let timeline = client.timeline(&query, step_seconds)?;
    let previous = Query {
        window: query.window.previous(),
        ..query.clone()
    };
    progress(&format!(
        "fetching the previous window, {}",
        previous.window.describe()
    ));
    let before = client.profile(&previous)?;

    let sample_type = profile.sample_types()[0].clone();
    let total = profile.total(0);
    let mut hotspots = profile.top_functions(0);
    let function_count = hotspots.len();
    if limit > 0 {
        hotspots.truncate(limit);
    }
    let mut svg = Vec::new();
    let options = SvgOptions {
        title: Some(query.query.clone()),
        ..SvgOptions::default()
    };
    flamegraph_svg(&profile, 0, &options, &mut svg)
        .map_err(|e| Error::invalid(query.describe(), e.to_string()))?;
    let flamegraph_svg = String::from_utf8_lossy(&svg).into_owned();

    let changes = if before.sample_types().is_empty() || before.total(0) == 0 {
        None
    } else {
        Some(Comparison::of(
            Side {
                label: previous.describe(),
                profile: before,
                column: 0,
            },
            Side {
                label: query.describe(),
                profile,
                column: 0,
            },
        ))
    };
    Ok(ReportData {
        server: client.base().to_owned(),
        generated_ms: firewatch_syntax::now_ms(),
        previous: previous.window,
        query,
        sample_type,
        total,
        function_count,
        hotspots,
        timeline,
        changes,
        limit,
        flamegraph_svg,
    })
}

/// The markdown report; the flamegraph is the image `svg_name`, beside it.
fn markdown_document(d: &ReportData, svg_name: &str) -> String {
    let t = &d.sample_type;
    let mut md = String::new();
    let _ = write!(
        md,
        "# Firewatch report: {}\n\n- window: {} ({})\n- type: {} ({}), total {} in {} functions\n- server: {}; generated {}\n",
        markdown::code(&d.query.query),
        d.query.window.describe_utc(),
        printable(d.query.window.describe()),
        printable(&t.kind),
        printable(&t.unit),
        format_value(d.total, &t.unit),
        d.function_count,
        printable(&d.server),
        utc(d.generated_ms),
    );

    md.push_str("\n## Trend\n\n");
    match chart::stats(&d.timeline) {
        Some(s) => {
            let _ = write!(
                md,
                "```\n{}\n```\n\nTotal per {} s from {}: peak {} at {}, mean {}, lowest {}.\n",
                chart::sparkline(&d.timeline),
                d.timeline.duration_delta,
                utc(d.timeline.start_time * 1000),
                format_value(s.max, &t.unit),
                utc(s.max_at * 1000),
                format_value(s.mean.round() as i64, &t.unit),
                format_value(s.min, &t.unit),
            );
        }
        None => md.push_str("No timeline for this window.\n"),
    }

    md.push_str("\n## Top hotspots\n\nBy self value: time spent in the function itself.\n\n");
    let rows: Vec<Vec<String>> = d
        .hotspots
        .iter()
        .map(|r| {
            vec![
                format_value(r.self_value, &t.unit),
                format!("{:.2}%", percent(r.self_value, d.total)),
                format_value(r.total, &t.unit),
                format!("{:.2}%", percent(r.total, d.total)),
                markdown::code(&r.name),
            ]
        })
        .collect();
    md.push_str(&markdown::table(
        &["self", "self %", "total", "total %", "function"],
        &[true, true, true, true, false],
        &rows,
    ));

    let _ = write!(
        md,
        "\n## Changes against the previous window\n\n{} compared with {}, by self share \
         (percent of each window's total); changes in percentage points.\n",
        d.query.window.describe_utc(),
        d.previous.describe(),
    );
    match &d.changes {
        None => md.push_str("\nNo samples in the previous window: nothing to compare.\n"),
        Some(c) => {
            for (title, rows) in [
                ("Grew most", &c.regressions),
                ("Shrank most", &c.improvements),
            ] {
                let _ = write!(md, "\n### {title}\n\n");
                if rows.is_empty() {
                    md.push_str("None.\n");
                    continue;
                }
                md.push_str(&change_table(crate::diff::head(rows, d.limit).iter()));
            }
        }
    }

    // Angle brackets keep a name with spaces or parentheses one link target.
    let target = if svg_name.contains([' ', '(', ')']) {
        format!("<{svg_name}>")
    } else {
        svg_name.to_owned()
    };
    let _ = write!(md, "\n## Flamegraph\n\n![Flamegraph]({target})\n");
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(Kind::of(Path::new("r.html")), Some(Kind::Html));
        assert_eq!(Kind::of(Path::new("out/R.HTM")), Some(Kind::Html));
        assert_eq!(Kind::of(Path::new("r.md")), Some(Kind::Markdown));
        assert_eq!(Kind::of(Path::new(".md")), None);
        assert_eq!(Kind::of(Path::new("r.pdf")), None);
        assert_eq!(
            svg_beside(Path::new("out/report.md")),
            Path::new("out/report.svg")
        );
    }
}
