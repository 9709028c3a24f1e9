//! `firewatch top`: the functions with the most self or total value, of a
//! local file or of a query on the server.

use std::io::Write;
use std::path::Path;

use firewatch_profile::{Profile, SampleType, TopEntry};
use firewatch_render::format_value;
use serde_json::json;

use crate::client::{Client, Query};
use crate::error::{Error, Result, output};
use crate::input::{choose_sample_type, format_name, load};
use crate::{Output, SortBy, printable, progress, table};

/// How to rank and print.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopOptions {
    /// How many rows; 0 prints all.
    pub limit: usize,
    /// Self or total.
    pub sort: SortBy,
    /// Table or JSON.
    pub output: Output,
}

/// The top table of a local file; `sample_type` picks the column.
pub(crate) fn run_file(path: &Path, sample_type: Option<&str>, options: TopOptions) -> Result<()> {
    let loaded = load(path)?;
    let what = path.display().to_string();
    let column = choose_sample_type(&loaded.profile, sample_type, &what)?;
    let origin = json!({
        "file": what,
        "format": format_name(loaded.format),
    });
    print(&loaded.profile, column, origin, options)
}

/// The top table of `query`'s merged profile, fetched from the server.
pub(crate) fn run_server(client: &Client, query: &Query, options: TopOptions) -> Result<()> {
    progress(&format!(
        "fetching {} from {}",
        query.describe(),
        client.base()
    ));
    let profile = client.profile(query)?;
    require_samples(&profile, query)?;
    let origin = json!({
        "server": client.base(),
        "query": query.query,
        "profile_type": query.profile_type,
        "from": query.window.from_ms,
        "until": query.window.until_ms,
    });
    print(&profile, 0, origin, options)
}

/// A server profile with nothing in it is almost always a query that
/// matched nothing (a misspelt service, a window before the data), which
/// a table of zeros would hide.
pub(crate) fn require_samples(profile: &Profile, query: &Query) -> Result<()> {
    if profile.sample_types().is_empty() || profile.total(0) == 0 {
        return Err(Error::invalid(
            query.describe(),
            format!(
                "no samples of type {:?} (check the service name with /api/v1/services, \
                 the window, and --type)",
                query.profile_type
            ),
        ));
    }
    Ok(())
}

/// Prints the table (or JSON, with `origin`'s fields first).
fn print(
    profile: &Profile,
    column: usize,
    origin: serde_json::Value,
    options: TopOptions,
) -> Result<()> {
    let t = &profile.sample_types()[column];
    let total = profile.total(column);
    let mut rows = profile.top_functions(column);
    if options.sort == SortBy::Total {
        rows.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then(b.self_value.cmp(&a.self_value))
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    let function_count = rows.len();
    if options.limit > 0 {
        rows.truncate(options.limit);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let sort = match options.sort {
        SortBy::SelfValue => "self",
        SortBy::Total => "total",
    };
    match options.output {
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
            let mut doc = origin;
            let fields = json!({
                "sample_type": { "kind": t.kind, "unit": t.unit },
                "total": total,
                "function_count": function_count,
                "sort": sort,
                "functions": functions,
            });
            if let (Some(doc), serde_json::Value::Object(fields)) = (doc.as_object_mut(), fields) {
                doc.extend(fields);
            }
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| output(e.into()))?;
            writeln!(out).map_err(output)?;
        }
    }
    out.flush().map_err(output)
}

/// Share of `total` in percent, 0 when the total is.
pub(crate) fn percent(value: i64, total: i64) -> f64 {
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
    by: &str,
    rows: &[TopEntry],
) -> Result<()> {
    writeln!(
        out,
        "{} ({}): total {}; {} of {} functions, by {by}",
        printable(&t.kind),
        printable(&t.unit),
        format_value(total, &t.unit),
        rows.len(),
        function_count
    )
    .map_err(output)?;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format_value(r.self_value, &t.unit),
                format!("{:.2}%", percent(r.self_value, total)),
                format_value(r.total, &t.unit),
                format!("{:.2}%", percent(r.total, total)),
                printable(&r.name),
            ]
        })
        .collect();
    table::write(
        out,
        &["self", "self%", "total", "total%", "function"],
        &cells,
    )
    .map_err(output)
}
