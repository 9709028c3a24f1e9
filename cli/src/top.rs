//! `firewatch top`: the functions with the most self or total value.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use firewatch_profile::{SampleType, TopEntry};
use firewatch_render::format_value;
use serde_json::json;

use crate::input::{choose_sample_type, format_name, load};
use crate::{Output, SortBy, printable};

pub(crate) fn run(
    path: &Path,
    sample_type: Option<&str>,
    limit: usize,
    sort: SortBy,
    output: Output,
) -> Result<()> {
    let loaded = load(path)?;
    let profile = &loaded.profile;
    let column =
        choose_sample_type(profile, sample_type).with_context(|| path.display().to_string())?;
    let t = &profile.sample_types()[column];
    let total = profile.total(column);
    let mut rows = profile.top_functions(column);
    if sort == SortBy::Total {
        rows.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then(b.self_value.cmp(&a.self_value))
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    let function_count = rows.len();
    if limit > 0 {
        rows.truncate(limit);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match output {
        Output::Text => write_text(&mut out, t, total, function_count, sort, &rows)?,
        Output::Json => {
            let functions: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "self": r.self_value,
                        "total": r.total,
                        "self_percent": percent(r.self_value, total),
                        "total_percent": percent(r.total, total),
                    })
                })
                .collect();
            let doc = json!({
                "file": path.display().to_string(),
                "format": format_name(loaded.format),
                "sample_type": { "kind": t.kind, "unit": t.unit },
                "total": total,
                "function_count": function_count,
                "sort": match sort { SortBy::SelfValue => "self", SortBy::Total => "total" },
                "functions": functions,
            });
            serde_json::to_writer_pretty(&mut out, &doc).context("cannot write output")?;
            writeln!(out).context("cannot write output")?;
        }
    }
    out.flush().context("cannot write output")
}

/// Share of `total` in percent, 0 when the total is.
fn percent(value: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        value as f64 * 100.0 / total as f64
    }
}

fn write_text(
    out: &mut impl Write,
    t: &SampleType,
    total: i64,
    function_count: usize,
    sort: SortBy,
    rows: &[TopEntry],
) -> Result<()> {
    let by = match sort {
        SortBy::SelfValue => "self",
        SortBy::Total => "total",
    };
    writeln!(
        out,
        "{} ({}): total {}; {} of {} functions, by {by}",
        printable(&t.kind),
        printable(&t.unit),
        format_value(total, &t.unit),
        rows.len(),
        function_count
    )
    .context("cannot write output")?;
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                format_value(r.self_value, &t.unit),
                format!("{:.2}%", percent(r.self_value, total)),
                format_value(r.total, &t.unit),
                format!("{:.2}%", percent(r.total, total)),
            ]
        })
        .collect();
    let header = ["self", "self%", "total", "total%"];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4], name: &str| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // `{:>w$}` counts chars, so "µs" aligns like "ms".
            s.push_str(&format!("{cell:>w$}"));
        }
        s.push_str("  ");
        s.push_str(name);
        s
    };
    writeln!(out, "{}", line(header, "function")).context("cannot write output")?;
    for (row, r) in cells.iter().zip(rows) {
        let cells = [row[0].as_str(), &row[1], &row[2], &row[3]];
        writeln!(out, "{}", line(cells, &printable(&r.name))).context("cannot write output")?;
    }
    Ok(())
}
