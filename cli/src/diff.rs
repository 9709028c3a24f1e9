//! `firewatch diff`: the functions whose self share grew most between two
//! profiles, then those that shrank most.

use std::io::Write;

use firewatch_profile::diff::FunctionChange;
use serde_json::json;

use crate::compare::{CompareArgs, Comparison, change_json, points, share};
use crate::error::{Result, output};
use crate::{Output, printable, table};

/// Prints the regressions and improvements of `args`'s two profiles,
/// `limit` rows each (0: all).
pub(crate) fn run(args: &CompareArgs, limit: usize, format: Output) -> Result<()> {
    let comparison = Comparison::load(args)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Output::Text => write_text(&mut out, &comparison, limit).map_err(output)?,
        Output::Json => {
            let doc = to_json(&comparison, limit);
            serde_json::to_writer_pretty(&mut out, &doc).map_err(|e| output(e.into()))?;
            writeln!(out).map_err(output)?;
        }
    }
    out.flush().map_err(output)
}

/// The first `limit` rows (0: all).
pub(crate) fn head(rows: &[FunctionChange], limit: usize) -> &[FunctionChange] {
    if limit == 0 {
        rows
    } else {
        &rows[..rows.len().min(limit)]
    }
}

fn to_json(c: &Comparison, limit: usize) -> serde_json::Value {
    json!({
        "base": c.base.to_json(),
        "new": c.new.to_json(),
        "regression_count": c.regressions.len(),
        "improvement_count": c.improvements.len(),
        "regressions": head(&c.regressions, limit).iter().map(change_json).collect::<Vec<_>>(),
        "improvements": head(&c.improvements, limit).iter().map(change_json).collect::<Vec<_>>(),
    })
}

fn write_text(out: &mut impl Write, c: &Comparison, limit: usize) -> std::io::Result<()> {
    writeln!(out, "base: {}", c.base.summary())?;
    writeln!(out, "new:  {}", c.new.summary())?;
    writeln!(
        out,
        "Self share: the part of each profile's total spent in the function itself."
    )?;
    for (title, rows) in [
        ("Regressions (self share grew)", &c.regressions),
        ("Improvements (self share shrank)", &c.improvements),
    ] {
        writeln!(out)?;
        if rows.is_empty() {
            writeln!(out, "{title}: none")?;
            continue;
        }
        let shown = head(rows, limit);
        writeln!(out, "{title}: {} of {}", shown.len(), rows.len())?;
        table::write(
            out,
            &["before", "after", "change", "function"],
            &cells(shown),
        )?;
    }
    Ok(())
}

/// Table cells: self share before, after, change, name.
pub(crate) fn cells(rows: &[FunctionChange]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                share(r.before_self),
                share(r.after_self),
                points(r.delta_self),
                printable(&r.name),
            ]
        })
        .collect()
}
